/* safetensors and Hugging Face Llama checkpoints: writer/reader round
 * trips, F16/BF16/F64 conversion, hand-made hostile files (each rejected
 * with a message, from memory and from disk), the q/k RoPE permutation,
 * config.json, the PyTorch-made fixture in tests/fixtures (whose q/k rows
 * were permuted by transformers' own conversion code), save -> load
 * identity, config/tensor disagreements, and clean failure at every
 * allocation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "failalloc.h"
#include "lm/engine/llama.h"
#include "lm/io/llama_hf.h"
#include "lm/io/safetensors.h"

#define FIXTURE_DIR "tests/fixtures/hf_tiny"
#define FIXTURE_REF "tests/fixtures/hf_tiny_ref.safetensors"

static char g_tmp[64];

static const char *tmp_path(const char *name) {
    static char buf[160];
    snprintf(buf, sizeof buf, "%s/%s", g_tmp, name);
    return buf;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

/* A file image: 8-byte length (hlen, or strlen(header) when hlen is
 * UINT64_MAX), the header text, then data_len bytes of data. */
static unsigned char *make_file(const char *header, uint64_t hlen, size_t data_len, size_t *len) {
    size_t n = strlen(header);
    if (hlen == UINT64_MAX) hlen = n;
    *len = 8 + n + data_len;
    unsigned char *p = calloc(1, *len);
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(p + 8, header, n);
    for (size_t i = 0; i < data_len; i++) p[8 + n + i] = (unsigned char)(i * 7);
    return p;
}

/* Must be rejected with rc, from memory and from disk, with msg_part in
 * the message. */
static void expect_reject(const char *what, const char *header, uint64_t hlen, size_t data_len, int rc,
                          const char *msg_part) {
    size_t len;
    unsigned char *p = make_file(header, hlen, data_len, &len);
    emdpo_safetensors *st = (emdpo_safetensors *)&st;
    emdpo_diag d;
    int got = emdpo_st_open_mem(p, len, "hostile", &st, &d);
    CHECK_MSG(got == rc, "%s: rc %d, expected %d (%s)", what, got, rc, d.msg);
    CHECK_MSG(st == NULL, "%s: handle not cleared", what);
    CHECK_MSG(strstr(d.msg, msg_part) != NULL, "%s: message \"%s\" lacks \"%s\"", what, d.msg, msg_part);
    CHECK(strcmp(d.file, "hostile") == 0 && d.line == 0);
    if (got == EMDPO_OK) emdpo_st_close(st);
    const char *path = tmp_path("hostile.safetensors");
    write_bytes(path, p, len);
    st = NULL;
    got = emdpo_st_open(path, &st, &d);
    CHECK_MSG(got == rc && strstr(d.msg, msg_part), "%s from disk: rc %d (%s)", what, got, d.msg);
    if (got == EMDPO_OK) emdpo_st_close(st);
    free(p);
}

