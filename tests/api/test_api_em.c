/* The public API of EM-DPO on log-linear policies (emdpo/em.h,
 * emdpo/loglinear.h, emdpo/fitfile.h) and MMRA (emdpo/mmra.h), through the
 * shared library: a fit on simulated data checked against a brute-force
 * E-step and the true types, the fit's files read back bit for bit, K
 * selection, the exact cross rewards against a direct computation, the
 * games, and the documented errors. */
#include <math.h>

#include "api_util.h"
#include "emdpo/experimental.h"

#define P 3
#define K 2

static const double theta_true[K * P] = {2.0, 0.0, -1.5, -2.0, 1.5, 1.0};
static const double eta_true[K] = {0.4, 0.6};

static emdpo_data *simulate(int64_t n, uint64_t seed) {
    emdpo_sim_spec s;
    emdpo_sim_spec_init(&s);
    s.pop = (emdpo_population){K, P, theta_true, eta_true, NULL};
    s.n_annotators = n;
    s.decisions = 4;
    s.items = 3;
    s.design = EMDPO_SIM_GAUSSIAN;
    s.seed = seed;
    emdpo_data *d = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, &diag), EMDPO_OK);
    return d;
}

static double dot(const double *a, const double *b) {
    double s = 0;
    for (int q = 0; q < P; q++) s += a[q] * b[q];
    return s;
}

/* log softmax over decision j's items of theta . x / t, at item `at`. */
static double log_softmax_at(const emdpo_data *d, int64_t j, const double *theta, double t, int at) {
    int64_t first;
    int n = emdpo_data_decision_items(d, j, &first);
    double u[16], m = -INFINITY, s = 0, x[P];
    for (int i = 0; i < n; i++) {
        emdpo_data_item_features(d, first + i, x, P);
        u[i] = dot(theta, x) / t;
        m = fmax(m, u[i]);
    }
    for (int i = 0; i < n; i++) s += exp(u[i] - m);
    return u[at] - m - log(s);
}

static void test_defaults(void) {
    emdpo_em_opts e;
    emdpo_em_opts_init(&e);
    CHECK(e.max_iter == 500 && e.tol == 1e-9 && e.patience == 0 && e.starts == 1 && e.seed == 1 &&
          e.init == EMDPO_INIT_KMEANS && e.progress == NULL && e.summary == NULL);
    emdpo_loglinear_opts o;
    emdpo_loglinear_opts_init(&o);
    CHECK(o.k == 2 && o.l2 == 0 && o.beta == 1 && o.em.max_iter == 500);
    CHECK(strcmp(emdpo_init_name(EMDPO_INIT_KMEANS_TOKENS), "kmeans-tokens") == 0 && emdpo_init_name(3) == NULL);
    CHECK(strcmp(emdpo_family_name(EMDPO_FAMILY_LLAMA), "llama") == 0 && emdpo_family_name(2) == NULL);
    CHECK(strcmp(emdpo_game_solver_name(EMDPO_GAME_LP), "lp") == 0 && emdpo_game_solver_name(2) == NULL);
}

static int progress_calls;
static void count_progress(void *ud, int start, int iter, double loglik, const double *eta, int k) {
    (void)start, (void)iter, (void)eta;
    CHECK(ud == &progress_calls && isfinite(loglik) && k == K);
    progress_calls++;
}

