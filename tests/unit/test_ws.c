/*
 * test_ws.c - unit tests for the RFC 6455 frame codec (src/ws.c).
 *
 * Build: gcc -Wall -Wextra -Isrc -Iinclude tests/unit/test_ws.c src/ws.c \
 *            src/utf8.c -lcmocka -o /tmp/test_ws && /tmp/test_ws
 *
 * Every stream that the decoder is asked about is placed so that its last
 * byte sits just before a PROT_NONE page (see guard.h): reading past the
 * bytes handed to ws_decode faults.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"
#include "ws.h"

#define FIN 0x80
#define RSV1 0x40
#define RSV2 0x20
#define RSV3 0x10

static const uint8_t MASK_A[4] = { 0x37, 0xfa, 0x21, 0x3d };
static const uint8_t MASK_B[4] = { 0x01, 0x80, 0xfe, 0x5a };
static const uint8_t MASK_0[4] = { 0, 0, 0, 0 };

/* ---- a growable byte string, to build streams -------------------------- */

struct sb {
    uint8_t *p;
    size_t len, cap;
};

static void sb_put(struct sb *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
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

/* Appends a frame built independently of ws_encode_header: b0 is the first
 * byte (FIN, RSV, opcode), mask NULL for an unmasked frame. */
static void put_frame(struct sb *b, unsigned b0, const uint8_t *mask,
                      const void *payload, size_t len)
{
    uint8_t h[14];
    size_t n = 0;
    uint8_t mbit = mask ? 0x80 : 0;

    h[n++] = (uint8_t)b0;
    if (len < 126) {
        h[n++] = mbit | (uint8_t)len;
    } else if (len < 65536) {
        h[n++] = mbit | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = mbit | 127;
        for (int i = 7; i >= 0; i--)
            h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (mask) {
        memcpy(h + n, mask, 4);
        n += 4;
    }
    sb_put(b, h, n);
    size_t start = b->len;
    sb_put(b, payload, len);
    if (mask)
        for (size_t i = 0; i < len; i++)
            b->p[start + i] ^= mask[i & 3];
}

/* ---- the caller simulation --------------------------------------------- */

struct msg {
    uint8_t op;
    uint8_t *data;
    size_t len;
};

#define MAX_MSGS 64

struct sim {
    /* results */
    enum ws_rc rc;           /* first error, or WS_NEED_MORE */
    size_t nmsgs;
    struct msg msgs[MAX_MSGS];
    struct sb partial;       /* data of an unfinished message */
    uint8_t partial_op;
    bool in_message;
    /* working state */
    struct ws_decoder d;
    struct sb pending;       /* unconsumed bytes kept by the caller */
    struct guard g;
    size_t calls;
};

static void sim_init(struct sim *s, size_t stream_len, uint64_t max_message,
                     bool require_mask)
{
    memset(s, 0, sizeof *s);
    s->rc = WS_NEED_MORE;
    ws_decoder_init(&s->d, max_message, require_mask);
    guard_init(&s->g, stream_len + 1);
}

static void sim_free(struct sim *s)
{
    for (size_t i = 0; i < s->nmsgs; i++)
        free(s->msgs[i].data);
    sb_free(&s->partial);
    sb_free(&s->pending);
    guard_free(&s->g);
}

static void sim_emit(struct sim *s, uint8_t op, const uint8_t *p, size_t n)
{
    assert_true(s->nmsgs < MAX_MSGS);
    struct msg *m = &s->msgs[s->nmsgs++];
    m->op = op;
    m->len = n;
    m->data = malloc(n ? n : 1);
    assert_non_null(m->data);
    if (n)
        memcpy(m->data, p, n);
}

/* Hands n more bytes to the simulated connection. */
static void sim_push(struct sim *s, const uint8_t *p, size_t n)
{
    if (s->rc != WS_NEED_MORE)
        return;     /* the connection already failed */
    sb_put(&s->pending, p, n);
    for (;;) {
        size_t len = s->pending.len, used = 12345;
        struct ws_chunk c;
        uint8_t *buf = guard_place(&s->g, s->pending.p, len);
        enum ws_rc rc = ws_decode(&s->d, buf, len, &used, &c);
        s->calls++;
        if (rc == WS_NEED_MORE) {
            assert_int_equal(used, 0);
            return;
        }
        if (rc != WS_CHUNK) {
            s->rc = rc;
            return;
        }
        assert_true(used > 0);
        assert_true(used <= len);
        if (c.len) {
            assert_true(c.data >= buf);
            assert_true(c.data + c.len <= buf + used);
        }
        if (c.opcode & 0x8) {
            /* control frames come whole, at once */
            assert_true(c.opcode == WS_OP_CLOSE || c.opcode == WS_OP_PING ||
                        c.opcode == WS_OP_PONG);
            assert_true(c.frame_start && c.frame_end && c.message_end);
            assert_int_equal(c.frame_len, c.len);
            assert_true(c.len <= WS_MAX_CONTROL);
            sim_emit(s, c.opcode, c.data, c.len);
        } else {
            assert_true(c.opcode == WS_OP_TEXT || c.opcode == WS_OP_BINARY);
            if (!s->in_message) {
                assert_true(c.frame_start);
                s->in_message = true;
                s->partial_op = c.opcode;
            }
            assert_int_equal(c.opcode, s->partial_op);
            assert_true(c.len <= c.frame_len);
            if (c.message_end)
                assert_true(c.frame_end);
            sb_put(&s->partial, c.data, c.len);
            if (c.message_end) {
                sim_emit(s, s->partial_op, s->partial.p, s->partial.len);
                s->partial.len = 0;
                s->in_message = false;
            }
        }
        memmove(s->pending.p, s->pending.p + used, len - used);
        s->pending.len = len - used;
    }
}

/* Runs a stream through a fresh decoder, cut into pieces at cuts[]. */
static void sim_run_cuts(struct sim *s, const uint8_t *p, size_t len,
                         const size_t *cuts, size_t ncuts,
                         uint64_t max_message, bool require_mask)
{
    size_t at = 0;
    sim_init(s, len, max_message, require_mask);
    for (size_t i = 0; i < ncuts; i++) {
        sim_push(s, p + at, cuts[i] - at);
        at = cuts[i];
    }
    sim_push(s, p + at, len - at);
}

static void sim_run(struct sim *s, const uint8_t *p, size_t len,
                    uint64_t max_message, bool require_mask)
{
    sim_run_cuts(s, p, len, NULL, 0, max_message, require_mask);
}

static void sim_run_bytewise(struct sim *s, const uint8_t *p, size_t len,
                             uint64_t max_message, bool require_mask)
{
    sim_init(s, len, max_message, require_mask);
    for (size_t i = 0; i < len; i++)
        sim_push(s, p + i, 1);
}

static void assert_sims_equal(const struct sim *a, const struct sim *b)
{
    assert_int_equal(a->rc, b->rc);
    assert_int_equal(a->nmsgs, b->nmsgs);
    for (size_t i = 0; i < a->nmsgs; i++) {
        assert_int_equal(a->msgs[i].op, b->msgs[i].op);
        assert_int_equal(a->msgs[i].len, b->msgs[i].len);
        assert_memory_equal(a->msgs[i].data, b->msgs[i].data,
                            a->msgs[i].len ? a->msgs[i].len : 0);
    }
    if (a->rc == WS_NEED_MORE) {
        assert_int_equal(a->in_message, b->in_message);
        assert_int_equal(a->partial.len, b->partial.len);
        if (a->partial.len)
            assert_memory_equal(a->partial.p, b->partial.p, a->partial.len);
        assert_int_equal(a->pending.len, b->pending.len);
    }
}

static void assert_msg(const struct sim *s, size_t i, uint8_t op,
                       const void *data, size_t len)
{
    assert_true(i < s->nmsgs);
    assert_int_equal(s->msgs[i].op, op);
    assert_int_equal(s->msgs[i].len, len);
    if (len)
        assert_memory_equal(s->msgs[i].data, data, len);
}

/* The verdict of a whole stream fed at once to a server decoder. */
static enum ws_rc verdict(const struct sb *b, uint64_t max_message)
{
    struct sim s;
    sim_run(&s, b->p, b->len, max_message, true);
    enum ws_rc rc = s.rc;
    sim_free(&s);
    return rc;
}

/* The verdict of bytes fed once to a fresh decoder (one ws_decode call),
 * placed before a guard page. */
static enum ws_rc decode_once(const uint8_t *p, size_t len, bool require_mask,
                              uint64_t max_message, size_t *used,
                              struct ws_chunk *c)
{
    struct guard g;
    struct ws_decoder d;
    guard_init(&g, len);
    uint8_t *buf = guard_place(&g, p, len);
    ws_decoder_init(&d, max_message, require_mask);
    enum ws_rc rc = ws_decode(&d, buf, len, used, c);
    guard_free(&g);
    return rc;
}

/* ---- length encodings -------------------------------------------------- */

static void check_length(size_t plen)
{
    uint8_t *payload = malloc(plen ? plen : 1);
    assert_non_null(payload);
    for (size_t i = 0; i < plen; i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    struct sb b = { 0 };
    put_frame(&b, FIN | WS_OP_BINARY, MASK_A, payload, plen);
    size_t want_hlen = plen < 126 ? 6 : plen < 65536 ? 8 : 14;
    assert_int_equal(b.len, want_hlen + plen);

    struct sim s;
    sim_run(&s, b.p, b.len, 0, true);
    assert_int_equal(s.rc, WS_NEED_MORE);
    assert_int_equal(s.nmsgs, 1);
    assert_msg(&s, 0, WS_OP_BINARY, payload, plen);
    assert_int_equal(s.pending.len, 0);
    sim_free(&s);

    /* The header alone: a first chunk of zero bytes with frame_len set,
     * or NEED_MORE one byte short of the header. */
    size_t used;
    struct ws_chunk c;
    assert_int_equal(decode_once(b.p, want_hlen - 1, true, 0, &used, &c),
                     WS_NEED_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(decode_once(b.p, want_hlen, true, 0, &used, &c),
                     WS_CHUNK);
    assert_int_equal(used, want_hlen);
    assert_int_equal(c.frame_len, plen);
    assert_true(c.frame_start);
    assert_int_equal(c.len, 0);
    assert_int_equal(c.frame_end, plen == 0);
    sb_free(&b);
    free(payload);
}

static void test_ws_decodes_7bit_lengths(void **state)
{
    (void)state;
    check_length(0);
    check_length(1);
    check_length(125);
}

static void test_ws_decodes_16bit_lengths(void **state)
{
    (void)state;
    check_length(126);
    check_length(127);
    check_length(65535);
}

static void test_ws_decodes_64bit_lengths(void **state)
{
    (void)state;
    check_length(65536);
    check_length(65537);
}

static void test_ws_rejects_64bit_length_with_msb_set(void **state)
{
    (void)state;
    uint8_t f[14] = { FIN | WS_OP_BINARY, 0x80 | 127,
                      0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 };
    size_t used;
    struct ws_chunk c;
    assert_int_equal(decode_once(f, sizeof f, true, 0, &used, &c),
                     WS_ERR_PROTOCOL);
    /* Also with every other bit of the top byte and no limit on size. */
    f[2] = 0xff;
    assert_int_equal(decode_once(f, sizeof f, true, 0, &used, &c),
                     WS_ERR_PROTOCOL);
    /* Also before the mask has arrived. */
    assert_int_equal(decode_once(f, 10, true, 0, &used, &c), WS_ERR_PROTOCOL);
    /* The largest legal length is accepted (header-wise). */
    uint8_t g[14] = { FIN | WS_OP_BINARY, 0x80 | 127,
                      0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                      1, 2, 3, 4 };
    assert_int_equal(decode_once(g, sizeof g, true, 0, &used, &c), WS_CHUNK);
    assert_int_equal(c.frame_len, UINT64_MAX >> 1);
}

/* ---- masking and reserved bits ----------------------------------------- */

static void test_ws_rejects_non_minimal_length_encoding(void **state)
{
    (void)state;
    size_t used;
    struct ws_chunk c;
    /* 5 in the 16-bit form, then 65535 in the 64-bit form (5.2: "the
     * minimal number of bytes MUST be used"). */
    uint8_t f16[8] = { FIN | WS_OP_TEXT, 0x80 | 126, 0, 5, 1, 2, 3, 4 };
    assert_int_equal(decode_once(f16, sizeof f16, true, 0, &used, &c),
                     WS_ERR_PROTOCOL);
    uint8_t f64[14] = { FIN | WS_OP_BINARY, 0x80 | 127,
                        0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4 };
    assert_int_equal(decode_once(f64, sizeof f64, true, 0, &used, &c),
                     WS_ERR_PROTOCOL);
    /* The smallest length of each form is accepted. */
    uint8_t g16[8] = { FIN | WS_OP_TEXT, 0x80 | 126, 0, 126, 1, 2, 3, 4 };
    assert_int_equal(decode_once(g16, sizeof g16, true, 0, &used, &c),
                     WS_CHUNK);
    uint8_t g64[14] = { FIN | WS_OP_BINARY, 0x80 | 127,
                        0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4 };
    assert_int_equal(decode_once(g64, sizeof g64, true, 0, &used, &c),
                     WS_CHUNK);
}

static void test_ws_rejects_unmasked_frame(void **state)
{
    (void)state;
    struct sb b = { 0 };
    put_frame(&b, FIN | WS_OP_TEXT, NULL, "Hello", 5);
    assert_int_equal(verdict(&b, 0), WS_ERR_PROTOCOL);
    /* Fails on the first two bytes, without waiting for the payload. */
    size_t used;
    struct ws_chunk c;
    assert_int_equal(decode_once(b.p, 2, true, 0, &used, &c),
                     WS_ERR_PROTOCOL);
    sb_free(&b);
    /* Unmasked control frames too. */
    put_frame(&b, FIN | WS_OP_PING, NULL, "x", 1);
    assert_int_equal(verdict(&b, 0), WS_ERR_PROTOCOL);
    sb_free(&b);
}

static void test_ws_client_decoder_rejects_masked_frame(void **state)
{
    (void)state;
    struct sb b = { 0 };
    put_frame(&b, FIN | WS_OP_TEXT, MASK_A, "Hello", 5);
    struct sim s;
    sim_run(&s, b.p, b.len, 0, false);
    assert_int_equal(s.rc, WS_ERR_PROTOCOL);
    sim_free(&s);
    sb_free(&b);
}

static void test_ws_rejects_rsv_bits(void **state)
{
    (void)state;
    const unsigned rsv[] = { RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3 };
    const unsigned ops[] = { WS_OP_TEXT, WS_OP_BINARY, WS_OP_PING };
    for (size_t i = 0; i < 4; i++)
        for (size_t k = 0; k < 3; k++) {
            struct sb b = { 0 };
            put_frame(&b, FIN | rsv[i] | ops[k], MASK_A, "Hello", 5);
            assert_int_equal(verdict(&b, 0), WS_ERR_PROTOCOL);
            size_t used;
            struct ws_chunk c;
            assert_int_equal(decode_once(b.p, 2, true, 0, &used, &c),
                             WS_ERR_PROTOCOL);
            sb_free(&b);
        }
}

static void test_ws_rejects_reserved_opcodes(void **state)
{
    (void)state;
    const unsigned ops[] = { 3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        struct sb b = { 0 };
        put_frame(&b, FIN | ops[i], MASK_A, "ab", 2);
        assert_int_equal(verdict(&b, 0), WS_ERR_PROTOCOL);
        sb_free(&b);
        /* Also with FIN clear, and empty. */
        put_frame(&b, ops[i], MASK_A, "", 0);
        assert_int_equal(verdict(&b, 0), WS_ERR_PROTOCOL);
        sb_free(&b);
    }
}

/* ---- control frames ---------------------------------------------------- */

static void test_ws_rejects_control_frame_over_125_bytes(void **state)
{
    (void)state;
    uint8_t payload[200];
    memset(payload, 'p', sizeof payload);
    const unsigned ops[] = { WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE };
    for (size_t k = 0; k < 3; k++) {
        struct sb b = { 0 };
        put_frame(&b, FIN | ops[k], MASK_A, payload, 126);
        assert_int_equal(verdict(&b, 0), WS_ERR_PROTOCOL);
        /* Rejected from the header alone. */
        size_t used;
        struct ws_chunk c;
        assert_int_equal(decode_once(b.p, 4, true, 0, &used, &c),
                         WS_ERR_PROTOCOL);
        sb_free(&b);
        uint8_t *huge = calloc(1, 70000);
        assert_non_null(huge);
        put_frame(&b, FIN | ops[k], MASK_A, huge, 70000);
        free(huge);
        assert_int_equal(verdict(&b, 0), WS_ERR_PROTOCOL);
        sb_free(&b);
    }
    /* 125 is fine. */
    struct sb b = { 0 };
    put_frame(&b, FIN | WS_OP_PING, MASK_A, payload, 125);
    assert_int_equal(verdict(&b, 0), WS_NEED_MORE);
    sb_free(&b);
}

static void test_ws_rejects_fragmented_control_frame(void **state)
{
    (void)state;
    const unsigned ops[] = { WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE };
    for (size_t k = 0; k < 3; k++) {
        struct sb b = { 0 };
        put_frame(&b, ops[k], MASK_A, "", 0);
        assert_int_equal(verdict(&b, 0), WS_ERR_PROTOCOL);
        sb_free(&b);
    }
}

static void test_ws_returns_control_frame_whole(void **state)
{
    (void)state;
    uint8_t payload[125];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)i;
    struct sb b = { 0 };
    put_frame(&b, FIN | WS_OP_PING, MASK_B, payload, 125);
    size_t used;
    struct ws_chunk c;
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(decode_once(b.p, n, true, 0, &used, &c),
                         WS_NEED_MORE);
    assert_int_equal(decode_once(b.p, b.len, true, 0, &used, &c), WS_CHUNK);
    assert_int_equal(used, b.len);
    assert_int_equal(c.len, 125);
    assert_int_equal(c.opcode, WS_OP_PING);
    sb_free(&b);
}

/* ---- fragmentation ----------------------------------------------------- */

static void test_ws_rejects_continuation_without_start(void **state)
{
    (void)state;
    struct sb b = { 0 };
    put_frame(&b, FIN | WS_OP_CONTINUATION, MASK_A, "lo", 2);
    assert_int_equal(verdict(&b, 0), WS_ERR_PROTOCOL);
    sb_free(&b);
    put_frame(&b, WS_OP_CONTINUATION, MASK_A, "lo", 2);
    assert_int_equal(verdict(&b, 0), WS_ERR_PROTOCOL);
    sb_free(&b);
    /* And after a message has been completed. */
    put_frame(&b, FIN | WS_OP_TEXT, MASK_A, "Hel", 3);
    put_frame(&b, FIN | WS_OP_CONTINUATION, MASK_A, "lo", 2);
    struct sim s;
    sim_run(&s, b.p, b.len, 0, true);
    assert_int_equal(s.rc, WS_ERR_PROTOCOL);
    assert_int_equal(s.nmsgs, 1);
    sim_free(&s);
    sb_free(&b);
}

static void test_ws_rejects_new_message_inside_fragmented_message(void **state)
{
    (void)state;
    const unsigned first[] = { WS_OP_TEXT, WS_OP_BINARY };
    const unsigned second[] = { WS_OP_TEXT, WS_OP_BINARY };
    for (size_t i = 0; i < 2; i++)
        for (size_t k = 0; k < 2; k++) {
            struct sb b = { 0 };
            put_frame(&b, first[i], MASK_A, "Hel", 3);
            put_frame(&b, FIN | second[k], MASK_A, "lo", 2);
            assert_int_equal(verdict(&b, 0), WS_ERR_PROTOCOL);
            sb_free(&b);
        }
}

static void test_ws_control_frames_interleave_between_fragments(void **state)
{
    (void)state;
    struct sb b = { 0 };
    put_frame(&b, WS_OP_TEXT, MASK_A, "Hel", 3);
    put_frame(&b, FIN | WS_OP_PING, MASK_B, "ping!", 5);
    put_frame(&b, WS_OP_CONTINUATION, MASK_A, "l", 1);
    put_frame(&b, FIN | WS_OP_PONG, MASK_B, "", 0);
    put_frame(&b, FIN | WS_OP_CLOSE, MASK_A, "\x03\xe8" "bye", 5);
    put_frame(&b, FIN | WS_OP_CONTINUATION, MASK_B, "o", 1);
    struct sim s;
    sim_run(&s, b.p, b.len, 0, true);
    assert_int_equal(s.rc, WS_NEED_MORE);
    assert_int_equal(s.nmsgs, 4);
    assert_msg(&s, 0, WS_OP_PING, "ping!", 5);
    assert_msg(&s, 1, WS_OP_PONG, "", 0);
    assert_msg(&s, 2, WS_OP_CLOSE, "\x03\xe8" "bye", 5);
    assert_msg(&s, 3, WS_OP_TEXT, "Hello", 5);
    sim_free(&s);
    sb_free(&b);
}

static void test_ws_chunk_flags_for_fragmented_binary(void **state)
{
    (void)state;
    struct sb b = { 0 };
    put_frame(&b, WS_OP_BINARY, MASK_A, "\x00\x01", 2);
    put_frame(&b, FIN | WS_OP_CONTINUATION, MASK_B, "\x02", 1);
    struct guard g;
    guard_init(&g, b.len);
    uint8_t *buf = guard_place(&g, b.p, b.len);
    struct ws_decoder d;
    ws_decoder_init(&d, 0, true);
    size_t used;
    struct ws_chunk c;
    assert_int_equal(ws_decode(&d, buf, b.len, &used, &c), WS_CHUNK);
    assert_int_equal(used, 8);
    assert_int_equal(c.opcode, WS_OP_BINARY);
    assert_true(c.frame_start && c.frame_end && !c.message_end);
    assert_memory_equal(c.data, "\x00\x01", 2);
    assert_int_equal(ws_decode(&d, buf + 8, b.len - 8, &used, &c), WS_CHUNK);
    assert_int_equal(used, 7);
    assert_int_equal(c.opcode, WS_OP_BINARY);   /* message's opcode */
    assert_true(c.frame_start && c.frame_end && c.message_end);
    assert_memory_equal(c.data, "\x02", 1);
    guard_free(&g);
    sb_free(&b);
}

static void test_ws_hands_out_partial_payload_in_chunks(void **state)
{
    (void)state;
    const char *text = "Hello, chunked world";
    size_t n = strlen(text);
    struct sb b = { 0 };
    put_frame(&b, FIN | WS_OP_TEXT, MASK_B, text, n);
    struct guard g;
    guard_init(&g, b.len);
    struct ws_decoder d;
    ws_decoder_init(&d, 0, true);
    size_t used;
    struct ws_chunk c;
    /* header + 3 payload bytes */
    uint8_t *buf = guard_place(&g, b.p, 9);
    assert_int_equal(ws_decode(&d, buf, 9, &used, &c), WS_CHUNK);
    assert_int_equal(used, 9);
    assert_int_equal(c.len, 3);
    assert_true(c.frame_start && !c.frame_end && !c.message_end);
    assert_int_equal(c.frame_len, n);
    assert_memory_equal(c.data, "Hel", 3);
    /* no bytes: need more */
    assert_int_equal(ws_decode(&d, buf + 9, 0, &used, &c), WS_NEED_MORE);
    /* the rest, with the mask offset carried over (3 mod 4) */
    buf = guard_place(&g, b.p + 9, b.len - 9);
    assert_int_equal(ws_decode(&d, buf, b.len - 9, &used, &c), WS_CHUNK);
    assert_int_equal(used, n - 3);
    assert_true(!c.frame_start && c.frame_end && c.message_end);
    assert_memory_equal(c.data, text + 3, n - 3);
    guard_free(&g);
    sb_free(&b);
}

/* ---- message size limit ------------------------------------------------ */

static void test_ws_rejects_single_frame_over_max_message(void **state)
{
    (void)state;
    uint8_t payload[101];
    memset(payload, 'x', sizeof payload);
    struct sb b = { 0 };
    put_frame(&b, FIN | WS_OP_BINARY, MASK_A, payload, 101);
    assert_int_equal(verdict(&b, 100), WS_ERR_TOO_BIG);
    /* Fails on the header, before the payload arrives. */
    size_t used;
    struct ws_chunk c;
    assert_int_equal(decode_once(b.p, 2, true, 100, &used, &c),
                     WS_ERR_TOO_BIG);
    sb_free(&b);
    /* Exactly max_message is allowed. */
    put_frame(&b, FIN | WS_OP_BINARY, MASK_A, payload, 100);
    assert_int_equal(verdict(&b, 100), WS_NEED_MORE);
    sb_free(&b);
    /* A huge declared 64-bit length. */
    uint8_t f[14] = { FIN | WS_OP_TEXT, 0x80 | 127,
                      0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4 };
    assert_int_equal(decode_once(f, sizeof f, true, 1 << 20, &used, &c),
                     WS_ERR_TOO_BIG);
}

static void test_ws_rejects_fragments_summing_over_max_message(void **state)
{
    (void)state;
    uint8_t payload[60];
    memset(payload, 'x', sizeof payload);
    struct sb b = { 0 };
    put_frame(&b, WS_OP_TEXT, MASK_A, payload, 40);
    put_frame(&b, FIN | WS_OP_PING, MASK_A, payload, 60); /* not counted */
    put_frame(&b, WS_OP_CONTINUATION, MASK_A, payload, 40);
    put_frame(&b, FIN | WS_OP_CONTINUATION, MASK_A, payload, 21);
    struct sim s;
    sim_run(&s, b.p, b.len, 100, true);
    assert_int_equal(s.rc, WS_ERR_TOO_BIG);
    assert_int_equal(s.nmsgs, 1);   /* the ping */
    sim_free(&s);
    /* 40 + 40 + 20 = 100 is fine, and the count restarts per message. */
    sb_free(&b);
    for (int rep = 0; rep < 3; rep++) {
        put_frame(&b, WS_OP_TEXT, MASK_A, payload, 40);
        put_frame(&b, WS_OP_CONTINUATION, MASK_A, payload, 40);
        put_frame(&b, FIN | WS_OP_CONTINUATION, MASK_A, payload, 20);
    }
    sim_run(&s, b.p, b.len, 100, true);
    assert_int_equal(s.rc, WS_NEED_MORE);
    assert_int_equal(s.nmsgs, 3);
    sim_free(&s);
    sb_free(&b);
}

static void test_ws_zero_max_message_means_no_limit(void **state)
{
    (void)state;
    uint8_t f[14] = { FIN | WS_OP_BINARY, 0x80 | 127,
                      0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 };
    size_t used;
    struct ws_chunk c;
    assert_int_equal(decode_once(f, sizeof f, true, 0, &used, &c), WS_CHUNK);
}

/* ---- UTF-8 in text messages -------------------------------------------- */

static void test_ws_rejects_invalid_utf8_text(void **state)
{
    (void)state;
    struct sb b = { 0 };
    put_frame(&b, FIN | WS_OP_TEXT, MASK_A, "ab\xc0\xaf", 4);
    assert_int_equal(verdict(&b, 0), WS_ERR_INVALID_UTF8);
    sb_free(&b);
    /* Binary messages are not checked. */
    put_frame(&b, FIN | WS_OP_BINARY, MASK_A, "ab\xc0\xaf", 4);
    assert_int_equal(verdict(&b, 0), WS_NEED_MORE);
    sb_free(&b);
}

static void test_ws_fails_fast_on_invalid_utf8_in_first_fragment(void **state)
{
    (void)state;
    struct sb b = { 0 };
    /* A non-final text frame with a surrogate; the message never ends. */
    put_frame(&b, WS_OP_TEXT, MASK_A, "ok\xed\xa0\x80", 5);
    assert_int_equal(verdict(&b, 0), WS_ERR_INVALID_UTF8);
    sb_free(&b);
    /* A final frame whose declared payload has not fully arrived yet:
     * invalid as soon as the bad byte is in. */
    uint8_t payload[100];
    memset(payload, 'a', sizeof payload);
    payload[3] = 0xff;
    put_frame(&b, FIN | WS_OP_TEXT, MASK_B, payload, sizeof payload);
    size_t used;
    struct ws_chunk c;
    assert_int_equal(decode_once(b.p, 6 + 3, true, 0, &used, &c),
                     WS_CHUNK);
    assert_int_equal(decode_once(b.p, 6 + 4, true, 0, &used, &c),
                     WS_ERR_INVALID_UTF8);
    sb_free(&b);
}

static void test_ws_accepts_code_point_split_across_fragments(void **state)
{
    (void)state;
    /* "κόσμε" split inside each multi-byte character in turn. */
    const char *k = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
    size_t n = strlen(k);
    for (size_t cut = 0; cut <= n; cut++) {
        struct sb b = { 0 };
        put_frame(&b, WS_OP_TEXT, MASK_A, k, cut);
        put_frame(&b, FIN | WS_OP_PING, MASK_B, "", 0);
        put_frame(&b, FIN | WS_OP_CONTINUATION, MASK_B, k + cut, n - cut);
        struct sim s;
        sim_run(&s, b.p, b.len, 0, true);
        assert_int_equal(s.rc, WS_NEED_MORE);
        assert_int_equal(s.nmsgs, 2);
        assert_msg(&s, 1, WS_OP_TEXT, k, n);
        sim_free(&s);
        sb_free(&b);
    }
    /* A 4-byte character split over three fragments. */
    struct sb b = { 0 };
    put_frame(&b, WS_OP_TEXT, MASK_A, "\xf0", 1);
    put_frame(&b, WS_OP_CONTINUATION, MASK_A, "\x9f\x98", 2);
    put_frame(&b, FIN | WS_OP_CONTINUATION, MASK_A, "\x80", 1);
    assert_int_equal(verdict(&b, 0), WS_NEED_MORE);
    sb_free(&b);
}

static void test_ws_rejects_text_ending_in_partial_code_point(void **state)
{
    (void)state;
    struct sb b = { 0 };
    put_frame(&b, FIN | WS_OP_TEXT, MASK_A, "ab\xe2\x82", 4);
    assert_int_equal(verdict(&b, 0), WS_ERR_INVALID_UTF8);
    sb_free(&b);
    /* ... also when the partial character is completed by nothing: an
     * empty final continuation. */
    put_frame(&b, WS_OP_TEXT, MASK_A, "ab\xe2\x82", 4);
    put_frame(&b, FIN | WS_OP_CONTINUATION, MASK_A, "", 0);
    assert_int_equal(verdict(&b, 0), WS_ERR_INVALID_UTF8);
    sb_free(&b);
}

static void test_ws_utf8_state_resets_between_messages(void **state)
{
    (void)state;
    /* Binary message ending in a lead byte does not poison the next text. */
    struct sb b = { 0 };
    put_frame(&b, FIN | WS_OP_BINARY, MASK_A, "\xe2", 1);
    put_frame(&b, FIN | WS_OP_TEXT, MASK_A, "ok", 2);
    put_frame(&b, FIN | WS_OP_TEXT, MASK_A, "\xc3\xa9", 2);
    assert_int_equal(verdict(&b, 0), WS_NEED_MORE);
    sb_free(&b);
}

/* ---- close frames ------------------------------------------------------ */

static enum ws_rc close_frame_verdict(const void *payload, size_t len)
{
    struct sb b = { 0 };
    put_frame(&b, FIN | WS_OP_CLOSE, MASK_A, payload, len);
    enum ws_rc rc = verdict(&b, 0);
    sb_free(&b);
    return rc;
}

static void test_ws_close_empty_payload_is_1005(void **state)
{
    (void)state;
    uint16_t code = 0;
    const uint8_t *reason;
    size_t rlen = 99;
    assert_int_equal(ws_close_parse((const uint8_t *)"", 0, &code, &reason,
                                    &rlen), WS_CHUNK);
    assert_int_equal(code, 1005);
    assert_int_equal(rlen, 0);
    assert_int_equal(close_frame_verdict("", 0), WS_NEED_MORE);
}

static void test_ws_close_one_byte_payload_is_protocol_error(void **state)
{
    (void)state;
    uint16_t code;
    const uint8_t *reason;
    size_t rlen;
    assert_int_equal(ws_close_parse((const uint8_t *)"\x03", 1, &code,
                                    &reason, &rlen), WS_ERR_PROTOCOL);
    assert_int_equal(close_frame_verdict("\x03", 1), WS_ERR_PROTOCOL);
}

static void test_ws_close_rejects_invalid_codes(void **state)
{
    (void)state;
    const unsigned bad[] = { 0, 999, 1004, 1005, 1006, 1015, 1016, 1100,
                             2000, 2999, 5000, 65535 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t p[2] = { (uint8_t)(bad[i] >> 8), (uint8_t)bad[i] };
        uint16_t code;
        const uint8_t *reason;
        size_t rlen;
        assert_false(ws_close_code_valid(bad[i]));
        assert_int_equal(ws_close_parse(p, 2, &code, &reason, &rlen),
                         WS_ERR_PROTOCOL);
        assert_int_equal(close_frame_verdict(p, 2), WS_ERR_PROTOCOL);
    }
}

static void test_ws_close_accepts_valid_codes(void **state)
{
    (void)state;
    const unsigned good[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                              1011, 1012, 1013, 1014, 3000, 3999, 4000,
                              4999 };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint8_t p[7] = { (uint8_t)(good[i] >> 8), (uint8_t)good[i],
                         'b', 'y', 'e', 0xc3, 0xa9 };
        uint16_t code = 0;
        const uint8_t *reason = NULL;
        size_t rlen = 0;
        assert_true(ws_close_code_valid(good[i]));
        assert_int_equal(ws_close_parse(p, 7, &code, &reason, &rlen),
                         WS_CHUNK);
        assert_int_equal(code, good[i]);
        assert_ptr_equal(reason, p + 2);
        assert_int_equal(rlen, 5);
        assert_int_equal(close_frame_verdict(p, 2), WS_NEED_MORE);
        assert_int_equal(close_frame_verdict(p, 7), WS_NEED_MORE);
    }
}

static void test_ws_close_rejects_non_utf8_reason(void **state)
{
    (void)state;
    uint16_t code;
    const uint8_t *reason;
    size_t rlen;
    const uint8_t p[] = { 0x03, 0xe8, 'o', 'k', 0xff };
    assert_int_equal(ws_close_parse(p, sizeof p, &code, &reason, &rlen),
                     WS_ERR_INVALID_UTF8);
    assert_int_equal(close_frame_verdict(p, sizeof p), WS_ERR_INVALID_UTF8);
    /* A truncated character at the end is invalid too. */
    const uint8_t q[] = { 0x03, 0xe8, 'o', 'k', 0xe2, 0x82 };
    assert_int_equal(close_frame_verdict(q, sizeof q), WS_ERR_INVALID_UTF8);
}

static void test_ws_rc_maps_to_close_codes(void **state)
{
    (void)state;
    assert_int_equal(ws_rc_close_code(WS_ERR_PROTOCOL), 1002);
    assert_int_equal(ws_rc_close_code(WS_ERR_INVALID_UTF8), 1007);
    assert_int_equal(ws_rc_close_code(WS_ERR_TOO_BIG), 1009);
}

static void test_ws_close_build_writes_code_and_reason(void **state)
{
    (void)state;
    uint8_t out[WS_MAX_CONTROL];
    size_t n = ws_close_build(out, 1001, "going", 5);
    assert_int_equal(n, 7);
    assert_memory_equal(out, "\x03\xe9going", 7);
    n = ws_close_build(out, 4999, NULL, 0);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "\x13\x87", 2);
}

static void check_close_build(const char *reason, size_t len, size_t want)
{
    uint8_t out[WS_MAX_CONTROL + 16];
    memset(out, 0xee, sizeof out);
    size_t n = ws_close_build(out, 1000, reason, len);
    assert_int_equal(n, 2 + want);
    assert_true(n <= WS_MAX_CONTROL);
    assert_memory_equal(out + 2, reason, want);
    for (size_t i = n; i < sizeof out; i++)
        assert_int_equal(out[i], 0xee);   /* nothing written past */
    uint16_t code;
    const uint8_t *r;
    size_t rlen;
    assert_int_equal(ws_close_parse(out, n, &code, &r, &rlen), WS_CHUNK);
    assert_int_equal(code, 1000);
    assert_int_equal(rlen, want);
}

static void test_ws_close_build_truncates_at_character_boundary(void **state)
{
    (void)state;
    char buf[400];
    memset(buf, 'a', sizeof buf);
    check_close_build(buf, 123, 123);           /* fits exactly */
    check_close_build(buf, 124, 123);           /* ASCII: cut at 123 */
    check_close_build(buf, 400, 123);
    /* "é" x 100: byte 123 is a continuation byte, so cut to 122. */
    for (int i = 0; i < 100; i++)
        memcpy(buf + 2 * i, "\xc3\xa9", 2);
    check_close_build(buf, 200, 122);
    /* "a" + "é" x 100: byte 123 starts a character: cut at 123. */
    buf[0] = 'a';
    for (int i = 0; i < 100; i++)
        memcpy(buf + 1 + 2 * i, "\xc3\xa9", 2);
    check_close_build(buf, 201, 123);
    /* 4-byte characters: 123 = 4 * 30 + 3, cut back to 120. */
    for (int i = 0; i < 40; i++)
        memcpy(buf + 4 * i, "\xf0\x9f\x98\x80", 4);
    check_close_build(buf, 160, 120);
    /* 3-byte characters: 123 = 3 * 41, a boundary. */
    for (int i = 0; i < 50; i++)
        memcpy(buf + 3 * i, "\xe2\x82\xac", 3);
    check_close_build(buf, 150, 123);
    check_close_build(buf, 124, 123);
    /* "ab" + 3-byte chars: 123 = 2 + 3 * 40 + 1: cut to 122. */
    memcpy(buf, "ab", 2);
    for (int i = 0; i < 50; i++)
        memcpy(buf + 2 + 3 * i, "\xe2\x82\xac", 3);
    check_close_build(buf, 152, 122);
}

/* ---- encoder ----------------------------------------------------------- */

static void test_ws_encode_header_sizes_and_bytes(void **state)
{
    (void)state;
    uint8_t h[WS_MAX_HEADER];
    assert_int_equal(ws_encode_header(h, WS_OP_TEXT, true, 0), 2);
    assert_memory_equal(h, "\x81\x00", 2);
    assert_int_equal(ws_encode_header(h, WS_OP_TEXT, true, 125), 2);
    assert_memory_equal(h, "\x81\x7d", 2);
    assert_int_equal(ws_encode_header(h, WS_OP_BINARY, false, 126), 4);
    assert_memory_equal(h, "\x02\x7e\x00\x7e", 4);
    assert_int_equal(ws_encode_header(h, WS_OP_BINARY, true, 65535), 4);
    assert_memory_equal(h, "\x82\x7e\xff\xff", 4);
    assert_int_equal(ws_encode_header(h, WS_OP_BINARY, true, 65536), 10);
    assert_memory_equal(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    assert_int_equal(ws_encode_header(h, WS_OP_CONTINUATION, true,
                                      0x0123456789abcdefull), 10);
    assert_memory_equal(h, "\x80\x7f\x01\x23\x45\x67\x89\xab\xcd\xef", 10);
    assert_int_equal(ws_encode_header(h, WS_OP_CLOSE, true, 2), 2);
    assert_memory_equal(h, "\x88\x02", 2);
}

static void test_ws_encode_header_round_trips_unmasked(void **state)
{
    (void)state;
    const uint64_t lens[] = { 0, 1, 125, 126, 127, 65535, 65536, 65537,
                              0xffffffffull, 0x100000000ull,
                              UINT64_MAX >> 1 };
    const enum ws_opcode ops[] = { WS_OP_TEXT, WS_OP_BINARY };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (size_t k = 0; k < 2; k++)
            for (int fin = 0; fin < 2; fin++) {
                uint8_t h[WS_MAX_HEADER];
                size_t n = ws_encode_header(h, ops[k], fin, lens[i]);
                assert_int_equal(n, lens[i] < 126 ? 2
                                    : lens[i] < 65536 ? 4 : 10);
                size_t used;
                struct ws_chunk c;
                /* one byte short: need more */
                assert_int_equal(decode_once(h, n - 1, false, 0, &used, &c),
                                 WS_NEED_MORE);
                assert_int_equal(decode_once(h, n, false, 0, &used, &c),
                                 WS_CHUNK);
                assert_int_equal(used, n);
                assert_int_equal(c.opcode, ops[k]);
                assert_int_equal(c.frame_len, lens[i]);
                assert_true(c.frame_start);
                assert_int_equal(c.frame_end, lens[i] == 0);
                assert_int_equal(c.message_end, lens[i] == 0 && fin);
            }
    /* Control frames round-trip whole. */
    const enum ws_opcode cops[] = { WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE };
    for (size_t k = 0; k < 3; k++) {
        uint8_t f[WS_MAX_HEADER + 125];
        size_t n = ws_encode_header(f, cops[k], true, 125);
        memset(f + n, 'z', 125);
        f[n] = 0x03;
        f[n + 1] = 0xe8;
        size_t used;
        struct ws_chunk c;
        assert_int_equal(decode_once(f, n + 125, false, 0, &used, &c),
                         WS_CHUNK);
        assert_int_equal(used, n + 125);
        assert_int_equal(c.opcode, cops[k]);
        assert_int_equal(c.len, 125);
    }
}

static void test_ws_encode_header_masked_round_trips(void **state)
{
    (void)state;
    const size_t lens[] = { 0, 1, 5, 125, 126, 1000, 65535, 65536, 70001 };
    uint8_t *payload = malloc(70001);
    uint8_t *frame = malloc(70001 + WS_MAX_HEADER);
    assert_non_null(payload);
    assert_non_null(frame);
    for (size_t i = 0; i < 70001; i++)
        payload[i] = (uint8_t)(i ^ (i >> 8));
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t n = ws_encode_header_masked(frame, WS_OP_BINARY, true,
                                           lens[i], MASK_B);
        assert_int_equal(n, lens[i] < 126 ? 6 : lens[i] < 65536 ? 8 : 14);
        assert_memory_equal(frame + n - 4, MASK_B, 4);
        assert_int_equal(frame[1] & 0x80, 0x80);
        for (size_t k = 0; k < lens[i]; k++)
            frame[n + k] = payload[k] ^ MASK_B[k & 3];
        struct sim s;
        sim_run(&s, frame, n + lens[i], 0, true);
        assert_int_equal(s.rc, WS_NEED_MORE);
        assert_int_equal(s.nmsgs, 1);
        assert_msg(&s, 0, WS_OP_BINARY, payload, lens[i]);
        sim_free(&s);
    }
    /* Masked text and close. */
    size_t n = ws_encode_header_masked(frame, WS_OP_CLOSE, true, 4, MASK_A);
    memcpy(frame + n, "\x03\xe8ok", 4);
    ws_unmask(frame + n, 4, MASK_A, 0);
    struct sim s;
    sim_run(&s, frame, n + 4, 0, true);
    assert_int_equal(s.nmsgs, 1);
    assert_msg(&s, 0, WS_OP_CLOSE, "\x03\xe8ok", 4);
    sim_free(&s);
    free(payload);
    free(frame);
}

/* ---- unmasking --------------------------------------------------------- */

static void test_ws_unmask_matches_bytewise_reference(void **state)
{
    (void)state;
    struct guard g;
    guard_init(&g, 64);
    uint8_t src[48], want[48];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(i * 37 + 11);
    for (size_t offset = 0; offset < 4; offset++)
        for (size_t len = 0; len <= 40; len++)
            for (size_t mis = 0; mis < 8; mis++) {
                /* Data ends at the guard page; `mis` varies alignment of
                 * the start via the length of a leading pad. */
                uint8_t tmp[48];
                memset(tmp, 0x5a, mis);
                memcpy(tmp + mis, src, len);
                uint8_t *p = guard_place(&g, tmp, mis + len) + mis;
                for (size_t i = 0; i < len; i++)
                    want[i] = src[i] ^ MASK_B[(offset + i) & 3];
                ws_unmask(p, len, MASK_B, offset);
                assert_memory_equal(p, want, len);
                for (size_t i = 0; i < mis; i++)
                    assert_int_equal(p[(ptrdiff_t)i - (ptrdiff_t)mis], 0x5a);
            }
    guard_free(&g);
}

static void test_ws_unmask_offsets_above_three_wrap(void **state)
{
    (void)state;
    uint8_t a[20], b[20];
    for (size_t i = 0; i < 20; i++)
        a[i] = b[i] = (uint8_t)i;
    ws_unmask(a, 20, MASK_A, 1);
    ws_unmask(b, 20, MASK_A, 5);
    assert_memory_equal(a, b, 20);
    /* unmask twice = identity */
    ws_unmask(a, 20, MASK_A, 1);
    for (size_t i = 0; i < 20; i++)
        assert_int_equal(a[i], i);
    /* zero mask = identity */
    ws_unmask(b, 20, MASK_0, 2);
    ws_unmask(b, 20, MASK_A, 1);
    for (size_t i = 0; i < 20; i++)
        assert_int_equal(b[i], i);
}

static void test_ws_payload_unmasked_across_calls_at_every_offset(void **state)
{
    (void)state;
    /* Feeding the payload in pieces of every size 1..9 keeps the mask
     * phase right. */
    uint8_t payload[50];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)('A' + i % 26);
    struct sb b = { 0 };
    put_frame(&b, FIN | WS_OP_BINARY, MASK_B, payload, sizeof payload);
    for (size_t step = 1; step <= 9; step++) {
        struct sim s;
        sim_init(&s, b.len, 0, true);
        sim_push(&s, b.p, 6);   /* the header */
        for (size_t at = 6; at < b.len; at += step)
            sim_push(&s, b.p + at, at + step <= b.len ? step : b.len - at);
        assert_int_equal(s.rc, WS_NEED_MORE);
        assert_int_equal(s.nmsgs, 1);
        assert_msg(&s, 0, WS_OP_BINARY, payload, sizeof payload);
        sim_free(&s);
    }
    sb_free(&b);
}

