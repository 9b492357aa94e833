/* emdpo aggregate on a fit of Llama policies, by --method:
 *  - ae: MMRA-AE (the paper's Algorithm 4) over the K type policies, with L
 *    estimated exactly over the option sets of a dataset's decisions or by
 *    sampling responses (lm_mmra.h). Compared: the uniform mixture, each
 *    type alone and, given, a pooled policy. Writes DIR/aggregate.json and
 *    DIR/mixture.json.
 *  - lw: MMRA-LW (Algorithm 2, lm_mmra_lw.h), one policy trained by DPO
 *    weighted toward the types it serves worst;
 *  - onpolicy: on-policy MMRA (Algorithm 3, lm_mmra_onpolicy.h), one policy
 *    trained by policy gradient on its own responses.
 *    Both write DIR/policy (a Hugging Face checkpoint) and DIR/aggregate.json,
 *    and print a table of the rounds as they finish. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/json.h"
#include "cli.h"
#include "cli_lm.h"
#include "core/mmra.h"
#include "lm/io/llama_hf.h"
#include "lm/mmra/lm_mmra.h"
#include "lm/mmra/lm_mmra_lw.h"
#include "lm/mmra/lm_mmra_onpolicy.h"

typedef struct agg_lm_args {
    const char *fit, *data, *method, *estimator, *pooled, *solver, *out, *optimizer, *select;
    int samples, max_tokens, score_batch, threads, json, rounds, batch, eval_samples;
    int64_t max_prompts, steps, warmup;
    double temperature, eta, lr, clip;
    uint64_t seed;
} agg_lm_args;

#define ROWS_MAX (EMDPO_MAX_K + 3)

int cli_aggregate_is_llama(int argc, char **argv) {
    const char *fit = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--fit") == 0 && i + 1 < argc) fit = argv[i + 1];
        else if (strncmp(argv[i], "--fit=", 6) == 0) fit = argv[i] + 6;
    }
    return fit && cli_lm_fit_is_llama(fit);
}

typedef struct agg_result {
    int K, M, n_rows, sampled;
    int64_t n_dec, draws;
    double *L, *se; /* (K, M) */
    cli_regret_row *rows;
    emdpo_zerosum_result hedge, lp;
} agg_result;

static void write_json(FILE *fp, const agg_lm_args *a, const cli_lm_fit *f, const agg_result *g) {
    int K = g->K, M = g->M;
    fprintf(fp, "{\n  \"family\": \"llama\",\n  \"fit\": ");
    cli_json_str(fp, a->fit);
    fprintf(fp, ",\n  \"data\": ");
    cli_json_str(fp, a->data);
    fprintf(fp, ",\n  \"k\": %d,\n  \"beta\": ", K);
    cli_json_num(fp, f->beta);
    fprintf(fp, ",\n  \"method\": \"ae\",\n  \"estimator\": \"%s\",\n  \"solver\": \"%s\",\n  \"decisions\": %lld",
            a->estimator, a->solver, (long long)g->n_dec);
    if (g->sampled) {
        fprintf(fp, ",\n  \"draws_per_policy\": %lld, \"samples\": %d, \"max_tokens\": %d, \"temperature\": ",
                (long long)g->draws, a->samples, a->max_tokens);
        cli_json_num(fp, a->temperature);
        fprintf(fp, ", \"seed\": %llu", (unsigned long long)a->seed);
    }
    fprintf(fp, ",\n  \"columns\": [");
    for (int b = 0; b < M; b++) {
        fputs(b ? ", " : "", fp);
        cli_json_str(fp, b < K ? f->policy[b] : "pooled");
    }
    fprintf(fp, "],\n  \"L\": [");
    for (int k = 0; k < K; k++) {
        fputs(k ? ", " : "", fp);
        cli_json_nums(fp, g->L + (size_t)k * M, M);
    }
    fprintf(fp, "],\n  \"L_se\": ");
    if (g->sampled) {
        fputc('[', fp);
        for (int k = 0; k < K; k++) {
            fputs(k ? ", " : "", fp);
            cli_json_nums(fp, g->se + (size_t)k * M, M);
        }
        fputc(']', fp);
    } else {
        fputs("null", fp);
    }
    fprintf(fp, ",\n  \"hedge\": {\"upper\": ");
    cli_json_num(fp, g->hedge.upper);
    fprintf(fp, ", \"lower\": ");
    cli_json_num(fp, g->hedge.lower);
    fprintf(fp, ", \"duality_gap\": ");
    cli_json_num(fp, g->hedge.gap);
    fprintf(fp, ", \"iterations\": %ld},\n  \"lp_value\": ", g->hedge.iterations);
    cli_json_num(fp, g->lp.value);
    fprintf(fp, ",\n  \"policies\": [");
    for (int r = 0; r < g->n_rows; r++) {
        const cli_regret_row *row = &g->rows[r];
        fprintf(fp, "%s\n    {\"name\": ", r ? "," : "");
        cli_json_str(fp, row->name);
        fprintf(fp, ", \"weights\": ");
        if (row->has_w) cli_json_nums(fp, row->w, K); else fputs("null", fp);
        fprintf(fp, ", \"regret\": ");
        cli_json_nums(fp, row->regret, K);
        if (g->sampled) {
            fprintf(fp, ", \"regret_se\": ");
            cli_json_nums(fp, row->se, K);
        }
        fprintf(fp, ", \"max_regret\": ");
        cli_json_num(fp, row->max_regret);
        fputc('}', fp);
    }
    fprintf(fp, "\n  ]\n}\n");
}

