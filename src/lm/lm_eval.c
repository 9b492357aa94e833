/* Ensemble evaluation on held-out data by true group, the adjusted Rand
 * index, and the baselines' clustering and DPO training (lm_eval.h). */
#include "lm/lm_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "core/kmeans.h"
#include "lm/lm_embed.h"

struct emdpo_lm_evaluator {
    const emdpo_data *d;
    const emdpo_lm_set *set;
    double beta;
    int batch;
    emdpo_lm_set *uniq; /* each distinct sequence of set once, a group of one, by length */
    int64_t *map;       /* (set->n_seq) index of each sequence in uniq */
    double *ref;        /* (uniq->n_seq) reference log-probabilities */
    double *lp;         /* (uniq->n_seq) scratch: a policy's log-probabilities */
    int64_t *n_dec;     /* (d->n_groups) decisions per true group */
};

/* Appends sequence i of s to u as a group of one; capacities are ensured
 * by the caller. */
static void append_seq(emdpo_lm_set *u, const emdpo_lm_set *s, int64_t i) {
    int n = emdpo_lm_seq_len(s, i);
    memcpy(u->tok + u->n_tok, s->tok + s->seq_off[i], (size_t)n * sizeof *s->tok);
    u->seq_start[u->n_seq] = s->seq_start[i];
    u->n_tok += n;
    u->seq_off[++u->n_seq] = u->n_tok;
    u->group_stages[u->n_group] = 0;
    u->group_off[++u->n_group] = u->n_seq;
    if (n > u->longest) u->longest = n;
    u->most_items = 1;
}

/* uniq: each distinct sequence of s once, by length (lm_batch.h), and map
 * from each sequence to its place in uniq. */
static int dedup(const emdpo_lm_set *s, emdpo_lm_set **out, int64_t *map) {
    int64_t *first = NULL, nu = 0;
    int rc = emdpo_lm_distinct(s, &first, &nu, map);
    if (rc) return rc;
    emdpo_lm_set *u = NULL;
    size_t n = (size_t)nu;
    rc = emdpo_lm_set_create(s->max_length, s->max_prompt_length, &u);
    if (!rc && (emdpo_grow((void **)&u->seq_off, &u->seq_off_cap, n + 1, sizeof *u->seq_off) ||
                emdpo_grow((void **)&u->seq_start, &u->seq_start_cap, n ? n : 1, sizeof *u->seq_start) ||
                emdpo_grow((void **)&u->tok, &u->tok_cap, s->n_tok ? (size_t)s->n_tok : 1, sizeof *u->tok) ||
                emdpo_grow((void **)&u->group_off, &u->group_off_cap, n + 1, sizeof *u->group_off) ||
                emdpo_grow((void **)&u->group_stages, &u->group_stages_cap, n ? n : 1, sizeof *u->group_stages)))
        rc = EMDPO_ERR_NOMEM;
    for (int64_t r = 0; !rc && r < nu; r++) append_seq(u, s, first[r]);
    emdpo_free(first, n * sizeof *first);
    if (rc) {
        emdpo_lm_set_free(u);
        return rc;
    }
    *out = u;
    return EMDPO_OK;
}

static int set_matches(const emdpo_data *d, const emdpo_lm_set *s) {
    if (s->n_group != d->n_dec || s->n_seq != d->n_items) return 0;
    for (int64_t j = 0; j <= d->n_dec; j++)
        if (s->group_off[j] != d->dec_item[j]) return 0;
    return 1;
}

void emdpo_lm_evaluator_free(emdpo_lm_evaluator *ev) {
    if (!ev) return;
    size_t nu = ev->uniq ? (size_t)ev->uniq->n_seq : 0;
    emdpo_free(ev->map, (size_t)ev->set->n_seq * sizeof *ev->map);
    emdpo_free(ev->ref, nu * sizeof *ev->ref);
    emdpo_free(ev->lp, nu * sizeof *ev->lp);
    emdpo_free(ev->n_dec, (size_t)ev->d->n_groups * sizeof *ev->n_dec);
    emdpo_lm_set_free(ev->uniq);
    emdpo_free(ev, sizeof *ev);
}

