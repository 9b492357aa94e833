/* The flags of EM-DPO on Llama policies, shared by emdpo fit --policy llama
 * and emdpo select --policy llama, so that both take the same settings. */
#include "cli.h"

int cli_lm_fit_flags(cli_opt *opts, emdpo_lm_fit_opts *o) {
    emdpo_lm_mstep_opts *m = &o->mstep;
    const cli_opt flags[CLI_LM_FIT_FLAGS] = {
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
        CLI_SAVE_DTYPE_FLAG(&o->save_dtype),
    };
    for (int i = 0; i < CLI_LM_FIT_FLAGS; i++) opts[i] = flags[i];
    return CLI_LM_FIT_FLAGS;
}
