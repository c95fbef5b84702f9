/*
 * test_handshake.c - unit tests for the opening handshake (src/handshake.c)
 * and route lookup (src/route.c).
 *
 * Build: gcc -Wall -Wextra -Isrc -Iinclude tests/unit/test_handshake.c \
 *            src/handshake.c src/http.c src/route.c -lcmocka -lcrypto \
 *            -o /tmp/test_handshake && /tmp/test_handshake
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
#include "handshake.h"
#include "http.h"
#include "route.h"

#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* ---- routes, built by hand --------------------------------------------- */

static char path_chat[] = "/chat";
static char path_echo[] = "/echo";
static char name_chat[] = "chat-handler";
static char name_echo[] = "echo-handler";
static char proto_super[] = "superchat";
static char proto_chat[] = "chat";
static char *protocols[] = { proto_super, proto_chat };
static char origin_a[] = "https://Example.com";
static char origin_b[] = "http://localhost:8080";
static char *origins[] = { origin_a, origin_b };

/* /chat: two subprotocols, two allowed origins. */
static struct route route_chat = {
    .path = path_chat, .handler_name = name_chat, .handler = NULL,
    .protocols = protocols, .nprotocols = 2,
    .origins = origins, .norigins = 2, .line = 1,
};

/* /echo: no subprotocols, any origin. */
static struct route route_echo = {
    .path = path_echo, .handler_name = name_echo, .handler = NULL,
    .protocols = NULL, .nprotocols = 0,
    .origins = NULL, .norigins = 0, .line = 7,
};

/* ---- requests ---------------------------------------------------------- */

/* A request head parsed from a C string.  The bytes stay mapped (just
 * before a guard page) until the next call. */
static struct http_request REQ;

static const struct http_request *parse(const char *s)
{
    static struct guard g;
    size_t len = strlen(s);
    if (g.base)
        guard_free(&g);
    guard_init(&g, len);
    const char *buf = (const char *)guard_place(&g, s, len);
    struct http_scan scan = { 0 };
    assert_int_equal(http_parse(&scan, buf, len, 16384, &REQ), HTTP_DONE);
    return &REQ;
}

/* A request built from a request line and header lines (each without its
 * CRLF; NULL-terminated). */
static const struct http_request *build(const char *request_line, ...)
{
    char head[4096];
    size_t at = (size_t)snprintf(head, sizeof head, "%s\r\n", request_line);
    va_list ap;
    va_start(ap, request_line);
    for (const char *h; (h = va_arg(ap, const char *)) != NULL;)
        at += (size_t)snprintf(head + at, sizeof head - at, "%s\r\n", h);
    va_end(ap);
    snprintf(head + at, sizeof head - at, "\r\n");
    return parse(head);
}

#define GOOD_HEADERS                                                     \
    "Host: server.example.com", "Upgrade: websocket",                    \
    "Connection: Upgrade", "Sec-WebSocket-Key: " RFC_KEY,                \
    "Sec-WebSocket-Version: 13"

static int check(const struct http_request *req, const struct route *r,
                 struct handshake *hs)
{
    memset(hs, 0x55, sizeof *hs);
    return handshake_check(req, r, hs);
}

/* ---- key and accept ---------------------------------------------------- */

static void test_handshake_rfc_example_accept(void **state)
{
    (void)state;
    char out[HANDSHAKE_ACCEPT_LEN + 1];
    memset(out, 'x', sizeof out);
    handshake_accept(RFC_KEY, strlen(RFC_KEY), out);
    assert_string_equal(out, RFC_ACCEPT);
    assert_int_equal(strlen(out), HANDSHAKE_ACCEPT_LEN);
}

static void test_handshake_accept_from_full_check(void **state)
{
    (void)state;
    struct handshake hs;
    const struct http_request *req = build("GET /chat HTTP/1.1",
                                           GOOD_HEADERS, NULL);
    assert_int_equal(check(req, &route_chat, &hs), 0);
    assert_string_equal(hs.accept, RFC_ACCEPT);
    assert_null(hs.protocol);   /* nothing offered */
}

