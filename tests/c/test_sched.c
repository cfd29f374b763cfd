/* test_sched.c - unit tests of the task engine (rt_sched.c) with C tasks:
 * timers, wakes, cancellation, deadlines, structured concurrency, waits,
 * and that every task and handle is gone at the end. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_sched.h"

#include "test_check.h"

static uv_loop_t loop;
static rt_sched_t sched;
static int created, freed, op_cancels;

typedef struct ctask ctask_t;
typedef void (*body_fn)(ctask_t *t, rt_wake_t wake);

/* A C task: body is called on every resume with the resume count in step. */
struct ctask {
    rt_task_t task;
    body_fn body;
    int step;
    int resumes;
    rt_wake_t wakes[8];
    uint64_t woke_at[8];
    uint64_t arg;   /* timer length or similar */
    ctask_t *other; /* a peer the body acts on */
    int done_hook;
};

static void c_resume(rt_task_t *task, rt_wake_t wake)
{
    ctask_t *t = (ctask_t *)task;
    if (t->resumes < 8) {
        t->wakes[t->resumes] = wake;
        t->woke_at[t->resumes] = uv_now(&loop);
    }
    t->resumes++;
    t->body(t, wake);
}

static void c_free(rt_task_t *task)
{
    freed++;
    free(task);
}

static void c_done(rt_task_t *task)
{
    ((ctask_t *)task)->done_hook++;
}

static const rt_task_vtable_t c_vt = {c_resume, c_free, c_done};

static ctask_t *spawn(body_fn body, ctask_t *parent, uint64_t arg)
{
    ctask_t *t = calloc(1, sizeof(*t));
    t->body = body;
    t->arg = arg;
    created++;
    rt_task_start(&sched, &t->task, &c_vt, parent ? &parent->task : NULL);
    return t;
}

/* Timer operation. */
typedef struct {
    rt_op_t op;
    uv_timer_t timer;
    ctask_t *t;
} timer_op_t;

static void free_handle_data(uv_handle_t *h)
{
    free(h->data);
}

static void timer_op_cb(uv_timer_t *h)
{
    timer_op_t *o = h->data;
    rt_task_wake(&o->t->task);
    uv_close((uv_handle_t *)h, free_handle_data);
}

static void timer_op_cancel(rt_op_t *op, rt_task_t *task)
{
    timer_op_t *o = (timer_op_t *)op;
    (void)task;
    op_cancels++;
    uv_timer_stop(&o->timer);
    uv_close((uv_handle_t *)&o->timer, free_handle_data);
}

/* Suspends t on a timer of ms. Returns the cancel reason if it could not. */
static rt_wake_t wait_timer(ctask_t *t, uint64_t ms)
{
    timer_op_t *o = malloc(sizeof(*o));
    rt_wake_t why;
    o->op.cancel = timer_op_cancel;
    o->t = t;
    uv_timer_init(&loop, &o->timer);
    o->timer.data = o;
    why = rt_task_suspend(&t->task, &o->op);
    if (why != RT_WAKE_OK) {
        uv_close((uv_handle_t *)&o->timer, free_handle_data);
        return why;
    }
    uv_timer_start(&o->timer, timer_op_cb, ms, 0);
    return RT_WAKE_OK;
}

/* Body: sleep arg ms once, then finish. */
static void body_sleep(ctask_t *t, rt_wake_t wake)
{
    (void)wake;
    if (t->step++ == 0 && wait_timer(t, t->arg) == RT_WAKE_OK)
        return;
    rt_task_finish(&t->task, RT_OUTCOME_OK);
}

/* Body: after arg ms, cancel t->other, then finish. */
static void body_canceller(ctask_t *t, rt_wake_t wake)
{
    (void)wake;
    if (t->step++ == 0 && wait_timer(t, t->arg) == RT_WAKE_OK)
        return;
    rt_task_cancel(&t->other->task, RT_WAKE_CANCELLED);
    rt_task_finish(&t->task, RT_OUTCOME_OK);
}

static void run_loop(void)
{
    uv_run(&loop, UV_RUN_DEFAULT);
}

static void setup(void)
{
    uv_loop_init(&loop);
    /* Garbage, as in malloc'd memory: init must set every field it uses. */
    memset(&sched, 0xbe, sizeof(sched));
    CHECK(rt_sched_init(&sched, &loop) == 0);
    created = freed = op_cancels = 0;
}

