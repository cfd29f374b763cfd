/* rt_lua_pg.h - the Lua face of the PostgreSQL engine (rt_pg.h). */
#ifndef RT_LUA_PG_H
#define RT_LUA_PG_H

#include "rt_lua_sched.h"

/* Adds pg_new to the table at absolute index table. Connections are
 * userdata whose methods yield the calling task (see rt_lua_pg.c); each is
 * closed by conn:close() or when collected. */
void rt_lua_pg_open(lua_State *L, rt_lua_sched_t *ls, int table);

#endif
