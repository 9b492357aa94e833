/* Choosing K for Llama policies (lm_select.h): the validation criterion,
 * group margins and mixture log-likelihood on hand-computed rewards, empty
 * types and ties, bad arguments, and rewards from models against
 * emdpo_lm_score, with clean allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "check.h"
#include "data/data.h"
#include "emdpo.h"
#include "failalloc.h"
#include "lm/engine/llama.h"
#include "lm/io/lm_batch.h"
#include "lm/lm_select.h"
#include "lm/lm_train.h"
#include "testdata.h"

/* Four annotators: a0 (group A) a pair and a top choice of three, a1
 * (group B) a full ranking of three, a2 (no group) a pair, a3 (group A) a
 * pair. Items 0..11 in that order. */
static emdpo_data *make_data(void) {
    emdpo_data_builder *b = NULL;
    if (emdpo_data_builder_create(0, &b)) return NULL;
    const char *two[2] = {"yes", "no"}, *three[3] = {"yes", "maybe", "no"};
    int rc = emdpo_data_builder_add(b, "a0", "A", "p", 2, 1, NULL, two) ||
             emdpo_data_builder_add(b, "a0", "A", "q", 3, 1, NULL, three) ||
             emdpo_data_builder_add(b, "a1", "B", "q", 3, 2, NULL, three) ||
             emdpo_data_builder_add(b, "a2", NULL, "p", 2, 1, NULL, two) ||
             emdpo_data_builder_add(b, "a3", "A", "p", 2, 1, NULL, two);
    emdpo_data *d = NULL;
    if (rc) {
        emdpo_data_builder_free(b);
        return NULL;
    }
    return emdpo_data_builder_finish(b, &d) ? NULL : d;
}

/* Rewards of two types, by decision. Margins (chosen minus each rejected,
 * averaged): type 0: 1, 2, -2, 0.5, -3; type 1: -2, 0, 3, -1, 1. */
static const double R[2][12] = {{1, 0, 2, 1, -1, 0, 1, 3, 0.5, 0, 0, 3}, {0, 2, 1, 1, 1, 2, 0, -2, -1, 0, 1, 0}};

/* log P of a top choice among u[0..n), or of the ranking of all n. */
static double top(const double *u, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += exp(u[i]);
    return log(exp(u[0]) / s);
}

/* Each annotator's log-probability of their choices under type k. */
static void annot_logp(int k, double *lp) {
    const double *u = R[k];
    lp[0] = top(u, 2) + top(u + 2, 3);
    lp[1] = top(u + 5, 3) + top(u + 6, 2);
    lp[2] = top(u + 8, 2);
    lp[3] = top(u + 10, 2);
}

static void test_hand(void) {
    emdpo_data *d = make_data();
    CHECK(d != NULL);
    if (!d) return;
    CHECK_EQ_INT(d->n_items, 12);
    CHECK_EQ_INT(d->n_groups, 2);
    double crit, ll, gm[2], eta[2] = {0.25, 0.75}, cf;
    CHECK_EQ_INT(emdpo_lm_select_score(d, 2, &R[0][0], eta, &crit, &ll, gm, &cf), EMDPO_OK);
    /* Annotators' best mean margins: a0 max(1.5, -1), a1 max(-2, 3), a2
     * max(0.5, -1), a3 max(-3, 1). */
    CHECK_CLOSE(crit, (1.5 + 3 + 0.5 + 1) / 4, 1e-15);
    /* Cross-fitted: only a0 has two decisions. Type 0 is best on each
     * (margins 1 and 2 against -2 and 0), so a0 scores (2 + 1) / 2. */
    CHECK_CLOSE(cf, 1.5, 1e-15);
    /* Group A pools a0's and a3's decisions, each counting once: type 0
     * (1 + 2 - 3) / 3 = 0, type 1 (-2 + 0 + 1) / 3. */
    CHECK_CLOSE(gm[0], 0.0, 1e-15);
    CHECK_CLOSE(gm[1], 3.0, 1e-15);
    double lp0[4], lp1[4], want = 0, want0 = 0;
    annot_logp(0, lp0);
    annot_logp(1, lp1);
    for (int i = 0; i < 4; i++) {
        want += log(0.25 * exp(lp0[i]) + 0.75 * exp(lp1[i]));
        want0 += lp0[i];
    }
    CHECK_CLOSE(ll, want, 1e-13);
    /* An empty type leaves the likelihood but still counts in the margins:
     * it is one of the fit's policies. */
    double c2, l2, e0[2] = {1, 0};
    CHECK_EQ_INT(emdpo_lm_select_score(d, 2, &R[0][0], e0, &c2, &l2, NULL, NULL), EMDPO_OK);
    CHECK(c2 == crit);
    CHECK_CLOSE(l2, want0, 1e-13);
    /* One type alone: the mean of its per-annotator margins. */
    double one = 1;
    CHECK_EQ_INT(emdpo_lm_select_score(d, 1, &R[1][0], &one, &c2, &l2, gm, NULL), EMDPO_OK);
    CHECK_CLOSE(c2, (-1 + 3 - 1 + 1) / 4.0, 1e-15);
    CHECK_CLOSE(gm[0], -1.0 / 3, 1e-15);
    CHECK_CLOSE(gm[1], 3.0, 1e-15);
    /* Two identical types: the same criterion as one. */
    double twin[24];
    memcpy(twin, R[1], sizeof R[1]);
    memcpy(twin + 12, R[1], sizeof R[1]);
    double c3, l3, half[2] = {0.5, 0.5};
    CHECK_EQ_INT(emdpo_lm_select_score(d, 2, twin, half, &c3, &l3, NULL, NULL), EMDPO_OK);
    CHECK(c3 == c2);
    CHECK_CLOSE(l3, l2, 1e-13);
    emdpo_data_free(d);
}

