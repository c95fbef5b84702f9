/*
 * notify.c - sd_notify(3) from the master (see notify.h).
 *
 * A failure to notify is not an error the daemon can do anything about
 * (the manager decides what a missing READY=1 or WATCHDOG=1 means), so
 * the results of sd_notify are ignored.
 */
#include "notify.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "log.h"

/* Sends "HEAD\nSTATUS=<fmt ...>"; HEAD may be NULL. */
static void send_state(const char *head, const char *fmt, va_list ap)
{
#ifdef HAVE_SYSTEMD
    char status[256];

    vsnprintf(status, sizeof status, fmt, ap);
    if (head)
        sd_notifyf(0, "%s\nSTATUS=%s", head, status);
    else
        sd_notifyf(0, "STATUS=%s", status);
#else
    (void)head;
    (void)fmt;
    (void)ap;
#endif
}

double notify_watchdog_interval(void)
{
#ifdef HAVE_SYSTEMD
    uint64_t usec = 0;
    int rc = sd_watchdog_enabled(1, &usec);

    if (rc < 0)
        log_warn("systemd watchdog: WATCHDOG_USEC or WATCHDOG_PID is "
                 "malformed; not sending WATCHDOG=1");
    if (rc <= 0 || usec == 0)
        return 0;
    double timeout = (double)usec / 1e6;
    log_info("systemd watchdog: %.3fs; WATCHDOG=1 every %.3fs while every "
             "worker heartbeats", timeout, timeout / 2);
    return timeout / 2;
#else
    return 0;
#endif
}

void notify_ready(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_state("READY=1", fmt, ap);
    va_end(ap);
}

void notify_status(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_state(NULL, fmt, ap);
    va_end(ap);
}

void notify_reloading(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
#ifdef HAVE_SYSTEMD
    /* systemd 253 and later want the time of the request beside
     * RELOADING=1 (Type=notify-reload); older ones ignore it. */
    struct timespec ts;
    char head[64];
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(head, sizeof head, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL +
             (unsigned long long)ts.tv_nsec / 1000);
    send_state(head, fmt, ap);
#else
    send_state(NULL, fmt, ap);
#endif
    va_end(ap);
}

void notify_stopping(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_state("STOPPING=1", fmt, ap);
    va_end(ap);
}

void notify_watchdog(void)
{
#ifdef HAVE_SYSTEMD
    sd_notify(0, "WATCHDOG=1");
#endif
}

bool notify_enabled(void)
{
#ifdef HAVE_SYSTEMD
    return getenv("NOTIFY_SOCKET") != NULL;
#else
    return false;
#endif
}

void notify_forget(void)
{
    unsetenv("NOTIFY_SOCKET");
}
