/*
 * test_static.c - unit tests for the I/O-free half of static file serving
 * (src/static.c) and the prefix match it relies on (src/route.c).
 *
 * Build: gcc -Wall -Wextra -Isrc -Iinclude tests/unit/test_static.c \
 *            src/static.c src/route.c src/http.c src/handshake.c \
 *            -lcmocka -lcrypto -o /tmp/test_static && /tmp/test_static
 *
 * Every target given to static_resolve is placed just before a PROT_NONE
 * page (guard.h), with no terminator, so a read past `len` faults.
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
#include "route.h"
#include "static.h"

static struct guard G;
static struct static_target T;

static enum static_rc resolve_n(const char *prefix, const char *target,
                                size_t len)
{
    if (!G.base)
        guard_init(&G, 80 * 1024);
    const char *placed = (const char *)guard_place(&G, target, len);
    memset(&T, 0x5a, sizeof T);
    return static_resolve(prefix, placed, len, &T);
}

static enum static_rc resolve(const char *prefix, const char *target)
{
    return resolve_n(prefix, target, strlen(target));
}

static void assert_rel(const char *prefix, const char *target,
                       const char *rel, bool slash)
{
    enum static_rc rc = resolve(prefix, target);
    if (rc != STATIC_OK)
        fail_msg("static_resolve(\"%s\", \"%s\") = %d, want OK", prefix,
                 target, rc);
    if (strcmp(T.rel, rel) != 0)
        fail_msg("static_resolve(\"%s\", \"%s\"): rel \"%s\", want \"%s\"",
                 prefix, target, T.rel, rel);
    assert_int_equal(T.rel_len, strlen(rel));
    if (T.slash != slash)
        fail_msg("static_resolve(\"%s\", \"%s\"): slash %d, want %d", prefix,
                 target, T.slash, slash);
}

static void assert_refused(const char *prefix, const char *target,
                           enum static_rc want)
{
    enum static_rc rc = resolve(prefix, target);
    if (rc != want)
        fail_msg("static_resolve(\"%s\", \"%s\") = %d, want %d", prefix,
                 target, rc, want);
}

/* No ".." segment, no empty or "." segment, no leading or trailing '/',
 * no NUL or backslash: what the file half relies on. */
static void assert_rel_is_safe(void)
{
    assert_int_equal(strlen(T.rel), T.rel_len);
    assert_true(T.rel_len <= STATIC_PATH_MAX);
    assert_null(strchr(T.rel, '\\'));
    if (T.rel_len == 0)
        return;
    assert_true(T.rel[0] != '/' && T.rel[T.rel_len - 1] != '/');
    char copy[STATIC_PATH_MAX + 1];
    memcpy(copy, T.rel, T.rel_len + 1);
    for (char *save, *seg = strtok_r(copy, "/", &save); seg;
         seg = strtok_r(NULL, "/", &save)) {
        assert_string_not_equal(seg, "..");
        assert_string_not_equal(seg, ".");
    }
    assert_null(strstr(T.rel, "//"));
}

/* ---- mapping ---------------------------------------------------------- */

static void test_static_maps_file_under_root_route(void **state)
{
    (void)state;
    assert_rel("/", "/index.html", "index.html", false);
    assert_rel("/", "/js/app.js", "js/app.js", false);
    assert_rel("/", "/", "", true);
}

static void test_static_strips_route_prefix(void **state)
{
    (void)state;
    assert_rel("/demo", "/demo/app.js", "app.js", false);
    assert_rel("/demo", "/demo/", "", true);
    assert_rel("/demo", "/demo", "", false);   /* a redirect to "/demo/" */
    assert_rel("/demo/", "/demo/app.js", "app.js", false);
    assert_rel("/demo/", "/demo", "", false);
    assert_rel("/a/b", "/a/b/c/d.css", "c/d.css", false);
}

