/* Each Llama layer's backward against central finite differences of its
 * forward (the loss is sum(w * out) for fixed random w, accumulated in
 * double), that backward accumulates, and that padding never leaks into
 * real positions of attention. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lm/engine/gemm.h"
#include "lm/engine/llama_ops.h"

static unsigned long long rng_state = 88172645463325252ULL;
static float urand(void) { /* uniform in (-1, 1), fixed sequence */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static float *rnd(size_t n, float scale) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = urand() * scale;
    return x;
}
static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

static double wdot(const float *w, const float *out, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)w[i] * out[i];
    return s;
}

/* The op under test: forward with the current inputs, return sum(w * out). */
typedef double (*loss_fn)(void);

/* Central differences over every element of x against grad. */
static void fd_check(const char *what, loss_fn f, float *x, const float *grad, size_t n, float eps, double tol) {
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i];
        x[i] = x0 + eps;
        float up = x[i];
        double fp = f();
        x[i] = x0 - eps;
        float dn = x[i];
        double fm = f();
        x[i] = x0;
        double fd = (fp - fm) / ((double)up - dn);
        double err = fabs(fd - grad[i]) / fmax(1.0, fabs(fd));
        if (err > worst) {
            worst = err;
            at = i;
        }
    }
    CHECK_MSG(worst <= tol, "%s: worst relative error %g at %zu (analytic %g)", what, worst, at, (double)grad[at]);
}

/* Backward run twice into the same buffers must give twice the gradient (up
 * to rounding: the second pass adds term by term onto the first's sum). */
static void check_doubles(const char *what, const float *once, const float *twice, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(twice[i] - 2.0 * once[i]) / fmax(1.0, fabs(once[i])));
    CHECK_MSG(worst < 1e-5, "%s: second backward did not add (worst %g)", what, worst);
}

/* ---- RMSNorm ---- */
enum { RN = 3, RC = 8 };
static float *rn_x, *rn_w, *rn_out, *rn_rstd, *rn_wt;
static double rn_loss(void) {
    emdpo_rmsnorm_forward(rn_out, rn_rstd, rn_x, rn_w, RN, RC, 1e-5f);
    return wdot(rn_wt, rn_out, RN * RC);
}
static void test_rmsnorm(void) {
    rn_x = rnd(RN * RC, 1.0f), rn_w = rnd(RC, 1.0f), rn_out = zeros(RN * RC), rn_rstd = zeros(RN);
    rn_wt = rnd(RN * RC, 1.0f);
    float *dx = zeros(RN * RC), *dw = zeros(RC), *dx2 = zeros(RN * RC), *dw2 = zeros(RC);
    rn_loss();
    emdpo_rmsnorm_backward(dx, dw, rn_wt, rn_x, rn_w, rn_rstd, RN, RC);
    fd_check("rmsnorm dinp", rn_loss, rn_x, dx, RN * RC, 1e-2f, 2e-3);
    fd_check("rmsnorm dw", rn_loss, rn_w, dw, RC, 1e-2f, 2e-3);
    rn_loss();
    for (int r = 0; r < 2; r++) emdpo_rmsnorm_backward(dx2, dw2, rn_wt, rn_x, rn_w, rn_rstd, RN, RC);
    check_doubles("rmsnorm dinp", dx, dx2, RN * RC);
    check_doubles("rmsnorm dw", dw, dw2, RC);
    free(rn_x), free(rn_w), free(rn_out), free(rn_rstd), free(rn_wt), free(dx), free(dw), free(dx2), free(dw2);
}

