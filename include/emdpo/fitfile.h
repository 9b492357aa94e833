/* The files a fit lives in, one writer and one reader each:
 *
 *   DIR/fit.json       the fit: settings, parameters (log-linear theta, or
 *                      the Llama types' checkpoint directories), eta, the
 *                      log-likelihood trace and model comparison;
 *   DIR/posterior.csv  annotator,gamma_1..gamma_K, one row per annotator;
 *   DIR/type_k/        (Llama) each type's Hugging Face checkpoint;
 *
 * and the weight files training takes: a CSV with the single column
 * "weight" (one per example, in the data's order) or "annotator,..." (one
 * row per annotator, a column chosen; a posterior.csv is one). Mixture
 * files are emdpo/lm.h's emdpo_mixture. */
#ifndef EMDPO_PUBLIC_FITFILE_H
#define EMDPO_PUBLIC_FITFILE_H

#include "emdpo/common.h"
#include "emdpo/data.h"
#include "emdpo/em.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes a fit made in memory into dir (created when missing): the Llama
 * types' checkpoints first (emdpo_llama_save_with: the fit's save_dtype,
 * the fit's tokenizer's files), then posterior.csv, then fit.json, each
 * atomically, so a directory with fit.json is complete.
 * EMDPO_ERR_UNSUPPORTED for a fit read from a file (nothing to write that
 * is not there), EMDPO_ERR_IO with diag. */
EMDPO_API int emdpo_fit_write(const emdpo_fit *f, const char *dir, emdpo_diag *diag);

/* Creates dir and its missing parents (mkdir -p), as emdpo_fit_write does:
 * for callers that want an output directory they cannot write refused
 * before a long fit rather than after it. EMDPO_ERR_IO with diag. */
EMDPO_API int emdpo_mkdirs(const char *dir, emdpo_diag *diag);

/* Reads path (a fit directory or its fit.json). Only "family" and "k" are
 * required; every other field is checked when present (shapes, types and
 * ranges against k). Absent numbers read as NaN, absent counts and flags
 * as -1 (starts and the trace as 0), absent paths as NULL and absent
 * settings as their *_init values. Relative paths in it start from its
 * directory.
 * What a use needs beyond that (log-linear theta, a Llama fit's model,
 * tokenizer, policies and M-step lengths) the use checks. No posterior is
 * read (emdpo_posterior_read). EMDPO_ERR_IO, EMDPO_ERR_PARSE (diag: the
 * file, the line for malformed JSON, the field). */
EMDPO_API int emdpo_fit_read(const char *path, emdpo_fit **out, emdpo_diag *diag);
/* The path a fit was read from, as given (its directory or its fit.json),
 * NULL for one made in memory; and the fit's directory. */
EMDPO_API const char *emdpo_fit_source(const emdpo_fit *f);
EMDPO_API const char *emdpo_fit_dir(const emdpo_fit *f);
/* Before any work on a fit read from a file: every file it names exists
 * (its "data" only when with_data, for a use that reads the fit's data
 * rather than data of its own). EMDPO_ERR_IO with diag's file the fit.json
 * and a message naming the field and the missing path ("\"tokenizer\"
 * names X, which does not exist"); 0 for a fit made in memory. */
EMDPO_API int emdpo_fit_check_files(const emdpo_fit *f, int with_data, emdpo_diag *diag);
/* 1 when path is a fit directory or fit.json of the given family. */
EMDPO_API int emdpo_fit_file_is(const char *path, emdpo_family family);

/* ---- posterior.csv ------------------------------------------------------ */

typedef struct emdpo_posterior emdpo_posterior;

/* Reads a posterior.csv: the header annotator,gamma_1..gamma_K (K must be
 * k unless k is 0), then one row per annotator with K finite numbers.
 * EMDPO_ERR_PARSE (diag: file, line, what), EMDPO_ERR_IO. */
EMDPO_API int emdpo_posterior_read(const char *path, int k, emdpo_posterior **out, emdpo_diag *diag);
EMDPO_API void emdpo_posterior_free(emdpo_posterior *p);
EMDPO_API int emdpo_posterior_k(const emdpo_posterior *p);
EMDPO_API int64_t emdpo_posterior_n(const emdpo_posterior *p);
EMDPO_API const char *emdpo_posterior_annotator(const emdpo_posterior *p, int64_t i);
EMDPO_API double emdpo_posterior_gamma(const emdpo_posterior *p, int64_t i, int k);
/* Row of annotator id, -1 when absent. */
EMDPO_API int64_t emdpo_posterior_find(const emdpo_posterior *p, const char *annotator);

/* ---- Weight files ------------------------------------------------------- */

/* Per-example weights for n examples into w (n, caller's): a "weight" file
 * (n rows); emdpo estep's weights.csv ("annotator,weight_1,...", one row
 * per decision, the weight from column, NULL: weight_1; with d, each
 * annotator's rows go to its decisions in order, so annotators may
 * interleave); or with d an "annotator,..." file (every annotator of d
 * once, the weight from column, NULL: the second column) expanded to d's
 * decisions (n must be d's decisions). Weights are finite and >= 0.
 * EMDPO_ERR_PARSE (diag: file, line, what), EMDPO_ERR_IO. */
EMDPO_API int emdpo_weights_read(const char *path, const char *column, const emdpo_data *d, int64_t n, double *w,
                                 emdpo_diag *diag);

#ifdef __cplusplus
}
#endif
#endif
