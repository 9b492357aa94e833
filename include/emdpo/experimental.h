/* EXPERIMENTAL: simulation and the paper's experiments. Not part of the
 * stable API: these functions and structs may change between minor
 * versions. They generate the data of the paper's studies: populations of
 * latent-class logit annotators choosing among phrases scored on the five
 * OCEAN traits (its personality experiment, with the MPI inventory),
 * country-opinion annotators answering GlobalOpinionQA questions (its
 * Tables 2 and 3), and the identifiability study of its section 4.
 *
 * Include it on its own: <emdpo.h> does not. */
#ifndef EMDPO_PUBLIC_EXPERIMENTAL_H
#define EMDPO_PUBLIC_EXPERIMENTAL_H

#include <stdio.h>

#include "emdpo/common.h"
#include "emdpo/data.h"
#include "emdpo/em.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Populations and phrase inventories --------------------------------- */

/* The OCEAN traits: a phrase's features are its scores on them. */
#define EMDPO_N_TRAITS 5

/* A latent-class logit population: type k (chosen with probability eta_k)
 * picks item y with probability softmax(theta_k . x_y). */
typedef struct emdpo_population {
    int K, p;
    const double *theta;           /* (K, p) */
    const double *eta;             /* (K), >= 0, normalised by their sum */
    const char *const *type_names; /* (K) group labels, or NULL for "P1".."PK" */
} emdpo_population;

/* "personalities" (the paper's P1, P2 = -P1, P3 with eta .3/.3/.4) or
 * "personalities-collapsed" (P1 and P2 merged into theta = 0 with weight .6:
 * the same pair probabilities); NULL for another name. */
EMDPO_API const emdpo_population *emdpo_population_preset(const char *name);

/* Phrases with their trait scores in {-1, 0, +1}. */
typedef struct emdpo_inventory emdpo_inventory;

/* The built-in phrases. */
EMDPO_API int emdpo_inventory_builtin(emdpo_inventory **out);
/* An MPI inventory CSV (header naming at least text, label_ocean and key,
 * as the MPI-1k/120 files; one row per (phrase, trait); key 1, -1 or 0;
 * CRLF or LF; RFC 4180 quotes; blank lines skipped). Rows are grouped by
 * text into phrases in first-appearance order. A phrase's score on a trait
 * is the key its rows for that trait carry; when they disagree the key
 * with the most rows wins, a tie going to the one seen first. Traits with
 * no row score 0; phrases scoring 0 everywhere are kept (neutral
 * alternatives). EMDPO_ERR_IO; EMDPO_ERR_PARSE (diag: file, line of the
 * record, what) for a malformed file or one without rows. */
EMDPO_API int emdpo_inventory_load_mpi(const char *path, emdpo_inventory **out, emdpo_diag *diag);
/* A subset of n phrases balanced over the traits and their directions:
 * phrases are grouped into cells by (trait, key) of their largest absolute
 * score (all-zero phrases form one more cell), cells in trait order,
 * negative key first, and the subset takes the cells' phrases round-robin,
 * each cell's in inventory order. EMDPO_ERR_INVALID_ARG for n outside
 * 1..the inventory's size. */
EMDPO_API int emdpo_inventory_subset(const emdpo_inventory *inv, int64_t n, emdpo_inventory **out);
EMDPO_API int64_t emdpo_inventory_n(const emdpo_inventory *inv);
EMDPO_API void emdpo_inventory_free(emdpo_inventory *inv);

/* ---- Simulating a population --------------------------------------------- */

typedef enum emdpo_sim_response {
    EMDPO_SIM_TOP = 0,    /* one choice per decision */
    EMDPO_SIM_RANKING = 1 /* a full ranking */
} emdpo_sim_response;

typedef enum emdpo_sim_design {
    EMDPO_SIM_PHRASES = 0, /* items are inventory phrases; features = trait scores (p = 5) */
    EMDPO_SIM_GAUSSIAN = 1 /* items are iid N(0, scale^2) feature vectors */
} emdpo_sim_design;

/* "top", "ranking"; "phrases", "gaussian". NULL out of range. */
EMDPO_API const char *emdpo_sim_response_name(int r);
EMDPO_API const char *emdpo_sim_design_name(int d);

typedef struct emdpo_sim_spec {
    emdpo_population pop;
    int64_t n_annotators;
    int decisions;                    /* per annotator, >= 1 */
    int items;                        /* per decision, >= 2 */
    emdpo_sim_response response;
    emdpo_sim_design design;
    double scale;                     /* Gaussian design: feature standard deviation, > 0 */
    const emdpo_inventory *inventory; /* phrase design; NULL: the built-in phrases */
    int omit_text;                    /* phrase design: features only, no prompts or texts */
    uint64_t seed;
} emdpo_sim_spec;

/* The personalities population, 1000 annotators, 1 decision of 3 items,
 * top choices, the phrase design, scale 1, seed 1. */
