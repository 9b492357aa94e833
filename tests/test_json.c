/* The JSON reader: every value type, each RFC 8259 violation rejected at the
 * right offset, bounded nesting, \u escapes, string writing, and clean
 * failure at every allocation. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/json.h"
#include "base/json_write.h"
#include "base/lines.h"
#include "check.h"
#include "emdpo.h"
#include "failalloc.h"

static emdpo_json_doc *g_doc, *g_stream_doc;

/* A byte source handing out at most step bytes a call, so that every
 * token of the tests crosses the stream's buffer boundaries somewhere. */
typedef struct mem_src {
    const char *s;
    size_t len, pos, step;
} mem_src;

static int mem_read(void *ctx, char *dst, size_t cap, size_t *n) {
    mem_src *m = ctx;
    size_t k = m->len - m->pos;
    if (k > cap) k = cap;
    if (k > m->step) k = m->step;
    memcpy(dst, m->s + m->pos, k);
    m->pos += k;
    *n = k;
    return EMDPO_OK;
}

/* text streamed a few bytes at a time as one value, as a record reader does. */
static int stream_parse(emdpo_json_doc *doc, const emdpo_json_limits *lim, const char *text, size_t len, size_t step,
                        const emdpo_json **root, emdpo_json_error *err) {
    emdpo_json_stream *st;
    *root = NULL;
    int rc = emdpo_json_stream_create(doc, lim, &st);
    if (rc) return rc;
    mem_src m = {text, len, 0, step};
    emdpo_json_stream_reset(st, mem_read, &m);
    rc = emdpo_json_stream_value(st, root, err);
    if (!rc && (rc = emdpo_json_stream_end(st, err))) *root = NULL;
    emdpo_json_stream_free(st);
    return rc;
}

static int same_json(const emdpo_json *a, const emdpo_json *b) {
    if (a->type != b->type || a->len != b->len) return 0;
    switch (a->type) {
    case EMDPO_JSON_NULL: return 1;
    case EMDPO_JSON_BOOL: return a->boolean == b->boolean;
    case EMDPO_JSON_NUMBER:
        return memcmp(&a->num, &b->num, sizeof a->num) == 0 && a->is_int == b->is_int && (!a->is_int || a->inum == b->inum);
    case EMDPO_JSON_STRING:
        return a->full_len == b->full_len && a->has_nul == b->has_nul && memcmp(a->u.str, b->u.str, a->len + 1) == 0;
    case EMDPO_JSON_ARRAY:
        for (size_t k = 0; k < a->len; k++)
            if (!same_json(&a->u.elems[k], &b->u.elems[k])) return 0;
        return 1;
    case EMDPO_JSON_OBJECT:
        for (size_t k = 0; k < a->len; k++)
            if (a->u.members[k].key_len != b->u.members[k].key_len ||
                memcmp(a->u.members[k].key, b->u.members[k].key, a->u.members[k].key_len + 1) ||
                !same_json(&a->u.members[k].value, &b->u.members[k].value))
                return 0;
        return 1;
    }
    return 0;
}

/* Parses text whole, and streamed 1, 3, 5 and 7 bytes at a time, which
 * must give the same tree. */
static const emdpo_json *parse(const char *text) {
    const emdpo_json *root, *again;
    emdpo_json_error err;
    int rc = emdpo_json_parse(g_doc, text, strlen(text), &root, &err);
    CHECK_MSG(rc == EMDPO_OK, "%s: %s at %zu", text, err.msg, err.offset);
    for (size_t step = 1; !rc && step < 8; step += 2) {
        int src = stream_parse(g_stream_doc, NULL, text, strlen(text), step, &again, &err);
        CHECK_MSG(src == EMDPO_OK && same_json(root, again), "%s streamed %zu at a time: %s", text, step, err.msg);
    }
    return rc ? NULL : root;
}

