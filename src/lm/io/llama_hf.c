#include "lm/io/llama_hf.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json.h"

/* ---- config.json ------------------------------------------------------- */

/* A positive int under key; *out keeps its default when absent and
 * required is 0. */
static int get_pos_int(const emdpo_json *root, const char *key, int required, int *out, emdpo_diag *diag) {
    const emdpo_json *v = emdpo_json_get(root, key);
    if (!v) return required ? emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"%s\" is missing", key) : EMDPO_OK;
    if (v->type != EMDPO_JSON_NUMBER || !v->is_int || v->inum <= 0 || v->inum > INT_MAX)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"%s\" must be a positive integer below 2^31", key);
    *out = (int)v->inum;
    return EMDPO_OK;
}

static int get_pos_float(const emdpo_json *root, const char *key, float *out, emdpo_diag *diag) {
    const emdpo_json *v = emdpo_json_get(root, key);
    if (!v) return EMDPO_OK;
    if (v->type != EMDPO_JSON_NUMBER || !(v->num > 0) || !isfinite((float)v->num) || (float)v->num == 0)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"%s\" must be a positive number within float range", key);
    *out = (float)v->num;
    return EMDPO_OK;
}

/* The families config.json may name, with what sets them apart. */
typedef struct family {
    const char *model_type, *architecture;
    int arch;
    int max_pos;    /* max_position_embeddings when absent (the family's config class default) */
    int kv_heads;   /* num_key_value_heads when absent; 0: num_attention_heads */
    int qkv_bias;   /* q, k, v biases always (Qwen2) */
    int qk_norm;    /* q_norm, k_norm (Qwen3) */
    int bias_key;   /* attention_bias turns on q, k, v and o biases */
    int window;     /* 1: sliding_window applies (Mistral); 2: only with use_sliding_window (Qwen) */
} family;

static const family k_families[] = {
    {"llama", "LlamaForCausalLM", EMDPO_ARCH_LLAMA, 2048, 0, 0, 0, 1, 0},
    {"mistral", "MistralForCausalLM", EMDPO_ARCH_MISTRAL, 131072, 8, 0, 0, 0, 1},
    {"qwen2", "Qwen2ForCausalLM", EMDPO_ARCH_QWEN2, 32768, 32, 1, 0, 0, 2},
    {"qwen3", "Qwen3ForCausalLM", EMDPO_ARCH_QWEN3, 32768, 32, 0, 1, 1, 2},
};

static const family *family_of_arch(int arch) {
    for (size_t i = 0; i < sizeof k_families / sizeof *k_families; i++)
        if (k_families[i].arch == arch) return &k_families[i];
    return &k_families[0];
}

/* model_type, absent meaning llama. */
static int read_family(const emdpo_json *root, const family **out, emdpo_diag *diag) {
    const emdpo_json *v = emdpo_json_get(root, "model_type");
    *out = &k_families[0];
    if (!v) return EMDPO_OK;
    if (v->type == EMDPO_JSON_STRING)
        for (size_t i = 0; i < sizeof k_families / sizeof *k_families; i++)
            if (strcmp(v->u.str, k_families[i].model_type) == 0) {
                *out = &k_families[i];
                return EMDPO_OK;
            }
    return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                           "model_type \"%.40s\" is not supported (llama, mistral, qwen2 and qwen3 are)",
                           v->type == EMDPO_JSON_STRING ? v->u.str : emdpo_json_type_name(v->type));
}

/* A boolean under key; *out keeps its default when absent or null. */
static int get_bool(const emdpo_json *root, const char *key, int *out, emdpo_diag *diag) {
    const emdpo_json *v = emdpo_json_get(root, key);
    if (!v || v->type == EMDPO_JSON_NULL) return EMDPO_OK;
    if (v->type != EMDPO_JSON_BOOL) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"%s\" must be true or false", key);
    *out = v->boolean;
    return EMDPO_OK;
}

/* What each family adds to Llama: biases, q/k norms, the sliding window;
 * the variants emdpo does not implement are refused by key. */
