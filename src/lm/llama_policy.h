/* The Llama policy family behind the policy seam (policy.h): K language
 * models, one per latent annotator type, all starting as copies of an SFT
 * model that is also the reference.
 *
 * Utilities. Item q of a decision gets u_q = β·(log π_k(y_q|x) −
 * log π_ref(y_q|x)), response tokens only (lm_batch.h: sequence i of the
 * tokenized set is item i of the dataset), and the decision's probability
 * is the Plackett–Luce likelihood of its choices (choice.h).
 *
 * Caching. The dataset is tokenized and its reference log-probabilities
 * are computed once, at creation, and shared by every clone (EM clones the
 * policy once per start). The cache is keyed by a fingerprint of the
 * dataset (sizes, structure and texts): called with another dataset, the
 * policy tokenizes and scores that one instead. decision_logp scores every
 * item under every type (one pass per type); mstep scores every item under
 * every trained type at its final parameters, so EM's E-step needs no pass
 * of its own.
 *
 * M-step. For each active type k, weighted multi-item DPO (lm_train.h, the
 * DPO loss, i.e. minus the Plackett–Luce log-likelihood the E-step uses)
 * with per-decision weights γ_ik (annotator i's weight on every decision of
 * i), a fresh optimizer (so its warmup restarts) and a seed drawn from
 * (seed, M-step number, k). By default it starts from the type's current
 * parameters (warm start); `restart` starts every M-step from the SFT
 * parameters instead, as the authors' code does. A type whose weights are
 * all zero is left bit-identical and is not trained. The M-step is a fixed
 * budget of stochastic steps: it does not guarantee that the weighted
 * log-likelihood rises, so neither does EM, and it never reports
 * convergence.
 *
 * Weight normalisation. The trainer divides a step's weighted loss by the
 * number of examples in it, not by their sum of weights. Left so (NONE, the
 * authors' choice), type k's gradient scales with η_k, which with
 * RMSprop/AdamW mainly shifts how gradient clipping and eps act on small
 * types. MEAN (the default) rescales each type's weights to mean 1 over the
 * decisions before training: the objective is the same up to a positive
 * constant, and clipping behaves for every type as in plain DPO. Per-batch
 * normalisation (dividing by the batch's own sum of γ) is deliberately not
 * offered: a batch of decisions that barely belong to type k would then
 * take a full-size step, which biases the gradient toward them.
 *
 * Memory. K full copies of the model (plus the borrowed SFT model), and
 * per M-step one trainer (gradients, optimizer state, activations) at a
 * time. That is fine for small models; LoRA adapters over a shared base
 * would be the next step for large ones.
 *
 * The SFT model and the tokenizer are borrowed and must outlive the policy
 * and its clones. A policy and its clones must not be used from several
 * threads at once (they share the cache); the forwards themselves use
 * OpenMP. Results are deterministic for a seed and a thread count. */
#ifndef EMDPO_LLAMA_POLICY_H
#define EMDPO_LLAMA_POLICY_H

#include <stdint.h>

#include "core/policy.h"
#include "data/data.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/engine/optim.h"
#include "lm/io/tokenizer.h"

/* The M-step's settings are public (emdpo/lm.h's emdpo_lm_mstep_opts);
 * their defaults live here: beta 0.1, the DPO training defaults of
 * emdpo_train_config_init, 1 epoch, warm start, MEAN, score_batch 16,
 * seed 1. */
void emdpo_lm_mstep_opts_init(emdpo_lm_mstep_opts *o);

/* K types (1..EMDPO_MAX_K) as copies of sft, tokenizing d (which must have
 * text) with tok and caching its reference log-probabilities under sft.
 * EMDPO_ERR_INVALID_ARG for bad options or K, EMDPO_ERR_UNSUPPORTED when d's
 * responses are not text (feature data), EMDPO_ERR_LIMIT when a sequence does not fit the model's
 * context or vocabulary, EMDPO_ERR_NOMEM. */
int emdpo_llama_policy_create(int K, const emdpo_llama *sft, const emdpo_tokenizer *tok,
                              const emdpo_lm_mstep_opts *o, const emdpo_data *d, emdpo_policy **out);

/* Type k's model (borrowed from pol), or NULL when pol is not of this
 * family or k is out of range. It keeps the SFT model's file_dtype. With
 * adapters (o->lora.r > 0) it is the SFT model, which type k runs under
 * emdpo_llama_policy_adapter(pol, k); else that is NULL. */
const emdpo_llama *emdpo_llama_policy_model(const emdpo_policy *pol, int k);
const emdpo_lora *emdpo_llama_policy_adapter(const emdpo_policy *pol, int k);

/* The tokenizer pol borrows, or NULL when pol is not of this family. */
const emdpo_tokenizer *emdpo_llama_policy_tokenizer(const emdpo_policy *pol);

/* Optimizer steps each trained type takes per M-step on the cached
 * dataset (the steps option, or what epochs gives); 0 for another family. */
int64_t emdpo_llama_policy_steps(const emdpo_policy *pol);

/* Work done so far, for tests and throughput reports: reference passes
 * over a dataset (shared with clones: 1 per distinct dataset), and model
 * forwards of this policy (scoring and training, reference excluded). 0
 * for another family. */
void emdpo_llama_policy_counters(const emdpo_policy *pol, int64_t *ref_passes, int64_t *forwards);

/* Resumable fits (drivers/fit_lm.c): what a checkpoint needs of the
 * policy, and what a resumed M-step skips. Hooks are copied to clones.
 * step: after every optimizer step of type k in the policy's M-step
 * mstep (its M-steps counted from 0 in this start). type_done: after type
 * k was trained in an M-step and its annot_logp column written (types in
 * order); non-zero stops the M-step with that status. */
typedef struct emdpo_llama_policy_hooks {
    void *ud;
    void (*step)(void *ud, int64_t mstep, int k, const emdpo_train_metrics *m, double seconds);
    int (*type_done)(void *ud, const emdpo_policy *pol, int k);
} emdpo_llama_policy_hooks;
void emdpo_llama_policy_set_hooks(emdpo_policy *pol, const emdpo_llama_policy_hooks *hooks);
/* Type k's trained parameters (its model's, or its adapter's) in place:
 * *n floats; NULL for another family or k out of range. */
float *emdpo_llama_policy_params(emdpo_policy *pol, int k, size_t *n);
/* The M-step count (part of every trainer's seed) and forwards, to save
 * and restore. The next M-step skips types 0..skip-1 (trained before a
 * resume: their parameters and annot_logp columns are restored). */
void emdpo_llama_policy_progress(const emdpo_policy *pol, int64_t *msteps, int64_t *forwards);
void emdpo_llama_policy_restore(emdpo_policy *pol, int64_t msteps, int64_t forwards, int skip);
/* The fingerprint of the dataset the policy caches (sizes, structure and
 * texts); 0 for another family. */
uint64_t emdpo_llama_policy_data_key(const emdpo_policy *pol);

/* mstep's info->objective is NaN when annot_logp is NULL: computing it would
 * take a scoring pass the caller did not ask for. info->iterations counts
 * optimizer steps over all types; info->converged is always 0. When mstep
 * fails (EMDPO_ERR_NUMERIC from a diverging step, EMDPO_ERR_NOMEM), the
 * parameters of the type it was training are unspecified. */

#endif
