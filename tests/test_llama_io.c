/* llama2.c checkpoints: save/load round trips (tied and separate heads),
 * strict rejection of bad headers, wrong sizes and non-finite weights with a
 * diagnostic; configuration checks; random initialisation; and a failing-
 * allocator sweep over model, activation and cache creation and loading. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "emdpo.h"
#include "failalloc.h"
#include "lm/engine/gemm.h"
#include "lm/engine/llama.h"
#include "lm/engine/llama_model.h"
#include "lm/io/llama2c.h"

static emdpo_llama_config small(int tied) {
    emdpo_llama_config c = {.dim = 16, .hidden_dim = 40, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                            .vocab_size = 30, .max_seq_len = 12, .tied = tied, .norm_eps = 1e-5f,
                            .rope_theta = 10000.0f};
    return c;
}

static char *read_all(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    rewind(fp);
    char *s = malloc(*n);
    if (fread(s, 1, *n, fp) != *n) *n = 0;
    fclose(fp);
    return s;
}

static void write_all(const char *path, const void *s, size_t n) {
    FILE *fp = fopen(path, "wb");
    fwrite(s, 1, n, fp);
    fclose(fp);
}

static void test_config(void) {
    emdpo_llama_config c = small(1);
    CHECK_EQ_INT(emdpo_llama_config_check(&c), EMDPO_OK);
    /* V=30, C=16, H=40, L=2, kvd=8 */
    size_t s[EMDPO_LLAMA_N_TENSORS];
    emdpo_llama_tensor_sizes(&c, s);
    CHECK(s[0] == 480 && s[1] == 32 && s[2] == 512 && s[3] == 256 && s[4] == 256 && s[5] == 512 && s[6] == 32 &&
          s[7] == 1280 && s[8] == 1280 && s[9] == 1280 && s[10] == 16 && s[11] == 0);
    CHECK_EQ_INT(emdpo_llama_num_params(&c), 5936);
    c.tied = 0;
    CHECK_EQ_INT(emdpo_llama_num_params(&c), 5936 + 480);
    emdpo_llama_config bad[8];
    for (int i = 0; i < 8; i++) bad[i] = small(1);
    bad[0].dim = 18;          /* not divisible by 4 heads */
    bad[1].n_kv_heads = 3;    /* does not divide n_heads */
    bad[2].dim = 12;          /* head size 3: odd, no RoPE pairs */
    bad[3].vocab_size = 0;
    bad[4].norm_eps = 0.0f;
    bad[5].rope_theta = NAN;
    bad[6].dim = 1 << 30;     /* parameter count overflows */
    bad[6].n_heads = 1 << 20;
    bad[6].n_kv_heads = 1 << 20;
    bad[6].vocab_size = 1 << 30;
    bad[7].tied = 2;
    for (int i = 0; i < 8; i++) CHECK_MSG(emdpo_llama_config_check(&bad[i]) == EMDPO_ERR_INVALID_ARG, "bad[%d]", i);
    emdpo_llama *m = (emdpo_llama *)&m; /* any non-NULL value: create must clear it */
    CHECK_EQ_INT(emdpo_llama_create(&bad[0], &m), EMDPO_ERR_INVALID_ARG);
    CHECK(m == NULL);
}

static void test_init(void) {
    emdpo_llama_config c = small(0);
    emdpo_llama *a, *b;
    CHECK_EQ_INT(emdpo_llama_create(&c, &a), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_create(&c, &b), EMDPO_OK);
    emdpo_llama_init(a, 7);
    emdpo_llama_init(b, 7);
    CHECK(memcmp(a->param_buf, b->param_buf, a->num_params * sizeof(float)) == 0);
    CHECK(a->params.rms_att[3] == 1.0f && a->params.rms_final[15] == 1.0f);
    double ss = 0.0;
    for (int i = 0; i < 512; i++) ss += (double)a->params.wq[i] * a->params.wq[i];
    CHECK(fabs(sqrt(ss / 512) - 0.02) < 0.004);
    CHECK(a->params.lm_head != a->params.tok_emb && a->params.lm_head[5] != 0.0f);
    emdpo_llama_init(b, 8);
    CHECK(a->params.w1[0] != b->params.w1[0]);
    emdpo_llama_free(a);
    emdpo_llama_free(b);
}

