/* The simulator: empirical choice and ranking frequencies against exact
 * logit / Plackett-Luce probabilities, type frequencies against eta,
 * reproducibility across seeds and thread counts, the identifiability
 * contrast of the personalities preset, argument checks, and clean failure
 * at every allocation. */
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/rng.h"
#include "check.h"
#include "experiments/simulate.h"
#include "failalloc.h"

static emdpo_inventory *make_inv(const char *csv) {
    emdpo_inventory *inv = NULL;
    int rc = emdpo_inventory_parse_mpi(csv, strlen(csv), "test", &inv, NULL);
    CHECK_EQ_INT(rc, EMDPO_OK);
    return inv;
}

/* Index of the phrase whose score vector is x, -1 if none. */
static int row_of(const emdpo_inventory *inv, const double *x) {
    for (int64_t i = 0; i < inv->n; i++)
        if (memcmp(inv->score + i * EMDPO_N_TRAITS, x, EMDPO_N_TRAITS * sizeof(double)) == 0) return (int)i;
    return -1;
}

/* Softmax of theta . x_j over the listed items, computed directly. */
static void softmax_of(const double *theta, const double *x, int n, int p, double *out) {
    double s = 0;
    for (int j = 0; j < n; j++) {
        double u = 0;
        for (int f = 0; f < p; f++) u += theta[f] * x[j * p + f];
        out[j] = exp(u);
        s += out[j];
    }
    for (int j = 0; j < n; j++) out[j] /= s;
}

/* |observed share - expected probability| within 4 standard errors. */
static void check_freq(long count, long total, double prob, const char *what, int j) {
    double share = (double)count / (double)total;
    double se = sqrt(fmax(prob * (1 - prob), 1e-12) / (double)total);
    CHECK_MSG(fabs(share - prob) <= 4 * se, "%s %d: share %.5f vs probability %.5f (se %.5f)", what, j, share,
              prob, se);
}

/* Three phrases with distinct score vectors and one type: every decision
 * shows all three, so choice shares must equal one fixed softmax. */
static const char *tiny_csv = "text,label_ocean,key\n"
                              "open,O,1\n"
                              "mixed,C,-1\n"
                              "mixed,E,1\n"
                              "calm,N,1\n";
static const double tiny_theta[5] = {0.8, -0.4, 0.5, 0.0, -1.2};

static void test_top_choice(void) {
    emdpo_inventory *inv = make_inv(tiny_csv);
    if (!inv) return;
    double eta1 = 1.0;
    emdpo_sim_spec s;
    emdpo_sim_spec_init(&s);
    s.pop = (emdpo_population){1, 5, tiny_theta, &eta1, NULL};
    s.inventory = inv;
    s.n_annotators = 100000;
    s.decisions = 2;
    s.items = 3;
    s.omit_text = 1;
    s.seed = 11;
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_OK);
    if (d) {
        long count[3] = {0}, bad = 0;
        for (int64_t j = 0; j < d->n_dec; j++) {
            const double *x = d->x + d->dec_item[j] * 5;
            int r0 = row_of(inv, x), r1 = row_of(inv, x + 5), r2 = row_of(inv, x + 10);
            bad += d->dec_stages[j] != 1 || emdpo_dec_n_items(d, j) != 3 || r0 < 0 || r1 < 0 || r2 < 0 ||
                   r0 == r1 || r0 == r2 || r1 == r2;
            if (r0 >= 0) count[r0]++;
        }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(d->n_dec, 200000);
        CHECK(d->dec_prompt == NULL && d->item_text == NULL);
        double prob[3];
        softmax_of(tiny_theta, inv->score, 3, 5, prob);
        for (int j = 0; j < 3; j++) check_freq(count[j], (long)d->n_dec, prob[j], "top choice", j);
        /* The library's own mixture probabilities agree with the direct softmax. */
        double lib[3];
        CHECK_EQ_INT(emdpo_population_choice_prob(&s.pop, 3, inv->score, lib), EMDPO_OK);
        for (int j = 0; j < 3; j++) CHECK_CLOSE(lib[j], prob[j], 1e-14);
    }
    emdpo_data_free(d);
    emdpo_inventory_free(inv);
}

