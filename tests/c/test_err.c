/* test_err.c - the list of failures (rt_err.h): every code is negative
 * and has a word of its own, the words the scripting API documents keep
 * their spelling, and a detail that adds nothing is dropped. */
#include <stdio.h>
#include <string.h>

#include "rt_err.h"
#include "test_check.h"

int main(void)
{
    int i, j;

    CHECK(RT_ERR_COUNT > 0);
    for (i = 0; i < RT_ERR_COUNT; i++) {
        int code = -1 - i;
        const char *w = rt_err_word(code);
        CHECK(rt_err_index(code) == i);
        CHECK(w != NULL && w[0] != '\0' && strcmp(w, "unknown error") != 0);
        for (j = 0; j < i; j++)
            CHECK(strcmp(w, rt_err_word(-1 - j)) != 0);
    }
    /* Outside the list. */
    CHECK(rt_err_index(0) == -1 && rt_err_index(1) == -1);
    CHECK(rt_err_index(-1 - RT_ERR_COUNT) == -1);
    CHECK(strcmp(rt_err_word(0), "unknown error") == 0);
    CHECK(strcmp(rt_err_word(-1 - RT_ERR_COUNT), "unknown error") == 0);

    /* Words that scripts and specs compare (docs/scripting.md). */
    CHECK(strcmp(rt_err_word(RT_ETIMEOUT), "timeout") == 0);
    CHECK(strcmp(rt_err_word(RT_ECANCELLED), "cancelled") == 0);
    CHECK(strcmp(rt_err_word(RT_ECLOSED), "closed") == 0);
    CHECK(strcmp(rt_err_word(RT_EBUSY), "busy") == 0);
    CHECK(strcmp(rt_err_word(RT_ENOMEM), "out of memory") == 0);
    CHECK(strcmp(rt_err_word(RT_EREFUSED), "connection refused") == 0);
    CHECK(strcmp(rt_err_word(RT_ECONNECT), "connect failed") == 0);
    CHECK(strcmp(rt_err_word(RT_EDISCONNECTED), "disconnected") == 0);
    CHECK(strcmp(rt_err_word(RT_EINVAL), "invalid request") == 0);

    /* What a detail adds to its word. */
    CHECK(rt_err_detail(RT_EREFUSED, NULL) == NULL);
    CHECK(rt_err_detail(RT_EREFUSED, "") == NULL);
    CHECK(rt_err_detail(RT_EREFUSED, "Connection refused") == NULL);
    CHECK(rt_err_detail(RT_ETIMEOUT, "TIMEOUT") == NULL);
    CHECK(strcmp(rt_err_detail(RT_ECLOSED, "Server closed the connection"),
                 "Server closed the connection") == 0);

    if (test_failures != 0) {
        fprintf(stderr, "test_err: %d failure(s)\n", (int)test_failures);
        return 1;
    }
    printf("test_err: ok\n");
    return 0;
}
