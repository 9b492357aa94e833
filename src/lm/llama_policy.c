/* The Llama policy family; see llama_policy.h. */
#include "lm/llama_policy.h"

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/dist.h"
#include "base/file.h"
#include "base/rng.h"
#include "core/choice.h"
#include "core/em.h"
#include "lm/engine/llama_model.h"
#include "lm/io/lm_batch.h"
#include "lm/lm_train.h"

/* A tokenized dataset and its reference log-probabilities, shared by a
 * policy and its clones (reference-counted; the library is not called
 * concurrently on one policy, so a plain counter suffices). */
typedef struct lp_cache {
    int refs;
    uint64_t key;           /* fingerprint of the dataset */
    int64_t n_annot, n_dec, n_items;
    emdpo_lm_set *set;      /* sequence i = item i */
    double *ref;            /* (n_seq) reference log-probabilities */
    int64_t *uniq;          /* (n_uniq) one sequence per distinct token sequence, by length */
    int64_t *map;           /* (n_seq) each sequence's entry in uniq */
    int64_t n_uniq;
    int64_t ref_passes;     /* reference passes by this cache's lineage */
} lp_cache;

typedef struct llama_policy {
    emdpo_policy base;
    emdpo_lm_mstep_opts opts;
    const emdpo_llama *sft;
    const emdpo_tokenizer *tok;
    /* Each type: a full copy of the SFT model, or with opts.lora.r > 0 an
     * adapter on it (the other pointer NULL). */
    emdpo_llama *models[EMDPO_MAX_K];
    emdpo_lora *adapters[EMDPO_MAX_K];
    lp_cache *cache;
    int64_t msteps;         /* M-steps done: part of every trainer's seed */
    int64_t forwards;
    emdpo_llama_policy_hooks hooks;
    int skip;               /* the next M-step's types already trained before a resume */
} llama_policy;

static const emdpo_policy_ops llama_ops;

static llama_policy *of(const emdpo_policy *pol) {
    return pol && pol->ops == &llama_ops ? (llama_policy *)pol : NULL;
}

void emdpo_lm_mstep_opts_init(emdpo_lm_mstep_opts *o) {
    memset(o, 0, sizeof *o);
    emdpo_train_config dpo;
    emdpo_train_config_init(&dpo, EMDPO_TRAIN_DPO);
    o->beta = dpo.loss.beta;
    o->optim = dpo.optim;
    o->batch = dpo.batch;
    o->accum = dpo.accum;
    o->epochs = 1.0;
    o->weight_norm = EMDPO_WEIGHT_NORM_MEAN;
    o->score_batch = 16;
    o->seed = 1;
    emdpo_lora_config_init(&o->lora);
    o->lora.r = 0;
}

const char *emdpo_weight_norm_name(int norm) {
    switch (norm) {
    case EMDPO_WEIGHT_NORM_MEAN: return "mean";
    case EMDPO_WEIGHT_NORM_NONE: return "none";
    default: return NULL;
    }
}

void emdpo_lm_fit_opts_init(emdpo_lm_fit_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->k = 2;
    emdpo_em_opts_init(&o->em);
    o->em.max_iter = 5; /* the paper's */
    o->em.tol = 0.0;
    o->em.patience = 2; /* stochastic M-steps can fall and recover (docs/RESULTS.md §6) */
    emdpo_lm_mstep_opts_init(&o->mstep);
}

/* ---- the dataset cache ----------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* A string with its terminator, or a marker byte distinct from any
 * string's end for NULL, so ("a", NULL) and (NULL, "a") differ. */
static uint64_t fnv_str(uint64_t h, const char *s) {
    static const unsigned char none = 0xff;
    return s ? fnv(h, s, strlen(s) + 1) : fnv(h, &none, 1);
}

