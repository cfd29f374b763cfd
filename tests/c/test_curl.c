/* test_curl.c - unit tests of the HTTP client engine (rt_curl.c) against a
 * small HTTP/1.1 server on the same loop: methods, bodies, headers,
 * connection reuse, concurrency, refused ports, timeouts, aborts, size
 * limits, bad options, streamed responses (events in order, pieces as they
 * come, the pause when the reader lags, abort and timeout mid-stream,
 * limits, redirects, release from a callback and at close), and that
 * every handle is closed at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rt_curl.h"

#include "test_check.h"

static uv_loop_t loop;
static rt_curl_t *eng;
static char base[64]; /* "http://127.0.0.1:PORT" */

/* ---- the test server ---------------------------------------------------- */

static uv_tcp_t listener;
static int srv_accepted;    /* connections accepted */
static int srv_hang_seen;   /* /hang requests received */
static int srv_hang_closed; /* /hang connections closed by the client */

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* delays the answer of /delay */
    char *buf;        /* bytes received and not yet parsed */
    size_t len, cap;
    int hang;    /* a /hang request is waiting, forever */
    int waiting; /* an answer is delayed: parse nothing more */
    int drip;    /* /drip chunks sent so far */
    int handles; /* handles not yet closed; free at 0 */
    struct conn *prev, *next;
} conn_t;

static conn_t *conns;

typedef struct {
    uv_write_t req;
    char *data;
} wreq_t;

static void conn_handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->handles == 0) {
        free(c->buf);
        free(c);
    }
}

static void conn_close(conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->hang)
        srv_hang_closed++;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void write_cb(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    (void)status;
    free(w->data);
    free(w);
}

static void send_bytes(conn_t *c, char *data, size_t len)
{
    wreq_t *w = malloc(sizeof(*w));
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    if (w == NULL) {
        free(data);
        return;
    }
    w->data = data;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb) < 0) {
        free(data);
        free(w);
    }
}

/* Sends a response with a Content-Length (no body bytes for HEAD). */
static void respond(conn_t *c, int status, const char *extra, const char *body,
                    size_t blen, int head)
{
    const char *fmt = "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n";
    int n = snprintf(NULL, 0, fmt, status, blen, extra);
    size_t total = (size_t)n + (head ? 0 : blen);
    char *out = malloc(total + 1);
    if (out == NULL)
        return;
    snprintf(out, (size_t)n + 1, fmt, status, blen, extra);
    if (!head)
        memcpy(out + n, body, blen);
    send_bytes(c, out, total);
}

static void respond_chunked(conn_t *c, size_t total, size_t chunk)
{
    const char *hdr = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    size_t hlen = strlen(hdr), nchunks = (total + chunk - 1) / chunk;
    size_t cap = hlen + nchunks * (chunk + 32) + 8, off = hlen, i;
    char *out = malloc(cap);
    if (out == NULL)
        return;
    memcpy(out, hdr, hlen);
    for (i = 0; i < nchunks; i++) {
        size_t n = total - i * chunk < chunk ? total - i * chunk : chunk;
        off += (size_t)snprintf(out + off, cap - off, "%zx\r\n", n);
        memset(out + off, 'c', n);
        off += n;
        memcpy(out + off, "\r\n", 2);
        off += 2;
    }
    memcpy(out + off, "0\r\n\r\n", 5);
    send_bytes(c, out, off + 5);
}

static void delay_cb(uv_timer_t *t)
{
    conn_t *c = t->data;
    c->waiting = 0;
    respond(c, 200, "", "late", 4, 0);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p != NULL)
        memcpy(p, s, n + 1);
    return p;
}

/* /drip: five chunks "d1;".."d5;" 10 ms apart, then the last chunk. */
static void drip_cb(uv_timer_t *t)
{
    conn_t *c = t->data;
    char buf[32];
    if (c->drip == 5) {
        c->waiting = 0;
        send_bytes(c, dup_str("0\r\n\r\n"), 5);
        return;
    }
    snprintf(buf, sizeof(buf), "3\r\nd%d;\r\n", ++c->drip);
    send_bytes(c, dup_str(buf), strlen(buf));
    (void)uv_timer_start(&c->timer, drip_cb, 10, 0);
}

/* The value of header name in the head (len bytes), or NULL. */
static const char *find_header(const char *head, size_t len, const char *name,
                               size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *p = memchr(head, '\n', len), *end = head + len;
    while (p != NULL && p + 1 < end) {
        const char *line = p + 1, *eol = memchr(line, '\n', end - line);
        if (eol == NULL)
            break;
        if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 &&
            line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            *vlen = (size_t)(eol - v);
            if (*vlen > 0 && v[*vlen - 1] == '\r')
                (*vlen)--;
            return v;
        }
        p = eol;
    }
    return NULL;
}

