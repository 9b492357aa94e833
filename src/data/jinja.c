/* A Jinja interpreter for chat templates, as @huggingface/jinja 0.5.13
 * (src/lexer.ts, src/parser.ts, src/runtime.ts) renders them: see jinja.h.
 * The comments name the TypeScript functions each part follows. */
#include "data/jinja.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/utf8.h"

/* ---- Arenas ------------------------------------------------------------- */

typedef struct achunk {
    struct achunk *next;
    size_t size, used;
} achunk;

typedef struct arena {
    achunk *head;
    size_t total, cap; /* cap 0: unbounded */
    int over;          /* the last failure was the cap, not the allocator */
} arena;

#define ALIGN_UP(n) (((n) + 15) & ~(size_t)15)
#define CHUNK_HDR ALIGN_UP(sizeof(achunk))

static void *arena_alloc(arena *a, size_t n) {
    n = ALIGN_UP(n ? n : 1);
    if (!a->head || a->head->size - a->head->used < n) {
        size_t want = n > 32768 ? n : 32768;
        if (want > SIZE_MAX - CHUNK_HDR) return NULL;
        if (a->cap && (a->total + want + CHUNK_HDR > a->cap)) {
            a->over = 1;
            return NULL;
        }
        achunk *c = emdpo_malloc(CHUNK_HDR + want);
        if (!c) {
            a->over = 0;
            return NULL;
        }
        c->size = want;
        c->used = 0;
        c->next = a->head;
        a->head = c;
        a->total += CHUNK_HDR + want;
    }
    void *p = (char *)a->head + CHUNK_HDR + a->head->used;
    a->head->used += n;
    return p;
}

static void arena_free(arena *a) {
    for (achunk *c = a->head, *next; c; c = next) {
        next = c->next;
        emdpo_free(c, CHUNK_HDR + c->size);
    }
    a->head = NULL;
    a->total = 0;
}

/* ---- Strings, UTF-8 and JavaScript's view of them ------------------------ */

typedef struct jstr {
    const char *s;
    size_t n;
} jstr;

static int jstr_eq(jstr a, const char *b) { return strlen(b) == a.n && memcmp(a.s, b, a.n) == 0; }
static int jstr_same(jstr a, jstr b) { return a.n == b.n && (a.n == 0 || memcmp(a.s, b.s, a.n) == 0); }

/* JavaScript's \s (and what trim() removes): lexer.ts isWhitespace. */
static int js_space(uint32_t c) {
    if (c <= 32) return c == 32 || (c >= 9 && c <= 13);
    return c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

/* Byte length of the whitespace character at s[0..avail), 0 when none. */
static size_t ws_at(const char *s, size_t avail) {
    if (!avail) return 0;
    uint32_t cp;
    size_t l = emdpo_utf8_decode(s, avail, &cp);
    return js_space(cp) ? l : 0;
}

/* Byte length of the whitespace character ending at s + end (start..end). */
static size_t ws_before(const char *s, size_t start, size_t end) {
    if (end <= start) return 0;
    size_t b = end - 1;
    while (b > start && ((unsigned char)s[b] & 0xC0) == 0x80 && end - b < 4) b--;
    uint32_t cp;
    size_t l = emdpo_utf8_decode(s + b, end - b, &cp);
    return (b + l == end && js_space(cp)) ? end - b : 0;
}

static jstr js_trim_start(jstr v) {
    size_t l;
    while ((l = ws_at(v.s, v.n))) v.s += l, v.n -= l;
    return v;
}

static jstr js_trim_end(jstr v) {
    size_t l;
    while ((l = ws_before(v.s, 0, v.n))) v.n -= l;
    return v;
}

/* UTF-16 code units of s (JavaScript's length). */
static size_t u16len(jstr v) {
    size_t n = 0;
    for (size_t i = 0; i < v.n; i++) {
        unsigned char c = (unsigned char)v.s[i];
        if ((c & 0xC0) != 0x80) n += c >= 0xF0 ? 2 : 1;
    }
    return n;
}

/* Compares as JavaScript compares strings: by UTF-16 code units. */
static int u16cmp(jstr a, jstr b) {
    size_t i = 0, j = 0;
    while (i < a.n && j < b.n) {
        uint32_t x, y;
        i += emdpo_utf8_decode(a.s + i, a.n - i, &x);
        j += emdpo_utf8_decode(b.s + j, b.n - j, &y);
        if (x == y) continue;
        uint32_t x1 = x >= 0x10000 ? 0xD800 + ((x - 0x10000) >> 10) : x;
        uint32_t y1 = y >= 0x10000 ? 0xD800 + ((y - 0x10000) >> 10) : y;
        if (x1 != y1) return x1 < y1 ? -1 : 1;
        return x < y ? -1 : 1; /* same high surrogate: the low ones order as the code points */
    }
    if (i < a.n) return 1;
    if (j < b.n) return -1;
    return 0;
}

/* ---- Numbers as JavaScript prints them ---------------------------------- */

/* Number.prototype.toString(): the shortest digits that read back. */
static void js_num(double v, char *out) {
    if (isnan(v)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v < 0 ? "-Infinity" : "Infinity");
        return;
    }
    if (v == 0) {
        strcpy(out, "0");
        return;
    }
    char tmp[40], digits[24];
    int prec, e = 0;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v) break;
    }
    /* tmp: [-]d[.ddd]e[+-]xx */
    const char *p = tmp;
    char *o = out;
    if (*p == '-') *o++ = '-', p++;
    int k = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[k++] = *p;
    while (k > 1 && digits[k - 1] == '0') k--;
    digits[k] = 0;
    if (*p == 'e') e = atoi(p + 1);
    int n = e + 1;
    if (k <= n && n <= 21) {
        memcpy(o, digits, (size_t)k);
        o += k;
        for (int i = 0; i < n - k; i++) *o++ = '0';
    } else if (0 < n && n <= 21) {
        memcpy(o, digits, (size_t)n);
        o += n;
        *o++ = '.';
        memcpy(o, digits + n, (size_t)(k - n));
        o += k - n;
    } else if (-6 < n && n <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -n; i++) *o++ = '0';
        memcpy(o, digits, (size_t)k);
        o += k;
    } else {
        *o++ = digits[0];
        if (k > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)(k - 1));
            o += k - 1;
        }
        o += sprintf(o, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
    }
    *o = 0;
}

/* FloatValue.toString(): "-0.0", toFixed(1) for integral values, else as
 * any number. */
static void js_float(double v, char *out, size_t cap) {
    if (v == 0 && signbit(v)) {
        strcpy(out, "-0.0");
    } else if (isfinite(v) && v == floor(v) && fabs(v) < 1e21) {
        snprintf(out, cap, "%.1f", v);
    } else {
        js_num(v, out);
    }
}

/* JavaScript's StringToNumber (loose ==): NaN when s is not a number. */
static double js_str_to_num(jstr s) {
    s = js_trim_end(js_trim_start(s));
    if (!s.n) return 0;
    char buf[64];
    if (s.n >= sizeof buf) return NAN;
    memcpy(buf, s.s, s.n);
    buf[s.n] = 0;
    if (buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X' || buf[1] == 'o' || buf[1] == 'O' || buf[1] == 'b' ||
                          buf[1] == 'B')) {
        int base = (buf[1] | 32) == 'x' ? 16 : (buf[1] | 32) == 'o' ? 8 : 2;
        if (!buf[2]) return NAN;
        double v = 0;
        for (const char *p = buf + 2; *p; p++) {
            int d = (*p >= '0' && *p <= '9') ? *p - '0' : ((*p | 32) >= 'a' && (*p | 32) <= 'f') ? (*p | 32) - 'a' + 10 : 99;
            if (d >= base) return NAN;
            v = v * base + d;
        }
        return v;
    }
    const char *p = buf;
    int neg = 0;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    if (!strcmp(p, "Infinity")) return neg ? -INFINITY : INFINITY;
    const char *q = p;
    int digits = 0;
    while (*q >= '0' && *q <= '9') q++, digits++;
    if (*q == '.') {
        q++;
        while (*q >= '0' && *q <= '9') q++, digits++;
    }
    if (!digits) return NAN;
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-') q++;
        if (!(*q >= '0' && *q <= '9')) return NAN;
        while (*q >= '0' && *q <= '9') q++;
    }
    if (*q) return NAN;
    return strtod(buf, NULL);
}

/* ---- Case mapping -------------------------------------------------------- */

/* Code points toUpperCase/toLowerCase leave alone: ASCII non-letters aside,
 * scripts without case, symbols, CJK, emoji. */
static int caseless(uint32_t c) {
    return (c >= 0x0590 && c < 0x10A0) || (c >= 0x1100 && c < 0x13A0) || (c >= 0x2000 && c < 0x2100) ||
           (c >= 0x2190 && c < 0x2460) || (c >= 0x2500 && c < 0x2C00) || (c >= 0x2E00 && c < 0xA640) ||
           (c >= 0xAC00 && c < 0xFB00) || (c >= 0xFB50 && c < 0xFF21) || (c >= 0xFF3B && c < 0xFF41) ||
           (c >= 0xFF5B && c < 0x10000) || (c >= 0x1F000 && c < 0x1FC00) || (c >= 0x20000 && c < 0x40000);
}

/* Writes the case mapping of c (upper or lower) to out; returns its byte
 * count, 0 when this build does not know c's mapping. */
static size_t map_case(uint32_t c, int upper, char *out) {
    uint32_t r = c;
    if (c < 0x80) {
        if (upper && c >= 'a' && c <= 'z') r = c - 32;
        if (!upper && c >= 'A' && c <= 'Z') r = c + 32;
    } else if (c < 0x100) {
        if (upper) {
            if (c == 0xDF) {
                out[0] = 'S';
                out[1] = 'S';
                return 2;
            }
            if (c == 0xB5) r = 0x39C;
            else if (c == 0xFF) r = 0x178;
            else if (c >= 0xE0 && c <= 0xFE && c != 0xF7) r = c - 32;
        } else if (c >= 0xC0 && c <= 0xDE && c != 0xD7) {
            r = c + 32;
        }
    } else if (!caseless(c)) {
        return 0;
    }
    return emdpo_utf8_encode(r, out);
}

/* ---- Preprocessing: lexer.ts preprocess ---------------------------------- */

/* A string being rebuilt, with the original offset of each byte. */
typedef struct pbuf {
    char *s;
    size_t *map;
    size_t n, cap;
} pbuf;

static void pbuf_free(pbuf *b) {
    emdpo_free(b->s, b->cap);
    emdpo_free(b->map, b->cap * sizeof *b->map);
    memset(b, 0, sizeof *b);
}

static int pbuf_init(pbuf *b, size_t cap) {
    memset(b, 0, sizeof *b);
    b->cap = cap ? cap : 1;
    b->s = emdpo_malloc(b->cap);
    b->map = emdpo_malloc(b->cap * sizeof *b->map);
    if (!b->s || !b->map) {
        pbuf_free(b);
        return EMDPO_ERR_NOMEM;
    }
    return 0;
}

/* Appends from->s[i] (room was reserved: outputs never outgrow inputs). */
static void pbuf_put(pbuf *b, const pbuf *from, size_t i) {
    b->s[b->n] = from->s[i];
    b->map[b->n++] = from->map[i];
}

static int line_start(const pbuf *b, size_t i) {
    if (i == 0) return 1;
    char c = b->s[i - 1];
    if (c == '\n' || c == '\r') return 1;
    return i >= 3 && (unsigned char)b->s[i - 3] == 0xE2 && (unsigned char)b->s[i - 2] == 0x80 &&
           ((unsigned char)b->s[i - 1] == 0xA8 || (unsigned char)b->s[i - 1] == 0xA9);
}

/* Matches /{%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/ at s[i]; returns the
 * end of the match (0 when none), the flags and where the trailing
 * whitespace starts. */
static size_t gen_tag(const char *s, size_t n, size_t i, int *lstrip, int *rstrip, size_t *after) {
    if (i + 2 > n || s[i] != '{' || s[i + 1] != '%') return 0;
    size_t j = i + 2, l;
    *lstrip = j < n && s[j] == '-';
    if (*lstrip) j++;
    while ((l = ws_at(s + j, n - j))) j += l;
    if (j + 3 <= n && !memcmp(s + j, "end", 3)) j += 3;
    if (j + 10 > n || memcmp(s + j, "generation", 10)) return 0;
    j += 10;
    while ((l = ws_at(s + j, n - j))) j += l;
    *rstrip = j < n && s[j] == '-';
    if (*rstrip) j++;
    if (j + 2 > n || s[j] != '%' || s[j + 1] != '}') return 0;
    j += 2;
    *after = j;
    while ((l = ws_at(s + j, n - j))) j += l;
    return j;
}

/* The template as the lexer sees it, with lstrip_blocks and trim_blocks
 * (Template's constructor sets both). */
static int preprocess(const char *src, size_t len, pbuf *out) {
    pbuf a, b;
    int rc = pbuf_init(&a, len);
    if (rc) return rc;
    for (size_t i = 0; i < len; i++) a.s[i] = src[i], a.map[i] = i;
    a.n = len;
    if (a.n && a.s[a.n - 1] == '\n') a.n--;
    /* lstrip_blocks: /^[ \t]*({[#%-])/gm -> "$1" */
    if ((rc = pbuf_init(&b, a.n))) goto fail_a;
    for (size_t i = 0; i < a.n;) {
        if (line_start(&a, i)) {
            size_t j = i;
            while (j < a.n && (a.s[j] == ' ' || a.s[j] == '\t')) j++;
            if (j > i && j + 1 < a.n && a.s[j] == '{' && (a.s[j + 1] == '#' || a.s[j + 1] == '%' || a.s[j + 1] == '-')) i = j;
        }
        pbuf_put(&b, &a, i++);
    }
    pbuf_free(&a);
    /* trim_blocks: /([#%-]})\n/g -> "$1" */
    if ((rc = pbuf_init(&a, b.n))) goto fail_b;
    for (size_t i = 0; i < b.n;) {
        if (i + 2 < b.n && (b.s[i] == '#' || b.s[i] == '%' || b.s[i] == '-') && b.s[i + 1] == '}' && b.s[i + 2] == '\n') {
            pbuf_put(&a, &b, i);
            pbuf_put(&a, &b, i + 1);
            i += 3;
        } else {
            pbuf_put(&a, &b, i++);
        }
    }
    pbuf_free(&b);
    /* transformers' {% generation %} / {% endgeneration %} tags go */
    if ((rc = pbuf_init(&b, a.n))) goto fail_a;
    size_t mark = 0;
    for (size_t i = 0; i < a.n;) {
        int ls, rs;
        size_t after, end = gen_tag(a.s, a.n, i, &ls, &rs, &after);
        if (!end) {
            pbuf_put(&b, &a, i++);
            continue;
        }
        size_t l;
        while (ls && b.n > mark && (l = ws_before(b.s, mark, b.n))) b.n -= l;
        if (!rs)
            for (size_t k = after; k < end; k++) pbuf_put(&b, &a, k);
        i = end;
        mark = b.n;
    }
    pbuf_free(&a);
    *out = b;
    return 0;
fail_b:
    pbuf_free(&b);
    return rc;
fail_a:
    pbuf_free(&a);
    return rc;
}

/* ---- Tokens: lexer.ts tokenize ------------------------------------------- */

enum {
    T_TEXT, T_NUM, T_STR, T_IDENT, T_EQUALS, T_LPAREN, T_RPAREN, T_OPEN_STMT, T_CLOSE_STMT, T_OPEN_EXPR,
    T_CLOSE_EXPR, T_LBRACKET, T_RBRACKET, T_LBRACE, T_RBRACE, T_COMMA, T_DOT, T_COLON, T_PIPE, T_ADD, T_MUL,
    T_POW, T_CMP, T_UNARY, T_COMMENT
};

static const char *const k_tok_names[] = {
    "Text", "NumericLiteral", "StringLiteral", "Identifier", "Equals", "OpenParen", "CloseParen", "OpenStatement",
    "CloseStatement", "OpenExpression", "CloseExpression", "OpenSquareBracket", "CloseSquareBracket",
    "OpenCurlyBracket", "CloseCurlyBracket", "Comma", "Dot", "Colon", "Pipe", "AdditiveBinaryOperator",
    "MultiplicativeBinaryOperator", "ExponentiationBinaryOperator", "ComparisonBinaryOperator", "UnaryOperator",
    "Comment"};

typedef struct tok {
    int type;
    jstr v;
    long line;
} tok;

typedef struct lexer {
    const char *s; /* the preprocessed template */
    size_t n;
    const size_t *map;
    const char *orig;
    size_t orig_n;
    size_t *nl; /* offsets of the original's newlines */
    size_t n_nl;
    tok *toks;
    size_t nt, cap;
    arena *a;
    emdpo_diag *diag;
    const char *name;
} lexer;

static long line_at(const lexer *L, size_t pre) {
    size_t o = pre < L->n ? L->map[pre] : L->orig_n;
    size_t lo = 0, hi = L->n_nl; /* count of newlines before o */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (L->nl[mid] < o) lo = mid + 1;
        else hi = mid;
    }
    return (long)lo + 1;
}

static int lex_fail(lexer *L, size_t at, const char *fmt, ...) EMDPO_PRINTF(3, 4);
static int lex_fail(lexer *L, size_t at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char msg[200];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return emdpo_diag_at(L->diag, EMDPO_ERR_PARSE, L->name, line_at(L, at), "syntax error: %s", msg);
}

static int push_tok(lexer *L, int type, const char *s, size_t n, size_t at) {
    if (emdpo_grow((void **)&L->toks, &L->cap, L->nt + 1, sizeof *L->toks)) return EMDPO_ERR_NOMEM;
    L->toks[L->nt].type = type;
    L->toks[L->nt].v.s = s;
    L->toks[L->nt].v.n = n;
    L->toks[L->nt].line = line_at(L, at);
    L->nt++;
    return 0;
}

static int is_word(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }

/* A character of the preprocessed text, or -1 past its end. */
#define CH(i) ((i) < L->n ? (unsigned char)L->s[(i)] : -1)

/* consumeWhile(isWhitespace): throws when the input ends inside. */
static int lex_skip_ws(lexer *L, size_t *pos) {
    size_t l;
    while ((l = ws_at(L->s + *pos, L->n - *pos))) {
        *pos += l;
        if (*pos >= L->n) return lex_fail(L, *pos, "Unexpected end of input");
    }
    return 0;
}

static int lex_digits(lexer *L, size_t *pos) {
    while (is_digit(CH(*pos)))
        if (++*pos >= L->n) return lex_fail(L, *pos, "Unexpected end of input");
    return 0;
}

