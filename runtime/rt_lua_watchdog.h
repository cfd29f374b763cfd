/* rt_lua_watchdog.h - runaway scripts: a CPU budget per resume and a
 * ceiling on the Lua heap, enforced by interrupting script code. */
#ifndef RT_LUA_WATCHDOG_H
#define RT_LUA_WATCHDOG_H

#include <lua.h>

#include "rt_lua_sched.h"
#include "rt_watchdog.h"

typedef struct rt_lua_wd {
    rt_watchdog_t w;
    lua_State *L;
    int running;        /* the thread runs (CPU budget and heap ceiling) */
    atomic_int reasons; /* RT_WD_CPU | RT_WD_MEM: why the hook is armed */
    atomic_uint_fast64_t doomed; /* the resume over its CPU budget */
    int sources_ref; /* registry: chunk name -> true for script code */
    lua_Alloc alloc; /* LuaJIT's allocator, wrapped */
    void *alloc_ud;
    long long until; /* bytes the allocator gives before the next read */
    long long hard;  /* allocations past this fail (0: none) */
    int collected;   /* a full collection ran for this memory alarm */
    unsigned long long overruns, cpu_interrupts, mem_interrupts, refused;
} rt_lua_wd_t;

/* Adds script_source, watchdog_config and watchdog_stats to the table at
 * index table, and hooks the scheduler's resumes. */
void rt_lua_watchdog_open(lua_State *L, rt_lua_sched_t *ls, int table);
/* Starts the watchdog thread with a CPU budget per resume (ms, 0 = none)
 * and a Lua heap limit (bytes, 0 = none; allocations past 1.5 times it
 * fail). Returns 0 or an errno value. */
int rt_lua_watchdog_start(lua_State *L, unsigned budget_ms, long long heap);
/* Stops the thread and unwraps the allocator; before lua_close. */
void rt_lua_watchdog_stop(lua_State *L);

/* 1 when the running resume of script code has used a quarter of its
 * CPU budget, else 0: exported (ENABLE_EXPORTS) for LuaJIT's FFI, which
 * compiles the call into the caller's trace (chorus.sched.yield_due). */
int chorus_resume_long(void);

/* Called by the scheduler around each resume. */
void rt_lua_watchdog_enter(rt_lua_wd_t *wd);
void rt_lua_watchdog_leave(rt_lua_wd_t *wd);

#endif
