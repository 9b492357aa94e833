/* The library's one door to MPI (emdpo_dist_init and friends are public,
 * emdpo/common.h). Without EMDPO_MPI, or before MPI is started, there is
 * one process and every function here is a no-op, so algorithm code calls
 * them unconditionally.
 *
 * Results must not depend on the number of processes, so nothing is summed
 * across processes in an order that depends on it: each process fills the
 * per-block partial sums of the blocks it owns, the blocks (fixed runs of
 * annotators, defined without regard to the process count) are gathered
 * onto every process, and every process adds them in block order, as one
 * process does. */
#ifndef EMDPO_DIST_H
#define EMDPO_DIST_H

#include <stddef.h>
#include <stdint.h>

/* Processes own whole runs of this many annotators (a multiple of every
 * block size that is gathered). */
#define EMDPO_DIST_ALIGN 1024

/* This process's share [*lo, *hi) of annotators 0 .. n_annot - 1: runs of
 * EMDPO_DIST_ALIGN, as even as they split, in rank order. All of them on
 * one process. */
void emdpo_dist_share(int64_t n_annot, int64_t *lo, int64_t *hi);

/* rows holds n_rows rows of width doubles, row b the partial of the
 * annotators [b * span, (b + 1) * span) of n_annot; this process has filled
 * the rows whose first annotator is in its share. Afterwards every process
 * holds every row. span must divide EMDPO_DIST_ALIGN or be a multiple of
 * it. EMDPO_ERR_NOMEM / EMDPO_ERR_INVALID_ARG when the counts do not fit
 * MPI's int counts. */
int emdpo_dist_allgather_rows(double *rows, int64_t n_rows, size_t width, int64_t span, int64_t n_annot);

/* ---- Data-parallel language models ---------------------------------------
 * LM training and scoring split each batch's examples (or each pass's
 * batches of sequences) into contiguous shares by rank and add or gather
 * the results. These are collectives: every process calls them in the same
 * order with the same sizes. */

/* This process's contiguous share [*lo, *hi) of n units: floor(n r / N)
 * to floor(n (r + 1) / N) on rank r of N; all of them on one process. */
void emdpo_dist_range(int64_t n, int64_t *lo, int64_t *hi);

/* Replaces buf (n values) by its sum over processes, the same bits on
 * every process. EMDPO_ERR_NOMEM when MPI cannot run it. */
int emdpo_dist_sum_floats(float *buf, size_t n);
int emdpo_dist_sum_doubles(double *buf, size_t n);

/* items holds n items; this process has filled the items of its share of
 * runs of `run` items (emdpo_dist_range over ceil(n / run) runs, the last
 * one short). Afterwards every process holds every item. */
int emdpo_dist_allgather_runs(double *items, int64_t n, int64_t run);

/* 1 when p (bytes) holds the same bytes on every process (compared by a
 * 64-bit hash), else 0: a check that data-parallel replicas agree. */
int emdpo_dist_same(const void *p, size_t bytes);

#endif
