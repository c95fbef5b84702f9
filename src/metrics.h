/*
 * metrics.h - counters the workers keep and the master reports.
 *
 * Each worker slot has one block of shared memory, mapped by the master
 * before it forks (MAP_SHARED | MAP_ANONYMOUS, like the status page).
 * The worker of the slot is the block's only writer: it bumps plain
 * 64-bit fields with relaxed atomic loads and stores, so the hot path
 * costs an add and the master's reads are never torn.  No messages, no
 * locks.  The master reads every block when /metrics is asked for, so a
 * worker that is stuck in plugin code cannot stall a scrape.
 *
 * Counters must only grow (Prometheus counters do): when the process of
 * a slot has ended and before the slot is used again, the master folds
 * the block's counters into totals it keeps (metrics_retire) and zeroes
 * the block.  Gauges (open connections, workers) describe live blocks
 * only.
 *
 * Per route counters are kept for the first METRICS_ROUTES routes of the
 * worker's configuration; the routes after those share one entry,
 * reported as route="other".  The worker copies each route's path into
 * its block when it starts, so that the master can label the counters of
 * a worker whose configuration differs from its own (after a reload).
 *
 * What the master reads from a block was written by a process that runs
 * plugin code: paths are bounded, sanitized and escaped before they are
 * printed, and nothing read from a block is trusted beyond being a
 * number.
 */
#ifndef SNOWD_METRICS_H
#define SNOWD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct route;

/* Every worker slot the master may use (rooms.h: ROOMS_MAX_WORKERS). */
#define METRICS_SLOTS 64
/* Routes with counters of their own, per worker. */
#define METRICS_ROUTES 64
/* Route path bytes kept, the NUL included; longer paths are cut. */
#define METRICS_PATH_MAX 256

/* Why a connection did not become a WebSocket.  See metrics.c for the
 * label of each. */
enum metrics_hs {
    METRICS_HS_BAD_REQUEST,    /* 400: malformed head or upgrade */
    METRICS_HS_TOO_LARGE,      /* 431: head over max_header */
    METRICS_HS_HTTP_VERSION,   /* 505: not HTTP/1.x */
    METRICS_HS_NOT_FOUND,      /* 404: no WebSocket route */
    METRICS_HS_METHOD,         /* 405: not GET */
    METRICS_HS_UPGRADE,        /* 426: not a version 13 upgrade */
    METRICS_HS_ORIGIN,         /* 403: Origin not allowed */
    METRICS_HS_REFUSED,        /* on_open answered with a status */
    METRICS_HS_ERROR,          /* 500: on_open crashed, or no memory */
    METRICS_HS_UNAVAILABLE,    /* 503: the route's handler is missing */
    METRICS_HS_TIMEOUT,        /* 408: handshake_timeout passed */
    METRICS_HS_ABORTED,        /* the client left before its request */
    METRICS_HS_TLS,            /* the TLS handshake failed */
    METRICS_HS_COUNT
};

enum metrics_actor_kind {
    METRICS_ACTOR_CONNECTION,
    METRICS_ACTOR_SERVICE,
    METRICS_ACTOR_KINDS
};

/* Close codes 1000..1015 one by one, then 3000-3999 and 4000-4999
 * (application codes, unbounded in number) as one bucket each. */
#define METRICS_CLOSE_3XXX 16
#define METRICS_CLOSE_4XXX 17
#define METRICS_CLOSE_OTHER 18
#define METRICS_CLOSE_BUCKETS 19

/* What a worker says about itself; EMPTY: no process (or not yet). */
enum metrics_state {
    METRICS_EMPTY,
    METRICS_STARTING,    /* loading plugins */
    METRICS_READY,       /* serving */
    METRICS_STOPPING     /* draining after SIGTERM */
};

/* The counters of one route.  `open` is a gauge; the rest only grow.
 * Bytes are WebSocket payload bytes of data messages (text and binary):
 * frame headers and control frames are not counted. */
struct metrics_route {
    uint64_t open;            /* upgraded connections not closed yet */
    uint64_t opened;          /* upgrades accepted (on_open said yes) */
    uint64_t msgs_in;         /* complete messages from clients */
    uint64_t bytes_in;
    uint64_t msgs_out;        /* messages queued to clients: snow_send
                                 and room deliveries, one per member */
    uint64_t bytes_out;
    uint64_t spare[2];        /* a cache line per route */
};

