#include "llama_ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "threads.h"

void emdpo_embed_forward(float *out, const int *tokens, const float *emb, size_t N, int C) {
    for (size_t n = 0; n < N; n++) memcpy(out + n * C, emb + (size_t)tokens[n] * C, (size_t)C * sizeof(float));
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
#pragma omp parallel for schedule(static) if ((double)N * C >= EMDPO_PAR_MIN_WORK)
    for (long n = 0; n < nn; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double ss = 0.0;
        for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        rstd[n] = r;
        for (int i = 0; i < C; i++) o[i] = x[i] * r * w[i];
    }
}

void emdpo_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                            const float *rstd, size_t N, int C) {
    long nn = (long)N;
#pragma omp parallel for schedule(static) if ((double)N * C >= EMDPO_PAR_MIN_WORK)
    for (long n = 0; n < nn; n++) {
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float r = rstd[n];
        double s = 0.0;
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

void emdpo_matmul_forward(float *out, const float *inp, const float *w, int N, int IC, int OC) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, IC, 0.0f, out, OC);
}

void emdpo_matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int N,
                           int IC, int OC) {
    if (dinp) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, w, IC, 1.0f, dinp, IC);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
}

void emdpo_rope_table(float *cosv, float *sinv, int pos0, int T, int hs, float theta) {
    int h2 = hs / 2;
    for (int i = 0; i < h2; i++) {
        double freq = pow((double)theta, -2.0 * i / hs);
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
#pragma omp parallel for schedule(static) if ((double)rows * nh * hs >= EMDPO_PAR_MIN_WORK)
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

static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline void axpy(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

void emdpo_attention_forward(float *out, float *att, const float *q, const float *k, const float *v, const int *lens,
                             int B, int T, int NH, int NKV, int hs) {
    int group = NH / NKV;
    size_t C = (size_t)NH * hs, kvd = (size_t)NKV * hs;
    float scale = 1.0f / sqrtf((float)hs);
    long jobs = (long)B * NH;
#pragma omp parallel for schedule(dynamic, 1) if ((double)jobs * T * T * hs >= EMDPO_PAR_MIN_WORK)
    for (long j = 0; j < jobs; j++) {
        int b = (int)(j / NH), h = (int)(j % NH), kh = h / group;
        int len = lens ? lens[b] : T;
        const float *kb = k + (size_t)b * T * kvd + (size_t)kh * hs;
        const float *vb = v + (size_t)b * T * kvd + (size_t)kh * hs;
        for (int t = 0; t < T; t++) {
            const float *qt = q + ((size_t)b * T + t) * C + (size_t)h * hs;
            float *o = out + ((size_t)b * T + t) * C + (size_t)h * hs;
            float *a = att + (((size_t)b * NH + h) * T + t) * T;
            memset(o, 0, (size_t)hs * sizeof(float));
            memset(a, 0, (size_t)T * sizeof(float));
            if (t >= len) continue;
            float mx = -INFINITY;
            for (int u = 0; u <= t; u++) {
                a[u] = dot(qt, kb + (size_t)u * kvd, hs) * scale;
                if (a[u] > mx) mx = a[u];
            }
            float z = 0.0f;
            for (int u = 0; u <= t; u++) z += a[u] = expf(a[u] - mx);
            float iz = 1.0f / z;
            for (int u = 0; u <= t; u++) {
                a[u] *= iz;
                axpy(o, a[u], vb + (size_t)u * kvd, hs);
            }
        }
    }
}

/* With p the probabilities and g_u = dout·v_u their upstream gradient, the
 * softmax gradient is ds_u = p_u (g_u - sum_w p_w g_w); g is computed twice
 * (once for the sum) rather than stored, which keeps this free of scratch
 * memory. */
void emdpo_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, const float *att, const int *lens, int B, int T, int NH, int NKV,
                              int hs) {
    int group = NH / NKV;
    size_t C = (size_t)NH * hs, kvd = (size_t)NKV * hs;
    float scale = 1.0f / sqrtf((float)hs);
    long jobs = (long)B * NKV;
#pragma omp parallel for schedule(dynamic, 1) if ((double)B * NH * T * T * hs >= EMDPO_PAR_MIN_WORK)
    for (long j = 0; j < jobs; j++) {
        int b = (int)(j / NKV), kh = (int)(j % NKV);
        int len = lens ? lens[b] : T;
        size_t kvoff = (size_t)b * T * kvd + (size_t)kh * hs;
        const float *kb = k + kvoff, *vb = v + kvoff;
        float *dkb = dk + kvoff, *dvb = dv + kvoff;
        for (int h = kh * group; h < (kh + 1) * group; h++) {
            for (int t = 0; t < len; t++) {
                size_t qoff = ((size_t)b * T + t) * C + (size_t)h * hs;
                const float *qt = q + qoff, *g = dout + qoff;
                float *dqt = dq + qoff;
                const float *a = att + (((size_t)b * NH + h) * T + t) * T;
                float pg = 0.0f;
                for (int u = 0; u <= t; u++) pg += a[u] * dot(g, vb + (size_t)u * kvd, hs);
                for (int u = 0; u <= t; u++) {
                    const float *vu = vb + (size_t)u * kvd;
                    float ds = a[u] * (dot(g, vu, hs) - pg) * scale;
                    axpy(dvb + (size_t)u * kvd, a[u], g, hs);
                    axpy(dqt, ds, kb + (size_t)u * kvd, hs);
                    axpy(dkb + (size_t)u * kvd, ds, qt, hs);
                }
            }
        }
    }
}

void emdpo_swiglu_forward(float *out, const float *h1, const float *h3, size_t n) {
    long nn = (long)n;
#pragma omp parallel for schedule(static) if (n >= EMDPO_PAR_MIN_WORK)
    for (long i = 0; i < nn; i++) out[i] = h1[i] / (1.0f + expf(-h1[i])) * h3[i];
}

void emdpo_swiglu_backward(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3, size_t n) {
    long nn = (long)n;
#pragma omp parallel for schedule(static) if (n >= EMDPO_PAR_MIN_WORK)
    for (long i = 0; i < nn; i++) {
        float x = h1[i], sg = 1.0f / (1.0f + expf(-x)), g = dout[i];
        dh1[i] += g * h3[i] * sg * (1.0f + x * (1.0f - sg));
        dh3[i] += g * x * sg;
    }
}

void emdpo_residual_forward(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void emdpo_logprob_forward(float *logp, float *lse, const float *logits, const int *targets, size_t N, int V) {
    long nn = (long)N;
#pragma omp parallel for schedule(static) if ((double)N * V >= EMDPO_PAR_MIN_WORK)
    for (long n = 0; n < nn; n++) {
        const float *l = logits + (size_t)n * V;
        if (targets[n] < 0) {
            logp[n] = lse[n] = 0.0f;
            continue;
        }
        float mx = l[0];
        for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        double z = 0.0;
        for (int i = 0; i < V; i++) z += exp((double)(l[i] - mx));
        double s = mx + log(z);
        lse[n] = (float)s;
        logp[n] = (float)(l[targets[n]] - s);
    }
}

void emdpo_logprob_backward(float *dlogits, const float *dlogp, const float *logits, const float *lse,
                            const int *targets, size_t N, int V) {
    long nn = (long)N;
#pragma omp parallel for schedule(static) if ((double)N * V >= EMDPO_PAR_MIN_WORK)
    for (long n = 0; n < nn; n++) {
        if (targets[n] < 0) continue;
        const float *l = logits + (size_t)n * V;
        float *d = dlogits + (size_t)n * V, g = dlogp[n], s = lse[n];
        for (int i = 0; i < V; i++) d[i] -= g * expf(l[i] - s);
        d[targets[n]] += g;
    }
}
