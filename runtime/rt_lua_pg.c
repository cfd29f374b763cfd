/* rt_lua_pg.c - the Lua face of the PostgreSQL engine (rt_pg.h).
 *
 *   native.pg_new(connect_timeout_ms, cancel_timeout_ms) -> conn
 *   conn:connect(conninfo) -> true | nil, err, word
 *   conn:exec(stmts, simple) -> {res, ...} | nil, err, info
 *   conn:wait_notify(timeout_ms | nil) -> channel, payload, pid
 *                                        | nil, "timeout" | "closed" | ...
 *   conn:close(), conn:status(), conn:check(), conn:pid(), conn:txstatus(),
 *   conn:pending()
 *
 * connect, exec and wait_notify yield the calling task. Cancelling the task
 * (or its deadline) goes through the op's cancel hook: a connect closes the
 * connection, a query is cancelled on the server (rt_pg_req_cancel) and
 * the task sees nil, "cancelled" / nil, "timeout".
 *
 * stmts is an array of statements, each {sql, p1, ..., pn, n = n} where a
 * parameter is a string or nil (SQL NULL); simple = true runs one statement
 * without parameters through the simple protocol (several statements in one
 * string allowed). The result is one res per statement (simple: per result):
 *   {rows = {{col = value, ...}, ...}, columns = {name, ...},
 *    affected = n, command = "INSERT", json = {name, ...} | nil}
 * Values are converted by type OID: bool -> boolean; int2, int4, int8, oid,
 * float4, float8, numeric -> number; everything else -> string (json and
 * jsonb too: their column names are listed in res.json so that chorus.db.pg
 * decodes them). SQL NULL leaves the key out.
 * Failures: nil, err, info where info.code is the SQLSTATE of a server
 * error (with severity, message, detail, hint, constraint, table, column,
 * schema, datatype, position, where, and index: the failing statement) or
 * a word of rt_err.h: "closed" (connection lost or closed), "invalid
 * request" (a NUL byte in the SQL or a parameter), "request failed" (no
 * SQLSTATE: libpq's own error, an aborted pipeline), "out of memory". */
#include "rt_lua_pg.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "rt_lua_util.h"
#include "rt_lua_wait.h"
#include "rt_pg.h"

#define LP_CONN_MT "chorus.db.pg.conn"

/* Notifications kept for a connection nobody waits on; beyond, the oldest
 * are dropped so a LISTEN without a reader cannot grow without bound. */
#define LP_MAX_NOTES 10000

typedef struct lp_conn lp_conn_t;

/* A task waiting on a connect or a query, in c->ops until its wait ends
 * (then freed: rt_lua_wait.h). */
typedef struct lp_op {
    rt_lua_wait_t wait;
    lp_conn_t *c;
    rt_pg_req_t *req; /* the query, owned by the engine; NULL: connect */
    struct lp_op *prev, *next;
} lp_op_t;

/* A task in wait_notify, c->waiter until its wait ends (then freed). */
typedef struct {
    rt_lua_wait_t wait;
    lp_conn_t *c;
} lp_wait_t;

/* A notification nobody waited for yet: channel and payload follow. */
typedef struct lp_note {
    struct lp_note *next;
    int pid;
    size_t channel_len, payload_len;
    char text[]; /* channel NUL payload NUL */
} lp_note_t;

/* The userdata of a connection. Nothing in it is anchored in the registry:
 * a task waiting on the connection has the userdata on its stack. */
struct lp_conn {
    rt_lua_sched_t *ls;
    rt_pg_t *pg;       /* the engine's connection; NULL once closed */
    lp_op_t *ops;      /* tasks waiting on a connect or a query */
    lp_wait_t *waiter; /* the task in wait_notify, or NULL */
    lp_note_t *notes, *notes_tail; /* queued notifications, oldest first */
    size_t nnotes;
    int lost; /* the engine reported the connection lost */
};

/* Arguments of the builders (run under lua_cpcall by rt_lua_wait_done). */
typedef struct {
    const rt_pg_result_t *res; /* lp_build_result */
    int code;                  /* lp_build_error, lp_build_connect */
    const char *msg;
    int ok;                        /* lp_build_connect: connected */
    const char *channel, *payload; /* lp_build_note */
    size_t channel_len, payload_len;
    int pid;
} lp_build_t;

