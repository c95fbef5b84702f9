/*
 * privs.h - a worker gives up root for the configured user and group.
 *
 * The master binds the listening sockets, as root if it was started as
 * root, and stays root (it binds again on a reload).  Each worker, right
 * after the fork and before it loads a plugin, switches to [server] user
 * and group, so that no plugin code ever runs as root.  config.c has
 * already looked the names up and checked that a switch is possible.
 */
#ifndef SNOWD_PRIVS_H
#define SNOWD_PRIVS_H

struct config;

/* Sets the supplementary groups, the gid and the uid of cfg (in that
 * order: each step needs the privilege the next one gives up), then
 * checks that all of them took and that root cannot be regained.  Does
 * nothing without cfg->user or when not running as root.  Returns 0, or
 * -1 after logging what failed: the caller must then exit, never run
 * plugin code. */
int privs_drop(const struct config *cfg);

/* A worker that could not drop its privileges exits with this status
 * (EX_NOPERM of sysexits.h). */
#define PRIVS_EXIT_STATUS 77

#endif
