/* Country opinions: the Python-literal reader, the three file loaders (the
 * real GlobalOpinionQA files when ../shared is present), the built-in bank,
 * and the simulator's frequencies, determinism and splits; clean failure at
 * every allocation. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "base/pylit.h"
#include "experiments/goqa.h"
#include "failalloc.h"

#define GOQA_DIR "../shared/data/globalopinionqa/"
#define GOQA_INDEX GOQA_DIR "goqa_index2556_4country_reconstructed.jsonl"
#define GOQA_SUBSET GOQA_DIR "goqa_subset_4countries.jsonl"

/* ---- Python literals ---------------------------------------------------- */

static emdpo_py *py(const char *s) {
    emdpo_py *v = NULL;
    size_t off = 0;
    char msg[128];
    int rc = emdpo_py_parse(s, strlen(s), &v, &off, msg, sizeof msg);
    CHECK_MSG(rc == EMDPO_OK, "'%s': %s at %zu", s, msg, off);
    return v;
}

static void py_error(const char *s, size_t off, const char *msg_part) {
    emdpo_py *v = (emdpo_py *)1;
    size_t got = 999;
    char msg[128];
    int rc = emdpo_py_parse(s, strlen(s), &v, &got, msg, sizeof msg);
    CHECK_MSG(rc == EMDPO_ERR_PARSE, "'%s' parsed (rc %d)", s, rc);
    CHECK(v == NULL);
    CHECK_MSG(got == off, "'%s': offset %zu, expected %zu (%s)", s, got, off, msg);
    CHECK_MSG(strstr(msg, msg_part) != NULL, "'%s': message '%s' lacks '%s'", s, msg, msg_part);
}

static void test_py_valid(void) {
    emdpo_py *v = py("defaultdict(<class 'list'>, {'Britain': [0.1, 0.2, 0.7], \"Great Britain\": [1, 0e0, nan]})");
    if (v) {
        CHECK(v->type == EMDPO_PY_DICT && v->len == 2);
        const emdpo_py *b = emdpo_py_get(v, "Britain"), *g = emdpo_py_get(v, "Great Britain");
        CHECK(b && b->type == EMDPO_PY_LIST && b->len == 3 && b->elems[2].num == 0.7 && !b->elems[2].is_int);
        CHECK(g && g->len == 3 && g->elems[0].is_int && g->elems[0].num == 1 && isnan(g->elems[2].num));
        CHECK(emdpo_py_get(v, "Mexico") == NULL);
    }
    emdpo_py_free(v);
    v = py(" ['Don\\'t know', \"It's \\\"fine\\\"\", 1.0, -2, 3.5e-2, -inf, None, True, False, [], {}] ");
    if (v) {
        CHECK(v->type == EMDPO_PY_LIST && v->len == 11);
        CHECK(strcmp(v->elems[0].str, "Don't know") == 0);
        CHECK(strcmp(v->elems[1].str, "It's \"fine\"") == 0);
        CHECK(v->elems[2].type == EMDPO_PY_NUM && v->elems[2].num == 1.0 && !v->elems[2].is_int);
        CHECK(v->elems[3].num == -2 && v->elems[3].is_int);
        CHECK(v->elems[4].num == 3.5e-2);
        CHECK(isinf(v->elems[5].num) && v->elems[5].num < 0);
        CHECK(v->elems[6].type == EMDPO_PY_NONE);
        CHECK(v->elems[7].type == EMDPO_PY_BOOL && v->elems[7].num == 1 && v->elems[8].num == 0);
        CHECK(v->elems[9].type == EMDPO_PY_LIST && v->elems[9].len == 0);
        CHECK(v->elems[10].type == EMDPO_PY_DICT && v->elems[10].len == 0);
    }
    emdpo_py_free(v);
    /* repr's escapes decode to UTF-8; raw UTF-8 passes through. */
    v = py("['caf\\xe9', 'it\\u2019s', '\\U0001F600', 'na\xc3\xafve', 'tab\\there', 'back\\\\slash']");
    if (v) {
        CHECK(strcmp(v->elems[0].str, "caf\xc3\xa9") == 0);
        CHECK(strcmp(v->elems[1].str, "it\xe2\x80\x99s") == 0);
        CHECK(strcmp(v->elems[2].str, "\xf0\x9f\x98\x80") == 0);
        CHECK(strcmp(v->elems[3].str, "na\xc3\xafve") == 0);
        CHECK(strcmp(v->elems[4].str, "tab\there") == 0);
        CHECK(strcmp(v->elems[5].str, "back\\slash") == 0);
    }
    emdpo_py_free(v);
}

static void test_py_errors(void) {
    py_error("[1, 2,]", 6, "trailing comma");
    py_error("[1 2]", 3, "expected ','");
    py_error("[1, 2", 0, "unclosed '['");
    py_error("'abc", 0, "unterminated string");
    py_error("['a', 'b\nc']", 6, "unterminated string");
    py_error("'\\q'", 1, "unsupported escape");
    py_error("'\\x4'", 4, "bad hex digit");
    py_error("'\\x00'", 1, "NUL");
    py_error("'\\ud800'", 1, "Unicode scalar");
    py_error("{1: 2}", 1, "dict keys must be strings");
    py_error("{'a': 1, 'a': 2}", 9, "duplicate dict key 'a'");
    py_error("{'a' 1}", 5, "expected ':'");
    py_error("[1] x", 4, "unexpected text after");
    py_error("1.2.3", 0, "malformed number");
    py_error("1e", 0, "malformed number");
    py_error("1e999", 0, "out of range");
    py_error("(1, 2)", 0, "expected a value");
    py_error("Nonesuch", 0, "unexpected name");
    py_error("", 0, "expected a value");
    py_error("defaultdict(list, {})", 12, "defaultdict(<class");
    py_error("defaultdict(<class 'list'>, [])", 28, "must hold a dict");
    py_error("defaultdict(<class 'list'>, {}", 30, "expected ')'");
    py_error("['ok', '\xff']", 8, "invalid UTF-8");
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    emdpo_py *v = NULL;
    size_t off;
    char msg[128];
    CHECK_EQ_INT(emdpo_py_parse(deep, sizeof deep, &v, &off, msg, sizeof msg), EMDPO_ERR_PARSE);
    CHECK(strstr(msg, "nesting") != NULL && off == EMDPO_PY_MAX_DEPTH + 1);
    memset(deep, '[', 50);
    memset(deep + 50, ']', 50);
    CHECK_EQ_INT(emdpo_py_parse(deep, 100, &v, &off, msg, sizeof msg), EMDPO_OK);
    emdpo_py_free(v);
}

