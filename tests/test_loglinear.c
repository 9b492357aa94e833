/* The log-linear family and EM-DPO on it: derivatives against finite
 * differences, the E-step against brute-force products, monotone
 * log-likelihood, thread-count determinism, empty types, recovery. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "base/alloc.h"
#include "base/linalg.h"
#include "base/rng.h"
#include "base/threads.h"
#include "base/xsum.h"
#include "check.h"
#include "core/choice.h"
#include "core/em.h"
#include "core/match.h"
#include "core/heldout.h"
#include "failalloc.h"
#include "loglinear/loglinear.h"
#include "testdata.h"

/* Data from a latent-class logit: type ~ eta, then top choices (or full
 * rankings) by Gumbel-max over theta_k . x with Gaussian features. */
static emdpo_data *mixture_data(int n_annot, int m, int n_items, int ranking, int K, int p,
                                const double *theta, const double *eta, uint64_t seed, int32_t *truth) {
    emdpo_data_builder *b;
    if (emdpo_data_builder_create(p, &b)) return NULL;
    double x[8 * 16], xs[8 * 16], key[8];
    int order[8];
    char name[32];
    for (int i = 0; i < n_annot; i++) {
        emdpo_rng r;
        emdpo_rng_seed(&r, seed, (uint64_t)i);
        int k = emdpo_rng_categorical(&r, eta, K);
        if (truth) truth[i] = k;
        snprintf(name, sizeof name, "a%d", i);
        for (int j = 0; j < m; j++) {
            for (int q = 0; q < n_items; q++) {
                double u = 0.0;
                for (int a = 0; a < p; a++) {
                    x[q * p + a] = emdpo_rng_normal(&r);
                    u += theta[k * p + a] * x[q * p + a];
                }
                key[q] = u + emdpo_rng_gumbel(&r);
                order[q] = q;
            }
            for (int a = 1; a < n_items; a++) /* insertion sort by key, descending */
                for (int c = a; c > 0 && key[order[c]] > key[order[c - 1]]; c--) {
                    int t = order[c];
                    order[c] = order[c - 1];
                    order[c - 1] = t;
                }
            for (int q = 0; q < n_items; q++) memcpy(xs + q * p, x + order[q] * p, (size_t)p * sizeof(double));
            if (emdpo_data_builder_add(b, name, NULL, NULL, n_items, ranking ? n_items - 1 : 1, xs, NULL)) {
                emdpo_data_builder_free(b);
                return NULL;
            }
        }
    }
    emdpo_data *d = NULL;
    emdpo_data_builder_finish(b, &d);
    return d;
}

static void test_derivatives(void) {
    int p = 4, K = 2;
    emdpo_data *d = testdata_random_decisions(60, 3, p, 7);
    CHECK(d != NULL);
    if (!d) return;
    emdpo_policy *pol;
    CHECK_EQ_INT(emdpo_loglinear_create(K, p, &pol), EMDPO_OK);
    emdpo_loglinear *ll = emdpo_loglinear_of(pol);
    ll->l2 = 0.3;
    emdpo_rng r;
    emdpo_rng_seed(&r, 3, 0);
    for (int q = 0; q < K * p; q++) ll->theta[q] = 0.7 * emdpo_rng_normal(&r);
    double *w = emdpo_malloc((size_t)d->n_annot * K * sizeof(double));
    for (int64_t q = 0; q < d->n_annot * K; q++) w[q] = emdpo_rng_uniform(&r);
    for (int k = 0; k < K; k++) {
        double f, g[4], H[16];
        CHECK_EQ_INT(emdpo_loglinear_objective(ll, d, w, k, &f, g, H), EMDPO_OK);
        /* The value itself against a direct sum over decisions. */
        double direct = 0.0, sq = 0.0, u[4];
        for (int64_t i = 0; i < d->n_annot; i++)
            for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) {
                int n = emdpo_dec_n_items(d, j);
                for (int q = 0; q < n; q++) {
                    u[q] = 0.0;
                    for (int a = 0; a < p; a++) u[q] += ll->theta[k * p + a] * d->x[(d->dec_item[j] + q) * p + a];
                }
                direct += w[i * K + k] * emdpo_choice_logp(u, n, d->dec_stages[j]);
            }
        for (int a = 0; a < p; a++) sq += ll->theta[k * p + a] * ll->theta[k * p + a];
        CHECK_CLOSE(f, direct - 0.5 * ll->l2 * sq, 1e-12);
        double h = 1e-5;
        for (int a = 0; a < p; a++) {
            double save = ll->theta[k * p + a], fp, fm, gp[4], gm[4];
            ll->theta[k * p + a] = save + h;
            emdpo_loglinear_objective(ll, d, w, k, &fp, gp, NULL);
            ll->theta[k * p + a] = save - h;
            emdpo_loglinear_objective(ll, d, w, k, &fm, gm, NULL);
            ll->theta[k * p + a] = save;
            CHECK_CLOSE(g[a], (fp - fm) / (2 * h), 1e-7);
            for (int c = 0; c < p; c++) CHECK_CLOSE(H[c * p + a], (gp[c] - gm[c]) / (2 * h), 1e-7);
        }
        /* Concavity: the Hessian is negative definite. */
        for (int a = 0; a < p * p; a++) H[a] = -H[a];
        CHECK(emdpo_cholesky(H, p) == 0);
    }
    emdpo_free(w, (size_t)d->n_annot * K * sizeof(double));
    emdpo_policy_free(pol);
    emdpo_data_free(d);
}

/* Probability of a decision computed the long way: products of ratios. */
static double brute_prob(const double *x, int n, int stages, int p, const double *th) {
    double prob = 1.0;
    for (int t = 0; t < stages; t++) {
        double num = 0.0, den = 0.0;
        for (int q = t; q < n; q++) {
            double u = 0.0;
            for (int a = 0; a < p; a++) u += th[a] * x[q * p + a];
            den += exp(u);
            if (q == t) num = exp(u);
        }
        prob *= num / den;
    }
    return prob;
}

