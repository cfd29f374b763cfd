/* rt_archive.h - ended execution records kept outside the Lua heap.
 *
 * The memory store keeps the last N ended executions readable (status,
 * lists). Kept in the Lua heap, even as JSON text, they made every
 * collection cycle of an API server walk a heap several times larger than
 * its working set (one process: ~25 % fewer requests per second, twice the
 * p99). Here each record is one malloc'd block: its bytes (the store
 * serializes it) and the few
 * fields lists filter and sort on. A FIFO of `capacity` records, oldest
 * dropped first, found by execution id or trace id through an open
 * addressing index. */
#ifndef RT_ARCHIVE_H
#define RT_ARCHIVE_H

#include <stddef.h>

/* The fields of a record, by index. ID and TRACE are required and are the
 * lookup keys; the others may be absent. */
enum {
    RT_AR_ID,
    RT_AR_TRACE,
    RT_AR_STATUS,
    RT_AR_CONFIG, /* config name */
    RT_AR_CONFIG_ID,
    RT_AR_USER,
    RT_AR_TENANT,
    RT_AR_SESSION, /* the client's session_id */
    RT_AR_NFIELDS
};

typedef struct {
    const char *s; /* NULL: absent */
    size_t len;
} rt_str_t;

typedef struct {
    rt_str_t field[RT_AR_NFIELDS]; /* NUL-terminated copies; s NULL: absent */
    double created_at;
    double tokens, cost; /* the execution's totals (list totals) */
    rt_str_t record;     /* the record's bytes (any, NUL-terminated) */
    size_t bytes;        /* the size of the block */
} rt_archive_entry_t;

typedef struct rt_archive rt_archive_t;

/* A FIFO of at most capacity records (0 keeps none); NULL without memory. */
rt_archive_t *rt_archive_new(size_t capacity);
void rt_archive_free(rt_archive_t *ar);

/* Adds a record (copied), dropping the oldest when full. Returns 0, or -1
 * without memory (nothing changed) or when id or trace is absent. */
int rt_archive_put(rt_archive_t *ar, const rt_str_t field[RT_AR_NFIELDS],
                   double created_at, double tokens, double cost,
                   const char *record, size_t record_len);

/* The record whose id or trace id is key; NULL when none. Valid until the
 * next put. */
const rt_archive_entry_t *rt_archive_get(const rt_archive_t *ar,
                                         const char *key, size_t len);

size_t rt_archive_count(const rt_archive_t *ar);
/* Bytes held by the records (their blocks, not the index). */
size_t rt_archive_bytes(const rt_archive_t *ar);

/* What select matches: every field given (s NULL: any; config matches the
 * config name or the config id, config_id the config id only) and
 * created_at in [since, until) (use -HUGE_VAL / HUGE_VAL for no bound). */
typedef struct {
    rt_str_t status, config, config_id, user, tenant, session;
    double since, until;
} rt_archive_filter_t;

/* The records matching f, newest first (created_at, then id, both
 * descending). Writes at most max of them to out and returns how many
 * match in all; sums (may be NULL) gets the tokens and cost of all of
 * them. Allocates a scratch array: returns (size_t)-1 without memory. */
size_t rt_archive_select(const rt_archive_t *ar, const rt_archive_filter_t *f,
                         const rt_archive_entry_t **out, size_t max,
                         double sums[2]);

#endif
