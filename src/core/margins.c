/* Validation reward margins for choosing K (core/margins.h) and the
 * public criterion on margins computed anywhere (emdpo/em.h). */
#include "core/margins.h"

#include <math.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "core/estep.h"

void emdpo_margin_acc_init(emdpo_margin_acc *a, int K) {
    for (int k = 0; k < K; k++) a->sum[k] = a->half[0][k] = a->half[1][k] = 0.0;
    a->n = 0;
}

void emdpo_margin_acc_add(emdpo_margin_acc *a, int K, const double *m) {
    for (int k = 0; k < K; k++) {
        a->sum[k] += m[k];
        a->half[a->n % 2][k] += m[k];
    }
    a->n++;
}

/* The largest of v (K), NaN skipped; NaN when all are. */
static double max_of(const double *v, int K) {
    double m = NAN;
    for (int k = 0; k < K; k++)
        if (!isnan(v[k]) && (isnan(m) || v[k] > m)) m = v[k];
    return m;
}

/* The first type with the largest v (K), NaN skipped; -1 when all are NaN. */
static int argmax_of(const double *v, int K) {
    int b = -1;
    for (int k = 0; k < K; k++)
        if (!isnan(v[k]) && (b < 0 || v[k] > v[b])) b = k;
    return b;
}

void emdpo_margin_acc_scores(const emdpo_margin_acc *a, int K, double *mean, double *best, double *crossfit) {
    int64_t n[2] = {(a->n + 1) / 2, a->n / 2};
    double half[2][EMDPO_MAX_K];
    for (int k = 0; k < K; k++) {
        mean[k] = a->sum[k] / (double)a->n;
        half[0][k] = a->half[0][k] / (double)n[0];
        half[1][k] = n[1] ? a->half[1][k] / (double)n[1] : NAN;
    }
    *best = max_of(mean, K);
    /* the best type on one half, scored on the other */
    int k0 = argmax_of(half[0], K), k1 = argmax_of(half[1], K);
    *crossfit = k0 < 0 || k1 < 0 ? NAN : 0.5 * (half[1][k0] + half[0][k1]);
}

int emdpo_margin_criterion(int K, int64_t n_dec, const double *margins, const int64_t *annotator, int64_t n_annot,
                           double *criterion, double *crossfit, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (K < 1 || K > EMDPO_MAX_K || n_dec < 1 || n_annot < 1 || !margins || !annotator || !criterion)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no arrays, no decision, or K out of 1..%d", EMDPO_MAX_K);
    for (int64_t q = 0; q < n_dec * K; q++)
        if (isinf(margins[q]))
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "decision %lld: margin %d is infinite",
                                   (long long)(q / K), (int)(q % K) + 1);
    size_t start_bytes = (size_t)(n_annot + 1) * sizeof(int64_t), order_bytes = 0;
    int64_t *start = emdpo_malloc(start_bytes), *order = NULL;
    if (!start) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    int rc = emdpo_group_decisions(n_dec, annotator, n_annot, start, &order, &order_bytes, diag);
    double best = 0.0, cf = 0.0, mean[EMDPO_MAX_K];
    int64_t n_used = 0, n_cf = 0;
    for (int64_t a = 0; !rc && a < n_annot; a++) {
        if (start[a] == start[a + 1]) continue;
        emdpo_margin_acc acc;
        emdpo_margin_acc_init(&acc, K);
        for (int64_t t = start[a]; t < start[a + 1]; t++) emdpo_margin_acc_add(&acc, K, margins + (order ? order[t] : t) * K);
        double b, c;
        emdpo_margin_acc_scores(&acc, K, mean, &b, &c);
        best += b;
        n_used++;
        if (!isnan(c)) cf += c, n_cf++;
    }
    emdpo_free(order, order_bytes);
    emdpo_free(start, start_bytes);
    if (rc) return rc;
    *criterion = best / (double)n_used;
    if (crossfit) *crossfit = n_cf ? cf / (double)n_cf : NAN;
    return EMDPO_OK;
}

int emdpo_margin_best(int n, const int *k, const double *value) {
    if (n < 1 || !k || !value) return -1;
    int b = 0;
    for (int r = 1; r < n; r++) {
        double v = value[r], vb = value[b];
        if ((isnan(vb) && !isnan(v)) || v > vb || (v == vb && k[r] < k[b])) b = r;
    }
    return b;
}
