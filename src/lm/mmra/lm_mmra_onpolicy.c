/* On-policy MMRA on Llama policies; see lm_mmra_onpolicy.h. */
#include "lm/mmra/lm_mmra_onpolicy.h"

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/rng.h"
#include "lm/engine/llama_model.h"
#include "lm/engine/lm_sample.h"
#include "lm/io/lm_batch.h"

void emdpo_lm_mmra_op_opts_default(emdpo_lm_mmra_op_opts *o) {
    memset(o, 0, sizeof *o);
    o->rounds = 5;
    o->steps = 1;
    o->eta = 1.0;
    o->beta = 0.1;
    emdpo_optim_config_init(&o->optim, EMDPO_OPTIM_ADAMW);
    o->optim.lr = 1e-6;
    o->optim.clip = 10.0;
    o->batch = 4;
    o->samples = 4;
    o->max_tokens = 64;
    o->score_batch = 16;
    o->seed = 1;
}

double emdpo_lm_mmra_op_estimate(int K, int G, int S, double beta, const double *value, const double *w,
                                 const double *lr, double *regret, double *coef, double *kl) {
    int N = G * S;
    double c[EMDPO_MAX_K], obj = 0.0, m = 0.0;
    for (int k = 0; k < K; k++) {
        double s = 0.0;
        for (int i = 0; i < N; i++) s += lr[(size_t)k * N + i];
        regret[k] = value[k] - beta * s / N;
        c[k] = regret[k] > 0 ? w[k] : 0.0;
        obj += c[k] * regret[k];
    }
    for (int i = 0; i < N; i++) m += lr[(size_t)K * N + i];
    *kl = m / N;
    for (int i = 0; i < N; i++) { /* A_i */
        double a = -lr[(size_t)K * N + i];
        for (int k = 0; k < K; k++) a += c[k] * lr[(size_t)k * N + i];
        coef[i] = beta * a;
    }
    /* A_i - b_i = (S A_i - sum of the group's A) / (S - 1). */
    for (int g = 0; g < G; g++) {
        double *a = coef + (size_t)g * S, sum = 0.0;
        for (int s = 0; s < S; s++) sum += a[s];
        for (int s = 0; s < S; s++) a[s] = -(S * a[s] - sum) / (S - 1) / N;
    }
    return obj + beta * *kl;
}

/* One run's models, prompts and buffers. */
typedef struct op_run {
    const emdpo_llama *sft, *pol[EMDPO_MAX_K + 1]; /* the types, then the candidate */
    emdpo_llama *pi;                                /* with lo: sft with lo merged, to generate from */
    emdpo_lora *lo;                                 /* the adapter trained on sft, or NULL: pi is */
    float *params;                                  /* what the optimizer steps: lo's or pi's */
    size_t n_params;
    int K, N, B, P, max_T;                         /* N draws per step, B sequences per forward */
    const emdpo_tokenizer *tok;
    const emdpo_data *d;
    const emdpo_lm_mmra_op_opts *o;
    emdpo_lm_mmra_opts mo;                          /* evaluations */
    int64_t n_pr, *perm, pos;                       /* prompts, their order, the next one */
    int32_t *ptok;                                  /* prompt tokens, flat */
    int64_t *poff;                                  /* (n_pr + 1) */
    size_t ptok_cap;
    emdpo_rng rng;                                  /* the prompt order */
    emdpo_sampler *smp;
    emdpo_optim *opt;
    emdpo_llama_acts *acts;
    const int **pp;                                 /* (N) each draw's prompt */
    int *pl, *out, *n_out, *stop;                   /* (N), (N, max_tokens), (N), (N) */
    int *tokens, *lens, *start, *end;               /* (B, max_T + 1), (B) x 3 */
    double *lp, *coef;                              /* (K + 2, N): types, reference, pi; (N) */
    float *grad, *dlogp;                            /* (num_params), (B, max_T + 1) */
} op_run;

/* Each decision's prompt with BOS, cut to P tokens as emdpo_lm_prompt_encode
 * cuts it (lm_mmra.c's rule, so evaluations and steps agree). */
static int prompts_make(op_run *s) {
    int rc = EMDPO_OK;
    s->poff[0] = 0;
    for (int64_t j = 0; !rc && j < s->n_pr; j++) {
        int *ids = NULL, got = 0;
        size_t cap = 0;
        if ((rc = emdpo_lm_prompt_encode(s->tok, s->d->dec_prompt ? s->d->dec_prompt[j] : NULL, s->P, &ids, &cap,
                                         &got)))
            break;
        int64_t at = s->poff[j];
        if (!(rc = emdpo_grow((void **)&s->ptok, &s->ptok_cap, (size_t)at + (size_t)got, sizeof *s->ptok))) {
            for (int i = 0; i < got; i++) s->ptok[at + i] = ids[i];
            s->poff[j + 1] = at + got;
        }
        emdpo_free(ids, cap * sizeof *ids);
    }
    return rc;
}

