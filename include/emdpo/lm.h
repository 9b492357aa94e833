/* Llama-family language-model policies: loading and saving checkpoints,
 * tokenizers, token sequences and their scores, generation, SFT and the
 * DPO family of losses, EM-DPO with one policy per latent type, the
 * paper's baselines, evaluation by true group (its Table 1), choosing K,
 * and mixtures of policies.
 *
 * Conventions. A sequence is BOS + prompt + response + EOS; its
 * log-probability sums the response tokens (and the EOS) only. Too-long
 * sequences are cut as the DPO reference implementation cuts them: the
 * prompt keeps BOS and its last tokens, then each response keeps its
 * first. Rewards are beta * (log pi(y|x) - log pi_ref(y|x)). Models and
 * tokenizers are borrowed by whatever they are passed to, and must outlive
 * it. Results are deterministic for a seed and a thread count. */
#ifndef EMDPO_PUBLIC_LM_H
#define EMDPO_PUBLIC_LM_H

#include <stdio.h>

#include "emdpo/common.h"
#include "emdpo/data.h"
#include "emdpo/em.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Models ------------------------------------------------------------- */

/* A Llama model: RMSNorm, RoPE, grouped-query attention, SwiGLU, a tied or
 * separate output head; float32 parameters. */
typedef struct emdpo_llama emdpo_llama;

/* The one loader: a directory is a Hugging Face checkpoint (config.json +
 * model.safetensors, or the shards model.safetensors.index.json names;
 * F32, F16 or BF16 weights, converted to float32 exactly), a GGUF file (by
 * its magic; architectures llama, qwen2 and qwen3, tensors F32, F16, BF16,
 * Q8_0, Q4_0 and Q4_K dequantised to float32) a llama.cpp model, another
 * file a llama2.c checkpoint. A PEFT adapter directory (adapter_config.json
 * and no config.json) loads as PEFT's AutoPeftModelForCausalLM loads it:
 * the base its base_model_name_or_path names (a path, as given or relative
 * to the adapter's directory) with the adapter merged in, a float32 model.
 * EMDPO_ERR_IO, EMDPO_ERR_PARSE (diag: the file and what is wrong),
 * EMDPO_ERR_UNSUPPORTED (an architecture variant emdpo does not run),
 * EMDPO_ERR_NOMEM. */
EMDPO_API int emdpo_llama_load(const char *path, emdpo_llama **out, emdpo_diag *diag);
/* The same for a model that will only be run (scored, sampled, a DPO
 * reference or a frozen base), never trained or saved: when every matrix of
 * the file is stored as F16 or as BF16, the matrices stay so, in half the memory of float32, and are widened a layer
 * at a time while running. The results are the bits a float32 load gives.
 * Other files load as emdpo_llama_load does. Saving a frozen model is
 * EMDPO_ERR_INVALID_ARG. */
EMDPO_API int emdpo_llama_load_frozen(const char *path, emdpo_llama **out, emdpo_diag *diag);
/* 1 when m holds 16-bit matrices (emdpo_llama_load_frozen). */
EMDPO_API int emdpo_llama_is_frozen(const emdpo_llama *m);
/* A fresh model for training from scratch, its architecture given as
 * "dim=N,layers=N,heads=N,kv_heads=N,hidden=N,vocab=N,seq_len=N,tied=0|1"
 * (vocab and dim required; layers 2, heads dim/16, kv_heads heads, hidden
 * llama2.c's 8 dim / 3 rounded up to 32, seq_len 256, tied 1), its
 * weights drawn from seed. EMDPO_ERR_INVALID_ARG with diag for a bad
 * spec. */
EMDPO_API int emdpo_llama_from_spec(const char *spec, uint64_t seed, emdpo_llama **out, emdpo_diag *diag);
/* emdpo_llama_save_with (below) with emdpo_llama_save_opts_init's options:
 * the weights in the dtype they were loaded from, no tokenizer files. */
EMDPO_API int emdpo_llama_save(const emdpo_llama *m, const char *dir, emdpo_diag *diag);
/* Writes a GGUF file (version 3) that llama.cpp and ollama run, atomically:
 * architecture llama (Llama, Mistral), qwen2 or qwen3 with every
 * hyper-parameter llama.cpp reads (Llama 3.1's RoPE scaling as the
 * rope_freqs tensor), matrices stored as dtype "f32", "f16" (NULL),
 * "bf16" or "q8_0" (norms in f32), and the vocabulary of tokenizer: a GGUF
 * file's tokenizer metadata as it is, a byte-level BPE tokenizer.json (or
 * the Hugging Face directory holding it) as llama.cpp's "gpt2" vocabulary,
 * or a llama2.c tokenizer.bin as its "llama" one. tokenizer NULL: the file
 * the model was loaded from, when that is a GGUF file. The vocabulary must
 * cover the model's vocab_size ids (a tokenizer.json with fewer is padded
 * with unused tokens, as llama.cpp's converter does).
 * EMDPO_ERR_INVALID_ARG (a bad dtype, no tokenizer), EMDPO_ERR_UNSUPPORTED
 * (a tokenizer llama.cpp cannot be told about), EMDPO_ERR_PARSE (a
 * tokenizer that does not fit the model), EMDPO_ERR_IO, EMDPO_ERR_NOMEM;
 * diag says which. */
EMDPO_API int emdpo_llama_save_gguf(const emdpo_llama *m, const char *tokenizer, const char *path, const char *dtype,
                                    emdpo_diag *diag);
/* Writes a llama2.c checkpoint file, atomically. EMDPO_ERR_UNSUPPORTED when
 * the model's RMSNorm epsilon or RoPE base differ from the format's. */
EMDPO_API int emdpo_llama_save_llama2c(const emdpo_llama *m, const char *path, emdpo_diag *diag);
EMDPO_API void emdpo_llama_free(emdpo_llama *m);

EMDPO_API int emdpo_llama_vocab_size(const emdpo_llama *m);
/* The longest sequence the model takes. */
EMDPO_API int emdpo_llama_context_length(const emdpo_llama *m);
EMDPO_API int emdpo_llama_dim(const emdpo_llama *m);
EMDPO_API size_t emdpo_llama_n_params(const emdpo_llama *m);
/* The path it was loaded from, NULL for a fresh or trained-in-memory one. */
EMDPO_API const char *emdpo_llama_source(const emdpo_llama *m);
/* 1 when a and b have the same architecture (every size, epsilon, RoPE
 * base and tying). */
EMDPO_API int emdpo_llama_same_architecture(const emdpo_llama *a, const emdpo_llama *b);

/* The element type of saved weights. AUTO: the dtype the model was loaded
 * from. */
typedef enum emdpo_dtype {
    EMDPO_DTYPE_AUTO = 0,
    EMDPO_DTYPE_F32 = 1,
    EMDPO_DTYPE_F16 = 2, /* IEEE half: rounded to nearest even; beyond +-65504 infinite */
    EMDPO_DTYPE_BF16 = 3 /* bfloat16, rounded to nearest even as PyTorch's .bfloat16() */
} emdpo_dtype;

/* "auto", "f32", "f16", "bf16"; NULL out of range. */
EMDPO_API const char *emdpo_dtype_name(int d);
/* The dtype m's weights were stored in (F32, F16 or BF16: for a sharded or
 * mixed checkpoint the one holding most elements); F32 for a llama2.c
 * checkpoint or a model made in memory. */
EMDPO_API emdpo_dtype emdpo_llama_file_dtype(const emdpo_llama *m);

/* ---- Tokenizers --------------------------------------------------------- */

/* A tokenizer: the llama2.c tokenizer.bin emdpo trains (SentencePiece BPE
 * with byte fallback; ids 0, 1, 2 are <unk>, BOS, EOS), the vocabulary of a
 * GGUF file, or a Hugging Face tokenizer.json (BPE, byte-level or
 * SentencePiece-style, with its added tokens, normalizers, pre-tokenizers,
 * post-processor and decoders, encoding and decoding exactly as the
 * tokenizers library does). Immutable: encode and decode may run
 * concurrently. */
typedef struct emdpo_tokenizer emdpo_tokenizer;

