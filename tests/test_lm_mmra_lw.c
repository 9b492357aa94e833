/* MMRA-LW (lm_mmra_lw.h) on tiny random Llama models: the multiplicative
 * weights formula and the simplex, the per-decision weights
 * sum_k w_k gamma_jk and that each round trains with exactly those (a
 * trainer replayed by hand gives the same bits), regrets equal to
 * lm_mmra.h's with the policy as column K, the returned round, one type
 * reducing to DPO weighted by gamma, determinism, the sampled estimator,
 * bad arguments, and allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "data/data.h"
#include "emdpo.h"
#include "failalloc.h"
#include "lm/engine/llama.h"
#include "lm/io/lm_batch.h"
#include "lm/io/tokenizer.h"
#include "lm/lm_train.h"
#include "lm/mmra/lm_mmra.h"
#include "lm/mmra/lm_mmra_lw.h"
#include "testdata.h"

#define K2 2
#define ROUNDS 3

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

/* Two annotators who prefer "yes", two who prefer "no". */
static emdpo_data *make_data(void) {
    emdpo_data_builder *b = NULL;
    if (emdpo_data_builder_create(0, &b)) return NULL;
    const char *yes[2] = {"yes", "no"}, *no[2] = {"no", "yes"}, *y3[3] = {"yes", "maybe", "no"};
    const char *n3[3] = {"no", "maybe", "yes"};
    int rc = emdpo_data_builder_add(b, "u1", NULL, "is it", 2, 1, NULL, yes) ||
             emdpo_data_builder_add(b, "u1", NULL, "say", 3, 2, NULL, y3) ||
             emdpo_data_builder_add(b, "u2", NULL, "is it", 2, 1, NULL, yes) ||
             emdpo_data_builder_add(b, "u3", NULL, "is it", 2, 1, NULL, no) ||
             emdpo_data_builder_add(b, "u3", NULL, "say", 3, 1, NULL, n3) ||
             emdpo_data_builder_add(b, "u4", NULL, "say", 2, 1, NULL, no);
    emdpo_data *d = NULL;
    if (rc) {
        emdpo_data_builder_free(b);
        return NULL;
    }
    return emdpo_data_builder_finish(b, &d) ? NULL : d;
}

/* gamma (n_dec, K) from per-annotator rows. */
static double *decision_gamma(const emdpo_data *d, int K, const double *ga) {
    double *g = malloc((size_t)d->n_dec * K * sizeof *g), col[8], wd[64];
    for (int k = 0; k < K; k++) {
        for (int64_t i = 0; i < d->n_annot; i++) col[i] = ga[i * K + k];
        emdpo_data_expand_weights(d, col, wd);
        for (int64_t j = 0; j < d->n_dec; j++) g[j * K + k] = wd[j];
    }
    return g;
}

typedef struct fixture {
    emdpo_tokenizer *tok;
    emdpo_data *d;
    emdpo_llama *sft, *types[K2];
    double *gamma; /* (n_dec, K2) */
} fixture;

static void base_opts(emdpo_lm_mmra_lw_opts *o) {
    emdpo_lm_mmra_lw_opts_default(o);
    o->rounds = ROUNDS;
    o->steps = 2;
    o->eta = 3.0;
    o->beta = 0.5;
    emdpo_optim_config_init(&o->optim, EMDPO_OPTIM_ADAMW);
    o->optim.lr = 1e-2;
    o->batch = 2;
    o->seed = 5;
}

static void test_mw(void) {
    double w[3] = {0.2, 0.3, 0.5}, g[3] = {0.4, -1.0, 2.0}, want[3], z = 0.0;
    for (int k = 0; k < 3; k++) z += want[k] = w[k] * exp(0.7 * g[k]);
    emdpo_lm_mmra_mw(3, 0.7, g, w);
    for (int k = 0; k < 3; k++) CHECK_CLOSE(w[k], want[k] / z, 1e-15);
    CHECK_CLOSE(w[0] + w[1] + w[2], 1.0, 1e-15);
    /* A zero weight stays zero; a huge step neither overflows nor leaves the simplex. */
    double w0[3] = {0.0, 0.5, 0.5}, big[3] = {1e3, -1e3, 10.0};
    emdpo_lm_mmra_mw(3, 1e4, big, w0);
    CHECK(w0[0] == 0.0 && w0[1] == 0.0 && w0[2] == 1.0);
    double w1[3] = {0.25, 0.25, 0.5};
    emdpo_lm_mmra_mw(3, 1e4, big, w1);
    CHECK(w1[0] == 1.0 && w1[1] == 0.0 && w1[2] == 0.0);
}