/* The E-step by hand from the fit's own theta and eta. */
static void check_estep(const emdpo_data *d, const emdpo_fit *f) {
    int64_t na = emdpo_data_n_annotators(d), nd = emdpo_data_n_decisions(d);
    double theta[K * P], eta[K], log_eta[K];
    CHECK_EQ_INT(emdpo_fit_theta(f, theta, K, P), EMDPO_OK);
    CHECK_EQ_INT(emdpo_fit_eta(f, eta, K), EMDPO_OK);
    for (int k = 0; k < K; k++) log_eta[k] = log(eta[k]);
    double *logp = malloc((size_t)nd * K * sizeof *logp), *gamma = malloc((size_t)na * K * sizeof *gamma);
    double *fit_gamma = malloc((size_t)na * K * sizeof *fit_gamma), *ll = malloc((size_t)na * sizeof *ll);
    for (int64_t j = 0; j < nd; j++)
        for (int k = 0; k < K; k++) logp[j * K + k] = log_softmax_at(d, j, theta + k * P, 1.0, 0);
    double loglik = 0, total = 0, max_dg = 0;
    CHECK_EQ_INT(emdpo_em_estep(d, K, logp, log_eta, gamma, ll, &loglik), EMDPO_OK);
    CHECK_EQ_INT(emdpo_fit_posterior(f, fit_gamma, na, K), EMDPO_OK);
    for (int64_t i = 0; i < na; i++) {
        int64_t first;
        int64_t m = emdpo_data_annotator_decisions(d, i, &first);
        double a[K], mx = -INFINITY, s = 0;
        for (int k = 0; k < K; k++) {
            a[k] = log_eta[k];
            for (int64_t j = first; j < first + m; j++) a[k] += logp[j * K + k];
            mx = fmax(mx, a[k]);
        }
        for (int k = 0; k < K; k++) s += exp(a[k] - mx);
        total += mx + log(s);
        CHECK_CLOSE(ll[i], mx + log(s), 1e-12);
        for (int k = 0; k < K; k++) {
            max_dg = fmax(max_dg, fabs(gamma[i * K + k] - exp(a[k] - mx) / s));
            max_dg = fmax(max_dg, fabs(gamma[i * K + k] - fit_gamma[i * K + k]));
        }
    }
    CHECK_MSG(max_dg < 1e-9, "posterior differs from the brute-force E-step by %g", max_dg);
    CHECK_CLOSE(loglik, total, 1e-12);
    CHECK_CLOSE(emdpo_fit_loglik(f), total, 1e-9);
    /* In-sample held-out log-likelihood is the fit's own. */
    double held;
    CHECK_EQ_INT(emdpo_fit_heldout_loglik(f, d, ll, &held, NULL), EMDPO_OK);
    CHECK_CLOSE(held, total, 1e-9);
    /* K = 0 and non-finite totals are refused. */
    CHECK_EQ_INT(emdpo_em_estep(d, 0, logp, log_eta, gamma, NULL, &loglik), EMDPO_ERR_INVALID_ARG);
    logp[0] = NAN;
    CHECK_EQ_INT(emdpo_em_estep(d, K, logp, log_eta, gamma, NULL, &loglik), EMDPO_ERR_NUMERIC);
    /* Criteria: npar = K p + K - 1. */
    int npar;
    double aic, bic, icl, aic2, bic2, icl2;
    CHECK_EQ_INT(emdpo_fit_criteria(f, &npar, &aic, &bic, &icl), EMDPO_OK);
    CHECK_EQ_INT(npar, K * P + K - 1);
    emdpo_em_criteria(emdpo_fit_loglik(f), fit_gamma, na, K, npar, &aic2, &bic2, &icl2);
    CHECK(aic == aic2 && bic == bic2 && icl == icl2);
    CHECK_CLOSE(aic, -2 * emdpo_fit_loglik(f) + 2 * npar, 1e-12);
    CHECK(icl >= bic);
    free(logp);
    free(gamma);
    free(fit_gamma);
    free(ll);
}

