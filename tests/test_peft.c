/* PEFT LoRA adapter directories (lm/io/peft.c) against the fixtures of
 * tools/lora_fixture.py, which mirrors PEFT's save_pretrained (names,
 * shapes, the config PEFT 0.18 writes) and computes in PyTorch the logits
 * of each base with its adapter:
 *   - each fixture reads with its config (r, alpha, rsLoRA, the targets a
 *     list, a regex) and its tensors (F32, BF16), a regex's layer-limited
 *     projection zero on the other layers;
 *   - the base with the adapter merged in gives PyTorch's logits to 1e-4
 *     of the largest, and these differ from the base's;
 *   - written back, the tensors have exactly the fixture's names, shapes
 *     and values (q_proj and k_proj rows permuted there and back), and the
 *     config the fields PEFT reads, each a real LoraConfig key;
 *   - write -> read round trips for F32 (identical), F16 and BF16 (each
 *     value rounded to its nearest), a second write giving the same bytes;
 *   - config variants read as PEFT reads them (null, "all-linear", exact
 *     module names, layers_to_transform with layers_pattern, regex with
 *     exclude_modules, features left off);
 *   - hostile configs and tensors are refused with the status, file and
 *     key or tensor they concern;
 *   - every allocation of reading and writing may fail cleanly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/half.h"
#include "base/json.h"
#include "check.h"
#include "testdata.h"
#include "drivers/merge.h"
#include "emdpo.h"
#include "failalloc.h"
#include "lm/engine/llama.h"
#include "lm/engine/llama_model.h"
#include "lm/engine/lora.h"
#include "lm/io/peft.h"
#include "lm/io/safetensors.h"

#define FIX "tests/fixtures/lora"
#define BASES "tests/fixtures/hf_families"

static char g_tmp[64];

static const char *tmp(const char *name) {
    static char buf[4][200];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", g_tmp, name);
    return buf[i];
}

static void rm_dir(const char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static int same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = testdata_slurp(a, &na), *y = testdata_slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static int same_adapter(const emdpo_lora *a, const emdpo_lora *b) {
    return a && b && a->n == b->n && a->config.r == b->config.r && a->config.alpha == b->config.alpha &&
           a->config.rslora == b->config.rslora && a->config.targets == b->config.targets &&
           memcmp(a->buf, b->buf, a->n * sizeof(float)) == 0;
}

/* ---- the fixtures ------------------------------------------------------- */

typedef struct fixture {
    const char *name, *base;
    int rslora;
    unsigned targets;
    unsigned char layers[2]; /* per layer: the projections the file holds */
} fixture;

#define ALL EMDPO_LORA_ALL_TARGETS
#define BIT(p) (1u << EMDPO_PROJ_##p)
static const fixture k_fixtures[] = {
    {"llama3_all", "llama3", 0, ALL, {ALL, ALL}},
    {"qwen2_rslora",
     "qwen2",
     1,
     BIT(Q) | BIT(V) | BIT(DOWN),
     {BIT(Q) | BIT(V) | BIT(DOWN), BIT(Q) | BIT(V) | BIT(DOWN)}},
    {"llama3_regex_bf16", "llama3", 0, BIT(K) | BIT(UP), {0, BIT(K) | BIT(UP)}},
    {"mistral_qko", "mistral", 0, BIT(Q) | BIT(K) | BIT(O), {BIT(Q) | BIT(K) | BIT(O), BIT(Q) | BIT(K) | BIT(O)}},
};

static emdpo_llama *load_base(const char *fam) {
    char path[160];
    snprintf(path, sizeof path, BASES "/%s", fam);
    emdpo_llama *m = NULL;
    emdpo_diag d;
    int rc = emdpo_llama_load(path, &m, &d);
    CHECK_MSG(rc == EMDPO_OK, "%s: %s: %s", fam, d.file, d.msg);
    return m;
}

/* Whether layer l of projection t is all zero. */
static int layer_zero(const emdpo_lora *lo, int t, int l) {
    int out, in;
    emdpo_llama_proj_shape(&lo->base, t, &out, &in);
    size_t r = (size_t)lo->config.r, na = r * (size_t)in, nb = (size_t)out * r;
    for (size_t i = 0; i < na; i++)
        if (lo->A[t][(size_t)l * na + i] != 0) return 0;
    for (size_t i = 0; i < nb; i++)
        if (lo->B[t][(size_t)l * nb + i] != 0) return 0;
    return 1;
}

/* The config's values, and a projection the file holds on some layers only
 * zero on the others. */
static void check_read(const fixture *f, const emdpo_lora *lo) {
    CHECK_MSG(lo->config.r == 4 && lo->config.alpha == 8.0f && lo->config.dropout == 0.0f &&
                  lo->config.rslora == f->rslora && lo->config.targets == f->targets,
              "%s: r %d alpha %g rslora %d targets %#x", f->name, lo->config.r, lo->config.alpha, lo->config.rslora,
              lo->config.targets);
    for (int t = 0; t < EMDPO_N_PROJ; t++)
        for (int l = 0; l < 2 && (f->targets >> t & 1); l++)
            CHECK_MSG(layer_zero(lo, t, l) == !(f->layers[l] >> t & 1), "%s: projection %d layer %d", f->name, t, l);
    CHECK_CLOSE(emdpo_lora_scale(&lo->config), f->rslora ? 4.0 : 2.0, 1e-7);
}

