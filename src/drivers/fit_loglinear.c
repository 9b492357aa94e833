/* EM-DPO on log-linear policies as one call (emdpo/loglinear.h), and what
 * a log-linear fit gives afterwards: standard errors, held-out
 * log-likelihoods and MMRA's exact cross rewards. */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "core/em.h"
#include "core/heldout.h"
#include "fitfile/fit.h"
#include "loglinear/loglinear.h"
#include "loglinear/loglinear_mmra.h"
#include "loglinear/loglinear_se.h"

static int check_opts(const emdpo_loglinear_opts *o, emdpo_diag *diag) {
    if (o->k < 1 || o->k > EMDPO_MAX_K) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "k must be in 1..%d", EMDPO_MAX_K);
    if (o->em.starts < 1 || o->em.starts > EMDPO_MAX_STARTS)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "starts must be in 1..%d", EMDPO_MAX_STARTS);
    if (o->em.max_iter < 0 || o->em.max_iter > EMDPO_MAX_EM_ITER)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "max_iter must be in 0..%d", EMDPO_MAX_EM_ITER);
    if (!(o->em.tol >= 0)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "tol must be >= 0");
    if (o->em.patience < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "patience must be >= 0");
    if (!(o->l2 >= 0) || !isfinite(o->l2)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "l2 must be >= 0");
    if (!(o->beta > 0) || !isfinite(o->beta)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "beta must be > 0");
    if (o->em.init == EMDPO_INIT_KMEANS_TOKENS)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "init kmeans-tokens is for Llama policies");
    if (o->em.init != EMDPO_INIT_KMEANS && o->em.init != EMDPO_INIT_RANDOM)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "init must be kmeans or random");
    return EMDPO_OK;
}

int emdpo_loglinear_fit(const emdpo_data *d, const emdpo_loglinear_opts *o, emdpo_fit **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!d || !o) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no data or options");
    int rc = check_opts(o, diag);
    if (rc) return rc;
    if (d->p == 0)
        return emdpo_diag_at(diag, EMDPO_ERR_UNSUPPORTED, d->source, 0,
                             "responses are text; log-linear policies need {\"features\": [...]} responses");
    double t0 = emdpo_now();
    emdpo_policy *pol = NULL;
    if ((rc = emdpo_loglinear_create(o->k, d->p, &pol))) return emdpo_diag_fail(diag, rc, "out of memory");
    emdpo_loglinear *ll = emdpo_loglinear_of(pol);
    ll->l2 = o->l2;
    ll->beta = o->beta;
    emdpo_em_result res;
    rc = emdpo_em_fit(&pol, d, &o->em, &res);
    if (!rc) rc = emdpo_fit_from_em(EMDPO_FAMILY_LOGLINEAR, &res, &pol, d, &o->em, emdpo_now() - t0, out);
    if (rc) emdpo_diag_fail(diag, rc, "EM failed: %s", emdpo_status_name(rc));
    emdpo_em_result_free(&res);
    emdpo_policy_free(pol);
    return rc;
}

/* A log-linear policy holding f's parameters. */
static int policy_of(const emdpo_fit *f, emdpo_policy **out) {
    int rc = emdpo_loglinear_create(f->K, f->p, out);
    if (rc) return rc;
    emdpo_loglinear *ll = emdpo_loglinear_of(*out);
    memcpy(ll->theta, f->theta, (size_t)f->K * (size_t)f->p * sizeof(double));
    ll->beta = f->beta;
    ll->l2 = f->l2;
    return EMDPO_OK;
}

static int need_theta(const emdpo_fit *f, const emdpo_data *d, emdpo_diag *diag) {
    if (!f || !d) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no fit or data");
    if (f->family != EMDPO_FAMILY_LOGLINEAR || !f->theta)
        return emdpo_diag_at(diag, EMDPO_ERR_UNSUPPORTED, f->source, 0, "not a log-linear fit with theta");
    if (d->p != f->p)
        return emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, d->source, 0, "%d features per item, the fit has %d", d->p,
                             f->p);
    return EMDPO_OK;
}

int emdpo_fit_compute_se(emdpo_fit *f, const emdpo_data *d, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    int rc = need_theta(f, d, diag);
    if (rc) return rc;
    size_t K = (size_t)f->K, n = K * (size_t)f->p;
    double *st = emdpo_malloc(n * sizeof *st), *se = emdpo_malloc(K * sizeof *se);
    emdpo_policy *pol = NULL;
    rc = st && se ? policy_of(f, &pol) : EMDPO_ERR_NOMEM;
    if (!rc) rc = emdpo_loglinear_stderr(d, emdpo_loglinear_of(pol), f->res.eta, f->res.empty, st, se);
    emdpo_policy_free(pol);
    if (rc && rc != EMDPO_ERR_NUMERIC) {
        emdpo_free(st, n * sizeof *st);
        emdpo_free(se, K * sizeof *se);
        return emdpo_diag_fail(diag, rc, "standard errors: %s", emdpo_status_name(rc));
    }
    emdpo_free(f->se_theta, n * sizeof *st);
    emdpo_free(f->se_eta, K * sizeof *se);
    f->se_theta = st;
    f->se_eta = se;
    if (rc) emdpo_diag_fail(diag, rc, "the observed information is singular; standard errors are NaN where undefined");
    return rc;
}

int emdpo_fit_heldout_loglik(const emdpo_fit *f, const emdpo_data *d, double *ll_annot, double *loglik,
                             emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    int rc = need_theta(f, d, diag);
    if (rc) return rc;
    if (!loglik) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "loglik is NULL");
    emdpo_policy *pol = NULL;
    if (!(rc = policy_of(f, &pol))) rc = emdpo_heldout_loglik(pol, f->res.eta, d, ll_annot, loglik);
    emdpo_policy_free(pol);
    return rc ? emdpo_diag_fail(diag, rc, "held-out log-likelihood: %s", emdpo_status_name(rc)) : EMDPO_OK;
}

int emdpo_fit_cross_rewards(const emdpo_fit *f, const emdpo_data *d, double beta, double *L, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    int rc = need_theta(f, d, diag);
    if (rc) return rc;
    if (!L) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "L is NULL");
    rc = emdpo_mmra_loglin_L(d, f->theta, f->K, beta > 0 ? beta : f->beta, L);
    return rc ? emdpo_diag_fail(diag, rc, "cross rewards: %s", emdpo_status_name(rc)) : EMDPO_OK;
}
