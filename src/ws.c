/*
 * ws.c - the RFC 6455 frame codec.
 *
 * Invariant: between calls the decoder is either between frames (in_frame
 * false) or inside a data frame's payload with `remaining` bytes to come.
 * Headers are never split across calls: the caller keeps a partial header
 * (at most 14 bytes) or a partial control frame (at most 139 bytes) and
 * presents it again with more bytes.
 */
#include "ws.h"

#include <string.h>

void ws_decoder_init(struct ws_decoder *d, uint64_t max_message,
                     bool require_mask)
{
    memset(d, 0, sizeof *d);
    d->max_message = max_message;
    d->require_mask = require_mask;
}

uint16_t ws_rc_close_code(enum ws_rc rc)
{
    switch (rc) {
    case WS_ERR_INVALID_UTF8: return WS_CLOSE_INVALID_PAYLOAD;
    case WS_ERR_TOO_BIG: return WS_CLOSE_MESSAGE_TOO_BIG;
    default: return WS_CLOSE_PROTOCOL_ERROR;
    }
}

/* 16-byte vectors (GCC and clang vector extensions): SSE2 on x86-64,
 * NEON on arm64, plain words elsewhere. */
typedef uint8_t v16 __attribute__((vector_size(16)));

void ws_unmask(uint8_t *p, size_t len, const uint8_t mask[4], size_t offset)
{
    uint8_t m[16];
    size_t i = 0;

    for (int k = 0; k < 16; k++)
        m[k] = mask[(offset + k) & 3];
    v16 vm;
    memcpy(&vm, m, 16);
    /* memcpy keeps the loads legal at any alignment; the compiler makes
     * them plain unaligned vector loads. */
    for (; i + 64 <= len; i += 64) {
        v16 a, b, c, d;
        memcpy(&a, p + i, 16);
        memcpy(&b, p + i + 16, 16);
        memcpy(&c, p + i + 32, 16);
        memcpy(&d, p + i + 48, 16);
        a ^= vm;
        b ^= vm;
        c ^= vm;
        d ^= vm;
        memcpy(p + i, &a, 16);
        memcpy(p + i + 16, &b, 16);
        memcpy(p + i + 32, &c, 16);
        memcpy(p + i + 48, &d, 16);
    }
    uint64_t w;
    memcpy(&w, m, 8);
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= w;
        memcpy(p + i, &v, 8);
    }
    for (; i < len; i++)
        p[i] ^= m[i & 7];
}

bool ws_close_code_valid(unsigned code)
{
    /* 1004-1006 and 1015 are reserved and must never be sent; 1012-1014
     * were registered with IANA after the RFC (restart, try again later,
     * bad gateway); 3000-4999 belong to libraries and applications. */
    if (code >= 1000 && code <= 1003)
        return true;
    if (code >= 1007 && code <= 1014)
        return true;
    return code >= 3000 && code <= 4999;
}

enum ws_rc ws_close_parse(const uint8_t *p, size_t len, uint16_t *code,
                          const uint8_t **reason, size_t *reason_len)
{
    *reason = p;
    *reason_len = 0;
    if (len == 0) {
        *code = WS_CLOSE_NO_STATUS;
        return WS_CHUNK;
    }
    if (len == 1)
        return WS_ERR_PROTOCOL;
    *code = (uint16_t)(p[0] << 8 | p[1]);
    if (!ws_close_code_valid(*code))
        return WS_ERR_PROTOCOL;
    if (!utf8_valid(p + 2, len - 2))
        return WS_ERR_INVALID_UTF8;
    *reason = p + 2;
    *reason_len = len - 2;
    return WS_CHUNK;
}

size_t ws_close_build(uint8_t out[WS_MAX_CONTROL], uint16_t code,
                      const char *reason, size_t reason_len)
{
    if (reason_len > WS_MAX_CONTROL - 2) {
        reason_len = WS_MAX_CONTROL - 2;
        /* Back up over continuation bytes so the cut stays valid UTF-8. */
        while (reason_len > 0 && ((uint8_t)reason[reason_len] & 0xc0) == 0x80)
            reason_len--;
    }
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (reason_len)
        memcpy(out + 2, reason, reason_len);
    return 2 + reason_len;
}

static size_t encode_length(uint8_t *out, uint8_t mask_bit, uint64_t len)
{
    if (len < 126) {
        out[1] = mask_bit | (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = mask_bit | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = mask_bit | 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

size_t ws_encode_header(uint8_t out[WS_MAX_HEADER], enum ws_opcode op,
                        bool fin, uint64_t len)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | op);
    return encode_length(out, 0, len);
}

size_t ws_encode_header_masked(uint8_t out[WS_MAX_HEADER], enum ws_opcode op,
                               bool fin, uint64_t len, const uint8_t mask[4])
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | op);
    size_t n = encode_length(out, 0x80, len);
    memcpy(out + n, mask, 4);
    return n + 4;
}

