#include "base/lines.h"

#include <errno.h>
#include <string.h>
#include <zlib.h>

#include "base/alloc.h"
#include "emdpo.h"

int emdpo_lines_next(emdpo_lines *lr, int *got) {
    *got = 0;
    lr->len = 0;
    int c = EOF;
    for (;;) {
        /* Room for this byte and the terminating NUL. */
        if (lr->len + 2 > lr->cap && emdpo_grow((void **)&lr->buf, &lr->cap, lr->len + 2, 1))
            return EMDPO_ERR_NOMEM;
        c = lr->gz ? gzgetc((gzFile)lr->gz) : getc_unlocked(lr->fp);
        if (c == EOF || c == '\n') break;
        lr->buf[lr->len++] = (char)c;
    }
    if (lr->gz) {
        int zerr;
        gzerror((gzFile)lr->gz, &zerr);
        if (zerr != Z_OK) return EMDPO_ERR_IO; /* a corrupt or truncated file (Z_DATA_ERROR, Z_BUF_ERROR) */
    } else if (ferror(lr->fp)) {
        return EMDPO_ERR_IO;
    }
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

/* Every file goes through zlib, which reads plain files as they are: no
 * peeking at magic bytes, so pipes and FIFOs lose nothing. zlib's gz*
 * functions allocate with malloc, outside the library's hook: its state is
 * small and fixed, and zlib offers no hook for gzFile. */
int emdpo_lines_open(emdpo_lines *lr, const char *path) {
    memset(lr, 0, sizeof *lr);
    errno = 0;
    if (!(lr->gz = gzopen(path, "rb"))) {
        if (!errno) errno = ENOMEM;
        return EMDPO_ERR_IO;
    }
    return EMDPO_OK;
}

void emdpo_lines_close(emdpo_lines *lr) {
    if (lr->gz) gzclose((gzFile)lr->gz);
    if (lr->fp) fclose(lr->fp);
    lr->gz = NULL;
    lr->fp = NULL;
    emdpo_lines_free(lr);
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
