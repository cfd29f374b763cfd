/* rt_lua_sched.c - the Lua face of the scheduler: tasks are coroutines.
 *
 * A task userdata holds a pointer to an rt_lua_task_t (luv style): __gc only
 * drops a reference; the struct is freed when the task is done and no
 * userdata points to it.
 *
 * Coroutines are reused. Each runs a trampoline, run(fn, ...), that calls
 * the task's body and yields a marker with its results, then runs the
 * next body it is resumed with: a finished task's coroutine goes back to
 * a pool (up to RT_LUA_POOL_MAX idle ones) instead of being garbage. A
 * coroutine is ~525 bytes, and a REST request started four tasks; bodies
 * also return into a Lua frame instead of the coroutine's base, which
 * LuaJIT cannot record ("NYI: return to lower frame"). A body that fails
 * kills its coroutine: that one is not reused. */
#include "rt_lua_sched.h"

#include "rt_lua_wait.h"
#include "rt_lua_watchdog.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define RT_TASK_MT "chorus.task"
#define RT_LUA_POOL_MAX 1024

/* Its address is the marker the trampoline yields when a body returned. */
static char lt_body_done;

/* run(fn, ...): the body of every task coroutine. The park body's call
 * drops the last task's fn and arguments from the frame while pooled. */
static const char lt_trampoline[] =
    "local done, yield = ...\n"
    "local function run(fn, ...) return run(yield(done, fn(...))) end\n"
    "return run, function() end\n";

static void lt_resume(rt_task_t *t, rt_wake_t wake);
static void lt_free(rt_task_t *t);
static void lt_done(rt_task_t *t);

static const rt_task_vtable_t lt_vtable = {lt_resume, lt_free, lt_done};

/* The wait of a task parked by native.suspend(): nothing to abort, and
 * only task:wake() (or a cancel) ends it. */
static void lt_park_free(rt_lua_wait_t *w)
{
    free(w);
}
static const rt_lua_wait_vt_t lt_park_vt = {NULL, lt_park_free, NULL};
/* The wait of sleep(0), which ends as soon as it began. */
static const rt_lua_wait_vt_t lt_yield_vt = {NULL, NULL, NULL};

