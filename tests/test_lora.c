/* LoRA adapters on the engine (lm/engine/lora.h, emdpo_llama_forward_lora
 * and _backward_lora), checked against the full model's backward, which
 * tests/test_llama_grad.c checks against PyTorch:
 *   - a fresh adapter (B = 0) leaves the base's outputs unchanged, bit for
 *     bit; a trained one gives the outputs of the merged model
 *     (emdpo_lora_merge) to float rounding;
 *   - the chain rule through W' = W + s B A: with dW the full gradient at
 *     the merged weights, dB = s dW Aᵀ and dA = s Bᵀ dW, for every adapted
 *     projection of every layer, any rank (up to full rank), rsLoRA's
 *     scale, a subset of targets, and every family variant (biases, q/k
 *     norms, an explicit head size, grouped queries);
 *   - central finite differences of the loss on a few coordinates;
 *   - the backward adds, repeats bit for bit, and gives the same bits on
 *     one thread as on two over several chunks;
 *   - a frozen 16-bit base gives the bits of its float32 twin;
 *   - dropout on the adapters' inputs (see dropout() below).
 * The loss is sum(cw * logp) with fixed per-token weights. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/half.h"
#include "base/rng.h"
#include "base/threads.h"
#include "check.h"
#include "emdpo.h"
#include "lm/engine/llama.h"
#include "lm/engine/llama_model.h"
#include "lm/engine/lora.h"

typedef struct batch {
    int B, T;
    int *tok, *lens;
    float *cw; /* (B, T) loss weights */
} batch;

static batch make_batch(int B, int T, int V, unsigned seed) {
    batch b = {B, T, malloc((size_t)B * T * sizeof(int)), malloc((size_t)B * sizeof(int)),
               malloc((size_t)B * T * sizeof(float))};
    for (int i = 0; i < B * T; i++) {
        seed = seed * 1103515245u + 12345u;
        b.tok[i] = (int)((seed >> 8) % (unsigned)V);
        b.cw[i] = (float)((seed >> 4) % 7) / 7.0f - 0.3f;
    }
    for (int i = 0; i < B; i++) b.lens[i] = T - i % 3;
    return b;
}

static void free_batch(batch *b) {
    free(b->tok);
    free(b->lens);
    free(b->cw);
}

/* sum(cw * logp) of base + lo (lo NULL: m alone). */
static double loss_of(const emdpo_llama *m, const emdpo_lora *lo, emdpo_llama_acts *a, const batch *b) {
    CHECK_EQ_INT(emdpo_llama_forward_lora(m, lo, a, b->tok, b->lens, b->B, b->T), EMDPO_OK);
    double s = 0.0;
    for (int i = 0; i < b->B * b->T; i++) s += (double)b->cw[i] * a->logp[i];
    return s;
}

static emdpo_llama *random_model(const emdpo_llama_config *c, uint64_t seed) {
    emdpo_llama *m = NULL;
    CHECK_EQ_INT(emdpo_llama_create(c, &m), EMDPO_OK);
    if (!m) return NULL;
    emdpo_llama_init(m, seed);
    /* norms and biases away from their 1 and 0, so that every path counts */
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, 99);
    size_t s[EMDPO_LLAMA_N_TENSORS];
    emdpo_llama_tensor_sizes(c, s);
    float *p = m->param_buf;
    for (int t = 0; t < EMDPO_LLAMA_N_TENSORS; t++, p += s[t - 1])
        if (t == 1 || t == 6 || t == 10 || t >= 12)
            for (size_t i = 0; i < s[t]; i++) p[i] += (float)(0.1 * emdpo_rng_normal(&r));
    return m;
}

/* An adapter with B not zero either. */
static emdpo_lora *random_lora(const emdpo_llama_config *c, const emdpo_lora_config *lc, uint64_t seed) {
    emdpo_lora *lo = NULL;
    CHECK_EQ_INT(emdpo_lora_create(c, lc, &lo), EMDPO_OK);
    if (!lo) return NULL;
    emdpo_lora_init(lo, seed);
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, 77);
    for (int t = 0; t < EMDPO_N_PROJ; t++) {
        int out, in;
        if (!lo->B[t]) continue;
        emdpo_llama_proj_shape(c, t, &out, &in);
        for (size_t i = 0; i < (size_t)c->n_layers * out * lc->r; i++) lo->B[t][i] = (float)(0.1 * emdpo_rng_normal(&r));
    }
    return lo;
}

