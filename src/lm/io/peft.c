#include "lm/io/peft.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <float.h>
#include <limits.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/afile.h"
#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json.h"
#include "base/json_write.h"
#include "lm/io/hf_tok.h"
#include "lm/io/llama_hf.h"

/* The block of a transformers layer holding each projection, in
 * EMDPO_PROJ_ order (the projections' names: emdpo_lora_target_name). */
static const char *const k_block[EMDPO_N_PROJ] = {"self_attn", "self_attn", "self_attn", "self_attn",
                                                  "mlp",       "mlp",       "mlp"};

#define TENSOR_PREFIX "base_model.model."
enum { NAME_CAP = 96 };

static void module_name(char *buf, int layer, int t) {
    snprintf(buf, NAME_CAP, "model.layers.%d.%s.%s", layer, k_block[t], emdpo_lora_target_name(t));
}

static void tensor_name(char *buf, int layer, int t, int is_b) {
    snprintf(buf, NAME_CAP, TENSOR_PREFIX "model.layers.%d.%s.%s.lora_%c.weight", layer, k_block[t],
             emdpo_lora_target_name(t), is_b ? 'B' : 'A');
}

/* ---- adapter_config.json ----------------------------------------------- */

/* How a key of the config is treated: read, without effect on what the
 * adapter computes, or a feature emdpo refuses unless it is off. */
enum { KEY_READ, KEY_IGNORED, KEY_REFUSED };

static const struct {
    const char *key;
    int kind;
    const char *feature; /* KEY_REFUSED: what it turns on */
} k_keys[] = {
    {"peft_type", KEY_READ, NULL},
    {"task_type", KEY_READ, NULL},
    {"r", KEY_READ, NULL},
    {"lora_alpha", KEY_READ, NULL},
    {"lora_dropout", KEY_READ, NULL},
    {"use_rslora", KEY_READ, NULL},
    {"target_modules", KEY_READ, NULL},
    {"exclude_modules", KEY_READ, NULL},
    {"layers_to_transform", KEY_READ, NULL},
    {"layers_pattern", KEY_READ, NULL},
    {"rank_pattern", KEY_READ, NULL},
    {"alpha_pattern", KEY_READ, NULL},
    {"bias", KEY_READ, NULL},
    {"init_lora_weights", KEY_READ, NULL},
    {"base_model_name_or_path", KEY_IGNORED, NULL},
    {"revision", KEY_IGNORED, NULL},
    {"inference_mode", KEY_IGNORED, NULL},
    {"peft_version", KEY_IGNORED, NULL},
    {"auto_mapping", KEY_IGNORED, NULL},
    {"megatron_core", KEY_IGNORED, NULL},
    {"qalora_group_size", KEY_IGNORED, NULL},
    {"loftq_config", KEY_IGNORED, NULL},
    {"eva_config", KEY_IGNORED, NULL},
    {"corda_config", KEY_IGNORED, NULL},
    {"lora_ga_config", KEY_IGNORED, NULL},
    {"runtime_config", KEY_IGNORED, NULL},
    {"ensure_weight_tying", KEY_IGNORED, NULL},
    {"use_dora", KEY_REFUSED, "DoRA (weight-decomposed LoRA)"},
    {"use_qalora", KEY_REFUSED, "QA-LoRA"},
    {"lora_bias", KEY_REFUSED, "a bias on lora_B"},
    {"fan_in_fan_out", KEY_REFUSED, "weights stored (in, out), as GPT-2's Conv1D"},
    {"modules_to_save", KEY_REFUSED, "fully trained copies of other modules"},
    {"megatron_config", KEY_REFUSED, "Megatron parallel layers"},
    {"layer_replication", KEY_REFUSED, "replicated layers"},
    {"trainable_token_indices", KEY_REFUSED, "trained token embeddings"},
    {"target_parameters", KEY_REFUSED, "LoRA on parameters rather than modules"},
    {"alora_invocation_tokens", KEY_REFUSED, "activated LoRA (aLoRA)"},
    {"arrow_config", KEY_REFUSED, "Arrow routing"},
    {"use_bdlora", KEY_REFUSED, "block-diagonal LoRA"},
};

/* Whether a value turns a feature on: anything but null, false, 0, "" or
 * an empty list or object. */
static int is_set(const emdpo_json *v) {
    switch (v->type) {
    case EMDPO_JSON_NULL: return 0;
    case EMDPO_JSON_BOOL: return v->boolean;
    case EMDPO_JSON_NUMBER: return v->num != 0;
    default: return v->len != 0;
    }
}

/* A regular expression matched as Python's re.fullmatch (full) or re.match
 * (anchored at the start only), with a bound on backtracking so that no
 * pattern runs for long over a module name. */
typedef struct regex {
    void *code; /* pcre2_code */
} regex;

static int regex_compile(regex *re, const char *pattern, size_t len, const char *prefix, const char *suffix,
                         const char *key, emdpo_diag *diag) {
    static const char limit[] = "(*LIMIT_MATCH=200000)";
    size_t np = strlen(prefix), ns = strlen(suffix), n = sizeof limit - 1 + np + len + ns;
    if (len > 4096) return emdpo_diag_fail(diag, EMDPO_ERR_LIMIT, "%s: a pattern longer than 4096 bytes", key);
    char *full = emdpo_malloc(n + 1);
    if (!full) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    memcpy(full, limit, sizeof limit - 1);
    memcpy(full + sizeof limit - 1, prefix, np);
    memcpy(full + sizeof limit - 1 + np, pattern, len);
    memcpy(full + sizeof limit - 1 + np + len, suffix, ns + 1);
    int rc = emdpo_hf_tok_compile(full, n, 0, &re->code, diag);
    emdpo_free(full, n + 1);
    if (rc == EMDPO_ERR_PARSE)
        return emdpo_diag_fail(diag, rc, "%s: \"%.60s\" is not a regular expression PCRE2 compiles", key, pattern);
    return rc ? emdpo_diag_fail(diag, rc, "out of memory") : EMDPO_OK;
}

