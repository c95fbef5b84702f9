/*
 * conn.c - connection I/O and the WebSocket state machine.
 *
 * Reads land in the worker's shared buffer and are parsed in place; only
 * bytes that cannot be consumed yet (a partial header, a partial control
 * frame, input held back by backpressure) are copied into the
 * connection.  A large data frame in progress is read straight into the
 * message buffer with readv, so its payload is copied by the kernel only.
 *
 * Output is appended to the connection's buffer and written once per
 * read (or once per loop iteration for sends from elsewhere): a burst of
 * pipelined messages costs one write(2).  The write watcher is started
 * only when a write comes up short.
 *
 * Over TLS the same bytes pass through OpenSSL (tls.c): reads decrypt
 * into the same buffers, and output is written one record at a time,
 * small ranges of the queue gathered into full records.  OpenSSL can
 * want the socket writable to read (and readable to write), and can hold
 * decrypted bytes that no readiness event will announce; conn->tls keeps
 * track of both (see conn.h).
 */
#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "handshake.h"
#include "outq.h"
#include "log.h"
#include "metrics.h"
#include "snowd/snowd.h"
#include "static.h"
#include "tls.h"
#include "worker.h"

/* Frames at least this large skip the output buffer when it is empty. */
#define DIRECT_WRITE_MIN (8 * 1024)
/* sendmsg calls per flush: more only when a queue has more ranges than
 * one call takes and the socket keeps taking them. */
#define FLUSH_WRITES_MAX 8
/* A frame in progress with at least this much payload left is read
 * straight into the message buffer. */
#define DIRECT_READ_MIN (4 * 1024)
/* The largest TLS record's payload, and what one TLS flush may write
 * before other connections get their turn. */
#define TLS_RECORD_MAX (16 * 1024)
#define TLS_FLUSH_MAX (256 * 1024)
/* The first byte of a TLS handshake record (RFC 8446, section 5.1). */
#define TLS_HANDSHAKE_RECORD 0x16

/* Small ranges of output are gathered here into one TLS record. */
static uint8_t tls_record[TLS_RECORD_MAX];

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_flush(struct conn *c);

/* ---- timeout lists ---------------------------------------------------- */

static void list_unlink(struct conn *c)
{
    if (c->list == LIST_NONE)
        return;
    struct conn_list *l = &worker.lists[c->list];
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    c->list = LIST_NONE;
}

/* Moves c to the tail of list `id` with the given base time; the lists
 * stay ordered because base only grows within each list. */
static void list_move(struct conn *c, enum conn_list_id id, ev_tstamp base)
{
    list_unlink(c);
    struct conn_list *l = &worker.lists[id];
    c->prev = l->tail;
    c->next = NULL;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    c->list = (uint8_t)id;
    c->base = base;
}

static void mark_pending(struct conn *c)
{
    if (c->flags & CONN_PENDING)
        return;
    c->flags |= CONN_PENDING;
    c->pending_next = worker.pending;
    worker.pending = c;
}

/* ---- lifecycle -------------------------------------------------------- */

struct conn *conn_new(int fd, struct ssl_ctx_st *tls)
{
    /* The handler (and so the state size) is known only after the
     * handshake; the connection is reallocated then. */
    struct conn *c = calloc(1, sizeof *c);
    if (!c || (tls && !(c->ssl = tls_conn_new(tls, fd)))) {
        free(c);
        close(fd);
        return NULL;
    }
    c->list = LIST_NONE;
    c->state = CONN_HANDSHAKE;
    ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
    c->io.data = c;
    ev_io_start(worker.loop, &c->io);
    list_move(c, LIST_HANDSHAKE, ev_now(worker.loop));
    worker.nconns++;
    metrics_add(&metrics_self->c.tcp_accepted, 1);
    metrics_add(&metrics_self->tcp_open, 1);
    return c;
}

/* The actor ends with its connection's last callback; a crash ended it
 * earlier, with its own reason. */
static void end_actor(struct conn *c, const char *reason)
{
    if (c->actor.pid && !(c->actor.flags & ACTOR_EXITED))
        actor_exit(&c->actor, reason);
}

static void notify_close(struct conn *c, uint16_t code, const uint8_t *reason,
                         size_t reason_len)
{
    if ((c->flags & (CONN_OPENED | CONN_NOTIFIED)) != CONN_OPENED)
        return;
    c->flags |= CONN_NOTIFIED;
    if (c->route->handler->on_close) {
        worker_enter(&c->actor, c->route->label);
        c->route->handler->on_close(actor_handle(&c->actor), code, (const char *)reason,
                                    reason_len);
        worker_leave();
    }
    end_actor(c, "normal");
}

/* A socket is closing: what it was is counted once (conn_kill runs once
 * per connection).  The open sockets go down last: see metrics_tcp_closed. */
static void count_end(const struct conn *c)
{
    if (c->state == CONN_HANDSHAKE)
        metrics_handshake_failure(c->ssl && !(c->tls & CONN_TLS_OPEN)
                                  ? METRICS_HS_TLS : METRICS_HS_ABORTED);
    if (c->flags & CONN_OPENED) {
        metrics_sub(&c->route->metrics->open, 1);
        metrics_close(c->close_code);
    }
    metrics_tcp_closed();
}