/* Expects text to be rejected at offset with a message containing phrase. */
static void reject(const char *text, size_t len, size_t offset, const char *phrase) {
    const emdpo_json *root = (const emdpo_json *)1;
    emdpo_json_error err;
    int rc = emdpo_json_parse(g_doc, text, len, &root, &err);
    CHECK_MSG(rc == EMDPO_ERR_PARSE, "accepted %s", text);
    CHECK(root == NULL);
    CHECK_MSG(err.offset == offset, "%s: offset %zu, expected %zu (%s)", text, err.offset, offset, err.msg);
    CHECK_MSG(strstr(err.msg, phrase) != NULL, "%s: message \"%s\" lacks \"%s\"", text, err.msg, phrase);
    for (size_t step = 1; step < 8; step += 2) {
        emdpo_json_error serr;
        CHECK_EQ_INT(stream_parse(g_stream_doc, NULL, text, len, step, &root, &serr), EMDPO_ERR_PARSE);
        CHECK_MSG(serr.offset == err.offset && strcmp(serr.msg, err.msg) == 0 && !serr.limit,
                  "%s streamed %zu at a time: %s at %zu, whole: %s at %zu", text, step, serr.msg, serr.offset, err.msg,
                  err.offset);
    }
}

#define REJECT(text, offset, phrase) reject(text, sizeof(text) - 1, offset, phrase)

