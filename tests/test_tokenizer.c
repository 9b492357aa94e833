/* The llama2.c tokenizer: encoding against a direct transcription of
 * llama2.c's quadratic merge loop, known encodings, decode(encode(s)) == s
 * on ASCII, UTF-8 and invalid bytes, the real tok512.bin with its greedy
 * reference text (when ../shared is present), rejection of malformed and
 * wrong-vocabulary files, and clean failure at every allocation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "check.h"
#include "testdata.h"
#include "failalloc.h"
#include "lm/io/tokenizer.h"

#define TOK512 "../shared/data/models/tok512.bin"
#define GREEDY_REF "../shared/data/models/stories260K_greedy_reference.json"

/* ---- building tokenizer.bin images ----------------------------------- */

typedef struct image {
    unsigned char *p;
    size_t len, cap;
} image;

static void put(image *im, const void *s, size_t n) {
    if (im->len + n > im->cap) {
        im->cap = (im->len + n) * 2;
        im->p = realloc(im->p, im->cap);
        if (!im->p) abort();
    }
    memcpy(im->p + im->len, s, n);
    im->len += n;
}

static void put_i32(image *im, int32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(im, b, 4);
}

static void put_f32(image *im, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_i32(im, (int32_t)u);
}

static void put_entry(image *im, float score, const char *s, size_t n) {
    put_f32(im, score);
    put_i32(im, (int32_t)n);
    put(im, s, n);
}

/* The standard first 259 entries followed by the given text pieces. */
static image make_image(const char *const *pieces, const float *scores, int n) {
    image im = {0};
    put_i32(&im, 16);
    put_entry(&im, 0, "<unk>", 5);
    put_entry(&im, 0, "\n<s>\n", 5);
    put_entry(&im, 0, "\n</s>\n", 6);
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        put_entry(&im, 0, s, 6);
    }
    for (int i = 0; i < n; i++) put_entry(&im, scores[i], pieces[i], strlen(pieces[i]));
    return im;
}

/* ---- llama2.c's encoder, transcribed: linear lookups, full rescans ---- */

static int ref_lookup(const emdpo_tokenizer *t, const char *s, size_t n) {
    for (int id = EMDPO_TOK_MIN_VOCAB; id < emdpo_tokenizer_vocab_size(t); id++) {
        size_t k;
        const char *p = emdpo_tokenizer_piece(t, id, &k);
        if (k == n && k > 0 && memcmp(p, s, n) == 0) return id;
    }
    return -1;
}

static size_t ref_encode(const emdpo_tokenizer *t, const float *score, const char *text, size_t len,
                         int *tok) {
    size_t n = 0;
    char buf[64];
    if (len) tok[n++] = ref_lookup(t, " ", 1) >= 0 ? ref_lookup(t, " ", 1) : EMDPO_TOK_BYTE0 + ' ';
    size_t blen = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c & 0xC0) != 0x80) blen = 0;
        buf[blen++] = (char)c;
        if (i + 1 < len && ((unsigned char)text[i + 1] & 0xC0) == 0x80 && blen < 4) continue;
        int id = ref_lookup(t, buf, blen);
        if (id >= 0) {
            tok[n++] = id;
        } else {
            for (size_t j = 0; j < blen; j++) tok[n++] = (unsigned char)buf[j] + EMDPO_TOK_BYTE0;
        }
        blen = 0;
    }
    for (;;) {
        float best = -1e30f;
        int best_id = -1;
        size_t best_i = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            if (tok[i] < EMDPO_TOK_MIN_VOCAB || tok[i + 1] < EMDPO_TOK_MIN_VOCAB) continue;
            size_t ka, kb;
            const char *a = emdpo_tokenizer_piece(t, tok[i], &ka);
            const char *b = emdpo_tokenizer_piece(t, tok[i + 1], &kb);
            if (ka + kb > sizeof buf) continue;
            memcpy(buf, a, ka);
            memcpy(buf + ka, b, kb);
            int id = ref_lookup(t, buf, ka + kb);
            if (id >= 0 && score[id] > best) {
                best = score[id];
                best_id = id;
                best_i = i;
            }
        }
        if (best_id < 0) break;
        tok[best_i] = best_id;
        memmove(tok + best_i + 1, tok + best_i + 2, (n - best_i - 2) * sizeof *tok);
        n--;
    }
    return n;
}

