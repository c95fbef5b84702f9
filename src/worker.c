/*
 * worker.c - a worker process: its event loop and its actors' turn.
 *
 * Watchers: one per listener, one per connection, one repeating sweep
 * timer for every timeout (see conn.h), the channel to the master and its
 * heartbeat, one timer following the earliest actor timer, and one
 * prepare watcher: the safe point, where actors run, services start,
 * queued output is written and dead connections are freed, before the
 * loop sleeps.  While actors still have messages after their turn, an
 * idle watcher keeps the loop from sleeping, so I/O and actors take
 * turns.
 */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "actor.h"
#include "buf.h"
#include "channel.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "outq.h"
#include "rooms.h"
#include "service.h"
#include "tls.h"

/* Messages an actor may take in one turn, and all actors together before
 * the loop polls for I/O again. */
#define ACTOR_BUDGET 64
#define ACTOR_TURN_MAX 8192

struct worker worker = { .chan_fd = -1 };

uint64_t worker_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint32_t worker_label(const char *kind, const char *name)
{
    if (!worker.status)
        return 0;
    char label[STATUS_LABEL_LEN];
    snprintf(label, sizeof label, "%s '%s'", kind, name);
    for (unsigned i = 0; i < worker.nlabels; i++)
        if (strcmp(worker.status->labels[i], label) == 0)
            return i + 1;
    if (worker.nlabels == STATUS_LABELS)
        return 0;
    memcpy(worker.status->labels[worker.nlabels], label, sizeof label);
    return ++worker.nlabels;
}

static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    conn_sweep(ev_now(loop));
}

/* Points the actor timer at the earliest actor deadline. */
static void arm_actor_timer(uint64_t now)
{
    uint64_t deadline = actor_next_deadline();

    if (deadline == worker.actor_deadline)
        return;
    worker.actor_deadline = deadline;
    ev_timer_stop(worker.loop, &worker.actor_timer);
    if (deadline == UINT64_MAX)
        return;
    ev_timer_set(&worker.actor_timer,
                 deadline > now ? (deadline - now) / 1000.0 : 0., 0.);
    ev_timer_start(worker.loop, &worker.actor_timer);
}

static void actor_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    worker.actor_deadline = UINT64_MAX;   /* fired: re-armed at prepare */
}

static void idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

static void drain_now(uint32_t drain_ms);

/* The safe point, before the loop sleeps. */
static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    uint64_t now = worker_now_ms();

    (void)w;
    (void)revents;
    if (worker.drain_due)
        drain_now(worker.drain_ms);
    actor_timers_run(now);
    actor_run(ACTOR_TURN_MAX);
    bool more = service_run_pending();
    conn_run_pending();
    /* After the connections that died writing have left their rooms. */
    rooms_flush();
    channel_flush();
    arm_actor_timer(now);
    /* A drain that a call to the master read meanwhile: next turn. */
    if (more || actor_pending() || worker.drain_due)
        ev_idle_start(loop, &worker.actor_idle);
    else
        ev_idle_stop(loop, &worker.actor_idle);
    if ((worker.stopping || worker.draining) && worker.nconns == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void check_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    conn_run_ready();
}

static void accept_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    if (!worker.stopping && !worker.draining)
        listener_start();
}

void worker_conn_closed(void)
{
    if (!worker.accepting && !worker.stopping && !worker.draining &&
        !ev_is_active(&worker.accept_retry) &&
        worker.nconns < worker.cfg->max_connections)
        listener_start();
}

static void stop_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    log_warn("stop: %zu connection(s) did not finish closing in time",
             worker.nconns);
    ev_break(loop, EVBREAK_ALL);
}

/* How long a graceful stop waits for close handshakes: drain_timeout,
 * and half a second more for the last ones to be read. */
static void start_stop_timer(ev_tstamp seconds)
{
    ev_timer_stop(worker.loop, &worker.stop_timer);
    ev_timer_set(&worker.stop_timer, seconds + 0.5, 0.);
    ev_timer_start(worker.loop, &worker.stop_timer);
}

/* SIGTERM: stop accepting, close every connection with 1001 and wait for
 * the close handshakes up to drain_timeout; a second one, or SIGQUIT:
 * now.  The master sends these; SIGINT and SIGHUP also reach workers
 * from a terminal, alongside the master, which acts on them. */
