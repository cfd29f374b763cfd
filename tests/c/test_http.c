/* test_http.c - unit tests of the HTTP/WebSocket server engine (rt_http.c):
 * requests answered now and later, 404 from the callback, 413, 431, 400,
 * keep-alive, unanswered requests, clients that leave while an answer is
 * pending, WebSocket echo, push and the slow-consumer limit, the connection
 * limit, graceful and hard close, streamed responses (chunked pieces, a
 * slow client held back, a client that leaves mid-stream, a cut stream,
 * a stream cut by the server's close), and nothing left open at the end.
 *
 * The server runs on the main thread's loop; a client thread speaks raw
 * HTTP/1.1 and WebSocket over blocking sockets and tells the loop when it
 * is done through a uv_async_t. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "rt_http.h"

#include "test_check.h"

static uv_loop_t loop;
static uv_async_t client_done;

/* Servers: main (most tests), tiny (max_connections 1), hard (grace over).
 * Their ports are read by the client thread; the pointers are loop-only. */
static rt_http_server_t *srv_main, *srv_tiny, *srv_hard;
static int port_main, port_tiny, port_hard;
static atomic_int closed_main, closed_tiny, closed_hard;

/* Server-side observations, read by the client thread. */
static atomic_int seen_requests;       /* callback calls on srv_main */
static atomic_int respond_late_rc = 1; /* rc of answering a gone client */
static atomic_int ws_messages, ws_closed_events;
static atomic_int flood_sent, flood_rc, flood_closed;
static atomic_int hard_late_rc = 1;
/* Streamed responses. */
static atomic_int stream_big_waits;   /* writes that had to wait */
static atomic_long stream_big_peak;   /* most bytes ever queued */
static atomic_int stream_gone_closed; /* CLOSED events of /stream-gone */
static atomic_int stream_gone_rc = 1; /* the write after CLOSED */
static atomic_int stream_cut_closed;  /* CLOSED events on srv_scut */
static rt_http_server_t *srv_scut;    /* cuts its stream when closing */
static int port_scut;
static atomic_int closed_scut;

/* ---- loop side: deferred answers ---------------------------------------- */

typedef struct {
    uv_timer_t timer;
    rt_http_req_t *req;
    const char *body;
    int close_server; /* close srv_main (grace) before answering */
    atomic_int *rc_out;
} later_t;

/* Close callback of a timer whose data is the struct embedding it. */
static void free_handle_data(uv_handle_t *h)
{
    free(h->data);
}

static void later_cb(uv_timer_t *t)
{
    later_t *l = t->data;
    static const rt_http_header_t hdr = {"content-type", 12, "text/plain", 10};
    int rc = rt_http_req_respond(l->req, 200, &hdr, 1, l->body, strlen(l->body),
                                 NULL);
    if (l->rc_out)
        atomic_store(l->rc_out, rc);
    else
        CHECK(rc == 0);
    rt_http_req_release(l->req);
    uv_close((uv_handle_t *)&l->timer, free_handle_data);
}

static void answer_later(rt_http_req_t *req, uint64_t ms, const char *body,
                         atomic_int *rc_out)
{
    later_t *l = calloc(1, sizeof(*l));
    CHECK(l != NULL);
    l->req = req;
    l->body = body;
    l->rc_out = rc_out;
    CHECK(uv_timer_init(&loop, &l->timer) == 0);
    l->timer.data = l;
    CHECK(uv_timer_start(&l->timer, later_cb, ms, 0) == 0);
}

/* ---- loop side: WebSockets ---------------------------------------------- */

/* "burst": three small messages sent from outside the callback wait for
 * a flush (rt_http_server_flush, or the loop's next poll), then go out
 * together; a large one goes out at once. */
typedef struct {
    uv_timer_t timer;
    rt_http_ws_t *ws;
} burst_t;

static void burst_cb(uv_timer_t *t)
{
    burst_t *b = t->data;
    static char big[20 * 1024];
    int i;
    for (i = 0; i < 3; i++) {
        CHECK(rt_http_ws_send(b->ws, 0, "part", 4) == 0);
        CHECK(rt_http_ws_queued(b->ws) == (size_t)(i + 1) * 6);
    }
    rt_http_server_flush(srv_main);
    CHECK(rt_http_ws_queued(b->ws) == 0);
    memset(big, 'b', sizeof(big));
    CHECK(rt_http_ws_send(b->ws, 1, big, sizeof(big)) == 0);
    CHECK(rt_http_ws_queued(b->ws) == 0);
    uv_close((uv_handle_t *)&b->timer, free_handle_data);
}

static void echo_ws_cb(rt_http_ws_t *ws, rt_http_ws_event_t ev,
                       const char *data, size_t len, void *ud)
{
    (void)ud;
    if (ev == RT_HTTP_WS_CLOSED) {
        atomic_fetch_add(&ws_closed_events, 1);
        rt_http_ws_release(ws);
        return;
    }
    atomic_fetch_add(&ws_messages, 1);
    if (len == 5 && memcmp(data, "burst", 5) == 0) {
        burst_t *b = calloc(1, sizeof(*b));
        CHECK(b != NULL);
        b->ws = ws;
        CHECK(uv_timer_init(&loop, &b->timer) == 0);
        b->timer.data = b;
        CHECK(uv_timer_start(&b->timer, burst_cb, 0, 0) == 0);
        return;
    }
    /* Sending from inside the callback only queues. */
    CHECK(rt_http_ws_send(ws, ev == RT_HTTP_WS_BINARY, data, len) == 0);
}

/* The flood: a timer sends 64 KiB messages to a client that never reads,
 * until the engine refuses with backpressure, then closes the socket. */
typedef struct {
    uv_timer_t timer;
    rt_http_ws_t *ws;
    char *chunk;
} flood_t;

static void flood_closed_cb(uv_handle_t *h)
{
    flood_t *f = h->data;
    free(f->chunk);
    free(f);
}

static void flood_ws_cb(rt_http_ws_t *ws, rt_http_ws_event_t ev,
                        const char *data, size_t len, void *ud)
{
    (void)data;
    (void)len;
    (void)ud;
    if (ev == RT_HTTP_WS_CLOSED) {
        atomic_store(&flood_closed, 1);
        rt_http_ws_release(ws);
    }
}