static lp_conn_t *lp_check(lua_State *L)
{
    return luaL_checkudata(L, 1, LP_CONN_MT);
}

static void lp_link(lp_conn_t *c, lp_op_t *op)
{
    op->prev = NULL;
    op->next = c->ops;
    if (c->ops)
        c->ops->prev = op;
    c->ops = op;
}

static void lp_unlink(lp_op_t *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        op->c->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
}

/* ---- building results (under lua_cpcall on the main state) ------------ */

/* Pushes "word: msg" (or "word") for code (rt_err.h). */
static void lp_push_message(lua_State *L, int code, const char *msg)
{
    const char *word = rt_err_word(code);
    if (rt_err_detail(code, msg) != NULL)
        lua_pushfstring(L, "%s: %s", word, msg);
    else
        lua_pushstring(L, word);
}

/* Pushes nil, "word: msg" (or "word"), {code = word, message = msg}. */
static void lp_push_error(lua_State *L, int code, const char *msg)
{
    lua_pushnil(L);
    lp_push_message(L, code, msg);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, rt_err_word(code));
    lua_setfield(L, -2, "code");
    lua_pushstring(L, msg ? msg : "");
    lua_setfield(L, -2, "message");
}

static void lp_set_field(lua_State *L, const PGresult *r, int code,
                         const char *key)
{
    const char *v = PQresultErrorField(r, code);
    if (v != NULL) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, key);
    }
}

/* Pushes nil, message, info for a failed result (index: 1-based statement
 * number). */
static void lp_push_server_error(lua_State *L, const PGresult *r, int index)
{
    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *pos = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
    lua_pushnil(L);
    if (primary != NULL) {
        lua_pushstring(L, primary);
    } else {
        /* No fields: libpq's own error (e.g. a bad response). */
        size_t len;
        const char *m = PQresultErrorMessage(r);
        len = strlen(m);
        while (len > 0 && m[len - 1] == '\n')
            len--;
        lua_pushlstring(L, len ? m : "query failed", len ? len : 12);
    }
    lua_createtable(L, 0, 8);
    if (PQresultErrorField(r, PG_DIAG_SQLSTATE) != NULL) {
        lp_set_field(L, r, PG_DIAG_SQLSTATE, "code");
    } else {
        lua_pushstring(L, rt_err_word(RT_EFAILED));
        lua_setfield(L, -2, "code");
    }
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "message");
    lp_set_field(L, r, PG_DIAG_SEVERITY_NONLOCALIZED, "severity");
    lp_set_field(L, r, PG_DIAG_MESSAGE_DETAIL, "detail");
    lp_set_field(L, r, PG_DIAG_MESSAGE_HINT, "hint");
    lp_set_field(L, r, PG_DIAG_CONSTRAINT_NAME, "constraint");
    lp_set_field(L, r, PG_DIAG_TABLE_NAME, "table");
    lp_set_field(L, r, PG_DIAG_COLUMN_NAME, "column");
    lp_set_field(L, r, PG_DIAG_SCHEMA_NAME, "schema");
    lp_set_field(L, r, PG_DIAG_DATATYPE_NAME, "datatype");
    lp_set_field(L, r, PG_DIAG_CONTEXT, "where");
    if (pos != NULL) {
        lua_pushnumber(L, strtod(pos, NULL));
        lua_setfield(L, -2, "position");
    }
    lua_pushinteger(L, index);
    lua_setfield(L, -2, "index");
}

/* Type OIDs (pg_type.dat) converted to Lua numbers, booleans or marked as
 * JSON. */
enum {
    LP_BOOL = 16,
    LP_INT8 = 20,
    LP_INT2 = 21,
    LP_INT4 = 23,
    LP_OID = 26,
    LP_JSON = 114,
    LP_FLOAT4 = 700,
    LP_FLOAT8 = 701,
    LP_NUMERIC = 1700,
    LP_JSONB = 3802
};

