/* Preference data: annotators, each with decisions, each a choice among two
 * or more items (a top choice, or a ranking read as a Plackett-Luce
 * sequence of top choices). Items carry features (log-linear policies) or
 * response text (language-model policies), decisions an optional prompt,
 * annotators an optional true group used only for evaluation.
 *
 * A dataset is immutable. Items of a decision are stored in preference
 * order: the chosen item first, then the next ranked ones, unranked last.
 * Indices: annotators 0..n_annotators-1, decisions 0..n_decisions-1 (an
 * annotator's decisions are consecutive), items 0..n_items-1 (a decision's
 * items are consecutive). */
#ifndef EMDPO_PUBLIC_DATA_H
#define EMDPO_PUBLIC_DATA_H

#include <stdio.h>

#include "emdpo/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct emdpo_data emdpo_data;

typedef enum emdpo_format {
    EMDPO_FORMAT_AUTO = 0, /* by file extension: .jsonl/.json or .csv, optionally followed by .gz */
    EMDPO_FORMAT_JSONL = 1,
    EMDPO_FORMAT_CSV = 2
} emdpo_format;

/* "auto", "jsonl", "csv" for a format; NULL out of range. */
EMDPO_API const char *emdpo_format_name(int fmt);

/* Reads JSONL (TRL's prompt/chosen/rejected, extended with annotator,
 * ranking and group) or long CSV (annotator,task,alt,chosen,features...).
 * EMDPO_ERR_IO (cannot open or read), EMDPO_ERR_PARSE (diag: file, line,
 * what is wrong), EMDPO_ERR_UNSUPPORTED (AUTO and an unknown extension),
 * EMDPO_ERR_NOMEM. *out is NULL on failure. */
EMDPO_API int emdpo_data_read(const char *path, emdpo_format fmt, emdpo_data **out, emdpo_diag *diag);
/* How emdpo_data_read_with reads a file (emdpo_read_opts_init: the
 * defaults, which emdpo_data_read uses). */
typedef struct emdpo_read_opts {
    /* JSONL: the field naming the annotator ("annotator"; e.g. "user_id",
     * "worker_id"). A record without it is its own annotator; a name no
     * record has is an error. */
    const char *annotator_field;
    /* JSONL: the chat template (a .jinja file or a tokenizer_config.json)
     * that renders conversational records, TRL's format where prompt and
     * responses are lists of {"role", "content"} messages; NULL: such
     * records are refused. */
    const char *chat_template;
    /* A tokenizer_config.json whose bos_token / eos_token the template sees;
     * NULL: the chat_template file's own when it is a tokenizer_config.json. */
    const char *special_tokens;
    /* Long CSV: the columns of the annotator, the task, the alternative and
     * the choice ("annotator", "task", "alt", "chosen"), as lclogit's
     * group() and id(). */
    const char *csv_id, *csv_task, *csv_alt, *csv_choice;
    /* JSONL: 1 refuses a record with a response that has no text, at its
     * line (what a language model trains on or scores); 0: the default,
     * feature-only responses are read. */
    int require_text;
    /* 1: under mpirun with more than one process (emdpo_dist_init), the
     * data read is this process's share of the annotators: whole runs of
     * 1024 in file order, as even as they split, for the log-linear fit
     * (emdpo_loglinear_fit and what takes its fit) and emdpo_select_run,
     * whose sums then run over the processes. A long CSV or a JSONL file
     * of records on lines (not gzip-compressed, not one JSON array), in a
     * regular file, is then read in parts, each process parsing only its
     * share's bytes: the rows (records) of an annotator must be adjacent
     * (EMDPO_ERR_PARSE at the row where one comes back) and each CSV row
     * one line; every process must call the reader. 0 (the default), or
     * one process: all of it. */
    int share;
} emdpo_read_opts;

EMDPO_API void emdpo_read_opts_init(emdpo_read_opts *o);