/* ---- The original CSV layout --------------------------------------------- */

/* Row lines: header 1; row 1 at 2; row 2 at 3-4 (a two-line question);
 * row 3 at 5; row 4 at 6; row 5 at 7. */
static const char *const good_csv =
    "question,selections,options,source\r\n"
    "Is it good?,\"defaultdict(<class 'list'>, {'Britain': [0.2, 0.6, 0.2], 'Indonesia': [0.5, 0.25, 0.25], "
    "'Mexico': [1, 1, 2], 'Pakistan': [0.0, 0.1, 0.9], 'France': [0.3, 0.3, 0.4]})\",\"['Yes', \"\"Don't know\"\", 'No']\",GAS\r\n"
    "\"Two-line\r\nquestion, \"\"quoted\"\"\",\"defaultdict(<class 'list'>, {'Britain': [0.5, 0.5], 'Indonesia': [0.5, 0.5], "
    "'Mexico': [0.5, 0.5], 'Pakistan': [0.25, 0.75]})\",\"[1.0, 2.5]\",GAS\r\n"
    "No Pakistan,\"defaultdict(<class 'list'>, {'Britain': [0.5, 0.5], 'Indonesia': [0.5, 0.5], 'Mexico': [0.5, 0.5]})\","
    "\"['a', 'b']\",GAS\r\n"
    "WVS one,\"defaultdict(<class 'list'>, {'Great Britain': [0.1, 0.9], 'Indonesia': [0.5, 0.5], 'Mexico': [0.5, 0.5], "
    "'Pakistan': [0.5, 0.5]})\",\"['x', 'y']\",WVS\r\n"
    "NaN country,\"defaultdict(<class 'list'>, {'Britain': [0.5, 0.5], 'Indonesia': [nan, nan], 'Mexico': [0.5, 0.5], "
    "'Pakistan': [0.5, 0.5]})\",\"['x', 'y']\",WVS";

static emdpo_goqa_bank *csv_bank(const char *csv, const emdpo_goqa_opts *o, int expect_rc, long line,
                                 const char *msg_part) {
    emdpo_goqa_bank *b = NULL;
    emdpo_diag diag = {{0}, -7, {0}};
    int rc = emdpo_goqa_parse_csv(csv, strlen(csv), "mem.csv", o, &b, &diag);
    CHECK_MSG(rc == expect_rc, "rc %d, expected %d (%s:%ld: %s)", rc, expect_rc, diag.file, diag.line, diag.msg);
    if (expect_rc) {
        CHECK(b == NULL);
        CHECK_MSG(diag.line == line, "line %ld, expected %ld: %s", diag.line, line, diag.msg);
        CHECK_MSG(strstr(diag.msg, msg_part) != NULL, "message '%s' lacks '%s'", diag.msg, msg_part);
        CHECK(strcmp(diag.file, "mem.csv") == 0);
    }
    return b;
}

