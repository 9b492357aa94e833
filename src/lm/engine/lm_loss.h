/* Preference and supervised losses on sequence log-probabilities, one
 * decision (or example) at a time, each with a per-example weight (EM-DPO's
 * posterior weights γ). A decision's items come in preference order (chosen
 * first) with its number of sequential choices `stages`, as in data.h.
 *
 * lr[k] is item k's log-ratio, log π(y_k|x) − log π_ref(y_k|x) summed over
 * the response tokens; the implicit reward is β·lr[k]. Every loss returns
 * w times its value and writes d(returned loss)/d lr[k] into grad[k], so
 * weights scale loss and gradient linearly and a zero weight contributes
 * nothing.
 *
 *   DPO:   for each stage s, −log softmax_{k >= s}(β·lr)[s]: the
 *          Plackett–Luce likelihood of the choices; for a pair this is
 *          −log σ(β(lr_c − lr_r)), the DPO loss.
 *   cDPO:  conservative DPO with label smoothing ε: per pair (the stage's
 *          chosen item against each later item, averaged over those items),
 *          −(1−ε) log σ(βΔ) − ε log σ(−βΔ). ε = 0 matches DPO on pairs.
 *   IPO:   per pair as above, (Δ − 1/(2β))², Δ = lr_c − lr_r (TRL's form).
 *   hinge: per pair as above, max(0, 1 − βΔ) (SLiC).
 * Multi-item decisions sum their stages; each stage averages its pairs. */
#ifndef EMDPO_LM_LOSS_H
#define EMDPO_LM_LOSS_H

#include "emdpo.h"

/* emdpo_loss_kind and emdpo_loss_opts are public (emdpo/lm.h). */

/* Loss of one decision with n >= 2 items and 1 <= stages <= n-1, times w;
 * grad (n) receives its gradient with respect to lr. */
double emdpo_pref_loss(const emdpo_loss_opts *o, const double *lr, int n, int stages, double w, double *grad);

/* TRL's reward metrics of one decision: rewards/chosen = β·lr[0],
 * rewards/rejected = the mean of β·lr over the other items, margin = their
 * difference, accuracy = 1 when the chosen reward beats every other. */
typedef struct emdpo_pref_rewards {
    double chosen, rejected, margin, accuracy;
} emdpo_pref_rewards;
void emdpo_pref_rewards_of(double beta, const double *lr, int n, emdpo_pref_rewards *r);

/* Supervised fine-tuning: the cross-entropy is the mean over the response
 * tokens of a whole batch, so a sequence with response log-probability
 * logp contributes −w·logp / n_tokens (n_tokens: response tokens in the
 * batch) and its gradient is −w / n_tokens. */
double emdpo_sft_loss(double logp, double n_tokens, double w, double *grad);

#endif
