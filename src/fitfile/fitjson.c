/* fit.json: the one writer (emdpo_fit_write, with posterior.csv and a
 * Llama fit's checkpoints) and the one reader (emdpo_fit_read). */
#include <limits.h>
#include <stdlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/dist.h"
#include "base/file.h"
#include "base/json.h"
#include "base/json_write.h"
#include "fitfile/fit.h"
#include "fitfile/posterior.h"
#include "lm/engine/llama.h"
#include "lm/io/llama_hf.h"
#include "lm/lm_adapted.h"
#include "lm/llama_policy.h"

/* ---- Writing --------------------------------------------------------------- */

static void write_empty_types(FILE *fp, const emdpo_fit *f) {
    fputs(",\n  \"empty_types\": [", fp);
    for (int k = 0, first = 1; k < f->K; k++)
        if (f->res.empty[k]) {
            fprintf(fp, "%s%d", first ? "" : ", ", k + 1);
            first = 0;
        }
    fputc(']', fp);
}

static void write_rows(FILE *fp, const double *m, int K, int p, const char *sep) {
    for (int k = 0; k < K; k++) {
        fputs(k ? sep : "", fp);
        emdpo_json_nums(fp, m + (size_t)k * p, p);
    }
}

static void write_loglinear(FILE *fp, const emdpo_fit *f) {
    int K = f->K, p = f->p, npar = 0;
    double aic = NAN, bic = NAN, icl = NAN;
    emdpo_fit_criteria(f, &npar, &aic, &bic, &icl);
    fprintf(fp, "{\n  \"emdpo_version\": \"%s\",\n  \"family\": \"loglinear\",\n  \"data\": ", EMDPO_VERSION_STRING);
    emdpo_json_str(fp, f->data);
    fprintf(fp, ",\n  \"k\": %d,\n  \"p\": %d,\n  \"beta\": ", K, p);
    emdpo_json_num(fp, f->beta);
    fputs(",\n  \"l2\": ", fp);
    emdpo_json_num(fp, f->l2);
    fputs(",\n  \"feature_names\": ", fp);
    if (f->feature_name) {
        fputc('[', fp);
        for (int q = 0; q < p; q++) {
            if (q) fputs(", ", fp);
            emdpo_json_str(fp, f->feature_name[q]);
        }
        fputc(']', fp);
    } else {
        fputs("null", fp);
    }
    fputs(",\n  \"loglik\": ", fp);
    emdpo_json_num(fp, f->res.loglik);
    fprintf(fp, ",\n  \"iterations\": %d,\n  \"best_iteration\": %d,\n  \"converged\": %s,\n", f->res.iterations,
            f->res.best_iteration, f->res.converged ? "true" : "false");
    fprintf(fp, "  \"mstep_unconverged\": %d,\n  \"starts\": %d,\n  \"best_start\": %d,\n  \"start_logliks\": ",
            f->res.mstep_unconverged, f->res.starts, f->res.best_start + 1);
    emdpo_json_nums(fp, f->res.start_loglik, f->res.starts);
    fprintf(fp, ",\n  \"seed\": %llu,\n  \"init\": \"%s\",\n  \"eta\": ", (unsigned long long)f->em.seed,
            emdpo_fit_init_label(f->em.init));
    emdpo_json_nums(fp, f->res.eta, K);
    fputs(",\n  \"theta\": [", fp);
    for (int k = 0; k < K; k++) {
        fputs(k ? ",\n    " : "\n    ", fp);
        emdpo_json_nums(fp, f->theta + (size_t)k * p, p);
    }
    fputs("\n  ],\n  \"se_eta\": ", fp);
    if (f->se_eta) emdpo_json_nums(fp, f->se_eta, K);
    else fputs("null", fp);
    fputs(",\n  \"se_theta\": ", fp);
    if (f->se_theta) {
        fputc('[', fp);
        write_rows(fp, f->se_theta, K, p, ", ");
        fputc(']', fp);
    } else {
        fputs("null", fp);
    }
    write_empty_types(fp, f);
    fprintf(fp, ",\n  \"npar\": %d,\n  \"aic\": ", npar);
    emdpo_json_num(fp, aic);
    fputs(",\n  \"bic\": ", fp);
    emdpo_json_num(fp, bic);
    fputs(",\n  \"icl\": ", fp);
    emdpo_json_num(fp, icl);
    fprintf(fp, ",\n  \"n_annotators\": %lld,\n  \"n_decisions\": %lld,\n  \"n_items\": %lld,\n",
            (long long)f->n_annot, (long long)f->n_dec, (long long)f->n_items);
    fputs("  \"loglik_trace\": ", fp);
    emdpo_json_nums(fp, f->res.trace, f->res.n_trace);
    fputs(",\n  \"elapsed_s\": ", fp);
    emdpo_json_num(fp, f->elapsed);
    fputs("\n}\n", fp);
}

