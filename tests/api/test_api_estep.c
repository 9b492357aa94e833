/* EM-DPO around any trainer, through the shared library (emdpo/em.h,
 * emdpo/mmra.h): the E-step on ragged log-ratios against a brute force
 * (products of probabilities in long double on small cases, log space in
 * long double on large ones), the same bits for any thread count, decision
 * order and row stride; a log-linear fit's posterior reproduced from its
 * log-ratios; the weights; the files (JSONL and CSV read alike, what
 * emdpo_estep_save writes read back); the margin criterion and MMRA-AE on
 * a given regret matrix against MMRA-AE from L; and the documented errors. */
#include <math.h>
#include <stdint.h>

#include "api_util.h"
#include "emdpo/experimental.h"

/* A small deterministic generator for the cases. */
static uint64_t rng_state = 88172645463325252ULL;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* A ragged case: n_dec decisions of 2..max_items items over n_annot
 * annotators (interleaved), some rankings. */
typedef struct ecase {
    int K;
    int64_t n_dec, n_annot, n_items;
    double *lr;              /* (K, n_items) */
    int64_t *off, *ann;
    unsigned char *rank;
} ecase;

static ecase make_case(int K, int64_t n_dec, int64_t n_annot, int max_items, double scale) {
    ecase c = {K, n_dec, n_annot, 0, NULL, NULL, NULL, NULL};
    c.off = malloc((size_t)(n_dec + 1) * sizeof(int64_t));
    c.ann = malloc((size_t)n_dec * sizeof(int64_t));
    c.rank = malloc((size_t)n_dec);
    c.off[0] = 0;
    for (int64_t j = 0; j < n_dec; j++) {
        int n = 2 + (int)(urand() * (max_items - 1));
        c.off[j + 1] = c.off[j] + n;
        c.ann[j] = j < n_annot ? j : (int64_t)(urand() * (double)n_annot);
        c.rank[j] = urand() < 0.25;
    }
    c.n_items = c.off[n_dec];
    c.lr = malloc((size_t)K * (size_t)c.n_items * sizeof(double));
    for (int64_t q = 0; q < K * c.n_items; q++) c.lr[q] = scale * (2.0 * urand() - 1.0);
    return c;
}

static void free_case(ecase *c) {
    free(c->lr);
    free(c->off);
    free(c->ann);
    free(c->rank);
}

/* Decision j's log P_k in long double, straight from the definition. */
static long double brute_logp(const ecase *c, int64_t j, int k, double beta) {
    const double *x = c->lr + (size_t)k * (size_t)c->n_items + c->off[j];
    int n = (int)(c->off[j + 1] - c->off[j]), stages = c->rank[j] ? n - 1 : 1;
    long double lp = 0;
    for (int t = 0; t < stages; t++) {
        long double z = 0;
        for (int q = t; q < n; q++) z += expl((long double)beta * x[q] - (long double)beta * x[t]);
        lp -= logl(z);
    }
    return lp;
}

/* gamma and loglik by products of probabilities (small cases). */
static void brute_products(const ecase *c, double beta, const double *eta, long double *gamma, long double *ll) {
    *ll = 0;
    for (int64_t i = 0; i < c->n_annot; i++) {
        long double p[EMDPO_MAX_K], tot = 0;
        for (int k = 0; k < c->K; k++) {
            p[k] = eta[k];
            for (int64_t j = 0; j < c->n_dec; j++)
                if (c->ann[j] == i) p[k] *= expl(brute_logp(c, j, k, beta));
            tot += p[k];
        }
        for (int k = 0; k < c->K; k++) gamma[i * c->K + k] = p[k] / tot;
        *ll += logl(tot);
    }
}

/* The same in log space (large cases, where the products underflow double). */
static void brute_logspace(const ecase *c, double beta, const double *eta, long double *gamma, long double *ll) {
    long double *s = calloc((size_t)c->n_annot * c->K, sizeof(long double));
    for (int64_t j = 0; j < c->n_dec; j++)
        for (int k = 0; k < c->K; k++) s[c->ann[j] * c->K + k] += brute_logp(c, j, k, beta);
    *ll = 0;
    for (int64_t i = 0; i < c->n_annot; i++) {
        long double m = -INFINITY, tot = 0;
        for (int k = 0; k < c->K; k++) {
            s[i * c->K + k] += logl(eta[k]);
            if (s[i * c->K + k] > m) m = s[i * c->K + k];
        }
        for (int k = 0; k < c->K; k++) tot += expl(s[i * c->K + k] - m);
        for (int k = 0; k < c->K; k++) gamma[i * c->K + k] = expl(s[i * c->K + k] - m) / tot;
        *ll += m + logl(tot);
    }
    free(s);
}

