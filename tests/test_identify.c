/* The identifiability study: pairs cannot tell the personalities population
 * from its collapsed twin (equal choice probabilities, equal likelihood),
 * triples can (and EM's error falls with N); a known population's
 * likelihood against brute force; determinism across runs and thread
 * counts; argument checks; clean failure at every allocation. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "check.h"
#include "experiments/identify.h"
#include "failalloc.h"

static emdpo_data *sim(int items, int decisions, int64_t n, emdpo_sim_design design, uint64_t seed) {
    emdpo_sim_spec s;
    emdpo_sim_spec_init(&s);
    s.n_annotators = n;
    s.items = items;
    s.decisions = decisions;
    s.design = design;
    s.omit_text = 1;
    s.seed = seed;
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_OK);
    return d;
}

static double max_dp(int items, emdpo_sim_design design) {
    emdpo_data *d = sim(items, 1, 2000, design, 5);
    double dp = -1.0;
    if (d) CHECK_EQ_INT(emdpo_identify_max_dp(&emdpo_pop_personalities, &emdpo_pop_personalities_collapsed, d, &dp),
                        EMDPO_OK);
    emdpo_data_free(d);
    return dp;
}

static void test_equivalence(void) {
    for (int design = 0; design < 2; design++) {
        emdpo_sim_design dz = design ? EMDPO_SIM_GAUSSIAN : EMDPO_SIM_PHRASES;
        double d2 = max_dp(2, dz), d3 = max_dp(3, dz), d4 = max_dp(4, dz);
        CHECK_MSG(d2 >= 0 && d2 < 1e-15, "design %d pairs: max |dP| %g", design, d2);
        CHECK_MSG(d3 > 1e-3, "design %d triples: max |dP| %g", design, d3);
        CHECK_MSG(d4 > 1e-3, "design %d quadruples: max |dP| %g", design, d4);
    }
}

/* log sum_k eta_k prod_j softmax_k(chosen item of decision j), written out. */
static double brute_loglik(const emdpo_population *pop, const emdpo_data *d, int64_t i) {
    double tot = 0.0, wsum = 0.0;
    for (int k = 0; k < pop->K; k++) wsum += pop->eta[k];
    for (int k = 0; k < pop->K; k++) {
        double prod = pop->eta[k] / wsum;
        for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) {
            double z = 0.0, u0 = 0.0;
            for (int64_t q = d->dec_item[j]; q < d->dec_item[j + 1]; q++) {
                double u = 0.0;
                for (int a = 0; a < d->p; a++) u += pop->theta[k * pop->p + a] * d->x[q * d->p + a];
                if (q == d->dec_item[j]) u0 = u;
                z += exp(u);
            }
            prod *= exp(u0) / z;
        }
        tot += prod;
    }
    return log(tot);
}

static void test_population_loglik(void) {
    emdpo_data *d = sim(3, 2, 7, EMDPO_SIM_GAUSSIAN, 9);
    const emdpo_population *pops[2] = {&emdpo_pop_personalities, &emdpo_pop_personalities_collapsed};
    for (int q = 0; d && q < 2; q++) {
        double ll[7], total = 0.0, sum = 0.0;
        CHECK_EQ_INT(emdpo_population_loglik(pops[q], d, ll, &total), EMDPO_OK);
        for (int64_t i = 0; i < d->n_annot; i++) {
            CHECK_CLOSE(ll[i], brute_loglik(pops[q], d, i), 1e-12);
            sum += ll[i];
        }
        CHECK_CLOSE(total, sum, 1e-12);
    }
    emdpo_data_free(d);
}

/* With two pair decisions per annotator the joint likelihood separates the
 * twins although each single pair does not. */
static void test_repeated_pairs(void) {
    emdpo_data *d = sim(2, 2, 500, EMDPO_SIM_PHRASES, 3);
    double lt = 0.0, la = 0.0, dp = -1.0;
    if (d) {
        CHECK_EQ_INT(emdpo_population_loglik(&emdpo_pop_personalities, d, NULL, &lt), EMDPO_OK);
        CHECK_EQ_INT(emdpo_population_loglik(&emdpo_pop_personalities_collapsed, d, NULL, &la), EMDPO_OK);
        CHECK_EQ_INT(emdpo_identify_max_dp(&emdpo_pop_personalities, &emdpo_pop_personalities_collapsed, d, &dp),
                     EMDPO_OK);
    }
    CHECK_MSG(lt - la > 1.0, "2 pairs per annotator: gap %g", lt - la);
    CHECK(dp >= 0 && dp < 1e-15);
    emdpo_data_free(d);
}

static void small_spec(emdpo_identify_spec *s) {
    emdpo_identify_spec_init(s);
    s->sizes[0] = 250;
    s->sizes[1] = 1000;
    s->n_sizes = 2;
}

