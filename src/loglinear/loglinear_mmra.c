/* MMRA-AE's expected rewards for log-linear policies, exact over each
 * decision's items (loglinear_mmra.h). */
#include "loglinear/loglinear_mmra.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/alloc.h"
#include "base/threads.h"

/* Decisions summed serially into one partial; fixed, so that sums over
 * decisions do not depend on the number of threads. */
#define LOGLIN_BLOCK 256

/* Adds decision dec's terms to V (M, M) and norm (M). s and pr are (M, n)
 * scratch for the rewards theta_a . psi_y and the policies pi_a(y|C). */
static void loglin_decision(const emdpo_data *d, int64_t dec, const double *theta, int M, double beta,
                            double *s, double *pr, double *V, double *norm) {
    int n = emdpo_dec_n_items(d, dec), P = d->p;
    const double *x = d->x + (size_t)d->dec_item[dec] * P;
    double log_n = log((double)n);
    for (int a = 0; a < M; a++) {
        const double *th = theta + (size_t)a * P;
        double *sa = s + (size_t)a * n, *pa = pr + (size_t)a * n;
        double mx = -INFINITY, z = 0.0;
        for (int y = 0; y < n; y++) {
            double r = 0.0;
            for (int k = 0; k < P; k++) r += th[k] * x[(size_t)y * P + k];
            sa[y] = r;
            mx = fmax(mx, r / beta);
        }
        for (int y = 0; y < n; y++) {
            pa[y] = exp(sa[y] / beta - mx);
            z += pa[y];
        }
        for (int y = 0; y < n; y++) pa[y] /= z;
        norm[a] += beta * (mx + log(z) - log_n);
    }
    for (int a = 0; a < M; a++)
        for (int b = 0; b < M; b++) {
            const double *sa = s + (size_t)a * n, *pb = pr + (size_t)b * n;
            double e = 0.0;
            for (int y = 0; y < n; y++) e += pb[y] * sa[y];
            V[(size_t)a * M + b] += e;
        }
}

/* Per-block partial sums (n_blocks, M*M + M): V's terms, then norm's. */
static void loglin_blocks(const emdpo_data *d, const double *theta, int M, double beta, int64_t n_blocks,
                          size_t stride, double *partial, double *scratch, size_t scratch_per_thread) {
    int64_t bk;
#pragma omp parallel for schedule(dynamic) if ((double)d->n_items * M >= EMDPO_PAR_MIN_WORK)
    for (bk = 0; bk < n_blocks; bk++) {
        double *part = partial + (size_t)bk * stride;
        double *s = scratch + (size_t)emdpo_thread_num() * scratch_per_thread;
        double *pr = s + scratch_per_thread / 2;
        memset(part, 0, stride * sizeof(double));
        int64_t end = (bk + 1) * LOGLIN_BLOCK < d->n_dec ? (bk + 1) * LOGLIN_BLOCK : d->n_dec;
        for (int64_t dec = bk * LOGLIN_BLOCK; dec < end; dec++)
            loglin_decision(d, dec, theta, M, beta, s, pr, part, part + (size_t)M * M);
    }
}

int emdpo_mmra_loglin_cross(const emdpo_data *d, const double *theta, int M, double beta, double *V,
                            double *norm) {
    if (!d || M < 1 || !(beta > 0.0) || !isfinite(beta) || d->n_dec < 1) return EMDPO_ERR_INVALID_ARG;
    if (d->p == 0) return EMDPO_ERR_UNSUPPORTED;
    int max_n = 0;
    for (int64_t dec = 0; dec < d->n_dec; dec++)
        if (emdpo_dec_n_items(d, dec) > max_n) max_n = emdpo_dec_n_items(d, dec);
    int n_threads = emdpo_max_threads();
    int64_t n_blocks = (d->n_dec + LOGLIN_BLOCK - 1) / LOGLIN_BLOCK;
    size_t mm = (size_t)M * M, stride = mm + (size_t)M;
    size_t per_thread = 2 * (size_t)M * (size_t)max_n;
    if ((size_t)n_blocks > SIZE_MAX / sizeof(double) / stride ||
        (size_t)n_threads > SIZE_MAX / sizeof(double) / per_thread)
        return EMDPO_ERR_LIMIT;
    double *partial = emdpo_malloc((size_t)n_blocks * stride * sizeof(double));
    double *scratch = emdpo_malloc((size_t)n_threads * per_thread * sizeof(double));
    int rc = EMDPO_ERR_NOMEM;
    if (partial && scratch) {
        loglin_blocks(d, theta, M, beta, n_blocks, stride, partial, scratch, per_thread);
        /* Blocks are added in order, serially: the thread count cannot show. */
        double inv = 1.0 / (double)d->n_dec;
        rc = EMDPO_OK;
        for (size_t k = 0; k < stride; k++) {
            double acc = 0.0;
            for (int64_t bk = 0; bk < n_blocks; bk++) acc += partial[(size_t)bk * stride + k];
            acc *= inv;
            if (!isfinite(acc)) rc = EMDPO_ERR_NUMERIC;
            if (k < mm) V[k] = acc;
            else if (norm) norm[k - mm] = acc;
        }
    }
    emdpo_free(partial, (size_t)n_blocks * stride * sizeof(double));
    emdpo_free(scratch, (size_t)n_threads * per_thread * sizeof(double));
    return rc;
}

int emdpo_mmra_loglin_L(const emdpo_data *d, const double *theta, int K, double beta, double *L) {
    if (K < 1) return EMDPO_ERR_INVALID_ARG;
    double *norm = emdpo_malloc((size_t)K * sizeof(double));
    if (!norm) return EMDPO_ERR_NOMEM;
    int rc = emdpo_mmra_loglin_cross(d, theta, K, beta, L, norm);
    if (rc == EMDPO_OK)
        for (int a = 0; a < K; a++)
            for (int b = 0; b < K; b++) L[(size_t)a * K + b] -= norm[a];
    emdpo_free(norm, (size_t)K * sizeof(double));
    return rc;
}

int emdpo_mmra_loglin_regret(const emdpo_data *d, const double *theta, int K, double beta,
                             const double *theta_pi, double *regret) {
    if (!d || K < 1) return EMDPO_ERR_INVALID_ARG;
    if (d->p == 0) return EMDPO_ERR_UNSUPPORTED;
    /* The K types and pi as one stack of K+1 policies; pi is the last. */
    size_t P = (size_t)d->p, M = (size_t)K + 1;
    double *stack = emdpo_malloc(M * P * sizeof(double));
    double *V = emdpo_malloc(M * M * sizeof(double));
    int rc = EMDPO_ERR_NOMEM;
    if (stack && V) {
        memcpy(stack, theta, (size_t)K * P * sizeof(double));
        memcpy(stack + (size_t)K * P, theta_pi, P * sizeof(double));
        rc = emdpo_mmra_loglin_cross(d, stack, K + 1, beta, V, NULL);
        if (rc == EMDPO_OK)
            for (int a = 0; a < K; a++) regret[a] = V[(size_t)a * M + a] - V[(size_t)a * M + (size_t)K];
    }
    emdpo_free(stack, M * P * sizeof(double));
    emdpo_free(V, M * M * sizeof(double));
    return rc;
}
