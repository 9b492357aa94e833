/* EM-DPO around any trainer: the E-step, the next round's weights and the
 * validation-margin criterion on arrays computed anywhere (emdpo/em.h's
 * emdpo_estep, emdpo_estep_weights, emdpo_margin_criterion). What they
 * share with the fitting code is here. */
#ifndef EMDPO_ESTEP_H
#define EMDPO_ESTEP_H

#include <stdint.h>

#include "emdpo.h"

/* Decisions by annotator: annotator a's decisions are order[start[a]] ..
 * order[start[a+1]-1], in increasing decision order (a stable counting
 * sort). start (n_annot + 1); *order (n_dec) is allocated (*order_bytes its
 * size) unless the decisions already come grouped in annotator order, when
 * it is NULL and decision start[a] + t is annotator a's t-th.
 * EMDPO_ERR_INVALID_ARG (diag names the decision) for an annotator
 * outside 0..n_annot-1, EMDPO_ERR_NOMEM. */
int emdpo_group_decisions(int64_t n_dec, const int64_t *annotator, int64_t n_annot, int64_t *start, int64_t **order,
                          size_t *order_bytes, emdpo_diag *diag);

#endif
