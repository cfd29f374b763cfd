/* rt_archive.c - see rt_archive.h.
 *
 * Records live in a ring of pointers (oldest at head), each one malloc'd
 * block holding the entry and copies of its strings. The index is linear
 * probing over power-of-two slots, at least four per record (two keys
 * each: a load of at most one half). A slot holds the record's ring
 * position and which of its keys it stands for, so removing one key never
 * removes the other's slot; deletion shifts the following run back
 * instead of leaving tombstones. */
#include "rt_archive.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Slot values: ((ring position + 1) << 1) | key (0 id, 1 trace); 0 empty. */
#define SLOT_KEY(v) ((v)&1u)
#define SLOT_POS(v) (((v) >> 1) - 1u)
#define SLOT_OF(pos, key) ((((uint32_t)(pos) + 1u) << 1) | (uint32_t)(key))
#define MAX_CAPACITY ((size_t)1 << 28)

struct rt_archive {
    size_t cap, head, count, bytes;
    rt_archive_entry_t **ring; /* cap pointers */
    uint32_t *slot;            /* mask + 1 slots */
    uint32_t *hash;            /* the key hash of each used slot */
    size_t mask;
};

static uint32_t rt__hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    size_t i;
    for (i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return (uint32_t)(h ^ (h >> 32));
}

rt_archive_t *rt_archive_new(size_t capacity)
{
    rt_archive_t *ar;
    size_t n = 4;
    if (capacity > MAX_CAPACITY)
        return NULL;
    ar = calloc(1, sizeof(*ar));
    if (ar == NULL)
        return NULL;
    ar->cap = capacity;
    if (capacity == 0)
        return ar;
    while (n < capacity * 4)
        n <<= 1;
    ar->ring = calloc(capacity, sizeof(*ar->ring));
    ar->slot = calloc(n, sizeof(*ar->slot));
    ar->hash = calloc(n, sizeof(*ar->hash));
    if (ar->ring == NULL || ar->slot == NULL || ar->hash == NULL) {
        rt_archive_free(ar);
        return NULL;
    }
    ar->mask = n - 1;
    return ar;
}

void rt_archive_free(rt_archive_t *ar)
{
    size_t i;
    if (ar == NULL)
        return;
    for (i = 0; i < ar->count; i++)
        free(ar->ring[(ar->head + i) % ar->cap]);
    free(ar->ring);
    free(ar->slot);
    free(ar->hash);
    free(ar);
}

static const rt_str_t *rt__key(const rt_archive_t *ar, uint32_t v)
{
    return &ar->ring[SLOT_POS(v)]->field[SLOT_KEY(v) ? RT_AR_TRACE : RT_AR_ID];
}

static void rt__index_add(rt_archive_t *ar, size_t pos, int key)
{
    const rt_str_t *k = &ar->ring[pos]->field[key ? RT_AR_TRACE : RT_AR_ID];
    uint32_t h = rt__hash(k->s, k->len);
    size_t i = h & ar->mask;
    while (ar->slot[i] != 0)
        i = (i + 1) & ar->mask;
    ar->slot[i] = SLOT_OF(pos, key);
    ar->hash[i] = h;
}

static void rt__index_remove(rt_archive_t *ar, size_t pos, int key)
{
    const rt_str_t *k = &ar->ring[pos]->field[key ? RT_AR_TRACE : RT_AR_ID];
    uint32_t want = SLOT_OF(pos, key);
    size_t i = rt__hash(k->s, k->len) & ar->mask, j, home;
    while (ar->slot[i] != want) {
        if (ar->slot[i] == 0)
            return; /* not indexed: cannot happen, nothing to undo */
        i = (i + 1) & ar->mask;
    }
    /* Shift back every following slot whose home is not in (i, j]. */
    j = i;
    for (;;) {
        j = (j + 1) & ar->mask;
        if (ar->slot[j] == 0)
            break;
        home = ar->hash[j] & ar->mask;
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
            continue;
        ar->slot[i] = ar->slot[j];
        ar->hash[i] = ar->hash[j];
        i = j;
    }
    ar->slot[i] = 0;
}

