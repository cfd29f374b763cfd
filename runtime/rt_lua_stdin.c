/* rt_lua_stdin.c - native.read_line(): read a line of standard input
 * without blocking the loop, so steps in flight keep their timers while a
 * human answers an approval prompt. */
#include "rt_lua_stdin.h"

#include "rt_buf.h"
#include "rt_lua_wait.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One reader per process: standard input is a single stream. */
struct rt_lua_stdin {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tty_t tty;
        uv_pipe_t pipe;
    } u;
    rt_lua_wait_t wait; /* a task waiting for a line */
    rt_lua_sched_t *ls;
    char *buf; /* bytes read and not yet returned */
    size_t len, cap;
    int stream_ok; /* u is an initialised tty or pipe handle */
    int eof;
};

/* Longest line we accept: input is a human answer, not data. */
#define RT_STDIN_MAX_LINE 65536

static int stdin_append(rt_lua_stdin_t *in, const char *p, size_t n)
{
    return rt_buf_append(&in->buf, &in->len, &in->cap, p, n);
}

/* A line can be returned now: one is complete, the buffer is full, or
 * the input ended. */
static int stdin_ready(const rt_lua_stdin_t *in)
{
    return in->eof || in->len >= RT_STDIN_MAX_LINE ||
           (in->len > 0 && memchr(in->buf, '\n', in->len) != NULL);
}

/* Pushes the next line (without its newline) if one is complete, or the
 * rest at end of input. Returns the number of values it pushed, 0 if
 * more input is needed. */
static int stdin_take_line(rt_lua_stdin_t *in, lua_State *L)
{
    char *nl = in->len ? memchr(in->buf, '\n', in->len) : NULL;
    size_t n;
    if (nl == NULL) {
        if (in->len >= RT_STDIN_MAX_LINE) {
            in->len = 0;
            return rt_lua_fail(L, in->ls, RT_ETOO_LARGE);
        }
        if (!in->eof)
            return 0;
        if (in->len == 0)
            return rt_lua_fail(L, in->ls, RT_EEOF);
        n = in->len;
        lua_pushlstring(L, in->buf, n);
        in->len = 0;
        return 1;
    }
    n = (size_t)(nl - in->buf);
    lua_pushlstring(L, in->buf, (n > 0 && in->buf[n - 1] == '\r') ? n - 1 : n);
    memmove(in->buf, nl + 1, in->len - n - 1);
    in->len -= n + 1;
    return 1;
}

static void stdin_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(hint);
    buf->len = buf->base ? hint : 0;
}

static int stdin_build_line(lua_State *L, void *arg)
{
    return stdin_take_line(arg, L);
}

static void stdin_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    rt_lua_stdin_t *in = s->data;
    if (nread > 0 && stdin_append(in, buf->base, (size_t)nread) < 0)
        in->eof = 1; /* out of memory: end the input rather than lose it */
    else if (nread < 0)
        in->eof = 1;
    free(buf->base);
    if (!rt_lua_wait_active(&in->wait) || !stdin_ready(in))
        return;
    uv_read_stop(&in->u.stream);
    rt_lua_wait_done(&in->wait, stdin_build_line, in);
}

static void stdin_cancel(rt_lua_wait_t *w, int why)
{
    rt_lua_stdin_t *in = (rt_lua_stdin_t *)((char *)w -
                                            offsetof(rt_lua_stdin_t, wait));
    (void)why;
    uv_read_stop(&in->u.stream);
}

/* The wait lives in the reader, which lives as long as the process. */
static const rt_lua_wait_vt_t stdin_vt = {stdin_cancel, NULL, NULL};

/* Regular files and /dev/null cannot be polled; they never block either. */
static void stdin_read_blocking(rt_lua_stdin_t *in)
{
    char chunk[4096];
    while (!in->eof && (in->len == 0 || !memchr(in->buf, '\n', in->len))) {
        ssize_t n = read(0, chunk, sizeof(chunk));
        if (n <= 0 || stdin_append(in, chunk, (size_t)n) < 0)
            in->eof = 1;
    }
}

static int stdin_open_stream(rt_lua_stdin_t *in)
{
    uv_loop_t *loop = in->ls->sched.loop;
    uv_handle_type kind = uv_guess_handle(0);
    if (kind == UV_TTY) {
        if (uv_tty_init(loop, &in->u.tty, 0, 1) < 0)
            return -1;
    } else if (kind == UV_NAMED_PIPE || kind == UV_TCP) {
        if (uv_pipe_init(loop, &in->u.pipe, 0) < 0)
            return -1;
        if (uv_pipe_open(&in->u.pipe, 0) < 0) {
            uv_close(&in->u.handle, NULL);
            return -1;
        }
    } else {
        return -1;
    }
    in->u.handle.data = in;
    in->stream_ok = 1;
    return 0;
}

/* native.read_line() -> line | nil, "eof" | "too large" (a line over
 * RT_STDIN_MAX_LINE bytes) | "busy" | "cancelled" | "timeout" */
static int l_read_line(lua_State *L)
{
    rt_lua_stdin_t *in = lua_touserdata(L, lua_upvalueindex(1));
    rt_lua_task_t *cur = rt_lua_current(L, in->ls, "read_line");
    int n;
    if (rt_lua_wait_active(&in->wait)) {
        return rt_lua_fail(L, in->ls, RT_EBUSY);
    }
    n = stdin_take_line(in, L);
    if (n > 0)
        return n;
    if (!in->stream_ok && stdin_open_stream(in) < 0) {
        stdin_read_blocking(in);
        return stdin_take_line(in, L);
    }
    if (uv_read_start(&in->u.stream, stdin_alloc_cb, stdin_read_cb) < 0) {
        in->eof = 1;
        return stdin_take_line(in, L);
    }
    return rt_lua_wait_suspend(L, &in->wait, cur, -1);
}

rt_lua_stdin_t *rt_lua_stdin_open(lua_State *L, rt_lua_sched_t *ls, int table)
{
    rt_lua_stdin_t *in = calloc(1, sizeof(*in));
    if (in == NULL)
        return NULL;
    in->ls = ls;
    rt_lua_wait_init(&in->wait, &stdin_vt);
    lua_pushlightuserdata(L, in);
    lua_pushcclosure(L, l_read_line, 1);
    lua_setfield(L, table, "read_line");
    return in;
}

static void stdin_free_cb(uv_handle_t *h)
{
    rt_lua_stdin_t *in = h->data;
    free(in->buf);
    free(in);
}

void rt_lua_stdin_close(rt_lua_stdin_t *in)
{
    if (in->stream_ok) {
        uv_close(&in->u.handle, stdin_free_cb);
        return;
    }
    free(in->buf);
    free(in);
}
