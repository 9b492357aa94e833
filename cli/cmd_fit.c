/* emdpo fit: EM-DPO with K latent types on log-linear policies. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/csv.h"
#include "base/lines.h"
#include "cli.h"
#include "loglinear/loglinear.h"
#include "loglinear/loglinear_se.h"

typedef struct fit_args {
    const char *data, *out, *format, *init;
    int k, starts, max_iter, threads, quiet, no_se, progress;
    uint64_t seed;
    double tol, l2, beta;
} fit_args;

static int npar_of(const emdpo_em_result *res, int p) {
    int k_eff = res->K - res->n_empty;
    return k_eff * p + k_eff - 1;
}

static void write_fit_json(FILE *fp, const fit_args *a, const emdpo_data *d, const emdpo_loglinear *ll,
                           const emdpo_em_result *res, const double *se_theta, const double *se_eta,
                           double elapsed) {
    int K = res->K, p = ll->p, npar = npar_of(res, p);
    double aic, bic, icl;
    emdpo_em_criteria(res->loglik, res->gamma, d->n_annot, K, npar, &aic, &bic, &icl);
    fprintf(fp, "{\n  \"emdpo_version\": \"%s\",\n  \"family\": \"loglinear\",\n", EMDPO_VERSION_STRING);
    /* An absolute path lets aggregate find the data from any directory. */
    char abs[4096];
    fprintf(fp, "  \"data\": ");
    cli_json_str(fp, realpath(a->data, abs) ? abs : a->data);
    fprintf(fp, ",\n  \"k\": %d,\n  \"p\": %d,\n  \"beta\": ", K, p);
    cli_json_num(fp, ll->beta);
    fprintf(fp, ",\n  \"l2\": ");
    cli_json_num(fp, ll->l2);
    fprintf(fp, ",\n  \"feature_names\": ");
    if (d->feature_name) {
        fputc('[', fp);
        for (int q = 0; q < p; q++) {
            if (q) fputs(", ", fp);
            cli_json_str(fp, d->feature_name[q]);
        }
        fputc(']', fp);
    } else {
        fputs("null", fp);
    }
    fprintf(fp, ",\n  \"loglik\": ");
    cli_json_num(fp, res->loglik);
    fprintf(fp, ",\n  \"iterations\": %d,\n  \"best_iteration\": %d,\n  \"converged\": %s,\n", res->iterations,
            res->best_iteration, res->converged ? "true" : "false");
    fprintf(fp, "  \"mstep_unconverged\": %d,\n  \"starts\": %d,\n  \"best_start\": %d,\n  \"start_logliks\": ",
            res->mstep_unconverged, res->starts, res->best_start + 1);
    cli_json_nums(fp, res->start_loglik, res->starts);
    fprintf(fp, ",\n  \"seed\": %llu,\n  \"init\": \"%s\",\n  \"eta\": ", (unsigned long long)a->seed,
            strcmp(a->init, "random") == 0 ? "random" : "kmeans++");
    cli_json_nums(fp, res->eta, K);
    fprintf(fp, ",\n  \"theta\": [");
    for (int k = 0; k < K; k++) {
        fputs(k ? ",\n    " : "\n    ", fp);
        cli_json_nums(fp, ll->theta + (size_t)k * p, p);
    }
    fprintf(fp, "\n  ],\n  \"se_eta\": ");
    if (se_eta) cli_json_nums(fp, se_eta, K); else fputs("null", fp);
    fprintf(fp, ",\n  \"se_theta\": ");
    if (se_theta) {
        fputc('[', fp);
        for (int k = 0; k < K; k++) {
            fputs(k ? ", " : "", fp);
            cli_json_nums(fp, se_theta + (size_t)k * p, p);
        }
        fputc(']', fp);
    } else {
        fputs("null", fp);
    }
    fprintf(fp, ",\n  \"empty_types\": [");
    for (int k = 0, first = 1; k < K; k++)
        if (res->empty[k]) {
            fprintf(fp, "%s%d", first ? "" : ", ", k + 1);
            first = 0;
        }
    fprintf(fp, "],\n  \"npar\": %d,\n  \"aic\": ", npar);
    cli_json_num(fp, aic);
    fprintf(fp, ",\n  \"bic\": ");
    cli_json_num(fp, bic);
    fprintf(fp, ",\n  \"icl\": ");
    cli_json_num(fp, icl);
    fprintf(fp, ",\n  \"n_annotators\": %lld,\n  \"n_decisions\": %lld,\n  \"n_items\": %lld,\n",
            (long long)d->n_annot, (long long)d->n_dec, (long long)d->n_items);
    fprintf(fp, "  \"loglik_trace\": ");
    cli_json_nums(fp, res->trace, res->n_trace);
    fprintf(fp, ",\n  \"elapsed_s\": ");
    cli_json_num(fp, elapsed);
    fprintf(fp, "\n}\n");
}