static void test_scalars(void) {
    const emdpo_json *v;
    if ((v = parse(" null "))) CHECK(v->type == EMDPO_JSON_NULL);
    if ((v = parse("true"))) CHECK(v->type == EMDPO_JSON_BOOL && v->boolean == 1);
    if ((v = parse("\tfalse\r\n"))) CHECK(v->type == EMDPO_JSON_BOOL && v->boolean == 0);
    if ((v = parse("0"))) CHECK(v->type == EMDPO_JSON_NUMBER && v->num == 0 && v->is_int && v->inum == 0);
    if ((v = parse("-0"))) CHECK(v->num == 0 && signbit(v->num) && v->is_int);
    if ((v = parse("-12"))) CHECK(v->num == -12 && v->is_int && v->inum == -12);
    if ((v = parse("1.5e3"))) CHECK(v->num == 1500 && !v->is_int);
    if ((v = parse("1E-2"))) CHECK(v->num == 0.01);
    if ((v = parse("2.5E+2"))) CHECK(v->num == 250);
    if ((v = parse("0.1"))) CHECK(v->num == 0.1);
    if ((v = parse("9223372036854775807"))) CHECK(v->is_int && v->inum == INT64_MAX);
    if ((v = parse("-9223372036854775808"))) CHECK(v->is_int && v->inum == INT64_MIN);
    if ((v = parse("9223372036854775808"))) CHECK(!v->is_int && v->num == 9223372036854775808.0);
    if ((v = parse("1e-400"))) CHECK(v->num == 0); /* underflow is not an error */
    if ((v = parse("123456789012345678901234567890"))) CHECK(v->num == 123456789012345678901234567890.0);
    if ((v = parse("\"\""))) CHECK(v->type == EMDPO_JSON_STRING && v->len == 0 && v->u.str[0] == 0);
    if ((v = parse("\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\"")))
        CHECK(v->len == 17 && memcmp(v->u.str, "a\"b\\c/d\be\ff\ng\rh\ti", 18) == 0);
    if ((v = parse("\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"")))
        CHECK(strcmp(v->u.str, "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80") == 0);

    /* Only len bytes are read: the text need not be NUL-terminated. */
    const emdpo_json *root;
    emdpo_json_error err;
    char buf[3] = {'1', '2', '3'};
    CHECK_EQ_INT(emdpo_json_parse(g_doc, buf, 2, &root, &err), EMDPO_OK);
    CHECK(root && root->num == 12);
    CHECK_EQ_INT(emdpo_json_parse(g_doc, "[]", 0, &root, &err), EMDPO_ERR_PARSE);
    CHECK(strstr(err.msg, "end of input") != NULL);
}

static void test_unicode_escapes(void) {
    const emdpo_json *v;
    if ((v = parse("\"\\u0041\\u00e9\\u20AC\"")))
        CHECK(v->len == 6 && strcmp(v->u.str, "A\xC3\xA9\xE2\x82\xAC") == 0);
    /* A surrogate pair is one code point, U+1F600, four bytes of UTF-8. */
    if ((v = parse("\"\\ud83d\\ude00!\""))) CHECK(v->len == 5 && strcmp(v->u.str, "\xF0\x9F\x98\x80!") == 0);
    if ((v = parse("\"\\uDBFF\\uDFFF\""))) CHECK(strcmp(v->u.str, "\xF4\x8F\xBF\xBF") == 0);
    /* \u0000 decodes to a NUL that len still counts. */
    if ((v = parse("\"a\\u0000b\""))) CHECK(v->len == 3 && strlen(v->u.str) == 1 && v->u.str[2] == 'b');
}

static void test_containers(void) {
    const emdpo_json *v = parse(" { \"a\" : [1, \"two\", [], {}, null] , \"b\":{\"c\":true}, \"\":-1 } ");
    if (!v) return;
    CHECK(v->type == EMDPO_JSON_OBJECT && v->len == 3);
    CHECK(strcmp(v->u.members[0].key, "a") == 0 && strcmp(v->u.members[1].key, "b") == 0);
    const emdpo_json *a = emdpo_json_get(v, "a");
    CHECK(a && a->type == EMDPO_JSON_ARRAY && a->len == 5);
    if (a && a->len == 5) {
        CHECK(a->u.elems[0].num == 1);
        CHECK(strcmp(a->u.elems[1].u.str, "two") == 0);
        CHECK(a->u.elems[2].type == EMDPO_JSON_ARRAY && a->u.elems[2].len == 0);
        CHECK(a->u.elems[3].type == EMDPO_JSON_OBJECT && a->u.elems[3].len == 0);
        CHECK(a->u.elems[4].type == EMDPO_JSON_NULL);
    }
    const emdpo_json *c = emdpo_json_get(emdpo_json_get(v, "b"), "c");
    CHECK(c && c->type == EMDPO_JSON_BOOL && c->boolean);
    const emdpo_json *e = emdpo_json_get(v, "");
    CHECK(e && e->num == -1);
    CHECK(emdpo_json_get(v, "z") == NULL);
    CHECK(emdpo_json_get(a, "a") == NULL); /* not an object */
    CHECK(emdpo_json_get(NULL, "a") == NULL);
    /* Keys differing only after an embedded NUL are distinct. */
    v = parse("{\"k\\u0000x\":1,\"k\\u0000y\":2,\"k\":3}");
    if (v) CHECK(v->len == 3 && emdpo_json_get(v, "k")->num == 3);
    CHECK(strcmp(emdpo_json_type_name(EMDPO_JSON_OBJECT), "object") == 0);
    CHECK(strcmp(emdpo_json_type_name(EMDPO_JSON_BOOL), "boolean") == 0);
}

/* Enough values to need several arena chunks, then a reuse of the document. */
static void test_large(void) {
    size_t n = 20000, cap = n * 16 + 16, len = 0;
    char *text = malloc(cap);
    text[len++] = '[';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len, "%s\"s%zu\"", i ? "," : "", i);
    text[len++] = ']';
    const emdpo_json *v;
    emdpo_json_error err;
    CHECK_EQ_INT(emdpo_json_parse(g_doc, text, len, &v, &err), EMDPO_OK);
    if (v) {
        CHECK(v->len == n);
        CHECK(strcmp(v->u.elems[n - 1].u.str, "s19999") == 0);
        CHECK(strcmp(v->u.elems[12345].u.str, "s12345") == 0);
    }
    /* An object with many keys, one repeated at the very end. */
    len = 0;
    text[len++] = '{';
    for (size_t i = 0; i < 5000; i++) len += (size_t)snprintf(text + len, cap - len, "\"k%zu\":%zu,", i, i);
    size_t dup_at = len;
    len += (size_t)snprintf(text + len, cap - len, "\"k4321\":0}");
    reject(text, len, dup_at, "duplicate key \"k4321\"");
    len = (size_t)snprintf(text, cap, "{\"x\":[1,2]}");
    CHECK_EQ_INT(emdpo_json_parse(g_doc, text, len, &v, &err), EMDPO_OK);
    CHECK(v && emdpo_json_get(v, "x")->u.elems[1].num == 2);
    free(text);
}

static void test_rejections(void) {
    REJECT("[1,2,]", 5, "trailing comma");
    REJECT("{\"a\":1,}", 7, "trailing comma");
    REJECT("[,]", 1, "unexpected character ','");
    REJECT("01", 0, "leading zero");
    REJECT("-01", 0, "leading zero");
    REJECT("[00]", 1, "leading zero");
    REJECT("1.", 1, "digit after '.'");
    REJECT("1.e5", 1, "digit after '.'");
    REJECT("1e", 2, "exponent");
    REJECT("1e+", 3, "exponent");
    REJECT("-", 0, "invalid number");
    REJECT("-a", 0, "invalid number");
    REJECT(".5", 0, "unexpected character '.'");
    REJECT("+1", 0, "unexpected character '+'");
    REJECT("0x10", 1, "unexpected data after the value");
    REJECT("1e400", 0, "out of range");
    REJECT("[1, -1e400]", 4, "out of range");
    REJECT("NaN", 0, "NaN");
    REJECT("[NaN]", 1, "NaN");
    REJECT("Infinity", 0, "Infinity");
    REJECT("-Infinity", 0, "Infinity");
    REJECT("\"a\tb\"", 2, "control character");
    REJECT("\"a\nb\"", 2, "control character");
    REJECT("\"\\x\"", 1, "invalid escape");
    REJECT("\"\\u12G4\"", 1, "invalid \\u escape");
    REJECT("\"\\u12\"", 1, "invalid \\u escape");
    REJECT("\"ab\\ud800\"", 3, "lone high surrogate");
    REJECT("\"\\ud800\\u0041\"", 1, "lone high surrogate");
    REJECT("\"\\ud800\\n\"", 1, "lone high surrogate");
    REJECT("\"\\udc00\"", 1, "lone low surrogate");
    REJECT("\"\\ude00\\ud83d\"", 1, "lone low surrogate");
    REJECT("\"a\xC3\x28\"", 2, "invalid UTF-8");
    REJECT("\"\xC0\xAF\"", 1, "invalid UTF-8");         /* overlong '/' */
    REJECT("\"\xE0\x80\xAF\"", 1, "invalid UTF-8");     /* overlong, 3 bytes */
    REJECT("\"\xED\xA0\x80\"", 1, "invalid UTF-8");     /* an encoded surrogate */
    REJECT("\"\xF4\x90\x80\x80\"", 1, "invalid UTF-8"); /* above U+10FFFF */
    REJECT("\"\xE2\x82\"", 1, "invalid UTF-8");         /* truncated */
    REJECT("\"\x80\"", 1, "invalid UTF-8");             /* stray continuation byte */
    REJECT("\"\xFF\"", 1, "invalid UTF-8");
    REJECT("\"abc", 0, "unterminated string");
    REJECT("\"abc\\\"", 0, "unterminated string");
    REJECT("{\"a\":1,\"b\":2,\"a\":3}", 13, "duplicate key \"a\"");
    REJECT("{\"a\":{\"b\":1,\"b\":1}}", 12, "duplicate key \"b\"");
    REJECT("{} x", 3, "unexpected data after the value");
    REJECT("1 2", 2, "unexpected data after the value");
    REJECT("[1 2]", 3, "expected ',' or ']'");
    REJECT("{\"a\":1 \"b\":2}", 7, "expected ',' or '}'");
    REJECT("{\"a\" 1}", 5, "expected ':'");
    REJECT("{1:2}", 1, "expected a string key");
    REJECT("{'a':2}", 1, "expected a string key");
    REJECT("", 0, "unexpected end of input");
    REJECT("   ", 3, "unexpected end of input");
    REJECT("[1,", 3, "unexpected end of input");
    REJECT("{\"a\":", 5, "unexpected end of input");
    REJECT("{\"a\"", 4, "unexpected end of input");
    REJECT("[1", 2, "unexpected end of input");
    REJECT("tru", 0, "unexpected character 't'");
    REJECT("nul", 0, "unexpected character 'n'");
    REJECT("True", 0, "unexpected character 'T'");
    REJECT("\xEF\xBB\xBF{}", 0, "unexpected byte 0xEF"); /* a BOM is not JSON */
    REJECT("[1]\x00", 3, "unexpected data");
    REJECT("\x0C[]", 0, "unexpected byte 0x0C"); /* form feed is not JSON whitespace */
}

static void test_depth(void) {
    size_t max = EMDPO_JSON_MAX_DEPTH, n = 100000;
    char *text = malloc(2 * n + 2);
    memset(text, '[', max);
    memset(text + max, ']', max);
    const emdpo_json *v;
    emdpo_json_error err;
    CHECK_EQ_INT(emdpo_json_parse(g_doc, text, 2 * max, &v, &err), EMDPO_OK);
    memset(text, '[', max + 1);
    memset(text + max + 1, ']', max + 1);
    reject(text, 2 * max + 2, max, "nesting deeper than 256");
    /* Hostile depth is refused long before the stack could overflow. */
    memset(text, '[', n);
    reject(text, n, max, "nesting");
    for (size_t i = 0; i < n / 5; i++) memcpy(text + 5 * i, "{\"a\":", 5);
    reject(text, 5 * (n / 5), 5 * max, "nesting");
    free(text);
}

/* Writes s with emdpo_json_write_string and parses it back. */
static void check_write_roundtrip(const char *s, const char *expect_text) {
    char *buf = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&buf, &size);
    CHECK_EQ_INT(emdpo_json_write_string(fp, s), EMDPO_OK);
    fclose(fp);
    if (expect_text) CHECK_MSG(strcmp(buf, expect_text) == 0, "wrote %s", buf);
    const emdpo_json *v;
    emdpo_json_error err;
    CHECK_EQ_INT(emdpo_json_parse(g_doc, buf, size, &v, &err), EMDPO_OK);
    CHECK(v && v->type == EMDPO_JSON_STRING && v->len == strlen(s) && strcmp(v->u.str, s) == 0);
    free(buf);
}

static void test_write_string(void) {
    check_write_roundtrip("plain", "\"plain\"");
    check_write_roundtrip("", "\"\"");
    check_write_roundtrip("q\"b\\s/\n\r\t\b\f\x01\x1f\x7f",
                          "\"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\\u001F\x7f\"");
    check_write_roundtrip("caf\xC3\xA9 \xF0\x9F\x98\x80", "\"caf\xC3\xA9 \xF0\x9F\x98\x80\"");
    /* Every byte value from 1 to 127 survives. */
    char all[128];
    for (int i = 1; i < 128; i++) all[i - 1] = (char)i;
    all[127] = 0;
    check_write_roundtrip(all, NULL);

    char *buf = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&buf, &size);
    CHECK_EQ_INT(emdpo_json_write_string(fp, "ok\xC3"), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_json_write_string(fp, "\xED\xA0\x80"), EMDPO_ERR_INVALID_ARG);
    fclose(fp);
    CHECK_EQ_INT(size, 0); /* nothing written */
    free(buf);
}

