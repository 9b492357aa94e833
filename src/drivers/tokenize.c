/* emdpo tokenize's job (emdpo/lm.h's emdpo_tokenize_stream): JSON lines in,
 * JSON lines out, encoded or decoded in parallel a block of lines at a
 * time and written in input order. */
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/json.h"
#include "base/json_write.h"
#include "base/lines.h"
#include "base/threads.h"
#include "base/utf8.h"
#include "lm/io/tokenizer.h"

/* Lines per block: enough to keep every core busy, few enough that a
 * block's input and results stay small. */
#define BLOCK_LINES 4096
#define BLOCK_BYTES (8u << 20)

/* One line of a block: its text (in the block's buffer) and its result. */
typedef struct line {
    size_t off, len;
    long lineno;
    int rc;
    int *ids; /* encoded: n ids */
    size_t n;
    char *text; /* decoded: n bytes */
} line;

typedef struct block {
    char *buf;
    size_t len, cap;
    line *lines;
    size_t n, lines_cap;
} block;

static void block_clear(block *b) {
    for (size_t i = 0; i < b->n; i++) {
        line *l = &b->lines[i];
        emdpo_free(l->ids, l->n * sizeof *l->ids);
        if (l->text) emdpo_free(l->text, l->n + 1);
        l->ids = NULL;
        l->text = NULL;
    }
    b->n = 0;
    b->len = 0;
}

/* The work of one line; the message of a failure goes to diag. */
static int do_line(const emdpo_tokenizer *t, emdpo_json_doc *doc, const char *s, line *l, unsigned flags, int decode,
                   emdpo_diag *diag) {
    const emdpo_json *v;
    emdpo_json_error err;
    if (emdpo_line_is_blank(s, l->len))
        return emdpo_diag_parse(diag, l->lineno, "an empty line; expected %s", decode ? "an array of ids" : "a string");
    int rc = emdpo_json_parse(doc, s, l->len, &v, &err);
    if (rc == EMDPO_ERR_PARSE) return emdpo_diag_parse(diag, l->lineno, "byte %zu: %s", err.offset + 1, err.msg);
    if (rc) return rc;
    if (!decode) {
        if (v->type != EMDPO_JSON_STRING)
            return emdpo_diag_parse(diag, l->lineno, "a JSON %s; expected a string to encode (--decode reads arrays "
                                    "of ids)", emdpo_json_type_name(v->type));
        rc = emdpo_tokenizer_encode_alloc(t, v->u.str, v->len, flags, &l->ids, &l->n);
        if (rc == EMDPO_ERR_INVALID_ARG) return emdpo_diag_parse(diag, l->lineno, "the text is not valid UTF-8");
        return rc;
    }
    if (v->type != EMDPO_JSON_ARRAY)
        return emdpo_diag_parse(diag, l->lineno, "a JSON %s; expected an array of ids", emdpo_json_type_name(v->type));
    int V = emdpo_tokenizer_vocab_size(t);
    int *ids = v->len ? emdpo_malloc(v->len * sizeof *ids) : NULL;
    if (v->len && !ids) return EMDPO_ERR_NOMEM;
    for (size_t i = 0; i < v->len; i++) {
        const emdpo_json *x = &v->u.elems[i];
        if (!x->is_int || x->inum < 0 || x->inum >= V) {
            emdpo_free(ids, v->len * sizeof *ids);
            return emdpo_diag_parse(diag, l->lineno, "element %zu is not an id in 0..%d", i, V - 1);
        }
        ids[i] = (int)x->inum;
    }
    char *text;
    size_t len;
    rc = emdpo_tokenizer_decode_alloc(t, ids, v->len, &text, &len);
    emdpo_free(ids, v->len * sizeof *ids);
    if (rc) return rc;
    l->text = text;
    l->n = len;
    return EMDPO_OK;
}

/* Writes s[0..n) as a JSON string; bytes that are not UTF-8 (a
 * tokenizer.bin's byte pieces can end mid-character) as U+FFFD. */
