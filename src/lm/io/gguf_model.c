/* GGUF models; see gguf_model.h. */
#include "lm/io/gguf_model.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json.h"
#include "lm/io/gguf.h"
#include "lm/io/gguf_vocab.h"
#include "lm/io/llama_hf.h"
#include "lm/io/tokenizer.h"

static const char *const arch_names[] = {"llama", "llama", "qwen2", "qwen3"}; /* by EMDPO_ARCH_*; Mistral is llama */

/* Rotate-half RoPE (llama.cpp's NEOX kind): Hugging Face's row order. */
static int neox(int arch) { return arch == EMDPO_ARCH_QWEN2 || arch == EMDPO_ARCH_QWEN3; }

/* ---- the per-layer tensors ------------------------------------------------ */

enum { W_ATT_NORM, W_Q, W_K, W_V, W_O, W_FFN_NORM, W_GATE, W_UP, W_DOWN, W_BQ, W_BK, W_BV, W_BO, W_QN, W_KN, N_W };
static const char *const w_names[N_W] = {
    "attn_norm.weight", "attn_q.weight",    "attn_k.weight",      "attn_v.weight",      "attn_output.weight",
    "ffn_norm.weight",  "ffn_gate.weight",  "ffn_up.weight",      "ffn_down.weight",    "attn_q.bias",
    "attn_k.bias",      "attn_v.bias",      "attn_output.bias",   "attn_q_norm.weight", "attn_k_norm.weight",
};

typedef struct slot {
    float *data;    /* this layer's slice */
    uint16_t *data16; /* instead of data: a frozen model's matrix slice */
    uint64_t ne[2]; /* ggml's order: ne[0] innermost; ne[1] 1 for vectors */
    int n_dims;
    int heads;      /* rows in heads of hs to reorder for rotate-half RoPE; 0: none */
} slot;

/* Whether tensor w exists in c's model. */
static int has_w(const emdpo_llama_config *c, int w) {
    if (w >= W_BQ && w <= W_BV) return c->qkv_bias;
    if (w == W_BO) return c->o_bias;
    if (w == W_QN || w == W_KN) return c->qk_norm;
    return 1;
}

/* Layer l's tensor w in p, or for a matrix of a frozen model (f not NULL)
 * in f. */
static slot slot_of(const emdpo_llama_config *c, const emdpo_llama_params *p, const emdpo_llama_mats16 *f, int l,
                    int w) {
    uint64_t C = (uint64_t)c->dim, H = (uint64_t)c->hidden_dim, hs = (uint64_t)emdpo_llama_head_size(c);
    uint64_t qd = (uint64_t)c->n_heads * hs, kvd = (uint64_t)c->n_kv_heads * hs;
    size_t L = (size_t)l;
    int nh = neox(c->arch) ? c->n_heads : 0, nkv = neox(c->arch) ? c->n_kv_heads : 0, one = neox(c->arch);
    static const int proj_of[N_W] = {[W_Q] = EMDPO_PROJ_Q + 1,       [W_K] = EMDPO_PROJ_K + 1,
                                     [W_V] = EMDPO_PROJ_V + 1,       [W_O] = EMDPO_PROJ_O + 1,
                                     [W_GATE] = EMDPO_PROJ_GATE + 1, [W_UP] = EMDPO_PROJ_UP + 1,
                                     [W_DOWN] = EMDPO_PROJ_DOWN + 1};
    if (f && proj_of[w]) {
        int proj = proj_of[w] - 1, out, in;
        emdpo_llama_proj_shape(c, proj, &out, &in);
        int heads = w == W_Q ? nh : w == W_K ? nkv : 0;
        return (slot){NULL, f->w[proj] + L * (size_t)out * (size_t)in, {(uint64_t)in, (uint64_t)out}, 2, heads};
    }
    switch (w) {
    case W_ATT_NORM: return (slot){p->rms_att + L * C, NULL, {C, 1}, 1, 0};
    case W_Q: return (slot){p->wq + L * qd * C, NULL, {C, qd}, 2, nh};
    case W_K: return (slot){p->wk + L * kvd * C, NULL, {C, kvd}, 2, nkv};
    case W_V: return (slot){p->wv + L * kvd * C, NULL, {C, kvd}, 2, 0};
    case W_O: return (slot){p->wo + L * C * qd, NULL, {qd, C}, 2, 0};
    case W_FFN_NORM: return (slot){p->rms_ffn + L * C, NULL, {C, 1}, 1, 0};
    case W_GATE: return (slot){p->w1 + L * H * C, NULL, {C, H}, 2, 0};
    case W_UP: return (slot){p->w3 + L * H * C, NULL, {C, H}, 2, 0};
    case W_DOWN: return (slot){p->w2 + L * C * H, NULL, {H, C}, 2, 0};
    case W_BQ: return (slot){p->bq + L * qd, NULL, {qd, 1}, 1, nh};
    case W_BK: return (slot){p->bk + L * kvd, NULL, {kvd, 1}, 1, nkv};
    case W_BV: return (slot){p->bv + L * kvd, NULL, {kvd, 1}, 1, 0};
    case W_BO: return (slot){p->bo + L * C, NULL, {C, 1}, 1, 0};
    case W_QN: return (slot){p->q_norm + L * hs, NULL, {hs, 1}, 1, one};
    default: return (slot){p->k_norm + L * hs, NULL, {hs, 1}, 1, one};
    }
}

/* The rows of a slot's (ne[1], ne[0]) matrix (a vector's elements, ne[0]
 * of them, as rows of one) in heads of hs, reordered between Hugging
 * Face's rotate-half order and emdpo's interleaved pairs. */
static void reorder(const slot *s, const float *src, float *dst, int hs, int to_hf) {
    int cols = s->n_dims == 2 ? (int)s->ne[0] : 1;
    emdpo_hf_permute_rows(src, dst, s->heads, hs, cols, to_hf);
}

/* ---- reading --------------------------------------------------------------- */

typedef struct hp {
    const emdpo_gguf *g;
    const char *arch;
    emdpo_diag *diag;
} hp;

