/*
 * fuzz_static.c - libFuzzer target for the static file path mapping and
 * response heads (src/static.c, src/route.c).
 *
 * Input: byte 0 picks the route prefix, byte 1 the buffer size for the
 * head check, the rest is the request target (exactly sized, so a read
 * past its end is caught).  Cross-checks, aborting on any mismatch:
 *  - static_resolve agrees with a plain reference (decode the whole path,
 *    split it, drop empty and "." segments, refuse ".."), and what it
 *    accepts is safe to append to a folder: no "..", "." or empty
 *    segment, no leading or trailing '/', no NUL, control byte or '\';
 *  - resolving the result again, re-encoded, gives the same result;
 *  - a 301 head built from the target has CRLF line ends only, never
 *    writes past its buffer, and reports the same length at any size;
 *  - an input that parses as an HTTP date formats back to itself, and
 *    formatting any time parses back to it (within 1970..9999).
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Iinclude \
 *       tests/fuzz/fuzz_static.c src/static.c src/route.c src/http.c \
 *       src/handshake.c -lcrypto -o /tmp/fuzz_static
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"
#include "static.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static const char *const prefixes[] = { "/", "/demo", "/demo/", "/a/b", "//" };
#define NPREFIXES (sizeof prefixes / sizeof prefixes[0])

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The reference: returns STATIC_OK with the joined path in out, or the
 * error static_resolve must give (length aside, checked separately). */
static enum static_rc reference(const char *prefix, const char *t, size_t len,
                                char *out, size_t *out_len, bool *slash)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)t[i] <= 0x20 || t[i] == 0x7f)
            return STATIC_ERR_MALFORMED;
    size_t plen = 0;
    while (plen < len && t[plen] != '?' && t[plen] != '#')
        plen++;
    size_t start = route_prefix_len(prefix, t, plen);
    if (start == ROUTE_NO_MATCH)
        return STATIC_ERR_NO_MATCH;
    /* Decode all of it first. */
    char *dec = malloc(plen + 1);
    CHECK(dec);
    size_t n = 0;
    for (size_t i = start; i < plen; i++) {
        char c = t[i];
        if (c == '%') {
            if (i + 2 >= plen || hexval(t[i + 1]) < 0 ||
                hexval(t[i + 2]) < 0) {
                free(dec);
                return STATIC_ERR_MALFORMED;
            }
            c = (char)(hexval(t[i + 1]) * 16 + hexval(t[i + 2]));
            i += 2;
        }
        if ((unsigned char)c < 0x20 || c == 0x7f || c == '\\') {
            free(dec);
            return STATIC_ERR_MALFORMED;
        }
        dec[n++] = c;
    }
    /* Then split and join. */
    size_t o = 0;
    enum static_rc rc = STATIC_OK;
    bool last_dot = false;
    for (size_t s = 0; s <= n && rc == STATIC_OK;) {
        size_t e = s;
        while (e < n && dec[e] != '/')
            e++;
        size_t sl = e - s;
        last_dot = sl == 1 && dec[s] == '.';
        if (sl == 2 && dec[s] == '.' && dec[s + 1] == '.')
            rc = STATIC_ERR_TRAVERSAL;
        else if (sl >= 2 && dec[s] == '.' &&
                 !(sl == 11 && memcmp(dec + s, ".well-known", 11) == 0))
            rc = STATIC_ERR_TRAVERSAL;   /* hidden names */
        else if (sl && !last_dot) {
            if (o)
                out[o++] = '/';
            memcpy(out + o, dec + s, sl);
            o += sl;
        }
        s = e + 1;
    }
    *slash = (n > 0 && dec[n - 1] == '/') || last_dot;
    *out_len = o;
    free(dec);
    return rc;
}

static void check_safe(const struct static_target *t)
{
    CHECK(t->rel_len <= STATIC_PATH_MAX);
    CHECK(strlen(t->rel) == t->rel_len);
    if (t->rel_len == 0)
        return;
    CHECK(t->rel[0] != '/' && t->rel[t->rel_len - 1] != '/');
    for (size_t i = 0; i < t->rel_len; i++) {
        unsigned char c = (unsigned char)t->rel[i];
        CHECK(c >= 0x20 && c != 0x7f && c != '\\');
        if (c == '/')
            CHECK(t->rel[i + 1] != '/');
    }
    /* Every segment: not "." nor "..". */
    const char *s = t->rel;
    for (;;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        CHECK(!(n == 1 && s[0] == '.'));
        CHECK(!(n == 2 && s[0] == '.' && s[1] == '.'));
        if (!e)
            break;
        s = e + 1;
    }
}

