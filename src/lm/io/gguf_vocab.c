/* GGUF vocabularies; see gguf_vocab.h. GGUF has no C library in Debian and
 * only its key/value section is needed here, so it is read by hand, every
 * count checked against the bytes the file has left before anything is
 * allocated. */
#include "lm/io/gguf_vocab.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "lm/io/tokenizer.h"

enum { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64, T_I64, T_F64, N_TYPES };
static const int type_size[N_TYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* llama.cpp's token types. */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

typedef struct reader {
    FILE *fp;
    uint64_t pos, size; /* bytes read, file size */
    emdpo_diag *diag;
    const char *key;    /* the key being read, for messages */
} reader;

static int bad(reader *r, int rc, const char *what) {
    unsigned long long at = (unsigned long long)r->pos;
    if (r->key) return emdpo_diag_fail(r->diag, rc, "key %s (byte offset %llu): %s", r->key, at, what);
    return emdpo_diag_fail(r->diag, rc, "byte offset %llu: %s", at, what);
}

static int take(reader *r, void *dst, uint64_t n) {
    if (n > r->size - r->pos) return bad(r, EMDPO_ERR_PARSE, "truncated: the file ends inside the metadata");
    if (n && fread(dst, 1, (size_t)n, r->fp) != n) return bad(r, EMDPO_ERR_IO, "read error");
    r->pos += n;
    return EMDPO_OK;
}

static int skip(reader *r, uint64_t n) {
    if (n > r->size - r->pos) return bad(r, EMDPO_ERR_PARSE, "truncated: the file ends inside the metadata");
    if (fseeko(r->fp, (off_t)n, SEEK_CUR)) return bad(r, EMDPO_ERR_IO, "seek error");
    r->pos += n;
    return EMDPO_OK;
}

/* The fuzzing and deployment hosts are little-endian, as GGUF is. */
static int u32(reader *r, uint32_t *v) { return take(r, v, 4); }
static int u64(reader *r, uint64_t *v) { return take(r, v, 8); }

/* A string's length, checked against what the file has left. */
static int str_len(reader *r, uint64_t *n) {
    int rc = u64(r, n);
    if (!rc && *n > r->size - r->pos) return bad(r, EMDPO_ERR_PARSE, "a string runs past the end of the file");
    return rc;
}

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
    emdpo_free(v->off, (v->n + 1) * sizeof *v->off);
    emdpo_free(v->score, v->n_score * sizeof *v->score);
    emdpo_free(v->type, v->n_type * sizeof *v->type);
    emdpo_free(v->merges.bytes, v->merges.bytes_cap);
    emdpo_free(v->merges.off, v->merges.off ? (v->merges.n + 1) * sizeof *v->merges.off : 0);
}

/* Skips one value of type t (arrays of scalars or strings). */
static int skip_value(reader *r, uint32_t t, int depth) {
    if (t >= N_TYPES) return bad(r, EMDPO_ERR_PARSE, "unknown value type");
    if (type_size[t]) return skip(r, (uint64_t)type_size[t]);
    uint64_t n;
    int rc;
    if (t == T_STRING) return (rc = str_len(r, &n)) ? rc : skip(r, n);
    uint32_t et;
    if ((rc = u32(r, &et)) || (rc = u64(r, &n))) return rc;
    if (depth > 0 || et == T_ARRAY) return bad(r, EMDPO_ERR_PARSE, "arrays of arrays are not GGUF metadata we read");
    if (et >= N_TYPES) return bad(r, EMDPO_ERR_PARSE, "unknown array element type");
    if (type_size[et]) {
        if (n > (r->size - r->pos) / (uint64_t)type_size[et])
            return bad(r, EMDPO_ERR_PARSE, "an array runs past the end of the file");
        return skip(r, n * (uint64_t)type_size[et]);
    }
    if (n > (r->size - r->pos) / 8) return bad(r, EMDPO_ERR_PARSE, "an array runs past the end of the file");
    for (uint64_t i = 0; i < n && !rc; i++) rc = skip_value(r, T_STRING, depth + 1);
    return rc;
}

/* An array header of the expected element type; its count checked
 * against the bytes left (elem bytes at least per element). */
