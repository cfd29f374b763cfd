/* rt_lua_http.c - the Lua face of the HTTP/WebSocket server (rt_http.h).
 *
 *   native.http_listen(opts, runner) -> server | nil, err
 *
 * Every request runs runner(req, handle) in a new detached task (the task
 * may yield; an error in it is logged by the scheduler, and the request is
 * still answered: see rt_http.h on releasing). With opts.handler_timeout_ms
 * the task of a plain (not WebSocket) request gets that deadline. req is a
 * plain table {method, path, query, body, headers, remote, remote_port,
 * version, is_websocket}; handle is the request's userdata:
 *
 *   handle:respond(status, headers|nil, body|nil) -> true | nil, "closed"
 *       raises on a bad status, header or body type (caller bugs)
 *   handle:stream(status, headers|nil) -> true | nil, "closed"
 *       starts a streamed response (the head goes out now); then
 *   handle:write(data) -> true | nil, "closed" | "timeout" | "cancelled"
 *       queues data; yields while more than opts.stream_max_queued_bytes
 *       [256 KiB] wait for a slow client; "closed": the client is gone
 *   handle:finish([ok]) -> true | nil, "closed"   ends the body (ok false:
 *       cut it, so the client sees it incomplete)
 *   handle:queued() -> bytes not yet taken by the socket
 *   handle:websocket() -> ws | nil, "not a websocket request" | "closed"
 *   ws:send(data [, binary]) -> true | nil, "backpressure" | "closed"
 *   ws:send_json(value [, at [, key]]) -> the same | nil, "unencodable":
 *       value encoded as JSON straight into the frame (never a Lua
 *       string: rt_lua_json.h), with the top object's "at" written as
 *       the string at when given; "unencodable" when it is cjson's to
 *       encode. key (a number): the same key as the call before means
 *       the same value, whose text is sent again (one event to many
 *       subscribers is encoded once)
 *   ws:receive([timeout_ms]) -> message, "text"|"binary"
 *                             | nil, "closed" | "timeout" | "cancelled"
 *                             | "timeout" (task deadline) | "busy"
 *   ws:close([code]) ; ws:is_open() ; ws:queued()
 *   server:port() ; server:stats() ; server:close([grace_ms])
 *   server:wait_closed() -> true | nil, "cancelled" | "timeout"
 *   server:is_closed()
 *
 * Userdata hold pointers to C structs (luv style). A server is anchored in
 * the registry from listen until it has closed, so dropping the Lua value
 * never closes it behind the caller's back. */
#include "rt_lua_http.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_buf.h"
#include "rt_http.h"
#include "rt_lua_json.h"
#include "rt_lua_util.h"
#include "rt_lua_wait.h"

#define RT_SRV_MT "chorus.http.server"
#define RT_REQ_MT "chorus.http.request"
#define RT_WS_MT "chorus.http.websocket"

/* Inbound WebSocket bytes queued for a handler that does not receive
 * before the socket is closed with 1008; default of ws_max_inbound_bytes. */
#define RT_LWS_DEF_INBOUND (4 * 1024 * 1024)
/* Grace of a server still open when the Lua state closes. */
#define RT_LSRV_GC_GRACE_MS 1000
/* Bytes a streamed response queues for a slow client before write()
 * waits; default of stream_max_queued_bytes. */
#define RT_LSTREAM_DEF_QUEUE (256 * 1024)

/* ---- servers ---------------------------------------------------------- */

typedef struct lsrv_wait lsrv_wait_t;

/* The server userdata's block. */
typedef struct {
    rt_http_server_t *srv; /* NULL once closed */
    rt_lua_sched_t *ls;
    int runner_ref; /* runner function, until closed */
    int self_ref;   /* this userdata, anchored until closed */
    int port;
    size_t ws_max_inbound;
    uint64_t handler_timeout_ms; /* deadline of plain request tasks; 0 none */
    size_t stream_max_queued;    /* a stream's write() waits beyond this */
    rt_http_stats_t last;        /* counters at close */
    rt_sched_hook_t flush;       /* rt_http_server_flush after each resume */
    lsrv_wait_t *waiters;        /* tasks in wait_closed */
} lsrv_t;

/* A task in server:wait_closed(), in s->waiters until its wait ends
 * (then freed). */
struct lsrv_wait {
    rt_lua_wait_t wait;
    lsrv_t *s;
    lsrv_wait_t *prev, *next;
};

/* ---- requests and WebSockets ------------------------------------------ */

/* The request userdata: the handle until answered (then NULL; a
 * streamed response keeps it until finished). */
typedef struct {
    rt_lua_wait_t wait; /* a task in write(), waiting for the client */
    rt_http_req_t *h;
    size_t ws_max_inbound; /* the server's, for a WebSocket upgrade */
    size_t max_queued;     /* the server's stream_max_queued */
    int streaming;         /* stream() succeeded */
    int closed;            /* the stream's client is gone */
} lreq_t;