static double max_abs_diff(const double *a, const long double *b, int64_t n) {
    double m = 0;
    for (int64_t q = 0; q < n; q++) m = fmax(m, fabs(a[q] - (double)b[q]));
    return m;
}

static int run(const ecase *c, double beta, const double *eta, double *gamma, double *eta_new, double *ll) {
    return emdpo_estep(c->K, c->n_dec, c->lr, c->n_items, c->off, c->rank, c->ann, c->n_annot, beta, eta, gamma,
                       eta_new, ll, NULL);
}

static void test_brute_force(void) {
    double eta[3] = {0.5, 0.3, 0.2};
    /* small: products of probabilities */
    ecase c = make_case(3, 40, 9, 5, 2.0);
    double gamma[9 * 3], en[3], ll;
    long double bg[9 * 3], bll;
    CHECK_EQ_INT(run(&c, 1.7, eta, gamma, en, &ll), EMDPO_OK);
    brute_products(&c, 1.7, eta, bg, &bll);
    CHECK_MSG(max_abs_diff(gamma, bg, 27) < 1e-13, "gamma off by %g", max_abs_diff(gamma, bg, 27));
    CHECK_CLOSE(ll, (double)bll, 1e-13);
    for (int k = 0; k < 3; k++) {
        double m = 0;
        for (int i = 0; i < 9; i++) m += gamma[i * 3 + k];
        CHECK_CLOSE(en[k], m / 9, 1e-15);
    }
    free_case(&c);
    /* large: 3000 decisions of 30 annotators, products far below double's range */
    ecase L = make_case(4, 3000, 30, 4, 3.0);
    double eta4[4] = {0.1, 0.2, 0.3, 0.4}, g4[30 * 4], ll4;
    long double b4[30 * 4], bll4;
    CHECK_EQ_INT(run(&L, 2.5, eta4, g4, NULL, &ll4), EMDPO_OK);
    brute_logspace(&L, 2.5, eta4, b4, &bll4);
    CHECK_MSG(max_abs_diff(g4, b4, 120) < 1e-11, "gamma off by %g", max_abs_diff(g4, b4, 120));
    CHECK_CLOSE(ll4, (double)bll4, 1e-12);
    CHECK(ll4 < -2000); /* exp(loglik) of an annotator underflows: log space was needed */
    /* uniform eta by NULL; an empty type gets gamma 0 */
    double g5[30 * 4], zero[4] = {0.5, 0.0, 0.25, 0.25};
    CHECK_EQ_INT(run(&L, 2.5, zero, g5, NULL, NULL), EMDPO_OK);
    int zero_ok = 1;
    for (int i = 0; i < 30; i++) zero_ok &= g5[i * 4 + 1] == 0.0;
    CHECK(zero_ok);
    double quarter[4] = {0.25, 0.25, 0.25, 0.25}, g6[30 * 4], g7[30 * 4];
    CHECK_EQ_INT(run(&L, 2.5, NULL, g6, NULL, NULL), EMDPO_OK);
    CHECK_EQ_INT(run(&L, 2.5, quarter, g7, NULL, NULL), EMDPO_OK);
    CHECK(memcmp(g6, g7, sizeof g6) == 0);
    free_case(&L);
}

/* The same bits: 1 or 2 threads; decisions grouped by annotator or
 * interleaved (each annotator's own order kept); a column slice of a
 * wider array. */
