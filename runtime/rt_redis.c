/* rt_redis.c - asynchronous Redis connections on a libuv loop (hiredis).
 *
 * Life of a connection: an attempt (host lookup with uv_getaddrinfo, then
 * redisAsyncConnect and our poll adapter) sends a handshake right away
 * (AUTH, SELECT, PING, and for a subscriber SUBSCRIBE/PSUBSCRIBE of what it
 * remembers); the connection is ready when the last of those is answered.
 * An attempt that fails and a connection that is lost both end in rr_lost:
 * the error is kept, an event is sent and, with reconnect on, the retry
 * timer schedules the next attempt after a doubling, capped delay.
 *
 * hiredis 0.14 facts this file relies on (async.c of v0.14.1):
 * - a context is freed by hiredis itself after a failed connect or an I/O
 *   error, and by redisAsyncFree; in every case __redisAsyncFree first
 *   calls every pending reply callback with a NULL reply, then the
 *   adapter's cleanup hook, then onDisconnect (only if it was connected);
 * - redisAsyncFree from inside a reply callback only sets a flag and the
 *   context is freed when the callback returns; from the connect callback
 *   it would free at once under hiredis' feet, so we never call it there;
 * - a subscription callback is called for every message and once more
 *   with NULL when the context goes away, and replies are freed when a
 *   callback returns (we copy what we keep).
 *
 * Lifetime of rt_redis_t: refs counts the user (until rt_redis_close), the
 * live hiredis context (until its last hook ran) and a host lookup in
 * flight. At zero the three timers are closed and the struct is freed by
 * the last close callback, so its memory is always valid inside any call
 * that started from the loop, even after rt_redis_close. */
#include "rt_redis.h"

#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Defaults of rt_redis_opts_t, see rt_redis.h. */
#define RR_DEFAULT_PORT 6379
#define RR_BACKOFF_MIN_MS 100
#define RR_BACKOFF_MAX_MS 5000
#define RR_MAX_QUEUE 10000

enum { RR_CMD_USER = 0, RR_CMD_SUB };

struct rt_redis_cmd {
    rt_redis_t *r;
    rt_redis_reply_cb cb; /* the owner's callback; NULL once it is gone */
    void *data;
    uint64_t deadline; /* command: loop time of "timeout"; 0: none */
    int kind;          /* RR_CMD_USER or RR_CMD_SUB */
    int ready;         /* subscription: the connection is ready after */
    size_t left;       /* subscription: confirmations still expected */
    /* command with an owner: in r->pending; subscription: in r->subq */
    rt_redis_cmd_t *prev, *next;
};

/* Our hiredis adapter: one uv_poll on the context's socket. Freed by the
 * poll handle's close callback, which the cleanup hook starts. */
typedef struct {
    uv_poll_t poll;
    redisAsyncContext *ac; /* NULL once hiredis called the cleanup hook */
    int events;            /* UV_READABLE | UV_WRITABLE wanted by hiredis */
} rr_ev_t;

/* A message held in a string we own, or a static one. */
typedef struct {
    const char *s; /* NULL: none */
    char *own;     /* what s points to when allocated */
} rr_str_t;

/* A remembered channel or pattern. */
typedef struct {
    char *name; /* owned, NUL-terminated after len */
    size_t len;
    int pattern;
} rr_name_t;

/* A host lookup in flight; holds a reference on r until its callback. */
typedef struct {
    uv_getaddrinfo_t req;
    rt_redis_t *r;
    unsigned attempt; /* stale when r->attempt moved on */
} rr_lookup_t;

struct rt_redis {
    uv_loop_t *loop;
    rt_redis_event_cb cb;
    void *data;
    char *host, *path, *user, *password; /* owned copies of the options */
    int port, db, reconnect, subscriber;
    uint64_t connect_timeout_ms, command_timeout_ms;
    uint64_t backoff_min, backoff_max, backoff; /* backoff: next delay */
    size_t max_queue;

    redisAsyncContext *ac; /* the live context, or NULL */
    rt_redis_state_t state;
    int closed;       /* rt_redis_close was called */
    unsigned refs;    /* see the header comment */
    int handles;      /* timers still open once refs reached 0 */
    unsigned attempt; /* number of the current attempt */
    int resolving;    /* the current attempt waits for its lookup */
    int hs_left;      /* handshake replies still expected */
    int ready_wait;   /* subscriber: waiting for the resubscription */
    int ever_ready;   /* it was ready at least once */
    rr_str_t fail;    /* why we free the context ourselves: detail */
    int fail_code;    /* and its rt_err.h code */
    rr_str_t err;     /* rt_redis_last_error */
    int err_code;     /* rt_redis_last_code */

    uv_timer_t connect_timer; /* connect_timeout_ms of an attempt */
    uv_timer_t retry_timer;   /* next attempt (or a deferred failure) */
    uv_timer_t cmd_timer;     /* deadline of the oldest pending command */

    /* Commands whose owner waits, oldest first (so by deadline). */
    rt_redis_cmd_t *pending_head, *pending_tail;
    size_t npending;
    /* Subscriptions waiting for confirmations, in the order sent. */
    rt_redis_cmd_t *subq_head, *subq_tail;
    rr_name_t *names; /* remembered channels and patterns */
    size_t nnames, names_cap;
    rt_redis_msg_t *msg_head, *msg_tail; /* queued messages */
    size_t nqueued;
    rt_redis_stats_t st;
};

