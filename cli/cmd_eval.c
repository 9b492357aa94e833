/* emdpo eval: the paper's Table 1 for ensembles of Llama policies (fit or
 * baseline outputs) on held-out preference data with true groups:
 * max-mean reward margin and the best policy's accuracy per group, and
 * optionally the adjusted Rand index of a posterior against the groups. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "cli.h"
#include "cli_lm.h"
#include "lm/lm_eval.h"

typedef struct eval_args {
    const char *ref, *tokenizer, *data, *policies, *posterior, *out;
    int json, max_length, max_prompt_length, batch, threads;
    double beta;
} eval_args;

/* One method: a directory and the numbers of its type_N subdirectories. */
typedef struct method {
    char *dir;
    const char *name;
    int n, *types;
    double *margin, *acc; /* (n, G) */
    int *best;            /* (G) index into types, -1 when none */
    double *max_margin, *best_acc;
} method;

static int cmp_int(const void *x, const void *y) {
    int a = *(const int *)x, b = *(const int *)y;
    return (a > b) - (a < b);
}

/* The type_N subdirectories holding a config.json, in N order. */
static int list_types(const char *dir, int **types, int *n) {
    DIR *dp = opendir(dir);
    if (!dp) return cli_usage_error("eval", "%s: cannot open the directory", dir);
    int cap = 0, rc = 0;
    *n = 0;
    *types = NULL;
    struct dirent *e;
    while (!rc && (e = readdir(dp))) {
        int k, used = 0;
        char path[4200];
        struct stat st;
        if (sscanf(e->d_name, "type_%d%n", &k, &used) != 1 || e->d_name[used] || k < 1) continue;
        snprintf(path, sizeof path, "%s/%s/config.json", dir, e->d_name);
        if (stat(path, &st) != 0) continue;
        if (*n == cap) {
            int nc = cap ? 2 * cap : 8;
            int *t = emdpo_realloc(*types, (size_t)cap * sizeof *t, (size_t)nc * sizeof *t);
            if (!t) rc = cli_fail("eval", EMDPO_ERR_NOMEM, NULL, "listing policies");
            else {
                *types = t;
                cap = nc;
            }
        }
        if (!rc) (*types)[(*n)++] = k;
    }
    closedir(dp);
    if (!rc && *n == 0) rc = cli_usage_error("eval", "%s: no type_N/ policy directories", dir);
    if (rc) {
        emdpo_free(*types, (size_t)cap * sizeof **types);
        *types = NULL;
        *n = 0;
        return rc;
    }
    qsort(*types, (size_t)*n, sizeof **types, cmp_int);
    /* Trim the capacity so the free size is n. */
    int *t = emdpo_realloc(*types, (size_t)cap * sizeof *t, (size_t)*n * sizeof *t);
    if (t) *types = t;
    else {
        emdpo_free(*types, (size_t)cap * sizeof **types);
        *types = NULL;
        *n = 0;
        return cli_fail("eval", EMDPO_ERR_NOMEM, NULL, "listing policies");
    }
    return 0;
}

static void method_free(method *m, int G) {
    emdpo_free(m->types, (size_t)m->n * sizeof *m->types);
    emdpo_free(m->margin, (size_t)m->n * G * sizeof *m->margin);
    emdpo_free(m->acc, (size_t)m->n * G * sizeof *m->acc);
    emdpo_free(m->best, (size_t)G * sizeof *m->best);
    emdpo_free(m->max_margin, (size_t)G * sizeof *m->max_margin);
    emdpo_free(m->best_acc, (size_t)G * sizeof *m->best_acc);
}

