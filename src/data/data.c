#include "data/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/dist.h"
#include "base/diag.h"
#include "base/names.h"

struct emdpo_data_builder {
    int p;
    emdpo_name_index annots, groups;
    int32_t *annot_group; size_t annot_group_cap;   /* per annotator */
    int64_t *annot_count; size_t annot_count_cap;   /* decisions per annotator */
    int64_t *dec_annot; size_t dec_annot_cap;       /* per decision */
    int32_t *dec_nitems; size_t dec_nitems_cap;
    int32_t *dec_stages; size_t dec_stages_cap;
    char **dec_prompt; size_t dec_prompt_cap;
    double *x; size_t x_cap;                        /* items * p */
    char **item_text; size_t item_text_cap;
    int64_t n_dec, n_items;
    int has_text;
    int sorted;                                     /* annotators arrived contiguously */
    char **feature_name;                            /* (p) or NULL */
};

int emdpo_data_builder_create(int p, emdpo_data_builder **out) {
    if (!out) return EMDPO_ERR_INVALID_ARG;
    *out = NULL;
    if (p < 0) return EMDPO_ERR_INVALID_ARG;
    emdpo_data_builder *b = emdpo_calloc(1, sizeof *b);
    if (!b) return EMDPO_ERR_NOMEM;
    b->p = p;
    b->sorted = 1;
    *out = b;
    return EMDPO_OK;
}

static void free_str_array(char **a, size_t n, size_t cap) {
    if (!a) return;
    for (size_t i = 0; i < n; i++) emdpo_strfree(a[i]);
    emdpo_free(a, cap * sizeof(char *));
}

void emdpo_data_builder_free(emdpo_data_builder *b) {
    if (!b) return;
    emdpo_name_index_free(&b->annots);
    emdpo_name_index_free(&b->groups);
    emdpo_free(b->annot_group, b->annot_group_cap * sizeof(int32_t));
    emdpo_free(b->annot_count, b->annot_count_cap * sizeof(int64_t));
    emdpo_free(b->dec_annot, b->dec_annot_cap * sizeof(int64_t));
    emdpo_free(b->dec_nitems, b->dec_nitems_cap * sizeof(int32_t));
    emdpo_free(b->dec_stages, b->dec_stages_cap * sizeof(int32_t));
    free_str_array(b->dec_prompt, (size_t)b->n_dec, b->dec_prompt_cap);
    emdpo_free(b->x, b->x_cap * sizeof(double));
    free_str_array(b->item_text, (size_t)b->n_items, b->item_text_cap);
    free_str_array(b->feature_name, (size_t)b->p, (size_t)b->p);
    emdpo_free(b, sizeof *b);
}

int emdpo_data_builder_set_feature_names(emdpo_data_builder *b, const char *const *names) {
    if (!b || !names || b->p == 0) return EMDPO_ERR_INVALID_ARG;
    char **copy = emdpo_calloc((size_t)b->p, sizeof(char *));
    if (!copy) return EMDPO_ERR_NOMEM;
    for (int j = 0; j < b->p; j++) {
        if (!(copy[j] = emdpo_strdup(names[j]))) {
            free_str_array(copy, (size_t)j, (size_t)b->p);
            return EMDPO_ERR_NOMEM;
        }
    }
    free_str_array(b->feature_name, (size_t)b->p, (size_t)b->p);
    b->feature_name = copy;
    return EMDPO_OK;
}

/* Grows *arr to exactly need elements (no doubling): a reserve states the
 * final size, and at 10^8 features a doubled buffer would be gigabytes. */
static int reserve_exact(void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return EMDPO_OK;
    if (need > SIZE_MAX / elem) return EMDPO_ERR_NOMEM;
    void *q = emdpo_realloc(*arr, *cap * elem, need * elem);
    if (!q) return EMDPO_ERR_NOMEM;
    *arr = q;
    *cap = need;
    return EMDPO_OK;
}

int emdpo_data_builder_reserve(emdpo_data_builder *b, int64_t n_dec, int64_t n_items) {
    if (n_dec < 0 || n_items < 0) return EMDPO_ERR_INVALID_ARG;
    size_t nd = (size_t)n_dec, ni = (size_t)n_items;
    if (reserve_exact((void **)&b->dec_annot, &b->dec_annot_cap, nd, sizeof(int64_t)) ||
        reserve_exact((void **)&b->dec_nitems, &b->dec_nitems_cap, nd, sizeof(int32_t)) ||
        reserve_exact((void **)&b->dec_stages, &b->dec_stages_cap, nd, sizeof(int32_t)))
        return EMDPO_ERR_NOMEM;
    if (b->p && (ni > SIZE_MAX / (size_t)b->p ||
                 reserve_exact((void **)&b->x, &b->x_cap, ni * (size_t)b->p, sizeof(double))))
        return EMDPO_ERR_NOMEM;
    return EMDPO_OK;
}

