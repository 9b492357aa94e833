/* emdpo regret: the paper's Table 3. For the K types of a fit of Llama
 * policies and any policies given (checkpoints or mixtures),
 *
 *   R_k(pi) = E_{x, y ~ pi_k}[r_k] - E_{x, y ~ pi}[r_k],
 *   r_k = beta (log pi_k(y|x) - log pi_ref(y|x)),
 *
 * and the max over k. A mixture's expectation is the weighted sum of its
 * members' (lm_mixture.h), so every distinct checkpoint is one column of
 * lm_mmra.h's L, estimated once, and each policy is a weight vector over
 * the columns. */
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
#include "lm/lm_mixture.h"
#include "lm/mmra/lm_mmra.h"

typedef struct reg_args {
    const char *fit, *policies, *data, *estimator, *out;
    int uniform, samples, max_tokens, threads, json;
    int64_t max_prompts;
    uint64_t seed;
} reg_args;

/* An evaluated policy: weight w[i] on column col[i] for i < n. */
typedef struct reg_policy {
    char name[64];
    char *path; /* as given; NULL for the uniform mixture */
    int n, mixture;
    int *col;
    double *w;
    double regret[EMDPO_MAX_K], se[EMDPO_MAX_K], max_regret;
} reg_policy;

/* Columns (distinct checkpoints: the K types first) and policies. */
typedef struct reg_state {
    int K, M, n_pol;
    char **col_path, **col_key; /* (M) what is loaded; its real path */
    size_t path_cap, key_cap, pol_cap;
    reg_policy *pol;
    int64_t n_dec, draws;
    double *L, *se; /* (K, M) */
} reg_state;

/* The column of the checkpoint at path, added when new; -1 when out of
 * memory. Checkpoints are the same when their real paths are. */
static int column(reg_state *s, const char *path) {
    char real[PATH_MAX];
    const char *key = realpath(path, real) ? real : path;
    for (int b = 0; b < s->M; b++)
        if (strcmp(s->col_key[b], key) == 0) return b;
    size_t need = (size_t)s->M + 1;
    if (emdpo_grow((void **)&s->col_path, &s->path_cap, need, sizeof *s->col_path) ||
        emdpo_grow((void **)&s->col_key, &s->key_cap, need, sizeof *s->col_key))
        return -1;
    s->col_path[s->M] = emdpo_strdup(path);
    s->col_key[s->M] = emdpo_strdup(key);
    if (!s->col_path[s->M] || !s->col_key[s->M]) {
        emdpo_strfree(s->col_path[s->M]);
        emdpo_strfree(s->col_key[s->M]);
        return -1;
    }
    return s->M++;
}

/* A new policy of n terms, its name checked and unique; NULL after
 * printing the error (*rc the exit code). */
static reg_policy *policy_add(reg_state *s, const char *name, size_t name_len, const char *path, int n, int *rc) {
    *rc = 0;
    if (name_len == 0 || name_len >= sizeof s->pol[0].name) {
        *rc = cli_usage_error("regret", "--policies: a NAME must have 1 to 63 bytes ('%.*s')", (int)name_len, name);
        return NULL;
    }
    for (int i = 0; i < s->n_pol; i++)
        if (strlen(s->pol[i].name) == name_len && strncmp(s->pol[i].name, name, name_len) == 0) {
            *rc = cli_usage_error("regret", "policy name '%.*s' is given twice", (int)name_len, name);
            return NULL;
        }
    if (emdpo_grow((void **)&s->pol, &s->pol_cap, (size_t)s->n_pol + 1, sizeof *s->pol)) {
        *rc = cli_fail("regret", EMDPO_ERR_NOMEM, NULL, "out of memory");
        return NULL;
    }
    reg_policy *p = &s->pol[s->n_pol];
    memset(p, 0, sizeof *p);
    memcpy(p->name, name, name_len);
    /* Counted at once, so state_free releases whatever was allocated. */
    s->n_pol++;
    p->n = n;
    p->col = emdpo_calloc((size_t)n, sizeof *p->col);
    p->w = emdpo_calloc((size_t)n, sizeof *p->w);
    if (!p->col || !p->w || (path && !(p->path = emdpo_strdup(path)))) {
        *rc = cli_fail("regret", EMDPO_ERR_NOMEM, NULL, "out of memory");
        return NULL;
    }
    return p;
}

