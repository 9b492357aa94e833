/* emdpo_tokenizer_load: a tokenizer from a file of any kind it recognises,
 * above the readers of each kind (tokenizer.h's llama2.c format,
 * gguf_vocab.h's GGUF vocabularies, hf_tok_json.h's tokenizer.json), and
 * the special tokens a Hugging Face model directory names beside its
 * tokenizer.json. */
#include <stdint.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json.h"
#include "lm/io/gguf_vocab.h"
#include "lm/io/hf_tok_json.h"
#include "lm/io/tokenizer.h"

/* A JSON document read from dir/name; *root NULL when the file is absent. */
typedef struct side_file {
    char *path;
    char *buf;
    size_t len;
    emdpo_json_doc *doc;
    const emdpo_json *root;
} side_file;

static void side_free(side_file *f) {
    emdpo_strfree(f->path);
    if (f->buf) emdpo_free(f->buf, f->len + 1);
    emdpo_json_doc_free(f->doc);
}

static int side_read(const char *dir, const char *name, side_file *f, emdpo_diag *diag) {
    memset(f, 0, sizeof *f);
    if (!(f->path = emdpo_path_join(dir, name))) return EMDPO_ERR_NOMEM;
    if (!emdpo_path_is_file(f->path)) return EMDPO_OK;
    int rc = emdpo_file_read(f->path, &f->buf, &f->len, diag);
    if (rc) return rc;
    emdpo_json_error err;
    if ((rc = emdpo_json_doc_create(&f->doc))) return rc;
    rc = emdpo_json_parse(f->doc, f->buf, f->len, &f->root, &err);
    if (rc == EMDPO_ERR_PARSE) return emdpo_diag_at(diag, rc, f->path, 0, "byte %zu: %s", err.offset, err.msg);
    if (!rc && f->root->type != EMDPO_JSON_OBJECT) {
        f->root = NULL;
        return emdpo_diag_at(diag, EMDPO_ERR_PARSE, f->path, 0, "not a JSON object");
    }
    return rc;
}

/* The special ids a model directory names. */
typedef struct specials {
    int bos, eos, pad;
    int stop[16];
    size_t n_stop;
} specials;

static void add_stop(specials *s, int id) {
    for (size_t i = 0; i < s->n_stop; i++)
        if (s->stop[i] == id) return;
    if (s->n_stop < sizeof s->stop / sizeof s->stop[0]) s->stop[s->n_stop++] = id;
}

/* tokenizer_config.json's bos_token etc.: a string, an AddedToken object
 * with "content", or null. *id -1 for null; left alone when absent. */
static int token_field(const emdpo_hf_tok *hf, const side_file *f, const char *key, int *id, emdpo_diag *diag) {
    const emdpo_json *v = emdpo_json_get(f->root, key);
    if (!v) return EMDPO_OK;
    if (v->type == EMDPO_JSON_NULL) {
        *id = -1;
        return EMDPO_OK;
    }
    if (v->type == EMDPO_JSON_OBJECT) v = emdpo_json_get(v, "content");
    if (!v || v->type != EMDPO_JSON_STRING)
        return emdpo_diag_at(diag, EMDPO_ERR_PARSE, f->path, 0, "%s is not a string, {\"content\": ...} or null", key);
    if ((*id = emdpo_hf_tok_token_id(hf, v->u.str, v->len)) < 0)
        return emdpo_diag_at(diag, EMDPO_ERR_PARSE, f->path, 0, "%s \"%.60s\" is not a token of the tokenizer.json",
                             key, v->u.str);
    return EMDPO_OK;
}

/* config.json's and generation_config.json's *_token_id: an id, a list of
 * ids (the first one counts, all of them stop generation), or null. */
static int id_field(const emdpo_hf_tok *hf, const side_file *f, const char *key, int *id, specials *s,
                    emdpo_diag *diag) {
    const emdpo_json *v = emdpo_json_get(f->root, key);
    if (!v || v->type == EMDPO_JSON_NULL) return EMDPO_OK;
    size_t n = v->type == EMDPO_JSON_ARRAY ? v->len : 1;
    for (size_t i = 0; i < n; i++) {
        const emdpo_json *x = v->type == EMDPO_JSON_ARRAY ? &v->u.elems[i] : v;
        if (!x->is_int || x->inum < 0 || x->inum >= emdpo_hf_tok_n_ids(hf))
            return emdpo_diag_at(diag, EMDPO_ERR_PARSE, f->path, 0, "%s holds something other than an id in 0..%d",
                                 key, emdpo_hf_tok_n_ids(hf) - 1);
        if (id && i == 0 && *id == -2) *id = (int)x->inum;
        if (s) add_stop(s, (int)x->inum);
    }
    return EMDPO_OK;
}

static int read_specials(const emdpo_hf_tok *hf, const char *dir, specials *s, emdpo_diag *diag) {
    static const char *names[] = {"tokenizer_config.json", "generation_config.json", "config.json"};
    side_file f[3];
    int rc = EMDPO_OK, n = 0;
    /* -2: not named yet; the first file that names one decides. */
    s->bos = s->eos = s->pad = -2;
    s->n_stop = 0;
    for (; n < 3 && !rc; n++) rc = side_read(dir, names[n], &f[n], diag);
    if (!rc && f[0].root && !(rc = token_field(hf, &f[0], "bos_token", &s->bos, diag)) &&
        !(rc = token_field(hf, &f[0], "eos_token", &s->eos, diag)))
        rc = token_field(hf, &f[0], "pad_token", &s->pad, diag);
    if (!rc && s->eos >= 0) add_stop(s, s->eos);
    for (int k = 1; k < 3 && !rc; k++) {
        if (!f[k].root) continue;
        if (!(rc = id_field(hf, &f[k], "bos_token_id", &s->bos, NULL, diag)) &&
            !(rc = id_field(hf, &f[k], "eos_token_id", &s->eos, s, diag)))
            rc = id_field(hf, &f[k], "pad_token_id", &s->pad, NULL, diag);
    }
    for (int k = 0; k < n; k++) side_free(&f[k]);
    if (s->bos == -2) s->bos = -1;
    if (s->eos == -2) s->eos = -1;
    if (s->pad == -2) s->pad = -1;
    return rc;
}

