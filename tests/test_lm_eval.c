/* Evaluation of Llama policy ensembles (lm_eval.h): the adjusted Rand index
 * on hand-computed cases, per-group margins and accuracies against a direct
 * computation from emdpo_lm_score, the best policy per group, each distinct
 * sequence scored once, determinism, the baselines' helpers, and clean
 * allocation failures. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "check.h"
#include "data/data.h"
#include "emdpo.h"
#include "failalloc.h"
#include "lm/engine/llama.h"
#include "lm/io/lm_batch.h"
#include "lm/io/tokenizer.h"
#include "lm/lm_eval.h"
#include "lm/lm_train.h"
#include "testdata.h"



static emdpo_llama *make_model(uint64_t seed) {
    emdpo_llama_config c = {.dim = 16, .hidden_dim = 32, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1,
                            .vocab_size = TESTDATA_LETTER_VOCAB, .max_seq_len = 64, .tied = 0, .norm_eps = 1e-5f,
                            .rope_theta = 10000.0f};
    emdpo_llama *m = NULL;
    if (emdpo_llama_create(&c, &m)) return NULL;
    emdpo_llama_init(m, seed);
    return m;
}

/* ---- adjusted Rand index ---------------------------------------------------- */

static void test_ari(void) {
    int32_t a[6] = {0, 0, 0, 1, 1, 1}, b[6] = {0, 0, 1, 1, 2, 2};
    /* Contingency [[2,1,0],[0,1,2]]: cells 2, rows 6, columns 3, 15 pairs:
     * (2 - 6*3/15) / (4.5 - 1.2) = 0.8 / 3.3. */
    CHECK_CLOSE(emdpo_adjusted_rand_index(a, b, 6), 0.8 / 3.3, 1e-14);
    CHECK_CLOSE(emdpo_adjusted_rand_index(b, a, 6), 0.8 / 3.3, 1e-14);
    CHECK_CLOSE(emdpo_adjusted_rand_index(a, a, 6), 1.0, 1e-15);
    /* Crossed halves: cells 0, rows 2, columns 2, 6 pairs: -2/3 / (4/3). */
    int32_t c[4] = {0, 0, 1, 1}, e[4] = {0, 1, 0, 1}, f[4] = {1, 1, 0, 0};
    CHECK_CLOSE(emdpo_adjusted_rand_index(c, e, 4), -0.5, 1e-14);
    CHECK_CLOSE(emdpo_adjusted_rand_index(c, f, 4), 1.0, 1e-15);
    /* A permutation with arbitrary label values. */
    int32_t g[7] = {0, 1, 2, 2, 1, 0, 2}, h[7] = {7, -3, 5, 5, -3, 7, 5};
    CHECK_CLOSE(emdpo_adjusted_rand_index(g, h, 7), 1.0, 1e-15);
    /* Degenerate partitions: one block or all singletons on both sides is
     * 1; one block against singletons is 0. */
    int32_t one[4] = {3, 3, 3, 3}, sing[4] = {0, 1, 2, 3};
    CHECK_CLOSE(emdpo_adjusted_rand_index(one, one, 4), 1.0, 1e-15);
    CHECK_CLOSE(emdpo_adjusted_rand_index(sing, sing, 4), 1.0, 1e-15);
    CHECK_CLOSE(emdpo_adjusted_rand_index(one, sing, 4), 0.0, 1e-15);
    CHECK_CLOSE(emdpo_adjusted_rand_index(a, b, 1), 1.0, 1e-15);
}

/* ---- margins and accuracies ------------------------------------------------- */

/* Two groups, repeated prompts and responses, one ranking of three and an
 * annotator without a group. */
static emdpo_data *make_data(void) {
    emdpo_data_builder *b = NULL;
    if (emdpo_data_builder_create(0, &b)) return NULL;
    const char *yes_no[2] = {"yes", "no"}, *no_yes[2] = {"no", "yes"}, *three[3] = {"yes", "maybe", "no"};
    int rc = 0;
    for (int i = 0; i < 4 && !rc; i++) {
        char name[16];
        snprintf(name, sizeof name, "a%d", i);
        rc = emdpo_data_builder_add(b, name, "A", "is it", 2, 1, NULL, yes_no) ||
             emdpo_data_builder_add(b, name, "A", "say it", 2, 1, NULL, yes_no);
        snprintf(name, sizeof name, "b%d", i);
        rc = rc || emdpo_data_builder_add(b, name, "B", "is it", 2, 1, NULL, no_yes) ||
             emdpo_data_builder_add(b, name, "B", "say it", 3, 2, NULL, three);
    }
    rc = rc || emdpo_data_builder_add(b, "loner", NULL, "who", 2, 1, NULL, yes_no);
    emdpo_data *d = NULL;
    if (rc) {
        emdpo_data_builder_free(b);
        return NULL;
    }
    return emdpo_data_builder_finish(b, &d) ? NULL : d;
}

