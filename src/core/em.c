#include "core/em.h"

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/dist.h"
#include "base/xsum.h"
#include "base/diag.h"
#include "base/rng.h"
#include "base/threads.h"
#include "core/kmeans.h"

/* Annotators per block of partial sums, which are then added exactly; a
 * share of the data (data/data.h) is whole blocks. */
#define EM_BLOCK 1024
_Static_assert(EMDPO_DIST_ALIGN % EM_BLOCK == 0, "a process's share is whole blocks");
/* A type whose responsibilities sum below this holds no data: it is
 * declared empty and frozen, rather than fitted to nothing. */
#define EM_EMPTY_MASS 1e-8

void emdpo_em_opts_init(emdpo_em_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->max_iter = 500;
    o->tol = 1e-9;
    o->starts = 1;
    o->seed = 1;
    o->init = EMDPO_INIT_KMEANS;
}

const char *emdpo_init_name(int init) {
    switch (init) {
    case EMDPO_INIT_KMEANS: return "kmeans";
    case EMDPO_INIT_RANDOM: return "random";
    case EMDPO_INIT_KMEANS_TOKENS: return "kmeans-tokens";
    default: return NULL;
    }
}

/* Annotator i's row: s (K) holds log eta_k + sum_j log P_k(V_ij) on entry.
 * Empty types stay at -inf: exp gives exactly 0, never NaN. One exp per
 * type gives both the normaliser and gamma. Returns the log-sum-exp. */
static double estep_row(double *s, const double *log_eta, int K, double *gamma) {
    double m = -INFINITY, tot = 0.0;
    for (int k = 0; k < K; k++) {
        if (log_eta[k] == -INFINITY) s[k] = -INFINITY;
        m = s[k] > m ? s[k] : m;
    }
    for (int k = 0; k < K; k++) tot += s[k] = s[k] == -INFINITY ? 0.0 : exp(s[k] - m);
    for (int k = 0; k < K; k++) gamma[k] = tot > 0.0 ? s[k] / tot : 0.0;
    return m + log(tot);
}

/* The E-step over annotators [0, n), annotator i's per-type sums from
 * sums(ctx, i, K, s): blocks of EM_BLOCK annotators, each block's
 * log-likelihood a partial sum, the partials added exactly. */
int emdpo_em_estep_sums(int64_t n, int K, emdpo_em_sums_fn sums, const void *ctx, double work, const double *log_eta,
                        double *gamma, double *ll_annot, double *loglik, int across) {
    if (K < 1 || K > EMDPO_MAX_K || n < 0) return EMDPO_ERR_INVALID_ARG;
    int64_t n_blocks = (n + EM_BLOCK - 1) / EM_BLOCK;
    double *part = emdpo_malloc((size_t)(n_blocks ? n_blocks : 1) * sizeof(double));
    if (!part) return EMDPO_ERR_NOMEM;
#pragma omp parallel for schedule(static) if (work >= EMDPO_PAR_MIN_WORK)
    for (int64_t b = 0; b < n_blocks; b++) {
        double s[EMDPO_MAX_K];
        double acc = 0.0;
        int64_t i1 = (b + 1) * EM_BLOCK < n ? (b + 1) * EM_BLOCK : n;
        for (int64_t i = b * EM_BLOCK; i < i1; i++) {
            sums(ctx, i, K, s);
            for (int k = 0; k < K; k++) s[k] += log_eta[k];
            double lse = estep_row(s, log_eta, K, gamma + i * K);
            if (ll_annot) ll_annot[i] = lse;
            acc += lse;
        }
        part[b] = acc;
    }
    double total = 0.0;
    int rc = emdpo_dist_sum_rows(part, n_blocks, 1, across, &total);
    emdpo_free(part, (size_t)(n_blocks ? n_blocks : 1) * sizeof(double));
    if (rc) return rc;
    *loglik = total;
    return isfinite(total) ? EMDPO_OK : EMDPO_ERR_NUMERIC;
}

typedef struct data_sums {
    const emdpo_data *d;
    const double *logp; /* (n_dec, K) */
} data_sums;

/* Annotator i's decisions' log P, added in decision order. */
static void sums_of_data(const void *ctx, int64_t i, int K, double *s) {
    const data_sums *c = ctx;
    for (int k = 0; k < K; k++) s[k] = 0.0;
    for (int64_t j = c->d->annot_dec[i]; j < c->d->annot_dec[i + 1]; j++)
        for (int k = 0; k < K; k++) s[k] += c->logp[j * K + k];
}

