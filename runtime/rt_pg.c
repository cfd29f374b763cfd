/* rt_pg.c - one PostgreSQL connection driven by libpq on a libuv loop. */
#include "rt_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the timer is armed for; one at a time is ever needed. */
typedef enum {
    RT__T_NONE = 0,
    RT__T_CONNECT_TIMEOUT, /* the connect attempt takes too long */
    RT__T_CONNECT_REPORT,  /* report a connect failure found synchronously */
    RT__T_CANCEL_TIMEOUT,  /* a cancelled request takes too long to end */
    RT__T_LOST             /* report a lost connection from the loop */
} rt__timer_why_t;

/* A PQcancel running on the threadpool. Owns the PGcancel. pg is NULL when
 * nobody waits for the answer (fire and forget, or pg closed meanwhile). */
typedef struct rt__cancel {
    uv_work_t work;
    PGcancel *cancel;
    rt_pg_t *pg;
    char err[256]; /* PQcancel's message; it truncates to this size */
} rt__cancel_t;

struct rt_pg_req {
    rt_pg_t *pg;
    rt_pg_req_t *next; /* queue link */
    rt_pg_done_cb cb;  /* NULL once cancelled: results are discarded */
    void *data;
    int simple; /* PQsendQuery of stmts[0].sql */
    int sent;   /* sent to the server: it is the running request */
    int oom;    /* a result was dropped for lack of memory */
    size_t nstmts;
    rt_pg_stmt_t *stmts; /* copies; they and their strings live in arena */
    void *arena;
    PGresult **results; /* owned; pipeline: nstmts slots */
    size_t nresults, cap;
    size_t cur; /* pipeline: statement whose results come next */
};

struct rt_pg {
    uv_loop_t *loop;
    rt_pg_handlers_t h;
    void *data;
    PGconn *conn;    /* owned; NULL before connect and when closed */
    uv_poll_t *poll; /* owned (freed by its close cb); on poll_fd */
    int poll_fd;
    int poll_events;  /* events the poll was started with, 0: stopped */
    int want_write;   /* PQflush has more to send */
    uv_timer_t timer; /* see rt__timer_why_t */
    rt__timer_why_t timer_why;
    int handles; /* handles not yet through their close cb */
    rt_pg_state_t state;
    int broken;    /* lost; the loss is reported from the timer */
    int closed;    /* rt_pg_close called; freed when handles == 0 */
    int fail_code; /* connect failure to report (RT__T_CONNECT_*) */
    uint64_t connect_timeout_ms, cancel_timeout_ms;
    rt_pg_req_t *head, *tail; /* requests; head runs when head->sent */
    rt__cancel_t *cancel;     /* the cancel the next request waits for */
    char *errmsg;             /* owned copy of the last error, or NULL */
};

static void rt__on_io(uv_poll_t *p, int status, int events);
static void rt__on_timer(uv_timer_t *t);
static void rt__start_next(rt_pg_t *pg);
static void rt__fail(rt_pg_t *pg, const char *msg);

/* Server notices go nowhere (libpq's default prints them on stderr). */
static void rt__notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static void rt__maybe_free(rt_pg_t *pg)
{
    if (pg->closed && pg->handles == 0) {
        free(pg->errmsg);
        free(pg);
    }
}

static void rt__poll_closed(uv_handle_t *h)
{
    rt_pg_t *pg = h->data;
    free(h);
    pg->handles--;
    rt__maybe_free(pg);
}

static void rt__timer_closed(uv_handle_t *h)
{
    rt_pg_t *pg = h->data;
    pg->handles--;
    rt__maybe_free(pg);
}

/* Keeps a copy of msg (trailing newlines cut) as the last error. On out of
 * memory the previous message stays. */
static void rt__set_error(rt_pg_t *pg, const char *msg)
{
    size_t len = strlen(msg);
    char *copy;
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        len--;
    copy = malloc(len + 1);
    if (copy == NULL)
        return;
    memcpy(copy, msg, len);
    copy[len] = '\0';
    free(pg->errmsg);
    pg->errmsg = copy;
}

const char *rt_pg_error_message(const rt_pg_t *pg)
{
    return pg->errmsg ? pg->errmsg : "";
}

