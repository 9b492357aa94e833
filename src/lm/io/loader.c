/* The one model loader (emdpo/lm.h's emdpo_llama_load): a directory is a
 * Hugging Face checkpoint, a file starting with GGUF's magic a GGUF model,
 * another file a llama2.c one; fresh models from an
 * architecture spec; saving; what a model tells about itself. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/io/gguf.h"
#include "lm/io/gguf_model.h"
#include "lm/io/llama2c.h"
#include "lm/io/llama_hf.h"
#include "lm/io/peft.h"

static int load(const char *path, int frozen, emdpo_llama **out, emdpo_diag *diag);

/* An adapter directory loads as PEFT's AutoPeftModelForCausalLM loads one:
 * the base it names with the adapter merged in (a float32 model, whose
 * source is the base's, so that it saves and tokenizes as the base). */
static int load_adapted(const char *dir, emdpo_llama **out, emdpo_diag *diag) {
    char *base = NULL;
    emdpo_lora *lo = NULL;
    int rc = emdpo_peft_base(dir, &base, diag);
    if (!rc && emdpo_peft_is_dir(base))
        rc = emdpo_diag_at(diag, EMDPO_ERR_UNSUPPORTED, dir, 0, "its base %s is an adapter too", base);
    if (!rc) rc = load(base, 0, out, diag);
    if (!rc) rc = emdpo_peft_read(dir, &(*out)->config, &lo, diag);
    if (!rc && emdpo_lora_merge(lo, *out)) rc = emdpo_diag_at(diag, EMDPO_ERR_INVALID_ARG, dir, 0, "does not fit its base");
    if (!rc) (*out)->adapted = 1;
    if (rc) {
        emdpo_llama_free(*out);
        *out = NULL;
    }
    emdpo_lora_free(lo);
    emdpo_strfree(base);
    return rc;
}

static int load(const char *path, int frozen, emdpo_llama **out, emdpo_diag *diag) {
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    emdpo_diag_reset(diag, path);
    if (!path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no model path");
    if (emdpo_peft_is_dir(path)) return load_adapted(path, out, diag); /* its source: the base's */
    int rc = emdpo_path_is_dir(path)        ? emdpo_llama_hf_load(path, frozen, out, diag)
             : emdpo_gguf_is_file(path)     ? emdpo_gguf_model_load(path, frozen, out, diag)
                                            : emdpo_llama2c_load(path, out, diag);
    emdpo_diag_default_file(diag, path);
    if (!rc && !((*out)->source = emdpo_strdup(path))) {
        emdpo_llama_free(*out);
        *out = NULL;
        rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    return rc;
}

int emdpo_llama_load(const char *path, emdpo_llama **out, emdpo_diag *diag) { return load(path, 0, out, diag); }

int emdpo_llama_load_frozen(const char *path, emdpo_llama **out, emdpo_diag *diag) { return load(path, 1, out, diag); }

int emdpo_llama_is_frozen(const emdpo_llama *m) { return m && m->frozen; }

/* "key=value,..." for emdpo_llama_from_spec. */
int emdpo_llama_from_spec(const char *spec, uint64_t seed, emdpo_llama **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!spec) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no spec");
    int vals[8] = {0, 0, 2, 0, 0, 0, 256, 1}; /* dim hidden layers heads kv_heads vocab seq_len tied */
    static const char *const keys[8] = {"dim", "hidden", "layers", "heads", "kv_heads", "vocab", "seq_len", "tied"};
    const char *p = spec;
    while (*p) {
        const char *eq = strchr(p, '=');
        if (!eq) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "config: expected key=value in '%s'", p);
        size_t klen = (size_t)(eq - p);
        int k = 0;
        while (k < 8 && !(strlen(keys[k]) == klen && strncmp(keys[k], p, klen) == 0)) k++;
        if (k == 8)
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                                   "config: unknown key '%.*s' (dim, hidden, layers, heads, kv_heads, vocab, seq_len, "
                                   "tied)",
                                   (int)klen, p);
        char *end;
        errno = 0;
        long v = strtol(eq + 1, &end, 10);
        if (end == eq + 1 || (*end && *end != ',') || errno || v < 0 || v > 1 << 24)
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "config: bad value for %s", keys[k]);
        vals[k] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (vals[0] <= 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "config needs dim=N");
    if (vals[5] <= 0)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "config needs vocab=N (the tokenizer's vocabulary size)");
    if (!vals[3]) vals[3] = vals[0] % 16 == 0 ? vals[0] / 16 : 1;
    if (!vals[4]) vals[4] = vals[3];
    if (!vals[1]) vals[1] = (2 * 4 * vals[0] / 3 + 31) / 32 * 32; /* llama2.c's SwiGLU width */
    emdpo_llama_config c = {.dim = vals[0], .hidden_dim = vals[1], .n_layers = vals[2], .n_heads = vals[3],
                            .n_kv_heads = vals[4], .vocab_size = vals[5], .max_seq_len = vals[6],
                            .tied = vals[7] != 0, .norm_eps = 1e-5f, .rope_theta = 10000.0f};
    if (emdpo_llama_config_check(&c))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "config: inconsistent architecture (dim divisible by heads, heads by kv_heads, an even "
                               "head size)");
    /* Absurd sizes are refused before allocating: the parameters alone
     * must fit in the machine's memory (training needs about 4 times). */
    double bytes = 4.0 * (double)emdpo_llama_num_params(&c);
    double mem = emdpo_mem_physical();
    if (mem > 0 && bytes > mem)
        return emdpo_diag_fail(diag, EMDPO_ERR_LIMIT,
                               "config: %zu parameters need %.3g GB of float32, more than this machine's %.3g GB of "
                               "memory",
                               emdpo_llama_num_params(&c), bytes / 1e9, mem / 1e9);
    int rc = emdpo_llama_create(&c, out);
    if (rc) return emdpo_diag_fail(diag, rc, "cannot create the model: %s", emdpo_status_name(rc));
    emdpo_llama_init(*out, seed);
    return EMDPO_OK;
}

