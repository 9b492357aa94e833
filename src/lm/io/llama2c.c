#include "lm/io/llama2c.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "lm/engine/llama_ops.h"

#define HEADER_BYTES 28
#define NORM_EPS 1e-5f
#define ROPE_THETA 10000.0f

static const char *const tensor_names[EMDPO_LLAMA_N_TENSORS] = {
    "token_embedding", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final", "output"};

static int host_is_big_endian(void) {
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 0;
}

static void swap4(void *p, size_t n) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++, b += 4) {
        unsigned char t0 = b[0], t1 = b[1];
        b[0] = b[3];
        b[1] = b[2];
        b[2] = t1;
        b[3] = t0;
    }
}

static int32_t le32(const unsigned char *b) {
    uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Floats the file holds after the header for configuration c. */
static int file_floats(const emdpo_llama_config *c, size_t *out) {
    size_t hs = (size_t)(c->dim / c->n_heads), n = emdpo_llama_num_params(c);
    size_t tables = (size_t)c->max_seq_len * hs; /* cos and sin, (seq_len, hs/2) each */
    if (tables / hs != (size_t)c->max_seq_len || n > (SIZE_MAX - HEADER_BYTES) / 4 - tables) return 0;
    *out = n + tables;
    return 1;
}

static int read_floats(FILE *fp, float *dst, size_t n) {
    if (fread(dst, sizeof(float), n, fp) != n) return 0;
    if (host_is_big_endian()) swap4(dst, n);
    return 1;
}

static int load_fp(FILE *fp, off_t fsize, emdpo_llama **out, emdpo_diag *diag) {
    unsigned char hb[HEADER_BYTES];
    if (fsize < HEADER_BYTES || fread(hb, 1, HEADER_BYTES, fp) != HEADER_BYTES) {
        emdpo_diag_set(diag, 0, "file is %lld bytes, shorter than the %d-byte header", (long long)fsize, HEADER_BYTES);
        return EMDPO_ERR_PARSE;
    }
    int32_t h[7];
    for (int i = 0; i < 7; i++) h[i] = le32(hb + 4 * i);
    emdpo_llama_config c = {.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3], .n_kv_heads = h[4],
                            .vocab_size = h[5] < 0 && h[5] != INT32_MIN ? -h[5] : h[5], .max_seq_len = h[6],
                            .tied = h[5] > 0, .norm_eps = NORM_EPS, .rope_theta = ROPE_THETA};
    size_t nf;
    if (emdpo_llama_config_check(&c) || !file_floats(&c, &nf)) {
        emdpo_diag_set(diag, 0,
                       "header is not a usable configuration: dim %d, hidden_dim %d, n_layers %d, n_heads %d, "
                       "n_kv_heads %d, vocab_size %d, seq_len %d",
                       (int)h[0], (int)h[1], (int)h[2], (int)h[3], (int)h[4], (int)h[5], (int)h[6]);
        return EMDPO_ERR_PARSE;
    }
    size_t expect = HEADER_BYTES + 4 * nf;
    if ((unsigned long long)fsize != (unsigned long long)expect) {
        emdpo_diag_set(diag, 0, "expected %zu bytes for this header (dim %d, %d layers, vocab %d, seq_len %d, %s head), found %lld",
                 expect, c.dim, c.n_layers, c.vocab_size, c.max_seq_len, c.tied ? "tied" : "separate",
                 (long long)fsize);
        return EMDPO_ERR_PARSE;
    }
    emdpo_llama *m;
    int rc = emdpo_llama_create(&c, &m);
    if (rc) return rc;
    size_t sizes[EMDPO_LLAMA_N_TENSORS];
    emdpo_llama_tensor_sizes(&c, sizes);
    size_t body = m->num_params - sizes[11];
    size_t tables = (size_t)c.max_seq_len * (size_t)(c.dim / c.n_heads);
    /* The tables sit between rms_final and the separate head. */
    if (!read_floats(fp, m->param_buf, body) || fseeko(fp, (off_t)(tables * sizeof(float)), SEEK_CUR) ||
        !read_floats(fp, m->param_buf + body, sizes[11])) {
        emdpo_llama_free(m);
        emdpo_diag_set(diag, 0, "read failed: %s", ferror(fp) ? strerror(errno) : "file shrank while reading");
        return EMDPO_ERR_IO;
    }
    const float *w = m->param_buf;
    for (int t = 0; t < EMDPO_LLAMA_N_TENSORS; t++) {
        for (size_t i = 0; i < sizes[t]; i++) {
            if (!isfinite(w[i])) {
                emdpo_diag_set(diag, 0, "non-finite weight in %s at index %zu", tensor_names[t], i);
                emdpo_llama_free(m);
                return EMDPO_ERR_PARSE;
            }
        }
        w += sizes[t];
    }
    *out = m;
    return EMDPO_OK;
}