/* Closes the poll handle; libuv stops it at once, so libpq may close the
 * socket right after. */
static void rt__unwatch(rt_pg_t *pg)
{
    if (pg->poll != NULL) {
        uv_close((uv_handle_t *)pg->poll, rt__poll_closed);
        pg->poll = NULL;
        pg->poll_events = 0;
    }
}

/* Watches PQsocket for events, re-creating the poll handle when libpq has
 * moved to another socket. Returns 0 or a negative uv error. */
static int rt__watch(rt_pg_t *pg, int events)
{
    int fd = PQsocket(pg->conn), rc;
    if (fd < 0)
        return UV_EBADF;
    if (pg->poll != NULL && pg->poll_fd != fd)
        rt__unwatch(pg);
    if (pg->poll == NULL) {
        pg->poll = malloc(sizeof(*pg->poll));
        if (pg->poll == NULL)
            return UV_ENOMEM;
        rc = uv_poll_init(pg->loop, pg->poll, fd);
        if (rc < 0) {
            free(pg->poll);
            pg->poll = NULL;
            return rc;
        }
        pg->poll->data = pg;
        pg->handles++;
        pg->poll_fd = fd;
        pg->poll_events = 0;
    }
    if (events != pg->poll_events) {
        rc = uv_poll_start(pg->poll, events, rt__on_io);
        if (rc < 0)
            return rc;
        pg->poll_events = events;
    }
    return 0;
}

static void rt__arm(rt_pg_t *pg, rt__timer_why_t why, uint64_t ms)
{
    pg->timer_why = why;
    (void)uv_timer_start(&pg->timer, rt__on_timer, ms, 0);
}

static void rt__disarm(rt_pg_t *pg, rt__timer_why_t why)
{
    if (pg->timer_why == why) {
        uv_timer_stop(&pg->timer);
        pg->timer_why = RT__T_NONE;
    }
}

/* ---- requests ----------------------------------------------------------- */

static void rt__req_free(rt_pg_req_t *req)
{
    size_t i;
    for (i = 0; i < req->nresults; i++)
        PQclear(req->results[i]);
    free(req->results);
    free(req->arena);
    free(req);
}

/* Removes req from its queue. */
static void rt__unlink(rt_pg_t *pg, rt_pg_req_t *req)
{
    rt_pg_req_t **pp = &pg->head, *prev = NULL;
    while (*pp != NULL && *pp != req) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == NULL)
        return;
    *pp = req->next;
    if (pg->tail == req)
        pg->tail = prev;
    req->next = NULL;
}

/* Adds a to *total unless that overflows. Returns 0 or -1. */
static int rt__add(size_t *total, size_t a)
{
    if (a > SIZE_MAX - *total)
        return -1;
    *total += a;
    return 0;
}

/* Builds a request holding copies of the statements, or NULL (*rc says
 * why). */
