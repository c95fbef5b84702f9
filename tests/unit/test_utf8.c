/*
 * test_utf8.c - unit tests for the incremental UTF-8 validator (src/utf8.c).
 *
 * Build: gcc -Wall -Wextra -Isrc -Iinclude tests/unit/test_utf8.c \
 *            src/utf8.c -lcmocka -o /tmp/test_utf8 && /tmp/test_utf8
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"
#include "utf8.h"

/* Feeds the whole string in one call (from a guard-page-backed copy). */
static enum utf8_rc feed_whole(const void *p, size_t len)
{
    struct guard g;
    guard_init(&g, len);
    const uint8_t *b = guard_place(&g, p, len);
    utf8_state s = 0;
    enum utf8_rc rc = utf8_feed(&s, b, len);
    guard_free(&g);
    return rc;
}

/* Feeds one byte per call, each byte right before a guard page. */
static enum utf8_rc feed_bytewise(const void *p, size_t len)
{
    struct guard g;
    guard_init(&g, 1);
    utf8_state s = 0;
    enum utf8_rc rc = UTF8_OK;
    for (size_t i = 0; i < len; i++) {
        const uint8_t *b = guard_place(&g, (const uint8_t *)p + i, 1);
        rc = utf8_feed(&s, b, 1);
    }
    guard_free(&g);
    return rc;
}

#define S(lit) (const uint8_t *)(lit), (sizeof(lit) - 1)

static void assert_verdict(const uint8_t *p, size_t len, enum utf8_rc want)
{
    assert_int_equal(feed_whole(p, len), want);
    assert_int_equal(feed_bytewise(p, len), want);
    assert_int_equal(utf8_valid(p, len), want == UTF8_OK);
}

/* ---- valid input ------------------------------------------------------- */

static void test_utf8_accepts_empty(void **state)
{
    (void)state;
    utf8_state s = 0;
    assert_int_equal(utf8_feed(&s, (const uint8_t *)"", 0), UTF8_OK);
    assert_int_equal(s, 0);
    assert_true(utf8_valid((const uint8_t *)"", 0));
}

static void test_utf8_accepts_ascii(void **state)
{
    (void)state;
    assert_verdict(S("Hello, world"), UTF8_OK);
    /* Long ASCII runs exercise the eight-bytes-at-a-time path at every
     * length and alignment. */
    uint8_t buf[80];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(0x20 + i % 0x5f);
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; off + len <= sizeof buf; len++)
            assert_int_equal(feed_whole(buf + off, len), UTF8_OK);
    uint8_t all[128];
    for (size_t i = 0; i < 128; i++)
        all[i] = (uint8_t)i;   /* NUL and DEL are valid UTF-8 */
    assert_verdict(all, sizeof all, UTF8_OK);
}

static void test_utf8_accepts_two_byte_sequences(void **state)
{
    (void)state;
    assert_verdict(S("\xc2\x80"), UTF8_OK);       /* U+0080 */
    assert_verdict(S("\xc3\xa9"), UTF8_OK);       /* é */
    assert_verdict(S("\xdf\xbf"), UTF8_OK);       /* U+07FF */
}

static void test_utf8_accepts_three_byte_sequences(void **state)
{
    (void)state;
    assert_verdict(S("\xe0\xa0\x80"), UTF8_OK);   /* U+0800 */
    assert_verdict(S("\xe2\x82\xac"), UTF8_OK);   /* € */
    assert_verdict(S("\xed\x9f\xbf"), UTF8_OK);   /* U+D7FF */
    assert_verdict(S("\xee\x80\x80"), UTF8_OK);   /* U+E000 */
    assert_verdict(S("\xef\xbf\xbd"), UTF8_OK);   /* U+FFFD */
    assert_verdict(S("\xef\xbf\xbf"), UTF8_OK);   /* U+FFFF */
}