static void regex_free(regex *re) {
    pcre2_code_free(re->code);
    re->code = NULL;
}

/* 1 and group 1's bounds (when it has one) when re matches s, 0 when not;
 * a negative emdpo status on failure. */
static int regex_match(const regex *re, const char *s, int full, size_t *g_begin, size_t *g_end) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!md) return -EMDPO_ERR_NOMEM;
    uint32_t opt = PCRE2_ANCHORED | (full ? PCRE2_ENDANCHORED : 0);
    int r = pcre2_match(re->code, (PCRE2_SPTR)s, strlen(s), 0, opt, md, NULL);
    if (r == PCRE2_ERROR_JIT_STACKLIMIT) /* JIT's small stack: the interpreter gives the same answer */
        r = pcre2_match(re->code, (PCRE2_SPTR)s, strlen(s), 0, opt | PCRE2_NO_JIT, md, NULL);
    int out = r >= 0                      ? 1
              : r == PCRE2_ERROR_NOMATCH  ? 0
              : r == PCRE2_ERROR_NOMEMORY ? -EMDPO_ERR_NOMEM
                                          : -EMDPO_ERR_LIMIT;
    if (out == 1 && g_begin) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        *g_begin = r >= 2 ? ov[2] : 0;
        *g_end = r >= 2 ? ov[3] : 0;
    }
    pcre2_match_data_free(md);
    return out;
}

/* target_modules or exclude_modules: a list of names, a regular
 * expression, "all-linear", or (target_modules null) the families'
 * default list. */
typedef struct name_set {
    const emdpo_json *list; /* an array of strings */
    regex re;
    int all_linear, qv_default;
} name_set;

/* 2: name equals an entry; 1: it ends in "." + an entry; 0: neither. */
static int list_match(const name_set *s, const char *name) {
    static const char *const qv[] = {"q_proj", "v_proj"};
    size_t n = strlen(name), count = s->qv_default ? 2 : s->list ? s->list->len : 0;
    int found = 0;
    for (size_t i = 0; i < count; i++) {
        const char *e = s->qv_default ? qv[i] : s->list->u.elems[i].u.str;
        size_t len = s->qv_default ? strlen(e) : s->list->u.elems[i].len;
        if (len == n && memcmp(e, name, n) == 0) return 2;
        if (len < n && name[n - len - 1] == '.' && memcmp(name + n - len, e, len) == 0) found = 1;
    }
    return found;
}

/* What the config says, with its patterns compiled. */
typedef struct peft_config {
    emdpo_lora_config lora;
    name_set target, exclude;
    const emdpo_json *layers; /* layers_to_transform: an int or a non-empty list of ints; NULL: every layer */
    regex *layer_re;          /* layers_pattern, or PEFT's default, as ".*?\.PATTERN\.(\d+)\." */
    size_t n_layer_re;
} peft_config;

static void peft_config_free(peft_config *pc) {
    regex_free(&pc->target.re);
    regex_free(&pc->exclude.re);
    for (size_t i = 0; i < pc->n_layer_re; i++) regex_free(&pc->layer_re[i]);
    emdpo_free(pc->layer_re, pc->n_layer_re * sizeof *pc->layer_re);
}

/* The layer index PEFT reads from a module name: the first layers_pattern
 * whose ".*?\.PATTERN\.(\d+)\." matches at the start. -1: none. */
static long layer_index(const peft_config *pc, const char *name, int *rc) {
    for (size_t i = 0; i < pc->n_layer_re; i++) {
        size_t b = 0, e = 0;
        int m = regex_match(&pc->layer_re[i], name, 0, &b, &e);
        if (m < 0) {
            *rc = -m;
            return -1;
        }
        if (m) {
            long v = 0;
            for (size_t j = b; j < e && v < INT_MAX; j++) v = v * 10 + (name[j] - '0');
            return v;
        }
    }
    return -1;
}

/* PEFT's check_target_module_exists for one module name of the base:
 * 1 targeted, 0 not, a negative emdpo status on failure. projection says
 * whether the module is a Linear one ("all-linear" takes those, but not
 * lm_head). */
static int targeted(const peft_config *pc, const char *name, int projection) {
    int m;
    if (pc->exclude.re.code) {
        if ((m = regex_match(&pc->exclude.re, name, 1, NULL, NULL)) != 0) return m > 0 ? 0 : m;
    } else if (list_match(&pc->exclude, name)) {
        return 0;
    }
    if (pc->target.all_linear) return projection;
    if (pc->target.re.code) return regex_match(&pc->target.re, name, 1, NULL, NULL);
    m = list_match(&pc->target, name);
    if (m != 1 || !pc->layers) return m != 0;
    int rc = EMDPO_OK;
    long l = layer_index(pc, name, &rc);
    if (rc) return -rc;
    if (l < 0) return 0;
    if (pc->layers->type == EMDPO_JSON_NUMBER) return pc->layers->inum == l;
    for (size_t i = 0; i < pc->layers->len; i++)
        if (pc->layers->u.elems[i].inum == l) return 1;
    return 0;
}

/* A name set from a list of strings, a string (a regex, or "all-linear"
 * when all_linear_ok) or null. */
