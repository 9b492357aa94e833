/* Annotator-keyed CSV tables: a header "annotator,COL,..." and one row per
 * annotator of finite numbers. posterior.csv is one, and so are annotator
 * weight files; both are read by this one reader. */
#ifndef EMDPO_TABLE_H
#define EMDPO_TABLE_H

#include <stdint.h>

#include "emdpo.h"

typedef struct emdpo_table {
    int ncol;        /* value columns (the header's fields after "annotator") */
    char **col;      /* (ncol) their names */
    int64_t n;       /* rows */
    char **annot;    /* (n) */
    long *line;      /* (n) the line each row is on */
    double *v;       /* (n, ncol), or (n) of the one column wanted */
    int wanted;      /* -1: all columns kept; else the column kept */
    size_t annot_cap, line_cap, v_cap;
    /* lookup by annotator id: open addressing over annot */
    int64_t *slots;
    size_t n_slots;
} emdpo_table;

/* Reads path. want: the one column to keep (NULL: keep all; a column name
 * not in the header is a parse error), check_min_cols: at least this many
 * value columns. An annotator given twice, a row of another field count,
 * a value that is not a finite number >= lo are parse errors (diag: file,
 * line, what; lo = -INFINITY accepts any finite number). */
int emdpo_table_read(const char *path, const char *want, int min_cols, double lo, emdpo_table **out,
                     emdpo_diag *diag);
void emdpo_table_free(emdpo_table *t);

/* The row of annotator id, -1 when absent. */
int64_t emdpo_table_find(const emdpo_table *t, const char *id);

#endif