static void test_utf8_accepts_four_byte_sequences(void **state)
{
    (void)state;
    assert_verdict(S("\xf0\x90\x80\x80"), UTF8_OK); /* U+10000 */
    assert_verdict(S("\xf0\x9f\x98\x80"), UTF8_OK); /* 😀 */
    assert_verdict(S("\xf3\xbf\xbf\xbf"), UTF8_OK); /* U+FFFFF */
    assert_verdict(S("\xf4\x8f\xbf\xbf"), UTF8_OK); /* U+10FFFF */
}

static void test_utf8_accepts_kosme_autobahn_vector(void **state)
{
    (void)state;
    /* Autobahn 6.2: "κόσμε" */
    assert_verdict(S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), UTF8_OK);
    /* Autobahn 6.2 prefix "Hello-µ@ßöäüàá-UTF-8!!" */
    assert_verdict(S("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0"
                     "\xc3\xa1-UTF-8!!"), UTF8_OK);
}

static void test_utf8_rejects_kosme_with_bad_bytes(void **state)
{
    (void)state;
    /* Autobahn 6.3: "κόσμε" followed by an encoded surrogate, then edited. */
    assert_verdict(S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
                     "edited"), UTF8_INVALID);
    /* Autobahn 6.4.1-style: κόσμε + F4 90 (past U+10FFFF) + more */
    assert_verdict(S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80"
                     "\x80\x65\x64\x69\x74\x65\x64"), UTF8_INVALID);
}

/* ---- invalid classes --------------------------------------------------- */

static void test_utf8_rejects_overlong_c0_c1(void **state)
{
    (void)state;
    assert_verdict(S("\xc0\x80"), UTF8_INVALID);
    assert_verdict(S("\xc0\xaf"), UTF8_INVALID);
    assert_verdict(S("\xc1\xbf"), UTF8_INVALID);
    /* Rejected at the lead byte: nothing can make it valid. */
    assert_int_equal(feed_whole(S("\xc0")), UTF8_INVALID);
    assert_int_equal(feed_whole(S("\xc1")), UTF8_INVALID);
}

static void test_utf8_rejects_overlong_three_byte(void **state)
{
    (void)state;
    for (unsigned b = 0x80; b <= 0x9f; b++) {
        uint8_t s[3] = { 0xe0, (uint8_t)b, 0x80 };
        assert_verdict(s, 3, UTF8_INVALID);
        assert_int_equal(feed_whole(s, 2), UTF8_INVALID);
    }
    uint8_t ok[3] = { 0xe0, 0xa0, 0x80 };
    assert_verdict(ok, 3, UTF8_OK);
}

static void test_utf8_rejects_overlong_four_byte(void **state)
{
    (void)state;
    for (unsigned b = 0x80; b <= 0x8f; b++) {
        uint8_t s[4] = { 0xf0, (uint8_t)b, 0x80, 0x80 };
        assert_verdict(s, 4, UTF8_INVALID);
        assert_int_equal(feed_whole(s, 2), UTF8_INVALID);
    }
}

static void test_utf8_rejects_surrogates(void **state)
{
    (void)state;
    for (unsigned b = 0xa0; b <= 0xbf; b++) {
        uint8_t s[3] = { 0xed, (uint8_t)b, 0x80 };
        assert_verdict(s, 3, UTF8_INVALID);
        assert_int_equal(feed_whole(s, 2), UTF8_INVALID);
    }
    /* A surrogate pair encoded as two 3-byte sequences (CESU-8). */
    assert_verdict(S("\xed\xa0\x80\xed\xb0\x80"), UTF8_INVALID);
}

static void test_utf8_rejects_above_u10ffff(void **state)
{
    (void)state;
    for (unsigned b = 0x90; b <= 0xbf; b++) {
        uint8_t s[4] = { 0xf4, (uint8_t)b, 0x80, 0x80 };
        assert_verdict(s, 4, UTF8_INVALID);
        assert_int_equal(feed_whole(s, 2), UTF8_INVALID);
    }
}