/* NAME=PATH: a checkpoint (one column) or a mixture (a column per member). */
static int policy_parse(reg_state *s, const char *spec) {
    const char *eq = strchr(spec, '=');
    if (!eq || !eq[1]) return cli_usage_error("regret", "--policies: expected NAME=PATH, not '%s'", spec);
    const char *path = eq + 1;
    int rc;
    if (!emdpo_lm_mixture_is_file(path)) {
        reg_policy *p = policy_add(s, spec, (size_t)(eq - spec), path, 1, &rc);
        if (!p) return rc;
        p->w[0] = 1.0;
        if ((p->col[0] = column(s, path)) < 0) return cli_fail("regret", EMDPO_ERR_NOMEM, NULL, "out of memory");
        return 0;
    }
    emdpo_lm_mixture *mx = NULL;
    emdpo_diag diag;
    if ((rc = emdpo_lm_mixture_read(path, &mx, &diag))) return cli_fail("regret", rc, &diag, "cannot read the mixture");
    reg_policy *p = policy_add(s, spec, (size_t)(eq - spec), path, mx->K, &rc);
    for (int k = 0; p && !rc && k < mx->K; k++) {
        if (emdpo_lm_mixture_is_file(mx->path[k]))
            rc = cli_usage_error("regret", "%s: member %s is a mixture; members must be checkpoints", path,
                                 mx->member[k]);
        else if ((p->col[k] = column(s, mx->path[k])) < 0)
            rc = cli_fail("regret", EMDPO_ERR_NOMEM, NULL, "out of memory");
        p->w[k] = mx->w[k];
    }
    if (p) p->mixture = 1;
    emdpo_lm_mixture_free(mx);
    return rc;
}

/* The comma-separated --policies list. */
static int policies_parse(reg_state *s, const char *list) {
    char *copy = emdpo_strdup(list);
    if (!copy) return cli_fail("regret", EMDPO_ERR_NOMEM, NULL, "out of memory");
    size_t n = strlen(list) + 1;
    int rc = 0;
    for (char *p = copy, *end; !rc && p; p = end ? end + 1 : NULL) {
        if ((end = strchr(p, ','))) *end = '\0';
        rc = policy_parse(s, p);
    }
    emdpo_free(copy, n);
    return rc;
}

static void state_free(reg_state *s) {
    for (int b = 0; b < s->M; b++) {
        emdpo_strfree(s->col_path[b]);
        emdpo_strfree(s->col_key[b]);
    }
    emdpo_free(s->col_path, s->path_cap * sizeof *s->col_path);
    emdpo_free(s->col_key, s->key_cap * sizeof *s->col_key);
    for (int i = 0; i < s->n_pol; i++) {
        reg_policy *p = &s->pol[i];
        emdpo_free(p->col, p->col ? (size_t)p->n * sizeof *p->col : 0);
        emdpo_free(p->w, p->w ? (size_t)p->n * sizeof *p->w : 0);
        emdpo_strfree(p->path);
    }
    emdpo_free(s->pol, s->pol_cap * sizeof *s->pol);
    emdpo_free(s->L, s->L ? (size_t)s->K * s->M * sizeof *s->L : 0);
    emdpo_free(s->se, s->se ? (size_t)s->K * s->M * sizeof *s->se : 0);
}

/* Every column's model (the reference's vocabulary), and each mixture's
 * members sharing one vocabulary and context length. */
static int load_columns(const reg_state *s, const emdpo_llama *ref, emdpo_llama **pol) {
    int rc;
    for (int b = 0; b < s->M; b++) {
        if ((rc = cli_lm_model("regret", s->col_path[b], NULL, 0, &pol[b]))) return rc;
        if (pol[b]->config.vocab_size != ref->config.vocab_size)
            return cli_usage_error("regret", "%s: vocabulary %d, the reference's is %d", s->col_path[b],
                                   pol[b]->config.vocab_size, ref->config.vocab_size);
    }
    for (int i = 0; i < s->n_pol; i++) {
        const reg_policy *p = &s->pol[i];
        if (!p->mixture) continue;
        const emdpo_llama **members = emdpo_malloc((size_t)p->n * sizeof *members);
        if (!members) return cli_fail("regret", EMDPO_ERR_NOMEM, NULL, "out of memory");
        for (int k = 0; k < p->n; k++) members[k] = pol[p->col[k]];
        emdpo_diag diag;
        memset(&diag, 0, sizeof diag);
        rc = emdpo_lm_mixture_check(members, p->n, &diag);
        emdpo_free(members, (size_t)p->n * sizeof *members);
        if (rc) return cli_usage_error("regret", "%s: %s", p->path ? p->path : p->name, diag.msg);
    }
    return 0;
}

