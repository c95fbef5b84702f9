"""Actors: pids, tell, the name registry, monitors, timers, bounded
mailboxes, supervised services, and the counter and ticker examples.

Most tests run twice: with both actors in one worker ("same") and with
one in each of two workers ("cross"), where every message goes through
the master.  The actors are connections of tests/plugins/actorkit.c,
driven by text commands (see its header)."""
import time

import pytest

from conftest import (OP_TEXT, RawClient, build_frame, parse_line,
                      serving_pid, wait_until)

WHERE = ["same", "cross"]
MiB = 1024


def kits_at(d, slots, tries=96):
    """KitClients on the given worker slots, in order (a slot may repeat):
    opens connections until each wanted slot has its clients."""
    want = list(slots)
    got = [None] * len(want)
    spare = []
    for _ in range(tries):
        k = d.kit()
        for i, s in enumerate(want):
            if got[i] is None and s == k.slot:
                got[i] = k
                break
        else:
            spare.append(k)
        if all(got):
            break
    for k in spare:
        k.close()
    if not all(got):
        for k in got:
            if k:
                k.close()
        pytest.fail(f"{tries} connections did not cover slots {want}")
    return got


def two_kits(d, where):
    return kits_at(d, [0, 0] if where == "same" else [0, 1])


def workers2(factory, **kw):
    server = {"workers": "2"}
    server.update(kw.pop("server", {}))
    return factory(server=server, **kw)


def info_tell(k, timeout=None, data_prefix=None):
    return k.wait_info(lambda i: i["_"] == "info tell" and (
        data_prefix is None or i["data"].startswith(data_prefix)), timeout)


def info_down(k, frm=None, timeout=None):
    return k.wait_info(lambda i: i["_"] == "info down" and (
        frm is None or i["from"] == str(frm)), timeout)


def wait_stats(k, pred, timeout=10.0):
    """Polls the stats command until pred(stats) holds; returns them."""
    last = {}

    def check():
        last.update(k.cmd_kv("stats"))
        return pred(last)
    assert wait_until(check, timeout), f"stats never matched: {last}"
    return dict(last)


def svc_state(k, name, timeout=None):
    """Asks service `name` for its state (it answers with a tell)."""
    assert k.cmd(f"svc {name} get") == "ok"
    info = info_tell(k, timeout, f"state name={name} ")
    return parse_line(info["data"])


def kit_near(d, service, where):
    """A KitClient in the worker of `service` (same) or in the other one
    (cross), with the service's pid."""
    with d.kit() as probe:
        pid = probe.wait_whereis(service)
    slot = (pid >> 48) & 0xff
    want = slot if where == "same" else 1 - slot
    return kits_at(d, [want])[0], pid


def monitor(watcher, target):
    """watcher monitors target, and the monitor is in place when this
    returns: a tell sent after it has reached the target.  (Signals from
    one actor to another arrive in order, as in Erlang.  Without this
    step a target in another worker that ends at once may be reported as
    "noproc": see test_remote_monitor_of_an_actor_ending_meanwhile.)"""
    assert watcher.cmd(f"monitor {target.pid}") == "ok"
    assert watcher.cmd(f"tell {target.pid} 77 monitor-sync") == "ok"
    i = info_tell(target, data_prefix="monitor-sync")
    assert i["from"] == str(watcher.pid)


def closes(k, code=None):
    """Ends a KitClient's connection with a close handshake."""
    k.raw.send_close(1000 if code is None else code)
    k.raw.recv_close(skip_data=True)
    assert k.raw.wait_eof(10)
    k.close()


# ---- identity ---------------------------------------------------------------------

def test_pids_name_their_worker_and_are_never_reused(snowd_factory):
    d = workers2(snowd_factory)
    workers = d.ready_workers()
    kits = d.kits_on_slots({0, 1})
    seen = set()
    try:
        for slot, k in kits.items():
            assert k.pid != 0
            assert (k.pid >> 48) & 0xff == slot          # snow_pid_worker
            assert (k.pid >> 56) == 0                    # node 0
            assert (k.pid >> 32) & 0xffff != 0           # generation
            assert k.ospid == workers[slot]
            seen.add(k.pid)
        for _ in range(20):
            with d.kit() as k:
                assert k.pid not in seen
                seen.add(k.pid)
    finally:
        for k in kits.values():
            k.close()


# ---- tell ----------------------------------------------------------------------------

