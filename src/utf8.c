/*
 * utf8.c - incremental UTF-8 validation.
 *
 * The state word packs the number of continuation bytes still expected
 * (bits 0-7) and the allowed range for the next one (bits 8-15 low bound,
 * 16-23 high bound), which is how overlongs, surrogates and values past
 * U+10FFFF are refused at the second byte rather than at the end
 * (RFC 3629 section 4, the table of well-formed byte sequences).
 */
#include "utf8.h"

#include <string.h>

#define UTF8_BAD 0xffffffffu

static uint32_t pack(unsigned need, unsigned lo, unsigned hi)
{
    return need | lo << 8 | (uint32_t)hi << 16;
}

/* The state after a lead byte, or UTF8_BAD. */
static uint32_t lead(uint8_t b)
{
    if (b < 0xc2) return UTF8_BAD;          /* continuation or overlong */
    if (b < 0xe0) return pack(1, 0x80, 0xbf);
    if (b == 0xe0) return pack(2, 0xa0, 0xbf); /* no overlong 3-byte */
    if (b == 0xed) return pack(2, 0x80, 0x9f); /* no surrogates */
    if (b < 0xf0) return pack(2, 0x80, 0xbf);
    if (b == 0xf0) return pack(3, 0x90, 0xbf); /* no overlong 4-byte */
    if (b < 0xf4) return pack(3, 0x80, 0xbf);
    if (b == 0xf4) return pack(3, 0x80, 0x8f); /* nothing past U+10FFFF */
    return UTF8_BAD;
}

#define HIGH_BITS 0x8080808080808080ull

/* True when all eight bytes at p are ASCII.  memcpy keeps the load
 * legal at any alignment; compilers turn it into one mov. */
static int ascii8(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return (w & HIGH_BITS) == 0;
}

typedef uint8_t v16 __attribute__((vector_size(16)));

/* True when all 64 bytes at p are ASCII: one test for four 16-byte
 * vectors keeps long ASCII text (the common case) near memory speed. */
static int ascii64(const uint8_t *p)
{
    v16 v[4];
    uint64_t w[2];
    memcpy(v, p, 64);
    v16 any = v[0] | v[1] | v[2] | v[3];
    memcpy(w, &any, 16);
    return ((w[0] | w[1]) & HIGH_BITS) == 0;
}

enum utf8_rc utf8_feed(utf8_state *state, const uint8_t *p, size_t len)
{
    uint32_t s = *state;
    size_t i = 0;

    if (s == UTF8_BAD)
        return UTF8_INVALID;
    while (i < len) {
        if (s == 0) {
            while (i + 64 <= len && ascii64(p + i))
                i += 64;
            while (i + 8 <= len && ascii8(p + i))
                i += 8;
            if (i == len)
                break;
            if (p[i] < 0x80) {
                i++;
                continue;
            }
            s = lead(p[i++]);
            if (s == UTF8_BAD)
                break;
            continue;
        }
        unsigned lo = s >> 8 & 0xff, hi = s >> 16 & 0xff;
        if (p[i] < lo || p[i] > hi) {
            s = UTF8_BAD;
            break;
        }
        i++;
        s = (s & 0xff) - 1 ? pack((s & 0xff) - 1, 0x80, 0xbf) : 0;
    }
    *state = s;
    if (s == UTF8_BAD)
        return UTF8_INVALID;
    return s ? UTF8_PARTIAL : UTF8_OK;
}

int utf8_valid(const uint8_t *p, size_t len)
{
    utf8_state s = 0;
    return utf8_feed(&s, p, len) == UTF8_OK;
}
