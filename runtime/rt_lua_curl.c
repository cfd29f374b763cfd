/* rt_lua_curl.c - the Lua face of the HTTP client engine (rt_curl.h).
 *
 *   native.curl_request(opts) -> status, headers, body | nil, word, message
 *   native.curl_active() -> requests in flight
 *
 * curl_request yields the calling task until the transfer ends. headers is
 * a flat array {name1, value1, name2, value2, ...} in the order received.
 * Cancelling the task (or its deadline) aborts the transfer through the
 * op's cancel hook; the task then sees nil, "cancelled" / nil, "timeout".
 * chorus.http.client wraps this into the friendly API. */
#include "rt_lua_curl.h"

#include <lauxlib.h>
#include <stdlib.h>

#include "rt_curl.h"

#define RT_CURL_CTX_MT "chorus.curl"

typedef struct lc_op lc_op_t;

/* Per Lua state context: a full userdata, upvalue of every function. */
typedef struct {
    rt_lua_sched_t *ls;
    rt_curl_t *eng; /* created at the first request; closed by __gc */
    lc_op_t *ops;   /* requests in flight (list) */
} lc_ctx_t;

/* One request a task waits on. Freed by exactly one of: the completion
 * callback, the cancel hook, or the context's __gc. */
struct lc_op {
    rt_op_t op;        /* must stay first: the scheduler hands it back */
    lc_ctx_t *ctx;
    rt_lua_task_t *task;
    rt_curl_req_t *req; /* the transfer, owned by the engine */
    lc_op_t *prev, *next;
};

/* What lc_build turns into Lua values. */
typedef struct {
    const rt_curl_result_t *res;
    lua_State *co;
} lc_build_t;

static lc_ctx_t *lc_ctx(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static void lc_unlink(lc_op_t *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        op->ctx->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
}

/* Run by lua_cpcall on the main state, so that a memory error is caught
 * here and never unwinds through curl's or libuv's frames. Pushes the three
 * results and moves them onto the waiting coroutine. */
static int lc_build(lua_State *L)
{
    lc_build_t *b = lua_touserdata(L, 1);
    const rt_curl_result_t *res = b->res;
    size_t i;

    if (res->error != NULL) {
        lua_pushnil(L);
        lua_pushstring(L, res->error);
        lua_pushstring(L, res->message);
    } else {
        lua_pushinteger(L, (lua_Integer)res->status);
        lua_createtable(L, (int)(res->nheaders * 2), 0);
        for (i = 0; i < res->nheaders; i++) {
            const rt_curl_header_t *h = &res->headers[i];
            lua_pushlstring(L, h->name, h->name_len);
            lua_rawseti(L, -2, (int)(2 * i + 1));
            lua_pushlstring(L, h->value, h->value_len);
            lua_rawseti(L, -2, (int)(2 * i + 2));
        }
        lua_pushlstring(L, res->body, res->body_len);
    }
    /* co yielded from curl_request with stack room reserved (see there). */
    lua_xmove(L, b->co, 3);
    return 0;
}

/* The engine's completion callback: results go to the task, which is
 * queued (never resumed on this stack). */
static void lc_done(rt_curl_req_t *req, const rt_curl_result_t *res,
                    void *data)
{
    lc_op_t *op = data;
    rt_lua_task_t *t = op->task;
    lua_State *L = op->ctx->ls->L;
    lc_build_t b;
    int n = 3;

    (void)req;
    b.res = res;
    b.co = t->co;
    if (lua_cpcall(L, lc_build, &b) != 0) {
        /* Out of memory: a bare nil tells the caller (client.lua says
         * "out of memory"); pushing it needs no allocation. */
        lua_pop(L, 1);
        lua_pushnil(t->co);
        n = 1;
    }
    lc_unlink(op);
    free(op);
    rt_lua_wake(t, n);
}

/* Cancel hook: abort the transfer; no completion will come. */
static void lc_cancel(rt_op_t *o, rt_task_t *task)
{
    lc_op_t *op = (lc_op_t *)o;
    (void)task;
    rt_curl_abort(op->req);
    lc_unlink(op);
    free(op);
}

/* Reads opts[key] as a non-negative whole number of ms or bytes (nil: 0).
 * Leaves the stack as it was. */
static uint64_t lc_opt_u64(lua_State *L, const char *key)
{
    lua_Number v;
    lua_getfield(L, 1, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "curl_request: %s must be a number", key);
    v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(v >= 0 && v < 1e15))
        luaL_error(L, "curl_request: %s out of range", key);
    return (uint64_t)v;
}

