/* k-means with k-means++ seeding, used to initialise EM-DPO and by the
 * Cluster-DPO baseline. Deterministic for a given seed. */
#ifndef EMDPO_KMEANS_H
#define EMDPO_KMEANS_H

#include <stdint.h>

/* Clusters the n rows of X (n, q) into K groups: assign (n) gets labels in
 * 0..K-1, centers (K, q) the means. Returns EMDPO_OK or an error status. */
int emdpo_kmeans(const double *X, int64_t n, int q, int K, uint64_t seed, int max_iter,
                 int32_t *assign, double *centers);

/* The same when X holds rows base .. base + n - 1 of n_all rows spread
 * over the processes (across: data/data.h's shard; base a multiple of
 * EMDPO_DIST_ALIGN): every process gets the same centers, and the labels
 * of its rows, whatever the number of processes. Sums are exact
 * (base/xsum.h), and the k-means++ draws go by integer weights, so
 * nothing depends on the order of additions. */
int emdpo_kmeans_shared(const double *X, int64_t n, int64_t base, int64_t n_all, int across, int q, int K,
                        uint64_t seed, int max_iter, int32_t *assign, double *centers);

#endif