/* Answers one complete request. Returns 0, or -1 when c was closed. */
static int handle(conn_t *c, const char *head, size_t hlen, const char *body,
                  size_t blen)
{
    char method[16] = "", path[64] = "";
    const char *v;
    size_t vlen;
    int head_only;

    if (sscanf(head, "%15s %63s", method, path) != 2) {
        respond(c, 400, "", "", 0, 0);
        return 0;
    }
    head_only = strcmp(method, "HEAD") == 0;
    if (strncmp(path, "http://", 7) == 0) {
        /* absolute form: the client took this server for its proxy */
        respond(c, 200, "", "proxied", 7, head_only);
    } else if (strcmp(path, "/hello") == 0) {
        respond(c, 200, "Content-Type: text/plain\r\n", "hello", 5, head_only);
    } else if (strcmp(path, "/echo") == 0) {
        /* METHOD|content-type or -|body */
        size_t cap = strlen(method) + hlen + blen + 4, n;
        char *out = malloc(cap);
        if (out == NULL)
            return 0;
        v = find_header(head, hlen, "content-type", &vlen);
        n = (size_t)snprintf(out, cap, "%s|%.*s|", method, v ? (int)vlen : 1,
                             v ? v : "-");
        memcpy(out + n, body, blen);
        respond(c, 200, "", out, n + blen, 0);
        free(out);
    } else if (strcmp(path, "/reflect") == 0) {
        v = find_header(head, hlen, "x-test", &vlen);
        respond(c, 200, "", v ? v : "", v ? vlen : 0, 0);
    } else if (strcmp(path, "/headers") == 0) {
        respond(c, 200, "X-One: 1\r\nX-Two:   spaced  value  \r\n", "h", 1, 0);
    } else if (strcmp(path, "/delay") == 0) {
        c->waiting = 1;
        (void)uv_timer_start(&c->timer, delay_cb, 10, 0);
    } else if (strcmp(path, "/hang") == 0) {
        c->hang = 1;
        c->waiting = 1;
        srv_hang_seen++;
    } else if (strcmp(path, "/drip") == 0) {
        c->waiting = 1;
        c->drip = 0;
        const char *h = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n";
        send_bytes(c, dup_str(h), strlen(h));
        (void)uv_timer_start(&c->timer, drip_cb, 10, 0);
    } else if (strcmp(path, "/drip-hang") == 0) { /* a head, a piece, then
                                                   * nothing, forever */
        const char *h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                        "\r\n6\r\nfirst;\r\n";
        c->hang = 1;
        c->waiting = 1;
        srv_hang_seen++;
        send_bytes(c, dup_str(h), strlen(h));
    } else if (strcmp(path, "/huge") == 0) { /* 2 MiB */
        size_t n = 2 * 1024 * 1024;
        char *big = malloc(n);
        if (big == NULL)
            return 0;
        memset(big, 'h', n);
        respond(c, 200, "", big, n, head_only);
        free(big);
    } else if (strcmp(path, "/big") == 0) {
        char *big = malloc(100000);
        if (big == NULL)
            return 0;
        memset(big, 'b', 100000);
        respond(c, 200, "", big, 100000, head_only);
        free(big);
    } else if (strcmp(path, "/bigchunked") == 0) {
        respond_chunked(c, 100000, 10000);
    } else if (strcmp(path, "/chunked") == 0) {
        respond_chunked(c, 25, 10);
    } else if (strcmp(path, "/status") == 0) {
        respond(c, 404, "", "nope", 4, 0);
    } else if (strcmp(path, "/redirect") == 0) {
        respond(c, 302, "Location: /hello\r\n", "", 0, 0);
    } else if (strcmp(path, "/manyheaders") == 0) { /* 3000 x 100 bytes */
        char *hs = malloc(3000 * 100 + 1), *p;
        int i;
        if (hs == NULL)
            return 0;
        for (i = 0, p = hs; i < 3000; i++, p += 100) {
            snprintf(p, 11, "X-H%05d: ", i);
            memset(p + 10, 'v', 88);
            memcpy(p + 98, "\r\n", 2);
        }
        hs[3000 * 100] = '\0';
        respond(c, 200, hs, "", 0, 0);
        free(hs);
    } else if (strcmp(path, "/close") == 0) { /* no answer at all */
        conn_close(c);
        return -1;
    } else if (strcmp(path, "/partial") == 0) { /* 10 of 100 bytes */
        char *out = malloc(128);
        int n;
        if (out == NULL)
            return 0;
        n = snprintf(out, 128,
                     "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
                     "\r\n0123456789");
        send_bytes(c, out, (size_t)n);
        conn_close(c); /* uv_close lets the queued write finish first */
        return -1;
    } else {
        respond(c, 404, "", "", 0, 0);
    }
    return 0;
}

/* Parses and answers every complete request in the buffer. */
static void parse(conn_t *c)
{
    while (!c->waiting && c->len > 0) {
        char *end = NULL;
        size_t i, hlen, clen = 0, vlen;
        const char *v;
        for (i = 0; i + 3 < c->len; i++) {
            if (memcmp(c->buf + i, "\r\n\r\n", 4) == 0) {
                end = c->buf + i;
                break;
            }
        }
        if (end == NULL)
            return;
        hlen = (size_t)(end - c->buf) + 4;
        v = find_header(c->buf, hlen, "content-length", &vlen);
        if (v != NULL)
            clen = strtoul(v, NULL, 10);
        if (c->len < hlen + clen)
            return;
        c->buf[hlen - 1] = '\0'; /* for sscanf; the body follows */
        if (handle(c, c->buf, hlen - 1, c->buf + hlen, clen) < 0)
            return;
        memmove(c->buf, c->buf + hlen + clen, c->len - hlen - clen);
        c->len -= hlen + clen;
    }
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    conn_t *c = h->data;
    (void)hint;
    if (c->cap - c->len < 4096) {
        char *nb = realloc(c->buf, c->cap + 65536);
        if (nb == NULL) {
            *b = uv_buf_init(NULL, 0);
            return;
        }
        c->buf = nb;
        c->cap += 65536;
    }
    *b = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;
    (void)b;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    if (c->buf[0] == 0x16) { /* a TLS ClientHello: we speak plain HTTP */
        conn_close(c);
        return;
    }
    parse(c);
}

