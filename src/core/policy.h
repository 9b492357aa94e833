/* The seam between the algorithms (EM-DPO, MMRA) and policy families
 * (log-linear, Llama). The algorithms only need, per policy type k, the
 * probability of every decision, and a weighted M-step that pushes the
 * type's parameters toward the decisions weighted to it. */
#ifndef EMDPO_POLICY_H
#define EMDPO_POLICY_H

#include <stdint.h>

#include "data/data.h"

typedef struct emdpo_policy emdpo_policy;

typedef struct emdpo_mstep_info {
    int iterations;     /* solver iterations (Newton steps, optimizer steps) */
    int converged;      /* every active type reached its tolerance */
    double objective;   /* sum over active types of the weighted log-likelihood */
} emdpo_mstep_info;

typedef struct emdpo_policy_ops {
    const char *family;
    /* log P_k(decision) for every decision and type into logp (n_dec, K). */
    int (*decision_logp)(emdpo_policy *pol, const emdpo_data *d, double *logp);
    /* For each k with active[k]: maximise sum_i w[i,k] sum_j log P_k(V_ij)
     * over type k's parameters, starting from the current ones (so the
     * objective never decreases). w is (n_annot, K). When annot_logp is not
     * NULL, entry (i, k) of it (n_annot, K) receives sum_j log P_k(V_ij) at
     * the final parameters for every active k (what the next E-step needs;
     * inactive columns are left alone). */
    int (*mstep)(emdpo_policy *pol, const emdpo_data *d, const double *w,
                 const unsigned char *active, double *annot_logp, emdpo_mstep_info *info);
    /* A deep copy with the same parameters. */
    int (*clone)(const emdpo_policy *pol, emdpo_policy **out);
    /* Copy type src_k's parameters of src (same family) into type k of dst. */
    int (*copy_type)(emdpo_policy *dst, int k, const emdpo_policy *src, int src_k);
    void (*free)(emdpo_policy *pol);
} emdpo_policy_ops;

/* Every family's handle starts with this. */
struct emdpo_policy {
    const emdpo_policy_ops *ops;
    int K; /* number of types */
};

static inline void emdpo_policy_free(emdpo_policy *pol) {
    if (pol) pol->ops->free(pol);
}

#endif
