/*
 * ipc.c - framing of the master<->worker channel (see ipc.h).
 *
 * Owns the two buffers of one end of a channel and the frame format; it
 * does not know what a frame means (master.c and channel.c do).
 *
 * Invariants:
 *   ipc_out: off <= len <= cap; data[off..len) is queued, whole frames
 *     only, so a flush that stops anywhere leaves the stream well framed.
 *     When everything is written, off = len = 0, so the common case (the
 *     whole batch goes out in one turn) never moves bytes.
 *   ipc_in: off <= len <= cap <= IPC_IN_MAX; data[off..len) is unparsed.
 *     Bytes move only in ipc_in_fill, which is why a body handed out by
 *     ipc_next stays valid until then.
 *
 * The hot path is a worker queueing many small TELL frames per loop
 * turn: ipc_send is a bounds check and two or three memcpys, with no
 * allocation once the buffer has reached its working size.
 */
#include "ipc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IPC_HDR_SIZE sizeof(struct ipc_hdr)

/* What one read asks for at least, and the first output allocation. */
#define IPC_READ_SIZE (64 * 1024)
#define IPC_OUT_MIN (16 * 1024)

/* The input buffer never needs more than one frame that is still
 * arriving plus room for one read. */
#define IPC_IN_MAX (IPC_HDR_SIZE + IPC_FRAME_MAX + IPC_READ_SIZE)

/* An output buffer larger than this is released once it has drained, so
 * that one burst towards a slow peer does not pin memory for good. */
#define IPC_OUT_KEEP (1024 * 1024)

_Static_assert(sizeof(struct ipc_hdr) == 8, "the header is 8 bytes");
_Static_assert(IPC_FRAME_MAX <= UINT32_MAX, "a body length fits the header");

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        abort();
    return p;
}

/* Indexed by type; 0 for the invalid types, which are rejected before
 * the table is read. */
static const uint32_t min_body[IPC_TYPE_MAX] = {
    [IPC_READY] = 0,
    [IPC_HEARTBEAT] = 0,
    [IPC_REGISTER] = 9,          /* pid and at least one byte of name */
    [IPC_UNREGISTER] = 9,
    [IPC_REPLY] = 4,
    [IPC_NAME_ADD] = 9,
    [IPC_NAME_DEL] = 9,
    [IPC_WORKER_DOWN] = 8,
    [IPC_SERVICE_START] = 1,
    [IPC_TELL] = IPC_TELL_HDR,
    [IPC_MONITOR] = 16,
    [IPC_DEMONITOR] = 16,
    [IPC_DOWN] = 16,             /* the reason may be empty */
    [IPC_ROOM_COUNT] = 9,        /* two numbers, a name of 1 byte or more */
    [IPC_ROOM_COUNTS] = 9,
    [IPC_PUBLISH] = IPC_PUBLISH_HDR + 1,
    [IPC_DRAIN] = 4,
    [IPC_DRAINED] = 0,
    [IPC_WORKERS] = 4,
};

size_t ipc_min_body(enum ipc_type type)
{
    if ((unsigned)type == 0 || (unsigned)type >= IPC_TYPE_MAX)
        return 0;
    return min_body[type];
}

bool ipc_is_routed(enum ipc_type type)
{
    return type == IPC_TELL || type == IPC_MONITOR ||
           type == IPC_DEMONITOR || type == IPC_DOWN;
}

/* ---- output ------------------------------------------------------- */

/* Makes room for n more bytes at data[len], or refuses when the queue
 * would pass the limit.  Returns where to write, or NULL. */
static uint8_t *out_room(struct ipc_out *out, size_t n)
{
    size_t queued = out->len - out->off;

    /* queued may exceed a limit lowered after the bytes were queued. */
    if (out->limit && (queued > out->limit || n > out->limit - queued))
        return NULL;
    if (out->cap - out->len >= n)
        return out->data + out->len;

    /* Compact only when the written prefix is at least as large as what
     * must move, so moving costs no more than the room it gains. */
    if (out->off && out->off >= queued) {
        memmove(out->data, out->data + out->off, queued);
        out->off = 0;
        out->len = queued;
        if (out->cap - out->len >= n)
            return out->data + out->len;
    }

    /* Grow into a fresh buffer, carrying only the unwritten bytes. */
    size_t cap = out->cap ? out->cap * 2 : IPC_OUT_MIN;
    while (cap < queued + n)
        cap *= 2;
    uint8_t *data = xmalloc(cap);
    if (queued)
        memcpy(data, out->data + out->off, queued);
    free(out->data);
    out->data = data;
    out->cap = cap;
    out->off = 0;
    out->len = queued;
    return data + queued;
}

