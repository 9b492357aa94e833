/* The Hugging Face tokenizers pipeline of hf_tok.h: its tables, the BPE
 * model, added tokens, encoding and decoding. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "lm/io/hf_tok.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/hash.h"
#include "base/utf8.h"
#include "lm/io/hf_tok_text.h"

/* A merge: pair (a, b) becomes id at this rank (lower merges first). */
typedef struct merge_slot {
    uint64_t key; /* a << 32 | b; EMPTY_KEY when free */
    uint32_t rank;
    int32_t id;
} merge_slot;

#define EMPTY_KEY UINT64_MAX

struct emdpo_hf_tok {
    /* Model vocabulary: id -> piece (off/len into bytes; len SIZE_MAX when
     * the id has none) and piece -> id through an open-addressing table of
     * id + 1 (0: free). */
    size_t *off, *plen;
    size_t n_slots_id;
    char *bytes;
    size_t bytes_len, bytes_cap;
    int *piece_tab;
    size_t piece_cap, n_pieces;
    merge_slot *merges;
    size_t merge_cap, n_merges;
    int unk_id, byte_fallback, fuse_unk, ignore_merges;
    int byte_id[256]; /* <0xHH> pieces for byte fallback, -1 when missing */

    emdpo_hf_added *added;
    size_t n_added, added_cap;
    /* Added tokens by where they match: raw text (0) or normalized (1),
     * longest first, and each id's added token for decoding. */
    size_t *match_idx[2], n_match[2];
    unsigned char match_first[2][256]; /* first bytes of the tokens of each list */
    int *added_of_id; /* (n_ids) index into added, or -1 */

    emdpo_hf_step *steps[3];
    size_t n_steps[3], steps_cap[3];
    void *gpt2_re; /* ByteLevel's own pattern, when a step uses it */

    int *before, *after;
    size_t n_before, n_after;
    int n_ids;
};

/* GPT-2's pattern, which tokenizers' ByteLevel uses when use_regex is set. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

int emdpo_hf_tok_create(emdpo_hf_tok **out) {
    emdpo_hf_tok *t = emdpo_calloc(1, sizeof *t);
    *out = t;
    if (!t) return EMDPO_ERR_NOMEM;
    t->unk_id = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    return EMDPO_OK;
}

void emdpo_hf_step_free(emdpo_hf_step *s) {
    emdpo_free(s->text, s->text_len + 1);
    emdpo_free(s->content, s->content_len + 1);
    pcre2_code_free(s->re);
}

void emdpo_hf_tok_free(emdpo_hf_tok *t) {
    if (!t) return;
    emdpo_free(t->off, t->n_slots_id * sizeof *t->off);
    emdpo_free(t->plen, t->n_slots_id * sizeof *t->plen);
    emdpo_free(t->bytes, t->bytes_cap);
    emdpo_free(t->piece_tab, t->piece_cap * sizeof *t->piece_tab);
    emdpo_free(t->merges, t->merge_cap * sizeof *t->merges);
    for (size_t i = 0; i < t->n_added; i++) {
        emdpo_free(t->added[i].content, t->added[i].len + 1);
        emdpo_free(t->added[i].norm, t->added[i].norm_len + 1);
    }
    emdpo_free(t->added, t->added_cap * sizeof *t->added);
    for (int k = 0; k < 2; k++) emdpo_free(t->match_idx[k], t->n_match[k] * sizeof *t->match_idx[k]);
    emdpo_free(t->added_of_id, (size_t)t->n_ids * sizeof *t->added_of_id);
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < t->n_steps[k]; i++) emdpo_hf_step_free(&t->steps[k][i]);
        emdpo_free(t->steps[k], t->steps_cap[k] * sizeof *t->steps[k]);
    }
    pcre2_code_free(t->gpt2_re);
    emdpo_free(t->before, t->n_before * sizeof *t->before);
    emdpo_free(t->after, t->n_after * sizeof *t->after);
    emdpo_free(t, sizeof *t);
}

/* ---- Tables --------------------------------------------------------------- */

static const char *model_piece(const emdpo_hf_tok *t, int id, size_t *len) {
    if (id < 0 || (size_t)id >= t->n_slots_id || t->plen[id] == SIZE_MAX) return NULL;
    *len = t->plen[id];
    return t->bytes + t->off[id];
}

