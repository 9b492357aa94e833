/* GGUF vocabularies; see gguf_vocab.h. The file is read by gguf.h, which
 * has checked every length against the file; only the tokenizer.ggml.*
 * keys are looked at. */
#include "lm/io/gguf_vocab.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "lm/io/gguf.h"
#include "lm/io/tokenizer.h"

/* llama.cpp's token types. */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* An array of strings, back to back. */
typedef struct strs {
    uint64_t n;
    char *bytes;
    size_t bytes_cap;
    uint64_t *off; /* (n + 1) */
} strs;

typedef struct vocab {
    char model[16];       /* tokenizer.ggml.model, truncated */
    int have_model;
    char pre[32];         /* tokenizer.ggml.pre, truncated; "" when absent */
    uint64_t n;           /* tokens */
    char *bytes;          /* the tokens' bytes, back to back */
    size_t bytes_cap;
    uint64_t *off;        /* (n + 1) */
    strs merges;          /* tokenizer.ggml.merges ("a b") */
    float *score;         /* (n) or NULL */
    uint64_t n_score;
    int32_t *type;        /* (n) or NULL */
    uint64_t n_type;
    int64_t bos, eos, unk, pad; /* -1: absent */
    int space_prefix;     /* -1: absent */
    int add_bos, add_eos; /* -1: absent */
} vocab;

static void vocab_free(vocab *v) {
    emdpo_free(v->bytes, v->bytes_cap);
    emdpo_free(v->off, v->off ? (v->n + 1) * sizeof *v->off : 0);
    emdpo_free(v->score, v->score ? (v->n_score ? v->n_score : 1) * sizeof *v->score : 0);
    emdpo_free(v->type, v->type ? (v->n_type ? v->n_type : 1) * sizeof *v->type : 0);
    emdpo_free(v->merges.bytes, v->merges.bytes_cap);
    emdpo_free(v->merges.off, v->merges.off ? (v->merges.n + 1) * sizeof *v->merges.off : 0);
}

/* An array of strings into *a (min_n .. 2^30 of them). */
static int read_strs(const emdpo_gguf_kv *kv, strs *a, uint64_t min_n, const char *what, emdpo_diag *diag) {
    uint64_t n;
    int rc = emdpo_gguf_array(kv, EMDPO_GGUF_STRING, &n, diag);
    if (rc) return rc;
    if (n < min_n || n > INT32_MAX / 2) return emdpo_gguf_kv_fail(kv, diag, EMDPO_ERR_UNSUPPORTED, what);
    if (!(a->off = emdpo_malloc((n + 1) * sizeof *a->off))) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    a->n = n;
    uint64_t o = 0;
    const unsigned char *cursor = kv->val;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len;
        const char *s = emdpo_gguf_next_str(&cursor, &len);
        a->off[i] = o;
        if (len > EMDPO_TOK_MAX_PIECE)
            return emdpo_gguf_kv_fail(kv, diag, EMDPO_ERR_LIMIT, "a string is longer than 65536 bytes");
        if (emdpo_grow((void **)&a->bytes, &a->bytes_cap, (size_t)(o + len) + 1, 1))
            return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        memcpy(a->bytes + o, s, (size_t)len);
        o += len;
    }
    a->off[n] = o;
    return EMDPO_OK;
}

static int read_tokens(const emdpo_gguf_kv *kv, vocab *v, emdpo_diag *diag) {
    strs a = {0, NULL, 0, NULL};
    int rc = read_strs(kv, &a, 259, "needs 259 .. 2^30 tokens", diag);
    v->n = a.n;
    v->bytes = a.bytes;
    v->bytes_cap = a.bytes_cap;
    v->off = a.off;
    return rc;
}

/* A string key, truncated to fit dst. */
static int read_string(const emdpo_gguf_kv *kv, char *dst, size_t cap, emdpo_diag *diag) {
    const char *s;
    size_t n;
    int rc = emdpo_gguf_str(kv, &s, &n, diag);
    if (rc) return rc;
    size_t keep = n < cap - 1 ? n : cap - 1;
    memcpy(dst, s, keep);
    dst[keep] = '\0';
    return EMDPO_OK;
}

/* An array of 4-byte elements (F32 scores or I32 types) into a copy. */
static int read_4s(const emdpo_gguf_kv *kv, uint32_t elem, void **dst, uint64_t *n, emdpo_diag *diag) {
    int rc = emdpo_gguf_array(kv, elem, n, diag);
    if (rc) return rc;
    if (!(*dst = emdpo_malloc((*n ? (size_t)*n : 1) * 4))) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    memcpy(*dst, kv->val, (size_t)*n * 4);
    return EMDPO_OK;
}

