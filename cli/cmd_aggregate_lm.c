/* emdpo aggregate on a fit of Llama policies: MMRA-AE (the paper's
 * Algorithm 4) over the K type policies, with L estimated exactly over the
 * option sets of a dataset's decisions or by sampling responses (lm_mmra.h).
 * Compared: the uniform mixture, each type alone and, given, a pooled
 * policy. Writes DIR/aggregate.json and DIR/mixture.json. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "afile.h"
#include "alloc.h"
#include "cli.h"
#include "cli_lm.h"
#include "json.h"
#include "lm_mmra.h"
#include "mmra.h"

/* What aggregate needs from an LM fit.json. */
typedef struct lm_fit {
    int K, max_length, max_prompt_length;
    double beta;
    char dir[4096], data[4096], model[4096], tokenizer[4096];
    char policy[EMDPO_MAX_K][256];
} lm_fit;

typedef struct agg_lm_args {
    const char *fit, *data, *method, *estimator, *pooled, *solver, *out;
    int samples, max_tokens, score_batch, threads, json;
    int64_t max_prompts;
    double temperature;
    uint64_t seed;
} agg_lm_args;

#define ROWS_MAX (EMDPO_MAX_K + 3)

/* path's fit.json (path a directory) or path itself; the directory the
 * fit's relative paths start from goes to dir. */
static void fit_paths(const char *path, char *file, size_t cap, char *dir) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(file, cap, "%s/fit.json", path);
        snprintf(dir, 4096, "%s", path);
    } else {
        snprintf(file, cap, "%s", path);
        const char *slash = strrchr(path, '/');
        if (slash)
            snprintf(dir, 4096, "%.*s", (int)(slash - path), path);
        else
            snprintf(dir, 4096, ".");
    }
}

static int copy_str(const emdpo_json *v, char *dst, size_t cap) {
    if (!v || v->type != EMDPO_JSON_STRING || v->len >= cap) return -1;
    memcpy(dst, v->u.str, v->len + 1);
    return 0;
}

static int int_field(const emdpo_json *obj, const char *key, int *out) {
    const emdpo_json *v = emdpo_json_get(obj, key);
    if (!v || !v->is_int || v->inum < 0 || v->inum > INT_MAX) return -1;
    *out = (int)v->inum;
    return 0;
}

/* 0 with *root parsed, or -1; the caller frees doc and text. */
static int parse_fit(const char *file, char **text, size_t *len, emdpo_json_doc **doc, const emdpo_json **root) {
    emdpo_json_error err;
    *doc = NULL;
    if (!(*text = cli_read_file(file, len))) return -1;
    if (emdpo_json_doc_create(doc) || emdpo_json_parse(*doc, *text, *len, root, &err)) return -1;
    return (*root)->type == EMDPO_JSON_OBJECT ? 0 : -1;
}

static void parse_free(char *text, size_t len, emdpo_json_doc *doc) {
    emdpo_json_doc_free(doc);
    if (text) emdpo_free(text, len + 1);
}

int cli_aggregate_is_llama(int argc, char **argv) {
    const char *fit = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--fit") == 0 && i + 1 < argc) fit = argv[i + 1];
        else if (strncmp(argv[i], "--fit=", 6) == 0) fit = argv[i] + 6;
    }
    if (!fit) return 0;
    char file[4200], dir[4096], *text = NULL;
    size_t len = 0;
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root = NULL;
    fit_paths(fit, file, sizeof file, dir);
    int llama = 0;
    if (!parse_fit(file, &text, &len, &doc, &root)) {
        const emdpo_json *fam = emdpo_json_get(root, "family");
        llama = fam && fam->type == EMDPO_JSON_STRING && strcmp(fam->u.str, "llama") == 0;
    }
    parse_free(text, len, doc);
    return llama;
}

