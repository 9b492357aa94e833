/* EM-DPO: latent annotator types by expectation-maximisation over any
 * policy family behind the policy seam (core/policy.h). The options, the
 * E-step and the criteria are public (emdpo/em.h); the fit loop and its
 * result are the families' drivers' business. */
#ifndef EMDPO_EM_H
#define EMDPO_EM_H

#include <stdint.h>

#include "core/policy.h"

typedef struct emdpo_em_result {
    int K;
    int64_t n_annot;
    double loglik;          /* observed-data log-likelihood at the returned parameters: the best
                               iterate (E-step) over all iterations and starts */
    int iterations;         /* M-steps the best start took after its initial one */
    int best_iteration;     /* its E-step (0-based) that gave the returned parameters */
    int converged;          /* the best start stopped by tol and patience, not the cap */
    int best_start;
    int mstep_unconverged;  /* M-steps whose solver stopped short of its tolerance */
    double *eta;            /* (K) mixing weights; 0 for empty types */
    double *gamma;          /* (n_annot, K) posterior type probabilities */
    double *ll_annot;       /* (n_annot) log p(V_i) */
    double *trace;          /* (n_trace) log-likelihood after each E-step of the best start, all of
                               them (later ones may be lower than loglik) */
    int n_trace;
    unsigned char *empty;   /* (K) 1 where the type lost all its weight */
    int n_empty;
    double *start_loglik;   /* (starts) best log-likelihood of every start */
    int starts;
} emdpo_em_result;

/* Fits K = (*pol)->K types. *pol is the starting policy (its parameters
 * are where every start's first M-step begins); on success it is replaced
 * by the policy of the best iterate over all starts (a clone taken when
 * that iterate was reached). res is filled and must be released with
 * emdpo_em_result_free. */
int emdpo_em_fit(emdpo_policy **pol, const emdpo_data *d, const emdpo_em_opts *o, emdpo_em_result *res);
void emdpo_em_result_free(emdpo_em_result *r);

/* emdpo_em_estep (emdpo/em.h) from each annotator's sums annot_logp (n_annot, K) of log P_k
 * over its decisions, what an M-step hands back: the same bits as
 * emdpo_em_estep when those sums were added in decision order from 0. */
int emdpo_em_estep_annot(int64_t n_annot, int K, const double *annot_logp, const double *log_eta, double *gamma,
                         double *ll_annot, double *loglik);

/* Annotator i's sums s (K) of log P_k over its decisions. Called from
 * several threads at once: it must only read ctx. */
typedef void (*emdpo_em_sums_fn)(const void *ctx, int64_t i, int K, double *s);

/* The E-step of emdpo_em_estep for n_annot annotators whose sums come
 * from sums(ctx, ...); work (the operations it takes) decides whether it
 * runs on several threads. The same bits for any thread count. */
int emdpo_em_estep_sums(int64_t n_annot, int K, emdpo_em_sums_fn sums, const void *ctx, double work,
                        const double *log_eta, double *gamma, double *ll_annot, double *loglik);

/* Default annotator summaries for k-means from item features: the mean
 * over decisions of (chosen item - mean of the decision's items), each
 * column standardised. out is (n_annot, p). */
int emdpo_em_feature_summaries(const emdpo_data *d, double *out);

#endif
