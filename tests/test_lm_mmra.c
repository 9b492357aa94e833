/* MMRA-AE cross rewards for Llama policies (lm_mmra.h) on tiny random
 * models: the exact estimator against a direct computation from scored
 * log-probabilities, zero regret for identical policies, the sampled
 * estimator against its expectation computed from next-token
 * probabilities (one-token responses), and determinism. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "data/data.h"
#include "emdpo.h"
#include "lm/engine/llama.h"
#include "lm/engine/llama_model.h"
#include "lm/io/lm_batch.h"
#include "lm/io/tokenizer.h"
#include "lm/lm_train.h"
#include "lm/mmra/lm_mmra.h"
#include "testdata.h"



/* Random weights, scaled up so that the models disagree visibly. */
static emdpo_llama *make_model(uint64_t seed, float scale) {
    emdpo_llama_config c = {.dim = 16, .hidden_dim = 32, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2,
                            .vocab_size = TESTDATA_LETTER_VOCAB, .max_seq_len = 32, .tied = 0, .norm_eps = 1e-5f,
                            .rope_theta = 10000.0f};
    emdpo_llama *m = NULL;
    if (emdpo_llama_create(&c, &m)) return NULL;
    emdpo_llama_init(m, seed);
    for (size_t i = 0; i < m->num_params; i++) m->param_buf[i] *= scale;
    return m;
}

static emdpo_data *make_data(void) {
    emdpo_data_builder *b = NULL;
    if (emdpo_data_builder_create(0, &b)) return NULL;
    const char *two[2] = {"yes", "no"}, *three[3] = {"a b", "maybe", "c"};
    int rc = emdpo_data_builder_add(b, "u1", NULL, "is it", 2, 1, NULL, two) ||
             emdpo_data_builder_add(b, "u1", NULL, "say", 3, 2, NULL, three) ||
             emdpo_data_builder_add(b, "u2", NULL, "is it", 2, 1, NULL, two) ||
             emdpo_data_builder_add(b, "u2", NULL, "", 3, 1, NULL, three);
    emdpo_data *d = NULL;
    if (rc) {
        emdpo_data_builder_free(b);
        return NULL;
    }
    return emdpo_data_builder_finish(b, &d) ? NULL : d;
}

#define NPOL 3

/* The exact estimator written out from each item's log-probability. */
static void test_exact(emdpo_llama *const *pol, const emdpo_llama *ref, const emdpo_tokenizer *tok,
                       const emdpo_data *d) {
    emdpo_lm_mmra_opts o;
    emdpo_lm_mmra_opts_default(&o);
    o.beta = 0.3;
    double L[2 * NPOL];
    CHECK_EQ_INT(emdpo_lm_mmra_exact((const emdpo_llama *const *)pol, 2, NPOL, ref, tok, d, &o, L), EMDPO_OK);

    /* Same lengths and scoring batch as the library's defaults, so the
     * same padded forwards and the same bits up to the sums below. */
    emdpo_lm_set *set = NULL;
    CHECK_EQ_INT(emdpo_lm_set_from_data(d, tok, 32, 16, &set), EMDPO_OK);
    size_t n = (size_t)d->n_items;
    double *lp = malloc((NPOL + 1) * n * sizeof *lp);
    for (int b = 0; b < NPOL; b++) CHECK_EQ_INT(emdpo_lm_score(pol[b], set, 16, lp + b * n), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_score(ref, set, 16, lp + NPOL * n), EMDPO_OK);
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < NPOL; b++) {
            double sum = 0.0;
            for (int64_t j = 0; j < d->n_dec; j++) {
                double z = 0.0, e = 0.0;
                for (int64_t i = d->dec_item[j]; i < d->dec_item[j + 1]; i++) z += exp(lp[b * n + i]);
                for (int64_t i = d->dec_item[j]; i < d->dec_item[j + 1]; i++)
                    e += exp(lp[b * n + i]) / z * 0.3 * (lp[a * n + i] - lp[NPOL * n + i]);
                sum += e;
            }
            CHECK_CLOSE(L[a * NPOL + b], sum / (double)d->n_dec, 1e-10);
        }
    /* The types genuinely differ, so regrets are positive off the diagonal. */
    CHECK(L[0] > L[1] && L[NPOL + 1] > L[NPOL]);

    /* Identical policies: every mixture has zero regret; the reference
     * against itself has zero reward. */
    const emdpo_llama *same[2] = {pol[0], pol[0]};
    double L2[4], w[2], reg[2];
    CHECK_EQ_INT(emdpo_lm_mmra_exact(same, 2, 2, ref, tok, d, &o, L2), EMDPO_OK);
    emdpo_zerosum_result res;
    CHECK_EQ_INT(emdpo_mmra_ae(2, L2, EMDPO_GAME_LP, NULL, w, &res), EMDPO_OK);
    emdpo_mmra_mixture_regret(2, L2, w, reg);
    CHECK(fabs(reg[0]) < 1e-12 && fabs(reg[1]) < 1e-12 && fabs(res.value) < 1e-12);
    const emdpo_llama *refs[1] = {ref};
    CHECK_EQ_INT(emdpo_lm_mmra_exact(refs, 1, 1, ref, tok, d, &o, L2), EMDPO_OK);
    CHECK(L2[0] == 0.0);

    CHECK_EQ_INT(emdpo_lm_mmra_exact((const emdpo_llama *const *)pol, 3, 2, ref, tok, d, &o, L2),
                 EMDPO_ERR_INVALID_ARG);
    free(lp);
    emdpo_lm_set_free(set);
}