static void test_static_prefix_matches_at_slash_boundary_only(void **state)
{
    (void)state;
    assert_refused("/demo", "/demox", STATIC_ERR_NO_MATCH);
    assert_refused("/demo", "/demox/a.js", STATIC_ERR_NO_MATCH);
    assert_refused("/demo", "/dem", STATIC_ERR_NO_MATCH);
    assert_refused("/demo", "/DEMO/a.js", STATIC_ERR_NO_MATCH);
    assert_refused("/demo", "/other/demo/a.js", STATIC_ERR_NO_MATCH);
    /* Not origin-form: no path at all. */
    assert_refused("/", "*", STATIC_ERR_NO_MATCH);
    assert_refused("/", "http://example.com/index.html", STATIC_ERR_NO_MATCH);
    assert_refused("/", "", STATIC_ERR_NO_MATCH);
}

static void test_static_route_prefix_len(void **state)
{
    (void)state;
    assert_int_equal(route_prefix_len("/", "/x", 2), 0);
    assert_int_equal(route_prefix_len("/", "/", 1), 0);
    assert_int_equal(route_prefix_len("/", "x", 1), ROUTE_NO_MATCH);
    assert_int_equal(route_prefix_len("/demo", "/demo", 5), 5);
    assert_int_equal(route_prefix_len("/demo", "/demo/", 6), 5);
    assert_int_equal(route_prefix_len("/demo/", "/demo/x", 7), 5);
    assert_int_equal(route_prefix_len("/demo", "/demox", 6), ROUTE_NO_MATCH);
    /* Only len bytes count: "/demo" is not a prefix of "/de". */
    assert_int_equal(route_prefix_len("/demo", "/demo", 3), ROUTE_NO_MATCH);
}

static void test_static_strips_query_string(void **state)
{
    (void)state;
    assert_rel("/", "/app.js?v=12", "app.js", false);
    assert_true(T.query && T.query_len == 4 && memcmp(T.query, "v=12", 4) == 0);
    assert_int_equal(T.path_len, strlen("/app.js"));
    assert_rel("/", "/?x=../../etc/passwd", "", true);
    assert_rel("/demo", "/demo?a=b", "", false);
    assert_int_equal(T.query_len, 3);
    assert_rel("/", "/a.js?", "a.js", false);
    assert_non_null(T.query);
    assert_int_equal(T.query_len, 0);
    assert_rel("/", "/a.js", "a.js", false);
    assert_null(T.query);
    /* An encoded '?' is part of the name. */
    assert_rel("/", "/what%3F.txt", "what?.txt", false);
    /* A fragment never reaches the query. */
    assert_rel("/", "/a.html?q=1#frag", "a.html", false);
    assert_int_equal(T.query_len, 3);
}

static void test_static_percent_decodes_once(void **state)
{
    (void)state;
    assert_rel("/", "/hello%20world.txt", "hello world.txt", false);
    assert_rel("/", "/%E2%82%AC.txt", "\xe2\x82\xac.txt", false);
    assert_rel("/", "/a%2fb.js", "a/b.js", false);   /* %2f splits too */
    /* Double encoding yields a literal "%2e%2e" name, never "..". */
    assert_rel("/", "/%252e%252e/etc/passwd", "%2e%2e/etc/passwd", false);
    assert_rel_is_safe();
    assert_rel("/", "/%252e%252e%252fetc", "%2e%2e%2fetc", false);
    assert_rel_is_safe();
}

