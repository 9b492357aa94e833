/* AdamW and RMSprop against hand-computed PyTorch updates, warmup,
 * clipping with the pre-clip norm reported, zero gradients leaving the
 * parameters alone, state round trips, and bad configurations. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "emdpo.h"
#include "lm/engine/optim.h"

#define N 3

static void test_adamw(void) {
    emdpo_optim_config c;
    emdpo_optim_config_init(&c, EMDPO_OPTIM_ADAMW);
    c.lr = 0.1;
    c.weight_decay = 0.01;
    emdpo_optim *o;
    CHECK_EQ_INT(emdpo_optim_create(&c, N, &o), EMDPO_OK);
    float p[N] = {1.0f, -2.0f, 0.5f};
    double ref[N] = {1.0, -2.0, 0.5}, m[N] = {0}, v[N] = {0};
    const double grads[3][N] = {{0.5, -1.0, 0.0}, {0.2, 0.3, -0.4}, {-1.0, 0.0, 2.0}};
    for (int s = 0; s < 3; s++) {
        float g[N];
        for (int i = 0; i < N; i++) g[i] = (float)grads[s][i];
        double gn, lr;
        CHECK_EQ_INT(emdpo_optim_step(o, p, g, &gn, &lr), EMDPO_OK);
        CHECK_CLOSE(lr, 0.1, 1e-15);
        int t = s + 1;
        for (int i = 0; i < N; i++) {
            ref[i] *= 1 - 0.1 * 0.01;
            m[i] = 0.9 * m[i] + 0.1 * grads[s][i];
            v[i] = 0.999 * v[i] + 0.001 * grads[s][i] * grads[s][i];
            double mh = m[i] / (1 - pow(0.9, t)), vh = v[i] / (1 - pow(0.999, t));
            ref[i] -= 0.1 * mh / (sqrt(vh) + 1e-8);
            CHECK_CLOSE(p[i], ref[i], 1e-6);
        }
    }
    /* First step of Adam moves every coordinate with a gradient by about lr. */
    CHECK_EQ_INT(o->t, 3);
    emdpo_optim_free(o);
}

static void test_rmsprop(void) {
    emdpo_optim_config c;
    emdpo_optim_config_init(&c, EMDPO_OPTIM_RMSPROP);
    CHECK_CLOSE(c.alpha, 0.99, 0);
    CHECK_CLOSE(c.momentum, 0, 0);
    c.lr = 0.01;
    for (int mom = 0; mom < 2; mom++) {
        c.momentum = mom ? 0.9 : 0.0;
        emdpo_optim *o;
        CHECK_EQ_INT(emdpo_optim_create(&c, N, &o), EMDPO_OK);
        CHECK(mom ? o->m != NULL : o->m == NULL);
        float p[N] = {1.0f, -2.0f, 0.5f};
        double ref[N] = {1.0, -2.0, 0.5}, sq[N] = {0}, buf[N] = {0};
        const double grads[2][N] = {{0.5, -1.0, 0.0}, {0.2, 0.3, -0.4}};
        for (int s = 0; s < 2; s++) {
            float g[N];
            for (int i = 0; i < N; i++) g[i] = (float)grads[s][i];
            CHECK_EQ_INT(emdpo_optim_step(o, p, g, NULL, NULL), EMDPO_OK);
            for (int i = 0; i < N; i++) {
                sq[i] = 0.99 * sq[i] + 0.01 * grads[s][i] * grads[s][i];
                double u = grads[s][i] / (sqrt(sq[i]) + 1e-8);
                if (mom) u = buf[i] = 0.9 * buf[i] + u;
                ref[i] -= 0.01 * u;
                CHECK_CLOSE(p[i], ref[i], 1e-6);
            }
        }
        /* RMSprop's first step: g / sqrt(0.01 g^2) = 10 sign(g). */
        emdpo_optim_free(o);
    }
}

