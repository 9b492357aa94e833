/* The emdpo commands: what they share. The CLI is the library's first
 * client: it sees only the public headers. */
#ifndef EMDPO_CLI_H
#define EMDPO_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "args.h"
#include "emdpo.h"
#include "emdpo/experimental.h"

/* Exit codes: 0 success, 1 internal failure, 2 bad usage or bad input. */
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

int cmd_simulate(int argc, char **argv);
int cmd_fit(int argc, char **argv);
int cmd_select(int argc, char **argv);
int cmd_aggregate(int argc, char **argv);
int cmd_identify(int argc, char **argv);
int cmd_sft(int argc, char **argv);
int cmd_dpo(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_baseline(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_regret(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_chat_template(int argc, char **argv);
int cmd_estep(int argc, char **argv);

/* Prints "emdpo CMD: [file:line: ]message" for a failed status (the
 * status's name when diag has no message) and returns the exit code that
 * goes with it. A message starting with an option's name in the library's
 * spelling (max_length) names the flag instead (--max-length) when cmd
 * (may be NULL) has that flag. */
int cli_fail(const char *name, int rc, const emdpo_diag *diag, const cli_cmd *cmd);
/* Prints "emdpo NAME: message" and returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *name, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* How data files are read: the flags that fill it, and what they leave
 * to the tokenizer. */
typedef struct cli_read {
    emdpo_read_opts o;
    char *template_path, *special_path; /* found beside the tokenizer (cli_read_finish) */
} cli_read;

/* The data-reading flags, pointing into r, which cli_read_init prepares
 * before the table is made: the annotator's JSONL field and the chat
 * template (language-model commands: CLI_READ_FLAG_LIST), the annotator's
 * field and the long CSV's columns (log-linear commands:
 * CLI_FEATURE_READ_FLAG_LIST). */
void cli_read_init(cli_read *r);
#define CLI_ANNOTATOR_FIELD_FLAG(r)                                                                               \
    {"annotator-field", CLI_STR, &(r)->o.annotator_field, "NAME",                                                 \
     "JSONL: the field naming the annotator (e.g. user_id, worker_id)", 0, 0, 0}
#define CLI_READ_FLAG_LIST(r)                                                                                     \
    CLI_ANNOTATOR_FIELD_FLAG(r),                                                                                  \
    {"chat-template", CLI_STR, &(r)->o.chat_template, "FILE",                                                     \
     "a .jinja file or tokenizer_config.json rendering conversational data (default: the one beside the "         \
     "tokenizer)", 0, 0, 0}
#define CLI_FEATURE_READ_FLAG_LIST(r)                                                                             \
    CLI_ANNOTATOR_FIELD_FLAG(r),                                                                                  \
    {"id", CLI_STR, &(r)->o.csv_id, "COL", "long CSV: the annotator's column", 0, 0, 0},                          \
    {"task", CLI_STR, &(r)->o.csv_task, "COL", "long CSV: the task's column", 0, 0, 0},                           \
    {"alt", CLI_STR, &(r)->o.csv_alt, "COL", "long CSV: the alternative's column", 0, 0, 0},                      \
    {"choice", CLI_STR, &(r)->o.csv_choice, "COL", "long CSV: the choice's column (1 for the chosen, or ranks)", 0, \
     0, 0}
/* After parsing: without --chat-template, a tokenizer (a tokenizer.json or
 * its directory) whose tokenizer_config.json is beside it gives the chat
 * template and the bos/eos tokens the template sees. NULL tokenizer: none. */
int cli_read_finish(cli_read *r, const char *tokenizer);
void cli_read_free(cli_read *r);

/* Reads a dataset (r NULL: the default reading); prints the error. */
int cli_load_data(const char *name, const char *path, emdpo_format fmt, const cli_read *r, emdpo_data **out);
/* The value of --FLAG (or --FLAG=) in argv, NULL when absent. */
const char *cli_flag_value(int argc, char **argv, const char *flag);
/* Seconds on a monotonic clock. */
double cli_now(void);
/* Progress lines on stderr: asked for, or stderr is a terminal. */
int cli_progress_on(int quiet, int progress);
/* Splits a comma-separated NAME=PATH list in place: names[i] and paths[i]
 * point into list (room for one entry per comma, plus one). Returns the
 * count, or -(i + 1) when entry i (left as it was, in names[i]) has no '='
 * or an empty PATH. */
int cli_split_pairs(char *list, const char **names, const char **paths);

/* Flags several commands share, one spelling and one help text each. */
#define CLI_THREADS_FLAG(dst) {"threads", CLI_INT, (dst), "N", "OpenMP threads (default: all cores)", 0, 0, 0}
#define CLI_LENGTH_FLAGS(max_length, max_prompt_length)                                                           \
    {"max-length", CLI_INT, (max_length), "N", "truncate sequences to N tokens (default: min(512, context))", 0, 0, \
     0},                                                                                                          \
    {"max-prompt-length", CLI_INT, (max_prompt_length), "N", "cut prompts to N tokens first (default: max-length/2)", \
     0, 0, 0}
#define CLI_TOKENIZER_FLAG(dst)                                                                                   \
    {"tokenizer", CLI_STR, (dst), "PATH", "the model's tokenizer: a tokenizer.json (or the Hugging Face directory " \
                                          "holding it), a GGUF file or a llama2.c tokenizer.bin", 1, 0, 0}
#define CLI_SAVE_DTYPE_FLAG(dst)                                                                                  \
    {"save-dtype", CLI_ENUM, (dst), "TYPE", "saved weights: auto (the dtype the starting model was stored in), "    \
                                            "f32, f16 or bf16", 0, 0, emdpo_dtype_name}
#define CLI_RPO_FLAG(dst)                                                                                         \
    {"rpo-alpha", CLI_DBL, (dst), "X", "weight of the chosen responses' NLL added to the preference loss (RPO, "  \
                                       "TRL's rpo_alpha); 0 = off", 0, 0, 0}
#define CLI_GRAD_CKPT_FLAG(dst)                                                                                   \
    {"grad-checkpoint", CLI_FLAG, (dst), NULL, "activation checkpointing: keep each layer's input and recompute "   \
                                               "the rest in the backward (far less memory, about a third more "    \
                                               "time, the same results)", 0, 0, 0}

/* The LoRA flags of the Llama policy commands: --lora-r, --lora-alpha,
 * --lora-dropout, --lora-targets, --rslora. Any of them given trains a
 * LoRA adapter per policy on the frozen model; the others keep their
 * defaults (emdpo_lora_config_init's, which help shows). */
typedef struct cli_lora {
    int r;
    double alpha, dropout;
    const char *targets;
    int rslora;
    cli_opt *opts; /* where cli_lora_flags put them */
} cli_lora;
#define CLI_LORA_FLAGS 5
int cli_lora_flags(cli_opt *opts, cli_lora *l);
/* After parsing: the adapter's shape into out (out->r 0 when no flag was
 * given), or a usage error (exit 2) naming the bad flag. */
int cli_lora_finish(const char *cmd, const cli_lora *l, emdpo_lora_config *out);

/* The EM and M-step flags of a Llama fit (fit and select --policy llama):
 * writes CLI_LM_FIT_FLAGS entries pointing into o; returns their count. */
#define CLI_LM_FIT_FLAGS (23 + CLI_LORA_FLAGS)
int cli_lm_fit_flags(cli_opt *opts, emdpo_lm_fit_opts *o, cli_lora *lora);

/* The EM log-likelihood line printed after every iteration. */
void cli_em_progress(void *ud, int start, int iter, double loglik, const double *eta, int K);

/* With true groups in the data, how the fit's posterior splits each group
 * (the fit was made on d). */
void cli_print_group_posterior(const emdpo_data *d, const emdpo_fit *fit);
/* A table of regret rows: policy, weights, regret per type, max. */
void cli_regret_table_print(const emdpo_regret_row *const *rows, int n, int K);

#endif
