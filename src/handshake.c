/*
 * handshake.c - the server side of the opening handshake.
 *
 * Checks run in a fixed order so each failure has one answer: route (404),
 * method (405), upgrade and version (426), then well-formedness of the
 * upgrade (400), then policy (403).
 */
#include "handshake.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

const char *handshake_reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return status < 500 ? "Client Error" : "Server Error";
    }
}

static bool is_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

bool handshake_key_valid(const char *key, size_t len)
{
    /* 16 bytes encode to 22 characters and "==".  The 22nd carries only
     * two bits of data, so its low four bits must be zero (A, Q, g, w). */
    if (len != 24 || key[22] != '=' || key[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_base64_char(key[i]))
            return false;
    return strchr("AQgw", key[21]) != NULL;
}

void handshake_accept(const char *key, size_t len,
                      char out[HANDSHAKE_ACCEPT_LEN + 1])
{
    unsigned char buf[64 + sizeof WS_GUID], digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;

    if (len > 64)
        len = 64;
    memcpy(buf, key, len);
    memcpy(buf + len, WS_GUID, sizeof WS_GUID - 1);
    EVP_Digest(buf, len + sizeof WS_GUID - 1, digest, &dlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, digest, (int)dlen);
}

static bool origin_allowed(const struct route *route,
                           const struct http_header *origin)
{
    /* Browsers always send Origin; other clients need not, and could
     * forge it anyway, so its absence is allowed (as Phoenix does). */
    if (route->norigins == 0 || origin == NULL)
        return true;
    for (size_t i = 0; i < route->norigins; i++) {
        const char *o = route->origins[i];
        if (strlen(o) == origin->value_len &&
            strncasecmp(o, origin->value, origin->value_len) == 0)
            return true;
    }
    return false;
}

struct protocol_pick {
    const char *wanted;
    bool found;
};

static bool offered_matches(const char *item, size_t len, void *arg)
{
    struct protocol_pick *pick = arg;
    /* Subprotocol names are tokens and compare case-sensitively. */
    pick->found = strlen(pick->wanted) == len &&
                  memcmp(item, pick->wanted, len) == 0;
    return pick->found;
}

/* The first of the route's protocols (server preference) that the client
 * offered in any of its Sec-WebSocket-Protocol fields. */
static const char *choose_protocol(const struct http_request *req,
                                   const struct route *route)
{
    for (size_t p = 0; p < route->nprotocols; p++) {
        struct protocol_pick pick = { route->protocols[p], false };
        for (size_t i = 0; i < req->nheaders; i++) {
            const struct http_header *h = &req->headers[i];
            if (h->name_len == 22 &&
                strncasecmp(h->name, "Sec-WebSocket-Protocol", 22) == 0 &&
                http_list_each(h->value, h->value_len, offered_matches, &pick))
                return route->protocols[p];
        }
    }
    return NULL;
}

static bool header_is(const struct http_request *req, const char *name,
                      const char *value)
{
    const struct http_header *h = http_header_find(req, name);
    return h && strlen(value) == h->value_len &&
           strncasecmp(h->value, value, h->value_len) == 0;
}

int handshake_check(const struct http_request *req, const struct route *route,
                    struct handshake *hs)
{
    if (route == NULL)
        return 404;
    if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0)
        return 405;

    const struct http_header *upgrade = http_header_find(req, "Upgrade");
    const struct http_header *conn = http_header_find(req, "Connection");
    if (!upgrade || !http_list_has(upgrade->value, upgrade->value_len,
                                   "websocket"))
        return 426;
    if (!header_is(req, "Sec-WebSocket-Version", "13"))
        return 426;
    if (req->version_minor < 1 || !conn ||
        !http_list_has(conn->value, conn->value_len, "upgrade") ||
        !http_header_find(req, "Host"))
        return 400;

    const struct http_header *key = http_header_find(req, "Sec-WebSocket-Key");
    if (!key || !handshake_key_valid(key->value, key->value_len))
        return 400;
    if (!origin_allowed(route, http_header_find(req, "Origin")))
        return 403;

    handshake_accept(key->value, key->value_len, hs->accept);
    hs->protocol = choose_protocol(req, route);
    return 0;
}

size_t handshake_write_101(char *out, size_t cap, const struct handshake *hs)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "%s%s%s"
                     "\r\n",
                     hs->accept,
                     hs->protocol ? "Sec-WebSocket-Protocol: " : "",
                     hs->protocol ? hs->protocol : "",
                     hs->protocol ? "\r\n" : "");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t handshake_write_error(char *out, size_t cap, int status)
{
    const char *reason = handshake_reason(status);
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "%s"
                     "Content-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "\r\n"
                     "%s\n",
                     status, reason,
                     status == 426 ? "Upgrade: websocket\r\n"
                                     "Sec-WebSocket-Version: 13\r\n" : "",
                     strlen(reason) + 1, reason);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