static void test_handshake_key_valid_accepts_16_byte_base64(void **state)
{
    (void)state;
    assert_true(handshake_key_valid(RFC_KEY, 24));
    assert_true(handshake_key_valid("AAAAAAAAAAAAAAAAAAAAAA==", 24));
    assert_true(handshake_key_valid("/////////////////////w==", 24));
    assert_true(handshake_key_valid("+++++++++++++++++++++g==", 24));
    assert_true(handshake_key_valid("x3JJHMbDL1EzLkh9GBhXDw==", 24));
}

static void test_handshake_key_valid_rejects_wrong_length(void **state)
{
    (void)state;
    assert_false(handshake_key_valid("", 0));
    assert_false(handshake_key_valid("dGhlIHNhbXBsZSBub25jZQ=", 23));
    assert_false(handshake_key_valid("dGhlIHNhbXBsZSBub25jZQ===", 25));
    assert_false(handshake_key_valid("dGhlIHNhbXBsZSBub25jZQ", 22));
    /* 17 bytes of base64 */
    assert_false(handshake_key_valid("dGhlIHNhbXBsZSBub25jZQAA", 24));
    assert_false(handshake_key_valid("dGhlIHNhbXBsZSBub25jZQ==AAAA", 28));
}

static void test_handshake_key_valid_rejects_bad_chars(void **state)
{
    (void)state;
    assert_false(handshake_key_valid("dGhlIHNhbXBsZSBub25jZ!==", 24));
    assert_false(handshake_key_valid("dGhlIHNhbXBsZSB-b25jZQ==", 24));
    assert_false(handshake_key_valid("dGhlIHNhbXBsZSB_b25jZQ==", 24));
    assert_false(handshake_key_valid("dGhlIHNhbXBsZSB b25jZQ==", 24));
    assert_false(handshake_key_valid("dGhlIHNhbXBs=SBub25jZQ==", 24));
    assert_false(handshake_key_valid("dGhlIHNhbXBsZSBub25jZQ=A", 24));
    assert_false(handshake_key_valid("dGhlIHNhbXBsZSBub25jZ===", 24));
    assert_false(handshake_key_valid("dGhlIHNhbXBsZSBub25jZ\xc3\xa9=", 24));
}

static void test_handshake_key_valid_rejects_nonzero_padding_bits(void **state)
{
    (void)state;
    /* The 22nd character must carry zero low bits: only A, Q, g, w. */
    const char *ok = "AQgw";
    char key[25] = "dGhlIHNhbXBsZSBub25jZQ==";
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                           "0123456789+/";
    for (const char *c = alphabet; *c; c++) {
        key[21] = *c;
        assert_int_equal(handshake_key_valid(key, 24),
                         strchr(ok, *c) != NULL);
    }
}

/* ---- status decisions -------------------------------------------------- */

static void test_handshake_404_for_null_route(void **state)
{
    (void)state;
    struct handshake hs;
    const struct http_request *req = build("GET /nowhere HTTP/1.1",
                                           GOOD_HEADERS, NULL);
    assert_int_equal(check(req, NULL, &hs), 404);
    /* 404 comes first, even for a POST without an upgrade */
    req = build("POST /nowhere HTTP/1.1", "Host: a", NULL);
    assert_int_equal(check(req, NULL, &hs), 404);
}

static void test_handshake_405_for_non_get(void **state)
{
    (void)state;
    struct handshake hs;
    const char *methods[] = { "POST", "PUT", "HEAD", "get", "GETX", "OPTIONS" };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        char line[64];
        snprintf(line, sizeof line, "%s /chat HTTP/1.1", methods[i]);
        const struct http_request *req = build(line, GOOD_HEADERS, NULL);
        assert_int_equal(check(req, &route_chat, &hs), 405);
    }
    /* 405 before 426 and 400 */
    const struct http_request *req = build("POST /chat HTTP/1.0", NULL);
    assert_int_equal(check(req, &route_chat, &hs), 405);
}

