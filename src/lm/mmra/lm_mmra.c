/* MMRA-AE cross rewards for Llama policies; see lm_mmra.h. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/stats.h"
#include "base/json.h"
#include "base/json_write.h"
#include "base/rng.h"
#include "lm/engine/lm_sample.h"
#include "lm/io/lm_batch.h"
#include "lm/lm_train.h"
#include "lm/mmra/lm_mmra.h"

void emdpo_lm_mmra_opts_default(emdpo_lm_mmra_opts *o) {
    memset(o, 0, sizeof *o);
    o->beta = 0.1;
    o->score_batch = 16;
    o->samples = 4;
    o->max_tokens = 64;
    o->temperature = 1.0f;
    o->seed = 1;
}

int emdpo_lm_mmra_exact_logp(const emdpo_data *d, int K, int M, double beta, const double *logp,
                             const double *ref_logp, double *L) {
    if (K < 1 || M < K || !(beta > 0) || !isfinite(beta) || d->n_dec < 1) return EMDPO_ERR_INVALID_ARG;
    int most = 0;
    for (int64_t j = 0; j < d->n_dec; j++)
        if (emdpo_dec_n_items(d, j) > most) most = emdpo_dec_n_items(d, j);
    size_t np = (size_t)most;
    double *pi = emdpo_malloc(np * sizeof *pi);
    if (!pi) return EMDPO_ERR_NOMEM;
    memset(L, 0, (size_t)K * M * sizeof *L);
    int64_t n_items = d->n_items;
    for (int b = 0; b < M; b++) {
        const double *lb = logp + (size_t)b * n_items;
        for (int64_t j = 0; j < d->n_dec; j++) {
            int64_t i0 = d->dec_item[j];
            int n = emdpo_dec_n_items(d, j);
            double mx = -INFINITY, z = 0.0;
            for (int q = 0; q < n; q++) mx = fmax(mx, lb[i0 + q]);
            for (int q = 0; q < n; q++) z += pi[q] = exp(lb[i0 + q] - mx);
            for (int a = 0; a < K; a++) {
                const double *la = logp + (size_t)a * n_items;
                double e = 0.0;
                for (int q = 0; q < n; q++) e += pi[q] / z * (la[i0 + q] - ref_logp[i0 + q]);
                L[(size_t)a * M + b] += e;
            }
        }
    }
    emdpo_free(pi, np * sizeof *pi);
    int rc = EMDPO_OK;
    for (size_t e = 0; e < (size_t)K * M; e++) {
        L[e] *= beta / (double)d->n_dec;
        if (!isfinite(L[e])) rc = EMDPO_ERR_NUMERIC;
    }
    return rc;
}

/* Fills in the option defaults that depend on the reference and checks
 * the rest; every model must share ref's vocabulary. */
static int resolve_opts(const emdpo_llama *const *pol, int K, int M, const emdpo_llama *ref,
                        const emdpo_lm_mmra_opts *o, emdpo_lm_mmra_opts *r) {
    *r = *o;
    if (K < 1 || M < K || !(o->beta > 0) || !isfinite(o->beta) || o->score_batch < 1 || o->max_length < 0 ||
        o->max_prompt_length < 0)
        return EMDPO_ERR_INVALID_ARG;
    for (int b = 0; b < M; b++)
        if (pol[b]->config.vocab_size != ref->config.vocab_size) return EMDPO_ERR_INVALID_ARG;
    int ctx = emdpo_llama_context(&ref->config);
    if (!r->max_length) r->max_length = ctx < 512 ? ctx : 512;
    if (!r->max_prompt_length) r->max_prompt_length = r->max_length / 2;
    if (r->max_prompt_length < 1 || r->max_length <= r->max_prompt_length) return EMDPO_ERR_INVALID_ARG;
    return EMDPO_OK;
}

int emdpo_lm_mmra_exact(const emdpo_llama *const *pol, int K, int M, const emdpo_llama *ref,
                        const emdpo_tokenizer *tok, const emdpo_data *d, const emdpo_lm_mmra_opts *o, double *L) {
    return emdpo_lm_mmra_exact_lora(pol, NULL, K, M, ref, tok, d, o, L);
}

