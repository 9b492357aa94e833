/* Files and paths: reading a whole file, joining and resolving paths
 * without fixed-size buffers, creating directories, and a monotonic clock.
 * Strings returned here come from the allocation hook; free them with
 * emdpo_strfree. */
#ifndef EMDPO_FILE_H
#define EMDPO_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "emdpo.h"

/* The whole file at path in *buf, NUL-terminated (*len bytes before the
 * NUL; free with emdpo_free(*buf, *len + 1)). EMDPO_ERR_IO ("cannot open:
 * ...", "read error: ...") or EMDPO_ERR_NOMEM with diag's message. */
int emdpo_file_read(const char *path, char **buf, size_t *len, emdpo_diag *diag);

/* dir + "/" + name; NULL when out of memory. */
char *emdpo_path_join(const char *dir, const char *name);
/* The directory part of path ("." when it has none). */
char *emdpo_path_dir(const char *path);
/* The absolute, resolved form of path, or a copy of path when it cannot
 * be resolved (it does not exist yet). */
char *emdpo_path_real(const char *path);

/* 1 when path is a directory (or a regular file, or exists at all). */
int emdpo_path_is_dir(const char *path);
int emdpo_path_is_file(const char *path);
int emdpo_path_exists(const char *path);

/* emdpo_mkdirs (mkdir -p) is public: emdpo/fitfile.h. */

/* zlib's crc32 of the next n bytes of fp (checkpoints' checksums):
 * EMDPO_ERR_IO when fewer are left, EMDPO_ERR_NOMEM. */
int emdpo_file_crc32(FILE *fp, int64_t n, uint32_t *crc);

/* Seconds on a monotonic clock. */
double emdpo_now(void);

#endif
