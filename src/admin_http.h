/*
 * admin_http.h - what the admin listener answers to a request, sans I/O.
 *
 * The admin listener (admin.c) serves two read-only pages to operators
 * and scrapers: /healthz and /metrics.  This module decides the answer
 * from the bytes a client sent and writes response heads; admin.c does
 * the sockets and fills in the bodies.  The request head is parsed by
 * http.c, the parser the upgrade path uses and a fuzz target covers.
 */
#ifndef SNOWD_ADMIN_HTTP_H
#define SNOWD_ADMIN_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"

/* The largest request head taken, its final blank line included;
 * beyond it the answer is 431. */
#define ADMIN_HEAD_MAX 4096

enum admin_page {
    ADMIN_PAGE_NONE,
    ADMIN_PAGE_HEALTHZ,
    ADMIN_PAGE_METRICS
};

struct admin_answer {
    int status;            /* 0: the head is not complete yet; 200, or
                              400, 404, 405, 431, 505 */
    enum admin_page page;  /* what to serve, with status 200 */
    bool head;             /* a HEAD request: the same head, no body */
};

/* Decides the answer to buf[0..len), every byte received so far; scan
 * carries the parser's progress between calls (zero it to start). */
void admin_http_decide(struct http_scan *scan, const char *buf, size_t len,
                       struct admin_answer *out);

/* The Content-Type of /metrics: the Prometheus text format 0.0.4. */
#define ADMIN_METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Writes a response head for a body of body_len bytes of `type`, with
 * Connection: close (every answer ends its connection) and, for 405,
 * Allow.  Returns its length, or 0 when cap is too small. */
size_t admin_http_head(char *out, size_t cap, int status, const char *type,
                       size_t body_len);

/* The body of an answer other than 200: its reason phrase and a line
 * feed. */
const char *admin_http_error_body(int status);

#endif
