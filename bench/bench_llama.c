/* Speed of the Llama engine: one DPO step (policy forward over chosen and
 * rejected sequences, the DPO loss's gradient on their log-probabilities,
 * backward) on random weights, the forward alone (what the E-step needs),
 * and two peak probes for the same machine: OpenBLAS's sgemm, and the
 * packed-weight kernel the engine's projections use (gemm.h).
 *
 *   bench_llama step small|large REPS    prints a RESULT line
 *   bench_llama sgemm REPS               cblas_sgemm 2048^3, and OpenBLAS's kernel set
 *   bench_llama kernel REPS              2048^3 through gemm.h: the weight packed once, rows
 *                                        in blocks of 256 over the threads
 *
 * FLOPs counted (matmuls only, the standard 6ND rule made explicit):
 *   forward = 2 N P_mm + 2 B L NH hs T (T + 1)   (QK^T and PV, causal half)
 *   step    = 3 x forward                        (backward = 2 x forward)
 * with N = B T rows and P_mm = L (2 C^2 + 2 C kvd + 3 C H) + V C the
 * parameters that enter a matrix product (the tied head counts once). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "base/rng.h"
#include "base/threads.h"
#include "emdpo.h"
#include "lm/engine/gemm.h"
#include "lm/engine/llama.h"
#include "lm/engine/llama_model.h"

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double now(void) { return clock_s(CLOCK_MONOTONIC); }

/* CPU time of all the process's threads: on a shared machine it moves less
 * than wall time, and next to it shows the time lost waiting. */
static double cpu_now(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static int bench_sgemm(int reps) {
    int n = 2048;
    size_t nn = (size_t)n * n;
    float *a = malloc(nn * sizeof(float)), *b = malloc(nn * sizeof(float)), *c = malloc(nn * sizeof(float));
    if (!a || !b || !c) return 1;
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    double t[32];
    reps = reps > 32 ? 32 : reps;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t[r] = now() - t0;
    }
    double med = median(t, reps);
    /* the kernels OpenBLAS picked for this CPU (OPENBLAS_CORETYPE overrides) */
    printf("RESULT peer=sgemm n=%d median_s=%.4f gflops=%.1f core=%s\n", n, med, 2.0 * n * n * n / med * 1e-9,
           openblas_get_corename());
    free(a);
    free(b);
    free(c);
    return 0;
}

static int bench_kernel(int reps) {
    int n = 2048, rb = 256;
    size_t nn = (size_t)n * n, np = emdpo_gemm_kernel_active() ? emdpo_gemm_rhs_floats(n, n) : 0;
    float *a = malloc(nn * sizeof(float)), *b = malloc(nn * sizeof(float)), *c = malloc(nn * sizeof(float));
    float *space = np ? malloc(np * sizeof(float)) : NULL;
    if (!a || !b || !c || (np && !space)) {
        free(a), free(b), free(c), free(space);
        return 1;
    }
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    emdpo_gemm_rhs w;
    emdpo_gemm_rhs_init(&w, b, n, n, n, 0, space);
    double t[32];
    reps = reps > 32 ? 32 : reps;
    for (int r = -1; r < reps; r++) {
        double t0 = now();
        emdpo_gemm_rhs_pack(&w, 0, emdpo_gemm_rhs_panels(&w));
        if (space) {
#pragma omp parallel for schedule(dynamic, 1)
            for (int i = 0; i < n; i += rb) emdpo_gemm_rows(c + (size_t)i * n, n, a + (size_t)i * n, n, &w, rb, 0.0f);
        } else { /* no kernel here: one BLAS call, as the sgemm probe */
            emdpo_gemm_rows(c, n, a, n, &w, n, 0.0f);
        }
        if (r >= 0) t[r] = now() - t0;
    }
    double med = median(t, reps);
    printf("RESULT peer=kernel n=%d median_s=%.4f gflops=%.1f path=%s threads=%d\n", n, med,
           2.0 * n * n * n / med * 1e-9, space ? "avx512" : "blas", emdpo_max_threads());
    free(a);
    free(b);
    free(c);
    free(space);
    return 0;
}

