/* emdpo select --policy llama: how many annotator types for Llama
 * policies? Fits EM-DPO for each K of a range on the training data exactly
 * as emdpo fit --policy llama does with the same flags (cli_fit_lm.h),
 * scores each fit's K policies on validation annotators, and picks the K
 * with the largest validation max-mean reward margin (the paper's appendix
 * D.3.1; the criterion is defined in lm_select.h). */
#include <math.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "cli.h"
#include "cli_fit_lm.h"
#include "cli_lm.h"
#include "lm/lm_select.h"
#include "lm/lm_train.h"

#define CMD "select"
#define CRITERION "validation max-mean reward margin"
#define CRITERION_DEF                                                                                             \
    "a decision's reward margin under policy k is beta * (log-ratio of the chosen response - log-ratio of a "    \
    "rejected one) against the SFT model, averaged over its rejected responses; for each validation annotator, " \
    "the largest over the K policies of that annotator's mean margin; averaged over annotators. Higher is better"
#define CROSSFIT "cross-fitted validation reward margin"
#define CROSSFIT_DEF                                                                                              \
    "decision margins as for the max-mean reward margin; each validation annotator's decisions are split into "  \
    "even and odd positions, the policy with the largest mean margin on one half is scored by its mean margin "  \
    "on the other, both ways, and the two are averaged; averaged over annotators with at least two decisions. "  \
    "Unlike the max-mean margin it does not rise with K when extra policies fit only noise. Higher is better"

/* One K's fit and validation scores. */
typedef struct sel_row {
    int K, iterations, n_empty;
    double value, crossfit, train_loglik, val_loglik; /* value: the max-mean margin; val_loglik: total over
                                                         validation annotators */
} sel_row;

typedef struct sel_lm {
    cli_fit_lm_args a;             /* a.k and a.out change per K */
    const char *krange, *validation, *out, *criterion;
    int json, k_lo, k_hi, best;    /* best: index into rows */
    int by_crossfit;               /* --criterion crossfit picks best */
    emdpo_llama *sft;
    emdpo_tokenizer *tok;
    emdpo_data *train, *valid;
    emdpo_lm_set *vset;            /* the validation data, tokenized */
    double *ref_lp;                /* (vset->n_seq) the SFT model's log-probabilities */
    double *reward;                /* (k_hi, vset->n_seq) scratch */
    sel_row *rows;                 /* (k_hi - k_lo + 1) */
    double *group_margin;          /* (rows, valid->n_groups) */
} sel_lm;

static int n_rows(const sel_lm *s) { return s->k_hi - s->k_lo + 1; }

static size_t n_group_cells(const sel_lm *s) {
    return s->valid ? (size_t)n_rows(s) * (size_t)s->valid->n_groups : 0;
}

static void sel_free(sel_lm *s) {
    size_t ns = s->vset ? (size_t)s->vset->n_seq : 0;
    emdpo_free(s->rows, (size_t)n_rows(s) * sizeof *s->rows);
    emdpo_free(s->group_margin, n_group_cells(s) * sizeof *s->group_margin);
    emdpo_free(s->reward, (size_t)s->k_hi * ns * sizeof *s->reward);
    emdpo_free(s->ref_lp, ns * sizeof *s->ref_lp);
    emdpo_lm_set_free(s->vset);
    emdpo_data_free(s->valid);
    emdpo_data_free(s->train);
    emdpo_tokenizer_free(s->tok);
    emdpo_llama_free(s->sft);
}

/* A dataset of text decisions; prints the error. */
static int load_text(const char *path, emdpo_data **d) {
    int rc = cli_load_data(CMD, path, "jsonl", d);
    if (!rc && !emdpo_data_has_text(*d))
        rc = cli_usage_error(CMD, "%s: responses have no text; --policy llama needs text responses", path);
    return rc;
}

/* Everything that can fail before the first fit: models, data, the
 * validation set and its reference log-probabilities, the tables. */
