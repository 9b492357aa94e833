#include "lm/io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/half.h"
#include "base/json.h"
#include "base/utf8.h"

struct emdpo_safetensors {
    emdpo_json_doc *doc; /* owns the names and the metadata */
    emdpo_st_tensor *t;  /* (n) in header order */
    const emdpo_st_tensor **by_name;
    size_t n;
    const emdpo_json *meta; /* "__metadata__" object or NULL */
    int fd;                 /* -1 for an image in memory */
    const unsigned char *mem;
    uint64_t data_start, data_size;
    char file[256];
};

static const struct {
    const char *name;
    unsigned size;
} k_dtypes[] = {
    [EMDPO_ST_F64] = {"F64", 8},         [EMDPO_ST_F32] = {"F32", 4},
    [EMDPO_ST_F16] = {"F16", 2},         [EMDPO_ST_BF16] = {"BF16", 2},
    [EMDPO_ST_F8_E4M3] = {"F8_E4M3", 1}, [EMDPO_ST_F8_E5M2] = {"F8_E5M2", 1},
    [EMDPO_ST_I64] = {"I64", 8},         [EMDPO_ST_I32] = {"I32", 4},
    [EMDPO_ST_I16] = {"I16", 2},         [EMDPO_ST_I8] = {"I8", 1},
    [EMDPO_ST_U64] = {"U64", 8},         [EMDPO_ST_U32] = {"U32", 4},
    [EMDPO_ST_U16] = {"U16", 2},         [EMDPO_ST_U8] = {"U8", 1},
    [EMDPO_ST_BOOL] = {"BOOL", 1},
};
#define N_DTYPES (sizeof k_dtypes / sizeof *k_dtypes)

const char *emdpo_st_dtype_name(emdpo_st_dtype dt) {
    return (unsigned)dt < N_DTYPES ? k_dtypes[dt].name : "?";
}

/* Bytes of a tensor read and converted at a time. */
#define READ_CHUNK (1 << 20)

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

void emdpo_st_close(emdpo_safetensors *st) {
    if (!st) return;
    emdpo_json_doc_free(st->doc);
    emdpo_free(st->t, st->n * sizeof *st->t);
    emdpo_free(st->by_name, st->n * sizeof *st->by_name);
    if (st->fd >= 0) close(st->fd);
    emdpo_free(st, sizeof *st);
}

static int cmp_offset(const void *pa, const void *pb) {
    const emdpo_st_tensor *a = *(const emdpo_st_tensor *const *)pa, *b = *(const emdpo_st_tensor *const *)pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    return (a->end > b->end) - (a->end < b->end);
}

static int cmp_name(const void *pa, const void *pb) {
    const emdpo_st_tensor *a = *(const emdpo_st_tensor *const *)pa, *b = *(const emdpo_st_tensor *const *)pb;
    return strcmp(a->name, b->name);
}

/* A non-negative JSON integer, or -1. */
static int64_t json_uint(const emdpo_json *v) {
    return v->type == EMDPO_JSON_NUMBER && v->is_int && v->inum >= 0 ? v->inum : -1;
}

