/* tokenizer.json (Hugging Face tokenizers' serialization) into the
 * pipeline of hf_tok.h. Model BPE with its normalizers (Sequence, NFC,
 * NFKC, NFD, NFKD, Prepend, Replace with a String, Lowercase, Strip),
 * pre-tokenizers (Sequence, Split, ByteLevel, Metaspace, Digits),
 * post-processors (TemplateProcessing, ByteLevel, Bert/RobertaProcessing,
 * Sequence) and decoders (Sequence, ByteLevel, Replace with a String,
 * ByteFallback, Fuse, Strip, Metaspace). Anything else is refused with
 * the field and the type, never silently tokenized another way.
 * "truncation" and "padding" are not applied: sequence lengths are the
 * training options' business. */
#include "lm/io/hf_tok_json.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/json.h"

static const char *type_of(const emdpo_json *v) {
    const emdpo_json *t = emdpo_json_get(v, "type");
    return t && t->type == EMDPO_JSON_STRING ? t->u.str : NULL;
}

static int is(const char *a, const char *b) { return a && strcmp(a, b) == 0; }

/* A boolean member (def when absent or null). */
static int get_bool(const emdpo_json *o, const char *key, int def, int *out, const char *where, emdpo_diag *diag) {
    const emdpo_json *v = emdpo_json_get(o, key);
    if (!v || v->type == EMDPO_JSON_NULL) {
        *out = def;
        return EMDPO_OK;
    }
    if (v->type != EMDPO_JSON_BOOL)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s.%s is a %s, not a boolean", where, key,
                               emdpo_json_type_name(v->type));
    *out = v->boolean;
    return EMDPO_OK;
}

static const emdpo_json *get_str(const emdpo_json *o, const char *key, const char *where, emdpo_diag *diag,
                                 int *rc) {
    const emdpo_json *v = emdpo_json_get(o, key);
    if (!v || v->type != EMDPO_JSON_STRING) {
        *rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s.%s is %s, not a string", where, key,
                              v ? emdpo_json_type_name(v->type) : "missing");
        return NULL;
    }
    *rc = EMDPO_OK;
    return v;
}

static char *dup(const emdpo_json *s) {
    char *d = emdpo_malloc(s->len + 1);
    if (d) memcpy(d, s->u.str, s->len + 1);
    return d;
}

/* A Replace step's pattern ({"String": s} or {"Regex": r}) and content:
 * the literal goes to s->text, a regex compiled to s->re. */
static int replace_step(const emdpo_json *o, emdpo_hf_step *s, const char *where, emdpo_diag *diag) {
    const emdpo_json *p = emdpo_json_get(o, "pattern"), *lit = emdpo_json_get(p, "String"),
                     *re = emdpo_json_get(p, "Regex"), *pat = lit ? lit : re;
    int rc;
    if (!pat || pat->type != EMDPO_JSON_STRING || !pat->len)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s.pattern is not a non-empty {\"String\": ...} or "
                               "{\"Regex\": ...}", where);
    const emdpo_json *c = get_str(o, "content", where, diag, &rc);
    if (!c) return rc;
    if (!(s->content = dup(c))) return EMDPO_ERR_NOMEM;
    s->content_len = c->len;
    if (re && !lit) return emdpo_hf_tok_compile(pat->u.str, pat->len, 0, &s->re, diag);
    if (!(s->text = dup(pat))) return EMDPO_ERR_NOMEM;
    s->text_len = pat->len;
    return EMDPO_OK;
}

static int add(emdpo_hf_tok *t, int list, emdpo_hf_step *s) { return emdpo_hf_tok_add_step(t, list, s); }

/* Lists of steps: a value that is null, one step, or a Sequence of them
 * (under the key that kind of list uses). */
typedef int (*step_fn)(emdpo_hf_tok *t, const emdpo_json *v, const char *where, emdpo_diag *diag);

