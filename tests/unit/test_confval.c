/*
 * test_confval.c - unit tests for the configuration value parsers
 * (src/confval.c).
 *
 * Build: gcc -Wall -Wextra -Isrc -Iinclude tests/unit/test_confval.c \
 *            src/confval.c -lcmocka -o /tmp/test_confval && /tmp/test_confval
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>

#include "confval.h"
#include "guard.h"

#define SENTINEL 0xdeadbeefcafef00dull

/* Each parser gets its string placed just before a guard page, NUL
 * included, so reading past the terminator faults. */
static struct guard G;

static const char *placed(const char *s)
{
    if (!G.base)
        guard_init(&G, 4096);
    return (const char *)guard_place(&G, s, strlen(s) + 1);
}

static int size_of(const char *s, uint64_t *out)
{
    *out = SENTINEL;
    return confval_size(placed(s), out);
}

static int duration_of(const char *s, uint64_t *out)
{
    *out = SENTINEL;
    return confval_duration(placed(s), out);
}

static void assert_size(const char *s, uint64_t want)
{
    uint64_t v;
    int rc = size_of(s, &v);
    if (rc != 0)
        fail_msg("confval_size(\"%s\") = %d, want 0", s, rc);
    assert_int_equal(v, want);
}

static void assert_size_bad(const char *s)
{
    uint64_t v;
    int rc = size_of(s, &v);
    if (rc >= 0)
        fail_msg("confval_size(\"%s\") = %d, want < 0", s, rc);
    assert_int_equal(v, SENTINEL);   /* untouched on failure */
}

static void assert_duration(const char *s, uint64_t want_ms)
{
    uint64_t v;
    int rc = duration_of(s, &v);
    if (rc != 0)
        fail_msg("confval_duration(\"%s\") = %d, want 0", s, rc);
    assert_int_equal(v, want_ms);
}

static void assert_duration_bad(const char *s)
{
    uint64_t v;
    int rc = duration_of(s, &v);
    if (rc >= 0)
        fail_msg("confval_duration(\"%s\") = %d, want < 0", s, rc);
    assert_int_equal(v, SENTINEL);
}

/* ---- sizes ------------------------------------------------------------- */

static void test_size_accepts_plain_bytes(void **state)
{
    (void)state;
    assert_size("512", 512);
    assert_size("0", 0);
    assert_size("007", 7);
    assert_size("16B", 16);
    assert_size("16b", 16);
    assert_size("18446744073709551615", UINT64_MAX);
}

static void test_size_accepts_binary_suffixes(void **state)
{
    (void)state;
    assert_size("8K", 8192);
    assert_size("8k", 8192);
    assert_size("16M", 16ull << 20);
    assert_size("16m", 16ull << 20);
    assert_size("1G", 1ull << 30);
    assert_size("1g", 1ull << 30);
    assert_size("16MiB", 16ull << 20);
    assert_size("16MB", 16ull << 20);
    assert_size("4KiB", 4096);
    assert_size("4KB", 4096);
    assert_size("2GiB", 2ull << 30);
    assert_size("0K", 0);
    assert_size("17179869183G", UINT64_MAX - (1ull << 30) + 1);
}

