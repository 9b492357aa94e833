#include "lm/engine/gemm.h"

#include "base/half.h"
#include "emdpo.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define EMDPO_GEMM_X86 1
#endif

/* Register tile: MR rows by NR columns, 16 zmm accumulators. The packed B
 * holds NR consecutive columns per k, zero-padded past N. */
enum { MR = 8, NR = 32 };
/* Blocks of a weight gradient: KC rows of the sum at a time, MC by NC of the
 * output, so that the packed operands stay in L2. */
enum { KC = 256, MC = 512, NC = 512 };

int emdpo_gemm_kernel_active(void) {
#ifdef EMDPO_GEMM_X86
    const char *e = getenv("EMDPO_GEMM");
    if (e && strcmp(e, "blas") == 0) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
#else
    return 0;
#endif
}

static int panels_of(int N) { return (N + NR - 1) / NR; }

size_t emdpo_gemm_rhs_floats(int K, int N) { return (size_t)K * NR * (size_t)panels_of(N); }

void emdpo_gemm_rhs_init(emdpo_gemm_rhs *b, const float *w, int ldw, int K, int N, int trans, float *space) {
    b->w = w;
    b->w16 = NULL;
    b->w16_dtype = 0;
    b->plain = 0;
    b->ldw = ldw;
    b->K = K;
    b->N = N;
    b->trans = trans;
    b->panels = space;
}

void emdpo_gemm_rhs_init16(emdpo_gemm_rhs *b, const uint16_t *w16, int dtype, int ldw, int K, int N, int trans,
                           int plain, float *space) {
    emdpo_gemm_rhs_init(b, NULL, ldw, K, N, trans, space);
    b->w16 = w16;
    b->w16_dtype = dtype;
    b->plain = plain;
}

/* A plain copy's source rows and their width. */
static int plain_rows(const emdpo_gemm_rhs *b) { return b->trans ? b->N : b->K; }
static int plain_cols(const emdpo_gemm_rhs *b) { return b->trans ? b->K : b->N; }

int emdpo_gemm_rhs_panels(const emdpo_gemm_rhs *b) {
    if (!b->panels) return 0;
    return b->plain ? (plain_rows(b) + NR - 1) / NR : panels_of(b->N);
}

/* Columns [j0, j0 + n) of B (K, N) as one panel: dst[k][c], c < NR. The
 * source w has row stride ldw: B[k][j] = w[j][k] when trans, else w[k][j]. */
static void pack_panel(float *dst, const float *w, size_t ldw, int K, int N, int trans, int j0) {
    int n = N - j0 < NR ? N - j0 : NR;
    if (trans) { /* source rows fill panel columns, eight at a time so each k writes 32 bytes */
        for (int c0 = 0; c0 < n; c0 += 8) {
            int cn = n - c0 < 8 ? n - c0 : 8;
            const float *src[8];
            for (int c = 0; c < 8; c++) src[c] = w + (size_t)(j0 + c0 + (c < cn ? c : 0)) * ldw;
            for (int k = 0; k < K; k++) {
                float *d = dst + (size_t)k * NR + c0;
                for (int c = 0; c < cn; c++) d[c] = src[c][k];
            }
        }
    } else {
        for (int k = 0; k < K; k++) memcpy(dst + (size_t)k * NR, w + (size_t)k * ldw + j0, (size_t)n * sizeof(float));
    }
    if (n < NR)
        for (int k = 0; k < K; k++) memset(dst + (size_t)k * NR + n, 0, (size_t)(NR - n) * sizeof(float));
}

/* pack_panel over a 16-bit source, widening each element. */
static void pack_panel16(float *dst, const uint16_t *w, size_t ldw, int dtype, int K, int N, int trans, int j0) {
    int n = N - j0 < NR ? N - j0 : NR, is_half = dtype == EMDPO_DTYPE_F16;
    if (trans) {
        for (int c = 0; c < n; c++) {
            const uint16_t *src = w + (size_t)(j0 + c) * ldw;
            for (int k = 0; k < K; k++) dst[(size_t)k * NR + c] = emdpo_16_to_float(src[k], is_half);
        }
    } else {
        for (int k = 0; k < K; k++) emdpo_widen16(dst + (size_t)k * NR, w + (size_t)k * ldw + j0, (size_t)n, is_half);
    }
    if (n < NR)
        for (int k = 0; k < K; k++) memset(dst + (size_t)k * NR + n, 0, (size_t)(NR - n) * sizeof(float));
}