/* The slot of piece s in the table: its own or the free one it would take. */
static size_t piece_slot(const emdpo_hf_tok *t, const char *s, size_t n) {
    size_t mask = t->piece_cap - 1, i = (size_t)emdpo_hash_bytes(s, n) & mask;
    for (;; i = (i + 1) & mask) {
        int v = t->piece_tab[i];
        if (!v) return i;
        size_t len = 0;
        const char *p = model_piece(t, v - 1, &len);
        if (len == n && memcmp(p, s, n) == 0) return i;
    }
}

int emdpo_hf_tok_piece_id(const emdpo_hf_tok *t, const char *s, size_t n) {
    if (!t->piece_cap) return -1;
    return t->piece_tab[piece_slot(t, s, n)] - 1;
}

static int grow_pieces(emdpo_hf_tok *t, size_t want) {
    size_t old = t->piece_cap, cap = old ? 2 * old : 1024;
    while (cap < want) cap *= 2;
    int *tab = emdpo_calloc(cap, sizeof *tab);
    if (!tab) return EMDPO_ERR_NOMEM;
    int *prev = t->piece_tab;
    t->piece_tab = tab;
    t->piece_cap = cap;
    for (size_t i = 0; i < old; i++)
        if (prev[i]) {
            size_t len = 0;
            const char *p = model_piece(t, prev[i] - 1, &len);
            tab[piece_slot(t, p, len)] = prev[i];
        }
    emdpo_free(prev, old * sizeof *prev);
    return EMDPO_OK;
}

int emdpo_hf_tok_add_piece(emdpo_hf_tok *t, int id, const char *piece, size_t len, emdpo_diag *diag) {
    if (id < 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "negative id %d", id);
    size_t need = (size_t)id + 1;
    if (need > t->n_slots_id) {
        size_t cap = t->n_slots_id ? t->n_slots_id : 1024;
        while (cap < need) cap *= 2;
        void **arrays[] = {(void **)&t->off, (void **)&t->plen};
        size_t elem[] = {sizeof *t->off, sizeof *t->plen};
        if (emdpo_resize_parallel(arrays, elem, 2, t->n_slots_id, cap)) return EMDPO_ERR_NOMEM;
        for (size_t i = t->n_slots_id; i < cap; i++) t->plen[i] = SIZE_MAX;
        t->n_slots_id = cap;
    }
    if (t->plen[id] != SIZE_MAX) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "id %d appears twice", id);
    if (2 * (t->n_pieces + 1) > t->piece_cap && grow_pieces(t, 0)) return EMDPO_ERR_NOMEM;
    size_t slot = piece_slot(t, piece, len);
    if (t->piece_tab[slot])
        return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "ids %d and %d have the same piece",
                               t->piece_tab[slot] - 1, id);
    if (len > SIZE_MAX / 2 - t->bytes_len || emdpo_grow((void **)&t->bytes, &t->bytes_cap, t->bytes_len + len + 1, 1))
        return EMDPO_ERR_NOMEM;
    memcpy(t->bytes + t->bytes_len, piece, len);
    t->off[id] = t->bytes_len;
    t->plen[id] = len;
    t->bytes_len += len;
    t->piece_tab[slot] = id + 1;
    t->n_pieces++;
    if (id >= t->n_ids) t->n_ids = id + 1;
    return EMDPO_OK;
}

static size_t merge_slot_of(const emdpo_hf_tok *t, uint64_t key) {
    size_t mask = t->merge_cap - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 20) & mask;
    while (t->merges[i].key != EMPTY_KEY && t->merges[i].key != key) i = (i + 1) & mask;
    return i;
}

static int grow_merges(emdpo_hf_tok *t, size_t want) {
    size_t old = t->merge_cap, cap = old ? 2 * old : 1024;
    while (cap < want) cap *= 2;
    merge_slot *tab = emdpo_malloc(cap * sizeof *tab), *prev = t->merges;
    if (!tab) return EMDPO_ERR_NOMEM;
    for (size_t i = 0; i < cap; i++) tab[i].key = EMPTY_KEY;
    t->merges = tab;
    t->merge_cap = cap;
    for (size_t i = 0; i < old; i++)
        if (prev[i].key != EMPTY_KEY) tab[merge_slot_of(t, prev[i].key)] = prev[i];
    emdpo_free(prev, old * sizeof *prev);
    return EMDPO_OK;
}