/* A string literal's contents from s[*pos] to the closing quote. */
static int lex_string(lexer *L, size_t *pos, char quote) {
    size_t start = *pos, i = start;
    int escapes = 0;
    for (;; i++) {
        if (i >= L->n) return lex_fail(L, start, "Unexpected end of input");
        if (L->s[i] == quote) break;
        if (L->s[i] == '\\') {
            escapes = 1;
            i++;
            if (i >= L->n) return lex_fail(L, start, "Unexpected end of input");
        }
    }
    if (!escapes) {
        *pos = i + 1;
        return push_tok(L, T_STR, L->s + start, i - start, start);
    }
    char *out = arena_alloc(L->a, i - start + 1);
    if (!out) return EMDPO_ERR_NOMEM;
    size_t o = 0;
    uint32_t pending_hi = 0; /* a \uD8xx waiting for its low half */
    for (size_t k = start; k < i;) {
        char c = L->s[k++];
        if (c != '\\') {
            if (pending_hi) goto lone;
            out[o++] = c;
            continue;
        }
        char e = L->s[k++];
        const char *simple = strchr("ntrbfv'\"\\", e);
        if (e && simple) {
            if (pending_hi) goto lone;
            static const char repl[] = "\n\t\r\b\f\v'\"\\";
            out[o++] = repl[simple - "ntrbfv'\"\\"];
        } else if (e == 'x' || e == 'u') {
            size_t hl = e == 'x' ? 2 : 4;
            uint32_t v = 0;
            for (size_t h = 0; h < hl; h++) {
                int d = k + h < i ? L->s[k + h] : 0;
                int dv = is_digit(d) ? d - '0' : ((d | 32) >= 'a' && (d | 32) <= 'f') ? (d | 32) - 'a' + 10 : -1;
                if (dv < 0) return lex_fail(L, k, "Invalid hexadecimal escape sequence: \\%c", e);
                v = v * 16 + (uint32_t)dv;
            }
            k += hl;
            if (v >= 0xDC00 && v < 0xE000) {
                if (!pending_hi) goto lone;
                v = 0x10000 + ((pending_hi - 0xD800) << 10) + (v - 0xDC00);
                pending_hi = 0;
            } else if (pending_hi) {
                goto lone;
            } else if (v >= 0xD800 && v < 0xDC00) {
                pending_hi = v;
                continue;
            }
            o += emdpo_utf8_encode(v, out + o);
        } else {
            return lex_fail(L, k, "Unexpected escaped character: %c", e);
        }
    }
    if (pending_hi) goto lone;
    *pos = i + 1;
    return push_tok(L, T_STR, out, o, start);
lone:
    return emdpo_diag_at(L->diag, EMDPO_ERR_UNSUPPORTED, L->name, line_at(L, start),
                         "unsupported: a string literal with a lone UTF-16 surrogate escape");
}

static void strip_trailing_ws(lexer *L) {
    if (!L->nt || L->toks[L->nt - 1].type != T_TEXT) return;
    L->toks[L->nt - 1].v = js_trim_end(L->toks[L->nt - 1].v);
    if (!L->toks[L->nt - 1].v.n) L->nt--;
}

static void skip_leading_ws(lexer *L, size_t *pos) {
    size_t l;
    while (*pos < L->n && (l = ws_at(L->s + *pos, L->n - *pos))) *pos += l;
}

static const struct {
    const char *seq;
    int type;
} k_rules[] = {{"{%", T_OPEN_STMT}, {"%}", T_CLOSE_STMT}, {"{{", T_OPEN_EXPR}, {"}}", T_CLOSE_EXPR},
               {"(", T_LPAREN},     {")", T_RPAREN},      {"{", T_LBRACE},     {"}", T_RBRACE},
               {"[", T_LBRACKET},   {"]", T_RBRACKET},    {",", T_COMMA},      {".", T_DOT},
               {":", T_COLON},      {"|", T_PIPE},        {"<=", T_CMP},       {">=", T_CMP},
               {"==", T_CMP},       {"!=", T_CMP},        {"<", T_CMP},        {">", T_CMP},
               {"+", T_ADD},        {"-", T_ADD},         {"~", T_ADD},        {"**", T_POW},
               {"*", T_MUL},        {"//", T_MUL},        {"/", T_MUL},        {"%", T_MUL},
               {"=", T_EQUALS}};

static int tokenize(lexer *L) {
    size_t pos = 0;
    int depth = 0, rc;
    while (pos < L->n) {
        int last = L->nt ? L->toks[L->nt - 1].type : -1;
        if (last == -1 || last == T_CLOSE_STMT || last == T_CLOSE_EXPR || last == T_COMMENT) {
            size_t end = pos;
            for (;;) {
                const char *b = memchr(L->s + end, '{', L->n - end);
                if (!b) {
                    end = L->n;
                    break;
                }
                end = (size_t)(b - L->s);
                int nx = CH(end + 1);
                if (nx == '%' || nx == '{' || nx == '#') break;
                end++;
            }
            if (end > pos) {
                if ((rc = push_tok(L, T_TEXT, L->s + pos, end - pos, pos))) return rc;
                pos = end;
                continue;
            }
        }
        if (CH(pos) == '{') {
            int nx = CH(pos + 1);
            if (nx == '#') {
                size_t start = pos;
                pos += 2;
                int strip_before = CH(pos) == '-';
                if (strip_before) pos++;
                size_t end = pos;
                while (end + 1 < L->n && !(L->s[end] == '#' && L->s[end + 1] == '}')) end++;
                if (end + 1 >= L->n) return lex_fail(L, start, "Missing end of comment tag");
                int strip_after = end > pos && L->s[end - 1] == '-';
                if (strip_before) strip_trailing_ws(L);
                if ((rc = push_tok(L, T_COMMENT, L->s + pos, end - pos, start))) return rc;
                pos = end + 2;
                if (strip_after) skip_leading_ws(L, &pos);
                continue;
            }
            if (CH(pos + 2) == '-' && (nx == '%' || nx == '{')) {
                strip_trailing_ws(L);
                if ((rc = push_tok(L, nx == '%' ? T_OPEN_STMT : T_OPEN_EXPR, L->s + pos, 2, pos))) return rc;
                if (nx == '{') depth = 0;
                pos += 3;
                continue;
            }
        }
        if ((rc = lex_skip_ws(L, &pos))) return rc;
        int c = CH(pos);
        if (c == '-' && CH(pos + 2) == '}' && (CH(pos + 1) == '%' || CH(pos + 1) == '}')) {
            if ((rc = push_tok(L, CH(pos + 1) == '%' ? T_CLOSE_STMT : T_CLOSE_EXPR, L->s + pos + 1, 2, pos))) return rc;
            pos += 3;
            skip_leading_ws(L, &pos);
            continue;
        }
        if (c == '-' || c == '+') {
            if (last == T_TEXT || last == -1) return lex_fail(L, pos, "Unexpected character: %c", c);
            if (!(last == T_IDENT || last == T_NUM || last == T_STR || last == T_RPAREN || last == T_RBRACKET)) {
                size_t start = pos++;
                if ((rc = lex_digits(L, &pos))) return rc;
                if (pos > start + 1 && CH(pos) == '.' && is_digit(CH(pos + 1))) {
                    pos++;
                    if ((rc = lex_digits(L, &pos))) return rc;
                }
                if ((rc = push_tok(L, pos > start + 1 ? T_NUM : T_UNARY, L->s + start, pos - start, start))) return rc;
                continue;
            }
        }
        int matched = 0;
        for (size_t r = 0; r < sizeof k_rules / sizeof k_rules[0]; r++) {
            size_t sl = strlen(k_rules[r].seq);
            if (k_rules[r].type == T_CLOSE_EXPR && depth > 0) continue;
            if (pos + sl <= L->n && !memcmp(L->s + pos, k_rules[r].seq, sl)) {
                if ((rc = push_tok(L, k_rules[r].type, L->s + pos, sl, pos))) return rc;
                if (k_rules[r].type == T_OPEN_EXPR) depth = 0;
                else if (k_rules[r].type == T_LBRACE) depth++;
                else if (k_rules[r].type == T_RBRACE) depth--;
                pos += sl;
                matched = 1;
                break;
            }
        }
        if (matched) continue;
        if (c == '\'' || c == '"') {
            pos++;
            if ((rc = lex_string(L, &pos, (char)c))) return rc;
            continue;
        }
        if (is_digit(c)) {
            size_t start = pos;
            if ((rc = lex_digits(L, &pos))) return rc;
            if (last != T_DOT && CH(pos) == '.' && is_digit(CH(pos + 1))) {
                pos++;
                if ((rc = lex_digits(L, &pos))) return rc;
            }
            if ((rc = push_tok(L, T_NUM, L->s + start, pos - start, start))) return rc;
            continue;
        }
        if (is_word(c)) {
            size_t start = pos;
            while (is_word(CH(pos)))
                if (++pos >= L->n) return lex_fail(L, start, "Unexpected end of input");
            if ((rc = push_tok(L, T_IDENT, L->s + start, pos - start, start))) return rc;
            continue;
        }
        uint32_t cp;
        size_t l = emdpo_utf8_decode(L->s + pos, L->n - pos, &cp);
        return lex_fail(L, pos, "Unexpected character: %.*s", (int)l, L->s + pos);
    }
    return 0;
}

/* ---- The syntax tree: parser.ts ------------------------------------------ */

enum {
    /* statements */
    N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_MACRO, N_BREAK, N_CONTINUE, N_FILTER_BLOCK,
    /* expressions */
    N_IDENT, N_INT, N_FLOAT, N_STR, N_ARRAY, N_TUPLE, N_OBJECT, N_BIN, N_UNARY, N_MEMBER, N_SLICE, N_CALL,
    N_FILTER, N_TEST, N_SELECT, N_TERNARY, N_KWARG
};

enum { OP_OR, OP_AND, OP_EQ, OP_NE, OP_LT, OP_GT, OP_LE, OP_GE, OP_IN, OP_NOTIN, OP_ADD, OP_SUB, OP_CAT, OP_MUL,
       OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_NOT, OP_NEG, OP_POS };

static const char *const k_op_names[] = {"or", "and", "==", "!=", "<",  ">",  "<=", ">=", "in", "not in", "+",
                                         "-",  "~",   "*",  "/",  "//", "%",  "**", "not", "-", "+"};

typedef struct node node;
struct node {
    int kind, op, flag; /* flag: MEMBER computed, TEST negated */
    long line;
    jstr str; /* TEXT, STR, IDENT, TEST's name, KWARG's key, MACRO's name */
    double num;
    node *a, *b, *c;
    node **list; /* bodies, arguments, elements, keys */
    size_t n;
    node **list2; /* else bodies, object values */
    size_t n2;
};

struct emdpo_jinja {
    arena a;
    node **body;
    size_t n;
    char name[256];
};

#define MAX_PARSE_DEPTH 200

typedef struct parser {
    const tok *t;
    size_t n, cur;
    int depth;
    arena *a;
    emdpo_diag *diag;
    const char *name;
    long last_line;
} parser;

static long p_line(const parser *P) {
    if (P->cur < P->n) return P->t[P->cur].line;
    return P->n ? P->t[P->n - 1].line : 1;
}

static int p_fail(parser *P, int rc, const char *fmt, ...) EMDPO_PRINTF(3, 4);
static int p_fail(parser *P, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char msg[200];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return emdpo_diag_at(P->diag, rc, P->name, p_line(P), "%s%s", rc == EMDPO_ERR_PARSE ? "syntax error: " : "", msg);
}

static node *p_node(parser *P, int kind, long line) {
    node *x = arena_alloc(P->a, sizeof *x);
    if (x) {
        memset(x, 0, sizeof *x);
        x->kind = kind;
        x->line = line;
    }
    return x;
}

/* A growing list of nodes, copied into the arena when done. */
typedef struct nlist {
    node **v;
    size_t n, cap;
} nlist;

static int nl_push(nlist *l, node *x) {
    if (emdpo_grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v)) return EMDPO_ERR_NOMEM;
    l->v[l->n++] = x;
    return 0;
}

static int nl_done(parser *P, nlist *l, node ***out, size_t *n) {
    *out = NULL;
    *n = l->n;
    if (l->n) {
        *out = arena_alloc(P->a, l->n * sizeof **out);
        if (!*out) {
            emdpo_free(l->v, l->cap * sizeof *l->v);
            return EMDPO_ERR_NOMEM;
        }
        memcpy(*out, l->v, l->n * sizeof **out);
    }
    emdpo_free(l->v, l->cap * sizeof *l->v);
    memset(l, 0, sizeof *l);
    return 0;
}

static void nl_drop(nlist *l) {
    emdpo_free(l->v, l->cap * sizeof *l->v);
    memset(l, 0, sizeof *l);
}

static int p_is(const parser *P, int type) { return P->cur < P->n && P->t[P->cur].type == type; }
static int p_is_ident(const parser *P, const char *name) { return p_is(P, T_IDENT) && jstr_eq(P->t[P->cur].v, name); }
static int p_is_ident_at(const parser *P, size_t k, const char *name) {
    return P->cur + k < P->n && P->t[P->cur + k].type == T_IDENT && jstr_eq(P->t[P->cur + k].v, name);
}

/* isStatement(names...): "{%" followed by one of the names. */
static int p_is_stmt(const parser *P, const char *a, const char *b, const char *c) {
    if (!p_is(P, T_OPEN_STMT) || P->cur + 1 >= P->n || P->t[P->cur + 1].type != T_IDENT) return 0;
    jstr v = P->t[P->cur + 1].v;
    return jstr_eq(v, a) || (b && jstr_eq(v, b)) || (c && jstr_eq(v, c));
}

static int p_expect(parser *P, int type, const char *what) {
    if (P->cur >= P->n) return p_fail(P, EMDPO_ERR_PARSE, "%s, found the end of the template", what);
    if (P->t[P->cur].type != type)
        return p_fail(P, EMDPO_ERR_PARSE, "%s. %s !== %s.", what, k_tok_names[P->t[P->cur].type], k_tok_names[type]);
    P->cur++;
    return 0;
}

static int p_expect_ident(parser *P, const char *name) {
    if (!p_is_ident(P, name)) return p_fail(P, EMDPO_ERR_PARSE, "Expected %s", name);
    P->cur++;
    return 0;
}

static int parse_expr(parser *P, node **out);
static int parse_primary(parser *P, node **out);
static int parse_any(parser *P, node **out);

#define TRY(x)                    \
    do {                          \
        int rc_ = (x);            \
        if (rc_) return rc_;      \
    } while (0)

#define NEW(var, kind, line)                         \
    do {                                             \
        if (!((var) = p_node(P, (kind), (line))))    \
            return EMDPO_ERR_NOMEM;                  \
    } while (0)

/* Statements until one of the named statements (not consumed). */
static int parse_body(parser *P, const char *a, const char *b, const char *c, node ***out, size_t *n) {
    nlist l = {0};
    while (!p_is_stmt(P, a, b, c)) {
        if (P->cur >= P->n) {
            nl_drop(&l);
            return p_fail(P, EMDPO_ERR_PARSE, "missing {%% %s %%}", a);
        }
        node *x;
        int rc = parse_any(P, &x);
        if (!rc && x) rc = nl_push(&l, x);
        if (rc) {
            nl_drop(&l);
            return rc;
        }
    }
    return nl_done(P, &l, out, n);
}

/* parseExpressionSequence: one expression, or a tuple of them. */
static int parse_seq(parser *P, int primary, node **out) {
    long line = p_line(P);
    node *first;
    TRY(primary ? parse_primary(P, &first) : parse_expr(P, &first));
    if (!p_is(P, T_COMMA)) {
        *out = first;
        return 0;
    }
    nlist l = {0};
    int rc = nl_push(&l, first);
    while (!rc) {
        P->cur++;
        node *x;
        if ((rc = primary ? parse_primary(P, &x) : parse_expr(P, &x))) break;
        if ((rc = nl_push(&l, x))) break;
        if (!p_is(P, T_COMMA)) break;
    }
    if (rc) {
        nl_drop(&l);
        return rc;
    }
    node *t = p_node(P, N_TUPLE, line);
    if (!t) {
        nl_drop(&l);
        return EMDPO_ERR_NOMEM;
    }
    *out = t;
    return nl_done(P, &l, &t->list, &t->n);
}

/* parseArgs: "(" arguments ")"; params: a macro's parameter list. */
static int parse_args(parser *P, int params, node ***out, size_t *n) {
    TRY(p_expect(P, T_LPAREN, "Expected opening parenthesis for arguments list"));
    nlist l = {0};
    int saw_kw = 0, rc = 0;
    while (!p_is(P, T_RPAREN)) {
        if (P->cur >= P->n) {
            rc = p_fail(P, EMDPO_ERR_PARSE, "Expected closing parenthesis for arguments list");
            break;
        }
        if (p_is(P, T_POW) || (p_is(P, T_MUL) && jstr_eq(P->t[P->cur].v, "*"))) {
            rc = params ? p_fail(P, EMDPO_ERR_PARSE, "Argument unpacking is not allowed in parameter declarations")
                        : p_fail(P, EMDPO_ERR_UNSUPPORTED, "unsupported: argument unpacking (*args, **kwargs)");
            break;
        }
        node *arg;
        if ((rc = parse_expr(P, &arg))) break;
        if (p_is(P, T_EQUALS)) {
            P->cur++;
            if (arg->kind != N_IDENT) {
                rc = p_fail(P, EMDPO_ERR_PARSE, params ? "Expected identifier for parameter declaration"
                                                       : "Expected identifier for keyword argument");
                break;
            }
            node *kw = p_node(P, N_KWARG, arg->line);
            if (!kw) {
                rc = EMDPO_ERR_NOMEM;
                break;
            }
            kw->str = arg->str;
            if ((rc = parse_expr(P, &kw->a))) break;
            arg = kw;
        }
        if (params) {
            if (arg->kind != N_IDENT && arg->kind != N_KWARG) {
                rc = p_fail(P, EMDPO_ERR_PARSE, "Expected identifier for parameter declaration");
                break;
            }
            for (size_t i = 0; i < l.n; i++)
                if (jstr_same(l.v[i]->str, arg->str)) {
                    rc = p_fail(P, EMDPO_ERR_PARSE, "Duplicate parameter name: %.*s", (int)arg->str.n, arg->str.s);
                    break;
                }
            if (rc) break;
        }
        if (arg->kind == N_KWARG) {
            saw_kw = 1;
        } else if (saw_kw) {
            rc = p_fail(P, EMDPO_ERR_PARSE, params ? "Non-default argument follows default argument"
                                                   : "Positional arguments must come before keyword arguments");
            break;
        }
        if ((rc = nl_push(&l, arg))) break;
        if (p_is(P, T_COMMA)) P->cur++;
    }
    if (!rc) rc = p_expect(P, T_RPAREN, "Expected closing parenthesis for arguments list");
    if (rc) {
        nl_drop(&l);
        return rc;
    }
    return nl_done(P, &l, out, n);
}

static int parse_call(parser *P, node *callee, node **out);

