/* Normalizers, pre-tokenizers and decoders of hf_tok_text.h, written after
 * the behaviour of tokenizers' Rust implementation (each function says
 * which of its types it mirrors). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "lm/io/hf_tok_text.h"

#include <pcre2.h>
#include <string.h>
#include <utf8proc.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/utf8.h"

void emdpo_hf_strs_clear(emdpo_hf_strs *l) {
    l->len = 0;
    l->n = 0;
}

void emdpo_hf_strs_free(emdpo_hf_strs *l) {
    emdpo_free(l->buf, l->cap);
    emdpo_free(l->s, l->n_cap * sizeof *l->s);
    memset(l, 0, sizeof *l);
}

static int reserve(emdpo_hf_strs *l, size_t n) {
    if (n > SIZE_MAX - l->len) return EMDPO_ERR_NOMEM;
    return emdpo_grow((void **)&l->buf, &l->cap, l->len + n, 1);
}

int emdpo_hf_strs_push(emdpo_hf_strs *l, const char *s, size_t n) {
    /* The buffer exists once a string does, even an empty one, so that
     * buf + off is always a pointer into it. */
    if (emdpo_grow((void **)&l->s, &l->n_cap, l->n + 1, sizeof *l->s) || reserve(l, n ? n : 1))
        return EMDPO_ERR_NOMEM;
    l->s[l->n++] = (emdpo_hf_span){l->len, n};
    if (n) memcpy(l->buf + l->len, s, n);
    l->len += n;
    return EMDPO_OK;
}

int emdpo_hf_strs_append(emdpo_hf_strs *l, const char *s, size_t n) {
    if (!n) return EMDPO_OK;
    if (reserve(l, n)) return EMDPO_ERR_NOMEM;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    l->s[l->n - 1].len += n;
    return EMDPO_OK;
}

uint32_t emdpo_hf_next_cp(const char *s, size_t n, size_t *i) {
    uint32_t cp;
    *i += emdpo_utf8_decode(s + *i, n - *i, &cp);
    return cp;
}

int emdpo_hf_is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static int is_numeric(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

int emdpo_hf_is_word(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return c == '_' || is_numeric(c) || (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO);
}

/* ---- Normalizers ---------------------------------------------------------- */

/* NFC/NFKC/NFD/NFKD through utf8proc, in a buffer of ours (utf8proc_map
 * would allocate with malloc, outside the library's hook). */
static int unicode_form(const char *s, size_t n, utf8proc_option_t opt, emdpo_hf_strs *out) {
    const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)s;
    utf8proc_ssize_t need = utf8proc_decompose(u, (utf8proc_ssize_t)n, NULL, 0, opt);
    if (need < 0) return EMDPO_ERR_INVALID_ARG;
    size_t bytes = ((size_t)need + 1) * sizeof(utf8proc_int32_t);
    utf8proc_int32_t *cps = emdpo_malloc(bytes);
    if (!cps) return EMDPO_ERR_NOMEM;
    utf8proc_ssize_t got = utf8proc_decompose(u, (utf8proc_ssize_t)n, cps, need, opt);
    if (got >= 0) got = utf8proc_normalize_utf32(cps, got, opt);
    if (got >= 0) got = utf8proc_reencode(cps, got, opt);
    int rc = got < 0 ? EMDPO_ERR_INVALID_ARG : emdpo_hf_strs_push(out, (const char *)cps, (size_t)got);
    emdpo_free(cps, bytes);
    return rc;
}

/* The first occurrence of pat[0..np) (np >= 1) in s[0..n), or NULL. */
static const char *find_bytes(const char *s, size_t n, const char *pat, size_t np) {
    while (n >= np) {
        const char *c = memchr(s, pat[0], n - np + 1);
        if (!c) return NULL;
        if (memcmp(c, pat, np) == 0) return c;
        n -= (size_t)(c - s) + 1;
        s = c + 1;
    }
    return NULL;
}