/* log-softmax of the next-token logits after BOS + prompt. */
static void next_logp(const emdpo_llama *m, const int *prompt, int n, double *lp) {
    emdpo_llama_kv *kv = NULL;
    const float *logits = NULL;
    if (emdpo_llama_kv_create(&m->config, 32, &kv)) abort();
    for (int t = 0; t < n; t++)
        if (emdpo_llama_step(m, kv, prompt[t], t, &logits)) abort();
    double mx = -INFINITY, z = 0.0;
    for (int v = 0; v < TESTDATA_LETTER_VOCAB; v++) mx = fmax(mx, logits[v]);
    for (int v = 0; v < TESTDATA_LETTER_VOCAB; v++) z += exp(logits[v] - mx);
    for (int v = 0; v < TESTDATA_LETTER_VOCAB; v++) lp[v] = logits[v] - mx - log(z);
    emdpo_llama_kv_free(kv);
}

/* One-token responses: y is one token, or the end (EOS or BOS, scored as
 * EOS), so E_{y ~ pi_b}[r_a(y)] is a sum over the vocabulary. */
static void test_sample(emdpo_llama *const *pol, const emdpo_llama *ref, const emdpo_tokenizer *tok) {
    emdpo_data_builder *bd = NULL;
    const char *two[2] = {"x", "y"};
    emdpo_data *d = NULL;
    CHECK(!emdpo_data_builder_create(0, &bd) && !emdpo_data_builder_add(bd, "u", NULL, "hi", 2, 1, NULL, two) &&
          !emdpo_data_builder_finish(bd, &d));
    if (!d) return;
    int prompt[16];
    size_t np;
    CHECK_EQ_INT(emdpo_tokenizer_encode(tok, "hi", 2, EMDPO_TOK_ADD_BOS, prompt, 16, &np), EMDPO_OK);
    double lp[NPOL + 1][TESTDATA_LETTER_VOCAB];
    for (int b = 0; b < NPOL; b++) next_logp(pol[b], prompt, (int)np, lp[b]);
    next_logp(ref, prompt, (int)np, lp[NPOL]);

    emdpo_lm_mmra_opts o;
    emdpo_lm_mmra_opts_default(&o);
    o.beta = 0.5;
    o.samples = 4000;
    o.max_tokens = 1;
    o.seed = 11;
    double L[2 * NPOL], se[2 * NPOL], L2[2 * NPOL], se2[2 * NPOL];
    int64_t draws = 0;
    const emdpo_llama *const *cp = (const emdpo_llama *const *)pol;
    CHECK_EQ_INT(emdpo_lm_mmra_sample(cp, 2, NPOL, ref, tok, d, &o, L, se, &draws), EMDPO_OK);
    CHECK_EQ_INT(draws, 4000);
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < NPOL; b++) {
            double want = 0.0;
            for (int v = 0; v < TESTDATA_LETTER_VOCAB; v++) {
                int end = v == EMDPO_TOK_BOS || v == EMDPO_TOK_EOS ? EMDPO_TOK_EOS : v;
                want += exp(lp[b][v]) * o.beta * (lp[a][end] - lp[NPOL][end]);
            }
            double got = L[a * NPOL + b], s = se[a * NPOL + b];
            CHECK_MSG(s > 0 && fabs(got - want) <= 4.5 * s + 1e-6, "L[%d][%d] = %.6f, expected %.6f (se %.6f)", a, b,
                      got, want, s);
        }
    /* Determinism; another seed draws other samples. */
    CHECK_EQ_INT(emdpo_lm_mmra_sample(cp, 2, NPOL, ref, tok, d, &o, L2, se2, NULL), EMDPO_OK);
    CHECK(memcmp(L, L2, sizeof L) == 0 && memcmp(se, se2, sizeof se) == 0);
    o.seed = 12;
    CHECK_EQ_INT(emdpo_lm_mmra_sample(cp, 2, NPOL, ref, tok, d, &o, L2, se2, NULL), EMDPO_OK);
    CHECK(memcmp(L, L2, sizeof L) != 0);
    /* A column's samples do not depend on the other columns. */
    o.seed = 11;
    double L1[4], se1[4];
    CHECK_EQ_INT(emdpo_lm_mmra_sample(cp, 2, 2, ref, tok, d, &o, L1, se1, NULL), EMDPO_OK);
    CHECK(L1[0] == L[0] && L1[1] == L[1] && L1[2] == L[NPOL] && L1[3] == L[NPOL + 1]);

    o.samples = 0;
    CHECK_EQ_INT(emdpo_lm_mmra_sample(cp, 2, NPOL, ref, tok, d, &o, L, se, NULL), EMDPO_ERR_INVALID_ARG);
    o.samples = 4;
    o.temperature = 0.0f;
    CHECK_EQ_INT(emdpo_lm_mmra_sample(cp, 2, NPOL, ref, tok, d, &o, L, se, NULL), EMDPO_ERR_INVALID_ARG);
    emdpo_data_free(d);
}

