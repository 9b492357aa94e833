/* The validation reward-margin criterion of K selection (the paper's
 * appendix D.3.1; lm/lm_select.h defines it): each annotator's mean margin
 * per type, the best type's, and the cross-fitted score, from the margins
 * of the annotator's decisions in order. Shared by emdpo select --policy
 * llama (lm_select.c) and the criterion on margins computed elsewhere
 * (emdpo_margin_criterion). */
#ifndef EMDPO_MARGINS_H
#define EMDPO_MARGINS_H

#include <stdint.h>

#include "emdpo.h"

typedef struct emdpo_margin_acc {
    double sum[EMDPO_MAX_K];        /* sum of margins over the decisions so far */
    double half[2][EMDPO_MAX_K];    /* the same over decisions at even and odd positions */
    int64_t n;                      /* decisions so far */
} emdpo_margin_acc;

void emdpo_margin_acc_init(emdpo_margin_acc *a, int K);
/* The annotator's next decision: its margin m[k] under each type. */
void emdpo_margin_acc_add(emdpo_margin_acc *a, int K, const double *m);
/* mean (K) = the mean margin under each type; *best = its largest (NaN
 * skipped; NaN when all are), *crossfit = the cross-fitted score (NaN with
 * fewer than two decisions). n >= 1. */
void emdpo_margin_acc_scores(const emdpo_margin_acc *a, int K, double *mean, double *best, double *crossfit);

#endif
