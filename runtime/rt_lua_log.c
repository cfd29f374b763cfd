/* rt_lua_log.c - the Lua face of the log writer: chorus.log hands each
 * formatted line to native.log_write, a thread writes them to stderr
 * (rt_log.c), and the loop wakes that thread once per iteration. */
#include "rt_lua_log.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "rt_log.h"
#include "rt_logline.h"

extern char **environ;

/* The most bytes waiting for stderr: ~16k lines of 250 bytes, seconds of
 * a busy server's logs. Past it lines are dropped (and counted) rather
 * than waited for. The buffers grow to it only when stderr falls behind. */
#define RT_LOG_BUFFER (4u << 20)
/* At exit, how long the last lines may take to leave: a stderr nobody
 * reads must not keep a stopping process alive. */
#define RT_LOG_EXIT_MS 2000

/* One writer per process: there is one stderr. */
static rt_log_t rt__stderr;
static int rt__ready;      /* rt__stderr is initialised */
static uv_pid_t rt__owner; /* the process that made it (not a fork) */

static void rt__at_exit(void)
{
    /* A forked child that exits without exec has no writer thread. */
    if (rt__ready && uv_os_getpid() == rt__owner)
        (void)rt_log_close(&rt__stderr, RT_LOG_EXIT_MS);
}

/* How lines look, set by native.log_setup / log_field / log_secret. One
 * set per process, like stderr. */
typedef struct rt__kv {
    char *key, *val;
    size_t klen, vlen;
} rt__kv_t;
static int rt__json = 1;
static int rt__encode_ref = LUA_NOREF; /* encodes a table field as JSON */
static rt__kv_t *rt__base;             /* fields of every line (node) */
static size_t rt__nbase;
static char **rt__secrets; /* values never printed */
static size_t *rt__secret_lens, rt__nsecrets;
static rt_logline_t rt__line; /* reused for every line */

/* The ids an operator greps by come first, in this order (the process's
 * own fields, such as node, come last). */
static const char *const rt__first[] = {"trace_id", "execution_id", "step_id"};
#define RT_NFIRST (sizeof(rt__first) / sizeof(rt__first[0]))

static int rt__placed(const char *k)
{
    size_t i;
    for (i = 0; i < RT_NFIRST; i++)
        if (strcmp(k, rt__first[i]) == 0)
            return 1;
    for (i = 0; i < rt__nbase; i++)
        if (strcmp(k, rt__base[i].key) == 0)
            return 1;
    return 0;
}

/* Adds the value at index idx (absolute) as field key. */
static void rt__field(lua_State *L, rt_logline_t *b, int idx, const char *key,
                      size_t klen)
{
    size_t n;
    const char *s;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &n);
        rt_logline_str(b, key, klen, s, n);
        break;
    case LUA_TNUMBER:
        rt_logline_num(b, key, klen, lua_tonumber(L, idx));
        break;
    case LUA_TBOOLEAN:
        rt_logline_bool(b, key, klen, lua_toboolean(L, idx));
        break;
    case LUA_TTABLE:
        if (rt__encode_ref != LUA_NOREF) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, rt__encode_ref);
            lua_pushvalue(L, idx);
            if (lua_pcall(L, 1, 1, 0) == 0 && lua_type(L, -1) == LUA_TSTRING) {
                s = lua_tolstring(L, -1, &n);
                rt_logline_raw(b, key, klen, s, n);
                lua_pop(L, 1);
                break;
            }
            lua_pop(L, 1);
        }
        rt_logline_str(b, key, klen, "[table]", 7);
        break;
    default:
        s = lua_typename(L, lua_type(L, idx));
        rt_logline_str(b, key, klen, s, strlen(s));
    }
}

/* Adds the fields of the table at index fields in the list form:
 * {"key", value, "key", value, ...}, in that order; a nil value leaves
 * its field out. */
