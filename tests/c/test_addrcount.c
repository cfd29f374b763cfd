/* test_addrcount.c - the counting set of client addresses behind the
 * per-client connection cap. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "rt_addrcount.h"
#include "test_check.h"

static void key4(uint32_t n, uint8_t key[16])
{
    struct sockaddr_in in;
    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(n);
    CHECK(rt_addrcount_key((struct sockaddr *)&in, key) == 0);
}

int main(void)
{
    rt_addrcount_t ac = {0};
    uint8_t a[16], b[16], k[16];
    struct sockaddr_in6 in6;
    struct sockaddr sa;
    uint32_t i;
    int round;

    key4(0x7f000001, a);
    key4(0x7f000002, b);
    CHECK(rt_addrcount_get(&ac, a) == 0);
    CHECK(rt_addrcount_inc(&ac, a) == 1);
    CHECK(rt_addrcount_inc(&ac, a) == 2);
    CHECK(rt_addrcount_inc(&ac, b) == 1);
    CHECK(rt_addrcount_get(&ac, a) == 2);
    rt_addrcount_dec(&ac, a);
    CHECK(rt_addrcount_get(&ac, a) == 1);
    rt_addrcount_dec(&ac, a);
    CHECK(rt_addrcount_get(&ac, a) == 0);
    CHECK(rt_addrcount_get(&ac, b) == 1);
    rt_addrcount_dec(&ac, a); /* not counted: ignored */
    CHECK(rt_addrcount_get(&ac, b) == 1);

    /* IPv6 keys are their 16 bytes; an unknown family is refused. */
    memset(&in6, 0, sizeof in6);
    in6.sin6_family = AF_INET6;
    in6.sin6_addr.s6_addr[15] = 1;
    CHECK(rt_addrcount_key((struct sockaddr *)&in6, k) == 0);
    CHECK(memcmp(k, a, 16) != 0);
    memset(&sa, 0, sizeof sa);
    sa.sa_family = AF_UNIX;
    CHECK(rt_addrcount_key(&sa, k) == -1);

    /* Many addresses through growth and deletions: every count stays
     * findable (a broken backward shift loses some). */
    for (round = 0; round < 3; round++) {
        for (i = 0; i < 5000; i++) {
            key4(0x0a000000 + i * 7919, k);
            CHECK(rt_addrcount_inc(&ac, k) == (long)(round + 1));
        }
        for (i = 0; i < 5000; i += 3) {
            key4(0x0a000000 + i * 7919, k);
            rt_addrcount_dec(&ac, k);
        }
        for (i = 0; i < 5000; i++) {
            key4(0x0a000000 + i * 7919, k);
            CHECK(rt_addrcount_get(&ac, k) ==
                  (uint32_t)(round + 1 - (i % 3 == 0 ? 1 : 0)));
            if (i % 3 == 0) /* bring it back in step with the others */
                while (rt_addrcount_get(&ac, k) < (uint32_t)(round + 1))
                    CHECK(rt_addrcount_inc(&ac, k) > 0);
        }
    }
    CHECK(rt_addrcount_get(&ac, b) == 1);
    rt_addrcount_free(&ac);
    if (test_failures != 0) {
        fprintf(stderr, "%d checks failed\n", test_failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
