/* On-policy MMRA (lm_mmra_onpolicy.h): the step's estimator on a toy
 * categorical policy, where its expectation over every possible batch is
 * computed exactly and must equal the gradient of the objective (itself
 * checked against finite differences, KL part included); then on a tiny
 * Llama with one-token responses, where regrets are exact sums over the
 * vocabulary: the max regret falls from the SFT model's, the reported
 * regrets agree with the exact ones, runs repeat bit for bit, bad
 * arguments are refused and allocation failures are clean. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "data/data.h"
#include "emdpo.h"
#include "failalloc.h"
#include "lm/engine/llama.h"
#include "lm/engine/llama_model.h"
#include "lm/io/tokenizer.h"
#include "lm/mmra/lm_mmra_onpolicy.h"
#include "testdata.h"

/* ---- the estimator on a categorical toy ------------------------------------ */

#define NY 4 /* outcomes */
#define KT 3 /* types */

typedef struct toy {
    double q[NY];      /* reference */
    double ell[KT][NY]; /* each type's log-ratio log pi_k(y) - log q(y) */
    double V[KT], w[KT], beta;
} toy;

static void softmax(const double *th, double *p) {
    double mx = -INFINITY, z = 0.0;
    for (int y = 0; y < NY; y++) mx = fmax(mx, th[y]);
    for (int y = 0; y < NY; y++) z += p[y] = exp(th[y] - mx);
    for (int y = 0; y < NY; y++) p[y] /= z;
}

/* J(theta) = sum_k w_k [V_k - beta E_pi ell_k]^+ + beta KL(pi || q). */
static double toy_J(const toy *t, const double *th) {
    double p[NY], J = 0.0, kl = 0.0;
    softmax(th, p);
    for (int k = 0; k < KT; k++) {
        double e = 0.0;
        for (int y = 0; y < NY; y++) e += p[y] * t->ell[k][y];
        J += t->w[k] * fmax(t->V[k] - t->beta * e, 0.0);
    }
    for (int y = 0; y < NY; y++) kl += p[y] * log(p[y] / t->q[y]);
    return J + t->beta * kl;
}

/* Its gradient: d E_pi[f] / d theta = pi (f - E_pi f). */
static void toy_grad(const toy *t, const double *th, double *g) {
    double p[NY], f[NY], ef = 0.0;
    softmax(th, p);
    for (int y = 0; y < NY; y++) {
        f[y] = t->beta * log(p[y] / t->q[y]);
        for (int k = 0; k < KT; k++) {
            double e = 0.0;
            for (int z = 0; z < NY; z++) e += p[z] * t->ell[k][z];
            if (t->V[k] - t->beta * e > 0) f[y] -= t->w[k] * t->beta * t->ell[k][y];
        }
        ef += p[y] * f[y];
    }
    for (int y = 0; y < NY; y++) g[y] = p[y] * (f[y] - ef);
}

/* E over every batch of G prompts x S draws of sum_i coef_i grad log pi(y_i). */
static void expected_estimate(const toy *t, const double *th, int G, int S, double *eg, double *e_reg, double *e_kl) {
    int N = G * S, total = 1;
    double p[NY], lr[(KT + 1) * 8], coef[8], reg[KT], kl;
    softmax(th, p);
    for (int i = 0; i < N; i++) total *= NY;
    memset(eg, 0, NY * sizeof *eg);
    memset(e_reg, 0, KT * sizeof *e_reg);
    *e_kl = 0.0;
    for (int c = 0; c < total; c++) {
        int y[8], r = c;
        double prob = 1.0;
        for (int i = 0; i < N; i++, r /= NY) {
            y[i] = r % NY;
            prob *= p[y[i]];
            for (int k = 0; k < KT; k++) lr[k * N + i] = t->ell[k][y[i]];
            lr[KT * N + i] = log(p[y[i]] / t->q[y[i]]);
        }
        emdpo_lm_mmra_op_estimate(KT, G, S, t->beta, t->V, t->w, lr, reg, coef, &kl);
        /* Leave-one-out baselines centre each prompt's coefficients. */
        for (int g = 0; g < G; g++) {
            double s = 0.0;
            for (int i = 0; i < S; i++) s += coef[g * S + i];
            CHECK(fabs(s) < 1e-12);
        }
        for (int i = 0; i < N; i++)
            for (int z = 0; z < NY; z++) eg[z] += prob * coef[i] * ((z == y[i]) - p[z]);
        for (int k = 0; k < KT; k++) e_reg[k] += prob * reg[k];
        *e_kl += prob * kl;
    }
}