static void test_mixture_and_types(void) {
    /* One phrase per trait the personalities care about. */
    emdpo_inventory *inv = make_inv("text,label_ocean,key\nO,O,1\nE,E,1\nN,N,1\n");
    if (!inv) return;
    emdpo_sim_spec s;
    emdpo_sim_spec_init(&s);
    s.inventory = inv;
    s.n_annotators = 200000;
    s.omit_text = 1;
    s.seed = 5;
    int32_t *type = malloc((size_t)s.n_annotators * sizeof *type);
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, type, NULL), EMDPO_OK);
    if (d) {
        const emdpo_population *pop = &emdpo_pop_personalities;
        long n_type[3] = {0}, by_type[3][3] = {{0}}, all[3] = {0}, mislabelled = 0;
        for (int64_t i = 0; i < d->n_annot; i++) {
            int k = type[i];
            if (k < 0 || k > 2) {
                mislabelled++;
                continue;
            }
            n_type[k]++;
            mislabelled += strcmp(d->group_name[d->annot_group[i]], pop->type_names[k]) != 0;
            int r = row_of(inv, d->x + d->dec_item[d->annot_dec[i]] * 5);
            if (r >= 0) {
                by_type[k][r]++;
                all[r]++;
            }
        }
        CHECK_EQ_INT(mislabelled, 0);
        CHECK_EQ_INT(d->n_groups, 3);
        for (int k = 0; k < 3; k++) check_freq(n_type[k], (long)d->n_annot, pop->eta[k], "type", k);
        for (int k = 0; k < 3; k++) {
            double prob[3];
            softmax_of(pop->theta + 5 * k, inv->score, 3, 5, prob);
            for (int j = 0; j < 3; j++) check_freq(by_type[k][j], n_type[k], prob[j], "per-type choice", j);
        }
        double mix[3];
        CHECK_EQ_INT(emdpo_population_choice_prob(pop, 3, inv->score, mix), EMDPO_OK);
        for (int j = 0; j < 3; j++) check_freq(all[j], (long)d->n_annot, mix[j], "mixture choice", j);
    }
    free(type);
    emdpo_data_free(d);
    emdpo_inventory_free(inv);
}

static void test_ranking(void) {
    emdpo_inventory *inv = make_inv("text,label_ocean,key\n"
                                    "open,O,1\n"
                                    "mixed,C,-1\nmixed,E,1\n"
                                    "calm,N,1\n"
                                    "kind,A,1\n");
    if (!inv) return;
    double eta1 = 1.0;
    emdpo_sim_spec s;
    emdpo_sim_spec_init(&s);
    s.pop = (emdpo_population){1, 5, tiny_theta, &eta1, NULL};
    s.inventory = inv;
    s.n_annotators = 200000;
    s.items = 4;
    s.response = EMDPO_SIM_RANKING;
    s.omit_text = 1;
    s.seed = 99;
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_OK);
    if (d) {
        long first[4] = {0}, pair[4][4] = {{0}}, bad = 0;
        for (int64_t j = 0; j < d->n_dec; j++) {
            const double *x = d->x + d->dec_item[j] * 5;
            int r0 = row_of(inv, x), r1 = row_of(inv, x + 5);
            bad += d->dec_stages[j] != 3 || r0 < 0 || r1 < 0 || r0 == r1;
            if (r0 >= 0 && r1 >= 0) {
                first[r0]++;
                pair[r0][r1]++;
            }
        }
        CHECK_EQ_INT(bad, 0);
        double prob[4];
        softmax_of(tiny_theta, inv->score, 4, 5, prob);
        for (int i = 0; i < 4; i++) check_freq(first[i], (long)d->n_dec, prob[i], "rank 1", i);
        /* Second place: the softmax among the items left after the first. */
        for (int i = 0; i < 4; i++) {
            for (int j = 0; j < 4; j++) {
                if (i == j) continue;
                double pl = prob[i] * prob[j] / (1 - prob[i]);
                check_freq(pair[i][j], (long)d->n_dec, pl, "rank 1-2", 4 * i + j);
                /* The library's ranking probability, items listed in rank order. */
                double xo[20], lib = -1;
                int order[4] = {i, j, 0, 0};
                for (int q = 0, r = 2; q < 4; q++)
                    if (q != i && q != j) order[r++] = q;
                for (int q = 0; q < 4; q++) memcpy(xo + 5 * q, inv->score + 5 * order[q], 5 * sizeof(double));
                CHECK_EQ_INT(emdpo_population_ranking_prob(&s.pop, 4, 2, xo, &lib), EMDPO_OK);
                CHECK_CLOSE(lib, pl, 1e-13);
            }
        }
    }
    emdpo_data_free(d);
    emdpo_inventory_free(inv);
}

