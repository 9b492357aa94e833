/* MMRA-AE: the exact game solver on games with known solutions, optimistic
 * Hedge against it, the regret matrix, exact log-linear cross rewards against
 * Monte Carlo and direct computation, thread-count determinism, and clean
 * failure at every allocation. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/rng.h"
#include "check.h"
#include "loglinear/loglinear_mmra.h"
#include "data/data.h"
#include "failalloc.h"

#define MAXN 16 /* largest game side and choice set in these tests */

/* Solves R exactly and checks the value and, where given, the strategies. */
static void check_lp_game(const char *name, const double *R, int rows, int cols, double value,
                          const double *w_opt, const double *p_opt) {
    double w[MAXN], p[MAXN];
    emdpo_zerosum_result res;
    int rc = emdpo_zerosum_lp(R, rows, cols, w, p, &res);
    CHECK_MSG(rc == EMDPO_OK, "%s: rc %d", name, rc);
    if (rc) return;
    CHECK_MSG(fabs(res.value - value) <= 1e-12, "%s: value %.17g, want %.17g", name, res.value, value);
    CHECK_MSG(res.gap <= 1e-12, "%s: gap %g", name, res.gap);
    CHECK_MSG(res.upper >= value - 1e-12 && res.lower <= value + 1e-12, "%s: bounds", name);
    for (int j = 0; w_opt && j < cols; j++)
        CHECK_MSG(fabs(w[j] - w_opt[j]) <= 1e-12, "%s: w[%d] = %.17g, want %.17g", name, j, w[j], w_opt[j]);
    for (int i = 0; p_opt && i < rows; i++)
        CHECK_MSG(fabs(p[i] - p_opt[i]) <= 1e-12, "%s: p[%d] = %.17g, want %.17g", name, i, p[i], p_opt[i]);
}

static void test_lp_known_games(void) {
    const double pennies[] = {1, -1, -1, 1}, half[] = {0.5, 0.5};
    check_lp_game("matching pennies", pennies, 2, 2, 0.0, half, half);

    const double rps[] = {0, -1, 1, 1, 0, -1, -1, 1, 0}, third[] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
    check_lp_game("rock-paper-scissors", rps, 3, 3, 0.0, third, third);

    /* Row 2 is dominated by both others, column 2 by column 0. */
    const double dom[] = {3, 1, 4, 1, 3, 4, 0, 0, 1};
    const double dom_w[] = {0.5, 0.5, 0}, dom_p[] = {0.5, 0.5, 0};
    check_lp_game("dominated", dom, 3, 3, 2.0, dom_w, dom_p);

    /* Entry (1, 0) is the largest in its column and the smallest in its row. */
    const double saddle[] = {1, 5, 2, 3, 0, 6}, sad_w[] = {1, 0}, sad_p[] = {0, 1, 0};
    check_lp_game("saddle point", saddle, 3, 2, 2.0, sad_w, sad_p);

    const double one[] = {7}, unit[] = {1};
    check_lp_game("1x1", one, 1, 1, 7.0, unit, unit);
    const double row[] = {3, 1, 2}, row_w[] = {0, 1, 0};
    check_lp_game("1x3", row, 1, 3, 1.0, row_w, unit);
    const double col[] = {3, 1, 2}, col_p[] = {1, 0, 0};
    check_lp_game("3x1", col, 3, 1, 3.0, unit, col_p);

    /* Worked by hand: the maximiser mixes (5/7, 2/7), the minimiser its
     * last two columns (4/7, 3/7); value 15/7. */
    const double wide[] = {2, 3, 1, 4, 0, 5}, wide_w[] = {0, 4.0 / 7, 3.0 / 7}, wide_p[] = {5.0 / 7, 2.0 / 7};
    check_lp_game("2x3", wide, 2, 3, 15.0 / 7, wide_w, wide_p);

    /* Duplicated rows and columns make the LP degenerate (ties in the ratio
     * test); Bland's rule must still finish. Strategies are not unique. */
    const double degen[] = {0, -1, 1, 1, 1, 0, -1, -1, -1, 1, 0, 0, 0, -1, 1, 1};
    check_lp_game("degenerate", degen, 4, 4, 0.0, NULL, NULL);

    double w[2], p[2];
    emdpo_zerosum_result res;
    const double bad[] = {1, NAN, 0, 1};
    CHECK_EQ_INT(emdpo_zerosum_lp(bad, 2, 2, w, p, &res), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_zerosum_lp(pennies, 0, 2, w, p, &res), EMDPO_ERR_INVALID_ARG);
    const double huge[] = {1e308, -1e308, 0, 0};
    CHECK_EQ_INT(emdpo_zerosum_lp(huge, 2, 2, w, p, &res), EMDPO_ERR_INVALID_ARG);
}

