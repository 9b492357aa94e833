/* The log-likelihood of held-out annotators under a fitted model: their
 * types are unknown, so each one's likelihood mixes over the fitted types.
 * (Splitting the annotators: emdpo_data_split.) */
#ifndef EMDPO_HELDOUT_H
#define EMDPO_HELDOUT_H

#include <stdint.h>

#include "core/policy.h"

/* Log-likelihood of d under policy pol with type weights eta (K = pol->K,
 * summing to 1; weights of 0 mark empty types): sum_i log sum_k eta_k prod_j P_k(V_ij).
 * ll_annot (n_annot) may be NULL. */
int emdpo_heldout_loglik(emdpo_policy *pol, const double *eta, const emdpo_data *d, double *ll_annot,
                         double *loglik);

#endif