static void test_estep_brute_force(void) {
    int p = 3, K = 3;
    emdpo_data *d = testdata_random_decisions(25, 4, p, 11);
    emdpo_policy *pol;
    emdpo_loglinear_create(K, p, &pol);
    emdpo_loglinear *ll = emdpo_loglinear_of(pol);
    emdpo_rng r;
    emdpo_rng_seed(&r, 5, 0);
    for (int q = 0; q < K * p; q++) ll->theta[q] = emdpo_rng_normal(&r);
    double eta[3] = {0.2, 0.5, 0.3}, log_eta[3];
    for (int k = 0; k < K; k++) log_eta[k] = log(eta[k]);
    double *logp = emdpo_malloc((size_t)d->n_dec * K * sizeof(double));
    double *gamma = emdpo_malloc((size_t)d->n_annot * K * sizeof(double));
    double total;
    CHECK_EQ_INT(pol->ops->decision_logp(pol, d, logp), EMDPO_OK);
    CHECK_EQ_INT(emdpo_em_estep(d, K, logp, log_eta, gamma, NULL, &total), EMDPO_OK);
    double brute_total = 0.0;
    for (int64_t i = 0; i < d->n_annot; i++) {
        double joint[3], marg = 0.0;
        for (int k = 0; k < K; k++) {
            joint[k] = eta[k];
            for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++)
                joint[k] *= brute_prob(d->x + d->dec_item[j] * p, emdpo_dec_n_items(d, j), d->dec_stages[j], p,
                                       ll->theta + k * p);
            marg += joint[k];
        }
        for (int k = 0; k < K; k++) CHECK_CLOSE(gamma[i * K + k], joint[k] / marg, 1e-12);
        brute_total += log(marg);
    }
    CHECK_CLOSE(total, brute_total, 1e-12);
    /* From each annotator's sums, added in decision order: the same bits. */
    double *sums = emdpo_calloc((size_t)d->n_annot * K, sizeof(double));
    double *gamma2 = emdpo_malloc((size_t)d->n_annot * K * sizeof(double));
    for (int64_t i = 0; i < d->n_annot; i++)
        for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++)
            for (int k = 0; k < K; k++) sums[i * K + k] += logp[j * K + k];
    double total2;
    CHECK_EQ_INT(emdpo_em_estep_annot(d->n_annot, K, sums, log_eta, gamma2, NULL, &total2), EMDPO_OK);
    CHECK(total2 == total);
    CHECK(memcmp(gamma2, gamma, (size_t)d->n_annot * K * sizeof(double)) == 0);
    CHECK_EQ_INT(emdpo_em_estep_annot(-1, K, sums, log_eta, gamma2, NULL, &total2), EMDPO_ERR_INVALID_ARG);
    emdpo_free(sums, (size_t)d->n_annot * K * sizeof(double));
    emdpo_free(gamma2, (size_t)d->n_annot * K * sizeof(double));
    emdpo_free(logp, (size_t)d->n_dec * K * sizeof(double));
    emdpo_free(gamma, (size_t)d->n_annot * K * sizeof(double));
    emdpo_policy_free(pol);
    emdpo_data_free(d);
}

/* The M-step's annotator sums are those of decision_logp at its final
 * parameters, whichever way each type got there: a cold start on a
 * subsample, Newton steps, the cached rows of an earlier M-step, or no
 * step at all; an inactive type's column is left alone. */
static void check_annot_logp(emdpo_policy *pol, const emdpo_data *d, const double *annot_logp,
                             const unsigned char *active, double *logp) {
    int K = pol->K;
    CHECK_EQ_INT(pol->ops->decision_logp(pol, d, logp), EMDPO_OK);
    double worst = 0.0;
    int untouched = 1;
    for (int64_t i = 0; i < d->n_annot; i++)
        for (int k = 0; k < K; k++) {
            double sum = 0.0;
            for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) sum += logp[j * K + k];
            if (active[k])
                worst = fmax(worst, fabs(annot_logp[i * K + k] - sum) / (1.0 + fabs(sum)));
            else
                untouched &= annot_logp[i * K + k] == 42.0;
        }
    CHECK_MSG(worst <= 1e-13, "annot_logp off by %.3g", worst);
    CHECK(untouched);
}

/* Top choices take the lane kernel, rankings the one-at-a-time path. */
static void test_mstep_annot_logp(int ranking) {
    int p = 3, K = 3;
    double theta[9] = {2, 0, -1, -2, 0, 1, 0, 1.5, 1.5}, eta[3] = {.3, .3, .4};
    emdpo_data *d = mixture_data(3000, 3, 4, ranking, K, p, theta, eta, 8, NULL);
    emdpo_policy *pol;
    emdpo_loglinear_create(K, p, &pol);
    size_t nk = (size_t)d->n_annot * K;
    double *w = emdpo_malloc(nk * sizeof(double)), *al = emdpo_malloc(nk * sizeof(double));
    double *logp = emdpo_malloc((size_t)d->n_dec * K * sizeof(double));
    emdpo_rng r;
    emdpo_rng_seed(&r, 3, 0);
    for (size_t q = 0; q < nk; q++) w[q] = emdpo_rng_uniform(&r);
    unsigned char all[3] = {1, 1, 1}, two[3] = {1, 0, 1};
    emdpo_mstep_info info;
    for (size_t q = 0; q < nk; q++) al[q] = 42.0;
    CHECK_EQ_INT(pol->ops->mstep(pol, d, w, all, al, &info), EMDPO_OK); /* cold, from 0 */
    check_annot_logp(pol, d, al, all, logp);
    for (size_t q = 0; q < nk; q++) w[q] = q % K == 1 ? 0.5 * w[q] : w[q];
    for (size_t q = 0; q < nk; q++) al[q] = 42.0;
    CHECK_EQ_INT(pol->ops->mstep(pol, d, w, two, al, &info), EMDPO_OK); /* warm, from the cached rows */
    check_annot_logp(pol, d, al, two, logp);
    for (size_t q = 0; q < nk; q++) al[q] = 42.0;
    CHECK_EQ_INT(pol->ops->mstep(pol, d, w, two, al, &info), EMDPO_OK); /* at the optimum: no step */
    check_annot_logp(pol, d, al, two, logp);
    emdpo_free(w, nk * sizeof(double));
    emdpo_free(al, nk * sizeof(double));
    emdpo_free(logp, (size_t)d->n_dec * K * sizeof(double));
    emdpo_policy_free(pol);
    emdpo_data_free(d);
}

