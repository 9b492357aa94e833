/* EM-DPO benchmarks: emdpo against R flexmix on the same CSV, the 10^6
 * annotator scale run, and a thread-count determinism check.
 *
 *   bench_em flexmix-data OUT.csv [N=2000] [seed=1]
 *       simulate N annotators x 8 decisions x 3 items, personalities
 *       population (K = 3, p = 5), Gaussian item features; write long CSV.
 *   bench_em fit CSV [reps=5] [tol=1e-9] [starts=1]
 *       read CSV, time emdpo_em_fit (fit only) reps times; median.
 *   bench_em det CSV|sim:N
 *       same seed with 1 and 2 threads: log-likelihood bits in hex.
 *   bench_em scale [N=1000000] [max_iter=500] [tol=1e-9] [reps=1]
 *       simulate in memory (features only), time one E-step, one M-step and
 *       a full fit (reps: repeats of the single E-/M-step timings); peak RSS.
 *   bench_em profile CSV [reps=5] [tol=1e-9]
 *       where a fit's time goes: M-steps, Newton steps, the rest.
 *   mpirun -np P bench_em dist [N=1000000] [max_iter=500] [tol=1e-9]
 *       (linked with an MPI build's libemdpo.a, bench/dist.sh) each process
 *       simulates only its share of the annotators (runs of 1024, each
 *       seeded by its index: the same data for any P) and the sharded fit
 *       runs on the shares; rank 0 prints the fit (log-likelihood bits)
 *       and every process's time per iteration, collectives per iteration
 *       and peak RSS. Run as one plain process it is the same fit.
 *
 * Every timed section uses clock_gettime(CLOCK_MONOTONIC) around the library
 * call only. Output lines starting with "RESULT" are machine-readable
 * key=value records for bench/run.sh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#ifdef EMDPO_MPI
#include <mpi.h>
#endif

#include "base/alloc.h"
#include "base/dist.h"
#include "base/threads.h"
#include "core/em.h"
#include "data/data.h"
#include "emdpo.h"
#include "experiments/simulate.h"
#include "loglinear/loglinear.h"
#include "loglinear/loglinear_se.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the whole process (all threads): on a shared machine this
 * shows how much of a wall-clock figure was waiting for a core. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double last_fit_cpu; /* CPU seconds of the latest fit_once */

