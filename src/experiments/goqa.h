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
 *   reprs, parsed by the strict reader below).
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

/* ---- Python literals --------------------------------------------------- */

/* The subset of Python's literal syntax that repr() writes for the CSV's
 * columns: strings ('..' or "..", with \\ \' \" \n \r \t \a \b \f \v \0
 * \xHH \uHHHH \UHHHHHHHH escapes; decoded to UTF-8), numbers (ints and
 * floats, plus nan / inf / -inf), None, True, False, lists and dicts. The
 * wrapper `defaultdict(<class 'NAME'>, {...})` yields its dict. Nothing else
 * (no tuples, no trailing commas, no string concatenation). */
typedef enum emdpo_py_type {
    EMDPO_PY_NONE,
    EMDPO_PY_BOOL,
    EMDPO_PY_NUM,
    EMDPO_PY_STR,
    EMDPO_PY_LIST,
    EMDPO_PY_DICT
} emdpo_py_type;

typedef struct emdpo_py {
    emdpo_py_type type;
    int is_int;            /* NUM: written without '.', exponent, nan or inf */
    double num;            /* NUM, BOOL (0 or 1) */
    char *str;             /* STR: UTF-8, NUL-terminated, len bytes */
    size_t len;            /* STR: bytes; LIST: elements; DICT: pairs */
    struct emdpo_py *elems; /* LIST: len values; DICT: 2*len (key, value) */
    size_t cap;            /* allocated entries of elems */
} emdpo_py;

#define EMDPO_PY_MAX_DEPTH 64

/* Parses text[0..len) as one literal (surrounding whitespace allowed).
 * Returns 0 with *out owned by the caller (emdpo_py_free), EMDPO_ERR_PARSE
 * with *err_off (byte offset) and msg filled, or EMDPO_ERR_NOMEM. Input must
 * be valid UTF-8. */
int emdpo_py_parse(const char *text, size_t len, emdpo_py **out, size_t *err_off, char *msg, size_t msg_n);
void emdpo_py_free(emdpo_py *v);
/* The value under a string key of a dict, or NULL. */
const emdpo_py *emdpo_py_get(const emdpo_py *dict, const char *key);

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

/* The options, the simulation spec, emdpo_goqa_simulate and the bank's
 * accessors are public (emdpo/experimental.h). */

#endif