static void test_csv(void) {
    emdpo_goqa_opts o;
    emdpo_goqa_opts_init(&o);
    emdpo_goqa_bank *b = csv_bank(good_csv, &o, EMDPO_OK, 0, "");
    if (b) {
        CHECK_EQ_INT(b->n_records, 5);
        CHECK_EQ_INT(b->n_present, 2);
        CHECK_EQ_INT(b->n, 2);
        CHECK(b->n_countries == 4 && strcmp(b->countries[3], "Pakistan") == 0);
        const emdpo_goqa_question *q = &b->q[0];
        CHECK(strcmp(q->text, "Is it good?") == 0 && q->n_options == 3 && q->origin == 2);
        CHECK(strcmp(q->options[1], "Don't know") == 0);
        CHECK(q->method == NULL);
        /* Mexico's [1, 1, 2] is renormalised. */
        CHECK_CLOSE(q->dist[2 * 3 + 2], 0.5, 1e-15);
        CHECK_CLOSE(q->dist[3 * 3 + 2], 0.9, 1e-15);
        q = &b->q[1];
        CHECK(strcmp(q->text, "Two-line\r\nquestion, \"quoted\"") == 0 && q->origin == 3);
        CHECK(strcmp(q->options[0], "1") == 0 && strcmp(q->options[1], "2.5") == 0);
        CHECK_CLOSE(q->dist[3 * 2 + 1], 0.75, 1e-15);
    }
    emdpo_goqa_bank_free(b);

    o.merge_great_britain = 1;
    b = csv_bank(good_csv, &o, EMDPO_OK, 0, "");
    if (b) {
        CHECK_EQ_INT(b->n, 3);
        CHECK(b->n == 3 && strcmp(b->q[2].text, "WVS one") == 0 && b->q[2].dist[1] == 0.9);
    }
    emdpo_goqa_bank_free(b);

    /* Countries given explicitly; France is in row 1 only. */
    const char *fr[] = {"France", "Britain"};
    o.countries = fr;
    o.n_countries = 2;
    b = csv_bank(good_csv, &o, EMDPO_OK, 0, "");
    if (b) CHECK(b->n == 1 && strcmp(b->countries[0], "France") == 0 && b->q[0].dist[2] == 0.4);
    emdpo_goqa_bank_free(b);
    o.strict = 1;
    csv_bank(good_csv, &o, EMDPO_ERR_PARSE, 3, "no 'France'");
    emdpo_goqa_opts_init(&o);
    o.strict = 1;
    csv_bank(good_csv, &o, EMDPO_ERR_PARSE, 5, "no 'Pakistan'");

    emdpo_goqa_opts_init(&o);
    const char *hdr = "question,selections,options,source\n";
    char buf[1024];
    /* The offending byte's own line, inside a multi-line field. */
    snprintf(buf, sizeof buf, "%sq,\"defaultdict(<class 'list'>, {'Britain': [0.5,\n 0.5],\n 'Mexico': [0.5 0.5]})\",\"['a', 'b']\",GAS\n", hdr);
    csv_bank(buf, &o, EMDPO_ERR_PARSE, 4, "selections: expected ','");
    snprintf(buf, sizeof buf, "%sq1,\"{'Britain': [1, 0]}\",\"['a', 'b']\",GAS\nq2,\"{'Britain': [1, 0]}\",\"['a', 'b',]\",GAS\n", hdr);
    csv_bank(buf, &o, EMDPO_ERR_PARSE, 3, "options: trailing comma");
    snprintf(buf, sizeof buf, "%sq,\"{'Britain': [1, 0, 0]}\",\"['a', 'b']\",GAS\n", hdr);
    csv_bank(buf, &o, EMDPO_ERR_PARSE, 2, "list of 2 numbers");
    snprintf(buf, sizeof buf, "%sq,\"{'Britain': [1, 'x']}\",\"['a', 'b']\",GAS\n", hdr);
    csv_bank(buf, &o, EMDPO_ERR_PARSE, 2, "list of 2 numbers");
    snprintf(buf, sizeof buf, "%sq,\"{'Britain': [1, -0.5], 'Indonesia': [1, 1], 'Mexico': [1, 1], 'Pakistan': [1, 1]}\",\"['a', 'b']\",GAS\n", hdr);
    csv_bank(buf, &o, EMDPO_ERR_PARSE, 2, "negative");
    snprintf(buf, sizeof buf, "%sq,\"{'Britain': [0, 0], 'Indonesia': [1, 1], 'Mexico': [1, 1], 'Pakistan': [1, 1]}\",\"['a', 'b']\",GAS\n", hdr);
    csv_bank(buf, &o, EMDPO_ERR_PARSE, 2, "sums to 0");
    snprintf(buf, sizeof buf, "%sq,\"['Britain']\",\"['a', 'b']\",GAS\n", hdr);
    csv_bank(buf, &o, EMDPO_ERR_PARSE, 2, "selections must be a dict");
    snprintf(buf, sizeof buf, "%sq,\"{}\",\"[]\",GAS\n", hdr);
    csv_bank(buf, &o, EMDPO_ERR_PARSE, 2, "non-empty list");
    snprintf(buf, sizeof buf, "%sq,\"{}\",\"[None]\",GAS\n", hdr);
    csv_bank(buf, &o, EMDPO_ERR_PARSE, 2, "option 1 is neither");
    snprintf(buf, sizeof buf, "%sq,\"{}\",\"['a']\",GAS,extra\n", hdr);
    csv_bank(buf, &o, EMDPO_ERR_PARSE, 2, "expected 4 fields, found 5");
    csv_bank("question,options,source\nq,a,b\n", &o, EMDPO_ERR_PARSE, 1, "'selections'");
    csv_bank("question,selections,options\n\"open,x,y\n", &o, EMDPO_ERR_PARSE, 2, "quoted field 1 is not closed");
    csv_bank(hdr, &o, EMDPO_ERR_PARSE, 2, "no data rows");
    csv_bank("", &o, EMDPO_ERR_PARSE, 0, "empty file");

    emdpo_diag diag = {{0}, -7, {0}};
    CHECK_EQ_INT(emdpo_goqa_load_csv("/nonexistent/goqa.csv", NULL, &b, &diag), EMDPO_ERR_IO);
    CHECK(b == NULL && strcmp(diag.file, "/nonexistent/goqa.csv") == 0);
    const char *dup[] = {"Mexico", "Mexico"};
    o.countries = dup;
    o.n_countries = 2;
    CHECK_EQ_INT(emdpo_goqa_parse_csv(good_csv, strlen(good_csv), "m", &o, &b, NULL), EMDPO_ERR_INVALID_ARG);
}

/* ---- The real files -------------------------------------------------------- */

static int file_exists(const char *path) { return access(path, R_OK) == 0; }

static int rows_are_distributions(const emdpo_goqa_bank *b) {
    for (int64_t i = 0; i < b->n; i++) {
        const emdpo_goqa_question *q = &b->q[i];
        for (int c = 0; c < b->n_countries; c++) {
            double s = 0;
            for (int j = 0; j < q->n_options; j++) {
                double p = q->dist[c * q->n_options + j];
                if (!(p >= 0)) return 0;
                s += p;
            }
            if (fabs(s - 1) > 1e-12) return 0;
        }
    }
    return 1;
}

static emdpo_goqa_bank *load_index(const emdpo_goqa_opts *o) {
    emdpo_goqa_bank *b = NULL;
    emdpo_diag diag = {{0}, 0, {0}};
    int rc = emdpo_goqa_load_index(GOQA_INDEX, o, &b, &diag);
    CHECK_MSG(rc == EMDPO_OK, "%s:%ld: %s", diag.file, diag.line, diag.msg);
    if (b) {
        CHECK_EQ_INT(b->n_records, 2556);
        CHECK(rows_are_distributions(b));
    }
    return b;
}

