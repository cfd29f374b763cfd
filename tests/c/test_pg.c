/* test_pg.c - unit tests of the PostgreSQL engine (rt_pg.c) against the
 * real server named by CHORUS_TEST_PG: connect, queries with parameters and
 * NULLs, pipelines and their atomicity, server errors with SQLSTATE, simple
 * multi-statement queries, queueing, LISTEN/NOTIFY, cancellation (and its
 * timeout), lost connections (busy, idle, rt_pg_check), COPY refusal,
 * refused / timed out / malformed connects, closing with work pending, and
 * that every handle is closed at the end. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt_pg.h"

#include "test_check.h"

static uv_loop_t loop;
static const char *url;

/* ---- one connection and what its handlers saw ------------------------- */

typedef struct {
    rt_pg_t *pg;
    int connected; /* the connected handler ran */
    char err[64];  /* its error word, "" on success */
    char msg[512];
    int lost;  /* the lost handler ran */
    int notes; /* notifications seen */
    char channel[64], payload[64];
    int note_pid;
} conn_t;

static void on_connected(rt_pg_t *pg, int err, const char *msg, void *data)
{
    conn_t *c = data;
    (void)pg;
    c->connected++;
    snprintf(c->err, sizeof(c->err), "%s", err ? rt_err_word(err) : "");
    snprintf(c->msg, sizeof(c->msg), "%s", msg);
}

static void on_notify(rt_pg_t *pg, const char *channel, const char *payload,
                      int pid, void *data)
{
    conn_t *c = data;
    (void)pg;
    c->notes++;
    snprintf(c->channel, sizeof(c->channel), "%s", channel);
    snprintf(c->payload, sizeof(c->payload), "%s", payload);
    c->note_pid = pid;
}

static void on_lost(rt_pg_t *pg, const char *msg, void *data)
{
    conn_t *c = data;
    (void)pg;
    c->lost++;
    snprintf(c->msg, sizeof(c->msg), "%s", msg);
}

static const rt_pg_handlers_t handlers = {on_connected, on_notify, on_lost};

/* ---- running the loop --------------------------------------------------- */

static int guard_fired;
static void guard_cb(uv_timer_t *t)
{
    (void)t;
    guard_fired = 1;
}

/* Runs the loop until *flag is non-zero or ms pass. Returns *flag. */
static int run_until(const int *flag, uint64_t ms)
{
    uv_timer_t guard;
    guard_fired = 0;
    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, guard_cb, ms, 0);
    while (!*flag && !guard_fired)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return *flag;
}

static void sleep_ms(uint64_t ms)
{
    int never = 0;
    run_until(&never, ms);
}

static void open_conn(conn_t *c, const char *conninfo, uint64_t timeout_ms,
                      uint64_t cancel_ms)
{
    rt_pg_opts_t o = {timeout_ms, cancel_ms};
    memset(c, 0, sizeof(*c));
    c->pg = rt_pg_new(&loop, &handlers, &o, c);
    CHECK(c->pg != NULL);
    CHECK(rt_pg_connect(c->pg, conninfo) == 0);
    CHECK(c->connected == 0); /* never from inside rt_pg_connect */
    run_until(&c->connected, 10000);
}

/* ---- one request and what came back ------------------------------------ */

typedef struct {
    int done;
    char error[32]; /* the word of res->error, "" when 0 */
    size_t nresults;
    ExecStatusType status[8];
    char value[8][64]; /* first value of each result, "<null>" if NULL */
    char sqlstate[8][8];
    char constraint[64];
    int ntuples[8];
    char cmdtuples[8][16];
    int order; /* completion order */
} req_t;

static int completions;

static void on_done(rt_pg_req_t *req, const rt_pg_result_t *res, void *data)
{
    req_t *r = data;
    size_t i;
    (void)req;
    r->done = 1;
    r->order = ++completions;
    snprintf(r->error, sizeof(r->error), "%s",
             res->error ? rt_err_word(res->error) : "");
    r->nresults = res->nresults;
    for (i = 0; i < res->nresults && i < 8; i++) {
        PGresult *p = res->results[i];
        const char *st;
        if (p == NULL) {
            r->status[i] = PGRES_FATAL_ERROR;
            continue;
        }
        r->status[i] = PQresultStatus(p);
        r->ntuples[i] = PQntuples(p);
        snprintf(r->cmdtuples[i], sizeof(r->cmdtuples[i]), "%s",
                 PQcmdTuples(p));
        if (PQntuples(p) > 0 && PQnfields(p) > 0)
            snprintf(r->value[i], sizeof(r->value[i]), "%s",
                     PQgetisnull(p, 0, 0) ? "<null>" : PQgetvalue(p, 0, 0));
        st = PQresultErrorField(p, PG_DIAG_SQLSTATE);
        snprintf(r->sqlstate[i], sizeof(r->sqlstate[i]), "%s", st ? st : "");
        st = PQresultErrorField(p, PG_DIAG_CONSTRAINT_NAME);
        if (st)
            snprintf(r->constraint, sizeof(r->constraint), "%s", st);
    }
}

