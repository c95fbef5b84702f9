/*
 * listener.c - binding and accepting.
 *
 * Two ways to spread connections over the workers (`accept =`):
 * - reuseport: each worker has its own socket per address, bound with
 *   SO_REUSEPORT, and the kernel hashes each new connection to one of
 *   them;
 * - shared: every worker watches the same socket through a private epoll
 *   instance registered with EPOLLEXCLUSIVE, so that a new connection
 *   wakes one worker rather than all of them.  libev cannot pass that
 *   flag, so the loop watches the private epoll descriptor instead.
 *
 * Accepting stops while the worker is at max_connections (the kernel's
 * backlog holds new clients meanwhile, as nginx does) and, briefly, when
 * the process runs out of file descriptors.
 *
 * Socket activation: sockets that systemd passes (sd_listen_fds(3)) are
 * matched to `listen` entries by the address they are bound to, and used
 * instead of binding.  systemd passes one socket per address, bound
 * without SO_REUSEPORT unless its unit says ReusePort=yes, so no socket
 * per worker can join it; and duplicating it for each worker would share
 * one socket anyway, without EPOLLEXCLUSIVE.  So a daemon that inherits
 * any socket uses shared accept for all of its listeners.
 */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "config.h"
#include "conn.h"
#include "log.h"
#include "master.h"
#include "worker.h"

#define ACCEPTS_PER_EVENT 64

int listener_bind(const struct config *cfg, const struct listen_spec *l,
                  const char *what, bool reuseport, int backlog)
{
    int one = 1;
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
                    SOCK_CLOEXEC, 0);

    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        goto fail;
    /* [::]:port means IPv6 only, so that 0.0.0.0:port can sit beside it. */
    if (l->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&l->addr, l->addr_len) != 0)
        goto fail;
    if (backlog >= 0 && listen(fd, backlog) != 0)
        goto fail;
    return fd;
fail:
    log_error("%s:%u: %s %s: %s", cfg->file, l->line, what, l->text,
              strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Whether a socket bound to `a` serves `l`: the same family, address and
 * port. */
static bool same_address(const struct sockaddr_storage *a,
                         const struct listen_spec *l)
{
    if (a->ss_family != l->addr.ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)&l->addr;
        return x->sin_port == y->sin_port &&
               x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&l->addr;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return false;
}

#ifdef HAVE_SYSTEMD
static void format_address(const struct sockaddr_storage *a, char *out,
                           size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";

    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        inet_ntop(AF_INET, &x->sin_addr, host, sizeof host);
        snprintf(out, cap, "%s:%u", host, ntohs(x->sin_port));
    } else {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        inet_ntop(AF_INET6, &x->sin6_addr, host, sizeof host);
        snprintf(out, cap, "[%s]:%u", host, ntohs(x->sin6_port));
    }
}

/* Takes the sockets systemd passed: fds[i] gets the one bound to
 * cfg->listens[i]'s address.  Every passed socket must be a listening TCP
 * socket that some entry claims; otherwise each offender is logged and
 * all of them are closed.  Returns how many were taken, or -1. */
static int inherit(const struct config *cfg, int *fds)
{
    int n = sd_listen_fds(1);   /* 1: workers must not see LISTEN_FDS */
    int taken = 0;
    bool bad = false;

    if (n < 0) {
        log_error("socket activation: sd_listen_fds: %s", strerror(-n));
        return -1;
    }
    for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
        struct sockaddr_storage a;
        socklen_t alen = sizeof a;
        char text[INET6_ADDRSTRLEN + 16];
        size_t i;

        if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0 ||
            getsockname(fd, (struct sockaddr *)&a, &alen) != 0 ||
            (a.ss_family != AF_INET && a.ss_family != AF_INET6)) {
            log_error("socket activation: inherited descriptor %d is not a "
                      "listening TCP socket", fd);
            bad = true;
            close(fd);
            continue;
        }
        format_address(&a, text, sizeof text);
        for (i = 0; i < cfg->nlistens; i++)
            if (fds[i] < 0 && same_address(&a, &cfg->listens[i]))
                break;
        if (i == cfg->nlistens) {
            log_error("socket activation: inherited socket %d on %s matches "
                      "no 'listen' in %s", fd, text, cfg->file);
            bad = true;
            close(fd);
            continue;
        }
        /* Workers accept without ever blocking, as on their own sockets. */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        fds[i] = fd;
        taken++;
    }
    if (!bad)
        return taken;
    for (size_t i = 0; i < cfg->nlistens; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return -1;
}
#else
static int inherit(const struct config *cfg, int *fds)
{
    (void)cfg;
    (void)fds;
    return 0;
}
#endif

/* Gives fds[k] (copy k / n of entry k % n) the socket `old` already has
 * for the same address and copy, duplicated, so that a reload keeps
 * every socket whose address stays: clients queued in its backlog are
 * accepted by the new workers, and none is refused. */
static void take_over(const struct config *cfg, const struct master_listeners
                      *old, int *fds, size_t copies)
{
    size_t n = cfg->nlistens;

    for (size_t k = 0; k < n * copies; k++) {
        size_t copy = k / n;
        if (copy >= old->nfds / old->nlisten)
            continue;
        for (size_t j = 0; j < old->nlisten; j++)
            if (same_address(&old->addrs[j], &cfg->listens[k % n])) {
                fds[k] = fcntl(old->fds[copy * old->nlisten + j],
                               F_DUPFD_CLOEXEC, 0);
                break;
            }
    }
}

int listener_open_all(const struct config *cfg,
                      const struct master_listeners *old,
                      struct master_listeners *ls)
{
    size_t n = cfg->nlistens;
    int *inherited = malloc(n * sizeof *inherited);

