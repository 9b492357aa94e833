/* Sampling from a Llama policy: one next token from a logits row
 * (temperature, top-k, top-p), and generation that continues prompts with
 * the key/value cache, one sequence at a time or many decoded together.
 *
 * Every draw comes from an emdpo_rng the caller seeds, so a seed fixes the
 * output. Temperature 0 is greedy decoding (argmax, lowest id on ties) and
 * draws nothing. */
#ifndef EMDPO_LM_SAMPLE_H
#define EMDPO_LM_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "base/rng.h"
#include "emdpo.h"
#include "lm/engine/llama.h"
#include "lm/engine/llama_model.h"

/* The sampling distribution for logits l (V): p ∝ exp(l / temperature),
 * restricted to the top_k most probable ids (0: no limit; ties broken
 * towards the lower id), then to the smallest prefix of those, in order of
 * decreasing probability, whose renormalized mass reaches top_p (1: no
 * limit), and renormalized. */
#define EMDPO_MAX_STOP 16

typedef struct emdpo_sampler {
    int vocab_size;
    int stop[EMDPO_MAX_STOP]; /* ids that end generation, not stored */
    int n_stop;
    float temperature; /* >= 0; 0 is greedy */
    int top_k;         /* 0 .. V; 0 keeps all */
    float top_p;       /* (0, 1]; 1 keeps all */
    struct emdpo_sample_cand *cand; /* (V) scratch */
} emdpo_sampler;

/* EMDPO_ERR_INVALID_ARG when vocab_size < 1, temperature is negative or not
 * finite, top_k is outside 0..vocab_size or top_p outside (0, 1]. */
int emdpo_sampler_create(int vocab_size, float temperature, int top_k, float top_p, emdpo_sampler **out);
/* The ids that end generation (the first EMDPO_MAX_STOP of them); a new
 * sampler stops at llama2.c's EOS and BOS. */
void emdpo_sampler_set_stop(emdpo_sampler *s, const int *ids, size_t n);
void emdpo_sampler_free(emdpo_sampler *s);

/* Draws one id from the distribution above (one uniform from rng unless
 * greedy). logits must be finite. Not thread-safe on one sampler. */
int emdpo_sample(emdpo_sampler *s, const float *logits, emdpo_rng *rng);

/* Writes the distribution itself into probs (V): what emdpo_sample draws
 * from, zero outside the kept set (a one-hot argmax when greedy). */
void emdpo_sample_probs(emdpo_sampler *s, const float *logits, double *probs);

/* Why a generated sequence ended: EMDPO_GEN_EOS (the model produced one of
 * the sampler's stop ids, not stored), EMDPO_GEN_MAX, EMDPO_GEN_CONTEXT (emdpo/lm.h). */

/* Continues prompt[0..n_prompt) (n_prompt >= 1, usually starting with BOS)
 * with up to max_new sampled tokens, written to out; *n_out gets their
 * number and *stop (may be NULL) an EMDPO_GEN_ code. Generation stops
 * before storing EOS or BOS (llama2.c's stories models end a text with BOS),
 * after max_new tokens, or when the prompt plus the new tokens fill kv. kv
 * is rewound to position 0 first. EMDPO_ERR_INVALID_ARG when the prompt is
 * empty, longer than kv->max_T, holds an id out of range, or s or kv belong
 * to another vocabulary or model. */
int emdpo_generate(const emdpo_llama *m, emdpo_llama_kv *kv, emdpo_sampler *s, emdpo_rng *rng, const int *prompt,
                   int n_prompt, int max_new, int *out, int *n_out, int *stop);

/* Batched generation: n sequences decoded together, each step's
 * projections one matrix product over all live sequences (the E-step and
 * MMRA-AE draw many samples y ~ π per prompt). Sequence i continues prompt
 * prompts[i] of length prompt_len[i] and draws from stream i of seed, so
 * its text does not depend on how sequences are batched or threaded
 * (its floating-point sums may: equal logits up to rounding). out (n,
 * max_new) receives sequence i's tokens at out + i * max_new, n_out[i]
 * their count, stop[i] (may be NULL) the reason. max_T bounds prompt plus
 * generated tokens (<= the model's max_seq_len). EMDPO_ERR_INVALID_ARG as
 * emdpo_generate; EMDPO_ERR_NOMEM, EMDPO_ERR_LIMIT for a cache too large. */
int emdpo_generate_batch(const emdpo_llama *m, const emdpo_sampler *s, uint64_t seed, const int *const *prompts,
                         const int *prompt_len, int n, int max_new, int max_T, int *out, int *n_out, int *stop);

/* emdpo_generate_batch split over the processes: each decodes its
 * contiguous share (emdpo_dist_range) of the n sequences, sequence i still
 * drawing from stream i of seed, and the tokens, counts and reasons are
 * gathered so that every process holds all n. Each sequence draws what it
 * draws in one process's emdpo_generate_batch; its logits may round
 * differently in a smaller batch, so a draw that falls within rounding of
 * the boundary between two tokens could go the other way (tests compare
 * the bytes for 1, 2 and 3 processes). A collective (every process calls
 * it with the same arguments); one process: emdpo_generate_batch. */
int emdpo_generate_shared(const emdpo_llama *m, const emdpo_sampler *s, uint64_t seed, const int *const *prompts,
                          const int *prompt_len, int n, int max_new, int max_T, int *out, int *n_out, int *stop);

#endif
