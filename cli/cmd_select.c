/* emdpo select: how many annotator types? Log-linear policies: each K of a
 * range fitted on training annotators, compared by information criteria
 * and the log-likelihood of annotators the fits never saw. Llama policies
 * (--policy llama): each K fitted as emdpo fit would, scored by validation
 * reward margins (the paper's appendix D.3.1). */
#include <math.h>
#include <string.h>

#include "cli.h"

static void print_table(const emdpo_select *s, const emdpo_select_opts *o, const char *data) {
    int64_t nv = emdpo_select_n_heldout(s);
    printf("model selection on %s: %lld training annotators, %lld held out (share %g, seed %llu)\n", data,
           (long long)emdpo_select_n_train(s), (long long)nv, o->holdout, (unsigned long long)o->fit.em.seed);
    printf("%3s %5s %14s %14s %14s %14s %15s %5s %5s\n", "K", "npar", "loglik", "AIC", "BIC", "ICL", "held-out/annot",
           "iter", "conv");
    int bb = emdpo_select_best_bic(s), bh = emdpo_select_best_heldout(s);
    emdpo_select_row w, best_b, best_h;
    emdpo_select_row_at(s, bb, &best_b);
    emdpo_select_row_at(s, bh, &best_h);
    for (int r = 0; r < emdpo_select_n_rows(s); r++) {
        emdpo_select_row_at(s, r, &w);
        printf("%3d %5d %14.4f %14.4f %14.4f %14.4f %15.6f %5d %5s", w.k, w.npar, w.loglik, w.aic, w.bic, w.icl,
               w.heldout / (double)nv, w.iterations, w.converged ? "yes" : "no");
        if (r == bb) printf("  <- best BIC");
        if (r == bh) printf("  <- best held-out");
        if (w.k_effective < w.k) printf("  (%d empty)", w.k - w.k_effective);
        putchar('\n');
    }
    printf("\nbest K by BIC: %d; by held-out log-likelihood: %d\n", best_b.k, best_h.k);
}

typedef struct sel_progress {
    double t0;
    int quiet;
} sel_progress;

static void on_row(void *ud, const emdpo_select_row *w, int64_t n_heldout) {
    const sel_progress *p = ud;
    if (p->quiet) return;
    fprintf(stderr, "  K = %d: loglik %.4f, held-out %.4f per annotator (%.1f s)\n", w->k, w->loglik,
            w->heldout / (double)n_heldout, cli_now() - p->t0);
}

