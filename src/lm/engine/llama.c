#include "lm/engine/llama.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/alloc.h"
#include "base/rng.h"
#include "emdpo.h"

/* a * b into *r, or 0 when it overflows size_t. */
static int mul_ok(size_t a, size_t b, size_t *r) {
    if (a && b > SIZE_MAX / a) return 0;
    *r = a * b;
    return 1;
}

int emdpo_llama_head_size(const emdpo_llama_config *c) { return c->head_dim ? c->head_dim : c->dim / c->n_heads; }

int emdpo_llama_context(const emdpo_llama_config *c) {
    return c->sliding_window > 0 && c->sliding_window < c->max_seq_len ? c->sliding_window : c->max_seq_len;
}

void emdpo_llama_proj_shape(const emdpo_llama_config *c, int proj, int *out_dim, int *in_dim) {
    int C = c->dim, H = c->hidden_dim, hs = emdpo_llama_head_size(c), qd = c->n_heads * hs, kvd = c->n_kv_heads * hs;
    static const int is_kv[EMDPO_N_PROJ] = {0, 1, 1, 0, 0, 0, 0};
    int inner = proj <= EMDPO_PROJ_O ? (is_kv[proj] ? kvd : qd) : H; /* the side that is not the stream's C */
    int into_stream = proj == EMDPO_PROJ_O || proj == EMDPO_PROJ_DOWN;
    *out_dim = into_stream ? C : inner;
    *in_dim = into_stream ? inner : C;
}

/* The sizes with overflow checks; 0 when some product or the total does not
 * fit (with a margin: every byte count, float count times 4, must fit too). */
static int sizes_checked(const emdpo_llama_config *c, size_t s[EMDPO_LLAMA_N_TENSORS], size_t *total) {
    size_t V = (size_t)c->vocab_size, C = (size_t)c->dim, H = (size_t)c->hidden_dim, L = (size_t)c->n_layers;
    size_t hs = (size_t)emdpo_llama_head_size(c), qd, kvd, qC, kvC, HC;
    /* the kernels take qd and kvd as int */
    if (!mul_ok((size_t)c->n_heads, hs, &qd) || !mul_ok((size_t)c->n_kv_heads, hs, &kvd) || qd > INT_MAX) return 0;
    if (!mul_ok(qd, C, &qC) || !mul_ok(kvd, C, &kvC) || !mul_ok(H, C, &HC)) return 0;
    if (!mul_ok(V, C, &s[0]) || !mul_ok(L, C, &s[1]) || !mul_ok(L, qC, &s[2]) || !mul_ok(L, kvC, &s[3]))
        return 0;
    s[4] = s[3];
    s[5] = s[2];
    s[6] = s[1];
    if (!mul_ok(L, HC, &s[7])) return 0;
    s[8] = s[7];
    s[9] = s[7];
    s[10] = C;
    s[11] = c->tied ? 0 : s[0];
    s[12] = c->qkv_bias ? L * qd : 0; /* each at most a matrix above */
    s[13] = s[14] = c->qkv_bias ? L * kvd : 0;
    s[15] = c->o_bias ? s[1] : 0;
    s[16] = s[17] = c->qk_norm ? L * hs : 0;
    size_t t = 0;
    for (int i = 0; i < EMDPO_LLAMA_N_TENSORS; i++) {
        if (s[i] > SIZE_MAX / 8 - t) return 0;
        t += s[i];
    }
    *total = t;
    return 1;
}

static int is_flag(int f) { return f == 0 || f == 1; }

