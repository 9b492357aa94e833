/* k-means with k-means++ seeding, used to initialise EM-DPO and by the
 * Cluster-DPO baseline. Deterministic for a given seed. */
#ifndef EMDPO_KMEANS_H
#define EMDPO_KMEANS_H

#include <stdint.h>

/* Clusters the n rows of X (n, q) into K groups: assign (n) gets labels in
 * 0..K-1, centers (K, q) the means. Returns EMDPO_OK or an error status. */
int emdpo_kmeans(const double *X, int64_t n, int q, int K, uint64_t seed, int max_iter,
                 int32_t *assign, double *centers);

#endif
