/* rt_sched.c - tasks with structured concurrency on a libuv loop. */
#include "rt_sched.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>

static void rt__enqueue(rt_sched_t *s, rt_task_t *t, rt_wake_t wake);
static void rt__done(rt_task_t *t);
static void rt__drain_cb(uv_idle_t *h);
static void rt__check_cb(uv_check_t *h);
static void rt__deadline_fire(rt_timer_t *tm);
static void rt__waiter_cancel(rt_op_t *op, rt_task_t *task);
static void rt__waiter_free(rt_waiter_t *w);

int rt_sched_init(rt_sched_t *s, uv_loop_t *loop)
{
    int rc;
    s->loop = loop;
    s->ready_head = s->ready_tail = NULL;
    s->defer_head = s->defer_tail = NULL;
    s->current = NULL;
    s->after_resume = NULL;
    s->roots = NULL;
    s->live = 0;
    s->draining = 0;
    rc = rt_timers_init(&s->timers, loop);
    if (rc < 0)
        return rc;
    rc = uv_idle_init(loop, &s->idle);
    if (rc < 0) {
        rt_timers_close(&s->timers, NULL);
        return rc;
    }
    s->idle.data = s;
    rc = uv_check_init(loop, &s->check);
    if (rc < 0)
        goto fail_check;
    s->check.data = s;
    rc = uv_check_start(&s->check, rt__check_cb);
    if (rc < 0)
        goto fail_start;
    /* The check handle only drains; it must not keep the loop alive. */
    uv_unref((uv_handle_t *)&s->check);
    return 0;
fail_start:
    uv_close((uv_handle_t *)&s->check, NULL);
fail_check:
    uv_close((uv_handle_t *)&s->idle, NULL);
    rt_timers_close(&s->timers, NULL);
    return rc;
}

/* One of the scheduler's three handles finished closing. */
static void rt__closed(rt_sched_t *s)
{
    if (--s->closing == 0 && s->on_closed)
        s->on_closed(s);
}

static void rt__handle_closed(uv_handle_t *h)
{
    rt__closed(h->data);
}

static void rt__timers_closed(uv_handle_t *h)
{
    rt_timers_t *ts = h->data;
    rt__closed((rt_sched_t *)((char *)ts - offsetof(rt_sched_t, timers)));
}

void rt_sched_close(rt_sched_t *s, void (*on_closed)(rt_sched_t *s))
{
    assert(s->live == 0);
    s->on_closed = on_closed;
    s->closing = 3;
    uv_close((uv_handle_t *)&s->idle, rt__handle_closed);
    uv_close((uv_handle_t *)&s->check, rt__handle_closed);
    rt_timers_close(&s->timers, rt__timers_closed);
}

static void rt__drain_cb(uv_idle_t *h)
{
    rt_sched_drain(h->data);
}

/* After the poll: one deferral fires (rt_sched_defer), then the drain. */
static void rt__check_cb(uv_check_t *h)
{
    rt_sched_t *s = h->data;
    rt_defer_t *d = s->defer_head;
    if (d != NULL) {
        rt_sched_undefer(s, d);
        d->fire(d);
    }
    rt_sched_drain(s);
}

void rt_sched_defer(rt_sched_t *s, rt_defer_t *d)
{
    d->next = NULL;
    d->prev = s->defer_tail;
    if (s->defer_tail != NULL)
        s->defer_tail->next = d;
    else
        s->defer_head = d;
    s->defer_tail = d;
    /* The idle handle keeps poll from blocking until it has fired. */
    if (!s->draining && !uv_is_active((uv_handle_t *)&s->idle))
        (void)uv_idle_start(&s->idle, rt__drain_cb);
}

void rt_sched_undefer(rt_sched_t *s, rt_defer_t *d)
{
    if (d->prev != NULL)
        d->prev->next = d->next;
    else if (s->defer_head == d)
        s->defer_head = d->next;
    else
        return; /* not deferred */
    if (d->next != NULL)
        d->next->prev = d->prev;
    else
        s->defer_tail = d->prev;
    d->prev = d->next = NULL;
}

