/* The packed-weight products (gemm.h) against a float64 reference, on
 * shapes that leave partial register tiles, partial panels and partial
 * blocks; on the kernel path and on the BLAS path (no packing space). Also
 * that the kernel's rows do not depend on the row block they are computed
 * in, that attention's causal products equal the full ones where they
 * promise to, and that EMDPO_GEMM=blas turns the kernel off. Operands are
 * packed in two pieces, as a team does. Where the CPU lacks AVX-512F only
 * the BLAS path runs, and the test says so. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lm/engine/gemm.h"

static unsigned long long rng_state = 0x9E3779B97F4A7C15ULL;
static float urand(void) { /* uniform in (-1, 1), fixed sequence */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float *rnd(size_t n) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = urand();
    return x;
}

/* Largest |got - want| relative to sqrt(K) (the size of a sum of K products
 * of numbers in (-1, 1)). */
static double err_rel(const float *got, const double *want, size_t n, int K) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(got[i] - want[i]));
    return worst / sqrt((double)K);
}

/* out (M, N) = A (M, K, row stride lda) · B + beta · out, B from w in
 * either orientation. */
static void check_rows(int M, int N, int K, int trans, float beta, int kernel) {
    int lda = K + 3, ldc = N + 5; /* strides wider than the rows */
    float *A = rnd((size_t)M * lda), *w = rnd((size_t)K * N), *out = rnd((size_t)M * ldc);
    double *want = malloc((size_t)M * ldc * sizeof(double));
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) {
            double s = beta != 0.0f || j >= N ? out[(size_t)i * ldc + j] : 0.0;
            if (j < N)
                for (int k = 0; k < K; k++)
                    s += (double)A[(size_t)i * lda + k] * (trans ? w[(size_t)j * K + k] : w[(size_t)k * N + j]);
            want[(size_t)i * ldc + j] = s;
        }
    size_t np = emdpo_gemm_rhs_floats(K, N);
    CHECK(np >= (size_t)K * N && np % 32 == 0);
    float *space = kernel ? malloc(np * sizeof(float)) : NULL;
    emdpo_gemm_rhs b;
    emdpo_gemm_rhs_init(&b, w, trans ? K : N, K, N, trans, space);
    /* in two pieces, as a team would */
    int panels = emdpo_gemm_rhs_panels(&b), half = panels / 2;
    emdpo_gemm_rhs_pack(&b, 0, half);
    emdpo_gemm_rhs_pack(&b, half, panels);
    emdpo_gemm_rows(out, ldc, A, lda, &b, M, beta);
    double e = err_rel(out, want, (size_t)M * ldc, K);
    CHECK_MSG(e < 1e-6, "%s M %d N %d K %d trans %d beta %g: error %g", kernel ? "kernel" : "blas", M, N, K, trans,
              beta, e);
    /* rows [3, M) on their own give the same bits as in the whole product
     * (the kernel's promise; BLAS makes none) */
    if (kernel && M > 3 && beta == 0.0f) {
        float *part = malloc((size_t)(M - 3) * ldc * sizeof(float));
        memcpy(part, out + (size_t)3 * ldc, (size_t)(M - 3) * ldc * sizeof(float));
        emdpo_gemm_rows(part, ldc, A + (size_t)3 * lda, lda, &b, M - 3, 0.0f);
        CHECK_MSG(memcmp(part, out + (size_t)3 * ldc, (size_t)(M - 3) * ldc * sizeof(float)) == 0,
                  "M %d N %d K %d trans %d: a row block's bits differ", M, N, K, trans);
        free(part);
    }
    free(A), free(w), free(out), free(want), free(space);
}

/* out (M, N, stride N + 2) += Aᵀ · Bm with A (K, M) and Bm (K, N) at strides
 * wider than their rows. */
