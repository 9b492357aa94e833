/* emdpo select: how many annotator types? Fits each K of a range on
 * training annotators and compares information criteria with the
 * log-likelihood of annotators the fits never saw (paper appendix D.3.1
 * tunes K on validation users). */
#include <math.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "cli.h"
#include "core/select.h"
#include "loglinear/loglinear.h"

#define SEL_CMD "select"

typedef struct sel_args {
    const char *data, *k, *format, *init, *out;
    int starts, max_iter, threads, json, quiet;
    uint64_t seed;
    double holdout, tol, l2;
} sel_args;

/* One K's fit and scores. */
typedef struct sel_row {
    int K, k_eff, npar, iterations, converged;
    double loglik, aic, bic, icl;
    double heldout;      /* total over validation annotators */
    double *eta, *theta; /* (K), (K, p) */
} sel_row;

typedef struct sel_study {
    const emdpo_data *train, *valid;
    int k_lo, k_hi, p;
    sel_row *rows;       /* (k_hi - k_lo + 1) */
    int best_bic, best_heldout; /* indices into rows */
} sel_study;

static int n_rows(const sel_study *st) { return st->k_hi - st->k_lo + 1; }

static void rows_free(sel_study *st) {
    if (!st->rows) return;
    for (int r = 0; r < n_rows(st); r++) {
        emdpo_free(st->rows[r].eta, (size_t)st->rows[r].K * sizeof(double));
        emdpo_free(st->rows[r].theta, (size_t)st->rows[r].K * st->p * sizeof(double));
    }
    emdpo_free(st->rows, (size_t)n_rows(st) * sizeof(sel_row));
    st->rows = NULL;
}

/* Scores of a finished fit; keeps copies of its parameters. */
static int score_fit(const sel_study *st, emdpo_policy *pol, const emdpo_em_result *res, sel_row *row) {
    int K = res->K, p = st->p;
    row->K = K;
    row->k_eff = K - res->n_empty;
    row->npar = row->k_eff * p + row->k_eff - 1;
    row->iterations = res->iterations;
    row->converged = res->converged;
    row->loglik = res->loglik;
    emdpo_em_criteria(res->loglik, res->gamma, st->train->n_annot, K, row->npar, &row->aic, &row->bic, &row->icl);
    row->eta = emdpo_malloc((size_t)K * sizeof(double));
    row->theta = emdpo_malloc((size_t)K * p * sizeof(double));
    if (!row->eta || !row->theta) return EMDPO_ERR_NOMEM;
    memcpy(row->eta, res->eta, (size_t)K * sizeof(double));
    memcpy(row->theta, emdpo_loglinear_of(pol)->theta, (size_t)K * p * sizeof(double));
    return emdpo_heldout_loglik(pol, res->eta, st->valid, NULL, &row->heldout);
}

static int fit_all(sel_study *st, const cli_fit_opts *base, int quiet) {
    double t0 = cli_now();
    for (int r = 0; r < n_rows(st); r++) {
        cli_fit_opts fo = *base;
        fo.K = st->k_lo + r;
        emdpo_policy *pol = NULL;
        emdpo_em_result res;
        int rc = cli_fit_loglinear(st->train, &fo, &pol, &res);
        if (rc) return cli_fail(SEL_CMD, rc, NULL, "EM failed");
        rc = score_fit(st, pol, &res, &st->rows[r]);
        emdpo_em_result_free(&res);
        emdpo_policy_free(pol);
        if (rc) return cli_fail(SEL_CMD, rc, NULL, "scoring failed");
        if (!quiet)
            fprintf(stderr, "  K = %d: loglik %.4f, held-out %.4f per annotator (%.1f s)\n", fo.K, st->rows[r].loglik,
                    st->rows[r].heldout / (double)st->valid->n_annot, cli_now() - t0);
    }
    st->best_bic = st->best_heldout = 0;
    for (int r = 1; r < n_rows(st); r++) {
        if (st->rows[r].bic < st->rows[st->best_bic].bic) st->best_bic = r;
        if (st->rows[r].heldout > st->rows[st->best_heldout].heldout) st->best_heldout = r;
    }
    return 0;
}