static void test_same_bits(void) {
    ecase c = make_case(3, 60000, 5000, 4, 2.0);
    size_t gn = (size_t)c.n_annot * 3;
    double *g1 = malloc(gn * sizeof(double)), *g2 = malloc(gn * sizeof(double)), en1[3], en2[3], l1, l2;
    emdpo_set_threads(1);
    CHECK_EQ_INT(run(&c, 1.3, NULL, g1, en1, &l1), EMDPO_OK);
    emdpo_set_threads(2);
    CHECK_EQ_INT(run(&c, 1.3, NULL, g2, en2, &l2), EMDPO_OK);
    CHECK(memcmp(g1, g2, gn * sizeof(double)) == 0 && memcmp(en1, en2, sizeof en1) == 0 && l1 == l2);
    /* grouped: a stable sort of the decisions by annotator */
    ecase s = c;
    s.lr = malloc((size_t)3 * c.n_items * sizeof(double));
    s.off = malloc((size_t)(c.n_dec + 1) * sizeof(int64_t));
    s.ann = malloc((size_t)c.n_dec * sizeof(int64_t));
    s.rank = malloc((size_t)c.n_dec);
    int64_t j2 = 0, q2 = 0;
    s.off[0] = 0;
    for (int64_t a = 0; a < c.n_annot; a++)
        for (int64_t j = 0; j < c.n_dec; j++) {
            if (c.ann[j] != a) continue;
            int64_t n = c.off[j + 1] - c.off[j];
            for (int k = 0; k < 3; k++)
                memcpy(s.lr + k * c.n_items + q2, c.lr + k * c.n_items + c.off[j], (size_t)n * sizeof(double));
            s.ann[j2] = a;
            s.rank[j2] = c.rank[j];
            q2 += n;
            s.off[++j2] = q2;
        }
    CHECK_EQ_INT(run(&s, 1.3, NULL, g2, en2, &l2), EMDPO_OK);
    CHECK(memcmp(g1, g2, gn * sizeof(double)) == 0 && l1 == l2);
    /* a slice: the items in columns 7.. of rows of length n_items + 20 */
    int64_t ld = c.n_items + 20;
    double *wide = malloc((size_t)3 * ld * sizeof(double));
    int64_t *off7 = malloc((size_t)(c.n_dec + 1) * sizeof(int64_t));
    for (int k = 0; k < 3; k++) memcpy(wide + k * ld + 7, c.lr + k * c.n_items, (size_t)c.n_items * sizeof(double));
    for (int64_t j = 0; j <= c.n_dec; j++) off7[j] = c.off[j] + 7;
    CHECK_EQ_INT(emdpo_estep(3, c.n_dec, wide, ld, off7, c.rank, c.ann, c.n_annot, 1.3, NULL, g2, NULL, &l2, NULL),
                 EMDPO_OK);
    CHECK(memcmp(g1, g2, gn * sizeof(double)) == 0 && l1 == l2);
    free(wide);
    free(off7);
    free_case(&s);
    free_case(&c);
    free(g1);
    free(g2);
}

/* A log-linear fit's utilities are theta_k . x = beta * log-ratio: its
 * log-ratios through emdpo_estep give back its posterior and
 * log-likelihood. */
static void check_fit_reproduced(emdpo_sim_response response, double beta) {
    static const double theta[2 * 3] = {2.0, 0.0, -1.5, -2.0, 1.5, 1.0};
    static const double eta_true[2] = {0.4, 0.6};
    emdpo_sim_spec s;
    emdpo_sim_spec_init(&s);
    s.pop = (emdpo_population){2, 3, theta, eta_true, NULL};
    s.n_annotators = 600;
    s.decisions = 4;
    s.items = 3;
    s.response = response;
    s.design = EMDPO_SIM_GAUSSIAN;
    s.seed = 5;
    emdpo_data *d = NULL;
    emdpo_fit *f = NULL;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_OK);
    emdpo_loglinear_opts o;
    emdpo_loglinear_opts_init(&o);
    o.beta = beta;
    CHECK_EQ_INT(emdpo_loglinear_fit(d, &o, &f, NULL), EMDPO_OK);
    int64_t n_dec = emdpo_data_n_decisions(d), n_items = emdpo_data_n_items(d), n_annot = emdpo_data_n_annotators(d);
    double th[6], eta[2], *lr = malloc((size_t)2 * n_items * sizeof(double));
    int64_t *off = malloc((size_t)(n_dec + 1) * sizeof(int64_t)), *ann = malloc((size_t)n_dec * sizeof(int64_t));
    unsigned char *rank = malloc((size_t)n_dec);
    CHECK_EQ_INT(emdpo_fit_theta(f, th, 2, 3), EMDPO_OK);
    CHECK_EQ_INT(emdpo_fit_eta(f, eta, 2), EMDPO_OK);
    CHECK(emdpo_fit_beta(f) == beta);
    for (int64_t i = 0; i < n_items; i++) {
        double x[3];
        emdpo_data_item_features(d, i, x, 3);
        for (int k = 0; k < 2; k++) lr[k * n_items + i] = (th[k * 3] * x[0] + th[k * 3 + 1] * x[1] + th[k * 3 + 2] * x[2]) / beta;
    }
    for (int64_t j = 0; j < n_dec; j++) {
        int n = emdpo_data_decision_items(d, j, &off[j]);
        off[j + 1] = off[j] + n;
        ann[j] = emdpo_data_decision_annotator(d, j);
        rank[j] = emdpo_data_decision_stages(d, j) == n - 1 && n > 2;
    }
    double *g = malloc((size_t)n_annot * 2 * sizeof(double)), *fg = malloc((size_t)n_annot * 2 * sizeof(double)), ll;
    CHECK_EQ_INT(emdpo_estep(2, n_dec, lr, n_items, off, rank, ann, n_annot, beta, eta, g, NULL, &ll, NULL), EMDPO_OK);
    CHECK_EQ_INT(emdpo_fit_posterior(f, fg, n_annot, 2), EMDPO_OK);
    double worst = 0;
    for (int64_t q = 0; q < n_annot * 2; q++) worst = fmax(worst, fabs(g[q] - fg[q]));
    CHECK_MSG(worst <= 1e-12, "posterior differs from the fit's by %g", worst);
    CHECK_CLOSE(ll, emdpo_fit_loglik(f), 1e-12);
    free(lr);
    free(off);
    free(ann);
    free(rank);
    free(g);
    free(fg);
    emdpo_fit_free(f);
    emdpo_data_free(d);
}

