/* The paper's Table 1 for ensembles of Llama policies (emdpo/lm.h's
 * emdpo_eval_run): each method directory's type_N/ policies on held-out
 * data with true groups, the max-mean reward margin and the best policy's
 * accuracy per group, and optionally the adjusted Rand index of a
 * posterior against the groups. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json_write.h"
#include "data/data.h"
#include "lm/engine/llama.h"
#include "lm/io/lm_batch.h"
#include "lm/io/peft.h"
#include "lm/lm_adapted.h"
#include "lm/lm_eval.h"
#include "lm/lm_genq.h"
#include "lm/lm_mixture.h"

/* One method: a directory and the numbers of its type_N subdirectories. */
typedef struct method {
    char *dir;
    char *name;
    int on_ref;           /* its policies are adapters run on the reference (emdpo_eval_opts.adapters) */
    int single;           /* dir is one adapter directory, its only policy type_1 */
    int n, *types;
    double *margin, *acc; /* (n, G) */
    int *best;            /* (G) index into types, -1 when none */
    double *max_margin, *best_acc;
} method;

struct emdpo_eval {
    emdpo_eval_opts o;
    int nm, G;
    method *ms;
    char **group;         /* (G) */
    int64_t *n_dec;       /* (G) decisions per group */
    int has_ari;
    double ari;
    int64_t n_ari;
    /* generation quality (o.generate) */
    int n_gq, gq_rows;    /* rows done, rows allocated */
    char **gq_name;       /* (gq_rows) */
    emdpo_genq *gq;       /* (gq_rows) */
    const char **prompts; /* (n_prompts) borrowed from the data */
    int64_t n_prompts;
    char **closed;        /* (n_closed) the closed response set, or NULL */
    int64_t n_closed;
};

/* A string with its first index, to find first appearances by sorting. */
typedef struct first_seen {
    const char *s;
    int64_t at;
} first_seen;

static int cmp_first_seen(const void *x, const void *y) {
    const first_seen *a = x, *b = y;
    int c = strcmp(a->s, b->s);
    return c ? c : (a->at > b->at) - (a->at < b->at);
}