static void test_static_normalizes_empty_and_dot_segments(void **state)
{
    (void)state;
    assert_rel("/", "//a//b///c.txt", "a/b/c.txt", false);
    assert_rel("/", "/./a/./b.txt", "a/b.txt", false);
    assert_rel("/", "/a/.", "a", true);
    assert_rel("/", "/a/./", "a", true);
    assert_rel("/", "/.", "", true);
    assert_rel("/", "/%2e/a.txt", "a.txt", false);
    assert_rel("/", "/a/", "a", true);
    /* Names that merely contain dots are names. */
    assert_rel("/", "/a.../x..", "a.../x..", false);
    assert_rel("/", "/.well-known/x", ".well-known/x", false);
    /* Hidden names are never served. */
    assert_int_equal(resolve("/", "/.../x"), STATIC_ERR_TRAVERSAL);
    assert_int_equal(resolve("/", "/..a/b"), STATIC_ERR_TRAVERSAL);
    assert_int_equal(resolve("/", "/.git/config"), STATIC_ERR_TRAVERSAL);
    assert_int_equal(resolve("/", "/a/%2eenv"), STATIC_ERR_TRAVERSAL);
    assert_int_equal(resolve("/", "/.well-knownx/y"), STATIC_ERR_TRAVERSAL);
}

static void test_static_refuses_dot_dot_segments(void **state)
{
    static const char *attempts[] = {
        "/../etc/passwd", "/..", "/../", "/a/../b", "/a/..", "/a/b/../../..",
        "/%2e%2e/etc/passwd", "/%2E%2E/etc/passwd", "/%2e%2E/", "/.%2e/x",
        "/%2e./x", "/..%2fetc%2fpasswd", "/..%2Fetc", "/a%2f..%2f..%2fb",
        "//../etc", "/./../x", "/a/%2e%2e",
    };
    (void)state;
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
        assert_refused("/", attempts[i], STATIC_ERR_TRAVERSAL);
        /* Behind a prefix too: the prefix is stripped first. */
        char under[128];
        snprintf(under, sizeof under, "/demo%s", attempts[i]);
        assert_refused("/demo", under, STATIC_ERR_TRAVERSAL);
    }
}

static void test_static_refuses_backslashes(void **state)
{
    (void)state;
    assert_refused("/", "/..\\etc\\passwd", STATIC_ERR_MALFORMED);
    assert_refused("/", "/a\\b.txt", STATIC_ERR_MALFORMED);
    assert_refused("/", "/..%5cetc%5cpasswd", STATIC_ERR_MALFORMED);
    assert_refused("/", "/a%5C..%5Cb", STATIC_ERR_MALFORMED);
}

static void test_static_refuses_nul_and_control_bytes(void **state)
{
    (void)state;
    assert_refused("/", "/index.html%00.png", STATIC_ERR_MALFORMED);
    assert_refused("/", "/%00", STATIC_ERR_MALFORMED);
    assert_refused("/", "/a%0d%0aSet-Cookie:x", STATIC_ERR_MALFORMED);
    assert_refused("/", "/a%09b", STATIC_ERR_MALFORMED);
    assert_refused("/", "/a%7fb", STATIC_ERR_MALFORMED);
    /* Raw ones too, and blanks, which the request parser never lets
     * through, in the query as well: it is copied into a Location. */
    assert_int_equal(resolve_n("/", "/a\0b", 4), STATIC_ERR_MALFORMED);
    assert_refused("/", "/a b.txt", STATIC_ERR_MALFORMED);
    assert_refused("/", "/a.txt?x=\r\nSet-Cookie:%20y", STATIC_ERR_MALFORMED);
    assert_refused("/", "/a.txt?\x7f", STATIC_ERR_MALFORMED);
    assert_refused("/", "/a\tb", STATIC_ERR_MALFORMED);
}

