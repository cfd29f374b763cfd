/* rt_chat_chunk.c - see rt_chat_chunk.h.
 *
 * A recursive descent over the text that checks every value (so that an
 * answer here is one lua-cjson would also give) and keeps the spans of
 * the three members. Any doubt is a "no": the caller decodes whole. */
#include "rt_chat_chunk.h"

#include "rt_bytescan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p, *end;
} jp_t;

/* Where a value is, for the members read: the top object, the value of
 * its "choices", the first element of that, its "delta", its "usage";
 * AT_OTHER anywhere else (only checked). */
enum { AT_OTHER, AT_TOP, AT_CHOICES, AT_CHOICE, AT_DELTA, AT_USAGE };

static void jp_ws(jp_t *j)
{
    while (j->p < j->end &&
           (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int jp_hex4(const char *p, const char *end)
{
    int v = 0, i;
    if (end - p < 4)
        return -1;
    for (i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* A \u escape at p (p[0] == '\\', p[1] == 'u') as lua-cjson 2.1.0 reads
 * it: a high surrogate must be followed by an escaped low one. Returns
 * the code point and sets *len to the escape's length, or -1. */
static long jp_unicode(const char *p, const char *end, size_t *len)
{
    long cp = jp_hex4(p + 2, end), lo;
    if (cp < 0)
        return -1;
    *len = 6;
    if ((cp & 0xF800) != 0xD800)
        return cp;
    if (cp & 0x400) /* a low surrogate first */
        return -1;
    if (end - p < 12 || p[6] != '\\' || p[7] != 'u')
        return -1;
    lo = jp_hex4(p + 8, end);
    if (lo < 0 || (lo & 0xFC00) != 0xDC00)
        return -1;
    *len = 12;
    return (((cp & 0x3FF) << 10) | (lo & 0x3FF)) + 0x10000;
}

/* A string at j->p (its opening quote): its span. 0 or -1. */
static int jp_string(jp_t *j, rt_json_span_t *out)
{
    const char *p = j->p + 1, *start = p;
    int escaped = 0;
    for (;;) {
        /* Runs of plain bytes a word at a time (rt_bytescan.h). */
        while (j->end - p >= 8) {
            uint64_t w = rt_bs_load(p);
            if (rt_bs_zero(w) | rt_bs_eq(w, '"') | rt_bs_eq(w, '\\'))
                break;
            p += 8;
        }
        while (p < j->end && *p != '"' && *p != '\\' && *p != '\0')
            p++;
        if (p >= j->end || *p == '\0')
            return -1; /* cjson stops at a NUL byte */
        if (*p == '"')
            break;
        escaped = 1;
        if (j->end - p < 2)
            return -1;
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p += 2;
            break;
        case 'u': {
            size_t len;
            if (jp_unicode(p, j->end, &len) < 0)
                return -1;
            p += len;
            break;
        }
        default:
            return -1;
        }
    }
    out->p = start;
    out->n = (size_t)(p - start);
    out->escaped = escaped;
    out->present = 1;
    j->p = p + 1;
    return 0;
}

/* A number, by RFC 8259's grammar (lua-cjson reads more through strtod,
 * which the whole decode then judges); one that overflows a double is
 * refused, as chorus.json refuses it. */
static int jp_number(jp_t *j)
{
    const char *p = j->p, *start = p;
    int exp = 0;
    if (p < j->end && *p == '-')
        p++;
    if (p >= j->end)
        return -1;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    else
        return -1;
    if (p < j->end && *p == '.') {
        p++;
        if (p >= j->end || !(*p >= '0' && *p <= '9'))
            return -1;
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        exp = 1;
        p++;
        if (p < j->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= j->end || !(*p >= '0' && *p <= '9'))
            return -1;
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    }
    j->p = p;
    /* Without an exponent, 300 digits cannot pass DBL_MAX (~1.8e308). */
    if (exp || p - start > 300) {
        char tmp[64], *copy = tmp, *endp;
        size_t n = (size_t)(p - start);
        double v;
        if (n >= sizeof(tmp) && (copy = malloc(n + 1)) == NULL)
            return -1;
        memcpy(copy, start, n);
        copy[n] = '\0';
        v = strtod(copy, &endp);
        if (copy != tmp)
            free(copy);
        if (isinf(v))
            return -1;
    }
    return 0;
}

static int jp_value(jp_t *j, int depth, int at, rt_chat_chunk_t *out);

static int jp_literal(jp_t *j, const char *word, size_t n)
{
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return -1;
    j->p += n;
    return 0;
}

/* After a member or an element: the container's end (0, consumed), a
 * comma (1, consumed with the space after it) or anything else (-1). */
static int jp_after(jp_t *j, char closer)
{
    jp_ws(j);
    if (j->p >= j->end)
        return -1;
    if (*j->p == closer) {
        j->p++;
        return 0;
    }
    if (*j->p != ',')
        return -1;
    j->p++;
    jp_ws(j);
    return 1;
}

static int jp_array(jp_t *j, int depth, int first_at, rt_chat_chunk_t *out)
{
    int i = 0, rc;
    j->p++;
    jp_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    for (;; i++) {
        if (jp_value(j, depth + 1, i == 0 ? first_at : AT_OTHER, out) != 0)
            return -1;
        if ((rc = jp_after(j, ']')) <= 0)
            return rc;
    }
}

static int key_is(const rt_json_span_t *k, const char *name)
{
    size_t n = strlen(name);
    return k->n == n && memcmp(k->p, name, n) == 0;
}

/* Once-only members: a second one (lua-cjson keeps the last) goes whole. */
static int jp_once(int *seen, int bit)
{
    if (*seen & bit)
        return -1;
    *seen |= bit;
    return 0;
}

/* A member of an object at `at`: where its value is (AT_*), and in *dst
 * the span to fill when it is a string member read here; -1 when the
 * text must be decoded whole. */
static int jp_member(const rt_json_span_t *k, int at, rt_chat_chunk_t *out,
                     rt_json_span_t **dst, int *seen)
{
    *dst = NULL;
    if (at == AT_OTHER)
        return AT_OTHER;
    /* An escaped key may be one of ours under another spelling. */
    if (k->escaped)
        return -1;
    if (at == AT_TOP) {
        if (key_is(k, "choices"))
            return jp_once(seen, 1) < 0 ? -1 : AT_CHOICES;
        if (key_is(k, "model")) {
            *dst = &out->model;
            return jp_once(seen, 2) < 0 ? -1 : AT_OTHER;
        }
        if (key_is(k, "usage"))
            return jp_once(seen, 4) < 0 ? -1 : AT_USAGE;
        return key_is(k, "error") ? -1 : AT_OTHER;
    }
    if (at == AT_CHOICE) {
        if (key_is(k, "delta"))
            return jp_once(seen, 1) < 0 ? -1 : AT_DELTA;
        if (key_is(k, "finish_reason")) {
            *dst = &out->finish;
            return jp_once(seen, 2) < 0 ? -1 : AT_OTHER;
        }
        return AT_OTHER;
    }
    if (at == AT_DELTA && key_is(k, "content")) {
        *dst = &out->content;
        return jp_once(seen, 1) < 0 ? -1 : AT_OTHER;
    }
    return AT_OTHER;
}

static int jp_object(jp_t *j, int depth, int at, rt_chat_chunk_t *out)
{
    int seen = 0, rc;
    j->p++;
    jp_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        rt_json_span_t key, *dst;
        int vat;
        if (j->p >= j->end || *j->p != '"' || jp_string(j, &key) != 0)
            return -1;
        jp_ws(j);
        if (j->p >= j->end || *j->p != ':')
            return -1;
        j->p++;
        jp_ws(j);
        if ((vat = jp_member(&key, at, out, &dst, &seen)) < 0)
            return -1;
        if (j->p >= j->end)
            return -1;
        if (vat == AT_USAGE) { /* usage: only null is read here */
            if (jp_literal(j, "null", 4) != 0)
                return -1;
        } else if (dst != NULL && *j->p == '"') {
            if (jp_string(j, dst) != 0)
                return -1;
        } else if (jp_value(j, depth + 1, vat, out) != 0) {
            return -1;
        }
        if ((rc = jp_after(j, '}')) <= 0)
            return rc;
    }
}

/* Any value at j->p; `at` says where it is. choices as an object, or a
 * choice or delta that is not one, read nothing (in Lua choices[1], or
 * .delta.content, is then nil or not a table). */
static int jp_value(jp_t *j, int depth, int at, rt_chat_chunk_t *out)
{
    rt_json_span_t ignored;
    if (depth > RT_CHAT_CHUNK_DEPTH || j->p >= j->end)
        return -1;
    switch (*j->p) {
    case '{':
        return jp_object(j, depth, at == AT_CHOICES ? AT_OTHER : at, out);
    case '[':
        return jp_array(j, depth, at == AT_CHOICES ? AT_CHOICE : AT_OTHER, out);
    case '"':
        return jp_string(j, &ignored);
    case 't':
        return jp_literal(j, "true", 4);
    case 'f':
        return jp_literal(j, "false", 5);
    case 'n':
        return jp_literal(j, "null", 4);
    default:
        return jp_number(j);
    }
}

int rt_chat_chunk_read(const char *s, size_t n, rt_chat_chunk_t *out)
{
    jp_t j;
    memset(out, 0, sizeof(*out));
    j.p = s;
    j.end = s + n;
    jp_ws(&j);
    if (j.p >= j.end || *j.p != '{' || jp_object(&j, 1, AT_TOP, out) != 0)
        goto whole;
    jp_ws(&j);
    if (j.p != j.end)
        goto whole;
    return 1;
whole:
    memset(out, 0, sizeof(*out));
    return 0;
}

static size_t jp_utf8(long cp, char *d)
{
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xC0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | (cp >> 12));
        d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | (cp >> 18));
    d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t rt_json_unescape(const rt_json_span_t *span, char *dst)
{
    const char *p = span->p, *end = p + span->n;
    size_t n = 0;
    while (p < end) {
        const char *run = p;
        size_t len;
        while (p < end && *p != '\\')
            p++;
        memcpy(dst + n, run, (size_t)(p - run));
        n += (size_t)(p - run);
        if (p >= end)
            break;
        switch (p[1]) {
        case 'b':
            dst[n++] = '\b';
            break;
        case 'f':
            dst[n++] = '\f';
            break;
        case 'n':
            dst[n++] = '\n';
            break;
        case 'r':
            dst[n++] = '\r';
            break;
        case 't':
            dst[n++] = '\t';
            break;
        case 'u':
            /* Checked by rt_chat_chunk_read: a valid escape. */
            n += jp_utf8(jp_unicode(p, end, &len), dst + n);
            p += len;
            continue;
        default: /* " \ / */
            dst[n++] = p[1];
            break;
        }
        p += 2;
    }
    return n;
}
