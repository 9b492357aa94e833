#include "base/xsum.h"

#include <math.h>
#include <string.h>

enum { W_NAN = EMDPO_XSUM_DIGITS, W_PINF, W_NINF, W_ADDS };

/* Additions (each under 2^32 per word) before the words are carried: far
 * from int64's limit, and from the 2^31 that words under 2^32 from that
 * many processes may still add up to. */
#define XSUM_CARRY_EVERY (1 << 24)

void emdpo_xsum_zero(int64_t *acc, size_t n) { memset(acc, 0, n * EMDPO_XSUM_WORDS * sizeof *acc); }

/* Carries every digit into 0 .. 2^32 - 1 but the top one, which keeps the
 * sign. */
static void carry(int64_t *a) {
    for (int i = 0; i < EMDPO_XSUM_DIGITS - 1; i++) {
        int64_t low = (int64_t)((uint64_t)a[i] & 0xffffffffu);
        a[i + 1] += (a[i] - low) / 4294967296LL;
        a[i] = low;
    }
    a[W_ADDS] = 0;
}

void emdpo_xsum_add(int64_t *acc, double v) {
    if (v == 0.0) return;
    if (!isfinite(v)) {
        acc[isnan(v) ? W_NAN : v > 0 ? W_PINF : W_NINF]++;
        return;
    }
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    int e = (int)((u >> 52) & 0x7ff);
    uint64_t m = u & ((1ULL << 52) - 1);
    if (e) m |= 1ULL << 52;
    /* v = +-m 2^(o - 1074) */
    int o = e ? e - 1 : 0, at = o >> 5;
    unsigned __int128 s = (unsigned __int128)m << (o & 31);
    int64_t d0 = (int64_t)(uint32_t)s, d1 = (int64_t)(uint32_t)(s >> 32), d2 = (int64_t)(s >> 64);
    if (u >> 63) {
        acc[at] -= d0;
        acc[at + 1] -= d1;
        acc[at + 2] -= d2;
    } else {
        acc[at] += d0;
        acc[at + 1] += d1;
        acc[at + 2] += d2;
    }
    if (++acc[W_ADDS] >= XSUM_CARRY_EVERY) carry(acc);
}

void emdpo_xsum_add_vec(int64_t *acc, const double *v, size_t n) {
    for (size_t i = 0; i < n; i++) emdpo_xsum_add(acc + i * EMDPO_XSUM_WORDS, v[i]);
}

void emdpo_xsum_carry(int64_t *acc, size_t n) {
    for (size_t i = 0; i < n; i++) carry(acc + i * EMDPO_XSUM_WORDS);
}

void emdpo_xsum_merge(int64_t *dst, const int64_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int64_t *a = dst + i * EMDPO_XSUM_WORDS;
        const int64_t *b = src + i * EMDPO_XSUM_WORDS;
        for (int w = 0; w < W_ADDS; w++) a[w] += b[w];
        a[W_ADDS] += b[W_ADDS] + 1;
        if (a[W_ADDS] >= XSUM_CARRY_EVERY) carry(a);
    }
}

/* The sum in a carried accumulator, rounded from its top three digits. */
static double value_of(int64_t *a) {
    carry(a);
    if (a[W_NAN] || (a[W_PINF] && a[W_NINF])) return NAN;
    if (a[W_PINF]) return INFINITY;
    if (a[W_NINF]) return -INFINITY;
    int neg = a[EMDPO_XSUM_DIGITS - 1] < 0;
    if (neg) {
        for (int i = 0; i < EMDPO_XSUM_DIGITS; i++) a[i] = -a[i];
        carry(a);
    }
    int h = EMDPO_XSUM_DIGITS - 1;
    while (h >= 0 && a[h] == 0) h--;
    double r = 0.0;
    for (int i = h; i >= 0 && i >= h - 2; i--) r += ldexp((double)a[i], 32 * i - 1074);
    if (neg) { /* the accumulator keeps the sum it had */
        for (int i = 0; i < EMDPO_XSUM_DIGITS; i++) a[i] = -a[i];
        carry(a);
    }
    return neg ? -r : r;
}

void emdpo_xsum_values(int64_t *acc, size_t n, double *out) {
    for (size_t i = 0; i < n; i++) out[i] = value_of(acc + i * EMDPO_XSUM_WORDS);
}