static rt_lua_sched_t *lt_ctx(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

void rt_lua_push_err(lua_State *L, rt_lua_sched_t *ls, int code)
{
    int i = rt_err_index(code);
    if (i >= 0)
        lua_rawgeti(L, LUA_REGISTRYINDEX, ls->words[i]);
    else
        lua_pushstring(L, rt_err_word(code));
}

int rt_lua_fail(lua_State *L, rt_lua_sched_t *ls, int code)
{
    lua_pushnil(L);
    rt_lua_push_err(L, ls, code);
    return 2;
}

int rt_lua_push_wake(lua_State *L, rt_lua_sched_t *ls, rt_wake_t why)
{
    return rt_lua_fail(L, ls, rt_lua_wake_err(why));
}

/* Anchoring. While a task is not done, the registry anchors its coroutine
 * (co_ref) and, once it failed, its error value (err_ref). When it is done
 * its results (or error) move to the environment table of the task's
 * userdata, if one exists ({results...} or {[2] = error}), and the
 * registry lets go: a finished task's results (often the very object that
 * holds the task handle) must not be reachable from the registry, or that
 * cycle could never be collected. */
typedef struct {
    rt_lua_task_t base;
    int err_ref;     /* error value until done (then in the userdata's env) */
    int on_done_fn;  /* fn and arg of task:on_done, to run in a new task */
    int on_done_arg; /* once done (two refs: no table per task) */
    int reusable;    /* co waits in the trampoline (body returned) */
    int nres;        /* results in the userdata's env once done */
} lt_task_t;

static void lt_free(rt_task_t *t)
{
    lt_task_t *lt = (lt_task_t *)t;
    rt_lua_sched_t *ls = (rt_lua_sched_t *)t->sched;
    luaL_unref(ls->L, LUA_REGISTRYINDEX, lt->base.co_ref);
    luaL_unref(ls->L, LUA_REGISTRYINDEX, lt->err_ref);
    luaL_unref(ls->L, LUA_REGISTRYINDEX, lt->on_done_fn);
    luaL_unref(ls->L, LUA_REGISTRYINDEX, lt->on_done_arg);
    free(lt);
}

/* Runs fn(arg), the two values at the top of L, as a new detached task,
 * popping them. Its errors are logged (nobody joins it). */
static void lt_spawn_pair(rt_lua_sched_t *ls, lua_State *L)
{
    rt_lua_task_t *t;
    int base = lua_gettop(L) - 2;
    t = rt_lua_task_spawn(ls, L, base + 1, 1, NULL);
    lua_settop(L, base);
    if (t == NULL)
        return;
    t->report = 1;
    rt_task_release(&t->task);
}

/* Puts co, whose body returned, back in the pool (or lets it go). A run
 * of the park body first drops the last task's values from its frame. */
static void lt_pool_put(rt_lua_sched_t *ls, lua_State *co, int ref)
{
    int nres;
    lua_settop(co, 0);
    if (ls->npool < RT_LUA_POOL_MAX && ls->pool != NULL) {
        lua_rawgeti(ls->L, LUA_REGISTRYINDEX, ls->park_ref);
        lua_xmove(ls->L, co, 1);
        if (lua_resume(co, 1) == LUA_YIELD) {
            nres = lua_gettop(co);
            lua_settop(co, 0);
            if (nres == 1) {
                ls->pool[ls->npool] = co;
                ls->pool_refs[ls->npool++] = ref;
                return;
            }
        }
    }
    luaL_unref(ls->L, LUA_REGISTRYINDEX, ref);
}

/* Pushes the key of task t in the tasks table (a weak table: task ->
 * its userdata): its address shifted past the alignment bits. LuaJIT
 * mixes a light userdata's low bits (always zero for a malloc'd block)
 * poorly into the hash: with the raw address a lookup walked a chain of
 * ~13 keys (460 instructions, callgrind; twice per task), shifted 1-2. */
static void lt_push_key(lua_State *L, const void *t)
{
    lua_pushlightuserdata(L, (void *)((uintptr_t)t >> 3));
}

/* The task is done: hand its results or error to the userdata (if any),
 * drop the registry anchors, and pool the coroutine if it can be reused.
 * Runs from the drain loop on the main state. */
static void lt_done(rt_task_t *t)
{
    lt_task_t *lt = (lt_task_t *)t;
    rt_lua_sched_t *ls = (rt_lua_sched_t *)t->sched;
    lua_State *L = ls->L, *co = lt->base.co;
    int i, n;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->tasks_ref);
    lt_push_key(L, lt);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1)) {
        n = t->outcome == RT_OUTCOME_OK ? lua_gettop(co) : 0;
        if (n > 0 && lua_checkstack(L, n + 1)) { /* env = {results...} */
            lua_createtable(L, n, 0);
            lua_xmove(co, L, n);
            for (i = n; i >= 1; i--)
                lua_rawseti(L, -(i + 1), i);
            lua_setfenv(L, -2);
            lt->nres = n;
        } else if (lt->err_ref != LUA_NOREF) { /* env = {[2] = error} */
            lua_createtable(L, 2, 0);
            lua_rawgeti(L, LUA_REGISTRYINDEX, lt->err_ref);
            lua_rawseti(L, -2, 2);
            lua_setfenv(L, -2);
        }
    }
    lua_pop(L, 2);
    luaL_unref(L, LUA_REGISTRYINDEX, lt->err_ref);
    lt->err_ref = LUA_NOREF;
    if (lt->reusable)
        lt_pool_put(ls, co, lt->base.co_ref);
    else
        luaL_unref(L, LUA_REGISTRYINDEX, lt->base.co_ref);
    lt->base.co_ref = LUA_NOREF;
    lt->base.co = NULL;
    if (lt->on_done_fn != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, lt->on_done_fn);
        lua_rawgeti(L, LUA_REGISTRYINDEX, lt->on_done_arg);
        luaL_unref(L, LUA_REGISTRYINDEX, lt->on_done_fn);
        luaL_unref(L, LUA_REGISTRYINDEX, lt->on_done_arg);
        lt->on_done_fn = lt->on_done_arg = LUA_NOREF;
        lt_spawn_pair(ls, L);
    }
}

