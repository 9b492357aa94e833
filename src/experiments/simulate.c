#include "experiments/simulate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/rng.h"

static const double personalities_theta[3 * EMDPO_N_TRAITS] = {
    3, 0, 2, 0, -2.5,  /* P1 */
    -3, 0, -2, 0, 2.5, /* P2 = -P1: binary choices cannot tell {P1, P2} from theta = 0 */
    0, 2, 0, 2, 0,     /* P3 */
};
static const double personalities_eta[3] = {0.3, 0.3, 0.4};
static const char *const personalities_names[3] = {"P1", "P2", "P3"};

static const double collapsed_theta[2 * EMDPO_N_TRAITS] = {0, 0, 0, 0, 0, 0, 2, 0, 2, 0};
static const double collapsed_eta[2] = {0.6, 0.4};
static const char *const collapsed_names[2] = {"P1+P2", "P3"};

const emdpo_population emdpo_pop_personalities = {3, EMDPO_N_TRAITS, personalities_theta,
                                                  personalities_eta, personalities_names};
const emdpo_population emdpo_pop_personalities_collapsed = {2, EMDPO_N_TRAITS, collapsed_theta,
                                                            collapsed_eta, collapsed_names};

const emdpo_population *emdpo_population_preset(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "personalities") == 0) return &emdpo_pop_personalities;
    if (strcmp(name, "personalities-collapsed") == 0) return &emdpo_pop_personalities_collapsed;
    return NULL;
}

void emdpo_sim_spec_init(emdpo_sim_spec *spec) {
    if (!spec) return;
    memset(spec, 0, sizeof *spec);
    spec->pop = emdpo_pop_personalities;
    spec->n_annotators = 1000;
    spec->decisions = 1;
    spec->items = 3;
    spec->response = EMDPO_SIM_TOP;
    spec->design = EMDPO_SIM_PHRASES;
    spec->scale = 1.0;
    spec->seed = 1;
}

/* Sum of the weights when the population is usable, else 0. */
static double pop_check(const emdpo_population *pop) {
    if (!pop || pop->K < 1 || pop->p < 1 || !pop->theta || !pop->eta) return 0.0;
    double sum = 0.0;
    for (int k = 0; k < pop->K; k++) {
        if (!isfinite(pop->eta[k]) || pop->eta[k] < 0) return 0.0;
        sum += pop->eta[k];
        if (pop->type_names && !pop->type_names[k]) return 0.0;
    }
    for (size_t i = 0; i < (size_t)pop->K * (size_t)pop->p; i++)
        if (!isfinite(pop->theta[i])) return 0.0;
    return isfinite(sum) ? sum : 0.0;
}

static double dot(const double *a, const double *b, int p) {
    double s = 0.0;
    for (int f = 0; f < p; f++) s += a[f] * b[f];
    return s;
}

int emdpo_population_choice_prob(const emdpo_population *pop, int n_items, const double *x, double *prob) {
    double wsum = pop_check(pop);
    if (wsum <= 0 || n_items < 1 || !x || !prob) return EMDPO_ERR_INVALID_ARG;
    int p = pop->p;
    for (int j = 0; j < n_items; j++) prob[j] = 0.0;
    for (int k = 0; k < pop->K; k++) {
        const double *th = pop->theta + (size_t)k * p;
        double mx = -INFINITY, s = 0.0;
        for (int j = 0; j < n_items; j++) mx = fmax(mx, dot(th, x + (size_t)j * p, p));
        for (int j = 0; j < n_items; j++) s += exp(dot(th, x + (size_t)j * p, p) - mx);
        double w = pop->eta[k] / wsum / s;
        for (int j = 0; j < n_items; j++) prob[j] += w * exp(dot(th, x + (size_t)j * p, p) - mx);
    }
    for (int j = 0; j < n_items; j++)
        if (!isfinite(prob[j])) return EMDPO_ERR_NUMERIC;
    return EMDPO_OK;
}

