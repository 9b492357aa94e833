/* MMRA over a fit of Llama policies (emdpo/mmra.h's emdpo_lm_aggregate):
 *  - ae: MMRA-AE (the paper's Algorithm 4) over the K type policies, with L
 *    estimated exactly over the option sets of the decisions or by sampling
 *    responses (lm/mmra/lm_mmra.h). Compared: the uniform mixture, each
 *    type alone and, given, a pooled policy. Writes aggregate.json and
 *    mixture.json;
 *  - lw: MMRA-LW (Algorithm 2, lm/mmra/lm_mmra_lw.h), one policy trained by
 *    DPO weighted toward the types it serves worst;
 *  - onpolicy: on-policy MMRA (Algorithm 3, lm/mmra/lm_mmra_onpolicy.h), one
 *    policy trained by policy gradient on its own responses.
 *    Both write policy/ (a Hugging Face checkpoint, or with o->lora a PEFT
 *    adapter directory on the fit's SFT model) and aggregate.json.
 * The types of a fit trained with adapters run unmerged on the SFT model
 * where they are only scored (the exact estimator), merged into float32
 * copies where responses are drawn from them (lm_adapted.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/dist.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json_write.h"
#include "data/data.h"
#include "drivers/aggregate.h"
#include "fitfile/fit.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/io/tokenizer.h"
#include "lm/lm_adapted.h"
#include "lm/mmra/lm_mmra.h"
#include "lm/mmra/lm_mmra_lw.h"
#include "lm/mmra/lm_mmra_onpolicy.h"

struct emdpo_lm_aggregate {
    emdpo_lm_aggregate_opts o;   /* every default resolved; paths point at the copies below */
    char *fit_path, *data, *out, *pooled;
    const emdpo_fit *fit;        /* borrowed */
    int K, M;                    /* types; models loaded (M = K + 1 with a pooled policy) */
    emdpo_llama *ref;
    emdpo_lm_policy pol[EMDPO_MAX_K + 1];
    const emdpo_llama *model[EMDPO_MAX_K + 1]; /* pol's models and adapters, as the estimators take them */
    const emdpo_lora *lora[EMDPO_MAX_K + 1];
    int any_lora;                /* some type runs an adapter unmerged */
    emdpo_tokenizer *tok;
    emdpo_data *d;
    double *gamma;               /* lw: (n_dec, K) the posterior of each decision's annotator */
    emdpo_aggregate *agg;        /* ae */
    emdpo_llama *pi;             /* lw, onpolicy: the trained policy (with lo: onpolicy's merged copy, else NULL) */
    emdpo_lora *lo;              /* lw, onpolicy with o.lora: the adapter trained on ref */
    char *base_path;             /* with lo: the SFT model's absolute path, the adapter's base */
    emdpo_mmra_round start, final, *rounds;
    int chosen, has_value, ran;
    double value[EMDPO_MAX_K];
};

const char *emdpo_mmra_method_name(int m) {
    switch (m) {
    case EMDPO_MMRA_AE: return "ae";
    case EMDPO_MMRA_LW: return "lw";
    case EMDPO_MMRA_ONPOLICY: return "onpolicy";
    default: return NULL;
    }
}

const char *emdpo_regret_estimator_name(int e) {
    return e == EMDPO_ESTIMATOR_EXACT ? "exact" : e == EMDPO_ESTIMATOR_SAMPLE ? "sample" : NULL;
}

const char *emdpo_lw_select_name(int s) { return s == EMDPO_LW_BEST ? "best" : s == EMDPO_LW_LAST ? "last" : NULL; }

void emdpo_lm_aggregate_opts_init(emdpo_lm_aggregate_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->method = EMDPO_MMRA_AE;
    o->estimator = (emdpo_regret_estimator)-1;
    o->samples = 4;
    o->max_tokens = 64;
    o->temperature = 1.0;
    o->seed = 1;
    o->score_batch = 16;
    o->solver = EMDPO_GAME_HEDGE;
    o->rounds = 5;
    o->eta = 1.0;
    o->optimizer = -1;
    o->lr = -1.0;
    o->clip = -1.0;
    o->select = EMDPO_LW_BEST;
    emdpo_lora_config_init(&o->lora);
    o->lora.r = 0;
}

