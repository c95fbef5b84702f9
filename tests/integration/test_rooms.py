"""Rooms: join, leave, publish, room sizes and presence, within a worker
and across workers; members that end, crash or lose their worker; slow
members under the route's backpressure policy; fairness between rooms;
bad input; a thousand members in one room.

The actors are connections of tests/plugins/roomkit.c, driven by text
commands (see its header), served at /rooms (backpressure = close, the
default) and /rooms-drop (backpressure = drop).  Messages that tests
publish start with "pub:" (or are the "SEQ TAG N ..." messages of
roomkit's pubn), so that a client tells room messages written to its
socket from the replies to its commands."""
import collections
import multiprocessing
import os
import resource
import select
import selectors
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from conftest import (DEFAULT_ROUTES, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG,
                      OP_TEXT, TOP_BUILDDIR, ConnectionClosed, RawClient,
                      build_frame, close_payload, make_plugin_dir,
                      parse_line, wait_until)

MiB = 1024                       # RSS figures are in KiB
CRASH_ASAN = "handle_segv=0:handle_abort=0"
ROOM_ROUTES = {
    "/rooms": {"handler": "roomkit"},
    "/rooms-drop": {"handler": "roomkit", "backpressure": "drop"},
}
WHERE = ["same", "cross"]


# ---- the daemon -------------------------------------------------------------

def roomkit_so():
    """tests/plugins/.libs/roomkit.so of the build: $SNOWD_ROOMKIT, else
    beside the actorkit.so of $SNOWD_PLUGINS, else in $top_builddir."""
    env = os.environ.get("SNOWD_ROOMKIT")
    if env:
        return Path(env)
    for p in os.environ.get("SNOWD_PLUGINS", "").split(":"):
        if p.endswith("/actorkit.so"):
            cand = Path(p).with_name("roomkit.so")
            if cand.is_file():
                return cand
    return TOP_BUILDDIR / "tests/plugins/.libs/roomkit.so"


