/* A Hugging Face tokenizers pipeline with a BPE model: the one structure
 * that tokenizer.json files (hf_tok_json.c) and GGUF "gpt2" vocabularies
 * (gguf_vocab.c) are read into, and its encoder and decoder. It covers the
 * two forms of BPE people ship: byte-level (GPT-2, Llama 3, Qwen: Split
 * regexes and the ByteLevel byte-to-character map) and SentencePiece-style
 * (Llama 2, Mistral: Prepend/Replace normalizers or Metaspace, U+2581 and
 * byte fallback).
 *
 * Encoding follows tokenizers' Tokenizer::encode step by step: added tokens
 * that are not normalized are cut out of the raw text (leftmost-longest,
 * then their single_word/lstrip/rstrip flags), each remaining segment is
 * normalized, normalized added tokens are cut out of that, the rest is
 * pre-tokenized and each piece goes through the BPE model (whole-piece
 * lookup when ignore_merges, characters or byte fallback, then merges by
 * rank, the leftmost of equal ranks first); the post-processor's special
 * tokens wrap the result when asked. Decoding maps ids to their pieces and
 * runs the decoders. Text must be valid UTF-8 (tokenizers takes Rust
 * strings).
 *
 * Built once, then immutable: encode and decode may run concurrently. */
#ifndef EMDPO_HF_TOK_H
#define EMDPO_HF_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "emdpo.h"
#include "lm/io/hf_tok_text.h"

typedef struct emdpo_hf_tok emdpo_hf_tok;

/* Ids are below this: a guard against absurd files. */
#define EMDPO_HF_MAX_IDS (1 << 24)

/* An added token and its flags (tokenizers' AddedToken). */
typedef struct emdpo_hf_added {
    char *content;
    size_t len;
    char *norm; /* content as the normalizers leave it (normalized tokens) */
    size_t norm_len;
    int id;
    unsigned char special, lstrip, rstrip, single_word, normalized;
} emdpo_hf_added;

/* Creation: the reader fills the pieces of the model vocabulary, then
 * merges, added tokens, steps and the post-processor, then finishes. */
int emdpo_hf_tok_create(emdpo_hf_tok **out);
void emdpo_hf_tok_free(emdpo_hf_tok *t);

/* Sizes the tables for this many pieces and merges (an optimisation). */
int emdpo_hf_tok_reserve(emdpo_hf_tok *t, size_t n_pieces, size_t n_merges);
/* Sets id's piece in the model vocabulary. EMDPO_ERR_INVALID_ARG when the
 * piece is already another id's or id is already set (diag says which). */
int emdpo_hf_tok_add_piece(emdpo_hf_tok *t, int id, const char *piece, size_t len, emdpo_diag *diag);
/* The model id of a piece, or -1. */
int emdpo_hf_tok_piece_id(const emdpo_hf_tok *t, const char *piece, size_t len);
/* Adds merge a + b with the given rank (a later merge of the same pair
 * replaces an earlier one, as tokenizers' map does). EMDPO_ERR_PARSE when
 * a, b or a+b is not in the vocabulary (diag names it). */
int emdpo_hf_tok_add_merge(emdpo_hf_tok *t, const char *a, size_t na, const char *b, size_t nb, uint32_t rank,
                           emdpo_diag *diag);
/* Model options: unk_id (-1: none), byte_fallback, fuse_unk, ignore_merges. */
void emdpo_hf_tok_set_model(emdpo_hf_tok *t, int unk_id, int byte_fallback, int fuse_unk, int ignore_merges);
/* Appends an added token (contents copied; norm is filled by finish). */
int emdpo_hf_tok_add_token(emdpo_hf_tok *t, const emdpo_hf_added *a);
/* Appends a step to list 0 (normalizers), 1 (pre-tokenizers) or 2
 * (decoders); the tokenizer takes ownership of its strings and pattern,
 * also on failure. */
int emdpo_hf_tok_add_step(emdpo_hf_tok *t, int list, const emdpo_hf_step *s);
/* Frees what a step holds (its strings and pattern). */
void emdpo_hf_step_free(emdpo_hf_step *s);
/* Compiles a pattern for a SPLIT step (PCRE2 with Unicode properties);
 * literal: the pattern is a plain string. EMDPO_ERR_PARSE with PCRE2's
 * message and offset in diag. */
int emdpo_hf_tok_compile(const char *pattern, size_t len, int literal, void **re, emdpo_diag *diag);
/* The post-processor's special tokens around a sequence (add_special_tokens). */
int emdpo_hf_tok_set_template(emdpo_hf_tok *t, const int *before, size_t n_before, const int *after,
                              size_t n_after);
/* Checks that every id below the largest is either a piece or an added
 * token or a gap, normalizes the added tokens and builds the tables.
 * EMDPO_ERR_PARSE (diag) for an inconsistent vocabulary. */
int emdpo_hf_tok_finish(emdpo_hf_tok *t, emdpo_diag *diag);

/* Largest id + 1 over the vocabulary and the added tokens. */
int emdpo_hf_tok_n_ids(const emdpo_hf_tok *t);
/* The id of an added token or vocabulary piece with this text, or -1. */
int emdpo_hf_tok_token_id(const emdpo_hf_tok *t, const char *s, size_t len);
/* The piece an id decodes from (an added token's content, normalized when
 * the token is, or the model's piece), or NULL for an id that has
 * neither. */
const char *emdpo_hf_tok_piece(const emdpo_hf_tok *t, int id, size_t *len);
/* The post-processor's ids before and after the sequence. */
void emdpo_hf_tok_template(const emdpo_hf_tok *t, const int **before, size_t *n_before, const int **after,
                           size_t *n_after);

/* Encodes text[0..len) into *ids (a new array of *n ids, freed with
 * emdpo_free(*ids, *n * sizeof(int)); NULL when n is 0). special: wrap in
 * the post-processor's tokens; no_prefix: no Prepend normalizer or
 * Metaspace prefix for the segment at the start of the text.
 * EMDPO_ERR_INVALID_ARG for text that is not UTF-8, EMDPO_ERR_NOMEM,
 * EMDPO_ERR_LIMIT when a regex exhausts PCRE2's limits. */
int emdpo_hf_tok_encode(const emdpo_hf_tok *t, const char *text, size_t len, int special, int no_prefix, int **ids,
                        size_t *n);
/* Decodes ids as tokenizers' decode(ids, skip_special_tokens=False): ids
 * without a piece are skipped, the decoders run over the pieces, and
 * without decoders the pieces are joined by spaces. *out is a new string of
 * *len bytes (freed with emdpo_free(*out, *len + 1)). EMDPO_ERR_NOMEM. */
int emdpo_hf_tok_decode(const emdpo_hf_tok *t, const int *ids, size_t n, char **out, size_t *len);

#endif
