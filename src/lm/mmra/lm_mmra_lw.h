/* MMRA-LW, the paper's Algorithm 2, on Llama policies: one policy trained
 * by weighted multi-item DPO on the fit's data, with example weights that
 * shift by multiplicative weights toward the types it serves worst.
 *
 * From an EM-DPO fit (the SFT model, which is also the reference, the K
 * type policies pi_1..pi_K and the posterior gamma) and its data, with
 * w = (1/K, ..., 1/K) and pi = the SFT model:
 *
 *   for t = 1..T:
 *     decision j weighs sum_k w_k gamma_jk   (gamma_jk: the posterior of
 *                                             j's annotator; not rescaled)
 *     `steps` optimizer steps of weighted DPO (lm_train.h)       -> pi^t
 *     R_k(pi^t) = L[k][k] - L[k][pi^t]         (lm_mmra.h, pi^t as column K)
 *     w_k <- w_k exp(eta R_k) / sum_l w_l exp(eta R_l)
 *
 * Warm start: pi^t continues from pi^{t-1}, and the whole run is one DPO
 * run (one trainer: optimizer state, warmup and shuffling carry over)
 * whose example weights change between rounds. That is how the paper's "a
 * few batches of weighted DPO" per round reads; restarting each round from
 * the SFT model would need every round to train to convergence alone.
 *
 * Regrets, with rewards beta (log pi_k - log pi_ref):
 *  - exact: over each decision's option set (emdpo_lm_mmra_exact_logp);
 *    the types and the reference are scored once, the candidate each round;
 *  - sample: emdpo_lm_mmra_sample with the candidate as column K and the
 *    same seed every round, so the types' columns are the same draws and
 *    rounds are compared on common random numbers (those columns are
 *    regenerated each round: K + 1 generations per round where 1 would
 *    do); each regret gets the standard error sqrt(se[k][k]^2 + se[k][K]^2).
 * Both are estimated on the data the policy trains on (in-sample).
 *
 * The returned policy (select): BEST, the round with the smallest max
 * regret max_k R_k (not floored at 0; ties to the earlier round), or LAST,
 * pi^T. Multiplicative weights do not make the max regret fall round after
 * round, so the last round need not be the best. The SFT model's regrets
 * are reported as the start but it is never returned.
 *
 * Models are borrowed; the types must share the SFT model's vocabulary and
 * pi its configuration. Deterministic for a seed and a thread count. */
#ifndef EMDPO_LM_MMRA_LW_H
#define EMDPO_LM_MMRA_LW_H

#include <stdint.h>

#include "core/em.h"
#include "data/data.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/engine/optim.h"
#include "lm/io/tokenizer.h"
#include "lm/mmra/lm_mmra.h"

/* emdpo_regret_estimator, emdpo_lw_select and emdpo_mmra_round (one round
 * of an MMRA training loop, this file's and lm_mmra_onpolicy.h's) are
 * public (emdpo/mmra.h). */

typedef struct emdpo_lm_mmra_lw_opts {
    int rounds;                          /* T >= 1 (5) */
    double eta;                          /* multiplicative-weights rate > 0 (1) */
    int64_t steps;                       /* optimizer steps per round >= 1 (10) */
    double beta;                         /* DPO temperature and reward scale > 0 (0.1) */
    double rpo_alpha;                    /* RPO's NLL weight >= 0 (0) */
    emdpo_optim_config optim;            /* emdpo_train_config_init's DPO optimizer */
    int batch;                           /* decisions per micro-batch (4) */
    int accum;                           /* micro-batches per optimizer step (1) */
    int max_length;                      /* truncation (lm_batch.h); 0: min(512, the SFT model's context) */
    int max_prompt_length;               /* 0: max_length / 2 */
    uint64_t seed;                       /* shuffling (1) */
    emdpo_regret_estimator estimator; /* EXACT */
    emdpo_lm_mmra_opts regret;           /* the estimator's options; beta and lengths come from above */
    emdpo_lw_select select;           /* BEST */
    emdpo_lora *lora;                    /* non-NULL: this adapter on sft (borrowed, made for sft's shapes, its
                                            starting values the caller's) is trained instead of a whole model,
                                            sft frozen and the reference; pi is then NULL */
    int grad_checkpoint;                 /* activation checkpointing (emdpo_train_config's) */
    const emdpo_lora *const *type_lora;  /* (K) type k runs as types[k] with adapter type_lora[k], unmerged
                                            (an entry NULL: types[k] alone); exact estimator only. NULL: none */
    /* Called after the start's evaluation and after every round; may be NULL. */
    void (*progress)(void *ud, const emdpo_mmra_round *r, int K);
    void *progress_ud;
} emdpo_lm_mmra_lw_opts;

void emdpo_lm_mmra_lw_opts_default(emdpo_lm_mmra_lw_opts *o);

typedef struct emdpo_lm_mmra_lw_result {
    emdpo_mmra_round start;   /* the SFT model, with uniform weights */
    emdpo_mmra_round *rounds; /* (T), the caller's array */
    emdpo_mmra_round final;   /* the returned round's record, its w the weights after the last update */
    int chosen;                  /* the round returned, 1..T */
} emdpo_lm_mmra_lw_result;

/* Per-decision weights wd[j] = sum_k w[k] gamma[j * K + k] (d->n_dec). */
void emdpo_lm_mmra_lw_decision_weights(int64_t n_dec, int K, const double *gamma, const double *w, double *wd);

/* Multiplicative weights: w_k <- w_k exp(eta gain_k) / sum_l w_l
 * exp(eta gain_l), in log space so that no eta * gain overflows. w must
 * be on the simplex; it stays there, and a zero weight stays zero. */
void emdpo_lm_mmra_mw(int K, double eta, const double *gain, double *w);

/* Runs MMRA-LW. types (K, 1..EMDPO_MAX_K), sft, tok and d (text data) as
 * for emdpo_lm_mmra_exact; gamma (d->n_dec, K) the posterior of each
 * decision's annotator (emdpo_data_expand_weights of the fit's
 * posterior), >= 0 and finite. pi, a model with sft's configuration, gets
 * the returned policy (o->lora: the adapter gets it, pi NULL); res->rounds
 * must hold o->rounds entries. A sampled estimate of an adapter policy
 * generates from a float32 copy of sft with the adapter merged
 * (lm_adapted.h).
 * EMDPO_ERR_INVALID_ARG for bad options, gamma or models,
 * EMDPO_ERR_UNSUPPORTED for data without text, EMDPO_ERR_LIMIT when a
 * sequence does not fit a model, EMDPO_ERR_NUMERIC when training diverges
 * or an estimate is not finite, EMDPO_ERR_NOMEM. On failure pi's
 * parameters are unspecified. */
int emdpo_lm_mmra_lw(const emdpo_llama *sft, const emdpo_llama *const *types, int K, const emdpo_tokenizer *tok,
                     const emdpo_data *d, const double *gamma, const emdpo_lm_mmra_lw_opts *o, emdpo_llama *pi,
                     emdpo_lm_mmra_lw_result *res);

#endif
