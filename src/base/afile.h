/* Atomic output files: write to a temporary file beside the target, then
 * rename over it on commit, so a failed run never leaves half a file. */
#ifndef EMDPO_AFILE_H
#define EMDPO_AFILE_H

#include <stddef.h>
#include <stdio.h>

#include "emdpo.h"

typedef struct emdpo_afile {
    FILE *fp;      /* write here */
    char *path;    /* final name */
    char *tmp;     /* temporary name, NULL when there is none */
} emdpo_afile;

/* The temporary file is path.tmp.PID. Opening also removes the path.tmp.PID
 * files that writers killed mid-write left, those of PIDs no longer running
 * (a live PID's is another run's write in progress).
 * 0, EMDPO_ERR_IO (the temporary file cannot be created), EMDPO_ERR_NOMEM
 * or EMDPO_ERR_INVALID_ARG (an empty path); diag (may be NULL) then names
 * path and what failed. */
int emdpo_afile_open(emdpo_afile *af, const char *path, emdpo_diag *diag);
/* Flushes, checks for write errors, fsyncs and renames. On failure removes
 * the temporary file and returns EMDPO_ERR_IO with diag naming the file.
 * Releases af either way. */
int emdpo_afile_commit(emdpo_afile *af, emdpo_diag *diag);
/* Discards the temporary file. Safe on a handle that failed to open or was
 * committed. */
void emdpo_afile_abort(emdpo_afile *af);

/* Writes path atomically through writer(fp, ctx): EMDPO_ERR_IO with diag's
 * file and message when it cannot be written, EMDPO_ERR_NOMEM. */
typedef void (*emdpo_afile_writer)(FILE *fp, const void *ctx);
int emdpo_afile_write(const char *path, emdpo_afile_writer writer, const void *ctx, emdpo_diag *diag);
/* The same for dir/name, creating dir (and its parents) when missing. */
int emdpo_afile_write_in(const char *dir, const char *name, emdpo_afile_writer writer, const void *ctx,
                         emdpo_diag *diag);

#endif
