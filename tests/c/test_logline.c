/* test_logline.c - log lines as JSON and text: escapes, U+FFFD for bad
 * bytes, numbers, and secrets taken out (values, URL passwords, keys). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rt_logline.h"
#include "test_check.h"

/* 2024-05-01T12:00:00.123Z */
#define T 1714564800.1234

static int is(rt_logline_t *b, const char *want)
{
    if (b->len == strlen(want) && memcmp(b->p, want, b->len) == 0)
        return 1;
    fprintf(stderr, "got:  %.*s\nwant: %s\n", (int)b->len, b->p, want);
    return 0;
}

#define S(x) x, sizeof(x) - 1

static void json_lines(void)
{
    rt_logline_t b = {0};
    rt_logline_begin(&b, 1, T, "info", S("execution started"));
    rt_logline_str(&b, S("trace_id"), S("5d0c"));
    rt_logline_num(&b, S("attempt"), 2);
    rt_logline_num(&b, S("duration_ms"), 0.412);
    rt_logline_bool(&b, S("replayed"), 0);
    rt_logline_raw(&b, S("meta"), S("{\"a\":[1]}"));
    CHECK(rt_logline_end(&b) == 0);
    CHECK(is(&b, "{\"ts\":\"2024-05-01T12:00:00.123Z\",\"level\":\"info\","
                 "\"msg\":\"execution started\",\"trace_id\":\"5d0c\","
                 "\"attempt\":2,\"duration_ms\":0.412,\"replayed\":false,"
                 "\"meta\":{\"a\":[1]}}\n"));

    /* Escapes, a NUL and malformed bytes (U+FFFD), non-finite numbers. */
    rt_logline_begin(&b, 1, T, "warn", S("a \"quote\"\\ and\nnewline\t\x01"));
    rt_logline_str(&b, S("bad"), "x\0y\xff\xc3", 5);
    rt_logline_str(&b, S("ok"), S("caf\xc3\xa9"));
    rt_logline_num(&b, S("nan"), NAN);
    rt_logline_num(&b, S("big"), 1e300);
    rt_logline_num(&b, S("neg"), -42);
    CHECK(rt_logline_end(&b) == 0);
    CHECK(is(&b, "{\"ts\":\"2024-05-01T12:00:00.123Z\",\"level\":\"warn\","
                 "\"msg\":\"a \\\"quote\\\"\\\\ and\\nnewline\\t\\u0001\","
                 "\"bad\":\"x\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbd\","
                 "\"ok\":\"caf\xc3\xa9\",\"nan\":null,\"big\":1e+300,"
                 "\"neg\":-42}\n"));

    /* The builder is reused: a line starts from nothing, the time prefix
     * is redone when the second changes. */
    rt_logline_begin(&b, 1, T + 61.5, "error", S("m"));
    CHECK(rt_logline_end(&b) == 0);
    CHECK(is(&b, "{\"ts\":\"2024-05-01T12:01:01.623Z\",\"level\":\"error\","
                 "\"msg\":\"m\"}\n"));
    rt_logline_free(&b);
}

static void text_lines(void)
{
    rt_logline_t b = {0};
    rt_logline_begin(&b, 0, T, "info", S("serve: listening on \"x\""));
    rt_logline_str(&b, S("node"), S("host:1:ab"));
    rt_logline_str(&b, S("error"), S("no route = here"));
    rt_logline_str(&b, S("empty"), S(""));
    rt_logline_num(&b, S("status"), 202);
    CHECK(rt_logline_end(&b) == 0);
    CHECK(is(&b, "2024-05-01T12:00:00.123 info  serve: listening on \"x\" "
                 "node=host:1:ab error=\"no route = here\" empty=\"\" "
                 "status=202\n"));
    /* One line per record: a newline in the message is escaped. */
    rt_logline_begin(&b, 0, T, "debug", S("two\nlines"));
    CHECK(rt_logline_end(&b) == 0);
    CHECK(is(&b, "2024-05-01T12:00:00.123 debug two\\nlines\n"));
    rt_logline_free(&b);
}

static void redaction(void)
{
    rt_logline_t b = {0};
    const char *secrets[] = {"sk-live-0123456789", "abc", "hunter22"};
    size_t lens[] = {18, 3, 8};
    const char *key = "chk_0123abcd0123456789abcdef0123456789abcdef0123456789"
                      "abcdef012345";
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "calling with sk-live-0123456789 twice sk-live-0123456789"
                     " key %s id chk_0123abcd abc",
                     key);
    rt_logline_begin(&b, 1, T, "info", msg, (size_t)n);
    rt_logline_str(&b, S("db"),
                   S("postgresql://chorus:hunter22@db:5432/chorus"));
    rt_logline_str(&b, S("redis"), S("redis://:p%40ss@127.0.0.1:6379/0"));
    rt_logline_str(&b, S("plain"),
                   S("postgresql://postgres@h/db and "
                     "https://h/x?u=a:b@c"));
    CHECK(rt_logline_end(&b) == 0);
    CHECK(rt_logline_redact(&b, secrets, lens, 3) == 0);
    CHECK(is(&b, "{\"ts\":\"2024-05-01T12:00:00.123Z\",\"level\":\"info\","
                 "\"msg\":\"calling with [redacted] twice [redacted] key "
                 "chk_0123abcd[redacted] id chk_0123abcd abc\","
                 "\"db\":\"postgresql://chorus:[redacted]@db:5432/chorus\","
                 "\"redis\":\"redis://:[redacted]@127.0.0.1:6379/0\","
                 "\"plain\":\"postgresql://postgres@h/db and "
                 "https://h/x?u=a:b@c\"}\n"));
    rt_logline_free(&b);
}

/* Numbers are written as %.15g writes them (the fast path for integers
 * and durations rounded to the microsecond must agree with it). */
static void numbers(void)
{
    rt_logline_t b = {0};
    char want[64];
    long k;
    int bad = 0;
    for (k = -200000; k <= 200000; k += 7) {
        double vs[] = {(double)k / 1000.0, (double)k, (double)k * 1e6 + 0.5,
                       (double)k / 1000.0 + 1e-9, (double)k / 3.0};
        size_t i;
        for (i = 0; i < sizeof vs / sizeof vs[0]; i++) {
            size_t n;
            rt_logline_begin(&b, 1, T, "info", S("m"));
            rt_logline_num(&b, S("v"), vs[i]);
            CHECK(rt_logline_end(&b) == 0);
            snprintf(want, sizeof want, "%.15g", vs[i]);
            if (strcmp(want, "-0") == 0)
                strcpy(want, "0");
            /* ...,"v":<number>}\n */
            n = strlen(want);
            if (b.len < n + 2 || memcmp(b.p + b.len - n - 2, want, n) != 0 ||
                b.p[b.len - n - 3] != ':') {
                if (bad++ < 5)
                    fprintf(stderr, "%.17g: got %.*s want %s\n", vs[i],
                            (int)b.len, b.p, want);
            }
        }
    }
    CHECK(bad == 0);
    rt_logline_free(&b);
}

int main(void)
{
    numbers();
    json_lines();
    text_lines();
    redaction();
    if (test_failures)
        fprintf(stderr, "test_logline: %d checks failed\n", test_failures);
    return test_failures != 0;
}
