"""Fixtures and helpers for the snowd integration tests.

The real daemon is started as a subprocess on a free loopback port with a
configuration written for each test.  Everything speaks to it over plain
sockets so that any byte sequence can be sent.

snowd runs as a master (the process the tests start) and `workers`
worker processes, its children.  The default config asks for one worker;
tests of the process model ask for more.

Environment:
  SNOWD          path to the snowd binary (default: <top_builddir>/snowd,
                 <top_builddir> being $top_builddir or the repository root)
  SNOWD_PLUGINS  colon-separated plugin .so files linked into a temporary
                 plugin_dir (default: the build tree's echo.so, counter.so,
                 ticker.so, chat.so, testkit.so and actorkit.so)
"""
import base64
import hashlib
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
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
                 TOP_BUILDDIR / "plugins/.libs/counter.so",
                 TOP_BUILDDIR / "plugins/.libs/ticker.so",
                 TOP_BUILDDIR / "plugins/.libs/chat.so",
                 TOP_BUILDDIR / "tests/plugins/.libs/testkit.so",
                 TOP_BUILDDIR / "tests/plugins/.libs/actorkit.so"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing or not files:
        pytest.fail("plugin(s) not found: " + ", ".join(missing) +
                    " (run `make check TESTS=`, or set SNOWD_PLUGINS)",
                    pytrace=False)
    return files


def require_root():
    if os.geteuid() != 0:
        pytest.fail("this test switches users: run the suite as root",
                    pytrace=False)


@pytest.fixture
def public_dir():
    """A folder every user may read, holding copies of the plugins in
    plugins/ (removed afterwards): for tests whose daemon runs as
    nobody."""
    d = Path(tempfile.mkdtemp(prefix="snowd-public-"))
    try:
        d.chmod(0o755)
        plugins = d / "plugins"
        plugins.mkdir()
        plugins.chmod(0o755)
        for f in plugin_files():
            shutil.copy(f.resolve(), plugins / f.name)
            (plugins / f.name).chmod(0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


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
    "/actors": {"handler": "actorkit"},
    "/counter": {"handler": "counter"},
    "/ticker": {"handler": "ticker"},
}

# One worker unless a test asks for more (server={"workers": N}), so that
# every connection of a test meets the same process; None leaves a key
# out (workers = auto).
DEFAULT_SERVER = {
    "log_level": "debug",
    "workers": "1",
}

DEFAULT_LIMITS = {
    "handshake_timeout": "10s",
    "ping_interval": "0",
    "idle_timeout": "0",
    "close_timeout": "2s",
}


def render_config(port, plugin_dir, limits=None, routes=None, server=None,
                  listens=None, extra=None):
    """The config file's text; `extra` is appended as it is (sections such
    as [tls])."""
    lines = ["[server]"]
    for addr in (listens or [f"127.0.0.1:{port}"]):
        lines.append(f"listen = {addr}")
    lines.append(f"plugin_dir = {plugin_dir}")
    srv = dict(DEFAULT_SERVER)
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
    if extra:
        lines += ["", extra.strip("\n")]
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


# ---- processes -------------------------------------------------------------------

def _proc_stat(pid):
    """The fields of /proc/PID/stat after the command name, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def pid_alive(pid):
    """True while pid is a process that has not ended (zombies have)."""
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def worker_pids(master_pid):
    """The master's child processes (its workers), sorted."""
    kids = set()
    try:
        for task in os.listdir(f"/proc/{master_pid}/task"):
            try:
                with open(f"/proc/{master_pid}/task/{task}/children") as f:
                    kids.update(int(p) for p in f.read().split())
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        return []
    if not kids and not os.path.exists(f"/proc/{master_pid}/task/"
                                       f"{master_pid}/children"):
        # Kernels without /proc/PID/task/TID/children: scan parent pids.
        for d in os.listdir("/proc"):
            if d.isdigit():
                st = _proc_stat(d)
                if st and int(st[1]) == master_pid:
                    kids.add(int(d))
    return sorted(p for p in kids if pid_alive(p))


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def proc_cpu_ticks(pid):
    st = _proc_stat(pid)
    return 0 if st is None else int(st[11]) + int(st[12])   # utime + stime