static int cmp_i64(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* The data's first max_prompts distinct prompts (all when 0), in order of
 * first appearance, and its closed response set when asked for. */
static int gen_setup(emdpo_eval *e, const emdpo_data *d) {
    size_t n = (size_t)d->n_dec;
    first_seen *fs = emdpo_malloc((n ? n : 1) * sizeof *fs);
    int64_t *first = emdpo_malloc((n ? n : 1) * sizeof *first), nf = 0;
    int rc = fs && first ? EMDPO_OK : EMDPO_ERR_NOMEM;
    for (size_t j = 0; !rc && j < n; j++) {
        fs[j].s = d->dec_prompt && d->dec_prompt[j] ? d->dec_prompt[j] : "";
        fs[j].at = (int64_t)j;
    }
    if (!rc) {
        qsort(fs, n, sizeof *fs, cmp_first_seen);
        for (size_t j = 0; j < n; j++)
            if (j == 0 || strcmp(fs[j].s, fs[j - 1].s) != 0) first[nf++] = fs[j].at;
        qsort(first, (size_t)nf, sizeof *first, cmp_i64);
        int64_t keep = e->o.genq.max_prompts > 0 && e->o.genq.max_prompts < nf ? e->o.genq.max_prompts : nf;
        if (!(e->prompts = emdpo_malloc((size_t)(keep ? keep : 1) * sizeof *e->prompts))) rc = EMDPO_ERR_NOMEM;
        for (int64_t i = 0; !rc && i < keep; i++)
            e->prompts[i] = d->dec_prompt && d->dec_prompt[first[i]] ? d->dec_prompt[first[i]] : "";
        e->n_prompts = keep;
    }
    emdpo_free(fs, (n ? n : 1) * sizeof *fs);
    emdpo_free(first, (n ? n : 1) * sizeof *first);
    if (!rc && e->o.closed_set)
        rc = emdpo_genq_closed_set((const char *const *)d->item_text, d->n_items, &e->closed, &e->n_closed);
    return rc;
}

/* Generation quality of the mixture of models[0..M) (w NULL: one model)
 * as the next row, labelled name. */
static int gen_row(emdpo_eval *e, const char *name, const emdpo_llama *const *models, const double *w, int M,
                   const emdpo_llama *ref, const emdpo_tokenizer *tok, emdpo_diag *diag) {
    int i = e->n_gq;
    if (!(e->gq_name[i] = emdpo_strdup(name))) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    e->n_gq++;
    int rc = emdpo_lm_genq(models, w, M, ref, tok, e->prompts, e->n_prompts, (const char *const *)e->closed,
                           e->n_closed, &e->o.genq, e->o.batch, &e->gq[i]);
    if (rc)
        emdpo_diag_fail(diag, rc, "%s: generation quality: %s", name,
                        rc == EMDPO_ERR_INVALID_ARG ? "its vocabulary or context differs from the reference's"
                                                    : emdpo_status_name(rc));
    return rc;
}

void emdpo_eval_opts_init(emdpo_eval_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->beta = 0.1;
    o->batch = 16;
    emdpo_genq_opts_init(&o->genq);
}

static int cmp_int(const void *x, const void *y) {
    int a = *(const int *)x, b = *(const int *)y;
    return (a > b) - (a < b);
}

/* The type_N subdirectories holding a config.json (a checkpoint) or an
 * adapter_config.json (a PEFT adapter), in N order; an adapter method's
 * directory that is itself an adapter is its one policy, type_1. */
static int list_types(method *m, emdpo_diag *diag) {
    if (m->on_ref && emdpo_peft_is_dir(m->dir)) {
        if (!(m->types = emdpo_malloc(sizeof *m->types))) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        m->types[0] = 1;
        m->n = m->single = 1;
        return EMDPO_OK;
    }
    DIR *dp = opendir(m->dir);
    if (!dp) return emdpo_diag_at(diag, EMDPO_ERR_IO, m->dir, 0, "cannot open the directory");
    size_t cap = 0;
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(dp))) {
        int k, used = 0;
        if (sscanf(e->d_name, "type_%d%n", &k, &used) != 1 || e->d_name[used] || k < 1) continue;
        char *sub = emdpo_path_join(m->dir, e->d_name), *cfg = sub ? emdpo_path_join(sub, "config.json") : NULL;
        int have = cfg && (emdpo_path_exists(cfg) || emdpo_peft_is_dir(sub));
        if (!cfg) rc = EMDPO_ERR_NOMEM;
        emdpo_strfree(sub);
        emdpo_strfree(cfg);
        if (rc || !have) continue;
        if (emdpo_grow((void **)&m->types, &cap, (size_t)m->n + 1, sizeof *m->types)) rc = EMDPO_ERR_NOMEM;
        else m->types[m->n++] = k;
    }
    closedir(dp);
    if (!rc && m->n == 0)
        rc = emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, m->dir, 0,
                           m->on_ref ? "neither a PEFT adapter directory nor one of type_N/ adapter directories"
                                     : "no type_N/ policy directories");
    if (rc == EMDPO_ERR_NOMEM) emdpo_diag_fail(diag, rc, "out of memory");
    if (!rc) {
        qsort(m->types, (size_t)m->n, sizeof *m->types, cmp_int);
        /* Trim the capacity so that the free size is n. */
        int *t = emdpo_realloc(m->types, cap * sizeof *t, (size_t)m->n * sizeof *t);
        if (t) m->types = t;
        else rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    if (rc) {
        emdpo_free(m->types, cap * sizeof *m->types);
        m->types = NULL;
        m->n = 0;
    }
    return rc;
}

static void method_free(method *m, int G) {
    emdpo_strfree(m->dir);
    emdpo_strfree(m->name);
    emdpo_free(m->types, (size_t)m->n * sizeof *m->types);
    emdpo_free(m->margin, (size_t)m->n * G * sizeof *m->margin);
    emdpo_free(m->acc, (size_t)m->n * G * sizeof *m->acc);
    emdpo_free(m->best, (size_t)G * sizeof *m->best);
    emdpo_free(m->max_margin, (size_t)G * sizeof *m->max_margin);
    emdpo_free(m->best_acc, (size_t)G * sizeof *m->best_acc);
}