static int read_metadata(const emdpo_gguf *g, vocab *v, emdpo_diag *diag) {
    int rc = EMDPO_OK;
    for (size_t k = 0; k < emdpo_gguf_n_kv(g) && !rc; k++) {
        const emdpo_gguf_kv *kv = emdpo_gguf_kv_at(g, k);
        const char *key = kv->key;
        if (strncmp(key, "tokenizer.ggml.", 15) != 0) continue;
        key += 15;
        if (strcmp(key, "model") == 0) {
            rc = read_string(kv, v->model, sizeof v->model, diag);
            v->have_model = 1;
        } else if (strcmp(key, "pre") == 0) {
            rc = read_string(kv, v->pre, sizeof v->pre, diag);
        } else if (strcmp(key, "merges") == 0) {
            rc = read_strs(kv, &v->merges, 0, "holds more than 2^30 merges", diag);
        } else if (strcmp(key, "padding_token_id") == 0) {
            rc = emdpo_gguf_int(kv, &v->pad, diag);
        } else if (strcmp(key, "add_bos_token") == 0) {
            rc = emdpo_gguf_bool(kv, &v->add_bos, diag);
        } else if (strcmp(key, "add_eos_token") == 0) {
            rc = emdpo_gguf_bool(kv, &v->add_eos, diag);
        } else if (strcmp(key, "tokens") == 0) {
            rc = read_tokens(kv, v, diag);
        } else if (strcmp(key, "scores") == 0) {
            rc = read_4s(kv, EMDPO_GGUF_F32, (void **)&v->score, &v->n_score, diag);
        } else if (strcmp(key, "token_type") == 0) {
            rc = read_4s(kv, EMDPO_GGUF_I32, (void **)&v->type, &v->n_type, diag);
        } else if (strcmp(key, "bos_token_id") == 0) {
            rc = emdpo_gguf_int(kv, &v->bos, diag);
        } else if (strcmp(key, "eos_token_id") == 0) {
            rc = emdpo_gguf_int(kv, &v->eos, diag);
        } else if (strcmp(key, "unknown_token_id") == 0) {
            rc = emdpo_gguf_int(kv, &v->unk, diag);
        } else if (strcmp(key, "add_space_prefix") == 0) {
            rc = emdpo_gguf_bool(kv, &v->space_prefix, diag);
        }
    }
    return rc;
}

static const char space_mark[] = "\xE2\x96\x81"; /* U+2581, SentencePiece's space */

/* Checks the vocabulary against what tokenizer.h can hold. */
static int check_vocab(const vocab *v, emdpo_diag *diag) {
    if (!v->have_model)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "no key tokenizer.ggml.model: the file holds no tokenizer");
    if (strcmp(v->model, "llama") != 0)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                               "key tokenizer.ggml.model is \"%s\": only \"llama\" (SentencePiece BPE) and "
                               "\"gpt2\" (byte-level BPE) vocabularies are read",
                               v->model);
    if (!v->off) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "no key tokenizer.ggml.tokens");
    if (v->score && v->n_score != v->n)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "key tokenizer.ggml.scores has %llu entries, the tokens %llu",
                               (unsigned long long)v->n_score, (unsigned long long)v->n);
    if (v->type && v->n_type != v->n)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                               "key tokenizer.ggml.token_type has %llu entries, the tokens %llu",
                               (unsigned long long)v->n_type, (unsigned long long)v->n);
    if ((v->unk >= 0 && v->unk != 0) || (v->bos >= 0 && v->bos != 1) || (v->eos >= 0 && v->eos != 2))
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                               "unknown, BOS and EOS are ids %lld, %lld, %lld; emdpo's tokenizer needs 0, 1, 2",
                               (long long)v->unk, (long long)v->bos, (long long)v->eos);
    if (v->space_prefix == 0)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                               "key tokenizer.ggml.add_space_prefix is false; emdpo's tokenizer always adds "
                               "the prefix");
    for (uint64_t i = 3; i < 259; i++) {
        char want[8];
        snprintf(want, sizeof want, "<0x%02X>", (unsigned)(i - 3));
        if (v->off[i + 1] - v->off[i] != 6 || memcmp(v->bytes + v->off[i], want, 6) ||
            (v->type && v->type[i] != TT_BYTE))
            return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                                   "token %llu should be the byte piece %s, as emdpo's tokenizer needs ids "
                                   "3..258 to be",
                                   (unsigned long long)i, want);
    }
    for (uint64_t i = 259; v->type && i < v->n; i++)
        if (v->type[i] == TT_USER || v->type[i] == TT_BYTE)
            return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                                   "token %llu is %s; such tokens above id 258 are not read yet",
                                   (unsigned long long)i, v->type[i] == TT_USER ? "user-defined" : "a byte piece");
    for (uint64_t i = 0; v->score && i < v->n; i++)
        if (!isfinite(v->score[i]))
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "key tokenizer.ggml.scores: entry %llu is not finite",
                                   (unsigned long long)i);
    return EMDPO_OK;
}

