/* MMRA: one policy, or a mixture of the K type policies, with the smallest
 * worst-case regret over the types (the paper's Algorithms 2-4), and each
 * type's regret under any policy (its Table 3).
 *
 * Conventions. L[z][b] = E_{x, y ~ pi_b}[r_z(x, y)], r_z = beta log(pi_z /
 * pi_ref), in reward units: rows are the types whose rewards are measured,
 * columns the policies that generate. The regret of policy b for type z is
 * R_z(b) = L[z][z] - L[z][b]. MMRA-AE solves the (K+1) x K zero-sum game
 * whose row 0 is zero (the maximiser may decline to pick a type, keeping
 * the value >= 0) and whose row k is type k-1's regrets.
 *
 * The game's functions work on arrays and need nothing else; the rest
 * takes a fit (emdpo/em.h) and its data. */
#ifndef EMDPO_PUBLIC_MMRA_H
#define EMDPO_PUBLIC_MMRA_H

#include <stdio.h>

#include "emdpo/common.h"
#include "emdpo/data.h"
#include "emdpo/em.h"
#include "emdpo/lm.h" /* emdpo_lora_config */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Two-player zero-sum games ------------------------------------------- */

/* What a pair of mixed strategies certifies: for any w (the minimiser's
 * column mixture) and p (the maximiser's row mixture), lower <= the game's
 * value <= upper. */
typedef struct emdpo_zerosum_result {
    double value;    /* p^T R w; the game's value when both are optimal */
    double upper;    /* max_i (R w)_i: the worst case w can suffer */
    double lower;    /* min_j (R^T p)_j: the least p secures */
    double gap;      /* max(0, upper - lower) */
    long iterations; /* simplex pivots or Hedge rounds used */
} emdpo_zerosum_result;

/* Fills res (iterations untouched) for strategies w (cols) and p (rows) of
 * the game R (rows, cols), row-major. */
EMDPO_API void emdpo_zerosum_eval(const double *R, int rows, int cols, const double *w, const double *p,
                                  emdpo_zerosum_result *res);
/* Solves the game exactly as a linear program (a dense simplex with
 * Bland's rule): optimal w (cols) and p (rows). EMDPO_ERR_INVALID_ARG for
 * rows or cols < 1 or a non-finite entry, EMDPO_ERR_LIMIT when the
 * tableau's size overflows, EMDPO_ERR_NOT_CONVERGED if rounding stalls the
 * pivots past a generous cap. */
EMDPO_API int emdpo_zerosum_lp(const double *R, int rows, int cols, double *w, double *p,
                               emdpo_zerosum_result *res);

/* Optimistic Hedge for both players (Algorithm 4). */
typedef struct emdpo_mmra_hedge_opts {
    long max_iter;  /* rounds T >= 1 */
    double eta;     /* step size; <= 0 picks the largest step the O(1/T) gap bound allows */
    double rel_tol; /* stop once gap <= rel_tol * (max R - min R); < 0 always runs T rounds */
} emdpo_mmra_hedge_opts;

/* max_iter 100000, eta automatic, rel_tol 1e-4. */
EMDPO_API void emdpo_mmra_hedge_opts_init(emdpo_mmra_hedge_opts *o);

/* Optimistic Hedge from uniform starts: the averages of rounds 1..t into w
 * (cols) and p (rows), with their certificate. EMDPO_ERR_INVALID_ARG for
 * bad sizes, options or non-finite entries; EMDPO_ERR_NOT_CONVERGED (the
 * outputs still filled) when rel_tol >= 0 and the gap is above it after
 * max_iter rounds; EMDPO_ERR_NUMERIC when an explicit eta is so large that
 * the weights overflow. o may be NULL for the defaults. */
EMDPO_API int emdpo_mmra_hedge(const double *R, int rows, int cols, const emdpo_mmra_hedge_opts *o, double *w,
                               double *p, emdpo_zerosum_result *res);