/* Tasks resumed per drain. What is left waits for the next loop iteration
 * (the idle handle keeps poll from blocking), so a long ready queue never
 * starves timers, sockets or the GC pacer: with 100k executions queued a
 * full drain took seconds, and every sleep, deadline and request waited
 * for it. */
#define RT_DRAIN_BUDGET 1024

void rt_sched_hook_add(rt_sched_t *s, rt_sched_hook_t *h)
{
    h->prev = NULL;
    h->next = s->after_resume;
    if (h->next != NULL)
        h->next->prev = h;
    s->after_resume = h;
}

void rt_sched_hook_remove(rt_sched_t *s, rt_sched_hook_t *h)
{
    if (h->prev != NULL)
        h->prev->next = h->next;
    else if (s->after_resume == h)
        s->after_resume = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    h->prev = h->next = NULL;
}

void rt_sched_drain(rt_sched_t *s)
{
    rt_sched_hook_t *h;
    rt_task_t *t;
    unsigned budget = RT_DRAIN_BUDGET;
    if (s->draining)
        return;
    s->draining = 1;
    while (budget-- > 0 && (t = s->ready_head) != NULL) {
        s->ready_head = t->next_ready;
        if (s->ready_head == NULL)
            s->ready_tail = NULL;
        t->next_ready = NULL;
        if (t->state == RT_TASK_NEW && t->cancel_reason != RT_WAKE_OK) {
            /* Cancelled before it ever ran: its body never starts. */
            t->state = RT_TASK_RUNNING;
            rt_task_finish(t, RT_OUTCOME_OK);
            continue;
        }
        t->state = RT_TASK_RUNNING;
        s->current = t;
        /* A task that finishes may drop its last reference inside resume;
         * hold one so it can be checked afterwards. */
        t->refs++;
        t->vt->resume(t, t->wake);
        s->current = NULL;
        /* The resume hook must have suspended or finished the task. */
        assert(t->state != RT_TASK_RUNNING);
        rt_task_release(t);
        for (h = s->after_resume; h != NULL; h = h->next)
            h->fn(h->arg);
    }
    if (s->ready_head == NULL && s->defer_head == NULL)
        uv_idle_stop(&s->idle);
    else if (!uv_is_active((uv_handle_t *)&s->idle))
        (void)uv_idle_start(&s->idle, rt__drain_cb); /* cannot fail */
    s->draining = 0;
}

void rt_sched_cancel_all(rt_sched_t *s)
{
    rt_task_t *t, *next;
    for (t = s->roots; t != NULL; t = next) {
        next = t->next_sibling;
        rt_task_cancel(t, RT_WAKE_CANCELLED);
    }
    while (s->ready_head != NULL && !s->draining)
        rt_sched_drain(s);
}

static void rt__enqueue(rt_sched_t *s, rt_task_t *t, rt_wake_t wake)
{
    t->wake = wake;
    if (t->state != RT_TASK_NEW)
        t->state = RT_TASK_READY;
    t->next_ready = NULL;
    if (s->ready_tail)
        s->ready_tail->next_ready = t;
    else
        s->ready_head = t;
    s->ready_tail = t;
    /* An active idle handle makes the poll phase return at once, so queued
     * work never waits for I/O. Inside a drain the loop picks it up. */
    if (!s->draining && !uv_is_active((uv_handle_t *)&s->idle))
        (void)uv_idle_start(&s->idle, rt__drain_cb);
}

static void rt__link_child(rt_sched_t *s, rt_task_t *parent, rt_task_t *t)
{
    rt_task_t **head = parent ? &parent->first_child : &s->roots;
    t->prev_sibling = NULL;
    t->next_sibling = *head;
    if (*head)
        (*head)->prev_sibling = t;
    *head = t;
    if (parent)
        parent->nchildren++;
}