static int array_of(reader *r, uint32_t t, uint32_t want, uint64_t elem, uint64_t *n) {
    uint32_t et;
    int rc;
    if (t != T_ARRAY) return bad(r, EMDPO_ERR_PARSE, "must be an array");
    if ((rc = u32(r, &et)) || (rc = u64(r, n))) return rc;
    if (et != want) return bad(r, EMDPO_ERR_PARSE, "has the wrong element type");
    if (*n > (r->size - r->pos) / elem) return bad(r, EMDPO_ERR_PARSE, "an array runs past the end of the file");
    return EMDPO_OK;
}

/* An array of strings into *a (min_n .. 2^30 of them). */
static int read_strs(reader *r, uint32_t t, strs *a, uint64_t min_n, const char *what) {
    if (a->off) return bad(r, EMDPO_ERR_PARSE, "appears twice");
    uint64_t n;
    int rc = array_of(r, t, T_STRING, 8, &n);
    if (rc) return rc;
    if (n < min_n || n > INT32_MAX / 2) return bad(r, EMDPO_ERR_UNSUPPORTED, what);
    if (!(a->off = emdpo_malloc((n + 1) * sizeof *a->off))) return bad(r, EMDPO_ERR_NOMEM, "out of memory");
    a->n = n;
    uint64_t o = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len;
        a->off[i] = o;
        if ((rc = str_len(r, &len))) return rc;
        if (len > EMDPO_TOK_MAX_PIECE) return bad(r, EMDPO_ERR_LIMIT, "a string is longer than 65536 bytes");
        if (emdpo_grow((void **)&a->bytes, &a->bytes_cap, (size_t)(o + len) + 1, 1))
            return bad(r, EMDPO_ERR_NOMEM, "out of memory");
        if ((rc = take(r, a->bytes + o, len))) return rc;
        o += len;
    }
    a->off[n] = o;
    return EMDPO_OK;
}

static int read_tokens(reader *r, uint32_t t, vocab *v) {
    strs a = {v->n, v->bytes, v->bytes_cap, v->off};
    int rc = read_strs(r, t, &a, 259, "needs 259 .. 2^30 tokens");
    v->n = a.n;
    v->bytes = a.bytes;
    v->bytes_cap = a.bytes_cap;
    v->off = a.off;
    return rc;
}

/* A string key, truncated to fit dst. */
static int read_string(reader *r, uint32_t t, char *dst, size_t cap) {
    if (t != T_STRING) return bad(r, EMDPO_ERR_PARSE, "must be a string");
    uint64_t n;
    int rc = str_len(r, &n);
    if (rc) return rc;
    size_t keep = n < cap - 1 ? (size_t)n : cap - 1;
    if ((rc = take(r, dst, keep)) || (rc = skip(r, n - keep))) return rc;
    dst[keep] = '\0';
    return EMDPO_OK;
}

static int read_bool(reader *r, uint32_t t, int *out) {
    unsigned char b;
    if (t != T_BOOL) return bad(r, EMDPO_ERR_PARSE, "must be a bool");
    int rc = take(r, &b, 1);
    if (!rc) *out = b != 0;
    return rc;
}

static int read_floats(reader *r, uint32_t t, vocab *v) {
    if (v->score) return bad(r, EMDPO_ERR_PARSE, "appears twice");
    int rc = array_of(r, t, T_F32, 4, &v->n_score);
    if (rc) return rc;
    if (!(v->score = emdpo_malloc((v->n_score ? v->n_score : 1) * sizeof *v->score))) {
        v->n_score = 0;
        return bad(r, EMDPO_ERR_NOMEM, "out of memory");
    }
    return take(r, v->score, v->n_score * 4);
}

static int read_types(reader *r, uint32_t t, vocab *v) {
    if (v->type) return bad(r, EMDPO_ERR_PARSE, "appears twice");
    int rc = array_of(r, t, T_I32, 4, &v->n_type);
    if (rc) return rc;
    if (!(v->type = emdpo_malloc((v->n_type ? v->n_type : 1) * sizeof *v->type))) {
        v->n_type = 0;
        return bad(r, EMDPO_ERR_NOMEM, "out of memory");
    }
    return take(r, v->type, v->n_type * 4);
}

