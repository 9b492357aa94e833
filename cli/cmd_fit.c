/* emdpo fit: EM-DPO with K latent types, on log-linear policies or (with
 * --policy llama) on Llama policies. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* --policy: loglinear or llama. */
static const char *policy_family(int argc, char **argv) {
    const char *p = cli_flag_value(argc, argv, "policy");
    return p ? p : "loglinear";
}

static void print_loglinear(const emdpo_fit *f, int have_se) {
    int K = emdpo_fit_k(f), p = emdpo_fit_p(f);
    double *theta = malloc((size_t)K * (size_t)p * sizeof *theta), *se = malloc((size_t)K * (size_t)p * sizeof *se);
    double eta[EMDPO_MAX_K];
    if (!theta || !se || emdpo_fit_theta(f, theta, K, p) || emdpo_fit_eta(f, eta, K)) {
        free(theta);
        free(se);
        return;
    }
    have_se = have_se && emdpo_fit_se(f, se, NULL) == EMDPO_OK;
    printf("EM-DPO (log-linear): %lld annotators, %lld decisions, K = %d\n", (long long)emdpo_fit_n_annotators(f),
           (long long)emdpo_fit_n_decisions(f), K);
    int starts = emdpo_fit_starts(f);
    printf("log-likelihood %.6f at iteration %d of %d (%s), best of %d start%s\n", emdpo_fit_loglik(f),
           emdpo_fit_best_iteration(f), emdpo_fit_iterations(f), emdpo_fit_converged(f) ? "converged" : "iteration cap",
           starts, starts > 1 ? "s" : "");
    printf("%-6s %8s", "type", "eta");
    for (int q = 0; q < p; q++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", q + 1);
        const char *fn = emdpo_fit_feature_name(f, q);
        printf(" %10.10s", fn ? fn : name);
    }
    printf("\n");
    for (int k = 0; k < K; k++) {
        printf("%-6d %8.4f", k + 1, eta[k]);
        for (int q = 0; q < p; q++) printf(" %10.4f", theta[(size_t)k * p + q]);
        printf("%s\n", emdpo_fit_empty(f, k) ? "  (empty)" : "");
        if (have_se && !emdpo_fit_empty(f, k)) {
            printf("%-6s %8s", "  se", "");
            for (int q = 0; q < p; q++) printf(" %10.4f", se[(size_t)k * p + q]);
            printf("\n");
        }
    }
    free(theta);
    free(se);
}

