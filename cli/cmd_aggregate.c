/* emdpo aggregate: MMRA-AE over a log-linear fit (the paper's Algorithm 4),
 * with the uniform mixture and the pooled single policy for comparison. */
#include <math.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "cli.h"
#include "core/mmra.h"
#include "loglinear/loglinear.h"

typedef struct agg_args {
    const char *fit, *data, *format, *solver, *out;
    double beta, tol;
    long iters;
    int64_t iters_arg;
    int threads, json;
    uint64_t seed;
} agg_args;

#define AGG_ROWS (EMDPO_MAX_K + 3)

static void write_json(FILE *fp, const agg_args *a, const cli_fit *fit, const double *L, const cli_regret_row *rows, int n,
                       const emdpo_zerosum_result *hedge, const emdpo_zerosum_result *lp) {
    int K = fit->K;
    fprintf(fp, "{\n  \"fit\": ");
    cli_json_str(fp, a->fit);
    fprintf(fp, ",\n  \"data\": ");
    cli_json_str(fp, a->data);
    fprintf(fp, ",\n  \"k\": %d,\n  \"beta\": ", K);
    cli_json_num(fp, fit->beta);
    fprintf(fp, ",\n  \"solver\": \"%s\",\n  \"L\": [", a->solver);
    for (int k = 0; k < K; k++) {
        fputs(k ? ", " : "", fp);
        cli_json_nums(fp, L + (size_t)k * K, K);
    }
    fprintf(fp, "],\n  \"hedge\": {\"upper\": ");
    cli_json_num(fp, hedge->upper);
    fprintf(fp, ", \"lower\": ");
    cli_json_num(fp, hedge->lower);
    fprintf(fp, ", \"duality_gap\": ");
    cli_json_num(fp, hedge->gap);
    fprintf(fp, ", \"iterations\": %ld},\n  \"lp_value\": ", hedge->iterations);
    cli_json_num(fp, lp->value);
    fprintf(fp, ",\n  \"policies\": [");
    for (int r = 0; r < n; r++) {
        fprintf(fp, "%s\n    {\"name\": ", r ? "," : "");
        cli_json_str(fp, rows[r].name);
        fprintf(fp, ", \"weights\": ");
        if (rows[r].has_w) cli_json_nums(fp, rows[r].w, K); else fputs("null", fp);
        fprintf(fp, ", \"regret\": ");
        cli_json_nums(fp, rows[r].regret, K);
        fprintf(fp, ", \"max_regret\": ");
        cli_json_num(fp, rows[r].max_regret);
        fputc('}', fp);
    }
    fprintf(fp, "\n  ]\n}\n");
}

/* Regret rows for MMRA, uniform, each single type, and the pooled fit. */
static int build_rows(const agg_args *a, const emdpo_data *d, const cli_fit *fit, const double *L, cli_regret_row *rows,
                      int *n_rows, emdpo_zerosum_result *hedge, emdpo_zerosum_result *lp) {
    int K = fit->K, n = 0;
    emdpo_mmra_hedge_opts ho;
    emdpo_mmra_hedge_defaults(&ho);
    ho.max_iter = a->iters;
    ho.rel_tol = a->tol;
    cli_regret_row *mm = &rows[n++];
    snprintf(mm->name, sizeof mm->name, "MMRA-AE");
    mm->has_w = 1;
    int solver = strcmp(a->solver, "lp") == 0 ? EMDPO_GAME_LP : EMDPO_GAME_HEDGE;
    double w_lp[EMDPO_MAX_K];
    int rc = emdpo_mmra_ae(K, L, EMDPO_GAME_HEDGE, &ho, solver == EMDPO_GAME_HEDGE ? mm->w : w_lp, hedge);
    if (rc && rc != EMDPO_ERR_NOT_CONVERGED) return rc;
    if (rc == EMDPO_ERR_NOT_CONVERGED)
        fprintf(stderr, "emdpo aggregate: note: Hedge stopped at its round cap with duality gap %.3g\n", hedge->gap);
    if ((rc = emdpo_mmra_ae(K, L, EMDPO_GAME_LP, NULL, solver == EMDPO_GAME_LP ? mm->w : w_lp, lp))) return rc;
    emdpo_mmra_mixture_regret(K, L, mm->w, mm->regret);

    cli_regret_row *un = &rows[n++];
    snprintf(un->name, sizeof un->name, "uniform");
    un->has_w = 1;
    for (int k = 0; k < K; k++) un->w[k] = 1.0 / K;
    emdpo_mmra_mixture_regret(K, L, un->w, un->regret);

    for (int j = 0; j < K; j++) {
        cli_regret_row *t = &rows[n++];
        snprintf(t->name, sizeof t->name, "type %d only", j + 1);
        t->has_w = 1;
        for (int k = 0; k < K; k++) t->w[k] = k == j;
        emdpo_mmra_mixture_regret(K, L, t->w, t->regret);
    }

    /* Vanilla DPO: one policy fitted to everyone (K = 1). */
    cli_fit_opts fo;
    cli_fit_opts_default(&fo);
    fo.K = 1;
    fo.seed = a->seed;
    fo.l2 = fit->l2;
    fo.beta = fit->beta;
    emdpo_policy *pooled = NULL;
    emdpo_em_result res;
    if ((rc = cli_fit_loglinear(d, &fo, &pooled, &res))) return rc;
    cli_regret_row *po = &rows[n++];
    snprintf(po->name, sizeof po->name, "pooled (K=1)");
    rc = emdpo_mmra_loglin_regret(d, fit->theta, K, fit->beta, emdpo_loglinear_of(pooled)->theta, po->regret);
    emdpo_em_result_free(&res);
    emdpo_policy_free(pooled);
    for (int r = 0; r < n; r++) cli_regret_row_finish(&rows[r], K);
    *n_rows = n;
    return rc;
}