@pytest.mark.parametrize("where", WHERE)
def test_tell_carries_bytes_tag_and_sender(snowd_factory, where):
    d = workers2(snowd_factory)
    a, b = two_kits(d, where)
    try:
        assert a.cmd(f"tell {b.pid} 42 hello world") == "ok"
        i = info_tell(b)
        assert i["from"] == str(a.pid) and i["tag"] == "42"
        assert i["len"] == "11" and i["data"] == "hello world"
        assert b.cmd(f"tell {a.pid} 0 back") == "ok"
        i = info_tell(a)
        assert i["from"] == str(b.pid) and i["data"] == "back"
        assert a.cmd("tell self 4294967295 to me") == "ok"
        i = info_tell(a)
        assert i["from"] == str(a.pid) and i["tag"] == "4294967295"
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("where", WHERE)
def test_tells_from_one_sender_arrive_in_order(snowd_factory, where):
    d = workers2(snowd_factory)
    a, b = two_kits(d, where)
    try:
        assert b.cmd("quiet 1") == "ok"
        f = a.cmd_kv(f"flood {b.pid} 2000 100")
        assert f == {"_": "flood", "ok": "2000", "efull": "0", "other": "0",
                     "err": "-"}, f
        st = wait_stats(b, lambda s: s["tells"] == "2000")
        assert st["ooo"] == "0" and st["gaps"] == "0", st
        assert st["bytes"] == str(2000 * 100)
    finally:
        a.close()
        b.close()


def test_tell_size_limit(snowd_factory):
    d = snowd_factory()
    a, b = d.kit(), d.kit()
    try:
        f = a.cmd_kv(f"flood {b.pid} 1 65536")
        assert f["ok"] == "1", f
        assert info_tell(b)["len"] == "65536"
        f = a.cmd_kv(f"flood {b.pid} 1 65537")
        assert f["ok"] == "0" and f["other"] == "1", f
        assert f["err"] == "ETOOBIG", f
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("where", WHERE)
def test_tell_to_an_ended_actor(snowd_factory, where):
    """Local: -SNOW_ENOENT.  In another worker: dropped silently (0)."""
    d = workers2(snowd_factory)
    a, b = two_kits(d, where)
    try:
        monitor(a, b)
        closes(b)
        assert info_down(a, b.pid)["reason"] == "normal"
        expect = "err ENOENT" if where == "same" else "ok"
        assert a.cmd(f"tell {b.pid} 1 anyone?") == expect
        assert a.cmd("ping") == "pong"
    finally:
        a.close()
        b.close()


# ---- names ------------------------------------------------------------------------------

def test_register_rules(snowd_factory):
    d = snowd_factory()
    a, b, c = d.kit(), d.kit(), d.kit()
    try:
        assert a.whereis("alice") == 0
        assert a.cmd("register alice") == "ok"
        assert a.whereis("alice") == a.pid
        assert a.cmd("register alice") == "err EEXIST"   # has it already
        assert a.cmd("register second") == "err EEXIST"  # has a name
        assert b.cmd("register alice") == "err EEXIST"   # taken
        assert b.cmd("register " + "n" * 64) == "ok"
        assert c.cmd("register " + "n" * 65) == "err EINVAL"
        assert c.cmd("register caf\u00e9") == "err EINVAL"
        # Service names belong to their services.
        for svc in ("kit.permanent", "counter", "ticker"):
            assert c.cmd(f"register {svc}") == "err EEXIST"
        assert c.cmd("register carol") == "ok"
        assert b.whereis("carol") == c.pid
    finally:
        for k in (a, b, c):
            k.close()


@pytest.mark.parametrize("where", WHERE)
def test_tell_name_reaches_the_registered_actor(snowd_factory, where):
    d = workers2(snowd_factory)
    a, b = two_kits(d, where)
    try:
        assert a.cmd("tellname bob 5 hi") == "err ENOENT"
        assert b.cmd("register bob") == "ok"
        a.wait_whereis("bob", lambda p: p == b.pid)
        assert a.cmd("tellname bob 5 hi") == "ok"
        i = info_tell(b)
        assert i["from"] == str(a.pid) and i["tag"] == "5" and \
            i["data"] == "hi"
    finally:
        a.close()
        b.close()


def test_concurrent_registration_has_exactly_one_winner(snowd_factory):
    d = workers2(snowd_factory)
    kits = kits_at(d, [0] * 8 + [1] * 8)
    try:
        for k in kits:                   # all requests first ...
            k.send("register race.name")
        replies = []
        for k in kits:                   # ... then every answer
            replies.append(k.raw.recv_text(timeout=10))
        winners = [k for k, r in zip(kits, replies) if r == "ok"]
        assert len(winners) == 1, replies
        assert all(r in ("ok", "err EEXIST") for r in replies), replies
        for k in kits:
            k.wait_whereis("race.name", lambda p: p == winners[0].pid, 5)
    finally:
        for k in kits:
            k.close()


