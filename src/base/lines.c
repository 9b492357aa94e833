#include "base/lines.h"

#include <errno.h>
#include <string.h>
#include <zlib.h>

#include "base/alloc.h"
#include "emdpo.h"

/* Makes at least want (<= 4) unread bytes available in the chunk unless the
 * file ends first. A plain FILE is read up to a newline at a time, so that
 * lines typed into a pipe are answered as they come. */
static int refill(emdpo_lines *lr, size_t want) {
    if (lr->io_error) return EMDPO_ERR_IO;
    if (!lr->chunk && !(lr->chunk = emdpo_malloc(EMDPO_LINES_CHUNK))) return EMDPO_ERR_NOMEM;
    size_t have = lr->chunk_len - lr->chunk_pos;
    if (have >= want || lr->at_eof) return EMDPO_OK;
    memmove(lr->chunk, lr->chunk + lr->chunk_pos, have);
    lr->chunk_pos = 0;
    lr->chunk_len = have;
    while (lr->chunk_len < want && !lr->at_eof) {
        size_t room = EMDPO_LINES_CHUNK - lr->chunk_len;
        if (lr->gz) {
            int got = gzread((gzFile)lr->gz, lr->chunk + lr->chunk_len, (unsigned)room), zerr;
            gzerror((gzFile)lr->gz, &zerr);
            /* a corrupt or truncated file (Z_DATA_ERROR, Z_BUF_ERROR) */
            if (got < 0 || (zerr != Z_OK && zerr != Z_STREAM_END)) lr->io_error = 1;
            if (got <= 0) lr->at_eof = 1;
            else lr->chunk_len += (size_t)got;
        } else {
            int c = 0;
            while (room-- > 0 && (c = getc_unlocked(lr->fp)) != EOF) {
                lr->chunk[lr->chunk_len++] = (char)c;
                if (c == '\n') break;
            }
            if (c == EOF) {
                lr->at_eof = 1;
                if (ferror(lr->fp)) lr->io_error = 1;
            }
        }
        if (lr->io_error) return EMDPO_ERR_IO;
    }
    return EMDPO_OK;
}

int emdpo_lines_begin(emdpo_lines *lr, int *got) {
    *got = 0;
    int rc;
    lr->newline_unseen = 0;
    while (lr->line_open) { /* the rest of a line its reader left */
        if ((rc = refill(lr, 1))) return rc;
        const char *s = lr->chunk + lr->chunk_pos, *nl = memchr(s, '\n', lr->chunk_len - lr->chunk_pos);
        lr->chunk_pos = nl ? (size_t)(nl + 1 - lr->chunk) : lr->chunk_len;
        if (nl || lr->chunk_pos == lr->chunk_len) lr->line_open = !nl && !lr->at_eof;
    }
    if ((rc = refill(lr, 1))) return rc;
    if (lr->chunk_pos == lr->chunk_len) return EMDPO_OK;
    lr->line_open = 1;
    if (++lr->lineno == 1) {
        if ((rc = refill(lr, 3))) return rc;
        if (lr->chunk_len - lr->chunk_pos >= 3 && memcmp(lr->chunk + lr->chunk_pos, "\xEF\xBB\xBF", 3) == 0)
            lr->chunk_pos += 3;
    }
    *got = 1;
    return EMDPO_OK;
}

int emdpo_lines_read_line(void *ctx, char *dst, size_t cap, size_t *n) {
    emdpo_lines *lr = ctx;
    *n = 0;
    if (!lr->line_open || cap < 2) return EMDPO_OK;
    int rc = refill(lr, 1);
    if (rc) return rc;
    size_t have = lr->chunk_len - lr->chunk_pos;
    const char *s = lr->chunk + lr->chunk_pos;
    if (have == 1 && s[0] == '\r') { /* a "\r" that may end the line: look one byte further */
        if ((rc = refill(lr, 2))) return rc;
        have = lr->chunk_len - lr->chunk_pos;
        s = lr->chunk + lr->chunk_pos;
        if (have == 1 || s[1] == '\n') {
            lr->chunk_pos += have == 1 ? 1 : 2;
            lr->line_open = 0;
            lr->newline_unseen = have > 1;
            return EMDPO_OK;
        }
    }
    if (have == 0) { /* the last line, without a "\n" */
        lr->line_open = 0;
        return EMDPO_OK;
    }
    size_t take = have < cap ? have : cap;
    const char *nl = memchr(s, '\n', take);
    size_t k = nl ? (size_t)(nl - s) : take;
    lr->chunk_pos += nl ? k + 1 : k;
    if (nl) {
        lr->line_open = 0;
        lr->newline_unseen = 1;
        if (k && s[k - 1] == '\r') k--;
    } else if (k > 1 && s[k - 1] == '\r') {
        k--; /* decided on the next call */
        lr->chunk_pos--;
    }
    memcpy(dst, s, k);
    *n = k;
    return EMDPO_OK;
}

int emdpo_lines_read_rest(void *ctx, char *dst, size_t cap, size_t *n) {
    emdpo_lines *lr = ctx;
    *n = 0;
    int rc = refill(lr, 1);
    if (rc) return rc;
    size_t have = lr->chunk_len - lr->chunk_pos, take = have < cap ? have : cap;
    memcpy(dst, lr->chunk + lr->chunk_pos, take);
    lr->chunk_pos += take;
    lr->line_open = 0;
    *n = take;
    return EMDPO_OK;
}

int emdpo_lines_read_on(void *ctx, char *dst, size_t cap, size_t *n) {
    emdpo_lines *lr = ctx;
    int rc;
    if (lr->line_open && ((rc = emdpo_lines_read_line(ctx, dst, cap, n)) || *n)) return rc;
    if (!lr->newline_unseen) return emdpo_lines_read_rest(ctx, dst, cap, n);
    lr->newline_unseen = 0;
    dst[0] = '\n';
    *n = 1;
    return EMDPO_OK;
}

int emdpo_lines_next(emdpo_lines *lr, int *got) {
    lr->len = 0;
    int rc = emdpo_lines_begin(lr, got);
    if (rc || !*got) return rc;
    for (;;) {
        /* Room for a piece and the terminating NUL. */
        if (lr->len + 4097 > lr->cap && emdpo_grow((void **)&lr->buf, &lr->cap, lr->len + 4097, 1))
            return EMDPO_ERR_NOMEM;
        size_t n;
        if ((rc = emdpo_lines_read_line(lr, lr->buf + lr->len, lr->cap - lr->len - 1, &n))) return rc;
        if (!n && !lr->line_open) break;
        lr->len += n;
    }
    lr->buf[lr->len] = 0;
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

int emdpo_lines_seek(emdpo_lines *lr, int64_t offset, long lineno) {
    if (lr->gz || !lr->fp || fseeko(lr->fp, (off_t)offset, SEEK_SET)) return EMDPO_ERR_IO;
    lr->chunk_pos = lr->chunk_len = 0;
    lr->at_eof = lr->line_open = lr->newline_unseen = lr->io_error = 0;
    lr->lineno = lineno - 1;
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
    emdpo_free(lr->chunk, lr->chunk ? EMDPO_LINES_CHUNK : 0);
    lr->buf = lr->chunk = NULL;
    lr->cap = lr->len = lr->chunk_pos = lr->chunk_len = 0;
}

int emdpo_line_is_blank(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}
