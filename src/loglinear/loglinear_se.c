/* The observed-data Hessian by Louis' identity.
 *
 * Annotator i contributes l_i = log sum_k f_ik with f_ik = eta_k prod_j
 * P_k(V_ij). With gamma_ik = f_ik / sum_l f_il, s_ik = grad log f_ik and
 * H_ik = hess log f_ik, grad gamma_ik = gamma_ik (s_ik - s_i), hence
 *   grad l_i = s_i = sum_k gamma_ik s_ik,
 *   hess l_i = sum_k gamma_ik (H_ik + s_ik s_ik^T) - s_i s_i^T
 *            = sum_k gamma_ik H_ik + sum_k gamma_ik (s_ik - s_i)(s_ik - s_i)^T.
 * Here log f_ik = alpha_k - log sum_l exp(alpha_l) + sum_j log P_k(V_ij):
 *   s_ik = (g_ik in theta_k's slot; e_k - eta in the alpha slots),
 *   H_ik = (h_ik in the (theta_k, theta_k) block; -(diag eta - eta eta^T)
 *           in the alpha block),
 * with g_ik, h_ik the gradient and Hessian of sum_j log P_k(V_ij). eta
 * cancels from s_ik - s_i = (g_ik e_k - (gamma_il g_il)_l; e_k - gamma_i),
 * so with z_i = ((gamma_il g_il)_l; gamma_i restricted to the free alphas)
 *   hess l_i = D_i - z_i z_i^T - (diag eta - eta eta^T)_alpha,
 * where D_i holds gamma_ik (h_ik + g_ik g_ik^T) in the (theta_k, theta_k)
 * blocks, gamma_ik g_ik in (theta_k, alpha_k) and gamma_ik on alpha_k's
 * diagonal. The last term does not depend on i and is added n times at the
 * end, with the ridge penalty's -l2 I on the theta diagonal. */
#include "loglinear/loglinear_se.h"

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/dist.h"
#include "base/xsum.h"
#include "base/linalg.h"
#include "base/threads.h"
#include "core/choice.h"
#include "core/em.h"

/* Annotators per reduction block. Fixed, so that partial sums, and hence
 * results, are bitwise identical for any number of threads. */
#define SE_BLOCK 256
_Static_assert(EMDPO_DIST_ALIGN % SE_BLOCK == 0, "a process's share (data/data.h) is whole blocks");

int emdpo_loglinear_se_npar(int K, int p, const unsigned char *empty) {
    int ka = 0;
    for (int k = 0; k < K; k++) ka += !(empty && empty[k]);
    return ka ? ka * p + ka - 1 : 0;
}

typedef struct se_job {
    const emdpo_data *d;
    const double *theta;  /* (K, p) */
    const int *act;       /* (ka) original index of each non-empty type */
    const double *log_eta; /* (ka) renormalised over the non-empty types */
    int ka, p, npar, nmax;
    size_t scratch_n;     /* doubles of scratch per thread */
    size_t ntri;          /* npar (npar + 1) / 2 */
} se_job;

/* Index of (a, b), a <= b, in a packed upper triangle of order n. */
static size_t tri_index(int a, int b, int n) { return (size_t)a * n - (size_t)a * (a - 1) / 2 + (size_t)(b - a); }

/* Adds sum over the block's annotators of D_i - z_i z_i^T into tri
 * (packed upper triangle, overwritten) and their log-likelihood into
 * *loglik. */