static void test_weights(void) {
    ecase c = make_case(2, 50, 7, 3, 1.0);
    double g[14], w[100], wn[100];
    CHECK_EQ_INT(run(&c, 1.0, NULL, g, NULL, NULL), EMDPO_OK);
    CHECK_EQ_INT(emdpo_estep_weights(2, 50, c.ann, 7, g, 0, w, NULL), EMDPO_OK);
    CHECK_EQ_INT(emdpo_estep_weights(2, 50, c.ann, 7, g, 1, wn, NULL), EMDPO_OK);
    int same = 1;
    double mean[2] = {0, 0};
    for (int j = 0; j < 50; j++)
        for (int k = 0; k < 2; k++) {
            same &= w[j * 2 + k] == g[c.ann[j] * 2 + k];
            mean[k] += wn[j * 2 + k] / 50;
        }
    CHECK(same);
    CHECK_CLOSE(mean[0], 1.0, 1e-14);
    CHECK_CLOSE(mean[1], 1.0, 1e-14);
    CHECK_CLOSE(wn[0] / w[0], wn[2] / w[2], 1e-14); /* one scale per type */
    double bad[14];
    memcpy(bad, g, sizeof bad);
    bad[3] = -0.1;
    CHECK_EQ_INT(emdpo_estep_weights(2, 50, c.ann, 7, bad, 0, w, NULL), EMDPO_ERR_INVALID_ARG);
    free_case(&c);
}

static void expect_err(int rc, int want, const emdpo_diag *d, const char *needle) {
    CHECK_EQ_INT(rc, want);
    CHECK_MSG(strstr(d->msg, needle) != NULL, "diag '%s' lacks '%s'", d->msg, needle);
}

static void test_errors(void) {
    ecase c = make_case(2, 10, 3, 3, 1.0);
    double g[6], eta[2] = {0.5, 0.4};
    emdpo_diag d;
    expect_err(emdpo_estep(0, 10, c.lr, c.n_items, c.off, NULL, c.ann, 3, 1, NULL, g, NULL, NULL, &d),
               EMDPO_ERR_INVALID_ARG, &d, "K = 0");
    expect_err(emdpo_estep(2, 10, c.lr, c.n_items, c.off, NULL, c.ann, 3, 0, NULL, g, NULL, NULL, &d),
               EMDPO_ERR_INVALID_ARG, &d, "beta");
    expect_err(emdpo_estep(2, 10, c.lr, c.n_items, c.off, NULL, c.ann, 3, 1, eta, g, NULL, NULL, &d),
               EMDPO_ERR_INVALID_ARG, &d, "eta sums to");
    eta[0] = -0.4, eta[1] = 1.4;
    expect_err(emdpo_estep(2, 10, c.lr, c.n_items, c.off, NULL, c.ann, 3, 1, eta, g, NULL, NULL, &d),
               EMDPO_ERR_INVALID_ARG, &d, "eta_1");
    expect_err(emdpo_estep(2, 10, c.lr, c.n_items - 1, c.off, NULL, c.ann, 3, 1, NULL, g, NULL, NULL, &d),
               EMDPO_ERR_INVALID_ARG, &d, "past the row");
    int64_t keep = c.ann[4];
    c.ann[4] = 3;
    expect_err(run(&c, 1, NULL, g, NULL, NULL), EMDPO_ERR_INVALID_ARG, &d, "");
    expect_err(emdpo_estep(2, 10, c.lr, c.n_items, c.off, NULL, c.ann, 3, 1, NULL, g, NULL, NULL, &d),
               EMDPO_ERR_INVALID_ARG, &d, "decision 4: annotator 3");
    c.ann[4] = keep;
    int64_t o2 = c.off[2];
    c.off[2] = c.off[1] + 1; /* decision 1 has one item */
    expect_err(emdpo_estep(2, 10, c.lr, c.n_items, c.off, NULL, c.ann, 3, 1, NULL, g, NULL, NULL, &d),
               EMDPO_ERR_INVALID_ARG, &d, "decision 1 has 1 items");
    c.off[2] = o2;
    c.lr[c.n_items + c.off[6] + 1] = NAN;
    expect_err(emdpo_estep(2, 10, c.lr, c.n_items, c.off, NULL, c.ann, 3, 1, NULL, g, NULL, NULL, &d),
               EMDPO_ERR_INVALID_ARG, &d, "decision 6 has a log-ratio that is not finite");
    c.lr[c.n_items + c.off[6] + 1] = -INFINITY;
    expect_err(emdpo_estep(2, 10, c.lr, c.n_items, c.off, NULL, c.ann, 3, 1, NULL, g, NULL, NULL, &d),
               EMDPO_ERR_INVALID_ARG, &d, "decision 6");
    c.lr[c.n_items + c.off[6] + 1] = 1e300; /* finite, but beta * it overflows the sums */
    expect_err(emdpo_estep(2, 10, c.lr, c.n_items, c.off, NULL, c.ann, 3, 1e10, NULL, g, NULL, NULL, &d),
               EMDPO_ERR_NUMERIC, &d, "not finite");
    free_case(&c);
}

