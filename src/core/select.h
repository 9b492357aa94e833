/* Choosing the number of types on held-out annotators: a seeded split of
 * the annotators into training and validation sets, and the log-likelihood
 * of the validation annotators under a fitted model (their types are
 * unknown, so each one's likelihood mixes over the fitted types). */
#ifndef EMDPO_SELECT_H
#define EMDPO_SELECT_H

#include <stdint.h>

#include "core/policy.h"

/* Validation annotators for n annotators and a holdout share in (0, 1):
 * round(n * holdout); -1 for a share outside (0, 1). */
int64_t emdpo_holdout_count(int64_t n, double holdout);

/* Splits d's annotators at random (seeded; the same seed gives the same
 * split on any machine and thread count): emdpo_holdout_count of them go to
 * *valid, the rest to *train, each keeping d's annotator order.
 * EMDPO_ERR_INVALID_ARG when either side would be empty. */
int emdpo_split_annotators(const emdpo_data *d, double holdout, uint64_t seed, emdpo_data **train,
                           emdpo_data **valid);

/* Log-likelihood of d under policy pol with type weights eta (K = pol->K,
 * summing to 1; weights of 0 mark empty types): sum_i log sum_k eta_k prod_j P_k(V_ij).
 * ll_annot (n_annot) may be NULL. */
int emdpo_heldout_loglik(emdpo_policy *pol, const double *eta, const emdpo_data *d, double *ll_annot,
                         double *loglik);

#endif