static void test_static_refuses_bad_escapes(void **state)
{
    static const char *bad[] = {
        "/%", "/a%", "/a%2", "/%zz", "/%2g", "/%g2", "/%%", "/% 2",
        "/%-1", "/%+f",
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_refused("/", bad[i], STATIC_ERR_MALFORMED);
    /* A '%' in the query is not the path's business. */
    assert_rel("/", "/a.txt?%zz", "a.txt", false);
}

static void test_static_refuses_overlong_paths(void **state)
{
    static char target[70 * 1024];
    (void)state;

    /* Exactly STATIC_PATH_MAX decoded bytes are served ... */
    target[0] = '/';
    memset(target + 1, 'a', STATIC_PATH_MAX);
    target[STATIC_PATH_MAX + 1] = '\0';
    assert_int_equal(resolve("/", target), STATIC_OK);
    assert_int_equal(T.rel_len, STATIC_PATH_MAX);
    /* ... one more is not, and neither is a longer separator. */
    target[STATIC_PATH_MAX + 1] = 'a';
    target[STATIC_PATH_MAX + 2] = '\0';
    assert_int_equal(resolve("/", target), STATIC_ERR_TOO_LONG);
    target[STATIC_PATH_MAX] = '/';
    assert_int_equal(resolve("/", target), STATIC_ERR_TOO_LONG);
    /* Encoded bytes count once decoded: 3 * 1024 bytes of %41 fit. */
    target[0] = '/';
    for (size_t i = 0; i < STATIC_PATH_MAX; i++)
        memcpy(target + 1 + 3 * i, "%41", 3);
    target[1 + 3 * STATIC_PATH_MAX] = '\0';
    assert_int_equal(resolve("/", target), STATIC_OK);
    assert_int_equal(T.rel_len, STATIC_PATH_MAX);
    /* A request head's worth of path (64K, max_header's limit). */
    memset(target, 'b', sizeof target - 1);
    target[0] = '/';
    target[64 * 1024] = '\0';
    assert_int_equal(resolve("/", target), STATIC_ERR_TOO_LONG);
    /* Empty segments cost nothing, however many. */
    memset(target, '/', 64 * 1024);
    memcpy(target + 64 * 1024, "x.js", 5);
    assert_int_equal(resolve("/", target), STATIC_OK);
    assert_string_equal(T.rel, "x.js");
}

static void test_static_results_are_always_safe(void **state)
{
    static const char *targets[] = {
        "/", "/a", "/a/b/", "//./a/.//b/.", "/%2e", "/a/b../c..",
        "/%252e%252e/", "/a%2f%2f%2fb", "/.well-known/a",
    };
    (void)state;
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        assert_int_equal(resolve("/", targets[i]), STATIC_OK);
        assert_rel_is_safe();
    }
}

/* ---- which route ------------------------------------------------------ */

static struct route ROUTES[] = {
    { .path = (char *)"/echo", .handler_name = (char *)"echo" },
    { .path = (char *)"/", .static_dir = (char *)"/srv/www" },
    { .path = (char *)"/demo", .handler_name = (char *)"chat",
      .static_dir = (char *)"/srv/demo" },
    { .path = (char *)"/app/", .static_dir = (char *)"/srv/app" },
};
#define NROUTES (sizeof ROUTES / sizeof ROUTES[0])

static const struct route *route_for(const char *method, const char *target,
                                     const char *extra)
{
    static char head[512];
    static struct http_request req;
    struct http_scan scan = { 0 };
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n",
                     method, target, extra);
    assert_int_equal(http_parse(&scan, head, (size_t)n, sizeof head, &req),
                     HTTP_DONE);
    return static_route(ROUTES, NROUTES, &req);
}

static void test_static_route_longest_prefix_wins(void **state)
{
    (void)state;
    assert_ptr_equal(route_for("GET", "/", ""), &ROUTES[1]);
    assert_ptr_equal(route_for("GET", "/x.js", ""), &ROUTES[1]);
    assert_ptr_equal(route_for("GET", "/demo", ""), &ROUTES[2]);
    assert_ptr_equal(route_for("GET", "/demo/", ""), &ROUTES[2]);
    assert_ptr_equal(route_for("GET", "/demo/a/b.css?x", ""), &ROUTES[2]);
    assert_ptr_equal(route_for("GET", "/demox", ""), &ROUTES[1]);
    assert_ptr_equal(route_for("GET", "/app", ""), &ROUTES[3]);
    assert_ptr_equal(route_for("GET", "/app/i.png", ""), &ROUTES[3]);
    assert_ptr_equal(route_for("GET", "/echo/x", ""), &ROUTES[1]);
    /* Any method: the route answers 405 itself. */
    assert_ptr_equal(route_for("POST", "/x.js", ""), &ROUTES[1]);
}

