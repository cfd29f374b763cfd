/* test_buf.c - unit tests of rt_buf_reserve and rt_buf_append: room made keeps the bytes
 * already there, growth by doubling, and a size that would overflow is
 * refused with the buffer unchanged. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_buf.h"

#include "test_check.h"

int main(void)
{
    char *buf = NULL;
    size_t len = 0, cap = 0, i;

    /* Appends of every size up to 3,000 bytes keep what came before. */
    for (i = 1; i <= 3000; i++) {
        CHECK(rt_buf_reserve(&buf, len, &cap, i) == 0);
        CHECK(cap - len >= i);
        memset(buf + len, (int)(i & 0xff), i);
        len += i;
    }
    CHECK(buf[0] == 1 && buf[len - 1] == (char)(3000 & 0xff));
    CHECK(cap >= len && cap < 2 * len + 1024);

    /* No growth when the room is there. */
    {
        size_t before = cap;
        char *p = buf;
        CHECK(rt_buf_reserve(&buf, len, &cap, cap - len) == 0);
        CHECK(cap == before && buf == p);
    }

    /* A size past what a size_t can hold: refused, nothing changed. */
    {
        size_t before = cap;
        char *p = buf;
        CHECK(rt_buf_reserve(&buf, len, &cap, SIZE_MAX - len) == -1);
        CHECK(rt_buf_reserve(&buf, len, &cap, SIZE_MAX / 2) == -1);
        CHECK(cap == before && buf == p && buf[0] == 1);
    }
    /* Appends: the bytes in order, the length counted, an empty one a
     * no-op, one past what a size_t can hold refused with nothing
     * changed. */
    {
        char *a = NULL;
        size_t alen = 0, acap = 0, k;
        for (k = 0; k < 1000; k++)
            CHECK(rt_buf_append(&a, &alen, &acap, "abc", 3) == 0);
        CHECK(alen == 3000 && memcmp(a + 2997, "abc", 3) == 0);
        CHECK(rt_buf_append(&a, &alen, &acap, NULL, 0) == 0 && alen == 3000);
        /* volatile: a constant would let the compiler see the refused
         * copy's bound and reject it at build time */
        volatile size_t huge = SIZE_MAX - 10;
        CHECK(rt_buf_append(&a, &alen, &acap, "x", huge) == -1);
        CHECK(alen == 3000 && a[0] == 'a');
        free(a);
    }

    free(buf);

    if (test_failures) {
        fprintf(stderr, "test_buf: %d failure(s)\n", test_failures);
        return 1;
    }
    printf("test_buf: ok\n");
    return 0;
}
