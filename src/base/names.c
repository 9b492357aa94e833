/* String -> index maps (base/names.h). */
#include "base/names.h"

#include <string.h>

#include "base/alloc.h"
#include "base/hash.h"
#include "emdpo.h"

void emdpo_name_index_free(emdpo_name_index *ix) {
    for (size_t i = 0; i < ix->n; i++) emdpo_strfree(ix->names[i]);
    emdpo_free(ix->names, ix->cap * sizeof(char *));
    emdpo_free(ix->slots, ix->n_slots * sizeof(int64_t));
    memset(ix, 0, sizeof *ix);
}

int64_t emdpo_name_index_find(const emdpo_name_index *ix, const char *s) {
    if (!ix->n_slots) return -1;
    size_t mask = ix->n_slots - 1;
    for (size_t h = emdpo_hash_str(s) & mask;; h = (h + 1) & mask) {
        int64_t v = ix->slots[h];
        if (v < 0) return -1;
        if (strcmp(ix->names[v], s) == 0) return v;
    }
}

int emdpo_name_index_rehash(emdpo_name_index *ix, size_t n_slots) {
    int64_t *slots = emdpo_malloc(n_slots * sizeof(int64_t));
    if (!slots) return EMDPO_ERR_NOMEM;
    for (size_t i = 0; i < n_slots; i++) slots[i] = -1;
    size_t mask = n_slots - 1;
    for (size_t i = 0; i < ix->n; i++) {
        size_t h = emdpo_hash_str(ix->names[i]) & mask;
        while (slots[h] >= 0) h = (h + 1) & mask;
        slots[h] = (int64_t)i;
    }
    emdpo_free(ix->slots, ix->n_slots * sizeof(int64_t));
    ix->slots = slots;
    ix->n_slots = n_slots;
    return EMDPO_OK;
}

/* Index of s, inserting it when absent. *is_new tells which. */
int emdpo_name_index_intern(emdpo_name_index *ix, const char *s, int64_t *idx, int *is_new) {
    int64_t found = emdpo_name_index_find(ix, s);
    *is_new = found < 0;
    if (found >= 0) {
        *idx = found;
        return EMDPO_OK;
    }
    if ((ix->n + 1) * 2 > ix->n_slots) {
        int rc = emdpo_name_index_rehash(ix, ix->n_slots ? ix->n_slots * 2 : 64);
        if (rc) return rc;
    }
    if (emdpo_grow((void **)&ix->names, &ix->cap, ix->n + 1, sizeof(char *))) return EMDPO_ERR_NOMEM;
    char *copy = emdpo_strdup(s);
    if (!copy) return EMDPO_ERR_NOMEM;
    ix->names[ix->n] = copy;
    size_t mask = ix->n_slots - 1;
    size_t h = emdpo_hash_str(s) & mask;
    while (ix->slots[h] >= 0) h = (h + 1) & mask;
    ix->slots[h] = (int64_t)ix->n;
    *idx = (int64_t)ix->n++;
    return EMDPO_OK;
}