static int prepare(sel_lm *s) {
    cli_fit_lm_args *a = &s->a;
    int rc;
    if ((rc = cli_lm_model(CMD, a->model, NULL, 0, &s->sft)) ||
        (rc = cli_lm_tokenizer(CMD, a->tokenizer, s->sft->config.vocab_size, &s->tok)) ||
        (rc = cli_lm_lengths(CMD, s->sft, &a->max_length, &a->max_prompt_length)) ||
        (rc = load_text(a->data, &s->train)) || (rc = load_text(s->validation, &s->valid)))
        return rc;
    if (s->k_hi > s->train->n_annot)
        return cli_usage_error(CMD, "--k %s: K = %d exceeds the %lld training annotators", s->krange, s->k_hi,
                               (long long)s->train->n_annot);
    int64_t two = 0;
    for (int64_t i = 0; s->by_crossfit && i < s->valid->n_annot; i++)
        two += s->valid->annot_dec[i + 1] - s->valid->annot_dec[i] >= 2;
    if (s->by_crossfit && two == 0)
        return cli_usage_error(CMD, "%s: --criterion crossfit needs validation annotators with two decisions or more; "
                                    "every one has a single decision", s->validation);
    if ((rc = emdpo_lm_set_from_data(s->valid, s->tok, a->max_length, a->max_prompt_length, &s->vset)))
        return cli_fail(CMD, rc, NULL, "cannot tokenize the validation data");
    size_t ns = (size_t)s->vset->n_seq;
    s->ref_lp = emdpo_malloc(ns * sizeof *s->ref_lp);
    s->reward = emdpo_malloc((size_t)s->k_hi * ns * sizeof *s->reward);
    s->rows = emdpo_calloc((size_t)n_rows(s), sizeof *s->rows);
    if (s->valid->n_groups) s->group_margin = emdpo_malloc(n_group_cells(s) * sizeof *s->group_margin);
    if (!s->ref_lp || !s->reward || !s->rows || (s->valid->n_groups && !s->group_margin))
        return cli_fail(CMD, EMDPO_ERR_NOMEM, NULL, "out of memory");
    if ((rc = emdpo_lm_score(s->sft, s->vset, a->score_batch, s->ref_lp)))
        return cli_fail(CMD, rc, NULL,
                        rc == EMDPO_ERR_LIMIT ? "a validation sequence does not fit the model (context or vocabulary)"
                                              : "cannot score the validation data");
    return s->out ? cli_mkdirs(CMD, s->out) : 0;
}

/* The validation scores of a fit into row r. */
static int score_fit(sel_lm *s, int r, const emdpo_policy *pol, const emdpo_em_result *res) {
    const emdpo_llama *models[EMDPO_MAX_K];
    for (int k = 0; k < res->K; k++) models[k] = emdpo_llama_policy_model(pol, k);
    sel_row *w = &s->rows[r];
    double *gm = s->group_margin ? s->group_margin + (size_t)r * s->valid->n_groups : NULL;
    int rc = emdpo_lm_rewards(models, res->K, s->vset, s->ref_lp, s->a.beta, s->a.score_batch, s->reward);
    if (!rc)
        rc = emdpo_lm_select_score(s->valid, res->K, s->reward, res->eta, &w->value, &w->val_loglik, gm,
                                   &w->crossfit);
    if (rc)
        return cli_fail(CMD, rc, NULL,
                        rc == EMDPO_ERR_LIMIT ? "a validation sequence does not fit a policy" : "validation scoring");
    w->K = res->K;
    w->iterations = res->iterations;
    w->n_empty = res->n_empty;
    w->train_loglik = res->loglik;
    return 0;
}

/* Fits K = k_lo + r as emdpo fit would, writes it under out/k_K when
 * asked, and scores it. */
static int fit_row(sel_lm *s, int r, double t0) {
    cli_fit_lm_args fa = s->a;
    char dir[4200];
    fa.k = s->k_lo + r;
    int rc = 0;
    if (s->out) {
        snprintf(dir, sizeof dir, "%s/k_%d", s->out, fa.k);
        fa.out = dir;
        if ((rc = cli_mkdirs(CMD, dir))) return rc;
    }
    emdpo_policy *pol = NULL;
    emdpo_em_result res;
    emdpo_llama_policy_opts po;
    double elapsed = 0.0;
    rc = cli_fit_lm_run(CMD, &fa, s->sft, s->tok, s->train, &po, &pol, &res, &elapsed);
    if (!rc && s->out) rc = cli_fit_lm_write(CMD, &fa, s->train, pol, &res, &po, elapsed);
    if (!rc) rc = score_fit(s, r, pol, &res);
    emdpo_em_result_free(&res);
    emdpo_policy_free(pol);
    if (!rc && !s->a.quiet) {
        const sel_row *w = &s->rows[r];
        fprintf(stderr,
                "  K = %d: train loglik %.4f, validation margin %.6f, cross-fitted %.6f, loglik %.4f per annotator "
                "(%.1f s)\n",
                fa.k, w->train_loglik, w->value, w->crossfit, w->val_loglik / (double)s->valid->n_annot, cli_now() - t0);
    }
    return rc;
}

