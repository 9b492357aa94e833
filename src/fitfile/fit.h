/* An EM-DPO fit (emdpo/em.h's emdpo_fit) of either family: what fitting
 * returns and what fit.json and posterior.csv hold. The drivers fill it
 * from an EM run; the reader (fitjson.c) from the files. */
#ifndef EMDPO_FIT_H
#define EMDPO_FIT_H

#include <stdint.h>

#include "core/em.h"
#include "core/policy.h"
#include "emdpo.h"

struct emdpo_fit {
    emdpo_family family;
    int K;
    int p;                     /* log-linear: features per item */
    emdpo_em_result res;       /* eta, gamma (NULL when read without a posterior), trace, ... */
    char **annot;              /* (res.n_annot) ids of the posterior's rows, or NULL */
    emdpo_em_opts em;          /* the settings (no callbacks) */
    double beta;               /* utilities are beta * log-ratios */
    double l2;                 /* log-linear: the ridge penalty */
    double *theta;             /* (K, p) log-linear parameters */
    double *se_theta, *se_eta; /* (K, p), (K) standard errors; NULL when not computed */
    char **feature_name;       /* (p) or NULL */
    emdpo_lm_mstep_opts mstep; /* Llama: the M-step's settings */
    emdpo_dtype save_dtype;    /* Llama, a fit made in memory: the policies' weights when written */
    int64_t mstep_steps;       /* Llama: optimizer steps per type per M-step */
    char *data, *model, *tokenizer; /* absolute paths (data for both families), or NULL */
    char *read_annotator_field, *read_chat_template, *read_special_tokens; /* how data was read (emdpo_data) */
    char *dir;                 /* read fits: the directory relative paths start from */
    char *source;              /* read fits: the fit.json path as given */
    char **policy;             /* (K) Llama: type directory names */
    char **policy_path;        /* (K) Llama: resolved type directories, NULL until written or read */
    emdpo_policy *pol;         /* a fit made in memory: the fitted policy (Llama: its models) */
    int64_t n_annot, n_dec, n_items; /* of the whole data, when it was a share */
    double elapsed;
    /* A fit on one process's share of the data (data/data.h): res and
     * annot hold the share's annotators, the whole posterior's entropy is
     * gamma_entropy, and emdpo_fit_write must be called on every process. */
    int shard;
    double gamma_entropy;
};

/* A zeroed fit for K types (K arrays allocated: eta, empty, and for
 * Llama the policy names "type_1" ..). */
int emdpo_fit_alloc(emdpo_family family, int K, emdpo_fit **out);

/* Takes over an EM run's result, policy and data sizes (res and pol are
 * emptied); the fit's settings are em's. */
int emdpo_fit_from_em(emdpo_family family, emdpo_em_result *res, emdpo_policy **pol, const emdpo_data *d,
                      const emdpo_em_opts *em, double elapsed, emdpo_fit **out);

/* The name fit.json gives init: "kmeans++" for k-means, else the option's. */
const char *emdpo_fit_init_label(emdpo_init init);

/* The options that read f's data as it was read for the fit. */
void emdpo_fit_read_opts(const emdpo_fit *f, emdpo_read_opts *o);

#endif
