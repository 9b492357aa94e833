/* Hugging Face checkpoints beyond one float32 file: 16-bit conversions
 * (every F16 and BF16 bit pattern round-trips; narrowing gives PyTorch's
 * bits on tools/st_fixture.py's values), sharded checkpoints (the
 * PyTorch-made tests/fixtures/hf_tiny_sharded loads, saves as one BF16 file
 * with the same values, and a save over it leaves one consistent
 * checkpoint), load -> save -> load identity bit for bit in F32, F16 and
 * BF16 for every family's fixture, hostile index files (each refused naming the index, the tensor and
 * the shard), and the files saved beside the weights (config.json,
 * generation_config.json, the tokenizer's). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/half.h"
#include "check.h"
#include "testdata.h"
#include "lm/engine/llama.h"
#include "lm/io/llama_hf.h"
#include "lm/io/safetensors.h"
#include "lm/io/st_source.h"

#define DTYPES "tests/fixtures/st_dtypes.safetensors"
#define SHARDED "tests/fixtures/hf_tiny_sharded"
#define TINY "tests/fixtures/hf_tiny"
#define TOK_DIR "../shared/data/tokenizers/qwen3"
#define GGUF "../shared/data/gguf/llama-2-tiny-random.gguf"

static char g_tmp[64];

static const char *tmp(const char *name) {
    static char buf[4][200];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", g_tmp, name);
    return buf[i];
}

static void spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = testdata_slurp(a, &na), *y = testdata_slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static int file_has(const char *path, const char *text) {
    size_t n;
    char *p = testdata_slurp(path, &n);
    int has = p && strstr(p, text) != NULL;
    free(p);
    return has;
}

static void rm_dir(const char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

static int same_params(const emdpo_llama *a, const emdpo_llama *b) {
    return a && b && a->num_params == b->num_params &&
           memcmp(a->param_buf, b->param_buf, a->num_params * sizeof(float)) == 0;
}

/* ---- conversions ------------------------------------------------------------ */