static void write_llama(FILE *fp, const emdpo_fit *f) {
    int K = f->K;
    const emdpo_lm_mstep_opts *po = &f->mstep;
    fprintf(fp, "{\n  \"emdpo_version\": \"%s\",\n  \"family\": \"llama\",\n  \"data\": ", EMDPO_VERSION_STRING);
    emdpo_json_str(fp, f->data);
    fputs(",\n  \"model\": ", fp);
    emdpo_json_str(fp, f->model);
    fputs(",\n  \"tokenizer\": ", fp);
    emdpo_json_str(fp, f->tokenizer);
    /* How the data was read, when not as by default: what re-reads it
     * (aggregate, regret) must read it the same way. */
    const char *how[3] = {f->read_annotator_field, f->read_chat_template, f->read_special_tokens};
    static const char *key[3] = {"annotator_field", "chat_template", "special_tokens"};
    for (int i = 0; i < 3; i++)
        if (how[i]) {
            fprintf(fp, ",\n  \"%s\": ", key[i]);
            emdpo_json_str(fp, how[i]);
        }
    fprintf(fp, ",\n  \"k\": %d,\n  \"beta\": ", K);
    emdpo_json_num(fp, f->beta);
    fputs(",\n  \"loglik\": ", fp);
    emdpo_json_num(fp, f->res.loglik);
    fprintf(fp, ",\n  \"iterations\": %d,\n  \"best_iteration\": %d,\n  \"converged\": %s,\n  \"starts\": %d,\n"
                "  \"best_start\": %d,\n  \"start_logliks\": ",
            f->res.iterations, f->res.best_iteration, f->res.converged ? "true" : "false", f->res.starts,
            f->res.best_start + 1);
    emdpo_json_nums(fp, f->res.start_loglik, f->res.starts);
    fprintf(fp, ",\n  \"max_iter\": %d,\n  \"tol\": ", f->em.max_iter);
    emdpo_json_num(fp, f->em.tol);
    fprintf(fp, ",\n  \"patience\": %d", f->em.patience);
    fprintf(fp, ",\n  \"seed\": %llu,\n  \"init\": \"%s\",\n  \"eta\": ", (unsigned long long)f->em.seed,
            emdpo_fit_init_label(f->em.init));
    emdpo_json_nums(fp, f->res.eta, K);
    write_empty_types(fp, f);
    /* A transformer's parameter count is no penalty the criteria were
     * derived for: they are reported as null. */
    fputs(",\n  \"npar\": null,\n  \"aic\": null,\n  \"bic\": null,\n  \"icl\": null,\n", fp);
    fprintf(fp, "  \"n_annotators\": %lld,\n  \"n_decisions\": %lld,\n  \"n_items\": %lld,\n",
            (long long)f->n_annot, (long long)f->n_dec, (long long)f->n_items);
    fputs("  \"loglik_trace\": ", fp);
    emdpo_json_nums(fp, f->res.trace, f->res.n_trace);
    fputs(",\n  \"policies\": [", fp);
    for (int k = 0; k < K; k++) {
        fputs(k ? ", " : "", fp);
        emdpo_json_str(fp, f->policy[k]);
    }
    fprintf(fp, "],\n  \"mstep\": {\"steps\": %lld, \"optimizer\": \"%s\", \"lr\": ", (long long)f->mstep_steps,
            emdpo_optim_name(po->optim.kind));
    emdpo_json_num(fp, po->optim.lr);
    fprintf(fp, ", \"warmup\": %lld, \"clip\": ", (long long)po->optim.warmup);
    emdpo_json_num(fp, po->optim.clip);
    fputs(", \"rpo_alpha\": ", fp);
    emdpo_json_num(fp, po->rpo_alpha);
    fprintf(fp, ", \"batch\": %d, \"accum\": %d, \"max_length\": %d, \"max_prompt_length\": %d, "
                "\"restart\": %s, \"weight_norm\": \"%s\"",
            po->batch, po->accum, po->max_length, po->max_prompt_length, po->restart ? "true" : "false",
            emdpo_weight_norm_name(po->weight_norm));
    if (po->lora.r) { /* the types are PEFT adapters on "model" */
        fputs(", \"lora\": ", fp);
        emdpo_lora_config_write_json(fp, &po->lora);
    }
    fputs("},\n", fp);
    fputs("  \"elapsed_s\": ", fp);
    emdpo_json_num(fp, f->elapsed);
    fputs("\n}\n", fp);
}

