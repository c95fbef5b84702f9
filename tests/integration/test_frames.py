"""RFC 6455 section 5 framing, over raw sockets against the echo handler."""
import asyncio
import os

import pytest

from conftest import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                      RawClient, build_frame, close_payload)

SIZES = [0, 125, 126, 65535, 65536, 1 << 20]


def text_of(n):
    """Valid UTF-8 of exactly n bytes mixing 1-, 2-, 3- and 4-byte chars."""
    unit = "aé€😀".encode()          # 1 + 2 + 3 + 4 bytes
    data = unit * (n // len(unit))
    return data + b"z" * (n - len(data))


# ---- echo -----------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
def test_echo_text_sizes(snowd, size):
    payload = text_of(size)
    with snowd.client("/echo") as c:
        c.send_frame(OP_TEXT, payload)
        f = c.recv_message(timeout=20)
        assert f.opcode == OP_TEXT
        assert len(f.payload) == size
        assert f.payload == payload


@pytest.mark.parametrize("size", SIZES)
def test_echo_binary_sizes(snowd, size):
    payload = os.urandom(size)
    with snowd.client("/echo") as c:
        c.send_frame(OP_BINARY, payload)
        f = c.recv_message(timeout=20)
        assert f.opcode == OP_BINARY
        assert f.payload == payload


@pytest.mark.parametrize("form", [16, 64])
def test_non_minimal_length_encoding_closes_1002(snowd, form):
    # RFC 6455 5.2: "the minimal number of bytes MUST be used".
    with snowd.client("/echo") as c:
        c.send_frame(OP_TEXT, b"short", length_form=form)
        expect_fail(c, 1002)


def test_echo_with_python_websockets_client(snowd):
    websockets = pytest.importorskip("websockets")

    async def run():
        async with websockets.connect(snowd.url("/echo"),
                                      max_size=None) as ws:
            await ws.send("hello ☃")
            assert await ws.recv() == "hello ☃"
            blob = os.urandom(300000)
            await ws.send(blob)
            assert await ws.recv() == blob
            await ws.send(["frag", "ment", "ed"])
            assert await ws.recv() == "fragmented"
            pong = await ws.ping(b"abc")
            await asyncio.wait_for(pong, 5)
        assert ws.close_code == 1000

    asyncio.run(run())


def test_fragmented_text_with_interleaved_ping(snowd):
    with snowd.client("/echo") as c:
        c.send_frame(OP_TEXT, b"Hel", fin=False)
        c.send_frame(OP_PING, b"in-between")
        c.send_frame(OP_CONT, b"lo ", fin=False)
        c.send_frame(OP_PONG, b"unsolicited")
        c.send_frame(OP_CONT, b"world", fin=True)
        pong = c.recv_frame()
        assert pong.opcode == OP_PONG and pong.payload == b"in-between"
        f = c.recv_frame()
        assert (f.opcode, f.fin, f.payload) == (OP_TEXT, True, b"Hello world")


def test_fragmented_text_with_utf8_split_across_fragments(snowd):
    data = "€😀é".encode()
    with snowd.client("/echo") as c:
        # every fragment boundary falls inside a multi-byte character
        c.send_frame(OP_TEXT, data[:1], fin=False)
        for i in range(1, len(data) - 1):
            c.send_frame(OP_CONT, data[i:i + 1], fin=False)
        c.send_frame(OP_CONT, data[-1:], fin=True)
        assert c.recv_text() == "€😀é"


def test_fragmented_binary_many_fragments_and_empty_ones(snowd):
    parts = [os.urandom(n) for n in (0, 1, 5000, 0, 70000, 3)]
    with snowd.client("/echo") as c:
        c.send_frame(OP_BINARY, parts[0], fin=False)
        for p in parts[1:-1]:
            c.send_frame(OP_CONT, p, fin=False)
            c.send_frame(OP_PING, b"x")
        c.send_frame(OP_CONT, parts[-1], fin=True)
        for _ in parts[1:-1]:
            f = c.recv_frame()
            assert (f.opcode, f.payload) == (OP_PONG, b"x")
        f = c.recv_message()
        assert f.opcode == OP_BINARY and f.payload == b"".join(parts)


def test_large_fragmented_message(snowd):
    chunk = os.urandom(256 * 1024)
    with snowd.client("/echo") as c:
        c.send_frame(OP_BINARY, chunk, fin=False)
        for _ in range(6):
            c.send_frame(OP_CONT, chunk, fin=False)
        c.send_frame(OP_CONT, chunk, fin=True)
        f = c.recv_message(timeout=20)
        assert f.payload == chunk * 8


# ---- control frames ----------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"ping!", bytes(range(125))])
def test_ping_gets_pong_with_same_payload(snowd, payload):
    with snowd.client("/echo") as c:
        c.send_frame(OP_PING, payload)
        f = c.recv_frame()
        assert f.opcode == OP_PONG and f.fin and not f.masked
        assert f.payload == payload
        # and the connection still works
        c.send_text("after")
        assert c.recv_text() == "after"


def test_unsolicited_pong_is_ignored(snowd):
    with snowd.client("/echo") as c:
        c.send_frame(OP_PONG, b"hi")
        c.send_text("still here")
        assert c.recv_text() == "still here"


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000,
                                  4999])