static void lp_push_value(lua_State *L, const PGresult *r, int row, int col,
                          Oid type)
{
    const char *v = PQgetvalue(r, row, col);
    switch (type) {
    case LP_BOOL:
        lua_pushboolean(L, v[0] == 't');
        break;
    case LP_INT2:
    case LP_INT4:
    case LP_INT8:
    case LP_OID:
    case LP_FLOAT4:
    case LP_FLOAT8:
    case LP_NUMERIC:
        /* strtod reads NaN and Infinity too; int8 and numeric beyond 2^53
         * lose precision (cast to text in SQL to keep every digit). */
        lua_pushnumber(L, strtod(v, NULL));
        break;
    default:
        lua_pushlstring(L, v, (size_t)PQgetlength(r, row, col));
        break;
    }
}

/* Pushes the res table of one successful result. */
static void lp_push_res(lua_State *L, PGresult *r)
{
    int nf = PQnfields(r), nt = PQntuples(r), i, j, names, njson = 0;
    const char *tuples = PQcmdTuples(r), *cmd = PQcmdStatus(r);
    const char *sp;

    luaL_checkstack(L, nf + 8, "too many columns");
    lua_createtable(L, 0, 5);
    /* columns, and each name again on the stack for the rows */
    lua_createtable(L, nf, 0);
    names = lua_gettop(L) + 1;
    for (j = 0; j < nf; j++) {
        lua_pushstring(L, PQfname(r, j));
        lua_pushvalue(L, -1);
        lua_rawseti(L, names - 1, j + 1);
        if (PQftype(r, j) == LP_JSON || PQftype(r, j) == LP_JSONB)
            njson++;
    }
    lua_pushvalue(L, names - 1);
    lua_setfield(L, names - 2, "columns");
    lua_createtable(L, nt, 0);
    for (i = 0; i < nt; i++) {
        lua_createtable(L, 0, nf);
        for (j = 0; j < nf; j++) {
            if (PQgetisnull(r, i, j))
                continue;
            lua_pushvalue(L, names + j);
            lp_push_value(L, r, i, j, PQftype(r, j));
            lua_rawset(L, -3);
        }
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, names - 2, "rows");
    if (njson > 0) {
        int k = 1;
        lua_createtable(L, njson, 0);
        for (j = 0; j < nf; j++) {
            if (PQftype(r, j) == LP_JSON || PQftype(r, j) == LP_JSONB) {
                lua_pushvalue(L, names + j);
                lua_rawseti(L, -2, k++);
            }
        }
        lua_setfield(L, names - 2, "json");
    }
    lua_settop(L, names - 2);
    lua_pushnumber(L, *tuples ? strtod(tuples, NULL) : 0);
    lua_setfield(L, -2, "affected");
    sp = strchr(cmd, ' ');
    lua_pushlstring(L, cmd, sp ? (size_t)(sp - cmd) : strlen(cmd));
    lua_setfield(L, -2, "command");
}