static int read_lm_fit(const char *path, lm_fit *f) {
    memset(f, 0, sizeof *f);
    char file[4200], *text = NULL;
    size_t len = 0;
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root = NULL;
    fit_paths(path, file, sizeof file, f->dir);
    const char *why = NULL;
    if (parse_fit(file, &text, &len, &doc, &root)) {
        why = "cannot read it as a JSON object";
    } else {
        const emdpo_json *fam = emdpo_json_get(root, "family"), *beta = emdpo_json_get(root, "beta");
        const emdpo_json *pol = emdpo_json_get(root, "policies"), *ms = emdpo_json_get(root, "mstep");
        if (!fam || fam->type != EMDPO_JSON_STRING || strcmp(fam->u.str, "llama"))
            why = "\"family\" is not \"llama\"";
        else if (int_field(root, "k", &f->K) || f->K < 1 || f->K > EMDPO_MAX_K)
            why = "\"k\" must be in 1..64";
        else if (!beta || beta->type != EMDPO_JSON_NUMBER || !(beta->num > 0))
            why = "\"beta\" must be positive";
        else if (copy_str(emdpo_json_get(root, "model"), f->model, sizeof f->model) ||
                 copy_str(emdpo_json_get(root, "tokenizer"), f->tokenizer, sizeof f->tokenizer))
            why = "\"model\" and \"tokenizer\" must be paths";
        else if (!pol || pol->type != EMDPO_JSON_ARRAY || (int)pol->len != f->K)
            why = "\"policies\" must name k checkpoints";
        else if (!ms || int_field(ms, "max_length", &f->max_length) ||
                 int_field(ms, "max_prompt_length", &f->max_prompt_length))
            why = "\"mstep\" lacks max_length and max_prompt_length";
        for (int k = 0; !why && k < f->K; k++)
            if (copy_str(&pol->u.elems[k], f->policy[k], sizeof f->policy[k]) || strchr(f->policy[k], '/'))
                why = "each \"policies\" entry must be a directory name in the fit";
        if (!why) {
            f->beta = beta->num;
            copy_str(emdpo_json_get(root, "data"), f->data, sizeof f->data);
        }
    }
    parse_free(text, len, doc);
    return why ? cli_usage_error("aggregate", "%s: %s", file, why) : 0;
}

typedef struct agg_result {
    int K, M, n_rows, sampled;
    int64_t n_dec, draws;
    double *L, *se; /* (K, M) */
    cli_regret_row *rows;
    emdpo_zerosum_result hedge, lp;
} agg_result;