static void rr_attempt(rt_redis_t *r);
static void rr_lost(rt_redis_t *r, int code, const char *detail);
static void rr_fail(rt_redis_t *r, int code, const char *detail);
static void rr_release(rt_redis_t *r);
static void rr_sub_cb(redisAsyncContext *ac, void *reply, void *privdata);

/* ---- small helpers ------------------------------------------------------ */

/* Sets x to "a" or "a: b" (a copy). Out of memory: x says so. */
static void rr_str_set(rr_str_t *x, const char *a, const char *b)
{
    size_t na = strlen(a), nb = b ? strlen(b) : 0;
    char *s = malloc(na + nb + 3);
    if (s != NULL) {
        memcpy(s, a, na);
        if (b != NULL) {
            memcpy(s + na, ": ", 2);
            memcpy(s + na + 2, b, nb);
            na += nb + 2;
        }
        s[na] = '\0';
    }
    free(x->own);
    x->own = s;
    x->s = s != NULL ? s : "out of memory";
}

static void rr_str_clear(rr_str_t *x)
{
    free(x->own);
    x->own = NULL;
    x->s = NULL;
}

/* strdup that keeps NULL and treats "" as NULL. Returns 0 or -1. */
static int rr_dup(char **dst, const char *src)
{
    size_t n;
    *dst = NULL;
    if (src == NULL || *src == '\0')
        return 0;
    n = strlen(src);
    *dst = malloc(n + 1);
    if (*dst == NULL)
        return -1;
    memcpy(*dst, src, n + 1);
    return 0;
}

/* Whether s (n bytes) equals the upper-case word w, ignoring case. */
static int rr_is(const char *s, size_t n, const char *w)
{
    return n == strlen(w) && strncasecmp(s, w, n) == 0;
}

static void rr_emit(rt_redis_t *r, rt_redis_event_t ev)
{
    if (!r->closed && r->cb != NULL)
        r->cb(r, ev, r->data);
}

/* Whether the live context still takes commands. */
static int rr_ac_usable(const rt_redis_t *r)
{
    return r->ac != NULL &&
           !(r->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING));
}

static void rr_pending_unlink(rt_redis_t *r, rt_redis_cmd_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        r->pending_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        r->pending_tail = c->prev;
    c->prev = c->next = NULL;
    r->npending--;
}

static rt_redis_cmd_t *rr_subq_pop(rt_redis_t *r)
{
    rt_redis_cmd_t *e = r->subq_head;
    if (e != NULL) {
        r->subq_head = e->next;
        if (r->subq_head == NULL)
            r->subq_tail = NULL;
        e->next = NULL;
    }
    return e;
}

/* Calls the waiting subscriptions back with "closed" and frees them. */
static void rr_subq_flush(rt_redis_t *r)
{
    rt_redis_cmd_t *e;
    while ((e = rr_subq_pop(r)) != NULL) {
        rt_redis_reply_cb cb = e->cb;
        e->cb = NULL;
        if (cb != NULL)
            cb(e, NULL, RT_ECLOSED, e->data);
        free(e);
    }
}

static void rr_msgs_free(rt_redis_t *r)
{
    while (r->msg_head != NULL)
        rt_redis_shift(r);
}

/* ---- remembered subscriptions ------------------------------------------ */

static long rr_name_find(const rt_redis_t *r, int pattern, const char *s,
                         size_t n)
{
    size_t i;
    for (i = 0; i < r->nnames; i++) {
        const rr_name_t *x = &r->names[i];
        if (x->pattern == pattern && x->len == n && memcmp(x->name, s, n) == 0)
            return (long)i;
    }
    return -1;
}

/* Remembers a name unless it is known. Returns 0 or -1 (out of memory). */
static int rr_name_add(rt_redis_t *r, int pattern, const char *s, size_t n)
{
    rr_name_t *x;
    if (rr_name_find(r, pattern, s, n) >= 0)
        return 0;
    if (r->nnames == r->names_cap) {
        size_t cap = r->names_cap ? r->names_cap * 2 : 8;
        rr_name_t *nn = realloc(r->names, cap * sizeof(*nn));
        if (nn == NULL)
            return -1;
        r->names = nn;
        r->names_cap = cap;
    }
    x = &r->names[r->nnames];
    x->name = malloc(n + 1);
    if (x->name == NULL)
        return -1;
    memcpy(x->name, s, n);
    x->name[n] = '\0';
    x->len = n;
    x->pattern = pattern;
    r->nnames++;
    return 0;
}

static void rr_name_remove(rt_redis_t *r, size_t i)
{
    free(r->names[i].name);
    r->names[i] = r->names[--r->nnames];
}

/* ---- the hiredis adapter (uv_poll) -------------------------------------- */

static void rr_ev_closed(uv_handle_t *h)
{
    free(h->data);
}

/* The context's last failure, reported from the loop: used when hiredis
 * asks for something we cannot do inside its own frames. */
static void rr_fail_now_cb(uv_timer_t *t)
{
    rt_redis_t *r = t->data;
    if (r->ac != NULL)
        redisAsyncFree(r->ac); /* reports r->fail via the cleanup hook */
}

static void rr_fail_soon(rt_redis_t *r, int code, const char *what, int status)
{
    r->fail_code = code;
    if (what != NULL)
        rr_str_set(&r->fail, what, uv_strerror(status));
    else
        rr_str_set(&r->fail, "", NULL);
    /* The retry timer is idle while a context lives. */
    if (uv_timer_start(&r->retry_timer, rr_fail_now_cb, 0, 0) < 0)
        rr_str_set(&r->fail, "cannot start a timer", NULL);
}