static void test_handshake_426_without_upgrade(void **state)
{
    (void)state;
    struct handshake hs;
    const struct http_request *req = build(
        "GET /chat HTTP/1.1", "Host: a", "Connection: Upgrade",
        "Sec-WebSocket-Key: " RFC_KEY, "Sec-WebSocket-Version: 13", NULL);
    assert_int_equal(check(req, &route_chat, &hs), 426);
    req = build("GET /chat HTTP/1.1", "Host: a", "Upgrade: h2c",
                "Connection: Upgrade", "Sec-WebSocket-Key: " RFC_KEY,
                "Sec-WebSocket-Version: 13", NULL);
    assert_int_equal(check(req, &route_chat, &hs), 426);
    /* plain GET */
    req = build("GET /chat HTTP/1.1", "Host: a", NULL);
    assert_int_equal(check(req, &route_chat, &hs), 426);
}

static void test_handshake_upgrade_token_is_case_insensitive(void **state)
{
    (void)state;
    struct handshake hs;
    const struct http_request *req = build(
        "GET /chat HTTP/1.1", "Host: a", "Upgrade: WebSocket",
        "Connection: upgrade", "Sec-WebSocket-Key: " RFC_KEY,
        "Sec-WebSocket-Version: 13", NULL);
    assert_int_equal(check(req, &route_chat, &hs), 0);
    req = build("GET /chat HTTP/1.1", "host: a", "upgrade: h2c, websocket",
                "connection: UPGRADE", "sec-websocket-key: " RFC_KEY,
                "sec-websocket-version: 13", NULL);
    assert_int_equal(check(req, &route_chat, &hs), 0);
}

static void test_handshake_426_for_other_versions(void **state)
{
    (void)state;
    struct handshake hs;
    const char *versions[] = { "Sec-WebSocket-Version: 8",
                               "Sec-WebSocket-Version: 7",
                               "Sec-WebSocket-Version: 14",
                               "Sec-WebSocket-Version: 130",
                               "Sec-WebSocket-Version: ", NULL };
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        const struct http_request *req;
        if (versions[i])
            req = build("GET /chat HTTP/1.1", "Host: a",
                        "Upgrade: websocket", "Connection: Upgrade",
                        "Sec-WebSocket-Key: " RFC_KEY, versions[i], NULL);
        else   /* missing */
            req = build("GET /chat HTTP/1.1", "Host: a",
                        "Upgrade: websocket", "Connection: Upgrade",
                        "Sec-WebSocket-Key: " RFC_KEY, NULL);
        assert_int_equal(check(req, &route_chat, &hs), 426);
    }
}

static void test_handshake_400_for_bad_key(void **state)
{
    (void)state;
    struct handshake hs;
    const char *keys[] = {
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=",        /* short */
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===",      /* long */
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ!==",       /* bad char */
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==",       /* padding bits */
        "Sec-WebSocket-Key: ",                               /* empty */
        "Sec-WebSocket-Key: hello",
        NULL,                                                /* missing */
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const struct http_request *req;
        if (keys[i])
            req = build("GET /chat HTTP/1.1", "Host: a",
                        "Upgrade: websocket", "Connection: Upgrade",
                        keys[i], "Sec-WebSocket-Version: 13", NULL);
        else
            req = build("GET /chat HTTP/1.1", "Host: a",
                        "Upgrade: websocket", "Connection: Upgrade",
                        "Sec-WebSocket-Version: 13", NULL);
        assert_int_equal(check(req, &route_chat, &hs), 400);
    }
}

static void test_handshake_400_without_host(void **state)
{
    (void)state;
    struct handshake hs;
    const struct http_request *req = build(
        "GET /chat HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade",
        "Sec-WebSocket-Key: " RFC_KEY, "Sec-WebSocket-Version: 13", NULL);
    assert_int_equal(check(req, &route_chat, &hs), 400);
}

static void test_handshake_400_for_http_1_0(void **state)
{
    (void)state;
    struct handshake hs;
    const struct http_request *req = build("GET /chat HTTP/1.0",
                                           GOOD_HEADERS, NULL);
    assert_int_equal(check(req, &route_chat, &hs), 400);
}