static int exec1(conn_t *c, req_t *r, const char *sql, int n,
                 const char *const *params, rt_pg_req_t **out)
{
    rt_pg_stmt_t s = {sql, n, params};
    memset(r, 0, sizeof(*r));
    return rt_pg_exec(c->pg, &s, 1, 0, on_done, r, out);
}

/* Runs one statement to completion; returns the request's outcome. */
static req_t *query(conn_t *c, const char *sql, int n,
                    const char *const *params)
{
    static req_t r;
    CHECK(exec1(c, &r, sql, n, params, NULL) == 0);
    CHECK(r.done == 0);
    CHECK(run_until(&r.done, 10000));
    return &r;
}

/* ---- tests -------------------------------------------------------------- */

static void test_query_and_params(void)
{
    conn_t c;
    req_t *r;
    const char *params[3] = {"it's; DROP TABLE x; --", NULL, "42"};

    open_conn(&c, url, 5000, 0);
    CHECK(strcmp(c.err, "") == 0);
    CHECK(rt_pg_state(c.pg) == RT_PG_READY);
    CHECK(rt_pg_backend_pid(c.pg) > 0);
    CHECK(strcmp(rt_pg_txstatus(c.pg), "idle") == 0);

    r = query(&c, "SELECT 1 + 1", 0, NULL);
    CHECK(strcmp(r->error, "") == 0);
    CHECK(r->nresults == 1 && r->status[0] == PGRES_TUPLES_OK);
    CHECK(strcmp(r->value[0], "2") == 0);

    r = query(&c, "SELECT $1::text", 1, params);
    CHECK(strcmp(r->value[0], params[0]) == 0);
    r = query(&c, "SELECT $1::int IS NULL", 1, params + 1);
    CHECK(strcmp(r->value[0], "t") == 0);
    r = query(&c, "SELECT $1::int * 2", 1, params + 2);
    CHECK(strcmp(r->value[0], "84") == 0);
    r = query(&c, "SELECT NULL::int", 0, NULL);
    CHECK(strcmp(r->value[0], "<null>") == 0);

    /* A server error: the request ran; the result carries the SQLSTATE. */
    r = query(&c, "SELEC 1", 0, NULL);
    CHECK(strcmp(r->error, "") == 0);
    CHECK(r->status[0] == PGRES_FATAL_ERROR);
    CHECK(strcmp(r->sqlstate[0], "42601") == 0);
    r = query(&c, "SELECT 1/0", 0, NULL);
    CHECK(strcmp(r->sqlstate[0], "22012") == 0);
    /* ... and the connection goes on. */
    r = query(&c, "SELECT 'after'", 0, NULL);
    CHECK(strcmp(r->value[0], "after") == 0);

    /* Bad requests are refused up front; no callback. */
    {
        rt_pg_stmt_t s = {"SELECT 1", 70000, params};
        req_t bad;
        memset(&bad, 0, sizeof(bad));
        CHECK(rt_pg_exec(c.pg, &s, 1, 0, on_done, &bad, NULL) == RT_EINVAL);
        CHECK(rt_pg_exec(c.pg, &s, 0, 0, on_done, &bad, NULL) == RT_EINVAL);
        s.nparams = 1;
        CHECK(rt_pg_exec(c.pg, &s, 1, 1, on_done, &bad, NULL) == RT_EINVAL);
        sleep_ms(20);
        CHECK(bad.done == 0);
    }
    CHECK(c.lost == 0);
    rt_pg_close(c.pg);
}