static void check_files(const emdpo_data *d, const emdpo_fit *f) {
    emdpo_diag diag;
    const char *dir = api_path("fit");
    CHECK_EQ_INT(emdpo_fit_write(f, dir, &diag), EMDPO_OK);
    CHECK(emdpo_fit_file_is(dir, EMDPO_FAMILY_LOGLINEAR) && !emdpo_fit_file_is(dir, EMDPO_FAMILY_LLAMA));
    emdpo_fit *r = NULL;
    CHECK_EQ_INT(emdpo_fit_read(dir, &r, &diag), EMDPO_OK);
    if (!r) return;
    CHECK(emdpo_fit_family(r) == EMDPO_FAMILY_LOGLINEAR && emdpo_fit_k(r) == K && emdpo_fit_p(r) == P);
    CHECK(emdpo_fit_loglik(r) == emdpo_fit_loglik(f));
    CHECK(emdpo_fit_iterations(r) == emdpo_fit_iterations(f) && emdpo_fit_converged(r) == emdpo_fit_converged(f));
    double a[K * P], b[K * P], ea[K], eb[K];
    emdpo_fit_theta(f, a, K, P);
    emdpo_fit_theta(r, b, K, P);
    CHECK(memcmp(a, b, sizeof a) == 0);
    emdpo_fit_eta(f, ea, K);
    emdpo_fit_eta(r, eb, K);
    CHECK(memcmp(ea, eb, sizeof ea) == 0);
    int nt = emdpo_fit_n_trace(f);
    CHECK(nt > 0 && nt == emdpo_fit_n_trace(r));
    double ta[1024], tb[1024];
    CHECK(nt <= 1024 && emdpo_fit_trace(f, ta, nt) == 0 && emdpo_fit_trace(r, tb, nt) == 0 &&
          memcmp(ta, tb, (size_t)nt * sizeof *ta) == 0);
    CHECK(emdpo_fit_source(r) && strcmp(emdpo_fit_source(r), dir) == 0 && strcmp(emdpo_fit_dir(r), dir) == 0);
    CHECK(emdpo_fit_source(f) == NULL);
    CHECK(emdpo_fit_data_path(r) == NULL || emdpo_fit_data_path(r)[0] == '/');
    /* Its posterior is posterior.csv's to read; its settings are the file's. */
    double gamma[2];
    CHECK_EQ_INT(emdpo_fit_posterior(r, gamma, emdpo_fit_n_annotators(r), K), EMDPO_ERR_UNSUPPORTED);
    emdpo_em_opts read_opts, fit_opts;
    emdpo_fit_em_opts(r, &read_opts);
    emdpo_fit_em_opts(f, &fit_opts);
    CHECK(read_opts.starts == fit_opts.starts && read_opts.seed == fit_opts.seed && read_opts.init == fit_opts.init);
    /* A fit read from a file has nothing more to write. */
    CHECK_EQ_INT(emdpo_fit_write(r, api_path("again"), &diag), EMDPO_ERR_UNSUPPORTED);
    emdpo_fit_free(r);

    /* posterior.csv: the posterior, bit for bit, under the data's ids. */
    emdpo_posterior *post = NULL;
    CHECK_EQ_INT(emdpo_posterior_read(api_path("fit/posterior.csv"), K, &post, &diag), EMDPO_OK);
    int64_t na = emdpo_data_n_annotators(d);
    double *g = malloc((size_t)na * K * sizeof *g);
    emdpo_fit_posterior(f, g, na, K);
    CHECK(post && emdpo_posterior_k(post) == K && emdpo_posterior_n(post) == na);
    int same = 1;
    for (int64_t i = 0; post && i < na; i++) {
        same &= strcmp(emdpo_posterior_annotator(post, i), emdpo_data_annotator(d, i)) == 0;
        same &= strcmp(emdpo_fit_annotator(f, i), emdpo_data_annotator(d, i)) == 0;
        for (int k = 0; k < K; k++) same &= emdpo_posterior_gamma(post, i, k) == g[i * K + k];
    }
    CHECK(same);
    CHECK(post && emdpo_posterior_find(post, emdpo_data_annotator(d, 5)) == 5 &&
          emdpo_posterior_find(post, "nobody") == -1);
    emdpo_posterior_free(post);
    CHECK_EQ_INT(emdpo_posterior_read(api_path("fit/posterior.csv"), 3, &post, &diag), EMDPO_ERR_PARSE);

    /* Its gamma_2 column as per-decision weights. */
    int64_t nd = emdpo_data_n_decisions(d);
    double *w = malloc((size_t)nd * sizeof *w);
    CHECK_EQ_INT(emdpo_weights_read(api_path("fit/posterior.csv"), "gamma_2", d, nd, w, &diag), EMDPO_OK);
    int ok = 1;
    for (int64_t j = 0; j < nd; j++) ok &= w[j] == g[emdpo_data_decision_annotator(d, j) * K + 1];
    CHECK(ok);
    CHECK_EQ_INT(emdpo_weights_read(api_path("fit/posterior.csv"), "gamma_9", d, nd, w, &diag), EMDPO_ERR_PARSE);
    const char *plain = api_write("w.csv", "weight\n1\n0.5\n");
    CHECK_EQ_INT(emdpo_weights_read(plain, NULL, NULL, 2, w, &diag), EMDPO_OK);
    CHECK(w[0] == 1 && w[1] == 0.5);
    CHECK_EQ_INT(emdpo_weights_read(plain, NULL, NULL, 3, w, &diag), EMDPO_ERR_PARSE);
    const char *neg = api_write("n.csv", "weight\n-1\n");
    CHECK_EQ_INT(emdpo_weights_read(neg, NULL, NULL, 1, w, &diag), EMDPO_ERR_PARSE);
    CHECK(diag.line == 2);
    free(w);
    free(g);

    /* Broken fit files name the file and what is wrong. */
    const char *bad = api_write("bad.json", "{\"family\": \"loglinear\",\n \"k\": 2,\n \"eta\": [1]\n}\n");
    CHECK_EQ_INT(emdpo_fit_read(bad, &r, &diag), EMDPO_ERR_PARSE);
    CHECK(r == NULL && strstr(diag.msg, "eta") && strstr(diag.file, "bad.json"));
    const char *notjson = api_write("nj.json", "{\"family\": \"loglinear\",\n \"k\": 2,\n oops}\n");
    CHECK_EQ_INT(emdpo_fit_read(notjson, &r, &diag), EMDPO_ERR_PARSE);
    CHECK(diag.line == 3);
    const char *nofam = api_write("nf.json", "{\"k\": 2}\n");
    CHECK_EQ_INT(emdpo_fit_read(nofam, &r, &diag), EMDPO_ERR_PARSE);
    CHECK_EQ_INT(emdpo_fit_read(api_path("missing"), &r, &diag), EMDPO_ERR_IO);
}

