/*
 * test_ipc.c - unit tests for the master<->worker framing (src/ipc.c).
 *
 * Build: gcc -Wall -Wextra -Isrc -Iinclude tests/unit/test_ipc.c src/ipc.c \
 *            -lcmocka -o /tmp/test_ipc && /tmp/test_ipc
 *
 * Expected streams are built here byte by byte, independently of
 * ipc_send, and whatever the code under test cuts out is encoded again
 * and compared with them, so a lost, reordered, merged or corrupted
 * frame shows as a difference.  Inputs to ipc_parse end just before a
 * PROT_NONE page (guard.h).  The I/O tests use real non-blocking
 * socketpairs, and a pipe shrunk to one page where a test needs writes
 * of a known size.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1      /* F_SETPIPE_SZ */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "guard.h"
#include "ipc.h"

#define HDR 8
/* The most ipc_in may ever hold: one frame still arriving and one read. */
#define IN_MAX (HDR + IPC_FRAME_MAX + 64 * 1024)

/* ---- a growable byte string -------------------------------------------- */

struct sb {
    uint8_t *p;
    size_t len, cap;
};

static void sb_put(struct sb *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void sb_free(struct sb *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void assert_same_bytes(const struct sb *got, const struct sb *want)
{
    assert_int_equal(got->len, want->len);
    if (want->len)
        assert_memory_equal(got->p, want->p, want->len);
}

/* ---- frames built without ipc.c ------------------------------------------ */

static void put_frame(struct sb *b, uint32_t type, const void *body,
                      uint32_t len)
{
    sb_put(b, &len, 4);
    sb_put(b, &type, 4);
    sb_put(b, body, len);
}

static uint64_t rng_state;

static uint32_t rnd(void)
{
    /* xorshift64*: deterministic, so a failure repeats. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dULL) >> 32);
}

static const uint32_t MIN_BODY[IPC_TYPE_MAX] = {
    [IPC_READY] = 0, [IPC_HEARTBEAT] = 0, [IPC_REGISTER] = 9,
    [IPC_UNREGISTER] = 9, [IPC_REPLY] = 4, [IPC_NAME_ADD] = 9,
    [IPC_NAME_DEL] = 9, [IPC_WORKER_DOWN] = 8, [IPC_SERVICE_START] = 1,
    [IPC_TELL] = 24, [IPC_MONITOR] = 16, [IPC_DEMONITOR] = 16,
    [IPC_DOWN] = 16, [IPC_ROOM_COUNT] = 9, [IPC_ROOM_COUNTS] = 9,
    [IPC_PUBLISH] = 17, [IPC_DRAIN] = 4, [IPC_DRAINED] = 0, [IPC_WORKERS] = 4,
};

/* A valid random frame: its type, and a body of at least the minimum
 * length and at most min + extra bytes, filled with a pattern. */
struct gen {
    uint32_t type, len;
    uint8_t body[IPC_FRAME_MAX];
};

static void gen_frame(struct gen *g, uint32_t extra)
{
    g->type = 1 + rnd() % (IPC_TYPE_MAX - 1);
    g->len = MIN_BODY[g->type] + (extra ? rnd() % (extra + 1) : 0);
    if (g->len > IPC_FRAME_MAX)
        g->len = IPC_FRAME_MAX;
    uint8_t x = (uint8_t)rnd();
    for (uint32_t i = 0; i < g->len; i++)
        g->body[i] = (uint8_t)(x + i * 7);
}

/* A stream of n valid frames; ends[i] gets where frame i ends. */
static void gen_stream(struct sb *b, size_t n, uint32_t extra, size_t *ends)
{
    struct gen *g = malloc(sizeof *g);
    assert_non_null(g);
    for (size_t i = 0; i < n; i++) {
        gen_frame(g, extra);
        put_frame(b, g->type, g->body, g->len);
        if (ends)
            ends[i] = b->len;
    }
    free(g);
}

/* ---- a caller of ipc_parse, fed in pieces --------------------------------- */

struct dec {
    struct sb pending;   /* bytes not yet cut into frames */
    struct sb out;       /* the frames cut so far, encoded again */
    size_t frames;
    enum ipc_rc rc;      /* IPC_NEED_MORE, or the error that stopped it */
    struct guard g;
};

static void dec_init(struct dec *d, size_t stream_len)
{
    memset(d, 0, sizeof *d);
    d->rc = IPC_NEED_MORE;
    guard_init(&d->g, stream_len + 1);
}

static void dec_free(struct dec *d)
{
    sb_free(&d->pending);
    sb_free(&d->out);
    guard_free(&d->g);
}

static void dec_push(struct dec *d, const uint8_t *p, size_t n)
{
    if (d->rc != IPC_NEED_MORE)
        return;
    sb_put(&d->pending, p, n);
    for (;;) {
        size_t len = d->pending.len, used = 777;
        struct ipc_hdr h;
        const uint8_t *body = NULL;
        const uint8_t *buf = guard_place(&d->g, d->pending.p, len);
        enum ipc_rc rc = ipc_parse(buf, len, &used, &h, &body);
        if (rc != IPC_FRAME) {
            assert_int_equal(used, 0);
            d->rc = rc;
            return;
        }
        assert_int_equal(used, HDR + h.len);
        assert_true(used <= len);
        assert_ptr_equal(body, buf + HDR);
        put_frame(&d->out, h.type, body, h.len);
        d->frames++;
        memmove(d->pending.p, d->pending.p + used, len - used);
        d->pending.len = len - used;
    }
}

/* ---- helpers for the descriptors ------------------------------------------ */

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static void make_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    set_nonblock(sv[0]);
    set_nonblock(sv[1]);
}

/* Cuts every frame the socket has into got, checking the buffer's
 * bounds as it goes.  Returns how many frames came. */
static size_t read_frames(struct ipc_in *in, int fd, struct sb *got)
{
    size_t frames = 0;

    for (;;) {
        ssize_t n = ipc_in_fill(in, fd);
        if (n == -EAGAIN)
            return frames;
        assert_true(n > 0);
        assert_true(in->off <= in->len && in->len <= in->cap);
        assert_true(in->cap <= IN_MAX);

        struct ipc_hdr h;
        const uint8_t *body;
        enum ipc_rc rc;
        while ((rc = ipc_next(in, &h, &body)) == IPC_FRAME) {
            put_frame(got, h.type, body, h.len);
            frames++;
        }
        assert_int_equal(rc, IPC_NEED_MORE);
    }
}

/* Reads whatever fd has, raw. */
static void read_raw(int fd, struct sb *got)
{
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EAGAIN)
            return;
        assert_true(n > 0);
        sb_put(got, buf, (size_t)n);
    }
}