typedef struct lws_msg {
    struct lws_msg *next;
    size_t len;
    int binary;
    char data[];
} lws_msg_t;

typedef struct lws_wait lws_wait_t;

/* A WebSocket; the userdata holds a pointer to it. */
typedef struct {
    rt_http_ws_t *ws; /* NULL once released (userdata collected) */
    rt_lua_sched_t *ls;
    lws_msg_t *head, *tail; /* messages not yet received */
    size_t nbytes;          /* their total size */
    size_t max_inbound;
    int closed;         /* the engine said RT_HTTP_WS_CLOSED */
    lws_wait_t *waiter; /* the task in receive(), if any */
} lws_t;

/* A task in ws:receive() (w->waiter); malloc'd, freed when its wait
 * ends. Its timeout is the wait's own time limit. */
struct lws_wait {
    rt_lua_wait_t wait;
    lws_t *w;
};

static rt_lua_sched_t *http_ctx(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* ---- receive waits ---------------------------------------------------- */

/* Detaches the wait from its WebSocket. */
static void lws_wait_detach(lws_wait_t *wt)
{
    if (wt->w != NULL && wt->w->waiter == wt)
        wt->w->waiter = NULL;
    wt->w = NULL;
}

static void lws_wait_cancel(rt_lua_wait_t *w, int why)
{
    (void)why;
    lws_wait_detach((lws_wait_t *)w);
}

static void lws_wait_free(rt_lua_wait_t *w)
{
    free(w);
}

static const rt_lua_wait_vt_t lws_wait_vt = {lws_wait_cancel, lws_wait_free,
                                             NULL};

/* Ends the wait with nil and the word of code. */
static void lws_wait_fail(lws_wait_t *wt, int code)
{
    lws_wait_detach(wt);
    rt_lua_wait_fail(&wt->wait, code);
}

/* Pushes a message onto co: data, "text"|"binary". Returns 2. */
static int lws_push_msg(lua_State *co, const char *data, size_t len, int binary)
{
    lua_pushlstring(co, data, len);
    if (binary)
        lua_pushliteral(co, "binary");
    else
        lua_pushliteral(co, "text");
    return 2;
}

/* An inbound message for rt_lua_wait_done. */
typedef struct {
    const char *data;
    size_t len;
    int binary;
} lws_in_t;

static int lws_build_msg(lua_State *L, void *arg)
{
    lws_in_t *m = arg;
    return lws_push_msg(L, m->data, m->len, m->binary);
}

/* The engine's WebSocket callback. May run inside the engine's send or
 * close (CLOSED) and inside h2o (messages): it only queues and wakes. */
static void lws_event(rt_http_ws_t *ws, rt_http_ws_event_t ev, const char *data,
                      size_t len, void *ud)
{
    lws_t *w = ud;
    lws_wait_t *wt = w->waiter;
    lws_msg_t *m;

    if (ev == RT_HTTP_WS_CLOSED) {
        w->closed = 1;
        if (wt != NULL)
            lws_wait_fail(wt, RT_ECLOSED);
        return;
    }
    if (wt != NULL) {
        lws_in_t in;
        in.data = data;
        in.len = len;
        in.binary = ev == RT_HTTP_WS_BINARY;
        lws_wait_detach(wt);
        rt_lua_wait_done(&wt->wait, lws_build_msg, &in);
        return;
    }
    if (w->nbytes + len > w->max_inbound ||
        (m = malloc(sizeof(*m) + len)) == NULL) {
        /* The handler does not keep up: close (only queues here). */
        rt_http_ws_close(ws, 1008);
        return;
    }
    m->next = NULL;
    m->len = len;
    m->binary = ev == RT_HTTP_WS_BINARY;
    memcpy(m->data, data, len);
    if (w->tail)
        w->tail->next = m;
    else
        w->head = m;
    w->tail = m;
    w->nbytes += len;
}

static lws_t *lws_check(lua_State *L)
{
    lws_t **ud = luaL_checkudata(L, 1, RT_WS_MT);
    if (*ud == NULL)
        luaL_argerror(L, 1, "websocket already collected");
    return *ud;
}

/* ws:send(data [, binary]) -> true | nil, "backpressure" | "closed" */
static int m_ws_send(lua_State *L)
{
    lws_t *w = lws_check(L);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int binary = lua_toboolean(L, 3), rc;

    if (w->ws == NULL || w->closed)
        rc = RT_ECLOSED;
    else
        rc = rt_http_ws_send(w->ws, binary, data, len);
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    return rt_lua_fail(L, w->ls, rc);
}

/* The text of the last keyed ws:send_json, for the next subscriber of
 * the same event. Texts over RT_WS_LAST_MAX (a result record) are not
 * kept. */
#define RT_WS_LAST_MAX (64 * 1024)
static _Thread_local struct {
    double key;
    const void *owner; /* the Lua scheduler whose key it is */
    int valid;
    char *p;
    size_t len, cap;
} rt__last;

/* ws:send_json(value [, at [, key]]) */
static int m_ws_send_json(lua_State *L)
{
    lws_t *w = lws_check(L);
    size_t len, alen = 0;
    const char *at = luaL_optlstring(L, 3, NULL, &alen), *text;
    int has_key = lua_type(L, 4) == LUA_TNUMBER, rc;
    double key = has_key ? lua_tonumber(L, 4) : 0;

    luaL_checkany(L, 2);
    if (w->ws == NULL || w->closed)
        return rt_lua_fail(L, w->ls, RT_ECLOSED);
    if (has_key && rt__last.valid && rt__last.key == key &&
        rt__last.owner == w->ls) {
        text = rt__last.p;
        len = rt__last.len;
    } else {
        text = rt_lua_json_encode_buf(L, 2, at != NULL ? "at" : NULL, at, alen,
                                      &len);
        rt__last.valid = 0;
        if (text == NULL) {
            lua_pushnil(L);
            lua_pushliteral(L, "unencodable");
            return 2;
        }
        if (has_key && len <= RT_WS_LAST_MAX &&
            rt_buf_reserve(&rt__last.p, 0, &rt__last.cap, len) == 0) {
            memcpy(rt__last.p, text, len);
            rt__last.len = len;
            rt__last.key = key;
            rt__last.owner = w->ls;
            rt__last.valid = 1;
        }
    }
    rc = rt_http_ws_send(w->ws, 0, text, len); /* wslay copies it */
    rt_lua_json_trim();
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    return rt_lua_fail(L, w->ls, rc);
}

/* ws:receive([timeout_ms]) -> message, kind | nil, reason */
static int m_ws_receive(lua_State *L)
{
    lws_t *w = lws_check(L);
    rt_lua_sched_t *ls = w->ls;
    double ms = luaL_optnumber(L, 2, -1);
    rt_lua_task_t *cur;
    lws_wait_t *wt;
    lws_msg_t *m;
    int n;

    if (!(ms < 1e12))
        return luaL_argerror(L, 2, "out of range");
    cur = rt_lua_current(L, ls, "ws:receive");
    if ((m = w->head) != NULL) {
        w->head = m->next;
        if (w->head == NULL)
            w->tail = NULL;
        w->nbytes -= m->len;
        n = lws_push_msg(L, m->data, m->len, m->binary);
        free(m);
        return n;
    }
    if (w->closed || w->ws == NULL)
        return rt_lua_fail(L, ls, RT_ECLOSED);
    if (w->waiter != NULL)
        return rt_lua_fail(L, ls, RT_EBUSY);
    if (ms == 0)
        return rt_lua_fail(L, ls, RT_ETIMEOUT);
    wt = malloc(sizeof(*wt));
    if (wt == NULL)
        return luaL_error(L, "out of memory");
    rt_lua_wait_init(&wt->wait, &lws_wait_vt);
    wt->w = w;
    w->waiter = wt;
    return rt_lua_wait_suspend(L, &wt->wait, cur, ms);
}

/* ws:close([code]) */
static int m_ws_close(lua_State *L)
{
    lws_t *w = lws_check(L);
    lua_Integer code = luaL_optinteger(L, 2, 1000);
    if (code < 1000 || code > 4999)
        return luaL_argerror(L, 2, "close code must be 1000..4999");
    if (w->ws != NULL && !w->closed)
        rt_http_ws_close(w->ws, (uint16_t)code);
    return 0;
}

static int m_ws_is_open(lua_State *L)
{
    lws_t *w = lws_check(L);
    lua_pushboolean(L,
                    w->ws != NULL && !w->closed && rt_http_ws_is_open(w->ws));
    return 1;
}

/* ws:queued() -> outbound bytes queued, inbound bytes not received */
static int m_ws_queued(lua_State *L)
{
    lws_t *w = lws_check(L);
    lua_pushnumber(L, w->ws != NULL ? (lua_Number)rt_http_ws_queued(w->ws) : 0);
    lua_pushnumber(L, (lua_Number)w->nbytes);
    return 2;
}

static int m_ws_gc(lua_State *L)
{
    lws_t **ud = luaL_checkudata(L, 1, RT_WS_MT);
    lws_t *w = *ud;
    lws_msg_t *m, *next;
    if (w == NULL)
        return 0;
    *ud = NULL;
    /* A waiting task keeps this userdata alive, so none should be; if one
     * is, its op stays for the scheduler to cancel and free. */
    if (w->waiter != NULL) {
        w->waiter->w = NULL;
        w->waiter = NULL;
    }
    if (w->ws != NULL)
        rt_http_ws_release(w->ws); /* closes it if open; no more events */
    for (m = w->head; m != NULL; m = next) {
        next = m->next;
        free(m);
    }
    free(w);
    return 0;
}

/* ---- request handles -------------------------------------------------- */

static lreq_t *lreq_check(lua_State *L)
{
    return luaL_checkudata(L, 1, RT_REQ_MT);
}

/* nil and the word of code, in a request method. */
static int push_fail(lua_State *L, int code)
{
    return rt_lua_fail(L, http_ctx(L), code);
}

/* Pushes a flat array {name1, value1, name2, value2, ...} of the header
 * table at idx, numbers converted to strings, a value that is an array
 * giving one entry per element. Returns the number of headers. Raises on
 * bad types. The array anchors every string the caller points into. */
static size_t flatten_headers(lua_State *L, int idx)
{
    int flat, i = 0;
    lua_newtable(L);
    flat = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        /* stack: ..., flat, key, value */
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "respond: header names must be strings");
        if (lua_type(L, -1) == LUA_TTABLE) {
            size_t k, len = lua_objlen(L, -1);
            for (k = 1; k <= len; k++) {
                lua_rawgeti(L, -1, (int)k);
                if (!lua_isstring(L, -1))
                    luaL_error(L,
                               "respond: header %s: values must be "
                               "strings or numbers",
                               lua_tostring(L, -3));
                lua_tostring(L, -1); /* converts a number in place */
                lua_pushvalue(L, -3);
                lua_rawseti(L, flat, ++i);
                lua_rawseti(L, flat, ++i);
            }
        } else if (lua_isstring(L, -1)) {
            lua_pushvalue(L, -1);
            lua_tostring(L, -1);
            lua_pushvalue(L, -3);
            lua_rawseti(L, flat, ++i);
            lua_rawseti(L, flat, ++i);
        } else {
            luaL_error(L,
                       "respond: header %s: values must be strings or "
                       "numbers",
                       lua_tostring(L, -2));
        }
        lua_pop(L, 1);
    }
    return (size_t)i / 2;
}