static double peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0; /* Linux: kilobytes */
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static unsigned long long bits(double x) {
    unsigned long long u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static void die(const char *what, int rc) {
    fprintf(stderr, "bench_em: %s: %s (%d)\n", what, emdpo_status_name(rc), rc);
    exit(1);
}

static int simulate(int64_t n, uint64_t seed, emdpo_data **d) {
    emdpo_sim_spec s;
    emdpo_sim_spec_init(&s);
    s.pop = emdpo_pop_personalities; /* K = 3, p = 5 */
    s.n_annotators = n;
    s.decisions = 8;
    s.items = 3;
    s.design = EMDPO_SIM_GAUSSIAN;
    s.scale = 1.0;
    s.omit_text = 1;
    s.seed = seed;
    return emdpo_simulate(&s, d, NULL, NULL);
}

/* One timed fit from a fresh zero policy. */
static double fit_once(const emdpo_data *d, const emdpo_em_opts *o, emdpo_em_result *res) {
    emdpo_policy *pol = NULL;
    int rc = emdpo_loglinear_create(3, emdpo_data_n_features(d), &pol);
    if (rc) die("loglinear_create", rc);
    double c0 = cpu_now(), t0 = now();
    rc = emdpo_em_fit(&pol, d, o, res);
    double t = now() - t0;
    last_fit_cpu = cpu_now() - c0;
    if (rc) die("em_fit", rc);
    emdpo_policy_free(pol);
    return t;
}

static int mode_flexmix_data(int argc, char **argv) {
    if (argc < 3) return 2;
    int64_t n = argc > 3 ? atoll(argv[3]) : 2000;
    uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
    emdpo_data *d = NULL;
    int rc = simulate(n, seed, &d);
    if (rc) die("simulate", rc);
    emdpo_diag diag;
    if ((rc = emdpo_data_write(d, argv[2], EMDPO_FORMAT_CSV, &diag))) {
        fprintf(stderr, "bench_em: write %s: %s\n", diag.file, diag.msg);
        die("data_write", rc);
    }
    printf("wrote %s: %lld annotators, %lld decisions, %lld items, p=%d\n", argv[2],
           (long long)emdpo_data_n_annotators(d), (long long)emdpo_data_n_decisions(d),
           (long long)emdpo_data_n_items(d), emdpo_data_n_features(d));
    emdpo_data_free(d);
    return 0;
}

static emdpo_data *load(const char *src) {
    emdpo_data *d = NULL;
    int rc;
    if (strncmp(src, "sim:", 4) == 0) {
        if ((rc = simulate(atoll(src + 4), 1, &d))) die("simulate", rc);
        return d;
    }
    emdpo_diag diag;
    if ((rc = emdpo_data_read(src, EMDPO_FORMAT_CSV, &d, &diag))) {
        fprintf(stderr, "bench_em: %s:%ld: %s\n", diag.file, diag.line, diag.msg);
        die("data_read", rc);
    }
    return d;
}

static int mode_fit(int argc, char **argv) {
    if (argc < 3) return 2;
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    double tol = argc > 4 ? atof(argv[4]) : 1e-9;
    int starts = argc > 5 ? atoi(argv[5]) : 1;
    if (reps < 1 || reps > 1000) reps = 5;
    emdpo_data *d = load(argv[2]);
    emdpo_em_opts o;
    emdpo_em_opts_init(&o);
    o.tol = tol;
    o.starts = starts;
    double *t = malloc((size_t)reps * sizeof(double));
    double *c = malloc((size_t)reps * sizeof(double));
    emdpo_em_result res;
    double ll = 0.0;
    int iters = 0, conv = 0;
    for (int r = 0; r < reps; r++) {
        t[r] = fit_once(d, &o, &res);
        c[r] = last_fit_cpu;
        ll = res.loglik;
        iters = res.iterations;
        conv = res.converged;
        if (r + 1 < reps) emdpo_em_result_free(&res);
    }
    double best = INFINITY;
    for (int r = 0; r < reps; r++) best = fmin(best, t[r]);
    printf("RESULT tool=emdpo starts=%d tol=%g threads=%d reps=%d median_s=%.6f min_s=%.6f median_cpu_s=%.6f "
           "loglik=%.6f "
           "iterations=%d converged=%d eta=%.4f,%.4f,%.4f\n",
           starts, tol, emdpo_max_threads(), reps, median(t, reps), best, median(c, reps), ll, iters, conv, res.eta[0], res.eta[1],
           res.eta[2]);
    emdpo_em_result_free(&res);
    free(t);
    free(c);
    emdpo_data_free(d);
    return 0;
}

/* Standard errors of a converged fit: the time of emdpo_loglinear_stderr
 * alone (the fit before it is not timed), median of the repeats. */
static int mode_se(int argc, char **argv) {
    if (argc < 3) return 2;
    int reps = argc > 3 ? atoi(argv[3]) : 7;
    if (reps < 1 || reps > 1000) reps = 7;
    emdpo_data *d = load(argv[2]);
    emdpo_em_opts o;
    emdpo_em_opts_init(&o);
    emdpo_policy *pol = NULL;
    emdpo_em_result res;
    int rc = emdpo_loglinear_create(3, emdpo_data_n_features(d), &pol);
    if (!rc) rc = emdpo_em_fit(&pol, d, &o, &res);
    if (rc) die("em_fit", rc);
    int K = 3, p = emdpo_data_n_features(d);
    double *se_theta = malloc((size_t)K * p * sizeof(double)), se_eta[3];
    double *t = malloc((size_t)reps * sizeof(double));
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if ((rc = emdpo_loglinear_stderr(d, emdpo_loglinear_of(pol), res.eta, res.empty, se_theta, se_eta)))
            die("stderr", rc);
        t[r] = now() - t0;
    }
    printf("RESULT tool=emdpo-se threads=%d reps=%d median_s=%.6f se_theta_1_1=%.6f se_eta_1=%.6f\n", emdpo_max_threads(), reps,
           median(t, reps), se_theta[0], se_eta[0]);
    free(t);
    free(se_theta);
    emdpo_em_result_free(&res);
    emdpo_policy_free(pol);
    emdpo_data_free(d);
    return 0;
}