static int walk(emdpo_hf_tok *t, const emdpo_json *v, const char *seq_key, step_fn fn, const char *where,
                emdpo_diag *diag) {
    if (!v || v->type == EMDPO_JSON_NULL) return EMDPO_OK;
    if (v->type != EMDPO_JSON_OBJECT)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s is a %s, not an object", where,
                               emdpo_json_type_name(v->type));
    if (is(type_of(v), "Sequence")) {
        const emdpo_json *items = emdpo_json_get(v, seq_key);
        if (!items || items->type != EMDPO_JSON_ARRAY)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s.%s is not an array", where, seq_key);
        for (size_t i = 0; i < items->len; i++) {
            int rc = walk(t, &items->u.elems[i], seq_key, fn, where, diag);
            if (rc) return rc;
        }
        return EMDPO_OK;
    }
    return fn(t, v, where, diag);
}

static int unsupported(const char *where, const char *type, emdpo_diag *diag) {
    return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "%s type \"%s\" is not supported", where,
                           type ? type : "(none)");
}

static int normalizer(emdpo_hf_tok *t, const emdpo_json *v, const char *where, emdpo_diag *diag) {
    const char *ty = type_of(v);
    emdpo_hf_step s = {0};
    int rc = EMDPO_OK;
    if (is(ty, "NFC")) s.kind = EMDPO_HF_NORM_NFC;
    else if (is(ty, "NFKC")) s.kind = EMDPO_HF_NORM_NFKC;
    else if (is(ty, "NFD")) s.kind = EMDPO_HF_NORM_NFD;
    else if (is(ty, "NFKD")) s.kind = EMDPO_HF_NORM_NFKD;
    else if (is(ty, "Lowercase")) s.kind = EMDPO_HF_NORM_LOWERCASE;
    else if (is(ty, "Prepend")) {
        const emdpo_json *p = get_str(v, "prepend", where, diag, &rc);
        if (!p) return rc;
        s.kind = EMDPO_HF_NORM_PREPEND;
        if (!(s.text = dup(p))) return EMDPO_ERR_NOMEM;
        s.text_len = p->len;
    } else if (is(ty, "Replace")) {
        s.kind = EMDPO_HF_NORM_REPLACE;
        if ((rc = replace_step(v, &s, where, diag))) {
            emdpo_hf_step_free(&s);
            return rc;
        }
    } else if (is(ty, "Strip")) {
        s.kind = EMDPO_HF_NORM_STRIP;
        if ((rc = get_bool(v, "strip_left", 1, &s.a, where, diag)) || (rc = get_bool(v, "strip_right", 1, &s.b, where, diag)))
            return rc;
    } else {
        return unsupported(where, ty, diag);
    }
    return add(t, 0, &s);
}

static int behavior_of(const char *b, int *out) {
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (is(b, names[i])) {
            *out = i;
            return 1;
        }
    return 0;
}

/* Metaspace's prepend_scheme, or the older add_prefix_space. */
static int prepend_scheme(const emdpo_json *v, int *out, const char *where, emdpo_diag *diag) {
    const emdpo_json *p = emdpo_json_get(v, "prepend_scheme");
    if (p && p->type == EMDPO_JSON_STRING) {
        if (is(p->u.str, "always")) *out = EMDPO_HF_PREPEND_ALWAYS;
        else if (is(p->u.str, "first")) *out = EMDPO_HF_PREPEND_FIRST;
        else if (is(p->u.str, "never")) *out = EMDPO_HF_PREPEND_NEVER;
        else return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s.prepend_scheme \"%s\" is not always, first or never",
                                    where, p->u.str);
        return EMDPO_OK;
    }
    int add_prefix = 1;
    int rc = get_bool(v, "add_prefix_space", 1, &add_prefix, where, diag);
    *out = add_prefix ? EMDPO_HF_PREPEND_ALWAYS : EMDPO_HF_PREPEND_NEVER;
    return rc;
}