static void flood_tick(uv_timer_t *t)
{
    flood_t *f = t->data;
    int rc = 0, i;
    for (i = 0; i < 16 && rc == 0; i++) {
        rc = rt_http_ws_send(f->ws, 1, f->chunk, 64 * 1024);
        if (rc == 0)
            atomic_fetch_add(&flood_sent, 1);
    }
    if (rc == 0 && atomic_load(&flood_sent) < 4096)
        return; /* 256 MiB without backpressure would be a failure */
    atomic_store(&flood_rc, rc);
    CHECK(rt_http_ws_queued(f->ws) > 0);
    rt_http_ws_close(f->ws, 1008);
    CHECK(!rt_http_ws_is_open(f->ws));
    CHECK(rt_http_ws_send(f->ws, 0, "x", 1) == RT_ECLOSED);
    uv_close((uv_handle_t *)&f->timer, flood_closed_cb);
}

/* ---- loop side: streamed responses -------------------------------------- */

#define BIG_TOTAL (4 * 1024 * 1024)
#define BIG_PIECE (64 * 1024)
#define BIG_LIMIT (256 * 1024) /* what the writer lets pile up */

typedef enum { S_PIECES, S_BIG, S_GONE, S_SCUT } strm_mode_t;

typedef struct {
    uv_timer_t timer;
    rt_http_req_t *req;
    strm_mode_t mode;
    int step;
    size_t written;
    int waiting; /* S_BIG: for WRITABLE */
    int ended;
} strm_t;

static void strm_release(strm_t *st)
{
    uv_timer_stop(&st->timer);
    rt_http_req_release(st->req);
    uv_close((uv_handle_t *)&st->timer, free_handle_data);
}

/* S_BIG: writes 64 KiB pieces until 256 KiB are queued, then waits for
 * the socket; ends at 4 MiB. */
static void strm_big_fill(strm_t *st)
{
    static char piece[BIG_PIECE];
    size_t q;
    memset(piece, 'z', sizeof(piece));
    while (st->written < BIG_TOTAL) {
        q = rt_http_stream_queued(st->req);
        if ((long)q > atomic_load(&stream_big_peak))
            atomic_store(&stream_big_peak, (long)q);
        if (q >= BIG_LIMIT) {
            if (!st->waiting)
                atomic_fetch_add(&stream_big_waits, 1);
            st->waiting = 1;
            return;
        }
        st->waiting = 0;
        CHECK(rt_http_stream_write(st->req, piece, sizeof(piece)) == 0);
        st->written += sizeof(piece);
    }
    CHECK(rt_http_stream_end(st->req, 1) == 0);
    st->ended = 1;
    strm_release(st);
}

static void strm_cb(rt_http_req_t *req, rt_http_stream_event_t ev, void *ud)
{
    strm_t *st = ud;
    CHECK(req == st->req);
    CHECK(!st->ended);
    if (ev == RT_HTTP_STREAM_CLOSED) {
        if (st->mode == S_GONE) {
            atomic_fetch_add(&stream_gone_closed, 1);
            atomic_store(&stream_gone_rc, rt_http_stream_write(req, "late", 4));
        } else if (st->mode == S_SCUT) {
            atomic_fetch_add(&stream_cut_closed, 1);
        } else {
            CHECK(0 && "unexpected CLOSED");
        }
        st->ended = 1;
        strm_release(st);
        return;
    }
    if (st->mode == S_BIG)
        strm_big_fill(st);
}

static void strm_tick(uv_timer_t *t)
{
    strm_t *st = t->data;
    char piece[32];
    if (st->mode == S_PIECES) {
        if (st->step == 3) {
            CHECK(rt_http_stream_end(st->req, 1) == 0);
            CHECK(rt_http_stream_end(st->req, 1) == RT_ECLOSED);
            CHECK(rt_http_stream_write(st->req, "x", 1) == RT_ECLOSED);
            st->ended = 1;
            strm_release(st);
            return;
        }
        snprintf(piece, sizeof(piece), "piece%d;", ++st->step);
        CHECK(rt_http_stream_write(st->req, piece, strlen(piece)) == 0);
    } else if (st->mode == S_GONE) {
        /* Keeps writing until the engine says the client is gone. */
        CHECK(rt_http_stream_write(st->req, "tick;", 5) == 0);
    }
}

static strm_t *strm_start(rt_http_req_t *req, strm_mode_t mode, int status,
                          uint64_t every_ms)
{
    rt_http_header_t ct = {"Content-Type", 12, "text/event-stream", 17};
    strm_t *st = calloc(1, sizeof(*st));
    CHECK(st != NULL);
    st->req = req;
    st->mode = mode;
    CHECK(uv_timer_init(&loop, &st->timer) == 0);
    st->timer.data = st;
    CHECK(rt_http_stream_write(req, "x", 1) == RT_EINVAL);
    CHECK(rt_http_req_stream(req, status, &ct, 1, strm_cb, st, NULL) == 0);
    CHECK(rt_http_req_stream(req, status, &ct, 1, strm_cb, st, NULL) ==
          RT_EANSWERED);
    CHECK(rt_http_req_respond(req, 200, NULL, 0, "", 0, NULL) == RT_EANSWERED);
    if (every_ms > 0)
        CHECK(uv_timer_start(&st->timer, strm_tick, every_ms, every_ms) == 0);
    return st;
}

/* ---- loop side: the request callbacks ----------------------------------- */

static void on_closed(rt_http_server_t *srv, void *data);

static int path_is(const rt_http_req_info_t *i, const char *p)
{
    return i->path_len == strlen(p) && memcmp(i->path, p, i->path_len) == 0;
}

static int find_header(rt_http_req_t *req, const char *name,
                       rt_http_header_t *out)
{
    size_t i, n = rt_http_req_header_count(req);
    for (i = 0; i < n; i++) {
        CHECK(rt_http_req_header(req, i, out) == 0);
        if (out->name_len == strlen(name) &&
            memcmp(out->name, name, out->name_len) == 0)
            return 1;
    }
    CHECK(rt_http_req_header(req, n, out) == RT_EINVAL);
    return 0;
}

static void respond_text(rt_http_req_t *req, int status, const char *body)
{
    CHECK(rt_http_req_respond(req, status, NULL, 0, body, strlen(body), NULL) ==
          0);
    rt_http_req_release(req);
}