/* The regret matrix R (K+1, K) from L (K, K); K >= 1. */
EMDPO_API void emdpo_mmra_regret_matrix(int K, const double *L, double *R);
/* Each type's regret under the mixture sum_b w_b pi_b of the K types:
 * regret[a] = sum_b w[b] (L[a][a] - L[a][b]). L (K, K), w and regret (K). */
EMDPO_API void emdpo_mmra_mixture_regret(int K, const double *L, const double *w, double *regret);

typedef enum emdpo_game_solver {
    EMDPO_GAME_HEDGE = 0, /* optimistic Hedge, as in the paper */
    EMDPO_GAME_LP = 1     /* the exact simplex solution */
} emdpo_game_solver;

/* "hedge", "lp"; NULL out of range. */
EMDPO_API const char *emdpo_game_solver_name(int s);

/* MMRA-AE from L (K, K): the regret matrix, then the game. w (K) gets the
 * mixture; res->upper is its worst-case regret. Statuses of
 * emdpo_mmra_hedge and emdpo_zerosum_lp, EMDPO_ERR_NOMEM. o is for Hedge
 * only and may be NULL. */
EMDPO_API int emdpo_mmra_ae(int K, const double *L, emdpo_game_solver solver, const emdpo_mmra_hedge_opts *o,
                            double *w, emdpo_zerosum_result *res);

/* MMRA-AE on a regret matrix computed elsewhere (emdpo_mmra_ae_regrets). */
typedef struct emdpo_regrets_result {
    int K, rows;                  /* the matrix given: rows K or K + 1 */
    emdpo_game_solver solver;
    double w[EMDPO_MAX_K];        /* the solver's mixture over the K policies */
    double regret[EMDPO_MAX_K];   /* each type's regret under w: (R w)_k */
    emdpo_zerosum_result game;    /* its certificate: game.upper the max regret at w, game.gap the duality gap */
    int hedge_capped;             /* Hedge stopped at its round cap above its tolerance */
    double lp_w[EMDPO_MAX_K];     /* the exact LP's mixture */
    emdpo_zerosum_result lp;      /* and certificate: lp.value the game's value (min-max regret) */
} emdpo_regrets_result;

/* R (rows, K) row-major: rows are the types whose regrets are measured,
 * columns the K policies, R[k][k'] = L[k][k] - L[k][k']. rows = K + 1 with
 * row 0 all zeros (the game's form), or rows = K and the zero row is
 * added. The game is solved by solver and, as a check, by the exact LP.
 * EMDPO_ERR_INVALID_ARG (diag) for K outside 1..EMDPO_MAX_K, rows other
 * than K or K + 1, a non-zero row 0, a non-finite entry or bad options;
 * the LP's errors; EMDPO_ERR_NOMEM. Hedge stopping at its cap above its
 * tolerance is not an error (res->hedge_capped). o (Hedge's) may be NULL. */
EMDPO_API int emdpo_mmra_ae_regrets(const double *R, int rows, int K, emdpo_game_solver solver,
                                    const emdpo_mmra_hedge_opts *o, emdpo_regrets_result *res, emdpo_diag *diag);
/* The result as JSON ({k, solver, w, regret, max_regret, duality_gap,
 * iterations, hedge_capped, lp_value, lp_w, regrets: source}); and the same
 * written atomically to dir/aggregate.json (dir created when missing).
 * source (may be NULL) names the matrix's file. */
EMDPO_API int emdpo_regrets_result_write_json(const emdpo_regrets_result *res, const char *source, FILE *fp);
EMDPO_API int emdpo_regrets_result_save(const emdpo_regrets_result *res, const char *source, const char *dir,
                                        emdpo_diag *diag);
/* Reads a regret matrix for emdpo_mmra_ae_regrets: JSON (an array of rows,
 * each an array of K numbers, or an object whose "regrets" is one) or CSV
 * (rows of K numbers, an optional header of names first). R needs room for
 * (EMDPO_MAX_K + 1) * EMDPO_MAX_K values; *rows and *K are what was read
 * (rows K or K + 1 are emdpo_mmra_ae_regrets' to check). EMDPO_ERR_PARSE
 * (diag: file, line, what), EMDPO_ERR_IO, EMDPO_ERR_LIMIT (more than
 * EMDPO_MAX_K + 1 rows or EMDPO_MAX_K columns), EMDPO_ERR_NOMEM. */
