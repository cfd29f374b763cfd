/* rt_lua_gc.c - GC pacing by heap size.
 *
 * LuaJIT starts a collection cycle when the heap reaches pause% of what
 * was live after the previous one: with the default 200 the heap peaks at
 * twice the live data. That is cheap in CPU and harmless for small heaps,
 * but with 100k executions in flight it doubles a gigabyte. Past a soft
 * limit the pacer lowers the pause as the heap grows (and raises the step
 * multiplier so a cycle ends before the heap overshoots): more collector
 * work per allocated byte, paid only by processes that hold much. */
#include "rt_lua_gc.h"

#define RT_GC_PERIOD_MS 100
#define RT_GC_MIN_PAUSE 110
#define RT_GC_DEFAULT_PAUSE 200
#define RT_GC_DEFAULT_STEPMUL 200
#define RT_GC_PRESSED_STEPMUL 1000

int rt_lua_gc_pause_for(size_t heap, size_t soft)
{
    double p;
    if (soft == 0 || heap <= soft)
        return RT_GC_DEFAULT_PAUSE;
    p = 100.0 + 100.0 * (double)soft / (double)heap;
    return p < RT_GC_MIN_PAUSE ? RT_GC_MIN_PAUSE : (int)p;
}

static void rt__pace(uv_timer_t *timer)
{
    rt_lua_gc_t *g = timer->data;
    size_t heap = (size_t)lua_gc(g->L, LUA_GCCOUNT, 0) * 1024 +
                  (size_t)lua_gc(g->L, LUA_GCCOUNTB, 0);
    int pause = rt_lua_gc_pause_for(heap, g->soft);
    int stepmul = pause < RT_GC_DEFAULT_PAUSE ? RT_GC_PRESSED_STEPMUL
                                              : RT_GC_DEFAULT_STEPMUL;
    if (pause != g->pause) {
        (void)lua_gc(g->L, LUA_GCSETPAUSE, pause); /* returns the old one */
        g->pause = pause;
    }
    if (stepmul != g->stepmul) {
        (void)lua_gc(g->L, LUA_GCSETSTEPMUL, stepmul);
        g->stepmul = stepmul;
    }
}

int rt_lua_gc_start(rt_lua_gc_t *g, uv_loop_t *loop, lua_State *L, size_t soft)
{
    int rc;
    g->L = L;
    g->soft = soft;
    g->pause = RT_GC_DEFAULT_PAUSE;
    g->stepmul = RT_GC_DEFAULT_STEPMUL;
    rc = uv_timer_init(loop, &g->timer);
    if (rc < 0)
        return rc;
    g->timer.data = g;
    if (soft == 0)
        return 0; /* the handle exists (stop closes it) but never fires */
    rc = uv_timer_start(&g->timer, rt__pace, RT_GC_PERIOD_MS, RT_GC_PERIOD_MS);
    uv_unref((uv_handle_t *)&g->timer);
    return rc;
}

void rt_lua_gc_stop(rt_lua_gc_t *g)
{
    (void)uv_timer_stop(&g->timer); /* cannot fail on an initialised timer */
    uv_close((uv_handle_t *)&g->timer, NULL);
}
