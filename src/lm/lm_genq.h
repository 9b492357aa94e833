/* Generation quality of a policy (a checkpoint or a mixture of them):
 * responses sampled on prompts and summarized by what shows a policy that
 * no longer generates well (emdpo/lm.h's emdpo_genq):
 *
 *   valid       the share of samples whose text, trimmed of white space at
 *               both ends, is one of a closed set of responses (the
 *               experiments whose responses are a fixed list), with its
 *               standard error;
 *   length      mean new tokens and mean white-space separated words;
 *   repetition  the mean over samples of 1 - distinct / total token n-grams
 *               of the sample (Welleck et al. 2019's seq-rep-n; 0 for a
 *               sample with fewer than n tokens);
 *   KL          the mean over samples of log pi(y|x) - log pi_ref(y|x), the
 *               Monte-Carlo estimate of KL(pi || pi_ref) at temperature 1,
 *               with its standard error. y counts EOS when the sample ended
 *               with it (the event the sampler drew), not otherwise. A
 *               mixture's log pi is logsumexp_k(log w_k + log pi_k).
 *
 * Sample i of prompt j is drawn from stream j * samples + i of the seed (a
 * mixture first draws its member from that stream's index), so the
 * samples do not depend on the thread count. */
#ifndef EMDPO_LM_GENQ_H
#define EMDPO_LM_GENQ_H

#include <stdint.h>

#include "emdpo.h"
#include "lm/engine/llama.h"

/* The summary of n fixed samples: sample i has tokens ids[off[i]..off[i+1])
 * (off (n+1)), decoded text text[i], log-probabilities logp[i] under the
 * policy and ref_logp[i] under the reference (both may be NULL: kl NaN),
 * and eos[i] set when it ended with EOS. closed (n_closed, may be NULL)
 * holds the closed set, each already trimmed and the list sorted by
 * strcmp; without one valid is NaN. EMDPO_ERR_NOMEM when scratch memory
 * runs out. */
int emdpo_genq_summarize(int64_t n, const int *ids, const int64_t *off, const char *const *text,
                         const double *logp, const double *ref_logp, const unsigned char *eos, int rep_n,
                         const char *const *closed, int64_t n_closed, emdpo_genq *out);

/* seq-rep-n of one token sequence: 1 - distinct n-grams / n-grams, 0 when
 * it has no n-gram; NaN when scratch memory runs out. */
double emdpo_genq_repetition(const int *ids, int n, int rep_n);

/* White-space separated words of text. */
int64_t emdpo_genq_words(const char *text);

/* The distinct texts of texts (n), trimmed of white space at both ends and
 * sorted by strcmp, as emdpo_genq_summarize's closed set: *out (*n_out
 * strings), freed by emdpo_genq_closed_free(*out, *n_out). */
int emdpo_genq_closed_set(const char *const *texts, int64_t n, char ***out, int64_t *n_out);
void emdpo_genq_closed_free(char **s, int64_t n);

/* Samples o->samples responses to each of prompts[0..n_prompts) from the
 * mixture of members[0..M) with weights w (M = 1, w NULL: one checkpoint),
 * scores them under every member and ref (batch sequences per forward), and summarizes them. Members and
 * ref share a vocabulary. EMDPO_ERR_INVALID_ARG for options out of range,
 * EMDPO_ERR_LIMIT when a prompt leaves no room in the context, the
 * tokenizer's, generation's and scoring's errors. */
int emdpo_lm_genq(const emdpo_llama *const *members, const double *w, int M, const emdpo_llama *ref,
                  const emdpo_tokenizer *tok, const char *const *prompts, int64_t n_prompts,
                  const char *const *closed, int64_t n_closed, const emdpo_genq_opts *o, int batch, emdpo_genq *out);

#endif