EMDPO_API int emdpo_regrets_read(const char *path, double *R, int *rows, int *K, emdpo_diag *diag);

/* ---- Aggregation results ------------------------------------------------- */

/* One compared policy: its weights over the K types (MMRA-AE, uniform,
 * each type alone) or none (a separate pooled policy), each type's regret
 * with its standard error (sampled estimates; NaN otherwise), and the max
 * over types: in an aggregation at least 0 (the game's zero row: a type
 * may be left unserved at no cost), in emdpo_regret's table as estimated
 * (a sampled or option-set regret can be negative). */
typedef struct emdpo_regret_row {
    char name[64];
    int has_w;
    double w[EMDPO_MAX_K];
    double regret[EMDPO_MAX_K];
    double se[EMDPO_MAX_K];
    double max_regret;
} emdpo_regret_row;

/* MMRA-AE over a fit: the rows MMRA-AE, uniform, "type k only" for every k
 * and the pooled policy when there is one, with the game's certificates. */
typedef struct emdpo_aggregate emdpo_aggregate;

EMDPO_API void emdpo_aggregate_free(emdpo_aggregate *a);
EMDPO_API int emdpo_aggregate_k(const emdpo_aggregate *a);
EMDPO_API int emdpo_aggregate_n_rows(const emdpo_aggregate *a);
EMDPO_API const emdpo_regret_row *emdpo_aggregate_row(const emdpo_aggregate *a, int r);
/* Hedge's certificate and the exact LP's. */
EMDPO_API void emdpo_aggregate_games(const emdpo_aggregate *a, emdpo_zerosum_result *hedge, emdpo_zerosum_result *lp);
/* Decisions averaged over; 1 when L was sampled, and then the draws per
 * policy. */
EMDPO_API int64_t emdpo_aggregate_n_decisions(const emdpo_aggregate *a);
EMDPO_API int emdpo_aggregate_sampled(const emdpo_aggregate *a);
EMDPO_API int64_t emdpo_aggregate_draws(const emdpo_aggregate *a);
/* 1 when Hedge stopped at its round cap above its tolerance. */
EMDPO_API int emdpo_aggregate_hedge_capped(const emdpo_aggregate *a);
/* The beta the regrets are in. */
EMDPO_API double emdpo_aggregate_beta(const emdpo_aggregate *a);
/* aggregate.json. */
EMDPO_API int emdpo_aggregate_write_json(const emdpo_aggregate *a, FILE *fp);
/* dir/aggregate.json, written atomically (dir is created when missing). */
EMDPO_API int emdpo_aggregate_save(const emdpo_aggregate *a, const char *dir, emdpo_diag *diag);

/* ---- MMRA-AE over a log-linear fit ---------------------------------------- */

typedef struct emdpo_aggregate_opts {
    emdpo_game_solver solver;    /* the weights returned; the other solver is run as a check */
    emdpo_mmra_hedge_opts hedge;
    double beta;                 /* <= 0: the fit's */
    uint64_t seed;               /* the pooled K = 1 fit's */
} emdpo_aggregate_opts;

/* HEDGE with emdpo_mmra_hedge_opts_init's settings, the fit's beta, seed 1. */
EMDPO_API void emdpo_aggregate_opts_init(emdpo_aggregate_opts *o);

/* L exact over each decision of d (emdpo_fit_cross_rewards), the game,
 * and for comparison the uniform mixture, each type alone and the pooled
 * single policy (a K = 1 fit on d: vanilla DPO). fit is a log-linear fit
 * with theta (made or read); d must have its features.
 * EMDPO_ERR_INVALID_ARG (diag) otherwise. */
EMDPO_API int emdpo_loglinear_aggregate(const emdpo_fit *fit, const emdpo_data *d, const emdpo_aggregate_opts *o,
                                        emdpo_aggregate **out, emdpo_diag *diag);

