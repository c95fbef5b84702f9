/*
 * api.c - the calls plugins make (include/snowd/snowd.h).
 *
 * Trust boundary: arguments come from plugin code and are checked here,
 * so that a misbehaving handler gets an error code rather than a broken
 * connection or a malformed frame on the wire.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "conn.h"
#include "http.h"
#include "log.h"
#include "snowd/snowd.h"
#include "utf8.h"
#include "worker.h"

static struct conn *conn_of(snow_actor *self)
{
    return (struct conn *)self;
}

SNOW_API void *snow_state(snow_actor *self)
{
    struct conn *c = conn_of(self);
    return c->route->handler->state_size ? c->user : NULL;
}

SNOW_API int snow_send(snow_actor *self, enum snow_kind kind,
                       const void *data, size_t len)
{
    struct conn *c = conn_of(self);

    if (kind != SNOW_TEXT && kind != SNOW_BINARY)
        return -SNOW_EINVAL;
    if (!data && len)
        return -SNOW_EINVAL;
    if (c->state != CONN_OPEN)
        return -SNOW_ECLOSED;
    if (kind == SNOW_TEXT &&
        !(data == worker.validated_text && len == worker.validated_len) &&
        !utf8_valid(data, len))
        return -SNOW_EUTF8;
    conn_send_frame(c, kind == SNOW_TEXT ? WS_OP_TEXT : WS_OP_BINARY,
                    data, len);
    return 0;
}

SNOW_API int snow_close(snow_actor *self, int code, const char *reason)
{
    struct conn *c = conn_of(self);
    size_t rlen = reason ? strlen(reason) : 0;

    /* 1002, 1005, 1006, 1015 describe what the server itself detects or
     * are never sent; a handler may not claim them. */
    if (code < 0 || !ws_close_code_valid((unsigned)code) ||
        code == WS_CLOSE_PROTOCOL_ERROR)
        return -SNOW_EINVAL;
    if (rlen > WS_MAX_CONTROL - 2)
        return -SNOW_ETOOBIG;
    if (reason && !utf8_valid((const uint8_t *)reason, rlen))
        return -SNOW_EUTF8;
    if (c->state != CONN_OPEN)
        return -SNOW_ECLOSED;
    conn_start_close(c, (uint16_t)code, reason);
    return 0;
}

SNOW_API const char *snow_subprotocol(snow_actor *self)
{
    struct conn *c = conn_of(self);
    return c->protocol ? c->route->protocols[c->protocol - 1] : NULL;
}

SNOW_API const char *snow_request_path(const snow_request *req, size_t *len)
{
    const struct http_request *r = (const struct http_request *)req;
    *len = r->target_len;
    return r->target;
}

SNOW_API const char *snow_request_header(const snow_request *req,
                                         const char *name, size_t *len)
{
    const struct http_header *h =
        http_header_find((const struct http_request *)req, name);
    *len = h ? h->value_len : 0;
    return h ? h->value : NULL;
}

SNOW_API void snow_log(snow_actor *self, const char *fmt, ...)
{
    struct conn *c = conn_of(self);
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_info("%s: %s", c->route->handler->name, msg);
}

SNOW_API const char *snow_strerror(int err)
{
    switch (err < 0 ? -err : err) {
    case 0: return "success";
    case SNOW_EINVAL: return "invalid argument";
    case SNOW_ECLOSED: return "connection is closing or closed";
    case SNOW_ETOOBIG: return "too big";
    case SNOW_ENOMEM: return "out of memory";
    case SNOW_EUTF8: return "text is not valid UTF-8";
    default: return "unknown error";
    }
}
