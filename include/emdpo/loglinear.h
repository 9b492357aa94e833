/* Log-linear policies: type k's reward is r_k(x, y) = theta_k . psi(x, y),
 * its policy over a decision's items pi_k(y) ~ pi_ref(y) exp(r_k / beta).
 * EM-DPO on this family is the latent-class conditional logit of choice
 * modelling; its weighted M-step is concave and solved exactly by damped
 * Newton, so the log-likelihood never falls. Standard errors come from the
 * exact observed information (Louis' identity). */
#ifndef EMDPO_PUBLIC_LOGLINEAR_H
#define EMDPO_PUBLIC_LOGLINEAR_H

#include <stdio.h>

#include "emdpo/common.h"
#include "emdpo/data.h"
#include "emdpo/em.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct emdpo_loglinear_opts {
    int k;           /* latent types, 1..EMDPO_MAX_K */
    emdpo_em_opts em;
    double l2;       /* ridge penalty (l2 / 2) |theta_k|^2 in each M-step, >= 0 */
    double beta;     /* the policies' temperature, recorded for aggregation, > 0 */
} emdpo_loglinear_opts;

/* k 2, emdpo_em_opts_init's EM, l2 0, beta 1. */
EMDPO_API void emdpo_loglinear_opts_init(emdpo_loglinear_opts *o);

/* EM-DPO with o->k log-linear types on d (which needs features).
 * EMDPO_ERR_INVALID_ARG (diag) for bad options, EMDPO_ERR_UNSUPPORTED for
 * text data or EMDPO_INIT_KMEANS_TOKENS, EMDPO_ERR_NUMERIC, EMDPO_ERR_NOMEM. */
EMDPO_API int emdpo_loglinear_fit(const emdpo_data *d, const emdpo_loglinear_opts *o, emdpo_fit **out,
                                  emdpo_diag *diag);

/* Computes and keeps in f the standard errors of a log-linear fit made in
 * memory on d: EMDPO_ERR_NUMERIC when the observed information is singular
 * (the entries it does not determine are NaN, and written as null),
 * EMDPO_ERR_UNSUPPORTED for another family or a fit without theta. */
EMDPO_API int emdpo_fit_compute_se(emdpo_fit *f, const emdpo_data *d, emdpo_diag *diag);
/* The standard errors (se_theta (K, p), se_eta (K); either may be NULL).
 * EMDPO_ERR_UNSUPPORTED when none were computed or read. */
EMDPO_API int emdpo_fit_se(const emdpo_fit *f, double *se_theta, double *se_eta);

/* Features per item (0 for other families) and theta (K, p) row-major.
 * EMDPO_ERR_UNSUPPORTED for a fit without theta, EMDPO_ERR_INVALID_ARG
 * when K or p are not the fit's. */
EMDPO_API int emdpo_fit_p(const emdpo_fit *f);
EMDPO_API int emdpo_fit_theta(const emdpo_fit *f, double *theta, int K, int p);
EMDPO_API double emdpo_fit_l2(const emdpo_fit *f);
/* Feature q's name, NULL when the data had none. */
EMDPO_API const char *emdpo_fit_feature_name(const emdpo_fit *f, int q);

/* The log-likelihood of d's annotators under the fit (each mixes over the
 * fitted types with weights eta): total *loglik, per annotator ll_annot
 * (n_annotators, may be NULL). EMDPO_ERR_INVALID_ARG when d's features
 * differ from the fit's. */
EMDPO_API int emdpo_fit_heldout_loglik(const emdpo_fit *f, const emdpo_data *d, double *ll_annot, double *loglik,
                                       emdpo_diag *diag);

/* ---- Choosing K ---------------------------------------------------------- */

/* One K's fit on the training annotators and its scores. */
typedef struct emdpo_select_row {
    int k, k_effective, npar, iterations, converged;
    double loglik, aic, bic, icl;
    double heldout;  /* log-likelihood of the held-out annotators, total */
} emdpo_select_row;

typedef void (*emdpo_select_progress)(void *ud, const emdpo_select_row *row, int64_t n_heldout);

typedef struct emdpo_select_opts {
    int k_min, k_max;          /* 1 <= k_min <= k_max <= EMDPO_MAX_K */
    double holdout;            /* share of annotators held out, in (0, 1) */
    emdpo_loglinear_opts fit;  /* every K's fit, fit.k excepted; fit.em.seed also seeds the split */
    emdpo_select_progress progress; /* after each K; may be NULL */
    void *progress_ud;
} emdpo_select_opts;

/* k 1..6, holdout 0.2, emdpo_loglinear_opts_init's fit with 3 starts. */
EMDPO_API void emdpo_select_opts_init(emdpo_select_opts *o);

typedef struct emdpo_select emdpo_select;

/* Splits d's annotators (emdpo_data_split), fits every K on the training
 * side and scores it by AIC, BIC, ICL and held-out log-likelihood.
 * EMDPO_ERR_INVALID_ARG (diag) when the split leaves no held-out
 * annotator or fewer training annotators than k_max. On a share of the
 * data (emdpo_read_opts.share) every process calls it, and each gets the
 * result of the whole data, the same bits for any number of processes. */
EMDPO_API int emdpo_select_run(const emdpo_data *d, const emdpo_select_opts *o, emdpo_select **out,
                               emdpo_diag *diag);
EMDPO_API void emdpo_select_free(emdpo_select *s);
EMDPO_API int emdpo_select_n_rows(const emdpo_select *s);
EMDPO_API int emdpo_select_row_at(const emdpo_select *s, int r, emdpo_select_row *row);
EMDPO_API int64_t emdpo_select_n_train(const emdpo_select *s);
EMDPO_API int64_t emdpo_select_n_heldout(const emdpo_select *s);
/* Rows with the lowest BIC and the highest held-out log-likelihood. */
EMDPO_API int emdpo_select_best_bic(const emdpo_select *s);
EMDPO_API int emdpo_select_best_heldout(const emdpo_select *s);
/* select.json: the settings, every row with its eta and theta, and both
 * winners. */
EMDPO_API int emdpo_select_write_json(const emdpo_select *s, FILE *fp);
/* dir/select.json, written atomically (dir is created when missing). */
EMDPO_API int emdpo_select_save(const emdpo_select *s, const char *dir, emdpo_diag *diag);

/* ---- MMRA-AE over a log-linear fit ---------------------------------------- */

/* Exact expected rewards of the fit's types over d's decisions, ready for
 * emdpo_mmra_regret_matrix: L[a][b] = E_{x, y ~ pi_b}[beta log(pi_a /
 * pi_ref)] with pi_ref uniform over each decision's items, every decision
 * weighing the same; beta <= 0 takes the fit's. L is (K, K). */
EMDPO_API int emdpo_fit_cross_rewards(const emdpo_fit *f, const emdpo_data *d, double beta, double *L,
                                      emdpo_diag *diag);

#ifdef __cplusplus
}
#endif
#endif