static void test_static_route_keeps_exact_handler_routes(void **state)
{
    (void)state;
    /* A plain request on a WebSocket-only route keeps its 426. */
    assert_null(route_for("GET", "/echo", ""));
    assert_null(route_for("GET", "/echo?x=1", ""));
}

static void test_static_route_leaves_upgrades_alone(void **state)
{
    (void)state;
    assert_null(route_for("GET", "/demo", "Upgrade: websocket\r\n"));
    assert_null(route_for("GET", "/x", "Upgrade: WebSocket\r\n"));
    assert_null(route_for("GET", "/x", "Upgrade: h2c, websocket\r\n"));
    /* Another protocol's upgrade is a plain request here. */
    assert_ptr_equal(route_for("GET", "/x", "Upgrade: h2c\r\n"), &ROUTES[1]);
}

static void test_static_route_none_without_static_routes(void **state)
{
    struct http_request req;
    struct http_scan scan = { 0 };
    const char head[] = "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n";
    (void)state;
    assert_int_equal(http_parse(&scan, head, sizeof head - 1, 512, &req),
                     HTTP_DONE);
    assert_null(static_route(ROUTES, 1, &req));   /* only /echo */
    assert_null(static_route(ROUTES, 0, &req));
}

/* ---- content types ---------------------------------------------------- */

static void assert_type(const char *name, const char *want)
{
    const char *got = static_content_type(name, strlen(name));
    if (strcmp(got, want) != 0)
        fail_msg("static_content_type(\"%s\") = \"%s\", want \"%s\"", name,
                 got, want);
}

static void test_static_content_types(void **state)
{
    (void)state;
    assert_type("index.html", "text/html; charset=utf-8");
    assert_type("a/b/page.htm", "text/html; charset=utf-8");
    assert_type("style.css", "text/css; charset=utf-8");
    assert_type("app.js", "text/javascript; charset=utf-8");
    assert_type("mod.mjs", "text/javascript; charset=utf-8");
    assert_type("data.json", "application/json");
    assert_type("logo.svg", "image/svg+xml");
    assert_type("logo.png", "image/png");
    assert_type("photo.jpg", "image/jpeg");
    assert_type("photo.jpeg", "image/jpeg");
    assert_type("anim.gif", "image/gif");
    assert_type("favicon.ico", "image/x-icon");
    assert_type("pic.webp", "image/webp");
    assert_type("mod.wasm", "application/wasm");
    assert_type("notes.txt", "text/plain; charset=utf-8");
    assert_type("font.woff2", "font/woff2");
}

static void test_static_content_type_edge_cases(void **state)
{
    (void)state;
    assert_type("INDEX.HTML", "text/html; charset=utf-8");
    assert_type("App.Js", "text/javascript; charset=utf-8");
    assert_type("README", "application/octet-stream");
    assert_type("archive.tar.gz", "application/octet-stream");
    assert_type("a.exe", "application/octet-stream");
    assert_type(".html", "application/octet-stream");     /* a dot file */
    assert_type("d/.css", "application/octet-stream");
    assert_type("v1.html/data", "application/octet-stream");
    assert_type("name.", "application/octet-stream");
    assert_type("", "application/octet-stream");
    assert_type("x.htmlx", "application/octet-stream");
    /* Only len bytes count. */
    assert_string_equal(static_content_type("a.jsonp", 6), "application/json");
}

/* ---- dates ------------------------------------------------------------ */

