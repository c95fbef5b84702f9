/*
 * conn.h - one client connection: its socket, its state machine, and the
 * connection actor bound to it.
 *
 * A connection moves HANDSHAKE -> OPEN -> CLOSING -> LINGER -> DEAD, and
 * can skip ahead at any point.  Every live connection sits in exactly one
 * timeout list of its worker, ordered by the time it entered the list, so
 * that expiry costs O(expired) and activity costs O(1) (libev manual,
 * "be smart about timeouts").
 *
 * Connections are freed only at a safe point of the loop (the prepare
 * watcher), never inside a callback that might still use them.
 *
 * TLS: a connection accepted on a tls listener has an OpenSSL object
 * (ssl), NULL for plain TCP, so the plain path pays one predictable
 * branch where it reads or writes.  The TLS handshake runs in the
 * HANDSHAKE state, before the request is read, and counts against the
 * same handshake_timeout.  Every layer above the socket calls sees the
 * same decrypted bytes either way.
 */
#ifndef SNOWD_CONN_H
#define SNOWD_CONN_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actor.h"
#include "http.h"
#include "route.h"
#include "ws.h"

struct block;
struct buf;
struct outq;
struct ssl_ctx_st;
struct ssl_st;

enum conn_state {
    CONN_HANDSHAKE,   /* reading the upgrade request */
    CONN_OPEN,        /* WebSocket frames flow both ways */
    CONN_CLOSING,     /* we sent a close frame; awaiting the peer's */
    CONN_LINGER,      /* output flushed then shut down; draining input */
    CONN_DEAD         /* socket closed; freed at the next safe point */
};

enum conn_list_id {
    LIST_HANDSHAKE,   /* deadline: base + handshake_timeout */
    LIST_ACTIVE,      /* deadline: base + ping_interval or idle_timeout */
    LIST_PINGED,      /* deadline: base + idle_timeout */
    LIST_CLOSING,     /* deadline: base + close_timeout */
    LIST_COUNT,
    LIST_NONE = LIST_COUNT
};

struct conn_list {
    struct conn *head, *tail;
};

enum conn_flag {
    CONN_OPENED = 1 << 0,      /* on_open accepted: on_close is owed */
    CONN_NOTIFIED = 1 << 1,    /* on_close has run */
    CONN_PENDING = 1 << 2,     /* on the worker's pending list */
    CONN_WRITING = 1 << 3,     /* the write watcher is on */
    CONN_PAUSED = 1 << 4,      /* input waits for output to drain */
    CONN_IN_READ = 1 << 5,     /* the read handler flushes on return */
    CONN_SHUT = 1 << 6,        /* shutdown(SHUT_WR) done */
    CONN_READY = 1 << 7        /* on the worker's ready stack */
};

/* TLS progress (conn->tls); always 0 for plain TCP. */
enum conn_tls_flag {
    CONN_TLS_SNIFFED = 1 << 0,          /* the first byte was a TLS record */
    CONN_TLS_OPEN = 1 << 1,             /* the TLS handshake is done */
    CONN_TLS_READ_WANTS_WRITE = 1 << 2, /* retry reading once writable */
    CONN_TLS_WRITE_WANTS_READ = 1 << 3, /* retry writing once readable */
    CONN_TLS_MORE = 1 << 4              /* OpenSSL holds bytes no readiness
                                           event will announce */
};

struct conn {
    ev_io io;
    struct actor actor;            /* pid 0 until the upgrade is valid */
    struct conn *prev, *next;      /* timeout list */
    struct conn *pending_next;     /* worker's pending list */
    struct conn *ready_next;       /* worker's ready stack */
    const struct route *route;
    ev_tstamp base;                /* when it entered its timeout list */
    union {
        struct http_scan scan;     /* HANDSHAKE */
        struct ws_decoder dec;     /* OPEN and after */
    } u;
    struct buf *in;                /* received bytes not yet parsed */
    struct buf *msg;               /* fragments of a message in progress */
    struct outq *out;              /* bytes not yet written */
    uint16_t close_code;           /* sent or received; 0 = none yet */
    uint8_t state;
    uint8_t list;
    uint8_t flags;
    uint8_t protocol;              /* index into route->protocols + 1 */
    uint8_t tls;                   /* enum conn_tls_flag */
    struct ssl_st *ssl;            /* NULL: plain TCP */
    /* The handler's state_size bytes follow, suitably aligned. */
    _Alignas(16) unsigned char user[];
};

/* The connection of a connection actor. */
static inline struct conn *conn_of_actor(struct actor *a)
{
    return (struct conn *)((char *)a - offsetof(struct conn, actor));
}

/* The actor runtime's delivery for connection actors: on_info, while the
 * connection is open. */
void conn_deliver_info(struct actor *a, const struct snow_msg *msg);

/* True when the output is over max_backpressure; then the route's
 * policy has been applied: with `close` the close handshake (1008) has
 * started.  Callers refuse what they were about to queue. */
bool conn_over_backpressure(struct conn *c);

/* Queues b->data[off, end), a room message's frame ending in `payload`
 * bytes of message, to a member's socket.  False when it was not queued:
 * the connection is closing, or over max_backpressure (the policy
 * applied, the drop counted). */
bool conn_room_deliver(struct actor *a, struct block *b, uint32_t off,
                       uint32_t end, uint32_t payload);

/* Takes ownership of an accepted, non-blocking socket; tls: the TLS
 * context of its listener, or NULL for plain TCP.  NULL when out of
 * memory (the socket is closed then). */
struct conn *conn_new(int fd, struct ssl_ctx_st *tls);

/* Queues a frame; the caller checked the state.  Small frames are
 * appended to the output buffer and written once per loop iteration;
 * large ones are written at once when nothing is queued before them. */
void conn_send_frame(struct conn *c, enum ws_opcode op, const void *data,
                     size_t len);

/* Starts the close handshake (section 7.1.2) with a code and reason. */
void conn_start_close(struct conn *c, uint16_t code, const char *reason);

/* Closes the socket now, after running on_close; freed later. */
void conn_kill(struct conn *c, uint16_t code);

/* Called by the worker's sweep timer: expires what is due. */
void conn_sweep(ev_tstamp now);

/* Called by the worker after every I/O callback of a loop iteration:
 * reads the connections that became readable, in the order the kernel
 * reported them. */
void conn_run_ready(void);

/* Called by the worker before the loop sleeps: writes queued output and
 * frees dead connections. */
void conn_run_pending(void);

/* Starts a graceful stop: 1001 to every open connection, handshakes
 * dropped. */
void conn_shutdown_all(void);

#endif
