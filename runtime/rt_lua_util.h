/* rt_lua_util.h - small non-yielding natives: clocks, hashes, ids, tty. */
#ifndef RT_LUA_UTIL_H
#define RT_LUA_UTIL_H

#include <lua.h>

/* Adds now, time, sha256, uuid, isatty, hostname, pid, rss to the table at
 * index table (an absolute index). */
void rt_lua_util_open(lua_State *L, int table);

#endif
