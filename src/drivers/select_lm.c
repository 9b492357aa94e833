/* Choosing K for Llama policies (emdpo/lm.h's emdpo_lm_select_run): each K
 * fitted on the training data exactly as emdpo_lm_fit, its K policies
 * scored on the validation annotators' decisions by reward margins (the
 * paper's appendix D.3.1; lm/lm_select.h defines the criteria). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json_write.h"
#include "data/data.h"
#include "fitfile/fit.h"
#include "lm/engine/llama.h"
#include "lm/io/lm_batch.h"
#include "lm/io/tokenizer.h"
#include "lm/llama_policy.h"
#include "lm/lm_select.h"
#include "lm/lm_train.h"

struct emdpo_lm_select {
    emdpo_lm_select_opts o;     /* fit.mstep lengths resolved */
    char *train_path, *valid_path, *model, *tokenizer; /* as given */
    int64_t n_train, n_valid, n_valid_dec;
    int n_rows, n_groups, best;
    char **group;               /* (n_groups) the validation data's */
    emdpo_lm_select_row *rows;  /* (n_rows) */
    double *group_margin;       /* (n_rows, n_groups) */
};

void emdpo_lm_select_opts_init(emdpo_lm_select_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->k_min = 1;
    o->k_max = 4;
    o->criterion = EMDPO_CRITERION_MARGIN;
    emdpo_lm_fit_opts_init(&o->fit);
}

void emdpo_lm_select_free(emdpo_lm_select *s) {
    if (!s) return;
    emdpo_strfree(s->train_path);
    emdpo_strfree(s->valid_path);
    emdpo_strfree(s->model);
    emdpo_strfree(s->tokenizer);
    for (int g = 0; s->group && g < s->n_groups; g++) emdpo_strfree(s->group[g]);
    emdpo_free(s->group, (size_t)s->n_groups * sizeof *s->group);
    emdpo_free(s->rows, (size_t)s->n_rows * sizeof *s->rows);
    emdpo_free(s->group_margin, (size_t)s->n_rows * (size_t)s->n_groups * sizeof *s->group_margin);
    emdpo_free(s, sizeof *s);
}

/* Work shared by every K: the validation data tokenized and its reference
 * log-probabilities. */
typedef struct sel_work {
    emdpo_lm_set *vset;
    double *ref_lp, *reward; /* (n_seq), (k_max, n_seq) */
} sel_work;

static void work_free(sel_work *w, int k_max) {
    size_t ns = w->vset ? (size_t)w->vset->n_seq : 0;
    emdpo_free(w->reward, w->reward ? ((size_t)k_max * ns + 1) * sizeof *w->reward : 0);
    emdpo_free(w->ref_lp, w->ref_lp ? (ns ? ns : 1) * sizeof *w->ref_lp : 0);
    emdpo_lm_set_free(w->vset);
}