/* libuv reports POLLERR as a negative status and stops the handle; the
 * stock 0.14 adapter ignored it, so a refused connect was never reported.
 * Before the connection is up, the write handler makes hiredis read the
 * socket error and report it (connect callback, then teardown). Once up,
 * the read handler gets the error (or the last replies); if the context
 * still lives after that, it is torn down here. */
static void rr_poll_error(rr_ev_t *p, int status)
{
    redisAsyncContext *ac = p->ac;
    rt_redis_t *r;
    if (ac == NULL)
        return;
    r = ac->data;
    p->events = 0; /* libuv stopped the handle */
    if (!(ac->c.flags & REDIS_CONNECTED))
        redisAsyncHandleWrite(ac);
    else
        redisAsyncHandleRead(ac);
    if (p->ac != NULL)
        rr_fail(r, RT_ECONNECTION, uv_strerror(status));
}

static void rr_poll_cb(uv_poll_t *h, int status, int events)
{
    rr_ev_t *p = h->data;
    if (status < 0) {
        rr_poll_error(p, status);
        return;
    }
    /* Each handler may free the context: the cleanup hook clears p->ac. */
    if (p->ac != NULL && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void rr_ev_update(rr_ev_t *p, int events)
{
    int rc = 0;
    if (events == p->events)
        return;
    p->events = events;
    if (events != 0)
        rc = uv_poll_start(&p->poll, events, rr_poll_cb);
    else
        rc = uv_poll_stop(&p->poll);
    if (rc < 0 && p->ac != NULL)
        rr_fail_soon(p->ac->data, RT_ECONNECTION, "cannot poll the socket", rc);
}

static void rr_ev_add_read(void *privdata)
{
    rr_ev_t *p = privdata;
    rr_ev_update(p, p->events | UV_READABLE);
}

static void rr_ev_del_read(void *privdata)
{
    rr_ev_t *p = privdata;
    rr_ev_update(p, p->events & ~UV_READABLE);
}

static void rr_ev_add_write(void *privdata)
{
    rr_ev_t *p = privdata;
    rr_ev_update(p, p->events | UV_WRITABLE);
}

static void rr_ev_del_write(void *privdata)
{
    rr_ev_t *p = privdata;
    rr_ev_update(p, p->events & ~UV_WRITABLE);
}

/* The code of hiredis' error message errstr: a connection that was up
 * was closed (or lost); one that never was, refused or failed. */
static int rr_code_of(const char *errstr, int was_connected)
{
    if (was_connected)
        return RT_ECLOSED;
    return strstr(errstr, "Connection refused") ? RT_EREFUSED : RT_ECONNECT;
}

/* The context is going away: pending callbacks already ran (with NULL);
 * only onDisconnect (if it was connected) and the free remain. */
static void rr_ac_gone(rt_redis_t *r, redisAsyncContext *ac)
{
    int disconnect_follows = (ac->c.flags & REDIS_CONNECTED) != 0;
    const char *why = r->fail.s;
    int code = r->fail_code;
    if (why == NULL) {
        why = ac->err ? ac->errstr : "connection closed";
        code = rr_code_of(why, disconnect_follows);
    }
    r->ac = NULL;
    r->hs_left = 0;
    r->ready_wait = 0;
    rr_lost(r, code, why);
    rr_str_clear(&r->fail);
    if (!disconnect_follows)
        rr_release(r); /* the context's reference */
}

static void rr_ev_cleanup(void *privdata)
{
    rr_ev_t *p = privdata;
    redisAsyncContext *ac = p->ac;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, rr_ev_closed);
    if (ac != NULL)
        rr_ac_gone(ac->data, ac);
}

/* The connect callback must be set for hiredis to watch the first write
 * event; readiness is decided by the handshake replies, and a failure is
 * reported by the cleanup hook, so there is nothing to do here (freeing
 * the context from this callback would be a use after free in hiredis). */
static void rr_on_connect(const redisAsyncContext *ac, int status)
{
    (void)ac;
    (void)status;
}

/* Called after the cleanup hook when the context had been connected. */
static void rr_on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    rr_release(ac->data);
}

/* ---- connection life ---------------------------------------------------- */

static void rr_free(rt_redis_t *r)
{
    size_t i;
    rr_msgs_free(r);
    for (i = 0; i < r->nnames; i++)
        free(r->names[i].name);
    free(r->names);
    rr_str_clear(&r->fail);
    rr_str_clear(&r->err);
    free(r->host);
    free(r->path);
    free(r->user);
    free(r->password);
    free(r);
}

static void rr_timer_closed(uv_handle_t *h)
{
    rt_redis_t *r = h->data;
    if (--r->handles == 0)
        rr_free(r);
}

static uv_timer_t *rr_timer(rt_redis_t *r, int i)
{
    return i == 0   ? &r->connect_timer
           : i == 1 ? &r->retry_timer
                    : &r->cmd_timer;
}

/* Closes the timers that were initialised; the last one frees r. */
static void rr_close_handles(rt_redis_t *r)
{
    int i, n = r->handles;
    for (i = 0; i < n; i++)
        uv_close((uv_handle_t *)rr_timer(r, i), rr_timer_closed);
}

static void rr_release(rt_redis_t *r)
{
    if (--r->refs == 0)
        rr_close_handles(r);
}