/* L[a][b] = mean over decisions of E_{y ~ pi_b}[beta log(pi_a(y) n)],
 * pi_k = softmax(theta_k . x / beta). */
static void check_cross_rewards(const emdpo_data *d, const emdpo_fit *f) {
    const double beta = 0.5;
    double theta[K * P], L[K * K], want[K * K] = {0};
    emdpo_fit_theta(f, theta, K, P);
    CHECK_EQ_INT(emdpo_fit_cross_rewards(f, d, beta, L, NULL), EMDPO_OK);
    int64_t nd = emdpo_data_n_decisions(d);
    for (int64_t j = 0; j < nd; j++) {
        int n = emdpo_data_decision_items(d, j, NULL);
        for (int a = 0; a < K; a++)
            for (int b = 0; b < K; b++)
                for (int i = 0; i < n; i++) {
                    double pb = exp(log_softmax_at(d, j, theta + b * P, beta, i));
                    want[a * K + b] += pb * beta * (log_softmax_at(d, j, theta + a * P, beta, i) + log(n)) / (double)nd;
                }
    }
    for (int i = 0; i < K * K; i++) CHECK_CLOSE(L[i], want[i], 1e-10);

    /* MMRA-AE over the fit: no compared policy has a smaller worst case. */
    emdpo_aggregate_opts o;
    emdpo_aggregate_opts_init(&o);
    o.solver = EMDPO_GAME_LP;
    emdpo_aggregate *a = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_loglinear_aggregate(f, d, &o, &a, &diag), EMDPO_OK);
    if (!a) return;
    CHECK_EQ_INT(emdpo_aggregate_k(a), K);
    CHECK_EQ_INT(emdpo_aggregate_n_rows(a), K + 3);
    const emdpo_regret_row *mm = emdpo_aggregate_row(a, 0);
    CHECK(strcmp(mm->name, "MMRA-AE") == 0 && mm->has_w);
    CHECK_CLOSE(mm->w[0] + mm->w[1], 1.0, 1e-12);
    for (int r = 1; r < emdpo_aggregate_n_rows(a); r++)
        CHECK(mm->max_regret <= emdpo_aggregate_row(a, r)->max_regret + 1e-9);
    CHECK(emdpo_aggregate_row(a, K + 3) == NULL);
    emdpo_zerosum_result h, lp;
    emdpo_aggregate_games(a, &h, &lp);
    CHECK_CLOSE(lp.value, mm->max_regret, 1e-9);
    CHECK(h.gap <= 1e-3 && emdpo_aggregate_n_decisions(a) == nd && !emdpo_aggregate_sampled(a));
    CHECK_EQ_INT(emdpo_aggregate_save(a, api_path("agg"), &diag), EMDPO_OK);
    CHECK(access(api_path("agg/aggregate.json"), F_OK) == 0);
    emdpo_aggregate_free(a);
    o.solver = (emdpo_game_solver)2;
    CHECK_EQ_INT(emdpo_loglinear_aggregate(f, d, &o, &a, &diag), EMDPO_ERR_INVALID_ARG);
}