int64_t emdpo_data_builder_count(const emdpo_data_builder *b, const char *annotator) {
    int64_t a = emdpo_name_index_find(&b->annots, annotator);
    return a < 0 ? 0 : b->annot_count[a];
}

/* Text storage is created lazily, the first time a prompt or text arrives. */
static int builder_enable_text(emdpo_data_builder *b) {
    if (b->has_text) return EMDPO_OK;
    if (emdpo_grow((void **)&b->dec_prompt, &b->dec_prompt_cap, (size_t)b->n_dec + 1, sizeof(char *)) ||
        emdpo_grow((void **)&b->item_text, &b->item_text_cap, (size_t)b->n_items + 1, sizeof(char *)))
        return EMDPO_ERR_NOMEM;
    memset(b->dec_prompt, 0, b->dec_prompt_cap * sizeof(char *));
    memset(b->item_text, 0, b->item_text_cap * sizeof(char *));
    b->has_text = 1;
    return EMDPO_OK;
}

static int grow_zeroed_ptrs(char ***arr, size_t *cap, size_t need) {
    size_t old = *cap;
    if (emdpo_grow((void **)arr, cap, need, sizeof(char *))) return EMDPO_ERR_NOMEM;
    if (*cap > old) memset(*arr + old, 0, (*cap - old) * sizeof(char *));
    return EMDPO_OK;
}

int emdpo_data_builder_add(emdpo_data_builder *b, const char *annotator, const char *group,
                      const char *prompt, int n_items, int n_stages, const double *x,
                      const char *const *texts) {
    if (!annotator || n_items < 2 || n_stages < 1 || n_stages > n_items - 1)
        return EMDPO_ERR_INVALID_ARG;
    if (b->p > 0 && !x) return EMDPO_ERR_INVALID_ARG;
    for (size_t q = 0; q < (size_t)n_items * (size_t)b->p; q++)
        if (!isfinite(x[q])) return EMDPO_ERR_INVALID_ARG;
    size_t nd = (size_t)b->n_dec + 1, ni = (size_t)b->n_items + (size_t)n_items;
    if ((prompt || texts) && builder_enable_text(b)) return EMDPO_ERR_NOMEM;
    if (emdpo_grow((void **)&b->dec_annot, &b->dec_annot_cap, nd, sizeof(int64_t)) ||
        emdpo_grow((void **)&b->dec_nitems, &b->dec_nitems_cap, nd, sizeof(int32_t)) ||
        emdpo_grow((void **)&b->dec_stages, &b->dec_stages_cap, nd, sizeof(int32_t)))
        return EMDPO_ERR_NOMEM;
    if (b->p && emdpo_grow((void **)&b->x, &b->x_cap, ni * (size_t)b->p, sizeof(double)))
        return EMDPO_ERR_NOMEM;
    if (b->has_text && (grow_zeroed_ptrs(&b->dec_prompt, &b->dec_prompt_cap, nd) ||
                        grow_zeroed_ptrs(&b->item_text, &b->item_text_cap, ni)))
        return EMDPO_ERR_NOMEM;

    int64_t gi = -1;
    if (group) {
        int is_new;
        if (emdpo_name_index_intern(&b->groups, group, &gi, &is_new)) return EMDPO_ERR_NOMEM;
    }
    int64_t ai;
    int is_new;
    if (emdpo_name_index_intern(&b->annots, annotator, &ai, &is_new)) return EMDPO_ERR_NOMEM;
    if (is_new) {
        if (emdpo_grow((void **)&b->annot_group, &b->annot_group_cap, (size_t)ai + 1, sizeof(int32_t)) ||
            emdpo_grow((void **)&b->annot_count, &b->annot_count_cap, (size_t)ai + 1, sizeof(int64_t))) {
            /* Keep the index consistent: forget the name just added. */
            b->annots.n--;
            emdpo_strfree(b->annots.names[ai]);
            emdpo_name_index_rehash(&b->annots, b->annots.n_slots);
            return EMDPO_ERR_NOMEM;
        }
        b->annot_group[ai] = (int32_t)gi;
        b->annot_count[ai] = 0;
    } else if (b->annot_group[ai] != (int32_t)gi) {
        return EMDPO_ERR_PARSE; /* the same annotator with two different groups */
    }

    /* Copy strings before committing anything so a failure leaves no trace. */
    char *pcopy = NULL;
    if (b->has_text && prompt && !(pcopy = emdpo_strdup(prompt))) return EMDPO_ERR_NOMEM;
    if (b->has_text && texts) {
        for (int j = 0; j < n_items; j++) {
            if (!texts[j]) continue;
            char *t = emdpo_strdup(texts[j]);
            if (!t) {
                for (int q = 0; q < j; q++) {
                    emdpo_strfree(b->item_text[b->n_items + q]);
                    b->item_text[b->n_items + q] = NULL;
                }
                emdpo_strfree(pcopy);
                return EMDPO_ERR_NOMEM;
            }
            b->item_text[b->n_items + j] = t;
        }
    }
    if (b->has_text) b->dec_prompt[b->n_dec] = pcopy;

    if (b->n_dec > 0 && b->dec_annot[b->n_dec - 1] != ai && !is_new) b->sorted = 0;
    b->dec_annot[b->n_dec] = ai;
    b->dec_nitems[b->n_dec] = n_items;
    b->dec_stages[b->n_dec] = n_stages;
    if (b->p) memcpy(b->x + (size_t)b->n_items * b->p, x, (size_t)n_items * b->p * sizeof(double));
    b->annot_count[ai]++;
    b->n_dec++;
    b->n_items += n_items;
    return EMDPO_OK;
}

