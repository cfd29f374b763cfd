/* rt_lua_netaddr.h - internal-address checks for Lua (webhook SSRF). */
#ifndef RT_LUA_NETADDR_H
#define RT_LUA_NETADDR_H

#include <lua.h>

/* Adds is_internal_address and address_in to the table at index table
 * (an absolute index). */
void rt_lua_netaddr_open(lua_State *L, int table);

#endif
