/* Hugging Face tokenizer.json support (lm/io/hf_tok*.c through
 * emdpo_tokenizer_load):
 * - parity with the official tokenizers 0.23.2 (fixtures made by
 *   tools/tokenizer_parity/) for the five tokenizer.json files in
 *   ../shared: ids with and without add_special_tokens, decode of those
 *   ids and of nasty id sequences;
 * - llama.cpp's tokenizer test pairs for the same vocabularies;
 * - the special ids read from tokenizer_config.json / config.json;
 * - malformed and unsupported files refused with the field, and every
 *   allocation failure of load, encode and decode returning NOMEM cleanly.
 * The parity parts skip (saying so) when ../shared is absent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/json.h"
#include "check.h"
#include "emdpo.h"
#include "failalloc.h"
#include "lm/io/tokenizer.h"
#include "testdata.h"

#define TOK_DIR "../shared/data/tokenizers/"
#define FIX_DIR "tests/fixtures/tokenizer_parity/"

/* The next line of *p (NUL-terminated in place), or NULL at the end. */
static char *next_line(char **p) {
    if (!*p || !**p) return NULL;
    char *s = *p, *nl = strchr(s, '\n');
    if (nl) {
        *nl = '\0';
        *p = nl + 1;
    } else {
        *p = s + strlen(s);
    }
    return s;
}

