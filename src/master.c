/*
 * master.c - the master process: forks the workers, supervises them, and
 * routes what they say to each other.
 *
 * The master never runs plugin code: it holds the listening sockets (so
 * no client is refused while a worker restarts), the authoritative name
 * registry, and one channel per worker.  Actor traffic between workers
 * passes through it unread but for the destination pid.
 *
 * Signals arrive through a signalfd the master owns rather than through
 * libev's signal watchers, so that a freshly forked worker can drop every
 * trace of the master's loop and start its own.
 *
 * Reload (SIGHUP), as nginx does it: the file is read again and, if it
 * is valid, a new generation of workers starts beside the serving one,
 * on the listening sockets whose addresses stay (the same sockets, so
 * clients waiting in their backlogs are accepted by the newcomers).
 * Once every new worker is ready, the old ones are told to drain: they
 * stop accepting and stop their services, let their connections go on
 * for up to drain_timeout, close the rest with 1001 and exit.  Services
 * start in the new generation only when the old one's have stopped, so
 * that a service's name is never held twice.  A new worker that dies
 * before its generation is ready abandons the reload: the old generation
 * never stopped serving.
 *
 * Invariants:
 * - slot s is in use iff slots[s].gen; it has a process iff
 *   slots[s].pid != 0; its incarnation grows at every spawn, and pids of
 *   older incarnations are never routed;
 * - a generation lives while it serves (m.cur), starts (m.next), or has
 *   a slot in use; its config and sockets go with it;
 * - every live worker's copy of the registry is the master's, give or
 *   take the frames in flight: a new worker gets a snapshot before
 *   anything else, then every change in order;
 * - the same holds for room counts, except that the snapshot is the
 *   table the worker inherits at fork;
 * - a dead worker's room counts are 0 before its successor is forked.
 */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "admin.h"
#include "config.h"
#include "ipc.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "names.h"
#include "notify.h"
#include "privs.h"
#include "rooms.h"
#include "worker.h"

_Static_assert(MASTER_SLOTS <= ROOMS_MAX_WORKERS,
               "room counts have a place for every slot");
_Static_assert(MASTER_SLOTS <= 256, "a pid has 8 bits for the slot");
_Static_assert(2 * CONFIG_MAX_WORKERS <= MASTER_SLOTS,
               "a new generation fits beside the old one");

/* Bytes the master holds for one worker before dropping its messages. */
#define MASTER_OUT_LIMIT (64u << 20)

/* Configurations alive at once: the serving one, one starting, and
 * those still draining. */
#define MAX_GENS 8

/* A new generation not ready this long after the SIGHUP is abandoned
 * (workers stuck loading plugins, with hang_timeout = 0). */
#define RELOAD_TIMEOUT 60.0

/* One configuration and the workers that run it. */
struct gen {
    struct config *cfg;
    struct master_listeners ls;
    unsigned n;               /* workers it asks for */
    unsigned live;            /* slots in use by it */
    unsigned number;          /* 1 for the first, counting reloads */
    ev_tstamp heartbeat_every; /* how often its workers say they live */
    char *services;           /* NUL-separated, from its first READY */
    size_t services_len;
    bool services_go;         /* no older generation holds services */
};

struct slot {
    struct gen *gen;          /* NULL: free */
    unsigned index;           /* position in its generation */
    pid_t pid;                /* 0: no process */
    unsigned incarnation;     /* the pid's generation field */
    int fd;
    bool ready;
    bool hung;                /* killed for not answering */
    bool draining;            /* told to drain or to stop: no respawn */
    bool drained;             /* its services have stopped */
    ev_io rio, wio;
    struct ipc_in in;
    struct ipc_out out;
    ev_tstamp last_seen;
};

static struct {
    struct ev_loop *loop;
    const char *file;
    struct gen *cur;          /* serving */
    struct gen *next;         /* starting, during a reload */
    struct gen *gens[MAX_GENS];
    unsigned ngens_made;
    struct slot slots[MASTER_SLOTS];
    struct worker_status *status;
    struct names names;
    unsigned undrained;       /* draining slots whose services run */
    uint64_t *deaths;         /* ring of the last max_restarts + 1 */
    unsigned ndeaths, death_head, deaths_size;
    bool stopping;
    bool notified_ready;      /* READY=1 sent to systemd */
    bool reload_again;        /* SIGHUP during a reload */
    int exit_status;
    int sigfd;
    ev_io sig_io;
    ev_timer check;
    ev_timer watchdog;        /* WATCHDOG=1 to systemd, if it asked */
    ev_timer status_timer;    /* STATUS= as connections come and go */
    uint64_t announced_conns;
    ev_timer kill_timer;
    ev_timer reload_timer;
    ev_prepare flush;
    uint64_t dropped;
    ev_tstamp dropped_logged;
} m;

static bool spawn(unsigned s);
static bool within_intensity(ev_tstamp now);
static void announce(void);
static void commit_reload(void);
static void abandon_reload(const char *why);
static void reload(void);

/* ---- sending ---------------------------------------------------------- */

/* What the master itself says (registry changes, replies, DOWNs) is never
 * refused for a full channel: only forwarded tells are bounded. */
static void send_to(struct slot *sl, enum ipc_type type, const void *a,
                    size_t alen, const void *b, size_t blen)
{
    if (!sl->pid || sl->fd < 0)
        return;
    size_t limit = sl->out.limit;
    sl->out.limit = 0;
    ipc_send(&sl->out, type, a, alen, b, blen);
    sl->out.limit = limit;
}