static int mode_det(int argc, char **argv) {
    if (argc < 3) return 2;
    emdpo_data *d = load(argv[2]);
    emdpo_em_opts o;
    emdpo_em_opts_init(&o);
    o.starts = 2;
    o.seed = 7;
    double ll[2];
    for (int q = 0; q < 2; q++) {
        emdpo_set_threads(q + 1);
        emdpo_em_result res;
        fit_once(d, &o, &res);
        ll[q] = res.loglik;
        printf("threads=%d loglik=%.10f bits=0x%016llx (%a) iterations=%d\n", q + 1, ll[q], bits(ll[q]), ll[q],
               res.iterations);
        emdpo_em_result_free(&res);
    }
    int same = bits(ll[0]) == bits(ll[1]);
    printf("RESULT mode=det data=%s n_annot=%lld bits1=0x%016llx bits2=0x%016llx identical=%d\n", argv[2],
           (long long)emdpo_data_n_annotators(d), bits(ll[0]), bits(ll[1]), same);
    emdpo_data_free(d);
    return same ? 0 : 1;
}


/* Counting wrappers around the policy ops, for the breakdown in "profile". */
static const emdpo_policy_ops *real_ops;
static emdpo_policy_ops counting_ops;
static double t_mstep, t_logp;
static long n_mstep, n_newton, n_logp;

static int count_mstep(emdpo_policy *pol, const emdpo_data *d, const double *w, const unsigned char *active,
                       double *annot_logp, emdpo_mstep_info *info) {
    double t0 = now();
    int rc = real_ops->mstep(pol, d, w, active, annot_logp, info);
    t_mstep += now() - t0;
    n_mstep++;
    n_newton += info->iterations;
    return rc;
}

static int count_logp(emdpo_policy *pol, const emdpo_data *d, double *logp) {
    double t0 = now();
    int rc = real_ops->decision_logp(pol, d, logp);
    t_logp += now() - t0;
    n_logp++;
    return rc;
}

static void progress_cb(void *ud, int start, int iter, double loglik, const double *eta, int K) {
    (void)start; (void)iter; (void)loglik; (void)eta; (void)K;
    (*(long *)ud)++;
}

static int mode_profile(int argc, char **argv) {
    if (argc < 3) return 2;
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    double tol = argc > 4 ? atof(argv[4]) : 1e-9;
    emdpo_data *d = load(argv[2]);
    emdpo_em_opts o;
    emdpo_em_opts_init(&o);
    o.tol = tol;
    long n_estep = 0;
    o.progress = progress_cb;
    o.progress_ud = &n_estep;
    double t_fit = 0.0;
    emdpo_em_result res;
    for (int r = 0; r < reps; r++) {
        emdpo_policy *pol = NULL;
        int rc = emdpo_loglinear_create(3, emdpo_data_n_features(d), &pol);
        if (rc) die("loglinear_create", rc);
        real_ops = pol->ops;
        counting_ops = *real_ops;
        counting_ops.mstep = count_mstep;
        counting_ops.decision_logp = count_logp;
        pol->ops = &counting_ops;
        double t0 = now();
        if ((rc = emdpo_em_fit(&pol, d, &o, &res))) die("em_fit", rc);
        t_fit += now() - t0;
        emdpo_em_result_free(&res);
        emdpo_policy_free(pol);
    }
    printf("per fit (mean of %d): total %.4f s; %.1f M-steps taking %.4f s (%.1f Newton steps, %.2f ms each "
           "M-step eval incl. line search); %.1f E-steps; decision_logp calls %.1f (%.4f s); other "
           "(init, E-step, eta) %.4f s\n",
           reps, t_fit / reps, (double)n_mstep / reps, t_mstep / reps, (double)n_newton / reps,
           1e3 * t_mstep / (double)(n_newton + n_mstep), (double)n_estep / reps, (double)n_logp / reps,
           t_logp / reps, (t_fit - t_mstep - t_logp) / reps);
    emdpo_data_free(d);
    return 0;
}

