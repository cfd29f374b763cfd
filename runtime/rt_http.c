/* rt_http.c - HTTP/1.1 and WebSocket server on a libuv loop (H2O + wslay).
 *
 * One server = one listener, one h2o_globalconf_t and one h2o_context_t on
 * the caller's loop. Every request reaches on_req (the only handler, on
 * the host's fallback path, so every path and method gets here) which
 * wraps it in an rt_http_req_t and calls the server's callback.
 *
 * Facts about h2o 2.2.5 this file relies on (read from its source):
 * - HTTP/1 stops reading a connection while its request is processed and
 *   keeps the h2o_req_t alive until the response is sent, so a client that
 *   disconnects is only noticed when the answer is written. The request is
 *   disposed (its pool cleared) after the response, or when the connection
 *   closes; the dispose hook below tells our handle.
 * - h2o_context_dispose closes timers embedded in the context and then
 *   runs the loop once (UV_RUN_NOWAIT) so their close callbacks run before
 *   the context memory goes away. It is therefore only called from our own
 *   timer callback, never from inside h2o or from the caller's code.
 * - A WebSocket's h2o_websocket_conn_t has no socket until the 101 has been
 *   written; h2o_websocket_proceed must not run before that, nor from
 *   inside wslay's message callback. Its callback with arg == NULL means
 *   closed, and there h2o_websocket_close is safe.
 * - There is no way to close an idle HTTP/1 connection from outside, so a
 *   closing server shuts down the read side of idle connections' sockets:
 *   h2o sees end of file and closes them itself. */
#include "rt_http.h"

#include "rt_addrcount.h"
#include "rt_buf.h"

#include <h2o.h>
#include <h2o/websocket.h>

#include <errno.h>
#include <stddef.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/ioctl.h>
#include <fcntl.h>

/* Defaults for zero options. */
#define RT_HTTP_DEF_HOST "127.0.0.1"
#define RT_HTTP_DEF_BACKLOG 511
#define RT_HTTP_DEF_MAX_BODY (1024 * 1024)
#define RT_HTTP_DEF_MAX_HEADER (64 * 1024)
#define RT_HTTP_DEF_REQ_TIMEOUT 10000
#define RT_HTTP_DEF_MAX_CONNS 10000
#define RT_HTTP_DEF_MAX_CLIENT_CONNS 2048
#define RT_HTTP_DEF_WS_QUEUE (1024 * 1024)
#define RT_HTTP_DEF_WS_MSG (1024 * 1024)
#define RT_HTTP_DEF_WS_CLOSE 5000
/* How often a closing server looks for idle connections to close. */
#define RT_HTTP_SWEEP_MS 20
/* After the hard stop, how long answered-but-unsent responses get before
 * every socket is shut down. */
#define RT_HTTP_KILL_MS 1000

typedef enum {
    RT_SRV_OPEN = 0,
    RT_SRV_CLOSING, /* listener closed, in-flight work finishing */
    RT_SRV_HARD,    /* grace over: pending requests answered 503 */
    RT_SRV_FINISHED /* context disposed; waiting for the timer to close */
} rt_srv_state_t;

/* An accepted connection. h2o owns the socket and calls on_conn_close
 * with the uv handle when it closes it. */
typedef struct rt_http_conn {
    uv_tcp_t tcp; /* first: the close callback receives this pointer */
    rt_http_server_t *srv;
    struct rt_http_conn *prev, *next; /* in srv->conns */
    uint8_t peer[16];                 /* counted in srv->per_client */
    int counted;
    int linger_fd; /* a duplicate of the socket, or -1:
                                       * see rt__linger */
} rt_http_conn_t;

/* The h2o handler; keeps a pointer back to its server. */
typedef struct {
    h2o_handler_t super;
    rt_http_server_t *srv;
} rt_http_handler_t;

struct rt_http_server {
    uv_loop_t *loop;
    h2o_globalconf_t config; /* owns hosts, paths and the handler */
    h2o_context_t ctx;       /* owns h2o's timers and async handle */
    h2o_accept_ctx_t accept_ctx;
    h2o_timeout_t ws_close_timeout; /* peers that never answer a close */
    h2o_timeout_t ws_flush_timeout; /* re-checks a close waiting on sends */
    uv_tcp_t listener;
    rt_addrcount_t per_client; /* open connections by peer address */
    size_t nofile;             /* RLIMIT_NOFILE: lingering needs a
                                    * second descriptor per connection */
    uv_timer_t ticker;         /* sweeps while closing, then finishes */
    uv_prepare_t flusher;      /* writes dirty WebSockets before poll */
    struct rt_http_ws **dirty; /* WebSockets with output to write (a */
    size_t ndirty, dirty_cap;  /* reference each), see rt__ws_defer */
    int h2o_ready;             /* config and context initialised */
    int listening;             /* the listener is not closed yet */
    int open_handles;          /* uv handles not yet closed; the struct
                                    * is freed when this drops to 0 */
    rt_srv_state_t state;
    uint64_t hard_at, kill_at; /* loop times of the close phases */
    int killed;
    rt_http_opts_t opts; /* with defaults filled in */
    char *host;          /* copy of opts.host */
    int port;
    rt_http_request_cb on_request;
    void *data;
    rt_http_closed_cb on_closed;
    void *closed_data;
    rt_http_stats_t stats;
    rt_http_conn_t *conns; /* accepted and not closed */
    rt_http_req_t *reqs;   /* handles whose h2o_req_t is alive */
    rt_http_ws_t *wss;     /* WebSockets not closed */
};

struct rt_http_req {
    rt_http_server_t *srv; /* valid while req != NULL */
    h2o_req_t *req;        /* NULL once h2o disposed the request */
    int refs;              /* the caller's and h2o's (until disposed) */
    int answered;
    struct rt_http_req *prev, *next; /* in srv->reqs while req != NULL */
    /* A streamed response (rt_http_req_stream). h2o keeps pointers into
     * `sending` until gen.proceed says the write is done (or until the
     * request is disposed), so both buffers live as long as this. */
    h2o_generator_t gen;   /* gen.proceed: a socket write completed */
    rt_http_stream_cb scb; /* NULL once ended, released or closed */
    void *sud;
    int streaming;
    int no_body;             /* HEAD, 204, 304: complete with the head */
    h2o_send_state_t ending; /* IN_PROGRESS until ended: FINAL or ERROR */
    int inflight;            /* an h2o_send is being written */
    int final_sent;          /* the last h2o_send went out */
    char *out, *sending;     /* queued bytes; the bytes of the write */
    size_t out_len, out_cap, sending_len, sending_cap;
};

struct rt_http_ws {
    rt_http_server_t *srv;      /* valid while conn != NULL */
    h2o_websocket_conn_t *conn; /* NULL once closed */
    rt_http_ws_cb cb;           /* NULL once released by the caller */
    void *ud;
    int refs;            /* the caller's and the engine's (open) */
    int in_cb;           /* inside wslay's message callback */
    int closing;         /* close asked for: no more sends */
    int batching;        /* in our wslay_event_send: hold output */
    int dirty;           /* in srv->dirty */
    uint16_t close_code; /* close frame not queued yet (0: queued) */
    h2o_timeout_entry_t close_entry; /* linked while closing */
    h2o_timeout_entry_t flush_entry; /* linked while messages go out first */
    /* Output coalescing (see rt__ws_send_cb): bytes wslay produced while a
     * write was in flight, and the buffer of the write in flight. */
    char *out, *inflight;
    size_t out_len, out_cap, inflight_len;
    struct rt_http_ws *prev, *next; /* in srv->wss while conn != NULL */
};

static void rt__maybe_finish(rt_http_server_t *srv);
static void rt__ws_closed(rt_http_ws_t *ws);

/* ---- small helpers ---------------------------------------------------- */

