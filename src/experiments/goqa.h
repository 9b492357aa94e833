/* Country opinions (GlobalOpinionQA, Durmus et al. 2023): a bank of survey
 * questions, each with option texts and one answer distribution per country,
 * and a simulator that turns it into preference data whose latent types are
 * countries (the paper's section 5.1 / appendix D.1 setting).
 *
 * Four sources fill a bank:
 * - the built-in bank: 40 questions written for emdpo with made-up
 *   distributions for four fictional countries (Arden, Belmora, Calvia,
 *   Dastra), so default runs need no external data and attribute no invented
 *   opinions to real countries;
 * - the reconstructed index (goqa_index2556_4country_reconstructed.jsonl,
 *   one line per GlobalOpinionQA row, `dists: {country: {est, est_method,
 *   ...}}`), filtered by each estimate's est_method flag;
 * - the subset file (goqa_subset_4countries.jsonl: one record per
 *   (question, country) with options and distribution);
 * - the original CSV of Anthropic/llm_global_opinions (columns question,
 *   selections, options, source; selections and options are Python literal
 *   reprs, parsed by base/pylit.h's strict reader).
 *
 * "Britain" (Pew) and "Great Britain" (WVS) are distinct countries unless
 * merge_great_britain is set: then a question lacking "Britain" uses its
 * "Great Britain" distribution in Britain's place.
 *
 * No paraphrases: the paper rephrased each question with GPT-4; emdpo has no
 * such rephrasings, so every prompt is the question text itself. */
#ifndef EMDPO_GOQA_H
#define EMDPO_GOQA_H

#include <stddef.h>
#include <stdint.h>

#include "data/data.h"
#include "emdpo.h"
#include "emdpo/experimental.h"

/* ---- The question bank -------------------------------------------------- */

typedef struct emdpo_goqa_question {
    char *text;
    int n_options;
    char **options;  /* (n_options); numeric options written as "%.17g" ("1", "2.5") */
    double *dist;    /* (n_countries, n_options) rows >= 0, each summing to 1 */
    char **method;   /* (n_countries) the index's est_method per country; NULL for other sources */
    int64_t origin;  /* index: its "row"; subset and CSV: the 1-based line of its (first) record */
} emdpo_goqa_question;

typedef struct emdpo_goqa_bank {
    emdpo_goqa_source source;
    int n_countries;
    char **countries;         /* (n_countries) as requested (the types' group names) */
    int64_t n;                /* questions kept */
    emdpo_goqa_question *q;   /* (n) in source order */
    size_t q_cap;
    /* What the loader saw, for the summary line. */
    int64_t n_records;        /* lines / rows / records read */
    int64_t n_questions;      /* questions among them (subset: distinct (text, options) pairs) */
    int64_t n_present;        /* questions carrying every requested country */
    int64_t n_filtered;       /* present, but dropped by the est_method filter
                                 (or a NaN / all-zero distribution) */
} emdpo_goqa_bank;

/* Default countries: the paper's Britain, Indonesia, Mexico and Pakistan for
 * the data files; the built-in bank's own four. */
extern const char *const emdpo_goqa_paper_countries[4];
extern const char *const emdpo_goqa_builtin_countries[4];

/* The built-in bank. countries must be built-in names (EMDPO_ERR_INVALID_ARG
 * otherwise); the est and merge options do not apply. */
int emdpo_goqa_builtin(const emdpo_goqa_opts *o, emdpo_goqa_bank **out);
/* The loaders: EMDPO_ERR_IO when the file cannot be read, EMDPO_ERR_PARSE
 * (diag: file, 1-based line, message) when it is malformed, or when strict
 * and a question lacks a requested country. Distributions must be finite and
 * >= 0 (a NaN marks a country as absent, as in the original data); each is
 * renormalised. diag may be NULL. */
int emdpo_goqa_load_index(const char *path, const emdpo_goqa_opts *o, emdpo_goqa_bank **out, emdpo_diag *diag);
/* Records with the same question text and options form one question; a
 * second record for the same (question, country) (a different survey year)
 * is ignored: the first one wins. */
int emdpo_goqa_load_subset(const char *path, const emdpo_goqa_opts *o, emdpo_goqa_bank **out, emdpo_diag *diag);
int emdpo_goqa_load_csv(const char *path, const emdpo_goqa_opts *o, emdpo_goqa_bank **out, emdpo_diag *diag);
/* The CSV from memory; name is what diag->file reports. */
int emdpo_goqa_parse_csv(const char *buf, size_t len, const char *name, const emdpo_goqa_opts *o,
                         emdpo_goqa_bank **out, emdpo_diag *diag);

/* ---- Building a bank, for the loaders ---------------------------------- */

/* *o, or the defaults (in def) when it is NULL; EMDPO_ERR_INVALID_ARG for
 * an est the sources do not define. */
int emdpo_goqa_opts_resolve(const emdpo_goqa_opts **o, emdpo_goqa_opts *def);
/* An empty bank for o's countries (the source's four when it names none).
 * EMDPO_ERR_INVALID_ARG for countries that are duplicate or empty. */
int emdpo_goqa_bank_new(emdpo_goqa_source source, const emdpo_goqa_opts *o, emdpo_goqa_bank **out);
/* Appends a copy of a question with k options; dist (n_countries rows of k,
 * checked by the caller) is renormalised here; methods may be NULL. */
int emdpo_goqa_bank_add(emdpo_goqa_bank *b, const char *text, int k, const char *const *options,
                        const double *const *dist, const char *const *methods, int64_t origin);

/* The options, the simulation spec, emdpo_goqa_simulate and the bank's
 * accessors are public (emdpo/experimental.h). */

#endif