int emdpo_hf_tok_reserve(emdpo_hf_tok *t, size_t n_pieces, size_t n_merges) {
    /* Tables at most half full, sized once rather than doubled and rehashed. */
    if (n_pieces <= SIZE_MAX / 4 && 2 * n_pieces + 2 > t->piece_cap && grow_pieces(t, 2 * n_pieces + 2))
        return EMDPO_ERR_NOMEM;
    if (n_merges <= SIZE_MAX / 4 && 2 * n_merges + 2 > t->merge_cap && grow_merges(t, 2 * n_merges + 2))
        return EMDPO_ERR_NOMEM;
    return EMDPO_OK;
}

int emdpo_hf_tok_add_merge(emdpo_hf_tok *t, const char *a, size_t na, const char *b, size_t nb, uint32_t rank,
                           emdpo_diag *diag) {
    int ia = emdpo_hf_tok_piece_id(t, a, na), ib = emdpo_hf_tok_piece_id(t, b, nb);
    if (ia < 0 || ib < 0)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "merge %u: \"%.*s\" is not in the vocabulary", rank,
                               (int)(ia < 0 ? na : nb), ia < 0 ? a : b);
    char small[256], *ab = na + nb <= sizeof small ? small : emdpo_malloc(na + nb);
    if (!ab) return EMDPO_ERR_NOMEM;
    memcpy(ab, a, na);
    memcpy(ab + na, b, nb);
    int id = emdpo_hf_tok_piece_id(t, ab, na + nb);
    if (ab != small) emdpo_free(ab, na + nb);
    if (id < 0)
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "merge %u: \"%.*s%.*s\" is not in the vocabulary", rank,
                               (int)na, a, (int)nb, b);
    if (2 * (t->n_merges + 1) > t->merge_cap && grow_merges(t, 0)) return EMDPO_ERR_NOMEM;
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    size_t slot = merge_slot_of(t, key);
    if (t->merges[slot].key == EMPTY_KEY) t->n_merges++;
    t->merges[slot] = (merge_slot){key, rank, id};
    return EMDPO_OK;
}

static const merge_slot *find_merge(const emdpo_hf_tok *t, int a, int b) {
    if (!t->merge_cap) return NULL;
    const merge_slot *m = &t->merges[merge_slot_of(t, (uint64_t)(uint32_t)a << 32 | (uint32_t)b)];
    return m->key == EMPTY_KEY ? NULL : m;
}

void emdpo_hf_tok_set_model(emdpo_hf_tok *t, int unk_id, int byte_fallback, int fuse_unk, int ignore_merges) {
    t->unk_id = unk_id;
    t->byte_fallback = byte_fallback;
    t->fuse_unk = fuse_unk;
    t->ignore_merges = ignore_merges;
}