static int read_variants(const emdpo_json *root, const family *f, emdpo_llama_config *k, emdpo_diag *diag) {
    const emdpo_json *v = emdpo_json_get(root, "hidden_act");
    if (v && (v->type != EMDPO_JSON_STRING || strcmp(v->u.str, "silu") != 0))
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "hidden_act must be \"silu\" (SwiGLU)");
    int mlp_bias = 0, bias = 0, use_window = f->window == 1, rc;
    if ((rc = get_bool(root, "mlp_bias", &mlp_bias, diag)) || (rc = get_bool(root, "tie_word_embeddings", &k->tied, diag)))
        return rc;
    if (mlp_bias) return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "mlp_bias must be false: the MLP has no biases");
    if (f->bias_key && (rc = get_bool(root, "attention_bias", &bias, diag))) return rc;
    k->qkv_bias = bias || f->qkv_bias;
    k->o_bias = bias;
    k->qk_norm = f->qk_norm;
    if (f->window == 2 && (rc = get_bool(root, "use_sliding_window", &use_window, diag))) return rc;
    v = emdpo_json_get(root, "sliding_window");
    if (!v || v->type == EMDPO_JSON_NULL || !use_window) return EMDPO_OK;
    if (v->type != EMDPO_JSON_NUMBER || !v->is_int || v->inum <= 0 || v->inum > INT_MAX)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "\"sliding_window\" must be a positive integer or null");
    /* Qwen's window applies from layer max_window_layers on; emdpo applies one window to every layer. */
    const emdpo_json *mw = f->window == 2 ? emdpo_json_get(root, "max_window_layers") : NULL;
    if (mw && !(mw->type == EMDPO_JSON_NUMBER && mw->is_int && mw->inum == 0) && v->inum < k->max_seq_len)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                               "use_sliding_window with max_window_layers > 0 (a window on some layers only) is not "
                               "supported");
    k->sliding_window = (int)v->inum;
    return EMDPO_OK;
}

/* A positive number member of rope_scaling. */
static int scaling_num(const emdpo_json *s, const char *key, float *out, emdpo_diag *diag) {
    const emdpo_json *v = emdpo_json_get(s, key);
    if (!v || v->type != EMDPO_JSON_NUMBER || !(v->num > 0) || v->num > 1e30)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "rope_scaling.%s must be a positive number", key);
    *out = (float)v->num;
    return EMDPO_OK;
}

/* rope_scaling: null, or {"rope_type" (or the older "type"): "default",
 * "linear" with factor, or "llama3" with factor, low_freq_factor,
 * high_freq_factor and original_max_position_embeddings}. Other kinds
 * ("dynamic", "yarn", ...) are refused by name. */
static int rope_scaling(const emdpo_json *s, emdpo_llama_config *k, emdpo_diag *diag) {
    k->rope_type = EMDPO_ROPE_DEFAULT;
    if (!s || s->type == EMDPO_JSON_NULL) return EMDPO_OK;
    if (s->type != EMDPO_JSON_OBJECT) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "rope_scaling must be an object");
    const emdpo_json *t = emdpo_json_get(s, "rope_type");
    if (!t) t = emdpo_json_get(s, "type");
    if (!t || t->type != EMDPO_JSON_STRING)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "rope_scaling has no rope_type (or type) string");
    int rc;
    if (strcmp(t->u.str, "default") == 0) return EMDPO_OK;
    if (strcmp(t->u.str, "linear") == 0) {
        k->rope_type = EMDPO_ROPE_LINEAR;
        return scaling_num(s, "factor", &k->rope_factor, diag);
    }
    if (strcmp(t->u.str, "llama3") != 0)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "rope_scaling \"%.40s\" is not supported (default, "
                               "linear and llama3 are)", t->u.str);
    k->rope_type = EMDPO_ROPE_LLAMA3;
    float orig;
    if ((rc = scaling_num(s, "factor", &k->rope_factor, diag)) ||
        (rc = scaling_num(s, "low_freq_factor", &k->rope_low_freq_factor, diag)) ||
        (rc = scaling_num(s, "high_freq_factor", &k->rope_high_freq_factor, diag)) ||
        (rc = scaling_num(s, "original_max_position_embeddings", &orig, diag)))
        return rc;
    if (orig > 1e9f || orig != (float)(int)orig)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "rope_scaling.original_max_position_embeddings must be an integer");
    k->rope_original_max_pos = (int)orig;
    if (!(k->rope_high_freq_factor > k->rope_low_freq_factor))
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "rope_scaling.high_freq_factor must exceed low_freq_factor");
    if (!(k->rope_factor >= 1.0f)) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "rope_scaling.factor must be >= 1");
    return EMDPO_OK;
}

