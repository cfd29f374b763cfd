/* test_sse_lines.c - unit tests of the event-stream line layer
 * (rt_sse_lines.c): the same lines whatever the cut of the bytes (a BOM,
 * a CRLF or a line split across pieces), comments dropped, one space
 * after the colon dropped, a line without a colon, the end inside a line,
 * a callback that stops the feed, and a long run of lines read once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_sse_lines.h"

#include "test_check.h"

/* Lines as text: "field=value|" per line, "#|" for a blank one. */
typedef struct {
    char out[4096];
    size_t len;
    int lines, stop_at;
} acc_t;

static int on_line(void *arg, const char *field, size_t flen, const char *value,
                   size_t vlen)
{
    acc_t *a = arg;
    int n;
    a->lines++;
    if (field == NULL)
        n = snprintf(a->out + a->len, sizeof(a->out) - a->len, "#|");
    else
        n = snprintf(a->out + a->len, sizeof(a->out) - a->len, "%.*s=%.*s|",
                     (int)flen, field, (int)vlen, value);
    if (n > 0 && (size_t)n < sizeof(a->out) - a->len)
        a->len += (size_t)n;
    return a->stop_at != 0 && a->lines == a->stop_at ? 7 : 0;
}

/* Feeds text in pieces of step bytes; returns the finish flag. */
static int feed(const char *text, size_t n, size_t step, acc_t *a)
{
    rt_sse_lines_t p;
    size_t i;
    int cut;
    rt_sse_lines_init(&p);
    memset(a, 0, sizeof(*a));
    for (i = 0; i < n; i += step)
        CHECK(rt_sse_lines_feed(&p, text + i, n - i < step ? n - i : step,
                                on_line, a) == 0);
    cut = rt_sse_lines_finish(&p);
    rt_sse_lines_free(&p);
    return cut;
}

static void test_every_cut(void)
{
    static const char text[] = "\xEF\xBB\xBF"
                               "data: one\r\n"
                               "data:  two\n\n"
                               ": a comment\n"
                               "id: 7\r\r"
                               "data:{\"a\":1}\n"
                               "event\n"
                               "retry:50\r\n\r\n"
                               "data: cut";
    static const char want[] = "data=one|data= two|#|id=7|#|data={\"a\":1}|"
                               "event=|retry=50|#|";
    size_t n = sizeof(text) - 1, step;
    acc_t a;
    for (step = 1; step <= n; step++) {
        int cut = feed(text, n, step, &a);
        CHECK(cut == 1);
        if (strcmp(a.out, want) != 0) {
            fprintf(stderr, "cut every %zu: %s\n", step, a.out);
            CHECK(0);
            break;
        }
    }
}

static void test_bom_only_at_start(void)
{
    static const char text[] = "data: a\n\xEF\xBB\xBF"
                               "data: b\n\n";
    acc_t a;
    CHECK(feed(text, sizeof(text) - 1, 1, &a) == 0);
    CHECK(strcmp(a.out, "data=a|\xEF\xBB\xBF"
                        "data=b|#|") == 0);
    /* Two bytes that start a BOM and are not one start the first line. */
    CHECK(feed("\xEF\xBBx: y\n", 7, 1, &a) == 0);
    CHECK(strcmp(a.out, "\xEF\xBBx=y|") == 0);
    /* A stream of one BOM byte ended inside a "line". */
    CHECK(feed("\xEF", 1, 1, &a) == 1);
    CHECK(a.lines == 0);
}

static void test_stop(void)
{
    rt_sse_lines_t p;
    acc_t a;
    memset(&a, 0, sizeof(a));
    a.stop_at = 2;
    rt_sse_lines_init(&p);
    CHECK(rt_sse_lines_feed(&p, "a: 1\nb: 2\nc: 3\n", 15, on_line, &a) == 7);
    CHECK(a.lines == 2);
    rt_sse_lines_free(&p);
}

/* 200,000 short lines in one piece, then a line across two pieces: each
 * byte is looked at a bounded number of times (a CR search running to the
 * end of the piece for every line would take minutes here). */
static void test_long_run(void)
{
    enum { LINES = 200000 };
    size_t n = (size_t)LINES * 2, i;
    char *text = malloc(n);
    rt_sse_lines_t p;
    acc_t a;
    CHECK(text != NULL);
    if (text == NULL)
        return;
    for (i = 0; i < n; i += 2) {
        text[i] = 'x';
        text[i + 1] = '\n';
    }
    memset(&a, 0, sizeof(a));
    rt_sse_lines_init(&p);
    CHECK(rt_sse_lines_feed(&p, text, n, on_line, &a) == 0);
    CHECK(a.lines == LINES);
    a.len = 0;
    CHECK(rt_sse_lines_feed(&p, "data: par", 9, on_line, &a) == 0);
    CHECK(rt_sse_lines_feed(&p, "ted\n", 4, on_line, &a) == 0);
    CHECK(a.lines == LINES + 1);
    CHECK(strncmp(a.out, "data=parted|", 12) == 0);
    CHECK(rt_sse_lines_finish(&p) == 0);
    rt_sse_lines_free(&p);
    free(text);
}

int main(void)
{
    test_every_cut();
    test_bom_only_at_start();
    test_stop();
    test_long_run();
    if (test_failures) {
        fprintf(stderr, "test_sse_lines: %d failure(s)\n", test_failures);
        return 1;
    }
    printf("test_sse_lines: ok\n");
    return 0;
}