static void rt__unlink_child(rt_sched_t *s, rt_task_t *t)
{
    rt_task_t **head = t->parent ? &t->parent->first_child : &s->roots;
    if (t->prev_sibling)
        t->prev_sibling->next_sibling = t->next_sibling;
    else
        *head = t->next_sibling;
    if (t->next_sibling)
        t->next_sibling->prev_sibling = t->prev_sibling;
    t->prev_sibling = t->next_sibling = NULL;
    if (t->parent)
        t->parent->nchildren--;
}

void rt_task_start(rt_sched_t *s, rt_task_t *t, const rt_task_vtable_t *vt,
                   rt_task_t *parent)
{
    t->sched = s;
    t->vt = vt;
    t->parent = parent;
    t->first_child = NULL;
    t->waiters = NULL;
    t->op = NULL;
    rt_timer_init(&t->deadline_tm, rt__deadline_fire);
    t->deadline = 0;
    t->scope_deadline = 0;
    t->scope = 0;
    t->scopes = 0;
    t->in_scope = parent ? parent->scope : 0;
    t->scope_fired = 0;
    t->refs = 2; /* the caller's and the scheduler's (until done) */
    t->nchildren = 0;
    t->state = RT_TASK_NEW;
    t->cancel_reason = RT_WAKE_OK;
    t->outcome = RT_OUTCOME_NONE;
    rt__link_child(s, parent, t);
    s->live++;
    /* A child of a cancelled task starts cancelled (and so never runs). */
    if (parent && parent->cancel_reason != RT_WAKE_OK)
        t->cancel_reason = parent->cancel_reason;
    rt__enqueue(s, t, RT_WAKE_OK);
}

void rt_task_retain(rt_task_t *t)
{
    t->refs++;
}

void rt_task_release(rt_task_t *t)
{
    assert(t->refs > 0);
    if (--t->refs == 0)
        t->vt->free(t);
}

int rt_task_set_deadline(rt_task_t *t, uint64_t ms)
{
    uv_loop_t *loop = t->sched->loop;
    uv_update_time(loop);
    t->deadline = uv_now(loop) + ms;
    if (t->deadline == 0)
        t->deadline = 1;
    return 0;
}

/* The next time the timer must fire: the task's deadline or the open
 * scope's, whichever comes first; 0 when neither applies. */
static uint64_t rt__due(const rt_task_t *t)
{
    uint64_t due = t->deadline;
    if (t->scope && !t->scope_fired && (due == 0 || t->scope_deadline < due))
        due = t->scope_deadline;
    return due;
}

/* Cancels t's children started in scope id (all children when id is 0
 * is never asked: only a real scope's). */
static void rt__cancel_scope_children(rt_task_t *t, uint32_t id,
                                      rt_wake_t reason)
{
    rt_task_t *c, *next;
    for (c = t->first_child; c != NULL; c = next) {
        next = c->next_sibling;
        if (c->in_scope == id)
            rt_task_cancel(c, reason);
    }
}

/* The open scope's deadline passed: its waits end with a timeout. */
static void rt__scope_fire(rt_task_t *t)
{
    t->scope_fired = 1;
    rt__cancel_scope_children(t, t->scope, RT_WAKE_TIMEOUT);
    if (t->state == RT_TASK_SUSPENDED) {
        rt_op_t *op = t->op;
        t->op = NULL;
        op->cancel(op, t);
        rt__enqueue(t->sched, t, RT_WAKE_TIMEOUT);
    }
}

/* Arms (or moves) the task's timer to rt__due(t). Best effort: without
 * memory for the timer heap the task runs without its deadline. */
static void rt__arm(rt_task_t *t)
{
    uint64_t due = rt__due(t);
    if (due == 0 ||
        (rt_timer_armed(&t->deadline_tm) && t->deadline_tm.due == due))
        return;
    (void)rt_timer_start(&t->sched->timers, &t->deadline_tm, due);
}

