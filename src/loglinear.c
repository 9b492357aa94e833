#include "loglinear.h"

#include <math.h>
#include <string.h>

#include "alloc.h"
#include "choice.h"
#include "linalg.h"
#include "threads.h"

/* Annotators per reduction block. Fixed, so that partial sums, and hence
 * results, are bitwise identical for any number of threads. */
#define LL_BLOCK 512

static const emdpo_policy_ops loglinear_ops;

emdpo_loglinear *emdpo_loglinear_of(emdpo_policy *pol) {
    return pol && pol->ops == &loglinear_ops ? (emdpo_loglinear *)pol : NULL;
}

/* Per-type slot in a block's partial sums: f, grad (p), Hessian (p, p).
 * The full square (not a triangle) keeps the inner loops plain enough to
 * vectorise. */
static size_t type_stride(int p) { return 1 + (size_t)p + (size_t)p * p; }

typedef struct eval_job {
    const emdpo_data *d;
    const double *w;            /* (n_annot, K) or NULL: weight 1 */
    const double *theta;        /* (K, p) parameters to evaluate at */
    const unsigned char *mask;  /* (K) types to evaluate */
    int K, p, nmax, want_grad;
    int want_hess;              /* also the Hessian (needs want_grad) */
    double *logp;               /* (n_dec, K) or NULL */
    double *part;               /* (n_blocks, K, stride) */
} eval_job;

double emdpo_loglinear_decision_derivs(const double *x, int n, int stages, int p, const double *th, double wt,
                                       double *u, double *prob, double *xbar, double *g, double *h) {
    for (int q = 0; q < n; q++) {
        const double *xq = x + (size_t)q * p;
        double s = 0.0;
        for (int a = 0; a < p; a++) s += th[a] * xq[a];
        u[q] = s;
    }
    if (!g) return emdpo_choice_logp(u, n, stages);
    double lp = 0.0;
    for (int t = 0; t < stages; t++) {
        /* One exp per item gives both the normaliser and the probabilities. */
        double m = u[t];
        for (int q = t + 1; q < n; q++) m = u[q] > m ? u[q] : m;
        double z = 0.0;
        for (int q = t; q < n; q++) z += prob[q] = exp(u[q] - m);
        lp += u[t] - m - log(z);
        double inv = 1.0 / z;
        for (int a = 0; a < p; a++) xbar[a] = 0.0;
        for (int q = t; q < n; q++) {
            prob[q] *= inv;
            const double *xq = x + (size_t)q * p;
            for (int a = 0; a < p; a++) xbar[a] += prob[q] * xq[a];
        }
        const double *xt = x + (size_t)t * p;
        for (int a = 0; a < p; a++) g[a] += wt * (xt[a] - xbar[a]);
        for (int q = t; q < n && h; q++) {
            const double *xq = x + (size_t)q * p;
            double c = wt * prob[q];
            for (int a = 0; a < p; a++) {
                double da = c * (xq[a] - xbar[a]);
                for (int b = 0; b < p; b++) h[a * p + b] -= da * (xq[b] - xbar[b]);
            }
        }
    }
    return lp;
}

/* exp(x) for x <= 0, accurate to about 2 ulp, in plain arithmetic and bit
 * moves (the C library's exp was a third of a pass). */