static void on_main(rt_http_server_t *srv, rt_http_req_t *req, void *data)
{
    rt_http_req_info_t info;
    rt_http_header_t h;
    const char *err = NULL;

    CHECK(srv == srv_main);
    CHECK(data == &port_main);
    atomic_fetch_add(&seen_requests, 1);
    CHECK(rt_http_req_info(req, &info) == 0);
    if (path_is(&info, "/hello")) {
        rt_http_header_t out[2] = {{"X-Reply", 7, "yes", 3},
                                   {"Content-Type", 12, "text/plain", 10}};
        CHECK((info.method_len == 3 && memcmp(info.method, "GET", 3) == 0) ||
              (info.method_len == 4 && memcmp(info.method, "HEAD", 4) == 0));
        CHECK(info.query_len == 7 && memcmp(info.query, "a=1&b=2", 7) == 0);
        CHECK(strcmp(info.remote, "127.0.0.1") == 0);
        CHECK(info.remote_port > 0);
        CHECK(info.version == 0x101);
        CHECK(!info.websocket);
        CHECK(find_header(req, "x-test", &h));
        CHECK(h.value_len == 5 && memcmp(h.value, "Value", 5) == 0);
        CHECK(find_header(req, "host", &h));
        CHECK(!find_header(req, "content-length", &h));
        CHECK(rt_http_req_respond(req, 200, out, 2, "hello", 5, NULL) == 0);
        CHECK(rt_http_req_respond(req, 200, NULL, 0, "x", 1, NULL) ==
              RT_EANSWERED);
        rt_http_req_release(req);
    } else if (path_is(&info, "/echo")) {
        CHECK(info.body_len == 11 && memcmp(info.body, "hello there", 11) == 0);
        CHECK(info.query_len == 0 && info.query != NULL);
        CHECK(find_header(req, "content-length", &h));
        CHECK(h.value_len == 2 && memcmp(h.value, "11", 2) == 0);
        CHECK(rt_http_req_respond(req, 201, NULL, 0, info.body, info.body_len,
                                  NULL) == 0);
        rt_http_req_release(req);
    } else if (path_is(&info, "/bad-header")) {
        rt_http_header_t bad = {"x-bad", 5, "a\r\nx-injected: 1", 17};
        rt_http_header_t badname = {"x bad", 5, "v", 1};
        CHECK(rt_http_req_respond(req, 200, &bad, 1, "", 0, &err) == RT_EINVAL);
        CHECK(err != NULL);
        CHECK(rt_http_req_respond(req, 200, &badname, 1, "", 0, NULL) ==
              RT_EINVAL);
        CHECK(rt_http_req_respond(req, 99, NULL, 0, "", 0, NULL) == RT_EINVAL);
        respond_text(req, 204, "ignored body");
    } else if (path_is(&info, "/defer")) {
        answer_later(req, 30, "deferred", NULL);
    } else if (path_is(&info, "/gone")) {
        /* The client leaves before this answer: writing it must fail
         * quietly (rc 0: h2o notices the closed socket afterwards). */
        answer_later(req, 100, "too late", &respond_late_rc);
    } else if (path_is(&info, "/drop")) {
        rt_http_req_release(req); /* the engine answers 503 */
    } else if (path_is(&info, "/ws")) {
        int rc = -100;
        rt_http_ws_t *ws;
        CHECK(info.websocket);
        ws = rt_http_req_websocket(req, echo_ws_cb, NULL, &rc);
        CHECK(ws != NULL && rc == 0);
        /* Server push, queued before the 101 has even been written. */
        CHECK(rt_http_ws_send(ws, 0, "welcome", 7) == 0);
        CHECK(rt_http_req_respond(req, 200, NULL, 0, "", 0, NULL) ==
              RT_EANSWERED);
        rt_http_req_release(req);
    } else if (path_is(&info, "/ws-flood")) {
        int rc = -100;
        flood_t *f = calloc(1, sizeof(*f));
        CHECK(f != NULL);
        f->chunk = calloc(1, 64 * 1024);
        CHECK(f->chunk != NULL);
        f->ws = rt_http_req_websocket(req, flood_ws_cb, NULL, &rc);
        CHECK(f->ws != NULL && rc == 0);
        rt_http_req_release(req);
        CHECK(uv_timer_init(&loop, &f->timer) == 0);
        f->timer.data = f;
        CHECK(uv_timer_start(&f->timer, flood_tick, 5, 5) == 0);
    } else if (path_is(&info, "/not-ws")) {
        int rc = 0;
        CHECK(rt_http_req_websocket(req, echo_ws_cb, NULL, &rc) == NULL);
        CHECK(rc == RT_ENOT_WEBSOCKET);
        respond_text(req, 400, "not a websocket");
    } else if (path_is(&info, "/stream")) {
        (void)strm_start(req, S_PIECES, 200, 10);
    } else if (path_is(&info, "/stream-head")) {
        /* HEAD: complete with the head; nothing can be written. */
        strm_t *st = strm_start(req, S_PIECES, 200, 0);
        CHECK(rt_http_stream_write(req, "x", 1) == RT_ECLOSED);
        CHECK(rt_http_stream_end(req, 1) == RT_ECLOSED);
        strm_release(st);
    } else if (path_is(&info, "/stream-404")) { /* no chunking: until EOF */
        (void)strm_start(req, S_PIECES, 404, 5);
    } else if (path_is(&info, "/stream-big")) {
        strm_big_fill(strm_start(req, S_BIG, 200, 0));
    } else if (path_is(&info, "/stream-gone")) {
        (void)strm_start(req, S_GONE, 200, 5);
    } else if (path_is(&info, "/stream-cut")) {
        /* Two pieces, then cut: released without an end, as a handler
         * that failed. */
        rt_http_header_t ct = {"content-type", 12, "text/plain", 10};
        CHECK(rt_http_req_stream(req, 200, &ct, 1, NULL, NULL, NULL) == 0);
        CHECK(rt_http_stream_write(req, "one;", 4) == 0);
        CHECK(rt_http_stream_write(req, "two;", 4) == 0);
        CHECK(rt_http_stream_queued(req) >= 4);
        rt_http_req_release(req);
    } else if (path_is(&info, "/stream-bad")) {
        rt_http_header_t bad = {"x-bad", 5, "a\r\nb", 4};
        CHECK(rt_http_req_stream(req, 200, &bad, 1, NULL, NULL, &err) ==
              RT_EINVAL);
        CHECK(err != NULL);
        CHECK(rt_http_req_stream(req, 700, NULL, 0, NULL, NULL, NULL) ==
              RT_EINVAL);
        respond_text(req, 400, "bad stream");
    } else if (path_is(&info, "/close-server")) {
        /* Graceful close while this very request is still pending. */
        rt_http_server_close(srv_main, 5000, on_closed, &closed_main);
        answer_later(req, 50, "bye", NULL);
    } else {
        respond_text(req, 404, "no such thing");
    }
}