static double row_criterion(const sel_lm *s, int r) { return s->by_crossfit ? s->rows[r].crossfit : s->rows[r].value; }

/* The largest criterion; a tie or NaN keeps the smaller K. */
static int best_row(const sel_lm *s) {
    int b = 0;
    for (int r = 1; r < n_rows(s); r++) {
        double v = row_criterion(s, r), vb = row_criterion(s, b);
        if (v > vb || (isnan(vb) && !isnan(v))) b = r;
    }
    return b;
}

static void print_table(const sel_lm *s) {
    const emdpo_data *v = s->valid;
    printf("K selection (llama): %lld training annotators in %s; %lld validation annotators, %lld decisions in %s\n",
           (long long)s->train->n_annot, s->a.data, (long long)v->n_annot, (long long)v->n_dec, s->validation);
    printf("%3s %16s %18s %14s %14s", "K", "train loglik", "val loglik/annot", "val margin", "val crossfit");
    for (int g = 0; g < v->n_groups; g++) printf(" %14s", v->group_name[g]);
    printf(" %5s\n", "iter");
    for (int r = 0; r < n_rows(s); r++) {
        const sel_row *w = &s->rows[r];
        printf("%3d %16.6f %18.6f %14.6f %14.6f", w->K, w->train_loglik, w->val_loglik / (double)v->n_annot, w->value,
               w->crossfit);
        for (int g = 0; g < v->n_groups; g++) printf(" %14.6f", s->group_margin[(size_t)r * v->n_groups + g]);
        printf(" %5d", w->iterations);
        if (r == s->best) printf("  <- best");
        if (w->n_empty) printf("  (%d empty)", w->n_empty);
        putchar('\n');
    }
    printf("\nval margin: the %s (%s).\n", CRITERION, CRITERION_DEF);
    printf("val crossfit: the %s (%s).\n", CROSSFIT, CROSSFIT_DEF);
    if (v->n_groups) printf("Group columns: each true group's max-mean margin, as emdpo eval.\n");
    printf("best K by the %s: %d\n", s->by_crossfit ? CROSSFIT : CRITERION, s->rows[s->best].K);
}

static void json_row(FILE *fp, const sel_lm *s, int r) {
    const sel_row *w = &s->rows[r];
    const emdpo_data *v = s->valid;
    fprintf(fp, "    {\"k\": %d, \"value\": ", w->K);
    cli_json_num(fp, w->value);
    fprintf(fp, ", \"crossfit\": ");
    cli_json_num(fp, w->crossfit);
    fprintf(fp, ", \"train_loglik\": ");
    cli_json_num(fp, w->train_loglik);
    fprintf(fp, ", \"val_loglik_per_annotator\": ");
    cli_json_num(fp, w->val_loglik / (double)v->n_annot);
    fprintf(fp, ", \"group_margin\": ");
    if (!v->n_groups) fputs("null", fp);
    for (int g = 0; g < v->n_groups; g++) {
        fputs(g ? ", " : "{", fp);
        cli_json_str(fp, v->group_name[g]);
        fputs(": ", fp);
        cli_json_num(fp, s->group_margin[(size_t)r * v->n_groups + g]);
    }
    fputs(v->n_groups ? "}}" : "}", fp);
}

