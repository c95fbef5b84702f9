/*
 * snowd.h - the plugin API of snowd, version 3.
 *
 * A plugin is a shared object that exports exactly one symbol, the
 * descriptor made by SNOW_PLUGIN().  snowd dlopen()s every *.so in its
 * plugin_dir (in every worker process), checks the descriptor's ABI
 * version and size, maps the handlers it names to URL paths from
 * [route ...] sections, and starts the service actors it declares.
 *
 * Every connection is an actor, and so is every service: an actor's
 * callbacks never run concurrently with each other, so plugin code needs
 * no locks.  Actors talk by telling each other copied bytes with a tag
 * (snow_tell), wherever they run.  Pointers passed to a callback (message
 * data, request fields, close reasons) are borrowed and valid only for
 * the duration of that call.
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
#define SNOW_ABI_VERSION 3

#define SNOW_API __attribute__((visibility("default")))

/* The actor a callback runs for: a connection or a service. */
typedef struct snow_actor snow_actor;

/* An actor's identity, unique in the daemon for its whole life: a pid is
 * never reused, even after its worker restarts.  0 is never a pid.  The
 * layout (node 8 bits, worker 8, worker generation 16, serial 32) is
 * readable with the helpers below, for logs and placement decisions. */
typedef uint64_t snow_pid;

static inline unsigned snow_pid_worker(snow_pid pid)
{
    return (unsigned)(pid >> 48) & 0xff;
}

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
    SNOW_EUTF8,       /* text that is not valid UTF-8 */
    SNOW_ENOENT,      /* no such actor, name or timer */
    SNOW_EEXIST,      /* the name is taken, or this actor has one */
    SNOW_EFULL,       /* the receiver's mailbox (or the channel to its
                         worker) is full: the message was not queued */
    SNOW_ENOTCONN     /* the call needs a connection actor */
};

/* What an actor finds in its mailbox, handed to on_info. */
enum snow_msg_type {
    SNOW_MSG_TELL = 1,   /* from snow_tell/snow_tell_name; from = sender */
    SNOW_MSG_TIMER,      /* a timer fired; from = self, tag = its tag */
    SNOW_MSG_DOWN,       /* a monitored actor ended; from = that actor,
                            data = the reason ("normal", "crashed: ...",
                            "noproc", "worker exited", ...) */
    SNOW_MSG_ROOM,       /* a message published to `room`; from = the
                            publisher, tag = its enum snow_kind */
    SNOW_MSG_JOIN,       /* presence: actor `from` joined `room` */
    SNOW_MSG_LEAVE       /* presence: actor `from` left `room` (or ended;
                            not sent for the members of a worker that
                            died: monitor members whose end matters) */
};

struct snow_msg {
    enum snow_msg_type type;
    uint32_t tag;
    snow_pid from;
    const void *data;    /* borrowed for the call */
    size_t len;
    const char *room;    /* ROOM, JOIN, LEAVE: the room, NUL-terminated;
                            NULL for other types (ABI 3) */
};

/* Largest payload of one actor message. */
#define SNOW_MSG_MAX (64 * 1024)
/* Longest registered name, in bytes. */
#define SNOW_NAME_MAX 64
/* Longest room name, in bytes. */
#define SNOW_ROOM_MAX 128
/* Rooms one actor may be in at once. */
#define SNOW_ROOMS_PER_ACTOR 1024

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

    /* Called with each actor message (tell, timer, DOWN) sent to this
     * connection.  Return 0, or a negative value to crash the connection
     * like on_message.  May be NULL: messages are then dropped. */
    int (*on_info)(snow_actor *self, const struct snow_msg *msg);

    /* Reserved for later callbacks; keep NULL. */
    void *reserved[5];
};

/* When a crashed or stopped service actor is started again. */
enum snow_restart {
    SNOW_PERMANENT = 0,  /* always */
    SNOW_TRANSIENT,      /* only after a crash, not after snow_stop() */
    SNOW_TEMPORARY       /* never */
};

