/* GGUF vocabularies (lm/io/gguf_vocab.h): a small GGUF written here loads
 * through emdpo_tokenizer_load and encodes as its tokenizer.bin twin does;
 * malformed and unsupported files are refused with the key or offset; and,
 * when ../shared is present, llama.cpp's ggml-vocab-llama-spm.gguf
 * (SentencePiece) and ggml-vocab-gpt-2.gguf (byte-level BPE) give
 * llama.cpp's own ids on its tokenizer test inputs (NAME.inp / .out). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "check.h"
#include "emdpo.h"
#include "lm/io/gguf_vocab.h"
#include "lm/io/tokenizer.h"
#include "testdata.h"

#define SPM_GGUF "../shared/data/gguf/ggml-vocab-llama-spm.gguf"

/* ---- a GGUF image written by hand ------------------------------------- */

static unsigned char img[1 << 16];
static size_t n_img;

static void put(const void *p, size_t n) {
    if (n_img + n > sizeof img) abort();
    memcpy(img + n_img, p, n);
    n_img += n;
}
static void put_u32(uint32_t v) { put(&v, 4); }
static void put_u64(uint64_t v) { put(&v, 8); }
static void put_str(const char *s) {
    put_u64(strlen(s));
    put(s, strlen(s));
}

/* Pieces after the 259 fixed ones. */
static const char *const extra[] = {"\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab", "\xE2\x96\x81" "ab", "<ctl>"};
#define N_EXTRA (sizeof extra / sizeof *extra)

/* model: tokenizer.ggml.model; user: make the last token user-defined. */
static void make_gguf(const char *model, int version, int user) {
    n_img = 0;
    put("GGUF", 4);
    put_u32((uint32_t)version);
    put_u64(0);  /* tensors */
    put_u64(5);  /* keys */
    put_str("general.name");
    put_u32(8);
    put_str("tiny");
    put_str("tokenizer.ggml.model");
    put_u32(8);
    put_str(model);
    put_str("tokenizer.ggml.tokens");
    put_u32(9);
    put_u32(8);
    put_u64(259 + N_EXTRA);
    put_str("<unk>");
    put_str("<s>");
    put_str("</s>");
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        put_str(s);
    }
    for (size_t i = 0; i < N_EXTRA; i++) put_str(extra[i]);
    put_str("tokenizer.ggml.scores");
    put_u32(9);
    put_u32(6);
    put_u64(259 + N_EXTRA);
    for (size_t i = 0; i < 259 + N_EXTRA; i++) {
        float s = i < 259 ? 0.0f : (float)i / 10.0f;
        put(&s, 4);
    }
    put_str("tokenizer.ggml.token_type");
    put_u32(9);
    put_u32(5);
    put_u64(259 + N_EXTRA);
    for (size_t i = 0; i < 259 + N_EXTRA; i++) {
        int32_t t = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
        if (i == 259 + N_EXTRA - 1) t = user ? 4 : 3;
        put(&t, 4);
    }
}

static const char *write_img(const char *name) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/emdpo_test_gguf_%d_%s", (int)getpid(), name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(img, 1, n_img, fp) != n_img || fclose(fp)) abort();
    return path;
}

static int encode(const emdpo_tokenizer *t, const char *s, int *ids, size_t cap, size_t *n) {
    return emdpo_tokenizer_encode(t, s, strlen(s), 0, ids, cap, n);
}