/* ---- matmul ---- */
enum { MN = 5, MI = 7, MO = 6 };
static float *mm_x, *mm_w, *mm_out, *mm_wt;
static double mm_loss(void) {
    emdpo_matmul_forward(mm_out, mm_x, mm_w, MN, MI, MO);
    return wdot(mm_wt, mm_out, MN * MO);
}
static void test_matmul(void) {
    mm_x = rnd(MN * MI, 1.0f), mm_w = rnd(MO * MI, 1.0f), mm_out = zeros(MN * MO), mm_wt = rnd(MN * MO, 1.0f);
    float *dx = zeros(MN * MI), *dw = zeros(MO * MI), *dx2 = zeros(MN * MI), *dw2 = zeros(MO * MI);
    mm_loss();
    /* out[0][0] is the dot of row 0 with weight row 0 */
    double d = 0.0;
    for (int i = 0; i < MI; i++) d += (double)mm_x[i] * mm_w[i];
    CHECK_CLOSE(mm_out[0], d, 1e-5);
    emdpo_matmul_backward(dx, dw, mm_wt, mm_x, mm_w, MN, MI, MO);
    fd_check("matmul dinp", mm_loss, mm_x, dx, MN * MI, 1e-2f, 1e-3);
    fd_check("matmul dw", mm_loss, mm_w, dw, MO * MI, 1e-2f, 1e-3);
    for (int r = 0; r < 2; r++) emdpo_matmul_backward(dx2, dw2, mm_wt, mm_x, mm_w, MN, MI, MO);
    check_doubles("matmul dinp", dx, dx2, MN * MI);
    check_doubles("matmul dw", dw, dw2, MO * MI);
    memset(dw2, 0, MO * MI * sizeof(float));
    emdpo_matmul_backward(NULL, dw2, mm_wt, mm_x, mm_w, MN, MI, MO);
    CHECK(memcmp(dw, dw2, MO * MI * sizeof(float)) == 0);
    free(mm_x), free(mm_w), free(mm_out), free(mm_wt), free(dx), free(dw), free(dx2), free(dw2);
}

/* ---- RoPE ---- */
enum { PB = 2, PT = 4, PH = 3, PS = 6 };
static float *rp_x, *rp_out, *rp_wt, rp_cos[PT * PS / 2], rp_sin[PT * PS / 2];
static double rp_loss(void) {
    emdpo_rope_forward(rp_out, rp_x, rp_cos, rp_sin, PB, PT, PH, PS);
    return wdot(rp_wt, rp_out, PB * PT * PH * PS);
}
/* RoPE scaling against transformers' frequencies (tools/rope_fixture.py,
 * PyTorch float32, for head size 64 and rope_theta 500000): Llama 3.1's
 * "llama3" (factor 32, low 1, high 4, original context 8192) and "linear"
 * (factor 4). The table at position 1 turns pair i by its frequency. */
static const double rope_llama3_ref[32] = {1.000000000e+00, 6.636012793e-01, 4.403666258e-01, 2.922278345e-01, 1.939227581e-01, 1.286873817e-01, 8.539710194e-02, 5.666961893e-02, 3.760603070e-02, 2.495540865e-02, 1.656044088e-02, 1.098952908e-02, 7.292665076e-03, 4.839421250e-03, 3.211446106e-03, 1.290548011e-03, 4.295567051e-04, 9.708286234e-05, 1.946163866e-05, 1.291476747e-05, 8.570255886e-06, 5.687232260e-06, 3.774054449e-06, 2.504467147e-06, 1.661967417e-06, 1.102883630e-06, 7.318749340e-07, 4.856731266e-07, 3.222932889e-07, 2.138742303e-07, 1.419272024e-07, 9.418306490e-08};
static const double rope_linear_ref[32] = {2.500000000e-01, 1.659003198e-01, 1.100916564e-01, 7.305695862e-02, 4.848068953e-02, 3.217184544e-02, 2.134927548e-02, 1.416740473e-02, 9.401507676e-03, 6.238852162e-03, 4.140110221e-03, 2.747382270e-03, 1.823166269e-03, 1.209855312e-03, 8.028615266e-04, 5.327799008e-04, 3.535533615e-04, 2.346184629e-04, 1.556931093e-04, 1.033181397e-04, 6.856204709e-05, 4.549785808e-05, 3.019243559e-05, 2.003573718e-05, 1.329573934e-05, 8.823069038e-06, 5.854999472e-06, 3.885385013e-06, 2.578346312e-06, 1.710993843e-06, 1.135417619e-06, 7.534645192e-07};

