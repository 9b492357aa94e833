/* Command-line flags: a table per command, long options only
 * (--name value or --name=value), with generated help. */
#ifndef EMDPO_CLI_ARGS_H
#define EMDPO_CLI_ARGS_H

#include <stdint.h>
#include <stdio.h>

typedef enum cli_type {
    CLI_STR,   /* const char * */
    CLI_INT,   /* int */
    CLI_I64,   /* int64_t */
    CLI_U64,   /* uint64_t */
    CLI_DBL,   /* double */
    CLI_FLAG   /* int, set to 1 when present; takes no value */
} cli_type;

typedef struct cli_opt {
    const char *name;    /* without the leading dashes */
    cli_type type;
    void *dst;
    const char *metavar; /* shown in help, e.g. "FILE" */
    const char *help;
    int required;
    int seen;            /* set by cli_parse */
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
/* Parses "A..B" or "A" into lo, hi (inclusive). 0 or -1 on a bad form. */
int cli_parse_range(const char *s, int *lo, int *hi);
/* Parses a comma-separated list of doubles into out (cap entries); returns
 * the count, or -1 on a bad number or too many entries. */
int cli_parse_doubles(const char *s, double *out, int cap);

#endif
