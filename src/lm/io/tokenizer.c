#include "lm/io/tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "lm/io/hf_tok.h"

/* A text piece in the lookup index, which is sorted by bytes and then id so
 * that a binary search lands on the lowest id of a repeated piece. */
typedef struct piece_ref {
    const char *s;
    size_t len;
    int id;
} piece_ref;

struct emdpo_tokenizer {
    int vocab_size;
    int bos, eos, pad; /* -1: none */
    int *stop;         /* (n_stop) ids that end generation */
    size_t n_stop;
    emdpo_hf_tok *hf;  /* a Hugging Face pipeline; NULL for the llama2.c format below */
    float *score; /* (V) */
    size_t *off;  /* (V+1): piece i is bytes[off[i] .. off[i+1]) */
    char *bytes;
    size_t bytes_len;
    piece_ref *index; /* text pieces (ids >= 259, non-empty) */
    size_t n_index;
    char *source;     /* the path it was loaded from, or NULL */
};

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int32_t le_i32(const unsigned char *p) {
    uint32_t u = le32(p);
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static float le_f32(const unsigned char *p) {
    uint32_t u = le32(p);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Encoding maps byte b to id b + 3 and decoding maps it back without
 * looking at the piece, so the file must agree or both would be wrong. */
static int is_byte_piece(const unsigned char *s, size_t len, int byte) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return 0;
    int hi = hex_digit((char)s[3]), lo = hex_digit((char)s[4]);
    return hi >= 0 && lo >= 0 && hi * 16 + lo == byte;
}

static int cmp_piece(const void *pa, const void *pb) {
    const piece_ref *a = pa, *b = pb;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, n);
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Compares p[0..n) with the concatenation a[0..na) b[0..nb) without forming it. */
static int cmp_concat(const char *p, size_t n, const char *a, size_t na, const char *b, size_t nb) {
    size_t k = n < na ? n : na;
    int c = memcmp(p, a, k);
    if (c) return c;
    if (n < na) return -1;
    p += na;
    n -= na;
    k = n < nb ? n : nb;
    c = memcmp(p, b, k);
    if (c) return c;
    return (n > nb) - (n < nb);
}

/* The lowest id of the text piece a+b, or -1. */
static int lookup(const emdpo_tokenizer *t, const char *a, size_t na, const char *b, size_t nb) {
    size_t lo = 0, hi = t->n_index;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_concat(t->index[mid].s, t->index[mid].len, a, na, b, nb) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < t->n_index && cmp_concat(t->index[lo].s, t->index[lo].len, a, na, b, nb) == 0)
        return t->index[lo].id;
    return -1;
}

void emdpo_tokenizer_free(emdpo_tokenizer *t) {
    if (!t) return;
    size_t v = t->hf ? 0 : (size_t)t->vocab_size;
    emdpo_hf_tok_free(t->hf);
    emdpo_free(t->stop, t->n_stop * sizeof *t->stop);
    emdpo_free(t->score, v * sizeof *t->score);
    emdpo_free(t->off, t->off ? (v + 1) * sizeof *t->off : 0);
    emdpo_free(t->bytes, t->bytes_len);
    emdpo_free(t->index, t->n_index * sizeof *t->index);
    emdpo_strfree(t->source);
    emdpo_free(t, sizeof *t);
}