/* Points out[0..n) into the flat array at index flat. */
static void fill_headers(lua_State *L, int flat, rt_http_header_t *out,
                         size_t n)
{
    size_t k;
    for (k = 0; k < n; k++) {
        lua_rawgeti(L, flat, (int)(2 * k + 1));
        out[k].name = lua_tolstring(L, -1, &out[k].name_len);
        lua_rawgeti(L, flat, (int)(2 * k + 2));
        out[k].value = lua_tolstring(L, -1, &out[k].value_len);
        lua_pop(L, 2); /* the strings stay anchored by flat */
    }
}

/* The response headers at index 3 (a table, or none), flattened onto the
 * stack top and described in *hdrs: small (16 entries) when they fit,
 * else a malloc'd array the caller frees (hdrs != small). Returns the
 * count; raises on out of memory. */
static size_t response_headers(lua_State *L, rt_http_header_t *small,
                               rt_http_header_t **hdrs)
{
    size_t n;
    int flat;
    *hdrs = small;
    if (!lua_istable(L, 3))
        return 0;
    n = flatten_headers(L, 3);
    flat = lua_gettop(L);
    if (n > 16) {
        *hdrs = malloc(n * sizeof(**hdrs));
        if (*hdrs == NULL)
            luaL_error(L, "out of memory");
    }
    fill_headers(L, flat, *hdrs, n);
    return n;
}