int emdpo_lm_evaluator_create(const emdpo_llama *ref, const emdpo_data *d, const emdpo_lm_set *set, double beta,
                              int batch, emdpo_lm_evaluator **out) {
    *out = NULL;
    if (d->n_groups < 1 || !(beta > 0) || !isfinite(beta) || batch < 1 || !set_matches(d, set))
        return EMDPO_ERR_INVALID_ARG;
    emdpo_lm_evaluator *ev = emdpo_calloc(1, sizeof *ev);
    if (!ev) return EMDPO_ERR_NOMEM;
    ev->d = d;
    ev->set = set;
    ev->beta = beta;
    ev->batch = batch;
    int rc = EMDPO_OK;
    if (!(ev->map = emdpo_malloc((size_t)set->n_seq * sizeof *ev->map)) ||
        !(ev->n_dec = emdpo_calloc((size_t)d->n_groups, sizeof *ev->n_dec)))
        rc = EMDPO_ERR_NOMEM;
    for (int64_t a = 0; !rc && a < d->n_annot; a++)
        if (d->annot_group[a] >= 0) ev->n_dec[d->annot_group[a]] += d->annot_dec[a + 1] - d->annot_dec[a];
    if (!rc) rc = dedup(set, &ev->uniq, ev->map);
    if (!rc) {
        size_t nu = (size_t)ev->uniq->n_seq;
        ev->ref = emdpo_malloc(nu * sizeof *ev->ref);
        ev->lp = emdpo_malloc(nu * sizeof *ev->lp);
        if (!ev->ref || !ev->lp) rc = EMDPO_ERR_NOMEM;
    }
    if (!rc) rc = emdpo_lm_score(ref, ev->uniq, batch, ev->ref);
    if (rc) {
        emdpo_lm_evaluator_free(ev);
        return rc;
    }
    *out = ev;
    return EMDPO_OK;
}

int64_t emdpo_lm_evaluator_distinct(const emdpo_lm_evaluator *ev) { return ev->uniq->n_seq; }

int emdpo_lm_evaluate(emdpo_lm_evaluator *ev, const emdpo_llama *m, double *margin, double *accuracy,
                      int64_t *n_dec) {
    return emdpo_lm_evaluate_lora(ev, m, NULL, margin, accuracy, n_dec);
}

int emdpo_lm_evaluate_lora(emdpo_lm_evaluator *ev, const emdpo_llama *m, const emdpo_lora *lo, double *margin,
                           double *accuracy, int64_t *n_dec) {
    const emdpo_data *d = ev->d;
    int G = d->n_groups;
    int rc = emdpo_lm_score_lora(m, lo, ev->uniq, ev->batch, ev->lp);
    if (rc) return rc;
    for (int g = 0; g < G; g++) margin[g] = accuracy[g] = 0.0;
    /* Sums in decision order, so results do not depend on threads. */
    for (int64_t a = 0; a < d->n_annot; a++) {
        int g = d->annot_group[a];
        if (g < 0) continue;
        for (int64_t j = d->annot_dec[a]; j < d->annot_dec[a + 1]; j++) {
            int64_t i0 = d->dec_item[j], i1 = d->dec_item[j + 1];
            double r0 = ev->beta * (ev->lp[ev->map[i0]] - ev->ref[ev->map[i0]]), sum = 0.0;
            int correct = 1;
            for (int64_t i = i0 + 1; i < i1; i++) {
                double r = ev->beta * (ev->lp[ev->map[i]] - ev->ref[ev->map[i]]);
                sum += r0 - r;
                if (!(r0 > r)) correct = 0;
            }
            margin[g] += sum / (double)(i1 - i0 - 1);
            accuracy[g] += correct;
        }
    }
    for (int g = 0; g < G; g++) {
        double n = (double)ev->n_dec[g];
        margin[g] = ev->n_dec[g] ? margin[g] / n : NAN;
        accuracy[g] = ev->n_dec[g] ? accuracy[g] / n : NAN;
        if (n_dec) n_dec[g] = ev->n_dec[g];
    }
    return EMDPO_OK;
}

void emdpo_lm_eval_best(int M, int G, const double *margin, const double *accuracy, int *best, double *max_margin,
                        double *best_accuracy) {
    for (int g = 0; g < G; g++) {
        int b = -1;
        for (int i = 0; i < M; i++) {
            double v = margin[(size_t)i * G + g];
            if (!isnan(v) && (b < 0 || v > margin[(size_t)b * G + g])) b = i;
        }
        best[g] = b;
        max_margin[g] = b < 0 ? NAN : margin[(size_t)b * G + g];
        best_accuracy[g] = b < 0 ? NAN : accuracy[(size_t)b * G + g];
    }
}

static int cmp_u64(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

static double pairs(int64_t c) { return 0.5 * (double)c * (double)(c - 1); }

/* Σ over runs of equal keys (after masking) of C(run length, 2). */
static double run_pairs(const uint64_t *k, int64_t n, uint64_t mask) {
    double s = 0.0;
    for (int64_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && (k[j] & mask) == (k[i] & mask); j++) continue;
        s += pairs(j - i);
    }
    return s;
}

