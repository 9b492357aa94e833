/* GGUF models (llama.cpp's format) to and from emdpo's model description.
 *
 * Architectures (general.architecture): "llama" (also Mistral's and
 * Llama 3's files), "qwen2" and "qwen3". Hyper-parameters come from the
 * ARCH.* keys llama.cpp reads: context_length, embedding_length,
 * block_count, feed_forward_length, attention.head_count,
 * attention.head_count_kv, attention.layer_norm_rms_epsilon,
 * attention.key_length / value_length (the head size), rope.freq_base,
 * rope.dimension_count (must be the head size), rope.scaling.type "none"
 * or "linear" with rope.scaling.factor (or the older rope.scale_linear),
 * vocab_size. Llama 3.1's RoPE scaling is the rope_freqs tensor of
 * per-frequency divisors, which is read back into the llama3 rope scaling
 * that produces it (refused when none does).
 *
 * Tensors: token_embd, output_norm, output (absent: tied to the
 * embedding), rope_freqs, and per layer blk.N.attn_norm, attn_q, attn_k,
 * attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down, the optional
 * biases attn_{q,k,v,output}.bias and Qwen3's attn_q_norm / attn_k_norm.
 * ggml's ne[0] is the innermost dimension, so a (out, in) matrix is
 * ne = [in, out], the layout emdpo keeps. llama.cpp's converter stores
 * llama's q/k rows in the interleaved-pair RoPE order emdpo uses (it undoes
 * Hugging Face's permutation); qwen2 and qwen3 use rotate-half RoPE and keep
 * Hugging Face's order, which is mapped to emdpo's on load (q, k, their
 * biases and the q/k norm weights within each head) and back on save.
 * Types F32, F16, BF16, Q8_0, Q4_0 and Q4_K are dequantised to float32;
 * others are refused naming the tensor and its type. */
#ifndef EMDPO_GGUF_MODEL_H
#define EMDPO_GGUF_MODEL_H

#include <stdint.h>

#include "emdpo.h"
#include "lm/engine/llama.h"

/* Reads a model; with frozen, a frozen model (emdpo_llama_create_frozen)
 * when every matrix is stored in one 16-bit type. EMDPO_ERR_PARSE (diag: the key, tensor or byte offset
 * and what is wrong), EMDPO_ERR_UNSUPPORTED (an architecture, variant or
 * tensor type emdpo does not run), EMDPO_ERR_IO, EMDPO_ERR_NOMEM. */
int emdpo_gguf_model_load(const char *path, int frozen, emdpo_llama **out, emdpo_diag *diag);

/* Writes m as a GGUF version 3 file with its matrices stored as type
 * (EMDPO_GGML_F32, F16, BF16 or Q8_0; norms and the rope table stay F32,
 * and a matrix whose rows are not a whole number of Q8_0 blocks is F16) and
 * the tokenizer metadata of tokenizer: a GGUF file's tokenizer.* keys as
 * they are, a Hugging Face tokenizer.json (or a directory holding one) of
 * byte-level BPE as tokenizer.ggml.model "gpt2", or a llama2.c
 * tokenizer.bin as "llama". The vocabulary must have the model's
 * vocab_size ids (a tokenizer.json with fewer is padded with unused
 * [PADi] tokens, as llama.cpp's converter does). Atomic. EMDPO_ERR_UNSUPPORTED
 * (diag) for a tokenizer or model emdpo cannot describe to llama.cpp,
 * EMDPO_ERR_PARSE for a tokenizer file that does not fit the model,
 * EMDPO_ERR_IO, EMDPO_ERR_NOMEM. */
int emdpo_gguf_model_save(const emdpo_llama *m, const char *tokenizer, const char *path, uint32_t type,
                          emdpo_diag *diag);

#endif
