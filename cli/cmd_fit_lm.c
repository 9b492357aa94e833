/* emdpo fit --policy llama: EM-DPO with K Llama policies, started from an
 * SFT model and initialised by k-means on annotator embeddings. Writes the
 * same contract as the log-linear fit (fit.json, posterior.csv) and the K
 * policies as Hugging Face checkpoints DIR/type_1 .. DIR/type_K. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/csv.h"
#include "base/lines.h"
#include "cli.h"
#include "cli_fit_lm.h"
#include "cli_lm.h"
#include "lm/io/llama_hf.h"
#include "lm/llama_policy.h"
#include "lm/lm_embed.h"

static void print_progress(void *ud, int start, int iter, double loglik, const double *eta, int K) {
    double t0 = *(const double *)ud;
    fprintf(stderr, "  start %d  iter %3d  loglik %.6f  %.1fs  eta", start + 1, iter, loglik, cli_now() - t0);
    for (int k = 0; k < K; k++) fprintf(stderr, " %.3f", eta[k]);
    fputc('\n', stderr);
}

static void write_fit_json(FILE *fp, const cli_fit_lm_args *a, const emdpo_data *d, const emdpo_em_result *res,
                           const emdpo_llama_policy_opts *po, int64_t steps, double elapsed) {
    int K = res->K;
    char abs[4096];
    fprintf(fp, "{\n  \"emdpo_version\": \"%s\",\n  \"family\": \"llama\",\n  \"data\": ", EMDPO_VERSION_STRING);
    cli_json_str(fp, realpath(a->data, abs) ? abs : a->data);
    fprintf(fp, ",\n  \"model\": ");
    cli_json_str(fp, realpath(a->model, abs) ? abs : a->model);
    fprintf(fp, ",\n  \"tokenizer\": ");
    cli_json_str(fp, realpath(a->tokenizer, abs) ? abs : a->tokenizer);
    fprintf(fp, ",\n  \"k\": %d,\n  \"beta\": ", K);
    cli_json_num(fp, po->beta);
    fprintf(fp, ",\n  \"loglik\": ");
    cli_json_num(fp, res->loglik);
    fprintf(fp, ",\n  \"iterations\": %d,\n  \"best_iteration\": %d,\n  \"converged\": %s,\n  \"starts\": %d,\n"
                "  \"best_start\": %d,\n  \"start_logliks\": ",
            res->iterations, res->best_iteration, res->converged ? "true" : "false", res->starts, res->best_start + 1);
    cli_json_nums(fp, res->start_loglik, res->starts);
    fprintf(fp, ",\n  \"max_iter\": %d,\n  \"tol\": ", a->max_iter);
    cli_json_num(fp, a->tol);
    fprintf(fp, ",\n  \"patience\": %d", a->patience);
    fprintf(fp, ",\n  \"seed\": %llu,\n  \"init\": \"%s\",\n  \"eta\": ", (unsigned long long)a->seed,
            strcmp(a->init, "kmeans") == 0 ? "kmeans++" : a->init);
    cli_json_nums(fp, res->eta, K);
    fprintf(fp, ",\n  \"empty_types\": [");
    for (int k = 0, first = 1; k < K; k++)
        if (res->empty[k]) {
            fprintf(fp, "%s%d", first ? "" : ", ", k + 1);
            first = 0;
        }
    /* A transformer's parameter count is no penalty the criteria were
     * derived for: they are reported as null. */
    fprintf(fp, "],\n  \"npar\": null,\n  \"aic\": null,\n  \"bic\": null,\n  \"icl\": null,\n");
    fprintf(fp, "  \"n_annotators\": %lld,\n  \"n_decisions\": %lld,\n  \"n_items\": %lld,\n",
            (long long)d->n_annot, (long long)d->n_dec, (long long)d->n_items);
    fprintf(fp, "  \"loglik_trace\": ");
    cli_json_nums(fp, res->trace, res->n_trace);
    fprintf(fp, ",\n  \"policies\": [");
    for (int k = 0; k < K; k++) fprintf(fp, "%s\"type_%d\"", k ? ", " : "", k + 1);
    fprintf(fp, "],\n  \"mstep\": {\"steps\": %lld, \"optimizer\": \"%s\", \"lr\": ", (long long)steps,
            po->optim.kind == EMDPO_OPTIM_ADAMW ? "adamw" : "rmsprop");
    cli_json_num(fp, po->optim.lr);
    fprintf(fp, ", \"warmup\": %lld, \"clip\": ", (long long)po->optim.warmup);
    cli_json_num(fp, po->optim.clip);
    fprintf(fp, ", \"batch\": %d, \"accum\": %d, \"max_length\": %d, \"max_prompt_length\": %d, "
                "\"restart\": %s, \"weight_norm\": \"%s\"},\n",
            po->batch, po->accum, po->max_length, po->max_prompt_length, po->restart ? "true" : "false",
            po->wnorm == EMDPO_LLAMA_WNORM_NONE ? "none" : "mean");
    fprintf(fp, "  \"elapsed_s\": ");
    cli_json_num(fp, elapsed);
    fprintf(fp, "\n}\n");
}