/* The files: the same decisions as JSONL, CSV (rows shuffled within a
 * decision) read into the same arrays; emdpo_estep_save's files read back. */
static void test_files(void) {
    const char *jl = api_write("lr.jsonl", "{\"annotator\": \"u1\", \"logratios\": [[0.5, -0.25, 1], [2, 0, -1]]}\n"
                                           "\n"
                                           "{\"annotator\": 7, \"logratios\": [[1, 2], [3, 4]], \"ranking\": false}\n"
                                           "{\"annotator\": \"u1\", \"logratios\": [[0, 1, 2, 3], [3, 2, 1, 0]], "
                                           "\"ranking\": true, \"note\": \"extra keys are ignored\"}\n");
    const char *cs = api_write("lr.csv", "annotator,decision,type,item,logratio,ranking\n"
                                         "u1,d1,1,0,0.5,0\nu1,d1,2,0,2,0\nu1,d1,1,1,-0.25,0\nu1,d1,1,2,1,0\n"
                                         "u1,d1,2,1,0,0\nu1,d1,2,2,-1,0\n"
                                         "7,d2,1,0,1,0\n7,d2,1,1,2,0\n7,d2,2,0,3,0\n7,d2,2,1,4,0\n"
                                         "u1,d3,1,0,0,1\nu1,d3,1,1,1,1\nu1,d3,1,2,2,1\nu1,d3,1,3,3,1\n"
                                         "u1,d3,2,0,3,1\nu1,d3,2,1,2,1\nu1,d3,2,2,1,1\nu1,d3,2,3,0,1\n");
    emdpo_logratios *a = NULL, *b = NULL;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_logratios_read(jl, 0, &a, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_logratios_read(cs, 2, &b, &d), EMDPO_OK);
    CHECK(a && b && emdpo_logratios_k(a) == 2 && emdpo_logratios_n_decisions(a) == 3 &&
          emdpo_logratios_n_items(a) == 9 && emdpo_logratios_n_annotators(a) == 2);
    if (!a || !b) return;
    CHECK(emdpo_logratios_n_items(b) == 9 && emdpo_logratios_n_decisions(b) == 3);
    CHECK(memcmp(emdpo_logratios_values(a), emdpo_logratios_values(b), 18 * sizeof(double)) == 0);
    CHECK(memcmp(emdpo_logratios_offsets(a), emdpo_logratios_offsets(b), 4 * sizeof(int64_t)) == 0);
    CHECK(memcmp(emdpo_logratios_annotators(a), emdpo_logratios_annotators(b), 3 * sizeof(int64_t)) == 0);
    CHECK(memcmp(emdpo_logratios_ranking(a), emdpo_logratios_ranking(b), 3) == 0);
    CHECK(emdpo_logratios_values(a)[9 + 1] == 0.0 && emdpo_logratios_values(a)[5] == 0.0);
    CHECK(emdpo_logratios_ranking(a)[2] == 1 && emdpo_logratios_annotators(a)[2] == 0);
    CHECK(strcmp(emdpo_logratios_annotator_name(a, 1), "7") == 0 && !emdpo_logratios_annotator_name(a, 2));
    double g[4], en[2], ll, eta[2] = {0.25, 0.75};
    CHECK_EQ_INT(emdpo_estep(2, 3, emdpo_logratios_values(a), 9, emdpo_logratios_offsets(a), emdpo_logratios_ranking(a),
                             emdpo_logratios_annotators(a), 2, 0.5, eta, g, en, &ll, &d),
                 EMDPO_OK);
    const char *dir = api_path("estep_out");
    CHECK_EQ_INT(emdpo_estep_save(a, 0.5, eta, g, en, ll, 1, dir, &d), EMDPO_OK);
    emdpo_posterior *p = NULL;
    CHECK_EQ_INT(emdpo_posterior_read(api_path("estep_out/posterior.csv"), 2, &p, &d), EMDPO_OK);
    int same = p && emdpo_posterior_n(p) == 2;
    for (int i = 0; same && i < 2; i++)
        for (int k = 0; k < 2; k++) same &= emdpo_posterior_gamma(p, i, k) == g[i * 2 + k];
    CHECK(same);
    emdpo_posterior_free(p);
    /* weights.csv: one row per decision, normalised to mean 1 */
    FILE *fp = fopen(api_path("estep_out/weights.csv"), "r");
    char line[256], who[3][16];
    double w[3][2];
    CHECK(fp && fgets(line, sizeof line, fp) && strcmp(line, "annotator,weight_1,weight_2\n") == 0);
    int rows = 0;
    while (fp && rows < 3 && fscanf(fp, "%15[^,],%lf,%lf\n", who[rows], &w[rows][0], &w[rows][1]) == 3) rows++;
    if (fp) fclose(fp);
    CHECK_EQ_INT(rows, 3);
    CHECK(strcmp(who[0], "u1") == 0 && strcmp(who[1], "7") == 0 && strcmp(who[2], "u1") == 0);
    CHECK_CLOSE((w[0][0] + w[1][0] + w[2][0]) / 3, 1.0, 1e-15);
    CHECK(w[0][1] == w[2][1]);
    /* emdpo dpo --weights reads it: each annotator's rows go to its
     * decisions of the data, in order (the data groups u1's two) */
    const char *names[3] = {"u1", "7", "u1"};
    int nitems[3] = {3, 2, 4};
    double x[9] = {0};
    emdpo_data *dd = NULL;
    CHECK_EQ_INT(emdpo_data_from_arrays(1, 3, names, nitems, NULL, x, NULL, NULL, NULL, &dd, &d), EMDPO_OK);
    double wd[3];
    CHECK_EQ_INT(emdpo_weights_read(api_path("estep_out/weights.csv"), "weight_2", dd, 3, wd, &d), EMDPO_OK);
    CHECK(wd[0] == w[0][1] && wd[1] == w[2][1] && wd[2] == w[1][1]);
    CHECK_EQ_INT(emdpo_weights_read(api_path("estep_out/weights.csv"), NULL, NULL, 3, wd, &d), EMDPO_OK);
    CHECK(wd[0] == w[0][0] && wd[1] == w[1][0] && wd[2] == w[2][0]);
    CHECK_EQ_INT(emdpo_weights_read(api_path("estep_out/weights.csv"), "weight_3", dd, 3, wd, &d), EMDPO_ERR_PARSE);
    emdpo_data_free(dd);
    FILE *js = fopen(api_path("estep_out/estep.json"), "r");
    char text[2048] = "";
    size_t n = js ? fread(text, 1, sizeof text - 1, js) : 0;
    text[n] = 0;
    if (js) fclose(js);
    CHECK(strstr(text, "\"k\": 2") && strstr(text, "\"n_annotators\": 2") && strstr(text, "\"n_decisions\": 3") &&
          strstr(text, "\"eta_in\": [0.25, 0.75]") && strstr(text, "\"normalize\": true"));
    emdpo_logratios_free(a);
    emdpo_logratios_free(b);
}

