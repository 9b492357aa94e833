/* Frozen models (emdpo_llama_load_frozen): a checkpoint whose matrices are
 * all F16 or all BF16 keeps them in 16 bits and computes the bits its
 * float32 load computes. Each family's fixture, saved as F16 and as BF16
 * in Hugging Face's layout, and the GGUF fixtures, written as F16 and
 * BF16 GGUF files, load both ways; then, bit for bit: the forward's
 * log-probabilities and logits for one chunk (BLAS on widened copies) and
 * for several (the kernel on packed panels where it runs, else BLAS on
 * widened copies), the decoder's logits at every
 * position, and batched greedy generation. Also: what the frozen model
 * holds (16-bit matrices, the norms and biases as float32, half the
 * bytes), F32 files loading unfrozen, and a frozen model refusing the
 * backward and every save. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "emdpo/lm.h"
#include "lm/engine/gemm.h"
#include "lm/engine/llama.h"
#include "lm/engine/llama_model.h"
#include "lm/engine/lm_sample.h"

static char g_tmp[64];

static const char *tmp(const char *name) {
    static char buf[2][200];
    static int i;
    i = (i + 1) % 2;
    snprintf(buf[i], sizeof buf[i], "%s/%s", g_tmp, name);
    return buf[i];
}

static void rm_rf(const char *path) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", path);
}

/* Deterministic tokens below V. */
static void fill_tokens(int *tok, size_t n, int V, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        tok[i] = (int)((seed >> 8) % (unsigned)V);
    }
}

/* One forward of B sequences of T tokens through both models: the same
 * log-probabilities and logits, bit for bit. */
static void same_forward(const emdpo_llama *a, const emdpo_llama *f, int B, int T, const char *what) {
    const emdpo_llama_config *c = &a->config;
    int *tok = malloc((size_t)B * T * sizeof *tok), *lens = malloc((size_t)B * sizeof *lens);
    fill_tokens(tok, (size_t)B * T, c->vocab_size, (unsigned)(B * 31 + T));
    for (int b = 0; b < B; b++) lens[b] = T - b % (T > 3 ? 3 : 1);
    emdpo_llama_acts *x = NULL, *y = NULL;
    CHECK_EQ_INT(emdpo_llama_acts_create(c, B, T, 0, &x), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_acts_create(&f->config, B, T, 0, &y), EMDPO_OK);
    if (x && y) {
        CHECK_EQ_INT(emdpo_llama_forward(a, x, tok, lens, B, T), EMDPO_OK);
        CHECK_EQ_INT(emdpo_llama_forward(f, y, tok, lens, B, T), EMDPO_OK);
        size_t n = (size_t)B * T;
        CHECK_MSG(memcmp(x->logp, y->logp, n * sizeof(float)) == 0, "%s: B=%d T=%d: log-probs differ", what, B, T);
        CHECK_MSG(memcmp(x->logits, y->logits, n * c->vocab_size * sizeof(float)) == 0, "%s: B=%d T=%d: logits differ",
                  what, B, T);
    }
    emdpo_llama_acts_free(x);
    emdpo_llama_acts_free(y);
    free(tok);
    free(lens);
}