/* The base, then the base with the adapter merged, against PyTorch. */
static void check_logits(const fixture *f, emdpo_llama *m, const emdpo_lora *lo, const emdpo_safetensors *ref) {
    const char *ns = emdpo_st_metadata(ref, "n_seqs");
    int n_seqs = ns ? atoi(ns) : 0, V = m->config.vocab_size;
    CHECK(n_seqs >= 2);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) CHECK_EQ_INT(emdpo_lora_merge(lo, m), EMDPO_OK);
        for (int s = 0; s < n_seqs; s++) {
            char key[32];
            snprintf(key, sizeof key, "seq.%d", s);
            int tok[64], T = 0;
            const char *p = emdpo_st_metadata(ref, key);
            char *end;
            while (p && *p && T < 64) {
                tok[T++] = (int)strtol(p, &end, 10);
                p = end;
            }
            size_t n = 0, nb = 0;
            snprintf(key, sizeof key, "%s.%d", pass ? "logits" : "base_logits", s);
            float *want = testdata_st_read_all(ref, key, &n);
            snprintf(key, sizeof key, "%s.%d", pass ? "base_logits" : "logits", s);
            float *other = testdata_st_read_all(ref, key, &nb);
            CHECK_MSG(want && other && n == (size_t)T * V && nb == n, "%s: reference %s", f->name, key);
            emdpo_llama_acts *a = NULL;
            if (want && other && n == (size_t)T * V && nb == n &&
                emdpo_llama_acts_create(&m->config, 1, T, 0, &a) == EMDPO_OK &&
                emdpo_llama_forward(m, a, tok, NULL, 1, T) == EMDPO_OK) {
                double e = testdata_rel_err(a->logits, want, n);
                CHECK_MSG(e <= 1e-4, "%s: %s logits of sequence %d off by %g of the largest", f->name,
                          pass ? "merged" : "base", s, e);
                /* the adapter changes the logits: the test above can tell */
                CHECK_MSG(testdata_rel_err(other, want, n) > 1e-2, "%s: the adapter hardly changes sequence %d", f->name, s);
            } else {
                CHECK_MSG(0, "%s: forward", f->name);
            }
            emdpo_llama_acts_free(a);
            free(want);
            free(other);
        }
    }
}

/* Written back as F32, the tensors are the fixture's: same names, shapes
 * and values; a projection zero-filled on a layer adds that layer's zeros. */
static void check_written_tensors(const fixture *f, const char *ours_path) {
    char path[200];
    snprintf(path, sizeof path, FIX "/%s/" EMDPO_PEFT_WEIGHTS_NAME, f->name);
    emdpo_safetensors *theirs = NULL, *ours = NULL;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_st_open(path, &theirs, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_st_open(ours_path, &ours, &d), EMDPO_OK);
    if (!theirs || !ours) {
        emdpo_st_close(theirs);
        emdpo_st_close(ours);
        return;
    }
    size_t n_extra = 0;
    for (size_t i = 0; i < emdpo_st_count(ours); i++) {
        const emdpo_st_tensor *o = emdpo_st_tensor_at(ours, i), *t = emdpo_st_find(theirs, o->name);
        size_t n1 = 0, n2 = 0;
        float *a = testdata_st_read_all(ours, o->name, &n1), *b = t ? testdata_st_read_all(theirs, o->name, &n2) : NULL;
        if (!t) {
            n_extra++;
            int zero = a != NULL;
            for (size_t j = 0; a && j < n1; j++) zero &= a[j] == 0;
            CHECK_MSG(zero, "%s: %s is not in the fixture and not zero", f->name, o->name);
        } else {
            CHECK_MSG(o->rank == 2 && t->rank == 2 && o->shape[0] == t->shape[0] && o->shape[1] == t->shape[1],
                      "%s: %s shaped otherwise", f->name, o->name);
            CHECK_MSG(a && b && n1 == n2 && memcmp(a, b, n1 * sizeof *a) == 0, "%s: %s holds other values", f->name,
                      o->name);
        }
        free(a);
        free(b);
    }
    CHECK_MSG(emdpo_st_count(ours) == emdpo_st_count(theirs) + n_extra, "%s: %zu tensors written for %zu", f->name,
              emdpo_st_count(ours), emdpo_st_count(theirs));
    const char *fmt = emdpo_st_metadata(ours, "format");
    CHECK(fmt && strcmp(fmt, "pt") == 0);
    emdpo_st_close(theirs);
    emdpo_st_close(ours);
}

/* Every key written is a LoraConfig field PEFT wrote into the fixture, and
 * the values are the adapter's. */
