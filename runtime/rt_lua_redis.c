/* rt_lua_redis.c - the Lua face of the Redis engine (rt_redis.h).
 *
 *   native.redis_open(opts) -> handle | nil, err, word
 *       opts: host, port, path, db, user, password, connect_timeout_ms,
 *       command_timeout_ms, reconnect, backoff_min_ms, backoff_max_ms,
 *       subscriber, max_queue (see rt_redis_opts_t). Yields until the first
 *       attempt ends: a failed first attempt closes the connection and
 *       returns its error ("connection refused", "timeout", "connect
 *       failed: WRONGPASS ...") and its word (rt_err.h).
 *   native.redis_command(h, name, arg...) -> reply | nil, err [, "redis"]
 *   native.redis_pipeline(h, {{name, arg...}, ...}) -> {reply...} | nil, err
 *   native.redis_subscribe(h, pattern, name...) -> true | nil, err
 *   native.redis_unsubscribe(h, pattern, name...) -> true | nil, "closed"
 *   native.redis_next(h, timeout_ms|nil, watch) -> msg | nil, why
 *       msg = {channel = s, payload = s, pattern = s|nil}; why is "timeout",
 *       "closed", "busy" (another task waits), a cancel reason, or with
 *       watch set, "connected"/"disconnected" when the state changed
 *       (also a change that came since the last watching call).
 *   native.redis_close(h)        pending waits get nil, "closed"
 *   native.redis_info(h) -> {state=, connected=, last_error=, counters...}
 *
 * Arguments are strings (binary safe) or numbers (integers are sent
 * without a decimal point). Replies: status and bulk -> string, integer ->
 * number (a decimal string beyond 2^53), nil -> lightuserdata NULL (the
 * same value as cjson.null), array -> table. An error reply is
 * `nil, message, "redis"` for a command, and {err = message} inside an
 * array or in a pipeline's results. Failures (words of rt_err.h):
 * "closed" (the connection closed or was lost while waiting, or the
 * handle was closed), "disconnected" (reconnecting now), "timeout",
 * "cancelled", "out of memory". Caller bugs (bad argument types, a
 * command refused on this kind of connection) raise.
 *
 * Every wait goes through rt_lua_wait.h. Values are built on the main
 * state under lua_cpcall (rt_lua_wait_done), so a memory error never
 * unwinds through hiredis or libuv; a failure pushes an interned word,
 * which allocates nothing. */
#include "rt_lua_redis.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_lua_wait.h"
#include "rt_redis.h"

#define LR_MT "chorus.db.redis"
/* Room for one number argument: "%.17g" needs at most 24 bytes. */
#define LR_NUMLEN 32
/* Integers up to 2^53 are exact in a Lua number. */
#define LR_MAX_EXACT 9007199254740992LL

/* The context of every function (its upvalue) is the scheduler's: its
 * interned words (rt_err.h) are pushed without allocating. */
typedef rt_lua_sched_t lr_ctx_t;

typedef struct lr_open lr_open_t;
typedef struct lr_next lr_next_t;

/* A handle (the userdata's memory). */
typedef struct {
    rt_redis_t *r; /* the engine connection; NULL once closed */
    lr_ctx_t *ctx;
    lr_open_t *opening; /* redis_open waiting for the first attempt */
    lr_next_t *next_w;  /* the task waiting in redis_next */
    int subscriber;
    int up;         /* connected, as last seen */
    int up_changed; /* up changed while no watcher waited */
} lr_conn_t;

/* redis_open's wait (conn->opening), freed when it ends. */
struct lr_open {
    rt_lua_wait_t wait;
    lr_conn_t *conn;
    int ud_ref; /* anchors the handle until the wait ends */
};

typedef struct lr_cmd_op lr_cmd_op_t;

/* One command of a wait; the engine callback's data. */
typedef struct {
    lr_cmd_op_t *op;
    rt_redis_cmd_t *h; /* pending in the engine, or NULL */
} lr_slot_t;

/* A command or pipeline wait, freed when it ends: by the last reply,
 * the first failure, or a cancel. */
struct lr_cmd_op {
    rt_lua_wait_t wait;
    lr_ctx_t *ctx;
    size_t n, left; /* slots, and replies still to come */
    int tbl_ref;    /* pipeline: its results table; LUA_NOREF: one command */
    lr_slot_t slots[];
};

