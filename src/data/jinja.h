/* A small Jinja interpreter that renders chat templates as @huggingface/jinja
 * 0.5.13 does (the engine behind transformers.js): its lexer (with
 * lstrip_blocks and trim_blocks on, a single trailing newline dropped, the
 * `{% generation %}` tags removed), its parser and its evaluator, down to
 * its quirks: JavaScript's loose `==`, `%` with the sign of the dividend,
 * `.strip('x')` ignoring its argument, string lengths and indices in UTF-16
 * code units while slices count code points, `tojson`'s spacing.
 *
 * What it does not do, it refuses rather than render differently:
 * EMDPO_ERR_UNSUPPORTED (diag: the template, its line, the construct) for
 * call blocks, argument unpacking, macros that read caller/varargs/kwargs,
 * tojson(sort_keys=true), case mapping of letters outside ASCII and
 * Latin-1 (upper, lower, capitalize; caseless scripts pass), indexing half
 * of a character outside the BMP and printing a function. Errors that
 * @huggingface/jinja raises itself (a type error, an unknown filter) are
 * EMDPO_ERR_PARSE with the template's line; a syntax error is too.
 * raise_exception(msg) is EMDPO_ERR_INVALID_ARG with exactly msg (cut to
 * fit) in diag->msg, the line of the call in diag->line.
 *
 * Hostile templates are bounded: nesting while parsing, evaluation depth
 * and macro recursion, statements executed, memory held by one render and
 * output size (EMDPO_ERR_LIMIT). */
#ifndef EMDPO_DATA_JINJA_H
#define EMDPO_DATA_JINJA_H

#include <stddef.h>

#include "base/json.h"
#include "emdpo.h"

typedef struct emdpo_jinja emdpo_jinja;

typedef struct emdpo_jinja_limits {
    size_t max_output; /* bytes of rendered text (also of any one string built) */
    size_t max_memory; /* bytes of values one render may hold */
    long max_steps;    /* statements, loop iterations and calls per render */
    int max_depth;     /* nested evaluation, macro calls included */
} emdpo_jinja_limits;

/* 64 MiB output, 512 MiB memory, 20 million steps, depth 200. */
void emdpo_jinja_limits_init(emdpo_jinja_limits *lim);

/* Parses src[0..len) (UTF-8; NUL bytes allowed in text) into a template.
 * name (may be NULL) is what diagnostics call it. EMDPO_ERR_PARSE (diag:
 * name, line, what), EMDPO_ERR_UNSUPPORTED, EMDPO_ERR_NOMEM. */
int emdpo_jinja_parse(const char *src, size_t len, const char *name, emdpo_jinja **out, emdpo_diag *diag);
void emdpo_jinja_free(emdpo_jinja *t);

/* Renders t with the members of vars (a JSON object, or NULL) as global
 * variables, beside the built-ins true/false/none (also True/False/None),
 * raise_exception, range and namespace. JSON numbers with an integral value
 * are integers, the rest floats (as JavaScript's Number.isInteger). *out is
 * NUL-terminated, *out_len bytes before the NUL; free it with
 * emdpo_free(*out, *out_len + 1). lim NULL: the defaults. */
int emdpo_jinja_render(const emdpo_jinja *t, const emdpo_json *vars, const emdpo_jinja_limits *lim, char **out,
                       size_t *out_len, emdpo_diag *diag);

#endif
