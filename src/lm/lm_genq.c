/* Generation quality; see lm_genq.h. */
#include "lm/lm_genq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/stats.h"
#include "base/hash.h"
#include "lm/engine/lm_sample.h"
#include "lm/io/lm_batch.h"
#include "lm/io/tokenizer.h"
#include "lm/lm_mixture.h"
#include "lm/lm_train.h"

void emdpo_genq_opts_init(emdpo_genq_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->samples = 5;
    o->max_tokens = 64;
    o->temperature = 1.0;
    o->max_prompts = 20;
    o->rep_n = 4;
    o->seed = 1;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

int64_t emdpo_genq_words(const char *text) {
    int64_t n = 0;
    for (const char *p = text; *p; p++)
        if (!is_space(*p) && (p == text || is_space(p[-1]))) n++;
    return n;
}

/* An n-gram counts as distinct unless an earlier one equals it: a
 * quadratic scan over the n-grams' hashes, exact on equal hashes. Samples
 * are at most max_tokens long, so this stays cheap and needs no table. */
double emdpo_genq_repetition(const int *ids, int n, int rep_n) {
    if (rep_n < 1 || n < rep_n) return 0.0;
    int grams = n - rep_n + 1, distinct = 0;
    uint64_t *h = emdpo_malloc((size_t)grams * sizeof *h);
    if (!h) return NAN;
    for (int i = 0; i < grams; i++) {
        uint64_t x = emdpo_hash_bytes(ids + i, (size_t)rep_n * sizeof *ids);
        h[i] = x;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = h[j] == x && memcmp(ids + j, ids + i, (size_t)rep_n * sizeof *ids) == 0;
        distinct += !seen;
    }
    emdpo_free(h, (size_t)grams * sizeof *h);
    return 1.0 - (double)distinct / (double)grams;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A copy of text without the white space at both ends. */
static char *trimmed(const char *text) {
    const char *b = text, *e = text + strlen(text);
    while (b < e && is_space(*b)) b++;
    while (e > b && is_space(e[-1])) e--;
    char *s = emdpo_malloc((size_t)(e - b) + 1);
    if (!s) return NULL;
    memcpy(s, b, (size_t)(e - b));
    s[e - b] = '\0';
    return s;
}

int emdpo_genq_closed_set(const char *const *texts, int64_t n, char ***out, int64_t *n_out) {
    *out = NULL;
    *n_out = 0;
    char **s = emdpo_calloc(n > 0 ? (size_t)n : 1, sizeof *s);
    if (!s) return EMDPO_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++)
        if (!(s[i] = trimmed(texts[i] ? texts[i] : ""))) {
            for (int64_t j = 0; j < i; j++) emdpo_strfree(s[j]);
            emdpo_free(s, (size_t)n * sizeof *s);
            return EMDPO_ERR_NOMEM;
        }
    qsort(s, (size_t)n, sizeof *s, cmp_str);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (m > 0 && strcmp(s[m - 1], s[i]) == 0) emdpo_strfree(s[i]);
        else s[m++] = s[i];
    }
    /* Shrink to the m entries emdpo_genq_closed_free is told of. */
    char **t = emdpo_realloc(s, (n > 0 ? (size_t)n : 1) * sizeof *s, (m > 0 ? (size_t)m : 1) * sizeof *s);
    if (!t) {
        for (int64_t i = 0; i < m; i++) emdpo_strfree(s[i]);
        emdpo_free(s, (n > 0 ? (size_t)n : 1) * sizeof *s);
        return EMDPO_ERR_NOMEM;
    }
    *out = t;
    *n_out = m;
    return EMDPO_OK;
}

void emdpo_genq_closed_free(char **s, int64_t n) {
    if (!s) return;
    for (int64_t i = 0; i < n; i++) emdpo_strfree(s[i]);
    emdpo_free(s, (n > 0 ? (size_t)n : 1) * sizeof *s);
}

