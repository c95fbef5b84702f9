/*
 * snowd.h - the plugin API of snowd, version 1.
 *
 * A plugin is a shared object that exports exactly one symbol, the
 * descriptor made by SNOW_PLUGIN().  snowd dlopen()s every *.so in its
 * plugin_dir, checks the descriptor's ABI version and size, and then maps
 * the handlers it names to URL paths from [route ...] sections.
 *
 * Every connection is an actor: its callbacks never run concurrently with
 * each other, so handler code needs no locks.  Pointers passed to a
 * callback (message data, request fields, close reasons) are borrowed and
 * valid only for the duration of that call.
 *
 * Calls that can fail return 0 on success or a negative SNOW_E* code;
 * snow_strerror() names it.
 */
#ifndef SNOWD_SNOWD_H
#define SNOWD_SNOWD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a struct below changes shape.  A plugin built against a
 * different version is refused at load time with a log line. */
#define SNOW_ABI_VERSION 1

#define SNOW_API __attribute__((visibility("default")))

/* The actor a callback runs for (for now, always a connection). */
typedef struct snow_actor snow_actor;

/* The HTTP upgrade request, readable during on_open only. */
typedef struct snow_request snow_request;

enum snow_kind {
    SNOW_TEXT = 1,   /* UTF-8 text, already validated by snowd */
    SNOW_BINARY = 2
};

/* Error codes, returned negated. */
enum snow_error {
    SNOW_EINVAL = 1,  /* bad argument (kind, close code, NULL data) */
    SNOW_ECLOSED,     /* the connection is closing or closed */
    SNOW_ETOOBIG,     /* message or reason over a protocol limit */
    SNOW_ENOMEM,      /* out of memory */
    SNOW_EUTF8        /* text that is not valid UTF-8 */
};

struct snow_handler {
    /* Name used by `handler =` in a [route] section; unique in the daemon. */
    const char *name;

    /* Bytes of zeroed per-connection state, reachable with snow_state(). */
    size_t state_size;

    /* Called once the upgrade request is valid, before the 101 answer.
     * Return 0 to accept, an HTTP status in 400..599 to refuse the upgrade
     * with that status; any other value is a failure, answered 500.
     * May be NULL. */
    int (*on_open)(snow_actor *self, const snow_request *req);

    /* Called with each complete message.  Return 0, or a negative value to
     * crash this connection: it is closed with 1011 and nothing else is
     * touched.  May be NULL. */
    int (*on_message)(snow_actor *self, enum snow_kind kind,
                      const void *data, size_t len);

    /* Called once when the connection ends, with the close code received
     * or sent (1006 when the peer vanished).  Sends are refused here.
     * May be NULL. */
    void (*on_close)(snow_actor *self, int code,
                     const char *reason, size_t reason_len);

    /* Reserved for later callbacks; keep NULL. */
    void *reserved[6];
};

struct snow_plugin {
    uint32_t abi_version;   /* SNOW_ABI_VERSION at build time */
    uint32_t size;          /* sizeof(struct snow_plugin) at build time */
    const char *name;
    const char *version;
    const struct snow_handler *handlers;
    size_t nhandlers;
    void *reserved[6];
};

/* Defines the plugin's one exported descriptor, e.g.
 *   SNOW_PLUGIN(.name = "echo", .version = "1.0",
 *               .handlers = handlers, .nhandlers = 1);                */
#define SNOW_PLUGIN_SYMBOL snow_plugin_v1
#define SNOW_PLUGIN(...)                                                  \
    SNOW_API const struct snow_plugin SNOW_PLUGIN_SYMBOL = {              \
        .abi_version = SNOW_ABI_VERSION,                                  \
        .size = sizeof(struct snow_plugin), __VA_ARGS__ }

/* The handler's per-connection state (state_size bytes, zeroed at open),
 * or NULL when state_size is 0. */
SNOW_API void *snow_state(snow_actor *self);

/* Queues one message to the client.  Text must be valid UTF-8.  The bytes
 * are copied or written before the call returns.  Fails with
 * -SNOW_ECLOSED once the connection is closing. */
SNOW_API int snow_send(snow_actor *self, enum snow_kind kind,
                       const void *data, size_t len);

/* Starts the close handshake with `code` (1000, 1001, 1003, 1007..1014 or
 * 3000..4999) and an optional UTF-8 reason of at most 123 bytes (may be
 * NULL).  on_close follows once the connection is gone. */
SNOW_API int snow_close(snow_actor *self, int code, const char *reason);

/* The subprotocol chosen for this connection, or NULL. */
SNOW_API const char *snow_subprotocol(snow_actor *self);

/* The request path (with any query string) and a header value by
 * case-insensitive name; NULL when absent.  *len gets the length; the
 * strings are not NUL-terminated. */
SNOW_API const char *snow_request_path(const snow_request *req, size_t *len);
SNOW_API const char *snow_request_header(const snow_request *req,
                                         const char *name, size_t *len);

/* Logs a line under the plugin's name at info level. */
SNOW_API void snow_log(snow_actor *self, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A static description of an error code (positive or negative). */
SNOW_API const char *snow_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