static int bench_step(const char *which, int reps) {
    emdpo_llama_config c = {.n_kv_heads = 0, .vocab_size = 512, .tied = 1, .norm_eps = 1e-5f, .rope_theta = 10000.0f};
    int pairs, T;
    if (strcmp(which, "small") == 0) {
        c.dim = 256, c.n_layers = 4, c.n_heads = 4, c.n_kv_heads = 4, c.hidden_dim = 688;
        pairs = 32, T = 64;
    } else if (strcmp(which, "large") == 0) {
        c.dim = 512, c.n_layers = 6, c.n_heads = 8, c.n_kv_heads = 8, c.hidden_dim = 1376;
        pairs = 16, T = 128;
    } else {
        fprintf(stderr, "bench_llama: unknown model '%s' (small or large)\n", which);
        return 2;
    }
    c.max_seq_len = T;
    int B = 2 * pairs, N = B * T, C = c.dim, H = c.hidden_dim, L = c.n_layers, hs = C / c.n_heads;
    int kvd = c.n_kv_heads * hs;
    emdpo_llama *m;
    emdpo_llama_acts *a, *af;
    if (emdpo_llama_create(&c, &m) || emdpo_llama_acts_create(&c, B, T, 1, &a) ||
        emdpo_llama_acts_create(&c, B, T, 0, &af))
        return 1;
    emdpo_llama_init(m, 1);
    float *grad = malloc(m->num_params * sizeof(float)), *dlogp = malloc((size_t)N * sizeof(float));
    int *tokens = malloc((size_t)N * sizeof(int)), *start = malloc((size_t)B * sizeof(int));
    int *end = malloc((size_t)B * sizeof(int));
    double *lp = malloc((size_t)B * sizeof(double)), *g = malloc((size_t)B * sizeof(double));
    double *ref = malloc((size_t)B * sizeof(double));
    if (!grad || !dlogp || !tokens || !start || !end || !lp || !g || !ref) return 1;
    emdpo_rng r;
    emdpo_rng_seed(&r, 1, 0);
    for (int i = 0; i < N; i++) tokens[i] = 3 + (int)emdpo_rng_below(&r, (uint64_t)c.vocab_size - 3);
    for (int b = 0; b < B; b++) {
        start[b] = 1;
        end[b] = T;
        ref[b] = 0.1 * emdpo_rng_normal(&r);
    }
    const double beta = 0.1;
    double t[64], tf[64], tc[64], tfc[64], loss = 0.0;
    reps = reps > 64 ? 64 : reps;
    for (int rep = -2; rep < reps; rep++) { /* two warm-up steps */
        double t0 = now(), c0 = cpu_now();
        memset(grad, 0, m->num_params * sizeof(float));
        memset(dlogp, 0, (size_t)N * sizeof(float));
        if (emdpo_llama_forward(m, a, tokens, NULL, B, T) || emdpo_llama_span_logp(a, start, end, lp)) return 1;
        /* DPO: loss = -mean log sigmoid(beta ((lc - rc) - (lr - rr))) over pairs */
        loss = 0.0;
        for (int p = 0; p < pairs; p++) {
            double z = beta * ((lp[2 * p] - ref[2 * p]) - (lp[2 * p + 1] - ref[2 * p + 1]));
            double sig = 1.0 / (1.0 + exp(z)); /* sigmoid(-z) */
            loss += log1p(exp(-z)) / pairs;
            g[2 * p] = -beta * sig / pairs;
            g[2 * p + 1] = beta * sig / pairs;
        }
        if (emdpo_llama_span_backward(a, start, end, g, dlogp) || emdpo_llama_backward(m, a, dlogp, grad)) return 1;
        if (rep >= 0) t[rep] = now() - t0, tc[rep] = cpu_now() - c0;
    }
    for (int rep = -1; rep < reps; rep++) {
        double t0 = now(), c0 = cpu_now();
        if (emdpo_llama_forward(m, af, tokens, NULL, B, T)) return 1;
        if (rep >= 0) tf[rep] = now() - t0, tfc[rep] = cpu_now() - c0;
    }
    double med = median(t, reps), fmed = median(tf, reps); /* sorts t: t[0] is the fastest */
    double cmed = median(tc, reps), fcmed = median(tfc, reps);
    double pmm = (double)L * (2.0 * C * C + 2.0 * C * kvd + 3.0 * C * H) + (double)c.vocab_size * C;
    double fwd_flops = 2.0 * N * pmm + 2.0 * B * L * c.n_heads * hs * (double)T * (T + 1);
    printf("RESULT peer=emdpo model=%s params=%zu B=%d T=%d threads=%d median_s=%.4f min_s=%.4f cpu_s=%.4f "
           "tok_per_s=%.0f gflops=%.1f fwd_s=%.4f fwd_cpu_s=%.4f fwd_tok_per_s=%.0f fwd_gflops=%.1f "
           "step_gflop=%.1f peak_rss_mb=%.0f loss=%.6f\n",
           which, m->num_params, B, T, emdpo_max_threads(), med, t[0], cmed, N / med, 3 * fwd_flops / med * 1e-9, fmed,
           fcmed, N / fmed, fwd_flops / fmed * 1e-9, 3 * fwd_flops * 1e-9, peak_rss_mb(), loss);
    free(grad);
    free(dlogp);
    free(tokens);
    free(start);
    free(end);
    free(lp);
    free(g);
    free(ref);
    emdpo_llama_acts_free(af);
    emdpo_llama_acts_free(a);
    emdpo_llama_free(m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "sgemm") == 0) return bench_sgemm(argc > 2 ? atoi(argv[2]) : 5);
    if (argc >= 2 && strcmp(argv[1], "kernel") == 0) return bench_kernel(argc > 2 ? atoi(argv[2]) : 5);
    if (argc >= 3 && strcmp(argv[1], "step") == 0) return bench_step(argv[2], argc > 3 ? atoi(argv[3]) : 5);
    fprintf(stderr, "usage: bench_llama step small|large [REPS] | bench_llama sgemm|kernel [REPS]\n");
    return 2;
}
