/* Generation quality: the metrics against values worked out by hand on
 * fixed samples, the closed set, and sampling from a tiny random Llama
 * (a policy against itself has KL 0; a mixture of one model twice is that
 * model; a seed fixes the result; bad options are refused). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "check.h"
#include "emdpo.h"
#include "failalloc.h"
#include "lm/engine/llama.h"
#include "lm/lm_genq.h"
#include "testdata.h"

static void test_repetition(void) {
    const int a[] = {1, 2, 3, 1, 2, 3, 1};
    /* bigrams 12 23 31 12 23 31: 3 distinct of 6 */
    CHECK_CLOSE(emdpo_genq_repetition(a, 7, 2), 0.5, 1e-15);
    /* 4-grams 1231 2312 3123 1231: 3 distinct of 4 */
    CHECK_CLOSE(emdpo_genq_repetition(a, 7, 4), 0.25, 1e-15);
    CHECK_CLOSE(emdpo_genq_repetition(a, 3, 1), 0.0, 0);
    const int b[] = {5, 5, 5};
    CHECK_CLOSE(emdpo_genq_repetition(b, 3, 1), 2.0 / 3.0, 1e-15);
    CHECK(emdpo_genq_repetition(b, 3, 4) == 0.0); /* no 4-gram */
    CHECK(emdpo_genq_repetition(b, 0, 1) == 0.0);
    /* "every every every every": one distinct bigram of three */
    const int c[] = {9, 9, 9, 9};
    CHECK_CLOSE(emdpo_genq_repetition(c, 4, 2), 2.0 / 3.0, 1e-15);
}

static void test_words_and_closed(void) {
    CHECK(emdpo_genq_words("  a bb\tc \n") == 3);
    CHECK(emdpo_genq_words("") == 0);
    CHECK(emdpo_genq_words("one") == 1);
    const char *texts[] = {" x ", "y", "x", "z\n", "x y"};
    char **set = NULL;
    int64_t n = 0;
    CHECK_EQ_INT(emdpo_genq_closed_set(texts, 5, &set, &n), EMDPO_OK);
    CHECK(n == 4);
    if (n == 4) {
        CHECK(strcmp(set[0], "x") == 0 && strcmp(set[1], "x y") == 0 && strcmp(set[2], "y") == 0 &&
              strcmp(set[3], "z") == 0);
    }
    emdpo_genq_closed_free(set, n);
    CHECK_EQ_INT(emdpo_genq_closed_set(texts, 0, &set, &n), EMDPO_OK);
    CHECK(n == 0);
    emdpo_genq_closed_free(set, n);
}

static void test_summarize(void) {
    /* Three samples: tokens {1,1}, {2}, {3,4,3}; texts " x" (valid), "w"
     * (not), "y " (valid); log pi - log ref = 0.5, 0, -1; EOS, max, EOS. */
    const int ids[] = {1, 1, 2, 3, 4, 3};
    const int64_t off[] = {0, 2, 3, 6};
    const char *text[] = {" x", "w", "y "};
    const double lp[] = {-1.0, -2.0, -3.0}, ref[] = {-1.5, -2.0, -2.0};
    const unsigned char eos[] = {1, 0, 1};
    const char *closed[] = {"x", "y", "z"};
    emdpo_genq g;
    CHECK_EQ_INT(emdpo_genq_summarize(3, ids, off, text, lp, ref, eos, 1, closed, 3, &g), EMDPO_OK);
    CHECK(g.n == 3);
    CHECK_CLOSE(g.valid, 2.0 / 3.0, 1e-15);
    CHECK_CLOSE(g.valid_se, 1.0 / 3.0, 1e-15); /* sqrt(2/3 * 1/3 / 2) */
    CHECK_CLOSE(g.mean_tokens, 2.0, 1e-15);
    CHECK_CLOSE(g.mean_words, 1.0, 1e-15);
    CHECK_CLOSE(g.repetition, (0.5 + 0.0 + 1.0 / 3.0) / 3.0, 1e-15);
    CHECK_CLOSE(g.eos, 2.0 / 3.0, 1e-15);
    CHECK_CLOSE(g.kl, -1.0 / 6.0, 1e-15);
    /* variance ((2/3)^2 + (1/6)^2 + (5/6)^2) / 2 = 7/12; se = sqrt(7/36) */
    CHECK_CLOSE(g.kl_se, sqrt(7.0 / 36.0), 1e-15);
    /* Without a closed set or log-probabilities those are NaN. */
    CHECK_EQ_INT(emdpo_genq_summarize(3, ids, off, text, NULL, NULL, eos, 2, NULL, 0, &g), EMDPO_OK);
    CHECK(isnan(g.valid) && isnan(g.valid_se) && isnan(g.kl) && isnan(g.kl_se));
    CHECK_CLOSE(g.repetition, (0.0 + 0.0 + 0.0) / 3.0, 0); /* 34 and 43 differ */
}

static emdpo_llama *make_model(uint64_t seed) {
    emdpo_llama_config c = {.dim = 16, .hidden_dim = 32, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1,
                            .vocab_size = TESTDATA_LETTER_VOCAB, .max_seq_len = 48, .tied = 0, .norm_eps = 1e-5f,
                            .rope_theta = 10000.0f};
    emdpo_llama *m = NULL;
    if (emdpo_llama_create(&c, &m)) return NULL;
    emdpo_llama_init(m, seed);
    return m;
}

