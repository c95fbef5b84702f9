/*
 * channel.c - the worker's end of the master channel (see channel.h).
 *
 * Trust: the master is trusted (it is snowd's own code and never runs
 * plugins); a frame that breaks the protocol means the two ends disagree,
 * and the worker exits rather than guess.
 */
#include "channel.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actor.h"
#include "config.h"
#include "log.h"
#include "rooms.h"
#include "service.h"
#include "worker.h"

/* How long a call to the master (snow_register, a first snow_join)
 * waits for its answer. */
#define CALL_WAIT_MS 5000

/* A sender on another worker was told its message was queued, so a
 * full mailbox on arrival can only be logged (once a second) and
 * counted. */
static void log_dropped_tell(snow_pid to)
{
    static ev_tstamp logged;
    static uint64_t since;
    ev_tstamp now = ev_now(worker.loop);

    since++;
    if (now - logged < 1.0)
        return;
    log_warn("actor %llu: mailbox full (mailbox_limit %llu); dropped %llu "
             "message(s) from other workers",
             (unsigned long long)to,
             (unsigned long long)worker.cfg->mailbox_limit,
             (unsigned long long)since);
    logged = now;
    since = 0;
}

static void handle_tell(const uint8_t *b, size_t len)
{
    snow_pid to = ipc_get_u64(b);

    /* A pid of an earlier generation of this slot is gone: the master
     * routes on the slot alone, and the actor runtime would send it
     * straight back. */
    if (!actor_pid_is_local(to))
        return;
    int rc = actor_tell(ipc_get_u64(b + 8), to,
                        (enum snow_msg_type)ipc_get_u32(b + 16),
                        ipc_get_u32(b + 20), b + IPC_TELL_HDR,
                        len - IPC_TELL_HDR);
    if (rc == -SNOW_EFULL)
        log_dropped_tell(to);
}

static void handle_down(const uint8_t *b, size_t len)
{
    char reason[256];
    size_t n = len - 16 < sizeof reason - 1 ? len - 16 : sizeof reason - 1;

    memcpy(reason, b + 16, n);
    reason[n] = '\0';
    actor_down_from_remote(ipc_get_u64(b), ipc_get_u64(b + 8), reason);
}

static void handle_room_counts(const uint8_t *b, size_t len)
{
    rooms_set_count((const char *)b + 8, len - 8, ipc_get_u32(b),
                    ipc_get_u32(b + 4));
}

static void handle_publish(const uint8_t *b, size_t len)
{
    uint32_t nlen = ipc_get_u32(b + 12);

    if (nlen == 0 || nlen > SNOW_ROOM_MAX || nlen > len - IPC_PUBLISH_HDR ||
        len - IPC_PUBLISH_HDR - nlen > SNOW_MSG_MAX) {
        log_warn("channel: malformed publish from the master; ignored");
        return;
    }
    const uint8_t *name = b + IPC_PUBLISH_HDR;
    rooms_deliver_remote((const char *)name, nlen, ipc_get_u64(b),
                         ipc_get_u32(b + 8), name + nlen,
                         len - IPC_PUBLISH_HDR - nlen);
}

/* Handles one frame from the master.  Never runs plugin code. */
static void handle(const struct ipc_hdr *h, const uint8_t *b)
{
    switch (h->type) {
    case IPC_TELL:
        handle_tell(b, h->len);
        break;
    case IPC_MONITOR:
        actor_monitor_from_remote(ipc_get_u64(b + 8), ipc_get_u64(b));
        break;
    case IPC_DEMONITOR:
        actor_demonitor_from_remote(ipc_get_u64(b + 8), ipc_get_u64(b));
        break;
    case IPC_DOWN:
        handle_down(b, h->len);
        break;
    case IPC_NAME_ADD:
        names_put(&worker.names, (const char *)b + 8, h->len - 8,
                  ipc_get_u64(b));
        break;
    case IPC_NAME_DEL:
        names_del(&worker.names, (const char *)b + 8, h->len - 8,
                  ipc_get_u64(b));
        break;
    case IPC_WORKER_DOWN:
        actor_worker_down(ipc_get_u32(b), ipc_get_u32(b + 4));
        break;
    case IPC_SERVICE_START:
        service_request_start((const char *)b, h->len);
        break;
    case IPC_ROOM_COUNTS:
        handle_room_counts(b, h->len);
        break;
    case IPC_PUBLISH:
        handle_publish(b, h->len);
        break;
    case IPC_WORKERS:
        worker.nworkers = ipc_get_u32(b);
        break;
    case IPC_DRAIN:
        worker_drain(ipc_get_u32(b));
        break;
    default:
        log_warn("channel: unexpected frame type %u from the master; "
                 "ignored", h->type);
        break;
    }
}

/* Handles every complete frame already read; returns -1 on a protocol
 * error. */
