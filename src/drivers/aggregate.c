/* MMRA-AE's result and its rows (aggregate.h), and MMRA-AE over a
 * log-linear fit (emdpo/mmra.h's emdpo_loglinear_aggregate). */
#include "drivers/aggregate.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json_write.h"
#include "fitfile/fit.h"
#include "loglinear/loglinear_mmra.h"

int emdpo_aggregate_alloc(emdpo_family family, int K, int M, int sampled, emdpo_aggregate **out) {
    *out = NULL;
    emdpo_aggregate *a = emdpo_calloc(1, sizeof *a);
    if (!a) return EMDPO_ERR_NOMEM;
    a->family = family;
    a->K = K;
    a->M = M;
    a->sampled = sampled;
    size_t n = (size_t)K * (size_t)M;
    a->L = emdpo_calloc(n, sizeof *a->L);
    if (sampled) a->se = emdpo_calloc(n, sizeof *a->se);
    if (!a->L || (sampled && !a->se)) {
        emdpo_aggregate_free(a);
        return EMDPO_ERR_NOMEM;
    }
    *out = a;
    return EMDPO_OK;
}

void emdpo_aggregate_free(emdpo_aggregate *a) {
    if (!a) return;
    size_t n = (size_t)a->K * (size_t)a->M;
    emdpo_free(a->L, n * sizeof *a->L);
    emdpo_free(a->se, a->se ? n * sizeof *a->se : 0);
    emdpo_strfree(a->fit);
    emdpo_strfree(a->data);
    for (int b = 0; a->columns && b < a->M; b++) emdpo_strfree(a->columns[b]);
    emdpo_free(a->columns, a->columns ? (size_t)a->M * sizeof *a->columns : 0);
    emdpo_free(a, sizeof *a);
}

void emdpo_regret_row_finish(emdpo_regret_row *r, int K) {
    r->max_regret = 0.0;
    for (int k = 0; k < K; k++) r->max_regret = fmax(r->max_regret, r->regret[k]);
}