static void test_fit(void) {
    emdpo_data *d = simulate(600, 3);
    if (!d) return;
    emdpo_loglinear_opts o;
    emdpo_loglinear_opts_init(&o);
    o.k = K;
    o.em.starts = 2;
    o.em.progress = count_progress;
    o.em.progress_ud = &progress_calls;
    emdpo_fit *f = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_loglinear_fit(d, &o, &f, &diag), EMDPO_OK);
    if (!f) return;
    CHECK(progress_calls > 0);
    CHECK(emdpo_fit_family(f) == EMDPO_FAMILY_LOGLINEAR && emdpo_fit_k(f) == K && emdpo_fit_starts(f) == 2);
    CHECK(emdpo_fit_n_annotators(f) == 600 && emdpo_fit_n_decisions(f) == 2400 && emdpo_fit_n_items(f) == 7200);
    CHECK(emdpo_fit_converged(f) == 1 && emdpo_fit_n_empty(f) == 0 && emdpo_fit_beta(f) == 1.0);
    CHECK(emdpo_fit_best_start(f) >= 0 && emdpo_fit_best_start(f) < 2 && emdpo_fit_elapsed(f) >= 0);
    double starts[2];
    CHECK_EQ_INT(emdpo_fit_start_logliks(f, starts, 2), EMDPO_OK);
    CHECK(fmax(starts[0], starts[1]) == emdpo_fit_loglik(f));
    /* Log-linear EM never falls. */
    int nt = emdpo_fit_n_trace(f);
    double tr[1024];
    CHECK(nt > 1 && nt <= 1024 && emdpo_fit_trace(f, tr, nt) == 0);
    int rising = 1;
    for (int t = 1; t < nt; t++) rising &= tr[t] >= tr[t - 1] - 1e-9 * fabs(tr[t - 1]);
    CHECK(rising);
    /* The true types, up to their order. */
    double theta[K * P], eta[K];
    emdpo_fit_theta(f, theta, K, P);
    emdpo_fit_eta(f, eta, K);
    int swap = theta[0] < 0;
    double err = 0;
    for (int k = 0; k < K; k++) {
        int t = swap ? 1 - k : k;
        for (int q = 0; q < P; q++) err = fmax(err, fabs(theta[k * P + q] - theta_true[t * P + q]));
        CHECK_CLOSE(eta[k], eta_true[t], 0.08);
    }
    CHECK_MSG(err < 0.6, "theta error %g", err);
    CHECK_EQ_INT(emdpo_fit_eta(f, eta, K + 1), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_fit_theta(f, theta, K, P + 1), EMDPO_ERR_INVALID_ARG);
    emdpo_em_opts used;
    emdpo_fit_em_opts(f, &used);
    CHECK(used.starts == 2 && used.seed == 1 && used.progress == NULL);

    /* Standard errors: none before, positive after. */
    double se[K * P], se_eta[K];
    CHECK_EQ_INT(emdpo_fit_se(f, se, se_eta), EMDPO_ERR_UNSUPPORTED);
    CHECK_EQ_INT(emdpo_fit_compute_se(f, d, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_fit_se(f, se, se_eta), EMDPO_OK);
    int pos = 1;
    for (int i = 0; i < K * P; i++) pos &= se[i] > 0 && se[i] < 1;
    CHECK(pos && se_eta[0] > 0);

    check_estep(d, f);
    check_files(d, f);
    check_cross_rewards(d, f);

    /* Same seed and threads: the same bits. */
    emdpo_fit *g = NULL;
    o.em.progress = NULL;
    CHECK_EQ_INT(emdpo_loglinear_fit(d, &o, &g, NULL), EMDPO_OK);
    CHECK(g && emdpo_fit_loglik(g) == emdpo_fit_loglik(f));
    emdpo_fit_free(g);

    /* K = 1: one type with all the weight. */
    o.k = 1;
    CHECK_EQ_INT(emdpo_loglinear_fit(d, &o, &g, NULL), EMDPO_OK);
    double one[1], *gam = malloc(600 * sizeof *gam);
    CHECK(g && emdpo_fit_eta(g, one, 1) == 0 && one[0] == 1.0);
    CHECK(g && emdpo_fit_posterior(g, gam, 600, 1) == 0 && gam[0] == 1.0 && gam[599] == 1.0);
    CHECK(g && emdpo_fit_loglik(g) < emdpo_fit_loglik(f));
    free(gam);
    emdpo_fit_free(g);

    /* Refused options. */
    int bad_k[] = {0, -1, EMDPO_MAX_K + 1};
    for (size_t i = 0; i < sizeof bad_k / sizeof bad_k[0]; i++) {
        o.k = bad_k[i];
        g = (emdpo_fit *)1;
        CHECK_EQ_INT(emdpo_loglinear_fit(d, &o, &g, &diag), EMDPO_ERR_INVALID_ARG);
        CHECK(g == NULL);
    }
    o.k = 2;
    o.l2 = NAN;
    CHECK_EQ_INT(emdpo_loglinear_fit(d, &o, &g, &diag), EMDPO_ERR_INVALID_ARG);
    o.l2 = 0;
    o.beta = 0;
    CHECK_EQ_INT(emdpo_loglinear_fit(d, &o, &g, &diag), EMDPO_ERR_INVALID_ARG);
    o.beta = 1;
    o.em.starts = 0;
    CHECK_EQ_INT(emdpo_loglinear_fit(d, &o, &g, &diag), EMDPO_ERR_INVALID_ARG);
    o.em.starts = 1;
    o.em.init = EMDPO_INIT_KMEANS_TOKENS;
    CHECK_EQ_INT(emdpo_loglinear_fit(d, &o, &g, &diag), EMDPO_ERR_UNSUPPORTED);
    o.em.init = EMDPO_INIT_KMEANS;
    CHECK_EQ_INT(emdpo_loglinear_fit(NULL, &o, &g, &diag), EMDPO_ERR_INVALID_ARG);
    const char *txt = api_write("t.jsonl", "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n");
    emdpo_data *t = NULL;
    CHECK_EQ_INT(emdpo_data_read(txt, EMDPO_FORMAT_AUTO, &t, NULL), EMDPO_OK);
    CHECK_EQ_INT(emdpo_loglinear_fit(t, &o, &g, &diag), EMDPO_ERR_UNSUPPORTED);
    emdpo_data_free(t);
    emdpo_fit_free(NULL);
    emdpo_fit_free(f);
    emdpo_data_free(d);
}

