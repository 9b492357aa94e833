/* The E-step on log-ratios computed anywhere (emdpo/em.h): the decisions'
 * log P_k from the shared choice model, summed per annotator, then EM's own
 * E-step (core/em.c's emdpo_em_estep_sums), so that the posterior of a fit
 * and of this call are one computation. */
#include "core/estep.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/vmath.h"
#include "core/choice.h"
#include "core/em.h"

/* How far sum(eta) may be from 1: eta typed on a command line or printed
 * with a few digits still passes; a vector of counts does not. */
#define ETA_SUM_TOL 1e-6

int emdpo_group_decisions(int64_t n_dec, const int64_t *annotator, int64_t n_annot, int64_t *start, int64_t **order,
                          size_t *order_bytes, emdpo_diag *diag) {
    *order = NULL;
    *order_bytes = 0;
    int grouped = 1;
    memset(start, 0, (size_t)(n_annot + 1) * sizeof *start);
    for (int64_t j = 0; j < n_dec; j++) {
        int64_t a = annotator[j];
        if (a < 0 || a >= n_annot)
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "decision %lld: annotator %lld outside 0..%lld",
                                   (long long)j, (long long)a, (long long)n_annot - 1);
        if (j && a != annotator[j - 1] && (a < annotator[j - 1] || start[a + 1])) grouped = 0;
        start[a + 1]++;
    }
    /* grouped also needs each annotator's run to start where the previous
     * annotators' runs end, which the counts give: a run of a smaller index
     * after a larger one, or a second run, was caught above. */
    for (int64_t a = 0; a < n_annot; a++) start[a + 1] += start[a];
    if (grouped) return EMDPO_OK;
    size_t bytes = (size_t)(n_dec ? n_dec : 1) * sizeof(int64_t);
    int64_t *ord = emdpo_malloc(bytes), *fill = emdpo_malloc((size_t)(n_annot ? n_annot : 1) * sizeof(int64_t));
    if (!ord || !fill) {
        emdpo_free(ord, bytes);
        emdpo_free(fill, (size_t)(n_annot ? n_annot : 1) * sizeof(int64_t));
        return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    memcpy(fill, start, (size_t)n_annot * sizeof(int64_t));
    for (int64_t j = 0; j < n_dec; j++) ord[fill[annotator[j]]++] = j;
    emdpo_free(fill, (size_t)(n_annot ? n_annot : 1) * sizeof(int64_t));
    *order = ord;
    *order_bytes = bytes;
    return EMDPO_OK;
}

typedef struct ragged {
    int K;
    const double *lr;
    int64_t ld;
    const int64_t *offsets;
    const unsigned char *ranking;
    double beta;
    const int64_t *start, *order;
} ragged;

/* Top choices among at most this many items take the vectorised path:
 * its normaliser, at most this many terms of at most 1, cannot overflow. */
#define FAST_NMAX 16

/* Decision j's log P under every type into lp (K): NaN when a log-ratio
 * or beta times it is not finite. A top choice among few items is
 * computed for all types at once, the loops running across types with exp
 * and log that vectorise
 * (base/vmath.h); a ranking, or a choice among many items, by the choice
 * model one type at a time. */
