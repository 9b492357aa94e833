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
#include "experiments/simulate.h"

/* Items-per-decision values and sample sizes one study accepts. */
#define EMDPO_IDENTIFY_MAX_ITEMS 16
#define EMDPO_IDENTIFY_MAX_SIZES 16

typedef struct emdpo_identify_spec {
    emdpo_population truth;   /* generates the data; its K is the fitted K (<= EMDPO_MATCH_MAX_K) */
    emdpo_population alt;     /* the rival whose likelihood is compared; same p */
    int items[EMDPO_IDENTIFY_MAX_ITEMS];     /* items per decision, each >= 2 */
    int n_items;
    int64_t sizes[EMDPO_IDENTIFY_MAX_SIZES]; /* annotator counts, each >= 1 */
    int n_sizes;
    int decisions;            /* per annotator; 1 makes the binary failure real */
    int starts;               /* EM starts per fit */
    emdpo_init init;
    int max_iter;             /* EM iteration cap per start */
    double tol;               /* EM relative tolerance */
    double l2;                /* ridge (l2/2)|theta_k|^2 per type: keeps types that capture a
                                 separable handful of annotators finite */
    emdpo_sim_design design;
    double scale;             /* Gaussian design feature sd */
    const emdpo_inventory *inventory; /* phrase design; NULL = built-in */
    uint64_t seed;
} emdpo_identify_spec;

/* Defaults: personalities vs personalities-collapsed, items {2, 3}, sizes
 * {250, 1000, 4000, 16000}, 1 decision, 3 k-means++ starts, 150 iterations,
 * tol 1e-7, l2 0.1 (a prior worth a fraction of one annotator against
 * thousands), phrase design on the built-in inventory, seed 1. The default
 * study takes about half a minute on two cores, most of it at N = 16000. */
void emdpo_identify_spec_init(emdpo_identify_spec *s);

/* One cell of the study: one items value, one sample size. */
typedef struct emdpo_identify_row {
    int items;
    int64_t n_annot;
    double theta_err;  /* mean over true types of |theta_hat - theta|_2, best matching */
    double eta_err;    /* total variation between eta_hat and eta under that matching */
    double ll_fit;     /* fitted log-likelihood per annotator */
    double ll_true;    /* the truth's log-likelihood per annotator */
    double ll_alt;     /* the rival's log-likelihood per annotator */
    double ll_gap;     /* total (not per annotator) truth minus rival log-likelihood */
    double max_dp;     /* largest |P_truth - P_alt| of any item being chosen, over the data's decisions */
    int iterations;    /* EM iterations of the best start */
    int converged;
    int n_empty;       /* fitted types that lost all weight */
} emdpo_identify_row;

/* Called after each finished cell (index in 0..total-1, items-major). */
typedef void (*emdpo_identify_progress)(void *ud, const emdpo_identify_row *row, int index, int total);

/* Runs every (items, size) cell in items-major order into rows
 * (n_items * n_sizes). Each items value draws its own simulation stream, and
 * larger samples extend smaller ones (annotator i is the same person at every
 * size), so the trend over N is not masked by fresh noise. The result
 * depends only on the spec and the thread count. progress may be NULL. */
int emdpo_identify_run(const emdpo_identify_spec *s, emdpo_identify_row *rows, emdpo_identify_progress progress,
                       void *ud);

/* *out: the largest |P_a - P_b| of any item being the top choice, over all
 * decisions of d (features (n_items, p) with p = a->p = b->p). Decisions are
 * read as choice sets: which item was chosen does not matter. */
int emdpo_identify_max_dp(const emdpo_population *a, const emdpo_population *b, const emdpo_data *d,
                          double *out);

/* Log-likelihood of d under a known population: ll_annot (n_annot, may be
 * NULL) and the total, through the same E-step as EM. */
int emdpo_population_loglik(const emdpo_population *pop, const emdpo_data *d, double *ll_annot, double *loglik);

#endif