static void test_select(void) {
    emdpo_data *d = simulate(400, 5);
    emdpo_select_opts o;
    emdpo_select_opts_init(&o);
    CHECK(o.k_min == 1 && o.k_max == 6 && o.holdout == 0.2 && o.fit.em.starts == 3);
    o.k_max = 3;
    o.fit.em.starts = 1;
    emdpo_select *s = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_select_run(d, &o, &s, &diag), EMDPO_OK);
    if (s) {
        CHECK(emdpo_select_n_rows(s) == 3 && emdpo_select_n_train(s) == 320 && emdpo_select_n_heldout(s) == 80);
        emdpo_select_row r1, r2;
        CHECK(emdpo_select_row_at(s, 0, &r1) == 0 && emdpo_select_row_at(s, 1, &r2) == 0);
        CHECK(r1.k == 1 && r2.k == 2 && r2.loglik > r1.loglik && r2.heldout > r1.heldout);
        CHECK(emdpo_select_row_at(s, 3, &r1) == EMDPO_ERR_INVALID_ARG);
        emdpo_select_row_at(s, emdpo_select_best_bic(s), &r1);
        CHECK_EQ_INT(r1.k, 2);
        CHECK_EQ_INT(emdpo_select_save(s, api_path("sel"), &diag), EMDPO_OK);
        CHECK(access(api_path("sel/select.json"), F_OK) == 0);
    }
    emdpo_select_free(s);
    o.k_min = 4;
    CHECK_EQ_INT(emdpo_select_run(d, &o, &s, &diag), EMDPO_ERR_INVALID_ARG);
    o.k_min = 1;
    o.holdout = 1.5;
    CHECK_EQ_INT(emdpo_select_run(d, &o, &s, &diag), EMDPO_ERR_INVALID_ARG);
    emdpo_select_free(NULL);
    emdpo_data_free(d);
}

