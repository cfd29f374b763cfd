/* main.c - the chorus binary: one libuv loop, one LuaJIT state, and the
 * Lua CLI (lua/chorus/cli.lua) running as the root task. */
#include <lauxlib.h>
#include <lualib.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "rt_home.h"
#include "rt_lua_boot.h"
#include "rt_lua_gc.h"
#include "rt_lua_watchdog.h"

/* The Lua side of start-up: a string chunk is fine here because busted's
 * runner is called from a file chunk (lua/chorus/cli/test.lua). */
static const char boot_chunk[] = "return require('chorus.cli').main(...)";

/* Maps the main task's outcome to the process exit code. */
static int exit_code(lua_State *L, rt_lua_task_t *main_task)
{
    int code = 1, n;
    lua_pushvalue(L, -1); /* the task userdata */
    lua_getfield(L, -1, "result");
    lua_insert(L, -2);
    lua_call(L, 1, LUA_MULTRET);
    n = lua_gettop(L) - 1;
    (void)main_task;
    if (lua_toboolean(L, -n)) {
        code = n >= 2 && lua_isnumber(L, -n + 1) ? (int)lua_tointeger(L, -n + 1)
                                                 : 0;
    } else if (n >= 2 && !lua_isnil(L, -n + 1)) {
        const char *msg = lua_tostring(L, -n + 1);
        fprintf(stderr, "chorus: %s\n", msg ? msg : "(error object)");
    }
    lua_settop(L, 1);
    return code;
}

/* How long the end may take: tasks cancelled, handles closed. */
#define RT_SHUTDOWN_MS 5000
/* Default of CHORUS_GC_SOFT_MB: far above a 1k-in-flight heap (~16 MB) or
 * an API server's (~30-70 MB), so only big processes pay for the extra
 * collector work. At 100k executions in flight 128 keeps VmHWM at ~905-920
 * MiB; 160 let it reach ~970 MiB, 256 ~1,070 MiB (bench/RESULTS.md). */
#define RT_GC_SOFT_MB_DEFAULT 128

/* CHORUS_GC_SOFT_MB: the Lua heap size past which the collector runs
 * sooner (rt_lua_gc.c); 0 turns that off. Returns 0, or -1 when the value
 * is not a whole number of megabytes. */
static int gc_soft_bytes(size_t *out)
{
    const char *v = getenv("CHORUS_GC_SOFT_MB");
    char *end;
    unsigned long long mb;
    *out = (size_t)RT_GC_SOFT_MB_DEFAULT << 20;
    if (v == NULL || *v == '\0')
        return 0;
    errno = 0;
    mb = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || *v == '-' || mb > (1ull << 24))
        return -1;
    *out = (size_t)mb << 20;
    return 0;
}

/* CHORUS_CPU_BUDGET_MS: how long one resume of script code may run
 * before it is interrupted ("cpu budget exceeded"); 0 = no budget. */
#define RT_CPU_BUDGET_MS_DEFAULT 200
/* CHORUS_HEAP_LIMIT_MB: the Lua heap past which script code is
 * interrupted ("memory limit exceeded"; allocations past 1.5 times it
 * fail); 0 = none. By default half of the memory the process may use
 * (its cgroup's limit, else the machine's), at most this: */
#define RT_HEAP_LIMIT_MB_MAX_DEFAULT 8192

/* A whole number from the environment: 0 and *out = def when unset, -1
 * when it is not a whole number within max. */
static int env_uint(const char *name, unsigned long long def,
                    unsigned long long max, unsigned long long *out)
{
    const char *v = getenv(name);
    char *end;
    unsigned long long n;
    *out = def;
    if (v == NULL || *v == '\0')
        return 0;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || *v == '-' || n > max)
        return -1;
    *out = n;
    return 0;
}

static unsigned long long default_heap_limit_mb(void)
{
    uint64_t total = uv_get_constrained_memory();
    uint64_t phys = uv_get_total_memory();
    unsigned long long mb;
    if (total == 0 || (phys != 0 && total > phys))
        total = phys;
    mb = (unsigned long long)(total / 2) >> 20;
    if (mb == 0 || mb > RT_HEAP_LIMIT_MB_MAX_DEFAULT)
        mb = RT_HEAP_LIMIT_MB_MAX_DEFAULT;
    return mb;
}

/* The directory of the Lua tree and built-in scripts (rt_home.h): NULL
 * after saying on stderr where it looked. */
static char *find_home(void)
{
    char *exe = rt_home_exe(), *err, *home;
    rt_home_search_t s = {getenv("CHORUS_HOME"), exe, CHORUS_EXE_REL_HOME,
                          CHORUS_DEFAULT_HOME};
    home = rt_home_find(&s, &err);
    if (home == NULL)
        fprintf(stderr, "chorus: %s\n", err ? err : "out of memory");
    free(err);
    free(exe);
    return home;
}

static int shutdown_expired;

static void shutdown_watchdog(uv_timer_t *t)
{
    shutdown_expired = 1;
    uv_stop(t->loop);
}