static int same_ids(const int *got, size_t n, const emdpo_json *want) {
    if (!want || want->type != EMDPO_JSON_ARRAY || want->len != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (want->u.elems[i].inum != got[i]) return 0;
    return 1;
}

static int same_text(const char *got, size_t n, const emdpo_json *want) {
    return want && want->type == EMDPO_JSON_STRING && want->len == n && memcmp(got, want->u.str, n) == 0;
}

/* Every fixture string through encode (both modes) and decode. */
static void parity_strings(const char *name, const emdpo_tokenizer *t, emdpo_json_doc *d1, emdpo_json_doc *d2) {
    char path[256];
    size_t ls, le;
    snprintf(path, sizeof path, FIX_DIR "%s.jsonl", name);
    char *strs = testdata_slurp(FIX_DIR "strings.jsonl", &ls), *exp = testdata_slurp(path, &le), *ps = strs, *pe = exp, *s, *e;
    CHECK_MSG(strs && exp, "%s: fixtures missing", name);
    int lines = 0, bad = 0;
    while (strs && exp && (s = next_line(&ps)) && (e = next_line(&pe))) {
        const emdpo_json *js, *je;
        emdpo_json_error err;
        lines++;
        if (emdpo_json_parse(d1, s, strlen(s), &js, &err) || emdpo_json_parse(d2, e, strlen(e), &je, &err)) {
            bad++;
            continue;
        }
        for (int sp = 0; sp < 2; sp++) {
            int *ids;
            size_t n;
            char *text = NULL;
            size_t tl = 0;
            int rc = emdpo_tokenizer_encode_alloc(t, js->u.str, js->len, sp ? EMDPO_TOK_SPECIAL : 0u, &ids, &n);
            int ok = rc == EMDPO_OK && same_ids(ids, n, emdpo_json_get(je, sp ? "special" : "plain"));
            if (ok) rc = emdpo_tokenizer_decode_alloc(t, ids, n, &text, &tl);
            ok = ok && rc == EMDPO_OK && same_text(text, tl, emdpo_json_get(je, sp ? "decoded_special" : "decoded"));
            if (!ok && bad++ < 5) printf("  %s line %d (%s): rc %d, %zu ids\n", name, lines, sp ? "special" : "plain", rc, n);
            emdpo_ids_free(ids, n);
            if (text) emdpo_free(text, tl + 1);
        }
    }
    CHECK_MSG(bad == 0, "%s: %d of %d strings differ from HF tokenizers", name, bad, lines);
    CHECK_MSG(lines >= 800, "%s: only %d fixture strings", name, lines);
    free(strs);
    free(exp);

    snprintf(path, sizeof path, FIX_DIR "%s.decode.jsonl", name);
    char *dec = testdata_slurp(path, &le), *pd = dec;
    int dlines = 0, dbad = 0;
    while (dec && (e = next_line(&pd))) {
        const emdpo_json *je, *jids, *jt;
        emdpo_json_error err;
        dlines++;
        if (emdpo_json_parse(d2, e, strlen(e), &je, &err) || !(jids = emdpo_json_get(je, "ids")) ||
            !(jt = emdpo_json_get(je, "text"))) {
            dbad++;
            continue;
        }
        int *ids = malloc((jids->len + 1) * sizeof *ids);
        for (size_t i = 0; i < jids->len; i++) ids[i] = (int)jids->u.elems[i].inum;
        char *text = NULL;
        size_t tl = 0;
        int rc = emdpo_tokenizer_decode_alloc(t, ids, jids->len, &text, &tl);
        if (rc || !same_text(text, tl, jt)) {
            if (dbad++ < 5) printf("  %s decode line %d: rc %d\n", name, dlines, rc);
        }
        if (text) emdpo_free(text, tl + 1);
        free(ids);
    }
    CHECK_MSG(dlines >= 300 && dbad == 0, "%s: %d of %d decode cases differ", name, dbad, dlines);
    free(dec);
}

static void test_parity(void) {
    static const char *names[] = {"llama2", "llama3", "qwen3", "mistral", "gpt2-hf"};
    emdpo_json_doc *d1, *d2;
    if (emdpo_json_doc_create(&d1) || emdpo_json_doc_create(&d2)) abort();
    for (int i = 0; i < 5; i++) {
        char path[256];
        snprintf(path, sizeof path, TOK_DIR "%s/tokenizer.json", names[i]);
        if (access(path, R_OK) != 0) {
            printf("test_hf_tokenizer: %s absent, its parity skipped\n", path);
            continue;
        }
        emdpo_tokenizer *t = NULL;
        emdpo_diag d;
        int rc = emdpo_tokenizer_load(path, 0, &t, &d);
        CHECK_MSG(rc == EMDPO_OK, "%s: %s", path, d.msg);
        if (t) parity_strings(names[i], t, d1, d2);
        emdpo_tokenizer_free(t);
    }
    emdpo_json_doc_free(d1);
    emdpo_json_doc_free(d2);
}

/* One synthetic tokenizer.json (tools/tokenizer_parity/synthetic.js): its
 * strings through encode (both modes) and decode, and its decode cases.
 * HF panics on some Strip decodes; those lines are skipped. */
static int synthetic_one(const char *name, emdpo_json_doc *doc) {
    char path[256];
    snprintf(path, sizeof path, FIX_DIR "synthetic/%s.json", name);
    emdpo_tokenizer *t = NULL;
    emdpo_diag d;
    if (emdpo_tokenizer_load(path, 0, &t, &d)) {
        printf("  %s: %s\n", name, d.msg);
        return 1;
    }
    int bad = 0;
    size_t len;
    snprintf(path, sizeof path, FIX_DIR "synthetic/%s.expected.jsonl", name);
    char *exp = testdata_slurp(path, &len), *p = exp, *e;
    while (exp && (e = next_line(&p))) {
        const emdpo_json *j, *text;
        emdpo_json_error err;
        if (emdpo_json_parse(doc, e, strlen(e), &j, &err) || !(text = emdpo_json_get(j, "text"))) {
            bad++;
            continue;
        }
        for (int sp = 0; sp < 2; sp++) {
            int *ids;
            size_t n;
            char *out = NULL;
            size_t ol = 0;
            int rc = emdpo_tokenizer_encode_alloc(t, text->u.str, text->len, sp ? EMDPO_TOK_SPECIAL : 0u, &ids, &n);
            int ok = rc == EMDPO_OK && same_ids(ids, n, emdpo_json_get(j, sp ? "special" : "plain"));
            const emdpo_json *want = emdpo_json_get(j, "decoded");
            if (ok && !sp && want && want->type == EMDPO_JSON_STRING) {
                rc = emdpo_tokenizer_decode_alloc(t, ids, n, &out, &ol);
                ok = rc == EMDPO_OK && same_text(out, ol, want);
            }
            if (!ok && bad++ < 2) printf("  %s: \"%.40s\" (%s) differs\n", name, text->u.str, sp ? "special" : "plain");
            emdpo_ids_free(ids, n);
            if (out) emdpo_free(out, ol + 1);
        }
    }
    free(exp);
    snprintf(path, sizeof path, FIX_DIR "synthetic/%s.decode.jsonl", name);
    char *dec = testdata_slurp(path, &len);
    p = dec;
    while (dec && (e = next_line(&p))) {
        const emdpo_json *j, *ids, *want;
        emdpo_json_error err;
        if (emdpo_json_parse(doc, e, strlen(e), &j, &err) || !(ids = emdpo_json_get(j, "ids"))) {
            bad++;
            continue;
        }
        if (!(want = emdpo_json_get(j, "text")) || want->type != EMDPO_JSON_STRING) continue; /* HF panicked */
        int *v = malloc((ids->len + 1) * sizeof *v);
        for (size_t i = 0; i < ids->len; i++) v[i] = (int)ids->u.elems[i].inum;
        char *out = NULL;
        size_t ol = 0;
        int rc = emdpo_tokenizer_decode_alloc(t, v, ids->len, &out, &ol);
        if ((rc || !same_text(out, ol, want)) && bad++ < 4) printf("  %s: decode \"%.60s\" differs\n", name, e);
        if (out) emdpo_free(out, ol + 1);
        free(v);
    }
    free(dec);
    emdpo_tokenizer_free(t);
    return bad;
}

static void test_synthetic(void) {
    size_t len;
    char *manifest = testdata_slurp(FIX_DIR "synthetic/MANIFEST.md", &len);
    CHECK_MSG(manifest != NULL, "synthetic fixtures missing");
    free(manifest);
    FILE *ls = popen("ls " FIX_DIR "synthetic/*.json", "r");
    char line[512];
    emdpo_json_doc *doc;
    if (!ls || emdpo_json_doc_create(&doc)) abort();
    int files = 0, failed = 0;
    while (fgets(line, sizeof line, ls)) {
        char *base = strrchr(line, '/');
        char *dot = base ? strstr(base, ".json") : NULL;
        if (!dot) continue;
        *dot = '\0';
        files++;
        if (synthetic_one(base + 1, doc)) failed++;
    }
    pclose(ls);
    emdpo_json_doc_free(doc);
    CHECK_MSG(files >= 50 && failed == 0, "%d of %d synthetic tokenizers differ from HF", failed, files);
}

static int has_double_blank(const char *s) {
    for (; s[0] && s[1]; s++)
        if ((s[0] == ' ' || s[0] == '\t') && s[1] == s[0]) return 1;
    return 0;
}

/* llama.cpp's own test pairs for the same vocabularies. gpt2-hf's
 * tokenizer.json has 38 added tokens of spaces and tabs that llama.cpp's
 * GPT-2 vocabulary lacks (HF itself encodes "  Hello" with one of them), so
 * inputs with such runs are HF's business (test_parity), not llama.cpp's. */
static void llama_cpp_pairs(const char *tok_path, const char *test, int (*skip)(const char *)) {
    emdpo_tokenizer *t = NULL;
    emdpo_diag d;
    if (access(tok_path, R_OK) != 0 || emdpo_tokenizer_load(tok_path, 0, &t, &d) != EMDPO_OK) {
        printf("test_hf_tokenizer: %s absent, llama.cpp's %s pairs skipped\n", tok_path, test);
        return;
    }
    int bad, cases = testdata_llama_cpp_pairs(t, TOK_DIR "tests", test, skip, &bad);
    if (cases < 0) printf("test_hf_tokenizer: llama.cpp's %s pairs absent, skipped\n", test);
    else CHECK_MSG(cases >= 25 && bad == 0, "%s with %s: %d of %d cases differ", test, tok_path, bad, cases);
    emdpo_tokenizer_free(t);
}

static void test_llama_cpp(void) {
    llama_cpp_pairs(TOK_DIR "llama2/tokenizer.json", "llama-spm", NULL);
    llama_cpp_pairs(TOK_DIR "llama3/tokenizer.json", "llama-bpe", NULL);
    llama_cpp_pairs(TOK_DIR "gpt2-hf/tokenizer.json", "gpt-2", has_double_blank);
}

static void check_specials(const char *dir, int bos, int eos, int stop_has) {
    emdpo_tokenizer *t = NULL;
    emdpo_diag d;
    char path[256];
    snprintf(path, sizeof path, TOK_DIR "%s", dir);
    if (access(path, R_OK) != 0) return;
    CHECK_EQ_INT(emdpo_tokenizer_load(path, 0, &t, &d), EMDPO_OK);
    if (!t) return;
    CHECK_MSG(emdpo_tokenizer_bos(t) == bos && emdpo_tokenizer_eos(t) == eos, "%s: bos %d eos %d, want %d %d", dir,
              emdpo_tokenizer_bos(t), emdpo_tokenizer_eos(t), bos, eos);
    const int *stop;
    size_t n = emdpo_tokenizer_stop_ids(t, &stop), found = 0;
    for (size_t i = 0; i < n; i++) found |= stop[i] == stop_has;
    CHECK_MSG(found, "%s: generation does not stop at %d", dir, stop_has);
    emdpo_tokenizer_free(t);
}

static void test_specials(void) {
    /* From each directory's tokenizer_config.json (Qwen's bos_token is null). */
    check_specials("llama2", 1, 2, 2);
    check_specials("mistral", 1, 2, 2);
    check_specials("gpt2-hf", 50256, 50256, 50256);
    check_specials("qwen3", -1, 151645, 151645);
}

/* ---- small files written here ------------------------------------------ */

static const char *tmp_dir(void) {
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/emdpo_hftok_%d", (int)getpid());
        char cmd[128];
        snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
        if (system(cmd) != 0) abort();
    }
    return dir;
}

