/* rt_lua_stdin.h - native.read_line(): non-blocking line input. */
#ifndef RT_LUA_STDIN_H
#define RT_LUA_STDIN_H

#include "rt_lua_sched.h"

typedef struct rt_lua_stdin rt_lua_stdin_t;

/* Adds read_line to the table at absolute index table. NULL: no memory. */
rt_lua_stdin_t *rt_lua_stdin_open(lua_State *L, rt_lua_sched_t *ls, int table);
/* Closes the reader; its memory is freed when the loop runs again. */
void rt_lua_stdin_close(rt_lua_stdin_t *in);

#endif
