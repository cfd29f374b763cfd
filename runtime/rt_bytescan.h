/* rt_bytescan.h - finding the next byte of interest in text eight bytes
 * at a time (the word tests of "Bit Twiddling Hacks", S. E. Anderson):
 * JSON strings are scanned for the few bytes that end a plain run, and a
 * byte-at-a-time loop with a table lookup took ~6 instructions a byte
 * (about a tenth of what a streamed piece of answer cost the server). */
#ifndef RT_BYTESCAN_H
#define RT_BYTESCAN_H

#include <stdint.h>
#include <string.h>

#define RT_BS_ONES 0x0101010101010101ULL
#define RT_BS_HIGHS 0x8080808080808080ULL

/* Nonzero when a byte of w is zero. */
static inline uint64_t rt_bs_zero(uint64_t w)
{
    return (w - RT_BS_ONES) & ~w & RT_BS_HIGHS;
}

/* Nonzero when a byte of w is c. */
static inline uint64_t rt_bs_eq(uint64_t w, unsigned char c)
{
    return rt_bs_zero(w ^ (RT_BS_ONES * c));
}

/* Nonzero when a byte of w is below n (n <= 128). */
static inline uint64_t rt_bs_below(uint64_t w, unsigned char n)
{
    return (w - RT_BS_ONES * n) & ~w & RT_BS_HIGHS;
}

static inline uint64_t rt_bs_load(const char *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof(w));
    return w;
}

#endif
