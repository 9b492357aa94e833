#include "testdata.h"

#include <stdio.h>

#include "rng.h"

emdpo_data *testdata_random_decisions(int n_annot, int m, int p, uint64_t seed) {
    emdpo_builder *b;
    if (emdpo_builder_create(p, &b)) return NULL;
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, 0);
    double x[4 * 16];
    char name[32];
    for (int i = 0; i < n_annot; i++) {
        snprintf(name, sizeof name, "a%d", i);
        for (int j = 0; j < m; j++) {
            int n = 2 + (int)emdpo_rng_below(&r, 3);
            int stages = 1 + (int)emdpo_rng_below(&r, (uint64_t)(n - 1));
            for (int q = 0; q < n * p; q++) x[q] = emdpo_rng_normal(&r);
            if (emdpo_builder_add(b, name, NULL, NULL, n, stages, x, NULL)) {
                emdpo_builder_free(b);
                return NULL;
            }
        }
    }
    emdpo_data *d = NULL;
    emdpo_builder_finish(b, &d);
    return d;
}