static void test_mixture_file(void) {
    char path[] = "/tmp/emdpo_mixture_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    double w[2] = {0.25, 0.75}, bad[2] = {0.5, 0.6};
    const char *members[2] = {"type_1", "type_\"2\""};
    CHECK_EQ_INT(emdpo_mixture_write(path, 2, w, members, 0.1, "/ref", NULL), EMDPO_OK);
    FILE *fp = fopen(path, "r");
    char buf[512] = {0};
    size_t n = fp ? fread(buf, 1, sizeof buf - 1, fp) : 0;
    if (fp) fclose(fp);
    CHECK(n > 0 && strstr(buf, "\"kind\": \"mixture\"") && strstr(buf, "\"weights\": [0.25, 0.75]") &&
          strstr(buf, "\"members\": [\"type_1\", \"type_\\\"2\\\"\"]") && strstr(buf, "\"beta\": 0.10000000000000001") &&
          strstr(buf, "\"reference\": \"/ref\""));
    CHECK_EQ_INT(emdpo_mixture_write(path, 2, bad, members, 0.1, "/ref", NULL), EMDPO_ERR_INVALID_ARG);
    remove(path);
    /* Standard errors of mixture regrets: a pure policy's own regret is 0. */
    double se[4] = {0.1, 0.2, 0.3, 0.4}, pure[2] = {1, 0}, out[2];
    emdpo_lm_mmra_mixture_se(2, 2, se, pure, out);
    CHECK(out[0] == 0.0 && fabs(out[1] - sqrt(0.3 * 0.3 + 0.4 * 0.4)) < 1e-15);
}

int main(void) {
    emdpo_tokenizer *tok = testdata_letter_tokenizer();
    emdpo_data *d = make_data();
    emdpo_llama *ref = make_model(1, 10.0f), *pol[NPOL];
    for (int b = 0; b < NPOL; b++) pol[b] = make_model(2 + (uint64_t)b, 10.0f);
    CHECK(tok && d && ref && pol[0] && pol[1] && pol[2]);
    if (tok && d && ref && pol[0] && pol[1] && pol[2]) {
        test_exact(pol, ref, tok, d);
        test_sample(pol, ref, tok);
    }
    test_mixture_file();
    for (int b = 0; b < NPOL; b++) emdpo_llama_free(pol[b]);
    emdpo_llama_free(ref);
    emdpo_data_free(d);
    emdpo_tokenizer_free(tok);
    return check_report("test_lm_mmra");
}