void emdpo_lm_aggregate_free(emdpo_lm_aggregate *a) {
    if (!a) return;
    emdpo_strfree(a->fit_path);
    emdpo_strfree(a->data);
    emdpo_strfree(a->out);
    emdpo_strfree(a->pooled);
    emdpo_llama_free(a->ref);
    for (int b = 0; b < a->M; b++) emdpo_lm_policy_close(&a->pol[b]);
    emdpo_tokenizer_free(a->tok);
    if (a->gamma) emdpo_free(a->gamma, (size_t)a->d->n_dec * (size_t)a->K * sizeof *a->gamma);
    emdpo_data_free(a->d);
    emdpo_aggregate_free(a->agg);
    emdpo_llama_free(a->pi);
    emdpo_lora_free(a->lo);
    emdpo_strfree(a->base_path);
    emdpo_free(a->rounds, a->rounds ? (size_t)a->o.rounds * sizeof *a->rounds : 0);
    emdpo_free(a, sizeof *a);
}

/* The method's defaults, some from the fit's M-step. */
static int resolve(emdpo_lm_aggregate *a, const emdpo_lm_aggregate_opts *in, emdpo_diag *diag) {
    emdpo_lm_aggregate_opts *o = &a->o;
    const emdpo_fit *f = a->fit;
    int lw = o->method == EMDPO_MMRA_LW, ae = o->method == EMDPO_MMRA_AE;
    if ((int)o->estimator < 0) o->estimator = o->method == EMDPO_MMRA_ONPOLICY ? EMDPO_ESTIMATOR_SAMPLE : EMDPO_ESTIMATOR_EXACT;
    if (!ae) {
        if (!o->steps) o->steps = lw ? 10 : 1;
        if (!o->batch) o->batch = lw ? f->mstep.batch : 4;
        if (o->lr < 0) o->lr = f->mstep.optim.lr;
        if (o->clip < 0) o->clip = f->mstep.optim.clip;
        if (o->optimizer < 0) o->optimizer = f->mstep.optim.kind;
    }
    const char *data = in->data ? in->data : f->data;
    if (!data) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "data: the fit names no data file; give one");
    if (!(a->data = emdpo_strdup(data)) || (f->source && !(a->fit_path = emdpo_strdup(f->source))) ||
        (in->pooled && !(a->pooled = emdpo_strdup(in->pooled))))
        return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (in->out) {
        a->out = emdpo_strdup(in->out);
    } else if (ae) {
        a->out = emdpo_strdup(f->dir);
    } else {
        char name[32];
        snprintf(name, sizeof name, "mmra_%s", emdpo_mmra_method_name(o->method));
        a->out = emdpo_path_join(f->dir, name);
    }
    if (!a->out) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    o->data = a->data;
    o->out = a->out;
    o->pooled = a->pooled;
    return EMDPO_OK;
}

static int check(const emdpo_lm_aggregate_opts *o, emdpo_diag *diag) {
    if (!emdpo_mmra_method_name(o->method)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "method must be ae, lw or onpolicy");
    if (!emdpo_regret_estimator_name(o->estimator))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "estimator must be exact or sample");
    if (!emdpo_game_solver_name(o->solver)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "solver must be hedge or lp");
    if (!emdpo_dtype_name(o->save_dtype)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "unknown save_dtype");
    if (o->samples < 1) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "samples must be >= 1");
    if (o->max_tokens < 1) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "max_tokens must be >= 1");
    if (!(o->temperature > 0) || !isfinite(o->temperature))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "temperature must be > 0");
    if (o->max_prompts < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "max_prompts must be >= 0");
    if (o->score_batch < 1) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "score_batch must be >= 1");
    if (o->method == EMDPO_MMRA_AE) return EMDPO_OK;
    if (o->method == EMDPO_MMRA_ONPOLICY && o->estimator != EMDPO_ESTIMATOR_SAMPLE)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "estimator must be sample for method onpolicy (it samples responses)");
    if (o->rounds < 1) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "rounds must be >= 1");
    if (!(o->eta > 0) || !isfinite(o->eta)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "eta must be > 0");
    if (o->steps < 1) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "steps must be >= 1");
    if (!(o->lr >= 0) || !isfinite(o->lr)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "lr must be >= 0");
    if (o->batch < 1) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "batch must be >= 1");
    if (!emdpo_optim_name(o->optimizer))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "optimizer must be rmsprop or adamw");
    if (o->warmup < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "warmup must be >= 0");
    if (!(o->clip >= 0) || !isfinite(o->clip)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "clip must be >= 0");
    if (!emdpo_lw_select_name(o->select)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "select must be best or last");
    if (o->method == EMDPO_MMRA_ONPOLICY && o->samples < 2)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "samples must be >= 2 for method onpolicy (leave-one-out baseline)");
    if (o->eval_samples < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "eval_samples must be >= 0");
    if (o->lora.r && emdpo_lora_config_check(&o->lora))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "lora: r must be >= 1, alpha finite, dropout in [0, 1), some targets");
    return EMDPO_OK;
}

