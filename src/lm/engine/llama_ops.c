#include "lm/engine/llama_ops.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/half.h"
#include "base/threads.h"
#include "lm/engine/gemm.h"

/* Split a loop over threads only when it is large and this thread is not
 * already one of a team (the model runs one chunk of sequences per thread;
 * a nested team would only add overhead or oversubscribe). */
#ifdef _OPENMP
static int par_ok(double work) { return work >= EMDPO_PAR_MIN_WORK && !omp_in_parallel(); }
#endif

/* e^x to within 1.5 ulp (Cephes' polynomial), written so that loops calling it
 * vectorise; glibc's expf does not, and the SwiGLU, softmax and log-softmax
 * passes take one per element. The argument is clamped to [-87, 88], where
 * 2^n stays a normal float; NaN passes through. */
static inline float fexp(float x) {
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x;
    float y = fmaf(x, 1.44269504088896341f, 12582912.0f); /* 1.5 * 2^23 rounds n into y's low bits */
    float n = y - 12582912.0f;
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r) + 1.0f;
    uint32_t bits;
    memcpy(&bits, &y, sizeof bits);
    bits = (bits + (127u - 0x4B400000u)) << 23; /* 2^n */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* max(x[0..n)), n >= 1. gcc vectorises the omp simd max reduction;
 * clang 14 does not (and warns that it could not), but it does vectorise
 * sixteen running maxima. Either way the maximum does not depend on the
 * order of the comparisons, but for the sign of a zero maximum. */
static inline float row_max(const float *x, int n) {
    float mx = x[0];
#if defined(__clang__)
    int i = 1;
    if (n >= 16) {
        float m[16];
        for (int l = 0; l < 16; l++) m[l] = x[l];
        for (i = 16; i + 16 <= n; i += 16)
            for (int l = 0; l < 16; l++) m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
        for (int l = 0; l < 16; l++) mx = m[l] > mx ? m[l] : mx;
    }
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
#else
#pragma omp simd reduction(max : mx)
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
#endif
    return mx;
}

void emdpo_embed_forward(float *out, const int *tokens, const float *emb, size_t N, int C) {
    for (size_t n = 0; n < N; n++) memcpy(out + n * C, emb + (size_t)tokens[n] * C, (size_t)C * sizeof(float));
}

void emdpo_embed16_forward(float *out, const int *tokens, const uint16_t *emb, int is_half, size_t N, int C) {
    for (size_t n = 0; n < N; n++) emdpo_widen16(out + n * C, emb + (size_t)tokens[n] * C, (size_t)C, is_half);
}

/* Serial: two rows with the same token add into the same embedding row. */
void emdpo_embed_backward(float *demb, const float *dout, const int *tokens, size_t N, int C) {
    for (size_t n = 0; n < N; n++) {
        float *d = demb + (size_t)tokens[n] * C;
        const float *g = dout + n * C;
        for (int i = 0; i < C; i++) d[i] += g[i];
    }
}

void emdpo_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, size_t N, int C, float eps) {
    long nn = (long)N;
#pragma omp parallel for schedule(static) if (par_ok((double)N * C))
    for (long n = 0; n < nn; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double ss = 0.0;
#pragma omp simd reduction(+ : ss)
        for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        rstd[n] = r;
        for (int i = 0; i < C; i++) o[i] = x[i] * r * w[i];
    }
}

void emdpo_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                            const float *rstd, size_t N, int C) {
    long nn = (long)N;
#pragma omp parallel for schedule(static) if (par_ok((double)N * C))
    for (long n = 0; n < nn; n++) {
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float r = rstd[n];
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < C; i++) s += (double)g[i] * w[i] * x[i];
        float c = (float)(s * r * r * r / C);
        for (int i = 0; i < C; i++) dx[i] += r * w[i] * g[i] - c * x[i];
    }
    /* Rows in order on one thread: the sum over rows must not depend on the
     * thread count. */
    for (size_t n = 0; n < N; n++) {
        const float *x = inp + n * C, *g = dout + n * C;
        float r = rstd[n];
        for (int i = 0; i < C; i++) dw[i] += g[i] * x[i] * r;
    }
}

void emdpo_bias_forward(float *out, const float *b, size_t N, int OC) {
    long nn = (long)N;
#pragma omp parallel for schedule(static) if (par_ok((double)N * OC))
    for (long n = 0; n < nn; n++) {
        float *o = out + (size_t)n * OC;
        for (int i = 0; i < OC; i++) o[i] += b[i];
    }
}

void emdpo_bias_backward(float *db, const float *dout, size_t N, int OC) {
    for (size_t n = 0; n < N; n++) {
        const float *g = dout + n * OC;
        for (int i = 0; i < OC; i++) db[i] += g[i];
    }
}

void emdpo_matmul_forward(float *out, const float *inp, const float *w, int N, int IC, int OC) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, IC, 0.0f, out, OC);
}

