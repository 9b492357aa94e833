/* A small test harness: CHECK-style assertions that count, a closing line in
 * the form "name: N passed, M failed", and a non-zero exit on any failure. */
#ifndef EMDPO_CHECK_H
#define EMDPO_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            check_passed++;                                                          \
        } else {                                                                     \
            check_failed++;                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECK_MSG(cond, ...)                                                \
    do {                                                                    \
        if (cond) {                                                         \
            check_passed++;                                                 \
        } else {                                                            \
            check_failed++;                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
        }                                                                   \
    } while (0)

/* |a-b| <= tol * max(1, |a|, |b|) */
#define CHECK_CLOSE(a, b, tol)                                                             \
    do {                                                                                   \
        double ca_ = (a), cb_ = (b), ct_ = (tol);                                          \
        double cs_ = fmax(1.0, fmax(fabs(ca_), fabs(cb_)));                                \
        CHECK_MSG(fabs(ca_ - cb_) <= ct_ * cs_, "%s = %.12g vs %s = %.12g (tol %g)", #a, ca_, #b, \
                  cb_, ct_);                                                               \
    } while (0)

#define CHECK_EQ_INT(a, b) \
    CHECK_MSG((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))

/* Call at the end of main. */
static inline int check_report(const char *name) {
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