static void decision_logp(const ragged *c, int64_t j, int K, double *lp) {
    const int64_t off = c->offsets[j];
    const int n = (int)(c->offsets[j + 1] - off), stages = c->ranking && c->ranking[j] ? n - 1 : 1;
    const size_t ld = (size_t)c->ld;
    const double beta = c->beta, *x = c->lr + off;
    int bad = 0; /* a log-ratio that is not finite, or whose utility overflows */
    if (stages > 1 || n > FAST_NMAX) {
        for (int k = 0; k < K; k++)
            for (int q = 0; q < n; q++) bad |= !(fabs(beta * x[k * ld + q]) <= DBL_MAX);
        for (int k = 0; k < K; k++) lp[k] = bad ? NAN : emdpo_choice_logp_scaled(x + k * ld, n, stages, beta);
        return;
    }
    /* the utilities, items by types: the loops below run along types,
     * contiguous here (the caller's rows are far apart) */
    double u[FAST_NMAX][EMDPO_MAX_K], m[EMDPO_MAX_K], z[EMDPO_MAX_K];
    for (int k = 0; k < K; k++)
        for (int q = 0; q < n; q++) u[q][k] = beta * x[k * ld + q];
    for (int q = 0; q < n; q++)
        for (int k = 0; k < K; k++) bad |= !(fabs(u[q][k]) <= DBL_MAX);
    if (bad) {
        for (int k = 0; k < K; k++) lp[k] = NAN;
        return;
    }
    for (int k = 0; k < K; k++) m[k] = u[0][k];
    for (int q = 1; q < n; q++)
        for (int k = 0; k < K; k++) m[k] = u[q][k] > m[k] ? u[q][k] : m[k];
    /* shifted by the largest utility: its term is exactly 1, so z >= 1 */
    for (int k = 0; k < K; k++) z[k] = 0.0;
    for (int q = 0; q < n; q++)
        for (int k = 0; k < K; k++) z[k] += emdpo_exp_bounded(u[q][k] - m[k]);
    for (int k = 0; k < K; k++) lp[k] = u[0][k] - m[k] - emdpo_log_ge1(z[k]);
}

/* Annotator i's sums of log P_k over its decisions, in decision order. A
 * non-finite log-ratio makes them NaN: the log-likelihood then is not
 * finite, and the caller names the decision. */
static void sums_of_logratios(const void *ctx, int64_t i, int K, double *s) {
    const ragged *c = ctx;
    double lp[EMDPO_MAX_K];
    for (int k = 0; k < K; k++) s[k] = 0.0;
    for (int64_t t = c->start[i]; t < c->start[i + 1]; t++) {
        decision_logp(c, c->order ? c->order[t] : t, K, lp);
        for (int k = 0; k < K; k++) s[k] += lp[k];
    }
}

/* The first decision with a non-finite log-ratio, -1 when there is none. */
static int64_t first_nonfinite(const ragged *c, int64_t n_dec) {
    for (int64_t j = 0; j < n_dec; j++)
        for (int k = 0; k < c->K; k++)
            for (int64_t q = c->offsets[j]; q < c->offsets[j + 1]; q++)
                if (!isfinite(c->lr[(size_t)k * (size_t)c->ld + (size_t)q])) return j;
    return -1;
}

/* log eta from eta (NULL: uniform), checked. */
static int log_eta_of(const double *eta, int K, double *log_eta, emdpo_diag *diag) {
    double sum = 0.0;
    for (int k = 0; k < K; k++) {
        double e = eta ? eta[k] : 1.0 / K;
        if (!(e >= 0) || !isfinite(e))
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "eta_%d = %g is not a finite number >= 0", k + 1, e);
        sum += e;
        log_eta[k] = e > 0 ? log(e) : -INFINITY;
    }
    if (!(fabs(sum - 1.0) <= ETA_SUM_TOL))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "eta sums to %.17g, not 1", sum);
    return EMDPO_OK;
}