static void broadcast(enum ipc_type type, const void *a, size_t alen,
                      const void *b, size_t blen)
{
    for (unsigned s = 0; s < MASTER_SLOTS; s++)
        send_to(&m.slots[s], type, a, alen, b, blen);
}

static void send_name(struct slot *sl, enum ipc_type type, snow_pid pid,
                      const char *name, size_t len)
{
    uint8_t p[8];
    ipc_put_u64(p, pid);
    if (sl)
        send_to(sl, type, p, 8, name, len);
    else
        broadcast(type, p, 8, name, len);
}

static void flush_slot(struct slot *sl)
{
    if (!sl->pid || sl->fd < 0 || ipc_out_empty(&sl->out))
        return;
    if (ipc_out_flush(&sl->out, sl->fd) == 1)
        ev_io_start(m.loop, &sl->wio);
    else
        ev_io_stop(m.loop, &sl->wio);
}

static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    for (unsigned s = 0; s < MASTER_SLOTS; s++)
        flush_slot(&m.slots[s]);
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct slot *sl = w->data;
    (void)revents;
    if (ipc_out_flush(&sl->out, sl->fd) != 1)
        ev_io_stop(loop, w);
}

/* ---- slots and generations -------------------------------------------- */

static unsigned slot_of(struct slot *sl)
{
    return (unsigned)(sl - m.slots);
}

static unsigned live_workers(void)
{
    unsigned live = 0;
    for (unsigned s = 0; s < MASTER_SLOTS; s++)
        live += m.slots[s].pid != 0;
    return live;
}

/* Workers use the count to know whether a room's first member must wait
 * for the master (channel.c). */
static void send_workers(void)
{
    uint8_t p[4];
    ipc_put_u32(p, live_workers());
    broadcast(IPC_WORKERS, p, 4, NULL, 0);
}

static unsigned free_slots(void)
{
    unsigned n = 0;
    for (unsigned s = 0; s < MASTER_SLOTS; s++)
        n += !m.slots[s].gen;
    return n;
}

static struct gen *gen_new(struct config *cfg,
                           const struct master_listeners *ls)
{
    for (unsigned i = 0; i < MAX_GENS; i++) {
        if (m.gens[i])
            continue;
        struct gen *g = calloc(1, sizeof *g);
        if (!g)
            abort();
        g->cfg = cfg;
        g->ls = *ls;
        g->n = config_workers(cfg);
        g->number = ++m.ngens_made;
        /* Workers heartbeat at this pace (channel.c): four times within
         * hang_timeout, and at least once a second. */
        g->heartbeat_every = cfg->hang_timeout ? cfg->hang_timeout / 4000.0
                                               : 1.0;
        if (g->heartbeat_every > 1.0)
            g->heartbeat_every = 1.0;
        m.gens[i] = g;
        return g;
    }
    return NULL;
}

/* Frees g once nothing needs it: it neither serves nor starts, and none
 * of its workers is left. */
static void gen_release(struct gen *g)
{
    if (!g || g == m.cur || g == m.next || g->live)
        return;
    for (unsigned i = 0; i < MAX_GENS; i++)
        if (m.gens[i] == g)
            m.gens[i] = NULL;
    listener_close_all(&g->ls);
    config_free(g->cfg);
    free(g->services);
    free(g);
}

static void release_slot(struct slot *sl)
{
    struct gen *g = sl->gen;

    sl->gen = NULL;
    sl->draining = false;
    sl->drained = false;
    g->live--;
    gen_release(g);
}

/* ---- what workers say ------------------------------------------------- */

static void kill_worker(struct slot *sl, const char *why)
{
    log_error("worker %u (pid %d) %s; killing it", slot_of(sl), (int)sl->pid,
              why);
    kill(sl->pid, SIGKILL);
    ev_io_stop(m.loop, &sl->rio);
    ev_io_stop(m.loop, &sl->wio);
}

static bool pid_is_live(snow_pid pid)
{
    unsigned s = (unsigned)(pid >> 48) & 0xff;
    unsigned inc = (unsigned)(pid >> 32) & 0xffff;
    return s < MASTER_SLOTS && m.slots[s].pid &&
           m.slots[s].incarnation == inc;
}

/* Placement: the i-th service runs on the worker at index i mod N of the
 * serving generation, so services spread over the workers and each
 * one's home is stable across restarts. */
static void start_services(struct slot *sl)
{
    const struct gen *g = sl->gen;
    unsigned i = 0;

    if (!g->services_go || !sl->ready || sl->draining)
        return;
    for (size_t off = 0; off < g->services_len; i++) {
        const char *name = g->services + off;
        size_t nlen = strnlen(name, g->services_len - off);
        if (i % g->n == sl->index)
            send_to(sl, IPC_SERVICE_START, name, nlen, NULL, 0);
        off += nlen + 1;
    }
}

/* The serving generation may start its services once no draining worker
 * still runs any. */
static void maybe_start_services(void)
{
    struct gen *g = m.cur;

    if (m.undrained || g->services_go)
        return;
    g->services_go = true;
    for (unsigned s = 0; s < MASTER_SLOTS; s++)
        if (m.slots[s].gen == g)
            start_services(&m.slots[s]);
}

static bool gen_ready(const struct gen *g)
{
    unsigned ready = 0;
    for (unsigned s = 0; s < MASTER_SLOTS; s++)
        ready += m.slots[s].gen == g && m.slots[s].pid && m.slots[s].ready;
    return ready == g->n;
}

