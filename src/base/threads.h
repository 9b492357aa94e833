/* OpenMP when the build has it, one thread when it does not (emdpo_set_threads,
 * the public setter, is in threads.c). */
#ifndef EMDPO_THREADS_H
#define EMDPO_THREADS_H

#ifdef _OPENMP
#include <omp.h>
static inline int emdpo_max_threads(void) { return omp_get_max_threads(); }
static inline int emdpo_thread_num(void) { return omp_get_thread_num(); }
#else
static inline int emdpo_max_threads(void) { return 1; }
static inline int emdpo_thread_num(void) { return 0; }
#endif

/* Below this many element operations a parallel region costs more than it
 * saves (and on a loaded machine far more): such loops run on one thread.
 * Results do not depend on this choice, only the speed. */
#define EMDPO_PAR_MIN_WORK 200000

#endif
