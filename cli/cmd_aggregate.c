/* emdpo aggregate: MMRA over a fit. On a log-linear fit, MMRA-AE (the
 * paper's Algorithm 4) with the uniform mixture and the pooled single
 * policy for comparison; on a Llama fit, by --method: ae, lw (Algorithm 2)
 * or onpolicy (Algorithm 3). */
#include <math.h>
#include <string.h>

#include "cli.h"

static void print_ae(const emdpo_aggregate *a, const char *what, const char *estimator) {
    emdpo_zerosum_result hedge, lp;
    emdpo_aggregate_games(a, &hedge, &lp);
    int K = emdpo_aggregate_k(a), n = emdpo_aggregate_n_rows(a);
    printf("MMRA-AE over %d %s on %lld decisions (beta = %g", K, what, (long long)emdpo_aggregate_n_decisions(a),
           emdpo_aggregate_beta(a));
    if (estimator) {
        printf(", %s estimator", estimator);
        if (emdpo_aggregate_sampled(a)) printf(", %lld draws per policy", (long long)emdpo_aggregate_draws(a));
    }
    printf(")\noptimistic Hedge: %ld rounds, duality gap %.3g; exact LP min-max regret %.6f\n\n", hedge.iterations,
           hedge.gap, lp.value);
    const emdpo_regret_row *rows[EMDPO_MAX_K + 3];
    for (int r = 0; r < n; r++) rows[r] = emdpo_aggregate_row(a, r);
    cli_regret_table_print(rows, n, K);
}

static void note_hedge_cap(const emdpo_aggregate *a) {
    if (!emdpo_aggregate_hedge_capped(a)) return;
    emdpo_zerosum_result hedge;
    emdpo_aggregate_games(a, &hedge, NULL);
    fprintf(stderr, "emdpo aggregate: note: Hedge stopped at its round cap with duality gap %.3g\n", hedge.gap);
}