int emdpo_lm_mmra_exact_lora(const emdpo_llama *const *pol, const emdpo_lora *const *lora, int K, int M,
                             const emdpo_llama *ref, const emdpo_tokenizer *tok, const emdpo_data *d,
                             const emdpo_lm_mmra_opts *o, double *L) {
    emdpo_lm_mmra_opts r;
    int rc = resolve_opts(pol, K, M, ref, o, &r);
    if (rc) return rc;
    if (!emdpo_data_has_text(d)) return EMDPO_ERR_UNSUPPORTED;
    emdpo_lm_set *set = NULL;
    size_t n = (size_t)d->n_items, nl = (size_t)(M + 1) * n;
    double *logp = emdpo_malloc(nl * sizeof *logp);
    if (!logp) return EMDPO_ERR_NOMEM;
    rc = emdpo_lm_set_from_data(d, tok, r.max_length, r.max_prompt_length, &set);
    for (int b = 0; !rc && b < M; b++)
        rc = emdpo_lm_score_lora(pol[b], lora ? lora[b] : NULL, set, r.score_batch, logp + (size_t)b * n);
    if (!rc) rc = emdpo_lm_score(ref, set, r.score_batch, logp + (size_t)M * n);
    if (!rc) rc = emdpo_lm_mmra_exact_logp(d, K, M, r.beta, logp, logp + (size_t)M * n, L);
    emdpo_lm_set_free(set);
    emdpo_free(logp, nl * sizeof *logp);
    return rc;
}

/* Every prompt tokenized with BOS; longer than P, it keeps BOS and its last
 * P - 1 tokens, as lm_batch.h truncates. */
typedef struct prompts {
    int64_t n;
    int **ids;
    int *len;
    size_t *cap;
} prompts;

static void prompts_free(prompts *p) {
    for (int64_t i = 0; p->ids && p->cap && i < p->n; i++) emdpo_free(p->ids[i], p->cap[i] * sizeof *p->ids[i]);
    emdpo_free(p->ids, (size_t)p->n * sizeof *p->ids);
    emdpo_free(p->len, (size_t)p->n * sizeof *p->len);
    emdpo_free(p->cap, (size_t)p->n * sizeof *p->cap);
}

static int prompts_make(const emdpo_data *d, const emdpo_tokenizer *tok, int64_t n, int P, prompts *p) {
    p->n = n;
    p->ids = emdpo_calloc((size_t)n, sizeof *p->ids);
    p->len = emdpo_calloc((size_t)n, sizeof *p->len);
    p->cap = emdpo_calloc((size_t)n, sizeof *p->cap);
    if (!p->ids || !p->len || !p->cap) return EMDPO_ERR_NOMEM;
    for (int64_t j = 0; j < n; j++) {
        int rc = emdpo_lm_prompt_encode(tok, d->dec_prompt ? d->dec_prompt[j] : NULL, P, &p->ids[j], &p->cap[j],
                                        &p->len[j]);
        if (rc) return rc;
    }
    return EMDPO_OK;
}