static void rt__deadline_fire(rt_timer_t *tm)
{
    rt_task_t *t = (rt_task_t *)((char *)tm - offsetof(rt_task_t, deadline_tm));
    uint64_t now = uv_now(t->sched->loop);
    if (t->deadline && now >= t->deadline) {
        rt_task_cancel(t, RT_WAKE_TIMEOUT);
        return;
    }
    if (t->scope && !t->scope_fired && now >= t->scope_deadline)
        rt__scope_fire(t);
    rt__arm(t);
}

int rt_task_scope_open(rt_task_t *t, uint64_t ms)
{
    uv_loop_t *loop = t->sched->loop;
    if (t->scope)
        return -1;
    uv_update_time(loop);
    t->scope = ++t->scopes;
    if (t->scope == 0) /* wrapped: 0 means "none" */
        t->scope = ++t->scopes;
    t->scope_deadline = uv_now(loop) + ms;
    t->scope_fired = 0;
    return 0;
}

int rt_task_scope_close(rt_task_t *t)
{
    int fired = t->scope_fired;
    uint32_t id = t->scope;
    if (id == 0)
        return 0;
    t->scope = 0;
    t->scope_deadline = 0;
    t->scope_fired = 0;
    rt__cancel_scope_children(t, id, RT_WAKE_CANCELLED);
    /* A timer left for the scope would only keep the loop busy. */
    if (rt_timer_armed(&t->deadline_tm) && t->deadline_tm.due != t->deadline) {
        rt_timer_stop(&t->sched->timers, &t->deadline_tm);
        if (t->deadline)
            rt__arm(t);
    }
    return fired;
}

rt_wake_t rt_task_stop_reason(const rt_task_t *t)
{
    if (t->cancel_reason != RT_WAKE_OK)
        return t->cancel_reason;
    return t->scope_fired ? RT_WAKE_TIMEOUT : RT_WAKE_OK;
}

rt_wake_t rt_task_suspend(rt_task_t *t, rt_op_t *op)
{
    uint64_t due;
    assert(t->state == RT_TASK_RUNNING);
    if (t->cancel_reason != RT_WAKE_OK)
        return t->cancel_reason;
    if (t->scope_fired)
        return RT_WAKE_TIMEOUT;
    due = rt__due(t);
    if (due) {
        uint64_t now;
        uv_update_time(t->sched->loop);
        now = uv_now(t->sched->loop);
        if (t->deadline && now >= t->deadline) {
            rt_task_cancel(t, RT_WAKE_TIMEOUT);
            return RT_WAKE_TIMEOUT;
        }
        if (t->scope && now >= t->scope_deadline) {
            rt__scope_fire(t); /* not suspended: wakes nothing */
            return RT_WAKE_TIMEOUT;
        }
        rt__arm(t);
    }
    t->op = op;
    t->state = RT_TASK_SUSPENDED;
    return RT_WAKE_OK;
}

void rt_task_wake(rt_task_t *t)
{
    assert(t->state == RT_TASK_SUSPENDED);
    t->op = NULL;
    rt__enqueue(t->sched, t, RT_WAKE_OK);
}

void rt_task_cancel(rt_task_t *t, rt_wake_t reason)
{
    rt_task_t *c, *next;
    if (t->state == RT_TASK_DONE || t->cancel_reason != RT_WAKE_OK)
        return;
    t->cancel_reason = reason;
    for (c = t->first_child; c != NULL; c = next) {
        next = c->next_sibling; /* a NEW child stays linked; safe anyway */
        rt_task_cancel(c, reason);
    }
    if (t->state == RT_TASK_SUSPENDED) {
        rt_op_t *op = t->op;
        t->op = NULL;
        op->cancel(op, t);
        rt__enqueue(t->sched, t, reason);
    }
}

