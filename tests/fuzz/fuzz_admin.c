/*
 * fuzz_admin.c - libFuzzer target for the admin listener's request
 * decisions (src/admin_http.c, on top of src/http.c).
 *
 * Input layout: byte 0 picks the split point, the rest is what a client
 * sent.  The bytes are decided on whole, and in two pieces with one
 * http_scan carried over, as admin.c does when a request arrives in
 * several reads: both must give the same answer.  The answer must be one
 * the header documents, consistent with the request line where there is
 * one, and its response head must be well formed.  Any mismatch aborts.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Iinclude \
 *       tests/fuzz/fuzz_admin.c src/admin_http.c src/http.c \
 *       src/handshake.c -lcrypto -o /tmp/fuzz_admin
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin_http.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static bool starts(const char *buf, size_t len, const char *s)
{
    size_t n = strlen(s);
    return len >= n && memcmp(buf, s, n) == 0;
}

static void check_answer(const struct admin_answer *a, const char *buf,
                         size_t len)
{
    CHECK(a->status == 0 || a->status == 200 || a->status == 400 ||
          a->status == 404 || a->status == 405 || a->status == 431 ||
          a->status == 505);
    CHECK((a->status == 200) == (a->page != ADMIN_PAGE_NONE));
    CHECK(!a->head || a->status == 200);
    if (a->status == 0)
        CHECK(len < ADMIN_HEAD_MAX);
    if (a->status == 200) {
        CHECK(starts(buf, len, a->head ? "HEAD /" : "GET /"));
        CHECK(starts(buf, len, a->page == ADMIN_PAGE_METRICS
                     ? (a->head ? "HEAD /metrics" : "GET /metrics")
                     : (a->head ? "HEAD /healthz" : "GET /healthz")));
    }
    if (a->status == 0)
        return;
    char out[512];
    int status = a->status == 200 ? 200 : a->status;
    const char *body = admin_http_error_body(status);
    size_t n = admin_http_head(out, sizeof out, status, ADMIN_METRICS_TYPE,
                               strlen(body));
    CHECK(n > 0 && n == strlen(out));
    CHECK(starts(out, n, "HTTP/1.1 "));
    CHECK(n >= 4 && memcmp(out + n - 4, "\r\n\r\n", 4) == 0);
    CHECK(strstr(out, "Connection: close\r\n") != NULL);
    CHECK((strstr(out, "Allow: GET, HEAD\r\n") != NULL) == (status == 405));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t n = size - 1;
    if (n > ADMIN_HEAD_MAX)
        n = ADMIN_HEAD_MAX;   /* admin.c never holds more */
    size_t split = ((size_t)data[0] * (n + 1)) >> 8;
    /* An exactly sized copy: ASan catches any read past n. */
    char *buf = malloc(n ? n : 1);
    CHECK(buf);
    memcpy(buf, data + 1, n);

    struct http_scan scan = { 0 };
    struct admin_answer whole, parts;
    admin_http_decide(&scan, buf, n, &whole);
    check_answer(&whole, buf, n);

    struct http_scan scan2 = { 0 };
    char *first = malloc(split ? split : 1);
    CHECK(first);
    memcpy(first, buf, split);
    admin_http_decide(&scan2, first, split, &parts);
    check_answer(&parts, first, split);
    if (parts.status == 0)
        admin_http_decide(&scan2, buf, n, &parts);
    CHECK(parts.status == whole.status && parts.page == whole.page &&
          parts.head == whole.head);
    free(first);
    free(buf);
    return 0;
}