/* dir/name, written atomically. */
static void write_posterior(FILE *fp, const void *ctx) {
    const emdpo_fit *f = ctx;
    emdpo_posterior_write_csv(fp, f->K, f->res.n_annot, (const char *const *)f->annot, f->res.gamma);
}

/* A share's posterior rows as text (a process's part of posterior.csv). */
typedef struct ranked_rows {
    const emdpo_fit *f;
    char *text;
    size_t len;
    int rc; /* of the gathering, which rank 0's writer cannot return */
} ranked_rows;

static int rows_text(ranked_rows *t) {
    FILE *m = open_memstream(&t->text, &t->len);
    if (!m) return EMDPO_ERR_NOMEM;
    emdpo_posterior_write_rows(m, t->f->K, t->f->res.n_annot, (const char *const *)t->f->annot, t->f->res.gamma);
    return fclose(m) == 0 ? EMDPO_OK : EMDPO_ERR_NOMEM;
}

/* Rank 0's writer of a share's posterior: the header, then every process's
 * rows in rank order (which is annotator order). */
static void write_posterior_ranked(FILE *fp, const void *ctx) {
    ranked_rows *t = (ranked_rows *)ctx;
    fputs("annotator", fp);
    for (int k = 0; k < t->f->K; k++) fprintf(fp, ",gamma_%d", k + 1);
    fputc('\n', fp);
    /* A failed write leaves the stream's error for the commit to find. */
    if (emdpo_dist_write_ranked(fp, t->text, t->len) == EMDPO_ERR_NOMEM) t->rc = EMDPO_ERR_NOMEM;
}

static void write_fit_json(FILE *fp, const void *ctx) {
    const emdpo_fit *f = ctx;
    if (f->family == EMDPO_FAMILY_LOGLINEAR) write_loglinear(fp, f);
    else write_llama(fp, f);
}

int emdpo_fit_write(const emdpo_fit *f, const char *dir, emdpo_diag *diag) {
    emdpo_diag_reset(diag, dir);
    if (!f || !dir) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no fit or directory");
    if (!f->res.gamma || !f->annot || (f->family == EMDPO_FAMILY_LLAMA && !f->pol) ||
        (f->family == EMDPO_FAMILY_LOGLINEAR && !f->theta))
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "a fit read from a file cannot be written again");
    if (f->shard) { /* every process has rows of the posterior; rank 0 writes */
        ranked_rows t = {f, NULL, 0, EMDPO_OK};
        int rc = rows_text(&t);
        if (!rc && emdpo_dist_rank() > 0) rc = emdpo_dist_write_ranked(NULL, t.text, t.len);
        else if (!rc && !(rc = emdpo_mkdirs(dir, diag)))
            rc = emdpo_afile_write_in(dir, "posterior.csv", write_posterior_ranked, &t, diag);
        if (!rc) rc = t.rc;
        free(t.text); /* open_memstream's, from malloc */
        if (rc == EMDPO_ERR_NOMEM) emdpo_diag_fail(diag, rc, "out of memory");
        if (rc || emdpo_dist_rank() > 0) return rc;
        return emdpo_afile_write_in(dir, "fit.json", write_fit_json, f, diag);
    }
    int rc = emdpo_mkdirs(dir, diag);
    for (int k = 0; !rc && f->family == EMDPO_FAMILY_LLAMA && k < f->K; k++) {
        char *path = emdpo_path_join(dir, f->policy[k]);
        if (!path) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        const emdpo_lora *lo = emdpo_llama_policy_adapter(f->pol, k);
        emdpo_llama_save_opts so = {f->save_dtype, emdpo_llama_policy_tokenizer(f->pol)};
        /* an adapter names its base by the SFT model's absolute path */
        rc = lo ? emdpo_lora_adapter_write(lo, path, f->save_dtype, f->model, diag)
                : emdpo_llama_hf_save(emdpo_llama_policy_model(f->pol, k), path, &so, diag);
        emdpo_strfree(path);
    }
    if (!rc) rc = emdpo_afile_write_in(dir, "posterior.csv", write_posterior, f, diag);
    if (!rc) rc = emdpo_afile_write_in(dir, "fit.json", write_fit_json, f, diag);
    return rc;
}