static void check_written_config(const fixture *f, const emdpo_lora *lo, const char *ours_path) {
    char path[200];
    snprintf(path, sizeof path, FIX "/%s/" EMDPO_PEFT_CONFIG_NAME, f->name);
    size_t n1 = 0, n2 = 0;
    char *theirs = testdata_slurp(path, &n1), *ours = testdata_slurp(ours_path, &n2);
    emdpo_json_doc *d1 = NULL, *d2 = NULL;
    const emdpo_json *a = NULL, *b = NULL;
    emdpo_json_error err;
    CHECK(theirs && ours && emdpo_json_doc_create(&d1) == EMDPO_OK && emdpo_json_doc_create(&d2) == EMDPO_OK);
    CHECK(theirs && emdpo_json_parse(d1, theirs, n1, &a, &err) == EMDPO_OK);
    CHECK(ours && emdpo_json_parse(d2, ours, n2, &b, &err) == EMDPO_OK);
    if (a && b) {
        for (size_t i = 0; i < b->len; i++) {
            CHECK_MSG(emdpo_json_get(a, b->u.members[i].key), "%s: %s is not a key PEFT writes", f->name,
                      b->u.members[i].key);
            CHECK_MSG(i == 0 || strcmp(b->u.members[i - 1].key, b->u.members[i].key) < 0, "keys not sorted");
        }
        const emdpo_json *v;
        CHECK((v = emdpo_json_get(b, "peft_type")) && v->type == EMDPO_JSON_STRING && !strcmp(v->u.str, "LORA"));
        CHECK((v = emdpo_json_get(b, "task_type")) && v->type == EMDPO_JSON_STRING && !strcmp(v->u.str, "CAUSAL_LM"));
        CHECK((v = emdpo_json_get(b, "bias")) && v->type == EMDPO_JSON_STRING && !strcmp(v->u.str, "none"));
        CHECK((v = emdpo_json_get(b, "r")) && v->is_int && v->inum == lo->config.r);
        CHECK((v = emdpo_json_get(b, "lora_alpha")) && v->is_int && v->inum == 8);
        CHECK((v = emdpo_json_get(b, "lora_dropout")) && v->type == EMDPO_JSON_NUMBER && v->num == 0);
        CHECK((v = emdpo_json_get(b, "use_rslora")) && v->type == EMDPO_JSON_BOOL && v->boolean == f->rslora);
        static const char *const off[] = {"use_dora", "fan_in_fan_out"};
        for (int i = 0; i < 2; i++)
            CHECK_MSG((v = emdpo_json_get(b, off[i])) && v->type == EMDPO_JSON_BOOL && !v->boolean, "%s", off[i]);
        static const char *const on[] = {"init_lora_weights", "inference_mode"};
        for (int i = 0; i < 2; i++)
            CHECK_MSG((v = emdpo_json_get(b, on[i])) && v->type == EMDPO_JSON_BOOL && v->boolean, "%s", on[i]);
        static const char *const null[] = {"modules_to_save", "layers_to_transform", "layers_pattern",
                                           "layer_replication", "megatron_config"};
        for (int i = 0; i < 5; i++)
            CHECK_MSG((v = emdpo_json_get(b, null[i])) && v->type == EMDPO_JSON_NULL, "%s", null[i]);
        CHECK((v = emdpo_json_get(b, "rank_pattern")) && v->type == EMDPO_JSON_OBJECT && !v->len);
        CHECK((v = emdpo_json_get(b, "alpha_pattern")) && v->type == EMDPO_JSON_OBJECT && !v->len);
        CHECK((v = emdpo_json_get(b, "base_model_name_or_path")) && v->type == EMDPO_JSON_STRING &&
              !strcmp(v->u.str, "the-base"));
        static const char *const names[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                            "gate_proj", "up_proj", "down_proj"};
        v = emdpo_json_get(b, "target_modules");
        unsigned got = 0;
        for (size_t i = 0; v && v->type == EMDPO_JSON_ARRAY && i < v->len; i++)
            for (int t = 0; t < EMDPO_N_PROJ; t++)
                if (v->u.elems[i].type == EMDPO_JSON_STRING && !strcmp(v->u.elems[i].u.str, names[t])) got |= 1u << t;
        CHECK_MSG(v && got == f->targets && v->len == (size_t)__builtin_popcount(f->targets), "%s: target_modules",
                  f->name);
    }
    emdpo_json_doc_free(d1);
    emdpo_json_doc_free(d2);
    free(theirs);
    free(ours);
}

static void check_fixture(const fixture *f) {
    emdpo_llama *m = load_base(f->base);
    char path[200];
    snprintf(path, sizeof path, FIX "/%s_ref.safetensors", f->name);
    emdpo_safetensors *ref = NULL;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_st_open(path, &ref, &d), EMDPO_OK);
    snprintf(path, sizeof path, FIX "/%s", f->name);
    emdpo_lora *lo = NULL;
    int rc = m ? emdpo_peft_read(path, &m->config, &lo, &d) : EMDPO_ERR_IO;
    CHECK_MSG(rc == EMDPO_OK, "%s: %s: %s", f->name, d.file, d.msg);
    if (m && ref && lo) {
        check_read(f, lo);
        CHECK_EQ_INT(emdpo_peft_write(lo, tmp("w"), EMDPO_ST_F32, "the-base", &d), EMDPO_OK);
        check_written_tensors(f, tmp("w/" EMDPO_PEFT_WEIGHTS_NAME));
        check_written_config(f, lo, tmp("w/" EMDPO_PEFT_CONFIG_NAME));
        emdpo_lora *back = NULL;
        CHECK_EQ_INT(emdpo_peft_read(tmp("w"), &m->config, &back, &d), EMDPO_OK);
        CHECK_MSG(same_adapter(lo, back), "%s: write -> read is not the identity", f->name);
        emdpo_lora_free(back);
        check_logits(f, m, lo, ref);
    }
    rm_dir(tmp("w"));
    emdpo_lora_free(lo);
    emdpo_st_close(ref);
    emdpo_llama_free(m);
}

/* ---- round trips ------------------------------------------------------------ */

