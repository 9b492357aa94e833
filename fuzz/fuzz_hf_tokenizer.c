/* libFuzzer target: Hugging Face tokenizer.json (src/lm/io/hf_tok_json.c)
 * and the pipeline it builds (src/lm/io/hf_tok.c, hf_tok_text.c). The
 * input is a tokenizer.json, optionally followed by a NUL byte and a text.
 * Whatever the reader accepts must encode that text and a fixed one (both
 * with and without special tokens) into ids it has, and decode them, and
 * any ids it has. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/utf8.h"
#include "lm/io/hf_tok_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(const emdpo_hf_tok *t, const char *text, size_t len) {
    for (int special = 0; special < 2; special++) {
        int *ids = NULL;
        size_t n = 0;
        int rc = emdpo_hf_tok_encode(t, text, len, special, special, &ids, &n);
        if (rc == EMDPO_ERR_INVALID_ARG && emdpo_utf8_invalid_at(text, len) != len) continue;
        if (rc != EMDPO_OK && rc != EMDPO_ERR_LIMIT && rc != EMDPO_ERR_NOMEM) abort();
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= emdpo_hf_tok_n_ids(t)) abort();
        char *back = NULL;
        size_t m = 0;
        if (emdpo_hf_tok_decode(t, ids, n, &back, &m) != EMDPO_OK) abort();
        if (emdpo_utf8_invalid_at(back, m) != m && emdpo_hf_tok_n_ids(t) > 0) {
            /* A decoder's output is text: only a pipeline without a
             * ByteLevel / ByteFallback decoder may pass raw bytes on, and
             * pieces come from JSON strings, which are UTF-8. */
            abort();
        }
        emdpo_free(back, m + 1);
        emdpo_free(ids, n * sizeof *ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    emdpo_hf_tok *t = NULL;
    emdpo_diag diag;
    int rc = emdpo_hf_tok_from_json((const char *)data, json_len, "fuzz", &t, &diag);
    if (rc != EMDPO_OK && rc != EMDPO_ERR_PARSE && rc != EMDPO_ERR_UNSUPPORTED && rc != EMDPO_ERR_LIMIT &&
        rc != EMDPO_ERR_NOMEM && rc != EMDPO_ERR_INVALID_ARG)
        abort();
    if (rc != EMDPO_OK) return 0;
    static const char fixed[] = "Hello  w\xC3\xB6rld\t\xE6\x97\xA5\xE6\x9C\xAC 123 \xE2\x96\x81x <s></s>\n";
    round_trip(t, fixed, sizeof fixed - 1);
    if (nul) round_trip(t, (const char *)nul + 1, size - json_len - 1);
    /* Every id alone and all of them together. */
    int n = emdpo_hf_tok_n_ids(t) < 512 ? emdpo_hf_tok_n_ids(t) : 512;
    int *all = n ? malloc((size_t)n * sizeof *all) : NULL;
    for (int i = 0; i < n; i++) {
        all[i] = i;
        char *s = NULL;
        size_t m = 0;
        if (emdpo_hf_tok_decode(t, &all[i], 1, &s, &m) != EMDPO_OK) abort();
        emdpo_free(s, m + 1);
    }
    char *s = NULL;
    size_t m = 0;
    if (emdpo_hf_tok_decode(t, all, (size_t)n, &s, &m) != EMDPO_OK) abort();
    emdpo_free(s, m + 1);
    free(all);
    emdpo_hf_tok_free(t);
    return 0;
}
