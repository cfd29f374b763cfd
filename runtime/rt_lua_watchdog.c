/* rt_lua_watchdog.c - runaway scripts: a CPU budget per resume and a
 * ceiling on the Lua heap.
 *
 * A script that never yields would freeze the loop: no timeout fires, no
 * request is answered, SIGTERM waits. The watchdog thread (rt_watchdog.c)
 * notices a resume of a task in script code (a task spawned with
 * {script = true}, or between native.script_enter and script_leave: an
 * agent's call, a strategy's run, a script file's loading) running past
 * its budget, or the heap past its limit, and arms a count hook; the
 * hook raises "cpu budget exceeded (N ms)" or "memory limit exceeded
 * (...)" when the code running is a script's (a chunk the
 * registry loaded: native.script_source), so the error ends the agent's
 * attempt or the strategy, never framework bookkeeping. LuaJIT runs no
 * hook inside compiled traces, hence scripts run with the JIT off for
 * their own functions (the registry does jit.off(chunk, true)).
 *
 * The heap is LuaJIT's own count (lua_gc LUA_GCCOUNT), read by a thin
 * wrapper of its allocator once per RT_WD_SAMPLE bytes allocated and for
 * every block of that size or more: the read is published for the
 * watchdog thread, and an allocation that would take the heap past 1.5
 * times the limit fails at once ("not enough memory"), the last line
 * before an OOM kill. (Counting every allocation exactly cost ~3 % of an
 * in-memory execution; small blocks between two reads can overshoot the
 * hard line by at most RT_WD_SAMPLE.)
 *
 * One watchdog per process: hooks get no user data, so the hook finds it
 * through rt__wd. */
#include "rt_lua_watchdog.h"

#include <lauxlib.h>
#include <string.h>

#define RT_WD_CPU 1
#define RT_WD_MEM 2
/* Instructions between two hook calls once armed. */
#define RT_WD_HOOK_COUNT 1000
/* Bytes allocated between two reads of the heap's size. */
#define RT_WD_SAMPLE (256 * 1024)

static rt_lua_wd_t rt__wd;

static void rt__hook(lua_State *L, lua_Debug *ar);

static void rt__arm(rt_lua_wd_t *wd, int reason)
{
    atomic_fetch_or(&wd->reasons, reason);
    /* lua_sethook is meant to be called asynchronously (luajit.c does it
     * from its SIGINT handler); hooks are global to the VM. */
    lua_sethook(wd->L, rt__hook, LUA_MASKCOUNT, RT_WD_HOOK_COUNT);
}

/* On the watchdog thread. */
static void rt__on_overrun(void *arg, uint64_t seq)
{
    rt_lua_wd_t *wd = arg;
    atomic_store(&wd->doomed, seq);
    wd->overruns++;
    rt__arm(wd, RT_WD_CPU);
}

static void rt__on_memory(void *arg, long long mem)
{
    rt_lua_wd_t *wd = arg;
    (void)mem;
    if (!(atomic_load(&wd->reasons) & RT_WD_MEM))
        rt__arm(wd, RT_WD_MEM);
}

/* The Lua heap's size in bytes (to the KB). lua_gc(LUA_GCCOUNT) only
 * reads LuaJIT's counter: safe from inside its allocator too. */
static long long rt__heap(lua_State *L)
{
    return (long long)lua_gc(L, LUA_GCCOUNT, 0) * 1024;
}

/* Is the function running at level 0 script code? */
static int rt__in_script(lua_State *L, rt_lua_wd_t *wd)
{
    lua_Debug d;
    int yes;
    memset(&d, 0, sizeof d);
    if (!lua_getstack(L, 0, &d) || !lua_getinfo(L, "S", &d) || d.source == NULL)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, wd->sources_ref);
    lua_getfield(L, -1, d.source);
    yes = lua_toboolean(L, -1);
    lua_pop(L, 2);
    return yes;
}

