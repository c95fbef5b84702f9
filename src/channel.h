/*
 * channel.h - a worker's end of its channel to the master.
 *
 * Outgoing frames are queued and written before the loop sleeps (one
 * write per turn).  Incoming frames only queue work: a message into a
 * mailbox, a name into the registry copy, a service to start at the next
 * safe point.  No plugin code ever runs from here, so frames are never
 * handled re-entrantly.
 */
#ifndef SNOWD_CHANNEL_H
#define SNOWD_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc.h"
#include "snowd/snowd.h"

/* Bytes the worker may queue for the master before remote tells fail
 * with -SNOW_EFULL. */
#define CHANNEL_OUT_LIMIT (32u << 20)

/* Starts reading the channel and the heartbeat timer. */
void channel_start(int fd);

/* Queues a frame for the master.  Returns 0 or -SNOW_EFULL. */
int channel_send(enum ipc_type type, const void *a, size_t alen,
                 const void *b, size_t blen);

/* Writes what is queued; starts the write watcher if the socket is
 * full. */
void channel_flush(void);

/* Asks the master for `name` and waits for the answer (the only
 * synchronous exchange): 0, -SNOW_EEXIST, or -SNOW_ECLOSED when the
 * master does not answer. */
int channel_register(snow_pid pid, const char *name, size_t len);

/* The actor runtime's hooks for pids of other workers. */
int channel_remote_tell(snow_pid to, snow_pid from, enum snow_msg_type type,
                        uint32_t tag, const void *data, size_t len);
void channel_remote_monitor(snow_pid watcher, snow_pid target);
void channel_remote_demonitor(snow_pid watcher, snow_pid target);
void channel_remote_down(snow_pid watcher, snow_pid target,
                         const char *reason);

/* Rooms (see rooms.h, struct rooms_hooks): this worker's member count
 * of a room; with `first`, waits until the master has it. */
void channel_room_count(const char *room, size_t len, uint32_t count,
                        bool first);
/* Whether `bytes` more may be queued for the master. */
bool channel_has_room(size_t bytes);
/* A publish or presence event for the other workers' members. */
void channel_publish(const char *room, size_t len, snow_pid from,
                     uint32_t kind, const void *data, size_t dlen);

/* Tells the master that `name` of pid is free again. */
void channel_unregister(snow_pid pid, const char *name, size_t len);

void channel_close(void);

/* Tells the master that this draining worker's services have stopped. */
void channel_drained(void);

#endif
