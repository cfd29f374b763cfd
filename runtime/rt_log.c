/* rt_log.c - log lines written by a thread of their own (see rt_log.h). */
#include "rt_log.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The buffer starts this big and doubles up to cap: an idle process keeps
 * little, a busy one grows it once. */
#define RT_LOG_MIN_BUF 65536

static uint64_t rt__count_lines(const char *p, size_t n)
{
    uint64_t k = 0;
    const char *end = p + n;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        k++;
        p++;
    }
    return k;
}

/* Writes all n bytes of p to fd. Returns the bytes written: n, or fewer
 * when a write failed (a closed pipe, a full disk...). A non-blocking
 * descriptor that is full is waited for, as a blocking one would be. */
static size_t rt__write_all(int fd, const char *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w > 0) {
            done += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            if (poll(&pf, 1, -1) < 0 && errno != EINTR)
                break;
        } else {
            break;
        }
    }
    return done;
}

/* Writes a batch and counts it. Called without the mutex. */
static void rt__write_batch(rt_log_t *lg, const char *p, size_t n,
                            uint64_t lines)
{
    size_t done = rt__write_all(lg->fd, p, n);
    uint64_t lost = done < n ? rt__count_lines(p + done, n - done) : 0;
    atomic_fetch_add(&lg->bytes, done);
    atomic_fetch_add(&lg->lines, lines - lost);
    if (lost > 0)
        atomic_fetch_add(&lg->dropped, lost);
}

static void *rt__writer(void *arg)
{
    rt_log_t *lg = arg;
    pthread_mutex_lock(&lg->mu);
    for (;;) {
        char *p;
        size_t n, size;
        uint64_t lines;
        while (lg->len == 0 && !lg->stop) {
            pthread_cond_broadcast(&lg->idle);
            pthread_cond_wait(&lg->wake, &lg->mu);
        }
        if (lg->len == 0)
            break; /* stopping, and nothing is left */
        /* Take the whole buffer; the appender gets the batch's old one. */
        p = lg->buf, n = lg->len, size = lg->size, lines = lg->buf_lines;
        lg->buf = lg->out, lg->size = lg->out_size;
        lg->out = p, lg->out_size = size;
        lg->len = 0, lg->buf_lines = 0;
        lg->writing = 1;
        pthread_mutex_unlock(&lg->mu);
        rt__write_batch(lg, p, n, lines);
        pthread_mutex_lock(&lg->mu);
        lg->writing = 0;
    }
    pthread_cond_broadcast(&lg->idle);
    pthread_mutex_unlock(&lg->mu);
    return NULL;
}

int rt_log_init(rt_log_t *lg, int fd, size_t cap)
{
    pthread_condattr_t ca;
    int rc;
    memset(lg, 0, sizeof *lg);
    lg->fd = fd;
    lg->cap = cap;
    atomic_init(&lg->kick, 0);
    atomic_init(&lg->lines, 0);
    atomic_init(&lg->dropped, 0);
    atomic_init(&lg->bytes, 0);
    if ((rc = pthread_mutex_init(&lg->mu, NULL)) != 0)
        return rc;
    if ((rc = pthread_condattr_init(&ca)) != 0)
        goto fail_attr;
    /* Flush deadlines are on the monotonic clock: a clock step must not
     * stretch or cut the wait at exit. */
    if ((rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) != 0)
        goto fail_wake;
    if ((rc = pthread_cond_init(&lg->wake, &ca)) != 0)
        goto fail_wake;
    if ((rc = pthread_cond_init(&lg->idle, &ca)) != 0)
        goto fail_idle;
    pthread_condattr_destroy(&ca);
    return 0;
fail_idle:
    pthread_cond_destroy(&lg->wake);
fail_wake:
    pthread_condattr_destroy(&ca);
fail_attr:
    pthread_mutex_destroy(&lg->mu);
    return rc;
}

/* Grows buf to hold need bytes (need <= cap). Returns 0 or -1 (no
 * memory). Called with the mutex. */
static int rt__reserve(rt_log_t *lg, size_t need)
{
    size_t size = lg->size ? lg->size : RT_LOG_MIN_BUF;
    char *p;
    if (need <= lg->size)
        return 0;
    while (size < need)
        size *= 2;
    if (size > lg->cap)
        size = lg->cap;
    p = realloc(lg->buf, size);
    if (p == NULL)
        return -1;
    lg->buf = p;
    lg->size = size;
    return 0;
}

