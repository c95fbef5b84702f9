/*
 * fuzz_http.c - libFuzzer target for the request-head parser (src/http.c),
 * and for the handshake decision on every head that parses
 * (src/handshake.c, src/route.c).
 *
 * Input layout: byte 0 picks the split point, the rest is what a client
 * sent.  The head is parsed whole, and incrementally in two pieces with one
 * http_scan carried over; both must agree exactly (same rc, and on
 * HTTP_DONE the same fields at the same offsets).  A parsed head is then
 * checked against the header's contract and run through handshake_check
 * against a fixed route; its answer must be one of the documented statuses
 * and the responses must be well formed.  Any mismatch aborts.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Iinclude \
 *       tests/fuzz/fuzz_http.c src/http.c src/handshake.c src/route.c \
 *       -lcrypto -o /tmp/fuzz_http
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "handshake.h"
#include "http.h"
#include "route.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)
#define MAX_LEN 1024

static char path_chat[] = "/chat";
static char name_chat[] = "chat";
static char proto_a[] = "superchat";
static char proto_b[] = "chat";
static char *protocols[] = { proto_a, proto_b };
static char origin_a[] = "http://example.com";
static char *origins[] = { origin_a };
static struct route ROUTES[2] = {
    { .path = path_chat, .handler_name = name_chat, .protocols = protocols,
      .nprotocols = 2, .origins = origins, .norigins = 1 },
    { .path = path_chat, .handler_name = name_chat },
};

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool check_item(const char *item, size_t len, void *arg)
{
    const struct http_header *h = arg;
    CHECK(len > 0);
    CHECK(item >= h->value && item + len <= h->value + h->value_len);
    CHECK(!is_ows(item[0]) && !is_ows(item[len - 1]));
    CHECK(memchr(item, ',', len) == NULL);
    return false;
}

static void check_request(const struct http_request *req, const char *buf,
                          size_t len)
{
    const char *end = buf + req->head_len;
    CHECK(req->head_len <= len && req->head_len <= MAX_LEN);
    CHECK(req->head_len >= 2 && buf[req->head_len - 1] == '\n');
    CHECK(req->method == buf && req->method_len > 0);
    CHECK(req->target > req->method && req->target + req->target_len < end);
    CHECK(req->target_len > 0);
    CHECK(req->path == req->target && req->path_len <= req->target_len);
    CHECK(memchr(req->path, '?', req->path_len) == NULL);
    CHECK(req->version_minor >= 0 && req->version_minor <= 9);
    CHECK(req->nheaders <= HTTP_MAX_HEADERS);
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        CHECK(h->name > req->target && h->name + h->name_len < end);
        CHECK(h->name_len > 0);
        CHECK(h->value >= h->name + h->name_len + 1);
        CHECK(h->value + h->value_len < end);
        CHECK(memchr(h->name, ':', h->name_len) == NULL);
        if (h->value_len)
            CHECK(!is_ows(h->value[0]) && !is_ows(h->value[h->value_len - 1]));
        for (size_t k = 0; k < h->value_len; k++) {
            unsigned char c = (unsigned char)h->value[k];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        /* find() returns the first header with that name */
        char name[64];
        if (h->name_len < sizeof name) {
            memcpy(name, h->name, h->name_len);
            name[h->name_len] = '\0';
            const struct http_header *f = http_header_find(req, name);
            CHECK(f && f <= h && f->name_len == h->name_len &&
                  strncasecmp(f->name, name, h->name_len) == 0);
        }
        http_list_each(h->value, h->value_len, check_item, (void *)h);
    }
}

