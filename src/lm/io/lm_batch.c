/* Token sequences for language-model training and scoring; see lm_batch.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/json.h"
#include "base/lines.h"
#include "lm/engine/llama.h"
#include "lm/io/lm_batch.h"

int emdpo_lm_set_create(int max_length, int max_prompt_length, emdpo_lm_set **out) {
    *out = NULL;
    if (max_prompt_length < 1 || max_length <= max_prompt_length) return EMDPO_ERR_INVALID_ARG;
    emdpo_lm_set *s = emdpo_calloc(1, sizeof *s);
    if (!s) return EMDPO_ERR_NOMEM;
    s->max_length = max_length;
    s->max_prompt_length = max_prompt_length;
    if (emdpo_grow((void **)&s->seq_off, &s->seq_off_cap, 1, sizeof *s->seq_off) ||
        emdpo_grow((void **)&s->group_off, &s->group_off_cap, 1, sizeof *s->group_off)) {
        emdpo_lm_set_free(s);
        return EMDPO_ERR_NOMEM;
    }
    s->seq_off[0] = 0;
    s->group_off[0] = 0;
    *out = s;
    return EMDPO_OK;
}

void emdpo_lm_set_free(emdpo_lm_set *s) {
    if (!s) return;
    emdpo_free(s->seq_off, s->seq_off_cap * sizeof *s->seq_off);
    emdpo_free(s->seq_start, s->seq_start_cap * sizeof *s->seq_start);
    emdpo_free(s->tok, s->tok_cap * sizeof *s->tok);
    emdpo_free(s->group_off, s->group_off_cap * sizeof *s->group_off);
    emdpo_free(s->group_stages, s->group_stages_cap * sizeof *s->group_stages);
    emdpo_free(s, sizeof *s);
}

/* Encodes text (NULL = empty) with flags into a fresh buffer of *cap ids
 * with room for one more (the EOS a response gets). */
static int encode(const emdpo_tokenizer *tok, const char *text, unsigned flags, int **ids, size_t *cap, size_t *n) {
    int *v;
    int rc = emdpo_tokenizer_encode_alloc(tok, text ? text : "", text ? strlen(text) : 0, flags, &v, n);
    if (rc) return rc;
    *cap = *n + 1;
    if (!(*ids = emdpo_realloc(v, *n * sizeof *v, *cap * sizeof **ids))) {
        emdpo_ids_free(v, *n);
        return EMDPO_ERR_NOMEM;
    }
    return EMDPO_OK;
}

/* Tokens encoded beyond the ones a sequence can keep, so that the tokens
 * BPE forms differently at a cut lie far from those kept. */
#define WINDOW_MARGIN 64

/* The bytes of a text that can reach a sequence of max_length: no token
 * stands for more bytes than the longest piece of tok. */
static size_t window_bytes(const emdpo_tokenizer *tok, int max_length) {
    size_t longest = 1, len;
    for (int id = 0; id < emdpo_tokenizer_vocab_size(tok); id++)
        if (emdpo_tokenizer_piece(tok, id, &len) && len > longest) longest = len;
    return ((size_t)max_length + WINDOW_MARGIN) * longest;
}

static size_t text_window(emdpo_lm_set *s, const emdpo_tokenizer *tok) {
    if (s->window_tok != tok || !s->window) {
        s->window = window_bytes(tok, s->max_length);
        s->window_tok = tok;
    }
    return s->window;
}

/* A kept head has at least keep - 3 bytes (json.h cuts at characters), and
 * encode_window reads window + 1 bytes of it. */
size_t emdpo_lm_text_keep_bytes(const emdpo_tokenizer *tok, int max_length) {
    return tok && max_length > 0 ? 2 * window_bytes(tok, max_length) + 8 : 0;
}

/* encode of text, or of its last (from_end) or first `window` bytes (cut at
 * a UTF-8 character) when it is longer and the cut still gives at least
 * need tokens. */