static void sums_of_annot(const void *ctx, int64_t i, int K, double *s) {
    const double *annot_logp = ctx;
    for (int k = 0; k < K; k++) s[k] = annot_logp[i * K + k];
}

int emdpo_em_estep(const emdpo_data *d, int K, const double *logp, const double *log_eta, double *gamma,
                   double *ll_annot, double *loglik) {
    if (!d || !logp || !log_eta || !gamma || !loglik) return EMDPO_ERR_INVALID_ARG;
    data_sums c = {d, logp};
    return emdpo_em_estep_sums(d->n_annot, K, sums_of_data, &c, (double)d->n_dec * K, log_eta, gamma, ll_annot,
                               loglik, d->shard);
}

int emdpo_em_estep_annot(int64_t n_annot, int K, const double *annot_logp, const double *log_eta, double *gamma,
                         double *ll_annot, double *loglik) {
    if (n_annot < 0 || !annot_logp) return EMDPO_ERR_INVALID_ARG;
    return emdpo_em_estep_sums(n_annot, K, sums_of_annot, annot_logp, (double)n_annot * K, log_eta, gamma, ll_annot,
                               loglik, 0);
}

int emdpo_em_feature_summaries(const emdpo_data *d, double *out) {
    int p = d->p;
    if (p < 1) return EMDPO_ERR_UNSUPPORTED;
    /* One pass over every feature: each row is one thread's alone. */
#pragma omp parallel for schedule(static) if ((double)d->n_items * p >= EMDPO_PAR_MIN_WORK)
    for (int64_t i = 0; i < d->n_annot; i++) {
        double *o = out + i * p;
        for (int a = 0; a < p; a++) o[a] = 0.0;
        int64_t m = d->annot_dec[i + 1] - d->annot_dec[i];
        for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) {
            int n = emdpo_dec_n_items(d, j);
            const double *x = d->x + (size_t)d->dec_item[j] * p;
            for (int a = 0; a < p; a++) {
                double mean = 0.0;
                for (int q = 0; q < n; q++) mean += x[(size_t)q * p + a];
                o[a] += (x[a] - mean / n) / (double)m;
            }
        }
    }
    /* Column means and variances over the whole data, added exactly. */
    size_t bytes = (size_t)p * EMDPO_XSUM_WORDS * sizeof(int64_t);
    int64_t *acc = emdpo_malloc(bytes);
    double *mean = emdpo_malloc(2 * (size_t)p * sizeof(double)), *var = mean + p;
    int rc = acc && mean ? EMDPO_OK : EMDPO_ERR_NOMEM;
    double n_all = (double)emdpo_data_all_annot(d);
    for (int pass = 0; pass < 2 && !rc; pass++) {
        emdpo_xsum_zero(acc, (size_t)p);
        for (int64_t i = 0; i < d->n_annot; i++)
            for (int a = 0; a < p; a++) {
                double v = out[i * p + a];
                emdpo_xsum_add(acc + (size_t)a * EMDPO_XSUM_WORDS, pass ? (v - mean[a]) * (v - mean[a]) : v);
            }
        if (d->shard && (rc = emdpo_dist_xsum(acc, (size_t)p))) break;
        emdpo_xsum_values(acc, (size_t)p, pass ? var : mean);
        for (int a = 0; a < p; a++) (pass ? var : mean)[a] /= n_all;
    }
    for (int a = 0; a < p && !rc; a++) {
        double sd = sqrt(var[a]);
        for (int64_t i = 0; i < d->n_annot; i++) out[i * p + a] = (out[i * p + a] - mean[a]) / (sd > 0 ? sd : 1.0);
    }
    emdpo_free(acc, bytes);
    emdpo_free(mean, 2 * (size_t)p * sizeof(double));
    return rc;
}

