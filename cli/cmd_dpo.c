/* emdpo dpo: preference optimization of a Llama policy (DPO, cDPO, IPO,
 * hinge) with optional per-decision weights, and the weight files both
 * training commands read. The training loop itself is shared with sft
 * (cmd_sft.c). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "cli.h"
#include "cli_lm.h"

int cmd_dpo(int argc, char **argv) { return cli_lm_train(1, argc, argv); }

/* Splits a CSV line in place into at most cap fields (double quotes group,
 * "" is a quote); returns the count, or -1 for too many fields. */
static int split_csv(char *s, char **f, int cap) {
    int n = 0;
    for (;;) {
        if (n == cap) return -1;
        char *w = s;
        f[n++] = w;
        if (*s == '"') {
            s++;
            for (;;) {
                if (!*s) break;
                if (*s == '"' && s[1] == '"') {
                    *w++ = '"';
                    s += 2;
                } else if (*s == '"') {
                    s++;
                    break;
                } else {
                    *w++ = *s++;
                }
            }
            while (*s && *s != ',') s++;
        } else {
            while (*s && *s != ',') *w++ = *s++;
        }
        char c = *s;
        *w = 0;
        if (c != ',') return n;
        s++;
    }
}

static int parse_weight(const char *s, double *w) {
    char *end;
    errno = 0;
    *w = strtod(s, &end);
    return end != s && !*end && !errno && isfinite(*w) && *w >= 0;
}

#define MAX_FIELDS 1024

typedef struct wfile {
    FILE *fp;
    char *line;
    size_t cap;
    long lineno;
    char *f[MAX_FIELDS];
    int nf;
} wfile;

/* Next non-blank line split into fields; 0 at end of file. */
static int wnext(wfile *w) {
    ssize_t n;
    while ((n = getline(&w->line, &w->cap, w->fp)) >= 0) {
        w->lineno++;
        while (n > 0 && (w->line[n - 1] == '\n' || w->line[n - 1] == '\r')) w->line[--n] = 0;
        if (n == 0) continue;
        w->nf = split_csv(w->line, w->f, MAX_FIELDS);
        return 1;
    }
    return 0;
}

/* qsort has no context argument: the dataset rides in a static for the
 * duration of one sort. The CLI is single-threaded here. */
static const emdpo_data *sort_data;
static int cmp_idx(const void *a, const void *b) {
    return strcmp(sort_data->annot_name[*(const int64_t *)a], sort_data->annot_name[*(const int64_t *)b]);
}