static void test_estimator(void) {
    toy t = {.q = {0.1, 0.2, 0.3, 0.4},
             .ell = {{0.5, -1.0, 2.0, 0.1}, {-0.3, 0.8, 0.0, 1.5}, {1.2, 0.4, -2.0, -0.6}},
             /* Types 0 and 2 regret under every batch, type 1 under none: no kink. */
             .V = {20.0, -20.0, 15.0},
             .w = {0.5, 0.3, 0.2},
             .beta = 0.7};
    double th[NY] = {0.3, -0.2, 0.9, 0.0}, g[NY], p[NY];
    toy_grad(&t, th, g);
    for (int y = 0; y < NY; y++) {
        double a[NY], b[NY], h = 1e-5;
        memcpy(a, th, sizeof a);
        memcpy(b, th, sizeof b);
        a[y] += h;
        b[y] -= h;
        CHECK_CLOSE(g[y], (toy_J(&t, a) - toy_J(&t, b)) / (2 * h), 1e-8);
    }
    /* The KL part alone (no type regrets) against finite differences too. */
    toy kl_only = t;
    for (int k = 0; k < KT; k++) kl_only.V[k] = -20.0;
    double gk[NY], eg[NY], e_reg[KT], e_kl;
    toy_grad(&kl_only, th, gk);
    for (int y = 0; y < NY; y++) {
        double a[NY], b[NY], h = 1e-5;
        memcpy(a, th, sizeof a);
        memcpy(b, th, sizeof b);
        a[y] += h;
        b[y] -= h;
        CHECK_CLOSE(gk[y], (toy_J(&kl_only, a) - toy_J(&kl_only, b)) / (2 * h), 1e-8);
    }
    softmax(th, p);
    double kl = 0.0;
    for (int y = 0; y < NY; y++) kl += p[y] * log(p[y] / t.q[y]);
    const int shapes[3][2] = {{1, 2}, {1, 3}, {2, 2}};
    for (int s = 0; s < 3; s++) {
        int G = shapes[s][0], S = shapes[s][1];
        expected_estimate(&kl_only, th, G, S, eg, e_reg, &e_kl);
        for (int y = 0; y < NY; y++) CHECK_CLOSE(eg[y], gk[y], 1e-12);
        expected_estimate(&t, th, G, S, eg, e_reg, &e_kl);
        for (int y = 0; y < NY; y++) CHECK_CLOSE(eg[y], g[y], 1e-12);
        CHECK_CLOSE(e_kl, kl, 1e-12);
        for (int k = 0; k < KT; k++) {
            double e = 0.0;
            for (int y = 0; y < NY; y++) e += p[y] * t.ell[k][y];
            CHECK_CLOSE(e_reg[k], t.V[k] - t.beta * e, 1e-12);
        }
    }
    /* The baseline cancels a constant added to every type's reward. */
    double lr[(KT + 1) * 2] = {0.5, -1.0, -0.3, 0.8, 1.2, 0.4, 0.1, 0.2}, lr2[(KT + 1) * 2], c1[2], c2[2], r1[KT];
    for (int i = 0; i < (KT + 1) * 2; i++) lr2[i] = lr[i] + (i < KT * 2 ? 3.0 : 0.0);
    double V2[KT] = {t.V[0] + 3 * t.beta, t.V[1] + 3 * t.beta, t.V[2] + 3 * t.beta};
    emdpo_lm_mmra_op_estimate(KT, 1, 2, t.beta, t.V, t.w, lr, r1, c1, &kl);
    emdpo_lm_mmra_op_estimate(KT, 1, 2, t.beta, V2, t.w, lr2, r1, c2, &kl);
    CHECK_CLOSE(c1[0], c2[0], 1e-12);
    CHECK_CLOSE(c1[1], c2[1], 1e-12);
}

