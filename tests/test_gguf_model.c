/* GGUF models (lm/io/gguf_model.c, lm/io/gguf.c): greedy tokens equal to
 * llama.cpp's (ids that tools/llama_cpp_greedy.mjs produced with
 * node-llama-cpp, checked in) for llama-2-tiny-random.gguf of ../shared and
 * for the tiny llama (Llama 3.1 RoPE scaling via rope_freqs), qwen2 and
 * qwen3 files of tools/gguf_fixture.py; those files' Hugging Face twins load
 * to the same parameters (q/k row orders of both RoPE kinds); write -> read
 * round trips (F32 exact, F16/BF16/Q8_0 within their rounding); known
 * answers of the Q8_0, Q4_0 and Q4_K block layouts; and hostile files
 * (every truncation, misaligned, overlapping and out-of-range offsets,
 * absurd dimensions, wrong type sizes, huge counts) refused with
 * EMDPO_ERR_PARSE or EMDPO_ERR_UNSUPPORTED, never read out of bounds. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/half.h"
#include "base/json.h"
#include "check.h"
#include "lm/engine/llama.h"
#include "lm/io/gguf.h"
#include "lm/io/gguf_model.h"
#include "lm/io/tokenizer.h"
#include "testdata.h"

#define FIX "tests/fixtures/gguf/"
#define TINY "../shared/data/gguf/llama-2-tiny-random.gguf"

static char tmp_path[128];

static const char *tmp(const char *name) {
    snprintf(tmp_path, sizeof tmp_path, "/tmp/emdpo_test_gguf_model_%d_%s", (int)getpid(), name);
    return tmp_path;
}

static int ids_equal(const int *a, size_t n, const emdpo_json *arr) {
    if (arr->type != EMDPO_JSON_ARRAY || arr->len != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!arr->u.elems[i].is_int || arr->u.elems[i].inum != a[i]) return 0;
    return 1;
}

/* Greedy generation of model (tokenizer: the same file) against llama.cpp's
 * lines in fixture: the prompt's ids and the generated ones. */
static void greedy_parity(const char *model, const char *tokenizer, const char *fixture) {
    size_t len;
    char *text = testdata_slurp(fixture, &len);
    emdpo_llama *m = NULL;
    emdpo_tokenizer *t = NULL;
    emdpo_diag d;
    CHECK_MSG(text != NULL, "%s", fixture);
    CHECK_MSG(emdpo_llama_load(model, &m, &d) == EMDPO_OK, "%s: %s", model, d.msg);
    CHECK_MSG(m && emdpo_tokenizer_load(tokenizer, m->config.vocab_size, &t, &d) == EMDPO_OK, "%s: %s", tokenizer,
              d.msg);
    emdpo_json_doc *doc = NULL;
    int lines = 0;
    if (text && m && t && !emdpo_json_doc_create(&doc)) {
        for (char *line = text, *next; *line; line = next) {
            next = strchr(line, '\n');
            next = next ? next + 1 : line + strlen(line);
            const emdpo_json *root;
            emdpo_json_error err;
            if (emdpo_json_parse(doc, line, (size_t)(next - line), &root, &err)) continue;
            const emdpo_json *prompt = emdpo_json_get(root, "prompt");
            const emdpo_json *want_p = emdpo_json_get(root, "prompt_ids"), *want = emdpo_json_get(root, "ids");
            int *ids = NULL;
            size_t n = 0;
            CHECK(emdpo_tokenizer_encode_alloc(t, prompt->u.str, prompt->len, EMDPO_TOK_SPECIAL, &ids, &n) == 0);
            CHECK_MSG(ids_equal(ids, n, want_p), "%s: prompt \"%s\" tokenized otherwise", model, prompt->u.str);
            emdpo_sample_opts o;
            emdpo_sample_opts_init(&o);
            o.temperature = 0;
            o.max_tokens = 24;
            o.n_stop = emdpo_tokenizer_stop_ids(t, &o.stop_ids);
            int out[24], n_out = 0;
            CHECK(emdpo_lm_generate(m, &o, ids, (int)n, out, &n_out, NULL) == EMDPO_OK);
            CHECK_MSG(ids_equal(out, (size_t)n_out, want), "%s: greedy tokens after \"%s\" differ from llama.cpp's",
                      model, prompt->u.str);
            emdpo_ids_free(ids, n);
            lines++;
        }
    }
    CHECK_MSG(lines == 4, "%s: %d prompts", fixture, lines);
    emdpo_json_doc_free(doc);
    free(text);
    emdpo_tokenizer_free(t);
    emdpo_llama_free(m);
}

