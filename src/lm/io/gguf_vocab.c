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

typedef struct vocab {
    char model[16];       /* tokenizer.ggml.model, truncated */
    int have_model;
    uint64_t n;           /* tokens */
    char *bytes;          /* the tokens' bytes, back to back */
    size_t bytes_cap;
    uint64_t *off;        /* (n + 1) */
    float *score;         /* (n) or NULL */
    uint64_t n_score;
    int32_t *type;        /* (n) or NULL */
    uint64_t n_type;
    int64_t bos, eos, unk; /* -1: absent */
    int space_prefix;     /* -1: absent */
} vocab;

static void vocab_free(vocab *v) {
    emdpo_free(v->bytes, v->bytes_cap);
    emdpo_free(v->off, (v->n + 1) * sizeof *v->off);
    emdpo_free(v->score, v->n_score * sizeof *v->score);
    emdpo_free(v->type, v->n_type * sizeof *v->type);
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

static int read_tokens(reader *r, uint32_t t, vocab *v) {
    if (v->off) return bad(r, EMDPO_ERR_PARSE, "appears twice");
    uint64_t n;
    int rc = array_of(r, t, T_STRING, 8, &n);
    if (rc) return rc;
    if (n < 259 || n > INT32_MAX / 2) return bad(r, EMDPO_ERR_UNSUPPORTED, "needs 259 .. 2^30 tokens");
    v->n = n;
    if (!(v->off = emdpo_malloc((n + 1) * sizeof *v->off))) return bad(r, EMDPO_ERR_NOMEM, "out of memory");
    uint64_t o = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len;
        v->off[i] = o;
        if ((rc = str_len(r, &len))) return rc;
        if (len > EMDPO_TOK_MAX_PIECE) return bad(r, EMDPO_ERR_LIMIT, "a token is longer than 65536 bytes");
        if (emdpo_grow((void **)&v->bytes, &v->bytes_cap, (size_t)(o + len) + 1, 1))
            return bad(r, EMDPO_ERR_NOMEM, "out of memory");
        if ((rc = take(r, v->bytes + o, len))) return rc;
        o += len;
    }
    v->off[n] = o;
    return EMDPO_OK;
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
            if (t != T_STRING) return bad(r, EMDPO_ERR_PARSE, "must be a string");
            uint64_t n;
            if ((rc = str_len(r, &n))) return rc;
            size_t keep = n < sizeof v->model - 1 ? (size_t)n : sizeof v->model - 1;
            if ((rc = take(r, v->model, keep)) || (rc = skip(r, n - keep))) return rc;
            v->model[keep] = '\0';
            v->have_model = 1;
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
            unsigned char b;
            if (t != T_BOOL) return bad(r, EMDPO_ERR_PARSE, "must be a bool");
            if (!(rc = take(r, &b, 1))) v->space_prefix = b != 0;
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
                               "key tokenizer.ggml.model is \"%s\": only \"llama\" (SentencePiece BPE) "
                               "vocabularies are read",
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

int emdpo_gguf_vocab_image(const char *path, char **image, size_t *len, int *n_vocab, emdpo_diag *diag) {
    *image = NULL;
    *len = 0;
    emdpo_diag_reset(diag, path);
    FILE *fp = fopen(path, "rb");
    if (!fp) return emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot open the file");
    reader r = {fp, 0, 0, diag, NULL};
    int rc = EMDPO_OK;
    if (fseeko(fp, 0, SEEK_END) || (r.size = (uint64_t)ftello(fp), fseeko(fp, 0, SEEK_SET)))
        rc = emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot find the file's size");
    vocab v;
    memset(&v, 0, sizeof v);
    v.bos = v.eos = v.unk = -1;
    v.space_prefix = -1;
    if (!rc) rc = read_metadata(&r, &v);
    if (!rc) rc = check_vocab(&r, &v);
    if (!rc && (rc = make_image(&v, image, len))) emdpo_diag_fail(diag, rc, "out of memory");
    if (!rc) *n_vocab = (int)v.n;
    vocab_free(&v);
    fclose(fp);
    return rc;
}
