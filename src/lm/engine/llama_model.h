/* Model-level forward and backward of a Llama transformer over a batch of
 * token sequences, and single-sequence decoding with a key/value cache.
 *
 * The forward returns per-token next-token log-probabilities,
 * logp[b][t] = log p(tokens[b][t+1] | tokens[b][0..t]), which is all that
 * SFT and DPO losses need; the backward takes a gradient on those and adds
 * the parameter gradient into a buffer laid out like the parameters. */
#ifndef EMDPO_LLAMA_MODEL_H
#define EMDPO_LLAMA_MODEL_H

#include <stddef.h>

#include "lm/engine/llama.h"
#include "lm/engine/lora.h"

/* Activations of one forward pass, kept for the backward (llm.c style: one
 * buffer, pointers into it). Sized for at most max_B sequences of max_T
 * tokens; a pass with smaller B, T packs its tensors with its own B, T, so
 * the shapes below use the B, T of the last forward. hs = the head size,
 * qd = NH * hs, kvd = NKV * hs.
 *
 * The per-layer tensors (L, ...) hold every layer only with training; a
 * forward-only acts keeps ONE layer's worth (L = 1 below), which each layer
 * overwrites, so it needs about 1/L of the memory and stays in cache. Its
 * residual stream is res3 alone, updated in place (encoded and res2 are
 * NULL). With activation checkpointing (EMDPO_ACTS_TRAIN_CKPT) res3 keeps
 * every layer (the layers' inputs) and the other per-layer tensors two
 * (slot l % 2: L = 2 below): the backward runs layer l's forward again, from
 * its input, at the stage that needs it. */
/* A piece of a gradient (g, n floats) that the backward has finished. */
typedef void (*emdpo_grad_piece_fn)(void *ud, float *g, size_t n);