/* 10^5 decisions for one annotator: products underflow, logs do not. */
static void test_estep_many_decisions(void) {
    int p = 2, K = 2;
    double theta[4] = {1.5, -1, -1.5, 1}, eta[2] = {0.5, 0.5};
    emdpo_data *d = mixture_data(2, 100000, 3, 0, K, p, theta, eta, 99, NULL);
    emdpo_policy *pol;
    emdpo_loglinear_create(K, p, &pol);
    memcpy(emdpo_loglinear_of(pol)->theta, theta, sizeof theta);
    double *logp = emdpo_malloc((size_t)d->n_dec * K * sizeof(double));
    double gamma[4], lle[2] = {log(0.5), log(0.5)}, total;
    pol->ops->decision_logp(pol, d, logp);
    CHECK_EQ_INT(emdpo_em_estep(d, K, logp, lle, gamma, NULL, &total), EMDPO_OK);
    CHECK(isfinite(total) && total < -1e4);
    for (int q = 0; q < 4; q++) CHECK(gamma[q] == 0.0 || gamma[q] == 1.0 || (gamma[q] > 0 && gamma[q] < 1));
    CHECK_CLOSE(gamma[0] + gamma[1], 1.0, 1e-15);
    CHECK(fmax(gamma[0], gamma[1]) > 0.999999);
    emdpo_free(logp, (size_t)d->n_dec * K * sizeof(double));
    emdpo_policy_free(pol);
    emdpo_data_free(d);
}

static int fit(emdpo_data *d, int K, int starts, uint64_t seed, emdpo_init init, emdpo_policy **pol,
               emdpo_em_result *res) {
    emdpo_em_opts o;
    emdpo_em_opts_init(&o);
    o.starts = starts;
    o.seed = seed;
    o.init = init;
    int rc = emdpo_loglinear_create(K, d->p, pol);
    if (rc) return rc;
    return emdpo_em_fit(pol, d, &o, res);
}

/* 12000 annotators: enough work (n_items * K >= EMDPO_PAR_MIN_WORK) for
 * the passes over the data to run on several threads, so that the thread
 * count comparison below compares something. */
static void test_monotone_and_deterministic(void) {
    int p = 3, K = 3;
    double theta[9] = {2, 0, -1, -2, 0, 1, 0, 1.5, 1.5}, eta[3] = {.3, .3, .4};
    emdpo_data *d = mixture_data(12000, 2, 3, 0, K, p, theta, eta, 5, NULL);
    CHECK((double)d->n_items * K >= EMDPO_PAR_MIN_WORK);
    for (int init = 0; init < 2; init++) {
        emdpo_policy *pol = NULL;
        emdpo_em_result res;
        CHECK_EQ_INT(fit(d, K, 2, 42, (emdpo_init)init, &pol, &res), EMDPO_OK);
        int monotone = 1;
        for (int t = 1; t < res.n_trace; t++)
            if (res.trace[t] < res.trace[t - 1] - 1e-10 * fabs(res.trace[t])) monotone = 0;
        CHECK_MSG(monotone, "log-likelihood decreased (init %d)", init);
        CHECK(res.n_trace >= 3);
        CHECK(res.converged);
        CHECK_EQ_INT(res.mstep_unconverged, 0);
        double s = 0;
        for (int k = 0; k < K; k++) s += res.eta[k];
        CHECK_CLOSE(s, 1.0, 1e-12);

        /* Same seed, other thread count: the same bits. */
        int saved = omp_get_max_threads();
        omp_set_num_threads(saved > 1 ? 1 : 2);
        emdpo_policy *pol2 = NULL;
        emdpo_em_result res2;
        CHECK_EQ_INT(fit(d, K, 2, 42, (emdpo_init)init, &pol2, &res2), EMDPO_OK);
        omp_set_num_threads(saved);
        CHECK(memcmp(&res.loglik, &res2.loglik, sizeof(double)) == 0);
        CHECK(memcmp(emdpo_loglinear_of(pol)->theta, emdpo_loglinear_of(pol2)->theta, K * p * sizeof(double)) == 0);
        CHECK(memcmp(res.gamma, res2.gamma, (size_t)d->n_annot * K * sizeof(double)) == 0);
        emdpo_em_result_free(&res);
        emdpo_em_result_free(&res2);
        emdpo_policy_free(pol);
        emdpo_policy_free(pol2);
    }
    emdpo_data_free(d);
}

/* A family whose M-steps can lose: the log-linear one, with theta pushed
 * away from the optimum after the real M-step number `bad` (counted from 1
 * over the whole fit). The annotator sums follow the pushed theta. */
static const emdpo_policy_ops *drop_real;
static emdpo_policy_ops drop_ops;
static int drop_calls, drop_bad;

static int drop_mstep(emdpo_policy *pol, const emdpo_data *d, const double *w, const unsigned char *active,
                      double *annot_logp, emdpo_mstep_info *info) {
    int rc = drop_real->mstep(pol, d, w, active, annot_logp, info);
    if (rc || ++drop_calls != drop_bad) return rc;
    emdpo_loglinear *ll = (emdpo_loglinear *)pol; /* emdpo_loglinear_of refuses the wrapped ops */
    int K = pol->K;
    for (int q = 0; q < K * ll->p; q++) ll->theta[q] *= 0.25;
    double *logp = emdpo_malloc((size_t)d->n_dec * K * sizeof(double));
    if (!logp) return EMDPO_ERR_NOMEM;
    rc = drop_real->decision_logp(pol, d, logp);
    for (int64_t i = 0; !rc && annot_logp && i < d->n_annot; i++)
        for (int k = 0; k < K; k++) {
            double sum = 0.0;
            for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) sum += logp[j * K + k];
            annot_logp[i * K + k] = sum;
        }
    emdpo_free(logp, (size_t)d->n_dec * K * sizeof(double));
    return rc;
}

