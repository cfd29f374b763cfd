/* fuzz_common.c - the state, the task runner and the Lua coverage shared
 * by the libFuzzer targets of tests/fuzz. */
#include "fuzz_common.h"

#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "rt_lua_boot.h"

/* A harness's task runs the API or the validator in memory: it should be
 * done in a few turns. These bounds only turn a hang into a crash. */
#define FZ_MAX_TURNS 100000UL
#define FZ_MAX_MS 5000

/* Lua line coverage, fed to libFuzzer as extra counters: without it the
 * fuzzer would only see the C code, and the code under test is Lua. */
#define FZ_COV_SIZE (1u << 16)
__attribute__((section("__libfuzzer_extra_counters"),
               used)) static unsigned char fz_cov[FZ_COV_SIZE];

typedef struct {
    uv_loop_t loop;
    uv_timer_t watchdog; /* bounds the wall time of one fz_run */
    lua_State *L;
    rt_lua_sched_t *ls; /* the scheduler of L, freed at exit */
    rt_lua_stdin_t *in; /* native.read_line's reader, freed at exit */
    int harness_ref;    /* registry ref of the harness module table */
    int expired;        /* the watchdog fired during this fz_run */
    int ready;          /* all of the above is set up (until exit) */
} fz_t;

static fz_t fz;
static uint32_t fz_cov_prev; /* previous line's hash: edges, not lines */
static int fz_cov_on = 1;    /* 0 while a mutation runs: not the target's */

/* libFuzzer's own mutation, for fz_mutate. */
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

static void fz_die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz: %s%s%s\n", what, detail ? ": " : "",
            detail ? detail : "");
    fflush(stderr);
    abort();
}

/* Line hook: counts (previous line, this line) pairs of chorus's own
 * modules. A chunk's source string lives as long as its code, so its
 * address names the file within this process. */
static void fz_cov_hook(lua_State *L, lua_Debug *ar)
{
    uint32_t cur;
    unsigned char *c;
    if (!fz_cov_on || ar->event != LUA_HOOKLINE || !lua_getinfo(L, "S", ar))
        return;
    if (ar->source == NULL || strstr(ar->source, "/lua/chorus/") == NULL)
        return;
    cur = (uint32_t)((uintptr_t)ar->source * 2654435761u) ^
          ((uint32_t)ar->currentline * 40503u);
    c = &fz_cov[(cur ^ fz_cov_prev) & (FZ_COV_SIZE - 1)];
    if (*c != 255)
        (*c)++;
    fz_cov_prev = cur >> 1;
}

static void fz_watchdog_cb(uv_timer_t *t)
{
    (void)t;
    fz.expired = 1;
}

/* Mirrors main.c's shutdown: every task ends, then every handle closes, so
 * LeakSanitizer's check at exit sees a clean process. */
static void fz_shutdown(void)
{
    if (!fz.ready)
        return;
    fz.ready = 0;
    rt_lua_sched_shutdown(fz.ls);
    while (fz.ls->sched.live > 0 && uv_run(&fz.loop, UV_RUN_ONCE) != 0)
        rt_sched_drain(&fz.ls->sched);
    uv_close((uv_handle_t *)&fz.watchdog, NULL);
    rt_lua_stdin_close(fz.in);
    luaL_unref(fz.L, LUA_REGISTRYINDEX, fz.harness_ref);
    lua_close(fz.L);
    rt_lua_sched_free(fz.ls);
    uv_run(&fz.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&fz.loop) != 0)
        fprintf(stderr, "fuzz: warning: handles left open at exit\n");
}

/* Checks the n values fz_run pushed for a harness function that returns
 * true | nil, err: unless both the task and the function succeeded, prints
 * "fuzz: <what> raised: ..." or "fuzz: <what> check failed: <err>" and
 * aborts. Pops the values. */
static void fz_expect_true(lua_State *L, int n, const char *what)
{
    const char *kind = NULL, *msg = NULL;
    if (!lua_toboolean(L, -n)) {
        kind = "raised";
        msg = n >= 2 ? lua_tostring(L, -n + 1) : NULL;
    } else if (n < 2 || !lua_toboolean(L, -n + 1)) {
        kind = "check failed";
        msg = n >= 3 ? lua_tostring(L, -n + 2) : NULL;
    }
    if (kind != NULL) {
        fprintf(stderr, "fuzz: %s %s: %s\n", what, kind,
                msg ? msg : "(no message)");
        fflush(stderr);
        abort();
    }
    lua_pop(L, n);
}

/* Loads tests/fuzz/<harness>.lua, keeps the module and runs its setup()
 * (when it has one) in a task. */
static void fz_load_harness(const char *home, const char *harness)
{
    lua_State *L = fz.L;
    int n;
    lua_pushfstring(L, "%s/tests/fuzz/%s.lua", home, harness);
    if (luaL_loadfile(L, lua_tostring(L, -1)) != 0 ||
        lua_pcall(L, 0, 1, 0) != 0)
        fz_die("cannot load the harness", lua_tostring(L, -1));
    if (!lua_istable(L, -1))
        fz_die("the harness must return a table", harness);
    fz.harness_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1); /* the path */
    fz_harness_push(L, "setup");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    n = fz_run(L, 0);
    fz_expect_true(L, n, "setup");
}