def test_close_code_is_echoed(snowd, code):
    with snowd.client("/echo") as c:
        c.send_close(code, "see you")
        f = c.recv_close()
        assert f.close_code == code
        assert c.wait_eof(), "server did not close TCP after the close"


def test_empty_close_gets_empty_close(snowd):
    with snowd.client("/echo") as c:
        c.send_close()
        f = c.recv_close()
        assert f.payload == b""
        assert c.wait_eof()


def test_no_data_after_close(snowd):
    with snowd.client("/echo") as c:
        c.send(build_frame(OP_CLOSE, close_payload(1000)) +
               build_frame(OP_TEXT, b"too late"))
        f = c.recv_close()
        assert f.close_code == 1000
        assert c.wait_eof()
        assert c.buf == b"", f"data after the close frame: {c.buf!r}"


def test_close_with_123_byte_reason(snowd):
    with snowd.client("/echo") as c:
        c.send_close(1000, "r" * 123)
        assert c.recv_close().close_code == 1000
        assert c.wait_eof()


# ---- protocol errors: 1002 -----------------------------------------------------------

def expect_fail(c, code):
    f = c.recv_close()
    assert f.close_code == code, f"expected close {code}, got {f!r}"
    assert c.wait_eof(), "server did not close the socket after failing"
    return f


def test_unmasked_frame_closes_1002(snowd):
    with snowd.client("/echo") as c:
        c.send_frame(OP_TEXT, b"hello", mask=False)
        expect_fail(c, 1002)


def test_unmasked_control_frame_closes_1002(snowd):
    with snowd.client("/echo") as c:
        c.send_frame(OP_PING, b"x", mask=False)
        expect_fail(c, 1002)


@pytest.mark.parametrize("rsv", [4, 2, 1, 7])
def test_rsv_bits_close_1002(snowd, rsv):
    with snowd.client("/echo") as c:
        c.send_frame(OP_TEXT, b"hello", rsv=rsv)
        expect_fail(c, 1002)