/* Everything is done, freed, and the loop closes with no handle left. */
static void teardown(const char *name)
{
    CHECK(sched.live == 0);
    rt_sched_close(&sched, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(created == freed);
    CHECK(uv_loop_close(&loop) == 0);
    printf("ok - %s\n", name);
}

static void test_timer_wake(void)
{
    ctask_t *t;
    uint64_t start;
    setup();
    uv_update_time(&loop);
    start = uv_now(&loop);
    t = spawn(body_sleep, NULL, 30);
    run_loop();
    CHECK(t->resumes == 2);
    CHECK(t->wakes[1] == RT_WAKE_OK);
    CHECK(t->woke_at[1] - start >= 30 && t->woke_at[1] - start < 60);
    CHECK(t->task.outcome == RT_OUTCOME_OK);
    CHECK(t->done_hook == 1);
    rt_task_release(&t->task);
    teardown("a timer wakes its task, which then finishes");
}

static void test_cancel(void)
{
    ctask_t *sleeper, *killer;
    uint64_t start;
    setup();
    uv_update_time(&loop);
    start = uv_now(&loop);
    sleeper = spawn(body_sleep, NULL, 5000);
    killer = spawn(body_canceller, NULL, 20);
    killer->other = sleeper;
    run_loop();
    CHECK(sleeper->resumes == 2);
    CHECK(sleeper->wakes[1] == RT_WAKE_CANCELLED);
    CHECK(sleeper->woke_at[1] - start < 100);
    CHECK(sleeper->task.outcome == RT_OUTCOME_CANCELLED);
    CHECK(op_cancels == 1);
    rt_task_release(&sleeper->task);
    rt_task_release(&killer->task);
    teardown("cancel aborts the pending timer and resumes with cancelled");
}

static void test_deadline(void)
{
    ctask_t *t;
    uint64_t start;
    setup();
    uv_update_time(&loop);
    start = uv_now(&loop);
    t = spawn(body_sleep, NULL, 5000);
    rt_task_set_deadline(&t->task, 40);
    run_loop();
    CHECK(t->wakes[1] == RT_WAKE_TIMEOUT);
    CHECK(t->woke_at[1] - start >= 40 && t->woke_at[1] - start < 50);
    CHECK(t->task.outcome == RT_OUTCOME_TIMEOUT);
    CHECK(op_cancels == 1);
    rt_task_release(&t->task);
    teardown("a deadline aborts pending I/O with timeout within 10 ms");
}

static void test_deadline_not_reached(void)
{
    ctask_t *t;
    setup();
    t = spawn(body_sleep, NULL, 10);
    rt_task_set_deadline(&t->task, 1000);
    run_loop(); /* returns at once when done: the deadline timer is closed */
    CHECK(t->wakes[1] == RT_WAKE_OK);
    CHECK(t->task.outcome == RT_OUTCOME_OK);
    CHECK(op_cancels == 0);
    rt_task_release(&t->task);
    teardown("a deadline not reached changes nothing and leaves no timer");
}

static ctask_t *kids[3];

/* Body: start three sleeping children, then finish at once. */
static void body_parent_leaves(ctask_t *t, rt_wake_t wake)
{
    int i;
    (void)wake;
    for (i = 0; i < 3; i++)
        kids[i] = spawn(body_sleep, t, 5000);
    rt_task_finish(&t->task, RT_OUTCOME_OK);
}

static void test_structured(void)
{
    ctask_t *p;
    int i;
    setup();
    p = spawn(body_parent_leaves, NULL, 0);
    rt_sched_drain(&sched);
    /* Children ran once (suspended) before the parent finished? No: they
     * were queued behind it, so they were cancelled before ever running. */
    run_loop();
    CHECK(rt_task_is_done(&p->task));
    CHECK(p->task.outcome == RT_OUTCOME_OK);
    for (i = 0; i < 3; i++) {
        CHECK(rt_task_is_done(&kids[i]->task));
        CHECK(kids[i]->resumes == 0); /* never started */
        CHECK(kids[i]->task.outcome == RT_OUTCOME_CANCELLED);
        rt_task_release(&kids[i]->task);
    }
    rt_task_release(&p->task);
    teardown("a finished body cancels children that never ran");
}

/* Body: start children that sleep, wait until they suspended (sleep 0 via
 * a short timer), then finish: children are aborted mid-wait. */
static void body_parent_after(ctask_t *t, rt_wake_t wake)
{
    int i;
    (void)wake;
    if (t->step++ == 0) {
        for (i = 0; i < 3; i++)
            kids[i] = spawn(body_sleep, t, 5000);
        wait_timer(t, 5);
        return;
    }
    rt_task_finish(&t->task, RT_OUTCOME_OK);
}

static void test_structured_running(void)
{
    ctask_t *p;
    int i;
    setup();
    p = spawn(body_parent_after, NULL, 0);
    run_loop();
    CHECK(rt_task_is_done(&p->task));
    CHECK(p->done_hook == 1);
    for (i = 0; i < 3; i++) {
        CHECK(kids[i]->resumes == 2);
        CHECK(kids[i]->wakes[1] == RT_WAKE_CANCELLED);
        CHECK(kids[i]->done_hook == 1);
        rt_task_release(&kids[i]->task);
    }
    CHECK(op_cancels == 3);
    rt_task_release(&p->task);
    teardown("a parent is done only after its running children are aborted");
}

static void test_cancel_subtree(void)
{
    ctask_t *p, *killer;
    int i;
    setup();
    p = spawn(body_parent_after, NULL, 0);
    p->step = 0;
    killer = spawn(body_canceller, NULL, 1);
    killer->other = p;
    run_loop();
    CHECK(p->task.outcome == RT_OUTCOME_CANCELLED);
    for (i = 0; i < 3; i++) {
        CHECK(kids[i]->task.outcome == RT_OUTCOME_CANCELLED);
        rt_task_release(&kids[i]->task);
    }
    rt_task_release(&p->task);
    rt_task_release(&killer->task);
    teardown("cancelling a task cancels its whole subtree");
}

static ctask_t *targets[3];
static int wait_need;

/* Body: start children sleeping 10, 30, 50 ms; wait for wait_need. */
static void body_waiter(ctask_t *t, rt_wake_t wake)
{
    rt_task_t *tt[3];
    int i, rc;
    if (t->step++ == 0) {
        for (i = 0; i < 3; i++) {
            targets[i] = spawn(body_sleep, t, 10 + 20 * (uint64_t)i);
            tt[i] = &targets[i]->task;
        }
        rc = rt_task_wait(&t->task, tt, 3, (uint32_t)wait_need);
        CHECK(rc == RT_WAIT_SUSPENDED);
        return;
    }
    (void)wake; /* recorded in t->wakes by c_resume */
    t->arg = 0;
    for (i = 0; i < 3; i++)
        t->arg += rt_task_is_done(&targets[i]->task);
    rt_task_finish(&t->task, RT_OUTCOME_OK);
}

static void test_wait(int need, int expect_done, const char *name)
{
    ctask_t *w;
    int i;
    setup();
    wait_need = need;
    w = spawn(body_waiter, NULL, 0);
    run_loop();
    CHECK(w->wakes[1] == RT_WAKE_OK);
    CHECK((int)w->arg == expect_done);
    for (i = 0; i < 3; i++) {
        CHECK(rt_task_is_done(&targets[i]->task));
        rt_task_release(&targets[i]->task);
    }
    rt_task_release(&w->task);
    teardown(name);
}

/* Body: wait for all children, but the waiter itself has a deadline. */
static void test_wait_cancelled(void)
{
    ctask_t *w;
    int i;
    setup();
    wait_need = 3;
    w = spawn(body_waiter, NULL, 0);
    rt_task_set_deadline(&w->task, 20);
    run_loop();
    CHECK(w->wakes[1] == RT_WAKE_TIMEOUT);
    CHECK(w->task.outcome == RT_OUTCOME_TIMEOUT);
    for (i = 0; i < 3; i++) {
        CHECK(targets[i]->task.outcome ==
              (i == 0 ? RT_OUTCOME_OK : RT_OUTCOME_TIMEOUT));
        rt_task_release(&targets[i]->task);
    }
    rt_task_release(&w->task);
    teardown("a waiter's deadline ends the wait and its children");
}

static void test_many(void)
{
    enum { N = 20000 };
    static ctask_t *ts[N];
    int i;
    setup();
    for (i = 0; i < N; i++)
        ts[i] = spawn(body_sleep, NULL, (uint64_t)(i % 7));
    run_loop();
    for (i = 0; i < N; i++) {
        CHECK(ts[i]->task.outcome == RT_OUTCOME_OK);
        rt_task_release(&ts[i]->task);
    }
    teardown("20000 concurrent sleeping tasks all finish and are freed");
}

static ctask_t *scope_kid;
static int scope_fired_flag;

/* Body: open a 30 ms scope, start a child (5 s), wait 5 s on a timer
 * (the scope aborts it), check that a second wait inside the fired scope
 * fails at once, close the scope, then wait 10 ms normally and finish. */
static void body_scope(ctask_t *t, rt_wake_t wake)
{
    switch (t->step++) {
    case 0:
        CHECK(rt_task_scope_open(&t->task, 30) == 0);
        CHECK(rt_task_scope_open(&t->task, 30) == -1); /* no nesting */
        scope_kid = spawn(body_sleep, t, 5000);
        CHECK(wait_timer(t, 5000) == RT_WAKE_OK);
        return;
    case 1:
        CHECK(wake == RT_WAKE_TIMEOUT);
        CHECK(rt_task_stop_reason(&t->task) == RT_WAKE_TIMEOUT);
        CHECK(wait_timer(t, 10) == RT_WAKE_TIMEOUT); /* fails fast */
        scope_fired_flag = rt_task_scope_close(&t->task);
        CHECK(rt_task_stop_reason(&t->task) == RT_WAKE_OK);
        CHECK(wait_timer(t, 10) == RT_WAKE_OK);
        return;
    default:
        CHECK(wake == RT_WAKE_OK);
        rt_task_finish(&t->task, RT_OUTCOME_OK);
    }
}

static void test_scope(void)
{
    ctask_t *t;
    uint64_t start;
    setup();
    uv_update_time(&loop);
    start = uv_now(&loop);
    t = spawn(body_scope, NULL, 0);
    run_loop();
    CHECK(scope_fired_flag == 1);
    CHECK(t->woke_at[1] - start >= 30 && t->woke_at[1] - start < 45);
    CHECK(t->task.outcome == RT_OUTCOME_OK); /* the task was not cancelled */
    CHECK(scope_kid->wakes[1] == RT_WAKE_TIMEOUT);
    CHECK(scope_kid->task.outcome == RT_OUTCOME_TIMEOUT);
    rt_task_release(&scope_kid->task);
    rt_task_release(&t->task);
    teardown("a deadline scope aborts its waits and children, not its task");
}

/* Body: a scope closed before its deadline leaves no timer behind and
 * cancels its children still running. */
static void body_scope_early(ctask_t *t, rt_wake_t wake)
{
    (void)wake;
    switch (t->step++) {
    case 0:
        CHECK(rt_task_scope_open(&t->task, 10000) == 0);
        scope_kid = spawn(body_sleep, t, 5000);
        CHECK(wait_timer(t, 5) == RT_WAKE_OK);
        return;
    default:
        CHECK(rt_task_scope_close(&t->task) == 0);
        rt_task_finish(&t->task, RT_OUTCOME_OK);
    }
}

static void test_scope_early(void)
{
    ctask_t *t;
    uint64_t start;
    setup();
    uv_update_time(&loop);
    start = uv_now(&loop);
    t = spawn(body_scope_early, NULL, 0);
    run_loop(); /* would wait 10 s if the scope's timer stayed armed */
    uv_update_time(&loop);
    CHECK(uv_now(&loop) - start < 1000);
    CHECK(scope_kid->task.outcome == RT_OUTCOME_CANCELLED);
    rt_task_release(&scope_kid->task);
    rt_task_release(&t->task);
    teardown("a scope closed early cancels its children and disarms its timer");
}

/* After-resume hooks: each runs once per resume, after the task has
 * yielded or finished; a removed hook runs no more. */
static int hook_calls[2], hook_resumes_seen;
static ctask_t *hooked;

static void count_hook(void *arg)
{
    int *n = arg;
    (*n)++;
    /* The task has suspended or finished: nothing is running. */
    CHECK(sched.current == NULL);
    if (n == &hook_calls[0] && hooked != NULL)
        hook_resumes_seen = hooked->resumes;
}

static void test_hooks(void)
{
    rt_sched_hook_t a = {count_hook, &hook_calls[0], NULL, NULL};
    rt_sched_hook_t b = {count_hook, &hook_calls[1], NULL, NULL};
    ctask_t *t1, *t2;
    setup();
    rt_sched_hook_add(&sched, &a);
    rt_sched_hook_add(&sched, &b);
    hooked = t1 = spawn(body_sleep, NULL, 1); /* two resumes */
    run_loop();
    CHECK(hook_calls[0] == 2 && hook_calls[1] == 2);
    CHECK(hook_resumes_seen == 2);
    rt_sched_hook_remove(&sched, &a);
    hooked = NULL;
    t2 = spawn(body_sleep, NULL, 1);
    run_loop();
    CHECK(hook_calls[0] == 2 && hook_calls[1] == 4);
    rt_sched_hook_remove(&sched, &b);
    rt_sched_hook_remove(&sched, &b); /* removing twice is harmless */
    CHECK(sched.after_resume == NULL);
    rt_task_release(&t1->task);
    rt_task_release(&t2->task);
    teardown("after-resume hooks run once per resume until removed");
}

/* Deferrals (rt_sched_defer): one fires per loop iteration, after its
 * poll, in order; one taken back by a cancel never fires. */
typedef struct {
    rt_op_t op;
    rt_defer_t d;
    ctask_t *t;
} defer_op_t;

static unsigned long iterations; /* loop iterations, counted before poll */
static unsigned long resumed_at[4];
static int resumed_order[4], nresumed;

static void count_iteration(uv_prepare_t *h)
{
    (void)h;
    iterations++;
}

static void defer_fire(rt_defer_t *d)
{
    defer_op_t *o = (defer_op_t *)((char *)d - offsetof(defer_op_t, d));
    rt_task_wake(&o->t->task);
    free(o);
}

static void defer_cancel(rt_op_t *op, rt_task_t *task)
{
    defer_op_t *o = (defer_op_t *)op;
    (void)task;
    op_cancels++;
    rt_sched_undefer(&sched, &o->d);
    free(o);
}

/* Body: defer once, then note when it ran and finish. */
static void body_defer(ctask_t *t, rt_wake_t wake)
{
    if (t->step++ == 0) {
        defer_op_t *o = malloc(sizeof(*o));
        o->op.cancel = defer_cancel;
        o->d.fire = defer_fire;
        o->t = t;
        rt_sched_defer(&sched, &o->d);
        if (rt_task_suspend(&t->task, &o->op) == RT_WAKE_OK)
            return;
        rt_sched_undefer(&sched, &o->d);
        free(o);
    }
    if (wake == RT_WAKE_OK && nresumed < 4) {
        resumed_at[nresumed] = iterations;
        resumed_order[nresumed++] = (int)t->arg;
    }
    rt_task_finish(&t->task, RT_OUTCOME_OK);
}

static void test_defer(void)
{
    uv_prepare_t prep;
    ctask_t *d[3], *c;
    int i;
    setup();
    iterations = 0;
    nresumed = 0;
    uv_prepare_init(&loop, &prep);
    uv_prepare_start(&prep, count_iteration);
    uv_unref((uv_handle_t *)&prep);
    for (i = 0; i < 3; i++)
        d[i] = spawn(body_defer, NULL, (uint64_t)i);
    /* Runs in the first drain, after the three have deferred: the second
     * is taken back before it fires. */
    c = spawn(body_canceller, NULL, 0);
    c->other = d[1];
    c->step = 1; /* cancel at once, no timer */
    run_loop();
    CHECK(nresumed == 2);
    CHECK(resumed_order[0] == 0 && resumed_order[1] == 2);
    CHECK(resumed_at[1] > resumed_at[0]); /* not in the same iteration */
    CHECK(d[1]->resumes == 2 && d[1]->wakes[1] == RT_WAKE_CANCELLED);
    CHECK(op_cancels == 1);
    CHECK(sched.defer_head == NULL && sched.defer_tail == NULL);
    uv_close((uv_handle_t *)&prep, NULL);
    for (i = 0; i < 3; i++)
        rt_task_release(&d[i]->task);
    rt_task_release(&c->task);
    teardown("deferred tasks resume one a loop iteration, in order; a "
             "cancel takes one back");
}

int main(void)
{
    test_timer_wake();
    test_cancel();
    test_deadline();
    test_deadline_not_reached();
    test_structured();
    test_structured_running();
    test_cancel_subtree();
    test_wait(3, 3, "wait for all resumes when the last child is done");
    test_wait(1, 1, "wait for any resumes at the first child done");
    test_wait(2, 2, "wait for two of three");
    test_wait_cancelled();
    test_many();
    test_scope();
    test_scope_early();
    test_hooks();
    test_defer();
    if (test_failures) {
        printf("scheduler tests: %d checks failed\n", test_failures);
        return 1;
    }
    printf("all scheduler tests passed\n");
    return 0;
}