#define RT_LIST_ADD(head, x)                                                   \
    do {                                                                       \
        (x)->prev = NULL;                                                      \
        (x)->next = (head);                                                    \
        if (head)                                                              \
            (head)->prev = (x);                                                \
        (head) = (x);                                                          \
    } while (0)

#define RT_LIST_DEL(head, x)                                                   \
    do {                                                                       \
        if ((x)->prev)                                                         \
            (x)->prev->next = (x)->next;                                       \
        else                                                                   \
            (head) = (x)->next;                                                \
        if ((x)->next)                                                         \
            (x)->next->prev = (x)->prev;                                       \
        (x)->prev = (x)->next = NULL;                                          \
    } while (0)

static const char *rt__reason(int status)
{
    /* A table: one line a status. */
    /* clang-format off */
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: break;
    }
    /* clang-format on */
    if (status < 300)
        return "OK";
    if (status < 400)
        return "Redirect";
    if (status < 500)
        return "Client Error";
    return "Server Error";
}

/* Shuts down one or both directions of a socket, so that h2o's pending or
 * next read (EOF) or write (EPIPE) fails and h2o closes the connection
 * through its own error path. Never closes the descriptor. */
static void rt__shutdown_sock(h2o_socket_t *sock, int how)
{
    int fd;
    if (sock == NULL)
        return;
    fd = h2o_socket_get_fd(sock);
    if (fd >= 0)
        (void)shutdown(fd, how);
}

/* Answers req with a JSON error body; the connection closes afterwards. */
static void rt__send_error(h2o_req_t *req, int status, const char *code,
                           const char *message)
{
    static h2o_generator_t gen = {NULL, NULL};
    h2o_iovec_t body;
    char *buf;
    int n;
    size_t cap = strlen(code) + strlen(message) + 64;

    buf = h2o_mem_alloc_pool(&req->pool, cap);
    n = snprintf(buf, cap, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
                 code, message);
    body = h2o_iovec_init(buf, n > 0 ? (size_t)n : 0);
    req->http1_is_persistent = 0;
    req->res.status = status;
    req->res.reason = rt__reason(status);
    req->res.content_length = body.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    h2o_start_response(req, &gen);
    if (h2o_memis(req->input.method.base, req->input.method.len,
                  H2O_STRLIT("HEAD")))
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
}

/* ---- requests --------------------------------------------------------- */

static void rt__req_unref(rt_http_req_t *h)
{
    if (--h->refs == 0) {
        free(h->out);
        free(h->sending);
        free(h);
    }
}

/* h2o cleared the request's pool: the h2o_req_t is gone. A stream the
 * caller has not ended is told (its client went away, or the server cut
 * it at the end of a close). */
static void rt__req_dispose(void *p)
{
    rt_http_req_t *h = *(rt_http_req_t **)p;
    rt_http_server_t *srv = h->srv;
    rt_http_stream_cb cb = h->scb;
    if (!h->answered) {
        h->answered = 1; /* only over HTTP/2, which is not served */
        srv->stats.requests_active--;
    }
    RT_LIST_DEL(srv->reqs, h);
    h->req = NULL;
    h->srv = NULL;
    h->scb = NULL;
    if (cb != NULL)
        cb(h, RT_HTTP_STREAM_CLOSED, h->sud); /* the caller holds h */
    rt__req_unref(h);
}

/* Size of the request line and headers, as h2o parsed them. */
static size_t rt__head_bytes(h2o_req_t *req)
{
    size_t i, n = req->input.method.len + req->input.path.len + 16;
    if (req->input.authority.base != NULL)
        n += req->input.authority.len + 8;
    for (i = 0; i < req->headers.size; i++)
        n += req->headers.entries[i].name->len +
             req->headers.entries[i].value.len + 4;
    return n;
}

/* h2o 2.2.5 keeps its HTTP/1 connection struct private; the field after
 * its public h2o_conn_t is the socket (lib/http1.c), whose input buffer
 * starts with the request being handled. The pointer is trusted only when
 * the socket points back at the connection. */
#if H2O_VERSION_MAJOR != 2 || H2O_VERSION_MINOR != 2
#error "rt__http1_input reads h2o 2.2's private HTTP/1 connection layout"
#endif
struct rt__h2o_http1_conn_head {
    h2o_conn_t super;
    h2o_socket_t *sock;
};

static h2o_buffer_t *rt__http1_input(h2o_req_t *req)
{
    h2o_socket_t *sock;
    if (req->version >= 0x200)
        return NULL;
    memcpy(&sock,
           (char *)req->conn + offsetof(struct rt__h2o_http1_conn_head, sock),
           sizeof sock);
    if (sock == NULL || sock->data != (void *)req->conn || sock->input == NULL)
        return NULL;
    return sock->input;
}

/* Two Content-Length headers that differ make the body's end ambiguous
 * (request smuggling); h2o takes the first and drops the rest, so the
 * raw head is read again here. Returns 1 when they differ. */
static int rt__conflicting_lengths(h2o_req_t *req)
{
    h2o_buffer_t *in = rt__http1_input(req);
    const char *p, *end, *eol, *first = NULL, *v, *ve;
    size_t first_len = 0;
    if (in == NULL)
        return 0;
    p = in->bytes;
    end = p + (in->size < H2O_MAX_REQLEN ? in->size : H2O_MAX_REQLEN);
    eol = memchr(p, '\n', (size_t)(end - p)); /* skip the request line */
    while (eol != NULL && eol + 1 < end) {
        p = eol + 1;
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL || eol - p <= 1)
            break; /* the empty line: the head ends */
        if (eol - p < 15 || strncasecmp(p, "content-length:", 15) != 0)
            continue;
        for (v = p + 15; v < eol && (*v == ' ' || *v == '\t'); v++)
            ;
        for (ve = eol;
             ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t');
             ve--)
            ;
        if (first == NULL) {
            first = v;
            first_len = (size_t)(ve - v);
        } else if ((size_t)(ve - v) != first_len ||
                   memcmp(v, first, first_len) != 0) {
            return 1;
        }
    }
    return 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    rt_http_server_t *srv = ((rt_http_handler_t *)self)->srv;
    rt_http_req_t *h, **hook;

    srv->stats.requests++;
    if (rt__head_bytes(req) > srv->opts.max_header_bytes) {
        rt__send_error(req, 431, "header_too_large",
                       "request headers are too large");
        return 0;
    }
    if (req->entity.base != NULL && rt__conflicting_lengths(req)) {
        rt__send_error(req, 400, "bad_request",
                       "conflicting Content-Length headers");
        return 0;
    }
    if (srv->on_request == NULL || srv->state >= RT_SRV_HARD) {
        rt__send_error(req, 503, "unavailable", "server is shutting down");
        return 0;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        rt__send_error(req, 503, "unavailable", "out of memory");
        return 0;
    }
    h->srv = srv;
    h->req = req;
    h->refs = 2;
    /* The pool calls rt__req_dispose when h2o disposes the request. */
    hook = h2o_mem_alloc_shared(&req->pool, sizeof(*hook), rt__req_dispose);
    *hook = h;
    RT_LIST_ADD(srv->reqs, h);
    srv->stats.requests_active++;
    srv->stats.bytes_in += req->entity.len;
    srv->on_request(srv, h, srv->data);
    return 0;
}

int rt_http_req_info(const rt_http_req_t *h, rt_http_req_info_t *info)
{
    h2o_req_t *req = h->req;
    struct sockaddr_storage ss;
    socklen_t sl;
    const char *q;

    if (req == NULL)
        return RT_ECLOSED;
    memset(info, 0, sizeof(*info));
    info->method = req->input.method.base;
    info->method_len = req->input.method.len;
    info->path = req->input.path.base;
    info->path_len = req->input.path.len;
    q = memchr(req->input.path.base, '?', req->input.path.len);
    if (q != NULL) {
        info->path_len = (size_t)(q - req->input.path.base);
        info->query = q + 1;
        info->query_len = req->input.path.len - info->path_len - 1;
    } else {
        info->query = "";
    }
    info->body = req->entity.base != NULL ? req->entity.base : "";
    info->body_len = req->entity.base != NULL ? req->entity.len : 0;
    info->version = req->version;
    {
        const char *key = NULL;
        info->websocket = h2o_is_websocket_handshake(req, &key) == 0 &&
                          key != NULL;
    }
    sl = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (sl > 0 && ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, info->remote, sizeof(info->remote));
        info->remote_port = ntohs(a->sin_port);
    } else if (sl > 0 && ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, info->remote, sizeof(info->remote));
        info->remote_port = ntohs(a->sin6_port);
    }
    return 0;
}

