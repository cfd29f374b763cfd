/* rt_sched.h - tasks with structured concurrency on a libuv loop.
 *
 * This is the engine half of the scheduler: it knows nothing of Lua. A task
 * is a unit of work that runs, suspends on one pending operation at a time,
 * and is resumed when that operation completes or is aborted. Tasks form a
 * tree: a task is done only when its own body has finished and all of its
 * children are done; a task whose body finishes early cancels the children
 * still running. Cancelling a task cancels its subtree and aborts each
 * pending operation through the operation's cancel hook.
 *
 * Resumption is never re-entrant: wakes are queued and the queue is drained
 * from an idle/check handle, so a completion callback of libuv, libpq,
 * hiredis or curl never runs task code on its own stack.
 *
 * The binding embeds rt_task_t in its own struct and supplies a vtable. */
#ifndef RT_SCHED_H
#define RT_SCHED_H

#include <stdint.h>
#include <uv.h>

#include "rt_timer.h"

/* Why a task was resumed or how it ended. */
typedef enum {
    RT_WAKE_OK = 0,        /* the operation completed; results are ready */
    RT_WAKE_CANCELLED = 1, /* the task was cancelled */
    RT_WAKE_TIMEOUT = 2    /* the task's deadline passed */
} rt_wake_t;

/* Outcome of a finished task body. */
typedef enum {
    RT_OUTCOME_NONE = 0, /* still running */
    RT_OUTCOME_OK,       /* body returned */
    RT_OUTCOME_ERROR,    /* body raised */
    RT_OUTCOME_CANCELLED,
    RT_OUTCOME_TIMEOUT
} rt_outcome_t;

typedef enum {
    RT_TASK_NEW = 0,   /* created, queued for its first run */
    RT_TASK_READY,     /* in the ready queue */
    RT_TASK_RUNNING,   /* its code is on the CPU now */
    RT_TASK_SUSPENDED, /* waiting on an operation */
    RT_TASK_CLOSING,   /* body finished, waiting for children */
    RT_TASK_DONE
} rt_task_state_t;

typedef struct rt_sched rt_sched_t;
typedef struct rt_task rt_task_t;
typedef struct rt_op rt_op_t;
typedef struct rt_waiter rt_waiter_t;

/* A pending operation. cancel() must abort the I/O (stop the timer, close
 * the handle, cancel the query) so that no completion will ever arrive, and
 * must not wake the task: the scheduler wakes it with the cancel reason. */
struct rt_op {
    void (*cancel)(rt_op_t *op, rt_task_t *task);
};

typedef struct {
    /* Run or resume the task's code. wake says why. Called only from the
     * drain loop. The code either suspends (rt_task_suspend) or finishes
     * (rt_task_finish) before returning. */
    void (*resume)(rt_task_t *task, rt_wake_t wake);
    /* The scheduler dropped its last reference (task done and released by
     * the binding). Free the embedding struct here. */
    void (*free)(rt_task_t *task);
    /* The task became done (children included); optional. */
    void (*done)(rt_task_t *task);
} rt_task_vtable_t;

/* Someone waiting for tasks to finish (see rt_task_wait). */
struct rt_waiter {
    rt_op_t op;
    rt_task_t *task; /* the waiting task */
    uint32_t need;   /* wake when this many are done */
    uint32_t done;   /* how many are done so far */
    uint32_t nlinks;
    struct rt_wait_link *links; /* one per watched task */
};

struct rt_wait_link {
    rt_waiter_t *waiter;
    rt_task_t *target;
    struct rt_wait_link *prev, *next; /* in target->waiters */
};

struct rt_task {
    rt_sched_t *sched;
    const rt_task_vtable_t *vt;
    rt_task_t *parent;
    rt_task_t *first_child, *next_sibling, *prev_sibling;
    rt_task_t *next_ready;        /* ready queue link */
    struct rt_wait_link *waiters; /* who waits for this task to be done */
    rt_op_t *op;                  /* pending operation while SUSPENDED */
    rt_timer_t deadline_tm;       /* armed at first suspend, for rt__due */
    uint64_t deadline;            /* absolute uv_now() ms, 0 = none */
    uint64_t scope_deadline;      /* of the open deadline scope */
    uint32_t scope;               /* id of the open scope, 0 = none */
    uint32_t scopes;              /* scopes opened so far (next id) */
    uint32_t in_scope;            /* parent's scope this task started in */
    int scope_fired;              /* the open scope's deadline passed */
    uint32_t refs;                /* binding refs + 1 while not done */
    uint32_t nchildren;
    rt_task_state_t state;
    rt_wake_t wake;          /* reason of the pending resume */
    rt_wake_t cancel_reason; /* RT_WAKE_OK = not cancelled */
    rt_outcome_t outcome;
};

/* Runs after every task resume, when the task has yielded or finished
 * (see rt_sched_hook_add). */
typedef struct rt_sched_hook {
    void (*fn)(void *arg);
    void *arg;
    struct rt_sched_hook *prev, *next;
} rt_sched_hook_t;

/* Work that should wait until the loop has polled for I/O (see
 * rt_sched_defer). */
typedef struct rt_defer {
    void (*fire)(struct rt_defer *d);
    struct rt_defer *prev, *next;
} rt_defer_t;