static inline double bits_to_double(uint64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static inline uint64_t double_to_bits(double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

/* 1.5 * 2^52: adding it rounds to an integer held in the low mantissa bits. */
#define ROUND_SHIFTER 6755399441055744.0
#define ROUND_SHIFTER_BITS 0x4338000000000000ULL

static inline double exp_nonpositive(double x) {
    x = x > -708.0 ? x : -708.0; /* below, 2^-1022 scale: zero for our sums */
    double kk = x * 1.4426950408889634 + ROUND_SHIFTER;
    double k = kk - ROUND_SHIFTER;
    double r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
    double p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    uint64_t kbits = double_to_bits(kk) - ROUND_SHIFTER_BITS; /* k as a two's-complement integer */
    return p * bits_to_double((kbits + 1023) << 52);
}

/* Top-choice decisions are evaluated LANES at a time, transposed so that
 * every inner loop runs across decisions: that is the direction the
 * compiler can vectorise (items and features are too few). */
#define LANES 8
/* Decisions with more items than this take the one-at-a-time path. */
#define LANE_NMAX 16

/* Scratch of one thread for the lane kernel. */
typedef struct lane_scratch {
    double *X;    /* (LANE_NMAX, p, LANES) features, transposed */
    double *XX;   /* (LANE_NMAX, p, p, LANES) products x_a x_b */
    double *u;    /* (LANE_NMAX, LANES) utilities, then probabilities */
    double *xb;   /* (p, LANES) expected features */
    double *acc;  /* (K, stride, LANES) per-lane sums of f, grad, Hessian */
    double *wl;   /* (K, LANES) weight of each pending decision per type */
    const double *xs[LANES];
    int64_t dec[LANES];
    int nd, n;    /* pending decisions and their item count */
    int want_hess;
} lane_scratch;

static size_t lane_scratch_doubles(int K, int p) {
    return (size_t)LANES * ((size_t)LANE_NMAX * p + (size_t)LANE_NMAX * p * p + LANE_NMAX + p +
                            (size_t)K * type_stride(p) + K);
}

static void lane_scratch_point(lane_scratch *s, double *buf, int K, int p) {
    s->X = buf;
    s->XX = s->X + (size_t)LANE_NMAX * p * LANES;
    s->u = s->XX + (size_t)LANE_NMAX * p * p * LANES;
    s->xb = s->u + (size_t)LANE_NMAX * LANES;
    s->acc = s->xb + (size_t)p * LANES;
    s->wl = s->acc + (size_t)K * type_stride(p) * LANES;
    s->nd = 0;
    s->n = 0;
    memset(s->acc, 0, (size_t)K * type_stride(p) * LANES * sizeof(double));
    memset(s->wl, 0, (size_t)K * LANES * sizeof(double));
}

/* Evaluates the pending decisions for every masked type. The Hessian uses
 * the uncentred form sum P x x^T - xbar xbar^T with the products x x^T
 * shared by all types: it only steers Newton's direction, and the gradient
 * that decides convergence is computed directly. Unused lanes carry zero
 * features and weight, so they add nothing. */
static inline __attribute__((always_inline)) void lanes_flush_impl(lane_scratch *s, const int p, int K,
                                                                   const unsigned char *mask, const double *theta,
                                                                   double *logp) {
    const int n = s->n, L = LANES;
    const size_t stride = type_stride(p);
    /* The scratch arrays never overlap: restrict lets the compiler vectorise. */
    double *restrict X = s->X, *restrict XX = s->XX, *restrict u = s->u, *restrict xb = s->xb;
    for (int d = 0; d < L; d++)
        for (int q = 0; q < n; q++)
            for (int a = 0; a < p; a++) X[(q * p + a) * L + d] = d < s->nd ? s->xs[d][q * p + a] : 0.0;
    for (int q = 0; q < n && s->want_hess; q++)
        for (int a = 0; a < p; a++)
            for (int b = 0; b < p; b++)
                for (int d = 0; d < L; d++) XX[((q * p + a) * p + b) * L + d] = X[(q * p + a) * L + d] * X[(q * p + b) * L + d];
    for (int k = 0; k < K; k++) {
        if (!mask[k]) continue;
        const double *restrict th = theta + (size_t)k * p, *restrict w = s->wl + (size_t)k * L;
        double *restrict acc = s->acc + (size_t)k * stride * L;
        double m[LANES], z[LANES], lp[LANES];
        for (int q = 0; q < n; q++) {
            for (int d = 0; d < L; d++) u[q * L + d] = 0.0;
            for (int a = 0; a < p; a++)
                for (int d = 0; d < L; d++) u[q * L + d] += th[a] * X[(q * p + a) * L + d];
        }
        for (int d = 0; d < L; d++) m[d] = u[d];
        for (int q = 1; q < n; q++)
            for (int d = 0; d < L; d++) m[d] = u[q * L + d] > m[d] ? u[q * L + d] : m[d];
        for (int d = 0; d < L; d++) {
            lp[d] = u[d] - m[d];
            z[d] = 0.0;
        }
        for (int q = 0; q < n; q++)
            for (int d = 0; d < L; d++) z[d] += u[q * L + d] = exp_nonpositive(u[q * L + d] - m[d]);
        for (int d = 0; d < L; d++) {
            lp[d] -= log(z[d]);
            z[d] = 1.0 / z[d];
        }
        for (int q = 0; q < n; q++)
            for (int d = 0; d < L; d++) u[q * L + d] *= z[d]; /* probabilities */
        for (int a = 0; a < p; a++) {
            for (int d = 0; d < L; d++) xb[a * L + d] = 0.0;
            for (int q = 0; q < n; q++)
                for (int d = 0; d < L; d++) xb[a * L + d] += u[q * L + d] * X[(q * p + a) * L + d];
        }
        for (int d = 0; d < L; d++) acc[d] += w[d] * lp[d];
        for (int a = 0; a < p; a++)
            for (int d = 0; d < L; d++) acc[(1 + a) * L + d] += w[d] * (X[a * L + d] - xb[a * L + d]);
        if (logp)
            for (int d = 0; d < s->nd; d++) logp[s->dec[d] * K + k] = lp[d];
        if (!s->want_hess) continue;
        double *restrict h = acc + (size_t)(1 + p) * L;
        for (int q = 0; q < n; q++)
            for (int ab = 0; ab < p * p; ab++)
                for (int d = 0; d < L; d++) h[ab * L + d] -= w[d] * u[q * L + d] * XX[(q * p * p + ab) * L + d];
        for (int a = 0; a < p; a++)
            for (int b = 0; b < p; b++)
                for (int d = 0; d < L; d++) h[(a * p + b) * L + d] += w[d] * xb[a * L + d] * xb[b * L + d];
    }
    s->nd = 0;
    memset(s->wl, 0, (size_t)K * L * sizeof(double)); /* unused lanes must weigh nothing */
}

#define LANES_FLUSH_FOR(P)                                                                                   \
    static void lanes_flush_p##P(lane_scratch *s, int K, const unsigned char *mask, const double *theta,     \
                                 double *logp) {                                                             \
        lanes_flush_impl(s, P, K, mask, theta, logp);                                                        \
    }
LANES_FLUSH_FOR(1)
LANES_FLUSH_FOR(2)
LANES_FLUSH_FOR(3)
LANES_FLUSH_FOR(4)
LANES_FLUSH_FOR(5)
LANES_FLUSH_FOR(6)
LANES_FLUSH_FOR(7)
LANES_FLUSH_FOR(8)

/* The kernel compiled for each small feature count, so its loops unroll;
 * larger p takes the generic body. */
static void lanes_flush(lane_scratch *s, int p, int K, const unsigned char *mask, const double *theta,
                        double *logp) {
    if (s->nd == 0) return;
    switch (p) {
    case 1: lanes_flush_p1(s, K, mask, theta, logp); break;
    case 2: lanes_flush_p2(s, K, mask, theta, logp); break;
    case 3: lanes_flush_p3(s, K, mask, theta, logp); break;
    case 4: lanes_flush_p4(s, K, mask, theta, logp); break;
    case 5: lanes_flush_p5(s, K, mask, theta, logp); break;
    case 6: lanes_flush_p6(s, K, mask, theta, logp); break;
    case 7: lanes_flush_p7(s, K, mask, theta, logp); break;
    case 8: lanes_flush_p8(s, K, mask, theta, logp); break;
    default: lanes_flush_impl(s, p, K, mask, theta, logp); break;
    }
}

/* Queues a top-choice decision; flushes when the lanes are full or the
 * item count changes. */
static void lanes_push(lane_scratch *s, const eval_job *J, int64_t i, int64_t j, const double *x, int n) {
    if (s->nd && s->n != n) lanes_flush(s, J->p, J->K, J->mask, J->theta, J->logp);
    s->n = n;
    int d = s->nd++;
    s->xs[d] = x;
    s->dec[d] = j;
    for (int k = 0; k < J->K; k++) s->wl[(size_t)k * LANES + d] = J->w ? J->w[i * J->K + k] : 1.0;
    if (s->nd == LANES) lanes_flush(s, J->p, J->K, J->mask, J->theta, J->logp);
}

static void eval_block(const eval_job *J, int64_t blk, double *u, double *prob, double *xbar, lane_scratch *ls) {
    const emdpo_data *d = J->d;
    int K = J->K, p = J->p;
    size_t stride = type_stride(p);
    double *part = J->part + (size_t)blk * K * stride;
    memset(part, 0, (size_t)K * stride * sizeof(double));
    int64_t i0 = blk * LL_BLOCK, i1 = i0 + LL_BLOCK < d->n_annot ? i0 + LL_BLOCK : d->n_annot;
    ls->want_hess = J->want_hess;
    for (int64_t i = i0; i < i1; i++) {
        for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) {
            int64_t it = d->dec_item[j];
            int n = (int)(d->dec_item[j + 1] - it);
            const double *x = d->x + (size_t)it * p;
            if (J->want_grad && d->dec_stages[j] == 1 && n <= LANE_NMAX) {
                lanes_push(ls, J, i, j, x, n);
                continue;
            }
            for (int k = 0; k < K; k++) {
                if (!J->mask[k]) continue;
                double wt = J->w ? J->w[i * K + k] : 1.0;
                if (wt == 0.0 && !J->logp) continue;
                double *slot = part + (size_t)k * stride;
                double *g = J->want_grad && wt != 0.0 ? slot + 1 : NULL;
                double lp = emdpo_loglinear_decision_derivs(x, n, d->dec_stages[j], p, J->theta + (size_t)k * p, wt, u, prob, xbar, g,
                                          g && J->want_hess ? g + p : NULL);
                slot[0] += wt * lp;
                if (J->logp) J->logp[j * K + k] = lp;
            }
        }
    }
    lanes_flush(ls, p, K, J->mask, J->theta, J->logp);
    /* Lane sums join the block's partials in a fixed order. */
    for (int k = 0; k < K; k++) {
        if (!J->mask[k]) continue;
        double *acc = ls->acc + (size_t)k * stride * LANES;
        for (size_t t = 0; t < stride; t++) {
            double sum = 0.0;
            for (int q = 0; q < LANES; q++) sum += acc[t * LANES + q];
            part[(size_t)k * stride + t] += sum;
        }
    }
    memset(ls->acc, 0, (size_t)K * stride * LANES * sizeof(double));
}

