#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/json.h"
#include "base/json_write.h"
#include "base/threads.h"
#include "cli.h"

int cli_fail(const char *cmd, int rc, const emdpo_diag *diag, const char *what) {
    fprintf(stderr, "emdpo %s: ", cmd);
    if (diag && diag->file[0]) {
        fprintf(stderr, "%s:", diag->file);
        if (diag->line > 0) fprintf(stderr, "%ld:", diag->line);
        fputc(' ', stderr);
    }
    if (diag && diag->msg[0])
        fprintf(stderr, "%s\n", diag->msg);
    else
        fprintf(stderr, "%s: %s\n", what ? what : "failed", emdpo_status_name(rc));
    switch (rc) {
    case EMDPO_ERR_PARSE:
    case EMDPO_ERR_IO:
    case EMDPO_ERR_INVALID_ARG:
    case EMDPO_ERR_UNSUPPORTED:
    case EMDPO_ERR_LIMIT:
        return CLI_EXIT_USAGE;
    default:
        return CLI_EXIT_FAIL;
    }
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "emdpo %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_format(const char *name) {
    if (!name || strcmp(name, "auto") == 0) return EMDPO_FORMAT_AUTO;
    if (strcmp(name, "jsonl") == 0) return EMDPO_FORMAT_JSONL;
    if (strcmp(name, "csv") == 0) return EMDPO_FORMAT_CSV;
    return -1;
}

int cli_load_data(const char *cmd, const char *path, const char *format, emdpo_data **out) {
    int fmt = cli_format(format);
    if (fmt < 0) return cli_usage_error(cmd, "--format must be jsonl, csv or auto, not '%s'", format);
    emdpo_diag diag;
    memset(&diag, 0, sizeof diag);
    int rc = emdpo_data_read(path, (emdpo_format)fmt, out, &diag);
    if (rc) {
        if (!diag.file[0]) snprintf(diag.file, sizeof diag.file, "%s", path);
        return cli_fail(cmd, rc, &diag, "cannot read data");
    }
    return 0;
}

int cli_mkdirs(const char *cmd, const char *dir) {
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) return cli_usage_error(cmd, "bad output directory '%s'", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return cli_usage_error(cmd, "cannot create directory '%s': %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return cli_usage_error(cmd, "'%s' is not a directory", dir);
    return 0;
}

void cli_set_threads(int n) {
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_json_num(FILE *fp, double v) {
    if (isfinite(v))
        fprintf(fp, "%.17g", v);
    else
        fputs("null", fp);
}

void cli_json_nums(FILE *fp, const double *v, int64_t n) {
    fputc('[', fp);
    for (int64_t i = 0; i < n; i++) {
        if (i) fputs(", ", fp);
        cli_json_num(fp, v[i]);
    }
    fputc(']', fp);
}

void cli_json_str(FILE *fp, const char *s) {
    if (!s) {
        fputs("null", fp);
        return;
    }
    if (emdpo_json_write_string(fp, s) == EMDPO_ERR_INVALID_ARG) fputs("\"\"", fp);
}
