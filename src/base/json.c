#include "base/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/utf8.h"
#include "emdpo.h"

/* ---- Arena ---------------------------------------------------------------
 * Values live in chunks that are only ever freed together. Chunk sizes double,
 * so the newest chunk is the largest; a reset keeps just that one, which lets
 * a reused document (one per JSONL line) parse without allocating. */

typedef struct chunk {
    struct chunk *next;
    size_t size, used;
    max_align_t data[];
} chunk;

#define FIRST_CHUNK 4096

typedef struct stack_entry {
    emdpo_json_member m; /* key unused for array elements */
    size_t key_offset;   /* where the key began, for duplicate-key errors */
} stack_entry;

struct emdpo_json_doc {
    chunk *chunks; /* newest first */
    stack_entry *stack; /* values of the containers still open */
    size_t stack_len, stack_cap;
    const stack_entry **sorted; /* duplicate-key check scratch */
    size_t sorted_cap;
    char *numbuf; /* NUL-terminated copy of a number for strtod */
    size_t numbuf_cap;
    chunk *strbuf; /* a string as it is decoded; a long one becomes a chunk of the arena */
};

static void chunk_free(chunk *c) { emdpo_free(c, sizeof *c + c->size); }

static void *arena_alloc(emdpo_json_doc *doc, size_t n, size_t align) {
    chunk *c = doc->chunks;
    if (c) {
        size_t at = (c->used + align - 1) & ~(align - 1);
        if (at <= c->size && n <= c->size - at) {
            c->used = at + n;
            return (char *)c->data + at;
        }
    }
    size_t size = c ? c->size : FIRST_CHUNK / 2;
    if (size > SIZE_MAX / 4) return NULL;
    size *= 2;
    if (size < n) size = n;
    if (size > SIZE_MAX - sizeof(chunk)) return NULL;
    chunk *nc = emdpo_malloc(sizeof(chunk) + size);
    if (!nc) return NULL;
    nc->next = c;
    nc->size = size;
    nc->used = n;
    doc->chunks = nc;
    return nc->data;
}

static void arena_reset(emdpo_json_doc *doc) {
    chunk *keep = doc->chunks;
    if (!keep) return;
    for (chunk *c = keep->next, *next; c; c = next) {
        next = c->next;
        chunk_free(c);
    }
    keep->next = NULL;
    keep->used = 0;
}

int emdpo_json_doc_create(emdpo_json_doc **out) {
    *out = emdpo_calloc(1, sizeof **out);
    return *out ? EMDPO_OK : EMDPO_ERR_NOMEM;
}

void emdpo_json_doc_free(emdpo_json_doc *doc) {
    if (!doc) return;
    arena_reset(doc);
    if (doc->chunks) chunk_free(doc->chunks);
    emdpo_free(doc->stack, doc->stack_cap * sizeof *doc->stack);
    emdpo_free((void *)doc->sorted, doc->sorted_cap * sizeof *doc->sorted);
    emdpo_free(doc->numbuf, doc->numbuf_cap);
    if (doc->strbuf) chunk_free(doc->strbuf);
    emdpo_free(doc, sizeof *doc);
}

/* ---- Parser ------------------------------------------------------------
 * The parser reads s[pos..len): the whole text (emdpo_json_parse), or a
 * window of the input that refill() slides along (a stream). base is the
 * input offset of s[0]. Lookahead is at most 12 bytes (a surrogate pair). */

struct emdpo_json_stream {
    emdpo_json_doc *doc;
    emdpo_json_limits lim;
    emdpo_json_read_fn read; /* NULL: s holds the whole input */
    void *ctx;
    char *buf; /* EMDPO_JSON_STREAM_BUF bytes for a stream */
    const unsigned char *s;
    size_t len, pos, base;
    int eof;
    int read_rc; /* what read returned when it failed */
    long newlines;
    long value_newlines; /* newlines before the last root value began */
    size_t list_cap; /* the bound of the array parse_value is about to read, 0: none */
    int root_depth;  /* the depth of the current tree's root */
    int array_state; /* emdpo_json_stream_element: 0 before '[', 1 after it, 2 after an element, 3 done */
    emdpo_json_error *err;
    int nomem;
};

typedef struct emdpo_json_stream parser;