static void test_hostile(void) {
    size_t len;
    unsigned char *p = make_file("", 0, 0, &len);
    emdpo_safetensors *st = NULL;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_st_open_mem(p, 5, "short", &st, &d), EMDPO_ERR_PARSE);
    CHECK(strstr(d.msg, "shorter than the 8-byte") != NULL);
    free(p);

    const char *t1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_reject("header length beyond file", t1, 1000, 8, EMDPO_ERR_PARSE, "runs past the end");
    expect_reject("header length 2^63", t1, (uint64_t)1 << 63, 8, EMDPO_ERR_PARSE, "exceeds the limit");
    expect_reject("header length UINT64_MAX-1", t1, UINT64_MAX - 1, 8, EMDPO_ERR_PARSE, "exceeds the limit");
    expect_reject("empty header", "", UINT64_MAX, 0, EMDPO_ERR_PARSE, "not valid JSON");
    expect_reject("header not JSON", "{\"a\": nope}", UINT64_MAX, 0, EMDPO_ERR_PARSE, "not valid JSON");
    expect_reject("header cut mid-JSON", t1, 20, 0, EMDPO_ERR_PARSE, "not valid JSON");
    expect_reject("header an array", "[1, 2]", UINT64_MAX, 0, EMDPO_ERR_PARSE, "not an object");
    expect_reject("invalid UTF-8 in header", "{\"\xff\":1}", UINT64_MAX, 0, EMDPO_ERR_PARSE, "not valid JSON");
    expect_reject("duplicate names",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  UINT64_MAX, 8, EMDPO_ERR_PARSE, "not valid JSON");
    expect_reject("offsets outside the data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                  UINT64_MAX, 8, EMDPO_ERR_PARSE, "outside the 8-byte data buffer");
    expect_reject("offsets far outside",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9223372036854775806,9223372036854775807]}}",
                  UINT64_MAX, 8, EMDPO_ERR_PARSE, "outside");
    expect_reject("begin after end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", UINT64_MAX,
                  8, EMDPO_ERR_PARSE, "outside");
    expect_reject("overlapping tensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  UINT64_MAX, 12, EMDPO_ERR_PARSE, "overlap");
    expect_reject("identical ranges",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                  UINT64_MAX, 8, EMDPO_ERR_PARSE, "overlap");
    expect_reject("empty tensor inside another",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                  UINT64_MAX, 8, EMDPO_ERR_PARSE, "overlap");
    expect_reject("gap between tensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                  UINT64_MAX, 12, EMDPO_ERR_PARSE, "bytes 4..8 of the data buffer belong to no tensor");
    expect_reject("data not covered at the end", t1, UINT64_MAX, 12, EMDPO_ERR_PARSE,
                  "bytes 8..12 at the end");
    expect_reject("data without tensors", "{}", UINT64_MAX, 4, EMDPO_ERR_PARSE, "belong to no tensor");
    expect_reject("shape/offset mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
                  UINT64_MAX, 8, EMDPO_ERR_PARSE, "span 8 bytes but its F32 shape needs 12");
    expect_reject("dtype size mismatch", "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                  UINT64_MAX, 8, EMDPO_ERR_PARSE, "needs 4");
    expect_reject("unknown dtype", "{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}",
                  UINT64_MAX, 16, EMDPO_ERR_PARSE, "unknown dtype \"F128\"");
    expect_reject("lower-case dtype", "{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                  UINT64_MAX, 4, EMDPO_ERR_PARSE, "unknown dtype");
    expect_reject("dtype with NUL", "{\"a\":{\"dtype\":\"F32\\u0000\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                  UINT64_MAX, 4, EMDPO_ERR_PARSE, "unknown dtype");
    expect_reject("dtype not a string", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", UINT64_MAX,
                  4, EMDPO_ERR_PARSE, "not a string");
    expect_reject("shape product overflows",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,0]}}",
                  UINT64_MAX, 0, EMDPO_ERR_PARSE, "element count of its shape overflows");
    expect_reject("byte size overflows",
                  "{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}",
                  UINT64_MAX, 0, EMDPO_ERR_PARSE, "byte size overflows");
    expect_reject("product wraps to the data size",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}",
                  UINT64_MAX, 0, EMDPO_ERR_PARSE, "overflows");
    expect_reject("negative shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", UINT64_MAX,
                  4, EMDPO_ERR_PARSE, "shape entry 0 is not a non-negative integer");
    expect_reject("fractional shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}",
                  UINT64_MAX, 4, EMDPO_ERR_PARSE, "shape entry 0");
    expect_reject("huge shape entry", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e30],\"data_offsets\":[0,4]}}",
                  UINT64_MAX, 4, EMDPO_ERR_PARSE, "shape entry 0");
    expect_reject("shape not an array", "{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}",
                  UINT64_MAX, 16, EMDPO_ERR_PARSE, "not an array");
    expect_reject("rank 9", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
                  UINT64_MAX, 1, EMDPO_ERR_UNSUPPORTED, "rank 9");
    expect_reject("three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}",
                  UINT64_MAX, 4, EMDPO_ERR_PARSE, "[begin, end]");
    expect_reject("negative offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}",
                  UINT64_MAX, 4, EMDPO_ERR_PARSE, "non-negative");
    expect_reject("missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", UINT64_MAX, 4,
                  EMDPO_ERR_PARSE, "\"data_offsets\" is missing");
    expect_reject("unknown key", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}",
                  UINT64_MAX, 4, EMDPO_ERR_PARSE, "unknown key \"x\"");
    expect_reject("entry not an object", "{\"a\":[1]}", UINT64_MAX, 0, EMDPO_ERR_PARSE, "not an object");
    expect_reject("metadata value not a string", "{\"__metadata__\":{\"k\":1}}", UINT64_MAX, 0, EMDPO_ERR_PARSE,
                  "\"__metadata__\" entry \"k\"");
    expect_reject("metadata not an object", "{\"__metadata__\":[]}", UINT64_MAX, 0, EMDPO_ERR_PARSE,
                  "\"__metadata__\" is array");
    expect_reject("name with NUL", "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}",
                  UINT64_MAX, 1, EMDPO_ERR_PARSE, "NUL");

    /* Valid edge cases: no tensors, empty tensors, scalars, trailing spaces. */
    static const char *const ok[] = {
        "{}",
        "{\"__metadata__\":{}}    ",
        "{\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]}}",
        ("{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
         "\"z\":{\"dtype\":\"BF16\",\"shape\":[4294967296,0,4294967296],\"data_offsets\":[8,8]}}"),
    };
    static const size_t ok_data[] = {0, 0, 0, 8};
    for (int i = 0; i < 4; i++) {
        p = make_file(ok[i], UINT64_MAX, ok_data[i], &len);
        int rc = emdpo_st_open_mem(p, len, "ok", &st, &d);
        CHECK_MSG(rc == EMDPO_OK, "valid header %d rejected: %s", i, d.msg);
        if (!rc && i == 3) {
            float s = 0, z = 1;
            int64_t zshape[3] = {4294967296, 0, 4294967296};
            CHECK_EQ_INT(emdpo_st_read_f32(st, "s", 0, NULL, &s, &d), EMDPO_OK);
            CHECK_EQ_INT(emdpo_st_read_f32(st, "z", 3, zshape, &z, &d), EMDPO_OK);
            CHECK(z == 1);
        }
        emdpo_st_close(st);
        free(p);
    }
}

/* F16, BF16 and F64 become float32; integer tensors cannot be read as float. */
static void test_dtypes(void) {
    const char *h = "{\"h\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[0,12]},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[12,16]},"
                    "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[16,24]},"
                    "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[24,28]}}";
    size_t len;
    unsigned char *p = make_file(h, UINT64_MAX, 28, &len);
    unsigned char *data = p + 8 + strlen(h);
    static const uint16_t halves[6] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x3555};
    for (int i = 0; i < 6; i++) {
        data[2 * i] = (unsigned char)halves[i];
        data[2 * i + 1] = (unsigned char)(halves[i] >> 8);
    }
    static const uint16_t bf[2] = {0x3F80, 0xC040};
    for (int i = 0; i < 2; i++) {
        data[12 + 2 * i] = (unsigned char)bf[i];
        data[13 + 2 * i] = (unsigned char)(bf[i] >> 8);
    }
    double tenth = 0.1;
    uint64_t u;
    memcpy(&u, &tenth, 8);
    for (int i = 0; i < 8; i++) data[16 + i] = (unsigned char)(u >> (8 * i));
    emdpo_safetensors *st = NULL;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_st_open_mem(p, len, "dtypes", &st, &d), EMDPO_OK);
    if (st) {
        float f[6];
        int64_t s6 = 6, s2 = 2, s1 = 1;
        CHECK_EQ_INT(emdpo_st_read_f32(st, "h", 1, &s6, f, &d), EMDPO_OK);
        CHECK(f[0] == 1.0f && f[1] == -2.0f && f[2] == 65504.0f && f[3] == 0x1p-24f && f[4] > 3e38f);
        CHECK_CLOSE(f[5], 1.0 / 3.0, 1e-3);
        CHECK_EQ_INT(emdpo_st_read_f32(st, "b", 1, &s2, f, &d), EMDPO_OK);
        CHECK(f[0] == 1.0f && f[1] == -3.0f);
        CHECK_EQ_INT(emdpo_st_read_f32(st, "d", 1, &s1, f, &d), EMDPO_OK);
        CHECK(f[0] == 0.1f);
        CHECK_EQ_INT(emdpo_st_read_f32(st, "i", 1, &s1, f, &d), EMDPO_ERR_UNSUPPORTED);
        CHECK(strstr(d.msg, "I32") != NULL);
        CHECK(emdpo_st_find(st, "i")->dtype == EMDPO_ST_I32);
        CHECK(strcmp(emdpo_st_dtype_name(EMDPO_ST_BF16), "BF16") == 0);
        emdpo_st_close(st);
    }
    free(p);
}