static double max_rel(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 1e-12;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / den;
}

/* Backward of sum(cw * logp) for base + lo into a fresh adapter-shaped
 * gradient. */
static float *lora_grad(const emdpo_llama *m, const emdpo_lora *lo, emdpo_llama_acts *a, const batch *b) {
    float *g = calloc(lo->n, sizeof *g);
    loss_of(m, lo, a, b);
    CHECK_EQ_INT(emdpo_llama_backward_lora(m, lo, a, b->cw, g), EMDPO_OK);
    return g;
}

/* Worst relative error of g against central differences of the loss on
 * the adapter's coordinates first, first + step, ... */
static double fd_worst(const emdpo_llama *m, emdpo_lora *lo, emdpo_llama_acts *a, const batch *b, const float *g,
                       size_t first, size_t step) {
    double worst = 0.0;
    for (size_t i = first; i < lo->n; i += step) {
        float keep = lo->buf[i], h = 1e-2f;
        lo->buf[i] = keep + h;
        double up = loss_of(m, lo, a, b);
        lo->buf[i] = keep - h;
        double down = loss_of(m, lo, a, b);
        lo->buf[i] = keep;
        double fd = (up - down) / (2.0 * h);
        worst = fmax(worst, fabs(fd - g[i]) / (1e-2 + fabs(fd)));
    }
    return worst;
}

/* The chain rule against the full backward of the merged model. */
static void chain_rule(const emdpo_llama_config *c, const emdpo_lora_config *lc, const char *what) {
    emdpo_llama *m = random_model(c, 5), *merged = random_model(c, 5);
    emdpo_lora *lo = random_lora(c, lc, 11);
    batch b = make_batch(3, 9, c->vocab_size, 3);
    emdpo_llama_acts *a = NULL;
    CHECK_EQ_INT(emdpo_llama_acts_create_lora(c, lc->r, b.B, b.T, 1, &a), EMDPO_OK);
    if (!m || !merged || !lo || !a) return;
    CHECK_EQ_INT(emdpo_lora_merge(lo, merged), EMDPO_OK);
    /* the outputs of the merged model */
    double l1 = loss_of(m, lo, a, &b);
    float *logp = malloc((size_t)b.B * b.T * sizeof *logp);
    memcpy(logp, a->logp, (size_t)b.B * b.T * sizeof *logp);
    double l2 = loss_of(merged, NULL, a, &b);
    CHECK_MSG(fabs(l1 - l2) < 1e-4 * (1 + fabs(l2)) && max_rel(logp, a->logp, (size_t)b.B * b.T) < 1e-5,
              "%s: base + adapter %.9g, merged %.9g", what, l1, l2);
    /* dW at the merged weights */
    float *gw = calloc(merged->num_params, sizeof *gw);
    loss_of(merged, NULL, a, &b);
    CHECK_EQ_INT(emdpo_llama_backward(merged, a, b.cw, gw), EMDPO_OK);
    emdpo_llama_params gp;
    emdpo_llama_point_params(c, gw, &gp);
    float *dW[EMDPO_N_PROJ];
    emdpo_llama_proj_weights(&gp, dW);
    float *g = lora_grad(m, lo, a, &b), *gA[EMDPO_N_PROJ], *gB[EMDPO_N_PROJ];
    emdpo_lora_point(c, lc, g, gA, gB);
    int r = lc->r;
    double s = emdpo_lora_scale(lc), worst = 0.0;
    for (int t = 0; t < EMDPO_N_PROJ; t++) {
        int out, in;
        emdpo_llama_proj_shape(c, t, &out, &in);
        if (!lo->A[t]) {
            CHECK(!gA[t] && !(lc->targets & (1u << t)));
            continue;
        }
        for (int l = 0; l < c->n_layers; l++) {
            const float *A = lo->A[t] + (size_t)l * r * in, *B = lo->B[t] + (size_t)l * out * r;
            const float *dw = dW[t] + (size_t)l * out * in;
            size_t na = (size_t)r * in, nb = (size_t)out * r;
            float *wantA = malloc(na * sizeof(float)), *wantB = malloc(nb * sizeof(float));
            for (int k = 0; k < r; k++)
                for (int j = 0; j < in; j++) {
                    double v = 0.0; /* s Bᵀ dW */
                    for (int i = 0; i < out; i++) v += (double)B[(size_t)i * r + k] * dw[(size_t)i * in + j];
                    wantA[(size_t)k * in + j] = (float)(s * v);
                }
            for (int i = 0; i < out; i++)
                for (int k = 0; k < r; k++) {
                    double v = 0.0; /* s dW Aᵀ */
                    for (int j = 0; j < in; j++) v += (double)dw[(size_t)i * in + j] * A[(size_t)k * in + j];
                    wantB[(size_t)i * r + k] = (float)(s * v);
                }
            worst = fmax(worst, max_rel(gA[t] + (size_t)l * na, wantA, na));
            worst = fmax(worst, max_rel(gB[t] + (size_t)l * nb, wantB, nb));
            free(wantA);
            free(wantB);
        }
    }
    CHECK_MSG(worst < 2e-4, "%s: adapter gradient vs the chain rule on the full one: %.3g", what, worst);
    /* central differences on a few coordinates of the adapter */
    double fd = fd_worst(m, lo, a, &b, g, 1, lo->n / 7 + 1);
    CHECK_MSG(fd < 2e-2, "%s: finite differences %.3g", what, fd);
    /* the backward adds */
    loss_of(m, lo, a, &b);
    CHECK_EQ_INT(emdpo_llama_backward_lora(m, lo, a, b.cw, g), EMDPO_OK);
    float *g1 = lora_grad(m, lo, a, &b);
    int adds = 1;
    for (size_t i = 0; i < lo->n; i++) adds &= g[i] == 2.0f * g1[i];
    CHECK_MSG(adds, "%s: the backward does not add into grad", what);
    free(g1);
    free(g);
    free(gw);
    free(logp);
    free_batch(&b);
    emdpo_llama_acts_free(a);
    emdpo_lora_free(lo);
    emdpo_llama_free(m);
    emdpo_llama_free(merged);
}

