#include "base/afile.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "emdpo.h"

int emdpo_afile_open(emdpo_afile *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path);
    if (n == 0 || n + 16 >= sizeof af->tmp) return EMDPO_ERR_INVALID_ARG;
    memcpy(af->path, path, n + 1);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld", path, (long)getpid());
    af->fp = fopen(af->tmp, "wb");
    if (!af->fp) {
        af->tmp[0] = 0;
        return EMDPO_ERR_IO;
    }
    return EMDPO_OK;
}

int emdpo_afile_commit(emdpo_afile *af) {
    if (!af->fp) return EMDPO_ERR_IO;
    int bad = fflush(af->fp) != 0 || ferror(af->fp);
    if (!bad) bad = fsync(fileno(af->fp)) != 0;
    bad |= fclose(af->fp) != 0;
    af->fp = NULL;
    if (!bad) bad = rename(af->tmp, af->path) != 0;
    if (bad) {
        remove(af->tmp);
        af->tmp[0] = 0;
        return EMDPO_ERR_IO;
    }
    af->tmp[0] = 0;
    return EMDPO_OK;
}

void emdpo_afile_abort(emdpo_afile *af) {
    if (af->fp) fclose(af->fp);
    af->fp = NULL;
    if (af->tmp[0]) remove(af->tmp);
    af->tmp[0] = 0;
}
