/* test_redis.c - unit tests of the Redis engine (rt_redis.c) against the
 * server in CHORUS_TEST_REDIS (skipped, exit 0, when unset) and a small
 * fake server on the same loop: connect, binary-safe SET/GET, reply types,
 * ordered pipelining, pub/sub with patterns, bounded queue, command
 * timeout, abort, close with commands pending and from a callback,
 * refused connections, handshake errors, connect timeout, reconnection and
 * resubscription, and that every handle is closed at the end. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_redis.h"

#include "test_check.h"

static uv_loop_t loop;
static uv_timer_t guard;
static int guard_fired;
static char redis_host[256];
static int redis_port;

/* A script that keeps the server busy for about ms milliseconds. */
#define BUSY_SCRIPT                                                            \
    "local s = redis.call('TIME') local t0 = s[1] * 1e6 + s[2] "               \
    "while true do local n = redis.call('TIME') "                              \
    "if n[1] * 1e6 + n[2] - t0 > tonumber(ARGV[1]) * 1000 then break end "     \
    "end return 1"

/* ---- waiting ------------------------------------------------------------ */

static void guard_cb(uv_timer_t *t)
{
    (void)t;
    guard_fired = 1;
}

/* Runs the loop until *counter >= target or ms pass. Returns 1 on
 * success. */
static int wait_for(const int *counter, int target, uint64_t ms)
{
    guard_fired = 0;
    if (uv_timer_start(&guard, guard_cb, ms, 0) < 0)
        return 0;
    while (*counter < target && !guard_fired)
        uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&guard);
    return *counter >= target;
}

/* Runs the loop for ms milliseconds. */
static void run_for(uint64_t ms)
{
    int never = 0;
    (void)wait_for(&never, 1, ms);
}

/* ---- recorders ---------------------------------------------------------- */

typedef struct {
    int connected, disconnected, messages;
    int close_on_disconnect; /* close the connection from the event */
    char last_error[256];
    int last_code; /* rt_redis_last_code */
} events_t;

static void on_event(rt_redis_t *r, rt_redis_event_t ev, void *data)
{
    events_t *e = data;
    if (ev == RT_REDIS_EV_CONNECTED)
        e->connected++;
    else if (ev == RT_REDIS_EV_MESSAGE)
        e->messages++;
    else {
        e->disconnected++;
        snprintf(e->last_error, sizeof(e->last_error), "%s",
                 rt_redis_last_error(r));
        e->last_code = rt_redis_last_code(r);
        if (e->close_on_disconnect)
            rt_redis_close(r);
    }
}

typedef struct {
    int called;
    int type; /* reply type, or -1 */
    long long integer;
    size_t elements;
    char *str; /* copy of the reply's string */
    size_t len;
    const char *err;        /* the word of the error: "closed", "timeout" */
    rt_redis_t *close_me;   /* close this connection from the callback */
    rt_redis_state_t state; /* close_me's state after closing it */
} reply_t;

static void reply_reset(reply_t *x)
{
    free(x->str);
    memset(x, 0, sizeof(*x));
}

static void on_reply(rt_redis_cmd_t *cmd, const redisReply *reply, int err,
                     void *data)
{
    reply_t *x = data;
    (void)cmd;
    x->called++;
    x->err = err ? rt_err_word(err) : NULL;
    x->type = reply ? reply->type : -1;
    if (reply != NULL) {
        x->integer = reply->integer;
        x->elements = reply->elements;
        if (reply->str != NULL) {
            free(x->str);
            x->str = malloc(reply->len + 1);
            if (x->str != NULL) {
                memcpy(x->str, reply->str, reply->len);
                x->str[reply->len] = '\0';
                x->len = reply->len;
            }
        }
    }
    if (x->close_me != NULL) {
        rt_redis_close(x->close_me);
        x->state = rt_redis_state(x->close_me);
    }
}

