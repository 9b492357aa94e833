/* safetensors files (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length N, N bytes of JSON header
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, optional
 * "__metadata__": {str: str}}, then the data buffer the offsets index.
 *
 * The reader treats files as hostile and checks the header completely when
 * opening: N <= EMDPO_ST_MAX_HEADER and within the file, the header a JSON
 * object with no other keys than those, every dtype known, every shape a
 * list of non-negative integers whose element count times the dtype size
 * equals end - begin (with overflow checks), and the tensors tiling the data
 * buffer exactly: no overlaps, no gaps, nothing after the last tensor. Any
 * violation is EMDPO_ERR_PARSE with diag naming the tensor and the offsets.
 * After that, reads cannot leave the file. Tensor data is read on demand
 * (pread, a chunk at a time, converted straight into the caller's float32
 * buffer), so opening a large checkpoint costs only its header and reading
 * it holds no more than the float32 tensors and one 1 MiB chunk.
 *
 * The writer writes float tensors as F32, F16 or BF16 (rounded to nearest
 * even: base/half.h), pads the header with spaces to a multiple of 8 bytes
 * (so the data is aligned), and replaces the target file atomically.
 *
 * Checkpoints split over several files are st_source.h's. */
#ifndef EMDPO_SAFETENSORS_H
#define EMDPO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "emdpo.h"

#define EMDPO_ST_MAX_HEADER ((uint64_t)100 << 20)
#define EMDPO_ST_MAX_RANK 8

/* Every dtype of the format, so any valid file can be checked; reading
 * converts the floating-point ones to float32. */
typedef enum emdpo_st_dtype {
    EMDPO_ST_F64,
    EMDPO_ST_F32,
    EMDPO_ST_F16,
    EMDPO_ST_BF16,
    EMDPO_ST_F8_E4M3,
    EMDPO_ST_F8_E5M2,
    EMDPO_ST_I64,
    EMDPO_ST_I32,
    EMDPO_ST_I16,
    EMDPO_ST_I8,
    EMDPO_ST_U64,
    EMDPO_ST_U32,
    EMDPO_ST_U16,
    EMDPO_ST_U8,
    EMDPO_ST_BOOL
} emdpo_st_dtype;

/* The format's name for a dtype, e.g. "BF16". */
const char *emdpo_st_dtype_name(emdpo_st_dtype dt);

typedef struct emdpo_st_tensor {
    const char *name;
    emdpo_st_dtype dtype;
    int rank;
    int64_t shape[EMDPO_ST_MAX_RANK];
    uint64_t numel;
    uint64_t begin, end; /* byte offsets into the data buffer */
} emdpo_st_tensor;

typedef struct emdpo_safetensors emdpo_safetensors;

/* Opens and validates a file. EMDPO_ERR_IO when it cannot be read,
 * EMDPO_ERR_PARSE when malformed, EMDPO_ERR_UNSUPPORTED for tensors of
 * rank above EMDPO_ST_MAX_RANK. */
int emdpo_st_open(const char *path, emdpo_safetensors **out, emdpo_diag *diag);

/* The same over a file image in memory, which must outlive the handle;
 * name goes into diag->file. */
int emdpo_st_open_mem(const void *buf, size_t len, const char *name, emdpo_safetensors **out,
                      emdpo_diag *diag);

void emdpo_st_close(emdpo_safetensors *st);

/* The path or name the handle was opened with. */
const char *emdpo_st_name(const emdpo_safetensors *st);

/* Tensors in header order. */
size_t emdpo_st_count(const emdpo_safetensors *st);
const emdpo_st_tensor *emdpo_st_tensor_at(const emdpo_safetensors *st, size_t i);

/* The tensor of that name, or NULL. */
const emdpo_st_tensor *emdpo_st_find(const emdpo_safetensors *st, const char *name);

/* A "__metadata__" value, or NULL. */
const char *emdpo_st_metadata(const emdpo_safetensors *st, const char *key);

/* Reads tensor name as float32 into dst, which holds its element count,
 * after checking that its shape is shape[0..rank). F32, F16 and BF16
 * convert exactly; F64 rounds. EMDPO_ERR_PARSE (diag
 * names the tensor and the expected and found shapes) when it is missing
 * or shaped otherwise, EMDPO_ERR_UNSUPPORTED when its dtype is not a
 * floating-point one, EMDPO_ERR_IO when the file cannot be read (e.g. it
 * shrank since opening). Safe to call from several threads at once. */
int emdpo_st_read_f32(const emdpo_safetensors *st, const char *name, int rank, const int64_t *shape,
                      float *dst, emdpo_diag *diag);

/* The same into 16-bit dst, the values as stored, for a tensor whose
 * dtype is dtype (EMDPO_ST_F16 or EMDPO_ST_BF16); another dtype is
 * EMDPO_ERR_INVALID_ARG. */
int emdpo_st_read16(const emdpo_safetensors *st, const char *name, int rank, const int64_t *shape,
                    emdpo_st_dtype dtype, uint16_t *dst, emdpo_diag *diag);

/* "[2, 3]": shape[0..rank) as diag messages show it. */
void emdpo_st_format_shape(char *buf, size_t size, int rank, const int64_t *shape);

/* A float32 tensor to write. */
typedef struct emdpo_st_out {
    const char *name;
    int rank;
    int64_t shape[EMDPO_ST_MAX_RANK];
    const float *data;
} emdpo_st_out;

/* Writes the tensors, in this order, as dtype (EMDPO_ST_F32, F16 or BF16,
 * rounded to nearest even), and the metadata pairs meta[2i] -> meta[2i+1]
 * (n_meta pairs; meta may be NULL when 0). EMDPO_ERR_INVALID_ARG for
 * another dtype, an empty, repeated or non-UTF-8 name, a name
 * "__metadata__", a bad rank or a negative dimension (diag says which);
 * EMDPO_ERR_IO when writing fails, leaving any old file in place. */
int emdpo_st_write(const char *path, const emdpo_st_out *t, size_t n, emdpo_st_dtype dtype, const char *const *meta,
                   size_t n_meta, emdpo_diag *diag);

#endif