static void se_block(const se_job *J, int64_t blk, double *scratch, double *tri, double *loglik) {
    const emdpo_data *d = J->d;
    int ka = J->ka, p = J->p, npar = J->npar, nmax = J->nmax;
    size_t pt = (size_t)p * p;
    double *u = scratch, *prob = u + nmax, *xbar = prob + nmax;
    double *g = xbar + p;          /* (ka, p) */
    double *h = g + (size_t)ka * p; /* (ka, pt) */
    double *lf = h + (size_t)ka * pt; /* (ka) log f_ik, then gamma_ik */
    double *z = lf + ka;           /* (npar) */
    memset(tri, 0, J->ntri * sizeof(double));
    double acc = 0.0;
    int64_t i0 = blk * SE_BLOCK, i1 = i0 + SE_BLOCK < d->n_annot ? i0 + SE_BLOCK : d->n_annot;
    for (int64_t i = i0; i < i1; i++) {
        memset(g, 0, ((size_t)ka * p /* g and h are adjacent */ + (size_t)ka * pt) * sizeof(double));
        for (int r = 0; r < ka; r++) {
            const double *th = J->theta + (size_t)J->act[r] * p;
            double s = J->log_eta[r];
            for (int64_t j = d->annot_dec[i]; j < d->annot_dec[i + 1]; j++) {
                int64_t it = d->dec_item[j];
                int n = (int)(d->dec_item[j + 1] - it);
                s += emdpo_loglinear_decision_derivs(d->x + (size_t)it * p, n, d->dec_stages[j], p, th, 1.0, u, prob,
                                                     xbar, g + (size_t)r * p, h + (size_t)r * pt);
            }
            lf[r] = s;
        }
        double lse = emdpo_logsumexp(lf, ka);
        acc += lse;
        for (int r = 0; r < ka; r++) lf[r] = exp(lf[r] - lse);
        for (int r = 0; r < ka; r++)
            for (int a = 0; a < p; a++) z[r * p + a] = lf[r] * g[(size_t)r * p + a];
        for (int r = 1; r < ka; r++) z[ka * p + r - 1] = lf[r];
        /* - z z^T over the whole triangle. */
        double *t = tri;
        for (int a = 0; a < npar; a++) {
            double za = z[a];
            for (int b = a; b < npar; b++) *t++ -= za * z[b];
        }
        /* D_i. */
        for (int r = 0; r < ka; r++) {
            double gr = lf[r];
            if (gr == 0.0) continue;
            const double *gk = g + (size_t)r * p, *hk = h + (size_t)r * pt;
            for (int a = 0; a < p; a++) {
                double *row = tri + tri_index(r * p + a, r * p + a, npar);
                for (int b = a; b < p; b++) row[b - a] += gr * (hk[a * p + b] + gk[a] * gk[b]);
                if (r > 0) tri[tri_index(r * p + a, ka * p + r - 1, npar)] += gr * gk[a];
            }
            if (r > 0) tri[tri_index(ka * p + r - 1, ka * p + r - 1, npar)] += gr;
        }
    }
    *loglik = acc;
}

int emdpo_loglinear_observed_hessian(const emdpo_data *d, const emdpo_loglinear *ll, const double *eta,
                                     const unsigned char *empty, double *H, int *npar_out) {
    int K = ll->base.K, p = ll->p;
    if (npar_out) *npar_out = 0;
    if (K < 1 || K > EMDPO_MAX_K || p < 1 || d->p != p) return EMDPO_ERR_INVALID_ARG;
    int act[EMDPO_MAX_K], ka = 0;
    double log_eta[EMDPO_MAX_K], eta_a[EMDPO_MAX_K], esum = 0.0;
    for (int k = 0; k < K; k++) {
        if (empty && empty[k]) continue;
        if (!(eta[k] > 0.0) || !isfinite(eta[k])) return EMDPO_ERR_INVALID_ARG;
        act[ka++] = k;
        esum += eta[k];
    }
    if (ka == 0) return EMDPO_ERR_INVALID_ARG;
    for (int r = 0; r < ka; r++) {
        eta_a[r] = eta[act[r]] / esum;
        log_eta[r] = log(eta_a[r]);
    }
    int npar = ka * p + ka - 1;
    if (npar_out) *npar_out = npar;

    se_job J;
    J.d = d;
    J.theta = ll->theta;
    J.act = act;
    J.log_eta = log_eta;
    J.ka = ka;
    J.p = p;
    J.npar = npar;
    J.nmax = emdpo_data_max_items(d);
    J.scratch_n = 2 * (size_t)J.nmax + p + (size_t)ka * p + (size_t)ka * p * p + ka + npar;
    J.ntri = (size_t)npar * (npar + 1) / 2;

    /* Blocks run in chunks of a few per thread; each block's partials are
     * added exactly (base/xsum.h), and over the processes when d is a
     * share: the sum is the same for any number of threads and processes.
     * Everything is allocated up front, outside the parallel region. */
    int n_threads = emdpo_max_threads();
    int64_t n_blocks = (d->n_annot + SE_BLOCK - 1) / SE_BLOCK;
    int chunk = n_blocks < 4 * (int64_t)n_threads ? (int)(n_blocks > 0 ? n_blocks : 1) : 4 * n_threads;
    size_t scratch_bytes = (size_t)n_threads * J.scratch_n * sizeof(double);
    size_t part_bytes = (size_t)chunk * (J.ntri + 1) * sizeof(double);
    size_t sum_bytes = (J.ntri + 1) * EMDPO_XSUM_WORDS * sizeof(int64_t);
    size_t acc_bytes = (J.ntri + 1) * sizeof(double);
    double *scratch = emdpo_malloc(scratch_bytes);
    double *part = emdpo_malloc(part_bytes); /* (chunk, ntri + 1): triangle, then log-likelihood */
    int64_t *sum = emdpo_malloc(sum_bytes);  /* the same, exact */
    double *acc = emdpo_malloc(acc_bytes);    /* the same, rounded */
    int rc = EMDPO_ERR_NOMEM;
    if (scratch && part && sum && acc) {
        emdpo_xsum_zero(sum, J.ntri + 1);
        for (int64_t b0 = 0; b0 < n_blocks; b0 += chunk) {
            int nb = n_blocks - b0 < chunk ? (int)(n_blocks - b0) : chunk;
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
            for (int c = 0; c < nb; c++) {
                double *pc = part + (size_t)c * (J.ntri + 1);
                se_block(&J, b0 + c, scratch + (size_t)emdpo_thread_num() * J.scratch_n, pc, pc + J.ntri);
            }
            for (int c = 0; c < nb; c++) emdpo_xsum_add_vec(sum, part + (size_t)c * (J.ntri + 1), J.ntri + 1);
        }
        rc = d->shard ? emdpo_dist_xsum(sum, J.ntri + 1) : EMDPO_OK;
    }
    if (!rc) {
        emdpo_xsum_values(sum, J.ntri + 1, acc);
        rc = isfinite(acc[J.ntri]) ? EMDPO_OK : EMDPO_ERR_NUMERIC;
    }
    if (!rc) {
        double n = (double)emdpo_data_all_annot(d);
        for (int r = 1; r < ka; r++)
            for (int s = r; s < ka; s++)
                acc[tri_index(ka * p + r - 1, ka * p + s - 1, npar)] -= n * ((r == s) * eta_a[r] - eta_a[r] * eta_a[s]);
        for (int a = 0; a < ka * p; a++) acc[tri_index(a, a, npar)] -= ll->l2;
        const double *t = acc;
        for (int a = 0; a < npar; a++)
            for (int b = a; b < npar; b++) {
                if (!isfinite(*t)) rc = EMDPO_ERR_NUMERIC;
                H[(size_t)a * npar + b] = H[(size_t)b * npar + a] = *t++;
            }
    }
    emdpo_free(scratch, scratch_bytes);
    emdpo_free(part, part_bytes);
    emdpo_free(sum, sum_bytes);
    emdpo_free(acc, acc_bytes);
    return rc;
}