static int eval_method(method *m, const emdpo_llama *ref, emdpo_lm_evaluator *ev, int G) {
    size_t ng = (size_t)m->n * G;
    m->margin = emdpo_malloc(ng * sizeof *m->margin);
    m->acc = emdpo_malloc(ng * sizeof *m->acc);
    m->best = emdpo_malloc((size_t)G * sizeof *m->best);
    m->max_margin = emdpo_malloc((size_t)G * sizeof *m->max_margin);
    m->best_acc = emdpo_malloc((size_t)G * sizeof *m->best_acc);
    if (!m->margin || !m->acc || !m->best || !m->max_margin || !m->best_acc)
        return cli_fail("eval", EMDPO_ERR_NOMEM, NULL, "tables");
    for (int i = 0; i < m->n; i++) {
        char path[4200];
        emdpo_llama *pol = NULL;
        snprintf(path, sizeof path, "%s/type_%d", m->dir, m->types[i]);
        int rc = cli_lm_model("eval", path, NULL, 0, &pol);
        if (rc) return rc;
        if (pol->config.vocab_size != ref->config.vocab_size) {
            rc = cli_usage_error("eval", "%s has vocabulary %d, --ref %d", path, pol->config.vocab_size,
                                 ref->config.vocab_size);
        } else if ((rc = emdpo_lm_evaluate(ev, pol, m->margin + (size_t)i * G, m->acc + (size_t)i * G, NULL))) {
            char what[4300];
            snprintf(what, sizeof what, "%s: %s", path,
                     rc == EMDPO_ERR_LIMIT ? "a sequence does not fit the policy (context or vocabulary)"
                                           : "scoring failed");
            rc = cli_fail("eval", rc, NULL, what);
        }
        emdpo_llama_free(pol);
        if (rc) return rc;
    }
    emdpo_lm_eval_best(m->n, G, m->margin, m->acc, m->best, m->max_margin, m->best_acc);
    return 0;
}

/* Splits one CSV line in place (double quotes group, "" is a quote); the
 * field count, or -1 for more than cap. */
static int split_line(char *s, char **f, int cap) {
    int n = 0;
    for (;;) {
        if (n == cap) return -1;
        char *w = s;
        f[n++] = w;
        int quoted = *s == '"';
        if (quoted) s++;
        while (*s && (quoted || *s != ',')) {
            if (quoted && *s == '"') {
                if (s[1] == '"') s++;
                else {
                    quoted = 0;
                    s++;
                    continue;
                }
            }
            *w++ = *s++;
        }
        char c = *s;
        *w = 0;
        if (c != ',') return n;
        s++;
    }
}

/* ARI between the argmax of posterior.csv (annotator,gamma_1..) and the
 * true groups of the annotators present in both; *n_used gets their count. */
static int posterior_ari(const char *path, const emdpo_data *d, double *ari, int64_t *n_used) {
    FILE *fp = fopen(path, "r");
    if (!fp) return cli_usage_error("eval", "%s: cannot open", path);
    size_t na = (size_t)d->n_annot;
    int32_t *hard = emdpo_malloc(na * sizeof *hard), *a = emdpo_malloc(na * sizeof *a),
            *b = emdpo_malloc(na * sizeof *b);
    char *line = NULL, *f[EMDPO_MAX_K + 2];
    size_t lcap = 0;
    int rc = hard && a && b ? 0 : cli_fail("eval", EMDPO_ERR_NOMEM, NULL, "posterior");
    for (size_t i = 0; !rc && i < na; i++) hard[i] = -1;
    int64_t lineno = 0;
    int K = 0;
    while (!rc && getline(&line, &lcap, fp) > 0) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        int nf = split_line(line, f, EMDPO_MAX_K + 2);
        if (lineno == 1) {
            if (nf < 2 || strcmp(f[0], "annotator") || strncmp(f[1], "gamma_", 6))
                rc = cli_usage_error("eval", "%s:1: expected the header annotator,gamma_1,...", path);
            K = nf - 1;
            continue;
        }
        if (nf != K + 1) {
            rc = cli_usage_error("eval", "%s:%lld: expected %d fields", path, (long long)lineno, K + 1);
            break;
        }
        int arg = 0;
        double top = -1;
        for (int k = 0; k < K && !rc; k++) {
            char *end;
            double v = strtod(f[k + 1], &end);
            if (end == f[k + 1] || *end || !isfinite(v))
                rc = cli_usage_error("eval", "%s:%lld: bad number '%s'", path, (long long)lineno, f[k + 1]);
            else if (v > top) {
                top = v;
                arg = k;
            }
        }
        for (size_t i = 0; !rc && i < na; i++)
            if (strcmp(d->annot_name[i], f[0]) == 0) hard[i] = arg;
    }
    if (!rc && ferror(fp)) rc = cli_usage_error("eval", "%s: read error", path);
    if (!rc && lineno == 0) rc = cli_usage_error("eval", "%s:1: empty file", path);
    int64_t n = 0;
    for (size_t i = 0; !rc && i < na; i++)
        if (hard[i] >= 0 && d->annot_group[i] >= 0) {
            a[n] = hard[i];
            b[n++] = d->annot_group[i];
        }
    if (!rc && n == 0) rc = cli_usage_error("eval", "%s: no annotator of the posterior has a group in the data", path);
    if (!rc) {
        *ari = emdpo_adjusted_rand_index(a, b, n);
        *n_used = n;
        if (isnan(*ari)) rc = cli_fail("eval", EMDPO_ERR_NOMEM, NULL, "adjusted Rand index");
    }
    free(line);
    fclose(fp);
    emdpo_free(hard, hard ? na * sizeof *hard : 0);
    emdpo_free(a, a ? na * sizeof *a : 0);
    emdpo_free(b, b ? na * sizeof *b : 0);
    return rc;
}

