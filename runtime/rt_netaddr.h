/* rt_netaddr.h - which addresses are internal (loopback, private,
 * link-local, ...), and address ranges (CIDR) an operator allows.
 *
 * Outbound requests whose destination a user chooses (webhook URLs)
 * must not reach the server's own network unless the operator says so:
 * the check runs on the address actually connected to, after DNS, so a
 * name that resolves to 127.0.0.1 is caught too. */
#ifndef RT_NETADDR_H
#define RT_NETADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* 4 or 16 bytes */
    int prefix;       /* bits */
} rt_cidr_t;

/* Parses "10.0.0.0/8", "fd00::/8" or a bare address (a /32 or /128).
 * Returns 0 or -1. */
int rt_cidr_parse(const char *s, rt_cidr_t *out);
/* 1 when sa is in the range. */
int rt_cidr_contains(const rt_cidr_t *c, const struct sockaddr *sa);
/* 1 when sa is not a public unicast address: unspecified, loopback,
 * RFC 1918 and RFC 6598 (carrier-grade NAT) private, link-local,
 * benchmarking, multicast, reserved; IPv6 unique-local, link-local,
 * multicast; and an IPv4-mapped IPv6 address of any of those. */
int rt_netaddr_is_internal(const struct sockaddr *sa);

#endif