int emdpo_hf_config_parse(const char *text, size_t len, const char *name, emdpo_llama_config *c,
                          emdpo_diag *diag) {
    emdpo_diag_reset(diag, name);
    memset(c, 0, sizeof *c);
    emdpo_json_doc *doc = NULL;
    int rc = emdpo_json_doc_create(&doc);
    if (rc) return rc;
    const emdpo_json *root = NULL;
    emdpo_json_error err;
    rc = emdpo_json_parse(doc, text, len, &root, &err);
    if (rc == EMDPO_ERR_PARSE) emdpo_diag_fail(diag, rc, "not valid JSON: %s at byte %zu", err.msg, err.offset);
    if (!rc && root->type != EMDPO_JSON_OBJECT) rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "not a JSON object");
    emdpo_llama_config k = {0};
    const family *f = &k_families[0];
    if (!rc) rc = read_family(root, &f, diag);
    k.arch = f->arch;
    k.max_seq_len = f->max_pos;
    k.norm_eps = 1e-6f;
    k.rope_theta = 10000.0f;
    if (!rc) rc = get_pos_int(root, "hidden_size", 1, &k.dim, diag);
    if (!rc) rc = get_pos_int(root, "intermediate_size", 1, &k.hidden_dim, diag);
    if (!rc) rc = get_pos_int(root, "num_hidden_layers", 1, &k.n_layers, diag);
    if (!rc) rc = get_pos_int(root, "num_attention_heads", 1, &k.n_heads, diag);
    if (!rc) rc = get_pos_int(root, "vocab_size", 1, &k.vocab_size, diag);
    k.n_kv_heads = f->kv_heads ? f->kv_heads : k.n_heads;
    if (!rc) rc = get_pos_int(root, "num_key_value_heads", 0, &k.n_kv_heads, diag);
    if (!rc) rc = get_pos_int(root, "max_position_embeddings", 0, &k.max_seq_len, diag);
    if (!rc) rc = get_pos_float(root, "rms_norm_eps", &k.norm_eps, diag);
    if (!rc) rc = get_pos_float(root, "rope_theta", &k.rope_theta, diag);
    /* Qwen3's head_dim defaults to 128; the others' to hidden_size / num_attention_heads. */
    if (!rc && f->arch == EMDPO_ARCH_QWEN3) k.head_dim = 128;
    const emdpo_json *hd = rc ? NULL : emdpo_json_get(root, "head_dim");
    if (hd && hd->type != EMDPO_JSON_NULL) rc = get_pos_int(root, "head_dim", 1, &k.head_dim, diag);
    if (!rc) rc = read_variants(root, f, &k, diag);
    if (!rc) rc = rope_scaling(emdpo_json_get(root, "rope_scaling"), &k, diag);
    if (!rc) {
        if (!k.head_dim && k.dim % k.n_heads)
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "hidden_size %d is not divisible by num_attention_heads %d",
                      k.dim, k.n_heads);
        else if (k.n_heads % k.n_kv_heads)
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                      "num_attention_heads %d is not divisible by num_key_value_heads %d", k.n_heads,
                      k.n_kv_heads);
        else if (emdpo_llama_head_size(&k) % 2)
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "the head size %d is odd, which RoPE cannot rotate",
                      emdpo_llama_head_size(&k));
        else if (emdpo_llama_config_check(&k))
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "the sizes describe a model too large to address");
        k.head_dim = emdpo_llama_head_size(&k);
    }
    emdpo_json_doc_free(doc);
    if (!rc) *c = k;
    return rc;
}

int emdpo_hf_config_read(const char *path, emdpo_llama_config *c, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    char *buf;
    size_t len;
    int rc = emdpo_file_read(path, &buf, &len, diag);
    if (rc) return rc;
    rc = emdpo_hf_config_parse(buf, len, path, c, diag);
    emdpo_free(buf, len + 1);
    return rc;
}