static void check_rope_freqs(const emdpo_llama_config *c, const double *ref, const char *what) {
    float cs[32], sn[32];
    emdpo_rope_table(cs, sn, 1, 1, 64, c);
    double worst = 0;
    for (int i = 0; i < 32; i++) {
        double f = atan2(sn[i], cs[i]), e = fabs(f - ref[i]) / ref[i];
        if (e > worst) worst = e;
    }
    CHECK_MSG(worst < 2e-6, "%s: relative error %g against transformers' frequencies", what, worst);
}

static void test_rope_scaling(void) {
    emdpo_llama_config c = {.dim = 64, .n_heads = 1, .rope_theta = 500000.0f, .rope_type = EMDPO_ROPE_LLAMA3,
                            .rope_factor = 32.0f, .rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 4.0f,
                            .rope_original_max_pos = 8192};
    check_rope_freqs(&c, rope_llama3_ref, "llama3");
    emdpo_llama_config l = {.dim = 64, .n_heads = 1, .rope_theta = 500000.0f, .rope_type = EMDPO_ROPE_LINEAR,
                            .rope_factor = 4.0f};
    check_rope_freqs(&l, rope_linear_ref, "linear");
    /* Without scaling the llama3 config's first frequency would be 1, its last
     * 500000^(-62/64); with it the last is divided by 32. */
    CHECK(rope_llama3_ref[31] < rope_linear_ref[31]);
}

static void test_rope(void) {
    size_t n = PB * PT * PH * PS;
    rp_x = rnd(n, 1.0f), rp_out = zeros(n), rp_wt = rnd(n, 1.0f);
    emdpo_llama_config rc = {.dim = PS, .n_heads = 1, .rope_theta = 10000.0f};
    emdpo_rope_table(rp_cos, rp_sin, 0, PT, PS, &rc);
    /* llama2.c: pair i of a head at position t turns by t * 10000^(-2i/hs) */
    CHECK_CLOSE(rp_cos[1 * 3 + 1], cos(1.0 * pow(10000.0, -2.0 / 6)), 1e-7);
    CHECK_CLOSE(rp_sin[3 * 3 + 2], sin(3.0 * pow(10000.0, -4.0 / 6)), 1e-7);
    float c5[PS / 2], s5[PS / 2];
    emdpo_rope_table(c5, s5, 3, 1, PS, &rc);
    CHECK(memcmp(c5, rp_cos + 3 * 3, sizeof c5) == 0 && memcmp(s5, rp_sin + 3 * 3, sizeof s5) == 0);
    rp_loss();
    /* position 1 (row b=0, t=1), head 2, pair 1: a plane rotation */
    size_t o = ((size_t)1 * PH + 2) * PS + 2;
    double ang = pow(10000.0, -2.0 / 6), x0 = rp_x[o], x1 = rp_x[o + 1];
    CHECK_CLOSE(rp_out[o], x0 * cos(ang) - x1 * sin(ang), 1e-6);
    CHECK_CLOSE(rp_out[o + 1], x0 * sin(ang) + x1 * cos(ang), 1e-6);
    float *dx = zeros(n), *dx2 = zeros(n);
    emdpo_rope_backward(dx, rp_wt, rp_cos, rp_sin, PB, PT, PH, PS);
    fd_check("rope dinp", rp_loss, rp_x, dx, n, 1e-2f, 1e-3);
    for (int r = 0; r < 2; r++) emdpo_rope_backward(dx2, rp_wt, rp_cos, rp_sin, PB, PT, PH, PS);
    check_doubles("rope dinp", dx, dx2, n);
    /* the in-place variant overwrites with the same values */
    memcpy(dx2, rp_wt, n * sizeof(float));
    emdpo_rope_backward_inplace(dx2, rp_cos, rp_sin, PB, PT, PH, PS);
    CHECK(memcmp(dx, dx2, n * sizeof(float)) == 0);
    free(rp_x), free(rp_out), free(rp_wt), free(dx), free(dx2);
}

