/* MMRA-LW on Llama policies; see lm_mmra_lw.h. */
#include "lm/mmra/lm_mmra_lw.h"

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "lm/io/lm_batch.h"
#include "lm/lm_adapted.h"
#include "lm/lm_train.h"

void emdpo_lm_mmra_lw_opts_default(emdpo_lm_mmra_lw_opts *o) {
    memset(o, 0, sizeof *o);
    o->rounds = 5;
    o->eta = 1.0;
    o->steps = 10;
    emdpo_train_config dpo;
    emdpo_train_config_init(&dpo, EMDPO_TRAIN_DPO);
    o->beta = dpo.loss.beta;
    o->optim = dpo.optim;
    o->batch = dpo.batch;
    o->accum = dpo.accum;
    o->seed = 1;
    o->estimator = EMDPO_ESTIMATOR_EXACT;
    emdpo_lm_mmra_opts_default(&o->regret);
    o->select = EMDPO_LW_BEST;
}

void emdpo_lm_mmra_lw_decision_weights(int64_t n_dec, int K, const double *gamma, const double *w, double *wd) {
    for (int64_t j = 0; j < n_dec; j++) {
        double s = 0.0;
        for (int k = 0; k < K; k++) s += w[k] * gamma[j * K + k];
        wd[j] = s;
    }
}

void emdpo_lm_mmra_mw(int K, double eta, const double *gain, double *w) {
    double lw[EMDPO_MAX_K], mx = -INFINITY, z = 0.0;
    for (int k = 0; k < K; k++) {
        lw[k] = w[k] > 0 ? log(w[k]) + eta * gain[k] : -INFINITY;
        mx = fmax(mx, lw[k]);
    }
    for (int k = 0; k < K; k++) z += lw[k] = exp(lw[k] - mx);
    for (int k = 0; k < K; k++) w[k] = lw[k] / z;
}

/* What every round's evaluation needs. */
typedef struct lw_run {
    const emdpo_llama *sft;
    const emdpo_llama *pol[EMDPO_MAX_K + 1]; /* the types, then the candidate */
    int K;
    const emdpo_tokenizer *tok;
    const emdpo_data *d;
    emdpo_regret_estimator estimator;
    emdpo_lm_mmra_opts mo;  /* resolved: the fit's beta and lengths */
    emdpo_lm_set *set;      /* sequence i = item i of d */
    double *logp;           /* (K + 2, n_items): the types, the candidate, the reference */
    double *L, *se;         /* (K, K + 1) */
} lw_run;

/* The regrets of cand (with adapter lo when not NULL) into r. */
static int evaluate(lw_run *s, const emdpo_llama *cand, const emdpo_lora *lo, emdpo_mmra_round *r) {
    int K = s->K, M = K + 1, rc;
    size_t n = (size_t)s->d->n_items;
    if (s->estimator == EMDPO_ESTIMATOR_EXACT) {
        if ((rc = emdpo_lm_score_lora(cand, lo, s->set, s->mo.score_batch, s->logp + (size_t)K * n)) ||
            (rc = emdpo_lm_mmra_exact_logp(s->d, K, M, s->mo.beta, s->logp, s->logp + (size_t)M * n, s->L)))
            return rc;
    } else {
        emdpo_llama *merged = NULL;
        emdpo_diag ignored;
        if (lo && (rc = emdpo_lm_merged(cand, lo, &merged, &ignored))) return rc;
        s->pol[K] = merged ? merged : cand;
        rc = emdpo_lm_mmra_sample(s->pol, K, M, s->sft, s->tok, s->d, &s->mo, s->L, s->se, NULL);
        emdpo_llama_free(merged);
        if (rc) return rc;
    }
    r->max_regret = -INFINITY;
    for (int k = 0; k < K; k++) {
        const double *Lk = s->L + (size_t)k * M, *Sk = s->se + (size_t)k * M;
        r->regret[k] = Lk[k] - Lk[K];
        r->regret_se[k] = s->estimator == EMDPO_ESTIMATOR_EXACT ? NAN : sqrt(Sk[k] * Sk[k] + Sk[K] * Sk[K]);
        r->max_regret = fmax(r->max_regret, r->regret[k]);
    }
    return EMDPO_OK;
}