/* A (K+1) x K game with entries of scale 10^[-3, 3]; in half of them row 0
 * is zero, as in regret matrices. */
static double random_game(emdpo_rng *r, int K, double *R) {
    double scale = pow(10.0, 6.0 * emdpo_rng_uniform(r) - 3.0);
    int zero_row = emdpo_rng_below(r, 2) == 0;
    for (int k = 0; k < (K + 1) * K; k++) R[k] = (zero_row && k < K) ? 0.0 : scale * emdpo_rng_normal(r);
    return scale;
}

static double entry_range(const double *R, int n) {
    double lo = R[0], hi = R[0];
    for (int k = 1; k < n; k++) {
        lo = fmin(lo, R[k]);
        hi = fmax(hi, R[k]);
    }
    return hi - lo;
}

static void test_hedge_vs_lp(void) {
    emdpo_rng r;
    emdpo_rng_seed(&r, 42, 0);
    const long Ts[3] = {100, 1000, 10000};
    int n_games = 0, n_shrink = 0;
    for (int trial = 0; trial < 210; trial++) {
        int K = 2 + trial % 7, rows = K + 1;
        double R[MAXN * MAXN], w_lp[MAXN], p_lp[MAXN], w[MAXN], p[MAXN];
        double scale = random_game(&r, K, R), range = entry_range(R, rows * K);
        emdpo_zerosum_result lp, res[3];
        if (emdpo_zerosum_lp(R, rows, K, w_lp, p_lp, &lp) != EMDPO_OK) {
            CHECK_MSG(0, "trial %d: LP failed", trial);
            continue;
        }
        CHECK_MSG(lp.gap <= 1e-12 * range, "trial %d: LP gap %g", trial, lp.gap);
        double slack = 1e-12 * scale;
        for (int s = 0; s < 3; s++) {
            emdpo_mmra_hedge_opts o = {Ts[s], 0.0, -1.0};
            int rc = emdpo_mmra_hedge(R, rows, K, &o, w, p, &res[s]);
            CHECK_MSG(rc == EMDPO_OK && res[s].iterations == Ts[s], "trial %d: rc %d", trial, rc);
            /* The certificate: lower <= value <= upper, so upper - value <= gap. */
            CHECK_MSG(res[s].lower <= lp.value + slack && res[s].upper >= lp.value - slack,
                      "trial %d T %ld: [%.17g, %.17g] misses %.17g", trial, Ts[s], res[s].lower,
                      res[s].upper, lp.value);
            /* The RVU guarantee for the default step size. */
            double bound = range * (log((double)rows) + log((double)K)) / (double)Ts[s];
            CHECK_MSG(res[s].gap <= bound, "trial %d T %ld: gap %g above bound %g", trial, Ts[s],
                      res[s].gap, bound);
        }
        CHECK_MSG(res[2].upper - lp.value <= 1e-3 * range, "trial %d: Hedge worst case %.17g vs %.17g",
                  trial, res[2].upper, lp.value);
        CHECK_MSG(res[2].gap <= res[0].gap + slack, "trial %d: gap grew %g -> %g", trial, res[0].gap,
                  res[2].gap);
        n_games++;
        n_shrink += res[2].gap <= res[1].gap + slack && res[1].gap <= res[0].gap + slack;
    }
    CHECK_EQ_INT(n_games, 210);
    CHECK_MSG(n_shrink >= 200, "gap shrank monotonically in only %d of 210 games", n_shrink);
}

