/* SFT and DPO training loops and scoring; see lm_train.h. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/dist.h"
#include "base/file.h"
#include "base/lines.h"
#include "base/rng.h"
#include "lm/engine/llama_model.h"
#include "lm/lm_train.h"

struct emdpo_trainer {
    emdpo_train_config config;
    const emdpo_llama *model; /* written only through params, when there is no adapter */
    emdpo_lora *lora;       /* with an adapter: it alone is trained, on the frozen model; else NULL */
    float *params;          /* (n_params) what the optimizer updates: the adapter's or the model's */
    size_t n_params;
    const emdpo_lm_set *set;
    double *weights;        /* (n_group) */
    emdpo_optim *opt;
    emdpo_llama_acts *acts; /* max_B sequences of max_T tokens */
    int max_B, max_T;
    float *grad;            /* (n_params) */
    float *dlogp;           /* (max_B, max_T) */
    int *tokens;            /* (max_B, max_T) */
    int *lens, *start, *end; /* (max_B) */
    int64_t *seqs;          /* (max_B) */
    double *seq_lr, *seq_grad; /* (max_B) */
    int64_t *step_ex;       /* (batch * accum) examples of the current step */
    double *ref;            /* (n_seq) reference log-probs; NULL for SFT */
    int has_ref;
    int64_t *perm;          /* (n_group) */
    int64_t pos;            /* next index into perm */
    int64_t epoch;          /* reshuffles done */
    int64_t step;
    int64_t forwards;
    emdpo_rng rng;
    uint64_t data_hash;     /* identifies the data and weights in checkpoints */
    emdpo_dist_sums *sums;  /* under MPI: the gradient's sums, started as the step's last backward finishes
                               each piece (emdpo_llama_grad_pieces); NULL with one process */
};

static void count_piece(void *ud, float *g, size_t n) {
    (void)g;
    (void)n;
    ++*(size_t *)ud;
}

static void sum_piece(void *ud, float *g, size_t n) { emdpo_dist_sums_start(ud, g, n); }

static void shuffle(emdpo_trainer *t) {
    int64_t n = t->set->n_group;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)emdpo_rng_below(&t->rng, (uint64_t)i + 1), tmp = t->perm[i];
        t->perm[i] = t->perm[j];
        t->perm[j] = tmp;
    }
}