/* Weights and regrets of every compared policy from L (K, M). */
static int build_rows(const agg_lm_args *a, agg_result *g) {
    int K = g->K, M = g->M, n = 0;
    double LK[EMDPO_MAX_K * EMDPO_MAX_K], w_other[EMDPO_MAX_K];
    for (int z = 0; z < K; z++)
        for (int b = 0; b < K; b++) LK[z * K + b] = g->L[(size_t)z * M + b];
    emdpo_mmra_hedge_opts ho;
    emdpo_mmra_hedge_defaults(&ho);
    int lp = strcmp(a->solver, "lp") == 0;
    cli_regret_row *mm = &g->rows[n++];
    snprintf(mm->name, sizeof mm->name, "MMRA-AE");
    mm->has_w = 1;
    int rc = emdpo_mmra_ae(K, LK, EMDPO_GAME_HEDGE, &ho, lp ? w_other : mm->w, &g->hedge);
    if (rc && rc != EMDPO_ERR_NOT_CONVERGED) return rc;
    if (rc) fprintf(stderr, "emdpo aggregate: note: Hedge stopped at its round cap with duality gap %.3g\n", g->hedge.gap);
    if ((rc = emdpo_mmra_ae(K, LK, EMDPO_GAME_LP, NULL, lp ? mm->w : w_other, &g->lp))) return rc;

    cli_regret_row *un = &g->rows[n++];
    snprintf(un->name, sizeof un->name, "uniform");
    un->has_w = 1;
    for (int k = 0; k < K; k++) un->w[k] = 1.0 / K;
    for (int j = 0; j < K; j++) {
        cli_regret_row *t = &g->rows[n++];
        snprintf(t->name, sizeof t->name, "type %d only", j + 1);
        t->has_w = 1;
        for (int k = 0; k < K; k++) t->w[k] = k == j;
    }
    for (int r = 0; r < n; r++) {
        emdpo_mmra_mixture_regret(K, LK, g->rows[r].w, g->rows[r].regret);
        if (g->sampled) emdpo_lm_mmra_mixture_se(K, M, g->se, g->rows[r].w, g->rows[r].se);
    }
    if (M > K) { /* the pooled policy: regret[z] = L[z][z] - L[z][pooled] */
        cli_regret_row *po = &g->rows[n++];
        snprintf(po->name, sizeof po->name, "pooled");
        for (int z = 0; z < K; z++) {
            const double *Lz = g->L + (size_t)z * M, *Sz = g->se + (size_t)z * M;
            po->regret[z] = Lz[z] - Lz[K];
            if (g->sampled) po->se[z] = sqrt(Sz[z] * Sz[z] + Sz[K] * Sz[K]);
        }
    }
    for (int r = 0; r < n; r++) cli_regret_row_finish(&g->rows[r], K);
    g->n_rows = n;
    return EMDPO_OK;
}

static int given(const cli_opt *opts, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(opts[i].name, name) == 0) return opts[i].seen;
    return 0;
}

/* Flags that belong to other methods are refused, not ignored. */
static int check_method(const agg_lm_args *a, const cli_opt *opts, int n) {
    static const char *const trained[] = {"rounds", "eta", "steps", "lr", "batch", "optimizer", "warmup", "clip"};
    const char *m = a->method;
    if (strcmp(m, "ae") && strcmp(m, "lw") && strcmp(m, "onpolicy"))
        return cli_usage_error("aggregate", "--method must be ae, lw or onpolicy");
    int ae = strcmp(m, "ae") == 0, lw = strcmp(m, "lw") == 0;
    for (size_t i = 0; ae && i < sizeof trained / sizeof trained[0]; i++)
        if (given(opts, n, trained[i]))
            return cli_usage_error("aggregate", "--%s applies to --method lw and onpolicy", trained[i]);
    if (!ae && (given(opts, n, "pooled") || given(opts, n, "solver")))
        return cli_usage_error("aggregate", "--pooled and --solver apply to --method ae");
    if (!lw && given(opts, n, "select")) return cli_usage_error("aggregate", "--select applies to --method lw");
    if (lw || ae) {
        if (given(opts, n, "eval-samples"))
            return cli_usage_error("aggregate", "--eval-samples applies to --method onpolicy");
        return 0;
    }
    if (strcmp(a->estimator, "sample"))
        return cli_usage_error("aggregate", "--method onpolicy samples responses: --estimator must be sample");
    if (given(opts, n, "temperature"))
        return cli_usage_error("aggregate", "--temperature: --method onpolicy samples the policy itself");
    return 0;
}

