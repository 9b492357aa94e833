/* Pieces shared by the language-model commands (sft, dpo, score): model,
 * tokenizer and data loading, and the training driver. */
#ifndef EMDPO_CLI_LM_H
#define EMDPO_CLI_LM_H

#include <stdint.h>

#include "data.h"
#include "llama.h"
#include "lm_batch.h"
#include "tokenizer.h"

/* A model from path (a directory: Hugging Face config.json +
 * model.safetensors; a file: llama2.c checkpoint) or, when path is NULL,
 * freshly initialised from seed with the architecture in spec
 * ("dim=64,layers=2,heads=4,kv_heads=2,hidden=172,vocab=512,seq_len=256,
 * tied=1"; vocab required, the rest defaulted). Prints the error and
 * returns an exit code. */
int cli_lm_model(const char *cmd, const char *path, const char *spec, uint64_t seed, emdpo_llama **out);
/* The tokenizer for a model's vocabulary; prints the error. */
int cli_lm_tokenizer(const char *cmd, const char *path, int vocab, emdpo_tokenizer **out);
/* Truncation lengths from the flags (0 = default: min(512, max_seq_len)
 * and half of it), checked against the model; prints the error. */
int cli_lm_lengths(const char *cmd, const emdpo_llama *m, int *max_length, int *max_prompt_length);
/* Per-decision weights from a CSV file for d (see cmd_dpo.c's help):
 * w (n_dec) allocated with emdpo_malloc. Prints the error. */
int cli_lm_weights(const char *cmd, const char *path, const char *column, const emdpo_data *d, double **w);
/* Per-line weights for n SFT examples: a CSV with the single column
 * "weight". */
int cli_lm_weights_plain(const char *cmd, const char *path, int64_t n, double **w);

/* sft and dpo share one driver. */
int cli_lm_train(int dpo, int argc, char **argv);

#endif