static const emdpo_gguf_kv *akey(const hp *h, const char *suffix, char *name, size_t cap) {
    snprintf(name, cap, "%s.%s", h->arch, suffix);
    return emdpo_gguf_find(h->g, name);
}

/* A positive integer below 2^31 under ARCH.suffix; *out keeps its value
 * when the key is absent and not required. */
static int get_int(const hp *h, const char *suffix, int required, int *out) {
    char name[96];
    const emdpo_gguf_kv *kv = akey(h, suffix, name, sizeof name);
    if (!kv) return required ? emdpo_diag_fail(h->diag, EMDPO_ERR_PARSE, "no key %s", name) : EMDPO_OK;
    int64_t v;
    int rc = emdpo_gguf_int(kv, &v, h->diag);
    if (rc) return rc;
    if (v <= 0 || v > INT_MAX) return emdpo_gguf_kv_fail(kv, h->diag, EMDPO_ERR_PARSE, "must be in 1 .. 2^31 - 1");
    *out = (int)v;
    return EMDPO_OK;
}

static int get_float(const hp *h, const char *suffix, int required, float *out) {
    char name[96];
    const emdpo_gguf_kv *kv = akey(h, suffix, name, sizeof name);
    if (!kv) return required ? emdpo_diag_fail(h->diag, EMDPO_ERR_PARSE, "no key %s", name) : EMDPO_OK;
    double v;
    int rc = emdpo_gguf_float(kv, &v, h->diag);
    if (rc) return rc;
    if (!(v > 0) || !isfinite((float)v) || (float)v == 0.0f)
        return emdpo_gguf_kv_fail(kv, h->diag, EMDPO_ERR_PARSE, "must be a positive number within float range");
    *out = (float)v;
    return EMDPO_OK;
}

/* llama.cpp's converter's rope_freqs for a llama3 scaling: frequencies in
 * float32 as torch computes them, each divided by a factor between 1
 * (high frequencies) and factor (low ones). */
static double llama3_divisor(double base, int i, int hs, double factor, double lo, double hi, double orig) {
    float freq = 1.0f / powf((float)base, (float)(2 * i) / (float)hs);
    double wavelen = 2.0 * 3.14159265358979323846 / (double)freq;
    if (wavelen < orig / hi) return 1.0;
    if (wavelen > orig / lo) return factor;
    double smooth = (orig / wavelen - lo) / (hi - lo);
    return 1.0 / ((1.0 - smooth) / factor + smooth);
}

static int divisors_match(const float *f, int n, const emdpo_llama_config *c, int hs) {
    for (int i = 0; i < n; i++) {
        double want = llama3_divisor(c->rope_theta, i, hs, c->rope_factor, c->rope_low_freq_factor,
                                     c->rope_high_freq_factor, c->rope_original_max_pos);
        if (!(fabs(want - f[i]) <= 1e-5 * fmax(1.0, fabs(want)))) return 0;
    }
    return 1;
}

/* The llama3 scaling whose divisors rope_freqs holds: Llama 3's
 * low_freq_factor 1 and high_freq_factor 4 with the original context
 * orig (rope.scaling.original_context_length, else Llama 3's 8192), else
 * low_freq_factor 1 and the high factor and context that the first and
 * last blended frequencies fix (the divisors depend on no more than
 * that). */
static int rope_from_divisors(const float *f, int n, int hs, int orig, emdpo_llama_config *c, emdpo_diag *diag) {
    double factor = 1.0;
    int all_one = 1;
    for (int i = 0; i < n; i++) {
        if (!isfinite(f[i]) || !(f[i] >= 1.0f))
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor rope_freqs.weight: entry %d is not a number >= 1", i);
        if (f[i] > factor) factor = f[i];
        if (f[i] != 1.0f) all_one = 0;
    }
    if (all_one) return EMDPO_OK;
    c->rope_type = EMDPO_ROPE_LLAMA3;
    c->rope_factor = (float)factor;
    c->rope_low_freq_factor = 1.0f;
    c->rope_high_freq_factor = 4.0f;
    c->rope_original_max_pos = orig;
    if (divisors_match(f, n, c, hs)) return EMDPO_OK;
    int first = -1, last = -1;
    for (int i = 0; i < n; i++)
        if (f[i] > 1.0f + 1e-6f && f[i] < (float)factor * (1.0f - 1e-6f)) {
            if (first < 0) first = i;
            last = i;
        }
    if (first >= 0 && last > first) {
        /* smooth = orig / (hi - lo) / wavelen - lo / (hi - lo) = a / wavelen - b */
        double s[2], iw[2];
        for (int k = 0; k < 2; k++) {
            int i = k ? last : first;
            float freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)hs);
            iw[k] = (double)freq / (2.0 * 3.14159265358979323846);
            s[k] = (1.0 / f[i] - 1.0 / factor) / (1.0 - 1.0 / factor);
        }
        double a = (s[1] - s[0]) / (iw[1] - iw[0]), b = a * iw[0] - s[0];
        if (a > 0 && b > 0 && isfinite(a / b) && a / b < 1e9) {
            c->rope_high_freq_factor = (float)(1.0 + 1.0 / b);
            c->rope_original_max_pos = (int)lround(a / b);
            if (c->rope_original_max_pos >= 1 && divisors_match(f, n, c, hs)) return EMDPO_OK;
        }
    }
    return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                           "tensor rope_freqs.weight holds frequency factors that no llama3 rope scaling gives");
}

/* The tensor name, checked to have shape ne[0..n_dims); NULL when absent. */
static int find_shaped(const emdpo_gguf *g, const char *name, const uint64_t *ne, int required,
                       const emdpo_gguf_tensor **out, emdpo_diag *diag) {
    const emdpo_gguf_tensor *t = emdpo_gguf_find_tensor(g, name);
    *out = t;
    if (!t) return required ? emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "no tensor %s", name) : EMDPO_OK;
    for (int d = 0; d < EMDPO_GGUF_MAX_DIMS; d++)
        if (t->ne[d] != (d < 2 ? ne[d] : 1))
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                                   "tensor %s (byte offset %llu) has shape [%llu, %llu, %llu, %llu]; the model needs "
                                   "[%llu, %llu]",
                                   name, (unsigned long long)t->at, (unsigned long long)t->ne[0],
                                   (unsigned long long)t->ne[1], (unsigned long long)t->ne[2],
                                   (unsigned long long)t->ne[3], (unsigned long long)ne[0], (unsigned long long)ne[1]);
    return EMDPO_OK;
}