/* The metrics from per-sequence log-probabilities of the whole set. */
static void direct(const emdpo_data *d, const double *lp, const double *ref, double beta, double *margin,
                   double *acc) {
    double n[2] = {0, 0};
    for (int g = 0; g < 2; g++) margin[g] = acc[g] = 0;
    for (int64_t a = 0; a < d->n_annot; a++) {
        int g = d->annot_group[a];
        if (g < 0) continue;
        for (int64_t j = d->annot_dec[a]; j < d->annot_dec[a + 1]; j++) {
            int64_t i0 = d->dec_item[j];
            double r0 = beta * (lp[i0] - ref[i0]), m = 0;
            int ok = 1;
            for (int64_t i = i0 + 1; i < d->dec_item[j + 1]; i++) {
                double r = beta * (lp[i] - ref[i]);
                m += r0 - r;
                ok &= r0 > r;
            }
            margin[g] += m / (double)(d->dec_item[j + 1] - i0 - 1);
            acc[g] += ok;
            n[g]++;
        }
    }
    for (int g = 0; g < 2; g++) {
        margin[g] /= n[g];
        acc[g] /= n[g];
    }
}

#define M_POL 3

static void test_eval(const emdpo_tokenizer *tok) {
    emdpo_data *d = make_data();
    CHECK(d != NULL);
    if (!d) return;
    CHECK_EQ_INT(d->n_groups, 2);
    emdpo_lm_set *set = NULL;
    CHECK_EQ_INT(emdpo_lm_set_from_data(d, tok, 64, 32, &set), EMDPO_OK);
    emdpo_llama *ref = make_model(1), *pol[M_POL] = {make_model(2), make_model(3), make_model(4)};
    CHECK(ref && pol[0] && pol[1] && pol[2]);
    double beta = 0.5;
    emdpo_lm_evaluator *ev = NULL;
    CHECK_EQ_INT(emdpo_lm_evaluator_create(ref, d, set, 0.0, 4, &ev), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_lm_evaluator_create(ref, d, set, beta, 4, &ev), EMDPO_OK);
    if (!ev) goto out;
    /* Distinct sequences: (is it, yes|no), (say it, yes|no|maybe), (who, yes|no). */
    CHECK_EQ_INT(emdpo_lm_evaluator_distinct(ev), 7);
    double *ref_lp = malloc((size_t)set->n_seq * sizeof *ref_lp), *lp = malloc((size_t)set->n_seq * sizeof *lp);
    CHECK_EQ_INT(emdpo_lm_score(ref, set, 3, ref_lp), EMDPO_OK);
    double margin[M_POL * 2], acc[M_POL * 2], dm[2], da[2];
    int64_t nd[2];
    for (int i = 0; i < M_POL; i++) {
        CHECK_EQ_INT(emdpo_lm_evaluate(ev, pol[i], margin + 2 * i, acc + 2 * i, nd), EMDPO_OK);
        CHECK_EQ_INT(emdpo_lm_score(pol[i], set, 5, lp), EMDPO_OK);
        direct(d, lp, ref_lp, beta, dm, da);
        /* The engine works in float32 and a sequence's batch (here 4 vs 5)
         * decides how its sums are blocked, so scores agree to float
         * rounding, not to the bit. */
        for (int g = 0; g < 2; g++) {
            CHECK_CLOSE(margin[2 * i + g], dm[g], 1e-5);
            CHECK_CLOSE(acc[2 * i + g], da[g], 1e-12);
        }
    }
    CHECK_EQ_INT(nd[0], 8);
    CHECK_EQ_INT(nd[1], 8);
    /* The reference against itself: every margin 0, nothing correct. */
    double zm[2], za[2];
    CHECK_EQ_INT(emdpo_lm_evaluate(ev, ref, zm, za, NULL), EMDPO_OK);
    CHECK(zm[0] == 0 && zm[1] == 0 && za[0] == 0 && za[1] == 0);
    /* The best policy per group is the argmax of the margins. */
    int best[2];
    double mm[2], ba[2];
    emdpo_lm_eval_best(M_POL, 2, margin, acc, best, mm, ba);
    for (int g = 0; g < 2; g++) {
        int b = 0;
        for (int i = 1; i < M_POL; i++)
            if (margin[2 * i + g] > margin[2 * b + g]) b = i;
        CHECK_EQ_INT(best[g], b);
        CHECK(mm[g] == margin[2 * b + g] && ba[g] == acc[2 * b + g]);
    }
    /* Determinism: a second evaluator with the same batch gives the same
     * bits (another batch size may round differently, as above). */
    emdpo_lm_evaluator *ev2 = NULL;
    CHECK_EQ_INT(emdpo_lm_evaluator_create(ref, d, set, beta, 4, &ev2), EMDPO_OK);
    if (ev2) {
        double m2[2], a2[2];
        CHECK_EQ_INT(emdpo_lm_evaluate(ev2, pol[1], m2, a2, NULL), EMDPO_OK);
        CHECK(memcmp(m2, margin + 2, sizeof m2) == 0 && memcmp(a2, acc + 2, sizeof a2) == 0);
    }
    emdpo_lm_evaluator_free(ev2);
    free(ref_lp);
    free(lp);
    emdpo_lm_evaluator_free(ev);
out:
    for (int i = 0; i < M_POL; i++) emdpo_llama_free(pol[i]);
    emdpo_llama_free(ref);
    emdpo_lm_set_free(set);
    emdpo_data_free(d);
}

