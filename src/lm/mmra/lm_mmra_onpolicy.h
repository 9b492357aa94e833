/* On-policy MMRA, the paper's Algorithm 3, on Llama policies: the policy
 * minimises
 *
 *   J(pi) = sum_k w_k [R_k(pi)]^+ + beta KL(pi || pi_ref),
 *   R_k(pi) = V_k - E_{x, y ~ pi}[r_k(x, y)],  r_k = beta (log pi_k - log pi_ref),
 *
 * by policy gradient on responses it generates itself, while w follows
 * multiplicative weights. pi_ref is the SFT model; V_k = E_{x, y ~ pi_k}[r_k]
 * is estimated once (the diagonal of emdpo_lm_mmra_sample's L; its error
 * shifts every later estimate of R_k alike, hence eval_samples). From pi =
 * the SFT model and w = (1/K, ..., 1/K):
 *
 *   for t = 1..T:
 *     `steps` times:
 *       `batch` prompts (a seeded permutation of the decisions' prompts,
 *       reshuffled at each pass), `samples` responses y ~ pi to each
 *       (temperature 1), scored under pi, pi_ref and every pi_k;
 *       R^_k = V_k - mean r_k(y);
 *       A(y) = sum_k w_k 1{R^_k > 0} r_k(y) - beta (log pi(y) - log pi_ref(y));
 *       one optimizer step on -mean_y (A(y) - b(y)) grad log pi(y)
 *     w_k <- w_k exp(eta [Rbar_k]^+) / normaliser,  Rbar_k the round's mean R^_k
 *
 * The estimator is REINFORCE with a leave-one-out baseline (RLOO): b(y) is
 * the mean of A over the other responses to the same prompt. Since
 * grad E_pi[r_k] = E_pi[r_k grad log pi] and grad KL(pi || pi_ref) =
 * E_pi[(log pi - log pi_ref) grad log pi] (E_pi[grad log pi] = 0), and b(y)
 * does not depend on y, the estimate is unbiased for grad J whenever every
 * batch puts each type on the same side of the hinge. The indicator
 * 1{R^_k > 0} is read from the same batch, so near R_k = 0, where J has a
 * kink, the estimate is biased.
 *
 * w moves with [R_k]^+, the gradient of J in w (the KL term is common to
 * every type and cancels in the normalisation); MMRA-LW moves with R_k, as
 * the paper's Algorithm 2 writes.
 *
 * Responses are lm_mmra.h's: the generator stops at EOS or BOS, both scored
 * as EOS, so V_k, the steps and the final regrets share one reward. For a
 * model that ends its texts with BOS (llama2.c's stories models) the last
 * token's score is then that of EOS, not of "EOS or BOS", and the gradient
 * of that token is biased. A response cut at max_tokens or at the context
 * is scored without an end token.
 *
 * Recorded per round: the weights it used, Rbar (estimates from policies
 * that moved during the round), the mean objective estimate and the mean
 * KL estimate. The policy returned is the last one; its regrets (final) are
 * a fresh emdpo_lm_mmra_sample evaluation with the same seed as the
 * start's, so the types' columns are the same draws.
 *
 * Models are borrowed; the types and pi must have the SFT model's
 * configuration (fine-tuned copies of it). Deterministic for a seed and a
 * thread count. */
#ifndef EMDPO_LM_MMRA_ONPOLICY_H
#define EMDPO_LM_MMRA_ONPOLICY_H

#include <stdint.h>

#include "data/data.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/engine/optim.h"
#include "lm/io/tokenizer.h"
#include "lm/mmra/lm_mmra_lw.h"

typedef struct emdpo_lm_mmra_op_opts {
    int rounds;               /* T >= 1 (5) */
    int64_t steps;            /* policy-gradient steps per round >= 1 (1, as Algorithm 3) */
    double eta;               /* multiplicative-weights rate > 0 (1) */
    double beta;              /* reward scale and KL weight > 0 (0.1) */
    emdpo_optim_config optim; /* AdamW, lr 1e-6, clip 10 */
    int batch;                /* prompts per step >= 1 (4) */
    int samples;              /* responses per prompt in a step >= 2 (4) */
    int eval_samples;         /* responses per prompt and policy for V_k and the regrets; 0: samples */
    int max_tokens;           /* new tokens per response >= 1 (64) */
    int max_length;           /* prompt + response + EOS; 0: min(512, the SFT model's context) */
    int max_prompt_length;    /* 0: max_length / 2 */
    int64_t max_prompts;      /* the first N decisions' prompts; 0: all */
    int score_batch;          /* sequences per forward >= 1 (16) */
    uint64_t seed;            /* prompts, generation, evaluations (1) */
    emdpo_lora *lora;         /* non-NULL: this adapter on sft (borrowed, made for sft's shapes, its starting
                                 values the caller's) is trained instead of pi's parameters; sft (not frozen)
                                 stays the reference, and pi holds sft with the adapter merged, from which
                                 the responses are drawn (the decoders run plain models) */
    int grad_checkpoint;      /* activation checkpointing in the backward (lm/engine/llama_model.h) */
    /* Called after the start's evaluation and after every round; may be NULL. */
    void (*progress)(void *ud, const emdpo_mmra_round *r, int K);
    void *progress_ud;
} emdpo_lm_mmra_op_opts;

void emdpo_lm_mmra_op_opts_default(emdpo_lm_mmra_op_opts *o);

typedef struct emdpo_lm_mmra_op_result {
    emdpo_mmra_round start;   /* the SFT model, with uniform weights */
    emdpo_mmra_round *rounds; /* (T), the caller's array */
    emdpo_mmra_round final;   /* the returned (last) policy; w: the weights after the last update */
    double value[EMDPO_MAX_K];   /* V_k */
    int64_t draws;               /* evaluation draws per policy */
} emdpo_lm_mmra_op_result;

/* One step's estimates from scored draws: G prompts with S >= 2
 * responses each, draw i = g S + s, N = G S. lr (K + 1, N): row k < K holds
 * log pi_k(y_i) - log pi_ref(y_i), row K the policy's own log-ratio. value
 * (K) the V_k, w (K) the weights. Writes regret (K), the R^_k above; coef
 * (N), the derivative of the estimated objective with respect to
 * log pi(y_i): -(A_i - b_i) / N; *kl, the mean of row K. Returns
 * sum_k w_k [R^_k]^+ + beta * kl. K <= EMDPO_MAX_K. */
double emdpo_lm_mmra_op_estimate(int K, int G, int S, double beta, const double *value, const double *w,
                                 const double *lr, double *regret, double *coef, double *kl);

/* Runs on-policy MMRA on the prompts of d's decisions (d needs no
 * responses). pi, a model with sft's configuration, gets the last policy
 * (o->lora: sft with the last adapter merged; the adapter holds it too);
 * res->rounds must hold o->rounds entries. EMDPO_ERR_INVALID_ARG for bad
 * options or models, EMDPO_ERR_LIMIT when the lengths do not fit the
 * models, EMDPO_ERR_NUMERIC when a step or an estimate is not finite,
 * EMDPO_ERR_NOMEM. On failure pi's parameters are unspecified. */
int emdpo_lm_mmra_onpolicy(const emdpo_llama *sft, const emdpo_llama *const *types, int K, const emdpo_tokenizer *tok,
                           const emdpo_data *d, const emdpo_lm_mmra_op_opts *o, emdpo_llama *pi,
                           emdpo_lm_mmra_op_result *res);

#endif