static rt_pg_req_t *rt__req_new(const rt_pg_stmt_t *stmts, size_t n, int simple,
                                int *rc)
{
    size_t i, j, size = 0, nptr = 0;
    rt_pg_req_t *req;
    const char **ptrs;
    char *text;

    *rc = RT_EINVAL;
    if (n == 0 || stmts == NULL)
        return NULL;
    if (simple && (n != 1 || stmts[0].nparams != 0))
        return NULL;
    for (i = 0; i < n; i++) {
        if (stmts[i].sql == NULL || stmts[i].nparams < 0 ||
            stmts[i].nparams > 65535 ||
            (stmts[i].nparams > 0 && stmts[i].params == NULL))
            return NULL;
        if (rt__add(&size, strlen(stmts[i].sql) + 1) < 0)
            return NULL;
        for (j = 0; j < (size_t)stmts[i].nparams; j++) {
            const char *p = stmts[i].params[j];
            if (p != NULL && rt__add(&size, strlen(p) + 1) < 0)
                return NULL;
        }
        nptr += (size_t)stmts[i].nparams;
    }
    if (n > SIZE_MAX / sizeof(rt_pg_stmt_t) ||
        nptr > SIZE_MAX / sizeof(char *) ||
        rt__add(&size, n * sizeof(rt_pg_stmt_t)) < 0 ||
        rt__add(&size, nptr * sizeof(char *)) < 0)
        return NULL;

    *rc = RT_ENOMEM;
    req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->arena = malloc(size);
    req->cap = simple ? 4 : n;
    req->results = calloc(req->cap, sizeof(*req->results));
    if (req->arena == NULL || req->results == NULL) {
        rt__req_free(req);
        return NULL;
    }
    /* Layout: statements, parameter pointers, then the strings. */
    req->stmts = req->arena;
    ptrs = (const char **)(req->stmts + n);
    text = (char *)(ptrs + nptr);
    for (i = 0; i < n; i++) {
        size_t len = strlen(stmts[i].sql) + 1;
        rt_pg_stmt_t *s = &req->stmts[i];
        memcpy(text, stmts[i].sql, len);
        s->sql = text;
        text += len;
        s->nparams = stmts[i].nparams;
        s->params = ptrs;
        for (j = 0; j < (size_t)s->nparams; j++) {
            const char *p = stmts[i].params[j];
            if (p == NULL) {
                ptrs[j] = NULL;
                continue;
            }
            len = strlen(p) + 1;
            memcpy(text, p, len);
            ptrs[j] = text;
            text += len;
        }
        ptrs += s->nparams;
    }
    req->nstmts = n;
    req->simple = simple;
    if (!simple)
        req->nresults = n; /* slots, NULL until filled */
    *rc = 0;
    return req;
}

/* ---- cancel on the threadpool ------------------------------------------- */

/* A cancelled request is still running: its results are being discarded. */
static int rt__draining(const rt_pg_t *pg)
{
    return pg->head != NULL && pg->head->sent && pg->head->cb == NULL;
}

static void rt__cancel_work(uv_work_t *w)
{
    rt__cancel_t *c = w->data;
    /* Failure needs no handling: the cancel timeout closes the connection
     * if the request does not end anyway. */
    (void)PQcancel(c->cancel, c->err, (int)sizeof(c->err));
}

static void rt__cancel_done(uv_work_t *w, int status)
{
    rt__cancel_t *c = w->data;
    rt_pg_t *pg = c->pg;
    (void)status;
    PQfreeCancel(c->cancel);
    free(c);
    if (pg != NULL) {
        pg->cancel = NULL;
        if (!rt__draining(pg))
            rt__disarm(pg, RT__T_CANCEL_TIMEOUT);
        rt__start_next(pg); /* the next request waited for this */
    }
}

/* Sends a cancel request for the running query from the threadpool. With
 * attach, the next request waits until the cancel was delivered. Best
 * effort: on failure the cancel timeout still bounds the wait. */
static void rt__send_cancel(rt_pg_t *pg, int attach)
{
    rt__cancel_t *c;
    PGcancel *pc = PQgetCancel(pg->conn);
    if (pc == NULL)
        return;
    c = malloc(sizeof(*c));
    if (c == NULL) {
        PQfreeCancel(pc);
        return;
    }
    c->cancel = pc;
    c->pg = attach ? pg : NULL;
    c->err[0] = '\0';
    c->work.data = c;
    if (uv_queue_work(pg->loop, &c->work, rt__cancel_work, rt__cancel_done) <
        0) {
        PQfreeCancel(pc);
        free(c);
        return;
    }
    if (attach)
        pg->cancel = c;
}

/* ---- connecting --------------------------------------------------------- */

static int rt__connect_code(const char *msg)
{
    return strstr(msg, "Connection refused") ? RT_EREFUSED : RT_ECONNECT;
}

/* The connect attempt failed with code: drop the socket now and report
 * from the loop (now: we are in a loop callback; else via the timer). */
static void rt__connect_fail(rt_pg_t *pg, int code, const char *msg, int now)
{
    rt__set_error(pg, msg);
    rt__unwatch(pg);
    PQfinish(pg->conn);
    pg->conn = NULL;
    pg->fail_code = code;
    if (!now) {
        rt__arm(pg, RT__T_CONNECT_REPORT, 0);
        return;
    }
    rt__disarm(pg, RT__T_CONNECT_TIMEOUT);
    pg->state = RT_PG_CLOSED;
    pg->h.connected(pg, code, rt_pg_error_message(pg), pg->data);
}