/* ---- on a tiny Llama ------------------------------------------------------- */

#define K2 2
#define ROUNDS 10

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
    const char *two[2] = {"x", "y"};
    int rc = emdpo_data_builder_add(b, "u1", NULL, "hi", 2, 1, NULL, two) ||
             emdpo_data_builder_add(b, "u2", NULL, "yo", 2, 1, NULL, two) ||
             emdpo_data_builder_add(b, "u3", NULL, "a b", 2, 1, NULL, two);
    emdpo_data *d = NULL;
    if (rc) {
        emdpo_data_builder_free(b);
        return NULL;
    }
    return emdpo_data_builder_finish(b, &d) ? NULL : d;
}

/* log-softmax of the next-token logits after BOS + prompt. */
static void next_logp(const emdpo_llama *m, const emdpo_tokenizer *tok, const char *prompt, double *lp) {
    int ids[16];
    size_t n;
    emdpo_llama_kv *kv = NULL;
    const float *logits = NULL;
    if (emdpo_tokenizer_encode(tok, prompt, strlen(prompt), EMDPO_TOK_ADD_BOS, ids, 16, &n) ||
        emdpo_llama_kv_create(&m->config, 32, &kv))
        abort();
    for (size_t t = 0; t < n; t++)
        if (emdpo_llama_step(m, kv, ids[t], (int)t, &logits)) abort();
    double mx = -INFINITY, z = 0.0;
    for (int v = 0; v < TESTDATA_LETTER_VOCAB; v++) mx = fmax(mx, logits[v]);
    for (int v = 0; v < TESTDATA_LETTER_VOCAB; v++) z += exp(logits[v] - mx);
    for (int v = 0; v < TESTDATA_LETTER_VOCAB; v++) lp[v] = logits[v] - mx - log(z);
    emdpo_llama_kv_free(kv);
}

/* Exact regrets of cand with one-token responses: a response is a token,
 * or the end (EOS or BOS, scored as EOS), averaged over the decisions. */
static double exact_regrets(const emdpo_llama *const *types, const emdpo_llama *ref, const emdpo_llama *cand,
                            const emdpo_tokenizer *tok, const emdpo_data *d, double beta, double *reg) {
    static double lp[K2 + 2][TESTDATA_LETTER_VOCAB];
    double V[K2] = {0}, E[K2] = {0};
    for (int64_t j = 0; j < d->n_dec; j++) {
        for (int k = 0; k < K2; k++) next_logp(types[k], tok, d->dec_prompt[j], lp[k]);
        next_logp(ref, tok, d->dec_prompt[j], lp[K2]);
        next_logp(cand, tok, d->dec_prompt[j], lp[K2 + 1]);
        for (int v = 0; v < TESTDATA_LETTER_VOCAB; v++) {
            int e = v == EMDPO_TOK_BOS || v == EMDPO_TOK_EOS ? EMDPO_TOK_EOS : v;
            for (int k = 0; k < K2; k++) {
                double r = beta * (lp[k][e] - lp[K2][e]);
                V[k] += exp(lp[k][v]) * r;
                E[k] += exp(lp[K2 + 1][v]) * r;
            }
        }
    }
    double mx = -INFINITY;
    for (int k = 0; k < K2; k++) {
        reg[k] = (V[k] - E[k]) / (double)d->n_dec;
        mx = fmax(mx, reg[k]);
    }
    return mx;
}

typedef struct fixture {
    emdpo_tokenizer *tok;
    emdpo_data *d;
    emdpo_llama *sft, *types[K2];
} fixture;

