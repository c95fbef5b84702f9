"""The command line, configuration errors and plugin loading."""
import re
import shutil
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import (Daemon, RawClient, free_port, include_dir,
                      make_plugin_dir, render_config, snowd_binary)


def run(*args, timeout=15):
    return subprocess.run([str(snowd_binary()), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def check_config(tmp_path, text, plugin_dir=None):
    """Writes a config (plugin_dir is substituted for @PLUGINS@) and runs
    `snowd -t` on it."""
    pdir = plugin_dir or make_plugin_dir(tmp_path / "plugins")
    conf = tmp_path / "test.ini"
    conf.write_text(textwrap.dedent(text).lstrip("\n")
                    .replace("@PLUGINS@", str(pdir)))
    return conf, run("-t", "-c", conf)


def assert_failed(conf, r):
    assert r.returncode == 1, r
    assert f"snowd: configuration file {conf} test failed" in r.stderr, \
        r.stderr


def assert_error_at(conf, r, line, words):
    assert_failed(conf, r)
    m = re.search(rf"^{re.escape(str(conf))}:(\d+): (.*)$", r.stderr, re.M)
    assert m, f"no '{conf}:LINE:' error in:\n{r.stderr}"
    assert int(m.group(1)) == line, r.stderr
    assert words in m.group(2), r.stderr


# ---- command line ----------------------------------------------------------------------

def test_version():
    r = run("-V")
    assert r.returncode == 0
    assert re.fullmatch(r"snowd \d+\.\d+\.\d+\S*\n", r.stdout), r.stdout


def test_help():
    r = run("-h")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: snowd")
    assert "-c FILE" in r.stdout and "-t" in r.stdout


@pytest.mark.parametrize("args", [["-x"], ["-c"], ["extra"],
                                  ["-t", "-c", "a", "b"]])
def test_bad_usage_exits_2(args):
    r = run(*args)
    assert r.returncode == 2, r
    assert "usage: snowd" in r.stderr


def test_config_test_success(tmp_path):
    conf = tmp_path / "ok.ini"
    conf.write_text(render_config(free_port(), make_plugin_dir(
        tmp_path / "plugins")))
    r = run("-t", "-c", conf)
    assert r.returncode == 0, r.stderr
    assert f"snowd: configuration file {conf} test is successful" in r.stderr


def test_shipped_example_config_is_valid(tmp_path):
    """conf/snowd.ini, pointed at our plugins, passes -t."""
    src = Path(__file__).resolve().parents[2] / "conf" / "snowd.ini"
    text = re.sub(r"(?m)^plugin_dir *=.*$",
                  f"plugin_dir = {make_plugin_dir(tmp_path / 'plugins')}",
                  src.read_text())
    # The demo page's folder, relative to conf/ in the source tree.
    text = re.sub(r"(?m)^static *= *\.\./(.*)$",
                  lambda m: f"static = {src.parent.parent / m.group(1)}",
                  text)
    conf = tmp_path / "snowd.ini"
    conf.write_text(text)
    r = run("-t", "-c", conf)
    assert r.returncode == 0, r.stderr


def test_relative_plugin_dir_is_taken_from_the_config_folder(tmp_path):
    make_plugin_dir(tmp_path / "conf" / "plugs")
    conf = tmp_path / "conf" / "rel.ini"
    conf.write_text(render_config(free_port(), "plugs"))
    r = subprocess.run([str(snowd_binary()), "-t", "-c", str(conf)],
                       capture_output=True, text=True, cwd="/", timeout=15)
    assert r.returncode == 0, r.stderr


def test_missing_config_file(tmp_path):
    conf = tmp_path / "absent.ini"
    r = run("-t", "-c", conf)
    assert_failed(conf, r)
    assert f"{conf}: cannot open: No such file or directory" in r.stderr


def test_missing_config_file_without_t(tmp_path):
    conf = tmp_path / "absent.ini"
    r = run("-c", conf)
    assert r.returncode == 1
    assert f"{conf}: cannot open" in r.stderr


# ---- configuration errors, each at its line ------------------------------------------

def test_unknown_section(tmp_path):
    conf, r = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@

        [bogus]
        key = value
        [route /echo]
        handler = echo
        """)
    assert_error_at(conf, r, 5, "unknown section [bogus]")


def test_route_without_space_is_unknown_section(tmp_path):
    conf, r = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        [route/echo]
        handler = echo
        """)
    assert_error_at(conf, r, 4, "unknown section")


@pytest.mark.parametrize("section,line", [("server", 4), ("limits", 6)])
def test_unknown_key(tmp_path, section, line):
    conf, r = check_config(tmp_path, f"""
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        {"colour = blue" if section == "server" else "; comment"}
        [limits]
        {"colour = blue" if section == "limits" else "; comment"}
        [route /echo]
        handler = echo
        """)
    assert_error_at(conf, r, line, f"unknown key 'colour' in [{section}]")


def test_unknown_key_in_route(tmp_path):
    conf, r = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        [route /echo]
        handler = echo
        colour = blue
        """)
    assert_error_at(conf, r, 6, "unknown key 'colour' in [route /echo]")


def test_key_outside_any_section(tmp_path):
    conf, r = check_config(tmp_path, """
        ; a comment
        listen = 127.0.0.1:1
        [server]
        """)
    assert_error_at(conf, r, 2, "outside any section")


@pytest.mark.parametrize("key,value", [
    ("max_message", "12Q"), ("max_message", "-1"), ("max_message", "abc"),
    ("max_message", "0"), ("max_header", "255"), ("max_backpressure", "1M5"),
    ("max_message", "99999999999999999999"), ("max_message", "")])
def test_bad_size(tmp_path, key, value):
    conf, r = check_config(tmp_path, f"""
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        [limits]
        {key} = {value}
        [route /echo]
        handler = echo
        """)
    assert_error_at(conf, r, 5, f"{key}: '{value}' is not a size")


@pytest.mark.parametrize("key,value", [
    ("idle_timeout", "10x"), ("ping_interval", "1.5s"),
    ("handshake_timeout", "s"), ("close_timeout", "-1"),
    ("idle_timeout", "5 s")])
def test_bad_duration(tmp_path, key, value):
    conf, r = check_config(tmp_path, f"""
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        [limits]
        ; before
        {key} = {value}
        [route /echo]
        handler = echo
        """)
    assert_error_at(conf, r, 6, f"{key}: '{value}' is not a duration")


@pytest.mark.parametrize("value,ok", [
    ("500ms", True), ("10s", True), ("2m", True), ("1h", True), ("0", True),
    ("30", True)])
def test_good_durations(tmp_path, value, ok):
    conf, r = check_config(tmp_path, f"""
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        [limits]
        idle_timeout = {value}
        max_message = 16M
        max_header = 8K
        [route /echo]
        handler = echo
        """)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("value", [
    "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "localhost:80",
    "300.0.0.1:80", "[::1:80", "::1:80", "[]:80", "127.0.0.1:8x", ":80"])
def test_bad_listen(tmp_path, value):
    conf, r = check_config(tmp_path, f"""
        [server]
        plugin_dir = @PLUGINS@
        listen = {value}
        [route /echo]
        handler = echo
        """)
    assert_error_at(conf, r, 3, f"listen: '{value}' is not ADDRESS:PORT")


@pytest.mark.parametrize("first,second", [
    ("127.0.0.1:7001", "127.0.0.1:7001"),
    ("[::1]:7001", "[0:0::1]:7001"),
    ("127.0.0.1:7001", "127.0.0.1:7001 tls")])
def test_listen_twice_on_one_address(tmp_path, first, second):
    """An address listed twice would be bound twice: refused at the
    second line, naming the first."""
    conf, r = check_config(tmp_path, f"""
        [server]
        plugin_dir = @PLUGINS@
        listen = {first}
        listen = 127.0.0.1:7002
        listen = {second}
        [route /echo]
        handler = echo
        """)
    assert_error_at(conf, r, 5, f"listen: {second} is already listed at "
                    "line 3")


def test_listen_same_port_other_addresses(tmp_path):
    conf, r = check_config(tmp_path, """
        [server]
        plugin_dir = @PLUGINS@
        listen = 127.0.0.1:7001
        listen = 127.0.0.2:7001
        listen = [::1]:7001
        [route /echo]
        handler = echo
        """)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("section,key,value", [
    ("server", "plugin_dir", "@PLUGINS@"), ("server", "log_level", "info"),
    ("server", "backlog", "10"), ("limits", "max_message", "1M"),
    ("limits", "idle_timeout", "1s"), ("route /echo", "handler", "echo")])
def test_duplicate_key(tmp_path, section, key, value):
    conf, r = check_config(tmp_path, f"""
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        log_level = info
        backlog = 10
        [limits]
        max_message = 1M
        idle_timeout = 1s
        [route /echo]
        handler = echo
        [{section}]
        {key} = {value}
        """)
    if section.startswith("route"):
        # a second [route /echo] section is itself the error
        assert_error_at(conf, r, 11, "already has a route")
        return
    # the repeated section starts a new set of keys: repeat within it
    conf.write_text(conf.read_text() + f"{key} = {value}\n")
    r = run("-t", "-c", conf)
    assert_error_at(conf, r, 13, f"'{key}' is set twice in [{section}]")


def test_duplicate_key_same_section(tmp_path):
    conf, r = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        [route /echo]
        handler = echo
        handler = echo
        """)
    assert_error_at(conf, r, 6, "'handler' is set twice in [route /echo]")