/* handle:respond(status, headers, body) -> true | nil, "closed" */
static int m_req_respond(lua_State *L)
{
    lreq_t *r = lreq_check(L);
    lua_Integer status = luaL_checkinteger(L, 2);
    size_t body_len = 0, n = 0;
    const char *body = NULL, *err = NULL;
    rt_http_header_t small[16], *hdrs;
    int rc;

    if (status < 200 || status > 599)
        return luaL_argerror(L, 2, "status must be 200..599");
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    if (!lua_isnoneornil(L, 4))
        body = luaL_checklstring(L, 4, &body_len);
    if (r->h == NULL)
        return push_fail(L, RT_ECLOSED);
    if (r->streaming)
        return push_fail(L, RT_EANSWERED);
    lua_settop(L, 4);
    n = response_headers(L, small, &hdrs);
    rc = rt_http_req_respond(r->h, (int)status, hdrs, n, body, body_len, &err);
    if (hdrs != small)
        free(hdrs);
    if (rc == RT_EINVAL)
        return luaL_error(L, "respond: %s", err ? err : "invalid response");
    rt_http_req_release(r->h);
    r->h = NULL;
    if (rc != 0)
        return push_fail(L, RT_ECLOSED);
    lua_pushboolean(L, 1);
    return 1;
}