static void on_ready(struct slot *sl, const uint8_t *b, size_t len)
{
    struct gen *g = sl->gen;

    sl->ready = true;
    log_info("worker %u (pid %d) ready", slot_of(sl), (int)sl->pid);
    if (!g->services) {
        g->services = malloc(len + 1);
        if (!g->services)
            abort();
        memcpy(g->services, b, len);
        g->services[len] = '\0';
        g->services_len = len;
    }
    start_services(sl);
    if (g == m.next && gen_ready(g))
        commit_reload();
    else
        announce();
}

/* A draining worker's services have stopped and their names are gone
 * (the frames before this one said so). */
static void on_drained(struct slot *sl)
{
    if (!sl->draining || sl->drained)
        return;
    sl->drained = true;
    m.undrained--;
    maybe_start_services();
}

static void on_register(struct slot *sl, const uint8_t *b, size_t len)
{
    snow_pid pid = ipc_get_u64(b);
    const char *name = (const char *)b + 8;
    int32_t rc;

    /* A worker may only name its own actors. */
    if (!pid_is_live(pid) || &m.slots[(pid >> 48) & 0xff] != sl)
        rc = -SNOW_EINVAL;
    else
        rc = names_put(&m.names, name, len - 8, pid);
    uint8_t r[4];
    ipc_put_u32(r, (uint32_t)rc);
    send_to(sl, IPC_REPLY, r, 4, NULL, 0);
    if (rc == 0)
        send_name(NULL, IPC_NAME_ADD, pid, name, len - 8);
}

static void on_unregister(struct slot *sl, const uint8_t *b, size_t len)
{
    snow_pid pid = ipc_get_u64(b);

    if (&m.slots[(pid >> 48) & 0xff] == sl &&
        names_del(&m.names, (const char *)b + 8, len - 8, pid))
        send_name(NULL, IPC_NAME_DEL, pid, (const char *)b + 8, len - 8);
}

/* ---- rooms ------------------------------------------------------------ */

static void send_count(unsigned except, unsigned slot, uint32_t count,
                       const char *name, size_t len)
{
    uint8_t p[8];

    ipc_put_u32(p, slot);
    ipc_put_u32(p + 4, count);
    for (unsigned s = 0; s < MASTER_SLOTS; s++)
        if (s != except)
            send_to(&m.slots[s], IPC_ROOM_COUNTS, p, 8, name, len);
}

static void on_room_count(struct slot *sl, const uint8_t *b, size_t len)
{
    unsigned s = slot_of(sl);
    uint32_t count = ipc_get_u32(b);
    const char *name = (const char *)b + 8;

    if (!rooms_name_valid(name, len - 8)) {
        kill_worker(sl, "sent an invalid room name");
        return;
    }
    if (rooms_set_count(name, len - 8, s, count) != count)
        send_count(s, s, count, name, len - 8);
    if (!ipc_get_u32(b + 4))
        return;
    /* The joiner's snow_join returns on this reply; every other worker
     * must have the new count in its socket first, so that a publish the
     * join causes anywhere finds the member. */
    for (unsigned t = 0; t < MASTER_SLOTS; t++)
        if (t != s)
            flush_slot(&m.slots[t]);
    uint8_t r[4];
    ipc_put_u32(r, 0);
    send_to(sl, IPC_REPLY, r, 4, NULL, 0);
}

static void count_dropped(struct slot *dst)
{
    m.dropped++;
    metrics_channel_dropped();
    if (ev_now(m.loop) - m.dropped_logged >= 1.0) {
        log_warn("worker %u is not reading its channel; %llu message(s) "
                 "dropped so far", slot_of(dst),
                 (unsigned long long)m.dropped);
        m.dropped_logged = ev_now(m.loop);
    }
}

/* Forwards a publish, unread but for the room, to the other workers
 * that have members.  Messages and presence events alike are bounded by
 * the channel's limit: both can be dropped for a worker that does not
 * keep up. */
static void on_publish(struct slot *sl, const struct ipc_hdr *h,
                       const uint8_t *b)
{
    uint32_t kind = ipc_get_u32(b + 8);
    uint32_t nlen = ipc_get_u32(b + 12);
    unsigned s = slot_of(sl);

    bool presence = kind == ROOMS_PRESENCE_JOIN ||
                    kind == ROOMS_PRESENCE_LEAVE;
    size_t dlen = nlen <= h->len - IPC_PUBLISH_HDR
                  ? h->len - IPC_PUBLISH_HDR - nlen : 0;
    /* What workers fan out must be what snow_publish could have made:
     * they copy it into buffers sized for that. */
    if (nlen > h->len - IPC_PUBLISH_HDR ||
        !rooms_name_valid((const char *)b + IPC_PUBLISH_HDR, nlen) ||
        dlen > SNOW_MSG_MAX ||
        !(kind == SNOW_TEXT || kind == SNOW_BINARY || presence) ||
        (presence && dlen)) {
        kill_worker(sl, "sent a malformed publish");
        return;
    }
    uint64_t mask = rooms_worker_mask((const char *)b + IPC_PUBLISH_HDR,
                                      nlen) & ~(1ull << s);
    for (; mask; mask &= mask - 1) {
        struct slot *dst = &m.slots[__builtin_ctzll(mask)];
        if (dst->pid &&
            ipc_forward(&dst->out, b - sizeof *h, sizeof *h + h->len) != 0)
            count_dropped(dst);
    }
}

static void forget_room(void *arg, const char *name, size_t len)
{
    unsigned s = *(const unsigned *)arg;
    send_count(s, s, 0, name, len);
}