@pytest.mark.parametrize("how", ["close", "fail", "stop"])
@pytest.mark.parametrize("where", WHERE)
def test_an_ended_actors_name_is_freed(snowd_factory, where, how):
    d = workers2(snowd_factory)
    a, b = two_kits(d, where)
    try:
        assert a.cmd("register freed.name") == "ok"
        b.wait_whereis("freed.name", lambda p: p == a.pid)
        if how == "close":
            closes(a)
        elif how == "fail":
            a.send("fail on purpose")
            assert a.raw.recv_close(skip_data=True).close_code == 1011
        else:
            a.send("stop")
            assert a.raw.recv_close(skip_data=True).close_code == 1000
        # The registry is updated asynchronously: retry, bounded.
        got = wait_until(lambda: b.cmd("register freed.name") == "ok", 5)
        assert got, b.cmd("register freed.name")
        assert b.whereis("freed.name") == b.pid
    finally:
        a.close()
        b.close()


# ---- monitors -------------------------------------------------------------------------

@pytest.mark.parametrize("where", WHERE)
def test_monitor_gives_normal_then_noproc(snowd_factory, where):
    d = workers2(snowd_factory)
    a, b = two_kits(d, where)
    try:
        monitor(b, a)
        monitor(b, a)                              # each call: one DOWN
        closes(a)
        assert info_down(b, a.pid)["reason"] == "normal"
        assert info_down(b, a.pid)["reason"] == "normal"
        assert not [i for i in b.drain_infos(0.5) if i["_"] == "info down"]
        assert b.cmd(f"monitor {a.pid}") == "ok"
        assert info_down(b, a.pid)["reason"] == "noproc"
        # A pid of a live worker generation that was never handed out.
        never = (a.pid & ~0xffffffff) | 0xfffffff0
        assert b.cmd(f"monitor {never}") == "ok"
        assert info_down(b, never)["reason"] == "noproc"
    finally:
        a.close()
        b.close()


def test_remote_monitor_of_an_actor_ending_meanwhile(snowd_factory):
    """snow_monitor returned, then the target (in another worker) crashed
    before the request reached it.  snowd.h: each call gives exactly one
    DOWN, and an actor that ends while the request travels gives
    "noproc", as in Erlang.  The target's worker sleeps while tells pile
    up on its channel, then finds the crash command from its client
    ahead of the monitor request, so the race is taken every time."""
    d = workers2(snowd_factory)
    watcher, target = two_kits(d, "cross")
    try:
        assert target.cmd("quiet 1") == "ok"
        target.send("sleep 1500")
        time.sleep(0.1)
        for _ in range(2):      # 42 MB: within what the master holds
            f = watcher.cmd_kv(f"flood {target.pid} 350 60000")
            assert f["other"] == "0", f
        assert watcher.cmd(f"monitor {target.pid}") == "ok"  # returned ...
        target.send("fail after the monitor")          # ... then it crashed
        assert target.raw.recv_close(timeout=15, skip_data=True) \
            .close_code == 1011
        down = info_down(watcher, target.pid, 15)
        assert down["reason"] in ("noproc", "crashed: after the monitor"), \
            down
        assert not [i for i in watcher.drain_infos(1.0)
                    if i["_"] == "info down"], "a second DOWN"
    finally:
        watcher.close()
        target.close()


LONG_REASON = "a reason long enough that its DOWN frame is bigger " \
    "than any gap left in a full channel"


@pytest.mark.parametrize("lost", ["monitor", "down"])
def test_monitors_survive_a_full_channel(snowd_factory, lost):
    """A worker that does not read its channel for a while makes the
    master drop tells to it past a bound.  Monitor requests and DOWNs
    caught in the same flood must still arrive: "each call gives one
    DOWN".  The channel is filled with big tells, then topped up with
    empty ones (32-byte frames), so that what follows cannot squeeze into
    the gap: two monitor requests (lost=monitor: the target's worker is
    the busy one), or a DOWN with a long reason (lost=down: the
    watcher's)."""
    d = workers2(snowd_factory, limits={"mailbox_limit": "50"})
    if lost == "monitor":
        watcher, target, flooder = kits_at(d, [0, 1, 0])
        busy = target
    else:
        watcher, target, flooder = kits_at(d, [0, 1, 1])
        busy = watcher
        monitor(watcher, target)
    try:
        assert busy.cmd("quiet 1") == "ok"
        busy.send("sleep 3000")
        time.sleep(0.1)
        # The flooder's worker never blocks on its channel: it queues up
        # to its own bound per command and the master takes what it can
        # between commands, so flood until the master has dropped some
        # (bounded), then top up.
        for _ in range(400):
            f = flooder.cmd_kv(f"flood {busy.pid} 500 60000", 30)
            assert f["other"] == "0", f
            if "is not reading its channel" in d.log():
                break
            time.sleep(0.005)   # let the channel drain into the master
        assert "is not reading its channel" in d.log(), \
            "the flood was too small to test this"
        for _ in range(3):
            f = flooder.cmd_kv(f"flood {busy.pid} 4000 0", 30)
            assert f["other"] == "0", f
        if lost == "monitor":
            assert watcher.cmd(f"monitor {target.pid}") == "ok"
            assert watcher.cmd(f"monitor {target.pid}") == "ok"
        else:
            target.send(f"fail {LONG_REASON}")
        assert busy.raw.recv_text(timeout=30) == "ok"      # awake
        if lost == "monitor":
            assert target.cmd("ping") == "pong"
            target.send("stop")
            for _ in range(2):
                down = info_down(watcher, target.pid, 15)
                assert down["reason"] == "normal", down
        else:
            down = info_down(watcher, target.pid, 15)
            assert down["reason"] == f"crashed: {LONG_REASON}", down
    finally:
        for k in (watcher, target, flooder):
            k.close()


