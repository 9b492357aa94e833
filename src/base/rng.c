#include "base/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void emdpo_rng_seed(emdpo_rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL + 0x2545f4914f6cdd1dULL);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t emdpo_rng_u64(emdpo_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double emdpo_rng_uniform(emdpo_rng *r) { return (double)(emdpo_rng_u64(r) >> 11) * 0x1.0p-53; }

double emdpo_rng_normal(emdpo_rng *r) {
    /* Box-Muller with one draw discarded: simple, and exact to double precision. */
    double u1;
    do u1 = emdpo_rng_uniform(r);
    while (u1 <= 0.0);
    double u2 = emdpo_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

uint64_t emdpo_rng_below(emdpo_rng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do v = emdpo_rng_u64(r);
    while (v >= limit);
    return v % n;
}

double emdpo_rng_gumbel(emdpo_rng *r) {
    double u;
    do u = emdpo_rng_uniform(r);
    while (u <= 0.0);
    return -log(-log(u));
}

int emdpo_rng_categorical(emdpo_rng *r, const double *w, int n) {
    double total = 0.0;
    for (int i = 0; i < n; i++) total += w[i];
    double t = emdpo_rng_uniform(r) * total, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += w[i];
        if (t < acc && w[i] > 0) return i;
    }
    for (int i = n - 1; i >= 0; i--)
        if (w[i] > 0) return i;
    return 0;
}