static void test_index(void) {
    if (!file_exists(GOQA_INDEX)) {
        printf("skip: %s absent\n", GOQA_INDEX);
        return;
    }
    emdpo_goqa_opts o;
    emdpo_goqa_opts_init(&o);
    /* SOURCES.md section 5: 261 GAS questions carry all four; 103 have exact estimates for all four. */
    emdpo_goqa_bank *b = load_index(&o);
    if (b) {
        CHECK_EQ_INT(b->n_present, 261);
        CHECK_EQ_INT(b->n, 103);
        CHECK_EQ_INT(b->n_filtered, 261 - 103);
        int exact = 1, gas = 1;
        for (int64_t i = 0; i < b->n; i++) {
            for (int c = 0; c < 4; c++)
                exact &= strcmp(b->q[i].method[c], "unique") == 0 || strcmp(b->q[i].method[c], "no_truncation_detected") == 0;
            gas &= b->q[i].origin <= 2202;
        }
        CHECK(exact && gas);
    }
    emdpo_goqa_bank_free(b);
    /* 255 have a non-null estimate for all four; none of them is low-confidence. */
    o.est = EMDPO_GOQA_EST_ALL;
    b = load_index(&o);
    if (b) CHECK(b->n_present == 261 && b->n == 255);
    emdpo_goqa_bank_free(b);
    /* Great Britain merged: 261 + 198 WVS questions. */
    o.merge_great_britain = 1;
    b = load_index(&o);
    if (b) CHECK(b->n_present == 459 && b->n == 444);
    emdpo_goqa_bank_free(b);
    o.low_confidence = 1;
    b = load_index(&o);
    if (b) CHECK(b->n_present == 459 && b->n == 452);
    emdpo_goqa_bank_free(b);
    o.est = EMDPO_GOQA_EST_EXACT;
    o.low_confidence = 0;
    b = load_index(&o);
    if (b) CHECK(b->n_present == 459 && b->n == 112);
    emdpo_goqa_bank_free(b);
}

static void test_subset(void) {
    if (!file_exists(GOQA_SUBSET)) {
        printf("skip: %s absent\n", GOQA_SUBSET);
        return;
    }
    emdpo_goqa_opts o;
    emdpo_goqa_opts_init(&o);
    for (int merge = 0; merge < 2; merge++) {
        o.merge_great_britain = merge;
        emdpo_goqa_bank *b = NULL;
        emdpo_diag diag = {{0}, 0, {0}};
        int rc = emdpo_goqa_load_subset(GOQA_SUBSET, &o, &b, &diag);
        CHECK_MSG(rc == EMDPO_OK, "%s:%ld: %s", diag.file, diag.line, diag.msg);
        if (!b) continue;
        CHECK_EQ_INT(b->n_records, 887);
        /* 694 distinct texts; one of them comes with two option lists. */
        CHECK_EQ_INT(b->n_questions, 695);
        /* SOURCES.md section 2: with Great Britain as Britain, 4 questions have all four. */
        CHECK_EQ_INT(b->n, merge ? 4 : 3);
        CHECK(rows_are_distributions(b));
        emdpo_goqa_bank_free(b);
    }
}