/* Appends piece i as tokenizer.h stores it: U+2581 as a space. */
static size_t put_piece(char *dst, const char *s, size_t n) {
    size_t o = 0;
    for (size_t k = 0; k < n;) {
        if (n - k >= 3 && memcmp(s + k, space_mark, 3) == 0) {
            if (dst) dst[o] = ' ';
            k += 3;
        } else {
            if (dst) dst[o] = s[k];
            k++;
        }
        o++;
    }
    return o;
}

/* The llama2.c image: sizes first (a dry run), then the bytes. */
static int make_image(const vocab *v, char **image, size_t *len) {
    static const char *const fixed[3] = {"<unk>", "\n<s>\n", "\n</s>\n"};
    size_t total = 4, longest = 6;
    for (uint64_t i = 0; i < v->n; i++) {
        int keep = i >= 3 && (i < 259 || !v->type || v->type[i] == TT_NORMAL);
        size_t n = i < 3  ? strlen(fixed[i])
                   : keep ? put_piece(NULL, v->bytes + v->off[i], v->off[i + 1] - v->off[i])
                          : 0;
        total += 8 + n;
        if (n > longest) longest = n;
    }
    char *p = emdpo_malloc(total);
    if (!p) return EMDPO_ERR_NOMEM;
    int32_t ml = (int32_t)longest;
    memcpy(p, &ml, 4);
    size_t o = 4;
    for (uint64_t i = 0; i < v->n; i++) {
        int keep = i >= 3 && (i < 259 || !v->type || v->type[i] == TT_NORMAL);
        float score = v->score ? v->score[i] : 0.0f;
        int32_t n;
        if (i < 3) {
            n = (int32_t)strlen(fixed[i]);
            memcpy(p + o + 8, fixed[i], (size_t)n);
        } else {
            n = keep ? (int32_t)put_piece(p + o + 8, v->bytes + v->off[i], v->off[i + 1] - v->off[i]) : 0;
        }
        memcpy(p + o, &score, 4);
        memcpy(p + o + 4, &n, 4);
        o += 8 + (size_t)n;
    }
    *image = p;
    *len = total;
    return EMDPO_OK;
}

/* llama.cpp's pre-tokenizers for byte-level BPE (tokenizer.ggml.pre), as
 * the Split regexes of the tokenizer.json files they were converted from,
 * with llama.cpp's settings for them: ignore_merges, and whether BOS is
 * added when tokenizer.ggml.add_bos_token does not say. */
