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
struct listen_spec;
struct master_listeners;
struct ssl_ctx_st;

struct listener {
    ev_io io;
    int fd;
    int epfd;                   /* private EPOLLEXCLUSIVE instance, or -1 */
    struct ssl_ctx_st *tls;     /* `listen = ... tls`: the context its
                                   connections start from; else NULL */
};

/* Opens a socket for every `listen` of cfg.  First takes the sockets
 * systemd passed (socket activation), matching each to the entry with its
 * address, or with `old` (a reload), duplicates those of old whose
 * address stays (old's accept mode is kept); then binds the rest: one socket per worker and entry with
 * accept = reuseport and nothing inherited (SO_REUSEPORT), one per entry
 * otherwise.  Fills *ls; its fds are the caller's, to give back with
 * listener_close_all.  Returns 0, or -1 after logging why (an address
 * that cannot be bound, an inherited socket that no entry claims). */
int listener_open_all(const struct config *cfg,
                      const struct master_listeners *old,
                      struct master_listeners *ls);

/* A new socket bound to l's address (with SO_REUSEPORT if asked), and
 * listening with `backlog` unless it is negative.  Returns it, or -1
 * after logging "FILE:LINE: WHAT ADDRESS: reason". */
int listener_bind(const struct config *cfg, const struct listen_spec *l,
                  const char *what, bool reuseport, int backlog);

/* Closes the sockets of listener_open_all and frees ls->fds. */
void listener_close_all(struct master_listeners *ls);

/* Prepares a worker's listener on fd; shared: fd is watched by every
 * worker, through EPOLLEXCLUSIVE; tls: the TLS context for its
 * connections, or NULL for plain TCP. */
void listener_init(struct listener *l, int fd, bool shared,
                   struct ssl_ctx_st *tls);

/* Stops watching and closes the worker's descriptors. */
void listener_close(struct listener *l);

/* Starts or stops accepting on every listener of the worker. */
void listener_start(void);
void listener_stop(void);

/* Accept callback. */
void listener_accept_cb(struct ev_loop *loop, ev_io *w, int revents);

#endif