/* A subscription's wait for its confirmations, freed when it ends. */
typedef struct {
    rt_lua_wait_t wait;
    lr_ctx_t *ctx;
    rt_redis_cmd_t *h;
} lr_sub_op_t;

/* redis_next's wait (conn->next_w), freed when it ends; timeout_ms is
 * the wait's own time limit. */
struct lr_next {
    rt_lua_wait_t wait;
    lr_conn_t *conn;
    int watch; /* also end on a change of the connected state */
};

/* A reply stored into a pipeline's results table (lr_store). */
typedef struct {
    lr_ctx_t *ctx;
    const redisReply *reply;
    int tbl_ref;
    size_t idx;
} lr_store_t;

/* Argument scratch: pointers, lengths and number texts of one command. */
typedef struct {
    const char **argv;
    size_t *lens;
    char *num;
} lr_args_t;

static void lr_close(lr_conn_t *conn);

static lr_ctx_t *lr_ctx(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* ---- replies to values --------------------------------------------------- */

/* Pushes a reply as one value (an error reply as {err = message}). Stack
 * depth grows with nesting, which hiredis bounds. */
static void lr_push_value(lua_State *L, const redisReply *r)
{
    size_t i;
    char buf[24];
    luaL_checkstack(L, 4, "redis reply nested too deep");
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        if (r->integer >= -LR_MAX_EXACT && r->integer <= LR_MAX_EXACT) {
            lua_pushnumber(L, (lua_Number)r->integer);
        } else {
            int n = snprintf(buf, sizeof(buf), "%lld", r->integer);
            lua_pushlstring(L, buf, n > 0 ? (size_t)n : 0);
        }
        break;
    case REDIS_REPLY_ERROR:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, r->str, r->len);
        lua_setfield(L, -2, "err");
        break;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, r->elements > INT_MAX ? INT_MAX : (int)r->elements,
                        0);
        for (i = 0; i < r->elements; i++) {
            lr_push_value(L, r->element[i]);
            lua_rawseti(L, -2, (int)(i + 1));
        }
        break;
    default: /* REDIS_REPLY_NIL */
        lua_pushlightuserdata(L, NULL);
        break;
    }
}

static void lr_push_msg(lua_State *L, const rt_redis_msg_t *m)
{
    lua_createtable(L, 0, 3);
    lua_pushlstring(L, m->channel, m->channel_len);
    lua_setfield(L, -2, "channel");
    lua_pushlstring(L, m->payload, m->payload_len);
    lua_setfield(L, -2, "payload");
    if (m->pattern != NULL) {
        lua_pushlstring(L, m->pattern, m->pattern_len);
        lua_setfield(L, -2, "pattern");
    }
}

/* Builders run by rt_lua_wait_done (see the header comment). */

/* A command's reply: value | nil, message, "redis". */
static int lr_build_reply(lua_State *L, void *arg)
{
    const redisReply *r = ((lr_store_t *)arg)->reply;
    if (r->type != REDIS_REPLY_ERROR) {
        lr_push_value(L, r);
        return 1;
    }
    lua_pushnil(L);
    lua_pushlstring(L, r->str, r->len);
    lua_pushliteral(L, "redis"); /* the kind: an error reply */
    return 3;
}

/* A message for redis_next. */
static int lr_build_msg(lua_State *L, void *arg)
{
    lr_push_msg(L, arg);
    return 1;
}

/* nil, message, word: why the first attempt failed (redis_open). */
static int lr_build_open_fail(lua_State *L, void *arg)
{
    int code = rt_redis_last_code(arg);
    lua_pushnil(L);
    lua_pushstring(L, rt_redis_last_error(arg));
    lua_pushstring(L, rt_err_word(code ? code : RT_ECONNECT));
    return 3;
}

/* Under lua_cpcall: stores a pipeline's reply into its results table. */
static int lr_store_cp(lua_State *L)
{
    lr_store_t *b = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->tbl_ref);
    lr_push_value(L, b->reply);
    lua_rawseti(L, -2, (int)b->idx);
    return 0;
}

