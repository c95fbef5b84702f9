"""Fixtures and helpers for the snowd integration tests.

The real daemon is started as a subprocess on a free loopback port with a
configuration written for each test.  Everything speaks to it over plain
sockets so that any byte sequence can be sent.

Environment:
  SNOWD          path to the snowd binary (default: <top_builddir>/snowd,
                 <top_builddir> being $top_builddir or the repository root)
  SNOWD_PLUGINS  colon-separated plugin .so files linked into a temporary
                 plugin_dir (default: the build tree's echo.so and
                 testkit.so)
"""
import base64
import hashlib
import os
import select
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TOP_BUILDDIR = Path(os.environ.get("top_builddir") or REPO)

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                   "ThreadSanitizer", "MemorySanitizer")

START_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0


# ---- locating the build ----------------------------------------------------

def snowd_binary():
    path = Path(os.environ.get("SNOWD") or TOP_BUILDDIR / "snowd")
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"snowd binary not found or not executable: {path} "
                    "(build it, or set SNOWD)", pytrace=False)
    return path


def plugin_files():
    env = os.environ.get("SNOWD_PLUGINS")
    if env:
        files = [Path(p) for p in env.split(":") if p]
    else:
        files = [TOP_BUILDDIR / "plugins/.libs/echo.so",
                 TOP_BUILDDIR / "tests/plugins/.libs/testkit.so"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing or not files:
        pytest.fail("plugin(s) not found: " + ", ".join(missing) +
                    " (run `make check TESTS=`, or set SNOWD_PLUGINS)",
                    pytrace=False)
    return files


def include_dir():
    return REPO / "include"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- configuration -----------------------------------------------------------

DEFAULT_ROUTES = {
    "/echo": {"handler": "echo"},
    "/kit": {"handler": "testkit"},
    "/reject": {"handler": "reject"},
    "/proto": {"handler": "testkit", "subprotocols": "chat.v2, chat.v1, x"},
    "/origin": {"handler": "testkit",
                "origins": "https://good.example http://localhost:8080"},
}

DEFAULT_LIMITS = {
    "handshake_timeout": "10s",
    "ping_interval": "0",
    "idle_timeout": "0",
    "close_timeout": "2s",
}


def render_config(port, plugin_dir, limits=None, routes=None, server=None,
                  listens=None):
    lines = ["[server]"]
    for addr in (listens or [f"127.0.0.1:{port}"]):
        lines.append(f"listen = {addr}")
    lines.append(f"plugin_dir = {plugin_dir}")
    srv = {"log_level": "debug"}
    srv.update(server or {})
    for k, v in srv.items():
        if v is not None:
            lines.append(f"{k} = {v}")
    lines += ["", "[limits]"]
    lim = dict(DEFAULT_LIMITS)
    lim.update(limits or {})
    for k, v in lim.items():
        if v is not None:
            lines.append(f"{k} = {v}")
    for path, keys in (DEFAULT_ROUTES if routes is None else routes).items():
        lines += ["", f"[route {path}]"]
        for k, v in keys.items():
            lines.append(f"{k} = {v}")
    return "\n".join(lines) + "\n"


def make_plugin_dir(directory, extra=None):
    """A folder with symlinks to the plugins (and any extra files)."""
    directory.mkdir(parents=True, exist_ok=True)
    for f in plugin_files():
        link = directory / f.name
        if not link.exists():
            link.symlink_to(f.resolve())
    for f in extra or []:
        link = directory / Path(f).name
        if not link.exists():
            link.symlink_to(Path(f).resolve())
    return directory


# ---- the daemon ----------------------------------------------------------------

class Daemon:
    def __init__(self, workdir, limits=None, routes=None, server=None,
                 plugin_dir=None, listens=None, port=None):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binary = snowd_binary()
        self.port = port or free_port()
        self.plugin_dir = plugin_dir or make_plugin_dir(self.dir / "plugins")
        self.config = self.dir / "snowd.ini"
        self.config.write_text(render_config(self.port, self.plugin_dir,
                                             limits, routes, server, listens))
        self.logfile = self.dir / "snowd.log"
        self.proc = None
        self.checked = False

    def start(self, wait=True):
        env = dict(os.environ)
        # Keep ASan's quarantine small so that RSS checks stay meaningful
        # under sanitizer builds (no effect on a plain build).
        env.setdefault("ASAN_OPTIONS", "quarantine_size_mb=16")
        with open(self.logfile, "wb") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "-c", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"snowd exited early with {self.proc.returncode}:"
                            f"\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port),
                                              timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        pytest.fail(f"snowd did not accept on port {self.port} within "
                    f"{timeout}s:\n{self.log()}")

    @property
    def pid(self):
        return self.proc.pid

    def url(self, path="/echo"):
        return f"ws://127.0.0.1:{self.port}{path}"

    def log(self):
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, text, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            time.sleep(0.02)
        return False

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"snowd did not exit within {timeout}s:\n{self.log()}")

    def client(self, path="/echo", timeout=5.0, **kw):
        c = RawClient(self.port, timeout=timeout)
        c.handshake(path, **kw)
        return c

    def stop(self):
        """SIGTERM, bounded wait, then the crash and sanitizer checks."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.wait_exit()
        self.check()

    def check(self):
        if self.checked:
            return
        self.checked = True
        rc = self.proc.returncode
        log = self.log()
        assert rc is None or rc >= 0, \
            f"snowd died from signal {-rc}:\n{log}"
        for mark in SANITIZER_MARKS:
            assert mark not in log, f"sanitizer report in the log:\n{log}"


@pytest.fixture
def snowd_factory(tmp_path):
    """Makes started daemons; all are stopped and checked at teardown."""
    daemons = []

    def make(start=True, **kw):
        d = Daemon(tmp_path / f"d{len(daemons)}", **kw)
        daemons.append(d)
        if start:
            d.start()
        return d

    yield make
    errors = []
    for d in daemons:
        try:
            d.stop()
        except BaseException as e:  # report every daemon, then fail
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def snowd(snowd_factory):
    return snowd_factory()


# ---- frames --------------------------------------------------------------------

def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True,
                mask_key=None, length_form=None, length=None):
    """A client frame.  rsv is a 3-bit value (RSV1=4, RSV2=2, RSV3=1);
    length_form forces the 7, 16 or 64-bit length encoding; length
    overrides the advertised payload length."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    mbit = 0x80 if mask else 0
    if length_form is None:
        length_form = 7 if n < 126 else 16 if n <= 0xFFFF else 64
    if length_form == 7:
        head = struct.pack("!BB", b0, mbit | n)
    elif length_form == 16:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return head + key + apply_mask(payload, key)