/* Draws [i0, i0 + n) of the step as rows of tokens (n, *T): prompt,
 * response, and EOS when the generator ended it. */
static void pack(op_run *s, int i0, int n, int *T) {
    int W = s->max_T + 1, mx = 0;
    for (int b = 0; b < n; b++) {
        int i = i0 + b, *row = s->tokens + (size_t)b * W, len = s->pl[i];
        memcpy(row, s->pp[i], (size_t)len * sizeof *row);
        memcpy(row + len, s->out + (size_t)i * s->o->max_tokens, (size_t)s->n_out[i] * sizeof *row);
        len += s->n_out[i];
        if (s->stop[i] == EMDPO_GEN_EOS && emdpo_tokenizer_eos(s->tok) >= 0) row[len++] = emdpo_tokenizer_eos(s->tok);
        memset(row + len, 0, (size_t)(W - len) * sizeof *row);
        s->lens[b] = s->end[b] = len;
        s->start[b] = s->pl[i];
        mx = len > mx ? len : mx;
    }
    /* Rows are W apart; the forward wants them T apart. */
    for (int b = 1; b < n; b++)
        memmove(s->tokens + (size_t)b * mx, s->tokens + (size_t)b * W, (size_t)mx * sizeof *s->tokens);
    *T = mx;
}

/* The policy's forward over the draws [i0, i0 + n) of step g: pi's, or
 * sft's with the adapter, its dropout masks drawn from (seed, g, i0). */
static int forward_pi(op_run *s, int64_t g, int i0, int n, int T) {
    if (!s->lo) return emdpo_llama_forward(s->pi, s->acts, s->tokens, s->lens, n, T);
    emdpo_rng dr;
    emdpo_rng_seed(&dr, s->o->seed ^ 0x6c6f7261u, (uint64_t)g * (uint64_t)(s->N + 1) + (uint64_t)i0);
    s->acts->lora_seed = emdpo_rng_u64(&dr);
    return emdpo_llama_forward_lora(s->sft, s->lo, s->acts, s->tokens, s->lens, n, T);
}

/* pi = sft with the adapter merged: the policy the decoders run. */
static int merge_pi(op_run *s) {
    if (!s->lo) return EMDPO_OK;
    memcpy(s->pi->param_buf, s->sft->param_buf, s->pi->num_params * sizeof *s->pi->param_buf);
    return emdpo_lora_merge(s->lo, s->pi);
}

/* Response log-probabilities of the step's draws under m (NULL: the
 * policy, at step g) into out (N). */
static int score(op_run *s, const emdpo_llama *m, int64_t g, double *out) {
    for (int i0 = 0; i0 < s->N; i0 += s->B) {
        int n = s->N - i0 < s->B ? s->N - i0 : s->B, T, rc;
        pack(s, i0, n, &T);
        if ((rc = m ? emdpo_llama_forward(m, s->acts, s->tokens, s->lens, n, T) : forward_pi(s, g, i0, n, T)) ||
            (rc = emdpo_llama_span_logp(s->acts, s->start, s->end, out + i0)))
            return rc;
    }
    return EMDPO_OK;
}

/* The gradient of sum_i coef_i log pi(y_i) into s->grad. When the draws
 * fit one forward, pi's scoring pass (the last forward) is reused. */
static int backward(op_run *s, int64_t g) {
    int rc, reuse = s->N <= s->B;
    memset(s->grad, 0, s->n_params * sizeof *s->grad);
    for (int i0 = 0; i0 < s->N; i0 += s->B) {
        int n = s->N - i0 < s->B ? s->N - i0 : s->B, T;
        pack(s, i0, n, &T);
        if (!reuse && (rc = forward_pi(s, g, i0, n, T))) return rc;
        memset(s->dlogp, 0, (size_t)n * T * sizeof *s->dlogp);
        if ((rc = emdpo_llama_span_backward(s->acts, s->start, s->end, s->coef + i0, s->dlogp)) ||
            (rc = s->lo ? emdpo_llama_backward_lora(s->sft, s->lo, s->acts, s->dlogp, s->grad)
                        : emdpo_llama_backward(s->pi, s->acts, s->dlogp, s->grad)))
            return rc;
    }
    return EMDPO_OK;
}

