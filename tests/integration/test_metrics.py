"""The admin listener: /healthz, and /metrics checked against known
traffic with a real Prometheus text-format parser (prometheus_client,
Debian's python3-prometheus-client).

Counters are compared as deltas between scrapes, taken once the daemon
has settled (no TCP connection left open), so that the connections the
fixtures make to see the daemon up do not count.  Everything a test does
is counted exactly: connections, messages and payload bytes by route,
handshake failures by reason, close codes, crashes, restarts, mailbox
overflows, rooms and members, backpressure closes and room drops."""
import os
import re
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import (DEFAULT_ROUTES, OP_BINARY, REPO, OP_CONT, OP_PING, OP_PONG,
                      OP_TEXT, RawClient, _tcp_inode, build_frame, free_port,
                      make_plugin_dir, serving_pid, snowd_binary, wait_until)
from test_rooms import RoomClient, roomkit_so

CRASH_ASAN = "handle_segv=0:handle_abort=0"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROUTES = dict(DEFAULT_ROUTES)
ROUTES.update({
    "/rooms": {"handler": "roomkit"},
    "/rooms-drop": {"handler": "roomkit", "backpressure": "drop"},
    "/ghost": {"handler": "nosuchhandler"},
})
HS_REASONS = ("bad_request", "too_large", "http_version", "not_found",
              "method", "upgrade", "origin", "refused", "error",
              "unavailable", "timeout", "aborted", "tls")


# ---- the daemon ---------------------------------------------------------------

@pytest.fixture
def admin(snowd_factory, tmp_path):
    """Starts a daemon with `[admin] listen` on a free loopback port (in
    d.admin_port), serving the usual routes and roomkit."""
    made = []

    def make(workers=2, limits=None, crashes=False, start=True,
             admin_listen=None, server=None, **kw):
        so = roomkit_so()
        if not so.is_file():
            pytest.fail(f"roomkit plugin not found: {so}", pytrace=False)
        pdir = make_plugin_dir(tmp_path / f"m-plugins{len(made)}",
                               extra=[so])
        if crashes:
            kw.update(asan_options=CRASH_ASAN, worker_deaths_ok=True)
        d = snowd_factory(start=False, server={"workers": str(workers), **(server or {})},
                          limits=limits, routes=ROUTES, plugin_dir=pdir, **kw)
        d.admin_port = free_port()
        with open(d.config, "a") as f:
            f.write("\n[admin]\nlisten = %s\n" %
                    (admin_listen or f"127.0.0.1:{d.admin_port}"))
        made.append(d)
        if start:
            d.start()
        if start and not admin_listen:
            # Daemon.start made one connection to see the port open; a
            # worker may take it only after it said it was ready.  Counts
            # start once it has been taken and closed.
            settle(d, pred=lambda m: m("snowd_tcp_connections_total") >= 1
                   and m("snowd_workers_ready") == workers)
        return d
    return make


# ---- HTTP and the exposition ------------------------------------------------------

class Reply:
    def __init__(self, raw):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status, self.reason = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", lines[0]
        self.status = int(status)
        self.headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            assert name.lower() not in self.headers, lines
            self.headers[name.lower()] = value.strip()

    def __repr__(self):
        return f"Reply({self.status}, {self.headers}, {self.body[:200]!r})"