/* Reads a tokenizer, recognised by content:
 * - a tokenizer.json, or a directory holding one (a Hugging Face model
 *   directory). BOS, EOS and PAD come from tokenizer_config.json's
 *   bos_token / eos_token / pad_token beside it, else from
 *   generation_config.json's and then config.json's *_token_id; generation
 *   stops at every EOS id those files name. None of them: no BOS / EOS.
 *   Its ids must fit in vocab_size (a model's embedding may have more rows
 *   than the tokenizer has ids).
 * - a GGUF file (by its magic): tokenizer.ggml.model "llama" whose ids
 *   0..258 are <unk>, BOS, EOS and the 256 byte pieces, with vocab_size
 *   tokens.
 * - else a llama2.c tokenizer.bin with exactly vocab_size entries (the
 *   format does not record it).
 * vocab_size 0 accepts any size (for tokenizing without a model; a
 * tokenizer.bin is then read to its end); with a model's vocab_size the
 * tokenizer must have an EOS (responses end with it).
 * EMDPO_ERR_IO, EMDPO_ERR_PARSE (diag: what and at which byte, key or
 * field), EMDPO_ERR_UNSUPPORTED (diag) for a component or GGUF vocabulary
 * of a kind not implemented, EMDPO_ERR_INVALID_ARG for a vocab_size that
 * does not fit. */
EMDPO_API int emdpo_tokenizer_load(const char *path, int vocab_size, emdpo_tokenizer **out, emdpo_diag *diag);
EMDPO_API void emdpo_tokenizer_free(emdpo_tokenizer *t);
/* The number of ids (the largest id + 1). */
EMDPO_API int emdpo_tokenizer_vocab_size(const emdpo_tokenizer *t);
/* The path it was loaded from, NULL when parsed from memory. */
EMDPO_API const char *emdpo_tokenizer_source(const emdpo_tokenizer *t);
/* The BOS, EOS and PAD ids, -1 when the tokenizer has none. */
EMDPO_API int emdpo_tokenizer_bos(const emdpo_tokenizer *t);
EMDPO_API int emdpo_tokenizer_eos(const emdpo_tokenizer *t);
EMDPO_API int emdpo_tokenizer_pad(const emdpo_tokenizer *t);
/* The ids that end generation (*ids valid while t lives); returns their
 * count. */
EMDPO_API size_t emdpo_tokenizer_stop_ids(const emdpo_tokenizer *t, const int **ids);

/* Encode flags. ADD_BOS / ADD_EOS put the tokenizer's BOS / EOS around the
 * ids when it has them (as TRL does around prompts and completions); no
 * BOS is added before text whose ids already start with it (a chat
 * template's rendering). */
#define EMDPO_TOK_ADD_BOS 1u
#define EMDPO_TOK_ADD_EOS 2u
/* No SentencePiece dummy prefix (text that continues a sequence): for a
 * tokenizer.json, no Prepend normalizer or Metaspace prefix on the text's
 * first segment. */
#define EMDPO_TOK_NO_PREFIX 4u
/* The tokenizer's own special tokens, as Hugging Face's
 * encode(text, add_special_tokens=True): a tokenizer.json's post-processor
 * (TemplateProcessing); BOS for a tokenizer.bin. */
#define EMDPO_TOK_SPECIAL 8u

/* A bound on the ids encoding len bytes can give with a tokenizer.bin or
 * GGUF vocabulary (a tokenizer.json's normalizers may expand text: use
 * emdpo_tokenizer_encode_alloc, or retry with the size EMDPO_ERR_LIMIT
 * reports). */
EMDPO_API size_t emdpo_tokenizer_encode_bound(size_t len);
/* Encodes text[0..len). A tokenizer.json or GGUF "gpt2" vocabulary does as
 * Hugging Face tokenizers' encode (added tokens matched in the text, with
 * EMDPO_TOK_SPECIAL the post-processor's tokens) and refuses text that is
 * not UTF-8 (EMDPO_ERR_INVALID_ARG). A tokenizer.bin or GGUF "llama"
 * vocabulary does as llama2.c: optional BOS, the dummy prefix
 * space, each UTF-8 code point as its piece when the vocabulary has it and
 * else as byte-fallback ids, then repeated merging of the adjacent pair
 * whose concatenated piece scores highest (the leftmost on ties). Any bytes
 * are accepted; invalid UTF-8 goes through byte fallback. Differences from
 * llama2.c that matter only for unusual vocabularies: a piece listed twice
 * resolves to its lowest id, control and byte pieces are never produced by
 * lookups or merges, and byte-fallback ids never merge. Writes min(n, cap)
 * ids and sets *n_ids = n. EMDPO_ERR_LIMIT when n > cap (cap >=
 * emdpo_tokenizer_encode_bound(len) suffices), EMDPO_ERR_NOMEM. */
EMDPO_API int emdpo_tokenizer_encode(const emdpo_tokenizer *t, const char *text, size_t len, unsigned flags,
                                     int *ids, size_t cap, size_t *n_ids);
/* The same into a new array of exactly *n ids (NULL when 0), freed with
 * emdpo_ids_free(*ids, *n). */
EMDPO_API int emdpo_tokenizer_encode_alloc(const emdpo_tokenizer *t, const char *text, size_t len, unsigned flags,
                                           int **ids, size_t *n);
EMDPO_API void emdpo_ids_free(int *ids, size_t n);

/* emdpo tokenize: reads one JSON value per line from in and writes one per
 * line to out, in input order, the lines of a block in parallel (all
 * threads of emdpo_set_threads). Encoding (decode 0): each line a string,
 * written as its array of ids (encode flags as above; EMDPO_TOK_SPECIAL is
 * Hugging Face's add_special_tokens=True). Decoding (decode 1): each line
 * an array of ids, written as the decoded string (bytes that are not UTF-8
 * as U+FFFD). EMDPO_ERR_PARSE (diag: the line and what is wrong; the lines
 * before it are written), EMDPO_ERR_IO, EMDPO_ERR_NOMEM. */
EMDPO_API int emdpo_tokenize_stream(const emdpo_tokenizer *t, FILE *in, FILE *out, unsigned flags, int decode,
                                    emdpo_diag *diag);
/* Decodes ids to bytes. A tokenizer.json or GGUF "gpt2" vocabulary does as
 * Hugging Face tokenizers' decode(ids, skip_special_tokens=False): special
 * tokens give their text, the decoders run. A tokenizer.bin or GGUF
 * "llama" vocabulary: control ids (<unk>, BOS, EOS) give nothing, byte
 * pieces their byte, other pieces their text; the first token after a BOS
 * loses one leading space (the dummy prefix), so that
 * decode(encode(s, ADD_BOS)) == s. Writes at most cap bytes and, when room
 * remains, a NUL (the text itself may hold NUL bytes); sets *len to the
 * full length. EMDPO_ERR_LIMIT when len >= cap (out may be NULL with cap 0
 * to measure), EMDPO_ERR_INVALID_ARG for an id out of range. */
EMDPO_API int emdpo_tokenizer_decode(const emdpo_tokenizer *t, const int *ids, size_t n, char *out, size_t cap,
                                     size_t *len);

/* Training a BPE vocabulary for a model trained from scratch. */
/* Entries every vocabulary has (<unk>, BOS, EOS and the 256 byte pieces),
 * and the most a trained one may have. */
#define EMDPO_TOK_MIN_VOCAB 259
#define EMDPO_BPE_MAX_VOCAB (1 << 20)

typedef struct emdpo_bpe_opts {
    int vocab_size; /* entries wanted, in EMDPO_TOK_MIN_VOCAB + 1 .. EMDPO_BPE_MAX_VOCAB */
    int min_count;  /* pairs seen fewer times never merge, >= 1 */
    int up_to;      /* 1: stop where the texts run out of pairs to merge; 0: that is an error */
} emdpo_bpe_opts;

/* vocab_size 512, min_count 2, up_to 0. */
EMDPO_API void emdpo_bpe_opts_init(emdpo_bpe_opts *o);

/* A trained vocabulary: a llama2.c tokenizer.bin in memory. */
typedef struct emdpo_vocab emdpo_vocab;

/* Trains on the texts of JSONL files: plain texts ({"text"} or
 * {"prompt","response"}) or preference data (every prompt and response,
 * as often as they occur). EMDPO_ERR_PARSE/EMDPO_ERR_IO for a file (diag),
 * EMDPO_ERR_UNSUPPORTED for preference data without text,
 * EMDPO_ERR_INVALID_ARG for bad options or no text at all, EMDPO_ERR_LIMIT
 * (diag: how many entries the texts support) when they support fewer
 * than vocab_size and up_to is 0. */
