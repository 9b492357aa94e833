/* EM-DPO: latent annotator types by expectation-maximisation over any
 * policy family behind the policy seam (core/policy.h). The options, the
 * E-step and the criteria are public (emdpo/em.h); the fit loop and its
 * result are the families' drivers' business. */
#ifndef EMDPO_EM_H
#define EMDPO_EM_H

#include <stdint.h>
#include <stdio.h>

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

/* ---- Resumable fits ----------------------------------------------------
 * The loop's state as an M-step begins (after its eta update) is the
 * whole of EM's state: with the policy's parameters at that moment (and,
 * mid-M-step, those of the types already trained) a fit continued from it
 * gives the same bits as one never stopped. An M-step changes nothing of
 * it but annot_logp's columns of the types it trains, so an image written
 * by emdpo_em_image_write at any time during the M-step, together with the
 * trained types' parameters and their annot_logp columns, is such a
 * point. */
typedef struct emdpo_em_live emdpo_em_live;   /* the running loop's state, valid during mstep_begins' M-step */
typedef struct emdpo_em_image emdpo_em_image; /* a state read back */

typedef struct emdpo_em_hooks {
    void *ud;
    /* Called as each M-step begins; non-zero stops the fit with that status. */
    int (*mstep_begins)(void *ud, const emdpo_em_live *live);
    /* Resuming: the image to continue from (taken over, freed by the fit),
     * the start's policy as the image's M-step began (types the M-step
     * already trained may be ahead: the policy skips them) and the best
     * iterate's policy (NULL where the image has none); both taken over.
     * *pol stays the starting policy of later starts. */
    emdpo_em_image *from;
    emdpo_policy *cand, *best;
} emdpo_em_hooks;

/* emdpo_em_fit with hooks (NULL: none). */
int emdpo_em_fit_hooked(emdpo_policy **pol, const emdpo_data *d, const emdpo_em_opts *o, emdpo_em_result *res,
                        emdpo_em_hooks *hooks);
/* The running M-step's start (0-based) and index within it (0: the one
 * before the first E-step), and whether a best iterate exists yet (its
 * start and E-step in *best_start, *best_iteration). */
void emdpo_em_live_where(const emdpo_em_live *l, int *start, int *mstep, int *have_best, int *best_start,
                         int *best_iteration);
/* Writes the loop's state to fp (raw, little-endian); 0 or EMDPO_ERR_IO. */
int emdpo_em_image_write(const emdpo_em_live *l, FILE *fp);
/* Reads an image written for d, K types and options o from fp: EMDPO_ERR_PARSE
 * (diag: what does not fit) for an image of other sizes or impossible
 * values, EMDPO_ERR_IO when truncated, EMDPO_ERR_NOMEM. */
int emdpo_em_image_read(FILE *fp, const emdpo_data *d, int K, const emdpo_em_opts *o, emdpo_em_image **out,
                        emdpo_diag *diag);
/* Where the image's M-step is, as emdpo_em_live_where. */
void emdpo_em_image_where(const emdpo_em_image *im, int *start, int *mstep, int *have_best);
void emdpo_em_image_free(emdpo_em_image *im);

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
 * runs on several threads. The log-likelihood adds blocks of annotators
 * exactly (base/xsum.h), over the processes when across (the annotators
 * are a share, data/data.h): the same bits for any thread count and any
 * number of processes. */
int emdpo_em_estep_sums(int64_t n_annot, int K, emdpo_em_sums_fn sums, const void *ctx, double work,
                        const double *log_eta, double *gamma, double *ll_annot, double *loglik, int across);

/* The entropy -sum gamma log gamma of the (n_annot, K) posterior, added
 * exactly, over the processes when across. */
int emdpo_em_entropy(const double *gamma, int64_t n_annot, int K, int across, double *ent);
/* emdpo_em_criteria (emdpo/em.h) from that entropy. */
void emdpo_em_criteria_of(double loglik, double ent, int64_t n_annot, int npar, double *aic, double *bic, double *icl);

/* Default annotator summaries for k-means from item features: the mean
 * over decisions of (chosen item - mean of the decision's items), each
 * column standardised (over the whole data when d is a share). out is
 * (n_annot, p). */
int emdpo_em_feature_summaries(const emdpo_data *d, double *out);

#endif
