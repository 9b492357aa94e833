/* GGUF files; see gguf.h. GGUF has no C library in Debian, and a reader
 * that maps the file needs little code: every length is checked against
 * the bytes the image has left before it is used. */
#include "lm/io/gguf.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/half.h"

static const int vtype_size[EMDPO_GGUF_N_VTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

struct emdpo_gguf {
    const unsigned char *img;
    uint64_t size;
    void *map; /* the mapping when opened from a file */
    char *name;
    uint32_t version;
    emdpo_gguf_kv *kv;
    size_t n_kv, kv_cap;
    emdpo_gguf_tensor *t;
    size_t n_t, t_cap;
    char *strs; /* keys and tensor names, NUL-terminated, back to back */
    size_t strs_len, strs_cap;
    uint64_t alignment, data_off;
};

/* ---- ggml tensor types -------------------------------------------------- */

/* Block length (elements) and block size (bytes) of the types whose layout
 * ggml-common.h fixes; a type missing here cannot be laid out, so a file
 * holding one is refused. */
static const struct ggml_type {
    uint32_t id;
    const char *name;
    uint32_t blck, size;
} ggml_types[] = {
    {0, "F32", 1, 4},      {1, "F16", 1, 2},      {2, "Q4_0", 32, 18},   {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},   {7, "Q5_1", 32, 24},   {8, "Q8_0", 32, 34},   {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84}, {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292}, {24, "I8", 1, 1},    {25, "I16", 1, 2},
    {26, "I32", 1, 4},     {27, "I64", 1, 8},     {28, "F64", 1, 8},     {30, "BF16", 1, 2},
};

static const struct ggml_type *find_type(uint32_t id) {
    for (size_t i = 0; i < sizeof ggml_types / sizeof ggml_types[0]; i++)
        if (ggml_types[i].id == id) return &ggml_types[i];
    return NULL;
}

const char *emdpo_ggml_type_name(uint32_t type) {
    const struct ggml_type *t = find_type(type);
    return t ? t->name : NULL;
}

/* ---- reading ------------------------------------------------------------- */

typedef struct cur {
    const unsigned char *img;
    uint64_t pos, size;
    emdpo_diag *diag;
    const char *what; /* "key" or "tensor" */
    const char *name; /* the key or tensor being read, for messages */
} cur;

static int bad_at(cur *c, uint64_t at, int rc, const char *msg) {
    if (c->name) return emdpo_diag_fail(c->diag, rc, "%s %.80s (byte offset %llu): %s", c->what, c->name,
                                        (unsigned long long)at, msg);
    return emdpo_diag_fail(c->diag, rc, "byte offset %llu: %s", (unsigned long long)at, msg);
}

static int bad(cur *c, int rc, const char *msg) { return bad_at(c, c->pos, rc, msg); }

static uint64_t left(const cur *c) { return c->size - c->pos; }

static int take(cur *c, void *dst, uint64_t n) {
    if (n > left(c)) return bad(c, EMDPO_ERR_PARSE, "truncated: the file ends here");
    memcpy(dst, c->img + c->pos, (size_t)n);
    c->pos += n;
    return EMDPO_OK;
}

static int skip(cur *c, uint64_t n) {
    if (n > left(c)) return bad(c, EMDPO_ERR_PARSE, "truncated: the file ends here");
    c->pos += n;
    return EMDPO_OK;
}

/* The fuzzing and deployment hosts are little-endian, as GGUF is. */
static int u32(cur *c, uint32_t *v) { return take(c, v, 4); }
static int u64(cur *c, uint64_t *v) { return take(c, v, 8); }

/* A string: its length checked against the bytes left, its bytes skipped. */
static int str(cur *c, const unsigned char **s, uint64_t *n) {
    int rc = u64(c, n);
    if (!rc && *n > left(c)) return bad(c, EMDPO_ERR_PARSE, "a string runs past the end of the file");
    if (!rc) {
        *s = c->img + c->pos;
        c->pos += *n;
    }
    return rc;
}

/* Copies s into the name arena; its offset there in *off. */
static int keep_name(emdpo_gguf *g, const unsigned char *s, uint64_t n, size_t *off) {
    if (emdpo_grow((void **)&g->strs, &g->strs_cap, g->strs_len + (size_t)n + 1, 1)) return EMDPO_ERR_NOMEM;
    memcpy(g->strs + g->strs_len, s, (size_t)n);
    g->strs[g->strs_len + n] = '\0';
    *off = g->strs_len;
    g->strs_len += (size_t)n + 1;
    return EMDPO_OK;
}

/* One value of type t at the cursor into kv. */
static int read_value(cur *c, uint32_t t, emdpo_gguf_kv *kv) {
    if (t >= EMDPO_GGUF_N_VTYPES) return bad(c, EMDPO_ERR_PARSE, "unknown value type");
    kv->type = t;
    if (vtype_size[t]) {
        kv->val = c->img + c->pos;
        return skip(c, (uint64_t)vtype_size[t]);
    }
    const unsigned char *s;
    if (t == EMDPO_GGUF_STRING) {
        int rc = str(c, &s, &kv->n);
        kv->val = s;
        return rc;
    }
    uint32_t et = 0;
    int rc;
    if ((rc = u32(c, &et)) || (rc = u64(c, &kv->n))) return rc;
    if (et == EMDPO_GGUF_ARRAY) return bad(c, EMDPO_ERR_PARSE, "arrays of arrays are not GGUF metadata emdpo reads");
    if (et >= EMDPO_GGUF_N_VTYPES) return bad(c, EMDPO_ERR_PARSE, "unknown array element type");
    kv->elem = et;
    kv->val = c->img + c->pos;
    if (vtype_size[et]) {
        if (kv->n > left(c) / (uint64_t)vtype_size[et])
            return bad(c, EMDPO_ERR_PARSE, "an array runs past the end of the file");
        return skip(c, kv->n * (uint64_t)vtype_size[et]);
    }
    if (kv->n > left(c) / 8) return bad(c, EMDPO_ERR_PARSE, "an array runs past the end of the file");
    uint64_t len;
    for (uint64_t i = 0; i < kv->n; i++)
        if ((rc = str(c, &s, &len))) return rc;
    return EMDPO_OK;
}

typedef struct named {
    const char *name;
    uint64_t at;
} named;

static int by_name(const void *a, const void *b) {
    return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

/* EMDPO_ERR_PARSE naming a repeated name, if any. */
static int check_unique(cur *c, named *list, size_t n, const char *what) {
    if (n > 1) qsort(list, n, sizeof *list, by_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(list[i - 1].name, list[i].name) == 0) {
            c->what = what;
            c->name = list[i].name;
            uint64_t at = list[i].at > list[i - 1].at ? list[i].at : list[i - 1].at;
            return bad_at(c, at, EMDPO_ERR_PARSE, "appears twice");
        }
    return EMDPO_OK;
}

static int parse(emdpo_gguf *g, emdpo_diag *diag) {
    cur c = {g->img, 0, g->size, diag, "key", NULL};
    uint64_t n_t = 0, n_kv = 0;
    int rc;
    if (g->size < 4 || memcmp(g->img, "GGUF", 4)) return bad(&c, EMDPO_ERR_PARSE, "not a GGUF file (no GGUF magic)");
    c.pos = 4;
    if ((rc = u32(&c, &g->version))) return rc;
    if (g->version != 2 && g->version != 3)
        return bad(&c, EMDPO_ERR_UNSUPPORTED, "only GGUF versions 2 and 3 are read");
    if ((rc = u64(&c, &n_t)) || (rc = u64(&c, &n_kv))) return rc;
    /* A key takes 13 bytes at least, a tensor info 33. */
    if (n_kv > left(&c) / 13) return bad(&c, EMDPO_ERR_PARSE, "more keys than the file can hold");
    if (n_t > left(&c) / 33) return bad(&c, EMDPO_ERR_PARSE, "more tensors than the file can hold");
    size_t *key_off = NULL, *name_off = NULL;
    named *list = NULL;
    size_t n_list = (size_t)(n_kv > n_t ? n_kv : n_t);
    g->kv_cap = (size_t)n_kv + 1;
    g->t_cap = (size_t)n_t + 1;
    g->kv = emdpo_calloc(g->kv_cap, sizeof *g->kv);
    g->t = emdpo_calloc(g->t_cap, sizeof *g->t);
    key_off = emdpo_malloc(((size_t)n_kv + 1) * sizeof *key_off);
    name_off = emdpo_malloc(((size_t)n_t + 1) * sizeof *name_off);
    list = emdpo_malloc((n_list + 1) * sizeof *list);
    if (!g->kv || !g->t || !key_off || !name_off || !list) {
        rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        goto done;
    }
    g->alignment = 32;
    for (uint64_t k = 0; k < n_kv; k++) {
        emdpo_gguf_kv *kv = &g->kv[k];
        const unsigned char *s;
        uint64_t len;
        uint32_t t = 0;
        c.name = NULL;
        kv->at = c.pos;
        if ((rc = str(&c, &s, &len))) goto done;
        if (len == 0) {
            rc = bad_at(&c, kv->at, EMDPO_ERR_PARSE, "an empty key");
            goto done;
        }
        if ((rc = keep_name(g, s, len, &key_off[k]))) {
            rc = emdpo_diag_fail(diag, rc, "out of memory");
            goto done;
        }
        c.name = g->strs + key_off[k];
        if ((rc = u32(&c, &t)) || (rc = read_value(&c, t, kv))) goto done;
        kv->end = c.pos;
        g->n_kv++;
        if (strcmp(c.name, "general.alignment") == 0) {
            uint32_t a;
            if (t != EMDPO_GGUF_U32) {
                rc = bad_at(&c, kv->at, EMDPO_ERR_PARSE, "must be a u32");
                goto done;
            }
            memcpy(&a, kv->val, 4);
            if (a == 0 || (a & (a - 1)) || a > (1u << 20)) {
                rc = bad_at(&c, kv->at, EMDPO_ERR_PARSE, "must be a power of two up to 2^20");
                goto done;
            }
            g->alignment = a;
        }
    }
    c.what = "tensor";
    for (uint64_t i = 0; i < n_t; i++) {
        emdpo_gguf_tensor *t = &g->t[i];
        const unsigned char *s;
        uint64_t len;
        c.name = NULL;
        t->at = c.pos;
        if ((rc = str(&c, &s, &len))) goto done;
        if (len == 0 || len > 255) {
            rc = bad_at(&c, t->at, EMDPO_ERR_PARSE, "a tensor name must have 1 to 255 bytes");
            goto done;
        }
        if ((rc = keep_name(g, s, len, &name_off[i]))) {
            rc = emdpo_diag_fail(diag, rc, "out of memory");
            goto done;
        }
        c.name = g->strs + name_off[i];
        if ((rc = u32(&c, &t->n_dims))) goto done;
        if (t->n_dims < 1 || t->n_dims > EMDPO_GGUF_MAX_DIMS) {
            rc = bad(&c, EMDPO_ERR_PARSE, "must have 1 to 4 dimensions");
            goto done;
        }
        t->numel = 1;
        for (uint32_t d = 0; d < EMDPO_GGUF_MAX_DIMS; d++) {
            t->ne[d] = 1;
            if (d < t->n_dims && (rc = u64(&c, &t->ne[d]))) goto done;
            /* ggml counts elements in int64_t. */
            if (t->ne[d] > (uint64_t)INT64_MAX || (t->ne[d] && t->numel > (uint64_t)INT64_MAX / t->ne[d])) {
                rc = bad(&c, EMDPO_ERR_PARSE, "its dimensions multiply past 2^63 elements");
                goto done;
            }
            t->numel *= t->ne[d];
        }
        if ((rc = u32(&c, &t->type)) || (rc = u64(&c, &t->offset))) goto done;
        g->n_t++;
    }
    c.name = NULL;
    g->data_off = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    /* Names are resolved once the arena stops moving. */
    for (size_t k = 0; k < g->n_kv; k++) {
        g->kv[k].key = g->strs + key_off[k];
        list[k] = (named){g->kv[k].key, g->kv[k].at};
    }
    if ((rc = check_unique(&c, list, g->n_kv, "key"))) goto done;
    for (size_t i = 0; i < g->n_t; i++) {
        g->t[i].name = g->strs + name_off[i];
        list[i] = (named){g->t[i].name, g->t[i].at};
    }
    rc = check_unique(&c, list, g->n_t, "tensor");
done:
    emdpo_free(key_off, ((size_t)n_kv + 1) * sizeof *key_off);
    emdpo_free(name_off, ((size_t)n_t + 1) * sizeof *name_off);
    emdpo_free(list, (n_list + 1) * sizeof *list);
    if (rc) { /* pointers into a partly read arena must not outlive it */
        for (size_t k = 0; k < g->n_kv; k++) g->kv[k].key = NULL;
        for (size_t i = 0; i < g->n_t; i++) g->t[i].name = NULL;
    }
    return rc;
}

int emdpo_gguf_is_file(const char *path) {
    FILE *fp = path ? fopen(path, "rb") : NULL;
    char m[4];
    int yes = fp && fread(m, 1, 4, fp) == 4 && memcmp(m, "GGUF", 4) == 0;
    if (fp) fclose(fp);
    return yes;
}

static int new_handle(const char *name, emdpo_gguf **out) {
    emdpo_gguf *g = emdpo_calloc(1, sizeof *g);
    if (!g) return EMDPO_ERR_NOMEM;
    if (name && !(g->name = emdpo_strdup(name))) {
        emdpo_free(g, sizeof *g);
        return EMDPO_ERR_NOMEM;
    }
    *out = g;
    return EMDPO_OK;
}

int emdpo_gguf_open_mem(const void *buf, size_t len, const char *name, emdpo_gguf **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_diag_reset(diag, name);
    emdpo_gguf *g;
    if (new_handle(name, &g)) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    g->img = buf;
    g->size = len;
    int rc = parse(g, diag);
    if (rc) {
        emdpo_gguf_close(g);
        return rc;
    }
    *out = g;
    return EMDPO_OK;
}

int emdpo_gguf_open(const char *path, emdpo_gguf **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_diag_reset(diag, path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot open the file");
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return emdpo_diag_fail(diag, EMDPO_ERR_IO, "not a regular file");
    }
    if (st.st_size < 24) {
        close(fd);
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%lld bytes: too short for a GGUF header",
                               (long long)st.st_size);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot map the file");
    emdpo_gguf *g;
    if (new_handle(path, &g)) {
        munmap(map, (size_t)st.st_size);
        return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    g->map = map;
    g->img = map;
    g->size = (uint64_t)st.st_size;
    int rc = parse(g, diag);
    if (rc) {
        emdpo_gguf_close(g);
        return rc;
    }
    *out = g;
    return EMDPO_OK;
}

void emdpo_gguf_close(emdpo_gguf *g) {
    if (!g) return;
    if (g->map) munmap(g->map, (size_t)g->size);
    emdpo_free(g->kv, g->kv ? g->kv_cap * sizeof *g->kv : 0);
    emdpo_free(g->t, g->t ? g->t_cap * sizeof *g->t : 0);
    emdpo_strfree(g->name);
    emdpo_free(g->strs, g->strs_cap);
    emdpo_free(g, sizeof *g);
}

const char *emdpo_gguf_name(const emdpo_gguf *g) { return g->name; }
uint32_t emdpo_gguf_version(const emdpo_gguf *g) { return g->version; }
const unsigned char *emdpo_gguf_image(const emdpo_gguf *g) { return g->img; }
size_t emdpo_gguf_n_kv(const emdpo_gguf *g) { return g->n_kv; }
const emdpo_gguf_kv *emdpo_gguf_kv_at(const emdpo_gguf *g, size_t i) { return i < g->n_kv ? &g->kv[i] : NULL; }
size_t emdpo_gguf_n_tensors(const emdpo_gguf *g) { return g->n_t; }
const emdpo_gguf_tensor *emdpo_gguf_tensor_at(const emdpo_gguf *g, size_t i) { return i < g->n_t ? &g->t[i] : NULL; }

const emdpo_gguf_kv *emdpo_gguf_find(const emdpo_gguf *g, const char *key) {
    for (size_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const emdpo_gguf_tensor *emdpo_gguf_find_tensor(const emdpo_gguf *g, const char *name) {
    for (size_t i = 0; i < g->n_t; i++)
        if (strcmp(g->t[i].name, name) == 0) return &g->t[i];
    return NULL;
}

int emdpo_gguf_kv_fail(const emdpo_gguf_kv *kv, emdpo_diag *diag, int rc, const char *what) {
    return emdpo_diag_fail(diag, rc, "key %.80s (byte offset %llu): %s", kv->key, (unsigned long long)kv->at, what);
}

int emdpo_gguf_int(const emdpo_gguf_kv *kv, int64_t *v, emdpo_diag *diag) {
    const unsigned char *b = kv->val;
    switch (kv->type) {
    case EMDPO_GGUF_U8: *v = b[0]; break;
    case EMDPO_GGUF_I8: *v = (int8_t)b[0]; break;
    case EMDPO_GGUF_U16: { uint16_t x; memcpy(&x, b, 2); *v = x; break; }
    case EMDPO_GGUF_I16: { int16_t x; memcpy(&x, b, 2); *v = x; break; }
    case EMDPO_GGUF_U32: { uint32_t x; memcpy(&x, b, 4); *v = x; break; }
    case EMDPO_GGUF_I32: { int32_t x; memcpy(&x, b, 4); *v = x; break; }
    case EMDPO_GGUF_U64: {
        uint64_t x;
        memcpy(&x, b, 8);
        if (x > (uint64_t)INT64_MAX) return emdpo_gguf_kv_fail(kv, diag, EMDPO_ERR_PARSE, "is above 2^63");
        *v = (int64_t)x;
        break;
    }
    case EMDPO_GGUF_I64: memcpy(v, b, 8); break;
    default: return emdpo_gguf_kv_fail(kv, diag, EMDPO_ERR_PARSE, "must be an integer");
    }
    return EMDPO_OK;
}

int emdpo_gguf_float(const emdpo_gguf_kv *kv, double *v, emdpo_diag *diag) {
    if (kv->type == EMDPO_GGUF_F32) {
        float f;
        memcpy(&f, kv->val, 4);
        *v = f;
    } else if (kv->type == EMDPO_GGUF_F64) {
        memcpy(v, kv->val, 8);
    } else {
        return emdpo_gguf_kv_fail(kv, diag, EMDPO_ERR_PARSE, "must be a float");
    }
    return EMDPO_OK;
}

int emdpo_gguf_bool(const emdpo_gguf_kv *kv, int *v, emdpo_diag *diag) {
    if (kv->type != EMDPO_GGUF_BOOL) return emdpo_gguf_kv_fail(kv, diag, EMDPO_ERR_PARSE, "must be a bool");
    *v = kv->val[0] != 0;
    return EMDPO_OK;
}

int emdpo_gguf_str(const emdpo_gguf_kv *kv, const char **s, size_t *len, emdpo_diag *diag) {
    if (kv->type != EMDPO_GGUF_STRING) return emdpo_gguf_kv_fail(kv, diag, EMDPO_ERR_PARSE, "must be a string");
    *s = (const char *)kv->val;
    *len = (size_t)kv->n;
    return EMDPO_OK;
}

int emdpo_gguf_array(const emdpo_gguf_kv *kv, uint32_t elem, uint64_t *n, emdpo_diag *diag) {
    if (kv->type != EMDPO_GGUF_ARRAY) return emdpo_gguf_kv_fail(kv, diag, EMDPO_ERR_PARSE, "must be an array");
    if (kv->elem != elem) return emdpo_gguf_kv_fail(kv, diag, EMDPO_ERR_PARSE, "has the wrong element type");
    *n = kv->n;
    return EMDPO_OK;
}

const char *emdpo_gguf_next_str(const unsigned char **cursor, uint64_t *len) {
    memcpy(len, *cursor, 8);
    const char *s = (const char *)*cursor + 8;
    *cursor += 8 + *len;
    return s;
}

/* ---- tensors -------------------------------------------------------------- */

static int tensor_fail(const emdpo_gguf_tensor *t, emdpo_diag *diag, int rc, const char *what) {
    return emdpo_diag_fail(diag, rc, "tensor %.80s (byte offset %llu): %s", t->name, (unsigned long long)t->at, what);
}

static int by_offset(const void *a, const void *b) {
    const emdpo_gguf_tensor *x = *(const emdpo_gguf_tensor *const *)a, *y = *(const emdpo_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int emdpo_gguf_check_tensors(emdpo_gguf *g, emdpo_diag *diag) {
    uint64_t data = g->data_off <= g->size ? g->size - g->data_off : 0;
    for (size_t i = 0; i < g->n_t; i++) {
        emdpo_gguf_tensor *t = &g->t[i];
        const struct ggml_type *ty = find_type(t->type);
        char msg[96];
        if (!ty) {
            snprintf(msg, sizeof msg, "ggml type %u is not one emdpo knows the layout of", (unsigned)t->type);
            return tensor_fail(t, diag, EMDPO_ERR_UNSUPPORTED, msg);
        }
        if (t->ne[0] % ty->blck) {
            snprintf(msg, sizeof msg, "ne[0] = %llu is not a whole number of %s blocks of %u",
                     (unsigned long long)t->ne[0], ty->name, (unsigned)ty->blck);
            return tensor_fail(t, diag, EMDPO_ERR_PARSE, msg);
        }
        /* A row's bytes overflow for ne[0] near 2^62 (F32: 4 bytes an
         * element), which would make a huge tensor look small. */
        uint64_t blocks = t->ne[0] / ty->blck;
        if (blocks > UINT64_MAX / ty->size) return tensor_fail(t, diag, EMDPO_ERR_PARSE, "its size overflows");
        uint64_t rows = t->ne[0] ? t->numel / t->ne[0] : 0, row = blocks * ty->size;
        if (row && rows > UINT64_MAX / row) return tensor_fail(t, diag, EMDPO_ERR_PARSE, "its size overflows");
        t->nbytes = rows * row;
        if (t->offset % g->alignment) {
            snprintf(msg, sizeof msg, "offset %llu is not a multiple of the alignment %llu",
                     (unsigned long long)t->offset, (unsigned long long)g->alignment);
            return tensor_fail(t, diag, EMDPO_ERR_PARSE, msg);
        }
        if (t->offset > data || t->nbytes > data - t->offset) {
            snprintf(msg, sizeof msg, "its %llu bytes at offset %llu run past the end of the file",
                     (unsigned long long)t->nbytes, (unsigned long long)t->offset);
            return tensor_fail(t, diag, EMDPO_ERR_PARSE, msg);
        }
    }
    const emdpo_gguf_tensor **order = emdpo_malloc((g->n_t + 1) * sizeof *order);
    if (!order) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->n_t; i++) order[i] = &g->t[i];
    if (g->n_t > 1) qsort(order, g->n_t, sizeof *order, by_offset);
    int rc = EMDPO_OK;
    for (size_t i = 1; i < g->n_t && !rc; i++)
        if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset && order[i]->nbytes &&
            order[i - 1]->nbytes) {
            char msg[160];
            snprintf(msg, sizeof msg, "its bytes at offset %llu overlap those of tensor %.60s",
                     (unsigned long long)order[i]->offset, order[i - 1]->name);
            rc = tensor_fail(order[i], diag, EMDPO_ERR_PARSE, msg);
        }
    emdpo_free((void *)order, (g->n_t + 1) * sizeof *order);
    return rc;
}

static float le_f32(const unsigned char *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Q8_0: blocks of 32, an F16 scale then 32 int8. */
static void deq_q8_0(const unsigned char *b, float *y, uint64_t nb) {
    for (uint64_t i = 0; i < nb; i++, b += 34, y += 32) {
        float d = emdpo_half_to_float(le16(b));
        for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
    }
}

/* Q4_0: blocks of 32, an F16 scale then 16 bytes whose low nibbles are
 * elements 0..15 and high nibbles 16..31, each offset by 8. */
static void deq_q4_0(const unsigned char *b, float *y, uint64_t nb) {
    for (uint64_t i = 0; i < nb; i++, b += 18, y += 32) {
        float d = emdpo_half_to_float(le16(b));
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((b[2 + j] & 0x0F) - 8) * d;
            y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
        }
    }
}

/* Q4_K: super-blocks of 256: F16 scale d and min dmin, 12 bytes packing
 * eight 6-bit scales and mins, 128 bytes of nibbles. Each 64 elements are
 * two sub-blocks of 32: the low nibbles of 32 bytes, then their high
 * nibbles. */
static void scale_min_k4(int j, const unsigned char *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void deq_q4_k(const unsigned char *b, float *y, uint64_t nb) {
    for (uint64_t i = 0; i < nb; i++, b += 144) {
        float d = emdpo_half_to_float(le16(b)), dmin = emdpo_half_to_float(le16(b + 2));
        const unsigned char *scales = b + 4, *q = b + 16;
        for (int j = 0; j < 8; j += 2, q += 32) {
            int sc, m;
            scale_min_k4(j, scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            scale_min_k4(j + 1, scales, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0x0F) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* Blocks of up to CHUNK_BYTES of the file are converted at a time, and the
 * file's pages dropped after each, so that a load holds the float32
 * parameters and one chunk of the mapped file, not a whole large tensor
 * (an embedding can be a tenth of the model). */
enum { CHUNK_BYTES = 1 << 20 };

/* Converts n elements of type at p (whole blocks) into dst. */
static void convert(uint32_t type, const unsigned char *p, float *dst, uint64_t n) {
    switch (type) {
    case EMDPO_GGML_F32:
        for (uint64_t i = 0; i < n; i++) dst[i] = le_f32(p + 4 * i);
        break;
    case EMDPO_GGML_F16:
        for (uint64_t i = 0; i < n; i++) dst[i] = emdpo_half_to_float(le16(p + 2 * i));
        break;
    case EMDPO_GGML_BF16:
        for (uint64_t i = 0; i < n; i++) dst[i] = emdpo_bf16_to_float(le16(p + 2 * i));
        break;
    case EMDPO_GGML_Q8_0: deq_q8_0(p, dst, n / 32); break;
    case EMDPO_GGML_Q4_0: deq_q4_0(p, dst, n / 32); break;
    default: deq_q4_k(p, dst, n / 256); break;
    }
}

/* Elements and bytes of one block of a type emdpo reads; 0 for others. */
static void block_of(uint32_t type, uint64_t *elems, uint64_t *bytes) {
    switch (type) {
    case EMDPO_GGML_F32: *elems = 1, *bytes = 4; break;
    case EMDPO_GGML_F16:
    case EMDPO_GGML_BF16: *elems = 1, *bytes = 2; break;
    case EMDPO_GGML_Q8_0: *elems = 32, *bytes = 34; break;
    case EMDPO_GGML_Q4_0: *elems = 32, *bytes = 18; break;
    case EMDPO_GGML_Q4_K: *elems = 256, *bytes = 144; break;
    default: *elems = *bytes = 0;
    }
}

/* Tensor t into dst: widened to float32 (dst16 NULL), or into dst16 as
 * stored (t is F16 or BF16). */
static int read_tensor(const emdpo_gguf *g, const emdpo_gguf_tensor *t, float *dst, uint16_t *dst16, emdpo_diag *diag) {
    const unsigned char *p = g->img + g->data_off + t->offset;
    uint64_t be, bb;
    block_of(t->type, &be, &bb);
    if (!be) {
        char msg[96];
        snprintf(msg, sizeof msg, "its type %s is not read by emdpo (F32, F16, BF16, Q8_0, Q4_0 and Q4_K are)",
                 emdpo_ggml_type_name(t->type));
        return tensor_fail(t, diag, EMDPO_ERR_UNSUPPORTED, msg);
    }
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t ps = page > 0 ? (uintptr_t)page : 4096;
    uint64_t step = (CHUNK_BYTES / bb) * be; /* elements per chunk, whole blocks */
    for (uint64_t i = 0; i < t->numel; i += step) {
        uint64_t n = t->numel - i < step ? t->numel - i : step;
        const unsigned char *q = p + i / be * bb;
        if (dst16)
            for (uint64_t j = 0; j < n; j++) dst16[i + j] = le16(q + 2 * j);
        else
            convert(t->type, q, dst + i, n);
        if (g->map) {
            /* The pages are the file's: dropping them loses nothing. */
            uintptr_t a = ((uintptr_t)q + ps - 1) / ps * ps, e = ((uintptr_t)q + (uintptr_t)(n / be * bb)) / ps * ps;
            if (e > a) madvise((void *)a, (size_t)(e - a), MADV_DONTNEED);
        }
    }
    return EMDPO_OK;
}

int emdpo_gguf_read_f32(const emdpo_gguf *g, const emdpo_gguf_tensor *t, float *dst, emdpo_diag *diag) {
    return read_tensor(g, t, dst, NULL, diag);
}

int emdpo_gguf_read16(const emdpo_gguf *g, const emdpo_gguf_tensor *t, uint16_t *dst, emdpo_diag *diag) {
    if (t->type != EMDPO_GGML_F16 && t->type != EMDPO_GGML_BF16)
        return tensor_fail(t, diag, EMDPO_ERR_INVALID_ARG, "it is not a 16-bit float tensor");
    return read_tensor(g, t, NULL, dst, diag);
}

/* ---- writing -------------------------------------------------------------- */

#define WRITE_ALIGN 32

typedef struct wtensor {
    char *name;
    uint32_t n_dims, type;
    uint64_t ne[EMDPO_GGUF_MAX_DIMS];
    uint64_t numel, nbytes, offset;
    const float *data;
} wtensor;

struct emdpo_gguf_writer {
    unsigned char *kv; /* the serialised metadata */
    size_t kv_len, kv_cap;
    char **keys;
    size_t n_keys, keys_cap;
    wtensor *t;
    size_t n_t, t_cap;
    uint64_t data_len;
};

int emdpo_gguf_writer_create(emdpo_gguf_writer **out) {
    *out = emdpo_calloc(1, sizeof **out);
    return *out ? EMDPO_OK : EMDPO_ERR_NOMEM;
}

void emdpo_gguf_writer_free(emdpo_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_keys; i++) emdpo_strfree(w->keys[i]);
    for (size_t i = 0; i < w->n_t; i++) emdpo_strfree(w->t[i].name);
    emdpo_free(w->kv, w->kv_cap);
    emdpo_free(w->keys, w->keys_cap * sizeof *w->keys);
    emdpo_free(w->t, w->t_cap * sizeof *w->t);
    emdpo_free(w, sizeof *w);
}

static int put(emdpo_gguf_writer *w, const void *p, size_t n) {
    if (emdpo_grow((void **)&w->kv, &w->kv_cap, w->kv_len + n, 1)) return EMDPO_ERR_NOMEM;
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return EMDPO_OK;
}

static int put_string(emdpo_gguf_writer *w, const char *s, size_t n) {
    uint64_t len = n;
    int rc = put(w, &len, 8);
    return rc ? rc : put(w, s, n);
}

/* Records key (refusing a repeat) and writes it with its value type. */
static int put_key(emdpo_gguf_writer *w, const char *key, uint32_t type) {
    for (size_t i = 0; i < w->n_keys; i++)
        if (strcmp(w->keys[i], key) == 0) return EMDPO_ERR_INVALID_ARG;
    char *copy = emdpo_strdup(key);
    if (!copy || emdpo_grow((void **)&w->keys, &w->keys_cap, w->n_keys + 1, sizeof *w->keys)) {
        emdpo_strfree(copy);
        return EMDPO_ERR_NOMEM;
    }
    w->keys[w->n_keys++] = copy;
    int rc = put_string(w, key, strlen(key));
    return rc ? rc : put(w, &type, 4);
}

int emdpo_gguf_put_u32(emdpo_gguf_writer *w, const char *key, uint32_t v) {
    int rc = put_key(w, key, EMDPO_GGUF_U32);
    return rc ? rc : put(w, &v, 4);
}

int emdpo_gguf_put_f32(emdpo_gguf_writer *w, const char *key, float v) {
    int rc = put_key(w, key, EMDPO_GGUF_F32);
    return rc ? rc : put(w, &v, 4);
}

int emdpo_gguf_put_bool(emdpo_gguf_writer *w, const char *key, int v) {
    unsigned char b = v != 0;
    int rc = put_key(w, key, EMDPO_GGUF_BOOL);
    return rc ? rc : put(w, &b, 1);
}

int emdpo_gguf_put_str(emdpo_gguf_writer *w, const char *key, const char *s) {
    int rc = put_key(w, key, EMDPO_GGUF_STRING);
    return rc ? rc : put_string(w, s, strlen(s));
}

static int put_array_head(emdpo_gguf_writer *w, const char *key, uint32_t elem, uint64_t n) {
    int rc = put_key(w, key, EMDPO_GGUF_ARRAY);
    if (!rc) rc = put(w, &elem, 4);
    return rc ? rc : put(w, &n, 8);
}

int emdpo_gguf_put_strs(emdpo_gguf_writer *w, const char *key, const char *const *s, const size_t *len, size_t n) {
    int rc = put_array_head(w, key, EMDPO_GGUF_STRING, n);
    for (size_t i = 0; i < n && !rc; i++) rc = put_string(w, s[i], len[i]);
    return rc;
}

int emdpo_gguf_put_f32s(emdpo_gguf_writer *w, const char *key, const float *v, size_t n) {
    int rc = put_array_head(w, key, EMDPO_GGUF_F32, n);
    return rc ? rc : put(w, v, n * 4);
}

int emdpo_gguf_put_i32s(emdpo_gguf_writer *w, const char *key, const int32_t *v, size_t n) {
    int rc = put_array_head(w, key, EMDPO_GGUF_I32, n);
    return rc ? rc : put(w, v, n * 4);
}

int emdpo_gguf_put_kv(emdpo_gguf_writer *w, const emdpo_gguf *g, const emdpo_gguf_kv *kv) {
    int rc = put_key(w, kv->key, kv->type);
    if (rc) return rc;
    /* The value follows the key's length, bytes and type. */
    uint64_t v = kv->at + 8 + strlen(kv->key) + 4;
    return put(w, g->img + v, (size_t)(kv->end - v));
}

int emdpo_gguf_add_tensor(emdpo_gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *ne,
                          uint32_t type, const float *data) {
    const struct ggml_type *ty = find_type(type);
    if (!ty || (type != EMDPO_GGML_F32 && type != EMDPO_GGML_F16 && type != EMDPO_GGML_BF16 &&
                type != EMDPO_GGML_Q8_0))
        return EMDPO_ERR_INVALID_ARG;
    if (n_dims < 1 || n_dims > EMDPO_GGUF_MAX_DIMS || ne[0] % ty->blck || strlen(name) > 63)
        return EMDPO_ERR_INVALID_ARG;
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return EMDPO_ERR_INVALID_ARG;
    if (emdpo_grow((void **)&w->t, &w->t_cap, w->n_t + 1, sizeof *w->t)) return EMDPO_ERR_NOMEM;
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = emdpo_strdup(name))) return EMDPO_ERR_NOMEM;
    t->n_dims = n_dims;
    t->type = type;
    t->numel = 1;
    for (uint32_t d = 0; d < EMDPO_GGUF_MAX_DIMS; d++) {
        t->ne[d] = d < n_dims ? ne[d] : 1;
        t->numel *= t->ne[d];
    }
    t->nbytes = t->numel / ty->blck * ty->size;
    t->offset = (w->data_len + WRITE_ALIGN - 1) / WRITE_ALIGN * WRITE_ALIGN;
    t->data = data;
    w->data_len = t->offset + t->nbytes;
    w->n_t++;
    return EMDPO_OK;
}

/* Q8_0 as ggml's reference quantizer makes it: scale max|x| / 127 (stored
 * as F16), values rounded to the nearest multiple of the unrounded scale. */
static void quant_q8_0(const float *x, unsigned char *b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t h = emdpo_float_to_half(d);
    memcpy(b, &h, 2);
    for (int j = 0; j < 32; j++) b[2 + j] = (unsigned char)(int8_t)roundf(x[j] * id);
}

static int zeros(FILE *fp, uint64_t n) {
    static const char z[WRITE_ALIGN];
    return n ? fwrite(z, 1, (size_t)n, fp) == n : 1;
}

/* Tensor t's bytes, converted in chunks of 4096 elements. */
static int write_data(FILE *fp, const wtensor *t) {
    if (t->type == EMDPO_GGML_F32) return fwrite(t->data, 4, (size_t)t->numel, fp) == t->numel;
    unsigned char buf[4096 / 32 * 34];
    uint16_t half[4096];
    for (uint64_t i = 0; i < t->numel; i += 4096) {
        size_t n = t->numel - i < 4096 ? (size_t)(t->numel - i) : 4096, bytes;
        const float *x = t->data + i;
        if (t->type == EMDPO_GGML_Q8_0) {
            for (size_t b = 0; b < n / 32; b++) quant_q8_0(x + 32 * b, buf + 34 * b);
            bytes = n / 32 * 34;
            if (fwrite(buf, 1, bytes, fp) != bytes) return 0;
            continue;
        }
        for (size_t j = 0; j < n; j++)
            half[j] = t->type == EMDPO_GGML_F16 ? emdpo_float_to_half(x[j]) : emdpo_float_to_bf16(x[j]);
        if (fwrite(half, 2, n, fp) != n) return 0;
    }
    return 1;
}

int emdpo_gguf_write(const emdpo_gguf_writer *w, const char *path, emdpo_diag *diag) {
    emdpo_afile af;
    int rc = emdpo_afile_open(&af, path, diag);
    if (rc) return rc;
    FILE *fp = af.fp;
    uint32_t version = 3;
    uint64_t n_t = w->n_t, n_kv = w->n_keys, pos = 24 + w->kv_len;
    int ok = fwrite("GGUF", 1, 4, fp) == 4 && fwrite(&version, 4, 1, fp) == 1 && fwrite(&n_t, 8, 1, fp) == 1 &&
             fwrite(&n_kv, 8, 1, fp) == 1 && fwrite(w->kv, 1, w->kv_len, fp) == w->kv_len;
    for (size_t i = 0; ok && i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t len = strlen(t->name);
        ok = fwrite(&len, 8, 1, fp) == 1 && fwrite(t->name, 1, (size_t)len, fp) == len &&
             fwrite(&t->n_dims, 4, 1, fp) == 1 && fwrite(t->ne, 8, t->n_dims, fp) == t->n_dims &&
             fwrite(&t->type, 4, 1, fp) == 1 && fwrite(&t->offset, 8, 1, fp) == 1;
        pos += 8 + len + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
    }
    uint64_t at = 0; /* within the data section */
    if (ok && w->n_t) ok = zeros(fp, (WRITE_ALIGN - pos % WRITE_ALIGN) % WRITE_ALIGN);
    for (size_t i = 0; ok && i < w->n_t; i++) {
        ok = zeros(fp, w->t[i].offset - at) && write_data(fp, &w->t[i]);
        at = w->t[i].offset + w->t[i].nbytes;
    }
    if (!ok) {
        emdpo_afile_abort(&af);
        return emdpo_diag_fail(diag, EMDPO_ERR_IO, "write error");
    }
    return emdpo_afile_commit(&af, diag);
}
