/* Matrix products whose right-hand side is a weight matrix reused by many
 * row blocks: the Llama engine's projections, forward and backward.
 *
 * The weight is packed once (per pass, per layer) into column panels and
 * each row block multiplies against the panels with an AVX-512 kernel.
 * Packing once is what a BLAS call per row block cannot do: it repacks the
 * weight on every call. Whether a product takes the kernel is decided by
 * its caller, once per buffer: packing space (or scratch) given means the
 * kernel, NULL means one cblas_sgemm on the unpacked weight. Give space only
 * where emdpo_gemm_kernel_active() said yes.
 *
 * On the kernel path a product's bits depend on its shapes alone, not on
 * the thread that runs it nor on the row block it is part of: each output
 * sums over k in one fixed order. BLAS makes no such promise. */
#ifndef EMDPO_GEMM_H
#define EMDPO_GEMM_H

#include <stddef.h>
#include <stdint.h>

/* 1 when the packed kernel may be used: the CPU has AVX-512F and the
 * environment does not set EMDPO_GEMM=blas. */
int emdpo_gemm_kernel_active(void);

/* The right-hand side B (K, N) of out = A · B. */
typedef struct emdpo_gemm_rhs {
    const float *w; /* source: (N, K) when trans (B = wᵀ, a Linear's weight), else (K, N) */
    const uint16_t *w16; /* or a 16-bit source of that shape (w NULL), always copied into panels */
    int w16_dtype;  /* w16's: EMDPO_DTYPE_BF16 or EMDPO_DTYPE_F16 (emdpo/lm.h) */
    int plain;      /* w16 only: panels holds w16 widened in its own layout (row stride its width), and
                       products go to BLAS on that copy, with the bits BLAS gives a float32 source */
    int ldw;        /* its row stride */
    int K, N;
    int trans;
    float *panels;  /* packed copy, or NULL: products go to BLAS on w */
} emdpo_gemm_rhs;

/* Floats a packed copy of a (K, N) operand takes (a multiple of 32). */
size_t emdpo_gemm_rhs_floats(int K, int N);

/* Describes B without packing it. w has row stride ldw; space holds
 * emdpo_gemm_rhs_floats(K, N) floats, or is NULL for the BLAS path. */
void emdpo_gemm_rhs_init(emdpo_gemm_rhs *b, const float *w, int ldw, int K, int N, int trans, float *space);
/* The same over a 16-bit source, widened (exactly) while packing: space is
 * required, and so is the kernel unless plain (see emdpo_gemm_rhs). */
void emdpo_gemm_rhs_init16(emdpo_gemm_rhs *b, const uint16_t *w16, int dtype, int ldw, int K, int N, int trans,
                           int plain, float *space);

/* Panels in a packed B (for plain, blocks of source rows); packing panels
 * [p0, p1) is one job, so several threads can share the packing of one
 * operand. */
int emdpo_gemm_rhs_panels(const emdpo_gemm_rhs *b);
void emdpo_gemm_rhs_pack(const emdpo_gemm_rhs *b, int p0, int p1);

/* out (M, N) = A (M, K) · B + beta · out, beta 0 or 1; A row-major with
 * row stride lda, out with ldc. Runs on the calling thread when B is packed. */
void emdpo_gemm_rows(float *out, int ldc, const float *A, int lda, const emdpo_gemm_rhs *b, int M, float beta);

/* The causal products of attention, where row i of out needs only what
 * index i admits (B packed):
 *   inner = 0: out = A · B at columns j <= i at least (scores against keys
 *              up to the query's own position); each row's other columns
 *              are either exact or left as they were;
 *   inner = 1: out = A · B where A[i][k] = 0 for k > i (probabilities times
 *              values); the sums skip most of those zeros.
 * Each computed element has the bits emdpo_gemm_rows gives it. */
void emdpo_gemm_rows_causal(float *out, int ldc, const float *A, int lda, const emdpo_gemm_rhs *b, int M, int inner);

/* out (M, N) += Aᵀ · Bm with A (K, M) and Bm (K, N) row-major (lda, ldb,
 * ldc row strides): a weight gradient summed over K rows of activations.
 * With scratch (emdpo_gemm_tn_scratch() floats, a multiple of 32) both
 * operands are packed, in blocks, for the kernel, on the calling thread;
 * NULL takes the BLAS path. The kernel sums over K in blocks of a fixed
 * size, in order, so its bits depend on the shapes only. */
size_t emdpo_gemm_tn_scratch(void);
void emdpo_gemm_tn_acc(float *out, int ldc, const float *A, int lda, const float *Bm, int ldb, int M, int N, int K,
                       float *scratch);

#endif