static char *dup_bytes(const char *s, size_t n) {
    char *d = emdpo_malloc(n + 1);
    if (d) {
        if (n) memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

int emdpo_hf_tok_add_token(emdpo_hf_tok *t, const emdpo_hf_added *a) {
    if (a->id < 0 || emdpo_grow((void **)&t->added, &t->added_cap, t->n_added + 1, sizeof *t->added))
        return a->id < 0 ? EMDPO_ERR_INVALID_ARG : EMDPO_ERR_NOMEM;
    emdpo_hf_added c = *a;
    c.norm = NULL;
    c.norm_len = 0;
    if (!(c.content = dup_bytes(a->content, a->len))) return EMDPO_ERR_NOMEM;
    t->added[t->n_added++] = c;
    if (a->id >= t->n_ids) t->n_ids = a->id + 1;
    return EMDPO_OK;
}

int emdpo_hf_tok_add_step(emdpo_hf_tok *t, int list, const emdpo_hf_step *s) {
    emdpo_hf_step c = *s;
    if (list < 0 || list > 2 ||
        emdpo_grow((void **)&t->steps[list], &t->steps_cap[list], t->n_steps[list] + 1, sizeof *t->steps[list])) {
        emdpo_hf_step_free(&c);
        return list < 0 || list > 2 ? EMDPO_ERR_INVALID_ARG : EMDPO_ERR_NOMEM;
    }
    t->steps[list][t->n_steps[list]++] = c;
    return EMDPO_OK;
}

/* PCRE2 allocates through the library's hook; its free does not say the
 * size, so each block carries it in front. */
typedef union pcre_head {
    size_t size;
    max_align_t align;
} pcre_head;

static void *pcre_alloc(size_t n, void *ud) {
    (void)ud;
    if (n > SIZE_MAX - sizeof(pcre_head)) return NULL;
    pcre_head *h = emdpo_malloc(n + sizeof *h);
    if (!h) return NULL;
    h->size = n + sizeof *h;
    return h + 1;
}

static void pcre_free(void *p, void *ud) {
    (void)ud;
    if (!p) return;
    pcre_head *h = (pcre_head *)p - 1;
    emdpo_free(h, h->size);
}

int emdpo_hf_tok_compile(const char *pattern, size_t len, int literal, void **re, emdpo_diag *diag) {
    *re = NULL;
    pcre2_general_context *g = pcre2_general_context_create(pcre_alloc, pcre_free, NULL);
    pcre2_compile_context *cc = g ? pcre2_compile_context_create(g) : NULL;
    if (!cc) {
        pcre2_general_context_free(g);
        return EMDPO_ERR_NOMEM;
    }
    int err;
    PCRE2_SIZE at;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern, len,
                                     PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP), &err, &at, cc);
    pcre2_compile_context_free(cc);
    pcre2_general_context_free(g);
    if (!code) {
        if (err == PCRE2_ERROR_NOMEMORY || err == PCRE2_ERROR_HEAP_FAILED) return EMDPO_ERR_NOMEM;
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return emdpo_diag_fail(diag, EMDPO_ERR_PARSE, "regex \"%.60s\": %s at offset %zu", pattern, (char *)msg,
                               (size_t)at);
    }
    /* JIT is an optimisation: without it (no memory for it, or a CPU it
     * does not support) matching is the same, only slower. */
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    *re = code;
    return EMDPO_OK;
}

int emdpo_hf_tok_set_template(emdpo_hf_tok *t, const int *before, size_t n_before, const int *after, size_t n_after) {
    int *b = n_before ? emdpo_malloc(n_before * sizeof *b) : NULL, *a = n_after ? emdpo_malloc(n_after * sizeof *a) : NULL;
    if ((n_before && !b) || (n_after && !a)) {
        emdpo_free(b, n_before * sizeof *b);
        emdpo_free(a, n_after * sizeof *a);
        return EMDPO_ERR_NOMEM;
    }
    if (n_before) memcpy(b, before, n_before * sizeof *b);
    if (n_after) memcpy(a, after, n_after * sizeof *a);
    emdpo_free(t->before, t->n_before * sizeof *t->before);
    emdpo_free(t->after, t->n_after * sizeof *t->after);
    t->before = b;
    t->after = a;
    t->n_before = n_before;
    t->n_after = n_after;
    return EMDPO_OK;
}

/* Normalizes s through every normalizer step into *out (one string). */
static int normalize_all(const emdpo_hf_tok *t, const char *s, size_t n, int prepend, emdpo_hf_strs *out,
                         emdpo_hf_strs *tmp) {
    emdpo_hf_strs_clear(out);
    if (emdpo_hf_strs_push(out, s, n)) return EMDPO_ERR_NOMEM;
    for (size_t i = 0; i < t->n_steps[0]; i++) {
        int rc = emdpo_hf_normalize(&t->steps[0][i], out->buf, out->len, prepend, tmp);
        if (rc) return rc;
        emdpo_hf_strs swap = *out;
        *out = *tmp;
        *tmp = swap;
    }
    return EMDPO_OK;
}

/* An added token's place in a match list, sorted longest first so that
 * the first that matches at a position is the longest there
 * (leftmost-longest, as tokenizers' Aho-Corasick finds). */
typedef struct match_key {
    size_t len, idx;
    int id;
} match_key;