static void assert_date(int64_t t, const char *want)
{
    char out[STATIC_DATE_LEN + 1];
    int64_t back;

    static_format_date(out, t);
    assert_string_equal(out, want);
    assert_int_equal(static_parse_date(want, strlen(want), &back), 0);
    assert_int_equal(back, t);
}

static void test_static_dates_format_and_parse(void **state)
{
    (void)state;
    assert_date(0, "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_date(784111777, "Sun, 06 Nov 1994 08:49:37 GMT");  /* RFC 9110 */
    assert_date(951782400, "Tue, 29 Feb 2000 00:00:00 GMT");
    assert_date(1709164800, "Thu, 29 Feb 2024 00:00:00 GMT");
    assert_date(4102444799, "Thu, 31 Dec 2099 23:59:59 GMT");
    assert_date(253402300799, "Fri, 31 Dec 9999 23:59:59 GMT");
}

static void test_static_dates_clamp_out_of_range(void **state)
{
    char out[STATIC_DATE_LEN + 1];
    (void)state;
    static_format_date(out, -1);
    assert_string_equal(out, "Thu, 01 Jan 1970 00:00:00 GMT");
    static_format_date(out, INT64_MAX);
    assert_string_equal(out, "Fri, 31 Dec 9999 23:59:59 GMT");
}

static void test_static_dates_refuse_bad_input(void **state)
{
    static const char *bad[] = {
        "Sunday, 06-Nov-94 08:49:37 GMT",     /* RFC 850, obsolete */
        "Sun Nov  6 08:49:37 1994",           /* asctime, obsolete */
        "Mon, 06 Nov 1994 08:49:37 GMT",      /* wrong weekday */
        "Sun, 06 Nov 1994 08:49:37 gmt",
        "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Wed, 29 Feb 2023 00:00:00 GMT",      /* not a leap year */
        "Thu, 31 Apr 2024 00:00:00 GMT",
        "Thu, 00 Jan 1970 00:00:00 GMT",
        "Thu, 01 Jan 1970 24:00:00 GMT",
        "Thu, 01 Jan 1970 00:60:00 GMT",
        "Thu, 01 Jan 1970 00:00:60 GMT",
        "Wed, 31 Dec 1969 23:59:59 GMT",      /* before the epoch */
        "Thu, 1 Jan 1970 00:00:00 GMT",
        "Thu, 01 Jan 1970 00:00:00 GMT ",
        "Thu, 0x Jan 1970 00:00:00 GMT",
        "",
    };
    int64_t t = 42;
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (static_parse_date(bad[i], strlen(bad[i]), &t) == 0)
            fail_msg("static_parse_date(\"%s\") accepted it", bad[i]);
    }
    assert_int_equal(t, 42);
}

/* ---- response heads --------------------------------------------------- */

static void test_static_head_for_a_file(void **state)
{
    char out[1024];
    struct static_head h = { .status = 200, .type = "text/css; charset=utf-8",
                             .length = 1234, .mtime = 784111777,
                             .has_mtime = true };
    (void)state;
    size_t n = static_write_head(out, sizeof out, &h);
    assert_int_equal(n, strlen(out));
    assert_string_equal(out,
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/css; charset=utf-8\r\n"
        "Content-Length: 1234\r\n"
        "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Cache-Control: no-cache\r\n"
        "Connection: close\r\n\r\n");
}

static void test_static_head_not_modified_has_no_length(void **state)
{
    char out[1024];
    struct static_head h = { .status = 304, .type = "text/html",
                             .length = 99, .mtime = 0, .has_mtime = true };
    (void)state;
    static_write_head(out, sizeof out, &h);
    assert_true(strncmp(out, "HTTP/1.1 304 Not Modified\r\n", 27) == 0);
    assert_null(strstr(out, "\r\nContent-Length:"));
    assert_null(strstr(out, "\r\nContent-Type:"));
    assert_non_null(strstr(out, "Last-Modified: Thu, 01 Jan 1970"));
}

