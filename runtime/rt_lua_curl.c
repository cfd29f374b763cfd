/* rt_lua_curl.c - the Lua face of the HTTP client engine (rt_curl.h).
 *
 *   native.curl_request(opts) -> status, headers, body | nil, word, message
 *   native.curl_open(opts) -> stream | nil, word, message
 *   native.curl_active() -> requests in flight
 *
 * curl_request yields the calling task until the transfer ends. headers is
 * a flat array {name1, value1, name2, value2, ...} in the order received.
 * Cancelling the task (or its deadline) aborts the transfer through the
 * op's cancel hook; the task then sees nil, "cancelled" / nil, "timeout".
 *
 * curl_open starts a streamed response (rt_curl_open) and returns at once;
 * opts.buffer_bytes bounds what is buffered unread before the transfer is
 * paused. Its methods yield until there is something to return:
 *   stream:head() -> status, headers | nil, word, message
 *   stream:read() -> chunk | false (the body is complete)
 *                  | nil, word, message (the transfer failed)
 *   stream:read_sse([chat]) -> {field1, value1, ...} the complete lines
 *                  of a text/event-stream read so far (rt_sse_lines.h; a
 *                  blank line is "", ""; comments dropped)
 *                  | false, cut (the body is complete; cut: it ended
 *                  inside a line) | nil, word, message
 *     With chat true, the first data line of an event whose value is a
 *     chat completion chunk rt_chat_chunk_read can read becomes numbered
 *     pseudo-lines instead: 1, content ("" when it has none), then
 *     2, finish_reason and 3, model when it has them. Such a line, ~250
 *     bytes and nearly the same as its neighbours, is then never made a
 *     Lua string (LuaJIT interns every string: look-alikes of one length
 *     share a hash and are compared byte by byte with each other while
 *     alive), nor decoded into tables.
 *     (one stream is read with one of the two, not both)
 *   stream:close()  aborts a transfer still running; idempotent
 * A task cancelled (or past its deadline) while it waits in head or read
 * aborts the transfer (the connection is closed) and sees nil, "cancelled"
 * / "timeout"; later calls say nil, "closed". One task waits at a time
 * (else nil, "busy"). Collecting the stream closes it.
 * chorus.http.client wraps this into the friendly API. */
#include "rt_lua_curl.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "rt_chat_chunk.h"
#include "rt_curl.h"
#include "rt_lua_json.h"
#include "rt_lua_util.h"
#include "rt_sse_lines.h"
#include "rt_lua_wait.h"

#define RT_CURL_CTX_MT "chorus.curl"
#define RT_CURL_STREAM_MT "chorus.curl.stream"

typedef struct lc_op lc_op_t;
typedef struct lcs lcs_t;

/* Per Lua state context: a full userdata, upvalue of every function. */
typedef struct {
    rt_lua_sched_t *ls;
    rt_curl_t *eng; /* created at the first request; closed by __gc */
    lc_op_t *ops;   /* requests in flight (list) */
    lcs_t *streams; /* streams whose request is not released (list) */
} lc_ctx_t;

/* A streamed response: the block of its userdata, which the waiting task
 * keeps alive (it is the method's self). */
struct lcs {
    rt_lua_wait_t wait;   /* a task in head() or read() */
    lc_ctx_t *ctx;        /* NULL once the context is gone */
    rt_curl_req_t *req;   /* NULL once released */
    rt_curl_event_t want; /* what the wait is for: HEAD or DATA */
    int sse;              /* the DATA wait is read_sse's (2: chat) */
    rt_sse_lines_t lines; /* read_sse's unfinished line */
    int event_data;       /* data lines of the event being read */
    int gone;             /* why req was released: RT_ECLOSED, ... */
    lcs_t *prev, *next;   /* in ctx->streams while req != NULL */
};

/* One request a task waits on, in ctx->ops until its wait ends. Freed
 * when the wait ends (rt_lua_wait.h), or by the context's __gc. */
struct lc_op {
    rt_lua_wait_t wait;
    lc_ctx_t *ctx;
    rt_curl_req_t *req; /* the transfer, owned by the engine */
    lc_op_t *prev, *next;
};

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

