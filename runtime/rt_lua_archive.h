/* rt_lua_archive.h - native.archive: ended execution records outside the
 * Lua heap (rt_archive.h), for the memory store. */
#ifndef RT_LUA_ARCHIVE_H
#define RT_LUA_ARCHIVE_H

#include <lua.h>

/* Adds archive to the table at index table (an absolute index). */
void rt_lua_archive_open(lua_State *L, int table);

#endif
