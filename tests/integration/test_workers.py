"""The process model: a master that forks `workers` worker processes,
respawns the ones that die or hang, names the plugin code that was
running, and gives up (exit 1) when they die too often.

The faults are raised on command by tests/plugins/actorkit.c (see its
header for the commands)."""
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import (RawClient, free_port, make_plugin_dir, pid_alive,
                      proc_maps, render_config, snowd_binary, wait_until)

# A deliberate SIGSEGV or abort() must reach the master as a signal, not
# as an ASan report followed by exit(1) (no effect on a plain build).
CRASH_ASAN = "handle_segv=0:handle_abort=0"

PLUGINS = ("echo.so", "counter.so", "ticker.so", "testkit.so", "actorkit.so")


def crashy(factory, workers=2, server=None, **kw):
    """A daemon whose workers the test kills on purpose."""
    srv = {"workers": str(workers)}
    srv.update(server or {})
    return factory(server=srv, asan_options=CRASH_ASAN,
                   worker_deaths_ok=True, **kw)


def death_re(slot, pid, cause, running=r"handler 'actorkit'"):
    """The master's line for a dead worker.  running=None: the " while
    running ..." part may or may not be there."""
    head = rf"worker {slot} \(pid {pid}\) {cause}"
    if running is None:
        return head + r"( while running [^;\n]+)?; respawning"
    return head + rf" while running {running}; respawning"


def sigsegv(slot, pid, running=r"handler 'actorkit'"):
    return death_re(slot, pid, r"killed by signal 11 \(SIGSEGV\)", running)


class ConnectLoop(threading.Thread):
    """Connects, upgrades, echoes and closes, over and over, on fresh
    connections, and records every attempt that fails.  pause() returns
    once no attempt is in flight: a connection that a worker has accepted
    dies with that worker, so the tests pause around the instant of a
    crash, and check that every connection made while the worker is
    dead, respawning and back is served."""

    def __init__(self, port, path="/echo", attempt_timeout=10.0):
        super().__init__(daemon=True)
        self.port, self.path, self.attempt_timeout = port, path, \
            attempt_timeout
        self.gate = threading.Event()
        self.gate.set()
        self.parked = threading.Event()
        self.done = threading.Event()
        self.ok = 0
        self.failures = []

    def attempt(self, i):
        text = f"attempt {i}"
        with RawClient(self.port, timeout=self.attempt_timeout) as c:
            c.handshake(self.path)
            c.send_text(text)
            assert c.recv_text() == text
            c.send_close(1000)
            assert c.recv_close().close_code == 1000

    def run(self):
        i = 0
        while not self.done.is_set():
            if not self.gate.is_set():
                self.parked.set()
                self.gate.wait(0.05)
                continue
            try:
                self.attempt(i)
                self.ok += 1
            except Exception as e:   # every failure is a finding
                self.failures.append(f"attempt {i}: {e!r}")
            i += 1

    def pause(self):
        self.parked.clear()
        self.gate.clear()
        assert self.parked.wait(2 * self.attempt_timeout + 5), \
            "the connect loop did not park"

    def resume(self):
        self.gate.set()

    def wait_ok(self, n, timeout=30.0):
        assert wait_until(lambda: self.ok >= n or self.failures, timeout), \
            f"only {self.ok} connections in {timeout}s"

    def finish(self):
        self.done.set()
        self.gate.set()
        self.join(2 * self.attempt_timeout + 5)


# ---- workers ----------------------------------------------------------------

def test_master_forks_workers_and_runs_no_plugin_code(snowd_factory):
    d = snowd_factory(server={"workers": "2"})
    ready = d.ready_workers()
    assert sorted(ready) == [0, 1], d.log()
    assert sorted(ready.values()) == d.worker_pids()
    assert d.pid not in ready.values()
    # The plugins live in the workers only.
    master_maps = proc_maps(d.pid)
    for so in PLUGINS:
        assert so not in master_maps, f"the master has loaded {so}"
    for pid in d.worker_pids():
        assert "actorkit.so" in proc_maps(pid)
    kits = d.kits_on_slots({0, 1})
    try:
        for slot, k in kits.items():
            assert k.ospid == ready[slot]
            assert (k.pid >> 48) & 0xff == slot   # snow_pid_worker
            assert k.cmd("ping") == "pong"
    finally:
        for k in kits.values():
            k.close()