static void route(struct slot *from, const struct ipc_hdr *h,
                  const uint8_t *b)
{
    snow_pid to = ipc_get_u64(b);

    if (pid_is_live(to)) {
        struct slot *dst = &m.slots[(to >> 48) & 0xff];
        /* Only tells count against the bound: monitor traffic is bounded
         * by the monitors actors hold, and losing it would lose a DOWN. */
        size_t limit = dst->out.limit;
        if (h->type != IPC_TELL)
            dst->out.limit = 0;
        int rc = ipc_forward(&dst->out, b - sizeof *h, sizeof *h + h->len);
        dst->out.limit = limit;
        if (rc == 0)
            return;
        count_dropped(dst);
        return;
    }
    /* Erlang's rule: watching an actor that is gone gives "noproc". */
    if (h->type == IPC_MONITOR) {
        uint8_t p[16];
        ipc_put_u64(p, ipc_get_u64(b + 8));
        ipc_put_u64(p + 8, to);
        send_to(from, IPC_DOWN, p, 16, "noproc", 6);
    }
}

static bool on_frame(struct slot *sl, const struct ipc_hdr *h,
                     const uint8_t *b)
{
    switch (h->type) {
    case IPC_READY: on_ready(sl, b, h->len); return true;
    case IPC_HEARTBEAT: return true;
    case IPC_REGISTER: on_register(sl, b, h->len); return true;
    case IPC_UNREGISTER: on_unregister(sl, b, h->len); return true;
    case IPC_ROOM_COUNT: on_room_count(sl, b, h->len); return true;
    case IPC_PUBLISH: on_publish(sl, h, b); return true;
    case IPC_DRAINED: on_drained(sl); return true;
    default:
        if (!ipc_is_routed((enum ipc_type)h->type))
            return false;
        route(sl, h, b);
        return true;
    }
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct slot *sl = w->data;
    struct ipc_hdr h;
    const uint8_t *body;
    enum ipc_rc rc;

    (void)revents;
    ssize_t n = ipc_in_fill(&sl->in, sl->fd);
    if (n == 0 || (n < 0 && n != -EAGAIN && n != -EINTR)) {
        /* The worker is going; SIGCHLD will say how. */
        ev_io_stop(loop, &sl->rio);
        ev_io_stop(loop, &sl->wio);
        return;
    }
    sl->last_seen = ev_now(loop);
    while ((rc = ipc_next(&sl->in, &h, &body)) == IPC_FRAME)
        if (!on_frame(sl, &h, body)) {
            rc = IPC_ERR_PROTO;
            break;
        }
    if (rc == IPC_ERR_PROTO)
        kill_worker(sl, "broke the channel protocol");
}

/* ---- deaths and restarts ---------------------------------------------- */

static void describe_running(unsigned s, char *out, size_t cap)
{
    uint32_t running = m.status[s].running;

    out[0] = '\0';
    if (running && running <= STATUS_LABELS)
        snprintf(out, cap, " while running %.*s", STATUS_LABEL_LEN,
                 m.status[s].labels[running - 1]);
}

static void log_death(unsigned s, pid_t pid, int status, bool respawn)
{
    char running[STATUS_LABEL_LEN + 32];
    const char *then = respawn ? "; respawning" : "";
    bool expected = m.stopping || m.slots[s].draining;

    describe_running(s, running, sizeof running);
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char *abbrev = sigabbrev_np(sig);
        log_msg(expected && sig != SIGSEGV ? LOG_INFO : LOG_ERROR,
                "worker %u (pid %d) killed by signal %d (SIG%s)%s%s", s,
                (int)pid, sig, abbrev ? abbrev : "?", running, then);
    } else if (WEXITSTATUS(status) != 0 || !expected) {
        log_msg(expected ? LOG_WARN : LOG_ERROR,
                "worker %u (pid %d) exited with status %d%s", s, (int)pid,
                WEXITSTATUS(status), then);
    } else {
        log_info("worker %u (pid %d) stopped", s, (int)pid);
    }
}

static void forget_names(void *arg, const char *name, size_t len,
                         snow_pid pid)
{
    (void)arg;
    send_name(NULL, IPC_NAME_DEL, pid, name, len);
}

static void clear_slot(struct slot *sl)
{
    ev_io_stop(m.loop, &sl->rio);
    ev_io_stop(m.loop, &sl->wio);
    if (sl->fd >= 0)
        close(sl->fd);
    sl->fd = -1;
    sl->pid = 0;
    sl->ready = false;
    sl->hung = false;
    ipc_in_free(&sl->in);
    ipc_out_free(&sl->out);
}

/* Records a death of a serving worker; false when more than max_restarts
 * happened within restart_window. */
static bool within_intensity(ev_tstamp now)
{
    const struct config *cfg = m.cur->cfg;
    unsigned size = m.deaths_size;

    m.deaths[m.death_head] = (uint64_t)(now * 1000);
    m.death_head = (m.death_head + 1) % size;
    if (m.ndeaths < size)
        m.ndeaths++;
    if (m.ndeaths < size)
        return true;
    return (uint64_t)(now * 1000) - m.deaths[m.death_head] >
           cfg->restart_window;
}

/* (Re)starts counting deaths against the serving configuration's
 * max_restarts. */
static void deaths_reset(void)
{
    free(m.deaths);
    m.deaths_size = (unsigned)m.cur->cfg->max_restarts + 1;
    m.deaths = calloc(m.deaths_size, sizeof *m.deaths);
    if (!m.deaths)
        abort();
    m.ndeaths = m.death_head = 0;
}