static int64_t next_example(emdpo_trainer *t) {
    if (t->pos == t->set->n_group) {
        shuffle(t);
        t->pos = 0;
        t->epoch++;
    }
    return t->perm[t->pos++];
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static uint64_t data_hash(const emdpo_lm_set *s, const double *w) {
    uint64_t h = 14695981039346656037ull;
    h = fnv(h, s->tok, (size_t)s->n_tok * sizeof *s->tok);
    h = fnv(h, s->seq_off, ((size_t)s->n_seq + 1) * sizeof *s->seq_off);
    h = fnv(h, s->seq_start, (size_t)s->n_seq * sizeof *s->seq_start);
    h = fnv(h, s->group_off, ((size_t)s->n_group + 1) * sizeof *s->group_off);
    h = fnv(h, s->group_stages, (size_t)s->n_group * sizeof *s->group_stages);
    return fnv(h, w, (size_t)s->n_group * sizeof *w);
}

/* Every sequence fits the model: LIMIT otherwise. */
static int set_fits(const emdpo_llama *m, const emdpo_lm_set *s) {
    if (s->longest > emdpo_llama_context(&m->config)) return EMDPO_ERR_LIMIT;
    for (int64_t i = 0; i < s->n_tok; i++)
        if (s->tok[i] < 0 || s->tok[i] >= m->config.vocab_size) return EMDPO_ERR_LIMIT;
    return EMDPO_OK;
}

void emdpo_trainer_free(emdpo_trainer *t) {
    if (!t) return;
    size_t mb = (size_t)t->max_B, bt = mb * (size_t)t->max_T, ng = (size_t)t->set->n_group;
    emdpo_free(t->weights, ng * sizeof *t->weights);
    emdpo_optim_free(t->opt);
    emdpo_llama_acts_free(t->acts);
    emdpo_dist_sums_free(t->sums);
    emdpo_free(t->grad, t->n_params * sizeof *t->grad);
    emdpo_free(t->dlogp, bt * sizeof *t->dlogp);
    emdpo_free(t->tokens, bt * sizeof *t->tokens);
    emdpo_free(t->lens, mb * sizeof *t->lens);
    emdpo_free(t->start, mb * sizeof *t->start);
    emdpo_free(t->end, mb * sizeof *t->end);
    emdpo_free(t->seqs, mb * sizeof *t->seqs);
    emdpo_free(t->seq_lr, mb * sizeof *t->seq_lr);
    emdpo_free(t->seq_grad, mb * sizeof *t->seq_grad);
    emdpo_free(t->step_ex, (size_t)t->config.batch * (size_t)t->config.accum * sizeof *t->step_ex);
    emdpo_free(t->ref, t->ref ? (size_t)t->set->n_seq * sizeof *t->ref : 0);
    emdpo_free(t->perm, ng * sizeof *t->perm);
    emdpo_free(t, sizeof *t);
}

void emdpo_train_config_init(emdpo_train_config *c, emdpo_train_mode mode) {
    if (!c) return;
    memset(c, 0, sizeof *c);
    c->mode = mode;
    c->loss.kind = EMDPO_LOSS_DPO;
    c->loss.beta = 0.1;
    if (mode == EMDPO_TRAIN_DPO) { /* the DPO reference implementation's optimizer */
        emdpo_optim_config_init(&c->optim, EMDPO_OPTIM_RMSPROP);
        c->optim.lr = 1e-6;
        c->optim.clip = 10.0;
    } else {
        emdpo_optim_config_init(&c->optim, EMDPO_OPTIM_ADAMW);
        c->optim.lr = 2e-5;
        c->optim.clip = 1.0;
    }
    c->batch = 4;
    c->accum = 1;
    c->seed = 1;
}

int emdpo_trainer_create(emdpo_llama *m, const emdpo_lm_set *set, const double *weights, const emdpo_train_config *c,
                         emdpo_trainer **out) {
    return emdpo_trainer_create_lora(m, NULL, set, weights, c, out);
}

int emdpo_trainer_create_lora(const emdpo_llama *m, emdpo_lora *lo, const emdpo_lm_set *set, const double *weights,
                              const emdpo_train_config *c, emdpo_trainer **out) {
    if (!out) return EMDPO_ERR_INVALID_ARG;
    *out = NULL;
    if (!m || !set || !c || (m->frozen && !lo)) return EMDPO_ERR_INVALID_ARG;
    if (lo && emdpo_lora_config_check(&lo->config)) return EMDPO_ERR_INVALID_ARG;
    if ((c->mode != EMDPO_TRAIN_SFT && c->mode != EMDPO_TRAIN_DPO) || c->batch < 1 || c->accum < 1 ||
        (unsigned)c->grad_checkpoint > 1 ||
        set->n_group < 1 || (int64_t)c->batch * c->accum > INT32_MAX / 2 ||
        (int64_t)c->batch * set->most_items > INT32_MAX / 2)
        return EMDPO_ERR_INVALID_ARG;
    if (c->mode == EMDPO_TRAIN_DPO) {
        const emdpo_loss_opts *lf = &c->loss;
        if (lf->kind < EMDPO_LOSS_DPO || lf->kind > EMDPO_LOSS_HINGE || !(lf->beta > 0) || !isfinite(lf->beta) ||
            !(lf->label_smoothing >= 0 && lf->label_smoothing < 0.5) || !(lf->rpo_alpha >= 0) ||
            !isfinite(lf->rpo_alpha))
            return EMDPO_ERR_INVALID_ARG;
        for (int64_t g = 0; g < set->n_group; g++)
            if (set->group_off[g + 1] - set->group_off[g] < 2 || set->group_stages[g] < 1) return EMDPO_ERR_INVALID_ARG;
    }
    if (c->mode == EMDPO_TRAIN_SFT && set->n_seq != set->n_group) return EMDPO_ERR_INVALID_ARG;
    for (int64_t g = 0; weights && g < set->n_group; g++)
        if (!(weights[g] >= 0) || !isfinite(weights[g])) return EMDPO_ERR_INVALID_ARG;
    int rc = set_fits(m, set);
    if (rc) return rc;
    emdpo_trainer *t = emdpo_calloc(1, sizeof *t);
    if (!t) return EMDPO_ERR_NOMEM;
    t->config = *c;
    t->model = m;
    t->lora = lo;
    t->params = lo ? lo->buf : m->param_buf;
    t->n_params = lo ? lo->n : m->num_params;
    t->set = set;
    t->max_B = c->batch * set->most_items;
    t->max_T = set->longest;
    size_t mb = (size_t)t->max_B, bt = mb * (size_t)t->max_T, ng = (size_t)set->n_group;
    if ((rc = emdpo_optim_create(&c->optim, t->n_params, &t->opt)) ||
        (rc = emdpo_llama_acts_create_lora(&m->config, lo ? lo->config.r : 0, t->max_B, t->max_T,
                                            c->grad_checkpoint ? EMDPO_ACTS_TRAIN_CKPT : EMDPO_ACTS_TRAIN, &t->acts))) {
        emdpo_trainer_free(t);
        return rc;
    }
    t->weights = emdpo_malloc(ng * sizeof *t->weights);
    t->grad = emdpo_malloc(t->n_params * sizeof *t->grad);
    t->dlogp = emdpo_malloc(bt * sizeof *t->dlogp);
    t->tokens = emdpo_malloc(bt * sizeof *t->tokens);
    t->lens = emdpo_malloc(mb * sizeof *t->lens);
    t->start = emdpo_malloc(mb * sizeof *t->start);
    t->end = emdpo_malloc(mb * sizeof *t->end);
    t->seqs = emdpo_malloc(mb * sizeof *t->seqs);
    t->seq_lr = emdpo_malloc(mb * sizeof *t->seq_lr);
    t->seq_grad = emdpo_malloc(mb * sizeof *t->seq_grad);
    t->step_ex = emdpo_malloc((size_t)c->batch * (size_t)c->accum * sizeof *t->step_ex);
    t->perm = emdpo_malloc(ng * sizeof *t->perm);
    if (c->mode == EMDPO_TRAIN_DPO) t->ref = emdpo_malloc((size_t)set->n_seq * sizeof *t->ref);
    if (!t->weights || !t->grad || !t->dlogp || !t->tokens || !t->lens || !t->start || !t->end || !t->seqs ||
        !t->seq_lr || !t->seq_grad || !t->step_ex || !t->perm || (c->mode == EMDPO_TRAIN_DPO && !t->ref)) {
        emdpo_trainer_free(t);
        return EMDPO_ERR_NOMEM;
    }
    size_t pieces = 0;
    emdpo_llama_grad_pieces(&m->config, lo, t->grad, count_piece, &pieces);
    if ((rc = emdpo_dist_sums_create(pieces, &t->sums))) {
        emdpo_trainer_free(t);
        return rc;
    }
    for (size_t g = 0; g < ng; g++) {
        t->weights[g] = weights ? weights[g] : 1.0;
        t->perm[g] = (int64_t)g;
    }
    t->data_hash = data_hash(set, t->weights);
    emdpo_rng_seed(&t->rng, c->seed, 0);
    shuffle(t);
    *out = t;
    return EMDPO_OK;
}

/* Response log-probabilities of sequences [0, n_seq) through acts, max_B at
 * a time; counts the forwards. Under MPI each process runs its share of the
 * batches (the batches one process runs, so the same bits) and the results
 * are gathered onto every process. */
static int score_with(const emdpo_llama *m, const emdpo_lora *lo, const emdpo_lm_set *s, emdpo_llama_acts *a,
                      int max_B, int *tokens, int *lens, int *start, int *end, int64_t *seqs, double *logp,
                      int64_t *forwards) {
    int64_t b0, b1;
    emdpo_dist_range((s->n_seq + max_B - 1) / max_B, &b0, &b1);
    for (int64_t i0 = b0 * max_B; i0 < s->n_seq && i0 < b1 * max_B; i0 += max_B) {
        int B = s->n_seq - i0 < max_B ? (int)(s->n_seq - i0) : max_B, T, rc;
        for (int b = 0; b < B; b++) seqs[b] = i0 + b;
        emdpo_lm_pack(s, seqs, B, tokens, lens, start, end, &T);
        if ((rc = emdpo_llama_forward_lora(m, lo, a, tokens, lens, B, T))) return rc;
        ++*forwards;
        if ((rc = emdpo_llama_span_logp(a, start, end, logp + i0))) return rc;
    }
    return emdpo_dist_allgather_runs(logp, s->n_seq, max_B);
}

int emdpo_lm_score(const emdpo_llama *m, const emdpo_lm_set *set, int batch, double *logp) {
    return emdpo_lm_score_lora(m, NULL, set, batch, logp);
}

int emdpo_lm_score_lora(const emdpo_llama *m, const emdpo_lora *lo, const emdpo_lm_set *set, int batch,
                        double *logp) {
    if (batch < 1) return EMDPO_ERR_INVALID_ARG;
    int rc = set_fits(m, set);
    if (rc) return rc;
    if (set->n_seq == 0) return EMDPO_OK;
    int B = (int64_t)batch < set->n_seq ? batch : (int)set->n_seq, T = set->longest;
    size_t bt = (size_t)B * (size_t)T;
    emdpo_llama_acts *a = NULL;
    int *tokens = emdpo_malloc(bt * sizeof *tokens), *ib = emdpo_malloc(3 * (size_t)B * sizeof *ib);
    int64_t *seqs = emdpo_malloc((size_t)B * sizeof *seqs), forwards = 0;
    if (!tokens || !ib || !seqs) rc = EMDPO_ERR_NOMEM;
    if (!rc) rc = emdpo_llama_acts_create_lora(&m->config, lo ? lo->config.r : 0, B, T, 0, &a);
    if (!rc) rc = score_with(m, lo, set, a, B, tokens, ib, ib + B, ib + 2 * B, seqs, logp, &forwards);
    emdpo_llama_acts_free(a);
    emdpo_free(tokens, bt * sizeof *tokens);
    emdpo_free(ib, 3 * (size_t)B * sizeof *ib);
    emdpo_free(seqs, (size_t)B * sizeof *seqs);
    return rc;
}

int emdpo_trainer_set_weights(emdpo_trainer *t, const double *weights) {
    if (!t) return EMDPO_ERR_INVALID_ARG;
    int64_t ng = t->set->n_group;
    for (int64_t g = 0; weights && g < ng; g++)
        if (!(weights[g] >= 0) || !isfinite(weights[g])) return EMDPO_ERR_INVALID_ARG;
    for (int64_t g = 0; g < ng; g++) t->weights[g] = weights ? weights[g] : 1.0;
    t->data_hash = data_hash(t->set, t->weights);
    return EMDPO_OK;
}

int emdpo_trainer_set_reference(emdpo_trainer *t, const emdpo_llama *ref) {
    if (!t || !t->ref) return EMDPO_ERR_INVALID_ARG;
    int rc;
    if (!ref || ref == t->model) {
        rc = score_with(t->model, NULL, t->set, t->acts, t->max_B, t->tokens, t->lens, t->start, t->end, t->seqs,
                        t->ref, &t->forwards);
    } else {
        if ((rc = emdpo_lm_score(ref, t->set, t->max_B, t->ref))) return rc;
        t->forwards += (t->set->n_seq + t->max_B - 1) / t->max_B;
    }
    t->has_ref = !rc;
    return rc;
}

int emdpo_trainer_set_reference_logp(emdpo_trainer *t, const double *ref_logp) {
    if (!t->ref) return EMDPO_ERR_INVALID_ARG;
    for (int64_t i = 0; i < t->set->n_seq; i++)
        if (!isfinite(ref_logp[i])) return EMDPO_ERR_INVALID_ARG;
    memcpy(t->ref, ref_logp, (size_t)t->set->n_seq * sizeof *t->ref);
    t->has_ref = 1;
    return EMDPO_OK;
}

int64_t emdpo_trainer_steps_done(const emdpo_trainer *t) { return t ? t->step : 0; }
int64_t emdpo_trainer_forwards(const emdpo_trainer *t) { return t->forwards; }
int emdpo_trainer_replicas_agree(const emdpo_trainer *t) {
    return emdpo_dist_same(t->params, t->n_params * sizeof *t->params) && emdpo_dist_same(&t->step, sizeof t->step);
}
const float *emdpo_trainer_grad(const emdpo_trainer *t) { return t->grad; }

int emdpo_trainer_step(emdpo_trainer *t, emdpo_train_metrics *met) {
    if (!t) return EMDPO_ERR_INVALID_ARG;
    const emdpo_train_config *c = &t->config;
    const emdpo_lm_set *s = t->set;
    int dpo = c->mode == EMDPO_TRAIN_DPO, E = c->batch * c->accum, rc;
    if (dpo && !t->has_ref) return EMDPO_ERR_INVALID_ARG;
    for (int e = 0; e < E; e++) t->step_ex[e] = next_example(t);
    /* SFT, and RPO's NLL term on the chosen responses, average over every
     * (chosen) response token of the step. */
    double ntok = 0.0, rpo = dpo ? c->loss.rpo_alpha : 0.0;
    for (int e = 0; (!dpo || rpo > 0) && e < E; e++) {
        int64_t i = s->group_off[t->step_ex[e]];
        ntok += (double)(emdpo_lm_seq_len(s, i) - s->seq_start[i]);
    }
    memset(t->grad, 0, t->n_params * sizeof *t->grad);
    /* Under MPI a process takes a contiguous share [lo, hi) of the step's
     * examples in micro-batches of up to batch, and the gradients and sums
     * are added over processes; one process takes all of them, in the
     * step's micro-batches. The gradient's sum starts piece by piece as the
     * last micro-batch's backward finishes each piece (a process without
     * examples starts the same pieces at once), so that it overlaps the rest
     * of the backward. */
    int64_t lo, hi;
    emdpo_dist_range(E, &lo, &hi);
    double sum[10] = {0}, *loss = sum, *wsum = sum + 1, *rw = sum + 2, *ru = sum + 6;
    for (int e0 = (int)lo, mb = 0; e0 < (int)hi; e0 += c->batch, mb++) {
        const int64_t *ex = t->step_ex + e0;
        int nb = (int)hi - e0 < c->batch ? (int)hi - e0 : c->batch, B = 0, T;
        for (int e = 0; e < nb; e++)
            for (int64_t i = s->group_off[ex[e]]; i < s->group_off[ex[e] + 1]; i++) t->seqs[B++] = i;
        emdpo_lm_pack(s, t->seqs, B, t->tokens, t->lens, t->start, t->end, &T);
        /* the adapter's dropout masks: a function of the seed, step,
         * micro-batch and process (the masks, unlike the rest, depend on
         * how the examples are split over processes) */
        emdpo_rng dr;
        uint64_t np = (uint64_t)emdpo_dist_size();
        emdpo_rng_seed(&dr, c->seed,
                       1 + ((uint64_t)t->step * (uint64_t)c->accum + (uint64_t)mb) * np + (uint64_t)emdpo_dist_rank());
        t->acts->lora_seed = emdpo_rng_u64(&dr);
        if ((rc = emdpo_llama_forward_lora(t->model, t->lora, t->acts, t->tokens, t->lens, B, T))) return rc;
        t->forwards++;
        if ((rc = emdpo_llama_span_logp(t->acts, t->start, t->end, t->seq_lr))) return rc;
        for (int e = 0, b = 0; e < nb; e++) {
            int n = (int)(s->group_off[ex[e] + 1] - s->group_off[ex[e]]);
            double w = t->weights[ex[e]];
            if (!dpo) {
                *loss += emdpo_sft_loss(t->seq_lr[b], ntok, w, &t->seq_grad[b]);
                b++;
                continue;
            }
            double logp_chosen = t->seq_lr[b], g_nll = 0.0;
            for (int k = 0; k < n; k++) t->seq_lr[b + k] -= t->ref[t->seqs[b + k]];
            *loss += emdpo_pref_loss(&c->loss, t->seq_lr + b, n, s->group_stages[ex[e]], w / E, t->seq_grad + b);
            if (rpo > 0) {
                *loss += emdpo_sft_loss(logp_chosen, ntok, rpo * w, &g_nll);
                t->seq_grad[b] += g_nll;
            }
            emdpo_pref_rewards r;
            emdpo_pref_rewards_of(c->loss.beta, t->seq_lr + b, n, &r);
            double v[4] = {r.chosen, r.rejected, r.margin, r.accuracy};
            for (int q = 0; q < 4; q++) {
                rw[q] += w * v[q];
                ru[q] += v[q];
            }
            *wsum += w;
            b += n;
        }
        memset(t->dlogp, 0, (size_t)B * T * sizeof *t->dlogp);
        t->acts->grad_piece = t->sums && e0 + c->batch >= (int)hi ? sum_piece : NULL;
        t->acts->grad_piece_ud = t->sums;
        if ((rc = emdpo_llama_span_backward(t->acts, t->start, t->end, t->seq_grad, t->dlogp)) ||
            (rc = t->lora ? emdpo_llama_backward_lora(t->model, t->lora, t->acts, t->dlogp, t->grad)
                          : emdpo_llama_backward(t->model, t->acts, t->dlogp, t->grad)))
            return rc;
    }
    t->acts->grad_piece = NULL;
    if (t->sums && lo == hi) emdpo_llama_grad_pieces(&t->model->config, t->lora, t->grad, sum_piece, t->sums);
    if ((rc = t->sums ? emdpo_dist_sums_wait(t->sums) : emdpo_dist_sum_floats(t->grad, t->n_params)) ||
        (rc = emdpo_dist_sum_doubles(sum, 10)))
        return rc;
    if (!isfinite(*loss)) return EMDPO_ERR_NUMERIC;
    double gnorm, lr;
    if ((rc = emdpo_optim_step(t->opt, t->params, t->grad, &gnorm, &lr))) return rc;
    t->step++;
    if (met) {
        memset(met, 0, sizeof *met);
        met->step = t->step;
        met->epoch = (double)(t->step * E) / (double)s->n_group;
        met->loss = *loss;
        met->grad_norm = gnorm;
        met->learning_rate = lr;
        met->examples = E;
        if (dpo) {
            double *src = *wsum > 0 ? rw : ru, den = *wsum > 0 ? *wsum : E;
            met->rewards_chosen = src[0] / den;
            met->rewards_rejected = src[1] / den;
            met->rewards_margins = src[2] / den;
            met->rewards_accuracies = src[3] / den;
        }
    }
    return EMDPO_OK;
}

/* ---- checkpoints ----------------------------------------------------------
 * Little-endian raw layout (the byte order of the machines emdpo runs on):
 * "EMDPOTRN", uint32 version, the model configuration (8 int32, 2 float),
 * int32 mode, optimizer kind, batch, accum, int64 num_params, n_seq,
 * n_group, uint64 data hash, int64 step, epoch, pos, uint64 rng[4],
 * int64 perm[n_group], the optimizer state, float params[num_params],
 * int32 has_ref, double ref[n_seq] when DPO, then uint32 crc32 (zlib's)
 * of every byte before it, so that a damaged file is named as such rather
 * than failing later as a diverging run. Version 1 had no checksum. */

#define CKPT_MAGIC "EMDPOTRN"
#define CKPT_VERSION 2u

typedef struct ckpt_head {
    char magic[8];
    uint32_t version;
    int32_t cfg[8];
    float cfg_f[2];
    int32_t mode, optim, batch, accum;
    int64_t num_params, n_seq, n_group;
    uint64_t hash;
    int64_t step, epoch, pos;
    uint64_t rng[4];
} ckpt_head;

static void fill_head(const emdpo_trainer *t, ckpt_head *h) {
    const emdpo_llama_config *c = &t->model->config;
    memset(h, 0, sizeof *h);
    memcpy(h->magic, CKPT_MAGIC, 8);
    h->version = CKPT_VERSION;
    int32_t cfg[8] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->max_seq_len,
                      c->tied};
    memcpy(h->cfg, cfg, sizeof cfg);
    h->cfg_f[0] = c->norm_eps;
    h->cfg_f[1] = c->rope_theta;
    h->mode = t->config.mode;
    h->optim = t->config.optim.kind;
    h->batch = t->config.batch;
    h->accum = t->config.accum;
    h->num_params = (int64_t)t->n_params;
    h->n_seq = t->set->n_seq;
    h->n_group = t->set->n_group;
    h->hash = t->data_hash;
    h->step = t->step;
    h->epoch = t->epoch;
    h->pos = t->pos;
    memcpy(h->rng, t->rng.s, sizeof h->rng);
}