static uint64_t data_key(const emdpo_data *d) {
    uint64_t h = 14695981039346656037ull;
    int64_t sizes[3] = {d->n_annot, d->n_dec, d->n_items};
    h = fnv(h, sizes, sizeof sizes);
    h = fnv(h, d->annot_dec, ((size_t)d->n_annot + 1) * sizeof *d->annot_dec);
    h = fnv(h, d->dec_item, ((size_t)d->n_dec + 1) * sizeof *d->dec_item);
    h = fnv(h, d->dec_stages, (size_t)d->n_dec * sizeof *d->dec_stages);
    for (int64_t j = 0; j < d->n_dec; j++) h = fnv_str(h, d->dec_prompt ? d->dec_prompt[j] : NULL);
    for (int64_t i = 0; i < d->n_items; i++) h = fnv_str(h, d->item_text[i]);
    return h;
}

static void cache_release(lp_cache *c) {
    if (!c || --c->refs > 0) return;
    size_t n_seq = c->set ? (size_t)c->set->n_seq : 0;
    emdpo_free(c->ref, n_seq * sizeof *c->ref);
    emdpo_free(c->map, n_seq * sizeof *c->map);
    emdpo_free(c->uniq, (size_t)c->n_uniq * sizeof *c->uniq);
    emdpo_lm_set_free(c->set);
    emdpo_free(c, sizeof *c);
}

/* The distinct sequences of c->set, by length, and each sequence's entry
 * (lm_batch.h). */
static int dedupe(lp_cache *c) {
    size_t n = (size_t)c->set->n_seq;
    if (!(c->map = emdpo_malloc(n * sizeof *c->map))) return EMDPO_ERR_NOMEM;
    return emdpo_lm_distinct(c->set, &c->uniq, &c->n_uniq, c->map);
}

/* Buffers for scoring the distinct sequences, score_batch at a time. */
typedef struct scorer {
    emdpo_llama_acts *acts;
    int B, T;
    int *tokens, *ib; /* (B, T); lens, start, end (3B) */
    int64_t *seqs;    /* (B) */
    double *ulp;      /* (n_uniq) */
    int64_t n_uniq;
} scorer;

static void scorer_free(scorer *w) {
    size_t B = (size_t)w->B;
    emdpo_llama_acts_free(w->acts);
    emdpo_free(w->tokens, B * (size_t)w->T * sizeof *w->tokens);
    emdpo_free(w->ib, 3 * B * sizeof *w->ib);
    emdpo_free(w->seqs, B * sizeof *w->seqs);
    emdpo_free(w->ulp, (size_t)w->n_uniq * sizeof *w->ulp);
    memset(w, 0, sizeof *w);
}

static int scorer_alloc(scorer *w, const emdpo_llama_config *cfg, int lora_r, const lp_cache *c, int batch) {
    memset(w, 0, sizeof *w);
    w->B = (int64_t)batch < c->n_uniq ? batch : (int)c->n_uniq;
    w->T = c->set->longest;
    w->n_uniq = c->n_uniq;
    size_t B = (size_t)w->B;
    w->tokens = emdpo_malloc(B * (size_t)w->T * sizeof *w->tokens);
    w->ib = emdpo_malloc(3 * B * sizeof *w->ib);
    w->seqs = emdpo_malloc(B * sizeof *w->seqs);
    w->ulp = emdpo_malloc((size_t)w->n_uniq * sizeof *w->ulp);
    int rc = w->tokens && w->ib && w->seqs && w->ulp ? EMDPO_OK : EMDPO_ERR_NOMEM;
    if (!rc) rc = emdpo_llama_acts_create_lora(cfg, lora_r, w->B, w->T, 0, &w->acts);
    if (rc) scorer_free(w);
    return rc;
}

/* Response log-probability of every sequence of c->set under m with
 * adapter lo (or NULL) into out (n_seq), running each distinct sequence
 * once; adds the forwards. Under MPI each process runs its share of the
 * batches (those one process runs) and the results are gathered. */