/* ---- the tables ---------------------------------------------------------- */

static void test_ipc_min_body_per_type(void **state)
{
    (void)state;
    for (uint32_t t = 1; t < IPC_TYPE_MAX; t++)
        assert_int_equal(ipc_min_body((enum ipc_type)t), MIN_BODY[t]);
    assert_int_equal(ipc_min_body(IPC_TELL), IPC_TELL_HDR);
    assert_int_equal(ipc_min_body((enum ipc_type)0), 0);
    assert_int_equal(ipc_min_body(IPC_TYPE_MAX), 0);
}

static void test_ipc_routed_types_are_the_actor_messages(void **state)
{
    (void)state;
    for (uint32_t t = 1; t < IPC_TYPE_MAX; t++) {
        bool want = t == IPC_TELL || t == IPC_MONITOR ||
                    t == IPC_DEMONITOR || t == IPC_DOWN;
        assert_int_equal(ipc_is_routed((enum ipc_type)t), want);
    }
}

static void test_ipc_get_put_unaligned_host_order(void **state)
{
    (void)state;
    uint8_t b[32];
    for (size_t off = 0; off < 8; off++) {
        memset(b, 0xee, sizeof b);
        ipc_put_u64(b + off, 0x0102030405060708ULL);
        ipc_put_u32(b + off + 9, 0xa1b2c3d4u);
        assert_int_equal(ipc_get_u64(b + off), 0x0102030405060708ULL);
        assert_int_equal(ipc_get_u32(b + off + 9), 0xa1b2c3d4u);
        uint64_t v;
        memcpy(&v, b + off, 8);
        assert_int_equal(v, 0x0102030405060708ULL);
        assert_int_equal(b[off + 8], 0xee);   /* nothing written past */
    }
}

/* ---- ipc_parse ------------------------------------------------------------ */

static enum ipc_rc parse_guarded(const void *p, size_t len, size_t *used,
                                 struct ipc_hdr *h, const uint8_t **body)
{
    struct guard g;
    guard_init(&g, len + 1);
    const uint8_t *buf = guard_place(&g, p, len);
    enum ipc_rc rc = ipc_parse(buf, len, used, h, body);
    if (rc == IPC_FRAME) {
        assert_ptr_equal(*body, buf + HDR);
        assert_true(*used <= len);
    }
    guard_free(&g);
    return rc;
}

