/* 16-bit floats: IEEE binary16 (F16) and bfloat16 (BF16), the storage
 * types of checkpoints, to and from float32. Widening is exact; narrowing
 * rounds to nearest, ties to even, as PyTorch and ggml do, overflow
 * becoming infinity and NaN staying NaN. */
#ifndef EMDPO_HALF_H
#define EMDPO_HALF_H

#include <stdint.h>

float emdpo_half_to_float(uint16_t h);
uint16_t emdpo_float_to_half(float f);
float emdpo_bf16_to_float(uint16_t b);
uint16_t emdpo_float_to_bf16(float f);

#endif