def test_workers_auto_is_one_per_cpu(snowd_factory):
    cpus = min(os.sysconf("SC_NPROCESSORS_ONLN"), 64)
    d = snowd_factory(server={"workers": "auto"})
    assert wait_until(lambda: len(d.ready_workers()) == cpus, 10), d.log()
    assert len(d.worker_pids()) == cpus
    with d.client("/echo") as c:
        c.send_text("auto")
        assert c.recv_text() == "auto"


@pytest.mark.parametrize("line,ok", [
    ("workers = 0", False), ("workers = 33", False), ("workers = two", False),
    ("workers = 32", True), ("workers = auto", True),
    ("hang_timeout = 500ms", True), ("hang_timeout = 0", True),
    ("hang_timeout = soon", False),
    ("max_restarts = 0", True), ("max_restarts = -1", False),
    ("restart_window = 2s", True), ("restart_window = 0", False),
    ("restart_window = later", False),
])
def test_process_model_keys_are_checked(tmp_path, line, ok):
    conf = tmp_path / "w.ini"
    text = render_config(free_port(), make_plugin_dir(tmp_path / "p"),
                         server={"workers": None})
    text = text.replace("[server]\n", f"[server]\n{line}\n", 1)
    conf.write_text(text)
    r = subprocess.run([str(snowd_binary()), "-t", "-c", str(conf)],
                       capture_output=True, text=True, timeout=15)
    assert (r.returncode == 0) == ok, r.stderr
    if not ok:
        assert f"{conf}:2:" in r.stderr, r.stderr


@pytest.mark.parametrize("line,ok", [
    ("mailbox_limit = 1", True), ("mailbox_limit = 10000", True),
    ("mailbox_limit = 0", False), ("mailbox_limit = lots", False),
])
def test_mailbox_limit_key_is_checked(tmp_path, line, ok):
    conf = tmp_path / "m.ini"
    text = render_config(free_port(), make_plugin_dir(tmp_path / "p"))
    text = text.replace("[limits]\n", f"[limits]\n{line}\n", 1)
    conf.write_text(text)
    r = subprocess.run([str(snowd_binary()), "-t", "-c", str(conf)],
                       capture_output=True, text=True, timeout=15)
    assert (r.returncode == 0) == ok, r.stderr


# ---- crashes ------------------------------------------------------------------

def test_segfault_kills_one_worker_the_master_respawns_it(snowd_factory):
    d = crashy(snowd_factory)
    kits = d.kits_on_slots({0, 1})
    victim, other = kits[0], kits[1]
    loop = ConnectLoop(d.port)
    try:
        loop.start()
        loop.wait_ok(3)
        before = loop.ok
        loop.pause()
        mark = d.log_mark()
        victim.send("segv")
        assert victim.raw.wait_eof(10), "the crashed worker's client stayed"
        # Connections made from now on wait in the listen queue that the
        # master keeps open, and the new worker serves them.
        loop.resume()
        m = d.wait_log_re(sigsegv(0, victim.ospid), 10, mark)
        assert m, d.log()[-3000:]
        new_pid = d.wait_respawn(0, victim.ospid)
        # The other worker never noticed.
        assert other.cmd("ping") == "pong"
        assert other.cmd_kv("whoami")["ospid"] == str(other.ospid)
        loop.wait_ok(before + 6)
        loop.finish()
        assert not loop.failures, loop.failures
        assert loop.ok >= before + 6
        assert d.worker_pids() == sorted([new_pid, other.ospid])
        assert not pid_alive(victim.ospid)
        # The new worker serves actors.
        again = d.kits_on_slots({0})[0]
        assert again.ospid == new_pid
        assert again.cmd("ping") == "pong"
        again.close()
        assert d.proc.poll() is None
    finally:
        loop.finish()
        for k in kits.values():
            k.close()