EMDPO_API void emdpo_sim_spec_init(emdpo_sim_spec *spec);

/* Each annotator draws a type k ~ eta, then every decision shows items
 * (distinct phrases, or Gaussian vectors) and records the top choice drawn
 * from softmax(theta_k . x) (or a full ranking). The annotator's group is
 * its type. true_type (n_annotators, may be NULL) gets the types.
 * EMDPO_ERR_INVALID_ARG (diag) for inconsistent settings (more items than
 * phrases, a population of another width than the design). */
EMDPO_API int emdpo_simulate(const emdpo_sim_spec *spec, emdpo_data **out, int32_t *true_type, emdpo_diag *diag);

/* ---- Country opinions (GlobalOpinionQA) --------------------------------- */

typedef enum emdpo_goqa_source {
    EMDPO_GOQA_BUILTIN = 0, /* four fictional countries, no files needed */
    EMDPO_GOQA_INDEX = 1,   /* a reconstructed index JSONL (one question per line, per-country estimates) */
    EMDPO_GOQA_SUBSET = 2,  /* the per-country subset JSONL (one record per question and country) */
    EMDPO_GOQA_CSV = 3      /* the original CSV (question, selections as a Python dict, options) */
} emdpo_goqa_source;

typedef enum emdpo_goqa_est {
    EMDPO_GOQA_EST_EXACT = 0, /* index estimates by est_method unique or no_truncation_detected */
    EMDPO_GOQA_EST_ALL = 1    /* also ambiguous_prior and asis_no_hyp */
} emdpo_goqa_est;

/* "builtin", "index", "subset", "csv"; "exact", "all". NULL out of range. */
EMDPO_API const char *emdpo_goqa_source_name(int s);
EMDPO_API const char *emdpo_goqa_est_name(int e);
/* The built-in bank's countries, i in 0..3 (NULL beyond). */
EMDPO_API const char *emdpo_goqa_builtin_country(int i);

#define EMDPO_GOQA_MAX_COUNTRIES 16

typedef struct emdpo_goqa_opts {
    const char *const *countries; /* the types; NULL: the source's four (the paper's: Britain,
                                     Indonesia, Mexico, Pakistan) */
    int n_countries;
    emdpo_goqa_est est;           /* index only */
    int low_confidence;           /* index only: accept estimates for 14 options or more */
    int merge_great_britain;      /* Great Britain (WVS) stands in where a question lacks Britain (Pew) */
    int strict;                   /* a question lacking a country is an error, not skipped */
} emdpo_goqa_opts;

EMDPO_API void emdpo_goqa_opts_init(emdpo_goqa_opts *o);

/* Questions with each country's answer distribution. */
typedef struct emdpo_goqa_bank emdpo_goqa_bank;

/* path is the source's file (NULL for the built-in bank).
 * EMDPO_ERR_INVALID_ARG (diag) for countries that are duplicate, empty, or
 * not the built-in bank's; EMDPO_ERR_PARSE (diag: file, line, what). */
EMDPO_API int emdpo_goqa_bank_load(emdpo_goqa_source source, const char *path, const emdpo_goqa_opts *o,
                                   emdpo_goqa_bank **out, emdpo_diag *diag);
EMDPO_API void emdpo_goqa_bank_free(emdpo_goqa_bank *b);
EMDPO_API int emdpo_goqa_bank_source(const emdpo_goqa_bank *b);
/* Questions kept; records read; distinct questions among them; those with
 * every country; and those dropped by the estimate filter. */
EMDPO_API int64_t emdpo_goqa_bank_n(const emdpo_goqa_bank *b);
EMDPO_API int64_t emdpo_goqa_bank_n_records(const emdpo_goqa_bank *b);
EMDPO_API int64_t emdpo_goqa_bank_n_questions(const emdpo_goqa_bank *b);
EMDPO_API int64_t emdpo_goqa_bank_n_present(const emdpo_goqa_bank *b);
EMDPO_API int64_t emdpo_goqa_bank_n_filtered(const emdpo_goqa_bank *b);
EMDPO_API int emdpo_goqa_bank_n_countries(const emdpo_goqa_bank *b);
EMDPO_API const char *emdpo_goqa_bank_country(const emdpo_goqa_bank *b, int c);
/* One JSON line per question kept: its origin, text, options and each
 * country's distribution (what a run's types were built from). Written
 * atomically. */
EMDPO_API int emdpo_goqa_bank_write_questions(const emdpo_goqa_bank *b, const char *path, emdpo_diag *diag);

typedef struct emdpo_goqa_spec {
    const double *weights;     /* (n_countries) >= 0, normalised by their sum; NULL: .15/.20/.30/.35 for
                                  four, else equal */
    int64_t n_annotators;      /* >= 1 */
    int64_t first_annotator;   /* annotator i is "a<first + i + 1>" and draws from stream first + i */
    int questions;             /* per annotator, drawn without replacement */
    int rejected;              /* rejected options per decision (1: binary, as in the paper) */
    int list_options;          /* the prompt also lists the options */
    uint64_t seed;
} emdpo_goqa_spec;

