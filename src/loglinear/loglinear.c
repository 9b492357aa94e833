#include "loglinear/loglinear.h"

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/dist.h"
#include "base/linalg.h"
#include "base/threads.h"
#include "base/vmath.h"
#include "core/choice.h"

/* Annotators per block. Blocks are fixed runs of annotators, each summed in
 * a fixed order into its partials; the partials of all blocks are then
 * added exactly (base/dist.h's emdpo_dist_sum_rows), so that results are
 * bitwise identical for any number of threads and of processes. */
#define LL_BLOCK 512
/* A process's share of the annotators (data/data.h) starts at a multiple
 * of EMDPO_DIST_ALIGN: its blocks are the whole data's. */
_Static_assert(EMDPO_DIST_ALIGN % LL_BLOCK == 0, "a process's share is whole blocks");

/* Annotators spanned by a block of a pass over every every-th annotator:
 * LL_BLOCK of them, as far as a block stays within EMDPO_DIST_ALIGN. */
static int64_t block_span(int every) {
    int64_t span = (int64_t)LL_BLOCK * every;
    return span < EMDPO_DIST_ALIGN ? span : EMDPO_DIST_ALIGN;
}

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
    int every;                  /* only annotators i with i % every == 0 (a subsample) */
    double *logp;               /* (n_dec, K) or NULL */
    double *annot;              /* (K, n_annot, 1 + p) or NULL: each annotator's unweighted
                                   log-likelihood and gradient per masked type (needs want_grad) */
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

/* emdpo_exp_bounded's upper limit: exp of it, times 16 items, is still finite. */
#define EXP_MAX 700.0

/* Top-choice decisions are evaluated LANES at a time, transposed so that
 * every inner loop runs across decisions: that is the direction the
 * compiler can vectorise (items and features are too few), and LANES
 * independent decisions hide the latency of each one's long chain of
 * dependent operations. Items enter as differences z_q = x_q - x_0 from the
 * chosen item: item 0's utility drops out, one item fewer is multiplied,
 * and the gradient is -E[z].
 *
 * Each lane works through a chunk of one annotator's consecutive
 * decisions, so that the annotator's own sums (the annotator cache) add up
 * within the lane and leave it once per chunk. */
#define LANES 32
/* Decisions with more items than this take the one-at-a-time path. */
#define LANE_NMAX 16
/* Decisions per chunk: annotators with many of them fill several lanes. */
#define CHUNK 32

/* Scratch of one thread for the lane kernel. */
typedef struct lane_scratch {
    double *Z;    /* (LANE_NMAX - 1, p, LANES) item differences, transposed */
    double *live; /* (LANE_NMAX - 1, LANES) 1, or 0 for items a lane's decision lacks */
    double *zb;   /* (p, LANES) E[z] */
    double *acc;  /* (K, stride, LANES) weighted sums of f, grad, Hessian (lower triangle) */
    double *own;  /* (K, 1 + p, LANES) each lane's chunk's log-likelihood and gradient, unweighted:
                     the chunk's weight is one number, applied when the chunk is done */
    double *wl;   /* (K, LANES) weight of each lane's annotator per type */
    const double *xs[LANES];
    int64_t dec[LANES];      /* each lane's current decision */
    int nl[LANES];           /* its items; 0 for an idle lane */
    int64_t ann[LANES], j[LANES], jend[LANES]; /* each lane's chunk; ann -1 when it has none */
    unsigned char fresh[LANES]; /* the chunk is its annotator's only contribution to J->annot */
    int64_t feed_i, feed_j, feed_end; /* the next chunk starts at decision feed_j of annotator feed_i */
} lane_scratch;

static size_t lane_scratch_doubles(int K, int p) {
    return (size_t)LANES * ((size_t)LANE_NMAX * (p + 1) + (size_t)K * (type_stride(p) + 2 + p));
}

static void lane_scratch_point(lane_scratch *s, double *buf, int K, int p) {
    s->Z = buf;
    s->live = s->Z + (size_t)(LANE_NMAX - 1) * p * LANES;
    s->zb = s->live + (size_t)(LANE_NMAX - 1) * LANES;
    s->acc = s->zb + (size_t)p * LANES;
    s->own = s->acc + (size_t)K * type_stride(p) * LANES;
    s->wl = s->own + (size_t)K * (1 + p) * LANES;
    memset(s->acc, 0, (size_t)K * type_stride(p) * LANES * sizeof(double));
    memset(s->own, 0, (size_t)K * (1 + p) * LANES * sizeof(double));
    for (int q = 0; q < (LANE_NMAX - 1) * LANES; q++) s->live[q] = 1.0;
    for (int d = 0; d < LANES; d++) s->xs[d] = NULL;
}

/* One type over the lanes' current decisions (n items at most): log P
 * into lp, value and gradient into own, and the weighted Hessian (lower
 * triangle) into acc. Items a decision lacks (ragged) have zero
 * differences and probability exactly 0; idle lanes lack all, so they add
 * exact zeros. */