static void test_hedge_stopping(void) {
    const double rps[] = {0, -1, 1, 1, 0, -1, -1, 1, 0, 0.5, 0.5, 0.5};
    double w[3], p[4];
    emdpo_zerosum_result res;
    emdpo_mmra_hedge_opts o;
    emdpo_mmra_hedge_opts_init(&o);
    o.rel_tol = 1e-3;
    CHECK_EQ_INT(emdpo_mmra_hedge(rps, 4, 3, &o, w, p, &res), EMDPO_OK);
    CHECK(res.gap <= 1e-3 * 2.0 && res.iterations < o.max_iter);
    CHECK_CLOSE(res.upper, 0.5, 2e-3);

    o.rel_tol = 1e-14;
    o.max_iter = 10;
    CHECK_EQ_INT(emdpo_mmra_hedge(rps, 4, 3, &o, w, p, &res), EMDPO_ERR_NOT_CONVERGED);
    CHECK_EQ_INT(res.iterations, 10);
    CHECK_CLOSE(w[0] + w[1] + w[2], 1.0, 1e-14);

    /* A constant game needs no rounds. */
    const double flat[] = {2, 2, 2, 2};
    CHECK_EQ_INT(emdpo_mmra_hedge(flat, 2, 2, NULL, w, p, &res), EMDPO_OK);
    CHECK(res.iterations == 0 && res.value == 2.0 && w[0] == 0.5);

    o.max_iter = 0;
    CHECK_EQ_INT(emdpo_mmra_hedge(rps, 4, 3, &o, w, p, &res), EMDPO_ERR_INVALID_ARG);
    const double skew[] = {2, -1, -1, 1};
    o.max_iter = 5;
    o.eta = 1e308; /* steps overflow to infinity */
    CHECK_EQ_INT(emdpo_mmra_hedge(skew, 2, 2, &o, w, p, &res), EMDPO_ERR_NUMERIC);
}

static void test_regret_matrix(void) {
    emdpo_rng r;
    emdpo_rng_seed(&r, 7, 1);
    for (int K = 1; K <= 8; K++) {
        double L[MAXN * MAXN], R[MAXN * MAXN], w[MAXN], w_lp[MAXN];
        for (int k = 0; k < K * K; k++) L[k] = 3.0 * emdpo_rng_normal(&r);
        emdpo_mmra_regret_matrix(K, L, R);
        for (int j = 0; j < K; j++) CHECK(R[j] == 0.0);
        for (int k = 1; k <= K; k++) {
            CHECK(R[k * K + (k - 1)] == 0.0);
            for (int j = 0; j < K; j++) CHECK(R[k * K + j] == L[(k - 1) * K + k - 1] - L[(k - 1) * K + j]);
        }
        emdpo_zerosum_result lp, hd;
        CHECK_EQ_INT(emdpo_mmra_ae(K, L, EMDPO_GAME_LP, NULL, w_lp, &lp), EMDPO_OK);
        CHECK_MSG(lp.value >= -1e-12, "K %d: min-max regret %g < 0", K, lp.value);
        CHECK_EQ_INT(emdpo_mmra_ae(K, L, EMDPO_GAME_HEDGE, NULL, w, &hd), EMDPO_OK);
        double range = entry_range(R, (K + 1) * K);
        CHECK_MSG(hd.upper >= lp.value - 1e-12 && hd.upper - lp.value <= hd.gap + 1e-12 &&
                      hd.gap <= 1e-4 * range,
                  "K %d: Hedge %.17g vs LP %.17g (gap %g)", K, hd.upper, lp.value, hd.gap);
        /* res->upper is the mixture's worst-case regret, row 0 included. */
        double reg[MAXN], worst = 0.0;
        emdpo_mmra_mixture_regret(K, L, w, reg);
        for (int a = 0; a < K; a++) worst = fmax(worst, reg[a]);
        CHECK_CLOSE(worst, hd.upper, 1e-12);
    }
    double L1[1] = {0}, w1[1];
    emdpo_zerosum_result res;
    CHECK_EQ_INT(emdpo_mmra_ae(0, L1, EMDPO_GAME_LP, NULL, w1, &res), EMDPO_ERR_INVALID_ARG);
}