int emdpo_tokenizer_parse(const void *buf, size_t len, int vocab_size, const char *name,
                          emdpo_tokenizer **out, emdpo_diag *diag) {
    *out = NULL;
    emdpo_diag_reset(diag, name);
    if (vocab_size < EMDPO_TOK_MIN_VOCAB)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG,
                    "vocabulary size %d is below %d (3 control ids and 256 byte-fallback ids)",
                    vocab_size, EMDPO_TOK_MIN_VOCAB);
    const unsigned char *p = buf;
    if (len < 4)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                    "file is %zu bytes, too short for the int32 max_token_length header", len);
    int32_t max_len = le_i32(p);
    if (max_len < 1 || max_len > EMDPO_TOK_MAX_PIECE)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "max_token_length %ld at byte offset 0 is outside 1..%d",
                    (long)max_len, EMDPO_TOK_MAX_PIECE);

    /* Validate everything before allocating anything sized by the file. */
    size_t pos = 4, total = 0, n_text = 0;
    for (int i = 0; i < vocab_size; i++) {
        if (len - pos < 8)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                        "truncated: the file ends at byte %zu inside the header of entry %d, but "
                        "the vocabulary size calls for %d entries",
                        len, i, vocab_size);
        float score = le_f32(p + pos);
        int32_t n = le_i32(p + pos + 4);
        if (!isfinite(score))
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "entry %d (byte offset %zu) has a non-finite score", i,
                        pos);
        if (n < 0 || n > max_len)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                        "entry %d (byte offset %zu) has length %ld, outside 0..max_token_length=%ld",
                        i, pos, (long)n, (long)max_len);
        pos += 8;
        if (len - pos < (size_t)n)
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                        "truncated: entry %d needs %ld bytes at byte offset %zu but the file ends at "
                        "byte %zu",
                        i, (long)n, pos, len);
        if (i >= EMDPO_TOK_BYTE0 && i < EMDPO_TOK_MIN_VOCAB &&
            !is_byte_piece(p + pos, (size_t)n, i - EMDPO_TOK_BYTE0))
            return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                        "entry %d (byte offset %zu) should be the byte-fallback piece <0x%02X>", i,
                        pos - 8, (unsigned)(i - EMDPO_TOK_BYTE0));
        if (i >= EMDPO_TOK_MIN_VOCAB && n > 0) n_text++;
        pos += (size_t)n;
        total += (size_t)n;
    }
    if (pos != len)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE,
                    "%zu bytes remain after the %d entries of the vocabulary size (byte offset %zu): "
                    "the file is for a larger vocabulary or corrupt",
                    len - pos, vocab_size, pos);

    emdpo_tokenizer *t = emdpo_calloc(1, sizeof *t);
    if (!t) return EMDPO_ERR_NOMEM;
    size_t v = (size_t)vocab_size;
    t->vocab_size = vocab_size;
    t->bos = EMDPO_TOK_BOS;
    t->eos = EMDPO_TOK_EOS;
    t->pad = -1;
    static const int stop[] = {EMDPO_TOK_EOS, EMDPO_TOK_BOS};
    if (emdpo_tokenizer_set_stop(t, stop, 2)) {
        emdpo_tokenizer_free(t);
        return EMDPO_ERR_NOMEM;
    }
    t->score = emdpo_malloc(v * sizeof *t->score);
    t->off = emdpo_malloc((v + 1) * sizeof *t->off);
    /* One spare byte keeps the allocation non-empty for all-empty vocabularies. */
    t->bytes_len = total + 1;
    t->bytes = emdpo_malloc(t->bytes_len);
    t->n_index = n_text;
    t->index = n_text ? emdpo_malloc(n_text * sizeof *t->index) : NULL;
    if (!t->score || !t->off || !t->bytes || (n_text && !t->index)) {
        emdpo_tokenizer_free(t);
        return EMDPO_ERR_NOMEM;
    }
    pos = 4;
    size_t o = 0, k = 0;
    for (size_t i = 0; i < v; i++) {
        size_t n = (size_t)le_i32(p + pos + 4);
        t->score[i] = le_f32(p + pos);
        t->off[i] = o;
        memcpy(t->bytes + o, p + pos + 8, n);
        if (i >= EMDPO_TOK_MIN_VOCAB && n > 0)
            t->index[k++] = (piece_ref){t->bytes + o, n, (int)i};
        o += n;
        pos += 8 + n;
    }
    t->off[v] = o;
    if (n_text) qsort(t->index, n_text, sizeof *t->index, cmp_piece);
    *out = t;
    return EMDPO_OK;
}

int emdpo_tokenizer_decode_alloc(const emdpo_tokenizer *t, const int *ids, size_t n, char **out, size_t *len) {
    *out = NULL;
    if (t->hf) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= t->vocab_size) return EMDPO_ERR_INVALID_ARG;
        return emdpo_hf_tok_decode(t->hf, ids, n, out, len);
    }
    int rc = emdpo_tokenizer_decode(t, ids, n, NULL, 0, len);
    if (rc && rc != EMDPO_ERR_LIMIT) return rc;
    if (!(*out = emdpo_malloc(*len + 1))) return EMDPO_ERR_NOMEM;
    if ((rc = emdpo_tokenizer_decode(t, ids, n, *out, *len + 1, len))) {
        emdpo_free(*out, *len + 1);
        *out = NULL;
    }
    return rc;
}

int emdpo_tokenizer_set_source(emdpo_tokenizer *t, const char *path) {
    char *s = emdpo_strdup(path);
    if (!s) return EMDPO_ERR_NOMEM;
    emdpo_strfree(t->source);
    t->source = s;
    return EMDPO_OK;
}

const char *emdpo_tokenizer_source(const emdpo_tokenizer *t) { return t ? t->source : NULL; }

int emdpo_tokenizer_vocab_size(const emdpo_tokenizer *t) { return t ? t->vocab_size : 0; }

