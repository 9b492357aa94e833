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
#include "experiments/inventory.h"

/* A finite mixture of linear-utility types. */
typedef struct emdpo_population {
    int K, p;
    const double *theta;           /* (K, p) utility weights */
    const double *eta;             /* (K) type weights, >= 0, normalised by their sum */
    const char *const *type_names; /* (K) group labels, or NULL for "P1".."PK" */
} emdpo_population;

/* The paper's personalities over the traits O, C, E, A, N: P1 = (3, 0, 2, 0,
 * -2.5), P2 = -P1, P3 = (0, 2, 0, 2, 0), eta = (.3, .3, .4). */
extern const emdpo_population emdpo_pop_personalities;
/* Its binary-choice twin: P1 and P2 merged into theta = 0 ("P1+P2") with
 * weight .6, P3 with .4. Every pair probability equals the original's. */
extern const emdpo_population emdpo_pop_personalities_collapsed;

/* A preset by name ("personalities", "personalities-collapsed"); NULL if unknown. */
const emdpo_population *emdpo_population_preset(const char *name);

typedef enum emdpo_sim_response {
    EMDPO_SIM_TOP = 0,    /* one choice per decision (1 stage) */
    EMDPO_SIM_RANKING = 1 /* a full ranking (items - 1 stages) */
} emdpo_sim_response;

typedef enum emdpo_sim_design {
    EMDPO_SIM_PHRASES = 0, /* items are inventory phrases; features = trait scores (p = 5) */
    EMDPO_SIM_GAUSSIAN = 1 /* items are iid N(0, scale^2) feature vectors */
} emdpo_sim_design;

typedef struct emdpo_sim_spec {
    emdpo_population pop;
    int64_t n_annotators;
    int decisions;                    /* per annotator, >= 1 */
    int items;                        /* per decision, >= 2 */
    emdpo_sim_response response;
    emdpo_sim_design design;
    double scale;                     /* Gaussian design: feature standard deviation, > 0 */
    const emdpo_inventory *inventory; /* phrase design; NULL = the built-in inventory */
    int omit_text;                    /* phrase design: 1 keeps features only (no prompts or texts) */
    uint64_t seed;
} emdpo_sim_spec;

/* Defaults: personalities, 1000 annotators, 1 decision of 3 built-in phrases,
 * top choice, scale 1, texts kept, seed 1. */
void emdpo_sim_spec_init(emdpo_sim_spec *spec);

/* Simulates the dataset. Annotator i (0-based) is named "a<i+1>", is stored
 * at index i, belongs to the group named after its true type, and draws all
 * its randomness from stream i of the seed, so the bits do not depend on the
 * thread count. Phrase design: items of a decision are distinct phrases drawn
 * uniformly, the prompt is a uniformly drawn paraphrase, and the feature
 * names are O, C, E, A, N. true_type: (n_annotators) receives each
 * annotator's type index, or NULL. EMDPO_ERR_INVALID_ARG for an inconsistent
 * spec (including more items than phrases), EMDPO_ERR_LIMIT when the sizes
 * overflow. */
int emdpo_simulate(const emdpo_sim_spec *spec, emdpo_data **out, int32_t *true_type);

/* prob: (n_items) the probability that each item of x: (n_items, pop->p) is
 * the top choice of a random member of pop. */
int emdpo_mixture_choice_prob(const emdpo_population *pop, int n_items, const double *x, double *prob);

/* *out: the probability that a random member of pop picks items 0, 1, ...,
 * n_stages-1 of x: (n_items, pop->p) in that order, each among the items not
 * yet picked (Plackett-Luce). n_stages in 1..n_items-1. */
int emdpo_mixture_ranking_prob(const emdpo_population *pop, int n_items, int n_stages, const double *x,
                               double *out);

#endif