/* Types that fit only noise: the max-mean margin rises with K (each
 * annotator's best type is picked on the decisions it is scored on); the
 * cross-fitted margin stays near 0, the truth. 400 annotators x 4 pairs,
 * rewards i.i.d. N(0, 1) per item and type. */
static void test_crossfit_unbiased(void) {
    enum { N = 400, M = 4, KMAX = 8 };
    emdpo_data_builder *b = NULL;
    CHECK_EQ_INT(emdpo_data_builder_create(0, &b), EMDPO_OK);
    const char *two[2] = {"yes", "no"};
    char name[16];
    int rc = 0;
    for (int a = 0; a < N && !rc; a++) {
        snprintf(name, sizeof name, "a%d", a);
        for (int j = 0; j < M && !rc; j++) rc = emdpo_data_builder_add(b, name, NULL, "p", 2, 1, NULL, two);
    }
    emdpo_data *d = NULL;
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(emdpo_data_builder_finish(b, &d), EMDPO_OK);
    if (!d) return;
    size_t ni = (size_t)d->n_items;
    double *r = malloc(KMAX * ni * sizeof *r), eta[KMAX];
    emdpo_rng g;
    emdpo_rng_seed(&g, 17, 0);
    for (size_t q = 0; q < KMAX * ni; q++) r[q] = emdpo_rng_normal(&g);
    double crit[2], cf[2], ll;
    int Ks[2] = {1, KMAX};
    for (int t = 0; t < 2; t++) {
        for (int k = 0; k < Ks[t]; k++) eta[k] = 1.0 / Ks[t];
        CHECK_EQ_INT(emdpo_lm_select_score(d, Ks[t], r, eta, &crit[t], &ll, NULL, &cf[t]), EMDPO_OK);
    }
    /* The criterion on margins computed elsewhere (emdpo select --margins)
     * is the same computation: the same bits, decisions in any order. */
    double *mg = malloc((size_t)d->n_dec * KMAX * sizeof *mg);
    int64_t *ann = malloc((size_t)d->n_dec * sizeof *ann);
    for (int64_t j = 0; j < d->n_dec; j++) {
        /* decision j goes to row jr: annotators interleaved, each one's order kept */
        int64_t a = j / M, t = j % M, jr = t * N + a;
        ann[jr] = a;
        for (int k = 0; k < KMAX; k++)
            mg[jr * KMAX + k] = r[(size_t)k * ni + d->dec_item[j]] - r[(size_t)k * ni + d->dec_item[j] + 1];
    }
    double c2, cf2;
    CHECK_EQ_INT(emdpo_margin_criterion(KMAX, d->n_dec, mg, ann, N, &c2, &cf2, NULL), EMDPO_OK);
    CHECK(c2 == crit[1] && cf2 == cf[1]);
    free(mg);
    free(ann);
    /* Max of 8 means of 4 N(0, 2) margins: about +1.0; cross-fitted: 0
     * give or take 0.05. */
    CHECK_MSG(crit[1] - crit[0] > 0.6, "max-mean margin K=1 %.3f, K=8 %.3f", crit[0], crit[1]);
    CHECK_MSG(fabs(cf[1]) < 0.2 && fabs(cf[0]) < 0.2, "cross-fitted K=1 %.3f, K=8 %.3f", cf[0], cf[1]);
    free(r);
    emdpo_data_free(d);
}

