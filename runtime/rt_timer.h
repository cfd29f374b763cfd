/* rt_timer.h - many timers on one libuv timer handle.
 *
 * Every sleep and every task deadline used to own a uv_timer_t (152 bytes,
 * malloc'd, closed through the loop): with 100k executions in flight that
 * was ~60 MB and a close callback per sleep. Here a timer is 32 bytes
 * embedded in its owner, kept in a binary min-heap by due time; one handle
 * is armed for the earliest. Timers due at the same time fire in the order
 * they were started. Not thread-safe: loop thread only. */
#ifndef RT_TIMER_H
#define RT_TIMER_H

#include <stdint.h>
#include <uv.h>

typedef struct rt_timer rt_timer_t;

struct rt_timer {
    uint64_t due;                 /* uv_now() milliseconds */
    uint64_t seq;                 /* start order, for ties */
    uint32_t slot;                /* heap index + 1; 0 = not armed */
    void (*fire)(rt_timer_t *tm); /* called once due; tm is disarmed */
};

typedef struct {
    uv_timer_t handle;
    rt_timer_t **heap;
    uint32_t len, cap;
    uint64_t seq;
    uint64_t armed; /* due the handle is started for; 0 = stopped */
} rt_timers_t;

/* Returns 0 or a negative uv error. */
int rt_timers_init(rt_timers_t *ts, uv_loop_t *loop);
/* Closes the handle (every timer must be stopped); ts must live until
 * the loop has run the close: cb (may be NULL) says when. */
void rt_timers_close(rt_timers_t *ts, uv_close_cb cb);

/* Initialises tm, disarmed, with its callback. */
void rt_timer_init(rt_timer_t *tm, void (*fire)(rt_timer_t *tm));
/* Arms tm (or moves it) to fire at due (uv_now() ms; the past fires on
 * the next loop iteration). Returns 0, or UV_ENOMEM (tm stays as it was). */
int rt_timer_start(rt_timers_t *ts, rt_timer_t *tm, uint64_t due);
/* Disarms tm; nothing if it is not armed. */
void rt_timer_stop(rt_timers_t *ts, rt_timer_t *tm);

static inline int rt_timer_armed(const rt_timer_t *tm)
{
    return tm->slot != 0;
}

#endif
