/* The paper's Table 3 (emdpo/mmra.h's emdpo_regret): for the K types of a
 * fit of Llama policies and any policies given (checkpoints or mixtures),
 *
 *   R_k(pi) = E_{x, y ~ pi_k}[r_k] - E_{x, y ~ pi}[r_k],
 *   r_k = beta (log pi_k(y|x) - log pi_ref(y|x)),
 *
 * and the max over k. A mixture's expectation is the weighted sum of its
 * members' (lm/lm_mixture.h), so every distinct checkpoint is one column of
 * lm/mmra/lm_mmra.h's L, estimated once, and each policy is a weight
 * vector over the columns. A column that is a PEFT adapter on the fit's SFT
 * model (a type of a fit trained with adapters, or one given with
 * emdpo_regret_add_adapter) runs unmerged on the reference for the exact
 * estimator, merged into a float32 copy of it for the sampled one, whose
 * decoders run plain models. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json_write.h"
#include "data/data.h"
#include "fitfile/fit.h"
#include "lm/engine/llama.h"
#include "lm/io/peft.h"
#include "lm/io/tokenizer.h"
#include "lm/lm_adapted.h"
#include "lm/lm_mixture.h"
#include "lm/mmra/lm_mmra.h"

/* An evaluated policy: weight w[i] on column col[i] for i < n. */
typedef struct reg_policy {
    emdpo_regret_row row;
    char *path; /* as given; NULL for the uniform mixture */
    int n, mixture;
    int *col;
    double *w;
} reg_policy;

struct emdpo_regret {
    emdpo_regret_opts o;
    const emdpo_fit *fit;
    char *fit_path, *data;
    int K, M, n_pol;
    char **col_path, **col_key; /* (M) what is loaded; its real path */
    int *col_adapter;           /* (M) an adapter put on the fit's SFT model whatever base it names */
    size_t path_cap, key_cap, adapter_cap, pol_cap;
    reg_policy *pol;
    int64_t n_dec, draws;
    double *L, *se; /* (K, M) */
    size_t n_L;     /* entries allocated in L and se (M may grow after a run) */
};

void emdpo_regret_opts_init(emdpo_regret_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->estimator = EMDPO_ESTIMATOR_SAMPLE;
    o->samples = 4;
    o->max_tokens = 64;
    o->seed = 1;
}

void emdpo_regret_free(emdpo_regret *r) {
    if (!r) return;
    for (int b = 0; b < r->M; b++) {
        emdpo_strfree(r->col_path[b]);
        emdpo_strfree(r->col_key[b]);
    }
    emdpo_free(r->col_path, r->path_cap * sizeof *r->col_path);
    emdpo_free(r->col_key, r->key_cap * sizeof *r->col_key);
    emdpo_free(r->col_adapter, r->adapter_cap * sizeof *r->col_adapter);
    for (int i = 0; i < r->n_pol; i++) {
        reg_policy *p = &r->pol[i];
        emdpo_free(p->col, p->col ? (size_t)p->n * sizeof *p->col : 0);
        emdpo_free(p->w, p->w ? (size_t)p->n * sizeof *p->w : 0);
        emdpo_strfree(p->path);
    }
    emdpo_free(r->pol, r->pol_cap * sizeof *r->pol);
    emdpo_free(r->L, r->L ? r->n_L * sizeof *r->L : 0);
    emdpo_free(r->se, r->se ? r->n_L * sizeof *r->se : 0);
    emdpo_strfree(r->fit_path);
    emdpo_strfree(r->data);
    emdpo_free(r, sizeof *r);
}

/* The column of the checkpoint at path (an adapter on the fit's SFT
 * model), added when new; -1 when out of memory. Columns are the same when
 * their real paths and kinds are. */
static int column(emdpo_regret *r, const char *path, int adapter) {
    char *key = emdpo_path_real(path);
    if (!key) return -1;
    for (int b = 0; b < r->M; b++)
        if (strcmp(r->col_key[b], key) == 0 && r->col_adapter[b] == adapter) {
            emdpo_strfree(key);
            return b;
        }
    size_t need = (size_t)r->M + 1;
    if (emdpo_grow((void **)&r->col_path, &r->path_cap, need, sizeof *r->col_path) ||
        emdpo_grow((void **)&r->col_key, &r->key_cap, need, sizeof *r->col_key) ||
        emdpo_grow((void **)&r->col_adapter, &r->adapter_cap, need, sizeof *r->col_adapter) ||
        !(r->col_path[r->M] = emdpo_strdup(path))) {
        emdpo_strfree(key);
        return -1;
    }
    r->col_key[r->M] = key;
    r->col_adapter[r->M] = adapter;
    return r->M++;
}

