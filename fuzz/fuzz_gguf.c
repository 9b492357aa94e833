/* libFuzzer target: GGUF vocabularies (src/lm/io/gguf_vocab.c). The input
 * is a GGUF file. Whatever the reader accepts must come out as a
 * tokenizer.bin image that the llama2.c tokenizer parses, and a fixed text
 * must survive encode -> decode with it. */
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
    char *image = NULL;
    size_t len = 0;
    int n = 0;
    emdpo_diag diag;
    int rc = emdpo_gguf_vocab_image(path, &image, &len, &n, &diag);
    if (rc != EMDPO_OK && rc != EMDPO_ERR_PARSE && rc != EMDPO_ERR_UNSUPPORTED && rc != EMDPO_ERR_LIMIT &&
        rc != EMDPO_ERR_NOMEM && rc != EMDPO_ERR_IO)
        abort();
    if (rc == EMDPO_OK) {
        emdpo_tokenizer *t = NULL;
        if (emdpo_tokenizer_parse(image, len, n, "fuzz", &t, &diag) != EMDPO_OK) abort();
        static const char text[] = "Hello, w\xC3\xB6rld \xE6\x97\xA5\xE6\x9C\xAC 12";
        int ids[64];
        char back[128];
        size_t k = 0, m = 0;
        if (emdpo_tokenizer_encode(t, text, sizeof text - 1, EMDPO_TOK_NO_PREFIX, ids, 64, &k) != EMDPO_OK ||
            emdpo_tokenizer_decode(t, ids, k, back, sizeof back, &m) != EMDPO_OK || m != sizeof text - 1 ||
            memcmp(back, text, m) != 0)
            abort();
        emdpo_tokenizer_free(t);
        emdpo_free(image, len);
    }
    return 0;
}
