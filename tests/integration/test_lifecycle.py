"""Connection lifetime: keepalive, handler behaviour, resources, signals."""
import signal
import socket
import time

import pytest

from conftest import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
                      RawClient, build_frame, close_payload)


# ---- keepalive and idle ------------------------------------------------------------------

def test_idle_client_is_pinged(snowd_factory):
    d = snowd_factory(limits={"ping_interval": "1s", "idle_timeout": "0"})
    with d.client("/echo", ) as c:
        f = c.recv_frame(timeout=10)
        assert f.opcode == OP_PING and f.fin and not f.masked
        # answering keeps the connection usable
        c.send_frame(OP_PONG, f.payload)
        c.send_text("alive")
        assert c.recv_message().payload == b"alive"


def test_pinged_client_that_answers_stays_open(snowd_factory):
    d = snowd_factory(limits={"ping_interval": "500ms",
                              "idle_timeout": "1500ms"})
    with d.client("/echo") as c:
        pings = 0
        # answer pings through several idle_timeout periods
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            f = c.recv_frame(timeout=5)
            assert f.opcode == OP_PING, f"server sent {f!r}"
            pings += 1
            c.send_frame(OP_PONG, f.payload)
        assert pings >= 2
        c.send_text("still open")
        assert c.recv_message().payload == b"still open"


def test_silent_client_is_closed_1001(snowd_factory):
    d = snowd_factory(limits={"idle_timeout": "2s", "ping_interval": "0"})
    with d.client("/echo", timeout=15) as c:
        start = time.monotonic()
        f = c.recv_close(timeout=15)
        assert f.close_code == 1001
        assert time.monotonic() - start >= 1.0, "closed long before 2s"
        c.send_close(1001)
        assert c.wait_eof(10)


def test_pinged_silent_client_is_closed_1001(snowd_factory):
    d = snowd_factory(limits={"idle_timeout": "2s", "ping_interval": "500ms"})
    with d.client("/echo", timeout=15) as c:
        f = c.recv_frame(timeout=10)
        assert f.opcode == OP_PING
        f = c.recv_close(timeout=15)      # pings ignored: closed
        assert f.close_code == 1001


def test_idle_close_when_peer_ignores_close_frame(snowd_factory):
    """close_timeout: a peer that never answers our close is dropped."""
    d = snowd_factory(limits={"idle_timeout": "1s", "close_timeout": "1s"})
    with d.client("/echo", timeout=15) as c:
        f = c.recv_close(timeout=15)
        assert f.close_code == 1001
        assert c.wait_eof(15), "socket not closed after close_timeout"


# ---- handler behaviour -------------------------------------------------------------------

def test_handler_failure_closes_1011_and_spares_others(snowd):
    other = snowd.client("/kit")
    victim = snowd.client("/kit")
    try:
        other.send_text("before")
        assert other.recv_text() == "before"
        victim.send_text("fail")
        f = victim.recv_close()
        assert f.close_code == 1011
        assert victim.wait_eof()
        other.send_text("state")
        assert other.recv_text() == "2"
        with snowd.client("/kit") as fresh:
            fresh.send_text("new")
            assert fresh.recv_text() == "new"
    finally:
        other.close()
        victim.close()
    assert snowd.wait_log("1011")


def test_handler_close_with_code_and_reason(snowd):
    with snowd.client("/kit") as c:
        c.send_text("close 4000 bye")
        f = c.recv_close()
        assert f.close_code == 4000
        assert f.close_reason == "bye"
        c.send_close(4000)
        assert c.wait_eof()


def test_handler_close_without_reason(snowd):
    with snowd.client("/kit") as c:
        c.send_text("close 1000")
        f = c.recv_close()
        assert f.close_code == 1000 and f.close_reason == ""


def test_messages_after_handler_close_are_dropped(snowd):
    with snowd.client("/kit") as c:
        c.send(build_frame(OP_TEXT, "close 3001 x") +
               build_frame(OP_TEXT, "echo me?"))
        f = c.recv_close()
        assert f.close_code == 3001
        c.send_close(3001)
        assert c.wait_eof()
        assert c.buf == b""


@pytest.mark.parametrize("code", [0, 999, 1002, 1004, 1005, 1006, 1015,
                                  2999, 5000, -1])
def test_handler_close_with_invalid_code_is_an_error(snowd, code):
    with snowd.client("/kit") as c:
        c.send_text(f"close {code}")
        assert c.recv_text() == "error invalid argument"
        c.send_text("state")            # the connection stays open
        assert c.recv_text() == "2"