static int write_text(FILE *out, const char *s, size_t n) {
    if (emdpo_utf8_invalid_at(s, n) == n) return emdpo_json_write_string_n(out, s, n);
    char *fixed = emdpo_malloc(3 * n + 1);
    if (!fixed) return EMDPO_ERR_NOMEM;
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = emdpo_utf8_seq_len(u + i, n - i);
        if (k) {
            memcpy(fixed + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(fixed + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    int rc = emdpo_json_write_string_n(out, fixed, o);
    emdpo_free(fixed, 3 * n + 1);
    return rc;
}

static int write_ids(FILE *out, const int *ids, size_t n) {
    char buf[4096];
    size_t k = 0;
    buf[k++] = '[';
    for (size_t i = 0; i < n; i++) {
        if (k > sizeof buf - 16) {
            if (fwrite(buf, 1, k, out) != k) return EMDPO_ERR_IO;
            k = 0;
        }
        if (i) buf[k++] = ',';
        char digits[12];
        int d = 0;
        unsigned v = (unsigned)ids[i];
        do digits[d++] = (char)('0' + v % 10);
        while ((v /= 10));
        while (d) buf[k++] = digits[--d];
    }
    buf[k++] = ']';
    buf[k++] = '\n';
    return fwrite(buf, 1, k, out) == k ? EMDPO_OK : EMDPO_ERR_IO;
}

/* Runs a block: every line in parallel, then the results in order. The
 * first failing line (in input order) decides the status. */
static int run_block(const emdpo_tokenizer *t, block *b, FILE *out, unsigned flags, int decode, emdpo_diag *diag) {
    int n_threads = emdpo_max_threads();
    if ((size_t)n_threads > b->n) n_threads = (int)(b->n ? b->n : 1);
    /* Each thread keeps its own first failure; the earliest of them wins. */
    emdpo_json_doc **docs = emdpo_calloc((size_t)n_threads, sizeof *docs);
    emdpo_diag *first = emdpo_calloc((size_t)n_threads, sizeof *first);
    long *bad_at = emdpo_calloc((size_t)n_threads, sizeof *bad_at);
    int rc = docs && first && bad_at ? EMDPO_OK : EMDPO_ERR_NOMEM;
    for (int i = 0; !rc && i < n_threads; i++) bad_at[i] = -1;
    for (int i = 0; !rc && i < n_threads; i++) rc = emdpo_json_doc_create(&docs[i]);
    if (!rc) {
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 8)
        for (long i = 0; i < (long)b->n; i++) {
            int th = emdpo_thread_num();
            line *l = &b->lines[i];
            emdpo_diag d;
            emdpo_diag_reset(&d, NULL);
            l->rc = do_line(t, docs[th], b->buf + l->off, l, flags, decode, &d);
            if (l->rc && (bad_at[th] < 0 || i < bad_at[th])) {
                bad_at[th] = i;
                first[th] = d;
            }
        }
        long bad = -1; /* the first failed line's index */
        int who = 0;
        for (int th = 0; th < n_threads; th++)
            if (bad_at[th] >= 0 && (bad < 0 || bad_at[th] < bad)) {
                bad = bad_at[th];
                who = th;
            }
        size_t upto = b->n; /* the lines before a failed one are still written */
        if (bad >= 0) {
            rc = b->lines[bad].rc;
            upto = (size_t)bad;
            if (diag) {
                diag->line = first[who].line;
                memcpy(diag->msg, first[who].msg, sizeof diag->msg);
            }
        }
        for (size_t i = 0; i < upto; i++) {
            int w = decode ? write_text(out, b->lines[i].text ? b->lines[i].text : "", b->lines[i].n)
                           : write_ids(out, b->lines[i].ids, b->lines[i].n);
            if (!w && decode && fputc('\n', out) == EOF) w = EMDPO_ERR_IO;
            if (w) {
                rc = w;
                if (w == EMDPO_ERR_IO) emdpo_diag_set(diag, 0, "cannot write the output");
                break;
            }
        }
    }
    for (int i = 0; docs && i < n_threads; i++) emdpo_json_doc_free(docs[i]);
    emdpo_free(docs, docs ? (size_t)n_threads * sizeof *docs : 0);
    emdpo_free(first, first ? (size_t)n_threads * sizeof *first : 0);
    emdpo_free(bad_at, bad_at ? (size_t)n_threads * sizeof *bad_at : 0);
    return rc;
}

int emdpo_tokenize_stream(const emdpo_tokenizer *t, FILE *in, FILE *out, unsigned flags, int decode,
                          emdpo_diag *diag) {
    emdpo_diag_reset(diag, "<stdin>");
    if (!t || !in || !out) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "NULL tokenizer or stream");
    emdpo_lines lr = {.fp = in};
    block b;
    memset(&b, 0, sizeof b);
    int rc = EMDPO_OK, got = 1;
    while (!rc && got) {
        block_clear(&b);
        while (b.n < BLOCK_LINES && b.len < BLOCK_BYTES) {
            if ((rc = emdpo_lines_next(&lr, &got)) || !got) break;
            if (emdpo_grow((void **)&b.buf, &b.cap, b.len + lr.len + 1, 1) ||
                emdpo_grow((void **)&b.lines, &b.lines_cap, b.n + 1, sizeof *b.lines)) {
                rc = EMDPO_ERR_NOMEM;
                break;
            }
            memcpy(b.buf + b.len, lr.buf, lr.len + 1);
            b.lines[b.n++] = (line){b.len, lr.len, lr.lineno, 0, NULL, 0, NULL};
            b.len += lr.len + 1;
        }
        if (rc == EMDPO_ERR_IO) emdpo_diag_set(diag, lr.lineno, "cannot read the input");
        if (!rc && b.n) rc = run_block(t, &b, out, flags, decode, diag);
    }
    if (!rc && fflush(out)) rc = emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot write the output");
    block_clear(&b);
    emdpo_free(b.buf, b.cap);
    emdpo_free(b.lines, b.lines_cap * sizeof *b.lines);
    emdpo_lines_free(&lr);
    return rc;
}
