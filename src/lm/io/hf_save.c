/* Saving a Hugging Face model directory (emdpo_llama_save_with): the
 * weights in the dtype asked for, config.json, generation_config.json, the
 * tokenizer's files, and no stale index, so that transformers and the
 * tokenizers library load the directory as they load one of their own. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "lm/io/gguf_vocab.h"
#include "lm/io/llama_hf.h"
#include "lm/io/tokenizer.h"

/* The special ids written to config.json and generation_config.json. */
typedef struct special_ids {
    int bos, eos, pad;
    const int *stop; /* every id that ends generation, EOS among them */
    size_t n_stop;
} special_ids;

static void write_generation_config(FILE *fp, const void *ctx) {
    const special_ids *s = ctx;
    fputs("{\n", fp);
    const char *sep = "";
    if (s->bos >= 0) {
        fprintf(fp, "  \"bos_token_id\": %d", s->bos);
        sep = ",\n";
    }
    if (s->eos >= 0) {
        fprintf(fp, "%s  \"eos_token_id\": ", sep);
        /* The EOS first: transformers' config takes the first as the EOS. */
        if (s->n_stop <= 1) {
            fprintf(fp, "%d", s->eos);
        } else {
            fprintf(fp, "[%d", s->eos);
            for (size_t i = 0; i < s->n_stop; i++)
                if (s->stop[i] != s->eos) fprintf(fp, ", %d", s->stop[i]);
            fputs("]", fp);
        }
        sep = ",\n";
    }
    if (s->pad >= 0) fprintf(fp, "%s  \"pad_token_id\": %d", sep, s->pad);
    fputs("\n}\n", fp);
}

/* from -> dir/name, atomically. A missing from is skipped when optional. */
static int copy_file(const char *from, const char *dir, const char *name, int optional, emdpo_diag *diag) {
    if (optional && !emdpo_path_is_file(from)) return EMDPO_OK;
    char *buf = NULL, *to = emdpo_path_join(dir, name);
    size_t len = 0;
    if (!to) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    int rc = emdpo_file_read(from, &buf, &len, diag);
    emdpo_afile af;
    if (!rc && !(rc = emdpo_afile_open(&af, to, diag))) {
        fwrite(buf, 1, len, af.fp);
        rc = emdpo_afile_commit(&af, diag);
    }
    if (buf) emdpo_free(buf, len + 1);
    emdpo_strfree(to);
    return rc;
}

/* The tokenizer's files: from a Hugging Face directory or beside a
 * tokenizer.json, the tokenizer.json and the files naming its special
 * tokens; a llama2.c tokenizer.bin as itself. A GGUF vocabulary has no
 * file of either kind to copy. */
static int copy_tokenizer(const emdpo_tokenizer *t, const char *dir, emdpo_diag *diag) {
    const char *src = emdpo_tokenizer_source(t);
    if (!src || (!emdpo_path_is_dir(src) && emdpo_gguf_is_file(src))) return EMDPO_OK;
    if (!emdpo_tokenizer_is_hf(t)) return copy_file(src, dir, "tokenizer.bin", 0, diag);
    int rc = EMDPO_OK, is_dir = emdpo_path_is_dir(src);
    char *src_dir = is_dir ? emdpo_strdup(src) : emdpo_path_dir(src);
    char *json = is_dir ? emdpo_path_join(src, "tokenizer.json") : emdpo_strdup(src);
    if (!src_dir || !json) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (!rc) rc = copy_file(json, dir, "tokenizer.json", 0, diag);
    static const char *const beside[] = {"tokenizer_config.json", "special_tokens_map.json"};
    for (size_t i = 0; !rc && i < sizeof beside / sizeof *beside; i++) {
        char *from = emdpo_path_join(src_dir, beside[i]);
        rc = from ? copy_file(from, dir, beside[i], 1, diag) : emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        emdpo_strfree(from);
    }
    emdpo_strfree(src_dir);
    emdpo_strfree(json);
    return rc;
}

static emdpo_st_dtype st_dtype(emdpo_dtype d) {
    return d == EMDPO_DTYPE_BF16 ? EMDPO_ST_BF16 : d == EMDPO_DTYPE_F16 ? EMDPO_ST_F16 : EMDPO_ST_F32;
}

int emdpo_llama_hf_save(const emdpo_llama *m, const char *dir, const emdpo_llama_save_opts *o, emdpo_diag *diag) {
    emdpo_diag_reset(diag, dir);
    static const emdpo_llama_save_opts def = {EMDPO_DTYPE_AUTO, NULL};
    if (!o) o = &def;
    if ((unsigned)o->dtype > EMDPO_DTYPE_BF16)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "unknown dtype %d", (int)o->dtype);
    emdpo_st_dtype dtype = st_dtype(o->dtype ? o->dtype : (emdpo_dtype)m->file_dtype);
    special_ids ids = {-1, -1, -1, NULL, 0};
    if (o->tokenizer) {
        ids.bos = emdpo_tokenizer_bos(o->tokenizer);
        ids.eos = emdpo_tokenizer_eos(o->tokenizer);
        ids.pad = emdpo_tokenizer_pad(o->tokenizer);
        ids.n_stop = emdpo_tokenizer_stop_ids(o->tokenizer, &ids.stop);
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot create the directory: %s", strerror(errno));
    char *weights = emdpo_path_join(dir, EMDPO_ST_SINGLE_NAME), *cfg = emdpo_path_join(dir, "config.json");
    int rc = weights && cfg ? EMDPO_OK : emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (!rc) rc = emdpo_hf_write_params(weights, &m->config, &m->params, dtype, diag);
    if (!rc) rc = emdpo_st_remove_index(dir, diag);
    if (!rc) rc = emdpo_hf_config_write(cfg, &m->config, dtype, ids.bos, ids.eos, diag);
    if (!rc) rc = emdpo_afile_write_in(dir, "generation_config.json", write_generation_config, &ids, diag);
    if (!rc && o->tokenizer) rc = copy_tokenizer(o->tokenizer, dir, diag);
    emdpo_strfree(weights);
    emdpo_strfree(cfg);
    return rc;
}
