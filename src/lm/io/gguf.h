/* GGUF files (llama.cpp's format, versions 2 and 3): the one reader of
 * their header, key/value metadata and tensor table, which the vocabulary
 * reader (gguf_vocab.c) and the model reader (gguf_model.c) share, and a
 * writer.
 *
 * Layout, little-endian: "GGUF", u32 version, u64 tensor count, u64 key
 * count; the keys (u64-length string, u32 value type, value; an array is
 * u32 element type, u64 count, elements); the tensor infos (name, u32
 * n_dims, n_dims u64 sizes ne[0] innermost, u32 ggml type, u64 offset into
 * the data section); padding to general.alignment (32 when absent); the
 * data section.
 *
 * The reader maps the file read-only and treats it as hostile: every
 * count and length is checked against the bytes left before anything is
 * allocated, so a file costs at most a few times its header in memory;
 * keys and tensor names repeated, value types unknown, arrays of arrays and
 * a bad alignment are refused. emdpo_gguf_check_tensors adds the checks a
 * reader of tensor data needs (known types, sizes that fit, offsets aligned,
 * inside the file and not overlapping). Failures are EMDPO_ERR_PARSE (or
 * EMDPO_ERR_UNSUPPORTED for a version or tensor type emdpo does not read)
 * with diag naming the byte offset and the key or tensor. A file that
 * shrinks while mapped ends the process (SIGBUS), as with llama.cpp. */
#ifndef EMDPO_GGUF_H
#define EMDPO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "emdpo.h"

/* Metadata value types. */
enum {
    EMDPO_GGUF_U8, EMDPO_GGUF_I8, EMDPO_GGUF_U16, EMDPO_GGUF_I16, EMDPO_GGUF_U32, EMDPO_GGUF_I32,
    EMDPO_GGUF_F32, EMDPO_GGUF_BOOL, EMDPO_GGUF_STRING, EMDPO_GGUF_ARRAY, EMDPO_GGUF_U64, EMDPO_GGUF_I64,
    EMDPO_GGUF_F64, EMDPO_GGUF_N_VTYPES
};

/* The ggml tensor types emdpo reads or writes (ggml.h's numbering). */
enum {
    EMDPO_GGML_F32 = 0, EMDPO_GGML_F16 = 1, EMDPO_GGML_Q4_0 = 2, EMDPO_GGML_Q8_0 = 8, EMDPO_GGML_Q4_K = 12,
    EMDPO_GGML_BF16 = 30
};

#define EMDPO_GGUF_MAX_DIMS 4

typedef struct emdpo_gguf_kv {
    const char *key;          /* NUL-terminated */
    uint32_t type;            /* EMDPO_GGUF_* */
    uint32_t elem;            /* arrays: the element type */
    uint64_t n;               /* strings: the byte length; arrays: the element count */
    const unsigned char *val; /* a scalar's bytes, a string's bytes, or an array's first element */
    uint64_t at, end;         /* the entry's byte range in the file, key included */
} emdpo_gguf_kv;

typedef struct emdpo_gguf_tensor {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[EMDPO_GGUF_MAX_DIMS]; /* ne[0] innermost; 1 past n_dims */
    uint64_t numel;
    uint32_t type;   /* ggml type */
    uint64_t offset; /* into the data section */
    uint64_t nbytes; /* set by emdpo_gguf_check_tensors */
    uint64_t at;     /* the info entry's byte offset */
} emdpo_gguf_tensor;

typedef struct emdpo_gguf emdpo_gguf;

/* 1 when the file at path starts with GGUF's magic, else 0. */
int emdpo_gguf_is_file(const char *path);

/* Maps path and reads its header, metadata and tensor infos. EMDPO_ERR_IO,
 * EMDPO_ERR_PARSE, EMDPO_ERR_UNSUPPORTED (a version other than 2 and 3),
 * EMDPO_ERR_NOMEM. */
int emdpo_gguf_open(const char *path, emdpo_gguf **out, emdpo_diag *diag);
/* The same over an image in memory, which must outlive the handle; name
 * goes into diag->file. */
int emdpo_gguf_open_mem(const void *buf, size_t len, const char *name, emdpo_gguf **out, emdpo_diag *diag);
void emdpo_gguf_close(emdpo_gguf *g);

const char *emdpo_gguf_name(const emdpo_gguf *g);
uint32_t emdpo_gguf_version(const emdpo_gguf *g);
/* The file image: the entries' at/end ranges index it. */
const unsigned char *emdpo_gguf_image(const emdpo_gguf *g);

size_t emdpo_gguf_n_kv(const emdpo_gguf *g);
const emdpo_gguf_kv *emdpo_gguf_kv_at(const emdpo_gguf *g, size_t i);
/* The entry of key, or NULL. */
const emdpo_gguf_kv *emdpo_gguf_find(const emdpo_gguf *g, const char *key);

/* Typed values. Each returns EMDPO_ERR_PARSE, diag naming the key and its
 * offset, when kv's type does not fit. */