static void accept_cb(uv_stream_t *server, int status)
{
    conn_t *c;
    if (status < 0)
        return;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    uv_tcp_init(&loop, &c->tcp);
    uv_timer_init(&loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) < 0) {
        conn_close(c);
        return;
    }
    srv_accepted++;
}

static int server_start(void)
{
    struct sockaddr_in addr;
    struct sockaddr_storage got;
    int len = sizeof(got);
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (uv_tcp_init(&loop, &listener) < 0 ||
        uv_tcp_bind(&listener, (struct sockaddr *)&addr, 0) < 0 ||
        uv_listen((uv_stream_t *)&listener, 512, accept_cb) < 0 ||
        uv_tcp_getsockname(&listener, (struct sockaddr *)&got, &len) < 0)
        return -1;
    snprintf(base, sizeof(base), "http://127.0.0.1:%d",
             ntohs(((struct sockaddr_in *)&got)->sin_port));
    return 0;
}

static void server_stop(void)
{
    uv_close((uv_handle_t *)&listener, NULL);
    while (conns != NULL)
        conn_close(conns);
}

/* ---- the client side ---------------------------------------------------- */

typedef struct {
    int called;
    char *error; /* copies of the result, freed by result_clear */
    char *message;
    long status;
    char *body;
    size_t body_len;
    char *x_one, *x_two; /* response headers of /headers */
    uint64_t at;         /* uv_now() when called */
} result_t;

static int callbacks; /* every completion, for "never called" checks */

static char *dup_n(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static void done_cb(rt_curl_req_t *req, const rt_curl_result_t *res, void *data)
{
    result_t *r = data;
    size_t i;
    (void)req;
    callbacks++;
    r->called++;
    r->at = uv_now(&loop);
    r->status = res->status;
    r->error = res->error ? dup_n(rt_err_word(res->error),
                                  strlen(rt_err_word(res->error)))
                          : NULL;
    r->message = dup_n(res->message, strlen(res->message));
    r->body = dup_n(res->body, res->body_len);
    r->body_len = res->body_len;
    for (i = 0; i < res->nheaders; i++) {
        const rt_curl_header_t *h = &res->headers[i];
        if (h->name_len == 5 && strncasecmp(h->name, "x-one", 5) == 0)
            r->x_one = dup_n(h->value, h->value_len);
        if (h->name_len == 5 && strncasecmp(h->name, "x-two", 5) == 0)
            r->x_two = dup_n(h->value, h->value_len);
    }
}

static void result_clear(result_t *r)
{
    free(r->error);
    free(r->message);
    free(r->body);
    free(r->x_one);
    free(r->x_two);
    memset(r, 0, sizeof(*r));
}

static uv_timer_t ticker; /* wakes uv_run so run_until sees the clock */

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *count >= want or ms pass. Returns 1 if reached. */
static int run_until(const int *count, int want, uint64_t ms)
{
    uint64_t t0;
    uv_update_time(&loop);
    t0 = uv_now(&loop);
    while (*count < want) {
        if (uv_now(&loop) - t0 > ms)
            return 0;
        uv_run(&loop, UV_RUN_ONCE);
    }
    return 1;
}

static void run_for(uint64_t ms)
{
    int never = 0;
    (void)run_until(&never, 1, ms);
}

static rt_curl_opts_t opts_for(const char *path, char *url, size_t cap)
{
    rt_curl_opts_t o;
    memset(&o, 0, sizeof(o));
    snprintf(url, cap, "%s%s", base, path);
    o.url = url;
    o.max_redirects = -1;
    o.timeout_ms = 5000;
    return o;
}

/* Starts a request and runs until its callback; returns rt_curl_start's
 * code. */
static int fetch(rt_curl_opts_t *o, result_t *r)
{
    int rc = rt_curl_start(eng, o, done_cb, r, NULL, NULL);
    if (rc == 0)
        CHECK(run_until(&r->called, 1, 5000));
    return rc;
}

/* ---- tests -------------------------------------------------------------- */

static void test_get(void)
{
    char url[128];
    rt_curl_opts_t o = opts_for("/hello", url, sizeof(url));
    result_t r = {0};
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.called == 1 && r.error == NULL && r.status == 200);
    CHECK(r.body_len == 5 && strcmp(r.body, "hello") == 0);
    CHECK(strcmp(r.message, "") == 0);
    result_clear(&r);

    o.method = "HEAD";
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error == NULL && r.status == 200 && r.body_len == 0);
    result_clear(&r);
}

static void test_post(void)
{
    char url[128];
    rt_curl_opts_t o = opts_for("/echo", url, sizeof(url));
    rt_curl_header_t h = {"Content-Type", 12, "text/plain", 10};
    result_t r = {0};

    o.body = "a=1&b\0z"; /* binary-safe */
    o.body_len = 7;
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error == NULL && r.status == 200);
    /* Without a content type none is sent (not curl's form type). */
    CHECK(r.body_len == 14 && memcmp(r.body, "POST|-|a=1&b\0z", 14) == 0);
    result_clear(&r);

    o.method = "PUT";
    o.headers = &h;
    o.nheaders = 1;
    o.body = "data";
    o.body_len = 4;
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error == NULL && strcmp(r.body, "PUT|text/plain|data") == 0);
    result_clear(&r);

    o.method = "DELETE";
    o.body = NULL;
    o.body_len = 0;
    o.nheaders = 0;
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error == NULL && strcmp(r.body, "DELETE|-|") == 0);
    result_clear(&r);
}

