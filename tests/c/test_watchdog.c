/* test_watchdog.c - unit tests of the resume watchdog (rt_watchdog.c):
 * a resume that computes past its budget is reported once (and marked
 * long past a quarter of it); one that spends the same time off the CPU
 * (blocked, or waiting for a core) is not; short resumes never are; the
 * memory gauge past its limit is. */
#include <stdio.h>
#include <time.h>

#include "rt_watchdog.h"

#include "test_check.h"

static atomic_int overruns, memory_reports;
static atomic_uint_fast64_t overrun_seq;

static void on_overrun(void *arg, uint64_t seq)
{
    (void)arg;
    atomic_store(&overrun_seq, seq);
    atomic_fetch_add(&overruns, 1);
}

static void on_memory(void *arg, long long mem)
{
    (void)arg;
    (void)mem;
    atomic_fetch_add(&memory_reports, 1);
}

static double now_ms(clockid_t clock)
{
    struct timespec ts;
    CHECK(clock_gettime(clock, &ts) == 0);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Computes until this thread has used ms of CPU. */
static void spin_cpu_ms(double ms)
{
    double t0 = now_ms(CLOCK_THREAD_CPUTIME_ID);
    volatile unsigned long x = 0;
    while (now_ms(CLOCK_THREAD_CPUTIME_ID) - t0 < ms)
        x++;
}

static void reset(void)
{
    atomic_store(&overruns, 0);
    atomic_store(&memory_reports, 0);
    atomic_store(&overrun_seq, 0);
}

static void test_computing_resume_reported_once(rt_watchdog_t *w)
{
    reset();
    rt_watchdog_enter(w);
    CHECK(!rt_watchdog_long(w));
    spin_cpu_ms(150);           /* three times the budget */
    CHECK(rt_watchdog_long(w)); /* past a quarter: a yield is due */
    rt_watchdog_leave(w);
    CHECK(!rt_watchdog_long(w));
    CHECK(atomic_load(&overruns) == 1);
    CHECK(atomic_load(&overrun_seq) == atomic_load(&w->seq));
}

static void test_blocked_resume_not_reported(rt_watchdog_t *w)
{
    reset();
    rt_watchdog_enter(w);
    sleep_ms(200); /* four budgets of wall time, next to no CPU */
    rt_watchdog_leave(w);
    CHECK(atomic_load(&overruns) == 0);
}

static void test_short_resumes_not_reported(rt_watchdog_t *w)
{
    int i;
    reset();
    for (i = 0; i < 40; i++) {
        rt_watchdog_enter(w);
        spin_cpu_ms(10);
        CHECK(!rt_watchdog_long(w)); /* 10 ms is under a quarter of 50 */
        rt_watchdog_leave(w);
    }
    CHECK(atomic_load(&overruns) == 0);
}

static void test_no_budget_no_report(rt_watchdog_t *w)
{
    reset();
    rt_watchdog_set_budget(w, 0);
    sleep_ms(60); /* the thread adopts it at its next tick */
    rt_watchdog_enter(w);
    spin_cpu_ms(120);
    rt_watchdog_leave(w);
    CHECK(atomic_load(&overruns) == 0);
    rt_watchdog_set_budget(w, 50);
    sleep_ms(60);
}

static void test_memory_gauge(rt_watchdog_t *w)
{
    reset();
    atomic_store(&w->mem_limit, 1000);
    atomic_store(&w->mem, 999);
    sleep_ms(60);
    CHECK(atomic_load(&memory_reports) == 0);
    atomic_store(&w->mem, 1001);
    sleep_ms(60);
    CHECK(atomic_load(&memory_reports) > 0);
    atomic_store(&w->mem_limit, 0);
}

int main(void)
{
    rt_watchdog_t w;
    CHECK(rt_watchdog_start(&w, 50, on_overrun, on_memory, NULL) == 0);
    test_computing_resume_reported_once(&w);
    test_blocked_resume_not_reported(&w);
    test_short_resumes_not_reported(&w);
    test_no_budget_no_report(&w);
    test_memory_gauge(&w);
    rt_watchdog_stop(&w);
    if (atomic_load(&test_failures) != 0)
        fprintf(stderr, "test_watchdog: %d failures\n",
                atomic_load(&test_failures));
    return atomic_load(&test_failures) != 0;
}
