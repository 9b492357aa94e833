/* Seeded splits of a dataset's annotators, for validation. */
#include <math.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "base/rng.h"
#include "data/data.h"

int64_t emdpo_holdout_count(int64_t n, double holdout) {
    if (!(holdout > 0 && holdout < 1) || n < 0) return -1;
    return (int64_t)llround((double)n * holdout);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t u = *(const int64_t *)a, v = *(const int64_t *)b;
    return (u > v) - (u < v);
}

int emdpo_data_split(const emdpo_data *d, double holdout, uint64_t seed, emdpo_data **train,
                           emdpo_data **valid) {
    if (!train || !valid) return EMDPO_ERR_INVALID_ARG;
    *train = *valid = NULL;
    if (!d) return EMDPO_ERR_INVALID_ARG;
    int64_t n = d->n_annot, nv = emdpo_holdout_count(n, holdout);
    if (nv < 1 || nv >= n) return EMDPO_ERR_INVALID_ARG;
    int64_t *idx = emdpo_malloc((size_t)n * sizeof(int64_t));
    if (!idx) return EMDPO_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    /* Partial Fisher-Yates: the first nv slots become a uniform sample. */
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, 0);
    for (int64_t i = 0; i < nv; i++) {
        int64_t j = i + (int64_t)emdpo_rng_below(&r, (uint64_t)(n - i));
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    qsort(idx, (size_t)nv, sizeof *idx, cmp_i64);
    qsort(idx + nv, (size_t)(n - nv), sizeof *idx, cmp_i64);
    int rc = emdpo_data_subset(d, idx, nv, valid);
    if (!rc) rc = emdpo_data_subset(d, idx + nv, n - nv, train);
    emdpo_free(idx, (size_t)n * sizeof(int64_t));
    if (rc) {
        emdpo_data_free(*valid);
        emdpo_data_free(*train);
        *train = *valid = NULL;
    }
    return rc;
}
