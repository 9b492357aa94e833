/* The paper's comparison ensembles (section 5, appendix D.2), each a set of
 * DPO policies trained from the SFT model and written as emdpo_fit_write
 * writes a Llama fit's types, so that evaluation treats every method alike
 * (emdpo/lm.h's emdpo_baseline_run):
 *   vanilla    one policy on all decisions             -> DIR/type_1
 *   cluster    k-means on annotator embeddings, one
 *              policy per cluster (Cluster-DPO)         -> DIR/type_1..K, DIR/clusters.csv
 *   truelabel  one policy per true group (True-Label)   -> DIR/type_g, g = the group's
 *              position in baseline.json's "groups" (first-seen order in the data) */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/csv.h"
#include "base/diag.h"
#include "base/dist.h"
#include "base/file.h"
#include "base/json_write.h"
#include "data/data.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/io/lm_batch.h"
#include "lm/io/tokenizer.h"
#include "lm/lm_adapted.h"
#include "lm/lm_eval.h"

const char *emdpo_baseline_method_name(int m) {
    switch (m) {
    case EMDPO_BASELINE_VANILLA: return "vanilla";
    case EMDPO_BASELINE_CLUSTER: return "cluster";
    case EMDPO_BASELINE_TRUELABEL: return "truelabel";
    default: return NULL;
    }
}

void emdpo_baseline_opts_init(emdpo_baseline_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->method = EMDPO_BASELINE_VANILLA;
    o->k = 2;
    emdpo_train_config_init(&o->train, EMDPO_TRAIN_DPO);
    o->score_batch = 16;
    emdpo_lora_config_init(&o->lora);
    o->lora.r = 0;
}

/* Everything one run shares. */
typedef struct run {
    const emdpo_baseline_opts *o;
    const emdpo_llama *sft;
    const emdpo_tokenizer *tok;
    const emdpo_data *d;
    const char *out;
    int max_length, max_prompt_length;
    char *base_path; /* with adapters: sft's absolute path, their base_model_name_or_path (NULL: unknown) */
} run;

/* Trains one policy on the decisions of the annotators whose label is
 * `label` (every annotator when labels is NULL) and saves it as
 * out/type_<k+1>. A policy with no decisions is the SFT model itself (a
 * fresh adapter, B = 0, with adapters). */
static int train_one(const run *r, const int32_t *labels, int label, int k, int64_t *n_dec, emdpo_baseline_note note,
                     void *note_ud, emdpo_diag *diag) {
    const emdpo_data *d = r->d;
    emdpo_data *sub = NULL;
    emdpo_lm_set *set = NULL;
    emdpo_llama *pol = NULL;
    emdpo_lora *lo = NULL;
    int64_t *idx = emdpo_malloc((size_t)d->n_annot * sizeof *idx), n = 0;
    int rc = idx ? 0 : EMDPO_ERR_NOMEM;
    *n_dec = 0;
    for (int64_t i = 0; !rc && i < d->n_annot; i++)
        if (!labels || labels[i] == label) {
            idx[n++] = i;
            *n_dec += d->annot_dec[i + 1] - d->annot_dec[i];
        }
    if (!rc && n) rc = emdpo_data_subset(d, idx, n, &sub);
    if (!rc && n) rc = emdpo_lm_set_from_data(sub, r->tok, r->max_length, r->max_prompt_length, &set);
    emdpo_train_config c = r->o->train;
    c.seed = r->o->train.seed + (uint64_t)k;
    if (!rc && r->o->lora.r && !(rc = emdpo_lora_create(&r->sft->config, &r->o->lora, &lo)))
        emdpo_lora_init(lo, c.seed);
    if (!rc && n)
        rc = lo ? emdpo_lm_train_dpo_lora(r->sft, lo, set, &c, r->o->steps)
                : emdpo_lm_train_dpo(r->sft, set, &c, r->o->steps, &pol);
    /* Under MPI every process trained its share of each step; rank 0 writes. */
    if (!rc && n &&
        !(lo ? emdpo_dist_same(lo->buf, lo->n * sizeof *lo->buf)
             : emdpo_dist_same(pol->param_buf, pol->num_params * sizeof *pol->param_buf)))
        rc = EMDPO_ERR_NUMERIC;
    char name[32];
    snprintf(name, sizeof name, "type_%d", k + 1);
    char *path = emdpo_path_join(r->out, name);
    if (rc || !path) {
        rc = rc ? rc : EMDPO_ERR_NOMEM;
        emdpo_diag_fail(diag, rc,
                        rc == EMDPO_ERR_LIMIT     ? "a sequence does not fit the model (context or vocabulary)"
                        : rc == EMDPO_ERR_NUMERIC ? "the loss or gradient is not finite (a lower learning rate?)"
                                                  : "training failed: %s",
                        emdpo_status_name(rc));
    } else if (emdpo_dist_rank() == 0) {
        if (!n && note) note(note_ud, k, 0);
        emdpo_llama_save_opts so = {r->o->save_dtype, r->tok};
        rc = lo ? emdpo_lora_adapter_write(lo, path, r->o->save_dtype, r->base_path, diag)
                : emdpo_llama_save_with(pol ? pol : r->sft, path, &so, diag);
    }
    emdpo_strfree(path);
    emdpo_lora_free(lo);
    emdpo_llama_free(pol);
    emdpo_lm_set_free(set);
    emdpo_data_free(sub);
    emdpo_free(idx, (size_t)d->n_annot * sizeof *idx);
    return rc;
}