/* Pushes the three results of a finished request (rt_lua_wait_done). */
static int lc_build(lua_State *L, void *arg)
{
    const rt_curl_result_t *res = arg;
    size_t i;

    if (res->error != 0) {
        lua_pushnil(L);
        lua_pushstring(L, rt_err_word(res->error));
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
    return 3;
}

/* The engine's completion callback: results go to the task, which is
 * queued (never resumed on this stack). */
static void lc_done(rt_curl_req_t *req, const rt_curl_result_t *res, void *data)
{
    lc_op_t *op = data;
    (void)req;
    lc_unlink(op);
    rt_lua_wait_done(&op->wait, lc_build, (void *)res);
}

/* The wait was cancelled: abort the transfer; no completion will come. */
static void lc_cancel(rt_lua_wait_t *w, int why)
{
    lc_op_t *op = (lc_op_t *)w;
    (void)why;
    rt_curl_abort(op->req);
    lc_unlink(op);
}

static void lc_free(rt_lua_wait_t *w)
{
    free(w);
}

static const rt_lua_wait_vt_t lc_vt = {lc_cancel, lc_free, NULL};

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

/* Reads the request options of the table at index 1 into *o (header
 * array allocated as a userdata left on the stack, strings anchored by the
 * table). Bad option types raise (caller bugs). */
static void lc_read_opts(lua_State *L, const char *fname, rt_curl_opts_t *o)
{
    rt_curl_header_t *hs = NULL;
    size_t i, n = 0;

    o->url = lc_opt_str(L, "url", NULL);
    if (o->url == NULL)
        luaL_error(L, "%s: url is required", fname);
    o->method = lc_opt_str(L, "method", NULL);
    o->body = lc_opt_str(L, "body", &o->body_len);
    o->timeout_ms = lc_opt_u64(L, "timeout_ms");
    o->connect_timeout_ms = lc_opt_u64(L, "connect_timeout_ms");
    o->max_body = lc_opt_u64(L, "max_body_bytes");
    lua_getfield(L, 1, "follow_redirects");
    o->follow_redirects = lua_toboolean(L, -1);
    lua_getfield(L, 1, "max_redirects");
    o->max_redirects = lua_isnil(L, -1) ? -1 : (long)lua_tointeger(L, -1);
    o->ca_file = lc_opt_str(L, "ca_file", NULL);
    lua_getfield(L, 1, "deny_internal");
    o->deny_internal = lua_toboolean(L, -1);
    lua_getfield(L, 1, "allow");
    if (!lua_isnil(L, -1)) {
        int at = lua_gettop(L);
        rt_cidr_t *cidrs;
        size_t na;
        luaL_argcheck(L, lua_istable(L, at), 1, "allow must be a list");
        na = lua_objlen(L, at);
        /* Garbage-collected, so a raise below leaks nothing. */
        cidrs = lua_newuserdata(L, (na ? na : 1) * sizeof(*cidrs));
        for (i = 0; i < na; i++) {
            lua_rawgeti(L, at, (int)i + 1);
            if (lua_type(L, -1) != LUA_TSTRING ||
                rt_cidr_parse(lua_tostring(L, -1), &cidrs[i]) != 0)
                luaL_error(L,
                           "%s: allow[%d] is not an address or a CIDR "
                           "range",
                           fname, (int)i + 1);
            lua_pop(L, 1);
        }
        o->allow = cidrs;
        o->nallow = na;
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
                luaL_error(L, "%s: header %d is not two strings", fname,
                           (int)i + 1);
            /* The strings stay alive: the headers table holds them. */
            hs[i].name = lua_tolstring(L, -2, &hs[i].name_len);
            hs[i].value = lua_tolstring(L, -1, &hs[i].value_len);
            lua_pop(L, 2);
        }
    }
    o->headers = hs;
    o->nheaders = n;
}

/* The engine, created at the first request; NULL when curl cannot be
 * initialised. */
static rt_curl_t *lc_engine(lc_ctx_t *ctx)
{
    if (ctx->eng == NULL)
        ctx->eng = rt_curl_new(ctx->ls->sched.loop);
    return ctx->eng;
}

/* Pushes nil, the word of code (rt_err.h), message; returns 3. */
static int lc_push_fail(lua_State *L, int code, const char *message)
{
    lua_pushnil(L);
    lua_pushstring(L, rt_err_word(code));
    lua_pushstring(L, message);
    return 3;
}