static void test_decision_weights(const fixture *f) {
    double w[K2] = {0.3, 0.7}, wd[16];
    emdpo_lm_mmra_lw_decision_weights(f->d->n_dec, K2, f->gamma, w, wd);
    /* Decision 3 is u3's first: gamma (0.2, 0.8). */
    CHECK_CLOSE(wd[3], 0.3 * 0.2 + 0.7 * 0.8, 1e-15);
    for (int64_t j = 0; j < f->d->n_dec; j++)
        CHECK_CLOSE(wd[j], w[0] * f->gamma[j * K2] + w[1] * f->gamma[j * K2 + 1], 1e-15);
}

static int progress_calls;
static void count_progress(void *ud, const emdpo_mmra_round *r, int K) {
    (void)ud;
    (void)K;
    CHECK_EQ_INT(r->round, progress_calls);
    progress_calls++;
}

/* Regrets of cand from lm_mmra.h with cand as column K. */
static void direct_regrets(const fixture *f, const emdpo_llama *cand, const emdpo_lm_mmra_lw_opts *o, double *reg) {
    const emdpo_llama *pol[K2 + 1] = {f->types[0], f->types[1], cand};
    emdpo_lm_mmra_opts mo = o->regret;
    mo.beta = o->beta;
    double L[K2 * (K2 + 1)];
    CHECK_EQ_INT(emdpo_lm_mmra_exact(pol, K2, K2 + 1, f->sft, f->tok, f->d, &mo, L), EMDPO_OK);
    for (int k = 0; k < K2; k++) reg[k] = L[k * (K2 + 1) + k] - L[k * (K2 + 1) + K2];
}

/* The rounds by hand: one trainer from the SFT model whose weights are set
 * to sum_k w_k gamma_jk with each round's recorded w. */
static float *replay(const fixture *f, const emdpo_lm_mmra_lw_opts *o, const emdpo_mmra_round *rounds) {
    emdpo_llama *m = make_model(1, 1.0f);
    memcpy(m->param_buf, f->sft->param_buf, m->num_params * sizeof(float));
    emdpo_lm_set *set = NULL;
    CHECK_EQ_INT(emdpo_lm_set_from_data(f->d, f->tok, 32, 16, &set), EMDPO_OK);
    double ref[32], wd[16];
    CHECK_EQ_INT(emdpo_lm_score(f->sft, set, o->regret.score_batch, ref), EMDPO_OK);
    emdpo_train_config tc;
    memset(&tc, 0, sizeof tc);
    tc.mode = EMDPO_TRAIN_DPO;
    tc.loss.kind = EMDPO_LOSS_DPO;
    tc.loss.beta = o->beta;
    tc.optim = o->optim;
    tc.batch = o->batch;
    tc.accum = o->accum;
    tc.seed = o->seed;
    emdpo_trainer *t = NULL;
    CHECK_EQ_INT(emdpo_trainer_create(m, set, NULL, &tc, &t), EMDPO_OK);
    CHECK_EQ_INT(emdpo_trainer_set_reference_logp(t, ref), EMDPO_OK);
    for (int r = 0; r < o->rounds; r++) {
        emdpo_lm_mmra_lw_decision_weights(f->d->n_dec, K2, f->gamma, rounds[r].w, wd);
        CHECK_EQ_INT(emdpo_trainer_set_weights(t, wd), EMDPO_OK);
        for (int64_t s = 0; s < o->steps; s++) CHECK_EQ_INT(emdpo_trainer_step(t, NULL), EMDPO_OK);
    }
    float *out = malloc(m->num_params * sizeof *out);
    memcpy(out, m->param_buf, m->num_params * sizeof *out);
    emdpo_trainer_free(t);
    emdpo_lm_set_free(set);
    emdpo_llama_free(m);
    return out;
}

