/*
 * fuzz_utf8.c - libFuzzer target for src/utf8.c.
 *
 * Cross-checks, aborting on any mismatch:
 *  - utf8_valid(whole) agrees with utf8_feed fed in two pieces (split taken
 *    from the first input byte) and one byte at a time;
 *  - the verdict after every byte agrees with an independent reference
 *    decoder run on that prefix (fail fast: INVALID exactly from the first
 *    impossible byte on, PARTIAL when a valid prefix ends mid-sequence);
 *  - INVALID is sticky.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Iinclude \
 *       tests/fuzz/fuzz_utf8.c src/utf8.c -o /tmp/fuzz_utf8
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* A plain decoder, written from RFC 3629's table, with the prefix rule:
 * a truncated sequence is PARTIAL only if some continuation could still
 * complete it to a valid scalar value. */
static enum utf8_rc reference(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t b = p[i];
        unsigned need;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if (b >= 0xc2 && b <= 0xdf) {
            need = 1; cp = b & 0x1f; min = 0x80;
        } else if (b >= 0xe0 && b <= 0xef) {
            need = 2; cp = b & 0x0f; min = 0x800;
        } else if (b >= 0xf0 && b <= 0xf4) {
            need = 3; cp = b & 0x07; min = 0x10000;
        } else {
            return UTF8_INVALID;
        }
        i++;
        for (unsigned k = 0; k < need; k++, i++) {
            if (i == len) {
                uint32_t lo = cp, hi = cp;
                for (unsigned r = k; r < need; r++) {
                    lo <<= 6;
                    hi = hi << 6 | 0x3f;
                }
                if (hi < min || lo > 0x10ffff ||
                    (lo >= 0xd800 && hi <= 0xdfff))
                    return UTF8_INVALID;
                return UTF8_PARTIAL;
            }
            if ((p[i] & 0xc0) != 0x80)
                return UTF8_INVALID;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return UTF8_INVALID;
    }
    return UTF8_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t split = ((size_t)data[0] * size) >> 8;   /* 0 .. size-1 */
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    if (split > n)
        split = n;

    /* whole */
    utf8_state s = 0;
    enum utf8_rc whole = utf8_feed(&s, p, n);
    if ((whole == UTF8_OK) != (utf8_valid(p, n) != 0))
        abort();

    /* two pieces */
    s = 0;
    enum utf8_rc r1 = utf8_feed(&s, p, split);
    enum utf8_rc r2 = utf8_feed(&s, p + split, n - split);
    if (r2 != whole)
        abort();
    if (r1 == UTF8_INVALID && r2 != UTF8_INVALID)
        abort();

    /* one byte at a time, against the reference on each prefix */
    s = 0;
    enum utf8_rc prev = UTF8_OK;
    for (size_t i = 0; i < n; i++) {
        enum utf8_rc rc = utf8_feed(&s, p + i, 1);
        if (prev == UTF8_INVALID && rc != UTF8_INVALID)
            abort();
        if (n <= 512 && rc != reference(p, i + 1))
            abort();
        prev = rc;
    }
    if (n && prev != whole)
        abort();
    if (whole != reference(p, n))
        abort();

    /* A copy at a different alignment gives the same verdict (the ASCII
     * fast path reads words). */
    uint8_t *copy = malloc(n + 8);
    if (!copy)
        abort();
    for (size_t off = 1; off < 8; off += 3) {
        memcpy(copy + off, p, n);
        s = 0;
        if (utf8_feed(&s, copy + off, n) != whole)
            abort();
    }
    free(copy);
    return 0;
}
