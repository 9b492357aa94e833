#include "base/afile.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/diag.h"
#include "base/file.h"

static void release(emdpo_afile *af) {
    emdpo_strfree(af->path);
    emdpo_strfree(af->tmp);
    af->path = af->tmp = NULL;
}

/* Removes the temporary files of path that writers killed mid-write left
 * (path.tmp.PID of a PID that no longer runs): they would otherwise pile up
 * beside checkpoints rewritten every few steps. A live PID's file is
 * another run's write in progress and stays. */
static void remove_stale(const char *path) {
    char *dir = emdpo_path_dir(path);
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t nb = strlen(base);
    DIR *dp = dir ? opendir(dir) : NULL;
    struct dirent *e;
    while (dp && (e = readdir(dp))) {
        const char *n = e->d_name;
        if (strncmp(n, base, nb) || strncmp(n + nb, ".tmp.", 5)) continue;
        const char *digits = n + nb + 5;
        char *end;
        errno = 0;
        long pid = strtol(digits, &end, 10);
        if (errno || *end || end == digits || *digits < '1' || *digits > '9' || pid == (long)getpid() ||
            (pid_t)pid != pid || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char *stale = emdpo_path_join(dir, n);
        if (stale) remove(stale);
        emdpo_strfree(stale);
    }
    if (dp) closedir(dp);
    emdpo_strfree(dir);
}

int emdpo_afile_open(emdpo_afile *af, const char *path, emdpo_diag *diag) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path);
    if (n == 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "empty file name");
    char suffix[32];
    int ns = snprintf(suffix, sizeof suffix, ".tmp.%ld", (long)getpid());
    af->tmp = emdpo_malloc(n + (size_t)ns + 1);
    if (!af->tmp) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    memcpy(af->tmp, path, n);
    memcpy(af->tmp + n, suffix, (size_t)ns + 1);
    if (!(af->path = emdpo_strdup(path))) {
        release(af);
        return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    remove_stale(path);
    af->fp = fopen(af->tmp, "wb");
    if (!af->fp) {
        int err = errno;
        release(af);
        return emdpo_diag_at(diag, EMDPO_ERR_IO, path, 0, "cannot create a file beside it: %s", strerror(err));
    }
    return EMDPO_OK;
}

int emdpo_afile_commit(emdpo_afile *af, emdpo_diag *diag) {
    if (!af->fp) {
        release(af);
        return emdpo_diag_fail(diag, EMDPO_ERR_IO, "no file to commit");
    }
    int bad = fflush(af->fp) != 0 || ferror(af->fp);
    if (!bad) bad = fsync(fileno(af->fp)) != 0;
    bad |= fclose(af->fp) != 0;
    af->fp = NULL;
    if (!bad) bad = rename(af->tmp, af->path) != 0;
    int err = errno;
    if (bad) {
        remove(af->tmp);
        emdpo_diag_at(diag, EMDPO_ERR_IO, af->path, 0, "cannot write: %s", strerror(err));
    }
    release(af);
    return bad ? EMDPO_ERR_IO : EMDPO_OK;
}

void emdpo_afile_abort(emdpo_afile *af) {
    if (af->fp) fclose(af->fp);
    af->fp = NULL;
    if (af->tmp) remove(af->tmp);
    release(af);
}

int emdpo_afile_write(const char *path, emdpo_afile_writer writer, const void *ctx, emdpo_diag *diag) {
    emdpo_afile af;
    int rc = emdpo_afile_open(&af, path, diag);
    if (rc) return rc;
    writer(af.fp, ctx);
    return emdpo_afile_commit(&af, diag);
}

int emdpo_afile_write_in(const char *dir, const char *name, emdpo_afile_writer writer, const void *ctx,
                         emdpo_diag *diag) {
    int rc = emdpo_mkdirs(dir, diag);
    if (rc) return rc;
    char *path = emdpo_path_join(dir, name);
    rc = path ? emdpo_afile_write(path, writer, ctx, diag) : emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    emdpo_strfree(path);
    return rc;
}
