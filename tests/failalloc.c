#include "failalloc.h"

#include <stdlib.h>
#include <string.h>

#include "emdpo.h"

/* Each block carries its size in a header so frees can be checked. */
typedef struct {
    size_t size;
    size_t pad;
} hdr;

static long g_fail_at = -1, g_count, g_live, g_live_bytes;
static int g_sticky, g_size_errors;

static void *fa_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
    hdr *h = ptr ? (hdr *)ptr - 1 : NULL;
    if (h && h->size != osize) g_size_errors++;
    if (nsize == 0) {
        if (h) {
            g_live--;
            g_live_bytes -= (long)h->size;
            free(h);
        }
        return NULL;
    }
    long n = g_count++;
    if (g_fail_at >= 0 && (n == g_fail_at || (g_sticky && n > g_fail_at))) return NULL;
    hdr *nh = realloc(h, sizeof(hdr) + nsize);
    if (!nh) return NULL;
    if (!h) g_live++;
    g_live_bytes += (long)nsize - (long)(h ? nh->size : 0);
    nh->size = nsize;
    return nh + 1;
}

void failalloc_install(long fail_at, int sticky) {
    g_fail_at = fail_at;
    g_sticky = sticky;
    g_count = 0;
    g_size_errors = 0;
    emdpo_set_allocator(fa_alloc, NULL);
}

void failalloc_uninstall(void) { emdpo_set_allocator(NULL, NULL); }
long failalloc_count(void) { return g_count; }
long failalloc_live(void) { return g_live; }
long failalloc_live_bytes(void) { return g_live_bytes; }
int failalloc_size_errors(void) { return g_size_errors; }