def proc_maps(pid):
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


def wait_until(predicate, timeout, interval=0.02):
    """Polls predicate until it returns a true value (returned) or the
    time is up (the last value is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def _tcp_inode(local_port, remote_port):
    """The inode of the IPv4 socket 127.0.0.1:local_port connected to
    remote_port, from /proc/net/tcp, or None."""
    want_l, want_r = f"{local_port:04X}", f"{remote_port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if (fields[1].endswith(":" + want_l) and
                    fields[2].endswith(":" + want_r)):
                return fields[9]
    return None


def serving_pid(daemon, client, timeout=5.0):
    """The worker process holding the server side of client's socket."""
    local = client.sock.getsockname()[1]

    def find():
        inode = _tcp_inode(daemon.port, local)
        if inode is None:
            return None
        target = f"socket:[{inode}]"
        for pid in daemon.worker_pids():
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                            return pid
                    except OSError:
                        pass
            except OSError:
                pass
        return None
    return wait_until(find, timeout)


READY_RE = re.compile(r"worker (\d+) \(pid (\d+)\) ready")
DEATH_RE = re.compile(r"worker \d+ \(pid \d+\) (killed by signal|exited "
                      r"with status [1-9]|did not answer)[^\n]*")


# ---- the daemon ----------------------------------------------------------------