static void signal_workers(int sig)
{
    for (unsigned s = 0; s < MASTER_SLOTS; s++)
        if (m.slots[s].pid)
            kill(m.slots[s].pid, sig);
}

static void begin_stop(int sig)
{
    uint64_t longest = 0;

    if (!m.stopping)
        notify_stopping(m.exit_status ? "giving up: too many worker deaths"
                                      : "stopping");
    m.stopping = true;
    ev_timer_stop(m.loop, &m.watchdog);
    ev_timer_stop(m.loop, &m.reload_timer);
    ev_timer_stop(m.loop, &m.status_timer);
    signal_workers(sig);
    if (!ev_is_active(&m.kill_timer)) {
        /* Workers wait up to drain_timeout for their connections to
         * close, and each close handshake up to close_timeout, each by
         * its own configuration; past that and a margin, they are
         * stuck. */
        for (unsigned i = 0; i < MAX_GENS; i++) {
            const struct config *cfg = m.gens[i] ? m.gens[i]->cfg : NULL;
            if (cfg && cfg->drain_timeout + cfg->close_timeout > longest)
                longest = cfg->drain_timeout + cfg->close_timeout;
        }
        ev_timer_set(&m.kill_timer, longest / 1000.0 + 5.0, 0.);
        ev_timer_start(m.loop, &m.kill_timer);
    }
}

static void on_death(unsigned s, int status)
{
    struct slot *sl = &m.slots[s];
    struct gen *g = sl->gen;
    unsigned inc = sl->incarnation;
    pid_t pid = sl->pid;

    bool serving = g == m.cur && !sl->draining && !m.stopping;
    bool respawn = serving && within_intensity(ev_now(m.loop));
    log_death(s, pid, status, respawn);
    metrics_retire(s, respawn);   /* before the slot is used again */
    clear_slot(sl);
    snow_pid mask = (0xffULL << 48) | (0xffffULL << 32);
    snow_pid value = ((snow_pid)s << 48) | ((snow_pid)inc << 32);
    names_del_matching(&m.names, mask, value, forget_names, NULL);
    rooms_forget_worker(s, forget_room, &s);
    uint8_t p[8];
    ipc_put_u32(p, s);
    ipc_put_u32(p + 4, inc);
    broadcast(IPC_WORKER_DOWN, p, 8, NULL, 0);
    if (sl->draining && !sl->drained)
        m.undrained--;

    if (respawn) {
        spawn(s);
        announce();
        return;
    }
    bool starting = g == m.next;
    release_slot(sl);
    send_workers();
    if (m.stopping) {
        if (live_workers() == 0)
            ev_break(m.loop, EVBREAK_ALL);
        return;
    }
    if (starting) {
        abandon_reload("a worker of the new configuration died before it "
                       "was ready");
        return;
    }
    if (serving) {
        log_error("too many worker deaths: %u within %.0fs (max_restarts = "
                  "%llu); giving up", m.ndeaths,
                  g->cfg->restart_window / 1000.0,
                  (unsigned long long)g->cfg->max_restarts);
        m.exit_status = 1;
        begin_stop(SIGTERM);
        if (live_workers() == 0)
            ev_break(m.loop, EVBREAK_ALL);
        return;
    }
    maybe_start_services();
    announce();
}

static void reap(void)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (unsigned s = 0; s < MASTER_SLOTS; s++)
            if (m.slots[s].pid == pid) {
                on_death(s, status);
                break;
            }
}

static void check_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_tstamp now = ev_now(loop);

    (void)w;
    (void)revents;
    if (m.stopping)
        return;
    for (unsigned s = 0; s < MASTER_SLOTS; s++) {
        struct slot *sl = &m.slots[s];
        if (!sl->pid || sl->hung)
            continue;
        ev_tstamp limit = sl->gen->cfg->hang_timeout / 1000.0;
        if (limit <= 0 || now - sl->last_seen <= limit)
            continue;
        char running[STATUS_LABEL_LEN + 32], why[STATUS_LABEL_LEN + 96];
        describe_running(s, running, sizeof running);
        snprintf(why, sizeof why, "did not answer for %.1fs%s", now -
                 sl->last_seen, running);
        log_error("worker %u (pid %d) %s; killing it (SIGKILL)", s,
                  (int)sl->pid, why);
        sl->hung = true;
        kill(sl->pid, SIGKILL);
    }
}

static void kill_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    log_warn("stop: %u worker(s) still running; killing them", live_workers());
    signal_workers(SIGKILL);
}

/* ---- systemd ---------------------------------------------------------- */

/* Tells systemd how the workers are: READY=1 the first time every one of
 * them has reported ready (the listeners were bound before the first
 * fork, so the port accepts by then), and a STATUS= line at each change,
 * with the connections the workers hold (from their metrics blocks). */
static void announce(void)
{
    unsigned ready = 0, n = m.cur->n;
    const char *s = n == 1 ? "" : "s";
    unsigned long long conns = metrics_connections();
    const char *cs = conns == 1 ? "" : "s";

    if (m.stopping)
        return;
    if (m.next) {
        for (unsigned i = 0; i < MASTER_SLOTS; i++)
            ready += m.slots[i].gen == m.next && m.slots[i].ready;
        notify_status("reloading: %u of %u new worker%s ready", ready,
                      m.next->n, m.next->n == 1 ? "" : "s");
        return;
    }
    for (unsigned i = 0; i < MASTER_SLOTS; i++)
        ready += m.slots[i].gen == m.cur && m.slots[i].pid &&
                 m.slots[i].ready;
    m.announced_conns = conns;
    if (ready < n) {
        notify_status("%u of %u worker%s ready; %llu connection%s", ready,
                      n, s, conns, cs);
    } else if (!m.notified_ready) {
        m.notified_ready = true;
        notify_ready("%u worker%s, serving; %llu connection%s", n, s, conns,
                     cs);
    } else {
        notify_status("%u worker%s, serving; %llu connection%s", n, s,
                      conns, cs);
    }
}

