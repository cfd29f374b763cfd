/* test_archive.c - unit tests of the ended-execution archive (rt_archive.c):
 * lookups by id and trace id, the oldest dropped first with both of its
 * keys, an index that stays right through many wraps (deletions shift
 * runs back), select's filters (fields, config id, session, time range),
 * order, bounds and sums, and bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_archive.h"

#include "test_check.h"

static rt_str_t S(const char *s)
{
    rt_str_t v = {s, s != NULL ? strlen(s) : 0};
    return v;
}

/* put(ar, n, created, status, config, user, tenant): record n has id
 * "id-n", trace "trace-n" and JSON {"n":n}. */
static int put(rt_archive_t *ar, int n, double created, const char *status,
               const char *config, const char *user, const char *tenant)
{
    char id[32], trace[32], rec[32];
    rt_str_t f[RT_AR_NFIELDS];
    snprintf(id, sizeof(id), "id-%d", n);
    snprintf(trace, sizeof(trace), "trace-%d", n);
    snprintf(rec, sizeof(rec), "{\"n\":%d}", n);
    f[RT_AR_ID] = S(id);
    f[RT_AR_TRACE] = S(trace);
    f[RT_AR_STATUS] = S(status);
    f[RT_AR_CONFIG] = S(config);
    f[RT_AR_CONFIG_ID] = S(config != NULL ? "cfg-id" : NULL);
    f[RT_AR_USER] = S(user);
    f[RT_AR_TENANT] = S(tenant);
    /* a session for records of user u1 */
    f[RT_AR_SESSION] = S(user != NULL && strcmp(user, "u1") == 0 ? "s1" : NULL);
    /* tokens n, cost n / 4: sums are easy to check */
    return rt_archive_put(ar, f, created, n, n / 4.0, rec, strlen(rec));
}

/* F(status, config, user, tenant): a filter over all time. */
static rt_archive_filter_t F(const char *status, const char *config,
                             const char *user, const char *tenant)
{
    rt_archive_filter_t f;
    f.status = S(status);
    f.config = S(config);
    f.config_id = S(NULL);
    f.user = S(user);
    f.session = S(NULL);
    f.tenant = S(tenant);
    f.since = -HUGE_VAL;
    f.until = HUGE_VAL;
    return f;
}

static int has(const rt_archive_t *ar, int n)
{
    char id[32], trace[32], rec[32];
    const rt_archive_entry_t *a, *b;
    snprintf(id, sizeof(id), "id-%d", n);
    snprintf(trace, sizeof(trace), "trace-%d", n);
    snprintf(rec, sizeof(rec), "{\"n\":%d}", n);
    a = rt_archive_get(ar, id, strlen(id));
    b = rt_archive_get(ar, trace, strlen(trace));
    CHECK(a == b); /* both keys or neither */
    if (a == NULL)
        return 0;
    CHECK(strcmp(a->record.s, rec) == 0);
    CHECK(strcmp(a->field[RT_AR_ID].s, id) == 0);
    return 1;
}

static void test_get_and_fields(void)
{
    rt_archive_t *ar = rt_archive_new(4);
    const rt_archive_entry_t *e;
    CHECK(ar != NULL);
    CHECK(rt_archive_get(ar, "id-1", 4) == NULL);
    CHECK(put(ar, 1, 10.5, "completed", "payroll", NULL, "t1") == 0);
    e = rt_archive_get(ar, "trace-1", 7);
    CHECK(e != NULL);
    CHECK(e->created_at == 10.5);
    CHECK(strcmp(e->field[RT_AR_STATUS].s, "completed") == 0);
    CHECK(strcmp(e->field[RT_AR_CONFIG].s, "payroll") == 0);
    CHECK(e->field[RT_AR_USER].s == NULL);
    CHECK(strcmp(e->field[RT_AR_TENANT].s, "t1") == 0);
    CHECK(e->record.len == strlen("{\"n\":1}"));
    CHECK(rt_archive_get(ar, "id-", 3) == NULL);   /* a prefix is no key */
    CHECK(rt_archive_get(ar, "id-10", 5) == NULL); /* nor a longer one */
    CHECK(rt_archive_count(ar) == 1);
    CHECK(rt_archive_bytes(ar) > sizeof(rt_archive_entry_t));
    rt_archive_free(ar);
}