static emdpo_regret_row *new_row(emdpo_aggregate *a, const char *name, int has_w) {
    emdpo_regret_row *r = &a->rows[a->n_rows++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->has_w = has_w;
    for (int k = 0; k < EMDPO_MAX_K; k++) r->se[k] = NAN;
    return r;
}

/* The mixture standard error of each type's regret from the independent
 * columns' (lm_mmra's emdpo_lm_mmra_mixture_se, restated for the K x M
 * layout): (1 - w_z)^2 se_zz^2 + sum_{b != z} w_b^2 se_zb^2. */
static void mixture_se(const emdpo_aggregate *a, const double *w, double *out) {
    for (int z = 0; z < a->K; z++) {
        double v = 0.0;
        for (int b = 0; b < a->K; b++) {
            double c = b == z ? 1.0 - w[b] : w[b], s = a->se[(size_t)z * a->M + b];
            if (c != 0.0) v += c * c * s * s;
        }
        out[z] = sqrt(v);
    }
}

int emdpo_aggregate_rows(emdpo_aggregate *a, const emdpo_mmra_hedge_opts *hedge, emdpo_game_solver solver,
                         const char *pooled_name) {
    int K = a->K, M = a->M;
    double LK[EMDPO_MAX_K * EMDPO_MAX_K], w_other[EMDPO_MAX_K];
    for (int z = 0; z < K; z++)
        for (int b = 0; b < K; b++) LK[z * K + b] = a->L[(size_t)z * M + b];
    a->n_rows = 0;
    a->solver = solver;
    emdpo_regret_row *mm = new_row(a, "MMRA-AE", 1);
    int lp = solver == EMDPO_GAME_LP;
    int rc = emdpo_mmra_ae(K, LK, EMDPO_GAME_HEDGE, hedge, lp ? w_other : mm->w, &a->hedge);
    if (rc && rc != EMDPO_ERR_NOT_CONVERGED) return rc;
    a->hedge_capped = rc == EMDPO_ERR_NOT_CONVERGED;
    if ((rc = emdpo_mmra_ae(K, LK, EMDPO_GAME_LP, NULL, lp ? mm->w : w_other, &a->lp))) return rc;
    emdpo_regret_row *un = new_row(a, "uniform", 1);
    for (int k = 0; k < K; k++) un->w[k] = 1.0 / K;
    for (int j = 0; j < K; j++) {
        char name[32];
        snprintf(name, sizeof name, "type %d only", j + 1);
        emdpo_regret_row *t = new_row(a, name, 1);
        for (int k = 0; k < K; k++) t->w[k] = k == j;
    }
    for (int r = 0; r < a->n_rows; r++) {
        emdpo_mmra_mixture_regret(K, LK, a->rows[r].w, a->rows[r].regret);
        if (a->sampled) mixture_se(a, a->rows[r].w, a->rows[r].se);
    }
    if (M > K) { /* the pooled policy: regret[z] = L[z][z] - L[z][pooled] */
        emdpo_regret_row *po = new_row(a, pooled_name, 0);
        for (int z = 0; z < K; z++) {
            const double *Lz = a->L + (size_t)z * M;
            po->regret[z] = Lz[z] - Lz[K];
            if (a->sampled) {
                const double *Sz = a->se + (size_t)z * M;
                po->se[z] = sqrt(Sz[z] * Sz[z] + Sz[K] * Sz[K]);
            }
        }
    }
    for (int r = 0; r < a->n_rows; r++) emdpo_regret_row_finish(&a->rows[r], K);
    return EMDPO_OK;
}

int emdpo_aggregate_k(const emdpo_aggregate *a) { return a ? a->K : 0; }
int emdpo_aggregate_n_rows(const emdpo_aggregate *a) { return a ? a->n_rows : 0; }
const emdpo_regret_row *emdpo_aggregate_row(const emdpo_aggregate *a, int r) {
    return a && r >= 0 && r < a->n_rows ? &a->rows[r] : NULL;
}
int64_t emdpo_aggregate_n_decisions(const emdpo_aggregate *a) { return a ? a->n_dec : 0; }
int emdpo_aggregate_sampled(const emdpo_aggregate *a) { return a ? a->sampled : 0; }
int64_t emdpo_aggregate_draws(const emdpo_aggregate *a) { return a ? a->draws : 0; }
int emdpo_aggregate_hedge_capped(const emdpo_aggregate *a) { return a ? a->hedge_capped : 0; }
double emdpo_aggregate_beta(const emdpo_aggregate *a) { return a ? a->beta : NAN; }

void emdpo_aggregate_games(const emdpo_aggregate *a, emdpo_zerosum_result *hedge, emdpo_zerosum_result *lp) {
    if (!a) return;
    if (hedge) *hedge = a->hedge;
    if (lp) *lp = a->lp;
}

static void json_matrix(FILE *fp, const double *m, int K, int M) {
    for (int k = 0; k < K; k++) {
        fputs(k ? ", " : "", fp);
        emdpo_json_nums(fp, m + (size_t)k * M, M);
    }
}

/* The games' certificates, after L: ",\n  \"hedge\": {...},\n  \"lp_value\": X". */
static void json_games(FILE *fp, const emdpo_aggregate *a) {
    fputs(",\n  \"hedge\": {\"upper\": ", fp);
    emdpo_json_num(fp, a->hedge.upper);
    fputs(", \"lower\": ", fp);
    emdpo_json_num(fp, a->hedge.lower);
    fputs(", \"duality_gap\": ", fp);
    emdpo_json_num(fp, a->hedge.gap);
    fprintf(fp, ", \"iterations\": %ld},\n  \"lp_value\": ", a->hedge.iterations);
    emdpo_json_num(fp, a->lp.value);
}

static void json_rows(FILE *fp, const emdpo_aggregate *a) {
    fputs(",\n  \"policies\": [", fp);
    for (int r = 0; r < a->n_rows; r++) {
        const emdpo_regret_row *row = &a->rows[r];
        fprintf(fp, "%s\n    {\"name\": ", r ? "," : "");
        emdpo_json_str(fp, row->name);
        fputs(", \"weights\": ", fp);
        if (row->has_w) emdpo_json_nums(fp, row->w, a->K);
        else fputs("null", fp);
        fputs(", \"regret\": ", fp);
        emdpo_json_nums(fp, row->regret, a->K);
        if (a->sampled) {
            fputs(", \"regret_se\": ", fp);
            emdpo_json_nums(fp, row->se, a->K);
        }
        fputs(", \"max_regret\": ", fp);
        emdpo_json_num(fp, row->max_regret);
        fputc('}', fp);
    }
    fputs("\n  ]\n}\n", fp);
}

static void json_loglinear(FILE *fp, const emdpo_aggregate *a) {
    fputs("{\n  \"fit\": ", fp);
    emdpo_json_str(fp, a->fit);
    fputs(",\n  \"data\": ", fp);
    emdpo_json_str(fp, a->data);
    fprintf(fp, ",\n  \"k\": %d,\n  \"beta\": ", a->K);
    emdpo_json_num(fp, a->beta);
    fprintf(fp, ",\n  \"solver\": \"%s\",\n  \"L\": [", emdpo_game_solver_name(a->solver));
    json_matrix(fp, a->L, a->K, a->M);
    fputc(']', fp);
    json_games(fp, a);
    json_rows(fp, a);
}

static void json_llama(FILE *fp, const emdpo_aggregate *a) {
    fputs("{\n  \"family\": \"llama\",\n  \"fit\": ", fp);
    emdpo_json_str(fp, a->fit);
    fputs(",\n  \"data\": ", fp);
    emdpo_json_str(fp, a->data);
    fprintf(fp, ",\n  \"k\": %d,\n  \"beta\": ", a->K);
    emdpo_json_num(fp, a->beta);
    fprintf(fp, ",\n  \"method\": \"ae\",\n  \"estimator\": \"%s\",\n  \"solver\": \"%s\",\n  \"decisions\": %lld",
            a->sampled ? "sample" : "exact", emdpo_game_solver_name(a->solver), (long long)a->n_dec);
    if (a->sampled) {
        fprintf(fp, ",\n  \"draws_per_policy\": %lld, \"samples\": %d, \"max_tokens\": %d, \"temperature\": ",
                (long long)a->draws, a->samples, a->max_tokens);
        emdpo_json_num(fp, a->temperature);
        fprintf(fp, ", \"seed\": %llu", (unsigned long long)a->seed);
    }
    fputs(",\n  \"columns\": [", fp);
    for (int b = 0; b < a->M; b++) {
        fputs(b ? ", " : "", fp);
        emdpo_json_str(fp, a->columns[b]);
    }
    fputs("],\n  \"L\": [", fp);
    json_matrix(fp, a->L, a->K, a->M);
    fputs("],\n  \"L_se\": ", fp);
    if (a->sampled) {
        fputc('[', fp);
        json_matrix(fp, a->se, a->K, a->M);
        fputc(']', fp);
    } else {
        fputs("null", fp);
    }
    json_games(fp, a);
    json_rows(fp, a);
}

int emdpo_aggregate_write_json(const emdpo_aggregate *a, FILE *fp) {
    if (!a || !fp) return EMDPO_ERR_INVALID_ARG;
    if (a->family == EMDPO_FAMILY_LOGLINEAR) json_loglinear(fp, a);
    else json_llama(fp, a);
    return ferror(fp) ? EMDPO_ERR_IO : EMDPO_OK;
}

/* ---- MMRA-AE over a log-linear fit ---------------------------------------- */

void emdpo_aggregate_opts_init(emdpo_aggregate_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->solver = EMDPO_GAME_HEDGE;
    emdpo_mmra_hedge_opts_init(&o->hedge);
    o->beta = 0.0;
    o->seed = 1;
}

int emdpo_loglinear_aggregate(const emdpo_fit *fit, const emdpo_data *d, const emdpo_aggregate_opts *o,
                              emdpo_aggregate **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!fit || !d || !o) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no fit, data or options");
    if (fit->family != EMDPO_FAMILY_LOGLINEAR || !fit->theta)
        return emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, fit->source, 0, "not a log-linear fit with theta and p");
    if (d->p != fit->p)
        return emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, d->source, 0, "%d features per item, the fit has %d", d->p,
                             fit->p);
    if (o->solver != EMDPO_GAME_HEDGE && o->solver != EMDPO_GAME_LP)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "solver must be hedge or lp");
    if (o->hedge.max_iter < 1) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "hedge.max_iter must be >= 1");
    if (!(o->hedge.rel_tol >= 0)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "hedge.rel_tol must be >= 0");
    int K = fit->K;
    emdpo_aggregate *a = NULL;
    int rc = emdpo_aggregate_alloc(EMDPO_FAMILY_LOGLINEAR, K, K, 0, &a);
    if (rc) return emdpo_diag_fail(diag, rc, "out of memory");
    a->beta = o->beta > 0 ? o->beta : fit->beta;
    a->n_dec = d->n_dec;
    if ((fit->source && !(a->fit = emdpo_strdup(fit->source))) || (d->source && !(a->data = emdpo_strdup(d->source))))
        rc = EMDPO_ERR_NOMEM;
    if (!rc) rc = emdpo_mmra_loglin_L(d, fit->theta, K, a->beta, a->L);
    if (!rc) rc = emdpo_aggregate_rows(a, &o->hedge, o->solver, NULL);
    if (!rc) { /* vanilla DPO: one policy fitted to everyone (K = 1) */
        emdpo_loglinear_opts po;
        emdpo_loglinear_opts_init(&po);
        po.k = 1;
        po.em.seed = o->seed;
        po.l2 = fit->l2;
        po.beta = a->beta;
        emdpo_fit *pooled = NULL;
        if ((rc = emdpo_loglinear_fit(d, &po, &pooled, diag))) { /* its diag says why */
            emdpo_aggregate_free(a);
            return rc;
        }
        emdpo_regret_row *row = new_row(a, "pooled (K=1)", 0);
        rc = emdpo_mmra_loglin_regret(d, fit->theta, K, a->beta, pooled->theta, row->regret);
        emdpo_regret_row_finish(row, K);
        emdpo_fit_free(pooled);
    }
    if (rc) {
        emdpo_diag_fail(diag, rc, "aggregation failed: %s", emdpo_status_name(rc));
        emdpo_aggregate_free(a);
        return rc;
    }
    *out = a;
    return EMDPO_OK;
}

static void write_aggregate(FILE *fp, const void *ctx) { emdpo_aggregate_write_json(ctx, fp); }

int emdpo_aggregate_save(const emdpo_aggregate *a, const char *dir, emdpo_diag *diag) {
    emdpo_diag_reset(diag, dir);
    if (!a || !dir) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no result or directory");
    return emdpo_afile_write_in(dir, "aggregate.json", write_aggregate, a, diag);
}
