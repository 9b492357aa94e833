/* Sequence log-probabilities of responses under a checkpoint or a mixture,
 * and log-ratios against a reference (emdpo/lm.h's emdpo_score_run): what
 * emdpo score prints. */
#include <stdio.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/csv.h"
#include "base/diag.h"
#include "data/data.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/io/lm_batch.h"
#include "lm/io/peft.h"
#include "lm/io/tokenizer.h"
#include "lm/lm_adapted.h"
#include "lm/lm_mixture.h"
#include "lm/lm_train.h"

struct emdpo_scores {
    emdpo_lm_set *set;
    emdpo_data *d;      /* preference data (annotator ids), or NULL for texts */
    double *lp, *rl;    /* (n_seq); rl NULL without a reference */
};

void emdpo_score_opts_init(emdpo_score_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->batch = 8;
}

void emdpo_scores_free(emdpo_scores *s) {
    if (!s) return;
    size_t n = s->set ? (size_t)s->set->n_seq : 0;
    emdpo_free(s->lp, s->lp ? n * sizeof *s->lp : 0);
    emdpo_free(s->rl, s->rl ? n * sizeof *s->rl : 0);
    emdpo_lm_set_free(s->set);
    emdpo_data_free(s->d);
    emdpo_free(s, sizeof *s);
}

/* A mixture's members as policies: adapters on its reference share it
 * (base), unmerged. */
typedef struct members {
    emdpo_mixture *mix;
    emdpo_llama *base;
    emdpo_lm_policy *pol; /* (mix->K) */
} members;

static void members_close(members *x) {
    for (int k = 0; x->pol && k < x->mix->K; k++) emdpo_lm_policy_close(&x->pol[k]);
    if (x->pol) emdpo_free(x->pol, (size_t)x->mix->K * sizeof *x->pol);
    emdpo_llama_free(x->base);
    emdpo_mixture_free(x->mix);
}

static int members_open(const char *path, members *x, emdpo_diag *diag) {
    int rc = emdpo_mixture_read(path, &x->mix, diag);
    if (!rc && !(x->pol = emdpo_calloc((size_t)x->mix->K, sizeof *x->pol)))
        rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (!rc) rc = emdpo_mixture_open_policies(x->mix, &x->base, x->pol, diag);
    return rc;
}

/* The mixture's log-probability of every sequence: each member's, then
 * their log-sum-exp. */
static int score_mixture(const members *x, const emdpo_lm_set *set, int batch, double *lp) {
    const emdpo_mixture *mix = x->mix;
    size_t n = (size_t)set->n_seq, nl = (size_t)mix->K * n;
    double *each = emdpo_malloc((nl ? nl : 1) * sizeof *each);
    if (!each) return EMDPO_ERR_NOMEM;
    int rc = EMDPO_OK;
    for (int k = 0; !rc && k < mix->K; k++)
        if (mix->w[k] > 0) rc = emdpo_lm_policy_score(&x->pol[k], set, batch, each + (size_t)k * n);
    if (!rc) emdpo_mixture_logp(mix->K, mix->w, set->n_seq, each, lp);
    emdpo_free(each, (nl ? nl : 1) * sizeof *each);
    return rc;
}

int emdpo_lm_score_adapter(const emdpo_llama *m, const emdpo_lora_adapter *a, const emdpo_lm_set *set, int batch,
                           double *logp) {
    if (!m || !set || !logp || (a && !emdpo_lora_fits(a, &m->config))) return EMDPO_ERR_INVALID_ARG;
    return emdpo_lm_score_lora(m, a, set, batch, logp);
}

static int load(const emdpo_score_opts *o, const emdpo_llama **mv, emdpo_llama **m, emdpo_lora **lo, members *mix,
                emdpo_llama **ref, emdpo_tokenizer **tok, int *max_length, int *max_prompt_length, emdpo_diag *diag) {
    int rc;
    if (o->adapter && emdpo_mixture_is_file(o->model)) {
        emdpo_diag_reset(diag, o->adapter);
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "an adapter goes on a model, not on a mixture");
    }
    if (emdpo_mixture_is_file(o->model)) {
        if ((rc = members_open(o->model, mix, diag))) return rc;
        *mv = mix->pol[0].model; /* borrowed: the members share vocabulary and context */
    } else if ((rc = emdpo_llama_load_frozen(o->model, m, diag))) {
        return rc;
    } else {
        *mv = *m;
    }
    if (o->adapter && (rc = emdpo_peft_read(o->adapter, &(*mv)->config, lo, diag))) return rc;
    if (o->ref && (rc = emdpo_llama_load_frozen(o->ref, ref, diag))) return rc;
    emdpo_diag_reset(diag, NULL);
    if (*ref && (*ref)->config.vocab_size != (*mv)->config.vocab_size)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "ref has vocabulary %d, model %d", (*ref)->config.vocab_size,
                               (*mv)->config.vocab_size);
    if ((rc = emdpo_tokenizer_load(o->tokenizer, (*mv)->config.vocab_size, tok, diag))) return rc;
    emdpo_diag_reset(diag, NULL);
    if ((rc = emdpo_lm_lengths(*mv, max_length, max_prompt_length, diag))) return rc;
    if (*ref && *max_length > emdpo_llama_context(&(*ref)->config))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "max_length %d exceeds the reference's context %d",
                               *max_length, emdpo_llama_context(&(*ref)->config));
    return EMDPO_OK;
}