/* Encodes s with and without BOS, compares with the transcription, and
 * checks that decoding after BOS gives s back. */
static void check_text(const emdpo_tokenizer *t, const float *score, const char *s, size_t len) {
    size_t cap = emdpo_tokenizer_encode_bound(len);
    int *ids = malloc(cap * sizeof *ids), *ref = malloc((len + 1) * sizeof *ref);
    char *out = malloc(len + 1);
    size_t n = 0, got = 0;
    CHECK_EQ_INT(emdpo_tokenizer_encode(t, s, len, 0, ids, cap, &n), EMDPO_OK);
    size_t nref = ref_encode(t, score, s, len, ref);
    int same = n == nref && memcmp(ids, ref, n * sizeof *ids) == 0;
    CHECK_MSG(same, "encoding of \"%.40s\" (%zu bytes) differs from llama2.c's (%zu vs %zu ids)", s,
              len, n, nref);
    CHECK_EQ_INT(emdpo_tokenizer_encode(t, s, len, EMDPO_TOK_ADD_BOS, ids, cap, &n), EMDPO_OK);
    CHECK(n >= 1 && ids[0] == EMDPO_TOK_BOS);
    CHECK_EQ_INT(emdpo_tokenizer_decode(t, ids, n, out, len + 1, &got), EMDPO_OK);
    CHECK_MSG(got == len && memcmp(out, s, len) == 0, "round trip of \"%.40s\"", s);
    free(ids);
    free(ref);
    free(out);
}

/* ---- synthetic vocabulary --------------------------------------------- */

static const char *const k_pieces[] = {" ", "h",  "e",   "l",   "o",     " h",     "he",
                                       "ll", "lo", "llo", " he", " hello", "é",     "日本",
                                       "日", "本", "ab",  "bc",  "abc",   "\xE2\x96", "a", "b", "c"};
static const float k_scores[] = {-1, -1, -1, -1, -1, 2, 3, 5, 5, 4, 1, 6, -1, 7, -1, -1, 1, 1, 0.5f, 9, -1, -1, -1};
#define K_N ((int)(sizeof k_pieces / sizeof *k_pieces))