static void test_headers(void)
{
    char url[128];
    rt_curl_opts_t o = opts_for("/headers", url, sizeof(url));
    rt_curl_header_t h[2] = {{"X-Test", 6, "value 1", 7},
                             {"X-Empty", 7, "", 0}};
    result_t r = {0};
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error == NULL && r.x_one && strcmp(r.x_one, "1") == 0);
    CHECK(r.x_two && strcmp(r.x_two, "spaced  value") == 0);
    result_clear(&r);

    o = opts_for("/reflect", url, sizeof(url));
    o.headers = h;
    o.nheaders = 2;
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error == NULL && r.body && strcmp(r.body, "value 1") == 0);
    result_clear(&r);
}

static void test_reuse(void)
{
    char url[128];
    rt_curl_opts_t o = opts_for("/hello", url, sizeof(url));
    result_t r = {0};
    int before = srv_accepted, i;
    for (i = 0; i < 5; i++) {
        CHECK(fetch(&o, &r) == 0);
        CHECK(r.error == NULL && r.status == 200);
        result_clear(&r);
    }
    /* Five requests in a row go over one pooled connection at most. */
    CHECK(srv_accepted - before <= 1);
}

static void test_concurrent(void)
{
    enum { N = 100 };
    static result_t rs[N];
    char url[128];
    rt_curl_opts_t o = opts_for("/delay", url, sizeof(url));
    int i, ok = 0, before = callbacks;
    uint64_t t0, took;

    uv_update_time(&loop);
    t0 = uv_now(&loop);
    for (i = 0; i < N; i++)
        CHECK(rt_curl_start(eng, &o, done_cb, &rs[i], NULL, NULL) == 0);
    CHECK(rt_curl_active(eng) == N);
    CHECK(run_until(&callbacks, before + N, 5000));
    took = uv_now(&loop) - t0;
    for (i = 0; i < N; i++) {
        ok += rs[i].called == 1 && rs[i].error == NULL && rs[i].status == 200 &&
              strcmp(rs[i].body, "late") == 0;
        result_clear(&rs[i]);
    }
    CHECK(ok == N);
    /* Each answer waits 10 ms: one after another they would take >= 1 s. */
    fprintf(stderr, "100 concurrent 10 ms requests took %llu ms\n",
            (unsigned long long)took);
    CHECK(took >= 9 && took < 300);
    CHECK(rt_curl_active(eng) == 0);
}

/* The pool of easy handles follows the traffic: 100 requests in flight
 * leave 100 handles for the next 100 (a fixed 64 made every other
 * request build a new one), and handles nothing took for the trim
 * window are freed down to a few. */
static void test_idle_pool(void)
{
    enum { N = 100 };
    static result_t rs[N];
    char url[128];
    rt_curl_opts_t o = opts_for("/delay", url, sizeof(url));
    int i, round, before = callbacks;

    for (i = 0; i < N; i++)
        CHECK(rt_curl_start(eng, &o, done_cb, &rs[i], NULL, NULL) == 0);
    CHECK(run_until(&callbacks, before + N, 5000));
    for (i = 0; i < N; i++)
        result_clear(&rs[i]);
    CHECK(rt_curl_idle(eng) >= N);

    /* No traffic but one request now and then: two windows later the
     * handles never taken are gone. */
    rt_curl_set_idle_trim(eng, 20);
    for (round = 0; round < 3; round++) {
        run_for(30);
        o = opts_for("/hello", url, sizeof(url));
        before = callbacks;
        CHECK(rt_curl_start(eng, &o, done_cb, &rs[0], NULL, NULL) == 0);
        CHECK(run_until(&callbacks, before + 1, 5000));
        CHECK(rs[0].status == 200);
        result_clear(&rs[0]);
    }
    CHECK(rt_curl_idle(eng) <= 17);
    CHECK(rt_curl_idle(eng) >= 1);
    rt_curl_set_idle_trim(eng, 10000);
}

/* A proxy the environment names when an engine starts is used; an
 * engine started without one goes straight to the server even when a
 * proxy variable is set later (it told curl there is none, which spares
 * curl's look-ups of the environment on every transfer). */
static void test_env_proxy(void)
{
    rt_curl_t *saved = eng, *px;
    char url[128];
    rt_curl_opts_t o = opts_for("/hello", url, sizeof(url));
    result_t r = {0};

    CHECK(setenv("http_proxy", base, 1) == 0);
    px = rt_curl_new(&loop);
    CHECK(px != NULL);
    if (px == NULL)
        return;
    snprintf(url, sizeof(url), "http://example.invalid/hello");
    eng = px;
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error == NULL && r.status == 200 && strcmp(r.body, "proxied") == 0);
    result_clear(&r);
    eng = saved;
    rt_curl_close(px);

    o = opts_for("/hello", url, sizeof(url));
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error == NULL && r.status == 200 && strcmp(r.body, "hello") == 0);
    result_clear(&r);
    CHECK(unsetenv("http_proxy") == 0);
}

static void test_refused(void)
{
    uv_tcp_t tmp;
    struct sockaddr_in addr;
    struct sockaddr_storage got;
    int len = sizeof(got);
    char url[128];
    rt_curl_opts_t o;
    result_t r = {0};

    /* A port that was free a moment ago: nobody listens on it. */
    uv_ip4_addr("127.0.0.1", 0, &addr);
    CHECK(uv_tcp_init(&loop, &tmp) == 0);
    CHECK(uv_tcp_bind(&tmp, (struct sockaddr *)&addr, 0) == 0);
    CHECK(uv_tcp_getsockname(&tmp, (struct sockaddr *)&got, &len) == 0);
    uv_close((uv_handle_t *)&tmp, NULL);
    run_for(1);
    memset(&o, 0, sizeof(o));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/",
             ntohs(((struct sockaddr_in *)&got)->sin_port));
    o.url = url;
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.called == 1 && r.error &&
          strcmp(r.error, "connection refused") == 0);
    CHECK(r.message && strlen(r.message) > 0 && r.body_len == 0);
    fprintf(stderr, "refused: %s: %s\n", r.error, r.message);
    result_clear(&r);

    /* Not refused but failed: Linux forbids connecting to broadcast. */
    o.url = "http://255.255.255.255:80/";
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error && strcmp(r.error, "connect failed") == 0);
    fprintf(stderr, "connect failed: %s\n", r.message ? r.message : "");
    result_clear(&r);
}

