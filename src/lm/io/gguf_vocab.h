/* Tokenizers stored in GGUF files (llama.cpp's format): the tokenizer.ggml.*
 * keys of the metadata. Only the header and the key/value section are
 * read, so a model file of many gigabytes costs no more than its
 * vocabulary.
 *
 * tokenizer.ggml.model "gpt2" (byte-level BPE: GPT-2, Llama 3, Qwen 2)
 * becomes hf_tok.h's pipeline as llama.cpp tokenizes it: tokens, merges by
 * rank, the pre-tokenizer that tokenizer.ggml.pre names (gpt-2/default,
 * llama-bpe/llama3, qwen2) as its tokenizer.json split regex (llama.cpp
 * applies no Unicode normalization, so neither does this), control and
 * user-defined tokens matched in text, BOS / EOS / padding ids and
 * add_bos_token / add_eos_token (absent: llama.cpp's default for the
 * pre-tokenizer).
 *
 * tokenizer.ggml.model "llama" becomes the llama2.c image that tokenizer.h
 * parses: (SentencePiece BPE with byte
 * fallback, the vocabulary of Llama 1/2, Mistral v1 and their kin) whose ids
 * 0, 1, 2 are <unk>, BOS and EOS and ids 3..258 the byte pieces <0x00>..
 * <0xFF>, with a space prefix, and no user-defined tokens. Pieces' U+2581
 * becomes a space; control and unused tokens above 258 get empty pieces,
 * so that plain text never produces them (llama.cpp's tokenizer without
 * special-token parsing). Anything else is refused with the key and the
 * reason. GGUF versions 2 and 3. */
#ifndef EMDPO_GGUF_VOCAB_H
#define EMDPO_GGUF_VOCAB_H

#include <stddef.h>

#include "emdpo.h"
#include "lm/io/gguf.h"
#include "lm/io/tokenizer.h"

/* The tokenizer of the GGUF file's vocabulary, and its token count in
 * *n_vocab. EMDPO_ERR_PARSE (diag: the byte offset or key, and what was
 * wrong) for a malformed file, EMDPO_ERR_UNSUPPORTED for a vocabulary of
 * another kind, EMDPO_ERR_IO, EMDPO_ERR_NOMEM. */
int emdpo_gguf_tokenizer(const char *path, emdpo_tokenizer **out, int *n_vocab, emdpo_diag *diag);

/* llama.cpp's tokenizer.ggml.pre name for a byte-level BPE tokenizer.json's
 * Split regex (regex[0..len)): "gpt-2", "llama-bpe" or "qwen2"; NULL for
 * one llama.cpp's GGUF vocabularies read here do not name. */
const char *emdpo_gguf_pre_name(const char *regex, size_t len);

#endif