void emdpo_gemm_rhs_pack(const emdpo_gemm_rhs *b, int p0, int p1) {
    if (b->plain) { /* source rows [p0 NR, p1 NR) */
        int r1 = p1 * NR < plain_rows(b) ? p1 * NR : plain_rows(b);
        size_t cols = (size_t)plain_cols(b);
        for (int r = p0 * NR; r < r1; r++)
            emdpo_widen16(b->panels + (size_t)r * cols, b->w16 + (size_t)r * b->ldw, cols, b->w16_dtype == EMDPO_DTYPE_F16);
        return;
    }
    for (int p = p0; p < p1; p++) {
        float *dst = b->panels + (size_t)p * b->K * NR;
        if (b->w16)
            pack_panel16(dst, b->w16, (size_t)b->ldw, b->w16_dtype, b->K, b->N, b->trans, p * NR);
        else
            pack_panel(dst, b->w, (size_t)b->ldw, b->K, b->N, b->trans, p * NR);
    }
}

#ifdef EMDPO_GEMM_X86
/* out[i][0..n) (+)= sum over k < K of A[i][k] · B[k][0..n) for i < mr,
 * where A[i][k] sits at A + i*rs + k*cs and B is one packed panel. Rows
 * past mr read row 0 and are not stored; columns past n are masked. */
