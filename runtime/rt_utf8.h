/* rt_utf8.h - UTF-8 well-formedness (RFC 3629) and repair.
 *
 * Text that reaches the stores must be well-formed UTF-8 without NUL:
 * PostgreSQL refuses both in jsonb, and a JSON answer with a stray byte
 * breaks clients. */
#ifndef RT_UTF8_H
#define RT_UTF8_H

#include <stddef.h>

/* The offset of the first byte that is not part of well-formed UTF-8 (no
 * overlongs, no surrogates, nothing above U+10FFFF), or len when all of s
 * is well formed. */
size_t rt_utf8_check(const unsigned char *s, size_t len);

/* Like rt_utf8_check, but a NUL byte also counts as bad. */
size_t rt_utf8_check_text(const unsigned char *s, size_t len);

/* Writes s with every NUL byte and every byte of a malformed sequence
 * replaced by U+FFFD into out, which must hold rt_utf8_repair_size(len)
 * bytes. Returns the bytes written. */
size_t rt_utf8_repair(const unsigned char *s, size_t len, unsigned char *out);

/* The most rt_utf8_repair writes for len bytes of input (3 per byte). */
#define rt_utf8_repair_size(len) ((len)*3)

#endif