int emdpo_tokenizer_is_hf(const emdpo_tokenizer *t) { return t && t->hf; }

int emdpo_tokenizer_bos(const emdpo_tokenizer *t) { return t ? t->bos : -1; }
int emdpo_tokenizer_eos(const emdpo_tokenizer *t) { return t ? t->eos : -1; }
int emdpo_tokenizer_pad(const emdpo_tokenizer *t) { return t ? t->pad : -1; }

size_t emdpo_tokenizer_stop_ids(const emdpo_tokenizer *t, const int **ids) {
    if (ids) *ids = t ? t->stop : NULL;
    return t ? t->n_stop : 0;
}

void emdpo_tokenizer_stop_sampler(const emdpo_tokenizer *t, emdpo_sampler *s) {
    emdpo_sampler_set_stop(s, t->stop, t->n_stop);
}

int emdpo_tokenizer_set_stop(emdpo_tokenizer *t, const int *ids, size_t n) {
    int *s = n ? emdpo_malloc(n * sizeof *s) : NULL;
    if (n && !s) return EMDPO_ERR_NOMEM;
    if (n) memcpy(s, ids, n * sizeof *s);
    emdpo_free(t->stop, t->n_stop * sizeof *t->stop);
    t->stop = s;
    t->n_stop = n;
    return EMDPO_OK;
}

int emdpo_tokenizer_from_hf(emdpo_hf_tok *hf, int bos, int eos, int pad, emdpo_tokenizer **out) {
    *out = NULL;
    emdpo_tokenizer *t = emdpo_calloc(1, sizeof *t);
    if (!t) {
        emdpo_hf_tok_free(hf);
        return EMDPO_ERR_NOMEM;
    }
    t->hf = hf;
    t->vocab_size = emdpo_hf_tok_n_ids(hf);
    t->bos = bos;
    t->eos = eos;
    t->pad = pad;
    if (eos >= 0 && emdpo_tokenizer_set_stop(t, &eos, 1)) {
        emdpo_tokenizer_free(t);
        return EMDPO_ERR_NOMEM;
    }
    *out = t;
    return EMDPO_OK;
}

const char *emdpo_tokenizer_piece(const emdpo_tokenizer *t, int id, size_t *len) {
    if (t->hf) return emdpo_hf_tok_piece(t->hf, id, len);
    if (id < 0 || id >= t->vocab_size) return NULL;
    *len = t->off[id + 1] - t->off[id];
    return t->bytes + t->off[id];
}

float emdpo_tokenizer_score(const emdpo_tokenizer *t, int id) {
    return !t->hf && id >= 0 && id < t->vocab_size ? t->score[id] : 0.0f;
}

/* The Hugging Face pipeline's encode: its ids, with BOS / EOS around them
 * when asked and the tokenizer has them. */
static int hf_encode(const emdpo_tokenizer *t, const char *text, size_t len, unsigned flags, int **ids, size_t *n) {
    int *body;
    size_t nb;
    int rc = emdpo_hf_tok_encode(t->hf, text, len, (flags & EMDPO_TOK_SPECIAL) != 0, (flags & EMDPO_TOK_NO_PREFIX) != 0,
                                 &body, &nb);
    if (rc) return rc;
    /* A chat template's text already starts with BOS: no second one. */
    int bos = (flags & EMDPO_TOK_ADD_BOS) && t->bos >= 0 && !(nb > 0 && body[0] == t->bos);
    int eos = (flags & EMDPO_TOK_ADD_EOS) && t->eos >= 0;
    if (!bos && !eos) { /* the pipeline's own array, exactly nb long */
        *ids = body;
        *n = nb;
        return EMDPO_OK;
    }
    *n = nb + (size_t)bos + (size_t)eos;
    *ids = *n ? emdpo_malloc(*n * sizeof **ids) : NULL;
    if (*n && !*ids) {
        emdpo_free(body, nb * sizeof *body);
        return EMDPO_ERR_NOMEM;
    }
    if (bos) (*ids)[0] = t->bos;
    if (nb) memcpy(*ids + bos, body, nb * sizeof *body);
    if (eos) (*ids)[*n - 1] = t->eos;
    emdpo_free(body, nb * sizeof *body);
    return EMDPO_OK;
}

