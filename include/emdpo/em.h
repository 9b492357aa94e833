/* EM-DPO: K latent annotator types fitted by expectation-maximisation, one
 * policy per type (emdpo/loglinear.h and emdpo/lm.h fit the two policy
 * families). This header has what both share: the EM settings, the fit
 * they return and its accessors, the E-step and the information criteria.
 *
 * The E-step is exact and in log space: with log P_k(V_ij) the
 * log-probability of annotator i's decision j under type k,
 *   log gamma_ik = log eta_k + sum_j log P_k(V_ij) - log sum_k' (...),
 * so 10^5 decisions per annotator cannot underflow. */
#ifndef EMDPO_PUBLIC_EM_H
#define EMDPO_PUBLIC_EM_H

#include "emdpo/common.h"
#include "emdpo/data.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum emdpo_init {
    EMDPO_INIT_KMEANS = 0,       /* k-means++ on annotator summaries, hard assignment (log-linear: the
                                    chosen item's features against the decision's mean; Llama: the SFT
                                    model's embeddings of the chosen responses) */
    EMDPO_INIT_RANDOM = 1,       /* Dirichlet(1) responsibilities per annotator */
    EMDPO_INIT_KMEANS_TOKENS = 2 /* Llama: k-means++ on the chosen responses' token counts against the
                                    decision's mean */
} emdpo_init;

/* "kmeans", "random", "kmeans-tokens"; NULL out of range. */
EMDPO_API const char *emdpo_init_name(int init);

/* Called after every E-step: start (0-based), iteration (0: after the
 * first M-step), the log-likelihood and eta (K). */
typedef void (*emdpo_em_progress)(void *ud, int start, int iter, double loglik, const double *eta, int K);

typedef struct emdpo_em_opts {
    int max_iter;               /* EM iterations after the first M-step, >= 0 */
    double tol;                 /* an iteration improves when its log-likelihood beats the start's best
                                   so far by more than tol * |loglik|, >= 0 */
    int patience;               /* stop after patience + 1 iterations in a row that do not improve */
    int starts;                 /* independent starts, >= 1; the best log-likelihood wins */
    uint64_t seed;              /* start s draws from streams of (seed, s) */
    emdpo_init init;
    const double *summary;      /* (n_annotators, q) annotator summaries for k-means instead of the
                                   family's own; NULL: the family's */
    int q;
    emdpo_em_progress progress; /* may be NULL */
    void *progress_ud;
} emdpo_em_opts;

/* The log-linear family's settings, which are EM's own: max_iter 500, tol
 * 1e-9, patience 0 (its EM never falls), 1 start, seed 1, k-means, no
 * progress. Each family's *_opts_init starts from these. */
EMDPO_API void emdpo_em_opts_init(emdpo_em_opts *o);

/* ---- A fit -------------------------------------------------------------- */

/* The result of EM-DPO on either family, or a fit read back from its
 * fit.json (emdpo/fitfile.h). Immutable. */
typedef struct emdpo_fit emdpo_fit;

typedef enum emdpo_family { EMDPO_FAMILY_LOGLINEAR = 0, EMDPO_FAMILY_LLAMA = 1 } emdpo_family;

/* "loglinear", "llama"; NULL out of range. */
EMDPO_API const char *emdpo_family_name(int family);

EMDPO_API void emdpo_fit_free(emdpo_fit *f);

EMDPO_API int emdpo_fit_family(const emdpo_fit *f);
EMDPO_API int emdpo_fit_k(const emdpo_fit *f);
/* The policies' temperature: utilities are beta * log-ratios. */
EMDPO_API double emdpo_fit_beta(const emdpo_fit *f);
/* The observed-data log-likelihood of the returned iterate: the best over
 * all iterations and starts. */
EMDPO_API double emdpo_fit_loglik(const emdpo_fit *f);
/* M-steps the best start took after its first; its E-step (from 0) that
 * gave the returned parameters. */