static void rr_ready(rt_redis_t *r)
{
    r->state = RT_REDIS_CONNECTED;
    uv_timer_stop(&r->connect_timer);
    r->backoff = r->backoff_min;
    r->st.connects++;
    if (r->ever_ready)
        r->st.reconnects++;
    r->ever_ready = 1;
    rr_emit(r, RT_REDIS_EV_CONNECTED);
}

static void rr_retry_cb(uv_timer_t *t)
{
    rr_attempt(t->data);
}

/* The next delay: half of the current backoff plus a varying part of the
 * other half (nodes that lost the server together do not all come back
 * at the same instant); the backoff doubles up to its cap. */
static uint64_t rr_next_delay(rt_redis_t *r)
{
    uint64_t d = r->backoff, half = d / 2;
    r->backoff = d * 2 > r->backoff_max ? r->backoff_max : d * 2;
    return half + (uv_hrtime() / 1000) % (d - half + 1);
}

/* The attempt failed or the connection was lost (the context, if any, is
 * gone): keep why (code, and the detail when it says more than the code's
 * word), fail the waiting subscriptions, schedule the next attempt and
 * tell the user. */
static void rr_lost(rt_redis_t *r, int code, const char *detail)
{
    if (r->closed)
        return;
    r->err_code = code;
    rr_str_set(&r->err, rt_err_word(code), rt_err_detail(code, detail));
    r->state = RT_REDIS_DISCONNECTED;
    r->resolving = 0;
    r->st.errors++;
    uv_timer_stop(&r->connect_timer);
    uv_timer_stop(&r->cmd_timer);
    rr_subq_flush(r);
    if (r->closed)
        return;
    if (r->reconnect &&
        uv_timer_start(&r->retry_timer, rr_retry_cb, rr_next_delay(r), 0) < 0)
        r->reconnect = 0; /* cannot happen with a valid timer */
    rr_emit(r, RT_REDIS_EV_DISCONNECTED);
}

/* Tears the live context down with a reason (reported by the cleanup
 * hook). Inside a reply callback hiredis defers the free until it
 * returns. */
static void rr_fail(rt_redis_t *r, int code, const char *detail)
{
    if (r->ac == NULL)
        return;
    r->fail_code = code;
    rr_str_set(&r->fail, detail ? detail : "", NULL);
    redisAsyncFree(r->ac);
}

/* A handshake reply (AUTH, SELECT, PING); privdata is r. */
static void rr_hs_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    rt_redis_t *r = privdata;
    const redisReply *rep = reply;
    (void)ac;
    if (rep == NULL || r->closed || r->hs_left == 0)
        return; /* going away: the cleanup hook reports */
    if (rep->type == REDIS_REPLY_ERROR) {
        rr_fail(r, RT_ECONNECT, rep->str); /* AUTH refused, ... */
        return;
    }
    if (--r->hs_left == 0 && !r->ready_wait)
        rr_ready(r);
}

/* Sends cmd with n names (SUBSCRIBE, UNSUBSCRIBE, ...). Returns 0 or -1. */
static int rr_send_names(rt_redis_t *r, const char *cmd, int n,
                         const char **names, const size_t *lens,
                         redisCallbackFn *fn)
{
    const char **argv = malloc(((size_t)n + 1) * sizeof(*argv));
    size_t *argvlen = malloc(((size_t)n + 1) * sizeof(*argvlen));
    int i, rc = -1;
    if (argv == NULL || argvlen == NULL)
        goto out;
    argv[0] = cmd;
    argvlen[0] = strlen(cmd);
    for (i = 0; i < n; i++) {
        argv[i + 1] = names[i];
        argvlen[i + 1] = lens[i];
    }
    if (redisAsyncCommandArgv(r->ac, fn, fn ? r : NULL, n + 1, argv, argvlen) ==
        REDIS_OK)
        rc = 0;
out:
    free(argv);
    free(argvlen);
    return rc;
}

/* Queues a subscription waiting for n confirmations. Returns it or NULL. */
static rt_redis_cmd_t *rr_subq_push(rt_redis_t *r, size_t n)
{
    rt_redis_cmd_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->r = r;
    e->kind = RR_CMD_SUB;
    e->left = n;
    if (r->subq_tail)
        r->subq_tail->next = e;
    else
        r->subq_head = e;
    r->subq_tail = e;
    return e;
}

/* Subscriber handshake: SUBSCRIBE and PSUBSCRIBE everything remembered;
 * the connection is ready once the last is confirmed. Returns 0 or -1. */
static int rr_resubscribe(rt_redis_t *r)
{
    int pattern;
    rt_redis_cmd_t *last = NULL;
    for (pattern = 0; pattern <= 1; pattern++) {
        const char **names;
        size_t *lens, i;
        int n = 0, rc;
        if (r->nnames == 0)
            break;
        names = malloc(r->nnames * sizeof(*names));
        lens = malloc(r->nnames * sizeof(*lens));
        if (names == NULL || lens == NULL) {
            free(names);
            free(lens);
            return -1;
        }
        for (i = 0; i < r->nnames; i++) {
            if (r->names[i].pattern != pattern)
                continue;
            names[n] = r->names[i].name;
            lens[n++] = r->names[i].len;
        }
        rc = n == 0 ? 0
                    : rr_send_names(r, pattern ? "PSUBSCRIBE" : "SUBSCRIBE", n,
                                    names, lens, rr_sub_cb);
        free(names);
        free(lens);
        if (rc < 0)
            return -1;
        if (n > 0 && (last = rr_subq_push(r, (size_t)n)) == NULL)
            return -1;
    }
    if (last != NULL) {
        last->ready = 1;
        r->ready_wait = 1;
    }
    return 0;
}