/* ---- Reading --------------------------------------------------------------- */

typedef struct reader {
    const emdpo_json *root;
    emdpo_fit *f;
    emdpo_diag *diag;
} reader;

static int bad(reader *r, const char *key, const char *what) {
    return emdpo_diag_fail(r->diag, EMDPO_ERR_PARSE, "\"%s\" %s", key, what);
}

/* The member key: absent or null gives NULL; another type than want is an
 * error. */
static int member(reader *r, const char *key, emdpo_json_type want, const char *what, const emdpo_json **out) {
    const emdpo_json *v = emdpo_json_get(r->root, key);
    *out = NULL;
    if (!v || v->type == EMDPO_JSON_NULL) return EMDPO_OK;
    if (v->type != want) return bad(r, key, what);
    *out = v;
    return EMDPO_OK;
}

static int int_member(reader *r, const char *key, int lo, int hi, int *out) {
    const emdpo_json *v = emdpo_json_get(r->root, key);
    if (!v || v->type == EMDPO_JSON_NULL) return EMDPO_OK;
    if (!v->is_int || v->inum < lo || v->inum > hi) {
        char what[64];
        snprintf(what, sizeof what, "must be an integer in %d..%d", lo, hi);
        return bad(r, key, what);
    }
    *out = (int)v->inum;
    return EMDPO_OK;
}

static int num_member(reader *r, const char *key, double *out) {
    const emdpo_json *v;
    int rc = member(r, key, EMDPO_JSON_NUMBER, "must be a number", &v);
    if (!rc && v) *out = v->num;
    return rc;
}

static int count_member(reader *r, const char *key, int64_t *out) {
    const emdpo_json *v = emdpo_json_get(r->root, key);
    if (!v || v->type == EMDPO_JSON_NULL) return EMDPO_OK;
    if (!v->is_int || v->inum < 0) return bad(r, key, "must be a count");
    *out = v->inum;
    return EMDPO_OK;
}

/* A string path; relative ones start from the fit's directory. */
static int path_member(reader *r, const char *key, char **out) {
    const emdpo_json *v;
    int rc = member(r, key, EMDPO_JSON_STRING, "must be a path", &v);
    if (rc || !v) return rc;
    if (!v->len || strlen(v->u.str) != v->len) return bad(r, key, "must be a path");
    *out = v->u.str[0] == '/' ? emdpo_strdup(v->u.str) : emdpo_path_join(r->f->dir, v->u.str);
    return *out ? EMDPO_OK : EMDPO_ERR_NOMEM;
}

/* An array of n numbers (nulls allowed and read as NaN when nulls); n < 0
 * takes any length, returned in *len. */
static int num_array(reader *r, const emdpo_json *a, const char *key, int n, int nulls, double *out) {
    if (!a || a->type != EMDPO_JSON_ARRAY || (n >= 0 && (int)a->len != n)) {
        char what[64];
        snprintf(what, sizeof what, n >= 0 ? "must hold %d numbers" : "must be an array of numbers", n);
        return bad(r, key, what);
    }
    for (size_t i = 0; i < a->len; i++) {
        const emdpo_json *e = &a->u.elems[i];
        if (e->type == EMDPO_JSON_NUMBER) out[i] = e->num;
        else if (nulls && e->type == EMDPO_JSON_NULL) out[i] = NAN;
        else return bad(r, key, nulls ? "must hold numbers or nulls" : "must hold numbers");
    }
    return EMDPO_OK;
}

