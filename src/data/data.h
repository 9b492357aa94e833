/* The in-memory preference dataset (emdpo/data.h's emdpo_data) and the
 * builder that readers and the simulator fill. Layout is CSR over annotators -> decisions -> items, with
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
    char *source;          /* the path it was read from, NULL when built in memory */
    /* How it was read, where that differs from the defaults (a fit records
     * it, so that what reads the fit's data reads it the same way): the
     * annotator field, and absolute paths of the chat template and of the
     * special tokens' file. NULL: the default. */
    char *read_annotator_field, *read_chat_template, *read_special_tokens;
    /* One process's share of a dataset split over an MPI job (base/dist.h,
     * emdpo_data_share): its annotators are annot_base .. annot_base +
     * n_annot - 1 of all_annot, and the whole has all_dec decisions and
     * all_items items. 0 (the data are whole): the counts are n_annot,
     * n_dec, n_items. Sums over annotators of a share are reduced over the
     * processes; those of whole data are not. */
    int shard;
    int64_t annot_base, all_annot, all_dec, all_items;
};

/* Annotators (decisions, items) of the whole data d is a share of. */
static inline int64_t emdpo_data_all_annot(const struct emdpo_data *d) { return d->shard ? d->all_annot : d->n_annot; }
static inline int64_t emdpo_data_all_dec(const struct emdpo_data *d) { return d->shard ? d->all_dec : d->n_dec; }
static inline int64_t emdpo_data_all_items(const struct emdpo_data *d) { return d->shard ? d->all_items : d->n_items; }

/* Copies from's source and how it was read (read_*) into to, whose are
 * NULL. EMDPO_ERR_NOMEM. */
int emdpo_data_copy_read_info(const emdpo_data *from, emdpo_data *to);

/* This process's share of d (base/dist.h's emdpo_dist_share): a copy of
 * its annotators, marked as a share of d (shard, annot_base, all_*); every
 * process may have 0 annotators. */
int emdpo_data_share(const emdpo_data *d, emdpo_data **out);

/* Finishes b (consumed, like emdpo_data_builder_finish) as this process's
 * share of a dataset read in parts (data/parts.h, under mpirun): its
 * annotators are annot_base .. of all_annot, the whole's decisions and
 * items are summed over the processes (a collective); b may hold no
 * decisions. */
int emdpo_data_builder_finish_share(emdpo_data_builder *b, int64_t annot_base, int64_t all_annot, emdpo_data **out);

/* Adds annotator i of d, all its decisions, to b; *texts (*texts_cap
 * entries, grown as needed) is the caller's scratch, freed by it. */
int emdpo_data_builder_add_annot(emdpo_data_builder *b, const emdpo_data *d, int64_t i, const char ***texts,
                                 size_t *texts_cap);

/* Items in decision d. */
static inline int emdpo_dec_n_items(const struct emdpo_data *d, int64_t dec) {
    return (int)(d->dec_item[dec + 1] - d->dec_item[dec]);
}

/* Optional: preallocate for this many decisions and items. */
int emdpo_data_builder_reserve(emdpo_data_builder *b, int64_t n_dec, int64_t n_items);

/* Number of decisions added so far for the given annotator id (0 if new). */
int64_t emdpo_data_builder_count(const emdpo_data_builder *b, const char *annotator);

/* The builder refuses a decision whose group differs from the annotator's
 * earlier ones (EMDPO_ERR_PARSE); this words that refusal for a reader's
 * diag. */
void emdpo_diag_group_conflict(emdpo_diag *diag, long line, const char *annotator, const char *group);

/* emdpo_data_read_with keeping, of a JSONL text longer than
 * 3 * keep_text_bytes, only its first and last keep_text_bytes (a few
 * fewer, cut at UTF-8 characters), so that reading costs memory in
 * proportion to keep_text_bytes rather than to the longest line (0: whole
 * texts, as emdpo_data_read_with). The language-model commands keep
 * emdpo_lm_text_keep_bytes (lm_batch.h), which leaves the tokens they make
 * as they were. Records that TRL's implicit prompt or a chat template
 * turns into texts are refused at their line when one of their strings
 * was cut (those need whole strings). */
int emdpo_data_read_kept(const char *path, emdpo_format fmt, const emdpo_read_opts *o, size_t keep_text_bytes,
                         emdpo_data **out, emdpo_diag *diag);

/* Validation annotators for n annotators and a holdout share in (0, 1):
 * round(n * holdout); -1 for a share outside (0, 1). */
int64_t emdpo_holdout_count(int64_t n, double holdout);

/* Per-decision weights from per-annotator weights: w_dec[j] = w_annot[i(j)]. */
void emdpo_data_expand_weights(const emdpo_data *d, const double *w_annot, double *w_dec);

#endif