static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    if (w->signum == SIGINT || w->signum == SIGHUP)
        return;
    if (w->signum == SIGQUIT || worker.stopping) {
        log_info("stopping now (signal %d)", w->signum);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    log_info("stopping gracefully (signal %d): closing %zu connection(s)",
             w->signum, worker.nconns);
    worker.stopping = true;
    ev_timer_stop(loop, &worker.drain_timer);
    metrics_set_state(METRICS_STOPPING);
    listener_stop();
    conn_shutdown_all();
    start_stop_timer(worker.cfg->drain_timeout / 1000.0);
}

/* drain_timeout is over: what is left is closed as at a stop. */
static void drain_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    log_info("drain: drain_timeout is over; closing %zu connection(s) with "
             "1001", worker.nconns);
    conn_shutdown_all();
    start_stop_timer(worker.cfg->close_timeout / 1000.0);
}

void worker_drain(uint32_t drain_ms)
{
    /* The request may arrive while a service is being started (its
     * name's registration reads the channel): act at the safe point. */
    worker.drain_ms = drain_ms;
    worker.drain_due = true;
}

static void drain_now(uint32_t drain_ms)
{
    worker.drain_due = false;
    if (worker.draining || worker.stopping)
        return;
    worker.draining = true;
    metrics_set_state(METRICS_STOPPING);
    log_info("draining: a reload replaced this worker; %zu connection(s) "
             "may go on for up to %.0fs", worker.nconns, drain_ms / 1000.0);
    /* The sockets stay open in the master and the new workers: closing
     * this worker's copies only stops it from accepting. */
    listener_stop();
    ev_timer_stop(worker.loop, &worker.accept_retry);
    for (size_t i = 0; i < worker.nlisteners; i++)
        listener_close(&worker.listeners[i]);
    worker.nlisteners = 0;
    /* Before DRAINED, so that the names of the services are gone from
     * the master when it starts their successors. */
    service_stop_all("reload");
    channel_drained();
    ev_timer_set(&worker.drain_timer, drain_ms / 1000.0, 0.);
    ev_timer_start(worker.loop, &worker.drain_timer);
}

static void set_timeouts(const struct config *cfg)
{
    ev_tstamp ping = cfg->ping_interval / 1000.0;
    ev_tstamp idle = cfg->idle_timeout / 1000.0;

    worker.timeouts[LIST_HANDSHAKE] = cfg->handshake_timeout / 1000.0;
    worker.timeouts[LIST_ACTIVE] = ping > 0 && (idle == 0 || ping < idle)
                                   ? ping : idle;
    worker.timeouts[LIST_PINGED] = idle;
    worker.timeouts[LIST_CLOSING] = cfg->close_timeout / 1000.0;
}

/* How often the sweep runs: fine enough for the shortest timeout. */
static ev_tstamp sweep_interval(void)
{
    ev_tstamp t = 1.0;

    for (int i = 0; i < LIST_COUNT; i++)
        if (worker.timeouts[i] > 0 && worker.timeouts[i] / 4 < t)
            t = worker.timeouts[i] / 4;
    return t < 0.05 ? 0.05 : t;
}

static void free_all(void)
{
    for (int id = 0; id < LIST_COUNT; id++)
        while (worker.lists[id].head)
            conn_kill(worker.lists[id].head, WS_CLOSE_GOING_AWAY);
    conn_run_pending();
    service_stop_all("shutdown");
    service_fini();
    rooms_fini();
    actor_rt_fini();
    channel_close();
    names_free(&worker.names);
    for (size_t i = 0; i < worker.nlisteners; i++)
        listener_close(&worker.listeners[i]);
    free(worker.listeners);
    free(worker.rbuf);
    buf_pool_drain();
    outq_pool_drain();
}

/* What the actor runtime hands back to the worker.  Room messages and
 * presence events travel as "ROOM\0PAYLOAD" (rooms.c); plugins see the
 * two apart. */
static void deliver(struct actor *a, const struct snow_msg *msg)
{
    struct snow_msg split = *msg;

    if (msg->type >= SNOW_MSG_ROOM) {
        const char *room = msg->data;
        size_t rlen = strnlen(room, msg->len);
        if (rlen == msg->len)
            return;
        split.room = room;
        split.data = rlen + 1 < msg->len ? room + rlen + 1 : NULL;
        split.len = msg->len - rlen - 1;
    }
    if (a->kind == ACTOR_CONN)
        conn_deliver_info(a, &split);
    else
        service_deliver(a, &split);
}

static void exited(struct actor *a, const char *reason)
{
    const char *name = actor_name(a);

    (void)reason;
    rooms_leave_all(a);
    if (!name)
        return;
    names_del(&worker.names, name, strlen(name), a->pid);
    channel_unregister(a->pid, name, strlen(name));
}

