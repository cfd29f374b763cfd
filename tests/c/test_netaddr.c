/* test_netaddr.c - internal addresses and CIDR ranges (SSRF checks). */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "rt_netaddr.h"
#include "test_check.h"

static int internal(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        CHECK(inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        CHECK(inet_pton(AF_INET, ip, &s4->sin_addr) == 1);
    }
    return rt_netaddr_is_internal((struct sockaddr *)&ss);
}

static int in(const char *cidr, const char *ip)
{
    rt_cidr_t c;
    struct sockaddr_in s4;
    memset(&s4, 0, sizeof s4);
    s4.sin_family = AF_INET;
    CHECK(rt_cidr_parse(cidr, &c) == 0);
    CHECK(inet_pton(AF_INET, ip, &s4.sin_addr) == 1);
    return rt_cidr_contains(&c, (struct sockaddr *)&s4);
}

int main(void)
{
    rt_cidr_t c;
    const char *inside[] = {
        "127.0.0.1",
        "127.255.0.9",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "100.64.0.1",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd12:3456::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "ff02::1",
    };
    const char *outside[] = {
        "8.8.8.8",         "172.32.0.1",     "172.15.255.255", "93.184.216.34",
        "2606:4700::1111", "::ffff:8.8.8.8", "100.128.0.1",
    };
    size_t i;
    for (i = 0; i < sizeof inside / sizeof inside[0]; i++)
        if (!internal(inside[i])) {
            fprintf(stderr, "not internal: %s\n", inside[i]);
            CHECK(0);
        }
    for (i = 0; i < sizeof outside / sizeof outside[0]; i++)
        if (internal(outside[i])) {
            fprintf(stderr, "internal: %s\n", outside[i]);
            CHECK(0);
        }
    CHECK(in("10.0.0.0/8", "10.200.1.1"));
    CHECK(!in("10.0.0.0/8", "11.0.0.1"));
    CHECK(in("127.0.0.1", "127.0.0.1"));
    CHECK(!in("127.0.0.1", "127.0.0.2"));
    CHECK(in("192.168.4.0/22", "192.168.7.255"));
    CHECK(!in("192.168.4.0/22", "192.168.8.0"));
    CHECK(in("0.0.0.0/0", "8.8.8.8"));
    CHECK(rt_cidr_parse("10.0.0.0/33", &c) == -1);
    CHECK(rt_cidr_parse("10.0.0.0/", &c) == -1);
    CHECK(rt_cidr_parse("10.0.0/8", &c) == -1);
    CHECK(rt_cidr_parse("example.com", &c) == -1);
    CHECK(rt_cidr_parse("", &c) == -1);
    CHECK(rt_cidr_parse("fd00::/8", &c) == 0 && c.family == AF_INET6);
    if (test_failures != 0) {
        fprintf(stderr, "%d checks failed\n", test_failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
