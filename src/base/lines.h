/* A line reader that streams a file through the allocation hook, so huge
 * files never sit in memory whole. */
#ifndef EMDPO_LINES_H
#define EMDPO_LINES_H

#include <stddef.h>
#include <stdio.h>

typedef struct emdpo_lines {
    FILE *fp;
    void *gz;    /* a zlib gzFile instead of fp (emdpo_lines_open of a gzip file) */
    char *buf;   /* the current line, NUL-terminated, without "\n" or "\r\n"
                    and, on line 1, without a UTF-8 byte order mark */
    size_t len;  /* bytes in buf (NUL bytes read from the file count) */
    size_t cap;
    long lineno; /* 1-based number of the current line */
} emdpo_lines;

/* Opens path for reading lines, gzip-compressed or plain (zlib reads
 * both). EMDPO_ERR_IO with errno set. */
int emdpo_lines_open(emdpo_lines *lr, const char *path);
/* Closes what emdpo_lines_open opened and frees the buffer. */
void emdpo_lines_close(emdpo_lines *lr);

/* Reads the next line into lr->buf. *got is 0 at end of file. Returns 0,
 * EMDPO_ERR_NOMEM or EMDPO_ERR_IO. */
int emdpo_lines_next(emdpo_lines *lr, int *got);
/* Frees the buffer; the caller closes fp. */
void emdpo_lines_free(emdpo_lines *lr);

/* True when s[0..len) holds only spaces, tabs and carriage returns. */
int emdpo_line_is_blank(const char *s, size_t len);

#endif