static void test_utf8_rejects_f5_to_ff(void **state)
{
    (void)state;
    for (unsigned b = 0xf5; b <= 0xff; b++) {
        uint8_t s[4] = { (uint8_t)b, 0x80, 0x80, 0x80 };
        assert_verdict(s, 4, UTF8_INVALID);
        assert_int_equal(feed_whole(s, 1), UTF8_INVALID);
    }
}

static void test_utf8_rejects_stray_continuation(void **state)
{
    (void)state;
    for (unsigned b = 0x80; b <= 0xbf; b++) {
        uint8_t s[1] = { (uint8_t)b };
        assert_verdict(s, 1, UTF8_INVALID);
        uint8_t t[3] = { 'a', (uint8_t)b, 'a' };
        assert_verdict(t, 3, UTF8_INVALID);
    }
    /* One continuation too many after a complete character. */
    assert_verdict(S("\xc3\xa9\xa9"), UTF8_INVALID);
}

static void test_utf8_rejects_non_continuation_inside_sequence(void **state)
{
    (void)state;
    assert_verdict(S("\xc3" "a"), UTF8_INVALID);
    assert_verdict(S("\xe2\x82" "a"), UTF8_INVALID);
    assert_verdict(S("\xf0\x9f\x98" "a"), UTF8_INVALID);
    assert_verdict(S("\xe2\xc3\xa9"), UTF8_INVALID);   /* new lead too soon */
    assert_verdict(S("\xe2\x82\xc0"), UTF8_INVALID);
}

static void test_utf8_reports_partial_for_truncated_sequence(void **state)
{
    (void)state;
    assert_verdict(S("\xc3"), UTF8_PARTIAL);
    assert_verdict(S("\xe2"), UTF8_PARTIAL);
    assert_verdict(S("\xe2\x82"), UTF8_PARTIAL);
    assert_verdict(S("\xf0"), UTF8_PARTIAL);
    assert_verdict(S("\xf0\x9f"), UTF8_PARTIAL);
    assert_verdict(S("\xf0\x9f\x98"), UTF8_PARTIAL);
    assert_verdict(S("abc\xf4\x8f\xbf"), UTF8_PARTIAL);
    /* Completing a partial state makes it OK. */
    utf8_state s = 0;
    assert_int_equal(utf8_feed(&s, (const uint8_t *)"\xf0\x9f", 2),
                     UTF8_PARTIAL);
    assert_int_equal(utf8_feed(&s, (const uint8_t *)"\x98", 1), UTF8_PARTIAL);
    assert_int_equal(utf8_feed(&s, (const uint8_t *)"\x80", 1), UTF8_OK);
    assert_int_equal(s, 0);
}

static void test_utf8_empty_feed_keeps_verdict(void **state)
{
    (void)state;
    utf8_state s = 0;
    assert_int_equal(utf8_feed(&s, (const uint8_t *)"\xe2", 1), UTF8_PARTIAL);
    assert_int_equal(utf8_feed(&s, (const uint8_t *)"", 0), UTF8_PARTIAL);
    assert_int_equal(utf8_feed(&s, (const uint8_t *)"\x82\xac", 2), UTF8_OK);
    assert_int_equal(utf8_feed(&s, (const uint8_t *)"", 0), UTF8_OK);
}

/* ---- incremental feeding ----------------------------------------------- */