/* handle:websocket() -> ws | nil, err */
static int m_req_websocket(lua_State *L)
{
    lreq_t *r = lreq_check(L);
    lws_t *w, **ud;
    int rc = 0;

    if (r->h == NULL)
        return push_fail(L, RT_ECLOSED);
    if (r->streaming)
        return push_fail(L, RT_EANSWERED);
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return luaL_error(L, "out of memory");
    w->ls = http_ctx(L);
    w->max_inbound = r->ws_max_inbound;
    ud = lua_newuserdata(L, sizeof(*ud));
    *ud = NULL;
    luaL_getmetatable(L, RT_WS_MT);
    lua_setmetatable(L, -2);
    w->ws = rt_http_req_websocket(r->h, lws_event, w, &rc);
    if (w->ws == NULL) {
        free(w);
        return push_fail(L, rc);
    }
    *ud = w;
    rt_http_req_release(r->h);
    r->h = NULL;
    return 1;
}

/* ---- streamed responses ----------------------------------------------- */

/* The engine's stream event (on the loop, or inside the server's close):
 * only pushes results and queues the writer. */
static void lstream_event(rt_http_req_t *h, rt_http_stream_event_t ev, void *ud)
{
    lreq_t *r = ud;
    if (ev == RT_HTTP_STREAM_CLOSED)
        r->closed = 1;
    else if (rt_http_stream_queued(h) > r->max_queued)
        return; /* still too much queued: wait for the next write */
    if (!rt_lua_wait_active(&r->wait))
        return;
    if (r->closed) {
        rt_lua_wait_fail(&r->wait, RT_ECLOSED);
        return;
    }
    lua_pushboolean(rt_lua_wait_co(&r->wait), 1);
    rt_lua_wait_wake(&r->wait, 1);
}

/* A cancelled write() wait: what was written stays queued, nothing to
 * abort or free (the wait lives in the request's userdata). */
static const rt_lua_wait_vt_t lstream_vt = {NULL, NULL, NULL};

/* handle:stream(status, headers) -> true | nil, "closed" | "answered" */
static int m_req_stream(lua_State *L)
{
    lreq_t *r = lreq_check(L);
    lua_Integer status = luaL_checkinteger(L, 2);
    size_t n;
    const char *err = NULL;
    rt_http_header_t small[16], *hdrs;
    int rc;

    if (status < 200 || status > 599)
        return luaL_argerror(L, 2, "status must be 200..599");
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    if (r->h == NULL)
        return push_fail(L, RT_ECLOSED);
    if (r->streaming)
        return push_fail(L, RT_EANSWERED);
    lua_settop(L, 3);
    n = response_headers(L, small, &hdrs);
    rc = rt_http_req_stream(r->h, (int)status, hdrs, n, lstream_event, r, &err);
    if (hdrs != small)
        free(hdrs);
    if (rc == RT_EINVAL)
        return luaL_error(L, "stream: %s", err ? err : "invalid response");
    if (rc != 0) {
        rt_http_req_release(r->h);
        r->h = NULL;
        return push_fail(L, RT_ECLOSED);
    }
    r->streaming = 1;
    lua_pushboolean(L, 1);
    return 1;
}

static lreq_t *lstream_check(lua_State *L, const char *fname)
{
    lreq_t *r = lreq_check(L);
    if (!r->streaming)
        luaL_error(L, "%s: no streamed response (call stream first)", fname);
    return r;
}

/* handle:write(data) -> true | nil, reason */
static int m_req_write(lua_State *L)
{
    lreq_t *r = lstream_check(L, "write");
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    rt_lua_task_t *cur;
    int rc;

    if (r->h == NULL || r->closed)
        return push_fail(L, RT_ECLOSED);
    if (rt_lua_wait_active(&r->wait))
        return push_fail(L, RT_EBUSY);
    rc = rt_http_stream_write(r->h, data, len);
    if (rc == RT_ENOMEM)
        return push_fail(L, RT_ENOMEM);
    if (rc != 0)
        return push_fail(L, RT_ECLOSED);
    if (rt_http_stream_queued(r->h) <= r->max_queued) {
        lua_pushboolean(L, 1);
        return 1;
    }
    /* A slow client: wait until the socket has taken enough. */
    cur = rt_lua_current(L, http_ctx(L), "write");
    return rt_lua_wait_suspend(L, &r->wait, cur, -1);
}

/* handle:finish([ok = true]) -> true | nil, "closed" */
static int m_req_finish(lua_State *L)
{
    lreq_t *r = lstream_check(L, "finish");
    int ok = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2), rc;
    if (r->h == NULL)
        return push_fail(L, RT_ECLOSED);
    if (rt_lua_wait_active(&r->wait))
        return push_fail(L, RT_EBUSY);
    rc = rt_http_stream_end(r->h, ok);
    rt_http_req_release(r->h);
    r->h = NULL;
    if (rc != 0 || r->closed)
        return push_fail(L, RT_ECLOSED);
    lua_pushboolean(L, 1);
    return 1;
}

