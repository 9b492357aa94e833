#include "base/csv.h"

#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"

void emdpo_csv_init_file(emdpo_csv *r, FILE *fp) {
    memset(r, 0, sizeof *r);
    r->fp = fp;
    r->line = 1;
}

void emdpo_csv_init_buf(emdpo_csv *r, const char *buf, size_t len) {
    memset(r, 0, sizeof *r);
    r->p = buf;
    r->end = buf + len;
    r->line = 1;
}

void emdpo_csv_reset_buf(emdpo_csv *r, const char *buf, size_t len) {
    r->fp = NULL;
    r->p = buf;
    r->end = buf + len;
    r->line = 1;
    r->rec_line = 0;
    r->pos = r->rec_pos = 0;
    r->started = 0;
    r->buf_len = 0;
    r->nf = 0;
}

void emdpo_csv_seek_file(emdpo_csv *r, int64_t pos, long line) {
    r->pos = r->rec_pos = pos;
    r->line = line;
    r->rec_line = 0;
    r->started = 1;
    r->buf_len = 0;
    r->nf = 0;
}

void emdpo_csv_free(emdpo_csv *r) {
    emdpo_free(r->buf, r->buf_cap);
    emdpo_free(r->off, r->off_cap * sizeof *r->off);
    emdpo_free(r->fline, r->fline_cap * sizeof *r->fline);
    r->buf = NULL;
    r->off = NULL;
    r->fline = NULL;
    r->buf_cap = r->off_cap = r->fline_cap = 0;
}

static int get(emdpo_csv *r) {
    int c = r->fp ? getc_unlocked(r->fp) : r->p < r->end ? (unsigned char)*r->p++ : EOF;
    if (c != EOF) r->pos++;
    return c;
}

static int peek(emdpo_csv *r) {
    if (!r->fp) return r->p < r->end ? (unsigned char)*r->p : EOF;
    int c = getc_unlocked(r->fp);
    if (c != EOF) ungetc(c, r->fp);
    return c;
}

static int put(emdpo_csv *r, char c) {
    if (r->buf_len + 1 > r->buf_cap && emdpo_grow((void **)&r->buf, &r->buf_cap, r->buf_len + 1, 1))
        return EMDPO_ERR_NOMEM;
    r->buf[r->buf_len++] = c;
    return EMDPO_OK;
}

/* c is a line end: "\n", or "\r" followed by "\n" (consumed) or the end. */
static int line_end(emdpo_csv *r, int c) {
    if (c == '\n') return 1;
    if (c != '\r') return 0;
    int n = peek(r);
    if (n == '\n') get(r);
    return n == '\n' || n == EOF;
}

static int parse_error(emdpo_diag *diag, long line, const char *fmt, int field) {
    emdpo_diag_set(diag, line, fmt, field);
    return EMDPO_ERR_PARSE;
}

/* The first byte of the input after a byte order mark. A start that only
 * looks like one (0xEF not followed by 0xBB 0xBF) is kept as field text. */
static int skip_bom(emdpo_csv *r, int c) {
    static const int bom[3] = {0xEF, 0xBB, 0xBF};
    int n = 0;
    while (n < 3 && c == bom[n]) {
        n++;
        c = get(r);
    }
    if (n == 3) return c;
    for (int i = 0; i < n; i++)
        if (put(r, (char)bom[i])) return -2;
    return c;
}

int emdpo_csv_next(emdpo_csv *r, int *got, emdpo_diag *diag) {
    *got = 0;
    for (;;) { /* one line, or one record */
        r->buf_len = 0;
        r->nf = 0;
        long first = r->line;
        int64_t first_pos = r->pos;
        int c = get(r), blank = 1;
        if (!r->started) {
            r->started = 1;
            if ((c = skip_bom(r, c)) == -2) return EMDPO_ERR_NOMEM;
            blank = r->buf_len == 0;
        }
        if (c == EOF && r->buf_len == 0) return r->fp && ferror(r->fp) ? EMDPO_ERR_IO : EMDPO_OK;
        for (;;) { /* one field */
            int field = r->nf + 1;
            if (emdpo_grow((void **)&r->off, &r->off_cap, (size_t)field, sizeof *r->off) ||
                emdpo_grow((void **)&r->fline, &r->fline_cap, (size_t)field, sizeof *r->fline))
                return EMDPO_ERR_NOMEM;
            size_t start = field == 1 ? 0 : r->buf_len;
            r->fline[r->nf] = r->line;
            r->off[r->nf++] = start;
            if (c == '"' && r->buf_len == start) {
                long open = r->line;
                blank = 0;
                for (;;) {
                    c = get(r);
                    if (c == EOF) return parse_error(diag, open, "quoted field %d is not closed", field);
                    if (c == '"') {
                        if (peek(r) != '"') break;
                        get(r);
                    } else if (c == '\n') {
                        r->line++;
                    } else if (c == 0) {
                        return parse_error(diag, r->line, "field %d contains a NUL byte", field);
                    }
                    if (put(r, (char)c)) return EMDPO_ERR_NOMEM;
                }
                c = get(r);
                if (c != ',' && c != EOF && !line_end(r, c))
                    return parse_error(diag, r->line, "unexpected text after the closing quote of field %d", field);
            } else {
                while (c != ',' && c != EOF && !line_end(r, c)) {
                    if (c == '"') return parse_error(diag, r->line, "stray quote in unquoted field %d", field);
                    if (c == 0) return parse_error(diag, r->line, "field %d contains a NUL byte", field);
                    if (c != ' ' && c != '\t' && c != '\r') blank = 0;
                    if (put(r, (char)c)) return EMDPO_ERR_NOMEM;
                    c = get(r);
                }
            }
            if (put(r, 0)) return EMDPO_ERR_NOMEM;
            if (c != ',') break;
            blank = 0;
            c = get(r);
        }
        if (r->fp && ferror(r->fp)) return EMDPO_ERR_IO;
        if (c != EOF) r->line++;
        if (!blank) {
            r->rec_line = first;
            r->rec_pos = first_pos;
            *got = 1;
            return EMDPO_OK;
        }
        if (c == EOF) return EMDPO_OK;
    }
}

char *emdpo_csv_field(const emdpo_csv *r, int i) { return r->buf + r->off[i]; }

long emdpo_csv_field_line(const emdpo_csv *r, int i) { return r->fline[i]; }

int emdpo_csv_column(const emdpo_csv *r, const char *name) {
    for (int i = 0; i < r->nf; i++)
        if (strcmp(emdpo_csv_field(r, i), name) == 0) return i;
    return -1;
}

void emdpo_csv_write_field(FILE *fp, const char *s) {
    if (!s) return;
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, fp);
        return;
    }
    fputc('"', fp);
    for (; *s; s++) {
        if (*s == '"') fputc('"', fp);
        fputc(*s, fp);
    }
    fputc('"', fp);
}