/* The headers h2o moved out of req->headers, in the order we report them:
 * host (when the client sent one), content-length (when there is a body)
 * and upgrade. Fills up to 3 entries of out (values live in req's pool). */
static size_t rt__extra_headers(h2o_req_t *req, rt_http_header_t *out)
{
    size_t n = 0;
    if (req->input.authority.base != NULL && req->hostconf != NULL &&
        req->input.authority.base != req->hostconf->authority.hostport.base) {
        out[n].name = "host";
        out[n].name_len = 4;
        out[n].value = req->input.authority.base;
        out[n].value_len = req->input.authority.len;
        n++;
    }
    if (req->entity.base != NULL) {
        char *buf = h2o_mem_alloc_pool(&req->pool, 24);
        int len = snprintf(buf, 24, "%zu", req->entity.len);
        out[n].name = "content-length";
        out[n].name_len = 14;
        out[n].value = buf;
        out[n].value_len = len > 0 ? (size_t)len : 0;
        n++;
    }
    if (req->upgrade.base != NULL) {
        out[n].name = "upgrade";
        out[n].name_len = 7;
        out[n].value = req->upgrade.base;
        out[n].value_len = req->upgrade.len;
        n++;
    }
    return n;
}

size_t rt_http_req_header_count(const rt_http_req_t *h)
{
    h2o_req_t *req = h->req;
    size_t n = 0;
    if (req == NULL)
        return 0;
    if (req->input.authority.base != NULL && req->hostconf != NULL &&
        req->input.authority.base != req->hostconf->authority.hostport.base)
        n++;
    if (req->entity.base != NULL)
        n++;
    if (req->upgrade.base != NULL)
        n++;
    return n + req->headers.size;
}

int rt_http_req_header(const rt_http_req_t *h, size_t i, rt_http_header_t *out)
{
    h2o_req_t *req = h->req;
    rt_http_header_t extra[3];
    size_t nextra;
    const h2o_header_t *e;

    if (req == NULL)
        return RT_ECLOSED;
    if (i >= req->headers.size) {
        /* Extras come last so the common loop needs no allocation. */
        i -= req->headers.size;
        nextra = rt__extra_headers(req, extra);
        if (i >= nextra)
            return RT_EINVAL;
        *out = extra[i];
        return 0;
    }
    e = &req->headers.entries[i];
    out->name = e->name->base;
    out->name_len = e->name->len;
    out->value = e->value.base;
    out->value_len = e->value.len;
    return 0;
}

/* RFC 7230 tchar. */
static int rt__is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9'))
        return 1;
    return strchr("!#$%&'*+-.^_`|~", c) != NULL && c != '\0';
}