static void expect_read_err(const char *name, const char *text, int k, long line, const char *needle) {
    emdpo_logratios *lr = NULL;
    emdpo_diag d;
    int rc = emdpo_logratios_read(api_write(name, text), k, &lr, &d);
    CHECK_MSG(rc == EMDPO_ERR_PARSE && !lr, "%s: %s", name, emdpo_status_name(rc));
    CHECK_MSG(d.line == line && strstr(d.msg, needle) && strstr(d.file, name), "%s: %s:%ld: %s", name, d.file, d.line,
              d.msg);
    emdpo_logratios_free(lr);
}

static void test_read_errors(void) {
    const char *ok = "{\"annotator\": \"a\", \"logratios\": [[0, 1], [1, 0]]}\n";
    char t[512];
    snprintf(t, sizeof t, "%s{\"annotator\": \"b\", \"logratios\": [[0, 1, 2], [1, 0]]}\n", ok);
    expect_read_err("ragged.jsonl", t, 0, 2, "ragged");
    snprintf(t, sizeof t, "%s%s{\"annotator\": \"b\", \"logratios\": [[0], [1]]}\n", ok, ok);
    expect_read_err("one.jsonl", t, 0, 3, "1 item");
    snprintf(t, sizeof t, "%s{\"annotator\": \"b\", \"logratios\": [[0, 1e999], [1, 0]]}\n", ok);
    expect_read_err("inf.jsonl", t, 0, 2, "JSON");
    snprintf(t, sizeof t, "%s{\"annotator\": \"b\", \"logratios\": [[0, 1], [1, 0], [2, 2]]}\n", ok);
    expect_read_err("types.jsonl", t, 0, 2, "3 types, but earlier decisions have 2");
    expect_read_err("keta.jsonl", ok, 3, 1, "2 types, but 3 expected");
    snprintf(t, sizeof t, "%s{\"logratios\": [[0, 1], [1, 0]]}\n", ok);
    expect_read_err("noannot.jsonl", t, 0, 2, "annotator");
    expect_read_err("nan.csv", "annotator,decision,type,item,logratio\na,1,1,0,0\na,1,1,1,nan\n", 0, 3, "not a finite");
    expect_read_err("single.csv", "annotator,decision,type,item,logratio\na,1,1,0,0\nb,2,1,0,1\nb,2,1,1,1\n", 0, 2,
                    "1 item");
    expect_read_err("again.csv", "annotator,decision,type,item,logratio\na,1,1,0,0\na,1,1,1,1\nb,2,1,0,1\nb,2,1,1,1\n"
                                 "a,1,1,2,1\n", 0, 6, "appears again");
    expect_read_err("twice.csv", "annotator,decision,type,item,logratio\na,1,1,0,0\na,1,1,1,1\na,1,1,1,2\n", 0, 2,
                    "3 rows for 1 types and 2 items");
    expect_read_err("hole.csv", "annotator,decision,type,item,logratio\na,1,1,0,0\na,1,2,1,1\na,1,1,1,0\na,1,2,1,1\n",
                    0, 2, "given twice");
    expect_read_err("header.csv", "annotator,decision,type,logratio\n", 0, 1, "no column \"item\"");
    expect_read_err("empty.jsonl", "\n\n", 0, 2, "no decision");
    emdpo_logratios *lr = NULL;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_logratios_read(api_write("lr.txt", ok), 0, &lr, &d), EMDPO_ERR_UNSUPPORTED);
    CHECK_EQ_INT(emdpo_logratios_read(api_path("missing.jsonl"), 0, &lr, &d), EMDPO_ERR_IO);
}

