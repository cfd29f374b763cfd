/* rt_lua_gc.h - GC pacing by heap size: collect sooner once the Lua heap
 * passes a soft limit, so memory stays near what is live. */
#ifndef RT_LUA_GC_H
#define RT_LUA_GC_H

#include <lua.h>
#include <stddef.h>
#include <uv.h>

typedef struct {
    uv_timer_t timer;
    lua_State *L;
    size_t soft; /* bytes of Lua heap under which LuaJIT's defaults hold */
    int pause;   /* the pause and step multiplier last set */
    int stepmul;
} rt_lua_gc_t;

/* The pause (%) for a heap of heap bytes with soft limit soft: LuaJIT's
 * 200 (collect when the heap doubles) up to the limit, then less and less
 * headroom as the heap grows: 100 + 100 * soft / heap, at least 110. */
int rt_lua_gc_pause_for(size_t heap, size_t soft);

/* Starts pacing L's collector every 100 ms (the timer does not keep the
 * loop alive). soft == 0 turns pacing off. Returns 0 or a uv error. */
int rt_lua_gc_start(rt_lua_gc_t *g, uv_loop_t *loop, lua_State *L, size_t soft);
/* Stops the timer and closes its handle (run the loop once to finish). */
void rt_lua_gc_stop(rt_lua_gc_t *g);

#endif
