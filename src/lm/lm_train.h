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
 * configuration and thread count). */
#ifndef EMDPO_LM_TRAIN_H
#define EMDPO_LM_TRAIN_H

#include <stdint.h>

#include "emdpo.h"
#include "lm/engine/llama.h"
#include "lm/engine/lm_loss.h"
#include "lm/engine/optim.h"
#include "lm/io/lm_batch.h"

typedef enum emdpo_train_mode { EMDPO_TRAIN_SFT = 0, EMDPO_TRAIN_DPO = 1 } emdpo_train_mode;

typedef struct emdpo_train_config {
    emdpo_train_mode mode;
    emdpo_pref_loss_opts loss; /* DPO only */
    emdpo_optim_config optim;
    int batch;                 /* examples per micro-batch, >= 1 */
    int accum;                 /* micro-batches per optimizer step, >= 1 */
    uint64_t seed;             /* shuffling */
} emdpo_train_config;

/* One step's metrics, named after TRL's log keys. Rewards are DPO only
 * (0 for SFT): means over the step's examples weighted by w (unweighted
 * when every weight is 0). */
typedef struct emdpo_train_metrics {
    int64_t step;              /* steps done, counting this one */
    double epoch;              /* examples consumed / examples in the set */
    double loss;
    double grad_norm;          /* before clipping */
    double learning_rate;
    double rewards_chosen, rewards_rejected, rewards_margins, rewards_accuracies;
    int64_t examples;          /* examples in this step */
} emdpo_train_metrics;

typedef struct emdpo_trainer emdpo_trainer;

/* Trains m in place on set (both borrowed, and must outlive the trainer).
 * weights (set->n_group) are copied; NULL = all 1. EMDPO_ERR_INVALID_ARG
 * for a bad configuration, negative or non-finite weights, DPO on a group
 * of one item, SFT on a group of several; EMDPO_ERR_LIMIT when a sequence exceeds the model's
 * max_seq_len or a token its vocabulary; EMDPO_ERR_NOMEM. */
int emdpo_trainer_create(emdpo_llama *m, const emdpo_lm_set *set, const double *weights, const emdpo_train_config *c,
                         emdpo_trainer **out);
void emdpo_trainer_free(emdpo_trainer *t);

/* Replaces the per-example weights (set->n_group, copied; NULL = all 1)
 * and keeps everything else: parameters, optimizer state, shuffling and
 * reference. For callers whose weights change during one run, such as
 * MMRA-LW's rounds. A checkpoint is tied to the weights in force when it
 * is written, as to those given at creation. EMDPO_ERR_INVALID_ARG for a
 * negative or non-finite weight (the old weights stay). */
int emdpo_trainer_set_weights(emdpo_trainer *t, const double *weights);

/* DPO: computes the reference log-probabilities of every sequence under
 * ref (NULL = the trained model's current parameters) and caches them.
 * Must be called once before the first step unless the trainer resumed. */
int emdpo_trainer_set_reference(emdpo_trainer *t, const emdpo_llama *ref);

/* DPO: installs reference log-probabilities computed elsewhere, one per
 * sequence of the set (copied), instead of running the reference: for
 * callers that train many times on one set, such as EM-DPO's M-steps.
 * Counts no forwards. EMDPO_ERR_INVALID_ARG for SFT or a non-finite value. */
int emdpo_trainer_set_reference_logp(emdpo_trainer *t, const double *ref_logp);

/* One optimizer step. EMDPO_ERR_NUMERIC when the loss or gradient is not
 * finite (parameters untouched); EMDPO_ERR_INVALID_ARG for DPO without a
 * reference. */
int emdpo_trainer_step(emdpo_trainer *t, emdpo_train_metrics *met);

int64_t emdpo_trainer_steps_done(const emdpo_trainer *t);
/* Model forward passes so far (reference pass included), for tests and
 * throughput reports. */
int64_t emdpo_trainer_forwards(const emdpo_trainer *t);

/* The checkpoint file; see above. EMDPO_ERR_IO with diag. */
int emdpo_trainer_save(const emdpo_trainer *t, const char *path, emdpo_diag *diag);
/* Restores a checkpoint into a trainer created for the same model
 * configuration, data, weights, mode, optimizer, batch and accum: the model
 * parameters, optimizer state, step, shuffling state and reference cache.
 * EMDPO_ERR_PARSE with diag when the file is not a checkpoint or belongs to
 * another run, EMDPO_ERR_IO. */
int emdpo_trainer_resume(emdpo_trainer *t, const char *path, emdpo_diag *diag);

/* Response log-probability of every sequence of set under m (logp, n_seq),
 * batch sequences per forward. EMDPO_ERR_LIMIT as for create. */
int emdpo_lm_score(const emdpo_llama *m, const emdpo_lm_set *set, int batch, double *logp);

#endif