def test_listen_may_repeat(tmp_path):
    conf, r = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        listen = 127.0.0.1:2
        plugin_dir = @PLUGINS@
        [route /echo]
        handler = echo
        """)
    assert r.returncode == 0, r.stderr


def test_bad_log_level(tmp_path):
    conf, r = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        log_level = loud
        [route /echo]
        handler = echo
        """)
    assert_error_at(conf, r, 4, "log_level: 'loud'")


def test_route_without_handler(tmp_path):
    conf, r = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@

        [route /echo]
        handler = echo

        [route /empty]
        subprotocols = a
        """)
    assert_error_at(conf, r, 8,
                    "[route /empty] has neither 'handler' nor 'static'")


@pytest.mark.parametrize("header", ["route ", "route  ", "route echo",
                                    "route /a b", "route /a?x", "route /a#f"])
def test_bad_route_path(tmp_path, header):
    conf, r = check_config(tmp_path, f"""
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        [route /echo]
        handler = echo
        [{header}]
        handler = echo
        """)
    assert_error_at(conf, r, 6, "a route path starts with '/'")


def test_no_listen(tmp_path):
    conf, r = check_config(tmp_path, """
        [server]
        plugin_dir = @PLUGINS@
        [route /echo]
        handler = echo
        """)
    assert_error_at(conf, r, 4, "[server] needs at least one 'listen'")


def test_no_route(tmp_path):
    conf, r = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        """)
    assert_error_at(conf, r, 3, "no [route /PATH] section")


