/* EM-DPO on Llama policies as one call (emdpo/lm.h's emdpo_lm_fit): K
 * copies of an SFT model, initialised by k-means on annotator summaries,
 * trained by weighted DPO in each M-step. */
#include <math.h>
#include <string.h>
#include <zlib.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/dist.h"
#include "base/file.h"
#include "core/em.h"
#include "drivers/fit_ckpt.h"
#include "fitfile/fit.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/io/lm_batch.h"
#include "lm/io/tokenizer.h"
#include "lm/llama_policy.h"
#include "lm/lm_embed.h"

/* The options that need no data. */
static int check_opts(const emdpo_lm_fit_opts *o, emdpo_diag *diag) {
    const emdpo_em_opts *e = &o->em;
    const emdpo_lm_mstep_opts *m = &o->mstep;
    if (o->k < 1 || o->k > EMDPO_MAX_K) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "k must be in 1..%d", EMDPO_MAX_K);
    if (e->starts < 1 || e->starts > EMDPO_MAX_STARTS)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "starts must be in 1..%d", EMDPO_MAX_STARTS);
    if (e->max_iter < 0 || e->max_iter > EMDPO_MAX_EM_ITER)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "max_iter must be in 0..%d", EMDPO_MAX_EM_ITER);
    if (!(e->tol >= 0)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "tol must be >= 0");
    if (e->patience < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "patience must be >= 0");
    if (!emdpo_dtype_name(o->save_dtype)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "unknown save_dtype");
    if (!emdpo_init_name(e->init))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "init must be kmeans, kmeans-tokens or random");
    if (!(m->beta > 0) || !isfinite(m->beta)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "beta must be > 0");
    if (!(m->rpo_alpha >= 0) || !isfinite(m->rpo_alpha))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "rpo_alpha must be >= 0");
    if (m->steps < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "steps must be >= 0");
    if (!(m->epochs > 0) || !isfinite(m->epochs)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "epochs must be > 0");
    if (m->batch < 1 || m->accum < 1 || m->score_batch < 1)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "batch, accum and score_batch must be >= 1");
    if (!emdpo_optim_name(m->optim.kind)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "unknown optimizer");
    if (!(m->optim.lr >= 0)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "lr must be >= 0");
    if (m->optim.warmup < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "warmup must be >= 0");
    if (!(m->optim.clip >= 0)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "clip must be >= 0");
    if (!emdpo_weight_norm_name(m->weight_norm))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "weight_norm must be mean or none");
    if (m->lora.r && emdpo_lora_config_check(&m->lora))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "LoRA: r must be >= 1, alpha finite, dropout in [0, 1), some targets");
    return EMDPO_OK;
}

/* Annotator summaries for k-means: the SFT model's embeddings of the
 * chosen responses, or their token counts against the decision's mean
 * (token ids share buckets beyond 1024, to bound the summaries' size). */