/* Generation-quality rows: the reference, every type, the extra policies. */
static int eval_rows(const emdpo_eval *e) {
    int rows = 1 + e->o.n_gen;
    for (int j = 0; j < e->nm; j++) rows += e->ms[j].n;
    return rows;
}

void emdpo_eval_free(emdpo_eval *e) {
    if (!e) return;
    for (int j = 0; e->ms && j < e->nm; j++) method_free(&e->ms[j], e->G);
    emdpo_free(e->ms, (size_t)e->nm * sizeof *e->ms);
    for (int g = 0; e->group && g < e->G; g++) emdpo_strfree(e->group[g]);
    emdpo_free(e->group, (size_t)e->G * sizeof *e->group);
    emdpo_free(e->n_dec, (size_t)e->G * sizeof *e->n_dec);
    for (int i = 0; e->gq_name && i < e->n_gq; i++) emdpo_strfree(e->gq_name[i]);
    emdpo_free(e->gq_name, (size_t)e->gq_rows * sizeof *e->gq_name);
    emdpo_free(e->gq, (size_t)e->gq_rows * sizeof *e->gq);
    emdpo_free(e->prompts, (size_t)(e->n_prompts ? e->n_prompts : 1) * sizeof *e->prompts);
    emdpo_genq_closed_free(e->closed, e->n_closed);
    emdpo_free(e, sizeof *e);
}

/* Generation quality: the rows' storage, the prompts and closed set, and
 * the reference's own row. */
static int gen_start(emdpo_eval *e, const emdpo_data *d, const emdpo_llama *ref, const emdpo_tokenizer *tok,
                     emdpo_diag *diag) {
    size_t rows = (size_t)eval_rows(e);
    e->gq_rows = (int)rows;
    e->gq_name = emdpo_calloc(rows, sizeof *e->gq_name);
    e->gq = emdpo_calloc(rows, sizeof *e->gq);
    if (!e->gq_name || !e->gq || gen_setup(e, d)) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (e->n_prompts == 0) return emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, d->source, 0, "no prompts to sample on");
    return gen_row(e, "reference", &ref, NULL, 1, ref, tok, diag);
}

/* The generation-quality row of a policy: as it is, or (an adapter) merged
 * into a float32 copy of its base, which the decoders run. */
static int gen_policy_row(emdpo_eval *e, const char *name, const emdpo_lm_policy *p, const emdpo_llama *ref,
                          const emdpo_tokenizer *tok, emdpo_diag *diag) {
    const emdpo_llama *plain = NULL;
    emdpo_llama *owned = NULL;
    int rc = emdpo_lm_policy_plain(p, &plain, &owned, diag);
    if (!rc) rc = gen_row(e, name, &plain, NULL, 1, ref, tok, diag);
    emdpo_llama_free(owned);
    return rc;
}

/* An extra policy's row: a checkpoint or a mixture.json. */
static int gen_extra(emdpo_eval *e, const char *name, const char *path, const emdpo_llama *ref,
                     const emdpo_tokenizer *tok, emdpo_diag *diag) {
    emdpo_mixture *mix = NULL;
    emdpo_llama *m = NULL;
    int rc = emdpo_mixture_is_file(path) ? emdpo_mixture_open(path, &mix, diag) : emdpo_llama_load_frozen(path, &m, diag);
    if (!rc && mix)
        rc = gen_row(e, name, (const emdpo_llama *const *)mix->model, mix->w, mix->K, ref, tok, diag);
    else if (!rc)
        rc = gen_row(e, name, (const emdpo_llama *const *)&m, NULL, 1, ref, tok, diag);
    emdpo_mixture_free(mix);
    emdpo_llama_free(m);
    return rc;
}

