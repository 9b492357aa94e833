#include "lm/engine/lm_sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/dist.h"
#include "base/threads.h"
#include "emdpo.h"
#include "lm/engine/llama_ops.h"
#include "lm/engine/tokens.h"

typedef struct emdpo_sample_cand {
    double p;
    int id;
} emdpo_sample_cand;

int emdpo_sampler_create(int vocab_size, float temperature, int top_k, float top_p, emdpo_sampler **out) {
    *out = NULL;
    if (vocab_size < 1 || !(temperature >= 0.0f) || !isfinite(temperature) || top_k < 0 || top_k > vocab_size ||
        !(top_p > 0.0f && top_p <= 1.0f))
        return EMDPO_ERR_INVALID_ARG;
    emdpo_sampler *s = emdpo_calloc(1, sizeof *s);
    if (!s) return EMDPO_ERR_NOMEM;
    s->cand = emdpo_malloc((size_t)vocab_size * sizeof *s->cand);
    if (!s->cand) {
        emdpo_free(s, sizeof *s);
        return EMDPO_ERR_NOMEM;
    }
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->top_k = top_k;
    s->top_p = top_p;
    static const int llama2c_stop[] = {EMDPO_TOK_EOS, EMDPO_TOK_BOS}; /* stories models end a text with BOS */
    emdpo_sampler_set_stop(s, llama2c_stop, 2);
    *out = s;
    return EMDPO_OK;
}

