/* exp and log in plain arithmetic and bit moves, so that loops over them
 * vectorise (the C library's exp and log are calls): the log-linear
 * family's lane kernel and the E-step on log-ratios use them. */
#ifndef EMDPO_VMATH_H
#define EMDPO_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Multiply-add, fused where the target has the instruction (one rounding
 * instead of two, half the work); ISO C mode would not contract a * b + c. */
#ifdef __FMA__
#define EMDPO_MADD(a, b, c) fma(a, b, c)
#else
#define EMDPO_MADD(a, b, c) ((a) * (b) + (c))
#endif

static inline double emdpo_bits_to_double(uint64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static inline uint64_t emdpo_double_to_bits(double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

/* 1.5 * 2^52: adding it rounds to an integer held in the low mantissa bits. */
#define EMDPO_ROUND_SHIFTER 6755399441055744.0
#define EMDPO_ROUND_SHIFTER_BITS 0x4338000000000000ULL

/* exp(x) for x <= 700 (callers keep x below: exp(700) summed over a few
 * terms is still finite), accurate to about 2 ulp, in plain arithmetic and
 * bit moves so that it vectorises (the C library's exp was a third of a
 * pass). */
static inline double emdpo_exp_bounded(double x) {
    x = x > -708.0 ? x : -708.0; /* below, 2^-1022 scale: zero for our sums */
    double kk = EMDPO_MADD(x, 1.4426950408889634, EMDPO_ROUND_SHIFTER);
    double k = kk - EMDPO_ROUND_SHIFTER;
    double r = EMDPO_MADD(-k, 1.90821492927058770002e-10, EMDPO_MADD(-k, 6.93147180369123816490e-01, x));
    double p = 1.0 / 479001600.0;
    p = EMDPO_MADD(p, r, 1.0 / 39916800.0);
    p = EMDPO_MADD(p, r, 1.0 / 3628800.0);
    p = EMDPO_MADD(p, r, 1.0 / 362880.0);
    p = EMDPO_MADD(p, r, 1.0 / 40320.0);
    p = EMDPO_MADD(p, r, 1.0 / 5040.0);
    p = EMDPO_MADD(p, r, 1.0 / 720.0);
    p = EMDPO_MADD(p, r, 1.0 / 120.0);
    p = EMDPO_MADD(p, r, 1.0 / 24.0);
    p = EMDPO_MADD(p, r, 1.0 / 6.0);
    p = EMDPO_MADD(p, r, 0.5);
    p = EMDPO_MADD(p, r, 1.0);
    p = EMDPO_MADD(p, r, 1.0);
    uint64_t kbits = emdpo_double_to_bits(kk) - EMDPO_ROUND_SHIFTER_BITS; /* k as a two's-complement integer */
    return p * emdpo_bits_to_double((kbits + 1023) << 52);
}

/* log(x) for x >= 1 (a decision's normaliser): fdlibm's reduction and
 * polynomial in plain arithmetic and bit moves, so that it vectorises. */
static inline double emdpo_log_ge1(double x) {
    uint64_t b = emdpo_double_to_bits(x);
    double f = emdpo_bits_to_double((b & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL); /* [1, 2) */
    /* the exponent as a double through the bits of 2^52 + e (exact, and
     * vectorisable where int64 -> double conversion is not) */
    double k = emdpo_bits_to_double((b >> 52) | 0x4330000000000000ULL) - (4503599627370496.0 + 1023.0);
    /* above sqrt(2): f halved (its exponent less 1, exact) into [sqrt(2)/2,
     * sqrt(2)), k + 1; with bit masks, which vectorise where a select
     * next to the division below did not */
    uint64_t up = 0 - (uint64_t)(f > 1.4142135623730951);
    f = emdpo_bits_to_double(emdpo_double_to_bits(f) - (up & 0x0010000000000000ULL));
    k += emdpo_bits_to_double(up & 0x3ff0000000000000ULL);
    f -= 1.0;
    double s = f / (2.0 + f), z = s * s, w = z * z;
    double t1 = w * EMDPO_MADD(w, EMDPO_MADD(w, 1.531383769920937332e-01, 2.222219843214978396e-01), 3.999999999940941908e-01);
    double t2 = z * EMDPO_MADD(w, EMDPO_MADD(w, EMDPO_MADD(w, 1.479819860511658591e-01, 1.818357216161805012e-01), 2.857142874366239149e-01),
                         6.666666666666735130e-01);
    double hfsq = 0.5 * f * f;
    return EMDPO_MADD(k, 6.93147180369123816490e-01, -((hfsq - EMDPO_MADD(s, hfsq + t1 + t2, k * 1.90821492927058770002e-10)) - f));
}

#endif
