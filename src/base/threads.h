/* OpenMP when the build has it, one thread when it does not. */
#ifndef EMDPO_THREADS_H
#define EMDPO_THREADS_H

#ifdef _OPENMP
#include <omp.h>
static inline int emdpo_max_threads(void) { return omp_get_max_threads(); }
static inline int emdpo_thread_num(void) { return omp_get_thread_num(); }
static inline void emdpo_set_threads(int n) { omp_set_num_threads(n); }
#else
static inline int emdpo_max_threads(void) { return 1; }
static inline int emdpo_thread_num(void) { return 0; }
static inline void emdpo_set_threads(int n) { (void)n; }
#endif

/* Below this many element operations a parallel region costs more than it
 * saves (and on a loaded machine far more): such loops run on one thread.
 * Results do not depend on this choice, only the speed. */
#define EMDPO_PAR_MIN_WORK 200000

#endif