/* The connection count in STATUS= follows the load, a line per change at
 * most every two seconds. */
static void status_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    if (metrics_connections() != m.announced_conns)
        announce();
}

/* A worker has missed its heartbeats (silent for three of their periods)
 * or is being killed as hung.  This is stricter than hang_timeout on
 * purpose: systemd and load balancers learn of a stuck worker while the
 * master is still waiting to kill it. */
static bool is_late(const struct slot *sl, ev_tstamp now)
{
    return sl->hung || now - sl->last_seen > 3 * sl->gen->heartbeat_every;
}

static int late_worker(ev_tstamp now)
{
    for (unsigned s = 0; s < MASTER_SLOTS; s++)
        if (m.slots[s].pid && is_late(&m.slots[s], now))
            return (int)s;
    return -1;
}

unsigned master_workers_serving(unsigned *late)
{
    unsigned n = 0, stuck = 0;

    for (unsigned s = 0; m.loop && !m.stopping && s < MASTER_SLOTS; s++) {
        const struct slot *sl = &m.slots[s];
        if (!sl->pid || !sl->ready || sl->draining)
            continue;
        if (is_late(sl, ev_now(m.loop)))
            stuck++;
        else
            n++;
    }
    *late = stuck;
    return n;
}

/* WATCHDOG=1 goes out only while every worker heartbeats, so that a
 * worker that stays stuck (hang_timeout = 0, or a master that cannot
 * replace it) ends in systemd restarting the whole daemon. */
static void watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    static int withheld = -1;
    int late = late_worker(ev_now(loop));

    (void)w;
    (void)revents;
    if (late >= 0 && withheld < 0)
        log_warn("systemd watchdog: worker %d is late; withholding "
                 "WATCHDOG=1 until it answers or is replaced", late);
    else if (late < 0 && withheld >= 0)
        log_info("systemd watchdog: every worker heartbeats; sending "
                 "WATCHDOG=1 again");
    withheld = late;
    if (late < 0)
        notify_watchdog();
}

/* ---- reload ----------------------------------------------------------- */

/* Settings a reload cannot change, because the sockets or the process
 * hold them; each is logged.  False if any differs. */
static bool reloadable(const struct config *old, const struct config *cfg)
{
    bool ok = true;

    if (old->accept_mode != cfg->accept_mode) {
        log_error("reload: 'accept' cannot change while running (the "
                  "listening sockets depend on it); restart snowd to "
                  "change it");
        ok = false;
    }
    if ((old->pid_file || cfg->pid_file) &&
        (!old->pid_file || !cfg->pid_file ||
         strcmp(old->pid_file, cfg->pid_file) != 0))
        log_warn("reload: 'pid_file' changes at the next start; the pid "
                 "file stays where it is");
    return ok;
}

/* SIGHUP: reads the file again and starts a new generation on it. */
static void reload(void)
{
    if (m.stopping)
        return;
    if (m.next) {
        log_info("SIGHUP: a reload is in progress; reloading again when it "
                 "ends");
        m.reload_again = true;
        return;
    }
    notify_reloading("reloading %s", m.file);
    log_info("SIGHUP: reloading %s", m.file);

    struct config *cfg = config_load(m.file);
    if (!cfg) {
        log_error("reload: %s has errors (above); still serving the "
                  "previous configuration", m.file);
        notify_ready("reload failed; serving the previous configuration");
        return;
    }
    unsigned n = config_workers(cfg);
    struct master_listeners ls;
    const char *refused = NULL;
    if (!reloadable(m.cur->cfg, cfg))
        refused = "a setting cannot change while running";
    else if (free_slots() < n)
        refused = "not enough worker slots while earlier workers drain; "
                  "try again when they have stopped";
    else if (listener_open_all(cfg, &m.cur->ls, &ls) != 0)
        refused = "cannot listen (above)";
    struct gen *g = refused ? NULL : gen_new(cfg, &ls);
    if (!refused && !g) {
        refused = "too many configurations still draining; try again "
                  "later";
        listener_close_all(&ls);
    }
    if (refused) {
        log_error("reload: %s; still serving the previous configuration",
                  refused);
        config_free(cfg);
        notify_ready("reload failed; serving the previous configuration");
        return;
    }

    m.next = g;
    log_info("reload: starting %u worker(s) of configuration #%u", n,
             g->number);
    bool started = true;
    for (unsigned i = 0, s = 0; i < n; s++) {
        if (m.slots[s].gen)
            continue;
        m.slots[s].gen = g;
        m.slots[s].index = i++;
        g->live++;
        started &= spawn(s);
    }
    send_workers();
    if (!started) {
        abandon_reload("a worker of the new configuration could not be "
                       "started");
        return;
    }
    ev_timer_set(&m.reload_timer, RELOAD_TIMEOUT, 0.);
    ev_timer_start(m.loop, &m.reload_timer);
    announce();
}

/* The admin listener follows the file too: rebound when its address
 * changed.  It is bound at this point rather than checked before, so a
 * reload never fails for it; if the new address cannot be bound, the
 * admin listener stays off until a reload that can. */