/* Reads opts[key] as a string or nil, leaving it on the stack so the
 * pointer stays valid. */
static const char *lc_opt_str(lua_State *L, const char *key, size_t *len)
{
    lua_getfield(L, 1, key);
    if (lua_isnil(L, -1))
        return NULL;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "curl_request: %s must be a string", key);
    return lua_tolstring(L, -1, len);
}

/* native.curl_request({url=, method=, headers={n1, v1, ...}, body=,
 *   timeout_ms=, connect_timeout_ms=, max_body_bytes=, follow_redirects=,
 *   max_redirects=, deny_internal=, allow={"10.0.0.0/8", ...}})
 *   -> status, headers, body | nil, word, message
 * Bad option types raise (caller bugs); bad values give
 * nil, "invalid request", why. */
static int l_curl_request(lua_State *L)
{
    lc_ctx_t *ctx = lc_ctx(L);
    rt_lua_task_t *cur;
    rt_curl_opts_t o = {0};
    rt_curl_header_t *hs = NULL;
    const char *err = "";
    lc_op_t *op;
    size_t i, n = 0;
    int rc;
    rt_wake_t why;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    /* Room for every push below and, after the yield, for the three
     * results lc_build moves here (see lc_build). */
    luaL_checkstack(L, LUA_MINSTACK, "curl_request");
    cur = rt_lua_current(L, ctx->ls, "curl_request");

    o.url = lc_opt_str(L, "url", NULL);
    if (o.url == NULL)
        return luaL_error(L, "curl_request: url is required");
    o.method = lc_opt_str(L, "method", NULL);
    o.body = lc_opt_str(L, "body", &o.body_len);
    o.timeout_ms = lc_opt_u64(L, "timeout_ms");
    o.connect_timeout_ms = lc_opt_u64(L, "connect_timeout_ms");
    o.max_body = lc_opt_u64(L, "max_body_bytes");
    lua_getfield(L, 1, "follow_redirects");
    o.follow_redirects = lua_toboolean(L, -1);
    lua_getfield(L, 1, "max_redirects");
    o.max_redirects = lua_isnil(L, -1) ? -1 : (long)lua_tointeger(L, -1);
    lua_getfield(L, 1, "deny_internal");
    o.deny_internal = lua_toboolean(L, -1);
    lua_getfield(L, 1, "allow");
    if (!lua_isnil(L, -1)) {
        int at = lua_gettop(L);
        rt_cidr_t *cidrs;
        size_t na = lua_objlen(L, at);
        luaL_argcheck(L, lua_istable(L, at), 1, "allow must be a list");
        /* Garbage-collected, so a raise below leaks nothing. */
        cidrs = lua_newuserdata(L, (na ? na : 1) * sizeof(*cidrs));
        for (i = 0; i < na; i++) {
            lua_rawgeti(L, at, (int)i + 1);
            if (lua_type(L, -1) != LUA_TSTRING ||
                rt_cidr_parse(lua_tostring(L, -1), &cidrs[i]) != 0) {
                lua_pushnil(L);
                lua_pushliteral(L, "invalid request");
                lua_pushfstring(L, "allow[%d] is not an address or a "
                                   "CIDR range", (int)i + 1);
                return 3;
            }
            lua_pop(L, 1);
        }
        o.allow = cidrs;
        o.nallow = na;
    }

    lua_getfield(L, 1, "headers");
    if (!lua_isnil(L, -1)) {
        int ht = lua_gettop(L);
        luaL_argcheck(L, lua_istable(L, ht), 1, "headers must be a table");
        n = lua_objlen(L, ht);
        luaL_argcheck(L, n % 2 == 0, 1,
                      "headers must be a flat {name, value, ...} array");
        n /= 2;
        /* Garbage-collected, so a raise below leaks nothing. */
        hs = lua_newuserdata(L, (n ? n : 1) * sizeof(*hs));
        for (i = 0; i < n; i++) {
            lua_rawgeti(L, ht, (int)(2 * i + 1));
            lua_rawgeti(L, ht, (int)(2 * i + 2));
            if (lua_type(L, -2) != LUA_TSTRING ||
                lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "curl_request: header %d is not two "
                                     "strings", (int)i + 1);
            /* The strings stay alive: the headers table holds them. */
            hs[i].name = lua_tolstring(L, -2, &hs[i].name_len);
            hs[i].value = lua_tolstring(L, -1, &hs[i].value_len);
            lua_pop(L, 2);
        }
    }
    o.headers = hs;
    o.nheaders = n;

    if (ctx->eng == NULL) {
        ctx->eng = rt_curl_new(ctx->ls->sched.loop);
        if (ctx->eng == NULL) {
            lua_pushnil(L);
            lua_pushliteral(L, "out of memory");
            lua_pushliteral(L, "cannot initialise libcurl");
            return 3;
        }
    }
    op = malloc(sizeof(*op));
    if (op == NULL)
        return luaL_error(L, "out of memory");
    rc = rt_curl_start(ctx->eng, &o, lc_done, op, &op->req, &err);
    if (rc < 0) {
        free(op);
        lua_pushnil(L);
        lua_pushstring(L, rc == RT_CURL_EINVAL ? "invalid request"
                                               : "out of memory");
        lua_pushstring(L, err);
        return 3;
    }
    lua_settop(L, 1); /* curl copied what it keeps */
    op->op.cancel = lc_cancel;
    op->ctx = ctx;
    op->task = cur;
    why = rt_task_suspend(&cur->task, &op->op);
    if (why != RT_WAKE_OK) {
        rt_curl_abort(op->req);
        free(op);
        return rt_lua_push_wake(L, why);
    }
    op->prev = NULL;
    op->next = ctx->ops;
    if (ctx->ops)
        ctx->ops->prev = op;
    ctx->ops = op;
    return lua_yield(L, 0);
}

