/* Text from a checkpoint or a mixture.json (emdpo/lm.h's
 * emdpo_generate_text): what emdpo generate prints. */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/utf8.h"
#include "lm/io/gguf.h"
#include "lm/engine/llama.h"
#include "lm/engine/lm_sample.h"
#include "lm/engine/lora.h"
#include "lm/io/peft.h"
#include "lm/io/tokenizer.h"
#include "lm/lm_mixture.h"

struct emdpo_generation {
    int n, mixture;
    char **text;      /* (n) */
    size_t *len;      /* (n) */
    char **member;    /* (n) borrowed from the mixture's names, copied */
};

void emdpo_generation_free(emdpo_generation *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) {
        if (g->text) emdpo_free(g->text[i], g->text[i] ? g->len[i] + 1 : 0);
        if (g->member) emdpo_strfree(g->member[i]);
    }
    emdpo_free(g->text, (size_t)g->n * sizeof *g->text);
    emdpo_free(g->len, (size_t)g->n * sizeof *g->len);
    emdpo_free(g->member, g->member ? (size_t)g->n * sizeof *g->member : 0);
    emdpo_free(g, sizeof *g);
}

int emdpo_generation_n(const emdpo_generation *g) { return g ? g->n : 0; }
int emdpo_generation_is_mixture(const emdpo_generation *g) { return g ? g->mixture : 0; }

const char *emdpo_generation_text(const emdpo_generation *g, int i, size_t *len) {
    if (!g || i < 0 || i >= g->n) return NULL;
    if (len) *len = g->len[i];
    return g->text[i];
}

const char *emdpo_generation_member(const emdpo_generation *g, int i) {
    return g && g->member && i >= 0 && i < g->n ? g->member[i] : NULL;
}

static int check_opts(const emdpo_sample_opts *o, emdpo_diag *diag) {
    if (!(o->temperature >= 0) || !isfinite(o->temperature))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "temperature must be a finite number >= 0");
    if (o->top_k < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "top_k must be >= 0");
    if (!(o->top_p > 0 && o->top_p <= 1)) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "top_p must be in (0, 1]");
    if (o->max_tokens < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "max_tokens must be >= 0");
    if (o->n < 1 || o->n > 1000000) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "n must be in 1..1000000");
    return EMDPO_OK;
}

/* The prompt text as given, then the continuation: what decoding the whole
 * sequence adds to the decoded prompt head (so a piece's leading space, or
 * bytes completing a character, come out as the tokenizer decodes them in
 * context), else the generated ids decoded alone. Special tokens the
 * sampler stopped at are not part of seq. */
static int continuation(const emdpo_tokenizer *tok, const char *text, const char *head, size_t head_len,
                        const int *seq, size_t n_prompt, size_t n_gen, char **out, size_t *len) {
    char *all = NULL;
    size_t all_len = 0, text_len = strlen(text);
    int rc = emdpo_tokenizer_decode_alloc(tok, seq, n_prompt + n_gen, &all, &all_len);
    if (rc) return rc;
    const char *tail = all + head_len;
    size_t tail_len = all_len - head_len;
    char *alone = NULL;
    size_t alone_len = 0;
    if (all_len < head_len || memcmp(all, head, head_len) != 0) {
        if ((rc = emdpo_tokenizer_decode_alloc(tok, seq + n_prompt, n_gen, &alone, &alone_len))) {
            emdpo_free(all, all_len + 1);
            return rc;
        }
        tail = alone;
        tail_len = alone_len;
    }
    *len = text_len + tail_len;
    if ((*out = emdpo_malloc(*len + 1))) {
        memcpy(*out, text, text_len);
        memcpy(*out + text_len, tail, tail_len);
        (*out)[*len] = '\0';
    } else {
        rc = EMDPO_ERR_NOMEM;
    }
    emdpo_free(all, all_len + 1);
    if (alone) emdpo_free(alone, alone_len + 1);
    return rc;
}