static void test_static_head_redirect_keeps_the_query(void **state)
{
    char out[1024];
    struct static_head h = { .status = 301 };
    (void)state;
    assert_int_equal(resolve("/demo", "/demo/sub%20dir?x=1&y"), STATIC_OK);
    h.redirect = &T;
    static_write_head(out, sizeof out, &h);
    assert_true(strncmp(out, "HTTP/1.1 301 Moved Permanently\r\n", 32) == 0);
    assert_non_null(strstr(out, "\r\nLocation: /demo/sub%20dir/?x=1&y\r\n"));
    assert_non_null(strstr(out, "\r\nContent-Length: 0\r\n"));
    assert_int_equal(resolve("/demo", "/demo"), STATIC_OK);
    static_write_head(out, sizeof out, &h);
    assert_non_null(strstr(out, "\r\nLocation: /demo/\r\n"));
}

static void test_static_head_405_allows_get_and_head(void **state)
{
    char out[1024];
    struct static_head h = { .status = 405, .type = "text/plain",
                             .length = 19 };
    (void)state;
    static_write_head(out, sizeof out, &h);
    assert_true(strncmp(out, "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0);
    assert_non_null(strstr(out, "\r\nAllow: GET, HEAD\r\n"));
}

static void test_static_head_short_buffer_reports_length(void **state)
{
    char full[1024], out[64];
    struct static_head h = { .status = 200, .type = "image/png",
                             .length = 5, .mtime = 1, .has_mtime = true };
    (void)state;
    size_t n = static_write_head(full, sizeof full, &h);
    for (size_t cap = 0; cap < sizeof out; cap++) {
        memset(out, '#', sizeof out);
        assert_int_equal(static_write_head(out, cap, &h), n);
        for (size_t i = cap; i < sizeof out; i++)
            assert_int_equal(out[i], '#');   /* nothing past cap */
        if (cap)
            assert_int_equal(out[cap - 1], '\0');
    }
    assert_int_equal(static_write_head(NULL, 0, &h), n);
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
        cmocka_unit_test(test_static_maps_file_under_root_route),
        cmocka_unit_test(test_static_strips_route_prefix),
        cmocka_unit_test(test_static_prefix_matches_at_slash_boundary_only),
        cmocka_unit_test(test_static_route_prefix_len),
        cmocka_unit_test(test_static_strips_query_string),
        cmocka_unit_test(test_static_percent_decodes_once),
        cmocka_unit_test(test_static_normalizes_empty_and_dot_segments),
        cmocka_unit_test(test_static_refuses_dot_dot_segments),
        cmocka_unit_test(test_static_refuses_backslashes),
        cmocka_unit_test(test_static_refuses_nul_and_control_bytes),
        cmocka_unit_test(test_static_refuses_bad_escapes),
        cmocka_unit_test(test_static_refuses_overlong_paths),
        cmocka_unit_test(test_static_results_are_always_safe),
        cmocka_unit_test(test_static_route_longest_prefix_wins),
        cmocka_unit_test(test_static_route_keeps_exact_handler_routes),
        cmocka_unit_test(test_static_route_leaves_upgrades_alone),
        cmocka_unit_test(test_static_route_none_without_static_routes),
        cmocka_unit_test(test_static_content_types),
        cmocka_unit_test(test_static_content_type_edge_cases),
        cmocka_unit_test(test_static_dates_format_and_parse),
        cmocka_unit_test(test_static_dates_clamp_out_of_range),
        cmocka_unit_test(test_static_dates_refuse_bad_input),
        cmocka_unit_test(test_static_head_for_a_file),
        cmocka_unit_test(test_static_head_not_modified_has_no_length),
        cmocka_unit_test(test_static_head_redirect_keeps_the_query),
        cmocka_unit_test(test_static_head_405_allows_get_and_head),
        cmocka_unit_test(test_static_head_short_buffer_reports_length),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
