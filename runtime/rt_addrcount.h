/* rt_addrcount.h - how many connections each client address holds.
 *
 * A counting set of peer addresses (IPv4 or IPv6, without the port), so a
 * server can cap the connections of one client: one client opening
 * thousands must not lock the others out. Open addressing with linear
 * probing and backward-shift deletion; grows as needed. */
#ifndef RT_ADDRCOUNT_H
#define RT_ADDRCOUNT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct {
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    uint32_t count;   /* 0: empty slot */
} rt_addrcount_slot_t;

typedef struct {
    rt_addrcount_slot_t *slots;
    size_t cap, used;
} rt_addrcount_t;

/* The 16-byte key of a peer address; returns 0, or -1 for a family other
 * than AF_INET/AF_INET6. */
int rt_addrcount_key(const struct sockaddr *sa, uint8_t key[16]);
/* Adds one connection of key; returns the count it now has, or -1 when
 * memory ran out (nothing counted). */
long rt_addrcount_inc(rt_addrcount_t *ac, const uint8_t key[16]);
/* Removes one connection of key (a key with no count is ignored). */
void rt_addrcount_dec(rt_addrcount_t *ac, const uint8_t key[16]);
/* The count of key. */
uint32_t rt_addrcount_get(const rt_addrcount_t *ac, const uint8_t key[16]);
void rt_addrcount_free(rt_addrcount_t *ac);

#endif