/* A K x p matrix as K arrays of p numbers. */
static int num_matrix(reader *r, const char *key, int K, int p, int nulls, double **out) {
    const emdpo_json *m;
    int rc = member(r, key, EMDPO_JSON_ARRAY, "must be an array of arrays", &m);
    if (rc || !m) return rc;
    if ((int)m->len != K) return bad(r, key, "must hold k arrays");
    size_t n = (size_t)K * (size_t)p;
    if (!(*out = emdpo_malloc(n * sizeof **out))) return EMDPO_ERR_NOMEM;
    for (int k = 0; !rc && k < K; k++) rc = num_array(r, &m->u.elems[k], key, p, nulls, *out + (size_t)k * p);
    return rc;
}

static int read_common(reader *r) {
    emdpo_fit *f = r->f;
    const emdpo_json *eta, *trace, *starts, *empty;
    int rc;
    f->res.loglik = NAN;
    f->res.iterations = f->res.best_iteration = f->res.converged = f->res.mstep_unconverged = -1;
    f->res.best_start = -1;
    f->elapsed = f->beta = NAN;
    f->n_annot = f->n_dec = f->n_items = -1;
    if ((rc = num_member(r, "beta", &f->beta)) || (rc = num_member(r, "loglik", &f->res.loglik)) ||
        (rc = num_member(r, "elapsed_s", &f->elapsed)) ||
        (rc = int_member(r, "iterations", 0, INT_MAX, &f->res.iterations)) ||
        (rc = int_member(r, "best_iteration", 0, INT_MAX, &f->res.best_iteration)) ||
        (rc = int_member(r, "mstep_unconverged", 0, INT_MAX, &f->res.mstep_unconverged)) ||
        (rc = count_member(r, "n_annotators", &f->n_annot)) || (rc = count_member(r, "n_decisions", &f->n_dec)) ||
        (rc = count_member(r, "n_items", &f->n_items)) || (rc = path_member(r, "data", &f->data)))
        return rc;
    if (!isnan(f->beta) && !(f->beta > 0)) return bad(r, "beta", "must be positive");
    const emdpo_json *conv;
    if ((rc = member(r, "converged", EMDPO_JSON_BOOL, "must be true or false", &conv))) return rc;
    if (conv) f->res.converged = conv->boolean;
    int best = 0;
    if ((rc = int_member(r, "best_start", 1, INT_MAX, &best))) return rc;
    f->res.best_start = best - 1;
    if ((rc = member(r, "eta", EMDPO_JSON_ARRAY, "must hold k numbers", &eta)) ||
        (eta && (rc = num_array(r, eta, "eta", f->K, 0, f->res.eta))))
        return rc;
    if ((rc = member(r, "loglik_trace", EMDPO_JSON_ARRAY, "must be an array of numbers", &trace))) return rc;
    if (trace) {
        f->res.n_trace = (int)trace->len;
        if (!(f->res.trace = emdpo_malloc((size_t)(trace->len ? trace->len : 1) * sizeof(double))))
            return EMDPO_ERR_NOMEM;
        if ((rc = num_array(r, trace, "loglik_trace", -1, 1, f->res.trace))) return rc;
    }
    if ((rc = member(r, "start_logliks", EMDPO_JSON_ARRAY, "must be an array of numbers", &starts))) return rc;
    if (starts && starts->len) {
        if (!(f->res.start_loglik = emdpo_malloc(starts->len * sizeof(double)))) return EMDPO_ERR_NOMEM;
        f->res.starts = f->em.starts = (int)starts->len;
        if ((rc = num_array(r, starts, "start_logliks", -1, 1, f->res.start_loglik))) return rc;
    }
    if ((rc = member(r, "empty_types", EMDPO_JSON_ARRAY, "must list types", &empty))) return rc;
    for (size_t i = 0; empty && i < empty->len; i++) {
        const emdpo_json *e = &empty->u.elems[i];
        if (!e->is_int || e->inum < 1 || e->inum > f->K) return bad(r, "empty_types", "must list types 1..k");
        if (!f->res.empty[e->inum - 1]) f->res.n_empty++;
        f->res.empty[e->inum - 1] = 1;
    }
    const emdpo_json *seed, *init;
    if ((rc = member(r, "seed", EMDPO_JSON_NUMBER, "must be a count", &seed))) return rc;
    if (seed) {
        if (!seed->is_int || seed->inum < 0) return bad(r, "seed", "must be a count");
        f->em.seed = (uint64_t)seed->inum;
    }
    if ((rc = member(r, "init", EMDPO_JSON_STRING, "must be a string", &init))) return rc;
    if (init) {
        int found = -1;
        for (int i = 0; emdpo_init_name(i); i++)
            if (strcmp(init->u.str, emdpo_fit_init_label((emdpo_init)i)) == 0) found = i;
        if (found < 0) return bad(r, "init", "must be kmeans++, random or kmeans-tokens");
        f->em.init = (emdpo_init)found;
    }
    return EMDPO_OK;
}