static int read_name_set(const emdpo_json *v, const char *key, int all_linear_ok, name_set *s, emdpo_diag *diag) {
    if (!v || v->type == EMDPO_JSON_NULL) return EMDPO_OK;
    if (v->type == EMDPO_JSON_STRING) {
        if (all_linear_ok && strlen(v->u.str) == 10 && strncasecmp(v->u.str, "all-linear", 10) == 0) {
            s->all_linear = 1;
            return EMDPO_OK;
        }
        return regex_compile(&s->re, v->u.str, v->len, "", "", key, diag);
    }
    if (v->type == EMDPO_JSON_ARRAY) {
        for (size_t i = 0; i < v->len; i++)
            if (v->u.elems[i].type != EMDPO_JSON_STRING)
                return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s[%zu] is not a string", key, i);
        s->list = v;
        return EMDPO_OK;
    }
    return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s must be a list of module names, a string or null", key);
}

/* layers_to_transform and layers_pattern, which PEFT applies only to list
 * targets. */
static int read_layers(const emdpo_json *root, peft_config *pc, emdpo_diag *diag) {
    const emdpo_json *v = emdpo_json_get(root, "layers_to_transform");
    const emdpo_json *pat = emdpo_json_get(root, "layers_pattern");
    int have_layers = v && v->type != EMDPO_JSON_NULL, have_pat = pat && is_set(pat);
    if (have_pat && !have_layers)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "layers_pattern is set without layers_to_transform");
    if (!have_layers) return EMDPO_OK;
    if (pc->target.re.code || pc->target.all_linear)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                               "layers_to_transform cannot be used when target_modules is a "
                               "string");
    if (v->type == EMDPO_JSON_ARRAY) {
        for (size_t i = 0; i < v->len; i++)
            if (v->u.elems[i].type != EMDPO_JSON_NUMBER || !v->u.elems[i].is_int)
                return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "layers_to_transform[%zu] is not an integer", i);
        if (!v->len) return EMDPO_OK; /* an empty list: every layer, as PEFT reads it */
    } else if (v->type != EMDPO_JSON_NUMBER || !v->is_int) {
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                               "layers_to_transform must be an integer, a list of them or "
                               "null");
    }
    pc->layers = v;
    if (have_pat && pat->type != EMDPO_JSON_STRING && pat->type != EMDPO_JSON_ARRAY)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "layers_pattern must be a string, a list of strings or null");
    size_t n = !have_pat ? 1 : pat->type == EMDPO_JSON_STRING ? 1 : pat->len;
    if (!(pc->layer_re = emdpo_calloc(n, sizeof *pc->layer_re)))
        return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    pc->n_layer_re = n;
    for (size_t i = 0; i < n; i++) {
        const emdpo_json *p = !have_pat ? NULL : pat->type == EMDPO_JSON_STRING ? pat : &pat->u.elems[i];
        if (p && p->type != EMDPO_JSON_STRING)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "layers_pattern[%zu] is not a string", i);
        /* PEFT: re.match(rf".*?\.{pattern}\.(\d+)\.", key); no pattern: ".*?\.[^.]*\.(\d+)\." */
        int rc = p ? regex_compile(&pc->layer_re[i], p->u.str, p->len, ".*?\\.", "\\.(\\d+)\\.", "layers_pattern", diag)
                   : regex_compile(&pc->layer_re[i], "", 0, ".*?\\.[^.]*\\.(\\d+)\\.", "", "layers_pattern", diag);
        if (rc) return rc;
    }
    return EMDPO_OK;
}

/* The value under key; NULL when absent or null (LoraConfig's default
 * then applies). */
static const emdpo_json *present(const emdpo_json *root, const char *key) {
    const emdpo_json *v = emdpo_json_get(root, key);
    return v && v->type != EMDPO_JSON_NULL ? v : NULL;
}

/* r, lora_alpha, lora_dropout and use_rslora, with LoraConfig's defaults
 * (8, 8, 0, false). */
static int read_numbers(const emdpo_json *root, emdpo_lora_config *c, emdpo_diag *diag) {
    const emdpo_json *v;
    c->r = 8;
    c->alpha = 8.0f;
    c->dropout = 0.0f;
    c->rslora = 0;
    if ((v = present(root, "r")) && (v->type != EMDPO_JSON_NUMBER || !v->is_int || v->inum < 1 || v->inum > INT_MAX))
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "r must be a positive integer");
    if (v) c->r = (int)v->inum;
    if ((v = present(root, "lora_alpha")) && (v->type != EMDPO_JSON_NUMBER || fabs(v->num) > FLT_MAX))
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "lora_alpha must be a number");
    if (v) c->alpha = (float)v->num;
    if ((v = present(root, "lora_dropout")) && (v->type != EMDPO_JSON_NUMBER || !(v->num >= 0 && v->num < 1)))
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "lora_dropout must be a number in [0, 1)");
    if (v) c->dropout = (float)v->num < 1.0f ? (float)v->num : nextafterf(1.0f, 0.0f);
    if ((v = present(root, "use_rslora")) && v->type != EMDPO_JSON_BOOL)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "use_rslora must be true or false");
    if (v) c->rslora = v->boolean;
    return EMDPO_OK;
}

/* rank_pattern / alpha_pattern: emdpo's adapters have one rank and one
 * alpha, so every module's entry must give the global value. */
static int read_pattern(const emdpo_json *root, const char *key, float value, emdpo_diag *diag) {
    const emdpo_json *v = present(root, key);
    if (!v) return EMDPO_OK;
    if (v->type != EMDPO_JSON_OBJECT) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s must be an object", key);
    for (size_t i = 0; i < v->len; i++) {
        const emdpo_json *e = &v->u.members[i].value;
        if (e->type != EMDPO_JSON_NUMBER)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s[\"%.60s\"] is not a number", key, v->u.members[i].key);
        if ((float)e->num != value)
            return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                                   "%s gives \"%.60s\" %g: adapters with more than one rank or alpha are not supported",
                                   key, v->u.members[i].key, e->num);
    }
    return EMDPO_OK;
}

