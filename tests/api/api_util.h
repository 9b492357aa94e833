/* What the public-API tests share: a scratch directory and small files in
 * it. These tests see include/ and nothing of src/. */
#ifndef EMDPO_API_UTIL_H
#define EMDPO_API_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "emdpo.h"

static char api_dir[64];

/* A fresh scratch directory under TMPDIR (or /tmp), removed by api_done. */
static inline void api_init(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(api_dir, sizeof api_dir, "%.40s/emdpo_api_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(api_dir)) {
        perror("mkdtemp");
        exit(2);
    }
}

/* api_dir/name; the buffer is one of four, reused in turn: copy a path
 * that must outlive three more calls. */
static inline const char *api_path(const char *name) {
    static char buf[4][256];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", api_dir, name);
    return p;
}

/* Writes text to api_dir/name and returns the path. */
static inline const char *api_write(const char *name, const char *text) {
    const char *path = api_path(name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fputs(text, fp) < 0 || fclose(fp) != 0) {
        perror(path);
        exit(2);
    }
    return path;
}

static inline void api_done(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", api_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", api_dir);
}

#endif