static void test_conversions(void) {
    /* Widening then narrowing gives every bit pattern back, NaNs included. */
    int bad_f16 = 0, bad_bf16 = 0, bad_widen = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        bad_f16 += emdpo_float_to_half(emdpo_half_to_float((uint16_t)h)) != h;
        bad_bf16 += emdpo_float_to_bf16(emdpo_bf16_to_float((uint16_t)h)) != h;
        /* Finite F16 values against their definition. */
        int e = (h >> 10) & 31, m = h & 1023;
        if (e == 31) continue;
        double v = e ? (1024 + m) * 0x1p-10 * (double)(1 << e) * 0x1p-15 : m * 0x1p-24;
        if (h & 0x8000) v = -v;
        bad_widen += (double)emdpo_half_to_float((uint16_t)h) != v;
    }
    CHECK_EQ_INT(bad_f16, 0);
    CHECK_EQ_INT(bad_bf16, 0);
    CHECK_EQ_INT(bad_widen, 0);
    CHECK(emdpo_float_to_half(65519.99f) == 0x7BFF && emdpo_float_to_half(65520.0f) == 0x7C00);
    CHECK(emdpo_float_to_half(0x1p-25f) == 0 && emdpo_float_to_half(0x1.8p-25f) == 1 && emdpo_float_to_half(-0.0f) == 0x8000);
    CHECK(emdpo_float_to_bf16(1.00390625f) == 0x3F80 && emdpo_float_to_bf16(1.01171875f) == 0x3F82);

    /* PyTorch's .half() and .bfloat16() of the fixture's values, through
     * the writer and the reader. */
    emdpo_safetensors *st = NULL;
    emdpo_diag d;
    if (emdpo_st_open(DTYPES, &st, &d) != EMDPO_OK) {
        CHECK_MSG(0, "%s: %s", DTYPES, d.msg);
        return;
    }
    const emdpo_st_tensor *t = emdpo_st_find(st, "x");
    CHECK(t && t->numel > 3000 && emdpo_st_find(st, "x_f16")->dtype == EMDPO_ST_F16 &&
          emdpo_st_find(st, "x_bf16")->dtype == EMDPO_ST_BF16);
    if (!t) return;
    size_t n = (size_t)t->numel;
    int64_t shape = (int64_t)n;
    float *x = malloc(n * sizeof *x), *torch = malloc(n * sizeof *x), *ours = malloc(n * sizeof *x);
    CHECK_EQ_INT(emdpo_st_read_f32(st, "x", 1, &shape, x, &d), EMDPO_OK);
    static const char *const names[2] = {"x_f16", "x_bf16"};
    static const emdpo_st_dtype dts[2] = {EMDPO_ST_F16, EMDPO_ST_BF16};
    for (int k = 0; k < 2; k++) {
        CHECK_EQ_INT(emdpo_st_read_f32(st, names[k], 1, &shape, torch, &d), EMDPO_OK);
        emdpo_st_out o = {names[k], 1, {shape}, x};
        CHECK_EQ_INT(emdpo_st_write(tmp("conv.safetensors"), &o, 1, dts[k], NULL, 0, &d), EMDPO_OK);
        emdpo_safetensors *w = NULL;
        CHECK_EQ_INT(emdpo_st_open(tmp("conv.safetensors"), &w, &d), EMDPO_OK);
        if (!w) continue;
        CHECK(emdpo_st_find(w, names[k])->dtype == dts[k]);
        CHECK_EQ_INT(emdpo_st_read_f32(w, names[k], 1, &shape, ours, &d), EMDPO_OK);
        size_t differ = 0, first = 0;
        for (size_t i = 0; i < n; i++)
            if (memcmp(&ours[i], &torch[i], sizeof(float)) != 0 && !differ++) first = i;
        CHECK_MSG(differ == 0, "%s: %zu of %zu values differ from PyTorch's (first: %a -> %a, torch %a)", names[k],
                  differ, n, (double)x[first], (double)ours[first], (double)torch[first]);
        emdpo_st_close(w);
    }
    CHECK_EQ_INT(emdpo_st_write(tmp("conv.safetensors"), NULL, 0, EMDPO_ST_F64, NULL, 0, &d), EMDPO_ERR_INVALID_ARG);
    CHECK(strstr(d.msg, "F64") != NULL);
    remove(tmp("conv.safetensors"));
    free(x);
    free(torch);
    free(ours);
    emdpo_st_close(st);
}

/* ---- sharded checkpoints ---------------------------------------------------- */

/* Every tensor of a equals b's of the same name, value for value, and
 * has dtype dt. */
static void same_tensors(const emdpo_st_source *a, const emdpo_st_source *b, emdpo_st_dtype dt) {
    CHECK_EQ_INT(emdpo_st_source_count(a), emdpo_st_source_count(b));
    emdpo_diag d;
    for (size_t i = 0; i < emdpo_st_source_count(b); i++) {
        const emdpo_st_tensor *tb = emdpo_st_source_tensor_at(b, i), *ta = emdpo_st_source_find(a, tb->name);
        CHECK_MSG(ta && ta->dtype == dt, "%s missing or of another dtype", tb->name);
        if (!ta) continue;
        float *x = malloc(tb->numel * sizeof *x), *y = malloc(tb->numel * sizeof *y);
        CHECK_EQ_INT(emdpo_st_source_read_f32(a, tb->name, tb->rank, tb->shape, x, &d), EMDPO_OK);
        CHECK_EQ_INT(emdpo_st_source_read_f32(b, tb->name, tb->rank, tb->shape, y, &d), EMDPO_OK);
        CHECK_MSG(memcmp(x, y, tb->numel * sizeof *x) == 0, "%s differs", tb->name);
        free(x);
        free(y);
    }
}

static void copy_dir(const char *from, const char *to) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
    if (system(cmd) != 0) fprintf(stderr, "cannot copy %s\n", from);
}