static int rt__valid_name(const char *s, size_t n)
{
    size_t i;
    if (n == 0)
        return 0;
    for (i = 0; i < n; i++)
        if (!rt__is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

static int rt__valid_value(const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return 0;
    return 1;
}

/* Headers h2o writes itself. */
static int rt__skip_header(const char *lc, size_t n)
{
    return (n == 14 && memcmp(lc, "content-length", 14) == 0) ||
           (n == 17 && memcmp(lc, "transfer-encoding", 17) == 0) ||
           (n == 10 && memcmp(lc, "connection", 10) == 0);
}

/* Checks what rt__set_head will set. Returns 0, RT_ECLOSED,
 * RT_EANSWERED or RT_EINVAL (with *err when err is not NULL). */
static int rt__check_head(const rt_http_req_t *h, int status,
                          const rt_http_header_t *headers, size_t nheaders,
                          const char **err)
{
    size_t i;
    if (h->req == NULL)
        return RT_ECLOSED;
    if (h->answered)
        return RT_EANSWERED;
    if (status < 200 || status > 599) {
        if (err)
            *err = "status must be 200..599";
        return RT_EINVAL;
    }
    for (i = 0; i < nheaders; i++) {
        if (!rt__valid_name(headers[i].name, headers[i].name_len)) {
            if (err)
                *err = "invalid header name";
            return RT_EINVAL;
        }
        if (!rt__valid_value(headers[i].value, headers[i].value_len)) {
            if (err)
                *err = "invalid header value (CR, LF or NUL)";
            return RT_EINVAL;
        }
    }
    return 0;
}

/* Marks h answered and sets the response's status and headers (names in
 * lower case, h2o's own skipped). Returns 1 when the response has no body
 * (HEAD, 204, 304). */
static int rt__set_head(rt_http_req_t *h, int status,
                        const rt_http_header_t *headers, size_t nheaders)
{
    h2o_req_t *req = h->req;
    rt_http_server_t *srv = h->srv;
    size_t i, j;

    h->answered = 1;
    srv->stats.requests_active--;
    req->res.status = status;
    req->res.reason = rt__reason(status);
    for (i = 0; i < nheaders; i++) {
        char *name = h2o_mem_alloc_pool(&req->pool, headers[i].name_len);
        for (j = 0; j < headers[i].name_len; j++) {
            char c = headers[i].name[j];
            name[j] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        if (rt__skip_header(name, headers[i].name_len))
            continue;
        h2o_add_header_by_str(
            &req->pool, &req->res.headers, name, headers[i].name_len, 1, NULL,
            h2o_strdup(&req->pool, headers[i].value, headers[i].value_len).base,
            headers[i].value_len);
    }
    if (srv->state != RT_SRV_OPEN)
        req->http1_is_persistent = 0;
    return status == 204 || status == 304 ||
           h2o_memis(req->input.method.base, req->input.method.len,
                     H2O_STRLIT("HEAD"));
}

int rt_http_req_respond(rt_http_req_t *h, int status,
                        const rt_http_header_t *headers, size_t nheaders,
                        const char *body, size_t body_len, const char **err)
{
    static h2o_generator_t gen = {NULL, NULL};
    h2o_req_t *req = h->req;
    rt_http_server_t *srv = h->srv;
    int no_body, rc;

    rc = rt__check_head(h, status, headers, nheaders, err);
    if (rc != 0)
        return rc;
    no_body = rt__set_head(h, status, headers, nheaders);
    req->res.content_length = (status == 204 || status == 304) ? SIZE_MAX
                                                               : body_len;
    h2o_start_response(req, &gen);
    if (no_body || body_len == 0) {
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    } else {
        h2o_iovec_t buf = h2o_strdup(&req->pool, body, body_len);
        srv->stats.bytes_out += body_len;
        h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
    }
    return 0;
}

void rt_http_req_release(rt_http_req_t *h)
{
    if (h->streaming) {
        (void)rt_http_stream_end(h, 0); /* cut, unless already ended */
    } else if (h->req != NULL && !h->answered) {
        rt_http_server_t *srv = h->srv;
        h->answered = 1;
        srv->stats.requests_active--;
        rt__send_error(h->req, 503, "unavailable",
                       "the request was not answered");
    }
    rt__req_unref(h);
}

/* ---- streamed responses ----------------------------------------------- */

/* Sends what is queued (or the end) when no write is in flight. The
 * queue becomes the write in flight and the buffer of the last write,
 * done with, takes what comes next. An ending with no chunked encoding
 * and nothing to write may dispose the request inside h2o_send. */
static void rt__stream_pump(rt_http_req_t *h)
{
    h2o_iovec_t buf;
    h2o_send_state_t state = h->ending;
    char *swap;
    size_t cap;

    if (h->inflight || h->final_sent || h->req == NULL)
        return;
    if (h->out_len == 0 && state == H2O_SEND_STATE_IN_PROGRESS)
        return;
    swap = h->sending;
    cap = h->sending_cap;
    h->sending = h->out;
    h->sending_cap = h->out_cap;
    h->sending_len = h->out_len;
    h->out = swap;
    h->out_cap = cap;
    h->out_len = 0;
    h->inflight = 1;
    if (state != H2O_SEND_STATE_IN_PROGRESS)
        h->final_sent = 1;
    buf = h2o_iovec_init(h->sending, h->sending_len);
    h2o_send(h->req, &buf, buf.len > 0 ? 1 : 0, state);
}

/* h2o finished writing what we sent: send what was queued meanwhile and
 * tell the caller. */
static void rt__stream_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    rt_http_req_t *h = H2O_STRUCT_FROM_MEMBER(rt_http_req_t, gen, gen);
    (void)req;
    h->inflight = 0;
    h->sending_len = 0;
    h->refs++; /* the pump may dispose the request, the caller release */
    rt__stream_pump(h);
    if (h->scb != NULL)
        h->scb(h, RT_HTTP_STREAM_WRITABLE, h->sud);
    rt__req_unref(h);
}

int rt_http_req_stream(rt_http_req_t *h, int status,
                       const rt_http_header_t *headers, size_t nheaders,
                       rt_http_stream_cb cb, void *ud, const char **err)
{
    h2o_req_t *req = h->req;
    int rc = rt__check_head(h, status, headers, nheaders, err);
    if (rc != 0)
        return rc;
    h->no_body = rt__set_head(h, status, headers, nheaders);
    h->streaming = 1;
    req->res.content_length = SIZE_MAX; /* chunked, or until close */
    h->gen.proceed = rt__stream_proceed;
    h->gen.stop = NULL; /* the dispose hook tells the caller */
    h2o_start_response(req, &h->gen);
    h->inflight = 1; /* the head, now */
    if (h->no_body) {
        h->ending = H2O_SEND_STATE_FINAL;
        h->final_sent = 1;
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return 0;
    }
    h->scb = cb;
    h->sud = ud;
    h2o_send(req, NULL, 0, H2O_SEND_STATE_IN_PROGRESS);
    return 0;
}

int rt_http_stream_write(rt_http_req_t *h, const char *data, size_t len)
{
    if (!h->streaming)
        return RT_EINVAL;
    if (h->req == NULL || h->ending != H2O_SEND_STATE_IN_PROGRESS)
        return RT_ECLOSED;
    if (len == 0)
        return 0;
    if (rt_buf_append(&h->out, &h->out_len, &h->out_cap, data, len) != 0)
        return RT_ENOMEM;
    h->srv->stats.bytes_out += len;
    rt__stream_pump(h);
    return 0;
}

size_t rt_http_stream_queued(const rt_http_req_t *h)
{
    if (h->req == NULL)
        return 0;
    return h->out_len + h->sending_len;
}

int rt_http_stream_end(rt_http_req_t *h, int ok)
{
    if (!h->streaming)
        return RT_EINVAL;
    h->scb = NULL;
    if (h->req == NULL || h->ending != H2O_SEND_STATE_IN_PROGRESS)
        return RT_ECLOSED;
    h->ending = ok ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_ERROR;
    rt__stream_pump(h);
    return 0;
}

/* Grace is over: a stream still open is cut and its caller told. */
static void rt__stream_cut(rt_http_req_t *h)
{
    rt_http_stream_cb cb = h->scb;
    void *ud = h->sud;
    h->refs++;
    if (rt_http_stream_end(h, 0) == 0 && cb != NULL)
        cb(h, RT_HTTP_STREAM_CLOSED, ud);
    rt__req_unref(h);
}

/* ---- WebSockets ------------------------------------------------------- */

static void rt__ws_unref(rt_http_ws_t *ws)
{
    if (--ws->refs == 0) {
        free(ws->out);
        free(ws->inflight);
        free(ws);
    }
}

/* wslay's callback through h2o: a message, or arg == NULL when closed. */
static void rt__ws_on_msg(h2o_websocket_conn_t *conn,
                          const struct wslay_event_on_msg_recv_arg *arg)
{
    rt_http_ws_t *ws = conn->data;
    if (arg == NULL) {
        rt__ws_closed(ws);
        return;
    }
    if (wslay_is_ctrl_frame(arg->opcode))
        return; /* ping, pong and close are wslay's */
    ws->srv->stats.bytes_in += arg->msg_length;
    if (ws->cb == NULL)
        return;
    ws->in_cb++;
    ws->cb(ws,
           arg->opcode == WSLAY_TEXT_FRAME ? RT_HTTP_WS_TEXT
                                           : RT_HTTP_WS_BINARY,
           (const char *)arg->msg, arg->msg_length, ws->ud);
    ws->in_cb--;
}

/* The connection is gone (peer closed, error, close handshake done). */
static void rt__ws_closed(rt_http_ws_t *ws)
{
    h2o_websocket_conn_t *conn = ws->conn;
    rt_http_server_t *srv = ws->srv;
    if (conn == NULL)
        return;
    ws->conn = NULL;
    ws->srv = NULL;
    ws->closing = 1;
    if (h2o_timeout_is_linked(&ws->close_entry))
        h2o_timeout_unlink(&ws->close_entry);
    if (h2o_timeout_is_linked(&ws->flush_entry))
        h2o_timeout_unlink(&ws->flush_entry);
    RT_LIST_DEL(srv->wss, ws);
    srv->stats.websockets_active--;
    h2o_websocket_close(conn);
    if (ws->cb != NULL)
        ws->cb(ws, RT_HTTP_WS_CLOSED, NULL, 0, ws->ud);
    rt__ws_unref(ws);
}

/* The peer did not answer our close frame in time. */
static void rt__ws_close_timeout(h2o_timeout_entry_t *entry)
{
    rt_http_ws_t *ws = H2O_STRUCT_FROM_MEMBER(rt_http_ws_t, close_entry, entry);
    if (ws->conn != NULL)
        rt__shutdown_sock(ws->conn->sock, SHUT_RDWR);
}

static void rt__ws_write_done(h2o_socket_t *sock, const char *err);

/* Bytes of ws->out the socket takes at once (0 on EAGAIN or an error,
 * which h2o's write then reports). A write h2o makes costs libuv a
 * completion callback on the next loop turn and an epoll_ctl to re-arm
 * the socket; a plain send() on the non-blocking socket costs neither. */
static size_t rt__ws_send_now(rt_http_ws_t *ws)
{
    h2o_socket_t *sock = ws->conn->sock;
    ssize_t n;
    int fd;
    if (sock->ssl != NULL || (fd = h2o_socket_get_fd(sock)) < 0)
        return 0;
    do
        n = send(fd, ws->out, ws->out_len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n > 0 ? (size_t)n : 0;
}

/* Writes what is buffered: straight to the socket, and what it does not
 * take as one h2o write. */
static void rt__ws_flush(rt_http_ws_t *ws)
{
    h2o_iovec_t buf;
    char *swap;
    size_t cap, done;
    if (ws->conn == NULL || ws->conn->sock == NULL || ws->out_len == 0 ||
        h2o_socket_is_writing(ws->conn->sock))
        return;
    done = rt__ws_send_now(ws);
    if (done == ws->out_len) {
        ws->out_len = 0;
        return;
    }
    /* out becomes the write in flight; the old in-flight buffer, done
     * with, is reused for what comes next. */
    swap = ws->inflight;
    cap = ws->inflight_len;
    ws->inflight = ws->out;
    ws->inflight_len = ws->out_cap;
    buf = h2o_iovec_init(ws->inflight + done, ws->out_len - done);
    ws->out = swap;
    ws->out_cap = cap;
    ws->out_len = 0;
    ws->conn->sock->data = ws->conn;
    h2o_socket_write(ws->conn->sock, &buf, 1, rt__ws_write_done);
}

void rt_http_server_flush(rt_http_server_t *srv)
{
    size_t i, n = srv->ndirty;
    if (n == 0)
        return;
    /* Neither flushing nor unref adds to the list: no copy needed. */
    for (i = 0; i < n; i++) {
        rt_http_ws_t *ws = srv->dirty[i];
        ws->dirty = 0;
        rt__ws_flush(ws);
        rt__ws_unref(ws);
    }
    srv->ndirty = 0;
    uv_prepare_stop(&srv->flusher);
}

/* Dirty WebSockets nobody flushed are written before the loop polls. */
static void rt__ws_flush_dirty(uv_prepare_t *h)
{
    rt_http_server_flush(h->data);
}

/* Output up to this size waits for a flush; more goes out at once, so a
 * burst never counts against ws_max_queued_bytes while the socket could
 * take it (a replay of 1,000 events is ~300 KB). */
#define RT_WS_DEFER_BYTES (16 * 1024)

/* Output for ws waits for rt_http_server_flush, at the latest just
 * before the loop polls (ws is kept alive until then), or goes out now if
 * the list cannot grow. */
static void rt__ws_defer(rt_http_ws_t *ws)
{
    rt_http_server_t *srv = ws->srv;
    if (ws->dirty)
        return;
    if (srv->ndirty == srv->dirty_cap) {
        size_t cap = srv->dirty_cap ? srv->dirty_cap * 2 : 64;
        rt_http_ws_t **nd = realloc(srv->dirty, cap * sizeof(*nd));
        if (nd == NULL) {
            rt__ws_flush(ws);
            return;
        }
        srv->dirty = nd;
        srv->dirty_cap = cap;
    }
    if (srv->ndirty == 0)
        (void)uv_prepare_start(&srv->flusher, rt__ws_flush_dirty);
    ws->refs++;
    ws->dirty = 1;
    srv->dirty[srv->ndirty++] = ws;
}

/* wslay's send callback, instead of h2o's. h2o 2.2.5 writes each chunk
 * wslay gives it (a frame's header, then its payload) as a write of its
 * own and refuses more until the next loop turn, so a message cost two
 * turns and two system calls per socket: fanning an event out to 1,000
 * subscribers took 60-250 ms. Here chunks are appended to a buffer. When
 * we drive wslay (rt__ws_proceed: our sends and closes) the buffer is
 * written when the caller flushes (rt_http_server_flush, after each task
 * resume: every message a task sent leaves in one write per socket) or
 * just before the loop polls (rt__ws_defer). When h2o drives it
 * (a pong or a close reply while reading) it is written at once, since
 * h2o closes a socket that is done reading as soon as it is not writing.
 * What comes while an h2o write is in flight is written when it
 * completes. */
static ssize_t rt__ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data,
                              size_t len, int flags, void *user)
{
    h2o_websocket_conn_t *conn = user;
    rt_http_ws_t *ws = conn->data;
    (void)flags;
    if (rt_buf_append(&ws->out, &ws->out_len, &ws->out_cap, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_NOMEM);
        return -1;
    }
    if (!ws->batching)
        rt__ws_flush(ws);
    return (ssize_t)len;
}

static void rt__ws_proceed(rt_http_ws_t *ws);

/* A write finished: send what piled up meanwhile, then let wslay go on
 * (h2o_websocket_proceed also closes the connection once the close
 * handshake is done and nothing is being written). */
static void rt__ws_write_done(h2o_socket_t *sock, const char *err)
{
    h2o_websocket_conn_t *conn = sock->data;
    rt_http_ws_t *ws = conn->data;
    if (err != NULL) {
        rt__ws_closed(ws);
        return;
    }
    rt__ws_flush(ws);
    rt__ws_proceed(ws);
}

/* Lets wslay frame what is queued and h2o go on, unless that is not
 * allowed now (no socket before the 101 is written; never inside wslay's
 * callback). What wslay frames waits for the next flush: one system call
 * per subscriber per burst of events, not two per message.
 * May close the connection (and call back CLOSED): touch ws only if the
 * caller holds its reference. */
static void rt__ws_proceed(rt_http_ws_t *ws)
{
    h2o_websocket_conn_t *conn = ws->conn;
    if (conn == NULL || conn->sock == NULL || ws->in_cb != 0)
        return;
    if (!h2o_socket_is_writing(conn->sock) &&
        wslay_event_want_write(conn->ws_ctx)) {
        int rc;
        ws->batching = 1;
        rc = wslay_event_send(conn->ws_ctx);
        ws->batching = 0;
        if (rc != 0) { /* as h2o does: out of memory in rt__ws_send_cb */
            rt__ws_closed(ws);
            return;
        }
        if (ws->out_len < RT_WS_DEFER_BYTES &&
            wslay_event_want_read(conn->ws_ctx))
            rt__ws_defer(ws);
        else
            rt__ws_flush(ws); /* see rt__ws_send_cb */
    }
    h2o_websocket_proceed(conn);
}

rt_http_ws_t *rt_http_req_websocket(rt_http_req_t *h, rt_http_ws_cb cb,
                                    void *ud, int *rc)
{
    h2o_req_t *req = h->req;
    rt_http_server_t *srv = h->srv;
    rt_http_ws_t *ws;
    const char *key = NULL;

    if (req == NULL) {
        *rc = RT_ECLOSED;
        return NULL;
    }
    if (h->answered) {
        *rc = RT_EANSWERED;
        return NULL;
    }
    if (h2o_is_websocket_handshake(req, &key) != 0 || key == NULL) {
        *rc = RT_ENOT_WEBSOCKET;
        return NULL;
    }
    if (srv->state != RT_SRV_OPEN) {
        *rc = RT_ECLOSED;
        return NULL;
    }
    ws = calloc(1, sizeof(*ws));
    if (ws == NULL) {
        *rc = RT_ENOMEM;
        return NULL;
    }
    ws->srv = srv;
    ws->cb = cb;
    ws->ud = ud;
    ws->refs = 2;
    ws->close_entry.cb = rt__ws_close_timeout;
    h->answered = 1;
    srv->stats.requests_active--;
    srv->stats.websockets_total++;
    srv->stats.websockets_active++;
    RT_LIST_ADD(srv->wss, ws);
    ws->conn = h2o_upgrade_to_websocket(req, key, ws, rt__ws_on_msg);
    {
        /* Our send callback instead of h2o's (see rt__ws_send_cb). */
        struct wslay_event_callbacks cbs = ws->conn->ws_callbacks;
        cbs.send_callback = rt__ws_send_cb;
        wslay_event_config_set_callbacks(ws->conn->ws_ctx, &cbs);
    }
    wslay_event_config_set_max_recv_msg_length(ws->conn->ws_ctx,
                                               srv->opts.ws_max_message_bytes);
    *rc = 0;
    return ws;
}

int rt_http_ws_send(rt_http_ws_t *ws, int binary, const char *data, size_t len)
{
    struct wslay_event_msg msg;
    size_t queued;
    int rc;

    if (ws->conn == NULL || ws->closing)
        return RT_ECLOSED;
    queued = wslay_event_get_queued_msg_length(ws->conn->ws_ctx) + ws->out_len;
    if (queued > 0 && queued + len > ws->srv->opts.ws_max_queued_bytes)
        return RT_EBACKPRESSURE;
    msg.opcode = binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME;
    msg.msg = (const uint8_t *)data;
    msg.msg_length = len;
    rc = wslay_event_queue_msg(ws->conn->ws_ctx, &msg);
    if (rc == WSLAY_ERR_NOMEM)
        return RT_ENOMEM;
    if (rc != 0)
        return RT_ECLOSED; /* wslay refuses after a close frame */
    ws->srv->stats.bytes_out += len;
    rt__ws_proceed(ws); /* may close the socket and call back CLOSED */
    return ws->conn == NULL ? RT_ECLOSED : 0;
}

/* Queues the close frame now. Fails only when a close frame was already
 * queued or received; the handshake is then under way anyway. */
static void rt__ws_queue_close(rt_http_ws_t *ws)
{
    (void)wslay_event_queue_close(ws->conn->ws_ctx, ws->close_code, NULL, 0);
    ws->close_code = 0;
    rt__ws_proceed(ws);
}

/* wslay sends control frames ahead of queued messages, so a close frame
 * queued behind messages would overtake them and they would be lost: it
 * waits until they are written (or the close timeout ends it all). */
static void rt__ws_flush_check(h2o_timeout_entry_t *entry)
{
    rt_http_ws_t *ws = H2O_STRUCT_FROM_MEMBER(rt_http_ws_t, flush_entry, entry);
    if (ws->conn == NULL || ws->close_code == 0)
        return;
    if (wslay_event_get_queued_msg_count(ws->conn->ws_ctx) > 0) {
        h2o_timeout_link(ws->srv->loop, &ws->srv->ws_flush_timeout,
                         &ws->flush_entry);
        return;
    }
    rt__ws_queue_close(ws);
}

void rt_http_ws_close(rt_http_ws_t *ws, uint16_t code)
{
    if (ws->conn == NULL || ws->closing)
        return;
    ws->closing = 1;
    ws->close_code = code == 0 ? WSLAY_CODE_NORMAL_CLOSURE : code;
    h2o_timeout_link(ws->srv->loop, &ws->srv->ws_close_timeout,
                     &ws->close_entry);
    if (wslay_event_get_queued_msg_count(ws->conn->ws_ctx) > 0) {
        ws->flush_entry.cb = rt__ws_flush_check;
        h2o_timeout_link(ws->srv->loop, &ws->srv->ws_flush_timeout,
                         &ws->flush_entry);
        rt__ws_proceed(ws);
        return;
    }
    rt__ws_queue_close(ws);
}

int rt_http_ws_is_open(const rt_http_ws_t *ws)
{
    return ws->conn != NULL && !ws->closing;
}

size_t rt_http_ws_queued(const rt_http_ws_t *ws)
{
    if (ws->conn == NULL)
        return 0;
    return wslay_event_get_queued_msg_length(ws->conn->ws_ctx) + ws->out_len;
}

void rt_http_ws_release(rt_http_ws_t *ws)
{
    ws->cb = NULL;
    ws->ud = NULL;
    if (ws->conn != NULL && !ws->closing)
        rt_http_ws_close(ws, WSLAY_CODE_NORMAL_CLOSURE);
    rt__ws_unref(ws);
}

/* ---- lingering close -------------------------------------------------- */

/* h2o closes a connection right after an answer that ends it (a 413 for
 * a body over max_body_bytes, sent from the Content-Length before the
 * body is read); closing a socket with unread input makes the kernel
 * send a reset, and a client still uploading never reads the answer. So
 * each connection keeps a duplicate of its descriptor (while descriptors
 * allow); when h2o has closed its own and input is still unread, the
 * duplicate finishes the job: shut the write side (after the answer),
 * read and discard for up to RT_LINGER_MS or RT_LINGER_MAX_BYTES, then
 * close. */
#define RT_LINGER_MS 2000
#define RT_LINGER_MAX_BYTES (64u << 20)

typedef struct rt_linger {
    uv_poll_t poll;
    uv_timer_t timer;
    int fd, open_handles;
    size_t drained;
    struct rt_linger *prev, *next;
} rt_linger_t;

static rt_linger_t *rt__lingering; /* one loop per process */

static void rt__linger_closed(uv_handle_t *h)
{
    rt_linger_t *l = h->data;
    if (--l->open_handles > 0)
        return;
    close(l->fd);
    free(l);
}

static void rt__linger_end(rt_linger_t *l)
{
    if (l->open_handles < 2 || uv_is_closing((uv_handle_t *)&l->poll))
        return;
    RT_LIST_DEL(rt__lingering, l);
    uv_close((uv_handle_t *)&l->poll, rt__linger_closed);
    uv_close((uv_handle_t *)&l->timer, rt__linger_closed);
}

static void rt__linger_read(uv_poll_t *p, int status, int events)
{
    static char sink[65536];
    rt_linger_t *l = p->data;
    ssize_t n;
    (void)events;
    if (status < 0) {
        rt__linger_end(l);
        return;
    }
    while ((n = read(l->fd, sink, sizeof sink)) > 0) {
        l->drained += (size_t)n;
        if (l->drained > RT_LINGER_MAX_BYTES) {
            rt__linger_end(l);
            return;
        }
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        rt__linger_end(l);
}

static void rt__linger_timeout(uv_timer_t *t)
{
    rt__linger_end(t->data);
}

/* Takes fd over: closes it now when nothing is left to read, else
 * lingers. */
static void rt__linger(uv_loop_t *loop, int fd)
{
    rt_linger_t *l;
    int unread = 0;
    if (ioctl(fd, FIONREAD, &unread) != 0 || unread <= 0 ||
        (l = calloc(1, sizeof *l)) == NULL) {
        close(fd);
        return;
    }
    l->fd = fd;
    if (uv_poll_init(loop, &l->poll, fd) != 0) {
        free(l);
        close(fd);
        return;
    }
    l->poll.data = l;
    l->open_handles = 1;
    if (uv_timer_init(loop, &l->timer) != 0) {
        uv_close((uv_handle_t *)&l->poll, rt__linger_closed);
        return;
    }
    l->timer.data = l;
    l->open_handles = 2;
    RT_LIST_ADD(rt__lingering, l);
    (void)shutdown(fd, SHUT_WR);
    if (uv_poll_start(&l->poll, UV_READABLE, rt__linger_read) != 0 ||
        uv_timer_start(&l->timer, rt__linger_timeout, RT_LINGER_MS, 0) != 0) {
        rt__linger_end(l);
        return;
    }
    uv_unref((uv_handle_t *)&l->poll);
    uv_unref((uv_handle_t *)&l->timer);
}

/* Ends every lingering close now (the server is closing). */
static void rt__linger_stop_all(void)
{
    while (rt__lingering != NULL)
        rt__linger_end(rt__lingering);
}

/* ---- connections ------------------------------------------------------ */

static void on_conn_close(uv_handle_t *handle)
{
    rt_http_conn_t *c = (rt_http_conn_t *)handle;
    rt_http_server_t *srv = c->srv;
    if (c->linger_fd >= 0) {
        if (srv->state == RT_SRV_OPEN)
            rt__linger(srv->loop, c->linger_fd);
        else
            close(c->linger_fd);
    }
    if (c->counted)
        rt_addrcount_dec(&srv->per_client, c->peer);
    RT_LIST_DEL(srv->conns, c);
    srv->stats.connections_active--;
    free(c);
    rt__maybe_finish(srv);
}

static void on_rejected_close(uv_handle_t *handle)
{
    free(handle);
}

#define RT_HTTP_BUSY_BODY                                                      \
    "{\"error\":{\"code\":\"unavailable\","                                    \
    "\"message\":\"too many connections\"}}"
_Static_assert(sizeof(RT_HTTP_BUSY_BODY) - 1 == 65, "fix Content-Length");
static const char rt__busy_response[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                        "Content-Type: application/json\r\n"
                                        "Connection: close\r\n"
                                        "Content-Length: 65\r\n"
                                        "\r\n" RT_HTTP_BUSY_BODY;
#define RT_HTTP_CLIENT_BODY                                                    \
    "{\"error\":{\"code\":\"too_many_requests\","                              \
    "\"message\":\"too many connections from this address\"}}"
_Static_assert(sizeof(RT_HTTP_CLIENT_BODY) - 1 == 89, "fix Content-Length");
static const char rt__client_response[] = "HTTP/1.1 429 Too Many Requests\r\n"
                                          "Content-Type: application/json\r\n"
                                          "Retry-After: 1\r\n"
                                          "Connection: close\r\n"
                                          "Content-Length: 89\r\n"
                                          "\r\n" RT_HTTP_CLIENT_BODY;

/* Refuses a fresh connection with a canned answer (best effort: a fresh
 * socket always has room for it) and closes it. */
static void rt__refuse(rt_http_conn_t *c, const char *answer, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)answer, (unsigned)len);
    (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    uv_close((uv_handle_t *)&c->tcp, on_rejected_close);
}

/* Counts c against its address's share; 0, or -1 when over it. */
static int rt__count_client(rt_http_server_t *srv, rt_http_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    long n;
    c->counted = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0 ||
        rt_addrcount_key((struct sockaddr *)&ss, c->peer) != 0)
        return 0; /* not an IP peer: not counted */
    if (rt_addrcount_get(&srv->per_client, c->peer) >=
        srv->opts.max_client_connections)
        return -1;
    n = rt_addrcount_inc(&srv->per_client, c->peer);
    c->counted = n > 0;
    return 0;
}

static void on_accept(uv_stream_t *listener, int status)
{
    rt_http_server_t *srv = listener->data;
    rt_http_conn_t *c;
    h2o_socket_t *sock;

    if (status < 0)
        return; /* libuv keeps listening; EMFILE is handled by libuv */
    c = malloc(sizeof(*c));
    if (c == NULL)
        return;
    if (uv_tcp_init(srv->loop, &c->tcp) < 0) {
        free(c);
        return;
    }
    c->srv = srv;
    c->linger_fd = -1;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_rejected_close);
        return;
    }
    if (srv->state != RT_SRV_OPEN ||
        srv->stats.connections_active >= srv->opts.max_connections) {
        srv->stats.connections_rejected++;
        rt__refuse(c, rt__busy_response, sizeof(rt__busy_response) - 1);
        return;
    }
    if (rt__count_client(srv, c) != 0) {
        srv->stats.client_rejected++;
        rt__refuse(c, rt__client_response, sizeof(rt__client_response) - 1);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1);
    if ((srv->stats.connections_active + 1) * 2 + 512 < srv->nofile) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            c->linger_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    }
    RT_LIST_ADD(srv->conns, c);
    srv->stats.connections_active++;
    srv->stats.connections_total++;
    sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_close);
    h2o_accept(&srv->accept_ctx, sock);
}