/* A fresh adapter changes nothing; a NULL one is the base. */
static void fresh_adapter(const emdpo_llama_config *c) {
    emdpo_llama *m = random_model(c, 8);
    emdpo_lora_config lc;
    emdpo_lora_config_init(&lc);
    lc.r = 3;
    emdpo_lora *lo = NULL;
    CHECK_EQ_INT(emdpo_lora_create(c, &lc, &lo), EMDPO_OK);
    batch b = make_batch(2, 7, c->vocab_size, 9);
    emdpo_llama_acts *a = NULL;
    CHECK_EQ_INT(emdpo_llama_acts_create_lora(c, 3, b.B, b.T, 0, &a), EMDPO_OK);
    if (!m || !lo || !a) return;
    emdpo_lora_init(lo, 4);
    int nonzero = 0;
    for (size_t i = 0; i < lo->n; i++) nonzero += lo->buf[i] != 0.0f;
    CHECK(nonzero > 0);
    size_t n = (size_t)b.B * b.T * c->vocab_size;
    float *base = malloc(n * sizeof *base);
    loss_of(m, NULL, a, &b);
    memcpy(base, a->logits, n * sizeof *base);
    loss_of(m, lo, a, &b);
    CHECK_MSG(memcmp(base, a->logits, n * sizeof *base) == 0, "a fresh adapter changed the logits");
    /* an adapter of higher rank than the activations have room for */
    emdpo_lora *big = NULL;
    lc.r = 4;
    CHECK_EQ_INT(emdpo_lora_create(c, &lc, &big), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_forward_lora(m, big, a, b.tok, b.lens, b.B, b.T), EMDPO_ERR_INVALID_ARG);
    float g[1];
    CHECK_EQ_INT(emdpo_llama_backward_lora(m, lo, a, b.cw, g), EMDPO_ERR_INVALID_ARG); /* no training buffers */
    emdpo_lora_free(big);
    free(base);
    free_batch(&b);
    emdpo_llama_acts_free(a);
    emdpo_lora_free(lo);
    emdpo_llama_free(m);
}

/* Several chunks on one thread and on two, a frozen 16-bit base, and
 * activation checkpointing (both bases, two threads): the same bits. */