static int run_lw(const fixture *f, const emdpo_lm_mmra_lw_opts *o, emdpo_llama *pi, emdpo_mmra_round *rounds,
                  emdpo_lm_mmra_lw_result *res) {
    res->rounds = rounds;
    return emdpo_lm_mmra_lw(f->sft, (const emdpo_llama *const *)f->types, K2, f->tok, f->d, f->gamma, o, pi, res);
}

static void test_rounds(const fixture *f) {
    emdpo_lm_mmra_lw_opts o;
    base_opts(&o);
    o.select = EMDPO_LW_LAST;
    o.progress = count_progress;
    emdpo_llama *pi = make_model(99, 1.0f);
    emdpo_mmra_round rounds[ROUNDS];
    emdpo_lm_mmra_lw_result res;
    progress_calls = 0;
    CHECK_EQ_INT(run_lw(f, &o, pi, rounds, &res), EMDPO_OK);
    CHECK_EQ_INT(progress_calls, ROUNDS + 1);
    CHECK_EQ_INT(res.chosen, ROUNDS);
    CHECK(res.start.w[0] == 0.5 && res.start.w[1] == 0.5 && rounds[0].w[0] == 0.5 && rounds[0].w[1] == 0.5);
    /* w^t = MW(w^{t-1}, eta, R(pi^t)) and stays on the simplex. */
    for (int r = 0; r < ROUNDS; r++) {
        double w[K2] = {rounds[r].w[0], rounds[r].w[1]};
        emdpo_lm_mmra_mw(K2, o.eta, rounds[r].regret, w);
        const double *next = r + 1 < ROUNDS ? rounds[r + 1].w : res.final.w;
        CHECK(next[0] == w[0] && next[1] == w[1]);
        CHECK(next[0] >= 0 && next[1] >= 0 && fabs(next[0] + next[1] - 1.0) < 1e-15);
        CHECK_CLOSE(rounds[r].max_regret, fmax(rounds[r].regret[0], rounds[r].regret[1]), 0);
        CHECK(isfinite(rounds[r].loss) && isnan(rounds[r].regret_se[0]) && isnan(rounds[r].kl));
    }
    /* Weights moved toward the type that regrets more. */
    CHECK((rounds[1].w[0] > 0.5) == (rounds[0].regret[0] > rounds[0].regret[1]));
    /* Regrets are lm_mmra.h's, for the start (the SFT model) and the policy. */
    double reg[K2];
    direct_regrets(f, f->sft, &o, reg);
    for (int k = 0; k < K2; k++) CHECK_CLOSE(res.start.regret[k], reg[k], 1e-9);
    direct_regrets(f, pi, &o, reg);
    for (int k = 0; k < K2; k++) CHECK_CLOSE(res.final.regret[k], reg[k], 1e-9);
    /* Each round trained with sum_k w_k gamma_jk: a hand replay gives the same bits. */
    float *hand = replay(f, &o, rounds);
    CHECK(memcmp(hand, pi->param_buf, pi->num_params * sizeof *hand) == 0);
    free(hand);

    /* BEST follows the same trajectory and returns its smallest max regret. */
    emdpo_mmra_round best_rounds[ROUNDS];
    emdpo_lm_mmra_lw_result best;
    o.select = EMDPO_LW_BEST;
    o.progress = NULL;
    emdpo_llama *pb = make_model(98, 1.0f);
    CHECK_EQ_INT(run_lw(f, &o, pb, best_rounds, &best), EMDPO_OK);
    CHECK(memcmp(rounds, best_rounds, sizeof rounds) == 0);
    int argmin = 1;
    for (int r = 2; r <= ROUNDS; r++)
        if (rounds[r - 1].max_regret < rounds[argmin - 1].max_regret) argmin = r;
    CHECK_EQ_INT(best.chosen, argmin);
    CHECK(best.final.max_regret == rounds[argmin - 1].max_regret);
    direct_regrets(f, pb, &o, reg);
    for (int k = 0; k < K2; k++) CHECK_CLOSE(reg[k], rounds[argmin - 1].regret[k], 1e-9);

    /* Determinism: the same run gives the same bits. */
    emdpo_llama *p2 = make_model(97, 1.0f);
    emdpo_mmra_round again[ROUNDS];
    emdpo_lm_mmra_lw_result res2;
    CHECK_EQ_INT(run_lw(f, &o, p2, again, &res2), EMDPO_OK);
    CHECK(memcmp(pb->param_buf, p2->param_buf, pb->num_params * sizeof(float)) == 0);
    CHECK(memcmp(again, best_rounds, sizeof again) == 0 && res2.chosen == best.chosen);
    emdpo_llama_free(p2);
    emdpo_llama_free(pb);
    emdpo_llama_free(pi);
}