static void test_synthetic(void) {
    image im = make_image(k_pieces, k_scores, K_N);
    int v = EMDPO_TOK_MIN_VOCAB + K_N;
    emdpo_tokenizer *t = NULL;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_tokenizer_parse(im.p, im.len, v, "synthetic", &t, &d), EMDPO_OK);
    if (!t) return;
    float score[512] = {0};
    for (int i = 0; i < K_N; i++) score[EMDPO_TOK_MIN_VOCAB + i] = k_scores[i];
    int id[K_N];
    for (int i = 0; i < K_N; i++) id[i] = EMDPO_TOK_MIN_VOCAB + i;

    /* " hello": "ll" and "lo" tie at 5 and the leftmost wins, so "llo" (4)
     * follows rather than "lo"; then "he" (3) beats " h" (2), " "+"he" gives
     * " he" (1), and " he"+"llo" is the piece " hello". Without the dummy
     * prefix, "he"+"llo" is no piece. */
    int ids[16];
    size_t n = 0;
    CHECK_EQ_INT(emdpo_tokenizer_encode(t, "hello", 5, 0, ids, 16, &n), EMDPO_OK);
    CHECK(n == 1 && ids[0] == id[11]);
    CHECK_EQ_INT(emdpo_tokenizer_encode(t, "hello", 5, EMDPO_TOK_NO_PREFIX, ids, 16, &n), EMDPO_OK);
    CHECK(n == 2 && ids[0] == id[6] && ids[1] == id[9]);
    /* Two-byte "é" is a piece; "ü" is not and falls back to its two bytes. */
    CHECK_EQ_INT(emdpo_tokenizer_encode(t, "\xC3\xA9\xC3\xBC", 4, EMDPO_TOK_NO_PREFIX, ids, 16, &n),
                 EMDPO_OK);
    CHECK(n == 3 && ids[0] == id[12] && ids[1] == EMDPO_TOK_BYTE0 + 0xC3 &&
          ids[2] == EMDPO_TOK_BYTE0 + 0xBC);
    /* "日本" merges from its two code points; BOS and EOS bracket it. */
    CHECK_EQ_INT(emdpo_tokenizer_encode(t, "日本", 6, EMDPO_TOK_ADD_BOS | EMDPO_TOK_ADD_EOS, ids, 16, &n),
                 EMDPO_OK);
    CHECK(n == 4 && ids[0] == EMDPO_TOK_BOS && ids[1] == id[0] && ids[2] == id[13] &&
          ids[3] == EMDPO_TOK_EOS);
    /* The lead bytes of "▁" are a piece, but llama2.c never splits a code
     * point, so U+2581 falls back to three bytes. */
    CHECK_EQ_INT(emdpo_tokenizer_encode(t, "\xE2\x96\x81", 3, EMDPO_TOK_NO_PREFIX, ids, 16, &n), EMDPO_OK);
    CHECK(n == 3 && ids[0] == EMDPO_TOK_BYTE0 + 0xE2);
    /* Merges go through pieces: "a", "b", "c" exist, so " abcabc" becomes
     * " ", "abc", "abc". Too small a buffer still reports the count. */
    CHECK_EQ_INT(emdpo_tokenizer_encode(t, "abcabc", 6, EMDPO_TOK_ADD_BOS, ids, 2, &n), EMDPO_ERR_LIMIT);
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_INT(emdpo_tokenizer_encode(t, "", 0, 0, ids, 0, &n), EMDPO_OK);
    CHECK_EQ_INT(n, 0);

    static const char *const texts[] = {
        "hello hello", "hellollo", "abcabcab", "lllll", "  héllo  日本日 本", "h", "",
        "\xFF\xFE\x80hello\xC3", "\x80\x80\x80\x80\x80\x80", "he\0llo", "日\xE6\x9C", "\xF0\x9F\x99\x82 ok"};
    static const size_t lens[] = {11, 8, 8, 5, 23, 1, 0, 9, 6, 6, 5, 7};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) check_text(t, score, texts[i], lens[i]);

    /* Random strings over an alphabet that exercises merges and UTF-8. */
    static const char *const alpha[] = {"h", "e", "l", "o", " ", "a", "b", "c", "é", "日", "本", "\xE2", "\x96"};
    srand(7);
    for (int r = 0; r < 300; r++) {
        char s[64];
        size_t len = 0;
        int m = rand() % 16;
        for (int k = 0; k < m; k++) {
            const char *a = alpha[rand() % 13];
            memcpy(s + len, a, strlen(a));
            len += strlen(a);
        }
        check_text(t, score, s, len);
    }

    /* Decoding: control ids vanish, byte ids give bytes, the dummy space goes
     * only right after BOS, and short buffers report the length needed. */
    int dec[] = {EMDPO_TOK_BOS, id[11], EMDPO_TOK_BYTE0 + 'X', id[5], EMDPO_TOK_EOS, EMDPO_TOK_UNK};
    char out[32];
    size_t len = 0;
    CHECK_EQ_INT(emdpo_tokenizer_decode(t, dec, 6, out, sizeof out, &len), EMDPO_OK);
    CHECK(len == 8 && strcmp(out, "helloX h") == 0);
    CHECK_EQ_INT(emdpo_tokenizer_decode(t, dec, 6, NULL, 0, &len), EMDPO_ERR_LIMIT);
    CHECK_EQ_INT(len, 8);
    CHECK_EQ_INT(emdpo_tokenizer_decode(t, dec, 6, out, 8, &len), EMDPO_ERR_LIMIT);
    CHECK(memcmp(out, "helloX h", 8) == 0);
    int bad_id[] = {5, v};
    CHECK_EQ_INT(emdpo_tokenizer_decode(t, bad_id, 2, out, sizeof out, &len), EMDPO_ERR_INVALID_ARG);
    int neg_id[] = {-1};
    CHECK_EQ_INT(emdpo_tokenizer_decode(t, neg_id, 1, out, sizeof out, &len), EMDPO_ERR_INVALID_ARG);
    size_t plen = 0;
    const char *p = emdpo_tokenizer_piece(t, EMDPO_TOK_BYTE0 + 10, &plen);
    CHECK(p && plen == 6 && memcmp(p, "<0x0A>", 6) == 0);
    CHECK(emdpo_tokenizer_piece(t, v, &plen) == NULL);
    emdpo_tokenizer_free(t);

    /* A piece listed twice resolves to its lower id. */
    static const char *const dup[] = {"ab", "ab", "a", "b"};
    static const float dup_scores[] = {0, 5, 0, 0};
    image im2 = make_image(dup, dup_scores, 4);
    CHECK_EQ_INT(emdpo_tokenizer_parse(im2.p, im2.len, EMDPO_TOK_MIN_VOCAB + 4, "dup", &t, &d), EMDPO_OK);
    if (t) {
        CHECK_EQ_INT(emdpo_tokenizer_encode(t, "ab", 2, EMDPO_TOK_NO_PREFIX, ids, 16, &n), EMDPO_OK);
        CHECK(n == 1 && ids[0] == EMDPO_TOK_MIN_VOCAB);
        emdpo_tokenizer_free(t);
    }
    free(im2.p);

    /* A text piece spelling two byte pieces must not swallow the bytes. */
    static const char *const spelled[] = {"<0x80><0x81>", "<0x80>"};
    static const float spelled_scores[] = {9, 0};
    image im3 = make_image(spelled, spelled_scores, 2);
    CHECK_EQ_INT(emdpo_tokenizer_parse(im3.p, im3.len, EMDPO_TOK_MIN_VOCAB + 2, "spelled", &t, &d), EMDPO_OK);
    if (t) {
        CHECK_EQ_INT(emdpo_tokenizer_encode(t, "\x80\x81", 2, EMDPO_TOK_NO_PREFIX, ids, 16, &n), EMDPO_OK);
        CHECK(n == 2 && ids[0] == EMDPO_TOK_BYTE0 + 0x80 && ids[1] == EMDPO_TOK_BYTE0 + 0x81);
        check_text(t, score, "<0x80>\x80\x81", 8);
        emdpo_tokenizer_free(t);
    }
    free(im3.p);
    free(im.p);
}