/* The margin criterion by hand on a case whose answer is known, and the
 * margins files. */
static void test_margins(void) {
    /* annotator 0: decisions (1, 0), (3, 0), (0, 2) in order; annotator 1: (0, 1) */
    double m[8] = {1, 0, 0, 1, 3, 0, 0, 2};
    int64_t ann[4] = {0, 1, 0, 0};
    double crit, cf;
    CHECK_EQ_INT(emdpo_margin_criterion(2, 4, m, ann, 2, &crit, &cf, NULL), EMDPO_OK);
    /* means: a0 (4/3, 2/3) -> 4/3; a1 (0, 1) -> 1; criterion 7/6 */
    CHECK_CLOSE(crit, 7.0 / 6.0, 1e-15);
    /* a0 halves: even positions (1,0),(0,2) -> (0.5, 1): type 2; odd (3,0): type 1;
     * crossfit = (odd's type-2 mean 0 + even's type-1 mean 0.5) / 2; a1 has one decision */
    CHECK_CLOSE(cf, 0.25, 1e-15);
    int k[3] = {3, 1, 2};
    double v[3] = {0.5, NAN, 0.5};
    CHECK_EQ_INT(emdpo_margin_best(3, k, v), 2);
    emdpo_diag d;
    m[2] = INFINITY;
    CHECK_EQ_INT(emdpo_margin_criterion(2, 4, m, ann, 2, &crit, &cf, &d), EMDPO_ERR_INVALID_ARG);
    emdpo_margins *a = NULL, *b = NULL;
    CHECK_EQ_INT(emdpo_margins_read(api_write("m.jsonl", "{\"k\": 2, \"annotator\": \"x\", \"margins\": [1, 0]}\n"
                                                         "{\"annotator\": \"y\", \"margins\": [0.5]}\n"
                                                         "{\"k\": 2, \"annotator\": \"z\", \"margins\": [null, 2]}\n"),
                                    &a, &d),
                 EMDPO_OK);
    CHECK_EQ_INT(emdpo_margins_read(api_write("m.csv", "k,annotator,decision,type,margin\n2,x,1,2,0\n2,x,1,1,1\n"
                                                       "1,y,1,1,0.5\n2,z,2,1,nan\n2,z,2,2,2\n"),
                                    &b, &d),
                 EMDPO_OK);
    CHECK(emdpo_margins_n_candidates(a) == 2 && emdpo_margins_n_candidates(b) == 2);
    int64_t na, nb, aa, ab;
    const double *ma, *mb;
    const int64_t *xa, *xb;
    CHECK(emdpo_margins_candidate(a, 0, &na, &ma, &xa, &aa) == 2 && emdpo_margins_candidate(b, 0, &nb, &mb, &xb, &ab) == 2);
    CHECK(na == 2 && nb == 2 && aa == 2 && ab == 2 && ma[0] == 1 && mb[0] == 1 && ma[1] == 0 && mb[1] == 0 &&
          isnan(ma[2]) && isnan(mb[2]) && ma[3] == 2 && mb[3] == 2 && xa[1] == 1);
    CHECK(emdpo_margins_candidate(a, 1, &na, &ma, &xa, &aa) == 1 && na == 1 && ma[0] == 0.5);
    emdpo_margins_free(a);
    emdpo_margins_free(b);
    a = NULL;
    CHECK_EQ_INT(emdpo_margins_read(api_write("bad.jsonl", "{\"k\": 3, \"annotator\": \"x\", \"margins\": [1, 0]}\n"),
                                    &a, &d),
                 EMDPO_ERR_PARSE);
    CHECK(d.line == 1 && strstr(d.msg, "\"k\""));
}