static const struct pre_type {
    const char *names; /* '|'-separated */
    const char *regex;
    int ignore_merges, add_bos;
} pre_types[] = {
    {"|default|gpt-2|", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", 0, 0},
    {"|llama3|llama-v3|llama-bpe|",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     1, 1},
    {"|qwen2|",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     0, 0},
};

const char *emdpo_gguf_pre_name(const char *regex, size_t len) {
    static const char *const names[] = {"gpt-2", "llama-bpe", "qwen2"}; /* pre_types' order */
    for (size_t i = 0; i < sizeof pre_types / sizeof pre_types[0]; i++)
        if (strlen(pre_types[i].regex) == len && memcmp(pre_types[i].regex, regex, len) == 0) return names[i];
    return NULL;
}

static const struct pre_type *find_pre(const char *name) {
    char key[40];
    snprintf(key, sizeof key, "|%s|", *name ? name : "default");
    for (size_t i = 0; i < sizeof pre_types / sizeof pre_types[0]; i++)
        if (strstr(pre_types[i].names, key)) return &pre_types[i];
    return NULL;
}

/* A byte-level BPE vocabulary (tokenizer.ggml.model "gpt2") as the
 * tokenizer.json it came from: the pre-tokenizer's regex and ByteLevel,
 * merges by rank, control and user-defined tokens matched in text as
 * added tokens, BOS / EOS around sequences when add_bos_token /
 * add_eos_token say so. */
static int build_gpt2(const vocab *v, emdpo_tokenizer **out, emdpo_diag *diag) {
    const struct pre_type *pre = find_pre(v->pre);
    if (!pre)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "key tokenizer.ggml.pre is \"%s\": only gpt-2, llama-bpe "
                               "(llama3) and qwen2 pre-tokenizers are read", v->pre);
    if (!v->off) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "no key tokenizer.ggml.tokens");
    if (v->type && v->n_type != v->n)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "key tokenizer.ggml.token_type has %llu entries, the tokens %llu",
                               (unsigned long long)v->n_type, (unsigned long long)v->n);
    int64_t ids[4] = {v->bos, v->eos, v->unk, v->pad};
    for (int k = 0; k < 4; k++)
        if (ids[k] < -1 || ids[k] >= (int64_t)v->n)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "a special token id (%lld) is outside the %llu tokens",
                                   (long long)ids[k], (unsigned long long)v->n);
    emdpo_hf_tok *hf;
    int rc = emdpo_hf_tok_create(&hf);
    for (uint64_t i = 0; !rc && i < v->n; i++) {
        const char *p = v->bytes + v->off[i];
        size_t len = (size_t)(v->off[i + 1] - v->off[i]);
        int type = v->type ? v->type[i] : TT_NORMAL;
        if ((rc = emdpo_hf_tok_add_piece(hf, (int)i, p, len, diag)) == EMDPO_ERR_INVALID_ARG)
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "key tokenizer.ggml.tokens: token %llu repeats an earlier one",
                                 (unsigned long long)i);
        if (!rc && (type == TT_CONTROL || type == TT_USER) && len) {
            emdpo_hf_added a = {(char *)p, len, NULL, 0, (int)i, type == TT_CONTROL, 0, 0, 0, 0};
            rc = emdpo_hf_tok_add_token(hf, &a);
        }
    }
    for (uint64_t i = 0; !rc && i < v->merges.n; i++) {
        const char *m = v->merges.bytes + v->merges.off[i];
        size_t len = (size_t)(v->merges.off[i + 1] - v->merges.off[i]);
        const char *sp = len > 1 ? memchr(m + 1, ' ', len - 1) : NULL;
        if (!sp) {
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "key tokenizer.ggml.merges: merge %llu is not \"a b\"",
                                 (unsigned long long)i);
            break;
        }
        if ((rc = emdpo_hf_tok_add_merge(hf, m, (size_t)(sp - m), sp + 1, len - (size_t)(sp - m) - 1, (uint32_t)i,
                                         diag)) == EMDPO_ERR_PARSE)
            emdpo_diag_fail(diag, rc, "key tokenizer.ggml.merges: merge %llu does not join two tokens into one",
                            (unsigned long long)i);
    }
    if (!rc) emdpo_hf_tok_set_model(hf, (int)v->unk, 0, 0, pre->ignore_merges);
    emdpo_hf_step split = {EMDPO_HF_PRE_SPLIT, NULL, 0, NULL, 0, NULL, EMDPO_HF_SPLIT_ISOLATED, 0, 0, 0};
    emdpo_hf_step bytes = {EMDPO_HF_PRE_BYTELEVEL, NULL, 0, NULL, 0, NULL, 0, 0, 0, 0};
    emdpo_hf_step dec = {EMDPO_HF_DEC_BYTELEVEL, NULL, 0, NULL, 0, NULL, 0, 0, 0, 0};
    if (!rc) rc = emdpo_hf_tok_compile(pre->regex, strlen(pre->regex), 0, &split.re, diag);
    if (!rc) rc = emdpo_hf_tok_add_step(hf, 1, &split);
    if (!rc) rc = emdpo_hf_tok_add_step(hf, 1, &bytes);
    if (!rc) rc = emdpo_hf_tok_add_step(hf, 2, &dec);
    int bos = (int)v->bos, eos = (int)v->eos;
    int add_bos = (v->add_bos == 1 || (v->add_bos < 0 && pre->add_bos)) && bos >= 0;
    int add_eos = v->add_eos == 1 && eos >= 0;
    if (!rc) rc = emdpo_hf_tok_set_template(hf, &bos, (size_t)add_bos, &eos, (size_t)add_eos);
    if (!rc) rc = emdpo_hf_tok_finish(hf, diag);
    if (rc) {
        emdpo_hf_tok_free(hf);
        return rc;
    }
    return emdpo_tokenizer_from_hf(hf, bos, eos, (int)v->pad, out);
}

int emdpo_gguf_tokenizer(const char *path, emdpo_tokenizer **out, int *n_vocab, emdpo_diag *diag) {
    *out = NULL;
    emdpo_gguf *g;
    int rc = emdpo_gguf_open(path, &g, diag);
    if (rc) return rc;
    vocab v;
    memset(&v, 0, sizeof v);
    v.bos = v.eos = v.unk = v.pad = -1;
    v.space_prefix = v.add_bos = v.add_eos = -1;
    rc = read_metadata(g, &v, diag);
    if (!rc && v.have_model && strcmp(v.model, "gpt2") == 0) {
        rc = build_gpt2(&v, out, diag);
    } else if (!rc && !(rc = check_vocab(&v, diag))) {
        char *image;
        size_t len;
        if ((rc = make_image(&v, &image, &len))) {
            emdpo_diag_fail(diag, rc, "out of memory");
        } else {
            rc = emdpo_tokenizer_parse(image, len, (int)v.n, path, out, diag);
            emdpo_free(image, len);
        }
    }
    if (!rc) *n_vocab = (int)v.n;
    vocab_free(&v);
    emdpo_gguf_close(g);
    return rc;
}
