/* rt_http.h - HTTP/1.1 and WebSocket server on a libuv loop (H2O + wslay).
 *
 * This is the engine half of the HTTP server: it knows nothing of Lua. One
 * rt_http_server_t listens on one address with its own h2o configuration
 * and context, accepts connections and hands every request to one callback
 * as an rt_http_req_t. The callback answers now or later (from any later
 * loop callback) with rt_http_req_respond, streams the answer with
 * rt_http_req_stream, or upgrades the request to a WebSocket with
 * rt_http_req_websocket.
 *
 * HTTP/1.1 only (no TLS, no HTTP/2: those belong to a reverse proxy). The
 * process must ignore SIGPIPE (libuv writes with write(2)).
 *
 * Lifetimes. A request handle is shared by the engine and the caller: the
 * caller receives one reference and drops it with rt_http_req_release once,
 * answered or not. A request released unanswered is answered 503 by the
 * engine, so every request gets an answer and its connection never hangs.
 * Answering after the client went away is harmless: the write fails and
 * h2o closes the connection. A WebSocket handle works the same way:
 * rt_http_ws_release drops the caller's reference (closing the socket if
 * it is still open); its callback is never called after that.
 *
 * Callbacks are never called from inside the function that triggered them,
 * except the WebSocket callback, which rt_http_ws_send/close may call with
 * RT_HTTP_WS_CLOSED (and messages that arrived meanwhile) before returning.
 *
 * Limits: request bodies larger than max_body_bytes are answered 413 by h2o
 * before the body is read (from Content-Length; a chunked body as soon as
 * it passes the limit); a request head is capped by h2o at H2O_MAX_REQLEN
 * (about 408 KiB, 100 headers: 400) and by max_header_bytes here (431);
 * request_timeout_ms bounds both receiving a whole request and the idle
 * time of a keep-alive connection (h2o's http1 req_timeout); connections
 * over max_connections get a canned 503 and are closed. */
#ifndef RT_HTTP_H
#define RT_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rt_err.h"

typedef struct rt_http_server rt_http_server_t;
typedef struct rt_http_req rt_http_req_t;
typedef struct rt_http_ws rt_http_ws_t;

/* Errors are codes of rt_err.h (negative; 0 is success): RT_EINVAL (bad
 * argument: the message says which), RT_ENOMEM, RT_ECLOSED (the request's
 * connection is gone, or the WebSocket or server is closed), RT_EANSWERED
 * (the request was already answered), RT_EBACKPRESSURE (the WebSocket's
 * send queue is full), RT_ENOT_WEBSOCKET (not a handshake). */

/* Options. Zero means "the default" for every field. */
typedef struct {
    const char *host;              /* numeric address or name; "127.0.0.1" */
    int port;                      /* 0: any free port (see rt_http_port) */
    int reuseport;                 /* SO_REUSEPORT: N processes, one port */
    int backlog;                   /* listen backlog; 511 */
    size_t max_body_bytes;         /* larger request bodies: 413; 1 MiB */
    size_t max_header_bytes;       /* request line + headers: 431; 64 KiB */
    uint64_t request_timeout_ms;   /* whole request / keep-alive idle;
                                    * 10000 */
    size_t max_connections;        /* open connections (WebSockets too);
                                 * 10000 */
    size_t max_client_connections; /* of them, from one address: one
                                    * client must not lock the others
                                    * out; 2048 */
    size_t ws_max_queued_bytes;    /* outbound bytes queued per WebSocket
                                 * before send fails; 1 MiB */
    size_t ws_max_message_bytes;   /* inbound message limit (close 1009);
                                    * 1 MiB */
    uint64_t ws_close_timeout_ms;  /* wait for the peer's close frame;
                                    * 5000 */
} rt_http_opts_t;

/* Counters, for metrics. */
typedef struct {
    uint64_t requests;             /* requests handed to the callback or
                                    * refused by this engine (431, 503) */
    uint64_t requests_active;      /* handed over and not answered yet */
    uint64_t connections_total;    /* accepted and served */
    uint64_t connections_active;   /* open now (WebSockets included) */
    uint64_t connections_rejected; /* over max_connections or closing */
    uint64_t client_rejected;      /* over max_client_connections */
    uint64_t websockets_total;
    uint64_t websockets_active;
    uint64_t bytes_in;  /* request bodies + WebSocket messages */
    uint64_t bytes_out; /* response bodies + WebSocket messages */
} rt_http_stats_t;

/* A header: a name and a value, not NUL-terminated. */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} rt_http_header_t;

