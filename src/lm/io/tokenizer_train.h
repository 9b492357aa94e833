/* Training a BPE vocabulary for the llama2.c tokenizer (tokenizer.h) from
 * texts, for models trained from scratch on a corpus of their own.
 *
 * Each text gets the dummy prefix space that encoding adds, then splits into
 * words, each a space followed by the non-space bytes up to the next space
 * (SentencePiece's whitespace split: a piece may start with a space but
 * never contains one later, so encoding never merges across words). Words
 * start as UTF-8 code points; bytes that are not valid UTF-8 stay
 * byte-fallback symbols and never merge, as in encoding. The most frequent
 * code points become the base pieces; then, while the vocabulary has room,
 * the most frequent adjacent pair of symbols over all words (weighted by
 * word counts; ties: the lexicographically smallest concatenation, then the
 * shortest) merges into a new piece. Merge j (0-based) scores -j, so
 * emdpo_tokenizer_encode, which merges the highest-scoring pair first,
 * replays the merges in training order; base pieces score below every merge.
 *
 * Cost: O(merges * symbols over the distinct words); fine for corpora of a
 * few hundred thousand distinct words. */
#ifndef EMDPO_TOKENIZER_TRAIN_H
#define EMDPO_TOKENIZER_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "emdpo.h"

/* emdpo_bpe_opts and emdpo_bpe_opts_init are public (emdpo/lm.h). */

/* Trains a vocabulary (ids 0..258 are <unk>, BOS, EOS and the 256 byte
 * pieces, as tokenizer.h lays out) of o->vocab_size entries, or of fewer
 * with o->up_to and the texts run out of mergeable pairs first, and
 * returns it serialised as a tokenizer.bin in *buf (*len bytes; release it
 * with emdpo_free(*buf, *len)), its entry count in *n_entries.
 * EMDPO_ERR_INVALID_ARG for vocab_size <= EMDPO_TOK_MIN_VOCAB, min_count < 1
 * or n < 1; EMDPO_ERR_LIMIT (diag says how many entries the texts support)
 * when o->up_to is 0 and the texts support fewer; EMDPO_ERR_NOMEM. diag may be
 * NULL. */
int emdpo_tokenizer_train(const char *const *text, const size_t *len, int64_t n, const emdpo_bpe_opts *o,
                          void **buf, size_t *buf_len, int *n_entries, emdpo_diag *diag);

#endif
