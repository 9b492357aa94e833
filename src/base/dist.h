/* The library's one door to MPI (emdpo_dist_init and friends are public,
 * emdpo/common.h). Without EMDPO_MPI, or before MPI is started, there is
 * one process and every function here is a no-op, so algorithm code calls
 * them unconditionally.
 *
 * Results must not depend on the number of processes. Each process holds
 * a share of the annotators (data/data.h), whole runs of EMDPO_DIST_ALIGN;
 * sums over annotators are partial sums of fixed blocks of annotators
 * (defined without regard to the process count), added exactly
 * (base/xsum.h): the exact sums of the processes are added by an integer
 * MPI_Allreduce of a fixed size, and the result rounded, so that it is the
 * same bits for any number of processes and equal to one process's.
 *
 * A failed MPI call makes these return EMDPO_ERR_IO (emdpo_dist_same: 0)
 * where the communicator's error handler returns; under MPI's default
 * handler the failure ends the whole job first. */
#ifndef EMDPO_DIST_H
#define EMDPO_DIST_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

/* Processes own whole runs of this many annotators (a multiple of every
 * block size that is gathered). */
#define EMDPO_DIST_ALIGN 1024

/* This process's share [*lo, *hi) of annotators 0 .. n_annot - 1: runs of
 * EMDPO_DIST_ALIGN, as even as they split, in rank order. All of them on
 * one process. */
void emdpo_dist_share(int64_t n_annot, int64_t *lo, int64_t *hi);
/* The share of process `rank` (0 <= rank < emdpo_dist_size()). */
void emdpo_dist_share_of(int rank, int64_t n_annot, int64_t *lo, int64_t *hi);

/* ---- Reductions of the sharded log-linear EM ---------------------------
 * Each process holds its share of the annotators; these combine what the
 * shares give so that the result is the same for any number of processes.
 * Without MPI, or on one process, they leave their arguments as they are. */

/* Sums n exact accumulators (base/xsum.h) over the processes, in place: an
 * MPI_Allreduce of n * EMDPO_XSUM_WORDS int64 words, whose integer sum is
 * exact and so does not depend on the order. */
int emdpo_dist_xsum(int64_t *acc, size_t n);
/* out[0..width) = the sums of the columns of rows (n_rows, width): exact
 * (base/xsum.h), so the same for any order and split of the rows, and over
 * the processes when across (the rows are a share's). */
int emdpo_dist_sum_rows(const double *rows, int64_t n_rows, size_t width, int across, double *out);
/* v[0..n) summed (MPI_SUM), maxed or minimised over the processes, in
 * place; integers and the maximum are exact, so in any order the same. */
int emdpo_dist_sum_i64(int64_t *v, size_t n);
int emdpo_dist_min_i64(int64_t *v, size_t n);
int emdpo_dist_max_double(double *v, size_t n);
/* The sum of v over the processes of lower rank (0 on rank 0), in place. */
int emdpo_dist_exscan_i64(int64_t *v, size_t n);
/* Rank 0 writes mine (n bytes) to fp, then each other process's bytes in
 * rank order, received one process at a time; the other processes send
 * theirs (fp unused). One process: mine to fp. EMDPO_ERR_IO when fp fails. */
int emdpo_dist_write_ranked(FILE *fp, const char *mine, size_t n);
/* Process root's v[0..n) onto every process. */
int emdpo_dist_bcast_double(double *v, size_t n, int root);

/* ---- Data-parallel language models ---------------------------------------
 * LM training and scoring split each batch's examples (or each pass's
 * batches of sequences) into contiguous shares by rank and add or gather
 * the results. These are collectives: every process calls them in the same
 * order with the same sizes. */

/* This process's contiguous share [*lo, *hi) of n units: floor(n r / N)
 * to floor(n (r + 1) / N) on rank r of N; all of them on one process. */
void emdpo_dist_range(int64_t n, int64_t *lo, int64_t *hi);
/* The share of process `rank` (0 <= rank < emdpo_dist_size()). */
void emdpo_dist_range_of(int rank, int64_t n, int64_t *lo, int64_t *hi);

/* Replaces buf (n values) by its sum over processes, the same bits on
 * every process. */
int emdpo_dist_sum_floats(float *buf, size_t n);
int emdpo_dist_sum_doubles(double *buf, size_t n);

/* Sums that go on while the caller works (a training step's gradient,
 * summed piece by piece as the backward finishes each piece, so that the
 * all-reduce overlaps the rest of the backward). Every process starts the
 * same pieces in the same order. The result is the same bits on every
 * process and, for a given number of processes, every time. */
typedef struct emdpo_dist_sums emdpo_dist_sums;
/* Room for max pieces a step to begin with. With one process, without
 * MPI, or where MPI cannot be called while OpenMP threads run (no
 * MPI_THREAD_FUNNELED), *out is NULL: the caller sums afterwards
 * (emdpo_dist_sum_floats). EMDPO_ERR_NOMEM. */
int emdpo_dist_sums_create(size_t max, emdpo_dist_sums **out);
void emdpo_dist_sums_free(emdpo_dist_sums *s);
/* Starts replacing buf (n floats) by its sum over the processes, in place
 * (MPI_Iallreduce), and lets the sums started before it advance (MPI moves
 * them only inside its calls). buf must not be touched until
 * emdpo_dist_sums_wait. A failure is kept for the wait. */
void emdpo_dist_sums_start(emdpo_dist_sums *s, float *buf, size_t n);
/* Waits for every sum started since the last wait: EMDPO_OK, or
 * EMDPO_ERR_NOMEM, EMDPO_ERR_IO when MPI failed. */
int emdpo_dist_sums_wait(emdpo_dist_sums *s);

/* items holds n items; this process has filled the items of its share of
 * runs of `run` items (emdpo_dist_range over ceil(n / run) runs, the last
 * one short). Afterwards every process holds every item. */
int emdpo_dist_allgather_runs(double *items, int64_t n, int64_t run);

/* items holds the parts of the processes in rank order, count[r] items of
 * `size` bytes from process r (count has emdpo_dist_size() entries); this
 * process has filled its part. Afterwards every process holds every part.
 * EMDPO_ERR_INVALID_ARG past INT_MAX items or bytes an item,
 * EMDPO_ERR_NOMEM. */
int emdpo_dist_allgather_parts(void *items, const int64_t *count, size_t size);
/* emdpo_dist_allgather_parts with the parts of emdpo_dist_range: items holds
 * n items of `size` bytes, this process has filled its share of them. */
int emdpo_dist_allgather_range(void *items, int64_t n, size_t size);

/* 1 when p (bytes) holds the same bytes on every process (compared by a
 * 64-bit hash), else 0: a check that data-parallel replicas agree. */
int emdpo_dist_same(const void *p, size_t bytes);

/* ---- Reading one file in byte ranges (data/read_csv.c) ---------------- */

/* Every process sends counts[q] bytes of send (the pieces in rank order)
 * to process q and receives, in *recv (allocated, *recv_len bytes, NULL when
 * none; the caller frees it with emdpo_free(*recv, *recv_len)), what each
 * process sent it, in rank order. One process: a copy of send. EMDPO_ERR_NOMEM, or
 * EMDPO_ERR_INVALID_ARG past 2^31 bytes. */
int emdpo_dist_alltoall_bytes(const char *send, const int64_t *counts, char **recv, size_t *recv_len);

#endif
