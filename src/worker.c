/*
 * worker.c - a serving process's event loop.
 *
 * Watchers: one per listener, one per connection, one repeating sweep
 * timer for every timeout (see conn.h), one prepare watcher that writes
 * queued output and frees dead connections before the loop sleeps, and
 * the stop signals.
 */
#include "worker.h"

#include <stdlib.h>

#include "buf.h"
#include "config.h"
#include "listener.h"
#include "log.h"

struct worker worker;

static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    conn_sweep(ev_now(loop));
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)w;
    (void)revents;
    conn_run_pending();
    if (worker.stopping && worker.nconns == 0)
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
    if (!worker.stopping)
        listener_start();
}

void worker_conn_closed(void)
{
    if (!worker.accepting && !worker.stopping &&
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

/* SIGTERM, SIGINT: stop accepting, close every connection with 1001 and
 * wait for the close handshakes up to close_timeout.  SIGQUIT: now. */
static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    if (w->signum == SIGQUIT || worker.stopping) {
        log_info("stopping now (signal %d)", w->signum);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    log_info("stopping gracefully (signal %d): closing %zu connection(s)",
             w->signum, worker.nconns);
    worker.stopping = true;
    listener_stop();
    conn_shutdown_all();
    ev_timer_set(&worker.stop_timer,
                 worker.cfg->close_timeout / 1000.0 + 0.5, 0.);
    ev_timer_start(loop, &worker.stop_timer);
}

/* Reloading arrives with the master process; until then SIGHUP must not
 * take the server down (its default action would). */
static void sighup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    log_warn("SIGHUP: reloading is not supported by this version; ignored "
             "(restart snowd to apply a new configuration)");
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
    free(worker.listeners);
    free(worker.rbuf);
    buf_pool_drain();
}

int worker_run(const struct config *cfg, const int *fds, size_t nfds)
{
    worker.loop = ev_default_loop(EVFLAG_AUTO);
    worker.cfg = cfg;
    worker.rbuf = malloc(WORKER_RBUF_SIZE);
    if (!worker.rbuf)
        abort();
    set_timeouts(cfg);

    worker.listeners = calloc(nfds, sizeof *worker.listeners);
    worker.nlisteners = nfds;
    for (size_t i = 0; i < nfds; i++) {
        worker.listeners[i].fd = fds[i];
        ev_io_init(&worker.listeners[i].io, listener_accept_cb, fds[i],
                   EV_READ);
    }
    listener_start();

    ev_timer_init(&worker.sweep, sweep_cb, sweep_interval(), sweep_interval());
    ev_timer_start(worker.loop, &worker.sweep);
    ev_timer_init(&worker.accept_retry, accept_retry_cb, 0.1, 0.);
    ev_timer_init(&worker.stop_timer, stop_timer_cb, 1., 0.);
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
    ev_signal_init(&worker.sighup, sighup_cb, SIGHUP);
    ev_signal_start(worker.loop, &worker.sighup);

    ev_run(worker.loop, 0);

    free_all();
    ev_loop_destroy(worker.loop);
    log_info("stopped");
    return 0;
}
