/* TRL's implicit prompts and conversational records; see chat_records.h. */
#include "data/chat_records.h"

#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/utf8.h"

void emdpo_chat_ctx_free(emdpo_chat_ctx *c) {
    emdpo_chat_template_free(c->t);
    emdpo_strfree(c->bos);
    emdpo_strfree(c->eos);
    c->t = NULL;
    c->bos = c->eos = NULL;
    c->loaded = 0;
}

int emdpo_chat_is_messages(const emdpo_json *v) {
    if (!v || v->type != EMDPO_JSON_ARRAY || v->len == 0) return 0;
    for (size_t i = 0; i < v->len; i++)
        if (v->u.elems[i].type != EMDPO_JSON_OBJECT || !emdpo_json_get(&v->u.elems[i], "role")) return 0;
    return 1;
}

void emdpo_chat_texts_free(char *prompt, char **texts, size_t n) {
    emdpo_strfree(prompt);
    for (size_t i = 0; texts && i < n; i++) {
        emdpo_strfree(texts[i]);
        texts[i] = NULL;
    }
}

/* A tokenizer_config.json's bos_token or eos_token: a string, an object
 * with "content", or null (""); NULL when absent. */
static int special_token(const emdpo_json *root, const char *key, char **out) {
    const emdpo_json *v = emdpo_json_get(root, key);
    *out = NULL;
    if (v && v->type == EMDPO_JSON_OBJECT) v = emdpo_json_get(v, "content");
    if (!v) return EMDPO_OK;
    if (v->type != EMDPO_JSON_STRING && v->type != EMDPO_JSON_NULL) return EMDPO_ERR_PARSE;
    *out = emdpo_strdup(v->type == EMDPO_JSON_STRING ? v->u.str : "");
    return *out ? EMDPO_OK : EMDPO_ERR_NOMEM;
}

static int load_special_tokens(emdpo_chat_ctx *c, emdpo_diag *diag) {
    char *buf;
    size_t len;
    emdpo_diag d;
    int rc = emdpo_file_read(c->special_tokens, &buf, &len, &d);
    if (rc) return rc == EMDPO_ERR_NOMEM ? rc : emdpo_diag_at(diag, EMDPO_ERR_PARSE, c->special_tokens, 0, "%s", d.msg);
    emdpo_json_doc *doc;
    const emdpo_json *root;
    emdpo_json_error err;
    if (!(rc = emdpo_json_doc_create(&doc))) {
        if ((rc = emdpo_json_parse(doc, buf, len, &root, &err)) == EMDPO_ERR_PARSE)
            emdpo_diag_at(diag, rc, c->special_tokens, 0, "byte %zu: %s", err.offset, err.msg);
        if (!rc && ((rc = special_token(root, "bos_token", &c->bos)) ||
                    (rc = special_token(root, "eos_token", &c->eos))) && rc == EMDPO_ERR_PARSE)
            emdpo_diag_at(diag, rc, c->special_tokens, 0, "bos_token / eos_token is not a string, "
                          "{\"content\": ...} or null");
        emdpo_json_doc_free(doc);
    }
    emdpo_free(buf, len + 1);
    return rc;
}

/* The template, loaded once; errors name the template file. */
static int ensure_template(emdpo_chat_ctx *c, long line, emdpo_diag *diag) {
    if (c->t) return EMDPO_OK;
    if (c->loaded || !c->template_path)
        return emdpo_diag_parse(diag, line, "a conversational record needs a chat template: give --chat-template "
                                "FILE.jinja, or a tokenizer whose tokenizer_config.json has a chat_template");
    c->loaded = 1;
    emdpo_diag d;
    int rc = emdpo_chat_template_load(c->template_path, &c->t, &d);
    if (rc == EMDPO_ERR_NOMEM) return rc;
    if (rc) return emdpo_diag_at(diag, EMDPO_ERR_PARSE, d.file[0] ? d.file : c->template_path, d.line, "%s", d.msg);
    if (c->special_tokens) return load_special_tokens(c, diag);
    const char *b = emdpo_chat_template_bos_token(c->t), *e = emdpo_chat_template_eos_token(c->t);
    if ((b && !(c->bos = emdpo_strdup(b))) || (e && !(c->eos = emdpo_strdup(e)))) return EMDPO_ERR_NOMEM;
    return EMDPO_OK;
}

