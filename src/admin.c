/*
 * admin.c - the admin listener's sockets, inside the master's loop.
 *
 * Each client gets one answer and then the end of its connection
 * (Connection: close): read the request head, write the response, shut
 * down our side, then read and discard until the client closes, so that
 * a close with unread bytes cannot turn into a reset that destroys the
 * response before the client has read it.  A client has ADMIN_TIMEOUT for
 * all of that; past it the socket is closed whatever its state.  At most
 * ADMIN_CLIENTS are served at once; more wait in the kernel's backlog,
 * as the accept watcher stops until one leaves.
 *
 * Departs from the rule that only worker.c, master.c, listener.c and
 * conn.c include <ev.h>: this is the master's second kind of socket, and
 * keeping it out of master.c keeps master.c about supervision.
 */
#include "admin.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "admin_http.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "master.h"
#include "metrics.h"
#include "rooms.h"

#define ADMIN_CLIENTS 64
#define ADMIN_TIMEOUT 5.0        /* seconds for a whole exchange */
#define ADMIN_LINGER 1.0         /* seconds to wait for the client's close */
#define ADMIN_ACCEPT_RETRY 1.0   /* after running out of descriptors */

struct admin_client {
    ev_io io;
    ev_timer timer;
    struct admin_client *prev, *next;
    struct http_scan scan;
    char *out;                   /* the response, head and body */
    size_t out_len, out_off;
    size_t in_len;
    bool lingering;              /* answered; waiting for the close */
    char in[ADMIN_HEAD_MAX];
};

static struct {
    struct ev_loop *loop;
    int fd;
    ev_io accept_io;
    ev_timer retry;
    struct admin_client *clients;
    unsigned nclients;
} A = { .fd = -1 };

static void client_cb(struct ev_loop *loop, ev_io *w, int revents);

/* ---- clients ---------------------------------------------------------- */

static void resume_accepting(void)
{
    if (A.fd >= 0 && !ev_is_active(&A.accept_io) &&
        !ev_is_active(&A.retry) && A.nclients < ADMIN_CLIENTS)
        ev_io_start(A.loop, &A.accept_io);
}

static void client_free(struct admin_client *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        A.clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    close(c->io.fd);
    free(c->out);
    free(c);
    A.nclients--;
}

static void client_close(struct admin_client *c)
{
    ev_io_stop(A.loop, &c->io);
    ev_timer_stop(A.loop, &c->timer);
    client_free(c);
    resume_accepting();
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct admin_client *c = w->data;

    (void)loop;
    (void)revents;
    if (!c->lingering)
        log_debug("admin: client %d too slow; closed", c->io.fd);
    client_close(c);
}

/* The whole response in c->out. */
static void answer(struct admin_client *c, const struct admin_answer *a)
{
    char head[256];
    const char *type = "text/plain; charset=utf-8";
    char *body = NULL;
    size_t body_len = 0;
    int status = a->status;

    if (a->page == ADMIN_PAGE_METRICS) {
        uint64_t members = 0;
        struct metrics_extra x;
        x.rooms = rooms_totals(&members);
        x.room_members = members;
        body = metrics_render(&x, &body_len);
        type = ADMIN_METRICS_TYPE;
    } else if (a->page == ADMIN_PAGE_HEALTHZ) {
        unsigned late, serving = master_workers_serving(&late);
        /* Healthy: the master runs (it answers) and a worker serves.  A
         * ready worker stuck in plugin code does not serve. */
        if (!serving)
            status = 503;
        body = strdup(serving ? "ok\n"
                      : late ? "no worker answering: the ready ones have "
                               "missed their heartbeats\n"
                             : "no worker ready\n");
        body_len = strlen(body);
    } else {
        body = strdup(admin_http_error_body(status));
        body_len = strlen(body);
    }
    size_t hlen = admin_http_head(head, sizeof head, status, type, body_len);
    size_t send_body = a->head ? 0 : body_len;
    c->out = malloc(hlen + send_body);
    if (!c->out)
        abort();
    memcpy(c->out, head, hlen);
    memcpy(c->out + hlen, body, send_body);
    c->out_len = hlen + send_body;
    c->out_off = 0;
    free(body);
    log_debug("admin: %s %d", a->page == ADMIN_PAGE_METRICS ? "/metrics" :
              a->page == ADMIN_PAGE_HEALTHZ ? "/healthz" : "-", status);
}