static void test_pipeline(void)
{
    conn_t c;
    req_t r, *q;
    const char *one[1] = {"1"}, *two[1] = {"2"}, *three[1] = {"3"};
    rt_pg_stmt_t ok[3] = {{"INSERT INTO t VALUES ($1::int)", 1, one},
                          {"INSERT INTO t VALUES ($1::int)", 1, two},
                          {"SELECT count(*) FROM t", 0, NULL}};
    rt_pg_stmt_t bad[3] = {
        {"INSERT INTO t VALUES ($1::int)", 1, three},
        {"INSERT INTO t VALUES ($1::int)", 1, one}, /* duplicate key */
        {"SELECT count(*) FROM t", 0, NULL}};

    open_conn(&c, url, 5000, 0);
    q = query(&c, "CREATE TEMP TABLE t (id int CONSTRAINT t_pk PRIMARY KEY)", 0,
              NULL);
    CHECK(q->status[0] == PGRES_COMMAND_OK);

    memset(&r, 0, sizeof(r));
    CHECK(rt_pg_exec(c.pg, ok, 3, 0, on_done, &r, NULL) == 0);
    CHECK(run_until(&r.done, 10000));
    CHECK(strcmp(r.error, "") == 0 && r.nresults == 3);
    CHECK(r.status[0] == PGRES_COMMAND_OK && r.status[1] == PGRES_COMMAND_OK);
    CHECK(strcmp(r.cmdtuples[0], "1") == 0);
    CHECK(strcmp(r.value[2], "2") == 0);

    /* A failing statement rolls the whole segment back. */
    memset(&r, 0, sizeof(r));
    CHECK(rt_pg_exec(c.pg, bad, 3, 0, on_done, &r, NULL) == 0);
    CHECK(run_until(&r.done, 10000));
    CHECK(strcmp(r.error, "") == 0 && r.nresults == 3);
    CHECK(r.status[0] == PGRES_COMMAND_OK);
    CHECK(r.status[1] == PGRES_FATAL_ERROR);
    CHECK(strcmp(r.sqlstate[1], "23505") == 0);
    CHECK(strcmp(r.constraint, "t_pk") == 0);
    CHECK(r.status[2] == PGRES_PIPELINE_ABORTED);
    q = query(&c, "SELECT count(*) FROM t", 0, NULL);
    CHECK(strcmp(q->value[0], "2") == 0);

    /* Simple protocol: several statements, one result each. */
    memset(&r, 0, sizeof(r));
    {
        rt_pg_stmt_t s = {"SELECT 10; SELECT 20; SELECT 30", 0, NULL};
        CHECK(rt_pg_exec(c.pg, &s, 1, 1, on_done, &r, NULL) == 0);
    }
    CHECK(run_until(&r.done, 10000));
    CHECK(r.nresults == 3);
    CHECK(strcmp(r.value[0], "10") == 0 && strcmp(r.value[2], "30") == 0);

    /* A big pipeline: 1000 inserts in one segment. */
    {
        enum { N = 1000 };
        rt_pg_stmt_t *s = calloc(N, sizeof(*s));
        char(*vals)[16] = calloc(N, sizeof(*vals));
        const char **ps = calloc(N, sizeof(*ps));
        int i;
        CHECK(s && vals && ps);
        for (i = 0; s && vals && ps && i < N; i++) {
            snprintf(vals[i], sizeof(vals[i]), "%d", 100 + i);
            ps[i] = vals[i];
            s[i].sql = "INSERT INTO t VALUES ($1::int)";
            s[i].nparams = 1;
            s[i].params = &ps[i];
        }
        memset(&r, 0, sizeof(r));
        CHECK(rt_pg_exec(c.pg, s, N, 0, on_done, &r, NULL) == 0);
        free(s);
        free(vals);
        free(ps); /* the engine keeps copies */
        CHECK(run_until(&r.done, 20000));
        CHECK(r.nresults == N && strcmp(r.error, "") == 0);
        q = query(&c, "SELECT count(*) FROM t", 0, NULL);
        CHECK(strcmp(q->value[0], "1002") == 0);
    }
    rt_pg_close(c.pg);
}

/* Requests made together run in order; a queued one can be dropped. */
static void test_queue(void)
{
    conn_t c;
    req_t a, b, x, d;
    rt_pg_req_t *xr;
    open_conn(&c, url, 5000, 0);
    completions = 0;
    CHECK(exec1(&c, &a, "SELECT pg_sleep(0.05), 'a'", 0, NULL, NULL) == 0);
    CHECK(exec1(&c, &b, "SELECT 'b'", 0, NULL, NULL) == 0);
    CHECK(exec1(&c, &x, "SELECT 'x'", 0, NULL, &xr) == 0);
    CHECK(exec1(&c, &d, "SELECT 'd'", 0, NULL, NULL) == 0);
    CHECK(rt_pg_pending(c.pg) == 4);
    CHECK(strcmp(rt_pg_txstatus(c.pg), "active") == 0);
    rt_pg_req_cancel(xr);
    CHECK(rt_pg_pending(c.pg) == 3);
    CHECK(run_until(&d.done, 10000));
    CHECK(a.order == 1 && b.order == 2 && d.order == 3);
    CHECK(x.done == 0);
    CHECK(strcmp(b.value[0], "b") == 0);
    rt_pg_close(c.pg);
}