/* The keys that decide nothing numeric: the type, the task, the bias, the
 * initialisation, and every key the table refuses or does not know. */
static int read_kinds(const emdpo_json *root, emdpo_diag *diag) {
    const emdpo_json *v = emdpo_json_get(root, "peft_type");
    if (!v) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "peft_type is missing");
    if (v->type != EMDPO_JSON_STRING || strcmp(v->u.str, "LORA") != 0)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "peft_type \"%.40s\": only LORA adapters are supported",
                               v->type == EMDPO_JSON_STRING ? v->u.str : emdpo_json_type_name(v->type));
    if ((v = present(root, "task_type")) && (v->type != EMDPO_JSON_STRING || strcmp(v->u.str, "CAUSAL_LM") != 0))
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                               "task_type \"%.40s\": only CAUSAL_LM adapters are supported",
                               v->type == EMDPO_JSON_STRING ? v->u.str : emdpo_json_type_name(v->type));
    if ((v = present(root, "bias")) && (v->type != EMDPO_JSON_STRING || strcmp(v->u.str, "none") != 0))
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                               "bias \"%.40s\": adapters that train biases are not "
                               "supported (bias must be \"none\")",
                               v->type == EMDPO_JSON_STRING ? v->u.str : emdpo_json_type_name(v->type));
    if ((v = present(root, "init_lora_weights"))) {
        /* The initialisations that rewrite the base's weights leave an
         * adapter that only fits the rewritten base. */
        static const char *const ok[] = {"gaussian", "eva", "orthogonal", "mica"};
        int fine = v->type == EMDPO_JSON_BOOL;
        for (size_t i = 0; !fine && v->type == EMDPO_JSON_STRING && i < sizeof ok / sizeof *ok; i++)
            fine = strcmp(v->u.str, ok[i]) == 0;
        if (!fine)
            return emdpo_diag_fail(
                diag, EMDPO_ERR_UNSUPPORTED,
                "init_lora_weights \"%.40s\": the adapter belongs to a base whose weights it rewrote "
                "(save it with PEFT's path_initial_model_for_weight_conversion)",
                v->type == EMDPO_JSON_STRING ? v->u.str : emdpo_json_type_name(v->type));
    }
    for (size_t i = 0; i < root->len; i++) {
        const emdpo_json_member *m = &root->u.members[i];
        size_t k = 0, n = sizeof k_keys / sizeof *k_keys;
        while (k < n && strcmp(k_keys[k].key, m->key) != 0) k++;
        if (k < n && k_keys[k].kind != KEY_REFUSED) continue;
        if (!is_set(&m->value)) continue;
        if (k < n)
            return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "%s is set: %s is not supported", m->key,
                                   k_keys[k].feature);
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "%.60s is set: a setting emdpo does not know", m->key);
    }
    return EMDPO_OK;
}

/* The target selects none of the base's transformers modules other than
 * the projections (PEFT refuses those that are not Linear, emdpo also
 * lm_head). */
static int check_one_other(const peft_config *pc, const char *name, emdpo_diag *diag) {
    int m = targeted(pc, name, 0);
    if (m < 0) return emdpo_diag_fail(diag, -m, "target_modules: matching %s failed", name);
    if (m)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                               "target_modules selects %s: only the seven projections (q_proj, k_proj, v_proj, o_proj, "
                               "gate_proj, up_proj, down_proj) can be adapted",
                               name);
    return EMDPO_OK;
}

static int check_other_modules(const peft_config *pc, const emdpo_llama_config *base, emdpo_diag *diag) {
    static const char *const global[] = {"model",      "model.embed_tokens", "model.layers",
                                         "model.norm", "model.rotary_emb",   "lm_head"};
    static const char *const per_layer[] = {"",
                                            ".self_attn",
                                            ".mlp",
                                            ".mlp.act_fn",
                                            ".input_layernorm",
                                            ".post_attention_layernorm",
                                            ".self_attn.q_norm",
                                            ".self_attn.k_norm"};
    int rc = EMDPO_OK;
    for (size_t i = 0; !rc && i < sizeof global / sizeof *global; i++) rc = check_one_other(pc, global[i], diag);
    char name[NAME_CAP];
    for (int l = 0; !rc && l < base->n_layers; l++)
        for (size_t i = 0; !rc && i < (base->qk_norm ? 8u : 6u); i++) {
            snprintf(name, sizeof name, "model.layers.%d%s", l, per_layer[i]);
            rc = check_one_other(pc, name, diag);
        }
    return rc;
}

/* Parses the config and marks in mask[l] (L bytes) the projections it
 * targets on layer l; c gets r, alpha, dropout, rslora and the union of
 * the targets. */
