/* Simulated preference data from a latent-class (random-coefficient) logit
 * population: each annotator draws a type k with probability eta_k and then
 * chooses among items by the softmax of theta_k . x (top choice) or ranks
 * them by Plackett-Luce. Also the exact choice probabilities of a mixture,
 * which the identifiability study compares across populations. */
#ifndef EMDPO_SIMULATE_H
#define EMDPO_SIMULATE_H

#include <stdint.h>

#include "data/data.h"
#include "emdpo.h"
#include "emdpo/experimental.h"
#include "experiments/inventory.h"

/* emdpo_population, the simulation spec and its enums are public
 * (emdpo/experimental.h). */

/* The paper's personality population: P1, P2 = -P1, P3 over the five
 * traits, with eta .3/.3/.4. */
extern const emdpo_population emdpo_pop_personalities;
/* Its binary-choice twin: P1 and P2 merged into theta = 0 ("P1+P2") with
 * weight .6, P3 with .4. Every pair probability equals the original's. */
extern const emdpo_population emdpo_pop_personalities_collapsed;

/* prob: (n_items) the probability that each item of x: (n_items, pop->p) is
 * the top choice of a random member of pop. */
int emdpo_population_choice_prob(const emdpo_population *pop, int n_items, const double *x, double *prob);

/* *out: the probability that a random member of pop picks items 0, 1, ...,
 * n_stages-1 of x: (n_items, pop->p) in that order, each among the items not
 * yet picked (Plackett-Luce). n_stages in 1..n_items-1. */
int emdpo_population_ranking_prob(const emdpo_population *pop, int n_items, int n_stages, const double *x,
                                  double *out);

#endif