/* Forgets the columns added after the first m (by an add that failed). */
static void columns_drop_to(emdpo_regret *r, int m) {
    while (r->M > m) {
        r->M--;
        emdpo_strfree(r->col_path[r->M]);
        emdpo_strfree(r->col_key[r->M]);
    }
}

/* Forgets the policy added last (one whose adding failed). */
static void policy_drop_last(emdpo_regret *r) {
    reg_policy *p = &r->pol[--r->n_pol];
    emdpo_free(p->col, p->col ? (size_t)p->n * sizeof *p->col : 0);
    emdpo_free(p->w, p->w ? (size_t)p->n * sizeof *p->w : 0);
    emdpo_strfree(p->path);
    memset(p, 0, sizeof *p);
}

/* A new policy of n terms, its name checked and unique; NULL with *rc and
 * diag set. */
static reg_policy *policy_add(emdpo_regret *r, const char *name, const char *path, int n, int *rc, emdpo_diag *diag) {
    size_t len = name ? strlen(name) : 0;
    *rc = EMDPO_OK;
    if (len == 0 || len >= sizeof r->pol[0].row.name) {
        *rc = emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "a policy name must have 1 to %d bytes ('%s')",
                              (int)sizeof r->pol[0].row.name - 1, name ? name : "");
        return NULL;
    }
    for (int i = 0; i < r->n_pol; i++)
        if (strcmp(r->pol[i].row.name, name) == 0) {
            *rc = emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "policy name '%s' is given twice", name);
            return NULL;
        }
    if (emdpo_grow((void **)&r->pol, &r->pol_cap, (size_t)r->n_pol + 1, sizeof *r->pol)) {
        *rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        return NULL;
    }
    reg_policy *p = &r->pol[r->n_pol];
    memset(p, 0, sizeof *p);
    memcpy(p->row.name, name, len);
    r->n_pol++;
    p->n = n;
    p->col = emdpo_calloc((size_t)n, sizeof *p->col);
    p->w = emdpo_calloc((size_t)n, sizeof *p->w);
    if (!p->col || !p->w || (path && !(p->path = emdpo_strdup(path)))) {
        policy_drop_last(r);
        *rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        return NULL;
    }
    return p;
}

int emdpo_regret_create(const emdpo_fit *fit, const emdpo_regret_opts *o, emdpo_regret **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!fit || !o) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no fit or options");
    if (!emdpo_regret_estimator_name(o->estimator))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "estimator must be exact or sample");
    if (o->samples < 1) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "samples must be >= 1");
    if (o->max_tokens < 1) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "max_tokens must be >= 1");
    if (o->max_prompts < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "max_prompts must be >= 0");
    if (fit->family != EMDPO_FAMILY_LLAMA || isnan(fit->beta) || !fit->model || !fit->tokenizer || !fit->policy_path ||
        !fit->mstep.max_length || !fit->mstep.max_prompt_length)
        return emdpo_diag_at(diag, EMDPO_ERR_PARSE, fit->source, 0,
                             "not a Llama fit with beta, model, tokenizer, policies and M-step lengths");
    const char *data = o->data ? o->data : fit->data;
    if (!data) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "data: the fit names no data file; give one");
    int rc = emdpo_fit_check_files(fit, !o->data, diag);
    if (rc) return rc;
    emdpo_regret *r = emdpo_calloc(1, sizeof *r);
    rc = r ? EMDPO_OK : EMDPO_ERR_NOMEM;
    if (!rc) {
        r->o = *o;
        r->fit = fit;
        r->K = fit->K;
        if (!(r->data = emdpo_strdup(data)) || (fit->source && !(r->fit_path = emdpo_strdup(fit->source))))
            rc = EMDPO_ERR_NOMEM;
        r->o.data = r->data;
    }
    if (rc) emdpo_diag_fail(diag, rc, "out of memory");
    for (int k = 0; !rc && k < fit->K; k++) { /* the types first: columns 0..K-1 */
        int b = column(r, fit->policy_path[k], 0);
        if (b < 0) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        else if (b != k) rc = emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, fit->dir, 0, "the fit names %s twice", fit->policy[k]);
    }
    if (rc) {
        emdpo_regret_free(r);
        return rc;
    }
    *out = r;
    return EMDPO_OK;
}

