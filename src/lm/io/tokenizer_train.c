#include "lm/io/tokenizer_train.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/hash.h"
#include "lm/io/tokenizer.h"

/* Symbols are indices into a table of pieces (byte strings); NOT_MERGEABLE
 * stands for a chunk left to byte fallback. */
#define NOT_MERGEABLE (-1)

typedef struct piece_table {
    char **s;
    size_t *len;
    int64_t *count; /* base pieces: occurrences, for choosing which to keep */
    int n, cap;
} piece_table;

/* Distinct words with their counts and current symbol sequences. */
typedef struct word_table {
    int64_t n, cap;
    const char **start; /* (n) first byte of the word's first occurrence */
    size_t *bytes;      /* (n) */
    int64_t *count;     /* (n) */
    int64_t *sym_off;   /* (n) into sym */
    int *sym_len;       /* (n), shrinks as pairs merge */
    int *sym;           /* (total chunks) */
    int64_t n_sym;
    int64_t *slot; /* hash slots -> word index, -1 empty */
    int64_t n_slot;
} word_table;

/* The chunk at s: a byte and the continuation bytes after it, at most 4,
 * exactly as emdpo_tokenizer_encode cuts text. */
static size_t chunk_len(const unsigned char *s, size_t n) {
    size_t j = 1;
    while (j < n && j < 4 && (s[j] & 0xC0) == 0x80) j++;
    return j;
}

/* A chunk that is one well-formed UTF-8 sequence can be a piece; anything
 * else stays byte fallback. */
static int chunk_is_utf8(const unsigned char *s, size_t n) {
    size_t want = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    return want == n && (s[0] >= 0x80 || s[0] != 0);
}

static int piece_find(const piece_table *p, const char *s, size_t n) {
    for (int i = 0; i < p->n; i++)
        if (p->len[i] == n && memcmp(p->s[i], s, n) == 0) return i;
    return -1;
}

static int piece_add(piece_table *p, const char *s, size_t n) {
    if (p->n == p->cap) {
        int nc = p->cap ? 2 * p->cap : 256;
        void **const arrays[] = {(void **)&p->s, (void **)&p->len, (void **)&p->count};
        const size_t elem[] = {sizeof *p->s, sizeof *p->len, sizeof *p->count};
        if (emdpo_resize_parallel(arrays, elem, 3, (size_t)p->cap, (size_t)nc)) return EMDPO_ERR_NOMEM;
        p->cap = nc;
    }
    char *c = emdpo_malloc(n + 1);
    if (!c) return EMDPO_ERR_NOMEM;
    memcpy(c, s, n);
    c[n] = 0;
    p->s[p->n] = c;
    p->len[p->n] = n;
    p->count[p->n] = 0;
    p->n++;
    return EMDPO_OK;
}

static void piece_table_free(piece_table *p) {
    for (int i = 0; i < p->n; i++) emdpo_free(p->s[i], p->len[i] + 1);
    emdpo_free(p->s, (size_t)p->cap * sizeof *p->s);
    emdpo_free(p->len, (size_t)p->cap * sizeof *p->len);
    emdpo_free(p->count, (size_t)p->cap * sizeof *p->count);
}

static void word_table_free(word_table *w) {
    size_t c = (size_t)w->cap;
    emdpo_free(w->start, c * sizeof *w->start);
    emdpo_free(w->bytes, c * sizeof *w->bytes);
    emdpo_free(w->count, c * sizeof *w->count);
    emdpo_free(w->sym_off, c * sizeof *w->sym_off);
    emdpo_free(w->sym_len, c * sizeof *w->sym_len);
    emdpo_free(w->sym, (size_t)w->n_sym * sizeof *w->sym);
    emdpo_free(w->slot, (size_t)w->n_slot * sizeof *w->slot);
}

static int words_grow(word_table *w) {
    int64_t nc = w->cap ? 2 * w->cap : 1024;
    void **const arrays[] = {(void **)&w->start, (void **)&w->bytes, (void **)&w->count, (void **)&w->sym_off,
                             (void **)&w->sym_len};
    const size_t elem[] = {sizeof *w->start, sizeof *w->bytes, sizeof *w->count, sizeof *w->sym_off,
                           sizeof *w->sym_len};
    if (emdpo_resize_parallel(arrays, elem, 5, (size_t)w->cap, (size_t)nc)) return EMDPO_ERR_NOMEM;
    w->cap = nc;
    return EMDPO_OK;
}

