/* UTF-8 encoding, shared by the text parsers. */
#ifndef EMDPO_UTF8_H
#define EMDPO_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Writes code point cp (at most 0x10FFFF, not a surrogate) as UTF-8 into
 * out (room for 4 bytes); returns the byte count. */
size_t emdpo_utf8_encode(uint32_t cp, char *out);

#endif