static void check_tn(int M, int N, int K, int kernel) {
    int lda = M + 1, ldb = N + 4, ldc = N + 2;
    float *A = rnd((size_t)K * lda), *Bm = rnd((size_t)K * ldb), *out = rnd((size_t)M * ldc);
    double *want = malloc((size_t)M * ldc * sizeof(double));
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) {
            double s = out[(size_t)i * ldc + j];
            if (j < N)
                for (int k = 0; k < K; k++) s += (double)A[(size_t)k * lda + i] * Bm[(size_t)k * ldb + j];
            want[(size_t)i * ldc + j] = s;
        }
    float *scratch = kernel ? malloc(emdpo_gemm_tn_scratch() * sizeof(float)) : NULL;
    emdpo_gemm_tn_acc(out, ldc, A, lda, Bm, ldb, M, N, K, scratch);
    double e = err_rel(out, want, (size_t)M * ldc, K);
    CHECK_MSG(e < 1e-6, "%s tn M %d N %d K %d: error %g", kernel ? "kernel" : "blas", M, N, K, e);
    free(A), free(Bm), free(out), free(want), free(scratch);
}

/* The causal products against emdpo_gemm_rows: scores at j <= i (the rest
 * of each row computed or left as it was), and probabilities times values
 * with A zero past the diagonal. */
static void check_causal(int M, int N, int K) {
    float *A = rnd((size_t)M * K), *w = rnd((size_t)N * K), *full = malloc((size_t)M * N * sizeof(float));
    float *got = malloc((size_t)M * N * sizeof(float)), *space = malloc(emdpo_gemm_rhs_floats(K, N) * sizeof(float));
    emdpo_gemm_rhs b;
    emdpo_gemm_rhs_init(&b, w, K, K, N, 1, space);
    emdpo_gemm_rhs_pack(&b, 0, emdpo_gemm_rhs_panels(&b));
    emdpo_gemm_rows(full, N, A, K, &b, M, 0.0f);
    for (size_t i = 0; i < (size_t)M * N; i++) got[i] = 12345.0f;
    emdpo_gemm_rows_causal(got, N, A, K, &b, M, 0);
    int ok = 1;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float g = got[(size_t)i * N + j], f = full[(size_t)i * N + j];
            ok &= j <= i ? g == f : g == f || g == 12345.0f;
        }
    CHECK_MSG(ok, "causal scores M %d N %d K %d", M, N, K);
    /* inner: A (M, K) lower triangular against B (K, N) */
    for (int i = 0; i < M; i++)
        for (int k = i + 1; k < K; k++) A[(size_t)i * K + k] = 0.0f;
    emdpo_gemm_rhs_init(&b, w, N, K, N, 0, space);
    emdpo_gemm_rhs_pack(&b, 0, emdpo_gemm_rhs_panels(&b));
    emdpo_gemm_rows(full, N, A, K, &b, M, 0.0f);
    emdpo_gemm_rows_causal(got, N, A, K, &b, M, 1);
    CHECK_MSG(memcmp(got, full, (size_t)M * N * sizeof(float)) == 0, "causal inner M %d N %d K %d", M, N, K);
    free(A), free(w), free(full), free(got), free(space);
}

static void run_all(int kernel) {
    /* register tiles of 8 rows and panels of 32 columns, with every kind of remainder */
    int Ms[] = {1, 7, 8, 9, 17}, Ns[] = {1, 16, 17, 32, 33, 70}, Ks[] = {1, 5, 64};
    for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++)
        for (size_t j = 0; j < sizeof Ns / sizeof *Ns; j++)
            for (size_t k = 0; k < sizeof Ks / sizeof *Ks; k++)
                for (int trans = 0; trans < 2; trans++) {
                    check_rows(Ms[i], Ns[j], Ks[k], trans, 0.0f, kernel);
                    check_rows(Ms[i], Ns[j], Ks[k], trans, 1.0f, kernel);
                }
    check_rows(300, 100, 257, 1, 1.0f, kernel);
    /* weight gradients: sums longer than a block of 256 rows, outputs taller
     * and wider than a block of 512, and small ones */
    check_tn(3, 5, 1, kernel);
    check_tn(9, 33, 700, kernel);
    check_tn(530, 40, 300, kernel);
    check_tn(20, 530, 260, kernel);
}

int main(void) {
    if (emdpo_gemm_kernel_active()) {
        run_all(1);
        check_causal(70, 70, 16);
        check_causal(9, 9, 3);
        check_causal(40, 40, 64);
    } else {
        printf("test_gemm: no AVX-512F here (or EMDPO_GEMM=blas): the kernel path is not tested\n");
    }
    setenv("EMDPO_GEMM", "blas", 1);
    CHECK(!emdpo_gemm_kernel_active());
    run_all(0);
    return check_report("test_gemm");
}