int emdpo_tokenizer_encode_alloc(const emdpo_tokenizer *t, const char *text, size_t len, unsigned flags, int **ids,
                                 size_t *n) {
    if (!ids || !n) return EMDPO_ERR_INVALID_ARG;
    *ids = NULL;
    *n = 0;
    if (!t || (!text && len)) return EMDPO_ERR_INVALID_ARG;
    if (t->hf) return hf_encode(t, text, len, flags, ids, n);
    size_t cap = emdpo_tokenizer_encode_bound(len);
    if (cap > SIZE_MAX / sizeof **ids) return EMDPO_ERR_NOMEM;
    int *v = emdpo_malloc(cap * sizeof *v);
    if (!v) return EMDPO_ERR_NOMEM;
    size_t got;
    int rc = emdpo_tokenizer_encode(t, text, len, flags, v, cap, &got);
    int *fit = rc || got == cap ? v : got ? emdpo_realloc(v, cap * sizeof *v, got * sizeof *v) : NULL;
    if (!rc && got && !fit) rc = EMDPO_ERR_NOMEM;
    if (rc || !got) {
        emdpo_free(v, cap * sizeof *v);
        return rc;
    }
    *ids = fit;
    *n = got;
    return EMDPO_OK;
}

void emdpo_ids_free(int *ids, size_t n) { emdpo_free(ids, n * sizeof *ids); }

size_t emdpo_tokenizer_encode_bound(size_t len) {
    /* At most one token per byte, plus the dummy prefix, BOS and EOS. */
    return len > SIZE_MAX - 3 ? SIZE_MAX : len + 3;
}

#define NIL SIZE_MAX

/* A symbol of the text being merged: a doubly linked list over the array,
 * in text order, so a node's index orders it against the others. */
typedef struct node {
    int id;
    size_t prev, next;
} node;

/* A candidate merge of nodes left and right (adjacent, with these ids when
 * pushed); stale once either side has changed. */
typedef struct cand {
    float score;
    int id;
    int left_id, right_id;
    size_t left, right;
} cand;

typedef struct encoder {
    const emdpo_tokenizer *t;
    node *nodes;
    size_t n_nodes;
    cand *heap;
    size_t n_heap;
} encoder;

/* The pair merged first: highest score, then leftmost, as llama2.c scans. */
static int better(const cand *a, const cand *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(encoder *e, cand c) {
    size_t i = e->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!better(&c, &e->heap[parent])) break;
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = c;
}

