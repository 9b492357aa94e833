/* Chat templates: loading (a .jinja file, or tokenizer_config.json's
 * chat_template with its bos/eos tokens) and rendering a conversation
 * through the Jinja interpreter (jinja.c), as transformers.js's
 * apply_chat_template renders it with @huggingface/jinja. */
#include "data/chat_template.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"
#include "base/json.h"
#include "base/json_write.h"
#include "base/lines.h"
#include "base/utf8.h"
#include "data/jinja.h"

struct emdpo_chat_template {
    emdpo_jinja *jinja;
    char *bos, *eos; /* NULL when the file did not name them */
};

void emdpo_chat_template_free(emdpo_chat_template *t) {
    if (!t) return;
    emdpo_jinja_free(t->jinja);
    emdpo_strfree(t->bos);
    emdpo_strfree(t->eos);
    emdpo_free(t, sizeof *t);
}

const char *emdpo_chat_template_bos_token(const emdpo_chat_template *t) { return t ? t->bos : NULL; }
const char *emdpo_chat_template_eos_token(const emdpo_chat_template *t) { return t ? t->eos : NULL; }

void emdpo_chat_text_free(char *text, size_t len) {
    if (text) emdpo_free(text, len + 1);
}

int emdpo_chat_template_parse(const char *src, size_t len, const char *name, emdpo_chat_template **out,
                              emdpo_diag *diag) {
    emdpo_diag_reset(diag, name);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no output handle");
    *out = NULL;
    if (!src && len) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no template text");
    emdpo_chat_template *t = emdpo_calloc(1, sizeof *t);
    if (!t) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    int rc = emdpo_jinja_parse(src ? src : "", len, name, &t->jinja, diag);
    if (rc) {
        emdpo_chat_template_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* A special token of tokenizer_config.json: a string, {"content": "..."}
 * (an AddedToken), or null (""). *out stays NULL when key is absent. */
static int config_token(const emdpo_json *root, const char *key, char **out, emdpo_diag *diag) {
    *out = NULL;
    const emdpo_json *v = emdpo_json_get(root, key);
    if (!v) return 0;
    if (v->type == EMDPO_JSON_OBJECT) v = emdpo_json_get(v, "content");
    const char *s = NULL;
    if (v && v->type == EMDPO_JSON_NULL) s = "";
    else if (v && v->type == EMDPO_JSON_STRING && strlen(v->u.str) == v->len) s = v->u.str;
    if (!s)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "%s is neither a string, an object with a \"content\" string, "
                               "nor null", key);
    *out = emdpo_strdup(s);
    return *out ? 0 : emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int load_config(const char *path, const char *text, size_t len, emdpo_chat_template **out, emdpo_diag *diag) {
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root;
    emdpo_json_error err;
    int rc = emdpo_json_doc_create(&doc);
    if (rc) return emdpo_diag_fail(diag, rc, "out of memory");
    if ((rc = emdpo_json_parse(doc, text, len, &root, &err))) {
        emdpo_json_doc_free(doc);
        if (rc == EMDPO_ERR_NOMEM) return emdpo_diag_fail(diag, rc, "out of memory");
        long line = 1;
        for (size_t i = 0; i < err.offset && i < len; i++) line += text[i] == '\n';
        return emdpo_diag_at(diag, rc, path, line, "%s", err.msg);
    }
    const emdpo_json *ct = emdpo_json_get(root, "chat_template");
    if (root->type != EMDPO_JSON_OBJECT) {
        rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "not a JSON object");
    } else if (!ct || ct->type == EMDPO_JSON_NULL) {
        rc = emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "has no chat_template");
    } else if (ct->type == EMDPO_JSON_ARRAY) {
        const emdpo_json *found = NULL;
        for (size_t i = 0; i < ct->len && !found; i++) {
            const emdpo_json *name = emdpo_json_get(&ct->u.elems[i], "name");
            const emdpo_json *tmpl = emdpo_json_get(&ct->u.elems[i], "template");
            if (name && name->type == EMDPO_JSON_STRING && !strcmp(name->u.str, "default") && tmpl &&
                tmpl->type == EMDPO_JSON_STRING)
                found = tmpl;
        }
        if (!found) rc = emdpo_diag_fail(diag, EMDPO_ERR_UNSUPPORTED, "chat_template lists no template named \"default\"");
        ct = found;
    } else if (ct->type != EMDPO_JSON_STRING) {
        rc = emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "chat_template is neither a string nor a list of {name, template}");
    }
    emdpo_chat_template *t = NULL;
    if (!rc) {
        size_t nl = strlen(path) + sizeof " chat_template";
        char *name = emdpo_malloc(nl);
        if (!name) rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
        else {
            snprintf(name, nl, "%s chat_template", path);
            rc = emdpo_chat_template_parse(ct->u.str, ct->len, name, &t, diag);
            emdpo_free(name, nl);
        }
    }
    if (!rc) {
        emdpo_diag_reset(diag, path);
        rc = config_token(root, "bos_token", &t->bos, diag);
        if (!rc) rc = config_token(root, "eos_token", &t->eos, diag);
    }
    emdpo_json_doc_free(doc);
    if (rc) {
        emdpo_chat_template_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int emdpo_chat_template_load(const char *path, emdpo_chat_template **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no output handle");
    *out = NULL;
    if (!path) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no path");
    char *text;
    size_t len;
    int rc = emdpo_file_read(path, &text, &len, diag);
    if (rc) return rc;
    if (ends_with(path, ".json")) rc = load_config(path, text, len, out, diag);
    else rc = emdpo_chat_template_parse(text, len, path, out, diag);
    emdpo_free(text, len + 1);
    return rc;
}

/* ---- Rendering ---------------------------------------------------------------- */

typedef struct sbuf {
    char *s;
    size_t n, cap;
    int err;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->err) return;
    if (emdpo_grow((void **)&b->s, &b->cap, b->n + n + 1, 1)) {
        b->err = 1;
        return;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
}

/* A JSON string literal (s: valid UTF-8) or null. */
static void sb_json(sbuf *b, const char *s) {
    if (!s) {
        sb_put(b, "null", 4);
        return;
    }
    sb_put(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int check_text(const char *what, size_t i, const char *s, emdpo_diag *diag) {
    if (s && emdpo_utf8_invalid_at(s, strlen(s)) < strlen(s))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "message %zu: %s is not valid UTF-8", i + 1, what);
    return 0;
}

int emdpo_chat_template_render(const emdpo_chat_template *t, const emdpo_chat_message *msgs, size_t n,
                               const char *bos_token, const char *eos_token, int add_generation_prompt, char **out,
                               size_t *out_len, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!t || !out || !out_len || (!msgs && n))
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no template, messages or output");
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        rc = check_text("role", i, msgs[i].role, diag);
        if (!rc) rc = check_text("content", i, msgs[i].content, diag);
    }
    if (!rc) rc = check_text("bos_token", 0, bos_token, diag);
    if (!rc) rc = check_text("eos_token", 0, eos_token, diag);
    if (rc) return rc;
    /* The variables as one JSON object, read back by the project's reader:
     * messages (role, then content), the tokens (absent when NULL) and
     * add_generation_prompt. */
    sbuf b = {0};
    sb_put(&b, "{\"messages\": [", 14);
    for (size_t i = 0; i < n; i++) {
        sb_put(&b, i ? ", {\"role\": " : "{\"role\": ", i ? 11 : 9);
        sb_json(&b, msgs[i].role);
        sb_put(&b, ", \"content\": ", 13);
        sb_json(&b, msgs[i].content);
        sb_put(&b, "}", 1);
    }
    sb_put(&b, "]", 1);
    if (bos_token) {
        sb_put(&b, ", \"bos_token\": ", 15);
        sb_json(&b, bos_token);
    }
    if (eos_token) {
        sb_put(&b, ", \"eos_token\": ", 15);
        sb_json(&b, eos_token);
    }
    sb_put(&b, add_generation_prompt ? ", \"add_generation_prompt\": true}" : ", \"add_generation_prompt\": false}",
           add_generation_prompt ? 32 : 33);
    if (b.err) {
        emdpo_free(b.s, b.cap);
        return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root = NULL;
    emdpo_json_error err;
    rc = emdpo_json_doc_create(&doc);
    if (!rc) rc = emdpo_json_parse(doc, b.s, b.n, &root, &err);
    emdpo_free(b.s, b.cap);
    if (rc == EMDPO_ERR_PARSE) rc = emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "messages: %s", err.msg);
    else if (rc) rc = emdpo_diag_fail(diag, rc, "out of memory");
    else rc = emdpo_jinja_render(t->jinja, root, NULL, out, out_len, diag);
    emdpo_json_doc_free(doc);
    return rc;
}