def test_handler_close_with_long_reason_is_an_error(snowd):
    with snowd.client("/kit") as c:
        c.send_text("close 1000 " + "r" * 124)
        assert c.recv_text() == "error too big"
        c.send_text("close 1000 " + "r" * 123)
        f = c.recv_close()
        assert f.close_code == 1000 and f.close_reason == "r" * 123


def test_sendbad_returns_negative_error(snowd):
    with snowd.client("/kit") as c:
        c.send_text("sendbad")
        reply = c.recv_text()         # the invalid text was never sent
        assert int(reply) < 0
        assert int(reply) == -5       # -SNOW_EUTF8


def test_per_connection_state(snowd):
    a = snowd.client("/kit")
    b = snowd.client("/kit")
    try:
        for i in range(3):
            a.send_text(f"a{i}")
            assert a.recv_text() == f"a{i}"
        a.send_text("state")
        assert a.recv_text() == "4"
        b.send_text("state")
        assert b.recv_text() == "1"
        a.send_binary(b"\x00")
        assert a.recv_message().payload == b"\x00"
        a.send_text("state")
        assert a.recv_text() == "6"
    finally:
        a.close()
        b.close()


def test_big_reply(snowd):
    with snowd.client("/kit") as c:
        c.send_text("big 3000000 ")
        f = c.recv_message(timeout=20)
        assert f.opcode == OP_BINARY and f.payload == bytes(3000000)


# ---- vanishing and slow clients ----------------------------------------------------------

def test_vanishing_clients_do_not_disturb_the_daemon(snowd):
    for i in range(10):
        # reset during the handshake
        c = RawClient(snowd.port)
        c.send(c.request_bytes("/echo")[:20])
        c.reset()
        # reset right after the handshake
        c = snowd.client("/kit")
        c.reset()
        # reset in the middle of a frame
        c = snowd.client("/echo")
        c.send(build_frame(OP_BINARY, bytes(100000))[:5000])
        c.reset()
        # reset with a reply in flight
        c = snowd.client("/kit")
        c.send_text("big 2000000 ")
        c.reset()
        # plain FIN without a close frame
        c = snowd.client("/echo")
        c.send_text("bye")
        c.close()
    with snowd.client("/echo") as c:
        c.send_text("still serving")
        assert c.recv_text() == "still serving"
    assert snowd.proc.poll() is None


def fill_without_reading(client, data, seconds=10):
    """Pushes data as far as the kernel takes it, never reading."""
    client.sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + seconds
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += client.sock.send(data[sent:])
        except BlockingIOError:
            time.sleep(0.05)
    client.sock.setblocking(True)
    client.sock.settimeout(client.timeout)
    return sent


def test_slow_reader_is_bounded_by_backpressure(snowd_factory):
    d = snowd_factory(limits={"max_backpressure": "1M"})
    n = 300                           # 300 MiB if nothing held the input
    # The worker holds the connection and its output (workers = 1).
    base_rss = d.workers_rss_kib()
    assert base_rss > 0, "no worker to measure"
    slow = RawClient(d.port, timeout=10)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    slow.handshake("/kit")
    data = build_frame(OP_TEXT, "big 1048576 ") * n
    fill_without_reading(slow, data)
    peak = 0
    for _ in range(20):               # sample while the daemon works
        peak = max(peak, d.workers_rss_kib())
        time.sleep(0.1)
    assert peak - base_rss < 200 * 1024, \
        f"RSS grew by {(peak - base_rss) // 1024} MiB"
    with d.client("/echo") as other:
        other.send_text("served")
        assert other.recv_text() == "served"
    with d.client("/kit") as other:
        other.send_text("big 100000 ")
        assert len(other.recv_message().payload) == 100000
    slow.close()
    assert d.workers_rss_kib() - base_rss < 200 * 1024


def test_slow_reader_gets_every_reply_once_it_reads(snowd_factory):
    d = snowd_factory(limits={"max_backpressure": "1M"})
    n = 100
    slow = RawClient(d.port, timeout=10)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    slow.handshake("/kit")
    data = build_frame(OP_TEXT, "big 1048576 ") * n
    sent = fill_without_reading(slow, data)
    time.sleep(0.5)                   # let the daemon hit its limit
    if sent < len(data):
        slow.send(data[sent:])
    try:
        for i in range(n):
            f = slow.recv_message(timeout=10)
            assert len(f.payload) == 1048576, f"reply {i}: {f!r}"
    except TimeoutError:
        pytest.fail(f"only {i} of {n} replies arrived; the connection "
                    "stalled once its output backed up")
    finally:
        slow.close()


