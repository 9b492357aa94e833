/* The fit object: building it from an EM run, freeing it, and what
 * emdpo/em.h, emdpo/loglinear.h and emdpo/lm.h read from it. */
#include "fitfile/fit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/file.h"
#include "core/em.h"
#include "lm/llama_policy.h"
#include "loglinear/loglinear.h"

static void free_strs(char **a, size_t n) {
    if (!a) return;
    for (size_t i = 0; i < n; i++) emdpo_strfree(a[i]);
    emdpo_free(a, (n ? n : 1) * sizeof *a); /* a share's posterior may have no rows */
}

void emdpo_fit_free(emdpo_fit *f) {
    if (!f) return;
    size_t K = (size_t)f->K, p = (size_t)f->p;
    free_strs(f->annot, (size_t)f->res.n_annot);
    emdpo_em_result_free(&f->res);
    emdpo_free(f->theta, K * p * sizeof(double));
    emdpo_free(f->se_theta, K * p * sizeof(double));
    emdpo_free(f->se_eta, K * sizeof(double));
    free_strs(f->feature_name, p);
    emdpo_strfree(f->data);
    emdpo_strfree(f->model);
    emdpo_strfree(f->tokenizer);
    emdpo_strfree(f->read_annotator_field);
    emdpo_strfree(f->read_chat_template);
    emdpo_strfree(f->read_special_tokens);
    emdpo_strfree(f->dir);
    emdpo_strfree(f->source);
    free_strs(f->policy, K);
    free_strs(f->policy_path, K);
    emdpo_policy_free(f->pol);
    emdpo_free(f, sizeof *f);
}

int emdpo_fit_alloc(emdpo_family family, int K, emdpo_fit **out) {
    *out = NULL;
    if (K < 1 || K > EMDPO_MAX_K) return EMDPO_ERR_INVALID_ARG;
    emdpo_fit *f = emdpo_calloc(1, sizeof *f);
    if (!f) return EMDPO_ERR_NOMEM;
    f->family = family;
    f->K = K;
    f->res.K = K;
    emdpo_em_opts_init(&f->em);
    emdpo_lm_mstep_opts_init(&f->mstep);
    f->res.eta = emdpo_calloc((size_t)K, sizeof(double));
    f->res.empty = emdpo_calloc((size_t)K, 1);
    int rc = f->res.eta && f->res.empty ? EMDPO_OK : EMDPO_ERR_NOMEM;
    if (!rc && family == EMDPO_FAMILY_LLAMA) {
        if (!(f->policy = emdpo_calloc((size_t)K, sizeof *f->policy))) rc = EMDPO_ERR_NOMEM;
        for (int k = 0; !rc && k < K; k++) {
            char name[32];
            snprintf(name, sizeof name, "type_%d", k + 1);
            if (!(f->policy[k] = emdpo_strdup(name))) rc = EMDPO_ERR_NOMEM;
        }
    }
    if (rc) {
        emdpo_fit_free(f);
        return rc;
    }
    *out = f;
    return EMDPO_OK;
}

int emdpo_fit_from_em(emdpo_family family, emdpo_em_result *res, emdpo_policy **pol, const emdpo_data *d,
                      const emdpo_em_opts *em, double elapsed, emdpo_fit **out) {
    emdpo_fit *f = NULL;
    int rc = emdpo_fit_alloc(family, res->K, &f);
    if (rc) return rc;
    emdpo_free(f->res.eta, (size_t)f->K * sizeof(double));
    emdpo_free(f->res.empty, (size_t)f->K);
    f->res = *res;
    memset(res, 0, sizeof *res);
    f->em = *em;
    f->em.summary = NULL;
    f->em.q = 0;
    f->em.progress = NULL;
    f->em.progress_ud = NULL;
    f->n_annot = emdpo_data_all_annot(d);
    f->n_dec = emdpo_data_all_dec(d);
    f->n_items = emdpo_data_all_items(d);
    f->shard = d->shard;
    if (f->shard) rc = emdpo_em_entropy(f->res.gamma, f->res.n_annot, f->K, 1, &f->gamma_entropy);
    f->elapsed = elapsed;
    if (!rc && d->source && !(f->data = emdpo_path_real(d->source))) rc = EMDPO_ERR_NOMEM;
    const char *how[3] = {d->read_annotator_field, d->read_chat_template, d->read_special_tokens};
    char **into[3] = {&f->read_annotator_field, &f->read_chat_template, &f->read_special_tokens};
    for (int i = 0; !rc && i < 3; i++)
        if (how[i] && !(*into[i] = emdpo_strdup(how[i]))) rc = EMDPO_ERR_NOMEM;
    if (!rc && !(f->annot = emdpo_calloc(d->n_annot ? (size_t)d->n_annot : 1, sizeof *f->annot))) rc = EMDPO_ERR_NOMEM;
    for (int64_t i = 0; !rc && i < d->n_annot; i++)
        if (!(f->annot[i] = emdpo_strdup(d->annot_name[i]))) rc = EMDPO_ERR_NOMEM;
    if (!rc && family == EMDPO_FAMILY_LOGLINEAR) {
        const emdpo_loglinear *ll = emdpo_loglinear_of(*pol);
        size_t n = (size_t)f->K * (size_t)ll->p;
        f->p = ll->p;
        f->beta = ll->beta;
        f->l2 = ll->l2;
        if (!(f->theta = emdpo_malloc(n * sizeof(double)))) rc = EMDPO_ERR_NOMEM;
        else memcpy(f->theta, ll->theta, n * sizeof(double));
        if (!rc && d->feature_name) {
            if (!(f->feature_name = emdpo_calloc((size_t)f->p, sizeof *f->feature_name))) rc = EMDPO_ERR_NOMEM;
            for (int q = 0; !rc && q < f->p; q++)
                if (!(f->feature_name[q] = emdpo_strdup(d->feature_name[q]))) rc = EMDPO_ERR_NOMEM;
        }
    } else if (!rc) {
        f->pol = *pol;
        *pol = NULL;
        f->mstep_steps = emdpo_llama_policy_steps(f->pol);
    }
    if (rc) {
        emdpo_fit_free(f);
        return rc;
    }
    *out = f;
    return EMDPO_OK;
}

