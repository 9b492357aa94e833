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
#include "emdpo/experimental.h"

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

/* The same from memory; name is what diag->file reports. */
int emdpo_inventory_parse_mpi(const char *buf, size_t len, const char *name, emdpo_inventory **out,
                              emdpo_diag *diag);

#endif