static int eval_method(emdpo_eval *e, method *m, const emdpo_llama *ref, const emdpo_tokenizer *tok,
                       emdpo_lm_evaluator *ev, int G, emdpo_diag *diag) {
    size_t ng = (size_t)m->n * G;
    m->margin = emdpo_malloc(ng * sizeof *m->margin);
    m->acc = emdpo_malloc(ng * sizeof *m->acc);
    m->best = emdpo_malloc((size_t)G * sizeof *m->best);
    m->max_margin = emdpo_malloc((size_t)G * sizeof *m->max_margin);
    m->best_acc = emdpo_malloc((size_t)G * sizeof *m->best_acc);
    if (!m->margin || !m->acc || !m->best || !m->max_margin || !m->best_acc)
        return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n; i++) {
        char name[32];
        snprintf(name, sizeof name, "type_%d", m->types[i]);
        char *path = m->single ? emdpo_strdup(m->dir) : emdpo_path_join(m->dir, name);
        emdpo_lm_policy pol = {0};
        int rc = !path                            ? emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory")
                 : m->on_ref && !emdpo_peft_is_dir(path) ? emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, path, 0,
                                                                         "not a PEFT adapter directory")
                                                         : emdpo_lm_policy_open(path, ref, m->on_ref, &pol, diag);
        if (!rc && pol.model->config.vocab_size != ref->config.vocab_size)
            rc = emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, path, 0, "vocabulary %d, the reference's is %d",
                               pol.model->config.vocab_size, ref->config.vocab_size);
        else if (!rc && (rc = emdpo_lm_evaluate_lora(ev, pol.model, pol.lo, m->margin + (size_t)i * G,
                                                     m->acc + (size_t)i * G, NULL)))
            emdpo_diag_at(diag, rc, path, 0,
                          rc == EMDPO_ERR_LIMIT ? "a sequence does not fit the policy (context or vocabulary)"
                                                : "scoring failed: %s",
                          emdpo_status_name(rc));
        if (!rc && e->gq) {
            char row[512];
            snprintf(row, sizeof row, "%s/%s", m->name, name);
            rc = gen_policy_row(e, row, &pol, ref, tok, diag);
        }
        emdpo_lm_policy_close(&pol);
        emdpo_strfree(path);
        if (rc) return rc;
    }
    emdpo_lm_eval_best(m->n, G, m->margin, m->acc, m->best, m->max_margin, m->best_acc);
    return EMDPO_OK;
}

/* ARI between the argmax of a posterior and the true groups of the
 * annotators present in both. */
static int posterior_ari(emdpo_eval *e, const emdpo_data *d, emdpo_diag *diag) {
    emdpo_posterior *p = NULL;
    int rc = emdpo_posterior_read(e->o.posterior, 0, &p, diag);
    if (rc) return rc;
    size_t na = (size_t)d->n_annot;
    int32_t *a = emdpo_malloc((na + 1) * sizeof *a), *b = emdpo_malloc((na + 1) * sizeof *b);
    int K = emdpo_posterior_k(p);
    int64_t n = 0;
    if (!a || !b) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < na; i++) {
        int64_t row = emdpo_posterior_find(p, d->annot_name[i]);
        if (row < 0 || d->annot_group[i] < 0) continue;
        int arg = 0;
        double top = -1;
        for (int k = 0; k < K; k++) {
            double v = emdpo_posterior_gamma(p, row, k);
            if (v > top) {
                top = v;
                arg = k;
            }
        }
        a[n] = arg;
        b[n++] = d->annot_group[i];
    }
    if (!rc && n == 0)
        rc = emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, e->o.posterior, 0,
                           "no annotator of the posterior has a group in the data");
    if (!rc) {
        e->ari = emdpo_adjusted_rand_index(a, b, n);
        e->n_ari = n;
        e->has_ari = 1;
        if (isnan(e->ari)) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "adjusted Rand index: out of memory");
    }
    emdpo_free(a, a ? (na + 1) * sizeof *a : 0);
    emdpo_free(b, b ? (na + 1) * sizeof *b : 0);
    emdpo_posterior_free(p);
    return rc;
}

/* The method directories, then the adapters', and their row labels (the
 * last component). */