/* native.curl_active() -> number of transfers in flight */
static int l_curl_active(lua_State *L)
{
    lc_ctx_t *ctx = lc_ctx(L);
    lua_pushnumber(L, ctx->eng ? (lua_Number)rt_curl_active(ctx->eng) : 0);
    return 1;
}

/* The state is closing: every task is done (so no op should be left), the
 * engine closes and the loop frees its handles afterwards. */
static int lc_gc(lua_State *L)
{
    lc_ctx_t *ctx = luaL_checkudata(L, 1, RT_CURL_CTX_MT);
    while (ctx->ops != NULL) {
        lc_op_t *op = ctx->ops;
        rt_curl_abort(op->req);
        lc_unlink(op);
        free(op);
    }
    if (ctx->eng != NULL) {
        rt_curl_close(ctx->eng);
        ctx->eng = NULL;
    }
    return 0;
}

static const luaL_Reg lc_funcs[] = {{"curl_request", l_curl_request},
                                    {"curl_active", l_curl_active},
                                    {NULL, NULL}};

void rt_lua_curl_open(lua_State *L, rt_lua_sched_t *ls, int table)
{
    lc_ctx_t *ctx = lua_newuserdata(L, sizeof(*ctx));
    ctx->ls = ls;
    ctx->eng = NULL;
    ctx->ops = NULL;
    luaL_newmetatable(L, RT_CURL_CTX_MT);
    lua_pushcfunction(L, lc_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, table);
    lua_insert(L, -2);
    luaL_setfuncs(L, lc_funcs, 1);
    lua_pop(L, 1);
}
