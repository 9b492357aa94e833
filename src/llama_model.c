#include "llama_model.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cblas.h>

#include "alloc.h"
#include "emdpo.h"
#include "llama_ops.h"
#include "threads.h"

/* Hands out consecutive pieces of one buffer. Run once with base NULL to
 * count (with overflow checks), then again over the allocation. */
typedef struct carve {
    float *base;
    size_t used;
    int overflow;
} carve;

static float *take(carve *cv, size_t a, size_t b) {
    if (cv->overflow || (a && b > SIZE_MAX / 8 / a) || a * b > SIZE_MAX / 8 - cv->used) {
        cv->overflow = 1;
        return NULL;
    }
    float *p = cv->base ? cv->base + cv->used : NULL;
    cv->used += a * b;
    return p;
}

static int same_config(const emdpo_llama_config *x, const emdpo_llama_config *y) {
    return x->dim == y->dim && x->hidden_dim == y->hidden_dim && x->n_layers == y->n_layers &&
           x->n_heads == y->n_heads && x->n_kv_heads == y->n_kv_heads && x->vocab_size == y->vocab_size &&
           x->max_seq_len == y->max_seq_len && x->tied == y->tied && x->norm_eps == y->norm_eps &&
           x->rope_theta == y->rope_theta;
}

static void acts_layout(emdpo_llama_acts *a, carve *cv) {
    const emdpo_llama_config *c = &a->config;
    size_t N = (size_t)a->max_B * a->max_T, L = (size_t)c->n_layers, C = (size_t)c->dim, H = (size_t)c->hidden_dim;
    size_t V = (size_t)c->vocab_size, hs = C / (size_t)c->n_heads, kvd = (size_t)c->n_kv_heads * hs;
    size_t LN = L * N; /* L and N are each checked below through take() */
    a->encoded = take(cv, N, C);
    a->ln1 = take(cv, LN, C);
    a->ln1_rstd = take(cv, LN, 1);
    a->q = take(cv, LN, C);
    a->k = take(cv, LN, kvd);
    a->v = take(cv, LN, kvd);
    a->att = take(cv, LN, (size_t)c->n_heads * (size_t)a->max_T);
    a->atty = take(cv, LN, C);
    a->res2 = take(cv, LN, C);
    a->ln2 = take(cv, LN, C);
    a->ln2_rstd = take(cv, LN, 1);
    a->h1 = take(cv, LN, H);
    a->h3 = take(cv, LN, H);
    a->hg = take(cv, LN, H);
    a->res3 = take(cv, LN, C);
    a->lnf = take(cv, N, C);
    a->lnf_rstd = take(cv, N, 1);
    a->logits = take(cv, N, V);
    a->lse = take(cv, N, 1);
    a->logp = take(cv, N, 1);
    a->rope_cos = take(cv, (size_t)a->max_T, hs / 2);
    a->rope_sin = take(cv, (size_t)a->max_T, hs / 2);
    a->scratch = take(cv, N, C);
    if (!a->training) return;
    a->dres = take(cv, N, C);
    a->dln = take(cv, N, C);
    a->datty = take(cv, N, C);
    a->dq = take(cv, N, C);
    a->dqp = take(cv, N, C);
    a->dk = take(cv, N, kvd);
    a->dkp = take(cv, N, kvd);
    a->dv = take(cv, N, kvd);
    a->dh1 = take(cv, N, H);
    a->dh3 = take(cv, N, H);
    a->dhg = take(cv, N, H);
    a->dlogits = take(cv, N, V);
}