void rt_task_finish(rt_task_t *t, rt_outcome_t outcome)
{
    rt_task_t *c, *next;
    assert(t->state == RT_TASK_RUNNING);
    if (t->cancel_reason == RT_WAKE_TIMEOUT)
        outcome = RT_OUTCOME_TIMEOUT;
    else if (t->cancel_reason == RT_WAKE_CANCELLED)
        outcome = RT_OUTCOME_CANCELLED;
    t->outcome = outcome;
    if (t->nchildren > 0) {
        /* Structured concurrency: nothing outlives the body that made it. */
        t->state = RT_TASK_CLOSING;
        for (c = t->first_child; c != NULL; c = next) {
            next = c->next_sibling;
            rt_task_cancel(c, RT_WAKE_CANCELLED);
        }
        return;
    }
    rt__done(t);
}

/* Wakes w's task if enough targets are done, unlinking w everywhere. */
static void rt__waiter_notify(rt_waiter_t *w)
{
    rt_task_t *task;
    if (++w->done < w->need)
        return;
    task = w->task;
    rt__waiter_free(w);
    rt_task_wake(task);
}

static void rt__done(rt_task_t *t)
{
    rt_sched_t *s = t->sched;
    rt_task_t *parent = t->parent;
    struct rt_wait_link *l;

    t->state = RT_TASK_DONE;
    s->live--;
    rt_timer_stop(&s->timers, &t->deadline_tm);
    if (t->vt->done)
        t->vt->done(t);
    /* Notify waiters. rt__waiter_notify may free other links of this list
     * (a wait on the same task twice), so always restart from the head. */
    while ((l = t->waiters) != NULL) {
        t->waiters = l->next;
        if (l->next)
            l->next->prev = NULL;
        l->target = NULL;
        l->next = l->prev = NULL;
        rt__waiter_notify(l->waiter);
    }
    rt__unlink_child(s, t);
    if (parent && parent->state == RT_TASK_CLOSING && parent->nchildren == 0)
        rt__done(parent);
    rt_task_release(t);
}

static void rt__waiter_free(rt_waiter_t *w)
{
    uint32_t i;
    for (i = 0; i < w->nlinks; i++) {
        struct rt_wait_link *l = &w->links[i];
        if (l->target == NULL)
            continue;
        if (l->prev)
            l->prev->next = l->next;
        else
            l->target->waiters = l->next;
        if (l->next)
            l->next->prev = l->prev;
        l->target = NULL;
    }
    free(w);
}

static void rt__waiter_cancel(rt_op_t *op, rt_task_t *task)
{
    (void)task;
    rt__waiter_free((rt_waiter_t *)op);
}

int rt_task_wait(rt_task_t *waiter, rt_task_t **targets, uint32_t n,
                 uint32_t need)
{
    rt_waiter_t *w;
    uint32_t i, done = 0, pending = 0;
    rt_wake_t why;

    if (need > n)
        need = n;
    for (i = 0; i < n; i++) {
        if (rt_task_is_done(targets[i]))
            done++;
        else
            pending++;
    }
    if (rt_task_stop_reason(waiter) != RT_WAKE_OK)
        return RT_WAIT_CANCELLED;
    if (done >= need)
        return RT_WAIT_READY;
    /* One allocation holds the waiter and its links. */
    w = malloc(sizeof(*w) + pending * sizeof(struct rt_wait_link));
    if (w == NULL)
        return RT_WAIT_NOMEM;
    w->op.cancel = rt__waiter_cancel;
    w->task = waiter;
    w->need = need;
    w->done = done;
    w->nlinks = 0;
    w->links = (struct rt_wait_link *)(w + 1);
    why = rt_task_suspend(waiter, &w->op);
    if (why != RT_WAKE_OK) {
        free(w);
        return RT_WAIT_CANCELLED;
    }
    for (i = 0; i < n; i++) {
        struct rt_wait_link *l;
        if (rt_task_is_done(targets[i]))
            continue;
        l = &w->links[w->nlinks++];
        l->waiter = w;
        l->target = targets[i];
        l->prev = NULL;
        l->next = targets[i]->waiters;
        if (l->next)
            l->next->prev = l;
        targets[i]->waiters = l;
    }
    return RT_WAIT_SUSPENDED;
}
