/* Evaluation of Llama policy ensembles on held-out preference data with
 * true annotator groups (the paper's section 5), the baselines' library
 * pieces, and the adjusted Rand index.
 *
 * Reward of item q of a decision under policy i: r_iq = β·(log π_i(y_q|x)
 * − log π_SFT(y_q|x)), response tokens only (lm_batch.h). A decision's
 * margin under i is the mean over its rejected items (every item after the
 * chosen one) of r_i,chosen − r_iq; the decision is correct under i when
 * the chosen item's reward is strictly above every other item's (a tie is
 * not correct, as TRL's rewards/accuracies).
 *
 * Per true group g (annotator groups of data.h; annotators without a group
 * are left out) and policy i: margin[g][i] = the mean margin over g's
 * decisions (each decision counts once), accuracy[g][i] = the share of g's
 * correct decisions. For an ensemble, the best policy for g is the one with
 * the highest mean margin (the lowest index on a tie): max-mean reward
 * margin_g = margin[g][best_g] and accuracy_g = accuracy[g][best_g].
 *
 * Every distinct token sequence (prompt and response, with the same
 * response start) is scored once per model: held-out data repeats prompts
 * and responses across annotators. The reference's log-probabilities are
 * computed once, at creation, and reused for every policy. */
#ifndef EMDPO_LM_EVAL_H
#define EMDPO_LM_EVAL_H

#include <stdint.h>

#include "data/data.h"
#include "lm/engine/llama.h"
#include "lm/io/lm_batch.h"
#include "lm/lm_train.h"

typedef struct emdpo_lm_evaluator emdpo_lm_evaluator;

/* d must have text and at least one group; set must be
 * emdpo_lm_set_from_data(d, ...). d and set are borrowed and must outlive
 * the evaluator; ref is used only here. batch = sequences per forward.
 * EMDPO_ERR_INVALID_ARG when d has no groups, set does not match d, beta
 * is not a positive finite number or batch < 1; EMDPO_ERR_LIMIT when a
 * sequence does not fit ref; EMDPO_ERR_NOMEM. */
int emdpo_lm_evaluator_create(const emdpo_llama *ref, const emdpo_data *d, const emdpo_lm_set *set, double beta,
                              int batch, emdpo_lm_evaluator **out);
void emdpo_lm_evaluator_free(emdpo_lm_evaluator *ev);

/* Distinct sequences of the set (what one model's scoring costs). */
int64_t emdpo_lm_evaluator_distinct(const emdpo_lm_evaluator *ev);

/* One policy: margin and accuracy (d->n_groups each) per true group; NaN
 * for a group without decisions. n_dec (d->n_groups, may be NULL) gets the
 * decisions per group. EMDPO_ERR_LIMIT when a sequence does not fit m or a
 * token its vocabulary, EMDPO_ERR_NOMEM. */
int emdpo_lm_evaluate(emdpo_lm_evaluator *ev, const emdpo_llama *m, double *margin, double *accuracy,
                      int64_t *n_dec);
/* The same for base m with adapter lo run unmerged (NULL: m alone). */
int emdpo_lm_evaluate_lora(emdpo_lm_evaluator *ev, const emdpo_llama *m, const emdpo_lora *lo, double *margin,
                           double *accuracy, int64_t *n_dec);

/* The ensemble summary from per-policy tables margin and accuracy (M, G),
 * row i = policy i: best (G) the best policy per group (-1 when the group
 * has no decisions), max_margin and best_accuracy (G) its margin and
 * accuracy (NaN for such a group). */
void emdpo_lm_eval_best(int M, int G, const double *margin, const double *accuracy, int *best, double *max_margin,
                        double *best_accuracy);

/* Adjusted Rand index (Hubert and Arabie) between two labelings of n
 * objects; labels are any int32 values, compared for equality only. 1 for
 * identical partitions up to relabeling (including the degenerate cases
 * where the index is 0/0, and n < 2), about 0 for independent ones, NaN
 * when memory runs out. */
double emdpo_adjusted_rand_index(const int32_t *a, const int32_t *b, int64_t n);

/* ---- baselines ---- */

/* Cluster-DPO's partition (appendix D.2): k-means (kmeans.h, 100
 * iterations, seeded) on the annotator embeddings of m (lm_embed.h);
 * assign (d->n_annot) gets clusters 0..K-1. set as for lm_embed.
 * EMDPO_ERR_INVALID_ARG when K is not in 1..n_annot; errors of
 * emdpo_lm_embed_annotators and emdpo_kmeans. */
int emdpo_lm_cluster_annotators(const emdpo_llama *m, const emdpo_data *d, const emdpo_lm_set *set, int K,
                                uint64_t seed, int batch, int32_t *assign);

/* One DPO policy: a copy of sft trained on set (unit weights) for steps
 * optimizer steps (0 = one epoch: ceil(groups / (batch·accum))) with sft
 * as the reference. c->mode must be EMDPO_TRAIN_DPO. *out is a new model;
 * errors of lm_train.h. */
int emdpo_lm_train_dpo(const emdpo_llama *sft, const emdpo_lm_set *set, const emdpo_train_config *c, int64_t steps,
                       emdpo_llama **out);
/* The same for adapter lo on sft (which may be frozen and is never
 * written; the reference is sft, the adapter off): lo is trained in place
 * from its current values. */
int emdpo_lm_train_dpo_lora(const emdpo_llama *sft, emdpo_lora *lo, const emdpo_lm_set *set,
                            const emdpo_train_config *c, int64_t steps);

#endif