int emdpo_population_ranking_prob(const emdpo_population *pop, int n_items, int n_stages, const double *x,
                               double *out) {
    double wsum = pop_check(pop);
    if (wsum <= 0 || n_items < 2 || n_stages < 1 || n_stages > n_items - 1 || !x || !out)
        return EMDPO_ERR_INVALID_ARG;
    int p = pop->p;
    double total = 0.0;
    for (int k = 0; k < pop->K; k++) {
        const double *th = pop->theta + (size_t)k * p;
        double logp = 0.0;
        for (int st = 0; st < n_stages; st++) {
            double mx = -INFINITY, s = 0.0;
            for (int j = st; j < n_items; j++) mx = fmax(mx, dot(th, x + (size_t)j * p, p));
            for (int j = st; j < n_items; j++) s += exp(dot(th, x + (size_t)j * p, p) - mx);
            logp += dot(th, x + (size_t)st * p, p) - mx - log(s);
        }
        total += pop->eta[k] / wsum * exp(logp);
    }
    if (!isfinite(total)) return EMDPO_ERR_NUMERIC;
    *out = total;
    return EMDPO_OK;
}

/* ---- Simulation --------------------------------------------------------- */

typedef struct rank_key {
    double key; /* utility plus Gumbel noise */
    int32_t idx;
} rank_key;

static int rank_key_desc(const void *a, const void *b) {
    const rank_key *u = a, *v = b;
    if (u->key != v->key) return u->key > v->key ? -1 : 1;
    return (u->idx > v->idx) - (u->idx < v->idx);
}

/* Sorts keys descending; ties keep index order so the result is reproducible. */
static void sort_keys(rank_key *k, int n) {
    if (n > 16) {
        qsort(k, (size_t)n, sizeof *k, rank_key_desc);
        return;
    }
    for (int i = 1; i < n; i++) {
        rank_key t = k[i];
        int j = i;
        for (; j > 0 && rank_key_desc(&k[j - 1], &t) > 0; j--) k[j] = k[j - 1];
        k[j] = t;
    }
}

/* Moves the largest key to the front and leaves the unchosen items in draw
 * order, so a top-choice decision reveals nothing about their ranking. */
static void top_first(rank_key *k, int n) {
    int best = 0;
    for (int j = 1; j < n; j++)
        if (k[j].key > k[best].key) best = j;
    rank_key t = k[best];
    memmove(k + 1, k, (size_t)best * sizeof *k);
    k[0] = t;
}

/* Per-annotator output and scratch for one chunk of annotators; slot a of
 * each array belongs to annotator start + a alone, so slots fill in parallel. */
typedef struct sim_chunk {
    size_t cap;      /* annotators per chunk */
    size_t per_x;    /* doubles of output features per annotator: m * n * p */
    double *x;       /* (cap, m, n, p) features in preference order */
    int32_t *phrase; /* (cap, m, n) phrase of each ordered item; phrase design */
    int32_t *prompt; /* (cap, m) paraphrase index; phrase design */
    int32_t *type;   /* (cap) */
    double *draw;    /* (cap, n, p) one decision's features in draw order */
    int32_t *pick;   /* (cap, n) one decision's phrases in draw order */
    rank_key *key;   /* (cap, n) */
} sim_chunk;

static void chunk_free(sim_chunk *c, const emdpo_sim_spec *s) {
    size_t m = (size_t)s->decisions, n = (size_t)s->items, p = (size_t)s->pop.p;
    emdpo_free(c->x, c->cap * c->per_x * sizeof(double));
    emdpo_free(c->phrase, c->cap * m * n * sizeof(int32_t));
    emdpo_free(c->prompt, c->cap * m * sizeof(int32_t));
    emdpo_free(c->type, c->cap * sizeof(int32_t));
    emdpo_free(c->draw, c->cap * n * p * sizeof(double));
    emdpo_free(c->pick, c->cap * n * sizeof(int32_t));
    emdpo_free(c->key, c->cap * n * sizeof(rank_key));
}