/* parseMemberExpression */
static int parse_member(parser *P, node *obj, node **out) {
    while (p_is(P, T_DOT) || p_is(P, T_LBRACKET)) {
        int computed = p_is(P, T_LBRACKET);
        long line = p_line(P);
        P->cur++;
        node *m;
        NEW(m, N_MEMBER, line);
        m->a = obj;
        m->flag = computed;
        if (computed) {
            node *sl[3] = {0};
            int count = 0, is_slice = 0;
            while (!p_is(P, T_RBRACKET)) {
                if (P->cur >= P->n) return p_fail(P, EMDPO_ERR_PARSE, "Expected closing square bracket");
                if (count >= 3) return p_fail(P, EMDPO_ERR_PARSE, "Expected 0-3 arguments for slice expression");
                if (p_is(P, T_COLON)) {
                    sl[count++] = NULL;
                    P->cur++;
                    is_slice = 1;
                } else {
                    TRY(parse_expr(P, &sl[count++]));
                    if (p_is(P, T_COLON)) {
                        P->cur++;
                        is_slice = 1;
                    }
                }
            }
            if (!count) return p_fail(P, EMDPO_ERR_PARSE, "Expected at least one argument for member/slice expression");
            if (is_slice) {
                node *s;
                NEW(s, N_SLICE, line);
                s->a = sl[0];
                s->b = sl[1];
                s->c = sl[2];
                m->b = s;
            } else {
                m->b = sl[0];
            }
            TRY(p_expect(P, T_RBRACKET, "Expected closing square bracket"));
        } else {
            TRY(parse_primary(P, &m->b));
            if (m->b->kind != N_IDENT && m->b->kind != N_INT)
                return p_fail(P, EMDPO_ERR_PARSE, "Expected identifier or integer following dot operator");
        }
        obj = m;
    }
    *out = obj;
    return 0;
}

static int parse_call(parser *P, node *callee, node **out) {
    node *c;
    NEW(c, N_CALL, p_line(P));
    c->a = callee;
    TRY(parse_args(P, 0, &c->list, &c->n));
    node *m;
    TRY(parse_member(P, c, &m));
    if (p_is(P, T_LPAREN)) return parse_call(P, m, out);
    *out = m;
    return 0;
}

static int parse_call_member(parser *P, node **out) {
    node *prim, *m;
    TRY(parse_primary(P, &prim));
    TRY(parse_member(P, prim, &m));
    if (p_is(P, T_LPAREN)) return parse_call(P, m, out);
    *out = m;
    return 0;
}

static int parse_unary_sign(parser *P, node **out) {
    if (P->depth > MAX_PARSE_DEPTH) return p_fail(P, EMDPO_ERR_LIMIT, "expressions nest deeper than %d", MAX_PARSE_DEPTH);
    if ((p_is(P, T_UNARY) || p_is(P, T_ADD)) && (jstr_eq(P->t[P->cur].v, "-") || jstr_eq(P->t[P->cur].v, "+"))) {
        node *u;
        NEW(u, N_UNARY, p_line(P));
        u->op = P->t[P->cur].v.s[0] == '-' ? OP_NEG : OP_POS;
        P->cur++;
        P->depth++;
        int rc = parse_unary_sign(P, &u->a);
        P->depth--;
        *out = u;
        return rc;
    }
    return parse_call_member(P, out);
}

static int parse_filter(parser *P, node **out) {
    node *x;
    TRY(parse_unary_sign(P, &x));
    while (p_is(P, T_PIPE)) {
        long line = p_line(P);
        P->cur++;
        node *f;
        TRY(parse_primary(P, &f));
        if (f->kind != N_IDENT) return p_fail(P, EMDPO_ERR_PARSE, "Expected identifier for the filter");
        if (p_is(P, T_LPAREN)) TRY(parse_call(P, f, &f));
        node *fx;
        NEW(fx, N_FILTER, line);
        fx->a = x;
        fx->b = f;
        x = fx;
    }
    *out = x;
    return 0;
}

static int parse_test(parser *P, node **out) {
    node *x = NULL;
    TRY(parse_filter(P, &x));
    while (p_is_ident(P, "is")) {
        long line = p_line(P);
        P->cur++;
        int neg = p_is_ident(P, "not");
        if (neg) P->cur++;
        node *t;
        TRY(parse_primary(P, &t));
        if (t->kind != N_IDENT) return p_fail(P, EMDPO_ERR_PARSE, "Expected identifier for the test");
        node *tx;
        NEW(tx, N_TEST, line);
        tx->a = x;
        tx->flag = neg;
        tx->str = t->str;
        x = tx;
    }
    *out = x;
    return 0;
}

static int bin(parser *P, int op, long line, node *l, node *r, node **out) {
    node *b;
    NEW(b, N_BIN, line);
    b->op = op;
    b->a = l;
    b->b = r;
    *out = b;
    return 0;
}

static int parse_power(parser *P, node **out) {
    node *x, *r;
    TRY(parse_test(P, &x));
    while (p_is(P, T_POW)) {
        long line = p_line(P);
        P->cur++;
        TRY(parse_test(P, &r));
        TRY(bin(P, OP_POW, line, x, r, &x));
    }
    *out = x;
    return 0;
}

static int parse_mul(parser *P, node **out) {
    node *x, *r;
    TRY(parse_power(P, &x));
    while (p_is(P, T_MUL)) {
        jstr v = P->t[P->cur].v;
        long line = p_line(P);
        int op = jstr_eq(v, "*") ? OP_MUL : jstr_eq(v, "/") ? OP_DIV : jstr_eq(v, "//") ? OP_FLOORDIV : OP_MOD;
        P->cur++;
        TRY(parse_power(P, &r));
        TRY(bin(P, op, line, x, r, &x));
    }
    *out = x;
    return 0;
}

static int parse_add(parser *P, node **out) {
    node *x, *r;
    TRY(parse_mul(P, &x));
    while (p_is(P, T_ADD)) {
        char c = P->t[P->cur].v.s[0];
        long line = p_line(P);
        P->cur++;
        TRY(parse_mul(P, &r));
        TRY(bin(P, c == '+' ? OP_ADD : c == '-' ? OP_SUB : OP_CAT, line, x, r, &x));
    }
    *out = x;
    return 0;
}

static int parse_cmp(parser *P, node **out) {
    node *x, *r;
    TRY(parse_add(P, &x));
    for (;;) {
        int op;
        long line = p_line(P);
        if (p_is_ident(P, "not") && p_is_ident_at(P, 1, "in")) {
            op = OP_NOTIN;
            P->cur += 2;
        } else if (p_is_ident(P, "in")) {
            op = OP_IN;
            P->cur++;
        } else if (p_is(P, T_CMP)) {
            jstr v = P->t[P->cur++].v;
            op = jstr_eq(v, "==") ? OP_EQ : jstr_eq(v, "!=") ? OP_NE : jstr_eq(v, "<") ? OP_LT : jstr_eq(v, ">") ? OP_GT
                 : jstr_eq(v, "<=") ? OP_LE : OP_GE;
        } else {
            break;
        }
        TRY(parse_add(P, &r));
        TRY(bin(P, op, line, x, r, &x));
    }
    *out = x;
    return 0;
}

static int parse_not(parser *P, node **out) {
    if (p_is_ident(P, "not")) {
        if (P->depth > MAX_PARSE_DEPTH) return p_fail(P, EMDPO_ERR_LIMIT, "expressions nest deeper than %d", MAX_PARSE_DEPTH);
        node *u;
        NEW(u, N_UNARY, p_line(P));
        u->op = OP_NOT;
        P->cur++;
        P->depth++;
        int rc = parse_not(P, &u->a);
        P->depth--;
        *out = u;
        return rc;
    }
    return parse_cmp(P, out);
}

static int parse_and(parser *P, node **out) {
    node *x, *r;
    TRY(parse_not(P, &x));
    while (p_is_ident(P, "and")) {
        long line = p_line(P);
        P->cur++;
        TRY(parse_not(P, &r));
        TRY(bin(P, OP_AND, line, x, r, &x));
    }
    *out = x;
    return 0;
}

static int parse_or(parser *P, node **out) {
    node *x, *r;
    TRY(parse_and(P, &x));
    while (p_is_ident(P, "or")) {
        long line = p_line(P);
        P->cur++;
        TRY(parse_and(P, &r));
        TRY(bin(P, OP_OR, line, x, r, &x));
    }
    *out = x;
    return 0;
}

/* parseIfExpression: a if b else c, or a select "a if b". */
static int parse_if_expr(parser *P, node **out) {
    node *a;
    TRY(parse_or(P, &a));
    if (!p_is_ident(P, "if")) {
        *out = a;
        return 0;
    }
    long line = p_line(P);
    P->cur++;
    node *test;
    TRY(parse_or(P, &test));
    if (p_is_ident(P, "else")) {
        P->cur++;
        node *t;
        NEW(t, N_TERNARY, line);
        t->a = test;
        t->b = a;
        *out = t;
        P->depth++;
        int rc = P->depth > MAX_PARSE_DEPTH ? p_fail(P, EMDPO_ERR_LIMIT, "expressions nest deeper than %d", MAX_PARSE_DEPTH)
                                            : parse_if_expr(P, &t->c);
        P->depth--;
        return rc;
    }
    node *s;
    NEW(s, N_SELECT, line);
    s->a = a;
    s->b = test;
    *out = s;
    return 0;
}

static int parse_expr(parser *P, node **out) {
    if (++P->depth > MAX_PARSE_DEPTH) {
        P->depth--;
        return p_fail(P, EMDPO_ERR_LIMIT, "expressions nest deeper than %d", MAX_PARSE_DEPTH);
    }
    int rc = parse_if_expr(P, out);
    P->depth--;
    return rc;
}

static int parse_primary(parser *P, node **out) {
    if (P->cur >= P->n) return p_fail(P, EMDPO_ERR_PARSE, "unexpected end of the template in an expression");
    const tok *t = &P->t[P->cur++];
    node *x;
    switch (t->type) {
    case T_NUM: {
        char *buf = arena_alloc(P->a, t->v.n + 1); /* Number(text): digits, a sign, a point */
        if (!buf) return EMDPO_ERR_NOMEM;
        memcpy(buf, t->v.s, t->v.n);
        buf[t->v.n] = 0;
        int is_float = memchr(t->v.s, '.', t->v.n) != NULL;
        NEW(x, is_float ? N_FLOAT : N_INT, t->line);
        x->num = strtod(buf, NULL);
        *out = x;
        return 0;
    }
    case T_STR: {
        NEW(x, N_STR, t->line);
        x->str = t->v;
        if (p_is(P, T_STR)) { /* adjacent literals join */
            size_t total = t->v.n, k = P->cur;
            while (k < P->n && P->t[k].type == T_STR) total += P->t[k++].v.n;
            char *s = arena_alloc(P->a, total + 1);
            if (!s) return EMDPO_ERR_NOMEM;
            memcpy(s, t->v.s, t->v.n);
            size_t o = t->v.n;
            while (p_is(P, T_STR)) {
                memcpy(s + o, P->t[P->cur].v.s, P->t[P->cur].v.n);
                o += P->t[P->cur++].v.n;
            }
            x->str.s = s;
            x->str.n = o;
        }
        *out = x;
        return 0;
    }
    case T_IDENT:
        NEW(x, N_IDENT, t->line);
        x->str = t->v;
        *out = x;
        return 0;
    case T_LPAREN:
        TRY(parse_seq(P, 0, out));
        return p_expect(P, T_RPAREN, "Expected closing parenthesis");
    case T_LBRACKET: {
        nlist l = {0};
        int rc = 0;
        while (!rc && !p_is(P, T_RBRACKET)) {
            if (P->cur >= P->n) {
                rc = p_fail(P, EMDPO_ERR_PARSE, "Expected closing square bracket");
                break;
            }
            node *e;
            if (!(rc = parse_expr(P, &e))) rc = nl_push(&l, e);
            if (!rc && p_is(P, T_COMMA)) P->cur++;
        }
        if (rc) {
            nl_drop(&l);
            return rc;
        }
        P->cur++;
        x = p_node(P, N_ARRAY, t->line);
        if (!x) {
            nl_drop(&l);
            return EMDPO_ERR_NOMEM;
        }
        *out = x;
        return nl_done(P, &l, &x->list, &x->n);
    }
    case T_LBRACE: {
        nlist k = {0}, v = {0};
        int rc = 0;
        while (!rc && !p_is(P, T_RBRACE)) {
            if (P->cur >= P->n) {
                rc = p_fail(P, EMDPO_ERR_PARSE, "Expected closing curly bracket");
                break;
            }
            node *key, *val;
            if ((rc = parse_expr(P, &key))) break;
            if ((rc = p_expect(P, T_COLON, "Expected colon between key and value in object literal"))) break;
            if ((rc = parse_expr(P, &val))) break;
            if ((rc = nl_push(&k, key)) || (rc = nl_push(&v, val))) break;
            if (p_is(P, T_COMMA)) P->cur++;
        }
        if (!rc) {
            P->cur++;
            x = p_node(P, N_OBJECT, t->line);
            if (!x) rc = EMDPO_ERR_NOMEM;
        }
        if (rc) {
            nl_drop(&k);
            nl_drop(&v);
            return rc;
        }
        *out = x;
        rc = nl_done(P, &k, &x->list, &x->n);
        if (rc) {
            nl_drop(&v);
            return rc;
        }
        return nl_done(P, &v, &x->list2, &x->n2);
    }
    default:
        P->cur--;
        return p_fail(P, EMDPO_ERR_PARSE, "Unexpected token: %s", k_tok_names[t->type]);
    }
}

static int parse_if_stmt(parser *P, long line, node **out) {
    node *x;
    NEW(x, N_IF, line);
    TRY(parse_expr(P, &x->a));
    TRY(p_expect(P, T_CLOSE_STMT, "Expected closing statement token"));
    TRY(parse_body(P, "elif", "else", "endif", &x->list, &x->n));
    if (p_is_stmt(P, "elif", NULL, NULL)) {
        long l2 = P->t[P->cur].line;
        P->cur += 2;
        node *nested;
        if (++P->depth > MAX_PARSE_DEPTH) return p_fail(P, EMDPO_ERR_LIMIT, "statements nest deeper than %d", MAX_PARSE_DEPTH);
        TRY(parse_if_stmt(P, l2, &nested));
        P->depth--;
        x->list2 = arena_alloc(P->a, sizeof *x->list2);
        if (!x->list2) return EMDPO_ERR_NOMEM;
        x->list2[0] = nested;
        x->n2 = 1;
    } else if (p_is_stmt(P, "else", NULL, NULL)) {
        P->cur += 2;
        TRY(p_expect(P, T_CLOSE_STMT, "Expected closing statement token"));
        TRY(parse_body(P, "endif", NULL, NULL, &x->list2, &x->n2));
    }
    *out = x;
    return 0;
}

static int parse_end(parser *P, const char *name) {
    TRY(p_expect(P, T_OPEN_STMT, "Expected {% token"));
    TRY(p_expect_ident(P, name));
    return p_expect(P, T_CLOSE_STMT, "Expected %} token");
}

static int parse_stmt(parser *P, node **out) {
    long line = p_line(P);
    P->cur++; /* {% */
    if (!p_is(P, T_IDENT)) {
        if (P->cur >= P->n) return p_fail(P, EMDPO_ERR_PARSE, "unexpected end of the template after {%%");
        return p_fail(P, EMDPO_ERR_PARSE, "Unknown statement, got %s", k_tok_names[P->t[P->cur].type]);
    }
    jstr name = P->t[P->cur].v;
    line = P->t[P->cur].line;
    P->cur++;
    if (++P->depth > MAX_PARSE_DEPTH) return p_fail(P, EMDPO_ERR_LIMIT, "statements nest deeper than %d", MAX_PARSE_DEPTH);
    node *x = NULL;
    if (jstr_eq(name, "set")) {
        NEW(x, N_SET, line);
        TRY(parse_seq(P, 0, &x->a));
        if (p_is(P, T_EQUALS)) {
            P->cur++;
            TRY(parse_seq(P, 0, &x->b));
        } else {
            TRY(p_expect(P, T_CLOSE_STMT, "Expected %} token"));
            TRY(parse_body(P, "endset", NULL, NULL, &x->list, &x->n));
            P->cur++;
            TRY(p_expect_ident(P, "endset"));
        }
        TRY(p_expect(P, T_CLOSE_STMT, "Expected closing statement token"));
    } else if (jstr_eq(name, "if")) {
        TRY(parse_if_stmt(P, line, &x));
        TRY(parse_end(P, "endif"));
    } else if (jstr_eq(name, "macro")) {
        NEW(x, N_MACRO, line);
        node *id;
        TRY(parse_primary(P, &id));
        if (id->kind != N_IDENT) return p_fail(P, EMDPO_ERR_PARSE, "Expected identifier following macro statement");
        x->str = id->str;
        TRY(parse_args(P, 1, &x->list, &x->n));
        TRY(p_expect(P, T_CLOSE_STMT, "Expected closing statement token"));
        TRY(parse_body(P, "endmacro", NULL, NULL, &x->list2, &x->n2));
        TRY(parse_end(P, "endmacro"));
    } else if (jstr_eq(name, "for")) {
        NEW(x, N_FOR, line);
        TRY(parse_seq(P, 1, &x->a));
        if (x->a->kind != N_IDENT && x->a->kind != N_TUPLE)
            return p_fail(P, EMDPO_ERR_PARSE, "Expected identifier/tuple for the loop variable");
        if (!p_is_ident(P, "in")) return p_fail(P, EMDPO_ERR_PARSE, "Expected `in` keyword following loop variable");
        P->cur++;
        TRY(parse_expr(P, &x->b));
        TRY(p_expect(P, T_CLOSE_STMT, "Expected closing statement token"));
        TRY(parse_body(P, "endfor", "else", NULL, &x->list, &x->n));
        if (p_is_stmt(P, "else", NULL, NULL)) {
            P->cur += 2;
            TRY(p_expect(P, T_CLOSE_STMT, "Expected closing statement token"));
            TRY(parse_body(P, "endfor", NULL, NULL, &x->list2, &x->n2));
        }
        TRY(parse_end(P, "endfor"));
    } else if (jstr_eq(name, "break") || jstr_eq(name, "continue")) {
        NEW(x, jstr_eq(name, "break") ? N_BREAK : N_CONTINUE, line);
        TRY(p_expect(P, T_CLOSE_STMT, "Expected closing statement token"));
    } else if (jstr_eq(name, "filter")) {
        NEW(x, N_FILTER_BLOCK, line);
        TRY(parse_primary(P, &x->a));
        if (x->a->kind == N_IDENT && p_is(P, T_LPAREN)) TRY(parse_call(P, x->a, &x->a));
        if (x->a->kind != N_IDENT && !(x->a->kind == N_CALL && x->a->a->kind == N_IDENT))
            return p_fail(P, EMDPO_ERR_PARSE, "Expected a filter name following filter statement");
        TRY(p_expect(P, T_CLOSE_STMT, "Expected closing statement token"));
        TRY(parse_body(P, "endfilter", NULL, NULL, &x->list, &x->n));
        TRY(parse_end(P, "endfilter"));
    } else if (jstr_eq(name, "call")) {
        return p_fail(P, EMDPO_ERR_UNSUPPORTED, "unsupported: {%% call %%} blocks");
    } else {
        P->cur--;
        return p_fail(P, EMDPO_ERR_PARSE, "Unknown statement type: %.*s", (int)name.n, name.s);
    }
    P->depth--;
    *out = x;
    return 0;
}