static int encode_window(const emdpo_tokenizer *tok, const char *text, unsigned flags, size_t window, int from_end,
                         size_t need, int **ids, size_t *cap, size_t *n) {
    size_t len = text ? strlen(text) : 0;
    if (len > window) {
        const char *from = text;
        size_t w = window;
        if (from_end) {
            from = text + (len - window);
            while (w > 0 && ((unsigned char)*from & 0xC0) == 0x80) from++, w--;
        } else {
            while (w > 0 && ((unsigned char)text[w] & 0xC0) == 0x80) w--;
        }
        int *v;
        int rc = emdpo_tokenizer_encode_alloc(tok, from, w, flags, &v, n);
        if (rc) return rc;
        if (*n >= need) {
            *cap = *n + 1;
            if (!(*ids = emdpo_realloc(v, *n * sizeof *v, *cap * sizeof **ids))) {
                emdpo_ids_free(v, *n);
                return EMDPO_ERR_NOMEM;
            }
            return EMDPO_OK;
        }
        emdpo_ids_free(v, *n);
    }
    return encode(tok, text, flags, ids, cap, n);
}

/* 1 when ids start with the tokenizer's BOS, which truncation keeps. */
static int starts_with_bos(const emdpo_tokenizer *tok, const int *ids, size_t n) {
    return n > 0 && emdpo_tokenizer_bos(tok) >= 0 && ids[0] == emdpo_tokenizer_bos(tok);
}

int emdpo_lm_prompt_encode(const emdpo_tokenizer *tok, const char *text, int P, int **ids, size_t *cap, int *len) {
    if (P < 1) return EMDPO_ERR_INVALID_ARG;
    size_t got;
    int rc = encode(tok, text, EMDPO_TOK_ADD_BOS, ids, cap, &got);
    if (rc) return rc;
    if (got > (size_t)P) {
        size_t keep = (size_t)starts_with_bos(tok, *ids, got);
        memmove(*ids + keep, *ids + (got - (size_t)P) + keep, ((size_t)P - keep) * sizeof **ids);
        got = (size_t)P;
    }
    *len = (int)got;
    return EMDPO_OK;
}