__attribute__((target("avx512f"))) static void kernel_tile(int K, const float *A, size_t rs, size_t cs, int mr,
                                                           const float *B, float *out, int ldc, int n, int add) {
    size_t off[MR];
    for (int i = 0; i < MR; i++) off[i] = i < mr ? (size_t)i * rs : 0;
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    for (int k = 0; k < K; k++, A += cs, B += NR) {
        __m512 b0 = _mm512_loadu_ps(B), b1 = _mm512_loadu_ps(B + 16), x;
#define EMDPO_GEMM_ROW(i)                                                                                            \
    x = _mm512_set1_ps(A[off[i]]);                                                                                   \
    c##i##0 = _mm512_fmadd_ps(x, b0, c##i##0);                                                                       \
    c##i##1 = _mm512_fmadd_ps(x, b1, c##i##1);
        EMDPO_GEMM_ROW(0)
        EMDPO_GEMM_ROW(1)
        EMDPO_GEMM_ROW(2)
        EMDPO_GEMM_ROW(3)
        EMDPO_GEMM_ROW(4)
        EMDPO_GEMM_ROW(5)
        EMDPO_GEMM_ROW(6)
        EMDPO_GEMM_ROW(7)
#undef EMDPO_GEMM_ROW
    }
    __mmask16 m0 = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
    __mmask16 m1 = n >= 32 ? (__mmask16)0xFFFF : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : (__mmask16)0;
#define EMDPO_GEMM_STORE(i)                                                                                          \
    if (i < mr) {                                                                                                    \
        float *o = out + (size_t)i * ldc;                                                                            \
        if (add) {                                                                                                   \
            c##i##0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, o), c##i##0);                                          \
            c##i##1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, o + 16), c##i##1);                                     \
        }                                                                                                            \
        _mm512_mask_storeu_ps(o, m0, c##i##0);                                                                       \
        _mm512_mask_storeu_ps(o + 16, m1, c##i##1);                                                                  \
    }
    EMDPO_GEMM_STORE(0)
    EMDPO_GEMM_STORE(1)
    EMDPO_GEMM_STORE(2)
    EMDPO_GEMM_STORE(3)
    EMDPO_GEMM_STORE(4)
    EMDPO_GEMM_STORE(5)
    EMDPO_GEMM_STORE(6)
    EMDPO_GEMM_STORE(7)
#undef EMDPO_GEMM_STORE
}

/* out (M, N) (+)= A · B over one packed operand B of K rows. Row tile t of
 * A (rows t*MR ...) starts at A + t*ts; within it, as in kernel_tile. */
static void kernel_block(float *out, int ldc, const float *A, size_t ts, size_t rs, size_t cs, const float *panels,
                         int M, int N, int K, int add) {
    for (int j = 0; j < N; j += NR)
        for (int i = 0; i < M; i += MR)
            kernel_tile(K, A + (size_t)(i / MR) * ts, rs, cs, M - i < MR ? M - i : MR, panels + (size_t)j * K,
                        out + (size_t)i * ldc + j, ldc, N - j < NR ? N - j : NR, add);
}
#endif

void emdpo_gemm_rows(float *out, int ldc, const float *A, int lda, const emdpo_gemm_rhs *b, int M, float beta) {
#ifdef EMDPO_GEMM_X86
    if (b->panels && !b->plain) {
        kernel_block(out, ldc, A, (size_t)MR * lda, (size_t)lda, 1, b->panels, M, b->N, b->K, beta != 0.0f);
        return;
    }
#endif
    const float *w = b->plain ? b->panels : b->w;
    int ldw = b->plain ? plain_cols(b) : b->ldw;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, b->trans ? CblasTrans : CblasNoTrans, M, b->N, b->K, 1.0f, A, lda, w,
                ldw, beta, out, ldc);
}

void emdpo_gemm_rows_causal(float *out, int ldc, const float *A, int lda, const emdpo_gemm_rhs *b, int M, int inner) {
#ifdef EMDPO_GEMM_X86
    /* row tile [i, i + mr) needs columns, or inner indices, below i + mr */
    for (int i = 0; i < M; i += MR) {
        int mr = M - i < MR ? M - i : MR, lim = i + mr;
        int N = inner || lim > b->N ? b->N : lim, K = inner && lim < b->K ? lim : b->K;
        for (int j = 0; j < N; j += NR)
            kernel_tile(K, A + (size_t)i * lda, (size_t)lda, 1, mr, b->panels + (size_t)j * b->K,
                        out + (size_t)i * ldc + j, ldc, N - j < NR ? N - j : NR, 0);
    }
#else
    (void)inner; /* without the kernel: the whole product, which meets both contracts */
    emdpo_gemm_rows(out, ldc, A, lda, b, M, 0.0f);
#endif
}

size_t emdpo_gemm_tn_scratch(void) { return (size_t)KC * (MC + NC); }

#ifdef EMDPO_GEMM_X86
/* Rows [k0, k0 + kc) and columns [i0, i0 + m) of A (K, M), as MR-wide
 * tiles: dst[tile][k][i], zero past m. */
static void pack_lhs_t(float *dst, const float *A, int lda, int k0, int kc, int i0, int m) {
    for (int t = 0; t * MR < m; t++) {
        int w = m - t * MR < MR ? m - t * MR : MR;
        float *d = dst + (size_t)t * kc * MR;
        for (int k = 0; k < kc; k++) {
            const float *src = A + (size_t)(k0 + k) * lda + i0 + t * MR;
            if (w == MR) {
                memcpy(d + (size_t)k * MR, src, MR * sizeof(float));
                continue;
            }
            for (int i = 0; i < MR; i++) d[(size_t)k * MR + i] = i < w ? src[i] : 0.0f;
        }
    }
}
#endif

void emdpo_gemm_tn_acc(float *out, int ldc, const float *A, int lda, const float *Bm, int ldb, int M, int N, int K,
                       float *scratch) {
#ifdef EMDPO_GEMM_X86
    if (scratch) {
        float *ap = scratch, *bp = scratch + (size_t)KC * MC;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            for (int j0 = 0; j0 < N; j0 += NC) {
                int nc = N - j0 < NC ? N - j0 : NC;
                for (int j = 0; j < nc; j += NR)
                    pack_panel(bp + (size_t)j * kc, Bm + (size_t)k0 * ldb + j0, (size_t)ldb, kc, nc, 0, j);
                for (int i0 = 0; i0 < M; i0 += MC) {
                    int mc = M - i0 < MC ? M - i0 : MC;
                    pack_lhs_t(ap, A, lda, k0, kc, i0, mc);
                    kernel_block(out + (size_t)i0 * ldc + j0, ldc, ap, (size_t)kc * MR, 1, MR, bp, mc, nc, kc, 1);
                }
            }
        }
        return;
    }
#else
    (void)scratch;
#endif
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, Bm, ldb, 1.0f, out, ldc);
}
