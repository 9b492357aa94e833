/* Filling emdpo_diag: where and why input was rejected. */
#ifndef EMDPO_DIAG_H
#define EMDPO_DIAG_H

#include "emdpo.h"

/* Clears diag and records the file name (cut to fit). diag may be NULL. */
void emdpo_diag_reset(emdpo_diag *diag, const char *file);

/* Sets diag's message (printf-style; line 0: not tied to a line) and
 * returns rc, so `return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, ...)` reads
 * as one statement. diag may be NULL. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
int emdpo_diag_fail(emdpo_diag *diag, int rc, const char *fmt, ...);

#endif