/* One step of PQconnectPoll after the socket became ready. */
static void rt__connect_step(rt_pg_t *pg)
{
    PostgresPollingStatusType st;
    int rc;

    /* Stopped while libpq works: it may close this socket and open another
     * with the same number, which must be registered afresh. */
    uv_poll_stop(pg->poll);
    pg->poll_events = 0;
    st = PQconnectPoll(pg->conn);
    if (st == PGRES_POLLING_READING || st == PGRES_POLLING_WRITING) {
        rc = rt__watch(pg,
                       st == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE);
        if (rc < 0)
            rt__connect_fail(pg, RT_ECONNECT, uv_strerror(rc), 1);
        return;
    }
    if (st != PGRES_POLLING_OK) {
        const char *msg = PQerrorMessage(pg->conn);
        rt__connect_fail(pg, rt__connect_code(msg), msg, 1);
        return;
    }
    if (PQsetnonblocking(pg->conn, 1) != 0) {
        rt__connect_fail(pg, RT_ECONNECT, PQerrorMessage(pg->conn), 1);
        return;
    }
    rc = rt__watch(pg, UV_READABLE);
    if (rc < 0) {
        rt__connect_fail(pg, RT_ECONNECT, uv_strerror(rc), 1);
        return;
    }
    rt__disarm(pg, RT__T_CONNECT_TIMEOUT);
    pg->state = RT_PG_READY;
    pg->h.connected(pg, 0, "", pg->data);
}

/* ---- the connection at work --------------------------------------------- */

/* Watches for input always, and for writability while libpq has output
 * it could not send. */
static void rt__update_watch(rt_pg_t *pg)
{
    int rc;
    if (pg->state != RT_PG_READY || pg->broken || pg->closed)
        return;
    rc = rt__watch(pg, UV_READABLE | (pg->want_write ? UV_WRITABLE : 0));
    if (rc < 0)
        rt__fail(pg, uv_strerror(rc));
}

/* Sends what libpq has buffered. Returns 0, or -1 when the connection
 * failed. */
static int rt__flush(rt_pg_t *pg)
{
    int rc = PQflush(pg->conn);
    if (rc < 0) {
        rt__fail(pg, NULL);
        return -1;
    }
    pg->want_write = rc == 1;
    return 0;
}

/* The connection is lost. Stops all I/O now; the requests and the lost
 * handler are told from the timer, never from the caller's stack. msg NULL:
 * libpq's message. */
static void rt__fail(rt_pg_t *pg, const char *msg)
{
    if (pg->broken || pg->state != RT_PG_READY || pg->closed)
        return;
    pg->broken = 1;
    rt__set_error(pg, msg ? msg : PQerrorMessage(pg->conn));
    rt__unwatch(pg);
    uv_timer_stop(&pg->timer);
    rt__arm(pg, RT__T_LOST, 0);
}

/* From the timer: closes the socket, completes every request with
 * "closed", then calls the lost handler. */
static void rt__lost(rt_pg_t *pg)
{
    rt_pg_req_t *req;
    rt_pg_result_t res;

    pg->state = RT_PG_CLOSED;
    pg->broken = 0;
    if (pg->cancel != NULL) {
        pg->cancel->pg = NULL;
        pg->cancel = NULL;
    }
    PQfinish(pg->conn);
    pg->conn = NULL;
    while ((req = pg->head) != NULL) {
        rt__unlink(pg, req);
        if (req->cb != NULL) {
            res.error = RT_ECLOSED;
            res.message = rt_pg_error_message(pg);
            res.results = req->results;
            res.nresults = req->nresults;
            req->cb(req, &res, req->data);
        }
        rt__req_free(req);
        if (pg->closed)
            return;
    }
    if (pg->h.lost != NULL)
        pg->h.lost(pg, rt_pg_error_message(pg), pg->data);
}