/* A 3 MB string of 1- to 4-byte characters and escapes, kept as its ends:
 * exactly the first and last bytes a cut at characters gives, its length
 * told, its UTF-8 and \u0000 checked in the part not kept. */
static void test_kept_ends(void) {
    enum { N = 3000000 };
    char *dec = malloc(N + 8), *text = malloc(2 * N + 64);
    CHECK(dec && text);
    if (!dec || !text) goto out;
    static const char *chars[] = {"a", "b", "\n", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\"", "z"};
    static const char *spelled[] = {"a", "b", "\\n", "\\u00e9", "\xE2\x82\xAC", "\\ud83d\\ude00", "\\\"", "z"};
    size_t n = 0, t = 0;
    uint32_t x = 12345;
    text[t++] = '"';
    while (n < N) {
        x = x * 1103515245u + 12345u;
        int c = (int)((x >> 16) % 8);
        memcpy(dec + n, chars[c], strlen(chars[c]));
        n += strlen(chars[c]);
        memcpy(text + t, spelled[c], strlen(spelled[c]));
        t += strlen(spelled[c]);
    }
    text[t++] = '"';
    const emdpo_json *v;
    emdpo_json_error err;
    size_t keeps[] = {1000, 4099, N / 3 + 1};
    for (int i = 0; i < 3; i++) {
        size_t keep = keeps[i], h = keep, tail = n - keep;
        while (h > 0 && ((unsigned char)dec[h] & 0xC0) == 0x80) h--;
        while (((unsigned char)dec[tail] & 0xC0) == 0x80) tail++;
        emdpo_json_limits lim = {.keep = keep};
        CHECK_EQ_INT(stream_parse(g_stream_doc, &lim, text, t, 4099, &v, &err), EMDPO_OK);
        if (!v) continue;
        CHECK(v->type == EMDPO_JSON_STRING && v->full_len == n && !v->has_nul);
        if (3 * keep >= n) { /* short enough to stay whole */
            CHECK(v->len == n && memcmp(v->u.str, dec, n) == 0);
            continue;
        }
        CHECK(v->len == h + (n - tail) && h + 3 >= keep && n - tail + 3 >= keep);
        CHECK(memcmp(v->u.str, dec, h) == 0 && memcmp(v->u.str + h, dec + tail, n - tail) == 0);
    }
    /* In the middle, which is not kept: invalid UTF-8 at its offset, and a \u0000. */
    emdpo_json_limits lim = {.keep = 1000};
    size_t mid = t / 2;
    while (text[mid] != 'a') mid++;
    text[mid] = (char)0xFF;
    CHECK_EQ_INT(stream_parse(g_stream_doc, &lim, text, t, 65536, &v, &err), EMDPO_ERR_PARSE);
    CHECK(err.offset == mid && strstr(err.msg, "invalid UTF-8") != NULL);
    text[mid] = 'a';
    size_t run = 0;
    while (run < 6) run = strchr("abz", text[++mid]) ? run + 1 : 0;
    memcpy(text + mid - 5, "\\u0000", 6);
    CHECK_EQ_INT(stream_parse(g_stream_doc, &lim, text, t, 65536, &v, &err), EMDPO_OK);
    CHECK(v && v->has_nul && strlen(v->u.str) == v->len);
out:
    free(dec);
    free(text);
}

