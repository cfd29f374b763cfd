/* rt_lua_value.h - size, depth and text checks of values bound for
 * records (native.value_check, native.utf8_repair). */
#ifndef RT_LUA_VALUE_H
#define RT_LUA_VALUE_H

#include <lua.h>

/* Adds value_check and utf8_repair to the table at index table (an
 * absolute index). */
void rt_lua_value_open(lua_State *L, int table);

#endif