static void on_tiny(rt_http_server_t *srv, rt_http_req_t *req, void *data)
{
    (void)srv;
    (void)data;
    respond_text(req, 200, "tiny");
}

/* srv_hard keeps its requests until the grace is over. */
static rt_http_req_t *hard_held;

static void on_hard(rt_http_server_t *srv, rt_http_req_t *req, void *data)
{
    (void)data;
    hard_held = req;
    rt_http_server_close(srv, 100, on_closed, &closed_hard);
}

/* srv_scut streams forever and closes itself with 100 ms of grace: the
 * hard stop cuts the stream and tells its owner. */
static void on_scut(rt_http_server_t *srv, rt_http_req_t *req, void *data)
{
    strm_t *st;
    (void)data;
    st = strm_start(req, S_SCUT, 200, 0);
    CHECK(rt_http_stream_write(st->req, "before;", 7) == 0);
    rt_http_server_close(srv, 100, on_closed, &closed_scut);
}

static rt_http_stats_t main_stats; /* srv_main's counters when closed */

static void on_closed(rt_http_server_t *srv, void *data)
{
    atomic_int *flag = data;
    CHECK(rt_http_server_port(srv) > 0);
    if (srv == srv_main)
        rt_http_server_stats(srv, &main_stats);
    if (srv == srv_hard) {
        /* The engine answered 503 at the hard stop; ours is too late. */
        atomic_store(&hard_late_rc,
                     rt_http_req_respond(hard_held, 200, NULL, 0, "", 0, NULL));
        rt_http_req_release(hard_held);
    }
    atomic_store(flag, 1);
}

static void on_client_done(uv_async_t *a)
{
    uv_close((uv_handle_t *)a, NULL);
    if (!atomic_load(&closed_tiny))
        rt_http_server_close(srv_tiny, 0, on_closed, &closed_tiny);
}

/* ---- client side: blocking sockets -------------------------------------- */

typedef struct {
    int fd;
    char *buf; /* bytes read and not yet consumed */
    size_t len, cap;
} conn_t;

typedef struct {
    int status;
    char *head; /* status line and headers, NUL-terminated */
    char *body;
    size_t body_len;
} resp_t;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec * 1000.0 + tv.tv_usec / 1000.0;
}