/* Keys and numbers beyond max_key, and a record's list beyond list_max,
 * are refused where they begin (keys, numbers) or at the first element
 * too many, as limits rather than invalid JSON. */
static void test_limits(void) {
    char text[1200];
    const emdpo_json *v;
    emdpo_json_error err;
    emdpo_json_limits lim = {.max_key = 1024, .list_key = "l", .list_max = 2};
    for (int k = 1024; k <= 1025; k++) {
        int n = snprintf(text, sizeof text, "{\"%0*d\": 1}", k, 7);
        char digits[1100];
        memset(digits, '1', (size_t)k); /* 0.111...: k characters */
        memcpy(digits, "0.", 2);
        digits[k] = 0;
        int rc = stream_parse(g_stream_doc, &lim, text, (size_t)n, 5, &v, &err);
        CHECK_EQ_INT(rc, k == 1024 ? EMDPO_OK : EMDPO_ERR_PARSE);
        CHECK(k == 1024 || (err.limit && err.offset == 1 && strstr(err.msg, "key is longer than 1024")));
        n = snprintf(text, sizeof text, "[%s]", digits);
        rc = stream_parse(g_stream_doc, &lim, text, (size_t)n, 5, &v, &err);
        CHECK_EQ_INT(rc, k == 1024 ? EMDPO_OK : EMDPO_ERR_PARSE);
        CHECK(k == 1024 || (err.limit && err.offset == 1 && strstr(err.msg, "number is longer")));
    }
    const char *over = "{\"a\": [1, 2, 3, 4], \"l\": [[1], [2], [3]]}";
    CHECK_EQ_INT(stream_parse(g_stream_doc, &lim, over, strlen(over), 3, &v, &err), EMDPO_ERR_PARSE);
    CHECK(err.limit && err.offset == (size_t)(strstr(over, "[3]") - over) && strstr(err.msg, "\"l\" lists more than 2"));
    const char *nested = "{\"m\": {\"l\": [1, 2, 3]}, \"l\": [[1, 2, 3], 2]}";
    CHECK_EQ_INT(stream_parse(g_stream_doc, &lim, nested, strlen(nested), 3, &v, &err), EMDPO_OK);
}

