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
 */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "log.h"
#include "worker.h"

#define ACCEPTS_PER_EVENT 64

static int bind_one(const struct config *cfg, const struct listen_spec *l,
                    bool reuseport)
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
    if (listen(fd, (int)cfg->backlog) != 0)
        goto fail;
    return fd;
fail:
    log_error("%s:%u: listen %s: %s", cfg->file, l->line, l->text,
              strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

int listener_bind_all(const struct config *cfg, int *fds, size_t copies)
{
    size_t n = 0;

    for (size_t c = 0; c < copies; c++)
        for (size_t i = 0; i < cfg->nlistens; i++, n++) {
            fds[n] = bind_one(cfg, &cfg->listens[i], copies > 1);
            if (fds[n] < 0) {
                while (n--)
                    close(fds[n]);
                return -1;
            }
            if (c == 0)
                log_info("listening on %s", cfg->listens[i].text);
        }
    return 0;
}

void listener_init(struct listener *l, int fd, bool shared)
{
    l->fd = fd;
    l->epfd = -1;
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
        conn_new(fd);
    }
}