static void test_ipc_parse_needs_a_whole_header(void **state)
{
    (void)state;
    struct sb b = { 0 };
    put_frame(&b, IPC_HEARTBEAT, NULL, 0);
    for (size_t n = 0; n < HDR; n++) {
        size_t used = 99;
        struct ipc_hdr h;
        const uint8_t *body;
        assert_int_equal(parse_guarded(b.p, n, &used, &h, &body),
                         IPC_NEED_MORE);
        assert_int_equal(used, 0);
    }
    size_t used;
    struct ipc_hdr h;
    const uint8_t *body;
    assert_int_equal(parse_guarded(b.p, HDR, &used, &h, &body), IPC_FRAME);
    assert_int_equal(used, HDR);
    assert_int_equal(h.len, 0);
    assert_int_equal(h.type, IPC_HEARTBEAT);
    sb_free(&b);
}

static void test_ipc_parse_every_type_at_its_minimum(void **state)
{
    (void)state;
    uint8_t body[64];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (uint8_t)(0x40 + i);
    for (uint32_t t = 1; t < IPC_TYPE_MAX; t++) {
        struct sb b = { 0 };
        put_frame(&b, t, body, MIN_BODY[t]);
        size_t used;
        struct ipc_hdr h;
        const uint8_t *got;
        assert_int_equal(parse_guarded(b.p, b.len, &used, &h, &got),
                         IPC_FRAME);
        assert_int_equal(h.type, t);
        assert_int_equal(h.len, MIN_BODY[t]);
        assert_int_equal(used, b.len);
        /* one byte short of the body: wait, do not guess */
        if (MIN_BODY[t])
            assert_int_equal(parse_guarded(b.p, b.len - 1, &used, &h, &got),
                             IPC_NEED_MORE);
        sb_free(&b);
    }
}

static void test_ipc_parse_cuts_one_frame_of_several(void **state)
{
    (void)state;
    struct sb b = { 0 };
    uint8_t env[24] = { 1, 2, 3 };
    put_frame(&b, IPC_TELL, env, sizeof env);
    put_frame(&b, IPC_HEARTBEAT, NULL, 0);
    size_t used;
    struct ipc_hdr h;
    const uint8_t *body;
    assert_int_equal(parse_guarded(b.p, b.len, &used, &h, &body), IPC_FRAME);
    assert_int_equal(used, HDR + 24);
    assert_int_equal(h.type, IPC_TELL);
    sb_free(&b);
}

/* Every error is visible in the header alone: the 8 bytes end at the
 * guard page, so a parser that waited for the body would report
 * IPC_NEED_MORE instead, and one that read on would fault. */
static void expect_proto(uint32_t type, uint32_t len)
{
    uint8_t hb[HDR];
    memcpy(hb, &len, 4);
    memcpy(hb + 4, &type, 4);
    size_t used = 5;
    struct ipc_hdr h;
    const uint8_t *body;
    assert_int_equal(parse_guarded(hb, HDR, &used, &h, &body),
                     IPC_ERR_PROTO);
    assert_int_equal(used, 0);
}

static void test_ipc_parse_rejects_oversize_body(void **state)
{
    (void)state;
    expect_proto(IPC_TELL, IPC_FRAME_MAX + 1);
    expect_proto(IPC_HEARTBEAT, IPC_FRAME_MAX + 1);
    expect_proto(IPC_TELL, UINT32_MAX);
    expect_proto(IPC_READY, 0x80000000u);

    /* IPC_FRAME_MAX itself is fine. */
    struct sb b = { 0 };
    uint8_t *big = calloc(1, IPC_FRAME_MAX);
    assert_non_null(big);
    put_frame(&b, IPC_TELL, big, IPC_FRAME_MAX);
    size_t used;
    struct ipc_hdr h;
    const uint8_t *body;
    assert_int_equal(parse_guarded(b.p, b.len, &used, &h, &body), IPC_FRAME);
    assert_int_equal(h.len, IPC_FRAME_MAX);
    assert_int_equal(parse_guarded(b.p, b.len - 1, &used, &h, &body),
                     IPC_NEED_MORE);
    free(big);
    sb_free(&b);
}

static void test_ipc_parse_rejects_type_zero_and_unknown(void **state)
{
    (void)state;
    expect_proto(0, 0);
    expect_proto(0, 24);
    expect_proto(IPC_TYPE_MAX, 0);
    expect_proto(IPC_TYPE_MAX, 100);
    expect_proto(IPC_TYPE_MAX + 1, 100);
    expect_proto(0xffffffffu, 30);
    expect_proto(0x80000001u, 30);
}

static void test_ipc_parse_rejects_short_body_per_type(void **state)
{
    (void)state;
    for (uint32_t t = 1; t < IPC_TYPE_MAX; t++)
        for (uint32_t len = 0; len < MIN_BODY[t]; len++)
            expect_proto(t, len);
}