static int aggregate_loglinear(int argc, char **argv) {
    emdpo_aggregate_opts o;
    emdpo_aggregate_opts_init(&o);
    const char *fit_path = NULL, *data = NULL, *out = NULL;
    emdpo_format format = EMDPO_FORMAT_AUTO;
    int64_t iters = o.hedge.max_iter;
    int threads = 0, json = 0;
    cli_opt opts[] = {
        {"fit", CLI_STR, &fit_path, "DIR", "a directory written by emdpo fit (or its fit.json)", 1, 0, 0},
        {"data", CLI_STR, &data, "FILE", "prompts and choice sets to average over (default: the fit's data)", 0, 0, 0},
        {"format", CLI_ENUM, &format, "FMT", "jsonl, csv or auto (by extension)", 0, 0, emdpo_format_name},
        {"solver", CLI_ENUM, &o.solver, "NAME", "hedge (optimistic Hedge, the paper's) or lp (exact simplex)", 0, 0,
         emdpo_game_solver_name},
        {"iters", CLI_I64, &iters, "T", "Hedge round cap", 0, 0, 0},
        {"tol", CLI_DBL, &o.hedge.rel_tol, "X", "Hedge stops when the duality gap <= X * range of regrets", 0, 0, 0},
        {"beta", CLI_DBL, &o.beta, "X", "policy temperature (default: the fit's beta)", 0, 0, 0},
        {"seed", CLI_U64, &o.seed, "S", "seed of the pooled K=1 fit", 0, 0, 0},
        {"out", CLI_STR, &out, "DIR", "also write DIR/aggregate.json", 0, 0, 0},
        {"json", CLI_FLAG, &json, NULL, "print JSON instead of the table", 0, 0, 0},
        CLI_THREADS_FLAG(&threads),
    };
    cli_cmd cmd = {"aggregate", "MMRA-AE: the mixture of a fit's type policies with the smallest worst-case regret.",
                   "Type k's policy on a decision's items is pi_k = softmax(theta_k . x / beta) (pi_ref uniform);\n"
                   "L[z][z'] = E_{x, y ~ pi_z'}[beta log(pi_z / pi_ref)] is computed exactly over every decision's\n"
                   "items, the (K+1) x K regret matrix solved by optimistic Hedge for both players (the\n"
                   "duality gap certifies the result), and checked against an exact LP solution. Regrets are\n"
                   "in reward units (theta . x). Compared: uniform weights, each type's policy alone, and the\n"
                   "pooled single policy (a K = 1 fit: vanilla DPO).",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (iters < 1) return cli_usage_error("aggregate", "--iters must be >= 1");
    if (!(o.hedge.rel_tol >= 0)) return cli_usage_error("aggregate", "--tol must be >= 0");
    if (cli_seen(&cmd, "beta") && !(o.beta > 0)) return cli_usage_error("aggregate", "--beta must be > 0");
    o.hedge.max_iter = (long)iters;
    emdpo_set_threads(threads);

    emdpo_fit *fit = NULL;
    emdpo_data *d = NULL;
    emdpo_aggregate *a = NULL;
    emdpo_diag diag;
    if ((rc = emdpo_fit_read(fit_path, &fit, &diag))) return cli_fail("aggregate", rc, &diag, &cmd);
    int fit_data = !data;
    if (!data) data = emdpo_fit_data_path(fit);
    if (!data) rc = cli_usage_error("aggregate", "the fit names no data file; pass --data");
    else if ((rc = emdpo_fit_check_files(fit, fit_data, &diag))) rc = cli_fail("aggregate", rc, &diag, &cmd);
    else if (!(rc = cli_load_data("aggregate", data, format, NULL, &d)) &&
             (rc = emdpo_loglinear_aggregate(fit, d, &o, &a, &diag)))
        rc = cli_fail("aggregate", rc, &diag, &cmd);
    if (!rc) {
        note_hedge_cap(a);
        if (json) emdpo_aggregate_write_json(a, stdout);
        else print_ae(a, "types", NULL);
        /* under mpirun every process holds the same result; rank 0 writes it */
        if (out && emdpo_dist_rank() == 0 && (rc = emdpo_aggregate_save(a, out, &diag)))
            rc = cli_fail("aggregate", rc, &diag, &cmd);
    }
    emdpo_aggregate_free(a);
    emdpo_data_free(d);
    emdpo_fit_free(fit);
    return rc;
}

/* ---- Llama fits ---------------------------------------------------------- */

typedef struct round_printer {
    int lw, json;
    double t0;
} round_printer;

static void print_round_header(const round_printer *p, int K) {
    printf("%-6s", "round");
    for (int k = 0; k < K; k++) printf("   w%-4d", k + 1);
    for (int k = 0; k < K; k++) printf("  regret%-3d", k + 1);
    printf("  max regret  %9s%s  time(s)\n", p->lw ? "DPO loss" : "objective", p->lw ? "" : "         kl");
}

static void print_round(void *ud, const emdpo_mmra_round *r, int K) {
    const round_printer *p = ud;
    if (p->json) return;
    if (r->round) printf("%-6d", r->round);
    else printf("%-6s", "start");
    for (int k = 0; k < K; k++) printf(" %7.4f", r->w[k]);
    for (int k = 0; k < K; k++) printf("  %9.5f", r->regret[k]);
    printf("  %10.5f", r->max_regret);
    if (isnan(r->loss)) printf("  %9s", "-");
    else printf("  %9.5f", r->loss);
    if (!p->lw) {
        if (isnan(r->kl)) printf("  %9s", "-");
        else printf("  %9.5f", r->kl);
    }
    printf("  %7.1f\n", cli_now() - p->t0);
    fflush(stdout);
}

static void print_trained_summary(const emdpo_lm_aggregate *a) {
    emdpo_lm_aggregate_opts s;
    emdpo_lm_aggregate_settings(a, &s);
    emdpo_mmra_round final;
    int K = emdpo_lm_aggregate_k(a), chosen = emdpo_lm_aggregate_returned(a, &final);
    const char *why = s.method == EMDPO_MMRA_ONPOLICY ? "the last; regrets estimated afresh"
                      : s.select == EMDPO_LW_LAST     ? "the last"
                                                      : "smallest max regret";
    printf("\nreturned: round %d (%s): regrets", chosen, why);
    for (int k = 0; k < K; k++) printf(" %.5f", final.regret[k]);
    printf(", max regret %.5f\nweights after the last round:", final.max_regret);
    for (int k = 0; k < K; k++) printf(" %.4f", final.w[k]);
    printf("\npolicy: %s/policy\n", emdpo_lm_aggregate_out(a));
}

static int aggregate_llama(int argc, char **argv) {
    emdpo_lm_aggregate_opts o;
    emdpo_lm_aggregate_opts_init(&o);
    const char *fit_path = NULL;
    int threads = 0, json = 0;
    cli_lora lora;
    cli_opt opts[] = {
        {"fit", CLI_STR, &fit_path, "DIR", "a directory written by emdpo fit --policy llama (or its fit.json)", 1, 0, 0},
        {"data", CLI_STR, &o.data, "FILE", "decisions giving prompts and option sets (default: the fit's data)", 0, 0,
         0},
        {"method", CLI_ENUM, &o.method, "NAME", "ae: MMRA-AE, the paper's Algorithm 4; lw: MMRA-LW (Algorithm 2); "
                                                "onpolicy: on-policy MMRA (Algorithm 3)", 0, 0, emdpo_mmra_method_name},
        {"estimator", CLI_ENUM, &o.estimator, "NAME", "exact (over each decision's items) or sample (default: exact; "
                                                      "onpolicy: sample)", 0, 0, emdpo_regret_estimator_name},
        {"samples", CLI_INT, &o.samples, "N", "sample: responses per prompt and policy; onpolicy: also per prompt in "
                                              "each step, >= 2", 0, 0, 0},
        {"max-tokens", CLI_INT, &o.max_tokens, "N", "sample, onpolicy: new tokens per response", 0, 0, 0},
        {"temperature", CLI_DBL, &o.temperature, "X", "sample: 1 samples the policies themselves", 0, 0, 0},
        {"max-prompts", CLI_I64, &o.max_prompts, "N", "sample, onpolicy: the first N decisions' prompts (default: "
                                                      "all)", 0, 0, 0},
        {"seed", CLI_U64, &o.seed, "S", "sample: generation seed; lw, onpolicy: also shuffling", 0, 0, 0},
        {"pooled", CLI_STR, &o.pooled, "DIR", "also compare this single policy (e.g. a vanilla-DPO checkpoint)", 0, 0,
         0},
        {"solver", CLI_ENUM, &o.solver, "NAME", "hedge (optimistic Hedge, the paper's) or lp (exact simplex)", 0, 0,
         emdpo_game_solver_name},
        {"rounds", CLI_INT, &o.rounds, "N", "lw, onpolicy: rounds of multiplicative weights", 0, 0, 0},
        {"eta", CLI_DBL, &o.eta, "X", "lw, onpolicy: multiplicative-weights rate", 0, 0, 0},
        {"steps", CLI_I64, &o.steps, "N", "lw, onpolicy: optimizer steps per round (default: lw 10, onpolicy 1)", 0, 0,
         0},
        {"lr", CLI_DBL, &o.lr, "X", "lw, onpolicy: learning rate (default: the fit's M-step's)", 0, 0, 0},
        {"batch", CLI_INT, &o.batch, "N", "lw: decisions per micro-batch (default: the fit's); onpolicy: prompts per "
                                          "step (default: 4)", 0, 0, 0},
        {"optimizer", CLI_ENUM, &o.optimizer, "NAME", "lw, onpolicy: rmsprop or adamw (default: the fit's)", 0, 0,
         emdpo_optim_name},
        {"warmup", CLI_I64, &o.warmup, "N", "lw, onpolicy: linear warmup steps over the whole run", 0, 0, 0},
        {"clip", CLI_DBL, &o.clip, "X", "lw, onpolicy: max gradient norm, 0 = off (default: the fit's)", 0, 0, 0},
        {"select", CLI_ENUM, &o.select, "NAME", "lw: return the round with the smallest max regret (best) or the last",
         0, 0, emdpo_lw_select_name},
        {"eval-samples", CLI_INT, &o.eval_samples, "N", "onpolicy: responses per prompt and policy for V_k and the "
                                                        "regrets (default: --samples)", 0, 0, 0},
        {"score-batch", CLI_INT, &o.score_batch, "N", "sequences per scoring forward", 0, 0, 0},
        {"out", CLI_STR, &o.out, "DIR", "ae: aggregate.json and mixture.json (default: the fit's directory); lw, "
                                        "onpolicy: aggregate.json and policy/ (default: FIT/mmra_METHOD)", 0, 0, 0},
        CLI_SAVE_DTYPE_FLAG(&o.save_dtype),
        CLI_GRAD_CKPT_FLAG(&o.grad_checkpoint),
        {0}, {0}, {0}, {0}, {0}, /* the LoRA flags (lw, onpolicy) */
        {"json", CLI_FLAG, &json, NULL, "print JSON instead of the table", 0, 0, 0},
        CLI_THREADS_FLAG(&threads),
    };
    int li = 0;
    while (opts[li].name) li++;
    cli_lora_flags(&opts[li], &lora);
    cli_cmd cmd = {"aggregate", "MMRA over a fit's Llama policies: one policy, or a mixture, with the smallest "
                                "worst-case regret.",
                   "L[z][z'] = E_{x, y ~ pi_z'}[beta (log pi_z(y|x) - log pi_ref(y|x))], the reference being the\n"
                   "fit's SFT model. exact: each decision's items are the option set and pi_z' is restricted to\n"
                   "it (softmax of the sequence log-probabilities); sample: responses generated by each policy\n"
                   "for each decision's prompt, with standard errors in aggregate.json. The regret of a policy\n"
                   "pi for type k is R_k(pi) = L[k][k] - L[k][pi].\n\n"
                   "ae: the (K+1) x K regret matrix is solved by optimistic Hedge (its duality gap certifies\n"
                   "the result) and checked against an exact LP. Writes DIR/aggregate.json and DIR/mixture.json\n"
                   "{kind, weights, members, beta, reference}.\n\n"
                   "lw: from w = 1/K and the SFT model, each round trains one policy by DPO (with the fit's\n"
                   "RPO weight) on the data with each decision weighted sum_k w_k gamma_ik (gamma from\n"
                   "posterior.csv), continuing from the\n"
                   "last round (one run: optimizer state and shuffling carry over), then sets\n"
                   "w_k ~ w_k exp(eta R_k). Returns the round with the smallest max regret (--select).\n\n"
                   "onpolicy: each step generates --samples responses to each of --batch prompts from the\n"
                   "policy and takes a policy-gradient step (REINFORCE, leave-one-out baseline) on\n"
                   "sum_k w_k [R_k]^+ + beta KL(pi || pi_ref); after each round w_k ~ w_k exp(eta [R_k]^+).\n"
                   "Returns the last policy, its regrets estimated afresh.\n\n"
                   "lw and onpolicy print a row per round and write DIR/policy (a Hugging Face checkpoint)\n"
                   "and DIR/aggregate.json (settings, every round's w, regrets and max regret, the final\n"
                   "regrets). With --lora-r (lw, onpolicy) the policy is a LoRA adapter on the fit's SFT model,\n"
                   "which stays frozen and is the reference: DIR/policy then holds PEFT's adapter_config.json\n"
                   "and adapter_model.safetensors (onpolicy draws its responses from the model with the\n"
                   "adapter merged). A fit whose types are adapters (fit --lora-r) runs them unmerged on the\n"
                   "SFT model where they are only scored (exact), merged where responses are drawn (sample).",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = cli_lora_finish("aggregate", &lora, &o.lora))) return rc;
    emdpo_set_threads(threads);
    round_printer printer = {o.method == EMDPO_MMRA_LW, json, cli_now()};
    o.progress = print_round;
    o.progress_ud = &printer;

    emdpo_fit *fit = NULL;
    emdpo_lm_aggregate *a = NULL;
    emdpo_diag diag;
    if ((rc = emdpo_fit_read(fit_path, &fit, &diag)) || (rc = emdpo_lm_aggregate_create(fit, &o, &a, &diag))) {
        rc = cli_fail("aggregate", rc, &diag, &cmd);
        goto done;
    }
    emdpo_lm_aggregate_opts s;
    emdpo_lm_aggregate_settings(a, &s);
    int K = emdpo_lm_aggregate_k(a);
    if (s.method != EMDPO_MMRA_AE && !json) {
        printf("%s over %d Llama types on %lld decisions (beta = %g, %s regrets, %d rounds of %lld steps, eta %g)\n\n",
               s.method == EMDPO_MMRA_LW ? "MMRA-LW" : "on-policy MMRA", K,
               (long long)emdpo_lm_aggregate_n_decisions(a), emdpo_fit_beta(fit),
               emdpo_regret_estimator_name(s.estimator), s.rounds, (long long)s.steps, s.eta);
        print_round_header(&printer, K);
    }
    printer.t0 = cli_now();
    if ((rc = emdpo_lm_aggregate_run(a, &diag))) {
        rc = cli_fail("aggregate", rc, &diag, &cmd);
    } else if (s.method == EMDPO_MMRA_AE) {
        const emdpo_aggregate *g = emdpo_lm_aggregate_result(a);
        note_hedge_cap(g);
        if (json) emdpo_aggregate_write_json(g, stdout);
        else print_ae(g, "Llama types", emdpo_regret_estimator_name(s.estimator));
    } else if (json) {
        emdpo_lm_aggregate_write_json(a, stdout);
    } else {
        print_trained_summary(a);
    }
done:
    emdpo_lm_aggregate_free(a);
    emdpo_fit_free(fit);
    return rc;
}

