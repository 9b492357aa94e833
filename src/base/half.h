/* 16-bit floats: IEEE binary16 (F16) and bfloat16 (BF16), the storage
 * types of checkpoints (safetensors, GGUF), to and from float32 by bit
 * manipulation; inline, as loaders convert every element through them.
 *
 * Widening is exact (every F16 and BF16 value is a float32). Narrowing
 * rounds to nearest, ties to even, as PyTorch's .half() and .bfloat16()
 * and ggml do: F16 overflows to infinity from 65520 up, and values below
 * 2^-14 become subnormals (or zero from 2^-25 down). A NaN stays a NaN of
 * the same sign with the top bits of its payload (PyTorch writes BF16 NaNs
 * as 0x7FC0), so that narrowing a widened value gives back the same bits,
 * NaNs included. */
#ifndef EMDPO_HALF_H
#define EMDPO_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t emdpo_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float emdpo_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float emdpo_bf16_to_float(uint16_t h) { return emdpo_bits_f32((uint32_t)h << 16); }

static inline float emdpo_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 31) return emdpo_bits_f32(sign | 0x7f800000u | mant << 13);
    if (exp) return emdpo_bits_f32(sign | (exp + 112) << 23 | mant << 13);
    if (!mant) return emdpo_bits_f32(sign);
    /* A subnormal mant * 2^-24: normalise so that bit 10 is the implicit 1. */
    uint32_t e = 113;
    while (!(mant & 0x400)) {
        mant <<= 1;
        e--;
    }
    return emdpo_bits_f32(sign | e << 23 | (mant & 0x3ff) << 13);
}

/* A 16-bit float of either kind: is_half for F16, else BF16. */
static inline float emdpo_16_to_float(uint16_t h, int is_half) {
    return is_half ? emdpo_half_to_float(h) : emdpo_bf16_to_float(h);
}

/* dst[i] = src[i] widened, i < n. */
static inline void emdpo_widen16(float *dst, const uint16_t *src, size_t n, int is_half) {
    if (is_half)
        for (size_t i = 0; i < n; i++) dst[i] = emdpo_half_to_float(src[i]);
    else
        for (size_t i = 0; i < n; i++) dst[i] = emdpo_bf16_to_float(src[i]);
}

static inline uint16_t emdpo_float_to_bf16(float f) {
    uint32_t u = emdpo_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        uint32_t m = (u >> 16) & 0x7f;
        return (uint16_t)((u >> 16 & 0xff80) | (m ? m : 0x40));
    }
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static inline uint16_t emdpo_float_to_half(float f) {
    uint32_t u = emdpo_f32_bits(f), ax = u & 0x7fffffffu;
    uint16_t sign = (uint16_t)(u >> 16 & 0x8000);
    if (ax > 0x7f800000u) {
        uint32_t m = (ax >> 13) & 0x3ff;
        return (uint16_t)(sign | 0x7c00 | (m ? m : 0x200));
    }
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* 65520 and up (ties to the even infinity) */
    if (ax >= 0x38800000u) {                                   /* normal: 2^-14 and up */
        uint32_t h = ((ax >> 23) - 112) << 10 | (ax >> 13 & 0x3ff), rem = ax & 0x1fff;
        h += rem > 0x1000 || (rem == 0x1000 && (h & 1)); /* a carry moves into the exponent, as it should */
        return (uint16_t)(sign | h);
    }
    int e = (int)(ax >> 23) - 127; /* subnormal or zero: units of 2^-24 */
    if (e < -25) return sign;
    uint32_t m = (ax & 0x7fffff) | 0x800000, shift = (uint32_t)(-(e + 1)); /* 14..24 */
    uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    h += rem > half || (rem == half && (h & 1));
    return (uint16_t)(sign | h);
}

#endif