static int mode_scale(int argc, char **argv) {
    int64_t n = argc > 2 ? atoll(argv[2]) : 1000000;
    int max_iter = argc > 3 ? atoi(argv[3]) : 500;
    double tol = argc > 4 ? atof(argv[4]) : 1e-9;
    int reps = argc > 5 ? atoi(argv[5]) : 1;
    if (reps < 1 || reps > 9) reps = 1;
    emdpo_data *d = NULL;
    double t0 = now();
    int rc = simulate(n, 1, &d);
    if (rc) die("simulate", rc);
    double t_sim = now() - t0;
    int64_t n_dec = emdpo_data_n_decisions(d), n_items = emdpo_data_n_items(d);
    int p = emdpo_data_n_features(d), K = 3;
    double feat_bytes = (double)n_items * p * sizeof(double);
    double rss_data = peak_rss_bytes();
    printf("data: %lld annotators, %lld decisions, %lld items, p=%d, features %.1f MB, simulate %.2f s, "
           "peak RSS after simulate %.1f MB\n",
           (long long)n, (long long)n_dec, (long long)n_items, p, feat_bytes / 1e6, t_sim, rss_data / 1e6);

    /* One E-step and one M-step at a sensible point: the true parameters'
     * neighbourhood is not needed; start from uniform responsibilities
     * perturbed per annotator so the types differ. */
    emdpo_policy *pol = NULL;
    if ((rc = emdpo_loglinear_create(K, p, &pol))) die("loglinear_create", rc);
    double *gamma = malloc((size_t)n * K * sizeof(double));
    double *annot_logp = malloc((size_t)n * K * sizeof(double));
    double *ll_annot = malloc((size_t)n * sizeof(double));
    if (!gamma || !annot_logp || !ll_annot) die("malloc", EMDPO_ERR_NOMEM);
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < K; k++) gamma[i * K + k] = (double)((i + k) % 3 + 1) / 6.0;
    unsigned char active[3] = {1, 1, 1};
    double tm[9], te[9], cm[9], ce[9];
    emdpo_mstep_info info = {0, 0, 0.0};
    emdpo_loglinear *lp = emdpo_loglinear_of(pol);
    for (int r = 0; r < reps; r++) {
        memset(lp->theta, 0, (size_t)K * p * sizeof(double));
        double c0 = cpu_now();
        t0 = now();
        if ((rc = pol->ops->mstep(pol, d, gamma, active, annot_logp, &info))) die("mstep", rc);
        tm[r] = now() - t0;
        cm[r] = cpu_now() - c0;
        double log_eta[3] = {log(1.0 / 3), log(1.0 / 3), log(1.0 / 3)};
        double ll;
        c0 = cpu_now();
        t0 = now();
        if ((rc = emdpo_em_estep_annot(n, K, annot_logp, log_eta, gamma, ll_annot, &ll))) die("estep", rc);
        te[r] = now() - t0;
        ce[r] = cpu_now() - c0;
    }
    int newton = info.iterations;
    double t_m = median(tm, reps), t_e = median(te, reps);
    double c_m = median(cm, reps), c_e = median(ce, reps);
    printf("one M-step (from theta = 0, %d Newton steps, with the annotator sums): %.3f s; E-step from them %.3f s "
           "(CPU: M-step %.3f s, E-step %.3f s)\n",
           newton, t_m, t_e, c_m, c_e);
    free(gamma);
    free(annot_logp);
    free(ll_annot);
    emdpo_policy_free(pol);

    emdpo_em_opts o;
    emdpo_em_opts_init(&o);
    o.max_iter = max_iter;
    o.tol = tol;
    emdpo_em_result res;
    double t_fit = fit_once(d, &o, &res);
    double per_iter = t_fit / (res.iterations + 1);
    double rss = peak_rss_bytes();
    printf("fit: %.3f s wall, %.3f s CPU (all threads), %d iterations (+1 initial M-step), converged=%d, loglik=%.4f, eta=%.4f,%.4f,%.4f\n", t_fit, last_fit_cpu,
           res.iterations, res.converged, res.loglik, res.eta[0], res.eta[1], res.eta[2]);
    printf("RESULT mode=scale n_annot=%lld threads=%d fit_s=%.3f fit_cpu_s=%.3f iterations=%d s_per_iter=%.4f mstep_s=%.4f "
           "newton_steps=%d estep_s=%.4f peak_rss_mb=%.1f "
           "rss_after_data_mb=%.1f feature_mb=%.1f rss_ratio=%.3f loglik=%.4f converged=%d mstep_cpu_s=%.4f "
           "estep_cpu_s=%.4f cpu_s_per_iter=%.4f\n",
           (long long)n, emdpo_max_threads(), t_fit, last_fit_cpu, res.iterations, per_iter, t_m, newton, t_e, rss / 1e6,
           rss_data / 1e6, feat_bytes / 1e6, rss / feat_bytes, res.loglik, res.converged, c_m, c_e,
           last_fit_cpu / (res.iterations + 1));
    emdpo_em_result_free(&res);
    emdpo_data_free(d);
    return 0;
}

