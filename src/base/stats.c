/* Summaries of samples; see stats.h. */
#include "base/stats.h"

#include <math.h>

void emdpo_mean_se(const double *x, int64_t n, double *mean, double *se) {
    double s = 0.0, ss = 0.0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    double m = n > 0 ? s / (double)n : NAN;
    for (int64_t i = 0; i < n; i++) ss += (x[i] - m) * (x[i] - m);
    *mean = m;
    *se = n > 1 ? sqrt(ss / (double)(n - 1) / (double)n) : NAN;
}