def test_segfault_with_shared_accept(snowd_factory):
    d = crashy(snowd_factory, server={"accept": "shared"})
    loop = ConnectLoop(d.port)
    victim = d.kit()
    try:
        loop.start()
        loop.wait_ok(3)
        before = loop.ok
        loop.pause()
        mark = d.log_mark()
        victim.send("segv")
        assert victim.raw.wait_eof(10)
        loop.resume()
        assert d.wait_log_re(sigsegv(victim.slot, victim.ospid), 10, mark), \
            d.log()[-3000:]
        d.wait_respawn(victim.slot, victim.ospid)
        loop.wait_ok(before + 6)
        loop.finish()
        assert not loop.failures, loop.failures
    finally:
        loop.finish()
        victim.close()


@pytest.mark.parametrize("cmd,cause", [
    ("segv", r"killed by signal 11 \(SIGSEGV\)"),
    ("abort", r"killed by signal 6 \(SIGABRT\)"),
])
def test_worker_death_names_signal_and_handler(snowd_factory, cmd, cause):
    d = crashy(snowd_factory)
    k = d.kit()
    mark = d.log_mark()
    k.send(cmd)
    assert k.raw.wait_eof(10)
    k.close()
    assert d.wait_log_re(death_re(k.slot, k.ospid, cause), 10, mark), \
        d.log()[-3000:]
    d.wait_respawn(k.slot, k.ospid)
    with d.kit() as k2:
        assert k2.cmd("ping") == "pong"


def test_worker_exit_is_logged_with_its_status(snowd_factory):
    d = crashy(snowd_factory)
    k = d.kit()
    mark = d.log_mark()
    k.send("exit 7")
    assert k.raw.wait_eof(10)
    k.close()
    line = rf"worker {k.slot} \(pid {k.ospid}\) exited with status 7; " \
           r"respawning"
    assert d.wait_log_re(line, 10, mark), d.log()[-3000:]
    d.wait_respawn(k.slot, k.ospid)
    with d.kit() as k2:
        assert k2.cmd("ping") == "pong"


def test_crash_in_a_service_names_the_service(snowd_factory):
    """A worker that dies inside a service is respawned; the service
    comes back (new pid, fresh state); actors watching anything on that
    worker get DOWN "worker exited"; names it held are freed; pids of the
    dead generation answer "noproc"."""
    d = crashy(snowd_factory)
    with d.kit() as probe:
        home = probe.wait_whereis("kit.permanent")
    slot = (home >> 48) & 0xff
    kits = d.kits_on_slots({0, 1})
    watcher, doomed = kits[1 - slot], kits[slot]
    try:
        assert doomed.cmd("register doomed.name") == "ok"
        watcher.wait_whereis("doomed.name", lambda p: p == doomed.pid)
        assert watcher.cmd("svc kit.permanent incr") == "ok"
        st = watcher.wait_info(lambda i: i["_"] == "info tell")
        assert "count=1" in st["data"]
        assert watcher.cmd_kv("monitor-name kit.permanent")["pid"] == \
            str(home)
        assert watcher.cmd(f"monitor {doomed.pid}") == "ok"
        mark = d.log_mark()
        assert watcher.cmd("svc kit.permanent segv") == "ok"
        assert doomed.raw.wait_eof(10)
        assert d.wait_log_re(sigsegv(slot, doomed.ospid,
                                     r"service 'kit.permanent'"), 10, mark), \
            d.log()[-3000:]
        downs = {}
        for _ in range(2):
            i = watcher.wait_info(lambda i: i["_"] == "info down")
            downs[int(i["from"])] = i["reason"]
        assert downs == {home: "worker exited", doomed.pid: "worker exited"}
        d.wait_respawn(slot, doomed.ospid)
        # The service is back on the new worker, with a new pid and
        # fresh state.
        back = watcher.wait_whereis("kit.permanent",
                                    lambda p: p not in (0, home))
        assert (back >> 48) & 0xff == slot     # placement is stable
        assert watcher.cmd("svc kit.permanent get") == "ok"
        st = watcher.wait_info(lambda i: i["_"] == "info tell")
        state = st["data"]
        assert f"pid={back}" in state and "count=0" in state and \
            "inits=1" in state, state
        # The dead generation's names are gone; its pids are noproc.
        watcher.wait_whereis("doomed.name", lambda p: p == 0, 5)
        assert watcher.cmd("register doomed.name") == "ok"
        assert watcher.cmd(f"monitor {doomed.pid}") == "ok"
        i = watcher.wait_info(lambda i: i["_"] == "info down")
        assert i["from"] == str(doomed.pid) and i["reason"] == "noproc"
    finally:
        for k in kits.values():
            k.close()