static void print_summary(const emdpo_data *d, const emdpo_loglinear *ll, const emdpo_em_result *res,
                          const double *se_theta) {
    int K = res->K, p = ll->p;
    printf("EM-DPO (log-linear): %lld annotators, %lld decisions, K = %d\n", (long long)d->n_annot,
           (long long)d->n_dec, K);
    printf("log-likelihood %.6f at iteration %d of %d (%s), best of %d start%s\n", res->loglik, res->best_iteration,
           res->iterations, res->converged ? "converged" : "iteration cap", res->starts, res->starts > 1 ? "s" : "");
    printf("%-6s %8s", "type", "eta");
    for (int q = 0; q < p; q++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", q + 1);
        printf(" %10.10s", d->feature_name ? d->feature_name[q] : name);
    }
    printf("\n");
    for (int k = 0; k < K; k++) {
        printf("%-6d %8.4f", k + 1, res->eta[k]);
        for (int q = 0; q < p; q++) printf(" %10.4f", ll->theta[(size_t)k * p + q]);
        printf("%s\n", res->empty[k] ? "  (empty)" : "");
        if (se_theta && !res->empty[k]) {
            printf("%-6s %8s", "  se", "");
            for (int q = 0; q < p; q++) printf(" %10.4f", se_theta[(size_t)k * p + q]);
            printf("\n");
        }
    }
    cli_print_group_posterior(d, res);
}

static int write_outputs(const fit_args *a, const emdpo_data *d, const emdpo_loglinear *ll,
                         const emdpo_em_result *res, const double *se_theta, const double *se_eta, double elapsed) {
    char path[4200];
    emdpo_afile fj, fp;
    memset(&fp, 0, sizeof fp);
    snprintf(path, sizeof path, "%s/fit.json", a->out);
    if (emdpo_afile_open(&fj, path)) return cli_usage_error("fit", "cannot write %s", path);
    snprintf(path, sizeof path, "%s/posterior.csv", a->out);
    if (emdpo_afile_open(&fp, path)) {
        emdpo_afile_abort(&fj);
        return cli_usage_error("fit", "cannot write %s", path);
    }
    write_fit_json(fj.fp, a, d, ll, res, se_theta, se_eta, elapsed);
    cli_write_posterior(fp.fp, d, res);
    if (emdpo_afile_commit(&fj)) {
        emdpo_afile_abort(&fp);
        return cli_usage_error("fit", "cannot write %s/fit.json", a->out);
    }
    if (emdpo_afile_commit(&fp)) return cli_usage_error("fit", "cannot write %s/posterior.csv", a->out);
    return 0;
}

/* The policy family named by --policy, NULL when absent. */
static const char *policy_flag(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--policy=", 9) == 0) return argv[i] + 9;
        if (strcmp(argv[i], "--policy") == 0) return i + 1 < argc ? argv[i + 1] : "";
    }
    return NULL;
}

