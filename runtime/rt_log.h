/* rt_log.h - log lines written to a file descriptor by a thread of their
 * own, so that a slow or full stderr never blocks the loop.
 *
 * The loop's thread appends whole lines to a bounded buffer: a copy under
 * a mutex, no system call. The writer thread takes everything waiting at
 * once and writes it with blocking write()s. When the buffer is full (the
 * descriptor is slow, or a pipe nobody reads is full) a line is dropped
 * and counted instead of waited for; a write that fails drops the lines
 * of its batch (counted too). Lines are never interleaved or cut: each
 * append is one line, written whole or dropped whole.
 *
 * The writer is not woken per line (a futex wake per line cost more than
 * the writes): rt_log_kick wakes it when lines wait, and the binding
 * calls it once per loop iteration (a prepare handle, before the loop
 * blocks); an append that fills the buffer past half wakes it at once.
 * The thread starts with the first append: a process that never logs has
 * none.
 *
 * Only one thread may append and kick (the loop's); the counters may be
 * read from any. */
#ifndef RT_LOG_H
#define RT_LOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rt_log {
    int fd;
    size_t cap;          /* the most bytes waiting to be written */
    pthread_mutex_t mu;  /* guards everything below up to the counters */
    pthread_cond_t wake; /* the writer waits here for lines or stop */
    pthread_cond_t idle; /* flushers wait here for the writer to be idle */
    char *buf;           /* lines waiting (malloc'd, grows up to cap) */
    size_t len, size;
    uint64_t buf_lines; /* lines in buf */
    char *out;          /* the batch the writer holds (swapped with buf) */
    size_t out_size;
    int writing; /* the writer holds a batch */
    int stop;    /* rt_log_close asked the writer to end */
    int thread;  /* 0 not started, 1 running, -1 could not start */
    pthread_t tid;
    atomic_int kick;              /* appended since the last kick */
    atomic_uint_fast64_t lines;   /* lines written */
    atomic_uint_fast64_t dropped; /* lines dropped (full buffer, failed
                                     write, longer than cap) */
    atomic_uint_fast64_t bytes;   /* bytes written */
} rt_log_t;

/* Prepares lg to write to fd, with at most cap bytes waiting. Returns 0
 * or an errno value (then lg needs no rt_log_close). */
int rt_log_init(rt_log_t *lg, int fd, size_t cap);

/* Queues one line (len bytes, its newline included). Returns 0 when
 * queued, or 1 when it was dropped (and counted): the buffer is full or
 * has no memory. Never blocks on the descriptor. If the writer thread
 * cannot be started, lines are written by the caller (blocking): losing
 * every line would be worse. */
int rt_log_append(rt_log_t *lg, const char *line, size_t len);

/* Wakes the writer if lines were appended since the last kick. Cheap when
 * none were (one atomic exchange). */
void rt_log_kick(rt_log_t *lg);

/* Waits up to timeout_ms for everything appended so far to be written
 * (or dropped by a failed write). Returns 0, or ETIMEDOUT: the
 * descriptor does not take it (the lines stay queued). Blocks the caller:
 * for the end of a process and for tests, not the request path. */
int rt_log_flush(rt_log_t *lg, unsigned timeout_ms);

/* Flushes (up to timeout_ms), then stops and joins the writer and frees
 * the buffers; lines appended afterwards are written by the caller
 * (blocking, as stderr would). Returns 0, or ETIMEDOUT when the writer is
 * stuck in a write: it is then left running (the process is ending) and
 * its buffers stay allocated for it. The mutex and conditions are kept:
 * lg stays usable. */
int rt_log_close(rt_log_t *lg, unsigned timeout_ms);

/* Changes the most bytes that may wait (takes effect for the next
 * append; lines already queued stay). */
void rt_log_set_cap(rt_log_t *lg, size_t cap);

/* Bytes waiting to be written (appended, not yet taken by the writer). */
size_t rt_log_queued(rt_log_t *lg);

#endif