/* Queues the handshake on a fresh context. Returns 0 or -1. */
static int rr_handshake(rt_redis_t *r)
{
    const char *argv[3];
    size_t lens[3];
    char db[24];
    int n;
    r->hs_left = 0;
    if (r->password != NULL) {
        n = 0;
        argv[n] = "AUTH";
        lens[n++] = 4;
        if (r->user != NULL) {
            argv[n] = r->user;
            lens[n++] = strlen(r->user);
        }
        argv[n] = r->password;
        lens[n++] = strlen(r->password);
        if (redisAsyncCommandArgv(r->ac, rr_hs_cb, r, n, argv, lens) !=
            REDIS_OK)
            return -1;
        r->hs_left++;
    }
    if (!r->subscriber && r->db > 0) {
        argv[0] = "SELECT";
        lens[0] = 6;
        argv[1] = db;
        lens[1] = (size_t)snprintf(db, sizeof(db), "%d", r->db);
        if (redisAsyncCommandArgv(r->ac, rr_hs_cb, r, 2, argv, lens) !=
            REDIS_OK)
            return -1;
        r->hs_left++;
    }
    /* PING proves the server answers (not LOADING, not over maxclients). */
    argv[0] = "PING";
    lens[0] = 4;
    if (redisAsyncCommandArgv(r->ac, rr_hs_cb, r, 1, argv, lens) != REDIS_OK)
        return -1;
    r->hs_left++;
    if (r->subscriber)
        return rr_resubscribe(r);
    return 0;
}

/* Connects to ip (NULL: the unix socket path) and sends the handshake. */
static void rr_open(rt_redis_t *r, const char *ip)
{
    redisAsyncContext *ac;
    rr_ev_t *p;
    int rc, bad;

    ac = r->path ? redisAsyncConnectUnix(r->path)
                 : redisAsyncConnect(ip, r->port);
    if (ac == NULL) {
        rr_lost(r, RT_ENOMEM, NULL);
        return;
    }
    bad = ac->c.err != 0;
    /* Keepalive notices a peer that vanished without a reset. On failure
     * it sets ac->c.errstr like a failed connect. */
    if (!bad && r->path == NULL)
        bad = redisEnableKeepAlive(&ac->c) != REDIS_OK;
    if (bad) {
        rr_lost(r, rr_code_of(ac->c.errstr, 0), ac->c.errstr);
        redisAsyncFree(ac); /* no hooks attached yet */
        return;
    }
    p = malloc(sizeof(*p));
    if (p == NULL) {
        redisAsyncFree(ac);
        rr_lost(r, RT_ENOMEM, NULL);
        return;
    }
    rc = uv_poll_init(r->loop, &p->poll, ac->c.fd);
    if (rc < 0) {
        free(p);
        redisAsyncFree(ac);
        rr_lost(r, RT_ECONNECT, uv_strerror(rc));
        return;
    }
    p->poll.data = p;
    p->ac = ac;
    p->events = 0;
    ac->data = r;
    ac->ev.data = p;
    ac->ev.addRead = rr_ev_add_read;
    ac->ev.delRead = rr_ev_del_read;
    ac->ev.addWrite = rr_ev_add_write;
    ac->ev.delWrite = rr_ev_del_write;
    ac->ev.cleanup = rr_ev_cleanup;
    r->ac = ac;
    r->refs++; /* released by the cleanup hook or rr_on_disconnect */
    if (redisAsyncSetDisconnectCallback(ac, rr_on_disconnect) != REDIS_OK ||
        redisAsyncSetConnectCallback(ac, rr_on_connect) != REDIS_OK ||
        rr_handshake(r) < 0)
        rr_fail(r, RT_ENOMEM, NULL); /* not in a callback: at once */
}

static void rr_lookup_cb(uv_getaddrinfo_t *req, int status,
                         struct addrinfo *res)
{
    rr_lookup_t *q = req->data;
    rt_redis_t *r = q->r;
    struct addrinfo *a, *pick = NULL;
    char ip[64]; /* INET6_ADDRSTRLEN is 46 */
    int rc;

    if (!r->closed && q->attempt == r->attempt && r->resolving) {
        r->resolving = 0;
        /* IPv4 first: "localhost" often resolves to ::1 first while Redis
         * listens on 127.0.0.1 only. */
        for (a = status == 0 ? res : NULL; a != NULL; a = a->ai_next) {
            if (pick == NULL ||
                (a->ai_family == AF_INET && pick->ai_family != AF_INET))
                pick = a;
        }
        if (status < 0)
            rr_lost(r, RT_ERESOLVE, uv_strerror(status));
        else if (pick == NULL)
            rr_lost(r, RT_ERESOLVE, "no address");
        else if ((rc = uv_ip_name(pick->ai_addr, ip, sizeof(ip))) < 0)
            rr_lost(r, RT_ERESOLVE, uv_strerror(rc));
        else
            rr_open(r, ip);
    }
    uv_freeaddrinfo(res);
    free(q);
    rr_release(r);
}

static void rr_connect_timeout_cb(uv_timer_t *t)
{
    rt_redis_t *r = t->data;
    if (r->ac != NULL)
        rr_fail(r, RT_ETIMEOUT, NULL);
    else if (r->state == RT_REDIS_CONNECTING)
        rr_lost(r, RT_ETIMEOUT, NULL); /* the lookup's answer is ignored */
}