CRASHES = [
    ("fail boom here", "boom here"),
    ("crash", "on_message returned -1"),
    ("infocrash", "on_info returned -1"),
    ("infofail late boom", "late boom"),
]


@pytest.mark.parametrize("cmd,reason", CRASHES)
@pytest.mark.parametrize("where", WHERE)
def test_connection_crash_closes_1011_and_monitors_get_reason(
        snowd_factory, where, cmd, reason):
    d = workers2(snowd_factory)
    victim, watcher = two_kits(d, where)
    workers = d.worker_pids()
    try:
        monitor(watcher, victim)
        mark = d.log_mark()
        if cmd.startswith("info"):
            assert victim.cmd(cmd) == "ok"
            victim.send("tell self 1 trigger")
        else:
            victim.send(cmd)
        f = victim.raw.recv_close(skip_data=True)
        assert f.close_code == 1011, f
        assert info_down(watcher, victim.pid)["reason"] == \
            f"crashed: {reason}"
        assert d.wait_log_re(r"route /actors: handler 'actorkit' crashed: "
                             + reason + r"; closing with 1011", 5, mark), \
            d.log()[-2000:]
        assert watcher.cmd("ping") == "pong"       # nobody else touched
        assert d.worker_pids() == workers
    finally:
        victim.close()
        watcher.close()


@pytest.mark.parametrize("where", WHERE)
def test_stop_closes_1000_and_monitors_get_normal(snowd_factory, where):
    d = workers2(snowd_factory)
    victim, watcher = two_kits(d, where)
    try:
        monitor(watcher, victim)
        victim.send("stop")
        assert victim.raw.recv_close(skip_data=True).close_code == 1000
        victim.raw.send_close(1000)
        assert info_down(watcher, victim.pid)["reason"] == "normal"
        assert "crashed" not in d.log()
    finally:
        victim.close()
        watcher.close()


# ---- timers -------------------------------------------------------------------------------

def timer_infos(k, seconds, tag=None):
    return [i for i in k.drain_infos(seconds) if i["_"] == "info timer" and
            (tag is None or i["tag"] == str(tag))]


def test_one_shot_timer(snowd_factory):
    d = snowd_factory()
    with d.kit() as k:
        t = k.cmd_kv("timer 100 0 7")
        assert t["_"] == "timer" and int(t["id"]) > 0, t
        assert k.wait_info(lambda i: i["_"] == "info timer", 5)["tag"] == "7"
        assert timer_infos(k, 0.6) == []
        assert k.cmd(f"cancel {t['id']}") == "err ENOENT"   # fired


def test_timers_fire_in_deadline_order(snowd_factory):
    d = snowd_factory()
    with d.kit() as k:
        assert k.cmd_kv("timer 400 0 1")["_"] == "timer"
        assert k.cmd_kv("timer 100 0 2")["_"] == "timer"
        first = k.wait_info(lambda i: i["_"] == "info timer", 5)
        second = k.wait_info(lambda i: i["_"] == "info timer", 5)
        assert (first["tag"], second["tag"]) == ("2", "1")


def test_repeating_timer_and_cancel(snowd_factory):
    d = snowd_factory()
    with d.kit() as k:
        t = k.cmd_kv("timer 50 100 8")
        for _ in range(3):
            assert k.wait_info(lambda i: i["_"] == "info timer", 5)["tag"] \
                == "8"
        assert k.cmd(f"cancel {t['id']}") == "ok"
        timer_infos(k, 0.3)            # a tick queued before the cancel
        assert timer_infos(k, 0.8) == [], "ticks after cancel"
        assert k.cmd(f"cancel {t['id']}") == "err ENOENT"