int emdpo_llama_config_check(const emdpo_llama_config *c) {
    if (!c || c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->vocab_size <= 0 || c->max_seq_len <= 0 || c->head_dim < 0 || c->sliding_window < 0)
        return EMDPO_ERR_INVALID_ARG;
    if ((!c->head_dim && c->dim % c->n_heads) || c->n_heads % c->n_kv_heads || emdpo_llama_head_size(c) % 2 ||
        emdpo_llama_head_size(c) == 0)
        return EMDPO_ERR_INVALID_ARG;
    if (!is_flag(c->tied) || !is_flag(c->qkv_bias) || !is_flag(c->o_bias) || !is_flag(c->qk_norm) ||
        c->arch < EMDPO_ARCH_LLAMA || c->arch > EMDPO_ARCH_QWEN3)
        return EMDPO_ERR_INVALID_ARG;
    if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps) || !(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
        return EMDPO_ERR_INVALID_ARG;
    if (c->rope_type < EMDPO_ROPE_DEFAULT || c->rope_type > EMDPO_ROPE_LLAMA3) return EMDPO_ERR_INVALID_ARG;
    if (c->rope_type != EMDPO_ROPE_DEFAULT && !(c->rope_factor >= 1.0f && isfinite(c->rope_factor)))
        return EMDPO_ERR_INVALID_ARG;
    if (c->rope_type == EMDPO_ROPE_LLAMA3 &&
        (!(c->rope_low_freq_factor > 0.0f) || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
         !isfinite(c->rope_high_freq_factor) || c->rope_original_max_pos < 1))
        return EMDPO_ERR_INVALID_ARG;
    size_t s[EMDPO_LLAMA_N_TENSORS], total;
    return sizes_checked(c, s, &total) ? EMDPO_OK : EMDPO_ERR_INVALID_ARG;
}

void emdpo_llama_tensor_sizes(const emdpo_llama_config *c, size_t sizes[EMDPO_LLAMA_N_TENSORS]) {
    size_t total;
    sizes_checked(c, sizes, &total);
}

size_t emdpo_llama_num_params(const emdpo_llama_config *c) {
    size_t s[EMDPO_LLAMA_N_TENSORS], total = 0;
    sizes_checked(c, s, &total);
    return total;
}

/* The parameters' pointers in tensor order, as emdpo_llama_tensor_sizes
 * lists them. */
static void param_slots(emdpo_llama_params *p, float **ptrs[EMDPO_LLAMA_N_TENSORS]) {
    float **q[EMDPO_LLAMA_N_TENSORS] = {&p->tok_emb, &p->rms_att, &p->wq, &p->wk,      &p->wv,        &p->wo,
                                        &p->rms_ffn, &p->w1,      &p->w2, &p->w3,      &p->rms_final, &p->lm_head,
                                        &p->bq,      &p->bk,      &p->bv, &p->bo,      &p->q_norm,    &p->k_norm};
    memcpy(ptrs, q, sizeof q);
}

/* The tensors a frozen model keeps in 16 bits (emdpo_llama_mats16), by
 * their index in tensor order; lm_head last. */
static const int k_matrix_tensors[] = {0, 2, 3, 4, 5, 7, 9, 8, 11};
enum { N_MATRIX_TENSORS = 9 };

static void point_sized(const size_t s[EMDPO_LLAMA_N_TENSORS], int tied, float *buf, emdpo_llama_params *p) {
    float **ptrs[EMDPO_LLAMA_N_TENSORS];
    param_slots(p, ptrs);
    for (int i = 0; i < EMDPO_LLAMA_N_TENSORS; i++) {
        *ptrs[i] = buf;
        buf += s[i];
    }
    if (tied) p->lm_head = p->tok_emb;
}

void emdpo_llama_point_params(const emdpo_llama_config *c, float *buf, emdpo_llama_params *p) {
    size_t s[EMDPO_LLAMA_N_TENSORS];
    emdpo_llama_tensor_sizes(c, s);
    point_sized(s, c->tied, buf, p);
}

void emdpo_llama_proj_weights(const emdpo_llama_params *p, float *w[EMDPO_N_PROJ]) {
    float *v[EMDPO_N_PROJ] = {p->wq, p->wk, p->wv, p->wo, p->w1, p->w3, p->w2};
    memcpy(w, v, sizeof v);
}

int emdpo_llama_create(const emdpo_llama_config *c, emdpo_llama **out) {
    *out = NULL;
    int rc = emdpo_llama_config_check(c);
    if (rc) return rc;
    emdpo_llama *m = emdpo_calloc(1, sizeof *m);
    if (!m) return EMDPO_ERR_NOMEM;
    m->config = *c;
    m->config.head_dim = emdpo_llama_head_size(c); /* one spelling per architecture */
    m->num_params = emdpo_llama_num_params(c);
    m->param_buf = emdpo_calloc(m->num_params, sizeof(float));
    if (!m->param_buf) {
        emdpo_free(m, sizeof *m);
        return EMDPO_ERR_NOMEM;
    }
    emdpo_llama_point_params(c, m->param_buf, &m->params);
    *out = m;
    return EMDPO_OK;
}