/* n_dec decisions of 2..5 items with p normal features; about a third are
 * rankings, which must not change which items form the choice set. */
static emdpo_data *make_data(int n_dec, int p, uint64_t seed) {
    emdpo_rng r;
    emdpo_rng_seed(&r, seed, 2);
    emdpo_data_builder *b;
    if (emdpo_data_builder_create(p, &b)) return NULL;
    for (int j = 0; j < n_dec; j++) {
        double x[5 * MAXN];
        int n = 2 + (int)emdpo_rng_below(&r, 4);
        int stages = 1 + (int)emdpo_rng_below(&r, (uint64_t)(n - 1));
        for (int k = 0; k < n * p; k++) x[k] = emdpo_rng_normal(&r);
        char name[32];
        snprintf(name, sizeof name, "u%d", j / 3);
        if (emdpo_data_builder_add(b, name, NULL, NULL, n, stages, x, NULL)) {
            emdpo_data_builder_free(b);
            return NULL;
        }
    }
    emdpo_data *d;
    return emdpo_data_builder_finish(b, &d) ? NULL : d;
}

/* An independent reference: rewards and softmax policy of theta on one decision. */
static int ref_policy(const emdpo_data *d, int64_t dec, const double *th, double beta, double *rew,
                      double *pi) {
    int n = emdpo_dec_n_items(d, dec), P = d->p;
    double z = 0.0, mx = -INFINITY;
    for (int y = 0; y < n; y++) {
        rew[y] = 0.0;
        for (int k = 0; k < P; k++) rew[y] += th[k] * d->x[(d->dec_item[dec] + y) * P + k];
        mx = fmax(mx, rew[y] / beta);
    }
    for (int y = 0; y < n; y++) z += (pi[y] = exp(rew[y] / beta - mx));
    for (int y = 0; y < n; y++) pi[y] /= z;
    return n;
}

enum { K3 = 3, P3 = 3 };
static const double theta3[K3 * P3] = {1.5, -0.5, 0.0, -1.0, 1.0, 0.5, 0.2, 0.3, -1.2};