static int rr_is_ip(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return uv_inet_pton(AF_INET, host, buf) == 0 ||
           uv_inet_pton(AF_INET6, host, buf) == 0;
}

/* Starts an attempt (from the retry timer, so always from the loop). */
static void rr_attempt(rt_redis_t *r)
{
    struct addrinfo hints;
    rr_lookup_t *q;
    int rc;

    r->attempt++;
    r->state = RT_REDIS_CONNECTING;
    if (r->connect_timeout_ms > 0 &&
        uv_timer_start(&r->connect_timer, rr_connect_timeout_cb,
                       r->connect_timeout_ms, 0) < 0) {
        rr_lost(r, RT_ECONNECT, "cannot start a timer");
        return;
    }
    if (r->path != NULL || rr_is_ip(r->host)) {
        rr_open(r, r->host);
        return;
    }
    q = malloc(sizeof(*q));
    if (q == NULL) {
        rr_lost(r, RT_ENOMEM, NULL);
        return;
    }
    q->r = r;
    q->attempt = r->attempt;
    q->req.data = q;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = uv_getaddrinfo(r->loop, &q->req, rr_lookup_cb, r->host, NULL, &hints);
    if (rc < 0) {
        free(q);
        rr_lost(r, RT_ERESOLVE, uv_strerror(rc));
        return;
    }
    r->refs++; /* released by rr_lookup_cb */
    r->resolving = 1;
}

rt_redis_t *rt_redis_new(uv_loop_t *loop, const rt_redis_opts_t *o,
                         rt_redis_event_cb cb, void *data, int *err)
{
    rt_redis_t *r;
    int i;

    *err = RT_EINVAL;
    if ((o->host == NULL || *o->host == '\0') &&
        (o->path == NULL || *o->path == '\0'))
        return NULL;
    if (o->port < 0 || o->port > 65535 || o->db < 0)
        return NULL;
    *err = RT_ENOMEM;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    if (rr_dup(&r->path, o->path) < 0 ||
        (r->path == NULL && rr_dup(&r->host, o->host) < 0) ||
        rr_dup(&r->user, o->user) < 0 || rr_dup(&r->password, o->password) < 0)
        goto fail_strings;
    r->loop = loop;
    r->cb = cb;
    r->data = data;
    r->port = o->port ? o->port : RR_DEFAULT_PORT;
    r->db = o->db;
    r->reconnect = o->reconnect;
    r->subscriber = o->subscriber;
    r->connect_timeout_ms = o->connect_timeout_ms;
    r->command_timeout_ms = o->command_timeout_ms;
    r->backoff_min = o->backoff_min_ms ? o->backoff_min_ms : RR_BACKOFF_MIN_MS;
    r->backoff_max = o->backoff_max_ms ? o->backoff_max_ms : RR_BACKOFF_MAX_MS;
    if (r->backoff_max < r->backoff_min)
        r->backoff_max = r->backoff_min;
    r->backoff = r->backoff_min;
    r->max_queue = o->max_queue ? o->max_queue : RR_MAX_QUEUE;
    r->state = RT_REDIS_CONNECTING;
    r->refs = 1;
    for (i = 0; i < 3; i++) {
        if (uv_timer_init(loop, rr_timer(r, i)) < 0)
            goto fail_timers;
        rr_timer(r, i)->data = r;
        r->handles++;
    }
    /* The first attempt runs from the loop, so its result is an event. */
    if (uv_timer_start(&r->retry_timer, rr_retry_cb, 0, 0) < 0)
        goto fail_timers;
    return r;

fail_timers:
    if (r->handles > 0) {
        rr_close_handles(r); /* frees r */
        return NULL;
    }
fail_strings:
    rr_free(r);
    return NULL;
}

void rt_redis_close(rt_redis_t *r)
{
    rt_redis_cmd_t *c;
    if (r->closed)
        return;
    r->closed = 1;
    r->state = RT_REDIS_CLOSED;
    uv_timer_stop(&r->connect_timer);
    uv_timer_stop(&r->retry_timer);
    uv_timer_stop(&r->cmd_timer);
    while ((c = r->pending_head) != NULL) {
        rt_redis_reply_cb cb = c->cb;
        rr_pending_unlink(r, c);
        c->cb = NULL; /* hiredis still owns c: freed when its reply comes */
        cb(c, NULL, RT_ECLOSED, c->data);
    }
    rr_subq_flush(r);
    rr_msgs_free(r);
    r->resolving = 0; /* a lookup in flight keeps its reference */
    if (r->ac != NULL)
        redisAsyncFree(r->ac); /* deferred by hiredis inside a callback */
    rr_release(r);
}

/* ---- commands ----------------------------------------------------------- */

/* A reply (or NULL: the context is going away) for a command. */
static void rr_reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    rt_redis_cmd_t *c = privdata;
    (void)ac;
    if (c->cb != NULL) {
        rt_redis_reply_cb cb = c->cb;
        rr_pending_unlink(c->r, c);
        c->cb = NULL;
        cb(c, reply, reply ? 0 : RT_ECLOSED, c->data);
    }
    free(c);
}

