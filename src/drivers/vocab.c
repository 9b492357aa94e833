/* Training a BPE vocabulary on the texts of JSONL files (emdpo/lm.h's
 * emdpo_vocab_train): what emdpo tokenizer writes. */
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "data/data.h"
#include "lm/io/lm_batch.h"
#include "lm/io/tokenizer.h"
#include "lm/io/tokenizer_train.h"

struct emdpo_vocab {
    void *buf;     /* the tokenizer.bin */
    size_t len;
    int entries;
    int64_t n_texts, n_tokens, n_bytes;
};

/* A growing list of borrowed texts. */
typedef struct text_list {
    const char **s;
    size_t *len;
    size_t n, cap, len_cap;
} text_list;

static int text_push(text_list *t, const char *s) {
    if (!s || !*s) return EMDPO_OK;
    if (emdpo_grow((void **)&t->s, &t->cap, t->n + 1, sizeof *t->s) ||
        emdpo_grow((void **)&t->len, &t->len_cap, t->n + 1, sizeof *t->len))
        return EMDPO_ERR_NOMEM;
    t->s[t->n] = s;
    t->len[t->n++] = strlen(s);
    return EMDPO_OK;
}

/* What one file holds: plain texts or preference data. */
typedef struct source {
    emdpo_lm_texts *texts;
    emdpo_data *pref;
} source;

/* Plain texts ({"text"} or {"prompt","response"}) or preference data
 * (every decision's prompt and every item's text, as often as they occur:
 * frequency drives the merges). */
static int read_source(const char *path, source *src, text_list *t, emdpo_diag *diag) {
    int rc = emdpo_lm_texts_read(path, &src->texts, diag);
    if (rc == EMDPO_ERR_UNSUPPORTED) {
        if ((rc = emdpo_data_read(path, EMDPO_FORMAT_JSONL, &src->pref, diag))) return rc;
        const emdpo_data *d = src->pref;
        if (!emdpo_data_has_text(d)) return emdpo_diag_at(diag, EMDPO_ERR_UNSUPPORTED, path, 0, "responses have no text");
        for (int64_t j = 0; !rc && j < d->n_dec; j++) rc = text_push(t, d->dec_prompt ? d->dec_prompt[j] : NULL);
        for (int64_t i = 0; !rc && i < d->n_items; i++) rc = text_push(t, d->item_text[i]);
    } else if (!rc) {
        for (int64_t i = 0; !rc && i < src->texts->n; i++) {
            rc = text_push(t, src->texts->prompt[i]);
            if (!rc) rc = text_push(t, src->texts->response[i]);
        }
    }
    return rc == EMDPO_ERR_NOMEM ? emdpo_diag_fail(diag, rc, "out of memory") : rc;
}

/* Encodes every text with the new vocabulary, for the token count. */
static int count_tokens(emdpo_vocab *v, const text_list *t) {
    emdpo_tokenizer *tok = NULL;
    int rc = emdpo_tokenizer_parse(v->buf, v->len, v->entries, "trained vocabulary", &tok, NULL);
    size_t cap = 0;
    int *ids = NULL;
    for (size_t i = 0; !rc && i < t->n; i++) {
        size_t need = emdpo_tokenizer_encode_bound(t->len[i]), n = 0;
        if (need > cap) {
            emdpo_free(ids, cap * sizeof *ids);
            cap = need;
            if (!(ids = emdpo_malloc(cap * sizeof *ids))) rc = EMDPO_ERR_NOMEM;
        }
        if (!rc) rc = emdpo_tokenizer_encode(tok, t->s[i], t->len[i], 0, ids, cap, &n);
        v->n_tokens += (int64_t)n;
        v->n_bytes += (int64_t)t->len[i];
    }
    emdpo_free(ids, cap * sizeof *ids);
    emdpo_tokenizer_free(tok);
    return rc;
}

int emdpo_vocab_train(const char *const *paths, int n_paths, const emdpo_bpe_opts *o, emdpo_vocab **out,
                      emdpo_diag *diag) {
    emdpo_diag scratch; /* the trainer's message is read back below */
    if (!diag) diag = &scratch;
    emdpo_diag_reset(diag, NULL);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!paths || n_paths < 1 || !o) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no texts to train on");
    if (o->vocab_size <= EMDPO_TOK_MIN_VOCAB || o->vocab_size > EMDPO_BPE_MAX_VOCAB)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "vocab_size must be in %d..%d", EMDPO_TOK_MIN_VOCAB + 1,
                               EMDPO_BPE_MAX_VOCAB);
    if (o->min_count < 1) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "min_count must be >= 1");
    source *src = emdpo_calloc((size_t)n_paths, sizeof *src);
    emdpo_vocab *v = emdpo_calloc(1, sizeof *v);
    text_list t = {0};
    int rc = src && v ? EMDPO_OK : emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    for (int i = 0; !rc && i < n_paths; i++) rc = read_source(paths[i], &src[i], &t, diag);
    if (!rc && t.n == 0) rc = emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no text to train on");
    if (!rc) {
        emdpo_diag_reset(diag, NULL);
        rc = emdpo_tokenizer_train(t.s, t.len, (int64_t)t.n, o, &v->buf, &v->len, &v->entries, diag);
        if (rc && rc != EMDPO_ERR_LIMIT && !diag->msg[0])
            emdpo_diag_fail(diag, rc, "training failed: %s", emdpo_status_name(rc));
    }
    if (!rc) v->n_texts = (int64_t)t.n;
    if (!rc && (rc = count_tokens(v, &t))) emdpo_diag_fail(diag, rc, "cannot check the vocabulary");
    emdpo_free((void *)t.s, t.cap * sizeof *t.s);
    emdpo_free(t.len, t.len_cap * sizeof *t.len);
    for (int i = 0; src && i < n_paths; i++) {
        emdpo_lm_texts_free(src[i].texts);
        emdpo_data_free(src[i].pref);
    }
    emdpo_free(src, src ? (size_t)n_paths * sizeof *src : 0);
    if (rc) {
        emdpo_vocab_free(v);
        return rc;
    }
    *out = v;
    return EMDPO_OK;
}

void emdpo_vocab_free(emdpo_vocab *v) {
    if (!v) return;
    emdpo_free(v->buf, v->len);
    emdpo_free(v, sizeof *v);
}

int emdpo_vocab_entries(const emdpo_vocab *v) { return v ? v->entries : 0; }
int64_t emdpo_vocab_n_texts(const emdpo_vocab *v) { return v ? v->n_texts : 0; }
int64_t emdpo_vocab_n_tokens(const emdpo_vocab *v) { return v ? v->n_tokens : 0; }
int64_t emdpo_vocab_n_bytes(const emdpo_vocab *v) { return v ? v->n_bytes : 0; }

int emdpo_vocab_save(const emdpo_vocab *v, const char *path, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!v || !path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no vocabulary or path");
    emdpo_afile af;
    int rc = emdpo_afile_open(&af, path, diag);
    if (rc) return rc;
    fwrite(v->buf, 1, v->len, af.fp);
    return emdpo_afile_commit(&af, diag);
}