/* ---- malformed files -------------------------------------------------- */

static void expect_parse_error(const image *im, int v, const char *what, const char *msg_part) {
    emdpo_tokenizer *t = (emdpo_tokenizer *)&t;
    emdpo_diag d;
    int rc = emdpo_tokenizer_parse(im->p, im->len, v, "bad.bin", &t, &d);
    CHECK_MSG(rc == EMDPO_ERR_PARSE, "%s: rc %d", what, rc);
    CHECK_MSG(t == NULL, "%s: output not cleared", what);
    CHECK_MSG(strstr(d.msg, msg_part) != NULL, "%s: message \"%s\" lacks \"%s\"", what, d.msg, msg_part);
    CHECK(strcmp(d.file, "bad.bin") == 0 && d.line == 0);
    if (rc == EMDPO_OK) emdpo_tokenizer_free(t);
}

static void patch_i32(image *im, size_t at, int32_t v) {
    image tmp = {0};
    put_i32(&tmp, v);
    memcpy(im->p + at, tmp.p, 4);
    free(tmp.p);
}

static void test_malformed(void) {
    static const char *const pieces[] = {"ab", "cd"};
    static const float scores[] = {1, 2};
    image im = make_image(pieces, scores, 2);
    int v = EMDPO_TOK_MIN_VOCAB + 2;
    emdpo_tokenizer *t = NULL;
    emdpo_diag d;
    CHECK_EQ_INT(emdpo_tokenizer_parse(im.p, im.len, v, "ok", &t, &d), EMDPO_OK);
    emdpo_tokenizer_free(t);

    expect_parse_error(&im, v - 1, "vocab one smaller", "remain after");
    expect_parse_error(&im, v + 1, "vocab one larger", "truncated");
    expect_parse_error(&im, 1000000, "vocab far larger", "truncated");
    for (size_t cut = 0; cut < im.len; cut += (cut < 40 ? 1 : 97)) {
        image c = im;
        c.len = cut;
        expect_parse_error(&c, v, "truncated", cut < 4 ? "too short" : "truncated");
    }
    size_t last = im.len - (8 + 2); /* the entry for "cd" */
    image c = {0};
    put(&c, im.p, im.len);
    patch_i32(&c, last + 4, -1);
    expect_parse_error(&c, v, "negative length", "length -1");
    patch_i32(&c, last + 4, 17);
    expect_parse_error(&c, v, "length over max_token_length", "length 17");
    patch_i32(&c, last + 4, 0x7fffffff);
    expect_parse_error(&c, v, "huge length", "outside");
    patch_i32(&c, last + 4, 2);
    patch_i32(&c, last, 0x7fc00000); /* NaN score */
    expect_parse_error(&c, v, "NaN score", "non-finite");
    patch_i32(&c, last, 0);
    patch_i32(&c, 0, 0);
    expect_parse_error(&c, v, "zero max_token_length", "max_token_length 0");
    patch_i32(&c, 0, -5);
    expect_parse_error(&c, v, "negative max_token_length", "max_token_length -5");
    patch_i32(&c, 0, 16);
    /* id 13 must be <0x0A>: here it spells <0x0B>. */
    size_t id13 = 4 + (8 + 5) + (8 + 5) + (8 + 6) + 10 * (8 + 6);
    c.p[id13 + 8 + 4] = 'B';
    expect_parse_error(&c, v, "wrong byte piece", "<0x0A>");
    free(c.p);

    emdpo_diag d2;
    CHECK_EQ_INT(emdpo_tokenizer_parse(im.p, im.len, 258, "small", &t, &d2), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_tokenizer_load("/nonexistent/tok.bin", v, &t, &d2), EMDPO_ERR_IO);
    CHECK(t == NULL && strcmp(d2.file, "/nonexistent/tok.bin") == 0);
    free(im.p);
}

