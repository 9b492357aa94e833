/* String -> index maps with open addressing, indices in order of first
 * insertion: annotator and group names of datasets and of the files of
 * log-ratios and margins. The strings are copied and live in names[]. */
#ifndef EMDPO_NAMES_H
#define EMDPO_NAMES_H

#include <stddef.h>
#include <stdint.h>

typedef struct emdpo_name_index {
    char **names;
    size_t n, cap;
    int64_t *slots; /* -1 empty, else index into names */
    size_t n_slots;
} emdpo_name_index;

/* Frees the names and the table, leaving an empty map (a zeroed struct is
 * one too). */
void emdpo_name_index_free(emdpo_name_index *ix);
/* Index of s, -1 when absent. */
int64_t emdpo_name_index_find(const emdpo_name_index *ix, const char *s);
/* Rebuilds the table with n_slots (a power of two) slots. EMDPO_ERR_NOMEM. */
int emdpo_name_index_rehash(emdpo_name_index *ix, size_t n_slots);
/* Index of s, inserting it when absent. *is_new tells which. EMDPO_ERR_NOMEM. */
int emdpo_name_index_intern(emdpo_name_index *ix, const char *s, int64_t *idx, int *is_new);

#endif
