/* Seeded splits of a dataset's annotators, for validation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/dist.h"
#include "base/rng.h"
#include "data/data.h"

int64_t emdpo_holdout_count(int64_t n, double holdout) {
    if (!(holdout > 0 && holdout < 1) || n < 0) return -1;
    return (int64_t)llround((double)n * holdout);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t u = *(const int64_t *)a, v = *(const int64_t *)b;
    return (u > v) - (u < v);
}

/* The held-out annotators of 0 .. n - 1, ascending, in held (nv): the
 * first nv slots of a partial Fisher-Yates shuffle seeded by seed. The
 * shuffle is followed through the slots it touches alone (those below nv
 * in held, the others in an open-addressing table of slot -> annotator),
 * so that it takes memory in proportion to nv, not n, and every process of
 * an MPI job draws the one split without holding every annotator. */
static int heldout_of(int64_t n, int64_t nv, uint64_t seed, int64_t *held) {
    size_t cap = 1;
    while (cap < 2 * (size_t)nv) cap *= 2;
    int64_t *key = emdpo_malloc(cap * sizeof(int64_t)), *val = emdpo_malloc(cap * sizeof(int64_t));
    if (!key || !val) {
        emdpo_free(key, cap * sizeof(int64_t));
        emdpo_free(val, cap * sizeof(int64_t));
        return EMDPO_ERR_NOMEM;
    }
    for (size_t s = 0; s < cap; s++) key[s] = -1;
    for (int64_t i = 0; i < nv; i++) held[i] = i;
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, 0);
    for (int64_t i = 0; i < nv; i++) {
        int64_t j = i + (int64_t)emdpo_rng_below(&r, (uint64_t)(n - i)), t = held[i];
        if (j < nv) {
            held[i] = held[j];
            held[j] = t;
            continue;
        }
        /* At most nv slots past nv are ever touched: the table stays half empty. */
        uint64_t h = (uint64_t)j * 0x9E3779B97F4A7C15u;
        size_t s = (size_t)(h ^ (h >> 32)) & (cap - 1);
        while (key[s] != -1 && key[s] != j) s = (s + 1) & (cap - 1);
        held[i] = key[s] == j ? val[s] : j;
        key[s] = j;
        val[s] = t;
    }
    emdpo_free(key, cap * sizeof(int64_t));
    emdpo_free(val, cap * sizeof(int64_t));
    qsort(held, (size_t)nv, sizeof *held, cmp_i64);
    return EMDPO_OK;
}

/* Entries of the ascending v[0..n) below x. */
static int64_t count_below(const int64_t *v, int64_t n, int64_t x) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t m = lo + (hi - lo) / 2;
        if (v[m] < x) lo = m + 1;
        else hi = m;
    }
    return lo;
}

/* ---- A split of a share ---------------------------------------------------
 * Each side (held out, training) must be shared as emdpo_data_share would
 * share it: whole runs of EMDPO_DIST_ALIGN of the side's annotators, so
 * that its sums are the same blocks for any number of processes. The
 * side's annotators a process holds are a run of the side's order (the
 * shares are runs of the file's), close to the run it must own but not at
 * the same bounds: each process packs the annotators it holds that another
 * owns, sends them with one exchange, and builds its side from its own
 * annotators and those it receives, merged by their index in the side. */

/* The packed form of annotator i of d, at side index idx: int64 idx,
 * int64 decisions, the name, a byte 1 and the group (or 0); then per
 * decision int32 items, int32 stages, a byte of flags (1: a prompt
 * follows, 2: texts follow), the prompt, the items' features (from a
 * multiple of 8 bytes), and per item a byte 1 and its text (or 0); zeros
 * to a multiple of 8 bytes. Strings end in their NUL. Packed annotators
 * follow each other in an allocated buffer, so that their features are
 * aligned doubles. Returns the size (only that when buf is NULL). */