/* handle:queued() -> bytes of a streamed response not yet sent */
static int m_req_queued(lua_State *L)
{
    lreq_t *r = lreq_check(L);
    lua_pushnumber(L, r->h != NULL && r->streaming
                          ? (lua_Number)rt_http_stream_queued(r->h)
                          : 0);
    return 1;
}

static int m_req_gc(lua_State *L)
{
    lreq_t *r = luaL_checkudata(L, 1, RT_REQ_MT);
    if (r->h != NULL) {
        rt_http_req_release(r->h); /* unanswered: the engine sends 503 */
        r->h = NULL;
    }
    return 0;
}

/* handle:answered() -> true once respond, stream or websocket was called
 * with success, or found the client gone */
static int m_req_answered(lua_State *L)
{
    lreq_t *r = lreq_check(L);
    lua_pushboolean(L, r->h == NULL || r->streaming);
    return 1;
}

/* ---- dispatch --------------------------------------------------------- */

static void set_str(lua_State *L, const char *k, const char *s, size_t n)
{
    lua_pushlstring(L, s, n);
    lua_setfield(L, -2, k);
}

/* Pushes the request table. Repeated headers are joined with ", ".
 * Returns 1 for a WebSocket handshake. */
static int push_request(lua_State *L, rt_http_req_t *h)
{
    rt_http_req_info_t info;
    rt_http_header_t hd;
    size_t i, n;

    lua_createtable(L, 0, 10);
    if (rt_http_req_info(h, &info) != 0)
        return 0; /* cannot happen inside the request callback */
    set_str(L, "method", info.method, info.method_len);
    set_str(L, "path", info.path, info.path_len);
    set_str(L, "query", info.query, info.query_len);
    set_str(L, "body", info.body, info.body_len);
    lua_pushstring(L, info.remote);
    lua_setfield(L, -2, "remote");
    lua_pushinteger(L, info.remote_port);
    lua_setfield(L, -2, "remote_port");
    lua_pushstring(L, info.version == 0x100 ? "1.0" : "1.1");
    lua_setfield(L, -2, "version");
    lua_pushboolean(L, info.websocket);
    lua_setfield(L, -2, "is_websocket");
    n = rt_http_req_header_count(h);
    lua_createtable(L, 0, (int)n);
    for (i = 0; i < n; i++) {
        if (rt_http_req_header(h, i, &hd) != 0)
            continue;
        lua_pushlstring(L, hd.name, hd.name_len);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlstring(L, hd.value, hd.value_len);
        } else {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, hd.value, hd.value_len);
            lua_concat(L, 3);
        }
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");
    return info.websocket;
}

/* What on_request hands to dispatch (through lua_cpcall). */
typedef struct {
    lsrv_t *s;
    rt_http_req_t *h;
    int adopted; /* the request userdata owns h (its __gc releases it) */
} ldispatch_t;

/* Builds runner, request table and handle, and spawns the task. Runs
 * protected: an error (out of memory) unwinds to lua_cpcall, never
 * through h2o's frames. */
static int dispatch(lua_State *L)
{
    ldispatch_t *d = lua_touserdata(L, 1);
    lsrv_t *s = d->s;
    rt_lua_task_t *t;
    lreq_t *r;
    int fn, is_ws;

    lua_rawgeti(L, LUA_REGISTRYINDEX, s->runner_ref);
    fn = lua_gettop(L);
    r = lua_newuserdata(L, sizeof(*r));
    memset(r, 0, sizeof(*r));
    rt_lua_wait_init(&r->wait, &lstream_vt);
    r->h = d->h;
    r->ws_max_inbound = s->ws_max_inbound;
    r->max_queued = s->stream_max_queued;
    d->adopted = 1;
    luaL_getmetatable(L, RT_REQ_MT);
    lua_setmetatable(L, -2);
    is_ws = push_request(L, d->h);
    lua_insert(L, -2); /* runner(req, handle) */
    t = rt_lua_task_spawn(s->ls, L, fn, 2, NULL);
    if (t == NULL)
        return luaL_error(L, "out of memory");
    t->report = 1; /* nobody joins it: errors are logged */
    /* A WebSocket handler lives as long as its socket: no deadline. */
    if (s->handler_timeout_ms > 0 && !is_ws)
        rt_task_set_deadline(&t->task, s->handler_timeout_ms);
    rt_task_release(&t->task);
    return 0;
}

static void on_request(rt_http_server_t *srv, rt_http_req_t *h, void *data)
{
    ldispatch_t d;
    lua_State *L;
    (void)srv;

    d.s = data;
    d.h = h;
    d.adopted = 0;
    L = d.s->ls->L;
    if (lua_cpcall(L, dispatch, &d) != 0) {
        fprintf(stderr, "chorus: http: cannot dispatch a request: %s\n",
                lua_isstring(L, -1) ? lua_tostring(L, -1) : "(error)");
        lua_pop(L, 1);
        /* Once adopted, the garbage userdata's __gc answers 503. */
        if (!d.adopted)
            rt_http_req_release(h);
    }
}