/* A log-linear policy of K types, p features, whose third M-step loses. */
static emdpo_policy *drop_policy(int K, int p) {
    emdpo_policy *pol = NULL;
    emdpo_loglinear_create(K, p, &pol);
    drop_real = pol->ops;
    drop_ops = *drop_real;
    drop_ops.mstep = drop_mstep;
    pol->ops = &drop_ops;
    drop_calls = 0;
    drop_bad = 3;
    return pol;
}

/* Several starts, the fall in the first: the result is the best iterate
 * over all of them, and its trace, counts and best_iteration are its own
 * start's. */
static void test_em_keeps_best_starts(void) {
    int p = 3, K = 3;
    double theta[9] = {2, 0, -1, -2, 0, 1, 0, 1.5, 1.5}, eta[3] = {.3, .3, .4};
    emdpo_data *d = mixture_data(1500, 2, 3, 0, K, p, theta, eta, 5, NULL);
    emdpo_policy *pol = drop_policy(K, p);
    emdpo_em_opts o;
    emdpo_em_opts_init(&o);
    o.starts = 3;
    o.init = EMDPO_INIT_RANDOM;
    emdpo_em_result res;
    CHECK_EQ_INT(emdpo_em_fit(&pol, d, &o, &res), EMDPO_OK);
    double top = -INFINITY, best_start = -INFINITY;
    for (int t = 0; t < res.n_trace; t++) top = fmax(top, res.trace[t]);
    for (int st = 0; st < 3; st++) best_start = fmax(best_start, res.start_loglik[st]);
    CHECK(res.loglik == top && res.loglik == best_start);
    CHECK(res.start_loglik[res.best_start] == res.loglik);
    CHECK(res.best_iteration >= 0 && res.best_iteration < res.n_trace && res.trace[res.best_iteration] == res.loglik);
    CHECK_EQ_INT(res.n_trace, res.iterations + 1);
    CHECK(res.best_start != 0); /* the first start fell and stopped early */
    double ll;
    pol->ops = drop_real;
    CHECK_EQ_INT(emdpo_heldout_loglik(pol, res.eta, d, NULL, &ll), EMDPO_OK);
    CHECK_CLOSE(ll, res.loglik, 1e-9 * fabs(ll));
    emdpo_em_result_free(&res);
    emdpo_policy_free(pol);
    emdpo_data_free(d);
}

/* The fit returns its best iterate, not its last: with patience 0 it
 * stops at the drop and hands back the iterate before it (policy, gamma,
 * eta and log-likelihood agreeing with one another); with patience it goes
 * on past the drop. */
static void test_em_keeps_best(void) {
    int p = 3, K = 3;
    double theta[9] = {2, 0, -1, -2, 0, 1, 0, 1.5, 1.5}, eta[3] = {.3, .3, .4};
    emdpo_data *d = mixture_data(1500, 2, 3, 0, K, p, theta, eta, 5, NULL);
    for (int patience = 0; patience <= 20; patience += 20) {
        emdpo_policy *pol = drop_policy(K, p); /* the initial M-step, then iterations 1 and 2: trace[2] falls */
        emdpo_em_opts o;
        emdpo_em_opts_init(&o);
        o.patience = patience;
        emdpo_em_result res;
        CHECK_EQ_INT(emdpo_em_fit(&pol, d, &o, &res), EMDPO_OK);
        double top = -INFINITY;
        int arg = -1;
        for (int t = 0; t < res.n_trace; t++)
            if (res.trace[t] > top) top = res.trace[t], arg = t;
        CHECK(res.n_trace >= 3 && res.trace[2] < res.trace[1]);
        CHECK(res.loglik == top);
        CHECK_EQ_INT(res.best_iteration, arg);
        CHECK(res.converged);
        CHECK(res.start_loglik[0] == top);
        if (patience == 0) {
            CHECK_EQ_INT(res.n_trace, 3);
            CHECK_EQ_INT(res.best_iteration, 1);
            CHECK_EQ_INT(res.iterations, 2);
        } else {
            CHECK(res.n_trace > 4);
            CHECK(res.best_iteration > 2);
        }
        /* The returned policy and eta give the returned log-likelihoods. */
        double ll;
        double *lpa = emdpo_malloc((size_t)d->n_annot * sizeof(double));
        pol->ops = drop_real;
        CHECK_EQ_INT(emdpo_heldout_loglik(pol, res.eta, d, lpa, &ll), EMDPO_OK);
        CHECK_CLOSE(ll, res.loglik, 1e-9 * fabs(ll));
        double worst = 0.0;
        for (int64_t i = 0; i < d->n_annot; i++) worst = fmax(worst, fabs(lpa[i] - res.ll_annot[i]));
        CHECK_MSG(worst < 1e-9, "ll_annot off by %.3g", worst);
        emdpo_free(lpa, (size_t)d->n_annot * sizeof(double));
        emdpo_em_result_free(&res);
        emdpo_policy_free(pol);
    }
    emdpo_data_free(d);
}

static void test_recovery_ternary_vs_binary(void) {
    int p = 2, K = 2;
    double theta[4] = {2, -1, -2, 1}, eta[2] = {0.5, 0.5};
    double err[2];
    for (int items = 2; items <= 3; items++) {
        emdpo_data *d = mixture_data(20000, 1, items, 0, K, p, theta, eta, 123, NULL);
        emdpo_policy *pol = NULL;
        emdpo_em_result res;
        CHECK_EQ_INT(fit(d, K, 2, 9, EMDPO_INIT_RANDOM, &pol, &res), EMDPO_OK);
        err[items - 2] = emdpo_match_types(emdpo_loglinear_of(pol)->theta, theta, K, p, NULL);
        emdpo_em_result_free(&res);
        emdpo_policy_free(pol);
        emdpo_data_free(d);
    }
    double norm = sqrt(5.0);
    CHECK_MSG(err[1] < 0.25 * norm, "ternary error %g", err[1]);
    CHECK_MSG(err[0] > 0.5 * norm, "binary error %g (should not recover +-beta)", err[0]);
}