static int score(const emdpo_llama *m, const emdpo_lora *lo, const lp_cache *c, scorer *w, double *out,
                 int64_t *forwards) {
    int *lens = w->ib, *start = w->ib + w->B, *end = w->ib + 2 * w->B, rc;
    int64_t b0, b1;
    emdpo_dist_range(w->B ? (c->n_uniq + w->B - 1) / w->B : 0, &b0, &b1);
    for (int64_t u0 = b0 * w->B; u0 < c->n_uniq && u0 < b1 * w->B; u0 += w->B) {
        int B = c->n_uniq - u0 < w->B ? (int)(c->n_uniq - u0) : w->B, T;
        memcpy(w->seqs, c->uniq + u0, (size_t)B * sizeof *w->seqs);
        emdpo_lm_pack(c->set, w->seqs, B, w->tokens, lens, start, end, &T);
        if ((rc = emdpo_llama_forward_lora(m, lo, w->acts, w->tokens, lens, B, T))) return rc;
        ++*forwards;
        if ((rc = emdpo_llama_span_logp(w->acts, start, end, w->ulp + u0))) return rc;
    }
    if (w->B && (rc = emdpo_dist_allgather_runs(w->ulp, c->n_uniq, w->B))) return rc;
    for (int64_t i = 0; i < c->set->n_seq; i++) out[i] = w->ulp[c->map[i]];
    return EMDPO_OK;
}

/* Every sequence fits the model: LIMIT otherwise. */
static int set_fits(const emdpo_llama *m, const emdpo_lm_set *s) {
    if (s->longest > emdpo_llama_context(&m->config)) return EMDPO_ERR_LIMIT;
    for (int64_t i = 0; i < s->n_tok; i++)
        if (s->tok[i] < 0 || s->tok[i] >= m->config.vocab_size) return EMDPO_ERR_LIMIT;
    return EMDPO_OK;
}

/* Tokenizes d and scores the reference once. */
static int cache_build(const llama_policy *p, const emdpo_data *d, uint64_t key, lp_cache **out) {
    *out = NULL;
    lp_cache *c = emdpo_calloc(1, sizeof *c);
    if (!c) return EMDPO_ERR_NOMEM;
    c->refs = 1;
    c->key = key;
    c->n_annot = d->n_annot;
    c->n_dec = d->n_dec;
    c->n_items = d->n_items;
    scorer w = {0};
    int64_t fw = 0;
    int rc = emdpo_lm_set_from_data(d, p->tok, p->opts.max_length, p->opts.max_prompt_length, &c->set);
    if (!rc) rc = set_fits(p->sft, c->set);
    if (!rc && !(c->ref = emdpo_malloc((size_t)c->set->n_seq * sizeof *c->ref))) rc = EMDPO_ERR_NOMEM;
    if (!rc) rc = dedupe(c);
    if (!rc) rc = scorer_alloc(&w, &p->sft->config, 0, c, p->opts.score_batch);
    if (!rc) rc = score(p->sft, NULL, c, &w, c->ref, &fw);
    scorer_free(&w);
    if (rc) {
        cache_release(c);
        return rc;
    }
    c->ref_passes = 1;
    *out = c;
    return EMDPO_OK;
}

/* Makes p's cache the one for d, building it when d is not the cached
 * dataset. */
static int cache_for(llama_policy *p, const emdpo_data *d) {
    if (!emdpo_data_has_text(d)) return EMDPO_ERR_UNSUPPORTED;
    uint64_t key = data_key(d);
    lp_cache *c = p->cache;
    if (c && c->key == key && c->n_annot == d->n_annot && c->n_dec == d->n_dec && c->n_items == d->n_items)
        return EMDPO_OK;
    int rc = cache_build(p, d, key, &c);
    if (rc) return rc;
    if (p->cache) c->ref_passes += p->cache->ref_passes;
    cache_release(p->cache);
    p->cache = c;
    return EMDPO_OK;
}

/* ---- decision log-probabilities ------------------------------------------- */

/* Scratch of one decision_logp or mstep call. */
typedef struct scratch {
    scorer sc;
    double *seq_lp, *u; /* (n_seq), (most_items) */
    size_t n_seq, n_u;
} scratch;

static void scratch_free(scratch *w) {
    scorer_free(&w->sc);
    emdpo_free(w->seq_lp, w->n_seq * sizeof(double));
    emdpo_free(w->u, w->n_u * sizeof(double));
    memset(w, 0, sizeof *w);
}