static void test_notify(void)
{
    conn_t c, other;
    req_t *q;
    open_conn(&c, url, 5000, 0);
    open_conn(&other, url, 5000, 0);
    q = query(&c, "LISTEN chan_test", 0, NULL);
    CHECK(q->status[0] == PGRES_COMMAND_OK);
    q = query(&other, "SELECT pg_notify('chan_test', 'hello')", 0, NULL);
    CHECK(q->status[0] == PGRES_TUPLES_OK);
    /* Delivered while c is idle. */
    CHECK(run_until(&c.notes, 5000));
    CHECK(strcmp(c.channel, "chan_test") == 0);
    CHECK(strcmp(c.payload, "hello") == 0);
    CHECK(c.note_pid == rt_pg_backend_pid(other.pg));
    /* Own notifications come with the result of the statement. */
    q = query(&c, "NOTIFY chan_test, 'self'", 0, NULL);
    CHECK(c.notes == 2 && strcmp(c.payload, "self") == 0);
    rt_pg_close(c.pg);
    rt_pg_close(other.pg);
}

static int sleeping(conn_t *admin, int pid)
{
    char buf[16];
    const char *p[1] = {buf};
    req_t *q;
    snprintf(buf, sizeof(buf), "%d", pid);
    q = query(admin,
              "SELECT count(*) FROM pg_stat_activity WHERE pid = "
              "$1::int AND query LIKE '%pg_sleep%' AND state = "
              "'active'",
              1, p);
    return strcmp(q->value[0], "1") == 0;
}

static void test_cancel(void)
{
    conn_t c, admin;
    req_t a, b;
    rt_pg_req_t *ar;
    uint64_t t0;
    int pid;

    open_conn(&c, url, 5000, 0);
    open_conn(&admin, url, 5000, 0);
    pid = rt_pg_backend_pid(c.pg);
    CHECK(exec1(&c, &a, "SELECT pg_sleep(10)", 0, NULL, &ar) == 0);
    sleep_ms(50);
    CHECK(sleeping(&admin, pid));
    uv_update_time(&loop);
    t0 = uv_now(&loop);
    rt_pg_req_cancel(ar);
    CHECK(exec1(&c, &b, "SELECT 'next'", 0, NULL, NULL) == 0);
    CHECK(run_until(&b.done, 5000));
    uv_update_time(&loop);
    CHECK(uv_now(&loop) - t0 < 2000);
    CHECK(a.done == 0);
    CHECK(strcmp(b.value[0], "next") == 0 && strcmp(b.error, "") == 0);
    CHECK(!sleeping(&admin, pid));
    CHECK(c.lost == 0);

    /* Cancelling inside a pipeline aborts the rest of the segment. */
    {
        rt_pg_stmt_t s[2] = {{"SELECT pg_sleep(10)", 0, NULL},
                             {"SELECT 2", 0, NULL}};
        memset(&a, 0, sizeof(a));
        CHECK(rt_pg_exec(c.pg, s, 2, 0, on_done, &a, &ar) == 0);
        sleep_ms(30);
        rt_pg_req_cancel(ar);
        CHECK(exec1(&c, &b, "SELECT 'again'", 0, NULL, NULL) == 0);
        CHECK(run_until(&b.done, 5000));
        CHECK(a.done == 0 && strcmp(b.value[0], "again") == 0);
    }
    rt_pg_close(c.pg);

    /* A cancelled request that does not end within the cancel timeout
     * costs the connection; what was queued behind it is "closed". */
    open_conn(&c, url, 5000, 1);
    CHECK(exec1(&c, &a, "SELECT pg_sleep(10)", 0, NULL, &ar) == 0);
    CHECK(exec1(&c, &b, "SELECT 'queued'", 0, NULL, NULL) == 0);
    sleep_ms(30);
    rt_pg_req_cancel(ar);
    CHECK(run_until(&c.lost, 5000));
    CHECK(b.done && strcmp(b.error, "closed") == 0);
    CHECK(a.done == 0);
    CHECK(strstr(c.msg, "did not end in time") != NULL);
    CHECK(rt_pg_state(c.pg) == RT_PG_CLOSED);
    CHECK(exec1(&c, &b, "SELECT 1", 0, NULL, NULL) == RT_ECLOSED);
    rt_pg_close(c.pg);
    sleep_ms(50); /* the fire-and-forget cancel lands */
    CHECK(!sleeping(&admin, pid));
    rt_pg_close(admin.pg);
}