static void test_games(void) {
    /* Matching pennies: value 0 at (1/2, 1/2) for both. */
    double R[4] = {1, -1, -1, 1}, w[3], p[4];
    emdpo_zerosum_result res;
    CHECK_EQ_INT(emdpo_zerosum_lp(R, 2, 2, w, p, &res), EMDPO_OK);
    CHECK_CLOSE(res.value, 0, 1e-12);
    CHECK_CLOSE(w[0], 0.5, 1e-12);
    CHECK_CLOSE(p[0], 0.5, 1e-12);
    /* Hedge reaches the LP's value within its certificate. */
    double G[12] = {0.3, -1, 2, 0.5, 1, -0.2, -0.7, 0.4, 0.9, 1.5, -1.1, 0.1};
    emdpo_zerosum_result lp, hr, ev;
    CHECK_EQ_INT(emdpo_zerosum_lp(G, 4, 3, w, p, &lp), EMDPO_OK);
    emdpo_zerosum_eval(G, 4, 3, w, p, &ev);
    CHECK_CLOSE(ev.upper, lp.value, 1e-9);
    CHECK_CLOSE(ev.lower, lp.value, 1e-9);
    emdpo_mmra_hedge_opts ho;
    emdpo_mmra_hedge_opts_init(&ho);
    CHECK(ho.max_iter == 100000 && ho.eta <= 0 && ho.rel_tol == 1e-4);
    CHECK_EQ_INT(emdpo_mmra_hedge(G, 4, 3, &ho, w, p, &hr), EMDPO_OK);
    CHECK(hr.lower <= lp.value + 1e-9 && lp.value <= hr.upper + 1e-9 && hr.gap <= 1e-4 * 3.2 + 1e-12);
    ho.max_iter = 3;
    CHECK_EQ_INT(emdpo_mmra_hedge(G, 4, 3, &ho, w, p, &hr), EMDPO_ERR_NOT_CONVERGED);
    ho.max_iter = 0;
    CHECK_EQ_INT(emdpo_mmra_hedge(G, 4, 3, &ho, w, p, &hr), EMDPO_ERR_INVALID_ARG);
    G[5] = INFINITY;
    CHECK_EQ_INT(emdpo_zerosum_lp(G, 4, 3, w, p, &lp), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_zerosum_lp(G, 0, 3, w, p, &lp), EMDPO_ERR_INVALID_ARG);

    /* The regret matrix and mixture regrets from L. */
    double L[4] = {1.0, 0.2, -0.5, 0.8}, M[6], reg[2], mw[2] = {0.25, 0.75};
    emdpo_mmra_regret_matrix(2, L, M);
    CHECK(M[0] == 0 && M[1] == 0 && M[2] == 0 && M[3] == 0.8 && M[4] == 1.3 && M[5] == 0);
    emdpo_mmra_mixture_regret(2, L, mw, reg);
    CHECK_CLOSE(reg[0], 0.75 * 0.8, 1e-15);
    CHECK_CLOSE(reg[1], 0.25 * 1.3, 1e-15);
    CHECK_EQ_INT(emdpo_mmra_ae(2, L, EMDPO_GAME_LP, NULL, w, &res), EMDPO_OK);
    emdpo_mmra_mixture_regret(2, L, w, reg);
    CHECK_CLOSE(fmax(reg[0], reg[1]), res.upper, 1e-9);
    CHECK_CLOSE(reg[0], reg[1], 1e-9); /* the min-max equalises the two regrets here */
}

int main(void) {
    api_init();
    emdpo_set_threads(2);
    test_defaults();
    test_fit();
    test_select();
    test_games();
    api_done();
    return check_report("test_api_em");
}
