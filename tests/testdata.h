/* Datasets shared by several tests. */
#ifndef EMDPO_TESTDATA_H
#define EMDPO_TESTDATA_H

#include <stdint.h>

#include "data/data.h"
#include "lm/io/tokenizer.h"

/* n_annot annotators with m decisions each over 2..4 items with p Gaussian
 * features, every ranking depth, random choices (derivative and E-step
 * tests need data, not a model). NULL on failure. */
emdpo_data *testdata_random_decisions(int n_annot, int m, int p, uint64_t seed);

/* A llama2.c tokenizer of TESTDATA_LETTER_VOCAB pieces: the 259 standard
 * entries (<unk>, BOS, EOS, 256 bytes), a space, and each letter alone and
 * after a space; made in memory, NULL on failure. */
#define TESTDATA_LETTER_VOCAB (259 + 53)
emdpo_tokenizer *testdata_letter_tokenizer(void);

#endif