/* A policy of one column. */
static int add_single(emdpo_regret *r, const char *name, const char *path, int adapter, emdpo_diag *diag) {
    int rc;
    reg_policy *p = policy_add(r, name, path, 1, &rc, diag);
    if (!p) return rc;
    p->w[0] = 1.0;
    if ((p->col[0] = column(r, path, adapter)) < 0) {
        policy_drop_last(r);
        return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    return EMDPO_OK;
}

int emdpo_regret_add_adapter(emdpo_regret *r, const char *name, const char *dir, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!r || !dir || !*dir) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no adapter directory");
    if (!emdpo_peft_is_dir(dir))
        return emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, dir, 0,
                             "not a PEFT adapter directory (adapter_config.json and no config.json)");
    return add_single(r, name, dir, 1, diag);
}

int emdpo_regret_add(emdpo_regret *r, const char *name, const char *path, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!r || !path || !*path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no policy path");
    if (!emdpo_mixture_is_file(path)) return add_single(r, name, path, 0, diag);
    emdpo_mixture *mx = NULL;
    int rc = emdpo_mixture_read(path, &mx, diag), m0 = r->M;
    if (rc) return rc;
    reg_policy *p = policy_add(r, name, path, mx->K, &rc, diag);
    for (int k = 0; p && !rc && k < mx->K; k++) {
        if (emdpo_mixture_is_file(mx->path[k]))
            rc = emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, path, 0, "member %s is a mixture; members must be checkpoints",
                               mx->member[k]);
        else if ((p->col[k] = column(r, mx->path[k], 0)) < 0)
            rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        p->w[k] = mx->w[k];
    }
    if (p && rc) { /* a failed add leaves nothing behind */
        policy_drop_last(r);
        columns_drop_to(r, m0);
    } else if (p) {
        p->mixture = 1;
    }
    emdpo_mixture_free(mx);
    return rc;
}

int emdpo_regret_add_uniform(emdpo_regret *r, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!r) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no regret table");
    int rc;
    reg_policy *p = policy_add(r, "uniform", NULL, r->K, &rc, diag);
    if (!p) return rc;
    for (int k = 0; k < r->K; k++) {
        p->col[k] = k;
        p->w[k] = 1.0 / r->K;
    }
    p->mixture = 1;
    return EMDPO_OK;
}

/* Every column's policy (the reference's vocabulary), adapters on the
 * reference unmerged for the exact estimator and merged for the sampled
 * one (models[b] is then plain[b]), and each mixture's members sharing one
 * vocabulary and context length. */
static int load_columns(const emdpo_regret *r, const emdpo_llama *ref, emdpo_lm_policy *pol, emdpo_llama **plain,
                        const emdpo_llama **models, const emdpo_lora **lora, emdpo_diag *diag) {
    int rc, sampled = r->o.estimator == EMDPO_ESTIMATOR_SAMPLE;
    for (int b = 0; b < r->M; b++) {
        if ((rc = emdpo_lm_policy_open(r->col_path[b], ref, r->col_adapter[b], &pol[b], diag))) return rc;
        models[b] = pol[b].model;
        lora[b] = pol[b].lo;
        if (sampled && (rc = emdpo_lm_policy_plain(&pol[b], &models[b], &plain[b], diag))) return rc;
        if (sampled) lora[b] = NULL;
        if (models[b]->config.vocab_size != ref->config.vocab_size)
            return emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, r->col_path[b], 0, "vocabulary %d, the reference's is %d",
                                 models[b]->config.vocab_size, ref->config.vocab_size);
    }
    for (int i = 0; i < r->n_pol; i++) {
        const reg_policy *p = &r->pol[i];
        if (!p->mixture) continue;
        const emdpo_llama **members = emdpo_malloc((size_t)p->n * sizeof *members);
        if (!members) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        for (int k = 0; k < p->n; k++) members[k] = models[p->col[k]];
        emdpo_diag_reset(diag, p->path ? p->path : p->row.name);
        rc = emdpo_mixture_check(members, p->n, diag);
        emdpo_free((void *)members, (size_t)p->n * sizeof *members);
        if (rc) return rc;
    }
    return EMDPO_OK;
}

/* The first n decisions of d (text only), for the exact estimator. */
static int first_decisions(const emdpo_data *d, int64_t n, emdpo_data **out) {
    emdpo_data_builder *b = NULL;
    int rc = emdpo_data_builder_create(0, &b);
    for (int64_t j = 0, a = 0; !rc && j < n; j++) {
        while (d->annot_dec[a + 1] <= j) a++;
        rc = emdpo_data_builder_add(b, d->annot_name[a], NULL, d->dec_prompt ? d->dec_prompt[j] : NULL,
                                    emdpo_dec_n_items(d, j), d->dec_stages[j], NULL,
                                    (const char *const *)d->item_text + d->dec_item[j]);
    }
    if (rc) {
        emdpo_data_builder_free(b);
        return rc;
    }
    return emdpo_data_builder_finish(b, out);
}

