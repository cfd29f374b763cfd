/* rt_buf.h - room in a growable byte buffer (char *buf, its length and
 * capacity kept by the caller): the one way the engine grows the buffers
 * it appends to (response bodies and headers, streamed and WebSocket
 * output, stdin lines, event-stream lines, encoded JSON). */
#ifndef RT_BUF_H
#define RT_BUF_H

#include <stddef.h>

/* Makes room for need more bytes after len: the capacity doubles from
 * 1 KiB until they fit. Returns 0, or -1 (buffer unchanged) when out of
 * memory or when len + need would overflow. */
int rt_buf_reserve(char **buf, size_t len, size_t *cap, size_t need);

#endif