/* Makes want bytes available at pos unless the input ends first. */
static size_t avail(parser *p, size_t want) {
    if (p->len - p->pos >= want || p->eof) return p->len - p->pos;
    size_t have = p->len - p->pos;
    memmove(p->buf, p->s + p->pos, have);
    p->base += p->pos;
    p->pos = 0;
    p->len = have;
    p->s = (const unsigned char *)p->buf;
    while (p->len < want && !p->eof) {
        size_t n = 0;
        int rc = p->read(p->ctx, p->buf + p->len, EMDPO_JSON_STREAM_BUF - p->len, &n);
        if (rc) p->read_rc = rc;
        if (rc || n == 0) p->eof = 1;
        p->len += n;
    }
    return p->len - p->pos;
}

static size_t offset(const parser *p) { return p->base + p->pos; }

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail_at(parser *p, size_t offset, const char *fmt, ...) {
    p->err->offset = offset;
    p->err->limit = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->msg, sizeof p->err->msg, fmt, ap);
    va_end(ap);
    return EMDPO_ERR_PARSE;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail_limit(parser *p, size_t offset, const char *fmt, ...) {
    p->err->offset = offset;
    p->err->limit = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->msg, sizeof p->err->msg, fmt, ap);
    va_end(ap);
    return EMDPO_ERR_PARSE;
}

static int fail_nomem(parser *p) {
    p->nomem = 1;
    p->err->offset = offset(p);
    snprintf(p->err->msg, sizeof p->err->msg, "out of memory");
    return EMDPO_ERR_NOMEM;
}

/* Names the byte at the current position in an error message. */
static int fail_unexpected(parser *p) {
    if (!avail(p, 1)) return fail_at(p, offset(p), "unexpected end of input");
    unsigned c = p->s[p->pos];
    if (c > 0x20 && c < 0x7F) return fail_at(p, offset(p), "unexpected character '%c'", (int)c);
    return fail_at(p, offset(p), "unexpected byte 0x%02X", c);
}

static void skip_ws(parser *p) {
    while (avail(p, 1)) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->newlines += c == '\n';
        p->pos++;
    }
}

static int peek(parser *p) { return avail(p, 1) ? p->s[p->pos] : -1; }

static int starts_with(parser *p, const char *word) {
    size_t n = strlen(word);
    return avail(p, n) >= n && memcmp(p->s + p->pos, word, n) == 0;
}

static int hex4(const unsigned char *s, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return 0;
    }
    *out = v;
    return 1;
}

/* Decodes the \u escape at pos (the backslash) and any low surrogate that
 * must follow it, and moves past what it consumed. */
