/* Two-player zero-sum matrix games: min over w in Delta(cols) of max over
 * p in Delta(rows) of p^T R w. The minimiser picks a column mixture w, the
 * maximiser a row mixture p. The exact solver (a dense simplex method) is the
 * reference that iterative solvers such as optimistic Hedge are checked
 * against, and a solver in its own right for the small games MMRA-AE poses. */
#ifndef EMDPO_ZEROSUM_H
#define EMDPO_ZEROSUM_H

/* What a pair of mixed strategies certifies about the game. For any (w, p):
 * lower <= value of the game <= upper, so w is gap-optimal for the
 * minimiser and p is gap-optimal for the maximiser. */
typedef struct emdpo_zerosum_result {
    double value;    /* p^T R w; the game's value when both are optimal */
    double upper;    /* max_i (R w)_i: the worst case w can suffer */
    double lower;    /* min_j (R^T p)_j: the least p secures */
    double gap;      /* max(0, upper - lower) */
    long iterations; /* simplex pivots or Hedge rounds used */
} emdpo_zerosum_result;

/* Fills res->value, upper, lower and gap for the strategies w and p
 * (res->iterations untouched). */
void emdpo_zerosum_eval(const double *R, /* (rows, cols) row-major */
                        int rows, int cols,
                        const double *w, /* (cols) in the simplex */
                        const double *p, /* (rows) in the simplex */
                        emdpo_zerosum_result *res);

/* Solves the game exactly as a linear program (Bland's rule, so degenerate
 * games cannot cycle). Writes optimal w and p and the result; res->value is
 * the game's value. EMDPO_ERR_INVALID_ARG for rows or cols < 1 or a
 * non-finite entry; EMDPO_ERR_LIMIT when the tableau's size overflows;
 * EMDPO_ERR_NOT_CONVERGED if rounding stalls the pivots past a generous cap. */
int emdpo_zerosum_lp(const double *R, /* (rows, cols) row-major */
                     int rows, int cols,
                     double *w, /* out (cols) */
                     double *p, /* out (rows) */
                     emdpo_zerosum_result *res);

#endif