static void print_table(const sel_study *st, const sel_args *a) {
    printf("model selection on %s: %lld training annotators, %lld held out (share %g, seed %llu)\n", a->data,
           (long long)st->train->n_annot, (long long)st->valid->n_annot, a->holdout, (unsigned long long)a->seed);
    printf("%3s %5s %14s %14s %14s %14s %15s %5s %5s\n", "K", "npar", "loglik", "AIC", "BIC", "ICL",
           "held-out/annot", "iter", "conv");
    for (int r = 0; r < n_rows(st); r++) {
        const sel_row *w = &st->rows[r];
        printf("%3d %5d %14.4f %14.4f %14.4f %14.4f %15.6f %5d %5s", w->K, w->npar, w->loglik, w->aic, w->bic,
               w->icl, w->heldout / (double)st->valid->n_annot, w->iterations, w->converged ? "yes" : "no");
        if (r == st->best_bic) printf("  <- best BIC");
        if (r == st->best_heldout) printf("  <- best held-out");
        if (w->k_eff < w->K) printf("  (%d empty)", w->K - w->k_eff);
        putchar('\n');
    }
    printf("\nbest K by BIC: %d; by held-out log-likelihood: %d\n", st->rows[st->best_bic].K,
           st->rows[st->best_heldout].K);
}

static void json_row(FILE *fp, const sel_study *st, const sel_row *w) {
    fprintf(fp, "    {\"k\": %d, \"k_effective\": %d, \"npar\": %d, \"loglik\": ", w->K, w->k_eff, w->npar);
    cli_json_num(fp, w->loglik);
    fprintf(fp, ", \"aic\": ");
    cli_json_num(fp, w->aic);
    fprintf(fp, ", \"bic\": ");
    cli_json_num(fp, w->bic);
    fprintf(fp, ", \"icl\": ");
    cli_json_num(fp, w->icl);
    fprintf(fp, ", \"heldout_loglik\": ");
    cli_json_num(fp, w->heldout);
    fprintf(fp, ", \"heldout_loglik_per_annotator\": ");
    cli_json_num(fp, w->heldout / (double)st->valid->n_annot);
    fprintf(fp, ", \"iterations\": %d, \"converged\": %s,\n     \"eta\": ", w->iterations,
            w->converged ? "true" : "false");
    cli_json_nums(fp, w->eta, w->K);
    fprintf(fp, ", \"theta\": [");
    for (int k = 0; k < w->K; k++) {
        if (k) fputs(", ", fp);
        cli_json_nums(fp, w->theta + (size_t)k * st->p, st->p);
    }
    fprintf(fp, "]}");
}

static void write_json(FILE *fp, const sel_study *st, const sel_args *a) {
    fprintf(fp, "{\n  \"emdpo_version\": \"%s\",\n  \"data\": ", EMDPO_VERSION_STRING);
    cli_json_str(fp, a->data);
    fprintf(fp, ",\n  \"k_min\": %d,\n  \"k_max\": %d,\n  \"holdout\": ", st->k_lo, st->k_hi);
    cli_json_num(fp, a->holdout);
    fprintf(fp, ",\n  \"seed\": %llu,\n  \"starts\": %d,\n  \"init\": \"%s\",\n  \"l2\": ", (unsigned long long)a->seed,
            a->starts, strcmp(a->init, "random") == 0 ? "random" : "kmeans++");
    cli_json_num(fp, a->l2);
    fprintf(fp, ",\n  \"p\": %d,\n  \"n_train\": %lld,\n  \"n_heldout\": %lld,\n  \"rows\": [\n", st->p,
            (long long)st->train->n_annot, (long long)st->valid->n_annot);
    for (int r = 0; r < n_rows(st); r++) {
        json_row(fp, st, &st->rows[r]);
        fputs(r + 1 < n_rows(st) ? ",\n" : "\n", fp);
    }
    fprintf(fp, "  ],\n  \"best_k_bic\": %d,\n  \"best_k_heldout\": %d\n}\n", st->rows[st->best_bic].K,
            st->rows[st->best_heldout].K);
}