/* ---- dist: the sharded fit under mpirun -------------------------------- */

/* The data of "dist": annotator run r (EMDPO_DIST_ALIGN annotators, the
 * last one short) is simulated with seed DIST_SEED + r, so the whole data
 * are the same for any number of processes, and each process simulates
 * only the runs of its share. */
#define DIST_SEED 1

/* This process's share of the "dist" data, left as emdpo_data_share would
 * leave it (shard = 1, annot_base, the whole's counts): the runs are
 * simulated one at a time and copied into arrays of the share's size. */
static emdpo_data *simulate_share(int64_t n) {
    int64_t lo, hi;
    emdpo_dist_share(n, &lo, &hi);
    if (hi <= lo) {
        fprintf(stderr, "bench_em: %lld annotators leave process %d none; use at least %d per process\n",
                (long long)n, emdpo_dist_rank(), EMDPO_DIST_ALIGN);
        emdpo_dist_finish(1);
        exit(1);
    }
    const int m = 8, items = 3, p = 5; /* simulate()'s shape */
    int64_t na = hi - lo, nd = na * m, ni = nd * items;
    emdpo_data *s = emdpo_calloc(1, sizeof *s);
    if (!s) die("calloc", EMDPO_ERR_NOMEM);
    s->n_annot = na;
    s->n_dec = nd;
    s->n_items = ni;
    s->p = p;
    s->annot_dec = emdpo_malloc((size_t)(na + 1) * sizeof(int64_t));
    s->dec_item = emdpo_malloc((size_t)(nd + 1) * sizeof(int64_t));
    s->dec_stages = emdpo_malloc((size_t)nd * sizeof(int32_t));
    s->x = emdpo_malloc((size_t)ni * p * sizeof(double));
    if (!s->annot_dec || !s->dec_item || !s->dec_stages || !s->x) die("malloc", EMDPO_ERR_NOMEM);
    s->annot_dec[0] = s->dec_item[0] = 0;
    int64_t a0 = 0, d0 = 0, i0 = 0; /* the share's annotators, decisions, items so far */
    for (int64_t first = lo; first < hi; first += EMDPO_DIST_ALIGN) {
        int64_t cnt = hi - first < EMDPO_DIST_ALIGN ? hi - first : EMDPO_DIST_ALIGN;
        emdpo_data *r = NULL;
        int rc = simulate(cnt, DIST_SEED + (uint64_t)(first / EMDPO_DIST_ALIGN), &r);
        if (rc) die("simulate", rc);
        if (r->n_dec != cnt * m || r->n_items != cnt * m * items || r->p != p)
            die("simulate's shape", EMDPO_ERR_INVALID_ARG);
        for (int64_t a = 1; a <= cnt; a++) s->annot_dec[a0 + a] = d0 + r->annot_dec[a];
        for (int64_t j = 1; j <= r->n_dec; j++) s->dec_item[d0 + j] = i0 + r->dec_item[j];
        memcpy(s->dec_stages + d0, r->dec_stages, (size_t)r->n_dec * sizeof(int32_t));
        memcpy(s->x + (size_t)i0 * p, r->x, (size_t)r->n_items * p * sizeof(double));
        a0 += cnt;
        d0 += r->n_dec;
        i0 += r->n_items;
        emdpo_data_free(r);
    }
    s->shard = 1;
    s->annot_base = lo;
    s->all_annot = n;
    s->all_dec = n * m;
    s->all_items = n * m * items;
    return s;
}

/* What the collectives carried: calls, payload bytes (count x type size
 * of each call's vector: what one process contributes, not what the
 * reduction algorithm sends on the wire) and the seconds spent inside
 * them (waiting for the slowest process included). */
