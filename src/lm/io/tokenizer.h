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
#include "lm/engine/tokens.h"

/* Ids 3..258 stand for the bytes 0x00..0xFF. */
#define EMDPO_TOK_BYTE0 3
#define EMDPO_TOK_MIN_VOCAB 259
/* Longest piece accepted, a guard against absurd files. */
#define EMDPO_TOK_MAX_PIECE 65536

typedef struct emdpo_tokenizer emdpo_tokenizer;

/* Reads a tokenizer.bin with exactly vocab_size entries. EMDPO_ERR_IO when
 * the file cannot be read, EMDPO_ERR_PARSE (diag says what and at which byte
 * offset) when it is malformed or holds another number of entries,
 * EMDPO_ERR_INVALID_ARG when vocab_size < EMDPO_TOK_MIN_VOCAB. */
int emdpo_tokenizer_load(const char *path, int vocab_size, emdpo_tokenizer **out, emdpo_diag *diag);

/* The same from memory; name goes into diag->file. buf is not retained. */
int emdpo_tokenizer_parse(const void *buf, size_t len, int vocab_size, const char *name,
                          emdpo_tokenizer **out, emdpo_diag *diag);

void emdpo_tokenizer_free(emdpo_tokenizer *t);

int emdpo_tokenizer_vocab_size(const emdpo_tokenizer *t);

/* The raw piece of an id (not NUL-terminated; byte pieces read "<0xHH>"),
 * or NULL when id is out of range. */
const char *emdpo_tokenizer_piece(const emdpo_tokenizer *t, int id, size_t *len);

/* Encode flags. */
#define EMDPO_TOK_ADD_BOS 1u
#define EMDPO_TOK_ADD_EOS 2u
/* Skip SentencePiece's dummy prefix (a space added before non-empty text):
 * for text that continues a sequence rather than starting one. */
#define EMDPO_TOK_NO_PREFIX 4u

/* A bound on the tokens that encoding len bytes can produce. */
size_t emdpo_tokenizer_encode_bound(size_t len);

/* Encodes text[0..len) as llama2.c does: optional BOS, the dummy prefix
 * space, each UTF-8 code point as its piece when the vocabulary has it and
 * else as byte-fallback ids, then repeated merging of the adjacent pair
 * whose concatenated piece scores highest (the leftmost such pair on ties).
 * Any bytes are accepted; invalid UTF-8 goes through byte fallback.
 * Differences from llama2.c that only matter for unusual vocabularies: a
 * piece listed twice resolves to its lowest id, control and byte pieces
 * (ids < 259) are never produced by lookups or merges, and byte-fallback
 * ids never merge.
 * Writes min(n, cap) ids and sets *n_ids = n; returns EMDPO_ERR_LIMIT when
 * n > cap (cap >= emdpo_tokenizer_encode_bound(len) always suffices),
 * EMDPO_ERR_NOMEM when scratch memory cannot be had. */
int emdpo_tokenizer_encode(const emdpo_tokenizer *t, const char *text, size_t len, unsigned flags,
                           int *ids, size_t cap, size_t *n_ids);

/* Decodes ids to bytes: control ids (<unk>, BOS, EOS) give nothing, byte
 * pieces give their byte, other pieces their text; the first token after a
 * BOS loses one leading space (the dummy prefix), so that
 * decode(encode(s, ADD_BOS)) == s. Writes at most cap bytes and, when
 * room remains, a terminating NUL (the text itself may hold NUL bytes); sets
 * *len to the full length. EMDPO_ERR_LIMIT when len >= cap (out may be NULL
 * with cap 0 to measure), EMDPO_ERR_INVALID_ARG for an id out of range. */
int emdpo_tokenizer_decode(const emdpo_tokenizer *t, const int *ids, size_t n, char *out, size_t cap,
                           size_t *len);

#endif
