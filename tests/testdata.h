/* Datasets shared by several tests. */
#ifndef EMDPO_TESTDATA_H
#define EMDPO_TESTDATA_H

#include <stdint.h>

#include "data/data.h"
#include "lm/io/safetensors.h"
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

/* The whole file at path, NUL-terminated (*len bytes before the NUL), from
 * malloc; NULL when it cannot be read. */
char *testdata_slurp(const char *path, size_t *len);

/* llama.cpp's tokenizer test pairs NAME.inp / NAME.out in dir (inputs
 * separated by "\n__ggml_vocab_test__\n", one line of ids each) encoded by
 * t without special tokens. Returns the number of cases (-1: the files are
 * absent) and sets *bad to those whose ids differ; skip (may be NULL)
 * leaves out the inputs it returns 1 for. */
int testdata_llama_cpp_pairs(const emdpo_tokenizer *t, const char *dir, const char *name, int (*skip)(const char *),
                             int *bad);

/* Largest |a - b| over n, relative to the largest |b|: how the reference
 * comparisons against PyTorch's fixtures measure a tensor's error. */
double testdata_rel_err(const float *a, const float *b, size_t n);

/* A fixture safetensors file's metadata: space-separated ids of key into
 * ids (at most cap; returns the count), or one number (NAN when absent). */
int testdata_st_meta_ids(const emdpo_safetensors *st, const char *key, int *ids, int cap);
double testdata_st_meta_num(const emdpo_safetensors *st, const char *key);

/* A whole tensor of st as float32 (malloc'd, *n elements), or NULL. */
float *testdata_st_read_all(const emdpo_safetensors *st, const char *name, size_t *n);

#endif