int emdpo_em_entropy(const double *gamma, int64_t n_annot, int K, int across, double *ent) {
    int64_t n_blocks = (n_annot + EM_BLOCK - 1) / EM_BLOCK;
    double *part = emdpo_malloc((size_t)(n_blocks ? n_blocks : 1) * sizeof(double));
    if (!part) return EMDPO_ERR_NOMEM;
    for (int64_t b = 0; b < n_blocks; b++) {
        double e = 0.0;
        int64_t q1 = ((b + 1) * EM_BLOCK < n_annot ? (b + 1) * EM_BLOCK : n_annot) * K;
        for (int64_t q = b * EM_BLOCK * K; q < q1; q++)
            if (gamma[q] > 0.0) e -= gamma[q] * log(gamma[q]);
        part[b] = e;
    }
    int rc = emdpo_dist_sum_rows(part, n_blocks, 1, across, ent);
    emdpo_free(part, (size_t)(n_blocks ? n_blocks : 1) * sizeof(double));
    return rc;
}

void emdpo_em_criteria_of(double loglik, double ent, int64_t n_annot, int npar, double *aic, double *bic, double *icl) {
    *aic = -2.0 * loglik + 2.0 * npar;
    *bic = -2.0 * loglik + npar * log((double)n_annot);
    *icl = *bic + 2.0 * ent;
}

void emdpo_em_criteria(double loglik, const double *gamma, int64_t n_annot, int K, int npar, double *aic,
                       double *bic, double *icl) {
    if (!gamma || !aic || !bic || !icl) return;
    double ent = NAN;
    emdpo_em_entropy(gamma, n_annot, K, 0, &ent);
    emdpo_em_criteria_of(loglik, ent, n_annot, npar, aic, bic, icl);
}

/* Rows allocated for n annotators: one at least, since a process's share
 * of the data may have none (data/data.h). */
static size_t rows_of(int64_t n) { return n > 0 ? (size_t)n : 1; }

void emdpo_em_result_free(emdpo_em_result *r) {
    if (!r) return;
    size_t K = (size_t)r->K, n = rows_of(r->n_annot);
    emdpo_free(r->eta, K * sizeof(double));
    emdpo_free(r->gamma, n * K * sizeof(double));
    emdpo_free(r->ll_annot, n * sizeof(double));
    emdpo_free(r->trace, (size_t)(r->n_trace ? r->n_trace : 1) * sizeof(double));
    emdpo_free(r->empty, K);
    emdpo_free(r->start_loglik, (size_t)r->starts * sizeof(double));
    memset(r, 0, sizeof *r);
}

/* Working state of one start. */
typedef struct em_run {
    int K;
    double *gamma;        /* (n_annot, K) */
    double *ll_annot;     /* (n_annot) */
    double *annot_logp;   /* (n_annot, K) each annotator's sum of log P_k over its decisions */
    double *trace;        /* (max_iter + 1) */
    double eta[EMDPO_MAX_K];
    unsigned char empty[EMDPO_MAX_K];
    int n_trace, iterations, converged, mstep_unconverged;
    double loglik;
} em_run;

static void run_free(em_run *r, const emdpo_data *d, int max_iter) {
    size_t K = (size_t)r->K, n = rows_of(d->n_annot);
    emdpo_free(r->gamma, n * K * sizeof(double));
    emdpo_free(r->ll_annot, n * sizeof(double));
    emdpo_free(r->annot_logp, n * K * sizeof(double));
    emdpo_free(r->trace, ((size_t)max_iter + 1) * sizeof(double));
    r->gamma = r->ll_annot = r->annot_logp = r->trace = NULL;
}

static int run_alloc(em_run *r, const emdpo_data *d, int K, int max_iter) {
    memset(r, 0, sizeof *r);
    r->K = K;
    size_t n = rows_of(d->n_annot);
    r->gamma = emdpo_malloc(n * K * sizeof(double));
    r->ll_annot = emdpo_malloc(n * sizeof(double));
    /* Zeroed: an empty type's column is read (and then ignored) before any
     * M-step has written it. */
    r->annot_logp = emdpo_calloc(n * K, sizeof(double));
    r->trace = emdpo_malloc(((size_t)max_iter + 1) * sizeof(double));
    if (!r->gamma || !r->ll_annot || !r->annot_logp || !r->trace) {
        run_free(r, d, max_iter);
        return EMDPO_ERR_NOMEM;
    }
    return EMDPO_OK;
}