/* The counters of a worker that are not per route; all only grow. */
struct metrics_counters {
    uint64_t tcp_accepted;
    uint64_t handshake_failures[METRICS_HS_COUNT];
    uint64_t closes[METRICS_CLOSE_BUCKETS];
    uint64_t crashes[METRICS_ACTOR_KINDS];
    uint64_t service_restarts;
    uint64_t mailbox_overflows;
    uint64_t room_drops;          /* room messages a member missed */
    uint64_t backpressure_closes; /* connections closed with 1008 */
};

struct metrics_block {
    uint32_t state;               /* enum metrics_state */
    uint32_t nroutes;             /* entries of paths[] in use */
    uint64_t tcp_open;            /* gauge: accepted sockets not closed */
    struct metrics_counters c;
    _Alignas(64) struct metrics_route routes[METRICS_ROUTES + 1];
    char paths[METRICS_ROUTES][METRICS_PATH_MAX];  /* "": not reported */
};

/* The block this process counts into.  In a worker, its slot's block
 * after metrics_attach; elsewhere a private block nobody reads, so that
 * counting never needs a check. */
extern struct metrics_block *metrics_self;

/* Adds n to a counter of this process's block.  One writer per block:
 * a relaxed load and store, not a locked add. */
static inline void metrics_add(uint64_t *counter, uint64_t n)
{
    __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + n,
                     __ATOMIC_RELAXED);
}

static inline void metrics_sub(uint64_t *gauge, uint64_t n)
{
    __atomic_store_n(gauge, __atomic_load_n(gauge, __ATOMIC_RELAXED) - n,
                     __ATOMIC_RELAXED);
}

/* A connection did not become a WebSocket, for `why`. */
static inline void metrics_handshake_failure(enum metrics_hs why)
{
    metrics_add(&metrics_self->c.handshake_failures[why], 1);
}

/* The bucket of close code `code`. */
unsigned metrics_close_bucket(unsigned code);

/* A WebSocket connection ended with close code `code` (sent or received
 * first; 1006 when it ended without a close frame). */
static inline void metrics_close(unsigned code)
{
    metrics_add(&metrics_self->c.closes[metrics_close_bucket(code)], 1);
}

/* An accepted socket is closed, after everything about it was counted.
 * A release store: the master reads tcp_open first (acquire), so a
 * scrape that sees the socket gone sees every count it made, which is
 * what lets a test wait for a quiet daemon and then compare counts. */
static inline void metrics_tcp_closed(void)
{
    uint64_t *open = &metrics_self->tcp_open;
    __atomic_store_n(open, __atomic_load_n(open, __ATOMIC_RELAXED) - 1,
                     __ATOMIC_RELEASE);
}

static inline void metrics_crash(enum metrics_actor_kind kind)
{
    metrics_add(&metrics_self->c.crashes[kind], 1);
}

/* ---- in a worker -------------------------------------------------------- */

/* Counts go to `b` from now on (NULL: to a private block).  Copies the
 * paths of the routes with a handler into b and points each route's
 * `metrics` at its counters (the METRICS_ROUTES-th and later at the
 * shared "other" entry).  Marks the block STARTING. */
void metrics_attach(struct metrics_block *b, struct route *routes,
                    size_t nroutes);

/* Unmaps every block but this process's own, so that plugin code cannot
 * write into another worker's counters. */
void metrics_isolate(void);

void metrics_set_state(enum metrics_state state);

/* ---- in the master ------------------------------------------------------ */

/* Maps the METRICS_SLOTS blocks (zeroed) and notes the start time.
 * Returns 0 or -errno. */
int metrics_map(void);

/* Unmaps the blocks and frees the master's totals. */
void metrics_unmap(void);

/* Slot s's block, for the worker to be forked there; NULL when s is out
 * of range or nothing is mapped. */
struct metrics_block *metrics_block(unsigned s);

/* Slot s's process has ended (and has been reaped): its counters join
 * the totals and its block is zeroed for the next one.  `restarted`:
 * the master replaces it after an unexpected death. */
void metrics_retire(unsigned s, bool restarted);

/* Master: one message between workers dropped for a receiver that does
 * not read its channel (master.c bounds what it holds per worker). */
void metrics_channel_dropped(void);

/* Worker processes with a block (live), and how many of them are ready. */
unsigned metrics_workers(unsigned *ready);

/* Client connections the live workers hold (accepted TCP sockets, the
 * ones still in their upgrade included). */
uint64_t metrics_connections(void);

/* What the master knows besides the blocks. */
struct metrics_extra {
    uint64_t rooms;               /* rooms with members anywhere */
    uint64_t room_members;        /* memberships, all workers */
};

/* The Prometheus text exposition (format 0.0.4) of every block, the
 * totals and x.  Returns a string (free it), its length in *len. */
char *metrics_render(const struct metrics_extra *x, size_t *len);

#endif