static void write_json(FILE *fp, const run *r, int K, const int64_t *n_dec) {
    const emdpo_baseline_opts *o = r->o;
    const emdpo_data *d = r->d;
    fprintf(fp, "{\n  \"emdpo_version\": \"%s\",\n  \"family\": \"llama\",\n  \"method\": \"%s\",\n  \"data\": ",
            EMDPO_VERSION_STRING, emdpo_baseline_method_name(o->method));
    char *abs = d->source ? emdpo_path_real(d->source) : NULL;
    emdpo_json_str(fp, abs);
    emdpo_strfree(abs);
    fputs(",\n  \"model\": ", fp);
    abs = r->sft->source ? emdpo_path_real(r->sft->source) : NULL;
    emdpo_json_str(fp, abs);
    emdpo_strfree(abs);
    fputs(",\n  \"tokenizer\": ", fp);
    const char *ts = emdpo_tokenizer_source(r->tok);
    abs = ts ? emdpo_path_real(ts) : NULL;
    emdpo_json_str(fp, abs);
    emdpo_strfree(abs);
    fprintf(fp, ",\n  \"k\": %d,\n  \"groups\": [", K);
    for (int g = 0; g < d->n_groups; g++) {
        if (g) fputs(", ", fp);
        emdpo_json_str(fp, d->group_name[g]);
    }
    fputs("],\n  \"policies\": [", fp);
    for (int k = 0; k < K; k++) fprintf(fp, "%s\"type_%d\"", k ? ", " : "", k + 1);
    fputs("],\n  \"decisions\": [", fp);
    for (int k = 0; k < K; k++) fprintf(fp, "%s%lld", k ? ", " : "", (long long)n_dec[k]);
    fprintf(fp, "],\n  \"seed\": %llu,\n  \"beta\": ", (unsigned long long)o->train.seed);
    emdpo_json_num(fp, o->train.loss.beta);
    fprintf(fp, ",\n  \"training\": {\"steps\": %lld, \"optimizer\": \"%s\", \"lr\": ", (long long)o->steps,
            emdpo_optim_name(o->train.optim.kind));
    emdpo_json_num(fp, o->train.optim.lr);
    fprintf(fp, ", \"warmup\": %lld, \"clip\": ", (long long)o->train.optim.warmup);
    emdpo_json_num(fp, o->train.optim.clip);
    fputs(", \"rpo_alpha\": ", fp);
    emdpo_json_num(fp, o->train.loss.rpo_alpha);
    fprintf(fp, ", \"batch\": %d, \"accum\": %d, \"max_length\": %d, \"max_prompt_length\": %d}", o->train.batch,
            o->train.accum, r->max_length, r->max_prompt_length);
    if (o->lora.r) { /* the policies are PEFT adapters on "model" */
        fputs(",\n  \"lora\": ", fp);
        emdpo_lora_config_write_json(fp, &o->lora);
    }
    fputs("\n}\n", fp);
}

static void write_clusters(FILE *fp, const emdpo_data *d, const int32_t *assign) {
    fputs("annotator,cluster\n", fp);
    for (int64_t i = 0; i < d->n_annot; i++) {
        emdpo_csv_write_field(fp, d->annot_name[i]);
        fprintf(fp, ",%d\n", assign[i] + 1);
    }
}

/* What baseline.json and clusters.csv are written from. */
typedef struct outputs {
    const run *r;
    int K;
    const int64_t *n_dec;
    const int32_t *assign;
} outputs;

static void clusters_writer(FILE *fp, const void *ctx) {
    const outputs *x = ctx;
    write_clusters(fp, x->r->d, x->assign);
}

static void json_writer(FILE *fp, const void *ctx) {
    const outputs *x = ctx;
    write_json(fp, x->r, x->K, x->n_dec);
}

