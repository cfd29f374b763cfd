/* rt_watchdog.c - notices a resume that runs too long, from a thread of
 * its own (see rt_watchdog.h). */
#include "rt_watchdog.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* The thread ticks every budget/4 ms, at most every RT_WD_MAX_TICK_MS
 * (the memory gauge is read on each tick too). */
#define RT_WD_MIN_TICK_MS 2
#define RT_WD_MAX_TICK_MS 25

static unsigned rt__tick_ms(unsigned budget)
{
    unsigned t = budget / 4;
    if (budget == 0 || t > RT_WD_MAX_TICK_MS)
        return RT_WD_MAX_TICK_MS;
    return t < RT_WD_MIN_TICK_MS ? RT_WD_MIN_TICK_MS : t;
}

/* Nanoseconds of CPU the loop's thread has used (of wall time where the
 * system gives no per-thread clock). */
static int64_t rt__loop_ns(const rt_watchdog_t *w)
{
    struct timespec ts;
    if (clock_gettime(w->loop_clock, &ts) != 0 &&
        clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *rt__run(void *arg)
{
    rt_watchdog_t *w = arg;
    uint64_t last = 0, fired = 0;
    int64_t since = 0; /* the loop's CPU clock when seq was first seen */
    struct timespec until;
    pthread_mutex_lock(&w->mu);
    while (!atomic_load(&w->stop)) {
        unsigned budget = atomic_load(&w->budget_ms);
        unsigned ms = rt__tick_ms(budget);
        uint64_t seq;
        long long mem, lim;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += ms / 1000;
        until.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!atomic_load(&w->stop) &&
               pthread_cond_timedwait(&w->cv, &w->mu, &until) != ETIMEDOUT)
            ;
        if (atomic_load(&w->stop))
            break;
        seq = atomic_load_explicit(&w->seq, memory_order_relaxed);
        /* The CPU is counted from the first tick that saw this resume, so
         * it had used at least the budget when it is reported, however
         * long the machine kept the thread off a core (a stalled or
         * overloaded host must not fail a script that did little). */
        if (atomic_load_explicit(&w->active, memory_order_acquire) &&
            seq == last && budget > 0) {
            int64_t used = rt__loop_ns(w) - since;
            if (used >= (int64_t)budget * 250000)
                atomic_store_explicit(&w->long_seq, seq, memory_order_relaxed);
            if (fired != seq && used >= (int64_t)budget * 1000000) {
                fired = seq;
                if (w->on_overrun != NULL)
                    w->on_overrun(w->arg, seq);
            }
        } else {
            last = seq;
            since = rt__loop_ns(w);
        }
        mem = atomic_load_explicit(&w->mem, memory_order_relaxed);
        lim = atomic_load_explicit(&w->mem_limit, memory_order_relaxed);
        if (lim > 0 && mem > lim && w->on_memory != NULL)
            w->on_memory(w->arg, mem);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int rt_watchdog_start(rt_watchdog_t *w, unsigned budget_ms,
                      void (*on_overrun)(void *, uint64_t),
                      void (*on_memory)(void *, long long), void *arg)
{
    pthread_condattr_t ca;
    int rc;
    memset(w, 0, sizeof *w);
    atomic_init(&w->seq, 0);
    atomic_init(&w->long_seq, 0);
    atomic_init(&w->active, 0);
    atomic_init(&w->stop, 0);
    atomic_init(&w->budget_ms, budget_ms);
    atomic_init(&w->mem, 0);
    atomic_init(&w->mem_limit, 0);
    w->on_overrun = on_overrun;
    w->on_memory = on_memory;
    w->arg = arg;
    if (pthread_getcpuclockid(pthread_self(), &w->loop_clock) != 0)
        w->loop_clock = CLOCK_MONOTONIC;
    if ((rc = pthread_mutex_init(&w->mu, NULL)) != 0)
        return rc;
    if ((rc = pthread_condattr_init(&ca)) != 0) {
        pthread_mutex_destroy(&w->mu);
        return rc;
    }
    rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        pthread_mutex_destroy(&w->mu);
        return rc;
    }
    if ((rc = pthread_create(&w->thread, NULL, rt__run, w)) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        return rc;
    }
    w->started = 1;
    return 0;
}

void rt_watchdog_set_budget(rt_watchdog_t *w, unsigned budget_ms)
{
    atomic_store(&w->budget_ms, budget_ms);
}

void rt_watchdog_stop(rt_watchdog_t *w)
{
    if (!w->started)
        return;
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->stop, 1);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    w->started = 0;
}