static void test_timeout(void)
{
    char url[128];
    rt_curl_opts_t o = opts_for("/hang", url, sizeof(url));
    result_t r = {0};
    uint64_t t0;
    int closed = srv_hang_closed;

    o.timeout_ms = 50;
    uv_update_time(&loop);
    t0 = uv_now(&loop);
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error && strcmp(r.error, "timeout") == 0);
    CHECK(r.at - t0 >= 45 && r.at - t0 < 500);
    fprintf(stderr, "timeout: %s\n", r.message);
    result_clear(&r);
    /* The timed out connection is closed, not pooled. */
    CHECK(run_until(&srv_hang_closed, closed + 1, 1000));
}

static void test_abort(void)
{
    char url[128];
    rt_curl_opts_t o = opts_for("/hang", url, sizeof(url));
    result_t r = {0};
    rt_curl_req_t *req = NULL;
    int seen = srv_hang_seen, closed = srv_hang_closed, before = callbacks;

    CHECK(rt_curl_start(eng, &o, done_cb, &r, &req, NULL) == 0);
    CHECK(req != NULL);
    CHECK(run_until(&srv_hang_seen, seen + 1, 2000));
    rt_curl_abort(req);
    CHECK(rt_curl_active(eng) == 0);
    CHECK(run_until(&srv_hang_closed, closed + 1, 1000));
    run_for(20);
    CHECK(r.called == 0 && callbacks == before);

    /* Aborting before the loop ever ran the transfer. */
    CHECK(rt_curl_start(eng, &o, done_cb, &r, &req, NULL) == 0);
    rt_curl_abort(req);
    run_for(20);
    CHECK(r.called == 0 && callbacks == before);
    CHECK(rt_curl_active(eng) == 0);
}

/* Aborting during name resolution does not wait for the resolver. */
static void test_abort_resolving(void)
{
    rt_curl_opts_t o;
    result_t r = {0};
    rt_curl_req_t *req = NULL;
    uint64_t t0, took;
    int before = callbacks;

    memset(&o, 0, sizeof(o));
    o.url = "http://no-such-host.invalid/";
    CHECK(rt_curl_start(eng, &o, done_cb, &r, &req, NULL) == 0);
    run_for(1); /* curl's first timeout starts the resolver thread */
    t0 = uv_hrtime();
    if (r.called == 0)
        rt_curl_abort(req);
    took = (uv_hrtime() - t0) / 1000000;
    CHECK(took < 5);
    run_for(20);
    CHECK(callbacks - before == r.called && rt_curl_active(eng) == 0);
    result_clear(&r);
}

static void test_too_large(void)
{
    char url[128];
    rt_curl_opts_t o = opts_for("/big", url, sizeof(url));
    result_t r = {0};

    o.max_body = 1000; /* known from Content-Length */
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error && strcmp(r.error, "too large") == 0);
    CHECK(r.message && strstr(r.message, "1000") != NULL);
    result_clear(&r);

    o = opts_for("/bigchunked", url, sizeof(url));
    o.max_body = 1000; /* found out while reading */
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error && strcmp(r.error, "too large") == 0);
    fprintf(stderr, "too large: %s\n", r.message);
    result_clear(&r);

    o = opts_for("/big", url, sizeof(url));
    o.method = "HEAD"; /* a HEAD's Content-Length is no body */
    o.max_body = 1000;
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error == NULL && r.status == 200 && r.body_len == 0);
    result_clear(&r);

    o = opts_for("/bigchunked", url, sizeof(url));
    o.max_body = 100000; /* exactly the size is fine */
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error == NULL && r.body_len == 100000);
    result_clear(&r);

    o = opts_for("/manyheaders", url, sizeof(url));
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error && strcmp(r.error, "too large") == 0);
    CHECK(r.message && strstr(r.message, "headers") != NULL);
    fprintf(stderr, "too many headers: %s\n", r.message ? r.message : "");
    result_clear(&r);

    o = opts_for("/chunked", url, sizeof(url));
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error == NULL && r.body_len == 25);
    result_clear(&r);
}

static void test_status(void)
{
    char url[128];
    rt_curl_opts_t o = opts_for("/status", url, sizeof(url));
    result_t r = {0};
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error == NULL && r.status == 404 && strcmp(r.body, "nope") == 0);
    result_clear(&r);

    o = opts_for("/redirect", url, sizeof(url));
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error == NULL && r.status == 302);
    result_clear(&r);

    o.follow_redirects = 1;
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error == NULL && r.status == 200 && strcmp(r.body, "hello") == 0);
    result_clear(&r);

    o.max_redirects = 0;
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error && strcmp(r.error, "too many redirects") == 0);
    result_clear(&r);
}