static int check_opts(const emdpo_llama *sft, const emdpo_llama *const *types, int K, const emdpo_data *d,
                      const double *gamma, const emdpo_lm_mmra_lw_opts *o, const emdpo_llama *pi) {
    if (K < 1 || K > EMDPO_MAX_K || d->n_dec < 1 || o->rounds < 1 || !(o->eta > 0) || !isfinite(o->eta) ||
        o->steps < 1 || !(o->beta > 0) || !isfinite(o->beta) || !(o->rpo_alpha >= 0) || !isfinite(o->rpo_alpha) ||
        o->max_length < 0 || o->max_prompt_length < 0 ||
        (o->estimator != EMDPO_ESTIMATOR_EXACT && o->estimator != EMDPO_ESTIMATOR_SAMPLE) ||
        (o->select != EMDPO_LW_BEST && o->select != EMDPO_LW_LAST) || o->regret.score_batch < 1 ||
        (o->lora ? pi || !emdpo_lora_fits(o->lora, &sft->config)
                 : !pi || memcmp(&pi->config, &sft->config, sizeof pi->config)) ||
        (o->type_lora && o->estimator != EMDPO_ESTIMATOR_EXACT))
        return EMDPO_ERR_INVALID_ARG;
    for (int k = 0; o->type_lora && k < K; k++)
        if (o->type_lora[k] && !emdpo_lora_fits(o->type_lora[k], &types[k]->config)) return EMDPO_ERR_INVALID_ARG;
    for (int k = 0; k < K; k++)
        if (types[k]->config.vocab_size != sft->config.vocab_size) return EMDPO_ERR_INVALID_ARG;
    for (int64_t q = 0; q < d->n_dec * K; q++)
        if (!(gamma[q] >= 0) || !isfinite(gamma[q])) return EMDPO_ERR_INVALID_ARG;
    return emdpo_data_has_text(d) ? EMDPO_OK : EMDPO_ERR_UNSUPPORTED;
}

/* The rounds, from the start's evaluation on; the trainer holds pi (or
 * o->lora on sft). */
static int run_rounds(lw_run *s, emdpo_trainer *t, emdpo_llama *pi, const double *gamma,
                      const emdpo_lm_mmra_lw_opts *o, float *best, double *wd, emdpo_lm_mmra_lw_result *res) {
    const emdpo_llama *cand = o->lora ? s->sft : pi;
    float *params = o->lora ? o->lora->buf : pi->param_buf;
    size_t n_params = o->lora ? o->lora->n : pi->num_params;
    int K = s->K, rc;
    double w[EMDPO_MAX_K];
    for (int k = 0; k < K; k++) w[k] = 1.0 / K;
    emdpo_mmra_round *r = &res->start;
    memset(r, 0, sizeof *r);
    memcpy(r->w, w, (size_t)K * sizeof *w);
    r->loss = r->kl = NAN;
    if ((rc = evaluate(s, s->sft, NULL, r))) return rc;
    if (o->progress) o->progress(o->progress_ud, r, K);
    res->chosen = 1;
    for (int round = 1; round <= o->rounds; round++) {
        r = &res->rounds[round - 1];
        memset(r, 0, sizeof *r);
        r->round = round;
        memcpy(r->w, w, (size_t)K * sizeof *w);
        emdpo_lm_mmra_lw_decision_weights(s->d->n_dec, K, gamma, w, wd);
        if ((rc = emdpo_trainer_set_weights(t, wd))) return rc;
        double loss = 0.0;
        for (int64_t step = 0; step < o->steps; step++) {
            emdpo_train_metrics met;
            if ((rc = emdpo_trainer_step(t, &met))) return rc;
            loss += met.loss;
        }
        r->loss = loss / (double)o->steps;
        r->kl = NAN;
        if ((rc = evaluate(s, cand, o->lora, r))) return rc;
        if (round == 1 || o->select == EMDPO_LW_LAST || r->max_regret < res->rounds[res->chosen - 1].max_regret) {
            res->chosen = round;
            if (best && round < o->rounds) memcpy(best, params, n_params * sizeof *best);
        }
        emdpo_lm_mmra_mw(K, o->eta, r->regret, w);
        if (o->progress) o->progress(o->progress_ud, r, K);
    }
    res->final = res->rounds[res->chosen - 1];
    memcpy(res->final.w, w, (size_t)K * sizeof *w);
    if (best && res->chosen < o->rounds) memcpy(params, best, n_params * sizeof *best);
    return EMDPO_OK;
}