    if (!inherited)
        abort();
    for (size_t i = 0; i < n; i++)
        inherited[i] = -1;
    /* systemd's sockets come once, at start; a reload keeps them (or
     * their successors) through `old`. */
    int ninherited = old ? 0 : inherit(cfg, inherited);
    if (ninherited < 0) {
        free(inherited);
        return -1;
    }
    if (ninherited > 0 && cfg->accept_mode == ACCEPT_REUSEPORT)
        log_info("socket activation: %d socket(s) from systemd; accept = "
                 "shared for every listener", ninherited);

    bool per_slot = old ? old->per_slot
                        : cfg->accept_mode == ACCEPT_REUSEPORT &&
                          ninherited == 0;
    size_t copies = per_slot ? config_workers(cfg) : 1;
    int *fds = malloc(n * copies * sizeof *fds);
    struct sockaddr_storage *addrs = malloc(n * sizeof *addrs);
    if (!fds || !addrs)
        abort();
    /* With any socket inherited there is one copy, in entry order. */
    for (size_t k = 0; k < n * copies; k++)
        fds[k] = k < n ? inherited[k] : -1;
    free(inherited);
    if (old)
        take_over(cfg, old, fds, copies);

    for (size_t k = 0; k < n * copies; k++) {
        const struct listen_spec *l = &cfg->listens[k % n];
        if (k < n)
            addrs[k] = l->addr;
        if (fds[k] >= 0) {
            if (k < n)
                log_info("listening on %s (%s)", l->text,
                         old ? "kept" : "socket from systemd");
            continue;
        }
        /* At a reload a new socket only listens once its worker is up:
         * in a SO_REUSEPORT group, a listening socket gets its share of
         * new clients at once, and those would wait for a worker that
         * may never come (a reload abandoned), then be reset. */
        fds[k] = listener_bind(cfg, l, "listen", per_slot,
                               old ? -1 : (int)cfg->backlog);
        if (fds[k] < 0) {
            for (size_t j = 0; j < n * copies; j++)
                if (fds[j] >= 0)
                    close(fds[j]);
            free(fds);
            free(addrs);
            return -1;
        }
        if (k < n)
            log_info("listening on %s", l->text);
    }
    *ls = (struct master_listeners){
        .fds = fds, .nfds = n * copies, .nlisten = n, .per_slot = per_slot,
        .addrs = addrs };
    return 0;
}

void listener_close_all(struct master_listeners *ls)
{
    for (size_t i = 0; i < ls->nfds; i++)
        close(ls->fds[i]);
    free(ls->fds);
    free(ls->addrs);
    ls->fds = NULL;
    ls->addrs = NULL;
    ls->nfds = 0;
}

void listener_init(struct listener *l, int fd, bool shared,
                   struct ssl_ctx_st *tls)
{
    l->fd = fd;
    l->epfd = -1;
    l->tls = tls;
    /* Starts a socket bound at a reload, and gives one kept from an
     * earlier configuration this one's backlog. */
    if (listen(fd, (int)worker.cfg->backlog) != 0)
        log_error("listen: %s", strerror(errno));
    if (shared) {
        struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE };
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epfd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            log_error("accept = shared: epoll: %s; every worker will be "
                      "woken for each connection", strerror(errno));
            if (l->epfd >= 0)
                close(l->epfd);
            l->epfd = -1;
        }
    }
    ev_io_init(&l->io, listener_accept_cb, l->epfd >= 0 ? l->epfd : fd,
               EV_READ);
}

void listener_close(struct listener *l)
{
    ev_io_stop(worker.loop, &l->io);
    if (l->epfd >= 0)
        close(l->epfd);
    close(l->fd);
}

void listener_start(void)
{
    for (size_t i = 0; i < worker.nlisteners; i++)
        ev_io_start(worker.loop, &worker.listeners[i].io);
    worker.accepting = true;
}

void listener_stop(void)
{
    for (size_t i = 0; i < worker.nlisteners; i++)
        ev_io_stop(worker.loop, &worker.listeners[i].io);
    worker.accepting = false;
}

static void out_of_descriptors(void)
{
    static ev_tstamp last_log;
    ev_tstamp now = ev_now(worker.loop);

    if (now - last_log >= 1.0) {
        log_error("accept: %s; pausing accepts for 100 ms (raise the "
                  "open files limit, LimitNOFILE=)", strerror(errno));
        last_log = now;
    }
    listener_stop();
    ev_timer_set(&worker.accept_retry, 0.1, 0.);
    ev_timer_start(worker.loop, &worker.accept_retry);
}

void listener_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct listener *l = (struct listener *)w;
    int one = 1;

    (void)loop;
    (void)revents;
    if (l->epfd >= 0) {
        /* The private epoll instance reports its listener as ready until
         * it is asked again: ask, so that it goes quiet once drained. */
        struct epoll_event ev;
        epoll_wait(l->epfd, &ev, 1, 0);
    }
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        if (worker.nconns >= worker.cfg->max_connections) {
            static ev_tstamp last_log;
            if (ev_now(worker.loop) - last_log >= 1.0) {
                log_warn("max_connections (%llu) reached; new clients wait "
                         "in the backlog",
                         (unsigned long long)worker.cfg->max_connections);
                last_log = ev_now(worker.loop);
            }
            listener_stop();
            return;
        }
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM)
                out_of_descriptors();
            else if (errno != EAGAIN && errno != EINTR &&
                     errno != ECONNABORTED)
                log_error("accept: %s", strerror(errno));
            return;
        }
        /* Frames are written whole and at once: never wait for Nagle. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_new(fd, l->tls);
    }
}