void conn_kill(struct conn *c, uint16_t code)
{
    if (c->state == CONN_DEAD)
        return;
    if (!c->close_code)
        c->close_code = code;
    count_end(c);
    c->state = CONN_DEAD;   /* before on_close: sends are refused there */
    notify_close(c, code, NULL, 0);
    end_actor(c, "normal");
    ev_io_stop(worker.loop, &c->io);
    if (c->ssl) {
        tls_conn_free(c->ssl);
        c->ssl = NULL;
    }
    close(c->io.fd);
    list_unlink(c);
    buf_free(c->in);
    buf_free(c->msg);
    outq_free(&c->out);
    c->in = c->msg = NULL;
    mark_pending(c);
    worker.nconns--;
    worker_conn_closed();
}

/* The output is flushed: shut our side and read until the peer closes. */
static void start_linger(struct conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    c->state = CONN_LINGER;
    if (c->list != LIST_CLOSING)
        list_move(c, LIST_CLOSING, ev_now(worker.loop));
    if (outq_size(c->out) == 0 && !(c->flags & CONN_SHUT)) {
        if (c->ssl)
            tls_shutdown(c->ssl);   /* close_notify, then the FIN */
        shutdown(c->io.fd, SHUT_WR);
        c->flags |= CONN_SHUT;
    }
}

/* Changes the watched events only when they differ: each change costs an
 * epoll_ctl(2), more than the rest of an echo round trip in user space.
 * (libev keeps a private flag in io.events, hence the mask.) */
static void set_events(struct conn *c, int events)
{
    if ((c->io.events & (EV_READ | EV_WRITE)) == events)
        return;
    ev_io_stop(worker.loop, &c->io);
    ev_io_set(&c->io, c->io.fd, events);
    ev_io_start(worker.loop, &c->io);
}

/* ---- TLS ---------------------------------------------------------------- */

/* Pushes c onto the ready stack, as a readable event would. */
static void mark_ready(struct conn *c)
{
    if (c->flags & CONN_READY)
        return;
    c->flags |= CONN_READY;
    c->ready_next = worker.ready;
    worker.ready = c;
}

/* Reads again without waiting for the socket, for bytes OpenSSL holds.
 * Each such read takes some of them or clears CONN_TLS_MORE, so this
 * ends; lingering connections read the socket itself, and never this. */
static void tls_read_again(struct conn *c)
{
    if (c->state != CONN_DEAD && c->state != CONN_LINGER &&
        !(c->flags & CONN_PAUSED))
        mark_ready(c);
}

/* Readiness as TLS sees it: a read that waited for the socket to become
 * writable goes on when it is, and so does a write that waited for it
 * to become readable. */
static int tls_revents(struct conn *c, int revents)
{
    if ((revents & EV_WRITE) && (c->tls & CONN_TLS_READ_WANTS_WRITE)) {
        c->tls &= (uint8_t)~CONN_TLS_READ_WANTS_WRITE;
        revents |= EV_READ;
    }
    if ((revents & EV_READ) && (c->tls & CONN_TLS_WRITE_WANTS_READ)) {
        c->tls &= (uint8_t)~CONN_TLS_WRITE_WANTS_READ;
        revents |= EV_WRITE;
    }
    return revents;
}

/* The events to watch, given those the plain logic wants. */
static int tls_events(const struct conn *c, int want)
{
    if (c->tls & CONN_TLS_WRITE_WANTS_READ) {
        /* Writable is no news to a write that waits for input. */
        want |= EV_READ;
        want &= ~EV_WRITE;
    }
    if (c->tls & CONN_TLS_READ_WANTS_WRITE)
        want |= EV_WRITE;
    return want;
}

/* readv(2) over TLS, with the same results: bytes, 0 at the end of the
 * stream, or -1 with errno (EAGAIN while OpenSSL waits). */
static ssize_t tls_recv(struct conn *c, const struct iovec *iov, int cnt)
{
    size_t got;
    enum tls_rc rc = tls_read(c->ssl, iov, cnt, &got);

    c->tls &= (uint8_t)~(CONN_TLS_READ_WANTS_WRITE | CONN_TLS_MORE);
    if (rc == TLS_WANT_WRITE)
        c->tls |= CONN_TLS_READ_WANTS_WRITE;
    /* Full buffers with more decrypted, or bytes before the end: the
     * next read must come without waiting for the socket. */
    if (rc == TLS_OK ? tls_has_pending(c->ssl)
                     : got && (rc == TLS_CLOSED || rc == TLS_FAILED))
        c->tls |= CONN_TLS_MORE;
    if (got)
        return (ssize_t)got;
    if (rc == TLS_CLOSED)
        return 0;
    errno = rc == TLS_FAILED ? ECONNRESET : EAGAIN;
    return -1;
}

/* The reads of the connection: one branch on c->ssl for plain TCP. */
static inline ssize_t conn_recv(struct conn *c, void *p, size_t n)
{
    if (c->ssl)
        return tls_recv(c, &(struct iovec){ p, n }, 1);
    return recv(c->io.fd, p, n, 0);
}

