/* rt_buf.h - room in (and appends to) a growable byte buffer (char *buf, its length and
 * capacity kept by the caller): the one way the engine grows the buffers
 * it appends to (response bodies and headers, streamed and WebSocket
 * output, stdin lines, event-stream lines, encoded JSON). */
#ifndef RT_BUF_H
#define RT_BUF_H

#include <stddef.h>
#include <string.h>

/* Grows the buffer (see rt_buf_reserve); callers use rt_buf_reserve. */
int rt_buf_grow(char **buf, size_t len, size_t *cap, size_t need);

/* Makes room for need more bytes after len: the capacity doubles from
 * 1 KiB until they fit. Returns 0, or -1 (buffer unchanged) when out of
 * memory or when len + need would overflow. Inline: the encoders call it
 * for every piece they append, and the room is nearly always there. */
static inline int rt_buf_reserve(char **buf, size_t len, size_t *cap,
                                 size_t need)
{
    if (need <= *cap - len)
        return 0;
    return rt_buf_grow(buf, len, cap, need);
}

/* Appends n bytes of s, growing as rt_buf_reserve does, and adds n to
 * *len. Returns 0, or -1 (nothing appended) when out of memory. */
static inline int rt_buf_append(char **buf, size_t *len, size_t *cap,
                                const void *s, size_t n)
{
    if (rt_buf_reserve(buf, *len, cap, n) != 0)
        return -1;
    if (n > 0)
        memcpy(*buf + *len, s, n);
    *len += n;
    return 0;
}

#endif
