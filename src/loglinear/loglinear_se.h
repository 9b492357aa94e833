/* Standard errors of a fitted log-linear latent-class model from the exact
 * observed-data information (Louis' identity), not from numerical
 * differentiation: one pass over the data, milliseconds for thousands of
 * annotators.
 *
 * Parameter vector (npar = Ka*p + Ka - 1, Ka = number of non-empty types):
 * theta of every non-empty type in type order, (Ka, p), then alpha of every
 * non-empty type but the first, (Ka - 1), where eta = softmax(alpha) over
 * the non-empty types and the first non-empty type is the reference
 * (alpha = 0). Empty types have eta = 0 (alpha = -inf), carry no
 * information and are left out.
 *
 * The Hessian is that of the objective EM maximises: the observed-data
 * log-likelihood minus the ridge penalty (ll->l2 / 2) sum_k |theta_k|^2 over
 * the non-empty types. With l2 = 0 it is the plain observed information;
 * with l2 > 0 the standard errors are those of the penalised information
 * (the curvature of the posterior under a N(0, I / l2) prior on each
 * theta_k). */
#ifndef EMDPO_LOGLINEAR_SE_H
#define EMDPO_LOGLINEAR_SE_H

#include "data/data.h"
#include "loglinear/loglinear.h"

/* npar for K types of p features with the given empty flags (K, NULL =
 * none empty); 0 when every type is empty. */
int emdpo_loglinear_se_npar(int K, int p, const unsigned char *empty);

/* The Hessian H (npar, npar), symmetric, of the penalised observed-data
 * log-likelihood at ll->theta and eta (K), in the parameterisation above;
 * *npar receives its size (may be NULL). eta is renormalised over the
 * non-empty types. EMDPO_ERR_INVALID_ARG when d->p != ll->p, K is out of
 * range, every type is empty, or a non-empty type has eta <= 0;
 * EMDPO_ERR_NUMERIC when the likelihood or H is not finite. */
int emdpo_loglinear_observed_hessian(const emdpo_data *d, const emdpo_loglinear *ll, const double *eta,
                                     const unsigned char *empty, double *H, int *npar);

/* Standard errors: cov = (-H)^-1 by Cholesky, se_theta (K, p) =
 * sqrt(diag cov), se_eta (K) by the delta method through the softmax,
 * J = diag(eta) - eta eta^T restricted to the free alphas (the reference
 * type gets a standard error too). Empty types get NaN. When -H is not
 * numerically positive definite (a saddle point, two identical types, a
 * type holding no data, collinear features without a penalty) the
 * information does not determine standard errors: every entry is NaN and
 * EMDPO_ERR_NUMERIC is returned. On any other error every entry is NaN as
 * well. */
int emdpo_loglinear_stderr(const emdpo_data *d, const emdpo_loglinear *ll, const double *eta,
                           const unsigned char *empty, double *se_theta, double *se_eta);

#endif