static void print_table(FILE *fp, const emdpo_data *d, const method *ms, int nm, double beta, int has_ari, double ari,
                        int64_t n_ari) {
    int G = d->n_groups;
    fprintf(fp, "%-20s %-*s  %s\n", "", 10 * G, "Max-mean reward margins", "Accuracies");
    fprintf(fp, "%-20s", "method");
    for (int r = 0; r < 2; r++) {
        for (int g = 0; g < G; g++) fprintf(fp, " %9.9s", d->group_name[g]);
        fputs(r ? "\n" : "  ", fp);
    }
    for (int j = 0; j < nm; j++) {
        fprintf(fp, "%-20.20s", ms[j].name);
        for (int g = 0; g < G; g++) fprintf(fp, " %9.4f", ms[j].max_margin[g]);
        fputs("  ", fp);
        for (int g = 0; g < G; g++) fprintf(fp, " %9.4f", ms[j].best_acc[g]);
        fputc('\n', fp);
    }
    fprintf(fp, "\nbest policy per group (beta %g):\n", beta);
    for (int j = 0; j < nm; j++) {
        fprintf(fp, "  %-18.18s", ms[j].name);
        for (int g = 0; g < G; g++) {
            if (ms[j].best[g] < 0) fprintf(fp, " %s=-", d->group_name[g]);
            else fprintf(fp, " %s=type_%d", d->group_name[g], ms[j].types[ms[j].best[g]]);
        }
        fputc('\n', fp);
    }
    fprintf(fp, "\nper policy (margin / accuracy by group):\n");
    for (int j = 0; j < nm; j++)
        for (int i = 0; i < ms[j].n; i++) {
            fprintf(fp, "  %s/type_%d", ms[j].name, ms[j].types[i]);
            for (int g = 0; g < G; g++)
                fprintf(fp, "  %s %.4f / %.4f", d->group_name[g], ms[j].margin[(size_t)i * G + g],
                        ms[j].acc[(size_t)i * G + g]);
            fputc('\n', fp);
        }
    if (has_ari) fprintf(fp, "\nadjusted Rand index (posterior argmax vs true groups, %lld annotators): %.4f\n",
                         (long long)n_ari, ari);
}

static void print_json(FILE *fp, const emdpo_data *d, const int64_t *n_dec, const method *ms, int nm, double beta,
                       int has_ari, double ari, int64_t n_ari) {
    int G = d->n_groups;
    fputs("{\n  \"beta\": ", fp);
    cli_json_num(fp, beta);
    fputs(",\n  \"groups\": [", fp);
    for (int g = 0; g < G; g++) {
        if (g) fputs(", ", fp);
        cli_json_str(fp, d->group_name[g]);
    }
    fputs("],\n  \"decisions\": [", fp);
    for (int g = 0; g < G; g++) fprintf(fp, "%s%lld", g ? ", " : "", (long long)n_dec[g]);
    fputs("],\n  \"methods\": [", fp);
    for (int j = 0; j < nm; j++) {
        const method *m = &ms[j];
        fputs(j ? ",\n    {\"name\": " : "\n    {\"name\": ", fp);
        cli_json_str(fp, m->name);
        fputs(", \"dir\": ", fp);
        cli_json_str(fp, m->dir);
        fputs(", \"policies\": [", fp);
        for (int i = 0; i < m->n; i++) fprintf(fp, "%s\"type_%d\"", i ? ", " : "", m->types[i]);
        fputs("],\n     \"max_mean_margin\": ", fp);
        cli_json_nums(fp, m->max_margin, G);
        fputs(", \"accuracy\": ", fp);
        cli_json_nums(fp, m->best_acc, G);
        fputs(", \"best\": [", fp);
        for (int g = 0; g < G; g++) {
            if (g) fputs(", ", fp);
            if (m->best[g] < 0) fputs("null", fp);
            else fprintf(fp, "\"type_%d\"", m->types[m->best[g]]);
        }
        fputs("],\n     \"policy_margin\": [", fp);
        for (int i = 0; i < m->n; i++) {
            if (i) fputs(", ", fp);
            cli_json_nums(fp, m->margin + (size_t)i * G, G);
        }
        fputs("], \"policy_accuracy\": [", fp);
        for (int i = 0; i < m->n; i++) {
            if (i) fputs(", ", fp);
            cli_json_nums(fp, m->acc + (size_t)i * G, G);
        }
        fputs("]}", fp);
    }
    fputs("\n  ]", fp);
    if (has_ari) {
        fputs(",\n  \"ari\": ", fp);
        cli_json_num(fp, ari);
        fprintf(fp, ",\n  \"ari_annotators\": %lld", (long long)n_ari);
    }
    fputs("\n}\n", fp);
}