/* The decoder's logits at every position, and batched greedy tokens. */
static void same_decoding(const emdpo_llama *a, const emdpo_llama *f, const char *what) {
    const emdpo_llama_config *c = &a->config;
    enum { T = 9, N = 3, NEW = 6 };
    int tok[T];
    fill_tokens(tok, T, c->vocab_size, 7);
    emdpo_llama_kv *ka = NULL, *kf = NULL;
    CHECK_EQ_INT(emdpo_llama_kv_create(c, T, &ka), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_kv_create(&f->config, T, &kf), EMDPO_OK);
    int same = 1;
    for (int pos = 0; ka && kf && pos < T; pos++) {
        const float *la, *lf;
        CHECK_EQ_INT(emdpo_llama_step(a, ka, tok[pos], pos, &la), EMDPO_OK);
        CHECK_EQ_INT(emdpo_llama_step(f, kf, tok[pos], pos, &lf), EMDPO_OK);
        same &= memcmp(la, lf, (size_t)c->vocab_size * sizeof(float)) == 0;
    }
    CHECK_MSG(same, "%s: the decoder's logits differ", what);
    emdpo_llama_kv_free(ka);
    emdpo_llama_kv_free(kf);
    emdpo_sampler *s = NULL;
    CHECK_EQ_INT(emdpo_sampler_create(c->vocab_size, 0.0f, 0, 1.0f, &s), EMDPO_OK);
    int prompts[N][4], plen[N] = {4, 2, 3}, out_a[N * NEW] = {0}, out_f[N * NEW] = {0}, na[N] = {0}, nf[N] = {0};
    const int *pp[N];
    for (int i = 0; i < N; i++) {
        fill_tokens(prompts[i], 4, c->vocab_size, 100u + (unsigned)i);
        pp[i] = prompts[i];
    }
    if (s) {
        CHECK_EQ_INT(emdpo_generate_batch(a, s, 1, pp, plen, N, NEW, 4 + NEW, out_a, na, NULL), EMDPO_OK);
        CHECK_EQ_INT(emdpo_generate_batch(f, s, 1, pp, plen, N, NEW, 4 + NEW, out_f, nf, NULL), EMDPO_OK);
        CHECK_MSG(memcmp(na, nf, sizeof na) == 0 && memcmp(out_a, out_f, sizeof out_a) == 0,
                  "%s: greedy tokens differ", what);
    }
    emdpo_sampler_free(s);
}

/* What a frozen model holds and refuses. */
static void frozen_shape(const emdpo_llama *a, const emdpo_llama *f, int dtype, const char *what) {
    CHECK_MSG(f->frozen && f->frozen->dtype == dtype, "%s: not frozen as its dtype", what);
    CHECK(emdpo_llama_is_frozen(f) && !emdpo_llama_is_frozen(a));
    CHECK(emdpo_llama_n_params(f) == emdpo_llama_n_params(a));
    CHECK(f->params.wq == NULL && f->params.tok_emb == NULL && f->params.lm_head == NULL);
    /* half the bytes of the matrices, the rest in float32 */
    CHECK(f->frozen->n + f->num_params == a->num_params);
    CHECK(f->num_params < a->num_params / 10);
    CHECK(memcmp(f->params.rms_final, a->params.rms_final, (size_t)a->config.dim * sizeof(float)) == 0);
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_llama_save(f, tmp("never"), &d), EMDPO_ERR_INVALID_ARG);
    CHECK(strstr(d.msg, "frozen") != NULL);
    CHECK_EQ_INT(emdpo_llama_save_gguf(f, NULL, tmp("never.gguf"), "f16", &d), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_llama_save_llama2c(f, tmp("never.bin"), &d), EMDPO_ERR_INVALID_ARG);
    CHECK(access(tmp("never"), F_OK) != 0 && access(tmp("never.gguf"), F_OK) != 0);
    emdpo_llama_acts *x = NULL;
    int tok[4] = {1, 2, 3, 1};
    CHECK_EQ_INT(emdpo_llama_acts_create(&f->config, 1, 4, 1, &x), EMDPO_OK);
    if (x) {
        float dlogp[4] = {1, 1, 1, 0}, *grad = calloc(a->num_params, sizeof *grad);
        CHECK_EQ_INT(emdpo_llama_forward(f, x, tok, NULL, 1, 4), EMDPO_OK);
        CHECK_EQ_INT(emdpo_llama_backward(f, x, dlogp, grad), EMDPO_ERR_INVALID_ARG);
        free(grad);
    }
    emdpo_llama_acts_free(x);
}