static void test_oldest_dropped(void)
{
    rt_archive_t *ar = rt_archive_new(3);
    size_t bytes3;
    int i;
    for (i = 1; i <= 3; i++)
        CHECK(put(ar, i, i, "completed", NULL, NULL, NULL) == 0);
    bytes3 = rt_archive_bytes(ar);
    CHECK(put(ar, 4, 4, "completed", NULL, NULL, NULL) == 0);
    CHECK(!has(ar, 1));
    CHECK(has(ar, 2) && has(ar, 3) && has(ar, 4));
    CHECK(rt_archive_count(ar) == 3);
    CHECK(rt_archive_bytes(ar) == bytes3); /* same sizes in, same out */
    rt_archive_free(ar);
}

/* Thousands of puts through a small ring: every key goes in and out of the
 * index; after each put exactly the last cap records are found. */
static void test_many_wraps(void)
{
    const int cap = 37, total = 5000;
    rt_archive_t *ar = rt_archive_new((size_t)cap);
    int i, k, bad = 0;
    for (i = 1; i <= total; i++) {
        CHECK(put(ar, i, i, "completed", NULL, NULL, NULL) == 0);
        if (i % 97 == 0 || i == total) {
            for (k = i - cap - 5; k <= i; k++) {
                int want = k > i - cap && k >= 1;
                if (k >= 1 && has(ar, k) != want)
                    bad++;
            }
        }
    }
    CHECK(bad == 0);
    CHECK(rt_archive_count(ar) == (size_t)cap);
    rt_archive_free(ar);
}