int main(int argc, char **argv)
{
    uv_timer_t watchdog;
    int watchdog_ok = 0, gc_ok = 0;
    rt_lua_gc_t gc;
    size_t gc_soft;
    uv_loop_t loop;
    lua_State *L;
    rt_lua_sched_t *ls;
    rt_lua_stdin_t *in = NULL;
    rt_lua_task_t *main_task;
    char *home;
    unsigned long long cpu_budget_ms, heap_limit_mb;
    int i, code = 1;

    /* Checked before anything is allocated: nothing to release on exit. */
    if (gc_soft_bytes(&gc_soft) != 0) {
        fprintf(stderr,
                "chorus: CHORUS_GC_SOFT_MB must be a whole number "
                "of megabytes (0 = off), got '%s'\n",
                getenv("CHORUS_GC_SOFT_MB"));
        return 2;
    }
    if (env_uint("CHORUS_CPU_BUDGET_MS", RT_CPU_BUDGET_MS_DEFAULT, 3600000,
                 &cpu_budget_ms) != 0) {
        fprintf(stderr,
                "chorus: CHORUS_CPU_BUDGET_MS must be a whole number "
                "of milliseconds up to 3600000 (0 = none), got '%s'\n",
                getenv("CHORUS_CPU_BUDGET_MS"));
        return 2;
    }
    if (env_uint("CHORUS_HEAP_LIMIT_MB", default_heap_limit_mb(), 1u << 24,
                 &heap_limit_mb) != 0) {
        fprintf(stderr,
                "chorus: CHORUS_HEAP_LIMIT_MB must be a whole number "
                "of megabytes (0 = none), got '%s'\n",
                getenv("CHORUS_HEAP_LIMIT_MB"));
        return 2;
    }
    home = find_home();
    if (home == NULL)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&loop) != 0) {
        fprintf(stderr, "chorus: cannot initialise the event loop\n");
        return 1;
    }
    L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "chorus: cannot create the Lua state\n");
        return 1;
    }
    luaL_openlibs(L);
    rt_lua_boot_paths(L, home);
    ls = rt_lua_boot_native(L, &loop, home, CHORUS_VERSION, &in);
    if (ls == NULL || in == NULL) {
        fprintf(stderr, "chorus: out of memory\n");
        return 1;
    }

    gc_ok = rt_lua_gc_start(&gc, &loop, L, gc_soft) == 0;
    if (rt_lua_watchdog_start(L, (unsigned)cpu_budget_ms,
                              (long long)heap_limit_mb << 20) != 0)
        fprintf(stderr, "chorus: warning: no watchdog thread: runaway "
                        "scripts cannot be interrupted\n");

    /* Stack: [userdata of main task] once spawned. */
    if (luaL_loadbuffer(L, boot_chunk, sizeof(boot_chunk) - 1, "=boot")) {
        fprintf(stderr, "chorus: %s\n", lua_tostring(L, -1));
        return 1;
    }
    lua_newtable(L);
    lua_pushstring(L, argv[0]);
    lua_rawseti(L, -2, 0);
    for (i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_pushvalue(L, -1);
    lua_setglobal(L, "arg"); /* busted and scripts read the global arg */
    main_task = rt_lua_task_spawn(ls, L, 1, 1, NULL);
    lua_settop(L, 0);
    if (main_task == NULL) {
        fprintf(stderr, "chorus: out of memory\n");
        return 1;
    }
    /* Keep its userdata at index 1 so result() reads the outcome. */
    rt_lua_task_push(L, ls, main_task);

    while (!rt_task_is_done(&main_task->task)) {
        if (uv_run(&loop, UV_RUN_ONCE) == 0 &&
            !rt_task_is_done(&main_task->task)) {
            rt_sched_drain(&ls->sched);
            if (!rt_task_is_done(&main_task->task) &&
                ls->sched.ready_head == NULL) {
                fprintf(stderr, "chorus: deadlock: the main task waits for "
                                "something that can never happen\n");
                break;
            }
        }
    }
    if (rt_task_is_done(&main_task->task))
        code = exit_code(L, main_task);

    /* Shutdown: every task ends, then every handle closes. */
    /* A task that ignores its cancellation, or a handle nobody closes,
     * must not keep the process from exiting: the watchdog ends the wait
     * (it does not keep the loop alive itself). */
    if (uv_timer_init(&loop, &watchdog) == 0) {
        watchdog_ok = 1;
        (void)uv_timer_start(&watchdog, shutdown_watchdog, RT_SHUTDOWN_MS, 0);
        uv_unref((uv_handle_t *)&watchdog);
    }
    rt_lua_sched_shutdown(ls);
    while (!shutdown_expired && ls->sched.live > 0 &&
           uv_run(&loop, UV_RUN_ONCE) != 0)
        rt_sched_drain(&ls->sched);
    if (ls->sched.live > 0) {
        fprintf(stderr,
                "chorus: warning: %llu tasks still running %d ms "
                "after the end; exiting anyway\n",
                (unsigned long long)ls->sched.live, RT_SHUTDOWN_MS);
        fflush(stdout);
        return code;
    }
    rt_lua_stdin_close(in);
    if (gc_ok)
        rt_lua_gc_stop(&gc);
    rt_lua_watchdog_stop(L);
    lua_close(L);
    free(home);
    rt_lua_sched_free(ls);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (watchdog_ok)
        uv_close((uv_handle_t *)&watchdog, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (uv_loop_close(&loop) != 0)
        fprintf(stderr, "chorus: warning: handles left open at exit\n");
    fflush(stdout);
    return code;
}