/* A long-lived actor with a daemon-wide name.  Exactly one instance runs
 * in the whole daemon, on a worker the master chooses, registered under
 * `name` so that every actor can reach it with snow_tell_name(). */
struct snow_service {
    const char *name;          /* unique in the daemon, <= SNOW_NAME_MAX */
    enum snow_restart restart;
    size_t state_size;         /* zeroed state, fresh at every start */

    /* Restart intensity: more than max_restarts restarts (after crashes,
     * or after normal ends of a permanent service) within
     * restart_window_ms escalate to the worker, which exits and is
     * restarted by the master.  0 = defaults (3 within 5000 ms). */
    unsigned max_restarts;
    unsigned restart_window_ms;

    /* Called at every start, after the name is registered.  Return 0, or
     * a negative value to crash.  May be NULL. */
    int (*init)(snow_actor *self);

    /* Called with each message.  Return 0, or a negative value to crash.
     * May be NULL. */
    int (*on_info)(snow_actor *self, const struct snow_msg *msg);

    /* Called once when the actor ends for any reason but a dead worker,
     * with the reason.  Messages sent here are still delivered.
     * May be NULL. */
    void (*terminate)(snow_actor *self, const char *reason);

    void *reserved[4];
};

struct snow_plugin {
    uint32_t abi_version;   /* SNOW_ABI_VERSION at build time */
    uint32_t size;          /* sizeof(struct snow_plugin) at build time */
    const char *name;
    const char *version;
    const struct snow_handler *handlers;
    size_t nhandlers;
    const struct snow_service *services;
    size_t nservices;
    void *reserved[4];
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
 * -SNOW_ECLOSED once the connection is closing, -SNOW_ENOTCONN from a
 * service.  When the output already queued is over max_backpressure the
 * route's policy applies: with `backpressure = close` the connection is
 * closed with 1008 and the call fails with -SNOW_ECLOSED; with `drop` the
 * call fails with -SNOW_EFULL and nothing is queued. */
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

/* ---- actors ---------------------------------------------------------- */

/* This actor's pid. */
SNOW_API snow_pid snow_self(snow_actor *self);

/* Copies len bytes (at most SNOW_MSG_MAX) into a message with `tag` for
 * actor `to`, in this worker or another.  Messages from one sender to one
 * receiver arrive in the order sent.  Returns 0 once queued.  For an
 * actor of this worker: -SNOW_EFULL when its mailbox holds mailbox_limit
 * messages, -SNOW_ENOENT when it has ended.  For an actor of another
 * worker: -SNOW_EFULL when the channel to the master is full; the
 * mailbox is checked on arrival, and a message that finds it full, or
 * finds the actor ended, is dropped and counted, as Erlang drops
 * messages to dead processes: reply or monitor to know. */
SNOW_API int snow_tell(snow_actor *self, snow_pid to, uint32_t tag,
                       const void *data, size_t len);

/* Gives this actor a daemon-wide name (1..SNOW_NAME_MAX bytes of
 * printable ASCII).  The name is freed when the actor ends.  Returns 0,
 * -SNOW_EEXIST when another actor has it or this one already has a name,
 * -SNOW_EINVAL for a bad name.  Waits for the master's answer. */
SNOW_API int snow_register(snow_actor *self, const char *name);

/* The pid registered under `name`, or 0.  Answered from this worker's
 * copy of the registry, which follows the master's within microseconds. */
SNOW_API snow_pid snow_whereis(const char *name);

/* snow_tell to the actor registered under `name`; -SNOW_ENOENT when no
 * actor has it. */
SNOW_API int snow_tell_name(snow_actor *self, const char *name, uint32_t tag,
                            const void *data, size_t len);

/* Sends this actor a SNOW_MSG_TIMER message with `tag` after `after_ms`
 * milliseconds, then every `repeat_ms` if that is not 0.  Returns a
 * positive timer id for snow_timer_cancel, or a negative SNOW_E* code.
 * A timer ends with its actor.  A repeating tick that finds the mailbox
 * full is skipped. */
SNOW_API int64_t snow_timer(snow_actor *self, uint64_t after_ms,
                            uint64_t repeat_ms, uint32_t tag);

/* Cancels a timer of this actor; -SNOW_ENOENT if it already fired (for a
 * one-shot timer) or was cancelled. */
SNOW_API int snow_timer_cancel(snow_actor *self, int64_t id);

/* Asks for a SNOW_MSG_DOWN message when actor `pid` ends, with the
 * reason.  Each call gives exactly one DOWN.  When the actor had already
 * ended by the time the request reached it, the reason is "noproc", as
 * in Erlang: for an actor of another worker the request travels through
 * the master, so an actor that ends meanwhile gives "noproc" too. */
SNOW_API int snow_monitor(snow_actor *self, snow_pid pid);

/* Crashes this actor once the current callback returns, with `reason`
 * (logged, and given to monitors as "crashed: REASON").  A connection
 * closes with 1011; a service is restarted by its policy. */
SNOW_API int snow_fail(snow_actor *self, const char *reason);

/* Ends this actor normally once the current callback returns: a service
 * is not restarted unless it is permanent; a connection closes with 1000.
 * Monitors get DOWN with reason "normal". */
SNOW_API int snow_stop(snow_actor *self);


/* ---- rooms ----------------------------------------------------------- */

/* Rooms are named groups of actors across the whole daemon.  A room
 * exists while it has members; its name is 1..SNOW_ROOM_MAX bytes of
 * UTF-8 with no control characters.  An actor that ends leaves all its
 * rooms. */

enum snow_join_flag {
    /* Room messages come to on_info as SNOW_MSG_ROOM instead of being
     * written to the connection's socket.  Services always get them so. */
    SNOW_JOIN_INFO = 1 << 0,
    /* Also get SNOW_MSG_JOIN / SNOW_MSG_LEAVE through on_info when other
     * actors join or leave the room. */
    SNOW_JOIN_PRESENCE = 1 << 1
};

enum snow_publish_flag {
    SNOW_PUBLISH_EXCLUDE_SELF = 1 << 0   /* the publisher does not get it */
};

/* Makes this actor a member of `room`.  By default a connection actor's
 * room messages are written to its socket as WebSocket messages without
 * running any plugin code.  Returns 0, -SNOW_EINVAL (bad name or flags),
 * -SNOW_EEXIST (already a member), -SNOW_EFULL (SNOW_ROOMS_PER_ACTOR
 * reached) or -SNOW_ECLOSED.  Once it returns, every message published
 * afterwards, from any worker, reaches this actor. */
SNOW_API int snow_join(snow_actor *self, const char *room);
SNOW_API int snow_join_flags(snow_actor *self, const char *room,
                             unsigned flags);

/* Leaves `room`; -SNOW_ENOENT when this actor is not a member. */
SNOW_API int snow_leave(snow_actor *self, const char *room);

/* Sends one message to every member of `room`, on every worker.  The
 * WebSocket frame is built once per worker and the same bytes are queued
 * to every member connection.  Members get one publisher's messages in
 * the order published.  The caller need not be a member.  Returns 0
 * (also when the room has no members), -SNOW_EINVAL, -SNOW_EUTF8 (text
 * that is not UTF-8), -SNOW_ETOOBIG (len > SNOW_MSG_MAX) or -SNOW_EFULL
 * (the channel to the other workers is full: nobody got it).
 * A member connection whose output is over max_backpressure gets its
 * route's policy instead: closed with 1008, or the message dropped. */
SNOW_API int snow_publish(snow_actor *self, const char *room,
                          enum snow_kind kind, const void *data, size_t len,
                          unsigned flags);

/* Members of `room` in the whole daemon (0 when it has none), or
 * -SNOW_EINVAL for a bad name.  This worker's members are counted
 * exactly; other workers' counts follow within microseconds. */
SNOW_API int64_t snow_room_size(const char *room);

#ifdef __cplusplus
}
#endif
#endif