static int c_open(conn_t *c, int port)
{
    struct sockaddr_in a;
    struct timeval tv = {5, 0};
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

static void c_close(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

#define c_sends(c, s) c_send((c), (s), strlen(s))

static int c_send(conn_t *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads more bytes into c->buf. Returns the count, 0 at EOF, -1 error. */
static ssize_t c_fill(conn_t *c)
{
    ssize_t n;
    if (c->cap - c->len < 65536) {
        char *nb = realloc(c->buf, c->cap + 65536 + 1);
        if (nb == NULL)
            return -1;
        c->buf = nb;
        c->cap += 65536;
    }
    n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n > 0) {
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
    }
    return n;
}

/* Drops the first n buffered bytes (keeps the buffer NUL-terminated). */
static void c_consume(conn_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n + 1);
    c->len -= n;
}

static int body_has(const resp_t *r, const char *s)
{
    return r->body != NULL && strstr(r->body, s) != NULL;
}

static void resp_free(resp_t *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* Value of header name in head (case-insensitive), or NULL. */
static const char *head_value(const char *head, const char *name, size_t *len)
{
    const char *p = strstr(head, "\r\n");
    size_t nl = strlen(name);
    while (p != NULL && p[2] != '\r' && p[2] != '\0') {
        const char *line = p + 2, *end = strstr(line, "\r\n");
        if (end == NULL)
            return NULL;
        if ((size_t)(end - line) > nl && line[nl] == ':' &&
            strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            *len = (size_t)(end - v);
            return v;
        }
        p = end;
    }
    return NULL;
}

/* Reads one response (Content-Length bodies, or to EOF without one).
 * Returns 0, or -1 on EOF/error before a complete head. */
static int c_read_response(conn_t *c, resp_t *r, int head_request)
{
    char *end;
    size_t hlen, clen = 0, vlen;
    const char *v;
    int has_len;
    memset(r, 0, sizeof(*r));
    while ((end = c->buf ? strstr(c->buf, "\r\n\r\n") : NULL) == NULL)
        if (c_fill(c) <= 0)
            return -1;
    hlen = (size_t)(end - c->buf) + 4;
    r->head = strndup(c->buf, hlen);
    if (r->head == NULL)
        return -1;
    r->status = atoi(r->head + 9);
    c_consume(c, hlen);
    v = head_value(r->head, "content-length", &vlen);
    has_len = v != NULL;
    if (has_len)
        clen = strtoul(v, NULL, 10);
    if (head_request || r->status == 204 || r->status == 304 ||
        r->status == 101)
        has_len = 1, clen = 0;
    if (has_len) {
        while (c->len < clen)
            if (c_fill(c) <= 0)
                return -1;
    } else {
        while (c_fill(c) > 0)
            ;
        clen = c->len;
    }
    r->body = malloc(clen + 1);
    if (r->body == NULL)
        return -1;
    memcpy(r->body, c->buf, clen);
    r->body[clen] = '\0';
    r->body_len = clen;
    c_consume(c, clen);
    return 0;
}

/* One request on a new connection. */
static int roundtrip(int port, const char *raw, resp_t *r)
{
    conn_t c;
    int rc;
    if (c_open(&c, port) != 0)
        return -1;
    rc = c_send(&c, raw, strlen(raw));
    if (rc == 0)
        rc = c_read_response(&c, r, 0);
    c_close(&c);
    return rc;
}

/* 1 when the server closes the connection (EOF) within ~5 s. */
static int c_sees_eof(conn_t *c)
{
    ssize_t n;
    while ((n = c_fill(c)) > 0)
        ;
    return n == 0;
}

/* Reads a chunked body into *out (NUL-terminated, caller frees). Returns
 * 1 when it ended with the last chunk, 0 when the connection closed or
 * the chunk framing broke first (a cut stream). */
static int c_read_chunked(conn_t *c, char **out, size_t *out_len)
{
    size_t len = 0, cap = 1024;
    char *body = malloc(cap);
    int complete = 0;
    CHECK(body != NULL);
    for (;;) {
        char *eol, *end;
        unsigned long n;
        size_t hl;
        while ((eol = c->buf ? strstr(c->buf, "\r\n") : NULL) == NULL)
            if (c_fill(c) <= 0)
                goto out;
        n = strtoul(c->buf, &end, 16);
        if (end == c->buf || end != eol)
            goto out;                    /* not a chunk size line: broken */
        hl = (size_t)(eol - c->buf) + 2; /* c_fill moves the buffer */
        while (c->len < hl + n + 2)
            if (c_fill(c) <= 0)
                goto out;
        c_consume(c, hl);
        if (memcmp(c->buf + n, "\r\n", 2) != 0)
            goto out;
        if (n == 0) {
            complete = 1;
            c_consume(c, 2);
            goto out;
        }
        while (len + n + 1 > cap)
            cap *= 2;
        body = realloc(body, cap);
        CHECK(body != NULL);
        memcpy(body + len, c->buf, n);
        len += n;
        c_consume(c, n + 2);
    }
out:
    body[len] = '\0';
    *out = body;
    *out_len = len;
    return complete;
}

/* Sends a GET and reads the head of the answer into r (no body). */
static int c_get_head(conn_t *c, const char *path, resp_t *r)
{
    char req[256];
    char *end;
    size_t hlen;
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    memset(r, 0, sizeof(*r));
    if (c_sends(c, req) != 0)
        return -1;
    while ((end = c->buf ? strstr(c->buf, "\r\n\r\n") : NULL) == NULL)
        if (c_fill(c) <= 0)
            return -1;
    hlen = (size_t)(end - c->buf) + 4;
    r->head = strndup(c->buf, hlen);
    CHECK(r->head != NULL);
    r->status = atoi(r->head + 9);
    c_consume(c, hlen);
    return 0;
}

/* ---- client side: WebSocket framing ------------------------------------- */

static int ws_handshake(conn_t *c, int port, const char *path)
{
    char req[512];
    resp_t r;
    size_t vlen;
    const char *v;
    if (c_open(c, port) != 0)
        return -1;
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
             path);
    if (c_send(c, req, strlen(req)) != 0 || c_read_response(c, &r, 0) != 0)
        return -1;
    CHECK(r.status == 101);
    v = head_value(r.head, "sec-websocket-accept", &vlen);
    CHECK(v != NULL && vlen == 28 &&
          memcmp(v, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28) == 0);
    resp_free(&r);
    return 0;
}

/* Sends a masked frame (payload < 126 bytes). */
static int ws_send_frame(conn_t *c, int opcode, const char *data, size_t len)
{
    unsigned char f[2 + 4 + 125];
    static const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    size_t i;
    if (len > 125)
        return -1;
    f[0] = (unsigned char)(0x80 | opcode);
    f[1] = (unsigned char)(0x80 | len);
    memcpy(f + 2, mask, 4);
    for (i = 0; i < len; i++)
        f[6 + i] = (unsigned char)data[i] ^ mask[i % 4];
    return c_send(c, f, 6 + len);
}

/* Reads one frame; returns its opcode (payload copied to out, NUL-ended,
 * up to cap - 1 bytes) or -1. */
static int ws_read_frame(conn_t *c, char *out, size_t cap, size_t *plen)
{
    size_t len, off = 2;
    unsigned char *b;
    int op;
    while (c->len < 2)
        if (c_fill(c) <= 0)
            return -1;
    b = (unsigned char *)c->buf;
    op = b[0] & 0x0f;
    len = b[1] & 0x7f;
    if (len == 126) {
        while (c->len < 4)
            if (c_fill(c) <= 0)
                return -1;
        b = (unsigned char *)c->buf;
        len = ((size_t)b[2] << 8) | b[3];
        off = 4;
    } else if (len == 127) {
        return -1; /* not used by these tests */
    }
    while (c->len < off + len)
        if (c_fill(c) <= 0)
            return -1;
    *plen = len;
    if (cap > 0) {
        size_t n = len < cap - 1 ? len : cap - 1;
        memcpy(out, c->buf + off, n);
        out[n] = '\0';
    }
    c_consume(c, off + len);
    return op;
}

/* ---- client side: the scenarios ----------------------------------------- */

static void t_get_and_headers(void)
{
    resp_t r;
    size_t vlen;
    const char *v;
    CHECK(roundtrip(port_main,
                    "GET /hello?a=1&b=2 HTTP/1.1\r\nHost: localhost\r\n"
                    "X-Test: Value\r\n\r\n",
                    &r) == 0);
    CHECK(r.status == 200);
    CHECK(strcmp(r.body, "hello") == 0);
    v = head_value(r.head, "x-reply", &vlen);
    CHECK(v != NULL && vlen == 3 && memcmp(v, "yes", 3) == 0);
    v = head_value(r.head, "content-length", &vlen);
    CHECK(v != NULL && vlen == 1 && *v == '5');
    resp_free(&r);
}

static void t_post_404_invalid(void)
{
    resp_t r;
    CHECK(roundtrip(port_main,
                    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
                    "\r\nhello there",
                    &r) == 0);
    CHECK(r.status == 201);
    CHECK(strcmp(r.body, "hello there") == 0);
    resp_free(&r);
    CHECK(roundtrip(port_main, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", &r) ==
          0);
    CHECK(r.status == 404);
    CHECK(strcmp(r.body, "no such thing") == 0);
    resp_free(&r);
    CHECK(roundtrip(port_main, "GET /bad-header HTTP/1.1\r\nHost: x\r\n\r\n",
                    &r) == 0);
    CHECK(r.status == 204);
    CHECK(strstr(r.head, "x-injected") == NULL);
    resp_free(&r);
    CHECK(roundtrip(port_main, "GET /not-ws HTTP/1.1\r\nHost: x\r\n\r\n", &r) ==
          0);
    CHECK(r.status == 400);
    resp_free(&r);
}

static void t_limits(void)
{
    resp_t r;
    char *big;
    size_t n;
    int before = atomic_load(&seen_requests);
    /* 413 from the Content-Length alone: no body is sent at all. */
    CHECK(roundtrip(port_main,
                    "POST /echo HTTP/1.1\r\nHost: x\r\n"
                    "Content-Length: 5000\r\n\r\n",
                    &r) == 0);
    CHECK(r.status == 413);
    resp_free(&r);
    /* A chunked body that grows past the limit. */
    n = 3000;
    big = malloc(n + 256);
    CHECK(big != NULL);
    snprintf(big, 256,
             "POST /echo HTTP/1.1\r\nHost: x\r\n"
             "Transfer-Encoding: chunked\r\n\r\n%zx\r\n",
             n);
    {
        size_t hl = strlen(big);
        memset(big + hl, 'a', n);
        big[hl + n] = '\0';
    }
    /* (the terminating chunk is never needed) */
    CHECK(roundtrip(port_main, big, &r) == 0);
    CHECK(r.status == 413);
    resp_free(&r);
    free(big);
    /* 431: headers over max_header_bytes (4096). */
    big = malloc(6000);
    CHECK(big != NULL);
    strcpy(big, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ");
    n = strlen(big);
    memset(big + n, 'b', 5000);
    strcpy(big + n + 5000, "\r\n\r\n");
    CHECK(roundtrip(port_main, big, &r) == 0);
    CHECK(r.status == 431);
    CHECK(body_has(&r, "header_too_large"));
    resp_free(&r);
    free(big);
    /* 400: a malformed request line. */
    CHECK(roundtrip(port_main, "BLAH\r\n\r\n", &r) == 0);
    CHECK(r.status == 400);
    resp_free(&r);
    /* The callback saw only the 431 (counted, not handed over). */
    CHECK(atomic_load(&seen_requests) == before);
}

static void t_deferred_keepalive(void)
{
    conn_t c;
    resp_t r;
    double t0;
    int i;
    CHECK(c_open(&c, port_main) == 0);
    t0 = now_ms();
    CHECK(c_sends(&c, "GET /defer HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(c_read_response(&c, &r, 0) == 0);
    CHECK(r.status == 200);
    CHECK(strcmp(r.body, "deferred") == 0);
    CHECK(now_ms() - t0 >= 25);
    resp_free(&r);
    /* More requests on the same connection, one pipelined pair too. */
    for (i = 0; i < 20; i++) {
        CHECK(c_sends(&c, "GET /hello?a=1&b=2 HTTP/1.1\r\nHost: x\r\n"
                          "X-Test: Value\r\n\r\n") == 0);
        CHECK(c_read_response(&c, &r, 0) == 0);
        CHECK(r.status == 200 && strcmp(r.body, "hello") == 0);
        resp_free(&r);
    }
    CHECK(c_sends(&c, "HEAD /hello?a=1&b=2 HTTP/1.1\r\nHost: x\r\n"
                      "X-Test: Value\r\n\r\n"
                      "GET /defer HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(c_read_response(&c, &r, 1) == 0);
    CHECK(r.status == 200 && r.body_len == 0);
    resp_free(&r);
    CHECK(c_read_response(&c, &r, 0) == 0);
    CHECK(r.status == 200 && strcmp(r.body, "deferred") == 0);
    resp_free(&r);
    c_close(&c);
}

static void t_unanswered_and_gone(void)
{
    resp_t r;
    conn_t c;
    CHECK(roundtrip(port_main, "GET /drop HTTP/1.1\r\nHost: x\r\n\r\n", &r) ==
          0);
    CHECK(r.status == 503);
    CHECK(body_has(&r, "not answered"));
    resp_free(&r);
    /* Leave while the answer is pending; the server must carry on. */
    CHECK(c_open(&c, port_main) == 0);
    CHECK(c_sends(&c, "GET /gone HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    sleep_ms(10);
    c_close(&c);
    sleep_ms(200);
    CHECK(atomic_load(&respond_late_rc) == 0);
    CHECK(roundtrip(port_main, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", &r) ==
          0);
    CHECK(r.status == 404);
    resp_free(&r);
}

static void t_websocket(void)
{
    conn_t c;
    char buf[256];
    size_t len;
    int i;
    CHECK(ws_handshake(&c, port_main, "/ws") == 0);
    CHECK(ws_read_frame(&c, buf, sizeof(buf), &len) == 1);
    CHECK(strcmp(buf, "welcome") == 0);
    for (i = 0; i < 3; i++) {
        CHECK(ws_send_frame(&c, 1, "echo me", 7) == 0);
        CHECK(ws_read_frame(&c, buf, sizeof(buf), &len) == 1);
        CHECK(strcmp(buf, "echo me") == 0);
    }
    /* A ping is answered by wslay; the callback never sees it. */
    CHECK(ws_send_frame(&c, 9, "pp", 2) == 0);
    CHECK(ws_read_frame(&c, buf, sizeof(buf), &len) == 10);
    CHECK(strcmp(buf, "pp") == 0);
    CHECK(ws_send_frame(&c, 2, "\x01\x02", 2) == 0);
    CHECK(ws_read_frame(&c, buf, sizeof(buf), &len) == 2);
    CHECK(len == 2);
    CHECK(ws_send_frame(&c, 1, "burst", 5) == 0);
    for (i = 0; i < 3; i++) {
        CHECK(ws_read_frame(&c, buf, sizeof(buf), &len) == 1);
        CHECK(strcmp(buf, "part") == 0);
    }
    {
        char *big = malloc(32 * 1024);
        CHECK(big != NULL);
        CHECK(ws_read_frame(&c, big, 32 * 1024, &len) == 2);
        CHECK(len == 20 * 1024 && big[0] == 'b' && big[len - 1] == 'b');
        free(big);
    }
    /* Close handshake started by the client: 1000 comes back, then EOF. */
    CHECK(ws_send_frame(&c, 8, "\x03\xe8", 2) == 0);
    CHECK(ws_read_frame(&c, buf, sizeof(buf), &len) == 8);
    CHECK(len >= 2 && (unsigned char)buf[0] == 0x03 &&
          (unsigned char)buf[1] == 0xe8);
    CHECK(c_sees_eof(&c));
    c_close(&c);
    sleep_ms(20);
    CHECK(atomic_load(&ws_messages) == 5);
    CHECK(atomic_load(&ws_closed_events) == 1);
    /* A client that just disappears. */
    CHECK(ws_handshake(&c, port_main, "/ws") == 0);
    c_close(&c);
    for (i = 0; i < 100 && atomic_load(&ws_closed_events) < 2; i++)
        sleep_ms(10);
    CHECK(atomic_load(&ws_closed_events) == 2);
}

static void t_slow_consumer(void)
{
    conn_t c;
    int i;
    CHECK(ws_handshake(&c, port_main, "/ws-flood") == 0);
    /* Never read: the kernel buffers fill, then the engine's queue. The
     * server closes and, with no answer to its close frame, shuts the
     * socket after ws_close_timeout_ms (200). */
    for (i = 0; i < 500 && !atomic_load(&flood_closed); i++)
        sleep_ms(10);
    CHECK(atomic_load(&flood_closed) == 1);
    CHECK(atomic_load(&flood_rc) == RT_EBACKPRESSURE);
    CHECK(atomic_load(&flood_sent) > 1);
    c_close(&c);
}

static void t_stream(void)
{
    conn_t c;
    resp_t r;
    char *body;
    size_t len, vlen;
    const char *v;
    double t0 = now_ms();

    /* Pieces 10 ms apart, chunked, then the last chunk; the connection
     * stays open for the next request. */
    CHECK(c_open(&c, port_main) == 0);
    CHECK(c_get_head(&c, "/stream", &r) == 0);
    CHECK(r.status == 200);
    v = head_value(r.head, "transfer-encoding", &vlen);
    CHECK(v != NULL && vlen == 7 && memcmp(v, "chunked", 7) == 0);
    v = head_value(r.head, "content-type", &vlen);
    CHECK(v != NULL && vlen == 17);
    resp_free(&r);
    CHECK(c_read_chunked(&c, &body, &len) == 1);
    CHECK(strcmp(body, "piece1;piece2;piece3;") == 0);
    CHECK(now_ms() - t0 >= 30);
    free(body);
    CHECK(c_sends(&c, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(c_read_response(&c, &r, 0) == 0);
    CHECK(r.status == 404);
    resp_free(&r);
    c_close(&c);

    /* Not a 200: no chunking, the body ends with the connection. */
    CHECK(roundtrip(port_main, "GET /stream-404 HTTP/1.1\r\nHost: x\r\n\r\n",
                    &r) == 0);
    CHECK(r.status == 404);
    CHECK(strcmp(r.body, "piece1;piece2;piece3;") == 0);
    resp_free(&r);

    /* HEAD: the head only; what is written is dropped. */
    CHECK(c_open(&c, port_main) == 0);
    CHECK(c_sends(&c, "HEAD /stream-head HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(c_read_response(&c, &r, 1) == 0);
    CHECK(r.status == 200 && r.body_len == 0);
    resp_free(&r);
    sleep_ms(60);
    CHECK(c.len == 0);
    c_close(&c);

    /* Bad heads are refused before anything is sent. */
    CHECK(roundtrip(port_main, "GET /stream-bad HTTP/1.1\r\nHost: x\r\n\r\n",
                    &r) == 0);
    CHECK(r.status == 400);
    resp_free(&r);

    /* Released without an end: the client sees a broken body. */
    CHECK(c_open(&c, port_main) == 0);
    CHECK(c_get_head(&c, "/stream-cut", &r) == 0);
    CHECK(r.status == 200);
    resp_free(&r);
    CHECK(c_read_chunked(&c, &body, &len) == 0);
    CHECK(strcmp(body, "one;two;") == 0);
    free(body);
    CHECK(c_sees_eof(&c));
    c_close(&c);
}

static void t_stream_slow_client(void)
{
    conn_t c;
    resp_t r;
    char *body;
    size_t len, i;
    int ok = 1;
    CHECK(c_open(&c, port_main) == 0);
    CHECK(c_get_head(&c, "/stream-big", &r) == 0);
    CHECK(r.status == 200);
    resp_free(&r);
    /* Not reading for a while: the kernel buffers fill and the writer
     * has to wait for the socket. */
    sleep_ms(300);
    CHECK(atomic_load(&stream_big_waits) >= 1);
    CHECK(c_read_chunked(&c, &body, &len) == 1);
    CHECK(len == BIG_TOTAL);
    for (i = 0; i < len; i++)
        ok &= body[i] == 'z';
    CHECK(ok);
    free(body);
    /* What piled up stayed within the writer's bound plus one piece. */
    CHECK(atomic_load(&stream_big_peak) <= BIG_LIMIT + BIG_PIECE);
    c_close(&c);
}

static void t_stream_client_gone(void)
{
    conn_t c;
    resp_t r;
    int i;
    CHECK(c_open(&c, port_main) == 0);
    CHECK(c_get_head(&c, "/stream-gone", &r) == 0);
    CHECK(r.status == 200);
    resp_free(&r);
    sleep_ms(30);
    /* Leave with unread bytes: the kernel resets, the next write fails. */
    c_close(&c);
    for (i = 0; i < 300 && atomic_load(&stream_gone_closed) == 0; i++)
        sleep_ms(5);
    CHECK(atomic_load(&stream_gone_closed) == 1);
    CHECK(atomic_load(&stream_gone_rc) == RT_ECLOSED);
}

static void t_stream_server_close(void)
{
    conn_t c;
    resp_t r;
    char *body;
    size_t len;
    int i;
    double t0 = now_ms();
    CHECK(c_open(&c, port_scut) == 0);
    CHECK(c_get_head(&c, "/forever", &r) == 0);
    CHECK(r.status == 200);
    resp_free(&r);
    /* The stream runs through the grace, then is cut. */
    CHECK(c_read_chunked(&c, &body, &len) == 0);
    CHECK(strcmp(body, "before;") == 0);
    CHECK(now_ms() - t0 >= 90);
    free(body);
    c_close(&c);
    for (i = 0; i < 200 && !atomic_load(&closed_scut); i++)
        sleep_ms(5);
    CHECK(atomic_load(&closed_scut) == 1);
    CHECK(atomic_load(&stream_cut_closed) == 1);
}

static void t_max_connections(void)
{
    conn_t a, b;
    resp_t r;
    CHECK(c_open(&a, port_tiny) == 0);
    CHECK(c_sends(&a, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(c_read_response(&a, &r, 0) == 0);
    CHECK(r.status == 200);
    resp_free(&r);
    /* a is kept alive: the second connection is refused with 503. */
    CHECK(c_open(&b, port_tiny) == 0);
    CHECK(c_read_response(&b, &r, 0) == 0);
    CHECK(r.status == 503);
    CHECK(body_has(&r, "too many connections"));
    resp_free(&r);
    c_close(&b);
    c_close(&a);
}

static void t_hard_close(void)
{
    resp_t r;
    double t0 = now_ms();
    /* The callback holds the request and closes with 100 ms of grace. */
    CHECK(roundtrip(port_hard, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n", &r) ==
          0);
    CHECK(r.status == 503);
    CHECK(body_has(&r, "shutting down"));
    CHECK(now_ms() - t0 >= 90);
    resp_free(&r);
}

static void t_graceful_close(void)
{
    conn_t idle, busy, fresh;
    resp_t r;
    int i;
    size_t vlen;
    const char *v;
    /* An idle kept-alive connection... */
    CHECK(c_open(&idle, port_main) == 0);
    CHECK(c_sends(&idle, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(c_read_response(&idle, &r, 0) == 0);
    CHECK(r.status == 404);
    resp_free(&r);
    /* ...and a request that closes the server and is answered 50 ms
     * later: it completes, with Connection: close. */
    CHECK(c_open(&busy, port_main) == 0);
    CHECK(c_sends(&busy, "GET /close-server HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CHECK(c_read_response(&busy, &r, 0) == 0);
    CHECK(r.status == 200 && strcmp(r.body, "bye") == 0);
    v = head_value(r.head, "connection", &vlen);
    CHECK(v != NULL && vlen == 5 && strncasecmp(v, "close", 5) == 0);
    resp_free(&r);
    CHECK(c_sees_eof(&busy));
    CHECK(c_sees_eof(&idle));
    c_close(&busy);
    c_close(&idle);
    /* The listener is gone. */
    CHECK(c_open(&fresh, port_main) != 0);
    for (i = 0; i < 200 && !atomic_load(&closed_main); i++)
        sleep_ms(5);
    CHECK(atomic_load(&closed_main) == 1);
}

static void *client_main(void *arg)
{
    (void)arg;
    t_get_and_headers();
    t_post_404_invalid();
    t_limits();
    t_deferred_keepalive();
    t_unanswered_and_gone();
    t_websocket();
    t_slow_consumer();
    t_stream();
    t_stream_slow_client();
    t_stream_client_gone();
    t_stream_server_close();
    t_max_connections();
    t_hard_close();
    t_graceful_close();
    uv_async_send(&client_done);
    return NULL;
}

/* ---- main --------------------------------------------------------------- */

static rt_http_server_t *start(rt_http_opts_t *o, rt_http_request_cb cb,
                               void *data, int *port)
{
    char err[256];
    rt_http_server_t *s = rt_http_server_new(&loop, o, cb, data, err,
                                             sizeof(err));
    if (s == NULL) {
        fprintf(stderr, "cannot start a server: %s\n", err);
        exit(1);
    }
    *port = rt_http_server_port(s);
    CHECK(*port > 0);
    return s;
}

static void test_bad_options(void)
{
    rt_http_opts_t o;
    char err[256];
    memset(&o, 0, sizeof(o));
    o.port = 70000;
    CHECK(rt_http_server_new(&loop, &o, on_tiny, NULL, err, sizeof(err)) ==
          NULL);
    CHECK(strstr(err, "port") != NULL);
    o.port = 0;
    o.host = "no-such-host.invalid";
    CHECK(rt_http_server_new(&loop, &o, on_tiny, NULL, err, sizeof(err)) ==
          NULL);
    CHECK(strstr(err, "cannot resolve") != NULL);
    /* The port of a running server is taken (no SO_REUSEPORT). */
    o.host = "127.0.0.1";
    o.port = port_main;
    CHECK(rt_http_server_new(&loop, &o, on_tiny, NULL, err, sizeof(err)) ==
          NULL);
    CHECK(strstr(err, "address already in use") != NULL);
}

static void test_reuseport(void)
{
    rt_http_opts_t o;
    rt_http_server_t *a, *b;
    int pa, pb;
    memset(&o, 0, sizeof(o));
    o.reuseport = 1;
    o.host = "::1";
    a = start(&o, on_tiny, NULL, &pa);
    o.port = pa;
    b = start(&o, on_tiny, NULL, &pb);
    CHECK(pa == pb);
    rt_http_server_close(a, 0, NULL, NULL);
    rt_http_server_close(b, 0, NULL, NULL);
}

int main(void)
{
    rt_http_opts_t o;
    pthread_t client;
    rt_http_stats_t st;

    signal(SIGPIPE, SIG_IGN);
    CHECK(uv_loop_init(&loop) == 0);
    CHECK(uv_async_init(&loop, &client_done, on_client_done) == 0);

    memset(&o, 0, sizeof(o));
    o.max_body_bytes = 1024;
    o.max_header_bytes = 4096;
    o.ws_max_queued_bytes = 256 * 1024;
    o.ws_close_timeout_ms = 200;
    srv_main = start(&o, on_main, &port_main, &port_main);
    memset(&o, 0, sizeof(o));
    o.max_connections = 1;
    srv_tiny = start(&o, on_tiny, NULL, &port_tiny);
    memset(&o, 0, sizeof(o));
    srv_hard = start(&o, on_hard, NULL, &port_hard);
    memset(&o, 0, sizeof(o));
    srv_scut = start(&o, on_scut, NULL, &port_scut);
    test_bad_options();
    test_reuseport();

    /* srv_main closes itself (t_graceful_close), srv_hard from its
     * callback, srv_tiny when the client is done (on_client_done). */
    CHECK(pthread_create(&client, NULL, client_main, NULL) == 0);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(pthread_join(client, NULL) == 0);
    CHECK(atomic_load(&closed_main) == 1);
    CHECK(atomic_load(&closed_hard) == 1);
    CHECK(atomic_load(&closed_tiny) == 1);
    CHECK(atomic_load(&closed_scut) == 1);
    CHECK(atomic_load(&hard_late_rc) == RT_ECLOSED ||
          atomic_load(&hard_late_rc) == RT_EANSWERED);
    /* Everything is closed: the loop has no handle left. */
    CHECK(uv_loop_close(&loop) == 0);
    st = main_stats;
    CHECK(st.connections_active == 0);
    CHECK(st.requests_active == 0);
    CHECK(st.websockets_total == 3);
    CHECK(st.websockets_active == 0);
    CHECK(st.requests >= 35);
    CHECK(st.connections_total >= 15);
    CHECK(st.bytes_in >= 11 + 7 * 3);
    CHECK(st.bytes_out > 256 * 1024);
    if (atomic_load(&test_failures) == 0)
        printf("test_http: all checks passed\n");
    return atomic_load(&test_failures) == 0 ? 0 : 1;
}
