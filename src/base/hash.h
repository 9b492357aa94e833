/* The hash of every string table in the library (open addressing over
 * names and texts): FNV-1a's step and 64-bit prime, from an offset basis of
 * our own (1469598103934665603, not FNV's 14695981039346656037). Any odd
 * basis hashes as well; this one is kept so that every table keeps its
 * layout. */
#ifndef EMDPO_HASH_H
#define EMDPO_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t emdpo_hash_bytes(const void *s, size_t n) {
    const unsigned char *b = s;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

static inline uint64_t emdpo_hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

#endif
