/* 16-bit floats; see half.h. */
#include "base/half.h"

#include <math.h>
#include <string.h>

float emdpo_half_to_float(uint16_t h) {
    int exp = (h >> 10) & 0x1f;
    unsigned mant = h & 0x3ff;
    float f;
    if (exp == 0)
        f = ldexpf((float)mant, -24);
    else if (exp == 31)
        f = mant ? NAN : INFINITY;
    else
        f = ldexpf((float)(mant | 0x400), exp - 25);
    return h & 0x8000 ? -f : f;
}

uint16_t emdpo_float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return sign | 0x7e00;    /* NaN */
    if (ax >= 0x47800000) return sign | 0x7c00;   /* 2^16 and beyond (and infinity): infinity */
    if (ax < 0x38800000) {                        /* below 2^-14: a subnormal half, or zero */
        int e = (int)(ax >> 23);
        if (e < 102) return sign;                 /* below 2^-25: zero */
        uint32_t m = (ax & 0x7fffff) | 0x800000;  /* value m * 2^(e-150); units of 2^-24 */
        int shift = 126 - e;
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = (ax >> 13) - (112u << 10), rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* a carry into the exponent is right */
    return (uint16_t)(sign | h);
}

float emdpo_bf16_to_float(uint16_t b) {
    uint32_t x = (uint32_t)b << 16;
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

uint16_t emdpo_float_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* NaN stays NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}