static int by_length(const void *pa, const void *pb) {
    const match_key *a = pa, *b = pb;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static int build_match_list(emdpo_hf_tok *t, int k) {
    size_t n = 0;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == k && (k ? t->added[i].norm_len : t->added[i].len)) n++;
    if (!n) return EMDPO_OK;
    match_key *keys = emdpo_malloc(n * sizeof *keys);
    if (!keys || !(t->match_idx[k] = emdpo_malloc(n * sizeof *t->match_idx[k]))) {
        emdpo_free(keys, n * sizeof *keys);
        return EMDPO_ERR_NOMEM;
    }
    t->n_match[k] = n;
    n = 0;
    for (size_t i = 0; i < t->n_added; i++) {
        const emdpo_hf_added *a = &t->added[i];
        size_t len = k ? a->norm_len : a->len;
        if (a->normalized == k && len) keys[n++] = (match_key){len, i, a->id};
    }
    qsort(keys, n, sizeof *keys, by_length);
    for (size_t i = 0; i < n; i++) {
        const emdpo_hf_added *a = &t->added[keys[i].idx];
        t->match_idx[k][i] = keys[i].idx;
        t->match_first[k][(unsigned char)(k ? a->norm : a->content)[0]] = 1;
    }
    emdpo_free(keys, n * sizeof *keys);
    return EMDPO_OK;
}

int emdpo_hf_tok_finish(emdpo_hf_tok *t, emdpo_diag *diag) {
    int rc = EMDPO_OK;
    emdpo_hf_strs out = {0}, tmp = {0};
    for (size_t i = 0; i < t->n_added && !rc; i++) {
        emdpo_hf_added *a = &t->added[i];
        if (!a->normalized) continue;
        if ((rc = normalize_all(t, a->content, a->len, 1, &out, &tmp))) break;
        if (!(a->norm = dup_bytes(out.buf ? out.buf : "", out.len))) rc = EMDPO_ERR_NOMEM;
        a->norm_len = out.len;
    }
    emdpo_hf_strs_free(&out);
    emdpo_hf_strs_free(&tmp);
    if (rc) return rc == EMDPO_ERR_NOMEM ? rc : emdpo_diag_fail(diag, rc, "an added token does not normalize");
    for (int k = 0; k < 2; k++)
        if (build_match_list(t, k)) return EMDPO_ERR_NOMEM;
    if (t->n_ids && !(t->added_of_id = emdpo_malloc((size_t)t->n_ids * sizeof *t->added_of_id))) return EMDPO_ERR_NOMEM;
    for (int i = 0; i < t->n_ids; i++) t->added_of_id[i] = -1;
    for (size_t i = 0; i < t->n_added; i++) t->added_of_id[t->added[i].id] = (int)i;
    for (int b = 0; b < 256; b++) {
        char p[7];
        snprintf(p, sizeof p, "<0x%02X>", b);
        t->byte_id[b] = emdpo_hf_tok_piece_id(t, p, 6);
    }
    for (size_t i = 0; i < t->n_steps[1]; i++)
        if (t->steps[1][i].kind == EMDPO_HF_PRE_BYTELEVEL && t->steps[1][i].b && !t->gpt2_re &&
            (rc = emdpo_hf_tok_compile(gpt2_pattern, sizeof gpt2_pattern - 1, 0, &t->gpt2_re, diag)))
            return rc;
    return EMDPO_OK;
}

int emdpo_hf_tok_n_ids(const emdpo_hf_tok *t) { return t->n_ids; }

int emdpo_hf_tok_token_id(const emdpo_hf_tok *t, const char *s, size_t len) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && memcmp(t->added[i].content, s, len) == 0) return t->added[i].id;
    return emdpo_hf_tok_piece_id(t, s, len);
}

const char *emdpo_hf_tok_piece(const emdpo_hf_tok *t, int id, size_t *len) {
    if (id < 0 || id >= t->n_ids) return NULL;
    if (t->added_of_id && t->added_of_id[id] >= 0) {
        /* A normalized token decodes as its normalized text, as in
         * tokenizers 0.23 (Prepend makes "Hello" decode as "\u2581Hello"). */
        const emdpo_hf_added *a = &t->added[t->added_of_id[id]];
        *len = a->normalized ? a->norm_len : a->len;
        return a->normalized ? a->norm : a->content;
    }
    return model_piece(t, id, len);
}

void emdpo_hf_tok_template(const emdpo_hf_tok *t, const int **before, size_t *n_before, const int **after,
                           size_t *n_after) {
    *before = t->before;
    *n_before = t->n_before;
    *after = t->after;
    *n_after = t->n_after;
}

/* ---- Encoding ------------------------------------------------------------- */

/* A piece of text: [a, b) and the added token it is (-1: plain text). */
typedef struct piece {
    size_t a, b;
    int id;
} piece;

typedef struct sym {
    int id;
    int prev, next;
} sym;

typedef struct cand {
    uint32_t rank;
    int pos, id;
} cand;