@pytest.mark.parametrize("size,n,limit", [(1048576, 100, "1M"),
                                          (65536, 1000, "64K")])
def test_pipelined_big_replies_all_arrive(snowd_factory, size, n, limit):
    """A prompt reader that pipelines requests whose replies exceed
    max_backpressure gets every reply (input paused for backpressure must
    resume once the output drains)."""
    d = snowd_factory(limits={"max_backpressure": limit})
    for attempt in range(3):
        c = d.client("/kit")
        c.send(build_frame(OP_TEXT, f"big {size} ") * n)
        try:
            for i in range(n):
                f = c.recv_message(timeout=5)
                assert len(f.payload) == size
        except TimeoutError:
            pytest.fail(f"attempt {attempt}: only {i} of {n} replies arrived "
                        "(connection stalled after backpressure)")
        finally:
            c.close()


def test_max_connections_holds_extra_clients_in_backlog(snowd_factory):
    d = snowd_factory(limits={"max_connections": "5"})
    # the readiness probe may still be counted for a moment
    time.sleep(0.2)
    clients = [d.client("/echo") for _ in range(5)]
    try:
        extra = RawClient(d.port)
        extra.send(extra.request_bytes("/echo"))
        with pytest.raises(TimeoutError):
            extra.read_response(timeout=1.0)
        clients[0].send_close(1000)
        assert clients[0].recv_close().close_code == 1000
        clients[0].close()
        resp = extra.read_response(timeout=10)
        assert resp.status == 101
        extra.send_text("finally")
        assert extra.recv_text() == "finally"
        extra.close()
        for c in clients[1:]:
            c.send_text("x")
            assert c.recv_text() == "x"
    finally:
        for c in clients:
            c.close()


# ---- signals ----------------------------------------------------------------------------

def test_sigterm_closes_every_client_1001_and_exits_0(snowd):
    clients = [snowd.client(p) for p in ("/echo", "/kit", "/echo", "/proto")]
    half = RawClient(snowd.port)
    half.send(half.request_bytes("/echo")[:10])   # mid-handshake
    try:
        snowd.signal(signal.SIGTERM)
        for c in clients:
            f = c.recv_close(timeout=10)
            assert f.close_code == 1001
            c.send_close(1001)
        for c in clients:
            assert c.wait_eof(10)
        assert half.wait_eof(10)
        assert snowd.wait_exit() == 0
    finally:
        for c in clients + [half]:
            c.close()


def test_sigterm_waits_for_close_timeout_at_most(snowd_factory):
    d = snowd_factory(limits={"close_timeout": "1s"})
    c = d.client("/echo")
    try:
        d.signal(signal.SIGTERM)
        assert c.recv_close(timeout=10).close_code == 1001
        # never answer: the daemon still exits, with status 0
        assert d.wait_exit(timeout=10) == 0
    finally:
        c.close()


def test_sigterm_refuses_new_connections(snowd):
    c = snowd.client("/echo")
    try:
        snowd.signal(signal.SIGTERM)
        assert c.recv_close(timeout=10).close_code == 1001
        assert snowd.wait_exit() == 0
        with pytest.raises(OSError):
            RawClient(snowd.port, timeout=2).handshake("/echo")
    finally:
        c.close()


def test_sigint_is_graceful_too(snowd):
    c = snowd.client("/echo")
    try:
        snowd.signal(signal.SIGINT)
        assert c.recv_close(timeout=10).close_code == 1001
        c.send_close(1001)
        assert snowd.wait_exit() == 0
    finally:
        c.close()


def test_sigquit_exits_promptly(snowd_factory):
    d = snowd_factory(limits={"close_timeout": "30s"})
    clients = [d.client("/echo") for _ in range(3)]
    try:
        start = time.monotonic()
        d.signal(signal.SIGQUIT)
        rc = d.wait_exit(timeout=5)
        assert rc >= 0, f"killed by signal {-rc}"
        assert time.monotonic() - start < 5
        for c in clients:
            assert c.wait_eof(5)
    finally:
        for c in clients:
            c.close()


def test_second_sigterm_stops_at_once(snowd_factory):
    d = snowd_factory(limits={"close_timeout": "60s"})
    c = d.client("/echo")
    try:
        d.signal(signal.SIGTERM)
        assert c.recv_close(timeout=10).close_code == 1001
        d.signal(signal.SIGTERM)
        assert d.wait_exit(timeout=5) == 0
    finally:
        c.close()
