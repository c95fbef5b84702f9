"""SIGHUP reload: a new generation of workers on the new configuration,
the old one draining; refused configurations; plugins replaced on disk;
listeners kept, added and removed; systemd notifications around it."""
import os
import re
import shutil
import signal
import socket
import subprocess
import textwrap
import threading
import time

import pytest

from conftest import (DEFAULT_ROUTES, RawClient, free_port, include_dir,
                      make_plugin_dir, render_config, serving_pid,
                      wait_until)
from test_systemd import notified, notify  # noqa: F401 (a fixture)

SERVING_RE = r"reload: configuration #{n} serving with (\d+) worker"


def rewrite(d, **kw):
    """Writes a new config for daemon d (same port and plugins unless
    told otherwise)."""
    kw.setdefault("listens", None)
    d.config.write_text(render_config(kw.pop("port", d.port), d.plugin_dir,
                                      **kw))


def reload(d, n=2, timeout=15.0):
    """SIGHUP, then waits until configuration #n serves; returns the
    pids of its workers."""
    mark = d.log_mark()
    d.signal(signal.SIGHUP)
    m = d.wait_log_re(SERVING_RE.format(n=n), timeout=timeout, start=mark)
    assert m, f"configuration #{n} never served:\n{d.log()[mark:]}"
    pids = [int(p) for p in re.findall(r"worker \d+ \(pid (\d+)\) ready",
                                       d.log()[mark:])]
    d.seen_workers.update(pids)
    return pids


def echo(c, text):
    c.send_text(text)
    return c.recv_text()


def compile_plugin(path, source):
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed to build the test plugins"
    src = path.with_suffix(".c")
    src.write_text(textwrap.dedent(source))
    tmp = path.with_name(path.name + ".tmp")
    subprocess.run([cc, "-shared", "-fPIC", f"-I{include_dir()}", "-o",
                    str(tmp), str(src)], check=True, capture_output=True)
    # As an operator should: a new file renamed over the old one, so the
    # workers that still run the old code keep their mapping intact.
    os.replace(tmp, path)


VERSIONED = """
    #include <snowd/snowd.h>
    static int answer(snow_actor *self, enum snow_kind kind,
                      const void *data, size_t len)
    {
        (void)kind; (void)data; (void)len;
        return snow_send(self, SNOW_TEXT, "%(version)s",
                         sizeof "%(version)s" - 1);
    }
    static const struct snow_handler handlers[] = {
        { .name = "version", .on_message = answer },
    };
    SNOW_PLUGIN(.name = "version", .version = "%(version)s",
                .handlers = handlers, .nhandlers = 1);
"""

ROUTES = dict(DEFAULT_ROUTES)


# ---- the new configuration serves; old connections go on ------------------------------------

def test_reload_serves_new_routes_and_keeps_old_connections(snowd_factory):
    d = snowd_factory(server={"workers": "2"})
    old_workers = set(d.worker_pids())
    clients = [d.client("/echo") for _ in range(6)]
    # An old worker holding none of them has nothing to drain and exits.
    holders = {serving_pid(d, c) for c in clients}
    try:
        with pytest.raises(AssertionError):
            d.client("/echo2", expect=101)
        routes = dict(ROUTES, **{"/echo2": {"handler": "echo"}})
        rewrite(d, server={"workers": "2"}, routes=routes)
        new_workers = set(reload(d))
        assert len(new_workers) == 2 and not new_workers & old_workers
        # Every old connection still works, served by an old worker.
        for i, c in enumerate(clients):
            assert echo(c, f"old {i}") == f"old {i}"
        assert None not in holders and holders <= old_workers
        assert holders <= set(d.worker_pids())
        # New connections meet the new configuration.
        with d.client("/echo2") as c:
            assert echo(c, "new route") == "new route"
    finally:
        for c in clients:
            c.close()
    # Once their clients are gone, the old workers stop by themselves.
    assert wait_until(lambda: not old_workers & set(d.worker_pids()), 10), \
        d.log()[-2000:]
    assert set(d.worker_pids()) == new_workers


