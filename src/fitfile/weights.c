/* Weight files for training (emdpo/fitfile.h's emdpo_weights_read): one
 * weight per example, or one per annotator spread over its decisions. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/csv.h"
#include "base/diag.h"
#include "base/names.h"
#include "data/data.h"
#include "fitfile/table.h"

static int parse_weight(const char *s, double *w) {
    char *end;
    errno = 0;
    *w = strtod(s, &end);
    return end != s && !*end && !errno && isfinite(*w) && *w >= 0;
}

/* "weight", then n rows of one weight each. */
static int read_plain(emdpo_csv *r, int64_t n, double *w, emdpo_diag *diag) {
    int64_t i = 0;
    int got, rc;
    while (!(rc = emdpo_csv_next(r, &got, diag)) && got) {
        if (i == n)
            return emdpo_diag_at(diag, EMDPO_ERR_PARSE, NULL, r->rec_line, "more weights than the %lld examples",
                                 (long long)n);
        if (r->nf != 1 || !parse_weight(emdpo_csv_field(r, 0), &w[i]))
            return emdpo_diag_at(diag, EMDPO_ERR_PARSE, NULL, r->rec_line, "expected one finite weight >= 0");
        i++;
    }
    if (!rc && i != n)
        rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%lld weights for %lld examples", (long long)i, (long long)n);
    return rc;
}

/* emdpo estep's weights.csv: "annotator,weight_1,...", one row per
 * decision; its value columns are all named weight_*. */
static int is_decision_table(const emdpo_csv *r) {
    if (r->nf < 2 || strcmp(emdpo_csv_field(r, 0), "annotator") != 0) return 0;
    for (int c = 1; c < r->nf; c++)
        if (strncmp(emdpo_csv_field(r, c), "weight_", 7) != 0) return 0;
    return 1;
}

/* One row per decision, the weight from column (NULL: the second). With
 * d, annotator a's t-th row is a's t-th decision of d (the rows of one
 * annotator in its decisions' order; annotators may interleave, as in the
 * input estep read); without it, row i is example i. */
static int read_decisions(emdpo_csv *r, const char *column, const emdpo_data *d, int64_t n, double *w,
                          emdpo_diag *diag) {
    int col = column ? emdpo_csv_column(r, column) : 1, nf = r->nf, got, rc = EMDPO_OK;
    if (col < 1)
        return emdpo_diag_at(diag, EMDPO_ERR_PARSE, NULL, 1, "no column '%.60s' in the header", column);
    emdpo_name_index ix = {0};
    size_t na = d ? (size_t)d->n_annot : 0;
    int64_t *seen = d ? emdpo_calloc(na + 1, sizeof *seen) : NULL;
    if (d && !seen) rc = EMDPO_ERR_NOMEM;
    for (size_t q = 0; !rc && q < na; q++) {
        int64_t idx;
        int is_new;
        rc = emdpo_name_index_intern(&ix, d->annot_name[q], &idx, &is_new);
    }
    int64_t i = 0;
    while (!rc && !(rc = emdpo_csv_next(r, &got, diag)) && got) {
        if (i == n) {
            rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, NULL, r->rec_line, "more rows than the %lld decisions",
                               (long long)n);
            break;
        }
        double v;
        if (r->nf != nf || !parse_weight(emdpo_csv_field(r, col), &v)) {
            rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, NULL, r->rec_line, "expected %d fields and a finite weight >= 0",
                               nf);
            break;
        }
        int64_t j = i;
        if (d) {
            int64_t q = emdpo_name_index_find(&ix, emdpo_csv_field(r, 0));
            if (q < 0 || d->annot_dec[q] + seen[q] >= d->annot_dec[q + 1]) {
                rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, NULL, r->rec_line, q < 0 ? "annotator '%.60s' is not in the "
                                   "data" : "more rows for annotator '%.60s' than its decisions",
                                   emdpo_csv_field(r, 0));
                break;
            }
            j = d->annot_dec[q] + seen[q]++;
        }
        w[j] = v;
        i++;
    }
    /* short: name the first annotator whose rows are missing */
    for (size_t q = 0; !rc && i != n && q < na; q++)
        if (d->annot_dec[q] + seen[q] < d->annot_dec[q + 1])
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "annotator '%.60s' has %lld rows for its %lld decisions",
                                 d->annot_name[q], (long long)seen[q],
                                 (long long)(d->annot_dec[q + 1] - d->annot_dec[q]));
    if (!rc && i != n)
        rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%lld rows for %lld decisions", (long long)i, (long long)n);
    if (rc == EMDPO_ERR_NOMEM) emdpo_diag_fail(diag, rc, "out of memory");
    emdpo_free(seen, (na + 1) * sizeof *seen);
    emdpo_name_index_free(&ix);
    return rc;
}

/* Per-annotator weights of every annotator of d, spread over d's decisions:
 * column, or the first value column. */
static int read_annotators(const char *path, const char *column, const emdpo_data *d, double *w, emdpo_diag *diag) {
    emdpo_table *t = NULL;
    int rc = emdpo_table_read(path, column, 1, 0.0, &t, diag);
    if (rc) return rc;
    size_t stride = column ? 1 : (size_t)t->ncol, na = (size_t)d->n_annot;
    unsigned char *used = emdpo_calloc((size_t)t->n + 1, 1);
    double *wa = emdpo_malloc((na + 1) * sizeof *wa);
    if (!used || !wa) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    for (size_t q = 0; !rc && q < na; q++) {
        int64_t i = emdpo_table_find(t, d->annot_name[q]);
        if (i < 0) {
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "no weight for annotator '%.60s'", d->annot_name[q]);
        } else {
            used[i] = 1;
            wa[q] = t->v[(size_t)i * stride];
        }
    }
    for (int64_t i = 0; !rc && i < t->n; i++)
        if (!used[i])
            rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, NULL, t->line[i], "annotator '%.60s' is not in the data",
                               t->annot[i]);
    if (!rc) emdpo_data_expand_weights(d, wa, w);
    emdpo_free(used, (size_t)t->n + 1);
    emdpo_free(wa, (na + 1) * sizeof *wa);
    emdpo_table_free(t);
    return rc;
}

int emdpo_weights_read(const char *path, const char *column, const emdpo_data *d, int64_t n, double *w,
                       emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!path || !w || n < 0 || (d && n != d->n_dec))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "bad arguments");
    FILE *fp = fopen(path, "rb");
    if (!fp) return emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot open: %s", strerror(errno));
    emdpo_csv r;
    emdpo_csv_init_file(&r, fp);
    int got = 0, rc = emdpo_csv_next(&r, &got, diag), streamed = 0; /* read here, not by the annotator table */
    if (!rc && !got) rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, NULL, 1, "empty weight file");
    if (!rc) {
        streamed = r.nf == 1 && strcmp(emdpo_csv_field(&r, 0), "weight") == 0;
        if (streamed) rc = read_plain(&r, n, w, diag);
        else if (is_decision_table(&r)) streamed = 1, rc = read_decisions(&r, column, d, n, w, diag);
        else if (!d || strcmp(emdpo_csv_field(&r, 0), "annotator") != 0)
            rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, NULL, 1, "the header must be 'weight'%s",
                               d ? " (one per decision) or 'annotator,...' (one per annotator)" : "");
        else if (r.nf < 2 && !column)
            rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, NULL, 1, "expected annotator and a weight column");
    }
    emdpo_csv_free(&r);
    fclose(fp);
    if (!rc && !streamed) rc = read_annotators(path, column, d, w, diag);
    return rc;
}