/* The elements of a streamed array, each a tree of its own, with the
 * newlines before each; the array's own syntax errors. */
static void test_elements(void) {
    emdpo_json_stream *st;
    CHECK_EQ_INT(emdpo_json_stream_create(g_stream_doc, NULL, &st), EMDPO_OK);
    if (!st) return;
    const char *text = "[ {\"a\": 1},\n\n {\"b\": [2]} ,\n3]\n ";
    mem_src m = {text, strlen(text), 0, 2};
    emdpo_json_stream_reset(st, mem_read, &m);
    const emdpo_json *e;
    emdpo_json_error err;
    int got;
    long lines[3] = {0, 2, 3};
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(emdpo_json_stream_element(st, &e, &got, &err), EMDPO_OK);
        CHECK(got && e && e->type == (i == 2 ? EMDPO_JSON_NUMBER : EMDPO_JSON_OBJECT));
        CHECK_EQ_INT(emdpo_json_stream_value_newlines(st), lines[i]);
    }
    CHECK(!emdpo_json_stream_element(st, &e, &got, &err) && !got);
    CHECK_EQ_INT(emdpo_json_stream_end(st, &err), EMDPO_OK);
    CHECK_EQ_INT(emdpo_json_stream_newlines(st), 4);
    static const struct {
        const char *text, *msg;
        size_t offset;
    } bad[] = {{"[1 2]", "expected ',' or ']'", 3}, {"[1,]", "trailing comma in array", 3},
               {"[1,\n", "unexpected end of input", 4}, {"[1] x", "unexpected data after the value", 4}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = (mem_src){bad[i].text, strlen(bad[i].text), 0, 1};
        emdpo_json_stream_reset(st, mem_read, &m);
        int rc;
        while (!(rc = emdpo_json_stream_element(st, &e, &got, &err)) && got) {
        }
        if (!rc) rc = emdpo_json_stream_end(st, &err);
        CHECK_MSG(rc == EMDPO_ERR_PARSE && err.offset == bad[i].offset && strstr(err.msg, bad[i].msg),
                  "%s: %s at %zu", bad[i].text, err.msg, err.offset);
    }
    m = (mem_src){"[]", 2, 0, 1};
    emdpo_json_stream_reset(st, mem_read, &m);
    CHECK(!emdpo_json_stream_element(st, &e, &got, &err) && !got);
    emdpo_json_stream_free(st);
}