/* ---- attention (GQA, padding, query blocks) ---- */
/* Sequences of one batch, each through the per-sequence ops. */
enum { AB = 2, ANH = 4, ANKV = 2, AS = 4, AT_MAX = 70 };
static int at_T, at_lens[AB];
static float *at_q, *at_k, *at_v, *at_out, *at_att, *at_wt, *at_scratch;
static float *at_fwd_scratch; /* the forward's packing space (kernel path), or NULL (BLAS path) */
static size_t aq(void) { return (size_t)AB * at_T * ANH * AS; }
static size_t ak(void) { return (size_t)AB * at_T * ANKV * AS; }
static void at_forward(void) {
    size_t sq = (size_t)at_T * ANH * AS, sk = (size_t)at_T * ANKV * AS, sa = (size_t)ANH * at_T * at_T;
    for (int b = 0; b < AB; b++)
        emdpo_attention_forward(at_out + b * sq, at_att + b * sa, at_fwd_scratch, at_q + b * sq, at_k + b * sk,
                                at_v + b * sk, at_lens[b], at_T, ANH, ANKV, AS);
}
static void at_backward(float *dq, float *dk, float *dv) {
    size_t sq = (size_t)at_T * ANH * AS, sk = (size_t)at_T * ANKV * AS, sa = (size_t)ANH * at_T * at_T;
    for (int b = 0; b < AB; b++)
        emdpo_attention_backward(dq + b * sq, dk + b * sk, dv + b * sk, at_scratch, at_wt + b * sq, at_q + b * sq,
                                 at_k + b * sk, at_v + b * sk, at_att + b * sa, at_lens[b], at_T, ANH, ANKV, AS);
}
static double at_loss(void) {
    at_forward();
    return wdot(at_wt, at_out, aq());
}
/* Every output of real rows against a direct double evaluation. */
static double at_direct_err(void) {
    double worst = 0.0;
    for (int b = 0; b < AB; b++)
        for (int t = 0; t < at_lens[b]; t++)
            for (int h = 0; h < ANH; h++) {
                int kh = h / (ANH / ANKV);
                double s[AT_MAX], z = 0.0, mx = -1e300;
                for (int u = 0; u <= t; u++) {
                    s[u] = 0.0;
                    for (int i = 0; i < AS; i++)
                        s[u] += (double)at_q[(((size_t)b * at_T + t) * ANH + h) * AS + i] *
                                at_k[(((size_t)b * at_T + u) * ANKV + kh) * AS + i];
                    s[u] /= sqrt(AS);
                    mx = fmax(mx, s[u]);
                }
                for (int u = 0; u <= t; u++) z += s[u] = exp(s[u] - mx);
                for (int i = 0; i < AS; i++) {
                    double o = 0.0;
                    for (int u = 0; u <= t; u++) o += s[u] / z * at_v[(((size_t)b * at_T + u) * ANKV + kh) * AS + i];
                    worst = fmax(worst, fabs(at_out[(((size_t)b * at_T + t) * ANH + h) * AS + i] - o));
                }
            }
    return worst;
}
static void test_attention(int T, int len0, int len1, int kernel) {
    at_T = T, at_lens[0] = len0, at_lens[1] = len1;
    size_t nsc = emdpo_attention_scratch(T, AS);
    at_fwd_scratch = kernel ? malloc(nsc * sizeof(float)) : NULL;
    size_t nq = aq(), nk = ak(), na = (size_t)AB * ANH * T * T;
    at_q = rnd(nq, 1.0f), at_k = rnd(nk, 1.0f), at_v = rnd(nk, 1.0f), at_out = zeros(nq);
    at_att = zeros(na), at_wt = rnd(nq, 1.0f), at_scratch = zeros((size_t)T * T);
    at_loss();
    CHECK_MSG(at_direct_err() < 1e-5, "T %d kernel %d: attention output off by %g", T, kernel, at_direct_err());
    /* Padding rows are zero; real rows ignore whatever sits in padding. */
    int pad_zero = 1;
    for (int t = at_lens[1]; t < T; t++)
        for (int i = 0; i < ANH * AS; i++) pad_zero &= at_out[(((size_t)1 * T + t) * ANH) * AS + i] == 0.0f;
    CHECK(pad_zero);
    float *ref = malloc(nq * sizeof(float));
    memcpy(ref, at_out, nq * sizeof(float));
    for (int t = at_lens[1]; t < T; t++)
        for (int i = 0; i < ANKV * AS; i++) {
            at_k[((size_t)1 * T + t) * ANKV * AS + i] = 1e3f;
            at_v[((size_t)1 * T + t) * ANKV * AS + i] = -1e3f;
        }
    at_loss();
    CHECK(memcmp(ref, at_out, nq * sizeof(float)) == 0);
    float *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk), *dq2 = zeros(nq), *dk2 = zeros(nk), *dv2 = zeros(nk);
    at_backward(dq, dk, dv);
    /* nothing flows into padding keys/values or queries */
    int pad_grad = 1;
    for (int t = at_lens[1]; t < T; t++) {
        for (int i = 0; i < ANKV * AS; i++)
            pad_grad &= dk[((size_t)1 * T + t) * ANKV * AS + i] == 0.0f && dv[((size_t)1 * T + t) * ANKV * AS + i] == 0.0f;
        for (int i = 0; i < ANH * AS; i++) pad_grad &= dq[((size_t)1 * T + t) * ANH * AS + i] == 0.0f;
    }
    CHECK(pad_grad);
    fd_check("attention dq", at_loss, at_q, dq, nq, 1e-2f, 2e-3);
    fd_check("attention dk", at_loss, at_k, dk, nk, 1e-2f, 2e-3);
    fd_check("attention dv", at_loss, at_v, dv, nk, 1e-2f, 2e-3);
    at_loss();
    for (int r = 0; r < 2; r++) at_backward(dq2, dk2, dv2);
    check_doubles("attention dq", dq, dq2, nq);
    check_doubles("attention dk", dk, dk2, nk);
    check_doubles("attention dv", dv, dv2, nk);
    free(at_q), free(at_k), free(at_v), free(at_out), free(at_att), free(at_wt), free(at_scratch), free(ref);
    free(at_fwd_scratch);
    free(dq), free(dk), free(dv), free(dq2), free(dk2), free(dv2);
}

