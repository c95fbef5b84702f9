/*
 * worker.h - the event loop of a serving process, and the state its
 * connections share.
 *
 * There is one worker per process, so its state is a single global.  The
 * read buffer is shared by all connections: a connection only owns bytes
 * that could not be consumed in the read that brought them.
 */
#ifndef SNOWD_WORKER_H
#define SNOWD_WORKER_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

struct config;
struct listener;

#define WORKER_RBUF_SIZE (256 * 1024)

struct worker {
    struct ev_loop *loop;
    const struct config *cfg;
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
    ev_timer sweep;
    ev_timer stop_timer;
    ev_timer accept_retry;
    ev_prepare prepare;
    ev_check check;
    ev_signal sigterm, sigint, sigquit, sighup;
};

extern struct worker worker;

/* Runs the loop on listening sockets already bound; returns the exit
 * status when the loop ends. */
int worker_run(const struct config *cfg, const int *fds, size_t nfds);

/* A connection ended: accept again if the limit had stopped accepting. */
void worker_conn_closed(void);

#endif
