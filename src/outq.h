/*
 * outq.h - a connection's unsent output: byte ranges of refcounted
 * blocks, written with one writev per flush.
 *
 * Bytes a connection sends on its own (a handler's replies, control
 * frames) are copied into blocks it alone holds.  A room message is one
 * frame built once per worker in a shared block: every member's queue
 * holds a reference to the same bytes, so a fan-out costs no copy and no
 * re-encode per member.  Consecutive messages of one room sit next to
 * each other in its block, so a burst extends a member's last range
 * instead of adding one.
 *
 * Invariants:
 * - a block's bytes [0, len) never change once written: only len grows,
 *   and only through its one writer (the owning queue, or the room);
 * - a queue holds one reference per range; a block is freed (or pooled)
 *   when its last reference goes;
 * - an empty queue is freed: an idle connection holds no output memory.
 */
#ifndef SNOWD_OUTQ_H
#define SNOWD_OUTQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BLOCK_STD_SIZE (16 * 1024)

struct block {
    uint32_t refs;
    uint32_t len;       /* bytes written */
    uint32_t cap;
    uint32_t pin;       /* what a queue holding a range of this shared
                           block is charged for keeping it alive: its
                           capacity for a room's block, 0 for private */
    uint8_t data[];
};

/* A block with room for `cap` bytes (at least), one reference.  Aborts
 * when out of memory, like the other buffers of the hot path. */
struct block *block_new(size_t cap);
static inline void block_ref(struct block *b)
{
    b->refs++;
}
void block_unref(struct block *b);

struct outq_range {
    struct block *b;
    uint32_t off, end;
};

/* What one range costs against max_backpressure besides its bytes and
 * the block it pins (outq_cost). */
#define OUTQ_RANGE_COST 64

struct outq {
    size_t bytes;           /* unsent */
    size_t own;             /* unsent bytes in blocks with no pin */
    size_t pinned;          /* sum of the pin of each range's block */
    uint32_t head, n, cap;  /* ring of ranges */
    struct outq_range r[];
};

/* Copies n bytes to the end of the queue (*q may be NULL). */
void outq_append(struct outq **q, const void *p, size_t n);

/* Queues b->data[off, end) by reference. */
void outq_append_shared(struct outq **q, struct block *b, uint32_t off,
                        uint32_t end);

static inline size_t outq_size(const struct outq *q)
{
    return q ? q->bytes : 0;
}

/* The memory a queue holds, as charged against max_backpressure: its
 * own bytes, and for each range of a shared block the whole block it
 * keeps alive, however little of it is still to be sent. */
static inline size_t outq_cost(const struct outq *q)
{
    return q ? q->own + q->pinned + (size_t)q->n * OUTQ_RANGE_COST : 0;
}

/* Writes what it can with one writev; frees the queue once empty.
 * Returns bytes written, or -errno (-EAGAIN when the socket is full). */
ssize_t outq_write(struct outq **q, int fd);

/* The next bytes to send as one buffer, for a writer that takes no
 * iovec (a TLS record): the head range whole when it holds at least cap
 * bytes, else up to cap bytes of the first ranges copied into scratch.
 * Returns the length (0 when the queue is empty) and sets *p.  The
 * result depends only on the bytes queued, and a queue only grows at
 * its tail, so a writer that must retry with the same bytes gets them
 * again, perhaps followed by more. */
size_t outq_gather(const struct outq *q, uint8_t *scratch, size_t cap,
                   const uint8_t **p);

/* Drops the first n bytes (n <= outq_size), as a write of them would;
 * frees the queue once empty. */
void outq_consume(struct outq **q, size_t n);

/* Drops everything queued. */
void outq_free(struct outq **q);

/* Frees pooled blocks and queues (for leak checks at exit). */
void outq_pool_drain(void);

#endif
