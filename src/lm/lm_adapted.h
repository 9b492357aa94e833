/* Policies that are a base with a LoRA adapter (a PEFT adapter directory),
 * as the commands that read policies meet them: the types of a fit or a
 * baseline trained with --lora-r, the members of a mixture of such types,
 * an adapter given with --adapter.
 *
 * Where a policy is only scored (sequence log-probabilities: evaluation,
 * the exact regret estimator, scoring a mixture), its adapter runs
 * unmerged on the one base the command holds anyway (its reference), so
 * K adapters cost one base and K small buffers, and the log-probabilities
 * are those of emdpo_lm_score_lora. Where the decoders run it (sampling),
 * it is merged into a float32 copy of the base (emdpo_lm_merged), as
 * emdpo generate --adapter does: the decoders run plain models. */
#ifndef EMDPO_LM_ADAPTED_H
#define EMDPO_LM_ADAPTED_H

#include <stdio.h>

#include "emdpo.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/io/lm_batch.h"

typedef struct emdpo_lm_policy {
    const emdpo_llama *model; /* what runs: the base (borrowed) under lo, or own */
    emdpo_llama *own;         /* the model loaded for this policy, or NULL */
    emdpo_lora *lo;           /* the adapter run on model, unmerged; NULL for a plain model */
} emdpo_lm_policy;

/* 1 when path is a PEFT adapter directory whose base_model_name_or_path
 * is base's file (the same real path). */
int emdpo_lm_adapter_on(const char *path, const emdpo_llama *base);

/* path as a policy beside base (may be NULL). An adapter directory whose
 * base is base's file (emdpo_lm_adapter_on), or any adapter directory when
 * force_base is set, is read as an adapter on base; anything else loads
 * frozen (emdpo_llama_load_frozen: an adapter directory of another base
 * is that base with the adapter merged). Errors of the loaders with diag
 * (an adapter that does not fit base is EMDPO_ERR_PARSE naming the
 * tensor). p is all NULL on failure. */
int emdpo_lm_policy_open(const char *path, const emdpo_llama *base, int force_base, emdpo_lm_policy *p,
                         emdpo_diag *diag);
void emdpo_lm_policy_close(emdpo_lm_policy *p);

/* emdpo_lm_score of the policy. */
int emdpo_lm_policy_score(const emdpo_lm_policy *p, const emdpo_lm_set *set, int batch, double *logp);

/* A new float32 model computing what base with adapter lo computes, for
 * the decoders: base's parameters copied (a frozen base is loaded again,
 * in float32, from its source) with lo merged in. EMDPO_ERR_INVALID_ARG
 * (diag) for a frozen base that was not loaded from a file or an adapter
 * of other shapes, the loader's errors, EMDPO_ERR_NOMEM. */
int emdpo_lm_merged(const emdpo_llama *base, const emdpo_lora *lo, emdpo_llama **out, emdpo_diag *diag);

/* The policy as a plain model for the decoders: *out is p's model itself
 * without an adapter (*owned 0), else emdpo_lm_merged's copy (*owned 1,
 * to be freed). */
int emdpo_lm_policy_plain(const emdpo_lm_policy *p, const emdpo_llama **out, emdpo_llama **owned, emdpo_diag *diag);

/* An adapter's shape as the output files record it: {"r": R, "alpha": X,
 * "dropout": X, "rslora": B, "targets": [PEFT's names]}. */
void emdpo_lora_config_write_json(FILE *fp, const emdpo_lora_config *c);

#endif
