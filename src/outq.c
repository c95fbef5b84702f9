/*
 * outq.c - output queues of refcounted blocks (see outq.h).
 */
#include "outq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define POOL_MAX 256
#define QUEUE_MIN 8
#define IOV_BATCH 64

static struct block *block_pool[POOL_MAX];
static size_t blocks_pooled;
static struct outq *queue_pool[POOL_MAX];
static size_t queues_pooled;

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

struct block *block_new(size_t cap)
{
    struct block *b;

    /* Only standard blocks come from the pool: a room asks for small
     * ones on purpose (rooms.c), so that a slow member pins little. */
    if (cap == BLOCK_STD_SIZE && blocks_pooled) {
        b = block_pool[--blocks_pooled];
    } else {
        if (cap > UINT32_MAX)
            abort();
        b = xmalloc(sizeof *b + cap);
        b->cap = (uint32_t)cap;
    }
    b->refs = 1;
    b->len = 0;
    b->pin = 0;
    return b;
}

void block_unref(struct block *b)
{
    if (--b->refs)
        return;
    if (b->cap == BLOCK_STD_SIZE && blocks_pooled < POOL_MAX)
        block_pool[blocks_pooled++] = b;
    else
        free(b);
}

static struct outq *queue_new(void)
{
    struct outq *q;

    if (queues_pooled) {
        q = queue_pool[--queues_pooled];
    } else {
        q = xmalloc(sizeof *q + QUEUE_MIN * sizeof q->r[0]);
        q->cap = QUEUE_MIN;
    }
    q->bytes = 0;
    q->own = 0;
    q->pinned = 0;
    q->head = q->n = 0;
    return q;
}

static void queue_release(struct outq *q)
{
    if (q->cap == QUEUE_MIN && queues_pooled < POOL_MAX)
        queue_pool[queues_pooled++] = q;
    else
        free(q);
}

static struct outq_range *range_at(struct outq *q, uint32_t i)
{
    return &q->r[(q->head + i) % q->cap];
}

/* Room for one more range, growing the ring in order if needed. */
static struct outq_range *push_range(struct outq **qp)
{
    struct outq *q = *qp;

    if (!q) {
        q = *qp = queue_new();
    } else if (q->n == q->cap) {
        struct outq *nq = xmalloc(sizeof *nq + 2 * (size_t)q->cap * sizeof nq->r[0]);
        for (uint32_t i = 0; i < q->n; i++)
            nq->r[i] = *range_at(q, i);
        nq->bytes = q->bytes;
        nq->pinned = q->pinned;
        nq->own = q->own;
        nq->head = 0;
        nq->n = q->n;
        nq->cap = 2 * q->cap;
        queue_release(q);
        q = *qp = nq;
    }
    return range_at(q, q->n++);
}

static struct outq_range *tail(struct outq *q)
{
    return q && q->n ? range_at(q, q->n - 1) : NULL;
}

void outq_append(struct outq **qp, const void *p, size_t n)
{
    const uint8_t *src = p;
    struct outq_range *t = tail(*qp);

    /* The tail block is a private one, ours alone, and ends with our
     * bytes: fill it.  (A room's block stays the room's, even once the
     * queue holds its last reference, so that its charge stays right.) */
    if (t && t->b->refs == 1 && !t->b->pin && t->end == t->b->len) {
        size_t room = t->b->cap - t->b->len;
        size_t k = n < room ? n : room;
        memcpy(t->b->data + t->b->len, src, k);
        t->b->len += (uint32_t)k;
        t->end += (uint32_t)k;
        (*qp)->bytes += k;
        (*qp)->own += k;
        src += k;
        n -= k;
    }
    if (n == 0)
        return;
    struct block *b = block_new(n < BLOCK_STD_SIZE ? BLOCK_STD_SIZE : n);
    memcpy(b->data, src, n);
    b->len = (uint32_t)n;
    t = push_range(qp);
    *t = (struct outq_range){ b, 0, (uint32_t)n };
    (*qp)->bytes += n;
    (*qp)->own += n;
}

void outq_append_shared(struct outq **qp, struct block *b, uint32_t off,
                        uint32_t end)
{
    struct outq_range *t = tail(*qp);

    if (off >= end)
        return;
    if (t && t->b == b && t->end == off) {
        t->end = end;
    } else {
        block_ref(b);
        t = push_range(qp);
        *t = (struct outq_range){ b, off, end };
        (*qp)->pinned += b->pin;
    }
    (*qp)->bytes += end - off;
}

/* Drops the first `done` bytes. */
static void consume(struct outq *q, size_t done)
{
    q->bytes -= done;
    while (done) {
        struct outq_range *r = range_at(q, 0);
        size_t len = r->end - r->off;
        if (done < len) {
            r->off += (uint32_t)done;
            if (!r->b->pin)
                q->own -= done;
            return;
        }
        done -= len;
        if (r->b->pin)
            q->pinned -= r->b->pin;
        else
            q->own -= len;
        block_unref(r->b);
        q->head = (q->head + 1) % q->cap;
        q->n--;
    }
}

ssize_t outq_write(struct outq **qp, int fd)
{
    struct outq *q = *qp;
    struct iovec iov[IOV_BATCH];
    int cnt = 0;

    if (!q)
        return 0;
    for (uint32_t i = 0; i < q->n && cnt < IOV_BATCH; i++, cnt++) {
        struct outq_range *r = range_at(q, i);
        iov[cnt].iov_base = r->b->data + r->off;
        iov[cnt].iov_len = r->end - r->off;
    }
    /* sendmsg rather than writev: MSG_NOSIGNAL, so a vanished peer is an
     * EPIPE, not a SIGPIPE. */
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)cnt };
    ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (w < 0)
        return -errno;
    consume(q, (size_t)w);
    if (q->n == 0) {
        queue_release(q);
        *qp = NULL;
    }
    return w;
}

size_t outq_gather(const struct outq *q, uint8_t *scratch, size_t cap,
                   const uint8_t **p)
{
    size_t n = 0;

    *p = scratch;
    if (!q || q->n == 0)
        return 0;
    const struct outq_range *r = &q->r[q->head];
    if (r->end - r->off >= cap) {
        *p = r->b->data + r->off;
        return r->end - r->off;
    }
    for (uint32_t i = 0; i < q->n && n < cap; i++) {
        r = &q->r[(q->head + i) % q->cap];
        size_t k = r->end - r->off;
        if (k > cap - n)
            k = cap - n;
        memcpy(scratch + n, r->b->data + r->off, k);
        n += k;
    }
    return n;
}

void outq_consume(struct outq **qp, size_t n)
{
    struct outq *q = *qp;

    if (!q)
        return;
    consume(q, n);
    if (q->n == 0) {
        queue_release(q);
        *qp = NULL;
    }
}

void outq_free(struct outq **qp)
{
    struct outq *q = *qp;

    if (!q)
        return;
    for (uint32_t i = 0; i < q->n; i++)
        block_unref(range_at(q, i)->b);
    queue_release(q);
    *qp = NULL;
}

void outq_pool_drain(void)
{
    while (blocks_pooled)
        free(block_pool[--blocks_pooled]);
    while (queues_pooled)
        free(queue_pool[--queues_pooled]);
}