@pytest.fixture
def rooms(snowd_factory, tmp_path):
    """Starts a daemon serving roomkit at /rooms and /rooms-drop (and the
    usual routes).  crashes=True: the test kills a worker on purpose."""
    made = []

    def make(workers=1, limits=None, server=None, crashes=False, **kw):
        so = roomkit_so()
        if not so.is_file():
            pytest.fail(f"roomkit plugin not found: {so} (run `make check "
                        "TESTS=`, or set SNOWD_ROOMKIT)", pytrace=False)
        pdir = make_plugin_dir(tmp_path / f"rk-plugins{len(made)}",
                               extra=[so])
        routes = dict(DEFAULT_ROUTES)
        routes.update(ROOM_ROUTES)
        srv = {"workers": str(workers)}
        srv.update(server or {})
        if crashes:
            kw.update(asan_options=CRASH_ASAN, worker_deaths_ok=True)
        d = snowd_factory(server=srv, limits=limits, routes=routes,
                          plugin_dir=pdir, **kw)
        made.append(d)
        return d
    return make


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n:
        want = n if hard == resource.RLIM_INFINITY else min(n, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < n:
        pytest.skip(f"open-files limit {soft} < {n}")


# ---- a roomkit connection ---------------------------------------------------

def is_room_text(payload):
    return payload == b"" or payload.startswith((b"pub:", b"SEQ "))


class RoomClient:
    """A connection to roomkit.  Each command gets one reply; what else
    arrives is kept: "info ..." lines (from its on_info) in self.infos,
    room messages written to the socket in self.msgs as (opcode, bytes)."""

    def __init__(self, port, path="/rooms", timeout=10.0, rcvbuf=None):
        self.raw = RawClient(port, timeout=timeout, rcvbuf=rcvbuf)
        self.raw.handshake(path)
        self.timeout = timeout
        self.infos = []
        self.msgs = []
        self.close_frame = None
        me = self.cmd_kv("whoami")
        assert me["_"] == "me", me
        self.slot = int(me["slot"])
        self.ospid = int(me["ospid"])
        self.pid = int(me["pid"])

    @property
    def tag(self):
        """The publisher tag of its pubn messages (its pid, by default)."""
        return str(self.pid)

    def send(self, cmd):
        """A command: str as a text frame, bytes as a binary frame (which
        may carry bytes that are not UTF-8)."""
        if isinstance(cmd, str):
            self.raw.send_text(cmd)
        else:
            self.raw.send_binary(cmd)

    def _next(self, timeout):
        """Reads one frame; returns it if it is a reply, else keeps it and
        returns None."""
        if not self.raw.buf:
            r, _, _ = select.select([self.raw.sock], [], [], timeout)
            if not r:
                raise TimeoutError("nothing from the server in time")
        f = self.raw.recv_frame(max(timeout, 5.0))
        if f.opcode in (OP_PING, OP_PONG):
            return None
        if f.opcode == OP_CLOSE:
            self.close_frame = f
            raise ConnectionClosed(f"close frame {f!r}")
        if f.opcode == OP_TEXT and not is_room_text(f.payload):
            text = f.payload.decode()
            if text.startswith("info "):
                self.infos.append(text)
                return None
            return text
        self.msgs.append((f.opcode, f.payload))
        return None

    def reply(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            msg = self._next(max(0.0, deadline - time.monotonic()))
            if msg is not None:
                return msg

    def cmd(self, cmd, timeout=None):
        self.send(cmd)
        return self.reply(timeout)

    def cmd_kv(self, cmd, timeout=None):
        return parse_line(self.cmd(cmd, timeout))

    def wait_msgs(self, n, timeout=None):
        """The first n room messages (removed from self.msgs)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while len(self.msgs) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(self.msgs)} of {n} room "
                                     f"messages in {timeout}s: {self.msgs}")
            try:
                msg = self._next(left)
            except TimeoutError:
                continue
            assert msg is None, f"unexpected reply {msg!r}"
        out, self.msgs = self.msgs[:n], self.msgs[n:]
        return out

    def wait_info(self, match=None, timeout=None):
        """The first info line (parsed) that match() accepts, removed."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        match = match or (lambda i: True)
        while True:
            for i, line in enumerate(self.infos):
                info = parse_line(line)
                if match(info):
                    del self.infos[i]
                    return info
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching info within {timeout}s; "
                                     f"have {self.infos!r}")
            try:
                msg = self._next(left)
            except TimeoutError:
                continue
            assert msg is None, f"unexpected reply {msg!r}"

    def drain(self, seconds):
        """Reads what arrives within `seconds` (no reply may); returns
        (msgs, infos) held, and forgets them."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                msg = self._next(left)
            except TimeoutError:
                break
            assert msg is None, f"unexpected reply {msg!r}"
        out = (self.msgs, [parse_line(i) for i in self.infos])
        self.msgs, self.infos = [], []
        return out

    def closes(self):
        """Ends the connection with a close handshake."""
        self.raw.send_close(1000)
        f = self.raw.recv_close(skip_data=True)
        assert f.close_code == 1000, f
        assert self.raw.wait_eof(10)
        self.close()

    def close(self):
        self.raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def clients_at(d, slots, path="/rooms", tries=128, **kw):
    """RoomClients on the given worker slots, in order (a slot may
    repeat): opens connections until each wanted slot has its client."""
    want = list(slots)
    got = [None] * len(want)
    spare = []
    for _ in range(tries):
        c = RoomClient(d.port, path, **kw)
        for i, s in enumerate(want):
            if got[i] is None and s == c.slot:
                got[i] = c
                break
        else:
            spare.append(c)
        if all(got):
            break
    for c in spare:
        c.close()
    if not all(got):
        for c in got:
            if c:
                c.close()
        pytest.fail(f"{tries} connections did not cover slots {want}")
    return got


def closing(*groups):
    """Closes every client of the given lists (for finally blocks)."""
    for g in groups:
        for c in (g if isinstance(g, (list, tuple)) else [g]):
            if c is not None:
                c.close()


def wait_size(c, room, n, timeout=10.0):
    """Polls "size ROOM" on c until it answers n (other workers' counts
    follow asynchronously); fails with the last answer."""
    last = []

    def check():
        last.append(c.cmd(f"size {room}"))
        return last[-1] == f"size {n}"
    assert wait_until(check, timeout), \
        f"size {room} on worker {c.slot}: want {n}, last {last[-1]!r}"


def info_is(kind, room=None, frm=None):
    def match(i):
        return (i["_"] == f"info {kind}" and
                (room is None or i.get("room") == room) and
                (frm is None or i.get("from") == str(frm)))
    return match


def seqs_of(msgs):
    """tag -> [seq, ...] of the "SEQ TAG N ..." messages among msgs."""
    out = collections.defaultdict(list)
    for op, payload in msgs:
        if payload.startswith(b"SEQ "):
            _, tag, n = payload[:80].split(b" ", 3)[:3]
            out[tag.decode()].append(int(n))
    return out


# ---- frames on many sockets -------------------------------------------------

class Stream:
    """Parses the server frames of one socket as they come: text replies,
    SEQ room messages (checked for order per tag), close frames."""

    def __init__(self, raw):
        self.raw = raw
        self.sock = raw.sock
        self.buf = bytearray(raw.buf)
        raw.buf = b""
        self.texts = []                 # replies and other text messages
        self.next = {}                  # tag -> next SEQ expected
        self.nseq = 0
        self.errors = []                # SEQ messages out of order
        self.close_code = None
        self.eof = False

    def feed(self, data):
        self.buf += data
        buf = self.buf
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            ln, head = b1 & 0x7F, 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if n - pos < head + ln:
                break
            start = pos + head
            pos = start + ln
            op = b0 & 0x0F
            if op == OP_TEXT and buf[start:start + 4] == b"SEQ ":
                self.on_seq(bytes(buf[start:start + min(ln, 80)]))
            elif op == OP_TEXT:
                self.texts.append(bytes(buf[start:pos]).decode())
            elif op == OP_CLOSE:
                self.close_code = (struct.unpack_from("!H", buf, start)[0]
                                   if ln >= 2 else 0)
        del buf[:pos]

    def on_seq(self, head):
        _, tag, seq = head.split(b" ", 3)[:3]
        seq = int(seq)
        want = self.next.get(tag, 0)
        if seq != want and len(self.errors) < 10:
            self.errors.append(f"{tag.decode()}: got {seq}, want {want}")
        self.next[tag] = seq + 1
        self.nseq += 1

    def read_some(self):
        try:
            data = self.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except (ConnectionResetError, OSError):
            self.eof = True
            return
        if not data:
            self.eof = True
            return
        self.feed(data)


class Fleet:
    """Many Streams read from one thread with epoll."""

    def __init__(self, streams):
        self.streams = list(streams)
        self.sel = selectors.DefaultSelector()
        for s in self.streams:
            s.sock.setblocking(False)
            self.sel.register(s.sock, selectors.EVENT_READ, s)

    def drop(self, s):
        try:
            self.sel.unregister(s.sock)
        except (KeyError, ValueError):
            pass

    def read_until(self, done, streams, timeout, what):
        """Reads every socket until done(s) holds for each of `streams`;
        fails after timeout with a count of those still waiting."""
        deadline = time.monotonic() + timeout
        pending = [s for s in streams if not done(s)]
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                ex = pending[0]
                raise AssertionError(
                    f"{len(pending)} of {len(streams)} clients still "
                    f"waiting for {what} after {timeout}s; e.g. nseq="
                    f"{ex.nseq} texts={ex.texts[-3:]} close={ex.close_code}"
                    f" eof={ex.eof}")
            for key, _ in self.sel.select(min(left, 1.0)):
                key.data.read_some()
                if key.data.eof:
                    self.drop(key.data)
            pending = [s for s in pending if not done(s)]

    def read_for(self, seconds):
        """Reads whatever arrives within `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for key, _ in self.sel.select(left):
                key.data.read_some()
                if key.data.eof:
                    self.drop(key.data)

    def close(self):
        self.sel.close()
        for s in self.streams:
            s.raw.close()


class Reader(threading.Thread):
    """Reads one member's socket as fast as it can, in a thread, checking
    the SEQ messages of each publisher tag: in_order=True wants 0, 1, 2,
    ... exactly; False (a member whose messages may be dropped) wants
    them increasing only."""

    def __init__(self, client, in_order=True):
        super().__init__(daemon=True)
        self.client = client
        self.stream = Stream(client.raw)
        self.in_order = in_order
        self.done = threading.Event()
        self.fed = threading.Condition()
        self.others = []           # payload heads of non-SEQ messages
        if not in_order:
            self.stream.on_seq = self._on_seq_increasing
        orig_feed = self.stream.feed

        def feed(data):
            before = len(self.stream.texts)
            orig_feed(data)
            self.others += self.stream.texts[before:]
            del self.stream.texts[before:]
        self.stream.feed = feed

    def _on_seq_increasing(self, head):
        s = self.stream
        _, tag, seq = head.split(b" ", 3)[:3]
        seq = int(seq)
        last = s.next.get(tag, 0) - 1
        if seq <= last and len(s.errors) < 10:
            s.errors.append(f"{tag.decode()}: got {seq} after {last}")
        s.next[tag] = seq + 1
        s.nseq += 1

    @property
    def nseq(self):
        return self.stream.nseq

    def next_of(self, tag):
        return self.stream.next.get(str(tag).encode(), 0)

    def run(self):
        sock = self.stream.sock
        sock.settimeout(0.1)
        while not self.done.is_set():
            try:
                data = sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                self.stream.eof = True
                return
            if not data:
                self.stream.eof = True
                return
            with self.fed:
                self.stream.feed(data)
                self.fed.notify_all()
        with self.fed:
            self.fed.notify_all()

    def wait_nseq(self, n, timeout):
        """Waits until n SEQ messages have come; False if they did not
        within timeout (or the stream ended)."""
        deadline = time.monotonic() + timeout
        with self.fed:
            while self.stream.nseq < n:
                left = deadline - time.monotonic()
                if left <= 0 or self.stream.eof or not self.is_alive():
                    return False
                self.fed.wait(min(left, 0.5))
        return True

    def stop(self):
        self.done.set()
        self.join(10)


# ---- joining and publishing -------------------------------------------------

def test_members_get_published_messages_on_their_sockets(rooms):
    d = rooms()
    a, b, p = (RoomClient(d.port) for _ in range(3))
    try:
        assert a.cmd("join lobby") == "ok"
        assert b.cmd("join lobby") == "ok"
        assert p.cmd("size lobby") == "size 2"
        assert p.cmd("pub lobby pub:hello") == "ok"
        assert p.cmd("pubb lobby pub:\x01bin") == "ok"
        assert p.cmd("pub lobby ") == "ok"                 # empty message
        for c in (a, b):
            assert c.wait_msgs(3) == [(OP_TEXT, b"pub:hello"),
                                      (OP_BINARY, b"pub:\x01bin"),
                                      (OP_TEXT, b"")]
        # The largest message, and one byte more.
        r = p.cmd_kv("pubn lobby 1 65536")
        assert (r["ok"], r["err"]) == ("1", "-"), r
        r = p.cmd_kv("pubn lobby 1 65537")
        assert (r["ok"], r["other"], r["err"]) == ("0", "1", "ETOOBIG"), r
        for c in (a, b):
            (op, payload), = c.wait_msgs(1)
            assert op == OP_TEXT and len(payload) == 65536
            assert payload.startswith(f"SEQ {p.tag} 0 ".encode())
        # The publisher is no member: only its replies came back.  No
        # plugin code ran for the members' default delivery.
        assert p.cmd("ping") == "pong" and p.msgs == [] and p.infos == []
        for c in (a, b):
            st = c.cmd_kv("stats")
            assert st["room"] == "0" and c.infos == [], st
            assert c.msgs == []
    finally:
        closing(a, b, p)


def test_join_twice_is_eexist_and_leave_twice_enoent(rooms):
    d = rooms()
    a, b = RoomClient(d.port), RoomClient(d.port)
    try:
        assert a.cmd("join r") == "ok"
        for how in ("join", "joininfo", "joinpresence", "joinall"):
            assert a.cmd(f"{how} r") == "err EEXIST"
        assert a.cmd("size r") == "size 1"
        assert b.cmd("leave r") == "err ENOENT"       # membership is a's
        assert a.cmd("leave r") == "ok"
        assert a.cmd("leave r") == "err ENOENT"
        assert a.cmd("leave never-joined") == "err ENOENT"
        assert a.cmd("size r") == "size 0"
        assert a.cmd("join r") == "ok"                # joins again
        assert b.cmd("join r") == "ok"
        assert a.cmd("size r") == "size 2"
        # Names are exact bytes.
        for other in ("R", "r ", " r", "rr"):
            assert a.cmd(f"size {other}") == "size 0", other
        assert b.cmd("pub r pub:again") == "ok"
        for c in (a, b):
            assert c.wait_msgs(1) == [(OP_TEXT, b"pub:again")]
    finally:
        closing(a, b)


def test_publish_to_a_room_without_members(rooms):
    d = rooms()
    a, p = RoomClient(d.port), RoomClient(d.port)
    try:
        assert p.cmd("pub nobody pub:x") == "ok"
        assert p.cmd("pubb nobody pub:x") == "ok"
        assert p.cmd("pubx nobody pub:x") == "ok"
        r = p.cmd_kv("pubn nobody 20 100")
        assert (r["ok"], r["other"], r["err"]) == ("20", "0", "-"), r
        assert p.cmd("size nobody") == "size 0"
        # A room whose members all left is empty again.
        assert a.cmd("join gone") == "ok"
        assert a.cmd("leave gone") == "ok"
        assert p.cmd("pub gone pub:late") == "ok"
        assert p.cmd("size gone") == "size 0"
        assert a.cmd("ping") == "pong"
        assert a.msgs == [] and p.msgs == []
    finally:
        closing(a, p)


# Names that every room call refuses with EINVAL.
BAD_NAMES = [
    ("empty", b""),
    ("129 bytes", b"r" * 129),
    ("130 bytes of 2-byte characters", "\u00e9".encode() * 65),
    ("C0 control", b"a\x01b"),
    ("tab", b"a\tb"),
    ("newline", b"a\nb"),
    ("carriage return", b"a\rb"),
    ("unit separator", b"\x1f"),
    ("DEL", b"a\x7fb"),
    ("C1 control NEL (U+0085)", "a\u0085b".encode()),
    ("lone continuation byte", b"a\x80b"),
    ("truncated sequence", b"a\xc3"),
    ("overlong encoding", b"\xc0\xaf"),
    ("UTF-16 surrogate", b"\xed\xa0\x80"),
    ("beyond U+10FFFF", b"\xf4\x90\x80\x80"),
    ("0xff", b"\xff"),
]


@pytest.mark.parametrize("name", [n for _, n in BAD_NAMES],
                         ids=[i for i, _ in BAD_NAMES])
def test_bad_room_names_are_einval(rooms, name):
    d = rooms()
    c, member = RoomClient(d.port), RoomClient(d.port)
    try:
        assert member.cmd("join good") == "ok"
        # Binary frames: the name may not be UTF-8.
        for how in (b"join", b"joininfo", b"joinpresence", b"joinall",
                    b"size"):
            assert c.cmd(how + b" " + name) == "err EINVAL", how
        assert c.cmd(b"joinf 0 " + name) == "err EINVAL"
        assert c.cmd(b"leave " + name) == "err EINVAL"
        for how in (b"pub", b"pubx", b"pubb"):
            assert c.cmd(how + b" " + name + b" pub:x") == "err EINVAL", how
        r = c.cmd_kv(b"pubn " + name + b" 1 10")
        assert (r["ok"], r["other"], r["err"]) == ("0", "1", "EINVAL"), r
        # Nothing was joined, nothing crashed, nobody got anything.
        assert c.cmd("ping") == "pong"
        assert member.cmd("ping") == "pong"
        assert member.cmd("size good") == "size 1"
        assert c.msgs == [] and member.msgs == [] and member.infos == []
    finally:
        closing(c, member)


GOOD_NAMES = [
    ("1 byte", b"r"),
    ("128 bytes", b"r" * 128),
    ("128 bytes of 2-byte characters", "\u00e9".encode() * 64),
    ("128 bytes of 4-byte characters", "\U0001f600".encode() * 32),
    ("printable ASCII", b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
]


@pytest.mark.parametrize("name", [n for _, n in GOOD_NAMES],
                         ids=[i for i, _ in GOOD_NAMES])
def test_room_name_bounds(rooms, name):
    d = rooms()
    a, p = RoomClient(d.port), RoomClient(d.port)
    try:
        assert a.cmd(b"join " + name) == "ok"
        assert p.cmd(b"size " + name) == "size 1"
        assert p.cmd(b"pub " + name + b" pub:bound") == "ok"
        assert a.wait_msgs(1) == [(OP_TEXT, b"pub:bound")]
        assert a.cmd(b"leave " + name) == "ok"
        assert p.cmd(b"size " + name) == "size 0"
    finally:
        closing(a, p)


def test_a_room_name_may_hold_spaces(rooms):
    d = rooms()
    a = RoomClient(d.port)
    try:
        assert a.cmd("join two words") == "ok"
        assert a.cmd("size two words") == "size 1"
        assert a.cmd("size two") == "size 0"
        assert a.cmd("leave two words") == "ok"
    finally:
        a.close()


def test_bad_publish_arguments(rooms):
    d = rooms()
    a, p = RoomClient(d.port), RoomClient(d.port)
    try:
        assert a.cmd("join r") == "ok"
        assert p.cmd(b"pub r pub:\xff\xfe") == "err EUTF8"  # text, not UTF-8
        assert p.cmd(b"pub r pub:\xed\xa0\x80") == "err EUTF8"
        assert p.cmd(b"pubb r pub:\xff\xfe") == "ok"        # binary is fine
        assert p.cmd("pubk 0 0 r pub:x") == "err EINVAL"     # kinds
        assert p.cmd("pubk 3 0 r pub:x") == "err EINVAL"
        assert p.cmd("pubk 1 2 r pub:x") == "err EINVAL"     # unknown flag
        assert p.cmd("pubk 1 0 r pub:kind1") == "ok"
        assert p.cmd("pubk 2 1 r pub:kind2") == "ok"
        assert a.wait_msgs(3) == [(OP_BINARY, b"pub:\xff\xfe"),
                                  (OP_TEXT, b"pub:kind1"),
                                  (OP_BINARY, b"pub:kind2")]
        assert a.cmd("joinf 4 s") == "err EINVAL"            # unknown flags
        assert a.cmd("joinf 255 s") == "err EINVAL"
        assert a.cmd("size s") == "size 0"
        assert a.cmd("ping") == "pong" and a.msgs == []
    finally:
        closing(a, p)


def test_rooms_per_actor_limit(rooms):
    d = rooms()
    a, o = RoomClient(d.port), RoomClient(d.port)
    try:
        r = a.cmd_kv("joinmany 1025 many-", timeout=60)
        assert (r["ok"], r["err"]) == ("1024", "EFULL"), r
        assert a.cmd("join one-more") == "err EFULL"
        assert o.cmd("size many-0") == "size 1"
        assert o.cmd("size many-1023") == "size 1"
        assert o.cmd("size many-1024") == "size 0"
        assert a.cmd("leave many-0") == "ok"
        assert a.cmd("join one-more") == "ok"
        assert a.cmd("join many-0") == "err EFULL"
        a.closes()
        for room in ("many-1", "many-1023", "one-more"):
            wait_size(o, room, 0)
    finally:
        closing(a, o)


@pytest.mark.parametrize("where", WHERE)
def test_exclude_self(rooms, where):
    d = rooms(workers=1 if where == "same" else 2)
    p, a = clients_at(d, [0, 0] if where == "same" else [0, 1])
    try:
        assert p.cmd("join r") == "ok" and a.cmd("join r") == "ok"
        wait_size(p, "r", 2)
        wait_size(a, "r", 2)
        assert p.cmd("pubx r pub:1") == "ok"
        assert p.cmd("pub r pub:2") == "ok"
        assert a.wait_msgs(2) == [(OP_TEXT, b"pub:1"), (OP_TEXT, b"pub:2")]
        # One publisher's messages arrive in order: had pub:1 reached the
        # publisher, it would have come first.
        assert p.wait_msgs(1) == [(OP_TEXT, b"pub:2")]
        # The same for a member that takes room messages in on_info.
        assert p.cmd("leave r") == "ok" and p.cmd("joininfo r") == "ok"
        assert p.cmd("pubx r pub:3") == "ok"
        assert p.cmd("pub r pub:4") == "ok"
        assert a.wait_msgs(2) == [(OP_TEXT, b"pub:3"), (OP_TEXT, b"pub:4")]
        i = p.wait_info(info_is("room", "r"))
        assert i["data"] == "pub:4" and i["from"] == str(p.pid), i
    finally:
        closing(p, a)


@pytest.mark.parametrize("where", WHERE)
def test_join_info_delivers_room_messages_to_on_info(rooms, where):
    d = rooms(workers=1 if where == "same" else 2)
    a, b, p = clients_at(d, [0, 0, 0] if where == "same" else [0, 0, 1])
    try:
        assert a.cmd("joininfo r") == "ok"
        assert b.cmd("join r") == "ok"
        wait_size(p, "r", 2)
        assert p.cmd("pub r pub:hi") == "ok"
        assert p.cmd("pubb r pub:\x01bin") == "ok"
        i = a.wait_info(info_is("room"))
        assert (i["room"], i["from"], i["kind"], i["len"], i["data"]) == \
            ("r", str(p.pid), "1", "6", "pub:hi"), i
        i = a.wait_info(info_is("room"))
        assert (i["kind"], i["len"], i["data"]) == ("2", "8", "pub:?bin"), i
        assert b.wait_msgs(2) == [(OP_TEXT, b"pub:hi"),
                                  (OP_BINARY, b"pub:\x01bin")]
        # A member that publishes gets its own message too.
        assert a.cmd("pub r pub:mine") == "ok"
        i = a.wait_info(info_is("room"))
        assert (i["from"], i["data"]) == (str(a.pid), "pub:mine"), i
        assert b.wait_msgs(1) == [(OP_TEXT, b"pub:mine")]
        # The largest message reaches on_info whole.
        r = p.cmd_kv("pubn r 1 65536")
        assert r["ok"] == "1", r
        i = a.wait_info(info_is("room"))
        assert (i["len"], i["data"][:6]) == ("65536", f"SEQ {p.tag}"[:6]), i
        (op, payload), = b.wait_msgs(1)
        assert len(payload) == 65536
        # Nothing was written to a's socket; its on_info saw 4 messages.
        st = a.cmd_kv("stats")
        assert st["room"] == "4" and a.msgs == [], (st, a.msgs)
        # In order, per publisher, through on_info as well.
        assert a.cmd("quiet 1") == "ok"
        r = p.cmd_kv("pubn r 300 100")
        assert r["ok"] == "300", r
        seen = b.wait_msgs(300)
        assert seqs_of(seen) == {p.tag: list(range(1, 301))}
        assert wait_until(lambda: a.cmd_kv("stats")["room"] == "304", 10)
        st = a.cmd_kv("stats")
        assert st["ooo"] == "0" and st["gaps"] == "0", st
    finally:
        closing(a, b, p)


@pytest.mark.parametrize("where", WHERE)
def test_presence_events(rooms, where):
    d = rooms(workers=1 if where == "same" else 2)
    there = 0 if where == "same" else 1
    w, plain, e, a, b, c, f = clients_at(
        d, [0, 0, 0, there, there, there, there])
    try:
        # Members already there are not announced to a new one.
        assert plain.cmd("join r") == "ok"
        assert w.cmd("joinpresence r") == "ok"
        wait_size(a, "r", 2)
        assert a.cmd("join r") == "ok"
        assert w.wait_info(info_is("join", "r", a.pid))
        assert b.cmd("joininfo r") == "ok"
        assert w.wait_info(info_is("join", "r", b.pid))
        assert a.cmd("leave r") == "ok"
        assert w.wait_info(info_is("leave", "r", a.pid))
        b.closes()                                   # ended: left
        assert w.wait_info(info_is("leave", "r", b.pid))
        assert c.cmd("join r") == "ok"
        assert w.wait_info(info_is("join", "r", c.pid))
        c.send("crash")                              # crashed: left
        assert c.raw.recv_close(skip_data=True).close_code == 1011
        assert w.wait_info(info_is("leave", "r", c.pid))
        # Presence and room messages on on_info together.
        assert e.cmd("joinall r") == "ok"
        assert w.wait_info(info_is("join", "r", e.pid))
        assert f.cmd("join r") == "ok"
        for x in (w, e):
            assert x.wait_info(info_is("join", "r", f.pid))
        assert f.cmd("pub r pub:with-presence") == "ok"
        i = e.wait_info(info_is("room", "r", f.pid))
        assert i["data"] == "pub:with-presence"
        assert w.wait_msgs(1) == [(OP_TEXT, b"pub:with-presence")]
        f.send("fail")
        assert f.raw.recv_close(skip_data=True).close_code == 1011
        for x in (w, e):
            assert x.wait_info(info_is("leave", "r", f.pid))
        # Nothing else: no event about oneself, none for a member that
        # did not ask for presence.
        msgs, infos = w.drain(0.3)
        assert infos == [] and msgs == [], (msgs, infos)
        msgs, infos = e.drain(0.3)
        assert infos == [] and msgs == [], (msgs, infos)
        st = plain.cmd_kv("stats")
        assert (st["joins"], st["leaves"]) == ("0", "0"), st
        assert plain.drain(0.3) == ([(OP_TEXT, b"pub:with-presence")], [])
        st = w.cmd_kv("stats")
        assert (st["joins"], st["leaves"]) == ("5", "4"), st
    finally:
        closing(w, plain, e, a, b, c, f)


# ---- membership follows the life of actors ----------------------------------

@pytest.mark.parametrize("where", WHERE)
def test_ended_and_crashed_members_leave(rooms, where):
    d = rooms(workers=1 if where == "same" else 2)
    there = 0 if where == "same" else 1
    o, a, b, c, e, f, g = clients_at(d, [0] + [there] * 6)
    try:
        for x in (a, b, c, e, f, g):
            assert x.cmd("join r") == "ok"
            assert x.cmd("join other") == "ok"
        for x in (o, g):
            wait_size(x, "r", 6)
        a.closes()                                       # close handshake
        wait_size(o, "r", 5)
        b.send("crash")                                  # on_message -1
        assert b.raw.recv_close(skip_data=True).close_code == 1011
        wait_size(o, "r", 4)
        c.send("fail")                                   # snow_fail
        assert c.raw.recv_close(skip_data=True).close_code == 1011
        wait_size(o, "r", 3)
        e.send("stop")                                   # snow_stop
        assert e.raw.recv_close(skip_data=True).close_code == 1000
        wait_size(o, "r", 2)
        f.raw.reset()                                    # TCP reset
        wait_size(o, "r", 1)
        wait_size(g, "r", 1)
        wait_size(o, "other", 1)
        # The members that remain are unaffected.
        assert o.cmd("pub r pub:still") == "ok"
        assert o.cmd("pub other pub:too") == "ok"
        assert g.wait_msgs(2) == [(OP_TEXT, b"pub:still"),
                                  (OP_TEXT, b"pub:too")]
        assert g.cmd("leave r") == "ok"
        wait_size(o, "r", 0)
        g.closes()
        wait_size(o, "other", 0)
    finally:
        closing(o, a, b, c, e, f, g)


# ---- across workers ---------------------------------------------------------

def test_publish_across_workers_both_ways_in_order(rooms):
    d = rooms(workers=2)
    m0, m1, p0, p1 = clients_at(d, [0, 1, 0, 1])
    try:
        assert m0.cmd("join r") == "ok" and m1.cmd("join r") == "ok"
        for p in (p0, p1):
            wait_size(p, "r", 2)
        assert p0.cmd("pub r pub:from0") == "ok"
        for m in (m0, m1):
            assert m.wait_msgs(1) == [(OP_TEXT, b"pub:from0")]
        assert p1.cmd("pub r pub:from1") == "ok"
        for m in (m0, m1):
            assert m.wait_msgs(1) == [(OP_TEXT, b"pub:from1")]
        # Two publishers, one per worker, at once: every member gets
        # each one's messages exactly once and in order.  The members
        # publish too.
        pubs = (p0, p1, m0, m1)
        for _ in range(5):
            for p in pubs:
                p.send("pubn r 100 200")
        for p in pubs:
            for _ in range(5):
                r = parse_line(p.reply())
                assert (r["ok"], r["efull"], r["other"]) == \
                    ("100", "0", "0"), r
        want = {p.tag: list(range(500)) for p in pubs}
        for m in (m0, m1):
            assert seqs_of(m.wait_msgs(2000)) == want
        assert p0.msgs == [] and p1.msgs == []
    finally:
        closing(m0, m1, p0, p1)


def test_room_size_across_workers(rooms):
    d = rooms(workers=2)
    a0, b0, c0, a1, b1 = clients_at(d, [0, 0, 0, 1, 1])
    try:
        assert a0.cmd("join r") == "ok"
        # This worker's members are counted exactly, at once.
        assert a0.cmd("size r") == "size 1"
        assert b0.cmd("join r") == "ok" and c0.cmd("join r") == "ok"
        assert a0.cmd("size r") == "size 3"
        assert a1.cmd("join r") == "ok"
        assert int(a1.cmd("size r").split()[1]) >= 1
        assert b1.cmd("join r") == "ok"
        assert int(b1.cmd("size r").split()[1]) >= 2
        for x in (a0, a1):
            wait_size(x, "r", 5)
        assert a0.cmd("leave r") == "ok"
        for x in (a0, a1):
            wait_size(x, "r", 4)
        a1.closes()
        for x in (a0, b1):
            wait_size(x, "r", 3)
        b0.send("crash")
        assert b0.raw.recv_close(skip_data=True).close_code == 1011
        for x in (a0, b1):
            wait_size(x, "r", 2)
        for x in (c0, b1):
            assert x.cmd("leave r") == "ok"
        for x in (a0, b1):
            wait_size(x, "r", 0)
    finally:
        closing(a0, b0, c0, a1, b1)


def test_a_joined_member_gets_every_later_publish_from_any_worker(rooms):
    """Once snow_join returns, a publish from another worker reaches the
    new member: no poll, no delay, also for the first member of a room
    in its worker."""
    d = rooms(workers=2)
    m, p = clients_at(d, [1, 0])
    try:
        for i in range(40):
            room = f"fresh{i}"
            assert m.cmd(f"join {room}") == "ok"
            assert p.cmd(f"pub {room} pub:{i}") == "ok"
            assert m.wait_msgs(1) == [(OP_TEXT, f"pub:{i}".encode())], i
    finally:
        closing(m, p)


def test_worker_crash_drops_its_members(rooms):
    d = rooms(workers=2, crashes=True)
    m0 = clients_at(d, [0, 0, 0])
    m1 = clients_at(d, [1, 1, 1])
    o0, = clients_at(d, [0])
    try:
        for x in m0 + m1:
            assert x.cmd("join r") == "ok"
        wait_size(o0, "r", 6)
        wait_size(m1[0], "r", 6)
        old = m1[0].ospid
        mark = d.log_mark()
        m1[0].send("segv")
        for x in m1:
            assert x.raw.wait_eof(10), "a client of the dead worker stayed"
        assert d.wait_log_re(rf"worker 1 \(pid {old}\) killed by signal 11",
                             10, mark), d.log()[-3000:]
        d.wait_respawn(1, old)
        wait_size(o0, "r", 3)
        # The survivors still get messages, from both workers.
        assert o0.cmd("pub r pub:after") == "ok"
        for x in m0:
            assert x.wait_msgs(1) == [(OP_TEXT, b"pub:after")]
        n1, = clients_at(d, [1])
        try:
            wait_size(n1, "r", 3)         # the new worker knows the counts
            assert n1.cmd("join r") == "ok"
            wait_size(o0, "r", 4)
            assert n1.cmd("pub r pub:new-worker") == "ok"
            assert o0.cmd("pub r pub:old-worker") == "ok"
            for x in m0:
                got = x.wait_msgs(2)
                assert sorted(got) == [(OP_TEXT, b"pub:new-worker"),
                                       (OP_TEXT, b"pub:old-worker")]
            got = n1.wait_msgs(2)
            assert sorted(got) == [(OP_TEXT, b"pub:new-worker"),
                                   (OP_TEXT, b"pub:old-worker")]
        finally:
            n1.close()
        wait_size(o0, "r", 3)
    finally:
        closing(m0, m1, o0)


def test_presence_reports_members_lost_with_their_worker(rooms):
    """Members of a worker that dies have ended: presence members
    elsewhere hear that they left (SNOW_MSG_LEAVE: "left room (or
    ended)"), once each, in every room; a member that left before the
    crash is not announced again."""
    d = rooms(workers=2, crashes=True)
    w, = clients_at(d, [0])
    m1 = clients_at(d, [1, 1, 1])
    try:
        assert w.cmd("joinpresence r") == "ok"
        assert w.cmd("joinpresence s") == "ok"
        for x in m1:
            assert x.cmd("join r") == "ok"
            assert w.wait_info(info_is("join", "r", x.pid))
        assert m1[0].cmd("join s") == "ok"
        assert w.wait_info(info_is("join", "s", m1[0].pid))
        gone_before = m1[2]
        assert gone_before.cmd("leave r") == "ok"
        assert w.wait_info(info_is("leave", "r", gone_before.pid))
        old = m1[0].ospid
        m1[0].send("segv")
        for x in m1:
            assert x.raw.wait_eof(10)
        d.wait_respawn(1, old)
        wait_size(w, "r", 1)
        for x in m1[:2]:
            assert w.wait_info(info_is("leave", "r", x.pid), timeout=10)
        assert w.wait_info(info_is("leave", "s", m1[0].pid), timeout=10)
        _, infos = w.drain(1.0)
        assert not infos, f"more presence events than members lost: {infos}"
    finally:
        closing(w, m1)


# ---- slow members -----------------------------------------------------------

BACKPRESSURE = "64K"
FLOOD_MSG = 16 * 1024        # 4 per round: one round is exactly 64K
FLOOD_ROUNDS = 2560          # 160 MiB offered to every member
RSS_BOUND = 48 * MiB


def flood_paced(d, p, room, rounds, reader, msgs=4, size=FLOOD_MSG):
    """p publishes `rounds` bursts of `msgs` messages to `room`, one per
    reply, as fast as the member that `reader` reads takes them: a
    burst goes once that member has all but the previous one (which the
    kernel's socket buffers hold), so that it never has more than a
    burst queued in snowd.  A member that reads slower than that is
    over max_backpressure by its own doing.  Returns the peak worker
    RSS seen (KiB)."""
    peak = d.workers_rss_kib()
    for r in range(rounds):
        assert reader.wait_nseq(msgs * (r - 1), 30), \
            f"round {r}: the reading member has only {reader.nseq} " \
            f"messages, errors {reader.stream.errors}"
        rep = p.cmd_kv(f"pubn {room} {msgs} {size}", 30)
        assert (rep["ok"], rep["other"]) == (str(msgs), "0"), (r, rep)
        if r % 32 == 0:
            peak = max(peak, d.workers_rss_kib())
    return max(peak, d.workers_rss_kib())


def test_slow_member_with_drop_policy(rooms):
    """A member that never reads, on a `backpressure = drop` route: its
    room messages are dropped past max_backpressure (the connection
    stays), its snow_send fails with EFULL, the worker's memory stays
    bounded, and a member that reads gets every message."""
    d = rooms(limits={"max_backpressure": BACKPRESSURE})
    fast = RoomClient(d.port, "/rooms-drop")
    slow = RoomClient(d.port, "/rooms-drop", rcvbuf=4096)
    p, ctl = RoomClient(d.port), RoomClient(d.port)
    reader = Reader(fast)
    try:
        assert fast.cmd("join flood") == "ok"
        assert slow.cmd("join flood") == "ok"
        reader.start()
        base = d.workers_rss_kib()
        peak = flood_paced(d, p, "flood", FLOOD_ROUNDS, reader)
        total = 4 * FLOOD_ROUNDS
        assert wait_until(lambda: reader.next_of(p.tag) >= total, 60), \
            f"the reading member got {reader.nseq} of {total}"
        assert reader.stream.errors == [], reader.stream.errors
        assert reader.nseq == total and reader.others == []
        offered = total * FLOOD_MSG // 1024
        assert offered > 3 * RSS_BOUND
        assert peak - base < RSS_BOUND, \
            f"worker RSS grew by {(peak - base) // MiB} MiB while " \
            f"{offered // MiB} MiB were offered to a member that never reads"
        # The slow member is still there, and its own sends are refused.
        assert ctl.cmd("size flood") == "size 2"
        assert ctl.cmd(f"ask {slow.pid} send 10 1000") == "ok"
        i = ctl.wait_info(info_is("answer", frm=slow.pid))
        assert i["data"] == \
            "send ok=0 efull=10 closed=0 other=0 err=EFULL", i
        assert "send ok=0 efull=10 closed=0" in d.log()
        # Once it reads, its backlog drains: a message published then
        # reaches it (those published before it has drained are
        # dropped, so publish until one arrives).  It had a part of the
        # flood, in order.
        seen = []
        for i in range(200):
            assert p.cmd(f"pub flood pub:after{i}") == "ok"
            msgs, _ = slow.drain(0.25)
            seen += msgs
            if any(m.startswith(b"pub:after") for _, m in msgs):
                break
        else:
            pytest.fail(f"nothing published reached the member after it "
                        f"read {len(seen)} messages")
        got = seqs_of(seen).get(p.tag, [])
        assert got == sorted(set(got)), "duplicates or disorder"
        assert 0 < len(got) < total, len(got)
        assert slow.cmd("ping") == "pong"
        assert p.cmd("pub flood pub:again") == "ok"
        assert slow.wait_msgs(1) == [(OP_TEXT, b"pub:again")]
    finally:
        reader.stop()
        closing(fast, slow, p, ctl)


def test_slow_member_with_close_policy(rooms):
    """A member that never reads, on a `backpressure = close` route: it
    is closed with 1008 (logged), it leaves the room, the worker's
    memory stays bounded, and a member that reads gets every message."""
    d = rooms(limits={"max_backpressure": BACKPRESSURE,
                      "close_timeout": "60s"})
    fast = RoomClient(d.port)
    slow = RoomClient(d.port, rcvbuf=4096)
    p = RoomClient(d.port)
    reader = Reader(fast)
    try:
        assert fast.cmd("join flood") == "ok"
        assert slow.cmd("join flood") == "ok"
        reader.start()
        mark = d.log_mark()
        base = d.workers_rss_kib()
        peak = flood_paced(d, p, "flood", FLOOD_ROUNDS, reader)
        total = 4 * FLOOD_ROUNDS
        assert wait_until(lambda: reader.next_of(p.tag) >= total, 60), \
            f"the reading member got {reader.nseq} of {total}"
        assert reader.stream.errors == [], reader.stream.errors
        assert reader.nseq == total and reader.others == []
        assert d.wait_log_re(r"route /rooms: connection \d+: output over "
                             r"max_backpressure \(\d+ bytes queued\); "
                             r"closing with 1008", 10, mark), d.log()[-3000:]
        offered = total * FLOOD_MSG // 1024
        assert offered > 3 * RSS_BOUND
        assert peak - base < RSS_BOUND, \
            f"worker RSS grew by {(peak - base) // MiB} MiB while " \
            f"{offered // MiB} MiB were offered to a member that never reads"
        # What it reads now: the first messages, without a gap, then
        # the close frame.
        with pytest.raises(ConnectionClosed):
            while True:
                slow._next(30)
        assert slow.close_frame.close_code == 1008, slow.close_frame
        assert slow.close_frame.close_reason == "too slow: output backlog"
        got = seqs_of(slow.msgs).get(p.tag, [])
        assert got == list(range(len(got))) and len(got) < total
        # It is a member until its connection ends.
        slow.close()
        wait_size(p, "flood", 1)
    finally:
        reader.stop()
        closing(fast, slow, p)


@pytest.mark.parametrize("policy", ["close", "drop"])
def test_send_to_a_client_that_never_reads(rooms, policy):
    d = rooms(limits={"max_backpressure": BACKPRESSURE,
                      "close_timeout": "60s"})
    path = "/rooms" if policy == "close" else "/rooms-drop"
    slow = RoomClient(d.port, path, rcvbuf=4096)
    ctl = RoomClient(d.port)
    try:
        mark = d.log_mark()
        base = d.workers_rss_kib()
        # 64 MiB in one callback: far more than the socket takes.
        assert ctl.cmd(f"ask {slow.pid} send 4096 16384") == "ok"
        i = ctl.wait_info(info_is("answer", frm=slow.pid), timeout=60)
        r = parse_line(i["data"])
        ok, efull, closed = int(r["ok"]), int(r["efull"]), int(r["closed"])
        assert r["other"] == "0" and ok + efull + closed == 4096, r
        assert 0 < ok < 4096, r
        if policy == "close":
            assert (efull, r["err"]) == (0, "ECLOSED"), r
            assert d.wait_log_re(r"output over max_backpressure .*"
                                 r"closing with 1008", 10, mark)
        else:
            assert (closed, r["err"]) == (0, "EFULL"), r
            assert "closing with 1008" not in d.log()[mark:]
        assert d.workers_rss_kib() - base < RSS_BOUND
        # The client reads what was accepted, in full, then ...
        n = 0
        try:
            while n < ok:
                f = slow.raw.recv_frame(30)
                assert f.opcode == OP_TEXT and len(f.payload) == 16384, f
                n += 1
            if policy == "close":
                assert slow.raw.recv_close(30).close_code == 1008
            else:
                assert slow.cmd("ping") == "pong"     # ... goes on
                assert ctl.cmd(f"ask {slow.pid} send 1 10") == "ok"
                i = ctl.wait_info(info_is("answer", frm=slow.pid))
                assert i["data"].startswith("send ok=1 "), i
        except ConnectionClosed as e:
            pytest.fail(f"after {n} of {ok} messages: {e}")
    finally:
        closing(slow, ctl)


def test_input_waits_while_room_traffic_holds_the_output(rooms):
    """A client with more than max_backpressure of output queued is not
    read from until its queue drains (README, "Bounds") -- also when
    room messages put it there.  So a command it sends meanwhile is
    handled once it has read its backlog, and the reply reaches it
    (rather than being refused with EFULL under `backpressure =
    drop`)."""
    d = rooms(limits={"max_backpressure": BACKPRESSURE})
    slow = RoomClient(d.port, "/rooms-drop", rcvbuf=4096)
    p, ctl = RoomClient(d.port), RoomClient(d.port)
    try:
        assert slow.cmd("join r") == "ok"
        # Publish until the kernel's buffers are full and snowd holds
        # more than max_backpressure for it: its snow_send says EFULL.
        for _ in range(500):
            r = p.cmd_kv("pubn r 16 16384")
            assert r["ok"] == "16", r
            assert ctl.cmd(f"ask {slow.pid} send 1 10") == "ok"
            i = ctl.wait_info(info_is("answer", frm=slow.pid))
            if i["data"].startswith("send ok=0 efull=1 "):
                break
            # (a send that went through is read below as a reply)
            assert i["data"].startswith("send ok=1 "), i
        else:
            pytest.fail("the output never went over max_backpressure")
        sent = int(r["next"])
        mark = d.log_mark()
        slow.send("send 1 5")
        replies = []
        try:
            while not replies or not replies[-1].startswith("send "):
                replies.append(slow.reply(timeout=15))
        except TimeoutError:
            handled = [line for line in d.log()[mark:].splitlines()
                       if "roomkit: send " in line]
            pytest.fail(f"no reply after the backlog; the command was "
                        f"handled meanwhile: {handled}")
        # Earlier asked-for sends that went through, then this command's
        # own message of 5 bytes, then its report.
        assert set(replies[:-2]) <= {"s" * 10}, replies
        assert replies[-2] == "s" * 5, replies
        assert replies[-1].startswith("send ok=1 efull=0 "), replies
        got = seqs_of(slow.msgs).get(p.tag, [])
        assert got == sorted(set(got)) and 0 < len(got) < sent
    finally:
        closing(slow, p, ctl)


# ---- fairness ---------------------------------------------------------------

class Flooder:
    """Floods a room from one connection without pause: a thread writes
    pubn commands as long as the socket takes them, so that snowd always
    has more of this connection's input waiting; another thread reads
    the replies and counts the messages accepted."""

    BATCH = 256

    def __init__(self, client, room, msgs=8, size=4096):
        self.c = client
        self.sock = client.raw.sock
        self.sock.settimeout(None)
        self.blob = b"".join(build_frame(OP_TEXT, f"pubn {room} {msgs} "
                                         f"{size}")
                             for _ in range(self.BATCH))
        self.stream = Stream(client.raw)
        self.sent = 0            # commands written
        self.replies = 0
        self.accepted = 0
        self.efull = 0
        self.errors = []
        self.halt = threading.Event()
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.reader = threading.Thread(target=self._read, daemon=True)

    def start(self):
        self.writer.start()
        self.reader.start()

    def _write(self):
        try:
            while not self.halt.is_set():
                self.sock.sendall(self.blob)
                self.sent += self.BATCH
        except OSError as e:
            self.errors.append(f"write: {e!r}")

    def _read(self):
        try:
            while not (self.halt.is_set() and not self.writer.is_alive()
                       and self.replies >= self.sent):
                data = self.sock.recv(1 << 16)
                if not data:
                    self.errors.append("read: end of stream")
                    return
                self.stream.feed(data)
                for text in self.stream.texts:
                    r = parse_line(text)
                    if r.get("_") != "pubn" or r.get("other") != "0":
                        self.errors.append(text)
                        continue
                    self.replies += 1
                    self.accepted += int(r["ok"])
                    self.efull += int(r["efull"])
                self.stream.texts = []
        except OSError as e:
            self.errors.append(f"read: {e!r}")

    @property
    def running(self):
        return self.writer.is_alive() and self.reader.is_alive()

    def stop(self):
        """Stops writing, then waits for the replies to every command."""
        self.halt.set()
        self.writer.join(60)
        assert not self.writer.is_alive(), "the flood writer is stuck"
        self.reader.join(60)
        assert not self.reader.is_alive(), \
            f"{self.replies} replies to {self.sent} commands"
        assert self.errors == [], self.errors
        self.sock.settimeout(self.c.timeout)


def publish_retrying(p, cmd, tries=2000):
    """A publish that may find the channel to the other workers full
    (EFULL: nobody got it) is tried again."""
    for _ in range(tries):
        r = p.cmd(cmd)
        if r != "err EFULL":
            return r
        time.sleep(0.005)
    return r


# Where the actors are: flooder, flood member, second room's publisher,
# its member, a plain connection.
FAIRNESS = {
    "one-worker": [0, 0, 0, 0, 0],
    # The flood comes into worker 1 from worker 0; room B is local to 1.
    "flood-from-elsewhere": [0, 1, 1, 1, 1],
    # Room B crosses the same channel as the flood.
    "shared-channel": [0, 1, 0, 1, 1],
}


def flood_child(fl, ma, room, halt, progress, results):
    """In a process of its own (so that the test's own clients do not
    wait for this one's Python threads): floods `room` through fl with a
    Flooder, reads the member ma, and publishes progress (commands
    written, replies, messages ma got) until `halt`.  Then checks that
    ma got the flood in order and that a message published after the
    flood still reaches it, and puts ("ok", accepted, efull, got) or
    ("error", text) into results."""
    import traceback
    flooder = reader = None
    try:
        reader = Reader(ma, in_order=False)
        flooder = Flooder(fl, room, msgs=16)
        reader.start()
        flooder.start()
        while not halt.wait(0.005):
            progress[:] = [flooder.sent, flooder.replies, reader.nseq]
            if flooder.errors or not flooder.running:
                break
        progress[:] = [flooder.sent, flooder.replies, reader.nseq]
        flooder.stop()
        # A message published once the flood is over reaches the member
        # (tried again while it finds the member's queue, or the
        # channel, full).
        for _ in range(300):
            r = parse_line(fl.cmd(f"pubn {room} 1 10"))
            seq = int(r["next"]) - 1
            if r["ok"] == "1" and wait_until(
                    lambda: reader.next_of(fl.tag) > seq, 1.0):
                break
        else:
            raise AssertionError(f"no message reached the flood member "
                                 f"after the flood; it has {reader.nseq}")
        assert reader.stream.errors == [], reader.stream.errors
        results.put(("ok", flooder.accepted, flooder.efull, reader.nseq))
    except BaseException:
        results.put(("error", traceback.format_exc()))
    finally:
        if flooder:
            flooder.halt.set()
        if reader:
            reader.stop()


@pytest.mark.parametrize("layout", list(FAIRNESS))
def test_a_flooded_room_does_not_starve_other_rooms(rooms, layout):
    """One connection floods room A and never lets up: its commands wait
    in snowd's input all along.  Meanwhile room B's messages go one at a
    time, each once the previous one arrived, and a plain connection
    pings.  All of them are served while the flood goes on: the flood
    was under way before, and when the last one is done, the flood's
    commands are still waiting.  Nothing is timed: a daemon that served
    the flood first would not deliver B until the flood ends, which it
    does not until B is done."""
    slots = FAIRNESS[layout]
    d = rooms(workers=1 if layout == "one-worker" else 2,
              limits={"max_backpressure": "8M"})
    fl, = clients_at(d, [slots[0]])
    ma, = clients_at(d, [slots[1]], path="/rooms-drop")
    pb, mb, plain = clients_at(d, slots[2:])
    ctx = multiprocessing.get_context("fork")
    halt, results = ctx.Event(), ctx.Queue()
    progress = ctx.Array("q", 3, lock=False)      # sent, replies, ma got
    child = None
    try:
        assert ma.cmd("join A") == "ok" and mb.cmd("join B") == "ok"
        wait_size(fl, "A", 1)
        wait_size(pb, "B", 1)
        child = ctx.Process(target=flood_child, daemon=True,
                            args=(fl, ma, "A", halt, progress, results))
        child.start()
        assert wait_until(lambda: (progress[1] >= 100 and
                                   progress[2] >= 1000) or
                          not child.is_alive(), 30), \
            f"the flood did not start: {list(progress)}"
        assert child.is_alive(), results.get(timeout=5)
        interleaved = []      # flood commands done while each B went
        for i in range(20):
            before = progress[1]
            assert publish_retrying(pb, f"pub B pub:b{i}") == "ok"
            assert mb.wait_msgs(1, timeout=60) == \
                [(OP_TEXT, f"pub:b{i}".encode())], i
            assert plain.cmd("ping", timeout=60) == "pong"
            interleaved.append(progress[1] - before)
        sent, replies, _ = list(progress)
        waiting = sent - replies
        assert child.is_alive(), results.get(timeout=5)
        halt.set()
        res = results.get(timeout=120)
        assert res[0] == "ok", res[1]
        # The flood was not over when B's last message had arrived.
        assert waiting > 0, (sent, replies, interleaved)
        assert mb.msgs == [] and plain.msgs == []
    finally:
        halt.set()
        if child is not None:
            child.join(60)
            if child.is_alive():
                child.kill()
        closing(fl, ma, pb, mb, plain)


def test_a_stalled_master_does_not_block_a_publishing_worker(rooms):
    """Publishes to members in other workers go through the master.
    While the master does not read (here: stopped), they fill the
    channel and snow_publish refuses the rest with EFULL ("nobody got
    it"), and the publisher's worker keeps serving its connections.
    Once the master reads again, the accepted messages arrive, in
    order."""
    # The far member must be able to hold the whole backlog the master
    # releases at once (~32 MiB), or its route's policy closes it: that
    # is tested elsewhere.
    d = rooms(workers=2, server={"hang_timeout": "0"},
              limits={"max_backpressure": "64M"})
    p, plain = clients_at(d, [0, 0])
    far, = clients_at(d, [1])
    stopped = False
    try:
        assert far.cmd("join r") == "ok"
        wait_size(p, "r", 1)
        os.kill(d.pid, signal.SIGSTOP)
        stopped = True
        # Far more than the channel holds.
        r = p.cmd_kv("pubn r 2000 60000", timeout=60)
        accepted = int(r["ok"])
        assert r["other"] == "0" and int(r["efull"]) > 0, r
        assert plain.cmd("ping", timeout=20) == "pong", \
            "the worker stopped serving while the master did not read"
        assert p.cmd("ping", timeout=20) == "pong"
        os.kill(d.pid, signal.SIGCONT)
        stopped = False
        got = far.wait_msgs(accepted, timeout=60)
        assert seqs_of(got) == {p.tag: list(range(accepted))}
        assert plain.cmd("ping") == "pong"
    finally:
        if stopped:
            os.kill(d.pid, signal.SIGCONT)
        closing(p, plain, far)


# ---- a thousand members -----------------------------------------------------

def test_thousand_members_across_two_workers(rooms):
    """1000 connections in one room over 2 workers, two publishers (one
    per worker): every member gets every message exactly once, in each
    publisher's order; the room size follows joins, leaves, closes,
    resets and crashes; members that left get nothing more."""
    n = 1000
    raise_nofile(n + 200)
    d = rooms(workers=2)
    p0, p1 = clients_at(d, [0, 1])
    raws = []
    fleet = None
    try:
        for _ in range(n):
            c = RawClient(d.port, timeout=10)
            c.handshake("/rooms")
            raws.append(c)
        for c in raws:
            c.send(build_frame(OP_TEXT, "whoami") +
                   build_frame(OP_TEXT, "join big"))
        members = [Stream(c) for c in raws]
        fleet = Fleet(members)
        fleet.read_until(lambda s: len(s.texts) >= 2, members, 60,
                         "whoami and join replies")
        slots = collections.Counter()
        for s in members:
            me, ok = s.texts[:2]
            assert me.startswith("me slot=") and ok == "ok", s.texts
            slots[int(parse_line(me)["slot"])] += 1
            s.texts = []
        assert set(slots) == {0, 1} and min(slots.values()) >= n // 10, \
            slots
        for p in (p0, p1):
            wait_size(p, "big", n)

        def publish(count):
            for _ in range(count // 25):
                for p in (p0, p1):
                    p.send("pubn big 25 64")
            for p in (p0, p1):
                for _ in range(count // 25):
                    r = parse_line(p.reply(30))
                    assert (r["ok"], r["efull"], r["other"]) == \
                        ("25", "0", "0"), r

        publish(100)
        fleet.read_until(lambda s: s.nseq >= 200, members, 120,
                         "200 room messages")
        tags = {p.tag.encode() for p in (p0, p1)}
        for s in members:
            assert s.errors == [] and s.nseq == 200, (s.errors, s.nseq)
            assert s.next == {t: 100 for t in tags}, s.next

        # Membership changes: 100 leave, 100 close, 50 reset, 50 crash.
        leavers, closers = members[:100], members[100:200]
        resetters, crashers = members[200:250], members[250:300]
        stay = members[300:]
        for s in leavers:
            s.raw.send(build_frame(OP_TEXT, "leave big"))
        for s in closers:
            s.raw.send(build_frame(OP_CLOSE, close_payload(1000)))
        for s in crashers:
            s.raw.send(build_frame(OP_TEXT, "crash"))
        for s in resetters:
            fleet.drop(s)
            s.raw.reset()
        fleet.read_until(lambda s: s.texts == ["ok"], leavers, 30,
                         "leave replies")
        fleet.read_until(lambda s: s.close_code is not None,
                         closers + crashers, 30, "close frames")
        assert {s.close_code for s in closers} == {1000}
        assert {s.close_code for s in crashers} == {1011}
        left = n - 300
        for p in (p0, p1):
            wait_size(p, "big", left)

        publish(50)
        fleet.read_until(lambda s: s.nseq >= 300, stay, 120,
                         "100 more room messages")
        for s in stay:
            assert s.errors == [] and s.nseq == 300, (s.errors, s.nseq)
            assert s.next == {t: 150 for t in tags}, s.next
        fleet.read_for(0.3)
        for s in leavers:
            assert s.nseq == 200 and s.texts == ["ok"], (s.nseq, s.texts)

        for s in members:
            fleet.drop(s)
            s.raw.close()
        for p in (p0, p1):
            wait_size(p, "big", 0, timeout=30)
    finally:
        if fleet is not None:
            fleet.close()
        closing(raws, p0, p1)
