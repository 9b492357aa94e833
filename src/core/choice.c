#include "core/choice.h"

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

double emdpo_choice_logp(const double *u, int n, int stages) { return emdpo_choice_logp_scaled(u, n, stages, 1.0); }

/* The utilities beta * x are formed where they are used (multiplying by 1
 * is exact, so emdpo_choice_logp keeps its bits) rather than stored: the
 * E-step on log-ratios reads x straight from the caller's array. */
double emdpo_choice_logp_scaled(const double *x, int n, int stages, double beta) {
    double lp = 0.0;
    for (int t = 0; t < stages; t++) {
        double m = -INFINITY;
        for (int i = t; i < n; i++)
            if (beta * x[i] > m) m = beta * x[i];
        double lse = -INFINITY;
        if (m != -INFINITY) {
            double s = 0.0;
            for (int i = t; i < n; i++) s += exp(beta * x[i] - m);
            lse = m + log(s);
        }
        lp += beta * x[t] - lse;
    }
    return lp;
}
