/* Shared pieces of the emdpo commands: error reporting, data loading,
 * output directories, JSON writing, and the fit files. */
#ifndef EMDPO_CLI_H
#define EMDPO_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "args.h"
#include "core/em.h"
#include "data/data.h"
#include "emdpo.h"

/* Exit codes: 0 success, 1 internal failure, 2 bad usage or bad input. */
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

int cmd_fit(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
/* emdpo fit --policy llama (cmd_fit_lm.c); takes cmd_fit's argv as is. */
int cli_fit_llama(int argc, char **argv);
int cmd_select(int argc, char **argv);
/* emdpo select --policy llama (cmd_select_lm.c); takes cmd_select's argv as is. */
int cli_select_llama(int argc, char **argv);
int cmd_aggregate(int argc, char **argv);
/* emdpo aggregate on a fit of Llama policies (cmd_aggregate_lm.c). */
int cli_aggregate_llama(int argc, char **argv);
/* 1 when argv's --fit names a fit.json with "family": "llama". */
int cli_aggregate_is_llama(int argc, char **argv);
int cmd_simulate(int argc, char **argv);
/* emdpo simulate --dataset goqa (cmd_simulate_goqa.c); takes cmd_simulate's argv as is. */
int cli_simulate_goqa(int argc, char **argv);
int cmd_identify(int argc, char **argv);
int cmd_sft(int argc, char **argv);
int cmd_dpo(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_baseline(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_regret(int argc, char **argv);
int cmd_report(int argc, char **argv);

/* Prints "emdpo CMD: [file:line: ]message" for a failed status and
 * returns the exit code that goes with it. diag may be NULL. */
int cli_fail(const char *cmd, int rc, const emdpo_diag *diag, const char *what);
/* Prints "emdpo CMD: message" and returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...);

/* Reads a dataset (format by extension, or "jsonl"/"csv"); prints the error. */
int cli_load_data(const char *cmd, const char *path, const char *format, emdpo_data **out);
/* Parses "jsonl" / "csv" / "auto" (NULL = auto); -1 when unknown. */
int cli_format(const char *name);
/* Creates dir and its parents; prints the error. */
int cli_mkdirs(const char *cmd, const char *dir);
/* Sets the OpenMP thread count when n > 0. */
void cli_set_threads(int n);
/* Seconds on a monotonic clock. */
double cli_now(void);

/* JSON output: numbers round-trip (%.17g); non-finite numbers become null. */
void cli_json_num(FILE *fp, double v);
void cli_json_nums(FILE *fp, const double *v, int64_t n);
void cli_json_str(FILE *fp, const char *s);

/* A fitted log-linear EM-DPO model as stored in DIR/fit.json. */
typedef struct cli_fit {
    int K, p;
    double beta, l2;
    double *theta;      /* (K, p) */
    double *eta;        /* (K) */
    char data[4096];    /* the dataset it was fitted on */
} cli_fit;

/* posterior.csv: the header annotator,gamma_1..gamma_K, then one row per
 * annotator. */
void cli_write_posterior(FILE *fp, const emdpo_data *d, const emdpo_em_result *res);

/* With true groups in the data, how the posterior splits each group. */
void cli_print_group_posterior(const emdpo_data *d, const emdpo_em_result *res);

/* The whole file at path, NUL-terminated, allocated with emdpo_malloc
 * (len + 1 bytes); NULL when it cannot be read. */
char *cli_read_file(const char *path, size_t *len);

/* One line of an aggregation's comparison: a policy, its weights over the
 * K types (or none), and its regret for every type. */
typedef struct cli_regret_row {
    char name[32];
    int has_w;
    double w[EMDPO_MAX_K];
    double regret[EMDPO_MAX_K];
    double se[EMDPO_MAX_K]; /* standard errors when regrets were sampled */
    double max_regret;
} cli_regret_row;

/* max_regret from the regrets (at least 0: the game's zero row). */
void cli_regret_row_finish(cli_regret_row *r, int K);
/* The aggregate commands' table: policy, weights, regret per type, max. */
void cli_regret_table_print(const cli_regret_row *rows, int n, int K);

/* Reads DIR/fit.json (or the file itself when path names a file). */
int cli_fit_read(const char *cmd, const char *path, cli_fit *fit);
void cli_fit_free(cli_fit *fit);

/* Fits K log-linear types and returns the policy and result; the common
 * core of fit, select and aggregate's pooled model. progress may be NULL. */
typedef struct cli_fit_opts {
    int K, starts, max_iter;
    uint64_t seed;
    emdpo_init init;
    double tol, l2, beta;
    int verbose;
} cli_fit_opts;
void cli_fit_opts_default(cli_fit_opts *o);
int cli_fit_loglinear(const emdpo_data *d, const cli_fit_opts *o, emdpo_policy **pol, emdpo_em_result *res);

#endif