/* Stores from a loop callback. Returns 0, or -1 when out of memory. */
static int lr_store(lr_store_t *b)
{
    lua_State *L = b->ctx->L;
    if (lua_cpcall(L, lr_store_cp, b) != 0) {
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* ---- arguments ----------------------------------------------------------- */

static int lr_arg_ok(lua_State *L, int idx)
{
    int t = lua_type(L, idx);
    return t == LUA_TSTRING || t == LUA_TNUMBER;
}

/* Pushes scratch for n arguments (a userdata, so a raise leaks nothing). */
static void lr_args_new(lua_State *L, size_t n, lr_args_t *a)
{
    size_t one = sizeof(char *) + sizeof(size_t) + LR_NUMLEN;
    char *p;
    if (n == 0 || n > SIZE_MAX / one)
        luaL_error(L, "redis: too many arguments");
    p = lua_newuserdata(L, n * one);
    a->argv = (const char **)(void *)p;
    a->lens = (size_t *)(void *)(p + n * sizeof(char *));
    a->num = p + n * (sizeof(char *) + sizeof(size_t));
}

/* Sets argument i from the value at idx (checked by lr_arg_ok). Never
 * allocates: a string stays alive where it is held (stack or table), a
 * number is written into the scratch. */
static void lr_arg(lua_State *L, int idx, lr_args_t *a, size_t i)
{
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Number x = lua_tonumber(L, idx);
        char *buf = a->num + i * LR_NUMLEN;
        int n;
        if (x > -9.2e18 && x < 9.2e18 && (lua_Number)(long long)x == x)
            n = snprintf(buf, LR_NUMLEN, "%lld", (long long)x);
        else
            n = snprintf(buf, LR_NUMLEN, "%.17g", x);
        a->argv[i] = buf;
        a->lens[i] = n < 0 ? 0 : n >= LR_NUMLEN ? LR_NUMLEN - 1 : (size_t)n;
    } else {
        a->argv[i] = lua_tolstring(L, idx, &a->lens[i]);
    }
}

static lr_conn_t *lr_check(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, LR_MT);
}

/* ---- opening ------------------------------------------------------------- */

/* Ends redis_open's wait: the handle, or nil and the first error. The
 * handle stays anchored until the end: it is closed after the wait. */
static void lr_open_end(lr_conn_t *conn, int ok)
{
    lr_open_t *op = conn->opening;
    int ref = op->ud_ref;

    conn->opening = NULL;
    if (ok) {
        lua_rawgeti(rt_lua_wait_co(&op->wait), LUA_REGISTRYINDEX, ref);
        conn->up = 1;
        rt_lua_wait_wake(&op->wait, 1);
    } else {
        rt_lua_wait_done(&op->wait, lr_build_open_fail, conn->r);
        lr_close(conn); /* a failed first attempt is final */
    }
    luaL_unref(conn->ctx->L, LUA_REGISTRYINDEX, ref);
}

static void lr_open_cancel(rt_lua_wait_t *w, int why)
{
    lr_open_t *op = (lr_open_t *)w;
    lr_conn_t *conn = op->conn;
    (void)why;
    conn->opening = NULL;
    lr_close(conn);
    luaL_unref(conn->ctx->L, LUA_REGISTRYINDEX, op->ud_ref);
}

static void lr_free(rt_lua_wait_t *w)
{
    free(w);
}

static const rt_lua_wait_vt_t lr_open_vt = {lr_open_cancel, lr_free, NULL};

/* ---- redis_next ---------------------------------------------------------- */

static void lr_next_cancel(rt_lua_wait_t *w, int why)
{
    (void)why;
    ((lr_next_t *)w)->conn->next_w = NULL;
}

static const rt_lua_wait_vt_t lr_next_vt = {lr_next_cancel, lr_free, NULL};

/* Ends redis_next's wait with nil and the word of code. */
static void lr_next_end(lr_next_t *w, int code)
{
    w->conn->next_w = NULL;
    rt_lua_wait_fail(&w->wait, code);
}

/* A message arrived: hand the oldest to the waiting task, if any. */
static void lr_next_deliver(lr_conn_t *conn)
{
    lr_next_t *w = conn->next_w;
    const rt_redis_msg_t *m;
    if (w == NULL || (m = rt_redis_peek(conn->r)) == NULL)
        return;
    conn->next_w = NULL;
    if (rt_lua_wait_done(&w->wait, lr_build_msg, (void *)m) == 0)
        rt_redis_shift(conn->r);
}

/* ---- engine events and closing ------------------------------------------- */