/* One line of the stream: a JSON array of {"role", "content"} objects. */
static int parse_line(emdpo_json_doc *doc, const char *text, size_t len, emdpo_chat_message **msgs, size_t *cap,
                      size_t *n, emdpo_diag *diag) {
    const emdpo_json *root;
    emdpo_json_error err;
    int rc = emdpo_json_parse(doc, text, len, &root, &err);
    if (rc == EMDPO_ERR_NOMEM) return emdpo_diag_fail(diag, rc, "out of memory");
    if (rc) return emdpo_diag_fail(diag, rc, "not JSON: %s (byte %zu)", err.msg, err.offset + 1);
    if (root->type != EMDPO_JSON_ARRAY) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "not a JSON array of messages");
    if (emdpo_grow((void **)msgs, cap, root->len + 1, sizeof **msgs)) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < root->len; i++) {
        const emdpo_json *m = &root->u.elems[i];
        if (m->type != EMDPO_JSON_OBJECT)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "message %zu is not an object", i + 1);
        const char *role = NULL, *content = NULL;
        int has_role = 0;
        for (size_t k = 0; k < m->len; k++) {
            const emdpo_json_member *mb = &m->u.members[k];
            const emdpo_json *v = &mb->value;
            int is_role = !strcmp(mb->key, "role");
            if (!is_role && strcmp(mb->key, "content"))
                return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "message %zu: only \"role\" and \"content\" are read, "
                                       "not \"%.60s\"", i + 1, mb->key);
            if (!(v->type == EMDPO_JSON_STRING || (!is_role && v->type == EMDPO_JSON_NULL)))
                return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "message %zu: \"%s\" is a %s, not a string", i + 1,
                                       mb->key, emdpo_json_type_name(v->type));
            if (v->type == EMDPO_JSON_STRING && strlen(v->u.str) != v->len)
                return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "message %zu: \"%s\" holds a NUL character", i + 1, mb->key);
            if (is_role) {
                role = v->u.str;
                has_role = 1;
            } else {
                content = v->type == EMDPO_JSON_STRING ? v->u.str : NULL;
            }
        }
        if (!has_role) return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "message %zu has no \"role\"", i + 1);
        (*msgs)[i].role = role;
        (*msgs)[i].content = content;
    }
    *n = root->len;
    return 0;
}