static int select_loglinear(int argc, char **argv) {
    emdpo_select_opts o;
    emdpo_select_opts_init(&o);
    char kdefault[32];
    snprintf(kdefault, sizeof kdefault, "%d..%d", o.k_min, o.k_max);
    const char *policy = NULL, *data = NULL, *krange = kdefault, *out = NULL;
    emdpo_format format = EMDPO_FORMAT_AUTO;
    int threads = 0, json = 0, quiet = 0;
    cli_read rd;
    cli_read_init(&rd);
    cli_opt opts[] = {
        CLI_FEATURE_READ_FLAG_LIST(&rd),
        {"policy", CLI_STR, &policy, "NAME", "loglinear (this) or llama (see emdpo select --policy llama --help)", 0, 0,
         0},
        {"data", CLI_STR, &data, "FILE", "preference data (.jsonl or long .csv) with feature responses", 1, 0, 0},
        {"k", CLI_STR, &krange, "RANGE", "numbers of types to compare, LO..HI or K", 0, 0, 0},
        {"holdout", CLI_DBL, &o.holdout, "X", "share of annotators held out for validation, in (0, 1)", 0, 0, 0},
        {"starts", CLI_INT, &o.fit.em.starts, "N", "EM runs per K; the best log-likelihood wins", 0, 0, 0},
        {"seed", CLI_U64, &o.fit.em.seed, "S", "seed of the split and of EM; same seed and threads give the same bits",
         0, 0, 0},
        {"init", CLI_ENUM, &o.fit.em.init, "METHOD", "kmeans (k-means++ on annotator summaries) or random", 0, 0,
         emdpo_init_name},
        {"max-iter", CLI_INT, &o.fit.em.max_iter, "N", "EM iteration cap", 0, 0, 0},
        {"tol", CLI_DBL, &o.fit.em.tol, "X", "stop when the log-likelihood gains less than X*|loglik|", 0, 0, 0},
        {"l2", CLI_DBL, &o.fit.l2, "X", "ridge penalty (X/2)|theta_k|^2 in each M-step", 0, 0, 0},
        {"format", CLI_ENUM, &format, "FMT", "jsonl, csv or auto (by extension)", 0, 0, emdpo_format_name},
        {"out", CLI_STR, &out, "DIR", "also write DIR/select.json", 0, 0, 0},
        {"json", CLI_FLAG, &json, NULL, "print the results as JSON instead of the table", 0, 0, 0},
        CLI_THREADS_FLAG(&threads),
        {"quiet", CLI_FLAG, &quiet, NULL, "no progress lines on stderr", 0, 0, 0},
    };
    cli_cmd cmd = {"select", "Choose the number of latent annotator types: fit each K on training annotators and "
                             "score it.",
                   "Annotators (not decisions) are split at random into training and held-out sets. For each K\n"
                   "the table shows the training log-likelihood, AIC, BIC and ICL (npar = K*p + K - 1 over\n"
                   "non-empty types; sample size = training annotators) and the log-likelihood per held-out\n"
                   "annotator, each mixing over the fitted types since their type is unknown. Lower\n"
                   "criteria and higher held-out log-likelihood are better; both winners are marked.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (cli_parse_range(krange, &o.k_min, &o.k_max) || o.k_max > EMDPO_MAX_K)
        return cli_usage_error("select", "--k must be K or LO..HI with 1 <= LO <= HI <= %d, not '%s'", EMDPO_MAX_K,
                               krange);
    emdpo_set_threads(threads);
    rd.o.share = 1; /* under mpirun each process reads its share of the annotators */
    /* Under mpirun rank 0 alone reports (main.c silences the others' stdout). */
    sel_progress pg = {cli_now(), quiet || emdpo_dist_rank() > 0};
    o.progress = on_row;
    o.progress_ud = &pg;
    emdpo_data *d = NULL;
    emdpo_select *s = NULL;
    emdpo_diag diag;
    /* A directory that cannot be made is refused before the fits, not after. */
    if (out && (rc = emdpo_mkdirs(out, &diag))) return cli_fail("select", rc, &diag, &cmd);
    if ((rc = cli_load_data("select", data, format, &rd, &d))) return rc;
    if ((rc = emdpo_select_run(d, &o, &s, &diag))) {
        rc = cli_fail("select", rc, &diag, &cmd);
    } else {
        if (json) emdpo_select_write_json(s, stdout);
        else print_table(s, &o, data);
        /* Under mpirun every process holds the same result (the sums over
         * the shares are reduced exactly); rank 0 writes it. */
        if (out && emdpo_dist_rank() == 0 && (rc = emdpo_select_save(s, out, &diag)))
            rc = cli_fail("select", rc, &diag, &cmd);
        else if (out && !quiet && emdpo_dist_rank() == 0) fprintf(stderr, "emdpo select: wrote %s/select.json\n", out);
    }
    emdpo_select_free(s);
    emdpo_data_free(d);
    return rc;
}

/* ---- --policy llama ------------------------------------------------------ */

static void print_table_llama(const emdpo_lm_select *s, const emdpo_lm_select_opts *o, const emdpo_data *train,
                              const emdpo_data *valid) {
    int G = emdpo_data_n_groups(valid);
    int64_t nv = emdpo_data_n_annotators(valid);
    printf("K selection (llama): %lld training annotators in %s; %lld validation annotators, %lld decisions in %s\n",
           (long long)emdpo_data_n_annotators(train), emdpo_data_source(train), (long long)nv,
           (long long)emdpo_data_n_decisions(valid), emdpo_data_source(valid));
    printf("%3s %16s %18s %14s %14s", "K", "train loglik", "val loglik/annot", "val margin", "val crossfit");
    for (int g = 0; g < G; g++) printf(" %14s", emdpo_data_group_name(valid, g));
    printf(" %5s\n", "iter");
    int best = emdpo_lm_select_best(s);
    for (int r = 0; r < emdpo_lm_select_n_rows(s); r++) {
        emdpo_lm_select_row w;
        emdpo_lm_select_row_at(s, r, &w);
        printf("%3d %16.6f %18.6f %14.6f %14.6f", w.k, w.train_loglik, w.val_loglik / (double)nv, w.margin,
               w.crossfit);
        for (int g = 0; g < G; g++) printf(" %14.6f", emdpo_lm_select_group_margin(s, r, g));
        printf(" %5d", w.iterations);
        if (r == best) printf("  <- best");
        if (w.n_empty) printf("  (%d empty)", w.n_empty);
        putchar('\n');
    }
    for (int c = 0; c < 2; c++)
        printf("%s: the %s (%s).\n", c ? "val crossfit" : "\nval margin", emdpo_lm_criterion_title(c),
               emdpo_lm_criterion_definition(c));
    if (G) printf("Group columns: each true group's max-mean margin, as emdpo eval.\n");
    emdpo_lm_select_row w;
    emdpo_lm_select_row_at(s, best, &w);
    printf("best K by the %s: %d\n", emdpo_lm_criterion_title(o->criterion), w.k);
}

typedef struct lm_progress {
    double t0;
    int quiet;
} lm_progress;

static void on_lm_row(void *ud, const emdpo_lm_select_row *w, int64_t n_valid) {
    const lm_progress *p = ud;
    if (p->quiet) return;
    fprintf(stderr,
            "  K = %d: train loglik %.4f, validation margin %.6f, cross-fitted %.6f, loglik %.4f per annotator "
            "(%.1f s)\n",
            w->k, w->train_loglik, w->margin, w->crossfit, w->val_loglik / (double)n_valid, cli_now() - p->t0);
}

static int select_llama(int argc, char **argv) {
    emdpo_lm_select_opts o;
    emdpo_lm_select_opts_init(&o);
    const char *policy = NULL, *data = NULL, *validation = NULL, *model = NULL, *tokenizer = NULL, *krange = NULL;
    int json = 0, threads = 0, progress = 0, quiet = 0;
    cli_read rd;
    cli_lora lora;
    cli_read_init(&rd);
    cli_opt opts[CLI_LM_FIT_FLAGS + 16 + 2] = {
        {"policy", CLI_STR, &policy, "NAME", "llama: this command (loglinear: see emdpo select --help)", 0, 0, 0},
        {"data", CLI_STR, &data, "FILE", "training preference JSONL with text responses", 1, 0, 0},
        {"validation", CLI_STR, &validation, "FILE", "validation preference JSONL (other annotators; \"group\" "
                                                     "optional)", 1, 0, 0},
        {"model", CLI_STR, &model, "CKPT", "SFT model, the start of every type and the reference: llama2.c .bin or "
                                           "Hugging Face directory", 1, 0, 0},
        CLI_TOKENIZER_FLAG(&tokenizer),
        {"k", CLI_STR, &krange, "RANGE", "numbers of types to compare, LO..HI or K (one EM-DPO fit each)", 1, 0, 0},
        {"out", CLI_STR, &o.out, "DIR", "also write DIR/k_K/ (each fit, as emdpo fit) and DIR/select.json", 0, 0, 0},
        {"json", CLI_FLAG, &json, NULL, "print the results as JSON instead of the table", 0, 0, 0},
        {"criterion", CLI_ENUM, &o.criterion, "NAME", "what picks the best K: margin (the paper's max-mean reward "
                                                      "margin) or crossfit (its cross-fitted version)", 0, 0,
         emdpo_lm_criterion_name},
    };
    int n = 9;
    n += cli_lm_fit_flags(opts + n, &o.fit, &lora);
    const cli_opt read_flags[] = {CLI_READ_FLAG_LIST(&rd)};
    memcpy(opts + n, read_flags, sizeof read_flags);
    n += (int)(sizeof read_flags / sizeof read_flags[0]);
    opts[n++] = (cli_opt)CLI_THREADS_FLAG(&threads);
    opts[n++] = (cli_opt){"progress", CLI_FLAG, &progress, NULL, "log-likelihood of every EM iteration on stderr", 0,
                          0, 0};
    opts[n++] = (cli_opt){"quiet", CLI_FLAG, &quiet, NULL, "no progress lines on stderr", 0, 0, 0};
    cli_cmd cmd = {"select", "Choose the number of latent annotator types for Llama policies (--policy llama) by "
                             "validation reward margins.",
                   "For each K of the range, fits EM-DPO on --data exactly as emdpo fit --policy llama with the\n"
                   "same flags (the same seed gives the same bits), then scores the K policies on the\n"
                   "decisions of the --validation annotators (the paper's appendix D.3.1).\n"
                   "Criterion (higher is better): the validation max-mean reward margin. A decision's reward\n"
                   "margin under policy k is beta * (log-ratio of the chosen response - log-ratio of a\n"
                   "rejected one), log-ratios against the SFT model, averaged over its rejected responses.\n"
                   "For each validation annotator take the largest, over the K policies, of that annotator's\n"
                   "mean margin; the criterion is the mean of these over annotators: the paper's max-mean\n"
                   "reward margin with every annotator as a group of their own, since validation groups are\n"
                   "unknown in practice. Every policy counts, empty types included. Best K = the largest\n"
                   "criterion (a tie goes to the smaller K), marked in the table. The criterion tends to rise\n"
                   "with K (each annotator's best policy is picked on the decisions it is scored on); the\n"
                   "paper looks for where it peaks or flattens and weighs the gain against the cost.\n"
                   "The cross-fitted margin (val crossfit; --criterion crossfit picks by it) removes that bias:\n"
                   "each validation annotator's decisions are split into even and odd positions, the policy\n"
                   "best on one half is scored on the other, both ways, averaged; the mean is over annotators\n"
                   "with at least two decisions (nan when there are none).\n"
                   "Also shown: the training log-likelihood, the validation mixture log-likelihood per\n"
                   "annotator (sum_i log sum_k eta_k prod_j P_k(choice_ij) / n, with the fit's eta) and, when\n"
                   "the validation data has \"group\", each group's max-mean margin (as emdpo eval).\n"
                   "Cost: one full EM-DPO fit per K, i.e. K policies trained per M-step, so LO..HI trains\n"
                   "LO + ... + HI policies per EM iteration; plus one scoring pass of every fitted policy over\n"
                   "the validation data, and one of the SFT model.\n"
                   "With --out DIR: DIR/k_K/ holds each fit (fit.json, posterior.csv, type_1 .. type_K, as\n"
                   "emdpo fit writes them) and DIR/select.json comes last: {\"criterion\", \"rows\": [{\"k\",\n"
                   "\"value\" (the max-mean margin), \"crossfit\", \"train_loglik\", \"val_loglik_per_annotator\",\n"
                   "\"group_margin\"}], \"best_k\",\n"
                   "\"criterion_definition\", and the settings}.",
                   opts, n};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = cli_lora_finish("select", &lora, &o.fit.mstep.lora))) return rc;
    if (cli_parse_range(krange, &o.k_min, &o.k_max) || o.k_max > EMDPO_MAX_K)
        return cli_usage_error("select", "--k must be K or LO..HI with 1 <= LO <= HI <= %d, not '%s'", EMDPO_MAX_K,
                               krange);
    double t0 = cli_now();
    if (cli_progress_on(quiet, progress)) {
        o.fit.em.progress = cli_em_progress;
        o.fit.em.progress_ud = &t0;
    }
    emdpo_set_threads(threads);
    emdpo_llama *sft = NULL;
    emdpo_tokenizer *tok = NULL;
    emdpo_data *train = NULL, *valid = NULL;
    emdpo_lm_select *s = NULL;
    emdpo_diag diag;
    lm_progress pg = {t0, quiet};
    /* adapters leave the SFT model frozen: 16 bits stay 16 bits */
    if ((rc = (o.fit.mstep.lora.r ? emdpo_llama_load_frozen : emdpo_llama_load)(model, &sft, &diag)) ||
        (rc = emdpo_tokenizer_load(tokenizer, emdpo_llama_vocab_size(sft), &tok, &diag)) ||
        (rc = cli_read_finish(&rd, tokenizer)) ||
        (rc = emdpo_lm_data_read(data, &rd.o, sft, tok, o.fit.mstep.max_length, &train, &diag)) ||
        (rc = emdpo_lm_data_read(validation, &rd.o, sft, tok, o.fit.mstep.max_length, &valid, &diag))) {
        rc = cli_fail("select", rc, &diag, &cmd);
    } else {
        pg.t0 = cli_now();
        o.progress = on_lm_row;
        o.progress_ud = &pg;
        if ((rc = emdpo_lm_select_run(sft, tok, train, valid, &o, &s, &diag))) {
            rc = cli_fail("select", rc, &diag, &cmd);
        } else {
            if (json) emdpo_lm_select_write_json(s, stdout);
            else print_table_llama(s, &o, train, valid);
            if (o.out && !quiet)
                fprintf(stderr, "emdpo select: wrote %s/select.json and %s/k_%d .. k_%d\n", o.out, o.out, o.k_min,
                        o.k_max);
        }
    }
    emdpo_lm_select_free(s);
    emdpo_data_free(valid);
    emdpo_data_free(train);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(sft);
    cli_read_free(&rd);
    return rc;
}