/* ---- allocation failures ---------------------------------------------- */

static void test_failalloc(void) {
    image im = make_image(k_pieces, k_scores, K_N);
    int v = EMDPO_TOK_MIN_VOCAB + K_N;
    const char *text = "hello 日本 \xFF";
    int ok_parse = 0, ok_encode = 0;
    for (long k = 0; k < 64 && !(ok_parse && ok_encode); k++) {
        failalloc_install(k, 0);
        emdpo_tokenizer *t = NULL;
        emdpo_diag d;
        int rc = emdpo_tokenizer_parse(im.p, im.len, v, "x", &t, &d);
        CHECK_MSG(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM, "parse at failure %ld: rc %d", k, rc);
        if (rc == EMDPO_OK) {
            ok_parse = 1;
            int ids[32];
            size_t n;
            rc = emdpo_tokenizer_encode(t, text, strlen(text), EMDPO_TOK_ADD_BOS, ids, 32, &n);
            CHECK_MSG(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM, "encode: rc %d", rc);
            if (rc == EMDPO_OK) ok_encode = 1;
            emdpo_tokenizer_free(t);
        }
        CHECK_MSG(failalloc_live() == 0, "%ld blocks leaked at failure %ld", failalloc_live(), k);
        CHECK_EQ_INT(failalloc_size_errors(), 0);
        failalloc_uninstall();
    }
    CHECK(ok_parse && ok_encode);
    free(im.p);
}

/* ---- the real tok512.bin ---------------------------------------------- */