int emdpo_lm_set_add(emdpo_lm_set *s, const emdpo_tokenizer *tok, const char *prompt, const char *const *responses,
                     int n, int stages) {
    if (n < 1 || stages < 0 || stages > n - 1) return EMDPO_ERR_INVALID_ARG;
    size_t pcap, pn, window = text_window(s, tok), need = (size_t)s->max_length + WINDOW_MARGIN;
    int *pids, rc = encode_window(tok, prompt, EMDPO_TOK_ADD_BOS, window, 1, need, &pids, &pcap, &pn);
    if (rc) return rc;
    int **rids = emdpo_calloc((size_t)n, sizeof *rids);
    /* rn[k]: tokens kept of response k; rn[n + k]: tokens it had. */
    size_t *rcap = emdpo_calloc((size_t)n, sizeof *rcap), *rn = emdpo_calloc(2 * (size_t)n, sizeof *rn);
    if (!rids || !rcap || !rn) rc = EMDPO_ERR_NOMEM;
    size_t longest = 0;
    int eos = emdpo_tokenizer_eos(tok);
    if (eos < 0 && !rc) rc = EMDPO_ERR_UNSUPPORTED; /* emdpo_tokenizer_load refuses such tokenizers for models */
    for (int k = 0; k < n && !rc; k++) {
        if ((rc = encode_window(tok, responses ? responses[k] : NULL, 0, window, 0, need, &rids[k], &rcap[k], &rn[k])))
            break;
        rids[k][rn[k]++] = eos;
        rn[n + k] = rn[k];
        if (rn[k] > longest) longest = rn[k];
    }
    /* The reference implementation's truncation: the prompt first (keeping
     * BOS and its end), then each response (keeping its start). */
    size_t L = (size_t)s->max_length, P = (size_t)s->max_prompt_length, pskip = 0;
    int prompt_cut = 0;
    if (!rc && pn + longest > L && pn > P) {
        pskip = pn - P;
        pn = P;
        prompt_cut = 1;
    }
    size_t total = 0;
    for (int k = 0; k < n && !rc; k++) {
        if (pn + rn[k] > L) rn[k] = L - pn;
        total += pn + rn[k];
    }
    if (!rc && (emdpo_grow((void **)&s->seq_off, &s->seq_off_cap, (size_t)s->n_seq + n + 1, sizeof *s->seq_off) ||
                emdpo_grow((void **)&s->seq_start, &s->seq_start_cap, (size_t)s->n_seq + n, sizeof *s->seq_start) ||
                emdpo_grow((void **)&s->tok, &s->tok_cap, (size_t)s->n_tok + total, sizeof *s->tok) ||
                emdpo_grow((void **)&s->group_off, &s->group_off_cap, (size_t)s->n_group + 2, sizeof *s->group_off) ||
                emdpo_grow((void **)&s->group_stages, &s->group_stages_cap, (size_t)s->n_group + 1,
                           sizeof *s->group_stages)))
        rc = EMDPO_ERR_NOMEM;
    if (!rc) {
        size_t keep = (size_t)starts_with_bos(tok, pids, pn + pskip);
        for (int k = 0; k < n; k++) {
            int32_t *dst = s->tok + s->n_tok;
            for (size_t i = 0; i < keep; i++) dst[i] = pids[i];
            for (size_t i = keep; i < pn; i++) dst[i] = pids[pskip + i];
            for (size_t i = 0; i < rn[k]; i++) dst[pn + i] = rids[k][i];
            int cut = prompt_cut || rn[k] < rn[n + k];
            s->n_truncated += cut;
            /* Without a BOS an empty prompt leaves nothing to predict the
             * first response token from: it becomes the context, as in a
             * causal LM's shifted labels. */
            s->seq_start[s->n_seq] = (int32_t)(pn ? pn : rn[k] > 0);
            s->n_tok += (int64_t)(pn + rn[k]);
            s->seq_off[++s->n_seq] = s->n_tok;
            if ((int)(pn + rn[k]) > s->longest) s->longest = (int)(pn + rn[k]);
        }
        s->group_stages[s->n_group] = stages;
        s->group_off[++s->n_group] = s->n_seq;
        if (n > s->most_items) s->most_items = n;
    }
    for (int k = 0; rids && rcap && k < n; k++) emdpo_free(rids[k], rcap[k] * sizeof *rids[k]);
    emdpo_free(rids, (size_t)n * sizeof *rids);
    emdpo_free(rcap, (size_t)n * sizeof *rcap);
    emdpo_free(rn, 2 * (size_t)n * sizeof *rn);
    emdpo_free(pids, pcap * sizeof *pids);
    return rc;
}

int emdpo_lm_set_add_tokens(emdpo_lm_set *s, const int *prompt, int np, const int *resp, int nr, int eos) {
    size_t total = (size_t)np + (size_t)nr + (size_t)(eos >= 0);
    if (emdpo_grow((void **)&s->seq_off, &s->seq_off_cap, (size_t)s->n_seq + 2, sizeof *s->seq_off) ||
        emdpo_grow((void **)&s->seq_start, &s->seq_start_cap, (size_t)s->n_seq + 1, sizeof *s->seq_start) ||
        emdpo_grow((void **)&s->tok, &s->tok_cap, (size_t)s->n_tok + total, sizeof *s->tok) ||
        emdpo_grow((void **)&s->group_off, &s->group_off_cap, (size_t)s->n_group + 2, sizeof *s->group_off) ||
        emdpo_grow((void **)&s->group_stages, &s->group_stages_cap, (size_t)s->n_group + 1, sizeof *s->group_stages))
        return EMDPO_ERR_NOMEM;
    int32_t *dst = s->tok + s->n_tok;
    for (int i = 0; i < np; i++) *dst++ = prompt[i];
    for (int i = 0; i < nr; i++) *dst++ = resp[i];
    if (eos >= 0) *dst = eos;
    s->seq_start[s->n_seq] = np;
    s->n_tok += (int64_t)total;
    s->seq_off[++s->n_seq] = s->n_tok;
    if ((int)total > s->longest) s->longest = (int)total;
    s->group_stages[s->n_group] = 0;
    s->group_off[++s->n_group] = s->n_seq;
    s->most_items = 1;
    return EMDPO_OK;
}