/* Initial responsibilities of start s. */
static int init_gamma(const emdpo_data *d, const emdpo_em_opts *o, const double *summary, int q, int K, int s,
                      double *gamma) {
    uint64_t seed = o->seed + 0x9e3779b97f4a7c15ULL * (uint64_t)(s + 1);
    int64_t n = d->n_annot;
    if (o->init == EMDPO_INIT_RANDOM) {
#pragma omp parallel for schedule(static) if ((double)n * K >= EMDPO_PAR_MIN_WORK)
        for (int64_t i = 0; i < n; i++) {
            emdpo_rng r;
            emdpo_rng_seed(&r, seed, (uint64_t)(d->annot_base + i)); /* the same draws for any split */
            double tot = 0.0;
            for (int k = 0; k < K; k++) tot += gamma[i * K + k] = -log(1.0 - emdpo_rng_uniform(&r));
            for (int k = 0; k < K; k++) gamma[i * K + k] /= tot;
        }
        return EMDPO_OK;
    }
    int32_t *assign = emdpo_malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    double *centers = emdpo_malloc((size_t)K * q * sizeof(double));
    int rc = assign && centers ? emdpo_kmeans_shared(summary, n, d->annot_base, emdpo_data_all_annot(d), d->shard, q, K,
                                                     seed, 100, assign, centers)
                               : EMDPO_ERR_NOMEM;
    if (!rc)
        for (int64_t i = 0; i < n; i++)
            for (int k = 0; k < K; k++) gamma[i * K + k] = assign[i] == k;
    emdpo_free(assign, (size_t)(n ? n : 1) * sizeof(int32_t));
    emdpo_free(centers, (size_t)K * q * sizeof(double));
    return rc;
}

/* eta from gamma, the mass of blocks of annotators added exactly; types
 * that lost all their mass become empty for good. */
static int update_eta(em_run *r, const emdpo_data *d) {
    int K = r->K;
    int64_t n_blocks = (d->n_annot + EM_BLOCK - 1) / EM_BLOCK;
    size_t bytes = (size_t)(n_blocks ? n_blocks : 1) * K * sizeof(double);
    double *part = emdpo_malloc(bytes), mass[EMDPO_MAX_K];
    if (!part) return EMDPO_ERR_NOMEM;
    for (int64_t b = 0; b < n_blocks; b++) {
        double *pb = part + b * K;
        for (int k = 0; k < K; k++) pb[k] = 0.0;
        int64_t i1 = (b + 1) * EM_BLOCK < d->n_annot ? (b + 1) * EM_BLOCK : d->n_annot;
        for (int64_t i = b * EM_BLOCK; i < i1; i++)
            for (int k = 0; k < K; k++) pb[k] += r->gamma[i * K + k];
    }
    int rc = emdpo_dist_sum_rows(part, n_blocks, (size_t)K, d->shard, mass);
    emdpo_free(part, bytes);
    if (rc) return rc;
    for (int k = 0; k < K; k++) {
        if (mass[k] < EM_EMPTY_MASS) r->empty[k] = 1;
        r->eta[k] = r->empty[k] ? 0.0 : mass[k] / (double)emdpo_data_all_annot(d);
    }
    return EMDPO_OK;
}

/* The running loop's state, for resumable fits' hooks. */
struct emdpo_em_live {
    const em_run *run;
    const emdpo_em_result *res;
    int start, mstep, stall, have_best, max_iter;
    double best_ll;
};

/* A state read back: a run and a result as the loop holds them. */
struct emdpo_em_image {
    em_run run;
    emdpo_em_result res;
    int start, mstep, stall, have_best, max_iter;
    double best_ll;
    int64_t n_annot;
};

static int mstep(emdpo_policy *pol, const emdpo_data *d, em_run *r, emdpo_em_hooks *hooks, const emdpo_em_live *live) {
    if (hooks && hooks->mstep_begins) {
        int rc = hooks->mstep_begins(hooks->ud, live);
        if (rc) return rc;
    }
    unsigned char active[EMDPO_MAX_K];
    for (int k = 0; k < r->K; k++) active[k] = !r->empty[k];
    emdpo_mstep_info info = {0, 1, 0.0};
    int rc = pol->ops->mstep(pol, d, r->gamma, active, r->annot_logp, &info);
    if (!info.converged) r->mstep_unconverged++;
    return rc;
}

/* Iteration it of start s is the best so far over all starts: res takes
 * its state and *best a clone of its policy (a whole clone, not copy_type
 * into the old one: the clone carries every piece of the family's state,
 * and wrapped ops stay wrapped). */
