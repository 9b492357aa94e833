/* Python literals as repr() writes them: the columns of GlobalOpinionQA's
 * CSV. A format with no C library, so a small strict reader of our own. */
#ifndef EMDPO_PYLIT_H
#define EMDPO_PYLIT_H

#include <stddef.h>

#include "emdpo.h"

/* The subset of Python's literal syntax that repr() writes for the CSV's
 * columns: strings ('..' or "..", with \\ \' \" \n \r \t \a \b \f \v \0
 * \xHH \uHHHH \UHHHHHHHH escapes; decoded to UTF-8), numbers (ints and
 * floats, plus nan / inf / -inf), None, True, False, lists and dicts. The
 * wrapper `defaultdict(<class 'NAME'>, {...})` yields its dict. Nothing else
 * (no tuples, no trailing commas, no string concatenation). */
typedef enum emdpo_py_type {
    EMDPO_PY_NONE,
    EMDPO_PY_BOOL,
    EMDPO_PY_NUM,
    EMDPO_PY_STR,
    EMDPO_PY_LIST,
    EMDPO_PY_DICT
} emdpo_py_type;

typedef struct emdpo_py {
    emdpo_py_type type;
    int is_int;            /* NUM: written without '.', exponent, nan or inf */
    double num;            /* NUM, BOOL (0 or 1) */
    char *str;             /* STR: UTF-8, NUL-terminated, len bytes */
    size_t len;            /* STR: bytes; LIST: elements; DICT: pairs */
    struct emdpo_py *elems; /* LIST: len values; DICT: 2*len (key, value) */
    size_t cap;            /* allocated entries of elems */
} emdpo_py;

#define EMDPO_PY_MAX_DEPTH 64

/* Parses text[0..len) as one literal (surrounding whitespace allowed).
 * Returns 0 with *out owned by the caller (emdpo_py_free), EMDPO_ERR_PARSE
 * with *err_off (byte offset) and msg filled, or EMDPO_ERR_NOMEM. Input must
 * be valid UTF-8. */
int emdpo_py_parse(const char *text, size_t len, emdpo_py **out, size_t *err_off, char *msg, size_t msg_n);
void emdpo_py_free(emdpo_py *v);
/* The value under a string key of a dict, or NULL. */
const emdpo_py *emdpo_py_get(const emdpo_py *dict, const char *key);

#endif