def test_no_plugin_dir(tmp_path):
    conf, r = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        [route /echo]
        handler = echo
        """)
    assert_error_at(conf, r, 4, "needs 'plugin_dir'")


def test_syntax_error(tmp_path):
    conf, r = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        this line has no equals sign
        plugin_dir = @PLUGINS@
        [route /echo]
        handler = echo
        """)
    assert_error_at(conf, r, 3, "syntax error")


def test_bad_config_stops_the_daemon_too(tmp_path):
    conf, _ = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        bogus = 1
        """)
    r = run("-c", conf)
    assert r.returncode == 1
    assert f"{conf}:4: unknown key 'bogus'" in r.stderr


# ---- plugins -------------------------------------------------------------------------------

def compile_so(tmp_path, name, source):
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed to build the test plugins"
    src = tmp_path / f"{name}.c"
    src.write_text(textwrap.dedent(source))
    out = tmp_path / f"{name}.so"
    subprocess.run([cc, "-shared", "-fPIC", f"-I{include_dir()}", "-o",
                    str(out), str(src)], check=True, capture_output=True)
    return out


@pytest.fixture
def bad_plugins(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    garbage = build / "garbage.so"
    garbage.write_bytes(b"\x7fELF this is not a shared object\n" * 10)
    nodesc = compile_so(build, "nodesc", """
        int snow_something_else(void) { return 42; }
        """)
    wrongabi = compile_so(build, "wrongabi", """
        #include <snowd/snowd.h>
        __attribute__((visibility("default")))
        const struct snow_plugin snow_plugin_v1 = {
            .abi_version = 999, .size = sizeof(struct snow_plugin),
            .name = "wrongabi", .version = "0",
        };
        """)
    return [garbage, nodesc, wrongabi]


def test_bad_plugins_fail_config_test(tmp_path, bad_plugins):
    pdir = make_plugin_dir(tmp_path / "plugins", extra=bad_plugins)
    conf = tmp_path / "p.ini"
    conf.write_text(render_config(free_port(), pdir))
    r = run("-t", "-c", conf)
    assert_failed(conf, r)
    for name in ("garbage.so", "nodesc.so", "wrongabi.so"):
        lines = [l for l in r.stderr.splitlines() if name in l]
        assert lines, f"{name} not named in:\n{r.stderr}"
    assert any("snow_plugin_v1" in l for l in r.stderr.splitlines()
               if "nodesc.so" in l), r.stderr
    assert any("999" in l for l in r.stderr.splitlines()
               if "wrongabi.so" in l), r.stderr
    # the good plugins are still loaded
    assert "loaded 'echo'" in r.stderr and "loaded 'testkit'" in r.stderr


def test_daemon_starts_despite_bad_plugins(tmp_path, snowd_factory,
                                           bad_plugins):
    pdir = make_plugin_dir(tmp_path / "plugins", extra=bad_plugins)
    d = snowd_factory(plugin_dir=pdir)
    for name in ("garbage.so", "nodesc.so", "wrongabi.so"):
        assert name in d.log()
    with d.client("/echo") as c:
        c.send_text("served anyway")
        assert c.recv_text() == "served anyway"


def test_duplicate_handler_is_refused(tmp_path, snowd_factory):
    build = tmp_path / "build"
    build.mkdir()
    dup = compile_so(build, "zz_dup", """
        #include <snowd/snowd.h>
        static const struct snow_handler handlers[] = { { .name = "echo" } };
        SNOW_PLUGIN(.name = "dup", .version = "1", .handlers = handlers,
                    .nhandlers = 1);
        """)
    pdir = make_plugin_dir(tmp_path / "plugins", extra=[dup])
    conf = tmp_path / "p.ini"
    conf.write_text(render_config(free_port(), pdir))
    r = run("-t", "-c", conf)
    assert_failed(conf, r)
    assert "zz_dup.so" in r.stderr and "already defined" in r.stderr


def test_missing_handler_fails_config_test(tmp_path):
    conf, r = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        [route /echo]
        handler = echo
        [route /ghost]
        handler = nosuchhandler
        """)
    assert_failed(conf, r)
    assert f"{conf}:6: [route /ghost]: no loaded plugin has a handler " \
           "named 'nosuchhandler'" in r.stderr