static int keep_iterate(emdpo_em_result *res, emdpo_policy **best, const emdpo_policy *pol, const em_run *r,
                        const emdpo_data *d, int s, int it) {
    emdpo_policy *copy = NULL;
    int rc = pol->ops->clone(pol, &copy);
    if (rc) return rc;
    emdpo_policy_free(*best);
    *best = copy;
    int K = r->K;
    memcpy(res->gamma, r->gamma, (size_t)d->n_annot * K * sizeof(double));
    memcpy(res->ll_annot, r->ll_annot, (size_t)d->n_annot * sizeof(double));
    memcpy(res->eta, r->eta, (size_t)K * sizeof(double));
    res->n_empty = 0;
    for (int k = 0; k < K; k++) res->n_empty += res->empty[k] = r->empty[k];
    res->loglik = r->loglik;
    res->best_start = s;
    res->best_iteration = it;
    return EMDPO_OK;
}

/* One start, from its beginning or (at not NULL) from the M-step at which
 * a resumed state stands. r->loglik ends as the start's best
 * log-likelihood. */
static int run_em(emdpo_policy *pol, const emdpo_data *d, const emdpo_em_opts *o, int start, em_run *r,
                  emdpo_em_result *res, emdpo_policy **best, emdpo_em_hooks *hooks, const emdpo_em_image *at) {
    int K = r->K;
    emdpo_em_live live = {r,         res, start, at ? at->mstep : 0, at ? at->stall : 0, 0,
                          o->max_iter, at ? at->best_ll : -INFINITY};
    live.have_best = *best != NULL;
    int rc = at ? EMDPO_OK : update_eta(r, d);
    if (!rc) rc = mstep(pol, d, r, hooks, &live);
    if (!rc && live.mstep > 0) r->iterations++;
    for (int it = live.mstep; !rc; it++) {
        double log_eta[EMDPO_MAX_K];
        for (int k = 0; k < K; k++) log_eta[k] = r->empty[k] ? -INFINITY : log(r->eta[k]);
        if ((rc = emdpo_em_estep_sums(d->n_annot, K, sums_of_annot, r->annot_logp, (double)d->n_annot * K, log_eta,
                                      r->gamma, r->ll_annot, &r->loglik, d->shard)))
            break;
        r->trace[r->n_trace++] = r->loglik;
        if (o->progress) o->progress(o->progress_ud, start, it, r->loglik, r->eta, K);
        live.stall = r->loglik > live.best_ll + o->tol * fabs(r->loglik) ? 0 : live.stall + 1;
        if (r->loglik > live.best_ll) {
            live.best_ll = r->loglik;
            if (!*best || r->loglik > res->loglik)
                if ((rc = keep_iterate(res, best, pol, r, d, start, it))) break;
        }
        if (live.stall > o->patience) {
            r->converged = 1;
            break;
        }
        if (it == o->max_iter) break;
        if ((rc = update_eta(r, d))) break;
        live.mstep = it + 1;
        live.have_best = *best != NULL;
        rc = mstep(pol, d, r, hooks, &live);
        r->iterations++;
    }
    r->loglik = live.best_ll;
    return rc;
}

static int result_alloc(emdpo_em_result *res, const emdpo_data *d, int K, int starts) {
    memset(res, 0, sizeof *res);
    res->K = K;
    res->n_annot = d->n_annot;
    res->starts = starts;
    res->eta = emdpo_calloc((size_t)K, sizeof(double));
    res->gamma = emdpo_malloc(rows_of(d->n_annot) * K * sizeof(double));
    res->ll_annot = emdpo_malloc(rows_of(d->n_annot) * sizeof(double));
    res->empty = emdpo_calloc((size_t)K, 1);
    res->start_loglik = emdpo_calloc((size_t)starts, sizeof(double));
    if (!res->eta || !res->gamma || !res->ll_annot || !res->empty || !res->start_loglik) {
        emdpo_em_result_free(res);
        return EMDPO_ERR_NOMEM;
    }
    return EMDPO_OK;
}

/* Start s is done; when it holds the best iterate, the result takes its
 * whole trace and its counts. */
