/*
 * fuzz_ipc.c - libFuzzer target for the channel framing (src/ipc.c).
 *
 * Input layout: byte 0 picks a split point, the rest is the byte stream a
 * worker sent the master (hostile: plugin code runs in workers).
 *
 * The stream is cut into frames the way the daemon does it (cut every
 * complete frame, keep the rest, stop at the first protocol error) four
 * ways: whole, in two pieces, one byte at a time, and through ipc_next
 * on a struct ipc_in.  All must agree on the frames, the verdict and the
 * leftover.  Every answer of ipc_parse is checked against the format,
 * recomputed here from the header, and every frame is encoded again with
 * ipc_send, which must give back the bytes it came from.  Any mismatch
 * aborts.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Iinclude \
 *       tests/fuzz/fuzz_ipc.c src/ipc.c -o /tmp/fuzz_ipc
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)
#define HDR 8

/* The format, written out again rather than taken from ipc.c. */
static const uint32_t MIN_BODY[IPC_TYPE_MAX] = {
    [IPC_READY] = 0, [IPC_HEARTBEAT] = 0, [IPC_REGISTER] = 9,
    [IPC_UNREGISTER] = 9, [IPC_REPLY] = 4, [IPC_NAME_ADD] = 9,
    [IPC_NAME_DEL] = 9, [IPC_WORKER_DOWN] = 8, [IPC_SERVICE_START] = 1,
    [IPC_TELL] = 24, [IPC_MONITOR] = 16, [IPC_DEMONITOR] = 16,
    [IPC_DOWN] = 16, [IPC_ROOM_COUNT] = 9, [IPC_ROOM_COUNTS] = 9,
    [IPC_PUBLISH] = 17, [IPC_DRAIN] = 4, [IPC_DRAINED] = 0, [IPC_WORKERS] = 4,
};

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* What ipc_parse must answer for buf[0..len). */
static enum ipc_rc expected_rc(const uint8_t *buf, size_t len)
{
    if (len < HDR)
        return IPC_NEED_MORE;
    uint32_t blen = rd32(buf), type = rd32(buf + 4);
    if (type == 0 || type >= IPC_TYPE_MAX || blen > IPC_FRAME_MAX ||
        blen < MIN_BODY[type])
        return IPC_ERR_PROTO;
    return len - HDR >= blen ? IPC_FRAME : IPC_NEED_MORE;
}

struct run {
    enum ipc_rc rc;        /* IPC_NEED_MORE, or IPC_ERR_PROTO once failed */
    size_t frames;
    size_t consumed;       /* bytes of the stream cut into frames */
    uint64_t digest;       /* of every frame's type and length, in order */
};

/* Cuts every frame from buf[0..len), which ends where its allocation
 * does when the caller can arrange it; returns the bytes used. */
static size_t cut(struct run *r, const uint8_t *buf, size_t len,
                  struct ipc_out *echo)
{
    size_t off = 0;

    while (r->rc == IPC_NEED_MORE) {
        size_t used = (size_t)-1;
        struct ipc_hdr h;
        const uint8_t *body = NULL;
        enum ipc_rc rc = ipc_parse(buf + off, len - off, &used, &h, &body);

        CHECK(rc == expected_rc(buf + off, len - off));
        if (rc != IPC_FRAME) {
            CHECK(used == 0);
            if (rc == IPC_ERR_PROTO)
                r->rc = rc;
            break;
        }
        CHECK(used <= len - off);
        CHECK(used == HDR + (size_t)h.len);
        CHECK(h.len == rd32(buf + off) && h.type == rd32(buf + off + 4));
        CHECK(body == buf + off + HDR);
        CHECK(h.len <= IPC_FRAME_MAX);
        CHECK(h.len >= ipc_min_body((enum ipc_type)h.type));
        if (echo) {
            /* Encoding the frame again must give its bytes back. */
            size_t at = echo->len, part = h.len / 3;
            CHECK(ipc_send(echo, (enum ipc_type)h.type, body, part,
                           body + part, h.len - part) == 0);
            CHECK(echo->len == at + used);
            CHECK(memcmp(echo->data + at, buf + off, used) == 0);
        }
        r->frames++;
        r->digest = (r->digest ^ ((uint64_t)h.type << 32 | h.len)) *
                    0x100000001b3ULL;
        off += used;
    }
    r->consumed += off;
    return off;
}