static int read_loglinear(reader *r) {
    emdpo_fit *f = r->f;
    int rc;
    f->p = 0;
    if ((rc = int_member(r, "p", 1, 100000, &f->p))) return rc;
    if (isnan(f->beta)) f->beta = 1.0;
    if ((rc = num_member(r, "l2", &f->l2))) return rc;
    if (!(f->l2 >= 0)) return bad(r, "l2", "must be >= 0");
    const emdpo_json *names;
    if ((rc = member(r, "feature_names", EMDPO_JSON_ARRAY, "must list p names", &names))) return rc;
    if (names && f->p) {
        if ((int)names->len != f->p) return bad(r, "feature_names", "must list p names");
        if (!(f->feature_name = emdpo_calloc((size_t)f->p, sizeof *f->feature_name))) return EMDPO_ERR_NOMEM;
        for (int q = 0; q < f->p; q++) {
            const emdpo_json *e = &names->u.elems[q];
            if (e->type != EMDPO_JSON_STRING) return bad(r, "feature_names", "must list p names");
            if (!(f->feature_name[q] = emdpo_strdup(e->u.str))) return EMDPO_ERR_NOMEM;
        }
    }
    if (!f->p) {
        if (emdpo_json_get(r->root, "theta")) return bad(r, "p", "must give the features of theta");
        return EMDPO_OK;
    }
    if ((rc = num_matrix(r, "theta", f->K, f->p, 0, &f->theta)) ||
        (rc = num_matrix(r, "se_theta", f->K, f->p, 1, &f->se_theta)))
        return rc;
    const emdpo_json *se;
    if ((rc = member(r, "se_eta", EMDPO_JSON_ARRAY, "must hold k numbers", &se))) return rc;
    if (se) {
        if (!(f->se_eta = emdpo_malloc((size_t)f->K * sizeof(double)))) return EMDPO_ERR_NOMEM;
        if ((rc = num_array(r, se, "se_eta", f->K, 1, f->se_eta))) return rc;
    }
    return EMDPO_OK;
}

