/* test_log.c - the log writer thread: lines arrive whole and in order, a
 * pipe nobody reads never blocks the appender (lines are dropped and
 * counted), a closed pipe drops its lines, close joins the thread. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rt_log.h"
#include "test_check.h"

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Reads everything the pipe holds now (its write end must stay open). */
static size_t drain(int fd, char *out, size_t cap)
{
    size_t n = 0;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    for (;;) {
        char tmp[65536];
        ssize_t r = read(fd, tmp, sizeof tmp);
        if (r <= 0)
            break;
        if (out != NULL && n + (size_t)r <= cap)
            memcpy(out + n, tmp, (size_t)r);
        n += (size_t)r;
    }
    fcntl(fd, F_SETFL, fl);
    return n;
}

static void in_order(void)
{
    rt_log_t lg;
    int p[2], i;
    char line[64], *got = malloc(1 << 20), *want = malloc(1 << 20);
    size_t n, wn = 0;
    CHECK(got != NULL && want != NULL);
    CHECK(pipe(p) == 0);
    CHECK(rt_log_init(&lg, p[1], 1 << 20) == 0);
    for (i = 0; i < 1000; i++) {
        int len = snprintf(line, sizeof line, "line %d of the log\n", i);
        CHECK(rt_log_append(&lg, line, (size_t)len) == 0);
        memcpy(want + wn, line, (size_t)len);
        wn += (size_t)len;
        if (i % 100 == 0)
            rt_log_kick(&lg);
    }
    /* flush wakes the writer itself: no kick needed for the rest. */
    CHECK(rt_log_flush(&lg, 5000) == 0);
    CHECK(rt_log_queued(&lg) == 0);
    n = drain(p[0], got, 1 << 20);
    CHECK(n == wn);
    CHECK(memcmp(got, want, wn) == 0);
    CHECK(atomic_load(&lg.lines) == 1000);
    CHECK(atomic_load(&lg.dropped) == 0);
    CHECK(atomic_load(&lg.bytes) == wn);

    /* A line longer than the buffer is dropped, not cut. */
    {
        rt_log_t small;
        CHECK(rt_log_init(&small, p[1], 16) == 0);
        CHECK(rt_log_append(&small, "a line over sixteen bytes\n", 26) == 1);
        CHECK(rt_log_append(&small, "fits\n", 5) == 0);
        CHECK(rt_log_close(&small, 5000) == 0);
        CHECK(atomic_load(&small.dropped) == 1);
        CHECK(atomic_load(&small.lines) == 1);
        n = drain(p[0], got, 1 << 20);
        CHECK(n == 5 && memcmp(got, "fits\n", 5) == 0);
    }

    /* After close, lines are written by the caller. */
    CHECK(rt_log_close(&lg, 5000) == 0);
    CHECK(rt_log_append(&lg, "after\n", 6) == 0);
    n = drain(p[0], got, 1 << 20);
    CHECK(n == 6 && memcmp(got, "after\n", 6) == 0);
    close(p[0]);
    close(p[1]);
    free(got);
    free(want);
}

/* Nobody reads the pipe: appending stays fast, lines past the pipe's and
 * the buffer's room are dropped and counted, flush gives up at its
 * deadline; once the pipe is read, the rest arrives. */
static void unread_pipe(void)
{
    rt_log_t lg;
    int p[2], i, dropped = 0;
    char line[128];
    double t0, took, slowest = 0;
    CHECK(pipe(p) == 0);
    CHECK(rt_log_init(&lg, p[1], 8192) == 0);
    memset(line, 'x', sizeof line);
    line[sizeof line - 1] = '\n';
    /* Pauses let the writer run (as loop iterations would), so that it
     * fills the pipe and blocks in write(); no append may wait for it. */
    for (i = 0; i < 20000; i++) {
        t0 = now_ms();
        dropped += rt_log_append(&lg, line, sizeof line);
        rt_log_kick(&lg);
        took = now_ms() - t0;
        if (took > slowest)
            slowest = took;
        if (i % 50 == 0)
            usleep(200);
    }
    CHECK(slowest < 50);
    CHECK(dropped > 0);
    CHECK(atomic_load(&lg.lines) > 0);
    CHECK(atomic_load(&lg.dropped) == (uint64_t)dropped);
    t0 = now_ms();
    CHECK(rt_log_flush(&lg, 100) == ETIMEDOUT);
    took = now_ms() - t0;
    CHECK(took >= 90 && took < 2000);
    /* A reader appears: everything queued gets out. */
    {
        size_t total = 0;
        t0 = now_ms();
        while (now_ms() - t0 < 5000) {
            total += drain(p[0], NULL, 0);
            if (rt_log_flush(&lg, 10) == 0)
                break;
        }
        total += drain(p[0], NULL, 0);
        CHECK(rt_log_queued(&lg) == 0);
        CHECK(atomic_load(&lg.lines) + atomic_load(&lg.dropped) == 20000);
        CHECK(total == atomic_load(&lg.lines) * sizeof line);
    }
    CHECK(rt_log_close(&lg, 5000) == 0);
    close(p[0]);
    close(p[1]);
}

/* The pipe's reader left: the batch's lines are counted as dropped and
 * nothing blocks (SIGPIPE is ignored, as the binary does). */
static void closed_pipe(void)
{
    rt_log_t lg;
    int p[2], i;
    CHECK(pipe(p) == 0);
    close(p[0]);
    CHECK(rt_log_init(&lg, p[1], 1 << 16) == 0);
    for (i = 0; i < 10; i++)
        CHECK(rt_log_append(&lg, "gone\n", 5) == 0);
    CHECK(rt_log_flush(&lg, 5000) == 0);
    CHECK(atomic_load(&lg.dropped) == 10);
    CHECK(atomic_load(&lg.lines) == 0);
    CHECK(rt_log_close(&lg, 5000) == 0);
    close(p[1]);
}

/* A writer stuck in write() at close: close gives up at its deadline and
 * leaves the thread (a process at its end); reading the pipe later lets
 * it finish. */
static void stuck_close(void)
{
    rt_log_t lg;
    int p[2], i;
    char line[1024];
    double t0;
    CHECK(pipe(p) == 0);
    CHECK(rt_log_init(&lg, p[1], 1 << 20) == 0);
    memset(line, 'y', sizeof line);
    line[sizeof line - 1] = '\n';
    for (i = 0; i < 200; i++) /* 200 KiB: more than the pipe holds */
        rt_log_append(&lg, line, sizeof line);
    t0 = now_ms();
    CHECK(rt_log_close(&lg, 200) == ETIMEDOUT);
    CHECK(now_ms() - t0 < 2000);
    /* Unstick it, then close for real. */
    t0 = now_ms();
    while (now_ms() - t0 < 5000) {
        drain(p[0], NULL, 0);
        if (rt_log_flush(&lg, 10) == 0)
            break;
    }
    CHECK(rt_log_close(&lg, 5000) == 0);
    CHECK(atomic_load(&lg.lines) == 200);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    in_order();
    unread_pipe();
    closed_pipe();
    stuck_close();
    if (test_failures)
        fprintf(stderr, "test_log: %d checks failed\n", test_failures);
    return test_failures != 0;
}
