/* emdpo sft and emdpo dpo: one training run of a Llama policy, with a
 * JSONL metrics log, a progress line and checkpoints that --resume
 * continues bit for bit (the library's emdpo_train_job). */
#include <string.h>

#include "cli.h"

typedef struct progress_line {
    const char *cmd;
} progress_line;

static void print_step(void *ud, const emdpo_train_metrics *m, int64_t total, double eps) {
    const progress_line *p = ud;
    fprintf(stderr, "\r%s step %lld/%lld  loss %.4f  grad_norm %.3g  lr %.3g  %.1f ex/s ", p->cmd, (long long)m->step,
            (long long)total, m->loss, m->grad_norm, m->learning_rate, eps);
}

static int train(emdpo_train_mode mode, int argc, char **argv) {
    int dpo = mode == EMDPO_TRAIN_DPO;
    const char *name = dpo ? "dpo" : "sft";
    emdpo_train_opts o;
    emdpo_train_opts_init(&o, mode);
    emdpo_train_config *c = &o.train;
    int threads = 0, quiet = 0;
    cli_lora lora;
    cli_read rd;
    cli_read_init(&rd);
    cli_opt opts[] = {
        {"data", CLI_STR, &o.data, "FILE",
         dpo ? "preference JSONL: prompt, chosen, rejected (a string or a list) or ranking"
             : "JSONL of {\"prompt\",\"response\"} or {\"text\"} (preference data: its chosen responses)", 1, 0, 0},
        {"model", CLI_STR, &o.model, "CKPT", "starting model: llama2.c .bin or Hugging Face directory", 0, 0, 0},
        {"config", CLI_STR, &o.config_spec, "SPEC", "fresh model instead: dim=N,layers=N,heads=N,kv_heads=N,hidden=N,"
                                                    "vocab=N,seq_len=N,tied=0|1", 0, 0, 0},
        CLI_TOKENIZER_FLAG(&o.tokenizer),
        {"out", CLI_STR, &o.out, "DIR", "output: the model (config.json, generation_config.json, model.safetensors, "
                                        "the tokenizer's files) and trainer.bin", 1, 0, 0},
        {"steps", CLI_I64, &o.steps, "N", "optimizer steps (default: one epoch)", 0, 0, 0},
        {"lr", CLI_DBL, &c->optim.lr, "X", "learning rate", 0, 0, 0},
        {"batch", CLI_INT, &c->batch, "N", "examples per micro-batch", 0, 0, 0},
        {"accum", CLI_INT, &c->accum, "N", "micro-batches per optimizer step", 0, 0, 0},
        CLI_LENGTH_FLAGS(&o.max_length, &o.max_prompt_length),
        {"optimizer", CLI_ENUM, &c->optim.kind, "NAME", "adamw or rmsprop", 0, 0, emdpo_optim_name},
        {"warmup", CLI_I64, &c->optim.warmup, "N", "linear warmup steps", 0, 0, 0},
        {"clip", CLI_DBL, &c->optim.clip, "X", "max gradient norm, 0 = off", 0, 0, 0},
        {"weight-decay", CLI_DBL, &c->optim.weight_decay, "X", "decoupled for adamw, L2 for rmsprop", 0, 0, 0},
        {"beta", CLI_DBL, &c->loss.beta, "X", "DPO temperature", 0, 0, 0},
        {"loss", CLI_ENUM, &c->loss.kind, "NAME", "dpo, cdpo, ipo or hinge", 0, 0, emdpo_loss_name},
        {"label-smoothing", CLI_DBL, &c->loss.label_smoothing, "X", "cdpo's epsilon in [0, 0.5)", 0, 0, 0},
        CLI_RPO_FLAG(&c->loss.rpo_alpha),
        {"ref", CLI_STR, &o.ref, "CKPT", "reference model (default: the starting model)", 0, 0, 0},
        {"weights", CLI_STR, &o.weights, "FILE",
         dpo ? "CSV of weights: header 'weight' (one per decision, in the data's order), 'annotator,...' (one per "
               "annotator) or emdpo estep's weights.csv (one per decision)"
             : "CSV with header 'weight': one weight per example", 0, 0, 0},
        {"weight-column", CLI_STR, &o.weight_column, "NAME", "column of an annotator or weights.csv file, e.g. "
                                                             "gamma_2, weight_2 (default: the second)", 0, 0, 0},
        {"seed", CLI_U64, &c->seed, "S", "shuffling and fresh-model seed", 0, 0, 0},
        CLI_GRAD_CKPT_FLAG(&c->grad_checkpoint),
        {"save-every", CLI_I64, &o.save_every, "N", "checkpoint every N steps, 0 = only at the end", 0, 0, 0},
        {"resume", CLI_FLAG, &o.resume, NULL, "continue from DIR/trainer.bin", 0, 0, 0},
        {"log", CLI_STR, &o.log, "FILE", "JSONL metrics, one line per step (--resume keeps the lines up to its checkpoint)", 0, 0, 0},
        CLI_SAVE_DTYPE_FLAG(&o.save_dtype),
        {"merge", CLI_STR, &o.merge, "PATH", "with a LoRA adapter: also write the model with it merged, in the "
                                             "model's format (a directory, or a .gguf or llama2.c file)", 0, 0, 0},
        {0}, {0}, {0}, {0}, {0}, /* the LoRA flags */
        CLI_READ_FLAG_LIST(&rd),
        CLI_THREADS_FLAG(&threads),
        {"quiet", CLI_FLAG, &quiet, NULL, "print nothing but errors", 0, 0, 0},
    };
    int n_opts = (int)(sizeof opts / sizeof opts[0]);
    /* SFT has no preference flags: drop beta .. ref from its table. */
    if (!dpo) {
        int from = 15, to = 19;
        memmove(&opts[from], &opts[to], (size_t)(n_opts - to) * sizeof opts[0]);
        n_opts -= to - from;
    }
    int li = 0;
    while (opts[li].name) li++;
    cli_lora_flags(&opts[li], &lora);
    cli_cmd cmd = {name,
                   dpo ? "Preference optimization (DPO, conservative DPO, IPO, hinge) of a Llama policy."
                       : "Supervised fine-tuning of a Llama policy (cross-entropy on response tokens).",
                   dpo ? "Each decision's chosen response is pushed above its rejected ones: the DPO loss is the\n"
                         "Plackett-Luce likelihood of beta * log-ratio, so any number of rejected responses and\n"
                         "rankings work. Reference log-probabilities are computed once and cached. Weights (e.g.\n"
                         "one column of emdpo fit's posterior.csv, --weight-column gamma_2) scale each decision.\n"
                         "Too-long sequences: the prompt keeps BOS and its last tokens, then responses are cut.\n"
                         "Metrics (TRL names) go to --log; DIR/trainer.bin lets a killed run --resume and end\n"
                         "with the same bits. Needs the same data, flags and --threads to do so.\n"
                         "With --lora-r (PEFT's LoRA) only an adapter is trained on the frozen --model, which is\n"
                         "also the reference; DIR holds adapter_config.json and adapter_model.safetensors."
                       : "The loss is the mean over response tokens (and the EOS after them) of -log p.\n"
                         "Too-long sequences: the prompt keeps BOS and its last tokens, then responses are cut.\n"
                         "Metrics (TRL names) go to --log; DIR/trainer.bin lets a killed run --resume and end\n"
                         "with the same bits. Needs the same data, flags and --threads to do so.\n"
                         "With --lora-r (PEFT's LoRA) only an adapter is trained on the frozen --model; DIR holds\n"
                         "adapter_config.json and adapter_model.safetensors.",
                   opts, n_opts};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (emdpo_dist_rank() > 0) quiet = 1; /* under mpirun rank 0 alone reports */
    if (o.model && o.config_spec) return cli_usage_error(name, "give --model or --config, not both");
    if (!o.model && !o.config_spec && !o.resume)
        return cli_usage_error(name, "missing --model (or --config for a fresh model)");
    if ((rc = cli_lora_finish(name, &lora, &o.lora))) return rc;
    if (o.lora.r && !o.model) return cli_usage_error(name, "a LoRA adapter needs --model, the model it adapts (also with --resume)");
    if (o.merge && !o.lora.r) return cli_usage_error(name, "--merge needs a LoRA adapter (--lora-r)");
    progress_line line = {name};
    int progress = cli_progress_on(quiet, 0);
    if (progress) {
        o.progress = print_step;
        o.progress_ud = &line;
    }
    emdpo_set_threads(threads);
    if ((rc = cli_read_finish(&rd, o.tokenizer))) return rc;
    o.read = &rd.o;

    emdpo_train_job *job = NULL;
    emdpo_diag diag;
    if ((rc = emdpo_train_job_create(&o, &job, &diag))) {
        cli_read_free(&rd);
        return cli_fail(name, rc, &diag, &cmd);
    }
    if (!quiet && emdpo_train_job_n_truncated(job))
        fprintf(stderr, "emdpo %s: note: %lld of %lld sequences were truncated to %d tokens\n", name,
                (long long)emdpo_train_job_n_truncated(job), (long long)emdpo_train_job_n_sequences(job),
                emdpo_train_job_max_length(job));
    rc = emdpo_train_job_run(job, &diag);
    if (progress && emdpo_train_job_steps_done(job)) fputc('\n', stderr);
    if (rc) {
        rc = cli_fail(name, rc, &diag, &cmd);
    } else if (!quiet) {
        emdpo_train_metrics last;
        emdpo_train_job_last(job, &last);
        printf("%s: %lld steps (loss %.6g at the last); wrote %s/%s, trainer.bin%s%s\n", name,
               (long long)emdpo_train_job_steps_done(job), last.loss, o.out,
               o.lora.r ? "adapter_config.json, adapter_model.safetensors" : "model.safetensors, config.json",
               o.merge ? "; merged into " : "", o.merge ? o.merge : "");
    }
    emdpo_train_job_free(job);
    cli_read_free(&rd);
    return rc;
}

int cmd_sft(int argc, char **argv) { return train(EMDPO_TRAIN_SFT, argc, argv); }
int cmd_dpo(int argc, char **argv) { return train(EMDPO_TRAIN_DPO, argc, argv); }