/* parseAny; *out NULL for a comment. */
static int parse_any(parser *P, node **out) {
    const tok *t = &P->t[P->cur];
    *out = NULL;
    switch (t->type) {
    case T_COMMENT:
        P->cur++;
        return 0;
    case T_TEXT:
        NEW(*out, N_TEXT, t->line);
        (*out)->str = t->v;
        P->cur++;
        return 0;
    case T_OPEN_STMT:
        return parse_stmt(P, out);
    case T_OPEN_EXPR: {
        node *o;
        NEW(o, N_OUT, t->line);
        P->cur++;
        TRY(parse_expr(P, &o->a));
        TRY(p_expect(P, T_CLOSE_EXPR, "Expected closing expression token"));
        *out = o;
        return 0;
    }
    default:
        return p_fail(P, EMDPO_ERR_PARSE, "Unexpected token type: %s", k_tok_names[t->type]);
    }
}

void emdpo_jinja_free(emdpo_jinja *t) {
    if (!t) return;
    arena a = t->a;
    arena_free(&a);
}

int emdpo_jinja_parse(const char *src, size_t len, const char *name, emdpo_jinja **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, name);
    if (!out || (!src && len)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no template");
    *out = NULL;
    size_t bad = emdpo_utf8_invalid_at(src ? src : "", len);
    if (bad < len) {
        long line = 1;
        for (size_t i = 0; i < bad; i++) line += src[i] == '\n';
        return emdpo_diag_at(diag, EMDPO_ERR_PARSE, name, line, "the template is not valid UTF-8 (byte %zu)", bad);
    }
    arena a = {0};
    emdpo_jinja *t = arena_alloc(&a, sizeof *t);
    if (!t) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
    pbuf pre = {0};
    lexer L;
    memset(&L, 0, sizeof L);
    int rc = preprocess(src ? src : "", len, &pre);
    size_t nl_cap = 0;
    if (!rc) {
        L.n = pre.n;
        L.map = pre.map;
        L.orig = src;
        L.orig_n = len;
        L.a = &a;
        L.diag = diag;
        L.name = name;
        char *s = arena_alloc(&a, pre.n + 1);
        if (!s) rc = EMDPO_ERR_NOMEM;
        else {
            memcpy(s, pre.s, pre.n);
            s[pre.n] = 0;
            L.s = s;
        }
        for (size_t i = 0; !rc && i < len; i++)
            if (src[i] == '\n') {
                if (emdpo_grow((void **)&L.nl, &nl_cap, L.n_nl + 1, sizeof *L.nl)) rc = EMDPO_ERR_NOMEM;
                else L.nl[L.n_nl++] = i;
            }
    }
    if (!rc) rc = tokenize(&L);
    if (!rc) {
        parser P = {L.toks, L.nt, 0, 0, &a, diag, name, 0};
        nlist body = {0};
        while (!rc && P.cur < P.n) {
            node *x;
            if (!(rc = parse_any(&P, &x)) && x) rc = nl_push(&body, x);
        }
        if (!rc) rc = nl_done(&P, &body, &t->body, &t->n);
        else nl_drop(&body);
    }
    pbuf_free(&pre);
    emdpo_free(L.nl, nl_cap * sizeof *L.nl);
    emdpo_free(L.toks, L.cap * sizeof *L.toks);
    if (rc) {
        if (rc == EMDPO_ERR_NOMEM) emdpo_diag_at(diag, rc, name, 0, "out of memory");
        arena_free(&a);
        return rc;
    }
    t->a = a;
    *out = t;
    return 0;
}

/* ---- Values: runtime.ts ---------------------------------------------------- */

enum { V_UNDEF, V_NULL, V_BOOL, V_INT, V_FLOAT, V_STR, V_ARRAY, V_TUPLE, V_OBJECT, V_NS, V_KWARGS, V_FUNC };

static const char *const k_type_names[] = {"UndefinedValue", "NullValue",      "BooleanValue",  "IntegerValue",
                                           "FloatValue",     "StringValue",    "ArrayValue",    "TupleValue",
                                           "ObjectValue",    "NamespaceValue", "KeywordArgumentsValue", "FunctionValue"};

/* Functions: the globals, the methods of strings and objects, macros. */
enum { F_RAISE, F_RANGE, F_NAMESPACE, F_MACRO, F_UPPER, F_LOWER, F_STRIP, F_TITLE, F_CAPITALIZE, F_RSTRIP, F_LSTRIP,
       F_STARTSWITH, F_ENDSWITH, F_SPLIT, F_REPLACE, F_GET, F_ITEMS, F_KEYS, F_VALUES, F_DICTSORT };

typedef struct jv jv;
typedef struct env env;
struct jv {
    int t;
    int fn;     /* FUNC */
    double num; /* BOOL (0/1), INT, FLOAT */
    jstr s;     /* STR */
    jv **items; /* ARRAY, TUPLE; OBJECT, NS, KWARGS: the values */
    jstr *keys; /* OBJECT, NS, KWARGS */
    size_t n, cap;
    jv *self;          /* FUNC: a method's receiver */
    const node *macro; /* FUNC F_MACRO */
    env *closure;
};

struct env {
    env *parent;
    jstr *names;
    jv **vals;
    size_t n, cap;
};

typedef struct jbuf {
    char *s;
    size_t n, cap;
} jbuf;

typedef struct rctx {
    const emdpo_jinja *t;
    arena a;
    emdpo_jinja_limits lim;
    emdpo_diag *diag;
    long steps;
    int depth, macro_depth;
    const node *at; /* the node being evaluated, for messages */
} rctx;

static jv k_undef = {V_UNDEF, 0, 0, {0, 0}, 0, 0, 0, 0, 0, 0, 0};
static jv k_null = {V_NULL, 0, 0, {0, 0}, 0, 0, 0, 0, 0, 0, 0};
static jv k_true = {V_BOOL, 0, 1, {0, 0}, 0, 0, 0, 0, 0, 0, 0};
static jv k_false = {V_BOOL, 0, 0, {0, 0}, 0, 0, 0, 0, 0, 0, 0};

#define JB_BREAK (-100)
#define JB_CONTINUE (-101)

static int r_fail(rctx *R, int rc, const node *at, const char *fmt, ...) EMDPO_PRINTF(4, 5);
static int r_fail(rctx *R, int rc, const node *at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char msg[220];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!at) at = R->at;
    return emdpo_diag_at(R->diag, rc, R->t->name, at ? at->line : 0, "%s", msg);
}

/* A template error @huggingface/jinja raises too. */
#define TERR(R, at, ...) r_fail((R), EMDPO_ERR_PARSE, (at), __VA_ARGS__)
/* Something @huggingface/jinja does that this interpreter does not. */
#define UNSUP(R, at, ...) r_fail((R), EMDPO_ERR_UNSUPPORTED, (at), "unsupported: " __VA_ARGS__)

static int r_nomem(rctx *R) {
    if (R->a.over)
        return r_fail(R, EMDPO_ERR_LIMIT, NULL, "the render holds more than %zu bytes of values", R->lim.max_memory);
    return r_fail(R, EMDPO_ERR_NOMEM, NULL, "out of memory");
}

static void *r_alloc(rctx *R, size_t n) { return arena_alloc(&R->a, n); }

static jv *v_new(rctx *R, int t) {
    jv *v = r_alloc(R, sizeof *v);
    if (v) {
        memset(v, 0, sizeof *v);
        v->t = t;
    }
    return v;
}

static jv *v_num(rctx *R, int t, double x) {
    jv *v = v_new(R, t);
    if (v) v->num = x;
    return v;
}

static jv *v_bool(int b) { return b ? &k_true : &k_false; }

/* A string value holding a copy of s[0..n). */
static jv *v_str(rctx *R, const char *s, size_t n) {
    jv *v = v_new(R, V_STR);
    if (!v) return NULL;
    char *c = r_alloc(R, n + 1);
    if (!c) return NULL;
    if (n) memcpy(c, s, n);
    c[n] = 0;
    v->s.s = c;
    v->s.n = n;
    return v;
}

/* A string value over s (which lives as long as the render). */
static jv *v_str_ref(rctx *R, jstr s) {
    jv *v = v_new(R, V_STR);
    if (v) v->s = s;
    return v;
}

static jv *v_list(rctx *R, int t, size_t n) {
    jv *v = v_new(R, t);
    if (!v) return NULL;
    if (n) {
        if (n > SIZE_MAX / sizeof(jv *) / 2) return NULL;
        v->items = r_alloc(R, n * sizeof *v->items);
        if (!v->items) return NULL;
        if (t == V_OBJECT || t == V_NS || t == V_KWARGS) {
            v->keys = r_alloc(R, n * sizeof *v->keys);
            if (!v->keys) return NULL;
        }
    }
    v->cap = n;
    return v;
}

static jv *obj_get(const jv *o, jstr key) {
    for (size_t i = 0; i < o->n; i++)
        if (jstr_same(o->keys[i], key)) return o->items[i];
    return NULL;
}

/* Sets key in a map value (replacing in place, as Map.set). */
static int obj_set(rctx *R, jv *o, jstr key, jv *val) {
    for (size_t i = 0; i < o->n; i++)
        if (jstr_same(o->keys[i], key)) {
            o->items[i] = val;
            return 0;
        }
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 4;
        jv **items = r_alloc(R, cap * sizeof *items);
        jstr *keys = r_alloc(R, cap * sizeof *keys);
        if (!items || !keys) return EMDPO_ERR_NOMEM;
        if (o->n) {
            memcpy(items, o->items, o->n * sizeof *items);
            memcpy(keys, o->keys, o->n * sizeof *keys);
        }
        o->items = items;
        o->keys = keys;
        o->cap = cap;
    }
    o->keys[o->n] = key;
    o->items[o->n++] = val;
    return 0;
}

static int is_map(const jv *v) { return v->t == V_OBJECT || v->t == V_KWARGS; } /* instanceof ObjectValue */
static int is_attr_container(const jv *v) { return is_map(v) || v->t == V_NS; }
static int is_arr(const jv *v) { return v->t == V_ARRAY || v->t == V_TUPLE; } /* instanceof ArrayValue */
static int is_num(const jv *v) { return v->t == V_INT || v->t == V_FLOAT; }

/* __bool__ */
static int truthy(const jv *v) {
    switch (v->t) {
    case V_UNDEF:
    case V_NULL:
        return 0;
    case V_BOOL:
    case V_INT:
    case V_FLOAT:
        return v->num != 0 && !isnan(v->num);
    case V_STR:
        return v->s.n > 0;
    case V_ARRAY:
    case V_TUPLE:
    case V_OBJECT:
    case V_KWARGS:
        return v->n > 0;
    default: /* namespaces and functions */
        return 1;
    }
}

/* ---- Buffers ------------------------------------------------------------- */

static int jb_put(rctx *R, jbuf *b, const char *s, size_t n) {
    if (!n) return 0;
    if (n > R->lim.max_output || b->n > R->lim.max_output - n)
        return r_fail(R, EMDPO_ERR_LIMIT, NULL, "the output exceeds %zu bytes", R->lim.max_output);
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = emdpo_realloc(b->s, b->cap, cap);
        if (!p) return r_fail(R, EMDPO_ERR_NOMEM, NULL, "out of memory");
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return 0;
}

static int jb_puts(rctx *R, jbuf *b, const char *s) { return jb_put(R, b, s, strlen(s)); }
static void jb_free(jbuf *b) {
    emdpo_free(b->s, b->cap);
    memset(b, 0, sizeof *b);
}

/* The buffer's text as a string value; frees the buffer. */
static int jb_to_val(rctx *R, jbuf *b, jv **out) {
    *out = v_str(R, b->s ? b->s : "", b->n);
    jb_free(b);
    return *out ? 0 : r_nomem(R);
}

/* ---- Conversions to text ---------------------------------------------------- */

static int to_json(rctx *R, jbuf *b, const jv *v, long indent, int ascii, const char *item_sep, const char *key_sep,
                   int depth, int undef_null);

/* RuntimeValue.toString(): what {{ v }} prints. */
static int display(rctx *R, jbuf *b, const jv *v) {
    char num[64];
    switch (v->t) {
    case V_UNDEF:
        return jb_puts(R, b, "undefined");
    case V_NULL: /* NullValue's value is JavaScript's undefined */
        return jb_puts(R, b, "undefined");
    case V_BOOL:
        return jb_puts(R, b, v->num ? "true" : "false");
    case V_INT:
        js_num(v->num, num);
        return jb_puts(R, b, num);
    case V_FLOAT:
        js_float(v->num, num, sizeof num);
        return jb_puts(R, b, num);
    case V_STR:
        return jb_put(R, b, v->s.s, v->s.n);
    case V_FUNC:
        return UNSUP(R, NULL, "printing a function (JavaScript prints its source)");
    default:
        return to_json(R, b, v, 0, 0, ", ", ": ", 0, 0);
    }
}

/* String(v.value): what ~, + and raise_exception make of a value. */
static int js_string(rctx *R, jbuf *b, const jv *v) {
    char num[64];
    switch (v->t) {
    case V_INT:
    case V_FLOAT:
        js_num(v->num, num);
        return jb_puts(R, b, num);
    case V_ARRAY:
    case V_TUPLE:
        for (size_t i = 0; i < v->n; i++) {
            if (i) TRY(jb_put(R, b, ",", 1));
            TRY(display(R, b, v->items[i]));
        }
        return 0;
    case V_OBJECT:
    case V_NS:
    case V_KWARGS:
        return jb_puts(R, b, "[object Map]");
    default:
        return display(R, b, v);
    }
}

/* JSON.stringify of a string (well-formed: escapes as JavaScript's). */
static int json_quote(rctx *R, jbuf *b, jstr s, int ascii) {
    TRY(jb_put(R, b, "\"", 1));
    size_t run = 0;
    for (size_t i = 0; i < s.n;) {
        unsigned char c = (unsigned char)s.s[i];
        char esc[16];
        const char *e = NULL;
        size_t adv = 1;
        if (c == '"') e = "\\\"";
        else if (c == '\\') e = "\\\\";
        else if (c == '\n') e = "\\n";
        else if (c == '\r') e = "\\r";
        else if (c == '\t') e = "\\t";
        else if (c == '\b') e = "\\b";
        else if (c == '\f') e = "\\f";
        else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            e = esc;
        } else if (ascii && c >= 0x7F) {
            uint32_t cp;
            adv = emdpo_utf8_decode(s.s + i, s.n - i, &cp);
            if (cp >= 0x10000)
                snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xD800 + ((cp - 0x10000) >> 10),
                         0xDC00 + ((cp - 0x10000) & 0x3FF));
            else
                snprintf(esc, sizeof esc, "\\u%04x", cp);
            e = esc;
        }
        if (e) {
            TRY(jb_put(R, b, s.s + i - run, run));
            run = 0;
            TRY(jb_puts(R, b, e));
            i += adv;
        } else {
            run++;
            i++;
        }
    }
    TRY(jb_put(R, b, s.s + s.n - run, run));
    return jb_put(R, b, "\"", 1);
}

/* runtime.ts toJSON */
static int to_json(rctx *R, jbuf *b, const jv *v, long indent, int ascii, const char *item_sep, const char *key_sep,
                   int depth, int undef_null) {
    char num[64];
    if (depth > R->lim.max_depth) return r_fail(R, EMDPO_ERR_LIMIT, NULL, "tojson: values nest deeper than %d", R->lim.max_depth);
    switch (v->t) {
    case V_NULL:
        return jb_puts(R, b, "null");
    case V_UNDEF:
        return jb_puts(R, b, undef_null ? "null" : "undefined");
    case V_INT:
    case V_FLOAT:
        if (!isfinite(v->num)) return jb_puts(R, b, "null");
        js_num(v->num, num);
        return jb_puts(R, b, num);
    case V_BOOL:
        return jb_puts(R, b, v->num ? "true" : "false");
    case V_STR:
        return json_quote(R, b, v->s, ascii);
    case V_FUNC:
    case V_TUPLE:
    case V_KWARGS:
        return TERR(R, NULL, "Cannot convert to JSON: %s", k_type_names[v->t]);
    default:
        break;
    }
    int obj = !is_arr(v);
    TRY(jb_put(R, b, obj ? "{" : "[", 1));
    for (size_t i = 0; i < v->n; i++) {
        if (i) TRY(jb_puts(R, b, item_sep));
        if (indent > 0) {
            TRY(jb_put(R, b, "\n", 1));
            for (long k = 0; k < (long)(depth + 1) * indent; k++) TRY(jb_put(R, b, " ", 1));
        }
        if (obj) {
            TRY(json_quote(R, b, v->keys[i], ascii));
            TRY(jb_puts(R, b, key_sep));
        }
        TRY(to_json(R, b, v->items[i], indent, ascii, item_sep, key_sep, depth + 1, undef_null));
    }
    if (indent > 0 && v->n) {
        TRY(jb_put(R, b, "\n", 1));
        for (long k = 0; k < (long)depth * indent; k++) TRY(jb_put(R, b, " ", 1));
    }
    return jb_put(R, b, obj ? "}" : "]", 1);
}

/* ---- Equality and comparison --------------------------------------------- */

/* === on .value (a NullValue's value is undefined too) */
static int strict_eq(const jv *a, const jv *b) {
    if (is_num(a) && is_num(b)) return a->num == b->num;
    if ((a->t == V_NULL || a->t == V_UNDEF) && (b->t == V_NULL || b->t == V_UNDEF)) return 1;
    if (a->t != b->t) return 0;
    switch (a->t) {
    case V_UNDEF:
    case V_NULL:
        return 1;
    case V_BOOL:
        return a->num == b->num;
    case V_STR:
        return jstr_same(a->s, b->s);
    default:
        return a == b || (a->items && a->items == b->items); /* the same array or map */
    }
}

/* The primitive JavaScript makes of a value in ==: *is_str set for text
 * (in *txt), else a number in *num; 0 for null/undefined. */
static int loose_prim(rctx *R, const jv *v, jbuf *txt, double *num, int *is_str) {
    *is_str = 0;
    switch (v->t) {
    case V_BOOL:
    case V_INT:
    case V_FLOAT:
        *num = v->num;
        return 0;
    case V_STR:
        *is_str = 1;
        return jb_put(R, txt, v->s.s, v->s.n);
    default:
        *is_str = 1;
        return js_string(R, txt, v);
    }
}

/* == on .value: JavaScript's loose equality. */
static int loose_eq(rctx *R, const jv *a, const jv *b, int *eq) {
    int an = a->t == V_UNDEF || a->t == V_NULL, bn = b->t == V_UNDEF || b->t == V_NULL;
    if (an || bn) {
        *eq = an && bn;
        return 0;
    }
    int ao = a->t >= V_ARRAY, bo = b->t >= V_ARRAY;
    if ((ao && bo) || (a->t == b->t) || (is_num(a) && is_num(b))) {
        *eq = strict_eq(a, b);
        return 0;
    }
    if (a->t == V_FUNC || b->t == V_FUNC) return UNSUP(R, NULL, "comparing a function with ==");
    jbuf ta = {0}, tb = {0};
    double na = 0, nb = 0;
    int as, bs, rc = loose_prim(R, a, &ta, &na, &as);
    if (!rc) rc = loose_prim(R, b, &tb, &nb, &bs);
    if (!rc) {
        jstr sa = {ta.s ? ta.s : "", ta.n}, sb = {tb.s ? tb.s : "", tb.n};
        if (as && bs) *eq = jstr_same(sa, sb);
        else {
            if (as) na = js_str_to_num(sa);
            if (bs) nb = js_str_to_num(sb);
            *eq = na == nb;
        }
    }
    jb_free(&ta);
    jb_free(&tb);
    return rc;
}