struct rt_sched {
    uv_loop_t *loop;
    uv_idle_t idle;   /* keeps poll from blocking while work is queued */
    uv_check_t check; /* drains wakes that arrived during poll */
    rt_task_t *ready_head, *ready_tail;
    rt_task_t *current; /* task whose code is running, or NULL */
    rt_task_t *roots;   /* live root tasks, linked through siblings */
    rt_timers_t timers; /* deadlines (and the Lua binding's sleeps) */
    uint64_t live;      /* tasks not yet done */
    rt_sched_hook_t *after_resume;       /* see rt_sched_hook_add */
    rt_defer_t *defer_head, *defer_tail; /* see rt_sched_defer */
    int draining;
    int closing;                      /* handles still closing */
    void (*on_closed)(rt_sched_t *s); /* see rt_sched_close */
};

/* Prepares the scheduler on loop. Returns 0 or a negative uv error. */
int rt_sched_init(rt_sched_t *s, uv_loop_t *loop);
/* Closes the scheduler's handles. Every task must be done. s must live
 * until the loop has run the closes: on_closed(s) (may be NULL) is called
 * once they are all done, and may free it. */
void rt_sched_close(rt_sched_t *s, void (*on_closed)(rt_sched_t *s));
/* Runs queued tasks, at most a budget of them (RT_DRAIN_BUDGET); the idle
 * handle stays active while any are left. */
void rt_sched_drain(rt_sched_t *s);
/* h->fn(h->arg) runs after every task resume from now on, until removed:
 * what a task buffered while it ran (WebSocket output) goes out when it
 * yields, once for all it did. A hook must not add or remove hooks. */
void rt_sched_hook_add(rt_sched_t *s, rt_sched_hook_t *h);
void rt_sched_hook_remove(rt_sched_t *s, rt_sched_hook_t *h);
/* Deferred work: d->fire(d) runs from the check phase of a later loop
 * iteration, after that iteration's poll, one deferral per iteration in
 * the order they came (the loop does not block while any wait). What I/O
 * brings meanwhile is handled first: a task that defers its bookkeeping
 * (a step ending after a streamed answer) lets the pieces other streams
 * bring go out before it, however many such ends come at once.
 * rt_sched_undefer takes d back before it fired (a cancel). */
void rt_sched_defer(rt_sched_t *s, rt_defer_t *d);
void rt_sched_undefer(rt_sched_t *s, rt_defer_t *d);
/* Cancels every live root task (and so every task), then drains. */
void rt_sched_cancel_all(rt_sched_t *s);

/* Initialises t as a child of parent (NULL: a root task) and queues its
 * first run. The caller holds one reference (released with
 * rt_task_release); the scheduler holds another until the task is done. */
void rt_task_start(rt_sched_t *s, rt_task_t *t, const rt_task_vtable_t *vt,
                   rt_task_t *parent);
/* Drops a binding reference; the task is freed once done and unreferenced. */
void rt_task_release(rt_task_t *t);
void rt_task_retain(rt_task_t *t);

/* Sets a deadline ms milliseconds from now; at the deadline the task is
 * cancelled with RT_WAKE_TIMEOUT. The timer is only armed when the task
 * first suspends (a task that never suspends cannot be interrupted). */
int rt_task_set_deadline(rt_task_t *t, uint64_t ms);

/* Deadline scopes: part of a task's body runs under a deadline of its own
 * without a task of its own (a step attempt's timeout). Once the scope's
 * deadline passes, the task's pending operation is aborted and every wait
 * inside the scope ends with RT_WAKE_TIMEOUT at once; children started in
 * the scope are cancelled with RT_WAKE_TIMEOUT. Closing the scope cancels
 * its children still running (nothing outlives the scope) and clears the
 * timeout. The task itself is not cancelled. Scopes do not nest.
 * rt_task_scope_open returns 0, or -1 when a scope is already open. */
int rt_task_scope_open(rt_task_t *t, uint64_t ms);
/* Closes the open scope; returns 1 if its deadline had passed, else 0. */
int rt_task_scope_close(rt_task_t *t);
/* Why t must not wait now: its cancel reason, RT_WAKE_TIMEOUT inside a
 * scope whose deadline passed, or RT_WAKE_OK. */
rt_wake_t rt_task_stop_reason(const rt_task_t *t);

/* Suspends the running task t on op. Returns RT_WAKE_OK when suspended, or
 * the cancel reason when t is already cancelled: then it is not suspended
 * and the caller must return that reason at once instead of waiting. */
rt_wake_t rt_task_suspend(rt_task_t *t, rt_op_t *op);
/* The operation t waits on completed: queue t to resume with RT_WAKE_OK. */
void rt_task_wake(rt_task_t *t);
/* Cancels t and its subtree with reason (CANCELLED or TIMEOUT). A
 * suspended task has its operation aborted and is queued to resume with
 * the reason. Cancelling a done task does nothing. */
void rt_task_cancel(rt_task_t *t, rt_wake_t reason);
/* The running task's body ended with outcome (OK or ERROR; a cancelled
 * task's outcome becomes CANCELLED/TIMEOUT). Children still running are
 * cancelled; the task is done when they are. */
void rt_task_finish(rt_task_t *t, rt_outcome_t outcome);

/* Results of rt_task_wait. */
enum {
    RT_WAIT_NOMEM = -1,    /* out of memory; nothing changed */
    RT_WAIT_READY = 0,     /* the condition holds now; not suspended */
    RT_WAIT_SUSPENDED = 1, /* suspended until the condition holds */
    RT_WAIT_CANCELLED = 2  /* the waiter is cancelled (see cancel_reason) */
};

/* Suspends the running task waiter until `need` of the n targets are done
 * (need = n: all, need = 1: any). When woken, the waiter resumes with
 * RT_WAKE_OK and no results. */
int rt_task_wait(rt_task_t *waiter, rt_task_t **targets, uint32_t n,
                 uint32_t need);

static inline int rt_task_is_done(const rt_task_t *t)
{
    return t->state == RT_TASK_DONE;
}

#endif