/* MMRA-AE on the regret matrix gives MMRA-AE from L, bit for bit, in
 * either form; the file readers agree. */
static void test_regrets(void) {
    enum { K = 3 };
    double L[K * K] = {1.0, 0.2, -0.3, 0.1, 0.8, 0.4, -0.5, 0.3, 1.2}, R[(K + 1) * K], w[K];
    emdpo_zerosum_result ref;
    emdpo_mmra_regret_matrix(K, L, R);
    CHECK_EQ_INT(emdpo_mmra_ae(K, L, EMDPO_GAME_HEDGE, NULL, w, &ref), EMDPO_OK);
    emdpo_regrets_result r1, r2, r3;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_mmra_ae_regrets(R, K + 1, K, EMDPO_GAME_HEDGE, NULL, &r1, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_mmra_ae_regrets(R + K, K, K, EMDPO_GAME_HEDGE, NULL, &r2, &d), EMDPO_OK);
    CHECK(memcmp(r1.w, w, sizeof w) == 0 && memcmp(r2.w, w, sizeof w) == 0);
    CHECK(r1.game.upper == ref.upper && r1.game.gap == ref.gap && r1.game.gap <= 1e-3);
    CHECK(r1.game.upper >= r1.lp.value - 1e-12 && r1.game.upper - r1.lp.value <= r1.game.gap + 1e-12);
    for (int k = 0; k < K; k++) {
        double reg = 0;
        for (int b = 0; b < K; b++) reg += R[(k + 1) * K + b] * w[b];
        CHECK(r1.regret[k] == reg);
    }
    CHECK_EQ_INT(emdpo_mmra_ae_regrets(R, K + 1, K, EMDPO_GAME_LP, NULL, &r3, &d), EMDPO_OK);
    CHECK_CLOSE(r3.game.upper, r1.lp.value, 1e-12);
    R[1] = 0.5;
    CHECK_EQ_INT(emdpo_mmra_ae_regrets(R, K + 1, K, EMDPO_GAME_HEDGE, NULL, &r3, &d), EMDPO_ERR_INVALID_ARG);
    CHECK(strstr(d.msg, "row 0") != NULL);
    CHECK_EQ_INT(emdpo_mmra_ae_regrets(R, K + 2, K, EMDPO_GAME_HEDGE, NULL, &r3, &d), EMDPO_ERR_INVALID_ARG);
    double F[(EMDPO_MAX_K + 1) * EMDPO_MAX_K];
    int rows, k;
    CHECK_EQ_INT(emdpo_regrets_read(api_write("r.json", "{\"regrets\": [[0, 1],\n [2, 0]]}"), F, &rows, &k, &d),
                 EMDPO_OK);
    CHECK(rows == 2 && k == 2 && F[1] == 1 && F[2] == 2);
    CHECK_EQ_INT(emdpo_regrets_read(api_write("r.csv", "p1,p2\n0,0\n0,1\n2,0\n"), F, &rows, &k, &d), EMDPO_OK);
    CHECK(rows == 3 && k == 2 && F[3] == 1 && F[4] == 2);
    CHECK_EQ_INT(emdpo_regrets_read(api_write("bad.csv", "0,0\n0,x\n"), F, &rows, &k, &d), EMDPO_ERR_PARSE);
    CHECK(d.line == 2);
    CHECK_EQ_INT(emdpo_regrets_read(api_write("ragged.json", "[[0, 0], [1]]"), F, &rows, &k, &d), EMDPO_ERR_PARSE);
}

int main(void) {
    api_init();
    test_brute_force();
    test_same_bits();
    check_fit_reproduced(EMDPO_SIM_TOP, 1.0);
    check_fit_reproduced(EMDPO_SIM_RANKING, 0.5);
    test_weights();
    test_errors();
    test_files();
    test_read_errors();
    test_margins();
    test_regrets();
    api_done();
    return check_report("test_api_estep");
}