static void base_opts(emdpo_lm_mmra_op_opts *o) {
    emdpo_lm_mmra_op_opts_default(o);
    o->rounds = ROUNDS;
    o->steps = 5;
    o->eta = 0.5;
    o->beta = 1.0;
    o->optim.lr = 1e-2;
    o->batch = 3;
    o->samples = 32;
    o->eval_samples = 256;
    o->max_tokens = 1;
    o->score_batch = 16;
    o->seed = 3;
}

static int run_op(const fixture *f, const emdpo_lm_mmra_op_opts *o, emdpo_llama *pi, emdpo_mmra_round *rounds,
                  emdpo_lm_mmra_op_result *res) {
    res->rounds = rounds;
    return emdpo_lm_mmra_onpolicy(f->sft, (const emdpo_llama *const *)f->types, K2, f->tok, f->d, o, pi, res);
}

static void test_decreases(const fixture *f) {
    emdpo_lm_mmra_op_opts o;
    base_opts(&o);
    emdpo_llama *pi = make_model(50, 1.0f);
    emdpo_mmra_round rounds[ROUNDS];
    emdpo_lm_mmra_op_result res;
    CHECK_EQ_INT(run_op(f, &o, pi, rounds, &res), EMDPO_OK);
    const emdpo_llama *const *types = (const emdpo_llama *const *)f->types;
    double r0[K2], r1[K2];
    double before = exact_regrets(types, f->sft, f->sft, f->tok, f->d, o.beta, r0);
    double after = exact_regrets(types, f->sft, pi, f->tok, f->d, o.beta, r1);
    CHECK_MSG(before > 1.0 && after < 0.75 * before, "exact max regret %.4f -> %.4f", before, after);
    /* The sampled evaluations agree with the exact regrets. */
    CHECK_EQ_INT(res.draws, f->d->n_dec * o.eval_samples);
    for (int k = 0; k < K2; k++) {
        CHECK_MSG(fabs(res.start.regret[k] - r0[k]) < 4.5 * res.start.regret_se[k] + 1e-9,
                  "start regret %d: %.4f vs exact %.4f (se %.4f)", k, res.start.regret[k], r0[k],
                  res.start.regret_se[k]);
        CHECK_MSG(fabs(res.final.regret[k] - r1[k]) < 4.5 * res.final.regret_se[k] + 1e-9,
                  "final regret %d: %.4f vs exact %.4f (se %.4f)", k, res.final.regret[k], r1[k],
                  res.final.regret_se[k]);
    }
    /* Weights: uniform first, then MW on the positive part of the round's regrets. */
    CHECK(rounds[0].w[0] == 0.5 && rounds[0].w[1] == 0.5 && res.final.round == ROUNDS);
    for (int r = 0; r < ROUNDS; r++) {
        double w[K2] = {rounds[r].w[0], rounds[r].w[1]}, gain[K2];
        for (int k = 0; k < K2; k++) gain[k] = fmax(rounds[r].regret[k], 0.0);
        emdpo_lm_mmra_mw(K2, o.eta, gain, w);
        const double *next = r + 1 < ROUNDS ? rounds[r + 1].w : res.final.w;
        CHECK(next[0] == w[0] && next[1] == w[1]);
        CHECK(isfinite(rounds[r].loss) && isfinite(rounds[r].kl) && isnan(rounds[r].regret_se[0]));
    }
    emdpo_llama_free(pi);
}