static void test_roundtrip(void) {
    float a[6] = {1, -2, 3.5f, 1e-30f, -0.0f, 7}, b[4] = {0.25f, 0.5f, 0.75f, 1}, s = 42;
    emdpo_st_out t[4] = {
        {"layer.a", 2, {2, 3}, a},
        {"b \"quoted\" \xC3\xA9", 1, {4}, b},
        {"scalar", 0, {0}, &s},
        {"empty", 2, {0, 5}, NULL},
    };
    const char *meta[] = {"format", "pt", "note", "tab\there"};
    const char *path = tmp_path("rt.safetensors");
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_st_write(path, t, 4, EMDPO_ST_F32, meta, 2, &d), EMDPO_OK);
    FILE *f = fopen(path, "rb");
    unsigned char head[8] = {0};
    CHECK(f && fread(head, 1, 8, f) == 8);
    if (f) fclose(f);
    CHECK_EQ_INT(head[0] % 8, 0);

    emdpo_safetensors *st = NULL;
    CHECK_EQ_INT(emdpo_st_open(path, &st, &d), EMDPO_OK);
    if (!st) return;
    CHECK_EQ_INT(emdpo_st_count(st), 4);
    CHECK(strcmp(emdpo_st_tensor_at(st, 1)->name, t[1].name) == 0);
    CHECK(emdpo_st_tensor_at(st, 4) == NULL);
    CHECK(strcmp(emdpo_st_metadata(st, "note"), "tab\there") == 0);
    CHECK(emdpo_st_metadata(st, "absent") == NULL);
    CHECK(strcmp(emdpo_st_name(st), path) == 0);
    float got[6];
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s4 = 4;
    CHECK_EQ_INT(emdpo_st_read_f32(st, "layer.a", 2, s23, got, &d), EMDPO_OK);
    CHECK(memcmp(got, a, sizeof a) == 0);
    CHECK_EQ_INT(emdpo_st_read_f32(st, t[1].name, 1, &s4, got, &d), EMDPO_OK);
    CHECK(memcmp(got, b, sizeof b) == 0);
    CHECK_EQ_INT(emdpo_st_read_f32(st, "scalar", 0, NULL, got, &d), EMDPO_OK);
    CHECK(got[0] == 42);
    CHECK_EQ_INT(emdpo_st_read_f32(st, "layer.a", 2, s32, got, &d), EMDPO_ERR_PARSE);
    CHECK_MSG(strstr(d.msg, "\"layer.a\" has shape [2, 3], expected [3, 2]") != NULL, "%s", d.msg);
    CHECK(strcmp(d.file, path) == 0);
    CHECK_EQ_INT(emdpo_st_read_f32(st, "nope", 1, &s4, got, &d), EMDPO_ERR_PARSE);
    CHECK(strstr(d.msg, "\"nope\" (shape [4]) is missing") != NULL);
    const emdpo_st_tensor *e = emdpo_st_find(st, "empty");
    CHECK(e && e->rank == 2 && e->numel == 0 && e->begin == e->end);
    emdpo_st_close(st);

    /* A file that shrinks after opening gives an I/O error, not a bad read. */
    CHECK_EQ_INT(emdpo_st_open(path, &st, &d), EMDPO_OK);
    if (st) {
        CHECK_EQ_INT(truncate(path, 40), 0);
        CHECK_EQ_INT(emdpo_st_read_f32(st, "layer.a", 2, s23, got, &d), EMDPO_ERR_IO);
        emdpo_st_close(st);
    }

    emdpo_st_out dup[2] = {{"x", 1, {1}, a}, {"x", 1, {1}, b}};
    CHECK_EQ_INT(emdpo_st_write(path, dup, 2, EMDPO_ST_F32, NULL, 0, &d), EMDPO_ERR_INVALID_ARG);
    CHECK(strstr(d.msg, "\"x\" appears twice") != NULL);
    const char *dup_meta[] = {"k", "1", "k", "2"};
    CHECK_EQ_INT(emdpo_st_write(path, t, 1, EMDPO_ST_F32, dup_meta, 2, &d), EMDPO_ERR_INVALID_ARG);
    emdpo_st_out bad[1] = {{"\xC3(", 1, {1}, a}};
    CHECK_EQ_INT(emdpo_st_write(path, bad, 1, EMDPO_ST_F32, NULL, 0, &d), EMDPO_ERR_INVALID_ARG);
    bad[0] = (emdpo_st_out){"__metadata__", 1, {1}, a};
    CHECK_EQ_INT(emdpo_st_write(path, bad, 1, EMDPO_ST_F32, NULL, 0, &d), EMDPO_ERR_INVALID_ARG);
    bad[0] = (emdpo_st_out){"neg", 1, {-1}, a};
    CHECK_EQ_INT(emdpo_st_write(path, bad, 1, EMDPO_ST_F32, NULL, 0, &d), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_st_write("/nonexistent/dir/x.safetensors", t, 1, EMDPO_ST_F32, NULL, 0, &d), EMDPO_ERR_IO);
    CHECK_EQ_INT(emdpo_st_open("/nonexistent/x.safetensors", &st, &d), EMDPO_ERR_IO);
    CHECK_EQ_INT(emdpo_st_open(g_tmp, &st, &d), EMDPO_ERR_IO);
    remove(path);
}

