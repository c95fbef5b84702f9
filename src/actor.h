/*
 * actor.h - the actor runtime of one worker: pids, mailboxes, the run
 * queue, timers and monitors.
 *
 * Plain data, driven from outside: the worker enqueues (actor_tell),
 * runs with a budget (actor_run), and asks for the next deadline
 * (actor_next_deadline).  No libev, no sockets, no plugin knowledge: what
 * an actor does with a message, and how messages reach other workers, are
 * hooks the worker supplies.  The unit tests drive it without a loop.
 *
 * Ownership: the owner (a connection, a service) embeds struct actor and
 * keeps its memory valid until the next actor_run() has returned after
 * actor_exit(), so that an actor ending inside its own callback is safe.
 * Messages, timers and monitor records belong to the runtime.
 *
 * Invariants:
 * - a pid is (node << 56 | slot << 48 | generation << 32 | serial); the
 *   serial only grows within a generation, so a pid is never reused;
 * - an actor is on the run queue iff its mailbox is not empty and it has
 *   not exited, except that one which exits while queued may stay there,
 *   skipped, until the next actor_run returns;
 * - mailboxes hold at most mailbox_limit tells; timer and DOWN messages
 *   do not count against the limit, since they are bounded by the timers
 *   and monitors an actor holds.
 */
#ifndef SNOWD_ACTOR_H
#define SNOWD_ACTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snowd/snowd.h"

struct actor_msg;
struct actor_ext;
struct rooms_member;

enum actor_kind {
    ACTOR_CONN,
    ACTOR_SERVICE
};

enum actor_flag {
    ACTOR_RUNNABLE = 1 << 0,   /* on the run queue */
    ACTOR_EXITED = 1 << 1      /* actor_exit has run */
};

struct actor {
    snow_pid pid;
    struct actor_msg *head, *tail;  /* mailbox, oldest first */
    uint32_t nmsgs;                 /* tells in the mailbox */
    uint8_t kind;
    uint8_t flags;
    struct actor *run_next;
    struct actor_ext *ext;          /* monitors, timers, name; lazily */
    struct rooms_member *rooms;     /* the rooms it is in (rooms.c) */
};

/* How the runtime reaches the world around it.  Every hook is required. */
struct actor_hooks {
    /* Hands one message to the actor's code.  The message and its data
     * are borrowed for the call.  The actor may exit inside. */
    void (*deliver)(struct actor *a, const struct snow_msg *msg);

    /* Messages and monitor traffic for pids of other workers.  remote_tell
     * returns 0 or -SNOW_EFULL. */
    int (*remote_tell)(snow_pid to, snow_pid from, enum snow_msg_type type,
                       uint32_t tag, const void *data, size_t len);
    void (*remote_monitor)(snow_pid watcher, snow_pid target);
    void (*remote_demonitor)(snow_pid watcher, snow_pid target);
    void (*remote_down)(snow_pid watcher, snow_pid target,
                        const char *reason);

    /* The actor has ended (after its DOWNs went out): release what the
     * worker keeps for it, such as its registered name. */
    void (*exited)(struct actor *a, const char *reason);
};

struct actor_rt_config {
    unsigned node, slot, generation;
    uint32_t mailbox_limit;     /* tells per mailbox */
    uint32_t budget;            /* messages per actor per turn */
    const struct actor_hooks *hooks;
};

struct actor_stats {
    uint64_t delivered;
    uint64_t mailbox_overflows;
    uint64_t timer_ticks_skipped;
    size_t actors;
    size_t queued;              /* messages in all mailboxes */
};

/* Sets up the runtime of this worker.  Call once, before any actor. */
void actor_rt_init(const struct actor_rt_config *cfg);

/* Frees every queued message, timer and monitor record.  Actors still
 * alive are forgotten, not exited; fini still resets their structs, so
 * their owners free them after this call. */
void actor_rt_fini(void);

const struct actor_stats *actor_rt_stats(void);

/* The pid an actor of this worker would get next has this prefix. */
snow_pid actor_pid_make(unsigned node, unsigned slot, unsigned generation,
                        uint32_t serial);