/* What a request carries. Pointers are valid until the request is
 * answered or released (copy what you keep). */
typedef struct {
    const char *method;
    size_t method_len;
    const char *path; /* raw request-target before '?', not decoded */
    size_t path_len;
    const char *query; /* raw text after '?'; "" when there is none */
    size_t query_len;
    const char *body; /* "" when there is none */
    size_t body_len;
    int version;     /* 0x100 (HTTP/1.0) or 0x101 (HTTP/1.1) */
    int websocket;   /* 1 if this is a WebSocket handshake */
    char remote[46]; /* peer address ("127.0.0.1", "::1"), "" unknown */
    int remote_port;
} rt_http_req_info_t;

/* A new request. req carries one reference owned by the callee, to be
 * dropped with rt_http_req_release. */
typedef void (*rt_http_request_cb)(rt_http_server_t *srv, rt_http_req_t *req,
                                   void *data);
/* The server finished closing; srv is freed right after this returns. */
typedef void (*rt_http_closed_cb)(rt_http_server_t *srv, void *data);

/* Starts listening. On success returns the server; on failure returns
 * NULL and sets *err (when err is not NULL) to a message in errbuf
 * (errlen bytes, always NUL-terminated). cb is never called on failure. */
rt_http_server_t *rt_http_server_new(uv_loop_t *loop, const rt_http_opts_t *o,
                                     rt_http_request_cb cb, void *data,
                                     char *errbuf, size_t errlen);

/* The port the server listens on (useful with port 0). */
int rt_http_server_port(const rt_http_server_t *srv);

/* Copies the counters into *out. */
void rt_http_server_stats(const rt_http_server_t *srv, rt_http_stats_t *out);

/* Graceful close: stops accepting (the listener is closed), asks open
 * WebSockets to close (1001), answers later requests on kept-alive
 * connections with "Connection: close", closes idle connections, and lets
 * in-flight requests finish. After grace_ms the remaining requests are
 * answered 503 and one second later every remaining socket is shut down.
 * grace_ms 0 means that hard stop at once. When the last connection is
 * gone the h2o context is disposed (so the loop can exit), cb is called
 * (if not NULL) and the server is freed. Calling it again only shortens
 * the grace and replaces cb when the new one is not NULL. */
void rt_http_server_close(rt_http_server_t *srv, uint64_t grace_ms,
                          rt_http_closed_cb cb, void *data);

/* Detaches the caller: the request and closed callbacks are never called
 * again (later requests get 503). For owners that go away first. */
void rt_http_server_detach(rt_http_server_t *srv);

/* Fills *info. Returns 0, or RT_ECLOSED when the request is gone. */
int rt_http_req_info(const rt_http_req_t *req, rt_http_req_info_t *info);

/* Number of request headers (host, content-length and upgrade included,
 * names in lower case) and the i-th one. rt_http_req_header returns 0, or
 * RT_ECLOSED / RT_EINVAL (i out of range). */
size_t rt_http_req_header_count(const rt_http_req_t *req);
int rt_http_req_header(const rt_http_req_t *req, size_t i,
                       rt_http_header_t *out);

/* Answers the request: status 200..599, headers (names are sent in lower
 * case; content-length, transfer-encoding and connection are h2o's and
 * are skipped), and a body (copied; not sent for HEAD, 204 and 304).
 * Returns 0, RT_ECLOSED, RT_EANSWERED or RT_EINVAL (bad
 * status, header name or a CR/LF/NUL in a value; *err says which, when
 * err is not NULL). Nothing is sent on error. */
int rt_http_req_respond(rt_http_req_t *req, int status,
                        const rt_http_header_t *headers, size_t nheaders,
                        const char *body, size_t body_len, const char **err);

/* Drops the caller's reference; an unanswered request is answered 503,
 * a streamed response not ended is cut (see rt_http_stream_end). */
void rt_http_req_release(rt_http_req_t *req);

/* ---- streamed responses ------------------------------------------------
 *
 * rt_http_req_stream answers with a status and headers now and a body
 * written piece by piece (chunked transfer encoding for a 200 to an
 * HTTP/1.1 client; otherwise the body ends when the connection closes).
 * Written bytes are copied and queued; one write is in flight on the
 * socket at a time and what is queued meanwhile goes out with the next.
 * The caller watches rt_http_stream_queued and waits for
 * RT_HTTP_STREAM_WRITABLE (called after each socket write completes) when
 * too much is queued for a slow client. RT_HTTP_STREAM_CLOSED says the
 * client went away (noticed when a write fails: HTTP/1 does not read the
 * socket while it answers) or the server cut the stream at the end of a
 * graceful close; later writes fail with RT_ECLOSED. The callback is
 * never called after rt_http_stream_end or release; it may be called from
 * inside rt_http_server_close (hard stop). */
