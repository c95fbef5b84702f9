/*
 * test_http.c - unit tests for the HTTP/1.1 request-head parser (src/http.c).
 *
 * Build: gcc -Wall -Wextra -Isrc -Iinclude tests/unit/test_http.c \
 *            src/http.c -lcmocka -o /tmp/test_http && /tmp/test_http
 *
 * Each call to http_parse gets its bytes placed just before a PROT_NONE
 * page (guard.h), so a read past `len` faults.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"
#include "http.h"

#define MAX_HEAD 8192

static const char UPGRADE[] =
    "GET /chat?room=1&x=2 HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

/* A parse result with pointers turned into offsets from the buffer start,
 * so results from differently placed buffers can be compared. */
struct result {
    enum http_rc rc;
    size_t method, method_len, target, target_len, path, path_len;
    int version_minor;
    size_t nheaders;
    size_t name[HTTP_MAX_HEADERS], name_len[HTTP_MAX_HEADERS];
    size_t value[HTTP_MAX_HEADERS], value_len[HTTP_MAX_HEADERS];
    size_t head_len;
};

static void to_result(enum http_rc rc, const struct http_request *req,
                      const char *buf, size_t len, struct result *r)
{
    memset(r, 0, sizeof *r);
    r->rc = rc;
    if (rc != HTTP_DONE)
        return;
    assert_true(req->head_len <= len);
    r->method = (size_t)(req->method - buf);
    r->method_len = req->method_len;
    r->target = (size_t)(req->target - buf);
    r->target_len = req->target_len;
    r->path = (size_t)(req->path - buf);
    r->path_len = req->path_len;
    r->version_minor = req->version_minor;
    r->nheaders = req->nheaders;
    r->head_len = req->head_len;
    assert_true(r->target + r->target_len <= req->head_len);
    for (size_t i = 0; i < req->nheaders; i++) {
        r->name[i] = (size_t)(req->headers[i].name - buf);
        r->name_len[i] = req->headers[i].name_len;
        r->value[i] = (size_t)(req->headers[i].value - buf);
        r->value_len[i] = req->headers[i].value_len;
        assert_true(r->value[i] + r->value_len[i] <= req->head_len);
    }
}

static void assert_results_equal(const struct result *a,
                                 const struct result *b)
{
    assert_memory_equal(a, b, sizeof *a);
}

/* Parses the whole of s[0..len) in one call.  Also returns, through
 * keep (if not NULL), the guard so the caller can inspect req. */
static enum http_rc parse_whole(const char *s, size_t len, size_t max_len,
                                struct http_request *req, struct result *r)
{
    struct guard g;
    guard_init(&g, len);
    const char *buf = (const char *)guard_place(&g, s, len);
    struct http_scan scan = { 0 };
    enum http_rc rc = http_parse(&scan, buf, len, max_len, req);
    if (r)
        to_result(rc, req, buf, len, r);
    guard_free(&g);
    return rc;
}

/* Simulates a caller that receives s in pieces ending at cuts[], then the
 * rest, calling http_parse on everything received so far until it stops
 * returning NEED_MORE. */
static enum http_rc parse_cuts(const char *s, size_t len, size_t max_len,
                               const size_t *cuts, size_t ncuts,
                               struct result *r)
{
    struct guard g;
    struct http_scan scan = { 0 };
    struct http_request req;
    enum http_rc rc = HTTP_NEED_MORE;
    guard_init(&g, len);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t have = i < ncuts ? cuts[i] : len;
        const char *buf = (const char *)guard_place(&g, s, have);
        rc = http_parse(&scan, buf, have, max_len, &req);
        to_result(rc, &req, buf, have, r);
        if (rc != HTTP_NEED_MORE)
            break;
    }
    guard_free(&g);
    return rc;
}

