/* Policies that are a base with a LoRA adapter; see lm_adapted.h. */
#include "lm/lm_adapted.h"

#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json_write.h"
#include "lm/io/peft.h"
#include "lm/lm_train.h"

int emdpo_lm_adapter_on(const char *path, const emdpo_llama *base) {
    /* a base that is itself an adapter merged into its source is not that source */
    if (!path || !base || !base->source || base->adapted || !emdpo_peft_is_dir(path)) return 0;
    char *named = NULL;
    emdpo_diag quiet;
    if (emdpo_peft_base(path, &named, &quiet)) return 0;
    char *a = emdpo_path_real(named), *b = emdpo_path_real(base->source);
    int same = a && b && strcmp(a, b) == 0;
    emdpo_strfree(a);
    emdpo_strfree(b);
    emdpo_strfree(named);
    return same;
}

int emdpo_lm_policy_open(const char *path, const emdpo_llama *base, int force_base, emdpo_lm_policy *p,
                         emdpo_diag *diag) {
    memset(p, 0, sizeof *p);
    if (base && ((force_base && emdpo_peft_is_dir(path)) || emdpo_lm_adapter_on(path, base))) {
        int rc = emdpo_peft_read(path, &base->config, &p->lo, diag);
        if (rc) return rc;
        p->model = base;
        return EMDPO_OK;
    }
    int rc = emdpo_llama_load_frozen(path, &p->own, diag);
    if (rc) return rc;
    p->model = p->own;
    return EMDPO_OK;
}

void emdpo_lm_policy_close(emdpo_lm_policy *p) {
    if (!p) return;
    emdpo_lora_free(p->lo);
    emdpo_llama_free(p->own);
    memset(p, 0, sizeof *p);
}

int emdpo_lm_policy_score(const emdpo_lm_policy *p, const emdpo_lm_set *set, int batch, double *logp) {
    return emdpo_lm_score_lora(p->model, p->lo, set, batch, logp);
}

int emdpo_lm_merged(const emdpo_llama *base, const emdpo_lora *lo, emdpo_llama **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_llama *m = NULL;
    int rc;
    if (base->frozen) {
        if (!base->source)
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "a 16-bit base held in memory cannot be merged into");
        if ((rc = emdpo_llama_load(base->source, &m, diag))) return rc;
    } else {
        if ((rc = emdpo_llama_create(&base->config, &m))) return emdpo_diag_fail(diag, rc, "out of memory");
        memcpy(m->param_buf, base->param_buf, m->num_params * sizeof *m->param_buf);
        m->file_dtype = base->file_dtype;
    }
    if (emdpo_lora_merge(lo, m)) {
        emdpo_llama_free(m);
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "the adapter does not fit its base");
    }
    *out = m;
    return EMDPO_OK;
}

int emdpo_lm_policy_plain(const emdpo_lm_policy *p, const emdpo_llama **out, emdpo_llama **owned, emdpo_diag *diag) {
    *owned = NULL;
    *out = p->model;
    if (!p->lo) return EMDPO_OK;
    int rc = emdpo_lm_merged(p->model, p->lo, owned, diag);
    *out = rc ? NULL : *owned;
    return rc;
}

void emdpo_lora_config_write_json(FILE *fp, const emdpo_lora_config *c) {
    fprintf(fp, "{\"r\": %d, \"alpha\": ", c->r);
    emdpo_json_num(fp, c->alpha);
    fputs(", \"dropout\": ", fp);
    emdpo_json_num(fp, c->dropout);
    fprintf(fp, ", \"rslora\": %s, \"targets\": [", c->rslora ? "true" : "false");
    for (int t = 0, n = 0; emdpo_lora_target_name(t); t++)
        if (c->targets & (1u << t)) fprintf(fp, "%s\"%s\"", n++ ? ", " : "", emdpo_lora_target_name(t));
    fputs("]}", fp);
}
