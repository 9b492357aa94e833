#include "experiments/identify.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/json_write.h"
#include "base/rng.h"
#include "core/match.h"
#include "core/heldout.h"
#include "loglinear/loglinear.h"

void emdpo_identify_spec_init(emdpo_identify_spec *s) {
    if (!s) return;
    static const int64_t sizes[] = {250, 1000, 4000, 16000};
    memset(s, 0, sizeof *s);
    s->truth = emdpo_pop_personalities;
    s->alt = emdpo_pop_personalities_collapsed;
    s->items[0] = 2;
    s->items[1] = 3;
    s->n_items = 2;
    memcpy(s->sizes, sizes, sizeof sizes);
    s->n_sizes = (int)(sizeof sizes / sizeof sizes[0]);
    s->decisions = 1;
    s->starts = 3;
    s->init = EMDPO_INIT_KMEANS;
    s->max_iter = 150;
    s->tol = 1e-7;
    s->l2 = 0.1;
    s->design = EMDPO_SIM_PHRASES;
    s->scale = 1.0;
    s->seed = 1;
}

/* Sum of the weights of a usable population with at most kmax types, else 0. */
static double pop_weight(const emdpo_population *pop, int kmax) {
    if (!pop->theta || !pop->eta || pop->K < 1 || pop->K > kmax || pop->p < 1) return 0.0;
    double sum = 0.0;
    for (int k = 0; k < pop->K; k++) {
        if (!(pop->eta[k] >= 0) || !isfinite(pop->eta[k])) return 0.0;
        sum += pop->eta[k];
    }
    return isfinite(sum) ? sum : 0.0;
}

/* At least 1, so that buffers sized by it are never empty. */
static int max_items(const emdpo_data *d) {
    int n = 1;
    for (int64_t j = 0; j < d->n_dec; j++)
        if (emdpo_dec_n_items(d, j) > n) n = emdpo_dec_n_items(d, j);
    return n;
}

int emdpo_identify_max_dp(const emdpo_population *a, const emdpo_population *b, const emdpo_data *d,
                          double *out) {
    if (!a || !b || !d || !out || a->p != d->p || b->p != d->p) return EMDPO_ERR_INVALID_ARG;
    int n_max = max_items(d), rc = EMDPO_OK;
    double *pa = emdpo_malloc(2 * (size_t)n_max * sizeof(double));
    if (!pa) return EMDPO_ERR_NOMEM;
    double *pb = pa + n_max, worst = 0.0;
    for (int64_t j = 0; j < d->n_dec; j++) {
        int n = emdpo_dec_n_items(d, j);
        const double *x = d->x + (size_t)d->dec_item[j] * d->p;
        if ((rc = emdpo_population_choice_prob(a, n, x, pa)) || (rc = emdpo_population_choice_prob(b, n, x, pb))) break;
        for (int q = 0; q < n; q++) worst = fmax(worst, fabs(pa[q] - pb[q]));
    }
    emdpo_free(pa, 2 * (size_t)n_max * sizeof(double));
    if (!rc) *out = worst;
    return rc;
}

int emdpo_population_loglik(const emdpo_population *pop, const emdpo_data *d, double *ll_annot, double *loglik) {
    double wsum = pop ? pop_weight(pop, EMDPO_MAX_K) : 0.0;
    if (!(wsum > 0) || !d || !loglik || pop->p != d->p) return EMDPO_ERR_INVALID_ARG;
    int K = pop->K;
    emdpo_policy *pol = NULL;
    int rc = emdpo_loglinear_create(K, pop->p, &pol);
    if (rc) return rc;
    memcpy(emdpo_loglinear_of(pol)->theta, pop->theta, (size_t)K * pop->p * sizeof(double));
    double eta[EMDPO_MAX_K];
    for (int k = 0; k < K; k++) eta[k] = pop->eta[k] / wsum;
    rc = emdpo_heldout_loglik(pol, eta, d, ll_annot, loglik);
    emdpo_policy_free(pol);
    return rc;
}