/* Starts the head request if nothing runs and no cancel is in flight. */
static void rt__start_next(rt_pg_t *pg)
{
    rt_pg_req_t *req = pg->head;
    size_t i;
    int ok;

    if (req == NULL || req->sent || pg->cancel != NULL || pg->broken ||
        pg->closed || pg->state != RT_PG_READY)
        return;
    req->sent = 1;
    if (req->simple) {
        ok = PQsendQuery(pg->conn, req->stmts[0].sql);
    } else {
        ok = PQenterPipelineMode(pg->conn);
        for (i = 0; ok && i < req->nstmts; i++) {
            const rt_pg_stmt_t *s = &req->stmts[i];
            ok = PQsendQueryParams(pg->conn, s->sql, s->nparams, NULL,
                                   s->params, NULL, NULL, 0);
        }
        ok = ok && PQpipelineSync(pg->conn);
    }
    /* Sending only fails on a broken connection (the arguments were
     * checked), and libpq's state is unknown then: drop the connection. */
    if (!ok) {
        rt__fail(pg, NULL);
        return;
    }
    if (rt__flush(pg) == 0)
        rt__update_watch(pg);
}

/* The head request ended: tell its owner, free it, start the next one.
 * Returns 1 when processing may go on. */
static int rt__complete(rt_pg_t *pg, rt_pg_req_t *req)
{
    rt_pg_result_t res;
    rt__unlink(pg, req);
    /* The cancel timeout covers the drain and the cancel's own round trip:
     * the next request waits for both. */
    if (pg->cancel == NULL)
        rt__disarm(pg, RT__T_CANCEL_TIMEOUT);
    if (req->cb != NULL) {
        res.error = req->oom ? RT_ENOMEM : 0;
        res.message = req->oom ? "a result was dropped" : "";
        res.results = req->results;
        res.nresults = req->nresults;
        req->cb(req, &res, req->data);
    }
    rt__req_free(req);
    if (pg->closed || pg->broken || pg->state != RT_PG_READY)
        return 0;
    rt__start_next(pg);
    return !pg->broken;
}

/* Takes one PQgetResult value r for the running request. Returns 1 when
 * processing may go on. */
static int rt__take(rt_pg_t *pg, rt_pg_req_t *req, PGresult *r)
{
    ExecStatusType st;

    if (r == NULL) {
        if (req->simple)
            return rt__complete(pg, req);
        req->cur++; /* the end of one statement's results */
        return 1;
    }
    st = PQresultStatus(r);
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        PQclear(r);
        rt__fail(pg, "COPY is not supported");
        return 0;
    }
    if (st == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        if (!PQexitPipelineMode(pg->conn)) {
            rt__fail(pg, NULL);
            return 0;
        }
        return rt__complete(pg, req);
    }
    if (req->simple) {
        if (req->nresults == req->cap) {
            PGresult **grown = NULL;
            if (req->cap <= SIZE_MAX / 2 / sizeof(*grown))
                grown = realloc(req->results, 2 * req->cap * sizeof(*grown));
            if (grown == NULL) {
                req->oom = 1;
                PQclear(r);
                return 1;
            }
            req->results = grown;
            req->cap *= 2;
        }
        req->results[req->nresults++] = r;
    } else if (req->cur < req->nstmts && req->results[req->cur] == NULL) {
        req->results[req->cur] = r;
    } else {
        PQclear(r); /* a second result for one statement: not expected */
    }
    return 1;
}

/* Hands every notification read so far to the notify handler. Returns 1
 * when processing may go on. */
static int rt__deliver_notifies(rt_pg_t *pg)
{
    PGnotify *n;
    while (pg->conn != NULL && (n = PQnotifies(pg->conn)) != NULL) {
        if (pg->h.notify != NULL)
            pg->h.notify(pg, n->relname, n->extra ? n->extra : "", n->be_pid,
                         pg->data);
        PQfreemem(n);
        if (pg->closed || pg->broken)
            return 0;
    }
    return 1;
}

/* Parses what was read: notifications, and results of the running request
 * as far as they are complete. */
static void rt__process(rt_pg_t *pg)
{
    for (;;) {
        rt_pg_req_t *req;
        if (!rt__deliver_notifies(pg))
            return;
        req = pg->head;
        if (req == NULL || !req->sent || PQisBusy(pg->conn))
            break;
        if (!rt__take(pg, req, PQgetResult(pg->conn)))
            return;
    }
    if (PQstatus(pg->conn) == CONNECTION_BAD) {
        rt__fail(pg, NULL);
        return;
    }
    rt__update_watch(pg);
}

