#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* MADV_HUGEPAGE */
#endif
#include "base/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "emdpo.h"

/* Blocks of this size or more ask Linux for transparent huge pages: a
 * fit at 10^6 annotators first touches several hundred MB, and on a
 * virtual machine each 4 KB page fault costs microseconds (a tenth of the
 * fit's time, measured; docs/BENCHMARKS.md). Only the 2 MB-aligned middle
 * of the block is advised; the hint is free to fail. */
#define HUGE_MIN ((size_t)32 << 20)
#define HUGE_PAGE ((uintptr_t)2 << 20)

static void advise_huge(void *p, size_t n) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    uintptr_t a = ((uintptr_t)p + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1), e = ((uintptr_t)p + n) & ~(HUGE_PAGE - 1);
    if (e > a) (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
#endif
}

static void *alloc_libc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    void *q = realloc(ptr, nsize);
    if (q && nsize >= HUGE_MIN) advise_huge(q, nsize);
    return q;
}

static emdpo_alloc_fn g_alloc = alloc_libc;
static void *g_alloc_ud = NULL;

void emdpo_set_allocator(emdpo_alloc_fn fn, void *ud) {
    g_alloc = fn ? fn : alloc_libc;
    g_alloc_ud = fn ? ud : NULL;
}

void *emdpo_malloc(size_t n) { return n ? g_alloc(g_alloc_ud, NULL, 0, n) : NULL; }

void *emdpo_calloc(size_t count, size_t size) {
    if (count == 0 || size == 0) return NULL;
    if (count > SIZE_MAX / size) return NULL;
    void *p = g_alloc(g_alloc_ud, NULL, 0, count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

void *emdpo_realloc(void *p, size_t old_n, size_t new_n) {
    if (new_n == 0) {
        if (p) g_alloc(g_alloc_ud, p, old_n, 0);
        return NULL;
    }
    return g_alloc(g_alloc_ud, p, p ? old_n : 0, new_n);
}

void emdpo_free(void *p, size_t n) {
    if (p) g_alloc(g_alloc_ud, p, n, 0);
}

char *emdpo_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = emdpo_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void emdpo_strfree(char *s) {
    if (s) emdpo_free(s, strlen(s) + 1);
}

int emdpo_resize_parallel(void **const *arrays, const size_t *elem, int n, size_t old_n, size_t new_n) {
    void *fresh[16];
    if (n > 16) return EMDPO_ERR_NOMEM;
    size_t keep = old_n < new_n ? old_n : new_n;
    for (int i = 0; i < n; i++) {
        if (new_n > SIZE_MAX / elem[i] || !(fresh[i] = emdpo_malloc(new_n * elem[i]))) {
            while (i-- > 0) emdpo_free(fresh[i], new_n * elem[i]);
            return EMDPO_ERR_NOMEM;
        }
    }
    for (int i = 0; i < n; i++) {
        if (keep) memcpy(fresh[i], *arrays[i], keep * elem[i]);
        emdpo_free(*arrays[i], old_n * elem[i]);
        *arrays[i] = fresh[i];
    }
    return EMDPO_OK;
}

int emdpo_grow(void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return EMDPO_OK;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / elem) return EMDPO_ERR_NOMEM;
        ncap *= 2;
    }
    void *p = emdpo_realloc(*arr, *cap * elem, ncap * elem);
    if (!p) return EMDPO_ERR_NOMEM;
    *arr = p;
    *cap = ncap;
    return EMDPO_OK;
}

double emdpo_mem_physical(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (double)pages * (double)page : 0.0;
}