/* ---- server ----------------------------------------------------------- */

static void rt__srv_free(rt_http_server_t *srv)
{
    rt_addrcount_free(&srv->per_client);
    free(srv->dirty);
    free(srv->host);
    free(srv);
}

static void on_srv_handle_close(uv_handle_t *handle)
{
    rt_http_server_t *srv = handle->data;
    if (--srv->open_handles == 0)
        rt__srv_free(srv);
}

static void on_listener_close(uv_handle_t *handle)
{
    rt_http_server_t *srv = handle->data;
    srv->listening = 0;
    if (--srv->open_handles == 0) {
        rt__srv_free(srv); /* only when rt_http_server_new failed */
        return;
    }
    rt__maybe_finish(srv);
}

static void rt__fill_defaults(rt_http_opts_t *o)
{
    if (o->host == NULL || *o->host == '\0')
        o->host = RT_HTTP_DEF_HOST;
    if (o->backlog <= 0)
        o->backlog = RT_HTTP_DEF_BACKLOG;
    if (o->max_body_bytes == 0)
        o->max_body_bytes = RT_HTTP_DEF_MAX_BODY;
    if (o->max_header_bytes == 0)
        o->max_header_bytes = RT_HTTP_DEF_MAX_HEADER;
    if (o->request_timeout_ms == 0)
        o->request_timeout_ms = RT_HTTP_DEF_REQ_TIMEOUT;
    if (o->max_connections == 0)
        o->max_connections = RT_HTTP_DEF_MAX_CONNS;
    if (o->max_client_connections == 0)
        o->max_client_connections = RT_HTTP_DEF_MAX_CLIENT_CONNS;
    if (o->ws_max_queued_bytes == 0)
        o->ws_max_queued_bytes = RT_HTTP_DEF_WS_QUEUE;
    if (o->ws_max_message_bytes == 0)
        o->ws_max_message_bytes = RT_HTTP_DEF_WS_MSG;
    if (o->ws_close_timeout_ms == 0)
        o->ws_close_timeout_ms = RT_HTTP_DEF_WS_CLOSE;
}

