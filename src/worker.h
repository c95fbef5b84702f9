/*
 * worker.h - a worker process: its event loop, its channel to the
 * master, and the state its connections and actors share.
 *
 * There is one worker per process, so its state is a single global.  The
 * read buffer is shared by all connections: a connection only owns bytes
 * that could not be consumed in the read that brought them.
 *
 * Every call into plugin code goes through worker_enter/worker_leave, so
 * that the master can name the handler that was running when a worker
 * crashed or hung (through the shared status page), and so that
 * snow_fail/snow_stop know which actor they apply to.
 */
#ifndef SNOWD_WORKER_H
#define SNOWD_WORKER_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "ipc.h"
#include "names.h"
#include "plugin.h"

struct actor;
struct config;
struct listener;
struct metrics_block;

#define WORKER_RBUF_SIZE (256 * 1024)

/* What a worker shows the master without a message: shared memory,
 * written by the worker, read by the master after a crash or a hang. */
#define STATUS_LABELS 128
#define STATUS_LABEL_LEN 80
struct worker_status {
    volatile uint32_t running;       /* label index + 1; 0 = snowd code */
    char labels[STATUS_LABELS][STATUS_LABEL_LEN];
};

/* What the current plugin callback asked for besides its return value. */
enum worker_outcome {
    OUTCOME_NONE,
    OUTCOME_FAIL,      /* snow_fail: reason in worker.fail_reason */
    OUTCOME_STOP       /* snow_stop */
};

struct worker {
    struct ev_loop *loop;
    const struct config *cfg;
    unsigned slot, generation, nworkers;
    uint8_t *rbuf;
    struct conn_list lists[LIST_COUNT];
    ev_tstamp timeouts[LIST_COUNT];   /* seconds; 0 = never */
    struct conn *pending;             /* to flush or free before sleeping */
    struct conn *ready;               /* readable, in the kernel's order */
    size_t nconns;
    /* The text message being handed to on_message: already validated, so
     * sending it back unchanged (an echo) skips a second UTF-8 pass. */
    const void *validated_text;
    size_t validated_len;
    struct listener *listeners;
    size_t nlisteners;
    bool accepting;
    bool stopping;
    bool draining;                    /* a reload replaced this worker */
    bool drain_due;                   /* ... and the safe point acts */
    uint32_t drain_ms;
    ev_timer sweep;
    ev_timer stop_timer;
    ev_timer drain_timer;
    ev_timer accept_retry;
    ev_prepare prepare;
    ev_check check;
    ev_signal sigterm, sigint, sigquit, sighup;

    /* plugins and the callback running now */
    struct plugin_set plugins;
    struct worker_status *status;
    unsigned nlabels;
    struct actor *current;
    enum worker_outcome outcome;
    char fail_reason[128];

    /* actors */
    ev_timer actor_timer;             /* follows the earliest actor timer */
    uint64_t actor_deadline;          /* what actor_timer is set for */
    ev_idle actor_idle;               /* keeps the loop polling while
                                         actors have messages waiting */
    struct names names;               /* copy of the master's registry */

    /* the channel to the master */
    int chan_fd;
    ev_io chan_read, chan_write;
    struct ipc_in chan_in;
    struct ipc_out chan_out;
    ev_timer heartbeat;
};

extern struct worker worker;

/* Everything a worker needs from the master that forked it. */
struct worker_args {
    struct config *cfg;             /* this process's copy: routes get
                                       their handlers here */
    unsigned slot, generation, nworkers;
    int chan_fd;
    const int *listen_fds;
    size_t nlisten_fds;
    bool shared_accept;             /* fds shared by all workers */
    struct worker_status *status;
    struct metrics_block *metrics;  /* this slot's counters (metrics.h) */
};

/* Loads the plugins, joins the master and serves until stopped.
 * Returns the process's exit status. */
int worker_main(const struct worker_args *args);

/* A connection ended: accept again if the limit had stopped accepting,
 * or end a drain that has no connection left. */
void worker_conn_closed(void);

/* The master started a new generation (a reload): stop accepting, stop
 * the services, let the connections go on for up to drain_ms, then close
 * the rest with 1001 and exit. */
void worker_drain(uint32_t drain_ms);

/* The label index for "KIND 'NAME'" in the status page (added once). */
uint32_t worker_label(const char *kind, const char *name);

/* Brackets every call into plugin code for actor a. */
static inline void worker_enter(struct actor *a, uint32_t label)
{
    worker.current = a;
    worker.outcome = OUTCOME_NONE;
    if (worker.status)
        worker.status->running = label;
}

static inline void worker_leave(void)
{
    worker.current = NULL;
    if (worker.status)
        worker.status->running = 0;
}

/* Milliseconds of the monotonic clock, for actor timers. */
uint64_t worker_now_ms(void);

#endif
