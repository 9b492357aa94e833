/* A line reader that streams a file through the allocation hook, so huge
 * files never sit in memory whole. Lines come whole (emdpo_lines_next) or,
 * for readers whose memory must not grow with the longest line, in pieces
 * of a bounded buffer (emdpo_lines_begin and emdpo_lines_read_line /
 * emdpo_lines_read_rest, the byte sources of json.h's streaming parser). */
#ifndef EMDPO_LINES_H
#define EMDPO_LINES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Bytes read from the file at a time. */
#define EMDPO_LINES_CHUNK 65536

typedef struct emdpo_lines {
    FILE *fp;
    void *gz;    /* a zlib gzFile instead of fp (emdpo_lines_open of a gzip file) */
    char *buf;   /* the current line, NUL-terminated, without "\n" or "\r\n"
                    and, on line 1, without a UTF-8 byte order mark */
    size_t len;  /* bytes in buf (NUL bytes read from the file count) */
    size_t cap;
    long lineno; /* 1-based number of the current line */
    /* Bytes read ahead of the current position (EMDPO_LINES_CHUNK of them). */
    char *chunk;
    size_t chunk_pos, chunk_len;
    int at_eof;    /* the file has no bytes beyond chunk */
    int line_open; /* emdpo_lines_begin started a line whose '\n' is not yet read */
    int newline_unseen; /* emdpo_lines_read_line ended the line at a '\n' it did not hand out */
    int io_error;  /* a read failed: EMDPO_ERR_IO from every call after */
} emdpo_lines;

/* Opens path for reading lines, gzip-compressed or plain (zlib reads
 * both). EMDPO_ERR_IO with errno set. */
int emdpo_lines_open(emdpo_lines *lr, const char *path);
/* Goes on reading a plain file (lr->fp, no gz) from byte offset, the
 * start of line lineno: a process's part of a file under mpirun.
 * EMDPO_ERR_IO when fp cannot seek. */
int emdpo_lines_seek(emdpo_lines *lr, int64_t offset, long lineno);
/* Closes what emdpo_lines_open opened and frees the buffers. */
void emdpo_lines_close(emdpo_lines *lr);

/* Reads the next line into lr->buf. *got is 0 at end of file. Returns 0,
 * EMDPO_ERR_NOMEM or EMDPO_ERR_IO. */
int emdpo_lines_next(emdpo_lines *lr, int *got);
/* Frees the buffers; the caller closes fp. */
void emdpo_lines_free(emdpo_lines *lr);

/* Starts the next line without reading it (*got is 0 at end of file):
 * counts it and skips line 1's byte order mark. Its bytes then come from
 * emdpo_lines_read_line. Returns 0, EMDPO_ERR_NOMEM or EMDPO_ERR_IO. */
int emdpo_lines_begin(emdpo_lines *lr, int *got);
/* Copies up to cap of the current line's next bytes to dst (its "\n" and a
 * "\r" before it left out); *n is 0 once the line is done. ctx is the
 * emdpo_lines (the signature of emdpo_json_read_fn). */
int emdpo_lines_read_line(void *ctx, char *dst, size_t cap, size_t *n);
/* Copies up to cap of the file's next bytes to dst, newlines included,
 * for a document that spans lines; *n is 0 at end of file. */
int emdpo_lines_read_rest(void *ctx, char *dst, size_t cap, size_t *n);

/* The current line's rest, a "\n", then the rest of the file: a document
 * that began on a line read with emdpo_lines_read_line goes on over the
 * lines after it. */
int emdpo_lines_read_on(void *ctx, char *dst, size_t cap, size_t *n);

/* True when s[0..len) holds only spaces, tabs and carriage returns. */
int emdpo_line_is_blank(const char *s, size_t len);

#endif
