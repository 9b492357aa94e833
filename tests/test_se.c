/* Standard errors from the observed information: the analytic Hessian
 * against finite differences of an independently computed log-likelihood,
 * positive definiteness and finiteness at an EM fit, calibration against
 * the spread of estimates over replicated datasets, thread-count
 * determinism and allocation failures. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "base/alloc.h"
#include "base/linalg.h"
#include "base/rng.h"
#include "check.h"
#include "core/choice.h"
#include "core/em.h"
#include "core/match.h"
#include "experiments/simulate.h"
#include "failalloc.h"
#include "loglinear/loglinear.h"
#include "loglinear/loglinear_se.h"
#include "testdata.h"

static emdpo_data *simulated(int K, int p, const double *theta, const double *eta, int64_t n, int m, int items,
                             uint64_t seed) {
    emdpo_sim_spec s;
    emdpo_sim_spec_init(&s);
    s.pop = (emdpo_population){K, p, theta, eta, NULL};
    s.n_annotators = n;
    s.decisions = m;
    s.items = items;
    s.design = EMDPO_SIM_GAUSSIAN;
    s.seed = seed;
    emdpo_data *d = NULL;
    return emdpo_simulate(&s, &d, NULL, NULL) == EMDPO_OK ? d : NULL;
}

/* The penalised observed log-likelihood at the packed parameter vector
 * par (theta of the non-empty types, then alpha of all but the first),
 * computed the EM way: decision_logp, then the E-step's logsumexp. */
static double loglik_at(emdpo_policy *pol, const emdpo_data *d, const unsigned char *empty, const double *par) {
    emdpo_loglinear *ll = emdpo_loglinear_of(pol);
    int K = pol->K, p = ll->p, ka = 0;
    double alpha[EMDPO_MAX_K], log_eta[EMDPO_MAX_K], pen = 0.0;
    int act[EMDPO_MAX_K];
    for (int k = 0; k < K; k++)
        if (!empty[k]) act[ka++] = k;
    for (int r = 0; r < ka; r++) {
        memcpy(ll->theta + act[r] * p, par + r * p, (size_t)p * sizeof(double));
        for (int a = 0; a < p; a++) pen += 0.5 * ll->l2 * par[r * p + a] * par[r * p + a];
        alpha[r] = r == 0 ? 0.0 : par[ka * p + r - 1];
    }
    double lse = emdpo_logsumexp(alpha, ka);
    for (int k = 0; k < K; k++) log_eta[k] = -INFINITY;
    for (int r = 0; r < ka; r++) log_eta[act[r]] = alpha[r] - lse;
    double *logp = emdpo_malloc((size_t)d->n_dec * K * sizeof(double));
    double *gamma = emdpo_malloc((size_t)d->n_annot * K * sizeof(double));
    double total = NAN;
    if (pol->ops->decision_logp(pol, d, logp) || emdpo_em_estep(d, K, logp, log_eta, gamma, NULL, &total))
        total = NAN;
    emdpo_free(logp, (size_t)d->n_dec * K * sizeof(double));
    emdpo_free(gamma, (size_t)d->n_annot * K * sizeof(double));
    return total - pen;
}

