/*
 * rooms.h - the rooms of one process: this worker's members, every
 * worker's member counts, and the fan-out.
 *
 * The master keeps the authoritative counts (members per worker per
 * room) and forwards a publish only to workers that have members.  Each
 * worker keeps its own members, and a copy of the other workers' counts
 * so that it sends a publish to the master only when someone elsewhere
 * listens, and answers snow_room_size without asking.  A worker is
 * forked with the master's table, so its copy starts complete; changes
 * follow through the channel in order.
 *
 * Fan-out: a publish builds its WebSocket frame once, into the room's
 * current block, and queues a reference to those bytes to every member
 * connection (outq.h).  Consecutive messages of a room are contiguous in
 * its block, so a burst extends each member's queued range rather than
 * adding ranges.  Members that asked for SNOW_JOIN_INFO, and services,
 * get an actor message instead.
 *
 * Like the actor runtime, this is plain data driven from outside: the
 * worker supplies hooks for sockets and the channel; the unit tests
 * supply fakes.
 *
 * Invariants:
 * - an actor is in a room at most once; room->members[i]->index == i;
 * - count[self] == number of local members, and others == the sum of
 *   count[] over the other slots;
 * - a room exists while it has members anywhere, a count to send, or a
 *   block being filled in this turn;
 * - a room's `heard` pids (members elsewhere whose join a local presence
 *   member heard) are empty while it has no local presence member, and
 *   hold no pid of a worker whose count is 0.
 */
#ifndef SNOWD_ROOMS_H
#define SNOWD_ROOMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snowd/snowd.h"

#define ROOMS_MAX_WORKERS 64
#define ROOMS_NO_SLOT (~0u)

struct actor;
struct block;

/* What a publish carries besides text and binary messages. */
enum rooms_kind {
    ROOMS_PRESENCE_JOIN = 0x100,
    ROOMS_PRESENCE_LEAVE = 0x101
};

struct rooms_hooks {
    /* Queues a frame, b->data[off, end), to a connection member's
     * socket; its last `payload` bytes are the message.  False when the
     * connection refused it (closing, or over its backpressure limit). */
    bool (*write)(struct actor *a, struct block *b, uint32_t off,
                  uint32_t end, uint32_t payload);
    /* This worker's member count of a room changed.  `first` (0 -> 1):
     * return only once the master knows, so that every publish that
     * follows, from any worker, reaches the new member. */
    void (*count)(const char *room, size_t len, uint32_t count, bool first);
    /* Whether `bytes` more fit into the channel to the master. */
    bool (*remote_room)(size_t bytes);
    /* Sends a publish (or presence event) to the other workers. */
    void (*remote_publish)(const char *room, size_t len, snow_pid from,
                           uint32_t kind, const void *data, size_t dlen);
};

struct rooms_stats {
    uint64_t publishes;       /* snow_publish calls that went out */
    uint64_t deliveries;      /* messages queued to members */
    uint64_t dropped;         /* refused by a member (closing, slow, full) */
    size_t rooms;             /* rooms known to this process */
};

/* Sets up the master's empty table (its hash seed is inherited by the
 * workers it forks). */
void rooms_init(void);

/* In a worker: from now on, slot `slot` is this process's, and its
 * members are reached through `hooks`.  Keeps the inherited counts. */
void rooms_attach(unsigned slot, const struct rooms_hooks *hooks);

/* Frees every room (members are forgotten, not told). */
void rooms_fini(void);

const struct rooms_stats *rooms_stats(void);

/* 1..SNOW_ROOM_MAX bytes of UTF-8 with no control characters. */
bool rooms_name_valid(const char *name, size_t len);

/* The calls behind snow_join, snow_leave, snow_publish and
 * snow_room_size; arguments are already checked (name valid, flags
 * known, text valid UTF-8, dlen <= SNOW_MSG_MAX). */
int rooms_join(struct actor *a, const char *name, size_t len, unsigned flags);
int rooms_leave(struct actor *a, const char *name, size_t len);
int rooms_publish(struct actor *from, const char *name, size_t len,
                  uint32_t kind, const void *data, size_t dlen,
                  unsigned flags);
uint64_t rooms_size(const char *name, size_t len);

/* An actor ends: it leaves every room it is in. */
void rooms_leave_all(struct actor *a);

/* A publish or presence event from another worker: local fan-out only. */
void rooms_deliver_remote(const char *name, size_t len, snow_pid from,
                          uint32_t kind, const void *data, size_t dlen);

/* Worker `slot` now has `count` members of the room.  Returns the count
 * it had before. */
uint32_t rooms_set_count(const char *name, size_t len, unsigned slot,
                         uint32_t count);

/* The slots that have members of the room, as a bit mask. */
uint64_t rooms_worker_mask(const char *name, size_t len);

/* Worker `slot` ended: its counts drop to 0; fn (may be NULL) is called
 * for each room where it had members, before the room may go. */
void rooms_forget_worker(unsigned slot,
                         void (*fn)(void *arg, const char *name, size_t len),
                         void *arg);

/* Calls fn for every room where `slot` has members (a snapshot). */
void rooms_each_count(unsigned slot,
                      void (*fn)(void *arg, const char *name, size_t len,
                                 uint32_t count),
                      void *arg);

/* The number of rooms this process knows; *members gets the sum of
 * their member counts on other workers than this one.  In the master,
 * which has no members of its own: every room with a member anywhere,
 * and every membership. */
size_t rooms_totals(uint64_t *members);

/* End of a loop turn: sends count changes and lets go of the blocks
 * this turn's publishes filled. */
void rooms_flush(void);

#endif