def test_cancel_before_firing(snowd_factory):
    d = snowd_factory()
    with d.kit() as k:
        t = k.cmd_kv("timer 300 0 9")
        other = k.cmd_kv("timer 400 0 10")
        assert k.cmd(f"cancel {t['id']}") == "ok"
        assert [i["tag"] for i in timer_infos(k, 1.0)] == ["10"]
        assert k.cmd(f"cancel {other['id']}") == "err ENOENT"
        assert k.cmd("cancel 999999") == "err ENOENT"


def test_timers_end_with_their_actor(snowd_factory):
    d = snowd_factory()
    k = d.kit()
    for _ in range(5):
        assert k.cmd_kv("timer 10 10 1")["_"] == "timer"
    time.sleep(0.2)
    closes(k)
    time.sleep(0.3)
    with d.kit() as k2:
        assert k2.cmd("ping") == "pong"
        assert timer_infos(k2, 0.3) == []


# ---- mailboxes ---------------------------------------------------------------------------

def test_full_mailbox_is_efull_for_the_sender(snowd_factory):
    d = snowd_factory(limits={"mailbox_limit": "100"})
    a, b = d.kit(), d.kit()
    try:
        assert a.cmd("quiet 1") == "ok" and b.cmd("quiet 1") == "ok"
        # The receiver cannot run while the sender's callback floods it
        # (one worker): exactly mailbox_limit tells fit.
        f = a.cmd_kv(f"flood {b.pid} 250 10")
        assert (f["ok"], f["efull"], f["other"]) == ("100", "150", "0"), f
        f = a.cmd_kv("flood self 150 10")
        assert (f["ok"], f["efull"], f["other"]) == ("100", "50", "0"), f
        # Every accepted tell is delivered, in order.
        for k in (a, b):
            st = wait_stats(k, lambda s: s["tells"] == "100")
            assert st["ooo"] == "0" and st["gaps"] == "0", st
        # Drained mailboxes take tells again.
        f = a.cmd_kv(f"flood {b.pid} 10 10")
        assert f["ok"] == "10", f
    finally:
        a.close()
        b.close()


def test_flooded_mailbox_keeps_worker_memory_bounded(snowd_factory):
    limit, rounds, count, size = 50, 60, 300, 60000
    d = snowd_factory(limits={"mailbox_limit": str(limit)})
    sender, target = d.kit(), d.kit()
    try:
        assert target.cmd("quiet 1") == "ok"
        base = d.workers_rss_kib()
        peak, accepted = base, 0
        for r in range(rounds):
            f = sender.cmd_kv(f"flood {target.pid} {count} {size}", 30)
            ok, efull = int(f["ok"]), int(f["efull"])
            assert f["other"] == "0" and ok + efull == count, f
            assert ok <= limit and efull >= count - limit, f
            accepted += ok
            peak = max(peak, d.workers_rss_kib())
        attempted = rounds * count * size // 1024
        bound = 64 * MiB
        # What makes the bound meaningful: far more was offered.
        assert attempted > 10 * bound
        assert peak - base < bound, \
            f"worker RSS grew by {(peak - base) // MiB} MiB while " \
            f"{attempted // MiB} MiB were offered and " \
            f"{accepted * size // 1024 // MiB} MiB accepted"
        st = wait_stats(target, lambda s: int(s["tells"]) == accepted)
        assert st["bytes"] == str(accepted * size)
        assert st["ooo"] == "0" and st["gaps"] == "0", st
        assert d.workers_rss_kib() - base < bound
    finally:
        sender.close()
        target.close()


def test_flood_into_a_busy_worker_keeps_memory_bounded(snowd_factory):
    """The receiver's worker does not read its channel for 3 s while
    another worker floods it: the master and both workers stay bounded
    (messages past the bounds are refused or dropped), and the order of
    what does arrive is kept."""
    limit, rounds, count, size = 50, 40, 500, 60000
    d = workers2(snowd_factory, limits={"mailbox_limit": str(limit)})
    kits = d.kits_on_slots({0, 1})
    sender, target = kits[0], kits[1]
    try:
        assert target.cmd("quiet 1") == "ok"
        base = d.rss_kib()
        target.send("sleep 3000")
        time.sleep(0.1)
        peak, accepted = base, 0
        for r in range(rounds):
            f = sender.cmd_kv(f"flood {target.pid} {count} {size}", 30)
            assert f["other"] == "0", f
            assert int(f["ok"]) + int(f["efull"]) == count, f
            accepted += int(f["ok"])
            peak = max(peak, d.rss_kib())
        assert target.raw.recv_text(timeout=30) == "ok"     # awake
        for _ in range(10):
            peak = max(peak, d.rss_kib())
            time.sleep(0.1)
        offered = rounds * count * size // 1024
        bound = 256 * MiB
        assert offered > 4 * bound
        assert peak - base < bound, \
            f"daemon RSS grew by {(peak - base) // MiB} MiB while " \
            f"{offered // MiB} MiB were offered"
        st = target.cmd_kv("stats")
        assert int(st["tells"]) <= accepted and st["ooo"] == "0", st
        assert sender.cmd("ping") == "pong" and target.cmd("ping") == "pong"
    finally:
        for k in kits.values():
            k.close()