static int prepare(emdpo_lm_select *s, const emdpo_llama *sft, const emdpo_tokenizer *tok, const emdpo_data *train,
                   const emdpo_data *valid, sel_work *w, emdpo_diag *diag) {
    emdpo_lm_select_opts *o = &s->o;
    emdpo_lm_mstep_opts *po = &o->fit.mstep;
    int rc = emdpo_lm_lengths(sft, &po->max_length, &po->max_prompt_length, diag);
    if (rc) return rc;
    if (!emdpo_data_has_text(train) || !emdpo_data_has_text(valid))
        return emdpo_diag_at(diag, EMDPO_ERR_UNSUPPORTED, !emdpo_data_has_text(train) ? train->source : valid->source,
                             0, "responses have no text; Llama policies need text responses");
    if (o->k_max > train->n_annot)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "k: K = %d exceeds the %lld training annotators", o->k_max,
                               (long long)train->n_annot);
    int64_t two = 0;
    for (int64_t i = 0; o->criterion == EMDPO_CRITERION_CROSSFIT && i < valid->n_annot; i++)
        two += valid->annot_dec[i + 1] - valid->annot_dec[i] >= 2;
    if (o->criterion == EMDPO_CRITERION_CROSSFIT && two == 0)
        return emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, valid->source, 0,
                             "criterion crossfit needs validation annotators with two decisions or more; every one "
                             "has a single decision");
    if ((rc = emdpo_lm_set_from_data(valid, tok, po->max_length, po->max_prompt_length, &w->vset)))
        return emdpo_diag_fail(diag, rc, "cannot tokenize the validation data: %s", emdpo_status_name(rc));
    size_t ns = (size_t)w->vset->n_seq;
    s->n_rows = o->k_max - o->k_min + 1;
    s->n_groups = valid->n_groups;
    w->ref_lp = emdpo_malloc((ns ? ns : 1) * sizeof *w->ref_lp);
    w->reward = emdpo_malloc(((size_t)o->k_max * ns + 1) * sizeof *w->reward);
    s->rows = emdpo_calloc((size_t)s->n_rows, sizeof *s->rows);
    if (s->n_groups) {
        s->group_margin = emdpo_malloc((size_t)s->n_rows * (size_t)s->n_groups * sizeof *s->group_margin);
        s->group = emdpo_calloc((size_t)s->n_groups, sizeof *s->group);
    }
    if (!w->ref_lp || !w->reward || !s->rows || (s->n_groups && (!s->group_margin || !s->group)))
        return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    for (int g = 0; g < s->n_groups; g++)
        if (!(s->group[g] = emdpo_strdup(valid->group_name[g]))) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if ((rc = emdpo_lm_score(sft, w->vset, po->score_batch, w->ref_lp)))
        return emdpo_diag_fail(diag, rc,
                               rc == EMDPO_ERR_LIMIT ? "a validation sequence does not fit the model (context or "
                                                       "vocabulary)"
                                                     : "cannot score the validation data: %s",
                               emdpo_status_name(rc));
    return o->out ? emdpo_mkdirs(o->out, diag) : EMDPO_OK;
}

/* Fits K = k_min + r as emdpo_lm_fit would, writes it under out/k_K when
 * asked, and scores it. */
static int fit_row(emdpo_lm_select *s, int r, const emdpo_llama *sft, const emdpo_tokenizer *tok,
                   const emdpo_data *train, const emdpo_data *valid, sel_work *w, emdpo_diag *diag) {
    emdpo_lm_fit_opts fo = s->o.fit;
    fo.k = s->o.k_min + r;
    emdpo_fit *f = NULL;
    int rc = emdpo_lm_fit(sft, tok, train, &fo, &f, diag);
    if (!rc && s->o.out) {
        char name[32];
        snprintf(name, sizeof name, "k_%d", fo.k);
        char *dir = emdpo_path_join(s->o.out, name);
        rc = dir ? emdpo_fit_write(f, dir, diag) : emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        emdpo_strfree(dir);
    }
    if (!rc) {
        const emdpo_llama *models[EMDPO_MAX_K];
        const emdpo_lora *adapters[EMDPO_MAX_K];
        for (int k = 0; k < fo.k; k++) {
            models[k] = emdpo_llama_policy_model(f->pol, k);
            adapters[k] = emdpo_llama_policy_adapter(f->pol, k);
        }
        emdpo_lm_select_row *row = &s->rows[r];
        double *gm = s->group_margin ? s->group_margin + (size_t)r * s->n_groups : NULL;
        rc = emdpo_lm_rewards(models, adapters, fo.k, w->vset, w->ref_lp, fo.mstep.beta, fo.mstep.score_batch, w->reward);
        if (!rc)
            rc = emdpo_lm_select_score(valid, fo.k, w->reward, f->res.eta, &row->margin, &row->val_loglik, gm,
                                       &row->crossfit);
        if (rc)
            emdpo_diag_fail(diag, rc, rc == EMDPO_ERR_LIMIT ? "a validation sequence does not fit a policy"
                                                            : "validation scoring: %s",
                            emdpo_status_name(rc));
        row->k = fo.k;
        row->iterations = f->res.iterations;
        row->n_empty = f->res.n_empty;
        row->train_loglik = f->res.loglik;
    }
    emdpo_fit_free(f);
    return rc;
}