/* ---- Comparing and cutting ------------------------------------------------ */

static int json_equal(const emdpo_json *a, const emdpo_json *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case EMDPO_JSON_NULL: return 1;
    case EMDPO_JSON_BOOL: return a->boolean == b->boolean;
    case EMDPO_JSON_NUMBER: return a->num == b->num;
    case EMDPO_JSON_STRING: return a->len == b->len && memcmp(a->u.str, b->u.str, a->len) == 0;
    case EMDPO_JSON_ARRAY:
        if (a->len != b->len) return 0;
        for (size_t i = 0; i < a->len; i++)
            if (!json_equal(&a->u.elems[i], &b->u.elems[i])) return 0;
        return 1;
    case EMDPO_JSON_OBJECT:
        /* Python's dict equality: the same keys with equal values, in any order. */
        if (a->len != b->len) return 0;
        for (size_t i = 0; i < a->len; i++) {
            const emdpo_json *v = emdpo_json_get(b, a->u.members[i].key);
            if (!v || !json_equal(&a->u.members[i].value, v)) return 0;
        }
        return 1;
    }
    return 0;
}

/* The byte offset after k code points of s[0..n). */
static size_t skip_chars(const char *s, size_t n, size_t k) {
    size_t i = 0;
    while (k-- && i < n) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
    }
    return i;
}