static int methods(emdpo_eval *e, const char *const *dirs, int n_dirs, emdpo_diag *diag) {
    for (int j = 0; j < e->nm; j++) {
        method *m = &e->ms[j];
        const char *dir = j < n_dirs ? dirs[j] : e->o.adapters[j - n_dirs];
        m->on_ref = j >= n_dirs;
        if (!dir || !*dir) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "empty method directory name");
        if (!(m->dir = emdpo_strdup(dir))) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        size_t len = strlen(m->dir);
        while (len > 1 && m->dir[len - 1] == '/') m->dir[--len] = 0;
        const char *slash = strrchr(m->dir, '/');
        if (!(m->name = emdpo_strdup(slash && slash[1] ? slash + 1 : m->dir)))
            return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    for (int j = 0; j < e->nm; j++) {
        int rc = list_types(&e->ms[j], diag);
        if (rc) return rc;
    }
    return EMDPO_OK;
}

int emdpo_eval_run(const emdpo_llama *ref, const emdpo_tokenizer *tok, const emdpo_data *d,
                   const char *const *method_dirs, int n_methods, const emdpo_eval_opts *o, emdpo_eval **out,
                   emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!ref || !tok || !d || !o || n_methods < 0 || (n_methods && !method_dirs) || o->n_adapters < 0 ||
        (o->n_adapters && !o->adapters) || n_methods + o->n_adapters < 1)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no model, tokenizer, data, methods or options");
    if (!(o->beta > 0) || !isfinite(o->beta)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "beta must be > 0");
    if (o->batch < 1) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "batch must be >= 1");
    if (o->generate) {
        const emdpo_genq_opts *q = &o->genq;
        if (q->samples < 1 || q->max_tokens < 1 || q->rep_n < 1 || q->max_prompts < 0)
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                                   "samples, max_tokens and rep_n must be >= 1, max_prompts >= 0");
        if (!(q->temperature > 0) || !isfinite(q->temperature))
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "temperature must be > 0");
        if (o->n_gen < 0 || (o->n_gen > 0 && (!o->gen_names || !o->gen_paths)))
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "extra policies need names and paths");
        for (int i = 0; i < o->n_gen; i++)
            if (!o->gen_names[i] || !*o->gen_names[i] || !o->gen_paths[i] || !*o->gen_paths[i])
                return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "extra policy %d has an empty name or path", i + 1);
    }
    emdpo_eval *e = emdpo_calloc(1, sizeof *e);
    if (!e) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    e->o = *o;
    e->nm = n_methods + o->n_adapters;
    e->ari = NAN;
    emdpo_lm_set *set = NULL;
    emdpo_lm_evaluator *ev = NULL;
    int rc = (e->ms = emdpo_calloc((size_t)e->nm, sizeof *e->ms)) ? methods(e, method_dirs, n_methods, diag)
                                                                       : emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (!rc) rc = emdpo_lm_lengths(ref, &e->o.max_length, &e->o.max_prompt_length, diag);
    if (!rc && !emdpo_data_has_text(d))
        rc = emdpo_diag_at(diag, EMDPO_ERR_UNSUPPORTED, d->source, 0, "responses have no text; eval needs text responses");
    if (!rc && d->n_groups == 0)
        rc = emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, d->source, 0,
                           "no \"group\" field: eval needs each annotator's true group");
    if (!rc) {
        e->G = d->n_groups;
        e->n_dec = emdpo_calloc((size_t)e->G, sizeof *e->n_dec);
        e->group = emdpo_calloc((size_t)e->G, sizeof *e->group);
        if (!e->n_dec || !e->group) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        for (int g = 0; !rc && g < e->G; g++)
            if (!(e->group[g] = emdpo_strdup(d->group_name[g]))) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    if (!rc && ((rc = emdpo_lm_set_from_data(d, tok, e->o.max_length, e->o.max_prompt_length, &set)) ||
                (rc = emdpo_lm_evaluator_create(ref, d, set, o->beta, o->batch, &ev))))
        emdpo_diag_fail(diag, rc,
                        rc == EMDPO_ERR_LIMIT ? "a sequence does not fit the reference (context or vocabulary)"
                                              : "cannot set up the evaluation: %s",
                        emdpo_status_name(rc));
    for (int64_t i = 0; !rc && i < d->n_annot; i++)
        if (d->annot_group[i] >= 0) e->n_dec[d->annot_group[i]] += d->annot_dec[i + 1] - d->annot_dec[i];
    if (!rc && o->generate) rc = gen_start(e, d, ref, tok, diag);
    for (int j = 0; !rc && j < e->nm; j++) rc = eval_method(e, &e->ms[j], ref, tok, ev, e->G, diag);
    for (int i = 0; !rc && e->gq && i < o->n_gen; i++)
        rc = gen_extra(e, o->gen_names[i], o->gen_paths[i], ref, tok, diag);
    if (!rc && o->posterior) rc = posterior_ari(e, d, diag);
    emdpo_lm_evaluator_free(ev);
    emdpo_lm_set_free(set);
    if (rc) {
        emdpo_eval_free(e);
        return rc;
    }
    *out = e;
    return EMDPO_OK;
}