static void print_summary(const emdpo_data *d, const emdpo_em_result *res) {
    int K = res->K;
    printf("EM-DPO (llama): %lld annotators, %lld decisions, K = %d\n", (long long)d->n_annot, (long long)d->n_dec, K);
    printf("log-likelihood %.6f at iteration %d of %d (%s), best of %d start%s\neta", res->loglik, res->best_iteration,
           res->iterations, res->converged ? "stopped rising" : "iteration cap", res->starts, res->starts > 1 ? "s" : "");
    for (int k = 0; k < K; k++) printf(" %.4f%s", res->eta[k], res->empty[k] ? " (empty)" : "");
    printf("\n");
    cli_print_group_posterior(d, res);
}

/* The checkpoints first, fit.json last: a directory with fit.json is
 * complete. */
int cli_fit_lm_write(const char *cmd, const cli_fit_lm_args *a, const emdpo_data *d, const emdpo_policy *pol,
                     const emdpo_em_result *res, const emdpo_llama_policy_opts *po, double elapsed) {
    char path[4200];
    emdpo_diag diag;
    for (int k = 0; k < res->K; k++) {
        memset(&diag, 0, sizeof diag);
        snprintf(path, sizeof path, "%s/type_%d", a->out, k + 1);
        int rc = emdpo_llama_hf_save(emdpo_llama_policy_model(pol, k), path, &diag);
        if (rc) return cli_fail(cmd, rc, &diag, "cannot save a policy");
    }
    emdpo_afile fj, fp;
    snprintf(path, sizeof path, "%s/posterior.csv", a->out);
    if (emdpo_afile_open(&fp, path)) return cli_usage_error(cmd, "cannot write %s", path);
    cli_write_posterior(fp.fp, d, res);
    if (emdpo_afile_commit(&fp)) return cli_usage_error(cmd, "cannot write %s", path);
    snprintf(path, sizeof path, "%s/fit.json", a->out);
    if (emdpo_afile_open(&fj, path)) return cli_usage_error(cmd, "cannot write %s", path);
    write_fit_json(fj.fp, a, d, res, po, emdpo_llama_policy_steps(pol), elapsed);
    if (emdpo_afile_commit(&fj)) return cli_usage_error(cmd, "cannot write %s", path);
    return 0;
}