def test_rsv_bit_on_control_frame_closes_1002(snowd):
    with snowd.client("/echo") as c:
        c.send_frame(OP_PING, b"", rsv=4)
        expect_fail(c, 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_closes_1002(snowd, opcode):
    with snowd.client("/echo") as c:
        c.send_frame(opcode, b"abc")
        expect_fail(c, 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_over_125_closes_1002(snowd, opcode):
    payload = close_payload(1000, "x" * 124) if opcode == OP_CLOSE \
        else b"x" * 126
    with snowd.client("/echo") as c:
        c.send_frame(opcode, payload)
        expect_fail(c, 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_frame_closes_1002(snowd, opcode):
    with snowd.client("/echo") as c:
        c.send_frame(opcode, b"", fin=False)
        expect_fail(c, 1002)


@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_start_closes_1002(snowd, fin):
    with snowd.client("/echo") as c:
        c.send_frame(OP_CONT, b"orphan", fin=fin)
        expect_fail(c, 1002)


def test_continuation_after_finished_message_closes_1002(snowd):
    with snowd.client("/echo") as c:
        c.send_text("done")
        assert c.recv_text() == "done"
        c.send_frame(OP_CONT, b"more")
        expect_fail(c, 1002)


@pytest.mark.parametrize("first,second", [(OP_TEXT, OP_TEXT),
                                          (OP_TEXT, OP_BINARY),
                                          (OP_BINARY, OP_BINARY),
                                          (OP_BINARY, OP_TEXT)])
def test_new_message_inside_fragmented_closes_1002(snowd, first, second):
    with snowd.client("/echo") as c:
        c.send_frame(first, b"part", fin=False)
        c.send_frame(second, b"new", fin=True)
        expect_fail(c, 1002)


def test_one_byte_close_payload_closes_1002(snowd):
    with snowd.client("/echo") as c:
        c.send_frame(OP_CLOSE, b"\x03")
        expect_fail(c, 1002)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100,
                                  2000, 2999, 5000, 65535])
def test_invalid_close_code_closes_1002(snowd, code):
    with snowd.client("/echo") as c:
        c.send_close(code)
        expect_fail(c, 1002)


def test_64bit_length_with_high_bit_closes_1002(snowd):
    with snowd.client("/echo") as c:
        c.send(build_frame(OP_BINARY, b"", length_form=64,
                           length=1 << 63))
        expect_fail(c, 1002)


# ---- invalid UTF-8: 1007 -----------------------------------------------------------

BAD_UTF8 = {
    "lone_continuation": b"ab\x80cd",
    "overlong_slash": b"\xc0\xaf",
    "overlong_3byte": b"\xe0\x80\xaf",
    "surrogate": b"\xed\xa0\x80",
    "above_10ffff": b"\xf4\x90\x80\x80",
    "ff_byte": b"\xff",
    "truncated_at_end": b"ok\xe2\x82",
}


@pytest.mark.parametrize("name", sorted(BAD_UTF8))
def test_invalid_utf8_text_closes_1007(snowd, name):
    with snowd.client("/echo") as c:
        c.send_frame(OP_TEXT, BAD_UTF8[name])
        expect_fail(c, 1007)


def test_invalid_utf8_in_last_fragment_closes_1007(snowd):
    with snowd.client("/echo") as c:
        c.send_frame(OP_TEXT, b"fine", fin=False)
        c.send_frame(OP_CONT, b"\xce", fin=False)   # valid so far
        c.send_frame(OP_CONT, b"\xff", fin=True)
        expect_fail(c, 1007)


def test_incomplete_utf8_at_message_end_closes_1007(snowd):
    with snowd.client("/echo") as c:
        c.send_frame(OP_TEXT, b"abc\xf0\x9f", fin=False)
        c.send_frame(OP_CONT, b"\x98", fin=True)    # one byte short
        expect_fail(c, 1007)


def test_invalid_utf8_fails_fast_in_first_fragment(snowd):
    """The first fragment already holds invalid bytes: the server closes
    without waiting for the rest of the message."""
    with snowd.client("/echo") as c:
        c.send_frame(OP_TEXT, b"abc\xc0\xafdef", fin=False)
        expect_fail(c, 1007)


def test_invalid_utf8_fails_fast_inside_a_frame(snowd):
    """Invalid bytes early in a big frame are refused before the rest of
    the frame's payload arrives."""
    payload = b"\xff" + b"a" * 200000
    frame = build_frame(OP_TEXT, payload)
    with snowd.client("/echo") as c:
        c.send(frame[:2000])   # header, mask and the first bytes only
        expect_fail(c, 1007)


def test_binary_message_is_not_utf8_checked(snowd):
    with snowd.client("/echo") as c:
        c.send_frame(OP_BINARY, b"\xff\xc0\xaf")
        f = c.recv_message()
        assert f.opcode == OP_BINARY and f.payload == b"\xff\xc0\xaf"


def test_non_utf8_close_reason_closes_1007(snowd):
    with snowd.client("/echo") as c:
        c.send_close(1000, b"bad \xff reason")
        expect_fail(c, 1007)


# ---- message size: 1009 -----------------------------------------------------------------

@pytest.fixture
def small(snowd_factory):
    return snowd_factory(limits={"max_message": "1K"})


def test_message_at_max_message_is_accepted(small):
    with small.client("/echo") as c:
        c.send_frame(OP_BINARY, b"m" * 1024)
        assert c.recv_message().payload == b"m" * 1024


def test_message_over_max_message_closes_1009(small):
    with small.client("/echo") as c:
        c.send_frame(OP_BINARY, b"m" * 1025)
        expect_fail(c, 1009)


def test_header_announcing_too_big_closes_1009_without_payload(small):
    with small.client("/echo") as c:
        c.send(build_frame(OP_TEXT, b"", length=10 << 20)[:14])
        expect_fail(c, 1009)


def test_fragments_summing_over_max_message_close_1009(small):
    with small.client("/echo") as c:
        c.send_frame(OP_TEXT, b"a" * 600, fin=False)
        c.send_frame(OP_CONT, b"b" * 400, fin=False)
        c.send_frame(OP_CONT, b"c" * 25, fin=True)    # 1025 in all
        expect_fail(c, 1009)


def test_fragments_summing_to_max_message_are_accepted(small):
    with small.client("/echo") as c:
        c.send_frame(OP_TEXT, b"a" * 600, fin=False)
        c.send_frame(OP_CONT, b"b" * 424, fin=True)
        assert c.recv_text() == "a" * 600 + "b" * 424


def test_max_message_counts_per_message_not_per_connection(small):
    with small.client("/echo") as c:
        for i in range(5):
            c.send_frame(OP_BINARY, bytes([i]) * 1000)
            assert c.recv_message().payload == bytes([i]) * 1000


# ---- stream handling --------------------------------------------------------------

def test_pipelined_messages_come_back_in_order(snowd):
    n = 2000
    with snowd.client("/echo") as c:
        burst = b"".join(build_frame(OP_TEXT if i % 2 else OP_BINARY,
                                     str(i).encode()) for i in range(n))
        c.send(burst)
        for i in range(n):
            f = c.recv_message()
            assert f.payload == str(i).encode()
            assert f.opcode == (OP_TEXT if i % 2 else OP_BINARY)


def test_frames_split_one_byte_at_a_time(snowd):
    frames = [build_frame(OP_TEXT, "héllo"),
              build_frame(OP_PING, b"p1"),
              build_frame(OP_BINARY, bytes(range(200))),      # 16-bit length
              build_frame(OP_TEXT, "frag", fin=False),
              build_frame(OP_PING, b"p2"),
              build_frame(OP_CONT, "mented €", fin=True),
              build_frame(OP_BINARY, b"")]
    with snowd.client("/echo") as c:
        c.send_slowly(b"".join(frames), pause=0.001)
        assert c.recv_text() == "héllo"
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"p1")
        assert c.recv_message().payload == bytes(range(200))
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"p2")
        assert c.recv_text() == "fragmented €"
        f = c.recv_message()
        assert (f.opcode, f.payload) == (OP_BINARY, b"")


def test_big_frame_split_at_odd_boundaries(snowd):
    payload = os.urandom(300000)
    data = build_frame(OP_BINARY, payload) + build_frame(OP_TEXT, "tail")
    with snowd.client("/echo") as c:
        pos = 0
        for size in (1, 2, 3, 5, 4093, 65536, 12345):
            c.send(data[pos:pos + size])
            pos += size
        c.send(data[pos:])
        assert c.recv_message(timeout=20).payload == payload
        assert c.recv_text() == "tail"


def test_other_connections_unaffected_by_protocol_error(snowd):
    good = snowd.client("/echo")
    bad = snowd.client("/echo")
    try:
        bad.send_frame(OP_TEXT, b"x", rsv=4)
        expect_fail(bad, 1002)
        good.send_text("ok")
        assert good.recv_text() == "ok"
    finally:
        good.close()
        bad.close()
