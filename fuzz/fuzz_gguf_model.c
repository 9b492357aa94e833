/* libFuzzer target: GGUF models (src/lm/io/gguf.c's header, metadata and
 * tensor table checks and dequantisation, src/lm/io/gguf_model.c's mapping
 * to a model). The input is a GGUF file: it is loaded as a model from a
 * file (the mapped path every command takes), and read from memory tensor
 * by tensor. What the model loader accepts must describe a usable model. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/alloc.h"
#include "lm/engine/llama.h"
#include "lm/io/gguf.h"
#include "lm/io/gguf_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_rc(int rc) {
    if (rc != EMDPO_OK && rc != EMDPO_ERR_PARSE && rc != EMDPO_ERR_UNSUPPORTED && rc != EMDPO_ERR_NOMEM &&
        rc != EMDPO_ERR_IO)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/emdpo_fuzz_gguf_model_%d", (int)getpid());
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, size, fp) != size || fclose(fp) != 0) abort();
    emdpo_llama *m = NULL;
    emdpo_diag diag;
    int rc = emdpo_gguf_model_load(path, 0, &m, &diag);
    check_rc(rc);
    if (rc == EMDPO_OK && emdpo_llama_config_check(&m->config) != EMDPO_OK) abort();
    emdpo_llama_free(m);

    emdpo_gguf *g = NULL;
    rc = emdpo_gguf_open_mem(data, size, "mem", &g, &diag);
    check_rc(rc);
    if (rc == EMDPO_OK && emdpo_gguf_check_tensors(g, &diag) == EMDPO_OK) {
        for (size_t i = 0; i < emdpo_gguf_n_tensors(g); i++) {
            const emdpo_gguf_tensor *t = emdpo_gguf_tensor_at(g, i);
            if (t->numel > (1u << 20)) continue;
            float *dst = emdpo_malloc((size_t)t->numel * sizeof *dst + 1);
            if (!dst) continue;
            check_rc(emdpo_gguf_read_f32(g, t, dst, &diag));
            emdpo_free(dst, (size_t)t->numel * sizeof *dst + 1);
        }
    }
    emdpo_gguf_close(g);
    return 0;
}
