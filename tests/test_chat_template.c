/* Chat templates and the Jinja interpreter behind them (src/data/jinja.c,
 * src/data/chat_template.c): parity with @huggingface/jinja 0.5.13 on every
 * chat template of ../shared/data (tests/fixtures/chat_templates, made by
 * tools/chat_template_fixtures.mjs) and on engine snippets
 * (tools/jinja_snippets.json), then what this interpreter refuses, its
 * limits, and allocation failures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/file.h"
#include "base/json.h"
#include "check.h"
#include "data/jinja.h"
#include "emdpo.h"
#include "failalloc.h"

#define FIX "tests/fixtures/chat_templates/"

static const emdpo_json *load_json(const char *path, emdpo_json_doc **doc, char **text, size_t *len) {
    emdpo_diag diag;
    const emdpo_json *root = NULL;
    emdpo_json_error err;
    *doc = NULL;
    if (emdpo_file_read(path, text, len, &diag)) {
        fprintf(stderr, "%s: %s\n", path, diag.msg);
        return NULL;
    }
    if (emdpo_json_doc_create(doc) || emdpo_json_parse(*doc, *text, *len, &root, &err)) {
        fprintf(stderr, "%s: bad JSON\n", path);
        return NULL;
    }
    return root;
}

/* A case's expectation: [output, raised, other error] (one not null). */
static void check_outcome(const char *what, int rc, const char *out, size_t len, const emdpo_diag *diag,
                          const emdpo_json *want_out, const emdpo_json *want_raise, const emdpo_json *want_err,
                          int *ok) {
    int good;
    if (want_out->type == EMDPO_JSON_STRING) {
        good = rc == 0 && len == want_out->len && memcmp(out, want_out->u.str, len) == 0;
        if (!good && rc == 0)
            fprintf(stderr, "%s:\n  want %s\n  got  %.*s\n", what, want_out->u.str, (int)len, out);
    } else if (want_raise->type == EMDPO_JSON_STRING) {
        size_t cut = sizeof diag->msg - 1;
        good = rc == EMDPO_ERR_INVALID_ARG && strncmp(diag->msg, want_raise->u.str, cut) == 0 &&
               (want_raise->len >= cut || strlen(diag->msg) == want_raise->len);
        if (!good && rc == EMDPO_ERR_INVALID_ARG)
            fprintf(stderr, "%s: raised '%s', want '%s'\n", what, diag->msg, want_raise->u.str);
    } else {
        good = rc != 0 && rc != EMDPO_ERR_INVALID_ARG && rc != EMDPO_ERR_NOMEM;
        if (!good) fprintf(stderr, "%s: want an error like '%s', got rc %d\n", what, want_err->u.str, rc);
    }
    if (!good && rc && rc != EMDPO_ERR_INVALID_ARG) fprintf(stderr, "%s: rc %d: %s:%ld: %s\n", what, rc, diag->file, diag->line, diag->msg);
    CHECK_MSG(good, "%s", what);
    *ok += good;
}

