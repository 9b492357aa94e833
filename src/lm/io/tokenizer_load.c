/* emdpo_tokenizer_load: a tokenizer from a file of any kind it recognises,
 * above the readers of each kind (tokenizer.h's llama2.c format,
 * gguf_vocab.h's GGUF vocabularies). */
#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "lm/io/gguf_vocab.h"
#include "lm/io/tokenizer.h"

int emdpo_tokenizer_load(const char *path, int vocab_size, emdpo_tokenizer **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no tokenizer path");
    char *buf;
    size_t len;
    int rc;
    if (emdpo_gguf_is_file(path)) {
        /* A GGUF vocabulary comes as the image of a tokenizer.bin. */
        int n;
        if ((rc = emdpo_gguf_vocab_image(path, &buf, &len, &n, diag))) return rc;
        if (n != vocab_size)
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "the GGUF vocabulary has %d tokens; the model's has %d", n,
                                 vocab_size);
        else
            rc = emdpo_tokenizer_parse(buf, len, vocab_size, path, out, diag);
        emdpo_free(buf, len);
    } else {
        if ((rc = emdpo_file_read(path, &buf, &len, diag))) return rc;
        rc = emdpo_tokenizer_parse(buf, len, vocab_size, path, out, diag);
        emdpo_free(buf, len + 1);
    }
    if (!rc && emdpo_tokenizer_set_source(*out, path)) {
        emdpo_tokenizer_free(*out);
        *out = NULL;
        rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    return rc;
}