/* emdpo_data_read with options. Also reads: gzip-compressed files (by
 * their magic bytes, e.g. data.jsonl.gz); a JSON file holding one array of
 * records (diag's line is then the record's number); TRL's implicit-prompt
 * records (only "chosen" and "rejected", sharing a beginning that becomes
 * the prompt, as its extract_prompt splits it) and conversational ones
 * (rendered with o->chat_template as TRL's maybe_apply_chat_template
 * does, so the prompt text ends where each completion begins). o NULL:
 * the defaults. */
EMDPO_API int emdpo_data_read_with(const char *path, emdpo_format fmt, const emdpo_read_opts *o, emdpo_data **out,
                                   emdpo_diag *diag);

/* Writes d atomically (a temporary file renamed into place). The CSV
 * layout needs features; JSONL refuses text that is not UTF-8 and items
 * with neither features nor text (EMDPO_ERR_INVALID_ARG or
 * EMDPO_ERR_UNSUPPORTED with diag), EMDPO_ERR_IO. */
EMDPO_API int emdpo_data_write(const emdpo_data *d, const char *path, emdpo_format fmt, emdpo_diag *diag);
EMDPO_API void emdpo_data_free(emdpo_data *d);

/* The path d was read from, as given to emdpo_data_read; NULL for data
 * built in memory or taken as a subset. */
EMDPO_API const char *emdpo_data_source(const emdpo_data *d);

EMDPO_API int64_t emdpo_data_n_annotators(const emdpo_data *d);
EMDPO_API int64_t emdpo_data_n_decisions(const emdpo_data *d);
EMDPO_API int64_t emdpo_data_n_items(const emdpo_data *d);
/* Features per item; 0 for text-only data. */
EMDPO_API int emdpo_data_n_features(const emdpo_data *d);
/* Distinct true groups (first-seen order); 0 when the data has none. */
EMDPO_API int emdpo_data_n_groups(const emdpo_data *d);
/* 1 when every item has response text. */
EMDPO_API int emdpo_data_has_text(const emdpo_data *d);
/* The largest number of items in any decision. */
EMDPO_API int emdpo_data_max_items(const emdpo_data *d);

/* Names: of feature q (NULL when the source had no names), of group g, of
 * annotator i. NULL for an index out of range. Valid while d lives. */
EMDPO_API const char *emdpo_data_feature_name(const emdpo_data *d, int q);
EMDPO_API const char *emdpo_data_group_name(const emdpo_data *d, int g);
EMDPO_API const char *emdpo_data_annotator(const emdpo_data *d, int64_t i);
/* Annotator i's group (0..n_groups-1), -1 when it has none or i is out of
 * range. */
EMDPO_API int emdpo_data_annotator_group(const emdpo_data *d, int64_t i);
/* Annotator i's decisions are first .. first + count - 1; count (0 for i
 * out of range) is returned, *first set when first is not NULL. */
EMDPO_API int64_t emdpo_data_annotator_decisions(const emdpo_data *d, int64_t i, int64_t *first);

/* Decision j's items are first .. first + count - 1 in preference order;
 * count (0 for j out of range) is returned. */
EMDPO_API int emdpo_data_decision_items(const emdpo_data *d, int64_t j, int64_t *first);
/* Sequential choices of decision j: 1 for a top choice, count - 1 for a
 * full ranking; 0 for j out of range. */
EMDPO_API int emdpo_data_decision_stages(const emdpo_data *d, int64_t j);
/* The annotator of decision j, -1 out of range. */
EMDPO_API int64_t emdpo_data_decision_annotator(const emdpo_data *d, int64_t j);
/* Decision j's prompt, NULL when it has none. */
EMDPO_API const char *emdpo_data_decision_prompt(const emdpo_data *d, int64_t j);
/* Item i's response text, NULL when it has none. */
EMDPO_API const char *emdpo_data_item_text(const emdpo_data *d, int64_t i);
/* Copies item i's n_features features into x (n_features values).
 * EMDPO_ERR_INVALID_ARG when i is out of range or n differs from
 * n_features. */
EMDPO_API int emdpo_data_item_features(const emdpo_data *d, int64_t i, double *x, int n);