static void test_parity(void) {
    if (!emdpo_path_exists("../shared/data/chat_templates")) {
        printf("test_chat_template: ../shared/data absent, template parity skipped\n");
        return;
    }
    emdpo_json_doc *doc;
    char *text, *ctext;
    size_t len, clen;
    const emdpo_json *root = load_json(FIX "expected.json", &doc, &text, &len);
    CHECK(root != NULL);
    if (!root) return;
    /* the conversations, one JSON array per line */
    CHECK(emdpo_file_read(FIX "conversations.jsonl", &ctext, &clen, NULL) == 0);
    const emdpo_json *tmpl = emdpo_json_get(root, "templates"), *cases = emdpo_json_get(root, "cases");
    size_t n_conv = 0;
    for (size_t i = 0; i < clen; i++) n_conv += ctext[i] == '\n';
    emdpo_json_doc **docs = calloc(n_conv, sizeof *docs);
    const emdpo_json **convs = calloc(n_conv, sizeof *convs);
    char *line = ctext;
    for (size_t c = 0; c < n_conv; c++) {
        char *nl = strchr(line, '\n');
        emdpo_json_error err;
        emdpo_json_doc_create(&docs[c]);
        CHECK(emdpo_json_parse(docs[c], line, (size_t)(nl - line), &convs[c], &err) == 0);
        line = nl + 1;
    }
    int n_t = (int)tmpl->len;
    emdpo_chat_template **ts = calloc((size_t)n_t, sizeof *ts);
    int *ok = calloc((size_t)n_t, sizeof *ok), *total = calloc((size_t)n_t, sizeof *total);
    for (int t = 0; t < n_t; t++) {
        const emdpo_json *e = &tmpl->u.elems[t];
        const char *path = emdpo_json_get(e, "path")->u.str;
        emdpo_diag diag;
        int rc = emdpo_chat_template_load(path, &ts[t], &diag);
        CHECK_MSG(rc == 0, "%s: %s:%ld: %s", path, diag.file, diag.line, diag.msg);
        if (strstr(path, ".json")) { /* the tokens read from the file are the ones the fixtures used */
            const emdpo_json *b = emdpo_json_get(e, "bos"), *s = emdpo_json_get(e, "eos");
            const char *gb = emdpo_chat_template_bos_token(ts[t]), *gs = emdpo_chat_template_eos_token(ts[t]);
            CHECK(b->type == EMDPO_JSON_NULL ? gb == NULL : gb && strcmp(gb, b->u.str) == 0);
            CHECK(s->type == EMDPO_JSON_NULL ? gs == NULL : gs && strcmp(gs, s->u.str) == 0);
        }
    }
    emdpo_chat_message msgs[64];
    for (size_t i = 0; i < cases->len; i++) {
        const emdpo_json *cs = &cases->u.elems[i];
        int t = (int)cs->u.elems[0].num, g = (int)cs->u.elems[1].num;
        size_t c = (size_t)cs->u.elems[2].num;
        if (!ts[t] || c >= n_conv) continue;
        const emdpo_json *conv = convs[c], *e = &tmpl->u.elems[t];
        size_t n = conv->len < 64 ? conv->len : 64;
        for (size_t k = 0; k < n; k++) {
            const emdpo_json *content = emdpo_json_get(&conv->u.elems[k], "content");
            msgs[k].role = emdpo_json_get(&conv->u.elems[k], "role")->u.str;
            msgs[k].content = content->type == EMDPO_JSON_STRING ? content->u.str : NULL;
        }
        const emdpo_json *b = emdpo_json_get(e, "bos"), *s = emdpo_json_get(e, "eos");
        char *out = NULL;
        size_t olen = 0;
        emdpo_diag diag;
        int rc = emdpo_chat_template_render(ts[t], msgs, n, b->type == EMDPO_JSON_STRING ? b->u.str : NULL,
                                            s->type == EMDPO_JSON_STRING ? s->u.str : NULL, g, &out, &olen, &diag);
        char what[400];
        snprintf(what, sizeof what, "%s, conversation %zu, add_generation_prompt %d", emdpo_json_get(e, "path")->u.str,
                 c + 1, g);
        check_outcome(what, rc, out, olen, &diag, &cs->u.elems[3], &cs->u.elems[4], &cs->u.elems[5], &ok[t]);
        total[t]++;
        emdpo_chat_text_free(out, olen);
    }
    for (int t = 0; t < n_t; t++) {
        printf("  %-70s %d/%d cases identical\n", emdpo_json_get(&tmpl->u.elems[t], "path")->u.str, ok[t], total[t]);
        emdpo_chat_template_free(ts[t]);
    }
    for (size_t c = 0; c < n_conv; c++) emdpo_json_doc_free(docs[c]);
    free(docs);
    free(convs);
    free(ts);
    free(ok);
    free(total);
    emdpo_free(ctext, clen + 1);
    emdpo_json_doc_free(doc);
    emdpo_free(text, len + 1);
}

