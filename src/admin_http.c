/*
 * admin_http.c - the admin listener's request decisions (admin_http.h).
 *
 * Checks run in a fixed order so each request has one answer: a head
 * that does not parse (400, 431, 505), then the path (404), then the
 * method (405).  Only the path of the target counts: a query string is
 * ignored, as scrapers may add one.
 */
#include "admin_http.h"

#include <stdio.h>
#include <string.h>

#include "handshake.h"

static bool path_is(const struct http_request *req, const char *path)
{
    return req->path_len == strlen(path) &&
           memcmp(req->path, path, req->path_len) == 0;
}

static bool method_is(const struct http_request *req, const char *method)
{
    return req->method_len == strlen(method) &&
           memcmp(req->method, method, req->method_len) == 0;
}

void admin_http_decide(struct http_scan *scan, const char *buf, size_t len,
                       struct admin_answer *out)
{
    struct http_request req;

    out->status = 0;
    out->page = ADMIN_PAGE_NONE;
    out->head = false;
    switch (http_parse(scan, buf, len, ADMIN_HEAD_MAX, &req)) {
    case HTTP_NEED_MORE: return;
    case HTTP_ERR_MALFORMED: out->status = 400; return;
    case HTTP_ERR_TOO_LARGE: out->status = 431; return;
    case HTTP_ERR_VERSION: out->status = 505; return;
    case HTTP_DONE: break;
    }
    if (path_is(&req, "/healthz"))
        out->page = ADMIN_PAGE_HEALTHZ;
    else if (path_is(&req, "/metrics"))
        out->page = ADMIN_PAGE_METRICS;
    else {
        out->status = 404;
        return;
    }
    out->head = method_is(&req, "HEAD");
    if (!out->head && !method_is(&req, "GET")) {
        out->status = 405;
        out->page = ADMIN_PAGE_NONE;
        out->head = false;
        return;
    }
    out->status = 200;
}

size_t admin_http_head(char *out, size_t cap, int status, const char *type,
                       size_t body_len)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "%s"
                     "Connection: close\r\n"
                     "\r\n",
                     status, status == 200 ? "OK" : handshake_reason(status),
                     type, body_len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

const char *admin_http_error_body(int status)
{
    switch (status) {
    case 400: return "Bad Request\n";
    case 404: return "Not Found\n";
    case 405: return "Method Not Allowed\n";
    case 431: return "Request Header Fields Too Large\n";
    case 503: return "Service Unavailable\n";
    case 505: return "HTTP Version Not Supported\n";
    default: return "Error\n";
    }
}