static int metaspace(const emdpo_json *v, emdpo_hf_step *s, const char *where, emdpo_diag *diag) {
    int rc;
    const emdpo_json *r = get_str(v, "replacement", where, diag, &rc);
    if (!r) return rc;
    if (!r->len || r->len > 4 || r->len != (size_t)((unsigned char)r->u.str[0] < 0x80   ? 1
                                                     : (unsigned char)r->u.str[0] < 0xE0 ? 2
                                                     : (unsigned char)r->u.str[0] < 0xF0 ? 3
                                                                                          : 4))
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s.replacement must be one character", where);
    if ((rc = prepend_scheme(v, &s->a, where, diag)) || (rc = get_bool(v, "split", 1, &s->b, where, diag))) return rc;
    if (!(s->text = dup(r))) return EMDPO_ERR_NOMEM;
    s->text_len = r->len;
    return EMDPO_OK;
}

static int pre_tokenizer(emdpo_hf_tok *t, const emdpo_json *v, const char *where, emdpo_diag *diag) {
    const char *ty = type_of(v);
    emdpo_hf_step s = {0};
    int rc = EMDPO_OK;
    if (is(ty, "Split")) {
        const emdpo_json *p = emdpo_json_get(v, "pattern"), *re = emdpo_json_get(p, "Regex"),
                         *lit = emdpo_json_get(p, "String"), *b = emdpo_json_get(v, "behavior");
        const emdpo_json *pat = re ? re : lit;
        if (!pat || pat->type != EMDPO_JSON_STRING)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s.pattern is not {\"Regex\": ...} or {\"String\": ...}",
                                   where);
        s.kind = EMDPO_HF_PRE_SPLIT;
        if (!b || b->type != EMDPO_JSON_STRING || !behavior_of(b->u.str, &s.behavior))
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s.behavior is not one of Removed, Isolated, "
                                   "MergedWithPrevious, MergedWithNext, Contiguous", where);
        if ((rc = get_bool(v, "invert", 0, &s.invert, where, diag))) return rc;
        if ((rc = emdpo_hf_tok_compile(pat->u.str, pat->len, pat == lit, &s.re, diag))) return rc;
    } else if (is(ty, "ByteLevel")) {
        s.kind = EMDPO_HF_PRE_BYTELEVEL;
        if ((rc = get_bool(v, "add_prefix_space", 1, &s.a, where, diag)) ||
            (rc = get_bool(v, "use_regex", 1, &s.b, where, diag)))
            return rc;
    } else if (is(ty, "Metaspace")) {
        s.kind = EMDPO_HF_PRE_METASPACE;
        if ((rc = metaspace(v, &s, where, diag))) return rc;
    } else if (is(ty, "Digits")) {
        s.kind = EMDPO_HF_PRE_DIGITS;
        if ((rc = get_bool(v, "individual_digits", 0, &s.a, where, diag))) return rc;
    } else {
        return unsupported(where, ty, diag);
    }
    return add(t, 1, &s);
}