/* ---- Hugging Face Llama ------------------------------------------------- */

static void remove_model_dir(const char *name) {
    static const char *const files[] = {"model.safetensors", "config.json", "generation_config.json"};
    char path[300];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp_path(name), files[i]);
        remove(path);
    }
    rmdir(tmp_path(name));
}


static void test_permutation(void) {
    /* One head of size 4 with one column: ours [r0 r1 r2 r3] (pairs (r0,r1),
     * (r2,r3)) is HF's [r0 r2 r1 r3] (halves (r0,r2), (r1,r3)). */
    float src[4] = {0, 1, 2, 3}, dst[4], back[4];
    emdpo_hf_permute_rows(src, dst, 1, 4, 1, 1);
    CHECK(dst[0] == 0 && dst[1] == 2 && dst[2] == 1 && dst[3] == 3);
    /* Head size 8: HF row t*4 + i holds our row 2i + t. */
    float s8[16], d8[16];
    for (int i = 0; i < 16; i++) s8[i] = (float)i;
    emdpo_hf_permute_rows(s8, d8, 2, 8, 1, 1);
    static const float want[16] = {0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15};
    CHECK(memcmp(d8, want, sizeof want) == 0);
    /* Both compositions are the identity, on a wide matrix. */
    enum { NH = 3, HS = 6, COLS = 5, N = NH * HS * COLS };
    float m[N], p[N], q[N];
    for (int i = 0; i < N; i++) m[i] = (float)(i * 37 % 101);
    emdpo_hf_permute_rows(m, p, NH, HS, COLS, 1);
    emdpo_hf_permute_rows(p, q, NH, HS, COLS, 0);
    CHECK(memcmp(m, q, sizeof m) == 0);
    emdpo_hf_permute_rows(m, p, NH, HS, COLS, 0);
    emdpo_hf_permute_rows(p, q, NH, HS, COLS, 1);
    CHECK(memcmp(m, q, sizeof m) == 0);
    emdpo_hf_permute_rows(src, dst, 1, 4, 1, 0);
    emdpo_hf_permute_rows(dst, back, 1, 4, 1, 1);
    CHECK(memcmp(src, back, sizeof src) == 0);
}

static int parse_config(const char *json, emdpo_llama_config *c, emdpo_diag *d) {
    return emdpo_hf_config_parse(json, strlen(json), "config.json", c, d);
}

static void expect_config_error(const char *json, int rc, const char *msg_part) {
    emdpo_llama_config c;
    emdpo_diag d;
    int got = parse_config(json, &c, &d);
    CHECK_MSG(got == rc && strstr(d.msg, msg_part), "config %s: rc %d, message \"%s\"", json, got, d.msg);
}

