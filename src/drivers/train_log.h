/* The metrics log of training commands (dpo, sft, fit --policy llama). */
#ifndef EMDPO_TRAIN_LOG_H
#define EMDPO_TRAIN_LOG_H

#include <stdio.h>

#include "emdpo.h"

/* One line of the metrics log, under TRL's names: loss, grad_norm,
 * learning_rate, the rewards when dpo, examples_per_second eps, step and
 * epoch, then extra (more ", \"key\": value" pairs, or NULL). */
void emdpo_train_log_line(FILE *fp, const emdpo_train_metrics *m, int dpo, double eps, const char *extra);

#endif
