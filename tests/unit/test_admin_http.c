/*
 * test_admin_http.c - unit tests for the admin listener's request
 * decisions and response heads (src/admin_http.c).
 *
 * Build: gcc -Wall -Wextra -Isrc -Iinclude tests/unit/test_admin_http.c \
 *            src/admin_http.c src/http.c src/handshake.c -lcrypto \
 *            -lcmocka -o /tmp/test_admin_http && /tmp/test_admin_http
 *
 * Every request is also fed one byte at a time, with one scan carried
 * over, as admin.c sees a slow client; the answer must be the same, and
 * come only with the last byte of the head.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin_http.h"
#include "guard.h"

/* The answer to req, fed whole and then one byte at a time (both must
 * agree); *at: how many bytes the byte-wise feed needed. */
static struct admin_answer decide_at(const char *req, size_t *at)
{
    struct guard g;
    size_t len = strlen(req);
    struct http_scan scan = { 0 };
    struct admin_answer whole, a = { 0 };

    guard_init(&g, len);
    const char *buf = (const char *)guard_place(&g, req, len);
    admin_http_decide(&scan, buf, len, &whole);
    /* One byte at a time. */
    memset(&scan, 0, sizeof scan);
    size_t i;
    for (i = 1; i <= len; i++) {
        admin_http_decide(&scan, buf, i, &a);
        if (a.status)
            break;
    }
    assert_int_equal(a.status, whole.status);
    assert_int_equal(a.page, whole.page);
    assert_int_equal(a.head, whole.head);
    *at = i;
    guard_free(&g);
    return whole;
}

static struct admin_answer decide(const char *req)
{
    size_t at;
    struct admin_answer a = decide_at(req, &at);

    if (a.status && a.status != 431)
        assert_int_equal(at, strlen(req));  /* on the head's last byte */
    return a;
}

static void test_admin_serves_metrics_and_healthz(void **state)
{
    (void)state;
    struct admin_answer a = decide("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(a.status, 200);
    assert_int_equal(a.page, ADMIN_PAGE_METRICS);
    assert_false(a.head);
    a = decide("GET /healthz HTTP/1.0\r\n\r\n");
    assert_int_equal(a.status, 200);
    assert_int_equal(a.page, ADMIN_PAGE_HEALTHZ);
    a = decide("HEAD /metrics HTTP/1.1\n\n");
    assert_int_equal(a.status, 200);
    assert_int_equal(a.page, ADMIN_PAGE_METRICS);
    assert_true(a.head);
    /* A query string does not change the page. */
    a = decide("GET /metrics?collect[]=x HTTP/1.1\r\n\r\n");
    assert_int_equal(a.page, ADMIN_PAGE_METRICS);
}

static void test_admin_other_paths_are_404(void **state)
{
    (void)state;
    static const char *const reqs[] = {
        "GET / HTTP/1.1\r\n\r\n", "GET /metrics/ HTTP/1.1\r\n\r\n",
        "GET /metricsx HTTP/1.1\r\n\r\n", "GET /METRICS HTTP/1.1\r\n\r\n",
        "GET /echo HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n",
        "POST /nothing HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof *reqs; i++) {
        struct admin_answer a = decide(reqs[i]);
        assert_int_equal(a.status, 404);
        assert_int_equal(a.page, ADMIN_PAGE_NONE);
    }
}

static void test_admin_other_methods_are_405(void **state)
{
    (void)state;
    static const char *const reqs[] = {
        "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "PUT /healthz HTTP/1.1\r\n\r\n", "get /metrics HTTP/1.1\r\n\r\n",
        "OPTIONS /metrics HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof *reqs; i++) {
        struct admin_answer a = decide(reqs[i]);
        assert_int_equal(a.status, 405);
        assert_int_equal(a.page, ADMIN_PAGE_NONE);
        assert_false(a.head);
    }
}

static void test_admin_bad_heads(void **state)
{
    (void)state;
    assert_int_equal(decide("GET /metrics\r\n\r\n").status, 400);
    assert_int_equal(decide("GET  /metrics HTTP/1.1\r\n\r\n").status, 400);
    assert_int_equal(decide("GET /metrics HTTP/1.1\r\nA: b\r\n c\r\n\r\n")
                     .status, 400);
    /* A TLS ClientHello cannot start a method: refused at its first
     * byte, without waiting for a head. */
    size_t at;
    assert_int_equal(decide_at("\x16\x03\x01\x02\x05\x01\x07\x01\xfc\r\n"
                               "\r\n", &at).status, 400);
    assert_int_equal(at, 1);
    assert_int_equal(decide("GET /metrics HTTP/2.0\r\n\r\n").status, 505);
    assert_int_equal(decide("GET /metrics HTTP/1.1\r\n").status, 0);
}

static void test_admin_oversized_head_is_431(void **state)
{
    (void)state;
    char *req = malloc(ADMIN_HEAD_MAX + 64);
    int n = snprintf(req, ADMIN_HEAD_MAX + 64, "GET /metrics HTTP/1.1\r\nX: ");
    memset(req + n, 'a', ADMIN_HEAD_MAX);
    req[n + ADMIN_HEAD_MAX - 40] = '\0';
    /* Just fits: the head with its blank line is ADMIN_HEAD_MAX bytes. */
    size_t len = strlen(req);
    memset(req + len, 'a', ADMIN_HEAD_MAX - 4 - len);
    strcpy(req + ADMIN_HEAD_MAX - 4, "\r\n\r\n");
    assert_int_equal(strlen(req), ADMIN_HEAD_MAX);
    assert_int_equal(decide(req).status, 200);
    /* One byte more. */
    strcpy(req + ADMIN_HEAD_MAX - 4, "a\r\n\r\n");
    assert_int_equal(decide(req).status, 431);
    /* Never ending: 431 once the buffer is full. */
    req[ADMIN_HEAD_MAX] = '\0';
    memset(req + n, 'a', ADMIN_HEAD_MAX - (size_t)n);
    assert_int_equal(decide(req).status, 431);
    free(req);
}

static void test_admin_heads_are_well_formed(void **state)
{
    (void)state;
    char out[512];
    size_t n = admin_http_head(out, sizeof out, 200, ADMIN_METRICS_TYPE, 42);
    assert_int_equal(n, strlen(out));
    assert_string_equal(out,
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        "Content-Length: 42\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n");
    n = admin_http_head(out, sizeof out, 405, "text/plain", 19);
    assert_non_null(strstr(out, "HTTP/1.1 405 Method Not Allowed\r\n"));
    assert_non_null(strstr(out, "\r\nAllow: GET, HEAD\r\n"));
    n = admin_http_head(out, sizeof out, 503, "text/plain", 0);
    assert_non_null(strstr(out, "HTTP/1.1 503 Service Unavailable\r\n"));
    assert_null(strstr(out, "Allow"));
    assert_int_equal(admin_http_head(out, 20, 200, "text/plain", 0), 0);
    assert_string_equal(admin_http_error_body(431),
                        "Request Header Fields Too Large\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admin_serves_metrics_and_healthz),
        cmocka_unit_test(test_admin_other_paths_are_404),
        cmocka_unit_test(test_admin_other_methods_are_405),
        cmocka_unit_test(test_admin_bad_heads),
        cmocka_unit_test(test_admin_oversized_head_is_431),
        cmocka_unit_test(test_admin_heads_are_well_formed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