static void test_bad_args(void) {
    emdpo_data *d = make_data();
    CHECK(d != NULL);
    if (!d) return;
    double c = 7, l = 7, eta[2] = {0.5, 0.5};
    CHECK_EQ_INT(emdpo_lm_select_score(d, 0, &R[0][0], eta, &c, &l, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_lm_select_score(d, 65, &R[0][0], eta, &c, &l, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    double neg[2] = {-0.1, 1.1}, nan2[2] = {NAN, 1}, zero[2] = {0, 0}, inf2[2] = {INFINITY, 0};
    CHECK_EQ_INT(emdpo_lm_select_score(d, 2, &R[0][0], neg, &c, &l, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_lm_select_score(d, 2, &R[0][0], nan2, &c, &l, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_lm_select_score(d, 2, &R[0][0], zero, &c, &l, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_lm_select_score(d, 2, &R[0][0], inf2, &c, &l, NULL, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK(c == 7 && l == 7);
    emdpo_data_free(d);
}

/* ---- rewards from models ------------------------------------------------------ */

static emdpo_llama *make_model(uint64_t seed) {
    emdpo_llama_config c = {.dim = 16, .hidden_dim = 32, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1,
                            .vocab_size = TESTDATA_LETTER_VOCAB, .max_seq_len = 64, .tied = 0, .norm_eps = 1e-5f,
                            .rope_theta = 10000.0f};
    emdpo_llama *m = NULL;
    if (emdpo_llama_create(&c, &m)) return NULL;
    emdpo_llama_init(m, seed);
    return m;
}

static void test_rewards(const emdpo_tokenizer *tok) {
    emdpo_data *d = make_data();
    emdpo_lm_set *set = NULL;
    emdpo_llama *ref = make_model(1), *m = make_model(2);
    CHECK(d && ref && m);
    if (!d || !ref || !m || emdpo_lm_set_from_data(d, tok, 64, 32, &set)) goto out;
    double ref_lp[12], lp[12], r[24], beta = 0.5;
    CHECK_EQ_INT(emdpo_lm_score(ref, set, 4, ref_lp), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_score(m, set, 4, lp), EMDPO_OK);
    const emdpo_llama *models[2] = {m, ref};
    CHECK_EQ_INT(emdpo_lm_rewards(models, NULL, 2, set, ref_lp, beta, 4, r), EMDPO_OK);
    int exact = 1;
    for (int i = 0; i < 12; i++) exact &= r[i] == beta * (lp[i] - ref_lp[i]) && r[12 + i] == 0.0;
    CHECK(exact);
    /* The reference alone has no margins and chooses uniformly: two pairs,
     * a top choice of three, a full ranking of three and another pair. */
    double c, l, one = 1;
    CHECK_EQ_INT(emdpo_lm_select_score(d, 1, r + 12, &one, &c, &l, NULL, NULL), EMDPO_OK);
    CHECK(c == 0.0);
    CHECK_CLOSE(l, 3 * log(0.5) + log(1.0 / 3) + log(1.0 / 6), 1e-14);
    CHECK_EQ_INT(emdpo_lm_rewards(models, NULL, 0, set, ref_lp, beta, 4, r), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_lm_rewards(models, NULL, 2, set, ref_lp, 0.0, 4, r), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_lm_rewards(models, NULL, 2, set, ref_lp, beta, 0, r), EMDPO_ERR_INVALID_ARG);
    int done = 0;
    for (long n = 0; !done && n < 500; n++) {
        failalloc_install(n, 0);
        int rc = emdpo_lm_rewards(models, NULL, 2, set, ref_lp, beta, 4, r);
        done = rc == EMDPO_OK;
        CHECK(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM);
        long live = failalloc_live();
        failalloc_uninstall();
        CHECK_MSG(live == 0, "fail at %ld: %ld blocks leaked", n, live);
    }
    CHECK(done);
    CHECK_EQ_INT(failalloc_size_errors(), 0);
out:
    emdpo_llama_free(m);
    emdpo_llama_free(ref);
    emdpo_lm_set_free(set);
    emdpo_data_free(d);
}

int main(void) {
    test_hand();
    test_crossfit_unbiased();
    test_bad_args();
    emdpo_tokenizer *tok = testdata_letter_tokenizer();
    CHECK(tok != NULL);
    if (tok) test_rewards(tok);
    emdpo_tokenizer_free(tok);
    return check_report("test_lm_select");
}