/* The hyper-parameters. */
static int read_config(const emdpo_gguf *g, emdpo_llama_config *c, int *orig_ctx, emdpo_diag *diag) {
    const emdpo_gguf_kv *kv = emdpo_gguf_find(g, "general.architecture");
    if (!kv) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "no key general.architecture: the file holds no model");
    const char *a;
    size_t alen;
    int rc = emdpo_gguf_str(kv, &a, &alen, diag);
    if (rc) return rc;
    char arch[16];
    if (alen >= sizeof arch) alen = sizeof arch - 1;
    memcpy(arch, a, alen);
    arch[alen] = '\0';
    memset(c, 0, sizeof *c);
    if (strcmp(arch, "llama") == 0) c->arch = EMDPO_ARCH_LLAMA;
    else if (strcmp(arch, "qwen2") == 0) c->arch = EMDPO_ARCH_QWEN2;
    else if (strcmp(arch, "qwen3") == 0) c->arch = EMDPO_ARCH_QWEN3;
    else
        return emdpo_gguf_kv_fail(kv, diag, EMDPO_ERR_UNSUPPORTED,
                                  "names an architecture emdpo does not run (llama, qwen2 and qwen3 are read)");
    hp h = {g, arch, diag};
    c->norm_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    if ((rc = get_int(&h, "context_length", 1, &c->max_seq_len)) ||
        (rc = get_int(&h, "embedding_length", 1, &c->dim)) || (rc = get_int(&h, "block_count", 1, &c->n_layers)) ||
        (rc = get_int(&h, "feed_forward_length", 1, &c->hidden_dim)) ||
        (rc = get_int(&h, "attention.head_count", 1, &c->n_heads)))
        return rc;
    c->n_kv_heads = c->n_heads;
    int hs = c->dim % c->n_heads ? 0 : c->dim / c->n_heads, vs = 0, rope_dim = 0;
    if ((rc = get_int(&h, "attention.head_count_kv", 0, &c->n_kv_heads)) ||
        (rc = get_float(&h, "attention.layer_norm_rms_epsilon", 1, &c->norm_eps)) ||
        (rc = get_float(&h, "rope.freq_base", 0, &c->rope_theta)) ||
        (rc = get_int(&h, "attention.key_length", 0, &hs)) || (rc = get_int(&h, "attention.value_length", 0, &vs)) ||
        (rc = get_int(&h, "rope.dimension_count", 0, &rope_dim)) ||
        (rc = get_int(&h, "rope.scaling.original_context_length", 0, orig_ctx)))
        return rc;
    if (!hs)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s.embedding_length %d is not divisible by the %d heads, and "
                               "no %s.attention.key_length gives the head size", arch, c->dim, c->n_heads, arch);
    if (vs && vs != hs)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "%s.attention.value_length %d differs from key_length %d",
                               arch, vs, hs);
    if (rope_dim && rope_dim != hs)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                               "%s.rope.dimension_count %d: RoPE over part of the head (size %d) is not supported", arch,
                               rope_dim, hs);
    if (hs % 2) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "the head size %d is odd, which RoPE cannot rotate", hs);
    if (c->n_heads % c->n_kv_heads)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s.attention.head_count %d is not divisible by head_count_kv %d",
                               arch, c->n_heads, c->n_kv_heads);
    if (c->dim % c->n_heads || hs != c->dim / c->n_heads) c->head_dim = hs;
    char name[96];
    if ((kv = akey(&h, "rope.scaling.type", name, sizeof name))) {
        const char *s;
        size_t n;
        if ((rc = emdpo_gguf_str(kv, &s, &n, diag))) return rc;
        if (n == 6 && memcmp(s, "linear", 6) == 0) {
            c->rope_type = EMDPO_ROPE_LINEAR;
            if ((rc = get_float(&h, "rope.scaling.factor", 1, &c->rope_factor))) return rc;
        } else if (!(n == 4 && memcmp(s, "none", 4) == 0)) {
            return emdpo_gguf_kv_fail(kv, diag, EMDPO_ERR_UNSUPPORTED,
                                      "is a RoPE scaling emdpo does not implement (none and linear are read)");
        }
    } else if (akey(&h, "rope.scale_linear", name, sizeof name)) {
        c->rope_type = EMDPO_ROPE_LINEAR;
        if ((rc = get_float(&h, "rope.scale_linear", 1, &c->rope_factor))) return rc;
    }
    if (c->rope_type == EMDPO_ROPE_LINEAR && c->rope_factor == 1.0f) c->rope_type = EMDPO_ROPE_DEFAULT;
    if (c->rope_type == EMDPO_ROPE_LINEAR && !(c->rope_factor >= 1.0f))
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "a linear RoPE scaling factor below 1 is not supported");
    if (c->rope_type != EMDPO_ROPE_LINEAR) c->rope_factor = 0.0f;
    const emdpo_gguf_tensor *emb = emdpo_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "no tensor token_embd.weight");
    if (emb->ne[1] > INT_MAX || emb->ne[1] == 0)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor token_embd.weight has %llu rows",
                               (unsigned long long)emb->ne[1]);
    c->vocab_size = (int)emb->ne[1];
    int vocab = c->vocab_size;
    if ((rc = get_int(&h, "vocab_size", 0, &vocab))) return rc;
    if (vocab != c->vocab_size)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s.vocab_size is %d; token_embd.weight has %d rows", arch, vocab,
                               c->vocab_size);
    c->tied = !emdpo_gguf_find_tensor(g, "output.weight");
    c->qkv_bias = emdpo_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    c->o_bias = emdpo_gguf_find_tensor(g, "blk.0.attn_output.bias") != NULL;
    c->qk_norm = emdpo_gguf_find_tensor(g, "blk.0.attn_q_norm.weight") != NULL;
    if (emdpo_llama_config_check(c))
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "the sizes describe a model too large to address");
    return EMDPO_OK;
}

