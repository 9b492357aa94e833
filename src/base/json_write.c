#include "base/json_write.h"

#include <math.h>
#include <string.h>

#include "base/utf8.h"
#include "emdpo.h"

void emdpo_json_num(FILE *fp, double v) {
    if (isfinite(v))
        fprintf(fp, "%.17g", v);
    else
        fputs("null", fp);
}

void emdpo_json_nums(FILE *fp, const double *v, int64_t n) {
    fputc('[', fp);
    for (int64_t i = 0; i < n; i++) {
        if (i) fputs(", ", fp);
        emdpo_json_num(fp, v[i]);
    }
    fputc(']', fp);
}

void emdpo_json_str(FILE *fp, const char *s) {
    if (!s) {
        fputs("null", fp);
        return;
    }
    if (emdpo_json_write_string(fp, s) == EMDPO_ERR_INVALID_ARG) fputs("\"\"", fp);
}

static const char *short_escape(unsigned c) {
    switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    case '\b': return "\\b";
    case '\f': return "\\f";
    default: return NULL;
    }
}

int emdpo_json_write_string(FILE *fp, const char *s) { return emdpo_json_write_stringn(fp, s, strlen(s)); }

int emdpo_json_write_stringn(FILE *fp, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = emdpo_utf8_seq_len(u + i, n - i);
        if (!k) return EMDPO_ERR_INVALID_ARG;
        i += k;
    }
    int bad = fputc('"', fp) == EOF;
    size_t run = 0; /* bytes that need no escaping, written in one go */
    for (size_t i = 0; i <= n && !bad; i++) {
        unsigned c = i < n ? u[i] : 0;
        if (i < n && c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        if (run && fwrite(s + i - run, 1, run, fp) != run) bad = 1;
        run = 0;
        if (i == n || bad) break;
        const char *esc = short_escape(c);
        if (esc) bad = fputs(esc, fp) == EOF;
        else bad = fprintf(fp, "\\u%04X", c) < 0;
    }
    if (!bad) bad = fputc('"', fp) == EOF;
    return bad ? EMDPO_ERR_IO : EMDPO_OK;
}