static void test_sharded(void) {
    emdpo_llama *m = NULL, *back = NULL;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_llama_hf_load(SHARDED, 0, &m, &d), EMDPO_OK);
    if (!m) {
        printf("%s: %s\n", d.file, d.msg);
        return;
    }
    CHECK_EQ_INT(m->file_dtype, EMDPO_DTYPE_BF16);
    CHECK(m->config.vocab_size == 259 && m->config.n_layers == 2 && !m->config.tied);

    /* Saved in the dtype it came in, one file holding the same values. */
    CHECK_EQ_INT(emdpo_llama_hf_save(m, tmp("one"), NULL, &d), EMDPO_OK);
    emdpo_st_source *a = NULL, *b = NULL;
    CHECK_EQ_INT(emdpo_st_source_open_dir(tmp("one"), &a, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_st_source_open_dir(SHARDED, &b, &d), EMDPO_OK);
    if (a && b) {
        CHECK(emdpo_st_source_dtype(b) == EMDPO_ST_BF16 && strstr(emdpo_st_source_name(b), "index.json"));
        same_tensors(a, b, EMDPO_ST_BF16);
    }
    emdpo_st_source_close(a);
    emdpo_st_source_close(b);
    CHECK(file_has(tmp("one/config.json"), "\"torch_dtype\": \"bfloat16\""));
    CHECK(access(tmp("one/model.safetensors.index.json"), F_OK) != 0);
    CHECK_EQ_INT(emdpo_llama_hf_load(tmp("one"), 0, &back, &d), EMDPO_OK);
    CHECK(same_params(m, back) && back && back->file_dtype == EMDPO_DTYPE_BF16);
    emdpo_llama_free(back);
    back = NULL;

    /* A save over the sharded directory replaces the index and its shards. */
    copy_dir(SHARDED, tmp("over"));
    CHECK_EQ_INT(emdpo_llama_hf_save(m, tmp("over"), NULL, &d), EMDPO_OK);
    CHECK(access(tmp("over/model.safetensors.index.json"), F_OK) != 0);
    CHECK(access(tmp("over/model-00001-of-00003.safetensors"), F_OK) != 0);
    CHECK(access(tmp("over/model-00003-of-00003.safetensors"), F_OK) != 0);
    CHECK(same_file(tmp("over/model.safetensors"), tmp("one/model.safetensors")));
    CHECK_EQ_INT(emdpo_llama_hf_load(tmp("over"), 0, &back, &d), EMDPO_OK);
    CHECK(same_params(m, back));
    emdpo_llama_free(back);
    back = NULL;

    /* A missing shard is an I/O error naming it. */
    copy_dir(SHARDED, tmp("gap"));
    remove(tmp("gap/model-00002-of-00003.safetensors"));
    CHECK_EQ_INT(emdpo_llama_hf_load(tmp("gap"), 0, &back, &d), EMDPO_ERR_IO);
    CHECK(strstr(d.file, "model-00002-of-00003.safetensors") != NULL);
    rm_dir(tmp("gap"));
    rm_dir(tmp("over"));
    rm_dir(tmp("one"));
    emdpo_llama_free(m);
}

/* load -> save as dt -> load -> save: the same file and parameters, for
 * dir (a family's checkpoint in float32). */