static void test_ipc_parse_error_follows_good_frames(void **state)
{
    (void)state;
    struct sb b = { 0 }, want = { 0 };
    uint8_t pid[16] = { 9 };
    put_frame(&b, IPC_MONITOR, pid, 16);
    put_frame(&b, IPC_HEARTBEAT, NULL, 0);
    sb_put(&want, b.p, b.len);
    put_frame(&b, IPC_DOWN, pid, 15);    /* short */
    put_frame(&b, IPC_HEARTBEAT, NULL, 0);

    struct dec d;
    dec_init(&d, b.len);
    dec_push(&d, b.p, b.len);
    assert_int_equal(d.rc, IPC_ERR_PROTO);
    assert_int_equal(d.frames, 2);
    assert_same_bytes(&d.out, &want);
    dec_free(&d);
    sb_free(&b);
    sb_free(&want);
}

static void test_ipc_parse_byte_at_a_time(void **state)
{
    (void)state;
    struct sb b = { 0 };
    size_t ends[300];
    rng_state = 1;
    gen_stream(&b, 300, 120, ends);

    struct dec d;
    dec_init(&d, b.len);
    size_t k = 0;
    for (size_t i = 0; i < b.len; i++) {
        dec_push(&d, b.p + i, 1);
        assert_int_equal(d.rc, IPC_NEED_MORE);
        while (k < 300 && ends[k] <= i + 1)
            k++;
        /* a frame comes out exactly when its last byte arrives */
        assert_int_equal(d.frames, k);
    }
    assert_int_equal(d.pending.len, 0);
    assert_same_bytes(&d.out, &b);
    dec_free(&d);
    sb_free(&b);
}

static void test_ipc_parse_every_split_point(void **state)
{
    (void)state;
    struct sb b = { 0 };
    rng_state = 2;
    gen_stream(&b, 60, 40, NULL);
    for (size_t s = 0; s <= b.len; s++) {
        struct dec d;
        dec_init(&d, b.len);
        dec_push(&d, b.p, s);
        dec_push(&d, b.p + s, b.len - s);
        assert_int_equal(d.rc, IPC_NEED_MORE);
        assert_int_equal(d.frames, 60);
        assert_same_bytes(&d.out, &b);
        dec_free(&d);
    }
    sb_free(&b);
}

static void test_ipc_next_on_zeroed_input(void **state)
{
    (void)state;
    struct ipc_in in = { 0 };
    struct ipc_hdr h;
    const uint8_t *body;
    assert_int_equal(ipc_next(&in, &h, &body), IPC_NEED_MORE);
    ipc_in_free(&in);
    ipc_in_free(&in);
    struct ipc_out out = { 0 };
    assert_true(ipc_out_empty(&out));
    ipc_out_free(&out);
    ipc_out_free(&out);
}

/* ---- ipc_send and ipc_forward --------------------------------------------- */

static void test_ipc_send_encodes_header_and_both_parts(void **state)
{
    (void)state;
    struct ipc_out out = { 0 };
    struct sb want = { 0 };
    uint8_t env[24], data[5] = "hello", all[29];
    for (int i = 0; i < 24; i++)
        env[i] = (uint8_t)i;
    memcpy(all, env, 24);
    memcpy(all + 24, data, 5);

    assert_int_equal(ipc_send(&out, IPC_TELL, env, 24, data, 5), 0);
    put_frame(&want, IPC_TELL, all, 29);
    assert_int_equal(ipc_send(&out, IPC_HEARTBEAT, NULL, 0, NULL, 0), 0);
    put_frame(&want, IPC_HEARTBEAT, NULL, 0);
    assert_int_equal(ipc_send(&out, IPC_SERVICE_START, NULL, 0, "svc", 3),
                     0);
    put_frame(&want, IPC_SERVICE_START, "svc", 3);

    assert_false(ipc_out_empty(&out));
    assert_int_equal(out.off, 0);
    assert_int_equal(out.len, want.len);
    assert_memory_equal(out.data, want.p, want.len);
    ipc_out_free(&out);
    sb_free(&want);
}

static void test_ipc_send_refuses_body_over_frame_max(void **state)
{
    (void)state;
    struct ipc_out out = { 0 };
    uint8_t *big = calloc(1, IPC_FRAME_MAX + 1);
    assert_non_null(big);
    assert_int_equal(ipc_send(&out, IPC_TELL, big, IPC_FRAME_MAX + 1, NULL,
                              0), -SNOW_ETOOBIG);
    assert_int_equal(ipc_send(&out, IPC_TELL, big, 24, big,
                              IPC_FRAME_MAX - 23), -SNOW_ETOOBIG);
    /* lengths whose sum wraps around must not slip through */
    assert_int_equal(ipc_send(&out, IPC_TELL, big, 24, big,
                              SIZE_MAX - 10), -SNOW_ETOOBIG);
    assert_int_equal(out.len, 0);
    assert_int_equal(ipc_send(&out, IPC_TELL, big, 24, big,
                              IPC_FRAME_MAX - 24), 0);
    assert_int_equal(out.len, HDR + IPC_FRAME_MAX);
    free(big);
    ipc_out_free(&out);
}

