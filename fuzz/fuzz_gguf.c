/* libFuzzer target: GGUF vocabularies (src/lm/io/gguf_vocab.c). The input
 * is a GGUF file. Whatever the reader accepts must encode and decode a
 * fixed text; a llama2.c-style ("llama") vocabulary must give it back
 * exactly (its byte fallback covers every byte). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "lm/io/gguf_vocab.h"
#include "lm/io/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/emdpo_fuzz_gguf_%d", (int)getpid());
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, size, fp) != size || fclose(fp) != 0) abort();
    emdpo_tokenizer *t = NULL;
    int n = 0;
    emdpo_diag diag;
    int rc = emdpo_gguf_tokenizer(path, &t, &n, &diag);
    if (rc != EMDPO_OK && rc != EMDPO_ERR_PARSE && rc != EMDPO_ERR_UNSUPPORTED && rc != EMDPO_ERR_LIMIT &&
        rc != EMDPO_ERR_NOMEM && rc != EMDPO_ERR_IO)
        abort();
    if (rc == EMDPO_OK) {
        static const char text[] = "Hello, w\xC3\xB6rld \xE6\x97\xA5\xE6\x9C\xAC 12 <|endoftext|>";
        int *ids = NULL;
        size_t k = 0, m = 0;
        char *back = NULL;
        if (emdpo_tokenizer_encode_alloc(t, text, sizeof text - 1, EMDPO_TOK_NO_PREFIX | EMDPO_TOK_SPECIAL, &ids,
                                         &k) != EMDPO_OK ||
            emdpo_tokenizer_decode_alloc(t, ids, k, &back, &m) != EMDPO_OK)
            abort();
        if (!emdpo_tokenizer_is_hf(t)) {
            /* SPECIAL adds BOS, which decodes to nothing. */
            if (m != sizeof text - 1 || memcmp(back, text, m) != 0) abort();
        }
        emdpo_free(back, m + 1);
        emdpo_ids_free(ids, k);
        emdpo_tokenizer_free(t);
    }
    return 0;
}
