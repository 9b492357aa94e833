/* libFuzzer target: the streaming JSON parser (src/base/json.c's
 * emdpo_json_stream) and the line pieces it reads (src/base/lines.c).
 * Byte 0 sets how the rest is read: bits 0-2 the bytes a read hands out
 * (1..8), bits 3-5 the kept ends of strings (none, 1, 2, 3, 5, 8, 64 or
 * 1000 bytes), bit 6 keys and numbers of at most 8 bytes, bit 7 the root
 * object's "a" listing at most 2 elements. Invariants, against parsing
 * the same bytes whole (emdpo_json_parse):
 * - streamed without limits: the same status, tree, error offset and
 *   message;
 * - under the limits: a limit error, or what the whole parse gives, with
 *   each string longer than 3·keep being exactly its ends cut at UTF-8
 *   characters, its full length told;
 * - an array streamed element by element: the whole parse's elements, or
 *   its error at the same offset;
 * - the bytes read as lines (emdpo_lines over fmemopen): the same lines
 *   whole and in pieces, and line 1 going on over the rest as the file
 *   is. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/lines.h"
#include "emdpo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct src {
    const char *s;
    size_t len, pos, step;
} src;

static int src_read(void *ctx, char *dst, size_t cap, size_t *n) {
    src *m = ctx;
    size_t k = m->len - m->pos;
    if (k > cap) k = cap;
    if (k > m->step) k = m->step;
    memcpy(dst, m->s + m->pos, k);
    m->pos += k;
    *n = k;
    return EMDPO_OK;
}

/* a and b equal, b's strings cut to their ends when keep says so. */
static int same(const emdpo_json *a, const emdpo_json *b, size_t keep) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case EMDPO_JSON_NULL: return 1;
    case EMDPO_JSON_BOOL: return a->boolean == b->boolean;
    case EMDPO_JSON_NUMBER: return memcmp(&a->num, &b->num, sizeof a->num) == 0 && a->is_int == b->is_int;
    case EMDPO_JSON_STRING: {
        if (b->full_len != a->len || a->full_len != a->len || b->has_nul != a->has_nul) return 0;
        if (!keep || a->len <= 3 * keep) return b->len == a->len && memcmp(a->u.str, b->u.str, a->len + 1) == 0;
        size_t h = keep, t = a->len - keep;
        while (h > 0 && ((unsigned char)a->u.str[h] & 0xC0) == 0x80) h--;
        while (((unsigned char)a->u.str[t] & 0xC0) == 0x80) t++;
        return b->len == h + (a->len - t) && memcmp(b->u.str, a->u.str, h) == 0 &&
               memcmp(b->u.str + h, a->u.str + t, a->len - t) == 0 && b->u.str[b->len] == 0;
    }
    case EMDPO_JSON_ARRAY:
        if (a->len != b->len) return 0;
        for (size_t k = 0; k < a->len; k++)
            if (!same(&a->u.elems[k], &b->u.elems[k], keep)) return 0;
        return 1;
    case EMDPO_JSON_OBJECT:
        if (a->len != b->len) return 0;
        for (size_t k = 0; k < a->len; k++)
            if (a->u.members[k].key_len != b->u.members[k].key_len ||
                memcmp(a->u.members[k].key, b->u.members[k].key, a->u.members[k].key_len) ||
                !same(&a->u.members[k].value, &b->u.members[k].value, keep))
                return 0;
        return 1;
    }
    return 0;
}

static void check_lines(const char *s, size_t n) {
    if (!n) return; /* fmemopen refuses an empty buffer on some systems */
    emdpo_lines whole = {.fp = fmemopen((void *)s, n, "rb")}, piece = {.fp = fmemopen((void *)s, n, "rb")};
    if (!whole.fp || !piece.fp) abort();
    char buf[16];
    int got, got2;
    for (;;) {
        if (emdpo_lines_next(&whole, &got) || emdpo_lines_begin(&piece, &got2) || got != got2) abort();
        if (!got) break;
        size_t at = 0, k = 1;
        while (k) {
            if (emdpo_lines_read_line(&piece, buf, sizeof buf, &k)) abort();
            if (at + k > whole.len || memcmp(whole.buf + at, buf, k)) abort();
            at += k;
        }
        if (at != whole.len || piece.lineno != whole.lineno) abort();
    }
    emdpo_lines_free(&whole);
    emdpo_lines_free(&piece);
    fclose(whole.fp);
    fclose(piece.fp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static emdpo_json_doc *whole_doc, *doc;
    static emdpo_json_stream *plain;
    if (!whole_doc && (emdpo_json_doc_create(&whole_doc) || emdpo_json_doc_create(&doc) ||
                       emdpo_json_stream_create(doc, NULL, &plain)))
        abort();
    if (size < 1) return 0;
    static const size_t keeps[] = {0, 1, 2, 3, 5, 8, 64, 1000};
    size_t step = 1 + (data[0] & 7), keep = keeps[(data[0] >> 3) & 7];
    emdpo_json_limits lim = {.keep = keep,
                             .max_key = data[0] & 0x40 ? 8 : 0,
                             .list_key = data[0] & 0x80 ? "a" : NULL,
                             .list_max = 2};
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    check_lines(s, n);

    const emdpo_json *root, *v;
    emdpo_json_error err, serr;
    int rc = emdpo_json_parse(whole_doc, s, n, &root, &err);
    if (rc == EMDPO_ERR_NOMEM || (rc && root) || (!rc && !root)) abort();

    /* Streamed without limits: what the whole parse gives. */
    src m = {s, n, 0, step};
    emdpo_json_stream_reset(plain, src_read, &m);
    int src_rc = emdpo_json_stream_value(plain, &v, &serr);
    if (!src_rc && (src_rc = emdpo_json_stream_end(plain, &serr))) v = NULL;
    if (src_rc != rc || serr.limit) abort();
    if (rc && (serr.offset != err.offset || strcmp(serr.msg, err.msg))) abort();
    if (!rc && !same(root, v, 0)) abort();

    /* Under limits. */
    emdpo_json_stream *st;
    if (emdpo_json_stream_create(doc, &lim, &st)) abort();
    m = (src){s, n, 0, step};
    emdpo_json_stream_reset(st, src_read, &m);
    int lrc = emdpo_json_stream_value(st, &v, &serr);
    if (!lrc && (lrc = emdpo_json_stream_end(st, &serr))) v = NULL;
    if (lrc && !serr.limit && (lrc != rc || serr.offset != err.offset || strcmp(serr.msg, err.msg))) abort();
    if (!lrc && (rc || !same(root, v, keep))) abort();

    /* Element by element. */
    size_t lead = 0;
    while (lead < n && strchr(" \t\r\n", s[lead]) && s[lead]) lead++;
    if (lead < n && s[lead] == '[') {
        m = (src){s, n, 0, step};
        emdpo_json_stream_reset(plain, src_read, &m);
        int got;
        size_t i = 0;
        while (!(src_rc = emdpo_json_stream_element(plain, &v, &got, &serr)) && got) {
            if (rc) continue; /* the whole parse failed further on */
            if (i >= root->len || !same(&root->u.elems[i], v, 0)) abort();
            i++;
        }
        if (!src_rc) src_rc = emdpo_json_stream_end(plain, &serr);
        if (src_rc != rc || (!rc && i != root->len)) abort();
        if (rc && (serr.offset != err.offset || strcmp(serr.msg, err.msg))) abort();
    }
    emdpo_json_stream_free(st);
    return 0;
}