/* The shortest %g spelling that reads back as the same float. */
static void format_float(char *buf, size_t size, float f) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, size, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) return;
    }
}

/* PyTorch's name of a dtype, as config.json's torch_dtype gives it. */
static const char *torch_dtype(emdpo_st_dtype dt) {
    return dt == EMDPO_ST_BF16 ? "bfloat16" : dt == EMDPO_ST_F16 ? "float16" : "float32";
}

int emdpo_hf_config_write(const char *path, const emdpo_llama_config *c, emdpo_st_dtype dtype, int bos, int eos,
                          emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (emdpo_llama_config_check(c))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "invalid model configuration");
    const family *f = family_of_arch(c->arch);
    /* Each family's config names its biases one way only. */
    if ((f->qkv_bias ? !c->qkv_bias || c->o_bias : c->qkv_bias != c->o_bias || (c->o_bias && !f->bias_key)) ||
        c->qk_norm != f->qk_norm || (c->sliding_window && !f->window))
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                               "a %s config.json cannot describe this model's biases, q/k norms or sliding window",
                               f->model_type);
    char eps[32], theta[32], fa[32], lo[32], hi[32], scaling[256], window[96], bias[40];
    format_float(eps, sizeof eps, c->norm_eps);
    format_float(theta, sizeof theta, c->rope_theta);
    format_float(fa, sizeof fa, c->rope_factor);
    format_float(lo, sizeof lo, c->rope_low_freq_factor);
    format_float(hi, sizeof hi, c->rope_high_freq_factor);
    if (c->rope_type == EMDPO_ROPE_LINEAR)
        snprintf(scaling, sizeof scaling, "{\"rope_type\": \"linear\", \"factor\": %s}", fa);
    else if (c->rope_type == EMDPO_ROPE_LLAMA3)
        snprintf(scaling, sizeof scaling,
                 "{\"rope_type\": \"llama3\", \"factor\": %s, \"low_freq_factor\": %s, \"high_freq_factor\": %s, "
                 "\"original_max_position_embeddings\": %d}", fa, lo, hi, c->rope_original_max_pos);
    else
        snprintf(scaling, sizeof scaling, "null");
    char ids[64] = "";
    if (bos >= 0) snprintf(ids, sizeof ids, "  \"bos_token_id\": %d,\n", bos);
    if (eos >= 0) snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "  \"eos_token_id\": %d,\n", eos);
    window[0] = bias[0] = '\0';
    if (f->window == 1 && c->sliding_window)
        snprintf(window, sizeof window, "  \"sliding_window\": %d,\n", c->sliding_window);
    else if (f->window == 1)
        snprintf(window, sizeof window, "  \"sliding_window\": null,\n");
    else if (f->window == 2 && c->sliding_window)
        snprintf(window, sizeof window,
                 "  \"use_sliding_window\": true,\n  \"sliding_window\": %d,\n  \"max_window_layers\": 0,\n",
                 c->sliding_window);
    else if (f->window == 2)
        snprintf(window, sizeof window, "  \"use_sliding_window\": false,\n");
    if (f->bias_key) snprintf(bias, sizeof bias, "  \"attention_bias\": %s,\n", c->o_bias ? "true" : "false");
    emdpo_afile af;
    int rc = emdpo_afile_open(&af, path, diag);
    if (rc) return rc;
    fprintf(af.fp,
            "{\n"
            "  \"architectures\": [\"%s\"],\n"
            "  \"model_type\": \"%s\",\n"
            "  \"hidden_size\": %d,\n"
            "  \"intermediate_size\": %d,\n"
            "  \"num_hidden_layers\": %d,\n"
            "  \"num_attention_heads\": %d,\n"
            "  \"num_key_value_heads\": %d,\n"
            "  \"head_dim\": %d,\n"
            "  \"vocab_size\": %d,\n"
            "  \"max_position_embeddings\": %d,\n"
            "  \"rms_norm_eps\": %s,\n"
            "  \"rope_theta\": %s,\n"
            "  \"tie_word_embeddings\": %s,\n"
            "  \"hidden_act\": \"silu\",\n"
            "%s%s"
            "%s"
            "  \"rope_scaling\": %s,\n"
            "%s"
            "  \"torch_dtype\": \"%s\"\n"
            "}\n",
            f->architecture, f->model_type, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
            emdpo_llama_head_size(c), c->vocab_size, c->max_seq_len, eps, theta, c->tied ? "true" : "false", bias,
            c->arch == EMDPO_ARCH_LLAMA ? "  \"mlp_bias\": false,\n" : "", window, scaling, ids, torch_dtype(dtype));
    return emdpo_afile_commit(&af, diag);
}