static int scratch_alloc(scratch *w, const llama_policy *p) {
    memset(w, 0, sizeof *w);
    const lp_cache *c = p->cache;
    w->n_seq = (size_t)c->set->n_seq;
    w->n_u = (size_t)c->set->most_items;
    w->seq_lp = emdpo_malloc(w->n_seq * sizeof(double));
    w->u = emdpo_malloc(w->n_u * sizeof(double));
    int rc = w->seq_lp && w->u ? EMDPO_OK : EMDPO_ERR_NOMEM;
    if (!rc) rc = scorer_alloc(&w->sc, &p->sft->config, p->opts.lora.r, c, p->opts.score_batch);
    if (rc) scratch_free(w);
    return rc;
}

/* Type k's model: its own, or the shared SFT model under its adapter. */
static const emdpo_llama *type_model(const llama_policy *p, int k) { return p->adapters[k] ? p->sft : p->models[k]; }

/* log P_k of every decision j under type k's model into out[j * stride].
 * With adapters each type runs its own forwards: an adapter on every
 * layer leaves no computation shared between types but the reference's,
 * which the cache holds. */
static int type_logp(llama_policy *p, int k, scratch *w, double *out, int stride) {
    const lp_cache *c = p->cache;
    const emdpo_lm_set *s = c->set;
    int rc = score(type_model(p, k), p->adapters[k], c, &w->sc, w->seq_lp, &p->forwards);
    if (rc) return rc;
    double beta = p->opts.beta;
    for (int64_t j = 0; j < s->n_group; j++) {
        int64_t i0 = s->group_off[j];
        int n = (int)(s->group_off[j + 1] - i0);
        for (int q = 0; q < n; q++) w->u[q] = beta * (w->seq_lp[i0 + q] - c->ref[i0 + q]);
        out[j * stride] = emdpo_choice_logp(w->u, n, s->group_stages[j]);
    }
    return EMDPO_OK;
}

static int llama_decision_logp(emdpo_policy *pol, const emdpo_data *d, double *logp) {
    llama_policy *p = of(pol);
    int rc = cache_for(p, d);
    if (rc) return rc;
    scratch w;
    if ((rc = scratch_alloc(&w, p))) return rc;
    for (int k = 0; k < pol->K && !rc; k++) rc = type_logp(p, k, &w, logp + k, pol->K);
    scratch_free(&w);
    return rc;
}

/* ---- the M-step --------------------------------------------------------------- */

static int64_t mstep_steps(const llama_policy *p, int64_t n_dec) {
    const emdpo_lm_mstep_opts *o = &p->opts;
    if (o->steps > 0) return o->steps;
    int64_t E = (int64_t)o->batch * o->accum, steps = (int64_t)ceil(o->epochs * (double)n_dec / (double)E);
    return steps > 0 ? steps : 1;
}

/* Type k's adapter as created: PEFT's initialisation from the seed and k. */
static void adapter_init(const llama_policy *p, int k) {
    emdpo_rng r;
    emdpo_rng_seed(&r, p->opts.seed, (uint64_t)EMDPO_MAX_K + (uint64_t)k);
    emdpo_lora_init(p->adapters[k], emdpo_rng_u64(&r));
}