def test_drain_timeout_closes_what_is_left_with_1001(snowd_factory):
    d = snowd_factory(server={"workers": "2"},
                      limits={"drain_timeout": "1s"})
    old_workers = set(d.worker_pids())
    clients = [d.client("/echo", timeout=20) for _ in range(4)]
    try:
        rewrite(d, server={"workers": "2"}, limits={"drain_timeout": "1s"})
        reload(d)
        for c in clients:
            assert echo(c, "before the end") == "before the end"
        for c in clients:
            f = c.recv_close(timeout=15)
            assert f.close_code == 1001
            c.send_close(1001)
            assert c.wait_eof(10)
        assert wait_until(lambda: not old_workers & set(d.worker_pids()),
                          10), d.log()[-2000:]
        with d.client("/echo") as c:
            assert echo(c, "after") == "after"
    finally:
        for c in clients:
            c.close()


def test_reload_can_change_the_number_of_workers(snowd_factory):
    d = snowd_factory(server={"workers": "1"})
    rewrite(d, server={"workers": "2"})
    assert len(reload(d)) == 2
    assert wait_until(lambda: len(d.worker_pids()) == 2, 10)
    rewrite(d, server={"workers": "1"})
    assert len(reload(d, n=3)) == 1
    assert wait_until(lambda: len(d.worker_pids()) == 1, 10), d.log()
    for _ in range(10):
        with d.client("/echo") as c:
            assert echo(c, "one") == "one"


def test_log_level_follows_the_reload(snowd_factory):
    d = snowd_factory(server={"workers": "1", "log_level": "info"})
    rewrite(d, server={"workers": "1", "log_level": "error"})
    reload(d)
    # From now on info lines are filtered out, error lines are not.
    d.config.write_text(d.config.read_text() + "\nnonsense\n")
    mark = d.log_mark()
    d.signal(signal.SIGHUP)
    assert d.wait_log_re(r"has errors \(above\)", 10, start=mark), \
        d.log()[mark:]
    assert "SIGHUP: reloading" not in d.log()[mark:], d.log()[mark:]


# ---- refused reloads ---------------------------------------------------------------------

def test_invalid_config_is_refused_and_old_workers_keep_serving(snowd_factory):
    d = snowd_factory(server={"workers": "2"})
    workers = set(d.worker_pids())
    c = d.client("/echo")
    try:
        good = d.config.read_text()
        d.config.write_text(good + "\n[limits]\nmax_message = lots\n")
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        assert d.wait_log_re(r"reload: .* has errors \(above\); still "
                             r"serving the previous configuration",
                             timeout=10, start=mark), d.log()[mark:]
        tail = d.log()[mark:]
        assert re.search(re.escape(str(d.config)) + r":\d+: ", tail), tail
        assert "max_message" in tail
        assert echo(c, "still here") == "still here"
        assert set(d.worker_pids()) == workers
        with d.client("/echo") as c2:
            assert echo(c2, "new client") == "new client"
        # Fixed, it reloads.
        d.config.write_text(good)
        reload(d)
        assert echo(c, "and after") == "and after"
    finally:
        c.close()


def test_reload_cannot_change_accept(snowd_factory):
    d = snowd_factory(server={"workers": "2"})
    workers = set(d.worker_pids())
    rewrite(d, server={"workers": "2", "accept": "shared"})
    mark = d.log_mark()
    d.signal(signal.SIGHUP)
    assert d.wait_log_re(r"'accept' cannot change while running", 10,
                         start=mark), d.log()[mark:]
    assert d.wait_log_re(r"still serving the previous configuration", 10,
                         start=mark)
    assert set(d.worker_pids()) == workers
    with d.client("/echo") as c:
        assert echo(c, "fine") == "fine"