int cmd_eval(int argc, char **argv) {
    eval_args a = {0};
    a.beta = 0.1;
    a.batch = 16;
    cli_opt opts[] = {
        {"ref", CLI_STR, &a.ref, "CKPT", "reference (SFT) model: llama2.c .bin or Hugging Face directory", 1, 0},
        {"tokenizer", CLI_STR, &a.tokenizer, "FILE", "llama2.c tokenizer.bin for the models' vocabulary", 1, 0},
        {"data", CLI_STR, &a.data, "FILE", "held-out preference JSONL with text responses and \"group\"", 1, 0},
        {"policies", CLI_STR, &a.policies, "DIR[,DIR...]", "comma-separated method directories, each with "
                                                           "type_N/ policies (emdpo fit or baseline output)", 1, 0},
        {"beta", CLI_DBL, &a.beta, "X", "rewards are beta * log-ratios (0.1)", 0, 0},
        {"posterior", CLI_STR, &a.posterior, "FILE", "posterior.csv: adds the adjusted Rand index of its argmax "
                                                     "against the data's groups", 0, 0},
        {"json", CLI_FLAG, &a.json, NULL, "print JSON instead of the table", 0, 0},
        {"out", CLI_STR, &a.out, "FILE", "also write the JSON here (atomically)", 0, 0},
        {"max-length", CLI_INT, &a.max_length, "N", "truncate sequences to N tokens (min(512, context))", 0, 0},
        {"max-prompt-length", CLI_INT, &a.max_prompt_length, "N", "cut prompts to N tokens first (max-length/2)", 0, 0},
        {"batch", CLI_INT, &a.batch, "N", "sequences per forward pass (16)", 0, 0},
        {"threads", CLI_INT, &a.threads, "N", "OpenMP threads (default: all cores)", 0, 0},
    };
    cli_cmd cmd = {"eval", "Evaluate policy ensembles per true group: max-mean reward margin and accuracy.",
                   "For each method directory (its name labels the row) and each true group g: every policy\n"
                   "type_N's mean over g's decisions of the reward margin, beta * log-ratio of the chosen\n"
                   "response minus that of each rejected one (averaged over the rejected ones); the best\n"
                   "policy for g is the one with the highest mean (ties: the lowest N). Columns: that\n"
                   "max-mean reward margin per group, then the best policy's accuracy per group (the share\n"
                   "of g's decisions whose chosen response has a strictly higher reward than every other).\n"
                   "Log-ratios are against --ref; each distinct sequence is scored once per model.\n"
                   "Annotators without a group are left out. With --posterior, the adjusted Rand index of\n"
                   "each annotator's most probable type against the true groups, over the annotators present\n"
                   "in both files. Directory names must not contain commas.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (!(a.beta > 0) || !isfinite(a.beta)) return cli_usage_error("eval", "--beta must be > 0");
    if (a.batch < 1) return cli_usage_error("eval", "--batch must be >= 1");
    cli_set_threads(a.threads);

    emdpo_llama *ref = NULL;
    emdpo_tokenizer *tok = NULL;
    emdpo_data *d = NULL;
    emdpo_lm_set *set = NULL;
    emdpo_lm_evaluator *ev = NULL;
    method *ms = NULL;
    int nm = 1, G = 0;
    int64_t *n_dec = NULL, n_ari = 0;
    double ari = NAN;
    char *list = emdpo_strdup(a.policies);
    if (!list) return cli_fail("eval", EMDPO_ERR_NOMEM, NULL, "arguments");
    for (const char *p = list; *p; p++) nm += *p == ',';
    if (!(ms = emdpo_calloc((size_t)nm, sizeof *ms))) {
        rc = cli_fail("eval", EMDPO_ERR_NOMEM, NULL, "arguments");
        goto done;
    }
    char *dir = list;
    for (int j = 0; j < nm; j++) {
        char *comma = strchr(dir, ',');
        if (comma) *comma = 0;
        ms[j].dir = dir;
        char *next = comma ? comma + 1 : NULL;
        if (!*dir) {
            rc = cli_usage_error("eval", "--policies: empty directory name in '%s'", a.policies);
            goto done;
        }
        /* The row label: the directory's last component. */
        size_t len = strlen(dir);
        while (len > 1 && dir[len - 1] == '/') dir[--len] = 0;
        const char *slash = strrchr(dir, '/');
        ms[j].name = slash && slash[1] ? slash + 1 : dir;
        dir = next;
    }
    for (int j = 0; j < nm; j++)
        if ((rc = list_types(ms[j].dir, &ms[j].types, &ms[j].n))) goto done;
    if ((rc = cli_lm_model("eval", a.ref, NULL, 0, &ref)) ||
        (rc = cli_lm_tokenizer("eval", a.tokenizer, ref->config.vocab_size, &tok)) ||
        (rc = cli_lm_lengths("eval", ref, &a.max_length, &a.max_prompt_length)) ||
        (rc = cli_load_data("eval", a.data, "jsonl", &d)))
        goto done;
    if (!emdpo_data_has_text(d)) {
        rc = cli_usage_error("eval", "%s: responses have no text; eval needs text responses", a.data);
        goto done;
    }
    if (d->n_groups == 0) {
        rc = cli_usage_error("eval", "%s: no \"group\" field: eval needs each annotator's true group", a.data);
        goto done;
    }
    G = d->n_groups;
    if (!(n_dec = emdpo_calloc((size_t)G, sizeof *n_dec))) {
        rc = cli_fail("eval", EMDPO_ERR_NOMEM, NULL, "tables");
        goto done;
    }
    if ((rc = emdpo_lm_set_from_data(d, tok, a.max_length, a.max_prompt_length, &set)) ||
        (rc = emdpo_lm_evaluator_create(ref, d, set, a.beta, a.batch, &ev))) {
        rc = cli_fail("eval", rc, NULL,
                      rc == EMDPO_ERR_LIMIT ? "a sequence does not fit the reference (context or vocabulary)"
                                            : "cannot set up the evaluation");
        goto done;
    }
    for (int64_t i = 0; i < d->n_annot; i++)
        if (d->annot_group[i] >= 0) n_dec[d->annot_group[i]] += d->annot_dec[i + 1] - d->annot_dec[i];
    for (int j = 0; j < nm; j++)
        if ((rc = eval_method(&ms[j], ref, ev, G))) goto done;
    if (a.posterior && (rc = posterior_ari(a.posterior, d, &ari, &n_ari))) goto done;
    if (a.json) print_json(stdout, d, n_dec, ms, nm, a.beta, a.posterior != NULL, ari, n_ari);
    else print_table(stdout, d, ms, nm, a.beta, a.posterior != NULL, ari, n_ari);
    if (fflush(stdout)) {
        rc = cli_fail("eval", EMDPO_ERR_IO, NULL, "writing standard output");
    } else if (a.out) {
        emdpo_afile af;
        if (emdpo_afile_open(&af, a.out)) {
            rc = cli_usage_error("eval", "cannot write %s", a.out);
            goto done;
        }
        print_json(af.fp, d, n_dec, ms, nm, a.beta, a.posterior != NULL, ari, n_ari);
        if (emdpo_afile_commit(&af)) rc = cli_usage_error("eval", "cannot write %s", a.out);
    }
done:
    for (int j = 0; ms && j < nm; j++) method_free(&ms[j], G);
    emdpo_free(ms, ms ? (size_t)nm * sizeof *ms : 0);
    emdpo_strfree(list);
    emdpo_free(n_dec, n_dec ? (size_t)G * sizeof *n_dec : 0);
    emdpo_lm_evaluator_free(ev);
    emdpo_lm_set_free(set);
    emdpo_data_free(d);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(ref);
    return rc;
}