/* Evaluates every masked type; sums of f, grad and Hessian land in
 * out (K, stride), added in block order. */
static int eval_all(const eval_job *J, double *out) {
    int64_t n_blocks = (J->d->n_annot + LL_BLOCK - 1) / LL_BLOCK;
    size_t stride = type_stride(J->p);
    /* Scratch for every thread is allocated up front: the allocation hook
     * need not be thread-safe, and a failure inside the parallel region
     * could not leave the work-sharing loop cleanly. */
    int n_threads = emdpo_max_threads();
    size_t scratch_n = 2 * (size_t)J->nmax + (size_t)J->p + lane_scratch_doubles(J->K, J->p);
    double *scratch = emdpo_malloc((size_t)n_threads * scratch_n * sizeof(double));
    if (!scratch) return EMDPO_ERR_NOMEM;
#pragma omp parallel num_threads(n_threads) if ((double)J->d->n_items * J->K >= EMDPO_PAR_MIN_WORK)
    {
        double *mine = scratch + (size_t)emdpo_thread_num() * scratch_n;
        lane_scratch ls;
        lane_scratch_point(&ls, mine + 2 * J->nmax + J->p, J->K, J->p);
#pragma omp for schedule(dynamic, 4)
        for (int64_t b = 0; b < n_blocks; b++) eval_block(J, b, mine, mine + J->nmax, mine + 2 * J->nmax, &ls);
    }
    emdpo_free(scratch, (size_t)n_threads * scratch_n * sizeof(double));
    memset(out, 0, (size_t)J->K * stride * sizeof(double));
    for (int64_t b = 0; b < n_blocks; b++) {
        const double *pb = J->part + (size_t)b * J->K * stride;
        for (size_t q = 0; q < (size_t)J->K * stride; q++) out[q] += pb[q];
    }
    return EMDPO_OK;
}