int emdpo_trainer_save(const emdpo_trainer *t, const char *path, emdpo_diag *diag) {
    emdpo_diag scratch;
    if (!diag) diag = &scratch;
    memset(diag, 0, sizeof *diag);
    if (!t || !path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no trainer or path");
    snprintf(diag->file, sizeof diag->file, "%s", path);
    ckpt_head h;
    fill_head(t, &h);
    emdpo_afile af;
    int rc = emdpo_afile_open(&af, path, diag);
    if (rc) return rc;
    FILE *fp = af.fp;
    size_t ng = (size_t)t->set->n_group, np = t->n_params;
    int32_t has_ref = t->has_ref;
    int ok = fwrite(&h, sizeof h, 1, fp) == 1 && fwrite(t->perm, sizeof *t->perm, ng, fp) == ng &&
             emdpo_optim_write(t->opt, fp) == EMDPO_OK && fwrite(t->params, sizeof(float), np, fp) == np &&
             fwrite(&has_ref, sizeof has_ref, 1, fp) == 1 &&
             (!has_ref || fwrite(t->ref, sizeof *t->ref, (size_t)t->set->n_seq, fp) == (size_t)t->set->n_seq);
    /* The optimizer writes its own state to fp, so the checksum reads the
     * written bytes back rather than following every fwrite. */
    long len = ok && fflush(fp) == 0 ? ftell(fp) : -1;
    FILE *back = len >= 0 ? fopen(af.tmp, "rb") : NULL;
    uint32_t crc = 0;
    int crc_rc = ok && back ? emdpo_file_crc32(back, len, &crc) : EMDPO_ERR_IO;
    if (back) fclose(back);
    ok = !crc_rc && fwrite(&crc, sizeof crc, 1, fp) == 1;
    if (!ok) {
        emdpo_afile_abort(&af);
        if (crc_rc == EMDPO_ERR_NOMEM) return emdpo_diag_fail(diag, crc_rc, "out of memory");
        emdpo_diag_set(diag, 0, "write error");
        return EMDPO_ERR_IO;
    }
    return emdpo_afile_commit(&af, diag);
}

int emdpo_trainer_resume(emdpo_trainer *t, const char *path, emdpo_diag *diag) {
    emdpo_diag scratch;
    if (!diag) diag = &scratch;
    emdpo_diag_reset(diag, path);
    if (!t || !path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no trainer or path");
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        emdpo_diag_set(diag, 0, "cannot open the checkpoint");
        return EMDPO_ERR_IO;
    }
    ckpt_head h, want;
    fill_head(t, &want);
    int rc = EMDPO_ERR_PARSE;
    const char *why = NULL;
    uint32_t crc = 0, stored = 0;
    long len = -1;
    if (fread(&h, sizeof h, 1, fp) != 1 || memcmp(h.magic, CKPT_MAGIC, 8))
        why = "not an emdpo training checkpoint";
    else if (h.version != CKPT_VERSION)
        why = h.version == 1 ? "a checkpoint of an older emdpo (without a checksum); start the run again"
                             : "a checkpoint of another emdpo version";
    else if (fseek(fp, 0, SEEK_END) || (len = ftell(fp)) < (long)(sizeof h + sizeof crc) || fseek(fp, 0, SEEK_SET) ||
             emdpo_file_crc32(fp, len - (long)sizeof crc, &crc) || fread(&stored, sizeof stored, 1, fp) != 1 ||
             crc != stored)
        why = "the checkpoint is damaged (its crc32 checksum does not match its contents)";
    else if (fseek(fp, (long)sizeof h, SEEK_SET))
        why = "cannot read the checkpoint";
    else if (memcmp(h.cfg, want.cfg, sizeof h.cfg) || memcmp(h.cfg_f, want.cfg_f, sizeof h.cfg_f) ||
             h.num_params != want.num_params)
        why = "the checkpoint holds a model of another configuration";
    else if (h.mode != want.mode || h.optim != want.optim || h.batch != want.batch || h.accum != want.accum)
        why = "the checkpoint was written with another mode, optimizer, --batch or --accum";
    else if (h.n_seq != want.n_seq || h.n_group != want.n_group || h.hash != want.hash)
        why = "the checkpoint was written for other data, weights or truncation lengths";
    else if (h.step < 0 || h.epoch < 0 || h.pos < 0 || h.pos > h.n_group)
        why = "corrupt checkpoint header";
    size_t ng = (size_t)t->set->n_group, np = t->n_params;
    /* Read into the live buffers only after the header matched; a short
     * read below still leaves a half-restored trainer, so callers treat any
     * failure as fatal. */
    int32_t has_ref = 0;
    if (!why) {
        if (fread(t->perm, sizeof *t->perm, ng, fp) != ng || emdpo_optim_read(t->opt, fp) ||
            fread(t->params, sizeof(float), np, fp) != np || fread(&has_ref, sizeof has_ref, 1, fp) != 1 ||
            (has_ref && (!t->ref || fread(t->ref, sizeof *t->ref, (size_t)t->set->n_seq, fp) != (size_t)t->set->n_seq)))
            why = "truncated checkpoint";
        else if (ftell(fp) != len - (long)sizeof crc)
            why = "the checkpoint's size does not match its contents";
    }
    fclose(fp);
    if (why) {
        emdpo_diag_set(diag, 0, "%s", why);
        return rc;
    }
    for (size_t g = 0; g < ng; g++)
        if (t->perm[g] < 0 || t->perm[g] >= (int64_t)ng) {
            emdpo_diag_set(diag, 0, "corrupt permutation in the checkpoint");
            return EMDPO_ERR_PARSE;
        }
    t->step = h.step;
    t->epoch = h.epoch;
    t->pos = h.pos;
    memcpy(t->rng.s, h.rng, sizeof h.rng);
    t->has_ref = has_ref != 0;
    return EMDPO_OK;
}