int emdpo_llama_acts_create(const emdpo_llama_config *c, int max_B, int max_T, int training, emdpo_llama_acts **out) {
    *out = NULL;
    int rc = emdpo_llama_config_check(c);
    if (rc) return rc;
    if (max_B < 1 || max_T < 1 || max_T > c->max_seq_len) return EMDPO_ERR_INVALID_ARG;
    /* sgemm takes the row count B*T as an int */
    if (max_B > INT_MAX / max_T || (size_t)c->n_layers * (size_t)max_B * max_T > SIZE_MAX / 8) return EMDPO_ERR_LIMIT;
    emdpo_llama_acts *a = emdpo_calloc(1, sizeof *a);
    if (!a) return EMDPO_ERR_NOMEM;
    a->config = *c;
    a->max_B = max_B;
    a->max_T = max_T;
    a->training = training != 0;
    carve cv = {NULL, 0, 0};
    acts_layout(a, &cv);
    size_t N = (size_t)max_B * max_T;
    if (cv.overflow || N > (SIZE_MAX / sizeof(int) - max_B) / 2) {
        emdpo_free(a, sizeof *a);
        return EMDPO_ERR_LIMIT;
    }
    a->buf_n = cv.used;
    a->ibuf_n = 2 * N + (size_t)max_B;
    a->buf = emdpo_malloc(a->buf_n * sizeof(float));
    a->ibuf = emdpo_malloc(a->ibuf_n * sizeof(int));
    if (!a->buf || !a->ibuf) {
        emdpo_llama_acts_free(a);
        return EMDPO_ERR_NOMEM;
    }
    cv = (carve){a->buf, 0, 0};
    acts_layout(a, &cv);
    a->tokens = a->ibuf;
    a->targets = a->ibuf + N;
    a->lens = a->ibuf + 2 * N;
    *out = a;
    return EMDPO_OK;
}

void emdpo_llama_acts_free(emdpo_llama_acts *a) {
    if (!a) return;
    emdpo_free(a->buf, a->buf_n * sizeof(float));
    emdpo_free(a->ibuf, a->ibuf_n * sizeof(int));
    emdpo_free(a, sizeof *a);
}

/* The backward's first write into a fresh gradient buffer overwrites it
 * (sgemm beta 0, set-variants of the element-wise backwards), which spares
 * a memset pass over each buffer; later uses accumulate as the ops do. */

/* out (N, OC) = res + inp · wᵀ: the residual add folded into the sgemm. */
static void matmul_add(float *out, const float *res, const float *inp, const float *w, int N, int IC, int OC) {
    memcpy(out, res, (size_t)N * OC * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, IC, 1.0f, out, OC);
}

/* dinp (N, IC) = dout · w, overwriting. */
static void matmul_dinp_set(float *dinp, const float *dout, const float *w, int N, int IC, int OC) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, w, IC, 0.0f, dinp, IC);
}

/* emdpo_logprob_backward into a buffer it overwrites (zero rows without a target). */
static void logprob_backward_set(float *dlogits, const float *dlogp, const float *logits, const float *lse,
                                 const int *targets, size_t N, int V) {
    long nn = (long)N;
#pragma omp parallel for schedule(static) if ((double)N * V >= EMDPO_PAR_MIN_WORK)
    for (long n = 0; n < nn; n++) {
        float *d = dlogits + (size_t)n * V;
        if (targets[n] < 0) {
            memset(d, 0, (size_t)V * sizeof(float));
            continue;
        }
        const float *l = logits + (size_t)n * V;
        float g = dlogp[n], s = lse[n];
        for (int i = 0; i < V; i++) d[i] = -g * expf(l[i] - s);
        d[targets[n]] += g;
    }
}

/* emdpo_swiglu_backward into buffers it overwrites. */
static void swiglu_backward_set(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3, size_t n) {
    long nn = (long)n;
#pragma omp parallel for schedule(static) if (n >= EMDPO_PAR_MIN_WORK)
    for (long i = 0; i < nn; i++) {
        float x = h1[i], sg = 1.0f / (1.0f + expf(-x)), g = dout[i];
        dh1[i] = g * h3[i] * sg * (1.0f + x * (1.0f - sg));
        dh3[i] = g * x * sg;
    }
}

