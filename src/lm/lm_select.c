/* Validation reward margins and mixture log-likelihood of K Llama
 * policies, for choosing K (lm_select.h). */
#include "lm/lm_select.h"

#include <math.h>

#include "core/choice.h"
#include "core/em.h"
#include "core/margins.h"
#include "lm/lm_train.h"

int emdpo_lm_rewards(const emdpo_llama *const *models, const emdpo_lora *const *adapters, int K,
                     const emdpo_lm_set *set, const double *ref_logp, double beta, int batch, double *reward) {
    if (K < 1 || K > EMDPO_MAX_K || !(beta > 0) || !isfinite(beta) || batch < 1) return EMDPO_ERR_INVALID_ARG;
    for (int k = 0; k < K; k++) {
        double *r = reward + (size_t)k * (size_t)set->n_seq;
        int rc = emdpo_lm_score_lora(models[k], adapters ? adapters[k] : NULL, set, batch, r);
        if (rc) return rc;
        for (int64_t i = 0; i < set->n_seq; i++) r[i] = beta * (r[i] - ref_logp[i]);
    }
    return EMDPO_OK;
}

/* Decision j's margin from one type's rewards r (n_items). */
static double margin(const emdpo_data *d, const double *r, int64_t j) {
    int64_t i0 = d->dec_item[j], i1 = d->dec_item[j + 1];
    double sum = 0.0;
    for (int64_t i = i0 + 1; i < i1; i++) sum += r[i0] - r[i];
    return sum / (double)(i1 - i0 - 1);
}

/* Annotator a: its best type's mean margin *best and its cross-fitted
 * score *crossfit (core/margins.h); returns the log of the eta-mixed
 * likelihood of its choices. */
static double annotator(const emdpo_data *d, int K, const double *reward, const double *log_eta, int64_t a,
                        double *best, double *crossfit) {
    double ll[EMDPO_MAX_K], m[EMDPO_MAX_K], mean[EMDPO_MAX_K];
    emdpo_margin_acc acc;
    emdpo_margin_acc_init(&acc, K);
    for (int k = 0; k < K; k++) ll[k] = log_eta[k];
    for (int64_t j = d->annot_dec[a]; j < d->annot_dec[a + 1]; j++) {
        for (int k = 0; k < K; k++) {
            const double *r = reward + (size_t)k * (size_t)d->n_items;
            m[k] = margin(d, r, j);
            if (log_eta[k] > -INFINITY)
                ll[k] += emdpo_choice_logp(r + d->dec_item[j], emdpo_dec_n_items(d, j), d->dec_stages[j]);
        }
        emdpo_margin_acc_add(&acc, K, m);
    }
    emdpo_margin_acc_scores(&acc, K, mean, best, crossfit);
    return emdpo_logsumexp(ll, K);
}

/* The largest of v (K), NaN skipped; NaN when all are. */
static double max_of(const double *v, int K) {
    double m = NAN;
    for (int k = 0; k < K; k++)
        if (!isnan(v[k]) && (isnan(m) || v[k] > m)) m = v[k];
    return m;
}

/* Group g's max-mean margin: each of its decisions counts once. */
static double group_best(const emdpo_data *d, int K, const double *reward, int g) {
    double sum[EMDPO_MAX_K] = {0};
    int64_t n = 0;
    for (int64_t a = 0; a < d->n_annot; a++) {
        if (d->annot_group[a] != g) continue;
        for (int64_t j = d->annot_dec[a]; j < d->annot_dec[a + 1]; j++, n++)
            for (int k = 0; k < K; k++) sum[k] += margin(d, reward + (size_t)k * (size_t)d->n_items, j);
    }
    for (int k = 0; k < K; k++) sum[k] = n ? sum[k] / (double)n : NAN;
    return max_of(sum, K);
}

int emdpo_lm_select_score(const emdpo_data *d, int K, const double *reward, const double *eta, double *criterion,
                          double *loglik, double *group_margin, double *crossfit) {
    if (K < 1 || K > EMDPO_MAX_K || d->n_annot < 1) return EMDPO_ERR_INVALID_ARG;
    double log_eta[EMDPO_MAX_K], total = 0.0;
    for (int k = 0; k < K; k++) {
        if (!(eta[k] >= 0) || !isfinite(eta[k])) return EMDPO_ERR_INVALID_ARG;
        log_eta[k] = eta[k] > 0 ? log(eta[k]) : -INFINITY;
        total += eta[k];
    }
    if (!(total > 0)) return EMDPO_ERR_INVALID_ARG;
    double best = 0.0, ll = 0.0, cf = 0.0;
    int64_t n_cf = 0;
    for (int64_t a = 0; a < d->n_annot; a++) {
        double b, v;
        ll += annotator(d, K, reward, log_eta, a, &b, &v);
        best += b;
        if (!isnan(v)) cf += v, n_cf++;
    }
    *criterion = best / (double)d->n_annot;
    *loglik = ll;
    for (int g = 0; group_margin && g < d->n_groups; g++) group_margin[g] = group_best(d, K, reward, g);
    if (crossfit) *crossfit = n_cf ? cf / (double)n_cf : NAN;
    return EMDPO_OK;
}

static const char *const criterion_title[2] = {"validation max-mean reward margin",
                                               "cross-fitted validation reward margin"};
static const char *const criterion_definition[2] = {
    "a decision's reward margin under policy k is beta * (log-ratio of the chosen response - log-ratio of a "
    "rejected one) against the SFT model, averaged over its rejected responses; for each validation annotator, "
    "the largest over the K policies of that annotator's mean margin; averaged over annotators. Higher is better",
    "decision margins as for the max-mean reward margin; each validation annotator's decisions are split into "
    "even and odd positions, the policy with the largest mean margin on one half is scored by its mean margin "
    "on the other, both ways, and the two are averaged; averaged over annotators with at least two decisions. "
    "Unlike the max-mean margin it does not rise with K when extra policies fit only noise. Higher is better"};

const char *emdpo_lm_criterion_name(int c) {
    return c == EMDPO_CRITERION_MARGIN ? "margin" : c == EMDPO_CRITERION_CROSSFIT ? "crossfit" : NULL;
}
const char *emdpo_lm_criterion_title(int c) { return emdpo_lm_criterion_name(c) ? criterion_title[c] : NULL; }
const char *emdpo_lm_criterion_definition(int c) {
    return emdpo_lm_criterion_name(c) ? criterion_definition[c] : NULL;
}