/* Options set away from their init value for a method they do not apply
 * to are refused, not ignored. Runs before the fit's defaults fill them. */
static int check_method(const emdpo_lm_aggregate_opts *o, emdpo_diag *diag) {
    emdpo_lm_aggregate_opts def;
    emdpo_lm_aggregate_opts_init(&def);
    int ae = o->method == EMDPO_MMRA_AE, lw = o->method == EMDPO_MMRA_LW;
    const char *trained = ae && o->rounds != def.rounds       ? "rounds"
                          : ae && o->eta != def.eta           ? "eta"
                          : ae && o->steps != def.steps       ? "steps"
                          : ae && o->lr != def.lr             ? "lr"
                          : ae && o->batch != def.batch       ? "batch"
                          : ae && o->optimizer != def.optimizer ? "optimizer"
                          : ae && o->warmup != def.warmup     ? "warmup"
                          : ae && o->clip != def.clip         ? "clip"
                                                              : NULL;
    if (trained) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "%s applies to methods lw and onpolicy", trained);
    if (!ae && o->pooled) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "pooled applies to method ae");
    if (ae && o->lora.r) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "lora applies to methods lw and onpolicy");
    if ((unsigned)o->grad_checkpoint > 1 || (ae && o->grad_checkpoint))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "grad_checkpoint applies to methods lw and onpolicy");
    if (!ae && o->solver != def.solver) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "solver applies to method ae");
    if (!lw && o->select != def.select) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "select applies to method lw");
    if (o->method != EMDPO_MMRA_ONPOLICY && o->eval_samples != def.eval_samples)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "eval_samples applies to method onpolicy");
    if (o->method == EMDPO_MMRA_ONPOLICY && o->temperature != def.temperature)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "temperature does not apply to method onpolicy, which samples the policy itself");
    return EMDPO_OK;
}

/* What a Llama fit must name for MMRA: the reference, the tokenizer, the
 * types' checkpoints and the truncation lengths. */
static int check_fit(const emdpo_fit *f, emdpo_diag *diag) {
    const char *why = f->family != EMDPO_FAMILY_LLAMA               ? "\"family\" is not \"llama\""
                      : isnan(f->beta)                              ? "\"beta\" must be positive"
                      : !f->model || !f->tokenizer                  ? "\"model\" and \"tokenizer\" must be paths"
                      : !f->policy_path                             ? "\"policies\" must name k checkpoints"
                      : !f->mstep.max_length || !f->mstep.max_prompt_length ? "\"mstep\" lacks max_length and max_prompt_length"
                                                                    : NULL;
    return why ? emdpo_diag_at(diag, EMDPO_ERR_PARSE, f->source, 0, "%s", why) : EMDPO_OK;
}

/* The reference, the tokenizer, the K types and then the pooled policy,
 * and the data. Types that are adapters on the SFT model run unmerged
 * where they are only scored (the exact estimator, method onpolicy aside,
 * which generates from them). */
static int load(emdpo_lm_aggregate *a, emdpo_diag *diag) {
    const emdpo_fit *f = a->fit;
    int scored = a->o.estimator == EMDPO_ESTIMATOR_EXACT && a->o.method != EMDPO_MMRA_ONPOLICY;
    int rc = emdpo_llama_load(f->model, &a->ref, diag);
    if (!rc) rc = emdpo_tokenizer_load(f->tokenizer, a->ref->config.vocab_size, &a->tok, diag);
    for (int b = 0; !rc && b < a->M; b++) {
        const char *path = b < a->K ? f->policy_path[b] : a->pooled;
        if ((rc = emdpo_lm_policy_open(path, scored ? a->ref : NULL, 0, &a->pol[b], diag))) break;
        a->model[b] = a->pol[b].model;
        a->lora[b] = a->pol[b].lo;
        a->any_lora |= a->lora[b] != NULL;
        if (a->model[b]->config.vocab_size != a->ref->config.vocab_size)
            rc = emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, path, 0, "vocabulary %d, the reference's is %d",
                               a->model[b]->config.vocab_size, a->ref->config.vocab_size);
    }
    emdpo_read_opts ro;
    emdpo_fit_read_opts(f, &ro);
    ro.require_text = 1;
    if (!rc) rc = emdpo_data_read_with(a->data, EMDPO_FORMAT_JSONL, &ro, &a->d, diag);
    return rc;
}