int emdpo_llama_forward(const emdpo_llama *m, emdpo_llama_acts *a, const int *tokens, const int *lens, int B, int T) {
    const emdpo_llama_config *c = &m->config;
    if (!same_config(c, &a->config) || B < 1 || B > a->max_B || T < 1 || T > a->max_T) return EMDPO_ERR_INVALID_ARG;
    for (int b = 0; b < B; b++) {
        int len = lens ? lens[b] : T;
        if (len < 0 || len > T) return EMDPO_ERR_INVALID_ARG;
        for (int t = 0; t < len; t++)
            if (tokens[(size_t)b * T + t] < 0 || tokens[(size_t)b * T + t] >= c->vocab_size) return EMDPO_ERR_INVALID_ARG;
    }
    int C = c->dim, H = c->hidden_dim, V = c->vocab_size, NH = c->n_heads, NKV = c->n_kv_heads;
    int hs = C / NH, kvd = NKV * hs, N = B * T;
    size_t NC = (size_t)N * C, NK = (size_t)N * kvd, NHd = (size_t)N * H;
    const emdpo_llama_params *p = &m->params;
    a->B = B;
    a->T = T;
    for (int b = 0; b < B; b++) {
        int len = lens ? lens[b] : T;
        a->lens[b] = len;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            a->tokens[i] = t < len ? tokens[i] : 0;
            a->targets[i] = t + 1 < len ? tokens[i + 1] : -1;
        }
    }
    emdpo_rope_table(a->rope_cos, a->rope_sin, 0, T, hs, c->rope_theta);
    emdpo_embed_forward(a->encoded, a->tokens, p->tok_emb, (size_t)N, C);
    for (int l = 0; l < c->n_layers; l++) {
        const float *x = l ? a->res3 + (l - 1) * NC : a->encoded;
        float *ln1 = a->ln1 + l * NC, *q = a->q + l * NC, *k = a->k + l * NK, *v = a->v + l * NK;
        float *att = a->att + (size_t)l * N * NH * T, *atty = a->atty + l * NC, *res2 = a->res2 + l * NC;
        float *ln2 = a->ln2 + l * NC, *h1 = a->h1 + l * NHd, *h3 = a->h3 + l * NHd, *hg = a->hg + l * NHd;
        size_t lC = (size_t)l * C, lCC = lC * C, lKC = (size_t)l * kvd * C, lHC = (size_t)l * H * C;
        emdpo_rmsnorm_forward(ln1, a->ln1_rstd + (size_t)l * N, x, p->rms_att + lC, (size_t)N, C, c->norm_eps);
        emdpo_matmul_forward(a->scratch, ln1, p->wq + lCC, N, C, C);
        emdpo_rope_forward(q, a->scratch, a->rope_cos, a->rope_sin, B, T, NH, hs);
        emdpo_matmul_forward(a->scratch, ln1, p->wk + lKC, N, C, kvd);
        emdpo_rope_forward(k, a->scratch, a->rope_cos, a->rope_sin, B, T, NKV, hs);
        emdpo_matmul_forward(v, ln1, p->wv + lKC, N, C, kvd);
        emdpo_attention_forward(atty, att, q, k, v, a->lens, B, T, NH, NKV, hs);
        matmul_add(res2, x, atty, p->wo + lCC, N, C, C);
        emdpo_rmsnorm_forward(ln2, a->ln2_rstd + (size_t)l * N, res2, p->rms_ffn + lC, (size_t)N, C, c->norm_eps);
        emdpo_matmul_forward(h1, ln2, p->w1 + lHC, N, C, H);
        emdpo_matmul_forward(h3, ln2, p->w3 + lHC, N, C, H);
        emdpo_swiglu_forward(hg, h1, h3, NHd);
        matmul_add(a->res3 + l * NC, res2, hg, p->w2 + lHC, N, H, C);
    }
    emdpo_rmsnorm_forward(a->lnf, a->lnf_rstd, a->res3 + (c->n_layers - 1) * NC, p->rms_final, (size_t)N, C,
                          c->norm_eps);
    emdpo_matmul_forward(a->logits, a->lnf, p->lm_head, N, C, V);
    emdpo_logprob_forward(a->logp, a->lse, a->logits, a->targets, (size_t)N, V);
    return EMDPO_OK;
}

/* The residual adds pass the stream's gradient through unchanged, so dres
 * holds dL/d(layer output) on entry to each layer and dL/d(layer input)
 * after it, with each branch's contribution added on the way. */