/* Adds the ridge penalty of type k at theta to its slot. */
static void add_penalty(double *slot, const double *th, int p, double l2) {
    if (l2 == 0.0) return;
    double sq = 0.0;
    double *h = slot + 1 + p;
    for (int a = 0; a < p; a++) {
        sq += th[a] * th[a];
        slot[1 + a] -= l2 * th[a];
        h[a * p + a] -= l2;
    }
    slot[0] -= 0.5 * l2 * sq;
}

/* The Hessian of a slot, symmetrised against rounding. */
static void unpack_hessian(const double *h, int p, double *H) {
    for (int a = 0; a < p; a++)
        for (int b = 0; b < p; b++) H[a * p + b] = 0.5 * (h[a * p + b] + h[b * p + a]);
}

int emdpo_loglinear_objective(const emdpo_loglinear *ll, const emdpo_data *d, const double *w, int k,
                              double *f, double *grad, double *hess) {
    int K = ll->base.K, p = ll->p;
    if (k < 0 || k >= K || d->p != p) return EMDPO_ERR_INVALID_ARG;
    int64_t n_blocks = (d->n_annot + LL_BLOCK - 1) / LL_BLOCK;
    size_t stride = type_stride(p);
    unsigned char *mask = emdpo_calloc((size_t)K, 1);
    double *part = emdpo_malloc((size_t)n_blocks * K * stride * sizeof(double));
    double *out = emdpo_malloc((size_t)K * stride * sizeof(double));
    int rc = EMDPO_ERR_NOMEM;
    if (mask && part && out) {
        mask[k] = 1;
        eval_job J = {d, w, ll->theta, mask, K, p, emdpo_data_max_items(d), grad || hess, hess != NULL, NULL, part};
        rc = eval_all(&J, out);
        if (!rc) {
            double *slot = out + (size_t)k * stride;
            add_penalty(slot, ll->theta + (size_t)k * p, p, ll->l2);
            if (f) *f = slot[0];
            if (grad) memcpy(grad, slot + 1, (size_t)p * sizeof(double));
            if (hess) unpack_hessian(slot + 1 + p, p, hess);
        }
    }
    emdpo_free(mask, (size_t)K);
    emdpo_free(part, (size_t)n_blocks * K * stride * sizeof(double));
    emdpo_free(out, (size_t)K * stride * sizeof(double));
    return rc;
}