/* The posterior of each decision's annotator, (n_dec, K), from the fit's
 * posterior.csv: every annotator of the data in it, none else. */
static int read_gamma(emdpo_lm_aggregate *a, emdpo_diag *diag) {
    const emdpo_data *d = a->d;
    size_t n = (size_t)d->n_dec * (size_t)a->K;
    char *path = emdpo_path_join(a->fit->dir, "posterior.csv");
    double *wk = emdpo_malloc(((size_t)d->n_dec + 1) * sizeof *wk);
    int rc = path && wk && (a->gamma = emdpo_malloc(n * sizeof *a->gamma)) ? EMDPO_OK : EMDPO_ERR_NOMEM;
    if (rc) emdpo_diag_fail(diag, rc, "out of memory");
    /* its header: annotator and the fit's K columns, no more */
    emdpo_posterior *p = NULL;
    if (!rc) rc = emdpo_posterior_read(path, a->K, &p, diag);
    emdpo_posterior_free(p);
    for (int k = 0; !rc && k < a->K; k++) {
        char col[32];
        snprintf(col, sizeof col, "gamma_%d", k + 1);
        if (!(rc = emdpo_weights_read(path, col, d, d->n_dec, wk, diag)))
            for (int64_t j = 0; j < d->n_dec; j++) a->gamma[(size_t)j * a->K + k] = wk[j];
    }
    emdpo_free(wk, ((size_t)d->n_dec + 1) * sizeof *wk);
    emdpo_strfree(path);
    return rc;
}

int emdpo_lm_aggregate_create(const emdpo_fit *fit, const emdpo_lm_aggregate_opts *o, emdpo_lm_aggregate **out,
                              emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!fit || !o) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no fit or options");
    if (!emdpo_mmra_method_name(o->method))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "method must be ae, lw or onpolicy");
    int rc = check_method(o, diag);
    if (!rc) rc = check_fit(fit, diag);
    if (!rc) rc = emdpo_fit_check_files(fit, !o->data, diag);
    if (rc) return rc;
    emdpo_lm_aggregate *a = emdpo_calloc(1, sizeof *a);
    if (!a) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    a->o = *o;
    a->fit = fit;
    a->K = fit->K;
    int ae = o->method == EMDPO_MMRA_AE, lw = o->method == EMDPO_MMRA_LW;
    a->M = a->K + (ae && o->pooled != NULL);
    if (!(rc = resolve(a, o, diag)) && !(rc = check(&a->o, diag)) && !(rc = load(a, diag))) {
        emdpo_diag_reset(diag, NULL);
        const emdpo_data *d = a->d;
        int sampled = a->o.estimator == EMDPO_ESTIMATOR_SAMPLE;
        if ((ae && !sampled) || lw) {
            if (!emdpo_data_has_text(d))
                rc = emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, a->data, 0,
                                   ae ? "responses have no text; the exact estimator needs text"
                                      : "responses have no text; method lw trains on them");
        }
        if (!rc && lw) rc = read_gamma(a, diag);
        for (int k = 0; !rc && o->method == EMDPO_MMRA_ONPOLICY && k < a->K; k++)
            if (!emdpo_llama_same_architecture(a->model[k], a->ref))
                rc = emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, fit->policy_path[k], 0,
                                   "its architecture differs from the SFT model's; method onpolicy needs fine-tuned "
                                   "copies of it");
    }
    if (rc) {
        emdpo_lm_aggregate_free(a);
        return rc;
    }
    *out = a;
    return EMDPO_OK;
}

int emdpo_lm_aggregate_k(const emdpo_lm_aggregate *a) { return a ? a->K : 0; }
int64_t emdpo_lm_aggregate_n_decisions(const emdpo_lm_aggregate *a) { return a ? a->d->n_dec : 0; }
const emdpo_aggregate *emdpo_lm_aggregate_result(const emdpo_lm_aggregate *a) { return a ? a->agg : NULL; }
const char *emdpo_lm_aggregate_out(const emdpo_lm_aggregate *a) { return a ? a->out : NULL; }
const double *emdpo_lm_aggregate_value(const emdpo_lm_aggregate *a) { return a && a->has_value ? a->value : NULL; }