/* With one type, LW is DPO weighted by gamma: every w is 1. */
static void test_one_type(const fixture *f) {
    double g1[16];
    for (int64_t j = 0; j < f->d->n_dec; j++) g1[j] = 0.25 + 0.5 * (double)(j % 3);
    g1[2] = 0.0;
    emdpo_lm_mmra_lw_opts o;
    base_opts(&o);
    o.select = EMDPO_LW_LAST;
    emdpo_llama *pi = make_model(99, 1.0f), *m = make_model(99, 1.0f);
    emdpo_mmra_round rounds[ROUNDS];
    emdpo_lm_mmra_lw_result res;
    res.rounds = rounds;
    CHECK_EQ_INT(emdpo_lm_mmra_lw(f->sft, (const emdpo_llama *const *)f->types, 1, f->tok, f->d, g1, &o, pi, &res),
                 EMDPO_OK);
    for (int r = 0; r < ROUNDS; r++) CHECK(rounds[r].w[0] == 1.0);
    CHECK(res.final.w[0] == 1.0);

    memcpy(m->param_buf, f->sft->param_buf, m->num_params * sizeof(float));
    emdpo_lm_set *set = NULL;
    CHECK_EQ_INT(emdpo_lm_set_from_data(f->d, f->tok, 32, 16, &set), EMDPO_OK);
    double ref[32];
    CHECK_EQ_INT(emdpo_lm_score(f->sft, set, 16, ref), EMDPO_OK);
    emdpo_train_config tc;
    memset(&tc, 0, sizeof tc);
    tc.mode = EMDPO_TRAIN_DPO;
    tc.loss.kind = EMDPO_LOSS_DPO;
    tc.loss.beta = o.beta;
    tc.optim = o.optim;
    tc.batch = o.batch;
    tc.accum = 1;
    tc.seed = o.seed;
    emdpo_trainer *t = NULL;
    CHECK_EQ_INT(emdpo_trainer_create(m, set, g1, &tc, &t), EMDPO_OK);
    CHECK_EQ_INT(emdpo_trainer_set_reference_logp(t, ref), EMDPO_OK);
    for (int s = 0; s < ROUNDS * o.steps; s++) CHECK_EQ_INT(emdpo_trainer_step(t, NULL), EMDPO_OK);
    CHECK(memcmp(m->param_buf, pi->param_buf, m->num_params * sizeof(float)) == 0);
    emdpo_trainer_free(t);

    /* set_weights before any step equals creating with those weights; a
     * negative weight is refused and the old weights stay. */
    memcpy(m->param_buf, f->sft->param_buf, m->num_params * sizeof(float));
    CHECK_EQ_INT(emdpo_trainer_create(m, set, NULL, &tc, &t), EMDPO_OK);
    CHECK_EQ_INT(emdpo_trainer_set_reference_logp(t, ref), EMDPO_OK);
    CHECK_EQ_INT(emdpo_trainer_set_weights(t, g1), EMDPO_OK);
    double bad[16];
    memcpy(bad, g1, sizeof bad);
    bad[1] = -1.0;
    CHECK_EQ_INT(emdpo_trainer_set_weights(t, bad), EMDPO_ERR_INVALID_ARG);
    for (int s = 0; s < ROUNDS * o.steps; s++) CHECK_EQ_INT(emdpo_trainer_step(t, NULL), EMDPO_OK);
    CHECK(memcmp(m->param_buf, pi->param_buf, m->num_params * sizeof(float)) == 0);
    emdpo_trainer_free(t);
    emdpo_lm_set_free(set);
    emdpo_llama_free(m);
    emdpo_llama_free(pi);
}