static void lr_event(rt_redis_t *r, rt_redis_event_t ev, void *data)
{
    lr_conn_t *conn = data;
    lr_next_t *w = conn->next_w;
    (void)r;
    switch (ev) {
    case RT_REDIS_EV_CONNECTED:
    case RT_REDIS_EV_DISCONNECTED:
        if (conn->opening != NULL) {
            lr_open_end(conn, ev == RT_REDIS_EV_CONNECTED);
        } else if (conn->up != (ev == RT_REDIS_EV_CONNECTED)) {
            conn->up = !conn->up;
            conn->up_changed = 1;
            if (w != NULL && w->watch) {
                conn->up_changed = 0;
                lr_next_end(w, conn->up ? RT_ECONNECTED : RT_EDISCONNECTED);
            }
        }
        break;
    default:
        lr_next_deliver(conn);
        break;
    }
}

/* Closes the engine connection; every wait on it ends with "closed". */
static void lr_close(lr_conn_t *conn)
{
    rt_redis_t *r = conn->r;
    if (r == NULL)
        return;
    conn->r = NULL;
    rt_redis_close(r); /* command and subscription waits: "closed" */
    if (conn->next_w != NULL)
        lr_next_end(conn->next_w, RT_ECLOSED);
    if (conn->opening != NULL) {
        /* Only reachable from __gc at exit: no task waits then. */
        lr_open_t *op = conn->opening;
        conn->opening = NULL;
        luaL_unref(conn->ctx->L, LUA_REGISTRYINDEX, op->ud_ref);
        free(op);
    }
}

/* ---- command waits ------------------------------------------------------- */

static void lr_cmd_free(lr_cmd_op_t *op)
{
    if (op->tbl_ref != LUA_NOREF)
        luaL_unref(op->ctx->L, LUA_REGISTRYINDEX, op->tbl_ref);
    free(op);
}

static void lr_cmd_wait_free(rt_lua_wait_t *w)
{
    lr_cmd_free((lr_cmd_op_t *)w);
}

static void lr_cmd_abort_all(lr_cmd_op_t *op)
{
    size_t i;
    for (i = 0; i < op->n; i++) {
        if (op->slots[i].h != NULL) {
            rt_redis_cmd_abort(op->slots[i].h);
            op->slots[i].h = NULL;
        }
    }
}

static void lr_cmd_cancel(rt_lua_wait_t *w, int why)
{
    (void)why;
    lr_cmd_abort_all((lr_cmd_op_t *)w);
}

static const rt_lua_wait_vt_t lr_cmd_vt = {lr_cmd_cancel, lr_cmd_wait_free,
                                           NULL};

/* Ends the wait with nil and the word of code (the other commands are
 * abandoned). */
static void lr_cmd_fail(lr_cmd_op_t *op, int code)
{
    lr_cmd_abort_all(op);
    rt_lua_wait_fail(&op->wait, code);
}

static void lr_cmd_cb(rt_redis_cmd_t *cmd, const redisReply *reply, int err,
                      void *data)
{
    lr_slot_t *s = data;
    lr_cmd_op_t *op = s->op;
    lr_store_t b;
    (void)cmd;
    s->h = NULL;
    if (err != 0) {
        lr_cmd_fail(op, err);
        return;
    }
    b.ctx = op->ctx;
    b.reply = reply;
    if (op->tbl_ref == LUA_NOREF) {
        rt_lua_wait_done(&op->wait, lr_build_reply, &b);
        return;
    }
    b.tbl_ref = op->tbl_ref;
    b.idx = (size_t)(s - op->slots) + 1;
    if (lr_store(&b) < 0) {
        lr_cmd_fail(op, RT_ENOMEM);
        return;
    }
    if (--op->left > 0)
        return;
    lua_rawgeti(rt_lua_wait_co(&op->wait), LUA_REGISTRYINDEX, op->tbl_ref);
    rt_lua_wait_wake(&op->wait, 1);
}

/* A wait for n commands, or NULL when out of memory. */
static lr_cmd_op_t *lr_cmd_new(lr_ctx_t *ctx, size_t n)
{
    lr_cmd_op_t *op;
    size_t i;
    if (n > (SIZE_MAX - sizeof(*op)) / sizeof(lr_slot_t))
        return NULL;
    op = malloc(sizeof(*op) + n * sizeof(lr_slot_t));
    if (op == NULL)
        return NULL;
    rt_lua_wait_init(&op->wait, &lr_cmd_vt);
    op->ctx = ctx;
    op->n = op->left = n;
    op->tbl_ref = LUA_NOREF;
    for (i = 0; i < n; i++) {
        op->slots[i].op = op;
        op->slots[i].h = NULL;
    }
    return op;
}