static int spec_check(const emdpo_identify_spec *s) {
    if (!(pop_weight(&s->truth, EMDPO_MATCH_MAX_K) > 0) || !(pop_weight(&s->alt, EMDPO_MAX_K) > 0) ||
        s->alt.p != s->truth.p)
        return EMDPO_ERR_INVALID_ARG;
    if (s->n_items < 1 || s->n_items > EMDPO_IDENTIFY_MAX_ITEMS || s->n_sizes < 1 ||
        s->n_sizes > EMDPO_IDENTIFY_MAX_SIZES || s->decisions < 1 || s->starts < 1 || s->starts > EMDPO_MAX_STARTS ||
        s->max_iter < 0 || s->max_iter > EMDPO_MAX_EM_ITER ||
        !(s->tol >= 0) || !(s->l2 >= 0))
        return EMDPO_ERR_INVALID_ARG;
    for (int a = 0; a < s->n_items; a++)
        if (s->items[a] < 2) return EMDPO_ERR_INVALID_ARG;
    for (int b = 0; b < s->n_sizes; b++)
        if (s->sizes[b] < 1) return EMDPO_ERR_INVALID_ARG;
    return EMDPO_OK;
}

/* Seeds of one items value: the same for every sample size, so samples nest. */
static void cell_seeds(uint64_t seed, int items, uint64_t *sim_seed, uint64_t *fit_seed) {
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, (uint64_t)items);
    *sim_seed = emdpo_rng_u64(&r);
    *fit_seed = emdpo_rng_u64(&r);
}

/* Errors of the fitted types against the truth under the best matching. */
static void fit_errors(const emdpo_population *truth, const double *theta, const double *eta,
                       emdpo_identify_row *row) {
    int perm[EMDPO_MATCH_MAX_K];
    double wsum = pop_weight(truth, EMDPO_MATCH_MAX_K), tv = 0.0;
    row->theta_err = emdpo_match_types(theta, truth->theta, truth->K, truth->p, perm);
    for (int k = 0; k < truth->K; k++) tv += fabs(eta[perm[k]] - truth->eta[k] / wsum);
    row->eta_err = 0.5 * tv;
}

static int fit_cell(const emdpo_identify_spec *s, const emdpo_data *d, uint64_t fit_seed, emdpo_identify_row *row) {
    emdpo_policy *pol = NULL;
    int rc = emdpo_loglinear_create(s->truth.K, s->truth.p, &pol);
    if (rc) return rc;
    emdpo_loglinear_of(pol)->l2 = s->l2;
    emdpo_em_opts eo;
    emdpo_em_opts_init(&eo);
    eo.starts = s->starts;
    eo.init = s->init;
    eo.max_iter = s->max_iter;
    eo.tol = s->tol;
    eo.seed = fit_seed;
    emdpo_em_result res;
    if (!(rc = emdpo_em_fit(&pol, d, &eo, &res))) {
        fit_errors(&s->truth, emdpo_loglinear_of(pol)->theta, res.eta, row);
        row->ll_fit = res.loglik / (double)d->n_annot;
        row->iterations = res.iterations;
        row->converged = res.converged;
        row->n_empty = res.n_empty;
        emdpo_em_result_free(&res);
    }
    emdpo_policy_free(pol);
    return rc;
}