/* ---- SwiGLU ---- */
enum { SN = 20 };
static float *sw_a, *sw_b, *sw_out, *sw_wt;
static double sw_loss(void) {
    emdpo_swiglu_forward(sw_out, sw_a, sw_b, SN);
    return wdot(sw_wt, sw_out, SN);
}
static void test_swiglu(void) {
    sw_a = rnd(SN, 4.0f), sw_b = rnd(SN, 1.0f), sw_out = zeros(SN), sw_wt = rnd(SN, 1.0f);
    sw_loss();
    CHECK_CLOSE(sw_out[3], sw_a[3] / (1.0 + exp(-(double)sw_a[3])) * sw_b[3], 1e-6);
    float *da = zeros(SN), *db = zeros(SN), *da2 = zeros(SN), *db2 = zeros(SN);
    emdpo_swiglu_backward(da, db, sw_wt, sw_a, sw_b, SN);
    fd_check("swiglu dh1", sw_loss, sw_a, da, SN, 1e-2f, 1e-3);
    fd_check("swiglu dh3", sw_loss, sw_b, db, SN, 1e-2f, 1e-3);
    for (int r = 0; r < 2; r++) emdpo_swiglu_backward(da2, db2, sw_wt, sw_a, sw_b, SN);
    check_doubles("swiglu dh1", da, da2, SN);
    check_doubles("swiglu dh3", db, db2, SN);
    emdpo_swiglu_backward_set(da2, db2, sw_wt, sw_a, sw_b, SN);
    CHECK(memcmp(da, da2, SN * sizeof(float)) == 0 && memcmp(db, db2, SN * sizeof(float)) == 0);
    free(sw_a), free(sw_b), free(sw_out), free(sw_wt), free(da), free(db), free(da2), free(db2);
}