EMDPO_API int emdpo_vocab_train(const char *const *paths, int n_paths, const emdpo_bpe_opts *o, emdpo_vocab **out,
                                emdpo_diag *diag);
EMDPO_API void emdpo_vocab_free(emdpo_vocab *v);
/* Entries (the vocab_size a model needs), texts trained on, and the tokens
 * and bytes of those texts under the new vocabulary. */
EMDPO_API int emdpo_vocab_entries(const emdpo_vocab *v);
EMDPO_API int64_t emdpo_vocab_n_texts(const emdpo_vocab *v);
EMDPO_API int64_t emdpo_vocab_n_tokens(const emdpo_vocab *v);
EMDPO_API int64_t emdpo_vocab_n_bytes(const emdpo_vocab *v);
/* Writes the tokenizer.bin atomically. */
EMDPO_API int emdpo_vocab_save(const emdpo_vocab *v, const char *path, emdpo_diag *diag);

/* ---- Saving models -------------------------------------------------------- */

typedef struct emdpo_llama_save_opts {
    emdpo_dtype dtype;                /* the weights' element type; AUTO: emdpo_llama_file_dtype */
    const emdpo_tokenizer *tokenizer; /* the model's tokenizer, written beside it; NULL: none */
} emdpo_llama_save_opts;

/* AUTO, no tokenizer. */
EMDPO_API void emdpo_llama_save_opts_init(emdpo_llama_save_opts *o);
/* Writes a Hugging Face directory, created when missing, that
 * transformers' AutoModelForCausalLM.from_pretrained and emdpo load:
 * config.json (torch_dtype the weights'), model.safetensors (one file; a
 * stale model.safetensors.index.json and the shards it names are removed
 * after it is written) and generation_config.json. With a tokenizer,
 * config.json and generation_config.json carry its BOS and EOS ids (EOS:
 * every id that stops its generation) and its files are copied: a
 * tokenizer.json with the tokenizer_config.json and special_tokens_map.json
 * beside it, or a llama2.c tokenizer.bin; a GGUF vocabulary is not
 * converted. Each file is replaced atomically. o NULL: the defaults.
 * EMDPO_ERR_INVALID_ARG for an unknown dtype, EMDPO_ERR_IO (diag). */
EMDPO_API int emdpo_llama_save_with(const emdpo_llama *m, const char *dir, const emdpo_llama_save_opts *o,
                                    emdpo_diag *diag);

/* ---- LoRA ------------------------------------------------------------------- */

/* The shape of a LoRA adapter (PEFT's LoraConfig): W + s B A with A (r,
 * in) and B (out, r) on the targeted projections of every layer,
 * s = alpha / r (alpha / sqrt(r) with rslora). targets: bits 1 << i for
 * the projections in PEFT's module names' order q_proj, k_proj, v_proj,
 * o_proj, gate_proj, up_proj, down_proj (emdpo_lora_target_name). */
typedef struct emdpo_lora_config {
    int r;            /* rank, >= 1 (0 where an option struct holds one: no adapter) */
    float alpha;      /* lora_alpha */
    float dropout;    /* lora_dropout, in [0, 1) */
    int rslora;       /* use_rslora */
    unsigned targets; /* not empty */
} emdpo_lora_config;

/* r 16, alpha 32, dropout 0, no rsLoRA, all seven projections. */
EMDPO_API void emdpo_lora_config_init(emdpo_lora_config *c);
/* "q_proj,v_proj,..." (PEFT's module names, comma-separated) or
 * "all-linear" -> targets. EMDPO_ERR_INVALID_ARG for an unknown name or an
 * empty list. */
EMDPO_API int emdpo_lora_targets_parse(const char *names, unsigned *targets);
/* PEFT's name of projection i (0..6), NULL for others. */
EMDPO_API const char *emdpo_lora_target_name(int i);

/* ---- LoRA adapters (PEFT) ------------------------------------------------ */

/* A LoRA adapter of a model's projections (Hu et al. 2021, in PEFT's
 * conventions): W + s B A on some of q_proj, k_proj, v_proj, o_proj,
 * gate_proj, up_proj and down_proj of every layer, one rank r,
 * s = lora_alpha / r (lora_alpha / sqrt(r) with use_rslora). */
typedef struct emdpo_lora emdpo_lora_adapter;

/* Reads a PEFT adapter directory made for base: adapter_config.json and
 * adapter_model.safetensors, as peft's PeftModel.save_pretrained writes
 * them (F32, F16 or BF16 tensors). The config is read as PEFT reads it:
 * target_modules a list of module names, a regular expression or
 * "all-linear", exclude_modules, layers_to_transform (a projection adapted
 * on some layers only is zero on the others, which computes the same).
 * EMDPO_ERR_PARSE (diag: the file, and the key or tensor: a tensor missing,
 * extra or of another shape than r and the base give, bad JSON),
 * EMDPO_ERR_UNSUPPORTED (DoRA, trained biases, modules_to_save,
 * fan_in_fan_out, several ranks or alphas, a target other than the seven
 * projections, a feature emdpo does not know), EMDPO_ERR_IO,
 * EMDPO_ERR_NOMEM. */
EMDPO_API int emdpo_lora_adapter_read(const char *dir, const emdpo_llama *base, emdpo_lora_adapter **out,
                                      emdpo_diag *diag);
/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (dir
 * created when missing, each file replaced atomically), which
 * peft.PeftModel.from_pretrained loads on the base: the tensors as dtype
 * (AUTO: F32), base_model_name_or_path base_model (may be NULL).
 * EMDPO_ERR_INVALID_ARG, EMDPO_ERR_IO, EMDPO_ERR_NOMEM. */
EMDPO_API int emdpo_lora_adapter_write(const emdpo_lora_adapter *a, const char *dir, emdpo_dtype dtype,
                                       const char *base_model, emdpo_diag *diag);
EMDPO_API void emdpo_lora_adapter_free(emdpo_lora_adapter *a);
/* r; lora_alpha; the scale s; the number of floats in A and B. */
EMDPO_API int emdpo_lora_adapter_rank(const emdpo_lora_adapter *a);
EMDPO_API double emdpo_lora_adapter_alpha(const emdpo_lora_adapter *a);
EMDPO_API double emdpo_lora_adapter_scale(const emdpo_lora_adapter *a);
EMDPO_API size_t emdpo_lora_adapter_n_params(const emdpo_lora_adapter *a);
/* W += s B A in m, which then computes what its base with the adapter
 * computes. EMDPO_ERR_INVALID_ARG (diag) when m's projections or layer
 * count are not the ones the adapter was read for. */
EMDPO_API int emdpo_lora_adapter_merge(const emdpo_lora_adapter *a, emdpo_llama *m, emdpo_diag *diag);

/* emdpo merge: a base with an adapter merged in, saved as a full
 * checkpoint in the base's format. */
typedef struct emdpo_merge_opts {
    const char *model;     /* the base: a Hugging Face directory, a GGUF file or a llama2.c checkpoint */
    const char *adapter;   /* a PEFT adapter directory */
    const char *out;       /* a Hugging Face directory, a GGUF file or a llama2.c checkpoint, as the base */
    const char *tokenizer; /* Hugging Face output: whose files and BOS/EOS ids go beside the weights (default:
                              the base directory's tokenizer.json, when it has one); GGUF output: the vocabulary
                              to embed (default: the base's) */
    emdpo_dtype dtype;     /* the weights (AUTO: the base's; GGUF: F32 for a quantised base; llama2.c: F32
                              only) */
} emdpo_merge_opts;

/* No paths, AUTO. */
EMDPO_API void emdpo_merge_opts_init(emdpo_merge_opts *o);
/* Loads the base (emdpo_llama_load), reads the adapter, merges and writes
 * o->out. The errors of each step, with diag; EMDPO_ERR_INVALID_ARG for a
 * missing path or a dtype the format does not hold. */
EMDPO_API int emdpo_merge_run(const emdpo_merge_opts *o, emdpo_diag *diag);

/* ---- Token sequences ---------------------------------------------------- */

