/* Exact sums of doubles: a long fixed-point accumulator per value that
 * covers every finite double (2^-1074 .. 2^1024) in 32-bit digits held in
 * int64 words, so adding is exact and the order of the additions does not
 * matter. Two accumulators are added word by word, which is how the
 * processes of an MPI job combine theirs (emdpo_dist_xsum_reduce, a plain
 * integer MPI_Allreduce): a sum over annotators is then the same bits for
 * any number of threads and processes, and any split of the annotators
 * among them, with messages whose size does not grow with the data.
 *
 * The rounding back to a double (emdpo_xsum_value) is a function of the
 * exact sum alone, within two units in the last place of it. Infinities and
 * NaN are counted apart and come back as IEEE addition would give them. */
#ifndef EMDPO_XSUM_H
#define EMDPO_XSUM_H

#include <stddef.h>
#include <stdint.h>

/* Digits of 32 bits from 2^-1074: 66 cover the doubles, 2 more the sums of
 * up to 2^60 of the largest. Then counts of NaN, +inf, -inf, and of the
 * additions since the last carry. */
#define EMDPO_XSUM_DIGITS 68
#define EMDPO_XSUM_WORDS (EMDPO_XSUM_DIGITS + 4)

/* acc holds n accumulators (n * EMDPO_XSUM_WORDS words), set to 0. */
void emdpo_xsum_zero(int64_t *acc, size_t n);
/* Adds v to the accumulator at acc. */
void emdpo_xsum_add(int64_t *acc, double v);
/* Adds v[0..n) to the n accumulators at acc. */
void emdpo_xsum_add_vec(int64_t *acc, const double *v, size_t n);
/* Carries the n accumulators' digits (before their words are added
 * across processes). */
void emdpo_xsum_carry(int64_t *acc, size_t n);
/* Adds the n accumulators at src into those at dst. */
void emdpo_xsum_merge(int64_t *dst, const int64_t *src, size_t n);
/* The n sums, rounded, into out (the accumulators are normalised in place). */
void emdpo_xsum_values(int64_t *acc, size_t n, double *out);

#endif