void emdpo_lm_aggregate_settings(const emdpo_lm_aggregate *a, emdpo_lm_aggregate_opts *o) {
    if (a) *o = a->o;
    else emdpo_lm_aggregate_opts_init(o);
}

int emdpo_lm_aggregate_returned(const emdpo_lm_aggregate *a, emdpo_mmra_round *final) {
    if (!a || !a->ran || a->o.method == EMDPO_MMRA_AE) return -1;
    if (final) *final = a->final;
    return a->chosen;
}

static void estimator_opts(const emdpo_lm_aggregate *a, emdpo_lm_mmra_opts *mo) {
    emdpo_lm_mmra_opts_default(mo);
    mo->beta = a->fit->beta;
    mo->max_length = a->fit->mstep.max_length;
    mo->max_prompt_length = a->fit->mstep.max_prompt_length;
    mo->score_batch = a->o.score_batch;
    mo->samples = a->o.samples;
    mo->max_tokens = a->o.max_tokens;
    mo->temperature = (float)a->o.temperature;
    mo->max_prompts = a->o.max_prompts;
    mo->seed = a->o.seed;
}

static void optim_of(const emdpo_lm_aggregate *a, emdpo_optim_config *c) {
    emdpo_optim_config_init(c, (emdpo_optim_kind)a->o.optimizer);
    c->lr = a->o.lr;
    c->warmup = a->o.warmup;
    c->clip = a->o.clip;
}

/* ---- ae -------------------------------------------------------------------------- */

static void write_aggregate(FILE *fp, const void *ctx) { emdpo_lm_aggregate_write_json(ctx, fp); }

/* aggregate.json, then mixture.json (members relative to out when out is
 * the fit's directory, else the fit's absolute paths). */
static int write_ae(const emdpo_lm_aggregate *a, emdpo_diag *diag) {
    char *rdir = emdpo_path_real(a->out), *rfit = emdpo_path_real(a->fit->dir);
    char *json = emdpo_path_join(a->out, "aggregate.json"), *mix = emdpo_path_join(a->out, "mixture.json");
    char *members[EMDPO_MAX_K] = {0};
    int rc = rdir && rfit && json && mix ? EMDPO_OK : EMDPO_ERR_NOMEM;
    int same = !rc && strcmp(rdir, rfit) == 0;
    for (int k = 0; !rc && k < a->K; k++)
        if (!(members[k] = same ? emdpo_strdup(a->fit->policy[k]) : emdpo_path_join(rfit, a->fit->policy[k])))
            rc = EMDPO_ERR_NOMEM;
    if (rc) emdpo_diag_fail(diag, rc, "out of memory");
    if (!rc) rc = emdpo_afile_write(json, write_aggregate, a, diag);
    if (!rc)
        rc = emdpo_mixture_write(mix, a->K, a->agg->rows[0].w, (const char *const *)members, a->fit->beta, a->fit->model,
                                 diag);
    for (int k = 0; k < a->K; k++) emdpo_strfree(members[k]);
    emdpo_strfree(rdir);
    emdpo_strfree(rfit);
    emdpo_strfree(json);
    emdpo_strfree(mix);
    return rc;
}

