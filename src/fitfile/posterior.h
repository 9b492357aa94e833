/* posterior.csv: its reader is public (emdpo/fitfile.h); the writer is
 * emdpo_fit_write's. */
#ifndef EMDPO_POSTERIOR_H
#define EMDPO_POSTERIOR_H

#include <stdint.h>
#include <stdio.h>

#include "emdpo.h"

/* The header annotator,gamma_1..gamma_K, then n rows: annot[i], gamma row i
 * of (n, K) with round-tripping numbers. */
void emdpo_posterior_write_csv(FILE *fp, int K, int64_t n, const char *const *annot, const double *gamma);
/* Its rows alone (a process's share of them). */
void emdpo_posterior_write_rows(FILE *fp, int K, int64_t n, const char *const *annot, const double *gamma);

#endif