int emdpo_genq_summarize(int64_t n, const int *ids, const int64_t *off, const char *const *text,
                         const double *logp, const double *ref_logp, const unsigned char *eos, int rep_n,
                         const char *const *closed, int64_t n_closed, emdpo_genq *out) {
    memset(out, 0, sizeof *out);
    out->n = n;
    double tokens = 0.0, words = 0.0, rep = 0.0, ends = 0.0, hits = 0.0;
    for (int64_t i = 0; i < n; i++) {
        int len = (int)(off[i + 1] - off[i]);
        tokens += len;
        words += (double)emdpo_genq_words(text[i]);
        double r = emdpo_genq_repetition(ids + off[i], len, rep_n);
        if (isnan(r)) return EMDPO_ERR_NOMEM;
        rep += r;
        ends += eos[i] != 0;
        if (closed) {
            char *t = trimmed(text[i]);
            if (!t) return EMDPO_ERR_NOMEM;
            hits += bsearch(&t, closed, (size_t)n_closed, sizeof *closed, cmp_str) != NULL;
            emdpo_strfree(t);
        }
    }
    double dn = n > 0 ? (double)n : NAN;
    out->mean_tokens = tokens / dn;
    out->mean_words = words / dn;
    out->repetition = rep / dn;
    out->eos = ends / dn;
    out->valid = out->valid_se = NAN;
    if (closed) {
        /* A share's standard error: sqrt(p (1 - p) / (n - 1)), the
         * sample-variance form emdpo_mean_se gives for 0/1 data. */
        out->valid = hits / dn;
        out->valid_se = n > 1 ? sqrt(out->valid * (1.0 - out->valid) / (dn - 1.0)) : NAN;
    }
    out->kl = out->kl_se = NAN;
    if (logp && ref_logp && n > 0) {
        double *d = emdpo_malloc((size_t)n * sizeof *d);
        if (!d) return EMDPO_ERR_NOMEM;
        for (int64_t i = 0; i < n; i++) d[i] = logp[i] - ref_logp[i];
        emdpo_mean_se(d, n, &out->kl, &out->kl_se);
        emdpo_free(d, (size_t)n * sizeof *d);
    }
    return EMDPO_OK;
}

/* Working memory of emdpo_lm_genq. */
typedef struct genq_work {
    size_t N, per, n_prompts;
    int **pid;           /* (n_prompts) tokenized prompts */
    size_t *pcap;        /* (n_prompts) */
    int *plen;           /* (n_prompts) */
    const int **pp;      /* (N) each sample's prompt */
    int *pl;             /* (N) */
    int *gen, *n_out, *stop, *member; /* (N * per), (N), (N), (N) */
    int *ids;            /* (N * per) the samples packed */
    int64_t *off;        /* (N + 1) */
    char **text;         /* (N) */
    size_t *tlen;        /* (N) each text's length (it may hold NUL bytes) */
    unsigned char *eos;  /* (N) */
    double *lp, *lref, *lmix; /* (M * N), (N), (N) */
    int M;
} genq_work;

static void work_free(genq_work *w) {
    for (size_t j = 0; w->pid && w->pcap && j < w->n_prompts; j++)
        emdpo_free(w->pid[j], w->pcap[j] * sizeof *w->pid[j]);
    emdpo_free(w->pid, w->n_prompts * sizeof *w->pid);
    emdpo_free(w->pcap, w->n_prompts * sizeof *w->pcap);
    emdpo_free(w->plen, w->n_prompts * sizeof *w->plen);
    emdpo_free((void *)w->pp, w->N * sizeof *w->pp);
    emdpo_free(w->pl, w->N * sizeof *w->pl);
    emdpo_free(w->gen, w->N * w->per * sizeof *w->gen);
    emdpo_free(w->ids, w->N * w->per * sizeof *w->ids);
    emdpo_free(w->n_out, w->N * sizeof *w->n_out);
    emdpo_free(w->stop, w->N * sizeof *w->stop);
    emdpo_free(w->member, w->N * sizeof *w->member);
    emdpo_free(w->off, (w->N + 1) * sizeof *w->off);
    for (size_t i = 0; w->text && w->tlen && i < w->N; i++) emdpo_free(w->text[i], w->text[i] ? w->tlen[i] + 1 : 0);
    emdpo_free(w->text, w->N * sizeof *w->text);
    emdpo_free(w->tlen, w->N * sizeof *w->tlen);
    emdpo_free(w->eos, w->N * sizeof *w->eos);
    emdpo_free(w->lp, (size_t)w->M * w->N * sizeof *w->lp);
    emdpo_free(w->lref, w->N * sizeof *w->lref);
    emdpo_free(w->lmix, w->N * sizeof *w->lmix);
}

static int work_alloc(genq_work *w, size_t n_prompts, size_t N, size_t per, int M) {
    w->n_prompts = n_prompts;
    w->N = N;
    w->per = per;
    w->M = M;
    w->pid = emdpo_calloc(n_prompts, sizeof *w->pid);
    w->pcap = emdpo_calloc(n_prompts, sizeof *w->pcap);
    w->plen = emdpo_calloc(n_prompts, sizeof *w->plen);
    w->pp = emdpo_malloc(N * sizeof *w->pp);
    w->pl = emdpo_malloc(N * sizeof *w->pl);
    w->gen = emdpo_malloc(N * per * sizeof *w->gen);
    w->ids = emdpo_malloc(N * per * sizeof *w->ids);
    w->n_out = emdpo_malloc(N * sizeof *w->n_out);
    w->stop = emdpo_malloc(N * sizeof *w->stop);
    w->member = emdpo_malloc(N * sizeof *w->member);
    w->off = emdpo_malloc((N + 1) * sizeof *w->off);
    w->text = emdpo_calloc(N, sizeof *w->text);
    w->tlen = emdpo_calloc(N, sizeof *w->tlen);
    w->eos = emdpo_malloc(N * sizeof *w->eos);
    w->lp = emdpo_malloc((size_t)M * N * sizeof *w->lp);
    w->lref = emdpo_malloc(N * sizeof *w->lref);
    w->lmix = emdpo_malloc(N * sizeof *w->lmix);
    return w->pid && w->pcap && w->plen && w->pp && w->pl && w->gen && w->ids && w->n_out && w->stop &&
                   w->member && w->off && w->text && w->tlen && w->eos && w->lp && w->lref && w->lmix
               ? EMDPO_OK
               : EMDPO_ERR_NOMEM;
}