int cli_fit_lm_check(const char *cmd, cli_fit_lm_args *a) {
    if (a->policy && strcmp(a->policy, "llama"))
        return cli_usage_error(cmd, "--policy must be llama here, not '%s'", a->policy);
    if (a->k < 1 || a->k > EMDPO_MAX_K) return cli_usage_error(cmd, "--k must be in 1..%d", EMDPO_MAX_K);
    if (a->starts < 1) return cli_usage_error(cmd, "--starts must be >= 1");
    if (a->max_iter < 0) return cli_usage_error(cmd, "--max-iter must be >= 0");
    if (!(a->tol >= 0)) return cli_usage_error(cmd, "--tol must be >= 0");
    if (a->patience < 0) return cli_usage_error(cmd, "--patience must be >= 0");
    if (!(a->beta > 0) || !isfinite(a->beta)) return cli_usage_error(cmd, "--beta must be > 0");
    if (a->steps < 0) return cli_usage_error(cmd, "--steps must be >= 0");
    if (!(a->epochs > 0) || !isfinite(a->epochs)) return cli_usage_error(cmd, "--epochs must be > 0");
    if (a->batch < 1 || a->accum < 1 || a->score_batch < 1)
        return cli_usage_error(cmd, "--batch, --accum and --score-batch must be >= 1");
    if (!(a->lr >= 0)) return cli_usage_error(cmd, "--lr must be >= 0");
    if (a->warmup < 0) return cli_usage_error(cmd, "--warmup must be >= 0");
    if (!(a->clip >= 0)) return cli_usage_error(cmd, "--clip must be >= 0");
    if (strcmp(a->init, "kmeans") && strcmp(a->init, "kmeans-tokens") && strcmp(a->init, "random"))
        return cli_usage_error(cmd, "--init must be kmeans, kmeans-tokens or random, not '%s'", a->init);
    if ((a->opt_kind = emdpo_optim_parse(a->optimizer)) < 0)
        return cli_usage_error(cmd, "--optimizer must be rmsprop or adamw, not '%s'", a->optimizer);
    if (strcmp(a->weight_norm, "mean") == 0)
        a->wnorm = EMDPO_LLAMA_WNORM_MEAN;
    else if (strcmp(a->weight_norm, "none") == 0)
        a->wnorm = EMDPO_LLAMA_WNORM_NONE;
    else
        return cli_usage_error(cmd, "--weight-norm must be mean or none, not '%s'", a->weight_norm);
    return 0;
}

void cli_fit_lm_defaults(cli_fit_lm_args *a) {
    memset(a, 0, sizeof *a);
    a->init = "kmeans";
    a->optimizer = "rmsprop";
    a->weight_norm = "mean";
    a->starts = 1;
    a->seed = 1;
    a->max_iter = 5;
    a->patience = 2; /* stochastic M-steps can fall and recover (RESULTS §6) */
    a->beta = 0.1;
    a->lr = 1e-6;
    a->clip = 10.0;
    a->epochs = 1.0;
    a->batch = 4;
    a->accum = 1;
    a->score_batch = 16;
}

int cli_fit_lm_run(const char *cmd, const cli_fit_lm_args *a, const emdpo_llama *sft, const emdpo_tokenizer *tok,
                   const emdpo_data *d, emdpo_llama_policy_opts *po, emdpo_policy **pol, emdpo_em_result *res,
                   double *elapsed) {
    memset(res, 0, sizeof *res);
    *pol = NULL;
    emdpo_llama_policy_opts_default(po);
    po->beta = a->beta;
    po->max_length = a->max_length;
    po->max_prompt_length = a->max_prompt_length;
    emdpo_optim_config_default(&po->optim, (emdpo_optim_kind)a->opt_kind);
    po->optim.lr = a->lr;
    po->optim.warmup = a->warmup;
    po->optim.clip = a->clip;
    po->batch = a->batch;
    po->accum = a->accum;
    po->steps = a->steps;
    po->epochs = a->epochs;
    po->restart = a->restart;
    po->wnorm = (emdpo_llama_wnorm)a->wnorm;
    po->score_batch = a->score_batch;
    po->seed = a->seed;
    double t0 = cli_now();
    int rc = emdpo_llama_policy_create(a->k, sft, tok, po, d, pol);
    if (rc)
        return cli_fail(cmd, rc, NULL,
                        rc == EMDPO_ERR_LIMIT ? "a sequence does not fit the model (context or vocabulary)"
                                              : "cannot set up the policies");
    emdpo_em_opts eo;
    emdpo_em_opts_default(&eo);
    eo.max_iter = a->max_iter;
    eo.tol = a->tol;
    eo.patience = a->patience;
    eo.starts = a->starts;
    eo.seed = a->seed;
    eo.init = strcmp(a->init, "random") == 0 ? EMDPO_INIT_RANDOM : EMDPO_INIT_KMEANS;
    double *summary = NULL;
    size_t n_summary = 0;
    if (eo.init == EMDPO_INIT_KMEANS) {
        int tokens = strcmp(a->init, "kmeans-tokens") == 0;
        /* token ids share buckets beyond 1024, to bound the summaries' size */
        int q = tokens ? (sft->config.vocab_size < 1024 ? sft->config.vocab_size : 1024) : sft->config.dim;
        emdpo_lm_set *set = NULL;
        n_summary = (size_t)d->n_annot * (size_t)q;
        if (!(summary = emdpo_malloc(n_summary * sizeof *summary)))
            rc = EMDPO_ERR_NOMEM;
        else if (!(rc = emdpo_lm_set_from_data(d, tok, a->max_length, a->max_prompt_length, &set)))
            rc = tokens ? emdpo_lm_choice_summaries(d, set, q, summary)
                        : emdpo_lm_embed_annotators(sft, d, set, a->score_batch, summary);
        emdpo_lm_set_free(set);
        if (rc) {
            emdpo_free(summary, n_summary * sizeof *summary);
            return cli_fail(cmd, rc, NULL, "annotator summaries");
        }
        eo.summary = summary;
        eo.q = q;
    }
    if (!a->quiet && (a->progress || isatty(STDERR_FILENO))) {
        eo.progress = print_progress;
        eo.progress_ud = &t0;
    }
    rc = emdpo_em_fit(pol, d, &eo, res);
    emdpo_free(summary, n_summary * sizeof *summary);
    if (rc)
        return cli_fail(cmd, rc, NULL, rc == EMDPO_ERR_NUMERIC ? "EM failed: a loss or gradient is not finite (lower --lr?)"
                                                               : "EM failed");
    *elapsed = cli_now() - t0;
    return 0;
}

