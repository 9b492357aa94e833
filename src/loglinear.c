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

static int max_items(const emdpo_data *d) {
    int m = 2;
    for (int64_t j = 0; j < d->n_dec; j++) {
        int n = emdpo_dec_n_items(d, j);
        if (n > m) m = n;
    }
    return m;
}

typedef struct eval_job {
    const emdpo_data *d;
    const double *w;            /* (n_annot, K) or NULL: weight 1 */
    const double *theta;        /* (K, p) parameters to evaluate at */
    const unsigned char *mask;  /* (K) types to evaluate */
    int K, p, nmax, want_grad;
    double *logp;               /* (n_dec, K) or NULL */
    double *part;               /* (n_blocks, K, stride) */
} eval_job;

/* One decision for one type: returns log P and, when g != NULL, adds
 * wt * gradient into g (p) and wt * Hessian into h (upper triangle). */
static double decision_eval(const double *x, int n, int stages, int p, const double *th, double wt,
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
        for (int q = t; q < n; q++) {
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

/* exp(x) for x <= 0, accurate to about 2 ulp and written so loops over it
 * vectorise (the C library's exp is the bottleneck of a pass otherwise).
 * Arguments below -708 give 2^-1022 scale, close enough to 0 for
 * probabilities that are then normalised. */
static inline double exp_nonpositive(double x) {
    x = x < -708.0 ? -708.0 : x;
    /* Round to the nearest integer by the 1.5 * 2^52 trick: no libm call. */
    double k = (x * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;
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
    union {
        uint64_t u;
        double d;
    } scale = {(uint64_t)((int64_t)k + 1023) << 52};
    return p * scale.d;
}

/* Scratch of one thread for the all-types kernel. */
typedef struct kernel_scratch {
    double *u;    /* (K, nmax) utilities */
    double *e;    /* (K, nmax) probabilities */
    double *xx;   /* (nmax, p(p+1)/2) upper-triangular products x_a x_b */
    double *xbar; /* (K, p) expected features */
    double *wk;   /* (K) weights of the active types */
    int *ks;      /* (K) indices of the active types */
} kernel_scratch;

static size_t kernel_scratch_doubles(int K, int p, int nmax) {
    return 2 * (size_t)K * nmax + (size_t)nmax * p * p + (size_t)K * p + 2 * (size_t)K;
}

static void kernel_scratch_point(kernel_scratch *s, double *buf, int K, int p, int nmax) {
    s->u = buf;
    s->e = s->u + (size_t)K * nmax;
    s->xx = s->e + (size_t)K * nmax;
    s->xbar = s->xx + (size_t)nmax * p * p;
    s->wk = s->xbar + (size_t)K * p;
    s->ks = (int *)(s->wk + K); /* K ints fit in K doubles */
}

/* A top choice among n items for the na active types at once: one pass
 * over the items serves every type, and the products x_a x_b are shared.
 * The Hessian uses the uncentred form sum P x x^T - xbar xbar^T: it only
 * steers Newton's direction, and the gradient that decides convergence is
 * computed directly. */
static inline __attribute__((always_inline)) void
top_choice_impl(const double *x, int n, const int p, const double *theta, int na, kernel_scratch *s, double *part,
                size_t stride, double *logp_row) {
    int P2 = p * p;
    for (int c = 0; c < na; c++) {
        const double *th = theta + (size_t)s->ks[c] * p;
        double *u = s->u + (size_t)c * n;
        for (int q = 0; q < n; q++) {
            const double *xq = x + (size_t)q * p;
            double acc = 0.0;
            for (int a = 0; a < p; a++) acc += th[a] * xq[a];
            u[q] = acc;
        }
    }
    for (int c = 0; c < na; c++) {
        double *u = s->u + (size_t)c * n, *e = s->e + (size_t)c * n;
        double m = u[0];
        for (int q = 1; q < n; q++) m = u[q] > m ? u[q] : m;
        double z = 0.0;
        for (int q = 0; q < n; q++) z += e[q] = exp_nonpositive(u[q] - m);
        double lp = u[0] - m - log(z), inv = 1.0 / z, wt = s->wk[c];
        for (int q = 0; q < n; q++) e[q] *= inv;
        double *slot = part + (size_t)s->ks[c] * stride;
        slot[0] += wt * lp;
        if (logp_row) logp_row[s->ks[c]] = lp;
        double *xb = s->xbar + (size_t)c * p;
        for (int a = 0; a < p; a++) xb[a] = 0.0;
        for (int q = 0; q < n; q++)
            for (int a = 0; a < p; a++) xb[a] += e[q] * x[(size_t)q * p + a];
        for (int a = 0; a < p; a++) slot[1 + a] += wt * (x[a] - xb[a]);
    }
    for (int q = 0; q < n; q++) {
        const double *xq = x + (size_t)q * p;
        double *xx = s->xx + (size_t)q * P2;
        for (int a = 0; a < p; a++)
            for (int b = 0; b < p; b++) xx[a * p + b] = xq[a] * xq[b];
    }
    for (int c = 0; c < na; c++) {
        double *h = part + (size_t)s->ks[c] * stride + 1 + p;
        const double *e = s->e + (size_t)c * n, *xb = s->xbar + (size_t)c * p;
        double wt = s->wk[c];
        for (int q = 0; q < n; q++) {
            double cq = wt * e[q];
            const double *xx = s->xx + (size_t)q * P2;
            for (int t = 0; t < P2; t++) h[t] -= cq * xx[t];
        }
        for (int a = 0; a < p; a++)
            for (int b = 0; b < p; b++) h[a * p + b] += wt * xb[a] * xb[b];
    }
}

/* The kernel compiled for each small feature count, so its loops unroll
 * and vectorise; larger p takes the generic body. */
#define TOP_CHOICE_FOR(P)                                                                                  \
    static void top_choice_p##P(const double *x, int n, const double *theta, int na, kernel_scratch *s,   \
                                double *part, size_t stride, double *logp_row) {                          \
        top_choice_impl(x, n, P, theta, na, s, part, stride, logp_row);                                   \
    }
TOP_CHOICE_FOR(1)
TOP_CHOICE_FOR(2)
TOP_CHOICE_FOR(3)
TOP_CHOICE_FOR(4)
TOP_CHOICE_FOR(5)
TOP_CHOICE_FOR(6)
TOP_CHOICE_FOR(7)
TOP_CHOICE_FOR(8)

static void top_choice_generic(const double *x, int n, int p, const double *theta, int na, kernel_scratch *s,
                               double *part, size_t stride, double *logp_row) {
    top_choice_impl(x, n, p, theta, na, s, part, stride, logp_row);
}

static void top_choice_all_types(const double *x, int n, int p, const double *theta, int na, kernel_scratch *s,
                                 double *part, size_t stride, double *logp_row) {
    switch (p) {
    case 1: top_choice_p1(x, n, theta, na, s, part, stride, logp_row); break;
    case 2: top_choice_p2(x, n, theta, na, s, part, stride, logp_row); break;
    case 3: top_choice_p3(x, n, theta, na, s, part, stride, logp_row); break;
    case 4: top_choice_p4(x, n, theta, na, s, part, stride, logp_row); break;
    case 5: top_choice_p5(x, n, theta, na, s, part, stride, logp_row); break;
    case 6: top_choice_p6(x, n, theta, na, s, part, stride, logp_row); break;
    case 7: top_choice_p7(x, n, theta, na, s, part, stride, logp_row); break;
    case 8: top_choice_p8(x, n, theta, na, s, part, stride, logp_row); break;
    default: top_choice_generic(x, n, p, theta, na, s, part, stride, logp_row); break;
    }
}

static void eval_block(const eval_job *J, int64_t blk, double *u, double *prob, double *xbar, kernel_scratch *ks) {
    const emdpo_data *d = J->d;
    int K = J->K, p = J->p;
    size_t stride = type_stride(p);
    double *part = J->part + (size_t)blk * K * stride;
    memset(part, 0, (size_t)K * stride * sizeof(double));
    int64_t i0 = blk * LL_BLOCK, i1 = i0 + LL_BLOCK < d->n_annot ? i0 + LL_BLOCK : d->n_annot;
    for (int64_t i = i0; i < i1; i++) {
        /* Types evaluated for this annotator with gradients; the others only
         * need log-probabilities, if anything. */
        int na = 0;
        for (int k = 0; k < K; k++) {
            double wt = J->w ? J->w[i * K + k] : 1.0;
            if (J->mask[k] && J->want_grad && wt != 0.0) {
                ks->ks[na] = k;
                ks->wk[na++] = wt;
            }
        }
        for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) {
            int64_t it = d->dec_item[j];
            int n = (int)(d->dec_item[j + 1] - it);
            const double *x = d->x + (size_t)it * p;
            int fast = na > 0 && d->dec_stages[j] == 1;
            if (fast) top_choice_all_types(x, n, p, J->theta, na, ks, part, stride, J->logp ? J->logp + j * K : NULL);
            for (int k = 0, c = 0; k < K; k++) {
                if (!J->mask[k]) continue;
                int graded = c < na && ks->ks[c] == k;
                c += graded;
                if (fast && graded) continue;
                double wt = J->w ? J->w[i * K + k] : 1.0;
                if (!graded && wt == 0.0 && !J->logp) continue;
                double *slot = part + (size_t)k * stride;
                double *g = graded ? slot + 1 : NULL;
                double lp = decision_eval(x, n, d->dec_stages[j], p, J->theta + (size_t)k * p, wt, u, prob, xbar, g,
                                          g ? g + p : NULL);
                slot[0] += wt * lp;
                if (J->logp) J->logp[j * K + k] = lp;
            }
        }
    }
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
    size_t scratch_n = 2 * (size_t)J->nmax + (size_t)J->p + kernel_scratch_doubles(J->K, J->p, J->nmax);
    double *scratch = emdpo_malloc((size_t)n_threads * scratch_n * sizeof(double));
    if (!scratch) return EMDPO_ERR_NOMEM;
#pragma omp parallel num_threads(n_threads) if ((double)J->d->n_items * J->K >= EMDPO_PAR_MIN_WORK)
    {
        double *mine = scratch + (size_t)emdpo_thread_num() * scratch_n;
        kernel_scratch ks;
        kernel_scratch_point(&ks, mine + 2 * J->nmax + J->p, J->K, J->p, J->nmax);
#pragma omp for schedule(dynamic, 4)
        for (int64_t b = 0; b < n_blocks; b++) eval_block(J, b, mine, mine + J->nmax, mine + 2 * J->nmax, &ks);
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
        eval_job J = {d, w, ll->theta, mask, K, p, max_items(d), grad || hess, NULL, part};
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
        eval_job J = {d, NULL, ll->theta, mask, K, p, max_items(d), 0, logp, part};
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
    unsigned char *done, *trying, *logp_ok; /* (K) */
} newton_ws;

static size_t ws_doubles(int K, int p, int64_t n_blocks) {
    size_t s = type_stride(p);
    return 2 * (size_t)K * s + 2 * (size_t)K * p + (size_t)p * p + (size_t)n_blocks * K * s + 3 * (size_t)K;
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
    ws->wsum = q;
    ws->done = *flags;
    ws->trying = *flags + K;
    ws->logp_ok = *flags + 2 * K;
    return EMDPO_OK;
}

static int grad_converged(const double *slot, int p, double gtol, double wsum) {
    double gmax = 0.0;
    for (int a = 0; a < p; a++) gmax = fmax(gmax, fabs(slot[1 + a]));
    return gmax <= gtol * (1.0 + wsum);
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
    eval_job J = {d, w, ll->theta, ws.done, K, p, max_items(d), 1, logp, ws.part};
    for (int k = 0; k < K; k++) ws.trying[k] = !ws.done[k];
    J.mask = ws.trying;
    if ((rc = eval_all(&J, ws.cur))) goto out;
    for (int k = 0; k < K; k++) {
        if (ws.done[k]) continue;
        add_penalty(ws.cur + k * s, ll->theta + (size_t)k * p, p, ll->l2);
        ws.logp_ok[k] = 1;
    }

    int iter = 0, all_converged = 1;
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
                    memcpy(cu, tr, s * sizeof(double));
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
    emdpo_free(ll, sizeof *ll);
}

int emdpo_loglinear_create(int K, int p, emdpo_policy **out) {
    *out = NULL;
    if (K < 1 || p < 1) return EMDPO_ERR_INVALID_ARG;
    emdpo_loglinear *ll = emdpo_calloc(1, sizeof *ll);
    if (!ll) return EMDPO_ERR_NOMEM;
    ll->theta = emdpo_calloc((size_t)K * p, sizeof(double));
    if (!ll->theta) {
        emdpo_free(ll, sizeof *ll);
        return EMDPO_ERR_NOMEM;
    }
    ll->base.ops = &loglinear_ops;
    ll->base.K = K;
    ll->p = p;
    ll->beta = 1.0;
    ll->l2 = 0.0;
    ll->gtol = 1e-10;
    ll->max_newton = 100;
    *out = &ll->base;
    return EMDPO_OK;
}

static int loglinear_clone(const emdpo_policy *pol, emdpo_policy **out) {
    const emdpo_loglinear *src = (const emdpo_loglinear *)pol;
    int rc = emdpo_loglinear_create(pol->K, src->p, out);
    if (rc) return rc;
    emdpo_loglinear *dst = (emdpo_loglinear *)*out;
    double *th = dst->theta;
    *dst = *src;
    dst->theta = th;
    memcpy(th, src->theta, (size_t)pol->K * src->p * sizeof(double));
    return EMDPO_OK;
}

static int loglinear_copy_type(emdpo_policy *dst, int k, const emdpo_policy *src, int src_k) {
    if (dst->ops != &loglinear_ops || src->ops != &loglinear_ops) return EMDPO_ERR_INVALID_ARG;
    emdpo_loglinear *a = (emdpo_loglinear *)dst;
    const emdpo_loglinear *b = (const emdpo_loglinear *)src;
    if (a->p != b->p || k < 0 || k >= dst->K || src_k < 0 || src_k >= src->K) return EMDPO_ERR_INVALID_ARG;
    memcpy(a->theta + (size_t)k * a->p, b->theta + (size_t)src_k * b->p, (size_t)a->p * sizeof(double));
    return EMDPO_OK;
}

static const emdpo_policy_ops loglinear_ops = {
    "loglinear", loglinear_decision_logp, loglinear_mstep, loglinear_clone, loglinear_copy_type, loglinear_free,
};