static void lt_resume(rt_task_t *t, rt_wake_t wake)
{
    lt_task_t *lt = (lt_task_t *)t;
    rt_lua_sched_t *ls = (rt_lua_sched_t *)t->sched;
    lua_State *co = lt->base.co, *L = ls->L;
    int nargs, rc;

    if (!lt->base.started) {
        lt->base.started = 1;
        nargs = lt->base.nargs;
    } else if (wake != RT_WAKE_OK) {
        nargs = rt_lua_push_wake(co, ls, wake);
    } else if (lt->base.nargs == 0) {
        lua_pushboolean(co, 1);
        nargs = 1;
    } else {
        nargs = lt->base.nargs;
    }
    lt->base.nargs = 0;
    lt->reusable = 0;
    /* The watchdog times resumes of tasks in script code (see
     * rt_lua_watchdog.c); script_enter/leave mark the rest. */
    if (lt->base.script > 0 && ls->wd != NULL)
        rt_lua_watchdog_enter(ls->wd);
    rc = lua_resume(co, nargs);
    if (ls->wd != NULL)
        rt_lua_watchdog_leave(ls->wd);
    if (rc == LUA_YIELD) {
        if (t->state != RT_TASK_RUNNING)
            return; /* suspended on an op (or already re-queued) */
        if (lua_touserdata(co, 1) == &lt_body_done) {
            /* The body returned: its results are above the marker. */
            lua_remove(co, 1);
            lt->reusable = 1;
            rt_task_finish(t, RT_OUTCOME_OK);
            return;
        }
        /* A bare coroutine.yield() in a task body has nobody to resume it. */
        lua_pushliteral(L, "coroutine.yield() outside a chorus wait in a "
                           "task (use chorus.sched functions)");
    } else if (rc == 0) {
        rt_task_finish(t, RT_OUTCOME_OK);
        return;
    } else if (lua_type(co, -1) == LUA_TSTRING) {
        luaL_traceback(L, co, lua_tostring(co, -1), 0);
    } else {
        lua_xmove(co, L, 1); /* non-string error values are kept as is */
    }
    if (lt->base.report) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "chorus: task failed: %s\n", msg ? msg : "(error)");
    }
    lt->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    rt_task_finish(t, RT_OUTCOME_ERROR);
}

static void lt_push_userdata(lua_State *L, rt_lua_sched_t *ls, rt_lua_task_t *t,
                             int adopt)
{
    rt_lua_task_t **ud;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->tasks_ref);
    lt_push_key(L, t);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1)) {
        lua_remove(L, -2);
        if (adopt)
            rt_task_release(&t->task);
        return;
    }
    lua_pop(L, 1);
    ud = lua_newuserdata(L, sizeof(*ud));
    *ud = t;
    if (!adopt)
        rt_task_retain(&t->task);
    luaL_getmetatable(L, RT_TASK_MT);
    lua_setmetatable(L, -2);
    /* No environment yet: the registry anchors the coroutine until the
     * task is done, and lt_done moves it into one then (an env table per
     * task in flight would cost ~90 bytes each). */
    lt_push_key(L, t);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
    lua_remove(L, -2);
}

void rt_lua_task_push(lua_State *L, rt_lua_sched_t *ls, rt_lua_task_t *t)
{
    lt_push_userdata(L, ls, t, 1);
}