static void test_roundtrip(const char *path, int tied) {
    emdpo_llama_config c = small(tied);
    emdpo_llama *m, *r;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_llama_create(&c, &m), EMDPO_OK);
    emdpo_llama_init(m, 3);
    CHECK_EQ_INT(emdpo_llama2c_save(m, path, &diag), EMDPO_OK);
    size_t n;
    char *bytes = read_all(path, &n);
    size_t hs = 4, expect = 28 + 4 * (m->num_params + (size_t)c.max_seq_len * hs);
    CHECK_EQ_INT(n, expect);
    int32_t v;
    memcpy(&v, bytes + 20, 4);
    CHECK_EQ_INT(v, tied ? 30 : -30);
    /* freq_cis_real at position 2, pair 1 is cos(2 * 10000^(-2/4)) */
    float f;
    memcpy(&f, bytes + 28 + 4 * ((tied ? m->num_params : m->num_params - 480) + 2 * 2 + 1), 4);
    CHECK_CLOSE(f, cos(2.0 / 100.0), 1e-7);
    CHECK_EQ_INT(emdpo_llama2c_load(path, &r, &diag), EMDPO_OK);
    CHECK(r && r->config.tied == tied && r->config.dim == 16 && r->config.max_seq_len == 12);
    CHECK(r && r->num_params == m->num_params &&
          memcmp(r->param_buf, m->param_buf, m->num_params * sizeof(float)) == 0);
    emdpo_llama_free(r);

    /* one byte short, one byte over: parse errors naming both sizes */
    char want[64];
    snprintf(want, sizeof want, "expected %zu bytes", expect);
    write_all(path, bytes, n - 1);
    CHECK_EQ_INT(emdpo_llama2c_load(path, &r, &diag), EMDPO_ERR_PARSE);
    CHECK_MSG(strstr(diag.msg, want) && strstr(diag.msg, "found"), "%s", diag.msg);
    CHECK(r == NULL && strcmp(diag.file, path) == 0);
    char *longer = malloc(n + 1);
    memcpy(longer, bytes, n);
    longer[n] = 0;
    write_all(path, longer, n + 1);
    CHECK_EQ_INT(emdpo_llama2c_load(path, &r, &diag), EMDPO_ERR_PARSE);
    CHECK_MSG(strstr(diag.msg, want) != NULL, "%s", diag.msg);
    free(longer);

    /* a NaN in wk */
    float nan = NAN;
    char *bad = malloc(n);
    memcpy(bad, bytes, n);
    memcpy(bad + 28 + 4 * (480 + 32 + 512 + 7), &nan, 4);
    write_all(path, bad, n);
    CHECK_EQ_INT(emdpo_llama2c_load(path, &r, &diag), EMDPO_ERR_PARSE);
    CHECK_MSG(strstr(diag.msg, "non-finite weight in wk at index 7") != NULL, "%s", diag.msg);

    /* header values: zero layers, heads not dividing dim, tiny file */
    int32_t zero = 0, five = 5;
    memcpy(bad, bytes, n);
    memcpy(bad + 8, &zero, 4);
    write_all(path, bad, n);
    CHECK_EQ_INT(emdpo_llama2c_load(path, &r, &diag), EMDPO_ERR_PARSE);
    CHECK_MSG(strstr(diag.msg, "n_layers 0") != NULL, "%s", diag.msg);
    memcpy(bad, bytes, n);
    memcpy(bad + 12, &five, 4);
    write_all(path, bad, n);
    CHECK_EQ_INT(emdpo_llama2c_load(path, &r, &diag), EMDPO_ERR_PARSE);
    write_all(path, bytes, 10);
    CHECK_EQ_INT(emdpo_llama2c_load(path, &r, &diag), EMDPO_ERR_PARSE);
    CHECK_MSG(strstr(diag.msg, "shorter than the 28-byte header") != NULL, "%s", diag.msg);
    free(bad);

    /* failing allocator over loading a good file */
    write_all(path, bytes, n);
    int clean = 1, ok = 0;
    for (long k = 0; !ok; k++) {
        failalloc_install(k, 0);
        int rc = emdpo_llama2c_load(path, &r, &diag);
        if (rc == EMDPO_OK) {
            ok = 1;
            emdpo_llama_free(r);
        } else {
            clean &= rc == EMDPO_ERR_NOMEM && r == NULL;
        }
        clean &= failalloc_live() == 0 && failalloc_size_errors() == 0;
        failalloc_uninstall();
    }
    CHECK(clean);
    /* and over saving (the RoPE row buffer) */
    failalloc_install(0, 1);
    CHECK_EQ_INT(emdpo_llama2c_save(m, path, &diag), EMDPO_ERR_NOMEM);
    CHECK(failalloc_live() == 0);
    failalloc_uninstall();
    m->config.norm_eps = 1e-6f;
    CHECK_EQ_INT(emdpo_llama2c_save(m, path, &diag), EMDPO_ERR_UNSUPPORTED);
    free(bytes);
    emdpo_llama_free(m);
    remove(path);
    CHECK_EQ_INT(emdpo_llama2c_load(path, &r, &diag), EMDPO_ERR_IO);
    CHECK(strstr(diag.msg, "cannot open") != NULL);
}

