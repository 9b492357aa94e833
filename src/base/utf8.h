/* UTF-8, shared by every text parser and writer: encoding a code point and
 * validating as RFC 3629 defines it (no overlongs, no surrogates, nothing
 * above U+10FFFF). */
#ifndef EMDPO_UTF8_H
#define EMDPO_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Writes code point cp (at most 0x10FFFF, not a surrogate) as UTF-8 into
 * out (room for 4 bytes); returns the byte count. */
size_t emdpo_utf8_encode(uint32_t cp, char *out);

/* The length (1..4) of the well-formed sequence starting at s, of which
 * avail >= 1 bytes are readable; 0 when it is not well-formed. */
size_t emdpo_utf8_seq_len(const unsigned char *s, size_t avail);

/* The code point at s (avail >= 1 bytes readable) in *cp and the length of
 * its well-formed sequence; a byte that starts none is itself, length 1. */
size_t emdpo_utf8_decode(const char *s, size_t avail, uint32_t *cp);

/* Offset of the first byte of s[0..n) that does not start a well-formed
 * sequence, or n when all of it is valid UTF-8. */
size_t emdpo_utf8_invalid_at(const char *s, size_t n);

#endif
