/* Filling emdpo_diag: where and why input was rejected. Every function
 * accepts a NULL diag and then does nothing, so callers pass theirs on
 * without checking. */
#ifndef EMDPO_DIAG_H
#define EMDPO_DIAG_H

#include <stdarg.h>

#include "emdpo.h"

#if defined(__GNUC__)
#define EMDPO_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define EMDPO_PRINTF(f, a)
#endif

/* Clears diag and records the file name (cut to fit; NULL: none). */
void emdpo_diag_reset(emdpo_diag *diag, const char *file);

/* Sets diag's line (0: not tied to a line) and message. */
void emdpo_diag_set(emdpo_diag *diag, long line, const char *fmt, ...) EMDPO_PRINTF(3, 4);
void emdpo_diag_vset(emdpo_diag *diag, long line, const char *fmt, va_list ap);

/* emdpo_diag_set with line 0, returning rc, so that
 * `return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, ...)` reads as one
 * statement. */
int emdpo_diag_fail(emdpo_diag *diag, int rc, const char *fmt, ...) EMDPO_PRINTF(3, 4);

/* emdpo_diag_set, returning EMDPO_ERR_PARSE: a reader's refusal of the
 * line it is on, in one statement. */
int emdpo_diag_parse(emdpo_diag *diag, long line, const char *fmt, ...) EMDPO_PRINTF(3, 4);

/* Sets diag's file (when file is not NULL), line and message; returns rc. */
int emdpo_diag_at(emdpo_diag *diag, int rc, const char *file, long line, const char *fmt, ...) EMDPO_PRINTF(5, 6);

/* Names the file of a diag that has none yet (a lower layer that did not
 * know the path filled the message). */
void emdpo_diag_default_file(emdpo_diag *diag, const char *file);

#endif