/* ---- the q/k row permutation -------------------------------------------- */

/* emdpo_hf_permute_rows over rows of row_bytes bytes. */
static void permute_rows(const unsigned char *src, unsigned char *dst, size_t row_bytes, int n_heads, int head_size,
                         int to_hf) {
    size_t half = (size_t)head_size / 2;
    for (size_t h = 0; h < (size_t)n_heads; h++)
        for (size_t i = 0; i < half; i++)
            for (size_t t = 0; t < 2; t++) {
                /* Ours: row 2i + t of the head; HF's: row t * hs/2 + i. */
                size_t ours = h * (size_t)head_size + 2 * i + t;
                size_t hf = h * (size_t)head_size + t * half + i;
                size_t from = to_hf ? ours : hf, to = to_hf ? hf : ours;
                memcpy(dst + to * row_bytes, src + from * row_bytes, row_bytes);
            }
}

void emdpo_hf_permute_rows(const float *src, float *dst, int n_heads, int head_size, int cols, int to_hf) {
    permute_rows((const unsigned char *)src, (unsigned char *)dst, (size_t)cols * sizeof *dst, n_heads, head_size,
                 to_hf);
}

void emdpo_hf_permute_rows16(const uint16_t *src, uint16_t *dst, int n_heads, int head_size, int cols, int to_hf) {
    permute_rows((const unsigned char *)src, (unsigned char *)dst, (size_t)cols * sizeof *dst, n_heads, head_size,
                 to_hf);
}

/* ---- tensor names ---------------------------------------------------------- */

/* Per-layer tensors in HF's order, with the emdpo tensor each maps to; the
 * optional ones last. */
enum {
    T_ATT_NORM, T_Q, T_K, T_V, T_O, T_FFN_NORM, T_GATE, T_DOWN, T_UP,
    T_Q_BIAS, T_K_BIAS, T_V_BIAS, T_O_BIAS, T_Q_NORM, T_K_NORM, N_LAYER_TENSORS
};
static const char *const k_layer_names[N_LAYER_TENSORS] = {
    "input_layernorm.weight",  "self_attn.q_proj.weight", "self_attn.k_proj.weight",
    "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",    "mlp.down_proj.weight",    "mlp.up_proj.weight",
    "self_attn.q_proj.bias",   "self_attn.k_proj.bias",   "self_attn.v_proj.bias",
    "self_attn.o_proj.bias",   "self_attn.q_norm.weight", "self_attn.k_norm.weight",
};

typedef struct layer_tensor {
    float *data;  /* this layer's slice of the emdpo tensor, NULL when the model has none */
    uint16_t *data16; /* instead of data: a frozen model's matrix slice */
    int rank;
    int64_t shape[2];
    int perm_heads; /* > 0: rows in heads of hs that HF orders for rotate-half RoPE (emdpo_hf_permute_rows) */
} layer_tensor;

/* Whether c's model has tensor `which`. */
static int layer_tensor_present(const emdpo_llama_config *c, int which) {
    if (which < T_Q_BIAS) return 1;
    if (which < T_O_BIAS) return c->qkv_bias;
    return which == T_O_BIAS ? c->o_bias : c->qk_norm;
}

/* Layer l's tensor `which` in p, or for a matrix of a frozen model (f not
 * NULL) in f. */