/* Gaussian design: given the features each decision drew, the chosen item's
 * probability has mean sum_j p_j^2. Summing (p_chosen - sum_j p_j^2) over
 * decisions gives a statistic with mean 0 and known variance, at every stage. */
static void test_gaussian_calibration(emdpo_sim_response response) {
    const double theta[3] = {1.0, -0.5, 2.0};
    double eta1 = 1.0;
    emdpo_sim_spec s;
    emdpo_sim_spec_init(&s);
    s.pop = (emdpo_population){1, 3, theta, &eta1, NULL};
    s.design = EMDPO_SIM_GAUSSIAN;
    s.scale = 0.7;
    s.n_annotators = 40000;
    s.decisions = 2;
    s.items = 4;
    s.response = response;
    s.seed = 3;
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_OK);
    if (!d) return;
    CHECK(d->feature_name == NULL && d->item_text == NULL && d->dec_prompt == NULL);
    double sum = 0, sum2 = 0;
    for (int64_t q = 0; q < d->n_items * 3; q++) {
        sum += d->x[q];
        sum2 += d->x[q] * d->x[q];
    }
    double nx = (double)d->n_items * 3, mean = sum / nx, var = sum2 / nx - mean * mean;
    CHECK_MSG(fabs(mean) < 4 * 0.7 / sqrt(nx), "feature mean %g", mean);
    CHECK_MSG(fabs(var - 0.49) < 4 * 0.49 * sqrt(2 / nx), "feature variance %g", var);
    int stages = response == EMDPO_SIM_RANKING ? 3 : 1;
    for (int st = 0; st < stages; st++) {
        double stat = 0, v = 0;
        for (int64_t j = 0; j < d->n_dec; j++) {
            double p[4];
            int n = 4 - st;
            softmax_of(theta, d->x + (d->dec_item[j] + st) * 3, n, 3, p);
            double s2 = 0, s3 = 0;
            for (int q = 0; q < n; q++) {
                s2 += p[q] * p[q];
                s3 += p[q] * p[q] * p[q];
            }
            stat += p[0] - s2;
            v += s3 - s2 * s2;
        }
        CHECK_MSG(fabs(stat) <= 4 * sqrt(v), "stage %d: calibration %g vs sd %g", st + 1, stat, sqrt(v));
    }
    emdpo_data_free(d);
}

static int str_eq(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

static int data_equal(const emdpo_data *a, const emdpo_data *b) {
    if (a->n_annot != b->n_annot || a->n_dec != b->n_dec || a->n_items != b->n_items || a->p != b->p ||
        a->n_groups != b->n_groups)
        return 0;
    size_t na = (size_t)a->n_annot, nd = (size_t)a->n_dec, ni = (size_t)a->n_items;
    if (memcmp(a->annot_dec, b->annot_dec, (na + 1) * sizeof(int64_t)) ||
        memcmp(a->dec_item, b->dec_item, (nd + 1) * sizeof(int64_t)) ||
        memcmp(a->dec_stages, b->dec_stages, nd * sizeof(int32_t)) ||
        memcmp(a->x, b->x, ni * (size_t)a->p * sizeof(double)) ||
        memcmp(a->annot_group, b->annot_group, na * sizeof(int32_t)))
        return 0;
    for (size_t i = 0; i < na; i++)
        if (!str_eq(a->annot_name[i], b->annot_name[i])) return 0;
    for (int g = 0; g < a->n_groups; g++)
        if (!str_eq(a->group_name[g], b->group_name[g])) return 0;
    if ((a->dec_prompt == NULL) != (b->dec_prompt == NULL) || (a->item_text == NULL) != (b->item_text == NULL))
        return 0;
    for (size_t j = 0; a->dec_prompt && j < nd; j++)
        if (!str_eq(a->dec_prompt[j], b->dec_prompt[j])) return 0;
    for (size_t j = 0; a->item_text && j < ni; j++)
        if (!str_eq(a->item_text[j], b->item_text[j])) return 0;
    return 1;
}

static emdpo_data *sim_threads(const emdpo_sim_spec *s, int threads) {
#ifdef _OPENMP
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_simulate(s, &d, NULL, NULL), EMDPO_OK);
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
    return d;
}

