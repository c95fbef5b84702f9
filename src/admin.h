/*
 * admin.h - the master's admin listener: /healthz and /metrics.
 *
 * Off unless [admin] listen is set.  The master binds it and serves it
 * from its own loop; workers never hold its sockets.  Answers come from
 * the shared metrics blocks and the master's room table only (never from
 * a worker by message), so a worker stuck in plugin code cannot stall a
 * scrape, and a slow or silent client cannot stall the master: sockets
 * are non-blocking, clients are bounded in number and in time.
 */
#ifndef SNOWD_ADMIN_H
#define SNOWD_ADMIN_H

struct config;
struct ev_loop;

/* Binds cfg's [admin] listen and starts serving on `loop`; nothing when
 * the listener is off.  Keeps no pointer into cfg, so the config may be
 * replaced (a reload) while the listener serves.  Returns 0, or -1 after
 * logging why the address cannot be bound. */
int admin_start(struct ev_loop *loop, const struct config *cfg);

/* Stops serving: closes the listener and every client.  Safe to call
 * when nothing was started. */
void admin_stop(void);

/* In a process just forked from the master, after it has dropped the
 * master's loop: closes the admin sockets it inherited and frees their
 * state, so that a worker never holds an admin connection open. */
void admin_forget(void);

#endif