static size_t pack_annot(const emdpo_data *d, int64_t i, int64_t idx, char *buf) {
    size_t o = 0;
#define PUT(src, len)                                 \
    do {                                              \
        if (buf) memcpy(buf + o, (src), (len));       \
        o += (len);                                   \
    } while (0)
#define PUT_STR(s) PUT((s), strlen(s) + 1)
#define PAD8()                                        \
    do {                                              \
        size_t to = (o + 7) & ~(size_t)7;             \
        if (buf) memset(buf + o, 0, to - o);          \
        o = to;                                       \
    } while (0)
    int64_t nd = d->annot_dec[i + 1] - d->annot_dec[i];
    const char *group = d->annot_group[i] >= 0 ? d->group_name[d->annot_group[i]] : NULL;
    unsigned char yes = 1, no = 0;
    PUT(&idx, sizeof idx);
    PUT(&nd, sizeof nd);
    PUT_STR(d->annot_name[i]);
    if (group) {
        PUT(&yes, 1);
        PUT_STR(group);
    } else {
        PUT(&no, 1);
    }
    for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) {
        int32_t ni = emdpo_dec_n_items(d, j), stages = d->dec_stages[j];
        const char *prompt = d->dec_prompt ? d->dec_prompt[j] : NULL;
        unsigned char flags = (unsigned char)((prompt ? 1 : 0) | (d->item_text ? 2 : 0));
        PUT(&ni, sizeof ni);
        PUT(&stages, sizeof stages);
        PUT(&flags, 1);
        if (prompt) PUT_STR(prompt);
        PAD8();
        if (d->p) PUT(d->x + (size_t)d->dec_item[j] * d->p, (size_t)ni * (size_t)d->p * sizeof(double));
        for (int32_t q = 0; d->item_text && q < ni; q++) {
            const char *t = d->item_text[d->dec_item[j] + q];
            if (t) {
                PUT(&yes, 1);
                PUT_STR(t);
            } else {
                PUT(&no, 1);
            }
        }
    }
    PAD8();
#undef PAD8
#undef PUT_STR
#undef PUT
    return o;
}

/* Reads the packed annotator at buf (pack_annot) into b, or, with b NULL,
 * only adds its decisions and items to *n_dec, *n_items; its size into
 * *size. */
static int unpack_annot(const char *buf, int p, emdpo_data_builder *b, const char ***texts, size_t *texts_cap,
                        int64_t *n_dec, int64_t *n_items, size_t *size) {
    size_t o = 2 * sizeof(int64_t);
    int64_t nd;
    memcpy(&nd, buf + sizeof(int64_t), sizeof nd);
    const char *name = buf + o, *group = NULL;
    o += strlen(name) + 1;
    if (buf[o++]) {
        group = buf + o;
        o += strlen(group) + 1;
    }
    for (int64_t j = 0; j < nd; j++) {
        int32_t ni, stages;
        memcpy(&ni, buf + o, sizeof ni);
        memcpy(&stages, buf + o + sizeof ni, sizeof stages);
        unsigned char flags = (unsigned char)buf[o + 2 * sizeof(int32_t)];
        o += 2 * sizeof(int32_t) + 1;
        const char *prompt = NULL;
        if (flags & 1) {
            prompt = buf + o;
            o += strlen(prompt) + 1;
        }
        o = (o + 7) & ~(size_t)7;
        const double *x = p ? (const double *)(const void *)(buf + o) : NULL;
        o += (size_t)ni * (size_t)p * sizeof(double);
        if ((flags & 2) && b && emdpo_grow((void **)texts, texts_cap, (size_t)ni, sizeof(char *)))
            return EMDPO_ERR_NOMEM;
        for (int32_t q = 0; (flags & 2) && q < ni; q++) {
            const char *t = buf[o++] ? buf + o : NULL;
            if (t) o += strlen(t) + 1;
            if (b) (*texts)[q] = t;
        }
        if (!b) {
            *n_dec += 1;
            *n_items += ni;
            continue;
        }
        int rc = emdpo_data_builder_add(b, name, group, prompt, ni, stages, x, (flags & 2) ? *texts : NULL);
        if (rc) return rc;
    }
    *size = (o + 7) & ~(size_t)7;
    return EMDPO_OK;
}