static void test_reproducible(void) {
    emdpo_sim_spec s;
    emdpo_sim_spec_init(&s);
    s.n_annotators = 3000;
    s.decisions = 3;
    s.response = EMDPO_SIM_RANKING;
    s.seed = 2024;
    for (int design = 0; design < 2; design++) {
        s.design = design ? EMDPO_SIM_GAUSSIAN : EMDPO_SIM_PHRASES;
        emdpo_data *a = sim_threads(&s, 1), *b = sim_threads(&s, 4), *c = sim_threads(&s, 3);
        s.seed++;
        emdpo_data *e = sim_threads(&s, 4);
        s.seed--;
        if (a && b && c && e) {
            CHECK_MSG(data_equal(a, b), "design %d: 1 and 4 threads differ", design);
            CHECK_MSG(data_equal(a, c), "design %d: 1 and 3 threads differ", design);
            CHECK_MSG(!data_equal(a, e), "design %d: seeds %llu and %llu agree", design,
                      (unsigned long long)s.seed, (unsigned long long)s.seed + 1);
            CHECK(memcmp(a->x, e->x, (size_t)a->n_items * 5 * sizeof(double)) != 0);
        }
        emdpo_data_free(a);
        emdpo_data_free(b);
        emdpo_data_free(c);
        emdpo_data_free(e);
    }
}

static void test_phrase_dataset(void) {
    emdpo_inventory *inv = NULL;
    CHECK_EQ_INT(emdpo_inventory_builtin(&inv), EMDPO_OK);
    if (!inv) return;
    emdpo_sim_spec s;
    emdpo_sim_spec_init(&s);
    s.n_annotators = 500;
    s.decisions = 4;
    s.items = 3;
    s.response = EMDPO_SIM_RANKING;
    s.seed = 77;
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_OK); /* inventory NULL: the built-in one */
    if (d && d->item_text && d->dec_prompt && d->feature_name) {
        CHECK_EQ_INT(d->n_annot, 500);
        CHECK_EQ_INT(d->n_dec, 2000);
        CHECK(strcmp(d->annot_name[0], "a1") == 0 && strcmp(d->annot_name[499], "a500") == 0);
        for (int f = 0; f < 5; f++) CHECK(strcmp(d->feature_name[f], emdpo_trait_names[f]) == 0);
        long mismatched = 0, repeated = 0, bad_prompt = 0;
        int seen_prompt[EMDPO_N_PARAPHRASES] = {0};
        int *seen_phrase = calloc((size_t)inv->n, sizeof(int));
        for (int64_t j = 0; j < d->n_dec; j++) {
            int pi = -1;
            for (int q = 0; q < EMDPO_N_PARAPHRASES; q++)
                if (d->dec_prompt[j] && strcmp(d->dec_prompt[j], emdpo_paraphrases[q]) == 0) pi = q;
            bad_prompt += pi < 0 || d->dec_stages[j] != 2;
            if (pi >= 0) seen_prompt[pi] = 1;
            for (int64_t it = d->dec_item[j]; it < d->dec_item[j + 1]; it++) {
                int r = -1;
                for (int64_t q = 0; q < inv->n && d->item_text[it]; q++)
                    if (strcmp(inv->text[q], d->item_text[it]) == 0) r = (int)q;
                /* The stored features are the score vector of the stored text. */
                mismatched += r < 0 || memcmp(inv->score + 5 * r, d->x + 5 * it, 5 * sizeof(double)) != 0;
                if (r >= 0) seen_phrase[r]++;
                for (int64_t it2 = d->dec_item[j]; it2 < it; it2++)
                    repeated += strcmp(d->item_text[it], d->item_text[it2]) == 0;
            }
        }
        CHECK_EQ_INT(mismatched, 0);
        CHECK_EQ_INT(repeated, 0);
        CHECK_EQ_INT(bad_prompt, 0);
        int prompts = 0, phrases = 0;
        for (int q = 0; q < EMDPO_N_PARAPHRASES; q++) prompts += seen_prompt[q];
        for (int64_t q = 0; q < inv->n; q++) phrases += seen_phrase[q] > 0;
        CHECK_EQ_INT(prompts, EMDPO_N_PARAPHRASES);
        CHECK_EQ_INT(phrases, inv->n);
        free(seen_phrase);
    } else {
        CHECK(!"phrase dataset lacks texts, prompts or feature names");
    }
    emdpo_data_free(d);

    s.omit_text = 1;
    d = NULL;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_OK);
    if (d) CHECK(d->item_text == NULL && d->dec_prompt == NULL && d->feature_name != NULL);
    emdpo_data_free(d);
    emdpo_inventory_free(inv);
}