static void write_json(FILE *fp, const sel_lm *s) {
    const cli_fit_lm_args *a = &s->a;
    fprintf(fp, "{\n  \"criterion\": \"%s\",\n  \"rows\": [\n", s->by_crossfit ? CROSSFIT : CRITERION);
    for (int r = 0; r < n_rows(s); r++) {
        json_row(fp, s, r);
        fputs(r + 1 < n_rows(s) ? ",\n" : "\n", fp);
    }
    fprintf(fp, "  ],\n  \"best_k\": %d,\n  \"criterion_definition\": \"%s\",\n", s->rows[s->best].K,
            s->by_crossfit ? CROSSFIT_DEF : CRITERION_DEF);
    fprintf(fp, "  \"emdpo_version\": \"%s\",\n  \"family\": \"llama\",\n  \"data\": ", EMDPO_VERSION_STRING);
    cli_json_str(fp, a->data);
    fprintf(fp, ",\n  \"validation\": ");
    cli_json_str(fp, s->validation);
    fprintf(fp, ",\n  \"model\": ");
    cli_json_str(fp, a->model);
    fprintf(fp, ",\n  \"tokenizer\": ");
    cli_json_str(fp, a->tokenizer);
    fprintf(fp, ",\n  \"k_min\": %d,\n  \"k_max\": %d,\n  \"n_train\": %lld,\n  \"n_validation\": %lld,\n"
                "  \"n_validation_decisions\": %lld,\n  \"beta\": ",
            s->k_lo, s->k_hi, (long long)s->train->n_annot, (long long)s->valid->n_annot,
            (long long)s->valid->n_dec);
    cli_json_num(fp, a->beta);
    fprintf(fp, ",\n  \"seed\": %llu,\n  \"init\": \"%s\",\n  \"starts\": %d,\n  \"max_iter\": %d,\n  \"tol\": ",
            (unsigned long long)a->seed, strcmp(a->init, "kmeans") == 0 ? "kmeans++" : a->init, a->starts,
            a->max_iter);
    cli_json_num(fp, a->tol);
    fprintf(fp, ",\n  \"patience\": %d,\n  \"optimizer\": \"%s\",\n  \"lr\": ", a->patience,
            a->opt_kind == EMDPO_OPTIM_ADAMW ? "adamw" : "rmsprop");
    cli_json_num(fp, a->lr);
    fprintf(fp, ",\n  \"steps\": %lld,\n  \"epochs\": ", (long long)a->steps);
    cli_json_num(fp, a->epochs);
    fprintf(fp, ",\n  \"warmup\": %lld,\n  \"clip\": ", (long long)a->warmup);
    cli_json_num(fp, a->clip);
    fprintf(fp, ",\n  \"batch\": %d,\n  \"accum\": %d,\n  \"max_length\": %d,\n  \"max_prompt_length\": %d,\n"
                "  \"restart\": %s,\n  \"weight_norm\": \"%s\",\n  \"score_batch\": %d\n}\n",
            a->batch, a->accum, a->max_length, a->max_prompt_length, a->restart ? "true" : "false",
            a->wnorm == EMDPO_LLAMA_WNORM_NONE ? "none" : "mean", a->score_batch);
}

/* out/select.json, after every k_K: a directory with it is complete. */
static int write_out(const sel_lm *s) {
    char path[4200];
    snprintf(path, sizeof path, "%s/select.json", s->out);
    emdpo_afile af;
    if (emdpo_afile_open(&af, path)) return cli_usage_error(CMD, "cannot write %s", path);
    write_json(af.fp, s);
    if (emdpo_afile_commit(&af)) return cli_usage_error(CMD, "cannot write %s", path);
    if (!s->a.quiet) fprintf(stderr, "emdpo select: wrote %s and %s/k_%d .. k_%d\n", path, s->out, s->k_lo, s->k_hi);
    return 0;
}