static int finish_start(emdpo_em_result *res, const em_run *r, int s) {
    res->start_loglik[s] = r->loglik;
    if (res->best_start != s) return EMDPO_OK;
    double *trace = emdpo_malloc((size_t)(r->n_trace ? r->n_trace : 1) * sizeof(double));
    if (!trace) return EMDPO_ERR_NOMEM;
    memcpy(trace, r->trace, (size_t)r->n_trace * sizeof(double));
    emdpo_free(res->trace, (size_t)(res->n_trace ? res->n_trace : 1) * sizeof(double));
    res->trace = trace;
    res->n_trace = r->n_trace;
    res->iterations = r->iterations;
    res->converged = r->converged;
    res->mstep_unconverged = r->mstep_unconverged;
    return EMDPO_OK;
}

int emdpo_em_fit(emdpo_policy **pol, const emdpo_data *d, const emdpo_em_opts *o, emdpo_em_result *res) {
    return emdpo_em_fit_hooked(pol, d, o, res, NULL);
}

int emdpo_em_fit_hooked(emdpo_policy **pol, const emdpo_data *d, const emdpo_em_opts *o, emdpo_em_result *res,
                        emdpo_em_hooks *hooks) {
    int K = (*pol)->K, starts = o->starts;
    emdpo_em_image *from = hooks ? hooks->from : NULL;
    emdpo_policy *resumed = from ? hooks->cand : NULL, *best = from ? hooks->best : NULL;
    if (hooks) hooks->from = NULL, hooks->cand = hooks->best = NULL;
    memset(res, 0, sizeof *res);
    int rc = EMDPO_OK;
    if (K < 1 || K > EMDPO_MAX_K || starts < 1 || starts > EMDPO_MAX_STARTS || o->max_iter < 0 ||
        o->max_iter > EMDPO_MAX_EM_ITER || !(o->tol >= 0) || o->patience < 0 ||
        emdpo_data_all_annot(d) < 1 || (from && (!resumed || from->run.K != K || from->res.starts != starts ||
                                    from->max_iter != o->max_iter || from->n_annot != d->n_annot ||
                                    from->have_best != (best != NULL))))
        rc = EMDPO_ERR_INVALID_ARG;
    const double *summary = o->summary;
    int q = o->q;
    double *own_summary = NULL;
    if (!rc && o->init != EMDPO_INIT_RANDOM && !summary) {
        if (d->p < 1) rc = EMDPO_ERR_UNSUPPORTED; /* text data: the caller supplies embeddings */
        q = d->p;
        if (!rc && !(own_summary = emdpo_malloc(rows_of(d->n_annot) * q * sizeof(double)))) rc = EMDPO_ERR_NOMEM;
        if (!rc) rc = emdpo_em_feature_summaries(d, own_summary);
        summary = own_summary;
    }
    em_run run;
    memset(&run, 0, sizeof run);
    run.K = K;
    int s0 = 0;
    if (!rc && from) {
        /* the image's run and result become the loop's */
        run = from->run;
        *res = from->res;
        s0 = from->start;
        memset(&from->run, 0, sizeof from->run);
        memset(&from->res, 0, sizeof from->res);
    } else if (!rc) {
        rc = result_alloc(res, d, K, starts);
        if (!rc) rc = run_alloc(&run, d, K, o->max_iter);
        if (!rc) res->best_start = -1;
    }
    for (int s = s0; s < starts && !rc; s++) {
        emdpo_policy *cand = NULL;
        if (s == s0 && resumed) {
            cand = resumed;
            resumed = NULL;
            rc = run_em(cand, d, o, s, &run, res, &best, hooks, from);
        } else {
            memset(run.eta, 0, sizeof run.eta);
            memset(run.empty, 0, sizeof run.empty);
            run.n_trace = run.iterations = run.converged = run.mstep_unconverged = 0;
            if ((rc = (*pol)->ops->clone(*pol, &cand))) break;
            if (!(rc = init_gamma(d, o, summary, q, K, s, run.gamma)))
                rc = run_em(cand, d, o, s, &run, res, &best, hooks, NULL);
        }
        if (!rc) rc = finish_start(res, &run, s);
        emdpo_policy_free(cand);
    }
    emdpo_policy_free(resumed);
    emdpo_em_image_free(from);
    run_free(&run, d, o->max_iter);
    emdpo_free(own_summary, rows_of(d->n_annot) * q * sizeof(double));
    if (rc) {
        emdpo_policy_free(best);
        emdpo_em_result_free(res);
        return rc;
    }
    emdpo_policy_free(*pol);
    *pol = best;
    return EMDPO_OK;
}

/* ---- images of the loop's state -------------------------------------------- */