static int check_args(const agg_lm_args *a) {
    if (strcmp(a->estimator, "exact") && strcmp(a->estimator, "sample"))
        return cli_usage_error("aggregate", "--estimator must be exact or sample");
    if (strcmp(a->solver, "hedge") && strcmp(a->solver, "lp"))
        return cli_usage_error("aggregate", "--solver must be hedge or lp");
    if (a->samples < 1) return cli_usage_error("aggregate", "--samples must be >= 1");
    if (a->max_tokens < 1) return cli_usage_error("aggregate", "--max-tokens must be >= 1");
    if (!(a->temperature > 0) || !isfinite(a->temperature))
        return cli_usage_error("aggregate", "--temperature must be > 0");
    if (a->max_prompts < 0) return cli_usage_error("aggregate", "--max-prompts must be >= 0");
    if (a->score_batch < 1) return cli_usage_error("aggregate", "--score-batch must be >= 1");
    if (strcmp(a->method, "ae") == 0) return 0;
    if (a->rounds < 1) return cli_usage_error("aggregate", "--rounds must be >= 1");
    if (!(a->eta > 0) || !isfinite(a->eta)) return cli_usage_error("aggregate", "--eta must be > 0");
    if (a->steps < 1) return cli_usage_error("aggregate", "--steps must be >= 1");
    if (!(a->lr >= 0) || !isfinite(a->lr)) return cli_usage_error("aggregate", "--lr must be >= 0");
    if (a->batch < 1) return cli_usage_error("aggregate", "--batch must be >= 1");
    if (emdpo_optim_parse(a->optimizer) < 0)
        return cli_usage_error("aggregate", "--optimizer must be rmsprop or adamw, not '%s'", a->optimizer);
    if (a->warmup < 0) return cli_usage_error("aggregate", "--warmup must be >= 0");
    if (!(a->clip >= 0) || !isfinite(a->clip)) return cli_usage_error("aggregate", "--clip must be >= 0");
    if (strcmp(a->select, "best") && strcmp(a->select, "last"))
        return cli_usage_error("aggregate", "--select must be best or last");
    if (strcmp(a->method, "onpolicy") == 0 && a->samples < 2)
        return cli_usage_error("aggregate", "--samples must be >= 2 for --method onpolicy (leave-one-out baseline)");
    if (a->eval_samples < 0) return cli_usage_error("aggregate", "--eval-samples must be >= 0");
    return 0;
}

/* aggregate.json, then mixture.json (members relative to out when out is
 * the fit's directory, else the fit's paths). */
static int write_outputs(const agg_lm_args *a, const cli_lm_fit *f, const agg_result *g) {
    char path[4200], rdir[4096], rfit[4096];
    int same = realpath(a->out, rdir) && realpath(f->dir, rfit) && strcmp(rdir, rfit) == 0;
    emdpo_afile af;
    snprintf(path, sizeof path, "%s/aggregate.json", a->out);
    if (emdpo_afile_open(&af, path)) return cli_usage_error("aggregate", "cannot write %s", path);
    write_json(af.fp, a, f, g);
    if (emdpo_afile_commit(&af)) return cli_usage_error("aggregate", "cannot write %s", path);
    static char members[EMDPO_MAX_K][4400];
    const char *mp[EMDPO_MAX_K];
    for (int k = 0; k < g->K; k++) {
        if (same) snprintf(members[k], sizeof members[k], "%s", f->policy[k]);
        else snprintf(members[k], sizeof members[k], "%s/%s", rfit, f->policy[k]);
        mp[k] = members[k];
    }
    snprintf(path, sizeof path, "%s/mixture.json", a->out);
    int rc = emdpo_lm_mixture_write(path, g->K, g->rows[0].w, mp, f->beta, f->model);
    return rc ? cli_fail("aggregate", rc, NULL, "cannot write mixture.json") : 0;
}

/* The reference, the tokenizer, the K types and then M - K other policies
 * (the pooled one), and the data. */
typedef struct agg_inputs {
    int M;
    emdpo_llama *ref, *pol[EMDPO_MAX_K + 1];
    emdpo_tokenizer *tok;
    emdpo_data *d;
} agg_inputs;

static int load_inputs(const agg_lm_args *a, const cli_lm_fit *f, int M, agg_inputs *in) {
    char path[4400];
    int rc;
    in->M = M;
    if ((rc = cli_lm_model("aggregate", f->model, NULL, 0, &in->ref)) ||
        (rc = cli_lm_tokenizer("aggregate", f->tokenizer, in->ref->config.vocab_size, &in->tok)))
        return rc;
    for (int b = 0; b < M; b++) {
        if (b < f->K) snprintf(path, sizeof path, "%s/%s", f->dir, f->policy[b]);
        else snprintf(path, sizeof path, "%s", a->pooled);
        if ((rc = cli_lm_model("aggregate", path, NULL, 0, &in->pol[b]))) return rc;
        if (in->pol[b]->config.vocab_size != in->ref->config.vocab_size)
            return cli_usage_error("aggregate", "%s: vocabulary %d, the reference's is %d", path,
                                   in->pol[b]->config.vocab_size, in->ref->config.vocab_size);
    }
    return cli_load_data("aggregate", a->data, "jsonl", &in->d);
}

