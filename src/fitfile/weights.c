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
    int got = 0, rc = emdpo_csv_next(&r, &got, diag), plain = 0;
    if (!rc && !got) rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, NULL, 1, "empty weight file");
    if (!rc) {
        plain = r.nf == 1 && strcmp(emdpo_csv_field(&r, 0), "weight") == 0;
        if (plain) rc = read_plain(&r, n, w, diag);
        else if (!d || strcmp(emdpo_csv_field(&r, 0), "annotator") != 0)
            rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, NULL, 1, "the header must be 'weight'%s",
                               d ? " (one per decision) or 'annotator,...' (one per annotator)" : "");
        else if (r.nf < 2 && !column)
            rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, NULL, 1, "expected annotator and a weight column");
    }
    emdpo_csv_free(&r);
    fclose(fp);
    if (!rc && !plain) rc = read_annotators(path, column, d, w, diag);
    return rc;
}
