/*
 * master.h - the master process (see master.c).
 */
#ifndef SNOWD_MASTER_H
#define SNOWD_MASTER_H

#include <stdbool.h>
#include <stddef.h>

struct config;

/* The bound listening sockets.  With per_slot (SO_REUSEPORT), worker s
 * accepts on fds[s * nlisten .. s * nlisten + nlisten); otherwise every
 * worker accepts on all nlisten of them. */
struct master_listeners {
    int *fds;
    size_t nfds;
    size_t nlisten;
    bool per_slot;
};

/* Forks the workers and supervises them until a stop signal, or until
 * they die too often.  Returns the exit status (0, or 1 after giving
 * up). */
int master_run(struct config *cfg, const struct master_listeners *ls);

#endif