int emdpo_llama_backward(const emdpo_llama *m, emdpo_llama_acts *a, const float *dlogp, float *grad) {
    const emdpo_llama_config *c = &m->config;
    if (!same_config(c, &a->config) || !a->training || a->B < 1) return EMDPO_ERR_INVALID_ARG;
    int B = a->B, T = a->T, C = c->dim, H = c->hidden_dim, V = c->vocab_size, NH = c->n_heads, NKV = c->n_kv_heads;
    int hs = C / NH, kvd = NKV * hs, N = B * T;
    size_t NC = (size_t)N * C, NK = (size_t)N * kvd, NHd = (size_t)N * H;
    const emdpo_llama_params *p = &m->params;
    emdpo_llama_params g;
    emdpo_llama_point_params(c, grad, &g);

    logprob_backward_set(a->dlogits, dlogp, a->logits, a->lse, a->targets, (size_t)N, V);
    matmul_dinp_set(a->dln, a->dlogits, p->lm_head, N, C, V);
    emdpo_matmul_backward(NULL, g.lm_head, a->dlogits, a->lnf, p->lm_head, N, C, V);
    memset(a->dres, 0, NC * sizeof(float));
    emdpo_rmsnorm_backward(a->dres, g.rms_final, a->dln, a->res3 + (c->n_layers - 1) * NC, p->rms_final,
                           a->lnf_rstd, (size_t)N, C);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const float *x = l ? a->res3 + (l - 1) * NC : a->encoded;
        const float *ln1 = a->ln1 + l * NC, *q = a->q + l * NC, *k = a->k + l * NK, *v = a->v + l * NK;
        const float *att = a->att + (size_t)l * N * NH * T, *atty = a->atty + l * NC, *res2 = a->res2 + l * NC;
        const float *ln2 = a->ln2 + l * NC, *h1 = a->h1 + l * NHd, *h3 = a->h3 + l * NHd, *hg = a->hg + l * NHd;
        size_t lC = (size_t)l * C, lCC = lC * C, lKC = (size_t)l * kvd * C, lHC = (size_t)l * H * C;
        /* FFN branch: res3 = res2 + w2(silu(w1 ln2) * w3 ln2) */
        matmul_dinp_set(a->dhg, a->dres, p->w2 + lHC, N, H, C);
        emdpo_matmul_backward(NULL, g.w2 + lHC, a->dres, hg, p->w2 + lHC, N, H, C);
        swiglu_backward_set(a->dh1, a->dh3, a->dhg, h1, h3, NHd);
        matmul_dinp_set(a->dln, a->dh1, p->w1 + lHC, N, C, H);
        emdpo_matmul_backward(NULL, g.w1 + lHC, a->dh1, ln2, p->w1 + lHC, N, C, H);
        emdpo_matmul_backward(a->dln, g.w3 + lHC, a->dh3, ln2, p->w3 + lHC, N, C, H);
        emdpo_rmsnorm_backward(a->dres, g.rms_ffn + lC, a->dln, res2, p->rms_ffn + lC, a->ln2_rstd + (size_t)l * N,
                               (size_t)N, C);
        /* Attention branch: res2 = x + wo(attention(rope(wq ln1), rope(wk ln1), wv ln1)) */
        matmul_dinp_set(a->datty, a->dres, p->wo + lCC, N, C, C);
        emdpo_matmul_backward(NULL, g.wo + lCC, a->dres, atty, p->wo + lCC, N, C, C);
        memset(a->dq, 0, NC * sizeof(float));
        memset(a->dk, 0, NK * sizeof(float));
        memset(a->dv, 0, NK * sizeof(float));
        emdpo_attention_backward(a->dq, a->dk, a->dv, a->datty, q, k, v, att, a->lens, B, T, NH, NKV, hs);
        memset(a->dqp, 0, NC * sizeof(float));
        memset(a->dkp, 0, NK * sizeof(float));
        emdpo_rope_backward(a->dqp, a->dq, a->rope_cos, a->rope_sin, B, T, NH, hs);
        emdpo_rope_backward(a->dkp, a->dk, a->rope_cos, a->rope_sin, B, T, NKV, hs);
        matmul_dinp_set(a->dln, a->dqp, p->wq + lCC, N, C, C);
        emdpo_matmul_backward(NULL, g.wq + lCC, a->dqp, ln1, p->wq + lCC, N, C, C);
        emdpo_matmul_backward(a->dln, g.wk + lKC, a->dkp, ln1, p->wk + lKC, N, C, kvd);
        emdpo_matmul_backward(a->dln, g.wv + lKC, a->dv, ln1, p->wv + lKC, N, C, kvd);
        emdpo_rmsnorm_backward(a->dres, g.rms_att + lC, a->dln, x, p->rms_att + lC, a->ln1_rstd + (size_t)l * N,
                               (size_t)N, C);
    }
    emdpo_embed_backward(g.tok_emb, a->dres, a->tokens, (size_t)N, C);
    return EMDPO_OK;
}