/* Every occurrence of pat (non-empty) in s, left to right, replaced. */
static int replace_all(const char *s, size_t n, const char *pat, size_t np, const char *with, size_t nw,
                       emdpo_hf_strs *out) {
    if (emdpo_hf_strs_push(out, "", 0)) return EMDPO_ERR_NOMEM;
    size_t i = 0;
    while (i < n) {
        const char *hit = np ? find_bytes(s + i, n - i, pat, np) : NULL;
        size_t stop = hit ? (size_t)(hit - s) : n;
        if (emdpo_hf_strs_append(out, s + i, stop - i)) return EMDPO_ERR_NOMEM;
        if (!hit) break;
        if (emdpo_hf_strs_append(out, with, nw)) return EMDPO_ERR_NOMEM;
        i = stop + np;
    }
    return EMDPO_OK;
}

static int replace_regex(const void *re, const char *s, size_t n, const char *with, size_t nw, emdpo_hf_strs *out) {
    size_t *m = NULL, n_m = 0, cap = 0, prev = 0;
    int rc = emdpo_hf_find_all(re, s, n, &m, &n_m, &cap);
    if (!rc) rc = emdpo_hf_strs_push(out, "", 0);
    for (size_t i = 0; !rc && i < n_m; i++) {
        rc = emdpo_hf_strs_append(out, s + prev, m[2 * i] - prev);
        if (!rc) rc = emdpo_hf_strs_append(out, with, nw);
        prev = m[2 * i + 1];
    }
    if (!rc) rc = emdpo_hf_strs_append(out, s + prev, n - prev);
    emdpo_free(m, cap * sizeof *m);
    return rc;
}

/* A Replace step: its literal or its regex. */
static int replace_step(const emdpo_hf_step *st, const char *s, size_t n, emdpo_hf_strs *out) {
    if (st->re) return replace_regex(st->re, s, n, st->content, st->content_len, out);
    return replace_all(s, n, st->text, st->text_len, st->content, st->content_len, out);
}

int emdpo_hf_normalize(const emdpo_hf_step *st, const char *s, size_t n, int prepend, emdpo_hf_strs *out) {
    emdpo_hf_strs_clear(out);
    switch (st->kind) {
    case EMDPO_HF_NORM_NFC: return unicode_form(s, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE, out);
    case EMDPO_HF_NORM_NFKC: return unicode_form(s, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
    case EMDPO_HF_NORM_NFD: return unicode_form(s, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, out);
    case EMDPO_HF_NORM_NFKD: return unicode_form(s, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
    case EMDPO_HF_NORM_PREPEND: /* only before a non-empty string */
        if (emdpo_hf_strs_push(out, n && prepend ? st->text : "", n && prepend ? st->text_len : 0))
            return EMDPO_ERR_NOMEM;
        return emdpo_hf_strs_append(out, s, n);
    case EMDPO_HF_NORM_REPLACE: return replace_step(st, s, n, out);
    case EMDPO_HF_NORM_LOWERCASE: {
        if (emdpo_hf_strs_push(out, "", 0)) return EMDPO_ERR_NOMEM;
        for (size_t i = 0; i < n;) {
            uint32_t cp = emdpo_hf_next_cp(s, n, &i);
            char u[8];
            size_t k;
            if (cp == 0x130) { /* Rust's one lowercase mapping to two characters: i + U+0307 */
                memcpy(u, "i\xCC\x87", 3);
                k = 3;
            } else {
                k = emdpo_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), u);
            }
            if (emdpo_hf_strs_append(out, u, k)) return EMDPO_ERR_NOMEM;
        }
        return EMDPO_OK;
    }
    case EMDPO_HF_NORM_STRIP: {
        size_t a = 0, b = n;
        while (st->a && a < b) {
            size_t j = a;
            if (!emdpo_hf_is_space(emdpo_hf_next_cp(s, n, &j))) break;
            a = j;
        }
        while (st->b && b > a) {
            size_t j = b - 1;
            while (j > a && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
            size_t k = j;
            if (!emdpo_hf_is_space(emdpo_hf_next_cp(s, n, &k))) break;
            b = j;
        }
        return emdpo_hf_strs_push(out, s + a, b - a);
    }
    default: return EMDPO_ERR_INVALID_ARG;
    }
}

/* ---- Pre-tokenizers ------------------------------------------------------- */

int emdpo_hf_find_all(const void *re, const char *s, size_t n, size_t **m, size_t *n_m, size_t *cap) {
    const pcre2_code *code = re;
    *n_m = 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
    if (!md) return EMDPO_ERR_NOMEM;
    int rc = EMDPO_OK;
    uint32_t opt = PCRE2_NO_UTF_CHECK;
    for (size_t at = 0; at < n;) {
        int r = pcre2_match(code, (PCRE2_SPTR)s, n, at, opt, md, NULL);
        if (r == PCRE2_ERROR_JIT_STACKLIMIT && !(opt & PCRE2_NO_JIT)) {
            /* JIT's small stack ran out on a long run: the interpreter,
             * with its heap frames, gives the same matches. */
            opt |= PCRE2_NO_JIT;
            continue;
        }
        if (r == PCRE2_ERROR_NOMATCH) break;
        if (r == PCRE2_ERROR_NOMEMORY) {
            rc = EMDPO_ERR_NOMEM;
            break;
        }
        if (r < 0) {
            rc = EMDPO_ERR_LIMIT;
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] <= ov[0]) { /* an empty match: tokenizers drops the empty piece */
            at = ov[0] + 1;
            while (at < n && ((unsigned char)s[at] & 0xC0) == 0x80) at++;
            continue;
        }
        if (emdpo_grow((void **)m, cap, 2 * (*n_m + 1), sizeof **m)) {
            rc = EMDPO_ERR_NOMEM;
            break;
        }
        (*m)[2 * *n_m] = ov[0];
        (*m)[2 * *n_m + 1] = ov[1];
        (*n_m)++;
        at = ov[1];
    }
    pcre2_match_data_free(md);
    return rc;
}