static void test_ipc_send_limit_gives_efull_and_appends_nothing(void **state)
{
    (void)state;
    uint8_t body[100] = { 0 };
    struct ipc_out out = { .limit = 3 * (HDR + 100) + HDR };

    for (int i = 0; i < 3; i++)
        assert_int_equal(ipc_send(&out, IPC_TELL, body, 24, body + 24, 76),
                         0);
    uint8_t *copy = malloc(out.len);
    assert_non_null(copy);
    memcpy(copy, out.data, out.len);
    size_t len = out.len;

    assert_int_equal(ipc_send(&out, IPC_TELL, body, 24, body + 24, 76),
                     -SNOW_EFULL);
    assert_int_equal(ipc_send(&out, IPC_SERVICE_START, "x", 1, NULL, 0),
                     -SNOW_EFULL);
    assert_int_equal(ipc_forward(&out, copy, HDR + 100), -SNOW_EFULL);
    assert_int_equal(out.len, len);
    assert_memory_equal(out.data, copy, len);

    /* exactly up to the limit is allowed */
    assert_int_equal(ipc_send(&out, IPC_HEARTBEAT, NULL, 0, NULL, 0), 0);
    assert_int_equal(out.len, out.limit);
    assert_int_equal(ipc_send(&out, IPC_HEARTBEAT, NULL, 0, NULL, 0),
                     -SNOW_EFULL);

    /* written bytes no longer count */
    int sv[2];
    make_pair(sv);
    assert_int_equal(ipc_out_flush(&out, sv[0]), 0);
    assert_true(ipc_out_empty(&out));
    assert_int_equal(ipc_send(&out, IPC_TELL, body, 24, body + 24, 76), 0);
    free(copy);
    ipc_out_free(&out);
    close(sv[0]);
    close(sv[1]);
}

static void test_ipc_send_limit_counts_only_unwritten_bytes(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    struct ipc_out out = { 0 };
    uint8_t body[1000] = { 0 };

    while (out.len < (8u << 20))
        assert_int_equal(ipc_send(&out, IPC_TELL, body, sizeof body, NULL,
                                  0), 0);
    assert_int_equal(ipc_out_flush(&out, sv[0]), 1);
    assert_true(out.off > 0 && out.off < out.len);

    out.limit = out.len - out.off + HDR;
    assert_int_equal(ipc_send(&out, IPC_HEARTBEAT, NULL, 0, NULL, 0), 0);
    assert_int_equal(ipc_send(&out, IPC_HEARTBEAT, NULL, 0, NULL, 0),
                     -SNOW_EFULL);
    /* a limit lowered below what is queued refuses everything */
    out.limit = 1;
    assert_int_equal(ipc_send(&out, IPC_HEARTBEAT, NULL, 0, NULL, 0),
                     -SNOW_EFULL);
    ipc_out_free(&out);
    close(sv[0]);
    close(sv[1]);
}

static void test_ipc_forward_copies_a_frame(void **state)
{
    (void)state;
    struct sb f = { 0 };
    uint8_t env[24] = { 7, 7, 7 };
    put_frame(&f, IPC_TELL, env, 24);
    struct ipc_out out = { 0 };
    assert_int_equal(ipc_forward(&out, f.p, f.len), 0);
    assert_int_equal(ipc_forward(&out, f.p, f.len), 0);
    assert_int_equal(out.len, 2 * f.len);
    assert_memory_equal(out.data, f.p, f.len);
    assert_memory_equal(out.data + f.len, f.p, f.len);
    assert_int_equal(ipc_forward(&out, f.p, HDR - 1), -SNOW_EINVAL);
    assert_int_equal(ipc_forward(&out, f.p, HDR + IPC_FRAME_MAX + 1),
                     -SNOW_ETOOBIG);
    assert_int_equal(out.len, 2 * f.len);
    ipc_out_free(&out);
    sb_free(&f);
}

/* ---- flush and fill --------------------------------------------------------- */