static int loglinear_decision_logp(emdpo_policy *pol, const emdpo_data *d, double *logp) {
    emdpo_loglinear *ll = (emdpo_loglinear *)pol;
    int K = pol->K, p = ll->p;
    if (d->p != p) return EMDPO_ERR_INVALID_ARG;
    int64_t n_blocks = (d->n_annot + LL_BLOCK - 1) / LL_BLOCK;
    size_t stride = type_stride(p);
    unsigned char *mask = emdpo_malloc((size_t)K);
    double *part = emdpo_malloc((size_t)n_blocks * K * stride * sizeof(double));
    double *out = emdpo_malloc((size_t)K * stride * sizeof(double));
    int rc = EMDPO_ERR_NOMEM;
    if (mask && part && out) {
        memset(mask, 1, (size_t)K);
        eval_job J = {d, NULL, ll->theta, mask, K, p, emdpo_data_max_items(d), 0, 0, logp, part};
        rc = eval_all(&J, out);
    }
    emdpo_free(mask, (size_t)K);
    emdpo_free(part, (size_t)n_blocks * K * stride * sizeof(double));
    emdpo_free(out, (size_t)K * stride * sizeof(double));
    return rc;
}

/* Newton workspace for all K types at once. */
typedef struct newton_ws {
    double *cur;     /* (K, stride) f, grad, Hessian at the accepted theta */
    double *trial;   /* (K, stride) at the trial theta */
    double *th_try;  /* (K, p) */
    double *delta;   /* (K, p) Newton direction */
    double *A;       /* (p, p) scratch for the damped system */
    double *part;    /* (n_blocks, K, stride) */
    double *alpha;   /* (K) step length */
    double *slope;   /* (K) grad . delta */
    double *wsum;    /* (K) total decision weight */
    double *gprev;   /* (K) gradient norm after the last accepted step */
    unsigned char *done, *trying, *logp_ok; /* (K) */
} newton_ws;

static size_t ws_doubles(int K, int p, int64_t n_blocks) {
    size_t s = type_stride(p);
    return 2 * (size_t)K * s + 2 * (size_t)K * p + (size_t)p * p + (size_t)n_blocks * K * s + 4 * (size_t)K;
}

