/* EM-DPO on log-linear policies, through the public API only.
 *
 * Builds a panel in memory: 400 annotators of two hidden types, each
 * choosing one of three items (two features each) in 5 decisions, the type
 * deciding which feature it likes. Fits K = 2 latent types, prints what it
 * found, and writes the fit (fit.json, posterior.csv) to the directory
 * given as the first argument (default: fit_example).
 *
 *   cc fit_loglinear.c $(pkg-config --cflags --libs emdpo) -o fit_loglinear
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <emdpo.h>

/* A small deterministic generator (xorshift64*), uniform in [0, 1). */
static double uniform(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
}

static int fail(const char *what, int rc, const emdpo_diag *diag) {
    fprintf(stderr, "%s: %s", what, emdpo_status_name(rc));
    if (diag && diag->msg[0]) fprintf(stderr, ": %s%s%s", diag->file, diag->file[0] ? ": " : "", diag->msg);
    fputc('\n', stderr);
    return 1;
}

int main(int argc, char **argv) {
    const char *out = argc > 1 ? argv[1] : "fit_example";
    const double theta[2][2] = {{2.0, -1.0}, {-1.0, 2.0}}; /* the two hidden types */
    uint64_t rng = 42;
    emdpo_data_builder *b = NULL;
    int rc = emdpo_data_builder_create(2, &b);
    if (rc) return fail("builder", rc, NULL);
    const char *names[2] = {"speed", "price"};
    emdpo_data_builder_set_feature_names(b, names);
    for (int i = 0; i < 400 && !rc; i++) {
        int type = uniform(&rng) < 0.4 ? 0 : 1;
        char id[16];
        snprintf(id, sizeof id, "a%d", i + 1);
        for (int j = 0; j < 5 && !rc; j++) {
            double x[3][2], u[3], z = 0;
            for (int k = 0; k < 3; k++) {
                x[k][0] = 2 * uniform(&rng) - 1;
                x[k][1] = 2 * uniform(&rng) - 1;
                u[k] = exp(theta[type][0] * x[k][0] + theta[type][1] * x[k][1]);
                z += u[k];
            }
            /* The chosen item goes first (preference order). */
            double r = uniform(&rng) * z;
            int c = r < u[0] ? 0 : r < u[0] + u[1] ? 1 : 2;
            double ordered[6] = {x[c][0], x[c][1]};
            for (int k = 0, n = 1; k < 3; k++)
                if (k != c) {
                    ordered[2 * n] = x[k][0];
                    ordered[2 * n + 1] = x[k][1];
                    n++;
                }
            rc = emdpo_data_builder_add(b, id, type ? "B" : "A", NULL, 3, 1, ordered, NULL);
        }
    }
    emdpo_data *d = NULL;
    if (rc || (rc = emdpo_data_builder_finish(b, &d))) return fail("data", rc, NULL);

    emdpo_loglinear_opts o;
    emdpo_loglinear_opts_init(&o);
    o.k = 2;
    o.em.starts = 3;
    emdpo_fit *f = NULL;
    emdpo_diag diag;
    if ((rc = emdpo_loglinear_fit(d, &o, &f, &diag))) return fail("fit", rc, &diag);
    double th[4], eta[2];
    emdpo_fit_theta(f, th, 2, 2);
    emdpo_fit_eta(f, eta, 2);
    printf("log-likelihood %.4f after %d iterations (%s)\n", emdpo_fit_loglik(f), emdpo_fit_iterations(f),
           emdpo_fit_converged(f) ? "converged" : "iteration cap");
    for (int k = 0; k < 2; k++)
        printf("type %d: eta %.3f  %s %+.3f  %s %+.3f\n", k + 1, eta[k], emdpo_fit_feature_name(f, 0), th[2 * k],
               emdpo_fit_feature_name(f, 1), th[2 * k + 1]);
    if ((rc = emdpo_fit_write(f, out, &diag))) return fail("write", rc, &diag);
    printf("wrote %s/fit.json and %s/posterior.csv\n", out, out);
    emdpo_fit_free(f);
    emdpo_data_free(d);
    return 0;
}