/* The values for a finished query: {res, ...} | nil, err, info. */
static int lp_build_result(lua_State *L, void *arg)
{
    const rt_pg_result_t *res = ((lp_build_t *)arg)->res;
    size_t i;

    if (res->error != 0) {
        lp_push_error(L, res->error, res->message);
        return 3;
    }
    /* The first failure explains the others (PGRES_PIPELINE_ABORTED). */
    for (i = 0; i < res->nresults; i++) {
        ExecStatusType st = PQresultStatus(res->results[i]);
        if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR ||
            st == PGRES_BAD_RESPONSE) {
            lp_push_server_error(L, res->results[i], (int)i + 1);
            return 3;
        }
    }
    for (i = 0; i < res->nresults; i++) {
        if (PQresultStatus(res->results[i]) == PGRES_PIPELINE_ABORTED) {
            lp_push_error(L, RT_EFAILED, "the pipeline was aborted");
            return 3;
        }
    }
    lua_createtable(L, (int)res->nresults, 0);
    for (i = 0; i < res->nresults; i++) {
        lp_push_res(L, res->results[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

/* nil, "word: msg", {code = word, ...} */
static int lp_build_error(lua_State *L, void *arg)
{
    lp_build_t *b = arg;
    lp_push_error(L, b->code, b->msg);
    return 3;
}

/* true | nil, "word: msg", word */
static int lp_build_connect(lua_State *L, void *arg)
{
    lp_build_t *b = arg;
    if (b->ok) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lp_push_message(L, b->code, b->msg);
    lua_pushstring(L, rt_err_word(b->code));
    return 3;
}

/* channel, payload, pid */
static int lp_build_note(lua_State *L, void *arg)
{
    lp_build_t *b = arg;
    lua_pushlstring(L, b->channel, b->channel_len);
    lua_pushlstring(L, b->payload, b->payload_len);
    lua_pushinteger(L, b->pid);
    return 3;
}

/* ---- the engine's callbacks -------------------------------------------- */

/* Ends a wait_notify with the values build pushes. */
static void lp_wake_waiter(lp_conn_t *c, rt_lua_build_fn build, lp_build_t *b)
{
    lp_wait_t *w = c->waiter;
    c->waiter = NULL;
    rt_lua_wait_done(&w->wait, build, b);
}

/* Ends a wait_notify with nil and the word of code. */
static void lp_end_waiter(lp_conn_t *c, int code)
{
    lp_wait_t *w = c->waiter;
    c->waiter = NULL;
    rt_lua_wait_fail(&w->wait, code);
}

static void lp_on_connected(rt_pg_t *pg, int err, const char *msg, void *data)
{
    lp_conn_t *c = data;
    lp_op_t *op;
    lp_build_t b = {0};
    (void)pg;
    for (op = c->ops; op != NULL && op->req != NULL; op = op->next)
        ;
    if (op == NULL)
        return; /* nobody waits (cannot happen: cancel closes) */
    lp_unlink(op);
    b.ok = err == 0;
    b.code = err;
    b.msg = msg;
    rt_lua_wait_done(&op->wait, lp_build_connect, &b);
}

static void lp_on_notify(rt_pg_t *pg, const char *channel, const char *payload,
                         int pid, void *data)
{
    lp_conn_t *c = data;
    size_t cl = strlen(channel), pl = strlen(payload);
    lp_note_t *n;
    (void)pg;
    if (c->waiter != NULL) {
        lp_build_t b = {0};
        b.channel = channel;
        b.channel_len = cl;
        b.payload = payload;
        b.payload_len = pl;
        b.pid = pid;
        lp_wake_waiter(c, lp_build_note, &b);
        return;
    }
    if (cl > SIZE_MAX - sizeof(*n) - pl - 2)
        return;
    n = malloc(sizeof(*n) + cl + pl + 2);
    if (n == NULL)
        return; /* dropped: out of memory */
    n->next = NULL;
    n->pid = pid;
    n->channel_len = cl;
    n->payload_len = pl;
    memcpy(n->text, channel, cl + 1);
    memcpy(n->text + cl + 1, payload, pl + 1);
    if (c->notes_tail)
        c->notes_tail->next = n;
    else
        c->notes = n;
    c->notes_tail = n;
    if (++c->nnotes > LP_MAX_NOTES) {
        lp_note_t *old = c->notes;
        c->notes = old->next;
        free(old);
        c->nnotes--;
    }
}

static void lp_on_lost(rt_pg_t *pg, const char *msg, void *data)
{
    lp_conn_t *c = data;
    (void)pg;
    (void)msg;
    c->lost = 1;
    if (c->waiter != NULL)
        lp_end_waiter(c, RT_ECLOSED);
}

static const rt_pg_handlers_t lp_handlers = {lp_on_connected, lp_on_notify,
                                             lp_on_lost};

static void lp_on_done(rt_pg_req_t *req, const rt_pg_result_t *res, void *data)
{
    lp_op_t *op = data;
    lp_build_t b = {0};
    (void)req;
    lp_unlink(op);
    b.res = res;
    rt_lua_wait_done(&op->wait, lp_build_result, &b);
}

/* ---- wait hooks ---------------------------------------------------------- */

static void lp_op_cancel(rt_lua_wait_t *w, int why)
{
    lp_op_t *op = (lp_op_t *)w;
    lp_conn_t *c = op->c;
    (void)why;
    lp_unlink(op);
    if (op->req != NULL) {
        rt_pg_req_cancel(op->req);
    } else if (c->pg != NULL) {
        /* A half-open connection is of no use: close it. */
        rt_pg_close(c->pg);
        c->pg = NULL;
    }
}

static void lp_free(rt_lua_wait_t *w)
{
    free(w);
}

static const rt_lua_wait_vt_t lp_op_vt = {lp_op_cancel, lp_free, NULL};

static void lp_wait_cancel(rt_lua_wait_t *w, int why)
{
    (void)why;
    ((lp_wait_t *)w)->c->waiter = NULL;
}

/* Its own time limit ends it with nil, "timeout" (rt_lua_wait.h). */
static const rt_lua_wait_vt_t lp_wait_vt = {lp_wait_cancel, lp_free, NULL};

/* ---- methods ------------------------------------------------------------- */

/* Frees the queued notifications. */
static void lp_free_notes(lp_conn_t *c)
{
    while (c->notes != NULL) {
        lp_note_t *n = c->notes;
        c->notes = n->next;
        free(n);
    }
    c->notes_tail = NULL;
    c->nnotes = 0;
}

/* Closes the connection: waiting tasks get nil, "closed", ... */
static void lp_close(lp_conn_t *c)
{
    lp_build_t b = {0};
    if (c->pg != NULL) {
        rt_pg_close(c->pg); /* no engine callback after this */
        c->pg = NULL;
    }
    while (c->ops != NULL) {
        lp_op_t *op = c->ops;
        lp_unlink(op);
        b.code = RT_ECLOSED;
        b.msg = "the connection was closed";
        b.ok = 0;
        rt_lua_wait_done(&op->wait, op->req ? lp_build_error : lp_build_connect,
                         &b);
    }
    if (c->waiter != NULL)
        lp_end_waiter(c, RT_ECLOSED);
    lp_free_notes(c);
}

/* native.pg_new(connect_timeout_ms, cancel_timeout_ms) -> conn */
static int l_pg_new(lua_State *L)
{
    rt_lua_sched_t *ls = lua_touserdata(L, lua_upvalueindex(1));
    lua_Number ct = luaL_optnumber(L, 1, 0), kt = luaL_optnumber(L, 2, 0);
    rt_pg_opts_t o;
    lp_conn_t *c;

    luaL_argcheck(L, ct >= 0 && ct < 1e12, 1, "out of range");
    luaL_argcheck(L, kt >= 0 && kt < 1e12, 2, "out of range");
    o.connect_timeout_ms = (uint64_t)ct;
    o.cancel_timeout_ms = (uint64_t)kt;
    c = lua_newuserdata(L, sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->ls = ls;
    luaL_getmetatable(L, LP_CONN_MT);
    lua_setmetatable(L, -2);
    c->pg = rt_pg_new(ls->sched.loop, &lp_handlers, &o, c);
    if (c->pg == NULL)
        return luaL_error(L, "out of memory");
    return 1;
}

/* Suspends the current task on op for req (NULL: connect), started. Use
 * as `return lp_suspend(...)`. */
static int lp_suspend(lua_State *L, lp_conn_t *c, rt_lua_task_t *cur,
                      lp_op_t *op, rt_pg_req_t *req)
{
    rt_lua_wait_init(&op->wait, &lp_op_vt);
    op->c = c;
    op->req = req;
    lp_link(c, op);
    return rt_lua_wait_suspend(L, &op->wait, cur, -1);
}

/* conn:connect(conninfo) -> true | nil, err, word */
static int m_connect(lua_State *L)
{
    lp_conn_t *c = lp_check(L);
    const char *info = luaL_checkstring(L, 2);
    rt_lua_task_t *cur = rt_lua_current(L, c->ls, "pg connect");
    lp_op_t *op;
    int rc;

    luaL_checkstack(L, 4, "pg connect");
    if (c->pg == NULL || rt_pg_state(c->pg) != RT_PG_NEW)
        return luaL_error(L, "pg connect: connection already used");
    op = malloc(sizeof(*op));
    if (op == NULL)
        return luaL_error(L, "out of memory");
    rc = rt_pg_connect(c->pg, info);
    if (rc < 0) {
        free(op);
        rt_lua_fail(L, c->ls, rc);
        rt_lua_push_err(L, c->ls, rc);
        return 3;
    }
    return lp_suspend(L, c, cur, op, NULL);
}

/* Reads stmts (at index 2) into an array of rt_pg_stmt_t kept in a
 * userdata pushed on the stack (collected, so a raise leaks nothing).
 * Returns the array, or NULL with *bad set when a string holds a NUL. */
static rt_pg_stmt_t *lp_read_stmts(lua_State *L, size_t *count,
                                   const char **bad)
{
    size_t n = lua_objlen(L, 2), i, total = 0, size;
    rt_pg_stmt_t *stmts;
    const char **ptrs;

    luaL_argcheck(L, n > 0, 2, "no statements");
    for (i = 1; i <= n; i++) {
        lua_Integer np;
        lua_rawgeti(L, 2, (int)i);
        if (!lua_istable(L, -1))
            luaL_error(L, "pg exec: statement %d is not a table", (int)i);
        lua_getfield(L, -1, "n");
        np = lua_isnil(L, -1) ? 0 : luaL_checkinteger(L, -1);
        if (np < 0 || np > 65535)
            luaL_error(L, "pg exec: statement %d: bad parameter count", (int)i);
        total += (size_t)np;
        lua_pop(L, 2);
    }
    size = n * sizeof(*stmts) + total * sizeof(*ptrs);
    stmts = lua_newuserdata(L, size ? size : 1);
    ptrs = (const char **)(stmts + n);
    *bad = NULL;
    for (i = 0; i < n; i++) {
        rt_pg_stmt_t *s = &stmts[i];
        size_t len;
        int j;
        lua_rawgeti(L, 2, (int)i + 1);
        lua_rawgeti(L, -1, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "pg exec: statement %d: sql must be a string",
                       (int)i + 1);
        /* The strings stay alive: the stmts table holds them. */
        s->sql = lua_tolstring(L, -1, &len);
        if (strlen(s->sql) != len)
            *bad = "the SQL text contains a NUL byte";
        lua_getfield(L, -2, "n");
        s->nparams = (int)lua_tointeger(L, -1);
        lua_pop(L, 2);
        s->params = ptrs;
        for (j = 0; j < s->nparams; j++) {
            lua_rawgeti(L, -1, j + 2);
            if (lua_isnil(L, -1)) {
                ptrs[j] = NULL;
            } else if (lua_type(L, -1) == LUA_TSTRING) {
                ptrs[j] = lua_tolstring(L, -1, &len);
                if (strlen(ptrs[j]) != len)
                    *bad = "a parameter contains a NUL byte";
            } else {
                luaL_error(L,
                           "pg exec: statement %d: parameter %d must be "
                           "a string or nil",
                           (int)i + 1, j + 1);
            }
            lua_pop(L, 1);
        }
        ptrs += s->nparams;
        lua_pop(L, 1);
    }
    *count = n;
    return *bad ? NULL : stmts;
}

/* conn:exec(stmts, simple) -> {res, ...} | nil, err, info */
static int m_exec(lua_State *L)
{
    lp_conn_t *c = lp_check(L);
    int simple = lua_toboolean(L, 3);
    rt_lua_task_t *cur;
    rt_pg_stmt_t *stmts;
    rt_pg_req_t *req;
    const char *bad;
    lp_op_t *op;
    size_t n;
    int rc;

    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    luaL_checkstack(L, LUA_MINSTACK, "pg exec");
    cur = rt_lua_current(L, c->ls, "pg exec");
    stmts = lp_read_stmts(L, &n, &bad);
    if (stmts == NULL) {
        lp_push_error(L, RT_EINVAL, bad);
        return 3;
    }
    if (simple && (n != 1 || stmts[0].nparams != 0))
        return luaL_error(L, "pg exec: a simple query is one statement "
                             "without parameters");
    if (c->pg == NULL || c->lost) {
        lp_push_error(L, RT_ECLOSED, "the connection is closed");
        return 3;
    }
    op = malloc(sizeof(*op));
    if (op == NULL)
        return luaL_error(L, "out of memory");
    rc = rt_pg_exec(c->pg, stmts, n, simple, lp_on_done, op, &req);
    if (rc < 0) {
        free(op);
        if (rc == RT_ENOMEM)
            lp_push_error(L, RT_ENOMEM, "");
        else if (rc == RT_EINVAL)
            lp_push_error(L, RT_EINVAL, "bad statement");
        else
            lp_push_error(L, RT_ECLOSED, "the connection is not open");
        return 3;
    }
    lua_settop(L, 2); /* the engine copied what it keeps */
    return lp_suspend(L, c, cur, op, req);
}

/* conn:wait_notify(timeout_ms | nil) -> channel, payload, pid
 *                                    | nil, "timeout" | "closed" | "busy"
 *                                    | "cancelled" */
static int m_wait_notify(lua_State *L)
{
    lp_conn_t *c = lp_check(L);
    lua_Number ms = luaL_optnumber(L, 2, -1);
    rt_lua_task_t *cur = rt_lua_current(L, c->ls, "pg wait_notify");
    lp_wait_t *w;

    luaL_argcheck(L, ms < 1e12, 2, "out of range");
    if (c->notes != NULL) {
        lp_note_t *n = c->notes;
        c->notes = n->next;
        if (c->notes == NULL)
            c->notes_tail = NULL;
        c->nnotes--;
        /* Pushed before the free: a raise here would leak n otherwise. */
        lua_pushlstring(L, n->text, n->channel_len);
        lua_pushlstring(L, n->text + n->channel_len + 1, n->payload_len);
        lua_pushinteger(L, n->pid);
        free(n);
        return 3;
    }
    if (c->pg == NULL || c->lost)
        return rt_lua_fail(L, c->ls, RT_ECLOSED);
    if (c->waiter != NULL)
        return rt_lua_fail(L, c->ls, RT_EBUSY);
    if (ms == 0)
        return rt_lua_fail(L, c->ls, RT_ETIMEOUT);
    w = malloc(sizeof(*w));
    if (w == NULL)
        return luaL_error(L, "out of memory");
    rt_lua_wait_init(&w->wait, &lp_wait_vt);
    w->c = c;
    c->waiter = w;
    return rt_lua_wait_suspend(L, &w->wait, cur, ms);
}

/* conn:close(): idempotent; tasks waiting on it get nil, "closed". */
static int m_close(lua_State *L)
{
    lp_close(lp_check(L));
    return 0;
}

static const char *lp_state_name(lp_conn_t *c, rt_pg_state_t st)
{
    static const char *const names[] = {"new", "connecting", "ready", "closed"};
    if (c->pg == NULL || c->lost)
        return "closed";
    return names[st];
}

/* conn:status() -> "new" | "connecting" | "ready" | "closed" */
static int m_status(lua_State *L)
{
    lp_conn_t *c = lp_check(L);
    lua_pushstring(L,
                   lp_state_name(c, c->pg ? rt_pg_state(c->pg) : RT_PG_CLOSED));
    return 1;
}

/* conn:check() -> status, after reading what an idle socket holds (a
 * connection the server closed shows as "closed"). */
static int m_check(lua_State *L)
{
    lp_conn_t *c = lp_check(L);
    lua_pushstring(L,
                   lp_state_name(c, c->pg ? rt_pg_check(c->pg) : RT_PG_CLOSED));
    return 1;
}

/* conn:pid() -> server process id | nil */
static int m_pid(lua_State *L)
{
    lp_conn_t *c = lp_check(L);
    int pid = c->pg ? rt_pg_backend_pid(c->pg) : 0;
    if (pid == 0)
        return 0;
    lua_pushinteger(L, pid);
    return 1;
}

/* conn:txstatus() -> "idle" | "active" | "intrans" | "inerror" | "unknown" */
static int m_txstatus(lua_State *L)
{
    lp_conn_t *c = lp_check(L);
    lua_pushstring(L, c->pg && !c->lost ? rt_pg_txstatus(c->pg) : "unknown");
    return 1;
}

/* conn:pending() -> requests queued or running on the connection */
static int m_pending(lua_State *L)
{
    lp_conn_t *c = lp_check(L);
    lua_pushnumber(L, c->pg ? (lua_Number)rt_pg_pending(c->pg) : 0);
    return 1;
}

static int m_gc(lua_State *L)
{
    lp_close(lp_check(L));
    return 0;
}

static const luaL_Reg lp_methods[] = {
    {"connect", m_connect},
    {"exec", m_exec},
    {"wait_notify", m_wait_notify},
    {"close", m_close},
    {"status", m_status},
    {"check", m_check},
    {"pid", m_pid},
    {"txstatus", m_txstatus},
    {"pending", m_pending},
    {NULL, NULL},
};

void rt_lua_pg_open(lua_State *L, rt_lua_sched_t *ls, int table)
{
    rt_lua_new_class(L, LP_CONN_MT, lp_methods, NULL, m_gc);

    lua_pushlightuserdata(L, ls);
    lua_pushcclosure(L, l_pg_new, 1);
    lua_setfield(L, table, "pg_new");
}