static void test_empty_types(void) {
    /* Every annotator identical: k-means can fill one cluster only. */
    emdpo_data_builder *b;
    emdpo_data_builder_create(2, &b);
    double x[6] = {1, 0, 0, 1, -1, -1};
    char name[16];
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof name, "u%d", i);
        emdpo_data_builder_add(b, name, NULL, NULL, 3, 1, x, NULL);
    }
    emdpo_data *d;
    emdpo_data_builder_finish(b, &d);
    emdpo_policy *pol = NULL;
    emdpo_em_result res;
    emdpo_em_opts o;
    emdpo_em_opts_init(&o);
    emdpo_loglinear_create(3, 2, &pol);
    emdpo_loglinear_of(pol)->l2 = 0.1; /* separable data: keep theta finite */
    CHECK_EQ_INT(emdpo_em_fit(&pol, d, &o, &res), EMDPO_OK);
    CHECK_EQ_INT(res.n_empty, 2);
    CHECK(isfinite(res.loglik));
    for (int64_t q = 0; q < d->n_annot * 3; q++) CHECK(isfinite(res.gamma[q]));
    CHECK_CLOSE(res.eta[0] + res.eta[1] + res.eta[2], 1.0, 1e-12);
    emdpo_em_result_free(&res);
    emdpo_policy_free(pol);
    emdpo_data_free(d);
}

/* Every shape the lane kernel meets: 2 to 6 items (mixed within a step),
 * now and then 17 to 20 (past the lanes), rankings among top choices, and
 * annotators with 1 to 6 decisions or, every seventh, up to 90 (several
 * chunks). */
static emdpo_data *shapes_data(int n_annot, int p, uint64_t seed) {
    emdpo_data_builder *b;
    if (emdpo_data_builder_create(p, &b)) return NULL;
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, 0);
    double x[20 * 12];
    char name[32];
    for (int i = 0; i < n_annot; i++) {
        snprintf(name, sizeof name, "s%d", i);
        int m = 1 + (int)emdpo_rng_below(&r, i % 7 == 0 ? 90 : 6);
        for (int j = 0; j < m; j++) {
            int n = emdpo_rng_below(&r, 10) == 0 ? 17 + (int)emdpo_rng_below(&r, 4) : 2 + (int)emdpo_rng_below(&r, 5);
            int stages = emdpo_rng_below(&r, 5) == 0 ? 1 + (int)emdpo_rng_below(&r, (uint64_t)(n - 1)) : 1;
            for (int q = 0; q < n * p; q++) x[q] = emdpo_rng_normal(&r);
            if (emdpo_data_builder_add(b, name, NULL, NULL, n, stages, x, NULL)) {
                emdpo_data_builder_free(b);
                return NULL;
            }
        }
    }
    emdpo_data *d = NULL;
    emdpo_data_builder_finish(b, &d);
    return d;
}

/* Annotator i's unweighted log-likelihood and gradient under theta, and
 * (when H is not NULL) adds wt times its Hessian, one decision at a time. */
static double annot_reference(const emdpo_data *d, int64_t i, int p, const double *th, double wt, double *g,
                              double *H) {
    double u[20], prob[20], xbar[12], f = 0.0, h[144];
    for (int a = 0; a < p; a++) g[a] = 0.0;
    for (int q = 0; q < p * p; q++) h[q] = 0.0;
    for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++)
        f += emdpo_loglinear_decision_derivs(d->x + d->dec_item[j] * p, emdpo_dec_n_items(d, j), d->dec_stages[j], p, th,
                                             1.0, u, prob, xbar, g, h);
    for (int q = 0; q < p * p && H; q++) H[q] += wt * h[q];
    return f;
}

/* The lanes (ragged steps, chunks, idle lanes, the shift for huge
 * utilities, the generic p) against the one-decision reference. */
static void test_lanes_match_reference(void) {
    int ps[2] = {3, 11}, K = 2;
    for (int pi = 0; pi < 2; pi++) {
        int p = ps[pi];
        emdpo_data *d = shapes_data(150, p, 21 + (uint64_t)p);
        CHECK(d != NULL);
        if (!d) continue;
        for (int huge = 0; huge < 2; huge++) {
            emdpo_policy *pol;
            emdpo_loglinear_create(K, p, &pol);
            emdpo_loglinear *ll = emdpo_loglinear_of(pol);
            emdpo_rng r;
            emdpo_rng_seed(&r, 8, (uint64_t)(p + huge));
            /* huge: utility gaps of hundreds, so that exp(u) would overflow */
            for (int q = 0; q < K * p; q++) ll->theta[q] = (huge ? 300.0 : 0.8) * emdpo_rng_normal(&r);
            double *w = emdpo_malloc((size_t)d->n_annot * K * sizeof(double));
            for (int64_t q = 0; q < d->n_annot * K; q++) w[q] = emdpo_rng_uniform(&r);
            double *logp = emdpo_malloc((size_t)d->n_dec * K * sizeof(double));
            CHECK_EQ_INT(pol->ops->decision_logp(pol, d, logp), EMDPO_OK);
            int logp_ok = 1;
            for (int64_t j = 0; j < d->n_dec; j++)
                for (int k = 0; k < K; k++) {
                    double u[20];
                    int n = emdpo_dec_n_items(d, j);
                    for (int q = 0; q < n; q++) {
                        u[q] = 0.0;
                        for (int a = 0; a < p; a++) u[q] += ll->theta[k * p + a] * d->x[(d->dec_item[j] + q) * p + a];
                    }
                    double ref = emdpo_choice_logp(u, n, d->dec_stages[j]);
                    logp_ok &= fabs(logp[j * K + k] - ref) <= 1e-12 * fmax(1.0, fabs(ref));
                }
            CHECK_MSG(logp_ok, "decision_logp, p %d, huge %d", p, huge);
            for (int k = 0; k < K; k++) {
                double f, g[12], H[144], rf = 0.0, rg[12] = {0}, rH[144] = {0}, gi[12];
                CHECK_EQ_INT(emdpo_loglinear_objective(ll, d, w, k, &f, g, H), EMDPO_OK);
                for (int64_t i = 0; i < d->n_annot; i++) {
                    double wt = w[i * K + k];
                    rf += wt * annot_reference(d, i, p, ll->theta + k * p, wt, gi, rH);
                    for (int a = 0; a < p; a++) rg[a] += wt * gi[a];
                }
                CHECK_CLOSE(f, rf, 1e-12);
                int close = 1;
                for (int a = 0; a < p; a++) close &= fabs(g[a] - rg[a]) <= 1e-11 * fmax(1.0, fabs(rf) / d->n_dec);
                for (int q = 0; q < p * p; q++) close &= fabs(H[q] - rH[q]) <= 1e-11 * fmax(1.0, fabs(rH[q]));
                CHECK_MSG(close, "gradient or Hessian, p %d, huge %d, type %d", p, huge, k);
            }
            emdpo_free(logp, (size_t)d->n_dec * K * sizeof(double));
            emdpo_free(w, (size_t)d->n_annot * K * sizeof(double));
            emdpo_policy_free(pol);
        }
        emdpo_data_free(d);
    }
}

