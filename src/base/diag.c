#include "base/diag.h"

#include <stdio.h>
#include <string.h>

static void set_file(emdpo_diag *diag, const char *file) {
    /* memcpy rather than snprintf: long paths are cut without a warning. */
    size_t n = file ? strlen(file) : 0;
    if (n >= sizeof diag->file) n = sizeof diag->file - 1;
    if (n) memcpy(diag->file, file, n);
    diag->file[n] = 0;
}

void emdpo_diag_reset(emdpo_diag *diag, const char *file) {
    if (!diag) return;
    memset(diag, 0, sizeof *diag);
    set_file(diag, file);
}

void emdpo_diag_default_file(emdpo_diag *diag, const char *file) {
    if (diag && !diag->file[0]) set_file(diag, file);
}

void emdpo_diag_vset(emdpo_diag *diag, long line, const char *fmt, va_list ap) {
    if (!diag) return;
    diag->line = line;
    vsnprintf(diag->msg, sizeof diag->msg, fmt, ap);
}

void emdpo_diag_set(emdpo_diag *diag, long line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    emdpo_diag_vset(diag, line, fmt, ap);
    va_end(ap);
}

int emdpo_diag_fail(emdpo_diag *diag, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    emdpo_diag_vset(diag, 0, fmt, ap);
    va_end(ap);
    return rc;
}

int emdpo_diag_parse(emdpo_diag *diag, long line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    emdpo_diag_vset(diag, line, fmt, ap);
    va_end(ap);
    return EMDPO_ERR_PARSE;
}

int emdpo_diag_at(emdpo_diag *diag, int rc, const char *file, long line, const char *fmt, ...) {
    if (diag && file) set_file(diag, file);
    va_list ap;
    va_start(ap, fmt);
    emdpo_diag_vset(diag, line, fmt, ap);
    va_end(ap);
    return rc;
}
