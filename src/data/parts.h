/* Reading one record file in parts under mpirun (read_csv.c, read_jsonl.c):
 * each process parses only the records of its share of the annotators, so
 * that no process holds more than its share while reading.
 *
 * An annotator starts at a record whose annotator differs from the record
 * before's (the records of an annotator must be adjacent). The processes
 * first split the bytes after the header evenly; process q takes the
 * records that begin in its bytes and decides, for each of them but its
 * first, and for the record after its bytes, whether it starts an
 * annotator. The lines before each process's bytes are summed over the
 * processes of lower rank first, so that every record is seen at its true
 * line; a first pass counts the starts, whose sums over the processes of
 * lower rank give each start its global index; a second pass notes the
 * offset and line of the starts where a process's share (emdpo_dist_share:
 * whole runs of EMDPO_DIST_ALIGN annotators) begins, and each process then
 * reads exactly its share's records. Memory beyond the share: one record
 * and a few numbers per process. */
#ifndef EMDPO_PARTS_H
#define EMDPO_PARTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data/data.h"

/* Where this process reads: the records that begin in bytes [begin, end),
 * lines line .. end_line - 1 (end_line LONG_MAX: to the end of the file);
 * they are annotators annot_base .. of all_annot. */
typedef struct emdpo_part {
    int64_t begin, end;
    long line, end_line;
    int64_t annot_base, all_annot;
} emdpo_part;

/* One pass of a reader over the records that begin in bytes [from, to) of
 * fp, the first on line `line`, and the record after them: counts in
 * *n_starts the annotator starts it decides (its records but the first,
 * and the record after) and in *n_records its records; the start with
 * global index first + k, when it is want[j] (ascending), puts its offset
 * and line in at[2j], at[2j + 1]. EMDPO_ERR_PARSE (diag set) when the
 * records cannot be told apart; a record that cannot be read counts as an
 * annotator of its own, for the reading to refuse at its line. */
typedef int (*emdpo_part_scan_fn)(void *ctx, FILE *fp, int64_t from, int64_t to, long line, int64_t first,
                                  const int64_t *want, int n_want, int64_t *at, int64_t *n_starts,
                                  int64_t *n_records);

/* The first line start at or after byte at of the records (body .. size). */
int emdpo_part_line_start(FILE *fp, int64_t at, int64_t body, int64_t size, int64_t *out);

/* Decides this process's part of fp, whose records begin at byte body on
 * line body_line. A collective: every process calls it. */
int emdpo_part_find(FILE *fp, int64_t body, long body_line, emdpo_part_scan_fn scan, void *ctx, emdpo_part *part);

/* The first line of each annotator a process reads, in order. */
typedef struct emdpo_part_annots {
    long *line;
    size_t n, cap;
} emdpo_part_annots;

/* A record of annotator annot on `line`, after a record of prev (NULL for
 * the first): refuses an annotator that comes back after other annotators'
 * records (b: NULL while nothing was added), else notes a new one. */
int emdpo_part_note(emdpo_part_annots *a, const emdpo_data_builder *b, const char *prev, const char *annot, long line,
                    emdpo_diag *diag);
void emdpo_part_annots_free(emdpo_part_annots *a);

/* Ends the reading of part: *out from b (which it takes) as the share
 * part->annot_base .. of part->all_annot, then refuses an annotator of it
 * (a->line its first lines) that another process also read: each process
 * sends each of its annotators (its name and first line) to the process
 * its name hashes to, which looks for a name sent twice. A collective;
 * *out is NULL on failure. */
int emdpo_part_finish(emdpo_data_builder *b, const emdpo_part *part, const emdpo_part_annots *a, emdpo_data **out,
                      emdpo_diag *diag);

#endif