static int chunk_alloc(sim_chunk *c, const emdpo_sim_spec *s, size_t cap) {
    size_t m = (size_t)s->decisions, n = (size_t)s->items, p = (size_t)s->pop.p;
    memset(c, 0, sizeof *c);
    c->cap = cap;
    c->per_x = m * n * p;
    c->x = emdpo_malloc(cap * c->per_x * sizeof(double));
    c->type = emdpo_malloc(cap * sizeof(int32_t));
    c->draw = emdpo_malloc(cap * n * p * sizeof(double));
    c->key = emdpo_malloc(cap * n * sizeof(rank_key));
    int ok = c->x && c->type && c->draw && c->key;
    if (ok && s->design == EMDPO_SIM_PHRASES) {
        c->phrase = emdpo_malloc(cap * m * n * sizeof(int32_t));
        c->prompt = emdpo_malloc(cap * m * sizeof(int32_t));
        c->pick = emdpo_malloc(cap * n * sizeof(int32_t));
        ok = c->phrase && c->prompt && c->pick;
    }
    if (!ok) {
        chunk_free(c, s);
        memset(c, 0, sizeof *c);
        return EMDPO_ERR_NOMEM;
    }
    return EMDPO_OK;
}

/* Floyd's algorithm: n distinct indices uniform over 0..N-1 in O(n^2) time
 * and no memory beyond the output. */
static void draw_distinct(emdpo_rng *r, int64_t N, int n, int32_t *out) {
    int cnt = 0;
    for (int64_t j = N - n; j < N; j++) {
        int32_t t = (int32_t)emdpo_rng_below(r, (uint64_t)j + 1);
        for (int q = 0; q < cnt; q++) {
            if (out[q] == t) {
                t = (int32_t)j;
                break;
            }
        }
        out[cnt++] = t;
    }
}

/* Generates all decisions of annotator `annot` into slot a of the chunk. The
 * draw order per decision is fixed (prompt, items, noise) so that the stream
 * alone determines the output. */
static void simulate_annotator(const emdpo_sim_spec *s, const emdpo_inventory *inv, sim_chunk *c,
                               size_t a, int64_t annot) {
    const int m = s->decisions, n = s->items, p = s->pop.p;
    const int phrases = s->design == EMDPO_SIM_PHRASES;
    emdpo_rng r;
    emdpo_rng_seed(&r, s->seed, (uint64_t)annot);
    int k = emdpo_rng_categorical(&r, s->pop.eta, s->pop.K);
    c->type[a] = k;
    const double *th = s->pop.theta + (size_t)k * p;
    double *draw = c->draw + a * (size_t)n * p;
    rank_key *key = c->key + a * (size_t)n;
    int32_t *pick = phrases ? c->pick + a * (size_t)n : NULL;
    for (int dec = 0; dec < m; dec++) {
        size_t d = a * (size_t)m + (size_t)dec;
        if (phrases) {
            c->prompt[d] = (int32_t)emdpo_rng_below(&r, EMDPO_N_PARAPHRASES);
            draw_distinct(&r, inv->n, n, pick);
            for (int j = 0; j < n; j++)
                memcpy(draw + (size_t)j * p, inv->score + (size_t)pick[j] * EMDPO_N_TRAITS,
                       EMDPO_N_TRAITS * sizeof(double));
        } else {
            for (int q = 0; q < n * p; q++) draw[q] = s->scale * emdpo_rng_normal(&r);
        }
        for (int j = 0; j < n; j++) {
            key[j].key = dot(th, draw + (size_t)j * p, p) + emdpo_rng_gumbel(&r);
            key[j].idx = j;
        }
        if (s->response == EMDPO_SIM_RANKING) {
            sort_keys(key, n);
        } else {
            top_first(key, n);
        }
        double *xo = c->x + d * (size_t)n * p;
        for (int q = 0; q < n; q++) {
            memcpy(xo + (size_t)q * p, draw + (size_t)key[q].idx * p, (size_t)p * sizeof(double));
            if (phrases) c->phrase[d * (size_t)n + (size_t)q] = pick[key[q].idx];
        }
    }
}