/* Sends a command of NUL-terminated words (ended by NULL). */
static int send_cmd(rt_redis_t *r, reply_t *x, rt_redis_cmd_t **out, ...)
{
    const char *argv[16];
    size_t lens[16];
    int argc = 0;
    const char *a;
    va_list ap;
    va_start(ap, out);
    while ((a = va_arg(ap, const char *)) != NULL && argc < 16) {
        argv[argc] = a;
        lens[argc++] = strlen(a);
    }
    va_end(ap);
    return rt_redis_command(r, argc, argv, lens, on_reply, x, out);
}

static rt_redis_t *open_conn(const rt_redis_opts_t *base, events_t *ev)
{
    rt_redis_opts_t o = *base;
    int err = 0;
    rt_redis_t *r;
    if (o.host == NULL && o.path == NULL) {
        o.host = redis_host;
        o.port = redis_port;
    }
    r = rt_redis_new(&loop, &o, on_event, ev, &err);
    CHECK(r != NULL);
    return r;
}

/* ---- a fake server --------------------------------------------------------
 * Answers +PONG to each PING, -WRONGPASS to AUTH in mode FAKE_AUTH_FAIL,
 * nothing at all in FAKE_MUTE, and drops the connection on "DIE". */
enum { FAKE_NORMAL = 0, FAKE_MUTE, FAKE_AUTH_FAIL };

typedef struct fconn {
    uv_tcp_t tcp; /* first: the handle's memory is the struct */
    struct fconn *prev, *next;
} fconn_t;

static uv_tcp_t fsrv;
static int fsrv_port, fsrv_mode, fsrv_open, fsrv_accepted;
static fconn_t *fconns;

static void fconn_closed(uv_handle_t *h)
{
    free(h);
}

static void fconn_close(fconn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        fconns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, fconn_closed);
}

static void fake_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(size);
    buf->len = buf->base ? size : 0;
}

static void fake_written(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

static void fake_write(fconn_t *c, const char *s)
{
    uv_write_t *w = malloc(sizeof(*w));
    size_t n = strlen(s);
    char *copy = malloc(n);
    uv_buf_t b;
    if (w == NULL || copy == NULL) {
        free(w);
        free(copy);
        return;
    }
    memcpy(copy, s, n);
    w->data = copy;
    b = uv_buf_init(copy, (unsigned)n);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, fake_written) < 0) {
        free(copy);
        free(w);
    }
}

/* Counts occurrences of word in buf[0..n). */
static int count_word(const char *buf, size_t n, const char *word)
{
    size_t i, wl = strlen(word);
    int k = 0;
    for (i = 0; i + wl <= n; i++)
        if (memcmp(buf + i, word, wl) == 0)
            k++;
    return k;
}

static void fake_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fconn_t *c = (fconn_t *)s;
    int i, pings, auths;
    if (nread < 0) {
        fconn_close(c);
    } else if (nread > 0 && fsrv_mode != FAKE_MUTE) {
        if (count_word(buf->base, (size_t)nread, "DIE") > 0) {
            fconn_close(c);
        } else {
            auths = count_word(buf->base, (size_t)nread, "AUTH\r\n");
            pings = count_word(buf->base, (size_t)nread, "PING\r\n");
            for (i = 0; i < auths; i++)
                fake_write(c, fsrv_mode == FAKE_AUTH_FAIL
                                  ? "-WRONGPASS invalid password\r\n"
                                  : "+OK\r\n");
            for (i = 0; i < pings; i++)
                fake_write(c, "+PONG\r\n");
        }
    }
    free(buf->base);
}

static void fake_connection(uv_stream_t *srv, int status)
{
    fconn_t *c;
    if (status < 0)
        return;
    c = calloc(1, sizeof(*c));
    if (c == NULL || uv_tcp_init(&loop, &c->tcp) < 0) {
        free(c);
        return;
    }
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, fconn_closed);
        return;
    }
    c->next = fconns;
    if (fconns)
        fconns->prev = c;
    fconns = c;
    fsrv_accepted++;
    if (uv_read_start((uv_stream_t *)&c->tcp, fake_alloc, fake_read) < 0)
        fconn_close(c);
}

