/* MMRA-AE on log-linear policies: type a has reward theta_a . psi(y) on the
 * finite set C of items shown in a decision, pi_ref is uniform on C and
 * pi_a(y | C) = softmax_C(theta_a . psi / beta). Expectations over prompts
 * weight every decision of the dataset equally. Sums over decisions run in
 * fixed blocks added in block order: the same bits for any thread count. */
#ifndef EMDPO_LOGLINEAR_MMRA_H
#define EMDPO_LOGLINEAR_MMRA_H

#include "data/data.h"

/* Exact cross rewards of M log-linear policies on the decisions of d:
 * V[a][b] = mean over decisions of sum_{y in C} pi_b(y|C) theta_a . psi_y,
 * and, when norm is not NULL, norm[a] = mean over decisions of
 * beta * logsumexp_C(theta_a . psi / beta) - beta * log|C|, so that
 * L[a][b] = V[a][b] - norm[a]. EMDPO_ERR_INVALID_ARG for M < 1 or beta not
 * positive and finite; EMDPO_ERR_UNSUPPORTED when d has no features;
 * EMDPO_ERR_NUMERIC when a result is not finite; EMDPO_ERR_LIMIT when the
 * scratch size overflows; EMDPO_ERR_NOMEM. */
int emdpo_mmra_loglin_cross(const emdpo_data *d, const double *theta, /* (M, d->p) */
                            int M, double beta,
                            double *V,    /* out (M, M) */
                            double *norm /* out (M) or NULL */);

/* L for K log-linear types, ready for emdpo_mmra_regret_matrix.
 * Statuses as emdpo_mmra_loglin_cross. */
int emdpo_mmra_loglin_L(const emdpo_data *d, const double *theta, /* (K, d->p) */
                        int K, double beta, double *L /* out (K, K) */);

/* Regret of one more log-linear policy pi (e.g. the pooled K = 1 fit, i.e.
 * vanilla DPO) for each of the K types: regret[a] = E_{pi_a}[r_a] - E_pi[r_a].
 * Statuses as emdpo_mmra_loglin_cross. */
int emdpo_mmra_loglin_regret(const emdpo_data *d, const double *theta, /* (K, d->p) */
                             int K, double beta, const double *theta_pi, /* (d->p) */
                             double *regret /* out (K) */);

#endif
