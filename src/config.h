/*
 * config.h - snowd.ini, read with inih and checked key by key.
 *
 * Every problem is reported as "FILE:LINE: what is wrong" on stderr, and
 * all of them are reported before config_load fails, so one run of
 * `snowd -t` shows every mistake.  Defaults are filled in first, so a
 * config holds only what differs from them.
 */
#ifndef SNOWD_CONFIG_H
#define SNOWD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "log.h"
#include "route.h"
#include "tls.h"

struct listen_spec {
    char *text;                     /* as written, for log lines */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    unsigned line;
    bool tls;                       /* `listen = ADDRESS tls` */
};

struct config {
    char *file;
    char *plugin_dir;               /* absolute, or relative to the cwd */
    enum log_level log_level;
    enum log_format log_format;
    uint64_t backlog;
    char *pid_file;                 /* resolved like plugin_dir; NULL: none */

    /* What workers run as (see privs.h); user NULL: as the master.  The
     * names are looked up once, when the file is read. */
    char *user, *group;             /* as written; group NULL: user's */
    uid_t uid;
    gid_t gid;
    gid_t *groups;                  /* supplementary groups, gid included */
    size_t ngroups;

    /* process model; durations in milliseconds */
    uint64_t workers;               /* 0 = auto: one per CPU, resolved by
                                       config_load */
    uint64_t hang_timeout;          /* 0 = never kill a silent worker */
    uint64_t max_restarts;          /* worker deaths allowed ... */
    uint64_t restart_window;        /* ... within this window */
    enum accept_mode { ACCEPT_REUSEPORT, ACCEPT_SHARED } accept_mode;

    struct listen_spec *listens;
    size_t nlistens;

    /* [admin] listen: where the master serves /healthz and /metrics;
     * admin.text NULL: nowhere (the default). */
    struct listen_spec admin;

    /* [limits]; durations in milliseconds, 0 = off */
    uint64_t max_message;
    uint64_t max_header;
    uint64_t max_backpressure;
    uint64_t max_connections;
    uint64_t handshake_timeout;
    uint64_t idle_timeout;
    uint64_t ping_interval;
    uint64_t close_timeout;
    uint64_t drain_timeout;         /* graceful stop and reload: how long
                                       old connections may go on */
    uint64_t mailbox_limit;         /* tells waiting per actor */

    struct route *routes;
    size_t nroutes;

    /* [tls] and [tls NAME ...], and the contexts built from them when
     * the file is read (NULL without [tls]). */
    struct tls_conf tls_conf;
    struct tls *tls;
};

/* Reads and checks `file`, and builds its TLS contexts (so certificates
 * and keys are read here, by the caller's user).  Returns NULL after
 * printing every error.  May be called again in the same process (a
 * reload); each result is freed with config_free. */
struct config *config_load(const char *file);

void config_free(struct config *cfg);

/* The number of worker processes cfg asks for, with auto resolved. */
unsigned config_workers(const struct config *cfg);

/* Half of the worker slots (master.h), so that a whole new generation
 * can start beside the old one during a reload. */
#define CONFIG_MAX_WORKERS 32

#endif
