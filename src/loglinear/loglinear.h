/* Log-linear policies: type k's reward is r_k(x, y) = theta_k . psi(x, y),
 * its policy over a decision's items pi_k(y) ~ pi_ref(y) exp(r_k / beta).
 * EM-DPO over this family is the latent-class conditional logit; its
 * weighted M-step is concave and is solved exactly by damped Newton. */
#ifndef EMDPO_LOGLINEAR_H
#define EMDPO_LOGLINEAR_H

#include "core/policy.h"

typedef struct emdpo_loglinear {
    emdpo_policy base;
    int p;             /* features per item */
    double beta;       /* KL temperature of the policy (rewards are in theta units) */
    double l2;         /* ridge penalty (l2/2)|theta_k|^2 in each type's M-step */
    double gtol;       /* M-step stops when |grad|_inf <= gtol * (1 + total weight) */
    int max_newton;    /* Newton iteration cap per M-step */
    double *theta;     /* (K, p) */
    /* The Hessian of each type's last M-step (penalty included) and the
     * data it came from. EM's next M-step starts from nearly the same
     * point, so it steers the first Newton step without a Hessian pass. */
    double *hess_cache;          /* (K, p, p) */
    unsigned char *hess_ok;      /* (K) */
    const emdpo_data *hess_data;
    /* Each annotator's unweighted log-likelihood and gradient under each
     * type, left by the M-step's passes. The next M-step on the same data
     * weighs them with the new responsibilities instead of passing over the
     * data at its starting point. A type's rows count only while theta_k
     * equals annot_theta_k bit for bit, and only for the dataset object
     * (address, annotator count, feature array) they came from: a dataset
     * must not be changed in place between M-steps of one policy. */
    double *annot_cache;         /* (K, annot_n, 1 + p) */
    int64_t annot_n;
    double *annot_theta;         /* (K, p) */
    unsigned char *annot_ok;     /* (K) */
    const emdpo_data *annot_data;
    const double *annot_x;
} emdpo_loglinear;

/* theta starts at zero; beta = 1, l2 = 0, gtol = 1e-8, max_newton = 100. */
int emdpo_loglinear_create(int K, int p, emdpo_policy **out);

/* The family's handle from a policy (NULL when it is another family). */
emdpo_loglinear *emdpo_loglinear_of(emdpo_policy *pol);

/* Weighted log-likelihood of type k over all decisions, its gradient
 * (p) and Hessian (p, p), penalty included; w is (n_annot, K). Used by the
 * M-step and by tests. Either output may be NULL. */
int emdpo_loglinear_objective(const emdpo_loglinear *ll, const emdpo_data *d, const double *w, int k,
                              double *f, double *grad, double *hess);

/* log P of one decision under theta (p): items x (n, p) in preference
 * order, `stages` sequential choices. When g is not NULL adds wt times the
 * gradient into g (p) and, when h is not NULL too, wt times the Hessian into
 * h (p, p). Scratch: u and prob (n each), xbar (p). */
double emdpo_loglinear_decision_derivs(const double *x, int n, int stages, int p, const double *theta, double wt,
                                       double *u, double *prob, double *xbar, double *g, double *h);

#endif