static const struct {
    const char *s;
    size_t len;
} samples[] = {
#define V(lit) { lit, sizeof(lit) - 1 }
    V("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
    V("a\xc3\xa9z\xe2\x82\xac\xf0\x9f\x98\x80" "0123456789abcdef\xf4\x8f\xbf\xbf"),
    V("0123456789\xe0\xa0\x80" "0123456789abcdefghij"),
    V("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited"),
    V("abcdefghijklmnop\xf4\x90\x80\x80"),
    V("abcdefgh\xc0\xaf"),
    V("abc\xe2\x82"),
    V("abcdefghijklmnopqrstuvwxyz\xf0\x9f"),
    V("\x80"),
    V("\xf5"),
    V("\xe0\x9f\x80"),
    V("\xed\x9f\xbf\xed\xa0\x80"),
#undef V
};

static void test_utf8_split_at_every_position_matches_whole(void **state)
{
    (void)state;
    struct guard g;
    guard_init(&g, 256);
    for (size_t k = 0; k < sizeof samples / sizeof samples[0]; k++) {
        const uint8_t *p = (const uint8_t *)samples[k].s;
        size_t len = samples[k].len;
        enum utf8_rc whole = feed_whole(p, len);
        for (size_t cut = 0; cut <= len; cut++) {
            utf8_state s = 0;
            const uint8_t *a = guard_place(&g, p, cut);
            enum utf8_rc r1 = utf8_feed(&s, a, cut);
            const uint8_t *b = guard_place(&g, p + cut, len - cut);
            enum utf8_rc r2 = utf8_feed(&s, b, len - cut);
            assert_int_equal(r2, whole);
            /* Once invalid, always invalid. */
            if (r1 == UTF8_INVALID)
                assert_int_equal(r2, UTF8_INVALID);
        }
        assert_int_equal(feed_bytewise(p, len), whole);
    }
    guard_free(&g);
}

static void test_utf8_split_into_three_pieces_matches_whole(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof samples / sizeof samples[0]; k++) {
        const uint8_t *p = (const uint8_t *)samples[k].s;
        size_t len = samples[k].len;
        enum utf8_rc whole = feed_whole(p, len);
        for (size_t c1 = 0; c1 <= len; c1++)
            for (size_t c2 = c1; c2 <= len; c2++) {
                utf8_state s = 0;
                utf8_feed(&s, p, c1);
                utf8_feed(&s, p + c1, c2 - c1);
                assert_int_equal(utf8_feed(&s, p + c2, len - c2), whole);
            }
    }
}

/* ---- fail fast --------------------------------------------------------- */

/* The first prefix length at which the verdict is INVALID. */
static size_t first_invalid_prefix(const uint8_t *p, size_t len)
{
    for (size_t n = 0; n <= len; n++)
        if (feed_whole(p, n) == UTF8_INVALID)
            return n;
    return (size_t)-1;
}

