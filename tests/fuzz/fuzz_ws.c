/*
 * fuzz_ws.c - libFuzzer target for the frame decoder (src/ws.c).
 *
 * Input layout: byte 0 picks the split point, byte 1 picks the decoder
 * settings, the rest is the byte stream a client sent.
 *   byte 1 bit 0: 0 = server decoder (require_mask), 1 = client decoder
 *   byte 1 bits 1-2: max_message = 1 MiB, 0 (no limit), 100, 125
 *
 * The stream is fed the way the daemon's caller does it (keep unconsumed
 * bytes on WS_NEED_MORE, stop at the first error, accumulate data chunks
 * into messages), three times: whole, in two pieces, one byte at a time.
 * All three must produce the same messages, the same final verdict and the
 * same leftover.  Every chunk is checked against the header's contract,
 * every completed text message must be valid UTF-8, every close payload
 * must parse.  Any mismatch aborts.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Iinclude \
 *       tests/fuzz/fuzz_ws.c src/ws.c src/utf8.c -o /tmp/fuzz_ws
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

struct bytes {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct bytes *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        CHECK(b->p);
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len += n;
}

struct run {
    struct ws_decoder d;
    uint64_t max_message;
    enum ws_rc rc;          /* first error, or WS_NEED_MORE */
    struct bytes log;       /* op, 8-byte length, data, for each message */
    struct bytes msg;       /* the message being assembled */
    bool in_message;
    uint8_t msg_op;
    struct bytes pending;   /* bytes kept by the caller */
};

static void run_init(struct run *r, uint64_t max_message, bool require_mask)
{
    memset(r, 0, sizeof *r);
    r->rc = WS_NEED_MORE;
    r->max_message = max_message;
    ws_decoder_init(&r->d, max_message, require_mask);
}

static void run_free(struct run *r)
{
    free(r->log.p);
    free(r->msg.p);
    free(r->pending.p);
}

static void log_message(struct run *r, uint8_t op, const uint8_t *p,
                        size_t n)
{
    uint8_t hdr[9];
    hdr[0] = op;
    for (int i = 0; i < 8; i++)
        hdr[1 + i] = (uint8_t)((uint64_t)n >> (8 * i));
    put(&r->log, hdr, sizeof hdr);
    put(&r->log, p, n);
}

static void push(struct run *r, const uint8_t *p, size_t n)
{
    if (r->rc != WS_NEED_MORE)
        return;
    put(&r->pending, p, n);
    for (;;) {
        size_t len = r->pending.len, used = (size_t)-1;
        struct ws_chunk c;
        /* An exactly sized heap copy: ASan flags any over-read. */
        uint8_t *buf = malloc(len ? len : 1);
        CHECK(buf);
        if (len)
            memcpy(buf, r->pending.p, len);
        enum ws_rc rc = ws_decode(&r->d, buf, len, &used, &c);
        if (rc == WS_NEED_MORE) {
            CHECK(used == 0);
            free(buf);
            return;
        }
        if (rc != WS_CHUNK) {
            CHECK(rc == WS_ERR_PROTOCOL || rc == WS_ERR_INVALID_UTF8 ||
                  rc == WS_ERR_TOO_BIG);
            CHECK(ws_rc_close_code(rc) == 1002 || ws_rc_close_code(rc) == 1007
                  || ws_rc_close_code(rc) == 1009);
            r->rc = rc;
            free(buf);
            return;
        }
        CHECK(used > 0 && used <= len);
        CHECK(c.len <= used);
        if (c.len)
            CHECK(c.data >= buf && c.data + c.len <= buf + used);
        CHECK(c.len <= c.frame_len);
        if (c.message_end)
            CHECK(c.frame_end);
        if (c.opcode & 0x8) {
            CHECK(c.opcode == WS_OP_CLOSE || c.opcode == WS_OP_PING ||
                  c.opcode == WS_OP_PONG);
            CHECK(c.frame_start && c.frame_end && c.message_end);
            CHECK(c.len == c.frame_len && c.len <= WS_MAX_CONTROL);
            if (c.opcode == WS_OP_CLOSE) {
                uint16_t code;
                const uint8_t *reason;
                size_t rlen;
                CHECK(ws_close_parse(c.data, c.len, &code, &reason, &rlen) ==
                      WS_CHUNK);
                CHECK(c.len == 0 || ws_close_code_valid(code));
                CHECK(utf8_valid(reason, rlen));
            }
            log_message(r, c.opcode, c.data, c.len);
        } else {
            CHECK(c.opcode == WS_OP_TEXT || c.opcode == WS_OP_BINARY);
            if (!r->in_message) {
                CHECK(c.frame_start);
                r->in_message = true;
                r->msg_op = c.opcode;
                r->msg.len = 0;
            }
            CHECK(c.opcode == r->msg_op);
            put(&r->msg, c.data, c.len);
            if (r->max_message)
                CHECK(r->msg.len <= r->max_message);
            if (r->msg_op == WS_OP_TEXT) {
                /* fail fast: what was handed out never is invalid */
                utf8_state s = 0;
                CHECK(utf8_feed(&s, r->msg.p, r->msg.len) != UTF8_INVALID);
            }
            if (c.message_end) {
                if (r->msg_op == WS_OP_TEXT)
                    CHECK(utf8_valid(r->msg.p, r->msg.len));
                log_message(r, r->msg_op, r->msg.p, r->msg.len);
                r->in_message = false;
                r->msg.len = 0;
            }
        }
        free(buf);
        memmove(r->pending.p, r->pending.p + used, len - used);
        r->pending.len = len - used;
    }
}

static void same(const struct run *a, const struct run *b)
{
    CHECK(a->rc == b->rc);
    CHECK(a->log.len == b->log.len);
    CHECK(a->log.len == 0 || memcmp(a->log.p, b->log.p, a->log.len) == 0);
    if (a->rc == WS_NEED_MORE) {
        CHECK(a->in_message == b->in_message);
        CHECK(a->msg.len == b->msg.len);
        CHECK(a->msg.len == 0 || memcmp(a->msg.p, b->msg.p, a->msg.len) == 0);
        CHECK(a->pending.len == b->pending.len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t limits[4] = { 1u << 20, 0, 100, 125 };
    if (size < 2)
        return 0;
    const uint8_t *p = data + 2;
    size_t n = size - 2;
    size_t split = ((size_t)data[0] * (n + 1)) >> 8;
    bool require_mask = !(data[1] & 1);
    uint64_t max_message = limits[(data[1] >> 1) & 3];

    struct run whole, two, bytewise;
    run_init(&whole, max_message, require_mask);
    push(&whole, p, n);

    run_init(&two, max_message, require_mask);
    push(&two, p, split);
    push(&two, p + split, n - split);
    same(&whole, &two);

    run_init(&bytewise, max_message, require_mask);
    for (size_t i = 0; i < n; i++)
        push(&bytewise, p + i, 1);
    same(&whole, &bytewise);

    run_free(&whole);
    run_free(&two);
    run_free(&bytewise);
    return 0;
}