static inline ssize_t conn_readv(struct conn *c, const struct iovec *iov,
                                 int cnt)
{
    if (c->ssl)
        return tls_recv(c, iov, cnt);
    return readv(c->io.fd, iov, cnt);
}

/* Writes the queue over TLS, a record per call, until it is empty, the
 * socket is full or TLS_FLUSH_MAX is written.  False if c died. */
static bool tls_flush(struct conn *c)
{
    c->tls &= (uint8_t)~CONN_TLS_WRITE_WANTS_READ;
    for (size_t sent = 0; c->out && sent < TLS_FLUSH_MAX;) {
        const uint8_t *p;
        size_t n = outq_gather(c->out, tls_record, sizeof tls_record, &p);
        size_t done;
        switch (tls_write(c->ssl, p, n, &done)) {
        case TLS_OK:
            outq_consume(&c->out, done);
            sent += done;
            break;
        case TLS_WANT_READ:
            c->tls |= CONN_TLS_WRITE_WANTS_READ;
            return true;
        case TLS_WANT_WRITE:
            return true;
        default:
            conn_kill(c, WS_CLOSE_ABNORMAL);
            return false;
        }
    }
    return true;
}

static void reply_and_close(struct conn *c, const char *resp, size_t n);

/* A client that speaks plain HTTP to a TLS port gets a plain answer, as
 * from nginx, rather than a TLS alert it cannot read. */