void emdpo_matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int N,
                           int IC, int OC) {
    if (dinp) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, w, IC, 1.0f, dinp, IC);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
}

/* Frequency i of hs/2 after the config's scaling, as transformers'
 * _compute_linear_scaling_rope_parameters and _compute_llama3_parameters
 * compute it (there in float32, here in double). */
static double rope_freq(const emdpo_llama_config *c, int i, int hs) {
    double f = pow((double)c->rope_theta, -2.0 * i / hs);
    if (c->rope_type == EMDPO_ROPE_LINEAR) return f / c->rope_factor;
    if (c->rope_type != EMDPO_ROPE_LLAMA3) return f;
    const double pi = 3.14159265358979323846;
    double old = c->rope_original_max_pos, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    double wavelen = 2.0 * pi / f;
    if (wavelen > old / lo) return f / c->rope_factor; /* low frequencies: stretched */
    if (wavelen < old / hi) return f;                   /* high frequencies: kept */
    double smooth = (old / wavelen - lo) / (hi - lo);
    return (1.0 - smooth) * f / c->rope_factor + smooth * f;
}

void emdpo_rope_table(float *cosv, float *sinv, int pos0, int T, int hs, const emdpo_llama_config *c) {
    int h2 = hs / 2;
    for (int i = 0; i < h2; i++) {
        double freq = rope_freq(c, i, hs);
        for (int t = 0; t < T; t++) {
            double a = (double)(pos0 + t) * freq;
            cosv[(size_t)t * h2 + i] = (float)cos(a);
            sinv[(size_t)t * h2 + i] = (float)sin(a);
        }
    }
}

/* Rotates every head of every row by +angle (dir 1) or -angle (dir -1), into
 * out (= or +=). */
static void rope_apply(float *out, const float *inp, const float *cosv, const float *sinv, int B, int T, int nh,
                       int hs, float dir, int accumulate) {
    int h2 = hs / 2;
    long rows = (long)B * T;
#pragma omp parallel for schedule(static) if (par_ok((double)rows * nh * hs))
    for (long r = 0; r < rows; r++) {
        int t = (int)(r % T);
        const float *cr = cosv + (size_t)t * h2, *sr = sinv + (size_t)t * h2;
        for (int h = 0; h < nh; h++) {
            const float *x = inp + ((size_t)r * nh + h) * hs;
            float *o = out + ((size_t)r * nh + h) * hs;
            for (int i = 0; i < h2; i++) {
                float c = cr[i], s = dir * sr[i], x0 = x[2 * i], x1 = x[2 * i + 1];
                float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
                if (accumulate) {
                    o[2 * i] += y0;
                    o[2 * i + 1] += y1;
                } else {
                    o[2 * i] = y0;
                    o[2 * i + 1] = y1;
                }
            }
        }
    }
}

void emdpo_rope_forward(float *out, const float *inp, const float *cosv, const float *sinv, int B, int T, int nh,
                        int hs) {
    rope_apply(out, inp, cosv, sinv, B, T, nh, hs, 1.0f, 0);
}

void emdpo_rope_backward(float *dinp, const float *dout, const float *cosv, const float *sinv, int B, int T, int nh,
                         int hs) {
    rope_apply(dinp, dout, cosv, sinv, B, T, nh, hs, -1.0f, 1);
}

void emdpo_rope_backward_inplace(float *x, const float *cosv, const float *sinv, int B, int T, int nh, int hs) {
    rope_apply(x, x, cosv, sinv, B, T, nh, hs, -1.0f, 0);
}

/* Query rows per block: a block's products read the keys up to its last
 * row only, which skips most of the masked upper triangle for long T. */
enum { ATT_BLOCK = 64 };

/* Row t of the scores (its first t + 1 entries) into probabilities, in
 * place, zero past t up to T: softmax of scale * scores. */
static void softmax_causal_row(float *a, int t, int T, float scale) {
    float mx = row_max(a, t + 1), z = 0.0f;
#pragma omp simd reduction(+ : z)
    for (int u = 0; u <= t; u++) {
        float e = fexp((a[u] - mx) * scale);
        a[u] = e;
        z += e;
    }
    float iz = 1.0f / z;
    for (int u = 0; u <= t; u++) a[u] *= iz;
    memset(a + t + 1, 0, (size_t)(T - t - 1) * sizeof(float));
}

size_t emdpo_attention_scratch(int T, int hs) { return emdpo_gemm_rhs_floats(hs, T) + emdpo_gemm_rhs_floats(T, hs); }

/* The kernel path: per key/value head, its keys (transposed) and values
 * packed once, then each query head of the group: scores on and below the
 * diagonal, softmax, probabilities times values. */
