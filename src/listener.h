/*
 * listener.h - listening sockets: binding them (before any worker runs)
 * and accepting on them (inside a worker's loop).
 */
#ifndef SNOWD_LISTENER_H
#define SNOWD_LISTENER_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

struct config;

struct listener {
    ev_io io;
    int fd;
    int epfd;        /* private EPOLLEXCLUSIVE instance, or -1 */
};

/* Binds and listens on every `listen` of cfg, `copies` times (more than
 * one copy: with SO_REUSEPORT); fills fds with copies * nlistens entries,
 * copy by copy.  Returns 0, or -1 after logging which address failed. */
int listener_bind_all(const struct config *cfg, int *fds, size_t copies);

/* Prepares a worker's listener on fd; shared: fd is watched by every
 * worker, through EPOLLEXCLUSIVE. */
void listener_init(struct listener *l, int fd, bool shared);

/* Stops watching and closes the worker's descriptors. */
void listener_close(struct listener *l);

/* Starts or stops accepting on every listener of the worker. */
void listener_start(void);
void listener_stop(void);

/* Accept callback. */
void listener_accept_cb(struct ev_loop *loop, ev_io *w, int revents);

#endif