static const char *write_file(const char *name, const char *text) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmp_dir(), name);
    FILE *fp = fopen(path, "wb");
    if (!fp) abort();
    fputs(text, fp);
    fclose(fp);
    return path;
}

/* A byte-level BPE over "ab" with two merges, an added special token and a
 * template: small enough to read whole. */
#define SMALL_VOCAB                                                                                                 \
    "\"vocab\":{\"a\":0,\"b\":1,\"\\u0120\":2,\"ab\":3,\"\\u0120ab\":4,\"c\":5},\"merges\":[\"a b\",[\"\\u0120\",\"ab\"]]"

static const char small_json[] =
    "{\"added_tokens\":[{\"id\":6,\"content\":\"<eos>\",\"special\":true,\"normalized\":false,\"lstrip\":false,"
    "\"rstrip\":false,\"single_word\":false}],"
    "\"normalizer\":{\"type\":\"NFKC\"},"
    "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
    "{\"SpecialToken\":{\"id\":\"<eos>\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<eos>\":{\"id\":\"<eos>\","
    "\"ids\":[6],\"tokens\":[\"<eos>\"]}}},"
    "\"decoder\":{\"type\":\"ByteLevel\"},"
    "\"model\":{\"type\":\"BPE\"," SMALL_VOCAB "}}";

