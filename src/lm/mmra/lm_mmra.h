/* MMRA-AE on language-model policies: the cross rewards L that
 * emdpo_mmra_ae (mmra.h) turns into the min-max-regret mixture, for K Llama
 * policies (one per annotator type) that share a reference.
 *
 *   L[z][b] = E_{x, y ~ pi_b}[ beta (log pi_z(y|x) - log pi_ref(y|x)) ]
 *
 * rows z = 0..K-1 are the types whose rewards are measured, columns b =
 * 0..M-1 the policies that generate (the K types first, then any others,
 * such as a pooled vanilla-DPO policy). Sequence log-probabilities are those
 * of lm_batch.h: response tokens only, the response ending in EOS, prompts
 * and responses truncated to the lengths in the options.
 *
 * Two estimators:
 *  - exact over finite option sets: the items of each decision of a dataset
 *    are the option set C, pi_b(y | C) = softmax over C of log pi_b(y|x),
 *    and L averages sum_{y in C} pi_b(y|C) r_z(y) over decisions;
 *  - sampled: for each decision's prompt, `samples` responses y ~ pi_b are
 *    generated (lm_sample.h), scored under every type and the reference,
 *    and averaged over all draws, with a standard error per entry.
 *
 * Regrets R[z][b] = L[z][z] - L[z][b] do not change when a type's reward
 * moves by a constant per prompt (mixture weights sum to one), so the
 * unnormalised sequence log-ratio is the reward both estimators use.
 *
 * The sampled estimator's y is what the generator emits: it stops at EOS or
 * BOS (scored as EOS, the only end token lm_batch.h knows), after
 * max_tokens, or when the context is full (scored without an end token:
 * the estimate is then over truncated responses). Temperatures other than
 * 1 sample from a tempered policy, not pi_b.
 *
 * Models are borrowed. Results are deterministic for a seed and a thread
 * count (generated texts do not depend on the thread count; scores may
 * differ in the last bits). */
#ifndef EMDPO_LM_MMRA_H
#define EMDPO_LM_MMRA_H

#include <stdint.h>

#include "data/data.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/io/tokenizer.h"

typedef struct emdpo_lm_mmra_opts {
    double beta;           /* reward scale, > 0 (0.1) */
    int max_length;        /* truncation (lm_batch.h); 0: min(512, the reference's context) */
    int max_prompt_length; /* 0: max_length / 2 */
    int score_batch;       /* sequences per scoring forward (16) */
    /* sampled estimator only */
    int samples;           /* responses per prompt and policy, >= 1 (4) */
    int max_tokens;        /* new tokens per response, >= 1 (64) */
    float temperature;     /* > 0 (1: the policy itself) */
    int64_t max_prompts;   /* the first N decisions' prompts; 0: all */
    uint64_t seed;         /* generation (1) */
} emdpo_lm_mmra_opts;

void emdpo_lm_mmra_opts_default(emdpo_lm_mmra_opts *o);

/* The exact estimator from log-probabilities already computed: logp (M,
 * d->n_items) holds each policy's response log-probability of every item of
 * d, ref_logp (d->n_items) the reference's. Decisions weigh equally.
 * EMDPO_ERR_INVALID_ARG for K < 1, M < K, beta not positive and finite or an
 * empty dataset; EMDPO_ERR_NUMERIC when a result is not finite. */
int emdpo_lm_mmra_exact_logp(const emdpo_data *d, int K, int M, double beta, const double *logp,
                             const double *ref_logp, double *L /* out (K, M) */);

/* The exact estimator: scores every item of d (which must have text) under
 * the M policies and ref, then emdpo_lm_mmra_exact_logp. pol[0..K) are the
 * types. EMDPO_ERR_UNSUPPORTED for feature data, EMDPO_ERR_LIMIT when a
 * sequence does not fit a model, EMDPO_ERR_INVALID_ARG for bad options or
 * models of different vocabularies, EMDPO_ERR_NOMEM. */
int emdpo_lm_mmra_exact(const emdpo_llama *const *pol, int K, int M, const emdpo_llama *ref,
                        const emdpo_tokenizer *tok, const emdpo_data *d, const emdpo_lm_mmra_opts *o,
                        double *L /* out (K, M) */);
/* The same with policy b run as base pol[b] with adapter lora[b],
 * unmerged (lora NULL, or an entry NULL: the model alone). */
int emdpo_lm_mmra_exact_lora(const emdpo_llama *const *pol, const emdpo_lora *const *lora, int K, int M,
                             const emdpo_llama *ref, const emdpo_tokenizer *tok, const emdpo_data *d,
                             const emdpo_lm_mmra_opts *o, double *L /* out (K, M) */);

/* The sampled estimator over the prompts of d's decisions (d needs no
 * responses). se (K, M) gets the standard error of each entry (the sample
 * standard deviation of the draws over sqrt(draws); NaN with one draw);
 * *n_draws (may be NULL) the draws per policy. Statuses as
 * emdpo_lm_mmra_exact. */
int emdpo_lm_mmra_sample(const emdpo_llama *const *pol, int K, int M, const emdpo_llama *ref,
                         const emdpo_tokenizer *tok, const emdpo_data *d, const emdpo_lm_mmra_opts *o,
                         double *L,  /* out (K, M) */
                         double *se, /* out (K, M) */
                         int64_t *n_draws);

/* Standard error of each type's regret under the mixture w (K) of the
 * first K columns, from per-entry standard errors se (K, ld) of independent
 * columns: regret[z] = L[z][z] - sum_b w[b] L[z][b], so its variance is
 * (1 - w[z])^2 se[z][z]^2 + sum_{b != z} w[b]^2 se[z][b]^2. */
void emdpo_lm_mmra_mixture_se(int K, int ld, const double *se, const double *w, double *out /* (K) */);

#endif
