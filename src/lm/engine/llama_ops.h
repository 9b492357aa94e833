/* The layers of a Llama transformer as forward/backward pairs over raw
 * float arrays (llm.c style). Shapes are row-major and named in the comments:
 * N rows (N = B*T), C model width, H SwiGLU width, V vocabulary, NH query
 * heads, NKV key/value heads, hs head size.
 *
 * Forward functions overwrite their outputs. Backward functions ACCUMULATE
 * (+=) into every gradient they produce, so callers zero those buffers once
 * and several uses of a tensor (a tied embedding, the residual stream) sum
 * naturally; the _set variants overwrite instead. Results are bitwise
 * reproducible for a given thread count. The element-wise ops split large
 * inputs over threads, but run on the calling thread when it is already
 * inside a parallel region; exponentials use one vectorisable expf
 * (within 1.5 ulp). */
#ifndef EMDPO_LLAMA_OPS_H
#define EMDPO_LLAMA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "lm/engine/llama.h"

/* out (N, C) = emb[tokens[n]]; tokens (N) in [0, V). */
void emdpo_embed_forward(float *out, const int *tokens, const float *emb, size_t N, int C);
/* The same from a 16-bit table (is_half: F16, else BF16), widened. */
void emdpo_embed16_forward(float *out, const int *tokens, const uint16_t *emb, int is_half, size_t N, int C);
/* demb (V, C) += dout rows scattered by token. */
void emdpo_embed_backward(float *demb, const float *dout, const int *tokens, size_t N, int C);

/* out (N, C) = inp * rstd * w, rstd (N) = 1 / sqrt(mean(inp^2) + eps). */
void emdpo_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, size_t N, int C, float eps);
/* dinp (N, C) and dw (C) += the gradients given dout (N, C). */
void emdpo_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                            const float *rstd, size_t N, int C);

/* out (N, OC) = inp (N, IC) · wᵀ, w (OC, IC). One sgemm over all rows. */
void emdpo_matmul_forward(float *out, const float *inp, const float *w, int N, int IC, int OC);
/* dinp (N, IC) += dout · w (skipped when dinp is NULL); dw (OC, IC) += doutᵀ · inp. */
void emdpo_matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int N,
                           int IC, int OC);

/* out (N, OC) += b (OC) on every row. */
void emdpo_bias_forward(float *out, const float *b, size_t N, int OC);
/* db (OC) += the sum of dout's N rows, in row order on the calling thread
 * (a sum that no thread count changes). */
void emdpo_bias_backward(float *db, const float *dout, size_t N, int OC);

/* Rotation tables for positions pos0 .. pos0+T-1: cosv, sinv (T, hs/2) with
 * angle (pos0+t) * f_i, f_i = c->rope_theta^(-2i/hs) after c's RoPE
 * scaling, computed in double and rounded once. */
void emdpo_rope_table(float *cosv, float *sinv, int pos0, int T, int hs, const emdpo_llama_config *c);
/* out (B, T, nh, hs) = inp rotated pairwise: (x[2i], x[2i+1]) of every head
 * by the angle of row t, i in [0, hs/2) (llama2.c's pairing). out may be inp. */
void emdpo_rope_forward(float *out, const float *inp, const float *cosv, const float *sinv, int B, int T, int nh,
                        int hs);
/* dinp += the inverse rotation of dout (the rotation is orthogonal). */
void emdpo_rope_backward(float *dinp, const float *dout, const float *cosv, const float *sinv, int B, int T, int nh,
                         int hs);
/* As emdpo_rope_backward, but overwriting: x = the inverse rotation of x. */
void emdpo_rope_backward_inplace(float *x, const float *cosv, const float *sinv, int B, int T, int nh, int hs);

/* Causal grouped-query attention of ONE sequence, all heads, on the calling
 * thread (the model runs sequences in parallel): query head h reads
 * key/value head h / (NH/NKV). q and out (T, NH, hs), k and v (T, NKV, hs),
 * att (NH, T, T) the softmax probabilities (zero above the diagonal). Rows
 * t >= len are padding: zero output and probabilities, never read.
 * With scratch (emdpo_attention_scratch(T, hs) floats; give it only where
 * emdpo_gemm_kernel_active()) each key/value head is packed once and the
 * products skip the tiles above the diagonal; with NULL they are sgemms
 * over blocks of 64 query rows, each reading only the keys at or before its
 * last row. */
size_t emdpo_attention_scratch(int T, int hs);
void emdpo_attention_forward(float *out, float *att, float *scratch, const float *q, const float *k, const float *v,
                             int len, int T, int NH, int NKV, int hs);
/* dq (T, NH, hs), dk and dv (T, NKV, hs) += the gradients given dout, for
 * the sequence of emdpo_attention_forward; scratch holds T * T floats. The
 * query heads sharing a key/value head add into it in head order. */
void emdpo_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *q,
                              const float *k, const float *v, const float *att, int len, int T, int NH, int NKV,
                              int hs);

/* out (n) = silu(h1) * h3, silu(x) = x / (1 + e^-x). */
void emdpo_swiglu_forward(float *out, const float *h1, const float *h3, size_t n);
void emdpo_swiglu_backward(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3, size_t n);
/* As emdpo_swiglu_backward, but overwriting dh1 and dh3. */
void emdpo_swiglu_backward_set(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3,
                               size_t n);

/* out (n) = a + b. Its backward is the identity into both inputs, so the
 * model lets the residual-stream gradient flow on unchanged instead of
 * copying it. */
void emdpo_residual_forward(float *out, const float *a, const float *b, size_t n);

/* Log-softmax picked at a target: logp (N) = logits[n][targets[n]] - lse[n],
 * lse (N) = log sum_v exp logits[n][v]. A negative target marks a row with
 * no next token (end of a sequence, padding): logp and lse are 0 there. */
void emdpo_logprob_forward(float *logp, float *lse, const float *logits, const int *targets, size_t N, int V);
/* dlogits (N, V) += dlogp[n] * (onehot(target) - softmax(logits[n])); rows
 * with a negative target get nothing. Cross-entropy is dlogp = -1. */
void emdpo_logprob_backward(float *dlogits, const float *dlogp, const float *logits, const float *lse,
                            const int *targets, size_t N, int V);
/* As emdpo_logprob_backward, but overwriting dlogits (rows without a target
 * become 0). */
void emdpo_logprob_backward_set(float *dlogits, const float *dlogp, const float *logits, const float *lse,
                                const int *targets, size_t N, int V);

#endif
