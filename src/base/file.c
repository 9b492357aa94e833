#include "base/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>

#include "base/alloc.h"
#include "base/diag.h"

int emdpo_file_read(const char *path, char **buf, size_t *len, emdpo_diag *diag) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot open: %s", strerror(errno));
    char *b = NULL;
    size_t n = 0, cap = 0;
    int rc = EMDPO_OK;
    for (;;) {
        if (emdpo_grow((void **)&b, &cap, n + 65536, 1)) {
            rc = emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
            break;
        }
        size_t got = fread(b + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) rc = emdpo_diag_fail(diag, EMDPO_ERR_IO, "read error: %s", strerror(errno));
            break;
        }
    }
    fclose(f);
    char *exact = rc ? NULL : emdpo_realloc(b, cap, n + 1);
    if (!exact) {
        emdpo_free(b, cap);
        return rc ? rc : emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    }
    exact[n] = 0;
    *buf = exact;
    *len = n;
    return EMDPO_OK;
}

char *emdpo_path_join(const char *dir, const char *name) {
    size_t nd = strlen(dir), nn = strlen(name);
    char *s = emdpo_malloc(nd + nn + 2);
    if (!s) return NULL;
    memcpy(s, dir, nd);
    s[nd] = '/';
    memcpy(s + nd + 1, name, nn + 1);
    return s;
}

char *emdpo_path_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return emdpo_strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *s = emdpo_malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, path, n);
    s[n] = 0;
    return s;
}

char *emdpo_path_real(const char *path) {
    char *r = realpath(path, NULL); /* libc's allocation: copied into the hook's */
    char *s = emdpo_strdup(r ? r : path);
    free(r);
    return s;
}

int emdpo_path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int emdpo_path_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int emdpo_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int emdpo_mkdirs(const char *dir, emdpo_diag *diag) {
    emdpo_diag_reset(diag, dir);
    if (!dir) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "no directory");
    size_t n = strlen(dir);
    if (n == 0) return emdpo_diag_fail(diag, EMDPO_ERR_INVALID_ARG, "empty directory name");
    char *buf = emdpo_strdup(dir);
    if (!buf) return emdpo_diag_fail(diag, EMDPO_ERR_NOMEM, "out of memory");
    int rc = EMDPO_OK;
    for (size_t i = 1; i <= n && !rc; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            rc = emdpo_diag_fail(diag, EMDPO_ERR_IO, "cannot create directory '%s': %s", buf, strerror(errno));
        buf[i] = c;
    }
    emdpo_strfree(buf);
    if (!rc && !emdpo_path_is_dir(dir)) rc = emdpo_diag_fail(diag, EMDPO_ERR_IO, "'%s' is not a directory", dir);
    return rc;
}

double emdpo_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int emdpo_file_crc32(FILE *fp, int64_t n, uint32_t *crc) {
    enum { CHUNK = 1 << 16 };
    unsigned char *buf = emdpo_malloc(CHUNK);
    if (!buf) return EMDPO_ERR_NOMEM;
    uLong c = crc32(0L, Z_NULL, 0);
    int rc = EMDPO_OK;
    while (n > 0) {
        size_t want = n < CHUNK ? (size_t)n : CHUNK;
        if (fread(buf, 1, want, fp) != want) {
            rc = EMDPO_ERR_IO;
            break;
        }
        c = crc32(c, buf, (uInt)want);
        n -= (int64_t)want;
    }
    emdpo_free(buf, CHUNK);
    *crc = (uint32_t)c;
    return rc;
}
