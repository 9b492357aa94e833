/* libFuzzer target: safetensors headers and data (src/lm/io/safetensors.c),
 * sharded checkpoints' index (src/lm/io/st_source.c), the Hugging Face
 * Llama tensor mapping on top of them, and config.json parsing
 * (src/lm/io/llama_hf.c). The input is used four ways: as a whole
 * safetensors image, whose every tensor is then read; as a checkpoint for
 * a tiny Llama; as a model.safetensors.index.json whose shard
 * "self.safetensors" is the input itself and every other shard a fixed
 * one-tensor file; and as config.json text. Sanitizers catch any read
 * outside the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "lm/engine/llama.h"
#include "lm/io/llama_hf.h"
#include "lm/io/safetensors.h"
#include "lm/io/st_source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fuzzer's dictionary names tensors of this model. */
static const emdpo_llama_config k_tiny = {.dim = 4, .hidden_dim = 6, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
                                          .vocab_size = 5, .max_seq_len = 8, .tied = 0, .norm_eps = 1e-5f,
                                          .rope_theta = 1e4f};

static void read_all(const emdpo_safetensors *st) {
    for (size_t i = 0; i < emdpo_st_count(st); i++) {
        const emdpo_st_tensor *t = emdpo_st_tensor_at(st, i);
        /* A tensor fits in the input, so numel <= size unless it is empty. */
        size_t n = t->numel ? (size_t)t->numel : 1;
        float *buf = malloc(n * sizeof *buf);
        if (!buf) abort();
        emdpo_diag d;
        int rc = emdpo_st_read_f32(st, t->name, t->rank, t->shape, buf, &d);
        if (rc != EMDPO_OK && rc != EMDPO_ERR_UNSUPPORTED) abort();
        if (emdpo_st_find(st, t->name) != t) abort();
        free(buf);
    }
}

typedef struct input {
    const uint8_t *data;
    size_t size;
} input;

/* "self.safetensors" is the input; any other shard holds one F32 tensor
 * "w" of shape [1]. */
static int open_shard(void *ctx, const char *shard, emdpo_safetensors **out, emdpo_diag *diag) {
    static const char k_other[] = "\x36\0\0\0\0\0\0\0{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"
                                  "\0\0\x80\x3f";
    const input *in = ctx;
    if (strcmp(shard, "self.safetensors") == 0) return emdpo_st_open_mem(in->data, in->size, shard, out, diag);
    return emdpo_st_open_mem(k_other, sizeof k_other - 1, shard, out, diag);
}

static void read_model(const emdpo_st_source *src) {
    for (int tied = 0; tied < 2; tied++) {
        emdpo_llama_config c = k_tiny;
        c.tied = tied;
        emdpo_llama *m = NULL;
        emdpo_diag d;
        if (emdpo_llama_create(&c, &m) != EMDPO_OK) abort();
        emdpo_hf_read_params(src, &c, &m->params, NULL, &d);
        emdpo_llama_free(m);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    emdpo_safetensors *st = NULL;
    emdpo_st_source *src = NULL;
    emdpo_diag d;
    if (emdpo_st_open_mem(data, size, "fuzz", &st, &d) == EMDPO_OK) {
        read_all(st);
        if (emdpo_st_source_file(st, &src) != EMDPO_OK) abort();
        read_model(src);
        emdpo_st_source_close(src);
    }
    input in = {data, size};
    if (emdpo_st_source_index((const char *)data, size, "index", open_shard, &in, &src, &d) == EMDPO_OK) {
        for (size_t i = 0; i < emdpo_st_source_count(src); i++) {
            const emdpo_st_tensor *t = emdpo_st_source_tensor_at(src, i);
            if (emdpo_st_source_find(src, t->name) != t) abort();
        }
        read_model(src);
        emdpo_st_source_close(src);
    }
    emdpo_llama_config c;
    emdpo_hf_config_parse((const char *)data, size, "fuzz", &c, &d);
    return 0;
}