static int decoder(emdpo_hf_tok *t, const emdpo_json *v, const char *where, emdpo_diag *diag) {
    const char *ty = type_of(v);
    emdpo_hf_step s = {0};
    int rc = EMDPO_OK;
    if (is(ty, "ByteLevel")) s.kind = EMDPO_HF_DEC_BYTELEVEL;
    else if (is(ty, "ByteFallback")) s.kind = EMDPO_HF_DEC_BYTEFALLBACK;
    else if (is(ty, "Fuse")) s.kind = EMDPO_HF_DEC_FUSE;
    else if (is(ty, "Replace")) {
        s.kind = EMDPO_HF_DEC_REPLACE;
        if ((rc = replace_step(v, &s, where, diag))) {
            emdpo_hf_step_free(&s);
            return rc;
        }
    } else if (is(ty, "Strip")) {
        const emdpo_json *c = get_str(v, "content", where, diag, &rc), *a = emdpo_json_get(v, "start"),
                         *b = emdpo_json_get(v, "stop");
        if (!c) return rc;
        if (!c->len) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s.content must be one character", where);
        if (!a || !a->is_int || a->inum < 0 || a->inum > 1 << 20 || !b || !b->is_int || b->inum < 0 || b->inum > 1 << 20)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s.start and .stop must be counts", where);
        s.kind = EMDPO_HF_DEC_STRIP;
        s.a = (int)a->inum;
        s.b = (int)b->inum;
        if (!(s.content = dup(c))) return EMDPO_ERR_NOMEM;
        s.content_len = c->len;
    } else if (is(ty, "Metaspace")) {
        s.kind = EMDPO_HF_DEC_METASPACE;
        if ((rc = metaspace(v, &s, where, diag))) return rc;
    } else {
        return unsupported(where, ty, diag);
    }
    return add(t, 2, &s);
}

/* The ids of a template's special token by name, from special_tokens. */
static int template_ids(const emdpo_json *specials, const char *name, const emdpo_json **ids, emdpo_diag *diag) {
    const emdpo_json *sp = emdpo_json_get(specials, name);
    *ids = emdpo_json_get(sp, "ids");
    if (!*ids || (*ids)->type != EMDPO_JSON_ARRAY)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "post_processor.special_tokens has no ids for \"%s\"", name);
    for (size_t i = 0; i < (*ids)->len; i++) {
        const emdpo_json *x = &(*ids)->u.elems[i];
        if (!x->is_int || x->inum < 0 || x->inum > INT32_MAX)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "post_processor.special_tokens.%s.ids holds a non-id", name);
    }
    return EMDPO_OK;
}

/* The ids a post-processor puts before and after a single sequence. */
typedef struct wrap {
    int ids[64];
    size_t n_before, n_after; /* ids[0..n_before) then ids[n_before..n_before+n_after) */
} wrap;

/* Appends id to the leading run (after 0) or the trailing one. */
static int wrap_add(wrap *w, int id, int after, emdpo_diag *diag) {
    if (w->n_before + w->n_after >= sizeof w->ids / sizeof w->ids[0])
        return emdpo_diag_fail(diag, EMDPO_ERR_LIMIT, "post_processor adds more than 64 special tokens");
    if (after) {
        w->ids[w->n_before + w->n_after++] = id;
    } else {
        memmove(w->ids + w->n_before + 1, w->ids + w->n_before, w->n_after * sizeof *w->ids);
        w->ids[w->n_before++] = id;
    }
    return EMDPO_OK;
}

