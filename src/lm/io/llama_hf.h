/* Hugging Face Llama checkpoints: config.json and model.safetensors in a
 * directory, mapped to and from emdpo's parameter layout (llama.h).
 *
 * Names: model.embed_tokens.weight, model.layers.{i}.input_layernorm.weight,
 * model.layers.{i}.self_attn.{q,k,v,o}_proj.weight,
 * model.layers.{i}.post_attention_layernorm.weight,
 * model.layers.{i}.mlp.{gate,down,up}_proj.weight (w1, w2, w3),
 * model.norm.weight, and lm_head.weight unless tie_word_embeddings.
 *
 * HF applies RoPE by rotating halves of each head (dimension j with
 * j + hs/2); emdpo, like llama2.c and Meta's checkpoints, rotates
 * interleaved pairs (2i, 2i+1). HF's conversion script therefore reorders
 * the rows of q_proj and k_proj within each head; this module applies the
 * exact inverse on load and the same reordering on save.
 *
 * The weights are read through st_source.h (one model.safetensors or the
 * shards of model.safetensors.index.json); saving is hf_save.c's. */
#ifndef EMDPO_LLAMA_HF_H
#define EMDPO_LLAMA_HF_H

#include "emdpo.h"
#include "lm/engine/llama.h"
#include "lm/io/safetensors.h"
#include "lm/io/st_source.h"

/* Reads config.json text. Absent optional keys take HF's LlamaConfig
 * defaults (num_key_value_heads = num_attention_heads,
 * max_position_embeddings 2048, rms_norm_eps 1e-6, rope_theta 10000,
 * tie_word_embeddings false). EMDPO_ERR_PARSE with diag for malformed or
 * inconsistent values, EMDPO_ERR_UNSUPPORTED for architecture variants
 * emdpo does not implement (rope_scaling, biases, other activations,
 * sliding windows shorter than the context). */
int emdpo_hf_config_parse(const char *text, size_t len, const char *name, emdpo_llama_config *c,
                          emdpo_diag *diag);
int emdpo_hf_config_read(const char *path, emdpo_llama_config *c, emdpo_diag *diag);

/* Writes config.json (LlamaForCausalLM) atomically: torch_dtype dtype's
 * (F32, F16 or BF16), bos_token_id and eos_token_id unless -1. */
int emdpo_hf_config_write(const char *path, const emdpo_llama_config *c, emdpo_st_dtype dtype, int bos, int eos,
                          emdpo_diag *diag);

/* Reorders the rows of a (n_heads * head_size, cols) projection between
 * emdpo's interleaved-pair RoPE layout and HF's rotate-half layout:
 * to_hf != 0 maps ours to HF's (the conversion script's permute), 0 maps
 * back. src and dst must not overlap; head_size is even. */
void emdpo_hf_permute_rows(const float *src, float *dst, int n_heads, int head_size, int cols, int to_hf);
void emdpo_hf_permute_rows16(const uint16_t *src, uint16_t *dst, int n_heads, int head_size, int cols, int to_hf);

/* Reads every tensor of c's model from st into p (pointing at a buffer
 * for c), a frozen model's matrices into f (else NULL), whose dtype they
 * must have. EMDPO_ERR_PARSE, naming the tensor and expected vs found shape,
 * when a tensor is missing, misshapen or not part of the architecture
 * (rotary_emb.inv_freq buffers are ignored); EMDPO_ERR_UNSUPPORTED for a
 * non-float dtype; EMDPO_ERR_NOMEM; EMDPO_ERR_IO. */
int emdpo_hf_read_params(const emdpo_st_source *st, const emdpo_llama_config *c, const emdpo_llama_params *p,
                         const emdpo_llama_mats16 *f, emdpo_diag *diag);

/* Writes p as an HF model.safetensors of dtype (F32, F16 or BF16;
 * metadata format "pt"). */
int emdpo_hf_write_params(const char *path, const emdpo_llama_config *c, const emdpo_llama_params *p,
                          emdpo_st_dtype dtype, emdpo_diag *diag);

/* dir/config.json + its weights (emdpo_st_source_open_dir) -> a new model
 * whose file_dtype is the weights' dtype; with frozen, a frozen model
 * (emdpo_llama_create_frozen) when every matrix is stored in one 16-bit
 * dtype. */
int emdpo_llama_hf_load(const char *dir, int frozen, emdpo_llama **out, emdpo_diag *diag);

/* The reverse (emdpo_llama_save_with, which documents it; o NULL: the
 * defaults); hf_save.c. */
int emdpo_llama_hf_save(const emdpo_llama *m, const char *dir, const emdpo_llama_save_opts *o, emdpo_diag *diag);

#endif