/* Each policy's regrets from L: its weights spread over the columns. */
static int regrets(emdpo_regret *r, int sampled) {
    double *w = emdpo_calloc((size_t)r->M, sizeof *w);
    if (!w) return EMDPO_ERR_NOMEM;
    for (int i = 0; i < r->n_pol; i++) {
        reg_policy *p = &r->pol[i];
        memset(w, 0, (size_t)r->M * sizeof *w);
        for (int j = 0; j < p->n; j++) w[p->col[j]] += p->w[j];
        emdpo_mixture_regret(r->K, r->M, r->L, sampled ? r->se : NULL, w, p->row.regret, p->row.se);
        if (!sampled)
            for (int k = 0; k < r->K; k++) p->row.se[k] = NAN;
        p->row.max_regret = -INFINITY;
        for (int k = 0; k < r->K; k++) p->row.max_regret = fmax(p->row.max_regret, p->row.regret[k]);
    }
    emdpo_free(w, (size_t)r->M * sizeof *w);
    return EMDPO_OK;
}

/* L and its standard errors for the columns over d. */
static int estimate(emdpo_regret *r, const emdpo_llama *const *pol, const emdpo_lora *const *lora,
                    const emdpo_llama *ref, const emdpo_tokenizer *tok, const emdpo_data *d, emdpo_diag *diag) {
    int sampled = r->o.estimator == EMDPO_ESTIMATOR_SAMPLE;
    size_t nl = (size_t)r->K * r->M;
    emdpo_free(r->L, r->L ? r->n_L * sizeof *r->L : 0); /* a second run replaces the first */
    emdpo_free(r->se, r->se ? r->n_L * sizeof *r->se : 0);
    r->n_L = nl;
    r->L = emdpo_calloc(nl, sizeof *r->L);
    r->se = emdpo_calloc(nl, sizeof *r->se);
    if (!r->L || !r->se) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    emdpo_lm_mmra_opts mo;
    emdpo_lm_mmra_opts_default(&mo);
    mo.beta = r->fit->beta;
    mo.max_length = r->fit->mstep.max_length;
    mo.max_prompt_length = r->fit->mstep.max_prompt_length;
    mo.samples = r->o.samples;
    mo.max_tokens = r->o.max_tokens;
    mo.max_prompts = r->o.max_prompts;
    mo.seed = r->o.seed;
    emdpo_data *sub = NULL;
    int rc;
    r->n_dec = r->o.max_prompts && r->o.max_prompts < d->n_dec ? r->o.max_prompts : d->n_dec;
    if (sampled) {
        rc = emdpo_lm_mmra_sample(pol, r->K, r->M, ref, tok, d, &mo, r->L, r->se, &r->draws);
    } else {
        if (r->n_dec < d->n_dec && (rc = first_decisions(d, r->n_dec, &sub)))
            return emdpo_diag_fail(diag, rc, "out of memory");
        rc = emdpo_lm_mmra_exact_lora(pol, lora, r->K, r->M, ref, tok, sub ? sub : d, &mo, r->L);
    }
    emdpo_data_free(sub);
    if (rc == EMDPO_ERR_LIMIT) return emdpo_diag_fail(diag, rc, "a sequence does not fit a model's context");
    if (!rc) rc = regrets(r, sampled);
    return rc ? emdpo_diag_fail(diag, rc, "estimating the regrets: %s", emdpo_status_name(rc)) : EMDPO_OK;
}