/* ---- --margins: validation margins computed elsewhere ------------------- */

static int select_margins(int argc, char **argv) {
    const char *path = NULL;
    emdpo_lm_criterion criterion = EMDPO_CRITERION_MARGIN;
    int json = 0;
    cli_opt opts[] = {
        {"margins", CLI_STR, &path, "FILE", "each candidate fit's validation margins: .jsonl or .csv, optionally "
                                            ".gz", 1, 0, 0},
        {"criterion", CLI_ENUM, &criterion, "NAME", "margin (the paper's) or crossfit (picks K by it)", 0, 0,
         emdpo_lm_criterion_name},
        {"json", CLI_FLAG, &json, NULL, "print JSON instead of the table", 0, 0, 0},
    };
    cli_cmd cmd = {"select", "Choose K by validation reward margins computed by any trainer (the paper's appendix "
                             "D.3.1).",
                   "FILE holds, for each candidate fit (K types), each validation decision's reward margin\n"
                   "under each type: the mean over its rejected items of r_k(chosen) - r_k(rejected), r_k =\n"
                   "beta (log pi_k - log pi_ref). JSONL, one decision of one candidate per line:\n"
                   "  {\"k\": 3, \"annotator\": \"u1\", \"margins\": [m_1, m_2, m_3]}\n"
                   "or CSV with the header k,annotator,decision,type,margin (a decision's rows consecutive).\n\n"
                   "margin: the mean over annotators of the best type's mean margin (each annotator a group\n"
                   "of its own), as emdpo select --policy llama computes it; it tends to rise with K.\n"
                   "crossfit: each annotator's best type on half of its decisions (even or odd positions),\n"
                   "scored on the other half; it does not. The largest criterion wins, a tie the smaller K.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    emdpo_margins *m = NULL;
    emdpo_diag diag;
    if ((rc = emdpo_margins_read(path, &m, &diag))) return cli_fail("select", rc, &diag, &cmd);
    int n = emdpo_margins_n_candidates(m), ks[EMDPO_MAX_K];
    double margin[EMDPO_MAX_K], crossfit[EMDPO_MAX_K], value[EMDPO_MAX_K];
    int64_t n_dec[EMDPO_MAX_K], n_annot[EMDPO_MAX_K];
    for (int c = 0; c < n && !rc; c++) {
        const double *mg;
        const int64_t *ann;
        ks[c] = emdpo_margins_candidate(m, c, &n_dec[c], &mg, &ann, &n_annot[c]);
        if ((rc = emdpo_margin_criterion(ks[c], n_dec[c], mg, ann, n_annot[c], &margin[c], &crossfit[c], &diag))) {
            snprintf(diag.file, sizeof diag.file, "%s", path);
            rc = cli_fail("select", rc, &diag, &cmd);
        }
        value[c] = criterion == EMDPO_CRITERION_CROSSFIT ? crossfit[c] : margin[c];
    }
    int best = rc ? -1 : emdpo_margin_best(n, ks, value);
    if (!rc && json) {
        printf("{\n  \"criterion\": \"%s\",\n  \"rows\": [\n", emdpo_lm_criterion_name(criterion));
        for (int c = 0; c < n; c++) {
            printf("    {\"k\": %d, \"n_decisions\": %lld, \"n_annotators\": %lld, \"margin\": ", ks[c],
                   (long long)n_dec[c], (long long)n_annot[c]);
            if (isnan(margin[c])) printf("null");
            else printf("%.17g", margin[c]);
            printf(", \"crossfit\": ");
            if (isnan(crossfit[c])) printf("null");
            else printf("%.17g", crossfit[c]);
            printf("}%s\n", c + 1 < n ? "," : "");
        }
        printf("  ],\n  \"best_k\": %d\n}\n", ks[best]);
    } else if (!rc) {
        printf("K selection on validation margins from %s (criterion: %s)\n", path, emdpo_lm_criterion_name(criterion));
        printf("%3s %10s %10s %14s %14s\n", "K", "decisions", "annotators", "margin", "crossfit");
        for (int c = 0; c < n; c++)
            printf("%3d %10lld %10lld %14.6f %14.6f%s\n", ks[c], (long long)n_dec[c], (long long)n_annot[c], margin[c],
                   crossfit[c], c == best ? "  <- best" : "");
        printf("\nbest K: %d\n", ks[best]);
    }
    emdpo_margins_free(m);
    return rc;
}

int cmd_select(int argc, char **argv) {
    if (cli_flag_value(argc, argv, "margins")) return select_margins(argc, argv);
    const char *family = cli_flag_value(argc, argv, "policy");
    if (family && strcmp(family, "llama") == 0) return select_llama(argc, argv);
    if (family && strcmp(family, "loglinear") != 0)
        return cli_usage_error("select", "--policy must be loglinear or llama, not '%s'", family);
    return select_loglinear(argc, argv);
}