void emdpo_sampler_free(emdpo_sampler *s) {
    if (!s) return;
    emdpo_free(s->cand, (size_t)s->vocab_size * sizeof *s->cand);
    emdpo_free(s, sizeof *s);
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Decreasing probability, then increasing id: a total order, so the kept
 * set and the draw do not depend on qsort's algorithm. */
static int cand_cmp(const void *pa, const void *pb) {
    const emdpo_sample_cand *a = pa, *b = pb;
    if (a->p != b->p) return a->p > b->p ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Fills s->cand[0..n) with the kept ids and their unnormalized weights;
 * returns n and their total in *mass. Not for greedy. */
static int prepare(emdpo_sampler *s, const float *logits, double *mass) {
    int V = s->vocab_size;
    emdpo_sample_cand *c = s->cand;
    float mx = logits[argmax(logits, V)];
    double inv_t = 1.0 / s->temperature, z = 0.0;
    for (int i = 0; i < V; i++) {
        c[i].p = exp((double)(logits[i] - mx) * inv_t);
        c[i].id = i;
        z += c[i].p;
    }
    int n = V;
    if (s->top_k == 0 && s->top_p >= 1.0f) {
        *mass = z;
        return n;
    }
    if (s->top_k == 0) {
        /* Only top-p: ids below (1 - top_p) / (V - 1) of the mass can never
         * reach the nucleus (together they weigh less than 1 - top_p), so
         * drop them before sorting (llama2.c's trick). The margin absorbs
         * rounding; the argmax always stays. */
        double cut = V > 1 ? 0.999 * (1.0 - s->top_p) / (V - 1) * z : 0.0;
        n = 0;
        for (int i = 0; i < V; i++)
            if (c[i].p >= cut) c[n++] = c[i];
    }
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
    if (s->top_k > 0 && s->top_k < n) n = s->top_k;
    double m = 0.0;
    for (int i = 0; i < n; i++) m += c[i].p;
    if (s->top_p < 1.0f) {
        double want = (double)s->top_p * m, cum = 0.0;
        int j = 0;
        while (j < n - 1 && (cum += c[j].p) < want) j++;
        n = j + 1;
        m = 0.0;
        for (int i = 0; i < n; i++) m += c[i].p;
    }
    *mass = m;
    return n;
}

int emdpo_sample(emdpo_sampler *s, const float *logits, emdpo_rng *rng) {
    if (s->temperature == 0.0f) return argmax(logits, s->vocab_size);
    double mass;
    int n = prepare(s, logits, &mass);
    double u = emdpo_rng_uniform(rng) * mass, cum = 0.0;
    for (int i = 0; i < n - 1; i++) {
        cum += s->cand[i].p;
        if (u < cum) return s->cand[i].id;
    }
    return s->cand[n - 1].id;
}

void emdpo_sample_probs(emdpo_sampler *s, const float *logits, double *probs) {
    memset(probs, 0, (size_t)s->vocab_size * sizeof *probs);
    if (s->temperature == 0.0f) {
        probs[argmax(logits, s->vocab_size)] = 1.0;
        return;
    }
    double mass;
    int n = prepare(s, logits, &mass);
    for (int i = 0; i < n; i++) probs[s->cand[i].id] = s->cand[i].p / mass;
}

void emdpo_sampler_set_stop(emdpo_sampler *s, const int *ids, size_t n) {
    s->n_stop = n < EMDPO_MAX_STOP ? (int)n : EMDPO_MAX_STOP;
    for (int i = 0; i < s->n_stop; i++) s->stop[i] = ids[i];
}

static int is_stop(const emdpo_sampler *s, int tok) {
    for (int i = 0; i < s->n_stop; i++)
        if (tok == s->stop[i]) return 1;
    return 0;
}

static int prompt_ok(const int *prompt, int n_prompt, int max_T, int V) {
    if (n_prompt < 1 || n_prompt > max_T) return 0;
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V) return 0;
    return 1;
}

int emdpo_generate(const emdpo_llama *m, emdpo_llama_kv *kv, emdpo_sampler *s, emdpo_rng *rng, const int *prompt,
                   int n_prompt, int max_new, int *out, int *n_out, int *stop) {
    *n_out = 0;
    if (s->vocab_size != m->config.vocab_size || max_new < 0 ||
        !prompt_ok(prompt, n_prompt, kv->max_T, m->config.vocab_size))
        return EMDPO_ERR_INVALID_ARG;
    int why = EMDPO_GEN_MAX, tok = prompt[0], n = 0;
    for (int pos = 0; n < max_new; pos++) {
        const float *logits;
        int rc = emdpo_llama_step(m, kv, tok, pos, &logits);
        if (rc) return rc;
        if (pos + 1 < n_prompt) {
            tok = prompt[pos + 1];
            continue;
        }
        if (pos + 1 >= kv->max_T) {
            why = EMDPO_GEN_CONTEXT;
            break;
        }
        tok = emdpo_sample(s, logits, rng);
        if (is_stop(s, tok)) {
            why = EMDPO_GEN_EOS;
            break;
        }
        out[n++] = tok;
    }
    *n_out = n;
    if (stop) *stop = why;
    return EMDPO_OK;
}

/* State of a batched decode: per-sequence caches and row-major buffers
 * whose row j belongs to the j-th live sequence. */
typedef struct batch {
    int n, max_T, nthr;
    size_t kv_stride; /* floats per sequence in kc, vc: L * max_T * kvd */
    float *kc, *vc;   /* (n, L, max_T, kvd) keys after RoPE, values */
    float *x, *xb, *xb2, *q, *kt, *vt, *hb, *hb2, *logits, *rstd, *cosv, *sinv, *att;
    float *wrows; /* (emdpo_llama_decode_scratch) */
    float *buf;
    size_t buf_n;
} batch;

static int batch_alloc(batch *bt, const emdpo_llama_config *c, int n, int max_T) {
    size_t C = (size_t)c->dim, H = (size_t)c->hidden_dim, V = (size_t)c->vocab_size;
    size_t hs = (size_t)emdpo_llama_head_size(c), qd = (size_t)c->n_heads * hs, kvd = (size_t)c->n_kv_heads * hs;
    size_t rows = (size_t)n, T = (size_t)max_T;
    size_t nthr = (size_t)emdpo_max_threads();
    bt->n = n;
    bt->max_T = max_T;
    bt->nthr = (int)nthr;
    bt->kv_stride = (size_t)c->n_layers * T * kvd; /* the model's own sizes are checked */
    size_t per_row = 2 * C + 2 * qd + 2 * kvd + 2 * H + V + (size_t)c->n_heads + hs;
    size_t fixed = nthr * T + emdpo_llama_decode_scratch(c);
    if (bt->kv_stride > (SIZE_MAX / sizeof(float) / 4 - per_row - fixed) / rows) return EMDPO_ERR_LIMIT;
    bt->buf_n = 2 * rows * bt->kv_stride + rows * per_row + fixed;
    bt->buf = emdpo_malloc(bt->buf_n * sizeof(float));
    if (!bt->buf) return EMDPO_ERR_NOMEM;
    float *p = bt->buf;
#define TAKE(f, count) (bt->f = p, p += (count))
    TAKE(kc, rows * bt->kv_stride);
    TAKE(vc, rows * bt->kv_stride);
    TAKE(x, rows * C);
    TAKE(xb, rows * C);
    TAKE(xb2, rows * qd);
    TAKE(q, rows * qd);
    TAKE(kt, rows * kvd);
    TAKE(vt, rows * kvd);
    TAKE(hb, rows * H);
    TAKE(hb2, rows * H);
    TAKE(logits, rows * V);
    TAKE(rstd, rows * (size_t)c->n_heads);
    TAKE(cosv, rows * (hs / 2));
    TAKE(sinv, rows * (hs / 2));
    TAKE(att, nthr * T);
    TAKE(wrows, emdpo_llama_decode_scratch(c));
#undef TAKE
    return EMDPO_OK;
}

/* One decoding step for na live sequences: sequence seq[j] takes token
 * tok[j] at position pos[j]; leaves next-token logits in bt->logits row j. */
static void batch_step(const emdpo_llama *m, batch *bt, const int *seq, const int *tok, const int *pos, int na) {
    const emdpo_llama_config *c = &m->config;
    const emdpo_llama_params *p = &m->params;
    int C = c->dim, H = c->hidden_dim, NH = c->n_heads, NKV = c->n_kv_heads;
    int hs = emdpo_llama_head_size(c), h2 = hs / 2, qd = NH * hs, kvd = NKV * hs, group = NH / NKV, max_T = bt->max_T;
    float scale = 1.0f / sqrtf((float)hs);
    for (int j = 0; j < na; j++) {
        emdpo_llama_decode_embed(m, tok[j], bt->x + (size_t)j * C);
        emdpo_rope_table(bt->cosv + (size_t)j * h2, bt->sinv + (size_t)j * h2, pos[j], 1, hs, c);
    }
    size_t nC = (size_t)na * C;
    int maxpos = 0;
    for (int j = 0; j < na; j++) maxpos = pos[j] > maxpos ? pos[j] : maxpos;
    long jobs = (long)na * NH;
    for (int l = 0; l < c->n_layers; l++) {
        size_t lC = (size_t)l * C;
        size_t loff = (size_t)l * max_T * kvd;
        emdpo_rmsnorm_forward(bt->xb, bt->rstd, bt->x, p->rms_att + lC, (size_t)na, C, c->norm_eps);
        emdpo_llama_decode_qkv(m, l, bt->xb, bt->q, bt->kt, bt->vt, bt->cosv, bt->sinv, bt->rstd, na, bt->wrows);
        for (int j = 0; j < na; j++) {
            size_t off = (size_t)seq[j] * bt->kv_stride + loff + (size_t)pos[j] * kvd;
            memcpy(bt->kc + off, bt->kt + (size_t)j * kvd, (size_t)kvd * sizeof(float));
            memcpy(bt->vc + off, bt->vt + (size_t)j * kvd, (size_t)kvd * sizeof(float));
        }
#pragma omp parallel for schedule(static) if ((double)jobs * (maxpos + 1) * hs >= EMDPO_PAR_MIN_WORK)
        for (long jh = 0; jh < jobs; jh++) {
            int j = (int)(jh / NH), h = (int)(jh % NH), t = pos[j];
            float *a = bt->att + (size_t)emdpo_thread_num() * max_T;
            size_t base = (size_t)seq[j] * bt->kv_stride + loff + (size_t)(h / group) * hs;
            const float *kl = bt->kc + base, *vl = bt->vc + base, *qh = bt->q + (size_t)j * qd + (size_t)h * hs;
            float *o = bt->xb2 + (size_t)j * qd + (size_t)h * hs, mx = -INFINITY, z = 0.0f;
            for (int u = 0; u <= t; u++) {
                const float *ku = kl + (size_t)u * kvd;
                float sc = 0.0f;
                for (int i = 0; i < hs; i++) sc += qh[i] * ku[i];
                a[u] = sc * scale;
                if (a[u] > mx) mx = a[u];
            }
            for (int u = 0; u <= t; u++) z += a[u] = expf(a[u] - mx);
            memset(o, 0, (size_t)hs * sizeof(float));
            for (int u = 0; u <= t; u++) {
                const float *vu = vl + (size_t)u * kvd;
                float w = a[u] / z;
                for (int i = 0; i < hs; i++) o[i] += w * vu[i];
            }
        }
        emdpo_llama_decode_out(m, l, bt->xb2, bt->xb, na, bt->wrows);
        emdpo_residual_forward(bt->x, bt->x, bt->xb, nC);
        emdpo_rmsnorm_forward(bt->xb, bt->rstd, bt->x, p->rms_ffn + lC, (size_t)na, C, c->norm_eps);
        emdpo_llama_decode_matmul(m, l, EMDPO_PROJ_GATE, bt->xb, bt->hb, na, bt->wrows);
        emdpo_llama_decode_matmul(m, l, EMDPO_PROJ_UP, bt->xb, bt->hb2, na, bt->wrows);
        emdpo_swiglu_forward(bt->hb, bt->hb, bt->hb2, (size_t)na * H);
        emdpo_llama_decode_matmul(m, l, EMDPO_PROJ_DOWN, bt->hb, bt->xb, na, bt->wrows);
        emdpo_residual_forward(bt->x, bt->x, bt->xb, nC);
    }
    emdpo_rmsnorm_forward(bt->xb, bt->rstd, bt->x, p->rms_final, (size_t)na, C, c->norm_eps);
    emdpo_llama_decode_matmul(m, 0, EMDPO_N_PROJ, bt->xb, bt->logits, na, bt->wrows);
}

/* The arguments of emdpo_generate_batch for sequences [0, n); on success
 * each gets no tokens yet and EMDPO_GEN_MAX. */
static int batch_args(const emdpo_llama *m, const emdpo_sampler *s, const int *const *prompts,
                      const int *prompt_len, int n, int max_new, int max_T, int *n_out, int *stop) {
    const emdpo_llama_config *c = &m->config;
    int V = c->vocab_size;
    if (n < 1 || max_new < 0 || max_T < 1 || max_T > emdpo_llama_context(c) || s->vocab_size != V)
        return EMDPO_ERR_INVALID_ARG;
    for (int i = 0; i < n; i++) {
        if (!prompt_ok(prompts[i], prompt_len[i], max_T, V)) return EMDPO_ERR_INVALID_ARG;
        n_out[i] = 0;
        if (stop) stop[i] = EMDPO_GEN_MAX;
    }
    return EMDPO_OK;
}

/* emdpo_generate_batch's decoding, sequence i drawing from stream first + i
 * of seed; the arguments are checked. */
static int generate_streams(const emdpo_llama *m, const emdpo_sampler *s, uint64_t seed, uint64_t first,
                            const int *const *prompts, const int *prompt_len, int n, int max_new, int max_T, int *out,
                            int *n_out, int *stop) {
    const emdpo_llama_config *c = &m->config;
    int V = c->vocab_size;
    if (max_new == 0) return EMDPO_OK;
    /* The caller's sampler stays const: draws use a private copy's scratch. */
    emdpo_sampler *sp;
    int rc = emdpo_sampler_create(V, s->temperature, s->top_k, s->top_p, &sp);
    if (rc) return rc;
    emdpo_sampler_set_stop(sp, s->stop, (size_t)s->n_stop);
    batch bt;
    size_t ni = 5 * (size_t)n;
    int *ib = emdpo_malloc(ni * sizeof(int));
    emdpo_rng *rng = emdpo_malloc((size_t)n * sizeof *rng);
    if (!ib || !rng || (rc = batch_alloc(&bt, c, n, max_T))) {
        emdpo_free(ib, ni * sizeof(int));
        emdpo_free(rng, (size_t)n * sizeof *rng);
        emdpo_sampler_free(sp);
        return rc ? rc : EMDPO_ERR_NOMEM;
    }
    int *seq = ib, *tok = ib + n, *pos = ib + 2 * n, *nseq = ib + 3 * n, *ntok = ib + 4 * n;
    for (int i = 0; i < n; i++) {
        emdpo_rng_seed(&rng[i], seed, first + (uint64_t)i);
        seq[i] = i;
        tok[i] = prompts[i][0];
        pos[i] = 0;
    }
    int na = n;
    while (na > 0) {
        batch_step(m, &bt, seq, tok, pos, na);
        /* Advance each live sequence; survivors pack to the front in order. */
        int nn = 0;
        for (int j = 0; j < na; j++) {
            int i = seq[j], next = pos[j] + 1, t;
            if (next < prompt_len[i]) {
                t = prompts[i][next];
            } else {
                if (next >= max_T) {
                    if (stop) stop[i] = EMDPO_GEN_CONTEXT;
                    continue;
                }
                t = emdpo_sample(sp, bt.logits + (size_t)j * V, &rng[i]);
                if (is_stop(s, t)) {
                    if (stop) stop[i] = EMDPO_GEN_EOS;
                    continue;
                }
                out[(size_t)i * max_new + n_out[i]++] = t;
                if (n_out[i] == max_new) continue; /* stop[i] is already EMDPO_GEN_MAX */
            }
            nseq[nn] = i;
            ntok[nn] = t;
            pos[nn] = next;
            nn++;
        }
        memcpy(seq, nseq, (size_t)nn * sizeof(int));
        memcpy(tok, ntok, (size_t)nn * sizeof(int));
        na = nn;
    }
    emdpo_free(bt.buf, bt.buf_n * sizeof(float));
    emdpo_free(ib, ni * sizeof(int));
    emdpo_free(rng, (size_t)n * sizeof *rng);
    emdpo_sampler_free(sp);
    return EMDPO_OK;
}

int emdpo_generate_batch(const emdpo_llama *m, const emdpo_sampler *s, uint64_t seed, const int *const *prompts,
                         const int *prompt_len, int n, int max_new, int max_T, int *out, int *n_out, int *stop) {
    int rc = batch_args(m, s, prompts, prompt_len, n, max_new, max_T, n_out, stop);
    return rc ? rc : generate_streams(m, s, seed, 0, prompts, prompt_len, n, max_new, max_T, out, n_out, stop);
}

int emdpo_generate_shared(const emdpo_llama *m, const emdpo_sampler *s, uint64_t seed, const int *const *prompts,
                          const int *prompt_len, int n, int max_new, int max_T, int *out, int *n_out, int *stop) {
    /* Every process checks every prompt, so bad input fails on all alike. */
    int rc = batch_args(m, s, prompts, prompt_len, n, max_new, max_T, n_out, stop);
    if (rc) return rc;
    int64_t lo, hi;
    emdpo_dist_range(n, &lo, &hi);
    size_t per = (size_t)max_new;
    if (hi > lo &&
        (rc = generate_streams(m, s, seed, (uint64_t)lo, prompts + lo, prompt_len + lo, (int)(hi - lo), max_new, max_T,
                               out + (size_t)lo * per, n_out + lo, stop ? stop + lo : NULL)))
        return rc;
    if (per && (rc = emdpo_dist_allgather_range(out, n, per * sizeof *out))) return rc;
    if ((rc = emdpo_dist_allgather_range(n_out, n, sizeof *n_out))) return rc;
    return stop ? emdpo_dist_allgather_range(stop, n, sizeof *stop) : EMDPO_OK;
}

void emdpo_sample_opts_init(emdpo_sample_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->temperature = 1.0;
    o->top_k = 0;
    o->top_p = 1.0;
    o->max_tokens = 256;
    o->n = 1;
    o->seed = 1;
}

int emdpo_lm_generate(const emdpo_llama *m, const emdpo_sample_opts *o, const int *prompt, int n_prompt, int *out,
                      int *n_out, int *stop) {
    if (!m || !o || !prompt || !out || !n_out || o->n < 1 || o->max_tokens < 0 || n_prompt < 1 ||
        n_prompt > emdpo_llama_context(&m->config))
        return EMDPO_ERR_INVALID_ARG;
    /* The cache needs room for the prompt and the new tokens, no more. */
    int max_T = emdpo_llama_context(&m->config);
    if ((long long)n_prompt + o->max_tokens < max_T) max_T = n_prompt + o->max_tokens;
    emdpo_sampler *s = NULL;
    int rc = emdpo_sampler_create(m->config.vocab_size, (float)o->temperature, o->top_k, (float)o->top_p, &s);
    if (rc) return rc;
    if (o->stop_ids) emdpo_sampler_set_stop(s, o->stop_ids, o->n_stop);
    size_t n = (size_t)o->n;
    const int **prompts = emdpo_malloc(n * sizeof *prompts);
    int *plen = emdpo_malloc(n * sizeof *plen);
    if (!prompts || !plen) rc = EMDPO_ERR_NOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
        prompts[i] = prompt;
        plen[i] = n_prompt;
    }
    if (!rc) rc = emdpo_generate_batch(m, s, o->seed, prompts, plen, o->n, o->max_tokens, max_T, out, n_out, stop);
    emdpo_free(plen, n * sizeof *plen);
    emdpo_free((void *)prompts, n * sizeof *prompts);
    emdpo_sampler_free(s);
    return rc;
}