/* emdpo_lm_distinct: each distinct sequence once, by length, ties in order
 * of appearance, and every sequence mapped to an identical one. */
static void test_distinct(const emdpo_tokenizer *tok) {
    emdpo_data *d = make_data();
    emdpo_lm_set *set = NULL;
    CHECK_EQ_INT(emdpo_lm_set_from_data(d, tok, 64, 32, &set), EMDPO_OK);
    if (!set) goto out;
    int64_t *uniq = NULL, nu = 0, *map = malloc((size_t)set->n_seq * sizeof *map);
    CHECK_EQ_INT(emdpo_lm_distinct(set, &uniq, &nu, map), EMDPO_OK);
    CHECK_EQ_INT(nu, 7);
    int same = 1, sorted = 1, distinct = 1;
    for (int64_t i = 0; i < set->n_seq; i++) {
        int64_t u = uniq[map[i]];
        int n = emdpo_lm_seq_len(set, i);
        same &= map[i] >= 0 && map[i] < nu && n == emdpo_lm_seq_len(set, u) && set->seq_start[i] == set->seq_start[u] &&
                memcmp(set->tok + set->seq_off[i], set->tok + set->seq_off[u], (size_t)n * sizeof *set->tok) == 0;
    }
    for (int64_t r = 1; r < nu; r++) {
        int a = emdpo_lm_seq_len(set, uniq[r - 1]), b = emdpo_lm_seq_len(set, uniq[r]);
        sorted &= a < b || (a == b && uniq[r - 1] < uniq[r]);
    }
    for (int64_t r = 0; r < nu; r++) distinct &= map[uniq[r]] == r; /* so no two entries are the same sequence */
    CHECK_MSG(same, "a sequence maps to a different one");
    CHECK_MSG(sorted, "not by length, ties in order of appearance");
    CHECK_MSG(distinct, "an entry repeats");
    emdpo_free(uniq, (size_t)nu * sizeof *uniq);
    free(map);
out:
    emdpo_lm_set_free(set);
    emdpo_data_free(d);
}

static void test_best_table(void) {
    /* Rows are policies, columns groups; group 2 has no decisions. */
    double m[3 * 3] = {0.1, 0.5, NAN, 0.3, 0.2, NAN, 0.3, -1.0, NAN};
    double a[3 * 3] = {0.6, 0.9, NAN, 0.7, 0.4, NAN, 0.8, 0.1, NAN};
    int best[3];
    double mm[3], ba[3];
    emdpo_lm_eval_best(3, 3, m, a, best, mm, ba);
    CHECK_EQ_INT(best[0], 1); /* a tie goes to the lower index */
    CHECK_EQ_INT(best[1], 0);
    CHECK_EQ_INT(best[2], -1);
    CHECK(mm[0] == 0.3 && ba[0] == 0.7 && mm[1] == 0.5 && ba[1] == 0.9 && isnan(mm[2]) && isnan(ba[2]));
}

/* ---- baselines -------------------------------------------------------------- */