/* A refused command is a caller bug: says why. */
static int lr_refused(lua_State *L, lr_conn_t *conn, const char *name)
{
    if (conn->subscriber)
        return luaL_error(L, "redis: a subscriber connection only takes "
                             "subscribe and unsubscribe");
    return luaL_error(L,
                      "redis: %s is not allowed on a shared connection "
                      "(it would change its state for every caller)",
                      name);
}

/* native.redis_command(h, name, arg...) */
static int l_redis_command(lua_State *L)
{
    lr_ctx_t *ctx = lr_ctx(L);
    lr_conn_t *conn = lr_check(L, 1);
    int n = lua_gettop(L) - 1, i, rc;
    rt_lua_task_t *cur;
    lr_cmd_op_t *op;
    lr_args_t a;

    if (n < 1)
        return luaL_argerror(L, 2, "command name expected");
    for (i = 2; i <= n + 1; i++)
        if (!lr_arg_ok(L, i))
            return luaL_argerror(L, i, "string or number expected");
    cur = rt_lua_current(L, ctx, "redis_command");
    luaL_checkstack(L, LUA_MINSTACK, "redis_command");
    if (conn->r == NULL)
        return rt_lua_fail(L, ctx, RT_ECLOSED);
    if (rt_lua_wait_stopped(L, cur))
        return 2;
    lr_args_new(L, (size_t)n, &a);
    for (i = 0; i < n; i++)
        lr_arg(L, i + 2, &a, (size_t)i);
    op = lr_cmd_new(ctx, 1);
    if (op == NULL)
        return luaL_error(L, "out of memory");
    rc = rt_redis_command(conn->r, n, a.argv, a.lens, lr_cmd_cb, &op->slots[0],
                          &op->slots[0].h);
    if (rc < 0) {
        free(op);
        if (rc == RT_EINVAL)
            return lr_refused(L, conn, lua_tostring(L, 2));
        return rt_lua_fail(L, ctx, rc);
    }
    return rt_lua_wait_suspend(L, &op->wait, cur, -1);
}

/* native.redis_pipeline(h, cmds): every command is sent before the first
 * reply is read; the results come in order. */
static int l_redis_pipeline(lua_State *L)
{
    lr_ctx_t *ctx = lr_ctx(L);
    lr_conn_t *conn = lr_check(L, 1);
    size_t n, i, j, m, maxargs = 0;
    rt_lua_task_t *cur;
    lr_cmd_op_t *op;
    lr_args_t a;
    int rc, ref;

    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    n = lua_objlen(L, 2);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, (int)i);
        if (!lua_istable(L, -1) || (m = lua_objlen(L, -1)) == 0)
            return luaL_error(L,
                              "redis_pipeline: command %d must be a "
                              "non-empty array",
                              (int)i);
        for (j = 1; j <= m; j++) {
            lua_rawgeti(L, -1, (int)j);
            if (!lr_arg_ok(L, -1))
                return luaL_error(L,
                                  "redis_pipeline: command %d, argument "
                                  "%d: string or number expected",
                                  (int)i, (int)j);
            lua_pop(L, 1);
        }
        if (m > maxargs)
            maxargs = m;
        lua_pop(L, 1);
    }
    cur = rt_lua_current(L, ctx, "redis_pipeline");
    luaL_checkstack(L, LUA_MINSTACK, "redis_pipeline");
    if (n == 0) {
        lua_newtable(L);
        return 1;
    }
    if (conn->r == NULL)
        return rt_lua_fail(L, ctx, RT_ECLOSED);
    if (rt_lua_wait_stopped(L, cur))
        return 2;
    lr_args_new(L, maxargs, &a); /* index 3 */
    lua_createtable(L, n > INT_MAX ? INT_MAX : (int)n, 0);
    ref = luaL_ref(L, LUA_REGISTRYINDEX);
    op = lr_cmd_new(ctx, n);
    if (op == NULL) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return luaL_error(L, "out of memory");
    }
    op->tbl_ref = ref;
    /* From here on nothing raises: commands are in flight. */
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, 2, (int)i + 1);
        m = lua_objlen(L, -1);
        for (j = 0; j < m; j++) {
            lua_rawgeti(L, -1, (int)j + 1);
            lr_arg(L, -1, &a, j); /* the command table keeps it alive */
            lua_pop(L, 1);
        }
        rc = rt_redis_command(conn->r, (int)m, a.argv, a.lens, lr_cmd_cb,
                              &op->slots[i], &op->slots[i].h);
        lua_pop(L, 1);
        if (rc < 0) {
            lr_cmd_abort_all(op);
            lr_cmd_free(op);
            if (rc == RT_EINVAL) {
                lua_rawgeti(L, 2, (int)i + 1);
                lua_rawgeti(L, -1, 1);
                return lr_refused(L, conn, lua_tostring(L, -1));
            }
            return rt_lua_fail(L, ctx, rc);
        }
    }
    return rt_lua_wait_suspend(L, &op->wait, cur, -1);
}

