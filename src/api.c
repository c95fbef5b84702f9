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

#include "actor.h"
#include "channel.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "names.h"
#include "rooms.h"
#include "service.h"
#include "snowd/snowd.h"
#include "utf8.h"
#include "worker.h"

/* The connection behind a connection actor, or NULL for a service. */
static struct conn *conn_of(snow_actor *self)
{
    struct actor *a = actor_of(self);
    return a->kind == ACTOR_CONN ? conn_of_actor(a) : NULL;
}

SNOW_API void *snow_state(snow_actor *self)
{
    struct conn *c = conn_of(self);
    if (!c)
        return service_state(actor_of(self));
    return c->route->handler->state_size ? c->user : NULL;
}

SNOW_API int snow_send(snow_actor *self, enum snow_kind kind,
                       const void *data, size_t len)
{
    struct conn *c = conn_of(self);

    if (!c)
        return -SNOW_ENOTCONN;
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
    if (conn_over_backpressure(c))
        return c->state == CONN_OPEN ? -SNOW_EFULL : -SNOW_ECLOSED;
    conn_send_frame(c, kind == SNOW_TEXT ? WS_OP_TEXT : WS_OP_BINARY,
                    data, len);
    struct metrics_route *mr = c->route->metrics;
    metrics_add(&mr->msgs_out, 1);
    metrics_add(&mr->bytes_out, len);
    return 0;
}

SNOW_API int snow_close(snow_actor *self, int code, const char *reason)
{
    struct conn *c = conn_of(self);
    size_t rlen = reason ? strlen(reason) : 0;

    if (!c)
        return -SNOW_ENOTCONN;
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
    if (!c || !c->protocol)
        return NULL;
    return c->route->protocols[c->protocol - 1];
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
    log_info("%s: %s", c ? c->route->handler->name
                         : service_name(actor_of(self)), msg);
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
    case SNOW_ENOENT: return "no such actor, name or timer";
    case SNOW_EEXIST: return "name already registered";
    case SNOW_EFULL: return "mailbox, channel or output full";
    case SNOW_ENOTCONN: return "not a connection actor";
    default: return "unknown error";
    }
}

/* ---- actors --------------------------------------------------------- */

SNOW_API snow_pid snow_self(snow_actor *self)
{
    return actor_of(self)->pid;
}

SNOW_API int snow_tell(snow_actor *self, snow_pid to, uint32_t tag,
                       const void *data, size_t len)
{
    if (!data && len)
        return -SNOW_EINVAL;
    return actor_tell(actor_of(self)->pid, to, SNOW_MSG_TELL, tag, data, len);
}

SNOW_API int snow_register(snow_actor *self, const char *name)
{
    struct actor *a = actor_of(self);
    size_t len = name ? strnlen(name, SNOW_NAME_MAX + 1) : 0;

    if (!names_valid(name, len))
        return -SNOW_EINVAL;
    if (a->flags & ACTOR_EXITED)
        return -SNOW_ECLOSED;
    /* Service names are taken by their services, wherever they run. */
    if (actor_name(a) || names_get(&worker.names, name, len) ||
        service_is_reserved(name, len))
        return -SNOW_EEXIST;
    int rc = channel_register(a->pid, name, len);
    if (rc != 0)
        return rc;
    if (actor_set_name(a, name) != 0)
        return -SNOW_ENOMEM;
    names_put(&worker.names, name, len, a->pid);
    return 0;
}

SNOW_API snow_pid snow_whereis(const char *name)
{
    size_t len = name ? strnlen(name, SNOW_NAME_MAX + 1) : 0;
    return names_valid(name, len) ? names_get(&worker.names, name, len) : 0;
}

SNOW_API int snow_tell_name(snow_actor *self, const char *name, uint32_t tag,
                            const void *data, size_t len)
{
    size_t nlen = name ? strnlen(name, SNOW_NAME_MAX + 1) : 0;

    if (!names_valid(name, nlen))
        return -SNOW_EINVAL;
    snow_pid to = names_get(&worker.names, name, nlen);
    return to ? snow_tell(self, to, tag, data, len) : -SNOW_ENOENT;
}