static inline __attribute__((always_inline)) void lanes_type(const lane_scratch *s, const int p, int n, int ragged,
                                                             const eval_job *J, const double *restrict th,
                                                             const double *restrict w, double *restrict acc,
                                                             double *restrict own, double *restrict lp) {
    const int n1 = n - 1, L = LANES;
    const double *restrict Z = s->Z;
    double *restrict zb = s->zb;
    double e[(LANE_NMAX - 1) * LANES], m[LANES], z[LANES];
    for (int d = 0; d < L; d++) m[d] = 0.0; /* item 0's difference */
    for (int q = 0; q < n1; q++) {
        double *restrict v = e + q * L;
        for (int d = 0; d < L; d++) v[d] = th[0] * Z[q * p * L + d];
        for (int a = 1; a < p; a++)
            for (int d = 0; d < L; d++) v[d] = EMDPO_MADD(th[a], Z[(q * p + a) * L + d], v[d]);
        for (int d = 0; d < L; d++) m[d] = v[d] > m[d] ? v[d] : m[d];
    }
    /* z = sum_q exp(v_q - shift), item 0's term being exp(-shift). Unshifted,
     * that term is 1 and costs no exp; the shift by the largest utility is
     * needed only where an exp could overflow. */
    int big = 0;
    for (int d = 0; d < L; d++) big |= m[d] > EXP_MAX;
    if (big)
        for (int d = 0; d < L; d++) z[d] = emdpo_exp_bounded(-m[d]);
    else
        for (int d = 0; d < L; d++) z[d] = 1.0, m[d] = 0.0;
    for (int q = 0; q < n1; q++) {
        for (int d = 0; d < L; d++) e[q * L + d] = emdpo_exp_bounded(e[q * L + d] - m[d]);
        if (ragged)
            for (int d = 0; d < L; d++) e[q * L + d] *= s->live[q * L + d];
        for (int d = 0; d < L; d++) z[d] += e[q * L + d];
    }
    for (int d = 0; d < L; d++) {
        lp[d] = -m[d] - emdpo_log_ge1(z[d]);
        own[d] += lp[d];
    }
    if (!J->want_grad) return;
    for (int d = 0; d < L; d++) z[d] = 1.0 / z[d];
    for (int q = 0; q < n1; q++)
        for (int d = 0; d < L; d++) e[q * L + d] *= z[d]; /* probabilities */
    for (int a = 0; a < p; a++) {
        for (int d = 0; d < L; d++) zb[a * L + d] = e[d] * Z[a * L + d];
        for (int q = 1; q < n1; q++)
            for (int d = 0; d < L; d++) zb[a * L + d] = EMDPO_MADD(e[q * L + d], Z[(q * p + a) * L + d], zb[a * L + d]);
        for (int d = 0; d < L; d++) own[(1 + a) * L + d] -= zb[a * L + d];
    }
    if (!J->want_hess) return;
    /* H = -(sum_q P_q z_q z_q^T - E[z] E[z]^T), lower triangle. */
    double *restrict h = acc + (size_t)(1 + p) * L;
    for (int q = 0; q < n1; q++)
        for (int a = 0; a < p; a++) {
            double t[LANES];
            for (int d = 0; d < L; d++) t[d] = w[d] * e[q * L + d] * Z[(q * p + a) * L + d];
            for (int b = 0; b <= a; b++)
                for (int d = 0; d < L; d++) h[(a * p + b) * L + d] = EMDPO_MADD(-t[d], Z[(q * p + b) * L + d], h[(a * p + b) * L + d]);
        }
    for (int a = 0; a < p; a++) {
        double t[LANES];
        for (int d = 0; d < L; d++) t[d] = w[d] * zb[a * L + d];
        for (int b = 0; b <= a; b++)
            for (int d = 0; d < L; d++) h[(a * p + b) * L + d] = EMDPO_MADD(t[d], zb[b * L + d], h[(a * p + b) * L + d]);
    }
}

/* Evaluates the lanes' current decisions (n items at most) for every
 * masked type. */
static inline __attribute__((always_inline)) void lanes_step_impl(lane_scratch *s, int n, const int p,
                                                                  const eval_job *J) {
    const int n1 = n - 1, L = LANES, K = J->K;
    const size_t stride = type_stride(p);
    double *restrict Z = s->Z;
    int ragged = 0;
    for (int d = 0; d < L; d++) {
        const double *x = s->xs[d];
        int m1 = s->nl[d] - 1; /* the lane's own differences; the rest are padding */
        for (int q = 0; q < m1; q++)
            for (int a = 0; a < p; a++) Z[(q * p + a) * L + d] = x[(q + 1) * p + a] - x[a];
        for (int q = m1 < 0 ? 0 : m1; q < n1; q++) {
            for (int a = 0; a < p; a++) Z[(q * p + a) * L + d] = 0.0;
            s->live[q * L + d] = 0.0;
            ragged = 1;
        }
    }
    for (int k = 0; k < K; k++) {
        if (!J->mask[k]) continue;
        double lp[LANES];
        lanes_type(s, p, n, ragged, J, J->theta + (size_t)k * p, s->wl + (size_t)k * L,
                   s->acc + (size_t)k * stride * L, s->own + (size_t)k * (1 + p) * L, lp);
        if (J->logp)
            for (int d = 0; d < L; d++)
                if (s->nl[d]) J->logp[s->dec[d] * K + k] = lp[d];
    }
    if (ragged)
        for (int q = 0; q < n1 * L; q++) s->live[q] = 1.0;
}

#define LANES_STEP_FOR(P)                                                                                    \
    static void lanes_step_p##P(lane_scratch *s, int n, const eval_job *J) { lanes_step_impl(s, n, P, J); }
LANES_STEP_FOR(1)
LANES_STEP_FOR(2)
LANES_STEP_FOR(3)
LANES_STEP_FOR(4)
LANES_STEP_FOR(5)
LANES_STEP_FOR(6)
LANES_STEP_FOR(7)
LANES_STEP_FOR(8)

/* The kernel compiled for each small feature count, so its loops unroll;
 * larger p takes the generic body. */
static void lanes_step(lane_scratch *s, int n, const eval_job *J) {
    switch (J->p) {
    case 1: lanes_step_p1(s, n, J); break;
    case 2: lanes_step_p2(s, n, J); break;
    case 3: lanes_step_p3(s, n, J); break;
    case 4: lanes_step_p4(s, n, J); break;
    case 5: lanes_step_p5(s, n, J); break;
    case 6: lanes_step_p6(s, n, J); break;
    case 7: lanes_step_p7(s, n, J); break;
    case 8: lanes_step_p8(s, n, J); break;
    default: lanes_step_impl(s, n, J->p, J); break;
    }
}

/* Scratch of one thread for decisions outside the lanes. */
typedef struct one_scratch {
    double *u, *prob, *xbar; /* (nmax), (nmax), (p) */
    double *g, *h;           /* (p), (p, p): one decision's unweighted derivatives */
} one_scratch;

static size_t one_scratch_doubles(int nmax, int p) { return 2 * (size_t)nmax + 2 * (size_t)p + (size_t)p * p; }

static void one_scratch_point(one_scratch *o, double *buf, int nmax, int p) {
    o->u = buf;
    o->prob = o->u + nmax;
    o->xbar = o->prob + nmax;
    o->g = o->xbar + p;
    o->h = o->g + p;
}

/* Annotator i's row of type k in J->annot. */
static double *annot_row(const eval_job *J, int k, int64_t i) {
    return J->annot + ((size_t)k * J->d->n_annot + i) * (1 + J->p);
}

static void annot_zero(const eval_job *J, int64_t i) {
    for (int k = 0; k < J->K; k++)
        if (J->mask[k]) memset(annot_row(J, k, i), 0, (1 + (size_t)J->p) * sizeof(double));
}

/* A ranking, or a decision with more than LANE_NMAX items, one type at a
 * time. */