static void reload_admin(const struct config *old, const struct config *cfg)
{
    const char *was = old->admin.text, *now = cfg->admin.text;

    if ((!was && !now) || (was && now && strcmp(was, now) == 0))
        return;
    admin_stop();
    if (admin_start(m.loop, cfg) != 0)
        log_error("reload: the admin listener is off (above)");
}

/* Every new worker is ready: the new generation serves, the old one
 * drains. */
static void commit_reload(void)
{
    struct gen *old = m.cur, *g = m.next;
    const struct config *cfg = g->cfg;
    unsigned draining = 0;
    uint8_t p[4];

    m.cur = g;
    m.next = NULL;
    ev_timer_stop(m.loop, &m.reload_timer);
    deaths_reset();
    reload_admin(old->cfg, cfg);
    /* The old sockets stay open in the workers that drain until they
     * close them; the master's copies go now, so that a socket no new
     * worker took over stops receiving clients. */
    listener_close_all(&old->ls);
    ipc_put_u32(p, (uint32_t)(cfg->drain_timeout > UINT32_MAX
                              ? UINT32_MAX : cfg->drain_timeout));
    old->live++;                /* held while its slots are released */
    for (unsigned s = 0; s < MASTER_SLOTS; s++) {
        struct slot *sl = &m.slots[s];
        if (!sl->gen || sl->gen == g || sl->draining)
            continue;
        sl->draining = true;
        if (sl->pid) {
            send_to(sl, IPC_DRAIN, p, 4, NULL, 0);
            m.undrained++;
            draining++;
        } else {
            release_slot(sl);
        }
    }
    log_info("reload: configuration #%u serving with %u worker(s); %u old "
             "worker(s) draining for up to %.0fs", g->number, g->n, draining,
             cfg->drain_timeout / 1000.0);
    log_threshold = cfg->log_level;
    log_set_format(cfg->log_format);
    old->live--;
    gen_release(old);
    maybe_start_services();
    m.notified_ready = true;
    notify_ready("%u worker%s, serving (reloaded)", g->n,
                 g->n == 1 ? "" : "s");
    m.announced_conns = UINT64_MAX;   /* the next tick says how many */
    if (m.reload_again) {
        m.reload_again = false;
        reload();
    }
}

/* The new generation failed to start: its workers go, the old one never
 * stopped serving. */
static void abandon_reload(const char *why)
{
    struct gen *g = m.next;

    log_error("reload: %s; stopping the new workers, still serving the "
              "previous configuration", why);
    m.next = NULL;
    ev_timer_stop(m.loop, &m.reload_timer);
    g->live++;                  /* held while its slots are released */
    for (unsigned s = 0; s < MASTER_SLOTS; s++) {
        struct slot *sl = &m.slots[s];
        if (sl->gen != g)
            continue;
        sl->draining = true;
        sl->drained = true;     /* services never started there */
        if (sl->pid)
            kill(sl->pid, SIGTERM);
        else
            release_slot(sl);
    }
    g->live--;
    gen_release(g);
    notify_ready("reload failed; serving the previous configuration");
    if (m.reload_again) {
        m.reload_again = false;
        reload();
    }
}

static void reload_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    if (m.next)
        abandon_reload("the new workers were not all ready within 60s");
}

/* ---- signals ---------------------------------------------------------- */

static void signal_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct signalfd_siginfo si;

    (void)loop;
    (void)w;
    (void)revents;
    while (read(m.sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        int sig = (int)si.ssi_signo;
        switch (sig) {
        case SIGCHLD:
            reap();
            break;
        case SIGTERM:
        case SIGINT:
        case SIGQUIT:
            log_info("%s (signal %d): stopping %u worker(s)",
                     sig == SIGQUIT ? "stopping now" : "stopping gracefully",
                     sig, live_workers());
            /* Workers ignore SIGINT (a terminal sends it to them too):
             * they stop gracefully on SIGTERM, and at once on a second
             * one or on SIGQUIT. */
            begin_stop(sig == SIGQUIT ? SIGQUIT : SIGTERM);
            break;
        case SIGHUP:
            reload();
            break;
        }
    }
}

static int signals_open(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    m.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return m.sigfd < 0 ? -1 : 0;
}

/* ---- spawning --------------------------------------------------------- */

/* In the new worker process: drop everything of the master but the
 * listeners this worker accepts on, then serve. */