static void test_config(void) {
    emdpo_llama_config c;
    emdpo_diag d;
    CHECK_EQ_INT(parse_config("{\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":5,"
                              "\"num_attention_heads\":8,\"vocab_size\":512}",
                              &c, &d),
                 EMDPO_OK);
    CHECK(c.dim == 64 && c.hidden_dim == 172 && c.n_layers == 5 && c.n_heads == 8 && c.n_kv_heads == 8 &&
          c.vocab_size == 512 && c.max_seq_len == 2048 && c.tied == 0 && c.norm_eps == 1e-6f &&
          c.rope_theta == 10000.0f);
    CHECK_EQ_INT(parse_config("{\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":5,"
                              "\"num_attention_heads\":8,\"num_key_value_heads\":4,\"vocab_size\":512,"
                              "\"max_position_embeddings\":512,\"rms_norm_eps\":1e-05,\"rope_theta\":500000.0,"
                              "\"tie_word_embeddings\":true,\"model_type\":\"llama\",\"hidden_act\":\"silu\","
                              "\"rope_scaling\":null,\"attention_bias\":false,\"head_dim\":8,"
                              "\"torch_dtype\":\"bfloat16\",\"architectures\":[\"LlamaForCausalLM\"]}",
                              &c, &d),
                 EMDPO_OK);
    CHECK(c.n_kv_heads == 4 && c.max_seq_len == 512 && c.tied == 1 && c.norm_eps == 1e-5f &&
          c.rope_theta == 500000.0f && c.rope_type == EMDPO_ROPE_DEFAULT);
    /* Llama 3.2's rope_scaling, and the older "type" key for linear. */
    CHECK_EQ_INT(parse_config("{\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":5,"
                              "\"num_attention_heads\":8,\"vocab_size\":512,\"rope_scaling\":{\"factor\":32.0,"
                              "\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
                              "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"}}",
                              &c, &d),
                 EMDPO_OK);
    CHECK(c.rope_type == EMDPO_ROPE_LLAMA3 && c.rope_factor == 32.0f && c.rope_low_freq_factor == 1.0f &&
          c.rope_high_freq_factor == 4.0f && c.rope_original_max_pos == 8192);
    CHECK_EQ_INT(parse_config("{\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":5,"
                              "\"num_attention_heads\":8,\"vocab_size\":512,\"rope_scaling\":{\"type\":\"linear\","
                              "\"factor\":2}}",
                              &c, &d),
                 EMDPO_OK);
    CHECK(c.rope_type == EMDPO_ROPE_LINEAR && c.rope_factor == 2.0f);

    /* The families: what each adds, and its defaults. */
    static const char *const fam = "{\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":5,"
                                   "\"num_attention_heads\":8,\"num_key_value_heads\":2,\"vocab_size\":512,"
                                   "\"model_type\":\"%s\"%s}";
    char fb[512];
    snprintf(fb, sizeof fb, fam, "qwen2", ",\"tie_word_embeddings\":true,\"sliding_window\":16");
    CHECK_EQ_INT(parse_config(fb, &c, &d), EMDPO_OK);
    CHECK(c.arch == EMDPO_ARCH_QWEN2 && c.qkv_bias && !c.o_bias && !c.qk_norm && c.head_dim == 8 && c.tied &&
          c.sliding_window == 0 && c.max_seq_len == 32768);
    snprintf(fb, sizeof fb, fam, "qwen3", "");
    CHECK_EQ_INT(parse_config(fb, &c, &d), EMDPO_OK);
    CHECK(c.arch == EMDPO_ARCH_QWEN3 && !c.qkv_bias && !c.o_bias && c.qk_norm && c.head_dim == 128);
    snprintf(fb, sizeof fb, fam, "qwen3", ",\"head_dim\":32,\"attention_bias\":true");
    CHECK_EQ_INT(parse_config(fb, &c, &d), EMDPO_OK);
    CHECK(c.qkv_bias && c.o_bias && c.qk_norm && c.head_dim == 32);
    snprintf(fb, sizeof fb, fam, "mistral", ",\"sliding_window\":100,\"head_dim\":4");
    CHECK_EQ_INT(parse_config(fb, &c, &d), EMDPO_OK);
    CHECK(c.arch == EMDPO_ARCH_MISTRAL && c.sliding_window == 100 && c.head_dim == 4 && !c.qkv_bias &&
          c.max_seq_len == 131072 && emdpo_llama_context(&c) == 100);
    snprintf(fb, sizeof fb, fam, "llama", ",\"attention_bias\":true,\"sliding_window\":16");
    CHECK_EQ_INT(parse_config(fb, &c, &d), EMDPO_OK);
    CHECK(c.arch == EMDPO_ARCH_LLAMA && c.qkv_bias && c.o_bias && !c.sliding_window);
    /* each family's config round-trips */
    static const char *const extras[] = {
        "\"model_type\":\"qwen2\",\"use_sliding_window\":true,\"sliding_window\":16,\"max_window_layers\":0",
        "\"model_type\":\"qwen3\",\"head_dim\":32,\"attention_bias\":true",
        "\"model_type\":\"mistral\",\"sliding_window\":100,\"head_dim\":4",
        "\"model_type\":\"llama\",\"attention_bias\":true,\"head_dim\":10"};
    for (size_t i = 0; i < sizeof extras / sizeof *extras; i++) {
        emdpo_llama_config back;
        snprintf(fb, sizeof fb, "{\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":5,"
                 "\"num_attention_heads\":8,\"num_key_value_heads\":2,\"vocab_size\":512,%s}", extras[i]);
        CHECK_EQ_INT(parse_config(fb, &c, &d), EMDPO_OK);
        const char *cp = tmp_path("family.json");
        CHECK_EQ_INT(emdpo_hf_config_write(cp, &c, EMDPO_ST_F32, -1, -1, &d), EMDPO_OK);
        CHECK_EQ_INT(emdpo_hf_config_read(cp, &back, &d), EMDPO_OK);
        CHECK_MSG(memcmp(&c, &back, sizeof c) == 0, "config %zu does not round-trip", i);
        remove(cp);
    }
    /* a combination no family's config can say */
    c.arch = EMDPO_ARCH_MISTRAL;
    CHECK_EQ_INT(emdpo_hf_config_write(tmp_path("family.json"), &c, EMDPO_ST_F32, -1, -1, &d), EMDPO_ERR_UNSUPPORTED);

    const char *base = "\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":5,"
                       "\"num_attention_heads\":8,\"vocab_size\":512";
    char buf[512];
    struct {
        const char *extra;
        int rc;
        const char *msg;
    } cases[] = {
        {",\"num_key_value_heads\":3", EMDPO_ERR_PARSE, "not divisible by num_key_value_heads 3"},
        {",\"num_key_value_heads\":0", EMDPO_ERR_PARSE, "\"num_key_value_heads\" must be a positive integer"},
        {",\"max_position_embeddings\":1.5", EMDPO_ERR_PARSE, "max_position_embeddings"},
        {",\"rms_norm_eps\":-1", EMDPO_ERR_PARSE, "rms_norm_eps"},
        {",\"rms_norm_eps\":1e-300", EMDPO_ERR_PARSE, "rms_norm_eps"},
        {",\"rope_theta\":1e300", EMDPO_ERR_PARSE, "rope_theta"},
        {",\"tie_word_embeddings\":1", EMDPO_ERR_PARSE, "tie_word_embeddings"},
        {",\"model_type\":\"gpt2\"", EMDPO_ERR_UNSUPPORTED, "gpt2"},
        {",\"hidden_act\":\"gelu\"", EMDPO_ERR_UNSUPPORTED, "silu"},
        {",\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2}", EMDPO_ERR_UNSUPPORTED, "\"dynamic\" is not supported"},
        {",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":2}", EMDPO_ERR_UNSUPPORTED, "\"yarn\""},
        {",\"rope_scaling\":{\"rope_type\":\"linear\"}", EMDPO_ERR_PARSE, "rope_scaling.factor"},
        {",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":4,\"high_freq_factor\":1,"
         "\"original_max_position_embeddings\":8192}", EMDPO_ERR_PARSE, "high_freq_factor must exceed"},
        {",\"rope_scaling\":3", EMDPO_ERR_PARSE, "rope_scaling must be an object"},
        {",\"attention_bias\":1", EMDPO_ERR_PARSE, "\"attention_bias\" must be true or false"},
        {",\"mlp_bias\":true", EMDPO_ERR_UNSUPPORTED, "mlp_bias"},
        {",\"head_dim\":7", EMDPO_ERR_PARSE, "the head size 7 is odd"},
        {",\"head_dim\":-2", EMDPO_ERR_PARSE, "\"head_dim\" must be a positive integer"},
        {",\"model_type\":\"mistral\",\"sliding_window\":0", EMDPO_ERR_PARSE, "sliding_window"},
        {",\"model_type\":\"qwen2\",\"use_sliding_window\":true,\"sliding_window\":16,\"max_window_layers\":2",
         EMDPO_ERR_UNSUPPORTED, "max_window_layers"},
        {",\"model_type\":\"gemma\"", EMDPO_ERR_UNSUPPORTED, "llama, mistral, qwen2 and qwen3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(buf, sizeof buf, "{%s%s}", base, cases[i].extra);
        expect_config_error(buf, cases[i].rc, cases[i].msg);
    }
    expect_config_error("{\"intermediate_size\":172,\"num_hidden_layers\":5,\"num_attention_heads\":8,"
                        "\"vocab_size\":512}",
                        EMDPO_ERR_PARSE, "\"hidden_size\" is missing");
    expect_config_error("{\"hidden_size\":60,\"intermediate_size\":1,\"num_hidden_layers\":1,"
                        "\"num_attention_heads\":8,\"vocab_size\":5}",
                        EMDPO_ERR_PARSE, "not divisible");
    expect_config_error("{\"hidden_size\":24,\"intermediate_size\":1,\"num_hidden_layers\":1,"
                        "\"num_attention_heads\":8,\"vocab_size\":5}",
                        EMDPO_ERR_PARSE, "odd");
    expect_config_error("{\"hidden_size\":2147483644,\"intermediate_size\":2147483646,\"num_hidden_layers\":"
                        "2147483647,\"num_attention_heads\":2,\"vocab_size\":5}",
                        EMDPO_ERR_PARSE, "too large");
    expect_config_error("[1]", EMDPO_ERR_PARSE, "not a JSON object");
    expect_config_error("{\"hidden_size\":", EMDPO_ERR_PARSE, "not valid JSON");

    /* write -> read keeps every field, floats exactly. */
    emdpo_llama_config w = {.dim = 64, .hidden_dim = 172, .n_layers = 5, .n_heads = 8, .n_kv_heads = 4,
                            .vocab_size = 512, .max_seq_len = 256, .tied = 1, .norm_eps = 1e-5f,
                            .rope_theta = 10000.0f, .head_dim = 8};
    const char *path = tmp_path("config.json");
    CHECK_EQ_INT(emdpo_hf_config_write(path, &w, EMDPO_ST_F32, -1, -1, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_hf_config_read(path, &c, &d), EMDPO_OK);
    CHECK(memcmp(&c, &w, sizeof c) == 0);
    w.tied = 0;
    w.norm_eps = 3.3e-7f;
    w.rope_theta = 123456.7f;
    CHECK_EQ_INT(emdpo_hf_config_write(path, &w, EMDPO_ST_F32, -1, -1, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_hf_config_read(path, &c, &d), EMDPO_OK);
    CHECK(memcmp(&c, &w, sizeof c) == 0);
    /* RoPE scaling too: Llama 3.2's, then linear. */
    w.rope_type = EMDPO_ROPE_LLAMA3;
    w.rope_factor = 32.0f;
    w.rope_low_freq_factor = 1.0f;
    w.rope_high_freq_factor = 4.0f;
    w.rope_original_max_pos = 8192;
    CHECK_EQ_INT(emdpo_hf_config_write(path, &w, EMDPO_ST_F32, -1, -1, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_hf_config_read(path, &c, &d), EMDPO_OK);
    CHECK(memcmp(&c, &w, sizeof c) == 0);
    w.rope_type = EMDPO_ROPE_LINEAR;
    w.rope_factor = 2.5f;
    w.rope_low_freq_factor = w.rope_high_freq_factor = 0.0f;
    w.rope_original_max_pos = 0;
    CHECK_EQ_INT(emdpo_hf_config_write(path, &w, EMDPO_ST_F32, -1, -1, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_hf_config_read(path, &c, &d), EMDPO_OK);
    CHECK(memcmp(&c, &w, sizeof c) == 0);
    w.n_heads = 7;
    CHECK_EQ_INT(emdpo_hf_config_write(path, &w, EMDPO_ST_F32, -1, -1, &d), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_hf_config_read("/nonexistent/config.json", &c, &d), EMDPO_ERR_IO);
    remove(path);
}

static int same_params(const emdpo_llama *a, const emdpo_llama *b) {
    return a->num_params == b->num_params &&
           memcmp(a->param_buf, b->param_buf, a->num_params * sizeof(float)) == 0 &&
           memcmp(&a->config, &b->config, sizeof a->config) == 0;
}

static void fill(emdpo_llama *m, unsigned seed) {
    for (size_t i = 0; i < m->num_params; i++) {
        seed = seed * 1664525u + 1013904223u;
        m->param_buf[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
}

/* The fixture's HF tensors, loaded, equal its emdpo-layout tensors. */
static void test_fixture(void) {
    emdpo_llama *m = NULL;
    emdpo_diag d;
    int rc = emdpo_llama_hf_load(FIXTURE_DIR, 0, &m, &d);
    CHECK_MSG(rc == EMDPO_OK, "%s: %s", d.file, d.msg);
    emdpo_safetensors *ref = NULL;
    CHECK_EQ_INT(emdpo_st_open(FIXTURE_REF, &ref, &d), EMDPO_OK);
    if (!m || !ref) {
        emdpo_llama_free(m);
        emdpo_st_close(ref);
        return;
    }
    const emdpo_llama_config *c = &m->config;
    CHECK(c->dim == 16 && c->hidden_dim == 40 && c->n_layers == 2 && c->n_heads == 4 && c->n_kv_heads == 2 &&
          c->vocab_size == 48 && c->max_seq_len == 32 && !c->tied && c->norm_eps == 1e-5f);
    /* A plain Llama: the optional tensors (after lm_head) are absent. */
    enum { N_PLAIN = 12 };
    static const char *const names[N_PLAIN] = {"tok_emb", "rms_att", "wq", "wk",
                                               "wv",      "wo",      "rms_ffn", "w1",
                                               "w2",      "w3",      "rms_final", "lm_head"};
    const emdpo_llama_params *p = &m->params;
    const float *ours[N_PLAIN] = {p->tok_emb, p->rms_att, p->wq, p->wk, p->wv, p->wo,
                                  p->rms_ffn, p->w1,      p->w2, p->w3, p->rms_final, p->lm_head};
    size_t sizes[EMDPO_LLAMA_N_TENSORS];
    emdpo_llama_tensor_sizes(c, sizes);
    for (int i = N_PLAIN; i < EMDPO_LLAMA_N_TENSORS; i++) CHECK_MSG(sizes[i] == 0, "tensor %d is absent", i);
    for (int i = 0; i < N_PLAIN; i++) {
        const emdpo_st_tensor *t = emdpo_st_find(ref, names[i]);
        CHECK_MSG(t && t->numel == sizes[i], "reference tensor %s", names[i]);
        if (!t || t->numel != sizes[i]) continue;
        float *buf = malloc(sizes[i] * sizeof *buf);
        CHECK_EQ_INT(emdpo_st_read_f32(ref, names[i], t->rank, t->shape, buf, &d), EMDPO_OK);
        CHECK_MSG(memcmp(buf, ours[i], sizes[i] * sizeof *buf) == 0, "%s differs from the reference", names[i]);
        free(buf);
    }
    CHECK(emdpo_st_find(ref, "logits") != NULL && emdpo_st_metadata(ref, "tokens") != NULL);

    /* Saving reproduces HF's tensors value for value. */
    CHECK_EQ_INT(emdpo_llama_hf_save(m, tmp_path("resaved"), NULL, &d), EMDPO_OK);
    emdpo_safetensors *a = NULL, *b = NULL;
    char path[300];
    snprintf(path, sizeof path, "%s/model.safetensors", tmp_path("resaved"));
    CHECK_EQ_INT(emdpo_st_open(path, &a, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_st_open(FIXTURE_DIR "/model.safetensors", &b, &d), EMDPO_OK);
    if (a && b) {
        CHECK_EQ_INT(emdpo_st_count(a), emdpo_st_count(b));
        CHECK(strcmp(emdpo_st_metadata(a, "format"), "pt") == 0);
        for (size_t i = 0; i < emdpo_st_count(b); i++) {
            const emdpo_st_tensor *tb = emdpo_st_tensor_at(b, i);
            const emdpo_st_tensor *ta = emdpo_st_find(a, tb->name);
            CHECK_MSG(ta != NULL, "%s not saved", tb->name);
            if (!ta) continue;
            float *x = malloc(tb->numel * sizeof *x), *y = malloc(tb->numel * sizeof *y);
            CHECK_EQ_INT(emdpo_st_read_f32(a, tb->name, tb->rank, tb->shape, x, &d), EMDPO_OK);
            CHECK_EQ_INT(emdpo_st_read_f32(b, tb->name, tb->rank, tb->shape, y, &d), EMDPO_OK);
            CHECK_MSG(memcmp(x, y, tb->numel * sizeof *x) == 0, "%s differs after saving", tb->name);
            free(x);
            free(y);
        }
    }
    emdpo_st_close(a);
    emdpo_st_close(b);
    emdpo_st_close(ref);
    emdpo_llama_free(m);
}

static void test_save_load(void) {
    emdpo_llama_config cfgs[2] = {{.dim = 16, .hidden_dim = 24, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
                                   .vocab_size = 40, .max_seq_len = 64, .tied = 1, .norm_eps = 1e-5f,
                                   .rope_theta = 10000.0f},
                                  {.dim = 12, .hidden_dim = 20, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
                                   .vocab_size = 30, .max_seq_len = 16, .tied = 0, .norm_eps = 1e-6f,
                                   .rope_theta = 500000.0f}};
    for (int k = 0; k < 2; k++) {
        emdpo_llama *m = NULL, *back = NULL;
        emdpo_diag d;
        CHECK_EQ_INT(emdpo_llama_create(&cfgs[k], &m), EMDPO_OK);
        if (!m) continue;
        fill(m, 11u + (unsigned)k);
        CHECK_EQ_INT(emdpo_llama_hf_save(m, tmp_path("model"), NULL, &d), EMDPO_OK);
        CHECK_EQ_INT(emdpo_llama_hf_load(tmp_path("model"), 0, &back, &d), EMDPO_OK);
        CHECK_MSG(back && same_params(m, back), "save -> load is not the identity (config %d)", k);
        emdpo_llama_free(back);
        emdpo_llama_free(m);
    }
}

static void copy_file(const char *from, const char *to) {
    FILE *f = fopen(from, "rb");
    if (!f) exit(1);
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    write_bytes(to, buf, n);
}

static void expect_load_error(const char *config, int rc, const char *msg_part) {
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "%s", tmp_path("bad"));
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_bytes(path, config, strlen(config));
    emdpo_llama *m = (emdpo_llama *)&m;
    emdpo_diag d;
    int got = emdpo_llama_hf_load(dir, 0, &m, &d);
    CHECK_MSG(got == rc && strstr(d.msg, msg_part), "load with %s: rc %d, \"%s\"", config, got, d.msg);
    CHECK((got == EMDPO_OK) == (m != NULL));
    if (got == EMDPO_OK) emdpo_llama_free(m);
}

/* Configurations that disagree with the fixture's tensors. */
static void test_mismatch(void) {
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "%s", tmp_path("bad"));
    CHECK_EQ_INT(mkdir(dir, 0777), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    copy_file(FIXTURE_DIR "/model.safetensors", path);
    const char *fmt = "{\"hidden_size\":%d,\"intermediate_size\":%d,\"num_hidden_layers\":%d,"
                      "\"num_attention_heads\":4,\"num_key_value_heads\":%d,\"vocab_size\":%d,"
                      "\"tie_word_embeddings\":%s}";
    char cfg[512];
    snprintf(cfg, sizeof cfg, fmt, 16, 40, 2, 2, 48, "false");
    expect_load_error(cfg, EMDPO_OK, "");
    snprintf(cfg, sizeof cfg, fmt, 16, 41, 2, 2, 48, "false");
    expect_load_error(cfg, EMDPO_ERR_PARSE, "\"model.layers.0.mlp.gate_proj.weight\" has shape [40, 16], expected [41, 16]");
    snprintf(cfg, sizeof cfg, fmt, 16, 40, 2, 4, 48, "false");
    expect_load_error(cfg, EMDPO_ERR_PARSE, "k_proj.weight\" has shape [8, 16], expected [16, 16]");
    snprintf(cfg, sizeof cfg, fmt, 16, 40, 2, 2, 50, "false");
    expect_load_error(cfg, EMDPO_ERR_PARSE, "\"model.embed_tokens.weight\" has shape [48, 16], expected [50, 16]");
    snprintf(cfg, sizeof cfg, fmt, 16, 40, 3, 2, 48, "false");
    expect_load_error(cfg, EMDPO_ERR_PARSE, "\"model.layers.2.input_layernorm.weight\" (shape [16]) is missing");
    snprintf(cfg, sizeof cfg, fmt, 16, 40, 1, 2, 48, "false");
    expect_load_error(cfg, EMDPO_ERR_PARSE, "\"model.layers.1.");
    snprintf(cfg, sizeof cfg, fmt, 16, 40, 2, 2, 48, "true");
    expect_load_error(cfg, EMDPO_ERR_PARSE, "lm_head.weight\" is present although tie_word_embeddings");

    /* A missing output head. */
    emdpo_llama *m = NULL;
    emdpo_diag d;
    emdpo_llama_config c = {.dim = 8, .hidden_dim = 8, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2,
                            .vocab_size = 10, .max_seq_len = 8, .tied = 1, .norm_eps = 1e-5f, .rope_theta = 1e4f};
    CHECK_EQ_INT(emdpo_llama_create(&c, &m), EMDPO_OK);
    if (m) {
        CHECK_EQ_INT(emdpo_hf_write_params(path, &m->config, &m->params, EMDPO_ST_F32, &d), EMDPO_OK);
        snprintf(cfg, sizeof cfg,
                 "{\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
                 "\"vocab_size\":10}");
        expect_load_error(cfg, EMDPO_ERR_PARSE, "\"lm_head.weight\" (shape [10, 8]) is missing");
        emdpo_llama_free(m);
    }
    remove(path);
    expect_load_error(cfg, EMDPO_ERR_IO, "holds neither model.safetensors nor model.safetensors.index.json");
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    write_bytes(path, "{}", 2);
    expect_load_error(cfg, EMDPO_ERR_PARSE, "\"weight_map\" is missing");
    remove(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    remove(path);
    rmdir(dir);
}

/* Every allocation of open, read, load and save may fail cleanly. */
static void test_failalloc(int have_fixture) {
    long points = 0;
    for (int op = have_fixture ? 0 : 2; op < 3; op++) {
        int done = 0;
        for (long k = 0; k < 4096 && !done; k++) {
            failalloc_install(k, 0);
            emdpo_diag d;
            int rc;
            if (op == 0) {
                emdpo_safetensors *st = NULL;
                rc = emdpo_st_open(FIXTURE_REF, &st, &d);
                emdpo_st_close(st);
            } else if (op == 1) {
                emdpo_llama *m = NULL;
                rc = emdpo_llama_hf_load(FIXTURE_DIR, 0, &m, &d);
                emdpo_llama_free(m);
            } else {
                emdpo_llama *m = NULL;
                emdpo_llama_config c = {.dim = 8, .hidden_dim = 8, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1,
                                        .vocab_size = 10, .max_seq_len = 8, .tied = 0, .norm_eps = 1e-5f,
                                        .rope_theta = 1e4f};
                rc = emdpo_llama_create(&c, &m);
                if (!rc) rc = emdpo_llama_hf_save(m, tmp_path("fa"), NULL, &d);
                emdpo_llama_free(m);
            }
            CHECK_MSG(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM, "op %d, failure %ld: rc %d (%s)", op, k, rc, d.msg);
            CHECK_MSG(failalloc_live() == 0, "op %d, failure %ld: %ld blocks leaked", op, k, failalloc_live());
            CHECK_EQ_INT(failalloc_size_errors(), 0);
            done = rc == EMDPO_OK && failalloc_count() <= k;
            points++;
            failalloc_uninstall();
        }
        CHECK_MSG(done, "op %d never succeeded", op);
    }
    CHECK(points > 10);
    remove_model_dir("fa");
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/emdpo_st_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_hostile();
    test_dtypes();
    test_roundtrip();
    test_permutation();
    test_config();
    int have_fixture = access(FIXTURE_DIR "/model.safetensors", R_OK) == 0;
    if (have_fixture) {
        test_fixture();
        test_mismatch();
    } else {
        printf("skip: %s absent (run from the repository root)\n", FIXTURE_DIR);
    }
    test_save_load();
    test_failalloc(have_fixture);
    remove(tmp_path("hostile.safetensors"));
    remove_model_dir("resaved");
    remove_model_dir("model");
    rmdir(g_tmp);
    return check_report("test_safetensors");
}