static void eval_one(const eval_job *J, int64_t i, int64_t j, double *part, one_scratch *o) {
    const emdpo_data *d = J->d;
    int K = J->K, p = J->p, stages = d->dec_stages[j];
    size_t stride = type_stride(p);
    int n = emdpo_dec_n_items(d, j);
    const double *x = d->x + (size_t)d->dec_item[j] * p;
    for (int k = 0; k < K; k++) {
        if (!J->mask[k]) continue;
        const double *th = J->theta + (size_t)k * p;
        double wt = J->w ? J->w[i * K + k] : 1.0;
        double *slot = part + (size_t)k * stride;
        if (!J->annot) {
            if (wt == 0.0 && !J->logp) continue;
            double *g = J->want_grad && wt != 0.0 ? slot + 1 : NULL;
            double lp = emdpo_loglinear_decision_derivs(x, n, stages, p, th, wt, o->u, o->prob, o->xbar, g,
                                                        g && J->want_hess ? g + p : NULL);
            slot[0] += wt * lp;
            if (J->logp) J->logp[j * K + k] = lp;
            continue;
        }
        /* The annotator's row needs the unweighted derivatives. */
        memset(o->g, 0, (size_t)p * sizeof(double));
        if (J->want_hess) memset(o->h, 0, (size_t)p * p * sizeof(double));
        double lp = emdpo_loglinear_decision_derivs(x, n, stages, p, th, 1.0, o->u, o->prob, o->xbar, o->g,
                                                    J->want_hess ? o->h : NULL);
        slot[0] += wt * lp;
        for (int a = 0; a < p; a++) slot[1 + a] += wt * o->g[a];
        for (int q = 0; q < p * p && J->want_hess; q++) slot[1 + p + q] += wt * o->h[q];
        if (J->logp) J->logp[j * K + k] = lp;
        double *c = annot_row(J, k, i);
        c[0] += lp;
        for (int a = 0; a < p; a++) c[1 + a] += o->g[a];
    }
}

/* Lane d's chunk is done: its sums join the lane's weighted ones and its
 * annotator's row (and reset; an idle lane adds exact zeros). */
static void lane_retire(lane_scratch *s, const eval_job *J, int d) {
    int K = J->K, p = J->p, used = J->want_grad ? p : 0;
    size_t stride = type_stride(p);
    for (int k = 0; k < K; k++) {
        if (!J->mask[k]) continue;
        double *own = s->own + (size_t)k * (1 + p) * LANES, *acc = s->acc + (size_t)k * stride * LANES;
        double wt = s->wl[(size_t)k * LANES + d];
        for (int a = 0; a <= used; a++) acc[a * LANES + d] = EMDPO_MADD(wt, own[a * LANES + d], acc[a * LANES + d]);
        double *c = J->annot ? annot_row(J, k, s->ann[d]) : NULL;
        if (c && s->fresh[d])
            for (int a = 0; a <= used; a++) c[a] = own[a * LANES + d];
        else if (c)
            for (int a = 0; a <= used; a++) c[a] += own[a * LANES + d];
        for (int a = 0; a <= used; a++) own[a * LANES + d] = 0.0;
    }
    s->ann[d] = -1;
}

/* Gives lane d the block's next chunk; 0 when there is none. */
static int lane_take_chunk(lane_scratch *s, const eval_job *J, int64_t i1, int d) {
    const emdpo_data *dd = J->d;
    while (s->feed_i < i1 && s->feed_j == s->feed_end) {
        s->feed_i += J->every;
        if (s->feed_i >= i1) break;
        s->feed_j = dd->annot_dec[s->feed_i];
        s->feed_end = dd->annot_dec[s->feed_i + 1];
        if (s->feed_j == s->feed_end && J->annot) annot_zero(J, s->feed_i); /* no decisions */
    }
    if (s->feed_i >= i1) return 0;
    int64_t i = s->feed_i;
    int first = s->feed_j == dd->annot_dec[i];
    s->ann[d] = i;
    s->j[d] = s->feed_j;
    s->jend[d] = s->feed_j + CHUNK < s->feed_end ? s->feed_j + CHUNK : s->feed_end;
    s->feed_j = s->jend[d];
    /* An annotator split over chunks is summed into: its row starts at zero. */
    s->fresh[d] = (unsigned char)(first && s->jend[d] == s->feed_end);
    if (first && !s->fresh[d] && J->annot) annot_zero(J, i);
    for (int k = 0; k < J->K; k++) s->wl[(size_t)k * LANES + d] = J->w ? J->w[i * J->K + k] : 1.0;
    return 1;
}

/* Moves lane d to its next top-choice decision with at most LANE_NMAX
 * items, evaluating the others on the way; returns its item count, or 0
 * when the block has no more work for the lane. */
static int lane_next(lane_scratch *s, const eval_job *J, int64_t i1, int d, double *part, one_scratch *o) {
    const emdpo_data *dd = J->d;
    for (;;) {
        if (s->ann[d] < 0 && !lane_take_chunk(s, J, i1, d)) break;
        if (s->j[d] == s->jend[d]) {
            lane_retire(s, J, d);
            continue;
        }
        int64_t j = s->j[d]++;
        int n = emdpo_dec_n_items(dd, j);
        if (dd->dec_stages[j] != 1 || n > LANE_NMAX) {
            if (s->fresh[d] && J->annot) annot_zero(J, s->ann[d]);
            s->fresh[d] = 0;
            eval_one(J, s->ann[d], j, part, o);
            continue;
        }
        s->xs[d] = dd->x + (size_t)dd->dec_item[j] * J->p;
        s->dec[d] = j;
        return n;
    }
    for (int k = 0; k < J->K; k++) s->wl[(size_t)k * LANES + d] = 0.0;
    return 0;
}