int emdpo_chat_template_render_jsonl(const emdpo_chat_template *t, FILE *in, const char *in_name, FILE *out,
                                     const char *bos_token, const char *eos_token, int add_generation_prompt,
                                     emdpo_diag *diag) {
    emdpo_diag_reset(diag, in_name);
    if (!t || !in || !out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no template or stream");
    emdpo_lines lr = {.fp = in};
    emdpo_json_doc *doc = NULL;
    emdpo_chat_message *msgs = NULL;
    size_t cap = 0;
    int rc = emdpo_json_doc_create(&doc), got = 1;
    if (rc) emdpo_diag_fail(diag, rc, "out of memory");
    while (!rc) {
        if ((rc = emdpo_lines_next(&lr, &got))) {
            emdpo_diag_set(diag, lr.lineno, "%s", rc == EMDPO_ERR_NOMEM ? "out of memory" : "read error");
            break;
        }
        if (!got) break;
        if (emdpo_line_is_blank(lr.buf, lr.len)) continue;
        size_t n = 0;
        char *text = NULL;
        size_t len = 0;
        if ((rc = parse_line(doc, lr.buf, lr.len, &msgs, &cap, &n, diag)) ||
            (rc = emdpo_chat_template_render(t, msgs, n, bos_token, eos_token, add_generation_prompt, &text, &len,
                                             diag))) {
            /* the line of the input; the template's own file and line, when
             * they matter, go into the message */
            emdpo_diag d = *diag;
            emdpo_diag_reset(diag, in_name);
            if (rc == EMDPO_ERR_INVALID_ARG || !d.file[0] || !strcmp(d.file, in_name ? in_name : ""))
                emdpo_diag_set(diag, lr.lineno, "%s", d.msg);
            else if (d.line > 0)
                emdpo_diag_set(diag, lr.lineno, "%.100s:%ld: %s", d.file, d.line, d.msg);
            else
                emdpo_diag_set(diag, lr.lineno, "%.100s: %s", d.file, d.msg);
            break;
        }
        rc = emdpo_json_write_string_n(out, text, len);
        emdpo_chat_text_free(text, len);
        if (!rc && fputc('\n', out) == EOF) rc = EMDPO_ERR_IO;
        if (rc) emdpo_diag_set(diag, lr.lineno, "cannot write the output");
    }
    emdpo_free(msgs, cap * sizeof *msgs);
    emdpo_json_doc_free(doc);
    emdpo_lines_free(&lr);
    return rc;
}