/* 1500 annotators from a1, 32 questions, 1 rejected option, seed 1. */
EMDPO_API void emdpo_goqa_spec_init(emdpo_goqa_spec *spec);

/* Each annotator draws a country ~ weights and answers questions distinct
 * questions: the chosen option ~ the country's distribution, the rejected
 * ones uniformly from the rest. Prompt = the question, responses = option
 * texts, group = the country; country (n_annotators, may be NULL) gets
 * them. EMDPO_ERR_INVALID_ARG (diag) when too few questions have more than
 * rejected options, EMDPO_ERR_LIMIT when annotators x questions overflow. */
EMDPO_API int emdpo_goqa_simulate(const emdpo_goqa_bank *b, const emdpo_goqa_spec *spec, emdpo_data **out,
                                  int32_t *country, emdpo_diag *diag);

/* ---- The identifiability study (the paper's section 4) ------------------ */

#define EMDPO_IDENTIFY_MAX_ITEMS 16
#define EMDPO_IDENTIFY_MAX_SIZES 16

typedef struct emdpo_identify_spec {
    emdpo_population truth;   /* generates the data; its K is the fitted K (at most 8) */
    emdpo_population alt;     /* the rival whose likelihood is compared; same p */
    int items[EMDPO_IDENTIFY_MAX_ITEMS];     /* items per decision, each >= 2, increasing */
    int n_items;
    int64_t sizes[EMDPO_IDENTIFY_MAX_SIZES]; /* annotator counts, each >= 1, increasing */
    int n_sizes;
    int decisions;            /* per annotator; 1 makes the binary failure real */
    int starts;               /* EM starts per fit */
    emdpo_init init;
    int max_iter;             /* EM iteration cap per start */
    double tol;               /* EM relative tolerance */
    double l2;                /* ridge (l2 / 2) |theta_k|^2 per type */
    emdpo_sim_design design;
    double scale;             /* Gaussian design feature sd */
    const emdpo_inventory *inventory; /* phrase design; NULL: built-in */
    uint64_t seed;
} emdpo_identify_spec;

/* personalities against personalities-collapsed, items 2 and 3, N 250,
 * 1000, 4000 and 16000, one decision, 3 k-means starts, 150 iterations,
 * tol 1e-7, l2 0.1, the phrase design, seed 1. */
EMDPO_API void emdpo_identify_spec_init(emdpo_identify_spec *s);

typedef struct emdpo_identify_row {
    int items;
    int64_t n_annot;
    double theta_err;  /* mean over true types of |theta_hat - theta|_2, best matching */
    double eta_err;    /* total variation between eta_hat and eta under that matching */
    double ll_fit;     /* fitted log-likelihood per annotator */
    double ll_true;    /* the truth's log-likelihood per annotator */
    double ll_alt;     /* the rival's log-likelihood per annotator */
    double ll_gap;     /* total (not per annotator) truth minus rival log-likelihood */
    double max_dp;     /* largest |P_truth - P_alt| of any item being chosen */
    int iterations;    /* EM iterations of the best start */
    int converged;
    int n_empty;       /* fitted types that lost all weight */
} emdpo_identify_row;

typedef void (*emdpo_identify_progress)(void *ud, const emdpo_identify_row *row, int index, int total);

/* Fits every (items, N) cell in items-major order into rows (n_items *
 * n_sizes). EMDPO_ERR_INVALID_ARG (diag) for a bad spec. */
EMDPO_API int emdpo_identify_run(const emdpo_identify_spec *s, emdpo_identify_row *rows,
                                 emdpo_identify_progress progress, void *ud, emdpo_diag *diag);

/* The study's plain-language verdicts: per items value, whether the theta
 * error falls with N, and whether truth and rival are told apart. Lines
 * go to lines (each cap bytes, n_lines of them); returns the count. At
 * most EMDPO_IDENTIFY_MAX_LINES lines, each shorter than
 * EMDPO_IDENTIFY_LINE_CAP bytes. */
#define EMDPO_IDENTIFY_MAX_LINES (2 * EMDPO_IDENTIFY_MAX_ITEMS)
#define EMDPO_IDENTIFY_LINE_CAP 320
EMDPO_API int emdpo_identify_conclude(const emdpo_identify_spec *s, const emdpo_identify_row *rows, char *lines,
                                      size_t cap, int n_lines);

/* The study as one JSON object: the spec's settings, the rows and the
 * verdicts. inventory (may be NULL) is the phrase file recorded. */
EMDPO_API int emdpo_identify_write_json(const emdpo_identify_spec *s, const emdpo_identify_row *rows,
                                        const char *inventory, FILE *fp);

#ifdef __cplusplus
}
#endif
#endif