/* compareRuntimeValues; lower: compare strings lowercased. */
static int case_map(rctx *R, jstr s, int upper, jstr *out);

static int compare_vals(rctx *R, const jv *a, const jv *b, int case_sensitive, int *res) {
    if (a->t == V_NULL && b->t == V_NULL) return *res = 0, 0;
    if (a->t == V_NULL || b->t == V_NULL || ((a->t == V_UNDEF) != (b->t == V_UNDEF)))
        return TERR(R, NULL, "Cannot compare %s with %s", k_type_names[a->t], k_type_names[b->t]);
    if (a->t == V_UNDEF) return *res = 0, 0;
    int an = is_num(a) || a->t == V_BOOL, bn = is_num(b) || b->t == V_BOOL;
    if (an && bn) {
        *res = a->num < b->num ? -1 : a->num > b->num ? 1 : 0;
        return 0;
    }
    if (a->t != b->t) return TERR(R, NULL, "Cannot compare different types: %s and %s", k_type_names[a->t], k_type_names[b->t]);
    if (a->t != V_STR) return TERR(R, NULL, "Cannot compare type: %s", k_type_names[a->t]);
    jstr x = a->s, y = b->s;
    if (!case_sensitive) {
        TRY(case_map(R, x, 0, &x));
        TRY(case_map(R, y, 0, &y));
    }
    *res = u16cmp(x, y);
    return 0;
}

/* toUpperCase / toLowerCase into a new arena string. */
static int case_map(rctx *R, jstr s, int upper, jstr *out) {
    char *o = r_alloc(R, s.n * 2 + 1);
    if (!o) return r_nomem(R);
    size_t k = 0;
    for (size_t i = 0; i < s.n;) {
        uint32_t cp;
        size_t l = emdpo_utf8_decode(s.s + i, s.n - i, &cp);
        size_t w = map_case(cp, upper, o + k);
        if (!w) return UNSUP(R, NULL, "%s of the letter U+%04X (case mapping is known for ASCII and Latin-1 only)",
                             upper ? "upper case" : "lower case", (unsigned)cp);
        k += w;
        i += l;
    }
    o[k] = 0;
    out->s = o;
    out->n = k;
    return 0;
}

/* ---- Scopes: Environment --------------------------------------------------- */

static env *env_new(rctx *R, env *parent) {
    env *e = r_alloc(R, sizeof *e);
    if (e) {
        memset(e, 0, sizeof *e);
        e->parent = parent;
    }
    return e;
}

static jv **env_slot(env *e, jstr name) {
    for (size_t i = 0; i < e->n; i++)
        if (jstr_same(e->names[i], name)) return &e->vals[i];
    return NULL;
}

static int env_set(rctx *R, env *e, jstr name, jv *v) {
    jv **slot = env_slot(e, name);
    if (slot) {
        *slot = v;
        return 0;
    }
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 8;
        jstr *names = r_alloc(R, cap * sizeof *names);
        jv **vals = r_alloc(R, cap * sizeof *vals);
        if (!names || !vals) return r_nomem(R);
        if (e->n) {
            memcpy(names, e->names, e->n * sizeof *names);
            memcpy(vals, e->vals, e->n * sizeof *vals);
        }
        e->names = names;
        e->vals = vals;
        e->cap = cap;
    }
    e->names[e->n] = name;
    e->vals[e->n++] = v;
    return 0;
}

static jv k_namespace_fn = {V_FUNC, F_NAMESPACE, 0, {0, 0}, 0, 0, 0, 0, 0, 0, 0};

/* lookupVariable: every scope holds its own `namespace` unless it set one. */
static jv *env_lookup(env *e, jstr name) {
    for (; e; e = e->parent) {
        jv **slot = env_slot(e, name);
        if (slot) return *slot;
        if (jstr_eq(name, "namespace")) return &k_namespace_fn;
    }
    return &k_undef;
}

/* ---- Evaluation ------------------------------------------------------------ */

static int eval(rctx *R, const node *x, env *e, jv **out);
static int exec_block(rctx *R, node *const *body, size_t n, env *e, jbuf *out);
static int call_fn(rctx *R, const node *at, jv *fn, jv **args, size_t nargs, env *e, jv **out);
static int apply_filter(rctx *R, jv *operand, const node *f, env *e, jv **out);

static int step(rctx *R, const node *at) {
    if (++R->steps > R->lim.max_steps)
        return r_fail(R, EMDPO_ERR_LIMIT, at, "the template ran more than %ld steps", R->lim.max_steps);
    return 0;
}

/* A new string value: a ~ b or a + b. */
static int concat(rctx *R, const jv *a, const jv *b, int undef_empty, jv **out) {
    jbuf t = {0};
    int rc = 0;
    if (!(undef_empty && a->t == V_UNDEF)) rc = js_string(R, &t, a);
    if (!rc && !(undef_empty && b->t == V_UNDEF)) rc = js_string(R, &t, b);
    if (rc) {
        jb_free(&t);
        return rc;
    }
    return jb_to_val(R, &t, out);
}

/* evaluateBinaryExpression */
static int eval_bin(rctx *R, const node *x, env *e, jv **out) {
    jv *l, *r;
    TRY(eval(R, x->a, e, &l));
    if (x->op == OP_AND) return truthy(l) ? eval(R, x->b, e, out) : (*out = l, 0);
    if (x->op == OP_OR) return truthy(l) ? (*out = l, 0) : eval(R, x->b, e, out);
    TRY(eval(R, x->b, e, &r));
    R->at = x;
    int op = x->op;
    if (op == OP_EQ || op == OP_NE) {
        int eq = 0;
        TRY(loose_eq(R, l, r, &eq));
        *out = v_bool(op == OP_EQ ? eq : !eq);
        return 0;
    }
    if (is_num(l) && is_num(r) && op != OP_CAT && op != OP_POW) {
        double a = l->num, b = r->num, res;
        int isf = l->t == V_FLOAT || r->t == V_FLOAT, matched = 1;
        switch (op) {
        case OP_ADD: res = a + b; break;
        case OP_SUB: res = a - b; break;
        case OP_MUL: res = a * b; break;
        case OP_DIV: res = a / b; isf = 1; break;
        case OP_FLOORDIV: res = floor(a / b); break;
        case OP_MOD: res = fmod(a, b); break;
        case OP_LT: *out = v_bool(a < b); return 0;
        case OP_GT: *out = v_bool(a > b); return 0;
        case OP_GE: *out = v_bool(a >= b); return 0;
        case OP_LE: *out = v_bool(a <= b); return 0;
        default: matched = 0; res = 0;
        }
        if (matched) {
            *out = v_num(R, isf ? V_FLOAT : V_INT, res);
            return *out ? 0 : r_nomem(R);
        }
    } else if (l->t == V_UNDEF || r->t == V_UNDEF) {
        if (r->t == V_UNDEF && (op == OP_IN || op == OP_NOTIN)) {
            *out = v_bool(op == OP_NOTIN);
            return 0;
        }
        if (op == OP_CAT && l->t != V_NULL && r->t != V_NULL) return concat(R, l, r, 1, out);
        return TERR(R, x, "Cannot perform operation %s on undefined values", k_op_names[op]);
    } else if (l->t == V_NULL || r->t == V_NULL) {
        return TERR(R, x, "Cannot perform operation on null values");
    } else if (op == OP_CAT) {
        return concat(R, l, r, 0, out);
    } else if (op == OP_POW && (is_num(l) || l->t == V_BOOL) && (is_num(r) || r->t == V_BOOL)) {
        double a = l->num, b = r->num;
        if (a == 0 && b < 0) return TERR(R, x, "0.0 cannot be raised to a negative power");
        double res = pow(a, b);
        if (isnan(b) || (fabs(a) == 1 && isinf(b))) res = NAN; /* JavaScript's ** differs from C's pow there */
        if (b == 0) res = 1;
        if (!isfinite(res)) return TERR(R, x, "Exponentiation result is not a finite real number");
        *out = v_num(R, (l->t == V_FLOAT || r->t == V_FLOAT || b < 0) ? V_FLOAT : V_INT, res);
        return *out ? 0 : r_nomem(R);
    } else if (is_arr(l) && is_arr(r)) {
        if (op == OP_ADD) {
            jv *v = v_list(R, V_ARRAY, l->n + r->n);
            if (!v) return r_nomem(R);
            for (size_t i = 0; i < l->n; i++) v->items[v->n++] = l->items[i];
            for (size_t i = 0; i < r->n; i++) v->items[v->n++] = r->items[i];
            *out = v;
            return 0;
        }
    } else if (is_arr(r)) {
        if (op == OP_IN || op == OP_NOTIN) {
            int found = 0;
            for (size_t i = 0; i < r->n && !found; i++) found = strict_eq(r->items[i], l);
            *out = v_bool(op == OP_IN ? found : !found);
            return 0;
        }
    }
    if ((l->t == V_STR || r->t == V_STR) && op == OP_ADD) return concat(R, l, r, 0, out);
    if (l->t == V_STR && r->t == V_STR && (op == OP_IN || op == OP_NOTIN)) {
        int found = l->s.n == 0;
        for (size_t i = 0; !found && l->s.n <= r->s.n && i <= r->s.n - l->s.n; i++)
            found = !memcmp(r->s.s + i, l->s.s, l->s.n);
        *out = v_bool(op == OP_IN ? found : !found);
        return 0;
    }
    if (l->t == V_STR && is_map(r) && (op == OP_IN || op == OP_NOTIN)) {
        int found = obj_get(r, l->s) != NULL;
        *out = v_bool(op == OP_IN ? found : !found);
        return 0;
    }
    return TERR(R, x, "Unknown operator \"%s\" between %s and %s", k_op_names[op], k_type_names[l->t],
                k_type_names[r->t]);
}

/* Python-style slice indices over a sequence of length len (utils.ts slice). */
static int slice_indices(double len, const jv *start, const jv *stop, const jv *stepv, size_t **idx, size_t *count,
                         rctx *R) {
    double step = stepv->t == V_UNDEF ? 1 : stepv->num;
    int dir = step > 0 ? 1 : step < 0 ? -1 : 0;
    double s, t;
    if (dir >= 0) {
        s = start->t == V_UNDEF ? 0 : start->num;
        s = s < 0 ? fmax(len + s, 0) : fmin(s, len);
        t = stop->t == V_UNDEF ? len : stop->num;
        t = t < 0 ? fmax(len + t, 0) : fmin(t, len);
    } else {
        s = start->t == V_UNDEF ? len - 1 : start->num;
        s = s < 0 ? fmax(len + s, -1) : fmin(s, len - 1);
        t = stop->t == V_UNDEF ? -1 : stop->num;
        t = t < -1 ? fmax(len + t, -1) : fmin(t, len - 1);
    }
    size_t n = 0;
    if (dir != 0 && dir * s < dir * t) n = (size_t)ceil((t - s) / step);
    *count = n;
    *idx = n ? r_alloc(R, n * sizeof **idx) : NULL;
    if (n && !*idx) return r_nomem(R);
    for (size_t i = 0; i < n; i++) (*idx)[i] = (size_t)(s + (double)i * step);
    return 0;
}

/* Byte offsets of the code points of s (n + 1 entries). */
static int cp_offsets(rctx *R, jstr s, size_t **offs, size_t *n) {
    size_t k = 0;
    for (size_t i = 0; i < s.n; i++) k += ((unsigned char)s.s[i] & 0xC0) != 0x80;
    *offs = r_alloc(R, (k + 1) * sizeof **offs);
    if (!*offs) return r_nomem(R);
    k = 0;
    for (size_t i = 0; i < s.n; i++)
        if (((unsigned char)s.s[i] & 0xC0) != 0x80) (*offs)[k++] = i;
    (*offs)[k] = s.n;
    *n = k;
    return 0;
}

static int eval_slice(rctx *R, const node *x, jv *obj, env *e, jv **out) {
    if (!is_arr(obj) && obj->t != V_STR) return TERR(R, x, "Slice object must be an array or string");
    jv *st = &k_undef, *sp = &k_undef, *stp = &k_undef;
    if (x->a) TRY(eval(R, x->a, e, &st));
    if (x->b) TRY(eval(R, x->b, e, &sp));
    if (x->c) TRY(eval(R, x->c, e, &stp));
    if (!(st->t == V_INT || st->t == V_UNDEF)) return TERR(R, x, "Slice start must be numeric or undefined");
    if (!(sp->t == V_INT || sp->t == V_UNDEF)) return TERR(R, x, "Slice stop must be numeric or undefined");
    if (!(stp->t == V_INT || stp->t == V_UNDEF)) return TERR(R, x, "Slice step must be numeric or undefined");
    size_t *idx, cnt;
    if (is_arr(obj)) {
        TRY(slice_indices((double)obj->n, st, sp, stp, &idx, &cnt, R));
        jv *v = v_list(R, V_ARRAY, cnt);
        if (!v) return r_nomem(R);
        for (size_t i = 0; i < cnt; i++) v->items[v->n++] = obj->items[idx[i]];
        *out = v;
        return 0;
    }
    size_t *offs, ncp = 0;
    TRY(cp_offsets(R, obj->s, &offs, &ncp));
    TRY(slice_indices((double)ncp, st, sp, stp, &idx, &cnt, R));
    jbuf b = {0};
    for (size_t i = 0; i < cnt; i++) {
        int rc = jb_put(R, &b, obj->s.s + offs[idx[i]], offs[idx[i] + 1] - offs[idx[i]]);
        if (rc) {
            jb_free(&b);
            return rc;
        }
    }
    return jb_to_val(R, &b, out);
}

/* String.prototype.at(i): a UTF-16 code unit. */
static int str_at(rctx *R, const node *x, jstr s, double i, jv **out) {
    double len = (double)u16len(s);
    if (i < 0) i += len;
    if (i < 0 || i >= len || i != floor(i)) {
        *out = &k_undef;
        return 0;
    }
    size_t unit = 0;
    for (size_t b = 0; b < s.n;) {
        uint32_t cp;
        size_t l = emdpo_utf8_decode(s.s + b, s.n - b, &cp);
        size_t w = cp >= 0x10000 ? 2 : 1;
        if ((double)unit == i || (w == 2 && (double)unit + 1 == i)) {
            if (w == 2) return UNSUP(R, x, "indexing half of the character U+%X outside the BMP", (unsigned)cp);
            *out = v_str(R, s.s + b, l);
            return *out ? 0 : r_nomem(R);
        }
        unit += w;
        b += l;
    }
    *out = &k_undef;
    return 0;
}

static jv *method(rctx *R, jv *self, int fn) {
    jv *f = v_new(R, V_FUNC);
    if (f) {
        f->fn = fn;
        f->self = self;
    }
    return f;
}

/* The builtins property of a value (StringValue, ObjectValue, ArrayValue). */
static int builtin_prop(rctx *R, jv *obj, jstr name, jv **out) {
    static const struct {
        const char *name;
        int fn;
    } str_fns[] = {{"upper", F_UPPER},           {"lower", F_LOWER},   {"strip", F_STRIP},   {"title", F_TITLE},
                   {"capitalize", F_CAPITALIZE}, {"rstrip", F_RSTRIP}, {"lstrip", F_LSTRIP}, {"startswith", F_STARTSWITH},
                   {"endswith", F_ENDSWITH},     {"split", F_SPLIT},   {"replace", F_REPLACE}},
      obj_fns[] = {{"get", F_GET}, {"items", F_ITEMS}, {"keys", F_KEYS}, {"values", F_VALUES}, {"dictsort", F_DICTSORT}};
    *out = &k_undef;
    if (obj->t == V_STR) {
        if (jstr_eq(name, "length")) {
            *out = v_num(R, V_INT, (double)u16len(obj->s));
            return *out ? 0 : r_nomem(R);
        }
        for (size_t i = 0; i < sizeof str_fns / sizeof str_fns[0]; i++)
            if (jstr_eq(name, str_fns[i].name)) *out = method(R, obj, str_fns[i].fn);
    } else if (is_map(obj)) {
        for (size_t i = 0; i < sizeof obj_fns / sizeof obj_fns[0]; i++)
            if (jstr_eq(name, obj_fns[i].name)) *out = method(R, obj, obj_fns[i].fn);
    } else if (is_arr(obj)) {
        if (jstr_eq(name, "length")) *out = v_num(R, V_INT, (double)obj->n);
    }
    return *out ? 0 : r_nomem(R);
}

/* evaluateMemberExpression */
static int eval_member(rctx *R, const node *x, env *e, jv **out) {
    jv *obj, *prop;
    TRY(eval(R, x->a, e, &obj));
    if (x->flag) {
        if (x->b->kind == N_SLICE) return eval_slice(R, x->b, obj, e, out);
        TRY(eval(R, x->b, e, &prop));
    } else if (x->b->kind == N_INT) {
        prop = v_num(R, V_INT, x->b->num);
        if (!prop) return r_nomem(R);
    } else {
        prop = v_str_ref(R, x->b->str);
        if (!prop) return r_nomem(R);
    }
    R->at = x;
    if (is_attr_container(obj)) {
        if (prop->t != V_STR) return TERR(R, x, "Cannot access property with non-string: got %s", k_type_names[prop->t]);
        jv *v = obj_get(obj, prop->s);
        if (v) {
            *out = v;
            return 0;
        }
        if (obj->t == V_NS) {
            *out = &k_undef;
            return 0;
        }
        return builtin_prop(R, obj, prop->s, out);
    }
    if (is_arr(obj) || obj->t == V_STR) {
        if (prop->t == V_INT) {
            if (obj->t == V_STR) return str_at(R, x, obj->s, prop->num, out);
            double i = prop->num < 0 ? prop->num + (double)obj->n : prop->num;
            *out = (i >= 0 && i < (double)obj->n && i == floor(i)) ? obj->items[(size_t)i] : &k_undef;
            return 0;
        }
        if (prop->t == V_STR) return builtin_prop(R, obj, prop->s, out);
        return TERR(R, x, "Cannot access property with non-string/non-number: got %s", k_type_names[prop->t]);
    }
    if (prop->t != V_STR) return TERR(R, x, "Cannot access property with non-string: got %s", k_type_names[prop->t]);
    *out = &k_undef;
    return 0;
}

/* evaluateCallArguments: positional values, then one KWARGS value if any. */
static int eval_args(rctx *R, node *const *args, size_t n, env *e, jv ***out, size_t *nout) {
    jv **v = r_alloc(R, (n + 1) * sizeof *v);
    if (!v) return r_nomem(R);
    size_t k = 0;
    int any_kw = 0;
    for (size_t i = 0; i < n; i++) {
        if (args[i]->kind == N_KWARG) {
            any_kw = 1;
            continue;
        }
        TRY(eval(R, args[i], e, &v[k++]));
    }
    if (any_kw) {
        jv *kw = v_list(R, V_KWARGS, 0);
        if (!kw) return r_nomem(R);
        for (size_t i = 0; i < n; i++) {
            if (args[i]->kind != N_KWARG) continue;
            if (obj_get(kw, args[i]->str))
                return TERR(R, args[i], "Got multiple values for keyword argument '%.*s'", (int)args[i]->str.n,
                            args[i]->str.s);
            jv *val;
            TRY(eval(R, args[i]->a, e, &val));
            if (obj_set(R, kw, args[i]->str, val)) return r_nomem(R);
        }
        if (kw->n) v[k++] = kw;
    }
    *out = v;
    *nout = k;
    return 0;
}

