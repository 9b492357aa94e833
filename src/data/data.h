/* The in-memory preference dataset and the builder that readers and the
 * simulator fill. Layout is CSR over annotators -> decisions -> items, with
 * each decision's items stored in preference order: the chosen item first,
 * then (for a ranking) the second choice, and so on; unranked items last. */
#ifndef EMDPO_DATA_H
#define EMDPO_DATA_H

#include <stdint.h>

#include "emdpo.h"

struct emdpo_data {
    int64_t n_annot;
    int64_t n_dec;
    int64_t n_items;
    int p;                 /* features per item; 0 when items are text only */
    int64_t *annot_dec;    /* (n_annot+1) first decision of each annotator */
    int64_t *dec_item;     /* (n_dec+1) first item of each decision */
    int32_t *dec_stages;   /* (n_dec) sequential choices: 1 = top choice, n-1 = full ranking */
    double *x;             /* (n_items, p) item features, NULL when p == 0 */
    char **annot_name;     /* (n_annot) annotator ids */
    int32_t *annot_group;  /* (n_annot) index into group_name, -1 when absent */
    char **group_name;     /* (n_groups) distinct group labels, first-seen order */
    int n_groups;
    char **dec_prompt;     /* (n_dec) prompt text, NULL entries allowed; NULL array for feature data */
    char **item_text;      /* (n_items) response text, NULL entries allowed; NULL array for feature data */
    char **feature_name;   /* (p) column names, or NULL when the source had none */
};

/* Items in decision d. */
static inline int emdpo_dec_n_items(const struct emdpo_data *d, int64_t dec) {
    return (int)(d->dec_item[dec + 1] - d->dec_item[dec]);
}

/* 1 when every item has response text (language-model policies need it;
 * feature data may carry text for some items or none). */
int emdpo_data_has_text(const struct emdpo_data *d);

/* The largest number of items in any decision (at least 2). */
int emdpo_data_max_items(const struct emdpo_data *d);

typedef struct emdpo_builder emdpo_builder;

/* p = number of features per item (0 for text data). */
int emdpo_builder_create(int p, emdpo_builder **out);
void emdpo_builder_free(emdpo_builder *b);
/* Optional: names for the p feature columns (copied). */
int emdpo_builder_set_feature_names(emdpo_builder *b, const char *const *names);

/* Optional: preallocate for this many decisions and items. */
int emdpo_builder_reserve(emdpo_builder *b, int64_t n_dec, int64_t n_items);

/* One decision of one annotator. Items are given in preference order (chosen
 * first); n_stages in 1..n_items-1. x: (n_items, p) or NULL when p == 0.
 * group, prompt and texts may be NULL. Strings are copied. Annotators may
 * arrive in any order; their decisions keep arrival order. */
int emdpo_builder_add(emdpo_builder *b, const char *annotator, const char *group,
                      const char *prompt, int n_items, int n_stages, const double *x,
                      const char *const *texts);

/* Number of decisions added so far for the given annotator id (0 if new). */
int64_t emdpo_builder_count(const emdpo_builder *b, const char *annotator);

/* The builder refuses a decision whose group differs from the annotator's
 * earlier ones (EMDPO_ERR_PARSE); this words that refusal for a reader's
 * diag. */
void emdpo_diag_group_conflict(emdpo_diag *diag, long line, const char *annotator, const char *group);

/* Finish: groups decisions by annotator (first-appearance order) and hands
 * over the dataset. The builder is consumed (freed) whatever the result. */
int emdpo_builder_finish(emdpo_builder *b, emdpo_data **out);

/* A dataset holding the given annotators of d (indices in any order). */
int emdpo_data_subset(const emdpo_data *d, const int64_t *annots, int64_t n, emdpo_data **out);

/* Per-decision weights from per-annotator weights: w_dec[j] = w_annot[i(j)]. */
void emdpo_data_expand_weights(const emdpo_data *d, const double *w_annot, double *w_dec);

#endif