# ---- services ------------------------------------------------------------------------------

SERVICES = ("kit.permanent", "kit.transient", "kit.temporary", "kit.fragile",
            "counter", "ticker")


def test_services_run_once_and_answer_every_worker(snowd_factory):
    d = workers2(snowd_factory)
    kits = d.kits_on_slots({0, 1})
    try:
        for name in SERVICES:
            pids = {k.wait_whereis(name) for k in kits.values()}
            assert len(pids) == 1, (name, pids)
            assert d.log().count(f"service '{name}' started") == 1, \
                d.log()[-3000:]
        for k in kits.values():
            st = svc_state(k, "kit.permanent")
            assert st["pid"] == str(k.whereis("kit.permanent"))
            assert st["slot"] == str((int(st["pid"]) >> 48) & 0xff)
            assert st["inits"] == "1"
        for i in range(3):
            for k in kits.values():
                assert k.cmd("svc kit.permanent incr") == "ok"
                info_tell(k, data_prefix="state name=kit.permanent ")
        assert svc_state(kits[0], "kit.permanent")["count"] == "6"
    finally:
        for k in kits.values():
            k.close()


def crash_service(d, k, name, pid, how, timeout=10):
    """Crashes (or stops) service `name`, running as `pid`, through k,
    which monitors it first.  Returns the DOWN reason."""
    assert k.cmd(f"monitor {pid}") == "ok"
    assert k.cmd(f"svc {name} {how}") == "ok"
    return info_down(k, pid, timeout)["reason"]


@pytest.mark.parametrize("how,reason", [
    ("crash", "crashed: on_info returned -1"),
    ("fail gave up", "crashed: gave up"),
])
@pytest.mark.parametrize("where", WHERE)
def test_permanent_service_crash_restarts_with_fresh_state(
        snowd_factory, where, how, reason):
    d = workers2(snowd_factory)
    k, pid = kit_near(d, "kit.permanent", where)
    try:
        for i in range(1, 4):
            assert k.cmd("svc kit.permanent incr") == "ok"
            st = parse_line(info_tell(k, data_prefix="state ")["data"])
            assert st["count"] == str(i), st
        st = svc_state(k, "kit.permanent")
        assert (st["count"], st["inits"], st["pid"]) == ("3", "1", str(pid))
        mark = d.log_mark()
        assert crash_service(d, k, "kit.permanent", pid, how) == reason
        new = k.wait_whereis("kit.permanent", lambda p: p not in (0, pid))
        assert (new >> 48) & 0xff == (pid >> 48) & 0xff
        st = svc_state(k, "kit.permanent")
        assert (st["count"], st["inits"], st["pid"]) == ("0", "1", str(new))
        log = d.log()[mark:]
        assert f"service 'kit.permanent' (pid {pid}) {reason}; restarting " \
               "(permanent)" in log, log
        assert f"kit.permanent: terminate: {reason}" in log, log
    finally:
        k.close()


def test_permanent_service_stopped_normally_restarts(snowd_factory):
    d = workers2(snowd_factory)
    k, pid = kit_near(d, "kit.permanent", "cross")
    try:
        mark = d.log_mark()
        assert crash_service(d, k, "kit.permanent", pid, "stop") == "normal"
        new = k.wait_whereis("kit.permanent", lambda p: p not in (0, pid))
        assert svc_state(k, "kit.permanent")["pid"] == str(new)
        assert "service 'kit.permanent' stopped normally; restarting " \
               "(permanent)" in d.log()[mark:]
    finally:
        k.close()


@pytest.mark.parametrize("where", WHERE)
def test_transient_service_crash_restarts(snowd_factory, where):
    d = workers2(snowd_factory)
    k, pid = kit_near(d, "kit.transient", where)
    try:
        assert k.cmd("svc kit.transient incr") == "ok"
        info_tell(k)
        mark = d.log_mark()
        assert crash_service(d, k, "kit.transient", pid, "crash") == \
            "crashed: on_info returned -1"
        new = k.wait_whereis("kit.transient", lambda p: p not in (0, pid))
        st = svc_state(k, "kit.transient")
        assert (st["count"], st["pid"]) == ("0", str(new))
        assert f"service 'kit.transient' (pid {pid}) crashed: on_info " \
               "returned -1; restarting (transient)" in d.log()[mark:]
    finally:
        k.close()