/* A GGUF file emdpo writes runs in llama.cpp: the model saved (float32)
 * with its own vocabulary, the file tools/gguf_written_fixture.sh gave to
 * node-llama-cpp, gives llama.cpp's greedy tokens. */
static void written_parity(const char *model, const char *fixture) {
    emdpo_llama *m = NULL;
    emdpo_diag d;
    CHECK_MSG(emdpo_llama_load(model, &m, &d) == EMDPO_OK, "%s: %s", model, d.msg);
    char path[128];
    snprintf(path, sizeof path, "%s", tmp("written.gguf"));
    CHECK_MSG(m && emdpo_llama_save_gguf(m, model, path, "f32", &d) == EMDPO_OK, "%s: %s", model, d.msg);
    emdpo_llama_free(m);
    greedy_parity(path, path, fixture);
    remove(path);
}

/* The Hugging Face twin holds the same weights: identical parameters once
 * both orders of q/k rows are mapped to emdpo's. */
static void twin(const char *gguf, const char *hf) {
    emdpo_llama *a = NULL, *b = NULL;
    emdpo_diag d;
    CHECK_MSG(emdpo_llama_load(gguf, &a, &d) == EMDPO_OK, "%s: %s", gguf, d.msg);
    CHECK_MSG(emdpo_llama_load(hf, &b, &d) == EMDPO_OK, "%s: %s", hf, d.msg);
    CHECK(a && b && a->num_params == b->num_params &&
          memcmp(a->param_buf, b->param_buf, a->num_params * sizeof(float)) == 0);
    CHECK(a && b && emdpo_llama_same_architecture(a, b));
    emdpo_llama_free(a);
    emdpo_llama_free(b);
}

/* Llama 3.1 scaling read back from rope_freqs as the config had it. */
static void llama3_scaling(void) {
    emdpo_llama *m = NULL;
    emdpo_diag d;
    CHECK(emdpo_llama_load(FIX "llama3_rope.gguf", &m, &d) == EMDPO_OK);
    if (!m) return;
    const emdpo_llama_config *c = &m->config;
    CHECK(c->rope_type == EMDPO_ROPE_LLAMA3 && c->rope_factor == 32.0f && c->rope_low_freq_factor == 1.0f &&
          c->rope_high_freq_factor == 4.0f && c->rope_original_max_pos == 8192 && c->rope_theta == 500000.0f);
    CHECK(c->n_heads == 2 && c->n_kv_heads == 1 && !c->tied);
    emdpo_llama_free(m);
    CHECK(emdpo_llama_load(FIX "qwen3.gguf", &m, &d) == EMDPO_OK);
    if (m) CHECK(m->config.arch == EMDPO_ARCH_QWEN3 && m->config.qk_norm && emdpo_llama_head_size(&m->config) == 16 &&
                 m->config.dim == 16);
    emdpo_llama_free(m);
}

/* Write -> read: F32 exactly; the 16-bit types and Q8_0 within rounding. */
static void round_trip(const char *src) {
    emdpo_llama *m = NULL, *r = NULL;
    emdpo_diag d;
    CHECK(emdpo_llama_load(src, &m, &d) == EMDPO_OK);
    if (!m) return;
    static const char *const dtypes[] = {"f32", "f16", "bf16", "q8_0"};
    for (int k = 0; k < 4; k++) {
        const char *path = tmp("rt.gguf");
        CHECK_MSG(emdpo_llama_save_gguf(m, NULL, path, dtypes[k], &d) == EMDPO_OK, "%s %s: %s", src, dtypes[k], d.msg);
        CHECK_MSG(emdpo_llama_load(path, &r, &d) == EMDPO_OK, "%s %s: %s", src, dtypes[k], d.msg);
        if (!r) continue;
        CHECK(memcmp(&r->config, &m->config, sizeof r->config) == 0);
        size_t bad = 0;
        for (size_t i = 0; i < m->num_params; i++) {
            float x = m->param_buf[i], y = r->param_buf[i], want = x;
            if (k == 1) want = emdpo_half_to_float(emdpo_float_to_half(x));
            if (k == 2) want = emdpo_bf16_to_float(emdpo_float_to_bf16(x));
            /* Q8_0: within half a step of max|x| / 127; norms stay F32 (y == x). */
            if (k == 3 ? !(fabsf(y - x) <= 0.03f) : y != want && y != x) bad++;
        }
        CHECK_MSG(bad == 0, "%s %s: %zu parameters differ", src, dtypes[k], bad);
        emdpo_llama_free(r);
        r = NULL;
        remove(path);
    }
    CHECK(emdpo_llama_save_gguf(m, NULL, tmp("x.gguf"), "q4_0", &d) == EMDPO_ERR_INVALID_ARG);
    emdpo_llama_free(m);
}