static int ws_alloc(newton_ws *ws, int K, int p, int64_t n_blocks, double **buf, unsigned char **flags) {
    size_t s = type_stride(p);
    *buf = emdpo_malloc(ws_doubles(K, p, n_blocks) * sizeof(double));
    *flags = emdpo_calloc(3 * (size_t)K, 1);
    if (!*buf || !*flags) return EMDPO_ERR_NOMEM;
    double *q = *buf;
    ws->cur = q; q += (size_t)K * s;
    ws->trial = q; q += (size_t)K * s;
    ws->th_try = q; q += (size_t)K * p;
    ws->delta = q; q += (size_t)K * p;
    ws->A = q; q += (size_t)p * p;
    ws->part = q; q += (size_t)n_blocks * K * s;
    ws->alpha = q; q += K;
    ws->slope = q; q += K;
    ws->wsum = q; q += K;
    ws->gprev = q;
    ws->done = *flags;
    ws->trying = *flags + K;
    ws->logp_ok = *flags + 2 * K;
    return EMDPO_OK;
}

/* store: the slot's Hessian becomes type k's cached one; otherwise the
 * cached one is copied into the slot. */
static void hess_cache_sync(emdpo_loglinear *ll, double *slot, int k, int store) {
    int p = ll->p;
    double *h = ll->hess_cache + (size_t)k * p * p;
    if (store)
        memcpy(h, slot + 1 + p, (size_t)p * p * sizeof(double));
    else
        memcpy(slot + 1 + p, h, (size_t)p * p * sizeof(double));
    ll->hess_ok[k] = 1;
}

static double grad_norm(const double *slot, int p) {
    double gmax = 0.0;
    for (int a = 0; a < p; a++) gmax = fmax(gmax, fabs(slot[1 + a]));
    return gmax;
}

static int grad_converged(const double *slot, int p, double gtol, double wsum) {
    return grad_norm(slot, p) <= gtol * (1.0 + wsum);
}

/* Newton direction for one type: solves (-H + mu I) delta = grad, raising
 * mu until the factorisation succeeds (-H is only positive semidefinite
 * when features are collinear or the data separable). */
static void newton_direction(const double *slot, int p, double *A, double *delta) {
    double diag_max = 0.0;
    for (int a = 0; a < p; a++) diag_max = fmax(diag_max, -slot[1 + p + a * p + a]);
    double mu = 0.0;
    for (int attempt = 0; attempt < 60; attempt++) {
        unpack_hessian(slot + 1 + p, p, A);
        for (int q = 0; q < p * p; q++) A[q] = -A[q];
        for (int a = 0; a < p; a++) A[a * p + a] += mu;
        if (emdpo_cholesky(A, p) == 0) {
            memcpy(delta, slot + 1, (size_t)p * sizeof(double));
            emdpo_cholesky_solve(A, p, delta);
            return;
        }
        mu = mu == 0.0 ? 1e-12 * fmax(1.0, diag_max) : mu * 10.0;
    }
    memcpy(delta, slot + 1, (size_t)p * sizeof(double)); /* steepest ascent as a last resort */
}

