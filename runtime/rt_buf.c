/* rt_buf.c - see rt_buf.h. */
#include "rt_buf.h"

#include <stdint.h>
#include <stdlib.h>

int rt_buf_grow(char **buf, size_t len, size_t *cap, size_t need)
{
    size_t ncap;
    char *nb;
    if (need <= *cap - len)
        return 0;
    if (need > SIZE_MAX / 2 - len)
        return -1;
    ncap = *cap ? *cap : 1024;
    while (ncap < len + need)
        ncap *= 2;
    nb = realloc(*buf, ncap);
    if (nb == NULL)
        return -1;
    *buf = nb;
    *cap = ncap;
    return 0;
}