static rt_lua_task_t *lt_check(lua_State *L, int idx)
{
    rt_lua_task_t **ud = luaL_checkudata(L, idx, RT_TASK_MT);
    return *ud;
}

rt_lua_task_t *rt_lua_task_spawn(rt_lua_sched_t *ls, lua_State *L, int fn_idx,
                                 int nargs, rt_task_t *parent)
{
    lt_task_t *lt = malloc(sizeof(*lt));
    lua_State *co;
    if (lt == NULL)
        return NULL;
    if (ls->npool > 0) {
        /* Waits in the trampoline's yield: resumed with (fn, args...). */
        ls->npool--;
        co = ls->pool[ls->npool];
        lt->base.co_ref = ls->pool_refs[ls->npool];
        /* Until it runs: a cancelled new task gives it back. */
        lt->reusable = 1;
    } else {
        co = lua_newthread(L);
        lt->base.co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_rawgeti(L, LUA_REGISTRYINDEX, ls->run_ref);
        lua_xmove(L, co, 1);
        lt->reusable = 0;
    }
    lt->base.co = co;
    lt->base.nargs = nargs + 1;
    lt->base.started = 0;
    lt->base.report = 0;
    lt->base.joined = 0;
    lt->base.script = 0;
    lt->err_ref = LUA_NOREF;
    lt->on_done_fn = lt->on_done_arg = LUA_NOREF;
    lt->nres = 0;
    lua_pushvalue(L, fn_idx);
    lua_xmove(L, co, 1);
    lua_xmove(L, co, nargs);
    rt_task_start(&ls->sched, &lt->base.task, &lt_vtable, parent);
    return &lt->base;
}

rt_lua_task_t *rt_lua_current(lua_State *L, rt_lua_sched_t *ls,
                              const char *fname)
{
    rt_lua_task_t *t = (rt_lua_task_t *)ls->sched.current;
    if (t == NULL || t->co != L)
        luaL_error(L,
                   "%s must be called from a chorus task (not the main "
                   "thread or a nested coroutine)",
                   fname);
    return t;
}

/* native.spawn(opts|nil, fn, ...) -> task
 * opts.timeout_ms: deadline; opts.detached: a root task, not a child. */
static int l_spawn(lua_State *L)
{
    rt_lua_sched_t *ls = lt_ctx(L);
    rt_task_t *parent = ls->sched.current;
    double timeout_ms = -1;
    int nargs = lua_gettop(L) - 2, script = 0;
    rt_lua_task_t *t;

    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_getfield(L, 1, "timeout_ms");
        if (!lua_isnil(L, -1)) {
            timeout_ms = luaL_checknumber(L, -1);
            if (!(timeout_ms >= 0 && timeout_ms < 1e12))
                return luaL_argerror(L, 1, "timeout_ms out of range");
        }
        lua_pop(L, 1);
        lua_getfield(L, 1, "detached");
        if (lua_toboolean(L, -1))
            parent = NULL;
        lua_pop(L, 1);
        lua_getfield(L, 1, "script");
        script = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    luaL_checktype(L, 2, LUA_TFUNCTION);
    t = rt_lua_task_spawn(ls, L, 2, nargs < 0 ? 0 : nargs, parent);
    if (t == NULL)
        return luaL_error(L, "out of memory");
    if (timeout_ms >= 0)
        rt_task_set_deadline(&t->task, (uint64_t)timeout_ms);
    t->script = script;
    lt_push_userdata(L, ls, t, 1);
    return 1;
}

