/* JSONL preference data: one decision per line (TRL's prompt/chosen/rejected
 * names, extended with annotator, group, lists of rejected responses and
 * rankings), or a JSON array of such records. TRL's implicit prompts and
 * conversations become texts through chat_records.h. See DESIGN.md, "Data
 * formats". Under mpirun a file of records on lines is read in parts
 * (parts.h): each process parses only its share's lines. */
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/dist.h"
#include "base/file.h"
#include "base/json.h"
#include "data/chat_records.h"
#include "data/parts.h"
#include "data/readers.h"

typedef struct jsonl_reader {
    const emdpo_read_opts *o;
    size_t keep;      /* emdpo_data_read_kept's keep_text_bytes */
    emdpo_chat_ctx chat;
    int annot_seen;   /* some record had o->annotator_field */
    emdpo_diag *diag;
    long line;
    long record;      /* the record's number: its line in JSONL, its place in a JSON array */
    emdpo_json_doc *doc;
    emdpo_json_stream *st;
    emdpo_data_builder *b; /* created by the first response, which fixes p */
    int p;            /* -1 until known; 0 for text data */
    long kind_line;   /* the line whose responses fixed p */
    const emdpo_json **items; /* the current decision, in preference order */
    size_t n_items, items_cap;
    double *x;
    size_t x_cap;
    const char **texts;
    size_t texts_cap;
    char annot_buf[32], group_buf[32]; /* ids spelled from integers or line numbers */
    /* Reading a part of the file under mpirun: the scans' stream, and the
     * annotator of the record before. */
    int part;
    emdpo_json_stream *scan;
    emdpo_part_annots annots;
    char *prev;
    size_t prev_cap;
} jsonl_reader;

static int string_has_nul(const emdpo_json *v) { return v->has_nul; }

/* 1 when a string in v was cut to the texts' kept ends. */
static int has_cut_string(const emdpo_json *v) {
    if (v->type == EMDPO_JSON_STRING) return v->full_len > v->len;
    for (size_t k = 0; v->type == EMDPO_JSON_ARRAY && k < v->len; k++)
        if (has_cut_string(&v->u.elems[k])) return 1;
    for (size_t k = 0; v->type == EMDPO_JSON_OBJECT && k < v->len; k++)
        if (has_cut_string(&v->u.members[k].value)) return 1;
    return 0;
}

/* An id field: a non-empty string, or an integer spelled in decimal into buf.
 * *out is NULL when the key is absent or null. */
static int get_id(jsonl_reader *r, const emdpo_json *obj, const char *key, char *buf, size_t size,
                  const char **out) {
    const emdpo_json *v = emdpo_json_get(obj, key);
    *out = NULL;
    if (!v || v->type == EMDPO_JSON_NULL) return EMDPO_OK;
    if (v->type == EMDPO_JSON_NUMBER && v->is_int) {
        snprintf(buf, size, "%" PRId64, v->inum);
        *out = buf;
        return EMDPO_OK;
    }
    if (v->type != EMDPO_JSON_STRING)
        return emdpo_diag_parse(r->diag, r->line, "\"%s\" must be a string or an integer, not %s", key,
                                v->type == EMDPO_JSON_NUMBER ? "a non-integer or out-of-range number"
                                                             : emdpo_json_type_name(v->type));
    if (v->len == 0) return emdpo_diag_parse(r->diag, r->line, "\"%s\" is an empty string", key);
    if (string_has_nul(v)) return emdpo_diag_parse(r->diag, r->line, "\"%s\" contains a \\u0000 character", key);
    if (v->full_len > EMDPO_MAX_ID_BYTES)
        return emdpo_diag_parse(r->diag, r->line, "\"%s\" is %zu bytes long; identifiers are at most %d bytes", key,
                                v->full_len, EMDPO_MAX_ID_BYTES);
    *out = v->u.str;
    return EMDPO_OK;
}