/* Any integer type. */
int emdpo_gguf_int(const emdpo_gguf_kv *kv, int64_t *v, emdpo_diag *diag);
/* F32 or F64. */
int emdpo_gguf_float(const emdpo_gguf_kv *kv, double *v, emdpo_diag *diag);
int emdpo_gguf_bool(const emdpo_gguf_kv *kv, int *v, emdpo_diag *diag);
/* A string (not NUL-terminated; *len bytes). */
int emdpo_gguf_str(const emdpo_gguf_kv *kv, const char **s, size_t *len, emdpo_diag *diag);
/* An array of elem (checked), its count in *n. */
int emdpo_gguf_array(const emdpo_gguf_kv *kv, uint32_t elem, uint64_t *n, emdpo_diag *diag);
/* Walks an array of strings: *cursor starts at kv->val; each call returns
 * the next string and its length and advances the cursor. Only for arrays
 * emdpo_gguf_array accepted, at most kv->n times. */
const char *emdpo_gguf_next_str(const unsigned char **cursor, uint64_t *len);
/* A failure naming kv's key and offset. */
int emdpo_gguf_kv_fail(const emdpo_gguf_kv *kv, emdpo_diag *diag, int rc, const char *what);

size_t emdpo_gguf_n_tensors(const emdpo_gguf *g);
const emdpo_gguf_tensor *emdpo_gguf_tensor_at(const emdpo_gguf *g, size_t i);
const emdpo_gguf_tensor *emdpo_gguf_find_tensor(const emdpo_gguf *g, const char *name);

/* ggml's name of a tensor type ("Q4_K"), or NULL when unknown. */
const char *emdpo_ggml_type_name(uint32_t type);

/* Checks every tensor for reading: its type known, ne[0] a whole number
 * of blocks, its size computable, its offset aligned and its bytes inside
 * the data section, overlapping no other tensor. Sets each nbytes. */
int emdpo_gguf_check_tensors(emdpo_gguf *g, emdpo_diag *diag);

/* Tensor t (checked) as numel floats in dst, dequantised from F32, F16,
 * BF16, Q8_0, Q4_0 or Q4_K; EMDPO_ERR_UNSUPPORTED naming the tensor and
 * type for others. Afterwards the mapped pages of t are released, so a
 * model read tensor by tensor holds no more than one tensor's bytes of the
 * file in memory. */
int emdpo_gguf_read_f32(const emdpo_gguf *g, const emdpo_gguf_tensor *t, float *dst, emdpo_diag *diag);
/* The same for an F16 or BF16 tensor, its values as stored into dst
 * (EMDPO_ERR_INVALID_ARG for another type). */
int emdpo_gguf_read16(const emdpo_gguf *g, const emdpo_gguf_tensor *t, uint16_t *dst, emdpo_diag *diag);

/* ---- writing ------------------------------------------------------------ */

typedef struct emdpo_gguf_writer emdpo_gguf_writer;

int emdpo_gguf_writer_create(emdpo_gguf_writer **out);
void emdpo_gguf_writer_free(emdpo_gguf_writer *w);

/* Metadata, written in the order added. Each returns EMDPO_ERR_NOMEM or
 * EMDPO_ERR_INVALID_ARG (a key added twice). */
int emdpo_gguf_put_u32(emdpo_gguf_writer *w, const char *key, uint32_t v);
int emdpo_gguf_put_f32(emdpo_gguf_writer *w, const char *key, float v);
int emdpo_gguf_put_bool(emdpo_gguf_writer *w, const char *key, int v);
int emdpo_gguf_put_str(emdpo_gguf_writer *w, const char *key, const char *s);
/* Arrays: n strings (each len[i] bytes), floats, int32s. */
int emdpo_gguf_put_strs(emdpo_gguf_writer *w, const char *key, const char *const *s, const size_t *len, size_t n);
int emdpo_gguf_put_f32s(emdpo_gguf_writer *w, const char *key, const float *v, size_t n);
int emdpo_gguf_put_i32s(emdpo_gguf_writer *w, const char *key, const int32_t *v, size_t n);
/* A read entry, copied as it is. */
int emdpo_gguf_put_kv(emdpo_gguf_writer *w, const emdpo_gguf *g, const emdpo_gguf_kv *kv);

/* A tensor of ne[0..n_dims) floats (ne[0] innermost) stored as type
 * (F32, F16, BF16 or Q8_0, which needs ne[0] a multiple of 32). data must
 * live until the write. EMDPO_ERR_INVALID_ARG for a repeated name or a
 * bad shape or type. */
int emdpo_gguf_add_tensor(emdpo_gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *ne,
                          uint32_t type, const float *data);

/* Writes the file atomically (version 3, alignment 32). EMDPO_ERR_IO,
 * EMDPO_ERR_NOMEM. */
int emdpo_gguf_write(const emdpo_gguf_writer *w, const char *path, emdpo_diag *diag);

#endif