static void rt__on_io(uv_poll_t *p, int status, int events)
{
    rt_pg_t *pg = p->data;
    if (pg->closed)
        return;
    if (pg->state == RT_PG_CONNECTING) {
        rt__connect_step(pg);
        return;
    }
    if (pg->state != RT_PG_READY || pg->broken)
        return;
    if (status < 0) {
        /* libuv stopped the handle (POLLERR): let libpq find the error. */
        pg->poll_events = 0;
        events = UV_READABLE | (pg->want_write ? UV_WRITABLE : 0);
    }
    if ((events & UV_WRITABLE) && pg->want_write && rt__flush(pg) < 0)
        return;
    if ((events & UV_READABLE) && !PQconsumeInput(pg->conn)) {
        rt__fail(pg, NULL);
        return;
    }
    rt__process(pg);
}

static void rt__on_timer(uv_timer_t *t)
{
    rt_pg_t *pg = t->data;
    rt__timer_why_t why = pg->timer_why;
    char msg[96];

    pg->timer_why = RT__T_NONE;
    switch (why) {
    case RT__T_CONNECT_TIMEOUT:
        (void)snprintf(msg, sizeof(msg), "no connection after %llu ms",
                       (unsigned long long)pg->connect_timeout_ms);
        rt__connect_fail(pg, RT_ETIMEOUT, msg, 1);
        break;
    case RT__T_CONNECT_REPORT:
        pg->state = RT_PG_CLOSED;
        pg->h.connected(pg, pg->fail_code, rt_pg_error_message(pg), pg->data);
        break;
    case RT__T_CANCEL_TIMEOUT:
        rt__fail(pg, "a cancelled query did not end in time");
        break;
    case RT__T_LOST:
        rt__lost(pg);
        break;
    default:
        break;
    }
}

/* ---- public API --------------------------------------------------------- */

rt_pg_t *rt_pg_new(uv_loop_t *loop, const rt_pg_handlers_t *h,
                   const rt_pg_opts_t *o, void *data)
{
    rt_pg_t *pg = calloc(1, sizeof(*pg));
    if (pg == NULL)
        return NULL;
    if (uv_timer_init(loop, &pg->timer) < 0) {
        free(pg);
        return NULL;
    }
    pg->timer.data = pg;
    pg->handles = 1;
    pg->loop = loop;
    pg->h = *h;
    pg->data = data;
    pg->state = RT_PG_NEW;
    if (o != NULL) {
        pg->connect_timeout_ms = o->connect_timeout_ms;
        pg->cancel_timeout_ms = o->cancel_timeout_ms;
    }
    if (pg->cancel_timeout_ms == 0)
        pg->cancel_timeout_ms = RT_PG_CANCEL_TIMEOUT_MS;
    return pg;
}

int rt_pg_connect(rt_pg_t *pg, const char *conninfo)
{
    int rc;
    if (pg->state != RT_PG_NEW || pg->closed)
        return RT_EBUSY;
    pg->conn = PQconnectStart(conninfo);
    if (pg->conn == NULL)
        return RT_ENOMEM;
    PQsetNoticeProcessor(pg->conn, rt__notice, NULL);
    pg->state = RT_PG_CONNECTING;
    if (PQstatus(pg->conn) == CONNECTION_BAD) {
        const char *msg = PQerrorMessage(pg->conn);
        rt__connect_fail(pg, rt__connect_code(msg), msg, 0);
        return 0;
    }
    /* libpq's rule: the first PQconnectPoll waits for writability. */
    rc = rt__watch(pg, UV_WRITABLE);
    if (rc < 0) {
        rt__connect_fail(pg, RT_ECONNECT, uv_strerror(rc), 0);
        return 0;
    }
    if (pg->connect_timeout_ms > 0) {
        uv_update_time(pg->loop);
        rt__arm(pg, RT__T_CONNECT_TIMEOUT, pg->connect_timeout_ms);
    }
    return 0;
}

