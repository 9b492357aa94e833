/* An SFT or DPO run (emdpo/lm.h's emdpo_train_job): load the model, the
 * reference, the tokenizer, the data and its weights, train with a JSONL
 * metrics log, and checkpoint so that a resumed run ends with the same
 * bits. What emdpo sft and emdpo dpo do. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/dist.h"
#include "base/file.h"
#include "base/json_write.h"
#include "drivers/train_log.h"
#include "data/data.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/io/lm_batch.h"
#include "lm/io/tokenizer.h"
#include "lm/lm_train.h"

struct emdpo_train_job {
    emdpo_train_opts o;        /* its paths point at the copies below */
    char *path[10];            /* the caller's paths, copied */
    emdpo_llama *m, *ref;      /* with an adapter, m is the frozen base */
    emdpo_lora *lo;            /* the adapter trained, or NULL */
    char *base_path;           /* with lo: the model's absolute path, the adapter's base_model_name_or_path */
    emdpo_tokenizer *tok;
    emdpo_data *d;
    emdpo_lm_set *set;
    emdpo_trainer *t;
    double *w;
    int64_t n_w, steps;
    char *ckpt;
    emdpo_train_metrics last;
};

void emdpo_train_opts_init(emdpo_train_opts *o, emdpo_train_mode mode) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    emdpo_train_config_init(&o->train, mode);
    o->save_every = 100;
    emdpo_lora_config_init(&o->lora);
    o->lora.r = 0;
}

void emdpo_train_job_free(emdpo_train_job *j) {
    if (!j) return;
    emdpo_trainer_free(j->t);
    emdpo_free(j->w, (size_t)j->n_w * sizeof *j->w);
    emdpo_lm_set_free(j->set);
    emdpo_data_free(j->d);
    emdpo_tokenizer_free(j->tok);
    emdpo_llama_free(j->ref);
    emdpo_lora_free(j->lo);
    emdpo_strfree(j->base_path);
    emdpo_llama_free(j->m);
    emdpo_strfree(j->ckpt);
    for (size_t i = 0; i < sizeof j->path / sizeof j->path[0]; i++) emdpo_strfree(j->path[i]);
    emdpo_free(j, sizeof *j);
}

static int check_opts(const emdpo_train_opts *o, emdpo_diag *diag) {
    const emdpo_train_config *c = &o->train;
    int dpo = c->mode == EMDPO_TRAIN_DPO;
    if (c->mode != EMDPO_TRAIN_SFT && !dpo) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "mode must be SFT or DPO");
    if (!o->data || !o->tokenizer || !o->out)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "data, tokenizer and out are required");
    if (o->model && o->config_spec) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "give model or config, not both");
    if (!o->model && !o->config_spec && !o->resume)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "missing model (or config for a fresh model)");
    if (o->lora.r && !o->model)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "a LoRA adapter needs the model it adapts (also to resume)");
    if (o->lora.r && emdpo_lora_config_check(&o->lora))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "LoRA: r must be >= 1, alpha finite, dropout in [0, 1), some targets");
    if (o->merge && !o->lora.r) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "merge needs a LoRA adapter");
    if (!emdpo_optim_name(c->optim.kind)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "unknown optimizer");
    if (!emdpo_dtype_name(o->save_dtype)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "unknown save_dtype");
    if (!emdpo_loss_name(c->loss.kind)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "unknown loss");
    if (o->steps < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "steps must be >= 0");
    if (c->batch < 1 || c->accum < 1) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "batch and accum must be >= 1");
    if (!(c->optim.lr >= 0)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "lr must be >= 0");
    if (c->optim.warmup < 0 || o->save_every < 0)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "warmup and save_every must be >= 0");
    if (!(c->optim.clip >= 0) || !(c->optim.weight_decay >= 0))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "clip and weight_decay must be >= 0");
    if (dpo && !(c->loss.beta > 0)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "beta must be > 0");
    if (dpo && !(c->loss.label_smoothing >= 0 && c->loss.label_smoothing < 0.5))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "label_smoothing must be in [0, 0.5)");
    if (dpo && (!(c->loss.rpo_alpha >= 0) || !isfinite(c->loss.rpo_alpha)))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "rpo_alpha must be >= 0");
    return EMDPO_OK;
}