static void test_size_rejects_junk(void **state)
{
    (void)state;
    const char *bad[] = { "", "-1", "16X", "1.5M", "16M junk", " 16M",
                          "16 M", "16M ", "M", "K", "+16", "16MiBB", "16iB",
                          "16BB", "0x10", "16T", "1e3", "16MBi", "16Bi" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_size_bad(bad[i]);
}

static void test_size_rejects_dangling_i_suffix(void **state)
{
    (void)state;
    /* The header allows an optional trailing "B" or "iB"; a lone "i" is
     * neither and is junk. */
    assert_size_bad("16Mi");
    assert_size_bad("8Ki");
}

static void test_size_rejects_overflow(void **state)
{
    (void)state;
    uint64_t v;
    assert_size_bad("99999999999999999999");
    assert_size_bad("18446744073709551616");
    assert_size_bad("17179869184G");      /* 2^34 GiB = 2^64 */
    assert_size_bad("18014398509481984K");  /* 2^54 KiB = 2^64 */
    assert_size_bad("99999999999999999999999999999999999999M");
    assert_int_equal(size_of("99999999999999999999", &v), -ERANGE);
    assert_int_equal(size_of("17179869184G", &v), -ERANGE);
    assert_int_equal(size_of("16X", &v), -EINVAL);
}

/* ---- durations --------------------------------------------------------- */

static void test_duration_accepts_units(void **state)
{
    (void)state;
    assert_duration("10s", 10000);
    assert_duration("2m", 120000);
    assert_duration("1h", 3600000);
    assert_duration("500ms", 500);
    assert_duration("1d", 86400000);
    assert_duration("0ms", 0);
    assert_duration("0s", 0);
    assert_duration("213503982334d", 213503982334ull * 86400000ull);
}

static void test_duration_bare_number_is_seconds(void **state)
{
    (void)state;
    assert_duration("30", 30000);
    assert_duration("1", 1000);
    assert_duration("0", 0);
}

static void test_duration_rejects_junk(void **state)
{
    (void)state;
    const char *bad[] = { "10 s", "s", "10x", "", "-5s", " 10s", "10s ",
                          "10sec", "10ss", "10ms5", "1.5s", "ms", "10mss",
                          "10hm", "+10s", "10 " };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_duration_bad(bad[i]);
}

static void test_duration_rejects_overflow(void **state)
{
    (void)state;
    assert_duration_bad("99999999999999999999");
    assert_duration_bad("99999999999999999999ms");
    assert_duration_bad("18446744073709551615");     /* x 1000 */
    assert_duration_bad("18446744073709552s");
    assert_duration_bad("213503982335d");
    assert_duration_bad("5124095576030432h");
    assert_duration("18446744073709551615ms", UINT64_MAX);
}

/* ---- unsigned integers ------------------------------------------------- */

static int uint_of(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    *out = SENTINEL;
    return confval_uint(placed(s), min, max, out);
}

static void test_uint_accepts_values_in_range(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(uint_of("0", 0, 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(uint_of("10", 0, 10, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(uint_of("6", 6, 6, &v), 0);
    assert_int_equal(v, 6);
    assert_int_equal(uint_of("0042", 1, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(uint_of("18446744073709551615", 0, UINT64_MAX, &v), 0);
    assert_int_equal(v, UINT64_MAX);
}

static void test_uint_rejects_values_out_of_range(void **state)
{
    (void)state;
    uint64_t v;
    assert_true(uint_of("11", 0, 10, &v) < 0);
    assert_int_equal(v, SENTINEL);
    assert_true(uint_of("5", 6, 10, &v) < 0);
    assert_int_equal(v, SENTINEL);
    assert_true(uint_of("0", 1, 65535, &v) < 0);
    assert_true(uint_of("65536", 1, 65535, &v) < 0);
    assert_true(uint_of("18446744073709551616", 0, UINT64_MAX, &v) < 0);
    assert_int_equal(v, SENTINEL);
}

static void test_uint_rejects_junk(void **state)
{
    (void)state;
    const char *bad[] = { "", "-1", "+1", " 1", "1 ", "1x", "0x10", "1.0",
                          "1e3", "one" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v;
        if (uint_of(bad[i], 0, UINT64_MAX, &v) >= 0)
            fail_msg("confval_uint(\"%s\") accepted", bad[i]);
        assert_int_equal(v, SENTINEL);
    }
}

/* ---- booleans ---------------------------------------------------------- */

static void test_bool_accepts_all_spellings(void **state)
{
    (void)state;
    const char *yes[] = { "on", "yes", "true", "1", "ON", "Yes", "TRUE",
                          "tRuE" };
    const char *no[] = { "off", "no", "false", "0", "OFF", "No", "FALSE" };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        bool b = false;
        assert_int_equal(confval_bool(placed(yes[i]), &b), 0);
        assert_true(b);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        bool b = true;
        assert_int_equal(confval_bool(placed(no[i]), &b), 0);
        assert_false(b);
    }
}

static void test_bool_rejects_other_words(void **state)
{
    (void)state;
    const char *bad[] = { "", "2", "onn", "of", "y", "n", "enabled",
                          " on", "on ", "yes!", "01", "truefalse" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool b = true;
        if (confval_bool(placed(bad[i]), &b) >= 0)
            fail_msg("confval_bool(\"%s\") accepted", bad[i]);
        assert_true(b);
        b = false;
        assert_true(confval_bool(placed(bad[i]), &b) < 0);
        assert_false(b);
    }
}

/* ---- listen addresses -------------------------------------------------- */

static void test_listen_accepts_ipv4(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    memset(&ss, 0xaa, sizeof ss);
    assert_int_equal(confval_listen(placed("127.0.0.1:8080"), &ss, &len), 0);
    const struct sockaddr_in *a4 = (const struct sockaddr_in *)&ss;
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(a4->sin_family, AF_INET);
    assert_int_equal(ntohs(a4->sin_port), 8080);
    assert_int_equal(ntohl(a4->sin_addr.s_addr), 0x7f000001);

    assert_int_equal(confval_listen(placed("0.0.0.0:8080"), &ss, &len), 0);
    assert_int_equal(a4->sin_addr.s_addr, htonl(INADDR_ANY));
    assert_int_equal(confval_listen(placed("10.1.2.3:65535"), &ss, &len), 0);
    assert_int_equal(ntohs(a4->sin_port), 65535);
    assert_int_equal(ntohl(a4->sin_addr.s_addr), 0x0a010203);
    assert_int_equal(confval_listen(placed("1.2.3.4:1"), &ss, &len), 0);
    assert_int_equal(ntohs(a4->sin_port), 1);
}

static void test_listen_accepts_wildcard(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    memset(&ss, 0xaa, sizeof ss);
    assert_int_equal(confval_listen(placed("*:80"), &ss, &len), 0);
    const struct sockaddr_in *a4 = (const struct sockaddr_in *)&ss;
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(a4->sin_family, AF_INET);
    assert_int_equal(ntohs(a4->sin_port), 80);
    assert_int_equal(a4->sin_addr.s_addr, htonl(INADDR_ANY));
}

static void test_listen_accepts_bracketed_ipv6(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    memset(&ss, 0xaa, sizeof ss);
    assert_int_equal(confval_listen(placed("[::1]:8080"), &ss, &len), 0);
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&ss;
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(a6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(a6->sin6_port), 8080);
    assert_memory_equal(&a6->sin6_addr, &in6addr_loopback,
                        sizeof in6addr_loopback);
    assert_int_equal(a6->sin6_flowinfo, 0);
    assert_int_equal(a6->sin6_scope_id, 0);

    memset(&ss, 0xaa, sizeof ss);
    assert_int_equal(confval_listen(placed("[::]:443"), &ss, &len), 0);
    assert_int_equal(a6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(a6->sin6_port), 443);
    assert_memory_equal(&a6->sin6_addr, &in6addr_any, sizeof in6addr_any);
    assert_int_equal(a6->sin6_scope_id, 0);

    assert_int_equal(confval_listen(placed("[2001:db8::7]:9000"), &ss, &len),
                     0);
    struct in6_addr want;
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::7", &want), 1);
    assert_memory_equal(&a6->sin6_addr, &want, sizeof want);
    assert_int_equal(confval_listen(placed("[::ffff:1.2.3.4]:80"), &ss, &len),
                     0);
    assert_int_equal(a6->sin6_family, AF_INET6);
}

static void test_listen_rejects_bad_addresses(void **state)
{
    (void)state;
    const char *bad[] = {
        "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "localhost:80",
        "[::1:80", "1.2.3.4:", "1.2.3.4:80x", "[::1]", "[::1]:",
        "[::1]:0", "[::1]:65536", "::1:80", "[]:80", ":80", "*:", "*:0",
        "256.1.1.1:80", "1.2.3:80", "[1.2.3.4]:80", "1.2.3.4:-1",
        "1.2.3.4:+80", "1.2.3.4: 80", " 1.2.3.4:80", "[::1] :80",
        "[::1]x:80", "x[::1]:80", "**:80", "", ":", "1.2.3.4:99999999999999999999",
        "[fe80::1%lo]:80",
        ("1111111111111111111111111111111111111111111111111111111111111111"
         "1111111:80"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct sockaddr_storage ss;
        socklen_t len = 77;
        if (confval_listen(placed(bad[i]), &ss, &len) >= 0)
            fail_msg("confval_listen(\"%s\") accepted", bad[i]);
        assert_int_equal(len, 77);
    }
}

static void test_listen_leaves_address_untouched_on_failure(void **state)
{
    (void)state;
    /* confval.h: "each returns 0 or a negative errno-style code and writes
     * its result only on success". */
    const char *bad[] = { "localhost:80", "[::1:80", "256.1.1.1:80",
                          "[nope]:80", "127.0.0.1:0" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct sockaddr_storage ss, before;
        socklen_t len = 77;
        memset(&ss, 0xaa, sizeof ss);
        memcpy(&before, &ss, sizeof ss);
        assert_true(confval_listen(placed(bad[i]), &ss, &len) < 0);
        assert_int_equal(len, 77);
        if (memcmp(&ss, &before, sizeof ss) != 0)
            fail_msg("confval_listen(\"%s\") failed but wrote *addr", bad[i]);
    }
}

static void test_listen_entry_reads_the_tls_word(void **state)
{
    (void)state;
    struct sockaddr_storage ss, plain;
    socklen_t len = 0, plain_len = 0;
    bool tls = true;

    assert_int_equal(confval_listen(placed("127.0.0.1:8443"), &plain,
                                    &plain_len), 0);
    assert_int_equal(confval_listen_entry(placed("127.0.0.1:8443"), &ss,
                                          &len, &tls), 0);
    assert_false(tls);
    assert_int_equal(len, plain_len);
    assert_memory_equal(&ss, &plain, len);

    const char *with_tls[] = { "127.0.0.1:8443 tls", "127.0.0.1:8443\ttls",
                               "127.0.0.1:8443   tls", "127.0.0.1:8443 tls ",
                               "127.0.0.1:8443 tls tls" };
    for (size_t i = 0; i < sizeof with_tls / sizeof with_tls[0]; i++) {
        tls = false;
        memset(&ss, 0xaa, sizeof ss);
        assert_int_equal(confval_listen_entry(placed(with_tls[i]), &ss, &len,
                                              &tls), 0);
        assert_true(tls);
        assert_memory_equal(&ss, &plain, len);
    }
    assert_int_equal(confval_listen_entry(placed("[::1]:443 tls"), &ss, &len,
                                          &tls), 0);
    assert_true(tls);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
}

static void test_listen_entry_rejects_unknown_words_and_bad_addresses(
    void **state)
{
    (void)state;
    struct {
        const char *s;
        int rc;
    } bad[] = {
        { "127.0.0.1:8443 ssl", -ENOTSUP }, { "127.0.0.1:8443 TLS", -ENOTSUP },
        { "127.0.0.1:8443 tlsx", -ENOTSUP }, { "127.0.0.1:8443 tls x", -ENOTSUP },
        { "127.0.0.1:8443 tl", -ENOTSUP }, { "127.0.0.1:8443,tls", -EINVAL },
        { "tls 127.0.0.1:8443", -EINVAL }, { " 127.0.0.1:8443 tls", -EINVAL },
        { "localhost:443 tls", -EINVAL }, { "", -EINVAL }, { "tls", -EINVAL },
        { "[::1]:443tls", -EINVAL },
        { "[1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd]"
          ":443 tls", -EINVAL },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct sockaddr_storage ss, before;
        socklen_t len = 77;
        bool tls = true;
        memset(&ss, 0xaa, sizeof ss);
        memcpy(&before, &ss, sizeof ss);
        int rc = confval_listen_entry(placed(bad[i].s), &ss, &len, &tls);
        if (rc != bad[i].rc)
            fail_msg("confval_listen_entry(\"%s\") = %d, want %d", bad[i].s,
                     rc, bad[i].rc);
        assert_int_equal(len, 77);
        assert_true(tls);
        assert_memory_equal(&ss, &before, sizeof ss);
    }
}

static int teardown(void **state)
{
    (void)state;
    if (G.base)
        guard_free(&G);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_accepts_plain_bytes),
        cmocka_unit_test(test_size_accepts_binary_suffixes),
        cmocka_unit_test(test_size_rejects_junk),
        cmocka_unit_test(test_size_rejects_dangling_i_suffix),
        cmocka_unit_test(test_size_rejects_overflow),
        cmocka_unit_test(test_duration_accepts_units),
        cmocka_unit_test(test_duration_bare_number_is_seconds),
        cmocka_unit_test(test_duration_rejects_junk),
        cmocka_unit_test(test_duration_rejects_overflow),
        cmocka_unit_test(test_uint_accepts_values_in_range),
        cmocka_unit_test(test_uint_rejects_values_out_of_range),
        cmocka_unit_test(test_uint_rejects_junk),
        cmocka_unit_test(test_bool_accepts_all_spellings),
        cmocka_unit_test(test_bool_rejects_other_words),
        cmocka_unit_test(test_listen_accepts_ipv4),
        cmocka_unit_test(test_listen_accepts_wildcard),
        cmocka_unit_test(test_listen_accepts_bracketed_ipv6),
        cmocka_unit_test(test_listen_rejects_bad_addresses),
        cmocka_unit_test(test_listen_leaves_address_untouched_on_failure),
        cmocka_unit_test(test_listen_entry_reads_the_tls_word),
        cmocka_unit_test(test_listen_entry_rejects_unknown_words_and_bad_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