/* Splits evaluated arguments into positional ones and keyword ones. */
static void split_kwargs(jv **args, size_t *n, jv **kw) {
    *kw = NULL;
    if (*n && args[*n - 1]->t == V_KWARGS) *kw = args[--*n];
}

static jv *kwarg(const jv *kw, const char *name) {
    if (!kw) return NULL;
    jstr k = {name, strlen(name)};
    return obj_get(kw, k);
}

static int test_value(rctx *R, const node *at, jstr t, const jv *v, const jv *arg, int *res);

static int eval_test(rctx *R, const node *x, env *e, jv **out) {
    jv *v;
    TRY(eval(R, x->a, e, &v));
    int res;
    TRY(test_value(R, x, x->str, v, NULL, &res));
    *out = v_bool(x->flag ? !res : res);
    return 0;
}

static int eval(rctx *R, const node *x, env *e, jv **out) {
    if (++R->depth > R->lim.max_depth) {
        R->depth--;
        return r_fail(R, EMDPO_ERR_LIMIT, x, "evaluation nests deeper than %d", R->lim.max_depth);
    }
    int rc = 0;
    R->at = x;
    switch (x->kind) {
    case N_IDENT:
        *out = env_lookup(e, x->str);
        if ((*out)->t == V_UNDEF && (jstr_eq(x->str, "caller") || jstr_eq(x->str, "varargs") || jstr_eq(x->str, "kwargs")))
            rc = UNSUP(R, x, "the special variable '%.*s' (call blocks, varargs, kwargs)", (int)x->str.n, x->str.s);
        break;
    case N_INT:
    case N_FLOAT:
        if (!(*out = v_num(R, x->kind == N_INT ? V_INT : V_FLOAT, x->num))) rc = r_nomem(R);
        break;
    case N_STR:
        if (!(*out = v_str_ref(R, x->str))) rc = r_nomem(R);
        break;
    case N_BIN:
        rc = eval_bin(R, x, e, out);
        break;
    case N_MEMBER:
        rc = eval_member(R, x, e, out);
        break;
    case N_CALL: {
        jv **args, *fn;
        size_t n;
        if (!(rc = eval_args(R, x->list, x->n, e, &args, &n)) && !(rc = eval(R, x->a, e, &fn))) {
            R->at = x;
            if (fn->t != V_FUNC)
                rc = TERR(R, x, "Cannot call something that is not a function: got %s", k_type_names[fn->t]);
            else
                rc = call_fn(R, x, fn, args, n, e, out);
        }
        break;
    }
    case N_FILTER: {
        jv *operand;
        if (!(rc = eval(R, x->a, e, &operand))) {
            R->at = x;
            rc = apply_filter(R, operand, x->b, e, out);
        }
        break;
    }
    case N_TEST:
        rc = eval_test(R, x, e, out);
        break;
    case N_TERNARY: {
        jv *c;
        if (!(rc = eval(R, x->a, e, &c))) rc = eval(R, truthy(c) ? x->b : x->c, e, out);
        break;
    }
    case N_SELECT: {
        jv *c;
        if (!(rc = eval(R, x->b, e, &c))) {
            if (truthy(c)) rc = eval(R, x->a, e, out);
            else *out = &k_undef;
        }
        break;
    }
    case N_UNARY: {
        jv *v;
        if ((rc = eval(R, x->a, e, &v))) break;
        if (x->op == OP_NOT) {
            *out = v_bool(!truthy(v));
        } else if (is_num(v) || v->t == V_BOOL) {
            double r = (x->op == OP_NEG ? -1 : 1) * v->num;
            if (!(*out = v_num(R, v->t == V_FLOAT ? V_FLOAT : V_INT, r))) rc = r_nomem(R);
        } else {
            rc = TERR(R, x, "Unknown operator \"%s\" for %s", k_op_names[x->op], k_type_names[v->t]);
        }
        break;
    }
    case N_ARRAY:
    case N_TUPLE: {
        jv *v = v_list(R, x->kind == N_ARRAY ? V_ARRAY : V_TUPLE, x->n);
        if (!v) {
            rc = r_nomem(R);
            break;
        }
        for (size_t i = 0; !rc && i < x->n; i++) rc = eval(R, x->list[i], e, &v->items[v->n++]);
        *out = v;
        break;
    }
    case N_OBJECT: {
        jv *v = v_list(R, V_OBJECT, 0);
        if (!v) {
            rc = r_nomem(R);
            break;
        }
        for (size_t i = 0; !rc && i < x->n; i++) {
            jv *k, *val;
            if ((rc = eval(R, x->list[i], e, &k))) break;
            if (k->t != V_STR) {
                rc = TERR(R, x->list[i], "Object keys must be strings: got %s", k_type_names[k->t]);
                break;
            }
            if (!(rc = eval(R, x->list2[i], e, &val)) && obj_set(R, v, k->s, val)) rc = r_nomem(R);
        }
        *out = v;
        break;
    }
    case N_KWARG:
        rc = TERR(R, x, "a keyword argument outside a call");
        break;
    default:
        rc = TERR(R, x, "a statement where an expression was expected");
    }
    R->depth--;
    return rc;
}

/* ---- Tests: Environment.TESTS ---------------------------------------------- */

/* Runs test `t` on v (arg: the second operand of equalto, or NULL). */
static int test_value(rctx *R, const node *at, jstr t, const jv *v, const jv *arg, int *res) {
    if (jstr_eq(t, "boolean")) *res = v->t == V_BOOL;
    else if (jstr_eq(t, "callable")) *res = v->t == V_FUNC;
    else if (jstr_eq(t, "odd") || jstr_eq(t, "even")) {
        if (v->t != V_INT) return TERR(R, at, "cannot %.*s on %s", (int)t.n, t.s, k_type_names[v->t]);
        double m = fmod(v->num, 2);
        *res = jstr_eq(t, "odd") ? m != 0 : m == 0;
    } else if (jstr_eq(t, "false")) *res = v->t == V_BOOL && !v->num;
    else if (jstr_eq(t, "true")) *res = v->t == V_BOOL && v->num;
    else if (jstr_eq(t, "none")) *res = v->t == V_NULL;
    else if (jstr_eq(t, "string")) *res = v->t == V_STR;
    else if (jstr_eq(t, "number")) *res = is_num(v);
    else if (jstr_eq(t, "integer")) *res = v->t == V_INT;
    else if (jstr_eq(t, "iterable")) *res = v->t == V_ARRAY || v->t == V_STR;
    else if (jstr_eq(t, "mapping")) *res = is_map(v);
    else if (jstr_eq(t, "sequence")) *res = is_arr(v) || is_map(v) || v->t == V_STR;
    else if (jstr_eq(t, "lower") || jstr_eq(t, "upper")) {
        if (v->t != V_STR) return TERR(R, at, "the test '%.*s' on %s", (int)t.n, t.s, k_type_names[v->t]);
        jstr m;
        TRY(case_map(R, v->s, jstr_eq(t, "upper"), &m));
        *res = jstr_same(m, v->s);
    } else if (jstr_eq(t, "defined")) *res = v->t != V_UNDEF;
    else if (jstr_eq(t, "undefined")) *res = v->t == V_UNDEF;
    else if (jstr_eq(t, "equalto") || jstr_eq(t, "eq")) {
        if (!arg) return TERR(R, at, "the test '%.*s' needs an argument", (int)t.n, t.s);
        *res = strict_eq(v, arg);
    } else {
        return TERR(R, at, "Unknown test: %.*s", (int)t.n, t.s);
    }
    return 0;
}

/* ---- Filters and methods ----------------------------------------------------- */

static int arr_push(rctx *R, jv *a, jv *x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        jv **items = r_alloc(R, cap * sizeof *items);
        if (!items) return r_nomem(R);
        if (a->n) memcpy(items, a->items, a->n * sizeof *items);
        a->items = items;
        a->cap = cap;
    }
    a->items[a->n++] = x;
    return 0;
}

static int new_str(rctx *R, jstr s, jv **out) {
    *out = v_str_ref(R, s);
    return *out ? 0 : r_nomem(R);
}

/* Array.prototype.join over .value: null and undefined are empty. */
static int join_raw(rctx *R, jbuf *b, const jv *v) {
    if (v->t == V_UNDEF || v->t == V_NULL) return 0;
    return js_string(R, b, v);
}

/* getAttributeValue: "a.b.0" */
static const jv *attr_path(const jv *item, jstr path) {
    const jv *v = item;
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < path.n && path.s[j] != '.') j++;
        jstr part = {path.s + i, j - i};
        if (is_attr_container(v)) {
            const jv *next = obj_get(v, part);
            v = next ? next : &k_undef;
        } else if (is_arr(v)) {
            /* parseInt(part, 10) */
            size_t k = 0;
            while (k < part.n && js_space((unsigned char)part.s[k])) k++;
            int neg = 0;
            if (k < part.n && (part.s[k] == '+' || part.s[k] == '-')) neg = part.s[k++] == '-';
            if (k >= part.n || !is_digit(part.s[k])) return &k_undef;
            double idx = 0;
            while (k < part.n && is_digit(part.s[k])) idx = idx * 10 + (part.s[k++] - '0');
            if (neg) idx = -idx;
            if (idx < 0 || idx >= (double)v->n) return &k_undef;
            v = v->items[(size_t)idx];
        } else {
            return &k_undef;
        }
        if (j >= path.n) return v;
        i = j + 1;
    }
}

/* A stable merge sort of v[0..n) by compare_vals on keys[]. */
static int sort_vals(rctx *R, jv **v, jv **keys, size_t n, int case_sensitive, int reverse) {
    if (n < 2) return 0;
    jv **tv = r_alloc(R, n * sizeof *tv), **tk = r_alloc(R, n * sizeof *tk);
    if (!tv || !tk) return r_nomem(R);
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int c = 0;
                TRY(compare_vals(R, keys[i], keys[j], case_sensitive, &c));
                if (reverse) c = -c;
                if (c <= 0) tv[k] = v[i], tk[k++] = keys[i++];
                else tv[k] = v[j], tk[k++] = keys[j++];
            }
            while (i < mid) tv[k] = v[i], tk[k++] = keys[i++];
            while (j < hi) tv[k] = v[j], tk[k++] = keys[j++];
        }
        memcpy(v, tv, n * sizeof *v);
        memcpy(keys, tk, n * sizeof *keys);
    }
    return 0;
}

static jv *pair(rctx *R, jstr key, jv *val) {
    jv *p = v_list(R, V_ARRAY, 2), *k = v_str_ref(R, key);
    if (!p || !k) return NULL;
    p->items[0] = k;
    p->items[1] = val;
    p->n = 2;
    return p;
}

static int obj_items(rctx *R, const jv *o, int what, jv **out) { /* 0 items, 1 keys, 2 values */
    jv *a = v_list(R, V_ARRAY, o->n);
    if (!a) return r_nomem(R);
    for (size_t i = 0; i < o->n; i++) {
        jv *x = what == 0 ? pair(R, o->keys[i], o->items[i]) : what == 1 ? v_str_ref(R, o->keys[i]) : o->items[i];
        if (!x) return r_nomem(R);
        a->items[a->n++] = x;
    }
    *out = a;
    return 0;
}

/* utils.ts replace: count < 0 or null: all. */
static int str_replace(rctx *R, jstr s, jstr from, jstr to, double count, jv **out) {
    if (count == 0) return new_str(R, s, out);
    double left = count < 0 ? INFINITY : count;
    jbuf b = {0};
    int rc = 0;
    if (!from.n) { /* (?=) with /u: every code point boundary, the end included */
        for (size_t i = 0;;) {
            if (left > 0) {
                if ((rc = jb_put(R, &b, to.s, to.n))) break;
                left--;
            }
            if (i >= s.n) break;
            uint32_t cp;
            size_t l = emdpo_utf8_decode(s.s + i, s.n - i, &cp);
            if ((rc = jb_put(R, &b, s.s + i, l))) break;
            i += l;
        }
    } else {
        size_t i = 0, run = 0;
        while (!rc && i < s.n) {
            if (left > 0 && s.n - i >= from.n && !memcmp(s.s + i, from.s, from.n)) {
                if (!(rc = jb_put(R, &b, s.s + i - run, run))) rc = jb_put(R, &b, to.s, to.n);
                run = 0;
                i += from.n;
                left--;
            } else {
                i++;
                run++;
            }
        }
        if (!rc) rc = jb_put(R, &b, s.s + i - run, run);
    }
    if (rc) {
        jb_free(&b);
        return rc;
    }
    return jb_to_val(R, &b, out);
}

/* The indent filter: width spaces (or a string) before lines. */
static int str_indent(rctx *R, jstr s, jstr ind, int first, int blank, jv **out) {
    jbuf b = {0};
    int rc = 0;
    size_t i = 0, line = 0;
    for (;;) {
        size_t j = i;
        while (j < s.n && s.s[j] != '\n') j++;
        if (!((!first && line == 0) || (!blank && j == i))) rc = jb_put(R, &b, ind.s, ind.n);
        if (!rc) rc = jb_put(R, &b, s.s + i, j - i);
        if (rc || j >= s.n) break;
        rc = jb_put(R, &b, "\n", 1);
        i = j + 1;
        line++;
    }
    if (rc) {
        jb_free(&b);
        return rc;
    }
    return jb_to_val(R, &b, out);
}

/* parseInt(s, 10) / parseFloat(s); NaN when no number starts s. */
static double js_parse_num(jstr s, int integer) {
    s = js_trim_start(s);
    char buf[400];
    size_t n = s.n < sizeof buf - 1 ? s.n : sizeof buf - 1;
    memcpy(buf, s.s, n);
    buf[n] = 0;
    const char *p = buf;
    int neg = 0;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    if (integer) {
        if (!is_digit(*p)) return NAN;
        double v = 0;
        while (is_digit(*p)) v = v * 10 + (*p++ - '0');
        return neg ? -v : v;
    }
    if (!strncmp(p, "Infinity", 8)) return neg ? -INFINITY : INFINITY;
    const char *q = p;
    int digits = 0;
    while (is_digit(*q)) q++, digits++;
    if (*q == '.') {
        q++;
        while (is_digit(*q)) q++, digits++;
    }
    if (!digits) return NAN;
    if (*q == 'e' || *q == 'E') {
        const char *r = q + 1;
        if (*r == '+' || *r == '-') r++;
        if (is_digit(*r)) {
            while (is_digit(*r)) r++;
            q = r;
        }
    }
    char num[400];
    memcpy(num, p, (size_t)(q - p));
    num[q - p] = 0;
    double v = strtod(num, NULL);
    return neg ? -v : v;
}

