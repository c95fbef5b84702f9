/*
 * buf.c - byte buffers and their pool.
 */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

#define POOL_MAX 256

static struct buf *pool[POOL_MAX];
static size_t pooled;

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        abort();
    return p;
}

struct buf *buf_new(size_t cap)
{
    struct buf *b;

    if (cap <= BUF_STD_SIZE && pooled) {
        b = pool[--pooled];
    } else {
        if (cap < BUF_STD_SIZE)
            cap = BUF_STD_SIZE;
        b = xrealloc(NULL, sizeof *b + cap);
        b->cap = cap;
    }
    b->off = b->len = 0;
    return b;
}

void buf_free(struct buf *b)
{
    if (!b)
        return;
    if (b->cap == BUF_STD_SIZE && pooled < POOL_MAX)
        pool[pooled++] = b;
    else
        free(b);
}

uint8_t *buf_reserve(struct buf **bp, size_t n)
{
    struct buf *b = *bp;

    if (!b) {
        b = *bp = buf_new(n);
    } else if (b->cap - b->len < n) {
        /* Reclaim consumed space first; grow only if that is not enough. */
        size_t held = b->len - b->off;
        if (b->off && b->cap - held >= n) {
            memmove(b->data, b->data + b->off, held);
        } else {
            size_t cap = b->cap * 2 > held + n ? b->cap * 2 : held + n;
            struct buf *nb = xrealloc(NULL, sizeof *nb + cap);
            memcpy(nb->data, b->data + b->off, held);
            nb->cap = cap;
            buf_free(b);
            b = *bp = nb;
        }
        b->off = 0;
        b->len = held;
    }
    return b->data + b->len;
}

void buf_append(struct buf **bp, const void *p, size_t n)
{
    uint8_t *dst = buf_reserve(bp, n);
    memcpy(dst, p, n);
    (*bp)->len += n;
}

void buf_pool_drain(void)
{
    while (pooled)
        free(pool[--pooled]);
}