/* lines.c's pieces: a byte order mark, "\r\n" and a lone "\r", a "\r\n"
 * split across two reads of the file, a NUL byte, a last line without
 * "\n"; the same lines whole, in pieces and as a document going on. */
static void test_lines(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/emdpo_test_lines_%ld.txt", (long)getpid());
    enum { LONG = EMDPO_LINES_CHUNK - 9 };
    static char file[EMDPO_LINES_CHUNK + 64];
    size_t n = 0;
    memcpy(file, "\xEF\xBB\xBF" "ab\r\n\r\n", 9);
    n = 9;
    memset(file + n, 'x', LONG - 1);
    n += LONG - 1;
    CHECK_EQ_INT(n, EMDPO_LINES_CHUNK - 1); /* the "\r" ends the first read, its "\n" begins the next */
    memcpy(file + n, "\r\nc\rd\ne\0f\r", 10);
    n += 10;
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fwrite(file, 1, n, fp) == n);
    if (fp) fclose(fp);
    static const size_t lens[] = {2, 0, LONG - 1, 3, 3};
    emdpo_lines lr;
    for (int pass = 0; pass < 2; pass++) {
        CHECK_EQ_INT(emdpo_lines_open(&lr, path), EMDPO_OK);
        int got, i = 0;
        static char line[EMDPO_LINES_CHUNK];
        while (i < 6) {
            size_t len = 0, k = 1;
            if (pass == 0) {
                CHECK_EQ_INT(emdpo_lines_next(&lr, &got), EMDPO_OK);
                if (got) memcpy(line, lr.buf, len = lr.len);
            } else {
                CHECK_EQ_INT(emdpo_lines_begin(&lr, &got), EMDPO_OK);
                while (got && k && !emdpo_lines_read_line(&lr, line + len, 16, &k)) len += k;
            }
            if (!got) break;
            CHECK_MSG(i < 5 && len == lens[i], "pass %d line %d: %zu bytes", pass, i + 1, len);
            CHECK(i != 0 || memcmp(line, "ab", 2) == 0);
            CHECK(i != 3 || memcmp(line, "c\rd", 3) == 0);
            CHECK(i != 4 || memcmp(line, "e\0f", 3) == 0);
            CHECK_EQ_INT(lr.lineno, i + 1);
            i++;
        }
        CHECK_EQ_INT(i, 5);
        emdpo_lines_close(&lr);
    }
    /* From line 1 on as one document: its rest, "\n", the file's bytes. */
    CHECK_EQ_INT(emdpo_lines_open(&lr, path), EMDPO_OK);
    int got;
    CHECK(!emdpo_lines_begin(&lr, &got) && got);
    static char all[EMDPO_LINES_CHUNK + 64];
    size_t len = 0, k = 1;
    while (k && len < sizeof all - 16 && !emdpo_lines_read_on(&lr, all + len, 16, &k)) len += k;
    CHECK(len == n - 3 - 1 && memcmp(all, "ab\n", 3) == 0 && memcmp(all + 3, file + 7, n - 7) == 0);
    emdpo_lines_close(&lr);
    remove(path);
}

