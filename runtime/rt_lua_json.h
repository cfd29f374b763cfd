/* rt_lua_json.h - the fast path of chorus.json's encoder
 * (native.json_encode: a string, or nil for cjson to handle). */
#ifndef RT_LUA_JSON_H
#define RT_LUA_JSON_H

#include <lua.h>

/* Adds json_encode to the table at index table (an absolute index). */
void rt_lua_json_open(lua_State *L, int table);

#endif