static void rt__list_fields(lua_State *L, rt_logline_t *b, int fields)
{
    lua_Integer k;
    for (k = 1;; k += 2) {
        size_t klen;
        const char *key;
        lua_rawgeti(L, fields, (int)k);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            return;
        }
        key = lua_tolstring(L, -1, &klen);
        lua_rawgeti(L, fields, (int)k + 1);
        if (!lua_isnil(L, -1))
            rt__field(L, b, lua_gettop(L), key, klen);
        lua_pop(L, 2);
    }
}

/* Adds the fields of the table at index fields in the map form: the ids
 * first (rt__first), then the others in table order, except the
 * process's fields (rt__base: the caller adds those). */
static void rt__map_fields(lua_State *L, rt_logline_t *b, int fields)
{
    size_t i;
    for (i = 0; i < RT_NFIRST; i++) {
        lua_getfield(L, fields, rt__first[i]);
        if (!lua_isnil(L, -1))
            rt__field(L, b, lua_gettop(L), rt__first[i], strlen(rt__first[i]));
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    while (lua_next(L, fields) != 0) {
        size_t klen;
        const char *k;
        if (lua_type(L, -2) == LUA_TSTRING) {
            k = lua_tolstring(L, -2, &klen);
            if (!rt__placed(k))
                rt__field(L, b, lua_gettop(L), k, klen);
        }
        lua_pop(L, 1);
    }
}

/* Adds the fields given as the call's arguments from index 3 on: "key",
 * value, "key", value, ... (a nil value leaves its field out). */
static void rt__arg_fields(lua_State *L, rt_logline_t *b)
{
    int i, top = lua_gettop(L);
    for (i = 3; i + 1 <= top; i += 2) {
        size_t klen;
        const char *key;
        if (lua_type(L, i) != LUA_TSTRING)
            return;
        key = lua_tolstring(L, i, &klen);
        if (!lua_isnil(L, i + 1))
            rt__field(L, b, i + 1, key, klen);
    }
}

/* Builds the line of (level, msg, fields) or (level, msg, "key", value,
 * ...) in b: the record's own fields, then the process's (node) unless
 * the map form gave its own value. Returns 0 or -1 (no memory). */
static int rt__build(lua_State *L, rt_logline_t *b)
{
    size_t mlen, i;
    const char *level = lua_tostring(L, 1);
    const char *msg = lua_tolstring(L, 2, &mlen);
    int fields = lua_istable(L, 3) ? 3 : 0, map = 0;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    rt_logline_begin(b, rt__json, (double)tv.tv_sec + (double)tv.tv_usec / 1e6,
                     level, msg, mlen);
    if (!fields && lua_type(L, 3) == LUA_TSTRING)
        rt__arg_fields(L, b);
    if (fields) {
        lua_rawgeti(L, fields, 1);
        map = lua_type(L, -1) != LUA_TSTRING;
        lua_pop(L, 1);
        if (map)
            rt__map_fields(L, b, fields);
        else
            rt__list_fields(L, b, fields);
    }
    for (i = 0; i < rt__nbase; i++) {
        rt__kv_t *kv = &rt__base[i];
        if (map) {
            lua_getfield(L, fields, kv->key);
            if (!lua_isnil(L, -1)) {
                rt__field(L, b, lua_gettop(L), kv->key, kv->klen);
                lua_pop(L, 1);
                continue;
            }
            lua_pop(L, 1);
        }
        rt_logline_str(b, kv->key, kv->klen, kv->val, kv->vlen);
    }
    if (rt_logline_end(b) != 0)
        return -1;
    return rt_logline_redact(b, (const char *const *)rt__secrets,
                             rt__secret_lens, rt__nsecrets);
}

/* Builds the line of the call's arguments: in rt__line, or in *spare
 * when a line is being built already (a table field's encoder logged).
 * Returns the builder (the caller frees a spare) or NULL (no memory). */
static rt_logline_t *rt__line_of(lua_State *L, rt_logline_t *spare)
{
    static int building;
    rt_logline_t *b = building ? spare : &rt__line;
    int rc;
    luaL_checkstring(L, 1);
    luaL_checkstring(L, 2);
    building++;
    rc = rt__build(L, b);
    building--;
    return rc == 0 ? b : NULL;
}

/* native.log_emit(level, msg, fields|nil) -> true | false (dropped):
 * the line goes to stderr through the writer thread. The fields may also
 * follow msg as arguments: native.log_emit(level, msg, "key", value, ...)
 * (no table to build and walk: the access log and the engine's records).
 */
static int l_log_emit(lua_State *L)
{
    rt_logline_t spare = {0}, *b = rt__line_of(L, &spare);
    int ok = 0;
    if (b != NULL && rt__ready)
        ok = rt_log_append(&rt__stderr, b->p, b->len) == 0;
    else if (b != NULL)
        ok = write(2, b->p, b->len) == (ssize_t)b->len;
    rt_logline_free(&spare);
    lua_pushboolean(L, ok);
    return 1;
}

/* native.log_format(level, msg, fields|nil) -> the line (for a sink) */
static int l_log_format(lua_State *L)
{
    rt_logline_t spare = {0}, *b = rt__line_of(L, &spare);
    if (b == NULL) {
        rt_logline_free(&spare);
        return luaL_error(L, "out of memory");
    }
    lua_pushlstring(L, b->p, b->len);
    rt_logline_free(&spare);
    return 1;
}

/* native.log_setup({json = bool, encode = fn, buffer = bytes}): the
 * format, how a table in a field is encoded (fn(t) -> JSON text), and
 * the most bytes that may wait for stderr. */
static int l_log_setup(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "buffer");
    if (!lua_isnil(L, -1)) {
        lua_Number n = luaL_checknumber(L, -1);
        luaL_argcheck(L, n >= 4096 && n <= (lua_Number)(1u << 30), 1,
                      "buffer: 4096 .. 2^30 bytes");
        if (rt__ready)
            rt_log_set_cap(&rt__stderr, (size_t)n);
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "json");
    if (!lua_isnil(L, -1))
        rt__json = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "encode");
    if (lua_isfunction(L, -1)) {
        if (rt__encode_ref != LUA_NOREF)
            luaL_unref(L, LUA_REGISTRYINDEX, rt__encode_ref);
        rt__encode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        lua_pop(L, 1);
    }
    return 0;
}