/* Weighted DPO of type k on per-decision weights wd (n_dec, not all 0). */
static int train_type(llama_policy *p, int k, const double *wd, emdpo_mstep_info *info) {
    const emdpo_lm_mstep_opts *o = &p->opts;
    emdpo_llama *m = p->models[k];
    if (o->restart && m) memcpy(m->param_buf, p->sft->param_buf, m->num_params * sizeof(float));
    if (o->restart && !m) adapter_init(p, k);
    emdpo_train_config tc;
    memset(&tc, 0, sizeof tc);
    tc.mode = EMDPO_TRAIN_DPO;
    tc.loss.kind = EMDPO_LOSS_DPO;
    tc.loss.beta = o->beta;
    tc.loss.rpo_alpha = o->rpo_alpha;
    tc.optim = o->optim;
    tc.batch = o->batch;
    tc.accum = o->accum;
    tc.grad_checkpoint = o->grad_checkpoint;
    emdpo_rng r;
    emdpo_rng_seed(&r, o->seed, (uint64_t)p->msteps * EMDPO_MAX_K + (uint64_t)k);
    tc.seed = emdpo_rng_u64(&r);
    emdpo_trainer *t = NULL;
    int rc = emdpo_trainer_create_lora(type_model(p, k), p->adapters[k], p->cache->set, wd, &tc, &t);
    if (!rc) rc = emdpo_trainer_set_reference_logp(t, p->cache->ref);
    int64_t steps = mstep_steps(p, p->cache->n_dec);
    for (int64_t s = 0; s < steps && !rc; s++) {
        emdpo_train_metrics met;
        double t0 = emdpo_now();
        if (!(rc = emdpo_trainer_step(t, &met)) && p->hooks.step)
            p->hooks.step(p->hooks.ud, p->msteps, k, &met, emdpo_now() - t0);
    }
    if (t) {
        p->forwards += emdpo_trainer_forwards(t);
        info->iterations += (int)emdpo_trainer_steps_done(t);
    }
    emdpo_trainer_free(t);
    return rc;
}

static int llama_mstep(emdpo_policy *pol, const emdpo_data *d, const double *w, const unsigned char *active,
                       double *annot_logp, emdpo_mstep_info *info) {
    llama_policy *p = of(pol);
    int K = pol->K;
    emdpo_mstep_info scratch_info;
    if (!info) info = &scratch_info;
    memset(info, 0, sizeof *info);
    for (int64_t q = 0; q < d->n_annot * K; q++)
        if (!(w[q] >= 0) || !isfinite(w[q])) return EMDPO_ERR_INVALID_ARG;
    int rc = cache_for(p, d);
    if (rc) return rc;
    size_t n_dec = (size_t)d->n_dec;
    double *wd = emdpo_malloc(2 * n_dec * sizeof *wd), *lp = wd + n_dec; /* weights; one type's log P */
    if (!wd) return EMDPO_ERR_NOMEM;
    double objective = 0.0;
    int skip = p->skip;
    p->skip = 0;
    for (int k = skip; k < K && !rc; k++) {
        if (!active[k]) continue;
        double sum = 0.0;
        for (int64_t i = 0; i < d->n_annot; i++)
            for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) sum += wd[j] = w[i * K + k];
        if (sum > 0.0) {
            if (p->opts.weight_norm == EMDPO_WEIGHT_NORM_MEAN) {
                double scale = (double)n_dec / sum;
                for (size_t j = 0; j < n_dec; j++) wd[j] *= scale;
            }
            rc = train_type(p, k, wd, info);
        }
        if (rc || !annot_logp) continue;
        /* the scorer's buffers exist only while the trainer's do not, so
         * the M-step peaks at the larger of the two, not their sum */
        scratch sc;
        if ((rc = scratch_alloc(&sc, p))) break;
        rc = type_logp(p, k, &sc, lp, 1);
        scratch_free(&sc);
        if (rc) break;
        for (int64_t i = 0; i < d->n_annot; i++) {
            double sum_i = 0.0;
            for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) sum_i += lp[j];
            annot_logp[i * K + k] = sum_i;
            objective += w[i * K + k] * sum_i;
        }
        if (p->hooks.type_done) rc = p->hooks.type_done(p->hooks.ud, pol, k);
    }
    p->msteps++;
    info->objective = annot_logp ? objective : NAN;
    emdpo_free(wd, 2 * n_dec * sizeof *wd);
    return rc;
}

/* ---- lifetime -------------------------------------------------------------------- */

static void llama_free(emdpo_policy *pol) {
    llama_policy *p = of(pol);
    if (!p) return;
    for (int k = 0; k < pol->K; k++) {
        emdpo_llama_free(p->models[k]);
        emdpo_lora_free(p->adapters[k]);
    }
    cache_release(p->cache);
    emdpo_free(p, sizeof *p);
}