static int check(const emdpo_baseline_opts *o, const emdpo_data *d, emdpo_diag *diag) {
    const emdpo_train_config *c = &o->train;
    if (!emdpo_baseline_method_name(o->method))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "method must be vanilla, cluster or truelabel");
    if (!emdpo_optim_name(c->optim.kind)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "unknown optimizer");
    if (!emdpo_dtype_name(o->save_dtype)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "unknown save_dtype");
    if (o->k < 1 || o->k > EMDPO_MAX_K) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "k must be in 1..%d", EMDPO_MAX_K);
    if (!(c->loss.beta > 0) || !isfinite(c->loss.beta)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "beta must be > 0");
    if (!(c->loss.rpo_alpha >= 0) || !isfinite(c->loss.rpo_alpha))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "rpo_alpha must be >= 0");
    if (o->steps < 0 || c->optim.warmup < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "steps and warmup must be >= 0");
    if (c->batch < 1 || c->accum < 1 || o->score_batch < 1)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "batch, accum and score_batch must be >= 1");
    if (!(c->optim.lr >= 0) || !(c->optim.clip >= 0))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "lr and clip must be >= 0");
    if (o->lora.r && emdpo_lora_config_check(&o->lora))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "lora: r must be >= 1, alpha finite, dropout in [0, 1), some targets");
    if (!emdpo_data_has_text(d))
        return emdpo_diag_at(diag, EMDPO_ERR_UNSUPPORTED, d->source, 0,
                             "responses have no text; baselines need text responses");
    if (o->method == EMDPO_BASELINE_TRUELABEL && d->n_groups == 0)
        return emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, d->source, 0,
                             "no \"group\" field: truelabel needs each annotator's true group");
    if (o->method == EMDPO_BASELINE_CLUSTER && o->k > d->n_annot)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "k %d exceeds the %lld annotators", o->k,
                               (long long)d->n_annot);
    return EMDPO_OK;
}

int emdpo_baseline_run(const emdpo_llama *sft, const emdpo_tokenizer *tok, const emdpo_data *d,
                       const emdpo_baseline_opts *o, const char *out_dir, emdpo_baseline_note note, void *note_ud,
                       int *K_out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!sft || !tok || !d || !o || !out_dir)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no model, tokenizer, data, options or directory");
    int rc = check(o, d, diag);
    if (rc) return rc;
    if (sft->frozen && !o->lora.r)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "a frozen model trains adapters only (lora.r > 0)");
    run r = {o, sft, tok, d, out_dir, o->max_length, o->max_prompt_length, NULL};
    if (o->lora.r && sft->source && !(r.base_path = emdpo_path_real(sft->source)))
        return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    int lead = emdpo_dist_rank() == 0;
    if ((rc = emdpo_lm_lengths(sft, &r.max_length, &r.max_prompt_length, diag)) ||
        (lead && (rc = emdpo_mkdirs(out_dir, diag)))) {
        emdpo_strfree(r.base_path);
        return rc;
    }
    int K = o->method == EMDPO_BASELINE_VANILLA ? 1 : o->method == EMDPO_BASELINE_CLUSTER ? o->k : d->n_groups;
    int64_t n_labels = o->method == EMDPO_BASELINE_VANILLA ? 0 : d->n_annot;
    int64_t *n_dec = emdpo_calloc((size_t)K, sizeof *n_dec);
    int32_t *labels = n_labels ? emdpo_malloc((size_t)n_labels * sizeof *labels) : NULL;
    emdpo_lm_set *set = NULL;
    if (!n_dec || (n_labels && !labels)) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (!rc && o->method == EMDPO_BASELINE_TRUELABEL) memcpy(labels, d->annot_group, (size_t)n_labels * sizeof *labels);
    if (!rc && o->method == EMDPO_BASELINE_CLUSTER) {
        if ((rc = emdpo_lm_set_from_data(d, tok, r.max_length, r.max_prompt_length, &set)) ||
            (rc = emdpo_lm_cluster_annotators(sft, d, set, o->k, o->train.seed, o->score_batch, labels)))
            emdpo_diag_fail(diag, rc,
                            rc == EMDPO_ERR_LIMIT ? "a sequence does not fit the model (context or vocabulary)"
                                                  : "annotator clustering: %s",
                            emdpo_status_name(rc));
        else if (lead)
            rc = emdpo_afile_write_in(out_dir, "clusters.csv", clusters_writer, &(outputs){&r, K, n_dec, labels}, diag);
    }
    for (int k = 0; k < K && !rc; k++) rc = train_one(&r, labels, k, k, &n_dec[k], note, note_ud, diag);
    if (!rc && lead) rc = emdpo_afile_write_in(out_dir, "baseline.json", json_writer, &(outputs){&r, K, n_dec, labels}, diag);
    if (!rc && K_out) *K_out = K;
    emdpo_lm_set_free(set);
    emdpo_free(labels, labels ? (size_t)n_labels * sizeof *labels : 0);
    emdpo_free(n_dec, n_dec ? (size_t)K * sizeof *n_dec : 0);
    emdpo_strfree(r.base_path);
    return rc;
}