/* The same seed gives the same bits; another seed, other draws. */
static void test_determinism(const fixture *f) {
    emdpo_lm_mmra_op_opts o;
    base_opts(&o);
    o.rounds = 2;
    o.steps = 2;
    o.eval_samples = 0;
    o.max_tokens = 3;
    o.score_batch = 20; /* one step's 96 draws take several forwards */
    emdpo_llama *p1 = make_model(50, 1.0f), *p2 = make_model(51, 1.0f);
    emdpo_mmra_round r1[2], r2[2];
    emdpo_lm_mmra_op_result res1, res2;
    CHECK_EQ_INT(run_op(f, &o, p1, r1, &res1), EMDPO_OK);
    CHECK_EQ_INT(run_op(f, &o, p2, r2, &res2), EMDPO_OK);
    CHECK(memcmp(p1->param_buf, p2->param_buf, p1->num_params * sizeof(float)) == 0);
    CHECK(memcmp(r1, r2, sizeof r1) == 0 && memcmp(&res1.final, &res2.final, sizeof res1.final) == 0);
    o.seed = 4;
    CHECK_EQ_INT(run_op(f, &o, p2, r2, &res2), EMDPO_OK);
    CHECK(memcmp(p1->param_buf, p2->param_buf, p1->num_params * sizeof(float)) != 0);
    emdpo_llama_free(p1);
    emdpo_llama_free(p2);
}

static void test_bad_args(const fixture *f) {
    emdpo_lm_mmra_op_opts o;
    emdpo_llama *pi = make_model(50, 1.0f);
    emdpo_mmra_round rounds[ROUNDS];
    emdpo_lm_mmra_op_result res;
    for (int c = 0; c < 5; c++) {
        base_opts(&o);
        if (c == 0) o.samples = 1; /* no leave-one-out baseline */
        if (c == 1) o.rounds = 0;
        if (c == 2) o.eta = -1.0;
        if (c == 3) o.max_tokens = 0;
        if (c == 4) o.batch = 0;
        CHECK_EQ_INT(run_op(f, &o, pi, rounds, &res), EMDPO_ERR_INVALID_ARG);
    }
    base_opts(&o);
    o.max_length = 64;
    CHECK_EQ_INT(run_op(f, &o, pi, rounds, &res), EMDPO_ERR_LIMIT);
    base_opts(&o);
    f->types[1]->config.tied = 1;
    CHECK_EQ_INT(run_op(f, &o, pi, rounds, &res), EMDPO_ERR_INVALID_ARG);
    f->types[1]->config.tied = 0;
    emdpo_llama_free(pi);
}

static void test_failalloc(const fixture *f) {
    emdpo_lm_mmra_op_opts o;
    base_opts(&o);
    o.rounds = 1;
    o.steps = 2;
    o.samples = 2;
    o.eval_samples = 0;
    o.score_batch = 4; /* several forwards per step */
    emdpo_llama *pi = make_model(50, 1.0f);
    emdpo_mmra_round rounds[1];
    emdpo_lm_mmra_op_result res;
    int done = 0;
    for (long n = 0; !done && n < 2000; n++) {
        failalloc_install(n, 0);
        int rc = run_op(f, &o, pi, rounds, &res);
        done = rc == EMDPO_OK;
        CHECK(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM);
        long live = failalloc_live();
        failalloc_uninstall();
        CHECK_MSG(live == 0, "fail at %ld: %ld blocks leaked", n, live);
    }
    CHECK(done);
    CHECK_EQ_INT(failalloc_size_errors(), 0);
    emdpo_llama_free(pi);
}

int main(void) {
    test_estimator();
    fixture f = {0};
    f.tok = testdata_letter_tokenizer();
    f.d = make_data();
    f.sft = make_model(1, 1.0f);
    f.types[0] = make_model(2, 4.0f);
    f.types[1] = make_model(3, 4.0f);
    CHECK(f.tok && f.d && f.sft && f.types[0] && f.types[1]);
    if (f.tok && f.d && f.sft && f.types[0] && f.types[1]) {
        test_decreases(&f);
        test_determinism(&f);
        test_bad_args(&f);
        test_failalloc(&f);
    }
    for (int k = 0; k < K2; k++) emdpo_llama_free(f.types[k]);
    emdpo_llama_free(f.sft);
    emdpo_data_free(f.d);
    emdpo_tokenizer_free(f.tok);
    return check_report("test_lm_mmra_onpolicy");
}