/* A policy whose K models are copies of src[k], or whose K adapters are
 * copies of src_lora[k] (fresh ones when it is NULL) on sft; the caller
 * attaches the cache. */
static int alloc_policy(int K, const emdpo_llama *const *src, emdpo_lora *const *src_lora,
                        const emdpo_lm_mstep_opts *o, const emdpo_llama *sft, const emdpo_tokenizer *tok,
                        llama_policy **out) {
    *out = NULL;
    llama_policy *p = emdpo_calloc(1, sizeof *p);
    if (!p) return EMDPO_ERR_NOMEM;
    p->base.ops = &llama_ops;
    p->base.K = K;
    p->opts = *o;
    p->sft = sft;
    p->tok = tok;
    for (int k = 0; k < K; k++) {
        int rc = o->lora.r ? emdpo_lora_create(&sft->config, &o->lora, &p->adapters[k])
                           : emdpo_llama_create(&src[k]->config, &p->models[k]);
        if (rc) {
            llama_free(&p->base);
            return rc;
        }
        if (o->lora.r && src_lora) {
            memcpy(p->adapters[k]->buf, src_lora[k]->buf, src_lora[k]->n * sizeof(float));
        } else if (o->lora.r) {
            adapter_init(p, k);
        } else {
            memcpy(p->models[k]->param_buf, src[k]->param_buf, src[k]->num_params * sizeof(float));
            p->models[k]->file_dtype = src[k]->file_dtype;
        }
    }
    *out = p;
    return EMDPO_OK;
}

static int llama_clone(const emdpo_policy *pol, emdpo_policy **out) {
    const llama_policy *p = of(pol);
    *out = NULL;
    llama_policy *c;
    int rc = alloc_policy(pol->K, (const emdpo_llama *const *)p->models, p->adapters, &p->opts, p->sft, p->tok, &c);
    if (rc) return rc;
    c->cache = p->cache;
    if (c->cache) c->cache->refs++;
    c->msteps = p->msteps;
    c->forwards = p->forwards;
    c->hooks = p->hooks;
    *out = &c->base;
    return EMDPO_OK;
}

static int llama_copy_type(emdpo_policy *dst, int k, const emdpo_policy *src, int src_k) {
    llama_policy *pd = of(dst);
    const llama_policy *ps = of(src);
    if (!pd || !ps || k < 0 || k >= dst->K || src_k < 0 || src_k >= src->K) return EMDPO_ERR_INVALID_ARG;
    const emdpo_lora *la = pd->adapters[k], *lb = ps->adapters[src_k];
    if (la || lb) {
        if (!la || !lb || la->n != lb->n || memcmp(&la->config, &lb->config, sizeof la->config)) return EMDPO_ERR_INVALID_ARG;
        memcpy(la->buf, lb->buf, la->n * sizeof(float));
        return EMDPO_OK;
    }
    if (pd->models[k]->num_params != ps->models[src_k]->num_params ||
        memcmp(&pd->models[k]->config, &ps->models[src_k]->config, sizeof(emdpo_llama_config)))
        return EMDPO_ERR_INVALID_ARG;
    memcpy(pd->models[k]->param_buf, ps->models[src_k]->param_buf, pd->models[k]->num_params * sizeof(float));
    return EMDPO_OK;
}

static int opts_ok(const emdpo_lm_mstep_opts *o) {
    return o->beta > 0 && isfinite(o->beta) && o->rpo_alpha >= 0 && isfinite(o->rpo_alpha) && o->batch >= 1 && o->accum >= 1 && o->steps >= 0 &&
           (o->steps > 0 || (o->epochs > 0 && isfinite(o->epochs))) && o->restart >= 0 && o->restart <= 1 &&
           (o->weight_norm == EMDPO_WEIGHT_NORM_MEAN || o->weight_norm == EMDPO_WEIGHT_NORM_NONE) && o->score_batch >= 1 &&
           o->max_length >= 0 && o->max_prompt_length >= 0 && (o->lora.r == 0 || emdpo_lora_config_check(&o->lora) == 0);
}