/* Rebuilds the hash index for 2 * cap slots. */
static int words_rehash(word_table *w) {
    int64_t ns = 2 * w->cap;
    int64_t *slot = emdpo_malloc((size_t)ns * sizeof *slot);
    if (!slot) return EMDPO_ERR_NOMEM;
    for (int64_t i = 0; i < ns; i++) slot[i] = -1;
    for (int64_t i = 0; i < w->n; i++) {
        uint64_t h = emdpo_hash_bytes(w->start[i], w->bytes[i]) & (uint64_t)(ns - 1);
        while (slot[h] >= 0) h = (h + 1) & (uint64_t)(ns - 1);
        slot[h] = i;
    }
    emdpo_free(w->slot, (size_t)w->n_slot * sizeof *w->slot);
    w->slot = slot;
    w->n_slot = ns;
    return EMDPO_OK;
}

static int word_add(word_table *w, const char *s, size_t n) {
    if (w->n_slot) {
        uint64_t h = emdpo_hash_bytes(s, n) & (uint64_t)(w->n_slot - 1);
        for (; w->slot[h] >= 0; h = (h + 1) & (uint64_t)(w->n_slot - 1)) {
            int64_t i = w->slot[h];
            if (w->bytes[i] == n && memcmp(w->start[i], s, n) == 0) {
                w->count[i]++;
                return EMDPO_OK;
            }
        }
    }
    int rc;
    if (w->n == w->cap && ((rc = words_grow(w)) || (rc = words_rehash(w)))) return rc;
    w->start[w->n] = s;
    w->bytes[w->n] = n;
    w->count[w->n] = 1;
    w->n++;
    /* The new word goes into its slot; rehashing placed only the old ones. */
    uint64_t h = emdpo_hash_bytes(s, n) & (uint64_t)(w->n_slot - 1);
    while (w->slot[h] >= 0 && w->slot[h] != w->n - 1) h = (h + 1) & (uint64_t)(w->n_slot - 1);
    w->slot[h] = w->n - 1;
    return EMDPO_OK;
}

/* Splits corpus (the texts, each with its prefix space, concatenated) into
 * words: a word runs from a space to the byte before the next one. */
static int split_words(word_table *w, const char *corpus, size_t len) {
    int rc;
    for (size_t i = 0; i < len;) {
        size_t j = i + 1;
        while (j < len && corpus[j] != ' ') j++;
        if ((rc = word_add(w, corpus + i, j - i))) return rc;
        i = j;
    }
    return EMDPO_OK;
}

/* An open-addressing map from a 64-bit key to a count; EMPTY marks a free
 * slot. */
#define EMPTY UINT64_MAX
typedef struct count_map {
    uint64_t *key;
    int64_t *val;
    int64_t cap; /* a power of two */
} count_map;

static int count_map_init(count_map *m, int64_t min_cap) {
    m->cap = 64;
    while (m->cap < 2 * min_cap) m->cap *= 2;
    m->key = emdpo_malloc((size_t)m->cap * sizeof *m->key);
    m->val = emdpo_calloc((size_t)m->cap, sizeof *m->val);
    if (!m->key || !m->val) return EMDPO_ERR_NOMEM;
    for (int64_t i = 0; i < m->cap; i++) m->key[i] = EMPTY;
    return EMDPO_OK;
}

static void count_map_clear(count_map *m) {
    for (int64_t i = 0; i < m->cap; i++) {
        m->key[i] = EMPTY;
        m->val[i] = 0;
    }
}

static void count_map_free(count_map *m) {
    emdpo_free(m->key, (size_t)m->cap * sizeof *m->key);
    emdpo_free(m->val, (size_t)m->cap * sizeof *m->val);
}