/* ---- RFC 6455 section 5.7 examples ------------------------------------- */

static void test_ws_rfc_example_unmasked_hello(void **state)
{
    (void)state;
    const uint8_t f[] = { 0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
    struct sim s;
    sim_run(&s, f, sizeof f, 0, false);
    assert_int_equal(s.rc, WS_NEED_MORE);
    assert_int_equal(s.nmsgs, 1);
    assert_msg(&s, 0, WS_OP_TEXT, "Hello", 5);
    sim_free(&s);
    /* A server refuses it: it is unmasked. */
    sim_run(&s, f, sizeof f, 0, true);
    assert_int_equal(s.rc, WS_ERR_PROTOCOL);
    sim_free(&s);
    uint8_t h[WS_MAX_HEADER];
    assert_int_equal(ws_encode_header(h, WS_OP_TEXT, true, 5), 2);
    assert_memory_equal(h, f, 2);
}

static void test_ws_rfc_example_masked_hello(void **state)
{
    (void)state;
    const uint8_t f[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f,
                          0x4d, 0x51, 0x58 };
    struct sim s;
    sim_run(&s, f, sizeof f, 0, true);
    assert_int_equal(s.rc, WS_NEED_MORE);
    assert_int_equal(s.nmsgs, 1);
    assert_msg(&s, 0, WS_OP_TEXT, "Hello", 5);
    sim_free(&s);
    uint8_t h[WS_MAX_HEADER];
    assert_int_equal(ws_encode_header_masked(h, WS_OP_TEXT, true, 5, MASK_A),
                     6);
    assert_memory_equal(h, f, 6);
}

static void test_ws_rfc_example_fragmented_hello(void **state)
{
    (void)state;
    const uint8_t f[] = { 0x01, 0x03, 0x48, 0x65, 0x6c,
                          0x80, 0x02, 0x6c, 0x6f };
    struct sim s;
    sim_run(&s, f, sizeof f, 0, false);
    assert_int_equal(s.rc, WS_NEED_MORE);
    assert_int_equal(s.nmsgs, 1);
    assert_msg(&s, 0, WS_OP_TEXT, "Hello", 5);
    sim_free(&s);
}

static void test_ws_rfc_example_ping_and_masked_pong(void **state)
{
    (void)state;
    const uint8_t ping[] = { 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
    struct sim s;
    sim_run(&s, ping, sizeof ping, 0, false);
    assert_int_equal(s.nmsgs, 1);
    assert_msg(&s, 0, WS_OP_PING, "Hello", 5);
    sim_free(&s);
    const uint8_t pong[] = { 0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f,
                             0x4d, 0x51, 0x58 };
    sim_run(&s, pong, sizeof pong, 0, true);
    assert_int_equal(s.nmsgs, 1);
    assert_msg(&s, 0, WS_OP_PONG, "Hello", 5);
    sim_free(&s);
}

static void test_ws_rfc_example_256_byte_and_64k_binary(void **state)
{
    (void)state;
    uint8_t h[WS_MAX_HEADER];
    assert_int_equal(ws_encode_header(h, WS_OP_BINARY, true, 256), 4);
    assert_memory_equal(h, "\x82\x7e\x01\x00", 4);
    assert_int_equal(ws_encode_header(h, WS_OP_BINARY, true, 65536), 10);
    assert_memory_equal(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);

    const size_t sizes[] = { 256, 65536 };
    for (size_t k = 0; k < 2; k++) {
        size_t n = sizes[k];
        uint8_t *f = malloc(n + 10), *payload = malloc(n);
        assert_non_null(f);
        assert_non_null(payload);
        for (size_t i = 0; i < n; i++)
            payload[i] = (uint8_t)(i * 13);
        size_t hl = ws_encode_header(f, WS_OP_BINARY, true, n);
        memcpy(f + hl, payload, n);
        struct sim s;
        sim_run(&s, f, hl + n, 0, false);
        assert_int_equal(s.rc, WS_NEED_MORE);
        assert_int_equal(s.nmsgs, 1);
        assert_msg(&s, 0, WS_OP_BINARY, payload, n);
        sim_free(&s);
        free(f);
        free(payload);
    }
}

/* ---- split feeding ----------------------------------------------------- */

struct stream {
    struct sb b;
    uint64_t max_message;
    bool require_mask;
};

/* Builds the valid streams (and a few erroneous ones) used for the
 * split-equivalence tests. */
static size_t build_streams(struct stream *st, size_t cap)
{
    size_t n = 0;
    uint8_t big[300];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 31);
    memset(st, 0, cap * sizeof *st);
    for (size_t i = 0; i < cap; i++)
        st[i].require_mask = true;

#define NEXT (&st[n++].b)
    /* 0: RFC masked Hello */
    put_frame(NEXT, FIN | WS_OP_TEXT, MASK_A, "Hello", 5);
    /* 1: fragmented text with interleaved controls and a split κόσμε */
    {
        struct sb *b = NEXT;
        put_frame(b, WS_OP_TEXT, MASK_A, "\xce\xba\xe1\xbd", 4);
        put_frame(b, FIN | WS_OP_PING, MASK_B, "are you there", 13);
        put_frame(b, WS_OP_CONTINUATION, MASK_B, "\xb9\xcf\x83\xce", 4);
        put_frame(b, FIN | WS_OP_PONG, MASK_A, "", 0);
        put_frame(b, FIN | WS_OP_CONTINUATION, MASK_A, "\xbc\xce\xb5", 3);
        put_frame(b, FIN | WS_OP_CLOSE, MASK_B, "\x03\xe8" "done", 6);
    }
    /* 2: 16-bit length binary + text messages back to back */
    {
        struct sb *b = NEXT;
        put_frame(b, FIN | WS_OP_BINARY, MASK_B, big, 300);
        put_frame(b, FIN | WS_OP_TEXT, MASK_A, "", 0);
        put_frame(b, FIN | WS_OP_TEXT, MASK_B, "\xf0\x9f\x98\x80!", 5);
        put_frame(b, WS_OP_BINARY, MASK_A, "", 0);
        put_frame(b, WS_OP_CONTINUATION, MASK_A, big, 126);
        put_frame(b, FIN | WS_OP_CONTINUATION, MASK_B, big, 125);
    }
    /* 3: the close codes and a truncated-at-end frame */
    {
        struct sb *b = NEXT;
        put_frame(b, FIN | WS_OP_CLOSE, MASK_A, "", 0);
        put_frame(b, FIN | WS_OP_CLOSE, MASK_A, "\x0f\xa0", 2);
        put_frame(b, FIN | WS_OP_TEXT, MASK_A, "tail", 4);
        b->len -= 2;    /* ends inside the payload */
    }
    /* 4: ends inside a header */
    {
        struct sb *b = NEXT;
        put_frame(b, FIN | WS_OP_BINARY, MASK_B, "abc", 3);
        put_frame(b, WS_OP_TEXT, MASK_B, "\xe2\x82", 2);
        put_frame(b, FIN | WS_OP_CONTINUATION, MASK_A, "\xac", 1);
        uint8_t h[8] = { FIN | WS_OP_BINARY, 0x80 | 126, 0x01, 0x00, 1, 2 };
        sb_put(b, h, 6);
    }
    /* 5: RFC unmasked examples for a client decoder */
    {
        struct sb *b = NEXT;
        static const uint8_t f[] = {
            0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f,
            0x01, 0x03, 0x48, 0x65, 0x6c,
            0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f,
            0x80, 0x02, 0x6c, 0x6f,
        };
        sb_put(b, f, sizeof f);
        st[n - 1].require_mask = false;
    }
    /* 6: invalid UTF-8 in a later fragment (error path) */
    {
        struct sb *b = NEXT;
        put_frame(b, FIN | WS_OP_TEXT, MASK_A, "first", 5);
        put_frame(b, WS_OP_TEXT, MASK_A, "ok", 2);
        put_frame(b, FIN | WS_OP_CONTINUATION, MASK_B, "x\xed\xa0\x80yz", 6);
        put_frame(b, FIN | WS_OP_TEXT, MASK_A, "never", 5);
    }
    /* 7: too big across fragments (error path) */
    {
        struct sb *b = NEXT;
        put_frame(b, FIN | WS_OP_BINARY, MASK_A, big, 200);
        put_frame(b, WS_OP_BINARY, MASK_A, big, 150);
        put_frame(b, FIN | WS_OP_CONTINUATION, MASK_A, big, 51);
        st[n - 1].max_message = 200;
    }
    /* 8: bad close code after a message (error path) */
    {
        struct sb *b = NEXT;
        put_frame(b, FIN | WS_OP_TEXT, MASK_B, "\xc3\xa9t\xc3\xa9", 5);
        put_frame(b, FIN | WS_OP_CLOSE, MASK_B, "\x03\xed", 2);
    }
    /* 9: 64-bit length frame */
    {
        uint8_t *p = calloc(1, 70000);
        assert_non_null(p);
        for (size_t i = 0; i < 70000; i++)
            p[i] = (uint8_t)(i % 251);
        put_frame(NEXT, FIN | WS_OP_BINARY, MASK_B, p, 70000);
        free(p);
    }
#undef NEXT
    assert_true(n <= cap);
    return n;
}

static void test_ws_split_feeding_gives_same_messages(void **state)
{
    (void)state;
    struct stream st[16];
    size_t n = build_streams(st, 16);
    for (size_t k = 0; k < n; k++) {
        const uint8_t *p = st[k].b.p;
        size_t len = st[k].b.len;
        struct sim whole;
        sim_run(&whole, p, len, st[k].max_message, st[k].require_mask);
        /* two pieces at every position (sampled for the 70 KB stream) */
        for (size_t cut = 0; cut <= len; cut++) {
            if (len > 4096 && cut > 64 && cut + 64 < len && cut % 997)
                continue;
            struct sim s;
            sim_run_cuts(&s, p, len, &cut, 1, st[k].max_message,
                         st[k].require_mask);
            assert_sims_equal(&whole, &s);
            sim_free(&s);
        }
        /* one byte at a time */
        struct sim s;
        sim_run_bytewise(&s, p, len, st[k].max_message, st[k].require_mask);
        assert_sims_equal(&whole, &s);
        sim_free(&s);
        sim_free(&whole);
        sb_free(&st[k].b);
    }
}

static void test_ws_split_streams_decode_to_expected_messages(void **state)
{
    (void)state;
    struct stream st[16];
    size_t n = build_streams(st, 16);
    struct sim s;

    sim_run(&s, st[1].b.p, st[1].b.len, 0, true);
    assert_int_equal(s.rc, WS_NEED_MORE);
    assert_int_equal(s.nmsgs, 4);
    assert_msg(&s, 0, WS_OP_PING, "are you there", 13);
    assert_msg(&s, 1, WS_OP_PONG, "", 0);
    assert_msg(&s, 2, WS_OP_TEXT,
               "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11);
    assert_msg(&s, 3, WS_OP_CLOSE, "\x03\xe8" "done", 6);
    sim_free(&s);

    sim_run(&s, st[3].b.p, st[3].b.len, 0, true);
    assert_int_equal(s.rc, WS_NEED_MORE);
    assert_int_equal(s.nmsgs, 2);
    assert_true(s.in_message);
    assert_int_equal(s.partial.len, 2);
    assert_memory_equal(s.partial.p, "ta", 2);
    sim_free(&s);

    sim_run(&s, st[4].b.p, st[4].b.len, 0, true);
    assert_int_equal(s.nmsgs, 2);
    assert_msg(&s, 1, WS_OP_TEXT, "\xe2\x82\xac", 3);
    assert_int_equal(s.pending.len, 6);
    sim_free(&s);

    sim_run(&s, st[6].b.p, st[6].b.len, 0, true);
    assert_int_equal(s.rc, WS_ERR_INVALID_UTF8);
    assert_int_equal(s.nmsgs, 1);
    sim_free(&s);

    sim_run(&s, st[7].b.p, st[7].b.len, 200, true);
    assert_int_equal(s.rc, WS_ERR_TOO_BIG);
    assert_int_equal(s.nmsgs, 1);
    sim_free(&s);

    sim_run(&s, st[8].b.p, st[8].b.len, 0, true);
    assert_int_equal(s.rc, WS_ERR_PROTOCOL);
    assert_int_equal(s.nmsgs, 1);
    sim_free(&s);

    for (size_t k = 0; k < n; k++)
        sb_free(&st[k].b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_decodes_7bit_lengths),
        cmocka_unit_test(test_ws_decodes_16bit_lengths),
        cmocka_unit_test(test_ws_decodes_64bit_lengths),
        cmocka_unit_test(test_ws_rejects_64bit_length_with_msb_set),
        cmocka_unit_test(test_ws_rejects_non_minimal_length_encoding),
        cmocka_unit_test(test_ws_rejects_unmasked_frame),
        cmocka_unit_test(test_ws_client_decoder_rejects_masked_frame),
        cmocka_unit_test(test_ws_rejects_rsv_bits),
        cmocka_unit_test(test_ws_rejects_reserved_opcodes),
        cmocka_unit_test(test_ws_rejects_control_frame_over_125_bytes),
        cmocka_unit_test(test_ws_rejects_fragmented_control_frame),
        cmocka_unit_test(test_ws_returns_control_frame_whole),
        cmocka_unit_test(test_ws_rejects_continuation_without_start),
        cmocka_unit_test(test_ws_rejects_new_message_inside_fragmented_message),
        cmocka_unit_test(test_ws_control_frames_interleave_between_fragments),
        cmocka_unit_test(test_ws_chunk_flags_for_fragmented_binary),
        cmocka_unit_test(test_ws_hands_out_partial_payload_in_chunks),
        cmocka_unit_test(test_ws_rejects_single_frame_over_max_message),
        cmocka_unit_test(test_ws_rejects_fragments_summing_over_max_message),
        cmocka_unit_test(test_ws_zero_max_message_means_no_limit),
        cmocka_unit_test(test_ws_rejects_invalid_utf8_text),
        cmocka_unit_test(test_ws_fails_fast_on_invalid_utf8_in_first_fragment),
        cmocka_unit_test(test_ws_accepts_code_point_split_across_fragments),
        cmocka_unit_test(test_ws_rejects_text_ending_in_partial_code_point),
        cmocka_unit_test(test_ws_utf8_state_resets_between_messages),
        cmocka_unit_test(test_ws_close_empty_payload_is_1005),
        cmocka_unit_test(test_ws_close_one_byte_payload_is_protocol_error),
        cmocka_unit_test(test_ws_close_rejects_invalid_codes),
        cmocka_unit_test(test_ws_close_accepts_valid_codes),
        cmocka_unit_test(test_ws_close_rejects_non_utf8_reason),
        cmocka_unit_test(test_ws_rc_maps_to_close_codes),
        cmocka_unit_test(test_ws_close_build_writes_code_and_reason),
        cmocka_unit_test(test_ws_close_build_truncates_at_character_boundary),
        cmocka_unit_test(test_ws_encode_header_sizes_and_bytes),
        cmocka_unit_test(test_ws_encode_header_round_trips_unmasked),
        cmocka_unit_test(test_ws_encode_header_masked_round_trips),
        cmocka_unit_test(test_ws_unmask_matches_bytewise_reference),
        cmocka_unit_test(test_ws_unmask_offsets_above_three_wrap),
        cmocka_unit_test(test_ws_payload_unmasked_across_calls_at_every_offset),
        cmocka_unit_test(test_ws_rfc_example_unmasked_hello),
        cmocka_unit_test(test_ws_rfc_example_masked_hello),
        cmocka_unit_test(test_ws_rfc_example_fragmented_hello),
        cmocka_unit_test(test_ws_rfc_example_ping_and_masked_pong),
        cmocka_unit_test(test_ws_rfc_example_256_byte_and_64k_binary),
        cmocka_unit_test(test_ws_split_feeding_gives_same_messages),
        cmocka_unit_test(test_ws_split_streams_decode_to_expected_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
