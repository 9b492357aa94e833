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
    emdpo_free(doc, sizeof *doc);
}

/* ---- Parser ------------------------------------------------------------ */

typedef struct parser {
    emdpo_json_doc *doc;
    const unsigned char *s;
    size_t len, pos;
    emdpo_json_error *err;
    int nomem;
} parser;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail_at(parser *p, size_t offset, const char *fmt, ...) {
    p->err->offset = offset;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->msg, sizeof p->err->msg, fmt, ap);
    va_end(ap);
    return EMDPO_ERR_PARSE;
}

static int fail_nomem(parser *p) {
    p->nomem = 1;
    p->err->offset = p->pos;
    snprintf(p->err->msg, sizeof p->err->msg, "out of memory");
    return EMDPO_ERR_NOMEM;
}

/* Names the byte at the current position in an error message. */
static int fail_unexpected(parser *p) {
    if (p->pos >= p->len) return fail_at(p, p->pos, "unexpected end of input");
    unsigned c = p->s[p->pos];
    if (c > 0x20 && c < 0x7F) return fail_at(p, p->pos, "unexpected character '%c'", (int)c);
    return fail_at(p, p->pos, "unexpected byte 0x%02X", c);
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int peek(parser *p) { return p->pos < p->len ? p->s[p->pos] : -1; }

static int starts_with(const parser *p, size_t at, const char *word) {
    size_t n = strlen(word);
    return at <= p->len && p->len - at >= n && memcmp(p->s + at, word, n) == 0;
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

/* Decodes the \u escape at s[i] (pointing at the backslash) and any low
 * surrogate that must follow it. Advances *i past what it consumed. */
static int decode_u_escape(parser *p, size_t *i, size_t end, uint32_t *cp) {
    size_t at = *i;
    uint32_t hi, lo;
    if (end - at < 6 || !hex4(p->s + at + 2, &hi)) return fail_at(p, at, "invalid \\u escape");
    *i = at + 6;
    if (hi >= 0xDC00 && hi <= 0xDFFF) return fail_at(p, at, "lone low surrogate \\u%04X", (unsigned)hi);
    if (hi < 0xD800 || hi > 0xDBFF) {
        *cp = hi;
        return EMDPO_OK;
    }
    if (end - *i < 6 || p->s[*i] != '\\' || p->s[*i + 1] != 'u' || !hex4(p->s + *i + 2, &lo) ||
        lo < 0xDC00 || lo > 0xDFFF)
        return fail_at(p, at, "lone high surrogate \\u%04X", (unsigned)hi);
    *i += 6;
    *cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
    return EMDPO_OK;
}

/* A string starting at the opening quote. Decoded text never outgrows its
 * source, so one allocation of the source length suffices. */
static int parse_string(parser *p, const char **out, size_t *out_len) {
    size_t start = p->pos + 1, end = start;
    while (end < p->len && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->len) return fail_at(p, p->pos, "unterminated string");
    char *dst = arena_alloc(p->doc, end - start + 1, 1);
    if (!dst) return fail_nomem(p);
    size_t n = 0;
    for (size_t i = start; i < end;) {
        unsigned c = p->s[i];
        if (c < 0x20) return fail_at(p, i, "control character 0x%02X in string", c);
        if (c >= 0x80) {
            size_t k = emdpo_utf8_seq_len(p->s + i, end - i);
            if (!k) return fail_at(p, i, "invalid UTF-8 in string");
            memcpy(dst + n, p->s + i, k);
            n += k;
            i += k;
            continue;
        }
        if (c != '\\') {
            dst[n++] = (char)c;
            i++;
            continue;
        }
        char e = (char)p->s[i + 1];
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *hit = e ? strchr(from, e) : NULL;
        if (hit) {
            dst[n++] = to[hit - from];
            i += 2;
        } else if (e == 'u') {
            uint32_t cp = 0;
            int rc = decode_u_escape(p, &i, end, &cp);
            if (rc) return rc;
            n += emdpo_utf8_encode(cp, dst + n);
        } else {
            return fail_at(p, i, "invalid escape in string");
        }
    }
    dst[n] = 0;
    *out = dst;
    *out_len = n;
    p->pos = end + 1;
    return EMDPO_OK;
}

static size_t skip_digits(const parser *p, size_t i) {
    while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') i++;
    return i;
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

static int parse_number(parser *p, emdpo_json *v) {
    size_t start = p->pos, i = start;
    if (i < p->len && p->s[i] == '-') i++;
    if (starts_with(p, i, "Infinity")) return fail_at(p, start, "Infinity is not valid JSON");
    if (i >= p->len || p->s[i] < '0' || p->s[i] > '9') return fail_at(p, start, "invalid number");
    if (p->s[i] == '0' && i + 1 < p->len && p->s[i + 1] >= '0' && p->s[i + 1] <= '9')
        return fail_at(p, start, "leading zero in number");
    i = skip_digits(p, i);
    int integral = 1;
    if (i < p->len && p->s[i] == '.') {
        integral = 0;
        size_t j = skip_digits(p, i + 1);
        if (j == i + 1) return fail_at(p, i, "expected a digit after '.'");
        i = j;
    }
    if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
        integral = 0;
        i++;
        if (i < p->len && (p->s[i] == '+' || p->s[i] == '-')) i++;
        size_t j = skip_digits(p, i);
        if (j == i) return fail_at(p, i, "expected a digit in exponent");
        i = j;
    }
    size_t n = i - start;
    emdpo_json_doc *doc = p->doc;
    if (emdpo_grow((void **)&doc->numbuf, &doc->numbuf_cap, n + 1, 1)) return fail_nomem(p);
    memcpy(doc->numbuf, p->s + start, n);
    doc->numbuf[n] = 0;
    double x = strtod(doc->numbuf, NULL);
    if (!isfinite(x)) return fail_at(p, start, "number out of range");
    v->type = EMDPO_JSON_NUMBER;
    v->num = x;
    v->is_int = integral && literal_int64(doc->numbuf, n, &v->inum);
    p->pos = i;
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

static int parse_array(parser *p, emdpo_json *v, int depth) {
    size_t base = p->doc->stack_len;
    p->pos++;
    skip_ws(p);
    if (peek(p) != ']') {
        for (;;) {
            emdpo_json_member m = {0};
            int rc = parse_value(p, &m.value, depth + 1);
            if (rc || (rc = push(p, &m, 0))) return rc;
            skip_ws(p);
            if (peek(p) == ']') break;
            if (peek(p) != ',') {
                if (p->pos >= p->len) return fail_unexpected(p);
                return fail_at(p, p->pos, "expected ',' or ']'");
            }
            p->pos++;
            skip_ws(p);
            if (peek(p) == ']') return fail_at(p, p->pos, "trailing comma in array");
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
        if (p->pos >= p->len) return fail_unexpected(p);
        return fail_at(p, p->pos, "expected a string key");
    }
    emdpo_json_member m = {0};
    size_t key_offset = p->pos;
    int rc = parse_string(p, &m.key, &m.key_len);
    if (rc) return rc;
    skip_ws(p);
    if (peek(p) != ':') {
        if (p->pos >= p->len) return fail_unexpected(p);
        return fail_at(p, p->pos, "expected ':'");
    }
    p->pos++;
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
                if (p->pos >= p->len) return fail_unexpected(p);
                return fail_at(p, p->pos, "expected ',' or '}'");
            }
            p->pos++;
            skip_ws(p);
            if (peek(p) == '}') return fail_at(p, p->pos, "trailing comma in object");
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
        if (starts_with(p, p->pos, lits[k].word)) {
            v->type = lits[k].type;
            v->boolean = lits[k].boolean;
            p->pos += strlen(lits[k].word);
            return EMDPO_OK;
        }
    }
    if (starts_with(p, p->pos, "NaN")) return fail_at(p, p->pos, "NaN is not valid JSON");
    if (starts_with(p, p->pos, "Infinity")) return fail_at(p, p->pos, "Infinity is not valid JSON");
    return fail_unexpected(p);
}

static int parse_value(parser *p, emdpo_json *v, int depth) {
    skip_ws(p);
    memset(v, 0, sizeof *v);
    int c = peek(p);
    if ((c == '[' || c == '{') && depth >= EMDPO_JSON_MAX_DEPTH)
        return fail_at(p, p->pos, "nesting deeper than %d levels", EMDPO_JSON_MAX_DEPTH);
    switch (c) {
    case '{': return parse_object(p, v, depth);
    case '[': return parse_array(p, v, depth);
    case '"':
        v->type = EMDPO_JSON_STRING;
        return parse_string(p, &v->u.str, &v->len);
    case '-': return parse_number(p, v);
    default:
        if (c >= '0' && c <= '9') return parse_number(p, v);
        return parse_literal(p, v);
    }
}

int emdpo_json_parse(emdpo_json_doc *doc, const char *text, size_t len, const emdpo_json **root,
                     emdpo_json_error *err) {
    *root = NULL;
    arena_reset(doc);
    doc->stack_len = 0;
    parser p = {doc, (const unsigned char *)text, len, 0, err, 0};
    err->offset = 0;
    err->msg[0] = 0;
    emdpo_json *v = arena_alloc(doc, sizeof *v, _Alignof(emdpo_json));
    if (!v) return fail_nomem(&p);
    int rc = parse_value(&p, v, 0);
    if (rc) return p.nomem ? EMDPO_ERR_NOMEM : rc;
    skip_ws(&p);
    if (p.pos < len) return fail_at(&p, p.pos, "unexpected data after the value");
    *root = v;
    return EMDPO_OK;
}

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