/* The first n decisions of d (text only), for the exact estimator. */
static int first_decisions(const emdpo_data *d, int64_t n, emdpo_data **out) {
    emdpo_builder *b = NULL;
    int rc = emdpo_builder_create(0, &b);
    for (int64_t j = 0, a = 0; !rc && j < n; j++) {
        while (d->annot_dec[a + 1] <= j) a++;
        rc = emdpo_builder_add(b, d->annot_name[a], NULL, d->dec_prompt ? d->dec_prompt[j] : NULL,
                               emdpo_dec_n_items(d, j), d->dec_stages[j], NULL,
                               (const char *const *)d->item_text + d->dec_item[j]);
    }
    if (rc) {
        emdpo_builder_free(b);
        return rc;
    }
    return emdpo_builder_finish(b, out);
}

/* Each policy's regrets from L: its weights spread over the columns. */
static int regrets(reg_state *s, int sampled) {
    double *w = emdpo_calloc((size_t)s->M, sizeof *w);
    if (!w) return EMDPO_ERR_NOMEM;
    for (int i = 0; i < s->n_pol; i++) {
        reg_policy *p = &s->pol[i];
        memset(w, 0, (size_t)s->M * sizeof *w);
        for (int j = 0; j < p->n; j++) w[p->col[j]] += p->w[j];
        emdpo_lm_mixture_regret(s->K, s->M, s->L, sampled ? s->se : NULL, w, p->regret, p->se);
        p->max_regret = -INFINITY;
        for (int k = 0; k < s->K; k++) p->max_regret = fmax(p->max_regret, p->regret[k]);
    }
    emdpo_free(w, (size_t)s->M * sizeof *w);
    return EMDPO_OK;
}

static void print_table(const reg_args *a, const cli_lm_fit *f, const reg_state *s, int sampled) {
    int width = 6;
    for (int i = 0; i < s->n_pol; i++)
        if ((int)strlen(s->pol[i].name) > width) width = (int)strlen(s->pol[i].name);
    printf("Regret of each type over %lld decisions (beta = %g, %s estimator", (long long)s->n_dec, f->beta,
           a->estimator);
    if (sampled) printf(", %lld draws per policy, standard errors in parentheses", (long long)s->draws);
    printf(")\n\n%-*s", width, "policy");
    for (int k = 0; k < s->K; k++) {
        char h[16];
        snprintf(h, sizeof h, "R_%d", k + 1);
        printf("  %*s", sampled ? 21 : 10, h);
    }
    printf("  %10s\n", "max regret");
    for (int i = 0; i < s->n_pol; i++) {
        const reg_policy *p = &s->pol[i];
        printf("%-*s", width, p->name);
        for (int k = 0; k < s->K; k++) {
            char cell[64];
            if (sampled) snprintf(cell, sizeof cell, "%.5f (%.5f)", p->regret[k], p->se[k]);
            else snprintf(cell, sizeof cell, "%.5f", p->regret[k]);
            printf("  %*s", sampled ? 21 : 10, cell);
        }
        printf("  %10.5f\n", p->max_regret);
    }
    printf("\ntypes:");
    for (int k = 0; k < s->K; k++) printf(" R_%d = %s%s", k + 1, f->policy[k], k + 1 < s->K ? "," : "\n");
}

static void write_json(FILE *fp, const reg_args *a, const cli_lm_fit *f, const reg_state *s, int sampled) {
    fputs("{\"beta\": ", fp);
    cli_json_num(fp, f->beta);
    fprintf(fp, ", \"estimator\": \"%s\", \"types\": [", a->estimator);
    for (int k = 0; k < s->K; k++) {
        fputs(k ? ", " : "", fp);
        cli_json_str(fp, f->policy[k]);
    }
    fputs("],\n \"policies\": [", fp);
    for (int i = 0; i < s->n_pol; i++) {
        const reg_policy *p = &s->pol[i];
        fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", fp);
        cli_json_str(fp, p->name);
        fputs(", \"path\": ", fp);
        cli_json_str(fp, p->path);
        fputs(", \"regret\": ", fp);
        cli_json_nums(fp, p->regret, s->K);
        fputs(", \"se\": ", fp);
        if (sampled) cli_json_nums(fp, p->se, s->K);
        else fputs("null", fp);
        fputs(", \"max_regret\": ", fp);
        cli_json_num(fp, p->max_regret);
        fputc('}', fp);
    }
    fputs("],\n \"fit\": ", fp);
    cli_json_str(fp, a->fit);
    fputs(", \"data\": ", fp);
    cli_json_str(fp, a->data);
    fprintf(fp, ", \"decisions\": %lld", (long long)s->n_dec);
    if (sampled)
        fprintf(fp, ", \"draws_per_policy\": %lld, \"samples\": %d, \"max_tokens\": %d, \"seed\": %llu",
                (long long)s->draws, a->samples, a->max_tokens, (unsigned long long)a->seed);
    fputs("}\n", fp);
}

