/*
 * fuzz_confval.c - libFuzzer target for the configuration value parsers
 * (src/confval.c).
 *
 * Every parser runs on a NUL-terminated copy of the input.  Cross-checks,
 * aborting on any mismatch:
 *  - confval_uint agrees with a strtoull-based reference on strings of
 *    digits, and honours its range;
 *  - confval_size / confval_duration succeed only on a digits prefix
 *    followed by a unit, and their result equals digits x unit with no
 *    wrap-around; a bare number parses like confval_uint;
 *  - confval_bool agrees with a case-insensitive word list;
 *  - a parsed listen address has a consistent family and length, a port in
 *    1..65535, and formatting it back and parsing again gives the same
 *    socket address;
 *  - a listen entry parses to the address of its first word, and only
 *    when every other word is "tls".
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Iinclude \
 *       tests/fuzz/fuzz_confval.c src/confval.c -o /tmp/fuzz_confval
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "confval.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

/* Leading decimal digits of s: returns how many, and their value in *v
 * (with *overflow set when it does not fit in 64 bits). */
static size_t digits(const char *s, uint64_t *v, bool *overflow)
{
    size_t i = 0;
    unsigned __int128 acc = 0;
    *overflow = false;
    while (s[i] >= '0' && s[i] <= '9') {
        acc = acc * 10 + (unsigned)(s[i] - '0');
        if (acc > UINT64_MAX) {
            *overflow = true;
            acc = (unsigned __int128)UINT64_MAX + 1;  /* keep it saturated */
        }
        i++;
    }
    *v = (uint64_t)acc;
    return i;
}

static void check_uint(const char *s)
{
    uint64_t v = 0x1234, ref;
    bool ovf;
    size_t nd = digits(s, &ref, &ovf);
    bool ok_ref = nd > 0 && s[nd] == '\0' && !ovf;

    int rc = confval_uint(s, 0, UINT64_MAX, &v);
    CHECK(rc <= 0);
    CHECK((rc == 0) == ok_ref);
    if (rc == 0)
        CHECK(v == ref);
    else
        CHECK(v == 0x1234);

    /* a narrow range */
    uint64_t lo = 10, hi = 1000;
    v = 0x1234;
    rc = confval_uint(s, lo, hi, &v);
    CHECK((rc == 0) == (ok_ref && ref >= lo && ref <= hi));
    if (rc == 0)
        CHECK(v == ref);
    else
        CHECK(v == 0x1234);
}

static void check_size(const char *s)
{
    uint64_t v = 0x1234, ref;
    bool ovf;
    size_t nd = digits(s, &ref, &ovf);
    int rc = confval_size(s, &v);
    CHECK(rc <= 0);
    if (rc != 0) {
        CHECK(v == 0x1234);
        return;
    }
    CHECK(nd > 0 && !ovf);
    const char *u = s + nd;
    uint64_t mult = 1;
    switch (u[0]) {
    case 'k': case 'K': mult = 1ull << 10; break;
    case 'm': case 'M': mult = 1ull << 20; break;
    case 'g': case 'G': mult = 1ull << 30; break;
    default: break;
    }
    /* whatever follows is short: at most "iB" after the multiplier */
    CHECK(strlen(u) <= 3);
    for (const char *c = u; *c; c++)
        CHECK(strchr("kKmMgGiBb", *c) != NULL);
    CHECK((unsigned __int128)ref * mult <= UINT64_MAX);
    CHECK(v == ref * mult);
    if (*u == '\0') {
        uint64_t w;
        CHECK(confval_uint(s, 0, UINT64_MAX, &w) == 0 && w == v);
    }
}