/* Adds c to key's count; the map never fills since min_cap bounds the keys. */
static void count_map_add(count_map *m, uint64_t key, int64_t c) {
    uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 7 & (uint64_t)(m->cap - 1);
    while (m->key[h] != EMPTY && m->key[h] != key) h = (h + 1) & (uint64_t)(m->cap - 1);
    m->key[h] = key;
    m->val[h] += c;
}

/* -1, 0, 1 as piece a's bytes followed by b's sort before, with or after
 * c's followed by d's: lexicographic, then shorter first, then (equal
 * concatenations from different splits) the shorter left piece first. */
static int concat_cmp(const piece_table *p, int a, int b, int c, int d) {
    size_t la = p->len[a], lb = p->len[b], lc = p->len[c], ld = p->len[d];
    size_t n1 = la + lb, n2 = lc + ld, n = n1 < n2 ? n1 : n2;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)(i < la ? p->s[a][i] : p->s[b][i - la]);
        unsigned char y = (unsigned char)(i < lc ? p->s[c][i] : p->s[d][i - lc]);
        if (x != y) return x < y ? -1 : 1;
    }
    if (n1 != n2) return n1 < n2 ? -1 : 1;
    return (la > lc) - (la < lc);
}

/* Bytewise order of two pieces, shorter first on a common prefix. */
static int piece_cmp(const piece_table *p, int a, int b) {
    size_t n = p->len[a] < p->len[b] ? p->len[a] : p->len[b];
    int c = memcmp(p->s[a], p->s[b], n);
    if (c) return c;
    return (p->len[a] > p->len[b]) - (p->len[a] < p->len[b]);
}

/* Cuts every word into chunks, makes the `room` most frequent UTF-8 chunks
 * the base pieces in order of frequency (the rest NOT_MERGEABLE) and fills
 * w->sym. */
static int base_pieces(word_table *w, piece_table *p, int room) {
    int64_t total = 0;
    for (int64_t i = 0; i < w->n; i++) {
        const unsigned char *s = (const unsigned char *)w->start[i];
        for (size_t k = 0; k < w->bytes[i]; k += chunk_len(s + k, w->bytes[i] - k)) total++;
    }
    w->sym = emdpo_malloc((size_t)total * sizeof *w->sym);
    if (!w->sym) return EMDPO_ERR_NOMEM;
    w->n_sym = total;
    int rc = EMDPO_OK;
    int64_t at = 0;
    for (int64_t i = 0; i < w->n && !rc; i++) {
        const unsigned char *s = (const unsigned char *)w->start[i];
        w->sym_off[i] = at;
        w->sym_len[i] = 0;
        for (size_t k = 0; k < w->bytes[i] && !rc;) {
            size_t c = chunk_len(s + k, w->bytes[i] - k);
            int id = NOT_MERGEABLE;
            if (chunk_is_utf8(s + k, c)) {
                id = piece_find(p, (const char *)s + k, c);
                if (id < 0 && !(rc = piece_add(p, (const char *)s + k, c))) id = p->n - 1;
                if (id >= 0) p->count[id] += w->count[i];
            }
            w->sym[at++] = id;
            w->sym_len[i]++;
            k += c;
        }
    }
    if (rc || p->n == 0) return rc;
    /* Order by frequency (ties: bytes) and keep the first `room`. */
    int n_all = p->n;
    if (room > n_all) room = n_all;
    int *order = emdpo_malloc((size_t)n_all * sizeof *order), *remap = emdpo_malloc((size_t)n_all * sizeof *remap);
    if (!order || !remap) rc = EMDPO_ERR_NOMEM;
    for (int i = 0; !rc && i < p->n; i++) order[i] = i;
    for (int i = 1; !rc && i < p->n; i++) { /* insertion sort: base sets are small */
        int x = order[i], j = i;
        while (j > 0) {
            int y = order[j - 1];
            int before = p->count[x] > p->count[y] ||
                         (p->count[x] == p->count[y] && piece_cmp(p, x, y) < 0);
            if (!before) break;
            order[j] = y;
            j--;
        }
        order[j] = x;
    }
    if (!rc) {
        for (int i = 0; i < n_all; i++) remap[order[i]] = i < room ? i : NOT_MERGEABLE;
        for (int64_t k = 0; k < w->n_sym; k++)
            if (w->sym[k] >= 0) w->sym[k] = remap[w->sym[k]];
        /* Reorder the table to match the new ids; drop the tail. */
        char **s2 = emdpo_malloc((size_t)room * sizeof *s2);
        size_t *l2 = emdpo_malloc((size_t)room * sizeof *l2);
        int64_t *c2 = emdpo_malloc((size_t)room * sizeof *c2);
        if (!s2 || !l2 || !c2) rc = EMDPO_ERR_NOMEM;
        for (int i = 0; !rc && i < n_all; i++) {
            int o = order[i];
            if (i < room) {
                s2[i] = p->s[o];
                l2[i] = p->len[o];
                c2[i] = p->count[o];
            } else {
                emdpo_free(p->s[o], p->len[o] + 1);
            }
        }
        if (!rc) {
            emdpo_free(p->s, (size_t)p->cap * sizeof *p->s);
            emdpo_free(p->len, (size_t)p->cap * sizeof *p->len);
            emdpo_free(p->count, (size_t)p->cap * sizeof *p->count);
            p->s = s2;
            p->len = l2;
            p->count = c2;
            p->n = p->cap = room;
        } else {
            emdpo_free(s2, (size_t)room * sizeof *s2);
            emdpo_free(l2, (size_t)room * sizeof *l2);
            emdpo_free(c2, (size_t)room * sizeof *c2);
        }
    }
    emdpo_free(order, (size_t)n_all * sizeof *order);
    emdpo_free(remap, (size_t)n_all * sizeof *remap);
    return rc;
}