/* Small hand-written index and subset files: field checks and the method filter. */
static int write_tmp(const char *text, char *path) {
    strcpy(path, "/tmp/emdpo_goqa_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

#define IDX_D(m, e) "{\"est\": " e ", \"est_method\": \"" m "\", \"salt_norm\": [], \"fit_resid\": 0}"
static const char *const small_index =
    "{\"row\": 0, \"question\": \"A\", \"options\": [\"x\", 2.0], \"dists\": {\"Britain\": " IDX_D("unique", "[1, 3]")
    ", \"Indonesia\": " IDX_D("no_truncation_detected", "[1, 1]") ", \"Mexico\": " IDX_D("unique", "[0, 1]")
    ", \"Pakistan\": " IDX_D("unique", "[1, 0]") "}}\n"
    "{\"row\": 1, \"question\": \"B\", \"options\": [\"x\", \"y\"], \"dists\": {\"Britain\": " IDX_D("ambiguous_prior", "[1, 3]")
    ", \"Indonesia\": " IDX_D("unique", "[1, 1]") ", \"Mexico\": " IDX_D("unique", "[0, 1]")
    ", \"Pakistan\": " IDX_D("unique", "[1, 0]") "}}\n"
    "\n"
    "{\"row\": 2, \"question\": \"C\", \"options\": [\"x\", \"y\"], \"dists\": {\"Britain\": " IDX_D("fit_failed", "null")
    ", \"Indonesia\": " IDX_D("unique", "[1, 1]") ", \"Mexico\": " IDX_D("unique", "[0, 1]")
    ", \"Pakistan\": " IDX_D("unique", "[1, 0]") "}}\n"
    "{\"row\": 3, \"question\": \"D\", \"options\": [\"x\", \"y\"], \"dists\": {\"Britain\": " IDX_D("unique+K_ge_14_low_confidence", "[1, 3]")
    ", \"Indonesia\": " IDX_D("unique", "[1, 1]") ", \"Mexico\": " IDX_D("unique", "[0, 1]")
    ", \"Pakistan\": " IDX_D("unique", "[1, 0]") "}}\n"
    "{\"row\": 4, \"question\": \"E\", \"options\": [\"x\", \"y\"], \"dists\": {}}\n";

static void index_error(const char *line, long at, const char *msg_part) {
    char text[2048], path[64];
    snprintf(text, sizeof text, "{\"row\": 9, \"question\": \"Z\", \"options\": [\"x\", \"y\"], \"dists\": {}}\n%s\n", line);
    if (write_tmp(text, path)) {
        CHECK(0);
        return;
    }
    emdpo_goqa_bank *b = NULL;
    emdpo_diag diag = {{0}, 0, {0}};
    CHECK_EQ_INT(emdpo_goqa_load_index(path, NULL, &b, &diag), EMDPO_ERR_PARSE);
    CHECK(b == NULL);
    CHECK_MSG(diag.line == at && strstr(diag.msg, msg_part), "line %ld: %s (wanted '%s')", diag.line, diag.msg, msg_part);
    unlink(path);
}

static void test_small_index(void) {
    char path[64];
    if (write_tmp(small_index, path)) {
        CHECK(0);
        return;
    }
    emdpo_goqa_opts o;
    emdpo_goqa_opts_init(&o);
    int want[2][2] = {{1, 2}, {2, 3}}; /* [est][low_confidence] */
    for (int est = 0; est < 2; est++) {
        for (int low = 0; low < 2; low++) {
            o.est = (emdpo_goqa_est)est;
            o.low_confidence = low;
            emdpo_goqa_bank *b = NULL;
            emdpo_diag diag = {{0}, 0, {0}};
            CHECK_EQ_INT(emdpo_goqa_load_index(path, &o, &b, &diag), EMDPO_OK);
            if (!b) continue;
            CHECK_EQ_INT(b->n, want[est][low]);
            CHECK(b->n_records == 5 && b->n_present == 4 && b->n_filtered == 4 - b->n);
            CHECK(strcmp(b->q[0].options[1], "2") == 0 && b->q[0].dist[1] == 0.75 && b->q[0].origin == 0);
            CHECK(strcmp(b->q[0].method[1], "no_truncation_detected") == 0);
            emdpo_goqa_bank_free(b);
        }
    }
    unlink(path);
    index_error("[1]", 2, "not a JSON object");
    index_error("{\"row\": 1, \"question\": \"q\", \"options\": [\"x\", \"y\"], \"dists\": []}", 2, "'dists'");
    index_error("{\"row\": 1, \"question\": \"q\", \"options\": [\"x\", true], \"dists\": {}}", 2, "strings or numbers");
    index_error("{\"row\": 1.5, \"question\": \"q\", \"options\": [], \"dists\": {}}", 2, "'row'");
    index_error("{\"row\": 1, \"question\": \"q\", \"options\": [\"x\", \"y\"], \"dists\": {\"Mexico\": " IDX_D("guess", "[1, 1]") "}}",
                2, "unknown 'est_method'");
    index_error("{\"row\": 1, \"question\": \"q\", \"options\": [\"x\", \"y\"], \"dists\": {\"Britain\": " IDX_D("unique", "[1, 1]")
                ", \"Indonesia\": " IDX_D("unique", "[1]") ", \"Mexico\": " IDX_D("unique", "[0, 1]")
                ", \"Pakistan\": " IDX_D("unique", "[1, 0]") "}}", 2, "one number per option");
    index_error("{\"row\": 1, \"question\": \"q\", \"options\": [\"x\", \"y\"], \"dists\": {\"Britain\": " IDX_D("unique", "[1, -1]")
                ", \"Indonesia\": " IDX_D("unique", "[1, 1]") ", \"Mexico\": " IDX_D("unique", "[0, 1]")
                ", \"Pakistan\": " IDX_D("unique", "[1, 0]") "}}", 2, "negative");
    index_error("{\"row\": 1, \"question\": \"q\", \"options\": [\"x\", \"y\"], \"dists\": {\"Britain\": ", 2, "byte");

    /* The subset layout: duplicates keep the first record, NaN-free checks on all. */
    const char *subset =
        "{\"question\": \"Q\", \"country\": \"Britain\", \"options\": [\"a\", \"b\"], \"distribution\": [0.2, 0.8]}\n"
        "{\"question\": \"Q\", \"country\": \"Britain\", \"options\": [\"a\", \"b\"], \"distribution\": [0.9, 0.1]}\n"
        "{\"question\": \"Q\", \"country\": \"France\", \"options\": [\"a\", \"b\"], \"distribution\": [0.9, 0.1]}\n"
        "{\"question\": \"Q\", \"country\": \"Mexico\", \"options\": [\"a\", \"b\"], \"distribution\": [1, 1]}\n"
        "{\"question\": \"R\", \"country\": \"Mexico\", \"options\": [\"a\", \"b\"], \"distribution\": [1, 1]}\n";
    if (write_tmp(subset, path)) {
        CHECK(0);
        return;
    }
    const char *two[] = {"Britain", "Mexico"};
    o.countries = two;
    o.n_countries = 2;
    emdpo_goqa_bank *b = NULL;
    emdpo_diag diag = {{0}, 0, {0}};
    CHECK_EQ_INT(emdpo_goqa_load_subset(path, &o, &b, &diag), EMDPO_OK);
    if (b) {
        CHECK(b->n_records == 5 && b->n_questions == 2 && b->n == 1);
        CHECK(b->n == 1 && b->q[0].dist[0] == 0.2 && b->q[0].dist[2] == 0.5 && b->q[0].origin == 1);
    }
    emdpo_goqa_bank_free(b);
    o.strict = 1;
    CHECK_EQ_INT(emdpo_goqa_load_subset(path, &o, &b, &diag), EMDPO_ERR_PARSE);
    CHECK(diag.line == 5 && strstr(diag.msg, "no 'Britain'"));
    unlink(path);
    const char *bad = "{\"question\": \"Q\", \"country\": \"X\", \"options\": [\"a\", \"b\"], \"distribution\": [1, -1]}\n";
    if (write_tmp(bad, path)) {
        CHECK(0);
        return;
    }
    CHECK_EQ_INT(emdpo_goqa_load_subset(path, NULL, &b, &diag), EMDPO_ERR_PARSE);
    CHECK(diag.line == 1 && strstr(diag.msg, "negative"));
    unlink(path);
    /* A record without options is refused, not freed twice (found by fuzz/fuzz_readers.c). */
    const char *no_options = "{\"question\": \"Q\", \"country\": \"Britain\", \"dist\": [0.3, 0.7]}\n";
    if (write_tmp(no_options, path)) {
        CHECK(0);
        return;
    }
    CHECK_EQ_INT(emdpo_goqa_load_subset(path, NULL, &b, &diag), EMDPO_ERR_PARSE);
    CHECK(b == NULL && diag.line == 1 && strstr(diag.msg, "'options' must be an array"));
    unlink(path);
}

/* ---- Built-in bank and simulation ------------------------------------------ */

static void test_builtin(void) {
    emdpo_goqa_bank *b = NULL;
    CHECK_EQ_INT(emdpo_goqa_builtin(NULL, &b), EMDPO_OK);
    if (!b) return;
    CHECK_EQ_INT(b->n, 40);
    CHECK(b->n_countries == 4 && strcmp(b->countries[0], "Arden") == 0);
    CHECK(rows_are_distributions(b));
    /* The countries differ clearly: mean total variation distance per pair. */
    for (int c = 0; c < 4; c++) {
        for (int d = c + 1; d < 4; d++) {
            double tv = 0;
            for (int64_t i = 0; i < b->n; i++) {
                const emdpo_goqa_question *q = &b->q[i];
                for (int j = 0; j < q->n_options; j++)
                    tv += 0.5 * fabs(q->dist[c * q->n_options + j] - q->dist[d * q->n_options + j]);
            }
            CHECK_MSG(tv / (double)b->n > 0.2, "countries %d and %d: mean TV %.3f", c, d, tv / (double)b->n);
        }
    }
    for (int64_t i = 0; i < b->n; i++) {
        CHECK(b->q[i].n_options >= 3 && b->q[i].n_options <= 5);
        for (int64_t j = 0; j < i; j++) CHECK(strcmp(b->q[i].text, b->q[j].text) != 0);
    }
    emdpo_goqa_bank_free(b);
    const char *some[] = {"Dastra", "Arden"};
    emdpo_goqa_opts o;
    emdpo_goqa_opts_init(&o);
    o.countries = some;
    o.n_countries = 2;
    CHECK_EQ_INT(emdpo_goqa_builtin(&o, &b), EMDPO_OK);
    emdpo_goqa_bank *full = NULL;
    CHECK_EQ_INT(emdpo_goqa_builtin(NULL, &full), EMDPO_OK);
    if (b && full) CHECK(b->n_countries == 2 && memcmp(b->q[5].dist, full->q[5].dist + 3 * b->q[5].n_options, 3 * sizeof(double)) == 0);
    emdpo_goqa_bank_free(b);
    emdpo_goqa_bank_free(full);
    some[1] = "Britain";
    CHECK_EQ_INT(emdpo_goqa_builtin(&o, &b), EMDPO_ERR_INVALID_ARG);
}

static int64_t find_text(const char *const *list, int64_t n, const char *s) {
    for (int64_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0) return i;
    return -1;
}

/* The chosen option's frequency per (country, question, option) matches the
 * distribution; rejected options are uniform over the rest; the country
 * shares match the weights. Every check allows 5 standard errors. */
static void test_frequencies(void) {
    emdpo_goqa_bank *b = NULL;
    CHECK_EQ_INT(emdpo_goqa_builtin(NULL, &b), EMDPO_OK);
    if (!b) return;
    emdpo_goqa_spec spec;
    emdpo_goqa_spec_init(&spec);
    spec.n_annotators = 6000;
    spec.seed = 7;
    int32_t *country = malloc((size_t)spec.n_annotators * sizeof(int32_t));
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &spec, &d, country, NULL), EMDPO_OK);
    if (!d || !country) {
        free(country);
        emdpo_goqa_bank_free(b);
        return;
    }
    CHECK(d->n_annot == 6000 && d->n_dec == 6000 * 32 && d->n_groups == 4);
    enum { NQ = 40, MK = 5 };
    static long chosen[4][NQ][MK], rejected[4][NQ][MK], asked[4][NQ];
    long per_country[4] = {0};
    const char *qtext[NQ];
    for (int i = 0; i < NQ; i++) qtext[i] = b->q[i].text;
    int bad = 0;
    for (int64_t a = 0; a < d->n_annot; a++) {
        int c = country[a];
        per_country[c]++;
        bad += strcmp(d->group_name[d->annot_group[a]], b->countries[c]) != 0;
        for (int64_t j = d->annot_dec[a]; j < d->annot_dec[a + 1]; j++) {
            int64_t q = find_text(qtext, NQ, d->dec_prompt[j]);
            int64_t it = d->dec_item[j];
            bad += q < 0 || emdpo_dec_n_items(d, j) != 2 || d->dec_stages[j] != 1;
            if (q < 0) continue;
            const char *const *opts = (const char *const *)b->q[q].options;
            int64_t w = find_text(opts, b->q[q].n_options, d->item_text[it]);
            int64_t l = find_text(opts, b->q[q].n_options, d->item_text[it + 1]);
            bad += w < 0 || l < 0 || w == l;
            if (w < 0 || l < 0) continue;
            asked[c][q]++;
            chosen[c][q][w]++;
            rejected[c][q][l]++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    static const double weights[4] = {0.15, 0.20, 0.30, 0.35};
    for (int c = 0; c < 4; c++) {
        double n = (double)d->n_annot, p = weights[c];
        CHECK_MSG(fabs(per_country[c] - n * p) <= 5 * sqrt(n * p * (1 - p)), "country %d: %ld of %g", c, per_country[c], n);
    }
    /* Cells expecting fewer than 5 counts are pooled: the normal bound does not hold for them one by one. */
    int off = 0, cells = 0;
    double small_obs = 0, small_exp = 0;
    for (int c = 0; c < 4; c++) {
        for (int q = 0; q < NQ; q++) {
            const emdpo_goqa_question *bq = &b->q[q];
            int k = bq->n_options;
            double n = (double)asked[c][q];
            for (int o = 0; o < k; o++) {
                double ps[2] = {bq->dist[c * k + o], (1 - bq->dist[c * k + o]) / (k - 1)};
                long obs[2] = {chosen[c][q][o], rejected[c][q][o]};
                /* ps[1]: P(rejected = o) = sum over chosen j != o of p_j / (k - 1). */
                for (int r = 0; r < 2; r++) {
                    double e = n * ps[r];
                    if (e < 5) {
                        small_obs += (double)obs[r];
                        small_exp += e;
                        continue;
                    }
                    int bad_cell = fabs((double)obs[r] - e) > 5 * sqrt(e * (1 - ps[r]));
                    if (bad_cell)
                        fprintf(stderr, "country %d question %d option %d (%s): %ld of %g, p %g\n", c, q, o,
                                r ? "rejected" : "chosen", obs[r], n, ps[r]);
                    off += bad_cell;
                    cells++;
                }
            }
        }
    }
    CHECK_MSG(fabs(small_obs - small_exp) <= 5 * sqrt(small_exp) + 1, "rare cells: %g observed, %g expected", small_obs,
              small_exp);
    CHECK_MSG(off == 0, "%d of %d cells beyond 5 SE", off, cells);
    emdpo_data_free(d);
    free(country);
    emdpo_goqa_bank_free(b);
}

static int same_data(const emdpo_data *x, const emdpo_data *y, int64_t n_annot) {
    if (x->n_annot < n_annot || y->n_annot < n_annot) return 0;
    for (int64_t a = 0; a < n_annot; a++) {
        if (strcmp(x->annot_name[a], y->annot_name[a]) != 0 ||
            strcmp(x->group_name[x->annot_group[a]], y->group_name[y->annot_group[a]]) != 0)
            return 0;
        if (x->annot_dec[a + 1] - x->annot_dec[a] != y->annot_dec[a + 1] - y->annot_dec[a]) return 0;
        for (int64_t j = x->annot_dec[a], k = y->annot_dec[a]; j < x->annot_dec[a + 1]; j++, k++) {
            if (strcmp(x->dec_prompt[j], y->dec_prompt[k]) != 0) return 0;
            int n = emdpo_dec_n_items(x, j);
            if (n != emdpo_dec_n_items(y, k)) return 0;
            for (int i = 0; i < n; i++)
                if (strcmp(x->item_text[x->dec_item[j] + i], y->item_text[y->dec_item[k] + i]) != 0) return 0;
        }
    }
    return 1;
}

static void test_determinism(void) {
    emdpo_goqa_bank *b = NULL;
    CHECK_EQ_INT(emdpo_goqa_builtin(NULL, &b), EMDPO_OK);
    if (!b) return;
    emdpo_goqa_spec spec;
    emdpo_goqa_spec_init(&spec);
    spec.n_annotators = 50;
    spec.rejected = 2;
    emdpo_data *x = NULL, *y = NULL, *z = NULL, *t = NULL;
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &spec, &x, NULL, NULL), EMDPO_OK);
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &spec, &y, NULL, NULL), EMDPO_OK);
    spec.n_annotators = 20;
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &spec, &z, NULL, NULL), EMDPO_OK);
    spec.first_annotator = 20;
    spec.n_annotators = 30;
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &spec, &t, NULL, NULL), EMDPO_OK);
    if (x && y && z && t) {
        CHECK(same_data(x, y, 50));
        CHECK(x->n_items == 50 * 32 * 3);
        /* A prefix of annotators does not depend on how many follow. */
        CHECK(same_data(x, z, 20));
        /* A test set continues the numbering with the same streams. */
        CHECK(strcmp(t->annot_name[0], "a21") == 0);
        int tail_same = 1;
        for (int64_t a = 0; a < 30 && tail_same; a++) {
            int64_t j = x->annot_dec[20 + a], k = t->annot_dec[a];
            tail_same = strcmp(x->dec_prompt[j], t->dec_prompt[k]) == 0 &&
                        strcmp(x->item_text[x->dec_item[j]], t->item_text[t->dec_item[k]]) == 0;
        }
        CHECK(tail_same);
        /* Questions within an annotator are distinct. */
        int dup = 0;
        for (int64_t j = x->annot_dec[0]; j < x->annot_dec[1]; j++)
            for (int64_t k = x->annot_dec[0]; k < j; k++) dup += strcmp(x->dec_prompt[j], x->dec_prompt[k]) == 0;
        CHECK_EQ_INT(dup, 0);
    }
    emdpo_data_free(y);
    spec.first_annotator = 0;
    spec.n_annotators = 50;
    spec.seed = 2;
    y = NULL;
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &spec, &y, NULL, NULL), EMDPO_OK);
    if (x && y) CHECK(!same_data(x, y, 50));
    emdpo_data_free(x);
    emdpo_data_free(y);
    emdpo_data_free(z);
    emdpo_data_free(t);

    /* Prompts that list the options. */
    spec.list_options = 1;
    spec.n_annotators = 2;
    spec.rejected = 1;
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &spec, &x, NULL, NULL), EMDPO_OK);
    if (x) {
        const char *p = x->dec_prompt[0];
        const char *opt = strstr(p, "\n\nOptions:\n1. ");
        CHECK(opt != NULL);
        int64_t q = -1;
        for (int64_t i = 0; i < b->n; i++)
            if (opt && strncmp(p, b->q[i].text, (size_t)(opt - p)) == 0 && strlen(b->q[i].text) == (size_t)(opt - p)) q = i;
        CHECK(q >= 0 && strstr(p, b->q[q >= 0 ? q : 0].options[0]) != NULL);
    }
    emdpo_data_free(x);

    /* Specs the bank cannot meet. */
    emdpo_goqa_spec_init(&spec);
    spec.questions = 41;
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &spec, &x, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    spec.questions = 8;
    spec.rejected = 4; /* only the 5-option questions (8 of them) qualify */
    spec.n_annotators = 3;
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &spec, &x, NULL, NULL), EMDPO_OK);
    if (x) CHECK(emdpo_dec_n_items(x, 0) == 5);
    emdpo_data_free(x);
    spec.questions = 9;
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &spec, &x, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    spec.questions = 1;
    double w[4] = {0, 0, 0, 0};
    spec.weights = w;
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &spec, &x, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    w[2] = 1;
    int32_t c[3];
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &spec, &x, c, NULL), EMDPO_OK);
    CHECK(c[0] == 2 && c[1] == 2 && c[2] == 2);
    emdpo_data_free(x);
    emdpo_goqa_bank_free(b);
}