static void test_invalid(void)
{
    char url[128];
    rt_curl_opts_t o = opts_for("/hello", url, sizeof(url));
    rt_curl_header_t bad_value = {"X-A", 3, "a\r\nX-B: b", 9};
    rt_curl_header_t bad_name = {"X A", 3, "a", 1};
    result_t r = {0};
    const char *err = NULL;
    int before = callbacks;

    o.headers = &bad_value;
    o.nheaders = 1;
    CHECK(rt_curl_start(eng, &o, done_cb, &r, NULL, &err) == RT_EINVAL);
    CHECK(err && strstr(err, "CR") != NULL);
    o.headers = &bad_name;
    CHECK(rt_curl_start(eng, &o, done_cb, &r, NULL, &err) == RT_EINVAL);
    o.nheaders = 0;
    o.method = "GE T";
    CHECK(rt_curl_start(eng, &o, done_cb, &r, NULL, &err) == RT_EINVAL);
    o.method = NULL;
    o.url = NULL;
    CHECK(rt_curl_start(eng, &o, done_cb, &r, NULL, &err) == RT_EINVAL);
    run_for(10);
    CHECK(callbacks == before && rt_curl_active(eng) == 0);

    /* Only http and https. */
    o.url = "ftp://127.0.0.1/x";
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error && strcmp(r.error, "unsupported protocol") == 0);
    result_clear(&r);
    o.url = "file:///etc/passwd";
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error && strcmp(r.error, "unsupported protocol") == 0);
    result_clear(&r);
    o.url = "http://[::1";
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error && strcmp(r.error, "bad url") == 0);
    result_clear(&r);
}

/* The server closes without an answer, mid-body, or speaks no TLS. */
static void test_broken(void)
{
    char url[128];
    rt_curl_opts_t o = opts_for("/close", url, sizeof(url));
    result_t r = {0};

    CHECK(fetch(&o, &r) == 0);
    /* curl retries a request whose pooled connection died, then gives up
     * with a send error; on a fresh connection it is an empty reply. */
    CHECK(r.error && (strcmp(r.error, "empty reply") == 0 ||
                      strcmp(r.error, "connection error") == 0));
    fprintf(stderr, "close: %s: %s\n", r.error ? r.error : "", r.message);
    result_clear(&r);
    { /* A fresh engine has no pooled connection to retry from. */
        rt_curl_t *saved = eng;
        eng = rt_curl_new(&loop);
        CHECK(eng != NULL);
        CHECK(fetch(&o, &r) == 0);
        fprintf(stderr, "close (fresh): %s: %s\n", r.error ? r.error : "",
                r.message);
        CHECK(r.error && strcmp(r.error, "empty reply") == 0);
        result_clear(&r);
        rt_curl_close(eng);
        eng = saved;
    }

    o = opts_for("/partial", url, sizeof(url));
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error && strcmp(r.error, "connection error") == 0);
    fprintf(stderr, "partial: %s\n", r.message ? r.message : "");
    result_clear(&r);

    o = opts_for("/hello", url, sizeof(url));
    snprintf(url, sizeof(url), "https%s/hello", base + 4);
    CHECK(fetch(&o, &r) == 0);
    CHECK(r.error && strcmp(r.error, "tls error") == 0);
    fprintf(stderr, "tls: %s\n", r.message ? r.message : "");
    result_clear(&r);
}

/* ---- streamed responses -------------------------------------------------- */

typedef struct {
    rt_curl_req_t *req;
    int heads, datas, ends, bad_order;
    long status;
    char *ctype; /* the content-type header at HEAD */
    char *body;  /* what was consumed, in order */
    size_t len, cap;
    int consume; /* consume on DATA (else leave it buffered) */
    size_t peak; /* most bytes ever buffered */
    char *error, *message;
    int release_on; /* release the request inside this event */
    uint64_t head_at, end_at;
} sres_t;

static void sres_take(sres_t *r)
{
    size_t n;
    const char *p = rt_curl_body(r->req, &n);
    if (n > r->peak)
        r->peak = n;
    if (!r->consume || n == 0)
        return;
    while (r->len + n + 1 > r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4096;
        r->body = realloc(r->body, r->cap);
        CHECK(r->body != NULL);
    }
    memcpy(r->body + r->len, p, n);
    r->len += n;
    r->body[r->len] = '\0';
    rt_curl_consume(r->req, n);
}

static void stream_cb(rt_curl_req_t *req, rt_curl_event_t ev, void *data)
{
    sres_t *r = data;
    rt_curl_header_t h;
    const char *msg;
    int err;
    size_t i;
    CHECK(req == r->req);
    callbacks++;
    if (r->ends > 0)
        r->bad_order++; /* nothing after END */
    if (ev == RT_CURL_EV_HEAD) {
        if (r->heads++ > 0 || r->datas > 0)
            r->bad_order++;
        r->head_at = uv_now(&loop);
        r->status = rt_curl_status(req);
        for (i = 0; i < rt_curl_header_count(req); i++) {
            CHECK(rt_curl_header(req, i, &h) == 0);
            if (h.name_len == 12 &&
                strncasecmp(h.name, "content-type", 12) == 0)
                r->ctype = dup_n(h.value, h.value_len);
        }
        CHECK(rt_curl_header(req, i, &h) == RT_EINVAL);
    } else if (ev == RT_CURL_EV_DATA) {
        if (r->heads != 1)
            r->bad_order++;
        r->datas++;
        sres_take(r);
    } else {
        r->ends++;
        r->end_at = uv_now(&loop);
        CHECK(rt_curl_ended(req, &err, &msg) == 1);
        r->error = err ? dup_n(rt_err_word(err), strlen(rt_err_word(err)))
                       : NULL;
        r->message = dup_n(msg, strlen(msg));
        sres_take(r);
    }
    if (r->release_on == (int)ev) {
        rt_curl_abort(req);
        r->req = NULL;
    }
}