static void set_events(struct admin_client *c, int events)
{
    ev_io_stop(A.loop, &c->io);
    ev_io_set(&c->io, c->io.fd, events);
    ev_io_start(A.loop, &c->io);
}

/* Writes what the socket takes; once all is written, shuts down our
 * side and lingers. */
static void client_write(struct admin_client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->io.fd, c->out + c->out_off,
                         c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!(c->io.events & EV_WRITE))
                set_events(c, EV_WRITE);
            return;
        }
        if (n <= 0) {
            client_close(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    shutdown(c->io.fd, SHUT_WR);
    c->lingering = true;
    set_events(c, EV_READ);
    ev_timer_stop(A.loop, &c->timer);
    ev_timer_set(&c->timer, ADMIN_LINGER, 0.);
    ev_timer_start(A.loop, &c->timer);
}

static void client_read(struct admin_client *c)
{
    char discard[512];
    char *to = c->lingering ? discard : c->in + c->in_len;
    size_t want = c->lingering ? sizeof discard
                               : sizeof c->in - c->in_len;
    ssize_t n = recv(c->io.fd, to, want, 0);

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        client_close(c);   /* gone, or done after our answer */
        return;
    }
    if (c->lingering)
        return;
    c->in_len += (size_t)n;
    struct admin_answer a;
    admin_http_decide(&c->scan, c->in, c->in_len, &a);
    /* A full buffer always gets an answer (431 at worst). */
    if (a.status == 0)
        return;
    answer(c, &a);
    client_write(c);
}

static void client_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct admin_client *c = w->data;

    (void)loop;
    if (revents & EV_READ)
        client_read(c);
    else if (revents & EV_WRITE)
        client_write(c);
}

/* ---- accepting -------------------------------------------------------- */

static void client_new(int fd)
{
    struct admin_client *c = calloc(1, sizeof *c);

    if (!c)
        abort();
    ev_io_init(&c->io, client_cb, fd, EV_READ);
    c->io.data = c;
    ev_timer_init(&c->timer, timeout_cb, ADMIN_TIMEOUT, 0.);
    c->timer.data = c;
    c->next = A.clients;
    if (A.clients)
        A.clients->prev = c;
    A.clients = c;
    A.nclients++;
    ev_io_start(A.loop, &c->io);
    ev_timer_start(A.loop, &c->timer);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    resume_accepting();
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    while (A.nclients < ADMIN_CLIENTS) {
        int fd = accept4(A.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            client_new(fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        /* Out of descriptors or memory: pause rather than spin. */
        log_warn("admin: accept: %s; pausing for %.0fs", strerror(errno),
                 ADMIN_ACCEPT_RETRY);
        ev_io_stop(loop, w);
        ev_timer_set(&A.retry, ADMIN_ACCEPT_RETRY, 0.);
        ev_timer_start(loop, &A.retry);
        return;
    }
    ev_io_stop(loop, w);   /* full: resume_accepting when one leaves */
}

/* ---- the whole -------------------------------------------------------- */

/* The master's own socket: never SO_REUSEPORT, so a second daemon on
 * the same address fails to start instead of sharing it. */
static int bind_admin(const struct config *cfg)
{
    return listener_bind(cfg, &cfg->admin, "[admin] listen", false, 64);
}

int admin_start(struct ev_loop *loop, const struct config *cfg)
{
    if (!cfg->admin.text)
        return 0;
    int fd = bind_admin(cfg);
    if (fd < 0)
        return -1;
    A.loop = loop;
    A.fd = fd;
    ev_io_init(&A.accept_io, accept_cb, fd, EV_READ);
    ev_timer_init(&A.retry, retry_cb, ADMIN_ACCEPT_RETRY, 0.);
    ev_io_start(loop, &A.accept_io);
    log_info("admin: /healthz and /metrics on %s", cfg->admin.text);
    return 0;
}

void admin_stop(void)
{
    if (A.fd < 0)
        return;
    while (A.clients)
        client_close(A.clients);
    ev_io_stop(A.loop, &A.accept_io);
    ev_timer_stop(A.loop, &A.retry);
    close(A.fd);
    A.fd = -1;
}

void admin_forget(void)
{
    while (A.clients)
        client_free(A.clients);
    if (A.fd >= 0)
        close(A.fd);
    A.fd = -1;
    A.loop = NULL;
}
