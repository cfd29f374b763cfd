/* rt_lua_util.h - small non-yielding natives: clocks, hashes, ids, tty. */
#ifndef RT_LUA_UTIL_H
#define RT_LUA_UTIL_H

#include <lauxlib.h>
#include <lua.h>

/* Adds now, time, sha256, uuid, isatty, hostname, pid, rss to the table at
 * index table (an absolute index). */
void rt_lua_util_open(lua_State *L, int table);

/* Registers metatable name for a userdata class: __gc is gc, __index a
 * table of methods (each with up as its one upvalue when up is not NULL,
 * e.g. the scheduler). Leaves the stack as it was. */
void rt_lua_new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      void *up, lua_CFunction gc);

/* The clocks of native.now and native.time as plain C functions, exported
 * (the binary links with ENABLE_EXPORTS) for LuaJIT's FFI: chorus.clock
 * binds them, and a call through the FFI is compiled into a trace where a
 * classic C function ends it. Monotonic milliseconds; wall-clock seconds
 * since the epoch. */
double chorus_clock_now_ms(void);
double chorus_clock_time_s(void);

#endif