def test_route_with_missing_handler_answers_503(snowd_factory):
    d = snowd_factory(routes={"/echo": {"handler": "echo"},
                              "/ghost": {"handler": "nosuchhandler"}})
    assert "nosuchhandler" in d.log()
    c = RawClient(d.port)
    resp = c.handshake("/ghost", expect=503)
    assert (resp.header("connection") or "").lower() == "close"
    assert c.wait_eof()
    c.close()
    with d.client("/echo") as c:
        c.send_text("other routes work")
        assert c.recv_text() == "other routes work"


def test_missing_plugin_dir(tmp_path):
    conf = tmp_path / "p.ini"
    conf.write_text(render_config(free_port(), tmp_path / "nowhere"))
    r = run("-t", "-c", conf)
    assert_failed(conf, r)
    assert "nowhere" in r.stderr


# ---- listening ------------------------------------------------------------------------------

def test_port_in_use_exits_with_clear_message(tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        d = Daemon(tmp_path / "d", port=port)
        d.start(wait=False)
        rc = d.wait_exit(timeout=10)
        assert rc == 1, d.log()
        assert re.search(rf"{re.escape(str(d.config))}:2: listen "
                         rf"127\.0\.0\.1:{port}: Address already in use",
                         d.log()), d.log()
        d.check()
    finally:
        blocker.close()


def test_second_listener_in_use_fails_whole_start(tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    busy = blocker.getsockname()[1]
    free = free_port()
    try:
        d = Daemon(tmp_path / "d", listens=[f"127.0.0.1:{free}",
                                            f"127.0.0.1:{busy}"])
        d.start(wait=False)
        assert d.wait_exit(timeout=10) == 1
        assert f"listen 127.0.0.1:{busy}: Address already in use" in d.log()
        d.check()
    finally:
        blocker.close()


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_several_listeners_including_ipv6(tmp_path, snowd_factory):
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    port4, port6 = free_port(), free_port()
    d = snowd_factory(port=port4, listens=[f"127.0.0.1:{port4}",
                                           f"[::1]:{port6}"])
    with d.client("/echo") as c:
        c.send_text("v4")
        assert c.recv_text() == "v4"
    c = RawClient(port6, host="::1", family=socket.AF_INET6)
    try:
        c.handshake("/echo")
        c.send_text("v6")
        assert c.recv_text() == "v6"
    finally:
        c.close()


def test_over_long_line_is_refused_and_later_lines_keep_their_numbers(tmp_path):
    long_origins = " ".join(f"https://host{i}.example.com" for i in range(12))
    conf, r = check_config(tmp_path, f"""
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        [route /echo]
        handler = echo
        origins = {long_origins}
        bogus = 1
        """)
    assert_error_at(conf, r, 6, "line longer than 198 characters")
    assert f"{conf}:7: unknown key 'bogus'" in r.stderr, r.stderr


def test_every_error_is_reported_in_one_run(tmp_path):
    # A bad value does not hide a missing handler further down.
    conf, r = check_config(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        log_level = loud
        [route /echo]
        subprotocols = a
        """)
    assert_error_at(conf, r, 4, "log_level")
    assert (f"{conf}:5: [route /echo] has neither 'handler' nor "
            "'static'") in r.stderr, r.stderr


@pytest.mark.parametrize("value,ok", [("64K", True), ("65537", False),
                                      ("1M", False)])
def test_max_header_upper_bound(tmp_path, value, ok):
    conf, r = check_config(tmp_path, f"""
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        [limits]
        max_header = {value}
        [route /echo]
        handler = echo
        """)
    if ok:
        assert r.returncode == 0, r.stderr
    else:
        assert_error_at(conf, r, 5, f"max_header: '{value}' is over the largest")