/* ---- MMRA over a fit of Llama policies ------------------------------------ */

typedef enum emdpo_mmra_method {
    EMDPO_MMRA_AE = 0,      /* Algorithm 4: the min-max mixture of the types */
    EMDPO_MMRA_LW = 1,      /* Algorithm 2: one policy by DPO weighted sum_k w_k gamma_ik */
    EMDPO_MMRA_ONPOLICY = 2 /* Algorithm 3: one policy by policy gradient on its own responses */
} emdpo_mmra_method;

typedef enum emdpo_regret_estimator {
    EMDPO_ESTIMATOR_EXACT = 0, /* over each decision's items: pi(y | C) = softmax over C of log pi(y|x) */
    EMDPO_ESTIMATOR_SAMPLE = 1 /* over responses generated by each policy, with standard errors */
} emdpo_regret_estimator;

typedef enum emdpo_lw_select {
    EMDPO_LW_BEST = 0, /* the round with the smallest max regret */
    EMDPO_LW_LAST = 1  /* the last round */
} emdpo_lw_select;

/* "ae", "lw", "onpolicy"; "exact", "sample"; "best", "last". NULL out of
 * range. */
EMDPO_API const char *emdpo_mmra_method_name(int m);
EMDPO_API const char *emdpo_regret_estimator_name(int e);
EMDPO_API const char *emdpo_lw_select_name(int s);

typedef struct emdpo_mmra_round {
    int round;                     /* 1..T; 0 for the start (the SFT model) */
    double w[EMDPO_MAX_K];         /* the type weights the round trained with */
    double regret[EMDPO_MAX_K];    /* R_k of the round's policy */
    double regret_se[EMDPO_MAX_K]; /* standard errors of sampled regrets; NaN otherwise */
    double max_regret;
    double loss;                   /* the round's mean training objective; NaN for the start */
    double kl;                     /* on-policy: mean KL(pi || pi_ref) estimate; NaN otherwise */
} emdpo_mmra_round;

typedef void (*emdpo_mmra_progress)(void *ud, const emdpo_mmra_round *r, int K);

/* Settings of MMRA over a Llama fit. Fields marked "fit" default to the
 * fit's M-step when left at their init value. */
typedef struct emdpo_lm_aggregate_opts {
    emdpo_mmra_method method;
    const char *data;                 /* decisions giving prompts and option sets; NULL: the fit's data */
    const char *out;                  /* ae: aggregate.json, mixture.json (NULL: the fit's directory); lw,
                                         onpolicy: aggregate.json, policy/ (NULL: FIT/mmra_METHOD) */
    emdpo_regret_estimator estimator; /* -1: ae and lw exact, onpolicy sample */
    int samples;                      /* sample: responses per prompt and policy; onpolicy: also per
                                         prompt in a step, >= 2 */
    int max_tokens;                   /* sample: new tokens per response */
    double temperature;               /* sample (ae, lw): 1 samples the policies themselves */
    int64_t max_prompts;              /* sample, onpolicy: the first N decisions' prompts; 0: all */
    uint64_t seed;                    /* generation, and shuffling for lw and onpolicy */
    int score_batch;                  /* sequences per scoring forward */
    /* ae */
    const char *pooled;               /* also compare this checkpoint; NULL: none */
    emdpo_game_solver solver;
    /* lw, onpolicy */
    int rounds;
    double eta;                       /* multiplicative-weights rate */
    int64_t steps;                    /* optimizer steps per round; 0: lw 10, onpolicy 1 */
    int optimizer;                    /* an emdpo_optim_kind; -1: the fit's */
    double lr;                        /* < 0: the fit's */
    int64_t warmup;
    double clip;                      /* < 0: the fit's */
    int batch;                        /* lw: decisions per micro-batch; onpolicy: prompts per step; 0: lw the
                                         fit's, onpolicy 4 */
    emdpo_lw_select select;           /* lw */
    int eval_samples;                 /* onpolicy: responses per prompt for V_k and the regrets; 0: samples */
    int save_dtype;                   /* an emdpo_dtype: lw, onpolicy: policy/'s weights; AUTO: the SFT
                                         model's */
    emdpo_mmra_progress progress;     /* lw, onpolicy: after the start and every round; may be NULL */
    void *progress_ud;
    emdpo_lora_config lora;           /* lw, onpolicy: lora.r > 0 trains a LoRA adapter of this shape on the
                                         fit's SFT model, which stays frozen and is the reference; policy/
                                         then holds PEFT's adapter_config.json and adapter_model.safetensors.
                                         0: the whole model */
    int grad_checkpoint;              /* lw, onpolicy: activation checkpointing in training
                                         (emdpo_train_config's) */
} emdpo_lm_aggregate_opts;

