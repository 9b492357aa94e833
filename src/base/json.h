/* A strict RFC 8259 JSON reader producing a read-only tree (json_write.h
 * writes JSON). Used for JSONL preference data, safetensors headers, model
 * config files and every JSON file emdpo writes, so it treats its input as
 * hostile: nesting is bounded, strings must be valid UTF-8, and every
 * deviation from the RFC is an error with the byte offset where it was
 * found. Numbers assume the "C" LC_NUMERIC locale.
 *
 * Text in memory is parsed whole (emdpo_json_parse). Record files are
 * streamed (emdpo_json_stream): bytes are pulled through a bounded buffer
 * and one record's tree is built at a time under limits the reader gives,
 * so that memory follows what the reader keeps, not the longest line. */
#ifndef EMDPO_JSON_H
#define EMDPO_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Deeper input is rejected so that the recursive parser's stack stays small. */
#define EMDPO_JSON_MAX_DEPTH 256

typedef enum emdpo_json_type {
    EMDPO_JSON_NULL,
    EMDPO_JSON_BOOL,
    EMDPO_JSON_NUMBER,
    EMDPO_JSON_STRING,
    EMDPO_JSON_ARRAY,
    EMDPO_JSON_OBJECT
} emdpo_json_type;

typedef struct emdpo_json emdpo_json;
typedef struct emdpo_json_member emdpo_json_member;

struct emdpo_json {
    emdpo_json_type type;
    int boolean;  /* BOOL: 0 or 1 */
    int is_int;   /* NUMBER: written without fraction or exponent and fits int64 */
    size_t len;   /* STRING: bytes, not counting the terminating NUL (a decoded
                     \u0000 makes len exceed strlen); ARRAY, OBJECT: count */
    size_t full_len; /* STRING: the decoded length in the input; above len when
                        the string was elided (emdpo_json_limits.keep) */
    int has_nul;     /* STRING: a decoded \u0000 in it, an elided part included */
    double num;   /* NUMBER: always finite */
    int64_t inum; /* NUMBER with is_int: the exact value */
    union {
        const char *str;                  /* STRING: UTF-8, NUL-terminated */
        const emdpo_json *elems;          /* ARRAY */
        const emdpo_json_member *members; /* OBJECT, in document order, keys unique */
    } u;
};

struct emdpo_json_member {
    const char *key; /* UTF-8, NUL-terminated */
    size_t key_len;
    emdpo_json value;
};

typedef struct emdpo_json_error {
    size_t offset; /* byte offset into the text where parsing failed */
    int limit;     /* 1: valid JSON beyond an emdpo_json_limits bound */
    char msg[96];
} emdpo_json_error;

/* A document owns every value parsed into it; freeing it frees them all. It
 * can be reused: each parse replaces the previous tree, keeping the memory. */
typedef struct emdpo_json_doc emdpo_json_doc;

int emdpo_json_doc_create(emdpo_json_doc **out);
void emdpo_json_doc_free(emdpo_json_doc *doc);

/* Parses text[0..len) (no NUL terminator needed) as exactly one JSON value.
 * Returns 0 with *root valid until the next parse or free, EMDPO_ERR_PARSE
 * with err filled, or EMDPO_ERR_NOMEM. Numbers whose magnitude overflows a
 * double are parse errors. */
int emdpo_json_parse(emdpo_json_doc *doc, const char *text, size_t len, const emdpo_json **root,
                     emdpo_json_error *err);

/* ---- Streaming ----------------------------------------------------------
 * Bounds on one streamed value (0: none). With keep, a string of more than
 * 3·keep decoded bytes keeps its first and last keep bytes or slightly
 * fewer (cut at UTF-8 characters), back to back, and its full_len says how
 * long it was: whoever needs only a text's beginning and end (a tokenizer
 * window) gets them exactly, in bounded memory; its UTF-8 is still checked
 * throughout. A key longer than max_key bytes, or a number literal
 * longer than max_key characters, is an error with err->limit set; so is
 * an array under the root object's key list_key with more than list_max
 * elements (a reader's bound on what a record may list, e.g. its types),
 * found at the first element beyond it, before the memory grows. */
typedef struct emdpo_json_limits {
    size_t keep;
    size_t max_key;
    const char *list_key;
    size_t list_max;
} emdpo_json_limits;

/* Copies up to cap (>= 16) of the input's next bytes to dst; *n is 0 at
 * its end. Returns 0 or a status (EMDPO_ERR_IO, EMDPO_ERR_NOMEM), which
 * ends the parse with that status. lines.h's readers have this shape. */
typedef int (*emdpo_json_read_fn)(void *ctx, char *dst, size_t cap, size_t *n);

/* Values of one input read through a buffer of EMDPO_JSON_STREAM_BUF bytes. */
#define EMDPO_JSON_STREAM_BUF 65536
typedef struct emdpo_json_stream emdpo_json_stream;

/* A stream parsing into doc (which the stream does not own) under lim. */
int emdpo_json_stream_create(emdpo_json_doc *doc, const emdpo_json_limits *lim, emdpo_json_stream **out);
void emdpo_json_stream_free(emdpo_json_stream *st);
/* Starts a new input (offsets and newlines count from 0 again); whatever
 * the previous one left unread is dropped. */
void emdpo_json_stream_reset(emdpo_json_stream *st, emdpo_json_read_fn read, void *ctx);
/* Skips whitespace; *c is the next byte, or -1 at the input's end. */
int emdpo_json_stream_peek(emdpo_json_stream *st, int *c, emdpo_json_error *err);
/* Parses the next value into the doc (replacing its tree). */
int emdpo_json_stream_value(emdpo_json_stream *st, const emdpo_json **root, emdpo_json_error *err);
/* The next element of the array that the input holds ('[' is read on the
 * first call): *got is 0 after its ']'. Each element is a tree of its own. */
int emdpo_json_stream_element(emdpo_json_stream *st, const emdpo_json **elem, int *got, emdpo_json_error *err);
/* Goes on with the same input from another source (offsets and newlines
 * go on counting): a document that began within a line and goes on over
 * the next ones (lines.h's emdpo_lines_read_on). */
void emdpo_json_stream_switch(emdpo_json_stream *st, emdpo_json_read_fn read, void *ctx);
/* Skips whitespace and checks that the input ends. */
int emdpo_json_stream_end(emdpo_json_stream *st, emdpo_json_error *err);
/* Newlines read so far as whitespace between tokens: the line of the
 * position reached, counted from the input's first line as 0. */
long emdpo_json_stream_newlines(const emdpo_json_stream *st);
/* The newlines before the last value (or element) began. */
long emdpo_json_stream_value_newlines(const emdpo_json_stream *st);

/* The value stored under key, or NULL when absent or obj is not an object. */
const emdpo_json *emdpo_json_get(const emdpo_json *obj, const char *key);

/* "null", "boolean", "number", "string", "array" or "object". */
const char *emdpo_json_type_name(emdpo_json_type type);

#endif