/* Tokenized (prompt, responses) groups: one group per decision (its items
 * in preference order) or per SFT example. Sequence i of a set made from
 * data is item i of the data. */
typedef struct emdpo_lm_set emdpo_lm_set;

/* The truncation lengths for model m: 0 asks for the default (max_length
 * min(512, the context), max_prompt_length max_length / 2); the results
 * must satisfy 2 <= max_length <= the context and 1 <= max_prompt_length <
 * max_length. EMDPO_ERR_INVALID_ARG with diag otherwise. */
EMDPO_API int emdpo_lm_lengths(const emdpo_llama *m, int *max_length, int *max_prompt_length, emdpo_diag *diag);
/* One group per decision of d (which must have text: else
 * EMDPO_ERR_UNSUPPORTED). EMDPO_ERR_INVALID_ARG for bad lengths. */
EMDPO_API int emdpo_lm_set_from_data(const emdpo_data *d, const emdpo_tokenizer *tok, int max_length,
                                     int max_prompt_length, emdpo_lm_set **out);
/* A JSONL file for training or scoring: {"prompt","response"} or {"text"}
 * lines give one group of one sequence each; preference data gives one
 * group per decision, or with chosen_only one sequence per decision, its
 * chosen response (SFT on preference data). *data (may be NULL) receives
 * the preference dataset, NULL for plain texts. EMDPO_ERR_PARSE/IO with
 * diag, EMDPO_ERR_UNSUPPORTED for preference data without text. */
EMDPO_API int emdpo_lm_set_read(const char *path, const emdpo_tokenizer *tok, int max_length, int max_prompt_length,
                                int chosen_only, emdpo_lm_set **out, emdpo_data **data, emdpo_diag *diag);
/* emdpo_data_read_with (JSONL) for work that only tokenizes the texts with
 * tok into sequences of max_length tokens (0: emdpo_lm_lengths' default
 * for m): training, scoring and fitting language-model policies. Of a text
 * longer than such a sequence can reach, only its ends are kept, so that
 * reading costs memory in proportion to the context rather than to the
 * longest line, and the tokens made from the data are those of the whole
 * texts. Records that TRL's implicit prompt or a chat template turns into
 * texts are refused at their line when one of their strings is that long.
 * Commands that need the texts themselves (generation, evaluation against
 * the responses' text) read them whole with emdpo_data_read_with. */
EMDPO_API int emdpo_lm_data_read(const char *path, const emdpo_read_opts *o, const emdpo_llama *m,
                                 const emdpo_tokenizer *tok, int max_length, emdpo_data **out, emdpo_diag *diag);
EMDPO_API void emdpo_lm_set_free(emdpo_lm_set *s);
EMDPO_API int64_t emdpo_lm_set_n_sequences(const emdpo_lm_set *s);
EMDPO_API int64_t emdpo_lm_set_n_groups(const emdpo_lm_set *s);
/* Sequences whose prompt or response was cut. */
EMDPO_API int64_t emdpo_lm_set_n_truncated(const emdpo_lm_set *s);
EMDPO_API int emdpo_lm_set_max_length(const emdpo_lm_set *s);
/* Group g's sequences are first .. first + count - 1; returns count. */
EMDPO_API int emdpo_lm_set_group(const emdpo_lm_set *s, int64_t g, int64_t *first);
/* Tokens of sequence i's response span (with the EOS when not cut). */
EMDPO_API int emdpo_lm_set_response_tokens(const emdpo_lm_set *s, int64_t i);

/* Response log-probability of every sequence of set under m into logp
 * (n_sequences), batch sequences per forward. The same batch gives the
 * same bits; another may differ in the last bits (float sums in another
 * order). EMDPO_ERR_LIMIT when a sequence does not fit m's context or a
 * token its vocabulary. */
EMDPO_API int emdpo_lm_score(const emdpo_llama *m, const emdpo_lm_set *set, int batch, double *logp);
/* The same for base m running adapter a unmerged (a NULL: m alone), as
 * emdpo score --adapter computes it. EMDPO_ERR_INVALID_ARG when a was
 * read for another shape of model than m's. */
EMDPO_API int emdpo_lm_score_adapter(const emdpo_llama *m, const emdpo_lora_adapter *a, const emdpo_lm_set *set,
                                     int batch, double *logp);

/* ---- Generation --------------------------------------------------------- */

typedef struct emdpo_sample_opts {
    double temperature; /* >= 0; 0 is greedy (argmax, lowest id on ties) */
    int top_k;          /* sample among the k most probable ids, 0..vocab; 0 keeps all */
    double top_p;       /* nucleus: the smallest most-probable set of mass >= top_p, in (0, 1] */
    int max_tokens;     /* new tokens per sample at most, >= 0 */
    int n;              /* samples, 1..1000000 */
    uint64_t seed;      /* sample i draws from stream i of the seed */
    const int *stop_ids; /* (n_stop) ids that end a sample (emdpo_tokenizer_stop_ids); NULL: llama2.c's EOS
                            and BOS */
    size_t n_stop;
    const char *adapter; /* emdpo_generate_text: a PEFT LoRA adapter directory merged into the model first;
                            NULL: none */
} emdpo_sample_opts;

/* temperature 1, top_k 0, top_p 1, max_tokens 256, n 1, seed 1, stop_ids
 * NULL, no adapter. */
EMDPO_API void emdpo_sample_opts_init(emdpo_sample_opts *o);

/* Why a sample ended. */
enum { EMDPO_GEN_EOS = 0, EMDPO_GEN_MAX = 1, EMDPO_GEN_CONTEXT = 2 };

/* Continues prompt[0..n_prompt) (ids, usually starting with BOS) o->n
 * times, decoded together: sample i's tokens go to out + i * max_tokens
 * (out holds n * max_tokens ids), their count to n_out[i] and the reason to
 * stop[i] (may be NULL). Generation stops at EOS or BOS, after max_tokens,
 * or when the context is full. EMDPO_ERR_INVALID_ARG for bad options or a
 * prompt longer than the context. */
EMDPO_API int emdpo_lm_generate(const emdpo_llama *m, const emdpo_sample_opts *o, const int *prompt, int n_prompt,
                                int *out, int *n_out, int *stop);

/* Generation from text for a checkpoint or a mixture.json (emdpo_mixture:
 * sample i draws its member from stream i of the seed): what emdpo
 * generate prints. */
typedef struct emdpo_generation emdpo_generation;

/* model: a checkpoint path or a mixture.json; prompt may be NULL (start
 * from BOS). Errors of the loaders, EMDPO_ERR_INVALID_ARG (diag) for bad
 * options or a prompt longer than the context. */
EMDPO_API int emdpo_generate_text(const char *model, const char *tokenizer, const char *prompt,
                                  const emdpo_sample_opts *o, emdpo_generation **out, emdpo_diag *diag);
EMDPO_API void emdpo_generation_free(emdpo_generation *g);
EMDPO_API int emdpo_generation_n(const emdpo_generation *g);
/* Sample i's text (the prompt and its continuation; it may hold NUL
 * bytes, so *len gives its length). */
EMDPO_API const char *emdpo_generation_text(const emdpo_generation *g, int i, size_t *len);
/* The mixture member sample i came from, as the mixture file writes it;
 * NULL for a single checkpoint. */
EMDPO_API const char *emdpo_generation_member(const emdpo_generation *g, int i);
/* 1 when the model was a mixture. */
EMDPO_API int emdpo_generation_is_mixture(const emdpo_generation *g);

/* ---- Training: optimizers, losses, the trainer -------------------------- */

typedef enum emdpo_optim_kind { EMDPO_OPTIM_ADAMW = 0, EMDPO_OPTIM_RMSPROP = 1 } emdpo_optim_kind;

/* "adamw", "rmsprop"; NULL out of range. */
EMDPO_API const char *emdpo_optim_name(int kind);

/* PyTorch's update rules, with the DPO reference's linear warmup
 * lr * min(1, (t + 1) / (warmup + 1)) and clipping to a global L2 norm. */
typedef struct emdpo_optim_config {
    emdpo_optim_kind kind;
    double lr;
    double beta1, beta2; /* AdamW */
    double alpha;        /* RMSprop smoothing */
    double momentum;     /* RMSprop */
    double eps;
    double weight_decay; /* decoupled for AdamW, L2 for RMSprop */
    int64_t warmup;      /* steps of linear warmup */
    double clip;         /* max gradient norm; 0 = no clipping */
} emdpo_optim_config;