static void test_roundtrip(const char *dir) {
    static const int dts[3] = {EMDPO_DTYPE_F32, EMDPO_DTYPE_F16, EMDPO_DTYPE_BF16};
    static const char *const torch_names[3] = {"float32", "float16", "bfloat16"};
    emdpo_llama *m = NULL;
    emdpo_diag d;
    if (access(dir, R_OK) != 0) {
        printf("skip: %s absent\n", dir);
        return;
    }
    CHECK_EQ_INT(emdpo_llama_hf_load(dir, 0, &m, &d), EMDPO_OK);
    if (!m) return;
    CHECK_EQ_INT(m->file_dtype, EMDPO_DTYPE_F32);
    for (int k = 0; k < 3; k++) {
        emdpo_llama *a = NULL, *b = NULL;
        emdpo_llama_save_opts o = {(emdpo_dtype)dts[k], NULL};
        CHECK_EQ_INT(emdpo_llama_hf_save(m, tmp("rt1"), &o, &d), EMDPO_OK);
        CHECK_EQ_INT(emdpo_llama_hf_load(tmp("rt1"), 0, &a, &d), EMDPO_OK);
        CHECK_MSG(a && a->file_dtype == dts[k], "dtype %s not kept", torch_names[k]);
        CHECK_EQ_INT(emdpo_llama_hf_save(a, tmp("rt2"), NULL, &d), EMDPO_OK);
        CHECK_EQ_INT(emdpo_llama_hf_load(tmp("rt2"), 0, &b, &d), EMDPO_OK);
        CHECK_MSG(same_params(a, b), "%s, %s: load -> save -> load changed the tensors", dir, torch_names[k]);
        CHECK_MSG(same_file(tmp("rt1/model.safetensors"), tmp("rt2/model.safetensors")), "%s, %s: files differ", dir,
                  torch_names[k]);
        char want[64];
        snprintf(want, sizeof want, "\"torch_dtype\": \"%s\"", torch_names[k]);
        CHECK(file_has(tmp("rt2/config.json"), want));
        if (dts[k] == EMDPO_DTYPE_F32) CHECK(same_params(m, a));
        /* f32 -> 16 bits rounds each value to its nearest. */
        for (size_t i = 0; a && dts[k] != EMDPO_DTYPE_F32 && i < a->num_params; i += 97) {
            float w = m->param_buf[i];
            float r = dts[k] == EMDPO_DTYPE_F16 ? emdpo_half_to_float(emdpo_float_to_half(w))
                                                : emdpo_bf16_to_float(emdpo_float_to_bf16(w));
            CHECK(a->param_buf[i] == r);
        }
        emdpo_llama_free(a);
        emdpo_llama_free(b);
    }
    emdpo_llama_save_opts o = {(emdpo_dtype)7, NULL};
    CHECK_EQ_INT(emdpo_llama_hf_save(m, tmp("rt1"), &o, &d), EMDPO_ERR_INVALID_ARG);
    rm_dir(tmp("rt1"));
    rm_dir(tmp("rt2"));
    emdpo_llama_free(m);
}

/* ---- hostile index files ----------------------------------------------------- */

/* Shards for index tests, from memory: "a" holds x and y, "b" holds z,
 * "c" holds x; others do not exist. */
static int mem_shard(void *ctx, const char *shard, emdpo_safetensors **out, emdpo_diag *diag) {
    (void)ctx;
    static const char *const heads[3] = {
        ("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"y\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,8]}}"),
        "{\"z\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
    };
    static unsigned char img[3][200];
    static size_t len[3];
    int k = strcmp(shard, "a") == 0 ? 0 : strcmp(shard, "b") == 0 ? 1 : strcmp(shard, "c") == 0 ? 2 : -1;
    if (k < 0) return emdpo_st_open("/nonexistent/shard", out, diag);
    size_t h = strlen(heads[k]);
    memset(img[k], 0, sizeof img[k]);
    for (int i = 0; i < 8; i++) img[k][i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(img[k] + 8, heads[k], h);
    len[k] = 8 + h + (k == 1 ? 4 : k == 0 ? 8 : 4);
    return emdpo_st_open_mem(img[k], len[k], shard, out, diag);
}

static void expect_index(const char *json, int rc, const char *msg) {
    emdpo_st_source *s = (emdpo_st_source *)&s;
    emdpo_diag d;
    int got = emdpo_st_source_index(json, strlen(json), "idx.json", mem_shard, NULL, &s, &d);
    CHECK_MSG(got == rc && (rc == EMDPO_OK || strstr(d.msg, msg)), "%s: rc %d (%s), expected %d \"%s\"", json, got,
              d.msg, rc, msg);
    if (rc == EMDPO_ERR_PARSE) CHECK_MSG(strcmp(d.file, "idx.json") == 0, "%s: file %s", json, d.file);
    CHECK((got == EMDPO_OK) == (s != NULL));
    emdpo_st_source_close(got == EMDPO_OK ? s : NULL);
}