static int drain_frames(void)
{
    struct ipc_hdr h;
    const uint8_t *body;
    enum ipc_rc rc;

    while ((rc = ipc_next(&worker.chan_in, &h, &body)) == IPC_FRAME)
        handle(&h, body);
    return rc == IPC_ERR_PROTO ? -1 : 0;
}

static void protocol_error(void)
{
    log_error("channel: malformed frame from the master; worker %u exits",
              worker.slot);
    _exit(70);   /* EX_SOFTWARE */
}

static void master_gone(void)
{
    log_warn("channel: the master has gone; worker %u stops", worker.slot);
    ev_io_stop(worker.loop, &worker.chan_read);
    ev_io_stop(worker.loop, &worker.chan_write);
    ev_timer_stop(worker.loop, &worker.heartbeat);
    raise(SIGTERM);   /* the graceful stop, as if the operator asked */
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    ssize_t n = ipc_in_fill(&worker.chan_in, worker.chan_fd);
    if (n == 0 || (n < 0 && n != -EAGAIN && n != -EINTR)) {
        master_gone();
        return;
    }
    if (drain_frames() != 0)
        protocol_error();
}

void channel_flush(void)
{
    if (ipc_out_empty(&worker.chan_out) || worker.chan_fd < 0)
        return;
    int rc = ipc_out_flush(&worker.chan_out, worker.chan_fd);
    if (rc == 1)
        ev_io_start(worker.loop, &worker.chan_write);
    else if (rc == 0)
        ev_io_stop(worker.loop, &worker.chan_write);
    else if (rc != -EINTR)
        master_gone();
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    channel_flush();
}

static void heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    channel_send(IPC_HEARTBEAT, NULL, 0, NULL, 0);
}