int cmd_fit(int argc, char **argv) {
    const char *policy = policy_flag(argc, argv);
    if (policy && strcmp(policy, "llama") == 0) return cli_fit_llama(argc, argv);
    if (policy && strcmp(policy, "loglinear") != 0)
        return cli_usage_error("fit", "--policy must be loglinear or llama, not '%s'", policy);
    fit_args a = {0};
    a.init = "kmeans";
    a.starts = 1;
    a.seed = 1;
    a.max_iter = 500;
    a.tol = 1e-9;
    a.beta = 1.0;
    const char *policy_seen = NULL;
    cli_opt opts[] = {
        {"policy", CLI_STR, &policy_seen, "NAME", "loglinear (this) or llama (see emdpo fit --policy llama --help)", 0, 0},
        {"data", CLI_STR, &a.data, "FILE", "preference data (.jsonl or long .csv) with feature responses", 1, 0},
        {"k", CLI_INT, &a.k, "K", "number of latent annotator types", 1, 0},
        {"out", CLI_STR, &a.out, "DIR", "output directory for fit.json and posterior.csv", 1, 0},
        {"starts", CLI_INT, &a.starts, "N", "EM runs from different seeds; the best log-likelihood wins (1)", 0, 0},
        {"seed", CLI_U64, &a.seed, "S", "random seed (1); same seed and threads give the same bits", 0, 0},
        {"init", CLI_STR, &a.init, "METHOD", "kmeans (k-means++ on annotator summaries) or random (kmeans)", 0, 0},
        {"max-iter", CLI_INT, &a.max_iter, "N", "EM iteration cap (500)", 0, 0},
        {"tol", CLI_DBL, &a.tol, "X", "stop when the log-likelihood gains less than X*|loglik| (1e-9)", 0, 0},
        {"l2", CLI_DBL, &a.l2, "X", "ridge penalty (X/2)|theta_k|^2 in each M-step (0)", 0, 0},
        {"beta", CLI_DBL, &a.beta, "X", "policy temperature recorded for aggregation (1)", 0, 0},
        {"format", CLI_STR, &a.format, "FMT", "jsonl, csv or auto (by extension)", 0, 0},
        {"threads", CLI_INT, &a.threads, "N", "OpenMP threads (default: all cores)", 0, 0},
        {"no-se", CLI_FLAG, &a.no_se, NULL, "skip standard errors", 0, 0},
        {"progress", CLI_FLAG, &a.progress, NULL, "log-likelihood of every iteration on stderr (default on a terminal)", 0, 0},
        {"quiet", CLI_FLAG, &a.quiet, NULL, "print nothing but errors", 0, 0},
    };
    cli_cmd cmd = {"fit", "Fit EM-DPO with K latent annotator types on log-linear policies.",
                   "Writes DIR/fit.json (k, loglik, iterations, best_iteration, converged, eta, theta, se_eta,\n"
                   "se_theta, aic, bic, icl, n_annotators, n_decisions, loglik_trace, ...) and DIR/posterior.csv\n"
                   "(annotator,gamma_1..gamma_K). Both are written atomically. The fit returns the iterate with\n"
                   "the best log-likelihood: best_iteration is its index in loglik_trace (from 0, the E-step\n"
                   "after the first M-step); EM on log-linear policies never falls, so it is the last one but\n"
                   "for rounding.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (a.k < 1 || a.k > EMDPO_MAX_K) return cli_usage_error("fit", "--k must be in 1..%d", EMDPO_MAX_K);
    if (a.starts < 1) return cli_usage_error("fit", "--starts must be >= 1");
    if (a.max_iter < 0) return cli_usage_error("fit", "--max-iter must be >= 0");
    if (!(a.tol >= 0)) return cli_usage_error("fit", "--tol must be >= 0");
    if (!(a.l2 >= 0)) return cli_usage_error("fit", "--l2 must be >= 0");
    if (!(a.beta > 0)) return cli_usage_error("fit", "--beta must be > 0");
    if (strcmp(a.init, "kmeans") && strcmp(a.init, "random"))
        return cli_usage_error("fit", "--init must be kmeans or random, not '%s'", a.init);
    cli_set_threads(a.threads);

    emdpo_data *d = NULL;
    if ((rc = cli_load_data("fit", a.data, a.format, &d))) return rc;
    if (d->p == 0) {
        emdpo_data_free(d);
        return cli_usage_error("fit", "%s: responses are text; log-linear policies need {\"features\": [...]} "
                                      "responses", a.data);
    }
    if ((rc = cli_mkdirs("fit", a.out))) {
        emdpo_data_free(d);
        return rc;
    }
    cli_fit_opts fo;
    cli_fit_opts_default(&fo);
    fo.K = a.k;
    fo.starts = a.starts;
    fo.max_iter = a.max_iter;
    fo.seed = a.seed;
    fo.init = strcmp(a.init, "random") == 0 ? EMDPO_INIT_RANDOM : EMDPO_INIT_KMEANS;
    fo.tol = a.tol;
    fo.l2 = a.l2;
    fo.beta = a.beta;
    fo.verbose = !a.quiet && (a.progress || isatty(STDERR_FILENO));
    emdpo_policy *pol = NULL;
    emdpo_em_result res;
    double t0 = cli_now();
    rc = cli_fit_loglinear(d, &fo, &pol, &res);
    if (rc) {
        emdpo_data_free(d);
        return cli_fail("fit", rc, NULL, "EM failed");
    }
    emdpo_loglinear *ll = emdpo_loglinear_of(pol);
    size_t n_theta = (size_t)a.k * d->p;
    double *se_theta = NULL, *se_eta = NULL;
    if (!a.no_se) {
        se_theta = emdpo_malloc(n_theta * sizeof(double));
        se_eta = emdpo_malloc((size_t)a.k * sizeof(double));
        int se_rc = se_theta && se_eta ? emdpo_loglinear_stderr(d, ll, res.eta, res.empty, se_theta, se_eta)
                                       : EMDPO_ERR_NOMEM;
        if (se_rc == EMDPO_ERR_NUMERIC)
            fprintf(stderr, "emdpo fit: note: the observed information is singular here; standard errors "
                            "are reported as null where undefined\n");
        else if (se_rc) {
            emdpo_free(se_theta, n_theta * sizeof(double));
            emdpo_free(se_eta, (size_t)a.k * sizeof(double));
            se_theta = se_eta = NULL;
        }
    }
    double elapsed = cli_now() - t0;
    if (!a.quiet) print_summary(d, ll, &res, se_theta);
    if (res.n_empty) fprintf(stderr, "emdpo fit: note: %d type(s) lost all weight and are reported empty\n", res.n_empty);
    rc = write_outputs(&a, d, ll, &res, se_theta, se_eta, elapsed);
    if (!rc && !a.quiet) printf("wrote %s/fit.json and %s/posterior.csv\n", a.out, a.out);
    emdpo_free(se_theta, n_theta * sizeof(double));
    emdpo_free(se_eta, (size_t)a.k * sizeof(double));
    emdpo_em_result_free(&res);
    emdpo_policy_free(pol);
    emdpo_data_free(d);
    return rc;
}
