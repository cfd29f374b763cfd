/* rt_lua_log.h - the Lua face of the log writer (rt_log.h): lines for
 * stderr, written by a thread of their own. */
#ifndef RT_LUA_LOG_H
#define RT_LUA_LOG_H

#include "rt_lua_sched.h"

/* Adds to the table at absolute index table: log_emit and log_format (a
 * line built in C: rt_logline.h), log_setup, log_field, log_secret (how
 * lines look and what they never show), log_write (a line as is),
 * log_flush, log_stats, log_dropped, and environ. Starts a prepare handle
 * and a timer on the scheduler's loop that wake the writer when records
 * wait, at most every few ms (closed when the state is closed; the loop
 * must run once more after lua_close, as it does for every binding). The process's stderr writer
 * is made once and flushed at exit (atexit). */
void rt_lua_log_open(lua_State *L, rt_lua_sched_t *ls, int table);

#endif