/* Binary choices cannot tell {P1, P2} from their average theta = 0; three
 * items can. Checked over all pairs and triples of distinct score vectors of
 * the built-in inventory, and over Gaussian pairs. */
static void test_identifiability(void) {
    emdpo_inventory *inv = NULL;
    CHECK_EQ_INT(emdpo_inventory_builtin(&inv), EMDPO_OK);
    if (!inv) return;
    double vec[64 * 5];
    int nv = 0;
    for (int64_t i = 0; i < inv->n && nv < 64; i++) {
        int dup = 0;
        for (int q = 0; q < nv; q++) dup |= memcmp(vec + 5 * q, inv->score + 5 * i, 5 * sizeof(double)) == 0;
        if (!dup) memcpy(vec + 5 * nv++, inv->score + 5 * i, 5 * sizeof(double));
    }
    CHECK_EQ_INT(nv, 10);
    const emdpo_population *tru = emdpo_population_preset("personalities");
    const emdpo_population *col = emdpo_population_preset("personalities-collapsed");
    CHECK(tru == &emdpo_pop_personalities && col == &emdpo_pop_personalities_collapsed);
    CHECK(emdpo_population_preset("nobody") == NULL);
    if (!tru || !col) return;
    double pair_max = 0, triple_max = 0, sum_err = 0;
    for (int a = 0; a < nv; a++) {
        for (int b = 0; b < nv; b++) {
            if (a == b) continue;
            double x[10], pt[2], pc[2];
            memcpy(x, vec + 5 * a, 5 * sizeof(double));
            memcpy(x + 5, vec + 5 * b, 5 * sizeof(double));
            CHECK_EQ_INT(emdpo_population_choice_prob(tru, 2, x, pt), EMDPO_OK);
            CHECK_EQ_INT(emdpo_population_choice_prob(col, 2, x, pc), EMDPO_OK);
            pair_max = fmax(pair_max, fmax(fabs(pt[0] - pc[0]), fabs(pt[1] - pc[1])));
            for (int c = 0; c < nv; c++) {
                if (c == a || c == b) continue;
                double x3[15], qt[3], qc[3];
                memcpy(x3, x, 10 * sizeof(double));
                memcpy(x3 + 10, vec + 5 * c, 5 * sizeof(double));
                CHECK_EQ_INT(emdpo_population_choice_prob(tru, 3, x3, qt), EMDPO_OK);
                CHECK_EQ_INT(emdpo_population_choice_prob(col, 3, x3, qc), EMDPO_OK);
                sum_err = fmax(sum_err, fabs(qt[0] + qt[1] + qt[2] - 1));
                for (int q = 0; q < 3; q++) triple_max = fmax(triple_max, fabs(qt[q] - qc[q]));
            }
        }
    }
    CHECK_MSG(pair_max < 1e-15, "pair difference %g", pair_max);
    CHECK_MSG(triple_max > 1e-3, "triple difference %g", triple_max);
    CHECK(sum_err < 1e-14);

    emdpo_rng r;
    emdpo_rng_seed(&r, 42, 0);
    double g_max = 0;
    for (int t = 0; t < 1000; t++) {
        double x[10], pt[2], pc[2];
        for (int q = 0; q < 10; q++) x[q] = 3 * emdpo_rng_normal(&r);
        CHECK_EQ_INT(emdpo_population_choice_prob(tru, 2, x, pt), EMDPO_OK);
        CHECK_EQ_INT(emdpo_population_choice_prob(col, 2, x, pc), EMDPO_OK);
        g_max = fmax(g_max, fabs(pt[0] - pc[0]));
    }
    CHECK_MSG(g_max < 1e-15, "Gaussian pair difference %g", g_max);
    emdpo_inventory_free(inv);
}