static void test_select(void)
{
    rt_archive_t *ar = rt_archive_new(10);
    const rt_archive_entry_t *out[10];
    rt_archive_filter_t all = F(NULL, NULL, NULL, NULL), f;
    double sums[2];
    size_t n;
    /* created: 5 and 6 tie (id order breaks it) */
    CHECK(put(ar, 1, 1, "completed", "a", "u1", "t1") == 0);
    CHECK(put(ar, 2, 3, "failed", "a", "u2", "t1") == 0);
    CHECK(put(ar, 3, 2, "completed", "b", "u1", "t2") == 0);
    CHECK(put(ar, 4, 5, "completed", "a", "u1", "t1") == 0);
    CHECK(put(ar, 5, 5, "completed", NULL, NULL, NULL) == 0);

    n = rt_archive_select(ar, &all, out, 10, sums);
    CHECK(n == 5);
    CHECK(sums[0] == 15 && sums[1] == 15 / 4.0);
    CHECK(strcmp(out[0]->field[RT_AR_ID].s, "id-5") == 0); /* tie: id desc */
    CHECK(strcmp(out[1]->field[RT_AR_ID].s, "id-4") == 0);
    CHECK(strcmp(out[2]->field[RT_AR_ID].s, "id-2") == 0);
    CHECK(strcmp(out[3]->field[RT_AR_ID].s, "id-3") == 0);
    CHECK(strcmp(out[4]->field[RT_AR_ID].s, "id-1") == 0);

    f = F("completed", "a", NULL, "t1");
    n = rt_archive_select(ar, &f, out, 10, sums);
    CHECK(n == 2);
    CHECK(strcmp(out[0]->field[RT_AR_ID].s, "id-4") == 0);
    CHECK(strcmp(out[1]->field[RT_AR_ID].s, "id-1") == 0);
    CHECK(sums[0] == 5 && sums[1] == 5 / 4.0);
    /* config matches the config id too; an absent field never matches */
    f = F(NULL, "cfg-id", NULL, NULL);
    CHECK(rt_archive_select(ar, &f, out, 10, NULL) == 4);
    f = F(NULL, NULL, "u1", NULL);
    CHECK(rt_archive_select(ar, &f, out, 10, NULL) == 3);
    /* config_id matches the id only, never a name */
    f = all;
    f.config_id = S("cfg-id");
    CHECK(rt_archive_select(ar, &f, out, 10, NULL) == 4);
    f.config_id = S("a");
    CHECK(rt_archive_select(ar, &f, out, 10, NULL) == 0);
    /* session: exact; records without one never match */
    f = all;
    f.session = S("s1");
    CHECK(rt_archive_select(ar, &f, out, 10, NULL) == 3);
    f.status = S("completed");
    f.tenant = S("t2");
    n = rt_archive_select(ar, &f, out, 10, NULL);
    CHECK(n == 1);
    CHECK(strcmp(out[0]->field[RT_AR_ID].s, "id-3") == 0);
    f = all;
    f.session = S("s2");
    CHECK(rt_archive_select(ar, &f, out, 10, NULL) == 0);
    f = F("cancelled", NULL, NULL, NULL);
    CHECK(rt_archive_select(ar, &f, out, 10, sums) == 0);
    CHECK(sums[0] == 0 && sums[1] == 0);
    /* time range: since inclusive, until exclusive */
    f = all;
    f.since = 2;
    f.until = 5;
    n = rt_archive_select(ar, &f, out, 10, sums);
    CHECK(n == 2);
    CHECK(strcmp(out[0]->field[RT_AR_ID].s, "id-2") == 0);
    CHECK(strcmp(out[1]->field[RT_AR_ID].s, "id-3") == 0);
    CHECK(sums[0] == 5);
    f.until = HUGE_VAL;
    f.since = 5;
    CHECK(rt_archive_select(ar, &f, out, 10, NULL) == 2);
    /* max bounds what is written, not the total nor the sums */
    out[1] = NULL;
    CHECK(rt_archive_select(ar, &all, out, 1, sums) == 5);
    CHECK(sums[0] == 15);
    CHECK(strcmp(out[0]->field[RT_AR_ID].s, "id-5") == 0);
    CHECK(out[1] == NULL);
    CHECK(rt_archive_select(ar, &all, out, 0, NULL) == 5);
    rt_archive_free(ar);
}

static void test_bad_input(void)
{
    rt_archive_t *ar = rt_archive_new(0), *big;
    rt_str_t f[RT_AR_NFIELDS];
    const rt_archive_entry_t *out[1];
    rt_archive_filter_t all = F(NULL, NULL, NULL, NULL);
    memset(f, 0, sizeof(f));
    CHECK(ar != NULL);
    /* capacity 0 keeps nothing, and says so by finding nothing */
    CHECK(put(ar, 1, 1, "completed", NULL, NULL, NULL) == 0);
    CHECK(!has(ar, 1));
    CHECK(rt_archive_count(ar) == 0);
    CHECK(rt_archive_select(ar, &all, out, 1, NULL) == 0);
    /* id and trace are required */
    f[RT_AR_ID] = S("x");
    CHECK(rt_archive_put(ar, f, 0, 0, 0, "{}", 2) == -1);
    rt_archive_free(ar);
    /* beyond the index's reach: refused, not truncated */
    big = rt_archive_new((size_t)1 << 29);
    CHECK(big == NULL);
    rt_archive_free(NULL);
}

int main(void)
{
    test_get_and_fields();
    test_oldest_dropped();
    test_many_wraps();
    test_select();
    test_bad_input();
    if (test_failures != 0) {
        fprintf(stderr, "test_archive: %d check(s) failed\n", test_failures);
        return 1;
    }
    printf("test_archive: ok\n");
    return 0;
}
