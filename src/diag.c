#include "diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void emdpo_diag_reset(emdpo_diag *diag, const char *file) {
    if (!diag) return;
    memset(diag, 0, sizeof *diag);
    /* memcpy rather than snprintf: long paths are cut without a warning. */
    size_t n = file ? strlen(file) : 0;
    if (n >= sizeof diag->file) n = sizeof diag->file - 1;
    if (n) memcpy(diag->file, file, n);
}

int emdpo_diag_fail(emdpo_diag *diag, int rc, const char *fmt, ...) {
    if (!diag) return rc;
    diag->line = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(diag->msg, sizeof diag->msg, fmt, ap);
    va_end(ap);
    return rc;
}