static int loglinear_mstep(emdpo_policy *pol, const emdpo_data *d, const double *w,
                           const unsigned char *active, double *logp, emdpo_mstep_info *info) {
    emdpo_loglinear *ll = (emdpo_loglinear *)pol;
    int K = pol->K, p = ll->p;
    if (d->p != p) return EMDPO_ERR_INVALID_ARG;
    size_t s = type_stride(p);
    int64_t n_blocks = (d->n_annot + LL_BLOCK - 1) / LL_BLOCK;
    newton_ws ws;
    double *buf = NULL;
    unsigned char *flags = NULL;
    int rc = ws_alloc(&ws, K, p, n_blocks, &buf, &flags);
    if (rc) goto out;

    for (int k = 0; k < K; k++) {
        ws.wsum[k] = 0.0;
        for (int64_t i = 0; i < d->n_annot; i++)
            ws.wsum[k] += w[i * K + k] * (double)(d->annot_dec[i + 1] - d->annot_dec[i]);
        ws.done[k] = !active[k];
    }
    int cached = ll->hess_data == d;
    for (int k = 0; k < K; k++) cached &= ws.done[k] || ll->hess_ok[k];
    eval_job J = {d, w, ll->theta, ws.done, K, p, emdpo_data_max_items(d), 1, !cached, logp, ws.part};
    for (int k = 0; k < K; k++) ws.trying[k] = !ws.done[k];
    J.mask = ws.trying;
    if ((rc = eval_all(&J, ws.cur))) goto out;
    for (int k = 0; k < K; k++) {
        if (ws.done[k]) continue;
        add_penalty(ws.cur + k * s, ll->theta + (size_t)k * p, p, ll->l2);
        hess_cache_sync(ll, ws.cur + k * s, k, !cached);
        ws.logp_ok[k] = 1;
    }
    ll->hess_data = d;

    /* The Hessian is recomputed only when the last steps stopped shrinking
     * the gradient fast: a pass without it costs a fraction of one with it,
     * and near the optimum (warm-started M-steps) it barely changes. */
    int iter = 0, all_converged = 1;
    for (int k = 0; k < K; k++) ws.gprev[k] = grad_norm(ws.cur + k * s, p);
    J.want_hess = 0;
    for (; iter < ll->max_newton; iter++) {
        int any = 0;
        for (int k = 0; k < K; k++) {
            ws.trying[k] = 0;
            if (ws.done[k]) continue;
            double *slot = ws.cur + k * s;
            if (grad_converged(slot, p, ll->gtol, ws.wsum[k])) {
                ws.done[k] = 1;
                continue;
            }
            newton_direction(slot, p, ws.A, ws.delta + (size_t)k * p);
            ws.slope[k] = 0.0;
            for (int a = 0; a < p; a++) ws.slope[k] += slot[1 + a] * ws.delta[(size_t)k * p + a];
            ws.alpha[k] = 1.0;
            ws.trying[k] = any = 1;
        }
        if (!any) break;
        int refresh = 0;
        for (int halvings = 0; halvings < 50; halvings++) {
            int pending = 0;
            for (int k = 0; k < K; k++) {
                if (!ws.trying[k]) continue;
                for (int a = 0; a < p; a++)
                    ws.th_try[(size_t)k * p + a] = ll->theta[(size_t)k * p + a] + ws.alpha[k] * ws.delta[(size_t)k * p + a];
                pending = 1;
            }
            if (!pending) break;
            J.theta = ws.th_try;
            if ((rc = eval_all(&J, ws.trial))) goto out;
            for (int k = 0; k < K; k++) {
                if (!ws.trying[k]) continue;
                double *tr = ws.trial + k * s, *cu = ws.cur + k * s;
                add_penalty(tr, ws.th_try + (size_t)k * p, p, ll->l2);
                ws.logp_ok[k] = 0;
                /* Armijo; or, once the predicted gain is below the rounding
                 * noise of a sum over the data, any step that is no worse
                 * than that noise (halving there only wastes passes). */
                double noise = 1e-11 * (1.0 + fabs(cu[0]));
                int ok = tr[0] >= cu[0] + 1e-4 * ws.alpha[k] * ws.slope[k] ||
                         (ws.alpha[k] * ws.slope[k] <= noise && tr[0] >= cu[0] - noise);
                if (ok && isfinite(tr[0])) {
                    memcpy(cu, tr, (J.want_hess ? s : 1 + (size_t)p) * sizeof(double));
                    if (J.want_hess) hess_cache_sync(ll, cu, k, 1);
                    double gnew = grad_norm(cu, p);
                    if (gnew > 0.1 * ws.gprev[k]) refresh = 1;
                    ws.gprev[k] = gnew;
                    memcpy(ll->theta + (size_t)k * p, ws.th_try + (size_t)k * p, (size_t)p * sizeof(double));
                    ws.trying[k] = 0;
                    ws.logp_ok[k] = 1;
                } else {
                    ws.alpha[k] *= 0.5;
                }
            }
        }
        for (int k = 0; k < K; k++)
            if (ws.trying[k]) { /* no acceptable step: the type is as good as it gets */
                ws.trying[k] = 0;
                ws.done[k] = 1;
                all_converged = 0;
            }
        J.want_hess = refresh;
    }
    for (int k = 0; k < K; k++) {
        if (!active[k]) continue;
        if (!grad_converged(ws.cur + k * s, p, ll->gtol, ws.wsum[k])) all_converged = 0;
        if (!isfinite(ws.cur[k * s])) rc = EMDPO_ERR_NUMERIC;
    }
    if (logp) { /* refresh types whose last evaluation was a rejected trial */
        int stale = 0;
        for (int k = 0; k < K; k++) {
            ws.trying[k] = active[k] && !ws.logp_ok[k];
            stale |= ws.trying[k];
        }
        if (stale) {
            J.theta = ll->theta;
            J.want_grad = 0;
            if ((rc = eval_all(&J, ws.trial))) goto out;
        }
    }
    if (info) {
        info->iterations = iter;
        info->converged = all_converged;
        info->objective = 0.0;
        for (int k = 0; k < K; k++)
            if (active[k]) info->objective += ws.cur[k * s];
    }
out:
    emdpo_free(buf, ws_doubles(K, p, n_blocks) * sizeof(double));
    emdpo_free(flags, 3 * (size_t)K);
    return rc;
}