static int decode_u_escape(parser *p, uint32_t *cp) {
    size_t at = offset(p), have = avail(p, 12);
    const unsigned char *s = p->s + p->pos;
    uint32_t hi, lo;
    if (have < 6 || !hex4(s + 2, &hi)) return fail_at(p, at, "invalid \\u escape");
    if (hi >= 0xDC00 && hi <= 0xDFFF) return fail_at(p, at, "lone low surrogate \\u%04X", (unsigned)hi);
    if (hi < 0xD800 || hi > 0xDBFF) {
        p->pos += 6;
        *cp = hi;
        return EMDPO_OK;
    }
    if (have < 12 || s[6] != '\\' || s[7] != 'u' || !hex4(s + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF)
        return fail_at(p, at, "lone high surrogate \\u%04X", (unsigned)hi);
    p->pos += 12;
    *cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
    return EMDPO_OK;
}

/* A string as it is decoded into doc->strbuf: everything, or with keep its
 * first `head` bytes and a tail that holds at least its last keep bytes
 * (the buffer never exceeds 3·keep). */
typedef struct str_acc {
    size_t keep; /* 0: the whole string */
    size_t n;    /* bytes in strbuf */
    size_t total;
    size_t head; /* with elided: the head's length, cut at a character */
    int elided;
    int has_nul;
} str_acc;

static char *strbuf_text(emdpo_json_doc *doc) { return (char *)doc->strbuf->data; }

/* Room for need bytes in doc->strbuf, grown by doubling. */
static int strbuf_reserve(emdpo_json_doc *doc, size_t need) {
    size_t have = doc->strbuf ? doc->strbuf->size : 0;
    if (need <= have) return 1;
    size_t size = have > need / 2 ? 2 * have : need;
    if (size < 64) size = 64;
    if (size > SIZE_MAX - sizeof(chunk)) return 0;
    chunk *c = emdpo_realloc(doc->strbuf, doc->strbuf ? sizeof(chunk) + have : 0, sizeof(chunk) + size);
    if (!c) return 0;
    c->size = size;
    doc->strbuf = c;
    return 1;
}

static int str_put(parser *p, str_acc *a, const unsigned char *b, size_t k) {
    emdpo_json_doc *doc = p->doc;
    a->total += k;
    while (k > 0) {
        size_t take = k;
        if (a->keep) {
            if (a->n == 3 * a->keep) {
                if (!a->elided) {
                    a->head = a->keep;
                    while (a->head > 0 && ((unsigned char)strbuf_text(doc)[a->head] & 0xC0) == 0x80) a->head--;
                    a->elided = 1;
                }
                memmove(strbuf_text(doc) + a->head, strbuf_text(doc) + a->n - a->keep, a->keep);
                a->n = a->head + a->keep;
            }
            if (take > 3 * a->keep - a->n) take = 3 * a->keep - a->n;
        }
        if (!strbuf_reserve(doc, a->n + take + 1)) return fail_nomem(p);
        memcpy(strbuf_text(doc) + a->n, b, take);
        a->n += take;
        b += take;
        k -= take;
    }
    return EMDPO_OK;
}

/* A string starting at the opening quote, decoded into the arena. A key
 * (max_key: its bound, 0 for none) is never elided. */
static int parse_string(parser *p, int is_key, const char **out, size_t *out_len, emdpo_json *v) {
    size_t open = offset(p);
    str_acc a = {.keep = is_key ? 0 : p->lim.keep};
    size_t max_key = is_key ? p->lim.max_key : 0;
    int rc;
    p->pos++;
    for (;;) {
        size_t have = avail(p, 1);
        if (!have) return fail_at(p, open, "unterminated string");
        if (max_key && a.total > max_key) return fail_limit(p, open, "a key is longer than %zu bytes", max_key);
        const unsigned char *s = p->s + p->pos;
        size_t run = 0;
        while (run < have && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\') run++;
        if (run) {
            if ((rc = str_put(p, &a, s, run))) return rc;
            p->pos += run;
            continue;
        }
        unsigned c = s[0];
        if (c == '"') break;
        if (c < 0x20) return fail_at(p, offset(p), "control character 0x%02X in string", c);
        if (c >= 0x80) {
            have = avail(p, 4);
            s = p->s + p->pos;
            size_t k = emdpo_utf8_seq_len(s, have);
            if (!k) return fail_at(p, offset(p), "invalid UTF-8 in string");
            if ((rc = str_put(p, &a, s, k))) return rc;
            p->pos += k;
            continue;
        }
        if (avail(p, 2) < 2) return fail_at(p, open, "unterminated string");
        s = p->s + p->pos;
        char e = (char)s[1];
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *hit = e ? strchr(from, e) : NULL;
        unsigned char enc[4];
        size_t k;
        if (hit) {
            enc[0] = (unsigned char)to[hit - from];
            k = 1;
            p->pos += 2;
        } else if (e == 'u') {
            uint32_t cp = 0;
            if ((rc = decode_u_escape(p, &cp))) return rc;
            k = emdpo_utf8_encode(cp, (char *)enc);
            a.has_nul |= cp == 0;
        } else {
            return fail_at(p, offset(p), "invalid escape in string");
        }
        if ((rc = str_put(p, &a, enc, k))) return rc;
    }
    if (max_key && a.total > max_key) return fail_limit(p, open, "a key is longer than %zu bytes", max_key);
    p->pos++;
    emdpo_json_doc *doc = p->doc;
    if (!strbuf_reserve(doc, a.n + 1)) return fail_nomem(p);
    char *dst;
    size_t n = a.n;
    if (!a.elided && a.n >= FIRST_CHUNK && doc->chunks) {
        /* A long string stays where it was decoded: its buffer joins the
         * arena behind the newest chunk (which keeps serving allocations)
         * instead of being copied. */
        chunk *c = doc->strbuf;
        c->used = c->size;
        c->next = doc->chunks->next;
        doc->chunks->next = c;
        doc->strbuf = NULL;
        dst = (char *)c->data;
    } else {
        size_t tail = 0;
        if (a.elided) {
            tail = a.n - a.keep;
            while (tail < a.n && ((unsigned char)strbuf_text(doc)[tail] & 0xC0) == 0x80) tail++;
            n = a.head + (a.n - tail);
        }
        if (!(dst = arena_alloc(doc, n + 1, 1))) return fail_nomem(p);
        const char *src = strbuf_text(doc);
        if (a.elided) {
            memcpy(dst, src, a.head);
            memcpy(dst + a.head, src + tail, a.n - tail);
        } else {
            memcpy(dst, src, n);
        }
    }
    dst[n] = 0;
    *out = dst;
    *out_len = n;
    if (v) {
        v->full_len = a.total;
        v->has_nul = a.has_nul;
    }
    return EMDPO_OK;
}

/* Exact value of an integer literal s[0..n) (optional '-', then digits), or 0
 * when it does not fit int64. */
static int literal_int64(const char *s, size_t n, int64_t *out) {
    int neg = s[0] == '-';
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (size_t i = (size_t)neg; i < n; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (limit - d) / 10) return 0;
        v = v * 10 + d;
    }
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return 1;
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

/* Appends the digits at pos to doc->numbuf[*n..]. */
static int take_digits(parser *p, size_t start, size_t *n) {
    emdpo_json_doc *doc = p->doc;
    while (is_digit(peek(p))) {
        if (p->lim.max_key && *n >= p->lim.max_key)
            return fail_limit(p, start, "a number is longer than %zu characters", p->lim.max_key);
        if (emdpo_grow((void **)&doc->numbuf, &doc->numbuf_cap, *n + 2, 1)) return fail_nomem(p);
        doc->numbuf[(*n)++] = (char)p->s[p->pos++];
    }
    return EMDPO_OK;
}

static int take_char(parser *p, size_t *n) {
    emdpo_json_doc *doc = p->doc;
    if (emdpo_grow((void **)&doc->numbuf, &doc->numbuf_cap, *n + 2, 1)) return fail_nomem(p);
    doc->numbuf[(*n)++] = (char)p->s[p->pos++];
    return EMDPO_OK;
}

static int parse_number(parser *p, emdpo_json *v) {
    size_t start = offset(p), n = 0;
    int rc;
    if (peek(p) == '-' && (rc = take_char(p, &n))) return rc;
    if (starts_with(p, "Infinity")) return fail_at(p, start, "Infinity is not valid JSON");
    if (!is_digit(peek(p))) return fail_at(p, start, "invalid number");
    if (p->s[p->pos] == '0' && avail(p, 2) >= 2 && is_digit(p->s[p->pos + 1]))
        return fail_at(p, start, "leading zero in number");
    if ((rc = take_digits(p, start, &n))) return rc;
    int integral = 1;
    if (peek(p) == '.') {
        integral = 0;
        size_t dot = offset(p), before = n;
        if ((rc = take_char(p, &n)) || (rc = take_digits(p, start, &n))) return rc;
        if (n == before + 1) return fail_at(p, dot, "expected a digit after '.'");
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        integral = 0;
        if ((rc = take_char(p, &n))) return rc;
        if ((peek(p) == '+' || peek(p) == '-') && (rc = take_char(p, &n))) return rc;
        size_t at = offset(p), before = n;
        if ((rc = take_digits(p, start, &n))) return rc;
        if (n == before) return fail_at(p, at, "expected a digit in exponent");
    }
    emdpo_json_doc *doc = p->doc;
    doc->numbuf[n] = 0;
    double x = strtod(doc->numbuf, NULL);
    if (!isfinite(x)) return fail_at(p, start, "number out of range");
    v->type = EMDPO_JSON_NUMBER;
    v->num = x;
    v->is_int = integral && literal_int64(doc->numbuf, n, &v->inum);
    return EMDPO_OK;
}

static int parse_value(parser *p, emdpo_json *v, int depth);

static int push(parser *p, const emdpo_json_member *m, size_t key_offset) {
    emdpo_json_doc *doc = p->doc;
    if (emdpo_grow((void **)&doc->stack, &doc->stack_cap, doc->stack_len + 1, sizeof *doc->stack))
        return fail_nomem(p);
    doc->stack[doc->stack_len].m = *m;
    doc->stack[doc->stack_len].key_offset = key_offset;
    doc->stack_len++;
    return EMDPO_OK;
}

static int parse_array(parser *p, emdpo_json *v, int depth, size_t cap) {
    size_t base = p->doc->stack_len;
    p->pos++;
    skip_ws(p);
    if (peek(p) != ']') {
        for (;;) {
            emdpo_json_member m = {0};
            if (cap && p->doc->stack_len - base == cap)
                return fail_limit(p, offset(p), "\"%.40s\" lists more than %zu elements", p->lim.list_key, cap);
            int rc = parse_value(p, &m.value, depth + 1);
            if (rc || (rc = push(p, &m, 0))) return rc;
            skip_ws(p);
            if (peek(p) == ']') break;
            if (peek(p) != ',') {
                if (!avail(p, 1)) return fail_unexpected(p);
                return fail_at(p, offset(p), "expected ',' or ']'");
            }
            p->pos++;
            skip_ws(p);
            if (peek(p) == ']') return fail_at(p, offset(p), "trailing comma in array");
        }
    }
    p->pos++;
    size_t n = p->doc->stack_len - base;
    emdpo_json *elems = NULL;
    if (n) {
        if (n > SIZE_MAX / sizeof *elems ||
            !(elems = arena_alloc(p->doc, n * sizeof *elems, _Alignof(emdpo_json))))
            return fail_nomem(p);
        for (size_t k = 0; k < n; k++) elems[k] = p->doc->stack[base + k].m.value;
    }
    p->doc->stack_len = base;
    v->type = EMDPO_JSON_ARRAY;
    v->len = n;
    v->u.elems = elems;
    return EMDPO_OK;
}

static int cmp_keys(const void *a, const void *b) {
    const emdpo_json_member *x = &(*(const stack_entry *const *)a)->m;
    const emdpo_json_member *y = &(*(const stack_entry *const *)b)->m;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* Sorting makes the check O(n log n), so a hostile object with millions of
 * keys costs no more than parsing it. */
static int check_duplicate_keys(parser *p, size_t base, size_t n) {
    emdpo_json_doc *doc = p->doc;
    if (n < 2) return EMDPO_OK;
    if (emdpo_grow((void **)&doc->sorted, &doc->sorted_cap, n, sizeof *doc->sorted)) return fail_nomem(p);
    for (size_t k = 0; k < n; k++) doc->sorted[k] = &doc->stack[base + k];
    qsort((void *)doc->sorted, n, sizeof *doc->sorted, cmp_keys);
    for (size_t k = 1; k < n; k++) {
        if (cmp_keys(&doc->sorted[k - 1], &doc->sorted[k]) == 0) {
            const stack_entry *a = doc->sorted[k - 1], *b = doc->sorted[k];
            size_t at = a->key_offset > b->key_offset ? a->key_offset : b->key_offset;
            return fail_at(p, at, "duplicate key \"%.40s\"", a->m.key);
        }
    }
    return EMDPO_OK;
}

static int parse_member(parser *p, int depth) {
    if (peek(p) != '"') {
        if (!avail(p, 1)) return fail_unexpected(p);
        return fail_at(p, offset(p), "expected a string key");
    }
    emdpo_json_member m = {0};
    size_t key_offset = offset(p);
    int rc = parse_string(p, 1, &m.key, &m.key_len, NULL);
    if (rc) return rc;
    skip_ws(p);
    if (peek(p) != ':') {
        if (!avail(p, 1)) return fail_unexpected(p);
        return fail_at(p, offset(p), "expected ':'");
    }
    p->pos++;
    if (depth == p->root_depth && p->lim.list_key && strlen(p->lim.list_key) == m.key_len &&
        memcmp(p->lim.list_key, m.key, m.key_len) == 0)
        p->list_cap = p->lim.list_max;
    if ((rc = parse_value(p, &m.value, depth + 1))) return rc;
    return push(p, &m, key_offset);
}

static int parse_object(parser *p, emdpo_json *v, int depth) {
    size_t base = p->doc->stack_len;
    p->pos++;
    skip_ws(p);
    if (peek(p) != '}') {
        for (;;) {
            int rc = parse_member(p, depth);
            if (rc) return rc;
            skip_ws(p);
            if (peek(p) == '}') break;
            if (peek(p) != ',') {
                if (!avail(p, 1)) return fail_unexpected(p);
                return fail_at(p, offset(p), "expected ',' or '}'");
            }
            p->pos++;
            skip_ws(p);
            if (peek(p) == '}') return fail_at(p, offset(p), "trailing comma in object");
        }
    }
    p->pos++;
    size_t n = p->doc->stack_len - base;
    int rc = check_duplicate_keys(p, base, n);
    if (rc) return rc;
    emdpo_json_member *members = NULL;
    if (n) {
        if (n > SIZE_MAX / sizeof *members ||
            !(members = arena_alloc(p->doc, n * sizeof *members, _Alignof(emdpo_json_member))))
            return fail_nomem(p);
        for (size_t k = 0; k < n; k++) members[k] = p->doc->stack[base + k].m;
    }
    p->doc->stack_len = base;
    v->type = EMDPO_JSON_OBJECT;
    v->len = n;
    v->u.members = members;
    return EMDPO_OK;
}

static int parse_literal(parser *p, emdpo_json *v) {
    static const struct {
        const char *word;
        emdpo_json_type type;
        int boolean;
    } lits[] = {{"null", EMDPO_JSON_NULL, 0}, {"true", EMDPO_JSON_BOOL, 1}, {"false", EMDPO_JSON_BOOL, 0}};
    for (size_t k = 0; k < sizeof lits / sizeof lits[0]; k++) {
        if (starts_with(p, lits[k].word)) {
            v->type = lits[k].type;
            v->boolean = lits[k].boolean;
            p->pos += strlen(lits[k].word);
            return EMDPO_OK;
        }
    }
    if (starts_with(p, "NaN")) return fail_at(p, offset(p), "NaN is not valid JSON");
    if (starts_with(p, "Infinity")) return fail_at(p, offset(p), "Infinity is not valid JSON");
    return fail_unexpected(p);
}

static int parse_value(parser *p, emdpo_json *v, int depth) {
    size_t cap = p->list_cap;
    p->list_cap = 0;
    skip_ws(p);
    memset(v, 0, sizeof *v);
    int c = peek(p);
    if ((c == '[' || c == '{') && depth >= EMDPO_JSON_MAX_DEPTH)
        return fail_at(p, offset(p), "nesting deeper than %d levels", EMDPO_JSON_MAX_DEPTH);
    switch (c) {
    case '{': return parse_object(p, v, depth);
    case '[': return parse_array(p, v, depth, cap);
    case '"':
        v->type = EMDPO_JSON_STRING;
        return parse_string(p, 0, &v->u.str, &v->len, v);
    case '-': return parse_number(p, v);
    default:
        if (is_digit(c)) return parse_number(p, v);
        return parse_literal(p, v);
    }
}

static void begin(parser *p, emdpo_json_error *err) {
    p->err = err;
    p->nomem = 0;
    err->offset = 0;
    err->limit = 0;
    err->msg[0] = 0;
}

/* A read error or out-of-memory outranks the parse error it caused. */
static int finish(parser *p, int rc) {
    if (p->read_rc) {
        p->err->offset = offset(p);
        snprintf(p->err->msg, sizeof p->err->msg, "read error");
        return p->read_rc;
    }
    return rc && p->nomem ? EMDPO_ERR_NOMEM : rc;
}

/* One value as the root of a fresh tree, at depth. */
static int parse_root(parser *p, const emdpo_json **root, int depth) {
    *root = NULL;
    arena_reset(p->doc);
    p->doc->stack_len = 0;
    skip_ws(p);
    p->value_newlines = p->newlines;
    p->root_depth = depth;
    emdpo_json *v = arena_alloc(p->doc, sizeof *v, _Alignof(emdpo_json));
    if (!v) return fail_nomem(p);
    int rc = parse_value(p, v, depth);
    if (!rc) *root = v;
    return rc;
}

int emdpo_json_parse(emdpo_json_doc *doc, const char *text, size_t len, const emdpo_json **root,
                     emdpo_json_error *err) {
    parser p = {.doc = doc, .s = (const unsigned char *)text, .len = len, .eof = 1};
    begin(&p, err);
    int rc = parse_root(&p, root, 0);
    if (!rc) {
        skip_ws(&p);
        if (p.pos < len) rc = fail_at(&p, p.pos, "unexpected data after the value");
    }
    if (rc) *root = NULL;
    return finish(&p, rc);
}

int emdpo_json_stream_create(emdpo_json_doc *doc, const emdpo_json_limits *lim, emdpo_json_stream **out) {
    emdpo_json_stream *st = emdpo_calloc(1, sizeof *st);
    if (st && !(st->buf = emdpo_malloc(EMDPO_JSON_STREAM_BUF))) {
        emdpo_free(st, sizeof *st);
        st = NULL;
    }
    *out = st;
    if (!st) return EMDPO_ERR_NOMEM;
    st->doc = doc;
    if (lim) st->lim = *lim;
    st->eof = 1;
    st->s = (const unsigned char *)st->buf;
    return EMDPO_OK;
}

void emdpo_json_stream_free(emdpo_json_stream *st) {
    if (!st) return;
    emdpo_free(st->buf, EMDPO_JSON_STREAM_BUF);
    emdpo_free(st, sizeof *st);
}

void emdpo_json_stream_reset(emdpo_json_stream *st, emdpo_json_read_fn read, void *ctx) {
    st->read = read;
    st->ctx = ctx;
    st->s = (const unsigned char *)st->buf;
    st->len = st->pos = st->base = 0;
    st->eof = 0;
    st->read_rc = 0;
    st->newlines = 0;
    st->array_state = 0;
}

int emdpo_json_stream_peek(emdpo_json_stream *st, int *c, emdpo_json_error *err) {
    begin(st, err);
    skip_ws(st);
    *c = peek(st);
    return finish(st, EMDPO_OK);
}

int emdpo_json_stream_value(emdpo_json_stream *st, const emdpo_json **root, emdpo_json_error *err) {
    begin(st, err);
    int rc = parse_root(st, root, 0);
    if (rc) *root = NULL;
    return finish(st, rc);
}

int emdpo_json_stream_element(emdpo_json_stream *st, const emdpo_json **elem, int *got, emdpo_json_error *err) {
    begin(st, err);
    *elem = NULL;
    *got = 0;
    int rc = EMDPO_OK;
    skip_ws(st);
    if (st->array_state == 0) {
        if (peek(st) != '[') return finish(st, fail_unexpected(st));
        st->pos++;
        skip_ws(st);
        st->array_state = 1;
        if (peek(st) == ']') {
            st->pos++;
            st->array_state = 3;
        }
    } else if (st->array_state == 2) {
        if (peek(st) == ']') {
            st->pos++;
            st->array_state = 3;
        } else if (peek(st) != ',') {
            rc = avail(st, 1) ? fail_at(st, offset(st), "expected ',' or ']'") : fail_unexpected(st);
        } else {
            st->pos++;
            skip_ws(st);
            if (peek(st) == ']') rc = fail_at(st, offset(st), "trailing comma in array");
        }
    }
    if (!rc && st->array_state != 3) {
        if ((rc = parse_root(st, elem, 1))) *elem = NULL;
        else *got = 1;
        st->array_state = 2;
    }
    return finish(st, rc);
}

int emdpo_json_stream_end(emdpo_json_stream *st, emdpo_json_error *err) {
    begin(st, err);
    skip_ws(st);
    int rc = avail(st, 1) ? fail_at(st, offset(st), "unexpected data after the value") : EMDPO_OK;
    return finish(st, rc);
}

void emdpo_json_stream_switch(emdpo_json_stream *st, emdpo_json_read_fn read, void *ctx) {
    st->read = read;
    st->ctx = ctx;
    st->eof = 0;
}

long emdpo_json_stream_newlines(const emdpo_json_stream *st) { return st->newlines; }
long emdpo_json_stream_value_newlines(const emdpo_json_stream *st) { return st->value_newlines; }

const emdpo_json *emdpo_json_get(const emdpo_json *obj, const char *key) {
    if (!obj || obj->type != EMDPO_JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (size_t k = 0; k < obj->len; k++) {
        const emdpo_json_member *m = &obj->u.members[k];
        if (m->key_len == n && memcmp(m->key, key, n) == 0) return &m->value;
    }
    return NULL;
}

const char *emdpo_json_type_name(emdpo_json_type type) {
    switch (type) {
    case EMDPO_JSON_NULL: return "null";
    case EMDPO_JSON_BOOL: return "boolean";
    case EMDPO_JSON_NUMBER: return "number";
    case EMDPO_JSON_STRING: return "string";
    case EMDPO_JSON_ARRAY: return "array";
    case EMDPO_JSON_OBJECT: return "object";
    }
    return "unknown";
}