static void rr_cmd_timer_cb(uv_timer_t *t)
{
    rt_redis_t *r = t->data;
    uint64_t now = uv_now(r->loop);
    rt_redis_cmd_t *c;
    while ((c = r->pending_head) != NULL && c->deadline <= now) {
        rt_redis_reply_cb cb = c->cb;
        rr_pending_unlink(r, c);
        c->cb = NULL; /* the late reply will be discarded */
        r->st.timeouts++;
        cb(c, NULL, RT_ETIMEOUT, c->data);
        if (r->closed)
            return;
    }
    if (c != NULL && uv_timer_start(&r->cmd_timer, rr_cmd_timer_cb,
                                    c->deadline - now, 0) < 0)
        rr_fail(r, RT_ECONNECTION, "cannot start a timer");
}

/* Commands that would change the connection's mode or state for every
 * caller, or behind hiredis' back (its reply matching breaks). */
static int rr_refused(int argc, const char **argv, const size_t *len)
{
    static const char *const words[] = {
        "SUBSCRIBE",    "PSUBSCRIBE",   "SSUBSCRIBE", "UNSUBSCRIBE",
        "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR",    "SELECT",
        "HELLO",        "RESET"};
    size_t i;
    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (rr_is(argv[0], len[0], words[i]))
            return 1;
    return argc > 1 && rr_is(argv[0], len[0], "CLIENT") &&
           rr_is(argv[1], len[1], "REPLY");
}

int rt_redis_command(rt_redis_t *r, int argc, const char **argv,
                     const size_t *argvlen, rt_redis_reply_cb cb, void *data,
                     rt_redis_cmd_t **out)
{
    rt_redis_cmd_t *c;
    if (r->closed)
        return RT_ECLOSED;
    if (argc < 1 || r->subscriber || rr_refused(argc, argv, argvlen))
        return RT_EINVAL;
    if (r->state != RT_REDIS_CONNECTED || !rr_ac_usable(r))
        return RT_EDISCONNECTED;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return RT_ENOMEM;
    c->r = r;
    c->cb = cb;
    c->data = data;
    c->kind = RR_CMD_USER;
    if (redisAsyncCommandArgv(r->ac, rr_reply_cb, c, argc, argv, argvlen) !=
        REDIS_OK) {
        free(c);
        return RT_ENOMEM;
    }
    c->prev = r->pending_tail;
    if (r->pending_tail)
        r->pending_tail->next = c;
    else
        r->pending_head = c;
    r->pending_tail = c;
    r->npending++;
    if (r->command_timeout_ms > 0) {
        /* A fresh clock: the loop time is stale after CPU work. */
        uv_update_time(r->loop);
        c->deadline = uv_now(r->loop) + r->command_timeout_ms;
        if (!uv_is_active((uv_handle_t *)&r->cmd_timer) &&
            uv_timer_start(&r->cmd_timer, rr_cmd_timer_cb,
                           r->command_timeout_ms, 0) < 0)
            c->deadline = 0; /* cannot happen with a valid timer */
    }
    if (out != NULL)
        *out = c;
    return 0;
}

void rt_redis_cmd_abort(rt_redis_cmd_t *cmd)
{
    if (cmd->cb == NULL)
        return;
    cmd->cb = NULL;
    /* A command stays with hiredis until its reply; a subscription stays
     * in the queue to count its confirmations. */
    if (cmd->kind == RR_CMD_USER)
        rr_pending_unlink(cmd->r, cmd);
}

/* ---- pub/sub ------------------------------------------------------------ */

static int rr_is_str(const redisReply *e)
{
    return e != NULL &&
           (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS);
}

/* Copies a message into the queue, dropping the oldest beyond the limit. */
static void rr_queue(rt_redis_t *r, const redisReply *pattern,
                     const redisReply *channel, const redisReply *payload)
{
    size_t plen = pattern ? pattern->len + 1 : 0;
    size_t total = sizeof(rt_redis_msg_t) + plen + channel->len + 1 +
                   payload->len + 1;
    rt_redis_msg_t *m;
    char *p;

    r->st.messages++;
    m = malloc(total);
    if (m == NULL) {
        r->st.drops++;
        return;
    }
    p = (char *)(m + 1);
    m->next = NULL;
    m->pattern = NULL;
    m->pattern_len = 0;
    if (pattern != NULL) {
        memcpy(p, pattern->str, pattern->len);
        p[pattern->len] = '\0';
        m->pattern = p;
        m->pattern_len = pattern->len;
        p += plen;
    }
    memcpy(p, channel->str, channel->len);
    p[channel->len] = '\0';
    m->channel = p;
    m->channel_len = channel->len;
    p += channel->len + 1;
    memcpy(p, payload->str, payload->len);
    p[payload->len] = '\0';
    m->payload = p;
    m->payload_len = payload->len;
    if (r->msg_tail)
        r->msg_tail->next = m;
    else
        r->msg_head = m;
    r->msg_tail = m;
    r->nqueued++;
    while (r->nqueued > r->max_queue) {
        rt_redis_shift(r);
        r->st.drops++;
    }
    rr_emit(r, RT_REDIS_EV_MESSAGE);
}

/* A confirmation of SUBSCRIBE or PSUBSCRIBE: counts it against the oldest
 * subscription waiting. */
static void rr_confirmed(rt_redis_t *r)
{
    rt_redis_cmd_t *e = r->subq_head;
    rt_redis_reply_cb cb;
    int ready;
    if (e == NULL || --e->left > 0)
        return;
    (void)rr_subq_pop(r);
    ready = e->ready;
    cb = e->cb;
    e->cb = NULL;
    if (cb != NULL)
        cb(e, NULL, 0, e->data);
    free(e);
    if (ready && !r->closed) {
        r->ready_wait = 0;
        if (r->hs_left == 0)
            rr_ready(r);
    }
}