/* ---- hand-made images ------------------------------------------------------ */

static unsigned char img[1 << 16];
static size_t n_img;

static void put(const void *p, size_t n) {
    memcpy(img + n_img, p, n);
    n_img += n;
}
static void put_u32(uint32_t v) { put(&v, 4); }
static void put_u64(uint64_t v) { put(&v, 8); }
static void put_str(const char *s) {
    put_u64(strlen(s));
    put(s, strlen(s));
}
static void pad32(void) {
    while (n_img % 32) img[n_img++] = 0;
}

/* One tensor of type with ne[0] = n, its data given. */
static void one_tensor(uint32_t type, uint64_t n, const void *data, size_t bytes) {
    n_img = 0;
    put("GGUF", 4);
    put_u32(3);
    put_u64(1);
    put_u64(0);
    put_str("x");
    put_u32(1);
    put_u64(n);
    put_u32(type);
    put_u64(0);
    pad32();
    put(data, bytes);
}

static int read_one(float *out, emdpo_diag *d) {
    emdpo_gguf *g;
    int rc = emdpo_gguf_open_mem(img, n_img, "mem", &g, d);
    if (!rc) rc = emdpo_gguf_check_tensors(g, d);
    if (!rc) rc = emdpo_gguf_read_f32(g, emdpo_gguf_tensor_at(g, 0), out, d);
    emdpo_gguf_close(g);
    return rc;
}

/* The block layouts of ggml-common.h, by hand. */
static void known_answers(void) {
    emdpo_diag d;
    float y[256];
    unsigned char b[176]; /* the largest block below, Q5_K's */
    /* Q8_0: scale 0.5 (F16 0x3800), q = j - 16. */
    memset(b, 0, sizeof b);
    b[0] = 0x00, b[1] = 0x38;
    for (int j = 0; j < 32; j++) b[2 + j] = (unsigned char)(int8_t)(j - 16);
    one_tensor(EMDPO_GGML_Q8_0, 32, b, 34);
    CHECK(read_one(y, &d) == EMDPO_OK);
    for (int j = 0; j < 32; j++) CHECK(y[j] == 0.5f * (float)(j - 16));
    /* Q4_0: elements j and j + 16 in the low and high nibbles of byte j, minus 8. */
    for (int j = 0; j < 16; j++) b[2 + j] = (unsigned char)(j | (15 - j) << 4);
    one_tensor(EMDPO_GGML_Q4_0, 32, b, 18);
    CHECK(read_one(y, &d) == EMDPO_OK);
    for (int j = 0; j < 16; j++) CHECK(y[j] == 0.5f * (float)(j - 8) && y[j + 16] == 0.5f * (float)(7 - j));
    /* Q4_K: d = 1, dmin = 0.5; sub-block s has scale s + 1 and min 2s (the
     * first four in the low 6 bits of bytes 0..3 / 4..7, the last four
     * split between bytes 8..11 and the top bits of 0..7); nibble q. */
    memset(b, 0, sizeof b);
    b[0] = 0x00, b[1] = 0x3C, b[2] = 0x00, b[3] = 0x38;
    unsigned char *sc = b + 4;
    for (int s = 0; s < 8; s++) {
        int scale = s + 1 + (s >= 4 ? 32 : 0), min = 2 * s + (s >= 4 ? 16 : 0); /* high bits used too */
        if (s < 4) {
            sc[s] = (unsigned char)scale;
            sc[s + 4] = (unsigned char)min;
        } else {
            sc[s + 4] = (unsigned char)((scale & 0x0F) | (min & 0x0F) << 4);
            sc[s - 4] |= (unsigned char)((scale >> 4) << 6);
            sc[s] |= (unsigned char)((min >> 4) << 6);
        }
    }
    for (int l = 0; l < 128; l++) b[16 + l] = (unsigned char)((l % 16) | ((15 - l % 16) << 4));
    one_tensor(EMDPO_GGML_Q4_K, 256, b, 144);
    CHECK(read_one(y, &d) == EMDPO_OK);
    size_t bad = 0;
    for (int i = 0; i < 256; i++) {
        int s = i / 32, chunk = i / 64, l = i % 32, hi = s % 2;
        int byte = chunk * 32 + l, q = hi ? (15 - byte % 16) : byte % 16;
        float scale = (float)(s + 1 + (s >= 4 ? 32 : 0)), min = (float)(2 * s + (s >= 4 ? 16 : 0));
        if (y[i] != scale * (float)q - 0.5f * min) bad++;
    }
    CHECK_MSG(bad == 0, "Q4_K: %zu of 256 values differ", bad);
    /* A type emdpo lays out but does not dequantise, and one it does not know. */
    one_tensor(13 /* Q5_K */, 256, b, 176);
    CHECK(read_one(y, &d) == EMDPO_ERR_UNSUPPORTED && strstr(d.msg, "Q5_K") && strstr(d.msg, "tensor x"));
    one_tensor(99, 32, b, 34);
    CHECK(read_one(y, &d) == EMDPO_ERR_UNSUPPORTED && strstr(d.msg, "type 99"));
}

