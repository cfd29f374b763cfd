/* rt_utf8.c - UTF-8 well-formedness (RFC 3629) and repair. */
#include "rt_utf8.h"

#include <string.h>

/* The length of the well-formed sequence starting at s[i], or 0. */
static size_t rt__seq_len(const unsigned char *s, size_t len, size_t i)
{
    unsigned char c = s[i];
    size_t n, k;
    unsigned int cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 1;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len - i <= n)
        return 0;
    for (k = 1; k <= n; k++) {
        if ((s[i + k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return n + 1;
}

size_t rt_utf8_check(const unsigned char *s, size_t len)
{
    size_t i = 0, n;
    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        n = rt__seq_len(s, len, i);
        if (n == 0)
            return i;
        i += n;
    }
    return len;
}

size_t rt_utf8_check_text(const unsigned char *s, size_t len)
{
    size_t i = 0, n;
    while (i < len) {
        if (s[i] != 0 && s[i] < 0x80) {
            i++;
            continue;
        }
        n = s[i] == 0 ? 0 : rt__seq_len(s, len, i);
        if (n == 0)
            return i;
        i += n;
    }
    return len;
}

size_t rt_utf8_repair(const unsigned char *s, size_t len, unsigned char *out)
{
    static const unsigned char fffd[3] = {0xEF, 0xBF, 0xBD};
    size_t i = 0, o = 0, n;
    while (i < len) {
        n = s[i] == 0 ? 0 : rt__seq_len(s, len, i);
        if (n == 0) {
            memcpy(out + o, fffd, 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        }
    }
    return o;
}
