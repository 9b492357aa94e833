/* libFuzzer target: PEFT LoRA adapter directories (src/lm/io/peft.c): the
 * adapter_config.json reading (PEFT's target matching with PCRE2 regexes,
 * layer ranges, refused features) and the adapter_model.safetensors checks
 * and reads against a base. The input's bytes up to the first NUL are the
 * config, the rest the safetensors file; both are read for two bases of
 * tests/fixtures/hf_families' shapes (llama3's, and qwen3's with q/k norms
 * and a head size apart from the width). An accepted adapter must be a
 * usable one that merges into its base. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lm/engine/llama.h"
#include "lm/engine/lora.h"
#include "lm/io/peft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const emdpo_llama_config k_bases[2] = {
    {.dim = 16, .hidden_dim = 24, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1, .vocab_size = 40,
     .max_seq_len = 64, .norm_eps = 1e-6f, .rope_theta = 1e4f},
    {.dim = 16, .hidden_dim = 24, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1, .vocab_size = 40,
     .max_seq_len = 64, .tied = 1, .norm_eps = 1e-6f, .rope_theta = 1e6f, .head_dim = 16, .qk_norm = 1,
     .arch = EMDPO_ARCH_QWEN3},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t n_cfg = nul ? (size_t)(nul - data) : size;
    const uint8_t *w = nul ? nul + 1 : data + size;
    size_t n_w = (size_t)(data + size - w);
    for (int b = 0; b < 2; b++) {
        emdpo_lora *lo = NULL;
        emdpo_diag d;
        int rc = emdpo_peft_read_mem((const char *)data, n_cfg, "adapter_config.json", w, n_w,
                                     "adapter_model.safetensors", &k_bases[b], &lo, &d);
        if (rc == EMDPO_OK) {
            if (!lo || emdpo_lora_config_check(&lo->config) || lo->n != emdpo_lora_num_params(&k_bases[b], &lo->config))
                abort();
            emdpo_llama *m = NULL;
            if (emdpo_llama_create(&k_bases[b], &m) != EMDPO_OK || emdpo_lora_merge(lo, m) != EMDPO_OK) abort();
            emdpo_llama_free(m);
        } else if (lo || (rc != EMDPO_ERR_PARSE && rc != EMDPO_ERR_UNSUPPORTED && rc != EMDPO_ERR_LIMIT &&
                          rc != EMDPO_ERR_IO && rc != EMDPO_ERR_NOMEM)) {
            abort();
        }
        emdpo_lora_free(lo);
    }
    return 0;
}