unsigned actor_pid_node(snow_pid pid);
unsigned actor_pid_slot(snow_pid pid);
unsigned actor_pid_generation(snow_pid pid);
uint32_t actor_pid_serial(snow_pid pid);
/* True when pid belongs to this worker's current generation. */
bool actor_pid_is_local(snow_pid pid);

/* Gives `a` (zeroed by the caller or not) a fresh pid and makes it
 * reachable.  Returns 0, or -SNOW_ENOMEM.  The memory of an exited actor
 * may not be started again before the next actor_run has returned. */
int actor_start(struct actor *a, enum actor_kind kind);

/* Ends `a`: drops its mailbox, cancels its timers, removes the monitors
 * it holds, sends DOWN with `reason` to every actor monitoring it (local
 * or remote), makes its pid unreachable, then calls hooks->exited.
 * Idempotent.  Safe inside a's own deliver. */
void actor_exit(struct actor *a, const char *reason);

/* The live local actor with this pid, or NULL. */
struct actor *actor_find(snow_pid pid);

/* Queues a message for `to`: in this worker, into its mailbox; otherwise
 * through hooks->remote_tell.  Returns 0, -SNOW_EFULL (mailbox at
 * mailbox_limit; counted), -SNOW_ENOENT (local pid that is not alive),
 * -SNOW_ETOOBIG (len > SNOW_MSG_MAX) or -SNOW_ENOMEM.
 * SNOW_MSG_TIMER and SNOW_MSG_DOWN are never refused for fullness. */
int actor_tell(snow_pid from, snow_pid to, enum snow_msg_type type,
               uint32_t tag, const void *data, size_t len);

/* Delivers up to `budget` messages per runnable actor, round-robin, and
 * at most `max` messages in all.  Returns the number delivered.  An actor
 * left with messages goes to the back of the queue. */
size_t actor_run(size_t max);

/* True when some actor has messages waiting. */
bool actor_pending(void);

/* Timers.  Times are milliseconds of a monotonic clock the worker
 * passes in.  actor_timer_start returns a positive id or -SNOW_ENOMEM /
 * -SNOW_EINVAL (repeat_ms of 0 is one-shot). */
int64_t actor_timer_start(struct actor *a, uint64_t now_ms, uint64_t after_ms,
                          uint64_t repeat_ms, uint32_t tag);
int actor_timer_cancel(struct actor *a, int64_t id);
/* Fires every timer due at `now_ms` (queues its message).  Returns how
 * many fired. */
size_t actor_timers_run(uint64_t now_ms);
/* The earliest timer deadline, or UINT64_MAX when there is none. */
uint64_t actor_next_deadline(void);

/* Monitors.  actor_monitor: `watcher` gets SNOW_MSG_DOWN when `target`
 * ends; a local target that is not alive gives DOWN "noproc" at once; a
 * remote target goes through hooks->remote_monitor. */
int actor_monitor(struct actor *watcher, snow_pid target);
/* From another worker: a remote actor watches a local one.  A target that
 * is not alive answers with hooks->remote_down(..., "noproc"). */
void actor_monitor_from_remote(snow_pid watcher, snow_pid target);
/* From another worker: a remote watcher ended; forget its monitors on
 * the local target. */
void actor_demonitor_from_remote(snow_pid watcher, snow_pid target);
/* From another worker: a remote target ended; deliver DOWN to the local
 * watcher and forget that monitor record. */
void actor_down_from_remote(snow_pid watcher, snow_pid target,
                            const char *reason);
/* A whole worker generation ended: every local monitor of an actor that
 * lived there gets DOWN "worker exited". */
void actor_worker_down(unsigned slot, unsigned generation);

/* Plugins see an actor as the opaque snow_actor. */
static inline snow_actor *actor_handle(struct actor *a)
{
    return (snow_actor *)a;
}

static inline struct actor *actor_of(snow_actor *self)
{
    return (struct actor *)self;
}

/* The registered name kept with an actor (a copy), or NULL. */
int actor_set_name(struct actor *a, const char *name);
const char *actor_name(const struct actor *a);

#endif
