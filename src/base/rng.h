/* Deterministic pseudo-random numbers: xoshiro256** seeded through
 * splitmix64, with independent streams so that parallel work draws the same
 * numbers whatever the thread count. */
#ifndef EMDPO_RNG_H
#define EMDPO_RNG_H

#include <stdint.h>

typedef struct emdpo_rng {
    uint64_t s[4];
} emdpo_rng;

/* Stream `stream` of generator `seed`; different streams do not overlap in practice. */
void emdpo_rng_seed(emdpo_rng *r, uint64_t seed, uint64_t stream);
uint64_t emdpo_rng_u64(emdpo_rng *r);
double emdpo_rng_uniform(emdpo_rng *r);           /* [0, 1) with 53 random bits */
double emdpo_rng_normal(emdpo_rng *r);            /* standard normal */
uint64_t emdpo_rng_below(emdpo_rng *r, uint64_t n); /* uniform on 0..n-1, unbiased; n > 0 */
double emdpo_rng_gumbel(emdpo_rng *r);            /* standard Gumbel */
/* Index drawn with probability proportional to w[0..n) (w >= 0, sum > 0). */
int emdpo_rng_categorical(emdpo_rng *r, const double *w, int n);

#endif
