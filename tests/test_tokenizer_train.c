/* BPE vocabulary training: a hand-worked corpus (pieces, order, scores, the
 * limit message), agreement with a naive reference trainer on random
 * corpora, decode(encode(s)) == s for seen and unseen text (UTF-8 and
 * invalid bytes), the cut to the most frequent characters, determinism, and
 * clean failure at every allocation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "check.h"
#include "failalloc.h"
#include "lm/io/tokenizer.h"
#include "lm/io/tokenizer_train.h"

static int train_opts(const char *const *texts, int n, int vocab, int min_count, int exact, void **buf, size_t *len,
                      int *entries, emdpo_diag *diag) {
    size_t lens[64];
    for (int i = 0; i < n; i++) lens[i] = strlen(texts[i]);
    emdpo_bpe_opts o;
    emdpo_bpe_opts_init(&o);
    o.vocab_size = vocab;
    o.min_count = min_count;
    o.up_to = !exact;
    return emdpo_tokenizer_train(texts, lens, n, &o, buf, len, entries, diag);
}

static int train(const char *const *texts, int n, int vocab, int min_count, void **buf, size_t *len, emdpo_diag *diag) {
    int entries = 0;
    int rc = train_opts(texts, n, vocab, min_count, 1, buf, len, &entries, diag);
    if (!rc) CHECK_EQ_INT(entries, vocab);
    return rc;
}

/* Piece id's bytes as a NUL-terminated copy in out. */
static void piece(const emdpo_tokenizer *t, int id, char *out, size_t cap) {
    size_t n = 0;
    const char *s = emdpo_tokenizer_piece(t, id, &n);
    if (!s || n >= cap) n = 0;
    memcpy(out, s ? s : "", n);
    out[n] = 0;
}