static double row_criterion(const emdpo_lm_select *s, int r) {
    return s->o.criterion == EMDPO_CRITERION_CROSSFIT ? s->rows[r].crossfit : s->rows[r].margin;
}

static void write_select(FILE *fp, const void *ctx) { emdpo_lm_select_write_json(ctx, fp); }

int emdpo_lm_select_run(const emdpo_llama *sft, const emdpo_tokenizer *tok, const emdpo_data *train,
                        const emdpo_data *valid, const emdpo_lm_select_opts *o, emdpo_lm_select **out,
                        emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!sft || !tok || !train || !valid || !o)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no model, tokenizer, data or options");
    if (o->k_min < 1 || o->k_max < o->k_min || o->k_max > EMDPO_MAX_K)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "k must be K or LO..HI with 1 <= LO <= HI <= %d",
                               EMDPO_MAX_K);
    if (!emdpo_lm_criterion_name(o->criterion))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "criterion must be margin or crossfit");
    emdpo_lm_select *s = emdpo_calloc(1, sizeof *s);
    sel_work w = {0};
    int rc = s ? EMDPO_OK : EMDPO_ERR_NOMEM;
    if (!rc) {
        s->o = *o;
        s->n_train = train->n_annot;
        s->n_valid = valid->n_annot;
        s->n_valid_dec = valid->n_dec;
        if ((train->source && !(s->train_path = emdpo_strdup(train->source))) ||
            (valid->source && !(s->valid_path = emdpo_strdup(valid->source))) ||
            (sft->source && !(s->model = emdpo_strdup(sft->source))) ||
            (emdpo_tokenizer_source(tok) && !(s->tokenizer = emdpo_strdup(emdpo_tokenizer_source(tok)))))
            rc = EMDPO_ERR_NOMEM;
    }
    if (rc) emdpo_diag_fail(diag, rc, "out of memory");
    if (!rc) rc = prepare(s, sft, tok, train, valid, &w, diag);
    for (int r = 0; !rc && r < s->n_rows; r++) {
        if ((rc = fit_row(s, r, sft, tok, train, valid, &w, diag))) break;
        if (o->progress) o->progress(o->progress_ud, &s->rows[r], s->n_valid);
    }
    if (!rc) { /* the largest criterion; a tie or NaN keeps the smaller K */
        int k[EMDPO_MAX_K];
        double v[EMDPO_MAX_K];
        for (int r = 0; r < s->n_rows; r++) k[r] = s->rows[r].k, v[r] = row_criterion(s, r);
        s->best = emdpo_margin_best(s->n_rows, k, v);
    }
    work_free(&w, o->k_max);
    /* select.json last: a directory with it is complete */
    if (!rc && o->out) rc = emdpo_afile_write_in(o->out, "select.json", write_select, s, diag);
    if (rc) {
        emdpo_lm_select_free(s);
        return rc;
    }
    *out = s;
    return EMDPO_OK;
}

int emdpo_lm_select_n_rows(const emdpo_lm_select *s) { return s ? s->n_rows : 0; }
int emdpo_lm_select_best(const emdpo_lm_select *s) { return s ? s->best : -1; }

int emdpo_lm_select_row_at(const emdpo_lm_select *s, int r, emdpo_lm_select_row *row) {
    if (!s || !row || r < 0 || r >= s->n_rows) return EMDPO_ERR_INVALID_ARG;
    *row = s->rows[r];
    return EMDPO_OK;
}

double emdpo_lm_select_group_margin(const emdpo_lm_select *s, int r, int g) {
    if (!s || r < 0 || r >= s->n_rows || g < 0 || g >= s->n_groups) return NAN;
    return s->group_margin[(size_t)r * s->n_groups + g];
}