/* The most frequent adjacent pair of mergeable symbols (ties: concat_cmp);
 * 0 when none occurs min_count times. */
static int best_pair(const word_table *w, const piece_table *p, count_map *m, int64_t min_count, int *a, int *b) {
    count_map_clear(m);
    for (int64_t i = 0; i < w->n; i++) {
        const int *s = w->sym + w->sym_off[i];
        for (int k = 0; k + 1 < w->sym_len[i]; k++)
            if (s[k] >= 0 && s[k + 1] >= 0)
                count_map_add(m, (uint64_t)(uint32_t)s[k] << 32 | (uint32_t)s[k + 1], w->count[i]);
    }
    int64_t best = 0;
    for (int64_t h = 0; h < m->cap; h++) {
        if (m->key[h] == EMPTY || m->val[h] < min_count || m->val[h] < best) continue;
        int x = (int)(m->key[h] >> 32), y = (int)(m->key[h] & 0xFFFFFFFFu);
        if (m->val[h] > best || concat_cmp(p, x, y, *a, *b) < 0) {
            best = m->val[h];
            *a = x;
            *b = y;
        }
    }
    return best > 0;
}

/* Replaces each occurrence of the pair (a, b) by c, left to right. */
static void apply_merge(word_table *w, int a, int b, int c) {
    for (int64_t i = 0; i < w->n; i++) {
        int *s = w->sym + w->sym_off[i], n = w->sym_len[i], out = 0;
        for (int k = 0; k < n; k++) {
            if (k + 1 < n && s[k] == a && s[k + 1] == b) {
                s[out++] = c;
                k++;
            } else {
                s[out++] = s[k];
            }
        }
        w->sym_len[i] = out;
    }
}

static void put_u32(unsigned char *at, uint32_t v) {
    for (int i = 0; i < 4; i++) at[i] = (unsigned char)(v >> (8 * i));
}

static void put_f32(unsigned char *at, float f) {
    uint32_t v;
    memcpy(&v, &f, sizeof v);
    put_u32(at, v);
}

/* tokenizer.bin: the control and byte pieces, then p's pieces; base pieces
 * (the first n_base) score below every merge, merge j scores -j. */