typedef struct emdpo_llama_acts {
    emdpo_llama_config config;
    int max_B, max_T;
    int B, T;         /* shape of the last forward; 0 before the first */
    int unused;       /* 1 from a forward to its backward, which uses the activations up */
    int training;     /* every layer kept (or recomputed: ckpt), gradient buffers allocated */
    int ckpt;         /* with training: activation checkpointing, per-layer tensors in slots l % 2 */
    int *tokens;      /* (B, T) ids; 0 past a sequence's length */
    int *targets;     /* (B, T) next token, or -1 where there is none */
    int *lens;        /* (B) */
    float *encoded;   /* (B, T, C) token embeddings: layer 0's input (training only) */
    float *ln1;       /* (L, B, T, C) attention RMSNorm output */
    float *ln1_rstd;  /* (L, B, T) */
    float *q;         /* (L, B, T, qd) queries after RoPE */
    float *k;         /* (L, B, T, kvd) keys after RoPE */
    float *v;         /* (L, B, T, kvd) */
    float *q_pre;     /* (L, B, T, qd) queries before their norm (qk_norm only, else NULL) */
    float *k_pre;     /* (L, B, T, kvd) keys before their norm (qk_norm only) */
    float *q_rstd;    /* (L, B, T, NH) (qk_norm only) */
    float *k_rstd;    /* (L, B, T, NKV) (qk_norm only) */
    float *att;       /* (L, B, NH, T, T) attention probabilities */
    float *atty;      /* (L, B, T, qd) attention output before wo */
    float *res2;      /* (L, B, T, C) residual after attention (training only) */
    float *ln2;       /* (L, B, T, C) FFN RMSNorm output */
    float *ln2_rstd;  /* (L, B, T) */
    float *h1;        /* (L, B, T, H) gate pre-activation */
    float *h3;        /* (L, B, T, H) up projection */
    float *hg;        /* (L, B, T, H) silu(h1) * h3 */
    float *res3;      /* (L, B, T, C) residual after FFN: layer l+1's input (every layer with ckpt too) */
    float *lnf;       /* (B, T, C) final RMSNorm output */
    float *lnf_rstd;  /* (B, T) */
    float *logits;    /* (B, T, V) */
    float *lse;       /* (B, T) log-sum-exp of each logits row */
    float *logp;      /* (B, T) next-token log-probabilities, 0 where masked */
    float *rope_cos;  /* (T, hs/2) */
    float *rope_sin;  /* (T, hs/2) */
    /* LoRA's (emdpo_llama_acts_create_lora; else lora_r 0 and NULL), for
     * each projection P (EMDPO_PROJ_*) at lora_u + P * lora_u_stride and
     * lora_g + P * lora_g_stride. */
    int lora_r;
    float *lora_u;    /* (7, L, B, T, r) s · x' Aᵀ: each adapter's inner activations (slot as the others) */
    float *lora_g;    /* (7, 2, B, T, r) s · dout B (training only; slot l % 2) */
    size_t lora_u_stride, lora_g_stride;
    float *lora_x;    /* (B, T, max in) scratch: an adapter's input after dropout, x' (training only) */
    float *lora_dA;   /* (2, max_B, sum over P of r * in_P) each chunk's share of dA, slot l % 2 (training) */
    size_t lora_x_width, lora_dA_chunk;
    /* Dropout on the adapters' inputs while training (lo's dropout p > 0):
     * element (row i of the batch, column j) of projection P's input in
     * layer l is kept, scaled by 1/(1-p), by a hash of (lora_seed, l, P,
     * i, j), so any thread count draws the same masks and the backward
     * redraws them. The trainer sets the seed before each forward. */
    uint64_t lora_seed;
    /* Called by the backward, when set, for each piece of the gradient as
     * soon as the pass will no longer add to it (emdpo_llama_grad_pieces):
     * data-parallel training starts summing it over processes while the
     * backward goes on. NULL: none. */
    emdpo_grad_piece_fn grad_piece;
    void *grad_piece_ud;
    /* Gradients (training only). The backward keeps the activation
     * gradients that the weight gradients need for two layers at a time
     * (slot l % 2), and the residual stream's for three (slot (l+1) % 3). */
    float *dres;      /* (3, B, T, C) dL/d(layer l's output); layer -1 is the embedding */
    float *dres2;     /* (2, B, T, C) dL/d(residual after attention) */
    float *dq;        /* (2, B, T, qd) the q projection's output (before bias, norm, RoPE) */
    float *dk;        /* (2, B, T, kvd) the k projection's output */
    float *dv;        /* (2, B, T, kvd) */
    float *dqk;       /* (B, T, qd) scratch of the q/k norms' backward (qk_norm only) */
    float *dh1;       /* (2, B, T, H) */
    float *dh3;       /* (2, B, T, H) */
    float *dhg;       /* (B, T, H) scratch */
    float *dx;        /* (B, T, max(C, qd)) scratch: an RMSNorm output's or the attention output's gradient */
    float *datt;      /* (B, T, T) scratch of the attention backward, one T x T per sequence */
    float *dnorm;     /* (B, 2L+1, C) + (B, 2L, hs) with qk_norm: the RMSNorm weight gradients of each chunk */
    float *dlogits;   /* (B, T, V) the logits' buffer: the backward replaces the logits by their gradient */
    /* The packed kernel's buffers (gemm.h). wpack always (a frozen model's
     * matrices are widened there for BLAS); the per-thread scratch only
     * where the kernel is active. A pass of one chunk takes BLAS. */
    float *wpack;       /* one layer's projections, or a block of the head, packed (or widened: a frozen
                           model's for BLAS) */
    float *tn_scratch;  /* (kthreads, tn_scratch_n) the weight gradients' (training only) */
    size_t tn_scratch_n;
    float *att_scratch; /* (kthreads, att_scratch_n) one key/value head's keys and values, packed */
    size_t att_scratch_n;
    int kthreads;       /* emdpo_max_threads() at creation where the kernel is active (kernel-path passes use
                           at most this many), else 0 */
    float *kbuf;        /* the allocation behind the four (kbuf_n floats), 64-byte aligned inside */
    size_t kbuf_n;
    float *buf;       /* every float array above but the kernel's */
    size_t buf_n;     /* floats in buf */
    int *ibuf;        /* tokens, targets, lens */
    size_t ibuf_n;    /* ints in ibuf */
} emdpo_llama_acts;

/* What an acts is made for: forward passes only; training (every layer's
 * activations kept for the backward); training with activation
 * checkpointing, which keeps each layer's input and recomputes the rest
 * layer by layer in the backward (about 1/L of the per-layer memory, one
 * more forward of L - 2 layers per backward, the same gradients bit for
 * bit). */