int emdpo_eval_n_genq(const emdpo_eval *e) { return e ? e->n_gq : 0; }

const emdpo_genq *emdpo_eval_genq(const emdpo_eval *e, int i, const char **name) {
    if (!e || i < 0 || i >= e->n_gq) {
        if (name) *name = NULL;
        return NULL;
    }
    if (name) *name = e->gq_name[i];
    return &e->gq[i];
}

static const method *method_at(const emdpo_eval *e, int j) { return e && j >= 0 && j < e->nm ? &e->ms[j] : NULL; }

int emdpo_eval_n_methods(const emdpo_eval *e) { return e ? e->nm : 0; }
int emdpo_eval_n_groups(const emdpo_eval *e) { return e ? e->G : 0; }
const char *emdpo_eval_group_name(const emdpo_eval *e, int g) { return e && g >= 0 && g < e->G ? e->group[g] : NULL; }

const char *emdpo_eval_method_name(const emdpo_eval *e, int j) {
    const method *m = method_at(e, j);
    return m ? m->name : NULL;
}

int emdpo_eval_n_policies(const emdpo_eval *e, int j) {
    const method *m = method_at(e, j);
    return m ? m->n : 0;
}

int emdpo_eval_policy(const emdpo_eval *e, int j, int i) {
    const method *m = method_at(e, j);
    return m && i >= 0 && i < m->n ? m->types[i] : -1;
}

double emdpo_eval_margin(const emdpo_eval *e, int j, int i, int g) {
    const method *m = method_at(e, j);
    return m && i >= 0 && i < m->n && g >= 0 && g < e->G ? m->margin[(size_t)i * e->G + g] : NAN;
}

double emdpo_eval_accuracy(const emdpo_eval *e, int j, int i, int g) {
    const method *m = method_at(e, j);
    return m && i >= 0 && i < m->n && g >= 0 && g < e->G ? m->acc[(size_t)i * e->G + g] : NAN;
}

int emdpo_eval_best(const emdpo_eval *e, int j, int g) {
    const method *m = method_at(e, j);
    return m && g >= 0 && g < e->G ? m->best[g] : -1;
}

double emdpo_eval_max_margin(const emdpo_eval *e, int j, int g) {
    const method *m = method_at(e, j);
    return m && g >= 0 && g < e->G ? m->max_margin[g] : NAN;
}

double emdpo_eval_best_accuracy(const emdpo_eval *e, int j, int g) {
    const method *m = method_at(e, j);
    return m && g >= 0 && g < e->G ? m->best_acc[g] : NAN;
}

double emdpo_eval_ari(const emdpo_eval *e, int64_t *n) {
    if (n) *n = e ? e->n_ari : 0;
    return e ? e->ari : NAN;
}