static char *rt__dup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* native.log_field(key, value|nil): a field of every line from now on
 * (value nil: no more). */
static int l_log_field(lua_State *L)
{
    size_t klen, vlen = 0, i;
    const char *k = luaL_checklstring(L, 1, &klen);
    const char *v = luaL_optlstring(L, 2, NULL, &vlen);
    char *val = NULL;
    rt__kv_t *grown;
    if (v != NULL && (val = rt__dup(v, vlen)) == NULL)
        return luaL_error(L, "out of memory");
    for (i = 0; i < rt__nbase; i++) {
        if (strcmp(rt__base[i].key, k) != 0)
            continue;
        free(rt__base[i].val);
        if (val != NULL) {
            rt__base[i].val = val;
            rt__base[i].vlen = vlen;
        } else {
            free(rt__base[i].key);
            rt__base[i] = rt__base[--rt__nbase];
        }
        return 0;
    }
    if (val == NULL)
        return 0;
    grown = realloc(rt__base, (rt__nbase + 1) * sizeof *grown);
    if (grown == NULL) {
        free(val);
        return luaL_error(L, "out of memory");
    }
    rt__base = grown;
    rt__base[rt__nbase].key = rt__dup(k, klen);
    if (rt__base[rt__nbase].key == NULL) {
        free(val);
        return luaL_error(L, "out of memory");
    }
    rt__base[rt__nbase].klen = klen;
    rt__base[rt__nbase].val = val;
    rt__base[rt__nbase].vlen = vlen;
    rt__nbase++;
    return 0;
}

/* native.log_secret(value): value never appears in a line (it is
 * replaced by [redacted]); values under 4 bytes are ignored. */