/* Listens on 127.0.0.1 (on fsrv_port if set, else a free port). */
static int fake_start(int mode)
{
    struct sockaddr_in a;
    int len = sizeof(a);
    fsrv_mode = mode;
    if (uv_tcp_init(&loop, &fsrv) < 0 ||
        uv_ip4_addr("127.0.0.1", fsrv_port, &a) < 0)
        return -1;
    fsrv_open = 1;
    if (uv_tcp_bind(&fsrv, (const struct sockaddr *)&a, 0) < 0 ||
        uv_listen((uv_stream_t *)&fsrv, 16, fake_connection) < 0 ||
        uv_tcp_getsockname(&fsrv, (struct sockaddr *)&a, &len) < 0)
        return -1;
    fsrv_port = ntohs(a.sin_port);
    return 0;
}

/* Stops listening and drops every connection. */
static void fake_stop(void)
{
    if (fsrv_open)
        uv_close((uv_handle_t *)&fsrv, NULL);
    fsrv_open = 0;
    while (fconns != NULL)
        fconn_close(fconns);
}

/* A port nothing listens on: bound, read, released. */
static int free_port(void)
{
    uv_tcp_t t;
    struct sockaddr_in a;
    int len = sizeof(a), port = 1;
    if (uv_tcp_init(&loop, &t) < 0)
        return port;
    if (uv_ip4_addr("127.0.0.1", 0, &a) == 0 &&
        uv_tcp_bind(&t, (const struct sockaddr *)&a, 0) == 0 &&
        uv_tcp_getsockname(&t, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    run_for(1);
    return port;
}

/* ---- tests against the real server --------------------------------------- */

static const rt_redis_opts_t plain = {.connect_timeout_ms = 2000};

static void test_commands(void)
{
    events_t ev = {0};
    rt_redis_t *r = open_conn(&plain, &ev);
    reply_t x = {0}, many[100];
    static const char bin[] = "a\0b\r\nc\xff";
    const char *argv[3];
    size_t lens[3];
    int i, rc, in_order = 1, done = 0;

    if (r == NULL)
        return;
    CHECK(rt_redis_state(r) == RT_REDIS_CONNECTING);
    CHECK(send_cmd(r, &x, NULL, "PING", NULL) == RT_EDISCONNECTED);
    CHECK(wait_for(&ev.connected, 1, 3000));
    CHECK(rt_redis_state(r) == RT_REDIS_CONNECTED);

    /* Binary-safe SET and GET. */
    argv[0] = "SET";
    lens[0] = 3;
    argv[1] = "chorus:test:bin";
    lens[1] = strlen(argv[1]);
    argv[2] = bin;
    lens[2] = sizeof(bin) - 1;
    CHECK(rt_redis_command(r, 3, argv, lens, on_reply, &x, NULL) == 0);
    CHECK(wait_for(&x.called, 1, 2000));
    CHECK(x.err == NULL && x.type == REDIS_REPLY_STATUS);
    CHECK(x.str != NULL && strcmp(x.str, "OK") == 0);
    reply_reset(&x);
    argv[0] = "GET";
    CHECK(rt_redis_command(r, 2, argv, lens, on_reply, &x, NULL) == 0);
    CHECK(wait_for(&x.called, 1, 2000));
    CHECK(x.type == REDIS_REPLY_STRING && x.len == sizeof(bin) - 1);
    CHECK(x.str != NULL && memcmp(x.str, bin, sizeof(bin) - 1) == 0);
    reply_reset(&x);

    /* Other reply types. */
    CHECK(send_cmd(r, &x, NULL, "GET", "chorus:test:missing", NULL) == 0);
    CHECK(wait_for(&x.called, 1, 2000));
    CHECK(x.type == REDIS_REPLY_NIL && x.err == NULL);
    reply_reset(&x);
    CHECK(send_cmd(r, &x, NULL, "NOSUCHCOMMAND", NULL) == 0);
    CHECK(wait_for(&x.called, 1, 2000));
    CHECK(x.type == REDIS_REPLY_ERROR && x.err == NULL);
    CHECK(x.str != NULL && strncmp(x.str, "ERR", 3) == 0);
    reply_reset(&x);
    CHECK(send_cmd(r, &x, NULL, "DEL", "chorus:test:n", NULL) == 0);
    CHECK(wait_for(&x.called, 1, 2000));
    reply_reset(&x);

    /* 100 commands in flight come back in order. */
    memset(many, 0, sizeof(many));
    for (i = 0; i < 100; i++) {
        rc = send_cmd(r, &many[i], NULL, "INCR", "chorus:test:n", NULL);
        CHECK(rc == 0);
    }
    {
        rt_redis_stats_t st;
        rt_redis_stats(r, &st);
        CHECK(st.pending == 100);
    }
    CHECK(wait_for(&many[99].called, 1, 3000));
    for (i = 0; i < 100; i++) {
        done += many[i].called;
        if (many[i].type != REDIS_REPLY_INTEGER || many[i].integer != i + 1)
            in_order = 0;
        reply_reset(&many[i]);
    }
    CHECK(done == 100 && in_order);

    /* Commands that would break the connection's mode are refused. */
    CHECK(send_cmd(r, &x, NULL, "subscribe", "x", NULL) == RT_EINVAL);
    CHECK(send_cmd(r, &x, NULL, "SELECT", "1", NULL) == RT_EINVAL);
    CHECK(send_cmd(r, &x, NULL, "CLIENT", "REPLY", "OFF", NULL) == RT_EINVAL);
    CHECK(rt_redis_subscribe(r, 0, 1, argv, lens, on_reply, &x, NULL) ==
          RT_EINVAL);

    rt_redis_close(r);
    CHECK(send_cmd(r, &x, NULL, "PING", NULL) == RT_ECLOSED);
    run_for(5);
    CHECK(ev.disconnected == 0);
    reply_reset(&x);
}

static void test_host_lookup(void)
{
    events_t ev = {0};
    rt_redis_opts_t o = plain;
    rt_redis_t *r;
    reply_t x = {0};
    if (strcmp(redis_host, "127.0.0.1") != 0)
        return; /* "localhost" is only known to mean our server here */
    o.host = "localhost";
    o.port = redis_port;
    r = open_conn(&o, &ev);
    if (r == NULL)
        return;
    CHECK(wait_for(&ev.connected, 1, 3000));
    CHECK(send_cmd(r, &x, NULL, "PING", NULL) == 0);
    CHECK(wait_for(&x.called, 1, 2000));
    CHECK(x.str != NULL && strcmp(x.str, "PONG") == 0);
    reply_reset(&x);
    rt_redis_close(r);
}

static void test_pubsub(void)
{
    events_t cev = {0}, sev = {0};
    rt_redis_opts_t so = plain;
    rt_redis_t *c, *s;
    reply_t sub = {0}, psub = {0}, pub = {0}, five[5];
    const char *names[2];
    size_t lens[2];
    static const char payload[] = "hi\0there";
    const char *argv[3];
    size_t alens[3];
    const rt_redis_msg_t *m;
    rt_redis_stats_t st;
    int i;

    memset(five, 0, sizeof(five));
    so.subscriber = 1;
    so.reconnect = 1;
    so.max_queue = 2;
    c = open_conn(&plain, &cev);
    s = open_conn(&so, &sev);
    if (c == NULL || s == NULL)
        return;
    CHECK(wait_for(&cev.connected, 1, 3000));
    CHECK(wait_for(&sev.connected, 1, 3000));
    CHECK(send_cmd(s, &pub, NULL, "PING", NULL) == RT_EINVAL);

    names[0] = "chorus:test:ch";
    lens[0] = strlen(names[0]);
    CHECK(rt_redis_subscribe(s, 0, 1, names, lens, on_reply, &sub, NULL) == 0);
    names[0] = "chorus:test:p.*";
    lens[0] = strlen(names[0]);
    CHECK(rt_redis_subscribe(s, 1, 1, names, lens, on_reply, &psub, NULL) == 0);
    CHECK(wait_for(&psub.called, 1, 2000));
    CHECK(sub.called == 1 && sub.err == NULL && psub.err == NULL);

    /* A binary payload on a channel. */
    argv[0] = "PUBLISH";
    alens[0] = 7;
    argv[1] = "chorus:test:ch";
    alens[1] = strlen(argv[1]);
    argv[2] = payload;
    alens[2] = sizeof(payload) - 1;
    CHECK(rt_redis_command(c, 3, argv, alens, on_reply, &pub, NULL) == 0);
    CHECK(wait_for(&sev.messages, 1, 2000));
    CHECK(wait_for(&pub.called, 1, 2000));
    CHECK(pub.type == REDIS_REPLY_INTEGER && pub.integer == 1);
    reply_reset(&pub);
    m = rt_redis_peek(s);
    CHECK(m != NULL);
    if (m != NULL) {
        CHECK(m->pattern == NULL);
        CHECK(strcmp(m->channel, "chorus:test:ch") == 0);
        CHECK(m->payload_len == sizeof(payload) - 1 &&
              memcmp(m->payload, payload, m->payload_len) == 0);
    }
    rt_redis_shift(s);
    CHECK(rt_redis_peek(s) == NULL);

    /* A pattern. */
    CHECK(send_cmd(c, &pub, NULL, "PUBLISH", "chorus:test:p.1", "x", NULL) ==
          0);
    CHECK(wait_for(&sev.messages, 2, 2000));
    m = rt_redis_peek(s);
    CHECK(m != NULL && m->pattern != NULL);
    if (m != NULL && m->pattern != NULL) {
        CHECK(strcmp(m->pattern, "chorus:test:p.*") == 0);
        CHECK(strcmp(m->channel, "chorus:test:p.1") == 0);
        CHECK(strcmp(m->payload, "x") == 0);
    }
    rt_redis_shift(s);
    reply_reset(&pub);

    /* The queue keeps the newest max_queue messages and counts drops. */
    for (i = 0; i < 5; i++) {
        char p[2] = {(char)('0' + i), '\0'};
        CHECK(send_cmd(c, &five[i], NULL, "PUBLISH", "chorus:test:ch", p,
                       NULL) == 0);
    }
    CHECK(wait_for(&five[4].called, 1, 2000));
    CHECK(wait_for(&sev.messages, 7, 2000));
    for (i = 0; i < 5; i++)
        reply_reset(&five[i]);
    rt_redis_stats(s, &st);
    CHECK(st.queued == 2 && st.drops == 3 && st.messages == 7);
    m = rt_redis_peek(s);
    CHECK(m != NULL && strcmp(m->payload, "3") == 0);
    rt_redis_shift(s);
    m = rt_redis_peek(s);
    CHECK(m != NULL && strcmp(m->payload, "4") == 0);
    rt_redis_shift(s);
    reply_reset(&pub);

    /* After unsubscribing, nothing more is queued for the channel. */
    names[0] = "chorus:test:ch";
    lens[0] = strlen(names[0]);
    CHECK(rt_redis_unsubscribe(s, 0, 1, names, lens) == 0);
    CHECK(send_cmd(c, &pub, NULL, "PUBLISH", "chorus:test:ch", "late", NULL) ==
          0);
    CHECK(wait_for(&pub.called, 1, 2000));
    run_for(20);
    CHECK(rt_redis_peek(s) == NULL);
    rt_redis_stats(s, &st);
    CHECK(st.channels == 0 && st.patterns == 1);
    reply_reset(&pub);

    /* Kill the subscriber's connection: it comes back, subscribed. */
    CHECK(send_cmd(c, &pub, NULL, "CLIENT", "KILL", "TYPE", "pubsub", NULL) ==
          0);
    CHECK(wait_for(&sev.disconnected, 1, 2000));
    CHECK(rt_redis_state(s) != RT_REDIS_CONNECTED);
    /* Subscribing while down: remembered, subscribed after reconnecting. */
    names[0] = "chorus:test:later";
    lens[0] = strlen(names[0]);
    CHECK(rt_redis_subscribe(s, 0, 1, names, lens, on_reply, &sub, NULL) ==
          RT_EDISCONNECTED);
    CHECK(wait_for(&sev.connected, 2, 3000));
    reply_reset(&pub);
    CHECK(send_cmd(c, &pub, NULL, "PUBLISH", "chorus:test:later", "again",
                   NULL) == 0);
    CHECK(wait_for(&sev.messages, 8, 2000));
    m = rt_redis_peek(s);
    CHECK(m != NULL && strcmp(m->payload, "again") == 0);
    reply_reset(&pub);
    CHECK(send_cmd(c, &pub, NULL, "PUBLISH", "chorus:test:p.2", "p", NULL) ==
          0);
    CHECK(wait_for(&sev.messages, 9, 2000));
    rt_redis_stats(s, &st);
    CHECK(st.reconnects == 1 && st.connects == 2 && st.errors == 1);
    CHECK(st.queued == 2);

    /* Closing frees the queued messages (the leak checker watches). */
    rt_redis_close(s);
    rt_redis_close(c);
    reply_reset(&pub);
    reply_reset(&sub);
    reply_reset(&psub);
}

static void test_timeout_and_abort(void)
{
    events_t ev = {0};
    rt_redis_opts_t o = plain;
    rt_redis_t *r;
    reply_t slow = {0}, next = {0}, aborted = {0};
    rt_redis_cmd_t *h = NULL;
    rt_redis_stats_t st;
    uint64_t t0;

    o.command_timeout_ms = 50;
    r = open_conn(&o, &ev);
    if (r == NULL)
        return;
    CHECK(wait_for(&ev.connected, 1, 3000));

    /* A command slower than the timeout fails with "timeout"... */
    uv_update_time(&loop);
    t0 = uv_now(&loop);
    CHECK(send_cmd(r, &slow, NULL, "EVAL", BUSY_SCRIPT, "0", "200", NULL) == 0);
    CHECK(send_cmd(r, &next, NULL, "PING", NULL) == 0);
    CHECK(wait_for(&slow.called, 1, 2000));
    CHECK(slow.err != NULL && strcmp(slow.err, "timeout") == 0);
    CHECK(uv_now(&loop) - t0 < 150);
    /* ...and the one queued behind it times out too; late replies are
     * discarded and the connection stays usable. */
    CHECK(wait_for(&next.called, 1, 2000));
    CHECK(next.err != NULL && strcmp(next.err, "timeout") == 0);
    run_for(250);
    CHECK(slow.called == 1 && next.called == 1);
    reply_reset(&next);
    CHECK(send_cmd(r, &next, NULL, "ECHO", "fresh", NULL) == 0);
    CHECK(wait_for(&next.called, 1, 2000));
    CHECK(next.err == NULL && next.str && strcmp(next.str, "fresh") == 0);
    rt_redis_stats(r, &st);
    CHECK(st.timeouts == 2 && st.pending == 0);
    CHECK(rt_redis_state(r) == RT_REDIS_CONNECTED);

    /* An aborted command is never called back. */
    reply_reset(&next);
    CHECK(send_cmd(r, &aborted, &h, "EVAL", BUSY_SCRIPT, "0", "20", NULL) == 0);
    if (h != NULL) /* NULL when the send failed (checked above) */
        rt_redis_cmd_abort(h);
    CHECK(send_cmd(r, &next, NULL, "ECHO", "after", NULL) == 0);
    CHECK(wait_for(&next.called, 1, 2000));
    CHECK(aborted.called == 0);
    CHECK(next.str && strcmp(next.str, "after") == 0);

    /* Closing calls pending commands back with "closed" before it returns. */
    reply_reset(&next);
    CHECK(send_cmd(r, &next, NULL, "PING", NULL) == 0);
    rt_redis_close(r);
    CHECK(next.called == 1 && next.err && strcmp(next.err, "closed") == 0);
    run_for(5);
    CHECK(next.called == 1);
    reply_reset(&slow);
    reply_reset(&next);
    reply_reset(&aborted);
}

static void test_close_in_callback(void)
{
    events_t ev = {0};
    rt_redis_t *r = open_conn(&plain, &ev);
    reply_t a = {0}, b = {0};
    if (r == NULL)
        return;
    CHECK(wait_for(&ev.connected, 1, 3000));
    a.close_me = r;
    CHECK(send_cmd(r, &a, NULL, "PING", NULL) == 0);
    CHECK(send_cmd(r, &b, NULL, "PING", NULL) == 0);
    CHECK(wait_for(&a.called, 1, 2000));
    CHECK(a.err == NULL && a.str && strcmp(a.str, "PONG") == 0);
    CHECK(b.called == 1 && b.err && strcmp(b.err, "closed") == 0);
    CHECK(a.state == RT_REDIS_CLOSED);
    run_for(5);
    CHECK(b.called == 1 && ev.disconnected == 0);
    reply_reset(&a);
    reply_reset(&b);
}

/* ---- failures ----------------------------------------------------------- */

static void test_refused(void)
{
    events_t ev = {0};
    rt_redis_opts_t o = {0};
    rt_redis_t *r;
    reply_t x = {0};
    int err = 0;

    CHECK(rt_redis_new(&loop, &o, on_event, &ev, &err) == NULL &&
          err == RT_EINVAL);
    o.host = "127.0.0.1";
    o.port = free_port();
    r = open_conn(&o, &ev);
    if (r == NULL)
        return;
    CHECK(wait_for(&ev.disconnected, 1, 2000));
    CHECK(strcmp(ev.last_error, "connection refused") == 0);
    CHECK(ev.last_code == RT_EREFUSED);
    CHECK(rt_redis_state(r) == RT_REDIS_DISCONNECTED);
    CHECK(send_cmd(r, &x, NULL, "PING", NULL) == RT_EDISCONNECTED);
    run_for(50);
    CHECK(ev.disconnected == 1 && ev.connected == 0); /* no reconnect */
    rt_redis_close(r);

    /* With reconnect on, closing from the event stops the attempts. */
    memset(&ev, 0, sizeof(ev));
    o.reconnect = 1;
    o.backoff_min_ms = 1;
    ev.close_on_disconnect = 1;
    r = open_conn(&o, &ev);
    CHECK(wait_for(&ev.disconnected, 1, 2000));
    run_for(30);
    CHECK(ev.disconnected == 1);

    /* A unix socket that does not exist fails at once, from the loop. */
    memset(&ev, 0, sizeof(ev));
    o.host = NULL;
    o.path = "/nonexistent/chorus-test.sock";
    o.reconnect = 0;
    r = open_conn(&o, &ev);
    CHECK(ev.disconnected == 0);
    CHECK(wait_for(&ev.disconnected, 1, 2000));
    CHECK(ev.last_error[0] != '\0');
    rt_redis_close(r);
}

static void test_fake_server(void)
{
    events_t ev = {0};
    rt_redis_opts_t o = {0};
    rt_redis_t *r;
    reply_t x = {0};
    rt_redis_stats_t st;

    fsrv_port = 0;
    CHECK(fake_start(FAKE_NORMAL) == 0);
    o.host = "127.0.0.1";
    o.port = fsrv_port;
    o.reconnect = 1;
    o.backoff_min_ms = 10;
    o.backoff_max_ms = 40;
    o.connect_timeout_ms = 1000;
    r = open_conn(&o, &ev);
    if (r == NULL)
        return;
    CHECK(wait_for(&ev.connected, 1, 2000));

    /* The server drops the connection: the pending command is "closed",
     * the loss is reported, and the connection comes back. */
    CHECK(send_cmd(r, &x, NULL, "DIE", NULL) == 0);
    CHECK(wait_for(&x.called, 1, 2000));
    CHECK(x.err && strcmp(x.err, "closed") == 0);
    CHECK(ev.disconnected == 1);
    CHECK(strstr(ev.last_error, "closed: ") == ev.last_error);
    CHECK(ev.last_code == RT_ECLOSED);
    CHECK(send_cmd(r, &x, NULL, "PING", NULL) == RT_EDISCONNECTED);
    CHECK(wait_for(&ev.connected, 2, 2000));
    rt_redis_stats(r, &st);
    CHECK(st.reconnects == 1 && st.errors == 1);
    reply_reset(&x);
    CHECK(send_cmd(r, &x, NULL, "PING", NULL) == 0);
    CHECK(wait_for(&x.called, 1, 2000));
    CHECK(x.str && strcmp(x.str, "PONG") == 0);
    reply_reset(&x);

    /* The server goes away: attempts fail (refused) with capped backoff. */
    fake_stop();
    CHECK(wait_for(&ev.disconnected, 4, 2000));
    CHECK(ev.last_code == RT_EREFUSED);
    CHECK(rt_redis_state(r) != RT_REDIS_CONNECTED);
    /* It comes back on the same port. */
    CHECK(fake_start(FAKE_NORMAL) == 0);
    CHECK(wait_for(&ev.connected, 3, 2000));
    rt_redis_stats(r, &st);
    CHECK(st.reconnects == 2 && st.errors >= 4);
    rt_redis_close(r);
    fake_stop();
    run_for(5);

    /* A server that accepts and never answers: the connect timeout. */
    memset(&ev, 0, sizeof(ev));
    fsrv_port = 0;
    CHECK(fake_start(FAKE_MUTE) == 0);
    o.port = fsrv_port;
    o.reconnect = 0;
    o.connect_timeout_ms = 60;
    r = open_conn(&o, &ev);
    CHECK(wait_for(&ev.disconnected, 1, 2000));
    CHECK(strcmp(ev.last_error, "timeout") == 0 && ev.connected == 0);
    CHECK(ev.last_code == RT_ETIMEOUT);
    CHECK(fsrv_accepted > 0);
    rt_redis_close(r);
    fake_stop();
    run_for(5);

    /* A handshake error reply: the attempt fails with the server's text. */
    memset(&ev, 0, sizeof(ev));
    fsrv_port = 0;
    CHECK(fake_start(FAKE_AUTH_FAIL) == 0);
    o.port = fsrv_port;
    o.password = "wrong";
    o.connect_timeout_ms = 1000;
    r = open_conn(&o, &ev);
    CHECK(wait_for(&ev.disconnected, 1, 2000));
    CHECK(strstr(ev.last_error, "connect failed: WRONGPASS") == ev.last_error &&
          ev.connected == 0);
    CHECK(ev.last_code == RT_ECONNECT);
    rt_redis_close(r);
    fake_stop();
    run_for(5);
}

/* Reads host and port from redis://host:port[/db]. Returns 0 or -1. */
static int parse_url(const char *url)
{
    const char *p = strstr(url, "://"), *colon, *end;
    size_t n;
    if (p == NULL)
        return -1;
    p += 3;
    colon = strchr(p, ':');
    end = colon ? colon : p + strcspn(p, "/");
    n = (size_t)(end - p);
    if (n == 0 || n >= sizeof(redis_host))
        return -1;
    memcpy(redis_host, p, n);
    redis_host[n] = '\0';
    redis_port = colon ? atoi(colon + 1) : 6379;
    return redis_port > 0 ? 0 : -1;
}

int main(void)
{
    const char *url = getenv("CHORUS_TEST_REDIS");
    if (url == NULL || *url == '\0') {
        printf("test_redis: CHORUS_TEST_REDIS is not set, skipping\n");
        return 0;
    }
    if (parse_url(url) < 0) {
        fprintf(stderr, "test_redis: cannot parse %s\n", url);
        return 1;
    }
    /* hiredis writes with write(2): a reset peer must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&loop) != 0 || uv_timer_init(&loop, &guard) != 0)
        return 1;

    test_commands();
    test_host_lookup();
    test_pubsub();
    test_timeout_and_abort();
    test_close_in_callback();
    test_refused();
    test_fake_server();

    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
    if (test_failures) {
        fprintf(stderr, "test_redis: %d failure(s)\n", test_failures);
        return 1;
    }
    printf("test_redis: ok\n");
    return 0;
}