static void test_loglin_monte_carlo(void) {
    const double beta = 0.7;
    emdpo_data *d = make_data(200, P3, 11);
    CHECK(d != NULL);
    if (!d) return;
    double V[K3 * K3], L[K3 * K3], norm[K3];
    CHECK_EQ_INT(emdpo_mmra_loglin_cross(d, theta3, K3, beta, V, norm), EMDPO_OK);
    CHECK_EQ_INT(emdpo_mmra_loglin_L(d, theta3, K3, beta, L), EMDPO_OK);
    for (int k = 0; k < K3 * K3; k++) CHECK_CLOSE(L[k], V[k] - norm[k / K3], 1e-14);

    emdpo_rng r;
    emdpo_rng_seed(&r, 5, 3);
    const long n_draws = 100000;
    for (int b = 0; b < K3; b++) {
        double sv[K3] = {0}, sv2[K3] = {0}, sl[K3] = {0}, sl2[K3] = {0};
        for (long t = 0; t < n_draws; t++) {
            int64_t dec = (int64_t)emdpo_rng_below(&r, (uint64_t)d->n_dec);
            double rew[MAXN], pi[MAXN];
            int n = ref_policy(d, dec, theta3 + b * P3, beta, rew, pi);
            int y = emdpo_rng_categorical(&r, pi, n);
            for (int a = 0; a < K3; a++) {
                double ra[MAXN], pa[MAXN];
                ref_policy(d, dec, theta3 + a * P3, beta, ra, pa);
                double lr = beta * log(pa[y] * n); /* beta log(pi_a / pi_ref) */
                sv[a] += ra[y];
                sv2[a] += ra[y] * ra[y];
                sl[a] += lr;
                sl2[a] += lr * lr;
            }
        }
        for (int a = 0; a < K3; a++) {
            double mv = sv[a] / n_draws, ml = sl[a] / n_draws;
            double se_v = sqrt((sv2[a] / n_draws - mv * mv) / n_draws);
            double se_l = sqrt((sl2[a] / n_draws - ml * ml) / n_draws);
            CHECK_MSG(fabs(V[a * K3 + b] - mv) <= 4 * se_v, "V[%d][%d] = %g, MC %g (se %g)", a, b,
                      V[a * K3 + b], mv, se_v);
            CHECK_MSG(fabs(L[a * K3 + b] - ml) <= 4 * se_l, "L[%d][%d] = %g, MC %g (se %g)", a, b,
                      L[a * K3 + b], ml, se_l);
        }
    }
    emdpo_data_free(d);
}

/* Expected rewards of each type under the mixture sum_b w_b pi_b, formed
 * per decision as a distribution over items. */
static void ref_mixture_rewards(const emdpo_data *d, const double *theta, int K, double beta,
                                const double *w, double *out) {
    for (int a = 0; a < K; a++) out[a] = 0.0;
    for (int64_t dec = 0; dec < d->n_dec; dec++) {
        double mix[MAXN] = {0}, rew[MAXN], pi[MAXN];
        int n = 0;
        for (int b = 0; b < K; b++) {
            n = ref_policy(d, dec, theta + b * d->p, beta, rew, pi);
            for (int y = 0; y < n; y++) mix[y] += w[b] * pi[y];
        }
        for (int a = 0; a < K; a++) {
            ref_policy(d, dec, theta + a * d->p, beta, rew, pi);
            for (int y = 0; y < n; y++) out[a] += mix[y] * rew[y] / (double)d->n_dec;
        }
    }
}