static int summaries(const emdpo_llama *sft, const emdpo_tokenizer *tok, const emdpo_data *d, emdpo_init init,
                     const emdpo_lm_mstep_opts *po, double **out, int *q) {
    int tokens = init == EMDPO_INIT_KMEANS_TOKENS;
    *q = tokens ? (sft->config.vocab_size < 1024 ? sft->config.vocab_size : 1024) : sft->config.dim;
    size_t n = (size_t)d->n_annot * (size_t)*q;
    emdpo_lm_set *set = NULL;
    int rc = EMDPO_OK;
    if (!(*out = emdpo_malloc(n * sizeof **out)))
        rc = EMDPO_ERR_NOMEM;
    else if (!(rc = emdpo_lm_set_from_data(d, tok, po->max_length, po->max_prompt_length, &set)))
        rc = tokens ? emdpo_lm_choice_summaries(d, set, *q, *out)
                    : emdpo_lm_embed_annotators(sft, d, set, po->score_batch, *out);
    emdpo_lm_set_free(set);
    if (rc) {
        emdpo_free(*out, n * sizeof **out);
        *out = NULL;
    }
    return rc;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* What a checkpoint must agree with: the data (the policy's fingerprint of
 * it), the SFT model, and every setting that changes the result. */
static uint64_t fingerprint(const emdpo_llama *sft, const emdpo_policy *pol, const emdpo_data *d,
                            const emdpo_lm_fit_opts *o, const emdpo_lm_mstep_opts *po) {
    const emdpo_em_opts *e = &o->em;
    const emdpo_optim_config *op = &po->optim;
    const emdpo_lora_config *lo = &po->lora;
    uint64_t key = emdpo_llama_policy_data_key(pol), n_params = sft->num_params;
    /* the parameters: float32, and a frozen model's 16-bit matrices */
    uLong crc = crc32(0L, Z_NULL, 0);
    const unsigned char *bufs[2] = {(const unsigned char *)sft->param_buf,
                                    sft->frozen ? (const unsigned char *)sft->frozen->buf : NULL};
    size_t lens[2] = {n_params * sizeof(float), sft->frozen ? sft->frozen->n * sizeof(uint16_t) : 0};
    for (int b = 0; b < 2; b++)
        for (size_t i = 0, n = bufs[b] ? lens[b] : 0; i < n; i += (size_t)1 << 30)
            crc = crc32(crc, bufs[b] + i, (uInt)(n - i < (size_t)1 << 30 ? n - i : (size_t)1 << 30));
    int64_t ints[] = {o->k, e->max_iter, e->patience, e->starts, (int64_t)e->seed, e->init, e->q,
                      po->max_length, po->max_prompt_length, op->kind, op->warmup, po->batch, po->accum,
                      po->steps, po->restart, po->weight_norm, po->score_batch, (int64_t)po->seed, lo->r,
                      lo->rslora, lo->targets, (int64_t)n_params, (int64_t)crc};
    double reals[] = {e->tol, po->beta, po->rpo_alpha, op->lr, op->beta1, op->beta2, op->alpha, op->momentum,
                      op->eps, op->weight_decay, op->clip, po->epochs, lo->alpha, lo->dropout};
    uint64_t h = fnv(14695981039346656037ull, &key, sizeof key);
    h = fnv(h, &sft->config, sizeof sft->config);
    h = fnv(h, ints, sizeof ints);
    h = fnv(h, reals, sizeof reals);
    if (e->summary) h = fnv(h, e->summary, (size_t)d->n_annot * (size_t)e->q * sizeof(double));
    return h;
}

int emdpo_lm_fit(const emdpo_llama *sft, const emdpo_tokenizer *tok, const emdpo_data *d, const emdpo_lm_fit_opts *o,
                 emdpo_fit **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!sft || !tok || !d || !o) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no model, tokenizer, data or options");
    int rc = check_opts(o, diag);
    if (rc) return rc;
    if (!emdpo_data_has_text(d))
        return emdpo_diag_at(diag, EMDPO_ERR_UNSUPPORTED, d->source, 0,
                             "responses have no text; Llama policies need text responses");
    emdpo_lm_mstep_opts po = o->mstep;
    if ((rc = emdpo_lm_lengths(sft, &po.max_length, &po.max_prompt_length, diag))) return rc;
    double t0 = emdpo_now();
    emdpo_policy *pol = NULL;
    if ((rc = emdpo_llama_policy_create(o->k, sft, tok, &po, d, &pol)))
        return emdpo_diag_fail(diag, rc, rc == EMDPO_ERR_LIMIT ? "a sequence does not fit the model (context or vocabulary)"
                                                                : "cannot set up the policies: %s",
                               emdpo_status_name(rc));
    emdpo_em_opts eo = o->em;
    double *summary = NULL;
    size_t n_summary = 0;
    if (eo.init != EMDPO_INIT_RANDOM && !eo.summary) {
        int q = 0;
        if ((rc = summaries(sft, tok, d, eo.init, &po, &summary, &q))) {
            emdpo_policy_free(pol);
            return emdpo_diag_fail(diag, rc, "annotator summaries: %s", emdpo_status_name(rc));
        }
        n_summary = (size_t)d->n_annot * (size_t)q;
        eo.summary = summary;
        eo.q = q;
    }
    emdpo_em_result res;
    emdpo_fit_ckpt *ck = NULL;
    emdpo_em_hooks hooks;
    if ((rc = emdpo_fit_ckpt_open(o, pol, d, fingerprint(sft, pol, d, o, &po), &ck, &hooks, diag))) {
        emdpo_free(summary, n_summary * sizeof *summary);
        emdpo_policy_free(pol);
        return rc;
    }
    rc = emdpo_em_fit_hooked(&pol, d, &eo, &res, ck ? &hooks : NULL);
    emdpo_free(summary, n_summary * sizeof *summary);
    int ck_rc = emdpo_fit_ckpt_close(ck, diag);
    if (ck_rc) {
        emdpo_em_result_free(&res);
        emdpo_policy_free(pol);
        return ck_rc;
    }
    if (rc) {
        emdpo_em_result_free(&res);
        emdpo_policy_free(pol);
        return emdpo_diag_fail(diag, rc, rc == EMDPO_ERR_NUMERIC ? "EM failed: a loss or gradient is not finite "
                                                                   "(a lower learning rate?)"
                                                                 : "EM failed: %s",
                               emdpo_status_name(rc));
    }
    /* Under MPI every process trained its share and holds the same types. */
    for (int k = 0; k < o->k; k++) {
        size_t n = 0;
        const float *x = emdpo_llama_policy_params(pol, k, &n);
        if (!emdpo_dist_same(x, n * sizeof *x)) {
            emdpo_em_result_free(&res);
            emdpo_policy_free(pol);
            return emdpo_diag_fail(diag, EMDPO_ERR_NUMERIC, "the processes' parameters differ after the fit (the "
                                                            "MPI library's sums differ between processes)");
        }
    }
    emdpo_fit *f = NULL;
    if (!(rc = emdpo_fit_from_em(EMDPO_FAMILY_LLAMA, &res, &pol, d, &o->em, emdpo_now() - t0, &f))) {
        f->mstep = po;
        f->beta = po.beta;
        f->save_dtype = o->save_dtype;
        if ((sft->source && !(f->model = emdpo_path_real(sft->source))) ||
            (emdpo_tokenizer_source(tok) && !(f->tokenizer = emdpo_path_real(emdpo_tokenizer_source(tok)))))
            rc = EMDPO_ERR_NOMEM;
    }
    emdpo_em_result_free(&res);
    emdpo_policy_free(pol);
    if (rc) {
        emdpo_fit_free(f);
        return emdpo_diag_fail(diag, rc, "cannot keep the fit: %s", emdpo_status_name(rc));
    }
    *out = f;
    return EMDPO_OK;
}