static void threads_and_frozen(const emdpo_llama_config *c, float dropout) {
    emdpo_lora_config lc;
    emdpo_lora_config_init(&lc);
    lc.r = 4;
    lc.dropout = dropout;
    emdpo_llama *m = random_model(c, 21), *f = NULL;
    emdpo_lora *lo = random_lora(c, &lc, 22);
    batch b = make_batch(70, 8, c->vocab_size, 5); /* chunks of 32 sequences */
    if (!m || !lo) return;
    /* the base rounded to bf16, as a float32 model and as a frozen one */
    CHECK_EQ_INT(emdpo_llama_create_frozen(c, EMDPO_DTYPE_BF16, &f), EMDPO_OK);
    if (!f) return;
    float *w32[EMDPO_N_PROJ];
    emdpo_llama_proj_weights(&m->params, w32);
    for (size_t i = 0; i < m->num_params; i++) m->param_buf[i] = emdpo_bf16_to_float(emdpo_float_to_bf16(m->param_buf[i]));
    size_t V = (size_t)c->vocab_size, C = (size_t)c->dim;
    for (size_t i = 0; i < V * C; i++) f->frozen->tok_emb[i] = emdpo_float_to_bf16(m->params.tok_emb[i]);
    for (int t = 0; t < EMDPO_N_PROJ; t++) {
        int out, in;
        emdpo_llama_proj_shape(c, t, &out, &in);
        for (size_t i = 0; i < (size_t)c->n_layers * out * in; i++) f->frozen->w[t][i] = emdpo_float_to_bf16(w32[t][i]);
    }
    memcpy(f->params.rms_att, m->params.rms_att, (size_t)c->n_layers * C * sizeof(float));
    memcpy(f->params.rms_ffn, m->params.rms_ffn, (size_t)c->n_layers * C * sizeof(float));
    memcpy(f->params.rms_final, m->params.rms_final, C * sizeof(float));
    if (!c->tied)
        for (size_t i = 0; i < V * C; i++) f->frozen->lm_head[i] = emdpo_float_to_bf16(m->params.lm_head[i]);
    size_t L = (size_t)c->n_layers, hs = (size_t)emdpo_llama_head_size(c);
    size_t qd = (size_t)c->n_heads * hs, kvd = (size_t)c->n_kv_heads * hs;
    if (c->qk_norm) {
        memcpy(f->params.q_norm, m->params.q_norm, L * hs * sizeof(float));
        memcpy(f->params.k_norm, m->params.k_norm, L * hs * sizeof(float));
    }
    if (c->qkv_bias) {
        memcpy(f->params.bq, m->params.bq, L * qd * sizeof(float));
        memcpy(f->params.bk, m->params.bk, L * kvd * sizeof(float));
        memcpy(f->params.bv, m->params.bv, L * kvd * sizeof(float));
    }
    if (c->o_bias) memcpy(f->params.bo, m->params.bo, L * C * sizeof(float));
    /* runs: float32 base on 1 and 2 threads, frozen base, then both checkpointed on 2 threads */
    float *g[5];
    for (int run = 0; run < 5; run++) {
        emdpo_set_threads(run == 0 || run == 2 ? 1 : 2);
        emdpo_llama_acts *a = NULL;
        int mode = run >= 3 ? EMDPO_ACTS_TRAIN_CKPT : EMDPO_ACTS_TRAIN;
        CHECK_EQ_INT(emdpo_llama_acts_create_lora(c, lc.r, b.B, b.T, mode, &a), EMDPO_OK);
        if (a) a->lora_seed = 77;
        g[run] = a ? lora_grad(run == 2 || run == 4 ? f : m, lo, a, &b) : calloc(lo->n, sizeof(float));
        emdpo_llama_acts_free(a);
    }
    emdpo_set_threads(1);
    CHECK_MSG(memcmp(g[0], g[1], lo->n * sizeof(float)) == 0, "L %d: one thread and two differ", c->n_layers);
    CHECK_MSG(memcmp(g[0], g[2], lo->n * sizeof(float)) == 0, "L %d: a frozen bf16 base differs from its float32 twin",
              c->n_layers);
    CHECK_MSG(memcmp(g[0], g[3], lo->n * sizeof(float)) == 0, "L %d: checkpointing changes the gradient", c->n_layers);
    CHECK_MSG(memcmp(g[0], g[4], lo->n * sizeof(float)) == 0, "L %d: checkpointing on a frozen base changes it",
              c->n_layers);
    double norm = 0.0;
    for (size_t i = 0; i < lo->n; i++) norm += fabs(g[0][i]);
    CHECK(norm > 0.0);
    for (int run = 0; run < 5; run++) free(g[run]);
    free_batch(&b);
    emdpo_lora_free(lo);
    emdpo_llama_free(m);
    emdpo_llama_free(f);
}