/* One piece of a split: [a, b) and whether it is a match (a delimiter). */
typedef struct seg {
    size_t a, b;
    int match;
} seg;

typedef struct segs {
    seg *v;
    size_t n, cap;
} segs;

static int seg_push(segs *g, size_t a, size_t b, int match) {
    if (emdpo_grow((void **)&g->v, &g->cap, g->n + 1, sizeof *g->v)) return EMDPO_ERR_NOMEM;
    g->v[g->n++] = (seg){a, b, match};
    return EMDPO_OK;
}

/* tokenizers' NormalizedString::split: the pieces of s that the matches
 * (or, inverted, the gaps) delimit, combined by behavior as its folds
 * combine them; empty pieces dropped. g covers s: matches and the gaps
 * between them, in order; it is rewritten in place. */
static int split_pieces(const char *s, segs *g, int behavior, int invert, emdpo_hf_strs *out) {
    size_t n = 0;
    int prev = 0;
    if (behavior == EMDPO_HF_SPLIT_MERGED_WITH_NEXT) {
        /* Folded from the right: a delimiter joins the piece after it. */
        for (size_t i = g->n; i-- > 0;) {
            seg x = g->v[i];
            int match = invert ? !x.match : x.match;
            if (match && !prev && n)
                g->v[g->n - n].a = x.a;
            else
                g->v[g->n - ++n] = (seg){x.a, x.b, 0};
            prev = match;
        }
        memmove(g->v, g->v + g->n - n, n * sizeof *g->v);
    } else {
        for (size_t i = 0; i < g->n; i++) {
            seg x = g->v[i];
            int match = invert ? !x.match : x.match, join = 0;
            if (behavior == EMDPO_HF_SPLIT_REMOVED && match) continue;
            if (behavior == EMDPO_HF_SPLIT_CONTIGUOUS) join = match == prev && n;
            if (behavior == EMDPO_HF_SPLIT_MERGED_WITH_PREVIOUS) join = match && !prev && n;
            if (join)
                g->v[n - 1].b = x.b;
            else
                g->v[n++] = (seg){x.a, x.b, 0};
            prev = match;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (g->v[i].b > g->v[i].a && emdpo_hf_strs_push(out, s + g->v[i].a, g->v[i].b - g->v[i].a))
            return EMDPO_ERR_NOMEM;
    return EMDPO_OK;
}

/* The regex matches of s and the gaps between them, in order. */
static int regex_segs(const void *re, const char *s, size_t n, segs *g) {
    size_t *m = NULL, n_m = 0, cap = 0;
    int rc = emdpo_hf_find_all(re, s, n, &m, &n_m, &cap);
    size_t prev = 0;
    for (size_t i = 0; !rc && i < n_m; i++) {
        if (m[2 * i] > prev) rc = seg_push(g, prev, m[2 * i], 0);
        if (!rc) rc = seg_push(g, m[2 * i], m[2 * i + 1], 1);
        prev = m[2 * i + 1];
    }
    if (!rc && prev < n) rc = seg_push(g, prev, n, 0);
    emdpo_free(m, cap * sizeof *m);
    return rc;
}

/* A character pattern's matches, as tokenizers finds them: each character
 * that is what_cp (or, with what_cp 0, numeric) a match of its own, the
 * runs of other characters between them gaps. */
static int char_segs(const char *s, size_t n, uint32_t what_cp, segs *g) {
    size_t gap = 0;
    for (size_t i = 0; i < n;) {
        size_t a = i;
        uint32_t cp = emdpo_hf_next_cp(s, n, &i);
        if (!(what_cp ? cp == what_cp : is_numeric(cp))) continue;
        if (a > gap && seg_push(g, gap, a, 0)) return EMDPO_ERR_NOMEM;
        if (seg_push(g, a, i, 1)) return EMDPO_ERR_NOMEM;
        gap = i;
    }
    if (n > gap && seg_push(g, gap, n, 0)) return EMDPO_ERR_NOMEM;
    return EMDPO_OK;
}

size_t emdpo_hf_byte_char(unsigned b, char *out) {
    /* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for
     * themselves, the other 68 for U+0100 + their rank among them. */
    uint32_t cp;
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
        cp = b;
    } else {
        uint32_t rank = b <= 0x20 ? b : b <= 0xA0 ? b - 0x7F + 0x21 : 0x21 + 0x22;
        cp = 0x100 + rank;
    }
    return emdpo_utf8_encode(cp, out);
}

static int byte_level_map(const char *s, size_t n, emdpo_hf_strs *out) {
    if (emdpo_hf_strs_push(out, "", 0)) return EMDPO_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        char u[4];
        if (emdpo_hf_strs_append(out, u, emdpo_hf_byte_char((unsigned char)s[i], u))) return EMDPO_ERR_NOMEM;
    }
    return EMDPO_OK;
}