static layer_tensor layer_tensor_of(const emdpo_llama_config *c, const emdpo_llama_params *p,
                                    const emdpo_llama_mats16 *f, int l, int which) {
    int64_t C = c->dim, H = c->hidden_dim, hs = emdpo_llama_head_size(c), NH = c->n_heads, NKV = c->n_kv_heads;
    int64_t qd = NH * hs, kvd = NKV * hs;
    size_t L = (size_t)l;
    static const int proj_of[N_LAYER_TENSORS] = {
        [T_Q] = EMDPO_PROJ_Q + 1,    [T_K] = EMDPO_PROJ_K + 1,     [T_V] = EMDPO_PROJ_V + 1,   [T_O] = EMDPO_PROJ_O + 1,
        [T_GATE] = EMDPO_PROJ_GATE + 1, [T_DOWN] = EMDPO_PROJ_DOWN + 1, [T_UP] = EMDPO_PROJ_UP + 1};
    if (!layer_tensor_present(c, which)) return (layer_tensor){NULL, NULL, 1, {0, 0}, 0};
    if (f && proj_of[which]) {
        int proj = proj_of[which] - 1, out, in;
        emdpo_llama_proj_shape(c, proj, &out, &in);
        int heads = which == T_Q ? (int)NH : which == T_K ? (int)NKV : 0;
        return (layer_tensor){NULL, f->w[proj] + L * (size_t)out * (size_t)in, 2, {out, in}, heads};
    }
    switch (which) {
    case T_ATT_NORM: return (layer_tensor){p->rms_att + L * C, NULL, 1, {C, 0}, 0};
    case T_Q: return (layer_tensor){p->wq + L * qd * C, NULL, 2, {qd, C}, (int)NH};
    case T_K: return (layer_tensor){p->wk + L * kvd * C, NULL, 2, {kvd, C}, (int)NKV};
    case T_V: return (layer_tensor){p->wv + L * kvd * C, NULL, 2, {kvd, C}, 0};
    case T_O: return (layer_tensor){p->wo + L * C * qd, NULL, 2, {C, qd}, 0};
    case T_FFN_NORM: return (layer_tensor){p->rms_ffn + L * C, NULL, 1, {C, 0}, 0};
    case T_GATE: return (layer_tensor){p->w1 + L * H * C, NULL, 2, {H, C}, 0};
    case T_DOWN: return (layer_tensor){p->w2 + L * C * H, NULL, 2, {C, H}, 0};
    case T_UP: return (layer_tensor){p->w3 + L * H * C, NULL, 2, {H, C}, 0};
    case T_Q_BIAS: return (layer_tensor){p->bq + L * qd, NULL, 1, {qd, 0}, (int)NH};
    case T_K_BIAS: return (layer_tensor){p->bk + L * kvd, NULL, 1, {kvd, 0}, (int)NKV};
    case T_V_BIAS: return (layer_tensor){p->bv + L * kvd, NULL, 1, {kvd, 0}, 0};
    case T_O_BIAS: return (layer_tensor){p->bo + L * C, NULL, 1, {C, 0}, 0};
    case T_Q_NORM: return (layer_tensor){p->q_norm + L * hs, NULL, 1, {hs, 0}, 1};
    default: return (layer_tensor){p->k_norm + L * hs, NULL, 1, {hs, 0}, 1};
    }
}

/* The permutation's columns: a matrix's, or 1 for a vector. */
static int perm_cols(const layer_tensor *t) { return t->rank == 2 ? (int)t->shape[1] : 1; }

