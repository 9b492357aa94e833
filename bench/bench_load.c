/* Loads one checkpoint through emdpo_llama_load, as training does (float32
 * parameters), or with FROZEN through emdpo_llama_load_frozen, as scoring
 * does (a 16-bit file's matrices kept in 16 bits), and prints a RESULT
 * line: the seconds the load took, the peak resident memory above what the
 * process held before it (the load's own peak: getrusage's maxrss grows
 * only during the load), and the parameters' float32 size, in MiB, under
 * NAME (default emdpo). bench/st_load.sh runs it.
 *
 * bench_load --touch MIB: the floor of any float32 load instead, the time
 * to allocate and first write MIB MiB (the kernel zeroes each fresh page). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "emdpo.h"

static double rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--touch") == 0) {
        size_t n = (size_t)atol(argv[2]) << 20;
        double base = rss_mib(), t0 = now();
        char *p = malloc(n);
        if (!p) return 1;
        memset(p, 1, n);
        printf("RESULT touch_s=%.4f touch_peak_mib=%.1f check=%d\n", now() - t0, rss_mib() - base, p[n / 2]);
        free(p);
        return 0;
    }
    if (argc < 2 || argc > 4 || (argc == 4 && strcmp(argv[3], "frozen") != 0)) {
        fprintf(stderr, "usage: bench_load MODEL [NAME [frozen]] | bench_load --touch MIB\n");
        return 2;
    }
    const char *name = argc >= 3 ? argv[2] : "emdpo";
    double base = rss_mib(), t0 = now();
    emdpo_llama *m = NULL;
    emdpo_diag d;
    int rc = argc == 4 ? emdpo_llama_load_frozen(argv[1], &m, &d) : emdpo_llama_load(argv[1], &m, &d);
    double s = now() - t0;
    if (rc) {
        fprintf(stderr, "%s: %s\n", d.file, d.msg);
        return 1;
    }
    printf("RESULT %s_s=%.4f %s_peak_mib=%.1f f32_mib=%.1f params=%zu dtype=%s frozen=%d\n", name, s, name,
           rss_mib() - base, (double)emdpo_llama_n_params(m) * 4 / 1048576.0, emdpo_llama_n_params(m),
           emdpo_dtype_name(emdpo_llama_file_dtype(m)), emdpo_llama_is_frozen(m));
    emdpo_llama_free(m);
    return 0;
}