/* ---- hostile files ---------------------------------------------------------- */

static unsigned char *orig;
static size_t n_orig;

static int load_bytes(const unsigned char *p, size_t n, emdpo_diag *d) {
    const char *path = tmp("bad.gguf");
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(p, 1, n, fp) != n || fclose(fp)) abort();
    emdpo_llama *m = NULL;
    int rc = emdpo_llama_load(path, &m, d);
    emdpo_llama_free(m);
    remove(path);
    return rc;
}

/* Where the fields of tensor i's info entry are. */
static size_t field_at(const emdpo_gguf *g, size_t i, int which /* 0 ne[0], 1 type, 2 offset */) {
    const emdpo_gguf_tensor *t = emdpo_gguf_tensor_at(g, i);
    size_t at = (size_t)t->at + 8 + strlen(t->name) + 4;
    return which == 0 ? at : at + 8 * t->n_dims + (which == 2 ? 4 : 0);
}

static void patched(size_t at, const void *v, size_t n, int want, const char *needle) {
    unsigned char *p = malloc(n_orig);
    memcpy(p, orig, n_orig);
    memcpy(p + at, v, n);
    emdpo_diag d;
    int rc = load_bytes(p, n_orig, &d);
    CHECK_MSG(rc == want && strstr(d.msg, needle), "patch at %zu: %s: %s", at, emdpo_status_name(rc), d.msg);
    free(p);
}