/* The data as a set: DPO's decisions, or SFT's texts (preference data: its
 * chosen responses). */
static int tokenize(emdpo_train_job *j, emdpo_diag *diag) {
    const emdpo_train_opts *o = &j->o;
    if (o->train.mode == EMDPO_TRAIN_SFT)
        return emdpo_lm_set_read_with(o->data, o->read, j->tok, o->max_length, o->max_prompt_length, 1, &j->set,
                                      &j->d, diag);
    emdpo_read_opts ro;
    if (o->read) ro = *o->read;
    else emdpo_read_opts_init(&ro);
    ro.require_text = 1;
    /* Only tokens are made of the texts: their ends are enough. */
    int rc = emdpo_data_read_kept(o->data, EMDPO_FORMAT_JSONL, &ro, emdpo_lm_text_keep_bytes(j->tok, o->max_length),
                                  &j->d, diag);
    if (rc) return rc;
    if (!emdpo_data_has_text(j->d)) return emdpo_diag_at(diag, EMDPO_ERR_UNSUPPORTED, o->data, 0, "responses have no text");
    rc = emdpo_lm_set_from_data(j->d, j->tok, o->max_length, o->max_prompt_length, &j->set);
    return rc ? emdpo_diag_at(diag, rc, o->data, 0, "cannot tokenize the data: %s", emdpo_status_name(rc)) : EMDPO_OK;
}

int emdpo_train_job_create(const emdpo_train_opts *o, emdpo_train_job **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!o) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no options");
    int rc = check_opts(o, diag);
    if (rc) return rc;
    emdpo_train_job *j = emdpo_calloc(1, sizeof *j);
    if (!j || !(j->ckpt = emdpo_path_join(o->out, "trainer.bin"))) {
        emdpo_train_job_free(j);
        return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    j->o = *o;
    const char **own[] = {&j->o.data,    &j->o.model,   &j->o.config_spec,   &j->o.tokenizer, &j->o.out,
                          &j->o.ref,     &j->o.weights, &j->o.weight_column, &j->o.log,       &j->o.merge};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        if (!*own[i]) continue;
        if (!(j->path[i] = emdpo_strdup(*own[i]))) {
            emdpo_train_job_free(j);
            return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        }
        *own[i] = j->path[i];
    }
    o = &j->o;
    if (o->resume && !emdpo_path_exists(j->ckpt)) {
        rc = emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, j->ckpt, 0, "resume: no checkpoint");
        goto fail;
    }
    /* A resumed run starts from the exported model; the checkpoint then
     * restores the exact parameters. */
    if (o->lora.r) rc = emdpo_llama_load_frozen(o->model, &j->m, diag);
    else if (o->resume) rc = emdpo_llama_load(o->out, &j->m, diag);
    else if (o->model) rc = emdpo_llama_load(o->model, &j->m, diag);
    else rc = emdpo_llama_from_spec(o->config_spec, o->train.seed, &j->m, diag);
    if (!rc && o->ref && !o->resume) rc = emdpo_llama_load_frozen(o->ref, &j->ref, diag);
    if (!rc) rc = emdpo_tokenizer_load(o->tokenizer, j->m->config.vocab_size, &j->tok, diag);
    if (!rc) {
        emdpo_diag_reset(diag, NULL);
        rc = emdpo_lm_lengths(j->m, &j->o.max_length, &j->o.max_prompt_length, diag);
    }
    if (!rc) rc = tokenize(j, diag);
    if (!rc && o->weights) {
        j->n_w = j->set->n_group;
        if (!(j->w = emdpo_malloc((size_t)(j->n_w ? j->n_w : 1) * sizeof *j->w)))
            rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        else
            rc = emdpo_weights_read(o->weights, o->weight_column, j->d, j->n_w, j->w, diag);
    }
    if (rc) goto fail;
    emdpo_diag_reset(diag, NULL);
    if (o->lora.r && (rc = emdpo_lora_create(&j->m->config, &o->lora, &j->lo))) {
        emdpo_diag_fail(diag, rc, "cannot make the LoRA adapter: %s", emdpo_status_name(rc));
        goto fail;
    }
    if (j->lo) emdpo_lora_init(j->lo, o->train.seed); /* a resume then restores its values */
    if (j->lo && !(j->base_path = emdpo_path_real(o->model))) {
        rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = emdpo_trainer_create_lora(j->m, j->lo, j->set, j->w, &o->train, &j->t))) {
        emdpo_diag_fail(diag, rc, rc == EMDPO_ERR_LIMIT ? "a sequence does not fit the model (context or vocabulary)"
                                                        : "cannot set up training: %s",
                        emdpo_status_name(rc));
        goto fail;
    }
    if (o->resume) {
        if ((rc = emdpo_trainer_resume(j->t, j->ckpt, diag))) goto fail;
    } else if (o->train.mode == EMDPO_TRAIN_DPO && (rc = emdpo_trainer_set_reference(j->t, j->ref))) {
        emdpo_diag_fail(diag, rc, "reference log-probabilities: %s", emdpo_status_name(rc));
        goto fail;
    }
    int64_t E = (int64_t)o->train.batch * o->train.accum;
    j->steps = o->steps ? o->steps : (j->set->n_group + E - 1) / E;
    *out = j;
    return EMDPO_OK;
