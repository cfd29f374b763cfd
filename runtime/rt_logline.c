/* rt_logline.c - one log line, JSON or text, secrets taken out (see
 * rt_logline.h). */
#include "rt_logline.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt_utf8.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define RT_REDACTED "[redacted]"
#define RT_REDACTED_LEN (sizeof(RT_REDACTED) - 1)
/* An API key is chk_ + 64 hex digits; its first 12 characters are its
 * public id. A run of at least this many hex digits after chk_ is taken
 * for a key (ids, at 8, are left alone). */
#define RT_KEY_MIN_HEX 32
#define RT_KEY_ID_HEX 8

/* Grows the buffer for n more bytes. Returns 0, or -1 (the line is
 * failed). */
static int rt__grow(rt_logline_t *b, size_t n)
{
    size_t cap;
    char *p;
    if (b->failed)
        return -1;
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

/* Makes room for n more bytes. Returns 0 or -1. (Inline: it runs for
 * every piece of every line; a line that failed is dropped whole later,
 * so what is written into it meanwhile does not matter.) */
static inline int rt__room(rt_logline_t *b, size_t n)
{
    return b->len + n <= b->cap ? 0 : rt__grow(b, n);
}

static inline void rt__put(rt_logline_t *b, const char *s, size_t n)
{
    if (rt__room(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static inline void rt__putc(rt_logline_t *b, char c)
{
    if (rt__room(b, 1) != 0)
        return;
    b->p[b->len++] = c;
}

/* Bytes a JSON string holds as they are: printable ASCII but the quote
 * and the backslash. Most values are only these (ids, routes, numbers):
 * one pass over them and one copy. */
static const unsigned char rt__plain[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1, ['-'] = 1,
    ['.'] = 1, ['/'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    [':'] = 1, [';'] = 1, ['<'] = 1, ['='] = 1, ['>'] = 1, ['?'] = 1,
    ['@'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,
    ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1,
    ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['['] = 1, [']'] = 1, ['^'] = 1,
    ['_'] = 1, ['`'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1,
    ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,
    ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1,
    ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['{'] = 1, ['|'] = 1,
    ['}'] = 1, ['~'] = 1, [' '] = 1, [0x7f] = 1};

/* Appends s (well-formed UTF-8, no NUL) with JSON's escapes: control
 * characters, and quote and backslash when quotes is set (a text line's
 * message keeps them: one line per record is what matters there). */
static void rt__escape_valid(rt_logline_t *b, const unsigned char *s, size_t n,
                             int quotes)
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
        /* A table: one line an escape. */
        /* clang-format off */
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
        /* clang-format on */
        i = run + 1;
    }
}

/* The length of the prefix of s made of rt__plain bytes, 16 at a time
 * where SSE2 is (x86-64 always): as signed bytes, control characters and
 * every byte >= 0x80 are < 0x20, so one compare finds both. */
static inline size_t rt__plain_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;
#ifdef __SSE2__
    const __m128i space = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"'),
                  bslash = _mm_set1_epi8('\\');
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
        __m128i bad = _mm_or_si128(
            _mm_cmplt_epi8(v, space),
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)));
        int mask = _mm_movemask_epi8(bad);
        if (mask != 0)
            return i + (size_t)__builtin_ctz((unsigned)mask);
    }
#endif
    while (i < n && rt__plain[s[i]])
        i++;
    return i;
}

/* Appends s escaped; malformed UTF-8 and NULs become U+FFFD first. */
static void rt__escape(rt_logline_t *b, const char *s, size_t n, int quotes)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char *fixed;
    size_t m, i = rt__plain_prefix(u, n);
    while (i < n &&
           (rt__plain[u[i]] || (!quotes && (u[i] == '"' || u[i] == '\\'))))
        i++;
    if (i == n) {
        rt__put(b, s, n);
        return;
    }
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
    /* Most strings need no escape (ids, routes, names): one room check
     * and one copy, quotes included. */
    if (rt__plain_prefix((const unsigned char *)s, n) == n) {
        char *p;
        if (rt__room(b, n + 2) != 0)
            return;
        p = b->p + b->len;
        *p = '"';
        memcpy(p + 1, s, n);
        p[n + 1] = '"';
        b->len += n + 2;
        return;
    }
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

/* Writes the digits of u into the end of buf (size 24); returns where
 * they start. */
static char *rt__digits(unsigned long long u, char *end)
{
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    return end;
}

/* Writes v when it is an integer, or has at most 3 decimals (what
 * durations in ms are rounded to), as %.15g would; returns the length,
 * or 0 when v is neither (then snprintf does it: it is ~10 times
 * slower). */
static int rt__fast_num(double v, char *out)
{
    char buf[48], *end = buf + sizeof buf, *p;
    double a = fabs(v);
    long long m;
    int n;
    if (a >= 1e12)
        return 0;
    m = llround(a * 1000.0);
    if (fabs((double)m / 1000.0 - a) > a * 1e-15)
        return 0;
    p = end;
    if (m % 1000 != 0) {
        int frac = (int)(m % 1000), digits = 3;
        while (frac % 10 == 0) {
            frac /= 10;
            digits--;
        }
        while (digits-- > 0) {
            *--p = (char)('0' + frac % 10);
            frac /= 10;
        }
        *--p = '.';
    }
    p = rt__digits((unsigned long long)(m / 1000), p);
    if (v < 0 && m != 0)
        *--p = '-';
    n = (int)(end - p);
    memcpy(out, p, (size_t)n);
    return n;
}

void rt_logline_num(rt_logline_t *b, const char *key, size_t klen, double v)
{
    char s[48];
    int n;
    rt__key(b, key, klen);
    if (isnan(v) || isinf(v)) {
        if (b->json)
            rt__put(b, "null", 4);
        else
            rt__put(b,
                    isnan(v) ? "nan"
                    : v > 0  ? "inf"
                             : "-inf",
                    isnan(v) || v > 0 ? 3 : 4);
        return;
    }
    if ((n = rt__fast_num(v, s)) > 0)
        ;
    else if (v == floor(v) && fabs(v) < 9007199254740992.0)
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

/* memmem for the short needles here: glibc's sets up a shift table on
 * every call, which cost more than the search on lines this short. It
 * looks for the needle's last byte (in "://" and "chk_" a rarer one
 * than the first) and compares the rest in place. */
static char *rt__find(char *h, size_t n, const char *needle, size_t m)
{
    char *end = h + n, *p = h + m - 1;
    char last = needle[m - 1];
    size_t k;
    if (m == 0 || m > n)
        return NULL;
    while (p < end && (p = memchr(p, last, (size_t)(end - p))) != NULL) {
        char *start = p - (m - 1);
        for (k = 0; k + 1 < m && start[k] == needle[k]; k++)
            ;
        if (k + 1 >= m)
            return start;
        p++;
    }
    return NULL;
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
           (hit = rt__find(b->p + i, b->len - i, "://", 3)) != NULL) {
        size_t start = (size_t)(hit - b->p) + 3, j, colon = 0;
        for (j = start;
             j < b->len && b->p[j] != '@' && !rt__ends_authority(b->p[j]); j++)
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
           (hit = rt__find(b->p + i, b->len - i, "chk_", 4)) != NULL) {
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
        while (i < b->len && (hit = rt__find(b->p + i, b->len - i, secrets[k],
                                             lens[k])) != NULL) {
            size_t off = (size_t)(hit - b->p);
            if (rt__splice(b, off, lens[k], RT_REDACTED, RT_REDACTED_LEN) != 0)
                return -1;
            i = off + RT_REDACTED_LEN;
        }
    }
    if (rt__find(b->p, b->len, "://", 3) != NULL && rt__redact_urls(b) != 0)
        return -1;
    if (rt__find(b->p, b->len, "chk_", 4) != NULL && rt__redact_keys(b) != 0)
        return -1;
    return 0;
}

void rt_logline_free(rt_logline_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