/* ---- Building data in memory ------------------------------------------ */

typedef struct emdpo_data_builder emdpo_data_builder;

/* p = features per item (0 for text data). EMDPO_ERR_INVALID_ARG for
 * p < 0, EMDPO_ERR_NOMEM. */
EMDPO_API int emdpo_data_builder_create(int p, emdpo_data_builder **out);
EMDPO_API void emdpo_data_builder_free(emdpo_data_builder *b);
/* Optional names for the p feature columns (copied). */
EMDPO_API int emdpo_data_builder_set_feature_names(emdpo_data_builder *b, const char *const *names);
/* One decision of one annotator: n_items >= 2 items in preference order
 * (chosen first), n_stages in 1..n_items-1 sequential choices, x
 * (n_items, p) row-major (NULL when p == 0; finite), texts (n_items) or
 * NULL, group, prompt NULL when absent. Strings are copied. Annotators may
 * arrive in any order; their decisions keep arrival order.
 * EMDPO_ERR_INVALID_ARG for bad sizes or non-finite features,
 * EMDPO_ERR_PARSE when the annotator's group differs from its earlier
 * decisions', EMDPO_ERR_NOMEM. */
EMDPO_API int emdpo_data_builder_add(emdpo_data_builder *b, const char *annotator, const char *group,
                                     const char *prompt, int n_items, int n_stages, const double *x,
                                     const char *const *texts);
/* Hands over the dataset (annotators in first-appearance order) and frees
 * the builder, whatever the result. EMDPO_ERR_INVALID_ARG when no decision
 * was added. */
EMDPO_API int emdpo_data_builder_finish(emdpo_data_builder *b, emdpo_data **out);

/* A dataset from arrays, in one call: n_dec decisions, decision j by
 * annotator[j] (strings) with n_items[j] items and n_stages[j] choices
 * (n_stages NULL: top choices); x (total items, p) the features, texts
 * (total items) and prompts, groups (n_dec) optional (NULL). Errors as
 * the builder's; diag says which decision was refused. */
EMDPO_API int emdpo_data_from_arrays(int p, int64_t n_dec, const char *const *annotator, const int *n_items,
                                     const int *n_stages, const double *x, const char *const *texts,
                                     const char *const *prompts, const char *const *groups, emdpo_data **out,
                                     emdpo_diag *diag);

/* ---- Subsets ------------------------------------------------------------ */

/* The annotators annots[0..n) of d, in that order, as a new dataset (a
 * repeated index adds its annotator's decisions again, to the same
 * annotator). EMDPO_ERR_INVALID_ARG for an index out of range or n < 1. */
EMDPO_API int emdpo_data_subset(const emdpo_data *d, const int64_t *annots, int64_t n, emdpo_data **out);
/* A seeded random split of the annotators: round(n * holdout) go to
 * *valid, the rest to *train, each in d's order. The same seed gives the
 * same split on any machine. EMDPO_ERR_INVALID_ARG for holdout outside
 * (0, 1) or a side that would be empty. When d is this process's share
 * (emdpo_read_opts.share), a collective: the split is the whole data's,
 * the same for any number of processes, and *train and *valid are this
 * process's shares of its two sides. */
EMDPO_API int emdpo_data_split(const emdpo_data *d, double holdout, uint64_t seed, emdpo_data **train,
                               emdpo_data **valid);

/* ---- Chat templates ----------------------------------------------------- */

/* A chat template: a Jinja template that turns a conversation into the one
 * text a model reads, rendered exactly as transformers.js renders it
 * (@huggingface/jinja 0.5.13): byte for byte, and raise_exception
 * messages too. Immutable once loaded; one may render from several threads
 * at once. The Jinja subset covered, and what is refused, is listed in
 * docs/ARCHITECTURE.md; a construct it does not cover is an error
 * (EMDPO_ERR_UNSUPPORTED, diag: file, line and the construct), never a
 * different rendering. */
typedef struct emdpo_chat_template emdpo_chat_template;

/* One message of a conversation: role ("system", "user", "assistant",
 * "tool", or any other) and content (UTF-8; NULL is JSON null). */