SNOW_API int64_t snow_timer(snow_actor *self, uint64_t after_ms,
                            uint64_t repeat_ms, uint32_t tag)
{
    struct actor *a = actor_of(self);

    if (a->flags & ACTOR_EXITED)
        return -SNOW_ECLOSED;
    return actor_timer_start(a, worker_now_ms(), after_ms, repeat_ms, tag);
}

SNOW_API int snow_timer_cancel(snow_actor *self, int64_t id)
{
    return actor_timer_cancel(actor_of(self), id);
}

SNOW_API int snow_monitor(snow_actor *self, snow_pid pid)
{
    struct actor *a = actor_of(self);

    if (a->flags & ACTOR_EXITED)
        return -SNOW_ECLOSED;
    if (pid == 0 || pid == a->pid)
        return -SNOW_EINVAL;
    return actor_monitor(a, pid);
}

/* snow_fail and snow_stop act on the actor whose callback is running:
 * what they ask for happens when that callback returns. */
SNOW_API int snow_fail(snow_actor *self, const char *reason)
{
    if (worker.current != actor_of(self))
        return -SNOW_EINVAL;
    worker.outcome = OUTCOME_FAIL;
    snprintf(worker.fail_reason, sizeof worker.fail_reason, "%s",
             reason && reason[0] ? reason : "snow_fail");
    return 0;
}

SNOW_API int snow_stop(snow_actor *self)
{
    if (worker.current != actor_of(self))
        return -SNOW_EINVAL;
    if (worker.outcome != OUTCOME_FAIL)
        worker.outcome = OUTCOME_STOP;
    return 0;
}

/* ---- rooms ---------------------------------------------------------- */

static size_t room_len(const char *room)
{
    return room ? strnlen(room, SNOW_ROOM_MAX + 1) : 0;
}

SNOW_API int snow_join_flags(snow_actor *self, const char *room,
                             unsigned flags)
{
    struct actor *a = actor_of(self);
    size_t len = room_len(room);

    if (!rooms_name_valid(room, len) ||
        (flags & ~(unsigned)(SNOW_JOIN_INFO | SNOW_JOIN_PRESENCE)))
        return -SNOW_EINVAL;
    if (a->flags & ACTOR_EXITED)
        return -SNOW_ECLOSED;
    return rooms_join(a, room, len, flags);
}

SNOW_API int snow_join(snow_actor *self, const char *room)
{
    return snow_join_flags(self, room, 0);
}

SNOW_API int snow_leave(snow_actor *self, const char *room)
{
    size_t len = room_len(room);

    if (!rooms_name_valid(room, len))
        return -SNOW_EINVAL;
    return rooms_leave(actor_of(self), room, len);
}

SNOW_API int snow_publish(snow_actor *self, const char *room,
                          enum snow_kind kind, const void *data, size_t len,
                          unsigned flags)
{
    struct actor *a = actor_of(self);
    size_t rlen = room_len(room);

    if (!rooms_name_valid(room, rlen) || (!data && len) ||
        (kind != SNOW_TEXT && kind != SNOW_BINARY) ||
        (flags & ~(unsigned)SNOW_PUBLISH_EXCLUDE_SELF))
        return -SNOW_EINVAL;
    if (len > SNOW_MSG_MAX)
        return -SNOW_ETOOBIG;
    if (kind == SNOW_TEXT &&
        !(data == worker.validated_text && len == worker.validated_len) &&
        !utf8_valid(data, len))
        return -SNOW_EUTF8;
    /* An actor that has ended may still publish from its last callback
     * (on_close of a crashed connection, a service's terminate): that is
     * how the others hear that it left. */
    return rooms_publish(a, room, rlen, (uint32_t)kind, data, len, flags);
}

SNOW_API int64_t snow_room_size(const char *room)
{
    size_t len = room_len(room);

    if (!rooms_name_valid(room, len))
        return -SNOW_EINVAL;
    return (int64_t)rooms_size(room, len);
}