/* rows: binary 250, binary 1000, ternary 250, ternary 1000. */
static void test_study(void) {
    emdpo_identify_spec s;
    small_spec(&s);
    emdpo_identify_row r[4];
    CHECK_EQ_INT(emdpo_identify_run(&s, r, NULL, NULL, NULL), EMDPO_OK);
    for (int c = 0; c < 4; c++) {
        CHECK_EQ_INT(r[c].items, c < 2 ? 2 : 3);
        CHECK_EQ_INT(r[c].n_annot, c % 2 ? 1000 : 250);
        CHECK(isfinite(r[c].theta_err) && r[c].eta_err >= 0 && r[c].eta_err <= 1);
        CHECK(r[c].ll_fit <= 0 && r[c].ll_true <= 0 && r[c].ll_alt <= 0);
    }
    for (int c = 0; c < 2; c++) {
        CHECK_MSG(fabs(r[c].ll_gap) < 1e-9, "binary N=%lld: gap %g", (long long)r[c].n_annot, r[c].ll_gap);
        CHECK_MSG(r[c].max_dp < 1e-15, "binary: max |dP| %g", r[c].max_dp);
        CHECK_MSG(r[c + 2].ll_gap > 0, "ternary N=%lld: gap %g", (long long)r[c + 2].n_annot, r[c + 2].ll_gap);
        CHECK_MSG(r[c + 2].max_dp > 1e-3, "ternary: max |dP| %g", r[c + 2].max_dp);
    }
    CHECK_MSG(r[3].theta_err < 0.5 * r[1].theta_err, "N=1000: ternary error %g vs binary %g", r[3].theta_err,
              r[1].theta_err);
    CHECK_MSG(r[3].theta_err < r[2].theta_err, "ternary error %g at N=250 -> %g at N=1000", r[2].theta_err,
              r[3].theta_err);
    /* The gap of the nested samples grows with N. */
    CHECK(r[3].ll_gap > r[2].ll_gap);
}

static void test_deterministic(void) {
    emdpo_identify_spec s;
    emdpo_identify_spec_init(&s);
    s.items[0] = 3;
    s.n_items = 1;
    s.sizes[0] = 300;
    s.n_sizes = 1;
    s.max_iter = 40;
    emdpo_identify_row r[3];
    int saved = omp_get_max_threads();
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(t == 2 ? 1 : 2);
        CHECK_EQ_INT(emdpo_identify_run(&s, &r[t], NULL, NULL, NULL), EMDPO_OK);
    }
    omp_set_num_threads(saved);
    CHECK(memcmp(&r[0], &r[1], sizeof r[0]) == 0);
    CHECK(memcmp(&r[0], &r[2], sizeof r[0]) == 0);
    s.seed = 2;
    CHECK_EQ_INT(emdpo_identify_run(&s, &r[1], NULL, NULL, NULL), EMDPO_OK);
    CHECK(r[1].ll_true != r[0].ll_true);
}

static int progress_calls;
static void count_progress(void *ud, const emdpo_identify_row *row, int index, int total) {
    (void)row;
    CHECK(ud == &progress_calls && index == progress_calls && total == 2);
    progress_calls++;
}

static void test_args(void) {
    emdpo_identify_spec s;
    emdpo_identify_row r[2];
    emdpo_identify_spec_init(&s);
    s.items[0] = 1;
    CHECK_EQ_INT(emdpo_identify_run(&s, r, NULL, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    emdpo_identify_spec_init(&s);
    s.sizes[2] = 0;
    CHECK_EQ_INT(emdpo_identify_run(&s, r, NULL, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    emdpo_identify_spec_init(&s);
    s.decisions = 0;
    CHECK_EQ_INT(emdpo_identify_run(&s, r, NULL, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    emdpo_identify_spec_init(&s);
    s.l2 = -1;
    CHECK_EQ_INT(emdpo_identify_run(&s, r, NULL, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    emdpo_identify_spec_init(&s);
    s.alt.p = 4;
    CHECK_EQ_INT(emdpo_identify_run(&s, r, NULL, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    emdpo_identify_spec_init(&s);
    s.items[0] = 3;
    s.n_items = 1;
    s.sizes[0] = 20;
    s.sizes[1] = 40;
    s.n_sizes = 2;
    s.max_iter = 2;
    CHECK_EQ_INT(emdpo_identify_run(&s, r, count_progress, &progress_calls, NULL), EMDPO_OK);
    CHECK_EQ_INT(progress_calls, 2);
    CHECK_EQ_INT(r[1].n_annot, 40);
    double out;
    CHECK_EQ_INT(emdpo_population_loglik(&s.alt, NULL, NULL, &out), EMDPO_ERR_INVALID_ARG);
}

static void test_alloc_failures(void) {
    emdpo_identify_spec s;
    emdpo_identify_spec_init(&s);
    s.items[0] = 3;
    s.n_items = 1;
    s.sizes[0] = 30;
    s.n_sizes = 1;
    s.starts = 2;
    s.max_iter = 3;
    emdpo_identify_row ref, r;
    CHECK_EQ_INT(emdpo_identify_run(&s, &ref, NULL, NULL, NULL), EMDPO_OK);
    long done_at = -1;
    for (long k = 0; k < 100000 && done_at < 0; k++) {
        failalloc_install(k, 0);
        memset(&r, 0, sizeof r);
        int rc = emdpo_identify_run(&s, &r, NULL, NULL, NULL);
        long live = failalloc_live(), count = failalloc_count();
        int size_err = failalloc_size_errors();
        failalloc_uninstall();
        int same = !rc && memcmp(&r, &ref, sizeof r) == 0;
        CHECK_MSG(same || rc == EMDPO_ERR_NOMEM, "fail_at %ld rc %d", k, rc);
        CHECK_MSG(live == 0, "fail_at %ld leaks %ld blocks", k, live);
        CHECK_MSG(size_err == 0, "fail_at %ld: %d frees with a wrong size", k, size_err);
        if (count <= k) done_at = k;
    }
    CHECK(done_at > 10);
}

int main(void) {
    test_equivalence();
    test_population_loglik();
    test_repeated_pairs();
    test_study();
    test_deterministic();
    test_args();
    test_alloc_failures();
    return check_report("test_identify");
}