static void loglinear_free(emdpo_policy *pol) {
    emdpo_loglinear *ll = (emdpo_loglinear *)pol;
    if (!ll) return;
    emdpo_free(ll->theta, (size_t)pol->K * ll->p * sizeof(double));
    emdpo_free(ll->hess_cache, (size_t)pol->K * ll->p * ll->p * sizeof(double));
    emdpo_free(ll->hess_ok, (size_t)pol->K);
    emdpo_free(ll, sizeof *ll);
}

int emdpo_loglinear_create(int K, int p, emdpo_policy **out) {
    *out = NULL;
    if (K < 1 || p < 1) return EMDPO_ERR_INVALID_ARG;
    emdpo_loglinear *ll = emdpo_calloc(1, sizeof *ll);
    if (!ll) return EMDPO_ERR_NOMEM;
    ll->base.ops = &loglinear_ops;
    ll->base.K = K;
    ll->p = p;
    ll->theta = emdpo_calloc((size_t)K * p, sizeof(double));
    ll->hess_cache = emdpo_calloc((size_t)K * p * p, sizeof(double));
    ll->hess_ok = emdpo_calloc((size_t)K, 1);
    if (!ll->theta || !ll->hess_cache || !ll->hess_ok) {
        loglinear_free(&ll->base);
        return EMDPO_ERR_NOMEM;
    }
    ll->beta = 1.0;
    ll->l2 = 0.0;
    ll->gtol = 1e-8;
    ll->max_newton = 100;
    *out = &ll->base;
    return EMDPO_OK;
}

static int loglinear_clone(const emdpo_policy *pol, emdpo_policy **out) {
    const emdpo_loglinear *src = (const emdpo_loglinear *)pol;
    int rc = emdpo_loglinear_create(pol->K, src->p, out);
    if (rc) return rc;
    emdpo_loglinear *dst = (emdpo_loglinear *)*out;
    dst->base.ops = src->base.ops; /* keeps instrumentation wrappers in place */
    dst->beta = src->beta;
    dst->l2 = src->l2;
    dst->gtol = src->gtol;
    dst->max_newton = src->max_newton;
    memcpy(dst->theta, src->theta, (size_t)pol->K * src->p * sizeof(double));
    return EMDPO_OK;
}

static int loglinear_copy_type(emdpo_policy *dst, int k, const emdpo_policy *src, int src_k) {
    if (dst->ops != &loglinear_ops || src->ops != &loglinear_ops) return EMDPO_ERR_INVALID_ARG;
    emdpo_loglinear *a = (emdpo_loglinear *)dst;
    const emdpo_loglinear *b = (const emdpo_loglinear *)src;
    if (a->p != b->p || k < 0 || k >= dst->K || src_k < 0 || src_k >= src->K) return EMDPO_ERR_INVALID_ARG;
    memcpy(a->theta + (size_t)k * a->p, b->theta + (size_t)src_k * b->p, (size_t)a->p * sizeof(double));
    a->hess_ok[k] = 0;
    return EMDPO_OK;
}

static const emdpo_policy_ops loglinear_ops = {
    "loglinear", loglinear_decision_logp, loglinear_mstep, loglinear_clone, loglinear_copy_type, loglinear_free,
};