static void test_ipc_round_trip_many_frames(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    struct ipc_out out = { 0 };
    struct ipc_in in = { 0 };
    struct sb want = { 0 }, got = { 0 };
    struct gen *g = malloc(sizeof *g);
    assert_non_null(g);
    size_t sent = 0, came = 0;

    rng_state = 3;
    for (int i = 0; i < 50000; i++) {
        /* mostly small TELLs, now and then the largest frame */
        gen_frame(g, i % 997 == 0 ? IPC_FRAME_MAX : 90);
        size_t cut = g->len ? rnd() % (g->len + 1) : 0;
        assert_int_equal(ipc_send(&out, (enum ipc_type)g->type, g->body, cut,
                                  g->body + cut, g->len - cut), 0);
        put_frame(&want, g->type, g->body, g->len);
        sent++;
        if (i % 64 == 63) {
            int rc = ipc_out_flush(&out, sv[0]);
            assert_true(rc == 0 || rc == 1);
            came += read_frames(&in, sv[1], &got);
        }
    }
    int rc;
    while ((rc = ipc_out_flush(&out, sv[0])) == 1)
        came += read_frames(&in, sv[1], &got);
    assert_int_equal(rc, 0);
    came += read_frames(&in, sv[1], &got);
    assert_int_equal(came, sent);
    assert_same_bytes(&got, &want);
    assert_true(ipc_out_empty(&out));
    assert_int_equal(in.off, in.len);

    free(g);
    sb_free(&want);
    sb_free(&got);
    ipc_out_free(&out);
    ipc_in_free(&in);
    close(sv[0]);
    close(sv[1]);
}

static void test_ipc_socket_fed_one_byte_at_a_time(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    struct ipc_in in = { 0 };
    struct sb stream = { 0 }, got = { 0 };
    size_t ends[200];
    rng_state = 4;
    gen_stream(&stream, 200, 60, ends);

    size_t k = 0, frames = 0;
    for (size_t i = 0; i < stream.len; i++) {
        assert_int_equal(write(sv[0], stream.p + i, 1), 1);
        frames += read_frames(&in, sv[1], &got);
        while (k < 200 && ends[k] <= i + 1)
            k++;
        assert_int_equal(frames, k);
    }
    assert_same_bytes(&got, &stream);
    sb_free(&stream);
    sb_free(&got);
    ipc_in_free(&in);
    close(sv[0]);
    close(sv[1]);
}

/* Large frames that straddle every read make ipc_in_fill compact and
 * grow; the frames must come out whole and the buffer stay bounded. */
static void test_ipc_fill_keeps_large_frames_whole(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    struct ipc_in in = { 0 };
    struct sb stream = { 0 }, got = { 0 };
    uint8_t *big = malloc(IPC_FRAME_MAX);
    assert_non_null(big);
    for (size_t i = 0; i < IPC_FRAME_MAX; i++)
        big[i] = (uint8_t)(i * 13 + i / 256);
    rng_state = 5;
    for (int r = 0; r < 12; r++) {
        gen_stream(&stream, 1 + r * 3, 200, NULL);
        put_frame(&stream, IPC_TELL, big, IPC_FRAME_MAX - r * 1111);
    }

    size_t frames = 0;
    for (size_t off = 0; off < stream.len; ) {
        size_t n = stream.len - off < 7777 ? stream.len - off : 7777;
        ssize_t w = write(sv[0], stream.p + off, n);
        assert_true(w > 0);
        off += (size_t)w;
        frames += read_frames(&in, sv[1], &got);
    }
    assert_int_equal(frames, 12 + 3 * 66 + 12);
    assert_same_bytes(&got, &stream);
    assert_true(in.cap > 64 * 1024);
    assert_true(in.cap <= IN_MAX);
    free(big);
    sb_free(&stream);
    sb_free(&got);
    ipc_in_free(&in);
    close(sv[0]);
    close(sv[1]);
}

/* The worst case for the input buffer: the largest frame held whole but
 * for its last byte.  Room for one more read must come without passing
 * one frame plus one read. */
static void test_ipc_fill_grows_no_further_than_a_frame_and_a_read(
    void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    struct ipc_in in = { 0 };
    struct sb stream = { 0 }, got = { 0 };
    uint8_t *big = malloc(IPC_FRAME_MAX);
    assert_non_null(big);
    memset(big, 0x5a, IPC_FRAME_MAX);
    put_frame(&stream, IPC_TELL, big, IPC_FRAME_MAX);

    assert_int_equal(write(sv[0], stream.p, stream.len - 1),
                     (ssize_t)stream.len - 1);
    assert_int_equal(read_frames(&in, sv[1], &got), 0);
    assert_int_equal(in.len - in.off, stream.len - 1);
    assert_int_equal(write(sv[0], stream.p + stream.len - 1, 1), 1);
    assert_int_equal(read_frames(&in, sv[1], &got), 1);
    assert_int_equal(in.cap, IN_MAX);
    assert_same_bytes(&got, &stream);
    free(big);
    sb_free(&stream);
    sb_free(&got);
    ipc_in_free(&in);
    close(sv[0]);
    close(sv[1]);
}

