/*
 * http.h - an incremental, zero-copy parser for HTTP/1.1 request heads.
 *
 * The caller keeps every byte received so far in one buffer and calls
 * http_parse again as more arrive; a small scan state makes the repeated
 * calls linear in the bytes received, even one byte at a time.  Results
 * point into the caller's buffer.  No I/O, no allocation, no logging.
 *
 * Grammar: RFC 9112 section 3 (request line) and section 5 (fields), with
 * bare LF accepted as a line end (9112 section 2.2) and obsolete line
 * folding refused (section 5.2).
 */
#ifndef SNOWD_HTTP_H
#define SNOWD_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEADERS 64

struct http_header {
    const char *name;
    size_t name_len;
    const char *value;     /* leading and trailing whitespace trimmed */
    size_t value_len;
};

struct http_request {
    const char *method;
    size_t method_len;
    const char *target;     /* request-target as sent */
    size_t target_len;
    const char *path;       /* target up to '?' */
    size_t path_len;
    int version_minor;      /* HTTP/1.x */
    size_t nheaders;
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t head_len;        /* bytes of the head, final blank line included */
};

enum http_rc {
    HTTP_NEED_MORE,          /* the head is not complete yet */
    HTTP_DONE,               /* *req is filled in */
    HTTP_ERR_MALFORMED,      /* answer 400 */
    HTTP_ERR_TOO_LARGE,      /* answer 431: head over max_len or too many fields */
    HTTP_ERR_VERSION         /* not HTTP/1.x: answer 505 */
};

/* How far the search for the end of the head got; zero it to start. */
struct http_scan {
    size_t scanned;
};

/* Parses buf[0..len), the bytes received so far.  max_len bounds the head
 * (the final blank line included).  A first byte that cannot start a
 * method is HTTP_ERR_MALFORMED at once, whatever follows (a TLS
 * ClientHello sent to a plain port is refused without waiting). */
enum http_rc http_parse(struct http_scan *scan, const char *buf, size_t len,
                        size_t max_len, struct http_request *req);

/* The value of the first field named `name` (case-insensitive), or NULL. */
const struct http_header *http_header_find(const struct http_request *req,
                                           const char *name);

/* True when a comma-separated field value lists `token`
 * (case-insensitive), as Connection: keep-alive, Upgrade does. */
bool http_list_has(const char *value, size_t len, const char *token);

/* Calls fn for each element of a comma-separated list, trimmed, skipping
 * empty elements; stops and returns true if fn returns true. */
bool http_list_each(const char *value, size_t len,
                    bool (*fn)(const char *item, size_t item_len, void *arg),
                    void *arg);

#endif