/* ---- --regrets: a regret matrix computed elsewhere ----------------------- */

static int aggregate_regrets(int argc, char **argv) {
    const char *path = NULL, *out = NULL;
    emdpo_game_solver solver = EMDPO_GAME_HEDGE;
    emdpo_mmra_hedge_opts ho;
    emdpo_mmra_hedge_opts_init(&ho);
    int64_t iters = ho.max_iter;
    int json = 0;
    cli_opt opts[] = {
        {"regrets", CLI_STR, &path, "FILE", "the regret matrix: .json (an array of rows) or .csv, optionally .gz", 1,
         0, 0},
        {"solver", CLI_ENUM, &solver, "NAME", "hedge (optimistic Hedge, the paper's) or lp (exact simplex)", 0, 0,
         emdpo_game_solver_name},
        {"iters", CLI_I64, &iters, "T", "Hedge round cap", 0, 0, 0},
        {"tol", CLI_DBL, &ho.rel_tol, "X", "Hedge stops when the duality gap <= X * range of regrets", 0, 0, 0},
        {"out", CLI_STR, &out, "DIR", "also write DIR/aggregate.json", 0, 0, 0},
        {"json", CLI_FLAG, &json, NULL, "print JSON instead of the table", 0, 0, 0},
    };
    cli_cmd cmd = {"aggregate", "MMRA-AE on a regret matrix computed by any trainer.",
                   "Rows are the types whose regrets are measured, columns the K policies:\n"
                   "R[k][k'] = L[k][k] - L[k][k'], L[k][k'] = E_{x, y ~ pi_k'}[beta log(pi_k / pi_ref)]. Give\n"
                   "the (K+1) x K game with row 0 the zero row, or the K x K matrix and the zero row is added.\n"
                   "The game is solved by optimistic Hedge (its duality gap certifies the mixture) and\n"
                   "checked against an exact LP. Prints the mixture w over the K policies, each type's\n"
                   "regret under it, the max regret, the duality gap and the LP's min-max regret.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (iters < 1) return cli_usage_error("aggregate", "--iters must be >= 1");
    if (!(ho.rel_tol >= 0)) return cli_usage_error("aggregate", "--tol must be >= 0");
    ho.max_iter = (long)iters;
    double R[(EMDPO_MAX_K + 1) * EMDPO_MAX_K];
    int rows = 0, K = 0;
    emdpo_regrets_result res;
    emdpo_diag diag;
    if ((rc = emdpo_regrets_read(path, R, &rows, &K, &diag))) return cli_fail("aggregate", rc, &diag, &cmd);
    if ((rc = emdpo_mmra_ae_regrets(R, rows, K, solver, &ho, &res, &diag))) {
        snprintf(diag.file, sizeof diag.file, "%s", path);
        return cli_fail("aggregate", rc, &diag, &cmd);
    }
    if (res.hedge_capped)
        fprintf(stderr, "emdpo aggregate: note: Hedge stopped at its round cap with duality gap %.3g\n", res.game.gap);
    if (json) {
        emdpo_regrets_result_write_json(&res, path, stdout);
    } else {
        printf("MMRA-AE on the %d x %d regret matrix of %s\n", rows, K, path);
        printf("%s: %ld %s, duality gap %.3g; exact LP min-max regret %.6f\n\n",
               solver == EMDPO_GAME_LP ? "exact LP" : "optimistic Hedge", res.game.iterations,
               solver == EMDPO_GAME_LP ? "pivots" : "rounds", res.game.gap, res.lp.value);
        printf("%-6s %10s %12s\n", "type", "w", "regret");
        for (int k = 0; k < K; k++) printf("%-6d %10.6f %12.6f\n", k + 1, res.w[k], res.regret[k]);
        printf("\nmax regret %.6f\n", res.game.upper);
    }
    if (out && (rc = emdpo_regrets_result_save(&res, path, out, &diag))) rc = cli_fail("aggregate", rc, &diag, &cmd);
    return rc;
}

int cmd_aggregate(int argc, char **argv) {
    if (cli_flag_value(argc, argv, "regrets")) return aggregate_regrets(argc, argv);
    const char *fit = cli_flag_value(argc, argv, "fit");
    if (!fit || !*fit) return aggregate_loglinear(argc, argv);
    /* The fit's family picks the flags, so a fit that cannot be read is
     * refused for what is wrong in it, not for flags of the other family. */
    emdpo_fit *f = NULL;
    emdpo_diag diag;
    int rc = emdpo_fit_read(fit, &f, &diag);
    if (rc) return cli_fail("aggregate", rc, &diag, NULL);
    int llama = emdpo_fit_family(f) == EMDPO_FAMILY_LLAMA;
    emdpo_fit_free(f);
    return llama ? aggregate_llama(argc, argv) : aggregate_loglinear(argc, argv);
}
