/* Datasets shared by several tests. */
#ifndef EMDPO_TESTDATA_H
#define EMDPO_TESTDATA_H

#include <stdint.h>

#include "data.h"

/* n_annot annotators with m decisions each over 2..4 items with p Gaussian
 * features, every ranking depth, random choices (derivative and E-step
 * tests need data, not a model). NULL on failure. */
emdpo_data *testdata_random_decisions(int n_annot, int m, int p, uint64_t seed);

#endif
