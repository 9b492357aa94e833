/* emdpo sft, and the training driver it shares with emdpo dpo: load a
 * Llama policy, tokenize the data, run the optimizer steps with a JSONL
 * metrics log and a progress line, and checkpoint so that --resume
 * continues bit for bit. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "cli.h"
#include "cli_lm.h"
#include "lm/io/llama_hf.h"
#include "lm/lm_train.h"

int cmd_sft(int argc, char **argv) { return cli_lm_train(0, argc, argv); }

typedef struct train_args {
    const char *data, *model, *config, *tokenizer, *out, *optimizer, *log, *weights, *weight_column, *ref, *loss;
    int64_t steps, warmup, save_every;
    int batch, accum, max_length, max_prompt_length, resume, threads, quiet;
    uint64_t seed;
    double lr, clip, weight_decay, beta, label_smoothing;
} train_args;

static void log_line(FILE *fp, const emdpo_train_metrics *m, int dpo, double eps) {
    fputs("{\"loss\": ", fp);
    cli_json_num(fp, m->loss);
    fputs(", \"grad_norm\": ", fp);
    cli_json_num(fp, m->grad_norm);
    fputs(", \"learning_rate\": ", fp);
    cli_json_num(fp, m->learning_rate);
    if (dpo) {
        fputs(", \"rewards/chosen\": ", fp);
        cli_json_num(fp, m->rewards_chosen);
        fputs(", \"rewards/rejected\": ", fp);
        cli_json_num(fp, m->rewards_rejected);
        fputs(", \"rewards/margins\": ", fp);
        cli_json_num(fp, m->rewards_margins);
        fputs(", \"rewards/accuracies\": ", fp);
        cli_json_num(fp, m->rewards_accuracies);
    }
    fputs(", \"examples_per_second\": ", fp);
    cli_json_num(fp, eps);
    fprintf(fp, ", \"step\": %lld, \"epoch\": ", (long long)m->step);
    cli_json_num(fp, m->epoch);
    fputs("}\n", fp);
}

/* Model files (config.json, model.safetensors) then the checkpoint; a
 * resume reads only the checkpoint, which is one atomic file. */
static int save_all(const char *cmd, const emdpo_trainer *t, const emdpo_llama *m, const char *out,
                    const char *ckpt) {
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    int rc = emdpo_llama_hf_save(m, out, &diag);
    if (!rc) rc = emdpo_trainer_save(t, ckpt, &diag);
    return rc ? cli_fail(cmd, rc, &diag, "cannot save") : 0;
}

static int tokenize(const char *cmd, const train_args *a, int dpo, const emdpo_tokenizer *tok, emdpo_data **d,
                    emdpo_lm_texts **texts, emdpo_lm_set **set) {
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    int rc = 0;
    if (dpo) {
        if ((rc = cli_load_data(cmd, a->data, "jsonl", d))) return rc;
    } else {
        rc = emdpo_lm_texts_read(a->data, texts, &diag);
        /* Preference data: fine-tune on the chosen responses. */
        if (rc == EMDPO_ERR_UNSUPPORTED) {
            if ((rc = cli_load_data(cmd, a->data, "jsonl", d))) return rc;
        } else if (rc) {
            return cli_fail(cmd, rc, &diag, "cannot read data");
        }
    }
    if (*d && !emdpo_data_has_text(*d)) return cli_usage_error(cmd, "%s: responses have no text", a->data);
    if (dpo || !*d) {
        rc = dpo ? emdpo_lm_set_from_data(*d, tok, a->max_length, a->max_prompt_length, set)
                 : emdpo_lm_set_from_texts(*texts, tok, a->max_length, a->max_prompt_length, set);
    } else {
        const emdpo_data *x = *d;
        rc = emdpo_lm_set_create(a->max_length, a->max_prompt_length, set);
        for (int64_t j = 0; !rc && j < x->n_dec; j++)
            rc = emdpo_lm_set_add(*set, tok, x->dec_prompt ? x->dec_prompt[j] : NULL,
                                  (const char *const *)x->item_text + x->dec_item[j], 1, 0);
    }
    return rc ? cli_fail(cmd, rc, NULL, "cannot tokenize the data") : 0;
}

