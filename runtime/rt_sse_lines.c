/* rt_sse_lines.c - see rt_sse_lines.h. */
#include "rt_sse_lines.h"

#include "rt_buf.h"

#include <stdlib.h>
#include <string.h>

static const char rt__bom[3] = {'\xEF', '\xBB', '\xBF'};

void rt_sse_lines_init(rt_sse_lines_t *p)
{
    memset(p, 0, sizeof(*p));
}

void rt_sse_lines_free(rt_sse_lines_t *p)
{
    free(p->buf);
    memset(p, 0, sizeof(*p));
}

static int rt__keep(rt_sse_lines_t *p, const char *s, size_t n)
{
    return rt_buf_append(&p->buf, &p->len, &p->cap, s, n);
}

/* One line, without its end. */
static int rt__line(const char *l, size_t len, rt_sse_line_cb cb, void *arg)
{
    const char *colon, *v;
    size_t flen, vlen;
    if (len == 0)
        return cb(arg, NULL, 0, NULL, 0);
    if (l[0] == ':')
        return 0; /* a comment */
    colon = memchr(l, ':', len);
    if (colon == NULL)
        return cb(arg, l, len, "", 0);
    flen = (size_t)(colon - l);
    v = colon + 1;
    vlen = len - flen - 1;
    if (vlen > 0 && *v == ' ') {
        v++;
        vlen--;
    }
    return cb(arg, l, flen, v, vlen);
}

int rt_sse_lines_feed(rt_sse_lines_t *p, const char *data, size_t n,
                      rt_sse_line_cb cb, void *arg)
{
    size_t i = 0;
    if (n == 0)
        return 0;
    if (!p->started) {
        /* The BOM may itself be cut across pieces: up to three bytes. */
        size_t need = 3 - p->len, take = n < need ? n : need;
        if (memcmp(rt__bom + p->len, data, take) == 0) {
            if (take < need)
                return rt__keep(p, data, take);
            p->len = 0; /* a whole BOM: dropped */
            i = take;
        }
        /* else the bytes kept were no BOM: they start the first line */
        p->started = 1;
    }
    if (p->skip_lf && i < n) {
        p->skip_lf = 0;
        if (data[i] == '\n')
            i++;
    }
    while (i < n) {
        const char *s = data + i, *nl, *cr;
        size_t rest = n - i, e;
        int rc;
        /* The first line end: an LF, or a CR before it (searched only
         * that far, so a stream of LF lines is scanned once). */
        nl = memchr(s, '\n', rest);
        e = nl != NULL ? (size_t)(nl - s) : rest;
        cr = memchr(s, '\r', e);
        if (cr != NULL)
            e = (size_t)(cr - s);
        if (e == rest)
            return rt__keep(p, s, rest); /* an unfinished line */
        if (p->len > 0) {
            size_t whole;
            if (rt__keep(p, s, e) != 0)
                return -1;
            whole = p->len;
            p->len = 0; /* the callback reads the bytes before any keep */
            rc = rt__line(p->buf, whole, cb, arg);
        } else {
            rc = rt__line(s, e, cb, arg);
        }
        if (rc != 0)
            return rc;
        i += e;
        if (data[i] == '\r') {
            if (i + 1 == n) {
                p->skip_lf = 1;
                i++;
            } else {
                i += data[i + 1] == '\n' ? 2 : 1;
            }
        } else {
            i++;
        }
    }
    return 0;
}

int rt_sse_lines_finish(rt_sse_lines_t *p)
{
    int cut = p->len > 0;
    p->len = 0;
    p->skip_lf = 0;
    return cut;
}