# ---- hangs -----------------------------------------------------------------------

def hang_re(slot, pid, running):
    return (rf"worker {slot} \(pid {pid}\) did not answer for (\d+\.\d)s "
            rf"while running {running}; killing it \(SIGKILL\)")


def kill_if_alive(pid):
    """A hung worker that the daemon failed to kill is ours to end."""
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def test_hanging_handler_is_killed_and_respawned(snowd_factory):
    d = crashy(snowd_factory, server={"hang_timeout": "1s"})
    kits = d.kits_on_slots({0, 1})
    victim, other = kits[0], kits[1]
    try:
        mark = d.log_mark()
        victim.send("hang")
        # The other worker keeps serving while this one spins.
        for _ in range(5):
            assert other.cmd("ping") == "pong"
            time.sleep(0.05)
        m = d.wait_log_re(hang_re(0, victim.ospid, r"handler 'actorkit'"),
                          15, mark)
        assert m, d.log()[-3000:]
        assert float(m.group(1)) >= 1.0, m.group(0)
        assert d.wait_log_re(death_re(0, victim.ospid,
                                      r"killed by signal 9 \(SIGKILL\)",
                                      None), 10, mark), d.log()[-3000:]
        assert victim.raw.wait_eof(10)
        new_pid = d.wait_respawn(0, victim.ospid)
        assert d.worker_pids() == sorted([new_pid, other.ospid])
        assert other.cmd("ping") == "pong"
        again = d.kits_on_slots({0})[0]
        assert again.cmd("ping") == "pong"
        again.close()
    finally:
        kill_if_alive(victim.ospid)
        for k in kits.values():
            k.close()


def test_hanging_service_is_named(snowd_factory):
    d = crashy(snowd_factory, server={"hang_timeout": "1s"})
    with d.kit() as probe:
        home = probe.wait_whereis("kit.transient")
    slot = (home >> 48) & 0xff
    kits = d.kits_on_slots({0, 1})
    hung_pid = kits[slot].ospid
    try:
        mark = d.log_mark()
        assert kits[1 - slot].cmd("svc kit.transient hang") == "ok"
        m = d.wait_log_re(hang_re(slot, hung_pid, r"service 'kit.transient'"),
                          15, mark)
        assert m, d.log()[-3000:]
        d.wait_respawn(slot, hung_pid)
        # A transient service that died with its worker is started again
        # by the new worker.
        kits[1 - slot].wait_whereis("kit.transient",
                                    lambda p: p not in (0, home))
    finally:
        kill_if_alive(hung_pid)
        for k in kits.values():
            k.close()


def test_idle_and_briefly_busy_workers_are_not_killed(snowd_factory):
    d = snowd_factory(server={"workers": "2", "hang_timeout": "1s"})
    pids = d.worker_pids()
    kits = d.kits_on_slots({0, 1})
    try:
        time.sleep(2.5)                      # idle, past hang_timeout
        for k in kits.values():
            for _ in range(3):
                assert k.cmd("sleep 300") == "ok"   # busy, under it
        time.sleep(0.5)
        assert "did not answer" not in d.log(), d.log()[-3000:]
        assert d.worker_pids() == pids
    finally:
        for k in kits.values():
            k.close()


def test_hang_timeout_0_never_kills(snowd_factory):
    d = crashy(snowd_factory, server={"hang_timeout": "0"})
    kits = d.kits_on_slots({0, 1})
    victim, other = kits[0], kits[1]
    try:
        victim.send("hang")
        time.sleep(3)
        assert "did not answer" not in d.log()
        assert pid_alive(victim.ospid)
        assert other.cmd("ping") == "pong"
    finally:
        kill_if_alive(victim.ospid)          # what an operator would do
        for k in kits.values():
            k.close()
    d.wait_respawn(0, victim.ospid)