static void terminate(conn_t *admin, int pid)
{
    char buf[16];
    const char *p[1] = {buf};
    req_t *q;
    snprintf(buf, sizeof(buf), "%d", pid);
    q = query(admin, "SELECT pg_terminate_backend($1::int)", 1, p);
    CHECK(strcmp(q->value[0], "t") == 0);
}

static void test_lost(void)
{
    conn_t c, admin;
    req_t a, b;

    open_conn(&admin, url, 5000, 0);

    /* Busy: the running and the queued request end "closed". */
    open_conn(&c, url, 5000, 0);
    CHECK(exec1(&c, &a, "SELECT pg_sleep(5)", 0, NULL, NULL) == 0);
    CHECK(exec1(&c, &b, "SELECT 2", 0, NULL, NULL) == 0);
    sleep_ms(30);
    terminate(&admin, rt_pg_backend_pid(c.pg));
    CHECK(run_until(&c.lost, 5000));
    CHECK(a.done && strcmp(a.error, "closed") == 0);
    CHECK(b.done && strcmp(b.error, "closed") == 0);
    CHECK(a.order < b.order);
    CHECK(strlen(c.msg) > 0);
    CHECK(rt_pg_state(c.pg) == RT_PG_CLOSED);
    CHECK(strcmp(rt_pg_txstatus(c.pg), "unknown") == 0);
    CHECK(rt_pg_backend_pid(c.pg) == 0);
    rt_pg_close(c.pg);

    /* Idle: seen by the loop. */
    open_conn(&c, url, 5000, 0);
    terminate(&admin, rt_pg_backend_pid(c.pg));
    CHECK(run_until(&c.lost, 5000));
    rt_pg_close(c.pg);

    /* Idle and not yet seen by the loop: rt_pg_check finds it. */
    open_conn(&c, url, 5000, 0);
    {
        int pid = rt_pg_backend_pid(c.pg);
        char cmd[256];
        /* Terminate without running our loop: psql from a shell. */
        snprintf(cmd, sizeof(cmd),
                 "psql -qAt '%s' -c 'SELECT pg_terminate_backend(%d)' "
                 ">/dev/null 2>&1",
                 url, pid);
        if (system(cmd) == 0) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL); /* the FIN reaches our socket */
            CHECK(rt_pg_check(c.pg) == RT_PG_CLOSED);
            CHECK(c.lost == 0); /* reported from the loop */
            CHECK(run_until(&c.lost, 5000));
        } else {
            fprintf(stderr, "test_pg: no psql, rt_pg_check part skipped\n");
        }
    }
    rt_pg_close(c.pg);

    /* rt_pg_check on a healthy idle connection changes nothing. */
    open_conn(&c, url, 5000, 0);
    CHECK(rt_pg_check(c.pg) == RT_PG_READY);
    CHECK(strcmp(query(&c, "SELECT 5", 0, NULL)->value[0], "5") == 0);

    /* COPY is refused by closing the connection. */
    CHECK(exec1(&c, &a, "COPY (SELECT 1) TO STDOUT", 0, NULL, NULL) == 0);
    CHECK(run_until(&a.done, 5000));
    CHECK(strcmp(a.error, "closed") == 0);
    CHECK(run_until(&c.lost, 5000));
    CHECK(strstr(c.msg, "COPY") != NULL);
    rt_pg_close(c.pg);
    rt_pg_close(admin.pg);
}

/* A server that accepts and never answers: the connect times out. */
static void on_silent_conn(uv_stream_t *server, int status)
{
    uv_tcp_t *client = malloc(sizeof(*client));
    (void)status;
    uv_tcp_init(&loop, client);
    if (uv_accept(server, (uv_stream_t *)client) == 0) {
        server->data = client; /* closed at the end of the test */
        return;
    }
    uv_close((uv_handle_t *)client, (uv_close_cb)free);
}