static void sres_clear(sres_t *r)
{
    if (r->req != NULL)
        rt_curl_abort(r->req);
    free(r->ctype);
    free(r->body);
    free(r->error);
    free(r->message);
    memset(r, 0, sizeof(*r));
}

static int sopen(const char *path, rt_curl_opts_t *o, size_t buffer, sres_t *r)
{
    static char url[128];
    const char *err = NULL;
    snprintf(url, sizeof(url), "%s%s", base, path);
    o->url = url;
    r->consume = 1;
    return rt_curl_open(eng, o, buffer, stream_cb, r, &r->req, &err);
}

static void test_stream_pieces(void)
{
    rt_curl_opts_t o = {0};
    sres_t r = {0};
    const char *msg;
    int err;
    o.max_redirects = -1;
    CHECK(sopen("/drip", &o, 0, &r) == 0);
    CHECK(r.req != NULL && rt_curl_status(r.req) == 0);
    CHECK(rt_curl_ended(r.req, &err, &msg) == 0);
    CHECK(run_until(&r.ends, 1, 5000));
    CHECK(r.bad_order == 0 && r.heads == 1 && r.status == 200);
    CHECK(r.ctype && strcmp(r.ctype, "text/plain") == 0);
    /* Five pieces 10 ms apart come as they are sent, not at the end
     * (a loaded machine may read two at once). */
    CHECK(r.datas >= 2);
    CHECK(r.body && strcmp(r.body, "d1;d2;d3;d4;d5;") == 0);
    CHECK(r.error == NULL && strcmp(r.message, "") == 0);
    CHECK(r.end_at - r.head_at >= 40);
    CHECK(rt_curl_active(eng) == 0);
    sres_clear(&r);

    /* A HEAD: the head, then the end, no data. */
    memset(&o, 0, sizeof(o));
    o.method = "HEAD";
    o.max_redirects = -1;
    CHECK(sopen("/hello", &o, 0, &r) == 0);
    CHECK(run_until(&r.ends, 1, 5000));
    CHECK(r.bad_order == 0 && r.heads == 1 && r.datas == 0);
    CHECK(r.status == 200 && r.error == NULL && r.len == 0);
    sres_clear(&r);

    /* A redirect followed: one head, the final one. */
    memset(&o, 0, sizeof(o));
    o.follow_redirects = 1;
    o.max_redirects = -1;
    CHECK(sopen("/redirect", &o, 0, &r) == 0);
    CHECK(run_until(&r.ends, 1, 5000));
    CHECK(r.bad_order == 0 && r.heads == 1 && r.status == 200);
    CHECK(r.body && strcmp(r.body, "hello") == 0);
    sres_clear(&r);

    /* Not followed: the 302 is the head. */
    o.follow_redirects = 0;
    CHECK(sopen("/redirect", &o, 0, &r) == 0);
    CHECK(run_until(&r.ends, 1, 5000));
    CHECK(r.heads == 1 && r.status == 302 && r.error == NULL);
    sres_clear(&r);
}

/* The reader lags: the transfer pauses at buffer_bytes and resumes as the
 * reader consumes; nothing is lost. */
static void test_stream_pause(void)
{
    rt_curl_opts_t o = {0};
    sres_t r = {0};
    size_t i;
    int ok = 1;
    o.max_redirects = -1;
    CHECK(sopen("/huge", &o, 16 * 1024, &r) == 0);
    r.consume = 0;
    CHECK(run_until(&r.heads, 1, 5000));
    run_for(100);
    /* Paused: at most the limit plus what curl had in hand. */
    CHECK(r.ends == 0);
    CHECK(r.peak >= 16 * 1024 && r.peak <= 16 * 1024 + 64 * 1024);
    fprintf(stderr, "paused with %zu bytes buffered\n", r.peak);
    r.consume = 1;
    sres_take(&r); /* resumes the transfer */
    CHECK(run_until(&r.ends, 1, 5000));
    CHECK(r.bad_order == 0 && r.error == NULL);
    CHECK(r.len == 2 * 1024 * 1024);
    for (i = 0; i < r.len; i++)
        ok &= r.body[i] == 'h';
    CHECK(ok);
    CHECK(r.peak <= 16 * 1024 + 64 * 1024);
    sres_clear(&r);
}

static void test_stream_abort_and_timeout(void)
{
    rt_curl_opts_t o = {0};
    sres_t r = {0};
    int closed = srv_hang_closed, before;
    uint64_t t0;

    /* Released inside its first DATA event: the connection is closed and
     * nothing more is delivered. */
    o.max_redirects = -1;
    CHECK(sopen("/drip-hang", &o, 0, &r) == 0);
    r.release_on = RT_CURL_EV_DATA;
    CHECK(run_until(&r.datas, 1, 5000));
    CHECK(r.req == NULL && r.body && strcmp(r.body, "first;") == 0);
    CHECK(run_until(&srv_hang_closed, closed + 1, 1000));
    before = callbacks;
    run_for(20);
    CHECK(callbacks == before && r.ends == 0);
    CHECK(rt_curl_active(eng) == 0);
    sres_clear(&r);

    /* Released from outside while waiting for more. */
    closed = srv_hang_closed;
    CHECK(sopen("/drip-hang", &o, 0, &r) == 0);
    CHECK(run_until(&r.datas, 1, 5000));
    rt_curl_abort(r.req);
    r.req = NULL;
    CHECK(run_until(&srv_hang_closed, closed + 1, 1000));
    sres_clear(&r);

    /* The timeout fires mid-stream: END says so after the piece. */
    closed = srv_hang_closed;
    o.timeout_ms = 100;
    uv_update_time(&loop);
    t0 = uv_now(&loop);
    CHECK(sopen("/drip-hang", &o, 0, &r) == 0);
    CHECK(run_until(&r.ends, 1, 5000));
    CHECK(r.bad_order == 0 && r.heads == 1 && r.datas == 1);
    CHECK(r.error && strcmp(r.error, "timeout") == 0);
    CHECK(r.end_at - t0 >= 95);
    CHECK(r.body && strcmp(r.body, "first;") == 0);
    CHECK(run_until(&srv_hang_closed, closed + 1, 1000));
    sres_clear(&r);
}