/* Resolving "/" + rel, with '%', '?' and '#' and blanks encoded, under
 * "/" gives rel back. */
static void check_idempotent(const struct static_target *t)
{
    char *enc = malloc(2 + 3 * t->rel_len);   /* sprintf adds a NUL */
    struct static_target *again = malloc(sizeof *again);
    size_t n = 0;
    CHECK(enc && again);
    enc[n++] = '/';
    for (size_t i = 0; i < t->rel_len; i++) {
        unsigned char c = (unsigned char)t->rel[i];
        if (c == '%' || c == '?' || c == '#' || c <= 0x20 || c >= 0x7f)
            n += (size_t)sprintf(enc + n, "%%%02X", c);
        else
            enc[n++] = (char)c;
    }
    CHECK(static_resolve("/", enc, n, again) == STATIC_OK);
    CHECK(again->rel_len == t->rel_len);
    CHECK(memcmp(again->rel, t->rel, t->rel_len) == 0);
    free(again);
    free(enc);
}

static void check_head(const struct static_target *t, size_t cap)
{
    struct static_head h = { .status = 301, .redirect = t };
    size_t full = static_write_head(NULL, 0, &h);
    char *big = malloc(full + 1);
    char *small = malloc(cap ? cap : 1);
    CHECK(big && small);
    CHECK(static_write_head(big, full + 1, &h) == full);
    CHECK(strlen(big) == full);
    CHECK(static_write_head(small, cap, &h) == full);
    if (cap)
        CHECK(strncmp(small, big, cap - 1) == 0);
    /* CR only before LF, LF only after CR: no header can be injected. */
    for (size_t i = 0; i < full; i++) {
        if (big[i] == '\r')
            CHECK(big[i + 1] == '\n');
        if (big[i] == '\n')
            CHECK(i > 0 && big[i - 1] == '\r');
    }
    CHECK(full >= 4 && memcmp(big + full - 4, "\r\n\r\n", 4) == 0);
    CHECK(strstr(big, "\r\n\r\n") == big + full - 4);
    free(small);
    free(big);
}

static void check_dates(const uint8_t *data, size_t size)
{
    int64_t t;
    char out[STATIC_DATE_LEN + 1];

    if (static_parse_date((const char *)data, size, &t) == 0) {
        static_format_date(out, t);
        CHECK(size == STATIC_DATE_LEN && memcmp(out, data, size) == 0);
    }
    uint64_t raw = 0;
    memcpy(&raw, data, size < 8 ? size : 8);
    int64_t when = (int64_t)(raw % (UINT64_C(253402300799) + 1));
    static_format_date(out, when);
    CHECK(static_parse_date(out, STATIC_DATE_LEN, &t) == 0 && t == when);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_dates(data, size);
    if (size < 2)
        return 0;
    const char *prefix = prefixes[data[0] % NPREFIXES];
    size_t cap = data[1];
    size_t len = size - 2;
    char *target = malloc(len ? len : 1);
    char *ref = malloc(len + 1);
    struct static_target *t = malloc(sizeof *t);
    CHECK(target && ref && t);
    memcpy(target, data + 2, len);

    enum static_rc rc = static_resolve(prefix, target, len, t);
    size_t ref_len = 0;
    bool ref_slash = false;
    enum static_rc want = reference(prefix, target, len, ref, &ref_len,
                                    &ref_slash);
    /* The reference finds errors in another order (it decodes the whole
     * path before it splits), so of two errors in one target either may
     * be named.  The length limit applies while the path is built, so a
     * "." segment dropped later still counts its 2 bytes. */
    if (want == STATIC_ERR_NO_MATCH || rc == STATIC_ERR_NO_MATCH)
        CHECK(rc == want);
    else if (want == STATIC_OK && ref_len > STATIC_PATH_MAX)
        CHECK(rc == STATIC_ERR_TOO_LONG);
    else if (want == STATIC_OK && rc == STATIC_ERR_TOO_LONG)
        CHECK(ref_len + 2 > STATIC_PATH_MAX);
    else if (want == STATIC_OK)
        CHECK(rc == STATIC_OK);
    else
        CHECK(rc != STATIC_OK);
    if (rc == STATIC_OK) {
        CHECK(t->rel_len == ref_len && memcmp(t->rel, ref, ref_len) == 0);
        CHECK(t->slash == ref_slash);
        CHECK(t->path == target && t->path_len <= len);
        CHECK(!t->query || (t->query > target && t->query + t->query_len <=
                            target + len));
        check_safe(t);
        check_idempotent(t);
        CHECK(static_content_type(t->rel, t->rel_len)[0] != '\0');
        check_head(t, cap);
    }
    free(t);
    free(ref);
    free(target);
    return 0;
}