static void test_warmup_clip(void) {
    emdpo_optim_config c;
    emdpo_optim_config_init(&c, EMDPO_OPTIM_RMSPROP);
    c.lr = 1.0;
    c.warmup = 3;
    c.clip = 1.0;
    emdpo_optim *o;
    CHECK_EQ_INT(emdpo_optim_create(&c, 2, &o), EMDPO_OK);
    const double want[5] = {0.25, 0.5, 0.75, 1.0, 1.0};
    for (int s = 0; s < 5; s++) {
        float p[2] = {0, 0}, g[2] = {3.0f, 4.0f};
        double gn, lr;
        CHECK_CLOSE(emdpo_optim_lr(o), want[s], 1e-15);
        CHECK_EQ_INT(emdpo_optim_step(o, p, g, &gn, &lr), EMDPO_OK);
        CHECK_CLOSE(lr, want[s], 1e-15);
        CHECK_CLOSE(gn, 5.0, 1e-12);
        /* Clipped to norm 1 (PyTorch's 1/(norm + 1e-6) factor). */
        CHECK_CLOSE(g[0], 3.0 / (5.0 + 1e-6), 1e-6);
        CHECK_CLOSE(g[1], 4.0 / (5.0 + 1e-6), 1e-6);
    }
    /* Below the threshold nothing changes. */
    float p[2] = {0, 0}, g[2] = {0.3f, 0.4f};
    double gn;
    CHECK_EQ_INT(emdpo_optim_step(o, p, g, &gn, NULL), EMDPO_OK);
    CHECK(g[0] == 0.3f && g[1] == 0.4f);
    float bad[2] = {NAN, 1.0f}, keep[2] = {7.0f, 8.0f};
    CHECK_EQ_INT(emdpo_optim_step(o, keep, bad, &gn, NULL), EMDPO_ERR_NUMERIC);
    CHECK(keep[0] == 7.0f && keep[1] == 8.0f);
    emdpo_optim_free(o);
}

static void test_zero_grad_and_state(void) {
    for (int kind = 0; kind < 2; kind++) {
        emdpo_optim_config c;
        emdpo_optim_config_init(&c, (emdpo_optim_kind)kind);
        emdpo_optim *o, *o2;
        CHECK_EQ_INT(emdpo_optim_create(&c, N, &o), EMDPO_OK);
        CHECK_EQ_INT(emdpo_optim_create(&c, N, &o2), EMDPO_OK);
        float p[N] = {1, 2, 3}, g[N] = {0, 0, 0};
        CHECK_EQ_INT(emdpo_optim_step(o, p, g, NULL, NULL), EMDPO_OK);
        CHECK(p[0] == 1 && p[1] == 2 && p[2] == 3);
        float g2[N] = {0.1f, -0.2f, 0.3f};
        CHECK_EQ_INT(emdpo_optim_step(o, p, g2, NULL, NULL), EMDPO_OK);
        /* The state survives a write/read round trip: the next steps agree. */
        FILE *fp = tmpfile();
        CHECK(fp != NULL);
        if (!fp) continue;
        CHECK_EQ_INT(emdpo_optim_write(o, fp), EMDPO_OK);
        rewind(fp);
        CHECK_EQ_INT(emdpo_optim_read(o2, fp), EMDPO_OK);
        fclose(fp);
        float q[N];
        memcpy(q, p, sizeof q);
        float ga[N] = {0.5f, 0.5f, -1.0f}, gb[N] = {0.5f, 0.5f, -1.0f};
        emdpo_optim_step(o, p, ga, NULL, NULL);
        emdpo_optim_step(o2, q, gb, NULL, NULL);
        CHECK(memcmp(p, q, sizeof p) == 0);
        emdpo_optim_free(o);
        emdpo_optim_free(o2);
    }
}

static void test_bad_config(void) {
    emdpo_optim_config c;
    emdpo_optim *o;
    emdpo_optim_config_init(&c, EMDPO_OPTIM_ADAMW);
    c.beta1 = 1.0;
    CHECK_EQ_INT(emdpo_optim_create(&c, 4, &o), EMDPO_ERR_INVALID_ARG);
    emdpo_optim_config_init(&c, EMDPO_OPTIM_RMSPROP);
    c.eps = 0;
    CHECK_EQ_INT(emdpo_optim_create(&c, 4, &o), EMDPO_ERR_INVALID_ARG);
    emdpo_optim_config_init(&c, EMDPO_OPTIM_RMSPROP);
    c.lr = NAN;
    CHECK_EQ_INT(emdpo_optim_create(&c, 4, &o), EMDPO_ERR_INVALID_ARG);
    CHECK(strcmp(emdpo_optim_name(EMDPO_OPTIM_RMSPROP), "rmsprop") == 0);
    CHECK(emdpo_optim_name(EMDPO_OPTIM_RMSPROP + 1) == NULL && emdpo_optim_name(-1) == NULL);
}

int main(void) {
    test_adamw();
    test_rmsprop();
    test_warmup_clip();
    test_zero_grad_and_state();
    test_bad_config();
    return check_report("test_optim");
}