static int span_ok(const emdpo_llama_acts *a, const int *start, const int *end) {
    if (a->B < 1) return 0;
    for (int b = 0; b < a->B; b++)
        if (start[b] < 1 || start[b] > end[b] || end[b] > a->lens[b]) return 0;
    return 1;
}

int emdpo_llama_span_logp(const emdpo_llama_acts *a, const int *start, const int *end, double *out) {
    if (!span_ok(a, start, end)) return EMDPO_ERR_INVALID_ARG;
    for (int b = 0; b < a->B; b++) {
        double s = 0.0;
        for (int t = start[b] - 1; t < end[b] - 1; t++) s += a->logp[(size_t)b * a->T + t];
        out[b] = s;
    }
    return EMDPO_OK;
}

int emdpo_llama_span_backward(const emdpo_llama_acts *a, const int *start, const int *end, const double *g,
                              float *dlogp) {
    if (!span_ok(a, start, end)) return EMDPO_ERR_INVALID_ARG;
    for (int b = 0; b < a->B; b++)
        for (int t = start[b] - 1; t < end[b] - 1; t++) dlogp[(size_t)b * a->T + t] += (float)g[b];
    return EMDPO_OK;
}

static void kv_layout(emdpo_llama_kv *kv, carve *cv) {
    const emdpo_llama_config *c = &kv->config;
    size_t C = (size_t)c->dim, H = (size_t)c->hidden_dim, hs = C / (size_t)c->n_heads;
    size_t kvd = (size_t)c->n_kv_heads * hs, LT = (size_t)c->n_layers * kv->max_T;
    kv->k = take(cv, LT, kvd);
    kv->v = take(cv, LT, kvd);
    kv->x = take(cv, C, 1);
    kv->xb = take(cv, C, 1);
    kv->xb2 = take(cv, C, 1);
    kv->q = take(cv, C, 1);
    kv->hb = take(cv, H, 1);
    kv->hb2 = take(cv, H, 1);
    kv->att = take(cv, (size_t)kv->max_T, 1);
    kv->rope_cos = take(cv, hs / 2, 1);
    kv->rope_sin = take(cv, hs / 2, 1);
    kv->logits = take(cv, (size_t)c->vocab_size, 1);
}

int emdpo_llama_kv_create(const emdpo_llama_config *c, int max_T, emdpo_llama_kv **out) {
    *out = NULL;
    int rc = emdpo_llama_config_check(c);
    if (rc) return rc;
    if (max_T < 1 || max_T > c->max_seq_len) return EMDPO_ERR_INVALID_ARG;
    emdpo_llama_kv *kv = emdpo_calloc(1, sizeof *kv);
    if (!kv) return EMDPO_ERR_NOMEM;
    kv->config = *c;
    kv->max_T = max_T;
    carve cv = {NULL, 0, 0};
    kv_layout(kv, &cv);
    if (cv.overflow) {
        emdpo_free(kv, sizeof *kv);
        return EMDPO_ERR_LIMIT;
    }
    kv->buf_n = cv.used;
    kv->buf = emdpo_malloc(kv->buf_n * sizeof(float));
    if (!kv->buf) {
        emdpo_free(kv, sizeof *kv);
        return EMDPO_ERR_NOMEM;
    }
    cv = (carve){kv->buf, 0, 0};
    kv_layout(kv, &cv);
    *out = kv;
    return EMDPO_OK;
}

void emdpo_llama_kv_free(emdpo_llama_kv *kv) {
    if (!kv) return;
    emdpo_free(kv->buf, kv->buf_n * sizeof(float));
    emdpo_free(kv, sizeof *kv);
}