/* One policy-gradient step at global step number g. */
static int step(op_run *s, int64_t g, const double *value, const double *w, double *regret, double *obj,
                double *kl) {
    const emdpo_lm_mmra_op_opts *o = s->o;
    int K = s->K, N = s->N, S = o->samples, rc;
    for (int p = 0; p < o->batch; p++) {
        if (s->pos == s->n_pr) {
            for (int64_t i = s->n_pr - 1; i > 0; i--) {
                int64_t j = (int64_t)emdpo_rng_below(&s->rng, (uint64_t)i + 1), t = s->perm[i];
                s->perm[i] = s->perm[j];
                s->perm[j] = t;
            }
            s->pos = 0;
        }
        int64_t q = s->perm[s->pos++];
        for (int r = 0; r < S; r++) {
            s->pp[p * S + r] = s->ptok + s->poff[q];
            s->pl[p * S + r] = (int)(s->poff[q + 1] - s->poff[q]);
        }
    }
    emdpo_rng gr;
    emdpo_rng_seed(&gr, o->seed, (uint64_t)EMDPO_MAX_K + 2 + (uint64_t)g);
    /* Under MPI each process draws its share of the N responses. */
    if ((rc = merge_pi(s)) || (rc = emdpo_generate_shared(s->pi, s->smp, emdpo_rng_u64(&gr), s->pp, s->pl, N,
                                                          o->max_tokens, s->max_T, s->out, s->n_out, s->stop)))
        return rc;
    /* Reference and types first: pi's pass stays in the activations. */
    double *ref = s->lp + (size_t)K * N, *own = ref + N;
    if ((rc = score(s, s->sft, g, ref))) return rc;
    for (int k = 0; k < K; k++)
        if ((rc = score(s, s->pol[k], g, s->lp + (size_t)k * N))) return rc;
    if ((rc = score(s, NULL, g, own))) return rc;
    for (int k = 0; k < K; k++)
        for (int i = 0; i < N; i++) s->lp[(size_t)k * N + i] -= ref[i];
    for (int i = 0; i < N; i++) ref[i] = own[i] - ref[i]; /* row K: the policy's log-ratio */
    *obj = emdpo_lm_mmra_op_estimate(K, o->batch, S, o->beta, value, w, s->lp, regret, s->coef, kl);
    if (!isfinite(*obj)) return EMDPO_ERR_NUMERIC;
    if ((rc = backward(s, g))) return rc;
    return emdpo_optim_step(s->opt, s->params, s->grad, NULL, NULL);
}

/* Regrets of cand into r (K + 1 columns: the types, then cand); value
 * (may be NULL) gets the diagonal. */
static int evaluate(op_run *s, const emdpo_llama *cand, emdpo_mmra_round *r, double *value, int64_t *draws) {
    int K = s->K, M = K + 1;
    size_t nl = (size_t)K * M;
    double *L = emdpo_malloc(nl * sizeof *L), *se = emdpo_malloc(nl * sizeof *se);
    int rc = L && se ? EMDPO_OK : EMDPO_ERR_NOMEM;
    s->pol[K] = cand;
    if (!rc) rc = emdpo_lm_mmra_sample(s->pol, K, M, s->sft, s->tok, s->d, &s->mo, L, se, draws);
    r->max_regret = -INFINITY;
    for (int k = 0; !rc && k < K; k++) {
        const double *Lk = L + (size_t)k * M, *Sk = se + (size_t)k * M;
        r->regret[k] = Lk[k] - Lk[K];
        r->regret_se[k] = sqrt(Sk[k] * Sk[k] + Sk[K] * Sk[K]);
        r->max_regret = fmax(r->max_regret, r->regret[k]);
        if (value) value[k] = Lk[k];
    }
    emdpo_free(L, nl * sizeof *L);
    emdpo_free(se, nl * sizeof *se);
    return rc;
}

