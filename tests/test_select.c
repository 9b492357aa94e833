/* Model selection helpers: the seeded annotator split (a partition that
 * keeps order, is reproducible and refuses empty sides) and the held-out
 * log-likelihood against brute-force Plackett-Luce products. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "check.h"
#include "core/heldout.h"
#include "failalloc.h"
#include "loglinear/loglinear.h"

#define P 3

/* n_annot annotators with 1..3 decisions of 2..4 items and any ranking depth. */
static emdpo_data *random_data(int n_annot, uint64_t seed) {
    emdpo_data_builder *b;
    if (emdpo_data_builder_create(P, &b)) return NULL;
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, 0);
    double x[4 * P];
    char name[32];
    for (int i = 0; i < n_annot; i++) {
        snprintf(name, sizeof name, "a%d", i);
        int m = 1 + (int)emdpo_rng_below(&r, 3);
        for (int j = 0; j < m; j++) {
            int n = 2 + (int)emdpo_rng_below(&r, 3);
            int stages = 1 + (int)emdpo_rng_below(&r, (uint64_t)(n - 1));
            for (int q = 0; q < n * P; q++) x[q] = emdpo_rng_normal(&r);
            if (emdpo_data_builder_add(b, name, NULL, NULL, n, stages, x, NULL)) {
                emdpo_data_builder_free(b);
                return NULL;
            }
        }
    }
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_data_builder_finish(b, &d), EMDPO_OK);
    return d;
}

/* Plackett-Luce probability of decision j under theta, from its definition. */
static double brute_decision_prob(const emdpo_data *d, int64_t j, const double *theta) {
    int n = emdpo_dec_n_items(d, j);
    double u[8], prob = 1.0;
    for (int q = 0; q < n; q++) {
        u[q] = 0.0;
        for (int a = 0; a < P; a++) u[q] += theta[a] * d->x[(d->dec_item[j] + q) * P + a];
    }
    for (int t = 0; t < d->dec_stages[j]; t++) {
        double z = 0.0;
        for (int q = t; q < n; q++) z += exp(u[q]);
        prob *= exp(u[t]) / z;
    }
    return prob;
}

static void test_heldout_loglik(void) {
    emdpo_data *d = random_data(6, 3);
    emdpo_policy *pol = NULL;
    if (!d || emdpo_loglinear_create(3, P, &pol)) {
        CHECK(0);
        emdpo_data_free(d);
        return;
    }
    const double theta[3 * P] = {0.9, -0.4, 0.2, -1.1, 0.5, 0.7, 0.3, 0.3, -2.0};
    memcpy(emdpo_loglinear_of(pol)->theta, theta, sizeof theta);
    const double etas[2][3] = {{0.2, 0.5, 0.3}, {0.4, 0.0, 0.6}}; /* the second has an empty type */
    for (int e = 0; e < 2; e++) {
        double ll[6], total = 0.0, sum = 0.0;
        CHECK_EQ_INT(emdpo_heldout_loglik(pol, etas[e], d, ll, &total), EMDPO_OK);
        for (int64_t i = 0; i < d->n_annot; i++) {
            double mix = 0.0;
            for (int k = 0; k < 3; k++) {
                double prod = etas[e][k];
                for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++)
                    prod *= brute_decision_prob(d, j, theta + k * P);
                mix += prod;
            }
            CHECK_CLOSE(ll[i], log(mix), 1e-12);
            sum += log(mix);
        }
        CHECK_CLOSE(total, sum, 1e-12);
    }
    const double bad[3] = {0.5, -0.1, 0.6};
    double total;
    CHECK_EQ_INT(emdpo_heldout_loglik(pol, bad, d, NULL, &total), EMDPO_ERR_INVALID_ARG);
    emdpo_policy_free(pol);
    emdpo_data_free(d);
}

/* Index of annotator name "a<i>" in the source, -1 when malformed. */
static int name_index(const char *s) {
    return s[0] == 'a' ? atoi(s + 1) : -1;
}

