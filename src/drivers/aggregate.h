/* MMRA-AE's result (emdpo/mmra.h's emdpo_aggregate), shared by the
 * log-linear and the Llama aggregation drivers. */
#ifndef EMDPO_AGGREGATE_H
#define EMDPO_AGGREGATE_H

#include <stdint.h>

#include "emdpo.h"

#define EMDPO_AGG_ROWS (EMDPO_MAX_K + 3)

struct emdpo_aggregate {
    emdpo_family family;
    int K, M;                  /* types; columns of L (M = K + 1 with a pooled policy) */
    double *L, *se;            /* (K, M); se NULL unless sampled */
    emdpo_regret_row rows[EMDPO_AGG_ROWS];
    int n_rows;
    emdpo_zerosum_result hedge, lp;
    int hedge_capped;
    double beta;
    int64_t n_dec, draws;
    int sampled;
    /* what aggregate.json records */
    char *fit, *data;          /* the fit and data paths as given */
    char **columns;            /* (M) Llama: the policies' names */
    emdpo_game_solver solver;
    int samples, max_tokens;
    double temperature;
    uint64_t seed;
};

/* An empty result for K types and M columns (L and, when sampled, se
 * allocated and zeroed). */
int emdpo_aggregate_alloc(emdpo_family family, int K, int M, int sampled, emdpo_aggregate **out);

/* The rows from L: MMRA-AE by the solver (Hedge run always, the LP as the
 * check or the answer), uniform, each type alone, and (M > K) the policy
 * of column K named pooled_name, with standard errors when sampled. */
int emdpo_aggregate_rows(emdpo_aggregate *a, const emdpo_mmra_hedge_opts *hedge, emdpo_game_solver solver,
                         const char *pooled_name);

/* max_regret of a row: the largest regret, at least 0 (the game's zero
 * row: the maximiser may pick no type). */
void emdpo_regret_row_finish(emdpo_regret_row *r, int K);

#endif