def test_reload_to_an_address_in_use_is_refused(snowd_factory):
    d = snowd_factory(server={"workers": "1"})
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    busy = blocker.getsockname()[1]
    try:
        workers = set(d.worker_pids())
        rewrite(d, server={"workers": "1"},
                listens=[f"127.0.0.1:{d.port}", f"127.0.0.1:{busy}"])
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        assert d.wait_log_re(r"listen 127\.0\.0\.1:%d: Address already in "
                             r"use" % busy, 10, start=mark), d.log()[mark:]
        assert d.wait_log_re(r"reload: cannot listen", 10, start=mark)
        assert set(d.worker_pids()) == workers
        with d.client("/echo") as c:
            assert echo(c, "ok") == "ok"
    finally:
        blocker.close()


def test_new_workers_that_die_abandon_the_reload(snowd_factory, tmp_path):
    """A plugin that aborts when loaded (here: once a marker file exists)
    kills the new workers before they are ready; the old ones never
    stopped serving."""
    marker = tmp_path / "explode"
    plugins = make_plugin_dir(tmp_path / "plugins")
    compile_plugin(plugins / "bomb.so", """
        #include <snowd/snowd.h>
        #include <stdlib.h>
        #include <unistd.h>
        __attribute__((constructor)) static void maybe_explode(void)
        {
            if (access("%s", F_OK) == 0)
                abort();
        }
        static int noop(snow_actor *self, enum snow_kind kind,
                        const void *data, size_t len)
        {
            return snow_send(self, kind, data, len);
        }
        static const struct snow_handler handlers[] = {
            { .name = "bomb", .on_message = noop },
        };
        SNOW_PLUGIN(.name = "bomb", .version = "1",
                    .handlers = handlers, .nhandlers = 1);
        """ % marker)
    d = snowd_factory(server={"workers": "2"}, plugin_dir=plugins,
                      worker_deaths_ok=True)
    workers = set(d.worker_pids())
    c = d.client("/echo")
    try:
        marker.touch()
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        assert d.wait_log_re(r"reload: a worker of the new configuration "
                             r"died before it was ready; stopping the new "
                             r"workers, still serving the previous "
                             r"configuration", 15, start=mark), \
            d.log()[mark:]
        assert echo(c, "unharmed") == "unharmed"
        assert wait_until(lambda: set(d.worker_pids()) == workers, 10), \
            d.log()[mark:]
        with d.client("/echo") as c2:
            assert echo(c2, "new") == "new"
        # The old configuration is not counted as failing: no give-up, and
        # a later reload works.
        marker.unlink()
        reload(d, n=3)
        assert echo(c, "later") == "later"
    finally:
        c.close()


def test_clients_during_an_abandoned_reload_are_served(snowd_factory,
                                                      tmp_path):
    """A reload to more workers whose new workers are slow to load, then
    die: the sockets bound for them must not take clients meanwhile (in
    a SO_REUSEPORT group they would get a share of them, and reset them
    when closed), so every client of that time is served by the old
    worker."""
    marker = tmp_path / "slow-bomb"
    plugins = make_plugin_dir(tmp_path / "plugins")
    compile_plugin(plugins / "slowbomb.so", """
        #include <snowd/snowd.h>
        #include <stdlib.h>
        #include <unistd.h>
        __attribute__((constructor)) static void maybe_explode(void)
        {
            if (access("%s", F_OK) == 0) {
                sleep(2);
                abort();
            }
        }
        static int noop(snow_actor *self, enum snow_kind kind,
                        const void *data, size_t len)
        {
            return snow_send(self, kind, data, len);
        }
        static const struct snow_handler handlers[] = {
            { .name = "slowbomb", .on_message = noop },
        };
        SNOW_PLUGIN(.name = "slowbomb", .version = "1",
                    .handlers = handlers, .nhandlers = 1);
        """ % marker)
    d = snowd_factory(server={"workers": "1"}, plugin_dir=plugins,
                      worker_deaths_ok=True)
    rewrite(d, server={"workers": "4"})
    marker.touch()
    mark = d.log_mark()
    d.signal(signal.SIGHUP)
    assert d.wait_log_re(r"reload: starting 4 worker", 10, start=mark)
    served = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not re.search(
            r"reload: a worker of the new configuration died",
            d.log()[mark:]):
        with d.client("/echo", timeout=10) as c:
            assert echo(c, f"c{served}") == f"c{served}"
        served += 1
    assert d.wait_log_re(r"still serving the previous configuration", 10,
                         start=mark), d.log()[mark:]
    assert served >= 20, served
    for i in range(20):
        with d.client("/echo", timeout=10) as c:
            assert echo(c, f"after {i}") == f"after {i}"