static void test_tok512(void) {
    if (access(TOK512, R_OK) != 0 || access(GREEDY_REF, R_OK) != 0) {
        printf("skip: %s or %s absent\n", TOK512, GREEDY_REF);
        return;
    }
    emdpo_tokenizer *t = NULL;
    emdpo_diag d;
    int rc = emdpo_tokenizer_load(TOK512, 512, &t, &d);
    CHECK_MSG(rc == EMDPO_OK, "%s: %s", TOK512, d.msg);
    if (!t) return;
    emdpo_tokenizer *t2 = NULL;
    CHECK_EQ_INT(emdpo_tokenizer_load(TOK512, 511, &t2, &d), EMDPO_ERR_PARSE);
    CHECK_EQ_INT(emdpo_tokenizer_load(TOK512, 513, &t2, &d), EMDPO_ERR_PARSE);
    CHECK_EQ_INT(emdpo_tokenizer_load(TOK512, 32000, &t2, &d), EMDPO_ERR_PARSE);
    CHECK(t2 == NULL);

    float score[512];
    size_t flen = 0;
    unsigned char *raw = (unsigned char *)testdata_slurp(TOK512, &flen);
    size_t pos = 4;
    for (int i = 0; raw && i < 512; i++) {
        memcpy(&score[i], raw + pos, 4);
        int32_t n;
        memcpy(&n, raw + pos + 4, 4);
        pos += 8 + (size_t)n;
    }
    free(raw);

    size_t jlen = 0;
    char *json = testdata_slurp(GREEDY_REF, &jlen);
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root = NULL;
    emdpo_json_error err;
    CHECK(json && emdpo_json_doc_create(&doc) == EMDPO_OK);
    if (doc && json) CHECK_EQ_INT(emdpo_json_parse(doc, json, jlen, &root, &err), EMDPO_OK);
    const emdpo_json *jids = emdpo_json_get(root, "token_ids_including_bos");
    const emdpo_json *jtext = emdpo_json_get(root, "text");
    CHECK(jids && jids->type == EMDPO_JSON_ARRAY && jtext && jtext->type == EMDPO_JSON_STRING);
    if (jids && jtext && jids->type == EMDPO_JSON_ARRAY && jtext->type == EMDPO_JSON_STRING) {
        size_t n = jids->len;
        int *ids = malloc(n * sizeof *ids);
        for (size_t i = 0; i < n; i++) ids[i] = (int)jids->u.elems[i].inum;
        size_t cap = n * 8 + 1, len = 0;
        char *out = malloc(cap);
        CHECK_EQ_INT(emdpo_tokenizer_decode(t, ids, n, out, cap, &len), EMDPO_OK);
        CHECK_MSG(len == jtext->len && memcmp(out, jtext->u.str, len) == 0,
                  "decoded reference ids differ from the reference text");
        /* The greedy sample is the tokenizer's own encoding of its text. */
        size_t ecap = emdpo_tokenizer_encode_bound(jtext->len), en = 0;
        int *enc = malloc(ecap * sizeof *enc);
        CHECK_EQ_INT(emdpo_tokenizer_encode(t, jtext->u.str, jtext->len, EMDPO_TOK_ADD_BOS, enc, ecap, &en),
                     EMDPO_OK);
        CHECK_MSG(en == n && memcmp(enc, ids, n * sizeof *ids) == 0,
                  "encoding the reference text gives %zu ids, not the %zu reference ids", en, n);
        check_text(t, score, jtext->u.str, jtext->len);
        free(enc);
        free(out);
        free(ids);
    }
    static const char *const texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "Tom said, \"Let's go!\"\n\nThe end.",
        "Zoë ate crème brûlée in Ōsaka — 東京 🙂 ✓",
        "\t\r\n  multiple   spaces  ",
        "\xC0\xAF\xED\xA0\x80\xF4\x90\x80\x80 invalid UTF-8",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) check_text(t, score, texts[i], strlen(texts[i]));
    int ids[8];
    size_t n = 0;
    CHECK_EQ_INT(emdpo_tokenizer_encode(t, "Once", 4, EMDPO_TOK_ADD_BOS, ids, 8, &n), EMDPO_OK);
    CHECK(n == 2 && ids[0] == 1 && ids[1] == 403);
    emdpo_json_doc_free(doc);
    free(json);
    emdpo_tokenizer_free(t);
}

/* Callers may pass no diag: errors still come back as statuses. */
static void test_null_diag(void) {
    emdpo_tokenizer *t = NULL;
    const unsigned char junk[3] = {1, 2, 3};
    CHECK_EQ_INT(emdpo_tokenizer_parse(junk, sizeof junk, 512, "junk", &t, NULL), EMDPO_ERR_PARSE);
    CHECK(t == NULL);
    CHECK_EQ_INT(emdpo_tokenizer_load("/nonexistent/tok.bin", 512, &t, NULL), EMDPO_ERR_IO);
}

int main(void) {
    test_null_diag();
    test_synthetic();
    test_malformed();
    test_failalloc();
    test_tok512();
    return check_report("test_tokenizer");
}