static void layer_name(char *buf, size_t size, int l, int which) {
    snprintf(buf, size, "model.layers.%d.%s", l, k_layer_names[which]);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Whether name is one of the model's tensors (or an ignorable buffer). */
static int known_name(const emdpo_llama_config *c, const char *name) {
    if (strcmp(name, "model.embed_tokens.weight") == 0 || strcmp(name, "model.norm.weight") == 0) return 1;
    if (strcmp(name, "lm_head.weight") == 0) return !c->tied;
    if (ends_with(name, ".rotary_emb.inv_freq")) return 1;
    static const char prefix[] = "model.layers.";
    if (strncmp(name, prefix, sizeof prefix - 1) != 0) return 0;
    const char *s = name + sizeof prefix - 1;
    long l = 0;
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9')) return 0;
    for (; *s >= '0' && *s <= '9'; s++)
        if ((l = l * 10 + (*s - '0')) >= c->n_layers) return 0;
    if (*s++ != '.') return 0;
    for (int i = 0; i < N_LAYER_TENSORS; i++)
        if (strcmp(s, k_layer_names[i]) == 0) return layer_tensor_present(c, i);
    return 0;
}

int emdpo_hf_read_params(const emdpo_st_source *st, const emdpo_llama_config *c, const emdpo_llama_params *p,
                         const emdpo_llama_mats16 *f, emdpo_diag *diag) {
    for (size_t i = 0; i < emdpo_st_source_count(st); i++) {
        const char *name = emdpo_st_source_tensor_at(st, i)->name;
        if (!known_name(c, name)) {
            emdpo_diag_reset(diag, emdpo_st_source_name(st));
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                        c->tied && strcmp(name, "lm_head.weight") == 0
                            ? "tensor \"%.80s\" is present although tie_word_embeddings is true"
                            : "tensor \"%.80s\" is not part of a Llama model of this configuration",
                        name);
        }
    }
    int64_t C = c->dim, V = c->vocab_size, hs = emdpo_llama_head_size(c);
    int64_t vc[2] = {V, C};
    emdpo_st_dtype dt16 = f && f->dtype == EMDPO_DTYPE_F16 ? EMDPO_ST_F16 : EMDPO_ST_BF16;
    int rc = f ? emdpo_st_source_read16(st, "model.embed_tokens.weight", 2, vc, dt16, f->tok_emb, diag)
               : emdpo_st_source_read_f32(st, "model.embed_tokens.weight", 2, vc, p->tok_emb, diag);
    if (!rc) rc = emdpo_st_source_read_f32(st, "model.norm.weight", 1, &C, p->rms_final, diag);
    if (!rc && !c->tied)
        rc = f ? emdpo_st_source_read16(st, "lm_head.weight", 2, vc, dt16, f->lm_head, diag)
               : emdpo_st_source_read_f32(st, "lm_head.weight", 2, vc, p->lm_head, diag);
    /* the largest permuted tensor, q_proj's */
    size_t scratch_n = (size_t)c->n_heads * (size_t)hs * (size_t)C * (f ? sizeof(uint16_t) : sizeof(float));
    void *scratch = rc ? NULL : emdpo_malloc(scratch_n);
    if (!rc && !scratch) rc = EMDPO_ERR_NOMEM;
    char name[96];
    for (int l = 0; !rc && l < c->n_layers; l++)
        for (int w = 0; !rc && w < N_LAYER_TENSORS; w++) {
            layer_tensor t = layer_tensor_of(c, p, f, l, w);
            if (!t.data && !t.data16) continue;
            layer_name(name, sizeof name, l, w);
            if (t.data16) {
                rc = emdpo_st_source_read16(st, name, t.rank, t.shape, dt16, t.perm_heads ? scratch : t.data16, diag);
                if (!rc && t.perm_heads)
                    emdpo_hf_permute_rows16(scratch, t.data16, t.perm_heads, (int)hs, perm_cols(&t), 0);
                continue;
            }
            rc = emdpo_st_source_read_f32(st, name, t.rank, t.shape, t.perm_heads ? scratch : t.data, diag);
            if (!rc && t.perm_heads) emdpo_hf_permute_rows(scratch, t.data, t.perm_heads, (int)hs, perm_cols(&t), 0);
        }
    emdpo_free(scratch, scratch_n);
    return rc;
}