int emdpo_lm_mmra_lw(const emdpo_llama *sft, const emdpo_llama *const *types, int K, const emdpo_tokenizer *tok,
                     const emdpo_data *d, const double *gamma, const emdpo_lm_mmra_lw_opts *o, emdpo_llama *pi,
                     emdpo_lm_mmra_lw_result *res) {
    int rc = check_opts(sft, types, K, d, gamma, o, pi);
    if (rc) return rc;
    lw_run s;
    memset(&s, 0, sizeof s);
    s.sft = sft;
    memcpy(s.pol, types, (size_t)K * sizeof *types);
    s.K = K;
    s.tok = tok;
    s.d = d;
    s.estimator = o->estimator;
    s.mo = o->regret;
    s.mo.beta = o->beta;
    int ctx = emdpo_llama_context(&sft->config);
    s.mo.max_length = o->max_length ? o->max_length : (ctx < 512 ? ctx : 512);
    s.mo.max_prompt_length = o->max_prompt_length ? o->max_prompt_length : s.mo.max_length / 2;
    if (s.mo.max_prompt_length < 1 || s.mo.max_length <= s.mo.max_prompt_length) return EMDPO_ERR_INVALID_ARG;

    size_t n = (size_t)d->n_items, nlp = (size_t)(K + 2) * n, nl = (size_t)K * (K + 1), nd = (size_t)d->n_dec;
    size_t nb = o->select == EMDPO_LW_BEST && o->rounds > 1 ? (o->lora ? o->lora->n : pi->num_params) : 0;
    emdpo_trainer *t = NULL;
    s.logp = emdpo_malloc(nlp * sizeof *s.logp);
    s.L = emdpo_malloc(nl * sizeof *s.L);
    s.se = emdpo_calloc(nl, sizeof *s.se);
    double *wd = emdpo_malloc(nd * sizeof *wd);
    float *best = nb ? emdpo_malloc(nb * sizeof *best) : NULL;
    if (!s.logp || !s.L || !s.se || !wd || (nb && !best)) rc = EMDPO_ERR_NOMEM;
    if (!rc) rc = emdpo_lm_set_from_data(d, tok, s.mo.max_length, s.mo.max_prompt_length, &s.set);
    /* One reference pass serves DPO and the exact rewards. */
    if (!rc) rc = emdpo_lm_score(sft, s.set, s.mo.score_batch, s.logp + (size_t)(K + 1) * n);
    for (int k = 0; !rc && o->estimator == EMDPO_ESTIMATOR_EXACT && k < K; k++)
        rc = emdpo_lm_score_lora(types[k], o->type_lora ? o->type_lora[k] : NULL, s.set, s.mo.score_batch,
                                 s.logp + (size_t)k * n);
    if (!rc) {
        if (!o->lora) memcpy(pi->param_buf, sft->param_buf, pi->num_params * sizeof *pi->param_buf);
        emdpo_train_config tc;
        memset(&tc, 0, sizeof tc);
        tc.mode = EMDPO_TRAIN_DPO;
        tc.loss.kind = EMDPO_LOSS_DPO;
        tc.loss.beta = o->beta;
        tc.loss.rpo_alpha = o->rpo_alpha;
        tc.optim = o->optim;
        tc.batch = o->batch;
        tc.accum = o->accum;
        tc.seed = o->seed;
        tc.grad_checkpoint = o->grad_checkpoint;
        rc = emdpo_trainer_create_lora(o->lora ? sft : pi, o->lora, s.set, NULL, &tc, &t);
    }
    if (!rc) rc = emdpo_trainer_set_reference_logp(t, s.logp + (size_t)(K + 1) * n);
    if (!rc) rc = run_rounds(&s, t, pi, gamma, o, best, wd, res);
    emdpo_trainer_free(t);
    emdpo_lm_set_free(s.set);
    emdpo_free(s.logp, nlp * sizeof *s.logp);
    emdpo_free(s.L, nl * sizeof *s.L);
    emdpo_free(s.se, nl * sizeof *s.se);
    emdpo_free(wd, nd * sizeof *wd);
    emdpo_free(best, nb * sizeof *best);
    return rc;
}