int emdpo_lm_set_from_data(const emdpo_data *d, const emdpo_tokenizer *tok, int max_length, int max_prompt_length,
                           emdpo_lm_set **out) {
    if (!out) return EMDPO_ERR_INVALID_ARG;
    *out = NULL;
    if (!d || !tok) return EMDPO_ERR_INVALID_ARG;
    if (!emdpo_data_has_text(d)) return EMDPO_ERR_UNSUPPORTED;
    emdpo_lm_set *s;
    int rc = emdpo_lm_set_create(max_length, max_prompt_length, &s);
    for (int64_t j = 0; !rc && j < d->n_dec; j++)
        rc = emdpo_lm_set_add(s, tok, d->dec_prompt ? d->dec_prompt[j] : NULL,
                              (const char *const *)d->item_text + d->dec_item[j], emdpo_dec_n_items(d, j),
                              d->dec_stages[j]);
    if (rc) {
        emdpo_lm_set_free(s);
        return rc;
    }
    *out = s;
    return EMDPO_OK;
}

void emdpo_lm_pack(const emdpo_lm_set *s, const int64_t *seq, int B, int *tokens, int *lens, int *start, int *end,
                   int *T) {
    int t_max = 1;
    for (int b = 0; b < B; b++) {
        int n = emdpo_lm_seq_len(s, seq[b]);
        if (n > t_max) t_max = n;
    }
    for (int b = 0; b < B; b++) {
        const int32_t *src = s->tok + s->seq_off[seq[b]];
        int n = emdpo_lm_seq_len(s, seq[b]);
        int *row = tokens + (size_t)b * t_max;
        for (int t = 0; t < n; t++) row[t] = src[t];
        for (int t = n; t < t_max; t++) row[t] = 0;
        lens[b] = n;
        start[b] = s->seq_start[seq[b]];
        end[b] = n;
    }
    *T = t_max;
}

/* ---- SFT texts ---------------------------------------------------------- */

void emdpo_lm_texts_free(emdpo_lm_texts *t) {
    if (!t) return;
    for (int64_t i = 0; i < t->n; i++) {
        emdpo_strfree(t->prompt[i]);
        emdpo_strfree(t->response[i]);
    }
    emdpo_free(t->prompt, t->prompt_cap * sizeof *t->prompt);
    emdpo_free(t->response, t->response_cap * sizeof *t->response);
    emdpo_free(t, sizeof *t);
}

/* A string field or NULL when absent; EMDPO_ERR_PARSE for another type. */
static int text_field(const emdpo_json *obj, const char *key, const char **out, emdpo_diag *diag, long line) {
    const emdpo_json *v = emdpo_json_get(obj, key);
    *out = NULL;
    if (!v || v->type == EMDPO_JSON_NULL) return EMDPO_OK;
    if (v->type != EMDPO_JSON_STRING) {
        emdpo_diag_set(diag, line, "\"%s\" must be a string, not %s", key, emdpo_json_type_name(v->type));
        return EMDPO_ERR_PARSE;
    }
    if (v->has_nul) {
        emdpo_diag_set(diag, line, "\"%s\" contains a \\u0000 character", key);
        return EMDPO_ERR_PARSE;
    }
    *out = v->u.str;
    return EMDPO_OK;
}

