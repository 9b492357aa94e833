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

double emdpo_choice_logp(const double *u, int n, int stages) {
    double lp = 0.0;
    for (int t = 0; t < stages; t++) lp += u[t] - emdpo_logsumexp(u + t, n - t);
    return lp;
}