static void test_handshake_400_without_connection_upgrade(void **state)
{
    (void)state;
    struct handshake hs;
    const struct http_request *req = build(
        "GET /chat HTTP/1.1", "Host: a", "Upgrade: websocket",
        "Sec-WebSocket-Key: " RFC_KEY, "Sec-WebSocket-Version: 13", NULL);
    assert_int_equal(check(req, &route_chat, &hs), 400);
    req = build("GET /chat HTTP/1.1", "Host: a", "Upgrade: websocket",
                "Connection: keep-alive", "Sec-WebSocket-Key: " RFC_KEY,
                "Sec-WebSocket-Version: 13", NULL);
    assert_int_equal(check(req, &route_chat, &hs), 400);
    req = build("GET /chat HTTP/1.1", "Host: a", "Upgrade: websocket",
                "Connection: upgraded", "Sec-WebSocket-Key: " RFC_KEY,
                "Sec-WebSocket-Version: 13", NULL);
    assert_int_equal(check(req, &route_chat, &hs), 400);
}

static void test_handshake_accepts_connection_keep_alive_upgrade(void **state)
{
    (void)state;
    struct handshake hs;
    const struct http_request *req = build(
        "GET /chat HTTP/1.1", "Host: a", "Upgrade: websocket",
        "Connection: keep-alive, Upgrade", "Sec-WebSocket-Key: " RFC_KEY,
        "Sec-WebSocket-Version: 13", NULL);
    assert_int_equal(check(req, &route_chat, &hs), 0);
    assert_string_equal(hs.accept, RFC_ACCEPT);
}

static void test_handshake_403_for_origin_not_listed(void **state)
{
    (void)state;
    struct handshake hs;
    const char *bad[] = { "Origin: https://evil.example",
                          "Origin: https://example.com.evil",
                          "Origin: https://example.co",
                          "Origin: http://example.com",   /* scheme differs */
                          "Origin: null", "Origin: " };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const struct http_request *req = build("GET /chat HTTP/1.1",
                                               GOOD_HEADERS, bad[i], NULL);
        assert_int_equal(check(req, &route_chat, &hs), 403);
    }
}

static void test_handshake_origin_match_is_case_insensitive(void **state)
{
    (void)state;
    struct handshake hs;
    const char *good[] = { "Origin: https://example.com",
                           "Origin: HTTPS://EXAMPLE.COM",
                           "Origin: https://Example.com",
                           "Origin: http://LOCALHOST:8080" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const struct http_request *req = build("GET /chat HTTP/1.1",
                                               GOOD_HEADERS, good[i], NULL);
        assert_int_equal(check(req, &route_chat, &hs), 0);
    }
}

static void test_handshake_allows_missing_origin(void **state)
{
    (void)state;
    struct handshake hs;
    const struct http_request *req = build("GET /chat HTTP/1.1",
                                           GOOD_HEADERS, NULL);
    assert_int_equal(check(req, &route_chat, &hs), 0);
}

static void test_handshake_route_without_origins_allows_any(void **state)
{
    (void)state;
    struct handshake hs;
    const struct http_request *req = build("GET /echo HTTP/1.1", GOOD_HEADERS,
                                           "Origin: https://evil.example",
                                           NULL);
    assert_int_equal(check(req, &route_echo, &hs), 0);
}

static void test_handshake_checks_run_in_documented_order(void **state)
{
    (void)state;
    struct handshake hs;
    /* version 8 and no Host: 426 before 400 */
    const struct http_request *req = build(
        "GET /chat HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade",
        "Sec-WebSocket-Key: bad", "Sec-WebSocket-Version: 8", NULL);
    assert_int_equal(check(req, &route_chat, &hs), 426);
    /* bad key and bad origin: 400 before 403 */
    req = build("GET /chat HTTP/1.1", "Host: a", "Upgrade: websocket",
                "Connection: Upgrade", "Sec-WebSocket-Key: bad",
                "Sec-WebSocket-Version: 13", "Origin: https://evil", NULL);
    assert_int_equal(check(req, &route_chat, &hs), 400);
}