int cli_lm_train(int dpo, int argc, char **argv) {
    const char *cmdname = dpo ? "dpo" : "sft";
    train_args a = {0};
    a.batch = 4;
    a.accum = 1;
    a.seed = 1;
    a.save_every = 100;
    a.optimizer = dpo ? "rmsprop" : "adamw";
    a.lr = dpo ? 1e-6 : 2e-5;
    a.clip = dpo ? 10.0 : 1.0;
    a.beta = 0.1;
    a.loss = "dpo";
    cli_opt opts[] = {
        {"data", CLI_STR, &a.data, "FILE",
         dpo ? "preference JSONL: prompt, chosen, rejected (a string or a list) or ranking"
             : "JSONL of {\"prompt\",\"response\"} or {\"text\"} (preference data: its chosen responses)", 1, 0},
        {"model", CLI_STR, &a.model, "CKPT", "starting model: llama2.c .bin or Hugging Face directory", 0, 0},
        {"config", CLI_STR, &a.config, "SPEC", "fresh model instead: dim=N,layers=N,heads=N,kv_heads=N,hidden=N,"
                                               "vocab=N,seq_len=N,tied=0|1", 0, 0},
        {"tokenizer", CLI_STR, &a.tokenizer, "FILE", "llama2.c tokenizer.bin for the model's vocabulary", 1, 0},
        {"out", CLI_STR, &a.out, "DIR", "output: config.json, model.safetensors, trainer.bin", 1, 0},
        {"steps", CLI_I64, &a.steps, "N", "optimizer steps (default: one epoch)", 0, 0},
        {"lr", CLI_DBL, &a.lr, "X", dpo ? "learning rate (1e-6)" : "learning rate (2e-5)", 0, 0},
        {"batch", CLI_INT, &a.batch, "N", "examples per micro-batch (4)", 0, 0},
        {"accum", CLI_INT, &a.accum, "N", "micro-batches per optimizer step (1)", 0, 0},
        {"max-length", CLI_INT, &a.max_length, "N", "truncate sequences to N tokens (min(512, context))", 0, 0},
        {"max-prompt-length", CLI_INT, &a.max_prompt_length, "N", "cut prompts to N tokens first (max-length/2)", 0, 0},
        {"optimizer", CLI_STR, &a.optimizer, "NAME", dpo ? "rmsprop or adamw (rmsprop)" : "adamw or rmsprop (adamw)",
         0, 0},
        {"warmup", CLI_I64, &a.warmup, "N", "linear warmup steps (0)", 0, 0},
        {"clip", CLI_DBL, &a.clip, "X", dpo ? "max gradient norm, 0 = off (10)" : "max gradient norm, 0 = off (1)",
         0, 0},
        {"weight-decay", CLI_DBL, &a.weight_decay, "X", "decoupled for adamw, L2 for rmsprop (0)", 0, 0},
        {"beta", CLI_DBL, &a.beta, "X", "DPO temperature (0.1)", 0, 0},
        {"loss", CLI_STR, &a.loss, "NAME", "dpo, cdpo, ipo or hinge (dpo)", 0, 0},
        {"label-smoothing", CLI_DBL, &a.label_smoothing, "X", "cdpo's epsilon in [0, 0.5) (0)", 0, 0},
        {"ref", CLI_STR, &a.ref, "CKPT", "reference model (default: the starting model)", 0, 0},
        {"weights", CLI_STR, &a.weights, "FILE",
         dpo ? "CSV of weights: header 'weight' (one per decision, in the data's order) or 'annotator,...'"
             : "CSV with header 'weight': one weight per example", 0, 0},
        {"weight-column", CLI_STR, &a.weight_column, "NAME", "column of an annotator weight file (the second)", 0, 0},
        {"seed", CLI_U64, &a.seed, "S", "shuffling and fresh-model seed (1)", 0, 0},
        {"save-every", CLI_I64, &a.save_every, "N", "checkpoint every N steps, 0 = only at the end (100)", 0, 0},
        {"resume", CLI_FLAG, &a.resume, NULL, "continue from DIR/trainer.bin", 0, 0},
        {"log", CLI_STR, &a.log, "FILE", "JSONL metrics, one line per step (appended on --resume)", 0, 0},
        {"threads", CLI_INT, &a.threads, "N", "OpenMP threads (default: all cores)", 0, 0},
        {"quiet", CLI_FLAG, &a.quiet, NULL, "print nothing but errors", 0, 0},
    };
    int n_opts = (int)(sizeof opts / sizeof opts[0]);
    /* SFT has no preference flags: drop beta .. ref from its table. */
    if (!dpo) {
        int from = 15, to = 19;
        memmove(&opts[from], &opts[to], (size_t)(n_opts - to) * sizeof opts[0]);
        n_opts -= to - from;
    }
    cli_cmd cmd = {cmdname,
                   dpo ? "Preference optimization (DPO, conservative DPO, IPO, hinge) of a Llama policy."
                       : "Supervised fine-tuning of a Llama policy (cross-entropy on response tokens).",
                   dpo ? "Each decision's chosen response is pushed above its rejected ones: the DPO loss is the\n"
                         "Plackett-Luce likelihood of beta * log-ratio, so any number of rejected responses and\n"
                         "rankings work. Reference log-probabilities are computed once and cached. Weights (e.g.\n"
                         "one column of emdpo fit's posterior.csv, --weight-column gamma_2) scale each decision.\n"
                         "Too-long sequences: the prompt keeps BOS and its last tokens, then responses are cut.\n"
                         "Metrics (TRL names) go to --log; DIR/trainer.bin lets a killed run --resume and end\n"
                         "with the same bits. Needs the same data, flags and --threads to do so."
                       : "The loss is the mean over response tokens (and the EOS after them) of -log p.\n"
                         "Too-long sequences: the prompt keeps BOS and its last tokens, then responses are cut.\n"
                         "Metrics (TRL names) go to --log; DIR/trainer.bin lets a killed run --resume and end\n"
                         "with the same bits. Needs the same data, flags and --threads to do so.",
                   opts, n_opts};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    int opt_kind = emdpo_optim_parse(a.optimizer), loss_kind = emdpo_pref_loss_parse(a.loss);
    if (opt_kind < 0) return cli_usage_error(cmdname, "--optimizer must be adamw or rmsprop, not '%s'", a.optimizer);
    if (loss_kind < 0) return cli_usage_error(cmdname, "--loss must be dpo, cdpo, ipo or hinge, not '%s'", a.loss);
    if (a.steps < 0) return cli_usage_error(cmdname, "--steps must be >= 0");
    if (a.batch < 1 || a.accum < 1) return cli_usage_error(cmdname, "--batch and --accum must be >= 1");
    if (!(a.lr >= 0)) return cli_usage_error(cmdname, "--lr must be >= 0");
    if (a.warmup < 0 || a.save_every < 0) return cli_usage_error(cmdname, "--warmup and --save-every must be >= 0");
    if (!(a.clip >= 0) || !(a.weight_decay >= 0)) return cli_usage_error(cmdname, "--clip and --weight-decay must be >= 0");
    if (!(a.beta > 0)) return cli_usage_error(cmdname, "--beta must be > 0");
    if (!(a.label_smoothing >= 0 && a.label_smoothing < 0.5))
        return cli_usage_error(cmdname, "--label-smoothing must be in [0, 0.5)");
    cli_set_threads(a.threads);

    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s/trainer.bin", a.out);
    struct stat st;
    if (a.resume && stat(ckpt, &st) != 0)
        return cli_usage_error(cmdname, "--resume: no checkpoint %s", ckpt);
    emdpo_llama *m = NULL, *ref = NULL;
    emdpo_tokenizer *tok = NULL;
    emdpo_data *d = NULL;
    emdpo_lm_texts *texts = NULL;
    emdpo_lm_set *set = NULL;
    emdpo_trainer *t = NULL;
    double *w = NULL;
    FILE *logf = NULL;
    int64_t n_w = 0;
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    /* A resumed run starts from the exported model; the checkpoint then
     * restores the exact parameters. */
    if ((rc = a.resume ? cli_lm_model(cmdname, a.out, NULL, 0, &m) : cli_lm_model(cmdname, a.model, a.config, a.seed, &m)))
        goto done;
    if (a.ref && !a.resume && (rc = cli_lm_model(cmdname, a.ref, NULL, 0, &ref))) goto done;
    if ((rc = cli_lm_tokenizer(cmdname, a.tokenizer, m->config.vocab_size, &tok)) ||
        (rc = cli_lm_lengths(cmdname, m, &a.max_length, &a.max_prompt_length)) ||
        (rc = tokenize(cmdname, &a, dpo, tok, &d, &texts, &set)))
        goto done;
    if (a.weights) {
        n_w = set->n_group;
        rc = d ? cli_lm_weights(cmdname, a.weights, a.weight_column, d, &w)
               : cli_lm_weights_plain(cmdname, a.weights, n_w, &w);
        if (rc) goto done;
    }
    emdpo_train_config tc;
    memset(&tc, 0, sizeof tc);
    tc.mode = dpo ? EMDPO_TRAIN_DPO : EMDPO_TRAIN_SFT;
    tc.loss.kind = (emdpo_pref_loss_kind)loss_kind;
    tc.loss.beta = a.beta;
    tc.loss.label_smoothing = a.label_smoothing;
    emdpo_optim_config_default(&tc.optim, (emdpo_optim_kind)opt_kind);
    tc.optim.lr = a.lr;
    tc.optim.warmup = a.warmup;
    tc.optim.clip = a.clip;
    tc.optim.weight_decay = a.weight_decay;
    tc.batch = a.batch;
    tc.accum = a.accum;
    tc.seed = a.seed;
    if ((rc = emdpo_trainer_create(m, set, w, &tc, &t))) {
        rc = cli_fail(cmdname, rc, NULL,
                      rc == EMDPO_ERR_LIMIT ? "a sequence does not fit the model (context or vocabulary)"
                                            : "cannot set up training");
        goto done;
    }
    if (a.resume) {
        if ((rc = emdpo_trainer_resume(t, ckpt, &diag))) {
            rc = cli_fail(cmdname, rc, &diag, "cannot resume");
            goto done;
        }
    } else if (dpo && (rc = emdpo_trainer_set_reference(t, ref))) {
        rc = cli_fail(cmdname, rc, NULL, "reference log-probabilities");
        goto done;
    }
    if ((rc = cli_mkdirs(cmdname, a.out))) goto done;
    if (a.log && !(logf = fopen(a.log, a.resume ? "a" : "w"))) {
        rc = cli_usage_error(cmdname, "cannot write %s", a.log);
        goto done;
    }
    int64_t E = (int64_t)a.batch * a.accum, steps = a.steps ? a.steps : (set->n_group + E - 1) / E;
    int progress = !a.quiet && isatty(STDERR_FILENO);
    if (!a.quiet && set->n_truncated)
        fprintf(stderr, "emdpo %s: note: %lld of %lld sequences were truncated to %d tokens\n", cmdname,
                (long long)set->n_truncated, (long long)set->n_seq, a.max_length);
    emdpo_train_metrics met;
    memset(&met, 0, sizeof met);
    while (emdpo_trainer_steps_done(t) < steps) {
        double t0 = cli_now();
        if ((rc = emdpo_trainer_step(t, &met))) {
            rc = cli_fail(cmdname, rc, NULL, rc == EMDPO_ERR_NUMERIC ? "the loss or gradient is not finite (lower --lr?)"
                                                                      : "training step failed");
            goto done;
        }
        double eps = (double)met.examples / (cli_now() - t0 + 1e-12);
        if (logf) {
            log_line(logf, &met, dpo, eps);
            fflush(logf);
        }
        if (progress)
            fprintf(stderr, "\r%s step %lld/%lld  loss %.4f  grad_norm %.3g  lr %.3g  %.1f ex/s ", cmdname,
                    (long long)met.step, (long long)steps, met.loss, met.grad_norm, met.learning_rate, eps);
        if (a.save_every && met.step % a.save_every == 0 && met.step < steps &&
            (rc = save_all(cmdname, t, m, a.out, ckpt)))
            goto done;
    }
    if (progress) fputc('\n', stderr);
    if ((rc = save_all(cmdname, t, m, a.out, ckpt))) goto done;
    if (logf && ferror(logf)) {
        rc = cli_usage_error(cmdname, "error writing %s", a.log);
        goto done;
    }
    if (!a.quiet)
        printf("%s: %lld steps (loss %.6g at the last); wrote %s/model.safetensors, config.json, trainer.bin\n", cmdname,
               (long long)emdpo_trainer_steps_done(t), met.loss, a.out);
done:
    if (logf) fclose(logf);
    emdpo_trainer_free(t);
    emdpo_free(w, w ? (size_t)n_w * sizeof *w : 0);
    emdpo_lm_set_free(set);
    emdpo_lm_texts_free(texts);
    emdpo_data_free(d);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(ref);
    emdpo_llama_free(m);
    return rc;
}