/* The record on line, streamed from lr (its first byte c). */
static int texts_line(emdpo_lm_texts *t, emdpo_json_stream *st, int c, long line, emdpo_diag *diag) {
    const emdpo_json *root;
    emdpo_json_error jerr;
    if (t->n == 0 && c == '[') return EMDPO_ERR_UNSUPPORTED; /* a JSON array of records */
    int rc = emdpo_json_stream_value(st, &root, &jerr);
    if (!rc) rc = emdpo_json_stream_end(st, &jerr);
    if (rc == EMDPO_ERR_PARSE) {
        emdpo_diag_set(diag, line, "line %s: %s at column %zu", jerr.limit ? "is too large to read" : "is not valid JSON",
                       jerr.msg, jerr.offset + 1);
        return rc;
    }
    if (rc) return rc;
    if (root->type != EMDPO_JSON_OBJECT) {
        emdpo_diag_set(diag, line, "line is a JSON %s, expected an object", emdpo_json_type_name(root->type));
        return EMDPO_ERR_PARSE;
    }
    if (t->n == 0 && (emdpo_json_get(root, "chosen") || emdpo_json_get(root, "ranking"))) return EMDPO_ERR_UNSUPPORTED;
    const char *prompt, *response, *text;
    if ((rc = text_field(root, "prompt", &prompt, diag, line)) ||
        (rc = text_field(root, "response", &response, diag, line)) ||
        (rc = text_field(root, "text", &text, diag, line)))
        return rc;
    if (text && (prompt || response)) {
        emdpo_diag_set(diag, line, "\"text\" cannot be combined with \"prompt\" or \"response\"");
        return EMDPO_ERR_PARSE;
    }
    if (!text && !response) {
        emdpo_diag_set(diag, line, "missing field \"response\" (or \"text\")");
        return EMDPO_ERR_PARSE;
    }
    if (emdpo_grow((void **)&t->prompt, &t->prompt_cap, (size_t)t->n + 1, sizeof *t->prompt) ||
        emdpo_grow((void **)&t->response, &t->response_cap, (size_t)t->n + 1, sizeof *t->response))
        return EMDPO_ERR_NOMEM;
    char *ps = emdpo_strdup(text ? "" : prompt ? prompt : ""), *rs = emdpo_strdup(text ? text : response);
    if (!ps || !rs) {
        emdpo_strfree(ps);
        emdpo_strfree(rs);
        return EMDPO_ERR_NOMEM;
    }
    t->prompt[t->n] = ps;
    t->response[t->n++] = rs;
    return EMDPO_OK;
}

int emdpo_lm_texts_read(const char *path, emdpo_lm_texts **out, emdpo_diag *diag) {
    return emdpo_lm_texts_read_keep(path, 0, out, diag);
}

int emdpo_lm_texts_read_keep(const char *path, size_t keep_text_bytes, emdpo_lm_texts **out, emdpo_diag *diag) {
    emdpo_diag scratch;
    if (!diag) diag = &scratch;
    memset(diag, 0, sizeof *diag);
    snprintf(diag->file, sizeof diag->file, "%s", path);
    *out = NULL;
    emdpo_lines lr;
    if (emdpo_lines_open(&lr, path)) {
        emdpo_diag_set(diag, 0, "cannot open: %s", strerror(errno));
        return EMDPO_ERR_IO;
    }
    emdpo_lm_texts *t = emdpo_calloc(1, sizeof *t);
    emdpo_json_doc *doc = NULL;
    emdpo_json_stream *st = NULL;
    emdpo_json_limits lim = {.keep = keep_text_bytes, .max_key = EMDPO_MAX_ID_BYTES};
    int rc = t ? emdpo_json_doc_create(&doc) : EMDPO_ERR_NOMEM, got = 1, c;
    if (!rc) rc = emdpo_json_stream_create(doc, &lim, &st);
    while (!rc && !(rc = emdpo_lines_begin(&lr, &got)) && got) {
        emdpo_json_error jerr;
        emdpo_json_stream_reset(st, emdpo_lines_read_line, &lr);
        if (!(rc = emdpo_json_stream_peek(st, &c, &jerr)) && c >= 0) rc = texts_line(t, st, c, lr.lineno, diag);
    }
    if (!rc && t->n == 0) {
        emdpo_diag_set(diag, 0, "no examples in file");
        rc = EMDPO_ERR_PARSE;
    }
    if (rc == EMDPO_ERR_NOMEM) emdpo_diag_set(diag, lr.lineno, "out of memory");
    if (rc == EMDPO_ERR_IO) emdpo_diag_set(diag, lr.lineno, "read error: %s", strerror(errno));
    emdpo_json_stream_free(st);
    emdpo_json_doc_free(doc);
    emdpo_lines_close(&lr);
    if (rc) {
        emdpo_lm_texts_free(t);
        return rc;
    }
    *out = t;
    return EMDPO_OK;
}

int emdpo_lm_set_from_texts(const emdpo_lm_texts *t, const emdpo_tokenizer *tok, int max_length,
                            int max_prompt_length, emdpo_lm_set **out) {
    emdpo_lm_set *s;
    int rc = emdpo_lm_set_create(max_length, max_prompt_length, &s);
    *out = NULL;
    for (int64_t i = 0; !rc && i < t->n; i++)
        rc = emdpo_lm_set_add(s, tok, t->prompt[i], (const char *const *)&t->response[i], 1, 0);
    if (rc) {
        emdpo_lm_set_free(s);
        return rc;
    }
    *out = s;
    return EMDPO_OK;
}