/* ---- subprotocols ------------------------------------------------------ */

static const char *chosen(const struct route *r, ...)
{
    /* GOOD_HEADERS plus up to 3 extra header lines */
    const char *extra[3] = { NULL, NULL, NULL };
    va_list ap;
    va_start(ap, r);
    for (int i = 0; i < 3; i++) {
        extra[i] = va_arg(ap, const char *);
        if (!extra[i])
            break;
    }
    va_end(ap);
    const struct http_request *req = build("GET /chat HTTP/1.1", GOOD_HEADERS,
                                           extra[0], extra[1], extra[2],
                                           NULL);
    struct handshake hs;
    assert_int_equal(check(req, r, &hs), 0);
    return hs.protocol;
}

static void test_handshake_chooses_subprotocol_by_server_preference(void **state)
{
    (void)state;
    /* server prefers superchat over chat */
    assert_string_equal(chosen(&route_chat,
                               "Sec-WebSocket-Protocol: chat, superchat",
                               NULL), "superchat");
    assert_string_equal(chosen(&route_chat,
                               "Sec-WebSocket-Protocol: superchat, chat",
                               NULL), "superchat");
    assert_string_equal(chosen(&route_chat,
                               "Sec-WebSocket-Protocol: foo, chat, bar",
                               NULL), "chat");
    assert_string_equal(chosen(&route_chat,
                               "Sec-WebSocket-Protocol: ,chat ,", NULL),
                        "chat");
    /* the returned pointer is the route's own string */
    assert_ptr_equal(chosen(&route_chat,
                            "Sec-WebSocket-Protocol: chat", NULL),
                     proto_chat);
}

static void test_handshake_chooses_subprotocol_across_two_headers(void **state)
{
    (void)state;
    assert_string_equal(chosen(&route_chat, "Sec-WebSocket-Protocol: chat",
                               "Sec-WebSocket-Protocol: superchat", NULL),
                        "superchat");
    assert_string_equal(chosen(&route_chat, "Sec-WebSocket-Protocol: foo",
                               "sec-websocket-protocol: bar, chat", NULL),
                        "chat");
    assert_string_equal(chosen(&route_chat,
                               "Sec-WebSocket-Protocol: superchat",
                               "Sec-WebSocket-Protocol: chat", NULL),
                        "superchat");
}

static void test_handshake_no_matching_subprotocol_gives_null(void **state)
{
    (void)state;
    assert_null(chosen(&route_chat, "Sec-WebSocket-Protocol: foo, bar", NULL));
    assert_null(chosen(&route_chat, "Sec-WebSocket-Protocol: foo",
                       "Sec-WebSocket-Protocol: bar", NULL));
    /* names compare case-sensitively, and whole */
    assert_null(chosen(&route_chat, "Sec-WebSocket-Protocol: SuperChat, CHAT",
                       NULL));
    assert_null(chosen(&route_chat, "Sec-WebSocket-Protocol: cha, chats",
                       NULL));
    assert_null(chosen(&route_chat, "Sec-WebSocket-Protocol: ", NULL));
    /* a route with no protocols never picks one */
    const struct http_request *req = build("GET /echo HTTP/1.1", GOOD_HEADERS,
                                           "Sec-WebSocket-Protocol: chat",
                                           NULL);
    struct handshake hs;
    assert_int_equal(check(req, &route_echo, &hs), 0);
    assert_null(hs.protocol);
}

/* ---- responses --------------------------------------------------------- */

static void test_handshake_write_101_with_protocol(void **state)
{
    (void)state;
    struct handshake hs;
    strcpy(hs.accept, RFC_ACCEPT);
    hs.protocol = "chat";
    char out[512];
    size_t n = handshake_write_101(out, sizeof out, &hs);
    assert_true(n > 0);
    assert_int_equal(n, strlen(out));
    assert_string_equal(out,
                        "HTTP/1.1 101 Switching Protocols\r\n"
                        "Upgrade: websocket\r\n"
                        "Connection: Upgrade\r\n"
                        "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                        "Sec-WebSocket-Protocol: chat\r\n"
                        "\r\n");
    /* It parses as an HTTP head ending exactly at n (response line aside). */
    assert_memory_equal(out + n - 4, "\r\n\r\n", 4);
}

