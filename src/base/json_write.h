/* Writing JSON: numbers that round-trip, arrays of them, and strings. The
 * one writer behind every JSON file the library produces. */
#ifndef EMDPO_JSON_WRITE_H
#define EMDPO_JSON_WRITE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* %.17g, so that reading it back gives the same double; a non-finite
 * value becomes null. */
void emdpo_json_num(FILE *fp, double v);
/* [v0, v1, ...] with ", " between. */
void emdpo_json_nums(FILE *fp, const double *v, int64_t n);
/* A quoted string; NULL becomes null and a string that is not valid UTF-8
 * "" (callers check text they cannot vouch for before writing). */
void emdpo_json_str(FILE *fp, const char *s);

/* Writes s as a quoted JSON string. s must be valid UTF-8: otherwise
 * nothing is written and EMDPO_ERR_INVALID_ARG is returned. EMDPO_ERR_IO
 * when the stream reports a write error. */
int emdpo_json_write_string(FILE *fp, const char *s);
/* The same for s[0..n), which may hold NUL bytes (written as \u0000). */
int emdpo_json_write_stringn(FILE *fp, const char *s, size_t n);

#endif