static int parse_config(const char *text, size_t len, const char *name, const emdpo_llama_config *base,
                        emdpo_lora_config *c, unsigned char *mask, emdpo_diag *diag) {
    emdpo_diag_reset(diag, name);
    emdpo_json_doc *doc = NULL;
    int rc = emdpo_json_doc_create(&doc);
    if (rc) return emdpo_diag_fail(diag, rc, "out of memory");
    const emdpo_json *root = NULL;
    emdpo_json_error err;
    peft_config pc = {0};
    rc = emdpo_json_parse(doc, text, len, &root, &err);
    if (rc == EMDPO_ERR_PARSE)
        emdpo_diag_fail(diag, rc, "not valid JSON: %s at byte %zu", err.msg, err.offset);
    else if (rc)
        emdpo_diag_fail(diag, rc, "out of memory");
    if (!rc && root->type != EMDPO_JSON_OBJECT) rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "not a JSON object");
    if (!rc) rc = read_kinds(root, diag);
    if (!rc) rc = read_numbers(root, &pc.lora, diag);
    if (!rc) rc = read_pattern(root, "rank_pattern", (float)pc.lora.r, diag);
    if (!rc) rc = read_pattern(root, "alpha_pattern", pc.lora.alpha, diag);
    const emdpo_json *t = rc ? NULL : emdpo_json_get(root, "target_modules");
    pc.target.qv_default = !t || t->type == EMDPO_JSON_NULL;
    if (!rc) rc = read_name_set(t, "target_modules", 1, &pc.target, diag);
    if (!rc) rc = read_name_set(emdpo_json_get(root, "exclude_modules"), "exclude_modules", 0, &pc.exclude, diag);
    if (!rc) rc = read_layers(root, &pc, diag);
    if (!rc) rc = check_other_modules(&pc, base, diag);
    unsigned targets = 0;
    char mod[NAME_CAP];
    for (int l = 0; !rc && l < base->n_layers; l++) {
        mask[l] = 0;
        for (int p = 0; !rc && p < EMDPO_N_PROJ; p++) {
            module_name(mod, l, p);
            int m = targeted(&pc, mod, 1);
            if (m < 0) rc = emdpo_diag_fail(diag, -m, "target_modules: matching %s failed", mod);
            if (m > 0) mask[l] |= (unsigned char)(1u << p);
        }
        targets |= mask[l];
    }
    if (!rc && !targets)
        rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "target_modules selects none of the base's modules");
    pc.lora.targets = targets;
    if (!rc && emdpo_lora_config_check(&pc.lora)) rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "not a usable adapter");
    *c = pc.lora;
    peft_config_free(&pc);
    emdpo_json_doc_free(doc);
    return rc;
}

/* ---- adapter_model.safetensors --------------------------------------- */

/* Layer, projection and A (0) or B (1) of a tensor named as PEFT names the
 * adapter of one of the base's projections; 0 for any other name. */
static int parse_tensor_name(const char *name, int n_layers, int *layer, int *proj, int *is_b) {
    static const char pre[] = TENSOR_PREFIX "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1) != 0) return 0;
    const char *p = name + sizeof pre - 1;
    long l = 0;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9' && l < n_layers) l = l * 10 + (*p++ - '0');
    if (l >= n_layers) return 0;
    char buf[NAME_CAP];
    for (int t = 0; t < EMDPO_N_PROJ; t++)
        for (int b = 0; b < 2; b++) {
            tensor_name(buf, (int)l, t, b);
            if (strcmp(buf, name) == 0) {
                *layer = (int)l;
                *proj = t;
                *is_b = b;
                return 1;
            }
        }
    return 0;
}

/* Every tensor of st is lora_A or lora_B of a targeted projection, of its
 * shape, and every one of those is there. */
static int check_tensors(const emdpo_safetensors *st, const emdpo_llama_config *base, const emdpo_lora_config *c,
                         const unsigned char *mask, emdpo_diag *diag) {
    size_t expected = 0, n = emdpo_st_count(st);
    for (int l = 0; l < base->n_layers; l++)
        for (int t = 0; t < EMDPO_N_PROJ; t++) expected += (mask[l] >> t & 1) * 2;
    char mod[NAME_CAP];
    for (size_t i = 0; i < n; i++) {
        const emdpo_st_tensor *x = emdpo_st_tensor_at(st, i);
        int l, t, b;
        if (!parse_tensor_name(x->name, base->n_layers, &l, &t, &b)) {
            if (strstr(x->name, "lora_magnitude_vector"))
                return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "tensor \"%.100s\": DoRA is not supported",
                                       x->name);
            if (strstr(x->name, "lora_embedding_"))
                return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                                       "tensor \"%.100s\": adapters of the embeddings are not supported", x->name);
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                                   "tensor \"%.100s\" is not the lora_A or lora_B of a projection of the base (%d "
                                   "layers)",
                                   x->name, base->n_layers);
        }
        module_name(mod, l, t);
        if (!(mask[l] >> t & 1))
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "tensor \"%.100s\": adapter_config.json does not target %s",
                                   x->name, mod);
        int out, in;
        emdpo_llama_proj_shape(base, t, &out, &in);
        int64_t want[2] = {b ? out : c->r, b ? c->r : in};
        if (x->rank != 2 || x->shape[0] != want[0] || x->shape[1] != want[1]) {
            char got[64], exp[64];
            emdpo_st_format_shape(got, sizeof got, x->rank, x->shape);
            emdpo_st_format_shape(exp, sizeof exp, 2, want);
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                                   "tensor \"%.100s\" has shape %s, expected %s (r = %d; %s is %d x %d in the base)",
                                   x->name, got, exp, c->r, mod, out, in);
        }
        if (x->dtype != EMDPO_ST_F32 && x->dtype != EMDPO_ST_F16 && x->dtype != EMDPO_ST_BF16 &&
            x->dtype != EMDPO_ST_F64)
            return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                                   "tensor \"%.100s\" is %s (F32, F16, BF16 or F64 are read)", x->name,
                                   emdpo_st_dtype_name(x->dtype));
    }
    if (n == expected) return EMDPO_OK;
    char name[NAME_CAP];
    for (int l = 0; l < base->n_layers; l++)
        for (int t = 0; t < EMDPO_N_PROJ; t++)
            for (int b = 0; b < 2 && (mask[l] >> t & 1); b++) {
                tensor_name(name, l, t, b);
                if (!emdpo_st_find(st, name))
                    return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                                           "tensor \"%s\" is missing (adapter_config.json "
                                           "targets it)",
                                           name);
            }
    return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "unexpected tensors"); /* unreachable: names are unique */
}