static void become_worker(unsigned s, int fd, pid_t master,
                          unsigned nworkers)
{
    struct slot *sl = &m.slots[s];
    const struct gen *g = sl->gen;
    const struct master_listeners *ls = &g->ls;
    size_t first = ls->per_slot ? sl->index * ls->nlisten : 0;
    sigset_t none;

    sigemptyset(&none);
    notify_forget();
    close(m.sigfd);
    /* Workers leave SIGHUP and SIGINT to the master (a terminal or a
     * `pkill -HUP snowd` signals them too), also while loading plugins,
     * before their loop watches signals. */
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (unsigned i = 0; i < MASTER_SLOTS; i++)
        if (m.slots[i].fd >= 0)
            close(m.slots[i].fd);
    for (unsigned i = 0; i < MAX_GENS; i++) {
        const struct gen *o = m.gens[i];
        for (size_t k = 0; o && k < o->ls.nfds; k++)
            if (o != g || k < first || k >= first + ls->nlisten)
                close(o->ls.fds[k]);
    }
    ev_loop_destroy(m.loop);
    admin_forget();
    log_threshold = g->cfg->log_level;
    log_set_format(g->cfg->log_format);
    /* [server] user and group, before any plugin is loaded, and before
     * the parent-death signal, which a change of uid resets. */
    if (privs_drop(g->cfg) != 0)
        _exit(PRIVS_EXIT_STATUS);
    /* A worker without its master stops: the channel's EOF says so, and
     * this covers a master killed with SIGKILL before the fork returned. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != master)
        _exit(0);

    struct worker_args args = {
        .cfg = g->cfg, .slot = s, .generation = sl->incarnation,
        .nworkers = nworkers,
        .chan_fd = fd, .listen_fds = ls->fds + first,
        .nlisten_fds = ls->nlisten, .status = &m.status[s],
        .shared_accept = !ls->per_slot,
        .metrics = metrics_block(s),
    };
    names_free(&m.names);
    exit(worker_main(&args));
}

static void snapshot_name(void *arg, const char *name, size_t len,
                          snow_pid pid)
{
    send_name(arg, IPC_NAME_ADD, pid, name, len);
}

/* Returns false when no process could be started. */
static bool spawn(unsigned s)
{
    struct slot *sl = &m.slots[s];
    int sv[2];
    pid_t master = getpid();

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        log_error("worker %u: socketpair: %s", s, strerror(errno));
        return false;
    }
    unsigned nworkers = live_workers() + 1;
    if (nworkers < sl->gen->n)
        nworkers = sl->gen->n;
    unsigned inc = sl->incarnation % 0xffff + 1;   /* 16 bits, never 0 */
    m.status[s].running = 0;
    sl->incarnation = inc;
    pid_t pid = fork();
    if (pid < 0) {
        log_error("worker %u: fork: %s", s, strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return false;
    }
    if (pid == 0) {
        close(sv[0]);
        become_worker(s, sv[1], master, nworkers);
    }
    close(sv[1]);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    sl->pid = pid;
    sl->fd = sv[0];
    sl->out.limit = MASTER_OUT_LIMIT;
    sl->last_seen = ev_now(m.loop);
    ev_io_init(&sl->rio, read_cb, sv[0], EV_READ);
    ev_io_init(&sl->wio, write_cb, sv[0], EV_WRITE);
    sl->rio.data = sl->wio.data = sl;
    ev_io_start(m.loop, &sl->rio);
    /* The registry first, so the worker never answers from an empty
     * copy once it serves. */
    names_each(&m.names, snapshot_name, sl);
    return true;
}

/* ---- the whole ---------------------------------------------------------- */

int master_run(const char *file, struct config *cfg,
               struct master_listeners *ls)
{
    m.file = file;
    m.exit_status = 0;
    for (unsigned s = 0; s < MASTER_SLOTS; s++)
        m.slots[s].fd = -1;
    m.cur = gen_new(cfg, ls);
    m.cur->services_go = true;
    rooms_init();
    deaths_reset();
    m.status = mmap(NULL, sizeof *m.status * MASTER_SLOTS,
                    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m.status == MAP_FAILED || signals_open() != 0) {
        log_error("master: cannot set up: %s", strerror(errno));
        return 1;
    }
    m.loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    int rc = metrics_map();
    if (rc != 0) {
        log_error("master: cannot map the metrics: %s", strerror(-rc));
        return 1;
    }
    if (admin_start(m.loop, cfg) != 0)
        return 1;
    ev_io_init(&m.sig_io, signal_cb, m.sigfd, EV_READ);
    ev_io_start(m.loop, &m.sig_io);
    ev_prepare_init(&m.flush, flush_cb);
    ev_prepare_start(m.loop, &m.flush);
    /* Fine enough for the shortest hang_timeout a reload may bring. */
    ev_timer_init(&m.check, check_cb, 0.1, 0.1);
    ev_timer_start(m.loop, &m.check);
    ev_timer_init(&m.kill_timer, kill_timer_cb, 1., 0.);
    ev_timer_init(&m.reload_timer, reload_timer_cb, RELOAD_TIMEOUT, 0.);
    double watchdog = notify_watchdog_interval();
    ev_timer_init(&m.watchdog, watchdog_cb, watchdog, watchdog);
    if (watchdog > 0)
        ev_timer_start(m.loop, &m.watchdog);
    ev_timer_init(&m.status_timer, status_cb, 2., 2.);
    if (notify_enabled())
        ev_timer_start(m.loop, &m.status_timer);

    unsigned n = m.cur->n;
    log_info("master (pid %d): starting %u worker(s)", (int)getpid(), n);
    notify_status("starting %u worker%s", n, n == 1 ? "" : "s");
    for (unsigned s = 0; s < n; s++) {
        m.slots[s].gen = m.cur;
        m.slots[s].index = s;
        m.cur->live++;
        spawn(s);
    }
    if (live_workers() == 0) {
        m.exit_status = 1;
    } else {
        send_workers();
        ev_run(m.loop, 0);
    }

    for (unsigned s = 0; s < MASTER_SLOTS; s++) {
        clear_slot(&m.slots[s]);
        if (m.slots[s].gen)
            release_slot(&m.slots[s]);
    }
    struct gen *last = m.cur, *next = m.next;
    m.cur = m.next = NULL;
    gen_release(next);
    gen_release(last);
    admin_stop();
    metrics_unmap();
    ev_loop_destroy(m.loop);
    close(m.sigfd);
    names_free(&m.names);
    rooms_fini();
    free(m.deaths);
    munmap(m.status, sizeof *m.status * MASTER_SLOTS);
    log_info("stopped");
    return m.exit_status;
}