# ---- giving up -------------------------------------------------------------------

def crash_one(d, slot=None):
    """Opens a connection (on `slot` if given), segfaults its worker and
    waits for the master's line.  Returns (slot, pid) of the dead one."""
    k = d.kits_on_slots({slot})[slot] if slot is not None else d.kit()
    mark = d.log_mark()
    k.send("segv")
    assert k.raw.wait_eof(10)
    k.close()
    assert d.wait_log_re(rf"worker {k.slot} \(pid {k.ospid}\) killed by "
                         r"signal 11", 10, mark), d.log()[-3000:]
    return k.slot, k.ospid


def test_too_many_worker_deaths_make_the_master_give_up(snowd_factory):
    d = crashy(snowd_factory, server={"max_restarts": "2",
                                      "restart_window": "60s"})
    for _ in range(2):
        slot, pid = crash_one(d)
        d.wait_respawn(slot, pid)
        assert d.proc.poll() is None, "gave up before max_restarts"
    workers = d.worker_pids()
    slot, pid = crash_one(d)
    rc = d.wait_exit(timeout=20)
    assert rc == 1, f"exit status {rc}:\n{d.log()[-3000:]}"
    assert re.search(r"too many worker deaths: 3 within 60s "
                     r"\(max_restarts = 2\); giving up", d.log()), \
        d.log()[-3000:]
    # The last death is not followed by a respawn, and its line must not
    # claim one.
    last = re.search(rf"worker {slot} \(pid {pid}\) killed by signal 11[^\n]*",
                     d.log()).group(0)
    assert "respawning" not in last, last
    assert not re.search(rf"worker {slot} \(pid \d+\) ready",
                         d.log()[d.log().index(last):])
    # The other worker went too.
    assert wait_until(lambda: not any(pid_alive(p) for p in workers), 5), \
        [p for p in workers if pid_alive(p)]


def test_restart_window_forgets_old_deaths(snowd_factory):
    d = crashy(snowd_factory, server={"max_restarts": "1",
                                      "restart_window": "2s"})
    slot, pid = crash_one(d, 0)
    d.wait_respawn(slot, pid)
    time.sleep(2.5)                     # the first death leaves the window
    spare = d.kits_on_slots({1})[1]
    slot, pid = crash_one(d, 0)
    d.wait_respawn(slot, pid)
    assert d.proc.poll() is None, d.log()[-3000:]
    assert "giving up" not in d.log()
    # Two deaths within 2 s are one too many.
    spare.send("segv")
    assert spare.raw.wait_eof(10)
    spare.close()
    rc = d.wait_exit(timeout=20)
    assert rc == 1, f"exit status {rc}:\n{d.log()[-3000:]}"
    assert re.search(r"too many worker deaths: 2 within 2s "
                     r"\(max_restarts = 1\); giving up", d.log()), \
        d.log()[-3000:]


# ---- stopping ------------------------------------------------------------------------

def test_sigterm_closes_clients_of_every_worker_1001(snowd_factory):
    d = snowd_factory(server={"workers": "2"})
    kits = d.kits_on_slots({0, 1})
    workers = d.worker_pids()
    try:
        d.signal(signal.SIGTERM)
        for k in kits.values():
            f = k.raw.recv_close(timeout=10, skip_data=True)
            assert f.close_code == 1001
            k.raw.send_close(1001)
        for k in kits.values():
            assert k.raw.wait_eof(10)
        assert d.wait_exit() == 0
        assert not any(pid_alive(p) for p in workers)
    finally:
        for k in kits.values():
            k.close()


def test_sigquit_stops_every_worker_at_once(snowd_factory):
    d = snowd_factory(server={"workers": "2"},
                      limits={"close_timeout": "30s"})
    kits = d.kits_on_slots({0, 1})
    workers = d.worker_pids()
    try:
        start = time.monotonic()
        d.signal(signal.SIGQUIT)
        assert d.wait_exit(timeout=5) == 0
        assert time.monotonic() - start < 5
        for k in kits.values():
            assert k.raw.wait_eof(5)
        assert not any(pid_alive(p) for p in workers)
    finally:
        for k in kits.values():
            k.close()