static int parse_tensor(const emdpo_safetensors *st, const emdpo_json_member *m, emdpo_st_tensor *t,
                        emdpo_diag *diag) {
    const char *name = m->key;
    if (strlen(name) != m->key_len)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor name \"%.60s...\" contains a NUL character", name);
    t->name = name;
    const emdpo_json *v = &m->value;
    if (v->type != EMDPO_JSON_OBJECT)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.80s\": entry is %s, not an object", name,
                    emdpo_json_type_name(v->type));
    const emdpo_json *dtype = NULL, *shape = NULL, *offs = NULL;
    for (size_t i = 0; i < v->len; i++) {
        const emdpo_json_member *f = &v->u.members[i];
        if (strcmp(f->key, "dtype") == 0)
            dtype = &f->value;
        else if (strcmp(f->key, "shape") == 0)
            shape = &f->value;
        else if (strcmp(f->key, "data_offsets") == 0)
            offs = &f->value;
        else
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.80s\": unknown key \"%.40s\"", name, f->key);
    }
    if (!dtype || !shape || !offs)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.80s\": \"%s\" is missing", name,
                    !dtype ? "dtype" : !shape ? "shape" : "data_offsets");

    if (dtype->type != EMDPO_JSON_STRING)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.80s\": dtype is %s, not a string", name,
                    emdpo_json_type_name(dtype->type));
    size_t dt = 0;
    while (dt < N_DTYPES && strcmp(dtype->u.str, k_dtypes[dt].name) != 0) dt++;
    if (dt == N_DTYPES || strlen(dtype->u.str) != dtype->len)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.80s\": unknown dtype \"%.20s\"", name, dtype->u.str);
    t->dtype = (emdpo_st_dtype)dt;

    if (shape->type != EMDPO_JSON_ARRAY)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.80s\": shape is %s, not an array", name,
                    emdpo_json_type_name(shape->type));
    if (shape->len > EMDPO_ST_MAX_RANK)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "tensor \"%.80s\": rank %zu exceeds the supported %d",
                    name, shape->len, EMDPO_ST_MAX_RANK);
    t->rank = (int)shape->len;
    int zero = 0;
    for (int i = 0; i < t->rank; i++) {
        int64_t d = json_uint(&shape->u.elems[i]);
        if (d < 0)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                        "tensor \"%.80s\": shape entry %d is not a non-negative integer", name, i);
        t->shape[i] = d;
        zero |= d == 0;
    }
    /* A zero dimension makes the tensor empty whatever the others say. */
    uint64_t numel = zero ? 0 : 1;
    for (int i = 0; i < t->rank && !zero; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (numel > UINT64_MAX / d)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.80s\": the element count of its shape overflows",
                        name);
        numel *= d;
    }
    unsigned size = k_dtypes[dt].size;
    if (numel > UINT64_MAX / size)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.80s\": its byte size overflows", name);
    t->numel = numel;

    if (offs->type != EMDPO_JSON_ARRAY || offs->len != 2)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.80s\": data_offsets is not a [begin, end] array",
                    name);
    int64_t b = json_uint(&offs->u.elems[0]), e = json_uint(&offs->u.elems[1]);
    if (b < 0 || e < 0)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                    "tensor \"%.80s\": data_offsets entries must be non-negative integers", name);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)e;
    if (t->begin > t->end || t->end > st->data_size)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                    "tensor \"%.80s\": data_offsets [%" PRIu64 ", %" PRIu64
                    "] lie outside the %" PRIu64 "-byte data buffer",
                    name, t->begin, t->end, st->data_size);
    if (t->end - t->begin != numel * size)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                    "tensor \"%.80s\": data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64
                    " bytes but its %s shape needs %" PRIu64,
                    name, t->begin, t->end, t->end - t->begin, k_dtypes[dt].name, numel * size);
    return EMDPO_OK;
}

static int parse_metadata(const emdpo_json *v, emdpo_diag *diag) {
    if (v->type != EMDPO_JSON_OBJECT)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"__metadata__\" is %s, not an object",
                    emdpo_json_type_name(v->type));
    for (size_t i = 0; i < v->len; i++)
        if (v->u.members[i].value.type != EMDPO_JSON_STRING)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"__metadata__\" entry \"%.80s\" is %s, not a string",
                        v->u.members[i].key, emdpo_json_type_name(v->u.members[i].value.type));
    return EMDPO_OK;
}

