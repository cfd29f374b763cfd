/* rt_sse_lines.h - the line layer of server-sent events (the WHATWG
 * text/event-stream format), over bytes as they arrive: lines end with
 * CRLF, LF or CR (a CR at the end of one piece and an LF at the start of
 * the next are one end); a UTF-8 BOM at the very start is skipped; a line
 * starting with ':' is a comment and is dropped; "field: value" loses one
 * space after the colon; a line without a colon is a field with an empty
 * value. What the fields mean (data, event, id, retry, dispatch on a
 * blank line) is the caller's (lua/chorus/http/sse.lua).
 *
 * Done in C for streamed responses because LuaJIT interns every string
 * and hashes one of 128 bytes or more from a few of its bytes: the lines
 * of a model's stream are long and alike, and each one made a Lua string
 * (the piece read, then the line) is compared with its look-alikes still
 * in memory. Here only each value becomes a string. */
#ifndef RT_SSE_LINES_H
#define RT_SSE_LINES_H

#include <stddef.h>

typedef struct {
    char *buf; /* the start of a line cut by the end of a piece */
    size_t len, cap;
    int skip_lf; /* the last piece ended with CR: a leading LF is its pair */
    int started; /* the BOM check is done */
} rt_sse_lines_t;

/* Called for each complete line: a blank line has field == NULL; else
 * field/flen is the name (not empty) and value/vlen the value (vlen may
 * be 0). Returns 0 to go on, anything else to stop the feed with it. */
typedef int (*rt_sse_line_cb)(void *arg, const char *field, size_t flen,
                              const char *value, size_t vlen);

void rt_sse_lines_init(rt_sse_lines_t *p);

/* Feeds n bytes. Returns 0, -1 when out of memory, or what cb returned
 * to stop (the bytes after that line are then not consumed: the caller
 * stops reading the stream). */
int rt_sse_lines_feed(rt_sse_lines_t *p, const char *data, size_t n,
                      rt_sse_line_cb cb, void *arg);

/* The stream ended: 1 when bytes of an unfinished line were left (which
 * the standard discards), else 0. Forgets them. */
int rt_sse_lines_finish(rt_sse_lines_t *p);

void rt_sse_lines_free(rt_sse_lines_t *p);

#endif