int emdpo_regret_run(emdpo_regret *r, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!r) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no regret table");
    if (r->n_pol == 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "nothing to evaluate: add policies or uniform");
    size_t M = (size_t)r->M;
    emdpo_llama *ref = NULL, **plain = emdpo_calloc(M, sizeof *plain);
    emdpo_lm_policy *pol = emdpo_calloc(M, sizeof *pol);
    const emdpo_llama **models = emdpo_calloc(M, sizeof *models);
    const emdpo_lora **lora = emdpo_calloc(M, sizeof *lora);
    emdpo_tokenizer *tok = NULL;
    emdpo_data *d = NULL;
    int rc = plain && pol && models && lora ? emdpo_llama_load_frozen(r->fit->model, &ref, diag)
                                            : emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (!rc) rc = emdpo_tokenizer_load(r->fit->tokenizer, ref->config.vocab_size, &tok, diag);
    if (!rc) rc = load_columns(r, ref, pol, plain, models, lora, diag);
    emdpo_read_opts ro;
    emdpo_fit_read_opts(r->fit, &ro);
    ro.require_text = r->o.estimator == EMDPO_ESTIMATOR_EXACT;
    if (!rc) rc = emdpo_data_read_with(r->data, EMDPO_FORMAT_JSONL, &ro, &d, diag);
    if (!rc && r->o.estimator == EMDPO_ESTIMATOR_EXACT && !emdpo_data_has_text(d))
        rc = emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, r->data, 0, "responses have no text; the exact estimator needs text");
    if (!rc) {
        emdpo_diag_reset(diag, NULL);
        rc = estimate(r, models, lora, ref, tok, d, diag);
    }
    for (size_t b = 0; pol && plain && b < M; b++) {
        emdpo_llama_free(plain[b]);
        emdpo_lm_policy_close(&pol[b]);
    }
    emdpo_free(plain, plain ? M * sizeof *plain : 0);
    emdpo_free(pol, pol ? M * sizeof *pol : 0);
    emdpo_free((void *)models, models ? M * sizeof *models : 0);
    emdpo_free((void *)lora, lora ? M * sizeof *lora : 0);
    emdpo_data_free(d);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(ref);
    return rc;
}

int emdpo_regret_k(const emdpo_regret *r) { return r ? r->K : 0; }
int emdpo_regret_n_policies(const emdpo_regret *r) { return r ? r->n_pol : 0; }
int64_t emdpo_regret_n_decisions(const emdpo_regret *r) { return r ? r->n_dec : 0; }
int64_t emdpo_regret_draws(const emdpo_regret *r) { return r ? r->draws : 0; }
double emdpo_regret_beta(const emdpo_regret *r) { return r ? r->fit->beta : NAN; }

const emdpo_regret_row *emdpo_regret_policy(const emdpo_regret *r, int i) {
    return r && i >= 0 && i < r->n_pol ? &r->pol[i].row : NULL;
}

const char *emdpo_regret_policy_path(const emdpo_regret *r, int i) {
    return r && i >= 0 && i < r->n_pol ? r->pol[i].path : NULL;
}

int emdpo_regret_write_json(const emdpo_regret *r, FILE *fp) {
    if (!r || !fp) return EMDPO_ERR_INVALID_ARG;
    int sampled = r->o.estimator == EMDPO_ESTIMATOR_SAMPLE;
    fputs("{\"beta\": ", fp);
    emdpo_json_num(fp, r->fit->beta);
    fprintf(fp, ", \"estimator\": \"%s\", \"types\": [", emdpo_regret_estimator_name(r->o.estimator));
    for (int k = 0; k < r->K; k++) {
        fputs(k ? ", " : "", fp);
        emdpo_json_str(fp, r->fit->policy[k]);
    }
    fputs("],\n \"policies\": [", fp);
    for (int i = 0; i < r->n_pol; i++) {
        const reg_policy *p = &r->pol[i];
        fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", fp);
        emdpo_json_str(fp, p->row.name);
        fputs(", \"path\": ", fp);
        emdpo_json_str(fp, p->path);
        fputs(", \"regret\": ", fp);
        emdpo_json_nums(fp, p->row.regret, r->K);
        fputs(", \"se\": ", fp);
        if (sampled) emdpo_json_nums(fp, p->row.se, r->K);
        else fputs("null", fp);
        fputs(", \"max_regret\": ", fp);
        emdpo_json_num(fp, p->row.max_regret);
        fputc('}', fp);
    }
    fputs("],\n \"fit\": ", fp);
    emdpo_json_str(fp, r->fit_path);
    fputs(", \"data\": ", fp);
    emdpo_json_str(fp, r->data);
    fprintf(fp, ", \"decisions\": %lld", (long long)r->n_dec);
    if (sampled)
        fprintf(fp, ", \"draws_per_policy\": %lld, \"samples\": %d, \"max_tokens\": %d, \"seed\": %llu",
                (long long)r->draws, r->o.samples, r->o.max_tokens, (unsigned long long)r->o.seed);
    fputs("}\n", fp);
    return ferror(fp) ? EMDPO_ERR_IO : EMDPO_OK;
}

static void write_regret(FILE *fp, const void *ctx) { emdpo_regret_write_json(ctx, fp); }

int emdpo_regret_save(const emdpo_regret *r, const char *path, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!r || !path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no result or path");
    return emdpo_afile_write(path, write_regret, r, diag);
}