static void test_small(void) {
    emdpo_tokenizer *t = NULL;
    emdpo_diag d;
    char path[128];
    snprintf(path, sizeof path, "%s", write_file("tokenizer.json", small_json));
    write_file("tokenizer_config.json", "{\"eos_token\":{\"content\":\"<eos>\"},\"bos_token\":null}");
    int rc = emdpo_tokenizer_load(path, 7, &t, &d);
    CHECK_MSG(rc == EMDPO_OK, "the small tokenizer: %s", d.msg);
    if (!t) return;
    CHECK_EQ_INT(emdpo_tokenizer_vocab_size(t), 7);
    CHECK_EQ_INT(emdpo_tokenizer_bos(t), -1);
    CHECK_EQ_INT(emdpo_tokenizer_eos(t), 6);
    int *ids;
    size_t n;
    /* "ab ab<eos>" -> ab, Ġab, <eos>; with SPECIAL the template adds <eos>. */
    CHECK_EQ_INT(emdpo_tokenizer_encode_alloc(t, "ab ab<eos>", 10, EMDPO_TOK_SPECIAL, &ids, &n), EMDPO_OK);
    CHECK(n == 4 && ids[0] == 3 && ids[1] == 4 && ids[2] == 6 && ids[3] == 6);
    emdpo_ids_free(ids, n);
    /* ADD_BOS without a BOS adds nothing; ADD_EOS adds the config's EOS. */
    CHECK_EQ_INT(emdpo_tokenizer_encode_alloc(t, "a", 1, EMDPO_TOK_ADD_BOS | EMDPO_TOK_ADD_EOS, &ids, &n), EMDPO_OK);
    CHECK(n == 2 && ids[0] == 0 && ids[1] == 6);
    emdpo_ids_free(ids, n);
    /* NFKC: the fullwidth letter is 'a'; text that is not UTF-8 is refused. */
    CHECK_EQ_INT(emdpo_tokenizer_encode_alloc(t, "\xEF\xBD\x81", 3, 0, &ids, &n), EMDPO_OK);
    CHECK(n == 1 && ids[0] == 0);
    emdpo_ids_free(ids, n);
    CHECK_EQ_INT(emdpo_tokenizer_encode_alloc(t, "\xC3", 1, 0, &ids, &n), EMDPO_ERR_INVALID_ARG);
    /* Characters without a piece (byte-level 'd') are dropped, as HF does
     * without an unk token. */
    CHECK_EQ_INT(emdpo_tokenizer_encode_alloc(t, "dab", 3, 0, &ids, &n), EMDPO_OK);
    CHECK(n == 1 && ids[0] == 3);
    emdpo_ids_free(ids, n);
    int dec[] = {4, 6, 3};
    char *text;
    size_t tl;
    CHECK_EQ_INT(emdpo_tokenizer_decode_alloc(t, dec, 3, &text, &tl), EMDPO_OK);
    CHECK(tl == 10 && memcmp(text, " ab<eos>ab", 10) == 0);
    emdpo_free(text, tl + 1);
    int out_of_range = 7;
    CHECK_EQ_INT(emdpo_tokenizer_decode_alloc(t, &out_of_range, 1, &text, &tl), EMDPO_ERR_INVALID_ARG);
    emdpo_tokenizer_free(t);
    /* The model's vocabulary must hold every id. */
    CHECK_EQ_INT(emdpo_tokenizer_load(path, 6, &t, &d), EMDPO_ERR_PARSE);
    CHECK(strstr(d.msg, "ids up to 6") != NULL);
    write_file("tokenizer_config.json", "{\"eos_token\":\"</s>\"}");
    CHECK_EQ_INT(emdpo_tokenizer_load(path, 0, &t, &d), EMDPO_ERR_PARSE);
    CHECK(strstr(d.file, "tokenizer_config.json") != NULL && strstr(d.msg, "eos_token") != NULL);
    remove(path);
    remove(write_file("tokenizer_config.json", ""));
}

