/* rt_lua_port.h - native.reserve_port: a bound, not listening, socket. */
#ifndef RT_LUA_PORT_H
#define RT_LUA_PORT_H

#include <lua.h>

/* Adds reserve_port to the table at index table (an absolute index). */
void rt_lua_port_open(lua_State *L, int table);

#endif