/* ---- Allocation failures -------------------------------------------------- */

static void test_alloc_failures(void) {
    char path[64];
    if (write_tmp(small_index, path)) {
        CHECK(0);
        return;
    }
    long done_at = -1;
    for (long k = 0; k < 100000 && done_at < 0; k++) {
        failalloc_install(k, 0);
        emdpo_goqa_bank *csv = NULL, *idx = NULL, *bi = NULL;
        emdpo_py *v = NULL;
        emdpo_data *d = NULL;
        const char *lit = "defaultdict(<class 'list'>, {'a': [1, 'x\\u00e9', {'b': []}]})";
        int rc1 = emdpo_goqa_parse_csv(good_csv, strlen(good_csv), "m", NULL, &csv, NULL);
        int rc2 = emdpo_goqa_load_index(path, NULL, &idx, NULL);
        int rc3 = emdpo_py_parse(lit, strlen(lit), &v, NULL, NULL, 0);
        int rc4 = emdpo_goqa_builtin(NULL, &bi);
        int rc5 = EMDPO_OK;
        if (bi) {
            emdpo_goqa_spec spec;
            emdpo_goqa_spec_init(&spec);
            spec.n_annotators = 3;
            spec.questions = 4;
            spec.list_options = 1;
            rc5 = emdpo_goqa_simulate(bi, &spec, &d, NULL, NULL);
        }
        int good = !rc1 && csv->n == 2 && !rc2 && idx->n == 1 && !rc3 && !rc4 && !rc5 && d && d->n_dec == 12;
        emdpo_goqa_bank_free(csv);
        emdpo_goqa_bank_free(idx);
        emdpo_goqa_bank_free(bi);
        emdpo_py_free(v);
        emdpo_data_free(d);
        long live = failalloc_live(), count = failalloc_count();
        int size_err = failalloc_size_errors();
        failalloc_uninstall();
        int rcs[5] = {rc1, rc2, rc3, rc4, rc5};
        for (int i = 0; i < 5; i++) CHECK_MSG(rcs[i] == EMDPO_OK || rcs[i] == EMDPO_ERR_NOMEM, "fail_at %ld: call %d rc %d", k, i, rcs[i]);
        CHECK_MSG(live == 0, "fail_at %ld leaks %ld blocks", k, live);
        CHECK_MSG(size_err == 0, "fail_at %ld: %d frees with a wrong size", k, size_err);
        if (count <= k) {
            done_at = k;
            CHECK(good);
        }
    }
    CHECK(done_at > 100);
    /* The subset loader, on its own: it groups through a hash table. */
    const char *subset = "{\"question\": \"Q\", \"country\": \"Britain\", \"options\": [\"a\", \"b\"], \"distribution\": [0.2, 0.8]}\n"
                         "{\"question\": \"Q\", \"country\": \"Mexico\", \"options\": [\"a\", \"b\"], \"distribution\": [1, 1]}\n";
    unlink(path);
    if (write_tmp(subset, path)) {
        CHECK(0);
        return;
    }
    const char *two[] = {"Britain", "Mexico"};
    emdpo_goqa_opts o;
    emdpo_goqa_opts_init(&o);
    o.countries = two;
    o.n_countries = 2;
    done_at = -1;
    for (long k = 0; k < 100000 && done_at < 0; k++) {
        failalloc_install(k, 0);
        emdpo_goqa_bank *b = NULL;
        int rc = emdpo_goqa_load_subset(path, &o, &b, NULL);
        int good = !rc && b->n == 1;
        emdpo_goqa_bank_free(b);
        long live = failalloc_live(), count = failalloc_count();
        int size_err = failalloc_size_errors();
        failalloc_uninstall();
        CHECK_MSG(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM, "subset fail_at %ld rc %d", k, rc);
        CHECK_MSG(live == 0 && size_err == 0, "subset fail_at %ld: %ld live, %d size errors", k, live, size_err);
        if (count <= k) {
            done_at = k;
            CHECK(good);
        }
    }
    CHECK(done_at > 10);
    unlink(path);
}

int main(void) {
    test_py_valid();
    test_py_errors();
    test_csv();
    test_index();
    test_subset();
    test_small_index();
    test_builtin();
    test_frequencies();
    test_determinism();
    test_alloc_failures();
    return check_report("test_goqa");
}