void rt_pg_close(rt_pg_t *pg)
{
    rt_pg_req_t *req;
    if (pg->closed)
        return;
    pg->closed = 1;
    if (pg->cancel != NULL) {
        pg->cancel->pg = NULL;
        pg->cancel = NULL;
    }
    /* A running query would go on on the server after we hang up. */
    if (pg->state == RT_PG_READY && !pg->broken && pg->head != NULL &&
        pg->head->sent)
        rt__send_cancel(pg, 0);
    while ((req = pg->head) != NULL) {
        pg->head = req->next;
        rt__req_free(req);
    }
    pg->tail = NULL;
    rt__unwatch(pg);
    uv_close((uv_handle_t *)&pg->timer, rt__timer_closed);
    if (pg->conn != NULL) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    pg->state = RT_PG_CLOSED;
}

int rt_pg_exec(rt_pg_t *pg, const rt_pg_stmt_t *stmts, size_t n, int simple,
               rt_pg_done_cb cb, void *data, rt_pg_req_t **out)
{
    rt_pg_req_t *req;
    int rc;

    if (pg->closed || pg->broken || pg->state == RT_PG_CLOSED)
        return RT_ECLOSED;
    if (pg->state != RT_PG_READY)
        return RT_EBUSY;
    if (cb == NULL)
        return RT_EINVAL;
    req = rt__req_new(stmts, n, simple, &rc);
    if (req == NULL)
        return rc;
    req->pg = pg;
    req->cb = cb;
    req->data = data;
    if (pg->tail != NULL)
        pg->tail->next = req;
    else
        pg->head = req;
    pg->tail = req;
    if (out != NULL)
        *out = req;
    rt__start_next(pg); /* a failure is reported from the loop */
    return 0;
}

void rt_pg_req_cancel(rt_pg_req_t *req)
{
    rt_pg_t *pg = req->pg;
    if (!req->sent) {
        rt__unlink(pg, req);
        rt__req_free(req);
        return;
    }
    if (req->cb == NULL)
        return; /* already cancelled */
    req->cb = NULL;
    if (pg->broken || pg->state != RT_PG_READY)
        return; /* the loss will free it */
    if (pg->cancel == NULL)
        rt__send_cancel(pg, 1);
    uv_update_time(pg->loop);
    rt__arm(pg, RT__T_CANCEL_TIMEOUT, pg->cancel_timeout_ms);
}

rt_pg_state_t rt_pg_check(rt_pg_t *pg)
{
    if (pg->state != RT_PG_READY || pg->broken || pg->closed ||
        pg->head != NULL)
        return rt_pg_state(pg); /* a busy connection is read anyway */
    /* Twice: a server that hung up usually sent a last message first, and
     * the end of the stream is only seen by the read after it. */
    if (!PQconsumeInput(pg->conn) || !rt__deliver_notifies(pg) ||
        !PQconsumeInput(pg->conn) || PQstatus(pg->conn) == CONNECTION_BAD) {
        rt__fail(pg, NULL);
        return rt_pg_state(pg);
    }
    rt__process(pg);
    return rt_pg_state(pg);
}

rt_pg_state_t rt_pg_state(const rt_pg_t *pg)
{
    return pg->broken || pg->closed ? RT_PG_CLOSED : pg->state;
}

int rt_pg_backend_pid(const rt_pg_t *pg)
{
    if (pg->state != RT_PG_READY || pg->broken || pg->conn == NULL)
        return 0;
    return PQbackendPID(pg->conn);
}

const char *rt_pg_txstatus(const rt_pg_t *pg)
{
    if (pg->state != RT_PG_READY || pg->broken || pg->conn == NULL)
        return "unknown";
    if (pg->head != NULL || pg->cancel != NULL)
        return "active";
    switch (PQtransactionStatus(pg->conn)) {
    case PQTRANS_IDLE:
        return "idle";
    case PQTRANS_ACTIVE:
        return "active";
    case PQTRANS_INTRANS:
        return "intrans";
    case PQTRANS_INERROR:
        return "inerror";
    default:
        return "unknown";
    }
}

size_t rt_pg_pending(const rt_pg_t *pg)
{
    size_t n = 0;
    const rt_pg_req_t *r;
    for (r = pg->head; r != NULL; r = r->next)
        n++;
    return n;
}