static int write_out(const sel_study *st, const sel_args *a) {
    char path[4200];
    snprintf(path, sizeof path, "%s/select.json", a->out);
    emdpo_afile af;
    if (emdpo_afile_open(&af, path)) return cli_usage_error(SEL_CMD, "cannot write %s", path);
    write_json(af.fp, st, a);
    if (emdpo_afile_commit(&af)) return cli_usage_error(SEL_CMD, "cannot write %s", path);
    if (!a->quiet) fprintf(stderr, "emdpo select: wrote %s\n", path);
    return 0;
}

/* Flags that need no data; the exit code of a bad one, else 0. */
static int check_args(const sel_args *a, int *k_lo, int *k_hi) {
    if (cli_parse_range(a->k, k_lo, k_hi) || *k_hi > EMDPO_MAX_K)
        return cli_usage_error(SEL_CMD, "--k must be K or LO..HI with 1 <= LO <= HI <= %d, not '%s'", EMDPO_MAX_K,
                               a->k);
    if (!(a->holdout > 0 && a->holdout < 1))
        return cli_usage_error(SEL_CMD, "--holdout must be in (0, 1), not %g", a->holdout);
    if (a->starts < 1) return cli_usage_error(SEL_CMD, "--starts must be >= 1");
    if (a->max_iter < 0) return cli_usage_error(SEL_CMD, "--max-iter must be >= 0");
    if (!(a->tol >= 0)) return cli_usage_error(SEL_CMD, "--tol must be >= 0");
    if (!(a->l2 >= 0)) return cli_usage_error(SEL_CMD, "--l2 must be >= 0");
    if (strcmp(a->init, "kmeans") && strcmp(a->init, "random"))
        return cli_usage_error(SEL_CMD, "--init must be kmeans or random, not '%s'", a->init);
    if (cli_format(a->format) < 0)
        return cli_usage_error(SEL_CMD, "--format must be jsonl, csv or auto, not '%s'", a->format);
    return 0;
}

/* Loads the data and splits it; the exit code of a failure, else 0. */
static int load_split(const sel_args *a, int k_hi, emdpo_data **train, emdpo_data **valid) {
    emdpo_data *d = NULL;
    int rc = cli_load_data(SEL_CMD, a->data, a->format, &d);
    if (rc) return rc;
    int64_t n = d->n_annot, nv = emdpo_holdout_count(n, a->holdout);
    if (d->p == 0)
        rc = cli_usage_error(SEL_CMD, "%s: responses are text; log-linear policies need {\"features\": [...]} "
                                      "responses", a->data);
    else if (nv < 1 || n - nv < k_hi)
        rc = cli_usage_error(SEL_CMD, "%lld annotators with --holdout %g leave %lld held out and %lld for training; "
                                      "need at least 1 held out and %d (the largest K) for training",
                             (long long)n, a->holdout, (long long)nv, (long long)(n - nv), k_hi);
    else if ((rc = emdpo_split_annotators(d, a->holdout, a->seed, train, valid)))
        rc = cli_fail(SEL_CMD, rc, NULL, "cannot split the annotators");
    emdpo_data_free(d);
    return rc;
}

/* The policy family named by --policy, NULL when absent. */
static const char *policy_flag(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--policy=", 9) == 0) return argv[i] + 9;
        if (strcmp(argv[i], "--policy") == 0) return i + 1 < argc ? argv[i + 1] : "";
    }
    return NULL;
}