int emdpo_score_run(const emdpo_score_opts *o, emdpo_scores **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!o || !o->model || !o->tokenizer || !o->data)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "model, tokenizer and data are required");
    if (o->batch < 1) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "batch must be >= 1");
    emdpo_llama *m = NULL, *ref = NULL;
    const emdpo_llama *mv = NULL; /* the model, or the mixture's first member */
    emdpo_lora *lo = NULL;
    members mix = {0};
    emdpo_tokenizer *tok = NULL;
    emdpo_scores *s = emdpo_calloc(1, sizeof *s);
    int max_length = o->max_length, max_prompt_length = o->max_prompt_length;
    int rc = s ? load(o, &mv, &m, &lo, &mix, &ref, &tok, &max_length, &max_prompt_length, diag)
               : emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (!rc) rc = emdpo_lm_set_read_with(o->data, o->read, tok, max_length, max_prompt_length, 0, &s->set, &s->d, diag);
    if (!rc) {
        emdpo_diag_reset(diag, NULL);
        size_t n = (size_t)s->set->n_seq;
        s->lp = emdpo_malloc((n ? n : 1) * sizeof *s->lp);
        if (ref) s->rl = emdpo_malloc((n ? n : 1) * sizeof *s->rl);
        if (!s->lp || (ref && !s->rl)) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    if (!rc && ((rc = mix.mix ? score_mixture(&mix, s->set, o->batch, s->lp)
                          : emdpo_lm_score_lora(m, lo, s->set, o->batch, s->lp)) ||
                (ref && (rc = emdpo_lm_score(ref, s->set, o->batch, s->rl)))))
        emdpo_diag_fail(diag, rc, "scoring failed: %s", emdpo_status_name(rc));
    emdpo_tokenizer_free(tok);
    emdpo_lora_free(lo);
    emdpo_llama_free(ref);
    emdpo_llama_free(m);
    members_close(&mix);
    if (rc) {
        emdpo_scores_free(s);
        return rc;
    }
    *out = s;
    return EMDPO_OK;
}

int64_t emdpo_scores_n_sequences(const emdpo_scores *s) { return s ? s->set->n_seq : 0; }
int64_t emdpo_scores_n_truncated(const emdpo_scores *s) { return s ? s->set->n_truncated : 0; }
int emdpo_scores_max_length(const emdpo_scores *s) { return s ? s->set->max_length : 0; }

int emdpo_scores_write(const emdpo_scores *s, FILE *fp) {
    if (!s || !fp) return EMDPO_ERR_INVALID_ARG;
    const emdpo_lm_set *set = s->set;
    const emdpo_data *d = s->d;
    fputs("example,item,annotator,response_tokens,logp", fp);
    fputs(s->rl ? ",ref_logp,logratio\n" : "\n", fp);
    for (int64_t g = 0, a = 0; g < set->n_group; g++) {
        while (d && d->annot_dec[a + 1] <= g) a++;
        for (int64_t i = set->group_off[g]; i < set->group_off[g + 1]; i++) {
            fprintf(fp, "%lld,%lld,", (long long)g + 1, (long long)(i - set->group_off[g]) + 1);
            if (d) emdpo_csv_write_field(fp, d->annot_name[a]);
            fprintf(fp, ",%d,%.17g", emdpo_lm_seq_len(set, i) - set->seq_start[i], s->lp[i]);
            if (s->rl) fprintf(fp, ",%.17g,%.17g", s->rl[i], s->lp[i] - s->rl[i]);
            fputc('\n', fp);
        }
    }
    return ferror(fp) ? EMDPO_ERR_IO : EMDPO_OK;
}

static void write_scores(FILE *fp, const void *ctx) { emdpo_scores_write(ctx, fp); }

int emdpo_scores_save(const emdpo_scores *s, const char *path, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!s || !path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no scores or path");
    return emdpo_afile_write(path, write_scores, s, diag);
}