int cmd_aggregate(int argc, char **argv) {
    if (cli_aggregate_is_llama(argc, argv)) return cli_aggregate_llama(argc, argv);
    agg_args a = {0};
    a.solver = "hedge";
    a.iters_arg = 100000;
    a.tol = 1e-4;
    a.seed = 1;
    cli_opt opts[] = {
        {"fit", CLI_STR, &a.fit, "DIR", "a directory written by emdpo fit (or its fit.json)", 1, 0},
        {"data", CLI_STR, &a.data, "FILE", "prompts and choice sets to average over (default: the fit's data)", 0, 0},
        {"format", CLI_STR, &a.format, "FMT", "jsonl, csv or auto", 0, 0},
        {"solver", CLI_STR, &a.solver, "NAME", "hedge (optimistic Hedge, the paper's) or lp (exact simplex) (hedge)", 0, 0},
        {"iters", CLI_I64, &a.iters_arg, "T", "Hedge round cap (100000)", 0, 0},
        {"tol", CLI_DBL, &a.tol, "X", "Hedge stops when the duality gap <= X * range of regrets (1e-4)", 0, 0},
        {"beta", CLI_DBL, &a.beta, "X", "policy temperature (default: the fit's beta)", 0, 0},
        {"seed", CLI_U64, &a.seed, "S", "seed of the pooled K=1 fit (1)", 0, 0},
        {"out", CLI_STR, &a.out, "DIR", "also write DIR/aggregate.json", 0, 0},
        {"json", CLI_FLAG, &a.json, NULL, "print JSON instead of the table", 0, 0},
        {"threads", CLI_INT, &a.threads, "N", "OpenMP threads (default: all cores)", 0, 0},
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
    if (strcmp(a.solver, "hedge") && strcmp(a.solver, "lp"))
        return cli_usage_error("aggregate", "--solver must be hedge or lp");
    if (a.iters_arg < 1) return cli_usage_error("aggregate", "--iters must be >= 1");
    if (!(a.tol >= 0)) return cli_usage_error("aggregate", "--tol must be >= 0");
    if (opts[6].seen && !(a.beta > 0)) return cli_usage_error("aggregate", "--beta must be > 0");
    a.iters = (long)a.iters_arg;
    cli_set_threads(a.threads);
    cli_fit fit;
    if ((rc = cli_fit_read("aggregate", a.fit, &fit))) return rc;
    if (opts[6].seen) fit.beta = a.beta;
    if (!a.data) a.data = fit.data[0] ? fit.data : NULL;
    if (!a.data) {
        cli_fit_free(&fit);
        return cli_usage_error("aggregate", "the fit names no data file; pass --data");
    }
    emdpo_data *d = NULL;
    if ((rc = cli_load_data("aggregate", a.data, a.format, &d))) {
        cli_fit_free(&fit);
        return rc;
    }
    int K = fit.K;
    double L[EMDPO_MAX_K * EMDPO_MAX_K];
    cli_regret_row *rows = emdpo_calloc(AGG_ROWS, sizeof(cli_regret_row));
    int n_rows = 0;
    emdpo_zerosum_result hedge, lp;
    if (d->p != fit.p) {
        rc = cli_usage_error("aggregate", "%s has %d features per item, the fit has %d", a.data, d->p, fit.p);
    } else if (!rows) {
        rc = cli_fail("aggregate", EMDPO_ERR_NOMEM, NULL, "out of memory");
    } else {
        int lrc = emdpo_mmra_loglin_L(d, fit.theta, K, fit.beta, L);
        if (!lrc) lrc = build_rows(&a, d, &fit, L, rows, &n_rows, &hedge, &lp);
        if (lrc) rc = cli_fail("aggregate", lrc, NULL, "aggregation failed");
    }
    if (!rc) {
        if (a.json) {
            write_json(stdout, &a, &fit, L, rows, n_rows, &hedge, &lp);
        } else {
            printf("MMRA-AE over %d types on %lld decisions (beta = %g)\n", K, (long long)d->n_dec, fit.beta);
            printf("optimistic Hedge: %ld rounds, duality gap %.3g; exact LP min-max regret %.6f\n\n",
                   hedge.iterations, hedge.gap, lp.value);
            cli_regret_table_print(rows, n_rows, K);
        }
        if (a.out && !(rc = cli_mkdirs("aggregate", a.out))) {
            char path[4200];
            emdpo_afile af;
            snprintf(path, sizeof path, "%s/aggregate.json", a.out);
            if (emdpo_afile_open(&af, path)) {
                rc = cli_usage_error("aggregate", "cannot write %s", path);
            } else {
                write_json(af.fp, &a, &fit, L, rows, n_rows, &hedge, &lp);
                if (emdpo_afile_commit(&af)) rc = cli_usage_error("aggregate", "cannot write %s", path);
            }
        }
    }
    emdpo_free(rows, AGG_ROWS * sizeof(cli_regret_row));
    emdpo_data_free(d);
    cli_fit_free(&fit);
    return rc;
}
