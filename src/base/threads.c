#include "base/threads.h"

#include "emdpo.h"

void emdpo_set_threads(int n) {
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
#else
    (void)n;
#endif
}