static const char sweep_text[] =
    "{\"annotator\":\"u1\",\"rejected\":[{\"features\":[1,2.5e-3,-7]},\"x\\u00e9\\ud83d\\ude00\"],"
    "\"deep\":[[[[{\"a\":null,\"b\":true,\"c\":false}]]]],\"num\":123456789012345678901234567890.5,"
    "\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":\"four\",\"k5\":[5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5]}";

static int sweep_once(void) {
    emdpo_json_doc *doc;
    int rc = emdpo_json_doc_create(&doc);
    if (rc) return rc;
    const emdpo_json *v;
    emdpo_json_error err;
    /* Twice, so the reuse path is swept as well. */
    rc = emdpo_json_parse(doc, sweep_text, sizeof sweep_text - 1, &v, &err);
    if (!rc) rc = emdpo_json_parse(doc, sweep_text, sizeof sweep_text - 1, &v, &err);
    if (!rc) CHECK(v && emdpo_json_get(v, "k4") && strcmp(emdpo_json_get(v, "k4")->u.str, "four") == 0);
    if (rc == EMDPO_ERR_NOMEM) CHECK(v == NULL && strcmp(err.msg, "out of memory") == 0);
    /* Streamed, with strings cut to their ends. */
    emdpo_json_limits lim = {.keep = 1, .max_key = 64, .list_key = "k5", .list_max = 21};
    if (!rc) rc = stream_parse(doc, &lim, sweep_text, sizeof sweep_text - 1, 7, &v, &err);
    if (!rc) CHECK(v && emdpo_json_get(v, "k4") && strcmp(emdpo_json_get(v, "k4")->u.str, "fr") == 0);
    if (rc == EMDPO_ERR_NOMEM) CHECK(v == NULL);
    emdpo_json_doc_free(doc);
    return rc;
}

static void test_alloc_failures(void) {
    long n_ok = -1;
    for (long k = 0; k < 10000; k++) {
        failalloc_install(k, 0);
        int rc = sweep_once();
        long live = failalloc_live(), count = failalloc_count();
        int size_err = failalloc_size_errors();
        failalloc_uninstall();
        CHECK_MSG(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM, "fail_at %ld rc %d", k, rc);
        CHECK_MSG(live == 0, "fail_at %ld leaks %ld blocks", k, live);
        CHECK_MSG(size_err == 0, "fail_at %ld: %d frees with a wrong size", k, size_err);
        if (count <= k) {
            n_ok = k;
            CHECK_EQ_INT(rc, EMDPO_OK);
            break;
        }
    }
    CHECK(n_ok >= 5);
}

int main(void) {
    CHECK_EQ_INT(emdpo_json_doc_create(&g_doc), EMDPO_OK);
    CHECK_EQ_INT(emdpo_json_doc_create(&g_stream_doc), EMDPO_OK);
    test_scalars();
    test_unicode_escapes();
    test_containers();
    test_large();
    test_rejections();
    test_depth();
    test_write_string();
    test_kept_ends();
    test_limits();
    test_elements();
    test_lines();
    emdpo_json_doc_free(g_doc);
    emdpo_json_doc_free(g_stream_doc);
    test_alloc_failures();
    return check_report("test_json");
}