/* A reader's plan: for each tensor of the model, the file's tensor and
 * where it goes. */
typedef struct item {
    const emdpo_gguf_tensor *t;
    slot s;
} item;

/* EMDPO_DTYPE_F16 or BF16 when every matrix of g is stored so, else 0. */
static int matrix_dtype16(const emdpo_gguf *g) {
    long mt = -1;
    for (size_t i = 0; i < emdpo_gguf_n_tensors(g); i++) {
        const emdpo_gguf_tensor *t = emdpo_gguf_tensor_at(g, i);
        if (t->n_dims == 2) mt = mt < 0 || mt == (long)t->type ? (long)t->type : -2;
    }
    return mt == EMDPO_GGML_F16 ? EMDPO_DTYPE_F16 : mt == EMDPO_GGML_BF16 ? EMDPO_DTYPE_BF16 : 0;
}

int emdpo_gguf_model_load(const char *path, int frozen, emdpo_llama **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_gguf *g;
    int rc = emdpo_gguf_open(path, &g, diag);
    if (rc) return rc;
    emdpo_llama_config c;
    int orig_ctx = 8192;
    emdpo_llama *m = NULL;
    item *items = NULL;
    unsigned char *used = NULL;
    float *scratch = NULL, *divisors = NULL;
    size_t n_items = 0, cap = 0, scratch_n = 0, n_t = emdpo_gguf_n_tensors(g);
    if (!(rc = emdpo_gguf_check_tensors(g, diag)) && !(rc = read_config(g, &c, &orig_ctx, diag))) {
        /* Every parameter comes from the file's tensors: nothing is
         * allocated for a model the file cannot hold. */
        uint64_t held = 0;
        for (size_t i = 0; i < n_t; i++) held += emdpo_gguf_tensor_at(g, i)->numel;
        if ((uint64_t)emdpo_llama_num_params(&c) > held)
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                                 "the hyper-parameters describe %zu parameters; the file's tensors hold %llu",
                                 emdpo_llama_num_params(&c), (unsigned long long)held);
        else if (frozen && matrix_dtype16(g) ? emdpo_llama_create_frozen(&c, matrix_dtype16(g), &m)
                                             : emdpo_llama_create(&c, &m))
            rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    int hs = rc ? 0 : emdpo_llama_head_size(&c);
    cap = rc ? 0 : 4 + (size_t)c.n_layers * N_W;
    if (!rc && (!(items = emdpo_calloc(cap, sizeof *items)) || !(used = emdpo_calloc(n_t + 1, 1))))
        rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    /* Every tensor is found and its shape checked before any is read. */
    const emdpo_llama_params *p = rc ? NULL : &m->params;
    const emdpo_llama_mats16 *f = rc ? NULL : m->frozen;
    uint64_t vc[2] = {(uint64_t)c.dim, (uint64_t)c.vocab_size}, cc[2] = {(uint64_t)c.dim, 1};
    if (!rc) rc = find_shaped(g, "token_embd.weight", vc, 1, &items[n_items].t, diag);
    if (!rc) items[n_items++].s = (slot){f ? NULL : p->tok_emb, f ? f->tok_emb : NULL, {vc[0], vc[1]}, 2, 0};
    if (!rc) rc = find_shaped(g, "output_norm.weight", cc, 1, &items[n_items].t, diag);
    if (!rc) items[n_items++].s = (slot){p->rms_final, NULL, {cc[0], 1}, 1, 0};
    if (!rc && !c.tied) rc = find_shaped(g, "output.weight", vc, 1, &items[n_items].t, diag);
    if (!rc && !c.tied) items[n_items++].s = (slot){f ? NULL : p->lm_head, f ? f->lm_head : NULL, {vc[0], vc[1]}, 2, 0};
    char name[96];
    for (int l = 0; !rc && l < c.n_layers; l++)
        for (int w = 0; !rc && w < N_W; w++) {
            if (!has_w(&c, w)) continue;
            slot s = slot_of(&c, p, f, l, w);
            snprintf(name, sizeof name, "blk.%d.%s", l, w_names[w]);
            if (!(rc = find_shaped(g, name, s.ne, 1, &items[n_items].t, diag))) items[n_items++].s = s;
            if (s.heads && s.ne[0] * s.ne[1] > scratch_n) scratch_n = (size_t)(s.ne[0] * s.ne[1]);
        }
    const emdpo_gguf_tensor *rf = NULL;
    uint64_t rf_ne[2] = {(uint64_t)hs / 2, 1};
    if (!rc) rc = find_shaped(g, "rope_freqs.weight", rf_ne, 0, &rf, diag);
    for (size_t i = 0; i < n_items; i++) used[items[i].t - emdpo_gguf_tensor_at(g, 0)] = 1;
    if (rf) used[rf - emdpo_gguf_tensor_at(g, 0)] = 1;
    for (size_t i = 0; !rc && i < n_t; i++)
        if (!used[i]) {
            const emdpo_gguf_tensor *t = emdpo_gguf_tensor_at(g, i);
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                                 "tensor %.80s (byte offset %llu) is not part of a %s model of this configuration",
                                 t->name, (unsigned long long)t->at, arch_names[c.arch]);
        }
    if (!rc && rf) {
        if (c.rope_type != EMDPO_ROPE_DEFAULT)
            rc = emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "tensor rope_freqs.weight with a rope.scaling.type");
        else if (!(divisors = emdpo_malloc((size_t)hs / 2 * sizeof *divisors)))
            rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        else if (!(rc = emdpo_gguf_read_f32(g, rf, divisors, diag)))
            rc = rope_from_divisors(divisors, hs / 2, hs, orig_ctx, &m->config, diag);
    }
    if (!rc && scratch_n && !(scratch = emdpo_malloc(scratch_n * sizeof *scratch)))
        rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n_items; i++) {
        const slot *s = &items[i].s;
        if (s->data16) { /* the scratch's floats hold the 16-bit rows too */
            uint16_t *tmp = (uint16_t *)scratch;
            rc = emdpo_gguf_read16(g, items[i].t, s->heads ? tmp : s->data16, diag);
            if (!rc && s->heads)
                emdpo_hf_permute_rows16(tmp, s->data16, s->heads, hs, (int)s->ne[0], 0);
            continue;
        }
        rc = emdpo_gguf_read_f32(g, items[i].t, s->heads ? scratch : s->data, diag);
        if (!rc && s->heads) reorder(s, scratch, s->data, hs, 0);
    }
    /* The dtype a save keeps: F16 or BF16 when every matrix is stored so
     * (quantised ones widen to F32). */
    long mt = -1;
    for (size_t i = 0; !rc && i < n_items; i++)
        if (items[i].s.n_dims == 2) mt = mt < 0 || mt == (long)items[i].t->type ? (long)items[i].t->type : -2;
    if (!rc) m->file_dtype = mt == EMDPO_GGML_F16 ? EMDPO_DTYPE_F16 : mt == EMDPO_GGML_BF16 ? EMDPO_DTYPE_BF16 : EMDPO_DTYPE_F32;
    emdpo_free(scratch, scratch_n * sizeof *scratch);
    emdpo_free(divisors, divisors ? (size_t)hs / 2 * sizeof *divisors : 0);
    emdpo_free(items, cap * sizeof *items);
    emdpo_free(used, used ? n_t + 1 : 0);
    emdpo_gguf_close(g);
    if (rc) {
        emdpo_llama_free(m);
        return rc;
    }
    *out = m;
    return EMDPO_OK;
}