# ---- plugins replaced on disk ----------------------------------------------------------

def test_plugin_changed_on_disk_serves_after_reload(snowd_factory, tmp_path):
    plugins = make_plugin_dir(tmp_path / "plugins")
    so = plugins / "version.so"
    compile_plugin(so, VERSIONED % {"version": "v1"})
    routes = dict(ROUTES, **{"/version": {"handler": "version"}})
    d = snowd_factory(server={"workers": "2"}, plugin_dir=plugins,
                      routes=routes)
    old = d.client("/version")
    try:
        assert echo(old, "?") == "v1"
        compile_plugin(so, VERSIONED % {"version": "v2"})
        reload(d)
        for _ in range(6):      # whichever new worker takes it
            with d.client("/version") as c:
                assert echo(c, "?") == "v2"
        # The old connection keeps the code it started with.
        assert echo(old, "?") == "v1"
    finally:
        old.close()


# ---- services ---------------------------------------------------------------------------

def test_services_restart_once_in_the_new_generation(snowd_factory):
    d = snowd_factory(server={"workers": "2"})
    with d.client("/counter") as c:
        for _ in range(3):
            c.send_text("incr")
            c.recv_text()
    mark = d.log_mark()
    reload(d)
    assert d.wait_log_re(r"service 'counter' started", 10, start=mark), \
        d.log()[mark:]
    # One counter, fresh, reachable by name from every new worker.
    values = []
    for _ in range(8):
        with d.client("/counter") as c:
            c.send_text("incr")
            values.append(int(c.recv_text()))
    assert values == list(range(1, 9)), values
    tail = d.log()[mark:]
    assert tail.count("service 'counter' started") == 1, tail
    assert "EEXIST" not in tail and "already registered" not in tail, tail


# ---- listeners ----------------------------------------------------------------------------

def test_reload_adds_and_removes_listeners(snowd_factory):
    d = snowd_factory(server={"workers": "2"})
    first = d.port
    second = free_port()
    rewrite(d, server={"workers": "2"},
            listens=[f"127.0.0.1:{first}", f"127.0.0.1:{second}"])
    reload(d)
    for port in (first, second):
        c = RawClient(port)
        c.handshake("/echo")
        assert echo(c, str(port)) == str(port)
        c.close()
    rewrite(d, server={"workers": "2"}, listens=[f"127.0.0.1:{second}"])
    reload(d, n=3)
    # The removed address is closed once the old workers have let it go.
    def refused():
        try:
            socket.create_connection(("127.0.0.1", first), timeout=1).close()
            return False
        except ConnectionRefusedError:
            return True
    assert wait_until(refused, 10), d.log()[-2000:]
    c = RawClient(second)
    c.handshake("/echo")
    assert echo(c, "kept") == "kept"
    c.close()
    d.port = second       # for the fixture's checks


# ---- under load ------------------------------------------------------------------------