static uint64_t seq_hash(const emdpo_lm_set *s, int64_t i) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uint32_t)s->seq_start[i];
    for (int64_t t = s->seq_off[i]; t < s->seq_off[i + 1]; t++) {
        h ^= (uint64_t)(uint32_t)s->tok[t];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

static int seq_equal(const emdpo_lm_set *s, int64_t i, int64_t j) {
    int n = emdpo_lm_seq_len(s, i);
    return n == emdpo_lm_seq_len(s, j) && s->seq_start[i] == s->seq_start[j] &&
           memcmp(s->tok + s->seq_off[i], s->tok + s->seq_off[j], (size_t)n * sizeof *s->tok) == 0;
}

int emdpo_lm_distinct(const emdpo_lm_set *s, int64_t **uniq, int64_t *n_uniq, int64_t *map) {
    *uniq = NULL;
    *n_uniq = 0;
    size_t n = (size_t)s->n_seq, cap = 16;
    while (cap < 2 * n) cap *= 2;
    /* Open addressing: table holds indices into first, the first
     * occurrence of each distinct sequence, in order of appearance. */
    int64_t *table = emdpo_malloc(cap * sizeof *table), *first = emdpo_malloc((n ? n : 1) * sizeof *first);
    int64_t *count = emdpo_calloc((size_t)s->longest + 2, sizeof *count);
    int rc = table && first && count ? EMDPO_OK : EMDPO_ERR_NOMEM;
    int64_t nu = 0;
    if (!rc) {
        for (size_t e = 0; e < cap; e++) table[e] = -1;
        for (int64_t i = 0; i < s->n_seq; i++) {
            size_t e = (size_t)seq_hash(s, i) & (cap - 1);
            while (table[e] >= 0 && !seq_equal(s, first[table[e]], i)) e = (e + 1) & (cap - 1);
            if (table[e] < 0) {
                table[e] = nu;
                first[nu++] = i;
            }
            map[i] = table[e];
        }
        if (nu && !(*uniq = emdpo_malloc((size_t)nu * sizeof **uniq))) rc = EMDPO_ERR_NOMEM;
    }
    if (!rc) {
        /* A stable counting sort by length; table is reused as the rank of
         * each distinct sequence. */
        for (int64_t u = 0; u < nu; u++) count[emdpo_lm_seq_len(s, first[u]) + 1]++;
        for (int l = 1; l <= s->longest + 1; l++) count[l] += count[l - 1];
        for (int64_t u = 0; u < nu; u++) {
            int64_t r = count[emdpo_lm_seq_len(s, first[u])]++;
            (*uniq)[r] = first[u];
            table[u] = r;
        }
        for (size_t i = 0; i < n; i++) map[i] = table[map[i]];
        *n_uniq = nu;
    }
    emdpo_free(table, cap * sizeof *table);
    emdpo_free(first, (n ? n : 1) * sizeof *first);
    emdpo_free(count, ((size_t)s->longest + 2) * sizeof *count);
    return rc;
}

/* ---- What emdpo/lm.h offers of a set --------------------------------------- */

int emdpo_lm_lengths(const emdpo_llama *m, int *max_length, int *max_prompt_length, emdpo_diag *diag) {
    emdpo_diag_reset(diag, NULL);
    if (!m || !max_length || !max_prompt_length) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "bad arguments");
    int seq = emdpo_llama_context(&m->config);
    if (*max_length == 0) *max_length = seq < 512 ? seq : 512;
    if (*max_prompt_length == 0) *max_prompt_length = *max_length / 2;
    if (*max_length < 2 || *max_length > seq)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "max_length must be in 2..%d (the model's context)", seq);
    if (*max_prompt_length < 1 || *max_prompt_length >= *max_length)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "max_prompt_length must be in 1..%d (below max_length)",
                               *max_length - 1);
    return EMDPO_OK;
}