/* native.wait(tasks, need) -> true | nil, reason */
static int l_wait(lua_State *L)
{
    rt_lua_sched_t *ls = lt_ctx(L);
    rt_task_t *small[16], **targets = small;
    rt_lua_task_t *cur;
    size_t i, n;
    lua_Integer need;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    n = lua_objlen(L, 1);
    need = luaL_optinteger(L, 2, (lua_Integer)n);
    if (need < 0)
        return luaL_argerror(L, 2, "must be >= 0");
    cur = rt_lua_current(L, ls, "wait");
    if (n > 16) {
        targets = malloc(n * sizeof(*targets));
        if (targets == NULL)
            return luaL_error(L, "out of memory");
    }
    for (i = 0; i < n; i++) {
        rt_lua_task_t **ud;
        lua_rawgeti(L, 1, (int)i + 1);
        ud = luaL_testudata(L, -1, RT_TASK_MT);
        if (ud == NULL) {
            if (targets != small)
                free(targets);
            return luaL_error(L, "wait: element %d is not a task", (int)i + 1);
        }
        targets[i] = &(*ud)->task;
        if (targets[i] == &cur->task) {
            if (targets != small)
                free(targets);
            return luaL_error(L, "wait: a task cannot wait for itself");
        }
        lua_pop(L, 1);
    }
    rc = rt_task_wait(&cur->task, targets, (uint32_t)n, (uint32_t)need);
    if (targets != small)
        free(targets);
    switch (rc) {
    case RT_WAIT_READY:
        lua_pushboolean(L, 1);
        return 1;
    case RT_WAIT_SUSPENDED:
        return lua_yield(L, 0);
    case RT_WAIT_CANCELLED:
        return rt_lua_push_wake(L, ls, rt_task_stop_reason(&cur->task));
    default:
        return rt_lua_fail(L, ls, RT_ENOMEM);
    }
}

/* Sleep: a wait on nothing but its own time limit, which ends it with
 * true (the wait is malloc'd: a task's sleep outlives no one). */
static int lt_sleep_expire(rt_lua_wait_t *w, lua_State *co)
{
    (void)w;
    lua_pushboolean(co, 1);
    return 1;
}

static void lt_sleep_free(rt_lua_wait_t *w)
{
    free(w);
}

static const rt_lua_wait_vt_t lt_sleep_vt = {NULL, lt_sleep_free,
                                             lt_sleep_expire};

/* native.sleep(ms) -> true | nil, reason. sleep(0) lets others run. */
static int l_sleep(lua_State *L)
{
    rt_lua_sched_t *ls = lt_ctx(L);
    double ms = luaL_checknumber(L, 1);
    rt_lua_task_t *cur = rt_lua_current(L, ls, "sleep");
    rt_lua_wait_t *w;
    int n;

    if (!(ms < 1e12))
        return luaL_argerror(L, 1, "out of range");
    if (ms <= 0) {
        /* Queued again behind the tasks already ready: lua_yield only
         * takes effect when this function returns. */
        n = rt_lua_wait_suspend(L, &ls->yield_wait, cur, -1);
        if (rt_lua_wait_active(&ls->yield_wait))
            rt_lua_wait_wake(&ls->yield_wait, 0);
        return n;
    }
    w = malloc(sizeof(*w));
    if (w == NULL)
        return luaL_error(L, "out of memory");
    rt_lua_wait_init(w, &lt_sleep_vt);
    return rt_lua_wait_suspend(L, w, cur, ms);
}

/* native.defer() -> true | nil, reason: the task waits until the loop has
 * polled for I/O, and resumes in turn with others that deferred, one a
 * loop iteration (rt_sched_defer). */
typedef struct {
    rt_lua_wait_t wait;
    rt_defer_t d;
    rt_lua_sched_t *ls;
} lt_defer_t;

static void lt_defer_cancel(rt_lua_wait_t *w, int why)
{
    lt_defer_t *d = (lt_defer_t *)w;
    (void)why;
    rt_sched_undefer(&d->ls->sched, &d->d);
}

static void lt_defer_free(rt_lua_wait_t *w)
{
    free(w);
}

static const rt_lua_wait_vt_t lt_defer_vt = {lt_defer_cancel, lt_defer_free,
                                             NULL};

static void lt_defer_fire(rt_defer_t *dd)
{
    lt_defer_t *d = (lt_defer_t *)((char *)dd - offsetof(lt_defer_t, d));
    lua_pushboolean(rt_lua_wait_co(&d->wait), 1);
    rt_lua_wait_wake(&d->wait, 1);
}