int ipc_send(struct ipc_out *out, enum ipc_type type, const void *a,
             size_t alen, const void *b, size_t blen)
{
    /* The peer would reject the frame and kill this end; refuse here,
     * where the caller can still tell why. */
    if (alen > IPC_FRAME_MAX || blen > IPC_FRAME_MAX - alen)
        return -SNOW_ETOOBIG;

    size_t body = alen + blen;
    uint8_t *p = out_room(out, IPC_HDR_SIZE + body);
    if (!p)
        return -SNOW_EFULL;
    struct ipc_hdr h = { .len = (uint32_t)body, .type = (uint32_t)type };
    memcpy(p, &h, IPC_HDR_SIZE);
    if (alen)
        memcpy(p + IPC_HDR_SIZE, a, alen);
    if (blen)
        memcpy(p + IPC_HDR_SIZE + alen, b, blen);
    out->len += IPC_HDR_SIZE + body;
    return 0;
}

int ipc_forward(struct ipc_out *out, const void *frame, size_t len)
{
    if (len < IPC_HDR_SIZE)
        return -SNOW_EINVAL;
    if (len > IPC_HDR_SIZE + IPC_FRAME_MAX)
        return -SNOW_ETOOBIG;

    uint8_t *p = out_room(out, len);
    if (!p)
        return -SNOW_EFULL;
    memcpy(p, frame, len);
    out->len += len;
    return 0;
}

int ipc_out_flush(struct ipc_out *out, int fd)
{
    while (out->off < out->len) {
        ssize_t n = write(fd, out->data + out->off, out->len - out->off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 1;
            return -errno;
        }
        /* A socket never accepts 0 of a non-empty write; should one,
         * waiting for writability beats spinning here. */
        if (n == 0)
            return 1;
        out->off += (size_t)n;
    }
    out->off = out->len = 0;
    if (out->cap > IPC_OUT_KEEP) {
        free(out->data);
        out->data = NULL;
        out->cap = 0;
    }
    return 0;
}

void ipc_out_free(struct ipc_out *out)
{
    free(out->data);
    out->data = NULL;
    out->len = out->off = out->cap = 0;
}

/* ---- input -------------------------------------------------------- */

ssize_t ipc_in_fill(struct ipc_in *in, int fd)
{
    if (in->off == in->len)
        in->off = in->len = 0;
    if (in->cap - in->len < IPC_READ_SIZE) {
        /* What is left is part of one frame (the caller drains whole
         * frames before reading again), so this moves little. */
        if (in->off) {
            memmove(in->data, in->data + in->off, in->len - in->off);
            in->len -= in->off;
            in->off = 0;
        }
        if (in->cap - in->len < IPC_READ_SIZE && in->cap < IPC_IN_MAX) {
            size_t cap = in->cap ? in->cap * 2 : IPC_READ_SIZE;
            while (cap < in->len + IPC_READ_SIZE)
                cap *= 2;
            if (cap > IPC_IN_MAX)
                cap = IPC_IN_MAX;
            in->data = xrealloc(in->data, cap);
            in->cap = cap;
        }
    }
    /* Only a caller that stopped cutting frames can fill the largest
     * buffer: complete frames are being held, not read. */
    if (in->cap == in->len)
        return -ENOBUFS;

    ssize_t n;
    do
        n = read(fd, in->data + in->len, in->cap - in->len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    in->len += (size_t)n;
    return n;
}

/* Trust boundary: data may come from a worker running plugin code.
 * Every length is checked before it is used, and nothing is read past
 * data[len).  *hdr is filled whenever a whole header is present, so that
 * a caller can say which frame broke the protocol. */
enum ipc_rc ipc_parse(const uint8_t *data, size_t len, size_t *used,
                      struct ipc_hdr *hdr, const uint8_t **body)
{
    struct ipc_hdr h;

    *used = 0;
    if (len < IPC_HDR_SIZE)
        return IPC_NEED_MORE;
    memcpy(&h, data, IPC_HDR_SIZE);
    *hdr = h;
    if (h.type == 0 || h.type >= IPC_TYPE_MAX || h.len > IPC_FRAME_MAX ||
        h.len < min_body[h.type])
        return IPC_ERR_PROTO;
    if (len - IPC_HDR_SIZE < h.len)
        return IPC_NEED_MORE;
    *body = data + IPC_HDR_SIZE;
    *used = IPC_HDR_SIZE + h.len;
    return IPC_FRAME;
}

enum ipc_rc ipc_next(struct ipc_in *in, struct ipc_hdr *hdr,
                     const uint8_t **body)
{
    size_t used;

    /* Also keeps a NULL data pointer out of pointer arithmetic. */
    if (in->len - in->off < IPC_HDR_SIZE)
        return IPC_NEED_MORE;
    enum ipc_rc rc = ipc_parse(in->data + in->off, in->len - in->off, &used,
                               hdr, body);
    in->off += used;
    return rc;
}

void ipc_in_free(struct ipc_in *in)
{
    free(in->data);
    in->data = NULL;
    in->len = in->off = in->cap = 0;
}

/* ---- body fields -------------------------------------------------- */

uint64_t ipc_get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

uint32_t ipc_get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

void ipc_put_u64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, sizeof v);
}

void ipc_put_u32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, sizeof v);
}
