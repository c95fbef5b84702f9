/*
 * handshake.h - the WebSocket opening handshake (RFC 6455 section 4.2).
 *
 * Decides, from a parsed request head and the route it names, whether to
 * upgrade and with which subprotocol, and writes the HTTP response.  No
 * I/O; the only dependency is OpenSSL's SHA-1 and base64.
 */
#ifndef SNOWD_HANDSHAKE_H
#define SNOWD_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"
#include "route.h"

#define HANDSHAKE_ACCEPT_LEN 28

struct handshake {
    char accept[HANDSHAKE_ACCEPT_LEN + 1];  /* Sec-WebSocket-Accept */
    const char *protocol;   /* chosen from route->protocols, or NULL */
};

/* Checks an upgrade request for `route` (NULL when no route matched).
 * Returns 0 and fills *hs when the upgrade may proceed, else the HTTP
 * status to answer: 404 no route, 405 not GET, 426 not a version 13
 * WebSocket upgrade, 400 malformed (bad key, missing Host, HTTP/1.0),
 * 403 Origin not allowed. */
int handshake_check(const struct http_request *req, const struct route *route,
                    struct handshake *hs);

/* True when key is the base64 of exactly 16 bytes (section 4.1). */
bool handshake_key_valid(const char *key, size_t len);

/* Computes Sec-WebSocket-Accept for a key (section 4.2.2). */
void handshake_accept(const char *key, size_t len,
                      char out[HANDSHAKE_ACCEPT_LEN + 1]);

/* Writes the 101 response; returns its length, or 0 if cap is too small. */
size_t handshake_write_101(char *out, size_t cap, const struct handshake *hs);

/* Writes a complete error response for `status` (with Connection: close
 * and, for 426, Upgrade and Sec-WebSocket-Version: 13); returns its
 * length, or 0 if cap is too small. */
size_t handshake_write_error(char *out, size_t cap, int status);

/* The reason phrase of an HTTP status. */
const char *handshake_reason(int status);

#endif