static void attention_forward_packed(float *out, float *att, float *scratch, const float *q, const float *k,
                                     const float *v, int len, int T, int NH, int NKV, int hs) {
    int group = NH / NKV, C = NH * hs, kvd = NKV * hs;
    float scale = 1.0f / sqrtf((float)hs);
    emdpo_gemm_rhs kt, vv;
    for (int g = 0; g < NKV; g++) {
        emdpo_gemm_rhs_init(&kt, k + (size_t)g * hs, kvd, hs, len, 1, scratch);
        emdpo_gemm_rhs_init(&vv, v + (size_t)g * hs, kvd, len, hs, 0, scratch + emdpo_gemm_rhs_floats(hs, T));
        emdpo_gemm_rhs_pack(&kt, 0, emdpo_gemm_rhs_panels(&kt));
        emdpo_gemm_rhs_pack(&vv, 0, emdpo_gemm_rhs_panels(&vv));
        for (int h = g * group; h < (g + 1) * group; h++) {
            float *ah = att + (size_t)h * T * T;
            emdpo_gemm_rows_causal(ah, T, q + (size_t)h * hs, C, &kt, len, 0);
            for (int t = 0; t < len; t++) softmax_causal_row(ah + (size_t)t * T, t, T, scale);
            emdpo_gemm_rows_causal(out + (size_t)h * hs, C, ah, T, &vv, len, 1);
        }
    }
}

void emdpo_attention_forward(float *out, float *att, float *scratch, const float *q, const float *k, const float *v,
                             int len, int T, int NH, int NKV, int hs) {
    int group = NH / NKV, C = NH * hs, kvd = NKV * hs;
    float scale = 1.0f / sqrtf((float)hs);
    if (scratch && len > 0) {
        attention_forward_packed(out, att, scratch, q, k, v, len, T, NH, NKV, hs);
    } else {
        for (int h = 0; h < NH; h++) {
            const float *kh = k + (size_t)(h / group) * hs, *vh = v + (size_t)(h / group) * hs;
            float *ah = att + (size_t)h * T * T;
            for (int t0 = 0; t0 < len; t0 += ATT_BLOCK) {
                int t1 = t0 + ATT_BLOCK < len ? t0 + ATT_BLOCK : len;
                float *ab = ah + (size_t)t0 * T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t1 - t0, t1, hs, 1.0f, q + (size_t)t0 * C + h * hs,
                            C, kh, kvd, 0.0f, ab, T);
                for (int t = t0; t < t1; t++) softmax_causal_row(ah + (size_t)t * T, t, T, scale);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t1 - t0, hs, t1, 1.0f, ab, T, vh, kvd, 0.0f,
                            out + (size_t)t0 * C + h * hs, C);
            }
        }
    }
    for (int h = 0; h < NH; h++) {
        if (len < T) memset(att + (size_t)h * T * T + (size_t)len * T, 0, (size_t)(T - len) * T * sizeof(float));
        for (int t = len; t < T; t++) memset(out + (size_t)t * C + h * hs, 0, (size_t)hs * sizeof(float));
    }
}

/* Per block of query rows, with P the probabilities and dP = dout · Vᵀ:
 * dS = P * (dP - rowsum(P * dP)) / sqrt(hs), then dq += dS K, dk += dSᵀ q,
 * dv += Pᵀ dout. scratch holds dP, then dS, of one block. */
void emdpo_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *q,
                              const float *k, const float *v, const float *att, int len, int T, int NH, int NKV,
                              int hs) {
    int group = NH / NKV, C = NH * hs, kvd = NKV * hs;
    float scale = 1.0f / sqrtf((float)hs);
    for (int h = 0; h < NH; h++) {
        size_t ko = (size_t)(h / group) * hs, qo = (size_t)h * hs;
        const float *ah = att + (size_t)h * T * T;
        for (int t0 = 0; t0 < len; t0 += ATT_BLOCK) {
            int t1 = t0 + ATT_BLOCK < len ? t0 + ATT_BLOCK : len, nt = t1 - t0;
            const float *pb = ah + (size_t)t0 * T, *gb = dout + (size_t)t0 * C + qo;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nt, t1, hs, 1.0f, gb, C, v + ko, kvd, 0.0f, scratch,
                        T);
            /* p is 0 past the diagonal, so full rows of t1 give dS 0 there. */
            for (int t = t0; t < t1; t++) {
                const float *p = ah + (size_t)t * T;
                float *d = scratch + (size_t)(t - t0) * T, pg = 0.0f;
#pragma omp simd reduction(+ : pg)
                for (int u = 0; u < t1; u++) pg += p[u] * d[u];
                for (int u = 0; u < t1; u++) d[u] = p[u] * (d[u] - pg) * scale;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nt, hs, t1, 1.0f, scratch, T, k + ko, kvd, 1.0f,
                        dq + (size_t)t0 * C + qo, C);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, t1, hs, nt, 1.0f, scratch, T, q + (size_t)t0 * C + qo,
                        C, 1.0f, dk + ko, kvd);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, t1, hs, nt, 1.0f, pb, T, gb, C, 1.0f, dv + ko, kvd);
        }
    }
}