static void test_config(void) {
    emdpo_lora_config lc;
    emdpo_lora_config_init(&lc);
    CHECK(lc.r == 16 && lc.alpha == 32.0f && lc.dropout == 0.0f && lc.targets == EMDPO_LORA_ALL_TARGETS);
    CHECK(emdpo_lora_scale(&lc) == 2.0f);
    lc.rslora = 1;
    CHECK(emdpo_lora_scale(&lc) == 8.0f);
    CHECK_EQ_INT(emdpo_lora_config_check(&lc), EMDPO_OK);
    lc.r = 0;
    CHECK_EQ_INT(emdpo_lora_config_check(&lc), EMDPO_ERR_INVALID_ARG);
    lc.r = 2;
    lc.targets = 0;
    CHECK_EQ_INT(emdpo_lora_config_check(&lc), EMDPO_ERR_INVALID_ARG);
    lc.targets = 1u << EMDPO_N_PROJ;
    CHECK_EQ_INT(emdpo_lora_config_check(&lc), EMDPO_ERR_INVALID_ARG);
    lc.targets = 1;
    lc.dropout = 1.0f;
    CHECK_EQ_INT(emdpo_lora_config_check(&lc), EMDPO_ERR_INVALID_ARG);
    lc.dropout = 0.0f;
    lc.alpha = NAN;
    CHECK_EQ_INT(emdpo_lora_config_check(&lc), EMDPO_ERR_INVALID_ARG);
    unsigned t = 99;
    CHECK_EQ_INT(emdpo_lora_targets_parse("q_proj,v_proj,down_proj", &t), EMDPO_OK);
    CHECK(t == ((1u << EMDPO_PROJ_Q) | (1u << EMDPO_PROJ_V) | (1u << EMDPO_PROJ_DOWN)));
    CHECK_EQ_INT(emdpo_lora_targets_parse("all-linear", &t), EMDPO_OK);
    CHECK(t == EMDPO_LORA_ALL_TARGETS);
    CHECK_EQ_INT(emdpo_lora_targets_parse("gate_proj,up_proj", &t), EMDPO_OK);
    CHECK(t == ((1u << EMDPO_PROJ_GATE) | (1u << EMDPO_PROJ_UP)));
    static const char *const bad[] = {"", "q_proj,", ",q_proj", "q_pro", "q_proj,lm_head", "Q_PROJ", "q_proj v_proj"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_EQ_INT(emdpo_lora_targets_parse(bad[i], &t), EMDPO_ERR_INVALID_ARG);
        CHECK(t == 0);
    }
    CHECK(strcmp(emdpo_lora_target_name(EMDPO_PROJ_GATE), "gate_proj") == 0 && !emdpo_lora_target_name(7));
}

/* Dropout on the adapters' inputs (training acts only): the loss with the
 * masks of one seed is a smooth function whose gradient the backward
 * gives (central differences), the masks drop about p of the inputs and
 * depend on the seed alone (one thread or two, a chunk or several), and a
 * pass without training runs no dropout. */
