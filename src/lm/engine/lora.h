/* LoRA adapters (Hu et al. 2021, in PEFT's conventions): a low-rank update
 * of some of a Llama's seven projections on a frozen base,
 *
 *   W' = W + s · B A,   A (r, in), B (out, r),   s = alpha / r
 *   (alpha / sqrt(r) with rsLoRA),
 *
 * so a projection's output is x Wᵀ + s · (x Aᵀ) Bᵀ. Every adapted layer has
 * the same rank. One flat float buffer holds all of A and B (llm.c style),
 * so an optimizer and a gradient buffer can be laid out like it: for each
 * target projection t in EMDPO_PROJ_ order, A_t (L, r, in_t) then B_t (L,
 * out_t, r). */
#ifndef EMDPO_LORA_H
#define EMDPO_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "emdpo.h"
#include "lm/engine/llama.h"

/* emdpo_lora_config and emdpo_lora_config_init are public (emdpo/lm.h);
 * its targets are bits (1u << EMDPO_PROJ_*). */
#define EMDPO_LORA_ALL_TARGETS ((1u << EMDPO_N_PROJ) - 1u)

/* s: alpha / r, or alpha / sqrt(r) with rslora. */
float emdpo_lora_scale(const emdpo_lora_config *c);

/* EMDPO_OK or EMDPO_ERR_INVALID_ARG (r < 1, alpha not finite, dropout
 * outside [0, 1), no or unknown targets). */
int emdpo_lora_config_check(const emdpo_lora_config *c);

typedef struct emdpo_lora {
    emdpo_lora_config config;
    emdpo_llama_config base; /* the shapes it adapts */
    float *A[EMDPO_N_PROJ];  /* (L, r, in) per target; NULL for a projection not adapted */
    float *B[EMDPO_N_PROJ];  /* (L, out, r) */
    float *buf;              /* every A and B */
    size_t n;                /* floats in buf */
} emdpo_lora;

/* Floats of an adapter, 0 when the sizes overflow. */
size_t emdpo_lora_num_params(const emdpo_llama_config *base, const emdpo_lora_config *c);

/* Points A and B into buf (emdpo_lora_num_params floats): an optimizer's
 * state or a gradient laid out like an adapter. */
void emdpo_lora_point(const emdpo_llama_config *base, const emdpo_lora_config *c, float *buf,
                      float *A[EMDPO_N_PROJ], float *B[EMDPO_N_PROJ]);

/* A zeroed adapter for base (a configuration that passes
 * emdpo_llama_config_check). EMDPO_ERR_INVALID_ARG, EMDPO_ERR_LIMIT when
 * it cannot be sized, EMDPO_ERR_NOMEM. */
int emdpo_lora_create(const emdpo_llama_config *base, const emdpo_lora_config *c, emdpo_lora **out);
void emdpo_lora_free(emdpo_lora *lo);

/* PEFT's initialisation, deterministically from seed: A uniform on
 * [-1/sqrt(in), 1/sqrt(in)] (kaiming_uniform_ with a = sqrt(5)), B zero,
 * so a fresh adapter leaves the base's outputs unchanged. */
void emdpo_lora_init(emdpo_lora *lo, uint64_t seed);

/* 1 when lo was made for models of c's projection shapes and layer count. */
int emdpo_lora_fits(const emdpo_lora *lo, const emdpo_llama_config *c);

/* W += s · B A for every adapted projection of m (whose configuration has
 * the adapter's shapes): the merged model computes what base + adapter
 * does. EMDPO_ERR_INVALID_ARG when the shapes differ or m is frozen. */
int emdpo_lora_merge(const emdpo_lora *lo, emdpo_llama *m);

#endif