/* AE; the fit's data and default output; the method's estimator; samples
 * 4, max_tokens 64, temperature 1, all prompts, seed 1, score_batch 16;
 * HEDGE; rounds 5, eta 1, the method's steps, the fit's optimizer,
 * learning rate, clipping and batch, no warmup; BEST; eval_samples as
 * samples; no adapter (lora: emdpo_lora_config_init's with r 0). */
EMDPO_API void emdpo_lm_aggregate_opts_init(emdpo_lm_aggregate_opts *o);

typedef struct emdpo_lm_aggregate emdpo_lm_aggregate;

/* Loads what the method needs (the fit's SFT model, tokenizer and types,
 * the pooled policy, the data, for lw the posterior) and checks the
 * options against it. fit is a Llama fit read from its directory.
 * EMDPO_ERR_INVALID_ARG (diag) for options out of range, or set away from
 * their init value for a method they do not apply to (pooled and solver
 * apply to ae; rounds, eta, steps, lr, batch, optimizer, warmup and clip to
 * lw and onpolicy; select to lw; eval_samples to onpolicy; temperature to
 * ae and lw); EMDPO_ERR_PARSE (diag) for a fit.json that lacks what MMRA
 * needs; errors of the loaders with diag. */
EMDPO_API int emdpo_lm_aggregate_create(const emdpo_fit *fit, const emdpo_lm_aggregate_opts *o,
                                        emdpo_lm_aggregate **out, emdpo_diag *diag);
EMDPO_API void emdpo_lm_aggregate_free(emdpo_lm_aggregate *a);
EMDPO_API int emdpo_lm_aggregate_k(const emdpo_lm_aggregate *a);
EMDPO_API int64_t emdpo_lm_aggregate_n_decisions(const emdpo_lm_aggregate *a);
/* The settings in force (every "fit" default resolved); its paths point
 * into a and live as long as it. */
EMDPO_API void emdpo_lm_aggregate_settings(const emdpo_lm_aggregate *a, emdpo_lm_aggregate_opts *o);
/* Runs the method, then writes its outputs: ae aggregate.json and
 * mixture.json (members relative when out is the fit's directory); lw and
 * onpolicy policy/ and aggregate.json last. EMDPO_ERR_LIMIT when a
 * sequence does not fit a model, EMDPO_ERR_NUMERIC when training diverges
 * or an estimate is not finite. Running again replaces the results. */
EMDPO_API int emdpo_lm_aggregate_run(emdpo_lm_aggregate *a, emdpo_diag *diag);
/* ae: the rows (valid after a run). */
EMDPO_API const emdpo_aggregate *emdpo_lm_aggregate_result(const emdpo_lm_aggregate *a);
/* lw, onpolicy: the round returned and its record (its w: the weights
 * after the last update); onpolicy's V_k (NULL for lw). */
EMDPO_API int emdpo_lm_aggregate_returned(const emdpo_lm_aggregate *a, emdpo_mmra_round *final);
EMDPO_API const double *emdpo_lm_aggregate_value(const emdpo_lm_aggregate *a);
/* The output directory. */
EMDPO_API const char *emdpo_lm_aggregate_out(const emdpo_lm_aggregate *a);
/* aggregate.json, as written. */
EMDPO_API int emdpo_lm_aggregate_write_json(const emdpo_lm_aggregate *a, FILE *fp);