typedef struct comm_count {
    double calls, bytes, secs;
} comm_count;
static comm_count comm;

#ifdef EMDPO_MPI
/* The MPI profiling interface: these definitions take the place of the MPI
 * library's for the calls in libemdpo.a (linked statically into this
 * program) and pass them on to PMPI_*. */
static void comm_add(int count, MPI_Datatype type, double t0) {
    int size;
    PMPI_Type_size(type, &size);
    comm.calls += 1;
    comm.bytes += (double)count * size;
    comm.secs += now() - t0;
}
int MPI_Allreduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op, MPI_Comm c) {
    double t0 = now();
    int rc = PMPI_Allreduce(sendbuf, recvbuf, count, type, op, c);
    comm_add(count, type, t0);
    return rc;
}
int MPI_Exscan(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op, MPI_Comm c) {
    double t0 = now();
    int rc = PMPI_Exscan(sendbuf, recvbuf, count, type, op, c);
    comm_add(count, type, t0);
    return rc;
}
int MPI_Bcast(void *buf, int count, MPI_Datatype type, int root, MPI_Comm c) {
    double t0 = now();
    int rc = PMPI_Bcast(buf, count, type, root, c);
    comm_add(count, type, t0);
    return rc;
}
#endif

/* The state at each EM iteration's end (the progress callback, after the
 * E-step): wall and CPU clocks and the collectives so far. */
#define DIST_MAX_MARKS 1024
typedef struct dist_mark {
    double wall, cpu;
    comm_count comm;
} dist_mark;
static dist_mark dist_marks[DIST_MAX_MARKS];
static int n_dist_marks;

static void dist_mark_now(void) {
    if (n_dist_marks == DIST_MAX_MARKS) return;
    dist_marks[n_dist_marks++] = (dist_mark){now(), cpu_now(), comm};
}

static void dist_progress(void *ud, int start, int iter, double loglik, const double *eta, int K) {
    (void)ud; (void)start; (void)iter; (void)loglik; (void)eta; (void)K;
    dist_mark_now();
}

/* Per-process figures rank 0 prints for every process. */
enum {
    DF_SIM, DF_INIT, DF_INIT_CALLS, DF_INIT_BYTES, DF_ITER, DF_ITER_CPU, DF_CALLS, DF_BYTES, DF_COMM_S, DF_RSS_DATA,
    DF_RSS, DF_N
};

