/* rt_lua_http.h - the Lua face of the HTTP/WebSocket server (rt_http.h). */
#ifndef RT_LUA_HTTP_H
#define RT_LUA_HTTP_H

#include "rt_lua_sched.h"

/* Adds http_listen to the table at absolute index table. Servers still
 * open when the Lua state closes are closed at once (pending requests get
 * 503, WebSockets are shut down); the loop finishes that afterwards. */
void rt_lua_http_open(lua_State *L, rt_lua_sched_t *ls, int table);

#endif