static int pretok_one(const emdpo_hf_step *st, const void *gpt2_re, const char *s, size_t n, int first,
                      emdpo_hf_strs *out, segs *g, emdpo_hf_strs *tmp) {
    int rc = EMDPO_OK;
    g->n = 0;
    switch (st->kind) {
    case EMDPO_HF_PRE_SPLIT:
        if ((rc = regex_segs(st->re, s, n, g))) return rc;
        return split_pieces(s, g, st->behavior, st->invert, out);
    case EMDPO_HF_PRE_DIGITS:
        if ((rc = char_segs(s, n, 0, g))) return rc;
        return split_pieces(s, g, st->a ? EMDPO_HF_SPLIT_ISOLATED : EMDPO_HF_SPLIT_CONTIGUOUS, 0, out);
    case EMDPO_HF_PRE_BYTELEVEL: {
        emdpo_hf_strs_clear(tmp);
        if (st->a && (n == 0 || s[0] != ' ')) {
            if (emdpo_hf_strs_push(tmp, " ", 1) || emdpo_hf_strs_append(tmp, s, n)) return EMDPO_ERR_NOMEM;
            s = tmp->buf;
            n = tmp->len;
        }
        if (st->b) {
            if ((rc = regex_segs(gpt2_re, s, n, g))) return rc;
            for (size_t i = 0; i < g->n; i++)
                if (g->v[i].b > g->v[i].a && (rc = byte_level_map(s + g->v[i].a, g->v[i].b - g->v[i].a, out)))
                    return rc;
        } else if (n) {
            rc = byte_level_map(s, n, out);
        }
        return rc;
    }
    case EMDPO_HF_PRE_METASPACE: {
        emdpo_hf_strs_clear(tmp);
        if ((rc = replace_all(s, n, " ", 1, st->text, st->text_len, tmp))) return rc;
        const char *r = tmp->buf;
        size_t rn = tmp->len;
        int starts = rn >= st->text_len && memcmp(r, st->text, st->text_len) == 0;
        int pre = !starts && (st->a == EMDPO_HF_PREPEND_ALWAYS || (st->a == EMDPO_HF_PREPEND_FIRST && first));
        /* Prepending: the replacement, then s with its spaces replaced. */
        if (pre) {
            emdpo_hf_strs_clear(tmp);
            if (emdpo_hf_strs_push(tmp, st->text, st->text_len)) return EMDPO_ERR_NOMEM;
            emdpo_hf_strs tail = {0};
            rc = replace_all(s, n, " ", 1, st->text, st->text_len, &tail);
            if (!rc) rc = emdpo_hf_strs_append(tmp, tail.buf, tail.len);
            emdpo_hf_strs_free(&tail);
            if (rc) return rc;
            r = tmp->buf;
            rn = tmp->len;
        }
        if (!st->b) return rn ? emdpo_hf_strs_push(out, r, rn) : EMDPO_OK;
        size_t ri = 0;
        uint32_t rcp = emdpo_hf_next_cp(st->text, st->text_len, &ri);
        if ((rc = char_segs(r, rn, rcp, g))) return rc;
        return split_pieces(r, g, EMDPO_HF_SPLIT_MERGED_WITH_NEXT, 0, out);
    }
    default: return EMDPO_ERR_INVALID_ARG;
    }
}