static int serialise(const piece_table *p, int n_base, void **buf, size_t *len) {
    static const char *const control[3] = {"<unk>", "\n<s>\n", "\n</s>\n"};
    int n_merge = p->n - n_base;
    size_t bytes = 4, max_len = 6;
    for (int i = 0; i < 3; i++) bytes += 8 + strlen(control[i]);
    bytes += 256 * (8 + 6);
    for (int i = 0; i < p->n; i++) {
        bytes += 8 + p->len[i];
        if (p->len[i] > max_len) max_len = p->len[i];
    }
    unsigned char *b = emdpo_malloc(bytes), *at = b;
    if (!b) return EMDPO_ERR_NOMEM;
    put_u32(at, (uint32_t)max_len);
    at += 4;
    for (int i = 0; i < 3 + 256 + p->n; i++) {
        char hex[8];
        const char *s;
        size_t n;
        float score = 0;
        if (i < 3) {
            s = control[i];
            n = strlen(s);
        } else if (i < 3 + 256) {
            snprintf(hex, sizeof hex, "<0x%02X>", i - 3);
            s = hex;
            n = 6;
        } else {
            int j = i - 3 - 256;
            s = p->s[j];
            n = p->len[j];
            score = j < n_base ? -(float)(n_merge + j) : -(float)(j - n_base);
        }
        put_f32(at, score);
        put_u32(at + 4, (uint32_t)n);
        memcpy(at + 8, s, n);
        at += 8 + n;
    }
    *buf = b;
    *len = bytes;
    return EMDPO_OK;
}

void emdpo_bpe_opts_init(emdpo_bpe_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->vocab_size = 512;
    o->min_count = 2;
}

int emdpo_tokenizer_train(const char *const *text, const size_t *len, int64_t n, const emdpo_bpe_opts *o,
                          void **buf, size_t *buf_len, int *n_entries, emdpo_diag *diag) {
    *buf = NULL;
    *buf_len = 0;
    *n_entries = 0;
    int vocab_size = o->vocab_size, min_count = o->min_count;
    if (n < 1 || vocab_size <= EMDPO_TOK_MIN_VOCAB || min_count < 1)
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "need texts, a vocabulary over %d and min_count >= 1",
                               EMDPO_TOK_MIN_VOCAB);
    size_t corpus_len = 0;
    for (int64_t i = 0; i < n; i++) corpus_len += len[i] ? len[i] + 1 : 0;
    int room = vocab_size - EMDPO_TOK_MIN_VOCAB;
    char *corpus = emdpo_malloc(corpus_len ? corpus_len : 1);
    word_table w = {0};
    piece_table p = {0};
    count_map m = {0};
    int rc = corpus ? EMDPO_OK : EMDPO_ERR_NOMEM;
    for (size_t i = 0, at = 0; !rc && i < (size_t)n; i++) {
        if (!len[i]) continue; /* encoding adds no prefix to empty text */
        corpus[at] = ' ';
        memcpy(corpus + at + 1, text[i], len[i]);
        at += len[i] + 1;
    }
    if (!rc) rc = split_words(&w, corpus, corpus_len);
    if (!rc) rc = base_pieces(&w, &p, room);
    int n_base = p.n;
    if (!rc) rc = count_map_init(&m, w.n_sym);
    while (!rc && p.n < room) {
        int a = 0, b = 0;
        if (!best_pair(&w, &p, &m, min_count, &a, &b)) {
            if (o->up_to) break;
            rc = emdpo_diag_fail(diag, EMDPO_ERR_LIMIT,
                                 "the texts support %d vocabulary entries (no pair occurs %d times after that); "
                                 "asked for %d", EMDPO_TOK_MIN_VOCAB + p.n, min_count, vocab_size);
            break;
        }
        size_t la = p.len[a], lb = p.len[b];
        char *cat = emdpo_malloc(la + lb);
        if (!cat) {
            rc = EMDPO_ERR_NOMEM;
            break;
        }
        memcpy(cat, p.s[a], la);
        memcpy(cat + la, p.s[b], lb);
        int c = piece_find(&p, cat, la + lb);
        if (c < 0 && !(rc = piece_add(&p, cat, la + lb))) c = p.n - 1;
        emdpo_free(cat, la + lb);
        if (!rc) apply_merge(&w, a, b, c);
    }
    if (!rc) rc = serialise(&p, n_base, buf, buf_len);
    if (!rc) *n_entries = EMDPO_TOK_MIN_VOCAB + p.n;
    count_map_free(&m);
    piece_table_free(&p);
    word_table_free(&w);
    emdpo_free(corpus, corpus_len ? corpus_len : 1);
    return rc;
}