static int run_ae(emdpo_lm_aggregate *a, emdpo_diag *diag) {
    int K = a->K, M = a->M, sampled = a->o.estimator == EMDPO_ESTIMATOR_SAMPLE;
    emdpo_aggregate_free(a->agg); /* a second run replaces the first */
    a->agg = NULL;
    int rc = emdpo_aggregate_alloc(EMDPO_FAMILY_LLAMA, K, M, sampled, &a->agg);
    if (rc) return emdpo_diag_fail(diag, rc, "out of memory");
    emdpo_aggregate *g = a->agg;
    g->beta = a->fit->beta;
    g->n_dec = a->d->n_dec;
    g->samples = a->o.samples;
    g->max_tokens = a->o.max_tokens;
    g->temperature = a->o.temperature;
    g->seed = a->o.seed;
    if ((a->fit_path && !(g->fit = emdpo_strdup(a->fit_path))) || !(g->data = emdpo_strdup(a->data)) ||
        !(g->columns = emdpo_calloc((size_t)M, sizeof *g->columns)))
        return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    for (int b = 0; b < M; b++)
        if (!(g->columns[b] = emdpo_strdup(b < K ? a->fit->policy[b] : "pooled")))
            return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    emdpo_lm_mmra_opts mo;
    estimator_opts(a, &mo);
    double *se = sampled ? g->se : NULL;
    rc = sampled ? emdpo_lm_mmra_sample(a->model, K, M, a->ref, a->tok, a->d, &mo, g->L, se, &g->draws)
                 : emdpo_lm_mmra_exact_lora(a->model, a->lora, K, M, a->ref, a->tok, a->d, &mo, g->L);
    if (rc == EMDPO_ERR_LIMIT) return emdpo_diag_fail(diag, rc, "a sequence does not fit a model (context or vocabulary)");
    emdpo_mmra_hedge_opts ho;
    emdpo_mmra_hedge_opts_init(&ho);
    if (!rc) rc = emdpo_aggregate_rows(g, &ho, a->o.solver, "pooled");
    if (rc) return emdpo_diag_fail(diag, rc, "aggregation failed: %s", emdpo_status_name(rc));
    if (emdpo_dist_rank() > 0) return EMDPO_OK; /* under MPI rank 0 alone writes */
    if ((rc = emdpo_mkdirs(a->out, diag))) return rc;
    return write_ae(a, diag);
}

/* ---- lw and onpolicy ----------------------------------------------------------------- */

static void json_round(FILE *fp, const emdpo_mmra_round *r, int K, int sampled, int lw) {
    fprintf(fp, "{\"round\": %d, \"w\": ", r->round);
    emdpo_json_nums(fp, r->w, K);
    fputs(", \"regret\": ", fp);
    emdpo_json_nums(fp, r->regret, K);
    fputs(", \"regret_se\": ", fp);
    if (sampled) emdpo_json_nums(fp, r->regret_se, K);
    else fputs("null", fp);
    fputs(", \"max_regret\": ", fp);
    emdpo_json_num(fp, r->max_regret);
    fprintf(fp, ", \"%s\": ", lw ? "dpo_loss" : "objective");
    emdpo_json_num(fp, r->loss);
    if (!lw) {
        fputs(", \"kl\": ", fp);
        emdpo_json_num(fp, r->kl);
    }
    fputc('}', fp);
}

static void write_json_trained(FILE *fp, const emdpo_lm_aggregate *a) {
    const emdpo_lm_aggregate_opts *o = &a->o;
    const emdpo_fit *f = a->fit;
    int K = a->K, lw = o->method == EMDPO_MMRA_LW, sampled = o->estimator == EMDPO_ESTIMATOR_SAMPLE;
    /* Per-round regrets of onpolicy come from its steps' batches: no standard errors. */
    int round_se = lw && sampled;
    fputs("{\n  \"family\": \"llama\",\n  \"fit\": ", fp);
    emdpo_json_str(fp, a->fit_path);
    fputs(",\n  \"data\": ", fp);
    emdpo_json_str(fp, a->data);
    fprintf(fp, ",\n  \"k\": %d,\n  \"beta\": ", K);
    emdpo_json_num(fp, f->beta);
    fprintf(fp, ",\n  \"method\": \"%s\",\n  \"estimator\": \"%s\",\n  \"decisions\": %lld,\n",
            emdpo_mmra_method_name(o->method), emdpo_regret_estimator_name(o->estimator), (long long)a->d->n_dec);
    fprintf(fp, "  \"settings\": {\"rounds\": %d, \"eta\": ", o->rounds);
    emdpo_json_num(fp, o->eta);
    fprintf(fp, ", \"steps\": %lld, \"optimizer\": \"%s\", \"lr\": ", (long long)o->steps, emdpo_optim_name(o->optimizer));
    emdpo_json_num(fp, o->lr);
    fprintf(fp, ", \"warmup\": %lld, \"clip\": ", (long long)o->warmup);
    emdpo_json_num(fp, o->clip);
    fprintf(fp, ", \"batch\": %d, \"seed\": %llu, \"max_length\": %d, \"max_prompt_length\": %d, \"score_batch\": %d",
            o->batch, (unsigned long long)o->seed, f->mstep.max_length, f->mstep.max_prompt_length, o->score_batch);
    if (o->lora.r) { /* policy/ is a PEFT adapter on the fit's "model" */
        fputs(", \"lora\": ", fp);
        emdpo_lora_config_write_json(fp, &o->lora);
    }
    if (lw) fprintf(fp, ", \"accum\": %d, \"start\": \"warm\", \"select\": \"%s\"", f->mstep.accum,
                    emdpo_lw_select_name(o->select));
    if (sampled) {
        fprintf(fp, ", \"samples\": %d, \"max_tokens\": %d, \"max_prompts\": %lld", o->samples, o->max_tokens,
                (long long)o->max_prompts);
        if (lw) {
            fputs(", \"temperature\": ", fp);
            emdpo_json_num(fp, o->temperature);
        } else {
            fprintf(fp, ", \"eval_samples\": %d", o->eval_samples ? o->eval_samples : o->samples);
        }
    }
    fputs("},\n  \"policies\": [", fp);
    for (int k = 0; k < K; k++) {
        fputs(k ? ", " : "", fp);
        emdpo_json_str(fp, f->policy[k]);
    }
    fputs("],\n", fp);
    if (a->has_value) {
        fputs("  \"value\": ", fp);
        emdpo_json_nums(fp, a->value, K);
        fputs(",\n", fp);
    }
    fputs("  \"start\": ", fp);
    json_round(fp, &a->start, K, sampled, lw);
    fputs(",\n  \"rounds\": [", fp);
    for (int r = 0; r < o->rounds; r++) {
        fprintf(fp, "%s\n    ", r ? "," : "");
        json_round(fp, &a->rounds[r], K, round_se, lw);
    }
    fprintf(fp, "\n  ],\n  \"returned_round\": %d,\n  \"final\": ", a->chosen);
    json_round(fp, &a->final, K, sampled, lw);
    fputs(",\n  \"policy\": \"policy\"\n}\n", fp);
}