int cli_fit_llama(int argc, char **argv) {
    cli_fit_lm_args a;
    cli_fit_lm_defaults(&a);
    cli_opt opts[] = {
        {"policy", CLI_STR, &a.policy, "NAME", "llama: this command (loglinear: see emdpo fit --help)", 0, 0},
        {"data", CLI_STR, &a.data, "FILE", "preference JSONL with text responses", 1, 0},
        {"model", CLI_STR, &a.model, "CKPT", "SFT model, the start of every type and the reference: llama2.c .bin "
                                             "or Hugging Face directory", 1, 0},
        {"tokenizer", CLI_STR, &a.tokenizer, "FILE", "llama2.c tokenizer.bin for the model's vocabulary", 1, 0},
        {"k", CLI_INT, &a.k, "K", "number of latent annotator types", 1, 0},
        {"out", CLI_STR, &a.out, "DIR", "output: fit.json, posterior.csv, type_1 .. type_K", 1, 0},
        {"max-iter", CLI_INT, &a.max_iter, "N", "EM iterations after the first M-step (5, as the paper)", 0, 0},
        {"tol", CLI_DBL, &a.tol, "X", "an iteration improves when it beats the best log-likelihood so far by more "
                                      "than X*|loglik| (0)", 0, 0},
        {"patience", CLI_INT, &a.patience, "N", "stop after N+1 iterations in a row that do not improve (2)", 0, 0},
        {"init", CLI_STR, &a.init, "METHOD", "kmeans (on SFT embeddings of each annotator's chosen responses), "
                                             "kmeans-tokens (on the chosen responses' tokens against the "
                                             "decision's mean) or random (kmeans)", 0, 0},
        {"starts", CLI_INT, &a.starts, "N", "EM runs from different seeds; the best log-likelihood wins (1)", 0, 0},
        {"seed", CLI_U64, &a.seed, "S", "random seed (1); same seed and threads give the same bits", 0, 0},
        {"beta", CLI_DBL, &a.beta, "X", "DPO temperature: utilities are beta * log-ratios (0.1)", 0, 0},
        {"steps", CLI_I64, &a.steps, "N", "optimizer steps per type per M-step (default: --epochs)", 0, 0},
        {"epochs", CLI_DBL, &a.epochs, "X", "passes over the decisions per M-step when --steps is not given (1)", 0, 0},
        {"lr", CLI_DBL, &a.lr, "X", "learning rate (1e-6)", 0, 0},
        {"optimizer", CLI_STR, &a.optimizer, "NAME", "rmsprop or adamw (rmsprop)", 0, 0},
        {"warmup", CLI_I64, &a.warmup, "N", "linear warmup steps, restarted every M-step (0)", 0, 0},
        {"clip", CLI_DBL, &a.clip, "X", "max gradient norm, 0 = off (10)", 0, 0},
        {"batch", CLI_INT, &a.batch, "N", "decisions per micro-batch (4)", 0, 0},
        {"accum", CLI_INT, &a.accum, "N", "micro-batches per optimizer step (1)", 0, 0},
        {"max-length", CLI_INT, &a.max_length, "N", "truncate sequences to N tokens (min(512, context))", 0, 0},
        {"max-prompt-length", CLI_INT, &a.max_prompt_length, "N", "cut prompts to N tokens first (max-length/2)", 0, 0},
        {"restart", CLI_FLAG, &a.restart, NULL, "start every M-step from the SFT model (the authors' code) instead "
                                                "of the type's current policy", 0, 0},
        {"weight-norm", CLI_STR, &a.weight_norm, "MODE", "mean: each type's weights rescaled to mean 1; none: raw "
                                                         "gamma, the authors' code (mean)", 0, 0},
        {"score-batch", CLI_INT, &a.score_batch, "N", "sequences per scoring forward (16)", 0, 0},
        {"threads", CLI_INT, &a.threads, "N", "OpenMP threads (default: all cores)", 0, 0},
        {"progress", CLI_FLAG, &a.progress, NULL, "log-likelihood of every iteration on stderr (default on a terminal)",
         0, 0},
        {"quiet", CLI_FLAG, &a.quiet, NULL, "print nothing but errors", 0, 0},
    };
    cli_cmd cmd = {"fit", "Fit EM-DPO with K latent annotator types on Llama policies (--policy llama).",
                   "Every type starts as a copy of the SFT model, which is also the reference. The E-step\n"
                   "scores every response under every type (reference log-probabilities are computed once);\n"
                   "each M-step is weighted DPO of every type on all decisions, weighted by the posterior.\n"
                   "Writes DIR/type_1 .. DIR/type_K (Hugging Face config.json + model.safetensors, usable as\n"
                   "--model elsewhere), DIR/posterior.csv (annotator,gamma_1..gamma_K) and DIR/fit.json last\n"
                   "(k, loglik, iterations, best_iteration, converged, eta, n_annotators, n_decisions,\n"
                   "loglik_trace, family \"llama\"; aic, bic and icl are null). Stochastic M-steps do not\n"
                   "guarantee EM's monotone ascent: the fit keeps the iterate with the best log-likelihood\n"
                   "(best_iteration, counting the first E-step as 0; the policies, posterior and eta are\n"
                   "that iterate's), and \"converged\" means it stopped by --tol and --patience.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = cli_fit_lm_check("fit", &a))) return rc;
    cli_set_threads(a.threads);

    emdpo_llama *sft = NULL;
    emdpo_tokenizer *tok = NULL;
    emdpo_data *d = NULL;
    emdpo_policy *pol = NULL;
    emdpo_em_result res;
    memset(&res, 0, sizeof res);
    if ((rc = cli_lm_model("fit", a.model, NULL, 0, &sft)) ||
        (rc = cli_lm_tokenizer("fit", a.tokenizer, sft->config.vocab_size, &tok)) ||
        (rc = cli_lm_lengths("fit", sft, &a.max_length, &a.max_prompt_length)) ||
        (rc = cli_load_data("fit", a.data, "jsonl", &d)))
        goto done;
    if (!emdpo_data_has_text(d)) {
        rc = cli_usage_error("fit", "%s: responses have no text; --policy llama needs text responses", a.data);
        goto done;
    }
    if ((rc = cli_mkdirs("fit", a.out))) goto done;
    emdpo_llama_policy_opts po;
    double elapsed = 0.0;
    if ((rc = cli_fit_lm_run("fit", &a, sft, tok, d, &po, &pol, &res, &elapsed))) goto done;
    if (!a.quiet) print_summary(d, &res);
    if (res.n_empty) fprintf(stderr, "emdpo fit: note: %d type(s) lost all weight and are reported empty\n", res.n_empty);
    rc = cli_fit_lm_write("fit", &a, d, pol, &res, &po, elapsed);
    if (!rc && !a.quiet) printf("wrote %s/fit.json, %s/posterior.csv and %s/type_1 .. type_%d\n", a.out, a.out, a.out, a.k);
done:
    emdpo_em_result_free(&res);
    emdpo_policy_free(pol);
    emdpo_data_free(d);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(sft);
    return rc;
}
