/* MMRA-AE's game (emdpo/mmra.h): optimistic Hedge for both players, the
 * regret matrix and the mixture regrets. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/threads.h"
#include "emdpo.h"

/* Default step: eta = HEDGE_ETA_SCALE / h with h = (max R - min R) / 2, the
 * largest entry of R after the shift that Hedge cannot see (adding a
 * constant to every payoff leaves both players' updates unchanged). By the
 * RVU bound for optimistic Hedge (Rakhlin-Sridharan 2013; Syrgkanis et al.
 * 2015) the players' summed regret stays at most (log rows + log cols) / eta
 * whenever eta * h <= 1/2, so 1/2 is the largest constant step that keeps
 * the O(1/T) gap guarantee: gap <= 2 h (log rows + log cols) / T. */
#define HEDGE_ETA_SCALE 0.5


void emdpo_mmra_hedge_opts_init(emdpo_mmra_hedge_opts *o) {
    if (!o) return;
    o->max_iter = 100000;
    o->eta = 0.0;
    o->rel_tol = 1e-4;
}

static void uniform(double *v, int n) {
    for (int i = 0; i < n; i++) v[i] = 1.0 / n;
}

static void mat_vec(const double *R, int rows, int cols, const double *v, double *y) {
    for (int i = 0; i < rows; i++) {
        double s = 0.0;
        for (int j = 0; j < cols; j++) s += R[(size_t)i * cols + j] * v[j];
        y[i] = s;
    }
}

static void mat_tvec(const double *R, int rows, int cols, const double *v, double *y) {
    for (int j = 0; j < cols; j++) y[j] = 0.0;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) y[j] += R[(size_t)i * cols + j] * v[i];
}

/* One optimistic multiplicative-weights step kept in log space:
 * lw += step * (2 g1 - g2), v = softmax(lw). Re-centring lw on its maximum
 * keeps it bounded however long the run. */
static void hedge_step(double *lw, double *v, int n, double step, const double *g1, const double *g2) {
    double mx = -INFINITY, z = 0.0;
    for (int i = 0; i < n; i++) {
        lw[i] += step * (2.0 * g1[i] - g2[i]);
        mx = fmax(mx, lw[i]);
    }
    for (int i = 0; i < n; i++) {
        lw[i] -= mx;
        v[i] = exp(lw[i]);
        z += v[i];
    }
    for (int i = 0; i < n; i++) v[i] /= z;
}

static double vec_max(const double *v, int n) {
    double m = v[0];
    for (int i = 1; i < n; i++) m = fmax(m, v[i]);
    return m;
}

static double vec_min(const double *v, int n) {
    double m = v[0];
    for (int i = 1; i < n; i++) m = fmin(m, v[i]);
    return m;
}