int cmd_select(int argc, char **argv) {
    const char *policy = policy_flag(argc, argv);
    if (policy && strcmp(policy, "llama") == 0) return cli_select_llama(argc, argv);
    if (policy && strcmp(policy, "loglinear") != 0)
        return cli_usage_error(SEL_CMD, "--policy must be loglinear or llama, not '%s'", policy);
    sel_args a;
    memset(&a, 0, sizeof a);
    a.k = "1..6";
    a.init = "kmeans";
    a.holdout = 0.2;
    a.starts = 3;
    a.max_iter = 500;
    a.seed = 1;
    a.tol = 1e-9;
    const char *policy_seen = NULL;
    cli_opt opts[] = {
        {"policy", CLI_STR, &policy_seen, "NAME", "loglinear (this) or llama (see emdpo select --policy llama --help)",
         0, 0},
        {"data", CLI_STR, &a.data, "FILE", "preference data (.jsonl or long .csv) with feature responses", 1, 0},
        {"k", CLI_STR, &a.k, "RANGE", "numbers of types to compare, LO..HI or K (1..6)", 0, 0},
        {"holdout", CLI_DBL, &a.holdout, "X", "share of annotators held out for validation, in (0, 1) (0.2)", 0, 0},
        {"starts", CLI_INT, &a.starts, "N", "EM runs per K; the best log-likelihood wins (3)", 0, 0},
        {"seed", CLI_U64, &a.seed, "S", "seed of the split and of EM (1); same seed and threads give the same bits", 0, 0},
        {"init", CLI_STR, &a.init, "METHOD", "kmeans (k-means++ on annotator summaries) or random (kmeans)", 0, 0},
        {"max-iter", CLI_INT, &a.max_iter, "N", "EM iteration cap (500)", 0, 0},
        {"tol", CLI_DBL, &a.tol, "X", "stop when the log-likelihood gains less than X*|loglik| (1e-9)", 0, 0},
        {"l2", CLI_DBL, &a.l2, "X", "ridge penalty (X/2)|theta_k|^2 in each M-step (0)", 0, 0},
        {"format", CLI_STR, &a.format, "FMT", "jsonl, csv or auto (by extension)", 0, 0},
        {"out", CLI_STR, &a.out, "DIR", "also write DIR/select.json", 0, 0},
        {"json", CLI_FLAG, &a.json, NULL, "print the results as JSON instead of the table", 0, 0},
        {"threads", CLI_INT, &a.threads, "N", "OpenMP threads (default: all cores)", 0, 0},
        {"quiet", CLI_FLAG, &a.quiet, NULL, "no progress lines on stderr", 0, 0},
    };
    cli_cmd cmd = {SEL_CMD, "Choose the number of latent annotator types: fit each K on training annotators and "
                            "score it.",
                   "Annotators (not decisions) are split at random into training and held-out sets. For each K\n"
                   "the table shows the training log-likelihood, AIC, BIC and ICL (npar = K*p + K - 1 over\n"
                   "non-empty types; sample size = training annotators) and the log-likelihood per held-out\n"
                   "annotator, each mixing over the fitted types since their type is unknown. Lower\n"
                   "criteria and higher held-out log-likelihood are better; both winners are marked.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    sel_study st;
    memset(&st, 0, sizeof st);
    if ((rc = check_args(&a, &st.k_lo, &st.k_hi))) return rc;
    if (a.out && (rc = cli_mkdirs(SEL_CMD, a.out))) return rc;
    cli_set_threads(a.threads);
    emdpo_data *train = NULL, *valid = NULL;
    if ((rc = load_split(&a, st.k_hi, &train, &valid))) return rc;
    st.train = train;
    st.valid = valid;
    st.p = train->p;
    st.rows = emdpo_calloc((size_t)n_rows(&st), sizeof(sel_row));
    cli_fit_opts fo;
    cli_fit_opts_default(&fo);
    fo.starts = a.starts;
    fo.max_iter = a.max_iter;
    fo.seed = a.seed;
    fo.init = strcmp(a.init, "random") == 0 ? EMDPO_INIT_RANDOM : EMDPO_INIT_KMEANS;
    fo.tol = a.tol;
    fo.l2 = a.l2;
    if (!st.rows)
        rc = cli_fail(SEL_CMD, EMDPO_ERR_NOMEM, NULL, "out of memory");
    else
        rc = fit_all(&st, &fo, a.quiet);
    if (!rc) {
        if (a.json)
            write_json(stdout, &st, &a);
        else
            print_table(&st, &a);
        if (a.out) rc = write_out(&st, &a);
    }
    rows_free(&st);
    emdpo_data_free(train);
    emdpo_data_free(valid);
    return rc;
}