static void test_handshake_write_101_without_protocol(void **state)
{
    (void)state;
    struct handshake hs;
    strcpy(hs.accept, RFC_ACCEPT);
    hs.protocol = NULL;
    char out[512];
    size_t n = handshake_write_101(out, sizeof out, &hs);
    assert_true(n > 0);
    assert_non_null(strstr(out, "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"));
    assert_null(strstr(out, "Sec-WebSocket-Protocol"));
    assert_memory_equal(out + n - 4, "\r\n\r\n", 4);
    assert_null(strstr(out, "\r\n\r\n\r\n"));
}

static void test_handshake_write_101_refuses_small_buffer(void **state)
{
    (void)state;
    struct handshake hs;
    strcpy(hs.accept, RFC_ACCEPT);
    hs.protocol = "superchat";
    char out[512];
    size_t n = handshake_write_101(out, sizeof out, &hs);
    assert_true(n > 0);
    assert_int_equal(handshake_write_101(out, n + 1, &hs), n);
    assert_int_equal(handshake_write_101(out, n, &hs), 0);
    assert_int_equal(handshake_write_101(out, 10, &hs), 0);
}

/* Checks one error response: status line, Connection: close, and a
 * Content-Length equal to the body's length. */
static void check_error_response(int status)
{
    char out[1024];
    size_t n = handshake_write_error(out, sizeof out, status);
    assert_true(n > 0);
    assert_int_equal(n, strlen(out));
    char line[128];
    snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status,
             handshake_reason(status));
    assert_int_equal(strncmp(out, line, strlen(line)), 0);
    assert_non_null(strstr(out, "\r\nConnection: close\r\n"));
    const char *end = strstr(out, "\r\n\r\n");
    assert_non_null(end);
    const char *body = end + 4;
    const char *cl = strstr(out, "\r\nContent-Length: ");
    assert_non_null(cl);
    assert_true(cl < end);
    unsigned long len = strtoul(cl + 18, NULL, 10);
    assert_int_equal(len, strlen(body));
    assert_int_equal((size_t)(body - out) + len, n);
    /* The head is a well-formed field section: reuse the request parser on
     * a request line + the response's fields. */
    char req[1200];
    const char *fields = strstr(out, "\r\n") + 2;
    int k = snprintf(req, sizeof req, "GET / HTTP/1.1\r\n%.*s",
                     (int)(body - fields), fields);
    struct http_scan scan = { 0 };
    struct http_request r;
    assert_int_equal(http_parse(&scan, req, (size_t)k, sizeof req, &r),
                     HTTP_DONE);
    const struct http_header *h = http_header_find(&r, "content-length");
    assert_non_null(h);
    /* too small a buffer */
    assert_int_equal(handshake_write_error(out, n, status), 0);
    assert_int_equal(handshake_write_error(out, n + 1, status), n);
}