static int check_args(const reg_args *a) {
    if (strcmp(a->estimator, "exact") && strcmp(a->estimator, "sample"))
        return cli_usage_error("regret", "--estimator must be exact or sample");
    if (!a->policies && !a->uniform)
        return cli_usage_error("regret", "nothing to evaluate: give --policies and/or --uniform");
    if (a->samples < 1) return cli_usage_error("regret", "--samples must be >= 1");
    if (a->max_tokens < 1) return cli_usage_error("regret", "--max-tokens must be >= 1");
    if (a->max_prompts < 0) return cli_usage_error("regret", "--max-prompts must be >= 0");
    return 0;
}

/* Types, the given policies, then the uniform mixture. */
static int build_policies(const reg_args *a, const cli_lm_fit *f, reg_state *s) {
    char path[4400];
    s->K = f->K;
    for (int k = 0; k < f->K; k++) {
        snprintf(path, sizeof path, "%s/%s", f->dir, f->policy[k]);
        int b = column(s, path);
        if (b < 0) return cli_fail("regret", EMDPO_ERR_NOMEM, NULL, "out of memory");
        if (b != k) return cli_usage_error("regret", "%s: the fit names %s twice", f->dir, f->policy[k]);
    }
    int rc = a->policies ? policies_parse(s, a->policies) : 0;
    if (rc || !a->uniform) return rc;
    reg_policy *p = policy_add(s, "uniform", 7, NULL, f->K, &rc);
    for (int k = 0; p && k < f->K; k++) {
        p->col[k] = k;
        p->w[k] = 1.0 / f->K;
    }
    if (p) p->mixture = 1;
    return rc;
}

/* L and its standard errors for the columns over d. */
static int estimate(const reg_args *a, const cli_lm_fit *f, reg_state *s, const emdpo_llama *const *pol,
                    const emdpo_llama *ref, const emdpo_tokenizer *tok, const emdpo_data *d, int sampled) {
    size_t nl = (size_t)s->K * s->M;
    s->L = emdpo_calloc(nl, sizeof *s->L);
    s->se = emdpo_calloc(nl, sizeof *s->se);
    if (!s->L || !s->se) return cli_fail("regret", EMDPO_ERR_NOMEM, NULL, "out of memory");
    emdpo_lm_mmra_opts mo;
    emdpo_lm_mmra_opts_default(&mo);
    mo.beta = f->beta;
    mo.max_length = f->max_length;
    mo.max_prompt_length = f->max_prompt_length;
    mo.samples = a->samples;
    mo.max_tokens = a->max_tokens;
    mo.max_prompts = a->max_prompts;
    mo.seed = a->seed;
    emdpo_data *sub = NULL;
    int rc;
    s->n_dec = a->max_prompts && a->max_prompts < d->n_dec ? a->max_prompts : d->n_dec;
    if (sampled) {
        rc = emdpo_lm_mmra_sample(pol, s->K, s->M, ref, tok, d, &mo, s->L, s->se, &s->draws);
    } else {
        if (s->n_dec < d->n_dec && (rc = first_decisions(d, s->n_dec, &sub)))
            return cli_fail("regret", rc, NULL, "out of memory");
        rc = emdpo_lm_mmra_exact(pol, s->K, s->M, ref, tok, sub ? sub : d, &mo, s->L);
    }
    emdpo_data_free(sub);
    if (rc == EMDPO_ERR_LIMIT) return cli_fail("regret", rc, NULL, "a sequence does not fit a model's context");
    if (!rc) rc = regrets(s, sampled);
    return rc ? cli_fail("regret", rc, NULL, "estimating the regrets") : 0;
}

