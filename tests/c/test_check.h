/* test_check.h - the check macro shared by the C unit tests: a failed
 * check prints file:line and the condition and is counted; main() returns
 * non-zero when test_failures is not 0. Atomic, so that client threads of
 * a test may check too. */
#ifndef TEST_CHECK_H
#define TEST_CHECK_H

#include <stdatomic.h>
#include <stdio.h>

static atomic_int test_failures;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            atomic_fetch_add(&test_failures, 1);                               \
        }                                                                      \
    } while (0)

#endif