class Daemon:
    def __init__(self, workdir, limits=None, routes=None, server=None,
                 plugin_dir=None, listens=None, port=None, asan_options=None,
                 worker_deaths_ok=False, env=None, wrapper=None, extra=None):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binary = snowd_binary()
        self.port = port or free_port()
        self.plugin_dir = plugin_dir or make_plugin_dir(self.dir / "plugins")
        self.config = self.dir / "snowd.ini"
        self.config.write_text(render_config(self.port, self.plugin_dir,
                                             limits, routes, server, listens,
                                             extra))
        self.logfile = self.dir / "snowd.log"
        self.asan_options = asan_options
        # A worker that dies is respawned, so the master's exit status no
        # longer shows a crash: check() reads the log for one, unless the
        # test kills workers on purpose.
        self.worker_deaths_ok = worker_deaths_ok
        # Extra environment (NOTIFY_SOCKET, ...), and a command that runs
        # snowd in its own process (systemd-socket-activate, sh -c 'exec').
        self.env = dict(env or {})
        self.wrapper = list(wrapper or [])
        srv = dict(DEFAULT_SERVER)
        srv.update(server or {})
        w = srv.get("workers")
        self.nworkers = int(w) if w and str(w).isdigit() else None
        self.proc = None
        self.checked = False
        self.seen_workers = set()

    def start(self, wait=True):
        env = dict(os.environ)
        # Keep ASan's quarantine small so that RSS checks stay meaningful
        # under sanitizer builds (no effect on a plain build), also when
        # the caller sets other options (scripts/test.sh does).
        asan = env.get("ASAN_OPTIONS", "")
        if "quarantine_size_mb" not in asan:
            asan = ":".join(o for o in (asan, "quarantine_size_mb=16") if o)
        env["ASAN_OPTIONS"] = asan
        if self.asan_options:
            # e.g. handle_segv=0: a test's deliberate SIGSEGV must reach
            # the master as a signal, not as ASan's report and exit.
            env["ASAN_OPTIONS"] += ":" + self.asan_options
        env.update(self.env)
        with open(self.logfile, "wb") as log:
            self.proc = subprocess.Popen(
                self.wrapper + [str(self.binary), "-c", str(self.config)],
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
                    break
            except OSError:
                time.sleep(0.02)
        else:
            pytest.fail(f"snowd did not accept on port {self.port} within "
                        f"{timeout}s:\n{self.log()}")
        # The master binds before it forks: wait for every worker's
        # "ready" too (without failing here: the tests that need a worker
        # find out soon enough).
        want = self.nworkers or 1
        wait_until(lambda: len(self.ready_workers()) >= want,
                   max(0.0, deadline - time.monotonic()))
        self.seen_workers.update(self.worker_pids())

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

    def log_mark(self):
        """A position in the log, for wait_log_re(..., start=mark)."""
        return len(self.log())

    def wait_log_re(self, pattern, timeout=5.0, start=0):
        """The first match of the regular expression in the log after
        `start`, waiting up to timeout; None if it never appears."""
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.log(), start), timeout)

    def ready_workers(self):
        """slot -> pid of the latest "worker N (pid P) ready" line of each
        slot."""
        return {int(m.group(1)): int(m.group(2))
                for m in READY_RE.finditer(self.log())}

    def wait_respawn(self, slot, old_pid, timeout=15.0):
        """Waits for slot's ready line with a pid other than old_pid and
        returns that pid."""
        def new_pid():
            pid = self.ready_workers().get(slot)
            return pid if pid and pid != old_pid else None
        pid = wait_until(new_pid, timeout)
        assert pid, (f"worker {slot} (pid {old_pid}) was not respawned "
                     f"within {timeout}s:\n{self.log()[-3000:]}")
        self.seen_workers.add(pid)
        return pid

    def worker_pids(self):
        pids = worker_pids(self.pid)
        self.seen_workers.update(pids)
        return pids

    def master_rss_kib(self):
        return proc_rss_kib(self.pid)

    def workers_rss_kib(self):
        """The RSS of every worker, summed: where connections and actors
        live."""
        total = 0
        for pid in self.worker_pids():
            try:
                total += proc_rss_kib(pid)
            except (FileNotFoundError, ProcessLookupError):
                pass
        return total

    def rss_kib(self):
        """The whole daemon: master and workers."""
        return self.master_rss_kib() + self.workers_rss_kib()

    def cpu_ticks(self):
        """CPU time of the master and its current workers, in ticks."""
        return sum(proc_cpu_ticks(p) for p in [self.pid] +
                   self.worker_pids())

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

    def kit(self, timeout=10.0):
        """A KitClient on /actors."""
        return KitClient(self.port, timeout=timeout)

    def kits_on_slots(self, slots, tries=64, timeout=10.0):
        """One KitClient on each of the worker slots in `slots`: opens
        connections (at most `tries`) until every slot has one; extras are
        closed."""
        found = {}
        for _ in range(tries):
            k = self.kit(timeout=timeout)
            if k.slot in slots and k.slot not in found:
                found[k.slot] = k
            else:
                k.close()
            if len(found) == len(slots):
                return found
        for k in found.values():
            k.close()
        pytest.fail(f"{tries} connections reached only worker(s) "
                    f"{sorted(found)} of {sorted(slots)}")

    def leftover_workers(self):
        """Workers seen during the test that still run (after the master
        has gone, there must be none)."""
        left = []
        for pid in self.seen_workers:
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if "snowd" in comm and pid_alive(pid):
                left.append(pid)
        return left

    def stop(self):
        """SIGTERM, bounded wait, then the crash and sanitizer checks."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.worker_pids()
            self.proc.send_signal(signal.SIGTERM)
            self.wait_exit()
        self.check()

    def check(self):
        if self.checked:
            return
        self.checked = True
        rc = self.proc.returncode
        # Workers die with their master; give orphans a moment, then make
        # sure none is left behind (and end any that is: they are ours).
        wait_until(lambda: not self.leftover_workers(), 3.0)
        left = self.leftover_workers()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log = self.log()
        assert rc is None or rc >= 0, \
            f"snowd died from signal {-rc}:\n{log}"
        for mark in SANITIZER_MARKS:
            assert mark not in log, f"sanitizer report in the log:\n{log}"
        if not self.worker_deaths_ok:
            deaths = [m.group(0) for m in DEATH_RE.finditer(log)]
            assert not deaths, f"a worker died: {deaths}\n{log[-3000:]}"
        assert not left, (f"worker(s) {left} outlived the master "
                          f"(exit {rc}):\n{log[-3000:]}")


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
                 family=socket.AF_INET, rcvbuf=None):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if rcvbuf is not None:
            # Before connect(), so that the window offered stays small
            # (a client that never reads then holds little in the kernel).
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
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


# ---- the actorkit command client ----------------------------------------------

def parse_line(line):
    """Splits an actorkit line into a dict: "_" holds the leading words
    ("me", "info down", ...), then key=value pairs; a word without "="
    continues the previous value ("reason=crashed: boom").  Everything
    after " data=" is the value of "data", whole."""
    out = {}
    data = None
    if " data=" in line:
        line, data = line.split(" data=", 1)
    head, key = [], None
    for tok in line.split(" "):
        if "=" in tok:
            key, value = tok.split("=", 1)
            out[key] = value
        elif key is None:
            head.append(tok)
        else:
            out[key] += " " + tok
    out["_"] = " ".join(head)
    if data is not None:
        out["data"] = data
    return out


class KitClient:
    """A connection to the actorkit handler (tests/plugins/actorkit.c):
    each command gets one reply; the "info ..." lines its on_info forwards
    may come at any time and are kept in self.infos until asked for."""

    def __init__(self, port, path="/actors", timeout=10.0):
        self.raw = RawClient(port, timeout=timeout)
        self.raw.handshake(path)
        self.timeout = timeout
        self.infos = []
        me = self.cmd_kv("whoami")
        assert me["_"] == "me", me
        self.slot = int(me["slot"])
        self.ospid = int(me["ospid"])
        self.pid = int(me["pid"])

    def send(self, text):
        """A command without a reply (fail, crash, segv, ...)."""
        self.raw.send_text(text)

    def _next(self, timeout):
        # Wait for the start of a frame here, then read it whole, so that
        # a timeout never leaves half a frame read.
        if not self.raw.buf:
            r, _, _ = select.select([self.raw.sock], [], [], timeout)
            if not r:
                raise TimeoutError("no message from the server in time")
        msg = self.raw.recv_text(max(timeout, 5.0))
        if msg.startswith("info "):
            self.infos.append(msg)
            return None
        return msg

    def cmd(self, text, timeout=None):
        """Sends a command and returns its reply."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.raw.send_text(text)
        while True:
            msg = self._next(max(0.0, deadline - time.monotonic()))
            if msg is not None:
                return msg

    def cmd_kv(self, text, timeout=None):
        return parse_line(self.cmd(text, timeout))

    def whereis(self, name):
        return int(self.cmd_kv(f"whereis {name}")["pid"])

    def wait_whereis(self, name, pred=bool, timeout=10.0):
        """Polls whereis until pred(pid) holds (the registry copies follow
        the master's asynchronously); returns the pid, or fails."""
        last = []

        def check():
            last.append(self.whereis(name))
            return pred(last[-1])
        assert wait_until(check, timeout), \
            f"whereis {name}: no fitting pid in {timeout}s (last {last[-1]})"
        return last[-1]

    def wait_info(self, match=None, timeout=None):
        """The first info line (parsed) for which match(parsed) is true;
        it is removed from self.infos.  Fails after timeout."""
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
                raise AssertionError(
                    f"no matching info within {timeout}s; "
                    f"have {self.infos!r}")
            try:
                msg = self._next(left)
            except TimeoutError:
                continue
            assert msg is None, f"unexpected reply {msg!r}"

    def drain_infos(self, seconds):
        """Collects the info lines arriving within `seconds`; returns every
        one held (parsed) and forgets them."""
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
        out = [parse_line(line) for line in self.infos]
        self.infos = []
        return out

    def close(self):
        self.raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