static void test_bad_specs(void) {
    emdpo_inventory *inv = make_inv(tiny_csv);
    if (!inv) return;
    emdpo_sim_spec base, s;
    emdpo_sim_spec_init(&base);
    base.n_annotators = 10;
    base.inventory = inv;
    emdpo_data *d = (emdpo_data *)&base; /* must come back NULL */
    s = base;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_OK);
    emdpo_data_free(d);
    s = base;
    s.items = 4; /* more items than phrases */
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK(d == NULL);
    s = base;
    s.items = 1;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    s = base;
    s.decisions = 0;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    s = base;
    s.n_annotators = 0;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    double eta_neg[3] = {0.5, -0.1, 0.6}, eta_zero[3] = {0, 0, 0};
    s = base;
    s.pop.eta = eta_neg;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    s.pop.eta = eta_zero;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    double theta_nan[15] = {0};
    theta_nan[7] = NAN;
    s = base;
    s.pop.theta = theta_nan;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    s = base;
    s.pop.p = 4; /* phrases have 5 features */
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    s = base;
    s.design = EMDPO_SIM_GAUSSIAN;
    s.scale = 0;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    s.scale = 1;
    s.n_annotators = INT64_MAX / 4;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_ERR_LIMIT);
    s = base;
    s.response = (emdpo_sim_response)7;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK(d == NULL);

    double x[10] = {0}, prob[2], out;
    CHECK_EQ_INT(emdpo_population_choice_prob(&emdpo_pop_personalities, 0, x, prob), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_population_ranking_prob(&emdpo_pop_personalities, 2, 2, x, &out), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_population_ranking_prob(&emdpo_pop_personalities, 2, 1, x, &out), EMDPO_OK);
    CHECK_CLOSE(out, 0.5, 1e-15);
    emdpo_inventory_free(inv);
}

static int sim_tiny(emdpo_sim_design design, emdpo_data **out, int32_t *type) {
    emdpo_sim_spec s;
    emdpo_sim_spec_init(&s);
    s.n_annotators = 3;
    s.decisions = 2;
    s.items = 3;
    s.response = EMDPO_SIM_RANKING;
    s.design = design;
    return emdpo_simulate(&s, out, type, NULL);
}

static void test_alloc_failures(void) {
    for (int design = 0; design < 2; design++) {
        emdpo_sim_design dz = design ? EMDPO_SIM_GAUSSIAN : EMDPO_SIM_PHRASES;
        emdpo_data *ref = NULL;
        int32_t ref_type[3], type[3];
        CHECK_EQ_INT(sim_tiny(dz, &ref, ref_type), EMDPO_OK);
        long done_at = -1;
        for (long k = 0; k < 100000 && done_at < 0; k++) {
            failalloc_install(k, 0);
            emdpo_data *d = NULL;
            int rc = sim_tiny(dz, &d, type);
            int same = !rc && d && ref && data_equal(d, ref) && memcmp(type, ref_type, sizeof type) == 0;
            emdpo_data_free(d);
            long live = failalloc_live(), count = failalloc_count();
            int size_err = failalloc_size_errors();
            failalloc_uninstall();
            CHECK_MSG(same || rc == EMDPO_ERR_NOMEM, "design %d fail_at %ld rc %d", design, k, rc);
            CHECK_MSG(live == 0, "design %d fail_at %ld leaks %ld blocks", design, k, live);
            CHECK_MSG(size_err == 0, "design %d fail_at %ld: %d frees with a wrong size", design, k, size_err);
            if (count <= k) done_at = k;
        }
        CHECK(done_at > 20);
        emdpo_data_free(ref);
    }
}

int main(void) {
    test_top_choice();
    test_mixture_and_types();
    test_ranking();
    test_gaussian_calibration(EMDPO_SIM_TOP);
    test_gaussian_calibration(EMDPO_SIM_RANKING);
    test_reproducible();
    test_phrase_dataset();
    test_identifiability();
    test_bad_specs();
    test_alloc_failures();
    return check_report("test_simulate");
}
