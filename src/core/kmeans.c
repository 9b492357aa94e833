#include "core/kmeans.h"

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/rng.h"
#include "base/threads.h"
#include "emdpo.h"

static double sqdist(const double *a, const double *b, int q) {
    double s = 0.0;
    for (int c = 0; c < q; c++) s += (a[c] - b[c]) * (a[c] - b[c]);
    return s;
}

/* k-means++: each next center drawn with probability proportional to the
 * squared distance to the nearest center so far. */
static void seed_centers(const double *X, int64_t n, int q, int K, emdpo_rng *r, double *centers, double *d2) {
    int64_t first = (int64_t)emdpo_rng_below(r, (uint64_t)n);
    memcpy(centers, X + first * q, (size_t)q * sizeof(double));
    for (int64_t i = 0; i < n; i++) d2[i] = sqdist(X + i * q, centers, q);
    for (int k = 1; k < K; k++) {
        double total = 0.0;
        for (int64_t i = 0; i < n; i++) total += d2[i];
        int64_t pick = (int64_t)emdpo_rng_below(r, (uint64_t)n);
        if (total > 0.0) { /* otherwise every point is a center already: any will do */
            double t = emdpo_rng_uniform(r) * total, acc = 0.0;
            for (int64_t i = 0; i < n; i++) {
                acc += d2[i];
                if (acc > t && d2[i] > 0.0) {
                    pick = i;
                    break;
                }
            }
        }
        double *ck = centers + (size_t)k * q;
        memcpy(ck, X + pick * q, (size_t)q * sizeof(double));
        for (int64_t i = 0; i < n; i++) d2[i] = fmin(d2[i], sqdist(X + i * q, ck, q));
    }
}

static int64_t assign_all(const double *X, int64_t n, int q, int K, const double *centers, int32_t *assign) {
    int64_t changed = 0;
#pragma omp parallel for reduction(+ : changed) schedule(static) if ((double)n * K * q >= EMDPO_PAR_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        int best = 0;
        double bd = INFINITY;
        for (int k = 0; k < K; k++) {
            double dd = sqdist(X + i * q, centers + (size_t)k * q, q);
            if (dd < bd) {
                bd = dd;
                best = k;
            }
        }
        changed += assign[i] != best;
        assign[i] = best;
    }
    return changed;
}

int emdpo_kmeans(const double *X, int64_t n, int q, int K, uint64_t seed, int max_iter,
                 int32_t *assign, double *centers) {
    if (n < 1 || q < 1 || K < 1) return EMDPO_ERR_INVALID_ARG;
    double *d2 = emdpo_malloc((size_t)n * sizeof(double));
    int64_t *count = emdpo_malloc((size_t)K * sizeof(int64_t));
    if (!d2 || !count) {
        emdpo_free(d2, (size_t)n * sizeof(double));
        emdpo_free(count, (size_t)K * sizeof(int64_t));
        return EMDPO_ERR_NOMEM;
    }
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, 0x6b6d65616e73ULL);
    seed_centers(X, n, q, K, &r, centers, d2);
    for (int64_t i = 0; i < n; i++) assign[i] = -1;
    for (int it = 0; it < max_iter; it++) {
        if (assign_all(X, n, q, K, centers, assign) == 0) break;
        /* Serial sums keep the centers bitwise independent of threads. */
        memset(centers, 0, (size_t)K * q * sizeof(double));
        memset(count, 0, (size_t)K * sizeof(int64_t));
        for (int64_t i = 0; i < n; i++) {
            count[assign[i]]++;
            for (int c = 0; c < q; c++) centers[(size_t)assign[i] * q + c] += X[i * q + c];
        }
        for (int k = 0; k < K; k++)
            for (int c = 0; c < q && count[k]; c++) centers[(size_t)k * q + c] /= (double)count[k];
        for (int k = 0; k < K; k++) {
            if (count[k]) continue;
            /* An empty cluster restarts at the point worst served by a shared cluster. */
            int64_t far = -1;
            double fd = -1.0;
            for (int64_t i = 0; i < n; i++) {
                if (count[assign[i]] < 2) continue;
                double dd = sqdist(X + i * q, centers + (size_t)assign[i] * q, q);
                if (dd > fd) {
                    fd = dd;
                    far = i;
                }
            }
            if (far < 0) break; /* fewer distinct points than clusters */
            count[assign[far]]--;
            assign[far] = k;
            count[k] = 1;
            memcpy(centers + (size_t)k * q, X + far * q, (size_t)q * sizeof(double));
        }
    }
    emdpo_free(d2, (size_t)n * sizeof(double));
    emdpo_free(count, (size_t)K * sizeof(int64_t));
    return EMDPO_OK;
}