static int l_defer(lua_State *L)
{
    rt_lua_sched_t *ls = lt_ctx(L);
    rt_lua_task_t *cur = rt_lua_current(L, ls, "defer");
    lt_defer_t *d = malloc(sizeof(*d));
    if (d == NULL)
        return luaL_error(L, "out of memory");
    rt_lua_wait_init(&d->wait, &lt_defer_vt);
    d->ls = ls;
    d->d.fire = lt_defer_fire;
    /* Queued first: a task that may not wait is taken back by the
     * wait's cancel, inside rt_lua_wait_suspend. */
    rt_sched_defer(&ls->sched, &d->d);
    return rt_lua_wait_suspend(L, &d->wait, cur, -1);
}

/* native.suspend() -> values passed to task:wake(...) | nil, reason */
static int l_suspend(lua_State *L)
{
    rt_lua_sched_t *ls = lt_ctx(L);
    rt_lua_task_t *cur = rt_lua_current(L, ls, "suspend");
    rt_lua_wait_t *w = malloc(sizeof(*w));
    if (w == NULL)
        return luaL_error(L, "out of memory");
    rt_lua_wait_init(w, &lt_park_vt);
    return rt_lua_wait_suspend(L, w, cur, -1);
}

/* native.current() -> task | nil */
static int l_current(lua_State *L)
{
    rt_lua_sched_t *ls = lt_ctx(L);
    if (ls->sched.current == NULL)
        return 0;
    lt_push_userdata(L, ls, (rt_lua_task_t *)ls->sched.current, 0);
    return 1;
}

/* native.cancelled() -> "cancelled" | "timeout" | nil, for the current task */
static int l_cancelled(lua_State *L)
{
    rt_lua_sched_t *ls = lt_ctx(L);
    rt_task_t *t = ls->sched.current;
    rt_wake_t why = t ? rt_task_stop_reason(t) : RT_WAKE_OK;
    if (why == RT_WAKE_OK)
        return 0;
    rt_lua_push_err(L, ls, rt_lua_wake_err(why));
    return 1;
}

/* native.scope_open(ms) -> true | nil, "nested": a deadline scope on the
 * current task (see rt_task_scope_open). */
static int l_scope_open(lua_State *L)
{
    rt_lua_sched_t *ls = lt_ctx(L);
    double ms = luaL_checknumber(L, 1);
    rt_lua_task_t *cur = rt_lua_current(L, ls, "scope_open");
    if (!(ms >= 0 && ms < 1e12))
        return luaL_argerror(L, 1, "out of range");
    if (rt_task_scope_open(&cur->task, (uint64_t)(ms + 0.5)) != 0)
        return rt_lua_fail(L, ls, RT_ENESTED);
    lua_pushboolean(L, 1);
    return 1;
}

/* native.scope_close() -> true if the scope's deadline had passed */
static int l_scope_close(lua_State *L)
{
    rt_lua_sched_t *ls = lt_ctx(L);
    rt_lua_task_t *cur = rt_lua_current(L, ls, "scope_close");
    lua_pushboolean(L, rt_task_scope_close(&cur->task));
    return 1;
}

/* native.live_tasks() -> number of tasks not yet done */
static int l_live_tasks(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)lt_ctx(L)->sched.live);
    return 1;
}

/* task:cancel([reason]) where reason is "cancelled" (default) or "timeout" */
static int m_cancel(lua_State *L)
{
    rt_lua_task_t *t = lt_check(L, 1);
    const char *r = luaL_optstring(L, 2, "cancelled");
    rt_wake_t why;
    if (strcmp(r, "cancelled") == 0)
        why = RT_WAKE_CANCELLED;
    else if (strcmp(r, "timeout") == 0)
        why = RT_WAKE_TIMEOUT;
    else
        return luaL_argerror(L, 2, "must be 'cancelled' or 'timeout'");
    rt_task_cancel(&t->task, why);
    return 0;
}