int emdpo_lm_genq(const emdpo_llama *const *members, const double *w, int M, const emdpo_llama *ref,
                  const emdpo_tokenizer *tok, const char *const *prompts, int64_t n_prompts,
                  const char *const *closed, int64_t n_closed, const emdpo_genq_opts *o, int batch, emdpo_genq *out) {
    static const double one = 1.0;
    if (!members || M < 1 || M > EMDPO_MAX_K || (M > 1 && !w) || !ref || !tok || !prompts || n_prompts < 1 || !o ||
        !out || batch < 1 || o->samples < 1 || o->max_tokens < 1 || !(o->temperature > 0) ||
        !isfinite(o->temperature) ||
        o->rep_n < 1 || (int64_t)o->samples * n_prompts > INT32_MAX / 2 || (size_t)o->max_tokens > INT32_MAX / 2)
        return EMDPO_ERR_INVALID_ARG;
    if (!w) w = &one;
    int rc = emdpo_mixture_check(members, M, NULL);
    if (rc) return rc;
    const emdpo_llama *const pair[2] = {members[0], ref};
    if ((rc = emdpo_mixture_check(pair, 2, NULL))) return rc;
    int T = emdpo_llama_context(&members[0]->config), S = o->samples;
    genq_work wk;
    memset(&wk, 0, sizeof wk);
    size_t N = (size_t)n_prompts * (size_t)S, per = (size_t)o->max_tokens;
    emdpo_sampler *smp = NULL;
    emdpo_lm_set *set = NULL;
    rc = work_alloc(&wk, (size_t)n_prompts, N, per, M);
    /* Prompts keep BOS and their last tokens, leaving one token of room
     * for a response and one for EOS. */
    if (!rc && T < 3) rc = EMDPO_ERR_LIMIT;
    for (int64_t j = 0; !rc && j < n_prompts; j++)
        rc = emdpo_lm_prompt_encode(tok, prompts[j], T - 2, &wk.pid[j], &wk.pcap[j], &wk.plen[j]);
    for (size_t i = 0; !rc && i < N; i++) {
        wk.pp[i] = wk.pid[i / (size_t)S];
        wk.pl[i] = wk.plen[i / (size_t)S];
    }
    if (!rc) rc = emdpo_sampler_create(members[0]->config.vocab_size, (float)o->temperature, 0, 1.0f, &smp);
    if (!rc) emdpo_tokenizer_stop_sampler(tok, smp);
    if (!rc)
        rc = emdpo_mixture_generate(members, M, w, smp, o->seed, wk.pp, wk.pl, (int)N, o->max_tokens, T - 1,
                                    wk.member, wk.gen, wk.n_out, wk.stop);
    if (!rc) rc = emdpo_lm_set_create(T, T - 2, &set);
    if (!rc) wk.off[0] = 0;
    for (size_t i = 0; !rc && i < N; i++) {
        const int *g = wk.gen + i * per;
        memcpy(wk.ids + wk.off[i], g, (size_t)wk.n_out[i] * sizeof *wk.ids);
        wk.off[i + 1] = wk.off[i] + wk.n_out[i];
        wk.eos[i] = wk.stop[i] == EMDPO_GEN_EOS;
        rc = emdpo_tokenizer_decode_alloc(tok, g, (size_t)wk.n_out[i], &wk.text[i], &wk.tlen[i]);
        if (!rc) rc = emdpo_lm_set_add_tokens(set, wk.pp[i], wk.pl[i], g, wk.n_out[i], wk.eos[i] ? emdpo_tokenizer_eos(tok) : -1);
    }
    for (int k = 0; !rc && k < M; k++) rc = emdpo_lm_score(members[k], set, batch, wk.lp + (size_t)k * N);
    if (!rc) rc = emdpo_lm_score(ref, set, batch, wk.lref);
    if (!rc) {
        emdpo_mixture_logp(M, w, (int64_t)N, wk.lp, wk.lmix);
        rc = emdpo_genq_summarize((int64_t)N, wk.ids, wk.off, (const char *const *)wk.text, wk.lmix, wk.lref, wk.eos,
                                  o->rep_n, closed, n_closed, out);
        if (!rc && !isfinite(out->kl)) rc = EMDPO_ERR_NUMERIC;
    }
    emdpo_lm_set_free(set);
    emdpo_sampler_free(smp);
    work_free(&wk);
    return rc;
}
