#include "base/linalg.h"

#include <math.h>
#include <stddef.h>

int emdpo_cholesky(double *A, int n) {
    double scale = 0.0;
    for (int i = 0; i < n; i++) scale = fmax(scale, fabs(A[i * n + i]));
    /* A pivot this small relative to the diagonal means rank deficiency. */
    double floor_ = 1e-13 * (scale > 0 ? scale : 1.0);
    for (int j = 0; j < n; j++) {
        double s = A[j * n + j];
        for (int q = 0; q < j; q++) s -= A[j * n + q] * A[j * n + q];
        if (!(s > floor_)) return -1;
        double ljj = sqrt(s);
        A[j * n + j] = ljj;
        for (int i = j + 1; i < n; i++) {
            double t = A[i * n + j];
            for (int q = 0; q < j; q++) t -= A[i * n + q] * A[j * n + q];
            A[i * n + j] = t / ljj;
        }
    }
    return 0;
}

void emdpo_cholesky_solve(const double *L, int n, double *b) {
    for (int i = 0; i < n; i++) {
        double s = b[i];
        for (int q = 0; q < i; q++) s -= L[i * n + q] * b[q];
        b[i] = s / L[i * n + i];
    }
    for (int i = n - 1; i >= 0; i--) {
        double s = b[i];
        for (int q = i + 1; q < n; q++) s -= L[q * n + i] * b[q];
        b[i] = s / L[i * n + i];
    }
}

void emdpo_cholesky_inverse(const double *L, int n, double *inv) {
    for (int c = 0; c < n; c++) {
        double *col = inv + (size_t)c * n; /* row c of the symmetric inverse */
        for (int i = 0; i < n; i++) col[i] = i == c;
        emdpo_cholesky_solve(L, n, col);
    }
}
