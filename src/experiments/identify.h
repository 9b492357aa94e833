/* The identifiability study (paper section 4): binary choices cannot tell a
 * population from its "collapsed" twin, choices among three or more items
 * can. The study measures this twice: as observational equivalence (the
 * exact choice probabilities of both populations on the same choice sets)
 * and on data (EM fits at growing sample sizes, whose error stalls for
 * pairs and falls for triples). */
#ifndef EMDPO_IDENTIFY_H
#define EMDPO_IDENTIFY_H

#include <stdint.h>

#include "core/em.h"
#include "emdpo/experimental.h"
#include "experiments/simulate.h"

/* The spec, the rows, emdpo_identify_run and emdpo_identify_conclude are
 * public (emdpo/experimental.h). */

/* *out: the largest |P_a - P_b| of any item being the top choice, over all
 * decisions of d (features (n_items, p) with p = a->p = b->p). Decisions are
 * read as choice sets: which item was chosen does not matter. */
int emdpo_identify_max_dp(const emdpo_population *a, const emdpo_population *b, const emdpo_data *d,
                          double *out);

/* Log-likelihood of d under a known population: ll_annot (n_annot, may be
 * NULL) and the total, through the same E-step as EM. */
int emdpo_population_loglik(const emdpo_population *pop, const emdpo_data *d, double *ll_annot, double *loglik);

#endif