/* PyTorch's defaults for kind: lr 1e-3 (AdamW) or 1e-2 (RMSprop), betas
 * 0.9 and 0.999, alpha 0.99, eps 1e-8, no momentum, decay, warmup or
 * clipping. */
EMDPO_API void emdpo_optim_config_init(emdpo_optim_config *c, emdpo_optim_kind kind);

/* Preference losses on log-ratios lr_k of a decision's items (chosen
 * first): DPO, the Plackett-Luce likelihood of the choices (-log
 * sigma(beta (lr_c - lr_r)) for a pair); conservative DPO with label
 * smoothing; IPO, (lr_c - lr_r - 1 / (2 beta))^2; hinge (SLiC),
 * max(0, 1 - beta (lr_c - lr_r)). */
typedef enum emdpo_loss_kind { EMDPO_LOSS_DPO = 0, EMDPO_LOSS_CDPO = 1, EMDPO_LOSS_IPO = 2, EMDPO_LOSS_HINGE = 3 }
emdpo_loss_kind;

/* "dpo", "cdpo", "ipo", "hinge"; NULL out of range. */
EMDPO_API const char *emdpo_loss_name(int kind);

typedef struct emdpo_loss_opts {
    emdpo_loss_kind kind;
    double beta;            /* > 0 */
    double label_smoothing; /* cDPO's epsilon in [0, 0.5) */
    double rpo_alpha;       /* >= 0: weight of the chosen responses' NLL added to the preference loss (RPO,
                               TRL's rpo_alpha): alpha * the mean over the step's chosen-response tokens of
                               -log pi, each decision's tokens weighted by its weight; 0: off */
} emdpo_loss_opts;

typedef enum emdpo_train_mode { EMDPO_TRAIN_SFT = 0, EMDPO_TRAIN_DPO = 1 } emdpo_train_mode;

typedef struct emdpo_train_config {
    emdpo_train_mode mode;
    emdpo_loss_opts loss;     /* DPO only */
    emdpo_optim_config optim;
    int batch;                /* examples per micro-batch, >= 1 */
    int accum;                /* micro-batches per optimizer step, >= 1 */
    uint64_t seed;            /* shuffling */
    int grad_checkpoint;      /* 1: activation checkpointing: keep each layer's input and recompute the rest
                                 in the backward (about 1/L of the activations' memory for about a third more
                                 time; the same gradients bit for bit); 0: keep every layer's activations */
} emdpo_train_config;

/* The defaults of each mode. SFT: AdamW, lr 2e-5, clip 1. DPO: RMSprop,
 * lr 1e-6, clip 10 (the DPO reference's optimizer), loss DPO with beta
 * 0.1. Both: batch 4, accum 1, seed 1, no warmup or decay, no activation
 * checkpointing. */
EMDPO_API void emdpo_train_config_init(emdpo_train_config *c, emdpo_train_mode mode);

/* One optimizer step's metrics, under TRL's names; rewards are DPO's only,
 * means over the step's examples weighted by their weights. */
typedef struct emdpo_train_metrics {
    int64_t step;          /* steps done, counting this one */
    double epoch;          /* examples consumed / examples in the set */
    double loss;
    double grad_norm;      /* before clipping */
    double learning_rate;
    double rewards_chosen, rewards_rejected, rewards_margins, rewards_accuracies;
    int64_t examples;      /* examples in this step */
} emdpo_train_metrics;

/* Trains a model in place on a set. An example is a group: one (prompt,
 * response) for SFT, one decision for DPO; each step draws batch * accum
 * examples from a permutation reshuffled every epoch. Under MPI
 * (emdpo_dist_init) steps, emdpo_trainer_set_reference and emdpo_lm_score
 * are collectives: every process holds the same set, takes a share of each
 * step's examples (of each pass's batches), and the gradients (the
 * log-probabilities) are summed (gathered) over processes. */
typedef struct emdpo_trainer emdpo_trainer;

/* m and set are borrowed (and must outlive the trainer); weights
 * (n_groups, copied; NULL = all 1) scale each example's loss.
 * EMDPO_ERR_INVALID_ARG for a bad configuration or weight (negative, not
 * finite), DPO on a group of one, SFT on a group of several;
 * EMDPO_ERR_LIMIT when a sequence exceeds m's context or vocabulary. */
EMDPO_API int emdpo_trainer_create(emdpo_llama *m, const emdpo_lm_set *set, const double *weights,
                                   const emdpo_train_config *c, emdpo_trainer **out);
EMDPO_API void emdpo_trainer_free(emdpo_trainer *t);
/* Replaces the weights (n_groups, copied; NULL = all 1) and keeps
 * everything else: parameters, optimizer state, shuffling, reference. For
 * weights that change during one run, as in MMRA-LW's rounds. A checkpoint
 * is tied to the weights in force when it is written. EMDPO_ERR_INVALID_ARG
 * for a negative or non-finite weight (the old weights stay). */
EMDPO_API int emdpo_trainer_set_weights(emdpo_trainer *t, const double *weights);
/* DPO: caches the reference log-probabilities under ref (NULL: the model's
 * current parameters). Needed once before the first step, unless resumed. */
EMDPO_API int emdpo_trainer_set_reference(emdpo_trainer *t, const emdpo_llama *ref);
/* One optimizer step; its metrics go to met (may be NULL).
 * EMDPO_ERR_NUMERIC (parameters untouched) when the loss or gradient is
 * not finite. */
EMDPO_API int emdpo_trainer_step(emdpo_trainer *t, emdpo_train_metrics *met);
EMDPO_API int64_t emdpo_trainer_steps_done(const emdpo_trainer *t);
/* A checkpoint (configuration, parameters, optimizer state, step,
 * shuffling state, reference cache), written atomically; resuming from it
 * and running to step N gives the same bits as an uninterrupted run. */
EMDPO_API int emdpo_trainer_save(const emdpo_trainer *t, const char *path, emdpo_diag *diag);
/* Restores a checkpoint into a trainer created for the same model
 * configuration, data, weights, mode, optimizer, batch and accum: the
 * parameters, optimizer state, step, shuffling state and reference cache.
 * EMDPO_ERR_PARSE with diag for a file that is not a checkpoint, is damaged
 * (its crc32 does not match) or belongs to another run, EMDPO_ERR_IO. A file that fails after its header matched
 * (cut short, say) leaves the model and trainer half restored: free them. */
EMDPO_API int emdpo_trainer_resume(emdpo_trainer *t, const char *path, emdpo_diag *diag);

/* ---- An SFT or DPO run: what emdpo sft and emdpo dpo do ----------------- */

typedef void (*emdpo_train_progress)(void *ud, const emdpo_train_metrics *m, int64_t total_steps,
                                     double examples_per_s);

typedef struct emdpo_train_opts {
    emdpo_train_config train;
    const char *data;          /* JSONL: SFT texts or preference data (SFT: its chosen responses) */
    const emdpo_read_opts *read; /* how data is read (conversations, the annotator field); NULL: the defaults */
    const char *model;         /* the starting checkpoint, or NULL with config_spec */
    const char *config_spec;   /* a fresh model (emdpo_llama_from_spec), drawn from train.seed */
    const char *tokenizer;
    const char *out;           /* output directory: the model (emdpo_llama_save_with, with the tokenizer's
                                  files) and trainer.bin */
    const char *ref;           /* DPO reference checkpoint; NULL: the starting model */
    const char *weights;       /* CSV of weights (emdpo_weights_read); NULL: all 1 */
    const char *weight_column; /* the column of an annotator weight file; NULL: the second */
    const char *log;           /* JSONL metrics (TRL names), one line per step; NULL: none */
    int64_t steps;             /* optimizer steps; 0: one epoch */
    int64_t save_every;        /* checkpoint every N steps; 0: only at the end */
    int resume;                /* continue from out/trainer.bin (the log keeps its lines up to the checkpoint's step) */
    int max_length, max_prompt_length; /* 0: emdpo_lm_lengths' defaults */
    emdpo_dtype save_dtype;    /* the saved model's weights; AUTO: the starting model's (F32 from a spec); an
                                  adapter's: AUTO is F32 */
    emdpo_lora_config lora;    /* lora.r > 0: train a LoRA adapter of this shape on model, which stays frozen
                                  (emdpo_llama_load_frozen) and is the DPO reference unless ref is given; out
                                  then holds PEFT's adapter_config.json and adapter_model.safetensors (and
                                  trainer.bin), and a resume needs model again. 0: train the model itself */
    const char *merge;         /* with lora: also write model + adapter merged there at the end, a full
                                  checkpoint in the model's format (emdpo_merge_run); NULL: not */
    emdpo_train_progress progress;     /* after every step; may be NULL */
    void *progress_ud;
} emdpo_train_opts;