static cand heap_pop(encoder *e) {
    cand top = e->heap[0], last = e->heap[--e->n_heap];
    size_t i = 0, n = e->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && better(&e->heap[c + 1], &e->heap[c])) c++;
        if (!better(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

static void push_pair(encoder *e, size_t left) {
    if (left == NIL) return;
    size_t right = e->nodes[left].next;
    if (right == NIL) return;
    const emdpo_tokenizer *t = e->t;
    int a = e->nodes[left].id, b = e->nodes[right].id;
    /* llama2.c would look up "<0xE4><0xB8>" here, which no real vocabulary
     * has; a hostile one could, and decoding it would not give the bytes. */
    if (a < EMDPO_TOK_MIN_VOCAB || b < EMDPO_TOK_MIN_VOCAB) return;
    int id = lookup(t, t->bytes + t->off[a], t->off[a + 1] - t->off[a], t->bytes + t->off[b],
                    t->off[b + 1] - t->off[b]);
    if (id >= 0) heap_push(e, (cand){t->score[id], id, a, b, left, right});
}

static void add_node(encoder *e, int id) {
    size_t i = e->n_nodes++;
    e->nodes[i] = (node){id, i ? i - 1 : NIL, NIL};
    if (i) e->nodes[i - 1].next = i;
}

/* One code point (or a stray run of continuation bytes), as llama2.c
 * groups them: its piece if there is one, else one byte-fallback id per byte. */
static void add_chunk(encoder *e, const unsigned char *s, size_t n) {
    static const char empty[1] = "";
    int id = lookup(e->t, (const char *)s, n, empty, 0);
    if (id >= 0) {
        add_node(e, id);
        return;
    }
    for (size_t i = 0; i < n; i++) add_node(e, EMDPO_TOK_BYTE0 + s[i]);
}

int emdpo_tokenizer_encode(const emdpo_tokenizer *t, const char *text, size_t len, unsigned flags,
                           int *ids, size_t cap, size_t *n_ids) {
    if (!t || !n_ids || (!text && len) || (!ids && cap)) return EMDPO_ERR_INVALID_ARG;
    *n_ids = 0;
    if (t->hf) {
        int *v;
        size_t n;
        int rc = hf_encode(t, text, len, flags, &v, &n);
        if (rc) return rc;
        if (n && cap) memcpy(ids, v, (n < cap ? n : cap) * sizeof *v);
        emdpo_free(v, n * sizeof *v);
        *n_ids = n;
        return n > cap ? EMDPO_ERR_LIMIT : EMDPO_OK;
    }
    if (flags & EMDPO_TOK_SPECIAL) flags |= EMDPO_TOK_ADD_BOS; /* SentencePiece's own default */
    int prefix = len > 0 && !(flags & EMDPO_TOK_NO_PREFIX);
    size_t max_nodes = len + (size_t)prefix;
    if (max_nodes > SIZE_MAX / (3 * sizeof(cand))) return EMDPO_ERR_NOMEM;
    encoder e = {t, NULL, 0, NULL, 0};
    if (max_nodes) {
        e.nodes = emdpo_malloc(max_nodes * sizeof *e.nodes);
        /* Each merge removes a node and pushes at most two candidates. */
        e.heap = emdpo_malloc(3 * max_nodes * sizeof *e.heap);
        if (!e.nodes || !e.heap) {
            emdpo_free(e.nodes, max_nodes * sizeof *e.nodes);
            emdpo_free(e.heap, 3 * max_nodes * sizeof *e.heap);
            return EMDPO_ERR_NOMEM;
        }
    }
    if (prefix) add_chunk(&e, (const unsigned char *)" ", 1);
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t j = i + 1;
        while (j < len && j - i < 4 && (s[j] & 0xC0) == 0x80) j++;
        add_chunk(&e, s + i, j - i);
        i = j;
    }
    for (size_t i = 0; i < e.n_nodes; i++) push_pair(&e, i);
    while (e.n_heap) {
        cand c = heap_pop(&e);
        node *l = &e.nodes[c.left], *r = &e.nodes[c.right];
        if (l->next != c.right || l->id != c.left_id || r->id != c.right_id) continue;
        l->id = c.id;
        l->next = r->next;
        if (r->next != NIL) e.nodes[r->next].prev = c.left;
        r->id = -1; /* unlinked: no candidate can match it again */
        push_pair(&e, l->prev);
        push_pair(&e, c.left);
    }
    size_t n = 0;
    if (flags & EMDPO_TOK_ADD_BOS) {
        if (n < cap) ids[n] = EMDPO_TOK_BOS;
        n++;
    }
    for (size_t i = e.n_nodes ? 0 : NIL; i != NIL; i = e.nodes[i].next) {
        if (n < cap) ids[n] = e.nodes[i].id;
        n++;
    }
    if (flags & EMDPO_TOK_ADD_EOS) {
        if (n < cap) ids[n] = EMDPO_TOK_EOS;
        n++;
    }
    emdpo_free(e.nodes, max_nodes * sizeof *e.nodes);
    emdpo_free(e.heap, 3 * max_nodes * sizeof *e.heap);
    *n_ids = n;
    return n > cap ? EMDPO_ERR_LIMIT : EMDPO_OK;
}

int emdpo_tokenizer_decode(const emdpo_tokenizer *t, const int *ids, size_t n, char *out, size_t cap,
                           size_t *len) {
    if (!t || !len || (!ids && n) || (!out && cap)) return EMDPO_ERR_INVALID_ARG;
    *len = 0;
    if (t->hf) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= t->vocab_size) return EMDPO_ERR_INVALID_ARG;
        char *s;
        size_t k;
        int rc = emdpo_hf_tok_decode(t->hf, ids, n, &s, &k);
        if (rc) return rc;
        if (cap) memcpy(out, s, k < cap ? k : cap);
        emdpo_free(s, k + 1);
        *len = k;
        if (k >= cap) return EMDPO_ERR_LIMIT;
        out[k] = 0;
        return EMDPO_OK;
    }
    size_t total = 0;
    int prev = -1;
    for (size_t i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->vocab_size) return EMDPO_ERR_INVALID_ARG;
        const char *s;
        size_t k;
        char byte;
        if (id < EMDPO_TOK_BYTE0) {
            k = 0;
            s = NULL;
        } else if (id < EMDPO_TOK_MIN_VOCAB) {
            byte = (char)(unsigned char)(id - EMDPO_TOK_BYTE0);
            s = &byte;
            k = 1;
        } else {
            s = t->bytes + t->off[id];
            k = t->off[id + 1] - t->off[id];
        }
        if (prev == EMDPO_TOK_BOS && k > 0 && s[0] == ' ') {
            s++;
            k--;
        }
        prev = id;
        if (total < cap && k) memcpy(out + total, s, k < cap - total ? k : cap - total);
        total += k;
    }
    *len = total;
    if (total >= cap) return EMDPO_ERR_LIMIT;
    out[total] = 0;
    return EMDPO_OK;
}