static int all_finite(const double *v, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

static void scaled(const double *sum, int n, double inv, double *out) {
    for (int i = 0; i < n; i++) out[i] = sum[i] * inv;
}

/* Range of the entries; INVALID_ARG when one is not finite or the range overflows. */
static int entry_range(const double *R, size_t n, double *range) {
    double lo = INFINITY, hi = -INFINITY;
    for (size_t k = 0; k < n; k++) {
        if (!isfinite(R[k])) return EMDPO_ERR_INVALID_ARG;
        lo = fmin(lo, R[k]);
        hi = fmax(hi, R[k]);
    }
    *range = hi - lo;
    return isfinite(*range) ? EMDPO_OK : EMDPO_ERR_INVALID_ARG;
}

/* Scratch for one Hedge player: log-weights, current strategy, the last two
 * payoff vectors, and running sums of strategies and of payoffs. */
typedef struct hedge_player {
    double *lw, *x, *g1, *g2, *sum_x, *sum_g;
} hedge_player;

static void player_init(hedge_player *pl, double *mem, int n) {
    pl->lw = mem;
    pl->x = mem + n;
    pl->g1 = mem + 2 * (size_t)n;
    pl->g2 = mem + 3 * (size_t)n;
    pl->sum_x = mem + 4 * (size_t)n;
    pl->sum_g = mem + 5 * (size_t)n;
    memset(mem, 0, 6 * (size_t)n * sizeof(double));
    uniform(pl->x, n);
}

/* Adds the round's strategy and payoff to the running sums: their averages
 * are the returned strategy and, by linearity, its payoff vector. */
static void player_record(hedge_player *pl, int n) {
    for (int i = 0; i < n; i++) {
        pl->sum_x[i] += pl->x[i];
        pl->sum_g[i] += pl->g1[i];
    }
}

static void swap_payoffs(hedge_player *pl) {
    double *t = pl->g1;
    pl->g1 = pl->g2;
    pl->g2 = t;
}

int emdpo_mmra_hedge(const double *R, int rows, int cols, const emdpo_mmra_hedge_opts *o, double *w,
                     double *p, emdpo_zerosum_result *res) {
    emdpo_mmra_hedge_opts def;
    if (!o) {
        emdpo_mmra_hedge_opts_init(&def);
        o = &def;
    }
    if (rows < 1 || cols < 1 || o->max_iter < 1 || !isfinite(o->eta) || isnan(o->rel_tol))
        return EMDPO_ERR_INVALID_ARG;
    double range;
    int rc = entry_range(R, (size_t)rows * cols, &range);
    if (rc) return rc;
    if (range == 0.0) { /* a constant game: every strategy is optimal */
        uniform(w, cols);
        uniform(p, rows);
        emdpo_zerosum_eval(R, rows, cols, w, p, res);
        res->iterations = 0;
        return EMDPO_OK;
    }
    size_t n_mem = 6 * ((size_t)rows + cols);
    double *mem = emdpo_malloc(n_mem * sizeof(double));
    if (!mem) return EMDPO_ERR_NOMEM;
    hedge_player mn, mx; /* the minimiser plays w (cols), the maximiser p (rows) */
    player_init(&mn, mem, cols);
    player_init(&mx, mem + 6 * (size_t)cols, rows);
    double eta = o->eta > 0.0 ? o->eta : HEDGE_ETA_SCALE / (0.5 * range);
    double tol = o->rel_tol * range;
    /* Before round 1 both past payoffs are those of the uniform starts. */
    mat_tvec(R, rows, cols, mx.x, mn.g1);
    memcpy(mn.g2, mn.g1, (size_t)cols * sizeof(double));
    mat_vec(R, rows, cols, mn.x, mx.g1);
    memcpy(mx.g2, mx.g1, (size_t)rows * sizeof(double));
    long t = 0;
    while (t < o->max_iter) {
        t++;
        hedge_step(mn.lw, mn.x, cols, -eta, mn.g1, mn.g2);
        hedge_step(mx.lw, mx.x, rows, eta, mx.g1, mx.g2);
        swap_payoffs(&mn);
        swap_payoffs(&mx);
        mat_tvec(R, rows, cols, mx.x, mn.g1);
        mat_vec(R, rows, cols, mn.x, mx.g1);
        player_record(&mn, cols);
        player_record(&mx, rows);
        /* By linearity the summed payoffs give the averages' gap for free;
         * confirm it exactly before stopping, since the sums carry rounding. */
        if (tol >= 0.0 && vec_max(mx.sum_g, rows) - vec_min(mn.sum_g, cols) <= tol * (double)t) {
            scaled(mn.sum_x, cols, 1.0 / (double)t, w);
            scaled(mx.sum_x, rows, 1.0 / (double)t, p);
            emdpo_zerosum_eval(R, rows, cols, w, p, res);
            if (res->gap <= tol) break;
        }
    }
    scaled(mn.sum_x, cols, 1.0 / (double)t, w);
    scaled(mx.sum_x, rows, 1.0 / (double)t, p);
    emdpo_zerosum_eval(R, rows, cols, w, p, res);
    res->iterations = t;
    emdpo_free(mem, n_mem * sizeof(double));
    if (!all_finite(w, cols) || !all_finite(p, rows)) return EMDPO_ERR_NUMERIC; /* eta overflowed */
    return tol >= 0.0 && res->gap > tol ? EMDPO_ERR_NOT_CONVERGED : EMDPO_OK;
}

void emdpo_mmra_regret_matrix(int K, const double *L, double *R) {
    for (int j = 0; j < K; j++) R[j] = 0.0;
    for (int k = 0; k < K; k++)
        for (int j = 0; j < K; j++)
            R[(size_t)(k + 1) * K + j] = L[(size_t)k * K + k] - L[(size_t)k * K + j];
}

void emdpo_mmra_mixture_regret(int K, const double *L, const double *w, double *regret) {
    for (int a = 0; a < K; a++) {
        double s = 0.0;
        for (int b = 0; b < K; b++) s += w[b] * (L[(size_t)a * K + a] - L[(size_t)a * K + b]);
        regret[a] = s;
    }
}

int emdpo_mmra_ae(int K, const double *L, emdpo_game_solver solver, const emdpo_mmra_hedge_opts *o,
                  double *w, emdpo_zerosum_result *res) {
    if (K < 1 || (solver != EMDPO_GAME_HEDGE && solver != EMDPO_GAME_LP)) return EMDPO_ERR_INVALID_ARG;
    size_t n_r = ((size_t)K + 1) * K;
    double *R = emdpo_malloc(n_r * sizeof(double));
    double *p = emdpo_malloc(((size_t)K + 1) * sizeof(double));
    int rc = EMDPO_ERR_NOMEM;
    if (R && p) {
        emdpo_mmra_regret_matrix(K, L, R);
        rc = solver == EMDPO_GAME_LP ? emdpo_zerosum_lp(R, K + 1, K, w, p, res)
                                     : emdpo_mmra_hedge(R, K + 1, K, o, w, p, res);
    }
    emdpo_free(R, n_r * sizeof(double));
    emdpo_free(p, ((size_t)K + 1) * sizeof(double));
    return rc;
}

int emdpo_mmra_ae_regrets(const double *R, int rows, int K, emdpo_game_solver solver, const emdpo_mmra_hedge_opts *o,
                          emdpo_regrets_result *res, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (K < 1 || K > EMDPO_MAX_K || (rows != K && rows != K + 1) || !R || !res ||
        (solver != EMDPO_GAME_HEDGE && solver != EMDPO_GAME_LP))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "a %d x %d regret matrix: expected K x K or (K+1) x K with "
                               "K in 1..%d", rows, K, EMDPO_MAX_K);
    for (int q = 0; q < rows * K; q++) {
        if (!isfinite(R[q]))
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "regret[%d][%d] is not finite", q / K, q % K);
        if (rows == K + 1 && q < K && R[q] != 0.0)
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "row 0 of a (K+1) x K regret matrix must be zero, "
                                   "not %g in column %d", R[q], q);
    }
    memset(res, 0, sizeof *res);
    res->K = K;
    res->rows = rows;
    res->solver = solver;
    /* the game's form: the zero row first (a type may be left unserved) */
    double G[(EMDPO_MAX_K + 1) * EMDPO_MAX_K], p[EMDPO_MAX_K + 1];
    int off = rows == K ? K : 0;
    memset(G, 0, (size_t)off * sizeof(double));
    memcpy(G + off, R, (size_t)rows * K * sizeof(double));
    int rc = solver == EMDPO_GAME_LP ? emdpo_zerosum_lp(G, K + 1, K, res->w, p, &res->game)
                                     : emdpo_mmra_hedge(G, K + 1, K, o, res->w, p, &res->game);
    if (rc == EMDPO_ERR_NOT_CONVERGED && solver == EMDPO_GAME_HEDGE) res->hedge_capped = 1, rc = EMDPO_OK;
    if (rc) return emdpo_diag_fail(diag, rc, "%s: %s", emdpo_game_solver_name(solver), emdpo_status_name(rc));
    for (int k = 0; k < K; k++) {
        res->regret[k] = 0.0;
        for (int b = 0; b < K; b++) res->regret[k] += G[(k + 1) * K + b] * res->w[b];
    }
    if ((rc = emdpo_zerosum_lp(G, K + 1, K, res->lp_w, p, &res->lp)))
        return emdpo_diag_fail(diag, rc, "the exact LP: %s", emdpo_status_name(rc));
    return EMDPO_OK;
}

const char *emdpo_game_solver_name(int s) {
    switch (s) {
    case EMDPO_GAME_HEDGE: return "hedge";
    case EMDPO_GAME_LP: return "lp";
    default: return NULL;
    }
}
