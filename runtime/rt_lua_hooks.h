/* rt_lua_hooks.h - loop event sources that call Lua: file watches, signals. */
#ifndef RT_LUA_HOOKS_H
#define RT_LUA_HOOKS_H

#include "rt_lua_sched.h"

/* Adds watch and on_signal to the table at absolute index table. */
void rt_lua_hooks_open(lua_State *L, rt_lua_sched_t *ls, int table);

#endif
