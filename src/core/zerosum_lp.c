/* Exact zero-sum game solving by the simplex method.
 *
 * The game matrix is mapped affinely onto A = (R - min R) / range(R) + 1, so
 * every entry lies in [1, 2]: the game then has a value in [1, 2] and the
 * minimiser's problem becomes the textbook LP
 *     maximise 1^T u  subject to  A u <= 1, u >= 0,
 * with w = u / 1^T u and value 1 / 1^T u. Its slack basis is feasible from the
 * start (no phase one), the objective is bounded because A >= 1, and the dual
 * prices of the constraints are the maximiser's optimal p up to scale. The
 * fixed entry range also makes absolute tolerances meaningful. */
#include <math.h>
#include <stdint.h>

#include "base/alloc.h"
#include "emdpo.h"

/* Below this a reduced cost is not an improvement and a column entry is not
 * a pivot; far above rounding for entries and right-hand sides of order one. */
#define LP_EPS 1e-11

typedef struct tableau {
    int m, n;     /* constraints (game rows), structural variables (game cols) */
    size_t width; /* n structurals, m slacks, one right-hand side */
    double *t;    /* (m+1, width): constraint rows, then the reduced-cost row */
    int *basis;   /* (m) the variable basic in each constraint row */
} tableau;

void emdpo_zerosum_eval(const double *R, int rows, int cols, const double *w, const double *p,
                        emdpo_zerosum_result *res) {
    if (!R || !w || !p || !res || rows < 1 || cols < 1) return;
    double upper = -INFINITY, lower = INFINITY, value = 0.0;
    for (int i = 0; i < rows; i++) {
        double s = 0.0;
        for (int j = 0; j < cols; j++) s += R[(size_t)i * cols + j] * w[j];
        if (s > upper) upper = s;
        value += p[i] * s;
    }
    for (int j = 0; j < cols; j++) {
        double s = 0.0;
        for (int i = 0; i < rows; i++) s += R[(size_t)i * cols + j] * p[i];
        if (s < lower) lower = s;
    }
    res->value = value;
    res->upper = upper;
    res->lower = lower;
    res->gap = upper > lower ? upper - lower : 0.0;
}

/* Bland's rule: the lowest-numbered improving variable, -1 at the optimum. */
static int entering_column(const tableau *tb) {
    const double *cost = tb->t + (size_t)tb->m * tb->width;
    for (int j = 0; j < tb->n + tb->m; j++)
        if (cost[j] > LP_EPS) return j;
    return -1;
}

/* Minimum-ratio row for column c; near-ties go to the lowest-numbered basic
 * variable, which together with Bland's entering rule prevents cycling. */
static int leaving_row(const tableau *tb, int c) {
    int best = -1;
    double best_ratio = 0.0;
    for (int i = 0; i < tb->m; i++) {
        const double *row = tb->t + (size_t)i * tb->width;
        if (row[c] <= LP_EPS) continue;
        double ratio = row[tb->width - 1] / row[c];
        if (best < 0 || ratio < best_ratio - LP_EPS ||
            (ratio <= best_ratio + LP_EPS && tb->basis[i] < tb->basis[best])) {
            best = i;
            best_ratio = ratio;
        }
    }
    return best;
}

static void pivot(tableau *tb, int r, int c) {
    size_t wd = tb->width;
    double *prow = tb->t + (size_t)r * wd;
    double inv = 1.0 / prow[c];
    for (size_t k = 0; k < wd; k++) prow[k] *= inv;
    prow[c] = 1.0;
    for (int i = 0; i <= tb->m; i++) {
        if (i == r) continue;
        double *row = tb->t + (size_t)i * wd;
        double f = row[c];
        if (f == 0.0) continue;
        for (size_t k = 0; k < wd; k++) row[k] -= f * prow[k];
        row[c] = 0.0;
    }
    tb->basis[r] = c;
}