/* A 16-bit file loaded both ways. */
static void compare(const char *path, int dtype, const char *what) {
    emdpo_llama *a = NULL, *f = NULL;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_llama_load(path, &a, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_load_frozen(path, &f, &d), EMDPO_OK);
    if (a && f) {
        frozen_shape(a, f, dtype, what);
        same_forward(a, f, 1, 11, what);  /* one chunk */
        same_forward(a, f, 45, 13, what); /* three chunks of 19 sequences */
        same_decoding(a, f, what);
    }
    emdpo_llama_free(a);
    emdpo_llama_free(f);
}

static void hf_family(const char *dir, const char *name) {
    emdpo_llama *m = NULL;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_llama_load(dir, &m, &d), EMDPO_OK);
    if (!m) return;
    /* F32 files load unfrozen */
    emdpo_llama *f32 = NULL;
    CHECK_EQ_INT(emdpo_llama_load_frozen(dir, &f32, &d), EMDPO_OK);
    CHECK(f32 && !emdpo_llama_is_frozen(f32));
    emdpo_llama_free(f32);
    static const emdpo_dtype dts[2] = {EMDPO_DTYPE_F16, EMDPO_DTYPE_BF16};
    for (int k = 0; k < 2; k++) {
        emdpo_llama_save_opts o;
        emdpo_llama_save_opts_init(&o);
        o.dtype = dts[k];
        char what[96];
        snprintf(what, sizeof what, "%s %s", name, emdpo_dtype_name(dts[k]));
        CHECK_EQ_INT(emdpo_llama_save_with(m, tmp("hf"), &o, &d), EMDPO_OK);
        compare(tmp("hf"), dts[k], what);
        rm_rf(tmp("hf"));
    }
    emdpo_llama_free(m);
}

static void gguf_file(const char *path, const char *name) {
    emdpo_llama *m = NULL;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_llama_load(path, &m, &d), EMDPO_OK);
    if (!m) return;
    static const char *const dts[2] = {"f16", "bf16"};
    static const int want[2] = {EMDPO_DTYPE_F16, EMDPO_DTYPE_BF16};
    for (int k = 0; k < 2; k++) {
        char what[96];
        snprintf(what, sizeof what, "%s GGUF %s", name, dts[k]);
        CHECK_EQ_INT(emdpo_llama_save_gguf(m, path, tmp("m.gguf"), dts[k], &d), EMDPO_OK);
        compare(tmp("m.gguf"), want[k], what);
        unlink(tmp("m.gguf"));
    }
    emdpo_llama_free(m);
}

/* Every fixture, as 16-bit files, both ways. */
static void all_fixtures(void) {
    static const char *const fam[] = {"llama3", "llama_bias", "mistral", "qwen2", "qwen3"};
    for (size_t i = 0; i < sizeof fam / sizeof *fam; i++) {
        char dir[128];
        snprintf(dir, sizeof dir, "tests/fixtures/hf_families/%s", fam[i]);
        if (access(dir, R_OK) == 0)
            hf_family(dir, fam[i]);
        else
            printf("skip: %s absent (run from the repository root)\n", dir);
    }
    static const char *const gg[] = {"llama3_rope", "qwen2", "qwen3"};
    for (size_t i = 0; i < sizeof gg / sizeof *gg; i++) {
        char path[128];
        snprintf(path, sizeof path, "tests/fixtures/gguf/%s.gguf", gg[i]);
        if (access(path, R_OK) == 0) gguf_file(path, gg[i]);
    }
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/emdpo_frozen_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    /* Where the kernel runs, passes of several chunks pack the widened
     * matrices for it; the BLAS path is then tested with it turned off. */
    int kernel = emdpo_gemm_kernel_active();
    all_fixtures();
    if (kernel) {
        setenv("EMDPO_GEMM", "blas", 1);
        all_fixtures();
    } else {
        printf("test_frozen: no AVX-512F here (or EMDPO_GEMM=blas): the kernel path is not tested\n");
    }
    rm_rf(g_tmp);
    return check_report("test_frozen");
}