int emdpo_estep(int K, int64_t n_dec, const double *logratios, int64_t ld, const int64_t *offsets,
                const unsigned char *ranking, const int64_t *annotator, int64_t n_annot, double beta,
                const double *eta, double *gamma, double *eta_new, double *loglik, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (K < 1 || K > EMDPO_MAX_K)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "K = %d outside 1..%d", K, EMDPO_MAX_K);
    if (n_dec < 0 || n_annot < 1 || !logratios || !offsets || !annotator || !gamma)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no arrays, a negative size or no annotator");
    if (!(beta > 0) || !isfinite(beta))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "beta = %g is not a finite number > 0", beta);
    double log_eta[EMDPO_MAX_K];
    int rc = log_eta_of(eta, K, log_eta, diag);
    if (rc) return rc;
    if (offsets[0] < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "offsets[0] = %lld < 0", (long long)offsets[0]);
    for (int64_t j = 0; j < n_dec; j++) {
        int64_t n = offsets[j + 1] - offsets[j];
        if (n < 2 || n > INT32_MAX)
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "decision %lld has %lld items (needs 2 or more)",
                                   (long long)j, (long long)n);
    }
    if (offsets[n_dec] > ld)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "the decisions' items end at column %lld, past the row "
                               "length %lld", (long long)offsets[n_dec], (long long)ld);
    size_t start_bytes = (size_t)(n_annot + 1) * sizeof(int64_t), order_bytes = 0;
    int64_t *start = emdpo_malloc(start_bytes), *order = NULL;
    if (!start) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    rc = emdpo_group_decisions(n_dec, annotator, n_annot, start, &order, &order_bytes, diag);
    ragged c = {K, logratios, ld, offsets, ranking, beta, start, order};
    double ll = 0.0;
    if (!rc) {
        double work = (double)(offsets[n_dec] - offsets[0]) * K;
        rc = emdpo_em_estep_sums(n_annot, K, sums_of_logratios, &c, work, log_eta, gamma, NULL, &ll, 0);
        if (rc == EMDPO_ERR_NOMEM) emdpo_diag_fail(diag, rc, "out of memory");
        if (rc == EMDPO_ERR_NUMERIC) {
            int64_t bad = first_nonfinite(&c, n_dec);
            if (bad >= 0)
                rc = emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "decision %lld has a log-ratio that is not finite",
                                     (long long)bad);
            else
                emdpo_diag_fail(diag, rc, "the log-likelihood is not finite (beta times the log-ratios overflows)");
        }
    }
    emdpo_free(order, order_bytes);
    emdpo_free(start, start_bytes);
    if (rc) return rc;
    if (eta_new) {
        /* the M-step's eta: gamma's column means, summed in annotator order */
        for (int k = 0; k < K; k++) eta_new[k] = 0.0;
        for (int64_t i = 0; i < n_annot; i++)
            for (int k = 0; k < K; k++) eta_new[k] += gamma[i * K + k];
        for (int k = 0; k < K; k++) eta_new[k] /= (double)n_annot;
    }
    if (loglik) *loglik = ll;
    return EMDPO_OK;
}

int emdpo_estep_weights(int K, int64_t n_dec, const int64_t *annotator, int64_t n_annot, const double *gamma,
                        int normalize, double *w, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (K < 1 || K > EMDPO_MAX_K || n_dec < 0 || n_annot < 1 || !annotator || !gamma || !w)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no arrays, or K or a size out of range");
    for (int64_t q = 0; q < n_annot * K; q++)
        if (!(gamma[q] >= 0) || !isfinite(gamma[q]))
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "gamma[%lld][%d] = %g is not a finite number >= 0",
                                   (long long)(q / K), (int)(q % K) + 1, gamma[q]);
    double sum[EMDPO_MAX_K] = {0};
    for (int64_t j = 0; j < n_dec; j++) {
        int64_t a = annotator[j];
        if (a < 0 || a >= n_annot)
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "decision %lld: annotator %lld outside 0..%lld",
                                   (long long)j, (long long)a, (long long)n_annot - 1);
        for (int k = 0; k < K; k++) sum[k] += w[j * K + k] = gamma[a * K + k];
    }
    if (!normalize) return EMDPO_OK;
    /* as the Llama M-step rescales its weights (llama_policy.c): the
     * column's mean over decisions becomes 1 */
    for (int k = 0; k < K; k++) {
        if (!(sum[k] > 0.0)) continue;
        double scale = (double)n_dec / sum[k];
        for (int64_t j = 0; j < n_dec; j++) w[j * K + k] *= scale;
    }
    return EMDPO_OK;
}
