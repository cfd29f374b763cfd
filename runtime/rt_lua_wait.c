/* rt_lua_wait.c - how a Lua face waits: one suspend, one resume (see
 * rt_lua_wait.h). */
#include "rt_lua_wait.h"

#include <stddef.h>

#include "rt_lua_sched.h"

static rt_timers_t *rt__timers(const rt_lua_task_t *t)
{
    return &t->task.sched->timers;
}

/* The n values on top of t's coroutine are the wait's results: queue t
 * to resume with them. */
static void rt__wake(rt_lua_task_t *t, int n)
{
    t->nargs = n;
    rt_task_wake(&t->task);
}

/* The wait ended without results of the operation: abort it, then let
 * its owner free it. */
static void rt__abort(rt_lua_wait_t *w, int why)
{
    if (w->vt->cancel != NULL)
        w->vt->cancel(w, why);
    if (w->vt->free != NULL)
        w->vt->free(w);
}

/* The scheduler's cancel hook: the task was cancelled or passed a
 * deadline. The scheduler resumes it with the reason. */
static void rt__op_cancel(rt_op_t *op, rt_task_t *task)
{
    rt_lua_wait_t *w = (rt_lua_wait_t *)op;
    rt_timer_stop(&task->sched->timers, &w->timer);
    w->task = NULL;
    rt__abort(w, rt_lua_wake_err(rt_task_stop_reason(task)));
}

/* The wait's own time limit passed. */
static void rt__expire(rt_timer_t *tm)
{
    rt_lua_wait_t *w = (rt_lua_wait_t *)((char *)tm -
                                         offsetof(rt_lua_wait_t, timer));
    rt_lua_task_t *t = w->task;
    int n;
    if (w->vt->cancel != NULL)
        w->vt->cancel(w, RT_ETIMEOUT);
    if (w->vt->expire != NULL)
        n = w->vt->expire(w, t->co);
    else
        n = rt_lua_fail(t->co, rt_lua_task_sched(t), RT_ETIMEOUT);
    w->task = NULL;
    if (w->vt->free != NULL)
        w->vt->free(w);
    rt__wake(t, n);
}

void rt_lua_wait_init(rt_lua_wait_t *w, const rt_lua_wait_vt_t *vt)
{
    w->op.cancel = rt__op_cancel;
    rt_timer_init(&w->timer, rt__expire);
    w->task = NULL;
    w->vt = vt;
}

int rt_lua_wait_suspend(lua_State *L, rt_lua_wait_t *w, rt_lua_task_t *t,
                        double timeout_ms)
{
    uv_loop_t *loop = t->task.sched->loop;
    rt_wake_t why = RT_WAKE_OK;
    int nomem = 0;

    if (!lua_checkstack(L, RT_LUA_WAIT_ROOM)) {
        nomem = 1;
    } else if (timeout_ms > 0) {
        /* From a fresh clock: the loop time is stale after CPU work.
         * Armed before suspending, so a full heap is an error, not a
         * wait without end. */
        uv_update_time(loop);
        nomem = rt_timer_start(rt__timers(t), &w->timer,
                               uv_now(loop) + (uint64_t)(timeout_ms + 0.5)) !=
                0;
    }
    if (!nomem) {
        why = rt_task_suspend(&t->task, &w->op);
        if (why == RT_WAKE_OK) {
            w->task = t;
            return lua_yield(L, 0);
        }
        rt_timer_stop(rt__timers(t), &w->timer);
    }
    rt__abort(w, nomem ? RT_ENOMEM : rt_lua_wake_err(why));
    return rt_lua_fail(L, rt_lua_task_sched(t),
                       nomem ? RT_ENOMEM : rt_lua_wake_err(why));
}

int rt_lua_wait_stopped(lua_State *L, rt_lua_task_t *t)
{
    rt_wake_t why = rt_task_stop_reason(&t->task);
    if (why == RT_WAKE_OK)
        return 0;
    rt_lua_push_wake(L, rt_lua_task_sched(t), why);
    return 1;
}

lua_State *rt_lua_wait_co(const rt_lua_wait_t *w)
{
    return w->task->co;
}

rt_lua_wait_t *rt_lua_wait_of(rt_lua_task_t *t)
{
    rt_op_t *op = t->task.op;
    if (t->task.state != RT_TASK_SUSPENDED || op == NULL ||
        op->cancel != rt__op_cancel)
        return NULL;
    return (rt_lua_wait_t *)op;
}

void rt_lua_wait_wake(rt_lua_wait_t *w, int n)
{
    rt_lua_task_t *t = w->task;
    rt_timer_stop(rt__timers(t), &w->timer);
    w->task = NULL;
    if (w->vt->free != NULL)
        w->vt->free(w);
    rt__wake(t, n);
}

typedef struct {
    rt_lua_build_fn build;
    void *arg;
    lua_State *co;
    int n;
} rt__build_t;

/* Under lua_cpcall on the main state: the builder's values go to co,
 * which has RT_LUA_WAIT_ROOM slots free. */
static int rt__build(lua_State *L)
{
    rt__build_t *b = lua_touserdata(L, 1);
    b->n = b->build(L, b->arg);
    lua_xmove(L, b->co, b->n);
    return 0;
}

int rt_lua_wait_done(rt_lua_wait_t *w, rt_lua_build_fn build, void *arg)
{
    /* The scheduler is the first member of the Lua scheduler context. */
    rt_lua_sched_t *ls = (rt_lua_sched_t *)w->task->task.sched;
    rt__build_t b;
    int rc = 0;
    b.build = build;
    b.arg = arg;
    b.co = w->task->co;
    b.n = 0;
    if (lua_cpcall(ls->L, rt__build, &b) != 0) {
        lua_pop(ls->L, 1);
        b.n = rt_lua_fail(b.co, ls, RT_ENOMEM);
        rc = -1;
    }
    rt_lua_wait_wake(w, b.n);
    return rc;
}

void rt_lua_wait_fail(rt_lua_wait_t *w, int code)
{
    lua_State *co = w->task->co;
    rt_lua_wait_wake(w, rt_lua_fail(co, rt_lua_task_sched(w->task), code));
}
