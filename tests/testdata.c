#include "testdata.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

emdpo_data *testdata_random_decisions(int n_annot, int m, int p, uint64_t seed) {
    emdpo_data_builder *b;
    if (emdpo_data_builder_create(p, &b)) return NULL;
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, 0);
    double x[4 * 16];
    char name[32];
    for (int i = 0; i < n_annot; i++) {
        snprintf(name, sizeof name, "a%d", i);
        for (int j = 0; j < m; j++) {
            int n = 2 + (int)emdpo_rng_below(&r, 3);
            int stages = 1 + (int)emdpo_rng_below(&r, (uint64_t)(n - 1));
            for (int q = 0; q < n * p; q++) x[q] = emdpo_rng_normal(&r);
            if (emdpo_data_builder_add(b, name, NULL, NULL, n, stages, x, NULL)) {
                emdpo_data_builder_free(b);
                return NULL;
            }
        }
    }
    emdpo_data *d = NULL;
    emdpo_data_builder_finish(b, &d);
    return d;
}

/* ---- a tokenizer image built in memory ---------------------------------- */

typedef struct image {
    unsigned char *p;
    size_t len, cap;
} image;

static void put(image *im, const void *s, size_t n) {
    if (im->len + n > im->cap) {
        im->cap = (im->len + n) * 2;
        im->p = realloc(im->p, im->cap);
        if (!im->p) abort();
    }
    memcpy(im->p + im->len, s, n);
    im->len += n;
}

static void put_i32(image *im, int32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(im, b, 4);
}

static void put_entry(image *im, float score, const char *s, size_t n) {
    uint32_t u;
    memcpy(&u, &score, 4);
    put_i32(im, (int32_t)u);
    put_i32(im, (int32_t)n);
    put(im, s, n);
}

emdpo_tokenizer *testdata_letter_tokenizer(void) {
    image im = {0};
    put_i32(&im, 16);
    put_entry(&im, 0, "<unk>", 5);
    put_entry(&im, 0, "\n<s>\n", 5);
    put_entry(&im, 0, "\n</s>\n", 6);
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        put_entry(&im, 0, s, 6);
    }
    put_entry(&im, 0, " ", 1);
    for (int c = 'a'; c <= 'z'; c++) {
        char s[2] = {(char)c, 0}, t[3] = {' ', (char)c, 0};
        put_entry(&im, 0, s, 1);
        put_entry(&im, 1, t, 2);
    }
    emdpo_tokenizer *t = NULL;
    emdpo_diag diag;
    int rc = emdpo_tokenizer_parse(im.p, im.len, TESTDATA_LETTER_VOCAB, "test", &t, &diag);
    free(im.p);
    return rc ? NULL : t;
}

char *testdata_slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n - 1, fp)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown) free(buf);
            buf = grown;
        }
    }
    fclose(fp);
    if (buf) buf[n] = '\0';
    *len = n;
    return buf;
}

int testdata_llama_cpp_pairs(const emdpo_tokenizer *t, const char *dir, const char *name, int (*skip)(const char *),
                             int *bad) {
    char pi[512], po[512];
    snprintf(pi, sizeof pi, "%s/%s.inp", dir, name);
    snprintf(po, sizeof po, "%s/%s.out", dir, name);
    size_t ni, no;
    char *inp = testdata_slurp(pi, &ni), *out = testdata_slurp(po, &no);
    *bad = 0;
    if (!inp || !out) {
        free(inp);
        free(out);
        return -1;
    }
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *s = inp, *line = out;
    int cases = 0;
    while (*s && *line) {
        char *end = strstr(s, sep);
        if (!end) break;
        *end = '\0';
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (!skip || !skip(s)) {
            int want[4096], nw = 0, *ids = NULL;
            size_t n = 0;
            for (char *p = line, *q; nw < 4096; p = q) {
                long v = strtol(p, &q, 10);
                if (q == p) break;
                want[nw++] = (int)v;
            }
            int rc = emdpo_tokenizer_encode_alloc(t, s, strlen(s), 0, &ids, &n);
            if (rc || (int)n != nw || (n && memcmp(ids, want, n * sizeof *ids) != 0)) {
                if ((*bad)++ < 3) printf("  %s: case %d (\"%.40s\") differs from llama.cpp\n", name, cases, s);
            }
            emdpo_ids_free(ids, n);
            cases++;
        }
        s = end + strlen(sep);
        line = nl ? nl + 1 : line + strlen(line);
    }
    free(inp);
    free(out);
    return cases;
}

double testdata_rel_err(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 1e-30;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / den;
}

int testdata_st_meta_ids(const emdpo_safetensors *st, const char *key, int *ids, int cap) {
    const char *s = emdpo_st_metadata(st, key);
    int n = 0;
    char *end;
    while (s && *s && n < cap) {
        ids[n++] = (int)strtol(s, &end, 10);
        s = end;
    }
    return n;
}

double testdata_st_meta_num(const emdpo_safetensors *st, const char *key) {
    const char *s = emdpo_st_metadata(st, key);
    return s ? strtod(s, NULL) : NAN;
}

float *testdata_st_read_all(const emdpo_safetensors *st, const char *name, size_t *n) {
    const emdpo_st_tensor *t = emdpo_st_find(st, name);
    if (!t) return NULL;
    emdpo_diag d;
    float *buf = malloc((t->numel ? t->numel : 1) * sizeof *buf);
    if (buf && emdpo_st_read_f32(st, name, t->rank, t->shape, buf, &d)) {
        free(buf);
        return NULL;
    }
    *n = t->numel;
    return buf;
}