/* A Sequence of post-processors: each wraps what the ones before made, the
 * second template's <x> outside the first's <s> <x> ... <s>. (HF 0.23
 * panics with "not yet implemented" on two templates in a Sequence; one
 * after ByteLevel, with two leading tokens, gives [1, 2, 0, 1] in both.) */
static void test_post_sequence(void) {
    static const char json[] =
        "{\"added_tokens\":[{\"id\":1,\"content\":\"<s>\",\"special\":true,\"normalized\":false},"
        "{\"id\":2,\"content\":\"<x>\",\"special\":true,\"normalized\":false}],"
        "\"post_processor\":{\"type\":\"Sequence\",\"processors\":["
        "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},"
        "{\"SpecialToken\":{\"id\":\"<x>\"}},{\"Sequence\":{\"id\":\"A\"}},{\"SpecialToken\":{\"id\":\"<s>\"}}],"
        "\"special_tokens\":{\"<s>\":{\"ids\":[1]},\"<x>\":{\"ids\":[2]}}},"
        "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<x>\"}},"
        "{\"Sequence\":{\"id\":\"A\"}},{\"SpecialToken\":{\"id\":\"<x>\"}}],"
        "\"special_tokens\":{\"<x>\":{\"ids\":[2]}}}]},"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"<s>\":1,\"<x>\":2},\"merges\":[]}}";
    const char *path = write_file("seq.json", json);
    emdpo_tokenizer *t = NULL;
    emdpo_diag d;
    int *ids;
    size_t n;
    CHECK_EQ_INT(emdpo_tokenizer_load(path, 0, &t, &d), EMDPO_OK);
    if (t && emdpo_tokenizer_encode_alloc(t, "a", 1, EMDPO_TOK_SPECIAL, &ids, &n) == EMDPO_OK) {
        static const int want[] = {2, 1, 2, 0, 1, 2};
        CHECK(n == 6 && memcmp(ids, want, sizeof want) == 0);
        emdpo_ids_free(ids, n);
    }
    emdpo_tokenizer_free(t);
    remove(path);
}