static int l_log_secret(lua_State *L)
{
    size_t n, i;
    const char *s = luaL_checklstring(L, 1, &n);
    char **ss;
    size_t *ls;
    if (n < 4)
        return 0;
    for (i = 0; i < rt__nsecrets; i++)
        if (rt__secret_lens[i] == n && memcmp(rt__secrets[i], s, n) == 0)
            return 0;
    ss = realloc(rt__secrets, (rt__nsecrets + 1) * sizeof *ss);
    if (ss == NULL)
        return luaL_error(L, "out of memory");
    rt__secrets = ss;
    ls = realloc(rt__secret_lens, (rt__nsecrets + 1) * sizeof *ls);
    if (ls == NULL)
        return luaL_error(L, "out of memory");
    rt__secret_lens = ls;
    if ((rt__secrets[rt__nsecrets] = rt__dup(s, n)) == NULL)
        return luaL_error(L, "out of memory");
    rt__secret_lens[rt__nsecrets++] = n;
    return 0;
}

/* native.log_write(line) -> true | false (dropped: stderr is behind) */
static int l_log_write(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (!rt__ready) {
        /* No writer (it could not be made): write it ourselves. */
        ssize_t w = write(2, s, len);
        lua_pushboolean(L, w == (ssize_t)len);
        return 1;
    }
    lua_pushboolean(L, rt_log_append(&rt__stderr, s, len) == 0);
    return 1;
}

/* native.log_flush(timeout_ms) -> true | false (timed out). Blocks the
 * loop up to timeout_ms: for the end of a command and for tests. */
static int l_log_flush(lua_State *L)
{
    lua_Integer ms = luaL_optinteger(L, 1, 1000);
    luaL_argcheck(L, ms >= 0 && ms <= 600000, 1, "0..600000 ms");
    lua_pushboolean(L,
                    !rt__ready || rt_log_flush(&rt__stderr, (unsigned)ms) == 0);
    return 1;
}

/* native.log_dropped() -> lines dropped so far (for the metric) */
static int l_log_dropped(lua_State *L)
{
    lua_pushnumber(L, rt__ready ? (lua_Number)atomic_load(&rt__stderr.dropped)
                                : 0);
    return 1;
}

/* native.log_stats() -> {lines, bytes, dropped, queued} */
static int l_log_stats(lua_State *L)
{
    lua_createtable(L, 0, 4);
    lua_pushnumber(L,
                   rt__ready ? (lua_Number)atomic_load(&rt__stderr.lines) : 0);
    lua_setfield(L, -2, "lines");
    lua_pushnumber(L,
                   rt__ready ? (lua_Number)atomic_load(&rt__stderr.bytes) : 0);
    lua_setfield(L, -2, "bytes");
    lua_pushnumber(L, rt__ready ? (lua_Number)atomic_load(&rt__stderr.dropped)
                                : 0);
    lua_setfield(L, -2, "dropped");
    lua_pushnumber(L, rt__ready ? (lua_Number)rt_log_queued(&rt__stderr) : 0);
    lua_setfield(L, -2, "queued");
    return 1;
}

/* native.environ() -> {NAME = value, ...}: the whole environment, for
 * chorus.log's list of values never to print (keys, passwords). */
static int l_environ(lua_State *L)
{
    char **e;
    lua_newtable(L);
    for (e = environ; e != NULL && *e != NULL; e++) {
        const char *eq = strchr(*e, '=');
        if (eq == NULL || eq == *e)
            continue;
        lua_pushlstring(L, *e, (size_t)(eq - *e));
        lua_pushstring(L, eq + 1);
        lua_rawset(L, -3);
    }
    return 1;
}

/* The writer is woken at most once per RT_LOG_WAKE_MS: a wake per loop
 * iteration (thousands a second under load) cost a futex call on the
 * loop's thread and a context switch each, for writes of a few lines; a
 * record now waits at most this long for stderr (or less, past half the
 * buffer: rt_log_append wakes it then). */
#define RT_LOG_WAKE_MS 5

/* The loop's side of the writer: a prepare handle notices, before the
 * loop blocks for I/O, that records were appended, and wakes the writer
 * now or arms the timer for when RT_LOG_WAKE_MS has passed since the last
 * wake. One malloc'd block, freed once both handles are closed. */
