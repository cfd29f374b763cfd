/* rt_curl.h - outbound HTTP requests on a libuv loop (libcurl multi).
 *
 * This is the engine half of the HTTP client: it knows nothing of Lua. One
 * rt_curl_t drives one curl multi handle from a loop with the multi socket
 * API (a uv_poll per socket curl asks for, one uv_timer for curl's timeouts).
 * curl keeps finished connections in the multi's pool and reuses them for
 * later requests to the same host.
 *
 * A request is started with its options and a completion callback. The
 * callback is called exactly once, from the loop (never from inside
 * rt_curl_start), unless the request is aborted first or the engine is
 * closed: then it is never called. When a function that takes a callback
 * returns an error, the callback will never be called. */
#ifndef RT_CURL_H
#define RT_CURL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rt_err.h"
#include "rt_netaddr.h"

typedef struct rt_curl rt_curl_t;
typedef struct rt_curl_req rt_curl_req_t;

/* Errors are codes of rt_err.h (negative; 0 is success). Those of
 * rt_curl_start and rt_curl_open: RT_EINVAL (a bad option: the message
 * says which) and RT_ENOMEM (out of memory, or curl refused the handle).
 */

/* A header: a name and a value, not NUL-terminated. */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} rt_curl_header_t;

/* What to send. Every pointer needs to live only during rt_curl_start:
 * the engine copies what it keeps. */
typedef struct {
    const char *method;              /* NULL: "GET" (or "POST" if body) */
    const char *url;                 /* NUL-terminated http(s) URL */
    const rt_curl_header_t *headers; /* request headers, nheaders of them */
    size_t nheaders;
    const char *body; /* NULL: no body */
    size_t body_len;
    uint64_t timeout_ms;         /* whole request; 0: none */
    uint64_t connect_timeout_ms; /* 0: curl's default (300 s) */
    uint64_t max_body;           /* response body limit; 0: none */
    int follow_redirects;        /* 0 (default): a 3xx is the answer */
    long max_redirects;          /* with follow_redirects; <0: 5 */
    int deny_internal;           /* refuse to connect to internal
                                       * addresses (rt_netaddr.h), after
                                       * DNS, but those in allow */
    const rt_cidr_t *allow;      /* nallow ranges (copied) */
    size_t nallow;
    const char *ca_file; /* PEM bundle of CAs trusted for
                                       * https instead of the system's
                                       * (self-signed engines); NULL:
                                       * the system's */
} rt_curl_opts_t;

/* What came back. Pointers are valid only during the callback. */
typedef struct {
    /* 0 on success (any HTTP status is a success), else a code of
     * rt_err.h: RT_ETIMEOUT, RT_EREFUSED, RT_ECONNECT, RT_ERESOLVE,
     * RT_ETOO_LARGE, RT_ETLS, RT_EPROTOCOL, RT_EBAD_URL, RT_EREDIRECTS,
     * RT_EEMPTY_REPLY, RT_ECONNECTION, RT_EBLOCKED (deny_internal),
     * RT_ENOMEM, RT_EFAILED. */
    int error;
    const char *message;             /* curl's detail; "" on success */
    long status;                     /* HTTP status of the last response */
    const rt_curl_header_t *headers; /* of the last response, in order */
    size_t nheaders;
    const char *body; /* never NULL; body_len bytes */
    size_t body_len;
} rt_curl_result_t;

/* Called once when the request ends. req is freed when it returns. */
typedef void (*rt_curl_done_cb)(rt_curl_req_t *req, const rt_curl_result_t *res,
                                void *data);

/* Creates an engine on loop. Returns NULL when out of memory or when curl
 * cannot be initialised. The engine holds no active handle while idle, so
 * it never keeps the loop alive by itself. */
rt_curl_t *rt_curl_new(uv_loop_t *loop);

/* Aborts every request (no callback is called), drops the connection pool
 * and closes the handles; memory is freed by the loop's close callbacks, so
 * run the loop once more before uv_loop_close. Must not be called from a
 * completion callback. */
void rt_curl_close(rt_curl_t *c);

/* Starts a request. On success returns 0 and sets *out (may be NULL if the
 * caller does not need to abort). On failure returns RT_EINVAL or
 * RT_ENOMEM, sets *err to a static message (when err is not NULL),
 * and cb is never called. */
