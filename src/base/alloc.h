/* One allocation hook for the whole library (see emdpo_set_allocator). */
#ifndef EMDPO_ALLOC_H
#define EMDPO_ALLOC_H

#include <stddef.h>

void *emdpo_malloc(size_t n);
void *emdpo_calloc(size_t count, size_t size); /* NULL on overflow */
void *emdpo_realloc(void *p, size_t old_n, size_t new_n);
void emdpo_free(void *p, size_t n);
char *emdpo_strdup(const char *s);
void emdpo_strfree(char *s);

/* Array growth helper: ensures *cap >= need for elements of size elem,
 * doubling. Returns 0 or EMDPO_ERR_NOMEM (leaving *arr untouched). */
int emdpo_grow(void **arr, size_t *cap, size_t need, size_t elem);

#endif
