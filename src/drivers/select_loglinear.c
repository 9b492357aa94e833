/* Choosing K for log-linear policies (emdpo/loglinear.h's emdpo_select_run):
 * a seeded split of the annotators, one fit per K on the training side,
 * and its information criteria and held-out log-likelihood. On a share of
 * the data (under mpirun) each side of the split is shared as the data
 * are, and the fits and the held-out log-likelihood add their sums over
 * the processes exactly, so the result is the same for any number. */
#include <math.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json_write.h"
#include "data/data.h"
#include "fitfile/fit.h"

typedef struct sel_row {
    emdpo_select_row r;
    double *eta, *theta; /* (K), (K, p) */
} sel_row;

struct emdpo_select {
    emdpo_select_opts o;
    char *data;          /* the data's source path, or NULL */
    int p, n_rows, best_bic, best_heldout;
    int64_t n_train, n_heldout;
    sel_row *rows;
};

void emdpo_select_opts_init(emdpo_select_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->k_min = 1;
    o->k_max = 6;
    o->holdout = 0.2;
    emdpo_loglinear_opts_init(&o->fit);
    o->fit.em.starts = 3;
}

void emdpo_select_free(emdpo_select *s) {
    if (!s) return;
    for (int r = 0; s->rows && r < s->n_rows; r++) {
        int K = s->rows[r].r.k;
        emdpo_free(s->rows[r].eta, (size_t)K * sizeof(double));
        emdpo_free(s->rows[r].theta, (size_t)K * (size_t)s->p * sizeof(double));
    }
    emdpo_free(s->rows, (size_t)s->n_rows * sizeof *s->rows);
    emdpo_strfree(s->data);
    emdpo_free(s, sizeof *s);
}

/* Fits K = k on train and scores it on valid into row. */
static int fit_row(emdpo_select *s, const emdpo_data *train, const emdpo_data *valid, int k, sel_row *row,
                   emdpo_diag *diag) {
    emdpo_loglinear_opts fo = s->o.fit;
    fo.k = k;
    emdpo_fit *f = NULL;
    int rc = emdpo_loglinear_fit(train, &fo, &f, diag);
    if (rc) return rc;
    row->r.k = k;
    row->r.k_effective = k - f->res.n_empty;
    row->r.iterations = f->res.iterations;
    row->r.converged = f->res.converged;
    row->r.loglik = f->res.loglik;
    emdpo_fit_criteria(f, &row->r.npar, &row->r.aic, &row->r.bic, &row->r.icl);
    size_t nt = (size_t)k * (size_t)s->p;
    row->eta = emdpo_malloc((size_t)k * sizeof(double));
    row->theta = emdpo_malloc(nt * sizeof(double));
    if (!row->eta || !row->theta) {
        rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    } else {
        memcpy(row->eta, f->res.eta, (size_t)k * sizeof(double));
        memcpy(row->theta, f->theta, nt * sizeof(double));
        rc = emdpo_fit_heldout_loglik(f, valid, NULL, &row->r.heldout, diag);
    }
    emdpo_fit_free(f);
    return rc;
}

int emdpo_select_run(const emdpo_data *d, const emdpo_select_opts *o, emdpo_select **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!d || !o) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no data or options");
    if (o->k_min < 1 || o->k_max < o->k_min || o->k_max > EMDPO_MAX_K)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "k must be K or LO..HI with 1 <= LO <= HI <= %d",
                               EMDPO_MAX_K);
    if (!(o->holdout > 0 && o->holdout < 1))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "holdout must be in (0, 1), not %g", o->holdout);
    if (d->p == 0)
        return emdpo_diag_at(diag, EMDPO_ERR_UNSUPPORTED, d->source, 0,
                             "responses are text; log-linear policies need {\"features\": [...]} responses");
    int64_t n = emdpo_data_all_annot(d), nv = emdpo_holdout_count(n, o->holdout);
    if (nv < 1 || n - nv < o->k_max)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "%lld annotators with holdout %g leave %lld held out and %lld for training; need at "
                               "least 1 held out and %d (the largest K) for training",
                               (long long)n, o->holdout, (long long)nv, (long long)(n - nv), o->k_max);
    emdpo_select *s = emdpo_calloc(1, sizeof *s);
    emdpo_data *train = NULL, *valid = NULL;
    int rc = s ? EMDPO_OK : EMDPO_ERR_NOMEM;
    if (!rc) {
        s->o = *o;
        s->p = d->p;
        s->n_rows = o->k_max - o->k_min + 1;
        if (!(s->rows = emdpo_calloc((size_t)s->n_rows, sizeof *s->rows)) ||
            (d->source && !(s->data = emdpo_strdup(d->source))))
            rc = EMDPO_ERR_NOMEM;
    }
    if (!rc && (rc = emdpo_data_split(d, o->holdout, o->fit.em.seed, &train, &valid)) == EMDPO_ERR_INVALID_ARG)
        emdpo_diag_fail(diag, rc, "cannot split the annotators");
    if (rc == EMDPO_ERR_NOMEM) emdpo_diag_fail(diag, rc, "out of memory");
    if (!rc) {
        s->n_train = emdpo_data_all_annot(train);
        s->n_heldout = emdpo_data_all_annot(valid);
    }
    for (int r = 0; !rc && r < s->n_rows; r++) {
        if ((rc = fit_row(s, train, valid, o->k_min + r, &s->rows[r], diag))) break;
        if (o->progress) o->progress(o->progress_ud, &s->rows[r].r, s->n_heldout);
    }
    if (!rc) {
        for (int r = 1; r < s->n_rows; r++) {
            if (s->rows[r].r.bic < s->rows[s->best_bic].r.bic) s->best_bic = r;
            if (s->rows[r].r.heldout > s->rows[s->best_heldout].r.heldout) s->best_heldout = r;
        }
    }
    emdpo_data_free(train);
    emdpo_data_free(valid);
    if (rc) {
        emdpo_select_free(s);
        return rc;
    }
    *out = s;
    return EMDPO_OK;
}