/* Renders src with vars (JSON text, may be NULL). */
static int render(const char *src, const char *vars, const emdpo_jinja_limits *lim, char **out, size_t *len,
                  emdpo_diag *diag) {
    emdpo_jinja *t = NULL;
    *out = NULL;
    *len = 0;
    int rc = emdpo_jinja_parse(src, strlen(src), "t.jinja", &t, diag);
    if (rc) return rc;
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root = NULL;
    emdpo_json_error err;
    if (vars) {
        rc = emdpo_json_doc_create(&doc);
        if (!rc) rc = emdpo_json_parse(doc, vars, strlen(vars), &root, &err);
    }
    if (!rc) rc = emdpo_jinja_render(t, root, lim, out, len, diag);
    emdpo_json_doc_free(doc);
    emdpo_jinja_free(t);
    return rc;
}

static void test_engine_snippets(void) {
    emdpo_json_doc *sdoc, *edoc;
    char *stext, *etext;
    size_t slen, elen;
    const emdpo_json *snips = load_json("tools/jinja_snippets.json", &sdoc, &stext, &slen);
    const emdpo_json *want = load_json(FIX "engine.json", &edoc, &etext, &elen);
    CHECK(snips && want && snips->len == want->len);
    int ok = 0;
    for (size_t i = 0; snips && want && i < snips->len && i < want->len; i++) {
        const emdpo_json *src = &snips->u.elems[i].u.elems[0], *vars = &snips->u.elems[i].u.elems[1];
        const emdpo_json *w = &want->u.elems[i];
        emdpo_jinja *t = NULL;
        emdpo_diag diag;
        char *out = NULL;
        size_t len = 0;
        int rc = emdpo_jinja_parse(src->u.str, src->len, "snippet", &t, &diag);
        if (!rc) rc = emdpo_jinja_render(t, vars, NULL, &out, &len, &diag);
        char what[200];
        snprintf(what, sizeof what, "snippet %zu (%.60s)", i + 1, src->u.str);
        check_outcome(what, rc, out, len, &diag, &w->u.elems[0], &w->u.elems[1], &w->u.elems[2], &ok);
        if (out) emdpo_free(out, len + 1);
        emdpo_jinja_free(t);
    }
    printf("  engine snippets: %d/%zu identical\n", ok, want ? want->len : 0);
    emdpo_json_doc_free(sdoc);
    emdpo_json_doc_free(edoc);
    emdpo_free(stext, slen + 1);
    emdpo_free(etext, elen + 1);
}

static void expect(const char *src, const char *vars, const char *want) {
    char *out;
    size_t len;
    emdpo_diag diag;
    int rc = render(src, vars, NULL, &out, &len, &diag);
    CHECK_MSG(rc == 0 && strcmp(out, want) == 0, "%s: rc %d (%s) got '%s' want '%s'", src, rc, diag.msg,
              out ? out : "", want);
    if (out) emdpo_free(out, len + 1);
}

/* An error: its status, line, and a piece of its message. */
static void expect_error(const char *src, const emdpo_jinja_limits *lim, int want_rc, long want_line, const char *piece) {
    char *out;
    size_t len;
    emdpo_diag diag;
    int rc = render(src, "{\"s\": \"h\\ud83d\\ude00i\"}", lim, &out, &len, &diag);
    CHECK_MSG(rc == want_rc, "%s: rc %d want %d (%s)", src, rc, want_rc, diag.msg);
    CHECK_MSG(strcmp(diag.file, "t.jinja") == 0, "%s: file '%s'", src, diag.file);
    CHECK_MSG(diag.line == want_line, "%s: line %ld want %ld (%s)", src, diag.line, want_line, diag.msg);
    CHECK_MSG(strstr(diag.msg, piece) != NULL, "%s: message '%s' lacks '%s'", src, diag.msg, piece);
    if (out) emdpo_free(out, len + 1);
}

