/*
 * ws.h - the RFC 6455 frame codec, sans I/O.
 *
 * The decoder takes bytes the caller owns and hands back frame payload in
 * place: it never allocates, never copies, and unmasks the payload inside
 * the caller's buffer a word at a time.  A data frame's payload is handed
 * out in chunks as it arrives, so UTF-8 is checked and limits are applied
 * before the frame is complete (RFC 6455 section 8.1, fail fast).  A
 * control frame (at most 125 bytes) is handed out whole.
 *
 * The decoder enforces all of RFC 6455 section 5: masking of client frames
 * (5.3), reserved bits and opcodes (5.2), control frame size and
 * fragmentation (5.5), continuation order (5.4), 64-bit lengths with the
 * top bit clear (5.2), close payloads (5.5.1, 7.4), UTF-8 of text (8.1),
 * and a limit on the size of a whole message.
 */
#ifndef SNOWD_WS_H
#define SNOWD_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "utf8.h"

enum ws_opcode {
    WS_OP_CONTINUATION = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA
};

/* Close codes, RFC 6455 section 7.4.1. */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_UNSUPPORTED_DATA = 1003,
    WS_CLOSE_NO_STATUS = 1005,        /* never sent on the wire */
    WS_CLOSE_ABNORMAL = 1006,         /* never sent on the wire */
    WS_CLOSE_INVALID_PAYLOAD = 1007,
    WS_CLOSE_POLICY_VIOLATION = 1008,
    WS_CLOSE_MESSAGE_TOO_BIG = 1009,
    WS_CLOSE_MANDATORY_EXTENSION = 1010,
    WS_CLOSE_INTERNAL_ERROR = 1011
};

enum ws_rc {
    WS_NEED_MORE,        /* no progress possible without more bytes */
    WS_CHUNK,            /* *out holds a chunk; *used bytes consumed */
    WS_ERR_PROTOCOL,     /* fail the connection with 1002 */
    WS_ERR_INVALID_UTF8, /* fail the connection with 1007 */
    WS_ERR_TOO_BIG       /* fail the connection with 1009 */
};

/* What ws_decode hands out.  For a data frame, opcode is the message's
 * opcode (TEXT or BINARY, also for continuation frames). */
struct ws_chunk {
    uint8_t *data;        /* unmasked payload, inside the caller's buffer */
    size_t len;
    uint8_t opcode;
    bool frame_start;     /* first chunk of a frame */
    bool frame_end;       /* last chunk of a frame */
    bool message_end;     /* last chunk of a whole message */
    uint64_t frame_len;   /* declared payload length of this frame */
};

struct ws_decoder {
    uint64_t max_message;  /* 0: no limit */
    uint64_t message_len;  /* declared bytes of the message so far */
    uint64_t remaining;    /* payload bytes of the current data frame */
    uint64_t frame_len;
    uint8_t mask[4];
    uint8_t mask_offset;   /* payload offset modulo 4 */
    uint8_t message_opcode; /* TEXT/BINARY inside a message, else 0 */
    bool in_frame;
    bool fin;
    bool require_mask;     /* a server requires masked frames (5.1) */
    utf8_state utf8;
};

void ws_decoder_init(struct ws_decoder *d, uint64_t max_message,
                     bool require_mask);

/* Decodes from buf[0..len).  On WS_CHUNK, *used bytes were consumed and
 * *out describes them; a control frame is only returned whole, and its
 * close payload, if any, has been validated.  On WS_NEED_MORE, *used is 0
 * and the caller must keep the bytes and call again with more appended.
 * After an error the decoder must not be used again. */
enum ws_rc ws_decode(struct ws_decoder *d, uint8_t *buf, size_t len,
                     size_t *used, struct ws_chunk *out);

/* The close code a decoder error fails the connection with. */
uint16_t ws_rc_close_code(enum ws_rc rc);

/* XORs p[0..len) with mask, starting at payload offset `offset`. */
void ws_unmask(uint8_t *p, size_t len, const uint8_t mask[4], size_t offset);

/* Writes an unmasked (server) frame header to out; returns its size, 2 to
 * 10 bytes. */
#define WS_MAX_HEADER 14
size_t ws_encode_header(uint8_t out[WS_MAX_HEADER], enum ws_opcode op,
                        bool fin, uint64_t len);

/* Writes a masked (client) frame header; returns its size, 6 to 14. */
size_t ws_encode_header_masked(uint8_t out[WS_MAX_HEADER], enum ws_opcode op,
                               bool fin, uint64_t len, const uint8_t mask[4]);

/* True for a code an endpoint may send in a close frame (section 7.4). */
bool ws_close_code_valid(unsigned code);

/* Parses a close payload: 0 bytes (code 1005), or a valid code and a UTF-8
 * reason.  Returns WS_CHUNK when valid, else the error to fail with. */
enum ws_rc ws_close_parse(const uint8_t *p, size_t len, uint16_t *code,
                          const uint8_t **reason, size_t *reason_len);

/* Builds a close payload (code + reason) into out; returns its size.
 * The reason is cut to 123 bytes at a character boundary. */
#define WS_MAX_CONTROL 125
size_t ws_close_build(uint8_t out[WS_MAX_CONTROL], uint16_t code,
                      const char *reason, size_t reason_len);

#endif