static int load_hf(const char *path, const char *dir, int vocab_size, emdpo_tokenizer **out, emdpo_diag *diag) {
    char *buf;
    size_t len;
    int rc = emdpo_file_read(path, &buf, &len, diag);
    if (rc) return rc;
    emdpo_hf_tok *hf;
    rc = emdpo_hf_tok_from_json(buf, len, path, &hf, diag);
    emdpo_free(buf, len + 1);
    if (rc) return rc;
    specials s;
    int n = emdpo_hf_tok_n_ids(hf);
    if (vocab_size > 0 && n > vocab_size) {
        emdpo_hf_tok_free(hf);
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "the tokenizer has ids up to %d; the model's vocabulary has %d",
                               n - 1, vocab_size);
    }
    if ((rc = read_specials(hf, dir, &s, diag))) {
        emdpo_hf_tok_free(hf);
        return rc;
    }
    if ((rc = emdpo_tokenizer_from_hf(hf, s.bos, s.eos, s.pad, out))) return rc;
    if (s.n_stop && (rc = emdpo_tokenizer_set_stop(*out, s.stop, s.n_stop))) {
        emdpo_tokenizer_free(*out);
        *out = NULL;
    }
    return rc;
}

/* 1 when the file's first non-blank byte opens a JSON object. */
static int looks_like_json(const char *buf, size_t len) {
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r')) i++;
    return i < len && buf[i] == '{';
}

/* The entry count of a tokenizer.bin read to its end, or 0. */
static int count_entries(const char *buf, size_t len) {
    const unsigned char *p = (const unsigned char *)buf;
    size_t pos = 4;
    int n = 0;
    if (len < pos) return 0;
    while (len - pos >= 8 && n < (1 << 24)) {
        uint32_t k = (uint32_t)p[pos + 4] | (uint32_t)p[pos + 5] << 8 | (uint32_t)p[pos + 6] << 16 |
                     (uint32_t)p[pos + 7] << 24;
        if (k > len - pos - 8) return 0;
        pos += 8 + k;
        n++;
    }
    return pos == len ? n : 0;
}

static int load_any(const char *path, int vocab_size, emdpo_tokenizer **out, emdpo_diag *diag) {
    char *buf;
    size_t len;
    int rc;
    if (emdpo_path_is_dir(path)) {
        char *json = emdpo_path_join(path, "tokenizer.json");
        if (!json) return EMDPO_ERR_NOMEM;
        if (!emdpo_path_is_file(json))
            rc = emdpo_diag_fail(diag, EMDPO_ERR_IO, "a directory without tokenizer.json");
        else
            rc = load_hf(json, path, vocab_size, out, diag);
        emdpo_strfree(json);
        return rc;
    }
    if (emdpo_gguf_is_file(path)) {
        int n;
        if ((rc = emdpo_gguf_tokenizer(path, out, &n, diag))) return rc;
        /* A llama2.c-style vocabulary must match the model's exactly; a
         * byte-level one may have fewer ids than embedding rows. */
        int hf = emdpo_tokenizer_is_hf(*out);
        if (vocab_size > 0 && (hf ? n > vocab_size : n != vocab_size)) {
            emdpo_tokenizer_free(*out);
            *out = NULL;
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "the GGUF vocabulary has %d tokens; the model's has %d", n,
                                 vocab_size);
        }
        return rc;
    }
    if ((rc = emdpo_file_read(path, &buf, &len, diag))) return rc;
    if (looks_like_json(buf, len)) {
        emdpo_free(buf, len + 1);
        char *dir = emdpo_path_dir(path);
        if (!dir) return EMDPO_ERR_NOMEM;
        rc = load_hf(path, dir, vocab_size, out, diag);
        emdpo_strfree(dir);
        return rc;
    }
    int n = vocab_size > 0 ? vocab_size : count_entries(buf, len);
    if (!n)
        rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "neither a tokenizer.json, a GGUF file nor a well-formed "
                             "tokenizer.bin");
    else
        rc = emdpo_tokenizer_parse(buf, len, n, path, out, diag);
    emdpo_free(buf, len + 1);
    return rc;
}

int emdpo_tokenizer_load(const char *path, int vocab_size, emdpo_tokenizer **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no tokenizer path");
    if (vocab_size < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "negative vocabulary size");
    int rc = load_any(path, vocab_size, out, diag);
    if (!rc && vocab_size > 0 && emdpo_tokenizer_eos(*out) < 0) {
        /* A model's responses end in EOS, and generation stops there. */
        emdpo_tokenizer_free(*out);
        *out = NULL;
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "the tokenizer names no EOS token (eos_token in "
                               "tokenizer_config.json, or eos_token_id in config.json or generation_config.json "
                               "beside it)");
    }
    if (!rc && emdpo_tokenizer_set_source(*out, path)) {
        emdpo_tokenizer_free(*out);
        *out = NULL;
        rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    return rc;
}