/* Generates from m (or the mixture's members) and decodes each sample. */
static int run(const emdpo_llama *m, const emdpo_mixture *mix, const emdpo_tokenizer *tok, const char *text,
               const emdpo_sample_opts *o, emdpo_generation *g, emdpo_diag *diag) {
    size_t n_prompt = 0;
    size_t n = (size_t)o->n, per = (size_t)o->max_tokens, n_gen = n * per + 1, seqlen = 0;
    int max_T = emdpo_llama_context(&m->config);
    int *prompt = NULL, *gen = NULL, *n_out = NULL, *seq = NULL, *member = NULL;
    /* As Hugging Face's encode(text, add_special_tokens=True) and llama.cpp
     * (BOS when the vocabulary asks for it) tokenize a prompt. */
    /* Checked here, not left to the tokenizer: llama2.c's byte fallback
     * would encode the stray bytes and echo them back. */
    size_t text_len = strlen(text), bad = emdpo_utf8_invalid_at(text, text_len);
    int rc = bad < text_len ? EMDPO_ERR_INVALID_ARG
                            : emdpo_tokenizer_encode_alloc(tok, text, text_len, EMDPO_TOK_SPECIAL, &prompt, &n_prompt);
    if (rc == EMDPO_ERR_INVALID_ARG) {
        if (bad < text_len) emdpo_diag_fail(diag, rc, "the prompt is not valid UTF-8 (byte %zu)", bad + 1);
        else emdpo_diag_fail(diag, rc, "the prompt is not valid UTF-8");
    } else if (rc) {
        emdpo_diag_fail(diag, rc, "cannot encode the prompt: %s", emdpo_status_name(rc));
    } else if (n_prompt == 0) {
        rc = emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "the tokenizer has no BOS to start from: give a --prompt");
    } else if (n_prompt > (size_t)max_T) {
        rc = emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "the prompt is %zu tokens; the model's context is %d",
                             n_prompt, max_T);
    }
    if (!rc) {
        seqlen = n_prompt + per;
        gen = emdpo_malloc(n_gen * sizeof *gen);
        n_out = emdpo_malloc(n * sizeof *n_out);
        seq = emdpo_malloc(seqlen * sizeof *seq);
        if (mix) member = emdpo_malloc(n * sizeof *member);
        g->n = o->n; /* the arrays' length, whichever of them are had */
        g->text = emdpo_calloc(n, sizeof *g->text);
        g->len = emdpo_calloc(n, sizeof *g->len);
        if (mix) g->member = emdpo_calloc(n, sizeof *g->member);
        if (!gen || !n_out || !seq || !g->text || !g->len || (mix && (!member || !g->member))) rc = EMDPO_ERR_NOMEM;
    }
    if (!rc && mix) {
        int cache_T = (long long)n_prompt + o->max_tokens < max_T ? (int)n_prompt + o->max_tokens : max_T;
        emdpo_sampler *s = NULL;
        const int **prompts = emdpo_malloc(n * sizeof *prompts);
        int *plen = emdpo_malloc(n * sizeof *plen);
        if (!prompts || !plen) rc = EMDPO_ERR_NOMEM;
        for (size_t i = 0; !rc && i < n; i++) {
            prompts[i] = prompt;
            plen[i] = (int)n_prompt;
        }
        if (!rc) rc = emdpo_sampler_create(m->config.vocab_size, (float)o->temperature, o->top_k, (float)o->top_p, &s);
        if (!rc) emdpo_tokenizer_stop_sampler(tok, s);
        if (!rc)
            rc = emdpo_mixture_generate((const emdpo_llama *const *)mix->model, mix->K, mix->w, s, o->seed, prompts,
                                        plen, o->n, o->max_tokens, cache_T, member, gen, n_out, NULL);
        emdpo_sampler_free(s);
        emdpo_free(plen, n * sizeof *plen);
        emdpo_free((void *)prompts, n * sizeof *prompts);
    } else if (!rc) {
        emdpo_sample_opts with_stops = *o;
        with_stops.n_stop = emdpo_tokenizer_stop_ids(tok, &with_stops.stop_ids);
        rc = emdpo_lm_generate(m, &with_stops, prompt, (int)n_prompt, gen, n_out, NULL);
    }
    char *head = NULL;
    size_t head_len = 0;
    if (!rc) rc = emdpo_tokenizer_decode_alloc(tok, prompt, n_prompt, &head, &head_len);
    for (size_t i = 0; !rc && i < n; i++) {
        memcpy(seq, prompt, n_prompt * sizeof *seq);
        memcpy(seq + n_prompt, gen + i * per, (size_t)n_out[i] * sizeof *seq);
        rc = continuation(tok, text, head, head_len, seq, n_prompt, (size_t)n_out[i], &g->text[i], &g->len[i]);
        if (!rc && mix && !(g->member[i] = emdpo_strdup(mix->member[member[i]]))) rc = EMDPO_ERR_NOMEM;
    }
    if (head) emdpo_free(head, head_len + 1);
    if (rc && !diag->msg[0]) emdpo_diag_fail(diag, rc, "generation failed: %s", emdpo_status_name(rc));
    emdpo_ids_free(prompt, n_prompt);
    emdpo_free(gen, n_gen * sizeof *gen);
    emdpo_free(n_out, n * sizeof *n_out);
    emdpo_free(seq, seqlen * sizeof *seq);
    emdpo_free(member, mix ? n * sizeof *member : 0);
    return rc;
}