static void test_hostile_index(void) {
    expect_index("{\"weight_map\":{\"x\":\"a\",\"y\":\"a\",\"z\":\"b\"},\"metadata\":{\"total_size\":12}}", EMDPO_OK, "");
    expect_index("[]", EMDPO_ERR_PARSE, "not an object");
    expect_index("{\"weight_map\":", EMDPO_ERR_PARSE, "not valid JSON");
    expect_index("{\"metadata\":{}}", EMDPO_ERR_PARSE, "\"weight_map\" is missing");
    expect_index("{\"weight_map\":[]}", EMDPO_ERR_PARSE, "\"weight_map\" is array");
    expect_index("{\"weight_map\":{}}", EMDPO_ERR_PARSE, "names no tensors");
    expect_index("{\"metadata\":3,\"weight_map\":{\"x\":\"a\"}}", EMDPO_ERR_PARSE, "\"metadata\" is number");
    expect_index("{\"weight_map\":{\"x\":1}}", EMDPO_ERR_PARSE, "tensor \"x\": its shard is number");
    static const char *const escapes[] = {"../a", "/etc/passwd", "sub/a", "..", ".", "", "a\\\\b", "a\\u0000b"};
    for (size_t i = 0; i < sizeof escapes / sizeof *escapes; i++) {
        char json[200];
        snprintf(json, sizeof json, "{\"weight_map\":{\"x\":\"a\",\"y\":\"%s\"}}", escapes[i]);
        expect_index(json, EMDPO_ERR_PARSE, "tensor \"y\": shard");
        CHECK(strstr(json, "not a plain") == NULL);
    }
    char longname[400] = "{\"weight_map\":{\"x\":\"";
    memset(longname + strlen(longname), 'a', 300);
    strcat(longname, "\"}}");
    expect_index(longname, EMDPO_ERR_PARSE, "is not a plain file name");
    expect_index("{\"weight_map\":{\"x\\u0000\":\"a\"}}", EMDPO_ERR_PARSE, "NUL");
    expect_index("{\"weight_map\":{\"x\":\"a\",\"x\":\"b\"}}", EMDPO_ERR_PARSE, "duplicate key \"x\"");
    expect_index("{\"weight_map\":{\"x\":\"a\",\"y\":\"a\",\"z\":\"a\"}}", EMDPO_ERR_PARSE,
                 "tensor \"z\" is mapped to shard \"a\", which does not hold it");
    expect_index("{\"weight_map\":{\"x\":\"a\",\"z\":\"b\"}}", EMDPO_ERR_PARSE,
                 "shard \"a\" holds tensor \"y\", which the weight_map does not name");
    expect_index("{\"weight_map\":{\"x\":\"c\",\"y\":\"a\"}}", EMDPO_ERR_PARSE,
                 "tensor \"x\" is in two shards, \"c\" (where the weight_map puts it) and \"a\"");
    emdpo_st_source *s = NULL;
    emdpo_diag d;
    const char *ok = "{\"weight_map\":{\"x\":\"a\",\"y\":\"a\",\"z\":\"b\"}}";
    CHECK_EQ_INT(emdpo_st_source_index(ok, strlen(ok), "idx.json", mem_shard, NULL, &s, &d), EMDPO_OK);
    if (s) {
        CHECK_EQ_INT(emdpo_st_source_count(s), 3);
        CHECK(strcmp(emdpo_st_source_tensor_at(s, 2)->name, "z") == 0 && !emdpo_st_source_tensor_at(s, 3));
        CHECK(emdpo_st_source_dtype(s) == EMDPO_ST_BF16);
        float v[2];
        int64_t two = 2;
        CHECK_EQ_INT(emdpo_st_source_read_f32(s, "z", 1, &two, v, &d), EMDPO_OK);
        CHECK_EQ_INT(emdpo_st_source_read_f32(s, "q", 1, &two, v, &d), EMDPO_ERR_PARSE);
        CHECK(strcmp(d.file, "idx.json") == 0 && strstr(d.msg, "\"q\" (shape [2]) is missing"));
        emdpo_st_source_close(s);
    }
    /* An index on disk beyond any real one's size is refused unread. */
    CHECK_EQ_INT(mkdir(tmp("big"), 0777), 0);
    FILE *f = fopen(tmp("big/model.safetensors.index.json"), "wb");
    CHECK(f && fseek(f, (long)EMDPO_ST_MAX_HEADER + 1, SEEK_SET) == 0 && fputc('}', f) == '}');
    if (f) fclose(f);
    CHECK_EQ_INT(emdpo_st_source_open_dir(tmp("big"), &s, &d), EMDPO_ERR_PARSE);
    CHECK(strstr(d.msg, "limit") != NULL);
    /* A stale index is removed; shards it names outside the directory are not touched. */
    const char *stale = "{\"weight_map\":{\"x\":\"../keep\",\"y\":\"s1\"}}";
    spit(tmp("big/model.safetensors.index.json"), stale, strlen(stale));
    spit(tmp("keep"), "k", 1);
    spit(tmp("big/s1"), "s", 1);
    CHECK_EQ_INT(emdpo_st_remove_index(tmp("big"), &d), EMDPO_OK);
    CHECK(access(tmp("big/model.safetensors.index.json"), F_OK) != 0 && access(tmp("keep"), F_OK) == 0);
    CHECK(access(tmp("big/s1"), F_OK) == 0); /* the index was invalid: its shards stay */
    stale = "{\"weight_map\":{\"x\":\"s1.safetensors\",\"y\":\"model.safetensors\",\"z\":\"s1\"}}";
    spit(tmp("big/model.safetensors.index.json"), stale, strlen(stale));
    spit(tmp("big/model.safetensors"), "m", 1);
    spit(tmp("big/s1.safetensors"), "s", 1);
    CHECK_EQ_INT(emdpo_st_remove_index(tmp("big"), &d), EMDPO_OK);
    CHECK(access(tmp("big/s1.safetensors"), F_OK) != 0 && access(tmp("big/model.safetensors"), F_OK) == 0);
    CHECK(access(tmp("big/s1"), F_OK) == 0); /* not a safetensors file: not a shard to remove */
    remove(tmp("big/s1"));
    CHECK_EQ_INT(emdpo_st_remove_index(tmp("big"), &d), EMDPO_OK);
    remove(tmp("keep"));
    rm_dir(tmp("big"));
}

