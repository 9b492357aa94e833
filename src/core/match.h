/* Matching estimated types to true ones: latent types come back in any
 * order, so errors are measured after the best permutation. */
#ifndef EMDPO_MATCH_H
#define EMDPO_MATCH_H

/* Largest K accepted: the search enumerates all K! permutations. */
#define EMDPO_MATCH_MAX_K 8

/* Finds the permutation perm (K) minimising sum_k |est[perm[k]] - truth[k]|_2
 * over rows of est and truth (K, p); returns that sum divided by K, or a
 * negative value when K is out of range. perm may be NULL. */
double emdpo_match_types(const double *est, const double *truth, int K, int p, int *perm);

#endif