/* The tokenizer a model carries: a GGUF file's own, or the tokenizer.json
 * of a Hugging Face directory. */
static int model_tokenizer(const char *model, int mixture, char **out, emdpo_diag *diag) {
    *out = NULL;
    if (!mixture && emdpo_gguf_is_file(model)) {
        *out = emdpo_strdup(model);
    } else if (!mixture && emdpo_path_is_dir(model)) {
        char *json = emdpo_path_join(model, "tokenizer.json");
        if (json && !emdpo_path_is_file(json)) {
            emdpo_strfree(json);
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                                   "tokenizer missing: the model directory has no tokenizer.json");
        }
        *out = json;
    } else {
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "tokenizer missing: only a GGUF file or a Hugging Face directory with tokenizer.json "
                               "carries its own");
    }
    return *out ? EMDPO_OK : emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
}

int emdpo_generate_text(const char *model, const char *tokenizer, const char *prompt, const emdpo_sample_opts *o,
                        emdpo_generation **out, emdpo_diag *diag) {
    emdpo_diag scratch;
    if (!diag) diag = &scratch;
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!model || !o) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no model or options");
    int rc = check_opts(o, diag);
    if (rc) return rc;
    emdpo_llama *m = NULL;
    emdpo_mixture *mix = NULL;
    emdpo_tokenizer *tok = NULL;
    emdpo_generation *g = emdpo_calloc(1, sizeof *g);
    if (!g) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    g->mixture = emdpo_mixture_is_file(model);
    if (g->mixture && o->adapter) {
        emdpo_diag_reset(diag, o->adapter);
        rc = emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "an adapter goes on a model, not on a mixture");
    } else if (g->mixture) {
        rc = emdpo_mixture_open(model, &mix, diag);
    } else if (o->adapter) { /* merged into a float32 copy: the decoders run plain models */
        emdpo_lora *lo = NULL;
        if (!(rc = emdpo_llama_load(model, &m, diag)) && !(rc = emdpo_peft_read(o->adapter, &m->config, &lo, diag)))
            rc = emdpo_lora_merge(lo, m);
        emdpo_lora_free(lo);
    } else {
        rc = emdpo_llama_load_frozen(model, &m, diag);
    }
    const emdpo_llama *m0 = mix ? mix->model[0] : m;
    if (!rc && o->top_k > m0->config.vocab_size)
        rc = emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "top_k must be at most the vocabulary size %d",
                             m0->config.vocab_size);
    char *own_tok = NULL;
    if (!rc && !tokenizer) rc = model_tokenizer(model, g->mixture, &own_tok, diag);
    if (!rc) rc = emdpo_tokenizer_load(tokenizer ? tokenizer : own_tok, m0->config.vocab_size, &tok, diag);
    emdpo_strfree(own_tok);
    if (!rc) {
        emdpo_diag_reset(diag, NULL);
        rc = run(m0, mix, tok, prompt ? prompt : "", o, g, diag);
    }
    emdpo_tokenizer_free(tok);
    emdpo_mixture_free(mix);
    emdpo_llama_free(m);
    if (rc) {
        emdpo_generation_free(g);
        return rc;
    }
    *out = g;
    return EMDPO_OK;
}