static int run_cell(const emdpo_identify_spec *s, int items, int64_t n_annot, emdpo_identify_row *row) {
    memset(row, 0, sizeof *row);
    row->items = items;
    row->n_annot = n_annot;
    uint64_t sim_seed, fit_seed;
    cell_seeds(s->seed, items, &sim_seed, &fit_seed);
    emdpo_sim_spec sim;
    emdpo_sim_spec_init(&sim);
    sim.pop = s->truth;
    sim.n_annotators = n_annot;
    sim.decisions = s->decisions;
    sim.items = items;
    sim.design = s->design;
    sim.scale = s->scale;
    sim.inventory = s->inventory;
    sim.omit_text = 1;
    sim.seed = sim_seed;
    emdpo_data *d = NULL;
    int rc = emdpo_simulate(&sim, &d, NULL, NULL);
    if (rc) return rc;
    double ll_true = 0.0, ll_alt = 0.0;
    if (!(rc = emdpo_identify_max_dp(&s->truth, &s->alt, d, &row->max_dp)) &&
        !(rc = emdpo_population_loglik(&s->truth, d, NULL, &ll_true)) &&
        !(rc = emdpo_population_loglik(&s->alt, d, NULL, &ll_alt))) {
        row->ll_true = ll_true / (double)n_annot;
        row->ll_alt = ll_alt / (double)n_annot;
        row->ll_gap = ll_true - ll_alt;
        rc = fit_cell(s, d, fit_seed, row);
    }
    emdpo_data_free(d);
    return rc;
}

int emdpo_identify_run(const emdpo_identify_spec *s, emdpo_identify_row *rows, emdpo_identify_progress progress,
                       void *ud, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!s || !rows) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no spec or rows");
    int rc = spec_check(s);
    if (rc) return emdpo_diag_fail(diag, rc, "the study's spec is out of range");
    int total = s->n_items * s->n_sizes;
    for (int c = 0; c < total && !rc; c++) {
        rc = run_cell(s, s->items[c / s->n_sizes], s->sizes[c % s->n_sizes], &rows[c]);
        if (!rc && progress) progress(ud, &rows[c], c, total);
    }
    return rc ? emdpo_diag_fail(diag, rc, "study failed: %s", emdpo_status_name(rc)) : EMDPO_OK;
}

/* Plain-language verdicts: "falls" when the largest sample at least halves
 * the smallest one's error; a total log-likelihood gap below GAP_ZERO is
 * rounding, not evidence; choice probabilities closer than DP_ZERO are equal
 * up to rounding. */
#define FALL_RATIO 0.5
#define GAP_ZERO 1e-6
#define DP_ZERO 1e-12

static const char *items_word(int items) { return items == 2 ? "binary" : items == 3 ? "ternary" : "multi-item"; }

int emdpo_identify_conclude(const emdpo_identify_spec *s, const emdpo_identify_row *rows, char *lines, size_t cap,
                            int n_lines) {
    int n = 0;
    for (int a = 0; s && rows && a < s->n_items; a++) {
        const emdpo_identify_row *f = &rows[a * s->n_sizes], *l = &rows[a * s->n_sizes + s->n_sizes - 1];
        if (s->n_sizes > 1 && n < n_lines) {
            int falls = l->theta_err <= FALL_RATIO * f->theta_err;
            snprintf(lines + (size_t)n++ * cap, cap, "%s (%d items): theta error %s with N (%.3g at N=%lld -> %.3g at N=%lld)",
                     items_word(s->items[a]), s->items[a], falls ? "falls" : "does not fall", f->theta_err,
                     (long long)f->n_annot, l->theta_err, (long long)l->n_annot);
        }
        double gap = 0.0, dp = 0.0;
        for (int b = 0; b < s->n_sizes; b++) {
            gap = fmax(gap, fabs(rows[a * s->n_sizes + b].ll_gap));
            dp = fmax(dp, rows[a * s->n_sizes + b].max_dp);
        }
        if (n >= n_lines) continue;
        char *line = lines + (size_t)n++ * cap;
        if (gap < GAP_ZERO)
            snprintf(line, cap, "  truth and collapsed have the same choice probabilities (max |dP| %.1e) and the same "
                                "likelihood (|gap| <= %.1e nats): no amount of this data separates them",
                     dp, gap);
        else if (dp < DP_ZERO)
            snprintf(line, cap, "  every choice set has the same probabilities under both (max |dP| %.1e), but the "
                                "repeated decisions of each annotator separate them: %.1f nats at N=%lld",
                     dp, l->ll_gap, (long long)l->n_annot);
        else
            snprintf(line, cap, "  the truth out-fits the collapsed population by %.1f nats at N=%lld (%.1f at N=%lld): "
                                "the data tell them apart",
                     l->ll_gap, (long long)l->n_annot, f->ll_gap, (long long)f->n_annot);
    }
    return n;
}