int emdpo_select_n_rows(const emdpo_select *s) { return s ? s->n_rows : 0; }
int64_t emdpo_select_n_train(const emdpo_select *s) { return s ? s->n_train : 0; }
int64_t emdpo_select_n_heldout(const emdpo_select *s) { return s ? s->n_heldout : 0; }
int emdpo_select_best_bic(const emdpo_select *s) { return s ? s->best_bic : -1; }
int emdpo_select_best_heldout(const emdpo_select *s) { return s ? s->best_heldout : -1; }

int emdpo_select_row_at(const emdpo_select *s, int r, emdpo_select_row *row) {
    if (!s || !row || r < 0 || r >= s->n_rows) return EMDPO_ERR_INVALID_ARG;
    *row = s->rows[r].r;
    return EMDPO_OK;
}

static void json_row(FILE *fp, const emdpo_select *s, const sel_row *w) {
    fprintf(fp, "    {\"k\": %d, \"k_effective\": %d, \"npar\": %d, \"loglik\": ", w->r.k, w->r.k_effective, w->r.npar);
    emdpo_json_num(fp, w->r.loglik);
    fputs(", \"aic\": ", fp);
    emdpo_json_num(fp, w->r.aic);
    fputs(", \"bic\": ", fp);
    emdpo_json_num(fp, w->r.bic);
    fputs(", \"icl\": ", fp);
    emdpo_json_num(fp, w->r.icl);
    fputs(", \"heldout_loglik\": ", fp);
    emdpo_json_num(fp, w->r.heldout);
    fputs(", \"heldout_loglik_per_annotator\": ", fp);
    emdpo_json_num(fp, w->r.heldout / (double)s->n_heldout);
    fprintf(fp, ", \"iterations\": %d, \"converged\": %s,\n     \"eta\": ", w->r.iterations,
            w->r.converged ? "true" : "false");
    emdpo_json_nums(fp, w->eta, w->r.k);
    fputs(", \"theta\": [", fp);
    for (int k = 0; k < w->r.k; k++) {
        if (k) fputs(", ", fp);
        emdpo_json_nums(fp, w->theta + (size_t)k * s->p, s->p);
    }
    fputs("]}", fp);
}

int emdpo_select_write_json(const emdpo_select *s, FILE *fp) {
    if (!s || !fp) return EMDPO_ERR_INVALID_ARG;
    const emdpo_select_opts *o = &s->o;
    fprintf(fp, "{\n  \"emdpo_version\": \"%s\",\n  \"data\": ", EMDPO_VERSION_STRING);
    emdpo_json_str(fp, s->data);
    fprintf(fp, ",\n  \"k_min\": %d,\n  \"k_max\": %d,\n  \"holdout\": ", o->k_min, o->k_max);
    emdpo_json_num(fp, o->holdout);
    fprintf(fp, ",\n  \"seed\": %llu,\n  \"starts\": %d,\n  \"init\": \"%s\",\n  \"l2\": ",
            (unsigned long long)o->fit.em.seed, o->fit.em.starts, emdpo_fit_init_label(o->fit.em.init));
    emdpo_json_num(fp, o->fit.l2);
    fprintf(fp, ",\n  \"p\": %d,\n  \"n_train\": %lld,\n  \"n_heldout\": %lld,\n  \"rows\": [\n", s->p,
            (long long)s->n_train, (long long)s->n_heldout);
    for (int r = 0; r < s->n_rows; r++) {
        json_row(fp, s, &s->rows[r]);
        fputs(r + 1 < s->n_rows ? ",\n" : "\n", fp);
    }
    fprintf(fp, "  ],\n  \"best_k_bic\": %d,\n  \"best_k_heldout\": %d\n}\n", s->rows[s->best_bic].r.k,
            s->rows[s->best_heldout].r.k);
    return ferror(fp) ? EMDPO_ERR_IO : EMDPO_OK;
}

static void write_select(FILE *fp, const void *ctx) { emdpo_select_write_json(ctx, fp); }

int emdpo_select_save(const emdpo_select *s, const char *dir, emdpo_diag *diag) {
    emdpo_diag_reset(diag, dir);
    if (!s || !dir) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no result or directory");
    return emdpo_afile_write_in(dir, "select.json", write_select, s, diag);
}