static int read_mstep(reader *r, const emdpo_json *ms) {
    emdpo_fit *f = r->f;
    emdpo_lm_mstep_opts *o = &f->mstep;
    reader sub = {ms, f, r->diag};
    int rc, len = 0, plen = 0;
    if ((rc = int_member(&sub, "max_length", 2, INT_MAX, &len)) ||
        (rc = int_member(&sub, "max_prompt_length", 1, INT_MAX, &plen)))
        return rc;
    o->max_length = len;
    o->max_prompt_length = plen;
    const emdpo_json *opt;
    if ((rc = member(&sub, "optimizer", EMDPO_JSON_STRING, "must be rmsprop or adamw", &opt))) return rc;
    if (opt) {
        int kind = -1;
        for (int i = 0; emdpo_optim_name(i); i++)
            if (strcmp(opt->u.str, emdpo_optim_name(i)) == 0) kind = i;
        if (kind < 0) return bad(r, "mstep.optimizer", "must be rmsprop or adamw");
        o->optim.kind = (emdpo_optim_kind)kind;
    }
    if ((rc = num_member(&sub, "lr", &o->optim.lr)) || (rc = num_member(&sub, "clip", &o->optim.clip)) ||
        (rc = num_member(&sub, "rpo_alpha", &o->rpo_alpha)) ||
        (rc = count_member(&sub, "warmup", &o->optim.warmup)) || (rc = int_member(&sub, "batch", 1, INT_MAX, &o->batch)) ||
        (rc = int_member(&sub, "accum", 1, INT_MAX, &o->accum)) || (rc = count_member(&sub, "steps", &f->mstep_steps)))
        return rc;
    if (!(o->optim.lr >= 0) || !(o->optim.clip >= 0) || !(o->rpo_alpha >= 0))
        return bad(r, "mstep", "lr, clip and rpo_alpha must be >= 0");
    const emdpo_json *restart, *wn;
    if ((rc = member(&sub, "restart", EMDPO_JSON_BOOL, "must be true or false", &restart)) ||
        (rc = member(&sub, "weight_norm", EMDPO_JSON_STRING, "must be mean or none", &wn)))
        return rc;
    if (restart) o->restart = restart->boolean;
    if (wn) {
        if (strcmp(wn->u.str, "mean") == 0) o->weight_norm = EMDPO_WEIGHT_NORM_MEAN;
        else if (strcmp(wn->u.str, "none") == 0) o->weight_norm = EMDPO_WEIGHT_NORM_NONE;
        else return bad(r, "mstep.weight_norm", "must be mean or none");
    }
    return EMDPO_OK;
}

static int read_llama(reader *r) {
    emdpo_fit *f = r->f;
    int rc;
    const emdpo_json *field;
    if ((rc = member(r, "annotator_field", EMDPO_JSON_STRING, "must be a field name", &field))) return rc;
    if (field && (!field->len || strlen(field->u.str) != field->len)) return bad(r, "annotator_field", "must be a field name");
    if (field && !(f->read_annotator_field = emdpo_strdup(field->u.str))) return EMDPO_ERR_NOMEM;
    if ((rc = path_member(r, "chat_template", &f->read_chat_template)) ||
        (rc = path_member(r, "special_tokens", &f->read_special_tokens)))
        return rc;
    if ((rc = path_member(r, "model", &f->model)) || (rc = path_member(r, "tokenizer", &f->tokenizer)) ||
        (rc = int_member(r, "max_iter", 0, INT_MAX, &f->em.max_iter)) || (rc = num_member(r, "tol", &f->em.tol)) ||
        (rc = int_member(r, "patience", 0, INT_MAX, &f->em.patience)))
        return rc;
    if (!isnan(f->beta)) f->mstep.beta = f->beta;
    const emdpo_json *pol, *ms;
    if ((rc = member(r, "policies", EMDPO_JSON_ARRAY, "must name k checkpoints", &pol))) return rc;
    if (pol) {
        if ((int)pol->len != f->K) return bad(r, "policies", "must name k checkpoints");
        if (!(f->policy_path = emdpo_calloc((size_t)f->K, sizeof *f->policy_path))) return EMDPO_ERR_NOMEM;
        for (int k = 0; k < f->K; k++) {
            const emdpo_json *e = &pol->u.elems[k];
            if (e->type != EMDPO_JSON_STRING || !e->len || strlen(e->u.str) != e->len || strchr(e->u.str, '/') ||
                strcmp(e->u.str, ".") == 0 || strcmp(e->u.str, "..") == 0)
                return bad(r, "policies", "entries must be directory names in the fit");
            emdpo_strfree(f->policy[k]);
            if (!(f->policy[k] = emdpo_strdup(e->u.str)) ||
                !(f->policy_path[k] = emdpo_path_join(f->dir, e->u.str)))
                return EMDPO_ERR_NOMEM;
        }
    }
    if ((rc = member(r, "mstep", EMDPO_JSON_OBJECT, "must be an object", &ms))) return rc;
    return ms ? read_mstep(r, ms) : EMDPO_OK;
}

