#include "base/dist.h"

#include <limits.h>
#include <string.h>

#include "base/alloc.h"
#include "base/hash.h"
#include "base/xsum.h"
#include "emdpo.h"

#ifdef EMDPO_MPI
#include <mpi.h>

/* MPI was started by emdpo_dist_init, which must then end it. */
static int started_here;

static int mpi_running(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

void emdpo_dist_init(int *argc, char ***argv) {
    if (mpi_running()) return;
    /* funneled: the training step's overlapped sums are started between
     * the backward's stages by the thread that entered the pass */
    int provided;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    started_here = 1;
}

int emdpo_dist_rank(void) {
    int r = 0;
    if (mpi_running()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int emdpo_dist_size(void) {
    int n = 1;
    if (mpi_running()) MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

void emdpo_dist_finish(int exit_code) {
    if (!mpi_running()) return;
    if (exit_code != 0 && emdpo_dist_size() > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
    if (started_here) MPI_Finalize();
}
#else
void emdpo_dist_init(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
}
int emdpo_dist_rank(void) { return 0; }
int emdpo_dist_size(void) { return 1; }
void emdpo_dist_finish(int exit_code) { (void)exit_code; }
#endif

/* Rank r's share: runs of EMDPO_DIST_ALIGN split as floor(runs * r / size). */
static void share_of(int r, int size, int64_t n_annot, int64_t *lo, int64_t *hi) {
    int64_t runs = (n_annot + EMDPO_DIST_ALIGN - 1) / EMDPO_DIST_ALIGN;
    int64_t a = runs * r / size, b = runs * (r + 1) / size;
    *lo = a * EMDPO_DIST_ALIGN < n_annot ? a * EMDPO_DIST_ALIGN : n_annot;
    *hi = b * EMDPO_DIST_ALIGN < n_annot ? b * EMDPO_DIST_ALIGN : n_annot;
}

void emdpo_dist_share(int64_t n_annot, int64_t *lo, int64_t *hi) {
    share_of(emdpo_dist_rank(), emdpo_dist_size(), n_annot, lo, hi);
}

void emdpo_dist_share_of(int rank, int64_t n_annot, int64_t *lo, int64_t *hi) {
    share_of(rank, emdpo_dist_size(), n_annot, lo, hi);
}

/* ---- Reductions of the sharded log-linear EM ---------------------------- */

int emdpo_dist_sum_rows(const double *rows, int64_t n_rows, size_t width, int across, double *out) {
    size_t bytes = (width ? width : 1) * EMDPO_XSUM_WORDS * sizeof(int64_t);
    int64_t *acc = emdpo_malloc(bytes);
    if (!acc) return EMDPO_ERR_NOMEM;
    emdpo_xsum_zero(acc, width);
    for (int64_t r = 0; r < n_rows; r++) emdpo_xsum_add_vec(acc, rows + (size_t)r * width, width);
    int rc = across ? emdpo_dist_xsum(acc, width) : EMDPO_OK;
    if (!rc) emdpo_xsum_values(acc, width, out);
    emdpo_free(acc, bytes);
    return rc;
}

#ifdef EMDPO_MPI
/* Counts past MPI's int are sent in pieces. */
#define DIST_PIECE ((size_t)1 << 28)
/* Text travels to rank 0 in pieces of this many bytes. */
#define DIST_TEXT_PIECE ((size_t)1 << 20)

/* An MPI call's failure (seen only where the error handler returns; MPI's
 * default one ends the job first) is reported as EMDPO_ERR_IO. */
static int failed(int mpi_rc) { return mpi_rc != MPI_SUCCESS; }

static int reduce(void *v, size_t n, MPI_Datatype type, size_t elem, MPI_Op op) {
    if (emdpo_dist_size() == 1) return EMDPO_OK;
    for (size_t at = 0; at < n; at += DIST_PIECE) {
        size_t m = n - at < DIST_PIECE ? n - at : DIST_PIECE;
        if (failed(MPI_Allreduce(MPI_IN_PLACE, (char *)v + at * elem, (int)m, type, op, MPI_COMM_WORLD)))
            return EMDPO_ERR_IO;
    }
    return EMDPO_OK;
}

int emdpo_dist_xsum(int64_t *acc, size_t n) {
    if (emdpo_dist_size() == 1) return EMDPO_OK;
    emdpo_xsum_carry(acc, n);
    return reduce(acc, n * EMDPO_XSUM_WORDS, MPI_INT64_T, sizeof(int64_t), MPI_SUM);
}
int emdpo_dist_sum_i64(int64_t *v, size_t n) { return reduce(v, n, MPI_INT64_T, sizeof *v, MPI_SUM); }
int emdpo_dist_min_i64(int64_t *v, size_t n) { return reduce(v, n, MPI_INT64_T, sizeof *v, MPI_MIN); }
int emdpo_dist_max_double(double *v, size_t n) { return reduce(v, n, MPI_DOUBLE, sizeof *v, MPI_MAX); }

int emdpo_dist_exscan_i64(int64_t *v, size_t n) {
    if (emdpo_dist_size() == 1) {
        for (size_t i = 0; i < n; i++) v[i] = 0;
        return EMDPO_OK;
    }
    if (n > DIST_PIECE) return EMDPO_ERR_INVALID_ARG;
    if (failed(MPI_Exscan(MPI_IN_PLACE, v, (int)n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD))) return EMDPO_ERR_IO;
    if (emdpo_dist_rank() == 0) /* MPI leaves rank 0's undefined */
        for (size_t i = 0; i < n; i++) v[i] = 0;
    return EMDPO_OK;
}

int emdpo_dist_write_ranked(FILE *fp, const char *mine, size_t n) {
    int size = emdpo_dist_size(), rank = emdpo_dist_rank();
    if (rank > 0) {
        uint64_t len = n;
        if (failed(MPI_Send(&len, 1, MPI_UINT64_T, 0, 0, MPI_COMM_WORLD))) return EMDPO_ERR_IO;
        for (size_t at = 0; at < n; at += DIST_TEXT_PIECE)
            if (failed(MPI_Send(mine + at, (int)(n - at < DIST_TEXT_PIECE ? n - at : DIST_TEXT_PIECE), MPI_CHAR, 0, 1,
                                MPI_COMM_WORLD)))
                return EMDPO_ERR_IO;
        return EMDPO_OK;
    }
    int ok = fwrite(mine, 1, n, fp) == n;
    char *buf = size > 1 ? emdpo_malloc(DIST_TEXT_PIECE) : NULL;
    if (size > 1 && !buf) return EMDPO_ERR_NOMEM; /* the caller's error then ends the job */
    int comm = 1;
    for (int r = 1; comm && r < size; r++) {
        uint64_t len = 0;
        comm = !failed(MPI_Recv(&len, 1, MPI_UINT64_T, r, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        for (uint64_t at = 0; comm && at < len; at += DIST_TEXT_PIECE) {
            int m = (int)(len - at < DIST_TEXT_PIECE ? len - at : DIST_TEXT_PIECE);
            comm = !failed(MPI_Recv(buf, m, MPI_CHAR, r, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
            ok &= comm && fwrite(buf, 1, (size_t)m, fp) == (size_t)m;
        }
    }
    emdpo_free(buf, DIST_TEXT_PIECE);
    return ok && comm ? EMDPO_OK : EMDPO_ERR_IO;
}

int emdpo_dist_bcast_double(double *v, size_t n, int root) {
    if (emdpo_dist_size() == 1) return EMDPO_OK;
    if (n > DIST_PIECE) return EMDPO_ERR_INVALID_ARG;
    return failed(MPI_Bcast(v, (int)n, MPI_DOUBLE, root, MPI_COMM_WORLD)) ? EMDPO_ERR_IO : EMDPO_OK;
}
#else
int emdpo_dist_xsum(int64_t *acc, size_t n) {
    (void)acc;
    (void)n;
    return EMDPO_OK;
}
int emdpo_dist_sum_i64(int64_t *v, size_t n) {
    (void)v;
    (void)n;
    return EMDPO_OK;
}
int emdpo_dist_min_i64(int64_t *v, size_t n) {
    (void)v;
    (void)n;
    return EMDPO_OK;
}
int emdpo_dist_max_double(double *v, size_t n) {
    (void)v;
    (void)n;
    return EMDPO_OK;
}
int emdpo_dist_exscan_i64(int64_t *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = 0;
    return EMDPO_OK;
}
int emdpo_dist_write_ranked(FILE *fp, const char *mine, size_t n) {
    return fwrite(mine, 1, n, fp) == n ? EMDPO_OK : EMDPO_ERR_IO;
}
int emdpo_dist_bcast_double(double *v, size_t n, int root) {
    (void)v;
    (void)n;
    (void)root;
    return EMDPO_OK;
}
#endif

/* ---- Data-parallel language models (dist.h) ----------------------------- */

void emdpo_dist_range_of(int rank, int64_t n, int64_t *lo, int64_t *hi) {
    int64_t r = rank, size = emdpo_dist_size();
    *lo = n * r / size;
    *hi = n * (r + 1) / size;
}

void emdpo_dist_range(int64_t n, int64_t *lo, int64_t *hi) { emdpo_dist_range_of(emdpo_dist_rank(), n, lo, hi); }

int emdpo_dist_allgather_range(void *items, int64_t n, size_t size) {
    int np = emdpo_dist_size();
    if (np == 1) return EMDPO_OK;
    int64_t *count = emdpo_malloc((size_t)np * sizeof *count);
    if (!count) return EMDPO_ERR_NOMEM;
    for (int r = 0; r < np; r++) {
        int64_t lo, hi;
        emdpo_dist_range_of(r, n, &lo, &hi);
        count[r] = hi - lo;
    }
    int rc = emdpo_dist_allgather_parts(items, count, size);
    emdpo_free(count, (size_t)np * sizeof *count);
    return rc;
}

#ifdef EMDPO_MPI
/* MPI counts are ints: large buffers go in pieces. */
static int sum_in_place(void *buf, size_t n, size_t elem, MPI_Datatype type) {
    if (emdpo_dist_size() == 1) return EMDPO_OK;
    for (size_t at = 0; at < n;) {
        int m = n - at < (size_t)INT_MAX ? (int)(n - at) : INT_MAX;
        if (failed(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + at * elem, m, type, MPI_SUM, MPI_COMM_WORLD)))
            return EMDPO_ERR_IO;
        at += (size_t)m;
    }
    return EMDPO_OK;
}

int emdpo_dist_sum_floats(float *buf, size_t n) { return sum_in_place(buf, n, sizeof *buf, MPI_FLOAT); }
int emdpo_dist_sum_doubles(double *buf, size_t n) { return sum_in_place(buf, n, sizeof *buf, MPI_DOUBLE); }

int emdpo_dist_allgather_runs(double *items, int64_t n, int64_t run) {
    int size = emdpo_dist_size();
    if (size == 1 || n == 0) return EMDPO_OK;
    if (run < 1 || n > INT_MAX) return EMDPO_ERR_INVALID_ARG;
    int *count = emdpo_malloc(2 * (size_t)size * sizeof(int));
    if (!count) return EMDPO_ERR_NOMEM;
    int *displ = count + size;
    int64_t runs = (n + run - 1) / run;
    for (int r = 0; r < size; r++) {
        int64_t a = runs * r / size * run, b = runs * (r + 1) / size * run;
        displ[r] = (int)(a < n ? a : n);
        count[r] = (int)(b < n ? b : n) - displ[r];
    }
    int bad = failed(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, items, count, displ, MPI_DOUBLE, MPI_COMM_WORLD));
    emdpo_free(count, 2 * (size_t)size * sizeof(int));
    return bad ? EMDPO_ERR_IO : EMDPO_OK;
}

struct emdpo_dist_sums {
    MPI_Request *req; /* (max) */
    size_t max, n;    /* room, requests started (a piece past INT_MAX floats takes several) */
    int rc;           /* the first failure since the last wait */
};

int emdpo_dist_sums_create(size_t max, emdpo_dist_sums **out) {
    *out = NULL;
    int level = MPI_THREAD_SINGLE;
    if (emdpo_dist_size() == 1 || failed(MPI_Query_thread(&level)) || level < MPI_THREAD_FUNNELED)
        return EMDPO_OK; /* then the caller sums after the backward */
    emdpo_dist_sums *s = emdpo_calloc(1, sizeof *s);
    if (!s || !(s->req = emdpo_calloc(max ? max : 1, sizeof *s->req))) {
        emdpo_free(s, s ? sizeof *s : 0);
        return EMDPO_ERR_NOMEM;
    }
    s->max = max ? max : 1;
    *out = s;
    return EMDPO_OK;
}

void emdpo_dist_sums_free(emdpo_dist_sums *s) {
    if (!s) return;
    emdpo_free(s->req, s->max * sizeof *s->req);
    emdpo_free(s, sizeof *s);
}

void emdpo_dist_sums_start(emdpo_dist_sums *s, float *buf, size_t n) {
    for (size_t at = 0; !s->rc && at < n;) {
        int m = n - at < (size_t)INT_MAX ? (int)(n - at) : INT_MAX;
        if (s->n == s->max && emdpo_grow((void **)&s->req, &s->max, s->n + 1, sizeof *s->req))
            s->rc = EMDPO_ERR_NOMEM;
        else if (failed(MPI_Iallreduce(MPI_IN_PLACE, buf + at, m, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &s->req[s->n])))
            s->rc = EMDPO_ERR_IO;
        else
            s->n++;
        at += (size_t)m;
    }
    int done;
    if (!s->rc && failed(MPI_Testall((int)s->n, s->req, &done, MPI_STATUSES_IGNORE))) s->rc = EMDPO_ERR_IO;
}

int emdpo_dist_sums_wait(emdpo_dist_sums *s) {
    if (!s) return EMDPO_OK;
    int rc = s->rc;
    if (failed(MPI_Waitall((int)s->n, s->req, MPI_STATUSES_IGNORE)) && !rc) rc = EMDPO_ERR_IO;
    s->n = 0;
    s->rc = EMDPO_OK;
    return rc;
}

int emdpo_dist_allgather_parts(void *items, const int64_t *count, size_t size) {
    int np = emdpo_dist_size();
    if (np == 1) return EMDPO_OK;
    if (size < 1 || size > INT_MAX) return EMDPO_ERR_INVALID_ARG;
    int64_t total = 0;
    for (int r = 0; r < np; r++) total += count[r];
    if (total > INT_MAX) return EMDPO_ERR_INVALID_ARG;
    if (total == 0) return EMDPO_OK;
    int *cnt = emdpo_malloc(2 * (size_t)np * sizeof(int));
    if (!cnt) return EMDPO_ERR_NOMEM;
    int *displ = cnt + np;
    for (int r = 0, at = 0; r < np; r++) {
        cnt[r] = (int)count[r];
        displ[r] = at;
        at += cnt[r];
    }
    /* Items travel as one datatype of `size` bytes, so counts stay items. */
    MPI_Datatype item;
    int bad = failed(MPI_Type_contiguous((int)size, MPI_BYTE, &item));
    if (!bad) {
        bad = failed(MPI_Type_commit(&item)) ||
              failed(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, items, cnt, displ, item, MPI_COMM_WORLD));
        MPI_Type_free(&item);
    }
    emdpo_free(cnt, 2 * (size_t)np * sizeof(int));
    return bad ? EMDPO_ERR_IO : EMDPO_OK;
}

int emdpo_dist_same(const void *p, size_t bytes) {
    if (emdpo_dist_size() == 1) return 1;
    /* the smallest hash and the smallest complement (the largest hash) */
    uint64_t h = emdpo_hash_bytes(p, bytes), m[2] = {h, ~h};
    if (failed(MPI_Allreduce(MPI_IN_PLACE, m, 2, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD))) return 0;
    return m[0] == ~m[1];
}
#else
int emdpo_dist_sum_floats(float *buf, size_t n) {
    (void)buf;
    (void)n;
    return EMDPO_OK;
}
int emdpo_dist_sum_doubles(double *buf, size_t n) {
    (void)buf;
    (void)n;
    return EMDPO_OK;
}
int emdpo_dist_sums_create(size_t max, emdpo_dist_sums **out) {
    (void)max;
    *out = NULL;
    return EMDPO_OK;
}
void emdpo_dist_sums_free(emdpo_dist_sums *s) { (void)s; }
void emdpo_dist_sums_start(emdpo_dist_sums *s, float *buf, size_t n) {
    (void)s;
    (void)buf;
    (void)n;
}
int emdpo_dist_sums_wait(emdpo_dist_sums *s) {
    (void)s;
    return EMDPO_OK;
}
int emdpo_dist_allgather_runs(double *items, int64_t n, int64_t run) {
    (void)items;
    (void)n;
    (void)run;
    return EMDPO_OK;
}
int emdpo_dist_allgather_parts(void *items, const int64_t *count, size_t size) {
    (void)items;
    (void)count;
    (void)size;
    return EMDPO_OK;
}
int emdpo_dist_same(const void *p, size_t bytes) {
    (void)p;
    (void)bytes;
    return 1;
}
#endif

/* ---- Reading one file in byte ranges (dist.h) --------------------------- */

#ifdef EMDPO_MPI
int emdpo_dist_alltoall_bytes(const char *send, const int64_t *counts, char **recv, size_t *recv_len) {
    int size = emdpo_dist_size();
    *recv = NULL;
    *recv_len = 0;
    size_t ibytes = 4 * (size_t)size * sizeof(int), lbytes = (size_t)size * sizeof(int64_t);
    int *sc = emdpo_malloc(ibytes);
    int64_t *rcount = emdpo_malloc(lbytes);
    int rc = sc && rcount ? EMDPO_OK : EMDPO_ERR_NOMEM;
    int64_t stotal = 0, rtotal = 0;
    if (!rc && failed(MPI_Alltoall(counts, 1, MPI_INT64_T, rcount, 1, MPI_INT64_T, MPI_COMM_WORLD))) rc = EMDPO_ERR_IO;
    if (!rc) {
        for (int q = 0; q < size; q++) {
            stotal += counts[q];
            rtotal += rcount[q];
        }
        if (stotal > INT_MAX || rtotal > INT_MAX) rc = EMDPO_ERR_INVALID_ARG;
    }
    int *sd = sc + size, *rcnt = sd + size, *rd = rcnt + size;
    for (int q = 0, sa = 0, ra = 0; !rc && q < size; q++) {
        sc[q] = (int)counts[q];
        sd[q] = sa;
        sa += sc[q];
        rcnt[q] = (int)rcount[q];
        rd[q] = ra;
        ra += rcnt[q];
    }
    if (!rc && rtotal && !(*recv = emdpo_malloc((size_t)rtotal))) rc = EMDPO_ERR_NOMEM;
    if (!rc) {
        if (failed(MPI_Alltoallv(send, sc, sd, MPI_CHAR, *recv, rcnt, rd, MPI_CHAR, MPI_COMM_WORLD))) {
            emdpo_free(*recv, (size_t)rtotal);
            *recv = NULL;
            rc = EMDPO_ERR_IO;
        } else {
            *recv_len = (size_t)rtotal;
        }
    }
    emdpo_free(sc, ibytes);
    emdpo_free(rcount, lbytes);
    return rc;
}
#else
int emdpo_dist_alltoall_bytes(const char *send, const int64_t *counts, char **recv, size_t *recv_len) {
    size_t n = (size_t)counts[0];
    *recv = NULL;
    *recv_len = 0;
    if (!n) return EMDPO_OK;
    if (!(*recv = emdpo_malloc(n))) return EMDPO_ERR_NOMEM;
    memcpy(*recv, send, n);
    *recv_len = n;
    return EMDPO_OK;
}
#endif
