/* rt_netaddr.c - internal addresses and CIDR ranges. */
#include "rt_netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rt_cidr_parse(const char *s, rt_cidr_t *out)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    char *end;
    long bits;
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        out->prefix = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        out->prefix = 128;
    } else {
        return -1;
    }
    if (slash) {
        bits = strtol(slash + 1, &end, 10);
        if (*end != '\0' || end == slash + 1 || bits < 0 || bits > out->prefix)
            return -1;
        out->prefix = (int)bits;
    }
    return 0;
}

static int rt__prefix_match(const uint8_t *a, const uint8_t *b, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    return ((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

/* The address's bytes and family, an IPv4-mapped IPv6 address unmapped. */
static int rt__bytes(const struct sockaddr *sa, uint8_t out[16])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
                                       0, 0, 0, 0, 0xff, 0xff};
    if (sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(a, mapped, 12) == 0) {
            memcpy(out, a + 12, 4);
            return AF_INET;
        }
        memcpy(out, a, 16);
        return AF_INET6;
    }
    return 0;
}

int rt_cidr_contains(const rt_cidr_t *c, const struct sockaddr *sa)
{
    uint8_t a[16];
    return rt__bytes(sa, a) == c->family &&
           rt__prefix_match(a, c->addr, c->prefix);
}

int rt_netaddr_is_internal(const struct sockaddr *sa)
{
    static const char *const ranges[] = {
        "0.0.0.0/8",      "10.0.0.0/8",    "100.64.0.0/10",   "127.0.0.0/8",
        "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",    "192.0.2.0/24",
        "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
        "224.0.0.0/4",    "240.0.0.0/4",   "::/128",          "::1/128",
        "fc00::/7",       "fe80::/10",     "ff00::/8",        "64:ff9b::/96",
        "100::/64",       "2001:db8::/32"};
    static rt_cidr_t parsed[sizeof ranges / sizeof ranges[0]];
    static int ready;
    uint8_t a[16];
    size_t i;
    int fam = rt__bytes(sa, a);
    if (fam == 0)
        return 1; /* not an IP address: not reachable from outside */
    if (!ready) {
        for (i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
            if (rt_cidr_parse(ranges[i], &parsed[i]) != 0)
                abort(); /* a typo above */
        ready = 1;
    }
    for (i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (parsed[i].family == fam &&
            rt__prefix_match(a, parsed[i].addr, parsed[i].prefix))
            return 1;
    return 0;
}