static void rt__hook(lua_State *L, lua_Debug *ar)
{
    rt_lua_wd_t *wd = &rt__wd;
    int reasons = atomic_load(&wd->reasons);
    long long limit, heap = rt__heap(L);
    (void)ar;
    atomic_store_explicit(&wd->w.mem, heap, memory_order_relaxed);
    if ((reasons & RT_WD_CPU) &&
        (!atomic_load(&wd->w.active) ||
         atomic_load(&wd->doomed) != atomic_load(&wd->w.seq))) {
        atomic_fetch_and(&wd->reasons, ~RT_WD_CPU); /* that resume ended */
        reasons &= ~RT_WD_CPU;
    }
    limit = atomic_load(&wd->w.mem_limit);
    if ((reasons & RT_WD_MEM) && (limit == 0 || heap <= limit)) {
        atomic_fetch_and(&wd->reasons, ~RT_WD_MEM);
        reasons &= ~RT_WD_MEM;
        wd->collected = 0;
    }
    if (reasons == 0) {
        lua_sethook(L, NULL, 0, 0);
        return;
    }
    /* Framework code goes on; the hook stays armed until script code
     * runs or the reason is gone. */
    if (!rt__in_script(L, wd))
        return;
    /* From now on the hook runs at every instruction: a script that
     * catches the error with pcall and goes on is interrupted again at
     * its very next instruction, so the error reaches the framework. */
    lua_sethook(L, rt__hook, LUA_MASKCOUNT, 1);
    if (reasons & RT_WD_MEM) {
        if (!wd->collected) { /* garbage is not a script's fault */
            wd->collected = 1;
            lua_gc(L, LUA_GCCOLLECT, 0);
            heap = rt__heap(L);
            atomic_store_explicit(&wd->w.mem, heap, memory_order_relaxed);
            if (heap <= limit)
                return;
        }
        wd->mem_interrupts++;
        luaL_error(L, "memory limit exceeded (Lua heap %d MB, limit %d MB)",
                   (int)(heap >> 20), (int)(limit >> 20));
    }
    wd->cpu_interrupts++;
    luaL_error(L, "cpu budget exceeded (%d ms)",
               (int)atomic_load(&wd->w.budget_ms));
}

void rt_lua_watchdog_enter(rt_lua_wd_t *wd)
{
    if (wd->running)
        rt_watchdog_enter(&wd->w);
}

void rt_lua_watchdog_leave(rt_lua_wd_t *wd)
{
    if (!wd->running)
        return;
    rt_watchdog_leave(&wd->w);
    /* A CPU alarm ends with its resume; a memory alarm waits for script
     * code (the hook clears itself once the heap is back under). */
    if (atomic_load(&wd->reasons) == RT_WD_CPU) {
        atomic_store(&wd->reasons, 0);
        lua_sethook(wd->L, NULL, 0, 0);
    }
}

/* The allocator's slow path: reads the heap, publishes it, and refuses
 * a block that would take it past the hard line. Returns 1 to refuse. */
static __attribute__((noinline)) int rt__sample(rt_lua_wd_t *wd, void *ptr,
                                                size_t osize, size_t nsize)
{
    /* LuaJIT adds a block to its count after the allocator returns. */
    long long heap = rt__heap(wd->L);
    long long delta = (long long)nsize - (ptr != NULL ? (long long)osize : 0);
    wd->until = RT_WD_SAMPLE;
    atomic_store_explicit(&wd->w.mem, heap, memory_order_relaxed);
    if (delta > 0 && wd->hard > 0 && heap + delta > wd->hard) {
        wd->refused++;
        return 1;
    }
    return 0;
}

static void *rt__alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    rt_lua_wd_t *wd = ud;
    if ((wd->until -= (long long)nsize) < 0 &&
        rt__sample(wd, ptr, osize, nsize))
        return NULL;
    return wd->alloc(wd->alloc_ud, ptr, osize, nsize);
}

static void rt__set_heap(rt_lua_wd_t *wd, long long limit)
{
    atomic_store(&wd->w.mem_limit, limit);
    wd->hard = limit > 0 ? limit + limit / 2 : 0;
}

int rt_lua_watchdog_start(lua_State *L, unsigned budget_ms, long long heap)
{
    rt_lua_wd_t *wd = &rt__wd;
    int rc;
    if (wd->running)
        return 0;
    wd->L = L;
    rc = rt_watchdog_start(&wd->w, budget_ms, rt__on_overrun, rt__on_memory,
                           wd);
    if (rc != 0)
        return rc;
    wd->alloc = lua_getallocf(L, &wd->alloc_ud);
    wd->until = 0; /* the first allocation reads the heap */
    lua_setallocf(L, rt__alloc, wd);
    rt__set_heap(wd, heap);
    wd->running = 1;
    return 0;
}

void rt_lua_watchdog_stop(lua_State *L)
{
    rt_lua_wd_t *wd = &rt__wd;
    if (!wd->running)
        return;
    rt_watchdog_stop(&wd->w);
    lua_sethook(L, NULL, 0, 0);
    lua_setallocf(L, wd->alloc, wd->alloc_ud);
    wd->running = 0;
}

/* native.script_enter(): the running task runs script code from now on
 * (an agent's call, a strategy's run): its resumes are timed. Nests. */