int emdpo_llama2c_load(const char *path, emdpo_llama **out, emdpo_diag *diag) {
    emdpo_diag local;
    if (!diag) diag = &local;
    memset(diag, 0, sizeof *diag);
    snprintf(diag->file, sizeof diag->file, "%s", path);
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    struct stat st;
    if (!fp || fstat(fileno(fp), &st)) {
        emdpo_diag_set(diag, 0, "cannot open: %s", strerror(errno));
        if (fp) fclose(fp);
        return EMDPO_ERR_IO;
    }
    int rc = load_fp(fp, st.st_size, out, diag);
    fclose(fp);
    return rc;
}

/* Little-endian float32 through a small buffer, whatever the host order. */
static void write_floats(FILE *fp, const float *src, size_t n) {
    float tmp[1024];
    int swap = host_is_big_endian();
    while (n) {
        size_t k = n < 1024 ? n : 1024;
        memcpy(tmp, src, k * sizeof(float));
        if (swap) swap4(tmp, k);
        fwrite(tmp, sizeof(float), k, fp);
        src += k;
        n -= k;
    }
}

int emdpo_llama2c_save(const emdpo_llama *m, const char *path, emdpo_diag *diag) {
    emdpo_diag local;
    if (!diag) diag = &local;
    memset(diag, 0, sizeof *diag);
    snprintf(diag->file, sizeof diag->file, "%s", path);
    const emdpo_llama_config *c = &m->config;
    if (c->norm_eps != NORM_EPS || c->rope_theta != ROPE_THETA || c->rope_type != EMDPO_ROPE_DEFAULT) {
        emdpo_diag_set(diag, 0, "the llama2.c format fixes norm_eps 1e-5, rope_theta 10000 and no RoPE scaling; this "
                 "model has %g, %g and %s", (double)c->norm_eps, (double)c->rope_theta,
                 c->rope_type == EMDPO_ROPE_DEFAULT ? "none" : "scaling");
        return EMDPO_ERR_UNSUPPORTED;
    }
    if (emdpo_llama_head_size(c) * c->n_heads != c->dim || c->qkv_bias || c->o_bias || c->qk_norm ||
        emdpo_llama_context(c) != c->max_seq_len) {
        emdpo_diag_set(diag, 0, "the llama2.c format holds plain Llama models: no explicit head_dim, biases, q/k norms "
                       "or sliding window (save it as a Hugging Face directory)");
        return EMDPO_ERR_UNSUPPORTED;
    }
    int hs = c->dim / c->n_heads, h2 = hs / 2;
    size_t row_bytes = (size_t)hs * sizeof(float);
    float *row = emdpo_malloc(row_bytes); /* cos (hs/2) then sin (hs/2) of one position */
    if (!row) return EMDPO_ERR_NOMEM;
    emdpo_afile af;
    int rc = emdpo_afile_open(&af, path, diag);
    if (rc) {
        emdpo_free(row, row_bytes);
        return rc;
    }
    int32_t h[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                    c->tied ? c->vocab_size : -c->vocab_size, c->max_seq_len};
    unsigned char hb[HEADER_BYTES];
    for (int i = 0; i < 7; i++) {
        uint32_t u;
        memcpy(&u, &h[i], sizeof u);
        for (int j = 0; j < 4; j++) hb[4 * i + j] = (unsigned char)(u >> (8 * j));
    }
    fwrite(hb, 1, HEADER_BYTES, af.fp);
    size_t sizes[EMDPO_LLAMA_N_TENSORS];
    emdpo_llama_tensor_sizes(c, sizes);
    size_t body = m->num_params - sizes[11];
    write_floats(af.fp, m->param_buf, body);
    for (int part = 0; part < 2; part++) {
        for (int t = 0; t < c->max_seq_len; t++) {
            emdpo_rope_table(row, row + h2, t, 1, hs, c);
            write_floats(af.fp, row + part * h2, (size_t)h2);
        }
    }
    write_floats(af.fp, m->param_buf + body, sizes[11]);
    emdpo_free(row, row_bytes);
    return emdpo_afile_commit(&af, diag);
}