static void check_duration(const char *s)
{
    uint64_t v = 0x1234, ref;
    bool ovf;
    size_t nd = digits(s, &ref, &ovf);
    int rc = confval_duration(s, &v);
    CHECK(rc <= 0);
    if (rc != 0) {
        CHECK(v == 0x1234);
        return;
    }
    CHECK(nd > 0 && !ovf);
    const char *u = s + nd;
    uint64_t mult;
    if (strcmp(u, "ms") == 0)
        mult = 1;
    else if (strcmp(u, "") == 0 || strcmp(u, "s") == 0)
        mult = 1000;
    else if (strcmp(u, "m") == 0)
        mult = 60000;
    else if (strcmp(u, "h") == 0)
        mult = 3600000;
    else if (strcmp(u, "d") == 0)
        mult = 86400000;
    else
        abort();    /* accepted an unknown unit */
    CHECK((unsigned __int128)ref * mult <= UINT64_MAX);
    CHECK(v == ref * mult);
}

static void check_bool(const char *s)
{
    static const char *yes[] = { "on", "yes", "true", "1" };
    static const char *no[] = { "off", "no", "false", "0" };
    int want = -1;
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            want = 1;
        if (strcasecmp(s, no[i]) == 0)
            want = 0;
    }
    bool b = true;
    int rc = confval_bool(s, &b);
    CHECK(rc <= 0);
    CHECK((rc == 0) == (want >= 0));
    if (rc == 0)
        CHECK(b == (want == 1));
    else
        CHECK(b == true);
}

static void check_listen(const char *s)
{
    struct sockaddr_storage ss;
    socklen_t len = 99;
    int rc = confval_listen(s, &ss, &len);
    CHECK(rc <= 0);
    if (rc != 0) {
        CHECK(len == 99);
        return;
    }
    /* the port is the decimal digits after the last ':' */
    const char *colon = strrchr(s, ':');
    CHECK(colon != NULL);
    uint64_t port;
    CHECK(confval_uint(colon + 1, 1, 65535, &port) == 0);

    char host[INET6_ADDRSTRLEN], again[INET6_ADDRSTRLEN + 16];
    struct sockaddr_storage ss2;
    socklen_t len2 = 0;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        CHECK(len == sizeof *a);
        CHECK(ntohs(a->sin_port) == port);
        CHECK(inet_ntop(AF_INET, &a->sin_addr, host, sizeof host));
        snprintf(again, sizeof again, "%s:%u", host, ntohs(a->sin_port));
        CHECK(s[0] != '[');
    } else {
        CHECK(ss.ss_family == AF_INET6);
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        CHECK(len == sizeof *a);
        CHECK(ntohs(a->sin6_port) == port);
        CHECK(a->sin6_flowinfo == 0 && a->sin6_scope_id == 0);
        CHECK(inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host));
        snprintf(again, sizeof again, "[%s]:%u", host, ntohs(a->sin6_port));
        CHECK(s[0] == '[');
    }
    CHECK(confval_listen(again, &ss2, &len2) == 0);
    CHECK(len2 == len && memcmp(&ss, &ss2, len) == 0);
}

static void check_listen_entry(const char *s)
{
    struct sockaddr_storage ss, ss2;
    socklen_t len = 99, len2;
    bool tls = true;
    int rc = confval_listen_entry(s, &ss, &len, &tls);
    CHECK(rc == 0 || rc == -EINVAL || rc == -ENOTSUP);
    if (rc != 0) {
        CHECK(len == 99 && tls);
        return;
    }
    size_t n = strcspn(s, " \t");
    char *first = strndup(s, n);
    CHECK(first);
    CHECK(confval_listen(first, &ss2, &len2) == 0);
    CHECK(len2 == len && memcmp(&ss, &ss2, len) == 0);
    free(first);
    bool any = false;
    for (const char *p = s + n; *(p += strspn(p, " \t")); p += 3) {
        CHECK(strncmp(p, "tls", 3) == 0);
        any = true;
    }
    CHECK(tls == any);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exactly sized NUL-terminated copy; embedded NULs just end the
     * string early, as they would in a config file reader. */
    char *s = malloc(size + 1);
    CHECK(s);
    memcpy(s, data, size);
    s[size] = '\0';

    check_uint(s);
    check_size(s);
    check_duration(s);
    check_bool(s);
    check_listen(s);
    check_listen_entry(s);

    free(s);
    return 0;
}