const char *emdpo_dtype_name(int d) {
    static const char *const names[] = {"auto", "f32", "f16", "bf16"};
    return d >= 0 && d < (int)(sizeof names / sizeof *names) ? names[d] : NULL;
}

emdpo_dtype emdpo_llama_file_dtype(const emdpo_llama *m) {
    return m && m->file_dtype ? (emdpo_dtype)m->file_dtype : EMDPO_DTYPE_F32;
}

void emdpo_llama_save_opts_init(emdpo_llama_save_opts *o) {
    if (!o) return;
    o->dtype = EMDPO_DTYPE_AUTO;
    o->tokenizer = NULL;
}

static int frozen_fail(emdpo_diag *diag) {
    return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                           "the model was loaded frozen, to be run only; load it with emdpo_llama_load to save it");
}

int emdpo_llama_save_with(const emdpo_llama *m, const char *dir, const emdpo_llama_save_opts *o, emdpo_diag *diag) {
    emdpo_diag_reset(diag, dir);
    if (!m || !dir) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no model or directory");
    if (m->frozen) return frozen_fail(diag);
    return emdpo_llama_hf_save(m, dir, o, diag);
}

int emdpo_llama_save(const emdpo_llama *m, const char *dir, emdpo_diag *diag) {
    return emdpo_llama_save_with(m, dir, NULL, diag);
}

int emdpo_llama_save_gguf(const emdpo_llama *m, const char *tokenizer, const char *path, const char *dtype,
                          emdpo_diag *diag) {
    emdpo_diag scratch;
    if (!diag) diag = &scratch;
    emdpo_diag_reset(diag, path);
    if (!m || !path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no model or path");
    if (m->frozen) return frozen_fail(diag);
    static const struct { const char *name; uint32_t type; } types[] = {
        {"f32", EMDPO_GGML_F32}, {"f16", EMDPO_GGML_F16}, {"bf16", EMDPO_GGML_BF16}, {"q8_0", EMDPO_GGML_Q8_0}};
    int k = 0;
    while (dtype && k < 4 && strcmp(types[k].name, dtype) != 0) k++;
    if (k == 4) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "dtype \"%s\": f32, f16, bf16 or q8_0", dtype);
    if (!dtype) k = 1;
    if (!tokenizer && m->source && emdpo_gguf_is_file(m->source)) tokenizer = m->source;
    if (!tokenizer)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "a GGUF file needs the model's tokenizer (the model was not loaded from a GGUF file)");
    return emdpo_gguf_model_save(m, tokenizer, path, types[k].type, diag);
}

int emdpo_llama_save_llama2c(const emdpo_llama *m, const char *path, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!m || !path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no model or path");
    if (m->frozen) return frozen_fail(diag);
    return emdpo_llama2c_save(m, path, diag);
}

int emdpo_llama_vocab_size(const emdpo_llama *m) { return m ? m->config.vocab_size : 0; }
int emdpo_llama_context_length(const emdpo_llama *m) { return m ? emdpo_llama_context(&m->config) : 0; }
int emdpo_llama_dim(const emdpo_llama *m) { return m ? m->config.dim : 0; }
size_t emdpo_llama_n_params(const emdpo_llama *m) {
    return !m ? 0 : m->frozen ? emdpo_llama_num_params(&m->config) : m->num_params;
}
const char *emdpo_llama_source(const emdpo_llama *m) { return m ? m->source : NULL; }

int emdpo_llama_same_architecture(const emdpo_llama *a, const emdpo_llama *b) {
    return a && b && memcmp(&a->config, &b->config, sizeof a->config) == 0;
}