static void refuse_plain_http(struct conn *c)
{
    static const char body[] = "This port speaks TLS: use https:// or "
                               "wss://.\n";
    char resp[256];
    int n = snprintf(resp, sizeof resp, "HTTP/1.1 400 Bad Request\r\n"
                     "Content-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "\r\n%s", sizeof body - 1, body);

    log_debug("connection %d: plain HTTP sent to a TLS port; answering 400",
              c->io.fd);
    metrics_handshake_failure(METRICS_HS_TLS);
    tls_conn_free(c->ssl);
    c->ssl = NULL;
    c->tls = 0;
    reply_and_close(c, resp, (size_t)n);
}

/* Drives the TLS handshake.  Returns 1 once it is done, else what a
 * read would: 0 at the end of the stream, -1 with errno. */
static ssize_t tls_start(struct conn *c)
{
    if (!(c->tls & CONN_TLS_SNIFFED)) {
        /* Trust boundary: a peek at the client's first byte, before
         * OpenSSL sees any. */
        uint8_t first;
        ssize_t n = recv(c->io.fd, &first, 1, MSG_PEEK);
        if (n <= 0)
            return n;
        if (first != TLS_HANDSHAKE_RECORD) {
            refuse_plain_http(c);
            errno = EAGAIN;
            return -1;
        }
        c->tls |= CONN_TLS_SNIFFED;
    }
    enum tls_rc rc = tls_accept(c->ssl);
    c->tls &= (uint8_t)~CONN_TLS_READ_WANTS_WRITE;
    switch (rc) {
    case TLS_OK:
        c->tls |= CONN_TLS_OPEN;
        /* The request may have come with the handshake's last flight;
         * otherwise it comes with a readiness event of its own. */
        if (tls_has_pending(c->ssl))
            return 1;
        errno = EAGAIN;
        return -1;
    case TLS_WANT_WRITE:
        c->tls |= CONN_TLS_READ_WANTS_WRITE;
        errno = EAGAIN;
        return -1;
    case TLS_WANT_READ:
        errno = EAGAIN;
        return -1;
    default:
        errno = EPROTO;
        return -1;
    }
}

/* ---- output ----------------------------------------------------------- */

/* Writes until the queue is empty or the socket is full: one sendmsg in
 * the usual case, where everything fits. */
static void conn_flush(struct conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    if (c->ssl) {
        if (!tls_flush(c))
            return;
    } else for (int i = 0; i < FLUSH_WRITES_MAX && c->out; i++) {
        ssize_t w = outq_write(&c->out, c->io.fd);
        if (w == -EAGAIN || w == -EINTR)
            break;
        if (w < 0) {
            log_debug("connection %d: write failed: %s", c->io.fd,
                      strerror((int)-w));
            conn_kill(c, WS_CLOSE_ABNORMAL);
            return;
        }
    }
    size_t n = outq_size(c->out);
    /* A paused connection is resumed by the write branch of conn_io_cb,
     * so it keeps the write watcher until then, even with nothing queued
     * (the socket is writable: the event comes on the next iteration). */
    int want = n || (c->flags & CONN_PAUSED) ? EV_WRITE : 0;
    if (!(c->flags & CONN_PAUSED))
        want |= EV_READ;
    if (c->ssl)
        want = tls_events(c, want);
    set_events(c, want);
    if (n == 0 && c->state == CONN_LINGER && !(c->flags & CONN_SHUT))
        start_linger(c);
}

/* Appends to the output; the write happens when the read handler returns
 * or before the loop sleeps. */
static void queue(struct conn *c, const void *p, size_t n)
{
    outq_append(&c->out, p, n);
    if (!(c->flags & CONN_IN_READ))
        mark_pending(c);
}

void conn_send_frame(struct conn *c, enum ws_opcode op, const void *data,
                     size_t len)
{
    uint8_t hdr[WS_MAX_HEADER];
    size_t hlen = ws_encode_header(hdr, op, true, len);

    if (len >= DIRECT_WRITE_MIN && outq_size(c->out) == 0 && !c->ssl) {
        /* Whatever is not written now is queued, and a write error is
         * left for the next flush to find: this runs inside plugin
         * callbacks, where the connection must not die. */
        struct iovec iov[2] = { { hdr, hlen }, { (void *)data, len } };
        ssize_t w = writev(c->io.fd, iov, 2);
        size_t done = w > 0 ? (size_t)w : 0;
        if (done < hlen)
            queue(c, hdr + done, hlen - done);
        size_t body_done = done > hlen ? done - hlen : 0;
        if (body_done < len)
            queue(c, (const uint8_t *)data + body_done, len - body_done);
        return;
    }
    queue(c, hdr, hlen);
    if (len)
        queue(c, data, len);
}

void conn_start_close(struct conn *c, uint16_t code, const char *reason)
{
    uint8_t payload[WS_MAX_CONTROL];
    size_t n = ws_close_build(payload, code, reason, reason ? strlen(reason) : 0);

    if (c->state != CONN_OPEN)
        return;
    c->close_code = code;
    conn_send_frame(c, WS_OP_CLOSE, payload, n);
    c->state = CONN_CLOSING;
    list_move(c, LIST_CLOSING, ev_now(worker.loop));
}

/* Fails the connection (section 7.1.7): a close frame, then no more input
 * is parsed.  The handler hears the code we sent. */
static void fail(struct conn *c, uint16_t code, const char *reason)
{
    if (c->state == CONN_DEAD)
        return;
    if (c->state == CONN_OPEN) {
        uint8_t payload[WS_MAX_CONTROL];
        size_t n = ws_close_build(payload, code, reason, strlen(reason));
        conn_send_frame(c, WS_OP_CLOSE, payload, n);
    }
    c->close_code = code;
    start_linger(c);   /* before on_close: sends are refused there */
    notify_close(c, code, (const uint8_t *)reason, strlen(reason));
}

/* ---- the handshake ---------------------------------------------------- */

/* Answers with a whole HTTP response instead of what was queued, then
 * closes once it is written. */
static void reply_and_close(struct conn *c, const char *resp, size_t n)
{
    outq_free(&c->out);
    queue(c, resp, n);
    c->state = CONN_LINGER;
    list_move(c, LIST_CLOSING, ev_now(worker.loop));
}

static void reject(struct conn *c, int status, enum metrics_hs why)
{
    char resp[512];
    size_t n = handshake_write_error(resp, sizeof resp, status);

    metrics_handshake_failure(why);
    reply_and_close(c, resp, n);
}

/* Answers a plain GET or HEAD from the route's folder, then closes the
 * connection as reject() does, once the whole file is written. */
static void serve_static(struct conn *c, const struct route *r,
                         const struct http_request *req)
{
    struct static_reply rep;

    static_answer(r, req, &rep);
    queue(c, rep.head, rep.head_len);
    if (rep.body_len)
        queue(c, rep.body, rep.body_len);
    static_reply_free(&rep);
    c->state = CONN_LINGER;
    list_move(c, LIST_CLOSING, ev_now(worker.loop));
}

/* Gives the connection room for the handler's state once it is known.
 * Safe because nothing but the loop and the lists point at it yet. */
static struct conn *grow_for_state(struct conn *c, size_t state_size)
{
    if (state_size == 0)
        return c;
    /* Nothing else may point at c: it is on no pending list yet. */
    if (c->flags & CONN_PENDING)
        abort();
    ev_io_stop(worker.loop, &c->io);
    enum conn_list_id id = c->list;
    ev_tstamp base = c->base;
    list_unlink(c);
    struct conn *n = realloc(c, sizeof *c + state_size);
    if (!n)
        abort();
    memset(n->user, 0, state_size);
    n->io.data = n;
    ev_io_start(worker.loop, &n->io);
    list_move(n, id, base);
    return n;
}

/* Runs the handler's on_open and answers 101 or its refusal. */
static struct conn *open_actor(struct conn *c, const struct http_request *req,
                               const struct handshake *hs)
{
    const struct snow_handler *h = c->route->handler;
    char resp[512];
    size_t n = handshake_write_101(resp, sizeof resp, hs);

    c = grow_for_state(c, h->state_size);   /* the actor starts after */
    for (size_t i = 0; hs->protocol && i < c->route->nprotocols; i++)
        if (c->route->protocols[i] == hs->protocol)
            c->protocol = (uint8_t)(i + 1);
    ws_decoder_init(&c->u.dec, worker.cfg->max_message, true);
    if (actor_start(&c->actor, ACTOR_CONN) != 0) {
        reject(c, 500, METRICS_HS_ERROR);
        return c;
    }
    c->state = CONN_OPEN;
    queue(c, resp, n);   /* sends made by on_open follow the 101 */
    int rc = 0;
    if (h->on_open) {
        worker_enter(&c->actor, c->route->label);
        rc = h->on_open(actor_handle(&c->actor),
                        (const snow_request *)req);
        worker_leave();
    }
    if (worker.outcome == OUTCOME_FAIL || rc < 0 || (rc > 0 && rc < 400) ||
        rc > 599) {
        char why[160];
        if (worker.outcome == OUTCOME_FAIL)
            snprintf(why, sizeof why, "%s", worker.fail_reason);
        else
            snprintf(why, sizeof why, "on_open returned %d", rc);
        log_error("route %s: handler '%s' crashed: %s; answering 500",
                  c->route->path, h->name, why);
        char reason[192];
        snprintf(reason, sizeof reason, "crashed: %s", why);
        end_actor(c, reason);
        metrics_crash(METRICS_ACTOR_CONNECTION);
        reject(c, 500, METRICS_HS_ERROR);
        return c;
    }
    if (rc != 0) {
        end_actor(c, "normal");
        reject(c, rc, METRICS_HS_REFUSED);
        return c;
    }
    c->flags |= CONN_OPENED;
    metrics_add(&c->route->metrics->opened, 1);
    metrics_add(&c->route->metrics->open, 1);
    if (worker.outcome == OUTCOME_STOP && c->state == CONN_OPEN)
        conn_start_close(c, WS_CLOSE_NORMAL, "");
    if (c->state == CONN_OPEN)   /* on_open may have started a close */
        list_move(c, LIST_ACTIVE, ev_now(worker.loop));
    return c;
}

/* Why handshake_check (or a missing handler) refused an upgrade. */
static enum metrics_hs refusal(int status)
{
    switch (status) {
    case 403: return METRICS_HS_ORIGIN;
    case 404: return METRICS_HS_NOT_FOUND;
    case 405: return METRICS_HS_METHOD;
    case 426: return METRICS_HS_UPGRADE;
    case 503: return METRICS_HS_UNAVAILABLE;
    default: return METRICS_HS_BAD_REQUEST;
    }
}

/* Parses the request head in c->in.  Returns the connection (it may have
 * moved) with any bytes after the head left in c->in. */
static struct conn *handshake(struct conn *c)
{
    struct http_request req;
    struct handshake hs;
    const struct config *cfg = worker.cfg;
    enum http_rc rc = http_parse(&c->u.scan, (const char *)c->in->data,
                                 c->in->len, cfg->max_header, &req);

    switch (rc) {
    case HTTP_NEED_MORE:
        return c;
    case HTTP_ERR_MALFORMED: reject(c, 400, METRICS_HS_BAD_REQUEST); return c;
    case HTTP_ERR_TOO_LARGE: reject(c, 431, METRICS_HS_TOO_LARGE); return c;
    case HTTP_ERR_VERSION: reject(c, 505, METRICS_HS_HTTP_VERSION); return c;
    case HTTP_DONE: break;
    }
    const struct route *files = static_route(cfg->routes, cfg->nroutes, &req);
    if (files) {
        serve_static(c, files, &req);
        return c;
    }
    c->route = route_find(cfg->routes, cfg->nroutes, req.path, req.path_len);
    if (c->route && !c->route->handler_name)
        c->route = NULL;   /* static files only: no WebSocket here */
    int status = handshake_check(&req, c->route, &hs);
    if (status == 0 && !c->route->handler)
        status = 503;
    if (status) {
        log_debug("handshake refused with %d for %.*s", status,
                  (int)req.target_len, req.target);
        reject(c, status, refusal(status));
        return c;
    }
    c = open_actor(c, &req, &hs);
    c->in->off = req.head_len;
    return c;
}

/* ---- frames ----------------------------------------------------------- */

/* A callback crashed its actor: the connection alone pays, with 1011. */
static void crash(struct conn *c, const char *why)
{
    char reason[192];

    log_error("route %s: handler '%s' crashed: %s; closing with 1011",
              c->route->path, c->route->handler->name, why);
    snprintf(reason, sizeof reason, "crashed: %s", why);
    end_actor(c, reason);
    metrics_crash(METRICS_ACTOR_CONNECTION);
    fail(c, WS_CLOSE_INTERNAL_ERROR, "handler error");
}

/* Acts on what a callback returned and asked for (snow_fail, snow_stop). */
static void after_callback(struct conn *c, int rc, const char *what)
{
    char why[64];

    if (worker.outcome == OUTCOME_FAIL) {
        crash(c, worker.fail_reason);
    } else if (rc < 0) {
        snprintf(why, sizeof why, "%s returned %d", what, rc);
        crash(c, why);
    } else if (worker.outcome == OUTCOME_STOP && c->state == CONN_OPEN) {
        conn_start_close(c, WS_CLOSE_NORMAL, "");
    }
}

static void deliver(struct conn *c, uint8_t opcode, const uint8_t *data,
                    size_t len)
{
    const struct snow_handler *h = c->route->handler;

    if (c->state != CONN_OPEN || !h->on_message)
        return;
    enum snow_kind kind = opcode == WS_OP_TEXT ? SNOW_TEXT : SNOW_BINARY;
    if (kind == SNOW_TEXT) {
        worker.validated_text = data;
        worker.validated_len = len;
    }
    worker_enter(&c->actor, c->route->label);
    int rc = h->on_message(actor_handle(&c->actor), kind, data,
                           len);
    worker_leave();
    worker.validated_text = NULL;
    after_callback(c, rc, "on_message");
}

void conn_deliver_info(struct actor *a, const struct snow_msg *msg)
{
    struct conn *c = conn_of_actor(a);
    const struct snow_handler *h = c->route->handler;

    if (c->state != CONN_OPEN || !h->on_info)
        return;
    worker_enter(a, c->route->label);
    int rc = h->on_info(actor_handle(a), msg);
    worker_leave();
    after_callback(c, rc, "on_info");
    /* Sends from here are written at the safe point that follows. */
}

static void on_close_frame(struct conn *c, const uint8_t *p, size_t len)
{
    uint16_t code = WS_CLOSE_NO_STATUS;
    const uint8_t *reason = p;
    size_t reason_len = 0;

    ws_close_parse(p, len, &code, &reason, &reason_len);  /* validated */
    if (c->state == CONN_OPEN) {
        /* Echo the code (section 5.5.1); an empty close gets an empty one. */
        uint8_t echo[2] = { (uint8_t)(code >> 8), (uint8_t)code };
        conn_send_frame(c, WS_OP_CLOSE, echo, len ? 2 : 0);
        c->close_code = code;
    }
    start_linger(c);   /* before on_close: sends are refused there */
    notify_close(c, code, reason, reason_len);
}

/* A whole data message arrived (whether or not the handler takes it). */
static void count_in(const struct conn *c, size_t len)
{
    struct metrics_route *mr = c->route->metrics;
    metrics_add(&mr->msgs_in, 1);
    metrics_add(&mr->bytes_in, len);
}

static void on_chunk(struct conn *c, const struct ws_chunk *ch)
{
    switch (ch->opcode) {
    case WS_OP_PING:
        if (c->state == CONN_OPEN)
            conn_send_frame(c, WS_OP_PONG, ch->data, ch->len);
        return;
    case WS_OP_PONG:
        return;
    case WS_OP_CLOSE:
        on_close_frame(c, ch->data, ch->len);
        return;
    }
    if (ch->frame_start && ch->message_end && !c->msg) {
        count_in(c, ch->len);
        deliver(c, ch->opcode, ch->data, ch->len);  /* zero copy */
        return;
    }
    if (!c->msg)
        c->msg = buf_new(ch->frame_len < worker.cfg->max_message ?
                         (size_t)ch->frame_len : worker.cfg->max_message);
    if (ch->data != c->msg->data + c->msg->len)
        buf_append(&c->msg, ch->data, ch->len);
    else
        c->msg->len += ch->len;   /* read there directly by readv */
    if (ch->message_end) {
        count_in(c, c->msg->len);
        deliver(c, ch->opcode, c->msg->data, c->msg->len);
        buf_free(c->msg);
        c->msg = NULL;
    }
}

/* What the output holds, counting each range's bookkeeping and the
 * block it pins, so that a queue of many tiny ranges is bounded too. */
static bool over_backpressure(const struct conn *c)
{
    return outq_cost(c->out) > worker.cfg->max_backpressure;
}

bool conn_over_backpressure(struct conn *c)
{
    if (!over_backpressure(c))
        return false;
    if (c->route->backpressure == BACKPRESSURE_DROP)
        return true;
    log_warn("route %s: connection %d: output over max_backpressure "
             "(%zu bytes queued); closing with 1008", c->route->path,
             c->io.fd, outq_size(c->out));
    metrics_add(&metrics_self->c.backpressure_closes, 1);
    conn_start_close(c, WS_CLOSE_POLICY_VIOLATION, "too slow: output backlog");
    return true;
}

bool conn_room_deliver(struct actor *a, struct block *b, uint32_t off,
                       uint32_t end, uint32_t payload)
{
    struct conn *c = conn_of_actor(a);

    if (c->state != CONN_OPEN)
        return false;
    if (conn_over_backpressure(c)) {
        metrics_add(&metrics_self->c.room_drops, 1);
        return false;
    }
    struct metrics_route *mr = c->route->metrics;
    metrics_add(&mr->msgs_out, 1);
    metrics_add(&mr->bytes_out, payload);
    outq_append_shared(&c->out, b, off, end);
    /* Room traffic counts like the handler's own output: a client that
     * does not read it is not read from either, until it catches up. */
    if (over_backpressure(c))
        c->flags |= CONN_PAUSED;
    if (!(c->flags & CONN_IN_READ))
        mark_pending(c);
    return true;
}

/* Decodes frames from p[0..len); returns the bytes consumed.  Stops early
 * when the connection stops reading or output backs up. */
static size_t consume_frames(struct conn *c, uint8_t *p, size_t len)
{
    size_t off = 0;

    while (off < len && (c->state == CONN_OPEN || c->state == CONN_CLOSING)) {
        struct ws_chunk ch;
        size_t used;
        enum ws_rc rc = ws_decode(&c->u.dec, p + off, len - off, &used, &ch);
        if (rc == WS_NEED_MORE)
            break;
        if (rc != WS_CHUNK) {
            static const char *why[] = {
                [WS_ERR_PROTOCOL] = "protocol error",
                [WS_ERR_INVALID_UTF8] = "invalid UTF-8",
                [WS_ERR_TOO_BIG] = "message too big",
            };
            log_debug("connection %d: %s", c->io.fd, why[rc]);
            fail(c, ws_rc_close_code(rc), why[rc]);
            return len;
        }
        off += used;
        on_chunk(c, &ch);
        if (over_backpressure(c)) {
            c->flags |= CONN_PAUSED;
            break;
        }
    }
    if (c->state == CONN_LINGER || c->state == CONN_DEAD)
        return len;   /* nothing more will be parsed */
    return off;
}

/* Parses what c->in holds and keeps only the unconsumed rest. */
static struct conn *consume_input(struct conn *c)
{
    if (c->state == CONN_HANDSHAKE)
        c = handshake(c);
    if (c->state != CONN_HANDSHAKE && c->in) {
        size_t used = consume_frames(c, c->in->data + c->in->off,
                                     buf_size(c->in));
        if (c->in)   /* gone if the connection died meanwhile */
            c->in->off += used;
    }
    if (c->in && buf_size(c->in) == 0) {
        buf_free(c->in);
        c->in = NULL;
    }
    return c;
}

/* ---- reading ---------------------------------------------------------- */

/* Reads the rest of a large frame straight into its message buffer,
 * and whatever follows it into the shared buffer. */
static ssize_t read_into_message(struct conn *c, uint8_t **where, size_t *len)
{
    struct ws_decoder *d = &c->u.dec;
    size_t want = d->remaining;
    uint8_t *dst = buf_reserve(&c->msg, want);
    struct iovec iov[2] = { { dst, want }, { worker.rbuf, WORKER_RBUF_SIZE } };
    ssize_t n = conn_readv(c, iov, 2);

    if (n <= 0)
        return n;
    size_t into_msg = (size_t)n < want ? (size_t)n : want;
    struct ws_chunk ch;
    size_t used;
    enum ws_rc rc = ws_decode(d, dst, into_msg, &used, &ch);
    if (rc != WS_CHUNK) {
        fail(c, ws_rc_close_code(rc), "invalid frame payload");
        return n;
    }
    on_chunk(c, &ch);
    *where = worker.rbuf;
    *len = (size_t)n - into_msg;
    return n;
}

/* Reads once.  Returns what recv(2) returned: bytes read, 0 at the end of
 * the stream, -1 on error.  *where and *len then give the bytes to parse:
 * NULL when they were read into c->in (a handshake) or need no parsing. */
static ssize_t read_some(struct conn *c, uint8_t **where, size_t *len)
{
    struct ws_decoder *d = &c->u.dec;
    ssize_t n;

    *where = NULL;
    *len = 0;
    if (c->state == CONN_LINGER)
        return recv(c->io.fd, worker.rbuf, WORKER_RBUF_SIZE, 0);
    if (c->state == CONN_HANDSHAKE) {
        if (c->ssl && !(c->tls & CONN_TLS_OPEN) && (n = tls_start(c)) <= 0)
            return n;
        /* The head grows in the connection's own buffer, never past the
         * header limit (http_parse fails once it is reached). */
        size_t want = worker.cfg->max_header + 1 - buf_size(c->in);
        if (want > 4096)
            want = 4096;
        n = conn_recv(c, buf_reserve(&c->in, want), want);
        if (n > 0) {
            c->in->len += (size_t)n;
        } else if (buf_size(c->in) == 0) {
            buf_free(c->in);   /* nothing came: hold no buffer */
            c->in = NULL;
        }
        return n;
    }
    if (!c->in && d->in_frame && d->remaining >= DIRECT_READ_MIN && c->msg)
        return read_into_message(c, where, len);

    size_t held = buf_size(c->in);
    if (held) {
        memcpy(worker.rbuf, c->in->data + c->in->off, held);
        buf_free(c->in);
        c->in = NULL;
    }
    n = conn_recv(c, worker.rbuf + held, WORKER_RBUF_SIZE - held);
    if (n < 0 && held) {
        buf_append(&c->in, worker.rbuf, held);  /* keep what was held */
        return n;
    }
    *where = worker.rbuf;
    *len = held + (n > 0 ? (size_t)n : 0);
    return n;
}

/* Handles a readable connection; returns it, perhaps moved. */
static struct conn *on_readable(struct conn *c)
{
    uint8_t *where;
    size_t len;
    ssize_t n = read_some(c, &where, &len);

    if (n == 0) {
        /* End of stream: clean after a close handshake, else abnormal. */
        conn_kill(c, c->state == CONN_LINGER ? c->close_code
                                              : WS_CLOSE_ABNORMAL);
        return c;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_kill(c, WS_CLOSE_ABNORMAL);
        return c;
    }
    if (c->state != CONN_OPEN && c->state != CONN_CLOSING &&
        c->state != CONN_HANDSHAKE)
        return c;
    if (c->list == LIST_ACTIVE || c->list == LIST_PINGED)
        list_move(c, LIST_ACTIVE, ev_now(worker.loop));
    if (c->state == CONN_HANDSHAKE)
        return consume_input(c);
    size_t used = consume_frames(c, where, len);
    if (used < len)
        buf_append(&c->in, where + used, len - used);
    return c;
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;

    (void)loop;
    if (c->ssl)
        revents = tls_revents(c, revents);
    if (revents & EV_WRITE) {
        conn_flush(c);
        if (c->state == CONN_DEAD)
            return;
        if (c->flags & CONN_PAUSED && !over_backpressure(c)) {
            c->flags &= (uint8_t)~CONN_PAUSED;
            c->flags |= CONN_IN_READ;
            c = consume_input(c);
            c->flags &= (uint8_t)~CONN_IN_READ;
            conn_flush(c);
            if (c->ssl && (c->tls & CONN_TLS_MORE))
                tls_read_again(c);
        }
    }
    /* libev invokes the callbacks of one poll in reverse order, which
     * would serve the connection that has waited longest last and stretch
     * the latency tail.  Readable connections are stacked here, so that
     * conn_run_ready() sees them in the kernel's order. */
    if (revents & EV_READ)
        mark_ready(c);
}

void conn_run_ready(void)
{
    struct conn *c;

    while ((c = worker.ready)) {
        worker.ready = c->ready_next;
        c->flags &= (uint8_t)~CONN_READY;
        if (c->state == CONN_DEAD || (c->flags & CONN_PAUSED))
            continue;
        c->flags |= CONN_IN_READ;
        c = on_readable(c);   /* may have moved: see grow_for_state */
        c->flags &= (uint8_t)~CONN_IN_READ;
        conn_flush(c);
        /* OpenSSL still holds decrypted bytes: read them now, since no
         * event will say so. */
        if (c->ssl && (c->tls & CONN_TLS_MORE))
            tls_read_again(c);
    }
}

/* ---- timeouts and the loop's safe point ------------------------------- */

static void expire(struct conn *c, ev_tstamp now)
{
    const struct config *cfg = worker.cfg;

    switch (c->list) {
    case LIST_HANDSHAKE:
        if (c->ssl && !(c->tls & CONN_TLS_OPEN)) {
            /* No HTTP answer can reach a client without TLS. */
            log_debug("connection %d: TLS handshake timed out", c->io.fd);
            conn_kill(c, WS_CLOSE_ABNORMAL);
            return;
        }
        log_debug("connection %d: handshake timed out", c->io.fd);
        reject(c, 408, METRICS_HS_TIMEOUT);
        mark_pending(c);
        return;
    case LIST_ACTIVE:
        if (c->state != CONN_OPEN) {
            /* Only open connections belong here; never loop on one. */
            conn_kill(c, c->close_code ? c->close_code : WS_CLOSE_ABNORMAL);
            return;
        }
        if (cfg->ping_interval &&
            (!cfg->idle_timeout || cfg->ping_interval < cfg->idle_timeout)) {
            conn_send_frame(c, WS_OP_PING, NULL, 0);
            mark_pending(c);
            if (cfg->idle_timeout)
                list_move(c, LIST_PINGED, c->base);
            else
                list_move(c, LIST_ACTIVE, now);
            return;
        }
        /* No ping is due before the idle limit. */
        __attribute__((fallthrough));
    case LIST_PINGED:
        log_debug("connection %d: idle timeout", c->io.fd);
        if (c->state != CONN_OPEN) {
            conn_kill(c, c->close_code ? c->close_code : WS_CLOSE_ABNORMAL);
            return;
        }
        conn_start_close(c, WS_CLOSE_GOING_AWAY, "idle timeout");
        mark_pending(c);
        return;
    case LIST_CLOSING:
        conn_kill(c, c->close_code ? c->close_code : WS_CLOSE_ABNORMAL);
        return;
    }
}

void conn_sweep(ev_tstamp now)
{
    for (int id = 0; id < LIST_COUNT; id++) {
        ev_tstamp t = worker.timeouts[id];
        if (t <= 0)
            continue;
        /* Each expiry moves the head to another list, to the tail of this
         * one with a later base, or kills it, so the loop ends. */
        struct conn *c;
        while ((c = worker.lists[id].head) && c->base + t <= now) {
            expire(c, now);
        }
    }
}

void conn_run_pending(void)
{
    struct conn *c = worker.pending;

    worker.pending = NULL;
    while (c) {
        struct conn *next = c->pending_next;
        c->flags &= (uint8_t)~CONN_PENDING;
        if (c->state == CONN_DEAD)
            free(c);
        else
            conn_flush(c);
        c = next;
    }
}

void conn_shutdown_all(void)
{
    for (int id = 0; id < LIST_COUNT; id++) {
        struct conn *c = worker.lists[id].head, *next;
        for (; c; c = next) {
            next = c->next;
            if (c->state == CONN_HANDSHAKE)
                conn_kill(c, WS_CLOSE_GOING_AWAY);
            else if (c->state == CONN_OPEN)
                conn_start_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
            mark_pending(c);
        }
    }
}