/* native.curl_request({url=, method=, headers={n1, v1, ...}, body=,
 *   timeout_ms=, connect_timeout_ms=, max_body_bytes=, follow_redirects=,
 *   max_redirects=, deny_internal=, allow={"10.0.0.0/8", ...}, ca_file=})
 *   -> status, headers, body | nil, word, message
 * Bad option types raise (caller bugs); bad values give
 * nil, "invalid request", why. */
static int l_curl_request(lua_State *L)
{
    lc_ctx_t *ctx = lc_ctx(L);
    rt_lua_task_t *cur;
    rt_curl_opts_t o = {0};
    const char *err = "";
    lc_op_t *op;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_checkstack(L, LUA_MINSTACK, "curl_request");
    cur = rt_lua_current(L, ctx->ls, "curl_request");
    lc_read_opts(L, "curl_request", &o);
    if (lc_engine(ctx) == NULL)
        return lc_push_fail(L, RT_ENOMEM, "cannot initialise libcurl");
    op = malloc(sizeof(*op));
    if (op == NULL)
        return luaL_error(L, "out of memory");
    rc = rt_curl_start(ctx->eng, &o, lc_done, op, &op->req, &err);
    if (rc < 0) {
        free(op);
        return lc_push_fail(L, rc, err);
    }
    lua_settop(L, 1); /* curl copied what it keeps */
    rt_lua_wait_init(&op->wait, &lc_vt);
    op->ctx = ctx;
    op->prev = NULL;
    op->next = ctx->ops;
    if (ctx->ops)
        ctx->ops->prev = op;
    ctx->ops = op;
    return rt_lua_wait_suspend(L, &op->wait, cur, -1);
}

/* ---- streamed responses ------------------------------------------------ */

