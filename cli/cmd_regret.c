/* emdpo regret: the paper's Table 3. Each type's regret of a fit of Llama
 * policies under any policies given (checkpoints or mixtures), and the
 * max over types. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Adds each NAME=PATH of the comma-separated list (adapter: each PATH an
 * adapter on the fit's SFT model), in order, stopping at the first that
 * fails (a malformed entry is reported when reached). */
static int add_policies(emdpo_regret *r, const char *list, int adapter, const cli_cmd *cmd) {
    size_t n = strlen(list) + 1;
    char *copy = malloc(n);
    const char **names = malloc(n * sizeof *names), **paths = malloc(n * sizeof *paths);
    int rc = 0, count = copy && names && paths ? 0 : -1;
    if (count < 0) rc = cli_fail("regret", EMDPO_ERR_NOMEM, NULL, cmd);
    else {
        memcpy(copy, list, n);
        count = cli_split_pairs(copy, names, paths);
    }
    int good = count < 0 ? -count - 1 : count;
    for (int i = 0; !rc && i < good; i++) {
        emdpo_diag diag;
        int arc = (adapter ? emdpo_regret_add_adapter : emdpo_regret_add)(r, names[i], paths[i], &diag);
        if (arc) rc = cli_fail("regret", arc, &diag, cmd);
    }
    if (!rc && count < 0)
        rc = cli_usage_error("regret", "--%s: expected NAME=%s, not '%s'", adapter ? "adapter" : "policies",
                             adapter ? "DIR" : "PATH", names[good]);
    free(copy);
    free((void *)names);
    free((void *)paths);
    return rc;
}

static void print_table(const emdpo_regret *r, const emdpo_fit *fit, const char *estimator) {
    int K = emdpo_regret_k(r), n = emdpo_regret_n_policies(r), width = 6;
    int sampled = strcmp(estimator, "sample") == 0;
    for (int i = 0; i < n; i++)
        if ((int)strlen(emdpo_regret_policy(r, i)->name) > width) width = (int)strlen(emdpo_regret_policy(r, i)->name);
    printf("Regret of each type over %lld decisions (beta = %g, %s estimator", (long long)emdpo_regret_n_decisions(r),
           emdpo_regret_beta(r), estimator);
    if (sampled)
        printf(", %lld draws per policy, standard errors in parentheses", (long long)emdpo_regret_draws(r));
    printf(")\n\n%-*s", width, "policy");
    for (int k = 0; k < K; k++) {
        char h[16];
        snprintf(h, sizeof h, "R_%d", k + 1);
        printf("  %*s", sampled ? 21 : 10, h);
    }
    printf("  %10s\n", "max regret");
    for (int i = 0; i < n; i++) {
        const emdpo_regret_row *p = emdpo_regret_policy(r, i);
        printf("%-*s", width, p->name);
        for (int k = 0; k < K; k++) {
            char cell[64];
            if (sampled) snprintf(cell, sizeof cell, "%.5f (%.5f)", p->regret[k], p->se[k]);
            else snprintf(cell, sizeof cell, "%.5f", p->regret[k]);
            printf("  %*s", sampled ? 21 : 10, cell);
        }
        printf("  %10.5f\n", p->max_regret);
    }
    printf("\ntypes:");
    for (int k = 0; k < K; k++) printf(" R_%d = %s%s", k + 1, emdpo_fit_policy_name(fit, k), k + 1 < K ? "," : "\n");
}