/* ---- writing --------------------------------------------------------------- */

/* llama.cpp's token types. */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* A GGUF file's tokenizer.* keys, as they are. */
static int copy_gguf_vocab(emdpo_gguf_writer *w, const char *path, int V, emdpo_diag *diag) {
    emdpo_gguf *g;
    int rc = emdpo_gguf_open(path, &g, diag);
    if (rc) return rc;
    const emdpo_gguf_kv *tokens = emdpo_gguf_find(g, "tokenizer.ggml.tokens");
    uint64_t n = 0;
    if (!tokens) rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "no key tokenizer.ggml.tokens: the file holds no tokenizer");
    else if (!(rc = emdpo_gguf_array(tokens, EMDPO_GGUF_STRING, &n, diag)) && n != (uint64_t)V)
        rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "the vocabulary has %llu tokens; the model's has %d",
                             (unsigned long long)n, V);
    for (size_t i = 0; !rc && i < emdpo_gguf_n_kv(g); i++) {
        const emdpo_gguf_kv *kv = emdpo_gguf_kv_at(g, i);
        if (strncmp(kv->key, "tokenizer.", 10) == 0 && (rc = emdpo_gguf_put_kv(w, g, kv)))
            emdpo_diag_fail(diag, rc, "cannot copy key %s", kv->key);
    }
    emdpo_gguf_close(g);
    return rc;
}

/* A llama2.c tokenizer.bin as llama.cpp's "llama" (SentencePiece)
 * vocabulary: pieces with U+2581 for spaces, their scores, <unk>, BOS and
 * EOS at 0, 1, 2 and the byte pieces 3..258. */
static int llama2c_vocab(emdpo_gguf_writer *w, const emdpo_tokenizer *t, int V, emdpo_diag *diag) {
    size_t n = (size_t)V, total = 0;
    for (int i = 0; i < V; i++) {
        size_t len;
        const char *p = emdpo_tokenizer_piece(t, i, &len);
        for (size_t k = 0; k < len; k++) total += p[k] == ' ' ? 3 : 1;
        total += 8;
    }
    char *bytes = emdpo_malloc(total), **s = emdpo_malloc(n * sizeof *s);
    size_t *len = emdpo_malloc(n * sizeof *len);
    float *score = emdpo_malloc(n * sizeof *score);
    int32_t *type = emdpo_malloc(n * sizeof *type);
    int rc = bytes && s && len && score && type ? EMDPO_OK : EMDPO_ERR_NOMEM;
    static const char *const fixed[3] = {"<unk>", "<s>", "</s>"};
    size_t o = 0;
    for (int i = 0; !rc && i < V; i++) {
        size_t plen;
        const char *p = i < 3 ? fixed[i] : emdpo_tokenizer_piece(t, i, &plen);
        if (i < 3) plen = strlen(p);
        s[i] = bytes + o;
        for (size_t k = 0; k < plen; k++) {
            if (p[k] == ' ') {
                memcpy(bytes + o, "\xE2\x96\x81", 3);
                o += 3;
            } else {
                bytes[o++] = p[k];
            }
        }
        len[i] = (size_t)(bytes + o - s[i]);
        score[i] = emdpo_tokenizer_score(t, i);
        type[i] = i == 0 ? TT_UNKNOWN : i < 3 ? TT_CONTROL : i < 259 ? TT_BYTE : TT_NORMAL;
    }
    if (!rc) rc = emdpo_gguf_put_str(w, "tokenizer.ggml.model", "llama");
    if (!rc) rc = emdpo_gguf_put_strs(w, "tokenizer.ggml.tokens", (const char *const *)s, len, n);
    if (!rc) rc = emdpo_gguf_put_f32s(w, "tokenizer.ggml.scores", score, n);
    if (!rc) rc = emdpo_gguf_put_i32s(w, "tokenizer.ggml.token_type", type, n);
    if (!rc) rc = emdpo_gguf_put_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (!rc) rc = emdpo_gguf_put_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (!rc) rc = emdpo_gguf_put_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (!rc) rc = emdpo_gguf_put_bool(w, "tokenizer.ggml.add_bos_token", 1);
    if (!rc) rc = emdpo_gguf_put_bool(w, "tokenizer.ggml.add_eos_token", 0);
    if (!rc) rc = emdpo_gguf_put_bool(w, "tokenizer.ggml.add_space_prefix", 1);
    emdpo_free(bytes, bytes ? total : 0);
    emdpo_free(s, s ? n * sizeof *s : 0);
    emdpo_free(len, len ? n * sizeof *len : 0);
    emdpo_free(score, score ? n * sizeof *score : 0);
    emdpo_free(type, type ? n * sizeof *type : 0);
    return rc ? emdpo_diag_fail(diag, rc, "cannot write the vocabulary: %s", emdpo_status_name(rc)) : EMDPO_OK;
}