static void test_engine_units(void) {
    /* whitespace control and the default lstrip/trim_blocks */
    expect("a\n  {% if true %}\n  b\n  {% endif %}\nc", NULL, "a\n  b\nc");
    expect("x {{- ' y ' -}} z", NULL, "x y z");
    expect("{{ s|length }} {{ s[1:] }} {{ s[::-1] }}", "{\"s\": \"h\\ud83d\\ude00i\"}", "4 \xF0\x9F\x98\x80i i\xF0\x9F\x98\x80h");
    expect("{{ x|tojson(indent=2) }}", "{\"x\": {\"a\": [1, \"\\u00e9\"]}}", "{\n  \"a\": [\n    1,\n    \"\xC3\xA9\"\n  ]\n}");
    expect("{% for m in ms %}{{ loop.index }}{{ m }}{% if not loop.last %},{% endif %}{% else %}none{% endfor %}",
           "{\"ms\": [\"a\", \"b\"]}", "1a,2b");
    /* refusals name the line and the construct */
    expect_error("ok\n{% call foo() %}x{% endcall %}", NULL, EMDPO_ERR_UNSUPPORTED, 2, "call");
    expect_error("\n\n{{ f(*xs) }}", NULL, EMDPO_ERR_UNSUPPORTED, 3, "unpacking");
    expect_error("{{ {'b': 1}|tojson(sort_keys=true) }}", NULL, EMDPO_ERR_UNSUPPORTED, 1, "sort_keys");
    expect_error("a\n{{ s[1] }}", NULL, EMDPO_ERR_UNSUPPORTED, 2, "BMP");
    expect_error("{{ '\xD0\x96'|lower }}", NULL, EMDPO_ERR_UNSUPPORTED, 1, "U+0416");
    expect_error("{{ raise_exception }}", NULL, EMDPO_ERR_UNSUPPORTED, 1, "function");
    expect_error("{% macro m() %}{{ varargs }}{% endmacro %}{{ m() }}", NULL, EMDPO_ERR_UNSUPPORTED, 1, "varargs");
    /* template errors and syntax errors */
    expect_error("a\nb\n{{ x|nosuchfilter }}", NULL, EMDPO_ERR_PARSE, 3, "nosuchfilter");
    expect_error("{% if true %}\n{% endfor %}", NULL, EMDPO_ERR_PARSE, 2, "endfor");
    expect_error("{{ 'x' + none }}", NULL, EMDPO_ERR_PARSE, 1, "null");
    expect_error("\n{{ raise_exception('Roles must alternate') }}", NULL, EMDPO_ERR_INVALID_ARG, 2, "Roles must alternate");
    /* limits */
    emdpo_jinja_limits lim;
    emdpo_jinja_limits_init(&lim);
    lim.max_output = 1000;
    expect_error("{% for i in range(100) %}{{ '0123456789abcdef' }}{% endfor %}", &lim, EMDPO_ERR_LIMIT, 1, "output");
    emdpo_jinja_limits_init(&lim);
    lim.max_steps = 10000;
    expect_error("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", &lim, EMDPO_ERR_LIMIT, 1,
                 "steps");
    expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, EMDPO_ERR_LIMIT, 1, "deeper");
    emdpo_jinja_limits_init(&lim);
    lim.max_memory = 1 << 20;
    expect_error("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", &lim,
                 EMDPO_ERR_LIMIT, 1, "");
    /* deep nesting is refused while parsing, without exhausting the stack */
    size_t n = 20000;
    char *deep = calloc(1, 12 * n);
    memcpy(deep, "{{ ", 3);
    memset(deep + 3, '(', n);
    memcpy(deep + 3 + n, "1 }}", 4);
    emdpo_jinja *t = NULL;
    emdpo_diag diag;
    CHECK(emdpo_jinja_parse(deep, strlen(deep), "deep", &t, &diag) == EMDPO_ERR_LIMIT && t == NULL);
    memset(deep, 0, 12 * n);
    for (size_t i = 0; i < 5000; i++) memcpy(deep + 11 * i, "{% if 1 %} ", 11);
    CHECK(emdpo_jinja_parse(deep, strlen(deep), "deep", &t, &diag) == EMDPO_ERR_LIMIT && t == NULL);
    free(deep);
    /* invalid UTF-8 templates are refused */
    CHECK(emdpo_jinja_parse("a\n\xFF", 3, "bad", &t, &diag) == EMDPO_ERR_PARSE && diag.line == 2);
}