def read_to_eof(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def http(port, request, timeout=5.0, host="127.0.0.1"):
    """Sends raw request bytes; reads until the server closes."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request)
        data = read_to_eof(s)
    r = Reply(data)
    assert r.headers.get("connection") == "close", r
    return r


def get(port, path, method="GET"):
    return http(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n"
                .encode())


class Metrics:
    """One scrape: sample (name, labels) -> value, and family types."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        for fam in text_string_to_metric_families(text):
            assert fam.name not in self.types, fam.name
            self.types[fam.name] = fam.type
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                assert key not in self.samples, key
                self.samples[key] = s.value

    def __call__(self, name, **labels):
        """The value, or None when the series is not there."""
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def counters(self):
        """Every sample of a counter family."""
        return {k: v for k, v in self.samples.items()
                if self.types.get(family_of(k[0])) == "counter"}


def family_of(sample_name):
    return sample_name[:-len("_total")] if sample_name.endswith("_total") \
        else sample_name


def scrape(d):
    r = get(d.admin_port, "/metrics")
    assert r.status == 200, r
    assert r.headers["content-type"] == METRICS_TYPE, r
    assert int(r.headers["content-length"]) == len(r.body), r
    return Metrics(r.body.decode("utf-8"))


def settle(d, tcp_open=0, pred=None, timeout=10.0):
    """A scrape once the workers have closed every TCP connection but
    `tcp_open` (and pred(metrics) holds)."""
    last = []

    def ok():
        m = scrape(d)
        last[:] = [m]
        return m("snowd_tcp_connections_open") == tcp_open and \
            (pred is None or pred(m))
    assert wait_until(ok, timeout), f"never settled:\n{last[0].text}"
    return last[0]


def delta(after, before, name, **labels):
    a, b = after(name, **labels), before(name, **labels)
    assert a is not None, (name, labels, after.text)
    return a - (b or 0)


# ---- clients ------------------------------------------------------------------------

def echo_round(c, opcode, payload):
    c.send_frame(opcode, payload)
    f = c.recv_message()
    assert (f.opcode, f.payload) == (opcode, payload)


def refused(d, expect, path="/echo", **kw):
    """A handshake answered with `expect`; returns the client's socket
    closed."""
    with RawClient(d.port) as c:
        c.handshake(path, expect=expect, **kw)


def rooms_settled(m, rooms, members):
    return m("snowd_rooms") == rooms and m("snowd_room_members") == members


# ---- the counts ------------------------------------------------------------------------

def test_metrics_count_known_traffic(admin):
    """Two workers; every kind of traffic once, each counted exactly."""
    d = admin(limits={"mailbox_limit": "100", "handshake_timeout": "1s"})
    m0 = settle(d)
    for name, kind in [("snowd_connections_open", "gauge"),
                       ("snowd_connections", "counter"),
                       ("snowd_messages_received", "counter"),
                       ("snowd_sent_bytes", "counter"),
                       ("snowd_handshake_failures", "counter"),
                       ("snowd_closes", "counter"),
                       ("snowd_actor_crashes", "counter"),
                       ("snowd_workers", "gauge"), ("snowd_rooms", "gauge"),
                       ("snowd_build_info", "gauge")]:
        assert m0.types.get(name) == kind, (name, m0.types)
    for reason in HS_REASONS:
        assert m0("snowd_handshake_failures_total", reason=reason) \
            is not None, reason
    assert m0("snowd_workers") == 2 and m0("snowd_workers_ready") == 2
    assert m0("snowd_worker_restarts_total") == 0
    assert m0("snowd_build_info", version=re.search(
        r'version="([^"]+)"', m0.text).group(1)) == 1
    assert abs(m0("snowd_start_time_seconds") - time.time()) < 60
    # Static-only and unresolved routes alike are listed only when they
    # can upgrade: /ghost can (and answers 503).
    assert m0("snowd_connections_total", route="/echo") == 0
    assert m0("snowd_connections_total", route="/ghost") == 0
    tcp = 0   # connections this test makes

    # -- echo: messages of known sizes, every length encoding, fragments
    sizes = [0, 10, 125, 126, 200, 65535, 65536, 70000]
    echoes = [RawClient(d.port, timeout=10) for _ in range(5)]
    tcp += len(echoes)
    for c in echoes:
        c.handshake("/echo")
    for c in echoes[:4]:
        for n in sizes:
            echo_round(c, OP_TEXT, b"a" * n)
        echo_round(c, OP_BINARY, b"\x00\xff\x01")
    c = echoes[0]
    c.send(build_frame(OP_TEXT, b"abc", fin=False) +
           build_frame(OP_PING, b"p") +
           build_frame(OP_CONT, b"def", fin=False) +
           build_frame(OP_CONT, b"gh"))
    assert c.recv_frame().opcode == OP_PONG
    f = c.recv_message()
    assert (f.opcode, f.payload) == (OP_TEXT, b"abcdefgh")
    m1 = scrape(d)
    assert delta(m1, m0, "snowd_connections_open", route="/echo") == 5
    assert delta(m1, m0, "snowd_tcp_connections_open") == 5
    # Closes: 1000, 4001, 3002, an empty close frame (1005), a reset
    # (1006).
    for c, code in zip(echoes, [1000, 4001, 3002, None]):
        c.send_close(code)
        f = c.recv_close()
        assert f.close_code == code
        c.close()
    echoes[4].reset()
    m2 = settle(d)
    n_msgs = 4 * (len(sizes) + 1) + 1
    n_bytes = 4 * (sum(sizes) + 3) + 8
    for name, want in [("snowd_connections_total", 5),
                       ("snowd_connections_open", 0),
                       ("snowd_messages_received_total", n_msgs),
                       ("snowd_messages_sent_total", n_msgs),
                       ("snowd_received_bytes_total", n_bytes),
                       ("snowd_sent_bytes_total", n_bytes)]:
        assert delta(m2, m0, name, route="/echo") == want, name
    for code, want in [("1000", 1), ("4xxx", 1), ("3xxx", 1), ("1005", 1),
                       ("1006", 1), ("1001", 0), ("1011", 0)]:
        assert delta(m2, m0, "snowd_closes_total", code=code) == want, code
    assert delta(m2, m0, "snowd_tcp_connections_total") == tcp

    # -- handshakes refused, one of each reason
    refused(d, 404, "/nope")
    refused(d, 400, key="not-a-key")
    refused(d, 426, headers=[("Sec-WebSocket-Version", "12")],
            omit=["Sec-WebSocket-Version"])
    refused(d, 403, "/origin", headers=[("Origin", "https://evil.example")])
    refused(d, 405, method="POST")
    refused(d, 401, "/reject")
    refused(d, 500, "/reject", headers=[("X-Token", "crash")])
    refused(d, 503, "/ghost")
    refused(d, 505, version="HTTP/2.0")
    refused(d, 431, headers=[("X-Big", "b" * 9000)])
    tcp += 10
    with RawClient(d.port) as c:           # timeout: a head never finished
        c.send(b"GET /echo HTTP/1.1\r\n")
        assert c.read_response(timeout=5).status == 408
    with RawClient(d.port) as c:           # aborted: left mid-head ...
        c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
    RawClient(d.port).close()               # ... and before a byte
    tcp += 3
    m3 = settle(d)
    want = dict.fromkeys(HS_REASONS, 1)
    want.update(aborted=2, tls=0)
    for reason, n in want.items():
        assert delta(m3, m2, "snowd_handshake_failures_total",
                     reason=reason) == n, reason
    assert delta(m3, m2, "snowd_actor_crashes_total", kind="connection") == 1
    assert delta(m3, m2, "snowd_connections_total", route="/reject") == 0
    assert delta(m3, m2, "snowd_tcp_connections_total") == 13

    # -- testkit: a close the handler starts, a crash (1011)
    with RawClient(d.port) as c:
        c.handshake("/kit")
        c.send_text("close 4002 bye")
        assert c.recv_close().close_code == 4002
        c.send_close(4002)
    with RawClient(d.port) as c:
        c.handshake("/kit")
        c.send_text("fail")
        c.expect_close(1011)
    tcp += 2
    m4 = settle(d)
    assert delta(m4, m3, "snowd_closes_total", code="4xxx") == 1
    assert delta(m4, m3, "snowd_closes_total", code="1011") == 1
    assert delta(m4, m3, "snowd_actor_crashes_total", kind="connection") == 1
    assert delta(m4, m3, "snowd_connections_total", route="/kit") == 2
    assert delta(m4, m3, "snowd_messages_received_total", route="/kit") == 2
    assert delta(m4, m3, "snowd_received_bytes_total", route="/kit") == \
        len("close 4002 bye") + len("fail")
    assert delta(m4, m3, "snowd_messages_sent_total", route="/kit") == 0

    # -- actors: a full mailbox, a service crash and its restart
    k = d.kit()
    tcp += 1
    try:
        assert k.cmd("quiet 1") == "ok"
        f = k.cmd_kv("flood self 150 10")
        assert (f["ok"], f["efull"]) == ("100", "50"), f
        pid = k.whereis("kit.transient")
        assert k.cmd(f"monitor {pid}") == "ok"
        assert k.cmd("svc kit.transient crash") == "ok"
        down = k.wait_info(lambda i: i["_"] == "info down")
        assert down["reason"] == "crashed: on_info returned -1", down
        m5 = scrape(d)
    finally:
        k.close()
    assert delta(m5, m4, "snowd_mailbox_overflows_total") == 50
    assert delta(m5, m4, "snowd_actor_crashes_total", kind="service") == 1
    assert delta(m5, m4, "snowd_service_restarts_total") == 1
    # whoami, quiet, flood, whereis, monitor, svc: six commands, six
    # replies and the DOWN.
    assert delta(m5, m4, "snowd_messages_received_total",
                 route="/actors") == 6
    assert delta(m5, m4, "snowd_messages_sent_total", route="/actors") == 7
    assert delta(m5, m4, "snowd_connections_open", route="/actors") == 1

    # -- rooms: members across both workers, a publish to three of them
    rs = [RoomClient(d.port) for _ in range(4)]
    tcp += 4
    try:
        for r in rs[:3]:
            assert r.cmd("join a") == "ok"
        assert rs[3].cmd("join b") == "ok"
        assert rs[0].cmd("join b") == "ok"
        m6 = settle(d, tcp_open=4, pred=lambda m: rooms_settled(m, 2, 5))
        assert rs[3].cmd("pub a pub:hello") == "ok"
        for r in rs[:3]:
            assert r.wait_msgs(1) == [(OP_TEXT, b"pub:hello")]
        m7 = scrape(d)
    finally:
        for r in rs:
            r.raw.close()
    assert delta(m7, m6, "snowd_messages_sent_total", route="/rooms") == 4
    assert delta(m7, m6, "snowd_sent_bytes_total", route="/rooms") == \
        3 * len("pub:hello") + len("ok")
    assert delta(m7, m6, "snowd_messages_received_total",
                 route="/rooms") == 1
    assert delta(m7, m6, "snowd_received_bytes_total", route="/rooms") == \
        len("pub a pub:hello")
    assert m7("snowd_connections_open", route="/rooms") == 4
    m8 = settle(d, pred=lambda m: rooms_settled(m, 0, 0))
    assert delta(m8, m0, "snowd_connections_total", route="/rooms") == 4
    assert delta(m8, m0, "snowd_closes_total", code="1006") == 1 + 4 + 1

    # -- the whole: gauges back to zero, nothing else moved
    assert delta(m8, m0, "snowd_tcp_connections_total") == tcp
    for key, value in m8.samples.items():
        if key[0] == "snowd_connections_open":
            assert value == 0, key
    assert m8("snowd_workers") == 2 and m8("snowd_workers_ready") == 2
    assert m8("snowd_worker_restarts_total") == 0
    assert m8("snowd_room_drops_total") == 0
    assert m8("snowd_backpressure_closes_total") == 0


def test_counters_survive_a_worker_crash(admin):
    """A worker killed by SIGSEGV: the master folds its counters into
    its totals, so every counter keeps its value (none goes back) and the
    open gauges lose that worker's connections."""
    d = admin(crashes=True)
    settle(d)
    echoes = [RawClient(d.port, timeout=10) for _ in range(6)]
    for c in echoes:
        c.handshake("/echo")
        echo_round(c, OP_TEXT, b"hello")
    for c in echoes[:3]:
        c.send_close(1000)
        c.recv_close()
        c.close()
    echoes = echoes[3:]
    k = d.kit()
    doomed = sum(serving_pid(d, c) == k.ospid for c in echoes)
    m1 = settle(d, tcp_open=4)
    assert m1("snowd_connections_open", route="/echo") == 3
    assert m1("snowd_connections_total", route="/echo") == 6
    assert m1("snowd_closes_total", code="1000") == 3

    k.send("segv")
    d.wait_respawn(k.slot, k.ospid)
    m2 = settle(d, tcp_open=3 - doomed,
                pred=lambda m: m("snowd_workers_ready") == 2)
    assert m2("snowd_worker_restarts_total") == 1
    assert m2("snowd_workers") == 2
    before, after = m1.counters(), m2.counters()
    moved = {("snowd_worker_restarts_total", ()): 1,
             ("snowd_messages_received_total", (("route", "/actors"),)): 1,
             ("snowd_received_bytes_total", (("route", "/actors"),)): 4}
    for key, value in before.items():
        assert after.get(key) == value + moved.get(key, 0), \
            (key, value, after.get(key))
    # The connections of the dead worker are not closed ones: no close
    # frame was ever exchanged, and nothing counted them.
    assert m2("snowd_connections_open", route="/echo") == 3 - doomed
    assert m2("snowd_connections_open", route="/actors") == 0
    # The respawned worker counts on top.
    with RawClient(d.port) as c:
        c.handshake("/echo")
        echo_round(c, OP_TEXT, b"again")
        c.send_close(1000)
        c.recv_close()
    m3 = settle(d, tcp_open=3 - doomed)
    assert m3("snowd_connections_total", route="/echo") == 7
    assert m3("snowd_closes_total", code="1000") == 4
    assert m3("snowd_worker_restarts_total") == 1
    for c in echoes:
        c.close()


def test_counters_survive_a_reload(admin):
    """A reload retires the old workers: their counters join the totals
    (none goes back), their open connections stay counted while they
    drain, and the new ones count on top."""
    d = admin()
    settle(d)
    kept = []
    for i in range(4):
        c = RawClient(d.port, timeout=10)
        c.handshake("/echo")
        echo_round(c, OP_TEXT, b"before")
        kept.append(c)
    holders = {serving_pid(d, c) for c in kept}
    assert None not in holders
    m1 = settle(d, tcp_open=4)
    mark = d.log_mark()
    d.signal(signal.SIGHUP)
    assert d.wait_log_re(r"reload: configuration #2 serving", 15,
                         start=mark), d.log()[mark:]
    # Old workers drain with their 4 connections; 2 new ones are ready.
    # An old worker that got none of the 4 (SO_REUSEPORT spreads them by
    # hash: 1 run in 8) has nothing to drain and is gone already.
    m2 = settle(d, tcp_open=4,
                pred=lambda m: m("snowd_workers_ready") == 2 and
                m("snowd_workers") == 2 + len(holders))
    assert m2("snowd_connections_open", route="/echo") == 4
    assert m2("snowd_worker_restarts_total") == 0
    for key, value in m1.counters().items():
        assert m2.counters().get(key) == value, key
    for c in kept:
        echo_round(c, OP_TEXT, b"during")
        c.send_close(1000)
        c.recv_close()
        c.close()
    with RawClient(d.port) as c:
        c.handshake("/echo")
        echo_round(c, OP_TEXT, b"after")
        c.send_close(1000)
        c.recv_close()
    m3 = settle(d, pred=lambda m: m("snowd_workers") == 2)
    assert m3("snowd_connections_open", route="/echo") == 0
    assert delta(m3, m1, "snowd_connections_total", route="/echo") == 1
    assert delta(m3, m1, "snowd_messages_received_total",
                 route="/echo") == 5
    assert delta(m3, m1, "snowd_closes_total", code="1000") == 5
    assert m3("snowd_worker_restarts_total") == 0


def test_reload_moves_the_admin_listener(admin):
    d = admin()
    old_port = d.admin_port
    new_port = free_port()
    text = d.config.read_text().replace(f"127.0.0.1:{old_port}",
                                        f"127.0.0.1:{new_port}")
    d.config.write_text(text)
    mark = d.log_mark()
    d.signal(signal.SIGHUP)
    assert d.wait_log_re(r"reload: configuration #2 serving", 15,
                         start=mark), d.log()[mark:]
    d.admin_port = new_port
    assert wait_until(lambda: get(new_port, "/healthz").status == 200, 10)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", old_port), timeout=2).close()
    assert scrape(d)("snowd_workers_ready") == 2


def test_backpressure_closes_and_room_drops(admin):
    """A member that does not read: on a `close` route, one backpressure
    close and then close code 1008; on a `drop` route, every room message
    it misses is a drop."""
    d = admin(workers=1, limits={"max_backpressure": "256K"})
    m0 = settle(d)
    slow = RoomClient(d.port, rcvbuf=4096)
    slow.send("send 100 60000")
    m1 = settle(d, tcp_open=1,
                pred=lambda m: m("snowd_backpressure_closes_total") == 1)
    slow.raw.reset()
    m2 = settle(d)
    assert delta(m2, m0, "snowd_backpressure_closes_total") == 1
    assert delta(m2, m0, "snowd_closes_total", code="1008") == 1, \
        {k: v for k, v in m2.samples.items() if k[0] == "snowd_closes_total"
         and v != m0.samples.get(k)}
    assert delta(m1, m0, "snowd_room_drops_total") == 0

    sub = RoomClient(d.port, "/rooms-drop", rcvbuf=4096)
    pub = RoomClient(d.port)
    try:
        assert sub.cmd("join r") == "ok"
        m3 = scrape(d)
        r = pub.cmd_kv("pubn r 300 20000")
        assert (r["ok"], r["other"]) == ("300", "0"), r
        assert sub.cmd("ping", timeout=30) == "pong"
        got = len(sub.msgs)
        assert 0 < got < 300, got
        m4 = scrape(d)
    finally:
        sub.raw.close()
        pub.raw.close()
    assert delta(m4, m3, "snowd_room_drops_total") == 300 - got
    assert delta(m4, m3, "snowd_messages_sent_total",
                 route="/rooms-drop") == got + 1
    assert delta(m4, m3, "snowd_backpressure_closes_total") == 0


# ---- /healthz ---------------------------------------------------------------------------

def test_healthz(admin):
    d = admin()
    r = get(d.admin_port, "/healthz")
    assert (r.status, r.body) == (200, b"ok\n"), r
    assert r.headers["content-length"] == "3"
    r = get(d.admin_port, "/healthz", "HEAD")
    assert (r.status, r.body) == (200, b""), r
    assert r.headers["content-length"] == "3"


def test_healthz_is_503_while_workers_drain(admin):
    """During a graceful stop no worker is ready: a load balancer must
    stop sending clients, while the master still answers."""
    d = admin()
    c = RawClient(d.port)
    c.handshake("/echo")        # does not answer the close: the stop waits
    d.signal(signal.SIGTERM)
    seen = []

    def unhealthy():
        seen.append(get(d.admin_port, "/healthz"))
        return seen[-1].status == 503
    assert wait_until(unhealthy, 5), seen[-1]
    assert seen[-1].body == b"no worker ready\n"
    # /healthz follows the master's stop at once; the gauge follows each
    # worker's own state, as it acts on the stop.
    scrapes = []

    def none_ready():
        scrapes.append(scrape(d))
        return scrapes[-1]("snowd_workers_ready") == 0
    assert wait_until(none_ready, 5), scrapes[-1].text
    assert scrapes[-1]("snowd_workers") >= 1
    assert c.recv_close().close_code == 1001
    c.close()
    assert d.wait_exit() == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_healthz_is_503_while_every_ready_worker_is_stuck(admin, workers):
    """A worker stuck in plugin code serves nobody: once it has missed
    three heartbeats (1 s apart here) /healthz stops counting it, long
    before hang_timeout would kill it; another worker keeps it healthy."""
    d = admin(workers=workers, server={"hang_timeout": "60s"})
    k = d.kits_on_slots({0})[0]
    try:
        assert get(d.admin_port, "/healthz").status == 200
        k.send("sleep 12000")
        seen = []

        def status():
            seen.append(get(d.admin_port, "/healthz"))
            return seen[-1].status
        if workers == 1:
            assert wait_until(lambda: status() == 503, 10), seen[-1]
            assert seen[-1].body == b"no worker answering: the ready " \
                b"ones have missed their heartbeats\n"
        else:
            deadline = time.monotonic() + 4.5
            while time.monotonic() < deadline:
                assert status() == 200, seen[-1]
                time.sleep(0.1)
        assert k.raw.recv_text(timeout=30) == "ok"      # awake
        assert wait_until(lambda: status() == 200, 5), seen[-1]
        assert k.cmd("ping") == "pong"
    finally:
        k.close()


# ---- the admin listener itself ------------------------------------------------------------

def test_admin_http_answers(admin):
    d = admin(workers=1)
    p = d.admin_port
    for path in ("/", "/metrics/", "/healthzz", "/echo"):
        r = get(p, path)
        assert (r.status, r.body) == (404, b"Not Found\n"), (path, r)
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        r = get(p, "/metrics", method)
        assert r.status == 405, r
        assert r.headers["allow"] == "GET, HEAD", r
    assert http(p, b"GET /metrics\r\n\r\n").status == 400
    assert http(p, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"
                   b"\r\n\r\n").status == 400
    assert http(p, b"GET /metrics HTTP/2.0\r\n\r\n").status == 505
    big = b"GET /metrics HTTP/1.1\r\nX: " + b"x" * 5000 + b"\r\n\r\n"
    assert http(p, big).status == 431
    # Bare LF, HTTP/1.0, a query string: all fine.
    assert http(p, b"GET /metrics?x=1 HTTP/1.0\n\n").status == 200
    m = scrape(d)
    r = get(p, "/metrics", "HEAD")
    assert r.status == 200 and r.body == b"", r
    assert r.headers["content-type"] == METRICS_TYPE
    assert abs(int(r.headers["content-length"]) - len(m.text)) < 64
    # Pipelined requests get one answer, then the connection ends.
    r = http(p, b"GET /healthz HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n")
    assert (r.status, r.body) == (200, b"ok\n"), r


def test_admin_and_websocket_ports_are_apart(admin):
    d = admin(workers=1)
    m0 = settle(d)
    # An upgrade on the admin port is just an unknown path there.
    with RawClient(d.admin_port) as c:
        c.send(c.request_bytes("/echo"))
        assert c.read_response().status == 404
        assert c.wait_eof()
    # The admin pages do not exist on the WebSocket port.
    for path in ("/metrics", "/healthz"):
        with RawClient(d.port) as c:
            c.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert c.read_response().status == 404
    m1 = settle(d)
    assert delta(m1, m0, "snowd_handshake_failures_total",
                 reason="not_found") == 2
    # Admin requests are not WebSocket traffic.
    assert delta(m1, m0, "snowd_tcp_connections_total") == 2


def listening_inode(port):
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                return fields[9]
    return None


def holders(pids, inode):
    out = []
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    out.append(pid)
            except OSError:
                pass
    return out


def test_workers_hold_no_admin_socket(admin):
    """The listener and the admin clients stay in the master, also in a
    worker forked while an admin client is connected."""
    d = admin(crashes=True)
    inode = listening_inode(d.admin_port)
    assert inode
    assert holders([d.pid], inode) == [d.pid]
    assert holders(d.worker_pids(), inode) == []
    idle = socket.create_connection(("127.0.0.1", d.admin_port))
    idle.sendall(b"GET /metr")
    try:
        k = d.kit()
        k.send("segv")
        new = d.wait_respawn(k.slot, k.ospid)
        assert holders([new], inode) == []
        # No socket of the new worker is the admin client's.
        server_side = _tcp_inode(d.admin_port, idle.getsockname()[1])
        assert server_side
        assert holders([new], server_side) == []
        assert holders([d.pid], server_side) == [d.pid]
        k.close()
    finally:
        idle.close()


def test_slow_admin_clients_do_not_block_metrics(admin):
    """A client that sends half a request holds a place for at most a few
    seconds and blocks nobody; with every place taken, the next client
    waits in the backlog until one is free."""
    d = admin(workers=1)
    slow = socket.create_connection(("127.0.0.1", d.admin_port))
    slow.sendall(b"GET /metr")
    t0 = time.monotonic()
    assert scrape(d)("snowd_workers") == 1
    assert get(d.admin_port, "/healthz").status == 200
    assert time.monotonic() - t0 < 2.0
    # The server ends the slow one (ADMIN_TIMEOUT, 5 s).
    slow.settimeout(10)
    assert slow.recv(100) == b""
    assert time.monotonic() - t0 < 8.0
    slow.close()

    idle = []
    try:
        for _ in range(64):
            s = socket.create_connection(("127.0.0.1", d.admin_port))
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            idle.append(s)
        late = socket.create_connection(("127.0.0.1", d.admin_port))
        late.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        r, _, _ = select.select([late], [], [], 0.5)
        assert not r, "a 65th client was served while 64 were held"
        idle.pop().close()
        late.settimeout(3)
        assert Reply(read_to_eof(late)).status == 200
        late.close()
    finally:
        for s in idle:
            s.close()


def test_a_stuck_worker_does_not_stall_metrics(admin):
    d = admin(workers=1)
    k = d.kit()
    try:
        k.send("sleep 3000")
        time.sleep(0.2)
        t0 = time.monotonic()
        m = scrape(d)
        assert get(d.admin_port, "/healthz").status == 200
        assert time.monotonic() - t0 < 2.0
        assert m("snowd_connections_open", route="/actors") == 1
        assert k.raw.recv_text(timeout=10) == "ok"      # slept
        assert k.cmd("ping") == "pong"
    finally:
        k.close()


def test_every_metric_is_documented(admin):
    """An operator reads what a metric means in snowd(8) and the README,
    not in the source: every family the daemon exposes is in both."""
    d = admin(workers=1)
    names = re.findall(r"^# TYPE (\S+) ", scrape(d).text, re.M)
    assert len(names) > 20, names
    man = (REPO / "man" / "snowd.8").read_text()
    readme = (REPO / "README.md").read_text()
    for name in names:
        assert re.search(rf"^\.It Li {name} Pq", man, re.M), \
            f"{name} is not in snowd(8) ADMIN ENDPOINTS"
        assert f"`{name}`" in readme, f"{name} is not in README.md"


def test_channel_drops_are_counted(admin):
    """Tells to a worker that does not read its channel pile up in the
    master up to its bound, then are dropped: every tell the sender's
    worker accepted is either received, refused by the full mailbox, or
    counted in snowd_channel_drops_total."""
    d = admin(workers=2)
    kits = d.kits_on_slots({0, 1})
    sender, busy = kits[0], kits[1]
    try:
        m0 = scrape(d)
        assert busy.cmd("quiet 1") == "ok"
        busy.send("sleep 3000")
        time.sleep(0.1)
        accepted = 0
        for _ in range(400):    # bounded: 64 MiB is about 20 rounds
            f = sender.cmd_kv(f"flood {busy.pid} 500 60000", 30)
            assert f["other"] == "0", f
            accepted += int(f["ok"])
            if "is not reading its channel" in d.log():
                break
            time.sleep(0.005)   # let the channel drain into the master
        assert "is not reading its channel" in d.log(), \
            "the flood was too small to test this"
        assert busy.raw.recv_text(timeout=30) == "ok"      # awake

        def all_in():
            m = scrape(d)
            got = int(busy.cmd_kv("stats")["tells"])
            return got + delta(m, m0, "snowd_mailbox_overflows_total") + \
                delta(m, m0, "snowd_channel_drops_total") == accepted
        assert wait_until(all_in, 15)
        m1 = scrape(d)
        assert delta(m1, m0, "snowd_channel_drops_total") > 0
    finally:
        sender.close()
        busy.close()


# ---- configuration --------------------------------------------------------------------------

def check(tmp_path, admin_lines, listen="127.0.0.1:8080"):
    pdir = make_plugin_dir(tmp_path / "plugins")
    conf = tmp_path / "t.ini"
    conf.write_text(f"[server]\nlisten = {listen}\nplugin_dir = {pdir}\n"
                    "[route /echo]\nhandler = echo\n"
                    "[admin]\n" + "".join(f"{x}\n" for x in admin_lines))
    r = subprocess.run([str(snowd_binary()), "-t", "-c", str(conf)],
                       capture_output=True, text=True, timeout=15)
    return conf, r


@pytest.mark.parametrize("lines,line,words", [
    (["listen = nonsense"], 7, "listen: 'nonsense' is not ADDRESS:PORT"),
    (["listen = 127.0.0.1"], 7, "is not ADDRESS:PORT"),
    (["listen = 127.0.0.1:0"], 7, "is not ADDRESS:PORT"),
    (["listen = [::1:9090"], 7, "is not ADDRESS:PORT"),
    (["port = 9090"], 7, "unknown key 'port' in [admin]"),
    (["listen = 127.0.0.1:9090", "listen = 127.0.0.1:9091"], 8,
     "'listen' is set twice in [admin]"),
    (["listen = 127.0.0.1:8080"], 7, "is also a [server] listen (line 2)"),
])
def test_bad_admin_config_fails_the_test(tmp_path, lines, line, words):
    conf, r = check(tmp_path, lines)
    assert r.returncode == 1, r
    assert f"{conf}:{line}: " in r.stderr and words in r.stderr, r.stderr


@pytest.mark.parametrize("addr", ["127.0.0.1:9090", "[::1]:9090",
                                  "*:9090"])
def test_good_admin_config_passes_the_test(tmp_path, addr):
    conf, r = check(tmp_path, [f"listen = {addr}"])
    assert r.returncode == 0, r.stderr


def test_admin_address_in_use_stops_the_start(admin):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        d = admin(start=False, admin_listen=f"127.0.0.1:{port}")
        d.start(wait=False)
        assert d.wait_exit() == 1
    assert re.search(rf"snowd\.ini:\d+: \[admin\] listen 127\.0\.0\.1:{port}:"
                     r" Address already in use", d.log()), d.log()


def test_admin_on_ipv6_loopback(admin):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    port = free_port()
    d = admin(workers=1, admin_listen=f"[::1]:{port}")
    assert http(port, b"GET /healthz HTTP/1.1\r\n\r\n",
                host="::1").status == 200
    assert Path(d.config).read_text().count("[admin]") == 1