fail:
    emdpo_train_job_free(j);
    return rc;
}

int64_t emdpo_train_job_total_steps(const emdpo_train_job *j) { return j ? j->steps : 0; }
int64_t emdpo_train_job_steps_done(const emdpo_train_job *j) { return j ? emdpo_trainer_steps_done(j->t) : 0; }
int64_t emdpo_train_job_n_sequences(const emdpo_train_job *j) { return j ? j->set->n_seq : 0; }
int64_t emdpo_train_job_n_truncated(const emdpo_train_job *j) { return j ? j->set->n_truncated : 0; }
int emdpo_train_job_max_length(const emdpo_train_job *j) { return j ? j->o.max_length : 0; }

void emdpo_train_job_last(const emdpo_train_job *j, emdpo_train_metrics *m) {
    if (!m) return;
    if (j) *m = j->last;
    else memset(m, 0, sizeof *m);
}

void emdpo_train_log_line(FILE *fp, const emdpo_train_metrics *m, int dpo, double eps, const char *extra) {
    fputs("{\"loss\": ", fp);
    emdpo_json_num(fp, m->loss);
    fputs(", \"grad_norm\": ", fp);
    emdpo_json_num(fp, m->grad_norm);
    fputs(", \"learning_rate\": ", fp);
    emdpo_json_num(fp, m->learning_rate);
    if (dpo) {
        fputs(", \"rewards/chosen\": ", fp);
        emdpo_json_num(fp, m->rewards_chosen);
        fputs(", \"rewards/rejected\": ", fp);
        emdpo_json_num(fp, m->rewards_rejected);
        fputs(", \"rewards/margins\": ", fp);
        emdpo_json_num(fp, m->rewards_margins);
        fputs(", \"rewards/accuracies\": ", fp);
        emdpo_json_num(fp, m->rewards_accuracies);
    }
    fputs(", \"examples_per_second\": ", fp);
    emdpo_json_num(fp, eps);
    fprintf(fp, ", \"step\": %lld, \"epoch\": ", (long long)m->step);
    emdpo_json_num(fp, m->epoch);
    fprintf(fp, "%s}\n", extra ? extra : "");
}

/* Model files (config.json, model.safetensors, the tokenizer's), or the
 * adapter's (adapter_config.json, adapter_model.safetensors), then the
 * checkpoint; a resume reads only the checkpoint, which is one atomic
 * file. */
static int save_all(const emdpo_train_job *j, emdpo_diag *diag) {
    int rc;
    if (j->lo) {
        rc = emdpo_lora_adapter_write(j->lo, j->o.out, j->o.save_dtype, j->base_path, diag);
    } else {
        emdpo_llama_save_opts so = {j->o.save_dtype, j->tok};
        rc = emdpo_llama_save_with(j->m, j->o.out, &so, diag);
    }
    if (!rc) rc = emdpo_trainer_save(j->t, j->ckpt, diag);
    return rc;
}