int emdpo_loglinear_stderr(const emdpo_data *d, const emdpo_loglinear *ll, const double *eta,
                           const unsigned char *empty, double *se_theta, double *se_eta) {
    int K = ll->base.K, p = ll->p;
    if (K < 1 || K > EMDPO_MAX_K || p < 1) return EMDPO_ERR_INVALID_ARG;
    for (size_t q = 0; q < (size_t)K * p; q++) se_theta[q] = NAN;
    for (int k = 0; k < K; k++) se_eta[k] = NAN;
    int npar = emdpo_loglinear_se_npar(K, p, empty);
    if (npar == 0) return EMDPO_ERR_INVALID_ARG;
    size_t mat_bytes = (size_t)npar * npar * sizeof(double);
    double *A = emdpo_malloc(mat_bytes);   /* (npar, npar) H, then the Cholesky factor of -H */
    double *cov = emdpo_malloc(mat_bytes); /* (npar, npar) (-H)^-1 */
    int rc = EMDPO_ERR_NOMEM;
    if (A && cov) rc = emdpo_loglinear_observed_hessian(d, ll, eta, empty, A, NULL);
    if (!rc) {
        for (size_t q = 0; q < (size_t)npar * npar; q++) A[q] = -A[q];
        if (emdpo_cholesky(A, npar)) rc = EMDPO_ERR_NUMERIC;
    }
    if (!rc) {
        emdpo_cholesky_inverse(A, npar, cov);
        int act[EMDPO_MAX_K], ka = 0;
        double e[EMDPO_MAX_K], esum = 0.0;
        for (int k = 0; k < K; k++)
            if (!(empty && empty[k])) {
                act[ka] = k;
                esum += e[ka++] = eta[k];
            }
        for (int r = 0; r < ka; r++) {
            e[r] /= esum;
            for (int a = 0; a < p; a++) {
                int q = r * p + a;
                se_theta[(size_t)act[r] * p + a] = sqrt(cov[(size_t)q * npar + q]);
            }
        }
        /* d eta_r / d alpha_m = eta_r (delta_rm - eta_m) for the free alphas
         * m = 1..ka-1; var eta_r = J_r C J_r^T with C the alpha block. */
        const double *C = cov + (size_t)ka * p * npar + (size_t)ka * p;
        for (int r = 0; r < ka; r++) {
            double v = 0.0;
            for (int m = 1; m < ka; m++) {
                double jm = e[r] * ((r == m) - e[m]);
                for (int l = 1; l < ka; l++) v += jm * C[(size_t)(m - 1) * npar + (l - 1)] * e[r] * ((r == l) - e[l]);
            }
            se_eta[act[r]] = sqrt(v);
        }
    }
    emdpo_free(A, mat_bytes);
    emdpo_free(cov, mat_bytes);
    return rc;
}
