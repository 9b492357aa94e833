/* Preference and SFT losses: gradients against finite differences, the
 * pair case against -log sigmoid, Plackett-Luce rankings against their
 * definition, linearity in the weight, and TRL's reward metrics. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "lm/engine/lm_loss.h"

static void check_fd(const emdpo_loss_opts *o, const double *lr0, int n, int stages, double w) {
    double lr[8], g[8], gd[8];
    memcpy(lr, lr0, (size_t)n * sizeof *lr);
    emdpo_pref_loss(o, lr, n, stages, w, g);
    for (int k = 0; k < n; k++) {
        double h = 1e-6, save = lr[k];
        lr[k] = save + h;
        double up = emdpo_pref_loss(o, lr, n, stages, w, gd);
        lr[k] = save - h;
        double dn = emdpo_pref_loss(o, lr, n, stages, w, gd);
        lr[k] = save;
        CHECK_MSG(fabs((up - dn) / (2 * h) - g[k]) < 1e-6 * fmax(1.0, fabs(g[k])),
                  "loss %d n %d stages %d item %d: fd %.9g vs %.9g", (int)o->kind, n, stages, k, (up - dn) / (2 * h),
                  g[k]);
    }
}

static void test_gradients(void) {
    const double lr[5] = {0.3, -1.2, 2.5, 0.1, -0.7};
    for (int kind = EMDPO_LOSS_DPO; kind <= EMDPO_LOSS_HINGE; kind++) {
        emdpo_loss_opts o = {(emdpo_loss_kind)kind, 0.7, kind == EMDPO_LOSS_CDPO ? 0.2 : 0.0, 0.0};
        for (int n = 2; n <= 5; n++)
            for (int s = 1; s < n; s++) check_fd(&o, lr, n, s, 1.3);
    }
}

static double log_sigmoid(double x) { return -log1p(exp(-x)); }

static void test_pairs(void) {
    double g[2], lr[2] = {0.4, -0.9}, beta = 0.1, d = lr[0] - lr[1];
    emdpo_loss_opts o = {EMDPO_LOSS_DPO, beta, 0.0, 0.0};
    CHECK_CLOSE(emdpo_pref_loss(&o, lr, 2, 1, 1.0, g), -log_sigmoid(beta * d), 1e-14);
    CHECK_CLOSE(g[0], -beta / (1 + exp(beta * d)), 1e-14);
    CHECK_CLOSE(g[1], -g[0], 1e-15);
    /* cDPO with epsilon 0 is DPO; with epsilon it mixes in the flipped label. */
    o.kind = EMDPO_LOSS_CDPO;
    CHECK_CLOSE(emdpo_pref_loss(&o, lr, 2, 1, 1.0, g), -log_sigmoid(beta * d), 1e-14);
    o.label_smoothing = 0.1;
    CHECK_CLOSE(emdpo_pref_loss(&o, lr, 2, 1, 1.0, g), -0.9 * log_sigmoid(beta * d) - 0.1 * log_sigmoid(-beta * d),
                1e-14);
    o.kind = EMDPO_LOSS_IPO;
    CHECK_CLOSE(emdpo_pref_loss(&o, lr, 2, 1, 1.0, g), pow(d - 1 / (2 * beta), 2), 1e-14);
    o.kind = EMDPO_LOSS_HINGE;
    CHECK_CLOSE(emdpo_pref_loss(&o, lr, 2, 1, 1.0, g), 1 - beta * d, 1e-14);
    double far[2] = {30.0, 0.0};
    CHECK(emdpo_pref_loss(&o, far, 2, 1, 1.0, g) == 0.0 && g[0] == 0.0);
    /* Large margins stay finite. */
    o.kind = EMDPO_LOSS_DPO;
    double huge[2] = {-5e4, 5e4};
    double l = emdpo_pref_loss(&o, huge, 2, 1, 1.0, g);
    CHECK(isfinite(l) && isfinite(g[0]));
    CHECK_CLOSE(l, 1e4, 1e-12);
}

static void test_ranking(void) {
    /* A full ranking of 3 = softmax choice among 3, then among the last 2. */
    double lr[3] = {0.5, 0.2, -0.4}, beta = 2.0, g[3];
    emdpo_loss_opts o = {EMDPO_LOSS_DPO, beta, 0.0, 0.0};
    double e0 = exp(beta * lr[0]), e1 = exp(beta * lr[1]), e2 = exp(beta * lr[2]);
    double want = -log(e0 / (e0 + e1 + e2)) - log(e1 / (e1 + e2));
    CHECK_CLOSE(emdpo_pref_loss(&o, lr, 3, 2, 1.0, g), want, 1e-13);
    CHECK_CLOSE(emdpo_pref_loss(&o, lr, 3, 1, 1.0, g), -log(e0 / (e0 + e1 + e2)), 1e-13);
    /* Gradients of a softmax loss sum to zero. */
    emdpo_pref_loss(&o, lr, 3, 2, 1.0, g);
    CHECK(fabs(g[0] + g[1] + g[2]) < 1e-14);
}

static void test_weights(void) {
    double lr[4] = {0.1, 0.3, -0.2, 0.9}, g1[4], g3[4], g0[4];
    for (int kind = EMDPO_LOSS_DPO; kind <= EMDPO_LOSS_HINGE; kind++) {
        emdpo_loss_opts o = {(emdpo_loss_kind)kind, 0.5, 0.1, 0.0};
        double l1 = emdpo_pref_loss(&o, lr, 4, 2, 1.0, g1), l3 = emdpo_pref_loss(&o, lr, 4, 2, 3.0, g3);
        double l0 = emdpo_pref_loss(&o, lr, 4, 2, 0.0, g0);
        CHECK_CLOSE(l3, 3 * l1, 1e-14);
        CHECK(l0 == 0.0);
        for (int k = 0; k < 4; k++) {
            CHECK_CLOSE(g3[k], 3 * g1[k], 1e-14);
            CHECK(g0[k] == 0.0);
        }
    }
    double g;
    CHECK_CLOSE(emdpo_sft_loss(-12.0, 4.0, 0.5, &g), 1.5, 1e-15);
    CHECK_CLOSE(g, -0.125, 1e-15);
}

static void test_rewards(void) {
    double lr[3] = {1.0, -2.0, 0.5};
    emdpo_pref_rewards r;
    emdpo_pref_rewards_of(0.1, lr, 3, &r);
    CHECK_CLOSE(r.chosen, 0.1, 1e-15);
    CHECK_CLOSE(r.rejected, -0.075, 1e-15);
    CHECK_CLOSE(r.margin, 0.175, 1e-15);
    CHECK(r.accuracy == 1.0);
    lr[2] = 1.5;
    emdpo_pref_rewards_of(0.1, lr, 3, &r);
    CHECK(r.accuracy == 0.0);
    CHECK(strcmp(emdpo_loss_name(EMDPO_LOSS_IPO), "ipo") == 0);
    CHECK(emdpo_loss_name(EMDPO_LOSS_HINGE + 1) == NULL && emdpo_loss_name(-1) == NULL);
}

int main(void) {
    test_gradients();
    test_pairs();
    test_ranking();
    test_weights();
    test_rewards();
    return check_report("test_lm_loss");
}