static void test_connect_failures(void)
{
    conn_t c;
    uv_tcp_t silent;
    struct sockaddr_in addr;
    char info[128];
    int len = sizeof(addr);

    /* Refused: nothing listens on port 1. */
    open_conn(&c, "postgresql://postgres@127.0.0.1:1/x", 5000, 0);
    CHECK(c.connected == 1);
    CHECK(strcmp(c.err, "connection refused") == 0);
    CHECK(strstr(c.msg, "refused") != NULL);
    CHECK(rt_pg_state(c.pg) == RT_PG_CLOSED);
    {
        req_t r;
        CHECK(exec1(&c, &r, "SELECT 1", 0, NULL, NULL) == RT_ECLOSED);
    }
    rt_pg_close(c.pg);

    /* Malformed conninfo. */
    open_conn(&c, "host=127.0.0.1 nosuchoption=1", 5000, 0);
    CHECK(strcmp(c.err, "connect failed") == 0);
    CHECK(strstr(c.msg, "nosuchoption") != NULL);
    rt_pg_close(c.pg);

    /* Timeout. */
    uv_tcp_init(&loop, &silent);
    silent.data = NULL;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    CHECK(uv_tcp_bind(&silent, (struct sockaddr *)&addr, 0) == 0);
    CHECK(uv_listen((uv_stream_t *)&silent, 8, on_silent_conn) == 0);
    uv_tcp_getsockname(&silent, (struct sockaddr *)&addr, &len);
    snprintf(info, sizeof(info), "host=127.0.0.1 port=%d user=x dbname=x",
             ntohs(addr.sin_port));
    open_conn(&c, info, 200, 0);
    CHECK(strcmp(c.err, "timeout") == 0);
    CHECK(strstr(c.msg, "200 ms") != NULL);
    rt_pg_close(c.pg);
    if (silent.data != NULL)
        uv_close((uv_handle_t *)silent.data, (uv_close_cb)free);
    uv_close((uv_handle_t *)&silent, NULL);

    /* Closed while connecting: no callback ever. */
    memset(&c, 0, sizeof(c));
    c.pg = rt_pg_new(&loop, &handlers, NULL, &c);
    CHECK(rt_pg_connect(c.pg, url) == 0);
    CHECK(rt_pg_connect(c.pg, url) == RT_EBUSY);
    rt_pg_close(c.pg);
    sleep_ms(50);
    CHECK(c.connected == 0);
}

/* Closing from a callback, and with requests pending: no more callbacks. */
static conn_t closing;
static void close_in_cb(rt_pg_req_t *req, const rt_pg_result_t *res, void *data)
{
    on_done(req, res, data);
    rt_pg_close(closing.pg);
}

static void test_close(void)
{
    req_t a, b;
    rt_pg_stmt_t s = {"SELECT 1", 0, NULL};

    open_conn(&closing, url, 5000, 0);
    memset(&a, 0, sizeof(a));
    CHECK(rt_pg_exec(closing.pg, &s, 1, 0, close_in_cb, &a, NULL) == 0);
    CHECK(exec1(&closing, &b, "SELECT 2", 0, NULL, NULL) == 0);
    CHECK(run_until(&a.done, 5000));
    sleep_ms(50);
    CHECK(b.done == 0);

    open_conn(&closing, url, 5000, 0);
    CHECK(exec1(&closing, &a, "SELECT pg_sleep(5)", 0, NULL, NULL) == 0);
    CHECK(exec1(&closing, &b, "SELECT 2", 0, NULL, NULL) == 0);
    rt_pg_close(closing.pg);
    sleep_ms(50);
    CHECK(a.done == 0 && b.done == 0 && closing.lost == 0);
}

static void walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    fprintf(stderr, "test_pg: handle left open: type %d\n", (int)h->type);
}

int main(void)
{
    url = getenv("CHORUS_TEST_PG");
    if (url == NULL || *url == '\0') {
        printf("test_pg: skipped (CHORUS_TEST_PG is not set)\n");
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);

    test_query_and_params();
    test_pipeline();
    test_queue();
    test_notify();
    test_cancel();
    test_lost();
    test_connect_failures();
    test_close();

    /* Nothing left open: close callbacks and cancels finish, then the loop
     * closes cleanly. */
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        uv_walk(&loop, walk_cb, NULL);
        test_failures++;
    }
    if (test_failures) {
        fprintf(stderr, "test_pg: %d check(s) failed\n", test_failures);
        return 1;
    }
    printf("test_pg: all checks passed\n");
    return 0;
}
