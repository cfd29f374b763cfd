/* rt_lua_boot.c - package.path and the chorus.native table of a state. */
#include "rt_lua_boot.h"

#include <lauxlib.h>
#include <luajit.h>

#include "rt_lua_archive.h"
#include "rt_lua_curl.h"
#include "rt_lua_hooks.h"
#include "rt_lua_http.h"
#include "rt_lua_log.h"
#include "rt_lua_netaddr.h"
#include "rt_lua_pg.h"
#include "rt_lua_port.h"
#include "rt_lua_proc.h"
#include "rt_lua_redis.h"
#include "rt_lua_util.h"
#include "rt_lua_json.h"
#include "rt_lua_value.h"
#include "rt_lua_watchdog.h"

void rt_lua_boot_paths(lua_State *L, const char *home)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s", home, home,
                    lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

rt_lua_sched_t *rt_lua_boot_native(lua_State *L, uv_loop_t *loop,
                                   const char *home, const char *version,
                                   rt_lua_stdin_t **in)
{
    rt_lua_sched_t *ls;
    int t;
    *in = NULL;
    lua_newtable(L);
    t = lua_gettop(L);
    ls = rt_lua_sched_open(L, loop, t);
    if (ls == NULL) {
        lua_pop(L, 1);
        return NULL;
    }
    /* One line per binding: the natives it adds go into table t. */
    rt_lua_util_open(L, t);
    rt_lua_log_open(L, ls, t);
    rt_lua_value_open(L, t);
    rt_lua_json_open(L, t);
    rt_lua_netaddr_open(L, t);
    rt_lua_watchdog_open(L, ls, t);
    rt_lua_port_open(L, t);
    rt_lua_archive_open(L, t);
    rt_lua_hooks_open(L, ls, t);
    rt_lua_http_open(L, ls, t);
    rt_lua_curl_open(L, ls, t);
    rt_lua_redis_open(L, ls, t);
    rt_lua_pg_open(L, ls, t);
    rt_lua_proc_open(L, ls, t);
    *in = rt_lua_stdin_open(L, ls, t);
    lua_pushstring(L, home);
    lua_setfield(L, t, "home");
    lua_pushstring(L, version);
    lua_setfield(L, t, "version");
    /* The LuaJIT branch the binary was built against (CMakeLists.txt
     * refuses any other): Debian's older upstream snapshot miscompiles
     * pairs() loops (LuaJIT #827). */
#ifdef OPENRESTY_LUAJIT
    lua_pushstring(L, "OpenResty luajit2");
#else
    lua_pushstring(L, "upstream LuaJIT");
#endif
    lua_setfield(L, t, "luajit_branch");
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_pushvalue(L, t);
    lua_setfield(L, -2, "chorus.native");
    lua_pop(L, 3);
    return ls;
}