/* The byte-level pre-tokenizer of a tokenizer.json as llama.cpp names it:
 * ByteLevel alone (with its GPT-2 regex), or a Split by one of the regexes
 * gguf_vocab.h knows before a ByteLevel without its own. NULL otherwise. */
static const char *byte_level_pre(const emdpo_json *pre) {
    if (!pre || pre->type != EMDPO_JSON_OBJECT) return NULL;
    const emdpo_json *type = emdpo_json_get(pre, "type"), *list = emdpo_json_get(pre, "pretokenizers");
    if (type && type->type == EMDPO_JSON_STRING && strcmp(type->u.str, "ByteLevel") == 0) {
        const emdpo_json *re = emdpo_json_get(pre, "use_regex");
        return !re || (re->type == EMDPO_JSON_BOOL && re->boolean) ? "gpt-2" : NULL;
    }
    if (!list || list->type != EMDPO_JSON_ARRAY || list->len != 2) return NULL;
    const emdpo_json *split = &list->u.elems[0], *bl = &list->u.elems[1];
    const emdpo_json *st = emdpo_json_get(split, "type"), *bt = emdpo_json_get(bl, "type");
    const emdpo_json *pat = emdpo_json_get(split, "pattern"), *re = emdpo_json_get(bl, "use_regex");
    if (!st || st->type != EMDPO_JSON_STRING || strcmp(st->u.str, "Split") != 0 || !bt ||
        bt->type != EMDPO_JSON_STRING || strcmp(bt->u.str, "ByteLevel") != 0 || !re || re->type != EMDPO_JSON_BOOL ||
        re->boolean)
        return NULL;
    const emdpo_json *rx = pat ? emdpo_json_get(pat, "Regex") : NULL;
    return rx && rx->type == EMDPO_JSON_STRING ? emdpo_gguf_pre_name(rx->u.str, rx->len) : NULL;
}

/* A byte-level BPE tokenizer.json as llama.cpp's "gpt2" vocabulary, as its
 * converter writes one: the pieces by id (ids the file leaves unused up to
 * the model's vocab_size become unused "[PADi]" tokens), control tokens
 * for special added tokens and user-defined ones for the others, the merges
 * "a b" by rank, the pre-tokenizer's name, BOS / EOS / padding ids and
 * whether the post-processor adds BOS and EOS. */