/* An integer key (any integer type) into *out. */
static int read_int(reader *r, uint32_t t, int64_t *out) {
    if (t >= N_TYPES || !type_size[t] || t == T_F32 || t == T_F64 || t == T_BOOL)
        return bad(r, EMDPO_ERR_PARSE, "must be an integer");
    unsigned char b[8] = {0};
    int rc = take(r, b, (uint64_t)type_size[t]);
    if (rc) return rc;
    int64_t v;
    switch (t) {
    case T_U8: v = b[0]; break;
    case T_I8: v = (int8_t)b[0]; break;
    case T_U16: { uint16_t x; memcpy(&x, b, 2); v = x; break; }
    case T_I16: { int16_t x; memcpy(&x, b, 2); v = x; break; }
    case T_U32: { uint32_t x; memcpy(&x, b, 4); v = x; break; }
    case T_I32: { int32_t x; memcpy(&x, b, 4); v = x; break; }
    case T_U64: { uint64_t x; memcpy(&x, b, 8); v = x > INT64_MAX ? -2 : (int64_t)x; break; }
    default: memcpy(&v, b, 8); break;
    }
    *out = v;
    return EMDPO_OK;
}

static int read_metadata(reader *r, vocab *v) {
    char magic[4];
    uint32_t version;
    uint64_t n_tensors, n_kv;
    int rc;
    if ((rc = take(r, magic, 4)) || (rc = u32(r, &version))) return rc;
    if (memcmp(magic, "GGUF", 4)) return bad(r, EMDPO_ERR_PARSE, "not a GGUF file");
    if (version != 2 && version != 3) return bad(r, EMDPO_ERR_UNSUPPORTED, "only GGUF versions 2 and 3 are read");
    if ((rc = u64(r, &n_tensors)) || (rc = u64(r, &n_kv))) return rc;
    if (n_kv > (r->size - r->pos) / 12) return bad(r, EMDPO_ERR_PARSE, "more keys than the file can hold");
    char key[256];
    for (uint64_t k = 0; k < n_kv; k++) {
        uint64_t len;
        uint32_t t;
        r->key = NULL;
        if ((rc = str_len(r, &len))) return rc;
        if (len >= sizeof key) {
            if ((rc = skip(r, len)) || (rc = u32(r, &t)) || (rc = skip_value(r, t, 0))) return rc;
            continue;
        }
        if ((rc = take(r, key, len))) return rc;
        key[len] = '\0';
        r->key = key;
        if ((rc = u32(r, &t))) return rc;
        if (strcmp(key, "tokenizer.ggml.model") == 0) {
            rc = read_string(r, t, v->model, sizeof v->model);
            v->have_model = 1;
        } else if (strcmp(key, "tokenizer.ggml.pre") == 0) {
            rc = read_string(r, t, v->pre, sizeof v->pre);
        } else if (strcmp(key, "tokenizer.ggml.merges") == 0) {
            rc = read_strs(r, t, &v->merges, 0, "holds more than 2^30 merges");
        } else if (strcmp(key, "tokenizer.ggml.padding_token_id") == 0) {
            rc = read_int(r, t, &v->pad);
        } else if (strcmp(key, "tokenizer.ggml.add_bos_token") == 0) {
            rc = read_bool(r, t, &v->add_bos);
        } else if (strcmp(key, "tokenizer.ggml.add_eos_token") == 0) {
            rc = read_bool(r, t, &v->add_eos);
        } else if (strcmp(key, "tokenizer.ggml.tokens") == 0) {
            rc = read_tokens(r, t, v);
        } else if (strcmp(key, "tokenizer.ggml.scores") == 0) {
            rc = read_floats(r, t, v);
        } else if (strcmp(key, "tokenizer.ggml.token_type") == 0) {
            rc = read_types(r, t, v);
        } else if (strcmp(key, "tokenizer.ggml.bos_token_id") == 0) {
            rc = read_int(r, t, &v->bos);
        } else if (strcmp(key, "tokenizer.ggml.eos_token_id") == 0) {
            rc = read_int(r, t, &v->eos);
        } else if (strcmp(key, "tokenizer.ggml.unknown_token_id") == 0) {
            rc = read_int(r, t, &v->unk);
        } else if (strcmp(key, "tokenizer.ggml.add_space_prefix") == 0) {
            rc = read_bool(r, t, &v->space_prefix);
        } else {
            rc = skip_value(r, t, 0);
        }
        if (rc) return rc;
    }
    r->key = NULL;
    return EMDPO_OK;
}

static const char space_mark[] = "\xE2\x96\x81"; /* U+2581, SentencePiece's space */