static void json_row(FILE *fp, const emdpo_lm_select *s, int r) {
    const emdpo_lm_select_row *w = &s->rows[r];
    fprintf(fp, "    {\"k\": %d, \"value\": ", w->k);
    emdpo_json_num(fp, w->margin);
    fputs(", \"crossfit\": ", fp);
    emdpo_json_num(fp, w->crossfit);
    fputs(", \"train_loglik\": ", fp);
    emdpo_json_num(fp, w->train_loglik);
    fputs(", \"val_loglik_per_annotator\": ", fp);
    emdpo_json_num(fp, w->val_loglik / (double)s->n_valid);
    fputs(", \"group_margin\": ", fp);
    if (!s->n_groups) fputs("null", fp);
    for (int g = 0; g < s->n_groups; g++) {
        fputs(g ? ", " : "{", fp);
        emdpo_json_str(fp, s->group[g]);
        fputs(": ", fp);
        emdpo_json_num(fp, s->group_margin[(size_t)r * s->n_groups + g]);
    }
    fputs(s->n_groups ? "}}" : "}", fp);
}

int emdpo_lm_select_write_json(const emdpo_lm_select *s, FILE *fp) {
    if (!s || !fp) return EMDPO_ERR_INVALID_ARG;
    const emdpo_lm_select_opts *o = &s->o;
    const emdpo_em_opts *e = &o->fit.em;
    const emdpo_lm_mstep_opts *m = &o->fit.mstep;
    fprintf(fp, "{\n  \"criterion\": \"%s\",\n  \"rows\": [\n", emdpo_lm_criterion_title(o->criterion));
    for (int r = 0; r < s->n_rows; r++) {
        json_row(fp, s, r);
        fputs(r + 1 < s->n_rows ? ",\n" : "\n", fp);
    }
    fprintf(fp, "  ],\n  \"best_k\": %d,\n  \"criterion_definition\": \"%s\",\n", s->rows[s->best].k,
            emdpo_lm_criterion_definition(o->criterion));
    fprintf(fp, "  \"emdpo_version\": \"%s\",\n  \"family\": \"llama\",\n  \"data\": ", EMDPO_VERSION_STRING);
    emdpo_json_str(fp, s->train_path);
    fputs(",\n  \"validation\": ", fp);
    emdpo_json_str(fp, s->valid_path);
    fputs(",\n  \"model\": ", fp);
    emdpo_json_str(fp, s->model);
    fputs(",\n  \"tokenizer\": ", fp);
    emdpo_json_str(fp, s->tokenizer);
    fprintf(fp, ",\n  \"k_min\": %d,\n  \"k_max\": %d,\n  \"n_train\": %lld,\n  \"n_validation\": %lld,\n"
                "  \"n_validation_decisions\": %lld,\n  \"beta\": ",
            o->k_min, o->k_max, (long long)s->n_train, (long long)s->n_valid, (long long)s->n_valid_dec);
    emdpo_json_num(fp, m->beta);
    fprintf(fp, ",\n  \"seed\": %llu,\n  \"init\": \"%s\",\n  \"starts\": %d,\n  \"max_iter\": %d,\n  \"tol\": ",
            (unsigned long long)e->seed, emdpo_fit_init_label(e->init), e->starts, e->max_iter);
    emdpo_json_num(fp, e->tol);
    fprintf(fp, ",\n  \"patience\": %d,\n  \"optimizer\": \"%s\",\n  \"lr\": ", e->patience,
            emdpo_optim_name(m->optim.kind));
    emdpo_json_num(fp, m->optim.lr);
    fprintf(fp, ",\n  \"steps\": %lld,\n  \"epochs\": ", (long long)m->steps);
    emdpo_json_num(fp, m->epochs);
    fprintf(fp, ",\n  \"warmup\": %lld,\n  \"clip\": ", (long long)m->optim.warmup);
    emdpo_json_num(fp, m->optim.clip);
    fprintf(fp, ",\n  \"batch\": %d,\n  \"accum\": %d,\n  \"max_length\": %d,\n  \"max_prompt_length\": %d,\n"
                "  \"restart\": %s,\n  \"weight_norm\": \"%s\",\n  \"score_batch\": %d\n}\n",
            m->batch, m->accum, m->max_length, m->max_prompt_length, m->restart ? "true" : "false",
            emdpo_weight_norm_name(m->weight_norm), m->score_batch);
    return ferror(fp) ? EMDPO_ERR_IO : EMDPO_OK;
}