static void eval_block(const eval_job *J, int64_t blk, one_scratch *o, lane_scratch *ls) {
    const emdpo_data *d = J->d;
    int K = J->K, p = J->p;
    size_t stride = type_stride(p);
    double *part = J->part + (size_t)blk * K * stride;
    memset(part, 0, (size_t)K * stride * sizeof(double));
    /* A subsample's block spans up to `every` blocks, so that it too has
     * annotators to fill the lanes with. */
    int64_t span = block_span(J->every);
    int64_t i0 = blk * span, i1 = i0 + span < d->n_annot ? i0 + span : d->n_annot;
    ls->feed_i = i0 - J->every; /* lane_take_chunk moves on to i0 */
    ls->feed_j = ls->feed_end = 0;
    for (int l = 0; l < LANES; l++) ls->ann[l] = -1;
    for (;;) {
        int n = 0;
        for (int l = 0; l < LANES; l++) {
            ls->nl[l] = lane_next(ls, J, i1, l, part, o);
            n = ls->nl[l] > n ? ls->nl[l] : n;
        }
        if (n == 0) break;
        lanes_step(ls, n, J);
    }
    /* Lane sums join the block's partials in a fixed order, and the lanes
     * start the next block from zero. They fill the Hessian's lower
     * triangle only. */
    size_t used = J->want_hess ? stride : J->want_grad ? 1 + (size_t)p : 1;
    for (int k = 0; k < K; k++) {
        if (!J->mask[k]) continue;
        double *acc = ls->acc + (size_t)k * stride * LANES, *slot = part + (size_t)k * stride;
        for (size_t t = 0; t < used; t++) {
            size_t src = t;
            if (t > (size_t)p) { /* Hessian entry (a, b) is held at (max, min) */
                size_t a = (t - 1 - p) / p, b = (t - 1 - p) % p;
                if (b > a) src = 1 + p + b * p + a;
            }
            double sum = 0.0;
            for (int q = 0; q < LANES; q++) sum += acc[src * LANES + q];
            slot[t] += sum;
        }
        for (size_t t = 0; t < used; t++)
            for (int q = 0; q < LANES; q++) acc[t * LANES + q] = 0.0;
    }
}

/* Evaluates every masked type; sums of f, grad and Hessian land in
 * out (K, stride), added in block order. */
static int eval_all(const eval_job *J, double *out) {
    int64_t span = block_span(J->every), n_blocks = (J->d->n_annot + span - 1) / span;
    size_t stride = type_stride(J->p);
    /* Scratch for every thread is allocated up front: the allocation hook
     * need not be thread-safe, and a failure inside the parallel region
     * could not leave the work-sharing loop cleanly. */
    int n_threads = emdpo_max_threads();
    size_t one_n = one_scratch_doubles(J->nmax, J->p);
    size_t scratch_n = one_n + lane_scratch_doubles(J->K, J->p);
    double *scratch = emdpo_malloc((size_t)n_threads * scratch_n * sizeof(double));
    if (!scratch) return EMDPO_ERR_NOMEM;
#pragma omp parallel num_threads(n_threads) if ((double)J->d->n_items * J->K / J->every >= EMDPO_PAR_MIN_WORK)
    {
        double *mine = scratch + (size_t)emdpo_thread_num() * scratch_n;
        one_scratch o;
        one_scratch_point(&o, mine, J->nmax, J->p);
        lane_scratch ls;
        lane_scratch_point(&ls, mine + one_n, J->K, J->p);
#pragma omp for schedule(dynamic, 4)
        for (int64_t b = 0; b < n_blocks; b++) eval_block(J, b, &o, &ls);
    }
    emdpo_free(scratch, (size_t)n_threads * scratch_n * sizeof(double));
    return emdpo_dist_sum_rows(J->part, n_blocks, (size_t)J->K * stride, J->d->shard, out);
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
        eval_job J = {d, w, ll->theta, mask, K, p, emdpo_data_max_items(d), grad || hess, hess != NULL, 1, NULL, NULL, part};
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
    /* A process's share may hold no annotators: at least one block's room. */
    int64_t n_blocks = (d->n_annot + LL_BLOCK - 1) / LL_BLOCK, n_part = n_blocks ? n_blocks : 1;
    size_t stride = type_stride(p);
    unsigned char *mask = emdpo_malloc((size_t)K);
    double *part = emdpo_malloc((size_t)n_part * K * stride * sizeof(double));
    double *out = emdpo_malloc((size_t)K * stride * sizeof(double));
    int rc = EMDPO_ERR_NOMEM;
    if (mask && part && out) {
        memset(mask, 1, (size_t)K);
        eval_job J = {d, NULL, ll->theta, mask, K, p, emdpo_data_max_items(d), 0, 0, 1, logp, NULL, part};
        rc = eval_all(&J, out);
    }
    emdpo_free(mask, (size_t)K);
    emdpo_free(part, (size_t)n_part * K * stride * sizeof(double));
    emdpo_free(out, (size_t)K * stride * sizeof(double));
    return rc;
}

/* Newton workspace for all K types at once. */
typedef struct newton_ws {
    double *cur;     /* (K, stride) f, grad, Hessian at the accepted theta */
    double *trial;   /* (K, stride) at the trial theta */
    double *start;   /* (K, stride) the full data's at the M-step's first theta */
    double *th_try;  /* (K, p) */
    double *th_sub;  /* (K, p) the cold start's subsample optimum */
    double *delta;   /* (K, p) Newton direction */
    double *A;       /* (p, p) scratch for the damped system */
    double *vec;     /* (3, p) scratch for the secant update */
    double *part;    /* (n_blocks, K, stride) */
    double *alpha;   /* (K) step length */
    double *slope;   /* (K) grad . delta */
    double *wsum;    /* (K) total decision weight */
    double *wsub;    /* (K) the subsample's decision weight */
    double *gprev;   /* (K) gradient norm after the last accepted step */
    double *rate;    /* (K) the factor by which that step shrank it */
    unsigned char *done, *trying, *pending; /* (K) */
} newton_ws;

static size_t ws_doubles(int K, int p, int64_t n_blocks) {
    size_t s = type_stride(p);
    return 3 * (size_t)K * s + 3 * (size_t)K * p + (size_t)p * p + 3 * (size_t)p + (size_t)n_blocks * K * s +
           6 * (size_t)K;
}

