/* A model's tensors behind one find / read interface, whether they lie in
 * one safetensors file or in the shards a Hugging Face index names:
 * model.safetensors.index.json, {"metadata": {...}, "weight_map":
 * {tensor name: shard file name}} (other top-level keys are ignored).
 *
 * The index is treated as hostile and checked completely when opening:
 * weight_map an object of strings; every shard a plain file name inside the
 * index's directory (no "/", "\", "." or "..", at most 255 bytes); every
 * mapped tensor present in the shard it is mapped to; and every tensor of
 * every shard mapped to that shard, so no tensor lies in two shards and no
 * shard holds a tensor the index does not name. Each shard is then checked
 * as emdpo_st_open checks a file. A violation is EMDPO_ERR_PARSE with diag
 * naming the index file, the tensor and the shard. */
#ifndef EMDPO_ST_SOURCE_H
#define EMDPO_ST_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "emdpo.h"
#include "lm/io/safetensors.h"

#define EMDPO_ST_INDEX_NAME "model.safetensors.index.json"
#define EMDPO_ST_SINGLE_NAME "model.safetensors"

typedef struct emdpo_st_source emdpo_st_source;

/* A source over one opened file; takes ownership of st, also on failure
 * (EMDPO_ERR_NOMEM). */
int emdpo_st_source_file(emdpo_safetensors *st, emdpo_st_source **out);

/* Opens the shard named shard (already checked to be a plain file name)
 * for an index; the result must outlive nothing but the source. */
typedef int (*emdpo_st_shard_open)(void *ctx, const char *shard, emdpo_safetensors **out, emdpo_diag *diag);

/* A source over the index text[0..len) (name goes into diag->file), its
 * shards opened through open_shard. Errors as above, and the opener's. */
int emdpo_st_source_index(const char *text, size_t len, const char *name, emdpo_st_shard_open open_shard,
                          void *ctx, emdpo_st_source **out, emdpo_diag *diag);

/* A Hugging Face directory's weights: dir/model.safetensors when it
 * exists (as transformers prefers it), else the shards of
 * dir/model.safetensors.index.json. EMDPO_ERR_IO when neither exists. */
int emdpo_st_source_open_dir(const char *dir, emdpo_st_source **out, emdpo_diag *diag);

void emdpo_st_source_close(emdpo_st_source *s);

/* The file, or the index, it was opened from. */
const char *emdpo_st_source_name(const emdpo_st_source *s);

/* Tensors in name order (over all shards). */
size_t emdpo_st_source_count(const emdpo_st_source *s);
const emdpo_st_tensor *emdpo_st_source_tensor_at(const emdpo_st_source *s, size_t i);

/* The tensor of that name, or NULL. */
const emdpo_st_tensor *emdpo_st_source_find(const emdpo_st_source *s, const char *name);

/* emdpo_st_read_f32 from whichever file holds the tensor; a missing one
 * is named against the source. Safe to call from several threads. */
int emdpo_st_source_read_f32(const emdpo_st_source *s, const char *name, int rank, const int64_t *shape, float *dst,
                             emdpo_diag *diag);
/* emdpo_st_read16 likewise. */
int emdpo_st_source_read16(const emdpo_st_source *s, const char *name, int rank, const int64_t *shape,
                           emdpo_st_dtype dtype, uint16_t *dst, emdpo_diag *diag);

/* The dtype every rank-2 tensor (a model's matrices) has, or -1 when they
 * differ or there are none. */
int emdpo_st_source_matrix_dtype(const emdpo_st_source *s);

/* The floating-point dtype holding the most elements (the dtype the model
 * was stored in; a few F32 norms among BF16 matrices count as BF16); F32
 * when there are no floating-point tensors. */
emdpo_st_dtype emdpo_st_source_dtype(const emdpo_st_source *s);

/* After a single model.safetensors was written to dir: removes a stale
 * dir/model.safetensors.index.json, then the shards it names (when it is a
 * valid index: plain file names ending in .safetensors, other than
 * model.safetensors), so the directory holds one
 * checkpoint (at every moment it loads as the new one: transformers and
 * emdpo prefer model.safetensors to an index). Nothing to do is EMDPO_OK; EMDPO_ERR_IO with diag when a
 * file cannot be removed. */
int emdpo_st_remove_index(const char *dir, emdpo_diag *diag);

#endif