def apply_mask(data, key):
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(
        n, "big")


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


class Frame:
    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode = fin, rsv, opcode
        self.masked, self.payload = masked, payload

    @property
    def close_code(self):
        assert self.opcode == OP_CLOSE, self
        if len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def close_reason(self):
        return self.payload[2:].decode("utf-8")

    def __repr__(self):
        p = self.payload if len(self.payload) <= 40 else \
            self.payload[:40] + b"...(%d bytes)" % len(self.payload)
        return (f"Frame(fin={self.fin}, rsv={self.rsv}, op={self.opcode:#x},"
                f" masked={self.masked}, payload={p!r})")


def accept_for(key):
    digest = hashlib.sha1((key + WS_GUID).encode()).digest()
    return base64.b64encode(digest).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


class Response:
    def __init__(self, status, reason, headers, raw):
        self.status, self.reason = status, reason
        self.headers = headers          # lower-case name -> list of values
        self.raw = raw

    def header(self, name):
        v = self.headers.get(name.lower())
        return v[0] if v else None

    def __repr__(self):
        return f"Response({self.raw!r})"


class ConnectionClosed(Exception):
    pass


class RawClient:
    """A socket speaking raw bytes, with helpers for HTTP and frames."""

    def __init__(self, port, timeout=5.0, host="127.0.0.1",
                 family=socket.AF_INET):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.connect((host, port))
        self.port = port
        self.host = host
        self.buf = b""
        self.timeout = timeout
        self.response = None
        self.key = None

    # -- plumbing
    def send(self, data):
        self.sock.sendall(data)

    def send_slowly(self, data, pause=0.002):
        """One byte per send(2), with a pause so that each is read apart."""
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            time.sleep(pause)

    def _fill(self, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("no data from the server in time")
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                raise ConnectionClosed("connection reset")
            if not chunk:
                raise ConnectionClosed("end of stream")
            self.buf += chunk
            return

    def read_exact(self, n, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self._fill(max(0.0, deadline - time.monotonic()))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        """Closes abruptly: SO_LINGER 0 makes the kernel send a RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
        self.sock.close()

    def wait_eof(self, timeout=None):
        """True once the server has closed the stream (FIN or RST);
        bytes that arrive first are kept in self.buf."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(max(0.0, deadline - time.monotonic()))
            except ConnectionClosed:
                return True
            except TimeoutError:
                return False

    # -- HTTP
    def request_bytes(self, path="/echo", key=None, headers=None,
                      method="GET", version="HTTP/1.1", omit=()):
        self.key = key if key is not None else new_key()
        base = [("Host", f"{self.host}:{self.port}"),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", self.key),
                ("Sec-WebSocket-Version", "13")]
        omit = {o.lower() for o in omit}
        lines = [f"{method} {path} {version}"]
        lines += [f"{k}: {v}" for k, v in base if k.lower() not in omit]
        lines += [f"{k}: {v}" for k, v in (headers or [])]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def read_response(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(max(0.0, deadline - time.monotonic()))
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status, reason = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        resp = Response(int(status), reason, headers, head)
        cl = resp.header("content-length")
        if cl is not None and resp.status != 101:
            resp.body = self.read_exact(int(cl),
                                        max(0.0, deadline - time.monotonic()))
        self.response = resp
        return resp

    def handshake(self, path="/echo", expect=101, **kw):
        self.send(self.request_bytes(path, **kw))
        resp = self.read_response()
        assert resp.status == expect, resp
        return resp

    # -- frames
    def send_frame(self, opcode, payload=b"", **kw):
        self.send(build_frame(opcode, payload, **kw))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str)
                        else text)

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_close(self, code=None, reason=b""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    def recv_frame(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout

        def left():
            return max(0.0, deadline - time.monotonic())

        b0, b1 = self.read_exact(2, left())
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2, left()))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8, left()))[0]
        masked = bool(b1 & 0x80)
        key = self.read_exact(4, left()) if masked else None
        payload = self.read_exact(n, left()) if n else b""
        if masked:
            payload = apply_mask(payload, key)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, masked,
                     payload)

    def recv_message(self, timeout=None):
        """Next data message (server frames are whole; pings skipped)."""
        while True:
            f = self.recv_frame(timeout)
            if f.opcode in (OP_PING, OP_PONG):
                continue
            assert f.opcode != OP_CLOSE, f"unexpected close: {f!r}"
            assert f.fin and f.rsv == 0 and not f.masked, f
            return f

    def recv_text(self, timeout=None):
        f = self.recv_message(timeout)
        assert f.opcode == OP_TEXT, f
        return f.payload.decode("utf-8")

    def recv_close(self, timeout=None, skip_data=False):
        """Reads frames up to the server's close frame and returns it."""
        while True:
            f = self.recv_frame(timeout)
            if f.opcode == OP_CLOSE:
                assert f.fin and not f.masked and f.rsv == 0, f
                return f
            assert f.opcode in (OP_PING, OP_PONG) or skip_data, \
                f"expected a close frame, got {f!r}"

    def expect_close(self, code, timeout=None, eof=True):
        """The server sends a close frame with `code`, then ends the
        stream."""
        f = self.recv_close(timeout)
        assert f.close_code == code, f"expected close {code}, got {f!r}"
        if eof:
            assert self.wait_eof(timeout), "server did not close the socket"
        return f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