int emdpo_hf_pretokenize(const emdpo_hf_step *st, const void *gpt2_re, const emdpo_hf_strs *in, int first,
                         emdpo_hf_strs *out) {
    emdpo_hf_strs_clear(out);
    segs g = {NULL, 0, 0};
    emdpo_hf_strs tmp = {0};
    int rc = EMDPO_OK;
    for (size_t i = 0; i < in->n && !rc; i++)
        rc = pretok_one(st, gpt2_re, in->buf + in->s[i].off, in->s[i].len, first && i == 0, out, &g, &tmp);
    emdpo_free(g.v, g.cap * sizeof *g.v);
    emdpo_hf_strs_free(&tmp);
    return rc;
}

/* ---- Decoders ------------------------------------------------------------- */

int emdpo_hf_append_lossy(emdpo_hf_strs *out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = emdpo_utf8_seq_len(u + i, n - i);
        if (k) {
            size_t j = i + k;
            while (j < n && (k = emdpo_utf8_seq_len(u + j, n - j))) j += k;
            if (emdpo_hf_strs_append(out, s + i, j - i)) return EMDPO_ERR_NOMEM;
            i = j;
            continue;
        }
        /* The maximal prefix of a well-formed sequence is one error. */
        unsigned char c = u[i];
        size_t want = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        size_t j = i + 1;
        if (want) {
            unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
            unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
            if (j < n && u[j] >= lo && u[j] <= hi) {
                j++;
                while (j < n && j - i < want && (u[j] & 0xC0) == 0x80) j++;
            }
        }
        if (emdpo_hf_strs_append(out, "\xEF\xBF\xBD", 3)) return EMDPO_ERR_NOMEM;
        i = j;
    }
    return EMDPO_OK;
}

/* The byte of a "<0xHH>" piece, or -1. */
static int byte_piece(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10 /* from_str_radix takes either case */
                                       : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The byte a byte-level character stands for, or -1. */
static int char_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
    if (cp < 0x100 || cp > 0x143) return -1;
    uint32_t r = cp - 0x100;
    return r <= 0x20 ? (int)r : r <= 0x42 ? (int)(r - 0x21 + 0x7F) : 0xAD;
}

static int byte_level_decode(const emdpo_hf_strs *in, emdpo_hf_strs *out) {
    /* Every token's bytes (its raw UTF-8 when a character is not in the
     * map), then one lossy conversion of the whole. */
    emdpo_hf_strs raw = {0};
    int rc = emdpo_hf_strs_push(&raw, "", 0);
    for (size_t t = 0; !rc && t < in->n; t++) {
        const char *s = in->buf + in->s[t].off;
        size_t n = in->s[t].len, i = 0, start = raw.len;
        while (!rc && i < n) {
            int b = char_byte(emdpo_hf_next_cp(s, n, &i));
            if (b < 0) break;
            char c = (char)b;
            rc = emdpo_hf_strs_append(&raw, &c, 1);
        }
        if (!rc && i < n) {
            raw.len = start;
            raw.s[0].len = start;
            rc = emdpo_hf_strs_append(&raw, s, n);
        }
    }
    if (!rc) rc = emdpo_hf_strs_push(out, "", 0);
    if (!rc) rc = emdpo_hf_append_lossy(out, raw.buf, raw.len);
    emdpo_hf_strs_free(&raw);
    return rc;
}