static void test_ipc_flush_returns_1_when_full_then_completes(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    struct ipc_out out = { 0 };
    struct sb want = { 0 }, got = { 0 };
    uint8_t body[8000];

    for (int i = 0; i < 512; i++) {
        memset(body, i, sizeof body);
        assert_int_equal(ipc_send(&out, IPC_TELL, body, sizeof body, NULL, 0),
                         0);
        put_frame(&want, IPC_TELL, body, sizeof body);
    }
    assert_int_equal(ipc_out_flush(&out, sv[0]), 1);
    assert_false(ipc_out_empty(&out));
    /* nothing more fits until the peer reads */
    size_t off = out.off;
    assert_int_equal(ipc_out_flush(&out, sv[0]), 1);
    assert_int_equal(out.off, off);

    int rc, rounds = 0;
    do {
        read_raw(sv[1], &got);
        rc = ipc_out_flush(&out, sv[0]);
        assert_true(rc == 0 || rc == 1);
        rounds++;
    } while (rc == 1);
    read_raw(sv[1], &got);
    assert_true(rounds > 1);
    assert_true(ipc_out_empty(&out));
    assert_int_equal(out.off, 0);
    assert_int_equal(out.len, 0);
    assert_same_bytes(&got, &want);
    /* an empty queue flushes at once */
    assert_int_equal(ipc_out_flush(&out, sv[0]), 0);
    sb_free(&want);
    sb_free(&got);
    ipc_out_free(&out);
    close(sv[0]);
    close(sv[1]);
}

static void test_ipc_flush_reports_errno(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    struct ipc_out out = { 0 };
    assert_int_equal(ipc_send(&out, IPC_HEARTBEAT, NULL, 0, NULL, 0), 0);
    close(sv[1]);
    assert_int_equal(ipc_out_flush(&out, sv[0]), -EPIPE);
    assert_int_equal(out.len, HDR);   /* still queued */
    close(sv[0]);
    assert_int_equal(ipc_out_flush(&out, sv[0]), -EBADF);
    ipc_out_free(&out);
}

static void test_ipc_fill_eagain_eof_and_errors(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    struct ipc_in in = { 0 };
    assert_int_equal(ipc_in_fill(&in, sv[1]), -EAGAIN);
    assert_int_equal(write(sv[0], "abc", 3), 3);
    assert_int_equal(ipc_in_fill(&in, sv[1]), 3);
    close(sv[0]);
    assert_int_equal(ipc_in_fill(&in, sv[1]), 0);
    assert_int_equal(in.len - in.off, 3);   /* a partial header is kept */
    struct ipc_hdr h;
    const uint8_t *body;
    assert_int_equal(ipc_next(&in, &h, &body), IPC_NEED_MORE);
    close(sv[1]);
    assert_int_equal(ipc_in_fill(&in, sv[1]), -EBADF);
    ipc_in_free(&in);
}

static void test_ipc_next_stops_at_protocol_error(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    struct ipc_in in = { 0 };
    struct sb b = { 0 };
    put_frame(&b, IPC_HEARTBEAT, NULL, 0);
    put_frame(&b, IPC_REPLY, "abc", 3);
    assert_int_equal(write(sv[0], b.p, b.len), (ssize_t)b.len);
    assert_true(ipc_in_fill(&in, sv[1]) > 0);
    struct ipc_hdr h;
    const uint8_t *body;
    assert_int_equal(ipc_next(&in, &h, &body), IPC_FRAME);
    assert_int_equal(ipc_next(&in, &h, &body), IPC_ERR_PROTO);
    /* the bad frame is not consumed: asking again says the same */
    assert_int_equal(ipc_next(&in, &h, &body), IPC_ERR_PROTO);
    sb_free(&b);
    ipc_in_free(&in);
    close(sv[0]);
    close(sv[1]);
}

/* A one-page pipe takes exactly 4096 bytes per flush, which makes the
 * output buffer both grow and compact; no frame may be damaged. */