void emdpo_data_free(emdpo_data *d) {
    if (!d) return;
    size_t na = (size_t)d->n_annot, nd = (size_t)d->n_dec, ni = (size_t)d->n_items;
    emdpo_free(d->annot_dec, (na + 1) * sizeof(int64_t));
    emdpo_free(d->dec_item, (nd + 1) * sizeof(int64_t));
    emdpo_free(d->dec_stages, nd * sizeof(int32_t));
    emdpo_free(d->x, ni * (size_t)d->p * sizeof(double));
    free_str_array(d->annot_name, na, na);
    emdpo_free(d->annot_group, na * sizeof(int32_t));
    free_str_array(d->group_name, (size_t)d->n_groups, (size_t)d->n_groups);
    free_str_array(d->dec_prompt, nd, nd);
    free_str_array(d->item_text, ni, ni);
    free_str_array(d->feature_name, (size_t)d->p, (size_t)d->p);
    emdpo_strfree(d->source);
    emdpo_strfree(d->read_annotator_field);
    emdpo_strfree(d->read_chat_template);
    emdpo_strfree(d->read_special_tokens);
    emdpo_free(d, sizeof *d);
}

/* Shrinks a buffer of cap elements to exactly n and hands it over. */
static void *take_exact(void **arr, size_t cap, size_t n, size_t elem) {
    void *q = *arr;
    if (cap != n) {
        q = emdpo_realloc(*arr, cap * elem, (n ? n : 1) * elem);
        if (!q) return NULL;
    }
    *arr = NULL;
    return q;
}

/* Annotators arrived contiguously: the builder's buffers are already in
 * final order and are handed over rather than copied (at 10^6 annotators a
 * copy of x would double peak memory). */
static int finish_in_order(emdpo_data_builder *b, emdpo_data *d) {
    size_t nd = (size_t)b->n_dec, ni = (size_t)b->n_items, p = (size_t)b->p;
    if (p && !(d->x = take_exact((void **)&b->x, b->x_cap, ni * p, sizeof(double)))) return EMDPO_ERR_NOMEM;
    b->x_cap = 0;
    if (!(d->dec_stages = take_exact((void **)&b->dec_stages, b->dec_stages_cap, nd, sizeof(int32_t))))
        return EMDPO_ERR_NOMEM;
    b->dec_stages_cap = 0;
    if (b->has_text) {
        if (!(d->dec_prompt = take_exact((void **)&b->dec_prompt, b->dec_prompt_cap, nd, sizeof(char *))))
            return EMDPO_ERR_NOMEM;
        b->dec_prompt_cap = 0;
        if (!(d->item_text = take_exact((void **)&b->item_text, b->item_text_cap, ni, sizeof(char *))))
            return EMDPO_ERR_NOMEM;
        b->item_text_cap = 0;
    }
    for (size_t j = 0; j < nd; j++) d->dec_item[j + 1] = d->dec_item[j] + b->dec_nitems[j];
    return EMDPO_OK;
}