static int get_prompt(jsonl_reader *r, const emdpo_json *obj, const char **out) {
    const emdpo_json *v = emdpo_json_get(obj, "prompt");
    *out = NULL;
    if (!v || v->type == EMDPO_JSON_NULL || v->type == EMDPO_JSON_ARRAY) return EMDPO_OK; /* lists: chat_records.h */
    if (v->type != EMDPO_JSON_STRING)
        return emdpo_diag_parse(r->diag, r->line, "\"prompt\" must be a string or a list of messages, not %s",
                                emdpo_json_type_name(v->type));
    if (string_has_nul(v)) return emdpo_diag_parse(r->diag, r->line, "\"prompt\" contains a \\u0000 character");
    *out = v->u.str;
    return EMDPO_OK;
}

static int push_item(jsonl_reader *r, const emdpo_json *v) {
    if (emdpo_grow((void **)&r->items, &r->items_cap, r->n_items + 1, sizeof *r->items))
        return EMDPO_ERR_NOMEM;
    r->items[r->n_items++] = v;
    return EMDPO_OK;
}

/* A single response (a conversation's messages are one) or a non-empty
 * list of them. */
static int push_rejected(jsonl_reader *r, const emdpo_json *rej) {
    if (rej->type != EMDPO_JSON_ARRAY || emdpo_chat_is_messages(rej)) return push_item(r, rej);
    if (rej->len == 0) return emdpo_diag_parse(r->diag, r->line, "\"rejected\" is an empty list");
    for (size_t k = 0; k < rej->len; k++) {
        int rc = push_item(r, &rej->u.elems[k]);
        if (rc) return rc;
    }
    return EMDPO_OK;
}

/* Gathers the responses in preference order and the number of sequential
 * choices they encode. */
static int collect_items(jsonl_reader *r, const emdpo_json *obj, int *stages) {
    const emdpo_json *chosen = emdpo_json_get(obj, "chosen");
    const emdpo_json *ranking = emdpo_json_get(obj, "ranking");
    const emdpo_json *rejected = emdpo_json_get(obj, "rejected");
    int rc;
    r->n_items = 0;
    if (chosen && ranking) return emdpo_diag_parse(r->diag, r->line, "\"chosen\" and \"ranking\" cannot both be given");
    if (chosen) {
        if (chosen->type == EMDPO_JSON_ARRAY && !emdpo_chat_is_messages(chosen))
            return emdpo_diag_parse(r->diag, r->line, "\"chosen\" must be one response (a string, an object or a "
                                    "list of {\"role\", \"content\"} messages), not a list");
        if (!rejected) return emdpo_diag_parse(r->diag, r->line, "missing field \"rejected\"");
        if ((rc = push_item(r, chosen))) return rc;
        *stages = 1;
    } else if (ranking) {
        if (ranking->type != EMDPO_JSON_ARRAY)
            return emdpo_diag_parse(r->diag, r->line, "\"ranking\" must be a list, not %s",
                                    emdpo_json_type_name(ranking->type));
        if (ranking->len == 0) return emdpo_diag_parse(r->diag, r->line, "\"ranking\" is an empty list");
        if (ranking->len == 1 && !rejected)
            return emdpo_diag_parse(r->diag, r->line, "\"ranking\" needs at least two responses");
        for (size_t k = 0; k < ranking->len; k++)
            if ((rc = push_item(r, &ranking->u.elems[k]))) return rc;
        if (ranking->len > INT32_MAX) return emdpo_diag_parse(r->diag, r->line, "too many responses");
        *stages = (int)ranking->len - (rejected ? 0 : 1);
    } else {
        return emdpo_diag_parse(r->diag, r->line, "missing field \"chosen\" (or \"ranking\")");
    }
    if (rejected && (rc = push_rejected(r, rejected))) return rc;
    if (r->n_items > INT32_MAX) return emdpo_diag_parse(r->diag, r->line, "too many responses");
    return EMDPO_OK;
}