static int post_processor(const emdpo_json *v, wrap *w, emdpo_diag *diag) {
    if (!v || v->type == EMDPO_JSON_NULL) return EMDPO_OK;
    const char *ty = type_of(v);
    int rc;
    if (is(ty, "ByteLevel")) return EMDPO_OK; /* offsets only */
    if (is(ty, "Sequence")) {
        const emdpo_json *ps = emdpo_json_get(v, "processors");
        if (!ps || ps->type != EMDPO_JSON_ARRAY)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "post_processor.processors is not an array");
        /* Each processor wraps what the ones before it produced: its
         * leading tokens go before theirs, its trailing ones after. */
        for (size_t i = 0; i < ps->len; i++) {
            wrap inner = {0}, outer = *w;
            if ((rc = post_processor(&ps->u.elems[i], &inner, diag))) return rc;
            memset(w, 0, sizeof *w);
            for (size_t k = 0; k < inner.n_before; k++)
                if ((rc = wrap_add(w, inner.ids[k], 0, diag))) return rc;
            for (size_t k = 0; k < outer.n_before; k++)
                if ((rc = wrap_add(w, outer.ids[k], 0, diag))) return rc;
            for (size_t k = 0; k < outer.n_after; k++)
                if ((rc = wrap_add(w, outer.ids[outer.n_before + k], 1, diag))) return rc;
            for (size_t k = 0; k < inner.n_after; k++)
                if ((rc = wrap_add(w, inner.ids[inner.n_before + k], 1, diag))) return rc;
        }
        return EMDPO_OK;
    }
    if (is(ty, "BertProcessing") || is(ty, "RobertaProcessing")) {
        const emdpo_json *cls = emdpo_json_get(v, "cls"), *sep = emdpo_json_get(v, "sep");
        if (!cls || cls->type != EMDPO_JSON_ARRAY || cls->len != 2 || !cls->u.elems[1].is_int || !sep ||
            sep->type != EMDPO_JSON_ARRAY || sep->len != 2 || !sep->u.elems[1].is_int)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "post_processor.cls and .sep must be [token, id]");
        if ((rc = wrap_add(w, (int)cls->u.elems[1].inum, 0, diag))) return rc;
        return wrap_add(w, (int)sep->u.elems[1].inum, 1, diag);
    }
    if (!is(ty, "TemplateProcessing")) return unsupported("post_processor", ty, diag);
    const emdpo_json *single = emdpo_json_get(v, "single"), *specials = emdpo_json_get(v, "special_tokens");
    if (!single || single->type != EMDPO_JSON_ARRAY)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "post_processor.single is not an array");
    int seen_a = 0;
    for (size_t i = 0; i < single->len; i++) {
        const emdpo_json *e = &single->u.elems[i], *sp = emdpo_json_get(e, "SpecialToken"),
                         *seq = emdpo_json_get(e, "Sequence");
        if (seq) {
            const emdpo_json *id = emdpo_json_get(seq, "id");
            if (seen_a || !id || id->type != EMDPO_JSON_STRING || strcmp(id->u.str, "A") != 0)
                return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED,
                                       "post_processor.single must hold the sequence $A exactly once");
            seen_a = 1;
            continue;
        }
        const emdpo_json *name = emdpo_json_get(sp, "id"), *ids;
        if (!name || name->type != EMDPO_JSON_STRING)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "post_processor.single[%zu] is neither a SpecialToken nor "
                                   "a Sequence", i);
        if ((rc = template_ids(specials, name->u.str, &ids, diag))) return rc;
        for (size_t k = 0; k < ids->len; k++) {
            if (seen_a) {
                if ((rc = wrap_add(w, (int)ids->u.elems[k].inum, 1, diag))) return rc;
            } else {
                /* Before $A, in order: append to the leading run. */
                if (w->n_before + w->n_after >= sizeof w->ids / sizeof w->ids[0])
                    return emdpo_diag_fail(diag, EMDPO_ERR_LIMIT, "post_processor adds more than 64 special tokens");
                w->ids[w->n_before++] = (int)ids->u.elems[k].inum;
            }
        }
    }
    if (!seen_a)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "post_processor.single must hold the sequence $A");
    return EMDPO_OK;
}