static int m_done(lua_State *L)
{
    lua_pushboolean(L, rt_task_is_done(&lt_check(L, 1)->task));
    return 1;
}

/* task:result() -> true, results... | nil, err. Raises if not done. */
static int m_result(lua_State *L)
{
    lt_task_t *lt = (lt_task_t *)lt_check(L, 1);
    rt_task_t *t = &lt->base.task;
    int i, n;

    if (!rt_task_is_done(t))
        return luaL_error(L, "task:result(): the task is not done");
    lt->base.joined = 1;
    switch (t->outcome) {
    case RT_OUTCOME_OK:
        n = lt->nres;
        luaL_checkstack(L, n + 2, "too many results");
        lua_pushboolean(L, 1);
        if (n == 0)
            return 1;
        lua_getfenv(L, 1);
        for (i = 1; i <= n; i++)
            lua_rawgeti(L, -i, i);
        lua_remove(L, -(n + 1));
        return n + 1;
    case RT_OUTCOME_ERROR:
        lua_pushnil(L);
        lua_getfenv(L, 1);
        lua_rawgeti(L, -1, 2);
        lua_remove(L, -2);
        return 2;
    case RT_OUTCOME_TIMEOUT:
        return rt_lua_push_wake(L, lt_ctx(L), RT_WAKE_TIMEOUT);
    default:
        return rt_lua_push_wake(L, lt_ctx(L), RT_WAKE_CANCELLED);
    }
}

/* task:on_done(fn, arg): once the task is done (whatever its outcome),
 * fn(arg) runs in a new detached task. One per task; setting it again
 * replaces it. On a task already done, fn(arg) is started at once. Cheaper
 * than a task that waits: no coroutine exists until it is needed. */