static int byte_fallback_decode(const emdpo_hf_strs *in, emdpo_hf_strs *out) {
    char *bytes = NULL;
    size_t nb = 0, cap = 0;
    int rc = EMDPO_OK;
    for (size_t t = 0; !rc && t <= in->n; t++) {
        const char *s = t < in->n ? in->buf + in->s[t].off : NULL;
        size_t n = t < in->n ? in->s[t].len : 0;
        int b = s ? byte_piece(s, n) : -1;
        if (b >= 0) {
            if (emdpo_grow((void **)&bytes, &cap, nb + 1, 1)) {
                rc = EMDPO_ERR_NOMEM;
                break;
            }
            bytes[nb++] = (char)b;
            continue;
        }
        if (nb) { /* the run ends: its text when UTF-8, else U+FFFD per byte */
            if (emdpo_utf8_invalid_at(bytes, nb) == nb) {
                rc = emdpo_hf_strs_push(out, bytes, nb);
            } else {
                for (size_t i = 0; !rc && i < nb; i++) rc = emdpo_hf_strs_push(out, "\xEF\xBF\xBD", 3);
            }
            nb = 0;
        }
        if (!rc && s) rc = emdpo_hf_strs_push(out, s, n);
    }
    emdpo_free(bytes, cap);
    return rc;
}

int emdpo_hf_decode_step(const emdpo_hf_step *st, const emdpo_hf_strs *in, emdpo_hf_strs *out) {
    emdpo_hf_strs_clear(out);
    int rc = EMDPO_OK;
    switch (st->kind) {
    case EMDPO_HF_DEC_BYTELEVEL: return byte_level_decode(in, out);
    case EMDPO_HF_DEC_BYTEFALLBACK: return byte_fallback_decode(in, out);
    case EMDPO_HF_DEC_FUSE:
        rc = emdpo_hf_strs_push(out, "", 0);
        for (size_t t = 0; !rc && t < in->n; t++) rc = emdpo_hf_strs_append(out, in->buf + in->s[t].off, in->s[t].len);
        return rc;
    case EMDPO_HF_DEC_REPLACE:
        for (size_t t = 0; !rc && t < in->n; t++) {
            emdpo_hf_strs one = {0};
            rc = replace_step(st, in->buf + in->s[t].off, in->s[t].len, &one);
            if (!rc) rc = emdpo_hf_strs_push(out, one.buf ? one.buf : "", one.len);
            emdpo_hf_strs_free(&one);
        }
        return rc;
    case EMDPO_HF_DEC_STRIP:
        for (size_t t = 0; !rc && t < in->n; t++) {
            const char *s = in->buf + in->s[t].off;
            size_t n = in->s[t].len, a = 0, b = n, c = st->content_len;
            for (int k = 0; k < st->a && b - a >= c && memcmp(s + a, st->content, c) == 0; k++) a += c;
            for (int k = 0; k < st->b && b - a >= c && memcmp(s + b - c, st->content, c) == 0; k++) b -= c;
            rc = emdpo_hf_strs_push(out, s + a, b - a);
        }
        return rc;
    case EMDPO_HF_DEC_METASPACE:
        for (size_t t = 0; !rc && t < in->n; t++) {
            const char *s = in->buf + in->s[t].off;
            size_t n = in->s[t].len, i = 0;
            rc = emdpo_hf_strs_push(out, "", 0);
            while (!rc && i < n) {
                if (n - i >= st->text_len && memcmp(s + i, st->text, st->text_len) == 0) {
                    /* The first token's replacement characters vanish unless
                     * nothing was prepended (tokenizers' Metaspace decoder). */
                    if (!(t == 0 && st->a != EMDPO_HF_PREPEND_NEVER)) rc = emdpo_hf_strs_append(out, " ", 1);
                    i += st->text_len;
                } else {
                    size_t j = i;
                    emdpo_hf_next_cp(s, n, &j);
                    rc = emdpo_hf_strs_append(out, s + i, j - i);
                    i = j;
                }
            }
        }
        return rc;
    default: return EMDPO_ERR_INVALID_ARG;
    }
}
