#include "choice.h"

#include <math.h>

double emdpo_logsumexp(const double *v, int n) {
    double m = -INFINITY;
    for (int i = 0; i < n; i++)
        if (v[i] > m) m = v[i];
    if (m == -INFINITY) return -INFINITY;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp(v[i] - m);
    return m + log(s);
}

double emdpo_choice_logp(const double *u, int n, int stages) {
    double lp = 0.0;
    for (int t = 0; t < stages; t++) lp += u[t] - emdpo_logsumexp(u + t, n - t);
    return lp;
}

double emdpo_choice_logp_grad(const double *u, int n, int stages, double *g, double *scratch) {
    double lp = 0.0;
    for (int j = 0; j < n; j++) g[j] = 0.0;
    for (int t = 0; t < stages; t++) {
        double lse = emdpo_logsumexp(u + t, n - t);
        lp += u[t] - lse;
        g[t] += 1.0;
        for (int j = t; j < n; j++) {
            scratch[j] = exp(u[j] - lse);
            g[j] -= scratch[j];
        }
    }
    return lp;
}