static double *random_weights(const emdpo_data *d, int K, uint64_t seed) {
    double *w = emdpo_malloc((size_t)d->n_annot * K * sizeof(double));
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, 0);
    for (int64_t q = 0; q < d->n_annot * K; q++) w[q] = emdpo_rng_uniform(&r);
    return w;
}

/* |grad|_inf of type k's objective at the policy's theta, over gtol (1 +
 * total weight): at most 1 at a converged M-step. */
static double grad_ratio(emdpo_loglinear *ll, const emdpo_data *d, const double *w, int k) {
    double f, g[12], wsum = 0.0, gmax = 0.0;
    emdpo_loglinear_objective(ll, d, w, k, &f, g, NULL);
    for (int64_t i = 0; i < d->n_annot; i++) wsum += w[i * ll->base.K + k] * (double)(d->annot_dec[i + 1] - d->annot_dec[i]);
    for (int a = 0; a < ll->p; a++) gmax = fmax(gmax, fabs(g[a]));
    return gmax / (ll->gtol * (1.0 + wsum));
}

/* The M-step leaves each annotator's log-likelihood and gradient at the
 * final theta (equal to a fresh computation), and the next M-step that
 * starts from them ends where one that passes over the data ends. */
static void test_annotator_cache(void) {
    int p = 3, K = 2;
    emdpo_data *d = shapes_data(200, p, 5);
    double *w1 = random_weights(d, K, 1), *w2 = random_weights(d, K, 2);
    unsigned char active[2] = {1, 1};
    emdpo_policy *pa, *pb;
    emdpo_loglinear_create(K, p, &pa);
    emdpo_loglinear_create(K, p, &pb);
    emdpo_loglinear *la = emdpo_loglinear_of(pa), *lb = emdpo_loglinear_of(pb);
    emdpo_mstep_info ia, ib;
    CHECK_EQ_INT(pa->ops->mstep(pa, d, w1, active, NULL, &ia), EMDPO_OK);
    CHECK_EQ_INT(pb->ops->mstep(pb, d, w1, active, NULL, &ib), EMDPO_OK);
    CHECK(memcmp(la->theta, lb->theta, (size_t)K * p * sizeof(double)) == 0);
    for (int k = 0; k < K; k++) {
        CHECK(la->annot_ok[k]);
        CHECK(memcmp(la->annot_theta + k * p, la->theta + k * p, (size_t)p * sizeof(double)) == 0);
        int same = 1;
        for (int64_t i = 0; i < d->n_annot; i++) {
            double g[3];
            const double *row = la->annot_cache + ((size_t)k * d->n_annot + i) * (1 + p);
            double f = annot_reference(d, i, p, la->theta + k * p, 0.0, g, NULL);
            same &= fabs(row[0] - f) <= 1e-12 * fmax(1.0, fabs(f));
            for (int a = 0; a < p; a++) same &= fabs(row[1 + a] - g[a]) <= 1e-12 * fmax(1.0, fabs(f));
        }
        CHECK_MSG(same, "cached rows of type %d differ from fresh ones", k);
    }
    /* b forgets its rows and passes over the data instead. */
    memset(lb->annot_ok, 0, (size_t)K);
    CHECK_EQ_INT(pa->ops->mstep(pa, d, w2, active, NULL, &ia), EMDPO_OK);
    CHECK_EQ_INT(pb->ops->mstep(pb, d, w2, active, NULL, &ib), EMDPO_OK);
    CHECK(ia.converged && ib.converged);
    CHECK_CLOSE(ia.objective, ib.objective, 1e-12);
    for (int q = 0; q < K * p; q++) CHECK_CLOSE(la->theta[q], lb->theta[q], 1e-9);
    emdpo_policy_free(pa);
    emdpo_policy_free(pb);
    emdpo_free(w1, (size_t)d->n_annot * K * sizeof(double));
    emdpo_free(w2, (size_t)d->n_annot * K * sizeof(double));
    emdpo_data_free(d);
}

/* Rows count only for the theta and the dataset they came from: after
 * theta moves, or on other data with as many annotators, the M-step must
 * not take the old rows' zero gradient for convergence. */
static void test_annotator_cache_invalidation(void) {
    int p = 3, K = 2;
    emdpo_data *d = shapes_data(200, p, 5), *d2 = shapes_data(200, p, 6);
    CHECK(d->n_annot == d2->n_annot);
    double *w = random_weights(d, K, 3);
    unsigned char active[2] = {1, 1};
    emdpo_policy *pol;
    emdpo_loglinear_create(K, p, &pol);
    emdpo_loglinear *ll = emdpo_loglinear_of(pol);
    emdpo_mstep_info info;
    CHECK_EQ_INT(pol->ops->mstep(pol, d, w, active, NULL, &info), EMDPO_OK);
    ll->theta[0] += 0.3;
    CHECK_EQ_INT(pol->ops->mstep(pol, d, w, active, NULL, &info), EMDPO_OK);
    for (int k = 0; k < K; k++) CHECK_MSG(grad_ratio(ll, d, w, k) <= 1.0, "moved theta, type %d", k);
    CHECK_EQ_INT(pol->ops->mstep(pol, d2, w, active, NULL, &info), EMDPO_OK);
    for (int k = 0; k < K; k++) CHECK_MSG(grad_ratio(ll, d2, w, k) <= 1.0, "other data, type %d", k);
    emdpo_policy_free(pol);
    emdpo_free(w, (size_t)d->n_annot * K * sizeof(double));
    emdpo_data_free(d);
    emdpo_data_free(d2);
}