/* emdpo_train_config_init(mode) for train; steps 0, save_every 100, no
 * adapter (emdpo_lora_config_init's shape with r 0), no paths but what the
 * caller gives. */
EMDPO_API void emdpo_train_opts_init(emdpo_train_opts *o, emdpo_train_mode mode);

typedef struct emdpo_train_job emdpo_train_job;

/* Loads the model, reference, tokenizer, data and weights, sets up the
 * trainer and, with resume, restores out/trainer.bin. Nothing is written
 * yet. Errors of the loaders with diag; EMDPO_ERR_INVALID_ARG (diag) for
 * bad options; EMDPO_ERR_LIMIT when a sequence does not fit the model. */
EMDPO_API int emdpo_train_job_create(const emdpo_train_opts *o, emdpo_train_job **out, emdpo_diag *diag);
EMDPO_API void emdpo_train_job_free(emdpo_train_job *j);
/* Steps the run will end at, steps done, sequences and how many were cut
 * (and to what length). */
EMDPO_API int64_t emdpo_train_job_total_steps(const emdpo_train_job *j);
EMDPO_API int64_t emdpo_train_job_steps_done(const emdpo_train_job *j);
EMDPO_API int64_t emdpo_train_job_n_sequences(const emdpo_train_job *j);
EMDPO_API int64_t emdpo_train_job_n_truncated(const emdpo_train_job *j);
EMDPO_API int emdpo_train_job_max_length(const emdpo_train_job *j);
/* Runs the remaining steps, writing the log, the checkpoints every
 * save_every steps and the model and checkpoint at the end.
 * EMDPO_ERR_NUMERIC when the loss or gradient is not finite, EMDPO_ERR_IO
 * with diag for a file that cannot be written. */
EMDPO_API int emdpo_train_job_run(emdpo_train_job *j, emdpo_diag *diag);
/* The last step's metrics (zeros before the first). */
EMDPO_API void emdpo_train_job_last(const emdpo_train_job *j, emdpo_train_metrics *m);

/* ---- Scores of responses: what emdpo score does -------------------------- */

typedef struct emdpo_score_opts {
    const char *model;     /* a checkpoint or a mixture.json (then logp is the mixture's) */
    const char *adapter;   /* a PEFT LoRA adapter directory run on model (not merged); NULL: none */
    const char *ref;       /* adds ref_logp and logratio; NULL: none */
    const char *tokenizer;
    const char *data;      /* JSONL: preference data or SFT texts */
    const emdpo_read_opts *read; /* how data is read; NULL: the defaults */
    int max_length, max_prompt_length; /* 0: emdpo_lm_lengths' defaults */
    int batch;             /* sequences per forward, >= 1 */
} emdpo_score_opts;

/* batch 8, default lengths, no paths. */
EMDPO_API void emdpo_score_opts_init(emdpo_score_opts *o);

typedef struct emdpo_scores emdpo_scores;

EMDPO_API int emdpo_score_run(const emdpo_score_opts *o, emdpo_scores **out, emdpo_diag *diag);
EMDPO_API void emdpo_scores_free(emdpo_scores *s);
EMDPO_API int64_t emdpo_scores_n_sequences(const emdpo_scores *s);
EMDPO_API int64_t emdpo_scores_n_truncated(const emdpo_scores *s);
EMDPO_API int emdpo_scores_max_length(const emdpo_scores *s);
/* The CSV: example,item,annotator,response_tokens,logp[,ref_logp,logratio],
 * one row per sequence. */
EMDPO_API int emdpo_scores_write(const emdpo_scores *s, FILE *fp);
/* The same CSV written atomically to path. */
EMDPO_API int emdpo_scores_save(const emdpo_scores *s, const char *path, emdpo_diag *diag);

/* ---- EM-DPO on Llama policies ------------------------------------------- */

/* How each type's posterior weights enter its weighted DPO: MEAN rescales
 * them to mean 1 over the decisions (the same objective up to a constant,
 * with clipping acting as in plain DPO); NONE uses gamma as it is, as the
 * authors' code does. */
typedef enum emdpo_weight_norm { EMDPO_WEIGHT_NORM_MEAN = 0, EMDPO_WEIGHT_NORM_NONE = 1 } emdpo_weight_norm;

/* "mean", "none"; NULL out of range. */
EMDPO_API const char *emdpo_weight_norm_name(int norm);

/* The M-step: weighted multi-item DPO of every type on every decision. */
typedef struct emdpo_lm_mstep_opts {
    double beta;               /* DPO temperature: utilities are beta * log-ratios, > 0 */
    double rpo_alpha;          /* >= 0: RPO's NLL term (emdpo_loss_opts), 0: off */
    int max_length;            /* 0: emdpo_lm_lengths' default */
    int max_prompt_length;     /* 0: max_length / 2 */
    emdpo_optim_config optim;
    int batch;                 /* decisions per micro-batch */
    int accum;                 /* micro-batches per optimizer step */
    int64_t steps;             /* optimizer steps per type per M-step; 0: from epochs */
    double epochs;             /* with steps 0: ceil(epochs * decisions / (batch * accum)) steps */
    int restart;               /* 1: every M-step starts from the SFT model (the authors' code); 0: from
                                  the type's current policy */
    emdpo_weight_norm weight_norm;
    int score_batch;           /* sequences per scoring forward */
    uint64_t seed;             /* shuffling, and the adapters' initialisation */
    emdpo_lora_config lora;    /* lora.r > 0: each type is a LoRA adapter of this shape on the SFT model, which
                                  all types share and none writes (and which is then every type's DPO
                                  reference, as it is anyway); 0: each type a full copy */
    int grad_checkpoint;       /* activation checkpointing in training (emdpo_train_config's) */
} emdpo_lm_mstep_opts;

typedef struct emdpo_lm_fit_opts {
    int k;                     /* latent types, 1..EMDPO_MAX_K */
    emdpo_em_opts em;
    emdpo_lm_mstep_opts mstep;
    emdpo_dtype save_dtype;    /* the K policies' weights when the fit is written; AUTO: the SFT model's */
    const char *checkpoint;    /* a directory for the fit's state, written after each type's training in every
                                  M-step (docs/ARCHITECTURE.md, "Resumable EM-DPO"); NULL: none */
    int resume;                /* continue from checkpoint's state: the same bits as a run never stopped */
    const char *log;           /* JSONL metrics, one line per optimizer step: TRL's names, "type" (1..K),
                                  "em_iteration" (0: the M-step before the first E-step) and "start";
                                  on resume it keeps its lines up to the checkpoint's. NULL: none */
} emdpo_lm_fit_opts;

/* EM: emdpo_em_opts_init's, but max_iter 5 (the paper's), tol 0 and
 * patience 2 (stochastic M-steps can fall and recover). M-step: beta 0.1,
 * the DPO training defaults of emdpo_train_config_init (optimizer,
 * learning rate, clipping, batch, accum), 1 epoch, warm start, MEAN,
 * score_batch 16, seed 1, full copies (lora: emdpo_lora_config_init's
 * with r 0). k 2. */
EMDPO_API void emdpo_lm_fit_opts_init(emdpo_lm_fit_opts *o);

/* EM-DPO with o->k types, each starting as a copy of sft, which is also
 * the reference; d must have text. The E-step scores every response under
 * every type (reference log-probabilities once). The fit holds the K
 * trained models (emdpo_fit_model) and is saved with emdpo_fit_write.
 * EMDPO_ERR_INVALID_ARG (diag) for bad options, EMDPO_ERR_UNSUPPORTED for
 * data without text, EMDPO_ERR_LIMIT when a sequence does not fit the
 * model, EMDPO_ERR_NUMERIC when training diverges. With o->resume, the
 * errors of a checkpoint that cannot be used (EMDPO_ERR_PARSE: damaged, or
 * written by a fit of other data, model or settings; EMDPO_ERR_IO:
 * missing), naming its file. */