double emdpo_adjusted_rand_index(const int32_t *a, const int32_t *b, int64_t n) {
    if (n < 2) return 1.0;
    uint64_t *k = emdpo_malloc((size_t)n * sizeof *k);
    if (!k) return NAN;
    /* Sorted (a, b) keys give the contingency cells and the row sums;
     * sorted (b, a) keys the column sums. */
    for (int64_t i = 0; i < n; i++) k[i] = (uint64_t)(uint32_t)a[i] << 32 | (uint32_t)b[i];
    qsort(k, (size_t)n, sizeof *k, cmp_u64);
    double cells = run_pairs(k, n, ~0ULL), rows = run_pairs(k, n, ~0ULL << 32);
    for (int64_t i = 0; i < n; i++) k[i] = (uint64_t)(uint32_t)b[i] << 32 | (uint32_t)a[i];
    qsort(k, (size_t)n, sizeof *k, cmp_u64);
    double cols = run_pairs(k, n, ~0ULL << 32);
    emdpo_free(k, (size_t)n * sizeof *k);
    double expected = rows * cols / pairs(n), top = 0.5 * (rows + cols);
    /* 0/0: both partitions all singletons or both one block, i.e. equal. */
    if (top == expected) return 1.0;
    return (cells - expected) / (top - expected);
}

int emdpo_lm_cluster_annotators(const emdpo_llama *m, const emdpo_data *d, const emdpo_lm_set *set, int K,
                                uint64_t seed, int batch, int32_t *assign) {
    if (K < 1 || K > d->n_annot) return EMDPO_ERR_INVALID_ARG;
    int q = m->config.dim;
    size_t nx = (size_t)d->n_annot * (size_t)q, nc = (size_t)K * (size_t)q;
    double *x = emdpo_malloc(nx * sizeof *x), *centers = emdpo_malloc(nc * sizeof *centers);
    int rc = x && centers ? EMDPO_OK : EMDPO_ERR_NOMEM;
    if (!rc) rc = emdpo_lm_embed_annotators(m, d, set, batch, x);
    if (!rc) rc = emdpo_kmeans(x, d->n_annot, q, K, seed, 100, assign, centers);
    emdpo_free(x, x ? nx * sizeof *x : 0);
    emdpo_free(centers, centers ? nc * sizeof *centers : 0);
    return rc;
}

/* steps optimizer steps (0: one epoch) of DPO on set by a trainer of m
 * (lo NULL) or of lo on m, with sft as the reference. */
static int train_dpo(emdpo_llama *m, const emdpo_llama *sft, emdpo_lora *lo, const emdpo_lm_set *set,
                     const emdpo_train_config *c, int64_t steps) {
    emdpo_trainer *t = NULL;
    int rc = lo ? emdpo_trainer_create_lora(sft, lo, set, NULL, c, &t) : emdpo_trainer_create(m, set, NULL, c, &t);
    if (!rc) rc = emdpo_trainer_set_reference(t, lo ? NULL : sft);
    if (!rc && steps == 0) {
        int64_t E = (int64_t)c->batch * c->accum;
        steps = (set->n_group + E - 1) / E;
    }
    emdpo_train_metrics met;
    while (!rc && emdpo_trainer_steps_done(t) < steps) rc = emdpo_trainer_step(t, &met);
    emdpo_trainer_free(t);
    return rc;
}

int emdpo_lm_train_dpo(const emdpo_llama *sft, const emdpo_lm_set *set, const emdpo_train_config *c, int64_t steps,
                       emdpo_llama **out) {
    *out = NULL;
    if (c->mode != EMDPO_TRAIN_DPO || steps < 0) return EMDPO_ERR_INVALID_ARG;
    emdpo_llama *m = NULL;
    int rc = emdpo_llama_create(&sft->config, &m);
    if (rc) return rc;
    memcpy(m->param_buf, sft->param_buf, m->num_params * sizeof *m->param_buf);
    m->file_dtype = sft->file_dtype;
    if ((rc = train_dpo(m, sft, NULL, set, c, steps))) {
        emdpo_llama_free(m);
        return rc;
    }
    *out = m;
    return EMDPO_OK;
}

int emdpo_lm_train_dpo_lora(const emdpo_llama *sft, emdpo_lora *lo, const emdpo_lm_set *set,
                            const emdpo_train_config *c, int64_t steps) {
    if (c->mode != EMDPO_TRAIN_DPO || steps < 0 || !lo) return EMDPO_ERR_INVALID_ARG;
    return train_dpo(NULL, sft, lo, set, c, steps);
}