typedef struct rt__waker {
    uv_prepare_t prepare;
    uv_timer_t timer;
    uint64_t last; /* loop time (ms) of the last wake */
    int armed;     /* the timer runs */
    int open;      /* handles not closed yet */
} rt__waker_t;

static void rt__wake(rt__waker_t *w)
{
    w->last = uv_now(w->prepare.loop);
    rt_log_kick(&rt__stderr);
}

static void rt__on_timer(uv_timer_t *t)
{
    rt__waker_t *w = t->data;
    w->armed = 0;
    rt__wake(w);
}

static void rt__on_prepare(uv_prepare_t *p)
{
    rt__waker_t *w = p->data;
    uint64_t now;
    if (w->armed ||
        !atomic_load_explicit(&rt__stderr.kick, memory_order_relaxed))
        return;
    now = uv_now(p->loop);
    if (now - w->last >= RT_LOG_WAKE_MS) {
        rt__wake(w);
    } else if (uv_timer_start(&w->timer, rt__on_timer,
                              RT_LOG_WAKE_MS - (now - w->last), 0) == 0) {
        w->armed = 1;
    } else {
        rt__wake(w);
    }
}

static void rt__on_close(uv_handle_t *h)
{
    rt__waker_t *w = h->data;
    if (--w->open == 0)
        free(w);
}

#define RT_LOG_MT "chorus.log.waker"

/* __gc of the waker's anchor (at lua_close): closes its handles; the loop
 * frees it when it runs next. */
static int l_waker_gc(lua_State *L)
{
    rt__waker_t **pw = luaL_checkudata(L, 1, RT_LOG_MT);
    rt__waker_t *w = *pw;
    if (w != NULL) {
        int timer = w->open == 2; /* the timer was made too */
        *pw = NULL;
        uv_close((uv_handle_t *)&w->prepare, rt__on_close);
        if (timer)
            uv_close((uv_handle_t *)&w->timer, rt__on_close);
    }
    return 0;
}

static const luaL_Reg funcs[] = {
    {"log_emit", l_log_emit},
    {"log_format", l_log_format},
    {"log_setup", l_log_setup},
    {"log_field", l_log_field},
    {"log_secret", l_log_secret},
    {"log_write", l_log_write},
    {"log_flush", l_log_flush},
    {"log_dropped", l_log_dropped},
    {"log_stats", l_log_stats},
    {"environ", l_environ},
    {NULL, NULL},
};

void rt_lua_log_open(lua_State *L, rt_lua_sched_t *ls, int table)
{
    rt__waker_t **pw, *w;
    lua_pushvalue(L, table);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
    if (!rt__ready && rt_log_init(&rt__stderr, 2, RT_LOG_BUFFER) == 0) {
        rt__ready = 1;
        rt__owner = uv_os_getpid();
        if (atexit(rt__at_exit) != 0)
            luaL_error(L, "atexit failed");
    }
    if (!rt__ready)
        return; /* lines are written directly */
    /* The waker, anchored in the registry until the state closes. */
    pw = lua_newuserdata(L, sizeof *pw);
    *pw = NULL;
    luaL_newmetatable(L, RT_LOG_MT);
    lua_pushcfunction(L, l_waker_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    w = calloc(1, sizeof *w);
    if (w == NULL)
        luaL_error(L, "out of memory");
    if (uv_prepare_init(ls->sched.loop, &w->prepare) != 0) {
        free(w);
        luaL_error(L, "cannot make the log's prepare handle");
    }
    w->open = 1;
    w->prepare.data = w;
    *pw = w; /* from here __gc closes what is open */
    if (uv_timer_init(ls->sched.loop, &w->timer) != 0)
        luaL_error(L, "cannot make the log's timer");
    w->open = 2;
    w->timer.data = w;
    (void)uv_prepare_start(&w->prepare, rt__on_prepare);
    /* Neither keeps the loop alive: at the end, atexit flushes. */
    uv_unref((uv_handle_t *)&w->prepare);
    uv_unref((uv_handle_t *)&w->timer);
    luaL_ref(L, LUA_REGISTRYINDEX);
}