static void free_inputs(agg_inputs *in) {
    emdpo_data_free(in->d);
    for (int b = 0; b < in->M; b++) emdpo_llama_free(in->pol[b]);
    emdpo_tokenizer_free(in->tok);
    emdpo_llama_free(in->ref);
}

static int aggregate_ae(const agg_lm_args *a, const cli_lm_fit *f) {
    int K = f->K, M = K + (a->pooled != NULL), rc;
    agg_inputs in = {0};
    agg_result g = {0};
    g.K = K;
    g.M = M;
    g.sampled = strcmp(a->estimator, "sample") == 0;
    size_t nl = (size_t)K * M;
    if ((rc = load_inputs(a, f, M, &in))) goto done;
    if (!g.sampled && !emdpo_data_has_text(in.d)) {
        rc = cli_usage_error("aggregate", "%s: responses have no text; the exact estimator needs text", a->data);
        goto done;
    }
    g.n_dec = in.d->n_dec;
    g.L = emdpo_calloc(nl, sizeof *g.L);
    g.se = emdpo_calloc(nl, sizeof *g.se);
    g.rows = emdpo_calloc(ROWS_MAX, sizeof *g.rows);
    if (!g.L || !g.se || !g.rows) {
        rc = cli_fail("aggregate", EMDPO_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    emdpo_lm_mmra_opts mo;
    emdpo_lm_mmra_opts_default(&mo);
    mo.beta = f->beta;
    mo.max_length = f->max_length;
    mo.max_prompt_length = f->max_prompt_length;
    mo.score_batch = a->score_batch;
    mo.samples = a->samples;
    mo.max_tokens = a->max_tokens;
    mo.temperature = (float)a->temperature;
    mo.max_prompts = a->max_prompts;
    mo.seed = a->seed;
    const emdpo_llama *const *cp = (const emdpo_llama *const *)in.pol;
    int lrc = g.sampled ? emdpo_lm_mmra_sample(cp, K, M, in.ref, in.tok, in.d, &mo, g.L, g.se, &g.draws)
                        : emdpo_lm_mmra_exact(cp, K, M, in.ref, in.tok, in.d, &mo, g.L);
    if (lrc == EMDPO_ERR_LIMIT) {
        rc = cli_fail("aggregate", lrc, NULL, "a sequence does not fit a model (context or vocabulary)");
        goto done;
    }
    if (!lrc) lrc = build_rows(a, &g);
    if (lrc) {
        rc = cli_fail("aggregate", lrc, NULL, "aggregation failed");
        goto done;
    }
    if (a->json) {
        write_json(stdout, a, f, &g);
    } else {
        printf("MMRA-AE over %d Llama types on %lld decisions (beta = %g, %s estimator", K, (long long)in.d->n_dec,
               f->beta, a->estimator);
        if (g.sampled) printf(", %lld draws per policy", (long long)g.draws);
        printf(")\noptimistic Hedge: %ld rounds, duality gap %.3g; exact LP min-max regret %.6f\n\n",
               g.hedge.iterations, g.hedge.gap, g.lp.value);
        cli_regret_table_print(g.rows, g.n_rows, K);
    }
    if (!(rc = cli_mkdirs("aggregate", a->out))) rc = write_outputs(a, f, &g);
done:
    emdpo_free(g.L, nl * sizeof *g.L);
    emdpo_free(g.se, nl * sizeof *g.se);
    emdpo_free(g.rows, ROWS_MAX * sizeof *g.rows);
    free_inputs(&in);
    return rc;
}

/* ---- lw and onpolicy: one trained policy -------------------------------------- */

/* What the two training methods report, in one shape. */
typedef struct trained_result {
    int lw, sampled, chosen;
    emdpo_lm_mmra_round start, final, *rounds;
    const double *value; /* onpolicy: V_k */
    int64_t n_dec;
} trained_result;

typedef struct progress_ctx {
    int lw, json;
    double t0;
} progress_ctx;

static void print_header(const progress_ctx *p, int K) {
    printf("%-6s", "round");
    for (int k = 0; k < K; k++) printf("   w%-4d", k + 1);
    for (int k = 0; k < K; k++) printf("  regret%-3d", k + 1);
    printf("  max regret  %9s%s  time(s)\n", p->lw ? "DPO loss" : "objective", p->lw ? "" : "         kl");
}

static void print_round(void *ud, const emdpo_lm_mmra_round *r, int K) {
    const progress_ctx *p = ud;
    if (p->json) return;
    if (r->round) printf("%-6d", r->round); else printf("%-6s", "start");
    for (int k = 0; k < K; k++) printf(" %7.4f", r->w[k]);
    for (int k = 0; k < K; k++) printf("  %9.5f", r->regret[k]);
    printf("  %10.5f", r->max_regret);
    if (isnan(r->loss)) printf("  %9s", "-"); else printf("  %9.5f", r->loss);
    if (!p->lw) {
        if (isnan(r->kl)) printf("  %9s", "-"); else printf("  %9.5f", r->kl);
    }
    printf("  %7.1f\n", cli_now() - p->t0);
    fflush(stdout);
}

static void json_round(FILE *fp, const emdpo_lm_mmra_round *r, int K, int sampled, int lw) {
    fprintf(fp, "{\"round\": %d, \"w\": ", r->round);
    cli_json_nums(fp, r->w, K);
    fprintf(fp, ", \"regret\": ");
    cli_json_nums(fp, r->regret, K);
    fprintf(fp, ", \"regret_se\": ");
    if (sampled) cli_json_nums(fp, r->regret_se, K); else fputs("null", fp);
    fprintf(fp, ", \"max_regret\": ");
    cli_json_num(fp, r->max_regret);
    fprintf(fp, ", \"%s\": ", lw ? "dpo_loss" : "objective");
    cli_json_num(fp, r->loss);
    if (!lw) {
        fprintf(fp, ", \"kl\": ");
        cli_json_num(fp, r->kl);
    }
    fputc('}', fp);
}

static void write_json_trained(FILE *fp, const agg_lm_args *a, const cli_lm_fit *f, const trained_result *t) {
    int K = f->K, lw = t->lw;
    /* Per-round regrets of onpolicy come from its steps' batches: no standard errors. */
    int round_se = lw && t->sampled;
    fprintf(fp, "{\n  \"family\": \"llama\",\n  \"fit\": ");
    cli_json_str(fp, a->fit);
    fprintf(fp, ",\n  \"data\": ");
    cli_json_str(fp, a->data);
    fprintf(fp, ",\n  \"k\": %d,\n  \"beta\": ", K);
    cli_json_num(fp, f->beta);
    fprintf(fp, ",\n  \"method\": \"%s\",\n  \"estimator\": \"%s\",\n  \"decisions\": %lld,\n", a->method,
            a->estimator, (long long)t->n_dec);
    fprintf(fp, "  \"settings\": {\"rounds\": %d, \"eta\": ", a->rounds);
    cli_json_num(fp, a->eta);
    fprintf(fp, ", \"steps\": %lld, \"optimizer\": \"%s\", \"lr\": ", (long long)a->steps, a->optimizer);
    cli_json_num(fp, a->lr);
    fprintf(fp, ", \"warmup\": %lld, \"clip\": ", (long long)a->warmup);
    cli_json_num(fp, a->clip);
    fprintf(fp, ", \"batch\": %d, \"seed\": %llu, \"max_length\": %d, \"max_prompt_length\": %d, \"score_batch\": %d",
            a->batch, (unsigned long long)a->seed, f->max_length, f->max_prompt_length, a->score_batch);
    if (lw) fprintf(fp, ", \"accum\": %d, \"start\": \"warm\", \"select\": \"%s\"", f->accum, a->select);
    if (t->sampled) {
        fprintf(fp, ", \"samples\": %d, \"max_tokens\": %d, \"max_prompts\": %lld", a->samples, a->max_tokens,
                (long long)a->max_prompts);
        if (lw) {
            fprintf(fp, ", \"temperature\": ");
            cli_json_num(fp, a->temperature);
        } else {
            fprintf(fp, ", \"eval_samples\": %d", a->eval_samples ? a->eval_samples : a->samples);
        }
    }
    fprintf(fp, "},\n  \"policies\": [");
    for (int k = 0; k < K; k++) {
        fputs(k ? ", " : "", fp);
        cli_json_str(fp, f->policy[k]);
    }
    fprintf(fp, "],\n");
    if (t->value) {
        fprintf(fp, "  \"value\": ");
        cli_json_nums(fp, t->value, K);
        fprintf(fp, ",\n");
    }
    fprintf(fp, "  \"start\": ");
    json_round(fp, &t->start, K, t->sampled, lw);
    fprintf(fp, ",\n  \"rounds\": [");
    for (int r = 0; r < a->rounds; r++) {
        fprintf(fp, "%s\n    ", r ? "," : "");
        json_round(fp, &t->rounds[r], K, round_se, lw);
    }
    fprintf(fp, "\n  ],\n  \"returned_round\": %d,\n  \"final\": ", t->chosen);
    json_round(fp, &t->final, K, t->sampled, lw);
    fprintf(fp, ",\n  \"policy\": \"policy\"\n}\n");
}

/* The posterior of each decision's annotator, (n_dec, K), from the fit's
 * posterior.csv. */
static int read_gamma(const cli_lm_fit *f, const emdpo_data *d, double **out) {
    char path[4200], col[32];
    size_t n = (size_t)d->n_dec * (size_t)f->K;
    double *g = emdpo_malloc(n * sizeof *g);
    if (!g) return cli_fail("aggregate", EMDPO_ERR_NOMEM, NULL, "out of memory");
    snprintf(path, sizeof path, "%s/posterior.csv", f->dir);
    for (int k = 0; k < f->K; k++) {
        double *wk = NULL;
        snprintf(col, sizeof col, "gamma_%d", k + 1);
        int rc = cli_lm_weights("aggregate", path, col, d, &wk);
        if (rc) {
            emdpo_free(g, n * sizeof *g);
            return rc;
        }
        for (int64_t j = 0; j < d->n_dec; j++) g[(size_t)j * f->K + k] = wk[j];
        emdpo_free(wk, (size_t)d->n_dec * sizeof *wk);
    }
    *out = g;
    return 0;
}

static void optim_from_args(const agg_lm_args *a, emdpo_optim_config *c) {
    emdpo_optim_config_default(c, (emdpo_optim_kind)emdpo_optim_parse(a->optimizer));
    c->lr = a->lr;
    c->warmup = a->warmup;
    c->clip = a->clip;
}

static int run_lw(const agg_lm_args *a, const cli_lm_fit *f, const agg_inputs *in, const double *gamma, progress_ctx *pc,
                  emdpo_llama *pi, trained_result *t) {
    emdpo_lm_mmra_lw_opts o;
    emdpo_lm_mmra_lw_opts_default(&o);
    o.rounds = a->rounds;
    o.eta = a->eta;
    o.steps = a->steps;
    o.beta = f->beta;
    optim_from_args(a, &o.optim);
    o.batch = a->batch;
    o.accum = f->accum;
    o.max_length = f->max_length;
    o.max_prompt_length = f->max_prompt_length;
    o.seed = a->seed;
    o.estimator = t->sampled ? EMDPO_LM_REGRET_SAMPLE : EMDPO_LM_REGRET_EXACT;
    o.regret.score_batch = a->score_batch;
    o.regret.samples = a->samples;
    o.regret.max_tokens = a->max_tokens;
    o.regret.temperature = (float)a->temperature;
    o.regret.max_prompts = a->max_prompts;
    o.regret.seed = a->seed;
    o.select = strcmp(a->select, "last") == 0 ? EMDPO_LM_LW_LAST : EMDPO_LM_LW_BEST;
    o.progress = print_round;
    o.progress_ud = pc;
    emdpo_lm_mmra_lw_result res;
    res.rounds = t->rounds;
    int rc = emdpo_lm_mmra_lw(in->ref, (const emdpo_llama *const *)in->pol, f->K, in->tok, in->d, gamma, &o, pi, &res);
    t->start = res.start;
    t->final = res.final;
    t->chosen = res.chosen;
    return rc;
}

static int run_onpolicy(const agg_lm_args *a, const cli_lm_fit *f, const agg_inputs *in, progress_ctx *pc,
                        emdpo_llama *pi, trained_result *t, double *value) {
    emdpo_lm_mmra_op_opts o;
    emdpo_lm_mmra_op_opts_default(&o);
    o.rounds = a->rounds;
    o.steps = a->steps;
    o.eta = a->eta;
    o.beta = f->beta;
    optim_from_args(a, &o.optim);
    o.batch = a->batch;
    o.samples = a->samples;
    o.eval_samples = a->eval_samples;
    o.max_tokens = a->max_tokens;
    o.max_length = f->max_length;
    o.max_prompt_length = f->max_prompt_length;
    o.max_prompts = a->max_prompts;
    o.score_batch = a->score_batch;
    o.seed = a->seed;
    o.progress = print_round;
    o.progress_ud = pc;
    emdpo_lm_mmra_op_result res;
    res.rounds = t->rounds;
    int rc = emdpo_lm_mmra_onpolicy(in->ref, (const emdpo_llama *const *)in->pol, f->K, in->tok, in->d, &o, pi, &res);
    t->start = res.start;
    t->final = res.final;
    t->chosen = res.final.round;
    memcpy(value, res.value, (size_t)f->K * sizeof *value);
    t->value = value;
    return rc;
}

/* DIR/policy, then DIR/aggregate.json: a directory with aggregate.json is
 * complete. */
static int write_trained(const agg_lm_args *a, const cli_lm_fit *f, const emdpo_llama *pi, const trained_result *t) {
    char path[4200];
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    snprintf(path, sizeof path, "%s/policy", a->out);
    int rc = emdpo_llama_hf_save(pi, path, &diag);
    if (rc) return cli_fail("aggregate", rc, &diag, "cannot save the policy");
    emdpo_afile af;
    snprintf(path, sizeof path, "%s/aggregate.json", a->out);
    if (emdpo_afile_open(&af, path)) return cli_usage_error("aggregate", "cannot write %s", path);
    write_json_trained(af.fp, a, f, t);
    if (emdpo_afile_commit(&af)) return cli_usage_error("aggregate", "cannot write %s", path);
    return 0;
}

static void print_summary(const agg_lm_args *a, const trained_result *t, int K) {
    const char *why = !t->lw ? "the last; regrets estimated afresh"
                      : strcmp(a->select, "last") == 0 ? "the last" : "smallest max regret";
    printf("\nreturned: round %d (%s): regrets", t->chosen, why);
    for (int k = 0; k < K; k++) printf(" %.5f", t->final.regret[k]);
    printf(", max regret %.5f\nweights after the last round:", t->final.max_regret);
    for (int k = 0; k < K; k++) printf(" %.4f", t->final.w[k]);
    printf("\npolicy: %s/policy\n", a->out);
}

static int aggregate_trained(const agg_lm_args *a, const cli_lm_fit *f) {
    int K = f->K, lw = strcmp(a->method, "lw") == 0, rc;
    agg_inputs in = {0};
    emdpo_llama *pi = NULL;
    double value[EMDPO_MAX_K], *gamma = NULL;
    trained_result t = {0};
    t.lw = lw;
    t.sampled = strcmp(a->estimator, "sample") == 0;
    size_t nr = (size_t)a->rounds;
    if ((rc = load_inputs(a, f, K, &in))) goto done;
    t.n_dec = in.d->n_dec;
    if (lw && !emdpo_data_has_text(in.d)) {
        rc = cli_usage_error("aggregate", "%s: responses have no text; --method lw trains on them", a->data);
        goto done;
    }
    if (lw && (rc = read_gamma(f, in.d, &gamma))) goto done;
    for (int k = 0; !lw && k < K; k++)
        if (memcmp(&in.pol[k]->config, &in.ref->config, sizeof in.ref->config)) {
            rc = cli_usage_error("aggregate", "%s/%s: its architecture differs from the SFT model's; --method "
                                 "onpolicy needs fine-tuned copies of it", f->dir, f->policy[k]);
            goto done;
        }
    t.rounds = emdpo_calloc(nr, sizeof *t.rounds);
    if (!t.rounds || emdpo_llama_create(&in.ref->config, &pi)) {
        rc = cli_fail("aggregate", EMDPO_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    progress_ctx pc = {lw, a->json, cli_now()};
    if (!a->json) {
        printf("%s over %d Llama types on %lld decisions (beta = %g, %s regrets, %d rounds of %lld steps, eta %g)\n\n",
               lw ? "MMRA-LW" : "on-policy MMRA", K, (long long)in.d->n_dec, f->beta, a->estimator, a->rounds,
               (long long)a->steps, a->eta);
        print_header(&pc, K);
    }
    int lrc = lw ? run_lw(a, f, &in, gamma, &pc, pi, &t) : run_onpolicy(a, f, &in, &pc, pi, &t, value);
    if (lrc) {
        if (lrc == EMDPO_ERR_LIMIT)
            rc = cli_fail("aggregate", lrc, NULL, "a sequence does not fit a model (context or vocabulary)");
        else if (lrc == EMDPO_ERR_NUMERIC)
            rc = cli_fail("aggregate", lrc, NULL, "training diverged or an estimate is not finite (a smaller --lr?)");
        else
            rc = cli_fail("aggregate", lrc, NULL, "aggregation failed");
        goto done;
    }
    if (a->json) write_json_trained(stdout, a, f, &t);
    else print_summary(a, &t, K);
    if (!(rc = cli_mkdirs("aggregate", a->out))) rc = write_trained(a, f, pi, &t);
done:
    if (gamma) emdpo_free(gamma, (size_t)in.d->n_dec * (size_t)K * sizeof *gamma);
    emdpo_free(t.rounds, nr * sizeof *t.rounds);
    emdpo_llama_free(pi);
    free_inputs(&in);
    return rc;
}

/* Defaults of the training methods, some from the fit's M-step. */
static void trained_defaults(agg_lm_args *a, const cli_lm_fit *f, const cli_opt *opts, int n) {
    int lw = strcmp(a->method, "lw") == 0;
    if (!given(opts, n, "steps")) a->steps = lw ? 10 : 1;
    if (!given(opts, n, "batch")) a->batch = lw ? f->batch : 4;
    if (!given(opts, n, "lr")) a->lr = f->lr;
    if (!given(opts, n, "clip")) a->clip = f->clip;
    if (!a->optimizer) a->optimizer = f->optimizer;
    if (!a->out) {
        static char out[4200];
        snprintf(out, sizeof out, "%s/mmra_%s", f->dir, a->method);
        a->out = out;
    }
}

int cli_aggregate_llama(int argc, char **argv) {
    agg_lm_args a = {0};
    a.solver = "hedge";
    a.select = "best";
    a.samples = 4;
    a.max_tokens = 64;
    a.temperature = 1.0;
    a.score_batch = 16;
    a.seed = 1;
    a.rounds = 5;
    a.eta = 1.0;
    cli_opt opts[] = {
        {"fit", CLI_STR, &a.fit, "DIR", "a directory written by emdpo fit --policy llama (or its fit.json)", 1, 0},
        {"data", CLI_STR, &a.data, "FILE", "decisions giving prompts and option sets (default: the fit's data)", 0, 0},
        {"method", CLI_STR, &a.method, "NAME", "ae: MMRA-AE, the paper's Algorithm 4; lw: MMRA-LW (Algorithm 2); "
                                               "onpolicy: on-policy MMRA (Algorithm 3) (ae)", 0, 0},
        {"estimator", CLI_STR, &a.estimator, "NAME", "exact (over each decision's items) or sample (exact; onpolicy: "
                                                     "sample)", 0, 0},
        {"samples", CLI_INT, &a.samples, "N", "sample: responses per prompt and policy; onpolicy: also per prompt "
                                              "in each step, >= 2 (4)", 0, 0},
        {"max-tokens", CLI_INT, &a.max_tokens, "N", "sample, onpolicy: new tokens per response (64)", 0, 0},
        {"temperature", CLI_DBL, &a.temperature, "X", "sample: 1 samples the policies themselves (1)", 0, 0},
        {"max-prompts", CLI_I64, &a.max_prompts, "N", "sample, onpolicy: the first N decisions' prompts (all)", 0, 0},
        {"seed", CLI_U64, &a.seed, "S", "sample: generation seed; lw, onpolicy: also shuffling (1)", 0, 0},
        {"pooled", CLI_STR, &a.pooled, "DIR", "also compare this single policy (e.g. a vanilla-DPO checkpoint)", 0, 0},
        {"solver", CLI_STR, &a.solver, "NAME", "hedge (optimistic Hedge, the paper's) or lp (exact simplex) (hedge)",
         0, 0},
        {"rounds", CLI_INT, &a.rounds, "N", "lw, onpolicy: rounds of multiplicative weights (5)", 0, 0},
        {"eta", CLI_DBL, &a.eta, "X", "lw, onpolicy: multiplicative-weights rate (1)", 0, 0},
        {"steps", CLI_I64, &a.steps, "N", "lw, onpolicy: optimizer steps per round (lw 10, onpolicy 1)", 0, 0},
        {"lr", CLI_DBL, &a.lr, "X", "lw, onpolicy: learning rate (the fit's M-step's)", 0, 0},
        {"batch", CLI_INT, &a.batch, "N", "lw: decisions per micro-batch (the fit's); onpolicy: prompts per step (4)",
         0, 0},
        {"optimizer", CLI_STR, &a.optimizer, "NAME", "lw, onpolicy: rmsprop or adamw (the fit's)", 0, 0},
        {"warmup", CLI_I64, &a.warmup, "N", "lw, onpolicy: linear warmup steps over the whole run (0)", 0, 0},
        {"clip", CLI_DBL, &a.clip, "X", "lw, onpolicy: max gradient norm, 0 = off (the fit's)", 0, 0},
        {"select", CLI_STR, &a.select, "NAME", "lw: return the round with the smallest max regret (best) or the "
                                               "last (best)", 0, 0},
        {"eval-samples", CLI_INT, &a.eval_samples, "N", "onpolicy: responses per prompt and policy for V_k and the "
                                                        "regrets (--samples)", 0, 0},
        {"score-batch", CLI_INT, &a.score_batch, "N", "sequences per scoring forward (16)", 0, 0},
        {"out", CLI_STR, &a.out, "DIR", "ae: aggregate.json and mixture.json (the fit's directory); lw, onpolicy: "
                                        "aggregate.json and policy/ (FIT/mmra_METHOD)", 0, 0},
        {"json", CLI_FLAG, &a.json, NULL, "print JSON instead of the table", 0, 0},
        {"threads", CLI_INT, &a.threads, "N", "OpenMP threads (default: all cores)", 0, 0},
    };
    int n_opts = (int)(sizeof opts / sizeof opts[0]);
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
                   "lw: from w = 1/K and the SFT model, each round trains one policy by DPO on the data with\n"
                   "each decision weighted sum_k w_k gamma_ik (gamma from posterior.csv), continuing from the\n"
                   "last round (one run: optimizer state and shuffling carry over), then sets\n"
                   "w_k ~ w_k exp(eta R_k). Returns the round with the smallest max regret (--select).\n\n"
                   "onpolicy: each step generates --samples responses to each of --batch prompts from the\n"
                   "policy and takes a policy-gradient step (REINFORCE, leave-one-out baseline) on\n"
                   "sum_k w_k [R_k]^+ + beta KL(pi || pi_ref); after each round w_k ~ w_k exp(eta [R_k]^+).\n"
                   "Returns the last policy, its regrets estimated afresh.\n\n"
                   "lw and onpolicy print a row per round and write DIR/policy (a Hugging Face checkpoint)\n"
                   "and DIR/aggregate.json (settings, every round's w, regrets and max regret, the final\n"
                   "regrets).",
                   opts, n_opts};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (!a.method) a.method = "ae";
    if (!a.estimator) a.estimator = strcmp(a.method, "onpolicy") == 0 ? "sample" : "exact";
    if ((rc = check_method(&a, opts, n_opts))) return rc;
    int ae = strcmp(a.method, "ae") == 0;
    if (ae && (rc = check_args(&a))) return rc;
    cli_set_threads(a.threads);
    static cli_lm_fit f;
    if ((rc = cli_lm_fit_read("aggregate", a.fit, &f))) return rc;
    if (!a.data) a.data = f.data[0] ? f.data : NULL;
    if (!a.data) return cli_usage_error("aggregate", "the fit names no data file; pass --data");
    if (ae) {
        if (!a.out) a.out = f.dir;
        return aggregate_ae(&a, &f);
    }
    trained_defaults(&a, &f, opts, n_opts);
    if ((rc = check_args(&a))) return rc;
    return aggregate_trained(&a, &f);
}
