/* rt_timer.c - many timers on one libuv timer handle (see rt_timer.h). */
#include "rt_timer.h"

#include <assert.h>
#include <stdlib.h>

static int rt__before(const rt_timer_t *a, const rt_timer_t *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void rt__place(rt_timers_t *ts, uint32_t i, rt_timer_t *tm)
{
    ts->heap[i] = tm;
    tm->slot = i + 1;
}

static void rt__sift_up(rt_timers_t *ts, uint32_t i)
{
    rt_timer_t *tm = ts->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!rt__before(tm, ts->heap[parent]))
            break;
        rt__place(ts, i, ts->heap[parent]);
        i = parent;
    }
    rt__place(ts, i, tm);
}

static void rt__sift_down(rt_timers_t *ts, uint32_t i)
{
    rt_timer_t *tm = ts->heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= ts->len)
            break;
        if (child + 1 < ts->len &&
            rt__before(ts->heap[child + 1], ts->heap[child]))
            child++;
        if (!rt__before(ts->heap[child], tm))
            break;
        rt__place(ts, i, ts->heap[child]);
        i = child;
    }
    rt__place(ts, i, tm);
}

/* Takes the timer at heap index i out. */
static void rt__remove(rt_timers_t *ts, uint32_t i)
{
    rt_timer_t *last = ts->heap[--ts->len];
    ts->heap[i]->slot = 0;
    if (i == ts->len)
        return;
    rt__place(ts, i, last);
    rt__sift_up(ts, i);
    rt__sift_down(ts, last->slot - 1);
}

static void rt__timers_cb(uv_timer_t *h);

/* Points the handle at the earliest timer (or stops it). */
static void rt__rearm(rt_timers_t *ts)
{
    uint64_t due, now;
    if (ts->len == 0) {
        if (ts->armed) {
            (void)uv_timer_stop(&ts->handle); /* cannot fail */
            ts->armed = 0;
        }
        return;
    }
    due = ts->heap[0]->due;
    if (due == ts->armed)
        return;
    now = uv_now(ts->handle.loop);
    /* uv_timer_start fails only on a closing handle or a NULL callback. */
    (void)uv_timer_start(&ts->handle, rt__timers_cb, due > now ? due - now : 0,
                         0);
    ts->armed = due;
}

static void rt__timers_cb(uv_timer_t *h)
{
    rt_timers_t *ts = h->data;
    uint64_t now = uv_now(h->loop);
    ts->armed = 0;
    while (ts->len > 0 && ts->heap[0]->due <= now) {
        rt_timer_t *tm = ts->heap[0];
        rt__remove(ts, 0);
        tm->fire(tm); /* may start or stop timers */
    }
    rt__rearm(ts);
}

int rt_timers_init(rt_timers_t *ts, uv_loop_t *loop)
{
    int rc = uv_timer_init(loop, &ts->handle);
    if (rc < 0)
        return rc;
    ts->handle.data = ts;
    ts->heap = NULL;
    ts->len = ts->cap = 0;
    ts->seq = 0;
    ts->armed = 0;
    return 0;
}

void rt_timers_close(rt_timers_t *ts, uv_close_cb cb)
{
    assert(ts->len == 0);
    free(ts->heap);
    ts->heap = NULL;
    ts->cap = 0;
    uv_close((uv_handle_t *)&ts->handle, cb);
}

void rt_timer_init(rt_timer_t *tm, void (*fire)(rt_timer_t *tm))
{
    tm->due = 0;
    tm->seq = 0;
    tm->slot = 0;
    tm->fire = fire;
}

int rt_timer_start(rt_timers_t *ts, rt_timer_t *tm, uint64_t due)
{
    if (tm->slot == 0 && ts->len == ts->cap) {
        uint32_t cap = ts->cap ? ts->cap * 2 : 64;
        rt_timer_t **heap = realloc(ts->heap, cap * sizeof(*heap));
        if (heap == NULL)
            return UV_ENOMEM;
        ts->heap = heap;
        ts->cap = cap;
    }
    if (tm->slot != 0)
        rt__remove(ts, tm->slot - 1);
    tm->due = due;
    tm->seq = ++ts->seq;
    ts->heap[ts->len] = tm;
    tm->slot = ++ts->len;
    rt__sift_up(ts, ts->len - 1);
    rt__rearm(ts);
    return 0;
}

void rt_timer_stop(rt_timers_t *ts, rt_timer_t *tm)
{
    if (tm->slot == 0)
        return;
    rt__remove(ts, tm->slot - 1);
    rt__rearm(ts);
}