static void hessian_vs_fd(int K, double l2, const unsigned char *empty, uint64_t seed) {
    int p = 3;
    emdpo_data *d = testdata_random_decisions(60, 3, p, seed);
    CHECK(d != NULL);
    if (!d) return;
    emdpo_policy *pol;
    CHECK_EQ_INT(emdpo_loglinear_create(K, p, &pol), EMDPO_OK);
    emdpo_loglinear *ll = emdpo_loglinear_of(pol);
    ll->l2 = l2;
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, 1);
    double eta[EMDPO_MAX_K], esum = 0.0;
    for (int q = 0; q < K * p; q++) ll->theta[q] = 0.7 * emdpo_rng_normal(&r);
    for (int k = 0; k < K; k++) esum += eta[k] = empty[k] ? 0.0 : 0.2 + emdpo_rng_uniform(&r);
    for (int k = 0; k < K; k++) eta[k] /= esum;

    int npar = emdpo_loglinear_se_npar(K, p, empty), got = -1;
    double *H = emdpo_malloc((size_t)npar * npar * sizeof(double));
    CHECK_EQ_INT(emdpo_loglinear_observed_hessian(d, ll, eta, empty, H, &got), EMDPO_OK);
    CHECK_EQ_INT(got, npar);

    /* The same point, packed. */
    double par[64];
    int ka = 0, ref = -1;
    for (int k = 0; k < K; k++)
        if (!empty[k]) {
            if (ref < 0) ref = k;
            memcpy(par + ka * p, ll->theta + k * p, (size_t)p * sizeof(double));
            ka++;
        }
    for (int k = 0, r2 = 0; k < K; k++)
        if (!empty[k] && r2++ > 0) par[ka * p + r2 - 2] = log(eta[k] / eta[ref]);

    double h = 1e-3, worst = 0.0, f0 = loglik_at(pol, d, empty, par);
    for (int a = 0; a < npar; a++)
        for (int b = a; b < npar; b++) {
            double fd;
            if (a == b) {
                par[a] += h;
                double fp = loglik_at(pol, d, empty, par);
                par[a] -= 2 * h;
                double fm = loglik_at(pol, d, empty, par);
                par[a] += h;
                fd = (fp - 2 * f0 + fm) / (h * h);
            } else {
                double f[4];
                for (int c = 0; c < 4; c++) {
                    double sa = c & 1 ? -h : h, sb = c & 2 ? -h : h;
                    par[a] += sa;
                    par[b] += sb;
                    f[c] = loglik_at(pol, d, empty, par);
                    par[a] -= sa;
                    par[b] -= sb;
                }
                fd = (f[0] - f[1] - f[2] + f[3]) / (4 * h * h);
            }
            double err = fabs(fd - H[a * npar + b]) / fmax(1.0, fabs(fd));
            worst = fmax(worst, err);
            CHECK(H[a * npar + b] == H[b * npar + a]);
        }
    CHECK_MSG(worst < 1e-4, "K %d: worst relative error %g", K, worst);
    emdpo_free(H, (size_t)npar * npar * sizeof(double));
    emdpo_policy_free(pol);
    emdpo_data_free(d);
}

static void test_hessian_fd(void) {
    unsigned char none[3] = {0, 0, 0}, mid[3] = {0, 1, 0}, first[3] = {1, 0, 0};
    hessian_vs_fd(2, 0.0, none, 7);
    hessian_vs_fd(3, 0.0, none, 8);
    hessian_vs_fd(3, 0.3, none, 9);
    hessian_vs_fd(3, 0.0, mid, 10);
    hessian_vs_fd(3, 0.0, first, 11); /* the reference moves to type 1 */
}

static int fit(emdpo_data *d, int K, double tol, emdpo_policy **pol, emdpo_em_result *res) {
    emdpo_em_opts o;
    emdpo_em_opts_init(&o);
    o.tol = tol;
    o.max_iter = 2000;
    int rc = emdpo_loglinear_create(K, d->p, pol);
    if (rc) return rc;
    return emdpo_em_fit(pol, d, &o, res);
}

static const double theta3[15] = {2, 0, 1, 0, -1, -2, 0, -1, 0, 1, 0, 1.5, 0, 1.5, 0};
static const double eta3[3] = {0.3, 0.3, 0.4};

