/* rt_watchdog.h - notices a resume that runs too long, from a thread of
 * its own.
 *
 * The loop's thread (the one that calls rt_watchdog_start) marks each
 * resume's start and end (two atomic stores: no clock read on the hot
 * path). The watchdog thread ticks every budget/4 ms and reads the loop
 * thread's CPU clock; a resume still running with the same sequence
 * number once that thread has used the budget's CPU since the resume was
 * first seen is reported to on_overrun, once, on the watchdog thread.
 * Time the thread spends off a core (blocked, or waiting for one) does not
 * count. It also reports, on each tick, when the memory
 * gauge is over its limit (on_memory). What to do about either is the
 * caller's (rt_lua_watchdog.c arms a Lua hook). */
#ifndef RT_WATCHDOG_H
#define RT_WATCHDOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

typedef struct rt_watchdog {
    atomic_uint_fast64_t seq; /* resumes begun */
    /* A resume seen past a quarter of its budget: the loop's code may
     * yield before it is interrupted (rt_watchdog_long). */
    atomic_uint_fast64_t long_seq;
    atomic_int active; /* a resume is running */
    atomic_int stop;
    atomic_uint budget_ms;  /* 0: no budget */
    atomic_llong mem;       /* a gauge the caller keeps (bytes) */
    atomic_llong mem_limit; /* 0: none */
    void (*on_overrun)(void *arg, uint64_t seq);
    void (*on_memory)(void *arg, long long mem);
    void *arg;
    clockid_t loop_clock; /* the loop thread's CPU clock */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started;
} rt_watchdog_t;

/* Starts the thread. Returns 0 or an errno value. */
int rt_watchdog_start(rt_watchdog_t *w, unsigned budget_ms,
                      void (*on_overrun)(void *, uint64_t),
                      void (*on_memory)(void *, long long), void *arg);
/* Stops and joins the thread (a no-op when it never started). */
void rt_watchdog_stop(rt_watchdog_t *w);
/* Changes the budget (0 turns the check off); the thread adopts it at its
 * next tick. */
void rt_watchdog_set_budget(rt_watchdog_t *w, unsigned budget_ms);

static inline void rt_watchdog_enter(rt_watchdog_t *w)
{
    atomic_fetch_add_explicit(&w->seq, 1, memory_order_relaxed);
    atomic_store_explicit(&w->active, 1, memory_order_release);
}

/* Has the running resume (one of script code) used a quarter of the
 * budget? On the loop's thread: three loads, for a check at safe points. */
static inline int rt_watchdog_long(rt_watchdog_t *w)
{
    uint64_t s = atomic_load_explicit(&w->long_seq, memory_order_relaxed);
    return s != 0 && s == atomic_load_explicit(&w->seq, memory_order_relaxed) &&
           atomic_load_explicit(&w->active, memory_order_relaxed);
}

static inline void rt_watchdog_leave(rt_watchdog_t *w)
{
    atomic_store_explicit(&w->active, 0, memory_order_release);
}

#endif
