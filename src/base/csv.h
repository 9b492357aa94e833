/* CSV (RFC 4180) records, read from a stream or a buffer, and fields
 * written for CSV output. One reader for every CSV the library takes:
 * long preference data, phrase inventories, survey banks, weights and
 * posteriors.
 *
 * Fields may be quoted ("" is a quote inside quotes) and quoted fields may
 * span lines. Records end at "\n", "\r\n" or a "\r" before the end of the
 * input. Blank lines (empty, or spaces, tabs and carriage returns only)
 * are skipped, and a UTF-8 byte order mark at the start is dropped. A
 * quote inside an unquoted field, text after a closing quote, a quoted
 * field left open and a NUL byte are parse errors. */
#ifndef EMDPO_CSV_H
#define EMDPO_CSV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "emdpo.h"

typedef struct emdpo_csv {
    FILE *fp;              /* the stream, or NULL to read p .. end */
    const char *p, *end;
    long line;             /* line of the next byte, 1-based */
    long rec_line;         /* line where the current record starts */
    int64_t pos;           /* offset of the next byte: bytes read since the
                              start, plus what the caller set it to */
    int64_t rec_pos;       /* offset of the current record's first byte */
    int started;           /* past the byte order mark check */
    char *buf;             /* the record's fields, each NUL-terminated */
    size_t buf_len, buf_cap;
    size_t *off;           /* (nf) start of each field in buf */
    long *fline;           /* (nf) line where each field starts */
    size_t off_cap, fline_cap;
    int nf;                /* fields in the current record */
} emdpo_csv;

/* A reader of the stream fp (not closed by the reader) or of buf[0..len). */
void emdpo_csv_init_file(emdpo_csv *r, FILE *fp);
void emdpo_csv_init_buf(emdpo_csv *r, const char *buf, size_t len);
/* Points r at buf[0..len) as emdpo_csv_init_buf does, keeping the buffers
 * it has grown: one reader for record after record of a line reader. */
void emdpo_csv_reset_buf(emdpo_csv *r, const char *buf, size_t len);

/* Goes on reading the stream, which the caller has moved (fseeko) to
 * offset pos, the start of line `line`, past the byte order mark check:
 * one part of a file read by several processes. */
void emdpo_csv_seek_file(emdpo_csv *r, int64_t pos, long line);

/* Reads the next record that is not a blank line: *got is 1 with the
 * record in r (nf fields, rec_line), 0 at the end. EMDPO_ERR_PARSE with
 * diag's line and message, EMDPO_ERR_IO, EMDPO_ERR_NOMEM. */
int emdpo_csv_next(emdpo_csv *r, int *got, emdpo_diag *diag);

/* Field i (0 <= i < nf) of the current record, NUL-terminated, in the
 * reader's buffer: the caller may change it until the next record. */
char *emdpo_csv_field(const emdpo_csv *r, int i);

/* The line where field i starts (quoted fields may span lines). */
long emdpo_csv_field_line(const emdpo_csv *r, int i);

/* The column of the header field named name in the current record, or -1. */
int emdpo_csv_column(const emdpo_csv *r, const char *name);

void emdpo_csv_free(emdpo_csv *r);

/* Writes s as one field: quoted (quotes doubled) when it holds a comma, a
 * quote or a line break; NULL writes nothing (an empty field). */
void emdpo_csv_write_field(FILE *fp, const char *s);

#endif
