#include "core/heldout.h"

#include <math.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "core/em.h"

int emdpo_heldout_loglik(emdpo_policy *pol, const double *eta, const emdpo_data *d, double *ll_annot,
                         double *loglik) {
    int K = pol->K;
    if (K < 1 || K > EMDPO_MAX_K) return EMDPO_ERR_INVALID_ARG;
    double log_eta[EMDPO_MAX_K];
    for (int k = 0; k < K; k++) {
        if (!(eta[k] >= 0) || !isfinite(eta[k])) return EMDPO_ERR_INVALID_ARG;
        log_eta[k] = eta[k] > 0 ? log(eta[k]) : -INFINITY;
    }
    /* A process's share may hold no annotators (d->shard): at least one row. */
    size_t lbytes = (size_t)(d->n_dec ? d->n_dec : 1) * K * sizeof(double),
           gbytes = (size_t)(d->n_annot ? d->n_annot : 1) * K * sizeof(double);
    double *logp = emdpo_malloc(lbytes), *gamma = emdpo_malloc(gbytes);
    int rc = logp && gamma ? pol->ops->decision_logp(pol, d, logp) : EMDPO_ERR_NOMEM;
    if (!rc) rc = emdpo_em_estep(d, K, logp, log_eta, gamma, ll_annot, loglik);
    emdpo_free(logp, lbytes);
    emdpo_free(gamma, gbytes);
    return rc;
}
