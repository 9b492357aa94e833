/* Summaries of samples: the estimates that sampled metrics report. */
#ifndef EMDPO_STATS_H
#define EMDPO_STATS_H

#include <stdint.h>

/* Mean of x (n), summed in order, and its standard error
 * sqrt(s^2 / n) with the sample variance s^2 (divisor n - 1). The mean is
 * NaN for n = 0, the standard error NaN for n < 2. */
void emdpo_mean_se(const double *x, int64_t n, double *mean, double *se);

#endif