enum { EMDPO_ACTS_INFER = 0, EMDPO_ACTS_TRAIN = 1, EMDPO_ACTS_TRAIN_CKPT = 2 };

/* Activations for batches of up to max_B sequences of up to max_T tokens
 * (max_T <= emdpo_llama_context(c)) for mode (EMDPO_ACTS_*); training also allocates the backward's buffers.
 * It also allocates the packing space (a layer's projections) and, where
 * gemm.h's kernel is active (decided here, once), the kernel's scratch for
 * at most emdpo_max_threads() threads: set the thread count before
 * creating.
 * EMDPO_ERR_INVALID_ARG for bad sizes, EMDPO_ERR_LIMIT when they overflow. */
int emdpo_llama_acts_create(const emdpo_llama_config *c, int max_B, int max_T, int mode, emdpo_llama_acts **out);
/* The same with room for adapters of rank lora_r (lora.h) on any
 * projection; lora_r 0 is emdpo_llama_acts_create. */
int emdpo_llama_acts_create_lora(const emdpo_llama_config *c, int lora_r, int max_B, int max_T, int mode,
                                 emdpo_llama_acts **out);
void emdpo_llama_acts_free(emdpo_llama_acts *a);

/* Forward over tokens (B, T), row-major. lens (B) or NULL (all T): tokens of
 * sequence b at t >= lens[b] are padding, never read, and never influence a
 * real position. Fills a->logp (B, T), a->logits, a->lnf and, with training,
 * everything the backward needs. EMDPO_ERR_INVALID_ARG when B, T, a length
 * or a real token is out of range or a was made for another configuration.
 *
 * Threads: the batch is cut into chunks of whole sequences (about 256 rows
 * each, a function of T only). Layer by layer, the team packs the layer's
 * weights once (gemm.h; when the kernel is active and there are two chunks
 * or more) and then runs the chunks through it, each on one thread, with
 * single-threaded products (OpenBLAS is set to one thread for the duration
 * and restored after, so two threads of the caller must not run passes at
 * the same time). With one chunk, or one OpenMP thread, the pass runs on
 * the calling thread; a single chunk takes the BLAS path, and OpenBLAS
 * keeps its own threads unless the kernel is in use. */
int emdpo_llama_forward(const emdpo_llama *m, emdpo_llama_acts *a, const int *tokens, const int *lens, int B, int T);

/* Backward of the last forward from dlogp (B, T) (entries where logp is
 * masked are ignored): ADDS dL/dparams into grad (m->num_params floats,
 * laid out as the parameters; a tied head's gradient lands in tok_emb).
 * Uses the forward up: the logits become their gradient and, with
 * checkpointing, recomputed layers take the slots, so another backward
 * needs another forward (logp stays). EMDPO_ERR_INVALID_ARG without
 * training buffers, before a forward or after the forward's backward.
 * Threads as the forward: the chunks go backward layer by layer against
 * the layer's packed weights, and the weight gradients of layer l, sums
 * over all rows, are products over blocks of the weight, run while the
 * chunks do layer l-1. The same inputs and thread count give the same bits,
 * whichever thread takes which chunk or block. */
int emdpo_llama_backward(const emdpo_llama *m, emdpo_llama_acts *a, const float *dlogp, float *grad);

/* The same for base m (frozen or not: it is not trained) plus adapter lo
 * (NULL: the base alone), whose rank a has room for: every adapted
 * projection's output gains s · (x Aᵀ) Bᵀ. The backward ADDS dL/d(the
 * adapter) into grad (lo->n floats, laid out as lo's buffer) and nothing
 * for the base's parameters. Threads and bits as above. */
int emdpo_llama_forward_lora(const emdpo_llama *m, const emdpo_lora *lo, emdpo_llama_acts *a, const int *tokens,
                             const int *lens, int B, int T);
int emdpo_llama_backward_lora(const emdpo_llama *m, const emdpo_lora *lo, emdpo_llama_acts *a, const float *dlogp,
                              float *grad);

/* The pieces of grad (laid out as m's parameters, or as lo's buffer when lo
 * is not NULL) in the order a backward finishes them, each piece once, all
 * of grad in all: layer l's matrices, biases (or its adapter's A and B)
 * when the backward has gone below layer l, from the last layer down; an
 * untied head's after the top layer; the embedding and every RMSNorm weight
 * last. The backward calls a->grad_piece with these, from the thread that
 * called it, between its stages; this calls f with them at once (a process
 * with no examples in a step takes part in the same sums). */