static size_t count_chars(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* TRL's extract_prompt index for two sequences of na and nb elements,
 * differing first at `first` (-1: never within the shorter): the loop's
 * last index when nothing differs. */
static long trl_index(size_t na, size_t nb, long first) {
    size_t m = na < nb ? na : nb;
    if (first >= 0) return first;
    return m ? (long)m - 1 : 0;
}

/* ---- Rendering ------------------------------------------------------------ */

static int is_py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Python's str.strip() of s[0..n): [*a, *b). */
static void py_strip(const char *s, size_t n, size_t *a, size_t *b) {
    size_t i = 0, len;
    uint32_t cp;
    while (i < n && (len = emdpo_utf8_decode(s + i, n - i, &cp), is_py_space(cp))) i += len;
    size_t j = n;
    while (j > i) {
        size_t k = j - 1;
        while (k > i && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        emdpo_utf8_decode(s + k, n - k, &cp);
        if (!is_py_space(cp)) break;
        j = k;
    }
    *a = i;
    *b = j;
}

typedef struct msgs {
    emdpo_chat_message *m;
    size_t n, cap;
} msgs;

static int add_messages(msgs *ms, const emdpo_json *list, size_t from, size_t to, long line, emdpo_diag *diag) {
    if (emdpo_grow((void **)&ms->m, &ms->cap, ms->n + (to - from) + 1, sizeof *ms->m)) return EMDPO_ERR_NOMEM;
    for (size_t i = from; i < to; i++) {
        const emdpo_json *e = &list->u.elems[i], *role = emdpo_json_get(e, "role"),
                         *content = emdpo_json_get(e, "content");
        if (!role || role->type != EMDPO_JSON_STRING || strlen(role->u.str) != role->len)
            return emdpo_diag_parse(diag, line, "message %zu: \"role\" must be a string", i + 1);
        if (content && content->type != EMDPO_JSON_STRING && content->type != EMDPO_JSON_NULL)
            return emdpo_diag_parse(diag, line, "message %zu: \"content\" must be a string (not %s)", i + 1,
                                    emdpo_json_type_name(content->type));
        if (content && content->type == EMDPO_JSON_STRING && strlen(content->u.str) != content->len)
            return emdpo_diag_parse(diag, line, "message %zu: \"content\" contains a \\u0000 character", i + 1);
        ms->m[ms->n++] = (emdpo_chat_message){role->u.str,
                                             content && content->type == EMDPO_JSON_STRING ? content->u.str : NULL};
    }
    return EMDPO_OK;
}

static int render(emdpo_chat_ctx *c, const msgs *ms, int add_generation_prompt, long line, char **out, size_t *len,
                  emdpo_diag *diag) {
    emdpo_diag d;
    int rc = emdpo_chat_template_render(c->t, ms->m, ms->n, c->bos, c->eos, add_generation_prompt, out, len, &d);
    if (rc == EMDPO_ERR_NOMEM) return rc;
    if (rc) return emdpo_diag_parse(diag, line, "the chat template: %s", d.msg);
    return EMDPO_OK;
}

/* A new string of s[0..n). */
static char *dup_n(const char *s, size_t n) {
    char *d = emdpo_malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* The conversation prompt[from..to) and each response rendered. */
static int render_record(emdpo_chat_ctx *c, const emdpo_json *plist, size_t pn, const emdpo_json *const *items,
                         const size_t *skip, size_t n, long line, char **prompt_out, char **texts, emdpo_diag *diag) {
    int rc = ensure_template(c, line, diag);
    if (rc) return rc;
    if (pn == 0) return emdpo_diag_parse(diag, line, "the conversations share no prompt messages");
    const emdpo_json *role = emdpo_json_get(&plist->u.elems[pn - 1], "role");
    if (role->type != EMDPO_JSON_STRING) return emdpo_diag_parse(diag, line, "message %zu: \"role\" must be a string", pn);
    const char *last = role->u.str;
    int gen = strcmp(last, "user") == 0, cont = strcmp(last, "assistant") == 0;
    if (!gen && !cont)
        return emdpo_diag_parse(diag, line, "the prompt's last message has role \"%.40s\"; TRL needs \"user\" (a "
                                "generation prompt follows) or \"assistant\" (it is continued)", last);
    msgs ms = {NULL, 0, 0};
    char *p = NULL, *full = NULL;
    size_t plen = 0, flen = 0, p_alloc = 0;
    if (!(rc = add_messages(&ms, plist, 0, pn, line, diag))) rc = render(c, &ms, gen, line, &p, &plen, diag);
    p_alloc = plen;
    if (!rc && cont) {
        /* transformers' continue_final_message: the text ends where the
         * final message's (stripped) content last appears. */
        const char *fin = ms.m[pn - 1].content ? ms.m[pn - 1].content : "";
        size_t a, b;
        py_strip(fin, strlen(fin), &a, &b);
        size_t at = SIZE_MAX;
        for (size_t i = plen >= b - a ? plen - (b - a) + 1 : 0; i-- > 0;)
            if (memcmp(p + i, fin + a, b - a) == 0) {
                at = i;
                break;
            }
        if (at == SIZE_MAX)
            rc = emdpo_diag_parse(diag, line, "the prompt's final assistant message does not appear in its rendering, "
                                  "so it cannot be continued");
        else
            plen = at + (b - a);
    }
    size_t pchars = 0;
    for (size_t k = 0; !rc && k < n; k++) {
        ms.n = pn;
        if ((rc = add_messages(&ms, items[k], skip[k], items[k]->len, line, diag)) ||
            (rc = render(c, &ms, 0, line, &full, &flen, diag)))
            break;
        if (k == 0) {
            /* The prompt keeps what it shares with prompt + chosen. */
            size_t i = 0;
            while (i < plen && i < flen && p[i] == full[i]) i++;
            while (i > 0 && i < plen && ((unsigned char)p[i] & 0xC0) == 0x80) i--;
            plen = i;
            pchars = count_chars(p, plen);
        }
        size_t from = skip_chars(full, flen, pchars);
        if (!(texts[k] = dup_n(full + from, flen - from))) rc = EMDPO_ERR_NOMEM;
        emdpo_chat_text_free(full, flen);
        full = NULL;
    }
    if (!rc && !(*prompt_out = dup_n(p, plen))) rc = EMDPO_ERR_NOMEM;
    if (p) emdpo_chat_text_free(p, p_alloc);
    emdpo_free(ms.m, ms.cap * sizeof *ms.m);
    return rc;
}

int emdpo_chat_record(emdpo_chat_ctx *c, const emdpo_json *prompt, const emdpo_json *const *items, size_t n,
                      long line, int *done, char **prompt_out, char **texts, emdpo_diag *diag) {
    *done = 0;
    *prompt_out = NULL;
    if (n < 2) return EMDPO_OK;
    size_t n_str = 0, n_conv = 0;
    for (size_t k = 0; k < n; k++) {
        n_str += items[k]->type == EMDPO_JSON_STRING;
        n_conv += emdpo_chat_is_messages(items[k]);
    }
    if (n_conv && n_conv < n)
        return emdpo_diag_parse(diag, line, "the responses mix conversations (lists of messages) and other kinds");
    if (!n_conv && n_str < n) return EMDPO_OK; /* responses with features */
    int conv = n_conv == n, p_conv = emdpo_chat_is_messages(prompt);
    if (prompt && prompt->type == EMDPO_JSON_ARRAY && !p_conv)
        return emdpo_diag_parse(diag, line, "\"prompt\" must be a string or a list of {\"role\", \"content\"} "
                                "messages");
    int explicit_prompt = prompt && prompt->type != EMDPO_JSON_NULL && p_conv == conv;
    if (!conv && explicit_prompt) return EMDPO_OK; /* plain strings: the reader's own case */
    for (size_t k = 0; !conv && k < n; k++)
        if (strlen(items[k]->u.str) != items[k]->len)
            return emdpo_diag_parse(diag, line, "the text of item %zu must be a string without \\u0000", k + 1);
    *done = 1;
    size_t *skip = emdpo_calloc(n, sizeof *skip);
    if (!skip) return EMDPO_ERR_NOMEM;
    int rc = EMDPO_OK;
    if (conv) {
        const emdpo_json *plist = prompt;
        size_t pn = explicit_prompt ? prompt->len : 0;
        if (!explicit_prompt) {
            /* extract_prompt over messages: the shared leading messages,
             * the least over chosen against each other response. */
            long idx = -1;
            for (size_t k = 1; k < n; k++) {
                size_t m = items[0]->len < items[k]->len ? items[0]->len : items[k]->len, i = 0;
                while (i < m && json_equal(&items[0]->u.elems[i], &items[k]->u.elems[i])) i++;
                long at = trl_index(items[0]->len, items[k]->len, i < m ? (long)i : -1);
                if (idx < 0 || at < idx) idx = at;
            }
            plist = items[0];
            pn = (size_t)idx;
            for (size_t k = 0; k < n; k++) skip[k] = pn;
        }
        rc = render_record(c, plist, pn, items, skip, n, line, prompt_out, texts, diag);
    } else {
        /* extract_prompt over characters, the space before the split going
         * to the responses; TRL's negative index when the first characters
         * already differ is kept (the prompt is then all but the last
         * character of the chosen response, when that is a space). */
        const char *s0 = items[0]->u.str;
        size_t c0 = count_chars(s0, items[0]->len);
        long idx = -1;
        for (size_t k = 1; k < n; k++) {
            const char *sk = items[k]->u.str;
            size_t ck = count_chars(sk, items[k]->len), m = c0 < ck ? c0 : ck, i = 0, b0 = 0, bk = 0;
            long first = -1;
            for (; i < m; i++) {
                uint32_t a, b;
                size_t l0 = emdpo_utf8_decode(s0 + b0, items[0]->len - b0, &a);
                size_t lk = emdpo_utf8_decode(sk + bk, items[k]->len - bk, &b);
                if (a != b) {
                    first = (long)i;
                    break;
                }
                b0 += l0;
                bk += lk;
            }
            long at = trl_index(c0, ck, first);
            if (first >= 0) {
                size_t prev = skip_chars(s0, items[0]->len, first > 0 ? (size_t)first - 1 : c0 - 1);
                if (c0 && s0[prev] == ' ') at = first - 1;
            }
            if (idx < 0 || at < idx || k == 1) idx = k == 1 || at < idx ? at : idx;
        }
        /* Python's s[:-1] when idx is -1. */
        size_t pchars = idx >= 0 ? (size_t)idx : (c0 ? c0 - 1 : 0);
        size_t pb = skip_chars(s0, items[0]->len, pchars);
        if (pb == 0) { /* an empty prompt: the record as it is, without one */
            *done = 0;
            emdpo_free(skip, n * sizeof *skip);
            return EMDPO_OK;
        }
        if (!(*prompt_out = dup_n(s0, pb))) rc = EMDPO_ERR_NOMEM;
        for (size_t k = 0; !rc && k < n; k++) {
            size_t ck = count_chars(items[k]->u.str, items[k]->len);
            size_t from = idx >= 0 ? skip_chars(items[k]->u.str, items[k]->len, pchars)
                                   : skip_chars(items[k]->u.str, items[k]->len, ck ? ck - 1 : 0);
            if (!(texts[k] = dup_n(items[k]->u.str + from, items[k]->len - from))) rc = EMDPO_ERR_NOMEM;
        }
    }
    emdpo_free(skip, n * sizeof *skip);
    if (rc) {
        emdpo_chat_texts_free(*prompt_out, texts, n);
        *prompt_out = NULL;
    }
    return rc;
}