static int model(emdpo_hf_tok *t, const emdpo_json *m, emdpo_diag *diag) {
    const char *ty = type_of(m);
    if (!m || m->type != EMDPO_JSON_OBJECT) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "model is not an object");
    if (ty && !is(ty, "BPE")) return unsupported("model", ty, diag);
    const emdpo_json *vocab = emdpo_json_get(m, "vocab"), *merges = emdpo_json_get(m, "merges");
    if (!vocab || vocab->type != EMDPO_JSON_OBJECT)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "model.vocab is not an object");
    if (!merges || merges->type != EMDPO_JSON_ARRAY)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "model.merges is not an array");
    const emdpo_json *dropout = emdpo_json_get(m, "dropout");
    if (dropout && dropout->type == EMDPO_JSON_NUMBER && dropout->num > 0)
        return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "model.dropout %g: BPE dropout is random; use null",
                               dropout->num);
    static const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const emdpo_json *a = emdpo_json_get(m, affixes[i]);
        if (a && a->type == EMDPO_JSON_STRING && a->len)
            return emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "model.%s \"%s\" is not supported", affixes[i],
                                   a->u.str);
    }
    int rc = emdpo_hf_tok_reserve(t, vocab->len, merges->len);
    if (rc) return rc;
    for (size_t i = 0; i < vocab->len; i++) {
        const emdpo_json_member *e = &vocab->u.members[i];
        if (!e->value.is_int || e->value.inum < 0 || e->value.inum >= EMDPO_HF_MAX_IDS)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "model.vocab[\"%.40s\"] is not an id in 0..%d", e->key,
                                   EMDPO_HF_MAX_IDS - 1);
        if ((rc = emdpo_hf_tok_add_piece(t, (int)e->value.inum, e->key, e->key_len, diag)))
            return rc == EMDPO_ERR_INVALID_ARG ? EMDPO_ERR_PARSE : rc;
    }
    for (size_t i = 0; i < merges->len; i++) {
        const emdpo_json *e = &merges->u.elems[i];
        const char *a, *b;
        size_t na, nb;
        if (e->type == EMDPO_JSON_STRING) { /* "a b" */
            const char *sp = memchr(e->u.str, ' ', e->len);
            if (!sp || memchr(sp + 1, ' ', e->len - (size_t)(sp - e->u.str) - 1))
                return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "model.merges[%zu] \"%.40s\" is not two pieces "
                                       "separated by one space", i, e->u.str);
            a = e->u.str;
            na = (size_t)(sp - a);
            b = sp + 1;
            nb = e->len - na - 1;
        } else if (e->type == EMDPO_JSON_ARRAY && e->len == 2 && e->u.elems[0].type == EMDPO_JSON_STRING &&
                   e->u.elems[1].type == EMDPO_JSON_STRING) {
            a = e->u.elems[0].u.str;
            na = e->u.elems[0].len;
            b = e->u.elems[1].u.str;
            nb = e->u.elems[1].len;
        } else {
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]",
                                   i);
        }
        if ((rc = emdpo_hf_tok_add_merge(t, a, na, b, nb, (uint32_t)i, diag))) return rc;
    }
    int byte_fallback = 0, fuse_unk = 0, ignore_merges = 0, unk = -1;
    if ((rc = get_bool(m, "byte_fallback", 0, &byte_fallback, "model", diag)) ||
        (rc = get_bool(m, "fuse_unk", 0, &fuse_unk, "model", diag)) ||
        (rc = get_bool(m, "ignore_merges", 0, &ignore_merges, "model", diag)))
        return rc;
    const emdpo_json *u = emdpo_json_get(m, "unk_token");
    if (u && u->type == EMDPO_JSON_STRING && (unk = emdpo_hf_tok_piece_id(t, u->u.str, u->len)) < 0)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "model.unk_token \"%.40s\" is not in the vocabulary", u->u.str);
    emdpo_hf_tok_set_model(t, unk, byte_fallback, fuse_unk, ignore_merges);
    return EMDPO_OK;
}

/* tokenizers gives an added token the id of its content in the model's
 * vocabulary, else the next id after the vocabulary's size and the added
 * tokens so far; the "id" written in the file is not read back. */
