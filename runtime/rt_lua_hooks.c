/* rt_lua_hooks.c - loop event sources that call Lua: file watches, signals.
 *
 * Each callback runs the Lua function in a new detached task, so an error in
 * it is caught, logged with a traceback, and never unwinds through libuv.
 * The handles are unreferenced: a watch alone never keeps the process up. */
#include "rt_lua_hooks.h"

#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "rt_lua_util.h"

#define RT_HOOK_MT "chorus.hook"

typedef struct {
    union {
        uv_handle_t handle;
        uv_fs_event_t fs;
        uv_signal_t sig;
    } u;
    rt_lua_sched_t *ls;
    int fn_ref; /* the Lua callback, anchored until the handle is closed */
} rt_hook_t;

static rt_lua_sched_t *hook_ctx(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* Calls the hook's function with the nargs values on top of the main
 * state's stack, in a new detached task. */
static void hook_fire(rt_hook_t *h, int nargs)
{
    lua_State *L = h->ls->L;
    rt_lua_task_t *t;
    int fn_idx;
    if (h->fn_ref == LUA_NOREF) {
        lua_pop(L, nargs);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->fn_ref);
    lua_insert(L, -(nargs + 1));
    fn_idx = lua_gettop(L) - nargs;
    t = rt_lua_task_spawn(h->ls, L, fn_idx, nargs, NULL);
    lua_pop(L, 1); /* fn */
    if (t == NULL)
        return;
    t->report = 1;
    rt_task_release(&t->task); /* nobody joins it */
}

static void hook_close_cb(uv_handle_t *handle)
{
    free(handle->data);
}

/* Drops the callback now (the Lua state may be closing) and lets libuv
 * free the handle on its next turn. */
static void hook_close(rt_hook_t **ud)
{
    rt_hook_t *h = *ud;
    if (h == NULL)
        return;
    luaL_unref(h->ls->L, LUA_REGISTRYINDEX, h->fn_ref);
    h->fn_ref = LUA_NOREF;
    uv_close(&h->u.handle, hook_close_cb);
    *ud = NULL;
}

static int m_close(lua_State *L)
{
    hook_close(luaL_checkudata(L, 1, RT_HOOK_MT));
    return 0;
}

/* Allocates a hook for the function at index 2 and pushes its userdata. */
static rt_hook_t *hook_new(lua_State *L)
{
    rt_hook_t **ud;
    rt_hook_t *h;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    h = malloc(sizeof(*h));
    if (h == NULL) {
        luaL_error(L, "out of memory");
        return NULL;
    }
    h->ls = hook_ctx(L);
    lua_pushvalue(L, 2);
    h->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ud = lua_newuserdata(L, sizeof(*ud));
    *ud = NULL; /* set once the handle is initialised */
    luaL_getmetatable(L, RT_HOOK_MT);
    lua_setmetatable(L, -2);
    h->u.handle.data = h;
    return h;
}

static void hook_arm(lua_State *L, rt_hook_t *h)
{
    rt_hook_t **ud = lua_touserdata(L, -1);
    *ud = h;
    uv_unref(&h->u.handle);
}

static void hook_fail(lua_State *L, rt_hook_t *h)
{
    luaL_unref(L, LUA_REGISTRYINDEX, h->fn_ref);
    free(h);
    lua_pop(L, 1);
}

static void fs_cb(uv_fs_event_t *handle, const char *filename, int events,
                  int status)
{
    rt_hook_t *h = handle->data;
    lua_State *L = h->ls->L;
    if (status < 0) {
        lua_pushnil(L);
        lua_pushnil(L);
        lua_pushstring(L, uv_strerror(status));
        hook_fire(h, 3);
        return;
    }
    if (filename)
        lua_pushstring(L, filename);
    else
        lua_pushnil(L);
    lua_pushstring(L, (events & UV_RENAME) ? "rename" : "change");
    hook_fire(h, 2);
}

/* native.watch(path, fn) -> handle | nil, err
 * fn(filename, "change"|"rename") runs in a new task for each event; on a
 * watch error fn(nil, nil, err). handle:close() stops watching. */
static int l_watch(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    rt_hook_t *h = hook_new(L);
    int rc = uv_fs_event_init(h->ls->sched.loop, &h->u.fs);
    if (rc < 0) {
        hook_fail(L, h);
        lua_pushnil(L);
        lua_pushstring(L, uv_strerror(rc));
        return 2;
    }
    rc = uv_fs_event_start(&h->u.fs, fs_cb, path, 0);
    if (rc < 0) {
        rt_hook_t **ud = lua_touserdata(L, -1);
        *ud = h;
        hook_close(ud);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, uv_strerror(rc));
        return 2;
    }
    hook_arm(L, h);
    return 1;
}

static const struct {
    const char *name;
    int num;
} rt__signals[] = {{"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},
                   {"SIGTERM", SIGTERM}, {"SIGUSR1", SIGUSR1},
                   {"SIGUSR2", SIGUSR2}, {NULL, 0}};

static void sig_cb(uv_signal_t *handle, int signum)
{
    rt_hook_t *h = handle->data;
    int i;
    for (i = 0; rt__signals[i].name; i++)
        if (rt__signals[i].num == signum)
            break;
    lua_pushstring(h->ls->L, rt__signals[i].name ? rt__signals[i].name : "?");
    hook_fire(h, 1);
}

/* native.on_signal(name, fn) -> handle. fn(name) runs in a new task. */
static int l_on_signal(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    rt_hook_t *h;
    int i, rc;
    for (i = 0; rt__signals[i].name; i++)
        if (strcmp(rt__signals[i].name, name) == 0)
            break;
    if (rt__signals[i].name == NULL)
        return luaL_argerror(L, 1, "unsupported signal");
    h = hook_new(L);
    rc = uv_signal_init(h->ls->sched.loop, &h->u.sig);
    if (rc < 0) {
        hook_fail(L, h);
        return luaL_error(L, "on_signal: %s", uv_strerror(rc));
    }
    rc = uv_signal_start(&h->u.sig, sig_cb, rt__signals[i].num);
    if (rc < 0) {
        rt_hook_t **ud = lua_touserdata(L, -1);
        *ud = h;
        hook_close(ud);
        return luaL_error(L, "on_signal: %s", uv_strerror(rc));
    }
    hook_arm(L, h);
    return 1;
}

static int m_gc(lua_State *L)
{
    hook_close(luaL_checkudata(L, 1, RT_HOOK_MT));
    return 0;
}

void rt_lua_hooks_open(lua_State *L, rt_lua_sched_t *ls, int table)
{
    static const luaL_Reg methods[] = {{"close", m_close}, {NULL, NULL}};
    rt_lua_new_class(L, RT_HOOK_MT, methods, NULL, m_gc);

    lua_pushlightuserdata(L, ls);
    lua_pushcclosure(L, l_watch, 1);
    lua_setfield(L, table, "watch");
    lua_pushlightuserdata(L, ls);
    lua_pushcclosure(L, l_on_signal, 1);
    lua_setfield(L, table, "on_signal");
}