int emdpo_lm_set_read(const char *path, const emdpo_tokenizer *tok, int max_length, int max_prompt_length,
                      int chosen_only, emdpo_lm_set **out, emdpo_data **data, emdpo_diag *diag) {
    return emdpo_lm_set_read_with(path, NULL, tok, max_length, max_prompt_length, chosen_only, out, data, diag);
}

int emdpo_lm_set_read_with(const char *path, const emdpo_read_opts *ro, const emdpo_tokenizer *tok, int max_length,
                           int max_prompt_length, int chosen_only, emdpo_lm_set **out, emdpo_data **data,
                           emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (data) *data = NULL;
    if (!path || !tok) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no path or tokenizer");
    emdpo_lm_texts *texts = NULL;
    emdpo_data *d = NULL;
    /* Only the tokens are made from the texts: their ends are enough. */
    size_t keep = emdpo_lm_text_keep_bytes(tok, max_length);
    int rc = emdpo_lm_texts_read_keep(path, keep, &texts, diag);
    if (rc == EMDPO_ERR_UNSUPPORTED) { /* preference data */
        if ((rc = emdpo_data_read_kept(path, EMDPO_FORMAT_JSONL, ro, keep, &d, diag))) return rc;
        if (!emdpo_data_has_text(d)) {
            emdpo_data_free(d);
            return emdpo_diag_at(diag, EMDPO_ERR_UNSUPPORTED, path, 0, "responses have no text");
        }
        if (!chosen_only) {
            rc = emdpo_lm_set_from_data(d, tok, max_length, max_prompt_length, out);
        } else if (!(rc = emdpo_lm_set_create(max_length, max_prompt_length, out))) {
            for (int64_t j = 0; !rc && j < d->n_dec; j++)
                rc = emdpo_lm_set_add(*out, tok, d->dec_prompt ? d->dec_prompt[j] : NULL,
                                      (const char *const *)d->item_text + d->dec_item[j], 1, 0);
        }
    } else if (!rc) {
        rc = emdpo_lm_set_from_texts(texts, tok, max_length, max_prompt_length, out);
    } else {
        return rc;
    }
    emdpo_lm_texts_free(texts);
    if (rc) {
        emdpo_lm_set_free(*out);
        *out = NULL;
        emdpo_data_free(d);
        return emdpo_diag_at(diag, rc, path, 0, "cannot tokenize the data: %s", emdpo_status_name(rc));
    }
    if (data) *data = d;
    else emdpo_data_free(d);
    return EMDPO_OK;
}

int emdpo_lm_data_read(const char *path, const emdpo_read_opts *o, const emdpo_llama *m, const emdpo_tokenizer *tok,
                       int max_length, emdpo_data **out, emdpo_diag *diag) {
    emdpo_diag_reset(diag, path);
    if (!out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path || !m || !tok) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no path, model or tokenizer");
    int max_prompt_length = 0, rc = emdpo_lm_lengths(m, &max_length, &max_prompt_length, diag);
    if (rc) return rc;
    /* Only the tokens are made from the texts: their ends are enough. */
    return emdpo_data_read_kept(path, EMDPO_FORMAT_JSONL, o, emdpo_lm_text_keep_bytes(tok, max_length), out, diag);
}

int64_t emdpo_lm_set_n_sequences(const emdpo_lm_set *s) { return s ? s->n_seq : 0; }
int64_t emdpo_lm_set_n_groups(const emdpo_lm_set *s) { return s ? s->n_group : 0; }
int64_t emdpo_lm_set_n_truncated(const emdpo_lm_set *s) { return s ? s->n_truncated : 0; }
int emdpo_lm_set_max_length(const emdpo_lm_set *s) { return s ? s->max_length : 0; }

int emdpo_lm_set_group(const emdpo_lm_set *s, int64_t g, int64_t *first) {
    if (!s || g < 0 || g >= s->n_group) return 0;
    if (first) *first = s->group_off[g];
    return (int)(s->group_off[g + 1] - s->group_off[g]);
}

int emdpo_lm_set_response_tokens(const emdpo_lm_set *s, int64_t i) {
    return s && i >= 0 && i < s->n_seq ? emdpo_lm_seq_len(s, i) - s->seq_start[i] : 0;
}