void emdpo_em_live_where(const emdpo_em_live *l, int *start, int *mstep, int *have_best, int *best_start,
                         int *best_iteration) {
    if (start) *start = l->start;
    if (mstep) *mstep = l->mstep;
    if (have_best) *have_best = l->have_best;
    if (best_start) *best_start = l->res->best_start;
    if (best_iteration) *best_iteration = l->res->best_iteration;
}

void emdpo_em_image_where(const emdpo_em_image *im, int *start, int *mstep, int *have_best) {
    if (start) *start = im->start;
    if (mstep) *mstep = im->mstep;
    if (have_best) *have_best = im->have_best;
}

/* Image layout: int32 K, starts, max_iter, int64 n_annot; int32 start,
 * mstep, stall, have_best, double best_ll; the run: double eta[K], uint8
 * empty[K], int32 n_trace, iterations, mstep_unconverged, double loglik,
 * trace[n_trace], gamma[n_annot K], annot_logp[n_annot K]; the result:
 * double loglik, int32 best_start, best_iteration, n_empty, iterations,
 * converged, mstep_unconverged, n_trace, double eta[K], uint8 empty[K],
 * double gamma[n_annot K], ll_annot[n_annot], start_loglik[starts],
 * trace[n_trace]. */
typedef struct image_head {
    int32_t K, starts, max_iter, pad;
    int64_t n_annot;
    int32_t start, mstep, stall, have_best;
    double best_ll;
} image_head;

typedef struct image_counts {
    int32_t n_trace, iterations, mstep_unconverged, pad;
    double loglik;
} image_counts;

typedef struct image_res {
    double loglik;
    int32_t best_start, best_iteration, n_empty, iterations, converged, mstep_unconverged, n_trace, pad;
} image_res;

static int put(FILE *fp, const void *p, size_t size, size_t n) { return n == 0 || fwrite(p, size, n, fp) == n; }
static int get(FILE *fp, void *p, size_t size, size_t n) { return n == 0 || fread(p, size, n, fp) == n; }

int emdpo_em_image_write(const emdpo_em_live *l, FILE *fp) {
    const em_run *r = l->run;
    const emdpo_em_result *res = l->res;
    size_t K = (size_t)r->K, n = (size_t)res->n_annot;
    image_head h = {r->K, res->starts, l->max_iter, 0, res->n_annot, l->start, l->mstep, l->stall, l->have_best,
                    l->best_ll};
    image_counts c = {r->n_trace, r->iterations, r->mstep_unconverged, 0, r->loglik};
    image_res e = {res->loglik,     res->best_start, res->best_iteration,    res->n_empty,
                   res->iterations, res->converged,  res->mstep_unconverged, res->n_trace, 0};
    int ok = put(fp, &h, sizeof h, 1) && put(fp, r->eta, sizeof(double), K) && put(fp, r->empty, 1, K) &&
             put(fp, &c, sizeof c, 1) && put(fp, r->trace, sizeof(double), (size_t)r->n_trace) &&
             put(fp, r->gamma, sizeof(double), n * K) && put(fp, r->annot_logp, sizeof(double), n * K) &&
             put(fp, &e, sizeof e, 1) && put(fp, res->eta, sizeof(double), K) && put(fp, res->empty, 1, K) &&
             put(fp, res->gamma, sizeof(double), n * K) && put(fp, res->ll_annot, sizeof(double), n) &&
             put(fp, res->start_loglik, sizeof(double), (size_t)res->starts) &&
             put(fp, res->trace, sizeof(double), (size_t)res->n_trace);
    return ok ? EMDPO_OK : EMDPO_ERR_IO;
}

void emdpo_em_image_free(emdpo_em_image *im) {
    if (!im) return;
    emdpo_em_result_free(&im->res);
    if (im->run.gamma) {
        emdpo_data d = {0};
        d.n_annot = im->n_annot;
        run_free(&im->run, &d, im->max_iter);
    }
    emdpo_free(im, sizeof *im);
}