/* The first response of the file decides between text and features. */
static int check_kind(jsonl_reader *r, size_t k, size_t p) {
    if (r->p < 0) {
        if (p > INT32_MAX) return emdpo_diag_parse(r->diag, r->line, "too many features");
        int rc = emdpo_data_builder_create((int)p, &r->b);
        if (rc) return rc;
        r->p = (int)p;
        r->kind_line = r->line;
        return EMDPO_OK;
    }
    if ((size_t)r->p == p) return EMDPO_OK;
    if (p == 0)
        return emdpo_diag_parse(r->diag, r->line, "item %zu is text, but the responses on line %ld have features",
                                k + 1, r->kind_line);
    if (r->p == 0)
        return emdpo_diag_parse(r->diag, r->line, "item %zu has features, but the responses on line %ld are text",
                                k + 1, r->kind_line);
    return emdpo_diag_parse(r->diag, r->line, "item %zu has %zu features, expected %d (as on line %ld)", k + 1, p, r->p,
                            r->kind_line);
}

/* Item k (0-based) as features (into r->x) and/or text (into r->texts). */
static int read_item(jsonl_reader *r, size_t k, int *has_text) {
    const emdpo_json *v = r->items[k];
    const emdpo_json *feats = NULL, *text = NULL;
    if (v->type == EMDPO_JSON_STRING) {
        text = v;
    } else if (v->type == EMDPO_JSON_OBJECT) {
        feats = emdpo_json_get(v, "features");
        text = emdpo_json_get(v, "text");
        if (!feats || feats->type != EMDPO_JSON_ARRAY)
            return emdpo_diag_parse(r->diag, r->line, "item %zu has no \"features\" list", k + 1);
        if (feats->len == 0)
            return emdpo_diag_parse(r->diag, r->line, "item %zu has an empty \"features\" list", k + 1);
        if (text && text->type == EMDPO_JSON_NULL) text = NULL;
    } else {
        return emdpo_diag_parse(r->diag, r->line, "item %zu must be a string or an object with \"features\", not %s",
                                k + 1, emdpo_json_type_name(v->type));
    }
    if (text && (text->type != EMDPO_JSON_STRING || string_has_nul(text)))
        return emdpo_diag_parse(r->diag, r->line, "the text of item %zu must be a string without \\u0000", k + 1);
    int rc = check_kind(r, k, feats ? feats->len : 0);
    if (rc) return rc;
    size_t p = (size_t)r->p;
    if (p && (r->n_items > SIZE_MAX / sizeof(double) / p ||
              emdpo_grow((void **)&r->x, &r->x_cap, r->n_items * p, sizeof(double))))
        return EMDPO_ERR_NOMEM;
    r->texts[k] = text ? text->u.str : NULL;
    if (text) *has_text = 1;
    for (size_t j = 0; feats && j < feats->len; j++) {
        if (feats->u.elems[j].type != EMDPO_JSON_NUMBER)
            return emdpo_diag_parse(r->diag, r->line, "feature %zu of item %zu is not a finite number", j + 1, k + 1);
        r->x[k * p + j] = feats->u.elems[j].num;
    }
    return EMDPO_OK;
}

/* A record whose texts chat_records.h made: text items, no features. */
static int read_texts(jsonl_reader *r, char **texts, size_t n) {
    int rc = check_kind(r, 0, 0);
    for (size_t k = 0; !rc && k < n; k++) r->texts[k] = texts[k];
    return rc;
}

/* Under mpirun each process reads whole annotators from its part. */
static int note_annotator(jsonl_reader *r, const char *annot) {
    const char *prev = r->annots.n ? r->prev : NULL;
    if (prev && strcmp(prev, annot) == 0) return EMDPO_OK;
    int rc = emdpo_part_note(&r->annots, r->b, prev, annot, r->line, r->diag);
    if (rc) return rc;
    size_t len = strlen(annot) + 1;
    if (emdpo_grow((void **)&r->prev, &r->prev_cap, len, 1)) return EMDPO_ERR_NOMEM;
    memcpy(r->prev, annot, len);
    return EMDPO_OK;
}