/* ---- pub/sub ------------------------------------------------------------- */

static void lr_sub_cb(rt_redis_cmd_t *cmd, const redisReply *reply, int err,
                      void *data)
{
    lr_sub_op_t *op = data;
    (void)cmd;
    (void)reply;
    if (err != 0) {
        rt_lua_wait_fail(&op->wait, err);
        return;
    }
    lua_pushboolean(rt_lua_wait_co(&op->wait), 1);
    rt_lua_wait_wake(&op->wait, 1);
}

static void lr_sub_cancel(rt_lua_wait_t *w, int why)
{
    (void)why;
    rt_redis_cmd_abort(((lr_sub_op_t *)w)->h); /* the subscription stays */
}

static const rt_lua_wait_vt_t lr_sub_vt = {lr_sub_cancel, lr_free, NULL};

/* Checks redis_(un)subscribe's arguments; fills a (pushed at the top). */
static int lr_names(lua_State *L, const char *fname, lr_args_t *a)
{
    lr_conn_t *conn = lr_check(L, 1);
    int n = lua_gettop(L) - 2, i;
    if (n < 1)
        return luaL_argerror(L, 3, "channel or pattern expected");
    for (i = 3; i <= n + 2; i++)
        if (!lr_arg_ok(L, i))
            return luaL_argerror(L, i, "string expected");
    if (!conn->subscriber)
        return luaL_error(L, "%s: not a subscriber connection", fname);
    luaL_checkstack(L, LUA_MINSTACK, fname);
    lr_args_new(L, (size_t)n, a);
    for (i = 0; i < n; i++)
        lr_arg(L, i + 3, a, (size_t)i);
    return n;
}

/* native.redis_subscribe(h, pattern, name...) */
static int l_redis_subscribe(lua_State *L)
{
    lr_ctx_t *ctx = lr_ctx(L);
    lr_conn_t *conn = lr_check(L, 1);
    int pattern = lua_toboolean(L, 2), n, rc;
    rt_lua_task_t *cur = rt_lua_current(L, ctx, "redis_subscribe");
    lr_sub_op_t *op;
    lr_args_t a;

    n = lr_names(L, "redis_subscribe", &a);
    if (conn->r == NULL)
        return rt_lua_fail(L, ctx, RT_ECLOSED);
    if (rt_lua_wait_stopped(L, cur))
        return 2;
    op = malloc(sizeof(*op));
    if (op == NULL)
        return luaL_error(L, "out of memory");
    rt_lua_wait_init(&op->wait, &lr_sub_vt);
    op->ctx = ctx;
    rc = rt_redis_subscribe(conn->r, pattern, n, a.argv, a.lens, lr_sub_cb, op,
                            &op->h);
    if (rc < 0) {
        free(op);
        return rt_lua_fail(L, ctx, rc);
    }
    return rt_lua_wait_suspend(L, &op->wait, cur, -1);
}

