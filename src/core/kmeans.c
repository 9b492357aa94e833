#include "core/kmeans.h"

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/dist.h"
#include "base/rng.h"
#include "base/threads.h"
#include "base/xsum.h"
#include "emdpo.h"

/* Rows per block of partial sums; a process's rows start at a multiple of
 * it. */
#define KM_BLOCK 1024
_Static_assert(EMDPO_DIST_ALIGN % KM_BLOCK == 0, "a process's rows are whole blocks");
/* The k-means++ draw weighs row i by floor(d2_i / total * 2^KM_BITS). */
#define KM_BITS 50

typedef struct km {
    const double *X;
    int64_t n, base, n_all;
    int across, q;
    double *v;    /* (q + 1) scratch of fetch_row */
} km;

static double sqdist(const double *a, const double *b, int q) {
    double s = 0.0;
    for (int c = 0; c < q; c++) s += (a[c] - b[c]) * (a[c] - b[c]);
    return s;
}

/* The exact sums of v (n) over the processes into out (n); acc has room
 * for n accumulators. */
static int exact_sum(const km *m, int64_t *acc, const double *v, size_t n, double *out) {
    emdpo_xsum_zero(acc, n);
    emdpo_xsum_add_vec(acc, v, n);
    int rc = m->across ? emdpo_dist_xsum(acc, n) : EMDPO_OK;
    if (!rc) emdpo_xsum_values(acc, n, out);
    return rc;
}

/* Row g of all (whichever process holds it) into row (q); extra, when
 * not NULL, is sent along in row[q]. */
static int fetch_row(const km *m, int64_t *acc, int64_t g, const double *extra, double *row) {
    double *v = m->v;
    int q = m->q;
    int mine = g >= m->base && g < m->base + m->n;
    for (int c = 0; c <= q; c++) v[c] = 0.0;
    if (mine) {
        memcpy(v, m->X + (g - m->base) * q, (size_t)q * sizeof(double));
        if (extra) v[q] = extra[g - m->base];
    }
    return exact_sum(m, acc, v, (size_t)q + 1, row);
}

/* The sum of d2 over all rows. */
static int d2_total(const km *m, int64_t *acc, const double *d2, double *total) {
    emdpo_xsum_zero(acc, 1);
    for (int64_t i = 0; i < m->n; i++) emdpo_xsum_add(acc, d2[i]);
    int rc = m->across ? emdpo_dist_xsum(acc, 1) : EMDPO_OK;
    if (!rc) emdpo_xsum_values(acc, 1, total);
    return rc;
}

/* k-means++: each next center drawn with probability proportional to the
 * squared distance to the nearest center so far, by integer weights, so
 * that the draw is the same for any split of the rows. */