void channel_start(int fd)
{
    const struct config *cfg = worker.cfg;
    /* Often enough that a live worker is never mistaken for a hung one,
     * however short hang_timeout is. */
    ev_tstamp every = cfg->hang_timeout ? cfg->hang_timeout / 4000.0 : 1.0;

    if (every > 1.0)
        every = 1.0;
    /* Never block the loop on a busy master: a full channel queues, and
     * past its limit tells fail with -SNOW_EFULL. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    worker.chan_fd = fd;
    worker.chan_out.limit = CHANNEL_OUT_LIMIT;
    ev_io_init(&worker.chan_read, read_cb, fd, EV_READ);
    ev_io_start(worker.loop, &worker.chan_read);
    ev_io_init(&worker.chan_write, write_cb, fd, EV_WRITE);
    ev_timer_init(&worker.heartbeat, heartbeat_cb, every, every);
    ev_timer_start(worker.loop, &worker.heartbeat);
}

int channel_send(enum ipc_type type, const void *a, size_t alen,
                 const void *b, size_t blen)
{
    if (worker.chan_fd < 0)
        return -SNOW_ECLOSED;
    return ipc_send(&worker.chan_out, type, a, alen, b, blen);
}

/* Waits up to the deadline for fd to be ready for `events`. */
static int wait_fd(short events, uint64_t deadline)
{
    uint64_t now = worker_now_ms();
    if (now >= deadline)
        return -1;
    struct pollfd p = { .fd = worker.chan_fd, .events = events };
    int rc = poll(&p, 1, (int)(deadline - now));
    return rc < 0 && errno != EINTR ? -1 : 0;
}

/* Reads frames until the master's reply; handles the others on the way
 * (they only queue work). */
static int await_reply(uint64_t deadline)
{
    for (;;) {
        struct ipc_hdr h;
        const uint8_t *body;
        enum ipc_rc rc;
        while ((rc = ipc_next(&worker.chan_in, &h, &body)) == IPC_FRAME) {
            if (h.type == IPC_REPLY) {
                int result = (int)ipc_get_u32(body);
                if (drain_frames() != 0)
                    protocol_error();
                return result;
            }
            handle(&h, body);
        }
        if (rc == IPC_ERR_PROTO)
            protocol_error();
        if (wait_fd(POLLIN, deadline) != 0)
            return -SNOW_ECLOSED;
        ssize_t n = ipc_in_fill(&worker.chan_in, worker.chan_fd);
        if (n == 0 || (n < 0 && n != -EAGAIN && n != -EINTR))
            return -SNOW_ECLOSED;
    }
}

/* Sends a frame and waits for the master's IPC_REPLY (the only
 * synchronous exchanges).  Control frames: never refused for a full
 * channel. */
static int call(enum ipc_type type, const void *a, size_t alen,
                const void *b, size_t blen)
{
    uint64_t deadline = worker_now_ms() + CALL_WAIT_MS;
    size_t limit = worker.chan_out.limit;
    int rc;

    if (worker.chan_fd < 0)
        return -SNOW_ECLOSED;
    worker.chan_out.limit = 0;
    rc = ipc_send(&worker.chan_out, type, a, alen, b, blen);
    worker.chan_out.limit = limit;
    if (rc != 0)
        return rc;
    while ((rc = ipc_out_flush(&worker.chan_out, worker.chan_fd)) != 0) {
        if ((rc < 0 && rc != -EINTR) || wait_fd(POLLOUT, deadline) != 0)
            return -SNOW_ECLOSED;
    }
    ev_io_stop(worker.loop, &worker.chan_write);
    return await_reply(deadline);
}

int channel_register(snow_pid pid, const char *name, size_t len)
{
    uint8_t p[8];

    ipc_put_u64(p, pid);
    int rc = call(IPC_REGISTER, p, sizeof p, name, len);
    if (rc == -SNOW_ECLOSED)
        log_error("channel: no answer from the master to register '%.*s'",
                  (int)len, name);
    return rc;
}

int channel_remote_tell(snow_pid to, snow_pid from, enum snow_msg_type type,
                        uint32_t tag, const void *data, size_t len)
{
    uint8_t env[IPC_TELL_HDR];

    ipc_put_u64(env, to);
    ipc_put_u64(env + 8, from);
    ipc_put_u32(env + 16, (uint32_t)type);
    ipc_put_u32(env + 20, tag);
    return channel_send(IPC_TELL, env, sizeof env, data, len);
}

/* Monitor traffic and name releases are never refused for a full
 * channel: losing one would break "each monitor gives one DOWN" or leak a
 * name, and they are bounded by the monitors and names actors hold,
 * while tells are not. */
static void send_control(enum ipc_type type, const void *a, size_t alen,
                         const void *b, size_t blen)
{
    size_t limit = worker.chan_out.limit;

    if (worker.chan_fd < 0)
        return;
    worker.chan_out.limit = 0;
    ipc_send(&worker.chan_out, type, a, alen, b, blen);
    worker.chan_out.limit = limit;
}

static void send_pair(enum ipc_type type, snow_pid first, snow_pid second,
                      const char *text)
{
    uint8_t p[16];

    ipc_put_u64(p, first);
    ipc_put_u64(p + 8, second);
    send_control(type, p, sizeof p, text, text ? strlen(text) : 0);
}

void channel_drained(void)
{
    /* Never dropped for a full channel: the master starts the next
     * generation's services on it. */
    send_control(IPC_DRAINED, NULL, 0, NULL, 0);
}

void channel_unregister(snow_pid pid, const char *name, size_t len)
{
    uint8_t p[8];

    ipc_put_u64(p, pid);
    send_control(IPC_UNREGISTER, p, sizeof p, name, len);
}

void channel_remote_monitor(snow_pid watcher, snow_pid target)
{
    send_pair(IPC_MONITOR, target, watcher, NULL);
}

void channel_remote_demonitor(snow_pid watcher, snow_pid target)
{
    send_pair(IPC_DEMONITOR, target, watcher, NULL);
}

void channel_remote_down(snow_pid watcher, snow_pid target,
                         const char *reason)
{
    send_pair(IPC_DOWN, watcher, target, reason);
}

void channel_room_count(const char *room, size_t len, uint32_t count,
                        bool first)
{
    uint8_t p[8];
    bool wait = first && worker.nworkers > 1;

    ipc_put_u32(p, count);
    ipc_put_u32(p + 4, wait);
    if (!wait) {
        send_control(IPC_ROOM_COUNT, p, sizeof p, room, len);
        return;
    }
    if (call(IPC_ROOM_COUNT, p, sizeof p, room, len) != 0)
        log_error("channel: no answer from the master about room '%.*s'; "
                  "publishes from other workers may miss it for a while",
                  (int)len, room);
}

bool channel_has_room(size_t bytes)
{
    const struct ipc_out *o = &worker.chan_out;
    return worker.chan_fd >= 0 && o->len - o->off + bytes <= o->limit;
}

void channel_publish(const char *room, size_t len, snow_pid from,
                     uint32_t kind, const void *data, size_t dlen)
{
    uint8_t p[IPC_PUBLISH_HDR + SNOW_ROOM_MAX];

    ipc_put_u64(p, from);
    ipc_put_u32(p + 8, kind);
    ipc_put_u32(p + 12, (uint32_t)len);
    memcpy(p + IPC_PUBLISH_HDR, room, len);
    /* Messages were checked with channel_has_room; presence events are
     * bounded like tells, and dropped like them when the channel is
     * full (they already count against the receivers' mailboxes). */
    channel_send(IPC_PUBLISH, p, IPC_PUBLISH_HDR + len, data, dlen);
}

void channel_close(void)
{
    if (worker.chan_fd < 0)
        return;
    ipc_out_flush(&worker.chan_out, worker.chan_fd);
    ev_io_stop(worker.loop, &worker.chan_read);
    ev_io_stop(worker.loop, &worker.chan_write);
    ev_timer_stop(worker.loop, &worker.heartbeat);
    close(worker.chan_fd);
    worker.chan_fd = -1;
    ipc_in_free(&worker.chan_in);
    ipc_out_free(&worker.chan_out);
}