/* A cold M-step on enough annotators starts on a subsample. From zero,
 * weighted by the true types, it must reach the full optimum; from next
 * to the optimum the subsample's own optimum is worse, and the M-step must
 * keep its start and still converge, never lowering the objective. */
static void test_cold_start(void) {
    int p = 2, K = 2;
    double theta[4] = {2, -1, -2, 1}, eta[2] = {0.5, 0.5};
    int32_t truth[1200];
    emdpo_data *d = mixture_data(1200, 3, 3, 0, K, p, theta, eta, 77, truth);
    double *w = emdpo_malloc((size_t)d->n_annot * K * sizeof(double));
    for (int64_t i = 0; i < d->n_annot; i++)
        for (int k = 0; k < K; k++) w[i * K + k] = truth[i] == k;
    unsigned char active[2] = {1, 1};
    emdpo_policy *pol;
    emdpo_loglinear_create(K, p, &pol);
    emdpo_loglinear *ll = emdpo_loglinear_of(pol);
    double f0[2], f1[2];
    for (int k = 0; k < K; k++) emdpo_loglinear_objective(ll, d, w, k, &f0[k], NULL, NULL);
    emdpo_mstep_info info;
    CHECK_EQ_INT(pol->ops->mstep(pol, d, w, active, NULL, &info), EMDPO_OK);
    CHECK(info.converged);
    for (int k = 0; k < K; k++) {
        CHECK_MSG(grad_ratio(ll, d, w, k) <= 1.0, "from zero, type %d", k);
        emdpo_loglinear_objective(ll, d, w, k, &f1[k], NULL, NULL);
        CHECK(f1[k] > f0[k]);
    }
    double opt[4];
    memcpy(opt, ll->theta, sizeof opt);
    emdpo_policy *near;
    emdpo_loglinear_create(K, p, &near);
    emdpo_loglinear *ln = emdpo_loglinear_of(near);
    for (int q = 0; q < K * p; q++) ln->theta[q] = opt[q] + 1e-3;
    double fs[2];
    for (int k = 0; k < K; k++) emdpo_loglinear_objective(ln, d, w, k, &fs[k], NULL, NULL);
    CHECK_EQ_INT(near->ops->mstep(near, d, w, active, NULL, &info), EMDPO_OK);
    CHECK(info.converged);
    for (int k = 0; k < K; k++) {
        double f;
        emdpo_loglinear_objective(ln, d, w, k, &f, NULL, NULL);
        CHECK(f >= fs[k]);
        CHECK_MSG(grad_ratio(ln, d, w, k) <= 1.0, "from near the optimum, type %d", k);
    }
    for (int q = 0; q < K * p; q++) CHECK_CLOSE(ln->theta[q], opt[q], 1e-6);
    /* Without Newton steps after it, a kept subsample optimum would show. */
    emdpo_policy *bare;
    emdpo_loglinear_create(K, p, &bare);
    emdpo_loglinear *lb = emdpo_loglinear_of(bare);
    for (int q = 0; q < K * p; q++) lb->theta[q] = opt[q] + 1e-3;
    lb->max_newton = 0;
    CHECK_EQ_INT(bare->ops->mstep(bare, d, w, active, NULL, &info), EMDPO_OK);
    for (int k = 0; k < K; k++) {
        double f;
        emdpo_loglinear_objective(lb, d, w, k, &f, NULL, NULL);
        CHECK(f >= fs[k]);
    }
    emdpo_policy_free(pol);
    emdpo_policy_free(near);
    emdpo_policy_free(bare);
    emdpo_free(w, (size_t)d->n_annot * K * sizeof(double));
    emdpo_data_free(d);
}

/* Annotators in pairs, the second choosing like the first among negated
 * items: at theta = 0 the gradients cancel, so 0 is the optimum. A
 * subsample of every fourth annotator sees no pairs; its optimum is worse,
 * and the cold start must keep 0, learn its gradient with a pass and leave
 * the annotator sums at 0's values. */