static const struct actor_hooks hooks = {
    .deliver = deliver,
    .remote_tell = channel_remote_tell,
    .remote_monitor = channel_remote_monitor,
    .remote_demonitor = channel_remote_demonitor,
    .remote_down = channel_remote_down,
    .exited = exited,
};

static const struct rooms_hooks room_hooks = {
    .write = conn_room_deliver,
    .count = channel_room_count,
    .remote_room = channel_has_room,
    .remote_publish = channel_publish,
};

/* Loads the plugins and gives every route its handler. */
static void load_plugins(struct config *cfg)
{
    plugin_load_dir(&worker.plugins, cfg->plugin_dir);
    plugin_resolve_routes(&worker.plugins, cfg->routes, cfg->nroutes,
                          cfg->file);
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (cfg->routes[i].handler)
            cfg->routes[i].label = worker_label("handler",
                                                cfg->routes[i].handler->name);
    service_init(&worker.plugins);
}

static void worker_run(const struct config *cfg, const int *fds, size_t nfds,
                       bool shared)
{
    worker.rbuf = malloc(WORKER_RBUF_SIZE);
    if (!worker.rbuf)
        abort();
    set_timeouts(cfg);

    worker.listeners = calloc(nfds, sizeof *worker.listeners);
    worker.nlisteners = nfds;
    /* fds[i] serves cfg->listens[i] (master.h). */
    for (size_t i = 0; i < nfds; i++)
        listener_init(&worker.listeners[i], fds[i], shared,
                      cfg->listens[i].tls ? tls_server_ctx(cfg->tls) : NULL);
    listener_start();

    ev_timer_init(&worker.sweep, sweep_cb, sweep_interval(), sweep_interval());
    ev_timer_start(worker.loop, &worker.sweep);
    ev_timer_init(&worker.accept_retry, accept_retry_cb, 0.1, 0.);
    ev_timer_init(&worker.stop_timer, stop_timer_cb, 1., 0.);
    ev_timer_init(&worker.drain_timer, drain_timer_cb, 1., 0.);
    ev_prepare_init(&worker.prepare, prepare_cb);
    ev_prepare_start(worker.loop, &worker.prepare);
    /* Lowest priority: runs after every I/O callback of the iteration. */
    ev_check_init(&worker.check, check_cb);
    ev_set_priority(&worker.check, EV_MINPRI);
    ev_check_start(worker.loop, &worker.check);
    ev_signal_init(&worker.sigterm, signal_cb, SIGTERM);
    ev_signal_init(&worker.sigint, signal_cb, SIGINT);
    ev_signal_init(&worker.sigquit, signal_cb, SIGQUIT);
    ev_signal_start(worker.loop, &worker.sigterm);
    ev_signal_start(worker.loop, &worker.sigint);
    ev_signal_start(worker.loop, &worker.sigquit);
    ev_signal_init(&worker.sighup, signal_cb, SIGHUP);
    ev_signal_start(worker.loop, &worker.sighup);
    ev_timer_init(&worker.actor_timer, actor_timer_cb, 0., 0.);
    worker.actor_deadline = UINT64_MAX;
    ev_idle_init(&worker.actor_idle, idle_cb);

    ev_run(worker.loop, 0);
}

int worker_main(const struct worker_args *args)
{
    struct config *cfg = args->cfg;
    char names[8192];

    worker.cfg = cfg;
    worker.slot = args->slot;
    worker.generation = args->generation;
    worker.nworkers = args->nworkers;
    worker.status = args->status;
    /* First, so that a plugin that crashes while loading is still a
     * worker that lived; then no other worker's block stays mapped. */
    metrics_attach(args->metrics, cfg->routes, cfg->nroutes);
    metrics_isolate();
    worker.loop = ev_default_loop(EVFLAG_AUTO);
    load_plugins(cfg);
    actor_rt_init(&(struct actor_rt_config){
        .node = 0, .slot = args->slot, .generation = args->generation,
        .mailbox_limit = (uint32_t)cfg->mailbox_limit,
        .budget = ACTOR_BUDGET, .hooks = &hooks });
    rooms_attach(args->slot, &room_hooks);
    channel_start(args->chan_fd);
    channel_send(IPC_READY, names, service_names(names, sizeof names), NULL,
                 0);
    metrics_set_state(METRICS_READY);
    worker_run(cfg, args->listen_fds, args->nlisten_fds, args->shared_accept);
    free_all();
    plugin_set_free(&worker.plugins);
    ev_loop_destroy(worker.loop);
    return 0;
}