/* Every allocation of creation fails in turn: NOMEM, nothing leaked. */
static void test_failalloc(void) {
    emdpo_llama_config c = small(0);
    int clean = 1;
    for (int what = 0; what < 4; what++) {
        int ok = 0;
        for (long k = 0; !ok; k++) {
            failalloc_install(k, 0);
            emdpo_llama *m = NULL;
            emdpo_llama_acts *a = NULL;
            emdpo_llama_kv *kv = NULL;
            /* 60 sequences of 5 make two chunks: with the packed kernel, its scratch too */
            int rc = what == 0   ? emdpo_llama_create(&c, &m)
                     : what == 1 ? emdpo_llama_acts_create(&c, 60, 5, 0, &a)
                     : what == 2 ? emdpo_llama_acts_create(&c, 60, 5, 1, &a)
                                 : emdpo_llama_kv_create(&c, 7, &kv);
            if (rc == EMDPO_OK) ok = 1;
            else clean &= rc == EMDPO_ERR_NOMEM && !m && !a && !kv;
            if (a) clean &= a->wpack != NULL && (a->att_scratch != NULL) == emdpo_gemm_kernel_active();
            emdpo_llama_free(m);
            emdpo_llama_acts_free(a);
            emdpo_llama_kv_free(kv);
            clean &= failalloc_live() == 0 && failalloc_size_errors() == 0;
            failalloc_uninstall();
        }
    }
    CHECK(clean);
    emdpo_llama_acts *a = NULL;
    CHECK_EQ_INT(emdpo_llama_acts_create(&c, 1, 13, 0, &a), EMDPO_ERR_INVALID_ARG); /* past max_seq_len */
    CHECK_EQ_INT(emdpo_llama_acts_create(&c, 0, 5, 0, &a), EMDPO_ERR_INVALID_ARG);
    c.max_seq_len = 1 << 30;
    CHECK_EQ_INT(emdpo_llama_acts_create(&c, 1 << 30, 1 << 30, 0, &a), EMDPO_ERR_LIMIT);
    CHECK(a == NULL);
}

int main(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/emdpo_llama_io_%ld.bin", (long)getpid());
    test_config();
    test_init();
    test_roundtrip(path, 1);
    test_roundtrip(path, 0);
    test_failalloc();
    return check_report("test_llama_io");
}
