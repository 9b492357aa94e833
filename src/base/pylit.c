/* Python literals as repr() writes them (base/pylit.h). */
#include "base/pylit.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/utf8.h"

typedef struct py_parser {
    const char *s, *p, *end;
    char *scratch; /* the string being decoded */
    size_t scratch_len, scratch_cap;
    size_t err_off;
    char *msg;
    size_t msg_n;
} py_parser;

static int py_error(py_parser *P, const char *at, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int py_error(py_parser *P, const char *at, const char *fmt, ...) {
    P->err_off = (size_t)(at - P->s);
    if (P->msg && P->msg_n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(P->msg, P->msg_n, fmt, ap);
        va_end(ap);
    }
    return EMDPO_ERR_PARSE;
}

/* Frees what v owns (not v itself) and leaves it NONE. */
static void py_clear(emdpo_py *v) {
    if (v->type == EMDPO_PY_STR) {
        emdpo_free(v->str, v->len + 1);
    } else if (v->type == EMDPO_PY_LIST || v->type == EMDPO_PY_DICT) {
        size_t n = v->type == EMDPO_PY_DICT ? 2 * v->len : v->len;
        for (size_t i = 0; i < n; i++) py_clear(&v->elems[i]);
        emdpo_free(v->elems, v->cap * sizeof(emdpo_py));
    }
    memset(v, 0, sizeof *v);
}

void emdpo_py_free(emdpo_py *v) {
    if (!v) return;
    py_clear(v);
    emdpo_free(v, sizeof *v);
}

const emdpo_py *emdpo_py_get(const emdpo_py *dict, const char *key) {
    if (!dict || dict->type != EMDPO_PY_DICT) return NULL;
    for (size_t i = 0; i < dict->len; i++) {
        const emdpo_py *k = &dict->elems[2 * i];
        if (k->type == EMDPO_PY_STR && strcmp(k->str, key) == 0) return &dict->elems[2 * i + 1];
    }
    return NULL;
}

static void py_skip_ws(py_parser *P) {
    while (P->p < P->end && (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r')) P->p++;
}

static int py_is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int py_is_digit(char c) { return c >= '0' && c <= '9'; }

/* Consumes word when it is next and not followed by an identifier character. */
static int py_word(py_parser *P, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(P->end - P->p) < n || memcmp(P->p, word, n) != 0) return 0;
    if (P->p + n < P->end && (py_is_alpha(P->p[n]) || py_is_digit(P->p[n]))) return 0;
    P->p += n;
    return 1;
}

static int py_hex(py_parser *P, int digits, unsigned *cp) {
    const char *at = P->p;
    if (P->end - P->p < digits) return py_error(P, at, "truncated \\x, \\u or \\U escape");
    unsigned v = 0;
    for (int i = 0; i < digits; i++) {
        char c = *P->p++;
        unsigned d;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return py_error(P, P->p - 1, "bad hex digit in an escape");
        v = v * 16 + d;
    }
    *cp = v;
    return 0;
}

static int py_put(py_parser *P, const char *bytes, size_t n) {
    if (emdpo_grow((void **)&P->scratch, &P->scratch_cap, P->scratch_len + n + 1, 1)) return EMDPO_ERR_NOMEM;
    memcpy(P->scratch + P->scratch_len, bytes, n);
    P->scratch_len += n;
    return 0;
}

static int py_string(py_parser *P, emdpo_py *v) {
    const char *open = P->p;
    char quote = *P->p++;
    P->scratch_len = 0;
    for (;;) {
        if (P->p >= P->end || *P->p == '\n' || *P->p == '\r')
            return py_error(P, open, "unterminated string");
        char c = *P->p;
        if (c == quote) {
            P->p++;
            break;
        }
        if (c == '\0') return py_error(P, P->p, "NUL character in a string");
        if (c != '\\') {
            if (py_put(P, &c, 1)) return EMDPO_ERR_NOMEM;
            P->p++;
            continue;
        }
        const char *esc = P->p++;
        if (P->p >= P->end) return py_error(P, open, "unterminated string");
        char e = *P->p++, out[4];
        int rc;
        unsigned cp = 0;
        switch (e) {
        case '\\': case '\'': case '"': out[0] = e; break;
        case 'n': out[0] = '\n'; break;
        case 'r': out[0] = '\r'; break;
        case 't': out[0] = '\t'; break;
        case 'a': out[0] = '\a'; break;
        case 'b': out[0] = '\b'; break;
        case 'f': out[0] = '\f'; break;
        case 'v': out[0] = '\v'; break;
        case 'x': case 'u': case 'U':
            if ((rc = py_hex(P, e == 'x' ? 2 : e == 'u' ? 4 : 8, &cp))) return rc;
            /* C strings carry the text downstream, so NUL cannot be represented. */
            if (cp == 0) return py_error(P, esc, "NUL character in a string");
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return py_error(P, esc, "escape is not a Unicode scalar value");
            if (py_put(P, out, (size_t)emdpo_utf8_encode(cp, out))) return EMDPO_ERR_NOMEM;
            continue;
        default:
            return py_error(P, esc, "unsupported escape '\\%c'", e);
        }
        if (py_put(P, out, 1)) return EMDPO_ERR_NOMEM;
    }
    char *s = emdpo_malloc(P->scratch_len + 1);
    if (!s) return EMDPO_ERR_NOMEM;
    if (P->scratch_len) memcpy(s, P->scratch, P->scratch_len);
    s[P->scratch_len] = 0;
    v->type = EMDPO_PY_STR;
    v->str = s;
    v->len = P->scratch_len;
    return 0;
}

static int py_number(py_parser *P, emdpo_py *v) {
    const char *start = P->p;
    int neg = P->p < P->end && *P->p == '-';
    if (neg) P->p++;
    v->type = EMDPO_PY_NUM;
    if (py_word(P, "inf")) {
        v->num = neg ? -INFINITY : INFINITY;
        return 0;
    }
    if (!neg && py_word(P, "nan")) {
        v->num = NAN;
        return 0;
    }
    if (P->p >= P->end || !py_is_digit(*P->p)) return py_error(P, start, "expected a value");
    int is_int = 1;
    while (P->p < P->end && py_is_digit(*P->p)) P->p++;
    if (P->p < P->end && *P->p == '.') {
        is_int = 0;
        P->p++;
        while (P->p < P->end && py_is_digit(*P->p)) P->p++;
    }
    if (P->p < P->end && (*P->p == 'e' || *P->p == 'E')) {
        is_int = 0;
        P->p++;
        if (P->p < P->end && (*P->p == '+' || *P->p == '-')) P->p++;
        if (P->p >= P->end || !py_is_digit(*P->p)) return py_error(P, start, "malformed number");
        while (P->p < P->end && py_is_digit(*P->p)) P->p++;
    }
    if (P->p < P->end && (py_is_alpha(*P->p) || *P->p == '.')) return py_error(P, start, "malformed number");
    char buf[128];
    size_t n = (size_t)(P->p - start);
    if (n >= sizeof buf) return py_error(P, start, "number too long");
    memcpy(buf, start, n);
    buf[n] = 0;
    errno = 0;
    double x = strtod(buf, NULL);
    if (!isfinite(x) || (errno == ERANGE && fabs(x) > 1)) return py_error(P, start, "number out of range");
    v->num = x;
    v->is_int = is_int;
    return 0;
}

static int py_value(py_parser *P, emdpo_py *v, int depth);

/* The items of a list or dict, up to the closing bracket. */
static int py_items(py_parser *P, emdpo_py *v, int depth, char close) {
    const char *open = P->p - 1;
    int dict = close == '}';
    size_t n = 0; /* initialised entries of v->elems */
    int rc = 0;
    py_skip_ws(P);
    if (P->p < P->end && *P->p == close) {
        P->p++;
        goto done;
    }
    for (;;) {
        for (int part = 0; part < 1 + dict; part++) {
            if (emdpo_grow((void **)&v->elems, &v->cap, n + 1, sizeof(emdpo_py))) {
                rc = EMDPO_ERR_NOMEM;
                goto fail;
            }
            memset(&v->elems[n], 0, sizeof(emdpo_py));
            py_skip_ws(P);
            const char *at = P->p;
            if ((rc = py_value(P, &v->elems[n], depth + 1))) goto fail;
            n++;
            if (dict && part == 0) {
                if (v->elems[n - 1].type != EMDPO_PY_STR) {
                    rc = py_error(P, at, "dict keys must be strings");
                    goto fail;
                }
                for (size_t k = 0; k + 1 < n; k += 2) {
                    if (strcmp(v->elems[k].str, v->elems[n - 1].str) == 0) {
                        rc = py_error(P, at, "duplicate dict key '%.40s'", v->elems[k].str);
                        goto fail;
                    }
                }
                py_skip_ws(P);
                if (P->p >= P->end || *P->p != ':') {
                    rc = py_error(P, P->p, "expected ':' after a dict key");
                    goto fail;
                }
                P->p++;
            }
        }
        py_skip_ws(P);
        if (P->p >= P->end) {
            rc = py_error(P, open, "unclosed '%c'", *open);
            goto fail;
        }
        if (*P->p == close) {
            P->p++;
            break;
        }
        if (*P->p != ',') {
            rc = py_error(P, P->p, "expected ',' or '%c'", close);
            goto fail;
        }
        P->p++;
        py_skip_ws(P);
        if (P->p < P->end && *P->p == close) {
            rc = py_error(P, P->p, "trailing comma");
            goto fail;
        }
    }
done:
    v->type = dict ? EMDPO_PY_DICT : EMDPO_PY_LIST;
    v->len = dict ? n / 2 : n;
    return 0;
fail:
    for (size_t i = 0; i < n; i++) py_clear(&v->elems[i]);
    emdpo_free(v->elems, v->cap * sizeof(emdpo_py));
    v->elems = NULL;
    v->cap = 0;
    return rc;
}

/* defaultdict(<class 'NAME'>, {...}), after the word defaultdict. */
static int py_defaultdict(py_parser *P, emdpo_py *v, int depth) {
    static const char *const parts[] = {"(", "<class '"};
    for (int i = 0; i < 2; i++) {
        py_skip_ws(P);
        size_t n = strlen(parts[i]);
        if ((size_t)(P->end - P->p) < n || memcmp(P->p, parts[i], n) != 0)
            return py_error(P, P->p, "expected defaultdict(<class '...'>, {...})");
        P->p += n;
    }
    while (P->p < P->end && (py_is_alpha(*P->p) || py_is_digit(*P->p) || *P->p == '.')) P->p++;
    if (P->end - P->p < 2 || memcmp(P->p, "'>", 2) != 0)
        return py_error(P, P->p, "expected defaultdict(<class '...'>, {...})");
    P->p += 2;
    py_skip_ws(P);
    if (P->p >= P->end || *P->p != ',') return py_error(P, P->p, "expected ',' in defaultdict(...)");
    P->p++;
    py_skip_ws(P);
    if (P->p >= P->end || *P->p != '{') return py_error(P, P->p, "defaultdict(...) must hold a dict");
    int rc = py_value(P, v, depth + 1);
    if (rc) return rc;
    py_skip_ws(P);
    if (P->p >= P->end || *P->p != ')') {
        py_clear(v);
        return py_error(P, P->p, "expected ')' closing defaultdict(");
    }
    P->p++;
    return 0;
}

static int py_value(py_parser *P, emdpo_py *v, int depth) {
    py_skip_ws(P);
    if (depth > EMDPO_PY_MAX_DEPTH) return py_error(P, P->p, "nesting deeper than %d", EMDPO_PY_MAX_DEPTH);
    if (P->p >= P->end) return py_error(P, P->p, "expected a value");
    char c = *P->p;
    if (c == '[' || c == '{') {
        P->p++;
        return py_items(P, v, depth, c == '[' ? ']' : '}');
    }
    if (c == '\'' || c == '"') return py_string(P, v);
    if (py_is_alpha(c)) {
        const char *at = P->p;
        if (py_word(P, "None")) {
            v->type = EMDPO_PY_NONE;
            return 0;
        }
        if (py_word(P, "True") || py_word(P, "False")) {
            v->type = EMDPO_PY_BOOL;
            v->num = *at == 'T';
            return 0;
        }
        if (py_word(P, "defaultdict")) return py_defaultdict(P, v, depth);
        if (c != 'n' && c != 'i') return py_error(P, at, "unexpected name");
    }
    return py_number(P, v);
}

int emdpo_py_parse(const char *text, size_t len, emdpo_py **out, size_t *err_off, char *msg, size_t msg_n) {
    *out = NULL;
    if (msg && msg_n) msg[0] = 0;
    py_parser P = {.s = text, .p = text, .end = text + len, .msg = msg, .msg_n = msg_n};
    size_t bad = emdpo_utf8_invalid_at(text, len);
    int rc;
    emdpo_py *v = NULL;
    if (bad < len) {
        rc = py_error(&P, text + bad, "invalid UTF-8");
    } else if (!(v = emdpo_calloc(1, sizeof *v))) {
        rc = EMDPO_ERR_NOMEM;
    } else if (!(rc = py_value(&P, v, 0))) {
        py_skip_ws(&P);
        if (P.p < P.end) rc = py_error(&P, P.p, "unexpected text after the value");
    }
    emdpo_free(P.scratch, P.scratch_cap);
    if (rc) {
        emdpo_py_free(v);
        if (err_off) *err_off = rc == EMDPO_ERR_PARSE ? P.err_off : 0;
        return rc;
    }
    *out = v;
    return 0;
}