static void write_genq(const emdpo_eval *e, FILE *fp) {
    const emdpo_genq_opts *q = &e->o.genq;
    fprintf(fp, ",\n  \"generation\": {\"samples_per_prompt\": %d, \"prompts\": %lld, \"max_tokens\": %d, "
                "\"temperature\": ",
            q->samples, (long long)e->n_prompts, q->max_tokens);
    emdpo_json_num(fp, q->temperature);
    fprintf(fp, ", \"rep_n\": %d, \"seed\": %llu, \"closed_set\": ", q->rep_n, (unsigned long long)q->seed);
    if (e->closed) fprintf(fp, "%lld", (long long)e->n_closed);
    else fputs("null", fp);
    fputs(",\n    \"policies\": [", fp);
    for (int i = 0; i < e->n_gq; i++) {
        const emdpo_genq *g = &e->gq[i];
        fputs(i ? ",\n      {\"name\": " : "\n      {\"name\": ", fp);
        emdpo_json_str(fp, e->gq_name[i]);
        fprintf(fp, ", \"n\": %lld", (long long)g->n);
        const char *key[] = {"valid", "valid_se", "mean_tokens", "mean_words", "repetition", "eos", "kl", "kl_se"};
        const double val[] = {g->valid, g->valid_se, g->mean_tokens, g->mean_words, g->repetition, g->eos, g->kl,
                              g->kl_se};
        for (size_t k = 0; k < sizeof key / sizeof *key; k++) {
            fprintf(fp, ", \"%s\": ", key[k]);
            emdpo_json_num(fp, val[k]);
        }
        fputc('}', fp);
    }
    fputs("\n    ]}", fp);
}

int emdpo_eval_write_json(const emdpo_eval *e, FILE *fp) {
    if (!e || !fp) return EMDPO_ERR_INVALID_ARG;
    int G = e->G;
    fputs("{\n  \"beta\": ", fp);
    emdpo_json_num(fp, e->o.beta);
    fputs(",\n  \"groups\": [", fp);
    for (int g = 0; g < G; g++) {
        if (g) fputs(", ", fp);
        emdpo_json_str(fp, e->group[g]);
    }
    fputs("],\n  \"decisions\": [", fp);
    for (int g = 0; g < G; g++) fprintf(fp, "%s%lld", g ? ", " : "", (long long)e->n_dec[g]);
    fputs("],\n  \"methods\": [", fp);
    for (int j = 0; j < e->nm; j++) {
        const method *m = &e->ms[j];
        fputs(j ? ",\n    {\"name\": " : "\n    {\"name\": ", fp);
        emdpo_json_str(fp, m->name);
        fputs(", \"dir\": ", fp);
        emdpo_json_str(fp, m->dir);
        fputs(", \"policies\": [", fp);
        for (int i = 0; i < m->n; i++) fprintf(fp, "%s\"type_%d\"", i ? ", " : "", m->types[i]);
        fputs("],\n     \"max_mean_margin\": ", fp);
        emdpo_json_nums(fp, m->max_margin, G);
        fputs(", \"accuracy\": ", fp);
        emdpo_json_nums(fp, m->best_acc, G);
        fputs(", \"best\": [", fp);
        for (int g = 0; g < G; g++) {
            if (g) fputs(", ", fp);
            if (m->best[g] < 0) fputs("null", fp);
            else fprintf(fp, "\"type_%d\"", m->types[m->best[g]]);
        }
        fputs("],\n     \"policy_margin\": [", fp);
        for (int i = 0; i < m->n; i++) {
            if (i) fputs(", ", fp);
            emdpo_json_nums(fp, m->margin + (size_t)i * G, G);
        }
        fputs("], \"policy_accuracy\": [", fp);
        for (int i = 0; i < m->n; i++) {
            if (i) fputs(", ", fp);
            emdpo_json_nums(fp, m->acc + (size_t)i * G, G);
        }
        fputs("]}", fp);
    }
    fputs("\n  ]", fp);
    if (e->has_ari) {
        fputs(",\n  \"ari\": ", fp);
        emdpo_json_num(fp, e->ari);
        fprintf(fp, ",\n  \"ari_annotators\": %lld", (long long)e->n_ari);
    }
    if (e->gq) write_genq(e, fp);
    fputs("\n}\n", fp);
    return ferror(fp) ? EMDPO_ERR_IO : EMDPO_OK;
}

static void write_eval(FILE *fp, const void *ctx) { emdpo_eval_write_json(ctx, fp); }

int emdpo_eval_save(const emdpo_eval *e, const char *path, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!e || !path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no result or path");
    return emdpo_afile_write(path, write_eval, e, diag);
}