static int run_rounds(op_run *s, emdpo_lm_mmra_op_result *res) {
    const emdpo_lm_mmra_op_opts *o = s->o;
    int K = s->K, rc;
    double w[EMDPO_MAX_K], regret[EMDPO_MAX_K], gain[EMDPO_MAX_K];
    for (int k = 0; k < K; k++) w[k] = 1.0 / K;
    emdpo_mmra_round *r = &res->start;
    memset(r, 0, sizeof *r);
    memcpy(r->w, w, (size_t)K * sizeof *w);
    r->loss = r->kl = NAN;
    if ((rc = evaluate(s, s->sft, r, res->value, &res->draws))) return rc;
    if (o->progress) o->progress(o->progress_ud, r, K);
    for (int round = 1; round <= o->rounds; round++) {
        r = &res->rounds[round - 1];
        memset(r, 0, sizeof *r);
        r->round = round;
        memcpy(r->w, w, (size_t)K * sizeof *w);
        for (int64_t st = 0; st < o->steps; st++) {
            double obj, kl;
            if ((rc = step(s, (int64_t)(round - 1) * o->steps + st, res->value, w, regret, &obj, &kl))) return rc;
            for (int k = 0; k < K; k++) r->regret[k] += regret[k] / (double)o->steps;
            r->loss += obj / (double)o->steps;
            r->kl += kl / (double)o->steps;
        }
        r->max_regret = -INFINITY;
        for (int k = 0; k < K; k++) {
            r->regret_se[k] = NAN;
            r->max_regret = fmax(r->max_regret, r->regret[k]);
            gain[k] = fmax(r->regret[k], 0.0);
        }
        emdpo_lm_mmra_mw(K, o->eta, gain, w);
        if (o->progress) o->progress(o->progress_ud, r, K);
    }
    r = &res->final;
    memset(r, 0, sizeof *r);
    r->round = o->rounds;
    memcpy(r->w, w, (size_t)K * sizeof *w);
    r->loss = r->kl = NAN;
    if ((rc = merge_pi(s))) return rc;
    return evaluate(s, s->pi, r, NULL, NULL);
}

static int check_opts(const emdpo_llama *sft, const emdpo_llama *const *types, int K, const emdpo_data *d,
                      const emdpo_lm_mmra_op_opts *o, const emdpo_llama *pi) {
    if (K < 1 || K > EMDPO_MAX_K || d->n_dec < 1 || o->rounds < 1 || o->steps < 1 || !(o->eta > 0) ||
        !isfinite(o->eta) || !(o->beta > 0) || !isfinite(o->beta) || o->batch < 1 || o->samples < 2 ||
        o->eval_samples < 0 || o->max_tokens < 1 || o->max_length < 0 || o->max_prompt_length < 0 ||
        o->max_prompts < 0 || o->score_batch < 1 || (int64_t)o->batch * o->samples > INT32_MAX / 2 ||
        memcmp(&pi->config, &sft->config, sizeof pi->config) || pi->frozen ||
        (o->lora && (sft->frozen || !emdpo_lora_fits(o->lora, &sft->config))))
        return EMDPO_ERR_INVALID_ARG;
    for (int k = 0; k < K; k++)
        if (memcmp(&types[k]->config, &sft->config, sizeof sft->config)) return EMDPO_ERR_INVALID_ARG;
    return EMDPO_OK;
}

static void run_free(op_run *s) {
    size_t N = (size_t)s->N, B = (size_t)s->B, W = (size_t)s->max_T + 1, K = (size_t)s->K;
    emdpo_free(s->perm, (size_t)s->n_pr * sizeof *s->perm);
    emdpo_free(s->poff, ((size_t)s->n_pr + 1) * sizeof *s->poff);
    emdpo_free(s->ptok, s->ptok_cap * sizeof *s->ptok);
    emdpo_sampler_free(s->smp);
    emdpo_optim_free(s->opt);
    emdpo_llama_acts_free(s->acts);
    emdpo_free(s->pp, N * sizeof *s->pp);
    emdpo_free(s->pl, N * sizeof *s->pl);
    emdpo_free(s->out, N * (size_t)s->o->max_tokens * sizeof *s->out);
    emdpo_free(s->n_out, N * sizeof *s->n_out);
    emdpo_free(s->stop, N * sizeof *s->stop);
    emdpo_free(s->tokens, B * W * sizeof *s->tokens);
    emdpo_free(s->lens, 3 * B * sizeof *s->lens);
    emdpo_free(s->lp, (K + 2) * N * sizeof *s->lp);
    emdpo_free(s->coef, N * sizeof *s->coef);
    emdpo_free(s->grad, s->n_params * sizeof *s->grad);
    emdpo_free(s->dlogp, B * W * sizeof *s->dlogp);
}