static void test_sampling(const emdpo_tokenizer *tok) {
    emdpo_llama *m = make_model(3), *other = make_model(4);
    CHECK(m && other);
    if (!m || !other) return;
    const char *prompts[] = {"a b", "c", "d e f"};
    const char *closed[] = {"a", "b"};
    emdpo_genq_opts o;
    emdpo_genq_opts_init(&o);
    CHECK(o.samples == 5 && o.max_tokens == 64 && o.temperature == 1.0 && o.max_prompts == 20 && o.rep_n == 4);
    o.samples = 4;
    o.max_tokens = 12;
    emdpo_genq self, again, mix, vs;
    const emdpo_llama *one[1] = {m}, *two[2] = {m, m}, *pol[1] = {other};
    const double half[2] = {0.5, 0.5};
    CHECK_EQ_INT(emdpo_lm_genq(one, NULL, 1, m, tok, prompts, 3, closed, 2, &o, 5, &self), EMDPO_OK);
    CHECK(self.n == 12);
    CHECK(self.kl == 0.0 && self.kl_se == 0.0); /* the same model scores both sides */
    CHECK(self.valid >= 0.0 && self.valid <= 1.0);
    CHECK(self.mean_tokens > 0.0 && self.mean_tokens <= 12.0);
    CHECK(self.repetition >= 0.0 && self.repetition < 1.0);
    CHECK_EQ_INT(emdpo_lm_genq(one, NULL, 1, m, tok, prompts, 3, closed, 2, &o, 5, &again), EMDPO_OK);
    CHECK(memcmp(&self, &again, sizeof self) == 0); /* a seed fixes the result */
    /* A mixture of one model twice is that model: log pi_mix = log pi. */
    CHECK_EQ_INT(emdpo_lm_genq(two, half, 2, m, tok, prompts, 3, NULL, 0, &o, 5, &mix), EMDPO_OK);
    CHECK(fabs(mix.kl) < 1e-12);
    CHECK(isnan(mix.valid));
    /* Another model's samples carry a positive KL estimate (a random
     * model far from this one). */
    CHECK_EQ_INT(emdpo_lm_genq(pol, NULL, 1, m, tok, prompts, 3, NULL, 0, &o, 5, &vs), EMDPO_OK);
    CHECK_MSG(vs.kl > 0.0, "KL %g", vs.kl);
    /* Bad options. */
    o.samples = 0;
    CHECK_EQ_INT(emdpo_lm_genq(one, NULL, 1, m, tok, prompts, 3, NULL, 0, &o, 5, &vs), EMDPO_ERR_INVALID_ARG);
    o.samples = 2;
    o.temperature = 0.0;
    CHECK_EQ_INT(emdpo_lm_genq(one, NULL, 1, m, tok, prompts, 3, NULL, 0, &o, 5, &vs), EMDPO_ERR_INVALID_ARG);
    o.temperature = 1.0;
    CHECK_EQ_INT(emdpo_lm_genq(one, NULL, 1, m, tok, prompts, 0, NULL, 0, &o, 5, &vs), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_lm_genq(two, NULL, 2, m, tok, prompts, 3, NULL, 0, &o, 5, &vs), EMDPO_ERR_INVALID_ARG);
    emdpo_llama_free(m);
    emdpo_llama_free(other);
}

/* Every allocation failure comes back as NOMEM with nothing leaked, and
 * every free names the size it allocated. */
static void test_failalloc(const emdpo_tokenizer *tok) {
    emdpo_llama *m = make_model(6);
    if (!m) return;
    const char *prompts[] = {"a b", "c"};
    const char *texts[] = {"a", " b", "a"};
    const emdpo_llama *two[2] = {m, m};
    const double w[2] = {0.25, 0.75};
    emdpo_genq_opts o;
    emdpo_genq_opts_init(&o);
    o.samples = 2;
    o.max_tokens = 6;
    int done = 0;
    for (long n = 0; !done && n < 4000; n++) {
        failalloc_install(n, 0);
        char **closed = NULL;
        int64_t nc = 0;
        emdpo_genq g;
        int rc = emdpo_genq_closed_set(texts, 3, &closed, &nc);
        if (!rc) rc = emdpo_lm_genq(two, w, 2, m, tok, prompts, 2, (const char *const *)closed, nc, &o, 3, &g);
        done = rc == EMDPO_OK;
        CHECK_MSG(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM, "fail at %ld: %s", n, emdpo_status_name(rc));
        /* A success is whole: no metric lost to a failed scratch allocation. */
        if (!rc) CHECK(isfinite(g.repetition) && isfinite(g.valid) && isfinite(g.kl));
        emdpo_genq_closed_free(closed, nc);
        long live = failalloc_live();
        failalloc_uninstall();
        CHECK_MSG(live == 0, "fail at %ld: %ld blocks leaked", n, live);
    }
    CHECK(done);
    CHECK_EQ_INT(failalloc_size_errors(), 0);
    emdpo_llama_free(m);
}

int main(void) {
    test_repetition();
    test_words_and_closed();
    test_summarize();
    emdpo_tokenizer *tok = testdata_letter_tokenizer();
    CHECK(tok != NULL);
    if (tok) {
        test_sampling(tok);
        test_failalloc(tok);
    }
    emdpo_tokenizer_free(tok);
    return check_report("test_lm_genq");
}
