/* test_timer.c - unit tests of the timer heap (rt_timer.c): firing order
 * by due time then start order, stop and move, timers started from a
 * callback, and many timers through one handle. */
#include <stdio.h>
#include <stdlib.h>

#include "rt_timer.h"

#include "test_check.h"

static uv_loop_t loop;
static rt_timers_t timers;

typedef struct {
    rt_timer_t tm;
    int id;
    uint64_t fired_at;
} probe_t;

static int order[4096], nfired;
static probe_t *restart; /* fire() restarts this one once */

static void fire(rt_timer_t *tm)
{
    probe_t *p = (probe_t *)tm;
    p->fired_at = uv_now(&loop);
    if (nfired < 4096)
        order[nfired] = p->id;
    nfired++;
    CHECK(!rt_timer_armed(tm));
    if (restart != NULL) {
        probe_t *r = restart;
        restart = NULL;
        CHECK(rt_timer_start(&timers, &r->tm, uv_now(&loop) + 5) == 0);
    }
}

static void setup(void)
{
    CHECK(uv_loop_init(&loop) == 0);
    CHECK(rt_timers_init(&timers, &loop) == 0);
    nfired = 0;
    restart = NULL;
}

static void teardown(void)
{
    rt_timers_close(&timers, NULL);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(uv_loop_close(&loop) == 0);
}

static void probe_init(probe_t *p, int id)
{
    rt_timer_init(&p->tm, fire);
    p->id = id;
    p->fired_at = 0;
}

static void test_order(void)
{
    probe_t p[6];
    uint64_t now, start;
    int i;
    setup();
    now = start = uv_now(&loop);
    for (i = 0; i < 6; i++)
        probe_init(&p[i], i);
    /* dues 30, 10, 20, 10, 0 (already due), 20: ties fire in start order */
    CHECK(rt_timer_start(&timers, &p[0].tm, now + 30) == 0);
    CHECK(rt_timer_start(&timers, &p[1].tm, now + 10) == 0);
    CHECK(rt_timer_start(&timers, &p[2].tm, now + 20) == 0);
    CHECK(rt_timer_start(&timers, &p[3].tm, now + 10) == 0);
    CHECK(rt_timer_start(&timers, &p[4].tm, now) == 0);
    CHECK(rt_timer_start(&timers, &p[5].tm, now + 20) == 0);
    /* Nothing armed: the loop ends. */
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(nfired == 6);
    {
        int want[6] = {4, 1, 3, 2, 5, 0};
        for (i = 0; i < 6; i++)
            CHECK(order[i] == want[i]);
    }
    CHECK(p[0].fired_at >= start + 30 && p[0].fired_at < start + 45);
    CHECK(p[1].fired_at >= start + 10);
    teardown();
    printf("ok - timers fire by due time, ties in start order\n");
}

static void test_stop_and_move(void)
{
    probe_t a, b, c;
    uint64_t now;
    setup();
    now = uv_now(&loop);
    probe_init(&a, 1);
    probe_init(&b, 2);
    probe_init(&c, 3);
    CHECK(rt_timer_start(&timers, &a.tm, now + 10) == 0);
    CHECK(rt_timer_start(&timers, &b.tm, now + 20) == 0);
    CHECK(rt_timer_start(&timers, &c.tm, now + 30) == 0);
    rt_timer_stop(&timers, &a.tm);
    CHECK(!rt_timer_armed(&a.tm));
    rt_timer_stop(&timers, &a.tm); /* stopping twice is nothing */
    CHECK(rt_timer_start(&timers, &c.tm, now + 5) == 0); /* moved earlier */
    restart = &a; /* c's callback starts a again, 5 ms later */
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(nfired == 3);
    CHECK(order[0] == 3 && order[1] == 1 && order[2] == 2);
    rt_timer_stop(&timers, &b.tm); /* fired: not armed, nothing to do */
    teardown();
    printf("ok - stop, move and a start from a callback\n");
}

static void test_many(void)
{
    enum { N = 3000 };
    probe_t *p = malloc(N * sizeof(*p));
    uint64_t now;
    int i, sorted = 1;
    CHECK(p != NULL);
    if (p == NULL)
        return;
    setup();
    now = uv_now(&loop);
    for (i = 0; i < N; i++) {
        probe_init(&p[i], i);
        /* pseudo-random dues within 20 ms */
        CHECK(rt_timer_start(&timers, &p[i].tm,
                             now + (uint64_t)((i * 7919) % 20)) == 0);
    }
    for (i = 0; i < N; i += 3) /* a third is stopped again */
        rt_timer_stop(&timers, &p[i].tm);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(nfired == N - (N + 2) / 3);
    for (i = 1; i < nfired && i < 4096; i++) {
        probe_t *prev = &p[order[i - 1]], *cur = &p[order[i]];
        uint64_t dp = now + (uint64_t)((prev->id * 7919) % 20);
        uint64_t dc = now + (uint64_t)((cur->id * 7919) % 20);
        if (dp > dc || (dp == dc && prev->id > cur->id))
            sorted = 0;
    }
    CHECK(sorted);
    for (i = 0; i < N; i += 3)
        CHECK(p[i].fired_at == 0);
    teardown();
    free(p);
    printf("ok - 3,000 timers on one handle, a third stopped\n");
}

int main(void)
{
    test_order();
    test_stop_and_move();
    test_many();
    if (test_failures) {
        fprintf(stderr, "test_timer: %d checks failed\n", (int)test_failures);
        return 1;
    }
    printf("all timer tests passed\n");
    return 0;
}