/* Reads the checked tensors into a new adapter; B of q_proj and k_proj
 * into emdpo's row order. */
static int read_tensors(const emdpo_safetensors *st, const emdpo_llama_config *base, const emdpo_lora_config *c,
                        const unsigned char *mask, emdpo_lora **out, emdpo_diag *diag) {
    emdpo_lora *lo = NULL;
    int rc = emdpo_lora_create(base, c, &lo);
    if (rc) return emdpo_diag_fail(diag, rc, "cannot make the adapter: %s", emdpo_status_name(rc));
    int hs = emdpo_llama_head_size(base), qout, in;
    emdpo_llama_proj_shape(base, EMDPO_PROJ_Q, &qout, &in);
    size_t scratch_n = (size_t)qout * (size_t)c->r;
    float *scratch = emdpo_malloc(scratch_n * sizeof *scratch);
    if (!scratch) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    char name[NAME_CAP];
    for (int l = 0; !rc && l < base->n_layers; l++)
        for (int t = 0; !rc && t < EMDPO_N_PROJ; t++) {
            if (!(mask[l] >> t & 1)) continue;
            int o;
            emdpo_llama_proj_shape(base, t, &o, &in);
            size_t R = (size_t)c->r;
            float *A = lo->A[t] + (size_t)l * R * (size_t)in, *B = lo->B[t] + (size_t)l * (size_t)o * R;
            int64_t sa[2] = {c->r, in}, sb[2] = {o, c->r};
            int rope = t == EMDPO_PROJ_Q || t == EMDPO_PROJ_K;
            tensor_name(name, l, t, 0);
            rc = emdpo_st_read_f32(st, name, 2, sa, A, diag);
            tensor_name(name, l, t, 1);
            if (!rc) rc = emdpo_st_read_f32(st, name, 2, sb, rope ? scratch : B, diag);
            if (!rc && rope)
                emdpo_hf_permute_rows(scratch, B, t == EMDPO_PROJ_Q ? base->n_heads : base->n_kv_heads, hs, c->r, 0);
        }
    emdpo_free(scratch, scratch ? scratch_n * sizeof *scratch : 0);
    if (rc) {
        emdpo_lora_free(lo);
        return rc;
    }
    *out = lo;
    return EMDPO_OK;
}

/* The config, then the tensors: parse_config's c and mask checked against
 * st and read from it. */
static int read_checked(const emdpo_safetensors *st, const emdpo_llama_config *base, const emdpo_lora_config *c,
                        const unsigned char *mask, emdpo_lora **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, emdpo_st_name(st));
    int rc = check_tensors(st, base, c, mask, diag);
    return rc ? rc : read_tensors(st, base, c, mask, out, diag);
}

/* *out NULL, base usable, and the layer mask parse_config fills. */
static int start(const emdpo_llama_config *base, emdpo_lora **out, unsigned char **mask, emdpo_diag *diag) {
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!base || emdpo_llama_config_check(base))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no usable base configuration");
    if (!(*mask = emdpo_malloc((size_t)base->n_layers))) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    return EMDPO_OK;
}

int emdpo_peft_read_mem(const char *config, size_t config_len, const char *config_name, const void *weights,
                        size_t weights_len, const char *weights_name, const emdpo_llama_config *base, emdpo_lora **out,
                        emdpo_diag *diag) {
    emdpo_diag_reset(diag, config_name);
    unsigned char *mask = NULL;
    int rc = start(base, out, &mask, diag);
    if (!rc && (!config || !weights)) rc = emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no config or weights");
    emdpo_lora_config c;
    emdpo_safetensors *st = NULL;
    if (!rc) rc = parse_config(config, config_len, config_name, base, &c, mask, diag);
    if (!rc) rc = emdpo_st_open_mem(weights, weights_len, weights_name, &st, diag);
    if (!rc) rc = read_checked(st, base, &c, mask, out, diag);
    emdpo_st_close(st);
    emdpo_free(mask, mask ? (size_t)base->n_layers : 0);
    return rc;
}

int emdpo_peft_read(const char *dir, const emdpo_llama_config *base, emdpo_lora **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, dir);
    unsigned char *mask = NULL;
    int rc = start(base, out, &mask, diag);
    if (!rc && !dir) rc = emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no adapter directory");
    char *cfg_path = rc ? NULL : emdpo_path_join(dir, EMDPO_PEFT_CONFIG_NAME);
    char *st_path = rc ? NULL : emdpo_path_join(dir, EMDPO_PEFT_WEIGHTS_NAME);
    char *bin_path = rc ? NULL : emdpo_path_join(dir, "adapter_model.bin"), *text = NULL;
    if (!rc && (!cfg_path || !st_path || !bin_path)) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (!rc && !emdpo_path_is_dir(dir)) rc = emdpo_diag_fail(diag, EMDPO_ERR_IO, "not a directory (an adapter is one)");
    size_t len = 0;
    if (!rc) {
        emdpo_diag_reset(diag, cfg_path);
        rc = emdpo_file_read(cfg_path, &text, &len, diag);
    }
    emdpo_lora_config c;
    if (!rc) rc = parse_config(text, len, cfg_path, base, &c, mask, diag);
    if (!rc && !emdpo_path_is_file(st_path) && emdpo_path_is_file(bin_path))
        rc = emdpo_diag_at(diag, EMDPO_ERR_UNSUPPORTED, bin_path, 0,
                           "PyTorch pickles are not read: save the adapter with safe_serialization=True (PEFT's "
                           "default)");
    emdpo_safetensors *st = NULL;
    if (!rc) rc = emdpo_st_open(st_path, &st, diag);
    if (!rc) rc = read_checked(st, base, &c, mask, out, diag);
    emdpo_st_close(st);
    if (text) emdpo_free(text, len + 1);
    emdpo_strfree(cfg_path);
    emdpo_strfree(st_path);
    emdpo_strfree(bin_path);
    emdpo_free(mask, mask ? (size_t)base->n_layers : 0);
    return rc;
}