typedef struct encoder {
    const emdpo_hf_tok *t;
    int *ids;
    size_t n, cap;
    piece *pieces[2];
    size_t n_pieces[2], pieces_cap[2];
    emdpo_hf_strs norm, tmp, pre[2];
    sym *syms;
    size_t syms_cap;
    cand *heap;
    size_t n_heap, heap_cap;
} encoder;

static int emit(encoder *e, int id) {
    if (emdpo_grow((void **)&e->ids, &e->cap, e->n + 1, sizeof *e->ids)) return EMDPO_ERR_NOMEM;
    e->ids[e->n++] = id;
    return EMDPO_OK;
}

static int add_piece(encoder *e, int k, size_t a, size_t b, int id) {
    if (emdpo_grow((void **)&e->pieces[k], &e->pieces_cap[k], e->n_pieces[k] + 1, sizeof *e->pieces[k]))
        return EMDPO_ERR_NOMEM;
    e->pieces[k][e->n_pieces[k]++] = (piece){a, b, id};
    return EMDPO_OK;
}

/* Bytes of trailing whitespace at the end of s[0..n) (lstrip), leading at
 * its start (rstrip). */
static size_t space_before(const char *s, size_t n) {
    size_t a = n;
    while (a > 0) {
        size_t j = a - 1;
        while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
        size_t k = j;
        if (!emdpo_hf_is_space(emdpo_hf_next_cp(s, n, &k))) break;
        a = j;
    }
    return n - a;
}

static size_t space_after(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        if (!emdpo_hf_is_space(emdpo_hf_next_cp(s, n, &j))) break;
        i = j;
    }
    return i;
}

static int word_char_before(const char *s, size_t n) {
    if (!n) return 0;
    size_t j = n - 1;
    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
    return emdpo_hf_is_word(emdpo_hf_next_cp(s, n, &j));
}

static int word_char_after(const char *s, size_t n) {
    size_t i = 0;
    return n && emdpo_hf_is_word(emdpo_hf_next_cp(s, n, &i));
}

/* tokenizers' AddedVocabulary::find_matches: s[0..n) cut into pieces of
 * plain text and the added tokens of list k, into e->pieces[k]. */
static int cut_added(encoder *e, int k, const char *s, size_t n) {
    const emdpo_hf_tok *t = e->t;
    e->n_pieces[k] = 0;
    size_t from = 0, pos = 0;
    while (pos < n) {
        const emdpo_hf_added *hit = NULL;
        if (t->match_first[k][(unsigned char)s[pos]])
            for (size_t i = 0; i < t->n_match[k] && !hit; i++) {
                const emdpo_hf_added *a = &t->added[t->match_idx[k][i]];
                const char *c = k ? a->norm : a->content;
                size_t len = k ? a->norm_len : a->len;
                if (len <= n - pos && memcmp(s + pos, c, len) == 0) hit = a;
            }
        if (!hit) {
            pos++;
            continue;
        }
        size_t start = pos, stop = pos + (k ? hit->norm_len : hit->len);
        pos = stop; /* the next match is searched after this one, whatever the flags do */
        if (hit->single_word && (word_char_before(s, start) || word_char_after(s + stop, n - stop))) continue;
        if (hit->lstrip) {
            size_t a = start - space_before(s, start);
            start = a > from ? a : from;
        }
        if (hit->rstrip) stop += space_after(s + stop, n - stop);
        if (start > from && add_piece(e, k, from, start, -1)) return EMDPO_ERR_NOMEM;
        if (add_piece(e, k, start, stop, hit->id)) return EMDPO_ERR_NOMEM;
        from = stop;
    }
    if (from < n && add_piece(e, k, from, n, -1)) return EMDPO_ERR_NOMEM;
    return EMDPO_OK;
}

static int better(const cand *a, const cand *b) { return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos); }

static int heap_push(encoder *e, cand c) {
    if (emdpo_grow((void **)&e->heap, &e->heap_cap, e->n_heap + 1, sizeof *e->heap)) return EMDPO_ERR_NOMEM;
    size_t i = e->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!better(&c, &e->heap[parent])) break;
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = c;
    return EMDPO_OK;
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

