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

/* Bounds of emdpo_em_opts, past which a fit is refused before it starts
 * (its trace and per-start results are allocated up front). */
#define EMDPO_MAX_EM_ITER 10000000
#define EMDPO_MAX_STARTS 1000000

typedef struct emdpo_em_opts {
    int max_iter;               /* EM iterations after the first M-step, 0..EMDPO_MAX_EM_ITER */
    double tol;                 /* an iteration improves when its log-likelihood beats the start's best
                                   so far by more than tol * |loglik|, >= 0 */
    int patience;               /* stop after patience + 1 iterations in a row that do not improve */
    int starts;                 /* independent starts, 1..EMDPO_MAX_STARTS; the best log-likelihood wins */
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

/* ---- EM-DPO around any trainer ------------------------------------------- */

/* The E-step on log-ratios computed anywhere (any trainer, any hardware).
 *
 * Decisions are ragged: decision j's items are the columns offsets[j] ..
 * offsets[j+1]-1 of logratios (K, ld) row-major, the chosen item first,
 * then the rejected ones (2 or more items); row k holds log pi_k(y|x) -
 * log pi_ref(y|x). ld >= offsets[n_dec] is the row stride in doubles, so a
 * column slice of a wider array needs no copy. ranking (n_dec, may be NULL)
 * marks decisions whose items are a full ranking, best first: their
 * probability is the Plackett-Luce product of top choices; otherwise only
 * the first item was chosen. annotator (n_dec) gives each decision's
 * annotator in 0..n_annot-1; an annotator's decisions need not be
 * consecutive.
 *
 *   log P_k(j) = log softmax(beta * logratios_k[items of j]) at the chosen
 *                item (summed over the stages of a ranking),
 *   log gamma_ik = log eta_k + sum_{j of i} log P_k(j) - logsumexp_k(...).
 *
 * eta (K, may be NULL for uniform) must be >= 0, finite and sum to 1
 * within 1e-6; a type with eta_k = 0 gets gamma 0. Outputs: gamma
 * (n_annot, K) row-major (an annotator without decisions gets eta),
 * eta_new (K, may be NULL) = the mean of gamma over annotators (the
 * M-step's new eta), *loglik (may be NULL) = the observed-data
 * log-likelihood sum_i logsumexp_k(...) at the given eta. Everything is in
 * log space; sums run in a fixed order over fixed blocks of annotators, so
 * the bits are the same for any thread count. EMDPO_ERR_INVALID_ARG (diag
 * names the decision) for K outside 1..EMDPO_MAX_K, a decision with fewer
 * than 2 items, offsets that fall or pass ld, an annotator out of range, a
 * non-finite log-ratio or beta <= 0, a bad eta; EMDPO_ERR_NUMERIC when the
 * log-likelihood is not finite; EMDPO_ERR_NOMEM. */
EMDPO_API int emdpo_estep(int K, int64_t n_dec, const double *logratios, int64_t ld, const int64_t *offsets,
                          const unsigned char *ranking, const int64_t *annotator, int64_t n_annot, double beta,
                          const double *eta, double *gamma, double *eta_new, double *loglik, emdpo_diag *diag);

/* The weights of the next weighted-DPO round: w (n_dec, K) row-major,
 * w[j][k] = gamma[annotator[j]][k]. normalize: each type's column is then
 * rescaled to mean 1 over the decisions (the Llama M-step's default, see
 * emdpo_weight_norm in emdpo/lm.h; a column of zeros stays zero).
 * EMDPO_ERR_INVALID_ARG (diag) for bad sizes, an annotator out of range or
 * a gamma that is negative or not finite. */
EMDPO_API int emdpo_estep_weights(int K, int64_t n_dec, const int64_t *annotator, int64_t n_annot,
                                  const double *gamma, int normalize, double *w, emdpo_diag *diag);

/* A log-ratio file, read into the arrays emdpo_estep takes. JSONL, one
 * decision per line:
 *   {"annotator": "u17", "logratios": [[c, r1, r2], ...], "ranking": true}
 * one inner array per type (the chosen item first; every type the same
 * item count, 2 or more; "ranking" optional, default false); or CSV with
 * the header annotator,decision,type,item,logratio (type 1..K, item 0 the
 * chosen one; a decision's rows consecutive, every (type, item) once).
 * By extension: .jsonl/.json or .csv, either optionally .gz (gzip is read
 * by its magic bytes). Annotators are numbered in order of first
 * appearance, decisions in file order. */
typedef struct emdpo_logratios emdpo_logratios;

/* Reads path; k: the number of types expected (0: the first decision's).
 * EMDPO_ERR_PARSE (diag: file, line, what: malformed record, ragged types,
 * fewer than 2 items, a non-finite number, K other than k or above
 * EMDPO_MAX_K, no decision), EMDPO_ERR_IO, EMDPO_ERR_UNSUPPORTED (an
 * unknown extension), EMDPO_ERR_NOMEM. */
EMDPO_API int emdpo_logratios_read(const char *path, int k, emdpo_logratios **out, emdpo_diag *diag);
EMDPO_API void emdpo_logratios_free(emdpo_logratios *lr);
EMDPO_API int emdpo_logratios_k(const emdpo_logratios *lr);
EMDPO_API int64_t emdpo_logratios_n_decisions(const emdpo_logratios *lr);
EMDPO_API int64_t emdpo_logratios_n_items(const emdpo_logratios *lr);
EMDPO_API int64_t emdpo_logratios_n_annotators(const emdpo_logratios *lr);
/* The arrays, valid while lr lives: values (K, n_items) row-major (ld =
 * n_items), offsets (n_decisions + 1), annotator (n_decisions), ranking
 * (n_decisions). NULL for NULL lr. */
EMDPO_API const double *emdpo_logratios_values(const emdpo_logratios *lr);
EMDPO_API const int64_t *emdpo_logratios_offsets(const emdpo_logratios *lr);
EMDPO_API const int64_t *emdpo_logratios_annotators(const emdpo_logratios *lr);
EMDPO_API const unsigned char *emdpo_logratios_ranking(const emdpo_logratios *lr);
/* Annotator i's id, NULL out of range. */
EMDPO_API const char *emdpo_logratios_annotator_name(const emdpo_logratios *lr, int64_t i);

/* What emdpo estep writes into dir (created when missing), each file
 * atomically, estep.json last: posterior.csv (annotator,gamma_1..gamma_K,
 * annotators in order of first appearance), weights.csv (annotator,
 * weight_1..weight_K, one row per decision in input order:
 * emdpo_estep_weights with normalize) and estep.json (k, n_annotators,
 * n_decisions, beta, eta = eta_new, loglik, eta_in (NULL: uniform),
 * normalize, data). gamma (n_annotators, K) and eta_new (K) are
 * emdpo_estep's on lr's arrays. EMDPO_ERR_IO (diag), EMDPO_ERR_NOMEM,
 * EMDPO_ERR_INVALID_ARG. */
EMDPO_API int emdpo_estep_save(const emdpo_logratios *lr, double beta, const double *eta_in, const double *gamma,
                               const double *eta_new, double loglik, int normalize, const char *dir,
                               emdpo_diag *diag);

/* ---- Choosing K on validation margins computed anywhere ------------------ */

/* The paper's validation reward-margin criterion (appendix D.3.1), as
 * emdpo select --policy llama computes it, on margins computed elsewhere:
 * margins (n_dec, K) row-major, decision j's reward margin under type k
 * (the mean over its rejected items of r_k(chosen) - r_k(rejected), r_k =
 * beta log(pi_k / pi_ref)); annotator (n_dec) in 0..n_annot-1 (decisions in
 * each annotator's order). *criterion = the mean over annotators of max_k
 * of the annotator's mean margin (each annotator a group of its own);
 * *crossfit (may be NULL) = its cross-fitted version: each annotator's
 * decisions at even and at odd positions pick a type on one half that is
 * scored on the other, averaged over annotators with 2 or more decisions
 * (NaN when none has). Annotators without decisions are left out; NaN
 * margins are skipped in the maxima. EMDPO_ERR_INVALID_ARG (diag) for bad
 * sizes, an annotator out of range, an infinite margin or no annotator
 * with a decision; EMDPO_ERR_NOMEM. */
EMDPO_API int emdpo_margin_criterion(int K, int64_t n_dec, const double *margins, const int64_t *annotator,
                                     int64_t n_annot, double *criterion, double *crossfit, emdpo_diag *diag);
/* The candidate with the largest value (n >= 1 candidates, value (n), k
 * (n) their numbers of types): a tie or NaN keeps the smaller k, as emdpo
 * select does. -1 for n < 1 or NULL arrays. */
EMDPO_API int emdpo_margin_best(int n, const int *k, const double *value);

/* A margins file: candidate fits' validation margins. JSONL, one decision
 * of one candidate per line: {"k": 3, "annotator": "u1", "margins": [m_1,
 * ..., m_k]}; or CSV with the header k,annotator,decision,type,margin
 * (type 1..k, a decision's k rows consecutive); .gz as for log-ratios.
 * Candidates are told apart by k and kept in order of first appearance;
 * within one, annotators are numbered in order of first appearance. */
typedef struct emdpo_margins emdpo_margins;

/* EMDPO_ERR_PARSE (diag: file, line, what), EMDPO_ERR_IO,
 * EMDPO_ERR_UNSUPPORTED (extension), EMDPO_ERR_NOMEM. */
EMDPO_API int emdpo_margins_read(const char *path, emdpo_margins **out, emdpo_diag *diag);
EMDPO_API void emdpo_margins_free(emdpo_margins *m);
EMDPO_API int emdpo_margins_n_candidates(const emdpo_margins *m);
/* Candidate c's arrays for emdpo_margin_criterion, valid while m lives:
 * returns its k (0 for c out of range) and sets n_dec, margins (n_dec, k),
 * annotator (n_dec) and n_annot. */
EMDPO_API int emdpo_margins_candidate(const emdpo_margins *m, int c, int64_t *n_dec, const double **margins,
                                      const int64_t **annotator, int64_t *n_annot);

#ifdef __cplusplus
}
#endif
#endif
