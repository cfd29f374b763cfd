/* rt_lua_curl.h - the Lua face of the HTTP client engine (rt_curl.h). */
#ifndef RT_LUA_CURL_H
#define RT_LUA_CURL_H

#include "rt_lua_sched.h"

/* Adds curl_request and curl_active to the table at absolute index table.
 * The engine (one curl multi for the loop) is created at the first request
 * and closed when the Lua state is closed. */
void rt_lua_curl_open(lua_State *L, rt_lua_sched_t *ls, int table);

#endif