const char *emdpo_fit_init_label(emdpo_init init) {
    return init == EMDPO_INIT_KMEANS ? "kmeans++" : emdpo_init_name(init);
}

const char *emdpo_family_name(int family) {
    switch (family) {
    case EMDPO_FAMILY_LOGLINEAR: return "loglinear";
    case EMDPO_FAMILY_LLAMA: return "llama";
    default: return NULL;
    }
}

/* ---- emdpo/em.h ---------------------------------------------------------- */

int emdpo_fit_family(const emdpo_fit *f) { return f ? (int)f->family : -1; }
int emdpo_fit_k(const emdpo_fit *f) { return f ? f->K : 0; }
double emdpo_fit_beta(const emdpo_fit *f) { return f ? f->beta : NAN; }
double emdpo_fit_loglik(const emdpo_fit *f) { return f ? f->res.loglik : NAN; }
int emdpo_fit_iterations(const emdpo_fit *f) { return f ? f->res.iterations : 0; }
int emdpo_fit_best_iteration(const emdpo_fit *f) { return f ? f->res.best_iteration : 0; }
int emdpo_fit_converged(const emdpo_fit *f) { return f ? f->res.converged : 0; }
int emdpo_fit_starts(const emdpo_fit *f) { return f ? f->res.starts : 0; }
int emdpo_fit_best_start(const emdpo_fit *f) { return f ? f->res.best_start : 0; }
int emdpo_fit_mstep_unconverged(const emdpo_fit *f) { return f ? f->res.mstep_unconverged : 0; }
int emdpo_fit_n_empty(const emdpo_fit *f) { return f ? f->res.n_empty : 0; }
int emdpo_fit_empty(const emdpo_fit *f, int k) { return f && k >= 0 && k < f->K ? f->res.empty[k] : 0; }
double emdpo_fit_elapsed(const emdpo_fit *f) { return f ? f->elapsed : NAN; }
int64_t emdpo_fit_n_annotators(const emdpo_fit *f) { return f ? f->n_annot : 0; }
int64_t emdpo_fit_n_decisions(const emdpo_fit *f) { return f ? f->n_dec : 0; }
int64_t emdpo_fit_n_items(const emdpo_fit *f) { return f ? f->n_items : 0; }
const char *emdpo_fit_data_path(const emdpo_fit *f) { return f ? f->data : NULL; }
int emdpo_fit_n_trace(const emdpo_fit *f) { return f ? f->res.n_trace : 0; }

void emdpo_fit_em_opts(const emdpo_fit *f, emdpo_em_opts *out) {
    if (!out) return;
    if (f) *out = f->em;
    else emdpo_em_opts_init(out);
}

static int copy_out(double *dst, const double *src, int64_t n, int64_t want) {
    if (!dst || !src || n != want) return EMDPO_ERR_INVALID_ARG;
    if (n) memcpy(dst, src, (size_t)n * sizeof *dst);
    return EMDPO_OK;
}

int emdpo_fit_eta(const emdpo_fit *f, double *eta, int n) {
    return f ? copy_out(eta, f->res.eta, n, f->K) : EMDPO_ERR_INVALID_ARG;
}

int emdpo_fit_trace(const emdpo_fit *f, double *trace, int n) {
    if (f && f->res.n_trace == 0 && n == 0) return EMDPO_OK;
    return f ? copy_out(trace, f->res.trace, n, f->res.n_trace) : EMDPO_ERR_INVALID_ARG;
}