/* Parses and checks the header text (n bytes), given the file size. */
static int parse_header(emdpo_safetensors *st, const char *text, size_t n, uint64_t file_size,
                        emdpo_diag *diag) {
    st->data_start = 8 + (uint64_t)n;
    st->data_size = file_size - st->data_start;
    int rc = emdpo_json_doc_create(&st->doc);
    if (rc) return rc;
    const emdpo_json *root = NULL;
    emdpo_json_error err;
    rc = emdpo_json_parse(st->doc, text, n, &root, &err);
    if (rc == EMDPO_ERR_PARSE)
        return emdpo_diag_fail(diag, rc, "header is not valid JSON: %s at header byte %zu (file byte %zu)", err.msg,
                    err.offset, err.offset + 8);
    if (rc) return rc;
    if (root->type != EMDPO_JSON_OBJECT)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "header is a JSON %s, not an object",
                    emdpo_json_type_name(root->type));
    size_t n_tensors = root->len;
    for (size_t i = 0; i < root->len; i++)
        if (strcmp(root->u.members[i].key, "__metadata__") == 0) {
            if ((rc = parse_metadata(&root->u.members[i].value, diag))) return rc;
            st->meta = &root->u.members[i].value;
            n_tensors--;
        }
    if (n_tensors) {
        st->t = emdpo_calloc(n_tensors, sizeof *st->t);
        st->by_name = emdpo_calloc(n_tensors, sizeof *st->by_name);
        if (!st->t || !st->by_name) {
            emdpo_free(st->t, n_tensors * sizeof *st->t);
            emdpo_free(st->by_name, n_tensors * sizeof *st->by_name);
            st->t = NULL;
            st->by_name = NULL;
            return EMDPO_ERR_NOMEM;
        }
    }
    st->n = n_tensors;
    size_t k = 0;
    for (size_t i = 0; i < root->len; i++) {
        const emdpo_json_member *m = &root->u.members[i];
        if (&m->value == st->meta) continue;
        if ((rc = parse_tensor(st, m, &st->t[k], diag))) return rc;
        st->by_name[k] = &st->t[k];
        k++;
    }
    /* The tensors must tile the data buffer: sorted by offset, each begins
     * where the previous one ended and the last ends at the buffer's end. */
    if (n_tensors) qsort(st->by_name, n_tensors, sizeof *st->by_name, cmp_offset);
    uint64_t at = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < n_tensors; i++) {
        const emdpo_st_tensor *t = st->by_name[i];
        if (t->begin < at)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                        "tensors \"%.60s\" and \"%.60s\" overlap: data_offsets [%" PRIu64 ", %" PRIu64
                        "] begin before byte %" PRIu64,
                        prev, t->name, t->begin, t->end, at);
        if (t->begin > at)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                        "bytes %" PRIu64 "..%" PRIu64 " of the data buffer belong to no tensor", at,
                        t->begin);
        at = t->end;
        prev = t->name;
    }
    if (at != st->data_size)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                    "bytes %" PRIu64 "..%" PRIu64 " at the end of the data buffer belong to no tensor",
                    at, st->data_size);
    if (n_tensors) qsort(st->by_name, n_tensors, sizeof *st->by_name, cmp_name);
    return EMDPO_OK;
}

/* Checks the header length against the file, as the first step of both
 * openers. */
static int check_header_len(uint64_t n, uint64_t file_size, emdpo_diag *diag) {
    if (n > EMDPO_ST_MAX_HEADER)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "header length %" PRIu64 " exceeds the limit of %" PRIu64 " bytes",
                    n, EMDPO_ST_MAX_HEADER);
    if (n > file_size - 8)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                    "header length %" PRIu64 " runs past the end of the %" PRIu64 "-byte file", n,
                    file_size);
    return EMDPO_OK;
}

static int new_handle(const char *name, emdpo_safetensors **out) {
    emdpo_safetensors *st = emdpo_calloc(1, sizeof *st);
    if (!st) return EMDPO_ERR_NOMEM;
    st->fd = -1;
    snprintf(st->file, sizeof st->file, "%s", name ? name : "");
    *out = st;
    return EMDPO_OK;
}