def stays_down(k, name, seconds=1.0):
    """whereis gives 0 now and for `seconds` more."""
    k.wait_whereis(name, lambda p: p == 0, 5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert k.whereis(name) == 0, f"{name} came back"
        time.sleep(0.1)
    assert k.cmd(f"svc {name} get") == "err ENOENT"


@pytest.mark.parametrize("where", WHERE)
def test_transient_service_stopped_normally_stays_down(snowd_factory, where):
    d = workers2(snowd_factory)
    k, pid = kit_near(d, "kit.transient", where)
    try:
        mark = d.log_mark()
        assert crash_service(d, k, "kit.transient", pid, "stop") == "normal"
        stays_down(k, "kit.transient")
        log = d.log()[mark:]
        assert "service 'kit.transient' stopped normally; not restarted " \
               "(transient)" in log, log
        assert "kit.transient: terminate: normal" in log, log
        assert k.cmd("register kit.transient") == "err EEXIST"  # reserved
    finally:
        k.close()


@pytest.mark.parametrize("how,reason", [
    ("crash", "crashed: on_info returned -1"),
    ("stop", "normal"),
])
def test_temporary_service_stays_down(snowd_factory, how, reason):
    d = workers2(snowd_factory)
    k, pid = kit_near(d, "kit.temporary", "cross")
    try:
        mark = d.log_mark()
        assert crash_service(d, k, "kit.temporary", pid, how) == reason
        stays_down(k, "kit.temporary")
        log = d.log()[mark:]
        if how == "crash":
            assert f"service 'kit.temporary' (pid {pid}) {reason}; not " \
                   "restarted (temporary)" in log, log
        else:
            assert "service 'kit.temporary' stopped normally; not " \
                   "restarted (temporary)" in log, log
        # The other services did not notice.
        assert svc_state(k, "kit.permanent")["inits"] == "1"
    finally:
        k.close()


def test_service_restart_intensity_escalates_to_the_worker(snowd_factory):
    """kit.fragile allows 2 restarts within 60 s: the third crash makes
    its worker exit; the master respawns the worker, and the service
    starts afresh there."""
    d = workers2(snowd_factory, worker_deaths_ok=True)
    k, pid = kit_near(d, "kit.fragile", "cross")
    slot = (pid >> 48) & 0xff
    pids = [pid]
    try:
        for _ in range(2):
            assert crash_service(d, k, "kit.fragile", pids[-1], "crash") == \
                "crashed: on_info returned -1"
            pids.append(k.wait_whereis("kit.fragile",
                                       lambda p: p not in [0] + pids))
            assert (pids[-1] >> 48) & 0xff == slot
        host = d.ready_workers()[slot]
        mark = d.log_mark()
        reason = crash_service(d, k, "kit.fragile", pids[-1], "crash")
        # Its worker may exit before the crash's DOWN leaves it.
        assert reason in ("crashed: on_info returned -1", "worker exited")
        # "crashed" in the brief; "ended" since restarts after a normal
        # stop count too.
        assert d.wait_log_re(r"service 'kit.fragile' (crashed|ended) 3 "
                             rf"times within 60(\.0)?s; escalating: worker "
                             rf"{slot} exits", 10, mark), d.log()[-3000:]
        assert d.wait_log_re(rf"worker {slot} \(pid {host}\) exited with "
                             r"status \d+; respawning", 10, mark), \
            d.log()[-3000:]
        d.wait_respawn(slot, host)
        new = k.wait_whereis("kit.fragile", lambda p: p not in [0] + pids)
        st = svc_state(k, "kit.fragile")
        assert (st["count"], st["inits"], st["pid"]) == ("0", "1", str(new))
        # One DOWN per monitor, even when the worker went too.
        assert not [i for i in k.drain_infos(0.5) if i["_"] == "info down"]
        assert k.cmd("ping") == "pong"
    finally:
        k.close()


@pytest.mark.parametrize("where", WHERE)
def test_service_monitors_a_connection(snowd_factory, where):
    d = workers2(snowd_factory)
    a, pid = kit_near(d, "kit.permanent", where)
    b, _ = kit_near(d, "kit.permanent", "cross")
    try:
        assert a.cmd("svc kit.permanent watch") == "ok"
        assert info_tell(a)["data"] == f"watching pid={a.pid}"
        a.send("fail watched")
        assert a.raw.recv_close(skip_data=True).close_code == 1011
        last = {}

        def watched_down():
            last.update(svc_state(b, "kit.permanent"))
            return last["downs"] == "1"
        assert wait_until(watched_down, 5), last
        st = last
        assert st["down"] == "crashed: watched", st
        assert st["pid"] == str(pid)       # a DOWN is no crash
    finally:
        a.close()
        b.close()


# ---- the examples --------------------------------------------------------------------------

def clients_on_both_workers(d, path, tries=64, retry_status=()):
    """Plain clients of `path`, at least one served by each worker."""
    by_worker = {}
    for _ in range(tries):
        c = RawClient(d.port, timeout=10)
        c.send(c.request_bytes(path))
        resp = c.read_response()
        if resp.status in retry_status:
            c.close()
            time.sleep(0.05)
            continue
        assert resp.status == 101, resp
        pid = serving_pid(d, c)
        assert pid, "no worker holds the connection"
        if pid in by_worker:
            c.close()
        else:
            by_worker[pid] = c
        if len(by_worker) == 2:
            return list(by_worker.values())
    for c in by_worker.values():
        c.close()
    pytest.fail(f"{tries} connections to {path} reached one worker only")


def test_counter_is_one_sequence_across_workers(snowd_factory):
    d = workers2(snowd_factory)
    clients = clients_on_both_workers(d, "/counter")
    try:
        got = {i: [] for i in range(len(clients))}
        for _ in range(25):                       # interleaved
            for i, c in enumerate(clients):
                c.send_text("incr")
                got[i].append(int(c.recv_text()))
        burst = build_frame(OP_TEXT, "incr")
        for c in clients:                         # pipelined
            c.send(burst * 50)
        for i, c in enumerate(clients):
            got[i] += [int(c.recv_text()) for _ in range(50)]
        for values in got.values():
            assert values == sorted(values) and \
                len(set(values)) == len(values), values
        every = sorted(v for values in got.values() for v in values)
        assert every == list(range(1, 151))
        for c in clients:
            c.send_text("get")
            assert c.recv_text() == "150"
            c.send_text("decr")
            assert c.recv_text() == "error: send incr or get"
    finally:
        for c in clients:
            c.close()


def test_ticker_ticks_every_subscriber(snowd_factory):
    d = workers2(snowd_factory)
    # 503 while the ticker service is still starting.
    clients = clients_on_both_workers(d, "/ticker", retry_status=(503,))
    try:
        seen = [[] for _ in clients]
        for _ in range(3):
            for i, c in enumerate(clients):
                text = c.recv_text(timeout=5)
                assert text.startswith("tick "), text
                seen[i].append(int(text.split()[1]))
        for ticks in seen:
            assert ticks == list(range(ticks[0], ticks[0] + 3)), seen
        assert set(seen[0]) & set(seen[1]), seen    # one ticker for all
        # A subscriber that leaves does not disturb the others.
        clients[0].send_close(1000)
        assert clients[0].recv_close(skip_data=True).close_code == 1000
        last = seen[1][-1]
        nxt = [int(clients[1].recv_text(timeout=5).split()[1])
               for _ in range(2)]
        assert nxt[0] > last and nxt[1] == nxt[0] + 1, (last, nxt)
    finally:
        for c in clients:
            c.close()


def test_ticker_subscribers_reconnect_after_its_worker_dies(snowd_factory):
    """The ticker's worker segfaults: its subscribers in the other worker
    get DOWN "worker exited" and close with 1012; a new connection is
    refused with 503 until the ticker is back, then ticks again."""
    d = workers2(snowd_factory, asan_options="handle_segv=0",
                 worker_deaths_ok=True)
    with d.kit() as probe:
        ticker = probe.wait_whereis("ticker")
    slot = (ticker >> 48) & 0xff
    host = d.ready_workers()[slot]
    clients = clients_on_both_workers(d, "/ticker", retry_status=(503,))
    far = [c for c in clients if serving_pid(d, c) != host]
    try:
        assert far, "no subscriber outside the ticker's worker"
        sub = far[0]
        assert sub.recv_text(timeout=5).startswith("tick ")
        killer = kits_at(d, [slot])[0]
        killer.send("segv")
        assert killer.raw.wait_eof(10)
        killer.close()
        f = sub.recv_close(timeout=10, skip_data=True)
        assert f.close_code == 1012 and f.close_reason == "ticker restarted"
        d.wait_respawn(slot, host)

        def subscribed():
            c = RawClient(d.port, timeout=10)
            c.send(c.request_bytes("/ticker"))
            if c.read_response().status == 101:
                return c
            c.close()
            return None
        again = wait_until(subscribed, 10, 0.1)
        assert again, "no /ticker connection accepted after the restart"
        try:
            text = again.recv_text(timeout=5)
            assert text.startswith("tick "), text
        finally:
            again.close()
    finally:
        for c in clients:
            c.close()