static int fit_loglinear(int argc, char **argv) {
    emdpo_loglinear_opts o;
    emdpo_loglinear_opts_init(&o);
    const char *data = NULL, *out = NULL, *policy = NULL;
    emdpo_format format = EMDPO_FORMAT_AUTO;
    int threads = 0, quiet = 0, no_se = 0, progress = 0;
    cli_read rd;
    cli_read_init(&rd);
    cli_opt opts[] = {
        {"policy", CLI_STR, &policy, "NAME", "loglinear (this) or llama (see emdpo fit --policy llama --help)", 0, 0, 0},
        {"data", CLI_STR, &data, "FILE", "preference data (.jsonl or long .csv) with feature responses", 1, 0, 0},
        {"k", CLI_INT, &o.k, "K", "number of latent annotator types", 1, 0, 0},
        {"out", CLI_STR, &out, "DIR", "output directory for fit.json and posterior.csv", 1, 0, 0},
        {"starts", CLI_INT, &o.em.starts, "N", "EM runs from different seeds; the best log-likelihood wins", 0, 0, 0},
        {"seed", CLI_U64, &o.em.seed, "S", "random seed; same seed and threads give the same bits", 0, 0, 0},
        {"init", CLI_ENUM, &o.em.init, "METHOD", "kmeans (k-means++ on annotator summaries) or random", 0, 0,
         emdpo_init_name},
        {"max-iter", CLI_INT, &o.em.max_iter, "N", "EM iteration cap", 0, 0, 0},
        {"tol", CLI_DBL, &o.em.tol, "X", "stop when the log-likelihood gains less than X*|loglik|", 0, 0, 0},
        {"l2", CLI_DBL, &o.l2, "X", "ridge penalty (X/2)|theta_k|^2 in each M-step", 0, 0, 0},
        {"beta", CLI_DBL, &o.beta, "X", "policy temperature recorded for aggregation", 0, 0, 0},
        {"format", CLI_ENUM, &format, "FMT", "jsonl, csv or auto (by extension)", 0, 0, emdpo_format_name},
        CLI_FEATURE_READ_FLAG_LIST(&rd),
        CLI_THREADS_FLAG(&threads),
        {"no-se", CLI_FLAG, &no_se, NULL, "skip standard errors", 0, 0, 0},
        {"progress", CLI_FLAG, &progress, NULL, "log-likelihood of every iteration on stderr (default on a terminal)",
         0, 0, 0},
        {"quiet", CLI_FLAG, &quiet, NULL, "print nothing but errors", 0, 0, 0},
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
    /* Under mpirun rank 0 alone reports (main.c silences the others' stdout). */
    int lead = emdpo_dist_rank() == 0;
    if (!lead) quiet = 1;
    if (lead && cli_progress_on(quiet, progress)) o.em.progress = cli_em_progress;
    emdpo_set_threads(threads);
    rd.o.share = 1; /* under mpirun each process reads its share of the annotators */

    emdpo_data *d = NULL;
    emdpo_fit *f = NULL;
    emdpo_diag diag;
    if ((rc = cli_load_data("fit", data, format, &rd, &d))) return rc;
    /* A directory that cannot be made is refused before the fit, not after. */
    if ((rc = emdpo_mkdirs(out, &diag)) || (rc = emdpo_loglinear_fit(d, &o, &f, &diag))) {
        rc = cli_fail("fit", rc, &diag, &cmd);
    } else {
        int se_rc = no_se ? EMDPO_ERR_UNSUPPORTED : emdpo_fit_compute_se(f, d, &diag);
        if (se_rc == EMDPO_ERR_NUMERIC && lead)
            fprintf(stderr, "emdpo fit: note: the observed information is singular here; standard errors are "
                            "reported as null where undefined\n");
        if (!quiet) {
            print_loglinear(f, !no_se);
            cli_print_group_posterior(d, f);
        }
        if (emdpo_fit_n_empty(f) && lead)
            fprintf(stderr, "emdpo fit: note: %d type(s) lost all weight and are reported empty\n", emdpo_fit_n_empty(f));
        /* Under mpirun rank 0 writes the fit, with every process's rows of
         * the posterior. */
        if ((rc = emdpo_fit_write(f, out, &diag))) rc = cli_fail("fit", rc, &diag, &cmd);
        else if (!quiet) printf("wrote %s/fit.json and %s/posterior.csv\n", out, out);
    }
    emdpo_fit_free(f);
    emdpo_data_free(d);
    return rc;
}

static void print_llama(const emdpo_data *d, const emdpo_fit *f) {
    int K = emdpo_fit_k(f), starts = emdpo_fit_starts(f);
    double eta[EMDPO_MAX_K];
    emdpo_fit_eta(f, eta, K);
    printf("EM-DPO (llama): %lld annotators, %lld decisions, K = %d\n", (long long)emdpo_data_n_annotators(d),
           (long long)emdpo_data_n_decisions(d), K);
    printf("log-likelihood %.6f at iteration %d of %d (%s), best of %d start%s\neta", emdpo_fit_loglik(f),
           emdpo_fit_best_iteration(f), emdpo_fit_iterations(f),
           emdpo_fit_converged(f) ? "stopped rising" : "iteration cap", starts, starts > 1 ? "s" : "");
    for (int k = 0; k < K; k++) printf(" %.4f%s", eta[k], emdpo_fit_empty(f, k) ? " (empty)" : "");
    printf("\n");
    cli_print_group_posterior(d, f);
}

static int fit_llama(int argc, char **argv) {
    emdpo_lm_fit_opts o;
    emdpo_lm_fit_opts_init(&o);
    const char *policy = NULL, *data = NULL, *model = NULL, *tokenizer = NULL, *out = NULL;
    int threads = 0, quiet = 0, progress = 0;
    cli_read rd;
    cli_lora lora;
    cli_read_init(&rd);
    cli_opt opts[CLI_LM_FIT_FLAGS + 12 + 4] = {
        {"policy", CLI_STR, &policy, "NAME", "llama: this command (loglinear: see emdpo fit --help)", 0, 0, 0},
        {"data", CLI_STR, &data, "FILE", "preference JSONL with text responses", 1, 0, 0},
        {"model", CLI_STR, &model, "CKPT", "SFT model, the start of every type and the reference: llama2.c .bin or "
                                           "Hugging Face directory", 1, 0, 0},
        CLI_TOKENIZER_FLAG(&tokenizer),
        {"k", CLI_INT, &o.k, "K", "number of latent annotator types", 1, 0, 0},
        {"out", CLI_STR, &out, "DIR", "output: fit.json, posterior.csv, type_1 .. type_K", 1, 0, 0},
    };
    int n = 6;
    n += cli_lm_fit_flags(opts + n, &o, &lora);
    const cli_opt read_flags[] = {CLI_READ_FLAG_LIST(&rd)};
    memcpy(opts + n, read_flags, sizeof read_flags);
    n += (int)(sizeof read_flags / sizeof read_flags[0]);
    opts[n++] = (cli_opt){"log", CLI_STR, &o.log, "FILE",
                          "JSONL metrics, one line per optimizer step: TRL's names, \"type\", \"em_iteration\" and "
                          "\"start\"", 0, 0, 0};
    opts[n++] = (cli_opt){"resume", CLI_FLAG, &o.resume, NULL,
                          "continue a killed fit from DIR/checkpoint: the same bits as a run never stopped", 0, 0, 0};
    opts[n++] = (cli_opt)CLI_THREADS_FLAG(&threads);
    opts[n++] = (cli_opt){"progress", CLI_FLAG, &progress, NULL,
                          "log-likelihood of every iteration on stderr (default on a terminal)", 0, 0, 0};
    opts[n++] = (cli_opt){"quiet", CLI_FLAG, &quiet, NULL, "print nothing but errors", 0, 0, 0};
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
                   "that iterate's), and \"converged\" means it stopped by --tol and --patience.\n"
                   "With --lora-r each type is a LoRA adapter on the SFT model, which all types share and none\n"
                   "writes: type_k then holds PEFT's adapter_config.json and adapter_model.safetensors, which\n"
                   "load as a model anywhere (the SFT model with the adapter merged).\n"
                   "After each type's training in every M-step the fit's state goes to DIR/checkpoint (the\n"
                   "trained types' parameters and EM's state, with crc32 checksums); --resume continues from it\n"
                   "with the same data, model and settings, and ends with the same files as a run never stopped.",
                   opts, n};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (!policy || strcmp(policy, "llama")) return cli_usage_error("fit", "--policy must be llama here");
    if ((rc = cli_lora_finish("fit", &lora, &o.mstep.lora))) return rc;
    size_t ckpt_len = strlen(out) + sizeof "/checkpoint";
    char *ckpt = malloc(ckpt_len);
    if (!ckpt) return cli_usage_error("fit", "out of memory");
    snprintf(ckpt, ckpt_len, "%s/checkpoint", out);
    o.checkpoint = ckpt;
    double t0 = cli_now();
    /* Under mpirun rank 0 alone reports and writes (main.c silences the others' stdout). */
    int lead = emdpo_dist_rank() == 0;
    if (!lead) quiet = 1;
    if (cli_progress_on(quiet, progress)) {
        o.em.progress = cli_em_progress;
        o.em.progress_ud = &t0;
    }
    emdpo_set_threads(threads);

    emdpo_llama *sft = NULL;
    emdpo_tokenizer *tok = NULL;
    emdpo_data *d = NULL;
    emdpo_fit *f = NULL;
    emdpo_diag diag;
    /* adapters leave the SFT model frozen: 16 bits stay 16 bits */
    if ((rc = (o.mstep.lora.r ? emdpo_llama_load_frozen : emdpo_llama_load)(model, &sft, &diag)) ||
        (rc = emdpo_tokenizer_load(tokenizer, emdpo_llama_vocab_size(sft), &tok, &diag)) ||
        (rc = cli_read_finish(&rd, tokenizer)) ||
        (rc = emdpo_lm_data_read(data, &rd.o, sft, tok, o.mstep.max_length, &d, &diag)) ||
        (lead && (rc = emdpo_mkdirs(out, &diag))) || (rc = emdpo_lm_fit(sft, tok, d, &o, &f, &diag))) {
        rc = cli_fail("fit", rc, &diag, &cmd);
    } else {
        if (!quiet) print_llama(d, f);
        if (emdpo_fit_n_empty(f) && lead)
            fprintf(stderr, "emdpo fit: note: %d type(s) lost all weight and are reported empty\n", emdpo_fit_n_empty(f));
        if (lead && (rc = emdpo_fit_write(f, out, &diag))) rc = cli_fail("fit", rc, &diag, &cmd);
        else if (!quiet)
            printf("wrote %s/fit.json, %s/posterior.csv and %s/type_1 .. type_%d\n", out, out, out, o.k);
    }
    emdpo_fit_free(f);
    emdpo_data_free(d);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(sft);
    cli_read_free(&rd);
    free(ckpt);
    return rc;
}

int cmd_fit(int argc, char **argv) {
    const char *family = policy_family(argc, argv);
    if (strcmp(family, "llama") == 0) return fit_llama(argc, argv);
    if (strcmp(family, "loglinear") != 0)
        return cli_usage_error("fit", "--policy must be loglinear or llama, not '%s'", family);
    return fit_loglinear(argc, argv);
}