int emdpo_lm_mmra_sample(const emdpo_llama *const *pol, int K, int M, const emdpo_llama *ref,
                         const emdpo_tokenizer *tok, const emdpo_data *d, const emdpo_lm_mmra_opts *o, double *L,
                         double *se, int64_t *n_draws) {
    emdpo_lm_mmra_opts r;
    int rc = resolve_opts(pol, K, M, ref, o, &r);
    if (rc) return rc;
    if (r.samples < 1 || r.max_tokens < 1 || !(r.temperature > 0) || !isfinite(r.temperature) ||
        r.max_prompts < 0 || d->n_dec < 1)
        return EMDPO_ERR_INVALID_ARG;
    /* A response needs one token of room, plus EOS. */
    if (r.max_length < 3) return EMDPO_ERR_INVALID_ARG;
    for (int b = 0; b < M; b++)
        if (emdpo_llama_context(&pol[b]->config) < r.max_length) return EMDPO_ERR_LIMIT;
    if (emdpo_llama_context(&ref->config) < r.max_length) return EMDPO_ERR_LIMIT;
    int64_t n_pr = r.max_prompts && r.max_prompts < d->n_dec ? r.max_prompts : d->n_dec;
    if (n_pr > INT32_MAX / r.samples) return EMDPO_ERR_LIMIT;
    int N = (int)n_pr * r.samples, max_T = r.max_length - 1;
    int P = r.max_prompt_length < r.max_length - 2 ? r.max_prompt_length : r.max_length - 2;
    prompts pr = {0};
    emdpo_sampler *smp = NULL;
    size_t nout = (size_t)N * (size_t)r.max_tokens;
    const int **pp = emdpo_malloc((size_t)N * sizeof *pp);
    int *pl = emdpo_malloc((size_t)N * sizeof *pl), *out = emdpo_malloc(nout * sizeof *out);
    int *n_out = emdpo_malloc((size_t)N * sizeof *n_out), *stop = emdpo_malloc((size_t)N * sizeof *stop);
    double *lref = emdpo_malloc((size_t)N * sizeof *lref), *la = emdpo_malloc((size_t)N * sizeof *la);
    if (!pp || !pl || !out || !n_out || !stop || !lref || !la) rc = EMDPO_ERR_NOMEM;
    if (!rc) rc = prompts_make(d, tok, n_pr, P, &pr);
    if (!rc) rc = emdpo_sampler_create(ref->config.vocab_size, r.temperature, 0, 1.0f, &smp);
    if (!rc) emdpo_tokenizer_stop_sampler(tok, smp);
    for (int i = 0; !rc && i < N; i++) {
        pp[i] = pr.ids[i / r.samples];
        pl[i] = pr.len[i / r.samples];
    }
    for (int b = 0; !rc && b < M; b++) {
        /* Each policy draws from its own seed, so adding a column (a pooled
         * policy) leaves the others' samples as they were. */
        emdpo_rng g;
        emdpo_rng_seed(&g, r.seed, (uint64_t)b);
        emdpo_lm_set *set = NULL;
        rc = emdpo_generate_shared(pol[b], smp, emdpo_rng_u64(&g), pp, pl, N, r.max_tokens, max_T, out, n_out, stop);
        if (!rc) rc = emdpo_lm_set_create(r.max_length, P, &set);
        for (int i = 0; !rc && i < N; i++)
            rc = emdpo_lm_set_add_tokens(set, pp[i], pl[i], out + (size_t)i * r.max_tokens, n_out[i],
                                         stop[i] == EMDPO_GEN_EOS ? emdpo_tokenizer_eos(tok) : -1);
        if (!rc) rc = emdpo_lm_score(ref, set, r.score_batch, lref);
        for (int a = 0; !rc && a < K; a++) {
            if (!(rc = emdpo_lm_score(pol[a], set, r.score_batch, la))) {
                for (int i = 0; i < N; i++) la[i] = r.beta * (la[i] - lref[i]);
                emdpo_mean_se(la, N, &L[(size_t)a * M + b], &se[(size_t)a * M + b]);
                if (!isfinite(L[(size_t)a * M + b])) rc = EMDPO_ERR_NUMERIC;
            }
        }
        emdpo_lm_set_free(set);
    }
    if (!rc && n_draws) *n_draws = N;
    emdpo_sampler_free(smp);
    prompts_free(&pr);
    emdpo_free(pp, (size_t)N * sizeof *pp);
    emdpo_free(pl, (size_t)N * sizeof *pl);
    emdpo_free(out, nout * sizeof *out);
    emdpo_free(n_out, (size_t)N * sizeof *n_out);
    emdpo_free(stop, (size_t)N * sizeof *stop);
    emdpo_free(lref, (size_t)N * sizeof *lref);
    emdpo_free(la, (size_t)N * sizeof *la);
    return rc;
}

void emdpo_lm_mmra_mixture_se(int K, int ld, const double *se, const double *w, double *out) {
    for (int z = 0; z < K; z++) {
        double v = 0.0;
        for (int b = 0; b < K; b++) {
            double c = b == z ? 1.0 - w[b] : w[b], s = se[(size_t)z * ld + b];
            if (c != 0.0) v += c * c * s * s;
        }
        out[z] = sqrt(v);
    }
}