/* Checks the vocabulary against what tokenizer.h can hold. */
static int check_vocab(reader *r, const vocab *v) {
    r->key = NULL;
    if (!v->have_model) return bad(r, EMDPO_ERR_UNSUPPORTED, "no tokenizer.ggml.model: the file holds no tokenizer");
    if (strcmp(v->model, "llama") != 0)
        return emdpo_diag_fail(r->diag, EMDPO_ERR_UNSUPPORTED,
                               "key tokenizer.ggml.model is \"%s\": only \"llama\" (SentencePiece BPE) and "
                               "\"gpt2\" (byte-level BPE) vocabularies are read",
                               v->model);
    if (!v->off) return emdpo_diag_fail(r->diag, EMDPO_ERR_PARSE, "no key tokenizer.ggml.tokens");
    if (v->score && v->n_score != v->n)
        return emdpo_diag_fail(r->diag, EMDPO_ERR_PARSE, "key tokenizer.ggml.scores has %llu entries, the tokens %llu",
                               (unsigned long long)v->n_score, (unsigned long long)v->n);
    if (v->type && v->n_type != v->n)
        return emdpo_diag_fail(r->diag, EMDPO_ERR_PARSE,
                               "key tokenizer.ggml.token_type has %llu entries, the tokens %llu",
                               (unsigned long long)v->n_type, (unsigned long long)v->n);
    if ((v->unk >= 0 && v->unk != 0) || (v->bos >= 0 && v->bos != 1) || (v->eos >= 0 && v->eos != 2))
        return emdpo_diag_fail(r->diag, EMDPO_ERR_UNSUPPORTED,
                               "unknown, BOS and EOS are ids %lld, %lld, %lld; emdpo's tokenizer needs 0, 1, 2",
                               (long long)v->unk, (long long)v->bos, (long long)v->eos);
    if (v->space_prefix == 0)
        return emdpo_diag_fail(r->diag, EMDPO_ERR_UNSUPPORTED,
                               "key tokenizer.ggml.add_space_prefix is false; emdpo's tokenizer always adds "
                               "the prefix");
    for (uint64_t i = 3; i < 259; i++) {
        char want[8];
        snprintf(want, sizeof want, "<0x%02X>", (unsigned)(i - 3));
        if (v->off[i + 1] - v->off[i] != 6 || memcmp(v->bytes + v->off[i], want, 6) ||
            (v->type && v->type[i] != TT_BYTE))
            return emdpo_diag_fail(r->diag, EMDPO_ERR_UNSUPPORTED,
                                   "token %llu should be the byte piece %s, as emdpo's tokenizer needs ids "
                                   "3..258 to be",
                                   (unsigned long long)i, want);
    }
    for (uint64_t i = 259; v->type && i < v->n; i++)
        if (v->type[i] == TT_USER || v->type[i] == TT_BYTE)
            return emdpo_diag_fail(r->diag, EMDPO_ERR_UNSUPPORTED,
                                   "token %llu is %s; such tokens above id 258 are not read yet",
                                   (unsigned long long)i, v->type[i] == TT_USER ? "user-defined" : "a byte piece");
    for (uint64_t i = 0; v->score && i < v->n; i++)
        if (!isfinite(v->score[i]))
            return emdpo_diag_fail(r->diag, EMDPO_ERR_PARSE, "key tokenizer.ggml.scores: entry %llu is not finite",
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

int emdpo_gguf_is_file(const char *path) {
    FILE *fp = path ? fopen(path, "rb") : NULL;
    char m[4];
    int yes = fp && fread(m, 1, 4, fp) == 4 && memcmp(m, "GGUF", 4) == 0;
    if (fp) fclose(fp);
    return yes;
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
static int build_gpt2(reader *r, const vocab *v, emdpo_tokenizer **out) {
    emdpo_diag *diag = r->diag;
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
    emdpo_diag_reset(diag, path);
    FILE *fp = fopen(path, "rb");
    if (!fp) return emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot open the file");
    reader r = {fp, 0, 0, diag, NULL};
    int rc = EMDPO_OK;
    if (fseeko(fp, 0, SEEK_END) || (r.size = (uint64_t)ftello(fp), fseeko(fp, 0, SEEK_SET)))
        rc = emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot find the file's size");
    vocab v;
    memset(&v, 0, sizeof v);
    v.bos = v.eos = v.unk = v.pad = -1;
    v.space_prefix = v.add_bos = v.add_eos = -1;
    if (!rc) rc = read_metadata(&r, &v);
    r.key = NULL;
    if (!rc && v.have_model && strcmp(v.model, "gpt2") == 0) {
        rc = build_gpt2(&r, &v, out);
    } else if (!rc && !(rc = check_vocab(&r, &v))) {
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
    fclose(fp);
    return rc;
}
