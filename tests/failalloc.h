/* A test allocator that fails the n-th allocation and tracks live bytes, so
 * tests can sweep every failure point of an operation and check that it
 * returns EMDPO_ERR_NOMEM cleanly and leaks nothing. */
#ifndef EMDPO_FAILALLOC_H
#define EMDPO_FAILALLOC_H

#include <stddef.h>

/* Install with allocations numbered from 0; allocation number fail_at fails
 * (and every later one too when sticky). fail_at < 0 never fails. */
void failalloc_install(long fail_at, int sticky);
void failalloc_uninstall(void);
long failalloc_count(void);    /* allocations attempted since install */
long failalloc_live(void);     /* blocks currently live */
long failalloc_live_bytes(void);
int failalloc_size_errors(void); /* frees whose declared size disagreed */

#endif