static void test_split(void) {
    emdpo_data *d = random_data(50, 5);
    if (!d) return;
    CHECK_EQ_INT(emdpo_holdout_count(50, 0.2), 10);
    CHECK_EQ_INT(emdpo_holdout_count(50, 0.0), -1);
    CHECK_EQ_INT(emdpo_holdout_count(50, 1.0), -1);
    emdpo_data *tr = NULL, *va = NULL, *tr2 = NULL, *va2 = NULL;
    CHECK_EQ_INT(emdpo_data_split(d, 0.2, 7, &tr, &va), EMDPO_OK);
    CHECK_EQ_INT(emdpo_data_split(d, 0.2, 7, &tr2, &va2), EMDPO_OK);
    if (tr && va && tr2 && va2) {
        CHECK_EQ_INT(va->n_annot, 10);
        CHECK_EQ_INT(tr->n_annot, 40);
        CHECK_EQ_INT(tr->n_dec + va->n_dec, d->n_dec);
        int seen[50] = {0}, ordered = 1;
        const emdpo_data *side[2] = {tr, va};
        for (int s = 0; s < 2; s++)
            for (int64_t i = 0; i < side[s]->n_annot; i++) {
                int q = name_index(side[s]->annot_name[i]);
                if (q >= 0 && q < 50) seen[q]++;
                if (i > 0 && q <= name_index(side[s]->annot_name[i - 1])) ordered = 0;
                /* Every annotator keeps its decisions. */
                if (q >= 0 && q < 50)
                    CHECK_EQ_INT(side[s]->annot_dec[i + 1] - side[s]->annot_dec[i],
                                 d->annot_dec[q + 1] - d->annot_dec[q]);
            }
        int once = 1;
        for (int q = 0; q < 50; q++) once &= seen[q] == 1;
        CHECK(once);
        CHECK(ordered);
        int same = 1;
        for (int64_t i = 0; i < va->n_annot; i++) same &= strcmp(va->annot_name[i], va2->annot_name[i]) == 0;
        CHECK(same);
    }
    emdpo_data_free(tr2);
    emdpo_data_free(va2);
    CHECK_EQ_INT(emdpo_data_split(d, 0.2, 8, &tr2, &va2), EMDPO_OK);
    if (va && va2) {
        int same = 1;
        for (int64_t i = 0; i < va->n_annot; i++) same &= strcmp(va->annot_name[i], va2->annot_name[i]) == 0;
        CHECK(!same);
    }
    emdpo_data_free(tr);
    emdpo_data_free(va);
    emdpo_data_free(tr2);
    emdpo_data_free(va2);
    /* 50 * 0.005 rounds to 0 held out; 50 * 0.995 to none left for training. */
    CHECK_EQ_INT(emdpo_data_split(d, 0.005, 7, &tr, &va), EMDPO_ERR_INVALID_ARG);
    CHECK(!tr && !va);
    CHECK_EQ_INT(emdpo_data_split(d, 0.995, 7, &tr, &va), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_data_split(d, 1.5, 7, &tr, &va), EMDPO_ERR_INVALID_ARG);
    emdpo_data_free(d);
}

static void test_alloc_failures(void) {
    emdpo_data *d = random_data(8, 11);
    if (!d) return;
    long done_at = -1;
    for (long k = 0; k < 100000 && done_at < 0; k++) {
        failalloc_install(k, 0);
        emdpo_data *tr = NULL, *va = NULL;
        int rc = emdpo_data_split(d, 0.25, 3, &tr, &va);
        int ok = !rc && tr && va && tr->n_annot == 6 && va->n_annot == 2;
        int clean = rc == EMDPO_ERR_NOMEM && !tr && !va;
        emdpo_data_free(tr);
        emdpo_data_free(va);
        long live = failalloc_live(), count = failalloc_count();
        int size_err = failalloc_size_errors();
        failalloc_uninstall();
        CHECK_MSG(ok || clean, "fail_at %ld rc %d", k, rc);
        CHECK_MSG(live == 0, "fail_at %ld leaks %ld blocks", k, live);
        CHECK_MSG(size_err == 0, "fail_at %ld: %d frees with a wrong size", k, size_err);
        if (count <= k) done_at = k;
    }
    CHECK(done_at > 4);
    emdpo_data_free(d);
}

int main(void) {
    test_heldout_loglik();
    test_split();
    test_alloc_failures();
    return check_report("test_select");
}
