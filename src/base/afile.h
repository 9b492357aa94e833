/* Atomic output files: write to a temporary file beside the target, then
 * rename over it on commit, so a failed run never leaves half a file. */
#ifndef EMDPO_AFILE_H
#define EMDPO_AFILE_H

#include <stdio.h>

typedef struct emdpo_afile {
    FILE *fp;           /* write here */
    char path[4096];    /* final name */
    char tmp[4096];     /* temporary name */
} emdpo_afile;

/* 0, or EMDPO_ERR_IO / EMDPO_ERR_INVALID_ARG (path too long). */
int emdpo_afile_open(emdpo_afile *af, const char *path);
/* Flushes, checks for write errors, fsyncs and renames. On failure removes
 * the temporary file and returns EMDPO_ERR_IO. */
int emdpo_afile_commit(emdpo_afile *af);
/* Discards the temporary file. Safe to call on an unopened (zeroed) handle. */
void emdpo_afile_abort(emdpo_afile *af);

#endif