EMDPO_API int emdpo_lm_fit(const emdpo_llama *sft, const emdpo_tokenizer *tok, const emdpo_data *d,
                           const emdpo_lm_fit_opts *o, emdpo_fit **out, emdpo_diag *diag);

/* Type k's model of a fit made in memory; NULL for a fit read from a file
 * (load emdpo_fit_policy_path) or k out of range. */
EMDPO_API const emdpo_llama *emdpo_fit_model(const emdpo_fit *f, int k);
/* For Llama fits: the SFT model's and tokenizer's paths, and type k's
 * checkpoint directory (resolved against the fit's directory when read
 * from a file; NULL for a fit not yet written). NULL for other fits. */
EMDPO_API const char *emdpo_fit_model_path(const emdpo_fit *f);
EMDPO_API const char *emdpo_fit_tokenizer_path(const emdpo_fit *f);
EMDPO_API const char *emdpo_fit_policy_path(const emdpo_fit *f, int k);
/* Type k's directory name inside the fit ("type_1", ...). */
EMDPO_API const char *emdpo_fit_policy_name(const emdpo_fit *f, int k);
/* The settings a Llama fit was made with (k, EM and M-step). */
EMDPO_API void emdpo_fit_lm_opts(const emdpo_fit *f, emdpo_lm_fit_opts *out);
/* Optimizer steps per type per M-step. */
EMDPO_API int64_t emdpo_fit_mstep_steps(const emdpo_fit *f);

/* ---- Choosing K for Llama policies (the paper's appendix D.3.1) --------- */

typedef enum emdpo_lm_criterion {
    EMDPO_CRITERION_MARGIN = 0,  /* the validation max-mean reward margin */
    EMDPO_CRITERION_CROSSFIT = 1 /* its cross-fitted version, which does not rise with K on noise */
} emdpo_lm_criterion;

/* "margin", "crossfit"; NULL out of range. */
EMDPO_API const char *emdpo_lm_criterion_name(int c);
/* The criterion's one-line name and its definition, as select.json records
 * them. */
EMDPO_API const char *emdpo_lm_criterion_title(int c);
EMDPO_API const char *emdpo_lm_criterion_definition(int c);

/* One K's fit and validation scores. */
typedef struct emdpo_lm_select_row {
    int k, iterations, n_empty;
    double margin;       /* the validation max-mean reward margin */
    double crossfit;     /* the cross-fitted margin (NaN without annotators of two decisions) */
    double train_loglik; /* the fit's log-likelihood */
    double val_loglik;   /* the validation mixture log-likelihood, total over annotators */
} emdpo_lm_select_row;

typedef void (*emdpo_lm_select_progress)(void *ud, const emdpo_lm_select_row *row, int64_t n_valid);

typedef struct emdpo_lm_select_opts {
    int k_min, k_max;            /* 1 <= k_min <= k_max <= EMDPO_MAX_K */
    emdpo_lm_criterion criterion;
    const char *out;             /* write out/k_K (each fit, as emdpo_fit_write) and out/select.json; NULL:
                                    nothing */
    emdpo_lm_fit_opts fit;       /* every K's fit, fit.k excepted */
    emdpo_lm_select_progress progress; /* after each K; may be NULL */
    void *progress_ud;
} emdpo_lm_select_opts;

/* k 1..4, MARGIN, emdpo_lm_fit_opts_init's fit. */
EMDPO_API void emdpo_lm_select_opts_init(emdpo_lm_select_opts *o);

typedef struct emdpo_lm_select emdpo_lm_select;

/* Fits each K on train exactly as emdpo_lm_fit (the same seed gives the
 * same bits) and scores its policies on valid's decisions. */
EMDPO_API int emdpo_lm_select_run(const emdpo_llama *sft, const emdpo_tokenizer *tok, const emdpo_data *train,
                                  const emdpo_data *valid, const emdpo_lm_select_opts *o, emdpo_lm_select **out,
                                  emdpo_diag *diag);
EMDPO_API void emdpo_lm_select_free(emdpo_lm_select *s);
EMDPO_API int emdpo_lm_select_n_rows(const emdpo_lm_select *s);
EMDPO_API int emdpo_lm_select_row_at(const emdpo_lm_select *s, int r, emdpo_lm_select_row *row);
/* Row r's max-mean margin of true group g of the validation data (NaN
 * without groups). */
EMDPO_API double emdpo_lm_select_group_margin(const emdpo_lm_select *s, int r, int g);
/* The row with the largest criterion (a tie goes to the smaller K). */
EMDPO_API int emdpo_lm_select_best(const emdpo_lm_select *s);
/* select.json: the rows, the best K, the criterion and the settings. */
EMDPO_API int emdpo_lm_select_write_json(const emdpo_lm_select *s, FILE *fp);

/* ---- Baselines (the paper's section 5 and appendix D.2) ------------------ */

typedef enum emdpo_baseline_method {
    EMDPO_BASELINE_VANILLA = 0,  /* one DPO policy on every decision */
    EMDPO_BASELINE_CLUSTER = 1,  /* k-means on annotator embeddings, one policy per cluster (Cluster-DPO) */
    EMDPO_BASELINE_TRUELABEL = 2 /* one policy per true group (True-Label DPO) */
} emdpo_baseline_method;

/* "vanilla", "cluster", "truelabel"; NULL out of range. */
EMDPO_API const char *emdpo_baseline_method_name(int m);

typedef struct emdpo_baseline_opts {
    emdpo_baseline_method method;
    int k;                     /* cluster: clusters */
    emdpo_train_config train;  /* DPO settings; policy k shuffles with train.seed + k */
    int64_t steps;             /* optimizer steps per policy; 0: one epoch of its decisions */
    int max_length, max_prompt_length; /* 0: emdpo_lm_lengths' defaults */
    int score_batch;           /* cluster: sequences per embedding forward */
    emdpo_dtype save_dtype;    /* the policies' weights; AUTO: the SFT model's (an adapter's: F32) */
    emdpo_lora_config lora;    /* lora.r > 0: each policy is a LoRA adapter of this shape on sft, which stays
                                  frozen (it may be loaded with emdpo_llama_load_frozen) and is every policy's
                                  reference; type_k then holds PEFT's adapter_config.json and
                                  adapter_model.safetensors, as emdpo_train_job writes them. 0: full copies */
} emdpo_baseline_opts;

/* VANILLA, k 2, emdpo_train_config_init(DPO), one epoch, score_batch 16,
 * full copies (lora: emdpo_lora_config_init's with r 0). */
EMDPO_API void emdpo_baseline_opts_init(emdpo_baseline_opts *o);

typedef void (*emdpo_baseline_note)(void *ud, int k, int64_t n_decisions);

/* Trains the method's policies from sft (also the reference) on d and
 * writes out_dir/type_1 .. type_K (Hugging Face checkpoints with tok's
 * files, emdpo_llama_save_with; with o->lora, PEFT adapter directories
 * whose base_model_name_or_path is sft's file, absolute), for cluster
 * out_dir/clusters.csv (annotator,cluster), and out_dir/baseline.json
 * last. A policy with no decisions is the SFT model itself (with o->lora, a
 * fresh adapter, which computes the same); note (may be NULL) is told. *K (may be NULL) gets the number of policies.
 * EMDPO_ERR_INVALID_ARG (diag): no groups for truelabel, k above the
 * annotators for cluster. */
EMDPO_API int emdpo_baseline_run(const emdpo_llama *sft, const emdpo_tokenizer *tok, const emdpo_data *d,
                                 const emdpo_baseline_opts *o, const char *out_dir, emdpo_baseline_note note,
                                 void *note_ud, int *K, emdpo_diag *diag);

/* ---- Generation quality --------------------------------------------------- */

/* How responses are sampled to judge whether a policy still generates
 * well: o->samples responses to each of the data's first max_prompts
 * distinct prompts (in order of first appearance). */
