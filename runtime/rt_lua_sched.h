/* rt_lua_sched.h - the Lua face of the scheduler: tasks are coroutines.
 *
 * Other bindings find the current task here (rt_lua_current raises when
 * called outside one) and wait through rt_lua_wait.h, which suspends the
 * task on an operation and resumes it with the operation's results. */
#ifndef RT_LUA_SCHED_H
#define RT_LUA_SCHED_H

#include <lua.h>

#include "rt_err.h"
#include "rt_lua_wait.h"
#include "rt_sched.h"

typedef struct rt_lua_task {
    rt_task_t task; /* must stay first: the engine hands back rt_task_t* */
    lua_State *co;  /* the coroutine running the body */
    int co_ref;     /* registry ref anchoring co until the task is done */
    int nargs;      /* values pushed on co for the next resume (set by
                         rt_lua_wait.c when a wait ends) */
    int started;    /* the body has been entered */
    int report;     /* log the error if nobody ever joins (root tasks) */
    int joined;     /* someone read the outcome */
    int script;     /* > 0 while it runs script code (the watchdog) */
} rt_lua_task_t;

struct rt_lua_wd;

/* Per Lua state scheduler context, kept as an upvalue of every function. */
typedef struct rt_lua_sched {
    rt_sched_t sched;
    lua_State *L;     /* the main state */
    int tasks_ref;    /* weak table: lightuserdata(task) -> userdata */
    int run_ref;      /* the trampoline every task coroutine runs */
    int park_ref;     /* a no-op body that parks a pooled coroutine */
    lua_State **pool; /* idle coroutines, waiting in the trampoline */
    int *pool_refs;   /* their registry anchors */
    int npool;
    struct rt_lua_wd *wd;     /* the watchdog marks each resume (or NULL) */
    rt_lua_wait_t yield_wait; /* sleep(0)'s (see l_sleep) */
    int words[RT_ERR_COUNT];  /* registry refs of rt_err.h's words */
} rt_lua_sched_t;

/* Creates the scheduler for L on loop and leaves the `chorus.native` task
 * functions in the table at the top of the stack. Returns NULL on failure. */
rt_lua_sched_t *rt_lua_sched_open(lua_State *L, uv_loop_t *loop, int table);
/* Cancels every task, drains, and frees the context (after lua_close the
 * caller runs the loop once more: the handles finish closing, then the
 * context is freed). */
void rt_lua_sched_shutdown(rt_lua_sched_t *ls);
void rt_lua_sched_free(rt_lua_sched_t *ls);

/* Spawns fn (at index fn_idx of L) with nargs arguments taken from the top
 * of L as a new task (parent NULL: a root task). Pushes nothing; returns
 * the task with one reference held by the caller, or NULL (out of memory). */
rt_lua_task_t *rt_lua_task_spawn(rt_lua_sched_t *ls, lua_State *L, int fn_idx,
                                 int nargs, rt_task_t *parent);

/* Pushes the task's userdata, taking over the caller's reference. */
void rt_lua_task_push(lua_State *L, rt_lua_sched_t *ls, rt_lua_task_t *t);

/* The task whose coroutine is L, or raises a Lua error naming fname when L
 * is not a running task (main thread, nested plain coroutine). */
rt_lua_task_t *rt_lua_current(lua_State *L, rt_lua_sched_t *ls,
                              const char *fname);
/* The words of rt_err.h are interned when the state opens: pushing one
 * allocates nothing, so a loop callback may push it onto a waiting
 * coroutine. */

/* Pushes the word of code (an RT_E* of rt_err.h). */
void rt_lua_push_err(lua_State *L, rt_lua_sched_t *ls, int code);
/* Pushes nil and the word of code; returns 2. */
int rt_lua_fail(lua_State *L, rt_lua_sched_t *ls, int code);
/* The code of a cancel reason: RT_ECANCELLED or RT_ETIMEOUT. */
static inline int rt_lua_wake_err(rt_wake_t why)
{
    return why == RT_WAKE_TIMEOUT ? RT_ETIMEOUT : RT_ECANCELLED;
}
/* Pushes `nil, reason` for a cancel reason; returns 2. */
int rt_lua_push_wake(lua_State *L, rt_lua_sched_t *ls, rt_wake_t why);
/* The scheduler context of t. */
static inline rt_lua_sched_t *rt_lua_task_sched(const rt_lua_task_t *t)
{
    return (rt_lua_sched_t *)t->task.sched; /* sched is its first member */
}

#endif