static int ws_alloc(newton_ws *ws, int K, int p, int64_t n_blocks, double **buf, unsigned char **flags) {
    size_t s = type_stride(p);
    *buf = emdpo_malloc(ws_doubles(K, p, n_blocks) * sizeof(double));
    *flags = emdpo_calloc(3 * (size_t)K, 1);
    if (!*buf || !*flags) return EMDPO_ERR_NOMEM;
    double *q = *buf;
    ws->cur = q; q += (size_t)K * s;
    ws->trial = q; q += (size_t)K * s;
    ws->start = q; q += (size_t)K * s;
    ws->th_try = q; q += (size_t)K * p;
    ws->th_sub = q; q += (size_t)K * p;
    ws->delta = q; q += (size_t)K * p;
    ws->A = q; q += (size_t)p * p;
    ws->vec = q; q += 3 * (size_t)p;
    ws->part = q; q += (size_t)n_blocks * K * s;
    ws->alpha = q; q += K;
    ws->slope = q; q += K;
    ws->wsum = q; q += K;
    ws->wsub = q; q += K;
    ws->gprev = q; q += K;
    ws->rate = q;
    ws->done = *flags;
    ws->trying = *flags + K;
    ws->pending = *flags + 2 * K;
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

/* The annotator cache (see loglinear.h) holds type k's rows for theta_k
 * on data d. */
static int annot_valid(const emdpo_loglinear *ll, const emdpo_data *d, int k) {
    int p = ll->p;
    return ll->annot_data == d && ll->annot_n == d->n_annot && ll->annot_x == d->x && ll->annot_ok[k] &&
           memcmp(ll->annot_theta + (size_t)k * p, ll->theta + (size_t)k * p, (size_t)p * sizeof(double)) == 0;
}

/* Makes the annotator cache hold n_annot rows for d, every type invalid
 * when it is (re)bound. */
static int annot_bind(emdpo_loglinear *ll, const emdpo_data *d) {
    int K = ll->base.K, p = ll->p;
    if (ll->annot_data == d && ll->annot_n == d->n_annot && ll->annot_x == d->x) return EMDPO_OK;
    size_t row = (size_t)K * (1 + p) * sizeof(double);
    if (!ll->annot_cache || ll->annot_n != d->n_annot) {
        emdpo_free(ll->annot_cache, (size_t)(ll->annot_n ? ll->annot_n : 1) * row);
        ll->annot_n = 0;
        ll->annot_data = NULL;
        /* One row at least: a share with no annotators (data/data.h) still
         * takes the passes of the others, cache and all. */
        ll->annot_cache = emdpo_malloc((size_t)(d->n_annot ? d->n_annot : 1) * row);
        if (!ll->annot_cache) return EMDPO_ERR_NOMEM;
        ll->annot_n = d->n_annot;
    }
    memset(ll->annot_ok, 0, (size_t)K);
    ll->annot_data = d;
    ll->annot_x = d->x;
    return EMDPO_OK;
}

/* A pass with J->annot rewrites the masked types' rows: they are invalid
 * while it runs and hold its theta once it has succeeded. */
static void annot_mark(emdpo_loglinear *ll, const unsigned char *mask, const double *theta, int valid) {
    int p = ll->p;
    for (int k = 0; k < ll->base.K; k++) {
        if (!mask[k]) continue;
        ll->annot_ok[k] = (unsigned char)valid;
        if (valid) memcpy(ll->annot_theta + (size_t)k * p, theta + (size_t)k * p, (size_t)p * sizeof(double));
    }
}

/* Weighted value and gradient of the masked types from the annotator
 * cache into out (K, stride), summed per block and then exactly; sum is
 * (K, stride) scratch. */
static int annot_sums(const emdpo_loglinear *ll, const emdpo_data *d, const double *w, const unsigned char *mask,
                      double *part, double *out, double *sum) {
    int K = ll->base.K, p = ll->p;
    size_t s = type_stride(p), row = (size_t)K * (1 + p);
    int64_t n_blocks = (d->n_annot + LL_BLOCK - 1) / LL_BLOCK;
#pragma omp parallel for schedule(static) if ((double)d->n_annot * row >= EMDPO_PAR_MIN_WORK)
    for (int64_t b = 0; b < n_blocks; b++) {
        double *pb = part + (size_t)b * K * s;
        int64_t i1 = (b + 1) * LL_BLOCK < d->n_annot ? (b + 1) * LL_BLOCK : d->n_annot;
        for (int k = 0; k < K; k++) {
            if (!mask[k]) continue;
            double *slot = pb + (size_t)k * s;
            memset(slot, 0, s * sizeof(double));
            for (int64_t i = b * LL_BLOCK; i < i1; i++) {
                const double *c = ll->annot_cache + ((size_t)k * d->n_annot + i) * (1 + p);
                double wt = w[i * K + k];
                for (int a = 0; a <= p; a++) slot[a] = EMDPO_MADD(wt, c[a], slot[a]);
            }
        }
    }
    int rc = emdpo_dist_sum_rows(part, n_blocks, (size_t)K * s, d->shard, sum);
    if (rc) return rc;
    for (int k = 0; k < K; k++)
        if (mask[k]) memcpy(out + (size_t)k * s, sum + (size_t)k * s, s * sizeof(double));
    return EMDPO_OK;
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

/* A step whose pass brought no Hessian still shows how the gradient
 * changed along it: the BFGS update makes the old Hessian agree with that
 * (H step = change), for free. In terms of B = -H, positive definite for a
 * concave objective, it stays so when the curvature along the step is
 * negative; otherwise the update is skipped. vec is (3, p) scratch. */
static void hess_secant(double *slot, int p, const double *step, const double *g_old, double *vec) {
    double *h = slot + 1 + p, *bs = vec, *y = vec + p;
    double sbs = 0.0, ys = 0.0;
    for (int a = 0; a < p; a++) {
        bs[a] = 0.0;
        for (int b = 0; b < p; b++) bs[a] -= h[a * p + b] * step[b];
        y[a] = g_old[a] - slot[1 + a];
    }
    for (int a = 0; a < p; a++) {
        sbs += step[a] * bs[a];
        ys += y[a] * step[a];
    }
    if (!(sbs > 0.0) || !(ys > 1e-12 * sbs)) return;
    for (int a = 0; a < p; a++)
        for (int b = 0; b < p; b++) h[a * p + b] += bs[a] * bs[b] / sbs - y[a] * y[b] / ys;
}

/* A step that shrank the gradient by less than this factor asks for a
 * fresh Hessian in the next pass. So does a gradient that, shrinking as
 * fast as the last step's (HESS_RATE before any), would still be more than
 * HESS_AHEAD times the tolerance after the pass: the step after it then
 * starts from an exact Hessian. */
#define HESS_REFRESH 0.03
#define HESS_AHEAD 100.0
#define HESS_RATE 0.01

/* One Newton solve. */
typedef struct newton_run {
    double *theta;        /* (K, p) accepted parameters, updated in place */
    const double *wsum;   /* (K) the objective's total decision weight */
    double gtol, l2;
    int max_iter;
    int full;             /* the whole data: the annotator cache follows
                             the passes, and the Hessian is cached and recomputed
                             only as HESS_REFRESH and HESS_AHEAD say (a pass
                             without it costs a fraction of one with it; in
                             between, secant updates keep it current). Otherwise
                             (a subsample) every pass computes the Hessian. */
    int iterations, converged;
} newton_run;

/* Damped Newton with backtracking for the types not done, from theta
 * with its value, gradient and Hessian in ws->cur, until
 * |grad|_inf <= gtol (1 + wsum). Types end done. */
static int newton_solve(emdpo_loglinear *ll, eval_job *J, newton_ws *ws, newton_run *r) {
    int K = ll->base.K, p = ll->p;
    size_t s = type_stride(p);
    for (int k = 0; k < K; k++) {
        ws->gprev[k] = grad_norm(ws->cur + k * s, p);
        ws->rate[k] = HESS_RATE;
    }
    J->mask = ws->trying;
    J->want_grad = 1;
    r->iterations = 0;
    r->converged = 1;
    int refresh = 0;
    for (; r->iterations < r->max_iter; r->iterations++) {
        int any = 0, ahead = 0;
        for (int k = 0; k < K; k++) {
            ws->trying[k] = 0;
            if (ws->done[k]) continue;
            double *slot = ws->cur + k * s;
            if (grad_converged(slot, p, r->gtol, r->wsum[k])) {
                ws->done[k] = 1;
                continue;
            }
            newton_direction(slot, p, ws->A, ws->delta + (size_t)k * p);
            ws->slope[k] = 0.0;
            for (int a = 0; a < p; a++) ws->slope[k] += slot[1 + a] * ws->delta[(size_t)k * p + a];
            ws->alpha[k] = 1.0;
            ws->trying[k] = any = 1;
            ahead |= ws->gprev[k] * ws->rate[k] > HESS_AHEAD * r->gtol * (1.0 + r->wsum[k]);
        }
        if (!any) break;
        J->want_hess = !r->full || refresh || ahead;
        refresh = 0;
        for (int halvings = 0; halvings < 50; halvings++) {
            int pending = 0;
            for (int k = 0; k < K; k++) {
                if (!ws->trying[k]) continue;
                for (int a = 0; a < p; a++)
                    ws->th_try[(size_t)k * p + a] = r->theta[(size_t)k * p + a] + ws->alpha[k] * ws->delta[(size_t)k * p + a];
                pending = 1;
            }
            if (!pending) break;
            J->theta = ws->th_try;
            if (J->annot) annot_mark(ll, ws->trying, ws->th_try, 0);
            int rc = eval_all(J, ws->trial);
            if (rc) return rc;
            if (J->annot) annot_mark(ll, ws->trying, ws->th_try, 1);
            for (int k = 0; k < K; k++) {
                if (!ws->trying[k]) continue;
                double *tr = ws->trial + k * s, *cu = ws->cur + k * s;
                add_penalty(tr, ws->th_try + (size_t)k * p, p, r->l2);
                /* Armijo; or, once the predicted gain is below the rounding
                 * noise of a sum over the data, any step that is no worse
                 * than that noise (halving there only wastes passes). */
                double noise = 1e-11 * (1.0 + fabs(cu[0]));
                int ok = tr[0] >= cu[0] + 1e-4 * ws->alpha[k] * ws->slope[k] ||
                         (ws->alpha[k] * ws->slope[k] <= noise && tr[0] >= cu[0] - noise);
                if (ok && isfinite(tr[0])) {
                    double *g_old = ws->vec + 2 * p;
                    memcpy(g_old, cu + 1, (size_t)p * sizeof(double));
                    memcpy(cu, tr, (J->want_hess ? s : 1 + (size_t)p) * sizeof(double));
                    if (J->want_hess && r->full) hess_cache_sync(ll, cu, k, 1);
                    if (!J->want_hess) {
                        for (int a = 0; a < p; a++) ws->delta[(size_t)k * p + a] *= ws->alpha[k]; /* the step */
                        hess_secant(cu, p, ws->delta + (size_t)k * p, g_old, ws->vec);
                    }
                    double gnew = grad_norm(cu, p);
                    ws->rate[k] = ws->gprev[k] > 0.0 ? gnew / ws->gprev[k] : 0.0;
                    refresh |= ws->rate[k] > HESS_REFRESH;
                    ws->gprev[k] = gnew;
                    memcpy(r->theta + (size_t)k * p, ws->th_try + (size_t)k * p, (size_t)p * sizeof(double));
                    ws->trying[k] = 0;
                } else {
                    ws->alpha[k] *= 0.5;
                }
            }
        }
        for (int k = 0; k < K; k++)
            if (ws->trying[k]) { /* no acceptable step: the type is as good as it gets */
                ws->trying[k] = 0;
                ws->done[k] = 1;
                r->converged = 0;
            }
    }
    for (int k = 0; k < K; k++)
        if (!ws->done[k]) r->converged = 0;
    return EMDPO_OK;
}

/* out (K): the decisions of every every-th annotator weighted by w, in
 * blocks of LL_BLOCK annotators added exactly; part is (n_blocks, K)
 * scratch. */
static int decision_weight(const emdpo_data *d, const double *w, int K, int every, double *part, double *out) {
    int64_t n_blocks = (d->n_annot + LL_BLOCK - 1) / LL_BLOCK;
    for (int64_t b = 0; b < n_blocks; b++) {
        double *pb = part + (size_t)b * K;
        for (int k = 0; k < K; k++) pb[k] = 0.0;
        int64_t i1 = (b + 1) * LL_BLOCK < d->n_annot ? (b + 1) * LL_BLOCK : d->n_annot;
        for (int64_t i = b * LL_BLOCK; i < i1; i += every)
            for (int k = 0; k < K; k++) pb[k] += w[i * K + k] * (double)(d->annot_dec[i + 1] - d->annot_dec[i]);
    }
    return emdpo_dist_sum_rows(part, n_blocks, (size_t)K, d->shard, out);
}

/* The cold start samples every SUB_EVERY_MAX-th to 4th annotator, keeping
 * at least SUB_MIN_ANNOT of them; smaller data start on the full data. */
#define SUB_MIN_ANNOT 256
#define SUB_EVERY_MAX 64
/* The subsample's optimum only needs to be well inside its sampling
 * noise. */
#define SUB_GTOL 1e-6
#define SUB_MAX_ITER 30

static int subsample_every(const emdpo_data *d) {
    int every = 1;
    int64_t n = emdpo_data_all_annot(d); /* the same on every process */
    while (every < SUB_EVERY_MAX && n / (2 * every) >= SUB_MIN_ANNOT) every *= 2;
    return every >= 4 ? every : 1;
}

/* Cold start (no Hessian from an earlier M-step): from theta, whose full
 * value (and, when grad_known, gradient) is in ws->cur, Newton on a
 * subsample of annotators first. Its optimum is within sampling noise of
 * the full one, for a fraction of a pass per step. One full pass there,
 * with the Hessian, then decides per type: the subsample's optimum is kept
 * when it is no worse than theta on the full data (the M-step must not
 * lose); otherwise theta stays, steered by that Hessian. J is the full
 * pass's job. */
static int cold_start(emdpo_loglinear *ll, const emdpo_data *d, const double *w, eval_job *J, newton_ws *ws,
                      int every, int grad_known) {
    int K = ll->base.K, p = ll->p;
    size_t s = type_stride(p);
    memcpy(ws->start, ws->cur, (size_t)K * s * sizeof(double));
    memcpy(ws->th_sub, ll->theta, (size_t)K * p * sizeof(double));
    double wsub_total = 0.0, wsum_total = 0.0;
    int rc = decision_weight(d, w, K, every, ws->part, ws->wsub);
    if (rc) return rc;
    for (int k = 0; k < K; k++) {
        ws->pending[k] = !ws->done[k];
        if (!ws->pending[k]) ws->wsub[k] = 0.0;
        wsub_total += ws->wsub[k];
        wsum_total += ws->pending[k] ? ws->wsum[k] : 0.0;
    }
    /* The penalty shrinks with the sample, so that both problems are alike. */
    double l2 = wsum_total > 0.0 ? ll->l2 * wsub_total / wsum_total : ll->l2;
    eval_job S = *J;
    S.every = every;
    S.logp = NULL;
    S.annot = NULL;
    S.want_grad = S.want_hess = 1;
    S.theta = ws->th_sub;
    S.mask = ws->pending;
    if ((rc = eval_all(&S, ws->cur))) return rc;
    for (int k = 0; k < K; k++)
        if (ws->pending[k]) add_penalty(ws->cur + k * s, ws->th_sub + (size_t)k * p, p, l2);
    newton_run sub = {ws->th_sub, ws->wsub, SUB_GTOL, l2, SUB_MAX_ITER, 0, 0, 0};
    if ((rc = newton_solve(ll, &S, ws, &sub))) return rc;

    J->theta = ws->th_sub;
    J->mask = ws->pending;
    J->want_grad = J->want_hess = 1;
    annot_mark(ll, ws->pending, ws->th_sub, 0);
    if ((rc = eval_all(J, ws->trial))) return rc;
    annot_mark(ll, ws->pending, ws->th_sub, 1);
    int rejected = 0;
    for (int k = 0; k < K; k++) {
        double *tr = ws->trial + k * s, *cu = ws->cur + k * s, *st = ws->start + k * s;
        ws->done[k] = !ws->pending[k];
        ws->trying[k] = 0;
        if (!ws->pending[k]) { /* the subsample's passes overwrote its slot */
            memcpy(cu, st, s * sizeof(double));
            continue;
        }
        add_penalty(tr, ws->th_sub + (size_t)k * p, p, ll->l2);
        if (isfinite(tr[0]) && tr[0] >= st[0]) {
            memcpy(cu, tr, s * sizeof(double));
            memcpy(ll->theta + (size_t)k * p, ws->th_sub + (size_t)k * p, (size_t)p * sizeof(double));
            hess_cache_sync(ll, cu, k, 1);
        } else {
            ws->trying[k] = 1;
            rejected = 1;
        }
    }
    if (rejected && !grad_known) { /* theta's gradient after all */
        J->theta = ll->theta;
        J->mask = ws->trying;
        J->want_hess = 0;
        annot_mark(ll, ws->trying, ll->theta, 0);
        if ((rc = eval_all(J, ws->start))) return rc;
        annot_mark(ll, ws->trying, ll->theta, 1);
    }
    for (int k = 0; k < K; k++) {
        if (!ws->trying[k]) continue;
        double *tr = ws->trial + k * s, *cu = ws->cur + k * s, *st = ws->start + k * s;
        if (!grad_known) add_penalty(st, ll->theta + (size_t)k * p, p, ll->l2);
        memcpy(cu, st, (1 + (size_t)p) * sizeof(double));
        memcpy(cu + 1 + p, tr + 1 + p, (size_t)p * p * sizeof(double));
        hess_cache_sync(ll, cu, k, 1);
    }
    ll->hess_data = d;
    return EMDPO_OK;
}

/* At theta = 0 (where every fit starts) all items of a decision are
 * equally likely: type k's value there is -sum_i w_ik sum_j log(n_j (n_j -
 * 1) ... (n_j - stages_j + 1)), with no pass over the features. Its
 * gradient is left unknown (zero) for the cold start. */
static int zero_start(const emdpo_loglinear *ll, const emdpo_data *d, const double *w, newton_ws *ws, int nmax) {
    int K = ll->base.K;
    size_t s = type_stride(ll->p);
    double *lfact = emdpo_malloc(((size_t)nmax + 1) * sizeof(double));
    if (!lfact) return EMDPO_ERR_NOMEM;
    lfact[0] = 0.0;
    for (int m = 1; m <= nmax; m++) lfact[m] = lfact[m - 1] + log((double)m);
    int64_t n_blocks = (d->n_annot + LL_BLOCK - 1) / LL_BLOCK;
#pragma omp parallel for schedule(static) if ((double)d->n_dec >= EMDPO_PAR_MIN_WORK)
    for (int64_t b = 0; b < n_blocks; b++) {
        double *pb = ws->part + (size_t)b * K;
        for (int k = 0; k < K; k++) pb[k] = 0.0;
        int64_t i1 = (b + 1) * LL_BLOCK < d->n_annot ? (b + 1) * LL_BLOCK : d->n_annot;
        for (int64_t i = b * LL_BLOCK; i < i1; i++) {
            double c = 0.0;
            for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) {
                int n = emdpo_dec_n_items(d, j);
                c -= lfact[n] - lfact[n - d->dec_stages[j]];
            }
            for (int k = 0; k < K; k++) pb[k] = EMDPO_MADD(w[i * K + k], c, pb[k]);
        }
    }
    emdpo_free(lfact, ((size_t)nmax + 1) * sizeof(double));
    double f[EMDPO_MAX_K];
    int rc = emdpo_dist_sum_rows(ws->part, n_blocks, (size_t)K, d->shard, f);
    if (rc) return rc;
    for (int k = 0; k < K; k++) {
        double *slot = ws->cur + (size_t)k * s;
        memset(slot, 0, s * sizeof(double));
        if (!ws->done[k]) slot[0] = f[k];
    }
    return EMDPO_OK;
}

/* The M-step's first point: value and gradient at theta (and its Hessian,
 * from the last M-step's cache or from the pass). Types whose annotator
 * rows hold theta are summed from them; the others take one pass, which
 * refills their rows. */
static int mstep_start(emdpo_loglinear *ll, const emdpo_data *d, const double *w, eval_job *J, newton_ws *ws,
                       int cached) {
    int K = ll->base.K, p = ll->p;
    size_t s = type_stride(p);
    int any_pass = 0, any_cache = 0;
    for (int k = 0; k < K; k++) {
        int from_cache = !ws->done[k] && cached && annot_valid(ll, d, k);
        ws->trying[k] = !ws->done[k] && !from_cache;
        ws->pending[k] = (unsigned char)from_cache;
        any_pass |= ws->trying[k];
        any_cache |= from_cache;
    }
    if (any_pass) {
        J->mask = ws->trying;
        annot_mark(ll, ws->trying, ll->theta, 0);
        int rc = eval_all(J, ws->cur);
        if (rc) return rc;
        annot_mark(ll, ws->trying, ll->theta, 1);
    }
    if (any_cache) {
        int rc = annot_sums(ll, d, w, ws->pending, ws->part, ws->cur, ws->trial);
        if (rc) return rc;
    }
    for (int k = 0; k < K; k++) {
        if (ws->done[k]) continue;
        add_penalty(ws->cur + k * s, ll->theta + (size_t)k * p, p, ll->l2);
        if (cached)
            hess_cache_sync(ll, ws->cur + k * s, k, 0);
        else if (J->want_hess)
            hess_cache_sync(ll, ws->cur + k * s, k, 1);
    }
    if (cached || J->want_hess) ll->hess_data = d;
    return EMDPO_OK;
}

static int loglinear_mstep(emdpo_policy *pol, const emdpo_data *d, const double *w,
                           const unsigned char *active, double *annot_logp, emdpo_mstep_info *info) {
    emdpo_loglinear *ll = (emdpo_loglinear *)pol;
    int K = pol->K, p = ll->p;
    if (d->p != p) return EMDPO_ERR_INVALID_ARG;
    size_t s = type_stride(p);
    int64_t n_blocks = (d->n_annot + LL_BLOCK - 1) / LL_BLOCK;
    newton_ws ws;
    double *buf = NULL;
    unsigned char *flags = NULL;
    int rc = ws_alloc(&ws, K, p, n_blocks, &buf, &flags);
    if (!rc) rc = annot_bind(ll, d);
    if (rc) goto out;

    if ((rc = decision_weight(d, w, K, 1, ws.part, ws.wsum))) goto out;
    for (int k = 0; k < K; k++) ws.done[k] = !active[k];
    int cached = ll->hess_data == d;
    for (int k = 0; k < K; k++) cached &= ws.done[k] || ll->hess_ok[k];
    int every = cached ? 1 : subsample_every(d), zero = every > 1;
    for (int q = 0; q < K * p; q++) zero &= ws.done[q / p] || ll->theta[q] == 0.0;
    /* A cold start with a subsample takes its Hessian at the subsample's
     * optimum, not here. */
    eval_job J = {d, w, ll->theta, ws.trying, K, p, emdpo_data_max_items(d), 1, !cached && every == 1, 1, NULL,
                  ll->annot_cache, ws.part};
    rc = zero ? zero_start(ll, d, w, &ws, J.nmax) : mstep_start(ll, d, w, &J, &ws, cached);
    if (rc) goto out;
    int steps = 0;
    if (every > 1) {
        int pending = 0;
        for (int k = 0; k < K; k++) { /* types that need no step skip the subsample */
            ws.done[k] |= !ws.done[k] && !zero && grad_converged(ws.cur + k * s, p, ll->gtol, ws.wsum[k]);
            pending |= !ws.done[k];
        }
        if (pending && (rc = cold_start(ll, d, w, &J, &ws, every, !zero))) goto out;
        steps = pending;
        for (int k = 0; k < K; k++) ws.done[k] = !active[k];
    }

    newton_run run = {ll->theta, ws.wsum, ll->gtol, ll->l2, ll->max_newton, 1, 0, 0};
    if ((rc = newton_solve(ll, &J, &ws, &run))) goto out;
    int all_converged = run.converged;
    for (int k = 0; k < K; k++) {
        if (!active[k]) continue;
        if (!grad_converged(ws.cur + k * s, p, ll->gtol, ws.wsum[k])) all_converged = 0;
        if (!isfinite(ws.cur[k * s])) rc = EMDPO_ERR_NUMERIC;
    }
    if (annot_logp && !rc) { /* types whose last pass was not at their final theta */
        int stale = 0;
        for (int k = 0; k < K; k++) {
            ws.trying[k] = active[k] && !annot_valid(ll, d, k);
            stale |= ws.trying[k];
        }
        if (stale) {
            J.theta = ll->theta;
            J.mask = ws.trying;
            J.want_hess = 0;
            annot_mark(ll, ws.trying, ll->theta, 0);
            if ((rc = eval_all(&J, ws.trial))) goto out;
            annot_mark(ll, ws.trying, ll->theta, 1);
        }
        for (int k = 0; k < K; k++)
            if (active[k])
                for (int64_t i = 0; i < d->n_annot; i++) annot_logp[i * K + k] = annot_row(&J, k, i)[0];
    }
    if (info) {
        info->iterations = steps + run.iterations;
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
    if (ll->annot_cache)
        emdpo_free(ll->annot_cache, (size_t)(ll->annot_n ? ll->annot_n : 1) * pol->K * (1 + ll->p) * sizeof(double));
    emdpo_free(ll->annot_theta, (size_t)pol->K * ll->p * sizeof(double));
    emdpo_free(ll->annot_ok, (size_t)pol->K);
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
    ll->annot_theta = emdpo_calloc((size_t)K * p, sizeof(double));
    ll->annot_ok = emdpo_calloc((size_t)K, 1);
    if (!ll->theta || !ll->hess_cache || !ll->hess_ok || !ll->annot_theta || !ll->annot_ok) {
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
    a->annot_ok[k] = 0;
    return EMDPO_OK;
}

static const emdpo_policy_ops loglinear_ops = {
    "loglinear", loglinear_decision_logp, loglinear_mstep, loglinear_clone, loglinear_copy_type, loglinear_free,
};

void emdpo_loglinear_opts_init(emdpo_loglinear_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->k = 2;
    emdpo_em_opts_init(&o->em);
    o->l2 = 0.0;
    o->beta = 1.0;
}