static int run_lw(emdpo_lm_aggregate *a) {
    emdpo_lm_mmra_lw_opts o;
    emdpo_lm_mmra_lw_opts_default(&o);
    o.rounds = a->o.rounds;
    o.eta = a->o.eta;
    o.steps = a->o.steps;
    o.beta = a->fit->beta;
    o.rpo_alpha = a->fit->mstep.rpo_alpha;
    optim_of(a, &o.optim);
    o.batch = a->o.batch;
    o.accum = a->fit->mstep.accum;
    o.max_length = a->fit->mstep.max_length;
    o.max_prompt_length = a->fit->mstep.max_prompt_length;
    o.seed = a->o.seed;
    o.estimator = a->o.estimator;
    estimator_opts(a, &o.regret);
    o.select = a->o.select;
    o.progress = a->o.progress;
    o.progress_ud = a->o.progress_ud;
    o.lora = a->lo;
    o.grad_checkpoint = a->o.grad_checkpoint;
    o.type_lora = a->any_lora ? a->lora : NULL;
    emdpo_lm_mmra_lw_result res;
    res.rounds = a->rounds;
    int rc = emdpo_lm_mmra_lw(a->ref, a->model, a->K, a->tok, a->d, a->gamma, &o, a->pi, &res);
    a->start = res.start;
    a->final = res.final;
    a->chosen = res.chosen;
    return rc;
}

static int run_onpolicy(emdpo_lm_aggregate *a) {
    emdpo_lm_mmra_op_opts o;
    emdpo_lm_mmra_op_opts_default(&o);
    o.rounds = a->o.rounds;
    o.steps = a->o.steps;
    o.eta = a->o.eta;
    o.beta = a->fit->beta;
    optim_of(a, &o.optim);
    o.batch = a->o.batch;
    o.samples = a->o.samples;
    o.eval_samples = a->o.eval_samples;
    o.max_tokens = a->o.max_tokens;
    o.max_length = a->fit->mstep.max_length;
    o.max_prompt_length = a->fit->mstep.max_prompt_length;
    o.max_prompts = a->o.max_prompts;
    o.score_batch = a->o.score_batch;
    o.seed = a->o.seed;
    o.progress = a->o.progress;
    o.progress_ud = a->o.progress_ud;
    o.lora = a->lo;
    o.grad_checkpoint = a->o.grad_checkpoint;
    emdpo_lm_mmra_op_result res;
    res.rounds = a->rounds;
    int rc = emdpo_lm_mmra_onpolicy(a->ref, a->model, a->K, a->tok, a->d, &o, a->pi, &res);
    a->start = res.start;
    a->final = res.final;
    a->chosen = res.final.round;
    memcpy(a->value, res.value, (size_t)a->K * sizeof *a->value);
    a->has_value = 1;
    return rc;
}