int emdpo_llama_policy_create(int K, const emdpo_llama *sft, const emdpo_tokenizer *tok,
                              const emdpo_lm_mstep_opts *o, const emdpo_data *d, emdpo_policy **out) {
    *out = NULL;
    if (K < 1 || K > EMDPO_MAX_K || !opts_ok(o)) return EMDPO_ERR_INVALID_ARG;
    emdpo_lm_mstep_opts opts = *o;
    int ctx = emdpo_llama_context(&sft->config);
    if (!opts.max_length) opts.max_length = ctx < 512 ? ctx : 512;
    if (!opts.max_prompt_length) opts.max_prompt_length = opts.max_length / 2;
    if (opts.max_length > ctx) return EMDPO_ERR_LIMIT;
    /* The optimizer's own checks (on a one-parameter probe), before any
     * model is copied. */
    emdpo_optim *probe;
    int rc = emdpo_optim_create(&opts.optim, 1, &probe);
    if (rc) return rc;
    emdpo_optim_free(probe);
    const emdpo_llama *src[EMDPO_MAX_K];
    for (int k = 0; k < K; k++) src[k] = sft;
    llama_policy *p;
    if ((rc = alloc_policy(K, src, NULL, &opts, sft, tok, &p))) return rc;
    if ((rc = cache_for(p, d))) {
        llama_free(&p->base);
        return rc;
    }
    *out = &p->base;
    return EMDPO_OK;
}

const emdpo_llama *emdpo_llama_policy_model(const emdpo_policy *pol, int k) {
    const llama_policy *p = of(pol);
    return p && k >= 0 && k < pol->K ? type_model(p, k) : NULL;
}

const emdpo_lora *emdpo_llama_policy_adapter(const emdpo_policy *pol, int k) {
    const llama_policy *p = of(pol);
    return p && k >= 0 && k < pol->K ? p->adapters[k] : NULL;
}

const emdpo_tokenizer *emdpo_llama_policy_tokenizer(const emdpo_policy *pol) {
    const llama_policy *p = of(pol);
    return p ? p->tok : NULL;
}

int64_t emdpo_llama_policy_steps(const emdpo_policy *pol) {
    const llama_policy *p = of(pol);
    return p ? mstep_steps(p, p->cache->n_dec) : 0;
}

void emdpo_llama_policy_counters(const emdpo_policy *pol, int64_t *ref_passes, int64_t *forwards) {
    const llama_policy *p = of(pol);
    if (ref_passes) *ref_passes = p && p->cache ? p->cache->ref_passes : 0;
    if (forwards) *forwards = p ? p->forwards : 0;
}

void emdpo_llama_policy_set_hooks(emdpo_policy *pol, const emdpo_llama_policy_hooks *hooks) {
    llama_policy *p = of(pol);
    if (p) p->hooks = *hooks;
}

float *emdpo_llama_policy_params(emdpo_policy *pol, int k, size_t *n) {
    llama_policy *p = of(pol);
    *n = 0;
    if (!p || k < 0 || k >= pol->K) return NULL;
    *n = p->adapters[k] ? p->adapters[k]->n : p->models[k]->num_params;
    return p->adapters[k] ? p->adapters[k]->buf : p->models[k]->param_buf;
}

void emdpo_llama_policy_progress(const emdpo_policy *pol, int64_t *msteps, int64_t *forwards) {
    const llama_policy *p = of(pol);
    *msteps = p ? p->msteps : 0;
    *forwards = p ? p->forwards : 0;
}

void emdpo_llama_policy_restore(emdpo_policy *pol, int64_t msteps, int64_t forwards, int skip) {
    llama_policy *p = of(pol);
    if (!p) return;
    p->msteps = msteps;
    p->forwards = forwards;
    p->skip = skip;
}

uint64_t emdpo_llama_policy_data_key(const emdpo_policy *pol) {
    const llama_policy *p = of(pol);
    return p && p->cache ? p->cache->key : 0;
}

static const emdpo_policy_ops llama_ops = {
    "llama", llama_decision_logp, llama_mstep, llama_clone, llama_copy_type, llama_free,
};