static int read_decision(jsonl_reader *r, const emdpo_json *obj) {
    const char *annot, *group, *prompt;
    int stages = 0, rc, done;
    if ((rc = get_id(r, obj, r->o->annotator_field, r->annot_buf, sizeof r->annot_buf, &annot)) ||
        (rc = get_id(r, obj, "group", r->group_buf, sizeof r->group_buf, &group)) ||
        (rc = get_prompt(r, obj, &prompt)) || (rc = collect_items(r, obj, &stages)))
        return rc;
    if (annot) {
        r->annot_seen = 1;
    } else {
        snprintf(r->annot_buf, sizeof r->annot_buf, "line%ld", r->record);
        annot = r->annot_buf;
    }
    if (r->part && (rc = note_annotator(r, annot))) return rc;
    size_t n = r->n_items;
    if (emdpo_grow((void **)&r->texts, &r->texts_cap, n, sizeof *r->texts)) return EMDPO_ERR_NOMEM;
    char **made = emdpo_calloc(n, sizeof *made), *made_prompt = NULL;
    if (!made) return EMDPO_ERR_NOMEM;
    rc = emdpo_chat_record(&r->chat, emdpo_json_get(obj, "prompt"), r->items, n, r->line, &done, &made_prompt, made,
                           r->diag);
    int has_text = done;
    if (!rc && done && has_cut_string(obj))
        rc = emdpo_diag_parse(r->diag, r->line, "a text is longer than %zu bytes, which only plain \"prompt\" and "
                              "response strings may be (an implicit prompt or a chat template needs it whole)",
                              3 * r->keep);
    if (!rc && done) {
        rc = read_texts(r, made, n);
        prompt = made_prompt;
    } else if (!rc && emdpo_chat_is_messages(emdpo_json_get(obj, "prompt"))) {
        rc = emdpo_diag_parse(r->diag, r->line, "a conversational \"prompt\" needs text responses");
    }
    for (size_t k = 0; !rc && !done && k < n; k++) rc = read_item(r, k, &has_text);
    for (size_t k = 0; !rc && r->o->require_text && k < n; k++)
        if (!has_text || !r->texts[k])
            rc = emdpo_diag_parse(r->diag, r->line, "response %zu has no text (a language model needs text responses)",
                                  k + 1);
    if (!rc) {
        rc = emdpo_data_builder_add(r->b, annot, group, prompt, (int)n, stages, r->p ? r->x : NULL,
                                    has_text ? r->texts : NULL);
        if (rc == EMDPO_ERR_PARSE) emdpo_diag_group_conflict(r->diag, r->line, annot, group);
    }
    emdpo_chat_texts_free(made_prompt, made, n);
    emdpo_free(made, n * sizeof *made);
    return rc;
}

/* The JSON error of the record on r->line: invalid JSON, or JSON beyond
 * what a record may hold (json.h's limits). */
static int json_error(jsonl_reader *r, const emdpo_json_error *jerr) {
    if (jerr->limit)
        return emdpo_diag_parse(r->diag, r->line, "line is too large to read: %s at column %zu", jerr->msg,
                                jerr->offset + 1);
    return emdpo_diag_parse(r->diag, r->line, "line is not valid JSON: %s at column %zu", jerr->msg, jerr->offset + 1);
}

static int read_line(jsonl_reader *r) {
    const emdpo_json *root;
    emdpo_json_error jerr;
    int rc = emdpo_json_stream_value(r->st, &root, &jerr);
    if (!rc) rc = emdpo_json_stream_end(r->st, &jerr);
    if (rc == EMDPO_ERR_PARSE) return json_error(r, &jerr);
    if (rc) return rc;
    if (root->type != EMDPO_JSON_OBJECT)
        return emdpo_diag_parse(r->diag, r->line, "line is a JSON %s, expected an object",
                                emdpo_json_type_name(root->type));
    return read_decision(r, root);
}

/* A JSON file holding one array of records, from the line that opened it
 * on: one record at a time, each record's errors citing the line where it
 * begins. */
static int read_array(jsonl_reader *r, emdpo_lines *lr) {
    long first = lr->lineno;
    emdpo_json_stream_switch(r->st, emdpo_lines_read_on, lr);
    int rc = EMDPO_OK, got = 1;
    emdpo_json_error jerr;
    for (long i = 1; !rc; i++) {
        const emdpo_json *rec;
        if ((rc = emdpo_json_stream_element(r->st, &rec, &got, &jerr)) || !got) break;
        r->line = first + emdpo_json_stream_value_newlines(r->st);
        r->record = i;
        if (rec->type != EMDPO_JSON_OBJECT)
            rc = emdpo_diag_parse(r->diag, r->line, "record %ld is a JSON %s, expected an object", i,
                                  emdpo_json_type_name(rec->type));
        else
            rc = read_decision(r, rec);
    }
    if (!rc) rc = emdpo_json_stream_end(r->st, &jerr);
    if (rc == EMDPO_ERR_PARSE && jerr.msg[0]) {
        long at = first + emdpo_json_stream_newlines(r->st);
        if (jerr.limit) emdpo_diag_parse(r->diag, at, "a record is too large to read: %s", jerr.msg);
        else emdpo_diag_parse(r->diag, at, "the JSON array is not valid JSON: %s", jerr.msg);
    }
    return rc;
}