int emdpo_hf_write_params(const char *path, const emdpo_llama_config *c, const emdpo_llama_params *p,
                          emdpo_st_dtype dtype, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    size_t L = (size_t)c->n_layers, perm_n = 0;
    size_t n_out = 2 + (c->tied ? 0 : 1) + L * N_LAYER_TENSORS;
    int hs = emdpo_llama_head_size(c);
    /* HF's row order of the permuted tensors, every layer's, side by side */
    for (int w = 0; w < N_LAYER_TENSORS; w++) {
        layer_tensor t = layer_tensor_of(c, p, NULL, 0, w);
        if (t.data && t.perm_heads) perm_n += L * (size_t)t.shape[0] * (size_t)perm_cols(&t);
    }
    emdpo_st_out *out = emdpo_calloc(n_out, sizeof *out);
    char *names = emdpo_malloc(n_out * 96);
    float *perm = emdpo_malloc(perm_n * sizeof *perm);
    int rc = EMDPO_OK;
    if (!out || !names || !perm) {
        rc = EMDPO_ERR_NOMEM;
        goto done;
    }
    size_t k = 0;
    out[k++] = (emdpo_st_out){"model.embed_tokens.weight", 2, {c->vocab_size, c->dim}, p->tok_emb};
    float *dst = perm;
    for (int l = 0; l < c->n_layers; l++)
        for (int w = 0; w < N_LAYER_TENSORS; w++) {
            layer_tensor t = layer_tensor_of(c, p, NULL, l, w);
            if (!t.data) continue;
            char *name = names + k * 96;
            layer_name(name, 96, l, w);
            const float *data = t.data;
            if (t.perm_heads) {
                emdpo_hf_permute_rows(t.data, dst, t.perm_heads, hs, perm_cols(&t), 1);
                data = dst;
                dst += (size_t)t.shape[0] * (size_t)perm_cols(&t);
            }
            out[k++] = (emdpo_st_out){name, t.rank, {t.shape[0], t.shape[1]}, data};
        }
    out[k++] = (emdpo_st_out){"model.norm.weight", 1, {c->dim}, p->rms_final};
    if (!c->tied) out[k++] = (emdpo_st_out){"lm_head.weight", 2, {c->vocab_size, c->dim}, p->lm_head};
    /* transformers refuses safetensors files without format metadata. */
    static const char *const meta[] = {"format", "pt"};
    rc = emdpo_st_write(path, out, k, dtype, meta, 1, diag);
done:
    emdpo_free(out, n_out * sizeof *out);
    emdpo_free(names, n_out * 96);
    emdpo_free(perm, perm_n * sizeof *perm);
    return rc;
}

/* ---- loading ------------------------------------------------------------------ */

int emdpo_llama_hf_load(const char *dir, int frozen, emdpo_llama **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_llama_config c;
    char *cfg = emdpo_path_join(dir, "config.json");
    if (!cfg) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    int rc = emdpo_hf_config_read(cfg, &c, diag);
    emdpo_strfree(cfg);
    emdpo_st_source *st = NULL;
    if (!rc) rc = emdpo_st_source_open_dir(dir, &st, diag);
    if (rc) return rc;
    emdpo_llama *m = NULL;
    emdpo_st_dtype dt = emdpo_st_source_dtype(st);
    int mt = emdpo_st_source_matrix_dtype(st);
    int dt16 = mt == EMDPO_ST_BF16 ? EMDPO_DTYPE_BF16 : mt == EMDPO_ST_F16 ? EMDPO_DTYPE_F16 : 0;
    /* Every parameter comes from the files' tensors: a config.json that
     * describes far more than they hold (64 MB of float32 more) is refused
     * before allocating; a smaller mismatch is named tensor by tensor as
     * they are read. */
    uint64_t held = 0, want = (uint64_t)emdpo_llama_num_params(&c);
    for (size_t i = 0; i < emdpo_st_source_count(st); i++) held += emdpo_st_source_tensor_at(st, i)->numel;
    if (want > held && want - held > ((uint64_t)64 << 20) / sizeof(float))
        rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, emdpo_st_source_name(st), 0,
                           "config.json describes %zu parameters; the tensors hold %llu",
                           emdpo_llama_num_params(&c), (unsigned long long)held);
    else if (frozen && dt16)
        rc = emdpo_llama_create_frozen(&c, dt16, &m);
    else
        rc = emdpo_llama_create(&c, &m);
    if (!rc) rc = emdpo_hf_read_params(st, &c, &m->params, m->frozen, diag);
    if (!rc) m->file_dtype = dt == EMDPO_ST_BF16 ? EMDPO_DTYPE_BF16 : dt == EMDPO_ST_F16 ? EMDPO_DTYPE_F16 : EMDPO_DTYPE_F32;
    emdpo_st_source_close(st);
    if (rc) {
        emdpo_llama_free(m);
        return rc;
    }
    *out = m;
    return EMDPO_OK;
}