static void test_at_fit(void) {
    int K = 3, p = 5;
    emdpo_data *d = simulated(K, p, theta3, eta3, 1000, 4, 3, 21);
    CHECK(d != NULL);
    if (!d) return;
    emdpo_policy *pol = NULL;
    emdpo_em_result res;
    CHECK_EQ_INT(fit(d, K, 1e-13, &pol, &res), EMDPO_OK);
    CHECK(res.converged);
    CHECK_EQ_INT(res.n_empty, 0);
    emdpo_loglinear *ll = emdpo_loglinear_of(pol);

    int npar = emdpo_loglinear_se_npar(K, p, res.empty);
    CHECK_EQ_INT(npar, K * p + K - 1);
    double *H = emdpo_malloc((size_t)npar * npar * sizeof(double));
    CHECK_EQ_INT(emdpo_loglinear_observed_hessian(d, ll, res.eta, res.empty, H, NULL), EMDPO_OK);
    for (int q = 0; q < npar * npar; q++) H[q] = -H[q];
    CHECK(emdpo_cholesky(H, npar) == 0);
    emdpo_free(H, (size_t)npar * npar * sizeof(double));

    double se_theta[15], se_eta[3];
    CHECK_EQ_INT(emdpo_loglinear_stderr(d, ll, res.eta, res.empty, se_theta, se_eta), EMDPO_OK);
    for (int q = 0; q < K * p; q++) CHECK(isfinite(se_theta[q]) && se_theta[q] > 0 && se_theta[q] < 1);
    for (int k = 0; k < K; k++) CHECK(isfinite(se_eta[k]) && se_eta[k] > 0 && se_eta[k] < 0.1);

    /* A fourth, empty type changes nothing else and gets NaN. */
    emdpo_policy *pol4;
    CHECK_EQ_INT(emdpo_loglinear_create(K + 1, p, &pol4), EMDPO_OK);
    emdpo_loglinear *ll4 = emdpo_loglinear_of(pol4);
    memcpy(ll4->theta, ll->theta, (size_t)K * p * sizeof(double));
    double eta4[4] = {res.eta[0], res.eta[1], res.eta[2], 0.0}, se4_theta[20], se4_eta[4];
    unsigned char empty4[4] = {0, 0, 0, 1};
    CHECK_EQ_INT(emdpo_loglinear_stderr(d, ll4, eta4, empty4, se4_theta, se4_eta), EMDPO_OK);
    for (int q = 0; q < K * p; q++) CHECK_CLOSE(se4_theta[q], se_theta[q], 1e-12);
    for (int k = 0; k < K; k++) CHECK_CLOSE(se4_eta[k], se_eta[k], 1e-12);
    for (int a = 0; a < p; a++) CHECK(isnan(se4_theta[K * p + a]));
    CHECK(isnan(se4_eta[K]));
    /* The empty type in the middle: the same numbers, moved. */
    memcpy(ll4->theta + 2 * p, ll->theta + p, (size_t)p * sizeof(double));
    memcpy(ll4->theta + 3 * p, ll->theta + 2 * p, (size_t)p * sizeof(double));
    double eta4b[4] = {res.eta[0], 0.0, res.eta[1], res.eta[2]};
    unsigned char empty4b[4] = {0, 1, 0, 0};
    CHECK_EQ_INT(emdpo_loglinear_stderr(d, ll4, eta4b, empty4b, se4_theta, se4_eta), EMDPO_OK);
    CHECK_CLOSE(se4_theta[0], se_theta[0], 1e-12);
    CHECK_CLOSE(se4_theta[2 * p + 1], se_theta[p + 1], 1e-12);
    CHECK_CLOSE(se4_eta[3], se_eta[2], 1e-12);
    CHECK(isnan(se4_theta[p]) && isnan(se4_eta[1]));

    /* Two identical types: alpha is not identified, -H is singular. */
    memcpy(ll4->theta + p, ll4->theta, (size_t)p * sizeof(double));
    double eta_same[4] = {0.25, 0.25, 0.25, 0.25};
    CHECK_EQ_INT(emdpo_loglinear_stderr(d, ll4, eta_same, NULL, se4_theta, se4_eta), EMDPO_ERR_NUMERIC);
    for (int q = 0; q < 4 * p; q++) CHECK(isnan(se4_theta[q]));
    for (int k = 0; k < 4; k++) CHECK(isnan(se4_eta[k]));

    /* Argument checks. */
    unsigned char all[4] = {1, 1, 1, 1};
    double eta_bad[4] = {0.5, 0.0, 0.25, 0.25};
    CHECK_EQ_INT(emdpo_loglinear_stderr(d, ll4, eta4, all, se4_theta, se4_eta), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_loglinear_stderr(d, ll4, eta_bad, NULL, se4_theta, se4_eta), EMDPO_ERR_INVALID_ARG);
    CHECK(isnan(se4_eta[0]));
    emdpo_policy_free(pol4);
    emdpo_em_result_free(&res);
    emdpo_policy_free(pol);
    emdpo_data_free(d);
}

/* Over replicated datasets the spread of the estimates matches the
 * reported standard errors. 800 annotators, not fewer: at 400 x 4 the
 * largest coefficient's spread still exceeds its asymptotic standard error
 * by about 10 % (a finite-sample effect that vanishes by 1600). */