static void test_hand_worked(void) {
    /* Words " ab" x3 and " abc": characters ' ', a, b (4 each), c (1);
     * pairs " a" and "ab" tie at 4 and " a" sorts first; then " ab" (4);
     * (" ab", "c") occurs once, below min_count 2. */
    const char *texts[] = {"ab ab ab", "abc"};
    void *buf;
    size_t len;
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    CHECK_EQ_INT(train(texts, 2, 265, 2, &buf, &len, &diag), EMDPO_OK);
    emdpo_tokenizer *t = NULL;
    CHECK_EQ_INT(emdpo_tokenizer_parse(buf, len, 265, "hand", &t, NULL), EMDPO_OK);
    const char *want[] = {" ", "a", "b", "c", " a", " ab"};
    for (int i = 0; t && i < 6; i++) {
        char got[16];
        piece(t, 259 + i, got, sizeof got);
        CHECK_MSG(strcmp(got, want[i]) == 0, "piece %d is '%s', want '%s'", 259 + i, got, want[i]);
    }
    int ids[16];
    size_t n = 0;
    CHECK_EQ_INT(emdpo_tokenizer_encode(t, "ab ab", 5, EMDPO_TOK_ADD_BOS, ids, 16, &n), EMDPO_OK);
    CHECK_EQ_INT(n, 3);
    CHECK(n == 3 && ids[0] == EMDPO_TOK_BOS && ids[1] == 264 && ids[2] == 264);
    /* "abc" -> " ab" + "c": the pair below min_count was never merged. */
    CHECK_EQ_INT(emdpo_tokenizer_encode(t, "abc", 3, 0, ids, 16, &n), EMDPO_OK);
    CHECK(n == 2 && ids[0] == 264 && ids[1] == 262);
    emdpo_tokenizer_free(t);
    emdpo_free(buf, len);

    memset(&diag, 0, sizeof diag);
    CHECK_EQ_INT(train(texts, 2, 266, 2, &buf, &len, &diag), EMDPO_ERR_LIMIT);
    CHECK(buf == NULL && len == 0);
    CHECK_MSG(strstr(diag.msg, "support 265") != NULL, "%s", diag.msg);
    /* Not exact: stops at the 265 entries the texts support. */
    int entries = 0;
    CHECK_EQ_INT(train_opts(texts, 2, 300, 2, 0, &buf, &len, &entries, NULL), EMDPO_OK);
    CHECK_EQ_INT(entries, 265);
    if (buf) {
        CHECK_EQ_INT(emdpo_tokenizer_parse(buf, len, 265, "short", &t, NULL), EMDPO_OK);
        emdpo_tokenizer_free(t);
        t = NULL;
        emdpo_free(buf, len);
    }
    /* min_count 1 allows the last merge. */
    CHECK_EQ_INT(train(texts, 2, 266, 1, &buf, &len, NULL), EMDPO_OK);
    emdpo_free(buf, len);
    CHECK_EQ_INT(train(texts, 2, 259, 1, &buf, &len, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(train(texts, 2, 300, 0, &buf, &len, NULL), EMDPO_ERR_INVALID_ARG);
}

/* ---- a naive reference: words as arrays of strings ------------------- */

#define REF_MAX_WORDS 256
#define REF_MAX_SYM 64

typedef struct ref_word {
    char sym[REF_MAX_SYM][REF_MAX_SYM + 1];
    int n;
    long count;
} ref_word;

/* The pieces the reference trains (base characters by count then bytes,
 * then merges), written to out (each up to 64 bytes); returns their count. */
static int ref_train(const char *const *texts, int n_text, int room, char out[][REF_MAX_SYM + 1]) {
    static ref_word w[REF_MAX_WORDS];
    int n_w = 0;
    for (int i = 0; i < n_text; i++) {
        char buf[512];
        snprintf(buf, sizeof buf, " %s", texts[i]);
        for (size_t a = 0; buf[a];) {
            size_t b = a + 1;
            while (buf[b] && buf[b] != ' ') b++;
            int found = -1;
            for (int k = 0; k < n_w && found < 0; k++) {
                char joined[REF_MAX_SYM + 1] = "";
                for (int s = 0; s < w[k].n; s++) strcat(joined, w[k].sym[s]);
                if (strlen(joined) == b - a && memcmp(joined, buf + a, b - a) == 0) found = k;
            }
            if (found < 0) {
                found = n_w++;
                w[found].n = (int)(b - a);
                w[found].count = 0;
                for (size_t s = a; s < b; s++) {
                    w[found].sym[s - a][0] = buf[s];
                    w[found].sym[s - a][1] = 0;
                }
            }
            w[found].count++;
            a = b;
        }
    }
    /* base characters */
    long ccount[256] = {0};
    for (int k = 0; k < n_w; k++)
        for (int s = 0; s < w[k].n; s++) ccount[(unsigned char)w[k].sym[s][0]] += w[k].count;
    int n_out = 0;
    for (;;) {
        int best = -1;
        for (int c = 1; c < 256; c++)
            if (ccount[c] > 0 && (best < 0 || ccount[c] > ccount[best])) best = c;
        if (best < 0) break;
        out[n_out][0] = (char)best;
        out[n_out][1] = 0;
        n_out++;
        ccount[best] = 0;
    }
    while (n_out < room) {
        char best[REF_MAX_SYM + 1] = "", bl[REF_MAX_SYM + 1] = "", br[REF_MAX_SYM + 1] = "";
        long best_count = 0;
        for (int k = 0; k < n_w; k++)
            for (int s = 0; s + 1 < w[k].n; s++) {
                char cat[REF_MAX_SYM + 1];
                if (strlen(w[k].sym[s]) + strlen(w[k].sym[s + 1]) > REF_MAX_SYM) continue;
                strcpy(cat, w[k].sym[s]);
                strcat(cat, w[k].sym[s + 1]);
                long c = 0;
                for (int q = 0; q < n_w; q++)
                    for (int r = 0; r + 1 < w[q].n; r++)
                        if (!strcmp(w[q].sym[r], w[k].sym[s]) && !strcmp(w[q].sym[r + 1], w[k].sym[s + 1])) c += w[q].count;
                /* ties: the smaller concatenation, then the shorter left
                 * piece (equal concatenations from different splits) */
                int order = strcmp(cat, best);
                if (c > best_count ||
                    (c == best_count && c > 0 && (order < 0 || (order == 0 && strlen(w[k].sym[s]) < strlen(bl))))) {
                    best_count = c;
                    memcpy(best, cat, sizeof best);
                    snprintf(bl, sizeof bl, "%s", w[k].sym[s]);
                    snprintf(br, sizeof br, "%s", w[k].sym[s + 1]);
                }
            }
        if (best_count < 2) break;
        int exists = 0;
        for (int i = 0; i < n_out; i++) exists |= !strcmp(out[i], best);
        if (!exists) snprintf(out[n_out++], REF_MAX_SYM + 1, "%s", best);
        for (int k = 0; k < n_w; k++) {
            int o = 0;
            for (int s = 0; s < w[k].n; s++) {
                if (s + 1 < w[k].n && !strcmp(w[k].sym[s], bl) && !strcmp(w[k].sym[s + 1], br)) {
                    snprintf(w[k].sym[o++], REF_MAX_SYM + 1, "%s", best);
                    s++;
                } else if (o != s) {
                    memcpy(w[k].sym[o++], w[k].sym[s], REF_MAX_SYM + 1);
                } else {
                    o++;
                }
            }
            w[k].n = o;
        }
    }
    return n_out;
}

static void test_against_reference(void) {
    uint64_t s = 12345;
    for (int trial = 0; trial < 20; trial++) {
        char store[24][40];
        const char *texts[24];
        int n = 6 + trial % 10;
        for (int i = 0; i < n; i++) {
            int L = 3 + (int)((s >> 33) % 30);
            for (int j = 0; j < L; j++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                store[i][j] = "aabbcd  "[(s >> 40) % 8];
            }
            store[i][L] = 0;
            texts[i] = store[i];
        }
        static char ref[512][REF_MAX_SYM + 1];
        int n_ref = ref_train(texts, n, 200, ref);
        /* Train exactly as many entries as the reference reached. */
        void *buf;
        size_t len;
        int vocab = EMDPO_TOK_MIN_VOCAB + n_ref;
        int rc = train(texts, n, vocab, 2, &buf, &len, NULL);
        CHECK_EQ_INT(rc, EMDPO_OK);
        if (rc) continue;
        emdpo_tokenizer *t = NULL;
        CHECK_EQ_INT(emdpo_tokenizer_parse(buf, len, vocab, "random", &t, NULL), EMDPO_OK);
        int same = 1;
        for (int i = 0; t && i < n_ref; i++) {
            char got[80];
            piece(t, 259 + i, got, sizeof got);
            if (strcmp(got, ref[i])) {
                if (same) fprintf(stderr, "trial %d: piece %d '%s' vs reference '%s'\n", trial, 259 + i, got, ref[i]);
                same = 0;
            }
        }
        CHECK_MSG(same, "trial %d differs from the reference", trial);
        /* One more entry than the reference reached must be refused. */
        void *b2;
        size_t l2;
        CHECK_EQ_INT(train(texts, n, vocab + 1, 2, &b2, &l2, NULL), EMDPO_ERR_LIMIT);
        emdpo_tokenizer_free(t);
        emdpo_free(buf, len);
    }
}

static void roundtrip(const emdpo_tokenizer *t, const char *s) {
    size_t len = strlen(s), n = 0, out_len = 0;
    int ids[512];
    char out[512];
    CHECK_EQ_INT(emdpo_tokenizer_encode(t, s, len, EMDPO_TOK_ADD_BOS, ids, 512, &n), EMDPO_OK);
    CHECK_EQ_INT(emdpo_tokenizer_decode(t, ids, n, out, sizeof out, &out_len), EMDPO_OK);
    CHECK_MSG(out_len == len && memcmp(out, s, len) == 0, "roundtrip of '%s'", s);
}

static void test_roundtrip_and_cut(void) {
    const char *texts[] = {"Choose the option that fits you", "Choose the phrase that fits you best",
                           "héllo wörld, héllo", "Try out a new recipe every week", "the option the option"};
    void *buf;
    size_t len;
    CHECK_EQ_INT(train(texts, 5, 300, 2, &buf, &len, NULL), EMDPO_OK);
    emdpo_tokenizer *t = NULL;
    CHECK_EQ_INT(emdpo_tokenizer_parse(buf, len, 300, "rt", &t, NULL), EMDPO_OK);
    for (int i = 0; t && i < 5; i++) roundtrip(t, texts[i]);
    if (t) {
        roundtrip(t, "unseen words: zebra quiz ¿ü? \xff\xfe end");
        /* A frequent word is one token. */
        int ids[16];
        size_t n;
        CHECK_EQ_INT(emdpo_tokenizer_encode(t, "the option", 10, 0, ids, 16, &n), EMDPO_OK);
        CHECK_EQ_INT(n, 2);
    }
    emdpo_tokenizer_free(t);
    /* Same texts, same bytes. */
    void *again;
    size_t len2;
    CHECK_EQ_INT(train(texts, 5, 300, 2, &again, &len2, NULL), EMDPO_OK);
    CHECK(len2 == len && memcmp(buf, again, len) == 0);
    emdpo_free(again, len2);
    emdpo_free(buf, len);

    /* Room for 3 text pieces, 5 distinct characters: ' ', x, y stay
     * (counts 3, 3, 3 beat z 2 and w 1); z and w fall back to bytes. */
    const char *small[] = {"xyz", "xyz", "xyw"};
    CHECK_EQ_INT(train(small, 3, 262, 2, &buf, &len, NULL), EMDPO_OK);
    CHECK_EQ_INT(emdpo_tokenizer_parse(buf, len, 262, "cut", &t, NULL), EMDPO_OK);
    if (t) {
        char p0[8], p1[8], p2[8];
        piece(t, 259, p0, sizeof p0);
        piece(t, 260, p1, sizeof p1);
        piece(t, 261, p2, sizeof p2);
        CHECK(!strcmp(p0, " ") && !strcmp(p1, "x") && !strcmp(p2, "y"));
        roundtrip(t, "xyzw zz");
    }
    emdpo_tokenizer_free(t);
    emdpo_free(buf, len);
}

static void test_alloc_failures(void) {
    const char *texts[] = {"ab ab ab", "abc", "bca cab"};
    int failures = 0, leaks = 0;
    for (long at = 0;; at++) {
        void *buf = NULL;
        size_t len = 0;
        failalloc_install(at, 0);
        int rc = train(texts, 3, 266, 1, &buf, &len, NULL);
        long attempts = failalloc_count();
        if (rc == EMDPO_OK) emdpo_free(buf, len);
        long live = failalloc_live();
        failalloc_uninstall();
        if (rc != EMDPO_OK && rc != EMDPO_ERR_NOMEM) failures++;
        if (live) leaks++;
        if (at >= attempts) break;
    }
    CHECK_EQ_INT(failures, 0);
    CHECK_EQ_INT(leaks, 0);
}

int main(void) {
    test_hand_worked();
    test_against_reference();
    test_roundtrip_and_cut();
    test_alloc_failures();
    return check_report("test_tokenizer_train");
}