static int call_method(rctx *R, const node *at, jv *fn, jv **args, size_t n, jv **out) {
    jv *self = fn->self;
    jstr s = self->s;
    switch (fn->fn) {
    case F_UPPER:
    case F_LOWER: {
        jstr m;
        TRY(case_map(R, s, fn->fn == F_UPPER, &m));
        return new_str(R, m, out);
    }
    case F_STRIP:
        return new_str(R, js_trim_end(js_trim_start(s)), out);
    case F_LSTRIP:
        return new_str(R, js_trim_start(s), out);
    case F_RSTRIP:
        return new_str(R, js_trim_end(s), out);
    case F_TITLE: {
        char *o = r_alloc(R, s.n + 1);
        if (!o) return r_nomem(R);
        for (size_t i = 0; i < s.n; i++) {
            char c = s.s[i];
            int boundary = i == 0 || !is_word((unsigned char)s.s[i - 1]);
            o[i] = (boundary && c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
        }
        o[s.n] = 0;
        return new_str(R, (jstr){o, s.n}, out);
    }
    case F_CAPITALIZE: {
        if (!s.n) return new_str(R, s, out);
        uint32_t cp;
        size_t l = emdpo_utf8_decode(s.s, s.n, &cp);
        if (cp >= 0x10000) return new_str(R, s, out);
        jstr head;
        TRY(case_map(R, (jstr){s.s, l}, 1, &head));
        jbuf b = {0};
        int rc = jb_put(R, &b, head.s, head.n);
        if (!rc) rc = jb_put(R, &b, s.s + l, s.n - l);
        if (rc) {
            jb_free(&b);
            return rc;
        }
        return jb_to_val(R, &b, out);
    }
    case F_STARTSWITH:
    case F_ENDSWITH: {
        const char *nm = fn->fn == F_STARTSWITH ? "startswith" : "endswith";
        if (!n) return TERR(R, at, "%s() requires at least one argument", nm);
        jv *p = args[0];
        size_t np = p->t == V_STR ? 1 : is_arr(p) ? p->n : 0;
        if (p->t != V_STR && !is_arr(p)) return TERR(R, at, "%s() argument must be a string or tuple of strings", nm);
        int res = 0;
        for (size_t i = 0; i < np && !res; i++) {
            jv *q = p->t == V_STR ? p : p->items[i];
            if (q->t != V_STR) return TERR(R, at, "%s() tuple elements must be strings", nm);
            if (q->s.n <= s.n)
                res = !memcmp(fn->fn == F_STARTSWITH ? s.s : s.s + s.n - q->s.n, q->s.s, q->s.n);
        }
        *out = v_bool(res);
        return 0;
    }
    case F_SPLIT: {
        jv *sep = n > 0 ? args[0] : &k_null, *maxv = n > 1 ? args[1] : NULL;
        if (sep->t != V_STR && sep->t != V_NULL) return TERR(R, at, "sep argument must be a string or null");
        if (maxv && maxv->t != V_INT) return TERR(R, at, "maxsplit argument must be a number");
        double maxsplit = maxv ? maxv->num : -1;
        jv *a = v_list(R, V_ARRAY, 0);
        if (!a) return r_nomem(R);
        if (sep->t == V_NULL) {
            jstr text = js_trim_start(s);
            size_t i = 0;
            while (i < text.n) {
                size_t l;
                while (i < text.n && (l = ws_at(text.s + i, text.n - i))) i += l;
                if (i >= text.n) break;
                size_t j = i;
                while (j < text.n && !ws_at(text.s + j, text.n - j)) j += emdpo_utf8_decode(text.s + j, text.n - j, &(uint32_t){0});
                jv *part;
                if (maxsplit >= 0 && (double)a->n >= maxsplit) {
                    TRY(new_str(R, (jstr){text.s + i, text.n - i}, &part));
                    TRY(arr_push(R, a, part));
                    break;
                }
                TRY(new_str(R, (jstr){text.s + i, j - i}, &part));
                TRY(arr_push(R, a, part));
                i = j;
            }
        } else {
            jstr d = sep->s;
            if (!d.n) return TERR(R, at, "empty separator");
            size_t i = 0, start = 0;
            for (;;) {
                int last = maxsplit >= 0 && (double)a->n >= maxsplit;
                const char *hit = NULL;
                for (size_t k = i; !last && k + d.n <= s.n; k++)
                    if (!memcmp(s.s + k, d.s, d.n)) {
                        hit = s.s + k;
                        break;
                    }
                jv *part;
                if (!hit) {
                    TRY(new_str(R, (jstr){s.s + start, s.n - start}, &part));
                    TRY(arr_push(R, a, part));
                    break;
                }
                size_t k = (size_t)(hit - s.s);
                TRY(new_str(R, (jstr){s.s + start, k - start}, &part));
                TRY(arr_push(R, a, part));
                i = start = k + d.n;
            }
        }
        *out = a;
        return 0;
    }
    case F_REPLACE: {
        if (n < 2) return TERR(R, at, "replace() requires at least two arguments");
        if (args[0]->t != V_STR || args[1]->t != V_STR) return TERR(R, at, "replace() arguments must be strings");
        jv *count = &k_null;
        if (n > 2) {
            count = args[2];
            if (count->t == V_KWARGS) {
                jv *c = kwarg(count, "count");
                count = c ? c : &k_null;
            }
        }
        if (count->t != V_INT && count->t != V_NULL) return TERR(R, at, "replace() count argument must be a number or null");
        return str_replace(R, s, args[0]->s, args[1]->s, count->t == V_NULL ? -1 : count->num, out);
    }
    case F_GET: {
        if (!n || args[0]->t != V_STR)
            return TERR(R, at, "Object key must be a string: got %s", n ? k_type_names[args[0]->t] : "undefined");
        jv *v = obj_get(self, args[0]->s);
        *out = v ? v : n > 1 ? args[1] : &k_null;
        return 0;
    }
    case F_ITEMS:
    case F_KEYS:
    case F_VALUES:
        return obj_items(R, self, fn->fn == F_ITEMS ? 0 : fn->fn == F_KEYS ? 1 : 2, out);
    case F_DICTSORT: {
        jv *kw;
        split_kwargs(args, &n, &kw);
        jv *cs = n > 0 ? args[0] : kwarg(kw, "case_sensitive"), *by = n > 1 ? args[1] : kwarg(kw, "by"),
           *rev = n > 2 ? args[2] : kwarg(kw, "reverse");
        if (cs && cs->t != V_BOOL) return TERR(R, at, "case_sensitive must be a boolean");
        if (by && by->t != V_STR) return TERR(R, at, "by must be a string");
        if (by && !jstr_eq(by->s, "key") && !jstr_eq(by->s, "value")) return TERR(R, at, "by must be either 'key' or 'value'");
        if (rev && rev->t != V_BOOL) return TERR(R, at, "reverse must be a boolean");
        jv *a;
        TRY(obj_items(R, self, 0, &a));
        jv **keys = r_alloc(R, (a->n + 1) * sizeof *keys);
        if (!keys) return r_nomem(R);
        int idx = by && jstr_eq(by->s, "value") ? 1 : 0;
        for (size_t i = 0; i < a->n; i++) keys[i] = a->items[i]->items[idx];
        TRY(sort_vals(R, a->items, keys, a->n, cs && cs->num, rev && rev->num));
        *out = a;
        return 0;
    }
    default:
        return TERR(R, at, "not a method");
    }
}

static int call_macro(rctx *R, const node *at, jv *fn, jv **args, size_t n, jv **out) {
    const node *m = fn->macro;
    jv *kw;
    split_kwargs(args, &n, &kw);
    if (++R->macro_depth > R->lim.max_depth) {
        R->macro_depth--;
        return r_fail(R, EMDPO_ERR_LIMIT, at, "macro calls nest deeper than %d", R->lim.max_depth);
    }
    env *scope = env_new(R, fn->closure);
    if (!scope) return r_nomem(R);
    char *used = kw && kw->n ? r_alloc(R, kw->n) : NULL;
    if (kw && kw->n && !used) return r_nomem(R);
    if (used) memset(used, 0, kw->n);
    for (size_t i = 0; i < m->n; i++) {
        const node *p = m->list[i];
        jv *v = i < n ? args[i] : NULL;
        if (!v && kw)
            for (size_t k = 0; k < kw->n; k++)
                if (!used[k] && jstr_same(kw->keys[k], p->str)) {
                    v = kw->items[k];
                    used[k] = 1;
                }
        TRY(env_set(R, scope, p->str, v ? v : &k_undef));
    }
    for (size_t k = 0; kw && k < kw->n; k++)
        if (!used[k])
            return TERR(R, at, "macro '%.*s' takes no keyword argument '%.*s'", (int)m->str.n, m->str.s,
                        (int)kw->keys[k].n, kw->keys[k].s);
    if (n > m->n) return TERR(R, at, "macro '%.*s' takes not more than %zu argument(s)", (int)m->str.n, m->str.s, m->n);
    for (size_t i = 0; i < m->n; i++) {
        const node *p = m->list[i];
        int given = i < n;
        for (size_t k = 0; !given && kw && k < kw->n; k++) given = jstr_same(kw->keys[k], p->str);
        if (!given && p->kind == N_KWARG) {
            jv *v;
            TRY(eval(R, p->a, scope, &v));
            TRY(env_set(R, scope, p->str, v));
        }
    }
    jbuf b = {0};
    int rc = exec_block(R, m->list2, m->n2, scope, &b);
    R->macro_depth--;
    if (rc) {
        jb_free(&b);
        return rc;
    }
    return jb_to_val(R, &b, out);
}

static int call_fn(rctx *R, const node *at, jv *fn, jv **args, size_t n, env *e, jv **out) {
    (void)e;
    TRY(step(R, at));
    if (fn->self) return call_method(R, at, fn, args, n, out);
    switch (fn->fn) {
    case F_RAISE: {
        jbuf b = {0};
        int rc = (n && args[0]->t != V_UNDEF && args[0]->t != V_NULL) ? js_string(R, &b, args[0]) : 0;
        if (!rc) rc = r_fail(R, EMDPO_ERR_INVALID_ARG, at, "%s", b.s ? b.s : "");
        jb_free(&b);
        return rc;
    }
    case F_RANGE: {
        for (size_t i = 0; i < n; i++)
            if (!is_num(args[i])) return UNSUP(R, at, "range() of a %s", k_type_names[args[i]->t]);
        if (!n) return UNSUP(R, at, "range() without arguments");
        double start = args[0]->num, stop = n > 1 ? args[1]->num : 0, stp = n > 2 ? args[2]->num : 1;
        if (n == 1) stop = start, start = 0;
        if (stp == 0) return TERR(R, at, "range() step must not be zero");
        double count = stp > 0 ? ceil((stop - start) / stp) : ceil((start - stop) / -stp);
        if (!(count > 0)) count = 0;
        if (count > (double)R->lim.max_steps) return r_fail(R, EMDPO_ERR_LIMIT, at, "range() of %.0f numbers", count);
        jv *a = v_list(R, V_ARRAY, (size_t)count);
        if (!a) return r_nomem(R);
        for (double i = start; stp > 0 ? i < stop : i > stop; i += stp) {
            if (a->n >= a->cap) break;
            jv *x = v_num(R, i == floor(i) ? V_INT : V_FLOAT, i);
            if (!x) return r_nomem(R);
            a->items[a->n++] = x;
        }
        *out = a;
        return 0;
    }
    case F_NAMESPACE: {
        jv *kw;
        split_kwargs(args, &n, &kw);
        if (n > 1) return TERR(R, at, "namespace expected at most 1 argument, got %zu", n);
        jv *ns = v_list(R, V_NS, 0);
        if (!ns) return r_nomem(R);
        if (n == 1) {
            jv *src = args[0];
            if (is_map(src)) {
                for (size_t i = 0; i < src->n; i++)
                    if (obj_set(R, ns, src->keys[i], src->items[i])) return r_nomem(R);
            } else if (is_arr(src)) {
                for (size_t i = 0; i < src->n; i++) {
                    jv *p = src->items[i];
                    if (!is_arr(p) || p->n != 2)
                        return p->t == V_STR ? UNSUP(R, at, "namespace() entries given as strings")
                                             : TERR(R, at, "namespace expected an object or an iterable of [key, value] pairs");
                    if (p->items[0]->t != V_STR) return TERR(R, at, "namespace keys must be strings");
                    if (obj_set(R, ns, p->items[0]->s, p->items[1])) return r_nomem(R);
                }
            } else {
                return TERR(R, at, "'%s' object is not iterable", k_type_names[src->t]);
            }
        }
        for (size_t i = 0; kw && i < kw->n; i++)
            if (obj_set(R, ns, kw->keys[i], kw->items[i])) return r_nomem(R);
        *out = ns;
        return 0;
    }
    case F_MACRO:
        return call_macro(R, at, fn, args, n, out);
    default:
        return TERR(R, at, "not a function");
    }
}

/* applyFilter */
static int apply_filter(rctx *R, jv *v, const node *f, env *e, jv **out) {
    const node *at = f;
    if (f->kind == N_IDENT) {
        jstr name = f->str;
#define IS(s) jstr_eq(name, s)
        if (IS("safe")) return *out = v, 0;
        if (IS("tojson")) {
            jbuf b = {0};
            int rc = to_json(R, &b, v, 0, 0, ", ", ": ", 0, 1);
            if (rc) {
                jb_free(&b);
                return rc;
            }
            return jb_to_val(R, &b, out);
        }
        if (is_arr(v)) {
            if (IS("list")) return *out = v, 0;
            if (IS("first")) return *out = v->n ? v->items[0] : &k_undef, 0;
            if (IS("last")) return *out = v->n ? v->items[v->n - 1] : &k_undef, 0;
            if (IS("length")) return (*out = v_num(R, V_INT, (double)v->n)) ? 0 : r_nomem(R);
            if (IS("reverse")) {
                jv *a = v_list(R, V_ARRAY, v->n);
                if (!a) return r_nomem(R);
                for (size_t i = 0; i < v->n; i++) a->items[a->n++] = v->items[v->n - 1 - i];
                return *out = a, 0;
            }
            if (IS("sort")) {
                jv *a = v_list(R, V_ARRAY, v->n);
                if (!a) return r_nomem(R);
                for (size_t i = 0; i < v->n; i++) a->items[a->n++] = v->items[i];
                jv **keys = r_alloc(R, (v->n + 1) * sizeof *keys);
                if (!keys) return r_nomem(R);
                if (v->n) memcpy(keys, a->items, v->n * sizeof *keys);
                TRY(sort_vals(R, a->items, keys, a->n, 0, 0));
                return *out = a, 0;
            }
            if (IS("join") || IS("string")) {
                jbuf b = {0};
                int rc = 0;
                if (IS("join"))
                    for (size_t i = 0; !rc && i < v->n; i++) rc = join_raw(R, &b, v->items[i]);
                else
                    rc = to_json(R, &b, v, 0, 0, ", ", ": ", 0, 0);
                if (rc) {
                    jb_free(&b);
                    return rc;
                }
                return jb_to_val(R, &b, out);
            }
            if (IS("unique")) {
                jv *a = v_list(R, V_ARRAY, v->n);
                if (!a) return r_nomem(R);
                for (size_t i = 0; i < v->n; i++) {
                    int seen = 0;
                    for (size_t k = 0; k < a->n && !seen; k++)
                        seen = strict_eq(a->items[k], v->items[i]) ||
                               (is_num(a->items[k]) && is_num(v->items[i]) && isnan(a->items[k]->num) && isnan(v->items[i]->num));
                    if (!seen) a->items[a->n++] = v->items[i];
                }
                return *out = a, 0;
            }
            return TERR(R, at, "Unknown ArrayValue filter: %.*s", (int)name.n, name.s);
        }
        if (v->t == V_STR) {
            if (IS("length") || IS("upper") || IS("lower") || IS("title") || IS("capitalize")) {
                if (IS("length")) return builtin_prop(R, v, name, out);
                jv *m;
                TRY(builtin_prop(R, v, name, &m));
                return call_method(R, at, m, NULL, 0, out);
            }
            if (IS("trim")) return new_str(R, js_trim_end(js_trim_start(v->s)), out);
            if (IS("indent")) return str_indent(R, v->s, (jstr){"    ", 4}, 0, 0, out);
            if (IS("join") || IS("string")) return *out = v, 0;
            if (IS("int")) {
                double x = js_parse_num(v->s, 1);
                return (*out = v_num(R, V_INT, isnan(x) ? 0 : x)) ? 0 : r_nomem(R);
            }
            if (IS("float")) {
                double x = js_parse_num(v->s, 0);
                return (*out = v_num(R, V_FLOAT, isnan(x) ? 0 : x)) ? 0 : r_nomem(R);
            }
            return TERR(R, at, "Unknown StringValue filter: %.*s", (int)name.n, name.s);
        }
        if (is_num(v)) {
            if (IS("abs")) return (*out = v_num(R, v->t, fabs(v->num))) ? 0 : r_nomem(R);
            if (IS("int")) return (*out = v_num(R, V_INT, trunc(v->num) + 0.0)) ? 0 : r_nomem(R);
            if (IS("float")) return (*out = v_num(R, V_FLOAT, v->num)) ? 0 : r_nomem(R);
            if (IS("string")) {
                jbuf b = {0};
                int rc = display(R, &b, v);
                if (rc) {
                    jb_free(&b);
                    return rc;
                }
                return jb_to_val(R, &b, out);
            }
            return TERR(R, at, "Unknown NumericValue filter: %.*s", (int)name.n, name.s);
        }
        if (is_map(v)) {
            if (IS("items")) return obj_items(R, v, 0, out);
            if (IS("length")) return (*out = v_num(R, V_INT, (double)v->n)) ? 0 : r_nomem(R);
            jv *m;
            TRY(builtin_prop(R, v, name, &m));
            if (m->t == V_FUNC) return call_method(R, at, m, NULL, 0, out);
            return TERR(R, at, "Unknown ObjectValue filter: %.*s", (int)name.n, name.s);
        }
        if (v->t == V_BOOL) {
            if (IS("bool")) return *out = v, 0;
            if (IS("int")) return (*out = v_num(R, V_INT, v->num)) ? 0 : r_nomem(R);
            if (IS("float")) return (*out = v_num(R, V_FLOAT, v->num)) ? 0 : r_nomem(R);
            if (IS("string")) return new_str(R, v->num ? (jstr){"true", 4} : (jstr){"false", 5}, out);
            return TERR(R, at, "Unknown BooleanValue filter: %.*s", (int)name.n, name.s);
        }
        return TERR(R, at, "Cannot apply filter \"%.*s\" to type: %s", (int)name.n, name.s, k_type_names[v->t]);
    }
    /* a filter with arguments */
    jstr name = f->a->str;
    jv **args, *kw;
    size_t n;
    if (IS("selectattr") || IS("rejectattr")) {
        int select = IS("selectattr");
        if (!is_arr(v)) return TERR(R, at, "Cannot apply filter \"%.*s\" to type: %s", (int)name.n, name.s, k_type_names[v->t]);
        for (size_t i = 0; i < v->n; i++)
            if (!is_attr_container(v->items[i]))
                return TERR(R, at, "`%.*s` can only be applied to array of objects", (int)name.n, name.s);
        for (size_t i = 0; i < f->n; i++)
            if (f->list[i]->kind != N_STR) return TERR(R, at, "arguments of `%.*s` must be strings", (int)name.n, name.s);
        if (!f->n) return TERR(R, at, "`%.*s` needs an attribute", (int)name.n, name.s);
        jv *a = v_list(R, V_ARRAY, v->n);
        if (!a) return r_nomem(R);
        for (size_t i = 0; i < v->n; i++) {
            jv *attr = obj_get(v->items[i], f->list[0]->str);
            int res = 0;
            if (attr && f->n > 1) {
                jv *arg = NULL;
                if (f->n > 2 && !(arg = v_str_ref(R, f->list[2]->str))) return r_nomem(R);
                TRY(test_value(R, at, f->list[1]->str, attr, arg, &res));
            } else if (attr) {
                res = truthy(attr);
            }
            if (select ? res : !res) a->items[a->n++] = v->items[i];
        }
        return *out = a, 0;
    }
    TRY(eval_args(R, f->list, f->n, e, &args, &n));
    split_kwargs(args, &n, &kw);
    if (IS("tojson")) {
        jv *indent = kwarg(kw, "indent"), *ascii = kwarg(kw, "ensure_ascii"), *sk = kwarg(kw, "sort_keys"),
           *sep = kwarg(kw, "separators");
        if (indent && indent->t != V_INT && indent->t != V_NULL) return TERR(R, at, "If set, indent must be a number");
        if (ascii && ascii->t != V_BOOL) return TERR(R, at, "If set, ensure_ascii must be a boolean");
        if (sk && sk->t != V_BOOL) return TERR(R, at, "If set, sort_keys must be a boolean");
        if (sk && sk->num) return UNSUP(R, at, "tojson(sort_keys=true) (JavaScript's localeCompare order)");
        long ind = indent && indent->t == V_INT ? (long)indent->num : 0;
        if (indent && indent->t == V_INT && indent->num < 0) return TERR(R, at, "Invalid count value: %ld", ind);
        if (ind > 1000) return UNSUP(R, at, "tojson(indent=%ld)", ind);
        const char *is = ind ? "," : ", ", *ks = ": ";
        char *cis = NULL, *cks = NULL;
        if (sep && sep->t != V_NULL) {
            if (!is_arr(sep) || sep->n != 2 || sep->items[0]->t != V_STR || sep->items[1]->t != V_STR)
                return TERR(R, at, "separators must be a tuple of two strings");
            if (memchr(sep->items[0]->s.s, 0, sep->items[0]->s.n) || memchr(sep->items[1]->s.s, 0, sep->items[1]->s.n))
                return UNSUP(R, at, "tojson separators with NUL characters");
            cis = r_alloc(R, sep->items[0]->s.n + 1);
            cks = r_alloc(R, sep->items[1]->s.n + 1);
            if (!cis || !cks) return r_nomem(R);
            memcpy(cis, sep->items[0]->s.s, sep->items[0]->s.n);
            cis[sep->items[0]->s.n] = 0;
            memcpy(cks, sep->items[1]->s.s, sep->items[1]->s.n);
            cks[sep->items[1]->s.n] = 0;
            is = cis;
            ks = cks;
        }
        jbuf b = {0};
        int rc = to_json(R, &b, v, ind, ascii && ascii->num, is, ks, 0, 1);
        if (rc) {
            jb_free(&b);
            return rc;
        }
        return jb_to_val(R, &b, out);
    }
    if (IS("join")) {
        if (v->t != V_STR && !is_arr(v))
            return TERR(R, at, "Cannot apply filter \"join\" to type: %s", k_type_names[v->t]);
        jv *sep = n > 0 ? args[0] : kwarg(kw, "separator");
        if (sep && sep->t != V_STR) return TERR(R, at, "separator must be a string");
        jstr d = sep ? sep->s : (jstr){"", 0};
        jbuf b = {0};
        int rc = 0;
        if (v->t == V_STR) {
            for (size_t i = 0; !rc && i < v->s.n;) {
                uint32_t cp;
                size_t l = emdpo_utf8_decode(v->s.s + i, v->s.n - i, &cp);
                if (i) rc = jb_put(R, &b, d.s, d.n);
                if (!rc) rc = jb_put(R, &b, v->s.s + i, l);
                i += l;
            }
        } else {
            for (size_t i = 0; !rc && i < v->n; i++) {
                if (i) rc = jb_put(R, &b, d.s, d.n);
                if (!rc) rc = join_raw(R, &b, v->items[i]);
            }
        }
        if (rc) {
            jb_free(&b);
            return rc;
        }
        return jb_to_val(R, &b, out);
    }
    if (IS("int") || IS("float")) {
        int isint = IS("int");
        jv *def = n > 0 ? args[0] : kwarg(kw, "default");
        if (v->t == V_STR) {
            double x = js_parse_num(v->s, isint);
            if (isnan(x)) {
                if (def) return *out = def, 0;
                x = 0;
            }
            return (*out = v_num(R, isint ? V_INT : V_FLOAT, x)) ? 0 : r_nomem(R);
        }
        if (is_num(v) || v->t == V_BOOL)
            return (*out = v_num(R, isint ? V_INT : V_FLOAT, isint ? trunc(v->num) + 0.0 : v->num)) ? 0 : r_nomem(R);
        return TERR(R, at, "Cannot apply filter \"%.*s\" to type: %s", (int)name.n, name.s, k_type_names[v->t]);
    }
    if (IS("default")) {
        jv *def = n > 0 ? args[0] : NULL, *boolean = n > 1 ? args[1] : kwarg(kw, "boolean");
        if (boolean && boolean->t != V_BOOL) return TERR(R, at, "`default` filter flag must be a boolean");
        if (v->t == V_UNDEF || (boolean && boolean->num && !truthy(v))) {
            if (def) return *out = def, 0;
            return new_str(R, (jstr){"", 0}, out);
        }
        return *out = v, 0;
    }
    if (is_arr(v)) {
        if (IS("sort")) {
            jv *rev = n > 0 ? args[0] : kwarg(kw, "reverse"), *cs = n > 1 ? args[1] : kwarg(kw, "case_sensitive"),
               *attr = n > 2 ? args[2] : kwarg(kw, "attribute");
            if (rev && rev->t != V_BOOL) return TERR(R, at, "reverse must be a boolean");
            if (cs && cs->t != V_BOOL) return TERR(R, at, "case_sensitive must be a boolean");
            if (attr && attr->t != V_STR && attr->t != V_INT && attr->t != V_NULL)
                return TERR(R, at, "attribute must be a string, integer, or null");
            jv *a = v_list(R, V_ARRAY, v->n);
            jv **keys = r_alloc(R, (v->n + 1) * sizeof *keys);
            if (!a || !keys) return r_nomem(R);
            char num[64];
            jstr path = {0, 0};
            if (attr && attr->t == V_STR) path = attr->s;
            if (attr && attr->t == V_INT) {
                js_num(attr->num, num);
                path.s = num;
                path.n = strlen(num);
            }
            for (size_t i = 0; i < v->n; i++) {
                a->items[a->n++] = v->items[i];
                keys[i] = (attr && attr->t != V_NULL) ? (jv *)attr_path(v->items[i], path) : v->items[i];
            }
            TRY(sort_vals(R, a->items, keys, a->n, cs && cs->num, rev && rev->num));
            return *out = a, 0;
        }
        if (IS("map")) {
            jv *attr = kwarg(kw, "attribute"), *def = kwarg(kw, "default");
            if (!attr) return UNSUP(R, at, "`map` without attribute= (as @huggingface/jinja)");
            if (attr->t != V_STR) return TERR(R, at, "attribute must be a string");
            jv *a = v_list(R, V_ARRAY, v->n);
            if (!a) return r_nomem(R);
            for (size_t i = 0; i < v->n; i++) {
                if (!is_attr_container(v->items[i])) return TERR(R, at, "items in map must be an object");
                jv *x = (jv *)attr_path(v->items[i], attr->s);
                a->items[a->n++] = x->t == V_UNDEF && def ? def : x;
            }
            return *out = a, 0;
        }
        return TERR(R, at, "Unknown ArrayValue filter: %.*s", (int)name.n, name.s);
    }
    if (v->t == V_STR) {
        if (IS("indent")) {
            jv *w = n > 0 ? args[0] : kwarg(kw, "width"), *first = n > 1 ? args[1] : kwarg(kw, "first"),
               *blank = n > 2 ? args[2] : kwarg(kw, "blank");
            if (w && w->t != V_INT && w->t != V_STR) return TERR(R, at, "width must be an integer or a string");
            jstr ind = {"    ", 4};
            if (w && w->t == V_STR) ind = w->s;
            if (w && w->t == V_INT) {
                double k = w->num > 0 ? w->num : 0;
                if (k > 1000) return UNSUP(R, at, "indent(%.0f)", k);
                char *sp = r_alloc(R, (size_t)k + 1);
                if (!sp) return r_nomem(R);
                memset(sp, ' ', (size_t)k);
                ind.s = sp;
                ind.n = (size_t)k;
            }
            return str_indent(R, v->s, ind, first && truthy(first), blank && truthy(blank), out);
        }
        if (IS("replace")) {
            jv **a2 = r_alloc(R, (n + 2) * sizeof *a2);
            jv *fnv = method(R, v, F_REPLACE);
            if (!a2 || !fnv) return r_nomem(R);
            if (n) memcpy(a2, args, n * sizeof *a2);
            jv *k2 = kw ? kw : v_list(R, V_KWARGS, 0);
            if (!k2) return r_nomem(R);
            a2[n] = k2;
            return call_method(R, at, fnv, a2, n + 1, out);
        }
        return TERR(R, at, "Unknown StringValue filter: %.*s", (int)name.n, name.s);
    }
    if (is_map(v)) {
        jv *m;
        TRY(builtin_prop(R, v, name, &m));
        if (m->t != V_FUNC) return TERR(R, at, "Unknown ObjectValue filter: %.*s", (int)name.n, name.s);
        if (kw) args[n++] = kw;
        return call_method(R, at, m, args, n, out);
    }
    return TERR(R, at, "Cannot apply filter \"%.*s\" to type: %s", (int)name.n, name.s, k_type_names[v->t]);
#undef IS
}

/* ---- Statements ---------------------------------------------------------------- */

static const jstr k_loop_keys[9] = {{"index", 5},     {"index0", 6}, {"revindex", 8}, {"revindex0", 9}, {"first", 5},
                                     {"last", 4},      {"length", 6}, {"previtem", 8}, {"nextitem", 8}};

/* The loop variable of iteration i of len (LoopValue). */
static jv *loop_value(rctx *R, size_t i, size_t len, jv *prev, jv *next) {
    jv *o = v_new(R, V_OBJECT);
    jv **items = r_alloc(R, 9 * sizeof *items);
    jv *nums = r_alloc(R, 5 * sizeof *nums);
    if (!o || !items || !nums) return NULL;
    double vals[5] = {(double)i + 1, (double)i, (double)(len - i), (double)len - (double)i - 1, (double)len};
    for (int k = 0; k < 5; k++) {
        memset(&nums[k], 0, sizeof nums[k]);
        nums[k].t = V_INT;
        nums[k].num = vals[k];
    }
    items[0] = &nums[0];
    items[1] = &nums[1];
    items[2] = &nums[2];
    items[3] = &nums[3];
    items[4] = v_bool(i == 0);
    items[5] = v_bool(i + 1 == len);
    items[6] = &nums[4];
    items[7] = prev ? prev : &k_undef;
    items[8] = next ? next : &k_undef;
    o->items = items;
    o->keys = (jstr *)k_loop_keys;
    o->n = o->cap = 9;
    return o;
}

static int bind_loopvar(rctx *R, const node *var, jv *item, env *scope) {
    if (var->kind == N_IDENT) return env_set(R, scope, var->str, item);
    for (size_t j = 0; j < var->n; j++) {
        if (var->list[j]->kind != N_IDENT)
            return TERR(R, var->list[j], "Cannot unpack non-identifier type: %s", "expression");
        TRY(env_set(R, scope, var->list[j]->str, item->items[j]));
    }
    return 0;
}

/* renderFor */
static int exec_for(rctx *R, const node *x, env *e, jbuf *out) {
    env *scope = env_new(R, e);
    if (!scope) return r_nomem(R);
    jv *it;
    const node *test = NULL;
    if (x->b->kind == N_SELECT) {
        TRY(eval(R, x->b->a, scope, &it));
        test = x->b->b;
    } else {
        TRY(eval(R, x->b, scope, &it));
    }
    R->at = x;
    if (!is_arr(it) && !is_map(it))
        return TERR(R, x, "Expected iterable or object type in for loop: got %s", k_type_names[it->t]);
    if (is_map(it)) TRY(obj_items(R, it, 1, &it));
    jv *items = v_list(R, V_ARRAY, it->n);
    if (!items) return r_nomem(R);
    for (size_t i = 0; i < it->n; i++) {
        jv *cur = it->items[i];
        if (x->a->kind == N_TUPLE) {
            if (cur->t != V_ARRAY) return TERR(R, x, "Cannot unpack non-iterable type: %s", k_type_names[cur->t]);
            if (cur->n != x->a->n) return TERR(R, x, "Too %s items to unpack", x->a->n > cur->n ? "few" : "many");
        }
        if (test) {
            TRY(step(R, x));
            env *ls = env_new(R, scope);
            if (!ls) return r_nomem(R);
            TRY(bind_loopvar(R, x->a, cur, ls));
            jv *t;
            TRY(eval(R, test, ls, &t));
            if (!truthy(t)) continue;
        }
        items->items[items->n++] = cur;
    }
    int none = 1;
    for (size_t i = 0; i < items->n; i++) {
        TRY(step(R, x));
        jv *lv = loop_value(R, i, items->n, i > 0 ? items->items[i - 1] : NULL,
                            i + 1 < items->n ? items->items[i + 1] : NULL);
        if (!lv) return r_nomem(R);
        TRY(env_set(R, scope, (jstr){"loop", 4}, lv));
        TRY(bind_loopvar(R, x->a, items->items[i], scope));
        size_t mark = out->n;
        int rc = exec_block(R, x->list, x->n, scope, out);
        if (rc == JB_CONTINUE || rc == JB_BREAK) {
            /* the iteration's text is lost with the exception that ended it */
            out->n = mark;
            if (out->s) out->s[mark] = 0;
            if (rc == JB_BREAK) break;
            continue;
        }
        if (rc) return rc;
        none = 0;
    }
    if (none) return exec_block(R, x->list2, x->n2, scope, out);
    return 0;
}

/* executeSet */
static int exec_set(rctx *R, const node *x, env *e) {
    jv *rhs;
    if (x->b) {
        TRY(eval(R, x->b, e, &rhs));
    } else {
        jbuf b = {0};
        int rc = exec_block(R, x->list, x->n, e, &b);
        if (rc) {
            jb_free(&b);
            return rc;
        }
        TRY(jb_to_val(R, &b, &rhs));
    }
    const node *lhs = x->a;
    R->at = x;
    if (lhs->kind == N_IDENT) return env_set(R, e, lhs->str, rhs);
    if (lhs->kind == N_TUPLE) {
        if (!is_arr(rhs)) return TERR(R, x, "Cannot unpack non-iterable type in set: %s", k_type_names[rhs->t]);
        if (rhs->n != lhs->n) return TERR(R, x, "Too %s items to unpack in set", lhs->n > rhs->n ? "few" : "many");
        for (size_t i = 0; i < lhs->n; i++) {
            if (lhs->list[i]->kind != N_IDENT) return TERR(R, x, "Cannot unpack to non-identifier in set");
            TRY(env_set(R, e, lhs->list[i]->str, rhs->items[i]));
        }
        return 0;
    }
    if (lhs->kind == N_MEMBER) {
        jv *obj;
        TRY(eval(R, lhs->a, e, &obj));
        if (obj->t != V_NS) return TERR(R, x, "cannot assign attribute on non-namespace object");
        if (lhs->b->kind != N_IDENT) return TERR(R, x, "Cannot assign to member with non-identifier property");
        if (obj_set(R, obj, lhs->b->str, rhs)) return r_nomem(R);
        return 0;
    }
    return TERR(R, x, "Invalid LHS inside assignment expression");
}

/* renderBlock */
static int exec_block(rctx *R, node *const *body, size_t n, env *e, jbuf *out) {
    if (++R->depth > R->lim.max_depth) {
        R->depth--;
        return r_fail(R, EMDPO_ERR_LIMIT, n ? body[0] : NULL, "statements nest deeper than %d", R->lim.max_depth);
    }
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const node *x = body[i];
        if ((rc = step(R, x))) break;
        R->at = x;
        switch (x->kind) {
        case N_TEXT:
            rc = jb_put(R, out, x->str.s, x->str.n);
            break;
        case N_OUT: {
            jv *v;
            if (!(rc = eval(R, x->a, e, &v)) && v->t != V_NULL && v->t != V_UNDEF) rc = display(R, out, v);
            break;
        }
        case N_IF: {
            jv *t;
            if (!(rc = eval(R, x->a, e, &t)))
                rc = truthy(t) ? exec_block(R, x->list, x->n, e, out) : exec_block(R, x->list2, x->n2, e, out);
            break;
        }
        case N_FOR:
            rc = exec_for(R, x, e, out);
            break;
        case N_SET:
            rc = exec_set(R, x, e);
            break;
        case N_MACRO: {
            jv *f = v_new(R, V_FUNC);
            if (!f) {
                rc = r_nomem(R);
                break;
            }
            f->fn = F_MACRO;
            f->macro = x;
            f->closure = e;
            rc = env_set(R, e, x->str, f);
            break;
        }
        case N_BREAK:
            rc = JB_BREAK;
            break;
        case N_CONTINUE:
            rc = JB_CONTINUE;
            break;
        case N_FILTER_BLOCK: {
            jbuf b = {0};
            jv *v, *r;
            rc = exec_block(R, x->list, x->n, e, &b);
            if (rc) {
                jb_free(&b);
                break;
            }
            if ((rc = jb_to_val(R, &b, &v))) break;
            R->at = x;
            if (!(rc = apply_filter(R, v, x->a, e, &r)) && r->t != V_NULL && r->t != V_UNDEF) rc = display(R, out, r);
            break;
        }
        default:
            rc = TERR(R, x, "an expression where a statement was expected");
        }
    }
    R->depth--;
    return rc;
}

