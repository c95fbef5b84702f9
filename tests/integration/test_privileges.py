"""[server] user, group and pid_file, and the log formats (plain,
journal) and levels.

The suite runs as root (as in CI), so workers can really switch to
nobody/nogroup.  Plugins are loaded after the switch: these tests serve
them from a world-readable copy, since pytest's own temporary folders
are private to root.
"""
import grp
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import textwrap

import pytest

from conftest import (Daemon, RawClient, require_root, snowd_binary,
                      wait_until)

NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrnam("nogroup")

TIMESTAMP_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                            r"\[\d+\] (error|warn|info|debug): ")
JOURNAL_LINE = re.compile(r"^<([3467])>\[(\d+)\] \S")


def proc_ids(pid):
    """Uid, Gid (real, effective, saved, filesystem) and Groups of a
    process, from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid"):
                out[key] = [int(v) for v in value.split()]
            elif key == "Groups":
                out[key] = {int(v) for v in value.split()}
    return out


def run_snowd(*args, timeout=15, **kw):
    return subprocess.run([str(snowd_binary()), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          **kw)


def check_config(tmp_path, text, plugin_dir):
    conf = tmp_path / "test.ini"
    conf.write_text(textwrap.dedent(text).lstrip("\n")
                    .replace("@PLUGINS@", str(plugin_dir)))
    return conf, run_snowd("-t", "-c", conf)


def assert_error_at(conf, r, line, words):
    assert r.returncode == 1, r
    m = re.search(rf"^{re.escape(str(conf))}:(\d+): (.*)$", r.stderr, re.M)
    assert m, f"no '{conf}:LINE:' error in:\n{r.stderr}"
    assert int(m.group(1)) == line, r.stderr
    assert words in m.group(2), r.stderr


def echo_once(d, text="hello"):
    c = d.client("/echo")
    try:
        c.send_text(text)
        assert c.recv_text() == text
    finally:
        c.close()


# ---- user and group ----------------------------------------------------------

def test_workers_switch_user_and_group_master_stays_root(tmp_path,
                                                         public_dir):
    require_root()
    d = Daemon(tmp_path, plugin_dir=public_dir / "plugins",
               server={"workers": "2", "user": "nobody",
                       "group": "nogroup"}).start()
    try:
        workers = wait_until(lambda: len(d.worker_pids()) == 2 and
                             d.worker_pids(), 5.0)
        assert workers, d.log()
        master = proc_ids(d.pid)
        assert master["Uid"] == [0, 0, 0, 0], master
        assert master["Gid"] == [0, 0, 0, 0], master
        want_groups = set(os.getgrouplist("nobody", NOGROUP.gr_gid))
        for pid in workers:
            ids = proc_ids(pid)
            assert ids["Uid"] == [NOBODY.pw_uid] * 4, ids
            assert ids["Gid"] == [NOGROUP.gr_gid] * 4, ids
            assert ids["Groups"] == want_groups, ids
            assert 0 not in ids["Groups"], ids
        # The plugins were loaded after the switch, and serve.
        assert "cannot load" not in d.log(), d.log()
        echo_once(d)
    finally:
        d.stop()


def test_user_alone_takes_the_users_primary_group(tmp_path, public_dir):
    require_root()
    d = Daemon(tmp_path, plugin_dir=public_dir / "plugins",
               server={"user": "nobody"}).start()
    try:
        workers = wait_until(d.worker_pids, 5.0)
        assert workers, d.log()
        ids = proc_ids(workers[0])
        assert ids["Uid"] == [NOBODY.pw_uid] * 4, ids
        assert ids["Gid"] == [NOBODY.pw_gid] * 4, ids
        assert 0 not in ids["Groups"], ids
        echo_once(d)
    finally:
        d.stop()


@pytest.mark.parametrize("key,value,line,words", [
    ("user", "snowd-no-such-user", 4, "user: no user named "
     "'snowd-no-such-user'"),
    ("group", "snowd-no-such-group", 5, "group: no group named "
     "'snowd-no-such-group'"),
])
def test_unknown_user_or_group_fails_the_config_test(tmp_path, public_dir,
                                                     key, value, line,
                                                     words):
    user = value if key == "user" else "nobody"
    group = value if key == "group" else "nogroup"
    conf, r = check_config(tmp_path, f"""
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        user = {user}
        group = {group}
        [route /echo]
        handler = echo
        """, public_dir / "plugins")
    assert_error_at(conf, r, line, words)


def test_group_without_user_is_an_error(tmp_path, public_dir):
    conf, r = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        group = nogroup
        [route /echo]
        handler = echo
        """, public_dir / "plugins")
    assert_error_at(conf, r, 4, "group: set 'user' too")


