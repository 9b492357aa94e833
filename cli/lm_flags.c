/* The flags of EM-DPO on Llama policies, shared by emdpo fit --policy llama
 * and emdpo select --policy llama, so that both take the same settings;
 * and the LoRA flags every Llama policy command shares. */
#include <math.h>
#include <string.h>

#include "cli.h"

int cli_lora_flags(cli_opt *opts, cli_lora *l) {
    emdpo_lora_config d;
    emdpo_lora_config_init(&d);
    l->r = d.r;
    l->alpha = d.alpha;
    l->dropout = d.dropout;
    l->targets = "all-linear";
    l->rslora = 0;
    l->opts = opts;
    const cli_opt flags[CLI_LORA_FLAGS] = {
        {"lora-r", CLI_INT, &l->r, "R", "train a LoRA adapter of rank R per policy on the frozen model instead of "
                                        "the model itself (any --lora flag turns adapters on)", 0, 0, 0},
        {"lora-alpha", CLI_DBL, &l->alpha, "X", "LoRA scale numerator: updates are alpha/R * B A", 0, 0, 0},
        {"lora-dropout", CLI_DBL, &l->dropout, "P", "dropout on the adapters' inputs while training, in [0, 1)", 0, 0,
         0},
        {"lora-targets", CLI_STR, &l->targets, "LIST", "projections adapted, PEFT's names: q_proj,k_proj,v_proj,"
                                                       "o_proj,gate_proj,up_proj,down_proj or all-linear", 0, 0, 0},
        {"rslora", CLI_FLAG, &l->rslora, NULL, "scale by alpha/sqrt(R) (PEFT's use_rslora)", 0, 0, 0},
    };
    for (int i = 0; i < CLI_LORA_FLAGS; i++) opts[i] = flags[i];
    return CLI_LORA_FLAGS;
}

int cli_lora_finish(const char *cmd, const cli_lora *l, emdpo_lora_config *out) {
    emdpo_lora_config_init(out);
    out->r = 0;
    int on = 0;
    for (int i = 0; i < CLI_LORA_FLAGS; i++) on |= l->opts[i].seen;
    if (!on) return 0;
    if (l->r < 1) return cli_usage_error(cmd, "--lora-r must be at least 1");
    if (!isfinite(l->alpha)) return cli_usage_error(cmd, "--lora-alpha must be a finite number");
    if (!(l->dropout >= 0.0 && l->dropout < 1.0)) return cli_usage_error(cmd, "--lora-dropout must be in [0, 1)");
    if (emdpo_lora_targets_parse(l->targets, &out->targets))
        return cli_usage_error(cmd, "--lora-targets: '%s' is not a list of q_proj, k_proj, v_proj, o_proj, gate_proj, "
                                    "up_proj, down_proj, or all-linear", l->targets);
    out->r = l->r;
    out->alpha = (float)l->alpha;
    out->dropout = (float)l->dropout;
    out->rslora = l->rslora;
    return 0;
}

int cli_lm_fit_flags(cli_opt *opts, emdpo_lm_fit_opts *o, cli_lora *lora) {
    emdpo_lm_mstep_opts *m = &o->mstep;
    const cli_opt flags[CLI_LM_FIT_FLAGS - CLI_LORA_FLAGS] = {
        {"max-iter", CLI_INT, &o->em.max_iter, "N", "EM iterations after the first M-step (the paper's)", 0, 0, 0},
        {"tol", CLI_DBL, &o->em.tol, "X", "an iteration improves when it beats the best log-likelihood so far by "
                                         "more than X*|loglik|", 0, 0, 0},
        {"patience", CLI_INT, &o->em.patience, "N", "stop after N+1 iterations in a row that do not improve", 0, 0, 0},
        {"init", CLI_ENUM, &o->em.init, "METHOD", "kmeans (on SFT embeddings of each annotator's chosen responses), "
                                                  "kmeans-tokens (on the chosen responses' tokens against the "
                                                  "decision's mean) or random", 0, 0, emdpo_init_name},
        {"starts", CLI_INT, &o->em.starts, "N", "EM runs from different seeds; the best log-likelihood wins", 0, 0, 0},
        {"seed", CLI_U64, &o->em.seed, "S", "random seed; same seed and threads give the same bits", 0, 0, 0},
        {"beta", CLI_DBL, &m->beta, "X", "DPO temperature: utilities are beta * log-ratios", 0, 0, 0},
        CLI_RPO_FLAG(&m->rpo_alpha),
        {"steps", CLI_I64, &m->steps, "N", "optimizer steps per type per M-step (default: --epochs)", 0, 0, 0},
        {"epochs", CLI_DBL, &m->epochs, "X", "passes over the decisions per M-step when --steps is not given", 0, 0, 0},
        {"lr", CLI_DBL, &m->optim.lr, "X", "learning rate", 0, 0, 0},
        {"optimizer", CLI_ENUM, &m->optim.kind, "NAME", "rmsprop or adamw", 0, 0, emdpo_optim_name},
        {"warmup", CLI_I64, &m->optim.warmup, "N", "linear warmup steps, restarted every M-step", 0, 0, 0},
        {"clip", CLI_DBL, &m->optim.clip, "X", "max gradient norm, 0 = off", 0, 0, 0},
        {"batch", CLI_INT, &m->batch, "N", "decisions per micro-batch", 0, 0, 0},
        {"accum", CLI_INT, &m->accum, "N", "micro-batches per optimizer step", 0, 0, 0},
        CLI_LENGTH_FLAGS(&m->max_length, &m->max_prompt_length),
        {"restart", CLI_FLAG, &m->restart, NULL, "start every M-step from the SFT model (the authors' code) instead "
                                                 "of the type's current policy", 0, 0, 0},
        {"weight-norm", CLI_ENUM, &m->weight_norm, "MODE", "mean: each type's weights rescaled to mean 1; none: raw "
                                                           "gamma, the authors' code", 0, 0, emdpo_weight_norm_name},
        {"score-batch", CLI_INT, &m->score_batch, "N", "sequences per scoring forward", 0, 0, 0},
        CLI_GRAD_CKPT_FLAG(&m->grad_checkpoint),
        CLI_SAVE_DTYPE_FLAG(&o->save_dtype),
    };
    int n = CLI_LM_FIT_FLAGS - CLI_LORA_FLAGS;
    for (int i = 0; i < n; i++) opts[i] = flags[i];
    return n + cli_lora_flags(opts + n, lora);
}
