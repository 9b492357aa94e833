/* The pieces of emdpo fit --policy llama (cmd_fit_lm.c) that emdpo select
 * --policy llama reuses, so that every K it tries is fitted and written
 * exactly as emdpo fit would with the same flags. */
#ifndef EMDPO_CLI_FIT_LM_H
#define EMDPO_CLI_FIT_LM_H

#include <stdint.h>

#include "cli.h"
#include "lm/engine/llama.h"
#include "lm/io/tokenizer.h"
#include "lm/llama_policy.h"

/* fit --policy llama's flags; opt_kind and wnorm come from
 * cli_fit_lm_check. */
typedef struct cli_fit_lm_args {
    const char *policy, *data, *model, *tokenizer, *out, *init, *optimizer, *weight_norm;
    int k, starts, max_iter, patience, batch, accum, max_length, max_prompt_length, score_batch, restart, threads,
        quiet, progress;
    int64_t steps, warmup;
    uint64_t seed;
    double beta, lr, clip, epochs, tol;
    int opt_kind, wnorm;
} cli_fit_lm_args;

/* The flags' defaults. */
void cli_fit_lm_defaults(cli_fit_lm_args *a);
/* Checks the flags that need no data and sets opt_kind and wnorm; 0 or
 * the exit code (errors printed as "emdpo CMD: ..."). */
int cli_fit_lm_check(const char *cmd, cli_fit_lm_args *a);
/* EM-DPO with a->k types on d, from sft (a->max_length and
 * a->max_prompt_length already resolved by cli_lm_lengths): the policy
 * options (*po), the fitted policy (*pol, free with emdpo_policy_free), the
 * result (*res, free with emdpo_em_result_free, also on failure) and the
 * seconds it took. 0 or the exit code. */
int cli_fit_lm_run(const char *cmd, const cli_fit_lm_args *a, const emdpo_llama *sft, const emdpo_tokenizer *tok,
                   const emdpo_data *d, emdpo_llama_policy_opts *po, emdpo_policy **pol, emdpo_em_result *res,
                   double *elapsed);
/* a->out/type_1 .. type_K, posterior.csv, then fit.json; 0 or the exit
 * code. */
int cli_fit_lm_write(const char *cmd, const cli_fit_lm_args *a, const emdpo_data *d, const emdpo_policy *pol,
                     const emdpo_em_result *res, const emdpo_llama_policy_opts *po, double elapsed);

#endif
