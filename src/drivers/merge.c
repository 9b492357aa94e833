/* emdpo merge (emdpo/lm.h's emdpo_merge_run) and the merge-and-save step
 * the training commands share (merge.h). */
#include "drivers/merge.h"

#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "lm/io/gguf.h"
#include "lm/io/peft.h"

void emdpo_merge_opts_init(emdpo_merge_opts *o) {
    if (!o) return;
    o->model = o->adapter = o->out = o->tokenizer = NULL;
    o->dtype = EMDPO_DTYPE_AUTO;
}

/* Hugging Face output: the tokenizer named, else the source directory's
 * tokenizer.json when there is one (NULL *out: none). */
static int hf_tokenizer(const emdpo_llama *m, const char *tokenizer, emdpo_tokenizer **out, emdpo_diag *diag) {
    *out = NULL;
    const char *src = emdpo_llama_source(m);
    char *json = NULL;
    if (!tokenizer && src && emdpo_path_is_dir(src)) {
        if (!(json = emdpo_path_join(src, "tokenizer.json")))
            return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        if (emdpo_path_is_file(json)) tokenizer = src;
        emdpo_strfree(json);
    }
    return tokenizer ? emdpo_tokenizer_load(tokenizer, emdpo_llama_vocab_size(m), out, diag) : EMDPO_OK;
}

int emdpo_merge_save(emdpo_llama *m, const emdpo_lora *lo, const char *out, emdpo_dtype dtype, const char *tokenizer,
                     emdpo_diag *diag) {
    emdpo_diag_reset(diag, out);
    if (!m || !lo || !out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no model, adapter or output path");
    if ((unsigned)dtype > EMDPO_DTYPE_BF16)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "unknown dtype %d", (int)dtype);
    const char *src = emdpo_llama_source(m);
    int gguf = src && !emdpo_path_is_dir(src) && emdpo_gguf_is_file(src);
    int llama2c = src && !gguf && !emdpo_path_is_dir(src);
    if (llama2c && dtype != EMDPO_DTYPE_AUTO && dtype != EMDPO_DTYPE_F32)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "a llama2.c checkpoint holds float32 weights only (the "
                               "base is one: %s)",
                               src);
    int rc = emdpo_lora_adapter_merge(lo, m, diag);
    if (rc) return rc;
    emdpo_diag_reset(diag, out);
    if (gguf) {
        const char *name = emdpo_dtype_name(dtype != EMDPO_DTYPE_AUTO ? dtype : emdpo_llama_file_dtype(m));
        return emdpo_llama_save_gguf(m, tokenizer, out, name, diag);
    }
    if (llama2c) return emdpo_llama_save_llama2c(m, out, diag);
    emdpo_tokenizer *tok = NULL;
    rc = hf_tokenizer(m, tokenizer, &tok, diag);
    emdpo_llama_save_opts so = {dtype, tok};
    if (!rc) rc = emdpo_llama_save_with(m, out, &so, diag);
    emdpo_tokenizer_free(tok);
    return rc;
}

int emdpo_merge_run(const emdpo_merge_opts *o, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!o || !o->model || !o->adapter || !o->out)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "a base model, an adapter and an output path are needed");
    emdpo_llama *m = NULL;
    emdpo_lora *lo = NULL;
    int rc = emdpo_llama_load(o->model, &m, diag);
    if (!rc) rc = emdpo_lora_adapter_read(o->adapter, m, &lo, diag);
    if (!rc) rc = emdpo_merge_save(m, lo, o->out, o->dtype, o->tokenizer, diag);
    emdpo_lora_free(lo);
    emdpo_llama_free(m);
    return rc;
}
