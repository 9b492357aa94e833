/* Internal interface between emdpo_data_read/emdpo_data_write (dataio.c) and
 * the per-format readers and writers. Readers fill diag (line and msg; the
 * file name is already set) for EMDPO_ERR_PARSE only: dataio.c describes
 * EMDPO_ERR_IO and EMDPO_ERR_NOMEM itself. */
#ifndef EMDPO_DATAIO_H
#define EMDPO_DATAIO_H

#include <stddef.h>
#include <stdio.h>

#include "data.h"

/* Streams a file one line at a time through the allocation hook, so huge
 * files never sit in memory whole. */
typedef struct emdpo_lines {
    FILE *fp;
    char *buf;   /* the current line, NUL-terminated, without "\n" or "\r\n"
                    and, on line 1, without a UTF-8 byte order mark */
    size_t len;  /* bytes in buf (NUL bytes read from the file count) */
    size_t cap;
    long lineno; /* 1-based number of the current line */
} emdpo_lines;

/* Reads the next line into lr->buf. *got is 0 at end of file. Returns 0,
 * EMDPO_ERR_NOMEM or EMDPO_ERR_IO. */
int emdpo_lines_next(emdpo_lines *lr, int *got);
void emdpo_lines_free(emdpo_lines *lr);

/* True when the line holds only spaces, tabs and carriage returns. */
int emdpo_line_is_blank(const char *s, size_t len);

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void emdpo_diag_set(emdpo_diag *diag, long line, const char *fmt, ...);

/* The builder refuses a decision whose group differs from the annotator's
 * earlier ones; this words that refusal for the reader's diag. */
void emdpo_diag_group_conflict(emdpo_diag *diag, long line, const char *annotator, const char *group);

int emdpo_read_jsonl(emdpo_lines *lr, emdpo_data **out, emdpo_diag *diag);
int emdpo_read_csv(emdpo_lines *lr, emdpo_data **out, emdpo_diag *diag);

/* Writers leave stream errors for the caller to find when it commits the
 * file. The JSONL writer refuses data it cannot represent (invalid UTF-8,
 * non-finite features, items with neither features nor text) with
 * EMDPO_ERR_INVALID_ARG or EMDPO_ERR_UNSUPPORTED and diag->msg set. */
int emdpo_write_jsonl(const emdpo_data *d, FILE *fp, emdpo_diag *diag);
/* Checks, before any file is created, that d fits the long CSV layout; the
 * CSV writer then cannot fail on content. */
int emdpo_csv_check_writable(const emdpo_data *d, emdpo_diag *diag);
void emdpo_write_csv(const emdpo_data *d, FILE *fp);

/* One CSV field, RFC 4180: quoted (quotes doubled) when it holds a comma, a
 * quote or a line break. */
void emdpo_csv_write_field(FILE *fp, const char *s);

#endif