static int mode_dist(int argc, char **argv) {
    int64_t n = argc > 2 ? atoll(argv[2]) : 1000000;
    emdpo_em_opts o;
    emdpo_em_opts_init(&o);
    o.max_iter = argc > 3 ? atoi(argv[3]) : 500;
    o.tol = argc > 4 ? atof(argv[4]) : 1e-9;
    o.progress = dist_progress;
    double t0 = now();
    emdpo_data *d = simulate_share(n);
    double f[DF_N];
    f[DF_SIM] = now() - t0;
    f[DF_RSS_DATA] = peak_rss_bytes();
    emdpo_em_result res;
#ifdef EMDPO_MPI
    PMPI_Barrier(MPI_COMM_WORLD); /* the processes finish simulating at different times */
#endif
    comm = (comm_count){0, 0, 0};
    n_dist_marks = 0;
    dist_mark_now();
    double t_fit = fit_once(d, &o, &res);
    /* Iteration i (one η update, M-step and E-step) runs from mark i to
     * mark i + 1; mark 0 -> 1 is the start (k-means, the first M-step and
     * E-step). */
    int n_it = n_dist_marks - 2;
    f[DF_INIT] = n_dist_marks > 1 ? dist_marks[1].wall - dist_marks[0].wall : t_fit;
    f[DF_INIT_CALLS] = n_dist_marks > 1 ? dist_marks[1].comm.calls : comm.calls;
    f[DF_INIT_BYTES] = n_dist_marks > 1 ? dist_marks[1].comm.bytes : comm.bytes;
    double *it_s = malloc((size_t)(n_it > 0 ? n_it : 1) * sizeof(double));
    double *it_c = malloc((size_t)(n_it > 0 ? n_it : 1) * sizeof(double));
    if (!it_s || !it_c) die("malloc", EMDPO_ERR_NOMEM);
    for (int i = 0; i < n_it; i++) {
        it_s[i] = dist_marks[i + 2].wall - dist_marks[i + 1].wall;
        it_c[i] = dist_marks[i + 2].cpu - dist_marks[i + 1].cpu;
    }
    f[DF_ITER] = n_it > 0 ? median(it_s, n_it) : NAN;
    f[DF_ITER_CPU] = n_it > 0 ? median(it_c, n_it) : NAN;
    /* Collectives of one iteration: the mean over the iterations. */
    comm_count c1 = {0, 0, 0};
    if (n_it > 0) {
        const comm_count *a = &dist_marks[1].comm, *b = &dist_marks[n_it + 1].comm;
        c1 = (comm_count){(b->calls - a->calls) / n_it, (b->bytes - a->bytes) / n_it, (b->secs - a->secs) / n_it};
    }
    f[DF_CALLS] = c1.calls;
    f[DF_BYTES] = c1.bytes;
    f[DF_COMM_S] = c1.secs;
    f[DF_RSS] = peak_rss_bytes();
    int np = emdpo_dist_size(), rank = emdpo_dist_rank();
    double *all = malloc((size_t)np * DF_N * sizeof(double));
    if (!all) die("malloc", EMDPO_ERR_NOMEM);
    memcpy(all, f, sizeof f);
#ifdef EMDPO_MPI
    if (np > 1) PMPI_Gather(f, DF_N, MPI_DOUBLE, all, DF_N, MPI_DOUBLE, 0, MPI_COMM_WORLD);
#endif
    if (rank == 0) {
        printf("RESULT mode=dist np=%d threads=%d n_annot=%lld fit_s=%.3f iterations=%d init_s=%.3f s_per_iter=%.4f "
               "loglik=%.10f bits=0x%016llx\n",
               np, emdpo_max_threads(), (long long)n, t_fit, res.iterations, f[DF_INIT], f[DF_ITER], res.loglik,
               bits(res.loglik));
        for (int r = 0; r < np; r++) {
            const double *g = all + (size_t)r * DF_N;
            printf("RESULT mode=dist-rank rank=%d np=%d simulate_s=%.2f init_s=%.3f init_comm_calls=%.0f "
                   "init_comm_bytes=%.0f s_per_iter=%.4f cpu_s_per_iter=%.4f comm_calls_per_iter=%.1f "
                   "comm_bytes_per_iter=%.0f comm_s_per_iter=%.4f rss_after_data_mb=%.1f peak_rss_mb=%.1f\n",
                   r, np, g[DF_SIM], g[DF_INIT], g[DF_INIT_CALLS], g[DF_INIT_BYTES], g[DF_ITER], g[DF_ITER_CPU],
                   g[DF_CALLS], g[DF_BYTES], g[DF_COMM_S], g[DF_RSS_DATA] / 1e6, g[DF_RSS] / 1e6);
        }
    }
    free(all);
    free(it_s);
    free(it_c);
    emdpo_em_result_free(&res);
    emdpo_data_free(d);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress lines reach a log file as they happen */
    int rc = 2;
    if (argc >= 2 && !strcmp(argv[1], "dist")) {
        emdpo_dist_init(&argc, &argv);
        rc = mode_dist(argc, argv);
        emdpo_dist_finish(rc);
        return rc;
    }
    if (argc >= 2) {
        if (!strcmp(argv[1], "flexmix-data")) rc = mode_flexmix_data(argc, argv);
        else if (!strcmp(argv[1], "fit")) rc = mode_fit(argc, argv);
        else if (!strcmp(argv[1], "det")) rc = mode_det(argc, argv);
        else if (!strcmp(argv[1], "se")) rc = mode_se(argc, argv);
        else if (!strcmp(argv[1], "scale")) rc = mode_scale(argc, argv);
        else if (!strcmp(argv[1], "profile")) rc = mode_profile(argc, argv);
    }
    if (rc == 2)
        fprintf(stderr, "usage: bench_em flexmix-data OUT.csv [N] [seed] | fit CSV [reps] [tol] [starts] |\n"
                        "       det CSV|sim:N | scale [N] [max_iter] [tol] [reps] | profile CSV [reps] [tol] |\n"
                        "       dist [N] [max_iter] [tol]\n");
    return rc;
}