static void test_handshake_write_error_426_names_version_13(void **state)
{
    (void)state;
    check_error_response(426);
    char out[1024];
    size_t n = handshake_write_error(out, sizeof out, 426);
    assert_true(n > 0);
    assert_non_null(strstr(out, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_non_null(strstr(out, "\r\nUpgrade: websocket\r\n"));
    assert_int_equal(strncmp(out, "HTTP/1.1 426 Upgrade Required\r\n", 31), 0);
}

static void test_handshake_write_error_content_length_matches_body(void **state)
{
    (void)state;
    const int statuses[] = { 400, 401, 403, 404, 405, 408, 409, 426, 429,
                             431, 500, 503, 505, 418, 599 };
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
        check_error_response(statuses[i]);
    char out[1024];
    handshake_write_error(out, sizeof out, 404);
    assert_null(strstr(out, "Sec-WebSocket-Version"));
}

static void test_handshake_reason_phrases(void **state)
{
    (void)state;
    assert_string_equal(handshake_reason(101), "Switching Protocols");
    assert_string_equal(handshake_reason(400), "Bad Request");
    assert_string_equal(handshake_reason(403), "Forbidden");
    assert_string_equal(handshake_reason(404), "Not Found");
    assert_string_equal(handshake_reason(405), "Method Not Allowed");
    assert_string_equal(handshake_reason(426), "Upgrade Required");
    assert_string_equal(handshake_reason(431),
                        "Request Header Fields Too Large");
    assert_string_equal(handshake_reason(505), "HTTP Version Not Supported");
    assert_string_equal(handshake_reason(418), "Client Error");
    assert_string_equal(handshake_reason(599), "Server Error");
}

/* ---- routes ------------------------------------------------------------ */

static void test_route_find_matches_exact_path(void **state)
{
    (void)state;
    struct route routes[2] = { route_chat, route_echo };
    assert_ptr_equal(route_find(routes, 2, "/chat", 5), &routes[0]);
    assert_ptr_equal(route_find(routes, 2, "/echo", 5), &routes[1]);
    assert_null(route_find(routes, 2, "/cha", 4));
    assert_null(route_find(routes, 2, "/chat/", 6));
    assert_null(route_find(routes, 2, "/CHAT", 5));
    assert_null(route_find(routes, 2, "", 0));
    assert_null(route_find(routes, 0, "/chat", 5));
    /* path is matched without the query string */
    const struct http_request *req = build("GET /echo?x=1 HTTP/1.1",
                                           GOOD_HEADERS, NULL);
    const struct route *r = route_find(routes, 2, req->path, req->path_len);
    assert_ptr_equal(r, &routes[1]);
    struct handshake hs;
    assert_int_equal(check(req, r, &hs), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_rfc_example_accept),
        cmocka_unit_test(test_handshake_accept_from_full_check),
        cmocka_unit_test(test_handshake_key_valid_accepts_16_byte_base64),
        cmocka_unit_test(test_handshake_key_valid_rejects_wrong_length),
        cmocka_unit_test(test_handshake_key_valid_rejects_bad_chars),
        cmocka_unit_test(test_handshake_key_valid_rejects_nonzero_padding_bits),
        cmocka_unit_test(test_handshake_404_for_null_route),
        cmocka_unit_test(test_handshake_405_for_non_get),
        cmocka_unit_test(test_handshake_426_without_upgrade),
        cmocka_unit_test(test_handshake_upgrade_token_is_case_insensitive),
        cmocka_unit_test(test_handshake_426_for_other_versions),
        cmocka_unit_test(test_handshake_400_for_bad_key),
        cmocka_unit_test(test_handshake_400_without_host),
        cmocka_unit_test(test_handshake_400_for_http_1_0),
        cmocka_unit_test(test_handshake_400_without_connection_upgrade),
        cmocka_unit_test(test_handshake_accepts_connection_keep_alive_upgrade),
        cmocka_unit_test(test_handshake_403_for_origin_not_listed),
        cmocka_unit_test(test_handshake_origin_match_is_case_insensitive),
        cmocka_unit_test(test_handshake_allows_missing_origin),
        cmocka_unit_test(test_handshake_route_without_origins_allows_any),
        cmocka_unit_test(test_handshake_checks_run_in_documented_order),
        cmocka_unit_test(test_handshake_chooses_subprotocol_by_server_preference),
        cmocka_unit_test(test_handshake_chooses_subprotocol_across_two_headers),
        cmocka_unit_test(test_handshake_no_matching_subprotocol_gives_null),
        cmocka_unit_test(test_handshake_write_101_with_protocol),
        cmocka_unit_test(test_handshake_write_101_without_protocol),
        cmocka_unit_test(test_handshake_write_101_refuses_small_buffer),
        cmocka_unit_test(test_handshake_write_error_426_names_version_13),
        cmocka_unit_test(test_handshake_write_error_content_length_matches_body),
        cmocka_unit_test(test_handshake_reason_phrases),
        cmocka_unit_test(test_route_find_matches_exact_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