int emdpo_st_open_mem(const void *buf, size_t len, const char *name, emdpo_safetensors **out,
                      emdpo_diag *diag) {
    *out = NULL;
    emdpo_diag_reset(diag, name);
    const unsigned char *p = buf;
    if (len < 8)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "file is %zu bytes, shorter than the 8-byte header length",
                    len);
    uint64_t n = le64(p);
    int rc = check_header_len(n, len, diag);
    if (rc) return rc;
    emdpo_safetensors *st;
    if ((rc = new_handle(name, &st))) return rc;
    st->mem = p;
    rc = parse_header(st, (const char *)p + 8, (size_t)n, len, diag);
    if (rc) {
        emdpo_st_close(st);
        return rc;
    }
    *out = st;
    return EMDPO_OK;
}

/* pread until n bytes arrive; 0, or -1 on error or end of file. */
static int read_at(int fd, void *buf, size_t n, uint64_t off) {
    unsigned char *p = buf;
    while (n) {
        ssize_t got = pread(fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        p += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return 0;
}

int emdpo_st_open(const char *path, emdpo_safetensors **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_diag_reset(diag, path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return emdpo_diag_fail(diag, EMDPO_ERR_IO, "not a regular file");
    }
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char head[8];
    if (size < 8) {
        close(fd);
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "file is %" PRIu64 " bytes, shorter than the 8-byte header length",
                    size);
    }
    if (read_at(fd, head, 8, 0)) {
        close(fd);
        return emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot read the header length");
    }
    uint64_t n = le64(head);
    int rc = check_header_len(n, size, diag);
    emdpo_safetensors *st = NULL;
    if (!rc) rc = new_handle(path, &st);
    if (rc) {
        close(fd);
        return rc;
    }
    st->fd = fd;
    /* The JSON parser needs a non-empty buffer even for an empty header. */
    size_t hlen = (size_t)n;
    char *text = emdpo_malloc(hlen + 1);
    if (!text) {
        emdpo_st_close(st);
        return EMDPO_ERR_NOMEM;
    }
    if (read_at(fd, text, hlen, 8))
        rc = emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot read the %zu-byte header", hlen);
    else
        rc = parse_header(st, text, hlen, size, diag);
    emdpo_free(text, hlen + 1);
    if (rc) {
        emdpo_st_close(st);
        return rc;
    }
    *out = st;
    return EMDPO_OK;
}

const char *emdpo_st_name(const emdpo_safetensors *st) { return st->file; }

size_t emdpo_st_count(const emdpo_safetensors *st) { return st->n; }

const emdpo_st_tensor *emdpo_st_tensor_at(const emdpo_safetensors *st, size_t i) {
    return i < st->n ? &st->t[i] : NULL;
}

const emdpo_st_tensor *emdpo_st_find(const emdpo_safetensors *st, const char *name) {
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->by_name[mid]->name, name);
        if (c == 0) return st->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *emdpo_st_metadata(const emdpo_safetensors *st, const char *key) {
    const emdpo_json *v = emdpo_json_get(st->meta, key);
    return v ? v->u.str : NULL;
}

/* Converts count little-endian elements of a floating-point dtype. */
static void convert(emdpo_st_dtype dt, const unsigned char *s, size_t count, float *dst) {
    switch (dt) {
    case EMDPO_ST_F32:
        for (size_t i = 0; i < count; i++, s += 4)
            dst[i] = emdpo_bits_f32((uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24);
        break;
    case EMDPO_ST_BF16:
        for (size_t i = 0; i < count; i++, s += 2) dst[i] = emdpo_bf16_to_float((uint16_t)(s[0] | s[1] << 8));
        break;
    case EMDPO_ST_F16:
        for (size_t i = 0; i < count; i++, s += 2) dst[i] = emdpo_half_to_float((uint16_t)(s[0] | s[1] << 8));
        break;
    default: /* F64: read_f32 admits no other dtype */
        for (size_t i = 0; i < count; i++, s += 8) {
            uint64_t u = le64(s);
            double d;
            memcpy(&d, &u, sizeof d);
            dst[i] = (float)d;
        }
        break;
    }
}

void emdpo_st_format_shape(char *buf, size_t size, int rank, const int64_t *shape) {
    size_t at = 0;
    at += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < rank && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (at < size) snprintf(buf + at, size - at, "]");
}

/* count elements of dtype dt at s into dst: widened to float32, or, when
 * as16, the raw 16-bit values (dt then is as16's dtype). */
static void deliver(emdpo_st_dtype dt, int as16, const unsigned char *s, size_t count, void *dst, size_t first) {
    if (!as16) {
        convert(dt, s, count, (float *)dst + first);
        return;
    }
    uint16_t *d = (uint16_t *)dst + first;
    for (size_t i = 0; i < count; i++, s += 2) d[i] = (uint16_t)(s[0] | s[1] << 8);
}

/* emdpo_st_read_f32, or emdpo_st_read16 when as16 (an emdpo_st_dtype). */
static int read_tensor(const emdpo_safetensors *st, const char *name, int rank, const int64_t *shape, int as16,
                       void *dst, emdpo_diag *diag) {
    emdpo_diag_reset(diag, st->file);
    const emdpo_st_tensor *t = emdpo_st_find(st, name);
    char want[128], got[128];
    emdpo_st_format_shape(want, sizeof want, rank, shape);
    if (!t) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.80s\" (shape %s) is missing", name, want);
    int same = t->rank == rank;
    for (int i = 0; same && i < rank; i++) same = t->shape[i] == shape[i];
    if (!same) {
        emdpo_st_format_shape(got, sizeof got, t->rank, t->shape);
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.80s\" has shape %s, expected %s", name, got, want);
    }
    if (t->dtype != EMDPO_ST_F32 && t->dtype != EMDPO_ST_F16 && t->dtype != EMDPO_ST_BF16 &&
        t->dtype != EMDPO_ST_F64)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "tensor \"%.80s\" has dtype %s, not a floating-point one",
                    name, k_dtypes[t->dtype].name);
    if (as16 && (int)t->dtype != as16)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "tensor \"%.80s\" has dtype %s, not %s", name,
                               k_dtypes[t->dtype].name, k_dtypes[as16].name);
    /* A chunk at a time through one buffer: reading holds no more than dst
     * and the chunk. (Threads over chunks were not faster: the load's time
     * is the kernel's, faulting in dst's fresh pages; docs/BENCHMARKS.md.) */
    unsigned size = k_dtypes[t->dtype].size;
    uint64_t per = READ_CHUNK / size;
    if (st->fd < 0) {
        deliver(t->dtype, as16, st->mem + st->data_start + t->begin, (size_t)t->numel, dst, 0);
        return EMDPO_OK;
    }
    unsigned char *buf = emdpo_malloc(READ_CHUNK);
    if (!buf) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    int rc = EMDPO_OK;
    for (uint64_t first = 0; first < t->numel && !rc; first += per) {
        size_t k = (size_t)(t->numel - first < per ? t->numel - first : per);
        if (read_at(st->fd, buf, k * size, st->data_start + t->begin + first * size))
            rc = emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot read tensor \"%.80s\" (the file may have shrunk)", name);
        else
            deliver(t->dtype, as16, buf, k, dst, (size_t)first);
    }
    emdpo_free(buf, READ_CHUNK);
    return rc;
}