static void test_ipc_out_compaction_keeps_frames_whole(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_true(fcntl(p[1], F_SETPIPE_SZ, 4096) >= 4096);
    assert_int_equal(fcntl(p[1], F_GETPIPE_SZ), 4096);
    set_nonblock(p[0]);
    set_nonblock(p[1]);

    struct ipc_out out = { 0 };
    struct ipc_in in = { 0 };
    struct sb want = { 0 }, got = { 0 };
    struct gen *g = malloc(sizeof *g);
    assert_non_null(g);
    size_t compactions = 0, growths = 0;

    rng_state = 6;
    for (int i = 0; i < 20000; i++) {
        gen_frame(g, 120);
        size_t cap = out.cap, off = out.off;
        size_t cut = g->len < 24 ? g->len : 24;   /* envelope, then data */
        assert_int_equal(ipc_send(&out, (enum ipc_type)g->type, g->body, cut,
                                  g->body + cut, g->len - cut), 0);
        put_frame(&want, g->type, g->body, g->len);
        if (out.cap != cap)
            growths++;
        else if (off && !out.off)
            compactions++;
        /* 64 frames are more than one pipe page, so the queue grows a
         * little every round and the written prefix with it. */
        if (i % 64 == 63) {
            int rc = ipc_out_flush(&out, p[1]);
            assert_true(rc == 0 || rc == 1);
            read_frames(&in, p[0], &got);
        }
    }
    while (ipc_out_flush(&out, p[1]) == 1)
        read_frames(&in, p[0], &got);
    read_frames(&in, p[0], &got);
    assert_true(compactions > 0);
    assert_true(growths > 0);
    assert_same_bytes(&got, &want);

    free(g);
    sb_free(&want);
    sb_free(&got);
    ipc_out_free(&out);
    ipc_in_free(&in);
    close(p[0]);
    close(p[1]);
}

static void test_ipc_out_releases_a_large_drained_buffer(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    struct ipc_out out = { 0 };
    uint8_t body[4096] = { 0 };
    struct sb got = { 0 };

    while (out.len < (2u << 20))
        assert_int_equal(ipc_send(&out, IPC_TELL, body, sizeof body, NULL,
                                  0), 0);
    size_t total = out.len;
    while (ipc_out_flush(&out, sv[0]) == 1)
        read_raw(sv[1], &got);
    read_raw(sv[1], &got);
    assert_int_equal(got.len, total);
    assert_int_equal(out.cap, 0);
    assert_null(out.data);
    /* and it is usable again */
    assert_int_equal(ipc_send(&out, IPC_HEARTBEAT, NULL, 0, NULL, 0), 0);
    assert_int_equal(ipc_out_flush(&out, sv[0]), 0);
    sb_free(&got);
    ipc_out_free(&out);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    /* A peer that has closed must show as -EPIPE, not kill the test. */
    signal(SIGPIPE, SIG_IGN);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipc_min_body_per_type),
        cmocka_unit_test(test_ipc_routed_types_are_the_actor_messages),
        cmocka_unit_test(test_ipc_get_put_unaligned_host_order),
        cmocka_unit_test(test_ipc_parse_needs_a_whole_header),
        cmocka_unit_test(test_ipc_parse_every_type_at_its_minimum),
        cmocka_unit_test(test_ipc_parse_cuts_one_frame_of_several),
        cmocka_unit_test(test_ipc_parse_rejects_oversize_body),
        cmocka_unit_test(test_ipc_parse_rejects_type_zero_and_unknown),
        cmocka_unit_test(test_ipc_parse_rejects_short_body_per_type),
        cmocka_unit_test(test_ipc_parse_error_follows_good_frames),
        cmocka_unit_test(test_ipc_parse_byte_at_a_time),
        cmocka_unit_test(test_ipc_parse_every_split_point),
        cmocka_unit_test(test_ipc_next_on_zeroed_input),
        cmocka_unit_test(test_ipc_send_encodes_header_and_both_parts),
        cmocka_unit_test(test_ipc_send_refuses_body_over_frame_max),
        cmocka_unit_test(test_ipc_send_limit_gives_efull_and_appends_nothing),
        cmocka_unit_test(test_ipc_send_limit_counts_only_unwritten_bytes),
        cmocka_unit_test(test_ipc_forward_copies_a_frame),
        cmocka_unit_test(test_ipc_round_trip_many_frames),
        cmocka_unit_test(test_ipc_socket_fed_one_byte_at_a_time),
        cmocka_unit_test(test_ipc_fill_keeps_large_frames_whole),
        cmocka_unit_test(test_ipc_fill_grows_no_further_than_a_frame_and_a_read),
        cmocka_unit_test(test_ipc_flush_returns_1_when_full_then_completes),
        cmocka_unit_test(test_ipc_flush_reports_errno),
        cmocka_unit_test(test_ipc_fill_eagain_eof_and_errors),
        cmocka_unit_test(test_ipc_next_stops_at_protocol_error),
        cmocka_unit_test(test_ipc_out_compaction_keeps_frames_whole),
        cmocka_unit_test(test_ipc_out_releases_a_large_drained_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