static void reader_free(jsonl_reader *r) {
    emdpo_chat_ctx_free(&r->chat);
    emdpo_json_stream_free(r->st);
    emdpo_json_stream_free(r->scan);
    emdpo_part_annots_free(&r->annots);
    emdpo_free(r->prev, r->prev_cap);
    emdpo_json_doc_free(r->doc);
    emdpo_data_builder_free(r->b);
    emdpo_free((void *)r->items, r->items_cap * sizeof *r->items);
    emdpo_free(r->x, r->x_cap * sizeof *r->x);
    emdpo_free((void *)r->texts, r->texts_cap * sizeof *r->texts);
}

/* ---- Parts of the file (mpirun) ------------------------------------------
 * Under mpirun each process reads only the lines of its share of the
 * annotators (parts.h): an annotator starts at a record whose annotator
 * differs from the record before's; blank lines hold no record. The scans
 * parse each record with strings cut to what an identifier may be, so
 * their memory is that of one record's structure. */

/* One line of a file as an emdpo_json_read_fn: its bytes up to its '\n',
 * which is read and left out; pos counts the bytes read. */
typedef struct scan_line {
    FILE *fp;
    int64_t pos;
    int done;
} scan_line;

static int scan_read(void *ctx, char *dst, size_t cap, size_t *n) {
    scan_line *s = ctx;
    size_t k = 0;
    while (!s->done && k < cap) {
        int c = getc_unlocked(s->fp);
        if (c == EOF) {
            s->done = 1;
            if (ferror(s->fp)) return EMDPO_ERR_IO;
            break;
        }
        s->pos++;
        if (c == '\n') s->done = 1;
        else dst[k++] = (char)c;
    }
    *n = k;
    return EMDPO_OK;
}

/* The record on line `line` (its bytes from src): *blank when there is
 * none, else *annot its annotator as read_decision names it, or NULL when
 * the record cannot be read (the reading refuses it at its line). */
static int scan_record(jsonl_reader *r, scan_line *src, long line, const char **annot, int *blank) {
    const emdpo_json *root;
    emdpo_json_error jerr;
    int c;
    *annot = NULL;
    *blank = 0;
    emdpo_json_stream_reset(r->scan, scan_read, src);
    int rc = emdpo_json_stream_peek(r->scan, &c, &jerr);
    if (!rc && c < 0) {
        *blank = 1;
        return EMDPO_OK;
    }
    if (!rc) rc = emdpo_json_stream_value(r->scan, &root, &jerr);
    if (!rc) rc = emdpo_json_stream_end(r->scan, &jerr);
    if (rc) return rc == EMDPO_ERR_PARSE ? EMDPO_OK : rc;
    r->line = line;
    if (root->type != EMDPO_JSON_OBJECT ||
        get_id(r, root, r->o->annotator_field, r->annot_buf, sizeof r->annot_buf, annot)) {
        *annot = NULL;
        return EMDPO_OK;
    }
    if (!*annot) {
        snprintf(r->annot_buf, sizeof r->annot_buf, "line%ld", line);
        *annot = r->annot_buf;
    }
    return EMDPO_OK;
}