/* ---- Rendering ------------------------------------------------------------------- */

void emdpo_jinja_limits_init(emdpo_jinja_limits *lim) {
    lim->max_output = (size_t)64 << 20;
    lim->max_memory = (size_t)512 << 20;
    lim->max_steps = 20000000;
    lim->max_depth = 200;
}

/* convertToRuntimeValues of a JSON value. */
static int from_json(rctx *R, const emdpo_json *j, jv **out) {
    switch (j->type) {
    case EMDPO_JSON_NULL:
        *out = &k_null;
        return 0;
    case EMDPO_JSON_BOOL:
        *out = v_bool(j->boolean);
        return 0;
    case EMDPO_JSON_NUMBER:
        *out = v_num(R, j->num == floor(j->num) ? V_INT : V_FLOAT, j->num);
        break;
    case EMDPO_JSON_STRING:
        *out = v_str_ref(R, (jstr){j->u.str, j->len});
        break;
    case EMDPO_JSON_ARRAY: {
        jv *a = v_list(R, V_ARRAY, j->len);
        if (!a) return r_nomem(R);
        for (size_t i = 0; i < j->len; i++) TRY(from_json(R, &j->u.elems[i], &a->items[a->n++]));
        *out = a;
        return 0;
    }
    case EMDPO_JSON_OBJECT: {
        jv *o = v_list(R, V_OBJECT, j->len);
        if (!o) return r_nomem(R);
        for (size_t i = 0; i < j->len; i++) {
            o->keys[i] = (jstr){j->u.members[i].key, j->u.members[i].key_len};
            TRY(from_json(R, &j->u.members[i].value, &o->items[o->n++]));
        }
        *out = o;
        return 0;
    }
    }
    return *out ? 0 : r_nomem(R);
}

int emdpo_jinja_render(const emdpo_jinja *t, const emdpo_json *vars, const emdpo_jinja_limits *lim, char **out,
                       size_t *out_len, emdpo_diag *diag) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!t || !out || !out_len) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no template or output");
    emdpo_diag_reset(diag, t->name);
    if (vars && vars->type != EMDPO_JSON_OBJECT)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "the template's variables are not an object");
    rctx R;
    memset(&R, 0, sizeof R);
    R.t = t;
    R.diag = diag;
    if (lim) R.lim = *lim;
    else emdpo_jinja_limits_init(&R.lim);
    R.a.cap = R.lim.max_memory;
    jbuf b = {0};
    int rc = 0;
    env *g = env_new(&R, NULL);
    if (!g) rc = r_nomem(&R);
    static jv raise_fn = {V_FUNC, F_RAISE, 0, {0, 0}, 0, 0, 0, 0, 0, 0, 0};
    static jv range_fn = {V_FUNC, F_RANGE, 0, {0, 0}, 0, 0, 0, 0, 0, 0, 0};
    static const struct {
        const char *name;
        jv *v;
    } globals[] = {{"false", &k_false}, {"true", &k_true},     {"none", &k_null},  {"raise_exception", &raise_fn},
                   {"range", &range_fn}, {"True", &k_true},    {"False", &k_false}, {"None", &k_null},
                   {"namespace", &k_namespace_fn}};
    for (size_t i = 0; !rc && i < sizeof globals / sizeof globals[0]; i++)
        rc = env_set(&R, g, (jstr){globals[i].name, strlen(globals[i].name)}, globals[i].v);
    for (size_t i = 0; !rc && vars && i < vars->len; i++) {
        jstr name = {vars->u.members[i].key, vars->u.members[i].key_len};
        if (env_slot(g, name)) {
            rc = emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "Variable already declared: %.*s", (int)name.n, name.s);
            break;
        }
        jv *v;
        if (!(rc = from_json(&R, &vars->u.members[i].value, &v))) rc = env_set(&R, g, name, v);
    }
    if (!rc) {
        rc = exec_block(&R, t->body, t->n, g, &b);
        if (rc == JB_BREAK || rc == JB_CONTINUE)
            rc = TERR(&R, R.at, "{%% %s %%} outside a loop", rc == JB_BREAK ? "break" : "continue");
    }
    if (!rc && !b.s) rc = jb_put(&R, &b, "", 0);
    if (!rc && !b.s) {
        b.s = emdpo_malloc(1);
        b.cap = 1;
        if (!b.s) rc = r_nomem(&R);
        else b.s[0] = 0;
    }
    arena_free(&R.a);
    if (rc) {
        jb_free(&b);
        return rc;
    }
    /* hand over exactly len + 1 bytes, as documented */
    if (b.cap != b.n + 1) {
        char *p = emdpo_realloc(b.s, b.cap, b.n + 1);
        if (!p) {
            jb_free(&b);
            return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        }
        b.s = p;
    }
    *out = b.s;
    *out_len = b.n;
    return 0;
}