int emdpo_st_read_f32(const emdpo_safetensors *st, const char *name, int rank, const int64_t *shape,
                      float *dst, emdpo_diag *diag) {
    return read_tensor(st, name, rank, shape, 0, dst, diag);
}

int emdpo_st_read16(const emdpo_safetensors *st, const char *name, int rank, const int64_t *shape,
                    emdpo_st_dtype dtype, uint16_t *dst, emdpo_diag *diag) {
    if (dtype != EMDPO_ST_F16 && dtype != EMDPO_ST_BF16) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "not a 16-bit dtype");
    return read_tensor(st, name, rank, shape, (int)dtype, dst, diag);
}

/* ---- writer ------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int nomem;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->nomem) return;
    if (emdpo_grow((void **)&b->p, &b->cap, b->len + n, 1)) {
        b->nomem = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(sbuf *b, uint64_t v) {
    char tmp[24];
    sb_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%" PRIu64, v));
}

/* A JSON string; s has been checked to be UTF-8. */
static void sb_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            char e[8];
            sb_put(b, e, (size_t)snprintf(e, sizeof e, "\\u%04x", c));
        } else {
            sb_put(b, s, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_out_name(const void *pa, const void *pb) {
    return strcmp(*(const char *const *)pa, *(const char *const *)pb);
}

/* Checks the tensors and computes their byte sizes into bytes[]. */
static int check_outputs(const emdpo_st_out *t, size_t n, unsigned size, uint64_t *bytes, emdpo_diag *diag) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = t[i].name;
        if (!name || !*name || emdpo_utf8_invalid_at(name, strlen(name)) < strlen(name) || strcmp(name, "__metadata__") == 0)
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "tensor %zu has an empty, non-UTF-8 or reserved name", i);
        if (t[i].rank < 0 || t[i].rank > EMDPO_ST_MAX_RANK)
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "tensor \"%.80s\": rank %d outside 0..%d", name,
                        t[i].rank, EMDPO_ST_MAX_RANK);
        uint64_t numel = 1;
        for (int d = 0; d < t[i].rank; d++) {
            int64_t s = t[i].shape[d];
            if (s < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "tensor \"%.80s\": negative dimension", name);
            if (s && numel > UINT64_MAX / size / (uint64_t)s)
                return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "tensor \"%.80s\": size overflows", name);
            numel *= (uint64_t)s;
        }
        if (numel && !t[i].data)
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "tensor \"%.80s\" has no data", name);
        bytes[i] = numel * size;
        if (total > UINT64_MAX - bytes[i])
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "total size overflows");
        total += bytes[i];
    }
    return EMDPO_OK;
}