/* The lines' emdpo_part_scan_fn (ctx the reader). */
static int scan_part(void *ctx, FILE *fp, int64_t from, int64_t to, long line, int64_t first, const int64_t *want,
                     int n_want, int64_t *at, int64_t *n_starts, int64_t *n_records) {
    jsonl_reader *r = ctx;
    emdpo_diag *diag = r->diag, scratch; /* what get_id finds wrong is refused when the line is read */
    r->diag = &scratch;
    char *prev = NULL, skip[256];
    size_t prev_cap = 0, got;
    int64_t n = 0, records = 0;
    int rc = fseeko(fp, (off_t)from, SEEK_SET) ? EMDPO_ERR_IO : EMDPO_OK, k = 0, have_prev = 0, prev_ok = 0;
    scan_line src = {.fp = fp, .pos = from};
    for (; !rc; line++) {
        int64_t start = src.pos;
        int c = getc_unlocked(fp), blank;
        if (c == EOF) {
            rc = ferror(fp) ? EMDPO_ERR_IO : EMDPO_OK;
            break;
        }
        ungetc(c, fp);
        if (start == 0) { /* a byte order mark, as emdpo_lines_begin skips it */
            char bom[3];
            size_t nb = fread(bom, 1, 3, fp);
            if (nb == 3 && memcmp(bom, "\xEF\xBB\xBF", 3) == 0) src.pos = 3;
            else if (fseeko(fp, 0, SEEK_SET)) rc = EMDPO_ERR_IO;
        }
        const char *annot = NULL;
        src.done = 0;
        if (!rc) rc = scan_record(r, &src, line, &annot, &blank);
        while (!rc && !src.done) rc = scan_read(&src, skip, sizeof skip, &got);
        if (rc || blank) continue;
        int after = start >= to;
        if (have_prev && (!annot || !prev_ok || strcmp(prev, annot) != 0)) {
            int64_t g = first + n++;
            while (k < n_want && want[k] < g) k++;
            for (int j = k; j < n_want && want[j] == g; j++) {
                at[2 * j] = start;
                at[2 * j + 1] = line;
            }
        }
        if (after) break;
        records++;
        have_prev = 1;
        prev_ok = annot != NULL;
        size_t len = annot ? strlen(annot) + 1 : 0;
        if (annot && emdpo_grow((void **)&prev, &prev_cap, len, 1)) rc = EMDPO_ERR_NOMEM;
        else if (annot) memcpy(prev, annot, len);
    }
    emdpo_free(prev, prev_cap);
    r->diag = diag;
    *n_starts = n;
    *n_records = records;
    return rc;
}

/* The scans' stream: strings cut to an identifier's length. */
static int scan_open(jsonl_reader *r) {
    emdpo_json_limits lim = {.keep = EMDPO_MAX_ID_BYTES, .max_key = EMDPO_MAX_ID_BYTES};
    return emdpo_json_stream_create(r->doc, &lim, &r->scan);
}

int emdpo_jsonl_scan(FILE *fp, const emdpo_read_opts *o, int64_t from, int64_t to, long line, int64_t *n_starts,
                     int64_t *n_records) {
    emdpo_diag scratch;
    jsonl_reader r = {.o = o, .diag = &scratch, .p = -1};
    int rc = emdpo_json_doc_create(&r.doc);
    if (!rc) rc = scan_open(&r);
    if (!rc) rc = scan_part(&r, fp, from, to, line, 0, NULL, 0, NULL, n_starts, n_records);
    reader_free(&r);
    return rc;
}

/* Finds this process's part and moves lr to its first line. */
static int part_begin(jsonl_reader *r, emdpo_lines *lr, emdpo_part *where) {
    int rc = scan_open(r);
    if (!rc) rc = emdpo_part_find(lr->fp, 0, 1, scan_part, r, where);
    if (!rc) rc = emdpo_lines_seek(lr, where->begin, where->line);
    return rc;
}

/* What the whole file says, from the parts: the responses of the first
 * record (read by the process whose share begins at annotator 0 and holds
 * some) fix the features for all, and a record of some process had the
 * annotator field or was rendered by a template (*chat). A collective. */