int emdpo_llama_create_frozen(const emdpo_llama_config *c, int dtype, emdpo_llama **out) {
    *out = NULL;
    int rc = emdpo_llama_config_check(c);
    if (rc) return rc;
    if (dtype != EMDPO_DTYPE_BF16 && dtype != EMDPO_DTYPE_F16) return EMDPO_ERR_INVALID_ARG;
    size_t s[EMDPO_LLAMA_N_TENSORS], ms[N_MATRIX_TENSORS], n16 = 0, n32 = 0;
    emdpo_llama_tensor_sizes(c, s);
    for (int i = 0; i < N_MATRIX_TENSORS; i++) {
        ms[i] = s[k_matrix_tensors[i]];
        n16 += ms[i];
        s[k_matrix_tensors[i]] = 0;
    }
    for (int i = 0; i < EMDPO_LLAMA_N_TENSORS; i++) n32 += s[i];
    emdpo_llama *m = emdpo_calloc(1, sizeof *m);
    emdpo_llama_mats16 *f = emdpo_calloc(1, sizeof *f);
    float *buf = emdpo_calloc(n32 ? n32 : 1, sizeof(float));
    uint16_t *buf16 = emdpo_malloc(n16 * sizeof(uint16_t));
    if (!m || !f || !buf || !buf16) {
        emdpo_free(m, sizeof *m);
        emdpo_free(f, sizeof *f);
        emdpo_free(buf, (n32 ? n32 : 1) * sizeof(float));
        emdpo_free(buf16, n16 * sizeof(uint16_t));
        return EMDPO_ERR_NOMEM;
    }
    m->config = *c;
    m->config.head_dim = emdpo_llama_head_size(c);
    m->num_params = n32 ? n32 : 1;
    m->param_buf = buf;
    point_sized(s, 0, buf, &m->params);
    float **ptrs[EMDPO_LLAMA_N_TENSORS];
    param_slots(&m->params, ptrs);
    for (int i = 0; i < N_MATRIX_TENSORS; i++) *ptrs[k_matrix_tensors[i]] = NULL;
    uint16_t **dst[N_MATRIX_TENSORS] = {&f->tok_emb, &f->w[0], &f->w[1], &f->w[2], &f->w[3],
                                        &f->w[4],    &f->w[5], &f->w[6], &f->lm_head};
    uint16_t *q = buf16;
    for (int i = 0; i < N_MATRIX_TENSORS; i++) {
        *dst[i] = q;
        q += ms[i];
    }
    if (c->tied) f->lm_head = f->tok_emb;
    f->dtype = dtype;
    f->buf = buf16;
    f->n = n16;
    m->frozen = f;
    *out = m;
    return EMDPO_OK;
}

void emdpo_llama_free(emdpo_llama *m) {
    if (!m) return;
    if (m->frozen) {
        emdpo_free(m->frozen->buf, m->frozen->n * sizeof(uint16_t));
        emdpo_free(m->frozen, sizeof *m->frozen);
    }
    emdpo_free(m->param_buf, m->num_params * sizeof(float));
    emdpo_strfree(m->source);
    emdpo_free(m, sizeof *m);
}

void emdpo_llama_init(emdpo_llama *m, uint64_t seed) {
    const emdpo_llama_config *c = &m->config;
    size_t s[EMDPO_LLAMA_N_TENSORS];
    emdpo_llama_tensor_sizes(c, s);
    float *w = m->param_buf;
    double resid = 0.02 / sqrt(2.0 * c->n_layers);
    for (int t = 0; t < EMDPO_LLAMA_N_TENSORS; t++) {
        int is_norm = t == 1 || t == 6 || t == 10 || t >= 16, is_bias = t >= 12 && t < 16;
        double sd = t == 5 || t == 8 ? resid : 0.02;
        /* One stream per tensor: a tensor's values do not depend on the
         * sizes of the tensors before it. */
        emdpo_rng r;
        emdpo_rng_seed(&r, seed, (uint64_t)t);
        for (size_t i = 0; i < s[t]; i++) w[i] = is_norm ? 1.0f : is_bias ? 0.0f : (float)(sd * emdpo_rng_normal(&r));
        w += s[t];
    }
}