static int added_tokens(emdpo_hf_tok *t, const emdpo_json *list, size_t vocab_size, emdpo_diag *diag) {
    if (!list || list->type == EMDPO_JSON_NULL) return EMDPO_OK;
    int64_t top = -1;
    if (list->type != EMDPO_JSON_ARRAY) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "added_tokens is not an array");
    for (size_t i = 0; i < list->len; i++) {
        const emdpo_json *e = &list->u.elems[i], *id = emdpo_json_get(e, "id"), *c = emdpo_json_get(e, "content");
        char where[48];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if ((id && !id->is_int) || !c || c->type != EMDPO_JSON_STRING)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s needs an integer id and a string content", where);
        if (c->len == 0) continue; /* tokenizers skips empty contents */
        int64_t own = emdpo_hf_tok_token_id(t, c->u.str, c->len); /* an earlier added token's, else the model's */
        if (own < 0) own = top < 0 ? (int64_t)vocab_size : (top > (int64_t)vocab_size - 1 ? top : (int64_t)vocab_size - 1) + 1;
        if (own >= EMDPO_HF_MAX_IDS)
            return emdpo_diag_fail(diag, EMDPO_ERR_LIMIT, "%s would get id %lld, beyond %d", where, (long long)own,
                                   EMDPO_HF_MAX_IDS - 1);
        if (own > top) top = own;
        emdpo_hf_added a = {0};
        int f[5], rc;
        static const char *flags[] = {"special", "lstrip", "rstrip", "single_word", "normalized"};
        for (int k = 0; k < 5; k++)
            if ((rc = get_bool(e, flags[k], k == 4, &f[k], where, diag))) return rc;
        a.content = (char *)c->u.str;
        a.len = c->len;
        a.id = (int)own;
        a.special = (unsigned char)f[0];
        a.lstrip = (unsigned char)f[1];
        a.rstrip = (unsigned char)f[2];
        a.single_word = (unsigned char)f[3];
        a.normalized = (unsigned char)f[4];
        if ((rc = emdpo_hf_tok_add_token(t, &a))) return rc;
    }
    return EMDPO_OK;
}

int emdpo_hf_tok_from_json(const char *text, size_t len, const char *name, emdpo_hf_tok **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_diag_reset(diag, name);
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root;
    emdpo_json_error err;
    int rc = emdpo_json_doc_create(&doc);
    if (rc) return rc;
    if ((rc = emdpo_json_parse(doc, text, len, &root, &err))) {
        if (rc == EMDPO_ERR_PARSE) emdpo_diag_fail(diag, rc, "byte %zu: %s", err.offset, err.msg);
        emdpo_json_doc_free(doc);
        return rc;
    }
    emdpo_hf_tok *t = NULL;
    wrap w = {0};
    if (root->type != EMDPO_JSON_OBJECT) rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "not a JSON object");
    if (!rc) rc = emdpo_hf_tok_create(&t);
    if (!rc) rc = model(t, emdpo_json_get(root, "model"), diag);
    const emdpo_json *vocab = emdpo_json_get(emdpo_json_get(root, "model"), "vocab");
    if (!rc) rc = added_tokens(t, emdpo_json_get(root, "added_tokens"), vocab ? vocab->len : 0, diag);
    if (!rc) rc = walk(t, emdpo_json_get(root, "normalizer"), "normalizers", normalizer, "normalizer", diag);
    if (!rc) rc = walk(t, emdpo_json_get(root, "pre_tokenizer"), "pretokenizers", pre_tokenizer, "pre_tokenizer", diag);
    if (!rc) rc = walk(t, emdpo_json_get(root, "decoder"), "decoders", decoder, "decoder", diag);
    if (!rc) rc = post_processor(emdpo_json_get(root, "post_processor"), &w, diag);
    if (!rc) rc = emdpo_hf_tok_set_template(t, w.ids, w.n_before, w.ids + w.n_before, w.n_after);
    if (!rc) rc = emdpo_hf_tok_finish(t, diag);
    for (size_t i = 0; !rc && i < w.n_before + w.n_after; i++) {
        size_t k;
        if (!emdpo_hf_tok_piece(t, w.ids[i], &k))
            rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "post_processor adds id %d, which is no token", w.ids[i]);
    }
    emdpo_json_doc_free(doc);
    if (rc) {
        emdpo_hf_tok_free(t);
        return rc;
    }
    *out = t;
    return EMDPO_OK;
}