static void json_row(FILE *fp, const emdpo_identify_row *r) {
    fprintf(fp, "    {\"items\": %d, \"n\": %lld, \"theta_error\": ", r->items, (long long)r->n_annot);
    emdpo_json_num(fp, r->theta_err);
    fputs(", \"eta_error\": ", fp);
    emdpo_json_num(fp, r->eta_err);
    fputs(", \"loglik_fit\": ", fp);
    emdpo_json_num(fp, r->ll_fit);
    fputs(", \"loglik_true\": ", fp);
    emdpo_json_num(fp, r->ll_true);
    fputs(", \"loglik_collapsed\": ", fp);
    emdpo_json_num(fp, r->ll_alt);
    fputs(", \"loglik_gap_total\": ", fp);
    emdpo_json_num(fp, r->ll_gap);
    fputs(", \"max_abs_dp\": ", fp);
    emdpo_json_num(fp, r->max_dp);
    fprintf(fp, ", \"iterations\": %d, \"converged\": %s, \"empty_types\": %d}", r->iterations,
            r->converged ? "true" : "false", r->n_empty);
}

int emdpo_identify_write_json(const emdpo_identify_spec *s, const emdpo_identify_row *rows, const char *inventory,
                              FILE *fp) {
    if (!s || !rows || !fp) return EMDPO_ERR_INVALID_ARG;
    char lines[EMDPO_IDENTIFY_MAX_LINES][EMDPO_IDENTIFY_LINE_CAP];
    int n_lines = emdpo_identify_conclude(s, rows, lines[0], sizeof lines[0], EMDPO_IDENTIFY_MAX_LINES);
    fprintf(fp, "{\n  \"emdpo_version\": \"%s\",\n  \"study\": \"identifiability\",\n", EMDPO_VERSION_STRING);
    fputs("  \"truth\": \"personalities\",\n  \"alternative\": \"personalities-collapsed\",\n  \"design\": ", fp);
    emdpo_json_str(fp, emdpo_sim_design_name(s->design));
    fputs(",\n  \"inventory\": ", fp);
    emdpo_json_str(fp, inventory);
    fprintf(fp, ",\n  \"decisions\": %d,\n  \"k\": %d,\n  \"starts\": %d,\n  \"init\": ", s->decisions, s->truth.K,
            s->starts);
    emdpo_json_str(fp, emdpo_init_name(s->init));
    fputs(",\n  \"l2\": ", fp);
    emdpo_json_num(fp, s->l2);
    fprintf(fp, ",\n  \"max_iter\": %d,\n  \"tol\": ", s->max_iter);
    emdpo_json_num(fp, s->tol);
    fprintf(fp, ",\n  \"seed\": %llu,\n  \"rows\": [\n", (unsigned long long)s->seed);
    int cells = s->n_items * s->n_sizes;
    for (int c = 0; c < cells; c++) {
        json_row(fp, &rows[c]);
        fputs(c + 1 < cells ? ",\n" : "\n", fp);
    }
    fputs("  ],\n  \"conclusion\": [", fp);
    for (int q = 0; q < n_lines; q++) {
        fputs(q ? ",\n    " : "\n    ", fp);
        emdpo_json_str(fp, lines[q]);
    }
    fputs("\n  ]\n}\n", fp);
    return ferror(fp) ? EMDPO_ERR_IO : EMDPO_OK;
}