/* Hands out as much of the current data frame's payload as buf holds. */
static enum ws_rc decode_payload(struct ws_decoder *d, uint8_t *buf,
                                 size_t len, struct ws_chunk *out)
{
    size_t n = len < d->remaining ? len : (size_t)d->remaining;

    ws_unmask(buf, n, d->mask, d->mask_offset);
    d->mask_offset = (uint8_t)((d->mask_offset + n) & 3);
    d->remaining -= n;
    out->data = buf;
    out->len = n;
    out->opcode = d->message_opcode;
    out->frame_end = d->remaining == 0;
    out->message_end = out->frame_end && d->fin;
    out->frame_len = d->frame_len;
    if (d->message_opcode == WS_OP_TEXT) {
        enum utf8_rc u = utf8_feed(&d->utf8, buf, n);
        if (u == UTF8_INVALID || (out->message_end && u != UTF8_OK))
            return WS_ERR_INVALID_UTF8;
    }
    if (out->frame_end)
        d->in_frame = false;
    if (out->message_end)
        d->message_opcode = 0;
    return WS_CHUNK;
}

/* Checks a parsed header against the message state (sections 5.2-5.5). */
static enum ws_rc check_header(const struct ws_decoder *d, uint8_t b0,
                               bool masked, uint64_t plen)
{
    uint8_t op = b0 & 0x0f;
    bool fin = b0 & 0x80;

    if (b0 & 0x70)
        return WS_ERR_PROTOCOL;     /* no extension was negotiated */
    if (d->require_mask && !masked)
        return WS_ERR_PROTOCOL;
    if (!d->require_mask && masked)
        return WS_ERR_PROTOCOL;     /* servers never mask (5.1) */
    if (op & 0x8) {
        if (op > WS_OP_PONG || !fin || plen > WS_MAX_CONTROL)
            return WS_ERR_PROTOCOL;
        return WS_CHUNK;
    }
    if (op == WS_OP_CONTINUATION) {
        if (!d->message_opcode)
            return WS_ERR_PROTOCOL;
    } else if (op == WS_OP_TEXT || op == WS_OP_BINARY) {
        if (d->message_opcode)
            return WS_ERR_PROTOCOL;
    } else {
        return WS_ERR_PROTOCOL;
    }
    uint64_t so_far = op == WS_OP_CONTINUATION ? d->message_len : 0;
    if (d->max_message && plen > d->max_message - so_far)
        return WS_ERR_TOO_BIG;
    return WS_CHUNK;
}

enum ws_rc ws_decode(struct ws_decoder *d, uint8_t *buf, size_t len,
                     size_t *used, struct ws_chunk *out)
{
    *used = 0;
    memset(out, 0, sizeof *out);
    if (d->in_frame) {
        if (len == 0)
            return WS_NEED_MORE;
        enum ws_rc rc = decode_payload(d, buf, len, out);
        *used = out->len;
        return rc;
    }
    if (len < 2)
        return WS_NEED_MORE;

    uint8_t b0 = buf[0], b1 = buf[1];
    bool masked = b1 & 0x80;
    uint64_t plen = b1 & 0x7f;
    size_t hlen = 2;

    if (plen == 126) {
        if (len < 4)
            return WS_NEED_MORE;
        plen = (uint64_t)buf[2] << 8 | buf[3];
        if (plen < 126)
            return WS_ERR_PROTOCOL;  /* not the minimal encoding (5.2) */
        hlen = 4;
    } else if (plen == 127) {
        if (len < 10)
            return WS_NEED_MORE;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen << 8 | buf[2 + i];
        if (plen >> 63)
            return WS_ERR_PROTOCOL;  /* the most significant bit must be 0 */
        if (plen <= 0xffff)
            return WS_ERR_PROTOCOL;  /* not the minimal encoding (5.2) */
        hlen = 10;
    }
    /* Check before waiting for the mask so that a bad header fails as soon
     * as its first bytes are seen. */
    enum ws_rc rc = check_header(d, b0, masked, plen);
    if (rc != WS_CHUNK)
        return rc;
    if (masked)
        hlen += 4;
    if (len < hlen)
        return WS_NEED_MORE;

    uint8_t op = b0 & 0x0f;
    if (op & 0x8) {
        if (len - hlen < plen)
            return WS_NEED_MORE;
        uint8_t *p = buf + hlen;
        if (masked)
            ws_unmask(p, plen, buf + hlen - 4, 0);
        if (op == WS_OP_CLOSE) {
            uint16_t code;
            const uint8_t *reason;
            size_t reason_len;
            rc = ws_close_parse(p, plen, &code, &reason, &reason_len);
            if (rc != WS_CHUNK)
                return rc;
        }
        out->data = p;
        out->len = plen;
        out->opcode = op;
        out->frame_start = out->frame_end = out->message_end = true;
        out->frame_len = plen;
        *used = hlen + plen;
        return WS_CHUNK;
    }

    if (op != WS_OP_CONTINUATION) {
        d->message_opcode = op;
        d->message_len = 0;
        d->utf8 = 0;
    }
    d->message_len += plen;
    d->fin = b0 & 0x80;
    d->remaining = plen;
    d->frame_len = plen;
    d->in_frame = true;
    d->mask_offset = 0;
    if (masked)
        memcpy(d->mask, buf + hlen - 4, 4);
    else
        memset(d->mask, 0, 4);
    rc = decode_payload(d, buf + hlen, len - hlen, out);
    out->frame_start = true;
    *used = hlen + out->len;
    return rc;
}