/* Element-wise passes go over blocks of ELT_BLOCK elements: threads take
 * whole blocks and the block functions, whose arguments do not alias,
 * vectorise. */
enum { ELT_BLOCK = 4096 };

static void swiglu_block(float *restrict out, const float *restrict h1, const float *restrict h3, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = h1[i] / (1.0f + fexp(-h1[i])) * h3[i];
}

void emdpo_swiglu_forward(float *out, const float *h1, const float *h3, size_t n) {
    long nb = (long)((n + ELT_BLOCK - 1) / ELT_BLOCK);
#pragma omp parallel for schedule(static) if (par_ok((double)n))
    for (long b = 0; b < nb; b++) {
        size_t i = (size_t)b * ELT_BLOCK, m = n - i < ELT_BLOCK ? n - i : ELT_BLOCK;
        swiglu_block(out + i, h1 + i, h3 + i, m);
    }
}

static void swiglu_backward_block(float *restrict dh1, float *restrict dh3, const float *restrict dout,
                                  const float *restrict h1, const float *restrict h3, size_t n, int accumulate) {
    for (size_t i = 0; i < n; i++) {
        float x = h1[i], sg = 1.0f / (1.0f + fexp(-x)), g = dout[i];
        float d1 = g * h3[i] * sg * (1.0f + x * (1.0f - sg)), d3 = g * x * sg;
        dh1[i] = accumulate ? dh1[i] + d1 : d1;
        dh3[i] = accumulate ? dh3[i] + d3 : d3;
    }
}

static void swiglu_backward_into(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3,
                                 size_t n, int accumulate) {
    long nb = (long)((n + ELT_BLOCK - 1) / ELT_BLOCK);
#pragma omp parallel for schedule(static) if (par_ok((double)n))
    for (long b = 0; b < nb; b++) {
        size_t i = (size_t)b * ELT_BLOCK, m = n - i < ELT_BLOCK ? n - i : ELT_BLOCK;
        swiglu_backward_block(dh1 + i, dh3 + i, dout + i, h1 + i, h3 + i, m, accumulate);
    }
}

void emdpo_swiglu_backward(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3, size_t n) {
    swiglu_backward_into(dh1, dh3, dout, h1, h3, n, 1);
}

void emdpo_swiglu_backward_set(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3,
                               size_t n) {
    swiglu_backward_into(dh1, dh3, dout, h1, h3, n, 0);
}

void emdpo_residual_forward(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* The log-sum-exp is a float sum of e^(l - max), each term in (0, 1]. */
void emdpo_logprob_forward(float *logp, float *lse, const float *logits, const int *targets, size_t N, int V) {
    long nn = (long)N;
#pragma omp parallel for schedule(static) if (par_ok((double)N * V))
    for (long n = 0; n < nn; n++) {
        const float *l = logits + (size_t)n * V;
        if (targets[n] < 0) {
            logp[n] = lse[n] = 0.0f;
            continue;
        }
        float mx = row_max(l, V), z = 0.0f;
#pragma omp simd reduction(+ : z)
        for (int i = 0; i < V; i++) z += fexp(l[i] - mx);
        float s = mx + logf(z);
        lse[n] = s;
        logp[n] = l[targets[n]] - s;
    }
}

static void logprob_backward_into(float *dlogits, const float *dlogp, const float *logits, const float *lse,
                                  const int *targets, size_t N, int V, int accumulate) {
    long nn = (long)N;
#pragma omp parallel for schedule(static) if (par_ok((double)N * V))
    for (long n = 0; n < nn; n++) {
        float *d = dlogits + (size_t)n * V;
        if (targets[n] < 0) {
            if (!accumulate) memset(d, 0, (size_t)V * sizeof(float));
            continue;
        }
        const float *l = logits + (size_t)n * V;
        float g = dlogp[n], s = lse[n];
        if (accumulate)
            for (int i = 0; i < V; i++) d[i] -= g * fexp(l[i] - s);
        else
            for (int i = 0; i < V; i++) d[i] = -g * fexp(l[i] - s);
        d[targets[n]] += g;
    }
}

void emdpo_logprob_backward(float *dlogits, const float *dlogp, const float *logits, const float *lse,
                            const int *targets, size_t N, int V) {
    logprob_backward_into(dlogits, dlogp, logits, lse, targets, N, V, 1);
}

void emdpo_logprob_backward_set(float *dlogits, const float *dlogp, const float *logits, const float *lse,
                                const int *targets, size_t N, int V) {
    logprob_backward_into(dlogits, dlogp, logits, lse, targets, N, V, 0);
}