static void dropout(const emdpo_llama_config *c) {
    emdpo_lora_config lc;
    emdpo_lora_config_init(&lc);
    lc.r = 3;
    lc.dropout = 0.3f;
    emdpo_llama *m = random_model(c, 31);
    emdpo_lora *lo = random_lora(c, &lc, 32);
    batch b = make_batch(3, 9, c->vocab_size, 4);
    emdpo_llama_acts *a = NULL, *e = NULL;
    CHECK_EQ_INT(emdpo_llama_acts_create_lora(c, lc.r, b.B, b.T, 1, &a), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_acts_create_lora(c, lc.r, b.B, b.T, 0, &e), EMDPO_OK);
    if (!m || !lo || !a || !e) return;
    a->lora_seed = 12345;
    float *g = lora_grad(m, lo, a, &b);
    double fd = fd_worst(m, lo, a, &b, g, 2, lo->n / 9 + 1);
    CHECK_MSG(fd < 2e-2, "dropout: finite differences %.3g", fd);
    /* about p of the inputs dropped: lora_x holds the last projection's x' */
    loss_of(m, lo, a, &b);
    size_t zero = 0, n = (size_t)b.B * b.T * c->hidden_dim;
    for (size_t i = 0; i < n; i++) zero += a->lora_x[i] == 0.0f;
    CHECK_MSG(fabs((double)zero / n - 0.3) < 0.05, "dropout: %.3f of the inputs dropped", (double)zero / n);
    /* training and evaluation differ; evaluation is the adapter without dropout */
    double lt = loss_of(m, lo, a, &b), le = loss_of(m, lo, e, &b);
    lo->config.dropout = 0.0f;
    double l0 = loss_of(m, lo, e, &b);
    lo->config.dropout = 0.3f;
    CHECK(lt != le && le == l0);
    /* another seed, other masks */
    a->lora_seed = 54321;
    CHECK(loss_of(m, lo, a, &b) != lt);
    free(g);
    /* several chunks, one thread and two */
    batch big = make_batch(70, 8, c->vocab_size, 6);
    float *gs[2];
    for (int th = 0; th < 2; th++) {
        emdpo_set_threads(th + 1);
        emdpo_llama_acts *x = NULL;
        CHECK_EQ_INT(emdpo_llama_acts_create_lora(c, lc.r, big.B, big.T, 1, &x), EMDPO_OK);
        if (x) x->lora_seed = 99;
        gs[th] = x ? lora_grad(m, lo, x, &big) : calloc(lo->n, sizeof(float));
        emdpo_llama_acts_free(x);
    }
    emdpo_set_threads(1);
    CHECK_MSG(memcmp(gs[0], gs[1], lo->n * sizeof(float)) == 0, "dropout: one thread and two differ");
    free(gs[0]);
    free(gs[1]);
    free_batch(&big);
    free_batch(&b);
    emdpo_llama_acts_free(a);
    emdpo_llama_acts_free(e);
    emdpo_lora_free(lo);
    emdpo_llama_free(m);
}

int main(void) {
    emdpo_set_threads(1);
    test_config();
    emdpo_llama_config plain = {.dim = 16, .hidden_dim = 24, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                                .vocab_size = 37, .max_seq_len = 16, .tied = 1, .norm_eps = 1e-5f,
                                .rope_theta = 10000.0f};
    emdpo_llama_config qwen3 = plain, qwen2 = plain;
    qwen3.head_dim = 6;
    qwen3.qk_norm = 1;
    qwen3.tied = 0;
    qwen3.arch = EMDPO_ARCH_QWEN3;
    qwen2.qkv_bias = 1;
    qwen2.o_bias = 1;
    qwen2.arch = EMDPO_ARCH_QWEN2;
    emdpo_lora_config lc;
    emdpo_lora_config_init(&lc);
    lc.r = 3;
    lc.alpha = 5.0f;
    chain_rule(&plain, &lc, "llama r=3");
    chain_rule(&qwen3, &lc, "qwen3 r=3");
    chain_rule(&qwen2, &lc, "qwen2 r=3");
    lc.rslora = 1;
    lc.targets = (1u << EMDPO_PROJ_Q) | (1u << EMDPO_PROJ_V) | (1u << EMDPO_PROJ_DOWN);
    chain_rule(&plain, &lc, "llama rslora, q v down");
    lc.rslora = 0;
    lc.targets = EMDPO_LORA_ALL_TARGETS;
    lc.r = 24; /* full rank for every projection */
    chain_rule(&plain, &lc, "llama full rank");
    fresh_adapter(&plain);
    threads_and_frozen(&plain, 0.0f);
    /* three of five layers recomputed when checkpointing; qd 24 > C 16, whose input gradients once overlapped
     * between chunks on two threads */
    emdpo_llama_config deep = qwen3;
    deep.n_layers = 5;
    threads_and_frozen(&deep, 0.25f);
    dropout(&plain);
    return check_report("test_lora");
}