static int run_alloc(op_run *s) {
    const emdpo_lm_mmra_op_opts *o = s->o;
    size_t N = (size_t)s->N, B = (size_t)s->B, W = (size_t)s->max_T + 1, K = (size_t)s->K;
    int rc;
    if (!(rc = emdpo_sampler_create(s->sft->config.vocab_size, 1.0f, 0, 1.0f, &s->smp)))
        emdpo_tokenizer_stop_sampler(s->tok, s->smp);
    if (rc ||
        (rc = emdpo_optim_create(&o->optim, s->n_params, &s->opt)) ||
        (rc = emdpo_llama_acts_create_lora(&s->pi->config, s->lo ? s->lo->config.r : 0, s->B, (int)W,
                                            s->o->grad_checkpoint ? EMDPO_ACTS_TRAIN_CKPT : EMDPO_ACTS_TRAIN,
                                            &s->acts)))
        return rc;
    s->perm = emdpo_malloc((size_t)s->n_pr * sizeof *s->perm);
    s->poff = emdpo_malloc(((size_t)s->n_pr + 1) * sizeof *s->poff);
    s->pp = emdpo_malloc(N * sizeof *s->pp);
    s->pl = emdpo_malloc(N * sizeof *s->pl);
    s->out = emdpo_malloc(N * (size_t)o->max_tokens * sizeof *s->out);
    s->n_out = emdpo_malloc(N * sizeof *s->n_out);
    s->stop = emdpo_malloc(N * sizeof *s->stop);
    s->tokens = emdpo_malloc(B * W * sizeof *s->tokens);
    s->lens = emdpo_malloc(3 * B * sizeof *s->lens);
    s->lp = emdpo_malloc((K + 2) * N * sizeof *s->lp);
    s->coef = emdpo_malloc(N * sizeof *s->coef);
    s->grad = emdpo_malloc(s->n_params * sizeof *s->grad);
    s->dlogp = emdpo_malloc(B * W * sizeof *s->dlogp);
    if (!s->perm || !s->poff || !s->pp || !s->pl || !s->out || !s->n_out || !s->stop || !s->tokens || !s->lens ||
        !s->lp || !s->coef || !s->grad || !s->dlogp)
        return EMDPO_ERR_NOMEM;
    s->start = s->lens + B;
    s->end = s->lens + 2 * B;
    for (int64_t j = 0; j < s->n_pr; j++) s->perm[j] = j;
    s->pos = s->n_pr; /* the first step shuffles */
    emdpo_rng_seed(&s->rng, o->seed, (uint64_t)EMDPO_MAX_K + 1);
    return prompts_make(s);
}

int emdpo_lm_mmra_onpolicy(const emdpo_llama *sft, const emdpo_llama *const *types, int K, const emdpo_tokenizer *tok,
                           const emdpo_data *d, const emdpo_lm_mmra_op_opts *o, emdpo_llama *pi,
                           emdpo_lm_mmra_op_result *res) {
    int rc = check_opts(sft, types, K, d, o, pi);
    if (rc) return rc;
    op_run s;
    memset(&s, 0, sizeof s);
    s.sft = sft;
    memcpy(s.pol, types, (size_t)K * sizeof *types);
    s.pi = pi;
    s.lo = o->lora;
    s.params = s.lo ? s.lo->buf : pi->param_buf;
    s.n_params = s.lo ? s.lo->n : pi->num_params;
    s.K = K;
    s.tok = tok;
    s.d = d;
    s.o = o;
    int ctx = emdpo_llama_context(&sft->config), L = o->max_length ? o->max_length : (ctx < 512 ? ctx : 512);
    int mpl = o->max_prompt_length ? o->max_prompt_length : L / 2;
    if (L < 3 || mpl < 1 || mpl >= L) return EMDPO_ERR_INVALID_ARG;
    if (L > ctx) return EMDPO_ERR_LIMIT;
    s.P = mpl < L - 2 ? mpl : L - 2;
    s.max_T = L - 1;
    s.N = o->batch * o->samples;
    s.B = o->score_batch < s.N ? o->score_batch : s.N;
    s.n_pr = o->max_prompts && o->max_prompts < d->n_dec ? o->max_prompts : d->n_dec;
    emdpo_lm_mmra_opts_default(&s.mo);
    s.mo.beta = o->beta;
    s.mo.max_length = L;
    s.mo.max_prompt_length = mpl;
    s.mo.score_batch = o->score_batch;
    s.mo.samples = o->eval_samples ? o->eval_samples : o->samples;
    s.mo.max_tokens = o->max_tokens;
    s.mo.max_prompts = o->max_prompts;
    s.mo.seed = o->seed;
    memcpy(pi->param_buf, sft->param_buf, pi->num_params * sizeof *pi->param_buf);
    rc = run_alloc(&s);
    if (!rc) rc = run_rounds(&s, res);
    run_free(&s);
    return rc;
}