static void write_json(FILE *fp, const agg_lm_args *a, const lm_fit *f, const agg_result *g) {
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

static int check_args(const agg_lm_args *a) {
    if (a->method && strcmp(a->method, "ae")) return cli_usage_error("aggregate", "--method must be ae");
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
    return 0;
}

/* aggregate.json, then mixture.json (members relative to out when out is
 * the fit's directory, else the fit's paths). */
static int write_outputs(const agg_lm_args *a, const lm_fit *f, const agg_result *g) {
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

int cli_aggregate_llama(int argc, char **argv) {
    agg_lm_args a = {0};
    a.estimator = "exact";
    a.solver = "hedge";
    a.samples = 4;
    a.max_tokens = 64;
    a.temperature = 1.0;
    a.score_batch = 16;
    a.seed = 1;
    cli_opt opts[] = {
        {"fit", CLI_STR, &a.fit, "DIR", "a directory written by emdpo fit --policy llama (or its fit.json)", 1, 0},
        {"data", CLI_STR, &a.data, "FILE", "decisions giving prompts and option sets (default: the fit's data)", 0, 0},
        {"method", CLI_STR, &a.method, "NAME", "ae: MMRA-AE, the paper's Algorithm 4 (ae)", 0, 0},
        {"estimator", CLI_STR, &a.estimator, "NAME", "exact (over each decision's items) or sample (exact)", 0, 0},
        {"samples", CLI_INT, &a.samples, "N", "sample: responses per prompt and policy (4)", 0, 0},
        {"max-tokens", CLI_INT, &a.max_tokens, "N", "sample: new tokens per response (64)", 0, 0},
        {"temperature", CLI_DBL, &a.temperature, "X", "sample: 1 samples the policies themselves (1)", 0, 0},
        {"max-prompts", CLI_I64, &a.max_prompts, "N", "sample: the first N decisions' prompts (all)", 0, 0},
        {"seed", CLI_U64, &a.seed, "S", "sample: generation seed (1)", 0, 0},
        {"pooled", CLI_STR, &a.pooled, "DIR", "also compare this single policy (e.g. a vanilla-DPO checkpoint)", 0, 0},
        {"solver", CLI_STR, &a.solver, "NAME", "hedge (optimistic Hedge, the paper's) or lp (exact simplex) (hedge)",
         0, 0},
        {"score-batch", CLI_INT, &a.score_batch, "N", "sequences per scoring forward (16)", 0, 0},
        {"out", CLI_STR, &a.out, "DIR", "write aggregate.json and mixture.json here (the fit's directory)", 0, 0},
        {"json", CLI_FLAG, &a.json, NULL, "print JSON instead of the table", 0, 0},
        {"threads", CLI_INT, &a.threads, "N", "OpenMP threads (default: all cores)", 0, 0},
    };
    cli_cmd cmd = {"aggregate", "MMRA-AE over a fit's Llama policies: the mixture with the smallest worst-case regret.",
                   "L[z][z'] = E_{x, y ~ pi_z'}[beta (log pi_z(y|x) - log pi_ref(y|x))], the reference being the\n"
                   "fit's SFT model. exact: each decision's items are the option set and pi_z' is restricted to\n"
                   "it (softmax of the sequence log-probabilities); sample: responses generated by each policy\n"
                   "for each decision's prompt, with standard errors in aggregate.json. The (K+1) x K regret\n"
                   "matrix is solved by optimistic Hedge (its duality gap certifies the result) and checked\n"
                   "against an exact LP. Writes DIR/aggregate.json and DIR/mixture.json {kind, weights,\n"
                   "members, beta, reference}.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = check_args(&a))) return rc;
    cli_set_threads(a.threads);
    static lm_fit f;
    if ((rc = read_lm_fit(a.fit, &f))) return rc;
    if (!a.data) a.data = f.data[0] ? f.data : NULL;
    if (!a.data) return cli_usage_error("aggregate", "the fit names no data file; pass --data");
    if (!a.out) a.out = f.dir;
    int K = f.K, M = K + (a.pooled != NULL);
    emdpo_llama *ref = NULL, *pol[EMDPO_MAX_K + 1] = {0};
    emdpo_tokenizer *tok = NULL;
    emdpo_data *d = NULL;
    agg_result g = {0};
    g.K = K;
    g.M = M;
    g.sampled = strcmp(a.estimator, "sample") == 0;
    size_t nl = (size_t)K * M;
    char path[4400];
    if ((rc = cli_lm_model("aggregate", f.model, NULL, 0, &ref)) ||
        (rc = cli_lm_tokenizer("aggregate", f.tokenizer, ref->config.vocab_size, &tok)))
        goto done;
    for (int b = 0; b < M; b++) {
        if (b < K) snprintf(path, sizeof path, "%s/%s", f.dir, f.policy[b]);
        else snprintf(path, sizeof path, "%s", a.pooled);
        if ((rc = cli_lm_model("aggregate", path, NULL, 0, &pol[b]))) goto done;
        if (pol[b]->config.vocab_size != ref->config.vocab_size) {
            rc = cli_usage_error("aggregate", "%s: vocabulary %d, the reference's is %d", path,
                                 pol[b]->config.vocab_size, ref->config.vocab_size);
            goto done;
        }
    }
    if ((rc = cli_load_data("aggregate", a.data, "jsonl", &d))) goto done;
    if (!g.sampled && !emdpo_data_has_text(d)) {
        rc = cli_usage_error("aggregate", "%s: responses have no text; the exact estimator needs text", a.data);
        goto done;
    }
    g.n_dec = d->n_dec;
    g.L = emdpo_calloc(nl, sizeof *g.L);
    g.se = emdpo_calloc(nl, sizeof *g.se);
    g.rows = emdpo_calloc(ROWS_MAX, sizeof *g.rows);
    if (!g.L || !g.se || !g.rows) {
        rc = cli_fail("aggregate", EMDPO_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    emdpo_lm_mmra_opts mo;
    emdpo_lm_mmra_opts_default(&mo);
    mo.beta = f.beta;
    mo.max_length = f.max_length;
    mo.max_prompt_length = f.max_prompt_length;
    mo.score_batch = a.score_batch;
    mo.samples = a.samples;
    mo.max_tokens = a.max_tokens;
    mo.temperature = (float)a.temperature;
    mo.max_prompts = a.max_prompts;
    mo.seed = a.seed;
    const emdpo_llama *const *cp = (const emdpo_llama *const *)pol;
    int lrc = g.sampled ? emdpo_lm_mmra_sample(cp, K, M, ref, tok, d, &mo, g.L, g.se, &g.draws)
                        : emdpo_lm_mmra_exact(cp, K, M, ref, tok, d, &mo, g.L);
    if (lrc == EMDPO_ERR_LIMIT) {
        rc = cli_fail("aggregate", lrc, NULL, "a sequence does not fit a model (context or vocabulary)");
        goto done;
    }
    if (!lrc) lrc = build_rows(&a, &g);
    if (lrc) {
        rc = cli_fail("aggregate", lrc, NULL, "aggregation failed");
        goto done;
    }
    if (a.json) {
        write_json(stdout, &a, &f, &g);
    } else {
        printf("MMRA-AE over %d Llama types on %lld decisions (beta = %g, %s estimator", K, (long long)d->n_dec,
               f.beta, a.estimator);
        if (g.sampled) printf(", %lld draws per policy", (long long)g.draws);
        printf(")\noptimistic Hedge: %ld rounds, duality gap %.3g; exact LP min-max regret %.6f\n\n",
               g.hedge.iterations, g.hedge.gap, g.lp.value);
        cli_regret_table_print(g.rows, g.n_rows, K);
    }
    if (!(rc = cli_mkdirs("aggregate", a.out))) rc = write_outputs(&a, &f, &g);
done:
    emdpo_free(g.L, nl * sizeof *g.L);
    emdpo_free(g.se, nl * sizeof *g.se);
    emdpo_free(g.rows, ROWS_MAX * sizeof *g.rows);
    emdpo_data_free(d);
    for (int b = 0; b < M; b++) emdpo_llama_free(pol[b]);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(ref);
    return rc;
}