int cli_select_llama(int argc, char **argv) {
    sel_lm s;
    memset(&s, 0, sizeof s);
    cli_fit_lm_defaults(&s.a);
    s.criterion = "margin";
    cli_fit_lm_args *a = &s.a;
    cli_opt opts[] = {
        {"policy", CLI_STR, &a->policy, "NAME", "llama: this command (loglinear: see emdpo select --help)", 0, 0},
        {"data", CLI_STR, &a->data, "FILE", "training preference JSONL with text responses", 1, 0},
        {"validation", CLI_STR, &s.validation, "FILE", "validation preference JSONL (other annotators; \"group\" "
                                                       "optional)", 1, 0},
        {"model", CLI_STR, &a->model, "CKPT", "SFT model, the start of every type and the reference: llama2.c .bin "
                                              "or Hugging Face directory", 1, 0},
        {"tokenizer", CLI_STR, &a->tokenizer, "FILE", "llama2.c tokenizer.bin for the model's vocabulary", 1, 0},
        {"k", CLI_STR, &s.krange, "RANGE", "numbers of types to compare, LO..HI or K (one EM-DPO fit each)", 1, 0},
        {"out", CLI_STR, &s.out, "DIR", "also write DIR/k_K/ (each fit, as emdpo fit) and DIR/select.json", 0, 0},
        {"json", CLI_FLAG, &s.json, NULL, "print the results as JSON instead of the table", 0, 0},
        {"criterion", CLI_STR, &s.criterion, "NAME", "what picks the best K: margin (the paper's max-mean reward "
                                                     "margin) or crossfit (its cross-fitted version) (margin)", 0, 0},
        {"max-iter", CLI_INT, &a->max_iter, "N", "EM iterations after the first M-step (5, as the paper)", 0, 0},
        {"tol", CLI_DBL, &a->tol, "X", "an iteration improves when it beats the best log-likelihood so far by more "
                                       "than X*|loglik| (0)", 0, 0},
        {"patience", CLI_INT, &a->patience, "N", "stop after N+1 iterations in a row that do not improve (2)", 0, 0},
        {"init", CLI_STR, &a->init, "METHOD", "kmeans, kmeans-tokens or random, as emdpo fit --policy llama "
                                              "(kmeans)", 0, 0},
        {"starts", CLI_INT, &a->starts, "N", "EM runs per K from different seeds; the best log-likelihood wins (1)",
         0, 0},
        {"seed", CLI_U64, &a->seed, "S", "random seed (1); the same seed gives each K the bits of emdpo fit", 0, 0},
        {"beta", CLI_DBL, &a->beta, "X", "DPO temperature: utilities and margins are beta * log-ratios (0.1)", 0, 0},
        {"steps", CLI_I64, &a->steps, "N", "optimizer steps per type per M-step (default: --epochs)", 0, 0},
        {"epochs", CLI_DBL, &a->epochs, "X", "passes over the decisions per M-step when --steps is not given (1)", 0,
         0},
        {"lr", CLI_DBL, &a->lr, "X", "learning rate (1e-6)", 0, 0},
        {"optimizer", CLI_STR, &a->optimizer, "NAME", "rmsprop or adamw (rmsprop)", 0, 0},
        {"warmup", CLI_I64, &a->warmup, "N", "linear warmup steps, restarted every M-step (0)", 0, 0},
        {"clip", CLI_DBL, &a->clip, "X", "max gradient norm, 0 = off (10)", 0, 0},
        {"batch", CLI_INT, &a->batch, "N", "decisions per micro-batch (4)", 0, 0},
        {"accum", CLI_INT, &a->accum, "N", "micro-batches per optimizer step (1)", 0, 0},
        {"max-length", CLI_INT, &a->max_length, "N", "truncate sequences to N tokens (min(512, context))", 0, 0},
        {"max-prompt-length", CLI_INT, &a->max_prompt_length, "N", "cut prompts to N tokens first (max-length/2)", 0,
         0},
        {"restart", CLI_FLAG, &a->restart, NULL, "start every M-step from the SFT model instead of the type's "
                                                 "current policy", 0, 0},
        {"weight-norm", CLI_STR, &a->weight_norm, "MODE", "mean or none, as emdpo fit --policy llama (mean)", 0, 0},
        {"score-batch", CLI_INT, &a->score_batch, "N", "sequences per scoring forward (16)", 0, 0},
        {"threads", CLI_INT, &a->threads, "N", "OpenMP threads (default: all cores)", 0, 0},
        {"progress", CLI_FLAG, &a->progress, NULL, "log-likelihood of every EM iteration on stderr", 0, 0},
        {"quiet", CLI_FLAG, &a->quiet, NULL, "no progress lines on stderr", 0, 0},
    };
    cli_cmd cmd = {CMD, "Choose the number of latent annotator types for Llama policies (--policy llama) by "
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
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (cli_parse_range(s.krange, &s.k_lo, &s.k_hi) || s.k_hi > EMDPO_MAX_K)
        return cli_usage_error(CMD, "--k must be K or LO..HI with 1 <= LO <= HI <= %d, not '%s'", EMDPO_MAX_K,
                               s.krange);
    if (strcmp(s.criterion, "margin") && strcmp(s.criterion, "crossfit"))
        return cli_usage_error(CMD, "--criterion must be margin or crossfit, not '%s'", s.criterion);
    s.by_crossfit = strcmp(s.criterion, "crossfit") == 0;
    a->k = s.k_hi;
    if ((rc = cli_fit_lm_check(CMD, a))) return rc;
    cli_set_threads(a->threads);
    rc = prepare(&s);
    double t0 = cli_now();
    for (int r = 0; !rc && r < n_rows(&s); r++) rc = fit_row(&s, r, t0);
    if (!rc) {
        s.best = best_row(&s);
        if (s.json)
            write_json(stdout, &s);
        else
            print_table(&s);
        if (s.out) rc = write_out(&s);
    }
    sel_free(&s);
    return rc;
}
