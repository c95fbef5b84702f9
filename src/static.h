/*
 * static.h - serving files from a route's `static` folder to plain HTTP
 * GET and HEAD requests (a demo page next to the WebSocket routes).
 *
 * Two halves:
 *  - static.c does no I/O: it picks the route, maps a request target to a
 *    safe path relative to the folder, knows the content types, and
 *    writes response heads and HTTP dates.  The unit tests and the fuzz
 *    target drive it directly.
 *  - static_file.c opens, checks and reads the file (the daemon only).
 *
 * Trust boundary: the request target is the client's.  A target that is
 * malformed or tries to leave the folder is answered 404, exactly like a
 * missing file, so that an answer reveals nothing about what lies
 * outside.  Files are served whole, with Connection: close; there is no
 * keep-alive, no range request and no folder listing.
 */
#ifndef SNOWD_STATIC_H
#define SNOWD_STATIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "route.h"

/* The longest decoded path, relative to the folder, that is served. */
#define STATIC_PATH_MAX 1024
/* Larger files are refused (answered 500 and logged): a file is read
 * into memory whole before it is sent. */
#define STATIC_FILE_MAX ((uint64_t)16 << 20)
/* The length of an IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT". */
#define STATIC_DATE_LEN 29

enum static_rc {
    STATIC_OK = 0,
    STATIC_ERR_NO_MATCH,    /* the target is not under the route's path */
    STATIC_ERR_MALFORMED,   /* a bad %-escape, NUL, control byte or '\' */
    STATIC_ERR_TRAVERSAL,   /* a ".." segment */
    STATIC_ERR_TOO_LONG     /* over STATIC_PATH_MAX once decoded (as it
                             * is built: a "." dropped later counts) */
};

struct static_target {
    /* Decoded, NUL-terminated, relative to the folder: segments joined
     * by single slashes, no leading or trailing slash, no empty, "." or
     * ".." segment.  "" is the folder itself. */
    char rel[STATIC_PATH_MAX + 1];
    size_t rel_len;
    /* The path ended with '/' (or "/."): a folder asked for this way is
     * served its index.html, one asked for without it is redirected. */
    bool slash;
    /* The target's path and query as sent, for a redirect's Location. */
    const char *path, *query;   /* query: after the '?', or NULL */
    size_t path_len, query_len;
};

/* The route that answers a request with a file, or NULL when the request
 * is not for static files: a WebSocket upgrade (Upgrade: websocket),
 * or a path that neither equals a route with `static` nor lies under
 * one.  A route whose path equals the request's comes first, so a plain
 * request on a WebSocket-only route keeps its 426. */
const struct route *static_route(const struct route *routes, size_t n,
                                 const struct http_request *req);

/* Maps target[0..len) (a request-target, query string included) of a
 * request on the route with path `prefix` to *out: strips the query and
 * the prefix, percent-decodes once, and normalizes the segments.
 * Returns STATIC_OK, or why the target has no file to serve; *out is
 * then partly written.  Reads only target[0..len). */
enum static_rc static_resolve(const char *prefix, const char *target,
                              size_t len, struct static_target *out);

/* The Content-Type for a file name, by its extension (case-insensitive);
 * "application/octet-stream" when the extension is not known. */
const char *static_content_type(const char *name, size_t len);

/* Writes t (seconds since the epoch, UTC) as an IMF-fixdate
 * (RFC 9110 section 5.6.7) into out, NUL-terminated. */
void static_format_date(char out[STATIC_DATE_LEN + 1], int64_t t);

/* Parses an IMF-fixdate, strictly: the weekday must fit the date.
 * Returns 0 and sets *t, or -1 (the obsolete formats are refused). */
int static_parse_date(const char *s, size_t len, int64_t *t);

/* What a response head says. */
struct static_head {
    int status;
    const char *type;           /* Content-Type, or NULL for none */
    uint64_t length;            /* Content-Length; not sent with 304 */
    int64_t mtime;              /* Last-Modified, if has_mtime */
    bool has_mtime;
    const struct static_target *redirect;   /* 301: Location is its path
                                             * plus '/', then its query */
};

/* Writes the head (status line to blank line) into out[0..cap), as
 * snprintf does: returns the length it needs, and the head is whole only
 * when that is less than cap.  405 adds Allow: GET, HEAD. */
size_t static_write_head(char *out, size_t cap, const struct static_head *h);

/* A response ready to queue: the head, then body_len bytes of body. */
struct static_reply {
    int status;
    char *head;
    size_t head_len;
    char *body;                 /* NULL when there is none */
    size_t body_len;
};

/* Answers a request that static_route gave route r for: checks the
 * method and the path, opens the file beneath r->static_dir and reads
 * it.  Never fails: every problem becomes an error reply, logged as it
 * deserves (each answer at debug, server-side failures at warn).  The
 * caller frees the reply with static_reply_free.  In static_file.c. */
void static_answer(const struct route *r, const struct http_request *req,
                   struct static_reply *out);

void static_reply_free(struct static_reply *rep);

#endif
