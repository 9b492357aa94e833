#include "base/lines.h"

#include <string.h>

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
