/*
 * buf.h - byte buffers for unsent output and unparsed input.
 *
 * A connection holds a buffer only while it has bytes waiting; buffers of
 * the standard size are recycled through a small per-process pool so that
 * the hot path does not call malloc.  Bytes live in data[off..len).
 */
#ifndef SNOWD_BUF_H
#define SNOWD_BUF_H

#include <stddef.h>
#include <stdint.h>

#define BUF_STD_SIZE (16 * 1024)

struct buf {
    size_t off;     /* first byte not yet consumed */
    size_t len;     /* end of the bytes held */
    size_t cap;
    uint8_t data[];
};

/* A buffer with room for at least `cap` bytes.  Aborts when out of memory. */
struct buf *buf_new(size_t cap);

/* Returns a buffer to the pool (or frees it); NULL is fine. */
void buf_free(struct buf *b);

/* Appends n bytes, creating or growing *b as needed. */
void buf_append(struct buf **b, const void *p, size_t n);

/* Makes room for n more bytes at the end and returns where they go. */
uint8_t *buf_reserve(struct buf **b, size_t n);

/* Bytes held. */
static inline size_t buf_size(const struct buf *b)
{
    return b ? b->len - b->off : 0;
}

/* Frees every pooled buffer (for leak checks at exit). */
void buf_pool_drain(void);

#endif