static void fill_tableau(tableau *tb, const double *R, double lo, double range) {
    int m = tb->m, n = tb->n;
    size_t wd = tb->width;
    for (int i = 0; i < m; i++) {
        double *row = tb->t + (size_t)i * wd;
        for (int j = 0; j < n; j++) row[j] = (R[(size_t)i * n + j] - lo) / range + 1.0;
        for (int k = 0; k < m; k++) row[n + k] = k == i ? 1.0 : 0.0;
        row[wd - 1] = 1.0;
        tb->basis[i] = n + i;
    }
    double *cost = tb->t + (size_t)m * wd;
    for (size_t k = 0; k < wd; k++) cost[k] = k < (size_t)n ? 1.0 : 0.0;
}

/* Strategies from the optimal tableau: the primal u and the dual prices,
 * clipped at zero against rounding and normalised onto the simplices. */
static void read_strategies(const tableau *tb, double *w, double *p) {
    int m = tb->m, n = tb->n;
    size_t wd = tb->width;
    for (int j = 0; j < n; j++) w[j] = 0.0;
    for (int i = 0; i < m; i++) {
        int v = tb->basis[i];
        double rhs = tb->t[(size_t)i * wd + wd - 1];
        if (v < n && rhs > 0.0) w[v] = rhs;
    }
    const double *cost = tb->t + (size_t)m * wd;
    for (int i = 0; i < m; i++) p[i] = -cost[n + i] > 0.0 ? -cost[n + i] : 0.0;
    double sw = 0.0, sp = 0.0;
    for (int j = 0; j < n; j++) sw += w[j];
    for (int i = 0; i < m; i++) sp += p[i];
    for (int j = 0; j < n; j++) w[j] /= sw;
    for (int i = 0; i < m; i++) p[i] /= sp;
}

static void uniform(double *v, int n) {
    for (int i = 0; i < n; i++) v[i] = 1.0 / n;
}

int emdpo_zerosum_lp(const double *R, int rows, int cols, double *w, double *p,
                     emdpo_zerosum_result *res) {
    if (rows < 1 || cols < 1) return EMDPO_ERR_INVALID_ARG;
    double lo = INFINITY, hi = -INFINITY;
    for (size_t k = 0; k < (size_t)rows * cols; k++) {
        if (!isfinite(R[k])) return EMDPO_ERR_INVALID_ARG;
        lo = fmin(lo, R[k]);
        hi = fmax(hi, R[k]);
    }
    double range = hi - lo;
    if (!isfinite(range)) return EMDPO_ERR_INVALID_ARG; /* cannot be rescaled */
    if (range == 0.0) { /* a constant game: every strategy is optimal */
        uniform(w, cols);
        uniform(p, rows);
        emdpo_zerosum_eval(R, rows, cols, w, p, res);
        res->iterations = 0;
        return EMDPO_OK;
    }
    tableau tb = {rows, cols, (size_t)rows + cols + 1, NULL, NULL};
    if ((size_t)rows + 1 > SIZE_MAX / sizeof(double) / tb.width) return EMDPO_ERR_LIMIT;
    size_t n_t = ((size_t)rows + 1) * tb.width;
    tb.t = emdpo_malloc(n_t * sizeof(double));
    tb.basis = emdpo_malloc((size_t)rows * sizeof(int));
    int rc = EMDPO_ERR_NOMEM;
    if (!tb.t || !tb.basis) goto done;
    fill_tableau(&tb, R, lo, range);
    /* Bland's rule terminates in exact arithmetic; the cap only guards
     * against rounding making it wander. */
    long cap = 1000 + 100L * (rows + cols), pivots = 0;
    int c;
    while ((c = entering_column(&tb)) >= 0) {
        int r = leaving_row(&tb, c);
        if (r < 0 || pivots == cap) {
            /* Unbounded is impossible with A >= 1, so this too is rounding. */
            rc = EMDPO_ERR_NOT_CONVERGED;
            goto done;
        }
        pivot(&tb, r, c);
        pivots++;
    }
    read_strategies(&tb, w, p);
    emdpo_zerosum_eval(R, rows, cols, w, p, res);
    res->iterations = pivots;
    rc = EMDPO_OK;
done:
    emdpo_free(tb.t, n_t * sizeof(double));
    emdpo_free(tb.basis, (size_t)rows * sizeof(int));
    return rc;
}