static int push_pair(encoder *e, int left) {
    if (left < 0) return EMDPO_OK;
    int right = e->syms[left].next;
    if (right < 0) return EMDPO_OK;
    const merge_slot *m = find_merge(e->t, e->syms[left].id, e->syms[right].id);
    return m ? heap_push(e, (cand){m->rank, left, m->id}) : EMDPO_OK;
}

static int add_sym(encoder *e, size_t *n, int id) {
    if (emdpo_grow((void **)&e->syms, &e->syms_cap, *n + 1, sizeof *e->syms)) return EMDPO_ERR_NOMEM;
    e->syms[*n] = (sym){id, (int)*n - 1, -1};
    if (*n) e->syms[*n - 1].next = (int)*n;
    (*n)++;
    return EMDPO_OK;
}

/* tokenizers' BPE::tokenize of one pre-tokenized piece. */
static int bpe(encoder *e, const char *s, size_t len) {
    const emdpo_hf_tok *t = e->t;
    if (!len) return EMDPO_OK;
    if (len > INT32_MAX / 2) return EMDPO_ERR_LIMIT;
    if (t->ignore_merges) {
        int id = emdpo_hf_tok_piece_id(t, s, len);
        if (id >= 0) return emit(e, id);
    }
    size_t n = 0;
    int unk = 0; /* an unknown run waiting to be added (fuse_unk joins it) */
    for (size_t i = 0; i < len;) {
        size_t a = i;
        emdpo_hf_next_cp(s, len, &i);
        int id = emdpo_hf_tok_piece_id(t, s + a, i - a);
        if (id >= 0) {
            if (unk && add_sym(e, &n, t->unk_id)) return EMDPO_ERR_NOMEM;
            unk = 0;
            if (add_sym(e, &n, id)) return EMDPO_ERR_NOMEM;
            continue;
        }
        if (t->byte_fallback) {
            size_t b = a;
            while (b < i && t->byte_id[(unsigned char)s[b]] >= 0) b++;
            if (b == i) {
                for (b = a; b < i; b++)
                    if (add_sym(e, &n, t->byte_id[(unsigned char)s[b]])) return EMDPO_ERR_NOMEM;
                continue;
            }
        }
        if (t->unk_id < 0) continue; /* no unknown token: tokenizers drops the character */
        if (unk && !t->fuse_unk && add_sym(e, &n, t->unk_id)) return EMDPO_ERR_NOMEM;
        unk = 1;
    }
    if (unk && add_sym(e, &n, t->unk_id)) return EMDPO_ERR_NOMEM;
    e->n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (push_pair(e, (int)i)) return EMDPO_ERR_NOMEM;
    while (e->n_heap) {
        cand c = heap_pop(e);
        sym *l = &e->syms[c.pos];
        if (l->id < 0 || l->next < 0) continue;
        const merge_slot *m = find_merge(t, l->id, e->syms[l->next].id);
        if (!m || m->id != c.id) continue;
        sym *r = &e->syms[l->next];
        l->id = c.id;
        l->next = r->next;
        if (r->next >= 0) e->syms[r->next].prev = c.pos;
        r->id = -1;
        if (push_pair(e, l->prev) || push_pair(e, c.pos)) return EMDPO_ERR_NOMEM;
    }
    for (int i = n ? 0 : -1; i >= 0; i = e->syms[i].next)
        if (emit(e, e->syms[i].id)) return EMDPO_ERR_NOMEM;
    return EMDPO_OK;
}

/* A normalized segment: its own added tokens cut out, the rest
 * pre-tokenized and through the model. first: it starts the text. */
static int encode_normalized(encoder *e, const char *s, size_t n, int first) {
    const emdpo_hf_tok *t = e->t;
    int rc = cut_added(e, 1, s, n);
    for (size_t p = 0; !rc && p < e->n_pieces[1]; p++) {
        piece x = e->pieces[1][p];
        if (x.id >= 0) {
            rc = emit(e, x.id);
            continue;
        }
        emdpo_hf_strs *in = &e->pre[0], *out = &e->pre[1];
        emdpo_hf_strs_clear(in);
        if ((rc = emdpo_hf_strs_push(in, s + x.a, x.b - x.a))) break;
        for (size_t i = 0; !rc && i < t->n_steps[1]; i++) {
            rc = emdpo_hf_pretokenize(&t->steps[1][i], t->gpt2_re, in, first && x.a == 0, out);
            emdpo_hf_strs *swap = in;
            in = out;
            out = swap;
        }
        for (size_t i = 0; !rc && i < in->n; i++) rc = bpe(e, in->buf + in->s[i].off, in->s[i].len);
    }
    return rc;
}

