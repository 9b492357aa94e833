/* The log-linear family and EM-DPO on it: derivatives against finite
 * differences, the E-step against brute-force products, monotone
 * log-likelihood, thread-count determinism, empty types, recovery. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "alloc.h"
#include "check.h"
#include "choice.h"
#include "em.h"
#include "failalloc.h"
#include "linalg.h"
#include "loglinear.h"
#include "match.h"
#include "rng.h"
#include "testdata.h"

/* Data from a latent-class logit: type ~ eta, then top choices (or full
 * rankings) by Gumbel-max over theta_k . x with Gaussian features. */
static emdpo_data *mixture_data(int n_annot, int m, int n_items, int ranking, int K, int p,
                                const double *theta, const double *eta, uint64_t seed, int32_t *truth) {
    emdpo_builder *b;
    if (emdpo_builder_create(p, &b)) return NULL;
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
            if (emdpo_builder_add(b, name, NULL, NULL, n_items, ranking ? n_items - 1 : 1, xs, NULL)) {
                emdpo_builder_free(b);
                return NULL;
            }
        }
    }
    emdpo_data *d = NULL;
    emdpo_builder_finish(b, &d);
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
    emdpo_free(logp, (size_t)d->n_dec * K * sizeof(double));
    emdpo_free(gamma, (size_t)d->n_annot * K * sizeof(double));
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
    emdpo_em_opts_default(&o);
    o.starts = starts;
    o.seed = seed;
    o.init = init;
    int rc = emdpo_loglinear_create(K, d->p, pol);
    if (rc) return rc;
    return emdpo_em_fit(pol, d, &o, res);
}

static void test_monotone_and_deterministic(void) {
    int p = 3, K = 3;
    double theta[9] = {2, 0, -1, -2, 0, 1, 0, 1.5, 1.5}, eta[3] = {.3, .3, .4};
    emdpo_data *d = mixture_data(1500, 2, 3, 0, K, p, theta, eta, 5, NULL);
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
    emdpo_builder *b;
    emdpo_builder_create(2, &b);
    double x[6] = {1, 0, 0, 1, -1, -1};
    char name[16];
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof name, "u%d", i);
        emdpo_builder_add(b, name, NULL, NULL, 3, 1, x, NULL);
    }
    emdpo_data *d;
    emdpo_builder_finish(b, &d);
    emdpo_policy *pol = NULL;
    emdpo_em_result res;
    emdpo_em_opts o;
    emdpo_em_opts_default(&o);
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

static void test_alloc_failures(void) {
    emdpo_data *d = testdata_random_decisions(20, 2, 2, 3);
    long k;
    for (k = 0; k < 100000; k++) {
        failalloc_install(k, 0);
        emdpo_policy *pol = NULL;
        emdpo_em_result res;
        emdpo_em_opts o;
        emdpo_em_opts_default(&o);
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

int main(void) {
    test_derivatives();
    test_estep_brute_force();
    test_estep_many_decisions();
    test_monotone_and_deterministic();
    test_recovery_ternary_vs_binary();
    test_empty_types();
    test_alloc_failures();
    return check_report("test_loglinear");
}
