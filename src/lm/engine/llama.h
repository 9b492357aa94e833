/* Llama-family transformer policies: configuration, parameters and the
 * layout every part of the engine (loaders, forward, backward, optimizer,
 * savers) agrees on. llm.c style: one flat float buffer holds every
 * parameter; a struct of pointers names the tensors inside it. Matrices are
 * row-major [out][in], as in llama2.c checkpoints and PyTorch Linear. */
#ifndef EMDPO_LLAMA_H
#define EMDPO_LLAMA_H

#include <stddef.h>
#include <stdint.h>

typedef struct emdpo_llama_config {
    int dim;          /* C: model width */
    int hidden_dim;   /* H: SwiGLU inner width */
    int n_layers;     /* L */
    int n_heads;      /* NH: query heads */
    int n_kv_heads;   /* NKV: key/value heads (grouped-query attention), divides NH */
    int vocab_size;   /* V */
    int max_seq_len;  /* longest sequence the model accepts */
    int tied;         /* 1: the output head is the token embedding */
    float norm_eps;   /* RMSNorm epsilon (1e-5) */
    float rope_theta; /* RoPE base (10000) */
    /* RoPE scaling (Hugging Face's rope_scaling): EMDPO_ROPE_DEFAULT (none),
     * LINEAR (frequencies / factor), LLAMA3 (Llama 3.1's: low frequencies /
     * factor, high ones kept, a smooth blend between). */
    int rope_type;
    float rope_factor;                 /* LINEAR, LLAMA3 */
    float rope_low_freq_factor;        /* LLAMA3 */
    float rope_high_freq_factor;       /* LLAMA3 */
    int rope_original_max_pos;         /* LLAMA3: original_max_position_embeddings */
    /* The variants of the families built on Llama. A zero field is plain
     * Llama's choice. */
    int head_dim;       /* hs: each head's size; 0 means C / NH. qd = NH * hs may differ from C */
    int qkv_bias;       /* 1: the q, k and v projections add biases (Qwen2, attention_bias) */
    int o_bias;         /* 1: the output projection adds a bias (attention_bias) */
    int qk_norm;        /* 1: each head of q and of k is RMSNormed (weights (hs)) before RoPE (Qwen3) */
    int sliding_window; /* W > 0: a position attends to the last W positions only (Mistral); sequences are
                           then kept to W tokens, where the window changes nothing; 0: none */
    int arch;           /* EMDPO_ARCH_*: the family a save names (config.json model_type); no effect here */
} emdpo_llama_config;

enum { EMDPO_ROPE_DEFAULT = 0, EMDPO_ROPE_LINEAR = 1, EMDPO_ROPE_LLAMA3 = 2 };
enum { EMDPO_ARCH_LLAMA = 0, EMDPO_ARCH_MISTRAL = 1, EMDPO_ARCH_QWEN2 = 2, EMDPO_ARCH_QWEN3 = 3 };

/* hs: head_dim, or C / NH when it is 0. */
int emdpo_llama_head_size(const emdpo_llama_config *c);

/* The longest sequence the model takes: max_seq_len, or the sliding window
 * when that is shorter. */
int emdpo_llama_context(const emdpo_llama_config *c);

/* A layer's seven projections, in this order; PEFT's module names are
 * q_proj, k_proj, v_proj, o_proj, gate_proj (w1), up_proj (w3), down_proj (w2). */
enum {
    EMDPO_PROJ_Q,
    EMDPO_PROJ_K,
    EMDPO_PROJ_V,
    EMDPO_PROJ_O,
    EMDPO_PROJ_GATE,
    EMDPO_PROJ_UP,
    EMDPO_PROJ_DOWN,
    EMDPO_N_PROJ
};

/* Projection proj's weight shape (out_dim, in_dim) for a configuration
 * that passes emdpo_llama_config_check. */
void emdpo_llama_proj_shape(const emdpo_llama_config *c, int proj, int *out_dim, int *in_dim);

/* Pointers into the flat parameter buffer, in this order. qd = NH * hs,
 * kvd = NKV * hs. The optional tensors come last, so that a plain Llama's
 * layout is llama2.c's; absent, they hold no floats (the pointer is where
 * the next tensor would start). */
