#include <ctype.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* The flag a message's first word names, in the library's spelling. */
static const cli_opt *flag_of(const char *msg, const cli_cmd *cmd, size_t *len) {
    size_t n = 0;
    while (isalnum((unsigned char)msg[n]) || msg[n] == '_') n++;
    *len = n;
    for (int q = 0; cmd && n && q < cmd->n_opts; q++) {
        const char *f = cmd->opts[q].name;
        if (strlen(f) != n) continue;
        size_t i = 0;
        while (i < n && (f[i] == msg[i] || (f[i] == '-' && msg[i] == '_'))) i++;
        if (i == n) return &cmd->opts[q];
    }
    return NULL;
}

int cli_fail(const char *name, int rc, const emdpo_diag *diag, const cli_cmd *cmd) {
    fprintf(stderr, "emdpo %s: ", name);
    if (diag && diag->file[0]) {
        fprintf(stderr, "%s:", diag->file);
        if (diag->line > 0) fprintf(stderr, "%ld:", diag->line);
        fputc(' ', stderr);
    }
    size_t n = 0;
    const cli_opt *o = diag && diag->msg[0] ? flag_of(diag->msg, cmd, &n) : NULL;
    if (o) fprintf(stderr, "--%s%s\n", o->name, diag->msg + n);
    else if (diag && diag->msg[0]) fprintf(stderr, "%s\n", diag->msg);
    else fprintf(stderr, "%s\n", emdpo_status_name(rc));
    switch (rc) {
    case EMDPO_ERR_PARSE:
    case EMDPO_ERR_IO:
    case EMDPO_ERR_INVALID_ARG:
    case EMDPO_ERR_UNSUPPORTED:
    case EMDPO_ERR_LIMIT:
        return CLI_EXIT_USAGE;
    default:
        return CLI_EXIT_FAIL;
    }
}

int cli_usage_error(const char *name, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "emdpo %s: ", name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_load_data(const char *name, const char *path, emdpo_format fmt, const cli_read *r, emdpo_data **out) {
    emdpo_diag diag;
    int rc = emdpo_data_read_with(path, fmt, r ? &r->o : NULL, out, &diag);
    return rc ? cli_fail(name, rc, &diag, NULL) : 0;
}

void cli_read_init(cli_read *r) {
    memset(r, 0, sizeof *r);
    emdpo_read_opts_init(&r->o);
}

/* dir/name when it is a readable file, else NULL. */
static char *beside(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p) return NULL;
    snprintf(p, n, "%s/%s", dir, name);
    if (access(p, R_OK) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

int cli_read_finish(cli_read *r, const char *tokenizer) {
    if (!tokenizer) return 0;
    r->o.require_text = 1; /* a tokenizer's command reads text responses: one without is refused at its line */
    struct stat st;
    char *dir;
    if (stat(tokenizer, &st) == 0 && S_ISDIR(st.st_mode)) {
        dir = strdup(tokenizer);
    } else {
        const char *slash = strrchr(tokenizer, '/');
        dir = slash ? strndup(tokenizer, (size_t)(slash - tokenizer)) : strdup(".");
    }
    if (!dir) return CLI_EXIT_USAGE;
    char *cfg = beside(dir, "tokenizer_config.json");
    free(dir);
    if (!cfg) return 0;
    if (!r->o.chat_template) r->o.chat_template = r->template_path = cfg;
    else r->o.special_tokens = r->special_path = cfg;
    return 0;
}

void cli_read_free(cli_read *r) {
    free(r->template_path);
    if (r->special_path != r->template_path) free(r->special_path);
    r->template_path = r->special_path = NULL;
}

const char *cli_flag_value(int argc, char **argv, const char *flag) {
    size_t n = strlen(flag);
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0 || strncmp(argv[i] + 2, flag, n) != 0) continue;
        if (argv[i][2 + n] == '=') return argv[i] + 3 + n;
        if (argv[i][2 + n] == 0) return i + 1 < argc ? argv[i + 1] : "";
    }
    return NULL;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_progress_on(int quiet, int progress) { return !quiet && (progress || isatty(STDERR_FILENO)); }

int cli_split_pairs(char *list, const char **names, const char **paths) {
    int n = 0;
    for (char *p = list, *end; p; p = end ? end + 1 : NULL) {
        if ((end = strchr(p, ','))) *end = '\0';
        char *eq = strchr(p, '=');
        names[n] = p;
        if (!eq || !eq[1]) return -(n + 1);
        *eq = '\0';
        paths[n++] = eq + 1;
    }
    return n;
}

void cli_em_progress(void *ud, int start, int iter, double loglik, const double *eta, int K) {
    fprintf(stderr, "  start %d  iter %3d  loglik %.6f", start + 1, iter, loglik);
    if (ud) fprintf(stderr, "  %.1fs", cli_now() - *(const double *)ud);
    fputs("  eta", stderr);
    for (int k = 0; k < K; k++) fprintf(stderr, " %.3f", eta[k]);
    fputc('\n', stderr);
}

void cli_print_group_posterior(const emdpo_data *d, const emdpo_fit *fit) {
    int G = emdpo_data_n_groups(d), K = emdpo_fit_k(fit);
    int64_t na = emdpo_data_n_annotators(d);
    if (G == 0 || na != emdpo_fit_n_annotators(fit)) return;
    double *gamma = malloc((size_t)na * (size_t)K * sizeof *gamma);
    if (!gamma || emdpo_fit_posterior(fit, gamma, na, K)) {
        free(gamma);
        return;
    }
    printf("mean posterior by true group:\n");
    for (int g = 0; g < G; g++) {
        double sum[EMDPO_MAX_K] = {0};
        int64_t n = 0;
        for (int64_t i = 0; i < na; i++) {
            if (emdpo_data_annotator_group(d, i) != g) continue;
            n++;
            for (int k = 0; k < K; k++) sum[k] += gamma[i * K + k];
        }
        printf("  %-12s n=%-7lld", emdpo_data_group_name(d, g), (long long)n);
        for (int k = 0; k < K; k++) printf(" %.3f", n ? sum[k] / (double)n : 0.0);
        printf("\n");
    }
    free(gamma);
}

void cli_regret_table_print(const emdpo_regret_row *const *rows, int n, int K) {
    printf("%-16s", "policy");
    for (int k = 0; k < K; k++) printf("   w%-4d", k + 1);
    for (int k = 0; k < K; k++) printf("  regret%-3d", k + 1);
    printf("  max regret\n");
    for (int r = 0; r < n; r++) {
        printf("%-16s", rows[r]->name);
        for (int k = 0; k < K; k++)
            if (rows[r]->has_w) printf(" %7.4f", rows[r]->w[k]);
            else printf(" %7s", "-");
        for (int k = 0; k < K; k++) printf("  %9.5f", rows[r]->regret[k]);
        printf("  %10.5f\n", rows[r]->max_regret);
    }
}