static int hf_vocab(emdpo_gguf_writer *w, const emdpo_tokenizer *t, const char *tokenizer, int V, emdpo_diag *diag) {
    char *path = emdpo_path_is_dir(tokenizer) ? emdpo_path_join(tokenizer, "tokenizer.json") : emdpo_strdup(tokenizer);
    char *buf = NULL, *pad = NULL;
    size_t len = 0, n = (size_t)V, pad_len = 0;
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root = NULL;
    emdpo_json_error err;
    const char **s = emdpo_calloc(n, sizeof *s), **merges = NULL;
    size_t *slen = emdpo_calloc(n, sizeof *slen), *mlen = NULL, n_merges = 0;
    int32_t *type = emdpo_calloc(n, sizeof *type);
    char *mbuf = NULL;
    size_t mbuf_len = 0;
    int rc = path && s && slen && type ? EMDPO_OK : EMDPO_ERR_NOMEM;
    if (!rc) rc = emdpo_file_read(path, &buf, &len, diag);
    if (!rc) rc = emdpo_json_doc_create(&doc);
    if (!rc && emdpo_json_parse(doc, buf, len, &root, &err))
        rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "not valid JSON: %s at byte %zu", err.msg, err.offset);
    const emdpo_json *model = rc ? NULL : emdpo_json_get(root, "model");
    const emdpo_json *mtype = model ? emdpo_json_get(model, "type") : NULL;
    const emdpo_json *ml = model ? emdpo_json_get(model, "merges") : NULL;
    const char *pre = rc ? NULL : byte_level_pre(emdpo_json_get(root, "pre_tokenizer"));
    if (!rc && (!mtype || mtype->type != EMDPO_JSON_STRING || strcmp(mtype->u.str, "BPE") != 0 || !pre || !ml ||
                ml->type != EMDPO_JSON_ARRAY))
        rc = emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                             "only byte-level BPE tokenizer.json files whose pre-tokenizer llama.cpp names (GPT-2's, "
                             "Llama 3's, Qwen 2's) are written to GGUF");
    /* The pieces, and "[PADi]" names for unused ids, written back to back. */
    size_t n_pad = 0;
    for (int i = 0; !rc && i < V; i++) {
        s[i] = emdpo_tokenizer_piece(t, i, &slen[i]);
        type[i] = TT_NORMAL;
        if (!s[i]) n_pad++;
    }
    if (!rc && n_pad && !(pad = emdpo_malloc(pad_len = n_pad * 20))) rc = EMDPO_ERR_NOMEM;
    for (int i = 0, o = 0; !rc && i < V; i++)
        if (!s[i]) {
            slen[i] = (size_t)snprintf(pad + o, 20, "[PAD%d]", i);
            s[i] = pad + o;
            o += 20;
            type[i] = TT_UNUSED;
        }
    const emdpo_json *added = rc ? NULL : emdpo_json_get(root, "added_tokens");
    for (size_t i = 0; added && added->type == EMDPO_JSON_ARRAY && i < added->len; i++) {
        const emdpo_json *id = emdpo_json_get(&added->u.elems[i], "id");
        const emdpo_json *sp = emdpo_json_get(&added->u.elems[i], "special");
        if (id && id->is_int && id->inum >= 0 && id->inum < V)
            type[id->inum] = sp && sp->type == EMDPO_JSON_BOOL && sp->boolean ? TT_CONTROL : TT_USER;
    }
    /* Merges as "a b": strings already are; [a, b] pairs are joined. */
    if (!rc) {
        n_merges = ml->len;
        size_t total = 0;
        for (size_t i = 0; i < n_merges; i++) {
            const emdpo_json *e = &ml->u.elems[i];
            if (e->type == EMDPO_JSON_ARRAY && e->len == 2 && e->u.elems[0].type == EMDPO_JSON_STRING &&
                e->u.elems[1].type == EMDPO_JSON_STRING)
                total += e->u.elems[0].len + e->u.elems[1].len + 1;
            else if (e->type != EMDPO_JSON_STRING)
                rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "model.merges[%zu] is neither \"a b\" nor [a, b]", i);
        }
        merges = emdpo_calloc(n_merges + 1, sizeof *merges);
        mlen = emdpo_calloc(n_merges + 1, sizeof *mlen);
        mbuf = emdpo_malloc((mbuf_len = total + 1));
        if (!rc && (!merges || !mlen || !mbuf)) rc = EMDPO_ERR_NOMEM;
        for (size_t i = 0, o = 0; !rc && i < n_merges; i++) {
            const emdpo_json *e = &ml->u.elems[i];
            if (e->type == EMDPO_JSON_STRING) {
                merges[i] = e->u.str;
                mlen[i] = e->len;
                continue;
            }
            const emdpo_json *a = &e->u.elems[0], *b = &e->u.elems[1];
            merges[i] = mbuf + o;
            memcpy(mbuf + o, a->u.str, a->len);
            mbuf[o + a->len] = ' ';
            memcpy(mbuf + o + a->len + 1, b->u.str, b->len);
            mlen[i] = a->len + 1 + b->len;
            o += mlen[i];
        }
    }
    int *ids = NULL;
    size_t n_ids = 0;
    int bos = emdpo_tokenizer_bos(t), eos = emdpo_tokenizer_eos(t), pad_id = emdpo_tokenizer_pad(t);
    if (!rc) rc = emdpo_tokenizer_encode_alloc(t, "", 0, EMDPO_TOK_SPECIAL, &ids, &n_ids);
    int add_bos = !rc && bos >= 0 && n_ids && ids[0] == bos, add_eos = !rc && eos >= 0 && n_ids && ids[n_ids - 1] == eos;
    emdpo_ids_free(ids, n_ids);
    if (!rc) rc = emdpo_gguf_put_str(w, "tokenizer.ggml.model", "gpt2");
    if (!rc) rc = emdpo_gguf_put_str(w, "tokenizer.ggml.pre", pre);
    if (!rc) rc = emdpo_gguf_put_strs(w, "tokenizer.ggml.tokens", s, slen, n);
    if (!rc) rc = emdpo_gguf_put_i32s(w, "tokenizer.ggml.token_type", type, n);
    if (!rc) rc = emdpo_gguf_put_strs(w, "tokenizer.ggml.merges", merges, mlen, n_merges);
    if (!rc && bos >= 0) rc = emdpo_gguf_put_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (!rc && eos >= 0) rc = emdpo_gguf_put_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (!rc && pad_id >= 0) rc = emdpo_gguf_put_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad_id);
    if (!rc) rc = emdpo_gguf_put_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
    if (!rc) rc = emdpo_gguf_put_bool(w, "tokenizer.ggml.add_eos_token", add_eos);
    if (rc && !diag->msg[0]) emdpo_diag_fail(diag, rc, "cannot write the vocabulary: %s", emdpo_status_name(rc));
    emdpo_json_doc_free(doc);
    if (buf) emdpo_free(buf, len + 1);
    emdpo_strfree(path);
    emdpo_free((void *)s, s ? n * sizeof *s : 0);
    emdpo_free(slen, slen ? n * sizeof *slen : 0);
    emdpo_free(type, type ? n * sizeof *type : 0);
    emdpo_free(pad, pad_len);
    emdpo_free((void *)merges, merges ? (n_merges + 1) * sizeof *merges : 0);
    emdpo_free(mlen, mlen ? (n_merges + 1) * sizeof *mlen : 0);
    emdpo_free(mbuf, mbuf ? mbuf_len : 0);
    return rc;
}

static int put_vocab(emdpo_gguf_writer *w, const char *tokenizer, int V, emdpo_diag *diag) {
    if (emdpo_gguf_is_file(tokenizer)) return copy_gguf_vocab(w, tokenizer, V, diag);
    emdpo_tokenizer *t;
    int rc = emdpo_tokenizer_load(tokenizer, V, &t, diag);
    if (rc) return rc;
    emdpo_diag_reset(diag, tokenizer);
    if (emdpo_tokenizer_is_hf(t))
        rc = hf_vocab(w, t, tokenizer, V, diag);
    else
        rc = llama2c_vocab(w, t, V, diag);
    emdpo_tokenizer_free(t);
    return rc;
}

static uint32_t file_type(uint32_t type) {
    switch (type) {
    case EMDPO_GGML_F16: return 1;   /* MOSTLY_F16 */
    case EMDPO_GGML_Q8_0: return 7;  /* MOSTLY_Q8_0 */
    case EMDPO_GGML_BF16: return 32; /* MOSTLY_BF16 */
    default: return 0;               /* ALL_F32 */
    }
}

