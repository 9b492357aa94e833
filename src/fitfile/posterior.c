/* posterior.csv: the one reader (emdpo_posterior_read) and the one writer
 * (emdpo_posterior_write_csv, used by emdpo_fit_write). */
#include "fitfile/posterior.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/csv.h"
#include "base/diag.h"
#include "fitfile/table.h"

struct emdpo_posterior {
    emdpo_table *t;
};

int emdpo_posterior_read(const char *path, int k, emdpo_posterior **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path || k < 0 || k > EMDPO_MAX_K)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no path, or k outside 0..%d", EMDPO_MAX_K);
    emdpo_table *t = NULL;
    int rc = emdpo_table_read(path, NULL, 1, -INFINITY, &t, diag);
    if (rc) return rc;
    if (t->ncol > EMDPO_MAX_K) rc = EMDPO_ERR_PARSE;
    for (int c = 0; !rc && c < t->ncol; c++) {
        char want[32];
        snprintf(want, sizeof want, "gamma_%d", c + 1);
        if (strcmp(t->col[c], want) != 0) rc = EMDPO_ERR_PARSE;
    }
    if (rc) {
        emdpo_diag_at(diag, rc, path, 1, "expected the header annotator,gamma_1,...,gamma_K (K <= %d)", EMDPO_MAX_K);
    } else if (k && t->ncol != k) {
        rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, path, 1, "%d gamma columns, but fit.json has k = %d", t->ncol, k);
    }
    emdpo_posterior *p = rc ? NULL : emdpo_calloc(1, sizeof *p);
    if (!rc && !p) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (rc) {
        emdpo_table_free(t);
        return rc;
    }
    p->t = t;
    *out = p;
    return EMDPO_OK;
}

void emdpo_posterior_free(emdpo_posterior *p) {
    if (!p) return;
    emdpo_table_free(p->t);
    emdpo_free(p, sizeof *p);
}

int emdpo_posterior_k(const emdpo_posterior *p) { return p ? p->t->ncol : 0; }
int64_t emdpo_posterior_n(const emdpo_posterior *p) { return p ? p->t->n : 0; }

const char *emdpo_posterior_annotator(const emdpo_posterior *p, int64_t i) {
    return p && i >= 0 && i < p->t->n ? p->t->annot[i] : NULL;
}

double emdpo_posterior_gamma(const emdpo_posterior *p, int64_t i, int k) {
    if (!p || i < 0 || i >= p->t->n || k < 0 || k >= p->t->ncol) return NAN;
    return p->t->v[(size_t)i * (size_t)p->t->ncol + (size_t)k];
}

int64_t emdpo_posterior_find(const emdpo_posterior *p, const char *annotator) {
    return p && annotator ? emdpo_table_find(p->t, annotator) : -1;
}

void emdpo_posterior_write_csv(FILE *fp, int K, int64_t n, const char *const *annot, const double *gamma) {
    fputs("annotator", fp);
    for (int k = 0; k < K; k++) fprintf(fp, ",gamma_%d", k + 1);
    fputc('\n', fp);
    emdpo_posterior_write_rows(fp, K, n, annot, gamma);
}

void emdpo_posterior_write_rows(FILE *fp, int K, int64_t n, const char *const *annot, const double *gamma) {
    for (int64_t i = 0; i < n; i++) {
        emdpo_csv_write_field(fp, annot[i]);
        for (int k = 0; k < K; k++) fprintf(fp, ",%.17g", gamma[i * K + k]);
        fputc('\n', fp);
    }
}