/* Names (tensor names or metadata keys, stride apart) must be distinct. */
static int check_unique(const char *const *names, size_t n, const char *what, emdpo_diag *diag) {
    if (n < 2) return EMDPO_OK;
    const char **sorted = emdpo_malloc(n * sizeof *sorted);
    if (!sorted) return EMDPO_ERR_NOMEM;
    memcpy(sorted, names, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_out_name);
    int rc = EMDPO_OK;
    for (size_t i = 1; i < n && !rc; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            rc = emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "%s \"%.80s\" appears twice", what, sorted[i]);
    emdpo_free(sorted, n * sizeof *sorted);
    return rc;
}

static int build_header(const emdpo_st_out *t, size_t n, emdpo_st_dtype dtype, const uint64_t *bytes,
                        const char *const *meta, size_t n_meta, sbuf *b) {
    sb_put(b, "{", 1);
    if (n_meta) {
        sb_puts(b, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (i) sb_put(b, ",", 1);
            sb_str(b, meta[2 * i]);
            sb_put(b, ":", 1);
            sb_str(b, meta[2 * i + 1]);
        }
        sb_puts(b, "}");
    }
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (i || n_meta) sb_put(b, ",", 1);
        sb_str(b, t[i].name);
        sb_puts(b, ":{\"dtype\":\"");
        sb_puts(b, k_dtypes[dtype].name);
        sb_puts(b, "\",\"shape\":[");
        for (int d = 0; d < t[i].rank; d++) {
            if (d) sb_put(b, ",", 1);
            sb_u64(b, (uint64_t)t[i].shape[d]);
        }
        sb_puts(b, "],\"data_offsets\":[");
        sb_u64(b, at);
        sb_put(b, ",", 1);
        sb_u64(b, at + bytes[i]);
        sb_puts(b, "]}");
        at += bytes[i];
    }
    sb_put(b, "}", 1);
    /* Spaces after the JSON keep the data 8-byte aligned (8 + len). */
    while (!b->nomem && b->len % 8) sb_put(b, " ", 1);
    return b->nomem ? EMDPO_ERR_NOMEM : EMDPO_OK;
}

