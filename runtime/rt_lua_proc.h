/* rt_lua_proc.h - child processes through libuv (uv_spawn): start one with
 * an argv (no shell), signal it, and wait for its exit from a task. */
#ifndef RT_LUA_PROC_H
#define RT_LUA_PROC_H

#include "rt_lua_sched.h"

/* Adds spawn_process and exepath to the table at absolute index table. */
void rt_lua_proc_open(lua_State *L, rt_lua_sched_t *ls, int table);

#endif
