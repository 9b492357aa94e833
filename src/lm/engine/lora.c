#include "lm/engine/lora.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/alloc.h"
#include "base/rng.h"
#include "emdpo.h"

void emdpo_lora_config_init(emdpo_lora_config *c) {
    if (c) *c = (emdpo_lora_config){.r = 16, .alpha = 32.0f, .dropout = 0.0f, .rslora = 0, .targets = EMDPO_LORA_ALL_TARGETS};
}

/* PEFT's module names, in EMDPO_PROJ_* order. */
static const char *const k_modules[EMDPO_N_PROJ] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                     "gate_proj", "up_proj", "down_proj"};

const char *emdpo_lora_target_name(int proj) { return proj >= 0 && proj < EMDPO_N_PROJ ? k_modules[proj] : NULL; }

int emdpo_lora_targets_parse(const char *names, unsigned *targets) {
    if (!names || !targets) return EMDPO_ERR_INVALID_ARG;
    *targets = 0;
    if (strcmp(names, "all-linear") == 0) {
        *targets = EMDPO_LORA_ALL_TARGETS;
        return EMDPO_OK;
    }
    const char *p = names;
    for (;;) {
        size_t n = strcspn(p, ",");
        int t = 0;
        while (t < EMDPO_N_PROJ && !(strlen(k_modules[t]) == n && strncmp(k_modules[t], p, n) == 0)) t++;
        if (t == EMDPO_N_PROJ) {
            *targets = 0;
            return EMDPO_ERR_INVALID_ARG;
        }
        *targets |= 1u << t;
        if (!p[n]) break;
        p += n + 1;
    }
    return EMDPO_OK;
}

float emdpo_lora_scale(const emdpo_lora_config *c) {
    return c->rslora ? (float)(c->alpha / sqrt((double)c->r)) : c->alpha / (float)c->r;
}

int emdpo_lora_config_check(const emdpo_lora_config *c) {
    if (!c || c->r < 1 || !isfinite(c->alpha) || !(c->dropout >= 0.0f && c->dropout < 1.0f) ||
        (c->rslora != 0 && c->rslora != 1) || c->targets == 0 || (c->targets & ~EMDPO_LORA_ALL_TARGETS))
        return EMDPO_ERR_INVALID_ARG;
    return EMDPO_OK;
}

/* Floats of A_t and B_t per layer; 0 when a product overflows. */
static int target_sizes(const emdpo_llama_config *base, int r, int t, size_t *a, size_t *b) {
    int out, in;
    emdpo_llama_proj_shape(base, t, &out, &in);
    size_t L = (size_t)base->n_layers, R = (size_t)r;
    if ((size_t)in > SIZE_MAX / 16 / R / L || (size_t)out > SIZE_MAX / 16 / R / L) return 0;
    *a = L * R * (size_t)in;
    *b = L * R * (size_t)out;
    return 1;
}

size_t emdpo_lora_num_params(const emdpo_llama_config *base, const emdpo_lora_config *c) {
    size_t total = 0;
    for (int t = 0; t < EMDPO_N_PROJ; t++) {
        size_t a, b;
        if (!(c->targets & (1u << t))) continue;
        if (!target_sizes(base, c->r, t, &a, &b) || a + b > SIZE_MAX / 16 - total) return 0;
        total += a + b;
    }
    return total;
}

void emdpo_lora_point(const emdpo_llama_config *base, const emdpo_lora_config *c, float *buf,
                      float *A[EMDPO_N_PROJ], float *B[EMDPO_N_PROJ]) {
    for (int t = 0; t < EMDPO_N_PROJ; t++) {
        size_t a = 0, b = 0;
        A[t] = B[t] = NULL;
        if (!(c->targets & (1u << t))) continue;
        target_sizes(base, c->r, t, &a, &b);
        A[t] = buf;
        B[t] = buf + a;
        buf += a + b;
    }
}

int emdpo_lora_create(const emdpo_llama_config *base, const emdpo_lora_config *c, emdpo_lora **out) {
    *out = NULL;
    if (emdpo_llama_config_check(base) || emdpo_lora_config_check(c)) return EMDPO_ERR_INVALID_ARG;
    size_t n = emdpo_lora_num_params(base, c);
    if (!n) return EMDPO_ERR_LIMIT;
    emdpo_lora *lo = emdpo_calloc(1, sizeof *lo);
    if (!lo) return EMDPO_ERR_NOMEM;
    lo->buf = emdpo_calloc(n, sizeof(float));
    if (!lo->buf) {
        emdpo_free(lo, sizeof *lo);
        return EMDPO_ERR_NOMEM;
    }
    lo->config = *c;
    lo->base = *base;
    lo->base.head_dim = emdpo_llama_head_size(base);
    lo->n = n;
    emdpo_lora_point(base, c, lo->buf, lo->A, lo->B);
    *out = lo;
    return EMDPO_OK;
}

void emdpo_lora_free(emdpo_lora *lo) {
    if (!lo) return;
    emdpo_free(lo->buf, lo->n * sizeof(float));
    emdpo_free(lo, sizeof *lo);
}

void emdpo_lora_init(emdpo_lora *lo, uint64_t seed) {
    for (int t = 0; t < EMDPO_N_PROJ; t++) {
        size_t a = 0, b = 0;
        int out, in;
        if (!lo->A[t]) continue;
        target_sizes(&lo->base, lo->config.r, t, &a, &b);
        emdpo_llama_proj_shape(&lo->base, t, &out, &in);
        double bound = 1.0 / sqrt((double)in);
        emdpo_rng rng; /* one stream per projection, as emdpo_llama_init has per tensor */
        emdpo_rng_seed(&rng, seed, (uint64_t)t);
        for (size_t i = 0; i < a; i++) lo->A[t][i] = (float)(bound * (2.0 * emdpo_rng_uniform(&rng) - 1.0));
        for (size_t i = 0; i < b; i++) lo->B[t][i] = 0.0f;
    }
}

/* Whether an adapter made for x fits a model of y: the projections' shapes
 * and the layer count agree. */
static int same_shapes(const emdpo_llama_config *x, const emdpo_llama_config *y) {
    if (x->n_layers != y->n_layers) return 0;
    for (int t = 0; t < EMDPO_N_PROJ; t++) {
        int xo, xi, yo, yi;
        emdpo_llama_proj_shape(x, t, &xo, &xi);
        emdpo_llama_proj_shape(y, t, &yo, &yi);
        if (xo != yo || xi != yi) return 0;
    }
    return 1;
}

int emdpo_lora_fits(const emdpo_lora *lo, const emdpo_llama_config *c) { return same_shapes(&lo->base, c); }

int emdpo_lora_merge(const emdpo_lora *lo, emdpo_llama *m) {
    if (m->frozen || !same_shapes(&lo->base, &m->config)) return EMDPO_ERR_INVALID_ARG;
    const emdpo_llama_params *p = &m->params;
    float *W[EMDPO_N_PROJ] = {p->wq, p->wk, p->wv, p->wo, p->w1, p->w3, p->w2};
    int r = lo->config.r;
    float s = emdpo_lora_scale(&lo->config);
    for (int t = 0; t < EMDPO_N_PROJ; t++) {
        int out, in;
        if (!lo->A[t]) continue;
        emdpo_llama_proj_shape(&m->config, t, &out, &in);
        for (int l = 0; l < m->config.n_layers; l++) {
            const float *A = lo->A[t] + (size_t)l * r * in, *B = lo->B[t] + (size_t)l * out * r;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, r, s, B, r, A, in, 1.0f,
                        W[t] + (size_t)l * out * in, in);
        }
    }
    return EMDPO_OK;
}