static int put_hparams(emdpo_gguf_writer *w, const emdpo_llama_config *c, uint32_t type) {
    const char *arch = arch_names[c->arch];
    char k[96];
    int rc = emdpo_gguf_put_str(w, "general.architecture", arch);
    if (!rc) rc = emdpo_gguf_put_str(w, "general.name", "emdpo");
    if (!rc) rc = emdpo_gguf_put_u32(w, "general.file_type", file_type(type));
#define PUT_U32(name, v) \
    if (!rc) rc = (snprintf(k, sizeof k, "%s." name, arch), emdpo_gguf_put_u32(w, k, (uint32_t)(v)))
#define PUT_F32(name, v) \
    if (!rc) rc = (snprintf(k, sizeof k, "%s." name, arch), emdpo_gguf_put_f32(w, k, (v)))
    int hs = emdpo_llama_head_size(c);
    /* A sliding window longer sequences would need is emdpo's context. */
    PUT_U32("context_length", emdpo_llama_context(c));
    PUT_U32("embedding_length", c->dim);
    PUT_U32("block_count", c->n_layers);
    PUT_U32("feed_forward_length", c->hidden_dim);
    PUT_U32("attention.head_count", c->n_heads);
    PUT_U32("attention.head_count_kv", c->n_kv_heads);
    PUT_U32("attention.key_length", hs);
    PUT_U32("attention.value_length", hs);
    PUT_F32("attention.layer_norm_rms_epsilon", c->norm_eps);
    PUT_F32("rope.freq_base", c->rope_theta);
    PUT_U32("rope.dimension_count", hs);
    PUT_U32("vocab_size", c->vocab_size);
    if (c->rope_type == EMDPO_ROPE_LINEAR) {
        if (!rc) rc = (snprintf(k, sizeof k, "%s.rope.scaling.type", arch), emdpo_gguf_put_str(w, k, "linear"));
        PUT_F32("rope.scaling.factor", c->rope_factor);
    } else if (c->rope_type == EMDPO_ROPE_LLAMA3) {
        PUT_U32("rope.scaling.original_context_length", c->rope_original_max_pos);
    }
#undef PUT_U32
#undef PUT_F32
    return rc;
}

int emdpo_gguf_model_save(const emdpo_llama *m, const char *tokenizer, const char *path, uint32_t type,
                          emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    const emdpo_llama_config *c = &m->config;
    const emdpo_llama_params *p = &m->params;
    if (type != EMDPO_GGML_F32 && type != EMDPO_GGML_F16 && type != EMDPO_GGML_BF16 && type != EMDPO_GGML_Q8_0)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "GGUF tensors are written as F32, F16, BF16 or Q8_0");
    if (c->rope_type == EMDPO_ROPE_LLAMA3 && c->arch != EMDPO_ARCH_LLAMA && c->arch != EMDPO_ARCH_MISTRAL)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "llama.cpp applies llama3 RoPE scaling to llama models only");
    emdpo_gguf_writer *w;
    if (emdpo_gguf_writer_create(&w)) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    int rc = put_hparams(w, c, type);
    if (rc) emdpo_diag_fail(diag, rc, "cannot write the metadata: %s", emdpo_status_name(rc));
    if (!rc && !(rc = put_vocab(w, tokenizer, c->vocab_size, diag))) emdpo_diag_reset(diag, path);
    int hs = emdpo_llama_head_size(c);
    /* Rotate-half models get reordered copies of q, k and theirs, which
     * must live until the file is written. */
    size_t perm_n = 0, used = 0;
    for (int w_ = 0; w_ < N_W; w_++) {
        slot s = slot_of(c, p, NULL, 0, w_);
        if (s.heads && has_w(c, w_)) perm_n += (size_t)(s.ne[0] * s.ne[1]) * (size_t)c->n_layers;
    }
    float *perm = !rc && perm_n ? emdpo_malloc(perm_n * sizeof *perm) : NULL, *divisors = NULL;
    if (!rc && perm_n && !perm) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    uint64_t vc[2] = {(uint64_t)c->dim, (uint64_t)c->vocab_size}, cc = (uint64_t)c->dim;
    /* Matrices in the asked type; vectors, and rows Q8_0 cannot block, otherwise. */
#define MAT_TYPE(ne0) (type == EMDPO_GGML_Q8_0 && (ne0) % 32 ? EMDPO_GGML_F16 : type)
    if (!rc) rc = emdpo_gguf_add_tensor(w, "token_embd.weight", 2, vc, MAT_TYPE(vc[0]), p->tok_emb);
    if (!rc && c->rope_type == EMDPO_ROPE_LLAMA3) {
        uint64_t n = (uint64_t)hs / 2;
        if (!(divisors = emdpo_malloc((size_t)n * sizeof *divisors))) rc = EMDPO_ERR_NOMEM;
        for (int i = 0; !rc && i < hs / 2; i++)
            divisors[i] = (float)llama3_divisor(c->rope_theta, i, hs, c->rope_factor, c->rope_low_freq_factor,
                                                c->rope_high_freq_factor, c->rope_original_max_pos);
        if (!rc) rc = emdpo_gguf_add_tensor(w, "rope_freqs.weight", 1, &n, EMDPO_GGML_F32, divisors);
    }
    char name[96];
    for (int l = 0; !rc && l < c->n_layers; l++)
        for (int w_ = 0; !rc && w_ < N_W; w_++) {
            if (!has_w(c, w_)) continue;
            slot s = slot_of(c, p, NULL, l, w_);
            const float *data = s.data;
            if (s.heads) {
                reorder(&s, s.data, perm + used, hs, 1);
                data = perm + used;
                used += (size_t)(s.ne[0] * s.ne[1]);
            }
            snprintf(name, sizeof name, "blk.%d.%s", l, w_names[w_]);
            rc = emdpo_gguf_add_tensor(w, name, (uint32_t)s.n_dims, s.ne, s.n_dims == 2 ? MAT_TYPE(s.ne[0]) : 0,
                                       data);
        }
    if (!rc) rc = emdpo_gguf_add_tensor(w, "output_norm.weight", 1, &cc, EMDPO_GGML_F32, p->rms_final);
    if (!rc && !c->tied) rc = emdpo_gguf_add_tensor(w, "output.weight", 2, vc, MAT_TYPE(vc[0]), p->lm_head);
#undef MAT_TYPE
    if (rc && !diag->msg[0]) emdpo_diag_fail(diag, rc, "cannot lay out the tensors: %s", emdpo_status_name(rc));
    if (!rc) rc = emdpo_gguf_write(w, path, diag);
    emdpo_free(perm, perm ? perm_n * sizeof *perm : 0);
    emdpo_free(divisors, divisors ? (size_t)hs / 2 * sizeof *divisors : 0);
    emdpo_gguf_writer_free(w);
    return rc;
}