static uint8_t *exact_copy(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    CHECK(c);
    if (n)
        memcpy(c, p, n);
    return c;
}

/* The stream handed over in two pieces, the caller keeping what is not
 * cut yet; each parse sees an exactly sized heap copy. */
static void run_two(struct run *r, const uint8_t *p, size_t n, size_t split)
{
    uint8_t *buf = exact_copy(p, split);
    size_t used = cut(r, buf, split, NULL);
    free(buf);
    if (r->rc != IPC_NEED_MORE)
        return;
    buf = exact_copy(p + used, n - used);
    cut(r, buf, n - used, NULL);
    free(buf);
}

/* One more byte at a time.  Copying what is held for every byte would be
 * quadratic, so this one parses windows of the input in place. */
static void run_bytewise(struct run *r, const uint8_t *p, size_t n)
{
    size_t start = 0;
    for (size_t end = 1; end <= n && r->rc == IPC_NEED_MORE; end++) {
        size_t before = r->frames;
        start += cut(r, p + start, end - start, NULL);
        /* a frame is cut exactly when its last byte arrives */
        CHECK(r->frames - before <= 1);
        CHECK(r->frames == before || start == end);
    }
}

/* ipc_next over an ipc_in holding the whole stream. */
static void run_next(struct run *r, const uint8_t *p, size_t n)
{
    struct ipc_in in = { 0 };
    struct ipc_hdr h;
    const uint8_t *body;
    enum ipc_rc rc;

    in.data = exact_copy(p, n);
    in.len = in.cap = n;
    while ((rc = ipc_next(&in, &h, &body)) == IPC_FRAME) {
        CHECK(body >= in.data + HDR && body + h.len <= in.data + in.len);
        CHECK(body + h.len == in.data + in.off);
        r->frames++;
        r->digest = (r->digest ^ ((uint64_t)h.type << 32 | h.len)) *
                    0x100000001b3ULL;
    }
    CHECK(in.off <= in.len);
    r->consumed = in.off;
    if (rc == IPC_ERR_PROTO) {
        r->rc = rc;
        /* the bad frame stays where it is */
        CHECK(ipc_next(&in, &h, &body) == IPC_ERR_PROTO);
    }
    ipc_in_free(&in);
}

static void same(const struct run *a, const struct run *b)
{
    CHECK(a->rc == b->rc);
    CHECK(a->frames == b->frames);
    CHECK(a->consumed == b->consumed);
    CHECK(a->digest == b->digest);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    size_t split = ((size_t)data[0] * (n + 1)) >> 8;

    struct run whole = { .rc = IPC_NEED_MORE };
    struct ipc_out echo = { 0 };
    uint8_t *buf = exact_copy(p, n);
    cut(&whole, buf, n, &echo);
    CHECK(whole.consumed <= n);
    CHECK(echo.len == whole.consumed);
    CHECK(whole.consumed == 0 || memcmp(echo.data, p, whole.consumed) == 0);
    /* What is left is less than a frame, or the frame that broke the
     * protocol. */
    CHECK(expected_rc(buf + whole.consumed, n - whole.consumed) ==
          (whole.rc == IPC_ERR_PROTO ? IPC_ERR_PROTO : IPC_NEED_MORE));
    free(buf);
    ipc_out_free(&echo);

    struct run two = { .rc = IPC_NEED_MORE };
    run_two(&two, p, n, split);
    same(&whole, &two);

    struct run bytewise = { .rc = IPC_NEED_MORE };
    run_bytewise(&bytewise, p, n);
    same(&whole, &bytewise);

    struct run next = { .rc = IPC_NEED_MORE };
    run_next(&next, p, n);
    same(&whole, &next);
    return 0;
}
