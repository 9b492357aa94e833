/* (prompt, response) texts as token sequences for training and scoring
 * language-model policies, truncated the way the DPO reference
 * implementation (Rafailov et al.) does, and packed into padded batches.
 *
 * A sequence is BOS + prompt tokens + response tokens + EOS. The prompt and
 * each response are encoded separately, each with SentencePiece's dummy
 * prefix, as the reference implementation's separate tokenizer calls do. An
 * empty response is EOS alone; an empty prompt is BOS alone.
 *
 * Truncation, per group of responses sharing a prompt (a decision): when
 * prompt + the longest response exceed max_length, the prompt keeps BOS and
 * its last max_prompt_length - 1 tokens (the reference's keep_end mode;
 * BOS stays so every sequence starts as the model was trained); then each
 * response still too long keeps its first max_length - prompt_len tokens
 * (so a cut response loses its EOS). Every sequence therefore fits
 * max_length and has a response span of at least one token.
 *
 * The log-probability of a response is the sum over its tokens only:
 * positions [start, len) with start = the prompt's length. */
#ifndef EMDPO_LM_BATCH_H
#define EMDPO_LM_BATCH_H

#include <stdint.h>

#include "data/data.h"
#include "emdpo.h"
#include "lm/io/tokenizer.h"

/* Sequences in groups: group g holds sequences [group_off[g],
 * group_off[g+1]), in preference order for a decision, with group_stages[g]
 * sequential choices (0 for SFT examples, which are groups of one). */
typedef struct emdpo_lm_set {
    int max_length, max_prompt_length;
    int64_t n_seq, n_group, n_tok;
    int64_t *seq_off;      /* (n_seq+1) first token of each sequence in tok */
    int32_t *seq_start;    /* (n_seq) first response token (the prompt's length, >= 1) */
    int32_t *tok;          /* (n_tok) */
    int64_t *group_off;    /* (n_group+1) */
    int32_t *group_stages; /* (n_group) */
    int64_t n_truncated;   /* sequences whose prompt or response was cut */
    int longest;           /* tokens in the longest sequence */
    int most_items;        /* sequences in the largest group */
    /* capacities, in elements, of each array */
    size_t seq_off_cap, seq_start_cap, tok_cap, group_off_cap, group_stages_cap;
    /* The bytes of a text that can reach a sequence, for window_tok (see
     * emdpo_lm_set_add); 0 until first needed. */
    const emdpo_tokenizer *window_tok;
    size_t window;
} emdpo_lm_set;

/* An empty set. 1 <= max_prompt_length < max_length, else
 * EMDPO_ERR_INVALID_ARG. */
int emdpo_lm_set_create(int max_length, int max_prompt_length, emdpo_lm_set **out);

/* Appends one group: prompt (NULL = empty) with n >= 1 responses (NULL
 * entries = empty) and the given number of stages (0..n-1). A text far
 * longer than max_length tokens can fill (max_length + 64 times the
 * tokenizer's longest piece, in bytes) is encoded from that many of its
 * bytes only, the prompt's last and a response's first, so that memory
 * follows the context and not the text; the tokens kept are those of the
 * whole text (a cut that gives too few tokens, as a normalizer that deletes
 * may, is encoded whole instead). A failure
 * (EMDPO_ERR_NOMEM, EMDPO_ERR_INVALID_ARG) leaves s as it was. */
int emdpo_lm_set_add(emdpo_lm_set *s, const emdpo_tokenizer *tok, const char *prompt, const char *const *responses,
                     int n, int stages);

/* A prompt for generation: text tokenized with BOS into a new buffer
 * (*ids, *cap entries: emdpo_free(*ids, *cap * sizeof **ids)), *len
 * tokens. Longer than P tokens (P >= 1), it keeps BOS and its last P - 1
 * tokens, as emdpo_lm_set_add truncates prompts. */
