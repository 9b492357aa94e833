/* emdpo_data_read / emdpo_data_write: format choice, file handling, and the
 * line reader and diagnostics shared by the per-format code. */
#include "dataio.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "afile.h"
#include "alloc.h"

int emdpo_lines_next(emdpo_lines *lr, int *got) {
    *got = 0;
    lr->len = 0;
    int c = EOF;
    for (;;) {
        /* Room for this byte and the terminating NUL. */
        if (lr->len + 2 > lr->cap && emdpo_grow((void **)&lr->buf, &lr->cap, lr->len + 2, 1))
            return EMDPO_ERR_NOMEM;
        if ((c = getc_unlocked(lr->fp)) == EOF || c == '\n') break;
        lr->buf[lr->len++] = (char)c;
    }
    if (ferror(lr->fp)) return EMDPO_ERR_IO;
    if (c == EOF && lr->len == 0) return EMDPO_OK;
    if (lr->len && lr->buf[lr->len - 1] == '\r') lr->len--;
    lr->buf[lr->len] = 0;
    if (++lr->lineno == 1 && lr->len >= 3 && memcmp(lr->buf, "\xEF\xBB\xBF", 3) == 0) {
        lr->len -= 3;
        memmove(lr->buf, lr->buf + 3, lr->len + 1);
    }
    *got = 1;
    return EMDPO_OK;
}

void emdpo_lines_free(emdpo_lines *lr) {
    emdpo_free(lr->buf, lr->cap);
    lr->buf = NULL;
    lr->cap = lr->len = 0;
}

int emdpo_line_is_blank(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

void emdpo_diag_set(emdpo_diag *diag, long line, const char *fmt, ...) {
    diag->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(diag->msg, sizeof diag->msg, fmt, ap);
    va_end(ap);
}

void emdpo_diag_group_conflict(emdpo_diag *diag, long line, const char *annotator, const char *group) {
    if (group)
        emdpo_diag_set(
            diag, line,
            "annotator \"%.60s\" has group \"%.60s\" here but a different group (or none) on an earlier line",
            annotator, group);
    else
        emdpo_diag_set(diag, line, "annotator \"%.60s\" has no group here but a group on an earlier line",
                       annotator);
}

static void diag_reset(emdpo_diag *diag, const char *path) {
    memset(diag, 0, sizeof *diag);
    if (path) snprintf(diag->file, sizeof diag->file, "%s", path);
}

static int ends_with_nocase(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    if (n < k) return 0;
    for (size_t i = 0; i < k; i++)
        if (tolower((unsigned char)s[n - k + i]) != suffix[i]) return 0;
    return 1;
}

static int resolve_format(const char *path, emdpo_format fmt, emdpo_format *out, emdpo_diag *diag) {
    if (fmt == EMDPO_FORMAT_JSONL || fmt == EMDPO_FORMAT_CSV) {
        *out = fmt;
        return EMDPO_OK;
    }
    if (fmt != EMDPO_FORMAT_AUTO) {
        emdpo_diag_set(diag, 0, "unknown data format %d", (int)fmt);
        return EMDPO_ERR_INVALID_ARG;
    }
    if (ends_with_nocase(path, ".jsonl") || ends_with_nocase(path, ".json")) {
        *out = EMDPO_FORMAT_JSONL;
    } else if (ends_with_nocase(path, ".csv")) {
        *out = EMDPO_FORMAT_CSV;
    } else {
        emdpo_diag_set(diag, 0, "cannot tell the data format from the file name (use .jsonl, .json or .csv)");
        return EMDPO_ERR_UNSUPPORTED;
    }
    return EMDPO_OK;
}

int emdpo_data_read(const char *path, emdpo_format fmt, emdpo_data **out, emdpo_diag *diag) {
    emdpo_diag scratch;
    if (!diag) diag = &scratch;
    diag_reset(diag, path);
    if (!out) return EMDPO_ERR_INVALID_ARG;
    *out = NULL;
    if (!path) return EMDPO_ERR_INVALID_ARG;
    emdpo_format f;
    int rc = resolve_format(path, fmt, &f, diag);
    if (rc) return rc;
    emdpo_lines lr = {0};
    if (!(lr.fp = fopen(path, "rb"))) {
        emdpo_diag_set(diag, 0, "cannot open: %s", strerror(errno));
        return EMDPO_ERR_IO;
    }
    rc = f == EMDPO_FORMAT_JSONL ? emdpo_read_jsonl(&lr, out, diag) : emdpo_read_csv(&lr, out, diag);
    if (rc == EMDPO_ERR_NOMEM) emdpo_diag_set(diag, lr.lineno, "out of memory");
    if (rc == EMDPO_ERR_IO) emdpo_diag_set(diag, lr.lineno, "read error: %s", strerror(errno));
    emdpo_lines_free(&lr);
    fclose(lr.fp);
    return rc;
}

int emdpo_data_write(const emdpo_data *d, const char *path, emdpo_format fmt, emdpo_diag *diag) {
    emdpo_diag scratch;
    if (!diag) diag = &scratch;
    diag_reset(diag, path);
    if (!d || !path) return EMDPO_ERR_INVALID_ARG;
    emdpo_format f;
    int rc = resolve_format(path, fmt, &f, diag);
    if (rc || (f == EMDPO_FORMAT_CSV && (rc = emdpo_csv_check_writable(d, diag)))) return rc;
    emdpo_afile af;
    if ((rc = emdpo_afile_open(&af, path))) {
        if (rc == EMDPO_ERR_IO) emdpo_diag_set(diag, 0, "cannot create: %s", strerror(errno));
        else emdpo_diag_set(diag, 0, "path is too long");
        return rc;
    }
    if (f == EMDPO_FORMAT_JSONL) rc = emdpo_write_jsonl(d, af.fp, diag);
    else emdpo_write_csv(d, af.fp);
    if (rc == EMDPO_ERR_IO) emdpo_diag_set(diag, 0, "write failed: %s", strerror(errno));
    if (rc) {
        emdpo_afile_abort(&af);
        return rc;
    }
    if ((rc = emdpo_afile_commit(&af))) emdpo_diag_set(diag, 0, "write failed: %s", strerror(errno));
    return rc;
}
