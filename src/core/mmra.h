/* MMRA-AE (the paper's Algorithm 4): the min-max-regret mixture of K
 * per-type policies, found as the minimiser's strategy in a (K+1) x K
 * zero-sum game whose entries are the regrets of each policy for each type.
 *
 * Conventions. Regret matrix R: row 0 is the zero row (the maximiser may
 * decline to pick a type, which keeps the value >= 0), row k = 1..K is type
 * k-1, column k' is policy k'. L[z][z'] = E_{x, y ~ pi_z'}[r_z(x, y)] with
 * r_z = beta * log(pi_z / pi_ref), in reward units; R[k][k'] =
 * L[k-1][k-1] - L[k-1][k'] is the regret of policy k' for type k-1.
 *
 * Log-linear policies: type a has reward theta_a . psi(y) on the finite set C
 * of items shown in a decision, pi_ref is uniform on C and
 * pi_a(y | C) = softmax_C(theta_a . psi / beta). Expectations over prompts
 * weight every decision of the dataset equally. All sums over decisions run
 * in fixed blocks added in block order, so results are bitwise identical for
 * any OpenMP thread count. */
#ifndef EMDPO_MMRA_H
#define EMDPO_MMRA_H

#include "core/zerosum.h"
#include "data/data.h"

/* Optimistic Hedge for both players (Algorithm 4). */
typedef struct emdpo_mmra_hedge_opts {
    long max_iter;  /* rounds T >= 1 */
    double eta;     /* step size; <= 0 picks 1 / (max R - min R) (see mmra.c) */
    double rel_tol; /* stop once gap <= rel_tol * (max R - min R); < 0 always runs T rounds */
} emdpo_mmra_hedge_opts;

/* max_iter 100000, eta automatic, rel_tol 1e-4. */
void emdpo_mmra_hedge_defaults(emdpo_mmra_hedge_opts *o);

/* Runs optimistic Hedge from uniform starts and returns the averages w-bar
 * (cols) and p-bar (rows) of rounds 1..t, with their certificate in res.
 * EMDPO_ERR_INVALID_ARG for bad sizes, options or non-finite entries;
 * EMDPO_ERR_NOT_CONVERGED (outputs still filled) when rel_tol >= 0 and the
 * gap is above it after max_iter rounds; EMDPO_ERR_NUMERIC when an explicit
 * eta is so large that the weights overflow. o may be NULL for the defaults. */
int emdpo_mmra_hedge(const double *R, /* (rows, cols) row-major */
                     int rows, int cols, const emdpo_mmra_hedge_opts *o,
                     double *w, /* out (cols) */
                     double *p, /* out (rows) */
                     emdpo_zerosum_result *res);

/* Builds the regret matrix R from L; K >= 1. */
void emdpo_mmra_regret_matrix(int K, const double *L, /* (K, K) */
                              double *R /* out (K+1, K) */);

/* Regret of the mixture sum_b w_b pi_b for each type:
 * regret[a] = sum_b w[b] (L[a][a] - L[a][b]). Accepts L or V (below): the
 * difference is constant along rows. */
void emdpo_mmra_mixture_regret(int K, const double *L, /* (K, K) */
                               const double *w,        /* (K) */
                               double *regret /* out (K) */);

typedef enum emdpo_game_solver {
    EMDPO_GAME_HEDGE = 0, /* optimistic Hedge, as in the paper */
    EMDPO_GAME_LP = 1     /* exact simplex solution */
} emdpo_game_solver;

/* MMRA-AE end to end: regret matrix from L, then the game. w gets the
 * mixture weights; res->upper is the mixture's worst-case regret. Statuses as
 * for emdpo_mmra_hedge and emdpo_zerosum_lp, plus EMDPO_ERR_NOMEM. o is used
 * by EMDPO_GAME_HEDGE only and may be NULL. */
int emdpo_mmra_ae(int K, const double *L, /* (K, K) */
                  emdpo_game_solver solver, const emdpo_mmra_hedge_opts *o,
                  double *w, /* out (K) */
                  emdpo_zerosum_result *res);

/* Exact cross rewards of M log-linear policies on the decisions of d:
 * V[a][b] = mean over decisions of sum_{y in C} pi_b(y|C) theta_a . psi_y,
 * and, when norm is not NULL, norm[a] = mean over decisions of
 * beta * logsumexp_C(theta_a . psi / beta) - beta * log|C|, so that
 * L[a][b] = V[a][b] - norm[a]. EMDPO_ERR_INVALID_ARG for M < 1 or beta not
 * positive and finite; EMDPO_ERR_UNSUPPORTED when d has no features;
 * EMDPO_ERR_NUMERIC when a result is not finite; EMDPO_ERR_LIMIT when the
 * scratch size overflows; EMDPO_ERR_NOMEM. */
int emdpo_mmra_loglin_cross(const emdpo_data *d, const double *theta, /* (M, d->p) */
                            int M, double beta,
                            double *V,    /* out (M, M) */
                            double *norm /* out (M) or NULL */);

/* L for K log-linear types, ready for emdpo_mmra_regret_matrix.
 * Statuses as emdpo_mmra_loglin_cross. */
int emdpo_mmra_loglin_L(const emdpo_data *d, const double *theta, /* (K, d->p) */
                        int K, double beta, double *L /* out (K, K) */);

/* Regret of one more log-linear policy pi (e.g. the pooled K = 1 fit, i.e.
 * vanilla DPO) for each of the K types: regret[a] = E_{pi_a}[r_a] - E_pi[r_a].
 * Statuses as emdpo_mmra_loglin_cross. */
int emdpo_mmra_loglin_regret(const emdpo_data *d, const double *theta, /* (K, d->p) */
                             int K, double beta, const double *theta_pi, /* (d->p) */
                             double *regret /* out (K) */);

#endif
