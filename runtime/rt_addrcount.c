/* rt_addrcount.c - how many connections each client address holds. */
#include "rt_addrcount.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int rt_addrcount_key(const struct sockaddr *sa, uint8_t key[16])
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memset(key, 0, 10);
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &in->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

static size_t rt__hash(const uint8_t key[16], size_t cap)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    int i;
    for (i = 0; i < 16; i++) {
        h ^= key[i];
        h *= 1099511628211ull;
    }
    return (size_t)(h & (cap - 1));
}

static rt_addrcount_slot_t *rt__find(const rt_addrcount_t *ac,
                                     const uint8_t key[16])
{
    size_t i;
    if (ac->cap == 0)
        return NULL;
    for (i = rt__hash(key, ac->cap);; i = (i + 1) & (ac->cap - 1)) {
        rt_addrcount_slot_t *s = &ac->slots[i];
        if (s->count == 0)
            return NULL;
        if (memcmp(s->addr, key, 16) == 0)
            return s;
    }
}

static int rt__grow(rt_addrcount_t *ac)
{
    size_t ncap = ac->cap ? ac->cap * 2 : 64, i, j;
    rt_addrcount_slot_t *ns = calloc(ncap, sizeof *ns);
    if (ns == NULL)
        return -1;
    for (i = 0; i < ac->cap; i++) {
        rt_addrcount_slot_t *s = &ac->slots[i];
        if (s->count == 0)
            continue;
        for (j = rt__hash(s->addr, ncap); ns[j].count != 0;
             j = (j + 1) & (ncap - 1))
            ;
        ns[j] = *s;
    }
    free(ac->slots);
    ac->slots = ns;
    ac->cap = ncap;
    return 0;
}

long rt_addrcount_inc(rt_addrcount_t *ac, const uint8_t key[16])
{
    rt_addrcount_slot_t *s = rt__find(ac, key);
    size_t i;
    if (s != NULL)
        return (long)++s->count;
    if ((ac->used + 1) * 2 > ac->cap && rt__grow(ac) != 0)
        return -1;
    for (i = rt__hash(key, ac->cap); ac->slots[i].count != 0;
         i = (i + 1) & (ac->cap - 1))
        ;
    memcpy(ac->slots[i].addr, key, 16);
    ac->slots[i].count = 1;
    ac->used++;
    return 1;
}

void rt_addrcount_dec(rt_addrcount_t *ac, const uint8_t key[16])
{
    rt_addrcount_slot_t *s = rt__find(ac, key);
    size_t i, j, home;
    if (s == NULL || --s->count > 0)
        return;
    /* Backward-shift deletion keeps every probe chain unbroken. */
    i = (size_t)(s - ac->slots);
    ac->used--;
    for (j = (i + 1) & (ac->cap - 1); ac->slots[j].count != 0;
         j = (j + 1) & (ac->cap - 1)) {
        home = rt__hash(ac->slots[j].addr, ac->cap);
        /* j's entry may move to i when i lies on its probe path home..j */
        if (((j - home) & (ac->cap - 1)) >= ((j - i) & (ac->cap - 1))) {
            ac->slots[i] = ac->slots[j];
            i = j;
        }
    }
    ac->slots[i].count = 0;
}

uint32_t rt_addrcount_get(const rt_addrcount_t *ac, const uint8_t key[16])
{
    rt_addrcount_slot_t *s = rt__find(ac, key);
    return s ? s->count : 0;
}

void rt_addrcount_free(rt_addrcount_t *ac)
{
    free(ac->slots);
    ac->slots = NULL;
    ac->cap = ac->used = 0;
}