static int seed_centers(const km *m, int K, emdpo_rng *r, double *centers, double *d2, int64_t *acc) {
    int q = m->q;
    double *row = m->v + q + 1;
    int rc = fetch_row(m, acc, (int64_t)emdpo_rng_below(r, (uint64_t)m->n_all), NULL, row);
    if (rc) return rc;
    memcpy(centers, row, (size_t)q * sizeof(double));
    for (int64_t i = 0; i < m->n; i++) d2[i] = sqdist(m->X + i * q, centers, q);
    for (int k = 1; k < K; k++) {
        double total;
        if ((rc = d2_total(m, acc, d2, &total))) return rc;
        int64_t pick = (int64_t)emdpo_rng_below(r, (uint64_t)m->n_all);
        if (total > 0.0) { /* otherwise every point is a center already: any will do */
            double u = emdpo_rng_uniform(r);
            int64_t w[2] = {0, 0}; /* this process's weight; then the weight before it */
            for (int64_t i = 0; i < m->n; i++) w[0] += (int64_t)floor(d2[i] / total * (double)(1LL << KM_BITS));
            int64_t all = w[0], before = w[0];
            if ((rc = emdpo_dist_exscan_i64(&before, 1)) || (m->across && (rc = emdpo_dist_sum_i64(&all, 1)))) return rc;
            int64_t t = (int64_t)(u * (double)all), acc_w = before, found = INT64_MAX;
            for (int64_t i = 0; i < m->n; i++) {
                int64_t wi = (int64_t)floor(d2[i] / total * (double)(1LL << KM_BITS));
                acc_w += wi;
                if (acc_w > t && wi > 0) {
                    found = m->base + i;
                    break;
                }
            }
            if (m->across && (rc = emdpo_dist_min_i64(&found, 1))) return rc;
            if (found != INT64_MAX) pick = found;
        }
        double *ck = centers + (size_t)k * q;
        if ((rc = fetch_row(m, acc, pick, NULL, row))) return rc;
        memcpy(ck, row, (size_t)q * sizeof(double));
        for (int64_t i = 0; i < m->n; i++) d2[i] = fmin(d2[i], sqdist(m->X + i * q, ck, q));
    }
    return EMDPO_OK;
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

/* The means of the clusters into centers and their sizes into count:
 * block partials, added exactly. part is (K, q) scratch. */
static int update_centers(const km *m, int K, const int32_t *assign, double *centers, int64_t *count, double *part,
                          int64_t *acc) {
    int q = m->q;
    size_t kq = (size_t)K * q;
    emdpo_xsum_zero(acc, kq);
    for (int k = 0; k < K; k++) count[k] = 0;
    for (int64_t b0 = 0; b0 < m->n; b0 += KM_BLOCK) {
        int64_t b1 = b0 + KM_BLOCK < m->n ? b0 + KM_BLOCK : m->n;
        memset(part, 0, kq * sizeof(double));
        for (int64_t i = b0; i < b1; i++) {
            count[assign[i]]++;
            for (int c = 0; c < q; c++) part[(size_t)assign[i] * q + c] += m->X[i * q + c];
        }
        emdpo_xsum_add_vec(acc, part, kq);
    }
    int rc = m->across ? emdpo_dist_xsum(acc, kq) : EMDPO_OK;
    if (!rc && m->across) rc = emdpo_dist_sum_i64(count, (size_t)K);
    if (rc) return rc;
    emdpo_xsum_values(acc, kq, centers);
    for (int k = 0; k < K; k++)
        for (int c = 0; c < q && count[k]; c++) centers[(size_t)k * q + c] /= (double)count[k];
    return EMDPO_OK;
}

/* An empty cluster k restarts at the point worst served by a shared
 * cluster (the first such point of all). 1 when there is none. */
static int restart_empty(const km *m, int k, int32_t *assign, double *centers, int64_t *count, double *d2,
                         int64_t *acc, int *none) {
    int q = m->q;
    double fd = -1.0;
    int64_t far = INT64_MAX;
    for (int64_t i = 0; i < m->n; i++) {
        d2[i] = count[assign[i]] < 2 ? -1.0 : sqdist(m->X + i * q, centers + (size_t)assign[i] * q, q);
        if (d2[i] > fd) fd = d2[i];
    }
    int rc = m->across ? emdpo_dist_max_double(&fd, 1) : EMDPO_OK;
    for (int64_t i = 0; !rc && i < m->n && fd >= 0.0; i++)
        if (d2[i] == fd) {
            far = m->base + i;
            break;
        }
    if (!rc && m->across) rc = emdpo_dist_min_i64(&far, 1);
    if (rc) return rc;
    *none = fd < 0.0 || far == INT64_MAX;
    if (*none) return EMDPO_OK; /* fewer distinct points than clusters */
    for (int64_t i = 0; i < m->n; i++) d2[i] = assign[i];
    double *row = m->v + q + 1;
    if ((rc = fetch_row(m, acc, far, d2, row))) return rc;
    count[(int)row[q]]--;
    if (far >= m->base && far < m->base + m->n) assign[far - m->base] = k;
    count[k] = 1;
    memcpy(centers + (size_t)k * q, row, (size_t)q * sizeof(double));
    return EMDPO_OK;
}

int emdpo_kmeans_shared(const double *X, int64_t n, int64_t base, int64_t n_all, int across, int q, int K,
                        uint64_t seed, int max_iter, int32_t *assign, double *centers) {
    if (n < 0 || n_all < 1 || q < 1 || K < 1) return EMDPO_ERR_INVALID_ARG;
    km m = {X, n, base, n_all, across, q, emdpo_malloc(2 * ((size_t)q + 1) * sizeof(double))};
    size_t d2_bytes = (size_t)(n ? n : 1) * sizeof(double), kq = (size_t)K * q;
    size_t acc_n = kq > (size_t)q + 1 ? kq : (size_t)q + 1, acc_bytes = acc_n * EMDPO_XSUM_WORDS * sizeof(int64_t);
    double *d2 = emdpo_malloc(d2_bytes), *part = emdpo_malloc(kq * sizeof(double));
    int64_t *count = emdpo_malloc((size_t)K * sizeof(int64_t)), *acc = emdpo_malloc(acc_bytes);
    int rc = d2 && part && count && acc && m.v ? EMDPO_OK : EMDPO_ERR_NOMEM;
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, 0x6b6d65616e73ULL);
    if (!rc) rc = seed_centers(&m, K, &r, centers, d2, acc);
    for (int64_t i = 0; i < n; i++) assign[i] = -1;
    for (int it = 0; !rc && it < max_iter; it++) {
        int64_t changed = assign_all(X, n, q, K, centers, assign);
        if (across && (rc = emdpo_dist_sum_i64(&changed, 1))) break;
        if (changed == 0) break;
        if ((rc = update_centers(&m, K, assign, centers, count, part, acc))) break;
        for (int k = 0; k < K && !rc; k++) {
            if (count[k]) continue;
            int none = 0;
            rc = restart_empty(&m, k, assign, centers, count, d2, acc, &none);
            if (none) break;
        }
    }
    emdpo_free(d2, d2_bytes);
    emdpo_free(part, kq * sizeof(double));
    emdpo_free(count, (size_t)K * sizeof(int64_t));
    emdpo_free(acc, acc_bytes);
    emdpo_free(m.v, 2 * ((size_t)q + 1) * sizeof(double));
    return rc;
}

int emdpo_kmeans(const double *X, int64_t n, int q, int K, uint64_t seed, int max_iter, int32_t *assign,
                 double *centers) {
    if (n < 1) return EMDPO_ERR_INVALID_ARG;
    return emdpo_kmeans_shared(X, n, 0, n, 0, q, K, seed, max_iter, assign, centers);
}