static void lcs_unlink(lcs_t *s)
{
    lc_ctx_t *ctx = s->ctx;
    if (s->prev)
        s->prev->next = s->next;
    else
        ctx->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

/* Releases the request (aborting a transfer still running). */
static void lcs_release(lcs_t *s, int why)
{
    if (s->req == NULL)
        return;
    rt_curl_abort(s->req);
    s->req = NULL;
    s->gone = why;
    lcs_unlink(s);
    rt_sse_lines_free(&s->lines);
}

/* Pushes what head() returns onto L. Returns the count. */
static int lcs_push_head(lua_State *L, rt_curl_req_t *req)
{
    const char *message;
    rt_curl_header_t h;
    size_t i, n;
    long status = rt_curl_status(req);
    int code;

    if (status == 0 && rt_curl_ended(req, &code, &message) && code != 0)
        return lc_push_fail(L, code, message);
    n = rt_curl_header_count(req);
    lua_pushinteger(L, (lua_Integer)status);
    lua_createtable(L, (int)(n * 2), 0);
    for (i = 0; i < n; i++) {
        if (rt_curl_header(req, i, &h) != 0)
            break;
        lua_pushlstring(L, h.name, h.name_len);
        lua_rawseti(L, -2, (int)(2 * i + 1));
        lua_pushlstring(L, h.value, h.value_len);
        lua_rawseti(L, -2, (int)(2 * i + 2));
    }
    return 2;
}

/* Pushes what read() returns onto L, consuming the bytes it hands over.
 * Returns the count. */
static int lcs_push_read(lua_State *L, rt_curl_req_t *req)
{
    const char *message, *p;
    int code;
    size_t len;

    p = rt_curl_body(req, &len);
    if (len > 0) {
        lua_pushlstring(L, p, len);
        rt_curl_consume(req, len); /* after the copy: may resume curl */
        return 1;
    }
    if (rt_curl_ended(req, &code, &message) && code != 0)
        return lc_push_fail(L, code, message);
    lua_pushboolean(L, 0); /* the end: a bare nil means out of memory */
    return 1;
}

/* read_sse's lines into the table on top of the stack. */
typedef struct {
    lua_State *L;
    lcs_t *s;
    int n;
} lcs_lines_t;

static void lcs_pseudo(lcs_lines_t *a, int field, const rt_json_span_t *sp)
{
    lua_pushinteger(a->L, field);
    lua_rawseti(a->L, -2, ++a->n);
    rt_lua_json_push_span(a->L, sp);
    lua_rawseti(a->L, -2, ++a->n);
}

/* An event's first data line read as a chat chunk (read_sse(true)). */
static int lcs_chat_line(lcs_lines_t *a, const char *value, size_t vlen)
{
    rt_chat_chunk_t c;
    if (!rt_chat_chunk_read(value, vlen, &c))
        return 0;
    if (!c.content.present) {
        c.content.p = "";
        c.content.present = 1;
    }
    lcs_pseudo(a, 1, &c.content);
    if (c.finish.present)
        lcs_pseudo(a, 2, &c.finish);
    if (c.model.present)
        lcs_pseudo(a, 3, &c.model);
    return 1;
}

static int lcs_line(void *arg, const char *field, size_t flen,
                    const char *value, size_t vlen)
{
    lcs_lines_t *a = arg;
    if (field == NULL) {
        a->s->event_data = 0;
    } else if (flen == 4 && memcmp(field, "data", 4) == 0 &&
               a->s->event_data++ == 0 && a->s->sse == 2 &&
               lcs_chat_line(a, value, vlen)) {
        return 0;
    }
    lua_pushlstring(a->L, field != NULL ? field : "", flen);
    lua_rawseti(a->L, -2, ++a->n);
    lua_pushlstring(a->L, value != NULL ? value : "", vlen);
    lua_rawseti(a->L, -2, ++a->n);
    return 0;
}

/* Pushes what read_sse() returns onto L, consuming the bytes it read. */
static int lcs_push_lines(lua_State *L, lcs_t *s)
{
    const char *message, *p;
    int code;
    size_t len;
    lcs_lines_t a;

    p = rt_curl_body(s->req, &len);
    if (len > 0) {
        int rc;
        a.L = L;
        a.s = s;
        a.n = 0;
        lua_createtable(L, 8, 0);
        rc = rt_sse_lines_feed(&s->lines, p, len, lcs_line, &a);
        rt_curl_consume(s->req, len); /* after the copies: may resume curl */
        if (rc != 0)
            return lc_push_fail(L, RT_ENOMEM, "out of memory");
        return 1;
    }
    if (rt_curl_ended(s->req, &code, &message) && code != 0)
        return lc_push_fail(L, code, message);
    lua_pushboolean(L, 0);
    lua_pushboolean(L, rt_sse_lines_finish(&s->lines));
    return 2;
}

/* Pushes the results of the wait (rt_lua_wait_done). */
static int lcs_build(lua_State *L, void *arg)
{
    lcs_t *s = arg;
    if (s->req == NULL)
        return lc_push_fail(L, s->gone, "");
    if (s->want == RT_CURL_EV_HEAD)
        return lcs_push_head(L, s->req);
    return s->sse ? lcs_push_lines(L, s) : lcs_push_read(L, s->req);
}

/* The engine's event: wakes the waiting task when what it waits for (or
 * the end) is there. Runs on the loop, never on curl's stack. */
static void lcs_event(rt_curl_req_t *req, rt_curl_event_t ev, void *data)
{
    lcs_t *s = data;
    (void)req;
    if (!rt_lua_wait_active(&s->wait) ||
        (ev != RT_CURL_EV_END && ev != s->want))
        return;
    rt_lua_wait_done(&s->wait, lcs_build, s);
}

/* The wait was cancelled: the transfer is aborted mid-stream. */
static void lcs_cancel(rt_lua_wait_t *w, int why)
{
    lcs_release((lcs_t *)w, why);
}

static const rt_lua_wait_vt_t lcs_vt = {lcs_cancel, NULL, NULL};

static lcs_t *lcs_check(lua_State *L)
{
    return luaL_checkudata(L, 1, RT_CURL_STREAM_MT);
}

/* head() and read(): the value now, or a wait for it. */
static int lcs_wait(lua_State *L, rt_curl_event_t want, int sse,
                    const char *fname)
{
    lcs_t *s = lcs_check(L);
    rt_lua_task_t *cur;
    const char *message;
    int ready, code;

    if (s->req == NULL)
        return lc_push_fail(L, s->gone, "");
    if (rt_lua_wait_active(&s->wait))
        return lc_push_fail(L, RT_EBUSY, "another task is reading");
    if (want == RT_CURL_EV_DATA)
        s->sse = sse;
    if (want == RT_CURL_EV_HEAD) {
        ready = rt_curl_status(s->req) != 0;
    } else {
        size_t len;
        (void)rt_curl_body(s->req, &len);
        ready = len > 0;
    }
    if (ready || rt_curl_ended(s->req, &code, &message)) {
        if (want == RT_CURL_EV_HEAD)
            return lcs_push_head(L, s->req);
        return sse ? lcs_push_lines(L, s) : lcs_push_read(L, s->req);
    }
    cur = rt_lua_current(L, s->ctx->ls, fname);
    s->want = want;
    s->sse = sse;
    return rt_lua_wait_suspend(L, &s->wait, cur, -1);
}

static int m_stream_head(lua_State *L)
{
    return lcs_wait(L, RT_CURL_EV_HEAD, 0, "stream:head");
}

static int m_stream_read(lua_State *L)
{
    return lcs_wait(L, RT_CURL_EV_DATA, 0, "stream:read");
}

static int m_stream_read_sse(lua_State *L)
{
    return lcs_wait(L, RT_CURL_EV_DATA, lua_toboolean(L, 2) ? 2 : 1,
                    "stream:read_sse");
}

/* stream:close(): a task waiting in head or read (another one) gets
 * nil, "closed". */
static int m_stream_close(lua_State *L)
{
    lcs_t *s = lcs_check(L);
    if (s->req == NULL)
        return 0;
    lcs_release(s, RT_ECLOSED);
    if (rt_lua_wait_active(&s->wait))
        rt_lua_wait_done(&s->wait, lcs_build, s);
    return 0;
}

static int m_stream_gc(lua_State *L)
{
    lcs_t *s = lcs_check(L);
    /* A waiting task keeps its stream alive, so none waits here. */
    if (s->ctx != NULL)
        lcs_release(s, RT_ECLOSED);
    rt_sse_lines_free(&s->lines);
    return 0;
}

/* native.curl_open(opts) -> stream | nil, word, message
 * opts: those of curl_request plus buffer_bytes. */
static int l_curl_open(lua_State *L)
{
    lc_ctx_t *ctx = lc_ctx(L);
    rt_curl_opts_t o = {0};
    const char *err = "";
    uint64_t buffer;
    lcs_t *s;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_checkstack(L, LUA_MINSTACK, "curl_open"); /* lc_read_opts' pushes */
    lc_read_opts(L, "curl_open", &o);
    buffer = lc_opt_u64(L, "buffer_bytes");
    if (lc_engine(ctx) == NULL)
        return lc_push_fail(L, RT_ENOMEM, "cannot initialise libcurl");
    s = lua_newuserdata(L, sizeof(*s));
    memset(s, 0, sizeof(*s));
    rt_lua_wait_init(&s->wait, &lcs_vt);
    s->ctx = ctx;
    s->gone = RT_ECLOSED;
    luaL_getmetatable(L, RT_CURL_STREAM_MT);
    lua_setmetatable(L, -2);
    rc = rt_curl_open(ctx->eng, &o, (size_t)buffer, lcs_event, s, &s->req,
                      &err);
    if (rc < 0) {
        s->req = NULL;
        s->ctx = NULL;
        return lc_push_fail(L, rc, err);
    }
    s->next = ctx->streams;
    if (ctx->streams)
        ctx->streams->prev = s;
    ctx->streams = s;
    return 1;
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
    while (ctx->streams != NULL) {
        lcs_t *s = ctx->streams;
        lcs_release(s, RT_ECLOSED);
        s->ctx = NULL; /* its own __gc may come later */
    }
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

static const luaL_Reg lc_funcs[] = {
    {"curl_request", l_curl_request},
    {"curl_open", l_curl_open},
    {"curl_active", l_curl_active},
    {NULL, NULL},
};

static const luaL_Reg lcs_methods[] = {
    {"head", m_stream_head},
    {"read", m_stream_read},
    {"read_sse", m_stream_read_sse},
    {"close", m_stream_close},
    {NULL, NULL},
};

void rt_lua_curl_open(lua_State *L, rt_lua_sched_t *ls, int table)
{
    lc_ctx_t *ctx = lua_newuserdata(L, sizeof(*ctx));
    ctx->ls = ls;
    ctx->eng = NULL;
    ctx->ops = NULL;
    ctx->streams = NULL;
    rt_lua_new_class(L, RT_CURL_STREAM_MT, lcs_methods, NULL, m_stream_gc);
    luaL_newmetatable(L, RT_CURL_CTX_MT);
    lua_pushcfunction(L, lc_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, table);
    lua_insert(L, -2);
    luaL_setfuncs(L, lc_funcs, 1);
    lua_pop(L, 1);
}