static enum http_rc parse_bytewise(const char *s, size_t len, size_t max_len,
                                   struct result *r)
{
    size_t *cuts = malloc((len + 1) * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    enum http_rc rc = parse_cuts(s, len, max_len, cuts, len, r);
    free(cuts);
    return rc;
}

/* Whole == byte-by-byte == split at every position; returns the rc. */
static enum http_rc assert_incremental_agrees(const char *s, size_t len,
                                              size_t max_len)
{
    struct http_request req;
    struct result whole, inc;
    enum http_rc rc = parse_whole(s, len, max_len, &req, &whole);
    parse_bytewise(s, len, max_len, &inc);
    assert_results_equal(&whole, &inc);
    for (size_t cut = 0; cut <= len; cut++) {
        parse_cuts(s, len, max_len, &cut, 1, &inc);
        assert_results_equal(&whole, &inc);
    }
    return rc;
}

/* Parses a C string placed before a guard page that stays mapped until the
 * next parse_str call, so *req can be inspected afterwards. */
static enum http_rc parse_str(const char *s, struct http_request *req)
{
    static struct guard g;
    size_t len = strlen(s);
    if (g.base)
        guard_free(&g);
    guard_init(&g, len);
    const char *buf = (const char *)guard_place(&g, s, len);
    struct http_scan scan = { 0 };
    return http_parse(&scan, buf, len, MAX_HEAD, req);
}

static enum http_rc rc_of(const char *s)
{
    struct http_request req;
    return parse_whole(s, strlen(s), MAX_HEAD, &req, NULL);
}

static void assert_span(const char *p, size_t len, const char *want)
{
    assert_int_equal(len, strlen(want));
    assert_memory_equal(p, want, len);
}

/* ---- valid requests ---------------------------------------------------- */

static void test_http_parses_upgrade_request_in_one_piece(void **state)
{
    (void)state;
    struct http_request req;
    struct guard g;
    size_t len = strlen(UPGRADE);
    guard_init(&g, len);
    const char *buf = (const char *)guard_place(&g, UPGRADE, len);
    struct http_scan scan = { 0 };
    assert_int_equal(http_parse(&scan, buf, len, MAX_HEAD, &req), HTTP_DONE);
    assert_span(req.method, req.method_len, "GET");
    assert_span(req.target, req.target_len, "/chat?room=1&x=2");
    assert_span(req.path, req.path_len, "/chat");
    assert_int_equal(req.version_minor, 1);
    assert_int_equal(req.nheaders, 7);
    assert_int_equal(req.head_len, len);
    assert_span(req.headers[0].name, req.headers[0].name_len, "Host");
    assert_span(req.headers[0].value, req.headers[0].value_len,
                "server.example.com");
    assert_span(req.headers[3].name, req.headers[3].name_len,
                "Sec-WebSocket-Key");
    assert_span(req.headers[3].value, req.headers[3].value_len,
                "dGhlIHNhbXBsZSBub25jZQ==");
    assert_span(req.headers[5].value, req.headers[5].value_len,
                "chat, superchat");
    assert_span(req.headers[6].value, req.headers[6].value_len, "13");
    /* all results point into the caller's buffer */
    assert_true(req.method == buf);
    guard_free(&g);
}

static void test_http_byte_by_byte_matches_one_piece(void **state)
{
    (void)state;
    size_t len = strlen(UPGRADE);
    struct http_request req;
    struct result whole, inc;
    assert_int_equal(parse_whole(UPGRADE, len, MAX_HEAD, &req, &whole),
                     HTTP_DONE);
    assert_int_equal(parse_bytewise(UPGRADE, len, MAX_HEAD, &inc), HTTP_DONE);
    assert_results_equal(&whole, &inc);
}

static void test_http_need_more_until_blank_line(void **state)
{
    (void)state;
    size_t len = strlen(UPGRADE);
    struct guard g;
    guard_init(&g, len);
    struct http_scan scan = { 0 };
    struct http_request req;
    for (size_t n = 0; n < len; n++) {
        const char *buf = (const char *)guard_place(&g, UPGRADE, n);
        assert_int_equal(http_parse(&scan, buf, n, MAX_HEAD, &req),
                         HTTP_NEED_MORE);
    }
    const char *buf = (const char *)guard_place(&g, UPGRADE, len);
    assert_int_equal(http_parse(&scan, buf, len, MAX_HEAD, &req), HTTP_DONE);
    guard_free(&g);
}

static void test_http_split_at_every_position_matches_one_piece(void **state)
{
    (void)state;
    assert_int_equal(assert_incremental_agrees(UPGRADE, strlen(UPGRADE),
                                               MAX_HEAD), HTTP_DONE);
    /* three pieces around the final CRLF CRLF */
    size_t len = strlen(UPGRADE);
    struct http_request req;
    struct result whole, inc;
    parse_whole(UPGRADE, len, MAX_HEAD, &req, &whole);
    for (size_t a = len - 6; a <= len; a++)
        for (size_t b = a; b <= len; b++) {
            size_t cuts[2] = { a, b };
            parse_cuts(UPGRADE, len, MAX_HEAD, cuts, 2, &inc);
            assert_results_equal(&whole, &inc);
        }
}

static void test_http_accepts_bare_lf_line_ends(void **state)
{
    (void)state;
    const char *s = "GET /x HTTP/1.1\nHost: a\nUpgrade: websocket\n\n";
    struct http_request req;
    assert_int_equal(parse_str(s, &req), HTTP_DONE);
    assert_int_equal(req.nheaders, 2);
    assert_int_equal(req.head_len, strlen(s));
    assert_span(req.headers[0].value, req.headers[0].value_len, "a");
    assert_span(req.headers[1].value, req.headers[1].value_len, "websocket");
    assert_int_equal(assert_incremental_agrees(s, strlen(s), MAX_HEAD),
                     HTTP_DONE);
    /* Mixed: CRLF lines with a bare LF blank line, and vice versa. */
    const char *m1 = "GET /x HTTP/1.1\r\nHost: a\r\n\n";
    assert_int_equal(parse_str(m1, &req), HTTP_DONE);
    assert_int_equal(req.head_len, strlen(m1));
    assert_span(req.headers[0].value, req.headers[0].value_len, "a");
    const char *m2 = "GET /x HTTP/1.1\nHost: a\n\r\n";
    assert_int_equal(parse_str(m2, &req), HTTP_DONE);
    assert_int_equal(req.head_len, strlen(m2));
    assert_int_equal(assert_incremental_agrees(m1, strlen(m1), MAX_HEAD),
                     HTTP_DONE);
    assert_int_equal(assert_incremental_agrees(m2, strlen(m2), MAX_HEAD),
                     HTTP_DONE);
}

static void test_http_request_without_headers(void **state)
{
    (void)state;
    struct http_request req;
    assert_int_equal(parse_str("GET / HTTP/1.1\r\n\r\n", &req), HTTP_DONE);
    assert_int_equal(req.nheaders, 0);
    assert_int_equal(req.head_len, 18);
}

static void test_http_trims_header_values(void **state)
{
    (void)state;
    const char *s = "GET / HTTP/1.1\r\n"
                    "A:   spaced out \t \r\n"
                    "B:\tx\r\n"
                    "C:\r\n"
                    "D: \t \r\n"
                    "E:inner  space\r\n"
                    "F: caf\xc3\xa9\r\n"
                    "\r\n";
    struct http_request req;
    assert_int_equal(parse_str(s, &req), HTTP_DONE);
    assert_int_equal(req.nheaders, 6);
    assert_span(req.headers[0].value, req.headers[0].value_len, "spaced out");
    assert_span(req.headers[1].value, req.headers[1].value_len, "x");
    assert_int_equal(req.headers[2].value_len, 0);
    assert_int_equal(req.headers[3].value_len, 0);
    assert_span(req.headers[4].value, req.headers[4].value_len,
                "inner  space");
    assert_span(req.headers[5].value, req.headers[5].value_len,
                "caf\xc3\xa9");
    assert_span(req.headers[0].name, req.headers[0].name_len, "A");
    assert_int_equal(assert_incremental_agrees(s, strlen(s), MAX_HEAD),
                     HTTP_DONE);
}

/* ---- limits ------------------------------------------------------------ */

static void test_http_rejects_incomplete_head_at_max_len(void **state)
{
    (void)state;
    struct http_request req;
    char buf[300];
    memset(buf, 'a', sizeof buf);
    memcpy(buf, "GET /", 5);
    /* below the limit: need more; at or over it: too large */
    assert_int_equal(parse_whole(buf, 99, 100, &req, NULL), HTTP_NEED_MORE);
    assert_int_equal(parse_whole(buf, 100, 100, &req, NULL),
                     HTTP_ERR_TOO_LARGE);
    assert_int_equal(parse_whole(buf, 300, 100, &req, NULL),
                     HTTP_ERR_TOO_LARGE);
    struct result r;
    assert_int_equal(parse_bytewise(buf, 300, 100, &r), HTTP_ERR_TOO_LARGE);
}

static void test_http_rejects_complete_head_over_max_len(void **state)
{
    (void)state;
    size_t len = strlen(UPGRADE);
    struct http_request req;
    assert_int_equal(parse_whole(UPGRADE, len, len, &req, NULL), HTTP_DONE);
    assert_int_equal(parse_whole(UPGRADE, len, len - 1, &req, NULL),
                     HTTP_ERR_TOO_LARGE);
    assert_int_equal(parse_whole(UPGRADE, len, 16, &req, NULL),
                     HTTP_ERR_TOO_LARGE);
    assert_int_equal(assert_incremental_agrees(UPGRADE, len, len - 1),
                     HTTP_ERR_TOO_LARGE);
    assert_int_equal(assert_incremental_agrees(UPGRADE, len, len), HTTP_DONE);
}

static char *many_headers(size_t n)
{
    char *s = malloc(64 + n * 32);
    assert_non_null(s);
    size_t at = (size_t)sprintf(s, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < n; i++)
        at += (size_t)sprintf(s + at, "X-H%zu: v%zu\r\n", i, i);
    sprintf(s + at, "\r\n");
    return s;
}

static void test_http_accepts_max_header_count(void **state)
{
    (void)state;
    char *s = many_headers(HTTP_MAX_HEADERS);
    struct http_request req;
    assert_int_equal(parse_str(s, &req), HTTP_DONE);
    assert_int_equal(req.nheaders, HTTP_MAX_HEADERS);
    assert_span(req.headers[HTTP_MAX_HEADERS - 1].value,
                req.headers[HTTP_MAX_HEADERS - 1].value_len, "v63");
    free(s);
}

static void test_http_rejects_too_many_headers(void **state)
{
    (void)state;
    char *s = many_headers(HTTP_MAX_HEADERS + 1);
    assert_int_equal(rc_of(s), HTTP_ERR_TOO_LARGE);
    free(s);
    s = many_headers(500);
    assert_int_equal(rc_of(s), HTTP_ERR_TOO_LARGE);
    free(s);
}

/* ---- malformed --------------------------------------------------------- */

static void test_http_rejects_missing_method(void **state)
{
    (void)state;
    assert_int_equal(rc_of(" / HTTP/1.1\r\nHost: a\r\n\r\n"),
                     HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of("/ HTTP/1.1\r\nHost: a\r\n\r\n"),
                     HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of("G(T / HTTP/1.1\r\n\r\n"), HTTP_ERR_MALFORMED);
}

static void test_http_rejects_missing_target(void **state)
{
    (void)state;
    assert_int_equal(rc_of("GET HTTP/1.1\r\n\r\n"), HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of("GET  HTTP/1.1\r\n\r\n"), HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of("GET  / HTTP/1.1\r\n\r\n"), HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of("GET /\r\n\r\n"), HTTP_ERR_MALFORMED);
}

static void test_http_rejects_empty_request_line(void **state)
{
    (void)state;
    assert_int_equal(rc_of("\r\n\r\n"), HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of("\n\n"), HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of("\r\nGET / HTTP/1.1\r\n\r\n"), HTTP_ERR_MALFORMED);
}

static void test_http_rejects_bad_version_string(void **state)
{
    (void)state;
    const char *bad[] = {
        "GET / HTTP/1.1x\r\n\r\n", "GET / HTTP/1\r\n\r\n",
        "GET / HTTP/1.\r\n\r\n", "GET / HTTP/a.b\r\n\r\n",
        "GET / http/1.1\r\n\r\n", "GET / HTTP/1,1\r\n\r\n",
        "GET / HTTP/11\r\n\r\n", "GET / HTTP/1.1 \r\n\r\n",
        "GET / HTTPS/1.1\r\n\r\n", "GET / HTTP/1.1\r\r\n\r\n",
        "GET / \r\n\r\n", "GET / HTTP/1.10\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(rc_of(bad[i]), HTTP_ERR_MALFORMED);
}

static void test_http_rejects_http2_with_version_error(void **state)
{
    (void)state;
    assert_int_equal(rc_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
                     HTTP_ERR_VERSION);
    assert_int_equal(rc_of("GET / HTTP/3.0\r\n\r\n"), HTTP_ERR_VERSION);
    assert_int_equal(rc_of("GET / HTTP/0.9\r\n\r\n"), HTTP_ERR_VERSION);
    struct http_request req;
    assert_int_equal(parse_str("GET / HTTP/1.0\r\n\r\n", &req), HTTP_DONE);
    assert_int_equal(req.version_minor, 0);
    assert_int_equal(parse_str("GET / HTTP/1.9\r\n\r\n", &req), HTTP_DONE);
    assert_int_equal(req.version_minor, 9);
}

static void test_http_rejects_space_before_colon(void **state)
{
    (void)state;
    assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
                     HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"),
                     HTTP_ERR_MALFORMED);
}

static void test_http_rejects_bad_field_names(void **state)
{
    (void)state;
    assert_int_equal(rc_of("GET / HTTP/1.1\r\n: a\r\n\r\n"),
                     HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of("GET / HTTP/1.1\r\nNoColon\r\n\r\n"),
                     HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of("GET / HTTP/1.1\r\nBad(Name): a\r\n\r\n"),
                     HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of("GET / HTTP/1.1\r\nX\x80: a\r\n\r\n"),
                     HTTP_ERR_MALFORMED);
}

static void test_http_rejects_obs_fold(void **state)
{
    (void)state;
    assert_int_equal(rc_of("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"),
                     HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"),
                     HTTP_ERR_MALFORMED);
    /* whitespace before the first field */
    assert_int_equal(rc_of("GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
                     HTTP_ERR_MALFORMED);
}

static void test_http_rejects_control_chars_in_value(void **state)
{
    (void)state;
    const char *bad[] = {
        "GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x7f" "b\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x1f\r\n\r\n",
        "GET / HTTP/1.1\r\nX: \x0b\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(rc_of(bad[i]), HTTP_ERR_MALFORMED);
    /* NUL inside a value */
    static const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
    struct http_request req;
    assert_int_equal(parse_whole(nul, sizeof nul - 1, MAX_HEAD, &req, NULL),
                     HTTP_ERR_MALFORMED);
    /* Tabs and obs-text are fine. */
    assert_int_equal(rc_of("GET / HTTP/1.1\r\nX: a\tb\xff\r\n\r\n"),
                     HTTP_DONE);
}

static void test_http_rejects_control_chars_in_target(void **state)
{
    (void)state;
    assert_int_equal(rc_of("GET /a\x01" "b HTTP/1.1\r\n\r\n"),
                     HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of("GET /a\x7f" "b HTTP/1.1\r\n\r\n"),
                     HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of("GET /a\tb HTTP/1.1\r\n\r\n"), HTTP_ERR_MALFORMED);
}

/* ---- accessors --------------------------------------------------------- */

static void test_http_splits_path_and_query(void **state)
{
    (void)state;
    struct http_request req;
    assert_int_equal(parse_str("GET /a/b?x=1?y HTTP/1.1\r\n\r\n", &req),
                     HTTP_DONE);
    assert_span(req.path, req.path_len, "/a/b");
    assert_span(req.target, req.target_len, "/a/b?x=1?y");
    assert_ptr_equal(req.path, req.target);
    assert_int_equal(parse_str("GET /plain HTTP/1.1\r\n\r\n", &req),
                     HTTP_DONE);
    assert_span(req.path, req.path_len, "/plain");
    assert_int_equal(parse_str("GET /? HTTP/1.1\r\n\r\n", &req), HTTP_DONE);
    assert_span(req.path, req.path_len, "/");
    assert_int_equal(parse_str("GET ?q HTTP/1.1\r\n\r\n", &req), HTTP_DONE);
    assert_int_equal(req.path_len, 0);
}

static void test_http_header_find_is_case_insensitive(void **state)
{
    (void)state;
    struct http_request req;
    struct guard g;
    size_t len = strlen(UPGRADE);
    guard_init(&g, len);
    const char *buf = (const char *)guard_place(&g, UPGRADE, len);
    struct http_scan scan = { 0 };
    assert_int_equal(http_parse(&scan, buf, len, MAX_HEAD, &req), HTTP_DONE);
    const char *names[] = { "host", "HOST", "Host", "hOsT" };
    for (size_t i = 0; i < 4; i++) {
        const struct http_header *h = http_header_find(&req, names[i]);
        assert_non_null(h);
        assert_ptr_equal(h, &req.headers[0]);
    }
    const struct http_header *h = http_header_find(&req,
                                                   "sec-websocket-version");
    assert_non_null(h);
    assert_span(h->value, h->value_len, "13");
    assert_null(http_header_find(&req, "Hos"));
    assert_null(http_header_find(&req, "Hostx"));
    assert_null(http_header_find(&req, "Cookie"));
    assert_null(http_header_find(&req, ""));
    guard_free(&g);
}

static void test_http_header_find_returns_first_duplicate(void **state)
{
    (void)state;
    struct http_request req;
    static const char s[] = "GET / HTTP/1.1\r\nX-A: one\r\nx-a: two\r\n\r\n";
    struct http_scan scan = { 0 };
    assert_int_equal(http_parse(&scan, s, sizeof s - 1, MAX_HEAD, &req),
                     HTTP_DONE);
    const struct http_header *h = http_header_find(&req, "X-A");
    assert_ptr_equal(h, &req.headers[0]);
    assert_span(h->value, h->value_len, "one");
    h = http_header_find(&req, "x-a");
    assert_ptr_equal(h, &req.headers[0]);
}

static bool list_has(const char *v, const char *token)
{
    struct guard g;
    size_t len = strlen(v);
    guard_init(&g, len);
    const char *p = (const char *)guard_place(&g, v, len);
    bool r = http_list_has(p, len, token);
    guard_free(&g);
    return r;
}

static void test_http_list_has_handles_spaces_and_commas(void **state)
{
    (void)state;
    assert_true(list_has("keep-alive, Upgrade", "upgrade"));
    assert_true(list_has("keep-alive, Upgrade", "keep-alive"));
    assert_true(list_has("Upgrade", "upgrade"));
    assert_true(list_has("UPGRADE", "upgrade"));
    assert_true(list_has(",,  Upgrade ,", "upgrade"));
    assert_true(list_has("keep-alive,Upgrade", "upgrade"));
    assert_true(list_has("\tupgrade\t", "upgrade"));
    assert_true(list_has("a , b ,upgrade", "upgrade"));
    assert_false(list_has("keep-alive", "upgrade"));
    assert_false(list_has("", "upgrade"));
    assert_false(list_has(" , ,", "upgrade"));
    assert_false(list_has("Upgraded", "upgrade"));
    assert_false(list_has("upgrad", "upgrade"));
    assert_false(list_has("up grade", "upgrade"));
    assert_false(list_has("keep-alive upgrade", "upgrade"));
}

struct collect {
    char items[8][32];
    size_t n;
    size_t stop_at;
};

static bool collect_fn(const char *item, size_t len, void *arg)
{
    struct collect *c = arg;
    assert_true(c->n < 8 && len < 32);
    memcpy(c->items[c->n], item, len);
    c->items[c->n][len] = '\0';
    c->n++;
    return c->n == c->stop_at;
}

static void test_http_list_each_trims_and_skips_empty(void **state)
{
    (void)state;
    struct collect c = { .stop_at = 99 };
    const char *v = " chat ,, superchat\t, ,x y ,";
    assert_false(http_list_each(v, strlen(v), collect_fn, &c));
    assert_int_equal(c.n, 3);
    assert_string_equal(c.items[0], "chat");
    assert_string_equal(c.items[1], "superchat");
    assert_string_equal(c.items[2], "x y");
    struct collect d = { .stop_at = 2 };
    assert_true(http_list_each(v, strlen(v), collect_fn, &d));
    assert_int_equal(d.n, 2);
}

/* ---- what follows the head --------------------------------------------- */

static void test_http_reports_exact_head_len_with_trailing_bytes(void **state)
{
    (void)state;
    size_t hl = strlen(UPGRADE);
    const uint8_t frame[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f,
                              0x4d, 0x51, 0x58, '\r', '\n', '\r', '\n' };
    char *s = malloc(hl + sizeof frame);
    assert_non_null(s);
    memcpy(s, UPGRADE, hl);
    memcpy(s + hl, frame, sizeof frame);
    struct http_request req;
    struct result whole;
    for (size_t extra = 0; extra <= sizeof frame; extra++) {
        assert_int_equal(parse_whole(s, hl + extra, MAX_HEAD, &req, &whole),
                         HTTP_DONE);
        assert_int_equal(whole.head_len, hl);
        assert_int_equal(whole.nheaders, 7);
    }
    /* split at every position of head + frame */
    assert_int_equal(assert_incremental_agrees(s, hl + sizeof frame,
                                               MAX_HEAD), HTTP_DONE);
    /* the head arrives byte by byte, then a whole frame at once */
    struct result inc;
    size_t cuts[1] = { hl - 1 };
    parse_cuts(s, hl + sizeof frame, MAX_HEAD, cuts, 1, &inc);
    assert_int_equal(inc.rc, HTTP_DONE);
    assert_int_equal(inc.head_len, hl);
    /* bare-LF head followed by bytes */
    const char *lf = "GET / HTTP/1.1\nHost: a\n\nXYZ\n\n";
    assert_int_equal(parse_whole(lf, strlen(lf), MAX_HEAD, &req, &whole),
                     HTTP_DONE);
    assert_int_equal(whole.head_len, strlen("GET / HTTP/1.1\nHost: a\n\n"));
    free(s);
}

static void test_http_malformed_heads_agree_when_split(void **state)
{
    (void)state;
    const char *cases[] = {
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        "\r\n\r\n",
        "GET / HTTP/1.1\r\nX: \x01\r\n\n",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_incremental_agrees(cases[i], strlen(cases[i]), MAX_HEAD);
}

/* A TLS ClientHello, or anything else that cannot start a method, is
 * refused from its first byte: the server need not wait for a blank line
 * that never comes. */
static void test_http_rejects_non_method_first_byte_at_once(void **state)
{
    (void)state;
    static const char hello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03";
    struct http_request req;
    struct http_scan scan = { 0 };

    for (size_t n = 1; n < sizeof hello; n++) {
        memset(&scan, 0, sizeof scan);
        assert_int_equal(http_parse(&scan, hello, n, MAX_HEAD, &req),
                         HTTP_ERR_MALFORMED);
    }
    assert_int_equal(rc_of("\r\nGET / HTTP/1.1\r\n\r\n"), HTTP_ERR_MALFORMED);
    assert_int_equal(rc_of(" GET / HTTP/1.1\r\n"), HTTP_ERR_MALFORMED);
    /* A method's first byte alone still waits for more. */
    memset(&scan, 0, sizeof scan);
    assert_int_equal(http_parse(&scan, "G", 1, MAX_HEAD, &req),
                     HTTP_NEED_MORE);
    const char *tls_like = "\x16\x03\x01 / HTTP/1.1\r\n\r\n";
    assert_incremental_agrees(tls_like, strlen(tls_like), MAX_HEAD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_parses_upgrade_request_in_one_piece),
        cmocka_unit_test(test_http_byte_by_byte_matches_one_piece),
        cmocka_unit_test(test_http_need_more_until_blank_line),
        cmocka_unit_test(test_http_split_at_every_position_matches_one_piece),
        cmocka_unit_test(test_http_accepts_bare_lf_line_ends),
        cmocka_unit_test(test_http_request_without_headers),
        cmocka_unit_test(test_http_trims_header_values),
        cmocka_unit_test(test_http_rejects_incomplete_head_at_max_len),
        cmocka_unit_test(test_http_rejects_complete_head_over_max_len),
        cmocka_unit_test(test_http_accepts_max_header_count),
        cmocka_unit_test(test_http_rejects_too_many_headers),
        cmocka_unit_test(test_http_rejects_missing_method),
        cmocka_unit_test(test_http_rejects_missing_target),
        cmocka_unit_test(test_http_rejects_empty_request_line),
        cmocka_unit_test(test_http_rejects_bad_version_string),
        cmocka_unit_test(test_http_rejects_http2_with_version_error),
        cmocka_unit_test(test_http_rejects_space_before_colon),
        cmocka_unit_test(test_http_rejects_bad_field_names),
        cmocka_unit_test(test_http_rejects_obs_fold),
        cmocka_unit_test(test_http_rejects_control_chars_in_value),
        cmocka_unit_test(test_http_rejects_control_chars_in_target),
        cmocka_unit_test(test_http_splits_path_and_query),
        cmocka_unit_test(test_http_header_find_is_case_insensitive),
        cmocka_unit_test(test_http_header_find_returns_first_duplicate),
        cmocka_unit_test(test_http_list_has_handles_spaces_and_commas),
        cmocka_unit_test(test_http_list_each_trims_and_skips_empty),
        cmocka_unit_test(test_http_reports_exact_head_len_with_trailing_bytes),
        cmocka_unit_test(test_http_malformed_heads_agree_when_split),
        cmocka_unit_test(test_http_rejects_non_method_first_byte_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