/* ---- writing ------------------------------------------------------------ */

int emdpo_peft_write_tensors(const emdpo_lora *lo, const char *path, emdpo_st_dtype dtype, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!lo || !path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no adapter or path");
    const emdpo_llama_config *base = &lo->base;
    const emdpo_lora_config *c = &lo->config;
    if (emdpo_llama_config_check(base) || emdpo_lora_config_check(c))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "not a usable adapter");
    size_t L = (size_t)base->n_layers, R = (size_t)c->r, n_t = 0;
    for (int t = 0; t < EMDPO_N_PROJ; t++) n_t += c->targets >> t & 1;
    size_t n = 2 * L * n_t;
    int qd, kvd, in;
    emdpo_llama_proj_shape(base, EMDPO_PROJ_Q, &qd, &in);
    emdpo_llama_proj_shape(base, EMDPO_PROJ_K, &kvd, &in);
    /* B of q_proj and k_proj in HF's row order */
    size_t perm_n =
        L * R * (size_t)((c->targets & 1u << EMDPO_PROJ_Q ? qd : 0) + (c->targets & 1u << EMDPO_PROJ_K ? kvd : 0));
    emdpo_st_out *outs = emdpo_calloc(n, sizeof *outs);
    char *names = emdpo_malloc(n * NAME_CAP);
    float *perm = perm_n ? emdpo_malloc(perm_n * sizeof *perm) : NULL;
    int rc = EMDPO_OK;
    if (!outs || !names || (perm_n && !perm)) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    size_t k = 0;
    float *pp = perm;
    int hs = emdpo_llama_head_size(base);
    for (size_t l = 0; !rc && l < L; l++)
        for (int t = 0; t < EMDPO_N_PROJ; t++) {
            if (!lo->A[t]) continue;
            int out;
            emdpo_llama_proj_shape(base, t, &out, &in);
            const float *B = lo->B[t] + l * (size_t)out * R;
            if (t == EMDPO_PROJ_Q || t == EMDPO_PROJ_K) {
                emdpo_hf_permute_rows(B, pp, t == EMDPO_PROJ_Q ? base->n_heads : base->n_kv_heads, hs, c->r, 1);
                B = pp;
                pp += (size_t)out * R;
            }
            for (int b = 0; b < 2; b++, k++) {
                tensor_name(names + k * NAME_CAP, (int)l, t, b);
                outs[k].name = names + k * NAME_CAP;
                outs[k].rank = 2;
                outs[k].shape[0] = b ? out : c->r;
                outs[k].shape[1] = b ? c->r : in;
                outs[k].data = b ? B : lo->A[t] + l * R * (size_t)in;
            }
        }
    static const char *const meta[] = {"format", "pt"};
    if (!rc) rc = emdpo_st_write(path, outs, n, dtype, meta, 1, diag);
    emdpo_free(outs, outs ? n * sizeof *outs : 0);
    emdpo_free(names, names ? n * NAME_CAP : 0);
    emdpo_free(perm, perm ? perm_n * sizeof *perm : 0);
    return rc;
}

/* A float as Python's repr shows the value read into a double: the
 * shortest digits that give the float back, with ".0" on a whole number
 * unless whole is 1 (then as an int, as PEFT's int fields are written). */
static void write_float(FILE *fp, float v, int whole) {
    if (whole && v == truncf(v) && fabsf(v) < 1e9f) {
        fprintf(fp, "%d", (int)v);
        return;
    }
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    fputs(buf, fp);
    if (!strpbrk(buf, ".e")) fputs(".0", fp);
}

typedef struct config_ctx {
    const emdpo_lora_config *c;
    const char *base_model;
} config_ctx;

/* LoraConfig.to_dict() as PEFT's save_pretrained writes it
 * (json.dumps(indent=2, sort_keys=True)), with the keys every PEFT from
 * 0.10 on knows. */
static void write_config(FILE *fp, const void *ctx) {
    const config_ctx *x = ctx;
    const emdpo_lora_config *c = x->c;
    fputs("{\n  \"alpha_pattern\": {},\n  \"auto_mapping\": null,\n  \"base_model_name_or_path\": ", fp);
    emdpo_json_str(fp, x->base_model);
    fputs(",\n  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n  \"inference_mode\": true,\n"
          "  \"init_lora_weights\": true,\n  \"layer_replication\": null,\n  \"layers_pattern\": null,\n"
          "  \"layers_to_transform\": null,\n  \"loftq_config\": {},\n  \"lora_alpha\": ",
          fp);
    write_float(fp, c->alpha, 1);
    fputs(",\n  \"lora_dropout\": ", fp);
    write_float(fp, c->dropout, 0);
    fprintf(fp,
            ",\n  \"megatron_config\": null,\n  \"megatron_core\": \"megatron.core\",\n"
            "  \"modules_to_save\": null,\n  \"peft_type\": \"LORA\",\n  \"r\": %d,\n  \"rank_pattern\": {},\n"
            "  \"revision\": null,\n  \"target_modules\": [",
            c->r);
    const char *sep = "\n    ";
    for (int t = 0; t < EMDPO_N_PROJ; t++)
        if (c->targets >> t & 1) {
            fprintf(fp, "%s\"%s\"", sep, emdpo_lora_target_name(t));
            sep = ",\n    ";
        }
    fprintf(fp, "\n  ],\n  \"task_type\": \"CAUSAL_LM\",\n  \"use_dora\": false,\n  \"use_rslora\": %s\n}",
            c->rslora ? "true" : "false");
}