typedef enum {
    RT_HTTP_STREAM_WRITABLE = 1, /* a socket write completed */
    RT_HTTP_STREAM_CLOSED = 2    /* the stream is gone; no more events */
} rt_http_stream_event_t;

typedef void (*rt_http_stream_cb)(rt_http_req_t *req, rt_http_stream_event_t ev,
                                  void *ud);

/* Starts a streamed response (status, headers as rt_http_req_respond; the
 * head is sent at once). Returns 0, RT_ECLOSED, RT_EANSWERED or
 * RT_EINVAL (*err says why). The caller keeps its reference. */
int rt_http_req_stream(rt_http_req_t *req, int status,
                       const rt_http_header_t *headers, size_t nheaders,
                       rt_http_stream_cb cb, void *ud, const char **err);

/* Queues len bytes (copied). Returns 0, RT_ECLOSED (the client is
 * gone, or the stream was ended), RT_ENOMEM, or RT_EINVAL (not
 * a streamed response). A response without a body (HEAD, 204, 304) is
 * complete with its head: writing to it (and ending it) is ECLOSED. */
int rt_http_stream_write(rt_http_req_t *req, const char *data, size_t len);

/* Bytes queued or in flight, not yet taken by the socket. */
size_t rt_http_stream_queued(const rt_http_req_t *req);

/* Ends the stream after what is queued: ok = 1 completes the body (the
 * last chunk), ok = 0 cuts it (a broken chunk, then the connection is
 * closed), so the client knows the body is incomplete. Returns 0,
 * RT_ECLOSED (already gone or ended) or RT_EINVAL. */
int rt_http_stream_end(rt_http_req_t *req, int ok);

/* WebSocket events. */
typedef enum {
    RT_HTTP_WS_TEXT = 1,   /* a text message (data, len) */
    RT_HTTP_WS_BINARY = 2, /* a binary message (data, len) */
    RT_HTTP_WS_CLOSED = 3  /* the connection is gone; no more events */
} rt_http_ws_event_t;

/* Called for every message and once with RT_HTTP_WS_CLOSED. data is
 * valid only during the call. The callback must not call rt_http_ws_*
 * functions other than send and close on this socket (they only queue). */
typedef void (*rt_http_ws_cb)(rt_http_ws_t *ws, rt_http_ws_event_t ev,
                              const char *data, size_t len, void *ud);

/* Upgrades the request (a WebSocket handshake, see info.websocket) and
 * answers it with 101. Returns the socket with one reference owned by the
 * caller, or NULL with *rc set to RT_ENOT_WEBSOCKET (not a handshake),
 * RT_ECLOSED (the request is gone, or the server is closing) or
 * RT_EANSWERED.
 * Messages may be sent at once: they leave when the 101 has. */
rt_http_ws_t *rt_http_req_websocket(rt_http_req_t *req, rt_http_ws_cb cb,
                                    void *ud, int *rc);

/* Queues a message (copied). Returns 0, RT_ECLOSED (closed or
 * closing), RT_EBACKPRESSURE (messages already queued plus this one
 * exceed ws_max_queued_bytes: nothing was queued; the caller drops the
 * message or closes the slow consumer), or RT_ENOMEM. A message
 * larger than the limit is accepted only when nothing else is queued. */
int rt_http_ws_send(rt_http_ws_t *ws, int binary, const char *data, size_t len);

/* Writes the messages and closes queued on every WebSocket since the last
 * flush, one write per socket. Without it they go out just before the
 * loop polls; the Lua binding flushes after every task resume, so a burst
 * of events a task sends leaves at once, and together. */
void rt_http_server_flush(rt_http_server_t *srv);

/* Starts the closing handshake with code (1000 when 0). The socket is
 * shut down if the peer does not answer within ws_close_timeout_ms. */
void rt_http_ws_close(rt_http_ws_t *ws, uint16_t code);

/* 1 while the socket is open (not closed, not closing). */
int rt_http_ws_is_open(const rt_http_ws_t *ws);

/* Outbound bytes queued and not yet handed to the socket. */
size_t rt_http_ws_queued(const rt_http_ws_t *ws);

/* Drops the caller's reference: the callback is never called again and
 * an open socket is closed with 1000. */
void rt_http_ws_release(rt_http_ws_t *ws);

#endif
