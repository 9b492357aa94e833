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

/* The held-out annotators as the split drew them before it followed only
 * the slots it touches: a partial Fisher-Yates over an array of all n,
 * sorted. The split must still give these (its results are recorded). */
static void reference_heldout(int64_t n, int64_t nv, uint64_t seed, int64_t *held) {
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    if (!idx) return;
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, 0);
    for (int64_t i = 0; i < nv; i++) {
        int64_t j = i + (int64_t)emdpo_rng_below(&r, (uint64_t)(n - i)), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    /* Sorted by marking. */
    char *mark = calloc((size_t)n, 1);
    if (mark) {
        for (int64_t i = 0; i < nv; i++) mark[idx[i]] = 1;
        for (int64_t i = 0, v = 0; i < n; i++)
            if (mark[i]) held[v++] = i;
    }
    free(mark);
    free(idx);
}

static void test_split_reference(void) {
    const int ns[] = {50, 301, 2000};
    const double shares[] = {0.2, 0.5, 0.9};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            emdpo_data *d = random_data(ns[a], 40 + (uint64_t)a);
            if (!d) return;
            uint64_t seed = 11 + (uint64_t)(a * 3 + b);
            emdpo_data *tr = NULL, *va = NULL;
            CHECK_EQ_INT(emdpo_data_split(d, shares[b], seed, &tr, &va), EMDPO_OK);
            int64_t nv = emdpo_holdout_count(ns[a], shares[b]);
            int64_t *want = calloc((size_t)nv, sizeof *want);
            if (want && va) {
                reference_heldout(ns[a], nv, seed, want);
                int same = va->n_annot == nv;
                for (int64_t i = 0; same && i < nv; i++) same = name_index(va->annot_name[i]) == want[i];
                CHECK_MSG(same, "n %d holdout %g: held-out annotators differ from the reference", ns[a], shares[b]);
            }
            free(want);
            emdpo_data_free(tr);
            emdpo_data_free(va);
            emdpo_data_free(d);
        }
}

/* Whether a and b hold the same annotators, decisions and features. */
static int same_data(const emdpo_data *a, const emdpo_data *b) {
    if (a->n_annot != b->n_annot || a->n_dec != b->n_dec || a->n_items != b->n_items || a->p != b->p) return 0;
    for (int64_t i = 0; i < a->n_annot; i++)
        if (strcmp(a->annot_name[i], b->annot_name[i]) || a->annot_dec[i + 1] != b->annot_dec[i + 1]) return 0;
    for (int64_t j = 0; j < a->n_dec; j++)
        if (a->dec_item[j + 1] != b->dec_item[j + 1] || a->dec_stages[j] != b->dec_stages[j]) return 0;
    return memcmp(a->x, b->x, (size_t)a->n_items * (size_t)a->p * sizeof(double)) == 0;
}

/* A share of the data (one process here: all of it, marked as a share)
 * splits into shares of the two sides that hold what the whole data's
 * split holds; across processes tests/cli_mpi.sh checks the same. */
static void test_split_share(void) {
    emdpo_data *d = random_data(300, 9), *s = NULL;
    if (!d) return;
    CHECK_EQ_INT(emdpo_data_share(d, &s), EMDPO_OK);
    emdpo_data *tr = NULL, *va = NULL, *trs = NULL, *vas = NULL;
    CHECK_EQ_INT(emdpo_data_split(d, 0.3, 4, &tr, &va), EMDPO_OK);
    if (s) CHECK_EQ_INT(emdpo_data_split(s, 0.3, 4, &trs, &vas), EMDPO_OK);
    if (tr && va && trs && vas) {
        CHECK(same_data(tr, trs));
        CHECK(same_data(va, vas));
        CHECK(trs->shard && vas->shard);
        CHECK_EQ_INT(trs->annot_base, 0);
        CHECK_EQ_INT(trs->all_annot, 210);
        CHECK_EQ_INT(vas->all_annot, 90);
        CHECK_EQ_INT(trs->all_dec, tr->n_dec);
        CHECK_EQ_INT(vas->all_items, va->n_items);
    }
    emdpo_data_free(tr);
    emdpo_data_free(va);
    emdpo_data_free(trs);
    emdpo_data_free(vas);
    emdpo_data_free(s);
    emdpo_data_free(d);
}

static void test_alloc_failures(void) {
    emdpo_data *whole = random_data(8, 11), *share = NULL;
    if (!whole) return;
    CHECK_EQ_INT(emdpo_data_share(whole, &share), EMDPO_OK);
    /* The whole data's split and a share's (one process: its own path). */
    for (int w = 0; w < 2 && share; w++) {
        const emdpo_data *d = w ? share : whole;
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
            CHECK_MSG(ok || clean, "share %d fail_at %ld rc %d", w, k, rc);
            CHECK_MSG(live == 0, "share %d fail_at %ld leaks %ld blocks", w, k, live);
            CHECK_MSG(size_err == 0, "share %d fail_at %ld: %d frees with a wrong size", w, k, size_err);
            if (count <= k) done_at = k;
        }
        CHECK(done_at > 4);
    }
    emdpo_data_free(share);
    emdpo_data_free(whole);
}

int main(void) {
    test_heldout_loglik();
    test_split();
    test_split_reference();
    test_split_share();
    test_alloc_failures();
    return check_report("test_select");
}