int emdpo_fit_read(const char *path, emdpo_fit **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "path is NULL");
    int is_dir = emdpo_path_is_dir(path);
    char *file = is_dir ? emdpo_path_join(path, "fit.json") : emdpo_strdup(path);
    char *dir = is_dir ? emdpo_strdup(path) : emdpo_path_dir(path);
    char *text = NULL;
    size_t len = 0;
    emdpo_json_doc *doc = NULL;
    emdpo_fit *f = NULL;
    int rc = file && dir ? EMDPO_OK : EMDPO_ERR_NOMEM;
    emdpo_diag_reset(diag, file ? file : path);
    if (!rc) rc = emdpo_file_read(file, &text, &len, diag);
    const emdpo_json *root = NULL;
    if (!rc && !(rc = emdpo_json_doc_create(&doc))) {
        emdpo_json_error err;
        if ((rc = emdpo_json_parse(doc, text, len, &root, &err)) == EMDPO_ERR_PARSE) {
            long line = 1;
            for (size_t i = 0; i < err.offset && i < len; i++) line += text[i] == '\n';
            emdpo_diag_set(diag, line, "not valid JSON: %s", err.msg);
        } else if (!rc && root->type != EMDPO_JSON_OBJECT) {
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "expected a JSON object, found %s",
                                 emdpo_json_type_name(root->type));
        }
    }
    int family = -1, K = 0;
    if (!rc) {
        const emdpo_json *fam = emdpo_json_get(root, "family"), *k = emdpo_json_get(root, "k");
        for (int i = 0; fam && fam->type == EMDPO_JSON_STRING && emdpo_family_name(i); i++)
            if (strcmp(fam->u.str, emdpo_family_name(i)) == 0) family = i;
        if (family < 0) rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"family\" must be \"loglinear\" or \"llama\"");
        else if (!k || !k->is_int || k->inum < 1 || k->inum > EMDPO_MAX_K)
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"k\" must be an integer in 1..%d", EMDPO_MAX_K);
        else
            K = (int)k->inum;
    }
    if (!rc) rc = emdpo_fit_alloc((emdpo_family)family, K, &f);
    if (!rc) {
        f->dir = dir;
        f->source = emdpo_strdup(path);
        dir = NULL;
        reader r = {root, f, diag};
        rc = f->source ? read_common(&r) : EMDPO_ERR_NOMEM;
        if (!rc) rc = family == EMDPO_FAMILY_LOGLINEAR ? read_loglinear(&r) : read_llama(&r);
    }
    if (rc == EMDPO_ERR_NOMEM) emdpo_diag_fail(diag, rc, "out of memory");
    emdpo_json_doc_free(doc);
    if (text) emdpo_free(text, len + 1);
    emdpo_strfree(file);
    emdpo_strfree(dir);
    if (rc) {
        emdpo_fit_free(f);
        return rc;
    }
    *out = f;
    return EMDPO_OK;
}

const char *emdpo_fit_source(const emdpo_fit *f) { return f ? f->source : NULL; }
const char *emdpo_fit_dir(const emdpo_fit *f) { return f ? f->dir : NULL; }

int emdpo_fit_check_files(const emdpo_fit *f, int with_data, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!f) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no fit");
    if (!f->source) return EMDPO_OK;
    const char *field[5] = {"data", "model", "tokenizer", "chat_template", "special_tokens"};
    const char *path[5] = {with_data ? f->data : NULL, f->model, f->tokenizer, f->read_chat_template,
                           f->read_special_tokens};
    const char *missing = NULL, *what = NULL;
    for (int i = 0; !missing && i < 5; i++)
        if (path[i] && !emdpo_path_exists(path[i])) missing = path[i], what = field[i];
    for (int k = 0; !missing && f->policy_path && k < f->K; k++)
        if (f->policy_path[k] && !emdpo_path_exists(f->policy_path[k])) missing = f->policy_path[k], what = "policies";
    if (!missing) return EMDPO_OK;
    char *file = emdpo_path_is_dir(f->source) ? emdpo_path_join(f->source, "fit.json") : emdpo_strdup(f->source);
    emdpo_diag_reset(diag, file ? file : f->source);
    emdpo_strfree(file);
    return emdpo_diag_fail(diag, EMDPO_ERR_IO, "\"%s\" names %s, which does not exist", what, missing);
}

int emdpo_fit_file_is(const char *path, emdpo_family family) {
    emdpo_fit *f = NULL;
    int yes = path && emdpo_fit_read(path, &f, NULL) == EMDPO_OK && f->family == family;
    emdpo_fit_free(f);
    return yes;
}