int emdpo_peft_write(const emdpo_lora *lo, const char *dir, emdpo_st_dtype dtype, const char *base_model,
                     emdpo_diag *diag) {
    emdpo_diag_reset(diag, dir);
    if (!lo || !dir) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no adapter or directory");
    if (dtype != EMDPO_ST_F32 && dtype != EMDPO_ST_F16 && dtype != EMDPO_ST_BF16)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "dtype %s: F32, F16 or BF16", emdpo_st_dtype_name(dtype));
    int rc = emdpo_mkdirs(dir, diag);
    char *path = rc ? NULL : emdpo_path_join(dir, EMDPO_PEFT_WEIGHTS_NAME);
    if (!rc && !path) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    if (!rc) rc = emdpo_peft_write_tensors(lo, path, dtype, diag);
    config_ctx ctx = {&lo->config, base_model};
    if (!rc) rc = emdpo_afile_write_in(dir, EMDPO_PEFT_CONFIG_NAME, write_config, &ctx, diag);
    emdpo_strfree(path);
    return rc;
}

/* ---- the public API (emdpo/lm.h) ---------------------------------------- */

int emdpo_lora_adapter_read(const char *dir, const emdpo_llama *base, emdpo_lora_adapter **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, dir);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!base) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no base model");
    return emdpo_peft_read(dir, &base->config, out, diag);
}

int emdpo_lora_adapter_write(const emdpo_lora_adapter *a, const char *dir, emdpo_dtype dtype, const char *base_model,
                             emdpo_diag *diag) {
    emdpo_diag_reset(diag, dir);
    if ((unsigned)dtype > EMDPO_DTYPE_BF16)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "unknown dtype %d", (int)dtype);
    emdpo_st_dtype st = dtype == EMDPO_DTYPE_BF16  ? EMDPO_ST_BF16
                        : dtype == EMDPO_DTYPE_F16 ? EMDPO_ST_F16
                                                   : EMDPO_ST_F32;
    return emdpo_peft_write(a, dir, st, base_model, diag);
}

void emdpo_lora_adapter_free(emdpo_lora_adapter *a) { emdpo_lora_free(a); }
int emdpo_lora_adapter_rank(const emdpo_lora_adapter *a) { return a ? a->config.r : 0; }
double emdpo_lora_adapter_alpha(const emdpo_lora_adapter *a) { return a ? a->config.alpha : 0.0; }
double emdpo_lora_adapter_scale(const emdpo_lora_adapter *a) { return a ? emdpo_lora_scale(&a->config) : 0.0; }
size_t emdpo_lora_adapter_n_params(const emdpo_lora_adapter *a) { return a ? a->n : 0; }

int emdpo_lora_adapter_merge(const emdpo_lora_adapter *a, emdpo_llama *m, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!a || !m) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no adapter or model");
    if (m->frozen)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                               "the model is frozen (16-bit matrices, never changed): "
                               "merge into one loaded in float32");
    int rc = emdpo_lora_merge(a, m);
    if (rc)
        return emdpo_diag_fail(diag, rc,
                               "the adapter was made for a model of %d layers, width %d and %d hidden "
                               "units, not this one (%d, %d, %d)",
                               a->base.n_layers, a->base.dim, a->base.hidden_dim, m->config.n_layers, m->config.dim,
                               m->config.hidden_dim);
    return EMDPO_OK;
}

/* ---- adapter directories as models (the loader's) ---- */

int emdpo_peft_is_dir(const char *path) {
    if (!emdpo_path_is_dir(path)) return 0;
    char *cfg = emdpo_path_join(path, "config.json"), *acfg = emdpo_path_join(path, EMDPO_PEFT_CONFIG_NAME);
    int yes = cfg && acfg && !emdpo_path_is_file(cfg) && emdpo_path_is_file(acfg);
    emdpo_strfree(cfg);
    emdpo_strfree(acfg);
    return yes;
}

int emdpo_peft_base(const char *dir, char **out, emdpo_diag *diag) {
    *out = NULL;
    char *path = emdpo_path_join(dir, EMDPO_PEFT_CONFIG_NAME), *text = NULL;
    size_t len = 0;
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root = NULL, *v;
    emdpo_json_error err;
    int rc = path ? emdpo_file_read(path, &text, &len, diag) : EMDPO_ERR_NOMEM;
    if (!rc) rc = emdpo_json_doc_create(&doc);
    if (!rc && emdpo_json_parse(doc, text, len, &root, &err)) rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, path, 0, "not JSON");
    if (!rc && (!(v = emdpo_json_get(root, "base_model_name_or_path")) || v->type != EMDPO_JSON_STRING || !*v->u.str))
        rc = emdpo_diag_at(diag, EMDPO_ERR_PARSE, path, 0,
                           "\"base_model_name_or_path\" names no base model: load the base and give the adapter "
                           "(--adapter) instead");
    if (!rc) {
        char *rel = emdpo_path_join(dir, v->u.str);
        const char *pick = emdpo_path_exists(v->u.str) || !rel || !emdpo_path_exists(rel) ? v->u.str : rel;
        if (!(*out = emdpo_strdup(pick))) rc = EMDPO_ERR_NOMEM;
        emdpo_strfree(rel);
    }
    if (rc == EMDPO_ERR_NOMEM) emdpo_diag_fail(diag, rc, "out of memory");
    emdpo_json_doc_free(doc);
    if (text) emdpo_free(text, len + 1);
    emdpo_strfree(path);
    return rc;
}