/* Stable counting sort of decisions (and their items) by annotator. */
static int finish_permuted(emdpo_data_builder *b, emdpo_data *d) {
    size_t na = b->annots.n, nd = (size_t)b->n_dec, ni = (size_t)b->n_items, p = (size_t)b->p;
    d->dec_stages = emdpo_malloc(nd * sizeof(int32_t));
    if (!d->dec_stages) return EMDPO_ERR_NOMEM;
    if (p && !(d->x = emdpo_malloc(ni * p * sizeof(double)))) return EMDPO_ERR_NOMEM;
    if (b->has_text) {
        d->dec_prompt = emdpo_calloc(nd, sizeof(char *));
        d->item_text = emdpo_calloc(ni, sizeof(char *));
        if (!d->dec_prompt || !d->item_text) return EMDPO_ERR_NOMEM;
    }
    int64_t *src_item = emdpo_malloc(nd * sizeof(int64_t));
    int64_t *dst_dec = emdpo_malloc(nd * sizeof(int64_t));
    int64_t *cursor = emdpo_malloc((na ? na : 1) * sizeof(int64_t));
    int rc = src_item && dst_dec && cursor ? EMDPO_OK : EMDPO_ERR_NOMEM;
    if (!rc) {
        int64_t off = 0;
        for (size_t j = 0; j < nd; j++) {
            src_item[j] = off;
            off += b->dec_nitems[j];
        }
        memcpy(cursor, d->annot_dec, na * sizeof(int64_t));
        for (size_t j = 0; j < nd; j++) dst_dec[j] = cursor[b->dec_annot[j]]++;
        for (size_t j = 0; j < nd; j++) {
            d->dec_item[dst_dec[j] + 1] = b->dec_nitems[j];
            d->dec_stages[dst_dec[j]] = b->dec_stages[j];
        }
        for (size_t j = 0; j < nd; j++) d->dec_item[j + 1] += d->dec_item[j];
        for (size_t j = 0; j < nd; j++) {
            int64_t dst = d->dec_item[dst_dec[j]];
            size_t n = (size_t)b->dec_nitems[j];
            if (p) memcpy(d->x + (size_t)dst * p, b->x + (size_t)src_item[j] * p, n * p * sizeof(double));
            if (!b->has_text) continue;
            d->dec_prompt[dst_dec[j]] = b->dec_prompt[j];
            b->dec_prompt[j] = NULL;
            for (size_t q = 0; q < n; q++) {
                d->item_text[dst + q] = b->item_text[src_item[j] + q];
                b->item_text[src_item[j] + q] = NULL;
            }
        }
    }
    emdpo_free(src_item, nd * sizeof(int64_t));
    emdpo_free(dst_dec, nd * sizeof(int64_t));
    emdpo_free(cursor, (na ? na : 1) * sizeof(int64_t));
    return rc;
}