/* ---- Regret of any policies (Table 3) ------------------------------------- */

typedef struct emdpo_regret_opts {
    const char *data;                 /* decisions giving the prompts (and option sets); NULL: the fit's */
    emdpo_regret_estimator estimator;
    int samples;                      /* sample: responses per prompt and checkpoint */
    int max_tokens;                   /* sample: new tokens per response */
    int64_t max_prompts;              /* the first N decisions only; 0: all */
    uint64_t seed;                    /* sample: generation */
} emdpo_regret_opts;

/* SAMPLE (the paper's definition), samples 4, max_tokens 64, all prompts,
 * seed 1. */
EMDPO_API void emdpo_regret_opts_init(emdpo_regret_opts *o);

typedef struct emdpo_regret emdpo_regret;

/* Each type's regret R_k(pi) under policies added to it, against the types
 * of a Llama fit (read from its directory), its beta and its reference. */
EMDPO_API int emdpo_regret_create(const emdpo_fit *fit, const emdpo_regret_opts *o, emdpo_regret **out,
                                  emdpo_diag *diag);
EMDPO_API void emdpo_regret_free(emdpo_regret *r);
/* A policy: a checkpoint or a mixture.json (a weighted sum of its members'
 * columns). name: 1 to 63 bytes, unique. EMDPO_ERR_INVALID_ARG (diag) for
 * a bad name or a mixture with a mixture for a member, errors of the
 * mixture reader; a failed add leaves the table as it was. A checkpoint or
 * member that is a PEFT adapter directory whose base_model_name_or_path is
 * the fit's SFT model runs unmerged on it where it is only scored (exact);
 * another base's loads as that base with the adapter merged. */
EMDPO_API int emdpo_regret_add(emdpo_regret *r, const char *name, const char *path, emdpo_diag *diag);
/* A policy that is the PEFT LoRA adapter directory dir on the fit's SFT
 * model, whatever base its adapter_config.json names (an adapter trained
 * elsewhere on the same model): run unmerged for the exact estimator,
 * merged into a float32 copy of the SFT model for the sampled one. As
 * emdpo_regret_add, and EMDPO_ERR_INVALID_ARG (diag) when dir is not an
 * adapter directory; an adapter of other shapes fails at the run. */
EMDPO_API int emdpo_regret_add_adapter(emdpo_regret *r, const char *name, const char *dir, emdpo_diag *diag);
/* The uniform mixture of the fit's types, named "uniform". */
EMDPO_API int emdpo_regret_add_uniform(emdpo_regret *r, emdpo_diag *diag);
/* Loads every distinct checkpoint once and estimates L over the data (again
 * after more policies are added: a run replaces the last one's results). */
EMDPO_API int emdpo_regret_run(emdpo_regret *r, emdpo_diag *diag);
EMDPO_API int emdpo_regret_k(const emdpo_regret *r);
EMDPO_API int emdpo_regret_n_policies(const emdpo_regret *r);
/* Policy i: its name, path (NULL for the uniform mixture), regrets with
 * standard errors (NaN when exact) and the max over types. */
EMDPO_API const emdpo_regret_row *emdpo_regret_policy(const emdpo_regret *r, int i);
EMDPO_API const char *emdpo_regret_policy_path(const emdpo_regret *r, int i);
EMDPO_API int64_t emdpo_regret_n_decisions(const emdpo_regret *r);
EMDPO_API int64_t emdpo_regret_draws(const emdpo_regret *r);
EMDPO_API double emdpo_regret_beta(const emdpo_regret *r);
/* The JSON of emdpo regret --json: {beta, estimator, types, policies: [{name,
 * path, regret, se, max_regret}], fit, data, decisions, ...}. */
EMDPO_API int emdpo_regret_write_json(const emdpo_regret *r, FILE *fp);
/* The same JSON written atomically to path. */
EMDPO_API int emdpo_regret_save(const emdpo_regret *r, const char *path, emdpo_diag *diag);

#ifdef __cplusplus
}
#endif
#endif