/* ---- files beside the weights ------------------------------------------------ */

static void byte_tokenizer(const char *path) {
    FILE *f = fopen(path, "wb");
    int32_t maxlen = 16;
    fwrite(&maxlen, 4, 1, f);
    for (int i = 0; i < 259; i++) {
        char piece[16];
        int n = i == 0 ? snprintf(piece, sizeof piece, "<unk>")
                : i == 1 ? snprintf(piece, sizeof piece, "\n<s>\n")
                : i == 2 ? snprintf(piece, sizeof piece, "\n</s>\n")
                         : snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        float score = 0;
        int32_t len = n;
        fwrite(&score, 4, 1, f);
        fwrite(&len, 4, 1, f);
        fwrite(piece, 1, (size_t)n, f);
    }
    fclose(f);
}

static void test_tokenizer_files(void) {
    emdpo_llama *m = NULL;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_llama_hf_load(SHARDED, 0, &m, &d), EMDPO_OK);
    if (!m) return;
    emdpo_tokenizer *t = NULL;
    byte_tokenizer(tmp("tok.bin"));
    CHECK_EQ_INT(emdpo_tokenizer_load(tmp("tok.bin"), 259, &t, &d), EMDPO_OK);
    emdpo_llama_save_opts o = {EMDPO_DTYPE_AUTO, t};
    CHECK_EQ_INT(emdpo_llama_hf_save(m, tmp("bin"), &o, &d), EMDPO_OK);
    CHECK(same_file(tmp("tok.bin"), tmp("bin/tokenizer.bin")));
    CHECK(file_has(tmp("bin/config.json"), "\"bos_token_id\": 1,\n  \"eos_token_id\": 2,"));
    /* llama2.c's generation also stops at BOS: so does transformers' with this file. */
    CHECK(file_has(tmp("bin/generation_config.json"), "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": [2, 1]\n}\n"));
    emdpo_tokenizer_free(t);
    rm_dir(tmp("bin"));

    if (access(TOK_DIR "/tokenizer.json", R_OK) != 0) {
        printf("skip: %s absent\n", TOK_DIR);
    } else {
        t = NULL;
        CHECK_EQ_INT(emdpo_tokenizer_load(TOK_DIR, 0, &t, &d), EMDPO_OK);
        o.tokenizer = t;
        o.dtype = EMDPO_DTYPE_F16;
        CHECK_EQ_INT(emdpo_llama_hf_save(m, tmp("hf"), &o, &d), EMDPO_OK);
        CHECK(same_file(TOK_DIR "/tokenizer.json", tmp("hf/tokenizer.json")));
        CHECK(same_file(TOK_DIR "/tokenizer_config.json", tmp("hf/tokenizer_config.json")));
        CHECK(access(tmp("hf/special_tokens_map.json"), F_OK) != 0);
        CHECK(file_has(tmp("hf/config.json"), "\"torch_dtype\": \"float16\""));
        emdpo_tokenizer *back = NULL;
        CHECK_EQ_INT(emdpo_tokenizer_load(tmp("hf"), 0, &back, &d), EMDPO_OK);
        if (t && back) {
            CHECK_EQ_INT(emdpo_tokenizer_eos(back), emdpo_tokenizer_eos(t));
            CHECK_EQ_INT(emdpo_tokenizer_bos(back), emdpo_tokenizer_bos(t));
            CHECK_EQ_INT(emdpo_tokenizer_vocab_size(back), emdpo_tokenizer_vocab_size(t));
            const int *a, *b;
            size_t na = emdpo_tokenizer_stop_ids(t, &a), nb = emdpo_tokenizer_stop_ids(back, &b);
            CHECK(na == nb && memcmp(a, b, na * sizeof *a) == 0);
        }
        emdpo_tokenizer_free(back);
        /* A tokenizer.json given as a file: it and the files beside it. */
        emdpo_tokenizer_free(t);
        t = NULL;
        CHECK_EQ_INT(emdpo_tokenizer_load(TOK_DIR "/tokenizer.json", 0, &t, &d), EMDPO_OK);
        o.tokenizer = t;
        CHECK_EQ_INT(emdpo_llama_hf_save(m, tmp("hf2"), &o, &d), EMDPO_OK);
        CHECK(same_file(TOK_DIR "/tokenizer.json", tmp("hf2/tokenizer.json")));
        CHECK(same_file(TOK_DIR "/tokenizer_config.json", tmp("hf2/tokenizer_config.json")));
        emdpo_tokenizer_free(t);
        rm_dir(tmp("hf"));
        rm_dir(tmp("hf2"));
    }
    if (access(GGUF, R_OK) == 0) {
        t = NULL;
        CHECK_EQ_INT(emdpo_tokenizer_load(GGUF, 0, &t, &d), EMDPO_OK);
        o.tokenizer = t;
        CHECK_EQ_INT(emdpo_llama_hf_save(m, tmp("gg"), &o, &d), EMDPO_OK);
        CHECK(access(tmp("gg/tokenizer.json"), F_OK) != 0 && access(tmp("gg/tokenizer.bin"), F_OK) != 0);
        CHECK(file_has(tmp("gg/generation_config.json"), "\"eos_token_id\""));
        emdpo_tokenizer_free(t);
        rm_dir(tmp("gg"));
    }
    remove(tmp("tok.bin"));
    emdpo_llama_free(m);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/emdpo_ckpt_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_hostile_index();
    if (access(SHARDED "/config.json", R_OK) != 0) {
        printf("skip: %s absent (run from the repository root)\n", SHARDED);
    } else {
        test_conversions();
        test_sharded();
        static const char *const dirs[] = {TINY,
                                           "tests/fixtures/hf_families/llama3",
                                           "tests/fixtures/hf_families/llama_bias",
                                           "tests/fixtures/hf_families/mistral",
                                           "tests/fixtures/hf_families/qwen2",
                                           "tests/fixtures/hf_families/qwen3"};
        for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) test_roundtrip(dirs[i]);
        test_tokenizer_files();
    }
    rmdir(g_tmp);
    return check_report("test_checkpoint");
}