/* Every reply on a subscribed connection; privdata is r. */
static void rr_sub_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    rt_redis_t *r = privdata;
    const redisReply *rep = reply, *const * e;
    (void)ac;
    if (rep == NULL || r->closed || rep->type != REDIS_REPLY_ARRAY ||
        rep->elements < 3 || !rr_is_str(rep->element[0]))
        return;
    e = (const redisReply *const *)rep->element;
    if (rr_is(e[0]->str, e[0]->len, "MESSAGE") && rep->elements == 3 &&
        rr_is_str(e[1]) && rr_is_str(e[2])) {
        /* Unsubscribed names may still have messages on the way. */
        if (rr_name_find(r, 0, e[1]->str, e[1]->len) >= 0)
            rr_queue(r, NULL, e[1], e[2]);
    } else if (rr_is(e[0]->str, e[0]->len, "PMESSAGE") && rep->elements == 4 &&
               rr_is_str(e[1]) && rr_is_str(e[2]) && rr_is_str(e[3])) {
        if (rr_name_find(r, 1, e[1]->str, e[1]->len) >= 0)
            rr_queue(r, e[1], e[2], e[3]);
    } else if (rr_is(e[0]->str, e[0]->len, "SUBSCRIBE") ||
               rr_is(e[0]->str, e[0]->len, "PSUBSCRIBE")) {
        rr_confirmed(r);
    }
}

int rt_redis_subscribe(rt_redis_t *r, int pattern, int n, const char **names,
                       const size_t *lens, rt_redis_reply_cb cb, void *data,
                       rt_redis_cmd_t **out)
{
    rt_redis_cmd_t *e;
    int i;
    if (r->closed)
        return RT_ECLOSED;
    if (!r->subscriber || n < 1)
        return RT_EINVAL;
    pattern = pattern != 0;
    for (i = 0; i < n; i++)
        if (rr_name_add(r, pattern, names[i], lens[i]) < 0)
            return RT_ENOMEM;
    /* Without a context the next handshake subscribes to them. */
    if (!rr_ac_usable(r))
        return RT_EDISCONNECTED;
    if (rr_send_names(r, pattern ? "PSUBSCRIBE" : "SUBSCRIBE", n, names, lens,
                      rr_sub_cb) < 0)
        return RT_ENOMEM;
    /* The confirmations must be counted whatever happens to the caller. */
    e = rr_subq_push(r, (size_t)n);
    if (e == NULL) {
        /* The count would be wrong: drop the context, from the loop (no
         * event may be sent from inside this call). */
        rr_fail_soon(r, RT_ENOMEM, NULL, 0);
        return RT_ENOMEM;
    }
    if (r->state != RT_REDIS_CONNECTED)
        return RT_EDISCONNECTED; /* sent; ready comes with the rest */
    e->cb = cb;
    e->data = data;
    if (out != NULL)
        *out = e;
    return 0;
}

int rt_redis_unsubscribe(rt_redis_t *r, int pattern, int n, const char **names,
                         const size_t *lens)
{
    const char **known;
    size_t *klens;
    int i, k = 0;
    long at;
    if (r->closed)
        return RT_ECLOSED;
    if (!r->subscriber || n < 1)
        return RT_EINVAL;
    pattern = pattern != 0;
    known = malloc((size_t)n * sizeof(*known));
    klens = malloc((size_t)n * sizeof(*klens));
    if (known == NULL || klens == NULL) {
        free(known);
        free(klens);
        return RT_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        at = rr_name_find(r, pattern, names[i], lens[i]);
        if (at < 0)
            continue; /* unknown or repeated: nothing to undo */
        rr_name_remove(r, (size_t)at);
        known[k] = names[i];
        klens[k++] = lens[i];
    }
    /* Only names sent on this context can be unsubscribed (hiredis 0.14
     * asserts on a confirmation without a name). If the command cannot be
     * sent, the server keeps sending and rr_sub_cb drops the messages. */
    if (k > 0 && rr_ac_usable(r) && (r->ac->c.flags & REDIS_SUBSCRIBED))
        (void)rr_send_names(r, pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE", k,
                            known, klens, NULL);
    free(known);
    free(klens);
    return 0;
}

const rt_redis_msg_t *rt_redis_peek(const rt_redis_t *r)
{
    return r->msg_head;
}

void rt_redis_shift(rt_redis_t *r)
{
    rt_redis_msg_t *m = r->msg_head;
    if (m == NULL)
        return;
    r->msg_head = m->next;
    if (r->msg_head == NULL)
        r->msg_tail = NULL;
    r->nqueued--;
    free(m);
}

/* ---- state -------------------------------------------------------------- */

rt_redis_state_t rt_redis_state(const rt_redis_t *r)
{
    return r->state;
}

const char *rt_redis_last_error(const rt_redis_t *r)
{
    return r->err.s ? r->err.s : "";
}

int rt_redis_last_code(const rt_redis_t *r)
{
    return r->err.s ? r->err_code : 0;
}

void rt_redis_stats(const rt_redis_t *r, rt_redis_stats_t *out)
{
    size_t i;
    *out = r->st;
    out->pending = r->npending;
    out->queued = r->nqueued;
    out->channels = out->patterns = 0;
    for (i = 0; i < r->nnames; i++) {
        if (r->names[i].pattern)
            out->patterns++;
        else
            out->channels++;
    }
}