/* This process's share of one side of a split of the share d: pick[0..n)
 * (ascending indices into d) are the side's annotators d holds, at the
 * side's indices base .. base + n - 1 of all. A collective. */
static int side_share(const emdpo_data *d, const int64_t *pick, int64_t n, int64_t base, int64_t all,
                      emdpo_data **out) {
    int size = emdpo_dist_size();
    int64_t lo, hi;
    emdpo_dist_share(all, &lo, &hi);
    size_t qbytes = (size_t)size * sizeof(int64_t), sbytes = 0, recv_len = 0, texts_cap = 0;
    int64_t *count = emdpo_calloc((size_t)size, sizeof(int64_t)), *q_lo = emdpo_malloc(qbytes);
    char *send = NULL, *recv = NULL;
    const char **texts = NULL;
    emdpo_data_builder *b = NULL;
    int rc = count && q_lo ? EMDPO_OK : EMDPO_ERR_NOMEM;
    for (int q = 0; !rc && q < size; q++) {
        int64_t qhi;
        emdpo_dist_share_of(q, all, &q_lo[q], &qhi);
    }
    /* Annotators another process owns go to it, in rank order and so in
     * the side's order; q_lo ascends, so a walk finds each owner. */
    int64_t first_kept = n, last_kept = n;
    for (int64_t k = 0, q = 0; !rc && k < n; k++) {
        int64_t s = base + k;
        if (s >= lo && s < hi) {
            if (first_kept == n) first_kept = k;
            last_kept = k + 1;
            continue;
        }
        while (q + 1 < size && q_lo[q + 1] <= s) q++;
        size_t len = pack_annot(d, pick[k], s, NULL);
        count[q] += (int64_t)len;
        sbytes += len;
    }
    if (!rc && sbytes && !(send = emdpo_malloc(sbytes))) rc = EMDPO_ERR_NOMEM;
    size_t at = 0;
    for (int64_t k = 0; !rc && send && k < n; k++)
        if (k < first_kept || k >= last_kept) at += pack_annot(d, pick[k], base + k, send + at);
    if (!rc) rc = emdpo_dist_alltoall_bytes(send, count, &recv, &recv_len);
    emdpo_free(send, sbytes);
    send = NULL;
    /* Sizes first, so that the builder's buffers are made once, exactly. */
    int64_t n_dec = 0, n_items = 0;
    for (size_t o = 0, len; !rc && o < recv_len; o += len)
        rc = unpack_annot(recv + o, d->p, NULL, NULL, NULL, &n_dec, &n_items, &len);
    for (int64_t k = first_kept; k < last_kept; k++) {
        int64_t i = pick[k];
        n_dec += d->annot_dec[i + 1] - d->annot_dec[i];
        n_items += d->dec_item[d->annot_dec[i + 1]] - d->dec_item[d->annot_dec[i]];
    }
    if (!rc) rc = emdpo_data_builder_create(d->p, &b);
    if (!rc && d->feature_name) rc = emdpo_data_builder_set_feature_names(b, (const char *const *)d->feature_name);
    if (!rc && n_dec) rc = emdpo_data_builder_reserve(b, n_dec, n_items);
    /* Received annotators below the kept ones come from lower ranks, the
     * others from higher ones: the merge is by index. */
    size_t o = 0;
    int64_t k = first_kept;
    while (!rc && (o < recv_len || k < last_kept)) {
        int64_t idx = INT64_MAX;
        size_t len;
        if (o < recv_len) memcpy(&idx, recv + o, sizeof idx);
        if (k < last_kept && base + k < idx) {
            rc = emdpo_data_builder_add_annot(b, d, pick[k++], &texts, &texts_cap);
        } else if ((rc = unpack_annot(recv + o, d->p, b, &texts, &texts_cap, NULL, NULL, &len)) == EMDPO_OK) {
            o += len;
        }
    }
    emdpo_free((void *)texts, texts_cap * sizeof(char *));
    emdpo_free(recv, recv_len);
    emdpo_free(count, qbytes);
    emdpo_free(q_lo, qbytes);
    if (rc) {
        emdpo_data_builder_free(b);
        return rc;
    }
    if ((rc = emdpo_data_builder_finish_share(b, lo, all, out))) return rc;
    if ((rc = emdpo_data_copy_read_info(d, *out))) {
        emdpo_data_free(*out);
        *out = NULL;
    }
    return rc;
}