/* Resolves, binds and listens. Returns 0 or a negative uv error with a
 * message in errbuf. The listener handle is initialised on return
 * whenever *inited is set, even on failure. */
static int rt__listen(rt_http_server_t *srv, int *inited, char *errbuf,
                      size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    struct sockaddr_storage ss;
    char port[16];
    int rc, len = sizeof(ss);
    uv_os_fd_t fd;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", srv->opts.port);
    rc = getaddrinfo(srv->host, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(errbuf, errlen, "cannot resolve %s: %s", srv->host,
                 rc != 0 ? gai_strerror(rc) : "no address");
        if (res)
            freeaddrinfo(res);
        return UV_EINVAL;
    }
    rc = uv_tcp_init_ex(srv->loop, &srv->listener, res->ai_family);
    if (rc < 0) {
        snprintf(errbuf, errlen, "socket: %s", uv_strerror(rc));
        goto fail_init;
    }
    *inited = 1;
    srv->listener.data = srv;
    if (srv->opts.reuseport) {
        int one = 1;
        rc = uv_fileno((uv_handle_t *)&srv->listener, &fd);
        if (rc == 0 &&
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
            rc = UV_EINVAL;
        if (rc < 0) {
            snprintf(errbuf, errlen, "cannot set SO_REUSEPORT");
            goto fail;
        }
    }
    rc = uv_tcp_bind(&srv->listener, res->ai_addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, srv->opts.backlog,
                       on_accept);
    if (rc < 0) {
        snprintf(errbuf, errlen, "cannot listen on %s:%d: %s", srv->host,
                 srv->opts.port, uv_strerror(rc));
        goto fail;
    }
    rc = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len);
    if (rc < 0) {
        snprintf(errbuf, errlen, "getsockname: %s", uv_strerror(rc));
        goto fail;
    }
    srv->port = ss.ss_family == AF_INET6
                    ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    freeaddrinfo(res);
    return 0;
fail:
fail_init:
    freeaddrinfo(res);
    return rc;
}

