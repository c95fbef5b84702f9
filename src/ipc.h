/*
 * ipc.h - the framed protocol between the master and its workers, over
 * one SOCK_STREAM socketpair per worker.
 *
 * Sans-I/O apart from ipc_out_flush/ipc_in_fill: frames are appended to
 * an output buffer and written in batches (one write per loop turn), and
 * read in large chunks then cut into frames in place.
 *
 * A frame is an 8-byte header (body length, type; host byte order, since
 * both ends are the same binary) and a body.  Bodies that carry an actor
 * message start with the destination pid, so the master routes them by
 * reading 8 bytes, without decoding the rest.
 *
 * Trust boundary: the master treats a worker's bytes as hostile (a
 * worker runs plugin code): a frame over IPC_FRAME_MAX or a body too
 * short for its type is a protocol error, and the master kills that
 * worker.
 */
#ifndef SNOWD_IPC_H
#define SNOWD_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "snowd/snowd.h"

enum ipc_type {
    /* worker -> master */
    IPC_READY = 1,        /* body: NUL-separated service names */
    IPC_HEARTBEAT,        /* body: empty */
    IPC_REGISTER,         /* body: pid, name (the master answers) */
    IPC_UNREGISTER,       /* body: pid, name */
    /* master -> worker */
    IPC_REPLY,            /* body: int32 result (0 or -SNOW_E*), the
                             answer to REGISTER or to ROOM_COUNT with
                             want_reply */
    IPC_NAME_ADD,         /* body: pid, name */
    IPC_NAME_DEL,         /* body: pid, name */
    IPC_WORKER_DOWN,      /* body: uint32 slot, uint32 generation */
    IPC_SERVICE_START,    /* body: service name */
    /* either way, routed by the master on the first pid of the body */
    IPC_TELL,             /* body: to, from, uint32 type, uint32 tag, data */
    IPC_MONITOR,          /* body: target, watcher */
    IPC_DEMONITOR,        /* body: target, watcher */
    IPC_DOWN,             /* body: watcher, target, reason */
    /* rooms */
    IPC_ROOM_COUNT,       /* worker -> master: uint32 count, uint32
                             want_reply, room name */
    IPC_ROOM_COUNTS,      /* master -> worker: uint32 slot, uint32 count,
                             room name */
    IPC_PUBLISH,          /* either way: from pid, uint32 kind, uint32
                             name length, name, payload; the master
                             forwards it to the workers with members */
    /* reload */
    IPC_DRAIN,            /* master -> worker: uint32 drain_timeout in ms;
                             stop accepting and stop services, let
                             connections finish, then exit */
    IPC_DRAINED,          /* worker -> master: services stopped (their
                             names were unregistered before this) */
    IPC_WORKERS,          /* master -> worker: uint32 live workers */
    IPC_TYPE_MAX
};

struct ipc_hdr {
    uint32_t len;         /* bytes of body */
    uint32_t type;
};

/* Largest body: an actor message with its 24-byte envelope, with room. */
#define IPC_FRAME_MAX (SNOW_MSG_MAX + 256)
#define IPC_TELL_HDR 24
#define IPC_PUBLISH_HDR 16

/* Smallest valid body of each type; 0 for types with none. */
size_t ipc_min_body(enum ipc_type type);

/* True for the types the master forwards to the worker owning the pid
 * at the start of the body. */
bool ipc_is_routed(enum ipc_type type);

/* ---- output ------------------------------------------------------- */

struct ipc_out {
    uint8_t *data;
    size_t len;           /* bytes queued */
    size_t off;           /* bytes of data already written */
    size_t cap;
    size_t limit;         /* ipc_send fails past this many queued bytes;
                             0 = no limit */
};

/* Appends one frame made of a header and up to two body parts (either
 * may be NULL with length 0).  Returns 0, or -SNOW_EFULL when the queued
 * bytes would pass out->limit, or -SNOW_ETOOBIG when the body would pass
 * IPC_FRAME_MAX (nothing is appended). */
int ipc_send(struct ipc_out *out, enum ipc_type type, const void *a,
             size_t alen, const void *b, size_t blen);

/* Appends a frame already encoded (header included), as the master does
 * when forwarding.  Same result as ipc_send, and -SNOW_EINVAL when len is
 * shorter than a header. */
int ipc_forward(struct ipc_out *out, const void *frame, size_t len);

/* Writes what is queued to fd.  Returns 0 when everything went out, 1
 * when the socket is full and bytes remain, or -errno. */
int ipc_out_flush(struct ipc_out *out, int fd);

static inline bool ipc_out_empty(const struct ipc_out *out)
{
    return out->off == out->len;
}

void ipc_out_free(struct ipc_out *out);

/* ---- input -------------------------------------------------------- */

struct ipc_in {
    uint8_t *data;
    size_t len;           /* bytes held */
    size_t off;           /* start of the first unparsed frame */
    size_t cap;
};

enum ipc_rc {
    IPC_FRAME,            /* *hdr and *body describe one frame */
    IPC_NEED_MORE,        /* no complete frame is held */
    IPC_ERR_PROTO         /* a frame that breaks the protocol */
};

/* Reads what fd has (one read).  Returns bytes read, 0 at EOF, or
 * -errno (-EAGAIN when there is nothing).  The caller cuts every complete
 * frame with ipc_next before filling again; one that does not can meet
 * -ENOBUFS. */
ssize_t ipc_in_fill(struct ipc_in *in, int fd);

/* Cuts the next frame from what is held.  The body points into the
 * buffer and stays valid until the next ipc_in_fill. */
enum ipc_rc ipc_next(struct ipc_in *in, struct ipc_hdr *hdr,
                     const uint8_t **body);

/* Parses a buffer already in memory (the fuzz target and the unit tests
 * use this): like ipc_next on data[0..len). */
enum ipc_rc ipc_parse(const uint8_t *data, size_t len, size_t *used,
                      struct ipc_hdr *hdr, const uint8_t **body);

void ipc_in_free(struct ipc_in *in);

/* Reads and writes little pieces of a body, unaligned-safe. */
uint64_t ipc_get_u64(const uint8_t *p);
uint32_t ipc_get_u32(const uint8_t *p);
void ipc_put_u64(uint8_t *p, uint64_t v);
void ipc_put_u32(uint8_t *p, uint32_t v);

#endif
