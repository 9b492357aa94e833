/* libFuzzer target: the llama2.c tokenizer (src/tokenizer.c).
 * First byte even: bytes 2.. are a tokenizer.bin image for vocabulary size
 * 259 + byte 1; when it loads, a fixed text must survive encode -> decode.
 * First byte odd: bytes 1.. are text for a built-in vocabulary; encoding
 * must match a direct transcription of llama2.c's quadratic merge loop
 * (for short texts) and decode(encode(text)) must give the text back. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm/io/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const k_pieces[] = {
    " ", "a", "b", "e", "h", "l", "n", "o", "t", "é", "日", "本", "\xE2\x96\x81", " t", "th", "he", "the",
    " the", "in", "ing", "ll", "lo", "llo", "hello", " hello", "日本", "ab", "ba", "aba", "bab", "\xE2\x96"};
#define N_PIECES (sizeof k_pieces / sizeof *k_pieces)

static unsigned char *g_image;
static size_t g_len, g_cap;

static void put(const void *s, size_t n) {
    if (g_len + n > g_cap) {
        g_cap = (g_len + n) * 2;
        g_image = realloc(g_image, g_cap);
        if (!g_image) abort();
    }
    memcpy(g_image + g_len, s, n);
    g_len += n;
}

static void put_entry(float score, const char *s, size_t n) {
    int32_t k = (int32_t)n;
    put(&score, 4); /* the fuzzing hosts are little-endian */
    put(&k, 4);
    put(s, n);
}

static emdpo_tokenizer *builtin(float *score) {
    static emdpo_tokenizer *t;
    if (t) return t;
    int32_t max_len = 16;
    put(&max_len, 4);
    put_entry(0, "<unk>", 5);
    put_entry(0, "\n<s>\n", 5);
    put_entry(0, "\n</s>\n", 6);
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        put_entry(0, s, 6);
    }
    for (size_t i = 0; i < N_PIECES; i++) {
        /* Repeated scores make ties, which must resolve leftmost first. */
        score[i] = (float)((i * 7) % 5) - 2;
        put_entry(score[i], k_pieces[i], strlen(k_pieces[i]));
    }
    emdpo_diag d;
    if (emdpo_tokenizer_parse(g_image, g_len, EMDPO_TOK_MIN_VOCAB + (int)N_PIECES, "builtin", &t, &d))
        abort();
    return t;
}

static int ref_lookup(const char *s, size_t n) {
    for (size_t i = 0; i < N_PIECES; i++)
        if (strlen(k_pieces[i]) == n && memcmp(k_pieces[i], s, n) == 0) return EMDPO_TOK_MIN_VOCAB + (int)i;
    return -1;
}

static const char *piece(const emdpo_tokenizer *t, int id, size_t *n) {
    const char *p = emdpo_tokenizer_piece(t, id, n);
    if (!p) abort();
    return p;
}

/* llama2.c's encode(), without BOS/EOS. */
static size_t ref_encode(const emdpo_tokenizer *t, const float *score, const char *text, size_t len, int *tok) {
    size_t n = 0, blen = 0;
    char buf[64];
    if (len) tok[n++] = ref_lookup(" ", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c & 0xC0) != 0x80) blen = 0;
        buf[blen++] = (char)c;
        if (i + 1 < len && ((unsigned char)text[i + 1] & 0xC0) == 0x80 && blen < 4) continue;
        int id = ref_lookup(buf, blen);
        if (id >= 0)
            tok[n++] = id;
        else
            for (size_t j = 0; j < blen; j++) tok[n++] = (unsigned char)buf[j] + EMDPO_TOK_BYTE0;
        blen = 0;
    }
    for (;;) {
        float best = -1e30f;
        int best_id = -1;
        size_t best_i = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            if (tok[i] < EMDPO_TOK_MIN_VOCAB || tok[i + 1] < EMDPO_TOK_MIN_VOCAB) continue;
            size_t ka, kb;
            const char *a = piece(t, tok[i], &ka), *b = piece(t, tok[i + 1], &kb);
            if (ka + kb > sizeof buf) continue;
            memcpy(buf, a, ka);
            memcpy(buf + ka, b, kb);
            int id = ref_lookup(buf, ka + kb);
            if (id >= 0 && score[id - EMDPO_TOK_MIN_VOCAB] > best) {
                best = score[id - EMDPO_TOK_MIN_VOCAB];
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

/* decode(encode(text)) == text, with BOS and without the dummy prefix. */
static void round_trip(const emdpo_tokenizer *t, const char *text, size_t len, int *ids, char *out) {
    size_t cap = emdpo_tokenizer_encode_bound(len), n, got;
    if (emdpo_tokenizer_encode(t, text, len, EMDPO_TOK_ADD_BOS | EMDPO_TOK_ADD_EOS, ids, cap, &n)) abort();
    if (emdpo_tokenizer_decode(t, ids, n, out, len + 1, &got) || got != len || memcmp(out, text, len)) abort();
    if (emdpo_tokenizer_encode(t, text, len, EMDPO_TOK_NO_PREFIX, ids, cap, &n)) abort();
    if (emdpo_tokenizer_decode(t, ids, n, out, len + 1, &got) || got != len || memcmp(out, text, len)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static float score[N_PIECES];
    if (size < 1) return 0;
    if (data[0] & 1) {
        const emdpo_tokenizer *t = builtin(score);
        const char *text = (const char *)data + 1;
        size_t len = size - 1;
        int *ids = malloc(emdpo_tokenizer_encode_bound(len) * sizeof *ids);
        int *ref = malloc(emdpo_tokenizer_encode_bound(len) * sizeof *ref);
        char *out = malloc(len + 1);
        if (!ids || !ref || !out) abort();
        round_trip(t, text, len, ids, out);
        if (len <= 256) {
            size_t n, nref = ref_encode(t, score, text, len, ref);
            if (emdpo_tokenizer_encode(t, text, len, 0, ids, emdpo_tokenizer_encode_bound(len), &n)) abort();
            if (n != nref || memcmp(ids, ref, n * sizeof *ids)) abort();
        }
        free(ids);
        free(ref);
        free(out);
        return 0;
    }
    if (size < 2) return 0;
    emdpo_tokenizer *t = NULL;
    emdpo_diag d;
    if (emdpo_tokenizer_parse(data + 2, size - 2, EMDPO_TOK_MIN_VOCAB + data[1], "fuzz", &t, &d) == EMDPO_OK) {
        static const char text[] = "hello w\xC3\xB6rld \xE6\x97\xA5\xE6\x9C\xAC \xFF\x80 the end";
        int ids[sizeof text + 3];
        char out[sizeof text];
        round_trip(t, text, sizeof text - 1, ids, out);
        emdpo_tokenizer_free(t);
    }
    return 0;
}