/* The split of the share d given the held-out annotators held[0..nv) of
 * all n. A collective. */
static int split_share(const emdpo_data *d, int64_t n, const int64_t *held, int64_t nv, emdpo_data **train,
                       emdpo_data **valid) {
    int64_t g0 = d->annot_base, h0 = count_below(held, nv, g0), h1 = count_below(held, nv, g0 + d->n_annot);
    int64_t nvl = h1 - h0, ntl = d->n_annot - nvl;
    size_t vbytes = (size_t)(nvl ? nvl : 1) * sizeof(int64_t), tbytes = (size_t)(ntl ? ntl : 1) * sizeof(int64_t);
    int64_t *vpick = emdpo_malloc(vbytes), *tpick = emdpo_malloc(tbytes);
    int rc = vpick && tpick ? EMDPO_OK : EMDPO_ERR_NOMEM;
    for (int64_t i = 0, v = 0, t = 0; !rc && i < d->n_annot; i++) {
        if (v < nvl && held[h0 + v] == g0 + i) vpick[v++] = i;
        else tpick[t++] = i;
    }
    /* Training annotators before this share: g0 annotators less h0 held out. */
    if (!rc) rc = side_share(d, vpick, nvl, h0, nv, valid);
    if (!rc) rc = side_share(d, tpick, ntl, g0 - h0, n - nv, train);
    emdpo_free(vpick, vbytes);
    emdpo_free(tpick, tbytes);
    if (rc) {
        emdpo_data_free(*valid);
        *valid = NULL;
    }
    return rc;
}

int emdpo_data_split(const emdpo_data *d, double holdout, uint64_t seed, emdpo_data **train,
                           emdpo_data **valid) {
    if (!train || !valid) return EMDPO_ERR_INVALID_ARG;
    *train = *valid = NULL;
    if (!d) return EMDPO_ERR_INVALID_ARG;
    int64_t n = emdpo_data_all_annot(d), nv = emdpo_holdout_count(n, holdout);
    if (nv < 1 || nv >= n) return EMDPO_ERR_INVALID_ARG;
    int64_t *held = emdpo_malloc((size_t)nv * sizeof(int64_t));
    if (!held) return EMDPO_ERR_NOMEM;
    int rc = heldout_of(n, nv, seed, held);
    if (!rc && d->shard) {
        rc = split_share(d, n, held, nv, train, valid);
    } else if (!rc) {
        int64_t *rest = emdpo_malloc((size_t)(n - nv) * sizeof(int64_t));
        if (!rest) rc = EMDPO_ERR_NOMEM;
        for (int64_t i = 0, v = 0, t = 0; !rc && i < n; i++) {
            if (v < nv && held[v] == i) v++;
            else rest[t++] = i;
        }
        if (!rc) rc = emdpo_data_subset(d, held, nv, valid);
        if (!rc) rc = emdpo_data_subset(d, rest, n - nv, train);
        emdpo_free(rest, (size_t)(n - nv) * sizeof(int64_t));
        if (rc) {
            emdpo_data_free(*valid);
            *valid = NULL;
        }
    }
    emdpo_free(held, (size_t)nv * sizeof(int64_t));
    return rc;
}
