/* Fitting log-linear models for the commands, and reading fit.json back. */
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"
#include "base/csv.h"
#include "base/json.h"
#include "base/lines.h"
#include "cli.h"
#include "loglinear/loglinear.h"

void cli_fit_opts_default(cli_fit_opts *o) {
    memset(o, 0, sizeof *o);
    o->K = 2;
    o->starts = 1;
    o->max_iter = 500;
    o->seed = 1;
    o->init = EMDPO_INIT_KMEANS;
    o->tol = 1e-9;
    o->beta = 1.0;
}

static void print_progress(void *ud, int start, int iter, double loglik, const double *eta, int K) {
    (void)ud;
    fprintf(stderr, "  start %d  iter %3d  loglik %.6f  eta", start + 1, iter, loglik);
    for (int k = 0; k < K; k++) fprintf(stderr, " %.3f", eta[k]);
    fputc('\n', stderr);
}

int cli_fit_loglinear(const emdpo_data *d, const cli_fit_opts *o, emdpo_policy **pol, emdpo_em_result *res) {
    *pol = NULL;
    int rc = emdpo_loglinear_create(o->K, d->p, pol);
    if (rc) return rc;
    emdpo_loglinear *ll = emdpo_loglinear_of(*pol);
    ll->l2 = o->l2;
    ll->beta = o->beta;
    emdpo_em_opts eo;
    emdpo_em_opts_default(&eo);
    eo.starts = o->starts;
    eo.max_iter = o->max_iter;
    eo.seed = o->seed;
    eo.init = o->init;
    eo.tol = o->tol;
    if (o->verbose) eo.progress = print_progress;
    rc = emdpo_em_fit(pol, d, &eo, res);
    if (rc) {
        emdpo_policy_free(*pol);
        *pol = NULL;
    }
    return rc;
}

void cli_fit_free(cli_fit *fit) {
    emdpo_free(fit->theta, (size_t)fit->K * fit->p * sizeof(double));
    emdpo_free(fit->eta, (size_t)fit->K * sizeof(double));
    memset(fit, 0, sizeof *fit);
}

char *cli_read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = emdpo_malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (n < cap) break;
        char *bigger = emdpo_realloc(buf, cap, cap * 2);
        if (!bigger) {
            emdpo_free(buf, cap);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad || !buf) {
        emdpo_free(buf, cap);
        return NULL;
    }
    char *exact = emdpo_malloc(n + 1);
    if (exact) {
        memcpy(exact, buf, n);
        exact[n] = 0;
        *len = n;
    }
    emdpo_free(buf, cap);
    return exact;
}

/* Copies a JSON array of n numbers into out; -1 on a shape mismatch. */
static int read_numbers(const emdpo_json *a, double *out, int n) {
    if (!a || a->type != EMDPO_JSON_ARRAY || (int)a->len != n) return -1;
    for (int i = 0; i < n; i++) {
        if (a->u.elems[i].type != EMDPO_JSON_NUMBER) return -1;
        out[i] = a->u.elems[i].num;
    }
    return 0;
}

static int fit_from_json(const emdpo_json *root, cli_fit *fit, const char **why) {
    const emdpo_json *k = emdpo_json_get(root, "k"), *p = emdpo_json_get(root, "p");
    const emdpo_json *fam = emdpo_json_get(root, "family");
    if (!fam || fam->type != EMDPO_JSON_STRING || strcmp(fam->u.str, "loglinear") != 0)
        return *why = "\"family\" is not \"loglinear\"", -1;
    if (!k || !k->is_int || k->inum < 1 || k->inum > EMDPO_MAX_K || !p || !p->is_int || p->inum < 1 ||
        p->inum > 100000)
        return *why = "\"k\" and \"p\" must be positive integers", -1;
    fit->K = (int)k->inum;
    fit->p = (int)p->inum;
    const emdpo_json *beta = emdpo_json_get(root, "beta"), *l2 = emdpo_json_get(root, "l2");
    fit->beta = beta && beta->type == EMDPO_JSON_NUMBER ? beta->num : 1.0;
    fit->l2 = l2 && l2->type == EMDPO_JSON_NUMBER ? l2->num : 0.0;
    if (!(fit->beta > 0)) return *why = "\"beta\" must be positive", -1;
    fit->theta = emdpo_malloc((size_t)fit->K * fit->p * sizeof(double));
    fit->eta = emdpo_malloc((size_t)fit->K * sizeof(double));
    if (!fit->theta || !fit->eta) return *why = "out of memory", -1;
    if (read_numbers(emdpo_json_get(root, "eta"), fit->eta, fit->K)) return *why = "\"eta\" must hold k numbers", -1;
    const emdpo_json *th = emdpo_json_get(root, "theta");
    if (!th || th->type != EMDPO_JSON_ARRAY || (int)th->len != fit->K) return *why = "\"theta\" must hold k arrays", -1;
    for (int q = 0; q < fit->K; q++)
        if (read_numbers(&th->u.elems[q], fit->theta + (size_t)q * fit->p, fit->p))
            return *why = "each \"theta\" row must hold p numbers", -1;
    const emdpo_json *data = emdpo_json_get(root, "data");
    if (data && data->type == EMDPO_JSON_STRING && data->len < sizeof fit->data) memcpy(fit->data, data->u.str, data->len + 1);
    return 0;
}