def as_nobody_check(public_dir, user_line):
    """Runs `snowd -t` as nobody/nogroup on a config with user_line."""
    binary = public_dir / "snowd"
    shutil.copy(snowd_binary(), binary)
    binary.chmod(0o755)
    conf = public_dir / "nobody.ini"
    conf.write_text(textwrap.dedent(f"""\
        [server]
        listen = 127.0.0.1:1
        plugin_dir = {public_dir / 'plugins'}
        {user_line}
        [route /echo]
        handler = echo
        """))
    conf.chmod(0o644)
    r = subprocess.run([str(binary), "-t", "-c", str(conf)],
                       capture_output=True, text=True, timeout=15,
                       user=NOBODY.pw_uid, group=NOGROUP.gr_gid,
                       extra_groups=[], cwd="/")
    return conf, r


def test_unprivileged_master_cannot_switch_to_another_user(public_dir):
    require_root()
    conf, r = as_nobody_check(public_dir, "user = root")
    assert_error_at(conf, r, 4, "user: snowd runs as uid "
                    f"{NOBODY.pw_uid}")
    assert "not as root" in r.stderr, r.stderr


def test_unprivileged_master_may_name_itself(public_dir):
    require_root()
    conf, r = as_nobody_check(public_dir, "user = nobody")
    assert r.returncode == 0, r.stderr


# ---- pid_file ------------------------------------------------------------------

