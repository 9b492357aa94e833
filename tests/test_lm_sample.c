/* Sampling and generation: the sampler's distribution against one computed
 * here from its definition, empirical frequencies against it, greedy =
 * argmax, determinism, the stop rules, batched = one-at-a-time generation,
 * and greedy stories260K against its float64 reference (skipped without
 * ../shared). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/rng.h"
#include "check.h"
#include "testdata.h"
#include "emdpo.h"
#include "lm/engine/llama.h"
#include "lm/engine/llama_model.h"
#include "lm/engine/lm_sample.h"
#include "lm/io/llama2c.h"

#define REF "../shared/data/models/stories260K_greedy_reference.json"
#define MODEL "../shared/data/models/stories260K.bin"

#define NV 10
static const float LOGITS[NV] = {1.0f, 0.5f, 2.0f, -1.0f, 0.3f, 1.5f, 0.0f, -0.5f, 0.8f, 1.5f};

/* The distribution written out from the definition: softmax(l / temp);
 * the top_k largest (lower id first on ties); the shortest prefix of those
 * reaching top_p of their mass; renormalized. */
static void exact(const float *l, int V, double temp, int top_k, double top_p, double *p) {
    int order[NV];
    double w[NV], mx = l[0];
    for (int i = 1; i < V; i++) mx = fmax(mx, l[i]);
    for (int i = 0; i < V; i++) {
        w[i] = exp((l[i] - mx) / temp);
        order[i] = i;
    }
    for (int i = 1; i < V; i++) /* insertion sort, stable: equal weights keep id order */
        for (int j = i; j > 0 && w[order[j]] > w[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    int n = top_k ? top_k : V;
    double m = 0.0;
    for (int i = 0; i < n; i++) m += w[order[i]];
    double cum = 0.0;
    int keep = 0;
    while (keep < n) {
        cum += w[order[keep++]];
        if (cum >= top_p * m) break;
    }
    memset(p, 0, (size_t)V * sizeof *p);
    for (int i = 0; i < keep; i++) p[order[i]] = w[order[i]] / cum;
}

static void check_distribution(double temp, int top_k, double top_p) {
    emdpo_sampler *s;
    CHECK_EQ_INT(emdpo_sampler_create(NV, (float)temp, top_k, (float)top_p, &s), EMDPO_OK);
    double want[NV], got[NV];
    exact(LOGITS, NV, temp, top_k, top_p, want);
    emdpo_sample_probs(s, LOGITS, got);
    double worst = 0.0;
    for (int i = 0; i < NV; i++) worst = fmax(worst, fabs(got[i] - want[i]));
    CHECK_MSG(worst < 1e-6, "T=%g k=%d p=%g: probs off by %g", temp, top_k, top_p, worst);

    enum { DRAWS = 200000 };
    long count[NV] = {0};
    emdpo_rng r;
    emdpo_rng_seed(&r, 42, 0);
    for (int d = 0; d < DRAWS; d++) count[emdpo_sample(s, LOGITS, &r)]++;
    for (int i = 0; i < NV; i++) {
        double f = (double)count[i] / DRAWS, se = sqrt(want[i] * (1 - want[i]) / DRAWS);
        if (want[i] == 0.0)
            CHECK_MSG(count[i] == 0, "T=%g k=%d p=%g: id %d drawn %ld times outside the kept set", temp, top_k,
                      top_p, i, count[i]);
        else
            CHECK_MSG(fabs(f - want[i]) <= 4.5 * se + 1e-12, "T=%g k=%d p=%g: id %d freq %.5f vs %.5f (se %.5f)", temp, top_k,
                      top_p, i, f, want[i], se);
    }
    emdpo_sampler_free(s);
}

static void test_sampler(void) {
    emdpo_sampler *s = NULL;
    CHECK_EQ_INT(emdpo_sampler_create(0, 1.0f, 0, 1.0f, &s), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_sampler_create(NV, -0.1f, 0, 1.0f, &s), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_sampler_create(NV, NAN, 0, 1.0f, &s), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_sampler_create(NV, 1.0f, NV + 1, 1.0f, &s), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_sampler_create(NV, 1.0f, 0, 0.0f, &s), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_sampler_create(NV, 1.0f, 0, 1.01f, &s), EMDPO_ERR_INVALID_ARG);
    CHECK(s == NULL);

    check_distribution(1.0, 0, 1.0);
    check_distribution(0.7, 0, 1.0);
    check_distribution(2.0, 3, 1.0);
    check_distribution(1.0, 0, 0.8);
    check_distribution(1.3, 5, 0.7);
    check_distribution(1.0, 1, 1.0);  /* top-1 is greedy */
    check_distribution(0.5, 0, 0.01); /* a nucleus of one id */

    /* Greedy: the argmax, the lower id on a tie (ids 5 and 9 tie below 2). */
    CHECK_EQ_INT(emdpo_sampler_create(NV, 0.0f, 0, 1.0f, &s), EMDPO_OK);
    emdpo_rng r;
    emdpo_rng_seed(&r, 1, 0);
    emdpo_rng before = r;
    CHECK_EQ_INT(emdpo_sample(s, LOGITS, &r), 2);
    CHECK(memcmp(&r, &before, sizeof r) == 0); /* greedy draws nothing */
    float tied[NV];
    memcpy(tied, LOGITS, sizeof tied);
    tied[2] = 0.0f;
    CHECK_EQ_INT(emdpo_sample(s, tied, &r), 5);
    emdpo_sampler_free(s);

    /* Same seed, same draws; another seed, other draws. */
    CHECK_EQ_INT(emdpo_sampler_create(NV, 1.0f, 0, 0.9f, &s), EMDPO_OK);
    int a[64], b[64], c[64], differ = 0;
    emdpo_rng ra, rb, rc;
    emdpo_rng_seed(&ra, 7, 3);
    emdpo_rng_seed(&rb, 7, 3);
    emdpo_rng_seed(&rc, 8, 3);
    for (int i = 0; i < 64; i++) {
        a[i] = emdpo_sample(s, LOGITS, &ra);
        b[i] = emdpo_sample(s, LOGITS, &rb);
        c[i] = emdpo_sample(s, LOGITS, &rc);
        differ |= a[i] != c[i];
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(differ);
    emdpo_sampler_free(s);
}

/* A small random model, so that generation is tested without ../shared;
 * with variants, every part a family adds to Llama (an explicit head size,
 * biases, q/k norms) and a sliding window as long as the context. */
static emdpo_llama *tiny_model(int variants) {
    emdpo_llama_config c = {.dim = 32, .hidden_dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                            .vocab_size = 300, .max_seq_len = 48, .tied = 1, .norm_eps = 1e-5f,
                            .rope_theta = 10000.0f};
    if (variants) {
        c.head_dim = 12;
        c.qkv_bias = c.o_bias = c.qk_norm = 1;
        c.sliding_window = 48;
    }
    emdpo_llama *m = NULL;
    if (emdpo_llama_create(&c, &m)) return NULL;
    emdpo_llama_init(m, 3);
    /* biases away from their init of 0 */
    for (size_t i = 0; variants && i < (size_t)c.n_layers * c.dim; i++) m->params.bo[i] = 0.01f * (float)(i % 7);
    /* Larger weights than training's init give peaked, varied logits. */
    for (size_t i = 0; i < m->num_params; i++) m->param_buf[i] *= variants ? 8.0f : 20.0f;
    return m;
}

static void test_generate(int variants) {
    emdpo_llama *m = tiny_model(variants);
    CHECK(m != NULL);
    if (!m) return;
    const emdpo_llama_config *c = &m->config;
    emdpo_llama_kv *kv;
    CHECK_EQ_INT(emdpo_llama_kv_create(c, c->max_seq_len, &kv), EMDPO_OK);
    int p0[] = {1, 100, 200}, p1[] = {1}, p2[] = {1, 7, 8, 9, 10, 11};
    const int *prompts[] = {p0, p1, p2, p0};
    int plen[] = {3, 1, 6, 3};
    enum { NS = 4, MAXN = 40 };
    float temps[] = {0.0f, 1.0f};
    for (int ti = 0; ti < 2; ti++) {
        emdpo_sampler *s;
        CHECK_EQ_INT(emdpo_sampler_create(c->vocab_size, temps[ti], 0, 0.95f, &s), EMDPO_OK);
        int out[NS * MAXN], n_out[NS], stop[NS];
        CHECK_EQ_INT(emdpo_generate_batch(m, s, 11, prompts, plen, NS, MAXN, c->max_seq_len, out, n_out, stop),
                     EMDPO_OK);
        for (int i = 0; i < NS; i++) {
            int one[MAXN], n1, stop1;
            emdpo_rng r;
            emdpo_rng_seed(&r, 11, (uint64_t)i);
            CHECK_EQ_INT(emdpo_generate(m, kv, s, &r, prompts[i], plen[i], MAXN, one, &n1, &stop1), EMDPO_OK);
            CHECK_MSG(n1 == n_out[i] && stop1 == stop[i] && memcmp(one, out + i * MAXN, (size_t)n1 * sizeof(int)) == 0,
                      "T=%g sequence %d: batched (%d tokens, stop %d) differs from single (%d, stop %d)", temps[ti], i,
                      n_out[i], stop[i], n1, stop1);
            for (int j = 0; j < n_out[i]; j++) { /* a stop id ends a sample and is never part of it */
                int t = out[i * MAXN + j];
                CHECK(t >= 0 && t < c->vocab_size && t != EMDPO_TOK_BOS && t != EMDPO_TOK_EOS);
            }
        }
        if (ti == 0) /* greedy: the same prompt gives the same text */
            CHECK(n_out[0] == n_out[3] && memcmp(out, out + 3 * MAXN, (size_t)n_out[0] * sizeof(int)) == 0);
        else /* sampled: streams differ */
            CHECK(n_out[0] != n_out[3] || memcmp(out, out + 3 * MAXN, (size_t)n_out[0] * sizeof(int)) != 0);

        /* Stop rules: max_new, then a context of 10 positions. */
        int n_small, why;
        emdpo_rng r;
        emdpo_rng_seed(&r, 1, 0);
        int buf[MAXN];
        CHECK_EQ_INT(emdpo_generate(m, kv, s, &r, p2, 6, 2, buf, &n_small, &why), EMDPO_OK);
        CHECK(n_small <= 2 && (why == EMDPO_GEN_MAX) == (n_small == 2));
        int ctx_out[MAXN];
        const int *pp[] = {p2};
        int pl[] = {6};
        CHECK_EQ_INT(emdpo_generate_batch(m, s, 1, pp, pl, 1, MAXN, 10, ctx_out, &n_small, &why), EMDPO_OK);
        CHECK(n_small <= 4 && (why == EMDPO_GEN_CONTEXT) == (n_small == 4));
        emdpo_sampler_free(s);
    }

    /* Bad arguments. */
    emdpo_sampler *s, *s_other;
    CHECK_EQ_INT(emdpo_sampler_create(c->vocab_size, 1.0f, 0, 1.0f, &s), EMDPO_OK);
    CHECK_EQ_INT(emdpo_sampler_create(c->vocab_size + 1, 1.0f, 0, 1.0f, &s_other), EMDPO_OK);
    emdpo_rng r;
    emdpo_rng_seed(&r, 1, 0);
    int buf[8], n1, bad_tok[] = {1, 300};
    const int *pbad[] = {bad_tok};
    int lbad[] = {2}, lzero[] = {0};
    CHECK_EQ_INT(emdpo_generate(m, kv, s, &r, p0, 0, 8, buf, &n1, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_generate(m, kv, s, &r, bad_tok, 2, 8, buf, &n1, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_generate(m, kv, s_other, &r, p0, 3, 8, buf, &n1, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_generate_batch(m, s, 1, pbad, lbad, 1, 8, 10, buf, &n1, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_generate_batch(m, s, 1, pbad, lzero, 1, 8, 10, buf, &n1, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_generate_batch(m, s, 1, prompts, plen, 1, 8, c->max_seq_len + 1, buf, &n1, NULL),
                 EMDPO_ERR_INVALID_ARG);
    emdpo_sampler_free(s_other);
    emdpo_sampler_free(s);
    emdpo_llama_kv_free(kv);
    emdpo_llama_free(m);
}

/* Greedy generation, single and batched, gives the reference's 256 tokens. */
static void test_reference(void) {
    size_t len;
    char *text = testdata_slurp(REF, &len);
    if (!text) {
        printf("skipping the stories260K reference: %s not found\n", REF);
        return;
    }
    emdpo_llama *m = NULL;
    emdpo_diag diag;
    emdpo_json_doc *doc = NULL;
    const emdpo_json *root, *ids = NULL;
    emdpo_json_error jerr;
    CHECK_EQ_INT(emdpo_llama2c_load(MODEL, &m, &diag), EMDPO_OK);
    CHECK_EQ_INT(emdpo_json_doc_create(&doc), EMDPO_OK);
    if (doc && emdpo_json_parse(doc, text, len, &root, &jerr) == EMDPO_OK)
        ids = emdpo_json_get(root, "token_ids_including_bos");
    CHECK(ids && ids->type == EMDPO_JSON_ARRAY && ids->len == 257);
    if (m && ids && ids->len == 257) {
        enum { N = 256 };
        int ref[N], out[3 * N], n_out[3], stop[3], n1, stop1, bos = 1;
        for (int i = 0; i < N; i++) ref[i] = (int)ids->u.elems[i + 1].inum;
        emdpo_sampler *s;
        emdpo_llama_kv *kv;
        emdpo_rng r;
        emdpo_rng_seed(&r, 1, 0);
        CHECK_EQ_INT(emdpo_sampler_create(m->config.vocab_size, 0.0f, 0, 1.0f, &s), EMDPO_OK);
        CHECK_EQ_INT(emdpo_llama_kv_create(&m->config, N + 1, &kv), EMDPO_OK);
        CHECK_EQ_INT(emdpo_generate(m, kv, s, &r, &bos, 1, N, out, &n1, &stop1), EMDPO_OK);
        CHECK(n1 == N && stop1 == EMDPO_GEN_MAX && memcmp(out, ref, sizeof ref) == 0);
        const int *prompts[] = {&bos, &bos, &bos};
        int plen[] = {1, 1, 1};
        CHECK_EQ_INT(emdpo_generate_batch(m, s, 5, prompts, plen, 3, N, N + 1, out, n_out, stop), EMDPO_OK);
        for (int i = 0; i < 3; i++)
            CHECK(n_out[i] == N && stop[i] == EMDPO_GEN_MAX && memcmp(out + i * N, ref, sizeof ref) == 0);
        emdpo_llama_kv_free(kv);
        emdpo_sampler_free(s);
    }
    emdpo_json_doc_free(doc);
    emdpo_llama_free(m);
    free(text);
}

int main(void) {
    test_sampler();
    test_generate(0);
    test_generate(1);
    test_reference();
    return check_report("test_lm_sample");
}