int rt_curl_start(rt_curl_t *c, const rt_curl_opts_t *o, rt_curl_done_cb cb,
                  void *data, rt_curl_req_t **out, const char **err);

/* Aborts a request whose callback has not been called yet: the transfer is
 * removed from the multi (its connection is closed if it was in use), the
 * request is freed, and the callback is never called. Also releases a
 * streamed request in any state (see below). Must not be called from
 * inside curl's callbacks (the engine never calls the caller there). */
void rt_curl_abort(rt_curl_req_t *req);

/* Number of requests started and neither completed nor aborted. */
size_t rt_curl_active(const rt_curl_t *c);

/* Easy handles kept for the next requests: the pool grows to what the
 * requests in flight need, and handles no request took for trim_ms
 * (default 10 s; rt_curl_set_idle_trim changes it, for tests) are freed
 * down to a few. */
size_t rt_curl_idle(const rt_curl_t *c);
void rt_curl_set_idle_trim(rt_curl_t *c, unsigned trim_ms);

/* ---- streamed responses ------------------------------------------------
 *
 * rt_curl_open starts a request whose response is read as it arrives
 * instead of handed over whole. The caller is told through one event
 * callback, always from the loop (never from inside an rt_curl_*
 * function, never on curl's stack):
 *   RT_CURL_EV_HEAD  the final status and headers are in (rt_curl_status,
 *                    rt_curl_header); once, before any DATA
 *   RT_CURL_EV_DATA  body bytes are buffered (rt_curl_body); more may
 *                    have come when the caller looks
 *   RT_CURL_EV_END   the transfer is over (rt_curl_ended says how); the
 *                    last event. Bytes still buffered stay readable.
 * The caller reads with rt_curl_body and drops what it has read with
 * rt_curl_consume. When more than buffer_bytes are buffered and unread the
 * transfer is paused (the server is held back by TCP), and it resumes
 * when the caller consumes below that. max_body still bounds the whole
 * body ("too large"). A transfer that fails before its head ends with END
 * alone.
 *
 * A streamed request is always released with rt_curl_abort, exactly once,
 * whatever its state: a transfer still running is aborted (its connection
 * is closed), an ended one is freed. No event comes after that. */
typedef enum {
    RT_CURL_EV_HEAD = 1,
    RT_CURL_EV_DATA = 2,
    RT_CURL_EV_END = 3
} rt_curl_event_t;

typedef void (*rt_curl_event_cb)(rt_curl_req_t *req, rt_curl_event_t ev,
                                 void *data);

/* Default of buffer_bytes (when 0): unread bytes before the pause. */
#define RT_CURL_STREAM_BUFFER (256 * 1024)

/* Starts a streamed request. On success returns 0 and sets *out (which
 * must not be NULL). On failure returns RT_EINVAL or RT_ENOMEM,
 * sets *err, and cb is never called. */
int rt_curl_open(rt_curl_t *c, const rt_curl_opts_t *o, size_t buffer_bytes,
                 rt_curl_event_cb cb, void *data, rt_curl_req_t **out,
                 const char **err);

/* The HTTP status of the response (0 before its head). */
long rt_curl_status(const rt_curl_req_t *req);

/* Headers of the final response, in order. Pointers are valid until the
 * next event or rt_curl_consume (trailers may be appended). rt_curl_header
 * returns 0, or RT_EINVAL when i is out of range. */
size_t rt_curl_header_count(const rt_curl_req_t *req);
int rt_curl_header(const rt_curl_req_t *req, size_t i, rt_curl_header_t *out);

/* The body bytes buffered and not yet consumed (never NULL). Valid until
 * the next event or rt_curl_consume. */
const char *rt_curl_body(const rt_curl_req_t *req, size_t *len);

/* Drops the first n buffered bytes (all of them when n is larger); a
 * paused transfer resumes once fewer than buffer_bytes are left. */
void rt_curl_consume(rt_curl_req_t *req, size_t n);

/* 1 once the transfer has ended (END was or is about to be delivered),
 * else 0. When ended, *error is 0 for a complete response, or the code
 * of rt_curl_result_t, and *message curl's detail ("" when none), valid
 * until the request is released. */
int rt_curl_ended(const rt_curl_req_t *req, int *error, const char **message);

#endif
