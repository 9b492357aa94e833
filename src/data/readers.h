/* The per-format readers and writers behind emdpo_data_read and
 * emdpo_data_write (dataio.c). Readers fill diag's line and message for
 * EMDPO_ERR_PARSE only (the file name is already set); dataio.c describes
 * EMDPO_ERR_IO and EMDPO_ERR_NOMEM itself. */
#ifndef EMDPO_READERS_H
#define EMDPO_READERS_H

#include <stdint.h>
#include <stdio.h>

#include "base/lines.h"
#include "data/data.h"

/* JSONL, one decision per line, or a JSON array of decisions
 * (read_jsonl.c); texts keep their ends as emdpo_data_read_kept says.
 * part = 1 (under mpirun, lr reading a plain FILE of which
 * emdpo_jsonl_splits says yes): this process reads only the lines of its
 * share of the annotators, as emdpo_read_csv's part, and every process
 * must call it. */
int emdpo_read_jsonl(emdpo_lines *lr, const emdpo_read_opts *o, size_t keep_text_bytes, int part, emdpo_data **out,
                     emdpo_diag *diag);
/* 1 when fp (at its start) can be read in parts: a regular file, not
 * gzip-compressed, whose records are lines (not one JSON array); fp is
 * back at its start. 0 otherwise, fp anywhere. */
int emdpo_jsonl_splits(FILE *fp);
/* The scan that finds the parts, over the lines that begin in bytes
 * [from, to) of fp (the first on line `line`) and the record after them:
 * *n_starts records that begin an annotator (all but the first, and the
 * record after), *n_records records. For the readers' fuzzer. */
int emdpo_jsonl_scan(FILE *fp, const emdpo_read_opts *o, int64_t from, int64_t to, long line, int64_t *n_starts,
                     int64_t *n_records);
/* Long CSV, one row per shown alternative (read_csv.c); *line gets the
 * line reached, for dataio.c's own messages. part = 1 (under mpirun, fp a
 * regular file): this process reads only its share of the annotators, by
 * byte ranges of the file (whole runs of EMDPO_DIST_ALIGN, as
 * emdpo_data_share keeps them), and every process must call it. */
int emdpo_read_csv(FILE *fp, const emdpo_read_opts *o, int part, emdpo_data **out, long *line, emdpo_diag *diag);

/* Writers leave stream errors for the caller to find when it commits the
 * file. The JSONL writer refuses data it cannot represent (invalid UTF-8,
 * non-finite features, items with neither features nor text) with
 * EMDPO_ERR_INVALID_ARG or EMDPO_ERR_UNSUPPORTED and diag->msg set. */
int emdpo_write_jsonl(const emdpo_data *d, FILE *fp, emdpo_diag *diag);
/* Checks, before any file is created, that d fits the long CSV layout; the
 * CSV writer then cannot fail on content. */
int emdpo_csv_check_writable(const emdpo_data *d, emdpo_diag *diag);
void emdpo_write_csv(const emdpo_data *d, FILE *fp);

#endif
