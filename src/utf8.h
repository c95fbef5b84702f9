/*
 * utf8.h - incremental UTF-8 validation (RFC 3629).
 *
 * The validator keeps one small state word between calls, so text can be
 * checked as it arrives, split anywhere, and fails at the first byte that
 * can never start a valid sequence (RFC 6455 section 8.1: fail fast).
 * It rejects overlong forms, surrogates (U+D800..DFFF) and code points
 * above U+10FFFF.  No I/O, no allocation.
 */
#ifndef SNOWD_UTF8_H
#define SNOWD_UTF8_H

#include <stddef.h>
#include <stdint.h>

enum utf8_rc {
    UTF8_OK,         /* everything so far is valid and complete */
    UTF8_PARTIAL,    /* valid so far, but ends inside a sequence */
    UTF8_INVALID     /* can never be valid, whatever follows */
};

/* Validation state; zero means "between characters". */
typedef uint32_t utf8_state;

/* Feeds len bytes; *state carries over to the next call.  Once
 * UTF8_INVALID is returned the state stays invalid. */
enum utf8_rc utf8_feed(utf8_state *state, const uint8_t *p, size_t len);

/* Validates a complete string in one call. */
int utf8_valid(const uint8_t *p, size_t len);

#endif