typedef struct emdpo_chat_message {
    const char *role;
    const char *content;
} emdpo_chat_message;

/* Reads a template: path ending in ".json" is a tokenizer_config.json,
 * whose "chat_template" is used (a string, or a list of {name, template}
 * of which the one named "default") together with its "bos_token" and
 * "eos_token" (a string, an object with a "content" string, or null read
 * as ""); any other path is the template's text (a .jinja file).
 * EMDPO_ERR_IO, EMDPO_ERR_PARSE (diag: file, line, what: a JSON error or
 * a Jinja syntax error), EMDPO_ERR_UNSUPPORTED (no chat_template, no
 * "default" one, a construct not implemented), EMDPO_ERR_NOMEM. */
EMDPO_API int emdpo_chat_template_load(const char *path, emdpo_chat_template **out, emdpo_diag *diag);
/* The same for template text src[0..len) (UTF-8); name (may be NULL)
 * names it in diagnostics. No bos/eos tokens. */
EMDPO_API int emdpo_chat_template_parse(const char *src, size_t len, const char *name, emdpo_chat_template **out,
                                        emdpo_diag *diag);
EMDPO_API void emdpo_chat_template_free(emdpo_chat_template *t);
/* The bos_token and eos_token of the tokenizer_config.json t was read from
 * ("" for null); NULL when the file has none or t came from a template
 * file or text. Valid while t lives. */
EMDPO_API const char *emdpo_chat_template_bos_token(const emdpo_chat_template *t);
EMDPO_API const char *emdpo_chat_template_eos_token(const emdpo_chat_template *t);

/* Renders the conversation msgs[0..n). The template sees exactly the
 * variables messages (a list of {role, content} mappings, in that order),
 * bos_token and eos_token (undefined when NULL: pass "" for an empty one),
 * add_generation_prompt (a boolean) and the function raise_exception,
 * besides Jinja's built-ins (true, false, none, range, namespace; no
 * strftime_now, so templates fall back to their own default date).
 * *out is NUL-terminated, *out_len bytes before the NUL (a message's text
 * holds no NUL, so neither does the output unless the template writes
 * one); free it with emdpo_chat_text_free. raise_exception(msg) in the
 * template is EMDPO_ERR_INVALID_ARG with msg (cut to fit) as diag->msg and
 * the template's line in diag->line; EMDPO_ERR_INVALID_ARG also for text
 * that is not UTF-8. Other errors of the template at run time are
 * EMDPO_ERR_PARSE (a type error @huggingface/jinja raises too),
 * EMDPO_ERR_UNSUPPORTED or EMDPO_ERR_LIMIT (64 MiB of output, 512 MiB of
 * values, 20 million steps, nesting depth 200), diag naming the template
 * and its line. */
EMDPO_API int emdpo_chat_template_render(const emdpo_chat_template *t, const emdpo_chat_message *msgs, size_t n,
                                         const char *bos_token, const char *eos_token, int add_generation_prompt,
                                         char **out, size_t *out_len, emdpo_diag *diag);
/* Frees a rendered text (NULL is fine). */
EMDPO_API void emdpo_chat_text_free(char *text, size_t len);

/* Renders a stream: each non-blank line of in is a JSON array of
 * {"role", "content"} objects (content a string or null; no other keys),
 * each rendering is written to out as one JSON string and a newline.
 * Stops at the first failure, with diag's file in_name and line the input
 * line: EMDPO_ERR_PARSE for a line that is not such an array, the errors
 * of emdpo_chat_template_render otherwise (a raise_exception's message as
 * diag->msg; a template error's message starting with the template's
 * file:line), EMDPO_ERR_IO when reading or writing fails. */
EMDPO_API int emdpo_chat_template_render_jsonl(const emdpo_chat_template *t, FILE *in, const char *in_name,
                                               FILE *out, const char *bos_token, const char *eos_token,
                                               int add_generation_prompt, emdpo_diag *diag);

#ifdef __cplusplus
}
#endif
#endif
