/* A strict RFC 8259 JSON reader producing a read-only tree (json_write.h
 * writes JSON). Used for JSONL preference data, safetensors headers, model
 * config files and every JSON file emdpo writes, so it treats its input as
 * hostile: nesting is bounded, strings must be valid UTF-8, and every
 * deviation from the RFC is an error with the byte offset where it was
 * found. Numbers assume the "C" LC_NUMERIC locale. */
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

/* The value stored under key, or NULL when absent or obj is not an object. */
const emdpo_json *emdpo_json_get(const emdpo_json *obj, const char *key);

/* "null", "boolean", "number", "string", "array" or "object". */
const char *emdpo_json_type_name(emdpo_json_type type);

#endif
