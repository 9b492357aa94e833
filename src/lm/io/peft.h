/* PEFT LoRA adapter directories, as peft.PeftModel.save_pretrained writes
 * them and from_pretrained reads them:
 *
 *   DIR/adapter_config.json        the LoraConfig (peft_type "LORA", r,
 *                                  lora_alpha, target_modules, ...)
 *   DIR/adapter_model.safetensors  for every adapted module M,
 *                                  "base_model.model.M.lora_A.weight" (r, in)
 *                                  and "base_model.model.M.lora_B.weight"
 *                                  (out, r); M is model.layers.N.self_attn.
 *                                  {q,k,v,o}_proj or model.layers.N.mlp.
 *                                  {gate,up,down}_proj (transformers' names)
 *
 * B's rows of q_proj and k_proj are in Hugging Face's rotate-half order, as
 * the base's weights are in a transformers checkpoint; emdpo_lora holds
 * them in emdpo's interleaved order, as emdpo_llama holds wq and wk
 * (lm/io/llama_hf.h), so reading permutes them and writing permutes them
 * back. A is not affected.
 *
 * Reading treats both files as hostile and mirrors what PEFT does with the
 * config (peft/tuners/lora/config.py, tuners_utils.py's
 * check_target_module_exists) over the module names of the base's
 * transformers model (model.embed_tokens, model.layers.N.self_attn.q_proj,
 * ..., model.norm, lm_head):
 *   - r (default 8), lora_alpha (8), lora_dropout (0, below 1), use_rslora;
 *   - target_modules: a list (a module is targeted when its name equals an
 *     entry or ends in "." + entry), a string (a regular expression matched
 *     against the whole name, with PCRE2 in place of Python's re), "all-linear"
 *     (any case: every projection, not lm_head), or null (the families'
 *     default, q_proj and v_proj); exclude_modules likewise (list or regex);
 *     layers_to_transform (an int or a list) with layers_pattern, for list
 *     targets as PEFT applies them (a name equal to an entry is targeted on
 *     every layer);
 *   - a target that is not one of the seven projections (lm_head,
 *     model.embed_tokens, a norm, a whole layer), matching no module at
 *     all, or a layer range on a string target is refused;
 *   - a projection adapted on some layers only is adapted on all of them
 *     with A = B = 0 on the others, which computes the same function (a
 *     write then stores those zeros, which PEFT loads as the same adapter);
 *   - refused (EMDPO_ERR_UNSUPPORTED, naming the key): peft_type other than
 *     "LORA", task_type other than "CAUSAL_LM" (or null), bias other than
 *     "none", use_dora, use_qalora, lora_bias, fan_in_fan_out,
 *     modules_to_save, rank_pattern or alpha_pattern giving a module
 *     another rank or alpha, init_lora_weights that rewrites the base's
 *     weights (pissa*, olora, corda, loftq, lora_ga), and any other key set
 *     to something but null, false, "" or an empty list or object (a
 *     feature emdpo does not know: megatron_config, layer_replication,
 *     trainable_token_indices, target_parameters, alora_invocation_tokens,
 *     ...); base_model_name_or_path, revision, inference_mode, peft_version,
 *     auto_mapping, megatron_core, qalora_group_size and the initialisers'
 *     own configs do not change what the adapter computes and are ignored;
 *   - the tensors: exactly lora_A and lora_B of every targeted module, of
 *     the shapes r and the base give, F32, F16, BF16 (or F64); a missing,
 *     misshapen or extra tensor is EMDPO_ERR_PARSE naming it (DoRA's
 *     lora_magnitude_vector and embedding adapters EMDPO_ERR_UNSUPPORTED).
 * Shapes are checked against the header before anything is allocated.
 * diag names adapter_config.json and the key, or adapter_model.safetensors
 * and the tensor. */
#ifndef EMDPO_PEFT_H
#define EMDPO_PEFT_H

#include <stddef.h>

#include "emdpo.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/io/safetensors.h"

#define EMDPO_PEFT_CONFIG_NAME "adapter_config.json"
#define EMDPO_PEFT_WEIGHTS_NAME "adapter_model.safetensors"

/* dir's adapter for a model of configuration base (one that passes
 * emdpo_llama_config_check) -> a new adapter. Errors as above, and
 * EMDPO_ERR_IO (a file cannot be read; an adapter_model.bin, PyTorch's
 * pickle, is named as such), EMDPO_ERR_NOMEM, EMDPO_ERR_LIMIT. */
int emdpo_peft_read(const char *dir, const emdpo_llama_config *base, emdpo_lora **out, emdpo_diag *diag);

/* The same from the two files' images in memory (config_name and
 * weights_name go into diag). */
int emdpo_peft_read_mem(const char *config, size_t config_len, const char *config_name, const void *weights,
                        size_t weights_len, const char *weights_name, const emdpo_llama_config *base, emdpo_lora **out,
                        emdpo_diag *diag);

/* Writes lo as dir/adapter_config.json and dir/adapter_model.safetensors
 * (creating dir), each atomically, the tensors in dtype (EMDPO_ST_F32,
 * F16 or BF16, rounded to nearest even), every layer of each adapted
 * projection. The config has the keys PEFT 0.10 and later read, sorted and
 * indented as PEFT writes them: peft_type "LORA", task_type "CAUSAL_LM",
 * r, lora_alpha, lora_dropout, use_rslora, target_modules (a list of
 * module names), bias "none", use_dora, fan_in_fan_out false, no
 * modules_to_save, layers_to_transform or patterns, init_lora_weights
 * true, inference_mode true, and base_model_name_or_path base_model (NULL:
 * null). No peft_version: PEFT before 0.14 refuses keys it does not know,
 * and later versions fill it in. EMDPO_ERR_INVALID_ARG (a bad dtype or
 * configuration), EMDPO_ERR_IO, EMDPO_ERR_NOMEM. */
int emdpo_peft_write(const emdpo_lora *lo, const char *dir, emdpo_st_dtype dtype, const char *base_model,
                     emdpo_diag *diag);

/* Only the safetensors file, at path: also for buffers laid out like an
 * adapter (a gradient: point a copy of the adapter's struct into it with
 * emdpo_lora_point), to compare them by PEFT's names. */
int emdpo_peft_write_tensors(const emdpo_lora *lo, const char *path, emdpo_st_dtype dtype, emdpo_diag *diag);

/* 1 when path is a PEFT adapter directory: adapter_config.json and no
 * config.json (a model directory with an adapter beside it is a model). */
int emdpo_peft_is_dir(const char *path);

/* The base an adapter directory names: base_model_name_or_path, a path
 * taken as given (the working directory's, as PEFT takes it) or else
 * relative to the adapter's directory -> *out (emdpo_strfree).
 * EMDPO_ERR_PARSE (diag) when it names none, EMDPO_ERR_IO, EMDPO_ERR_NOMEM. */
int emdpo_peft_base(const char *dir, char **out, emdpo_diag *diag);

#endif