static void test_small(void) {
    make_gguf("llama", 3, 0);
    const char *path = write_img("ok.gguf");
    CHECK(emdpo_gguf_is_file(path));
    emdpo_tokenizer *t = NULL;
    emdpo_diag d;
    int V = 259 + (int)N_EXTRA;
    CHECK_EQ_INT(emdpo_tokenizer_load(path, V, &t, &d), EMDPO_OK);
    if (t) {
        /* U+2581 reads as a space: " ab" is one piece; "<ctl>" (control)
         * is never produced from text. */
        size_t len;
        const char *p = emdpo_tokenizer_piece(t, 264, &len);
        CHECK(p && len == 3 && memcmp(p, " ab", 3) == 0);
        int ids[32];
        size_t n = 0;
        CHECK_EQ_INT(encode(t, "ab", ids, 32, &n), EMDPO_OK);
        CHECK(n == 1 && ids[0] == 264);
        CHECK_EQ_INT(encode(t, "<ctl>", ids, 32, &n), EMDPO_OK);
        for (size_t i = 0; i < n; i++) CHECK(ids[i] != 265);
        emdpo_tokenizer_free(t);
    }
    CHECK_EQ_INT(emdpo_tokenizer_load(path, V + 1, &t, &d), EMDPO_ERR_PARSE);
    CHECK(strstr(d.msg, "GGUF vocabulary has") != NULL);
    remove(path);

    make_gguf("bert", 3, 0);
    path = write_img("bert.gguf");
    CHECK_EQ_INT(emdpo_tokenizer_load(path, V, &t, &d), EMDPO_ERR_UNSUPPORTED);
    CHECK(strstr(d.msg, "\"bert\"") != NULL && strstr(d.msg, "\"gpt2\"") != NULL);
    remove(path);
    make_gguf("llama", 1, 0);
    path = write_img("v1.gguf");
    CHECK_EQ_INT(emdpo_tokenizer_load(path, V, &t, &d), EMDPO_ERR_UNSUPPORTED);
    remove(path);
    make_gguf("llama", 3, 1);
    path = write_img("user.gguf");
    CHECK_EQ_INT(emdpo_tokenizer_load(path, V, &t, &d), EMDPO_ERR_UNSUPPORTED);
    CHECK(strstr(d.msg, "user-defined") != NULL);
    remove(path);

    /* Every truncation is refused cleanly, with nothing leaked. */
    make_gguf("llama", 3, 0);
    size_t full = n_img;
    for (size_t cut = 0; cut < full; cut += cut < 400 ? 1 : 97) {
        n_img = cut;
        path = write_img("cut.gguf");
        int rc = emdpo_tokenizer_load(path, V, &t, &d);
        CHECK_MSG(rc == EMDPO_ERR_PARSE || rc == EMDPO_ERR_UNSUPPORTED, "cut at %zu: %s", cut, emdpo_status_name(rc));
        remove(path);
    }
    /* A count that would ask for far more than the file holds. */
    n_img = 0;
    put("GGUF", 4);
    put_u32(3);
    put_u64(0);
    put_u64(1);
    put_str("tokenizer.ggml.tokens");
    put_u32(9);
    put_u32(8);
    put_u64(UINT64_C(1) << 60);
    path = write_img("huge.gguf");
    CHECK_EQ_INT(emdpo_tokenizer_load(path, V, &t, &d), EMDPO_ERR_PARSE);
    CHECK(strstr(d.msg, "tokenizer.ggml.tokens") != NULL);
    remove(path);
}

/* ---- llama.cpp's own test pairs ------------------------------------------ */

/* llama.cpp's ids on its own tokenizer tests, through a GGUF vocabulary. */
static void gguf_pairs(const char *gguf, int vocab, const char *test, int bos, int eos) {
    emdpo_tokenizer *t = NULL;
    emdpo_diag d;
    if (!emdpo_gguf_is_file(gguf)) {
        printf("test_gguf_vocab: %s absent, parity skipped\n", gguf);
        return;
    }
    CHECK_EQ_INT(emdpo_tokenizer_load(gguf, vocab, &t, &d), EMDPO_OK);
    if (!t) return;
    CHECK(emdpo_tokenizer_bos(t) == bos && emdpo_tokenizer_eos(t) == eos);
    int bad, cases = testdata_llama_cpp_pairs(t, "../shared/data/tokenizers/tests", test, NULL, &bad);
    if (cases < 0) printf("test_gguf_vocab: llama.cpp's %s pairs absent, skipped\n", test);
    else CHECK_MSG(cases >= 30 && bad == 0, "%s: %d of %d cases differ from llama.cpp", test, bad, cases);
    emdpo_tokenizer_free(t);
}

int main(void) {
    test_small();
    /* Llama's SentencePiece vocabulary (tokenizer.ggml.model "llama"), and
     * GPT-2's byte-level one ("gpt2", pre "gpt-2"). */
    gguf_pairs(SPM_GGUF, 32000, "llama-spm", 1, 2);
    gguf_pairs("../shared/data/gguf/ggml-vocab-gpt-2.gguf", 50257, "gpt-2", 50256, 50256);
    return check_report("test_gguf_vocab");
}
