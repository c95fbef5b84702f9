/*
 * master.h - the master process (see master.c).
 */
#ifndef SNOWD_MASTER_H
#define SNOWD_MASTER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct config;

/* Worker slots: a reload starts a whole new generation beside the old
 * one, so there are twice as many as workers may be asked for.  A slot
 * is part of every actor pid (8 bits) and of the room counts' masks. */
#define MASTER_SLOTS 64

/* The bound listening sockets of one configuration.  With per_slot
 * (SO_REUSEPORT), the worker at index i of its generation accepts on
 * fds[i * nlisten .. i * nlisten + nlisten); otherwise every worker
 * accepts on all nlisten of them.  addrs[j] is the address of entry j. */
struct master_listeners {
    int *fds;
    size_t nfds;
    size_t nlisten;
    bool per_slot;
    struct sockaddr_storage *addrs;
};

/* Forks the workers and supervises them until a stop signal, or until
 * they die too often; SIGHUP reloads `file`.  Takes cfg and ls.  Returns
 * the exit status (0, or 1 after giving up). */
int master_run(const char *file, struct config *cfg,
               struct master_listeners *ls);

/* Workers ready to serve, not draining, and heartbeating on time: what
 * /healthz reports on.  *late: the ready ones that are not on time. */
unsigned master_workers_serving(unsigned *late);

#endif