typedef struct emdpo_llama_params {
    float *tok_emb;   /* (V, C) */
    float *rms_att;   /* (L, C) */
    float *wq;        /* (L, qd, C) */
    float *wk;        /* (L, kvd, C) */
    float *wv;        /* (L, kvd, C) */
    float *wo;        /* (L, C, qd) */
    float *rms_ffn;   /* (L, C) */
    float *w1;        /* (L, H, C) gate */
    float *w2;        /* (L, C, H) down */
    float *w3;        /* (L, H, C) up */
    float *rms_final; /* (C) */
    float *lm_head;   /* (V, C); points at tok_emb when tied */
    float *bq;        /* (L, qd) with qkv_bias */
    float *bk;        /* (L, kvd) with qkv_bias */
    float *bv;        /* (L, kvd) with qkv_bias */
    float *bo;        /* (L, C) with o_bias */
    float *q_norm;    /* (L, hs) with qk_norm */
    float *k_norm;    /* (L, hs) with qk_norm */
} emdpo_llama_params;

#define EMDPO_LLAMA_N_TENSORS 18

/* 0 when the configuration is usable, else EMDPO_ERR_INVALID_ARG (sizes
 * must be positive, dim divisible by n_heads unless head_dim is given,
 * n_heads by n_kv_heads, the head size even for RoPE, the flags 0 or 1, the
 * arch known, and the parameter count must fit in memory arithmetic). */
int emdpo_llama_config_check(const emdpo_llama_config *c);

/* Number of floats in each tensor (lm_head and absent optional tensors
 * count 0) and in all,
 * for a configuration that passes emdpo_llama_config_check. */
void emdpo_llama_tensor_sizes(const emdpo_llama_config *c, size_t sizes[EMDPO_LLAMA_N_TENSORS]);
size_t emdpo_llama_num_params(const emdpo_llama_config *c);

/* Points p's tensors into buf (emdpo_llama_num_params floats). */
void emdpo_llama_point_params(const emdpo_llama_config *c, float *buf, emdpo_llama_params *p);

/* The PyTorch-Linear-like matrices of a frozen model, kept in the 16-bit
 * type its file stored them in: widening is exact, so the model computes
 * the same bits as with float32 copies, in half the memory. */
typedef struct emdpo_llama_mats16 {
    int dtype;                   /* EMDPO_DTYPE_BF16 or EMDPO_DTYPE_F16 (emdpo/lm.h) */
    uint16_t *tok_emb;           /* (V, C) */
    uint16_t *w[EMDPO_N_PROJ];   /* (L, out, in) each, EMDPO_PROJ_* order (emdpo_llama_proj_shape) */
    uint16_t *lm_head;           /* (V, C); tok_emb when tied */
    uint16_t *buf;
    size_t n;                    /* elements in buf */
} emdpo_llama_mats16;

/* A model: configuration plus its parameters. */
typedef struct emdpo_llama {
    emdpo_llama_config config;
    emdpo_llama_params params;   /* a frozen model's matrices (tok_emb, wq..w3, lm_head) are NULL here */
    emdpo_llama_mats16 *frozen;  /* NULL, or the matrices of a model made to be run, never trained or saved */
    float *param_buf; /* (num_params) */
    size_t num_params;           /* floats in param_buf: a frozen model's norms and biases only */
    char *source;     /* the path it was loaded from (lm/io/loader.c), or NULL */
    int file_dtype;   /* the emdpo_dtype its weights were stored in (EMDPO_DTYPE_F32, F16, BF16), which
                         saving keeps; 0 (EMDPO_DTYPE_AUTO) for a model not loaded from a file: F32 */
    int adapted;      /* 1: loaded from a PEFT adapter directory, the base (source) with the adapter merged in */
} emdpo_llama;

/* Allocates a model with zeroed parameters; its config's head_dim is
 * explicit (never 0). EMDPO_ERR_INVALID_ARG when the
 * configuration fails emdpo_llama_config_check, EMDPO_ERR_NOMEM. */
int emdpo_llama_create(const emdpo_llama_config *c, emdpo_llama **out);

/* A frozen model (see emdpo_llama_mats16) with zeroed parameters, its
 * matrices of dtype EMDPO_DTYPE_BF16 or EMDPO_DTYPE_F16. Errors as
 * emdpo_llama_create. Only the forward and the decoders run it, widening
 * its matrices to float32 a layer (or a block of rows) at a time. */
int emdpo_llama_create_frozen(const emdpo_llama_config *c, int dtype, emdpo_llama **out);

/* The float32 matrices of p in EMDPO_PROJ_* order. */
void emdpo_llama_proj_weights(const emdpo_llama_params *p, float *w[EMDPO_N_PROJ]);

/* Fills m's parameters for training from scratch, deterministically from
 * seed: RMSNorm weights 1, biases 0; embeddings and matrices N(0, 0.02^2),
 * except the
 * projections back into the residual stream (wo, w2), which are scaled by
 * 1/sqrt(2L) (GPT-2's scheme) so the stream's variance does not grow with
 * depth. */
void emdpo_llama_init(emdpo_llama *m, uint64_t seed);

#endif
