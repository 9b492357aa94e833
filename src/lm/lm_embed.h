/* Annotator embeddings from a language model, the summaries EM-DPO's
 * k-means initialisation clusters for text data (em.h's opts.summary).
 *
 * A response's embedding is the mean, over its response tokens (the span
 * lm_batch.h scores: from the prompt's end to the sequence's end, EOS
 * included when not truncated), of the model's final hidden state after
 * the final RMSNorm, the vector the output head reads. An annotator's
 * embedding is the mean of the embeddings of the chosen responses of their
 * decisions, each decision counting once (the paper's Cluster-DPO averages
 * text embeddings the same way). */
#ifndef EMDPO_LM_EMBED_H
#define EMDPO_LM_EMBED_H

#include "data/data.h"
#include "lm/engine/llama.h"
#include "lm/io/lm_batch.h"

/* out (d->n_annot, m->config.dim). set must be emdpo_lm_set_from_data(d,
 * ...) (sequence i = item i, group j = decision j): only each decision's
 * first (chosen) sequence is run, batch of them per forward. Deterministic
 * for a thread count; summed in decision order. Under MPI a collective:
 * each process runs its share of the forwards (emdpo_dist_range over the
 * batches) and every process ends with the bits of one process's out (the
 * rows are gathered, and the decisions of an annotator whose decisions span
 * two shares added in decision order). EMDPO_ERR_INVALID_ARG when
 * set does not match d or batch < 1, EMDPO_ERR_LIMIT when a sequence does
 * not fit the model, EMDPO_ERR_NOMEM. */
int emdpo_lm_embed_annotators(const emdpo_llama *m, const emdpo_data *d, const emdpo_lm_set *set, int batch,
                              double *out);

/* Model-free annotator summaries of what they chose: a decision's vector is
 * the token counts of its chosen response minus the mean of the token counts
 * of all its responses (the text analogue of the log-linear summary, the
 * chosen item's features against the decision's mean), with token id t
 * counted in bucket t mod dim; an annotator's summary is the mean over
 * their decisions. Response tokens are the span lm_batch.h scores (EOS
 * included, which cancels). A model trained from scratch has embeddings
 * that know nothing of what phrases mean, so these carry more of the
 * choices' signal into k-means. out (d->n_annot, dim). set as for
 * emdpo_lm_embed_annotators. EMDPO_ERR_INVALID_ARG when set does not match
 * d or dim < 1. */
int emdpo_lm_choice_summaries(const emdpo_data *d, const emdpo_lm_set *set, int dim, double *out);

#endif
