/* SFT and DPO training of a Llama policy over an emdpo_lm_set, and scoring.
 *
 * An example is a group of the set: one (prompt, response) for SFT, one
 * decision (chosen first, then the rest in preference order) for DPO. Each
 * optimizer step draws batch × accum examples from a permutation of all
 * examples, reshuffled with a seeded RNG at each epoch, runs one forward
 * and backward per micro-batch of `batch` examples and adds the gradients.
 *
 *   SFT loss: Σ_e w_e Σ_{response tokens} −log p / (response tokens in the step).
 *   DPO loss: Σ_e w_e · L(log-ratios of e's items) / (examples in the step),
 *             L from lm_loss.h; log-ratios against a reference whose
 *             response log-probabilities are computed once per item and
 *             cached (the reference is the starting model unless given).
 *
 * Weights are per example (EM-DPO's γ for one type: one weight per
 * decision); NULL means 1. A step whose examples all weigh 0 leaves the
 * parameters unchanged unless weight decay is set.
 *
 * A checkpoint (emdpo_trainer_save) is one file holding the model
 * configuration and parameters, the optimizer state, the step, the epoch,
 * the permutation and its position, the RNG state and the reference cache,
 * written atomically. Resuming from it and running to step N gives the same
 * parameter bits as an uninterrupted run to N (same data, weights,
 * configuration and thread count).
 *
 * Under MPI (base/dist.h) every process holds the whole set and the same
 * permutation; a step's examples are split into contiguous shares by rank,
 * each process runs its share in micro-batches of up to `batch` examples,
 * and the gradients (the trained parameters' only: an adapter's with LoRA)
 * and the loss sums are added over processes with one all-reduce each, so
 * every process takes the same optimizer step. The sum differs from one
 * process's only in the order of additions (equal to about 1e-7 relative
 * per step; bit for bit for a given number of processes). Scoring and the
 * reference pass split the batches of sequences by rank and gather the
 * log-probabilities: the same bits as one process. Steps, scoring and
 * emdpo_trainer_set_reference are then collectives. LoRA dropout's masks
 * depend on the split (they are drawn per micro-batch and process). */
#ifndef EMDPO_LM_TRAIN_H
#define EMDPO_LM_TRAIN_H

#include <stdint.h>

#include "emdpo.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/engine/lm_loss.h"
#include "lm/engine/optim.h"
#include "lm/io/lm_batch.h"

/* The trainer, its configuration and metrics, and emdpo_lm_score are
 * public (emdpo/lm.h); what follows is for the library's own callers. */

typedef struct emdpo_trainer emdpo_trainer;

/* emdpo_trainer_create for adapter lo (borrowed) on base m, which may be
 * frozen and is then never written: lo alone is trained (n_params:
 * lo->n), and a DPO reference of NULL or m is the base with the adapter
 * off. lo NULL: emdpo_trainer_create, which trains m's parameters. The
 * adapter's dropout masks are drawn from the seed, step and micro-batch. */
int emdpo_trainer_create_lora(const emdpo_llama *m, emdpo_lora *lo, const emdpo_lm_set *set, const double *weights,
                              const emdpo_train_config *c, emdpo_trainer **out);

/* emdpo_lm_score of base m with adapter lo (NULL: m alone). */
int emdpo_lm_score_lora(const emdpo_llama *m, const emdpo_lora *lo, const emdpo_lm_set *set, int batch,
                        double *logp);

/* DPO: installs reference log-probabilities computed elsewhere, one per
 * sequence of the set (copied), instead of running the reference: for
 * callers that train many times on one set, such as EM-DPO's M-steps.
 * Counts no forwards. EMDPO_ERR_INVALID_ARG for SFT or a non-finite value. */
int emdpo_trainer_set_reference_logp(emdpo_trainer *t, const double *ref_logp);

/* 1 when the trained parameters and optimizer step are the same bits on
 * every MPI process (always on one): a collective check, after
 * data-parallel training, that the replicas did not drift apart. */
int emdpo_trainer_replicas_agree(const emdpo_trainer *t);

/* Model forward passes so far (reference pass included), for tests and
 * throughput reports. */
int64_t emdpo_trainer_forwards(const emdpo_trainer *t);
/* The gradient of the last step's loss (the trained parameters'), as the
 * optimizer received it (clipping scales it in place when it applies). */
const float *emdpo_trainer_grad(const emdpo_trainer *t);

#endif
