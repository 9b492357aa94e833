#include "base/dist.h"

#include <limits.h>

#include "base/alloc.h"
#include "base/hash.h"
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
    MPI_Init(argc, argv);
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

#ifdef EMDPO_MPI
int emdpo_dist_allgather_rows(double *rows, int64_t n_rows, size_t width, int64_t span, int64_t n_annot) {
    int size = emdpo_dist_size();
    if (size == 1) return EMDPO_OK;
    if (span < 1 || (EMDPO_DIST_ALIGN % span != 0 && span % EMDPO_DIST_ALIGN != 0)) return EMDPO_ERR_INVALID_ARG;
    if ((uint64_t)n_rows * width > INT_MAX) return EMDPO_ERR_INVALID_ARG;
    int *count = emdpo_malloc(2 * (size_t)size * sizeof(int));
    if (!count) return EMDPO_ERR_NOMEM;
    int *displ = count + size;
    for (int r = 0; r < size; r++) {
        int64_t lo, hi;
        share_of(r, size, n_annot, &lo, &hi);
        /* Rows whose first annotator b * span lies in [lo, hi). */
        int64_t b0 = (lo + span - 1) / span, b1 = (hi + span - 1) / span;
        if (b1 > n_rows) b1 = n_rows;
        if (b0 > b1) b0 = b1;
        displ[r] = (int)(b0 * (int64_t)width);
        count[r] = (int)((b1 - b0) * (int64_t)width);
    }
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, rows, count, displ, MPI_DOUBLE, MPI_COMM_WORLD);
    emdpo_free(count, 2 * (size_t)size * sizeof(int));
    return EMDPO_OK;
}
#else
int emdpo_dist_allgather_rows(double *rows, int64_t n_rows, size_t width, int64_t span, int64_t n_annot) {
    (void)rows;
    (void)n_rows;
    (void)width;
    (void)span;
    (void)n_annot;
    return EMDPO_OK;
}
#endif

/* ---- Data-parallel language models (dist.h) ----------------------------- */

void emdpo_dist_range(int64_t n, int64_t *lo, int64_t *hi) {
    int64_t r = emdpo_dist_rank(), size = emdpo_dist_size();
    *lo = n * r / size;
    *hi = n * (r + 1) / size;
}

#ifdef EMDPO_MPI
/* MPI counts are ints: large buffers go in pieces. */
static int sum_in_place(void *buf, size_t n, size_t elem, MPI_Datatype type) {
    if (emdpo_dist_size() == 1) return EMDPO_OK;
    for (size_t at = 0; at < n;) {
        int m = n - at < (size_t)INT_MAX ? (int)(n - at) : INT_MAX;
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)buf + at * elem, m, type, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
            return EMDPO_ERR_NOMEM;
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
    int ok = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, items, count, displ, MPI_DOUBLE, MPI_COMM_WORLD) ==
             MPI_SUCCESS;
    emdpo_free(count, 2 * (size_t)size * sizeof(int));
    return ok ? EMDPO_OK : EMDPO_ERR_NOMEM;
}

int emdpo_dist_same(const void *p, size_t bytes) {
    if (emdpo_dist_size() == 1) return 1;
    /* the smallest hash and the smallest complement (the largest hash) */
    uint64_t h = emdpo_hash_bytes(p, bytes), m[2] = {h, ~h};
    MPI_Allreduce(MPI_IN_PLACE, m, 2, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
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
int emdpo_dist_allgather_runs(double *items, int64_t n, int64_t run) {
    (void)items;
    (void)n;
    (void)run;
    return EMDPO_OK;
}
int emdpo_dist_same(const void *p, size_t bytes) {
    (void)p;
    (void)bytes;
    return 1;
}
#endif
