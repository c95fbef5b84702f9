/*
 * notify.h - telling the service manager how the daemon is doing
 * (sd_notify(3)): readiness, stopping, a status line and the watchdog.
 *
 * Only the master talks to systemd: it is the unit's main process
 * (NotifyAccess=main), and it alone knows whether every worker is up and
 * heartbeating.  Workers drop the notification socket from their
 * environment right after the fork, so plugin code cannot talk to
 * systemd either.
 *
 * Without NOTIFY_SOCKET in the environment, or in a build without
 * libsystemd, every call here does nothing.
 */
#ifndef SNOWD_NOTIFY_H
#define SNOWD_NOTIFY_H

#include <stdbool.h>

/* The watchdog the manager asked for (WATCHDOG_USEC, and WATCHDOG_PID
 * naming this process or absent), read once and removed from the
 * environment so that workers never see it.  Returns the interval at
 * which to send WATCHDOG=1, in seconds: half the watchdog timeout, as
 * sd_watchdog_enabled(3) advises; 0 when there is no watchdog. */
double notify_watchdog_interval(void);

/* READY=1, with a STATUS= line. */
void notify_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A STATUS= line alone. */
void notify_status(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* RELOADING=1 (and MONOTONIC_USEC=), with a STATUS= line; READY=1
 * follows when the reload is over, whether it took or not. */
void notify_reloading(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* STOPPING=1, with a STATUS= line. */
void notify_stopping(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* WATCHDOG=1. */
void notify_watchdog(void);

/* Whether a service manager listens (NOTIFY_SOCKET is set). */
bool notify_enabled(void);

/* In a new worker: forget the notification socket. */
void notify_forget(void);

#endif