static int part_agree(jsonl_reader *r, const emdpo_part *where, int *chat) {
    if (!where->all_annot) {
        emdpo_diag_set(r->diag, 0, "no decisions in file");
        return EMDPO_ERR_PARSE;
    }
    int64_t v[4] = {0, 0, r->annot_seen, r->chat.t != NULL};
    if (where->annot_base == 0 && r->p >= 0) v[0] = r->p, v[1] = r->kind_line;
    int rc = emdpo_dist_sum_i64(v, 4);
    if (rc) return rc;
    r->annot_seen = v[2] > 0;
    *chat = v[3] > 0;
    if (r->p < 0) return emdpo_data_builder_create((int)v[0], &r->b);
    if (r->p == v[0]) return EMDPO_OK;
    /* This part's first response differs from the file's first. */
    size_t p = (size_t)r->p;
    r->line = r->kind_line;
    r->p = (int)v[0];
    r->kind_line = (long)v[1];
    return check_kind(r, 0, p);
}

int emdpo_jsonl_splits(FILE *fp) {
    struct stat st;
    unsigned char head[3];
    if (fstat(fileno(fp), &st) || !S_ISREG(st.st_mode)) return 0;
    size_t n = fread(head, 1, 3, fp);
    int c = EOF, ok = !(n >= 2 && head[0] == 0x1f && head[1] == 0x8b); /* gzip */
    if (ok && !(n == 3 && memcmp(head, "\xEF\xBB\xBF", 3) == 0)) ok = fseeko(fp, 0, SEEK_SET) == 0;
    while (ok && ((c = getc_unlocked(fp)) == ' ' || c == '\t' || c == '\r' || c == '\n')) continue;
    ok = ok && !ferror(fp) && c != '[' && fseeko(fp, 0, SEEK_SET) == 0;
    return ok;
}

int emdpo_read_jsonl(emdpo_lines *lr, const emdpo_read_opts *o, size_t keep_text_bytes, int part, emdpo_data **out,
                     emdpo_diag *diag) {
    jsonl_reader r = {.o = o, .keep = keep_text_bytes, .diag = diag, .p = -1, .part = part};
    emdpo_part where = {.end_line = LONG_MAX};
    r.chat.template_path = o->chat_template;
    r.chat.special_tokens = o->special_tokens;
    /* Keys are identifiers; texts are cut to what the caller keeps. */
    emdpo_json_limits lim = {.keep = keep_text_bytes, .max_key = EMDPO_MAX_ID_BYTES};
    int rc = emdpo_json_doc_create(&r.doc), got = 1, first = !part, c, chat = 0;
    if (!rc) rc = emdpo_json_stream_create(r.doc, &lim, &r.st);
    if (!rc && part) rc = part_begin(&r, lr, &where);
    while (!rc && !(rc = emdpo_lines_begin(lr, &got)) && got && lr->lineno < where.end_line) {
        r.line = r.record = lr->lineno;
        emdpo_json_error jerr;
        emdpo_json_stream_reset(r.st, emdpo_lines_read_line, lr);
        if ((rc = emdpo_json_stream_peek(r.st, &c, &jerr)) || c < 0) continue; /* a blank line */
        if (first && c == '[') {
            rc = read_array(&r, lr);
            break;
        }
        first = 0;
        rc = read_line(&r);
    }
    if (!rc && part) {
        rc = part_agree(&r, &where, &chat);
    } else if (!rc && !r.b) {
        emdpo_diag_set(diag, 0, "no decisions in file");
        rc = EMDPO_ERR_PARSE;
    }
    if (!rc && !r.annot_seen && strcmp(o->annotator_field, "annotator") != 0) {
        emdpo_diag_set(diag, 0, "no record has the annotator field \"%.60s\"", o->annotator_field);
        rc = EMDPO_ERR_PARSE;
    }
    if (!rc && part) {
        rc = emdpo_part_finish(r.b, &where, &r.annots, out, diag);
        r.b = NULL;
    } else if (!rc) {
        rc = emdpo_data_builder_finish(r.b, out);
        r.b = NULL;
    }
    /* A template that rendered records is part of how the data reads. */
    if (!rc && (r.chat.t || chat) &&
        (!((*out)->read_chat_template = emdpo_path_real(o->chat_template)) ||
         (o->special_tokens && !((*out)->read_special_tokens = emdpo_path_real(o->special_tokens))))) {
        emdpo_data_free(*out);
        *out = NULL;
        rc = EMDPO_ERR_NOMEM;
    }
    reader_free(&r);
    return rc;
}
