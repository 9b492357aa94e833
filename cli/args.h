/* Command-line flags: a table per command, long options only (--name value
 * or --name=value), with generated help. A flag's dst points straight into
 * the library's option struct; help shows the value found there before
 * parsing as the default, so every default is stated once, by the
 * library's *_init. */
#ifndef EMDPO_CLI_ARGS_H
#define EMDPO_CLI_ARGS_H

#include <stdint.h>
#include <stdio.h>

typedef enum cli_type {
    CLI_STR,  /* const char * */
    CLI_INT,  /* int */
    CLI_I64,  /* int64_t */
    CLI_U64,  /* uint64_t */
    CLI_DBL,  /* double */
    CLI_FLAG, /* int, set to 1 when present; takes no value */
    CLI_ENUM  /* an enum (int-sized), named by names(0), names(1), ... until NULL */
} cli_type;

typedef struct cli_opt {
    const char *name;    /* without the leading dashes */
    cli_type type;
    void *dst;
    const char *metavar; /* shown in help, e.g. "FILE" */
    const char *help;    /* help shows "(default: X)" unless it says "(default" itself */
    int required;
    int seen;            /* set by cli_parse */
    const char *(*names)(int); /* CLI_ENUM: the library's names of the values */
} cli_opt;

typedef struct cli_cmd {
    const char *name;     /* e.g. "fit" */
    const char *synopsis; /* one line */
    const char *details;  /* paragraphs after the flag list, may be NULL */
    cli_opt *opts;
    int n_opts;
} cli_cmd;

/* 0: parsed; 2: bad usage (message printed); -1: help printed (exit 0). */
int cli_parse(const cli_cmd *cmd, int argc, char **argv);
void cli_help(const cli_cmd *cmd, FILE *fp);
/* 1 when the flag named name was given. */
int cli_seen(const cli_cmd *cmd, const char *name);
/* Parses "A..B" or "A" into lo, hi (inclusive). 0 or -1 on a bad form. */
int cli_parse_range(const char *s, int *lo, int *hi);
/* Parses a comma-separated list of doubles into out (cap entries); returns
 * the count, or -1 on a bad number or too many entries. */
int cli_parse_doubles(const char *s, double *out, int cap);

#endif