int emdpo_data_builder_finish(emdpo_data_builder *b, emdpo_data **out) {
    if (!out) {
        emdpo_data_builder_free(b);
        return EMDPO_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (!b) return EMDPO_ERR_INVALID_ARG;
    size_t na = b->annots.n, nd = (size_t)b->n_dec;
    if (nd == 0) { /* nothing to learn from */
        emdpo_data_builder_free(b);
        return EMDPO_ERR_INVALID_ARG;
    }
    emdpo_data *d = emdpo_calloc(1, sizeof *d);
    int rc = EMDPO_ERR_NOMEM;
    if (!d) goto fail;
    d->p = b->p;
    d->annot_dec = emdpo_calloc(na + 1, sizeof(int64_t));
    d->dec_item = emdpo_calloc(nd + 1, sizeof(int64_t));
    d->annot_group = emdpo_malloc(na * sizeof(int32_t));
    d->annot_name = emdpo_malloc(na * sizeof(char *));
    if (b->groups.n) d->group_name = emdpo_malloc(b->groups.n * sizeof(char *));
    if (!d->annot_dec || !d->dec_item || !d->annot_group || !d->annot_name || (b->groups.n && !d->group_name))
        goto fail;
    for (size_t a = 0; a < na; a++) d->annot_dec[a + 1] = d->annot_dec[a] + b->annot_count[a];
    if ((rc = b->sorted ? finish_in_order(b, d) : finish_permuted(b, d))) goto fail;

    d->n_annot = (int64_t)na;
    d->n_dec = (int64_t)nd;
    d->n_items = b->n_items;
    memcpy(d->annot_group, b->annot_group, na * sizeof(int32_t));
    /* Hand the interned strings over; the builder frees only its arrays. */
    memcpy(d->annot_name, b->annots.names, na * sizeof(char *));
    if (b->groups.n) memcpy(d->group_name, b->groups.names, b->groups.n * sizeof(char *));
    d->n_groups = (int)b->groups.n;
    d->feature_name = b->feature_name;
    b->feature_name = NULL;
    b->annots.n = 0;
    b->groups.n = 0;
    emdpo_data_builder_free(b);
    *out = d;
    return EMDPO_OK;

fail:
    if (d) {
        /* Counts are still zero, so only the raw buffers need releasing;
         * text pointers taken over are still owned by the builder. */
        size_t ni = (size_t)b->n_items, p = (size_t)b->p;
        emdpo_free(d->annot_dec, (na + 1) * sizeof(int64_t));
        emdpo_free(d->dec_item, (nd + 1) * sizeof(int64_t));
        emdpo_free(d->dec_stages, nd * sizeof(int32_t));
        emdpo_free(d->annot_group, na * sizeof(int32_t));
        emdpo_free(d->annot_name, na * sizeof(char *));
        emdpo_free(d->group_name, b->groups.n * sizeof(char *));
        emdpo_free(d->x, ni * p * sizeof(double));
        if (b->sorted) {
            free_str_array(d->dec_prompt, nd, nd);
            free_str_array(d->item_text, ni, ni);
        } else {
            emdpo_free(d->dec_prompt, nd * sizeof(char *));
            emdpo_free(d->item_text, ni * sizeof(char *));
        }
        emdpo_free(d, sizeof *d);
    }
    emdpo_data_builder_free(b);
    return rc;
}

void emdpo_data_expand_weights(const emdpo_data *d, const double *w_annot, double *w_dec) {
    for (int64_t i = 0; i < d->n_annot; i++)
        for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) w_dec[j] = w_annot[i];
}

int emdpo_data_builder_add_annot(emdpo_data_builder *b, const emdpo_data *d, int64_t i, const char ***texts,
                                 size_t *texts_cap) {
    const char *group = d->annot_group[i] >= 0 ? d->group_name[d->annot_group[i]] : NULL;
    for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) {
        int64_t it = d->dec_item[j];
        int ni = emdpo_dec_n_items(d, j);
        if (d->item_text) {
            if (emdpo_grow((void **)texts, texts_cap, (size_t)ni, sizeof(char *))) return EMDPO_ERR_NOMEM;
            for (int q = 0; q < ni; q++) (*texts)[q] = d->item_text[it + q];
        }
        int rc = emdpo_data_builder_add(b, d->annot_name[i], group, d->dec_prompt ? d->dec_prompt[j] : NULL, ni,
                                        d->dec_stages[j], d->p ? d->x + (size_t)it * d->p : NULL,
                                        d->item_text ? *texts : NULL);
        if (rc) return rc;
    }
    return EMDPO_OK;
}

/* The annotators annots[0..n) of d, in that order (n may be 0). */
static int subset_of(const emdpo_data *d, const int64_t *annots, int64_t n, emdpo_data **out) {
    emdpo_data_builder *b;
    int rc = emdpo_data_builder_create(d->p, &b);
    if (rc) return rc;
    if (d->feature_name && (rc = emdpo_data_builder_set_feature_names(b, (const char *const *)d->feature_name))) {
        emdpo_data_builder_free(b);
        return rc;
    }
    const char **texts = NULL;
    size_t texts_cap = 0;
    for (int64_t q = 0; q < n && !rc; q++) {
        if (annots[q] < 0 || annots[q] >= d->n_annot) rc = EMDPO_ERR_INVALID_ARG;
        else rc = emdpo_data_builder_add_annot(b, d, annots[q], &texts, &texts_cap);
    }
    emdpo_free((void *)texts, texts_cap * sizeof(char *));
    if (rc) {
        emdpo_data_builder_free(b);
        return rc;
    }
    return emdpo_data_builder_finish(b, out);
}