static void test_sampled(const fixture *f) {
    emdpo_lm_mmra_lw_opts o;
    base_opts(&o);
    o.rounds = 2;
    o.steps = 1;
    o.estimator = EMDPO_ESTIMATOR_SAMPLE;
    o.regret.samples = 3;
    o.regret.max_tokens = 4;
    o.regret.seed = 9;
    o.select = EMDPO_LW_LAST;
    emdpo_llama *pi = make_model(99, 1.0f);
    emdpo_mmra_round rounds[2];
    emdpo_lm_mmra_lw_result res;
    CHECK_EQ_INT(run_lw(f, &o, pi, rounds, &res), EMDPO_OK);
    const emdpo_llama *pol[K2 + 1] = {f->types[0], f->types[1], pi};
    emdpo_lm_mmra_opts mo = o.regret;
    mo.beta = o.beta;
    double L[K2 * (K2 + 1)], se[K2 * (K2 + 1)];
    CHECK_EQ_INT(emdpo_lm_mmra_sample(pol, K2, K2 + 1, f->sft, f->tok, f->d, &mo, L, se, NULL), EMDPO_OK);
    for (int k = 0; k < K2; k++) {
        double s0 = se[k * (K2 + 1) + k], s1 = se[k * (K2 + 1) + K2];
        CHECK(res.final.regret[k] == L[k * (K2 + 1) + k] - L[k * (K2 + 1) + K2]);
        CHECK(res.final.regret_se[k] == sqrt(s0 * s0 + s1 * s1) && res.final.regret_se[k] > 0);
    }
    emdpo_llama_free(pi);
}

static void test_bad_args(const fixture *f) {
    emdpo_lm_mmra_lw_opts o;
    emdpo_llama *pi = make_model(99, 1.0f);
    emdpo_mmra_round rounds[ROUNDS];
    emdpo_lm_mmra_lw_result res;
    double g3 = f->gamma[3];
    for (int c = 0; c < 5; c++) {
        base_opts(&o);
        if (c == 0) o.rounds = 0;
        if (c == 1) o.eta = 0.0;
        if (c == 2) o.steps = 0;
        if (c == 3) o.beta = NAN;
        if (c == 4) f->gamma[3] = -0.5;
        CHECK_EQ_INT(run_lw(f, &o, pi, rounds, &res), EMDPO_ERR_INVALID_ARG);
    }
    f->gamma[3] = g3;
    base_opts(&o);
    emdpo_llama *other = make_model(1, 1.0f);
    other->config.max_seq_len = 64;
    CHECK_EQ_INT(run_lw(f, &o, other, rounds, &res), EMDPO_ERR_INVALID_ARG);
    other->config.max_seq_len = 32;
    emdpo_llama_free(other);
    emdpo_llama_free(pi);
}

static void test_failalloc(const fixture *f) {
    emdpo_lm_mmra_lw_opts o;
    base_opts(&o);
    o.rounds = 2;
    o.steps = 1;
    emdpo_llama *pi = make_model(99, 1.0f);
    emdpo_mmra_round rounds[2];
    emdpo_lm_mmra_lw_result res;
    int done = 0;
    for (long n = 0; !done && n < 2000; n++) {
        failalloc_install(n, 0);
        int rc = run_lw(f, &o, pi, rounds, &res);
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
    test_mw();
    fixture f = {0};
    f.tok = testdata_letter_tokenizer();
    f.d = make_data();
    f.sft = make_model(1, 1.0f);
    f.types[0] = make_model(2, 5.0f);
    f.types[1] = make_model(3, 5.0f);
    const double ga[4 * K2] = {0.9, 0.1, 0.8, 0.2, 0.2, 0.8, 0.05, 0.95};
    CHECK(f.tok && f.d && f.sft && f.types[0] && f.types[1]);
    if (f.tok && f.d && f.sft && f.types[0] && f.types[1]) {
        CHECK(f.d->n_annot == 4 && f.d->n_dec == 6);
        f.gamma = decision_gamma(f.d, K2, ga);
        test_decision_weights(&f);
        test_rounds(&f);
        test_one_type(&f);
        test_sampled(&f);
        test_bad_args(&f);
        test_failalloc(&f);
        free(f.gamma);
    }
    for (int k = 0; k < K2; k++) emdpo_llama_free(f.types[k]);
    emdpo_llama_free(f.sft);
    emdpo_data_free(f.d);
    emdpo_tokenizer_free(f.tok);
    return check_report("test_lm_mmra_lw");
}