static int64_t find_annot(const emdpo_data *d, const int64_t *order, const char *name) {
    int64_t lo = 0, hi = d->n_annot;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(d->annot_name[order[mid]], name);
        if (c == 0) return order[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return -1;
}

/* Reads a per-decision ("weight") or per-annotator ("annotator,...")
 * weight file; d is NULL for SFT, where n is the number of examples. */
static int read_weights(const char *cmd, const char *path, const char *column, const emdpo_data *d, int64_t n,
                        double **out) {
    wfile w = {0};
    int64_t *order = NULL;
    double *wa = NULL, *wd = NULL;
    unsigned char *seen = NULL;
    int rc = 0;
    size_t na = d ? (size_t)d->n_annot : 0;
    *out = NULL;
    if (!(w.fp = fopen(path, "rb"))) return cli_usage_error(cmd, "%s: cannot open: %s", path, strerror(errno));
    if (!wnext(&w) || w.nf < 1) {
        rc = cli_usage_error(cmd, "%s:1: empty weight file", path);
        goto done;
    }
    wd = emdpo_malloc((size_t)n * sizeof *wd);
    if (!wd) {
        rc = cli_fail(cmd, EMDPO_ERR_NOMEM, NULL, "reading weights");
        goto done;
    }
    if (w.nf == 1 && strcmp(w.f[0], "weight") == 0) {
        int64_t i = 0;
        while (wnext(&w)) {
            if (i == n) {
                rc = cli_usage_error(cmd, "%s:%ld: more weights than the %lld examples", path, w.lineno, (long long)n);
                goto done;
            }
            if (w.nf != 1 || !parse_weight(w.f[0], &wd[i])) {
                rc = cli_usage_error(cmd, "%s:%ld: expected one finite weight >= 0", path, w.lineno);
                goto done;
            }
            i++;
        }
        if (i != n) {
            rc = cli_usage_error(cmd, "%s: %lld weights for %lld examples", path, (long long)i, (long long)n);
            goto done;
        }
    } else if (d && strcmp(w.f[0], "annotator") == 0) {
        int col = 1;
        if (column) {
            for (col = 1; col < w.nf && strcmp(w.f[col], column); col++) continue;
            if (col == w.nf) {
                rc = cli_usage_error(cmd, "%s:1: no column '%s'", path, column);
                goto done;
            }
        } else if (w.nf < 2) {
            rc = cli_usage_error(cmd, "%s:1: expected annotator and a weight column", path);
            goto done;
        }
        int nf = w.nf;
        order = emdpo_malloc(na * sizeof *order);
        wa = emdpo_malloc(na * sizeof *wa);
        seen = emdpo_calloc(na, 1);
        if (!order || !wa || !seen) {
            rc = cli_fail(cmd, EMDPO_ERR_NOMEM, NULL, "reading weights");
            goto done;
        }
        for (size_t i = 0; i < na; i++) order[i] = (int64_t)i;
        sort_data = d;
        qsort(order, na, sizeof *order, cmp_idx);
        while (wnext(&w)) {
            if (w.nf != nf) {
                rc = cli_usage_error(cmd, "%s:%ld: %d fields, the header has %d", path, w.lineno, w.nf < 0 ? 0 : w.nf,
                                     nf);
                goto done;
            }
            int64_t a = find_annot(d, order, w.f[0]);
            if (a < 0) {
                rc = cli_usage_error(cmd, "%s:%ld: annotator '%.60s' is not in the data", path, w.lineno, w.f[0]);
                goto done;
            }
            if (seen[a]) {
                rc = cli_usage_error(cmd, "%s:%ld: annotator '%.60s' given twice", path, w.lineno, w.f[0]);
                goto done;
            }
            if (!parse_weight(w.f[col], &wa[a])) {
                rc = cli_usage_error(cmd, "%s:%ld: expected a finite weight >= 0, not '%.40s'", path, w.lineno, w.f[col]);
                goto done;
            }
            seen[a] = 1;
        }
        for (size_t i = 0; i < na; i++)
            if (!seen[i]) {
                rc = cli_usage_error(cmd, "%s: no weight for annotator '%.60s'", path, d->annot_name[i]);
                goto done;
            }
        emdpo_data_expand_weights(d, wa, wd);
    } else {
        rc = cli_usage_error(cmd, "%s:1: the header must be 'weight'%s", path,
                             d ? " (one per decision) or 'annotator,...' (one per annotator)" : "");
        goto done;
    }
    if (ferror(w.fp)) {
        rc = cli_usage_error(cmd, "%s: read error", path);
        goto done;
    }
    *out = wd;
    wd = NULL;
done:
    free(w.line);
    fclose(w.fp);
    emdpo_free(order, order ? na * sizeof *order : 0);
    emdpo_free(wa, wa ? na * sizeof *wa : 0);
    emdpo_free(seen, seen ? na : 0);
    emdpo_free(wd, wd ? (size_t)n * sizeof *wd : 0);
    return rc;
}

int cli_lm_weights(const char *cmd, const char *path, const char *column, const emdpo_data *d, double **w) {
    return read_weights(cmd, path, column, d, d->n_dec, w);
}

int cli_lm_weights_plain(const char *cmd, const char *path, int64_t n, double **w) {
    return read_weights(cmd, path, NULL, NULL, n, w);
}