int rt_log_append(rt_log_t *lg, const char *line, size_t len)
{
    int dropped = 0, wake = 0;
    pthread_mutex_lock(&lg->mu);
    if (lg->thread == 0) {
        /* The thread exists from the first line on. */
        lg->thread = pthread_create(&lg->tid, NULL, rt__writer, lg) == 0 ? 1
                                                                         : -1;
    }
    if (lg->thread < 0) {
        pthread_mutex_unlock(&lg->mu);
        rt__write_batch(lg, line, len, 1);
        return 0;
    }
    if (lg->len + len > lg->cap || rt__reserve(lg, lg->len + len) != 0) {
        dropped = 1;
    } else {
        memcpy(lg->buf + lg->len, line, len);
        lg->len += len;
        lg->buf_lines++;
        /* Past half the buffer a burst does not wait for the next kick. */
        wake = lg->len > lg->cap / 2;
    }
    if (wake)
        pthread_cond_signal(&lg->wake);
    pthread_mutex_unlock(&lg->mu);
    if (dropped)
        atomic_fetch_add(&lg->dropped, 1);
    else if (!wake)
        atomic_store_explicit(&lg->kick, 1, memory_order_relaxed);
    return dropped;
}

void rt_log_kick(rt_log_t *lg)
{
    if (!atomic_exchange_explicit(&lg->kick, 0, memory_order_relaxed))
        return;
    pthread_mutex_lock(&lg->mu);
    if (lg->len > 0)
        pthread_cond_signal(&lg->wake);
    pthread_mutex_unlock(&lg->mu);
}

static void rt__deadline(struct timespec *t, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    t->tv_sec += ms / 1000;
    t->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

/* Waits until nothing is queued or being written. Called with the
 * mutex; returns 0 or ETIMEDOUT. */
static int rt__wait_idle(rt_log_t *lg, const struct timespec *until)
{
    while (lg->thread > 0 && (lg->len > 0 || lg->writing)) {
        if (lg->len > 0)
            pthread_cond_signal(&lg->wake);
        if (pthread_cond_timedwait(&lg->idle, &lg->mu, until) == ETIMEDOUT)
            return lg->len > 0 || lg->writing ? ETIMEDOUT : 0;
    }
    return 0;
}

int rt_log_flush(rt_log_t *lg, unsigned timeout_ms)
{
    struct timespec until;
    int rc;
    rt__deadline(&until, timeout_ms);
    pthread_mutex_lock(&lg->mu);
    rc = rt__wait_idle(lg, &until);
    pthread_mutex_unlock(&lg->mu);
    return rc;
}

int rt_log_close(rt_log_t *lg, unsigned timeout_ms)
{
    struct timespec until;
    int rc, joinable;
    rt__deadline(&until, timeout_ms);
    pthread_mutex_lock(&lg->mu);
    rc = rt__wait_idle(lg, &until);
    joinable = lg->thread > 0 && rc == 0;
    if (joinable) {
        /* Idle: it waits on wake and ends at once. */
        lg->stop = 1;
        pthread_cond_signal(&lg->wake);
    }
    pthread_mutex_unlock(&lg->mu);
    if (rc != 0)
        return rc; /* stuck in write(): leave it and its buffers be */
    if (joinable)
        pthread_join(lg->tid, NULL);
    pthread_mutex_lock(&lg->mu);
    free(lg->buf);
    free(lg->out);
    lg->buf = lg->out = NULL;
    lg->len = lg->size = lg->out_size = 0;
    /* Lines appended from now on are written by the caller. */
    lg->thread = -1;
    pthread_mutex_unlock(&lg->mu);
    return 0;
}

void rt_log_set_cap(rt_log_t *lg, size_t cap)
{
    pthread_mutex_lock(&lg->mu);
    lg->cap = cap;
    pthread_mutex_unlock(&lg->mu);
}

size_t rt_log_queued(rt_log_t *lg)
{
    size_t n;
    pthread_mutex_lock(&lg->mu);
    n = lg->len;
    pthread_mutex_unlock(&lg->mu);
    return n;
}