static void test_baselines(const emdpo_tokenizer *tok) {
    emdpo_data *d = make_data();
    emdpo_lm_set *set = NULL;
    emdpo_llama *sft = make_model(1), *p1 = NULL, *p2 = NULL;
    CHECK(d && sft);
    if (!d || !sft) goto out;
    CHECK_EQ_INT(emdpo_lm_set_from_data(d, tok, 64, 32, &set), EMDPO_OK);
    int32_t assign[9], again[9];
    CHECK_EQ_INT(emdpo_lm_cluster_annotators(sft, d, set, 2, 7, 4, assign), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_cluster_annotators(sft, d, set, 2, 7, 3, again), EMDPO_OK);
    CHECK(memcmp(assign, again, sizeof assign) == 0);
    for (int i = 0; i < 9; i++) CHECK(assign[i] == 0 || assign[i] == 1);
    CHECK_EQ_INT(emdpo_lm_cluster_annotators(sft, d, set, 10, 7, 4, assign), EMDPO_ERR_INVALID_ARG);
    emdpo_train_config c;
    memset(&c, 0, sizeof c);
    c.mode = EMDPO_TRAIN_DPO;
    c.loss.kind = EMDPO_LOSS_DPO;
    c.loss.beta = 0.5;
    emdpo_optim_config_init(&c.optim, EMDPO_OPTIM_RMSPROP);
    c.optim.lr = 1e-2;
    c.batch = 4;
    c.accum = 1;
    c.seed = 3;
    CHECK_EQ_INT(emdpo_lm_train_dpo(sft, set, &c, 3, &p1), EMDPO_OK);
    CHECK_EQ_INT(emdpo_lm_train_dpo(sft, set, &c, 3, &p2), EMDPO_OK);
    if (p1 && p2) {
        CHECK(memcmp(p1->param_buf, p2->param_buf, p1->num_params * sizeof(float)) == 0);
        CHECK(memcmp(p1->param_buf, sft->param_buf, p1->num_params * sizeof(float)) != 0);
    }
    c.mode = EMDPO_TRAIN_SFT;
    emdpo_llama *p3 = NULL;
    CHECK_EQ_INT(emdpo_lm_train_dpo(sft, set, &c, 3, &p3), EMDPO_ERR_INVALID_ARG);
    CHECK(p3 == NULL);
out:
    emdpo_llama_free(p1);
    emdpo_llama_free(p2);
    emdpo_llama_free(sft);
    emdpo_lm_set_free(set);
    emdpo_data_free(d);
}

/* ---- allocation failures ------------------------------------------------------ */

static void test_failalloc(const emdpo_tokenizer *tok) {
    emdpo_data *d = make_data();
    emdpo_lm_set *set = NULL;
    emdpo_llama *ref = make_model(1), *pol = make_model(2);
    CHECK(d && ref && pol);
    if (!d || !ref || !pol || emdpo_lm_set_from_data(d, tok, 64, 32, &set)) goto out;
    emdpo_train_config c;
    memset(&c, 0, sizeof c);
    c.mode = EMDPO_TRAIN_DPO;
    c.loss.beta = 0.5;
    emdpo_optim_config_init(&c.optim, EMDPO_OPTIM_RMSPROP);
    c.batch = 4;
    c.accum = 1;
    int32_t ga[6] = {0, 0, 0, 1, 1, 1}, gb[6] = {0, 0, 1, 1, 2, 2}, assign[9];
    int done = 0;
    for (long n = 0; !done && n < 2000; n++) {
        failalloc_install(n, 0);
        emdpo_lm_evaluator *ev = NULL;
        emdpo_llama *t = NULL;
        double m[2], a[2];
        int rc = emdpo_lm_evaluator_create(ref, d, set, 0.5, 4, &ev);
        if (!rc) rc = emdpo_lm_evaluate(ev, pol, m, a, NULL);
        if (!rc) rc = isnan(emdpo_adjusted_rand_index(ga, gb, 6)) ? EMDPO_ERR_NOMEM : EMDPO_OK;
        if (!rc) rc = emdpo_lm_cluster_annotators(ref, d, set, 2, 1, 4, assign);
        if (!rc) rc = emdpo_lm_train_dpo(ref, set, &c, 1, &t);
        done = rc == EMDPO_OK;
        CHECK(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM);
        CHECK(rc == EMDPO_OK || t == NULL);
        emdpo_llama_free(t);
        emdpo_lm_evaluator_free(ev);
        long live = failalloc_live();
        failalloc_uninstall();
        CHECK_MSG(live == 0, "fail at %ld: %ld blocks leaked", n, live);
    }
    CHECK(done);
    CHECK_EQ_INT(failalloc_size_errors(), 0);
out:
    emdpo_llama_free(pol);
    emdpo_llama_free(ref);
    emdpo_lm_set_free(set);
    emdpo_data_free(d);
}

int main(void) {
    test_ari();
    test_best_table();
    emdpo_tokenizer *tok = testdata_letter_tokenizer();
    CHECK(tok != NULL);
    if (!tok) return check_report("test_lm_eval");
    test_eval(tok);
    test_distinct(tok);
    test_baselines(tok);
    test_failalloc(tok);
    emdpo_tokenizer_free(tok);
    return check_report("test_lm_eval");
}