rt_http_server_t *rt_http_server_new(uv_loop_t *loop, const rt_http_opts_t *o,
                                     rt_http_request_cb cb, void *data,
                                     char *errbuf, size_t errlen)
{
    rt_http_server_t *srv;
    rt_http_handler_t *handler;
    h2o_hostconf_t *hostconf;
    char dummy[1];
    int inited = 0;

    if (errbuf == NULL || errlen == 0) {
        errbuf = dummy;
        errlen = sizeof(dummy);
    }
    errbuf[0] = '\0';
    if (o->port < 0 || o->port > 65535) {
        snprintf(errbuf, errlen, "port must be 0..65535");
        return NULL;
    }
    srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    srv->loop = loop;
    srv->opts = *o;
    rt__fill_defaults(&srv->opts);
    {
        /* Raise the soft limit of descriptors to the hard one: lingering
         * closes need two per connection. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
            if (rl.rlim_cur < rl.rlim_max) {
                rlim_t want = rl.rlim_max;
                rl.rlim_cur = want;
                if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                    (void)getrlimit(RLIMIT_NOFILE, &rl);
            }
            srv->nofile = rl.rlim_cur == RLIM_INFINITY ? (size_t)-1
                                                       : (size_t)rl.rlim_cur;
        }
    }
    srv->host = strdup(srv->opts.host);
    if (srv->host == NULL) {
        snprintf(errbuf, errlen, "out of memory");
        goto fail_host;
    }
    srv->opts.host = srv->host;
    srv->on_request = cb;
    srv->data = data;
    if (uv_timer_init(loop, &srv->ticker) < 0) {
        snprintf(errbuf, errlen, "cannot create a timer");
        goto fail_timer;
    }
    srv->ticker.data = srv;
    srv->open_handles = 1;
    if (uv_prepare_init(loop, &srv->flusher) < 0) {
        snprintf(errbuf, errlen, "cannot create a prepare handle");
        goto fail_listen;
    }
    srv->flusher.data = srv;
    srv->open_handles++;
    if (rt__listen(srv, &inited, errbuf, errlen) < 0)
        goto fail_listen;
    srv->open_handles++;
    srv->listening = 1;

    h2o_config_init(&srv->config);
    srv->config.server_name = h2o_iovec_init(H2O_STRLIT(""));
    srv->config.max_request_entity_size = srv->opts.max_body_bytes;
    srv->config.http1.req_timeout = srv->opts.request_timeout_ms;
    srv->config.http1.upgrade_to_http2 = 0;
    hostconf = h2o_config_register_host(
        &srv->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    /* On the fallback path: every request-target reaches on_req. */
    handler = (rt_http_handler_t *)h2o_create_handler(&hostconf->fallback_path,
                                                      sizeof(*handler));
    handler->super.on_req = on_req;
    handler->srv = srv;
    h2o_context_init(&srv->ctx, loop, &srv->config);
    srv->accept_ctx.ctx = &srv->ctx;
    srv->accept_ctx.hosts = srv->config.hosts;
    h2o_timeout_init(loop, &srv->ws_close_timeout,
                     srv->opts.ws_close_timeout_ms);
    h2o_timeout_init(loop, &srv->ws_flush_timeout, 1);
    srv->h2o_ready = 1;
    return srv;

fail_listen:
    /* The handles free the struct when both are closed. */
    if (inited) {
        srv->open_handles++;
        uv_close((uv_handle_t *)&srv->listener, on_listener_close);
    }
    if (srv->flusher.data == srv)
        uv_close((uv_handle_t *)&srv->flusher, on_srv_handle_close);
    uv_close((uv_handle_t *)&srv->ticker, on_srv_handle_close);
    return NULL;
fail_timer:
    free(srv->host);
fail_host:
    free(srv);
    return NULL;
}

int rt_http_server_port(const rt_http_server_t *srv)
{
    return srv->port;
}

void rt_http_server_stats(const rt_http_server_t *srv, rt_http_stats_t *out)
{
    *out = srv->stats;
}

void rt_http_server_detach(rt_http_server_t *srv)
{
    srv->on_request = NULL;
    srv->data = NULL;
    srv->on_closed = NULL;
    srv->closed_data = NULL;
}

/* Shuts the read side of every HTTP/1 connection waiting for a request
 * (version 0: nothing parsed yet), so h2o sees EOF and closes it. */
static int rt__sweep_one(h2o_req_t *req, void *data)
{
    (void)data;
    if (req->version == 0)
        rt__shutdown_sock(req->conn->callbacks->get_socket(req->conn), SHUT_RD);
    return 0;
}

static void rt__sweep(rt_http_server_t *srv)
{
    if (srv->config.http1.callbacks.foreach_request != NULL)
        srv->config.http1.callbacks.foreach_request(&srv->ctx, rt__sweep_one,
                                                    NULL);
}

/* Grace is over: answer what is still pending and close every WebSocket
 * that is still open. */
static void rt__go_hard(rt_http_server_t *srv)
{
    rt_http_req_t *h, *next;
    rt_http_ws_t *ws;
    srv->state = RT_SRV_HARD;
    uv_update_time(srv->loop);
    srv->kill_at = uv_now(srv->loop) + RT_HTTP_KILL_MS;
    for (h = srv->reqs; h != NULL; h = next) {
        /* Answering never disposes synchronously; cutting a stream may
         * dispose h (only h). */
        next = h->next;
        if (h->streaming) {
            rt__stream_cut(h);
        } else if (!h->answered) {
            h->answered = 1;
            srv->stats.requests_active--;
            rt__send_error(h->req, 503, "unavailable",
                           "server is shutting down");
        }
    }
    for (ws = srv->wss; ws != NULL; ws = ws->next)
        if (ws->conn->sock != NULL)
            rt__shutdown_sock(ws->conn->sock, SHUT_RDWR);
}

/* Last resort: every socket still open is shut down both ways. */
static void rt__kill(rt_http_server_t *srv)
{
    rt_http_conn_t *c;
    uv_os_fd_t fd;
    srv->killed = 1;
    for (c = srv->conns; c != NULL; c = c->next)
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            (void)shutdown(fd, SHUT_RDWR);
}

static void on_finish(uv_timer_t *t)
{
    rt_http_server_t *srv = t->data;
    rt_http_closed_cb cb = srv->on_closed;
    void *data = srv->closed_data;

    uv_timer_stop(&srv->ticker);
    srv->state = RT_SRV_FINISHED;
    h2o_timeout_dispose(srv->loop, &srv->ws_close_timeout);
    h2o_timeout_dispose(srv->loop, &srv->ws_flush_timeout);
    /* Runs the loop once (see the top of the file). */
    h2o_context_dispose(&srv->ctx);
    h2o_config_dispose(&srv->config);
    srv->h2o_ready = 0;
    /* Every socket is closed: what is still listed has nothing to write. */
    rt_http_server_flush(srv);
    if (cb != NULL)
        cb(srv, data);
    uv_close((uv_handle_t *)&srv->flusher, on_srv_handle_close);
    uv_close((uv_handle_t *)&srv->ticker, on_srv_handle_close);
}

static void rt__maybe_finish(rt_http_server_t *srv)
{
    if (srv->state == RT_SRV_OPEN || srv->state == RT_SRV_FINISHED ||
        srv->listening || srv->conns != NULL)
        return;
    uv_timer_stop(&srv->ticker);
    (void)uv_timer_start(&srv->ticker, on_finish, 0, 0);
}

static void on_tick(uv_timer_t *t)
{
    rt_http_server_t *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    if (srv->state == RT_SRV_CLOSING && now >= srv->hard_at)
        rt__go_hard(srv);
    if (srv->state == RT_SRV_HARD && !srv->killed && now >= srv->kill_at)
        rt__kill(srv);
    rt__sweep(srv);
}

void rt_http_server_close(rt_http_server_t *srv, uint64_t grace_ms,
                          rt_http_closed_cb cb, void *data)
{
    rt_http_ws_t *ws, *next;
    uint64_t now;

    if (cb != NULL) {
        srv->on_closed = cb;
        srv->closed_data = data;
    }
    if (srv->state == RT_SRV_FINISHED)
        return;
    uv_update_time(srv->loop);
    now = uv_now(srv->loop);
    if (srv->state != RT_SRV_OPEN) {
        if (srv->state == RT_SRV_CLOSING && now + grace_ms < srv->hard_at) {
            srv->hard_at = now + grace_ms;
            if (grace_ms == 0)
                rt__go_hard(srv);
        }
        return;
    }
    srv->state = RT_SRV_CLOSING;
    srv->hard_at = now + grace_ms;
    rt__linger_stop_all();
    uv_close((uv_handle_t *)&srv->listener, on_listener_close);
    /* Requests parsed from now on get "Connection: close" (what
     * h2o_context_request_shutdown does for HTTP/1, without arming
     * HTTP/2's GOAWAY timer in the context). */
    srv->ctx.shutdown_requested = 1;
    for (ws = srv->wss; ws != NULL; ws = next) {
        next = ws->next; /* closing may unlink ws */
        rt_http_ws_close(ws, WSLAY_CODE_GOING_AWAY);
    }
    if (grace_ms == 0)
        rt__go_hard(srv);
    rt__sweep(srv);
    (void)uv_timer_start(&srv->ticker, on_tick, RT_HTTP_SWEEP_MS,
                         RT_HTTP_SWEEP_MS);
}
