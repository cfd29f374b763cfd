/* rt_lua_wait.h - how a Lua face waits: one suspend, one resume.
 *
 * Every yielding native follows one sequence (OpenResty's): check the
 * arguments (caller bugs raise), find the current task, answer at once
 * when it can (a queued message, "busy", "closed"), else start the I/O,
 * embed an rt_lua_wait_t in the operation and
 *
 *     return rt_lua_wait_suspend(L, &op->wait, cur, timeout_ms);
 *
 * Later, from the loop, the completion hands the task its results:
 * rt_lua_wait_done(w, build, arg) runs build on the main state under
 * lua_cpcall (a memory error is caught there, never unwinding through
 * libuv, libpq, hiredis, curl or h2o) and moves what it pushed to the
 * task; rt_lua_wait_wake(w, n) when the completion pushed n values that
 * cannot fail (nil, booleans, numbers, rt_lua_push_err's words) onto
 * rt_lua_wait_co(w) itself; rt_lua_wait_fail(w, code) for nil, word.
 * Either queues the task: no callback runs Lua on its own stack.
 *
 * Exactly one of these ends a wait, and each runs the operation's vtable
 * once:
 *   - the completion: free(w); the task gets the results;
 *   - the task is cancelled or passes its deadline (or its deadline
 *     scope's): cancel(w, RT_ECANCELLED | RT_ETIMEOUT) aborts the I/O,
 *     then free(w); the task gets nil, "cancelled" | "timeout";
 *   - the wait's own time limit (timeout_ms > 0, a 32-byte record in the
 *     scheduler's timer heap): cancel(w, RT_ETIMEOUT), then the task
 *     gets what expire(w, co) pushes (nil, "timeout" without one), then
 *     free(w);
 *   - the task was already cancelled when it asked to wait (or the timer
 *     heap is out of memory): rt_lua_wait_suspend runs cancel(w, reason)
 *     and free itself and returns nil, word at once.
 * Words come from rt_err.h, the one list of failures.
 * cancel must leave no completion to come. The task's coroutine has
 * RT_LUA_WAIT_ROOM free stack slots for the results while it waits. */
#ifndef RT_LUA_WAIT_H
#define RT_LUA_WAIT_H

#include <lua.h>

#include "rt_sched.h"

/* A task of the Lua scheduler (rt_lua_sched.h, which includes this). */
struct rt_lua_task;

/* Stack slots reserved on the waiting coroutine for the results. */
#define RT_LUA_WAIT_ROOM LUA_MINSTACK

typedef struct rt_lua_wait rt_lua_wait_t;

typedef struct {
    /* Aborts the operation so that no completion will come; why is
     * RT_ECANCELLED, RT_ETIMEOUT or RT_ENOMEM (rt_err.h). NULL: nothing
     * to abort. */
    void (*cancel)(rt_lua_wait_t *w, int why);
    /* The wait is over and w is no longer used: frees what embeds it.
     * NULL: w lives in an object that outlives its waits. */
    void (*free)(rt_lua_wait_t *w);
    /* Pushes onto co what the wait returns when its own time limit has
     * passed (only values whose push cannot fail); returns how many.
     * NULL: nil, "timeout". */
    int (*expire)(rt_lua_wait_t *w, lua_State *co);
} rt_lua_wait_vt_t;

struct rt_lua_wait {
    rt_op_t op;               /* first: the scheduler hands it back */
    rt_timer_t timer;         /* the wait's own time limit */
    struct rt_lua_task *task; /* the waiting task; NULL when none waits */
    const rt_lua_wait_vt_t *vt;
};

/* Prepares w (not waiting). Call once; w may then wait many times. */
void rt_lua_wait_init(rt_lua_wait_t *w, const rt_lua_wait_vt_t *vt);

/* Suspends t (the current task, whose coroutine is L) until w ends, for
 * at most timeout_ms milliseconds when timeout_ms > 0. Use as
 * `return rt_lua_wait_suspend(L, w, t, ms);` once the I/O has started.
 * When t may not wait (see the header comment) the wait ends here: the
 * results are pushed on L and their count returned. */
int rt_lua_wait_suspend(lua_State *L, rt_lua_wait_t *w, struct rt_lua_task *t,
                        double timeout_ms);

/* Before starting I/O that t would only wait on: when t may not wait
 * now (cancelled, past its deadline or its scope's), pushes nil, reason
 * and returns 1 (the caller returns those two values), else 0. */
int rt_lua_wait_stopped(lua_State *L, struct rt_lua_task *t);

/* A builder of results: pushes them onto L (the main state, under
 * lua_cpcall: it may allocate and raise) and returns how many. */
typedef int (*rt_lua_build_fn)(lua_State *L, void *arg);

/* Ends w with the values build(L, arg) pushes, or nil, "out of memory"
 * when it raised; returns 0, or -1 in that case. */
int rt_lua_wait_done(rt_lua_wait_t *w, rt_lua_build_fn build, void *arg);

/* Ends w with the n values the caller pushed onto rt_lua_wait_co(w). */
void rt_lua_wait_wake(rt_lua_wait_t *w, int n);

/* Ends w with nil and the word of code (rt_err.h). */
void rt_lua_wait_fail(rt_lua_wait_t *w, int code);

static inline int rt_lua_wait_active(const rt_lua_wait_t *w)
{
    return w->task != NULL;
}

/* The waiting task's coroutine (w must be active). */
lua_State *rt_lua_wait_co(const rt_lua_wait_t *w);

/* The wait the suspended task t waits on, or NULL when it waits on
 * something else (a task join) or does not wait. */
rt_lua_wait_t *rt_lua_wait_of(struct rt_lua_task *t);

#endif
