/* rt_logline.h - one log line: a JSON object, or text with key=value
 * pairs, with secrets taken out.
 *
 * JSON: {"ts":"2024-05-01T12:00:00.123Z","level":"info","msg":"...",
 * "key":value,...}. Text (a terminal): 2024-05-01T12:00:00.123 info  msg
 * key=value key="a value"... Strings are JSON-escaped (text: quoted when
 * they hold a space, a quote, '=' or a control character); bytes that are
 * not well-formed UTF-8, and NULs, become U+FFFD, so every line parses.
 *
 * A builder grows its buffer as needed (nothing here is fixed-size); an
 * allocation that fails marks the line failed and later calls do nothing.
 * A builder is reused from line to line (rt_logline_begin resets it). */
#ifndef RT_LOGLINE_H
#define RT_LOGLINE_H

#include <stddef.h>

typedef struct rt_logline {
    char *p; /* the line so far (malloc'd) */
    size_t len, cap;
    int json;           /* JSON, else text */
    int failed;         /* an allocation failed: the line is lost */
    long last_sec;      /* the second ts_prefix was formatted for */
    char ts_prefix[24]; /* "YYYY-MM-DDTHH:MM:SS." of last_sec */
} rt_logline_t;

/* Starts a line at time t (seconds since the epoch), at level (a short
 * word: "debug", "info", "warn", "error"), with message msg. */
void rt_logline_begin(rt_logline_t *b, int json, double t, const char *level,
                      const char *msg, size_t msglen);

/* Adds a field. Keys are escaped as strings are. */
void rt_logline_str(rt_logline_t *b, const char *key, size_t klen,
                    const char *v, size_t vlen);
/* Integers print as such; NaN and infinities as null (JSON) or the word
 * (text). */
void rt_logline_num(rt_logline_t *b, const char *key, size_t klen, double v);
void rt_logline_bool(rt_logline_t *b, const char *key, size_t klen, int v);
/* v is a JSON text, added as is (JSON) or quoted when needed (text). */
void rt_logline_raw(rt_logline_t *b, const char *key, size_t klen,
                    const char *v, size_t vlen);

/* Ends the line ("}\n" or "\n"). Returns 0, or -1 when it failed. */
int rt_logline_end(rt_logline_t *b);

/* Takes secrets out of the finished line, in place:
 *   - each of the n values in secrets (lens[i] bytes; those under 4
 *     bytes are ignored) becomes [redacted];
 *   - a URL's password (scheme://user:password@host) becomes [redacted];
 *   - an API key (chk_ and 64 hex digits) keeps its 12-character public
 *     prefix (its id) and loses the rest: chk_0123abcd[redacted].
 * Returns 0, or -1 when an allocation failed (the line is then failed). */
int rt_logline_redact(rt_logline_t *b, const char *const *secrets,
                      const size_t *lens, size_t n);

/* Frees the buffer; the builder may be used again. */
void rt_logline_free(rt_logline_t *b);

#endif