int rt_archive_put(rt_archive_t *ar, const rt_str_t field[RT_AR_NFIELDS],
                   double created_at, double tokens, double cost,
                   const char *record, size_t record_len)
{
    size_t size = sizeof(rt_archive_entry_t), pos, f;
    rt_archive_entry_t *e;
    char *p;
    if (field[RT_AR_ID].s == NULL || field[RT_AR_TRACE].s == NULL)
        return -1;
    if (ar->cap == 0)
        return 0;
    for (f = 0; f < RT_AR_NFIELDS; f++) {
        if (field[f].s != NULL) {
            if (field[f].len > SIZE_MAX / 2 - size)
                return -1;
            size += field[f].len + 1;
        }
    }
    if (record_len > SIZE_MAX / 2 - size)
        return -1;
    size += record_len + 1;
    e = malloc(size);
    if (e == NULL)
        return -1;
    p = (char *)(e + 1);
    for (f = 0; f < RT_AR_NFIELDS; f++) {
        e->field[f].s = NULL;
        e->field[f].len = 0;
        if (field[f].s != NULL) {
            memcpy(p, field[f].s, field[f].len);
            p[field[f].len] = '\0';
            e->field[f].s = p;
            e->field[f].len = field[f].len;
            p += field[f].len + 1;
        }
    }
    memcpy(p, record, record_len);
    p[record_len] = '\0';
    e->record.s = p;
    e->record.len = record_len;
    e->created_at = created_at;
    e->tokens = tokens;
    e->cost = cost;

    e->bytes = size;
    if (ar->count == ar->cap) { /* full: the oldest goes */
        pos = ar->head;
        rt__index_remove(ar, pos, 0);
        rt__index_remove(ar, pos, 1);
        ar->bytes -= ar->ring[pos]->bytes;
        free(ar->ring[pos]);
        ar->head = (ar->head + 1) % ar->cap;
        ar->count--;
    }
    pos = (ar->head + ar->count) % ar->cap;
    ar->ring[pos] = e;
    ar->count++;
    ar->bytes += size;
    rt__index_add(ar, pos, 0);
    rt__index_add(ar, pos, 1);
    return 0;
}

const rt_archive_entry_t *rt_archive_get(const rt_archive_t *ar,
                                         const char *key, size_t len)
{
    size_t i;
    uint32_t h, v;
    if (ar->count == 0)
        return NULL;
    h = rt__hash(key, len);
    for (i = h & ar->mask; (v = ar->slot[i]) != 0; i = (i + 1) & ar->mask) {
        const rt_str_t *k;
        if (ar->hash[i] != h)
            continue;
        k = rt__key(ar, v);
        if (k->len == len && memcmp(k->s, key, len) == 0)
            return ar->ring[SLOT_POS(v)];
    }
    return NULL;
}

size_t rt_archive_count(const rt_archive_t *ar)
{
    return ar->count;
}

size_t rt_archive_bytes(const rt_archive_t *ar)
{
    return ar->bytes;
}

static int rt__eq(const rt_str_t *have, const rt_str_t *want)
{
    return have->s != NULL && have->len == want->len &&
           memcmp(have->s, want->s, want->len) == 0;
}

/* Newest first: created_at descending, then id descending. */
static int rt__newer_first(const void *a, const void *b)
{
    const rt_archive_entry_t *x = *(const rt_archive_entry_t *const *)a;
    const rt_archive_entry_t *y = *(const rt_archive_entry_t *const *)b;
    if (x->created_at != y->created_at)
        return x->created_at > y->created_at ? -1 : 1;
    return -strcmp(x->field[RT_AR_ID].s, y->field[RT_AR_ID].s);
}

size_t rt_archive_select(const rt_archive_t *ar, const rt_archive_filter_t *f,
                         const rt_archive_entry_t **out, size_t max,
                         double sums[2])
{
    const rt_archive_entry_t **all;
    size_t i, n = 0;
    double tokens = 0, cost = 0;
    if (sums != NULL)
        sums[0] = sums[1] = 0;
    if (ar->count == 0)
        return 0;
    all = malloc(ar->count * sizeof(*all));
    if (all == NULL)
        return (size_t)-1;
    for (i = 0; i < ar->count; i++) {
        const rt_archive_entry_t *e = ar->ring[(ar->head + i) % ar->cap];
        if (f->status.s != NULL && !rt__eq(&e->field[RT_AR_STATUS], &f->status))
            continue;
        if (f->config.s != NULL &&
            !rt__eq(&e->field[RT_AR_CONFIG], &f->config) &&
            !rt__eq(&e->field[RT_AR_CONFIG_ID], &f->config))
            continue;
        if (f->config_id.s != NULL &&
            !rt__eq(&e->field[RT_AR_CONFIG_ID], &f->config_id))
            continue;
        if (f->user.s != NULL && !rt__eq(&e->field[RT_AR_USER], &f->user))
            continue;
        if (f->tenant.s != NULL && !rt__eq(&e->field[RT_AR_TENANT], &f->tenant))
            continue;
        if (f->session.s != NULL &&
            !rt__eq(&e->field[RT_AR_SESSION], &f->session))
            continue;
        if (!(e->created_at >= f->since && e->created_at < f->until))
            continue;
        tokens += e->tokens;
        cost += e->cost;
        all[n++] = e;
    }
    qsort(all, n, sizeof(*all), rt__newer_first);
    if (max > n)
        max = n;
    if (max > 0)
        memcpy(out, all, max * sizeof(*all));
    free(all);
    if (sums != NULL) {
        sums[0] = tokens;
        sums[1] = cost;
    }
    return n;
}