int emdpo_em_image_read(FILE *fp, const emdpo_data *d, int K, const emdpo_em_opts *o, emdpo_em_image **out,
                        emdpo_diag *diag) {
    *out = NULL;
    image_head h;
    if (!get(fp, &h, sizeof h, 1)) return emdpo_diag_fail(diag, EMDPO_ERR_IO, "truncated EM state");
    if (h.K != K || h.starts != o->starts || h.max_iter != o->max_iter || h.n_annot != d->n_annot)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                               "the EM state is of another fit (K %d, %d starts, max_iter %d, %lld annotators; this "
                               "run: K %d, %d, %d, %lld)",
                               (int)h.K, (int)h.starts, (int)h.max_iter, (long long)h.n_annot, K, o->starts,
                               o->max_iter, (long long)d->n_annot);
    if (h.start < 0 || h.start >= h.starts || h.mstep < 0 || h.mstep > h.max_iter || h.stall < 0 ||
        (h.have_best != 0 && h.have_best != 1))
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "impossible EM state (start, M-step or counters)");
    emdpo_em_image *im = emdpo_calloc(1, sizeof *im);
    if (!im) return EMDPO_ERR_NOMEM;
    im->start = h.start;
    im->mstep = h.mstep;
    im->stall = h.stall;
    im->have_best = h.have_best;
    im->best_ll = h.best_ll;
    im->max_iter = h.max_iter;
    im->n_annot = h.n_annot;
    int rc = result_alloc(&im->res, d, K, o->starts);
    if (!rc) rc = run_alloc(&im->run, d, K, o->max_iter);
    if (rc) {
        emdpo_em_image_free(im);
        return rc;
    }
    em_run *r = &im->run;
    emdpo_em_result *res = &im->res;
    size_t n = (size_t)d->n_annot, Kz = (size_t)K;
    image_counts c;
    image_res e;
    const char *why = NULL;
    if (!get(fp, r->eta, sizeof(double), Kz) || !get(fp, r->empty, 1, Kz) || !get(fp, &c, sizeof c, 1))
        why = "truncated EM state";
    /* the run's trace holds one entry per E-step before this M-step */
    else if (c.n_trace != h.mstep || c.iterations != (h.mstep > 0 ? h.mstep - 1 : 0) || c.mstep_unconverged < 0 ||
             c.mstep_unconverged > h.mstep)
        why = "impossible EM state (trace or counters)";
    else if (!get(fp, r->trace, sizeof(double), (size_t)c.n_trace) || !get(fp, r->gamma, sizeof(double), n * Kz) ||
             !get(fp, r->annot_logp, sizeof(double), n * Kz) || !get(fp, &e, sizeof e, 1))
        why = "truncated EM state";
    else if (e.n_trace < 0 || e.n_trace > h.max_iter + 1 || e.n_empty < 0 || e.n_empty > K ||
             (h.have_best && (e.best_start < 0 || e.best_start > h.start || e.best_iteration < 0 ||
                              e.best_iteration > h.max_iter)))
        why = "impossible EM state (best iterate)";
    else if (!get(fp, res->eta, sizeof(double), Kz) || !get(fp, res->empty, 1, Kz) ||
             !get(fp, res->gamma, sizeof(double), n * Kz) || !get(fp, res->ll_annot, sizeof(double), n) ||
             !get(fp, res->start_loglik, sizeof(double), (size_t)o->starts))
        why = "truncated EM state";
    if (!why && e.n_trace > 0) {
        if (!(res->trace = emdpo_malloc((size_t)e.n_trace * sizeof(double)))) {
            rc = EMDPO_ERR_NOMEM;
        } else {
            res->n_trace = e.n_trace; /* the size it is freed with */
            if (!get(fp, res->trace, sizeof(double), (size_t)e.n_trace)) why = "truncated EM state";
        }
    }
    if (!why && !rc) {
        r->n_trace = c.n_trace;
        r->iterations = c.iterations;
        r->mstep_unconverged = c.mstep_unconverged;
        r->loglik = c.loglik;
        for (int k = 0; k < K; k++)
            if (r->empty[k] > 1 || res->empty[k] > 1) why = "impossible EM state (empty types)";
        res->n_trace = e.n_trace;
        res->loglik = e.loglik;
        res->best_start = h.have_best ? e.best_start : -1;
        res->best_iteration = e.best_iteration;
        res->n_empty = e.n_empty;
        res->iterations = e.iterations;
        res->converged = e.converged;
        res->mstep_unconverged = e.mstep_unconverged;
    }
    if (why || rc) {
        emdpo_em_image_free(im);
        return rc ? rc : emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s", why);
    }
    *out = im;
    return EMDPO_OK;
}