/* ---- log-probabilities ---- */
enum { LN_ = 4, LV = 9 };
static const int lp_tg[LN_] = {3, -1, 0, 8};
static float *lp_x, lp_out[LN_], lp_lse[LN_], lp_wt[LN_];
static double lp_loss(void) {
    emdpo_logprob_forward(lp_out, lp_lse, lp_x, lp_tg, LN_, LV);
    return wdot(lp_wt, lp_out, LN_);
}
static void test_logprob(void) {
    lp_x = rnd(LN_ * LV, 5.0f);
    for (int i = 0; i < LN_; i++) lp_wt[i] = urand();
    lp_loss();
    double z = 0.0;
    for (int v = 0; v < LV; v++) z += exp((double)lp_x[3 * LV + v]);
    CHECK_CLOSE(lp_out[3], lp_x[3 * LV + 8] - log(z), 1e-6);
    CHECK(lp_out[1] == 0.0f);
    float *d = zeros(LN_ * LV), *d2 = zeros(LN_ * LV);
    emdpo_logprob_backward(d, lp_wt, lp_x, lp_lse, lp_tg, LN_, LV);
    int masked = 1;
    for (int v = 0; v < LV; v++) masked &= d[LV + v] == 0.0f;
    CHECK(masked);
    fd_check("logprob dlogits", lp_loss, lp_x, d, LN_ * LV, 1e-2f, 1e-3);
    lp_loss();
    for (int r = 0; r < 2; r++) emdpo_logprob_backward(d2, lp_wt, lp_x, lp_lse, lp_tg, LN_, LV);
    check_doubles("logprob dlogits", d, d2, LN_ * LV);
    for (int v = 0; v < LV; v++) d2[LV + v] = 7.0f; /* the masked row too is overwritten */
    emdpo_logprob_backward_set(d2, lp_wt, lp_x, lp_lse, lp_tg, LN_, LV);
    CHECK(memcmp(d, d2, LN_ * LV * sizeof(float)) == 0);
    free(lp_x), free(d), free(d2);
}

/* ---- embedding and residual ---- */
static void test_embed_residual(void) {
    enum { EV = 5, EC = 3, EN = 4 };
    const int tok[EN] = {2, 0, 2, 4};
    float *emb = rnd(EV * EC, 1.0f), out[EN * EC], g[EN * EC], demb[EV * EC] = {0};
    emdpo_embed_forward(out, tok, emb, EN, EC);
    CHECK(memcmp(out + 2 * EC, emb + 2 * EC, EC * sizeof(float)) == 0);
    for (int i = 0; i < EN * EC; i++) g[i] = urand();
    emdpo_embed_backward(demb, g, tok, EN, EC);
    emdpo_embed_backward(demb, g, tok, EN, EC);
    CHECK_CLOSE(demb[2 * EC + 1], 2.0 * ((double)g[0 * EC + 1] + g[2 * EC + 1]), 1e-6);
    CHECK(demb[1 * EC] == 0.0f && demb[3 * EC + 2] == 0.0f);
    CHECK_CLOSE(demb[4 * EC], 2.0 * g[3 * EC], 1e-6);
    float r[EC];
    emdpo_residual_forward(r, emb, emb + EC, EC);
    CHECK(r[1] == emb[1] + emb[EC + 1]);
    free(emb);
}

int main(void) {
    test_rmsnorm();
    test_matmul();
    test_rope();
    test_rope_scaling();
    for (int kernel = 0; kernel <= emdpo_gemm_kernel_active(); kernel++) {
        test_attention(5, 5, 3, kernel);
        test_attention(AT_MAX, AT_MAX, 67, kernel); /* BLAS: two query blocks; kernel: 3 panels, partial tiles */
    }
    test_swiglu();
    test_logprob();
    test_embed_residual();
    return check_report("test_llama_ops");
}