static int l_script_enter(lua_State *L)
{
    rt_lua_sched_t *ls = lua_touserdata(L, lua_upvalueindex(1));
    rt_lua_task_t *t = (rt_lua_task_t *)ls->sched.current;
    if (t != NULL && t->script++ == 0 && ls->wd != NULL)
        rt_lua_watchdog_enter(ls->wd);
    return 0;
}

/* native.script_leave(...) -> ...: the matching end; returns its
 * arguments, so `return script_leave(fn(...))` passes results through. */
static int l_script_leave(lua_State *L)
{
    rt_lua_sched_t *ls = lua_touserdata(L, lua_upvalueindex(1));
    rt_lua_task_t *t = (rt_lua_task_t *)ls->sched.current;
    if (t != NULL && t->script > 0 && --t->script == 0 && ls->wd != NULL)
        rt_lua_watchdog_leave(ls->wd);
    return lua_gettop(L);
}

int chorus_resume_long(void)
{
    return rt__wd.running && rt_watchdog_long(&rt__wd.w);
}

/* native.resume_long() -> boolean (chorus_resume_long, for a host whose
 * FFI cannot find the export). */
static int l_resume_long(lua_State *L)
{
    lua_pushboolean(L, chorus_resume_long());
    return 1;
}

/* native.script_source(chunkname): code loaded under that chunk name is
 * script code (the watchdog may interrupt it). */
static int l_script_source(lua_State *L)
{
    luaL_checkstring(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt__wd.sources_ref);
    lua_pushvalue(L, 1);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    return 0;
}

/* native.watchdog_config({cpu_budget_ms = n, heap_limit_mb = n}) */
static int l_watchdog_config(lua_State *L)
{
    rt_lua_wd_t *wd = &rt__wd;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "cpu_budget_ms");
    if (!lua_isnil(L, -1)) {
        lua_Integer ms = luaL_checkinteger(L, -1);
        if (ms < 0 || ms > 3600000)
            return luaL_error(L, "cpu_budget_ms must be 0..3600000");
        rt_watchdog_set_budget(&wd->w, (unsigned)ms);
    }
    lua_getfield(L, 1, "heap_limit_mb");
    if (!lua_isnil(L, -1)) {
        lua_Integer mb = luaL_checkinteger(L, -1);
        if (mb < 0 || mb > (1 << 24))
            return luaL_error(L, "heap_limit_mb must be 0..16777216");
        rt__set_heap(wd, (long long)mb << 20);
    }
    return 0;
}

/* native.watchdog_stats() -> {running, cpu_budget_ms, heap_limit_bytes,
 * heap_bytes, overruns, cpu_interrupts, mem_interrupts, refused} */
static int l_watchdog_stats(lua_State *L)
{
    rt_lua_wd_t *wd = &rt__wd;
    lua_createtable(L, 0, 8);
    lua_pushboolean(L, wd->running);
    lua_setfield(L, -2, "running");
    lua_pushnumber(L, wd->running ? atomic_load(&wd->w.budget_ms) : 0);
    lua_setfield(L, -2, "cpu_budget_ms");
    lua_pushnumber(L, (lua_Number)atomic_load(&wd->w.mem_limit));
    lua_setfield(L, -2, "heap_limit_bytes");
    lua_pushnumber(L, (lua_Number)rt__heap(L));
    lua_setfield(L, -2, "heap_bytes");
    lua_pushnumber(L, (lua_Number)wd->overruns);
    lua_setfield(L, -2, "overruns");
    lua_pushnumber(L, (lua_Number)wd->cpu_interrupts);
    lua_setfield(L, -2, "cpu_interrupts");
    lua_pushnumber(L, (lua_Number)wd->mem_interrupts);
    lua_setfield(L, -2, "mem_interrupts");
    lua_pushnumber(L, (lua_Number)wd->refused);
    lua_setfield(L, -2, "refused");
    return 1;
}

static const luaL_Reg funcs[] = {
    {"script_source", l_script_source},
    {"resume_long", l_resume_long},
    {"watchdog_config", l_watchdog_config},
    {"watchdog_stats", l_watchdog_stats},
    {NULL, NULL},
};
static const luaL_Reg task_funcs[] = {
    {"script_enter", l_script_enter},
    {"script_leave", l_script_leave},
    {NULL, NULL},
};

void rt_lua_watchdog_open(lua_State *L, rt_lua_sched_t *ls, int table)
{
    lua_newtable(L);
    rt__wd.sources_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ls->wd = &rt__wd;
    lua_pushvalue(L, table);
    luaL_setfuncs(L, funcs, 0);
    lua_pushlightuserdata(L, ls);
    luaL_setfuncs(L, task_funcs, 1);
    lua_pop(L, 1);
}
