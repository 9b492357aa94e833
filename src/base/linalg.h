/* Small dense linear algebra for p x p systems (p is the number of features
 * or parameters: tens, not thousands). Row-major. */
#ifndef EMDPO_LINALG_H
#define EMDPO_LINALG_H

/* In-place Cholesky A = L L^T of a symmetric positive definite A (n, n);
 * L lands in the lower triangle. Returns 0, or -1 when A is not
 * numerically positive definite. */
int emdpo_cholesky(double *A, int n);
/* Solves L L^T x = b in place (b becomes x), with L from emdpo_cholesky. */
void emdpo_cholesky_solve(const double *L, int n, double *b);
/* Inverse of an SPD matrix given its Cholesky factor: inv (n, n). */
void emdpo_cholesky_inverse(const double *L, int n, double *inv);

#endif