static void test_public_api(void) {
    emdpo_chat_template *t = NULL;
    emdpo_diag diag;
    const char *src = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
                      "{% if add_generation_prompt %}>{% endif %}{{ eos_token is defined }}";
    CHECK(emdpo_chat_template_parse(src, strlen(src), "mini", &t, &diag) == 0);
    CHECK(emdpo_chat_template_bos_token(t) == NULL && emdpo_chat_template_eos_token(t) == NULL);
    emdpo_chat_message m[2] = {{"user", "hi"}, {"assistant", NULL}};
    char *out;
    size_t len;
    CHECK(emdpo_chat_template_render(t, m, 2, "<s>", NULL, 1, &out, &len, &diag) == 0);
    CHECK(out && strcmp(out, "<s>[user]hi[assistant]>false") == 0 && len == strlen(out));
    emdpo_chat_text_free(out, len);
    CHECK(emdpo_chat_template_render(t, NULL, 0, "", "", 0, &out, &len, &diag) == 0 && strcmp(out, "true") == 0);
    emdpo_chat_text_free(out, len);
    emdpo_chat_message bad = {"user", "\xC3("};
    CHECK(emdpo_chat_template_render(t, &bad, 1, "", "", 0, &out, &len, &diag) == EMDPO_ERR_INVALID_ARG && !out);
    emdpo_chat_template_free(t);
    emdpo_chat_template_free(NULL);
    CHECK(emdpo_chat_template_load("no/such/file.jinja", &t, &diag) == EMDPO_ERR_IO && t == NULL);
    if (emdpo_path_exists("../shared/data/tokenizers/mistral/tokenizer_config.json")) {
        CHECK(emdpo_chat_template_load("../shared/data/tokenizers/mistral/tokenizer_config.json", &t, &diag) ==
              EMDPO_ERR_UNSUPPORTED);
        CHECK(strstr(diag.msg, "chat_template") != NULL);
    }
}

/* Every allocation failure of a load and a render: EMDPO_ERR_NOMEM, no leak. */
static int sweep_once(void) {
    const char *src = "{%- set ns = namespace(n=0) -%}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
                      "{{ m.role|upper }}:{{ m.content|trim|tojson }}{{ m.content.split(' ')|join('|') }}"
                      "{% endfor %}{{ ns.n }}{{ messages|selectattr('role', 'equalto', 'user')|list|length }}";
    emdpo_chat_template *t = NULL;
    emdpo_diag diag;
    int rc = emdpo_chat_template_parse(src, strlen(src), "sweep", &t, &diag);
    if (rc) return rc;
    emdpo_chat_message m[2] = {{"user", " hello world "}, {"assistant", "ok \xF0\x9F\x98\x80"}};
    char *out = NULL;
    size_t len = 0;
    rc = emdpo_chat_template_render(t, m, 2, "<s>", "</s>", 1, &out, &len, &diag);
    if (!rc) CHECK(strcmp(out, "USER:\"hello world\"|hello|world|ASSISTANT:\"ok \xF0\x9F\x98\x80\"ok|\xF0\x9F\x98\x80" "21") == 0);
    emdpo_chat_text_free(out, len);
    emdpo_chat_template_free(t);
    return rc;
}

static void test_alloc_failures(void) {
    long n_ok = -1;
    for (long k = 0; k < 100000; k++) {
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
    test_parity();
    test_engine_snippets();
    test_engine_units();
    test_public_api();
    test_alloc_failures();
    return check_report("test_chat_template");
}
