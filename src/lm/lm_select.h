/* Choosing the number of types K for Llama policies on validation
 * annotators by reward margins (the paper's appendix D.3.1).
 *
 * Rewards. Item q of a decision gets r_kq = β·(log π_k(y_q|x) −
 * log π_ref(y_q|x)) under type k, response tokens only (lm_batch.h): the
 * utility the Llama policies' choice model uses (llama_policy.h).
 *
 * Margins. A decision's margin under type k is the mean, over its rejected
 * items (every item after the chosen one), of r_k,chosen − r_kq, as in
 * emdpo eval (lm_eval.h).
 *
 * The criterion is the paper's max-mean reward margin without group
 * labels, which validation data lacks in practice: every validation
 * annotator counts as a group of their own, so
 *     criterion = (1/n) Σ_i max_k (mean over i's decisions of margin_k).
 * With true groups, group g's max-mean margin is max_k of the mean margin
 * over g's decisions (each decision counts once; annotators without a
 * group are left out), the paper's Table 1 figure and emdpo eval's.
 * Every type counts in the maxima, empty ones (η_k = 0, still the SFT
 * model) included: the ensemble a fit returns, as emdpo eval scores it.
 * A tie goes to the lower type; NaN margins are skipped.
 *
 * That criterion picks each annotator's best type on the decisions it then
 * scores, so it rises with K even when the extra types fit only noise. The
 * cross-fitted criterion removes that bias: an annotator's decisions are
 * split into two halves (even and odd positions in the annotator's order),
 * the best type on each half is scored on the other half, and the two
 * scores are averaged; the criterion is the mean over annotators with at
 * least two decisions (NaN when there are none).
 *
 * The mixture log-likelihood is Σ_i log Σ_k η_k Π_j P_k(choice_ij), P_k the
 * Plackett–Luce probability of decision j's choices under the utilities
 * r_k (choice.h); types with η_k = 0 drop out.
 *
 * Sums run in a fixed order: results do not depend on threads. */
#ifndef EMDPO_LM_SELECT_H
#define EMDPO_LM_SELECT_H

#include "data/data.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/io/lm_batch.h"

/* reward (K, set->n_seq), row k from models[k] under adapters[k] (the
 * array or an entry may be NULL: none), with ref_logp (set->n_seq)
 * the reference's emdpo_lm_score on set; batch sequences per forward.
 * EMDPO_ERR_INVALID_ARG for K outside 1..EMDPO_MAX_K, beta not positive
 * and finite, or batch < 1; otherwise the errors of emdpo_lm_score. */
int emdpo_lm_rewards(const emdpo_llama *const *models, const emdpo_lora *const *adapters, int K,
                     const emdpo_lm_set *set, const double *ref_logp, double beta, int batch, double *reward);

/* The validation scores of K types on d from reward (K, d->n_items) and
 * their weights eta (K, non-negative and finite): *criterion, *loglik (the
 * total over annotators), when group_margin is not NULL the max-mean margin
 * of each true group (d->n_groups), and when crossfit is not NULL the
 * cross-fitted criterion. Allocates nothing.
 * EMDPO_ERR_INVALID_ARG for K outside 1..EMDPO_MAX_K, a bad eta, all
 * weights 0, or d without annotators. */
int emdpo_lm_select_score(const emdpo_data *d, int K, const double *reward, const double *eta, double *criterion,
                          double *loglik, double *group_margin, double *crossfit);

#endif