def test_pid_file_written_and_removed(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pid_file = run_dir / "snowd.pid"
    d = Daemon(tmp_path / "a", server={"pid_file": pid_file}).start()
    try:
        assert pid_file.read_text() == f"{d.pid}\n"
        assert stat.S_IMODE(pid_file.stat().st_mode) == 0o644
        # Written through a temporary file, which is gone.
        assert [p.name for p in run_dir.iterdir()] == ["snowd.pid"]
        echo_once(d)
    finally:
        d.stop()
    assert d.proc.returncode == 0, d.log()
    assert not pid_file.exists()


def test_pid_file_of_a_running_daemon_refuses_to_start(tmp_path):
    pid_file = tmp_path / "snowd.pid"
    first = Daemon(tmp_path / "a", server={"pid_file": pid_file}).start()
    try:
        second = Daemon(tmp_path / "b", server={"pid_file": pid_file})
        second.start(wait=False)
        assert second.wait_exit(10.0) == 1, second.log()
        second.check()
        assert (f"pid_file {pid_file}: another snowd (pid {first.pid}) is "
                "running") in second.log(), second.log()
        assert "started (pid" not in second.log(), second.log()
        # The running daemon's file is left as it was, and it serves.
        assert pid_file.read_text() == f"{first.pid}\n"
        echo_once(first)
    finally:
        first.stop()
    assert not pid_file.exists()


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait(5)
    return p.pid


@pytest.mark.parametrize("content,words", [
    (None, "is not running; replacing the stale file"),
    ("garbage\n", "holds no pid; replacing it"),
])
def test_stale_pid_file_is_replaced(tmp_path, content, words):
    pid_file = tmp_path / "snowd.pid"
    pid_file.write_text(content if content is not None
                        else f"{dead_pid()}\n")
    d = Daemon(tmp_path / "a", server={"pid_file": pid_file}).start()
    try:
        assert pid_file.read_text() == f"{d.pid}\n"
        assert words in d.log(), d.log()
    finally:
        d.stop()
    assert not pid_file.exists()


def test_pid_file_in_a_missing_folder_fails_the_config_test(tmp_path,
                                                           public_dir):
    conf, r = check_config(tmp_path, f"""
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        pid_file = {tmp_path}/absent/snowd.pid
        [route /echo]
        handler = echo
        """, public_dir / "plugins")
    assert_error_at(conf, r, 4, f"pid_file: folder '{tmp_path}/absent'")


# ---- log formats and levels ------------------------------------------------------

def start_with_journal_stream(tmp_path, monkeypatch, server=None,
                              matching=True):
    """A daemon whose stderr (its log file) is, or is not, the stream
    JOURNAL_STREAM names, as systemd sets it."""
    d = Daemon(tmp_path, server=server)
    d.logfile.touch()
    other = tmp_path / "other"
    other.touch()
    st = os.stat(d.logfile if matching else other)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    d.start()
    # Daemon.start truncates the file, which keeps its inode.
    assert not matching or os.stat(d.logfile).st_ino == st.st_ino
    return d


def served_and_stopped(d):
    try:
        echo_once(d)
        # A refused upgrade is logged at level debug.
        with RawClient(d.port) as c:
            c.handshake("/nowhere", expect=404)
    finally:
        d.stop()
    lines = d.log().splitlines()
    assert lines, "nothing logged"
    return lines


def assert_journal_lines(d, lines):
    for line in lines:
        m = JOURNAL_LINE.match(line)
        assert m, f"not a journal line: {line!r}\n{d.log()}"
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", line), line
    pids = {int(JOURNAL_LINE.match(x).group(2)) for x in lines}
    assert d.pid in pids and len(pids) >= 2, pids   # master and worker
    assert any(x.startswith("<6>") and "started (pid" in x for x in lines)
    assert any(x.startswith("<6>") and ") ready" in x for x in lines)
    assert any(x.startswith("<7>") and "404" in x for x in lines), lines


def assert_plain_lines(d, lines):
    for line in lines:
        assert TIMESTAMP_LINE.match(line), \
            f"no timestamp: {line!r}\n{d.log()}"


def test_journal_stream_gives_priority_prefixes(tmp_path, monkeypatch):
    d = start_with_journal_stream(tmp_path, monkeypatch)
    assert_journal_lines(d, served_and_stopped(d))


def test_journal_stream_of_another_file_keeps_timestamps(tmp_path,
                                                         monkeypatch):
    d = start_with_journal_stream(tmp_path, monkeypatch, matching=False)
    assert_plain_lines(d, served_and_stopped(d))


def test_without_journal_stream_lines_have_timestamps(tmp_path,
                                                      monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    d = Daemon(tmp_path).start()
    assert_plain_lines(d, served_and_stopped(d))


def test_log_format_journal_forces_prefixes(tmp_path, monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    d = Daemon(tmp_path, server={"log_format": "journal"}).start()
    assert_journal_lines(d, served_and_stopped(d))


def test_log_format_plain_overrides_the_journal(tmp_path, monkeypatch):
    d = start_with_journal_stream(tmp_path, monkeypatch,
                                  server={"log_format": "plain"})
    assert_plain_lines(d, served_and_stopped(d))


def test_bad_log_format_fails_the_config_test(tmp_path, public_dir):
    conf, r = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        log_format = syslog
        [route /echo]
        handler = echo
        """, public_dir / "plugins")
    assert_error_at(conf, r, 4, "log_format: 'syslog' is not one of auto, "
                    "plain, journal")


def test_log_level_warn_hides_info_lines(tmp_path, monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    routes = {"/echo": {"handler": "echo"},
              "/gone": {"handler": "snowd_no_such_handler"}}
    d = Daemon(tmp_path, server={"log_level": "warn"}, routes=routes)
    # No "ready" lines to wait for at this level: wait for the port.
    d.start(wait=False)

    def accepting():
        assert d.proc.poll() is None, d.log()
        try:
            with socket.create_connection(("127.0.0.1", d.port), 0.5):
                return True
        except OSError:
            return False
    try:
        assert wait_until(accepting, 10.0), d.log()
        echo_once(d)
    finally:
        d.stop()
    lines = d.log().splitlines()
    assert_plain_lines(d, lines)
    assert not [x for x in lines if " info: " in x or " debug: " in x], \
        d.log()
    # Errors still show: the route whose handler no plugin has.
    assert any(" error: " in x and "snowd_no_such_handler" in x
               for x in lines), d.log()