static void test_calibration(void) {
    enum { K = 2, P = 2, REPS = 60 };
    const double theta[K * P] = {1.5, -1.0, -1.5, 0.5}, eta[K] = {0.4, 0.6};
    double est[REPS][K * P + 1], se[REPS][K * P + 1];
    int ok = 0;
    /* Sixty small fits: more threads would mostly add synchronisation. */
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    for (int rep = 0; rep < REPS; rep++) {
        emdpo_data *d = simulated(K, P, theta, eta, 800, 4, 3, 1000 + (uint64_t)rep);
        if (!d) break;
        emdpo_policy *pol = NULL;
        emdpo_em_result res;
        int rc = fit(d, K, 1e-10, &pol, &res);
        double se_theta[K * P], se_eta[K];
        int perm[K];
        if (!rc) {
            const double *th = emdpo_loglinear_of(pol)->theta;
            rc = emdpo_loglinear_stderr(d, emdpo_loglinear_of(pol), res.eta, res.empty, se_theta, se_eta);
            emdpo_match_types(th, theta, K, P, perm);
            for (int k = 0; k < K; k++)
                for (int a = 0; a < P; a++) {
                    est[ok][k * P + a] = th[perm[k] * P + a];
                    se[ok][k * P + a] = se_theta[perm[k] * P + a];
                }
            est[ok][K * P] = res.eta[perm[0]];
            se[ok][K * P] = se_eta[perm[0]];
            emdpo_em_result_free(&res);
        }
        CHECK_MSG(rc == EMDPO_OK, "replicate %d: rc %d", rep, rc);
        ok += rc == EMDPO_OK;
        emdpo_policy_free(pol);
        emdpo_data_free(d);
    }
    omp_set_num_threads(saved);
    CHECK_EQ_INT(ok, REPS);
    for (int c = 0; c < K * P + 1 && ok > 2; c++) {
        double mean = 0.0, var = 0.0, mse = 0.0;
        for (int r = 0; r < ok; r++) {
            mean += est[r][c] / ok;
            mse += se[r][c] / ok;
        }
        for (int r = 0; r < ok; r++) var += (est[r][c] - mean) * (est[r][c] - mean) / (ok - 1);
        double ratio = sqrt(var) / mse;
        CHECK_MSG(ratio > 0.75 && ratio < 1.25, "component %d: sd %g vs mean se %g", c, sqrt(var), mse);
    }
}

static void test_threads(void) {
    int K = 3, p = 5;
    emdpo_data *d = simulated(K, p, theta3, eta3, 3000, 3, 3, 5);
    CHECK(d != NULL);
    if (!d) return;
    emdpo_policy *pol;
    emdpo_loglinear_create(K, p, &pol);
    emdpo_loglinear *ll = emdpo_loglinear_of(pol);
    memcpy(ll->theta, theta3, sizeof theta3);
    int npar = emdpo_loglinear_se_npar(K, p, NULL);
    size_t bytes = (size_t)npar * npar * sizeof(double);
    double *H[3];
    int saved = omp_get_max_threads();
    for (int t = 0; t < 3; t++) {
        H[t] = emdpo_malloc(bytes);
        omp_set_num_threads(t + 1);
        CHECK_EQ_INT(emdpo_loglinear_observed_hessian(d, ll, eta3, NULL, H[t], NULL), EMDPO_OK);
    }
    omp_set_num_threads(saved);
    CHECK(memcmp(H[0], H[1], bytes) == 0);
    CHECK(memcmp(H[0], H[2], bytes) == 0);
    for (int t = 0; t < 3; t++) emdpo_free(H[t], bytes);
    emdpo_policy_free(pol);
    emdpo_data_free(d);
}

static void test_alloc_failures(void) {
    /* At the true parameters of a well-identified model -H is positive
     * definite, so the only failures are the injected ones. */
    int K = 2, p = 2;
    const double theta[4] = {1.5, -1.0, -1.5, 0.5}, eta[2] = {0.4, 0.6};
    emdpo_data *d = simulated(K, p, theta, eta, 300, 3, 3, 4);
    CHECK(d != NULL);
    if (!d) return;
    emdpo_policy *pol;
    emdpo_loglinear_create(K, p, &pol);
    emdpo_loglinear *ll = emdpo_loglinear_of(pol);
    memcpy(ll->theta, theta, sizeof theta);
    double se_theta[4], se_eta[2];
    long k;
    int last = -1;
    for (k = 0; k < 1000; k++) {
        failalloc_install(k, 0);
        int rc = emdpo_loglinear_stderr(d, ll, eta, NULL, se_theta, se_eta);
        long live = failalloc_live(), count = failalloc_count();
        int size_err = failalloc_size_errors();
        failalloc_uninstall();
        CHECK_MSG(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM, "fail_at %ld: rc %d", k, rc);
        if (rc == EMDPO_ERR_NOMEM) CHECK(isnan(se_theta[0]) && isnan(se_eta[0]));
        last = rc;
        CHECK_MSG(live == 0, "fail_at %ld: %ld blocks leaked", k, live);
        CHECK_MSG(size_err == 0, "fail_at %ld: wrong free sizes", k);
        if (count <= k) break;
    }
    CHECK_EQ_INT(last, EMDPO_OK); /* the sweep ran until nothing failed */
    CHECK(k >= 3);
    emdpo_policy_free(pol);
    emdpo_data_free(d);
}

int main(void) {
    test_hessian_fd();
    test_at_fit();
    test_calibration();
    test_threads();
    test_alloc_failures();
    return check_report("test_se");
}