int emdpo_llama_step(const emdpo_llama *m, emdpo_llama_kv *kv, int token, int pos, const float **logits) {
    const emdpo_llama_config *c = &m->config;
    if (!same_config(c, &kv->config) || token < 0 || token >= c->vocab_size || pos < 0 || pos > kv->n ||
        pos >= kv->max_T)
        return EMDPO_ERR_INVALID_ARG;
    int C = c->dim, H = c->hidden_dim, NH = c->n_heads, NKV = c->n_kv_heads;
    int hs = C / NH, kvd = NKV * hs, group = NH / NKV;
    float scale = 1.0f / sqrtf((float)hs), rstd;
    const emdpo_llama_params *p = &m->params;
    memcpy(kv->x, p->tok_emb + (size_t)token * C, (size_t)C * sizeof(float));
    emdpo_rope_table(kv->rope_cos, kv->rope_sin, pos, 1, hs, c->rope_theta);
    for (int l = 0; l < c->n_layers; l++) {
        size_t lC = (size_t)l * C, lCC = lC * C, lKC = (size_t)l * kvd * C, lHC = (size_t)l * H * C;
        float *kl = kv->k + (size_t)l * kv->max_T * kvd, *vl = kv->v + (size_t)l * kv->max_T * kvd;
        float *kp = kl + (size_t)pos * kvd;
        emdpo_rmsnorm_forward(kv->xb, &rstd, kv->x, p->rms_att + lC, 1, C, c->norm_eps);
        emdpo_matmul_forward(kv->q, kv->xb, p->wq + lCC, 1, C, C);
        emdpo_rope_forward(kv->q, kv->q, kv->rope_cos, kv->rope_sin, 1, 1, NH, hs);
        emdpo_matmul_forward(kp, kv->xb, p->wk + lKC, 1, C, kvd);
        emdpo_rope_forward(kp, kp, kv->rope_cos, kv->rope_sin, 1, 1, NKV, hs);
        emdpo_matmul_forward(vl + (size_t)pos * kvd, kv->xb, p->wv + lKC, 1, C, kvd);
        for (int h = 0; h < NH; h++) {
            const float *qh = kv->q + (size_t)h * hs;
            size_t koff = (size_t)(h / group) * hs;
            float *o = kv->xb2 + (size_t)h * hs, mx = -INFINITY, z = 0.0f;
            for (int u = 0; u <= pos; u++) {
                const float *ku = kl + (size_t)u * kvd + koff;
                float s = 0.0f;
                for (int i = 0; i < hs; i++) s += qh[i] * ku[i];
                kv->att[u] = s * scale;
                if (kv->att[u] > mx) mx = kv->att[u];
            }
            for (int u = 0; u <= pos; u++) z += kv->att[u] = expf(kv->att[u] - mx);
            memset(o, 0, (size_t)hs * sizeof(float));
            for (int u = 0; u <= pos; u++) {
                const float *vu = vl + (size_t)u * kvd + koff;
                float w = kv->att[u] / z;
                for (int i = 0; i < hs; i++) o[i] += w * vu[i];
            }
        }
        emdpo_matmul_forward(kv->xb, kv->xb2, p->wo + lCC, 1, C, C);
        emdpo_residual_forward(kv->x, kv->x, kv->xb, (size_t)C);
        emdpo_rmsnorm_forward(kv->xb, &rstd, kv->x, p->rms_ffn + lC, 1, C, c->norm_eps);
        emdpo_matmul_forward(kv->hb, kv->xb, p->w1 + lHC, 1, C, H);
        emdpo_matmul_forward(kv->hb2, kv->xb, p->w3 + lHC, 1, C, H);
        emdpo_swiglu_forward(kv->hb, kv->hb, kv->hb2, (size_t)H);
        emdpo_matmul_forward(kv->xb, kv->hb, p->w2 + lHC, 1, H, C);
        emdpo_residual_forward(kv->x, kv->x, kv->xb, (size_t)C);
    }
    emdpo_rmsnorm_forward(kv->xb, &rstd, kv->x, p->rms_final, 1, C, c->norm_eps);
    emdpo_matmul_forward(kv->logits, kv->xb, p->lm_head, 1, C, c->vocab_size);
    kv->n = pos + 1;
    *logits = kv->logits;
    return EMDPO_OK;
}
