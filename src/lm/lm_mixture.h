/* Mixture policies: the policy MMRA-AE returns. With member policies
 * pi_1..pi_K (one checkpoint each) and weights w on the simplex, the
 * mixture generates by drawing a member k ~ w and then y ~ pi_k, so
 *
 *   pi_mix(y|x) = sum_k w_k pi_k(y|x),
 *   log pi_mix(y|x) = logsumexp_k (log w_k + log pi_k(y|x)),
 *
 * and any expectation under it is the w-weighted sum of the members'
 * expectations (which is how regrets of mixtures are computed: member
 * columns once, then combined).
 *
 * On disk it is the mixture.json that emdpo_mixture_write (emdpo/lm.h)
 * writes:
 *   {"kind": "mixture", "weights": [...], "members": [...], "beta": ...,
 *    "reference": "..."}
 * read strictly: kind "mixture"; weights non-negative and summing to 1
 * within 1e-9; members non-empty strings, as many as the weights; beta
 * (optional) a positive number; reference (optional) a non-empty string.
 * Other keys are ignored. Members are checkpoints (a Hugging Face directory
 * or a llama2.c file), not mixtures; relative member and reference paths
 * start from the file's directory. */
#ifndef EMDPO_LM_MIXTURE_H
#define EMDPO_LM_MIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "emdpo.h"
#include "lm/engine/llama.h"
#include "lm/engine/lm_sample.h"
#include "lm/lm_adapted.h"

typedef struct emdpo_mixture {
    int K;
    double *w;         /* (K) */
    char **member;     /* (K) the paths as the file writes them */
    char **path;       /* (K) the same, resolved against the file's directory */
    double beta;       /* NAN when the file has none */
    char *reference;   /* resolved; NULL when the file has none */
    emdpo_llama **model; /* (K) after emdpo_mixture_load, else NULL entries */
} emdpo_mixture;

/* Parses text[0..len) as the mixture file at path (path names it in diag
 * and locates relative members). EMDPO_ERR_PARSE with diag (file, the line
 * for malformed JSON, what was wrong), EMDPO_ERR_NOMEM. */
int emdpo_mixture_parse(const char *text, size_t len, const char *path, emdpo_mixture **out,
                           emdpo_diag *diag);

/* Loads every member into m->model and checks them with
 * emdpo_mixture_check. On failure nothing stays loaded and diag names
 * the member: the loaders' statuses, EMDPO_ERR_UNSUPPORTED for a member
 * that is itself a mixture, EMDPO_ERR_INVALID_ARG for members that
 * disagree. */
int emdpo_mixture_load(emdpo_mixture *m, emdpo_diag *diag);

/* Opens every member of m (read, not loaded) as a policy into pol (m->K):
 * members that are PEFT adapter directories on the mixture's reference
 * (their base_model_name_or_path) share that reference, loaded frozen once
 * into *base (NULL when none is), and run unmerged; other members load as
 * emdpo_mixture_load loads them. For scoring: the decoders need plain
 * models (emdpo_mixture_open's, or emdpo_lm_policy_plain). Errors and
 * checks as emdpo_mixture_load; nothing stays open on failure. */
int emdpo_mixture_open_policies(const emdpo_mixture *m, emdpo_llama **base, emdpo_lm_policy *pol, emdpo_diag *diag);

/* 0 when models[0..K) share one vocabulary and context length, else
 * EMDPO_ERR_INVALID_ARG with diag's message naming the first that differs
 * (diag's file is left to the caller). */
int emdpo_mixture_check(const emdpo_llama *const *models, int K, emdpo_diag *diag);

/* The mixture's log-probabilities from its members': logp (K, n) row k the
 * log pi_k of n sequences, out (n) = logsumexp_k (log w_k + logp[k][i]).
 * Members of weight 0 contribute nothing (their log-probability is not
 * read); a single member of weight 1 gives its own values bit for bit. */
void emdpo_mixture_logp(int K, const double *w, int64_t n, const double *logp, double *out);

/* The member of each of n samples: sample i draws k ~ w (w >= 0, sum > 0)
 * from stream i of seed, so member[i] depends on seed and i alone. */
void emdpo_mixture_draw(int K, const double *w, uint64_t seed, int64_t n, int *member);

/* Generation from the mixture of models[0..K) (shared vocabulary; max_T
 * within every context): member[i] as emdpo_mixture_draw, then sample
 * i continues prompts[i] under that member with s. The samples of member k
 * are decoded together (emdpo_generate_batch) in order of i, drawing from
 * the streams of a seed derived from seed and k, never from the streams of
 * the member draws. out, n_out and stop (may be NULL) as
 * emdpo_generate_batch. Deterministic for a seed; the tokens do not depend
 * on the thread count. EMDPO_ERR_INVALID_ARG for K < 1, weights that are
 * negative, not finite or all zero, and as emdpo_generate_batch;
 * EMDPO_ERR_NOMEM. */
int emdpo_mixture_generate(const emdpo_llama *const *models, int K, const double *w, const emdpo_sampler *s,
                              uint64_t seed, const int *const *prompts, const int *prompt_len, int n, int max_new,
                              int max_T, int *member, int *out, int *n_out, int *stop);

/* Regret of a mixture over M generating columns for the K types that are
 * the first K columns: L (K, M) as lm_mmra.h's (L[z][b] = E_{y ~ pi_b}
 * [r_z]), w (M) the mixture's weight on each column, so
 *   regret[z] = L[z][z] - sum_b w[b] L[z][b] = sum_b w[b] (L[z][z] - L[z][b])
 * (the second form is emdpo_mmra_mixture_regret's, whose bits it gives).
 * With se (K, M) the standard errors of independent columns (may be NULL),
 * regret_se[z] = sqrt(sum_b c_b^2 se[z][b]^2), c_b = [b == z] - w[b];
 * columns with c_b = 0 contribute nothing. */
void emdpo_mixture_regret(int K, int M, const double *L, const double *se, const double *w, double *regret,
                             double *regret_se);

#endif