static void test_stream_failures(void)
{
    rt_curl_opts_t o = {0};
    sres_t r = {0};
    char url[128];

    /* Too large, found out while reading: END after the head. */
    o.max_redirects = -1;
    o.max_body = 1000;
    CHECK(sopen("/bigchunked", &o, 0, &r) == 0);
    CHECK(run_until(&r.ends, 1, 5000));
    CHECK(r.heads == 1 && r.error && strcmp(r.error, "too large") == 0);
    CHECK(strstr(r.message, "1000") != NULL);
    CHECK(r.len <= 1000);
    sres_clear(&r);

    /* Before any head: END alone. */
    memset(&o, 0, sizeof(o));
    o.max_redirects = -1;
    o.url = "http://127.0.0.1:1/";
    r.consume = 1;
    CHECK(rt_curl_open(eng, &o, 0, stream_cb, &r, &r.req, NULL) == 0);
    CHECK(run_until(&r.ends, 1, 5000));
    CHECK(r.heads == 0 && r.datas == 0);
    CHECK(r.error && strcmp(r.error, "connection refused") == 0);
    CHECK(rt_curl_status(r.req) == 0);
    sres_clear(&r);

    /* TLS to a plain HTTP port. */
    snprintf(url, sizeof(url), "https%s/hello", base + 4);
    o.url = url;
    CHECK(rt_curl_open(eng, &o, 0, stream_cb, &r, &r.req, NULL) == 0);
    CHECK(run_until(&r.ends, 1, 5000));
    CHECK(r.heads == 0 && r.error && strcmp(r.error, "tls error") == 0);
    sres_clear(&r);

    /* Released inside END. */
    r.release_on = RT_CURL_EV_END;
    CHECK(rt_curl_open(eng, &o, 0, stream_cb, &r, &r.req, NULL) == 0);
    CHECK(run_until(&r.ends, 1, 5000));
    CHECK(r.req == NULL);
    sres_clear(&r);

    /* Bad options: no request, no callback. */
    o.method = "GE T";
    CHECK(rt_curl_open(eng, &o, 0, stream_cb, &r, &r.req, NULL) == RT_EINVAL);
    CHECK(r.req == NULL);
}

/* Closing the engine with requests in flight calls no callback. */
static void test_close_pending(void)
{
    char url[128];
    rt_curl_opts_t o = opts_for("/hang", url, sizeof(url));
    result_t r1 = {0}, r2 = {0};
    sres_t s1 = {0}, s2 = {0};
    rt_curl_opts_t so = {0};
    int seen = srv_hang_seen, before;
    /* Streams too: one ended and not released, one running. */
    so.max_redirects = -1;
    CHECK(sopen("/hello", &so, 0, &s1) == 0);
    CHECK(run_until(&s1.ends, 1, 5000));
    CHECK(sopen("/drip-hang", &so, 0, &s2) == 0);
    CHECK(run_until(&s2.datas, 1, 5000));
    seen = srv_hang_seen;
    before = callbacks;
    CHECK(rt_curl_start(eng, &o, done_cb, &r1, NULL, NULL) == 0);
    o = opts_for("/delay", url, sizeof(url));
    CHECK(rt_curl_start(eng, &o, done_cb, &r2, NULL, NULL) == 0);
    CHECK(run_until(&srv_hang_seen, seen + 1, 2000));
    rt_curl_close(eng); /* frees the streams' requests too */
    eng = NULL;
    s1.req = s2.req = NULL;
    run_for(30);
    CHECK(callbacks == before && r1.called == 0 && r2.called == 0);
    sres_clear(&s1);
    sres_clear(&s2);
}

int main(void)
{
    CHECK(uv_loop_init(&loop) == 0);
    CHECK(server_start() == 0);
    CHECK(uv_timer_init(&loop, &ticker) == 0);
    CHECK(uv_timer_start(&ticker, tick_cb, 5, 5) == 0);
    eng = rt_curl_new(&loop);
    CHECK(eng != NULL);
    if (eng == NULL)
        return 1;

    test_get();
    test_post();
    test_headers();
    test_reuse();
    test_concurrent();
    test_idle_pool();
    test_env_proxy();
    test_refused();
    test_timeout();
    test_abort();
    test_abort_resolving();
    test_too_large();
    test_status();
    test_invalid();
    test_broken();
    test_stream_pieces();
    test_stream_pause();
    test_stream_abort_and_timeout();
    test_stream_failures();
    test_close_pending();

    /* Nothing left open: every handle closes and the loop closes. */
    server_stop();
    uv_close((uv_handle_t *)&ticker, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);

    if (test_failures) {
        fprintf(stderr, "test_curl: %d failure(s)\n", test_failures);
        return 1;
    }
    printf("test_curl: ok\n");
    return 0;
}
