/* rt_pg.h - one PostgreSQL connection driven by libpq on a libuv loop.
 *
 * This is the engine half of the PostgreSQL binding: it knows nothing of
 * Lua. A connection is opened with PQconnectStart/PQconnectPoll under a
 * uv_poll on PQsocket (re-created when libpq changes sockets) and a connect
 * timeout, then runs in non-blocking mode.
 *
 * Requests run one at a time in the order they were made; later requests
 * wait in a queue. A request is either
 *   - a pipeline: N parameterized statements (text parameters, NULL
 *     allowed) sent with PQsendQueryParams in pipeline mode and ended by
 *     one PQpipelineSync. The segment is one implicit transaction: when a
 *     statement fails, the whole segment rolls back and the statements after
 *     it report PGRES_PIPELINE_ABORTED. A single query is a pipeline of 1.
 *   - a simple query: one SQL string without parameters that may hold
 *     several statements (PQsendQuery), for scripts such as migrations.
 * COPY is not supported: a statement that starts one closes the connection.
 *
 * LISTEN/NOTIFY notifications are delivered as they are read, also while
 * idle. A connection lost at any time is reported (never a crash): pending
 * requests complete with the error "closed" and the `lost` handler runs.
 *
 * Cancelling the running request sends a cancel request to the server from
 * the libuv threadpool (PQcancel blocks) and discards the request's results
 * as they arrive; the next request starts only when both are done (the
 * server has signalled the old query by then), so that cancel does not
 * hit it. If the results do not end within the cancel
 * timeout, the connection is closed instead (reported as lost).
 *
 * Callbacks are never called from inside the function that caused them
 * (rt_pg_connect, rt_pg_exec, rt_pg_req_cancel, rt_pg_close): they come
 * from the loop. When a function that takes a callback returns an error,
 * that callback will never be called. After rt_pg_close no callback at all
 * is called. A callback may call any function of this API, rt_pg_close
 * included. */
#ifndef RT_PG_H
#define RT_PG_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rt_err.h"

typedef struct rt_pg rt_pg_t;
typedef struct rt_pg_req rt_pg_req_t;

/* Errors are codes of rt_err.h (negative; 0 is success): RT_ENOMEM,
 * RT_EINVAL (bad arguments: too many parameters, ...), RT_ECLOSED (the
 * connection is lost, failed or closed), RT_EBUSY (already connecting or
 * connected), and for a connect attempt RT_ETIMEOUT, RT_EREFUSED and
 * RT_ECONNECT (any other reason, bad conninfo included). */

/* Connection states, as rt_pg_state reports them. */
typedef enum {
    RT_PG_NEW = 0,    /* created, rt_pg_connect not called yet */
    RT_PG_CONNECTING, /* connect in progress */
    RT_PG_READY,      /* connected (requests may be running) */
    RT_PG_CLOSED      /* failed to connect, lost, or closed */
} rt_pg_state_t;

typedef struct {
    /* The connect attempt ended. err is 0 on success, else RT_ETIMEOUT,
     * RT_EREFUSED, RT_ECONNECT or RT_ENOMEM; msg says more (libpq's
     * message) and is "" on success. Called exactly once per successful
     * rt_pg_connect. */
    void (*connected)(rt_pg_t *pg, int err, const char *msg, void *data);
    /* A NOTIFY arrived on a channel this session listens to. */
    void (*notify)(rt_pg_t *pg, const char *channel, const char *payload,
                   int pid, void *data);
    /* The established connection was lost (server gone, socket error,
     * protocol failure, cancel timeout). Called once, after every pending
     * request got its "closed" completion. May be NULL, like notify. */
    void (*lost)(rt_pg_t *pg, const char *msg, void *data);
} rt_pg_handlers_t;

typedef struct {
    uint64_t connect_timeout_ms; /* 0: no timeout */
    uint64_t cancel_timeout_ms;  /* 0: RT_PG_CANCEL_TIMEOUT_MS */
} rt_pg_opts_t;