/* ---- server methods --------------------------------------------------- */

static lsrv_t *lsrv_check(lua_State *L)
{
    return luaL_checkudata(L, 1, RT_SRV_MT);
}

/* After each task resume: what the task sent on WebSockets goes out. */
static void lsrv_flush(void *arg)
{
    lsrv_t *s = arg;
    if (s->srv != NULL)
        rt_http_server_flush(s->srv);
}

static void on_closed(rt_http_server_t *srv, void *data)
{
    lsrv_t *s = data;
    lua_State *L = s->ls->L;
    lsrv_wait_t *w;
    rt_http_server_stats(srv, &s->last);
    rt_sched_hook_remove(&s->ls->sched, &s->flush);
    s->srv = NULL;
    while ((w = s->waiters) != NULL) {
        s->waiters = w->next;
        lua_pushboolean(rt_lua_wait_co(&w->wait), 1);
        rt_lua_wait_wake(&w->wait, 1);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, s->runner_ref);
    s->runner_ref = LUA_NOREF;
    /* Last: this may let the userdata be collected. */
    luaL_unref(L, LUA_REGISTRYINDEX, s->self_ref);
    s->self_ref = LUA_NOREF;
}

static int m_srv_port(lua_State *L)
{
    lua_pushinteger(L, lsrv_check(L)->port);
    return 1;
}

static void set_num(lua_State *L, const char *k, uint64_t v)
{
    lua_pushnumber(L, (lua_Number)v);
    lua_setfield(L, -2, k);
}

/* server:stats() -> {requests = n, ...} (the last values once closed) */
static int m_srv_stats(lua_State *L)
{
    lsrv_t *s = lsrv_check(L);
    rt_http_stats_t st;
    if (s->srv != NULL)
        rt_http_server_stats(s->srv, &st);
    else
        st = s->last;
    lua_createtable(L, 0, 10);
    set_num(L, "requests", st.requests);
    set_num(L, "requests_active", st.requests_active);
    set_num(L, "connections_total", st.connections_total);
    set_num(L, "connections_active", st.connections_active);
    set_num(L, "connections_rejected", st.connections_rejected);
    set_num(L, "client_rejected", st.client_rejected);
    set_num(L, "websockets_total", st.websockets_total);
    set_num(L, "websockets_active", st.websockets_active);
    set_num(L, "bytes_in", st.bytes_in);
    set_num(L, "bytes_out", st.bytes_out);
    return 1;
}

/* server:close([grace_ms]) starts a graceful close (see rt_http.h). */
static int m_srv_close(lua_State *L)
{
    lsrv_t *s = lsrv_check(L);
    double grace = luaL_optnumber(L, 2, 10000);
    if (!(grace >= 0 && grace < 1e12))
        return luaL_argerror(L, 2, "grace_ms out of range");
    if (s->srv != NULL)
        rt_http_server_close(s->srv, (uint64_t)grace, on_closed, s);
    return 0;
}

static void lsrv_wait_cancel(rt_lua_wait_t *rw, int why)
{
    lsrv_wait_t *w = (lsrv_wait_t *)rw;
    (void)why;
    if (w->prev)
        w->prev->next = w->next;
    else
        w->s->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
}

static void lsrv_wait_free(rt_lua_wait_t *w)
{
    free(w);
}

static const rt_lua_wait_vt_t lsrv_wait_vt = {lsrv_wait_cancel, lsrv_wait_free,
                                              NULL};

/* server:wait_closed() -> true | nil, reason */
static int m_srv_wait_closed(lua_State *L)
{
    lsrv_t *s = lsrv_check(L);
    rt_lua_task_t *cur = rt_lua_current(L, s->ls, "server:wait_closed");
    lsrv_wait_t *w;
    if (s->srv == NULL) {
        lua_pushboolean(L, 1);
        return 1;
    }
    w = malloc(sizeof(*w));
    if (w == NULL)
        return luaL_error(L, "out of memory");
    rt_lua_wait_init(&w->wait, &lsrv_wait_vt);
    w->s = s;
    w->prev = NULL;
    w->next = s->waiters;
    if (w->next)
        w->next->prev = w;
    s->waiters = w;
    return rt_lua_wait_suspend(L, &w->wait, cur, -1);
}

static int m_srv_is_closed(lua_State *L)
{
    lua_pushboolean(L, lsrv_check(L)->srv == NULL);
    return 1;
}

static int m_srv_gc(lua_State *L)
{
    lsrv_t *s = luaL_checkudata(L, 1, RT_SRV_MT);
    if (s->srv != NULL) {
        /* Only when the Lua state closes (the server is anchored while
         * open): finish without calling back into Lua, leaving closing
         * handshakes a second (the loop runs on after lua_close). */
        rt_sched_hook_remove(&s->ls->sched, &s->flush);
        rt_http_server_detach(s->srv);
        rt_http_server_close(s->srv, RT_LSRV_GC_GRACE_MS, NULL, NULL);
        s->srv = NULL;
    }
    return 0;
}

