/* The JSON reader: every value type, each RFC 8259 violation rejected at the
 * right offset, bounded nesting, \u escapes, string writing, and clean
 * failure at every allocation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/json.h"
#include "base/json_write.h"
#include "check.h"
#include "emdpo.h"
#include "failalloc.h"

static emdpo_json_doc *g_doc;

static const emdpo_json *parse(const char *text) {
    const emdpo_json *root;
    emdpo_json_error err;
    int rc = emdpo_json_parse(g_doc, text, strlen(text), &root, &err);
    CHECK_MSG(rc == EMDPO_OK, "%s: %s at %zu", text, err.msg, err.offset);
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
    test_scalars();
    test_unicode_escapes();
    test_containers();
    test_large();
    test_rejections();
    test_depth();
    test_write_string();
    emdpo_json_doc_free(g_doc);
    test_alloc_failures();
    return check_report("test_json");
}