static int spec_check(const emdpo_sim_spec *s, const emdpo_inventory *inv) {
    if (pop_check(&s->pop) <= 0 || s->n_annotators < 1 || s->decisions < 1 || s->items < 2)
        return EMDPO_ERR_INVALID_ARG;
    if (s->response != EMDPO_SIM_TOP && s->response != EMDPO_SIM_RANKING) return EMDPO_ERR_INVALID_ARG;
    if (s->design == EMDPO_SIM_PHRASES) {
        if (s->pop.p != EMDPO_N_TRAITS || s->items > inv->n) return EMDPO_ERR_INVALID_ARG;
        /* Phrase indices are stored as int32. */
        if (inv->n > INT32_MAX) return EMDPO_ERR_LIMIT;
    } else if (s->design == EMDPO_SIM_GAUSSIAN) {
        if (!(s->scale > 0) || !isfinite(s->scale)) return EMDPO_ERR_INVALID_ARG;
    } else {
        return EMDPO_ERR_INVALID_ARG;
    }
    /* The feature array of the dataset must be addressable in bytes. */
    uint64_t per = (uint64_t)s->decisions * (uint64_t)s->items; /* < 2^62 */
    if (per > (uint64_t)INT64_MAX / (uint64_t)s->pop.p) return EMDPO_ERR_LIMIT;
    per *= (uint64_t)s->pop.p;
    uint64_t max_bytes = SIZE_MAX < (uint64_t)INT64_MAX ? SIZE_MAX : (uint64_t)INT64_MAX;
    if ((uint64_t)s->n_annotators > max_bytes / sizeof(double) / per) return EMDPO_ERR_LIMIT;
    /* and fit in the machine's memory */
    double mem = emdpo_mem_physical();
    if (mem > 0 && (double)s->n_annotators * (double)per * sizeof(double) > mem) return EMDPO_ERR_LIMIT;
    return EMDPO_OK;
}

/* Adds one chunk's annotators to the builder, in annotator order. */
static int chunk_emit(const emdpo_sim_spec *s, const emdpo_inventory *inv, const sim_chunk *c,
                      size_t cn, int64_t start, const char *const *group, const char **texts,
                      emdpo_data_builder *b, int32_t *true_type) {
    const int m = s->decisions, n = s->items;
    const int stages = s->response == EMDPO_SIM_RANKING ? n - 1 : 1;
    const int with_text = s->design == EMDPO_SIM_PHRASES && !s->omit_text;
    char name[32];
    for (size_t a = 0; a < cn; a++) {
        snprintf(name, sizeof name, "a%lld", (long long)(start + (int64_t)a + 1));
        if (true_type) true_type[start + (int64_t)a] = c->type[a];
        for (int dec = 0; dec < m; dec++) {
            size_t d = a * (size_t)m + (size_t)dec;
            if (with_text)
                for (int q = 0; q < n; q++) texts[q] = inv->text[c->phrase[d * (size_t)n + (size_t)q]];
            int rc = emdpo_data_builder_add(b, name, group[c->type[a]],
                                       with_text ? emdpo_paraphrases[c->prompt[d]] : NULL, n, stages,
                                       c->x + d * (size_t)n * s->pop.p,
                                       with_text ? (const char *const *)texts : NULL);
            if (rc) return rc;
        }
    }
    return EMDPO_OK;
}

/* Annotators per chunk: enough items to share among threads, little memory. */
#define SIM_CHUNK_ITEMS 65536