int emdpo_fit_start_logliks(const emdpo_fit *f, double *out, int n) {
    return f ? copy_out(out, f->res.start_loglik, n, f->res.starts) : EMDPO_ERR_INVALID_ARG;
}

int emdpo_fit_posterior(const emdpo_fit *f, double *gamma, int64_t n_annot, int K) {
    if (!f) return EMDPO_ERR_INVALID_ARG;
    if (!f->res.gamma) return EMDPO_ERR_UNSUPPORTED;
    if (K != f->K || n_annot != f->res.n_annot) return EMDPO_ERR_INVALID_ARG;
    return copy_out(gamma, f->res.gamma, n_annot * K, (int64_t)f->res.n_annot * f->K);
}

const char *emdpo_fit_annotator(const emdpo_fit *f, int64_t i) {
    return f && f->annot && i >= 0 && i < f->res.n_annot ? f->annot[i] : NULL;
}

int emdpo_fit_criteria(const emdpo_fit *f, int *npar, double *aic, double *bic, double *icl) {
    if (!f) return EMDPO_ERR_INVALID_ARG;
    if (f->family != EMDPO_FAMILY_LOGLINEAR || !f->res.gamma) return EMDPO_ERR_UNSUPPORTED;
    int k_eff = f->K - f->res.n_empty, np = k_eff * f->p + k_eff - 1;
    double a, b, c;
    if (f->shard) emdpo_em_criteria_of(f->res.loglik, f->gamma_entropy, f->n_annot, np, &a, &b, &c);
    else emdpo_em_criteria(f->res.loglik, f->res.gamma, f->res.n_annot, f->K, np, &a, &b, &c);
    if (npar) *npar = np;
    if (aic) *aic = a;
    if (bic) *bic = b;
    if (icl) *icl = c;
    return EMDPO_OK;
}

/* ---- emdpo/loglinear.h --------------------------------------------------- */

int emdpo_fit_p(const emdpo_fit *f) { return f ? f->p : 0; }
double emdpo_fit_l2(const emdpo_fit *f) { return f ? f->l2 : NAN; }

int emdpo_fit_theta(const emdpo_fit *f, double *theta, int K, int p) {
    if (!f || f->family != EMDPO_FAMILY_LOGLINEAR || !f->theta) return EMDPO_ERR_UNSUPPORTED;
    if (K != f->K || p != f->p) return EMDPO_ERR_INVALID_ARG;
    return copy_out(theta, f->theta, (int64_t)K * p, (int64_t)f->K * f->p);
}

const char *emdpo_fit_feature_name(const emdpo_fit *f, int q) {
    return f && f->feature_name && q >= 0 && q < f->p ? f->feature_name[q] : NULL;
}

int emdpo_fit_se(const emdpo_fit *f, double *se_theta, double *se_eta) {
    if (!f) return EMDPO_ERR_INVALID_ARG;
    if (!f->se_theta || !f->se_eta) return EMDPO_ERR_UNSUPPORTED;
    size_t n = (size_t)f->K * (size_t)f->p;
    if (se_theta) memcpy(se_theta, f->se_theta, n * sizeof *se_theta);
    if (se_eta) memcpy(se_eta, f->se_eta, (size_t)f->K * sizeof *se_eta);
    return EMDPO_OK;
}

/* ---- emdpo/lm.h ---------------------------------------------------------- */

const emdpo_llama *emdpo_fit_model(const emdpo_fit *f, int k) {
    return f && f->pol && f->family == EMDPO_FAMILY_LLAMA ? emdpo_llama_policy_model(f->pol, k) : NULL;
}

const char *emdpo_fit_model_path(const emdpo_fit *f) { return f ? f->model : NULL; }
const char *emdpo_fit_tokenizer_path(const emdpo_fit *f) { return f ? f->tokenizer : NULL; }

void emdpo_fit_read_opts(const emdpo_fit *f, emdpo_read_opts *o) {
    emdpo_read_opts_init(o);
    if (f->read_annotator_field) o->annotator_field = f->read_annotator_field;
    o->chat_template = f->read_chat_template;
    o->special_tokens = f->read_special_tokens;
}

const char *emdpo_fit_policy_path(const emdpo_fit *f, int k) {
    return f && f->policy_path && k >= 0 && k < f->K ? f->policy_path[k] : NULL;
}

const char *emdpo_fit_policy_name(const emdpo_fit *f, int k) {
    return f && f->policy && k >= 0 && k < f->K ? f->policy[k] : NULL;
}

void emdpo_fit_lm_opts(const emdpo_fit *f, emdpo_lm_fit_opts *out) {
    emdpo_lm_fit_opts_init(out);
    if (!f || !out) return;
    out->k = f->K;
    out->em = f->em;
    out->mstep = f->mstep;
    out->save_dtype = f->save_dtype;
}

int64_t emdpo_fit_mstep_steps(const emdpo_fit *f) { return f ? f->mstep_steps : 0; }