static void hostile(void) {
    orig = (unsigned char *)testdata_slurp(FIX "qwen2.gguf", &n_orig);
    CHECK(orig != NULL);
    if (!orig) return;
    emdpo_gguf *g;
    emdpo_diag d;
    CHECK(emdpo_gguf_open_mem(orig, n_orig, "qwen2", &g, &d) == EMDPO_OK);
    /* Every cut of the header and metadata, then of the data. */
    size_t fails = 0, tries = 0;
    for (size_t cut = 0; cut < n_orig; cut += cut < 20000 ? 7 : 1001) {
        int rc = load_bytes(orig, cut, &d);
        tries++;
        if (rc != EMDPO_ERR_PARSE) fails++;
    }
    CHECK_MSG(fails == 0, "%zu of %zu truncations not refused as malformed", fails, tries);
    uint64_t v;
    uint32_t ty;
    const emdpo_gguf_tensor *t1 = emdpo_gguf_tensor_at(g, 1);
    v = 4;
    patched(field_at(g, 1, 2), &v, 8, EMDPO_ERR_PARSE, "not a multiple of the alignment");
    v = emdpo_gguf_tensor_at(g, 0)->offset + 32;
    patched(field_at(g, 1, 2), &v, 8, EMDPO_ERR_PARSE, "overlap");
    v = UINT64_C(1) << 40;
    patched(field_at(g, 1, 2), &v, 8, EMDPO_ERR_PARSE, "run past the end");
    v = UINT64_C(1) << 62;
    patched(field_at(g, 1, 0), &v, 8, EMDPO_ERR_PARSE, t1->name);
    v = t1->ne[0] * 1000;
    patched(field_at(g, 1, 0), &v, 8, EMDPO_ERR_PARSE, "run past the end");
    /* 2^62 + ne[0] F32 elements: 4 bytes each wrap to the old size (fuzz_gguf_model's
     * find, fuzz/corpus/gguf_model/ne0_overflow.gguf, which then allocated 321 GB) */
    v = (UINT64_C(1) << 62) + t1->ne[0];
    CHECK(t1->type == EMDPO_GGML_F32 && t1->n_dims == 1);
    patched(field_at(g, 1, 0), &v, 8, EMDPO_ERR_PARSE, "its size overflows");
    ty = EMDPO_GGML_Q8_0; /* rows of 16 are no whole Q8_0 block */
    patched(field_at(g, 1, 1), &ty, 4, EMDPO_ERR_PARSE, "whole number");
    ty = 28; /* F64: the last tensor's bytes, counted 8 per element, run past the file */
    patched(field_at(g, emdpo_gguf_n_tensors(g) - 1, 1), &ty, 4, EMDPO_ERR_PARSE, "run past the end");
    ty = 77;
    patched(field_at(g, 1, 1), &ty, 4, EMDPO_ERR_UNSUPPORTED, "ggml type 77");
    v = UINT64_C(1) << 60; /* keys */
    patched(16, &v, 8, EMDPO_ERR_PARSE, "more keys than the file can hold");
    v = UINT64_C(1) << 58; /* tensors */
    patched(8, &v, 8, EMDPO_ERR_PARSE, "more tensors than the file can hold");
    /* The token array's count. */
    const emdpo_gguf_kv *tok = emdpo_gguf_find(g, "tokenizer.ggml.tokens");
    v = UINT64_C(1) << 61;
    patched((size_t)tok->at + 8 + strlen(tok->key) + 4 + 4, &v, 8, EMDPO_ERR_PARSE, "tokenizer.ggml.tokens");
    /* Dimensions the model does not have: the first layer's k, [16, 8], as [8, 16]. */
    uint64_t swapped[2] = {8, 16};
    CHECK(strcmp(emdpo_gguf_tensor_at(g, 3)->name, "blk.0.attn_k.weight") == 0);
    patched(field_at(g, 3, 0), swapped, 16, EMDPO_ERR_PARSE, "has shape");
    ty = 9; /* the architecture key's value type: string -> array */
    const emdpo_gguf_kv *arch = emdpo_gguf_find(g, "general.architecture");
    patched((size_t)arch->at + 8 + strlen(arch->key), &ty, 4, EMDPO_ERR_PARSE, "");
    emdpo_gguf_close(g);
    free(orig);
}

int main(void) {
    known_answers();
    llama3_scaling();
    static const char *const fix[] = {"llama3_rope", "qwen2", "qwen3"};
    char model[128], hf[128], ids[128];
    for (int i = 0; i < 3; i++) {
        snprintf(model, sizeof model, FIX "%s.gguf", fix[i]);
        snprintf(hf, sizeof hf, FIX "%s_hf", fix[i]);
        snprintf(ids, sizeof ids, FIX "%s.llama_cpp.jsonl", fix[i]);
        greedy_parity(model, model, ids);
        snprintf(ids, sizeof ids, FIX "written_%s.llama_cpp.jsonl", fix[i]);
        written_parity(model, ids);
        twin(model, hf);
        round_trip(model);
    }
    if (access(TINY, R_OK) == 0) {
        greedy_parity(TINY, TINY, FIX "llama-2-tiny-random.llama_cpp.jsonl");
        round_trip(TINY);
    } else {
        printf("test_gguf_model: %s absent, its llama.cpp parity skipped\n", TINY);
    }
    hostile();
    return check_report("test_gguf_model");
}