static void test_cold_start_keeps_zero(void) {
    int p = 2, n_annot = 1200;
    emdpo_data_builder *b;
    emdpo_data_builder_create(p, &b);
    emdpo_rng r;
    emdpo_rng_seed(&r, 12, 0);
    double x[6], neg[6];
    char name[32];
    for (int i = 0; i < n_annot; i += 2)
        for (int j = 0; j < 2; j++) {
            for (int q = 0; q < 6; q++) neg[q] = -(x[q] = emdpo_rng_normal(&r));
            snprintf(name, sizeof name, "m%d", i);
            emdpo_data_builder_add(b, name, NULL, NULL, 3, 1, x, NULL);
            snprintf(name, sizeof name, "m%d", i + 1);
            emdpo_data_builder_add(b, name, NULL, NULL, 3, 1, neg, NULL);
        }
    emdpo_data *d = NULL;
    emdpo_data_builder_finish(b, &d);
    emdpo_policy *pol;
    emdpo_loglinear_create(1, p, &pol);
    emdpo_loglinear *ll = emdpo_loglinear_of(pol);
    double *w = emdpo_malloc((size_t)n_annot * sizeof(double));
    double *al = emdpo_malloc((size_t)n_annot * sizeof(double));
    for (int i = 0; i < n_annot; i++) w[i] = 1.0, al[i] = 0.0;
    unsigned char active[1] = {1};
    emdpo_mstep_info info;
    CHECK_EQ_INT(pol->ops->mstep(pol, d, w, active, al, &info), EMDPO_OK);
    CHECK(info.converged);
    CHECK(fabs(ll->theta[0]) <= 1e-12 && fabs(ll->theta[1]) <= 1e-12);
    int at_zero = 1; /* two decisions of three items each */
    for (int i = 0; i < n_annot; i++) at_zero &= fabs(al[i] + 2.0 * log(3.0)) <= 1e-14;
    CHECK_MSG(at_zero, "annot_logp is not theta = 0's");
    /* Off zero with no Newton steps allowed: the subsample's optimum is
     * refused and theta stays, but the last full pass ran at the refused
     * point, so the annotator sums need a pass of their own at theta. */
    emdpo_policy *off;
    emdpo_loglinear_create(1, p, &off);
    emdpo_loglinear *lo = emdpo_loglinear_of(off);
    lo->theta[0] = 0.01;
    lo->theta[1] = -0.01;
    lo->max_newton = 0;
    double *logp = emdpo_malloc((size_t)d->n_dec * sizeof(double));
    for (int i = 0; i < n_annot; i++) al[i] = 0.0;
    CHECK_EQ_INT(off->ops->mstep(off, d, w, active, al, &info), EMDPO_OK);
    CHECK(lo->theta[0] == 0.01 && lo->theta[1] == -0.01);
    check_annot_logp(off, d, al, active, logp);
    emdpo_free(logp, (size_t)d->n_dec * sizeof(double));
    emdpo_policy_free(off);
    emdpo_free(w, (size_t)n_annot * sizeof(double));
    emdpo_free(al, (size_t)n_annot * sizeof(double));
    emdpo_policy_free(pol);
    emdpo_data_free(d);
}

static void test_alloc_failures(void) {
    emdpo_data *d = testdata_random_decisions(20, 2, 2, 3);
    long k;
    for (k = 0; k < 100000; k++) {
        failalloc_install(k, 0);
        emdpo_policy *pol = NULL;
        emdpo_em_result res;
        emdpo_em_opts o;
        emdpo_em_opts_init(&o);
        o.starts = 2;
        o.max_iter = 5;
        int rc = emdpo_loglinear_create(2, 2, &pol);
        if (!rc) rc = emdpo_em_fit(&pol, d, &o, &res);
        if (!rc) emdpo_em_result_free(&res);
        emdpo_policy_free(pol);
        long live = failalloc_live(), count = failalloc_count();
        int size_err = failalloc_size_errors();
        failalloc_uninstall();
        CHECK_MSG(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM, "fail_at %ld: rc %d", k, rc);
        CHECK_MSG(live == 0, "fail_at %ld: %ld blocks leaked", k, live);
        CHECK_MSG(size_err == 0, "fail_at %ld: wrong free sizes", k);
        if (count <= k) break;
    }
    CHECK(k > 10);
    emdpo_data_free(d);
}

static double xsum_of(const double *v, const int *order, int n) {
    int64_t acc[EMDPO_XSUM_WORDS];
    emdpo_xsum_zero(acc, 1);
    for (int i = 0; i < n; i++) emdpo_xsum_add(acc, v[order ? order[i] : i]);
    double out;
    emdpo_xsum_values(acc, 1, &out);
    return out;
}

/* The exact sums that make fits independent of threads and processes:
 * cancellation a double sum loses, any order and any split into merged
 * parts giving the same bits, agreement with a sum in 113-bit arithmetic,
 * and IEEE's infinities and NaN. */
static void test_exact_sums(void) {
    double c[] = {1e308, 1.0, -1e308, 1e-300, 3.0, -0.5, 4.9e-324};
    CHECK(xsum_of(c, NULL, 7) == 3.5);
    enum { N = 4000 };
    static double v[N];
    static int order[N];
    emdpo_rng r;
    emdpo_rng_seed(&r, 11, 0);
    __float128 ref = 0;
    for (int i = 0; i < N; i++) {
        v[i] = (emdpo_rng_uniform(&r) - 0.3) * ldexp(1.0, (int)emdpo_rng_below(&r, 80) - 40);
        ref += v[i];
        order[i] = N - 1 - i;
    }
    double fwd = xsum_of(v, NULL, N), rev = xsum_of(v, order, N);
    CHECK(memcmp(&fwd, &rev, sizeof fwd) == 0);
    CHECK(fabs(fwd - (double)ref) <= 2.0 * fabs(nextafter(fwd, INFINITY) - fwd));
    /* three parts summed apart and merged, as threads and processes do */
    int64_t part[3][EMDPO_XSUM_WORDS];
    emdpo_xsum_zero(&part[0][0], 3);
    for (int i = 0; i < N; i++) emdpo_xsum_add(part[i % 3], v[i]);
    emdpo_xsum_carry(part[1], 1);
    emdpo_xsum_merge(part[0], part[1], 1);
    emdpo_xsum_merge(part[0], part[2], 1);
    double merged;
    emdpo_xsum_values(part[0], 1, &merged);
    CHECK(memcmp(&fwd, &merged, sizeof fwd) == 0);
    double specials[][2] = {{INFINITY, 1.0}, {INFINITY, -INFINITY}, {NAN, 1.0}, {-INFINITY, 5.0}};
    CHECK(xsum_of(specials[0], NULL, 2) == INFINITY);
    CHECK(isnan(xsum_of(specials[1], NULL, 2)));
    CHECK(isnan(xsum_of(specials[2], NULL, 2)));
    CHECK(xsum_of(specials[3], NULL, 2) == -INFINITY);
}

int main(void) {
    test_exact_sums();
    test_derivatives();
    test_estep_brute_force();
    test_estep_many_decisions();
    test_mstep_annot_logp(0);
    test_mstep_annot_logp(1);
    test_monotone_and_deterministic();
    test_em_keeps_best();
    test_em_keeps_best_starts();
    test_recovery_ternary_vs_binary();
    test_empty_types();
    test_lanes_match_reference();
    test_annotator_cache();
    test_annotator_cache_invalidation();
    test_cold_start();
    test_cold_start_keeps_zero();
    test_alloc_failures();
    return check_report("test_loglinear");
}
