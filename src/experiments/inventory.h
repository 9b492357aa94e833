/* Phrase inventories: short second-person phrases, each scored -1, 0 or +1
 * on the five OCEAN traits. A phrase's score vector is its feature vector
 * when the simulator shows it as a response, so a personality (a weight
 * vector over the traits) prefers the phrases that agree with it.
 *
 * Two sources: the built-in inventory (our own phrases, each keyed on one
 * trait) and the Machine Personality Inventory CSV (Jiang et al.; never
 * shipped with the project, only read when a user points at it). */
#ifndef EMDPO_INVENTORY_H
#define EMDPO_INVENTORY_H

#include <stddef.h>
#include <stdint.h>

#include "emdpo.h"

#define EMDPO_N_TRAITS 5
#define EMDPO_N_PARAPHRASES 50

/* "O", "C", "E", "A", "N": the order of every score vector. */
extern const char *const emdpo_trait_names[EMDPO_N_TRAITS];

/* Paraphrases of "Choose the option that resonates most with your
 * personality", used as decision prompts. All distinct. */
extern const char *const emdpo_paraphrases[EMDPO_N_PARAPHRASES];

/* One row of the built-in table: the phrase loads on one trait only. */
typedef struct emdpo_builtin_phrase {
    const char *text;
    char trait; /* 'O', 'C', 'E', 'A' or 'N' */
    int key;    /* +1 or -1 */
} emdpo_builtin_phrase;

extern const emdpo_builtin_phrase emdpo_builtin_phrases[];
extern const int emdpo_builtin_n_phrases;

typedef struct emdpo_inventory {
    int64_t n;
    char **text;   /* (n) distinct phrases */
    double *score; /* (n, EMDPO_N_TRAITS) entries in {-1, 0, +1} */
} emdpo_inventory;

/* The built-in inventory as an owned copy. */
int emdpo_inventory_builtin(emdpo_inventory **out);

/* Reads an MPI-style CSV (header naming at least text, label_ocean and key;
 * one row per (phrase, trait); key 1, -1 or 0; CRLF or LF; RFC-4180 quotes;
 * optional final newline; blank lines skipped). Rows are grouped by text into
 * phrases in first-appearance order. A phrase's score on a trait is the key
 * its rows for that trait carry; when they disagree the key with the most
 * rows wins, and a tie goes to the tied key that appeared first. Traits with
 * no row score 0. Phrases whose every score is 0 (key-0 rows only) are kept:
 * they are valid neutral alternatives and dropping them would change the
 * phrase count users expect. EMDPO_ERR_IO when the file cannot be read;
 * EMDPO_ERR_PARSE with diag (1-based line of the offending record) when it
 * is malformed or holds no rows. diag may be NULL. */
int emdpo_inventory_load_mpi(const char *path, emdpo_inventory **out, emdpo_diag *diag);

/* The same from memory; name is what diag->file reports. */
int emdpo_inventory_parse_mpi(const char *buf, size_t len, const char *name, emdpo_inventory **out,
                              emdpo_diag *diag);

/* A balanced subset of n phrases of inv: phrases are grouped into cells by
 * (trait, key) of their largest absolute score (phrases scoring 0 on every
 * trait form one more cell), cells in trait order, negative key first; the
 * subset takes the cells' phrases round-robin, each cell's in inventory
 * order, until n are taken. Deterministic, so a small experiment sees every
 * trait in both directions. EMDPO_ERR_INVALID_ARG when n < 1 or n > inv->n,
 * EMDPO_ERR_NOMEM. */
int emdpo_inventory_subset(const emdpo_inventory *inv, int64_t n, emdpo_inventory **out);

void emdpo_inventory_free(emdpo_inventory *inv);

#endif