static void check_handshake(const struct http_request *req)
{
    const struct route *route = route_find(ROUTES, 1, req->path,
                                           req->path_len);
    for (int pass = 0; pass < 2; pass++) {
        struct handshake hs;
        memset(&hs, 0, sizeof hs);
        const struct route *r = pass ? &ROUTES[1] : route;
        int status = handshake_check(req, r, &hs);
        char out[1024];
        if (status == 0) {
            CHECK(r != NULL);
            CHECK(req->method_len == 3 && memcmp(req->method, "GET", 3) == 0);
            CHECK(req->version_minor >= 1);
            const struct http_header *key =
                http_header_find(req, "Sec-WebSocket-Key");
            CHECK(key && handshake_key_valid(key->value, key->value_len));
            CHECK(http_header_find(req, "Host"));
            char accept[HANDSHAKE_ACCEPT_LEN + 1];
            handshake_accept(key->value, key->value_len, accept);
            CHECK(strlen(hs.accept) == HANDSHAKE_ACCEPT_LEN);
            CHECK(strcmp(accept, hs.accept) == 0);
            if (hs.protocol) {
                bool listed = false;
                for (size_t i = 0; i < r->nprotocols; i++)
                    listed |= hs.protocol == r->protocols[i];
                CHECK(listed);
            }
            size_t n = handshake_write_101(out, sizeof out, &hs);
            CHECK(n > 0 && n == strlen(out));
            CHECK(n >= 4 && memcmp(out + n - 4, "\r\n\r\n", 4) == 0);
            CHECK(strstr(out, hs.accept) != NULL);
        } else {
            CHECK(status == 400 || status == 403 || status == 404 ||
                  status == 405 || status == 426);
            if (r == NULL)
                CHECK(status == 404);
            size_t n = handshake_write_error(out, sizeof out, status);
            CHECK(n > 0 && n == strlen(out));
        }
    }
}

struct snapshot {
    enum http_rc rc;
    size_t fields[8 + 4 * HTTP_MAX_HEADERS];
};

static void snap(enum http_rc rc, const struct http_request *req,
                 const char *buf, struct snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->rc = rc;
    if (rc != HTTP_DONE)
        return;
    size_t k = 0;
    s->fields[k++] = (size_t)(req->method - buf);
    s->fields[k++] = req->method_len;
    s->fields[k++] = (size_t)(req->target - buf);
    s->fields[k++] = req->target_len;
    s->fields[k++] = req->path_len;
    s->fields[k++] = (size_t)req->version_minor;
    s->fields[k++] = req->nheaders;
    s->fields[k++] = req->head_len;
    for (size_t i = 0; i < req->nheaders && i < HTTP_MAX_HEADERS; i++) {
        s->fields[k++] = (size_t)(req->headers[i].name - buf);
        s->fields[k++] = req->headers[i].name_len;
        s->fields[k++] = (size_t)(req->headers[i].value - buf);
        s->fields[k++] = req->headers[i].value_len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t n = size - 1;
    size_t split = ((size_t)data[0] * (n + 1)) >> 8;
    /* An exactly sized copy: ASan catches any read past n. */
    char *buf = malloc(n ? n : 1);
    CHECK(buf);
    memcpy(buf, data + 1, n);

    struct http_request req;
    struct http_scan scan = { 0 };
    enum http_rc whole = http_parse(&scan, buf, n, MAX_LEN, &req);
    CHECK(whole == HTTP_NEED_MORE || whole == HTTP_DONE ||
          whole == HTTP_ERR_MALFORMED || whole == HTTP_ERR_TOO_LARGE ||
          whole == HTTP_ERR_VERSION);
    if (whole == HTTP_NEED_MORE)
        CHECK(n < MAX_LEN);
    struct snapshot a, b;
    snap(whole, &req, buf, &a);
    if (whole == HTTP_DONE) {
        check_request(&req, buf, n);
        check_handshake(&req);
    }

    /* Two pieces: the prefix in its own exactly sized buffer, then all. */
    struct http_scan scan2 = { 0 };
    struct http_request req2;
    char *first = malloc(split ? split : 1);
    CHECK(first);
    memcpy(first, buf, split);
    enum http_rc rc = http_parse(&scan2, first, split, MAX_LEN, &req2);
    if (rc != HTTP_NEED_MORE) {
        snap(rc, &req2, first, &b);
    } else {
        rc = http_parse(&scan2, buf, n, MAX_LEN, &req2);
        snap(rc, &req2, buf, &b);
    }
    CHECK(memcmp(&a, &b, sizeof a) == 0);

    /* A repeated call with the same bytes and the same scan agrees too. */
    if (whole == HTTP_NEED_MORE) {
        rc = http_parse(&scan, buf, n, MAX_LEN, &req2);
        CHECK(rc == HTTP_NEED_MORE);
    }
    free(first);
    free(buf);
    return 0;
}