/* Each malformed or unsupported file, and a word its message must hold. */
static void test_refused(void) {
    static const struct {
        const char *json, *word;
        int rc;
    } cases[] = {
        {"{\"model\":{\"type\":\"BPE\"," SMALL_VOCAB "}", "byte", EMDPO_ERR_PARSE},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "model type \"WordPiece\"", EMDPO_ERR_UNSUPPORTED},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", "model.vocab", EMDPO_ERR_PARSE},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", "id 0", EMDPO_ERR_PARSE},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a x\"]}}", "merge 0", EMDPO_ERR_PARSE},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"aa\"]}}", "model.merges[0]", EMDPO_ERR_PARSE},
        {"{\"normalizer\":{\"type\":\"BertNormalizer\"},\"model\":{\"type\":\"BPE\"," SMALL_VOCAB "}}",
         "normalizer type \"BertNormalizer\"", EMDPO_ERR_UNSUPPORTED},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},\"behavior\":\"Isolated\"},"
         "\"model\":{\"type\":\"BPE\"," SMALL_VOCAB "}}", "regex", EMDPO_ERR_PARSE},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Sideways\"},"
         "\"model\":{\"type\":\"BPE\"," SMALL_VOCAB "}}", "behavior", EMDPO_ERR_PARSE},
        {"{\"decoder\":{\"type\":\"WordPiece\"},\"model\":{\"type\":\"BPE\"," SMALL_VOCAB "}}",
         "decoder type \"WordPiece\"", EMDPO_ERR_UNSUPPORTED},
        {"{\"model\":{\"type\":\"BPE\",\"dropout\":0.1," SMALL_VOCAB "}}", "dropout", EMDPO_ERR_UNSUPPORTED},
        {"{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\"," SMALL_VOCAB "}}", "unk_token", EMDPO_ERR_PARSE},
        {"{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<x>\"}}],"
         "\"special_tokens\":{\"<x>\":{\"ids\":[99]}}},\"model\":{\"type\":\"BPE\"," SMALL_VOCAB "}}",
         "$A", EMDPO_ERR_UNSUPPORTED},
        {"{\"added_tokens\":[{\"id\":\"7\",\"content\":\"x\"}],\"model\":{\"type\":\"BPE\"," SMALL_VOCAB "}}",
         "added_tokens[0]", EMDPO_ERR_PARSE},
        {"{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"ab\"},\"model\":{\"type\":\"BPE\"," SMALL_VOCAB
         "}}", "one character", EMDPO_ERR_PARSE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = write_file("bad.json", cases[i].json);
        emdpo_tokenizer *t = NULL;
        emdpo_diag d;
        int rc = emdpo_tokenizer_load(path, 0, &t, &d);
        CHECK_MSG(rc == cases[i].rc && !t && strstr(d.msg, cases[i].word) && strstr(d.file, "bad.json"),
                  "case %zu: rc %d, \"%s\" (want rc %d and \"%s\")", i, rc, d.msg, cases[i].rc, cases[i].word);
        emdpo_tokenizer_free(t);
        remove(path);
    }
}

/* Every allocation of load, encode and decode may fail: NOMEM, no leak. */
static void test_alloc_failures(void) {
    const char *path = write_file("tokenizer.json", small_json);
    int n_fail = 0, n_ok = 0;
    for (long k = 0;; k++) {
        failalloc_install(k, 0);
        emdpo_tokenizer *t = NULL;
        emdpo_diag d;
        int *ids = NULL, rc = emdpo_tokenizer_load(path, 0, &t, &d);
        size_t n = 0, tl = 0;
        char *text = NULL;
        if (!rc) rc = emdpo_tokenizer_encode_alloc(t, "ab ab<eos> \xEF\xBD\x81", 14, EMDPO_TOK_SPECIAL, &ids, &n);
        if (!rc) rc = emdpo_tokenizer_decode_alloc(t, ids, n, &text, &tl);
        long attempted = failalloc_count();
        if (text) emdpo_free(text, tl + 1);
        emdpo_ids_free(ids, n);
        emdpo_tokenizer_free(t);
        long live = failalloc_live();
        failalloc_uninstall();
        CHECK_MSG(live == 0, "allocation %ld failing leaks %ld blocks", k, live);
        if (rc == EMDPO_OK) {
            n_ok++;
            if (k >= attempted) break;
        } else {
            CHECK_MSG(rc == EMDPO_ERR_NOMEM, "allocation %ld failing gives rc %d", k, rc);
            n_fail++;
        }
        if (k > 100000) break;
    }
    CHECK_MSG(n_fail > 50 && n_ok >= 1, "the sweep saw %d failures", n_fail);
    CHECK_EQ_INT(failalloc_size_errors(), 0);
    remove(path);
}

int main(void) {
    test_small();
    test_refused();
    test_post_sequence();
    test_alloc_failures();
    test_specials();
    test_synthetic();
    test_parity();
    test_llama_cpp();
    rmdir(tmp_dir());
    return check_report("test_hf_tokenizer");
}