int emdpo_data_subset(const emdpo_data *d, const int64_t *annots, int64_t n, emdpo_data **out) {
    if (!out) return EMDPO_ERR_INVALID_ARG;
    *out = NULL;
    if (!d || !annots || n < 1) return EMDPO_ERR_INVALID_ARG;
    return subset_of(d, annots, n, out);
}

/* No annotators, with d's features (a process whose share is empty). */
static int empty_like(const emdpo_data *d, emdpo_data **out) {
    emdpo_data *e = emdpo_calloc(1, sizeof *e);
    if (!e) return EMDPO_ERR_NOMEM;
    e->p = d->p;
    e->annot_dec = emdpo_calloc(1, sizeof(int64_t));
    e->dec_item = emdpo_calloc(1, sizeof(int64_t));
    int rc = e->annot_dec && e->dec_item ? EMDPO_OK : EMDPO_ERR_NOMEM;
    if (!rc && d->feature_name && !(e->feature_name = emdpo_calloc((size_t)d->p, sizeof(char *)))) rc = EMDPO_ERR_NOMEM;
    for (int q = 0; !rc && d->feature_name && q < d->p; q++)
        if (!(e->feature_name[q] = emdpo_strdup(d->feature_name[q]))) rc = EMDPO_ERR_NOMEM;
    if (rc) {
        emdpo_data_free(e);
        return rc;
    }
    *out = e;
    return EMDPO_OK;
}

int emdpo_data_copy_read_info(const emdpo_data *from, emdpo_data *to) {
    const char *src[4] = {from->source, from->read_annotator_field, from->read_chat_template, from->read_special_tokens};
    char **dst[4] = {&to->source, &to->read_annotator_field, &to->read_chat_template, &to->read_special_tokens};
    for (int q = 0; q < 4; q++)
        if (src[q] && !(*dst[q] = emdpo_strdup(src[q]))) return EMDPO_ERR_NOMEM;
    return EMDPO_OK;
}

int emdpo_data_share(const emdpo_data *d, emdpo_data **out) {
    *out = NULL;
    if (d->shard) return EMDPO_ERR_INVALID_ARG;
    int64_t lo, hi;
    emdpo_dist_share(d->n_annot, &lo, &hi);
    size_t bytes = (size_t)(hi > lo ? hi - lo : 1) * sizeof(int64_t);
    int64_t *annots = emdpo_malloc(bytes);
    if (!annots) return EMDPO_ERR_NOMEM;
    for (int64_t i = lo; i < hi; i++) annots[i - lo] = i;
    int rc = hi > lo ? subset_of(d, annots, hi - lo, out) : empty_like(d, out);
    emdpo_free(annots, bytes);
    if (rc) return rc;
    emdpo_data *s = *out;
    if ((rc = emdpo_data_copy_read_info(d, s))) {
        emdpo_data_free(s);
        *out = NULL;
        return rc;
    }
    s->shard = 1;
    s->annot_base = lo;
    s->all_annot = d->n_annot;
    s->all_dec = d->n_dec;
    s->all_items = d->n_items;
    return EMDPO_OK;
}

int emdpo_data_builder_finish_share(emdpo_data_builder *b, int64_t annot_base, int64_t all_annot, emdpo_data **out) {
    *out = NULL;
    int rc;
    if (b->n_dec) {
        rc = emdpo_data_builder_finish(b, out);
    } else {
        emdpo_data features = {.p = b->p, .feature_name = b->feature_name};
        rc = empty_like(&features, out);
        emdpo_data_builder_free(b);
    }
    if (rc) return rc;
    emdpo_data *s = *out;
    int64_t all[2] = {s->n_dec, s->n_items};
    if ((rc = emdpo_dist_sum_i64(all, 2))) {
        emdpo_data_free(s);
        *out = NULL;
        return rc;
    }
    s->shard = 1;
    s->annot_base = annot_base;
    s->all_annot = all_annot;
    s->all_dec = all[0];
    s->all_items = all[1];
    return EMDPO_OK;
}

void emdpo_diag_group_conflict(emdpo_diag *diag, long line, const char *annotator, const char *group) {
    if (group)
        emdpo_diag_set(
            diag, line,
            "annotator \"%.60s\" has group \"%.60s\" here but a different group (or none) on an earlier line",
            annotator, group);
    else
        emdpo_diag_set(diag, line, "annotator \"%.60s\" has no group here but a group on an earlier line",
                       annotator);
}