typedef struct emdpo_genq_opts {
    int samples;               /* responses per prompt, >= 1 */
    int max_tokens;            /* new tokens per response, >= 1 */
    double temperature;        /* > 0; 1 samples the policy itself (what the KL estimate assumes) */
    int64_t max_prompts;       /* distinct prompts used, >= 0; 0: all */
    int rep_n;                 /* n of the repetition rate, >= 1 */
    uint64_t seed;             /* sample i of prompt j draws from stream j * samples + i */
} emdpo_genq_opts;

/* samples 5, max_tokens 64, temperature 1, max_prompts 20, rep_n 4, seed 1. */
EMDPO_API void emdpo_genq_opts_init(emdpo_genq_opts *o);

/* A policy's samples summarized (means over n samples; _se their standard
 * errors). */
typedef struct emdpo_genq {
    int64_t n;                 /* samples */
    double valid, valid_se;    /* share that is exactly one of the closed response set (text trimmed of white
                                  space at both ends); NaN when no closed set was given */
    double mean_tokens;        /* new tokens, EOS not counted */
    double mean_words;         /* white-space separated words of the decoded text */
    double repetition;         /* seq-rep-n: mean over samples of 1 - distinct/total token n-grams */
    double eos;                /* share that ended with EOS (the rest ran out of max_tokens or context) */
    double kl, kl_se;          /* mean log pi(y|x) - log pi_ref(y|x): the sampled KL(pi || pi_ref) */
} emdpo_genq;

/* ---- Evaluation by true group (the paper's Table 1) ---------------------- */

typedef struct emdpo_eval_opts {
    double beta;               /* rewards are beta * log-ratios, > 0 */
    int batch;                 /* sequences per forward */
    int max_length, max_prompt_length; /* 0: emdpo_lm_lengths' defaults */
    const char *posterior;     /* a posterior.csv: adds the adjusted Rand index; NULL: none */
    /* Generation quality of the reference, every type policy and the extra
     * policies below, on the data's prompts (0: not measured). */
    int generate;
    emdpo_genq_opts genq;
    int closed_set;            /* the data's responses are the only valid ones: report validity */
    const char *const *gen_names;  /* (n_gen) labels of extra policies, generation quality only */
    const char *const *gen_paths;  /* (n_gen) checkpoints or mixture.json files */
    int n_gen;
    /* More methods, after method_dirs: PEFT LoRA adapters run on ref itself
     * (their base, whatever base_model_name_or_path names), unmerged: each
     * an adapter directory (one policy, type_1) or a directory of type_N/
     * adapter directories. */
    const char *const *adapters;   /* (n_adapters) */
    int n_adapters;
} emdpo_eval_opts;

/* beta 0.1, batch 16, default lengths, no generation (emdpo_genq_opts_init's
 * settings when turned on), no closed set, no extra policies, no
 * adapters. */
EMDPO_API void emdpo_eval_opts_init(emdpo_eval_opts *o);

typedef struct emdpo_eval emdpo_eval;

/* Each method directory's type_N/ policies (emdpo fit or baseline output:
 * checkpoints, or PEFT adapter directories, which run unmerged on ref when
 * their base_model_name_or_path is ref's file, else load as their base
 * with the adapter merged), then o->adapters, on held-out data d with true
 * groups, against ref: per group, each
 * policy's mean reward margin and accuracy, the best policy (highest
 * margin, lowest N on a tie), its max-mean margin and accuracy. Each
 * distinct sequence is scored once per model. EMDPO_ERR_INVALID_ARG
 * (diag) for data without groups or a directory without type_N/. */
EMDPO_API int emdpo_eval_run(const emdpo_llama *ref, const emdpo_tokenizer *tok, const emdpo_data *d,
                             const char *const *method_dirs, int n_methods, const emdpo_eval_opts *o,
                             emdpo_eval **out, emdpo_diag *diag);
EMDPO_API void emdpo_eval_free(emdpo_eval *e);
EMDPO_API int emdpo_eval_n_methods(const emdpo_eval *e);
EMDPO_API int emdpo_eval_n_groups(const emdpo_eval *e);
/* Group g's name, as the data names it (NULL out of range). */
EMDPO_API const char *emdpo_eval_group_name(const emdpo_eval *e, int g);
/* The row label of method j: its directory's last component. */
EMDPO_API const char *emdpo_eval_method_name(const emdpo_eval *e, int j);
/* Method j's policies: how many, and the N of its i-th type_N. */
EMDPO_API int emdpo_eval_n_policies(const emdpo_eval *e, int j);
EMDPO_API int emdpo_eval_policy(const emdpo_eval *e, int j, int i);
/* Per policy and group: mean margin and accuracy. */
EMDPO_API double emdpo_eval_margin(const emdpo_eval *e, int j, int i, int g);
EMDPO_API double emdpo_eval_accuracy(const emdpo_eval *e, int j, int i, int g);
/* Per group: the best policy's index i (-1 when the group has no
 * decisions), its margin (the max-mean margin) and accuracy. */
EMDPO_API int emdpo_eval_best(const emdpo_eval *e, int j, int g);
EMDPO_API double emdpo_eval_max_margin(const emdpo_eval *e, int j, int g);
EMDPO_API double emdpo_eval_best_accuracy(const emdpo_eval *e, int j, int g);
/* The adjusted Rand index of the posterior's argmax against the groups,
 * over *n annotators in both (NaN without a posterior). */
EMDPO_API double emdpo_eval_ari(const emdpo_eval *e, int64_t *n);
/* Generation quality, when asked for: rows in order reference, each
 * method's types, then the extra policies. Row i's label ("reference",
 * "METHOD/type_N" or the extra policy's name) goes to *name (may be
 * NULL); NULL out of range. */
EMDPO_API int emdpo_eval_n_genq(const emdpo_eval *e);
EMDPO_API const emdpo_genq *emdpo_eval_genq(const emdpo_eval *e, int i, const char **name);
/* The JSON emdpo eval --json prints. */
EMDPO_API int emdpo_eval_write_json(const emdpo_eval *e, FILE *fp);
/* The same JSON written atomically to path. */
EMDPO_API int emdpo_eval_save(const emdpo_eval *e, const char *path, emdpo_diag *diag);

/* ---- Mixtures of policies ----------------------------------------------- */

/* A mixture.json: members pi_1..pi_K (checkpoints) with weights w,
 * pi_mix(y|x) = sum_k w_k pi_k(y|x); it generates by drawing k ~ w, then
 * y ~ pi_k. */
typedef struct emdpo_mixture emdpo_mixture;

/* 1 when path is a regular file whose first non-blank byte is '{': a
 * mixture file, never a llama2.c checkpoint, which starts with its width
 * as a little-endian int32 and so with an even byte where '{' is odd. */
EMDPO_API int emdpo_mixture_is_file(const char *path);
/* Reads a mixture file without loading its members. EMDPO_ERR_PARSE (diag)
 * for a malformed one. */
EMDPO_API int emdpo_mixture_read(const char *path, emdpo_mixture **out, emdpo_diag *diag);
/* Reads it and loads every member (sharing one vocabulary and context). */
EMDPO_API int emdpo_mixture_open(const char *path, emdpo_mixture **out, emdpo_diag *diag);
EMDPO_API void emdpo_mixture_free(emdpo_mixture *m);
EMDPO_API int emdpo_mixture_k(const emdpo_mixture *m);
EMDPO_API double emdpo_mixture_weight(const emdpo_mixture *m, int k);
/* Member k as the file writes it, and resolved against its directory. */
EMDPO_API const char *emdpo_mixture_member(const emdpo_mixture *m, int k);
EMDPO_API const char *emdpo_mixture_member_path(const emdpo_mixture *m, int k);
/* Member k's model after emdpo_mixture_open; NULL before. */
EMDPO_API const emdpo_llama *emdpo_mixture_model(const emdpo_mixture *m, int k);
/* Writes a mixture file atomically: {"kind": "mixture", "weights",
 * "members", "beta", "reference"}. EMDPO_ERR_INVALID_ARG for a NULL path,
 * member or reference, weights that are negative or do not sum to 1
 * within 1e-9, beta not positive, text that is not UTF-8. */
EMDPO_API int emdpo_mixture_write(const char *path, int K, const double *w, const char *const *members, double beta,
                                  const char *reference, emdpo_diag *diag);

#ifdef __cplusplus
}
#endif
#endif