/* How long a cancelled request may take to end before the connection is
 * closed instead: a server that cannot be reached for the cancel must not
 * keep the connection (and the requests queued on it) forever. */
#define RT_PG_CANCEL_TIMEOUT_MS 10000

/* One statement of a request. Pointers need to live only during rt_pg_exec:
 * the engine copies what it keeps. */
typedef struct {
    const char *sql;           /* NUL-terminated */
    int nparams;               /* 0..65535 */
    const char *const *params; /* nparams text values; NULL = SQL NULL */
} rt_pg_stmt_t;

/* The outcome of a request; valid only during the done callback. */
typedef struct {
    /* 0: the request ran (each result has its own status, server errors
     * included); RT_ECLOSED: the connection was lost or closed first;
     * RT_ENOMEM: a result was dropped for lack of memory. */
    int error;
    const char *message; /* libpq's message with error; "" otherwise */
    /* Pipeline: one entry per statement, in order; an entry is NULL when
     * the connection was lost before its result came. Simple query: every
     * result the server sent, in order. Freed by the engine after done. */
    PGresult *const *results;
    size_t nresults;
} rt_pg_result_t;

typedef void (*rt_pg_done_cb)(rt_pg_req_t *req, const rt_pg_result_t *res,
                              void *data);

/* Creates a connection object on loop (not connected). Returns NULL when
 * out of memory. h is copied; data is passed to every handler. */
rt_pg_t *rt_pg_new(uv_loop_t *loop, const rt_pg_handlers_t *h,
                   const rt_pg_opts_t *o, void *data);

/* Starts connecting with a libpq conninfo string or URI. Returns 0 (then
 * h->connected is called exactly once, later) or RT_ENOMEM /
 * RT_EBUSY. Host names are resolved by libpq synchronously: use IP
 * addresses where that matters. */
int rt_pg_connect(rt_pg_t *pg, const char *conninfo);

/* Closes the connection: pending requests are dropped without callbacks
 * (a running one is cancelled on the server, fire and forget), handlers
 * are never called again, handles are closed. Memory is freed by the
 * loop's close callbacks, so run the loop once more before uv_loop_close.
 * pg must not be used afterwards. */
void rt_pg_close(rt_pg_t *pg);

/* Queues a request: n statements as one pipeline sync segment, or (simple
 * non-zero) one statement without parameters sent with PQsendQuery. On
 * success returns 0, sets *out when out is not NULL, and cb is called once
 * when the request ends, unless it is cancelled or the connection closed.
 * Returns RT_EINVAL (n == 0, bad statement), RT_ECLOSED (not
 * connected), RT_EBUSY (still connecting) or RT_ENOMEM; cb is then never
 * called. */
int rt_pg_exec(rt_pg_t *pg, const rt_pg_stmt_t *stmts, size_t n, int simple,
               rt_pg_done_cb cb, void *data, rt_pg_req_t **out);

/* Cancels a request whose callback has not been called: its callback will
 * never be called. A queued request is just dropped; the running one is
 * cancelled on the server and its results are discarded (see above). */
void rt_pg_req_cancel(rt_pg_req_t *req);

/* On an idle connection, reads whatever the socket has now without waiting,
 * so that a connection the server has closed is seen at once (the loss is
 * still reported from the loop). Notifications read here are delivered
 * from here: the one exception to the rule above. A busy connection is
 * read by the loop anyway and is left alone. Returns the state. */
rt_pg_state_t rt_pg_check(rt_pg_t *pg);

rt_pg_state_t rt_pg_state(const rt_pg_t *pg);
/* The last error of the connection ("" if none). */
const char *rt_pg_error_message(const rt_pg_t *pg);
/* The server process id of the session, 0 when not connected. */
int rt_pg_backend_pid(const rt_pg_t *pg);
/* "idle", "active" (a request is running or being drained), "intrans",
 * "inerror" or "unknown" (not connected). */
const char *rt_pg_txstatus(const rt_pg_t *pg);
/* Requests queued or running, the one being drained included. */
size_t rt_pg_pending(const rt_pg_t *pg);

#endif
