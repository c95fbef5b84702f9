/*
 * listener.h - listening sockets: binding them (before any worker runs)
 * and accepting on them (inside a worker's loop).
 */
#ifndef SNOWD_LISTENER_H
#define SNOWD_LISTENER_H

#include <ev.h>
#include <stddef.h>

struct config;

struct listener {
    ev_io io;
    int fd;
};

/* Binds and listens on every `listen` of cfg; fills fds (nlistens
 * entries).  Returns 0, or -1 after logging which address failed. */
int listener_bind_all(const struct config *cfg, int *fds);

/* Starts or stops accepting on every listener of the worker. */
void listener_start(void);
void listener_stop(void);

/* Accept callback. */
void listener_accept_cb(struct ev_loop *loop, ev_io *w, int revents);

#endif