int cli_fit_read(const char *cmd, const char *path, cli_fit *fit) {
    memset(fit, 0, sizeof *fit);
    char file[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(file, sizeof file, "%s/fit.json", path);
    else
        snprintf(file, sizeof file, "%s", path);
    size_t len = 0;
    char *text = cli_read_file(file, &len);
    if (!text) return cli_usage_error(cmd, "cannot read %s", file);
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root = NULL;
    emdpo_json_error err;
    int rc = emdpo_json_doc_create(&doc);
    if (!rc) rc = emdpo_json_parse(doc, text, len, &root, &err);
    int code = 0;
    if (rc == EMDPO_ERR_PARSE) {
        code = cli_usage_error(cmd, "%s: not valid JSON at byte %zu: %s", file, err.offset, err.msg);
    } else if (rc) {
        code = cli_fail(cmd, rc, NULL, "cannot parse fit");
    } else {
        const char *why = NULL;
        if (root->type != EMDPO_JSON_OBJECT || fit_from_json(root, fit, &why)) {
            code = cli_usage_error(cmd, "%s: %s", file, why ? why : "not a JSON object");
            cli_fit_free(fit);
        }
    }
    emdpo_json_doc_free(doc);
    emdpo_free(text, len + 1);
    return code;
}

void cli_write_posterior(FILE *fp, const emdpo_data *d, const emdpo_em_result *res) {
    fputs("annotator", fp);
    for (int k = 0; k < res->K; k++) fprintf(fp, ",gamma_%d", k + 1);
    fputc('\n', fp);
    for (int64_t i = 0; i < d->n_annot; i++) {
        emdpo_csv_write_field(fp, d->annot_name[i]);
        for (int k = 0; k < res->K; k++) fprintf(fp, ",%.17g", res->gamma[i * res->K + k]);
        fputc('\n', fp);
    }
}

void cli_regret_row_finish(cli_regret_row *r, int K) {
    r->max_regret = 0.0; /* the game's zero row: the maximiser may pick no type */
    for (int k = 0; k < K; k++) r->max_regret = fmax(r->max_regret, r->regret[k]);
}

void cli_regret_table_print(const cli_regret_row *rows, int n, int K) {
    printf("%-16s", "policy");
    for (int k = 0; k < K; k++) printf("   w%-4d", k + 1);
    for (int k = 0; k < K; k++) printf("  regret%-3d", k + 1);
    printf("  max regret\n");
    for (int r = 0; r < n; r++) {
        printf("%-16s", rows[r].name);
        for (int k = 0; k < K; k++)
            if (rows[r].has_w) printf(" %7.4f", rows[r].w[k]); else printf(" %7s", "-");
        for (int k = 0; k < K; k++) printf("  %9.5f", rows[r].regret[k]);
        printf("  %10.5f\n", rows[r].max_regret);
    }
}

void cli_print_group_posterior(const emdpo_data *d, const emdpo_em_result *res) {
    if (d->n_groups == 0) return;
    int K = res->K;
    printf("mean posterior by true group:\n");
    for (int g = 0; g < d->n_groups; g++) {
        double sum[EMDPO_MAX_K] = {0};
        int64_t n = 0;
        for (int64_t i = 0; i < d->n_annot; i++) {
            if (d->annot_group[i] != g) continue;
            n++;
            for (int k = 0; k < K; k++) sum[k] += res->gamma[i * K + k];
        }
        printf("  %-12s n=%-7lld", d->group_name[g], (long long)n);
        for (int k = 0; k < K; k++) printf(" %.3f", n ? sum[k] / (double)n : 0.0);
        printf("\n");
    }
}