static int encode_text(encoder *e, const char *text, size_t len, int special, int no_prefix) {
    const emdpo_hf_tok *t = e->t;
    int rc = EMDPO_OK;
    for (size_t i = 0; special && !rc && i < t->n_before; i++) rc = emit(e, t->before[i]);
    if (!rc) rc = cut_added(e, 0, text, len);
    /* cut_added(1) reuses the piece list of its own level only. */
    for (size_t p = 0; !rc && p < e->n_pieces[0]; p++) {
        piece x = e->pieces[0][p];
        if (x.id >= 0) {
            rc = emit(e, x.id);
            continue;
        }
        rc = normalize_all(t, text + x.a, x.b - x.a, !(no_prefix && x.a == 0), &e->norm, &e->tmp);
        if (!rc) rc = encode_normalized(e, e->norm.buf, e->norm.len, x.a == 0);
    }
    for (size_t i = 0; special && !rc && i < t->n_after; i++) rc = emit(e, t->after[i]);
    return rc;
}

int emdpo_hf_tok_encode(const emdpo_hf_tok *t, const char *text, size_t len, int special, int no_prefix, int **ids,
                        size_t *n) {
    *ids = NULL;
    *n = 0;
    if (emdpo_utf8_invalid_at(text, len) != len) return EMDPO_ERR_INVALID_ARG;
    encoder e;
    memset(&e, 0, sizeof e);
    e.t = t;
    int rc = encode_text(&e, text, len, special, no_prefix);
    for (int k = 0; k < 2; k++) emdpo_free(e.pieces[k], e.pieces_cap[k] * sizeof *e.pieces[k]);
    emdpo_hf_strs_free(&e.norm);
    emdpo_hf_strs_free(&e.tmp);
    emdpo_hf_strs_free(&e.pre[0]);
    emdpo_hf_strs_free(&e.pre[1]);
    emdpo_free(e.syms, e.syms_cap * sizeof *e.syms);
    emdpo_free(e.heap, e.heap_cap * sizeof *e.heap);
    if (rc || !e.n) {
        emdpo_free(e.ids, e.cap * sizeof *e.ids);
        return rc;
    }
    /* Exactly n ids, so that the caller frees what it was told. */
    if (e.cap != e.n) {
        int *fit = emdpo_realloc(e.ids, e.cap * sizeof *e.ids, e.n * sizeof *e.ids);
        if (!fit) {
            emdpo_free(e.ids, e.cap * sizeof *e.ids);
            return EMDPO_ERR_NOMEM;
        }
        e.ids = fit;
    }
    *ids = e.ids;
    *n = e.n;
    return EMDPO_OK;
}

/* ---- Decoding ------------------------------------------------------------- */

int emdpo_hf_tok_decode(const emdpo_hf_tok *t, const int *ids, size_t n, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    emdpo_hf_strs a = {0}, b = {0};
    int rc = EMDPO_OK;
    for (size_t i = 0; !rc && i < n; i++) {
        size_t k;
        const char *p = emdpo_hf_tok_piece(t, ids[i], &k);
        if (p) rc = emdpo_hf_strs_push(&a, p, k);
    }
    for (size_t i = 0; !rc && i < t->n_steps[2]; i++) {
        rc = emdpo_hf_decode_step(&t->steps[2][i], &a, &b);
        emdpo_hf_strs swap = a;
        a = b;
        b = swap;
    }
    size_t total = 0;
    for (size_t i = 0; i < a.n; i++) total += a.s[i].len + (!t->n_steps[2] && i > 0);
    char *s = rc ? NULL : emdpo_malloc(total + 1);
    if (!rc && !s) rc = EMDPO_ERR_NOMEM;
    if (!rc) {
        size_t o = 0;
        for (size_t i = 0; i < a.n; i++) {
            if (!t->n_steps[2] && i > 0) s[o++] = ' '; /* no decoder: tokens joined by spaces */
            memcpy(s + o, a.buf + a.s[i].off, a.s[i].len);
            o += a.s[i].len;
        }
        s[o] = 0;
        *out = s;
        *len = o;
    }
    emdpo_hf_strs_free(&a);
    emdpo_hf_strs_free(&b);
    return rc;
}