/* emdpo_lm_set_read with the data read as ro says (NULL: the defaults). */
int emdpo_lm_set_read_with(const char *path, const emdpo_read_opts *ro, const emdpo_tokenizer *tok, int max_length,
                           int max_prompt_length, int chosen_only, emdpo_lm_set **out, emdpo_data **data,
                           emdpo_diag *diag);

int emdpo_lm_prompt_encode(const emdpo_tokenizer *tok, const char *text, int P, int **ids, size_t *cap, int *len);

/* Appends one group holding one sequence: prompt[0..np) then resp[0..nr),
 * then the id eos unless it is -1 (token sequences that were never text,
 * such as generated samples; no truncation). EMDPO_ERR_NOMEM leaves s as it was. */
int emdpo_lm_set_add_tokens(emdpo_lm_set *s, const int *prompt, int np, const int *resp, int nr, int eos);

static inline int emdpo_lm_seq_len(const emdpo_lm_set *s, int64_t i) {
    return (int)(s->seq_off[i + 1] - s->seq_off[i]);
}

/* Packs sequences seq[0..B) into tokens (B, T), lens (B) and the response
 * spans start/end (B), T = the longest of them (returned in *T). Padding is
 * token 0; the model never reads it because lens marks it. */
void emdpo_lm_pack(const emdpo_lm_set *s, const int64_t *seq, int B, int *tokens, int *lens, int *start, int *end,
                   int *T);

/* The distinct sequences of s (token for token, with the same response
 * start): *uniq (*n_uniq entries, the caller frees it with
 * emdpo_free(*uniq, *n_uniq * sizeof **uniq)) holds the first occurrence
 * of each, ordered by length (ties in order of appearance) so that scoring
 * batches of consecutive entries carry little padding; map (s->n_seq)
 * receives each sequence's entry in *uniq. Data with repeated prompts and
 * responses across annotators often has far fewer distinct sequences than
 * sequences. EMDPO_ERR_NOMEM. */
int emdpo_lm_distinct(const emdpo_lm_set *s, int64_t **uniq, int64_t *n_uniq, int64_t *map);

/* Texts for supervised fine-tuning from JSONL: each line an object with
 * "prompt" (optional) and "response", or "text" alone (an empty prompt).
 * Strings must be valid UTF-8 without \u0000 (the JSON reader enforces it).
 * EMDPO_ERR_UNSUPPORTED (diag untouched) when the first object carries
 * "chosen" or "ranking": the file is preference data, for emdpo_data_read.
 * EMDPO_ERR_PARSE with diag (file, line, message), EMDPO_ERR_IO,
 * EMDPO_ERR_NOMEM. */
typedef struct emdpo_lm_texts {
    int64_t n;
    char **prompt;   /* (n), "" when absent */
    char **response; /* (n) */
    size_t prompt_cap, response_cap;
} emdpo_lm_texts;

int emdpo_lm_texts_read(const char *path, emdpo_lm_texts **out, emdpo_diag *diag);
/* emdpo_lm_texts_read keeping of each text only its ends, as
 * emdpo_data_read_kept does (0: whole texts). */
int emdpo_lm_texts_read_keep(const char *path, size_t keep_text_bytes, emdpo_lm_texts **out, emdpo_diag *diag);

/* The bytes of each end of a text that a reader must keep so that
 * emdpo_lm_set_add, with sequences of max_length and tok, makes the same
 * tokens as from the whole text: twice the window it tokenizes (the
 * context and a margin, times tok's longest piece), so that even a text
 * it encodes whole has its cut far from the tokens kept. */
size_t emdpo_lm_text_keep_bytes(const emdpo_tokenizer *tok, int max_length);
void emdpo_lm_texts_free(emdpo_lm_texts *t);

/* One group of one sequence per text. */
int emdpo_lm_set_from_texts(const emdpo_lm_texts *t, const emdpo_tokenizer *tok, int max_length,
                            int max_prompt_length, emdpo_lm_set **out);

#endif
