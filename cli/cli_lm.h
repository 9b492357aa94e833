/* Pieces shared by the language-model commands (sft, dpo, score): model,
 * tokenizer and data loading, and the training driver. */
#ifndef EMDPO_CLI_LM_H
#define EMDPO_CLI_LM_H

#include <stdint.h>

#include "data/data.h"
#include "lm/engine/llama.h"
#include "lm/io/lm_batch.h"
#include "lm/io/tokenizer.h"

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

/* What the commands that evaluate or aggregate an LM fit's types read from
 * its fit.json. Relative paths in it start from dir. */
typedef struct cli_lm_fit {
    int K, max_length, max_prompt_length;
    double beta;
    char dir[4096], data[4096], model[4096], tokenizer[4096];
    char policy[EMDPO_MAX_K][256];
    /* The M-step's training settings: lw and onpolicy start from them. */
    char optimizer[16];
    double lr, clip;
    int batch, accum;
} cli_lm_fit;

/* Reads path (a fit directory or its fit.json) into f; prints the error
 * (file and what is wrong) and returns an exit code. */
int cli_lm_fit_read(const char *cmd, const char *path, cli_lm_fit *f);
/* 1 when path's fit.json is readable and its family is "llama". */
int cli_lm_fit_is_llama(const char *path);

#endif
