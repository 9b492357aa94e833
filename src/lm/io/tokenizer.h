/* The llama2.c tokenizer (SentencePiece BPE with byte fallback, exported
 * to llama2.c's tokenizer.bin): loading, encoding and decoding.
 *
 * File layout, little-endian: int32 max_token_length, then for each id in
 * 0..V-1: float32 score, int32 byte length, the piece's raw bytes. Ids 0, 1
 * and 2 are <unk>, BOS and EOS; ids 3..258 are the byte-fallback pieces
 * <0x00>..<0xFF>; the rest are text pieces where a leading space stands for
 * SentencePiece's U+2581. V comes from the model configuration, so a file
 * for another vocabulary is rejected rather than silently misread.
 *
 * A loaded tokenizer is immutable: encode and decode may run concurrently. */
#ifndef EMDPO_TOKENIZER_H
#define EMDPO_TOKENIZER_H

#include <stddef.h>

#include "emdpo.h"
#include "lm/engine/lm_sample.h"
#include "lm/engine/tokens.h"
#include "lm/io/hf_tok.h"

/* Ids 3..258 stand for the bytes 0x00..0xFF. */
#define EMDPO_TOK_BYTE0 3
/* Longest piece accepted, a guard against absurd files. */
#define EMDPO_TOK_MAX_PIECE 65536

typedef struct emdpo_tokenizer emdpo_tokenizer;

/* The same from memory; name goes into diag->file. buf is not retained. */
int emdpo_tokenizer_parse(const void *buf, size_t len, int vocab_size, const char *name,
                          emdpo_tokenizer **out, emdpo_diag *diag);

/* Decodes ids[0..n) into a new string of *len bytes (it may hold NUL
 * bytes; freed with emdpo_free(*out, *len + 1)). Errors as
 * emdpo_tokenizer_decode, and EMDPO_ERR_NOMEM; *out is NULL after one. */
int emdpo_tokenizer_decode_alloc(const emdpo_tokenizer *t, const int *ids, size_t n, char **out, size_t *len);

/* A tokenizer over a Hugging Face pipeline (taking ownership of hf, also
 * on failure) with these special ids (-1: none); generation stops at eos. */
int emdpo_tokenizer_from_hf(emdpo_hf_tok *hf, int bos, int eos, int pad, emdpo_tokenizer **out);

/* 1 for a Hugging Face pipeline (tokenizer.json, GGUF "gpt2"), 0 for the
 * llama2.c format (tokenizer.bin, GGUF "llama"). */
int emdpo_tokenizer_is_hf(const emdpo_tokenizer *t);

/* Makes s stop where t's generation stops (emdpo_tokenizer_stop_ids). */
void emdpo_tokenizer_stop_sampler(const emdpo_tokenizer *t, emdpo_sampler *s);

/* Replaces the ids that end generation. */
int emdpo_tokenizer_set_stop(emdpo_tokenizer *t, const int *ids, size_t n);

/* Records the path a tokenizer was loaded from (emdpo_tokenizer_source). */
int emdpo_tokenizer_set_source(emdpo_tokenizer *t, const char *path);

/* The raw piece of an id (not NUL-terminated; byte pieces read "<0xHH>"),
 * or NULL when id is out of range. */
const char *emdpo_tokenizer_piece(const emdpo_tokenizer *t, int id, size_t *len);

/* The merge score of an id of the llama2.c format (0 for the Hugging Face
 * pipeline's, which ranks merges instead, and for an id out of range). */
float emdpo_tokenizer_score(const emdpo_tokenizer *t, int id);


#endif
