/* rt_logline.c - one log line, JSON or text, secrets taken out (see
 * rt_logline.h). */
#define _GNU_SOURCE /* memmem */
#include "rt_logline.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt_utf8.h"

#define RT_REDACTED "[redacted]"
#define RT_REDACTED_LEN (sizeof(RT_REDACTED) - 1)
/* An API key is chk_ + 64 hex digits; its first 12 characters are its
 * public id. A run of at least this many hex digits after chk_ is taken
 * for a key (ids, at 8, are left alone). */
#define RT_KEY_MIN_HEX 32
#define RT_KEY_ID_HEX 8

/* Makes room for n more bytes. Returns 0, or -1 (the line is failed). */
static int rt__room(rt_logline_t *b, size_t n)
{
    size_t cap;
    char *p;
    if (b->failed)
        return -1;
    if (b->len + n <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 512;
    while (cap < b->len + n)
        cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void rt__put(rt_logline_t *b, const char *s, size_t n)
{
    if (rt__room(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void rt__putc(rt_logline_t *b, char c)
{
    if (rt__room(b, 1) != 0)
        return;
    b->p[b->len++] = c;
}

/* Appends s (well-formed UTF-8, no NUL) with JSON's escapes: control
 * characters, and quote and backslash when quotes is set (a text line's
 * message keeps them: one line per record is what matters there). */
static void rt__escape_valid(rt_logline_t *b, const unsigned char *s,
                             size_t n, int quotes)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0, run;
    while (i < n) {
        unsigned char c;
        for (run = i; run < n; run++) {
            c = s[run];
            if (c < 0x20 || (quotes && (c == '"' || c == '\\')))
                break;
        }
        rt__put(b, (const char *)s + i, run - i);
        if (run == n)
            return;
        c = s[run];
        switch (c) {
        case '"': rt__put(b, "\\\"", 2); break;
        case '\\': rt__put(b, "\\\\", 2); break;
        case '\n': rt__put(b, "\\n", 2); break;
        case '\r': rt__put(b, "\\r", 2); break;
        case '\t': rt__put(b, "\\t", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rt__put(b, u, sizeof u);
        }
        }
        i = run + 1;
    }
}

/* Appends s escaped; malformed UTF-8 and NULs become U+FFFD first. */
static void rt__escape(rt_logline_t *b, const char *s, size_t n, int quotes)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char *fixed;
    size_t m;
    if (rt_utf8_check_text(u, n) == n) {
        rt__escape_valid(b, u, n, quotes);
        return;
    }
    fixed = malloc(rt_utf8_repair_size(n));
    if (fixed == NULL) {
        b->failed = 1;
        return;
    }
    m = rt_utf8_repair(u, n, fixed);
    rt__escape_valid(b, fixed, m, quotes);
    free(fixed);
}

static void rt__json_string(rt_logline_t *b, const char *s, size_t n)
{
    rt__putc(b, '"');
    rt__escape(b, s, n, 1);
    rt__putc(b, '"');
}

/* Text: a value is written as is unless it is empty or holds a space, a
 * quote, '=', a backslash or a control character: then quoted. */
static void rt__text_value(rt_logline_t *b, const char *s, size_t n)
{
    size_t i;
    int quote = n == 0;
    for (i = 0; i < n && !quote; i++) {
        unsigned char c = (unsigned char)s[i];
        quote = c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f;
    }
    if (quote)
        rt__json_string(b, s, n);
    else
        rt__escape(b, s, n, 1);
}

static void rt__ts(rt_logline_t *b, double t)
{
    double fl = floor(t);
    long sec = (long)fl;
    int ms = (int)((t - fl) * 1000.0);
    char tail[5];
    if (ms < 0)
        ms = 0;
    if (ms > 999)
        ms = 999;
    if (sec != b->last_sec || b->ts_prefix[0] == '\0') {
        time_t tt = (time_t)sec;
        struct tm tm;
        if (gmtime_r(&tt, &tm) == NULL ||
            strftime(b->ts_prefix, sizeof b->ts_prefix, "%Y-%m-%dT%H:%M:%S.",
                     &tm) == 0)
            memcpy(b->ts_prefix, "1970-01-01T00:00:00.", 21);
        b->last_sec = sec;
    }
    rt__put(b, b->ts_prefix, strlen(b->ts_prefix));
    tail[0] = (char)('0' + ms / 100);
    tail[1] = (char)('0' + ms / 10 % 10);
    tail[2] = (char)('0' + ms % 10);
    rt__put(b, tail, 3);
    if (b->json)
        rt__putc(b, 'Z');
}

void rt_logline_begin(rt_logline_t *b, int json, double t, const char *level,
                      const char *msg, size_t msglen)
{
    size_t ll = strlen(level);
    b->len = 0;
    b->failed = 0;
    b->json = json;
    if (json) {
        rt__put(b, "{\"ts\":\"", 7);
        rt__ts(b, t);
        rt__put(b, "\",\"level\":\"", 11);
        rt__put(b, level, ll);
        rt__put(b, "\",\"msg\":", 8);
        rt__json_string(b, msg, msglen);
    } else {
        rt__ts(b, t);
        rt__putc(b, ' ');
        rt__put(b, level, ll);
        for (; ll < 5; ll++)
            rt__putc(b, ' '); /* "%-5s": the messages line up */
        rt__putc(b, ' ');
        rt__escape(b, msg, msglen, 0);
    }
}

static void rt__key(rt_logline_t *b, const char *key, size_t klen)
{
    if (b->json) {
        rt__putc(b, ',');
        rt__json_string(b, key, klen);
        rt__putc(b, ':');
    } else {
        rt__putc(b, ' ');
        rt__escape(b, key, klen, 1);
        rt__putc(b, '=');
    }
}

void rt_logline_str(rt_logline_t *b, const char *key, size_t klen,
                    const char *v, size_t vlen)
{
    rt__key(b, key, klen);
    if (b->json)
        rt__json_string(b, v, vlen);
    else
        rt__text_value(b, v, vlen);
}

void rt_logline_num(rt_logline_t *b, const char *key, size_t klen, double v)
{
    char s[32];
    int n;
    rt__key(b, key, klen);
    if (isnan(v) || isinf(v)) {
        if (b->json)
            rt__put(b, "null", 4);
        else
            rt__put(b, isnan(v) ? "nan" : v > 0 ? "inf" : "-inf",
                    isnan(v) || v > 0 ? 3 : 4);
        return;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        n = snprintf(s, sizeof s, "%lld", (long long)v);
    else
        n = snprintf(s, sizeof s, "%.15g", v);
    if (n > 0 && (size_t)n < sizeof s)
        rt__put(b, s, (size_t)n);
}

void rt_logline_bool(rt_logline_t *b, const char *key, size_t klen, int v)
{
    rt__key(b, key, klen);
    rt__put(b, v ? "true" : "false", v ? 4 : 5);
}

void rt_logline_raw(rt_logline_t *b, const char *key, size_t klen,
                    const char *v, size_t vlen)
{
    rt__key(b, key, klen);
    if (b->json)
        rt__put(b, v, vlen);
    else
        rt__text_value(b, v, vlen);
}

int rt_logline_end(rt_logline_t *b)
{
    if (b->json)
        rt__putc(b, '}');
    rt__putc(b, '\n');
    return b->failed ? -1 : 0;
}

/* Replaces n bytes at off with the text r (rn bytes). Returns 0 or -1. */
static int rt__splice(rt_logline_t *b, size_t off, size_t n, const char *r,
                      size_t rn)
{
    if (rn > n && rt__room(b, rn - n) != 0)
        return -1;
    memmove(b->p + off + rn, b->p + off + n, b->len - off - n);
    memcpy(b->p + off, r, rn);
    b->len = b->len - n + rn;
    return 0;
}

static int rt__is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
}

/* Where a URL's userinfo cannot go on: its end is '@' or one of these. */
static int rt__ends_authority(char c)
{
    return c == '/' || c == '?' || c == '#' || c == '"' || c == '\'' ||
           c == '\\' || c == '<' || c == '>' || (unsigned char)c <= ' ';
}

static int rt__redact_urls(rt_logline_t *b)
{
    size_t i = 0;
    char *hit;
    while (i < b->len &&
           (hit = memmem(b->p + i, b->len - i, "://", 3)) != NULL) {
        size_t start = (size_t)(hit - b->p) + 3, j, colon = 0;
        for (j = start; j < b->len && b->p[j] != '@' &&
                        !rt__ends_authority(b->p[j]);
             j++)
            if (b->p[j] == ':' && colon == 0)
                colon = j;
        i = start;
        if (j < b->len && b->p[j] == '@' && colon != 0) {
            /* user:password@ -> user:[redacted]@ */
            if (rt__splice(b, colon + 1, j - colon - 1, RT_REDACTED,
                           RT_REDACTED_LEN) != 0)
                return -1;
            i = colon + 1 + RT_REDACTED_LEN + 1;
        }
    }
    return 0;
}

static int rt__redact_keys(rt_logline_t *b)
{
    size_t i = 0;
    char *hit;
    while (i < b->len &&
           (hit = memmem(b->p + i, b->len - i, "chk_", 4)) != NULL) {
        size_t start = (size_t)(hit - b->p) + 4, j = start;
        while (j < b->len && rt__is_hex(b->p[j]))
            j++;
        i = start;
        if (j - start >= RT_KEY_MIN_HEX) {
            if (rt__splice(b, start + RT_KEY_ID_HEX, j - start - RT_KEY_ID_HEX,
                           RT_REDACTED, RT_REDACTED_LEN) != 0)
                return -1;
            i = start + RT_KEY_ID_HEX + RT_REDACTED_LEN;
        }
    }
    return 0;
}

int rt_logline_redact(rt_logline_t *b, const char *const *secrets,
                      const size_t *lens, size_t n)
{
    size_t k;
    if (b->failed)
        return -1;
    for (k = 0; k < n; k++) {
        size_t i = 0;
        char *hit;
        if (lens[k] < 4)
            continue;
        while (i < b->len && (hit = memmem(b->p + i, b->len - i, secrets[k],
                                           lens[k])) != NULL) {
            size_t off = (size_t)(hit - b->p);
            if (rt__splice(b, off, lens[k], RT_REDACTED, RT_REDACTED_LEN) !=
                0)
                return -1;
            i = off + RT_REDACTED_LEN;
        }
    }
    if (memmem(b->p, b->len, "://", 3) != NULL && rt__redact_urls(b) != 0)
        return -1;
    if (memmem(b->p, b->len, "chk_", 4) != NULL && rt__redact_keys(b) != 0)
        return -1;
    return 0;
}

void rt_logline_free(rt_logline_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