/* ---- listen ----------------------------------------------------------- */

/* Reads a non-negative integer option (0 when absent). */
static uint64_t opt_uint(lua_State *L, const char *k, double max)
{
    double v;
    lua_getfield(L, 1, k);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "http_listen: %s must be a number", k);
    v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(v >= 0 && v <= max) || v != (double)(uint64_t)v)
        luaL_error(L, "http_listen: %s must be an integer in 0..%.0f", k, max);
    return (uint64_t)v;
}

/* native.http_listen(opts, runner) -> server | nil, err */
static int l_http_listen(lua_State *L)
{
    rt_lua_sched_t *ls = http_ctx(L);
    rt_http_opts_t o;
    lsrv_t *s;
    char err[256];
    const double big = 9007199254740992.0; /* 2^53 */

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    memset(&o, 0, sizeof(o));
    lua_getfield(L, 1, "host");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "http_listen: host must be a string");
    o.host = lua_tostring(L, -1); /* stays on the stack until listen */
    lua_getfield(L, 1, "reuseport");
    o.reuseport = lua_toboolean(L, -1);
    lua_pop(L, 1);
    o.port = (int)opt_uint(L, "port", 65535);
    o.backlog = (int)opt_uint(L, "backlog", 65535);
    o.max_body_bytes = (size_t)opt_uint(L, "max_body_bytes", big);
    o.max_header_bytes = (size_t)opt_uint(L, "max_header_bytes", big);
    o.request_timeout_ms = opt_uint(L, "request_timeout_ms", 1e12);
    o.max_connections = (size_t)opt_uint(L, "max_connections", big);
    o.max_client_connections = (size_t)opt_uint(L, "max_client_connections",
                                                big);
    o.ws_max_queued_bytes = (size_t)opt_uint(L, "ws_max_queued_bytes", big);
    o.ws_max_message_bytes = (size_t)opt_uint(L, "ws_max_message_bytes", big);
    o.ws_close_timeout_ms = opt_uint(L, "ws_close_timeout_ms", 1e12);

    s = lua_newuserdata(L, sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->ls = ls;
    s->runner_ref = LUA_NOREF;
    s->self_ref = LUA_NOREF;
    s->ws_max_inbound = (size_t)opt_uint(L, "ws_max_inbound_bytes", big);
    if (s->ws_max_inbound == 0)
        s->ws_max_inbound = RT_LWS_DEF_INBOUND;
    s->handler_timeout_ms = opt_uint(L, "handler_timeout_ms", 1e12);
    s->stream_max_queued = (size_t)opt_uint(L, "stream_max_queued_bytes", big);
    if (s->stream_max_queued == 0)
        s->stream_max_queued = RT_LSTREAM_DEF_QUEUE;
    luaL_getmetatable(L, RT_SRV_MT);
    lua_setmetatable(L, -2);
    s->srv = rt_http_server_new(ls->sched.loop, &o, on_request, s, err,
                                sizeof(err));
    if (s->srv == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    s->port = rt_http_server_port(s->srv);
    s->flush.fn = lsrv_flush;
    s->flush.arg = s;
    rt_sched_hook_add(&ls->sched, &s->flush);
    lua_pushvalue(L, 2);
    s->runner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static const luaL_Reg srv_methods[] = {
    {"port", m_srv_port},           {"stats", m_srv_stats},
    {"close", m_srv_close},         {"wait_closed", m_srv_wait_closed},
    {"is_closed", m_srv_is_closed}, {NULL, NULL},
};

static const luaL_Reg req_methods[] = {
    {"respond", m_req_respond},   {"websocket", m_req_websocket},
    {"answered", m_req_answered}, {"stream", m_req_stream},
    {"write", m_req_write},       {"finish", m_req_finish},
    {"queued", m_req_queued},     {NULL, NULL},
};

static const luaL_Reg ws_methods[] = {
    {"send", m_ws_send},
    {"send_json", m_ws_send_json},
    {"receive", m_ws_receive},
    {"close", m_ws_close},
    {"is_open", m_ws_is_open},
    {"queued", m_ws_queued},
    {NULL, NULL},
};

void rt_lua_http_open(lua_State *L, rt_lua_sched_t *ls, int table)
{
    rt_lua_new_class(L, RT_SRV_MT, srv_methods, ls, m_srv_gc);
    rt_lua_new_class(L, RT_REQ_MT, req_methods, ls, m_req_gc);
    rt_lua_new_class(L, RT_WS_MT, ws_methods, ls, m_ws_gc);
    lua_pushlightuserdata(L, ls);
    lua_pushcclosure(L, l_http_listen, 1);
    lua_setfield(L, table, "http_listen");
}