int cmd_regret(int argc, char **argv) {
    emdpo_regret_opts o;
    emdpo_regret_opts_init(&o);
    const char *fit_path = NULL, *policies = NULL, *adapters = NULL, *out = NULL;
    int uniform = 0, threads = 0, json = 0;
    cli_opt opts[] = {
        {"fit", CLI_STR, &fit_path, "DIR", "a directory written by emdpo fit --policy llama (or its fit.json)", 1, 0, 0},
        {"policies", CLI_STR, &policies, "NAME=PATH,...", "policies to evaluate: checkpoints (llama2.c .bin or "
                                                          "Hugging Face directory) or mixture.json files", 0, 0, 0},
        {"adapter", CLI_STR, &adapters, "NAME=DIR,...", "policies that are PEFT LoRA adapter directories run on the "
                                                        "fit's SFT model (whatever base they name)", 0, 0, 0},
        {"uniform", CLI_FLAG, &uniform, NULL, "also evaluate the uniform mixture of the fit's types", 0, 0, 0},
        {"data", CLI_STR, &o.data, "FILE", "decisions giving the prompts (and option sets) (default: the fit's data)",
         0, 0, 0},
        {"estimator", CLI_ENUM, &o.estimator, "NAME", "sample (responses drawn from each policy) or exact (over each "
                                                      "decision's items)", 0, 0, emdpo_regret_estimator_name},
        {"samples", CLI_INT, &o.samples, "N", "sample: responses per prompt and checkpoint", 0, 0, 0},
        {"max-tokens", CLI_INT, &o.max_tokens, "N", "sample: new tokens per response", 0, 0, 0},
        {"max-prompts", CLI_I64, &o.max_prompts, "N", "the first N decisions only (default: all)", 0, 0, 0},
        {"seed", CLI_U64, &o.seed, "S", "sample: generation seed", 0, 0, 0},
        CLI_THREADS_FLAG(&threads),
        {"json", CLI_FLAG, &json, NULL, "print JSON instead of the table", 0, 0, 0},
        {"out", CLI_STR, &out, "FILE", "also write the JSON here (atomically)", 0, 0, 0},
    };
    cli_cmd cmd = {"regret", "Each type's regret under given policies and mixtures: the paper's Table 3.",
                   "R_k(pi) = E_{x, y ~ pi_k}[r_k] - E_{x, y ~ pi}[r_k], r_k = beta (log pi_k(y|x) - log\n"
                   "pi_ref(y|x)), with the fit's beta, types pi_k and reference (its SFT model); the table\n"
                   "gives R_1..R_K and their max for each policy. A mixture (emdpo aggregate's mixture.json)\n"
                   "draws a member k ~ w, then y ~ pi_k, so E_pi = sum_k w_k E_{pi_k}: each distinct\n"
                   "checkpoint is evaluated once and mixtures combine them, with standard errors from\n"
                   "independent checkpoints. sample (the default) estimates the expectations as the paper\n"
                   "defines them, from --samples responses per prompt drawn from each checkpoint, with\n"
                   "standard errors; exact restricts each checkpoint to each decision's items, pi(y|C) =\n"
                   "softmax over C of log pi(y|x) (needs text responses; no sampling noise, and the numbers\n"
                   "emdpo aggregate reports). --json and --out write\n"
                   "{beta, estimator, types, policies: [{name, path, regret, se, max_regret}], ...}; se is\n"
                   "null for exact, path null for the uniform mixture.\n\n"
                   "PEFT LoRA adapters (types of fit --lora-r, baseline or dpo --lora-r outputs, mixtures of\n"
                   "them) run unmerged on the fit's SFT model when their adapter_config.json names it as\n"
                   "base_model_name_or_path, for exact; sample draws from a float32 copy of the SFT model with\n"
                   "the adapter merged. --adapter NAME=DIR puts an adapter on the fit's SFT model whatever base\n"
                   "it names (one trained elsewhere on the same model, e.g. by PEFT on a Hub model id).",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (!policies && !adapters && !uniform)
        return cli_usage_error("regret", "nothing to evaluate: give --policies, --adapter and/or --uniform");
    emdpo_set_threads(threads);

    emdpo_fit *fit = NULL;
    emdpo_regret *r = NULL;
    emdpo_diag diag;
    if ((rc = emdpo_fit_read(fit_path, &fit, &diag))) return cli_fail("regret", rc, &diag, &cmd);
    if ((rc = emdpo_regret_create(fit, &o, &r, &diag))) {
        rc = cli_fail("regret", rc, &diag, &cmd);
    } else if (!(rc = policies ? add_policies(r, policies, 0, &cmd) : 0) &&
               !(rc = adapters ? add_policies(r, adapters, 1, &cmd) : 0)) {
        if ((uniform && (rc = emdpo_regret_add_uniform(r, &diag))) || (rc = emdpo_regret_run(r, &diag)))
            rc = cli_fail("regret", rc, &diag, &cmd);
    }
    if (!rc) {
        if (json) emdpo_regret_write_json(r, stdout);
        else print_table(r, fit, emdpo_regret_estimator_name(o.estimator));
        if (fflush(stdout)) rc = cli_usage_error("regret", "cannot write standard output");
        /* under mpirun every process holds the same result; rank 0 writes it */
        else if (out && emdpo_dist_rank() == 0 && (rc = emdpo_regret_save(r, out, &diag)))
            rc = cli_fail("regret", rc, &diag, &cmd);
    }
    emdpo_regret_free(r);
    emdpo_fit_free(fit);
    return rc;
}