void emdpo_llama_grad_pieces(const emdpo_llama_config *c, const emdpo_lora *lo, float *grad, emdpo_grad_piece_fn f,
                             void *ud);

/* Log-probability of the span of tokens [start[b], end[b]) of each sequence
 * of the last forward: out[b] = sum of logp[b][s-1] over the span. Requires
 * 1 <= start[b] <= end[b] <= lens[b]; else EMDPO_ERR_INVALID_ARG. */
int emdpo_llama_span_logp(const emdpo_llama_acts *a, const int *start, const int *end, double *out);
/* The matching backward: dlogp[b][s-1] += g[b] over each span. dlogp (B, T). */
int emdpo_llama_span_backward(const emdpo_llama_acts *a, const int *start, const int *end, const double *g,
                              float *dlogp);

/* Key/value cache and buffers for decoding one sequence token by token. */
typedef struct emdpo_llama_kv {
    emdpo_llama_config config;
    int max_T;
    int n;            /* positions filled */
    float *k;         /* (L, max_T, kvd) keys after RoPE */
    float *v;         /* (L, max_T, kvd) */
    float *x;         /* (C) residual stream */
    float *xb;        /* (C) */
    float *xb2;       /* (qd) attention output */
    float *q;         /* (qd) */
    float *rstd;      /* (NH) the q/k norms' */
    float *hb;        /* (H) */
    float *hb2;       /* (H) */
    float *att;       /* (max_T) */
    float *rope_cos;  /* (hs/2) */
    float *rope_sin;  /* (hs/2) */
    float *logits;    /* (V) */
    float *wrows;     /* (emdpo_llama_decode_scratch) */
    float *buf;
    size_t buf_n;
} emdpo_llama_kv;

/* max_T <= emdpo_llama_context(c). */
int emdpo_llama_kv_create(const emdpo_llama_config *c, int max_T, emdpo_llama_kv **out);
void emdpo_llama_kv_free(emdpo_llama_kv *kv);

/* Feeds token at position pos (0 <= pos <= kv->n, pos < max_T; a pos below
 * kv->n rewinds the sequence there) and points *logits at the next-token
 * logits (V), valid until the next step. EMDPO_ERR_INVALID_ARG when token or
 * pos is out of range or kv was made for another configuration. */
int emdpo_llama_step(const emdpo_llama *m, emdpo_llama_kv *kv, int token, int pos, const float **logits);

/* Floats of the scratch (wrows) a decoder gives the functions below. */
size_t emdpo_llama_decode_scratch(const emdpo_llama_config *c);

/* out (na, OC) = x (na, IC) · Wᵀ for projection proj (EMDPO_PROJ_*) of
 * layer l, or for the head at proj == EMDPO_N_PROJ. The product runs in
 * blocks of output rows whichever way m holds W, a frozen model's rows
 * widened into wrows first, so that a frozen model decodes the bits its
 * float32 twin does. */
void emdpo_llama_decode_matmul(const emdpo_llama *m, int l, int proj, const float *x, float *out, int na,
                               float *wrows);

/* x (C) = token's embedding. */
void emdpo_llama_decode_embed(const emdpo_llama *m, int token, float *x);

/* The pieces of a decoding step that differ between the families, shared
 * by emdpo_llama_step and lm_sample.c's batched decoding. For na rows xb
 * (na, C) of layer l's attention RMSNorm output: q (na, qd), k and v (na,
 * kvd), projected, biased (qkv_bias), each head of q and k normed (qk_norm;
 * rstd holds na * NH floats) and rotated by row j of cosv, sinv (na, hs/2). */
void emdpo_llama_decode_qkv(const emdpo_llama *m, int l, const float *xb, float *q, float *k, float *v,
                            const float *cosv, const float *sinv, float *rstd, int na, float *wrows);
/* out (na, C) = atty (na, qd) · woᵀ + bo (o_bias). */
void emdpo_llama_decode_out(const emdpo_llama *m, int l, const float *atty, float *out, int na, float *wrows);

#endif