static void write_trained_json(FILE *fp, const void *ctx) { write_json_trained(fp, ctx); }

static int run_trained(emdpo_lm_aggregate *a, emdpo_diag *diag) {
    /* a second run replaces the first's rounds and policy */
    emdpo_free(a->rounds, a->rounds ? (size_t)a->o.rounds * sizeof *a->rounds : 0);
    emdpo_llama_free(a->pi);
    emdpo_lora_free(a->lo);
    a->pi = NULL;
    a->lo = NULL;
    a->ran = 0;
    int lw = a->o.method == EMDPO_MMRA_LW, rc = EMDPO_OK;
    if (!(a->rounds = emdpo_calloc((size_t)a->o.rounds, sizeof *a->rounds)) ||
        (a->o.lora.r && ((rc = emdpo_lora_create(&a->ref->config, &a->o.lora, &a->lo)) ||
                         (!a->base_path && !(a->base_path = emdpo_path_real(a->fit->model))))) ||
        ((!a->lo || !lw) && emdpo_llama_create(&a->ref->config, &a->pi)))
        return emdpo_diag_fail(diag, rc ? rc : EMDPO_ERR_NOMEM, rc ? "cannot make the LoRA adapter: %s" : "out of memory",
                               emdpo_status_name(rc));
    if (a->lo) emdpo_lora_init(a->lo, a->o.seed);
    rc = lw ? run_lw(a) : run_onpolicy(a);
    if (rc == EMDPO_ERR_LIMIT) return emdpo_diag_fail(diag, rc, "a sequence does not fit a model (context or vocabulary)");
    if (rc == EMDPO_ERR_NUMERIC)
        return emdpo_diag_fail(diag, rc, "training diverged or an estimate is not finite (a smaller learning rate?)");
    if (rc) return emdpo_diag_fail(diag, rc, "aggregation failed: %s", emdpo_status_name(rc));
    a->ran = 1;
    /* Under MPI every process trained its share of each step and holds the
     * same policy; rank 0 alone writes. */
    if (!(a->lo ? emdpo_dist_same(a->lo->buf, a->lo->n * sizeof *a->lo->buf)
                : emdpo_dist_same(a->pi->param_buf, a->pi->num_params * sizeof *a->pi->param_buf)))
        return emdpo_diag_fail(diag, EMDPO_ERR_NUMERIC, "the processes' parameters differ after training (the MPI "
                                                        "library's sums differ between processes)");
    if (emdpo_dist_rank() > 0) return EMDPO_OK;
    /* policy/ first, aggregate.json last: a directory with it is complete. */
    char *pdir = emdpo_path_join(a->out, "policy"), *json = emdpo_path_join(a->out, "aggregate.json");
    rc = pdir && json ? emdpo_mkdirs(a->out, diag) : emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (!rc && a->lo) {
        rc = emdpo_lora_adapter_write(a->lo, pdir, a->o.save_dtype, a->base_path, diag);
    } else if (!rc) {
        emdpo_llama_save_opts so = {a->o.save_dtype, a->tok};
        a->pi->file_dtype = a->ref->file_dtype;
        rc = emdpo_llama_save_with(a->pi, pdir, &so, diag);
    }
    if (!rc) rc = emdpo_afile_write(json, write_trained_json, a, diag);
    emdpo_strfree(pdir);
    emdpo_strfree(json);
    return rc;
}

int emdpo_lm_aggregate_run(emdpo_lm_aggregate *a, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!a) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no aggregation");
    return a->o.method == EMDPO_MMRA_AE ? run_ae(a, diag) : run_trained(a, diag);
}

int emdpo_lm_aggregate_write_json(const emdpo_lm_aggregate *a, FILE *fp) {
    if (!a || !fp) return EMDPO_ERR_INVALID_ARG;
    if (a->o.method == EMDPO_MMRA_AE) return a->agg ? emdpo_aggregate_write_json(a->agg, fp) : EMDPO_ERR_INVALID_ARG;
    if (!a->ran) return EMDPO_ERR_INVALID_ARG;
    write_json_trained(fp, a);
    return ferror(fp) ? EMDPO_ERR_IO : EMDPO_OK;
}