int emdpo_simulate(const emdpo_sim_spec *s, emdpo_data **out, int32_t *true_type, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!s) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no spec");
    int rc;
    emdpo_inventory *own_inv = NULL;
    const emdpo_inventory *inv = s->inventory;
    if (s->design == EMDPO_SIM_PHRASES && !inv) {
        if ((rc = emdpo_inventory_builtin(&own_inv))) return rc;
        inv = own_inv;
    }
    if ((rc = spec_check(s, inv))) {
        emdpo_inventory_free(own_inv);
        return emdpo_diag_fail(diag, rc, rc == EMDPO_ERR_LIMIT ? "annotators x decisions x items x features is too large "
                                                                 "(its features alone would not fit in memory)"
                                                               : "inconsistent settings (e.g. more items per decision "
                                                                 "than phrases)");
    }
    const int K = s->pop.K, m = s->decisions, n = s->items, p = s->pop.p;
    const int64_t N = s->n_annotators;
    size_t per_annot = (size_t)m * (size_t)n;
    size_t cap = per_annot >= SIM_CHUNK_ITEMS ? 1 : SIM_CHUNK_ITEMS / per_annot;
    if ((int64_t)cap > N) cap = (size_t)N;

    emdpo_data_builder *b = NULL;
    sim_chunk c = {0};
    const char **texts = NULL;
    const char **group = NULL;
    char *default_names = NULL; /* (K, 16) */
    if ((rc = emdpo_data_builder_create(p, &b))) goto done;
    if (s->design == EMDPO_SIM_PHRASES &&
        (rc = emdpo_data_builder_set_feature_names(b, emdpo_trait_names)))
        goto done;
    /* Reserving up front keeps growth from doubling the largest arrays. */
    if ((rc = emdpo_data_builder_reserve(b, N * m, N * m * n))) goto done;
    if ((rc = chunk_alloc(&c, s, cap))) goto done;
    rc = EMDPO_ERR_NOMEM;
    if (!(texts = emdpo_malloc((size_t)n * sizeof(char *)))) goto done;
    if (!(group = emdpo_malloc((size_t)K * sizeof(char *)))) goto done;
    if (!s->pop.type_names && !(default_names = emdpo_malloc((size_t)K * 16))) goto done;
    for (int k = 0; k < K; k++) {
        if (s->pop.type_names) {
            group[k] = s->pop.type_names[k];
        } else {
            snprintf(default_names + (size_t)k * 16, 16, "P%d", k + 1);
            group[k] = default_names + (size_t)k * 16;
        }
    }
    rc = EMDPO_OK;
    for (int64_t start = 0; start < N && !rc; start += (int64_t)cap) {
        size_t cn = (size_t)(N - start < (int64_t)cap ? N - start : (int64_t)cap);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (cn * per_annot >= 4096)
#endif
        for (size_t a = 0; a < cn; a++) simulate_annotator(s, inv, &c, a, start + (int64_t)a);
        rc = chunk_emit(s, inv, &c, cn, start, group, texts, b, true_type);
    }

done:
    emdpo_free(default_names, (size_t)K * 16);
    emdpo_free(group, (size_t)K * sizeof(char *));
    emdpo_free((void *)texts, (size_t)n * sizeof(char *));
    if (c.cap) chunk_free(&c, s);
    emdpo_inventory_free(own_inv);
    if (rc) {
        emdpo_data_builder_free(b);
        return emdpo_diag_fail(diag, rc, "simulation failed: %s", emdpo_status_name(rc));
    }
    rc = emdpo_data_builder_finish(b, out);
    return rc ? emdpo_diag_fail(diag, rc, "simulation failed: %s", emdpo_status_name(rc)) : EMDPO_OK;
}

const char *emdpo_sim_response_name(int r) {
    return r == EMDPO_SIM_TOP ? "top" : r == EMDPO_SIM_RANKING ? "ranking" : NULL;
}

const char *emdpo_sim_design_name(int d) {
    return d == EMDPO_SIM_PHRASES ? "phrases" : d == EMDPO_SIM_GAUSSIAN ? "gaussian" : NULL;
}