/* native.redis_unsubscribe(h, pattern, name...) */
static int l_redis_unsubscribe(lua_State *L)
{
    lr_ctx_t *ctx = lr_ctx(L);
    lr_conn_t *conn = lr_check(L, 1);
    int pattern = lua_toboolean(L, 2), n, rc;
    lr_args_t a;
    n = lr_names(L, "redis_unsubscribe", &a);
    if (conn->r == NULL)
        return rt_lua_fail(L, ctx, RT_ECLOSED);
    rc = rt_redis_unsubscribe(conn->r, pattern, n, a.argv, a.lens);
    if (rc < 0)
        return rt_lua_fail(L, ctx, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* native.redis_next(h, timeout_ms|nil, watch) */
static int l_redis_next(lua_State *L)
{
    lr_ctx_t *ctx = lr_ctx(L);
    lr_conn_t *conn = lr_check(L, 1);
    double ms = luaL_optnumber(L, 2, -1);
    int watch = lua_toboolean(L, 3);
    const rt_redis_msg_t *m;
    rt_lua_task_t *cur;
    lr_next_t *w;

    if (!conn->subscriber)
        return luaL_error(L, "redis_next: not a subscriber connection");
    if (!(ms < 1e12))
        return luaL_argerror(L, 2, "out of range");
    cur = rt_lua_current(L, ctx, "redis_next");
    luaL_checkstack(L, LUA_MINSTACK, "redis_next");
    if (conn->r == NULL)
        return rt_lua_fail(L, ctx, RT_ECLOSED);
    if ((m = rt_redis_peek(conn->r)) != NULL) {
        lr_push_msg(L, m); /* may raise: the message is still queued */
        rt_redis_shift(conn->r);
        return 1;
    }
    if (conn->next_w != NULL)
        return rt_lua_fail(L, ctx, RT_EBUSY);
    if (watch && conn->up_changed) {
        /* A change that came while the watcher was busy elsewhere. */
        conn->up_changed = 0;
        return rt_lua_fail(L, ctx, conn->up ? RT_ECONNECTED : RT_EDISCONNECTED);
    }
    if (rt_lua_wait_stopped(L, cur))
        return 2;
    if (ms == 0)
        return rt_lua_fail(L, ctx, RT_ETIMEOUT);
    w = malloc(sizeof(*w));
    if (w == NULL)
        return luaL_error(L, "out of memory");
    rt_lua_wait_init(&w->wait, &lr_next_vt);
    w->conn = conn;
    w->watch = watch;
    conn->next_w = w;
    return rt_lua_wait_suspend(L, &w->wait, cur, ms);
}

/* ---- the rest ------------------------------------------------------------ */

/* Reads opts[key] as a number in [0, max] (nil: 0). */
static double lr_opt_num(lua_State *L, const char *key, double max)
{
    double v;
    lua_getfield(L, 1, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "redis_open: %s must be a number", key);
    v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(v >= 0 && v <= max))
        luaL_error(L, "redis_open: %s out of range", key);
    return v;
}

/* Reads opts[key] as a string without NULs or nil, leaving it on the
 * stack so the pointer stays valid. */
static const char *lr_opt_str(lua_State *L, const char *key)
{
    size_t len;
    const char *s;
    lua_getfield(L, 1, key);
    if (lua_isnil(L, -1))
        return NULL;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "redis_open: %s must be a string", key);
    s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len)
        luaL_error(L, "redis_open: %s contains a NUL byte", key);
    return s;
}