static void test_utf8_fails_fast_at_first_impossible_byte(void **state)
{
    (void)state;
    /* Invalid as soon as the byte at index (n - 1) is seen, even though
     * plenty of valid-looking bytes follow. */
    struct {
        const char *s;
        size_t len, at;
    } cases[] = {
        { "ab\xc0\x80xyzxyzxyz", 13, 3 },          /* C0 lead */
        { "ab\xe0\x80\x80xyzxyz", 11, 4 },         /* E0 80: overlong */
        { "ab\xed\xa0\x80xyzxyz", 11, 4 },         /* ED A0: surrogate */
        { "ab\xf0\x8f\x80\x80xyz", 9, 4 },         /* F0 8F: overlong */
        { "ab\xf4\x90\x80\x80xyz", 9, 4 },         /* F4 90: > U+10FFFF */
        { "ab\xf8\x88\x80\x80\x80", 7, 3 },        /* F8 */
        { "ab\x80xyzxyzxyzxyz", 15, 3 },           /* stray continuation */
        { "abcdefgh\xc3" "bcdefghijk", 19, 10 },   /* missing continuation */
        { "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
          14, 13 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint8_t *p = (const uint8_t *)cases[i].s;
        assert_int_equal(first_invalid_prefix(p, cases[i].len), cases[i].at);
        /* And fed one byte at a time, INVALID comes back at that byte. */
        utf8_state s = 0;
        for (size_t k = 0; k < cases[i].len; k++) {
            enum utf8_rc rc = utf8_feed(&s, p + k, 1);
            if (k + 1 < cases[i].at)
                assert_int_not_equal(rc, UTF8_INVALID);
            else
                assert_int_equal(rc, UTF8_INVALID);
        }
    }
}

static void test_utf8_invalid_state_is_sticky(void **state)
{
    (void)state;
    utf8_state s = 0;
    assert_int_equal(utf8_feed(&s, (const uint8_t *)"\xff", 1), UTF8_INVALID);
    assert_int_equal(utf8_feed(&s, (const uint8_t *)"abc", 3), UTF8_INVALID);
    assert_int_equal(utf8_feed(&s, (const uint8_t *)"", 0), UTF8_INVALID);
    assert_int_equal(utf8_feed(&s, (const uint8_t *)"abcdefghijklmnop", 16),
                     UTF8_INVALID);
}

/* Exhaustive check of every 1- and 2-byte string and every 3-byte string
 * with a lead byte >= 0xE0 against a straightforward reference decoder. */
static enum utf8_rc reference(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t b = p[i];
        unsigned need;
        uint32_t cp, min;
        if (b < 0x80) { i++; continue; }
        else if (b >= 0xc2 && b <= 0xdf) { need = 1; cp = b & 0x1f; min = 0x80; }
        else if (b >= 0xe0 && b <= 0xef) { need = 2; cp = b & 0x0f; min = 0x800; }
        else if (b >= 0xf0 && b <= 0xf4) { need = 3; cp = b & 0x07; min = 0x10000; }
        else return UTF8_INVALID;
        i++;
        for (unsigned k = 0; k < need; k++, i++) {
            if (i == len) {
                /* Would be PARTIAL, unless the prefix already cannot
                 * become valid: check the partial value's range. */
                uint32_t lo = cp, hi = cp;
                for (unsigned r = k; r < need; r++) {
                    lo = lo << 6;
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

static void test_utf8_matches_reference_exhaustively_for_short_strings(
    void **state)
{
    (void)state;
    uint8_t s[3];
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        utf8_state st = 0;
        assert_int_equal(utf8_feed(&st, s, 1), reference(s, 1));
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            st = 0;
            assert_int_equal(utf8_feed(&st, s, 2), reference(s, 2));
            if (a < 0xe0 || a > 0xf4)
                continue;
            for (unsigned c = 0; c < 256; c++) {
                s[2] = (uint8_t)c;
                st = 0;
                assert_int_equal(utf8_feed(&st, s, 3), reference(s, 3));
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_accepts_empty),
        cmocka_unit_test(test_utf8_accepts_ascii),
        cmocka_unit_test(test_utf8_accepts_two_byte_sequences),
        cmocka_unit_test(test_utf8_accepts_three_byte_sequences),
        cmocka_unit_test(test_utf8_accepts_four_byte_sequences),
        cmocka_unit_test(test_utf8_accepts_kosme_autobahn_vector),
        cmocka_unit_test(test_utf8_rejects_kosme_with_bad_bytes),
        cmocka_unit_test(test_utf8_rejects_overlong_c0_c1),
        cmocka_unit_test(test_utf8_rejects_overlong_three_byte),
        cmocka_unit_test(test_utf8_rejects_overlong_four_byte),
        cmocka_unit_test(test_utf8_rejects_surrogates),
        cmocka_unit_test(test_utf8_rejects_above_u10ffff),
        cmocka_unit_test(test_utf8_rejects_f5_to_ff),
        cmocka_unit_test(test_utf8_rejects_stray_continuation),
        cmocka_unit_test(test_utf8_rejects_non_continuation_inside_sequence),
        cmocka_unit_test(test_utf8_reports_partial_for_truncated_sequence),
        cmocka_unit_test(test_utf8_empty_feed_keeps_verdict),
        cmocka_unit_test(test_utf8_split_at_every_position_matches_whole),
        cmocka_unit_test(test_utf8_split_into_three_pieces_matches_whole),
        cmocka_unit_test(test_utf8_fails_fast_at_first_impossible_byte),
        cmocka_unit_test(test_utf8_invalid_state_is_sticky),
        cmocka_unit_test(test_utf8_matches_reference_exhaustively_for_short_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