static void test_dtypes(void) {
    emdpo_llama *m = load_base("llama3");
    emdpo_lora *lo = NULL;
    emdpo_diag d;
    if (!m || emdpo_peft_read(FIX "/llama3_all", &m->config, &lo, &d) != EMDPO_OK) {
        CHECK(0);
        emdpo_llama_free(m);
        return;
    }
    static const emdpo_st_dtype dts[3] = {EMDPO_ST_F32, EMDPO_ST_F16, EMDPO_ST_BF16};
    for (int k = 0; k < 3; k++) {
        emdpo_lora *a = NULL, *b = NULL;
        CHECK_EQ_INT(emdpo_peft_write(lo, tmp("rt1"), dts[k], NULL, &d), EMDPO_OK);
        CHECK_EQ_INT(emdpo_peft_read(tmp("rt1"), &m->config, &a, &d), EMDPO_OK);
        emdpo_safetensors *st = NULL;
        CHECK_EQ_INT(emdpo_st_open(tmp("rt1/" EMDPO_PEFT_WEIGHTS_NAME), &st, &d), EMDPO_OK);
        CHECK(st && emdpo_st_count(st) == 28 && emdpo_st_tensor_at(st, 0)->dtype == dts[k]);
        emdpo_st_close(st);
        CHECK_EQ_INT(emdpo_peft_write(a, tmp("rt2"), dts[k], NULL, &d), EMDPO_OK);
        CHECK_EQ_INT(emdpo_peft_read(tmp("rt2"), &m->config, &b, &d), EMDPO_OK);
        CHECK_MSG(same_adapter(a, b), "%s: read -> write -> read changed the adapter", emdpo_st_dtype_name(dts[k]));
        CHECK_MSG(same_file(tmp("rt1/" EMDPO_PEFT_WEIGHTS_NAME), tmp("rt2/" EMDPO_PEFT_WEIGHTS_NAME)) &&
                      same_file(tmp("rt1/" EMDPO_PEFT_CONFIG_NAME), tmp("rt2/" EMDPO_PEFT_CONFIG_NAME)),
                  "%s: the files differ", emdpo_st_dtype_name(dts[k]));
        int bad = !a;
        for (size_t i = 0; a && i < lo->n; i++) {
            float w = lo->buf[i];
            float r = dts[k] == EMDPO_ST_F32   ? w
                      : dts[k] == EMDPO_ST_F16 ? emdpo_half_to_float(emdpo_float_to_half(w))
                                               : emdpo_bf16_to_float(emdpo_float_to_bf16(w));
            bad += a->buf[i] != r;
        }
        CHECK_MSG(!bad, "%s: %d values are not the nearest", emdpo_st_dtype_name(dts[k]), bad);
        emdpo_lora_free(a);
        emdpo_lora_free(b);
    }
    CHECK_EQ_INT(emdpo_peft_write(lo, tmp("rt1"), EMDPO_ST_F64, NULL, &d), EMDPO_ERR_INVALID_ARG);
    /* dropout and a fractional alpha survive the config */
    lo->config.dropout = 0.05f;
    lo->config.alpha = 16.5f;
    lo->config.rslora = 1;
    emdpo_lora *a = NULL;
    CHECK_EQ_INT(emdpo_peft_write(lo, tmp("rt1"), EMDPO_ST_F32, NULL, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_peft_read(tmp("rt1"), &m->config, &a, &d), EMDPO_OK);
    CHECK(a && a->config.dropout == 0.05f && a->config.alpha == 16.5f && a->config.rslora == 1);
    size_t n = 0;
    char *text = testdata_slurp(tmp("rt1/" EMDPO_PEFT_CONFIG_NAME), &n);
    CHECK(text && strstr(text, "\"lora_dropout\": 0.05,") && strstr(text, "\"lora_alpha\": 16.5,") &&
          strstr(text, "\"base_model_name_or_path\": null,"));
    free(text);
    emdpo_lora_free(a);
    rm_dir(tmp("rt1"));
    rm_dir(tmp("rt2"));
    emdpo_lora_free(lo);
    emdpo_llama_free(m);
}

/* ---- config variants and hostile files ------------------------------------ */

/* An adapter of every projection on llama3's base, A and B nonzero, written
 * to tmp("h"); tensors then rewritten by the cases. */
static emdpo_lora *g_ad;
static emdpo_llama *g_base;

static void write_adapter(void) {
    emdpo_diag d;
    rm_dir(tmp("h"));
    CHECK_EQ_INT(emdpo_peft_write(g_ad, tmp("h"), EMDPO_ST_F32, NULL, &d), EMDPO_OK);
}

/* Rewrites tmp("h")'s tensors: keep(name) says which stay; extra (may be
 * NULL) is added with shape (s0, s1), or (s0) when s1 is 0; reshape (may be NULL) is written
 * with its dimensions swapped. */
static void rewrite_tensors(int (*keep)(const char *name, const void *ctx), const void *ctx, const char *extra, int s0,
                            int s1, const char *reshape) {
    const char *path = tmp("h/" EMDPO_PEFT_WEIGHTS_NAME);
    emdpo_safetensors *st = NULL;
    emdpo_diag d;
    if (emdpo_st_open(path, &st, &d) != EMDPO_OK) {
        CHECK(0);
        return;
    }
    size_t n = emdpo_st_count(st), k = 0;
    emdpo_st_out *outs = calloc(n + 1, sizeof *outs);
    float **bufs = calloc(n + 1, sizeof *bufs);
    char **names = calloc(n + 1, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        const emdpo_st_tensor *t = emdpo_st_tensor_at(st, i);
        if (keep && !keep(t->name, ctx)) continue;
        size_t c = 0;
        bufs[k] = testdata_st_read_all(st, t->name, &c);
        names[k] = strdup(t->name);
        outs[k].name = names[k];
        outs[k].rank = 2;
        int swap = reshape && strcmp(reshape, t->name) == 0;
        outs[k].shape[0] = t->shape[swap];
        outs[k].shape[1] = t->shape[!swap];
        outs[k].data = bufs[k];
        k++;
    }
    emdpo_st_close(st);
    if (extra) {
        /* s1 0: a vector of s0 */
        bufs[k] = calloc((size_t)s0 * (s1 ? s1 : 1), sizeof(float));
        outs[k] = (emdpo_st_out){.name = extra, .rank = s1 ? 2 : 1, .shape = {s0, s1}, .data = bufs[k]};
        k++;
    }
    CHECK_EQ_INT(emdpo_st_write(path, outs, k, EMDPO_ST_F32, NULL, 0, &d), EMDPO_OK);
    for (size_t i = 0; i < k; i++) {
        free(bufs[i]);
        free(names[i]);
    }
    free(outs);
    free(bufs);
    free(names);
}

/* Keeps the tensors of the projections and layers in mask[l]. */
static int keep_mask(const char *name, const void *ctx) {
    const unsigned char *mask = ctx;
    static const char *const proj[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    int l = name[sizeof "base_model.model.model.layers." - 1] - '0';
    for (int t = 0; t < EMDPO_N_PROJ; t++) {
        char needle[32];
        snprintf(needle, sizeof needle, ".%s.", proj[t]);
        if (strstr(name, needle)) return mask[l] >> t & 1;
    }
    return 0;
}

static int drop_one(const char *name, const void *ctx) { return strcmp(name, (const char *)ctx) != 0; }

/* The config {"peft_type": "LORA", "r": 4, "lora_alpha": 8, MEMBERS}. */
static void write_config(const char *members) {
    char text[2048];
    snprintf(text, sizeof text, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8%s%s}", *members ? ", " : "",
             members);
    write_text(tmp("h/" EMDPO_PEFT_CONFIG_NAME), text);
}

/* Config members whose reading keeps mask[l] of the tensors on each layer. */
static void accepts(const char *members, unsigned char l0, unsigned char l1) {
    write_adapter();
    unsigned char mask[2] = {l0, l1};
    rewrite_tensors(keep_mask, mask, NULL, 0, 0, NULL);
    write_config(members);
    emdpo_lora *lo = NULL;
    emdpo_diag d;
    int rc = emdpo_peft_read(tmp("h"), &g_base->config, &lo, &d);
    CHECK_MSG(rc == EMDPO_OK, "%s: rc %d: %s: %s", members, rc, d.file, d.msg);
    if (!lo) return;
    CHECK_MSG(lo->config.targets == (unsigned)(l0 | l1), "%s: targets %#x", members, lo->config.targets);
    for (int t = 0; t < EMDPO_N_PROJ; t++) {
        if (!lo->A[t]) continue;
        int out, in;
        emdpo_llama_proj_shape(&g_base->config, t, &out, &in);
        size_t na = 4 * (size_t)in, nb = (size_t)out * 4;
        for (int l = 0; l < 2; l++) {
            int held = mask[l] >> t & 1;
            int same = memcmp(lo->A[t] + l * na, g_ad->A[t] + l * na, na * sizeof(float)) == 0 &&
                       memcmp(lo->B[t] + l * nb, g_ad->B[t] + l * nb, nb * sizeof(float)) == 0;
            CHECK_MSG(held ? same : layer_zero(lo, t, l), "%s: projection %d, layer %d", members, t, l);
        }
    }
    emdpo_lora_free(lo);
}

static void test_variants(void) {
    const unsigned char all = ALL, qv = BIT(Q) | BIT(V);
    accepts("\"target_modules\": null", qv, qv);
    accepts("", qv, qv);
    accepts("\"target_modules\": \"all-linear\"", all, all);
    accepts("\"target_modules\": \"ALL-Linear\", \"exclude_modules\": \".*mlp.*\"", BIT(Q) | BIT(K) | BIT(V) | BIT(O),
            BIT(Q) | BIT(K) | BIT(V) | BIT(O));
    accepts("\"target_modules\": [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", "
            "\"down_proj\"], \"task_type\": \"CAUSAL_LM\", \"bias\": \"none\", \"use_dora\": false, "
            "\"modules_to_save\": null, \"rank_pattern\": {\"q_proj\": 4}, \"alpha_pattern\": {}, "
            "\"fancy_new_thing\": null, \"other_new_thing\": [], \"init_lora_weights\": \"gaussian\"",
            all, all);
    accepts("\"target_modules\": [\"model.layers.0.self_attn.q_proj\", \"mlp.down_proj\"]", BIT(Q) | BIT(DOWN),
            BIT(DOWN));
    accepts("\"target_modules\": [\"q_proj\", \"up_proj\"], \"layers_to_transform\": [1]", 0, BIT(Q) | BIT(UP));
    accepts("\"target_modules\": [\"q_proj\"], \"layers_to_transform\": 0, \"layers_pattern\": \"layers\"", BIT(Q), 0);
    accepts("\"target_modules\": [\"q_proj\"], \"layers_to_transform\": [1], \"layers_pattern\": [\"h\", \"layers\"]",
            0, BIT(Q));
    /* a name equal to an entry is targeted whatever the layers */
    accepts("\"target_modules\": [\"model.layers.0.self_attn.q_proj\", \"v_proj\"], \"layers_to_transform\": [1]",
            BIT(Q), BIT(V));
    accepts("\"target_modules\": [\"q_proj\"], \"layers_to_transform\": []", BIT(Q), BIT(Q));
    accepts("\"target_modules\": \".*\\\\.(q|v)_proj\", \"exclude_modules\": [\"model.layers.1.self_attn.v_proj\"]", qv,
            BIT(Q));
    accepts("\"target_modules\": \"model\\\\.layers\\\\.1\\\\.mlp\\\\.(gate|up)_proj\"", 0, BIT(GATE) | BIT(UP));
}

/* Each hostile case: members of the config (NULL: a whole text), tensors
 * rewritten, the status, the file it names and a word of the message. */
typedef struct hostile {
    const char *members, *text;
    const char *drop, *extra, *reshape;
    int e0, e1;
    int rc;
    const char *file, *word;
} hostile;

static void refuses(const hostile *h) {
    write_adapter();
    if (h->drop || h->extra || h->reshape)
        rewrite_tensors(h->drop ? drop_one : NULL, h->drop, h->extra, h->e0, h->e1, h->reshape);
    if (h->text)
        write_text(tmp("h/" EMDPO_PEFT_CONFIG_NAME), h->text);
    else
        write_config(h->members ? h->members : "\"target_modules\": \"all-linear\"");
    emdpo_lora *lo = NULL;
    emdpo_diag d;
    int rc = emdpo_peft_read(tmp("h"), &g_base->config, &lo, &d);
    const char *what = h->members ? h->members
                       : h->text  ? h->text
                       : h->drop  ? h->drop
                       : h->extra ? h->extra
                                  : h->reshape;
    CHECK_MSG(rc == h->rc && !lo, "%s: rc %d, not %d (%s)", what, rc, h->rc, d.msg);
    CHECK_MSG(strstr(d.file, h->file) != NULL, "%s: the file is %s", what, d.file);
    CHECK_MSG(strstr(d.msg, h->word) != NULL, "%s: the message \"%s\" does not say %s", what, d.msg, h->word);
    emdpo_lora_free(lo);
}

static void test_hostile(void) {
    const char *cfg = EMDPO_PEFT_CONFIG_NAME, *st = EMDPO_PEFT_WEIGHTS_NAME;
    const char *qb1 = "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight";
    const char *kb0 = "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight";
    const hostile cases[] = {
        {.text = "{\"peft_type\": \"LORA\",", .rc = EMDPO_ERR_PARSE, .file = cfg, .word = "JSON"},
        {.text = "[1, 2]", .rc = EMDPO_ERR_PARSE, .file = cfg, .word = "object"},
        {.text = "{\"r\": 4}", .rc = EMDPO_ERR_PARSE, .file = cfg, .word = "peft_type"},
        {.text = "{\"peft_type\": \"IA3\"}", .rc = EMDPO_ERR_UNSUPPORTED, .file = cfg, .word = "peft_type"},
        {.members = "\"task_type\": \"SEQ_CLS\"", .rc = EMDPO_ERR_UNSUPPORTED, .file = cfg, .word = "task_type"},
        {.members = "\"use_dora\": true", .rc = EMDPO_ERR_UNSUPPORTED, .file = cfg, .word = "use_dora"},
        {.members = "\"bias\": \"all\"", .rc = EMDPO_ERR_UNSUPPORTED, .file = cfg, .word = "bias"},
        {.members = "\"modules_to_save\": [\"lm_head\"]",
         .rc = EMDPO_ERR_UNSUPPORTED,
         .file = cfg,
         .word = "modules_to_save"},
        {.members = "\"fan_in_fan_out\": true", .rc = EMDPO_ERR_UNSUPPORTED, .file = cfg, .word = "fan_in_fan_out"},
        {.members = "\"lora_bias\": true", .rc = EMDPO_ERR_UNSUPPORTED, .file = cfg, .word = "lora_bias"},
        {.members = "\"rank_pattern\": {\"q_proj\": 8}",
         .rc = EMDPO_ERR_UNSUPPORTED,
         .file = cfg,
         .word = "rank_pattern"},
        {.members = "\"alpha_pattern\": {\"^model.layers.0\": 16}",
         .rc = EMDPO_ERR_UNSUPPORTED,
         .file = cfg,
         .word = "alpha_pattern"},
        {.members = "\"init_lora_weights\": \"pissa_niter_4\"",
         .rc = EMDPO_ERR_UNSUPPORTED,
         .file = cfg,
         .word = "init_lora_weights"},
        {.members = "\"trainable_token_indices\": [3, 4]",
         .rc = EMDPO_ERR_UNSUPPORTED,
         .file = cfg,
         .word = "trainable_token_indices"},
        {.members = "\"fancy_new_thing\": {\"on\": true}",
         .rc = EMDPO_ERR_UNSUPPORTED,
         .file = cfg,
         .word = "fancy_new_thing"},
        {.members = "\"target_modules\": [\"q_proj\", \"lm_head\"]",
         .rc = EMDPO_ERR_UNSUPPORTED,
         .file = cfg,
         .word = "lm_head"},
        {.members = "\"target_modules\": [\"embed_tokens\"]",
         .rc = EMDPO_ERR_UNSUPPORTED,
         .file = cfg,
         .word = "model.embed_tokens"},
        {.members = "\"target_modules\": \".*layers\\\\.0.*\"",
         .rc = EMDPO_ERR_UNSUPPORTED,
         .file = cfg,
         .word = "model.layers.0"},
        {.members = "\"target_modules\": [\"mlp\"]", .rc = EMDPO_ERR_UNSUPPORTED, .file = cfg, .word = "mlp"},
        {.members = "\"target_modules\": \"q_proj\"", .rc = EMDPO_ERR_PARSE, .file = cfg, .word = "none"},
        {.members = "\"target_modules\": \"(q_proj\"", .rc = EMDPO_ERR_PARSE, .file = cfg, .word = "target_modules"},
        {.members = "\"target_modules\": [\"q_proj\", 3]",
         .rc = EMDPO_ERR_PARSE,
         .file = cfg,
         .word = "target_modules"},
        {.members = "\"target_modules\": \".*q_proj\", \"layers_to_transform\": [0]",
         .rc = EMDPO_ERR_PARSE,
         .file = cfg,
         .word = "layers_to_transform"},
        {.members = "\"target_modules\": [\"q_proj\"], \"layers_pattern\": \"layers\"",
         .rc = EMDPO_ERR_PARSE,
         .file = cfg,
         .word = "layers_pattern"},
        {.members = "\"target_modules\": [\"q_proj\"], \"layers_to_transform\": [1], \"layers_pattern\": \"h\"",
         .rc = EMDPO_ERR_PARSE,
         .file = cfg,
         .word = "none"},
        {.text = "{\"peft_type\": \"LORA\", \"target_modules\": \"all-linear\", \"r\": 0}",
         .rc = EMDPO_ERR_PARSE,
         .file = cfg,
         .word = "r "},
        {.members = "\"target_modules\": \"all-linear\", \"lora_dropout\": 1.0",
         .rc = EMDPO_ERR_PARSE,
         .file = cfg,
         .word = "lora_dropout"},
        {.members = "\"target_modules\": \"all-linear\", \"use_rslora\": \"yes\"",
         .rc = EMDPO_ERR_PARSE,
         .file = cfg,
         .word = "use_rslora"},
        /* a regex that backtracks without end is cut off */
        {.members = "\"target_modules\": \"(\\\\w|\\\\w\\\\w|.)*\\\\d\\\\d\"",
         .rc = EMDPO_ERR_LIMIT,
         .file = cfg,
         .word = "target_modules"},
        /* the tensors against the config and the base */
        {.text = "{\"peft_type\": \"LORA\", \"target_modules\": \"all-linear\", \"r\": 8}",
         .rc = EMDPO_ERR_PARSE,
         .file = st,
         .word = "shape [4, 16], expected [8, 16]"},
        {.drop = qb1, .rc = EMDPO_ERR_PARSE, .file = st, .word = "layers.1.mlp.down_proj.lora_B.weight\" is missing"},
        {.reshape = kb0,
         .rc = EMDPO_ERR_PARSE,
         .file = st,
         .word = "layers.0.self_attn.k_proj.lora_B.weight\" has shape"},
        {.extra = "base_model.model.lm_head.lora_A.weight",
         .e0 = 4,
         .e1 = 16,
         .rc = EMDPO_ERR_PARSE,
         .file = st,
         .word = "lm_head"},
        {.extra = "base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight",
         .e0 = 4,
         .e1 = 16,
         .rc = EMDPO_ERR_PARSE,
         .file = st,
         .word = "layers.2"},
        {.extra = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight",
         .e0 = 4,
         .e1 = 16,
         .rc = EMDPO_ERR_PARSE,
         .file = st,
         .word = "default"},
        {.extra = "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
         .e0 = 16,
         .rc = EMDPO_ERR_UNSUPPORTED,
         .file = st,
         .word = "DoRA"},
        {.members = "\"target_modules\": [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\"]",
         .rc = EMDPO_ERR_PARSE,
         .file = st,
         .word = "does not target model.layers.0.mlp.down_proj"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) refuses(&cases[i]);

    /* the files themselves */
    emdpo_lora *lo = NULL;
    emdpo_diag d;
    write_adapter();
    remove(tmp("h/" EMDPO_PEFT_WEIGHTS_NAME));
    write_text(tmp("h/adapter_model.bin"), "PK");
    CHECK_EQ_INT(emdpo_peft_read(tmp("h"), &g_base->config, &lo, &d), EMDPO_ERR_UNSUPPORTED);
    CHECK(strstr(d.file, "adapter_model.bin") && strstr(d.msg, "safe_serialization"));
    remove(tmp("h/adapter_model.bin"));
    CHECK_EQ_INT(emdpo_peft_read(tmp("h"), &g_base->config, &lo, &d), EMDPO_ERR_IO);
    CHECK(strstr(d.file, EMDPO_PEFT_WEIGHTS_NAME) != NULL);
    write_text(tmp("h/" EMDPO_PEFT_WEIGHTS_NAME), "not a safetensors file");
    CHECK_EQ_INT(emdpo_peft_read(tmp("h"), &g_base->config, &lo, &d), EMDPO_ERR_PARSE);
    CHECK(strstr(d.file, EMDPO_PEFT_WEIGHTS_NAME) != NULL);
    remove(tmp("h/" EMDPO_PEFT_CONFIG_NAME));
    CHECK_EQ_INT(emdpo_peft_read(tmp("h"), &g_base->config, &lo, &d), EMDPO_ERR_IO);
    CHECK(strstr(d.file, EMDPO_PEFT_CONFIG_NAME) != NULL);
    CHECK_EQ_INT(emdpo_peft_read(tmp("nowhere"), &g_base->config, &lo, &d), EMDPO_ERR_IO);
    CHECK_EQ_INT(emdpo_peft_read(NULL, &g_base->config, &lo, &d), EMDPO_ERR_INVALID_ARG);
    CHECK(lo == NULL);
    /* an adapter for another shape does not merge */
    emdpo_llama *other = load_base("mistral");
    CHECK(other && emdpo_lora_merge(g_ad, other) == EMDPO_ERR_INVALID_ARG);
    emdpo_llama_free(other);
    rm_dir(tmp("h"));
}

/* ---- merging into a file ---------------------------------------------------- */

/* emdpo_merge_save writes, in the base's format, the model that merging in
 * memory gives: a Hugging Face directory and a llama2.c checkpoint (the
 * GGUF one is tests/cli_merge.sh's). */
static void test_merge_save(void) {
    emdpo_diag d;
    emdpo_llama *m = load_base("llama3"), *back = NULL;
    emdpo_lora *lo = NULL;
    if (!m || emdpo_peft_read(FIX "/llama3_all", &m->config, &lo, &d) != EMDPO_OK) {
        CHECK(0);
        emdpo_llama_free(m);
        return;
    }
    emdpo_llama *want = load_base("llama3");
    CHECK(want && emdpo_lora_merge(lo, want) == EMDPO_OK);
    CHECK_EQ_INT(emdpo_merge_save(m, lo, tmp("hf"), EMDPO_DTYPE_AUTO, NULL, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_load(tmp("hf"), &back, &d), EMDPO_OK);
    CHECK(back && want && back->num_params == want->num_params &&
          memcmp(back->param_buf, want->param_buf, want->num_params * sizeof(float)) == 0);
    emdpo_llama_free(back);
    emdpo_llama_free(m);
    emdpo_llama_free(want);
    rm_dir(tmp("hf"));

    /* llama2.c: plain Llama of the adapter's shapes */
    m = want = back = NULL;
    const char *spec = "dim=16,hidden=24,layers=2,heads=2,kv_heads=1,vocab=40,seq_len=32";
    CHECK_EQ_INT(emdpo_llama_from_spec(spec, 7, &m, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_save_llama2c(m, tmp("base.bin"), &d), EMDPO_OK);
    emdpo_llama_free(m);
    m = NULL;
    CHECK_EQ_INT(emdpo_llama_load(tmp("base.bin"), &m, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_load(tmp("base.bin"), &want, &d), EMDPO_OK);
    CHECK(m && want && emdpo_lora_merge(lo, want) == EMDPO_OK);
    CHECK_EQ_INT(emdpo_merge_save(m, lo, tmp("merged.bin"), EMDPO_DTYPE_BF16, NULL, &d), EMDPO_ERR_INVALID_ARG);
    CHECK(strstr(d.msg, "float32") != NULL);
    CHECK_EQ_INT(emdpo_merge_save(m, lo, tmp("merged.bin"), EMDPO_DTYPE_AUTO, NULL, &d), EMDPO_OK);
    CHECK_EQ_INT(emdpo_llama_load(tmp("merged.bin"), &back, &d), EMDPO_OK);
    CHECK(back && want && back->num_params == want->num_params &&
          memcmp(back->param_buf, want->param_buf, want->num_params * sizeof(float)) == 0);
    emdpo_llama_free(back);
    emdpo_llama_free(m);
    emdpo_llama_free(want);
    emdpo_lora_free(lo);
    remove(tmp("base.bin"));
    remove(tmp("merged.bin"));
}

/* ---- allocation failures ---------------------------------------------------- */

static void test_failalloc(void) {
    long points = 0;
    for (int op = 0; op < 2; op++) {
        int done = 0;
        for (long k = 0; k < 4096 && !done; k++) {
            failalloc_install(k, 0);
            emdpo_diag d;
            int rc;
            if (op == 0) {
                emdpo_lora *lo = NULL;
                rc = emdpo_peft_read(FIX "/llama3_regex_bf16", &g_base->config, &lo, &d);
                emdpo_lora_free(lo);
            } else {
                rc = emdpo_peft_write(g_ad, tmp("fa"), EMDPO_ST_BF16, "x", &d);
            }
            CHECK_MSG(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM, "op %d, failure %ld: rc %d (%s)", op, k, rc, d.msg);
            CHECK_MSG(failalloc_live() == 0, "op %d, failure %ld: %ld blocks leaked", op, k, failalloc_live());
            CHECK_EQ_INT(failalloc_size_errors(), 0);
            done = rc == EMDPO_OK && failalloc_count() <= k;
            points++;
            failalloc_uninstall();
        }
        CHECK_MSG(done, "op %d never succeeded", op);
    }
    CHECK(points > 10);
    rm_dir(tmp("fa"));
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/emdpo_peft_XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    for (size_t i = 0; i < sizeof k_fixtures / sizeof *k_fixtures; i++) check_fixture(&k_fixtures[i]);
    test_dtypes();
    test_merge_save();

    g_base = load_base("llama3");
    emdpo_lora_config c;
    emdpo_lora_config_init(&c);
    c.r = 4;
    c.alpha = 8;
    if (g_base && emdpo_lora_create(&g_base->config, &c, &g_ad) == EMDPO_OK) {
        for (size_t i = 0; i < g_ad->n; i++) g_ad->buf[i] = (float)((i * 7919 % 1000) + 1) / 1000.0f;
        test_variants();
        test_hostile();
        test_failalloc();
    } else {
        CHECK(0);
    }
    emdpo_lora_free(g_ad);
    emdpo_llama_free(g_base);
    rmdir(g_tmp);
    return check_report("test_peft");
}