static int report(const reg_args *a, const cli_lm_fit *f, const reg_state *s, int sampled) {
    if (a->json) write_json(stdout, a, f, s, sampled);
    else print_table(a, f, s, sampled);
    if (fflush(stdout)) return cli_fail("regret", EMDPO_ERR_IO, NULL, "writing standard output");
    if (!a->out) return 0;
    emdpo_afile af;
    if (emdpo_afile_open(&af, a->out)) return cli_usage_error("regret", "cannot write %s", a->out);
    write_json(af.fp, a, f, s, sampled);
    return emdpo_afile_commit(&af) ? cli_usage_error("regret", "cannot write %s", a->out) : 0;
}

int cmd_regret(int argc, char **argv) {
    reg_args a = {0};
    a.estimator = "sample";
    a.samples = 4;
    a.max_tokens = 64;
    a.seed = 1;
    cli_opt opts[] = {
        {"fit", CLI_STR, &a.fit, "DIR", "a directory written by emdpo fit --policy llama (or its fit.json)", 1, 0},
        {"policies", CLI_STR, &a.policies, "NAME=PATH,...", "policies to evaluate: checkpoints (llama2.c .bin or "
                                                              "Hugging Face directory) or mixture.json files", 0, 0},
        {"uniform", CLI_FLAG, &a.uniform, NULL, "also evaluate the uniform mixture of the fit's types", 0, 0},
        {"data", CLI_STR, &a.data, "FILE", "decisions giving the prompts (and option sets) (the fit's data)", 0, 0},
        {"estimator", CLI_STR, &a.estimator, "NAME", "sample (responses drawn from each policy) or exact (over each "
                                                     "decision's items) (sample)", 0, 0},
        {"samples", CLI_INT, &a.samples, "N", "sample: responses per prompt and checkpoint (4)", 0, 0},
        {"max-tokens", CLI_INT, &a.max_tokens, "N", "sample: new tokens per response (64)", 0, 0},
        {"max-prompts", CLI_I64, &a.max_prompts, "N", "the first N decisions only (all)", 0, 0},
        {"seed", CLI_U64, &a.seed, "S", "sample: generation seed (1)", 0, 0},
        {"threads", CLI_INT, &a.threads, "N", "OpenMP threads (default: all cores)", 0, 0},
        {"json", CLI_FLAG, &a.json, NULL, "print JSON instead of the table", 0, 0},
        {"out", CLI_STR, &a.out, "FILE", "also write the JSON here (atomically)", 0, 0},
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
                   "null for exact, path null for the uniform mixture.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = check_args(&a))) return rc;
    cli_set_threads(a.threads);
    static cli_lm_fit f;
    if ((rc = cli_lm_fit_read("regret", a.fit, &f))) return rc;
    if (!a.data) a.data = f.data[0] ? f.data : NULL;
    if (!a.data) return cli_usage_error("regret", "the fit names no data file; pass --data");
    int sampled = strcmp(a.estimator, "sample") == 0;
    reg_state s;
    memset(&s, 0, sizeof s);
    emdpo_llama *ref = NULL, **pol = NULL;
    emdpo_tokenizer *tok = NULL;
    emdpo_data *d = NULL;
    if ((rc = build_policies(&a, &f, &s))) goto done;
    if (!(pol = emdpo_calloc((size_t)s.M, sizeof *pol))) {
        rc = cli_fail("regret", EMDPO_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    if ((rc = cli_lm_model("regret", f.model, NULL, 0, &ref)) ||
        (rc = cli_lm_tokenizer("regret", f.tokenizer, ref->config.vocab_size, &tok)) ||
        (rc = load_columns(&s, ref, pol)) || (rc = cli_load_data("regret", a.data, "jsonl", &d)))
        goto done;
    if (!sampled && !emdpo_data_has_text(d)) {
        rc = cli_usage_error("regret", "%s: responses have no text; the exact estimator needs text", a.data);
        goto done;
    }
    if (!(rc = estimate(&a, &f, &s, (const emdpo_llama *const *)pol, ref, tok, d, sampled)))
        rc = report(&a, &f, &s, sampled);
done:
    for (int b = 0; pol && b < s.M; b++) emdpo_llama_free(pol[b]);
    emdpo_free(pol, pol ? (size_t)s.M * sizeof *pol : 0);
    emdpo_data_free(d);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(ref);
    state_free(&s);
    return rc;
}
