/* One allocation hook for the whole library (see emdpo_set_allocator). */
#ifndef EMDPO_ALLOC_H
#define EMDPO_ALLOC_H

#include <stddef.h>

void *emdpo_malloc(size_t n);
void *emdpo_calloc(size_t count, size_t size); /* NULL on overflow */
void *emdpo_realloc(void *p, size_t old_n, size_t new_n);
void emdpo_free(void *p, size_t n);
char *emdpo_strdup(const char *s);
/* The machine's physical memory in bytes (0 when unknown), against which
 * absurd sizes (a model, a simulation) are refused before allocating. */
double emdpo_mem_physical(void);
void emdpo_strfree(char *s);

/* Array growth helper: ensures *cap >= need for elements of size elem,
 * doubling. Returns 0 or EMDPO_ERR_NOMEM (leaving *arr untouched). */
int emdpo_grow(void **arr, size_t *cap, size_t need, size_t elem);

/* Resizes n parallel arrays (*arrays[i], elements of elem[i] bytes) from
 * old_n to new_n elements together: all of them, or none (EMDPO_ERR_NOMEM,
 * every array as it was), so that one capacity keeps describing them all.
 * At most 16 arrays. */
int emdpo_resize_parallel(void **const *arrays, const size_t *elem, int n, size_t old_n, size_t new_n);

#endif