/* Writes count floats as little-endian dtype (F32, F16 or BF16) elements,
 * converting a buffer at a time. */
static void put_floats(const float *src, size_t count, emdpo_st_dtype dtype, FILE *fp) {
    unsigned char buf[16384];
    unsigned size = k_dtypes[dtype].size;
    for (size_t done = 0; done < count;) {
        size_t k = count - done < sizeof buf / size ? count - done : sizeof buf / size;
        for (size_t i = 0; i < k; i++) {
            uint32_t u = dtype == EMDPO_ST_F32    ? emdpo_f32_bits(src[done + i])
                         : dtype == EMDPO_ST_BF16 ? emdpo_float_to_bf16(src[done + i])
                                                  : emdpo_float_to_half(src[done + i]);
            for (unsigned b = 0; b < size; b++) buf[size * i + b] = (unsigned char)(u >> (8 * b));
        }
        fwrite(buf, size, k, fp);
        done += k;
    }
}

int emdpo_st_write(const char *path, const emdpo_st_out *t, size_t n, emdpo_st_dtype dtype, const char *const *meta,
                   size_t n_meta, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (dtype != EMDPO_ST_F32 && dtype != EMDPO_ST_F16 && dtype != EMDPO_ST_BF16)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "tensors are written as F32, F16 or BF16, not %s",
                               emdpo_st_dtype_name(dtype));
    for (size_t i = 0; i < 2 * n_meta; i++)
        if (!meta[i] || emdpo_utf8_invalid_at(meta[i], strlen(meta[i])) < strlen(meta[i]))
            return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "metadata entry %zu is missing or not UTF-8", i / 2);
    if (n > SIZE_MAX / sizeof(uint64_t) || n_meta > SIZE_MAX / sizeof(char *))
        return EMDPO_ERR_NOMEM;
    uint64_t *bytes = n ? emdpo_malloc(n * sizeof *bytes) : NULL;
    const char **names = n || n_meta ? emdpo_malloc((n > n_meta ? n : n_meta) * sizeof *names) : NULL;
    if ((n && !bytes) || ((n || n_meta) && !names)) {
        emdpo_free(bytes, n * sizeof *bytes);
        emdpo_free(names, (n > n_meta ? n : n_meta) * sizeof *names);
        return EMDPO_ERR_NOMEM;
    }
    int rc = check_outputs(t, n, k_dtypes[dtype].size, bytes, diag);
    for (size_t i = 0; !rc && i < n; i++) names[i] = t[i].name;
    if (!rc) rc = check_unique(names, n, "tensor name", diag);
    for (size_t i = 0; !rc && i < n_meta; i++) names[i] = meta[2 * i];
    if (!rc) rc = check_unique(names, n_meta, "metadata key", diag);
    emdpo_free(names, (n > n_meta ? n : n_meta) * sizeof *names);
    sbuf h = {0};
    if (!rc) rc = build_header(t, n, dtype, bytes, meta, n_meta, &h);
    emdpo_afile af;
    if (!rc) rc = emdpo_afile_open(&af, path, diag);
    if (!rc) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
        fwrite(len8, 1, 8, af.fp);
        fwrite(h.p, 1, h.len, af.fp);
        for (size_t i = 0; i < n && !ferror(af.fp); i++)
            put_floats(t[i].data, (size_t)(bytes[i] / k_dtypes[dtype].size), dtype, af.fp);
        rc = emdpo_afile_commit(&af, diag);
    }
    emdpo_free(h.p, h.cap);
    emdpo_free(bytes, n * sizeof *bytes);
    return rc;
}