static void test_loglin_regrets(void) {
    const double beta = 1.3;
    emdpo_data *d = make_data(150, P3, 12);
    CHECK(d != NULL);
    if (!d) return;
    double V[K3 * K3], L[K3 * K3], reg[K3], reg_l[K3];
    CHECK_EQ_INT(emdpo_mmra_loglin_cross(d, theta3, K3, beta, V, NULL), EMDPO_OK);
    CHECK_EQ_INT(emdpo_mmra_loglin_L(d, theta3, K3, beta, L), EMDPO_OK);

    /* A mixture of exactly the types, against the mixture formed item by item. */
    const double w[K3] = {0.2, 0.5, 0.3}, pure[K3][K3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    double mix_rew[K3], own[K3];
    ref_mixture_rewards(d, theta3, K3, beta, w, mix_rew);
    emdpo_mmra_mixture_regret(K3, V, w, reg);
    emdpo_mmra_mixture_regret(K3, L, w, reg_l);
    for (int a = 0; a < K3; a++) {
        ref_mixture_rewards(d, theta3, K3, beta, pure[a], own);
        CHECK_CLOSE(reg[a], own[a] - mix_rew[a], 1e-12);
        CHECK_CLOSE(reg_l[a], reg[a], 1e-12);
    }

    /* Linear in w. */
    const double w2[K3] = {0.6, 0.1, 0.3};
    double wm[K3], r1[K3], r2[K3], rm[K3];
    for (int b = 0; b < K3; b++) wm[b] = 0.25 * w[b] + 0.75 * w2[b];
    emdpo_mmra_mixture_regret(K3, V, w, r1);
    emdpo_mmra_mixture_regret(K3, V, w2, r2);
    emdpo_mmra_mixture_regret(K3, V, wm, rm);
    for (int a = 0; a < K3; a++) CHECK_CLOSE(rm[a], 0.25 * r1[a] + 0.75 * r2[a], 1e-13);

    /* An extra policy: one of the types reproduces a column of the regret
     * matrix; another policy matches its own direct computation. */
    double R[(K3 + 1) * K3];
    emdpo_mmra_regret_matrix(K3, L, R);
    CHECK_EQ_INT(emdpo_mmra_loglin_regret(d, theta3, K3, beta, theta3 + 1 * P3, reg), EMDPO_OK);
    for (int a = 0; a < K3; a++) CHECK_CLOSE(reg[a], R[(a + 1) * K3 + 1], 1e-12);
    CHECK(reg[1] == 0.0);
    const double pooled[P3] = {0.3, 0.2, -0.2};
    double stack[(K3 + 1) * P3], one_hot[K3 + 1] = {0, 0, 0, 1}, ref[K3 + 1];
    memcpy(stack, theta3, sizeof theta3);
    memcpy(stack + K3 * P3, pooled, sizeof pooled);
    ref_mixture_rewards(d, stack, K3 + 1, beta, one_hot, ref);
    CHECK_EQ_INT(emdpo_mmra_loglin_regret(d, theta3, K3, beta, pooled, reg), EMDPO_OK);
    for (int a = 0; a < K3; a++) {
        ref_mixture_rewards(d, theta3, K3, beta, pure[a], own);
        CHECK_CLOSE(reg[a], own[a] - ref[a], 1e-12);
        CHECK(reg[a] > 1e-3); /* the pooled policy is no type's own optimum */
    }

    /* Identical types: nobody regrets anything, and the game is worth 0. */
    double same[K3 * P3], Vs[K3 * K3], Rs[(K3 + 1) * K3], ws[K3];
    for (int k = 0; k < K3 * P3; k++) same[k] = theta3[k % P3];
    CHECK_EQ_INT(emdpo_mmra_loglin_L(d, same, K3, beta, Vs), EMDPO_OK);
    emdpo_mmra_regret_matrix(K3, Vs, Rs);
    for (int k = 0; k < (K3 + 1) * K3; k++) CHECK(Rs[k] == 0.0);
    emdpo_zerosum_result res;
    CHECK_EQ_INT(emdpo_mmra_ae(K3, Vs, EMDPO_GAME_HEDGE, NULL, ws, &res), EMDPO_OK);
    CHECK(res.upper == 0.0 && res.gap == 0.0);

    CHECK_EQ_INT(emdpo_mmra_loglin_cross(d, theta3, K3, 0.0, V, NULL), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_mmra_loglin_cross(d, theta3, 0, beta, V, NULL), EMDPO_ERR_INVALID_ARG);
    const double inf_theta[P3] = {INFINITY, 0, 0};
    CHECK_EQ_INT(emdpo_mmra_loglin_cross(d, inf_theta, 1, beta, V, NULL), EMDPO_ERR_NUMERIC);
    emdpo_data_free(d);

    emdpo_data *text = make_data(3, 0, 1);
    CHECK(text != NULL);
    CHECK_EQ_INT(emdpo_mmra_loglin_cross(text, theta3, K3, beta, V, NULL), EMDPO_ERR_UNSUPPORTED);
    CHECK_EQ_INT(emdpo_mmra_loglin_regret(text, theta3, K3, beta, theta3, reg), EMDPO_ERR_UNSUPPORTED);
    emdpo_data_free(text);
}

static void test_thread_determinism(void) {
    emdpo_data *d = make_data(1100, P3, 13); /* several blocks of decisions */
    CHECK(d != NULL);
    if (!d) return;
    double V1[K3 * K3], V2[K3 * K3], n1[K3], n2[K3];
#ifdef _OPENMP
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    CHECK_EQ_INT(emdpo_mmra_loglin_cross(d, theta3, K3, 0.9, V1, n1), EMDPO_OK);
#ifdef _OPENMP
    omp_set_num_threads(2);
#endif
    CHECK_EQ_INT(emdpo_mmra_loglin_cross(d, theta3, K3, 0.9, V2, n2), EMDPO_OK);
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
    CHECK(memcmp(V1, V2, sizeof V1) == 0);
    CHECK(memcmp(n1, n2, sizeof n1) == 0);
    emdpo_data_free(d);
}

/* Every allocation of every allocating function fails once in turn. */
enum { OP_LP, OP_HEDGE, OP_AE_LP, OP_AE_HEDGE, OP_CROSS, OP_L, OP_REGRET, N_OPS };

static int run_op(int op, const emdpo_data *d) {
    const double R[] = {0, 0, 0, 1, 0, 2, 3, 0.5, 0, 0, 1, 2}, L[] = {0, 1, 2, 0.5, 1, 0, 0, 2, 3};
    double w[4], p[4], V[(K3 + 1) * (K3 + 1)];
    emdpo_zerosum_result res;
    emdpo_mmra_hedge_opts o = {50, 0.0, -1.0};
    switch (op) {
    case OP_LP: return emdpo_zerosum_lp(R, 4, 3, w, p, &res);
    case OP_HEDGE: return emdpo_mmra_hedge(R, 4, 3, &o, w, p, &res);
    case OP_AE_LP: return emdpo_mmra_ae(3, L, EMDPO_GAME_LP, NULL, w, &res);
    case OP_AE_HEDGE: return emdpo_mmra_ae(3, L, EMDPO_GAME_HEDGE, &o, w, &res);
    case OP_CROSS: return emdpo_mmra_loglin_cross(d, theta3, K3, 1.0, V, p);
    case OP_L: return emdpo_mmra_loglin_L(d, theta3, K3, 1.0, V);
    default: return emdpo_mmra_loglin_regret(d, theta3, K3, 1.0, theta3, w);
    }
}

static void test_alloc_failures(void) {
    emdpo_data *d = make_data(300, P3, 14);
    CHECK(d != NULL);
    if (!d) return;
    for (int op = 0; op < N_OPS; op++) {
        long k;
        for (k = 0; k < 1000; k++) {
            failalloc_install(k, 0);
            int rc = run_op(op, d);
            long live = failalloc_live(), count = failalloc_count();
            int size_err = failalloc_size_errors();
            failalloc_uninstall();
            CHECK_MSG(rc == EMDPO_OK || rc == EMDPO_ERR_NOMEM, "op %d fail_at %ld: rc %d", op, k, rc);
            CHECK_MSG(live == 0, "op %d fail_at %ld leaks %ld blocks", op, k, live);
            CHECK_MSG(size_err == 0, "op %d fail_at %ld: %d frees with a wrong size", op, k, size_err);
            if (count <= k) { /* the failure point was never reached */
                CHECK_EQ_INT(rc, EMDPO_OK);
                break;
            }
            CHECK_MSG(rc == EMDPO_ERR_NOMEM, "op %d fail_at %ld: a failed allocation returned %d", op,
                      k, rc);
        }
        CHECK_MSG(k >= 1 && k < 1000, "op %d: %ld allocations", op, k);
    }
    emdpo_data_free(d);
}

int main(void) {
    test_lp_known_games();
    test_hedge_vs_lp();
    test_hedge_stopping();
    test_regret_matrix();
    test_loglin_monte_carlo();
    test_loglin_regrets();
    test_thread_determinism();
    test_alloc_failures();
    return check_report("test_mmra");
}