EMDPO_API int emdpo_fit_iterations(const emdpo_fit *f);
EMDPO_API int emdpo_fit_best_iteration(const emdpo_fit *f);
/* 1 when the best start stopped by tol and patience, not the cap. */
EMDPO_API int emdpo_fit_converged(const emdpo_fit *f);
EMDPO_API int emdpo_fit_starts(const emdpo_fit *f);
/* The winning start, from 0. */
EMDPO_API int emdpo_fit_best_start(const emdpo_fit *f);
/* M-steps whose solver stopped short of its tolerance (log-linear). */
EMDPO_API int emdpo_fit_mstep_unconverged(const emdpo_fit *f);
/* Types that lost all weight (eta 0, frozen); 1 when type k is one. */
EMDPO_API int emdpo_fit_n_empty(const emdpo_fit *f);
EMDPO_API int emdpo_fit_empty(const emdpo_fit *f, int k);
/* The settings it was fitted with (seed, init, max_iter, tol, patience,
 * starts; no callbacks). For a fit read from its file, what fit.json
 * records (seed, init, starts; for Llama fits also max_iter, tol and
 * patience) and emdpo_em_opts_init's values for the rest. */
EMDPO_API void emdpo_fit_em_opts(const emdpo_fit *f, emdpo_em_opts *out);
/* Wall-clock seconds the fit took. */
EMDPO_API double emdpo_fit_elapsed(const emdpo_fit *f);
/* Sizes of the data it was fitted on. */
EMDPO_API int64_t emdpo_fit_n_annotators(const emdpo_fit *f);
EMDPO_API int64_t emdpo_fit_n_decisions(const emdpo_fit *f);
EMDPO_API int64_t emdpo_fit_n_items(const emdpo_fit *f);

/* The mixing weights eta (K, 0 for empty types) into eta; n must be K.
 * EMDPO_ERR_INVALID_ARG otherwise. */
EMDPO_API int emdpo_fit_eta(const emdpo_fit *f, double *eta, int n);
/* The log-likelihood after every E-step of the best start (later ones may
 * be lower than the returned iterate's for stochastic M-steps): how many,
 * and a copy into trace (n entries, the count). */
EMDPO_API int emdpo_fit_n_trace(const emdpo_fit *f);
EMDPO_API int emdpo_fit_trace(const emdpo_fit *f, double *trace, int n);
/* The best log-likelihood of every start (emdpo_fit_starts entries). */
EMDPO_API int emdpo_fit_start_logliks(const emdpo_fit *f, double *out, int n);
/* The posterior gamma (n_annotators, K) row-major: n_annot must be
 * emdpo_fit_n_annotators and K the fit's. EMDPO_ERR_UNSUPPORTED for a
 * fit read from its file (emdpo_posterior_read reads posterior.csv). */
EMDPO_API int emdpo_fit_posterior(const emdpo_fit *f, double *gamma, int64_t n_annot, int K);
/* The id of the posterior's row i (the data's annotator i), NULL out of
 * range or without a posterior. */
EMDPO_API const char *emdpo_fit_annotator(const emdpo_fit *f, int64_t i);
/* Model comparison for log-linear fits: npar = Ka p + Ka - 1 over the Ka
 * non-empty types, AIC, BIC (n = annotators) and ICL = BIC + 2 * entropy
 * of gamma. EMDPO_ERR_UNSUPPORTED for Llama fits (no parameter count that
 * means anything) and fits without a posterior. */
EMDPO_API int emdpo_fit_criteria(const emdpo_fit *f, int *npar, double *aic, double *bic, double *icl);
/* The absolute path of the data it was fitted on; NULL when unknown. */
EMDPO_API const char *emdpo_fit_data_path(const emdpo_fit *f);

/* ---- The E-step and criteria on their own ------------------------------- */

/* From per-decision log-probabilities logp (n_decisions, K) and log_eta
 * (K; -INFINITY for empty types): gamma (n_annotators, K), ll_annot
 * (n_annotators, may be NULL) and the total log-likelihood, summed in a
 * fixed order (the same bits for any thread count). EMDPO_ERR_INVALID_ARG
 * for K outside 1..EMDPO_MAX_K, EMDPO_ERR_NUMERIC when the total is not
 * finite. */
EMDPO_API int emdpo_em_estep(const emdpo_data *d, int K, const double *logp, const double *log_eta, double *gamma,
                             double *ll_annot, double *loglik);
/* AIC, BIC and ICL of a fit with npar free parameters on n_annot
 * annotators (the sample size) and posterior gamma (n_annot, K). */
EMDPO_API void emdpo_em_criteria(double loglik, const double *gamma, int64_t n_annot, int K, int npar, double *aic,
                                 double *bic, double *icl);

#ifdef __cplusplus
}
#endif
#endif