def test_reload_under_load_drops_and_refuses_nothing(snowd_factory):
    """Established connections echo all the time through three reloads,
    and client loops opening new connections meet no refusal, reset or
    failed handshake."""
    d = snowd_factory(server={"workers": "2"},
                      limits={"drain_timeout": "60s"})
    steady = [d.client("/echo", timeout=10) for _ in range(16)]
    stop = threading.Event()
    errors = []
    opened = [0]
    echoed = [0]

    def churn():
        i = 0
        while not stop.is_set() and i < 50000:
            i += 1
            try:
                c = RawClient(d.port, timeout=10)
                try:
                    c.handshake("/echo")
                    if echo(c, f"n{i}") != f"n{i}":
                        errors.append(f"bad echo on new connection {i}")
                finally:
                    c.close()
                opened[0] += 1
            except Exception as e:  # any failure is what we look for
                errors.append(f"new connection {i}: {e!r}")

    def keep_talking():
        i = 0
        while not stop.is_set() and i < 500000:
            for k, c in enumerate(steady):
                i += 1
                try:
                    if echo(c, f"s{k}.{i}") != f"s{k}.{i}":
                        errors.append(f"bad echo on old connection {k}")
                    echoed[0] += 1
                except Exception as e:
                    errors.append(f"old connection {k}: {e!r}")
                    return

    threads = [threading.Thread(target=churn) for _ in range(3)]
    threads.append(threading.Thread(target=keep_talking))
    for t in threads:
        t.start()
    try:
        for n in (2, 3, 4):
            before, talked = opened[0], echoed[0]
            reload(d, n=n)
            assert wait_until(lambda: opened[0] > before + 300 and
                              echoed[0] > talked + 300, 60), \
                (opened[0], echoed[0], errors[:5])
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        for c in steady:
            c.close()
    assert not errors, errors[:10]


# ---- stop -----------------------------------------------------------------------------

def test_sigterm_during_a_drain_closes_both_generations(snowd_factory):
    d = snowd_factory(server={"workers": "1"},
                      limits={"drain_timeout": "60s"})
    old = d.client("/echo")
    try:
        reload(d)
        new = d.client("/echo")
        try:
            d.signal(signal.SIGTERM)
            for c in (old, new):
                assert c.recv_close(timeout=10).close_code == 1001
                c.send_close(1001)
            assert d.wait_exit(timeout=15) == 0
        finally:
            new.close()
    finally:
        old.close()


def test_sigterm_waits_for_drain_timeout_at_most(snowd_factory):
    d = snowd_factory(limits={"drain_timeout": "1s", "close_timeout": "60s"})
    c = d.client("/echo")
    try:
        d.signal(signal.SIGTERM)
        assert c.recv_close(timeout=10).close_code == 1001
        # Never answered: the stop does not wait for close_timeout.
        assert d.wait_exit(timeout=20) == 0
    finally:
        c.close()


# ---- systemd --------------------------------------------------------------------------

def test_reloading_then_ready_is_notified(snowd_factory, notify):
    d = notified(snowd_factory, notify, server={"workers": "2"})
    assert notify.wait_for("READY", "1", timeout=15), d.log()
    d.signal(signal.SIGHUP)
    reloading = notify.wait_for("RELOADING", "1", timeout=10)
    assert reloading, f"{notify.messages}\n{d.log()}"
    assert int(reloading["MONOTONIC_USEC"]) > 0
    ready = notify.wait_for("READY", "1", timeout=15)
    assert ready, f"{notify.messages}\n{d.log()}"
    assert ready["STATUS"] == "2 workers, serving (reloaded)"
    assert d.wait_log("reload: configuration #2 serving", 5)
    # A refused reload also ends in READY=1, saying so.
    d.config.write_text(d.config.read_text() + "\nnonsense\n")
    d.signal(signal.SIGHUP)
    assert notify.wait_for("RELOADING", "1", timeout=10)
    ready = notify.wait_for("READY", "1", timeout=10)
    assert ready and ready["STATUS"] == ("reload failed; serving the "
                                         "previous configuration"), \
        notify.messages
    assert {m.pid for m in notify.messages} == {d.pid}