void fz_init_args(int *argc, char ***argv)
{
    static char flag[] = "-detect_leaks=0";
    char **args;
    int i;
    for (i = 1; i < *argc; i++)
        if (strncmp((*argv)[i], "-detect_leaks=", 14) == 0)
            return;
    /* Kept for the life of the process, as libFuzzer keeps argv. */
    args = malloc(((size_t)*argc + 2) * sizeof(*args));
    if (args == NULL)
        fz_die("out of memory", NULL);
    args[0] = (*argv)[0];
    args[1] = flag;
    for (i = 1; i < *argc; i++)
        args[i + 1] = (*argv)[i];
    args[*argc + 1] = NULL;
    *argc += 1;
    *argv = args;
}

lua_State *fz_state(const char *harness)
{
    const char *home = getenv("CHORUS_HOME");
    const char *cov = getenv("CHORUS_FUZZ_LUA_COV");
    if (fz.ready)
        return fz.L;
    if (home == NULL || *home == '\0')
        home = CHORUS_DEFAULT_HOME;
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&fz.loop) != 0)
        fz_die("cannot initialise the event loop", NULL);
    if (uv_timer_init(&fz.loop, &fz.watchdog) != 0)
        fz_die("cannot create the watchdog timer", NULL);
    fz.L = luaL_newstate();
    if (fz.L == NULL)
        fz_die("cannot create the Lua state", NULL);
    luaL_openlibs(fz.L);
    if (cov == NULL || strcmp(cov, "0") != 0)
        lua_sethook(fz.L, fz_cov_hook, LUA_MASKLINE, 0);
    rt_lua_boot_paths(fz.L, home);
    /* Harnesses share modules of tests/fuzz (fuzz_mutate). */
    lua_getglobal(fz.L, "package");
    lua_pushfstring(fz.L, "%s/tests/fuzz/?.lua;", home);
    lua_getfield(fz.L, -2, "path");
    lua_concat(fz.L, 2);
    lua_setfield(fz.L, -2, "path");
    lua_pop(fz.L, 1);
    fz.ls = rt_lua_boot_native(fz.L, &fz.loop, home, CHORUS_VERSION, &fz.in);
    if (fz.ls == NULL || fz.in == NULL)
        fz_die("out of memory", NULL);
    fz.harness_ref = LUA_NOREF;
    fz.ready = 1;
    if (atexit(fz_shutdown) != 0)
        fz_die("cannot register the exit handler", NULL);
    fz_load_harness(home, harness);
    return fz.L;
}

void fz_harness_push(lua_State *L, const char *name)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, fz.harness_ref);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

int fz_run(lua_State *L, int nargs)
{
    int base = lua_gettop(L) - nargs - 1; /* just below the function */
    unsigned long turns = 0;
    rt_lua_task_t *task;

    task = rt_lua_task_spawn(fz.ls, L, base + 1, nargs, NULL);
    if (task == NULL)
        fz_die("out of memory", NULL);
    lua_settop(L, base);
    /* Stack: [task userdata]; it holds our reference to the task. */
    rt_lua_task_push(L, fz.ls, task);
    fz.expired = 0;
    if (uv_timer_start(&fz.watchdog, fz_watchdog_cb, FZ_MAX_MS, 0) != 0)
        fz_die("cannot start the watchdog timer", NULL);
    for (;;) {
        rt_sched_drain(&fz.ls->sched);
        if (rt_task_is_done(&task->task))
            break;
        if (++turns > FZ_MAX_TURNS || fz.expired)
            fz_die("hang", "the harness task is not done after its budget "
                           "of loop turns or time");
        (void)uv_run(&fz.loop, UV_RUN_ONCE);
    }
    (void)uv_timer_stop(&fz.watchdog);
    /* Close callbacks and due timers of background work run now. */
    (void)uv_run(&fz.loop, UV_RUN_NOWAIT);
    /* Stack: [task] -> [result..., ] */
    lua_getfield(L, -1, "result");
    lua_insert(L, -2);
    lua_call(L, 1, LUA_MULTRET);
    return lua_gettop(L) - base;
}

void fz_one(const char *harness, const unsigned char *data, size_t size)
{
    lua_State *L = fz_state(harness);
    int n;
    fz_cov_prev = 0;
    fz_harness_push(L, "one");
    lua_pushlstring(L, (const char *)data, size);
    n = fz_run(L, 1);
    fz_expect_true(L, n, "input");
}

size_t fz_mutate(const char *harness, uint8_t *data, size_t size,
                 size_t max_size, unsigned int seed)
{
    lua_State *L = fz_state(harness);
    const char *s;
    size_t n = 0;
    if (seed % 2 == 0)
        return LLVMFuzzerMutate(data, size, max_size);
    fz_cov_on = 0;
    fz_harness_push(L, "mutate");
    lua_pushlstring(L, (const char *)data, size);
    lua_pushnumber(L, (lua_Number)(seed / 2));
    if (lua_pcall(L, 2, 1, 0) != 0)
        fz_die("the harness's mutate raised", lua_tostring(L, -1));
    s = lua_tolstring(L, -1, &n);
    if (s != NULL && n > 0 && n <= max_size)
        memcpy(data, s, n);
    else
        n = 0;
    lua_pop(L, 1);
    fz_cov_on = 1;
    return n > 0 ? n : LLVMFuzzerMutate(data, size, max_size);
}