static int m_on_done(lua_State *L)
{
    lt_task_t *lt = (lt_task_t *)lt_check(L, 1);
    rt_lua_sched_t *ls = lt_ctx(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 3);
    if (rt_task_is_done(&lt->base.task)) {
        lt_spawn_pair(ls, L);
        return 0;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, lt->on_done_fn);
    luaL_unref(L, LUA_REGISTRYINDEX, lt->on_done_arg);
    lt->on_done_arg = luaL_ref(L, LUA_REGISTRYINDEX); /* pops arg, then fn */
    lt->on_done_fn = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* task:wake(...) -> true if the task was parked by native.suspend() */
static int m_wake(lua_State *L)
{
    rt_lua_task_t *t = lt_check(L, 1);
    rt_lua_wait_t *w = rt_lua_wait_of(t);
    int n = lua_gettop(L) - 1;
    if (w == NULL || w->vt != &lt_park_vt) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (!lua_checkstack(t->co, n + 1))
        return luaL_error(L, "too many values");
    lua_xmove(L, t->co, n);
    rt_lua_wait_wake(w, n);
    lua_pushboolean(L, 1);
    return 1;
}

static int m_status(lua_State *L)
{
    static const char *const names[] = {"new",       "ready",   "running",
                                        "suspended", "closing", "done"};
    lua_pushstring(L, names[lt_check(L, 1)->task.state]);
    return 1;
}

/* task:outcome() -> "ok" | "error" | "cancelled" | "timeout" | nil */
static int m_outcome(lua_State *L)
{
    static const char *const names[] = {NULL, "ok", "error", "cancelled",
                                        "timeout"};
    rt_lua_task_t *t = lt_check(L, 1);
    if (t->task.outcome == RT_OUTCOME_NONE)
        return 0;
    lua_pushstring(L, names[t->task.outcome]);
    return 1;
}

static int m_gc(lua_State *L)
{
    rt_lua_task_t **ud = luaL_checkudata(L, 1, RT_TASK_MT);
    if (*ud) {
        rt_task_release(&(*ud)->task);
        *ud = NULL;
    }
    return 0;
}

static int m_tostring(lua_State *L)
{
    rt_lua_task_t *t = lt_check(L, 1);
    lua_pushfstring(L, "chorus.task: %p", (void *)t);
    return 1;
}

static const luaL_Reg lt_methods[] = {
    {"cancel", m_cancel},   {"done", m_done},     {"result", m_result},
    {"wake", m_wake},       {"status", m_status}, {"outcome", m_outcome},
    {"on_done", m_on_done}, {NULL, NULL},
};

static const luaL_Reg lt_funcs[] = {
    {"spawn", l_spawn},
    {"wait", l_wait},
    {"sleep", l_sleep},
    {"defer", l_defer},
    {"suspend", l_suspend},
    {"current", l_current},
    {"cancelled", l_cancelled},
    {"live_tasks", l_live_tasks},
    {"scope_open", l_scope_open},
    {"scope_close", l_scope_close},
    {NULL, NULL},
};

rt_lua_sched_t *rt_lua_sched_open(lua_State *L, uv_loop_t *loop, int table)
{
    rt_lua_sched_t *ls = malloc(sizeof(*ls));
    int i;
    if (ls == NULL)
        return NULL;
    if (rt_sched_init(&ls->sched, loop) < 0) {
        free(ls);
        return NULL;
    }
    ls->L = L;
    ls->wd = NULL;
    rt_lua_wait_init(&ls->yield_wait, &lt_yield_vt);
    for (i = 0; i < RT_ERR_COUNT; i++) {
        lua_pushstring(L, rt_err_word(-1 - i));
        ls->words[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (table < 0)
        table = lua_gettop(L) + table + 1;
    ls->npool = 0;
    ls->pool = malloc(RT_LUA_POOL_MAX * sizeof(*ls->pool));
    ls->pool_refs = malloc(RT_LUA_POOL_MAX * sizeof(*ls->pool_refs));
    if (ls->pool == NULL || ls->pool_refs == NULL) { /* run without a pool */
        free(ls->pool);
        free(ls->pool_refs);
        ls->pool = NULL;
        ls->pool_refs = NULL;
    }
    if (luaL_loadbuffer(L, lt_trampoline, sizeof(lt_trampoline) - 1,
                        "=chorus task") != 0)
        lua_error(L); /* a constant chunk: cannot fail but out of memory */
    lua_pushlightuserdata(L, &lt_body_done);
    lua_getglobal(L, "coroutine");
    lua_getfield(L, -1, "yield");
    lua_remove(L, -2);
    lua_call(L, 2, 2);
    ls->park_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ls->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_newtable(L); /* weak-valued map of live task userdata */
    lua_newtable(L);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    ls->tasks_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    luaL_newmetatable(L, RT_TASK_MT);
    lua_pushlightuserdata(L, ls);
    lua_pushcclosure(L, m_gc, 1);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_newtable(L);
    lua_pushlightuserdata(L, ls);
    luaL_setfuncs(L, lt_methods, 1);
    /* Lua code may add methods (join) to this table: native.task_methods. */
    lua_pushvalue(L, -1);
    lua_setfield(L, table, "task_methods");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    lua_pushvalue(L, table);
    lua_pushlightuserdata(L, ls);
    luaL_setfuncs(L, lt_funcs, 1);
    lua_pop(L, 1);
    return ls;
}

void rt_lua_sched_shutdown(rt_lua_sched_t *ls)
{
    rt_sched_cancel_all(&ls->sched);
}

static void lt_sched_closed(rt_sched_t *s)
{
    rt_lua_sched_t *ls = (rt_lua_sched_t *)s; /* sched is the first member */
    free(ls->pool);
    free(ls->pool_refs);
    free(ls);
}

void rt_lua_sched_free(rt_lua_sched_t *ls)
{
    /* Freed once the loop has run the handles' closes, not before: libuv
     * still reads them then. */
    rt_sched_close(&ls->sched, lt_sched_closed);
}