/* The metrics log of a resumed run, opened for appending after its lines of
 * steps 1..done: a run killed after its last checkpoint logged steps that
 * the resumed run takes again, and a line cut by the kill has no newline.
 * Lines without a "step" (not this log's) are kept. */
static FILE *open_resumed_log(const char *path, int64_t done) {
    FILE *fp = fopen(path, "r+");
    if (!fp) return fopen(path, "a");
    char chunk[512];
    long start = 0, cut = -1;
    int at_start = 1;
    while (fgets(chunk, sizeof chunk, fp)) {
        size_t n = strlen(chunk);
        int ends = n > 0 && chunk[n - 1] == '\n';
        if (at_start) {
            const char *s = strstr(chunk, "\"step\": ");
            if (s && strtoll(s + 8, NULL, 10) > done) {
                cut = start;
                break;
            }
        }
        if (ends) start = ftell(fp);
        at_start = ends;
    }
    if (cut < 0 && !at_start) cut = start; /* the last line has no newline */
    if ((cut >= 0 && ftruncate(fileno(fp), cut) != 0) || fseek(fp, 0, SEEK_END) != 0) {
        fclose(fp);
        return NULL;
    }
    return fp;
}

int emdpo_train_job_run(emdpo_train_job *j, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!j) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no job");
    const emdpo_train_opts *o = &j->o;
    /* Under MPI every process trains its share of each step and holds the
     * same parameters; rank 0 alone writes files and reports progress. */
    int lead = emdpo_dist_rank() == 0;
    int rc = lead ? emdpo_mkdirs(o->out, diag) : EMDPO_OK;
    if (rc) return rc;
    FILE *logf = NULL;
    if (lead && o->log && !(logf = o->resume ? open_resumed_log(o->log, emdpo_trainer_steps_done(j->t)) : fopen(o->log, "w")))
        return emdpo_diag_at(diag, EMDPO_ERR_IO, o->log, 0, "cannot write");
    int dpo = o->train.mode == EMDPO_TRAIN_DPO;
    while (!rc && emdpo_trainer_steps_done(j->t) < j->steps) {
        double t0 = emdpo_now();
        if ((rc = emdpo_trainer_step(j->t, &j->last))) {
            emdpo_diag_fail(diag, rc, rc == EMDPO_ERR_NUMERIC ? "the loss or gradient is not finite (a lower learning rate?)"
                                                              : "training step failed: %s",
                            emdpo_status_name(rc));
            break;
        }
        double eps = (double)j->last.examples / (emdpo_now() - t0 + 1e-12);
        if (logf) {
            emdpo_train_log_line(logf, &j->last, dpo, eps, NULL);
            fflush(logf);
        }
        if (lead && o->progress) o->progress(o->progress_ud, &j->last, j->steps, eps);
        if (lead && o->save_every && j->last.step % o->save_every == 0 && j->last.step < j->steps)
            rc = save_all(j, diag);
    }
    if (!rc && !emdpo_trainer_replicas_agree(j->t))
        rc = emdpo_diag_fail(diag, EMDPO_ERR_NUMERIC, "the processes' parameters differ after training (the MPI "
                                                      "library's sums differ between processes)");
    if (!rc && lead) rc = save_all(j, diag);
    if (!rc && lead && o->merge) {
        emdpo_merge_opts mo;
        emdpo_merge_opts_init(&mo);
        mo.model = o->model;
        mo.adapter = o->out;
        mo.out = o->merge;
        mo.tokenizer = o->tokenizer;
        mo.dtype = o->save_dtype;
        rc = emdpo_merge_run(&mo, diag);
    }
    if (logf) {
        int bad = ferror(logf);
        bad |= fclose(logf) != 0;
        if (!rc && bad) rc = emdpo_diag_at(diag, EMDPO_ERR_IO, o->log, 0, "write error");
    }
    return rc;
}