/* native.redis_open(opts) */
static int l_redis_open(lua_State *L)
{
    lr_ctx_t *ctx = lr_ctx(L);
    rt_redis_opts_t o;
    rt_lua_task_t *cur;
    lr_conn_t *conn;
    lr_open_t *op;
    int err = 0, ref;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_checkstack(L, LUA_MINSTACK, "redis_open");
    cur = rt_lua_current(L, ctx, "redis_open");
    memset(&o, 0, sizeof(o));
    o.host = lr_opt_str(L, "host");
    o.path = lr_opt_str(L, "path");
    o.user = lr_opt_str(L, "user");
    o.password = lr_opt_str(L, "password");
    o.port = (int)lr_opt_num(L, "port", 65535);
    o.db = (int)lr_opt_num(L, "db", INT_MAX);
    o.connect_timeout_ms = (uint64_t)lr_opt_num(L, "connect_timeout_ms", 1e12);
    o.command_timeout_ms = (uint64_t)lr_opt_num(L, "command_timeout_ms", 1e12);
    o.backoff_min_ms = (uint64_t)lr_opt_num(L, "backoff_min_ms", 1e12);
    o.backoff_max_ms = (uint64_t)lr_opt_num(L, "backoff_max_ms", 1e12);
    o.max_queue = (size_t)lr_opt_num(L, "max_queue", 1e12);
    lua_getfield(L, 1, "reconnect");
    o.reconnect = lua_toboolean(L, -1);
    lua_getfield(L, 1, "subscriber");
    o.subscriber = lua_toboolean(L, -1);
    if (o.host == NULL && o.path == NULL)
        return luaL_error(L, "redis_open: host or path is required");
    if (rt_lua_wait_stopped(L, cur))
        return 2;

    conn = lua_newuserdata(L, sizeof(*conn));
    memset(conn, 0, sizeof(*conn));
    conn->ctx = ctx;
    conn->subscriber = o.subscriber;
    luaL_getmetatable(L, LR_MT);
    lua_setmetatable(L, -2);
    ref = luaL_ref(L, LUA_REGISTRYINDEX);
    op = malloc(sizeof(*op));
    if (op == NULL) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return luaL_error(L, "out of memory");
    }
    conn->r = rt_redis_new(ctx->sched.loop, &o, lr_event, conn, &err);
    if (conn->r == NULL) {
        free(op);
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return rt_lua_fail(L, ctx, err);
    }
    rt_lua_wait_init(&op->wait, &lr_open_vt);
    op->conn = conn;
    op->ud_ref = ref;
    conn->opening = op;
    return rt_lua_wait_suspend(L, &op->wait, cur, -1);
}

/* native.redis_close(h) */
static int l_redis_close(lua_State *L)
{
    lr_close(lr_check(L, 1));
    return 0;
}

static void lr_set_count(lua_State *L, const char *key, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, key);
}

/* native.redis_info(h) */
static int l_redis_info(lua_State *L)
{
    static const char *const states[] = {"connecting", "connected",
                                         "disconnected", "closed"};
    lr_conn_t *conn = lr_check(L, 1);
    rt_redis_stats_t st;
    rt_redis_state_t s = conn->r ? rt_redis_state(conn->r) : RT_REDIS_CLOSED;
    memset(&st, 0, sizeof(st));
    if (conn->r != NULL)
        rt_redis_stats(conn->r, &st);
    lua_createtable(L, 0, 14);
    lua_pushstring(L, states[s]);
    lua_setfield(L, -2, "state");
    lua_pushboolean(L, s == RT_REDIS_CONNECTED);
    lua_setfield(L, -2, "connected");
    lua_pushstring(L, conn->r ? rt_redis_last_error(conn->r) : "");
    lua_setfield(L, -2, "last_error");
    lr_set_count(L, "connects", (double)st.connects);
    lr_set_count(L, "reconnects", (double)st.reconnects);
    lr_set_count(L, "errors", (double)st.errors);
    lr_set_count(L, "timeouts", (double)st.timeouts);
    lr_set_count(L, "messages", (double)st.messages);
    lr_set_count(L, "drops", (double)st.drops);
    lr_set_count(L, "pending", (double)st.pending);
    lr_set_count(L, "queued", (double)st.queued);
    lr_set_count(L, "channels", (double)st.channels);
    lr_set_count(L, "patterns", (double)st.patterns);
    return 1;
}

static int lr_gc(lua_State *L)
{
    lr_close(lr_check(L, 1));
    return 0;
}

static int lr_tostring(lua_State *L)
{
    lr_conn_t *conn = lr_check(L, 1);
    lua_pushfstring(L, "chorus.db.redis%s: %p",
                    conn->subscriber ? " subscriber" : "", (void *)conn);
    return 1;
}

static const luaL_Reg lr_funcs[] = {
    {"redis_open", l_redis_open},
    {"redis_command", l_redis_command},
    {"redis_pipeline", l_redis_pipeline},
    {"redis_subscribe", l_redis_subscribe},
    {"redis_unsubscribe", l_redis_unsubscribe},
    {"redis_next", l_redis_next},
    {"redis_close", l_redis_close},
    {"redis_info", l_redis_info},
    {NULL, NULL},
};

void rt_lua_redis_open(lua_State *L, rt_lua_sched_t *ls, int table)
{
    luaL_newmetatable(L, LR_MT);
    lua_pushcfunction(L, lr_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, lr_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    lua_pushvalue(L, table);
    lua_pushlightuserdata(L, ls);
    luaL_setfuncs(L, lr_funcs, 1);
    lua_pop(L, 1);
}
