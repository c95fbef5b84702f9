"""systemd: the notifications the master sends (READY=1, STATUS=,
STOPPING=1, WATCHDOG=1), read from a real NOTIFY_SOCKET that the test
creates; socket activation through systemd-socket-activate; and the unit
files, checked with systemd-analyze.

systemd-analyze and systemd-socket-activate come with Debian's `systemd`
package, which scripts/deps.sh installs for the tests."""
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import (REPO, free_port, make_plugin_dir, pid_alive,
                      render_config, snowd_binary, wait_until)

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
ANALYZE = shutil.which("systemd-analyze")

needs_activate = pytest.mark.skipif(
    SOCKET_ACTIVATE is None,
    reason="systemd-socket-activate not installed (Debian package systemd)")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None,
    reason="systemd-analyze not installed (Debian package systemd)")


# ---- a stand-in for systemd's notification socket ---------------------------

class Message:
    def __init__(self, when, pid, fields):
        self.when, self.pid, self.fields = when, pid, fields

    def __getitem__(self, key):
        return self.fields[key]

    def get(self, key):
        return self.fields.get(key)

    def __repr__(self):
        return f"Message(pid={self.pid}, {self.fields!r})"


class Notifications:
    """A datagram socket that records each notification with its arrival
    time and the sender's pid (SCM_CREDENTIALS, which sd_notify sends).

    A thread reads it all the time, as systemd does: the kernel queues
    only a few datagrams for a reader, and sd_notify blocks the sender
    beyond that."""

    def __init__(self):
        # sun_path holds 108 bytes: a short folder rather than tmp_path.
        self.dir = tempfile.mkdtemp(prefix="snowd-n-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.messages = []
        self.pos = 0
        self.cond = threading.Condition()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if not r:
                continue
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            pid = None
            for level, kind, cdata in anc:
                if (level == socket.SOL_SOCKET and
                        kind == socket.SCM_CREDENTIALS):
                    pid = struct.unpack("iII", cdata[:12])[0]
            fields = {}
            for line in data.decode().split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    fields[k] = v
            with self.cond:
                self.messages.append(Message(time.monotonic(), pid, fields))
                self.cond.notify_all()

    def wait_for(self, key, value=None, timeout=10.0):
        """The next message (after the last one returned) that carries
        key (with value, if given); None after timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                while self.pos < len(self.messages):
                    msg = self.messages[self.pos]
                    self.pos += 1
                    if key in msg.fields and (value is None or
                                              msg[key] == value):
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def collect(self, seconds):
        """Waits `seconds`; returns what arrived meanwhile."""
        with self.cond:
            start = len(self.messages)
        time.sleep(seconds)
        with self.cond:
            self.pos = len(self.messages)
            return self.messages[start:]

    def with_key(self, key, since=0):
        with self.cond:
            return [m for m in self.messages[since:] if key in m.fields]

    def close(self):
        self.running = False
        self.thread.join(5)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify():
    n = Notifications()
    yield n
    n.close()


def notified(factory, n, watchdog_usec=None, **kw):
    """A daemon started with NOTIFY_SOCKET (and a watchdog, if asked) and
    not waited for: the test reads the notifications itself.  With a
    watchdog, sh sets WATCHDOG_PID to its own pid and execs snowd, which
    keeps that pid, as systemd names the main process."""
    env = {"NOTIFY_SOCKET": n.path}
    wrapper = None
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
        wrapper = ["/bin/sh", "-c",
                   'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh"]
    d = factory(start=False, env=env, wrapper=wrapper, **kw)
    d.start(wait=False)
    return d


# ---- readiness, status, stopping ------------------------------------------------

def test_ready_after_listeners_and_every_worker(snowd_factory, notify):
    d = notified(snowd_factory, notify, server={"workers": "2"})
    ready = notify.wait_for("READY", "1", timeout=15)
    assert ready, f"no READY=1 within 15s: {notify.messages}\n{d.log()}"
    # By now both workers have said they are ready, and the port accepts.
    workers = d.ready_workers()
    assert sorted(workers) == [0, 1], d.log()
    assert sorted(workers.values()) == d.worker_pids()
    with socket.create_connection(("127.0.0.1", d.port), timeout=2):
        pass
    with d.client("/echo") as c:
        c.send_text("up")
        assert c.recv_text() == "up"
    assert ready["STATUS"] == "2 workers, serving; 0 connections"
    before = notify.messages[:notify.messages.index(ready)]
    assert before and before[0]["STATUS"] == "starting 2 workers", before
    assert not [m for m in before if "READY" in m.fields], before
    # Once only, and only ever from the master.
    notify.collect(0.5)
    assert len(notify.with_key("READY")) == 1, notify.messages
    assert {m.pid for m in notify.messages} == {d.pid}, notify.messages


def test_stopping_on_sigterm(snowd_factory, notify):
    d = notified(snowd_factory, notify, server={"workers": "2"})
    assert notify.wait_for("READY", "1", timeout=15), d.log()
    d.signal(signal.SIGTERM)
    stop = notify.wait_for("STOPPING", "1", timeout=10)
    assert stop, f"no STOPPING=1: {notify.messages}\n{d.log()}"
    assert stop["STATUS"] == "stopping"
    assert stop.pid == d.pid
    assert d.wait_exit() == 0
    # Nothing but STOPPING after it (no READY, no serving status).
    after = notify.messages[notify.messages.index(stop) + 1:]
    assert not [m for m in after if "READY" in m.fields], after


def test_status_follows_a_worker_death(snowd_factory, notify):
    d = notified(snowd_factory, notify, server={"workers": "2"},
                 worker_deaths_ok=True)
    assert notify.wait_for("READY", "1", timeout=15), d.log()
    victim = d.ready_workers()[1]
    os.kill(victim, signal.SIGKILL)
    down = notify.wait_for("STATUS", "1 of 2 workers ready; 0 connections",
                           timeout=10)
    assert down, f"{notify.messages}\n{d.log()}"
    up = notify.wait_for("STATUS", "2 workers, serving; 0 connections",
                         timeout=15)
    assert up, f"{notify.messages}\n{d.log()}"
    assert "READY" not in up.fields       # READY=1 is said once
    assert d.wait_respawn(1, victim) != victim


def test_status_counts_connections(snowd_factory, notify):
    d = notified(snowd_factory, notify, server={"workers": "2"})
    assert notify.wait_for("READY", "1", timeout=15), d.log()
    clients = [d.client("/echo") for _ in range(3)]
    try:
        up = notify.wait_for("STATUS", "2 workers, serving; 3 connections",
                             timeout=15)
        assert up, f"{notify.messages}\n{d.log()}"
    finally:
        for c in clients:
            c.close()
    down = notify.wait_for("STATUS", "2 workers, serving; 0 connections",
                           timeout=15)
    assert down, f"{notify.messages}\n{d.log()}"


# ---- the watchdog ------------------------------------------------------------------

def gaps(messages):
    return [(b.when - a.when, a, b) for a, b in zip(messages, messages[1:])]


def test_watchdog_pings_from_the_master(snowd_factory, notify):
    d = notified(snowd_factory, notify, watchdog_usec=400000,
                 server={"workers": "2"})
    assert notify.wait_for("READY", "1", timeout=15), d.log()
    got = [m for m in notify.collect(2.0) if m.get("WATCHDOG") == "1"]
    # Every 0.2s (half of WATCHDOG_USEC): about ten in two seconds.
    assert len(got) >= 5, (got, d.log())
    assert {m.pid for m in got} == {d.pid}
    assert max(g for g, _, _ in gaps(got)) < 1.0, gaps(got)
    assert "systemd watchdog: 0.400s" in d.log()


def test_watchdog_is_withheld_while_a_worker_hangs(snowd_factory, notify):
    # Workers heartbeat every 0.75s (hang_timeout / 4); one silent for
    # three of those holds WATCHDOG=1 back until it is killed at 3s and
    # replaced.
    d = notified(snowd_factory, notify, watchdog_usec=300000,
                 server={"workers": "2", "hang_timeout": "3s"},
                 worker_deaths_ok=True)
    assert notify.wait_for("READY", "1", timeout=15), d.log()
    with d.kit() as probe:
        slot, ospid = probe.slot, probe.ospid
        mark = d.log_mark()
        first = len(notify.messages)
        probe.send("hang")
        try:
            new_pid = d.wait_respawn(slot, ospid, timeout=20)
        finally:
            # A hung worker the daemon failed to kill is ours to end.
            if not wait_until(lambda: not pid_alive(ospid), 5):
                os.kill(ospid, signal.SIGKILL)
        assert new_pid != ospid
    assert d.wait_log("sending WATCHDOG=1 again", 5), d.log()[-3000:]
    log = d.log()[mark:]
    assert re.search(rf"systemd watchdog: worker {slot} is late; withholding",
                     log), log
    # Pings resume once the new worker is in.
    notify.collect(1.0)
    pings = [m for m in notify.messages[first:]
             if m.get("WATCHDOG") == "1"]
    assert pings and pings[-1].when > time.monotonic() - 0.8, pings[-3:]
    # And there was a pause well beyond the 0.15s interval meanwhile.
    longest = max(g for g, _, _ in gaps(pings))
    assert longest >= 0.5, [round(g, 2) for g, _, _ in gaps(pings)]


def test_watchdog_for_another_pid_is_ignored(snowd_factory, notify):
    """WATCHDOG_PID names the process the watchdog is for; snowd's master
    is not pid 1."""
    d = snowd_factory(start=False, env={"NOTIFY_SOCKET": notify.path,
                                        "WATCHDOG_USEC": "200000",
                                        "WATCHDOG_PID": "1"})
    d.start(wait=False)
    assert notify.wait_for("READY", "1", timeout=15), d.log()
    got = notify.collect(1.0)
    assert not [m for m in got if "WATCHDOG" in m.fields], got


# ---- socket activation ---------------------------------------------------------------

def listening_sockets(port):
    """The inodes of IPv4 sockets listening on port (/proc/net/tcp)."""
    want = f":{port:04X}"
    out = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1].endswith(want) and fields[3] == "0A":
                out.append(fields[9])
    return out


def activate(*addresses):
    cmd = [SOCKET_ACTIVATE]
    for a in addresses:
        cmd += ["-l", a]
    # systemd-socket-activate passes on only the variables named here.
    return cmd + ["-E", "ASAN_OPTIONS"]


@needs_activate
def test_socket_activation_serves_on_the_inherited_socket(snowd_factory):
    port = free_port()
    d = snowd_factory(start=False, port=port, server={"workers": "2"},
                      wrapper=activate(f"127.0.0.1:{port}"))
    # systemd-socket-activate listens, and execs snowd at the first
    # connection, which wait_ready makes.
    d.start()
    assert sorted(d.ready_workers()) == [0, 1], d.log()
    log = d.log()
    assert f"listening on 127.0.0.1:{port} (socket from systemd)" in log, log
    assert "accept = shared for every listener" in log, log
    # One listening socket, the inherited one (fd 3 of the master): snowd
    # bound none, though accept = reuseport would have made one per worker.
    inodes = listening_sockets(port)
    assert len(inodes) == 1, inodes
    assert os.readlink(f"/proc/{d.pid}/fd/3") == f"socket:[{inodes[0]}]"
    clients = [d.client("/echo") for _ in range(8)]
    try:
        for i, c in enumerate(clients):
            c.send_text(f"m{i}")
            assert c.recv_text() == f"m{i}"
    finally:
        for c in clients:
            c.close()


@needs_activate
def test_socket_activation_binds_entries_not_passed(snowd_factory):
    port, other = free_port(), free_port()
    d = snowd_factory(start=False, port=port,
                      listens=[f"127.0.0.1:{port}", f"127.0.0.1:{other}"],
                      wrapper=activate(f"127.0.0.1:{port}"))
    d.start()
    log = d.log()
    assert f"listening on 127.0.0.1:{port} (socket from systemd)" in log
    assert re.search(rf"listening on 127\.0\.0\.1:{other}\n", log), log
    for p in (port, other):
        d.port = p
        with d.client("/echo") as c:
            c.send_text(str(p))
            assert c.recv_text() == str(p)


def start_activated(tmp_path, listen_port, passed_port, test_only=False):
    conf = tmp_path / "snowd.ini"
    conf.write_text(render_config(listen_port,
                                  make_plugin_dir(tmp_path / "plugins")))
    argv = activate(f"127.0.0.1:{passed_port}") + [str(snowd_binary())]
    argv += (["-t"] if test_only else []) + ["-c", str(conf)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def poke():
        try:
            socket.create_connection(("127.0.0.1", passed_port), 0.5).close()
            return True
        except OSError:
            return proc.poll() is not None
    assert wait_until(poke, 10), "systemd-socket-activate did not listen"
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=5)
        pytest.fail(f"did not exit: {out.decode(errors='replace')}")
    return proc.returncode, out.decode(errors="replace"), conf


@needs_activate
def test_socket_activation_refuses_a_socket_no_entry_claims(tmp_path):
    port, passed = free_port(), free_port()
    rc, out, conf = start_activated(tmp_path, port, passed)
    assert rc == 1, out
    assert (f"socket activation: inherited socket 3 on 127.0.0.1:{passed} "
            f"matches no 'listen' in {conf}") in out, out
    assert "started (pid" not in out, out
    assert listening_sockets(port) == [], "snowd bound its listen anyway"


@needs_activate
def test_config_test_ignores_passed_sockets(tmp_path):
    port, passed = free_port(), free_port()
    rc, out, conf = start_activated(tmp_path, port, passed, test_only=True)
    assert rc == 0, out
    assert f"configuration file {conf} test is successful" in out, out


# ---- the unit files ----------------------------------------------------------------

def render_units(directory):
    """systemd/snowd.service with @sbindir@ and @sysconfdir@ filled in as
    make does (sbindir: the built snowd's folder), and snowd.socket."""
    directory.mkdir(parents=True, exist_ok=True)
    text = (REPO / "systemd/snowd.service.in").read_text()
    text = text.replace("@sbindir@", str(snowd_binary().resolve().parent))
    text = text.replace("@sysconfdir@", str(directory / "etc"))
    assert not re.search(r"@[a-z]+@", text), text
    (directory / "snowd.service").write_text(text)
    shutil.copy(REPO / "systemd/snowd.socket", directory / "snowd.socket")
    return directory / "snowd.service", directory / "snowd.socket"


@needs_analyze
def test_units_pass_systemd_analyze_verify(tmp_path):
    service, sock = render_units(tmp_path / "units")
    if snowd_binary().resolve().name != "snowd":
        pytest.fail(f"the unit runs {snowd_binary()}, not named snowd")
    r = subprocess.run([ANALYZE, "verify", "--man=no", str(sock),
                        str(service)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    ours = [line for line in (r.stdout + r.stderr).splitlines()
            if "snowd." in line]
    assert not ours, "\n".join(ours)


@needs_analyze
def test_service_unit_exposure_is_low(tmp_path):
    service, _ = render_units(tmp_path / "units")
    r = subprocess.run([ANALYZE, "security", "--offline=true",
                        "--no-pager", str(service)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for snowd\.service: ([0-9.]+)",
                  r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    # 10 is a service with no hardening at all.
    assert float(m.group(1)) <= 2.5, r.stdout
