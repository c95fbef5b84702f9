"""Static files: a route's `static` folder, served to plain GET and HEAD
requests next to the WebSocket routes."""
import os
import socket
import subprocess
import textwrap
import time
from email.utils import formatdate, parsedate_to_datetime

import pytest

from conftest import RawClient, make_plugin_dir, snowd_binary

SECRET = b"TOP SECRET: outside the folder"

FILES = {
    "index.html": b"<!doctype html><title>snowd</title><h1>demo</h1>\n",
    "app.js": b"console.log('hi');\n",
    "mod.mjs": b"export const x = 1;\n",
    "style.css": b"body { color: #333 }\n",
    "page.htm": b"<p>old style</p>\n",
    "data.json": b'{"a": 1}\n',
    "logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>\n",
    "img.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    "photo.jpg": b"\xff\xd8\xff\xe0jpg",
    "photo.jpeg": b"\xff\xd8\xff\xe0jpeg",
    "anim.gif": b"GIF89a",
    "favicon.ico": b"\x00\x00\x01\x00",
    "pic.webp": b"RIFF\x00\x00\x00\x00WEBP",
    "mod.wasm": b"\x00asm\x01\x00\x00\x00",
    "notes.txt": b"plain text\n",
    "font.woff2": b"wOF2",
    "blob.bin": bytes(range(200)),
    "README": b"no extension\n",
    "hello world.txt": b"a name with a blank\n",
    "UPPER.HTML": b"<p>upper</p>\n",
    "sub/index.html": b"<p>sub index</p>\n",
    "sub/page.html": b"<p>sub page</p>\n",
    "empty/.keep": b"",
}

TYPES = {
    "index.html": "text/html; charset=utf-8",
    "page.htm": "text/html; charset=utf-8",
    "UPPER.HTML": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "mod.mjs": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "data.json": "application/json",
    "logo.svg": "image/svg+xml",
    "img.png": "image/png",
    "photo.jpg": "image/jpeg",
    "photo.jpeg": "image/jpeg",
    "anim.gif": "image/gif",
    "favicon.ico": "image/x-icon",
    "pic.webp": "image/webp",
    "mod.wasm": "application/wasm",
    "notes.txt": "text/plain; charset=utf-8",
    "font.woff2": "font/woff2",
    "blob.bin": "application/octet-stream",
    "README": "application/octet-stream",
}


def make_tree(root):
    """www/ (served at /), demo/ (served at /demo, beside a handler), and
    outside/ with a secret that no request may reach."""
    www = root / "www"
    for name, data in FILES.items():
        p = www / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (root / "secret.txt").write_bytes(SECRET)
    # Symlinks: one within the folder (served), two leading out (refused).
    (www / "inside.txt").symlink_to("notes.txt")
    (www / "escape.txt").symlink_to(outside / "secret.txt")
    (www / "escape_rel.txt").symlink_to("../secret.txt")
    (www / "escape_dir").symlink_to(outside)
    os.mkfifo(www / "pipe")
    demo = root / "demo"
    demo.mkdir()
    (demo / "index.html").write_bytes(b"<p>demo index</p>\n")
    (demo / "x.js").write_bytes(b"let demo = 1;\n")
    return www, demo


@pytest.fixture
def site(snowd_factory, tmp_path):
    www, demo = make_tree(tmp_path / "tree")
    d = snowd_factory(routes={
        "/echo": {"handler": "echo"},
        "/": {"static": str(www)},
        "/demo": {"handler": "echo", "static": str(demo)},
    })
    d.www = www
    return d


class Reply:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return f"Reply({self.status}, {self.headers!r}, {self.body[:80]!r})"


def fetch(port, method, target, headers=(), version="HTTP/1.1",
          host=True, timeout=5.0):
    """Sends one request and reads until the server closes the
    connection, which it must do after every static answer."""
    lines = [f"{method} {target} {version}"]
    if host:
        lines.append("Host: 127.0.0.1")
    lines += [f"{k}: {v}" for k, v in headers]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while True:
            assert time.monotonic() < deadline, \
                f"no end of stream after {got[:200]!r}"
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    head, sep, body = got.partition(b"\r\n\r\n")
    assert sep, f"no complete head in {got[:300]!r}"
    first, *fields = head.decode("latin-1").split("\r\n")
    version_, status, _ = first.split(" ", 2)
    assert version_ == "HTTP/1.1", first
    hdrs = {}
    for f in fields:
        k, v = f.split(":", 1)
        assert k.lower() not in hdrs, f"repeated field {k} in {head!r}"
        hdrs[k.lower()] = v.strip()
    return Reply(int(status), hdrs, body)


def get(d, target, **kw):
    return fetch(d.port, "GET", target, **kw)


def assert_file(reply, data, ctype):
    assert reply.status == 200, reply
    assert reply.body == data
    assert reply.header("content-length") == str(len(data))
    assert reply.header("content-type") == ctype
    assert reply.header("x-content-type-options") == "nosniff"
    assert reply.header("cache-control") == "no-cache"
    assert reply.header("connection") == "close"
    assert parsedate_to_datetime(reply.header("last-modified"))


def assert_not_found(reply):
    assert reply.status == 404, reply
    assert reply.body == b"Not Found\n"
    assert SECRET not in reply.body
    assert reply.header("connection") == "close"


# ---- files, types, folders ----------------------------------------------------

def test_root_serves_index_html(site):
    assert_file(get(site, "/"), FILES["index.html"],
                "text/html; charset=utf-8")


@pytest.mark.parametrize("name", sorted(TYPES))
def test_content_type_by_extension(site, name):
    assert_file(get(site, "/" + name), FILES[name], TYPES[name])


def test_last_modified_is_the_files_time(site):
    t = 1_700_000_000
    os.utime(site.www / "notes.txt", (t, t))
    r = get(site, "/notes.txt")
    assert r.header("last-modified") == formatdate(t, usegmt=True)


def test_query_string_is_ignored(site):
    assert_file(get(site, "/app.js?v=3&x=../../secret.txt"), FILES["app.js"],
                TYPES["app.js"])


def test_percent_encoded_name(site):
    assert_file(get(site, "/hello%20world.txt"), FILES["hello world.txt"],
                "text/plain; charset=utf-8")


def test_empty_and_dot_segments_are_normalized(site):
    assert_file(get(site, "//sub/./page.html"), FILES["sub/page.html"],
                "text/html; charset=utf-8")


def test_folder_with_slash_serves_its_index(site):
    assert_file(get(site, "/sub/"), FILES["sub/index.html"],
                "text/html; charset=utf-8")


def test_folder_without_slash_is_redirected(site):
    r = get(site, "/sub")
    assert r.status == 301, r
    assert r.header("location") == "/sub/"
    assert r.header("content-length") == "0" and r.body == b""
    r = get(site, "/sub?tab=2")
    assert r.status == 301 and r.header("location") == "/sub/?tab=2", r


def test_folder_without_index_is_404(site):
    assert_not_found(get(site, "/empty/"))


def test_missing_file_is_404(site):
    assert_not_found(get(site, "/nope.html"))
    assert_not_found(get(site, "/sub/nope/"))


def test_file_with_trailing_slash_is_404(site):
    assert_not_found(get(site, "/notes.txt/"))


def test_fifo_is_404_and_never_opened(site):
    assert_not_found(get(site, "/pipe"))
    # The worker did not block on the FIFO: it still answers.
    assert get(site, "/notes.txt").status == 200


def test_symlink_inside_the_folder_is_served(site):
    assert_file(get(site, "/inside.txt"), FILES["notes.txt"],
                "text/plain; charset=utf-8")


def test_larger_file_is_sent_whole(site):
    data = os.urandom(3 << 20)
    (site.www / "big.bin").write_bytes(data)
    r = get(site, "/big.bin", timeout=20)
    assert r.status == 200 and r.body == data


def test_file_over_the_cap_is_500_and_logged(site):
    with open(site.www / "huge.bin", "wb") as f:
        f.truncate((16 << 20) + 1)   # sparse: costs no disk
    r = get(site, "/huge.bin")
    assert r.status == 500, r
    assert site.wait_log("over the 16777216 served; answering 500")


# ---- where paths may not go ----------------------------------------------------

TRAVERSALS = [
    "/../secret.txt", "/../outside/secret.txt", "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt", "/.%2e/secret.txt", "/..%2fsecret.txt",
    "/..%2Foutside%2Fsecret.txt", "/%252e%252e/secret.txt",
    "/%252e%252e%252fsecret.txt", "/..\\secret.txt", "/%5c..%5csecret.txt",
    "/sub/../../secret.txt", "//../secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt",
    "/index.html%00.txt", "/%00", "/escape.txt", "/escape_rel.txt",
    "/escape_dir/secret.txt", "/escape_dir/", "/demo/../secret.txt",
    "/demo/%2e%2e/secret.txt", "/demo/..%2f..%2fsecret.txt",
    "/" + "a" * 2000, "/" + "%41" * 1100, "/%zz", "/a%2",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_attempts_are_404(site, target):
    assert_not_found(get(site, target))


def test_symlink_leading_outside_is_logged(site):
    assert_not_found(get(site, "/escape.txt"))
    assert site.wait_log("escape.txt leads outside")


# ---- methods, conditional requests --------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "get"])
def test_other_methods_are_405(site, method):
    for target in ("/notes.txt", "/nope.txt", "/demo/x.js"):
        r = fetch(site.port, method, target, headers=[("Content-Length", "0")])
        assert r.status == 405, r
        assert r.header("allow") == "GET, HEAD"


def test_head_has_headers_and_no_body(site):
    g = get(site, "/style.css")
    h = fetch(site.port, "HEAD", "/style.css")
    assert h.status == 200 and h.body == b""
    assert h.header("content-length") == str(len(FILES["style.css"]))
    for k in ("content-type", "last-modified", "cache-control",
              "x-content-type-options", "connection"):
        assert h.header(k) == g.header(k), k


def test_head_of_missing_file_has_no_body(site):
    r = fetch(site.port, "HEAD", "/nope")
    assert r.status == 404 and r.body == b""
    assert r.header("content-length") == str(len(b"Not Found\n"))


def test_if_modified_since_gives_304(site):
    lm = get(site, "/app.js").header("last-modified")
    r = get(site, "/app.js", headers=[("If-Modified-Since", lm)])
    assert r.status == 304, r
    assert r.body == b"" and r.header("content-length") is None
    assert r.header("last-modified") == lm


def test_if_modified_since_later_date_gives_304(site):
    later = formatdate(time.time() + 3600, usegmt=True)
    assert get(site, "/app.js",
               headers=[("If-Modified-Since", later)]).status == 304


def test_if_modified_since_older_date_gives_the_file(site):
    t = 1_700_000_000
    os.utime(site.www / "app.js", (t, t))
    older = formatdate(t - 1, usegmt=True)
    assert_file(get(site, "/app.js", headers=[("If-Modified-Since", older)]),
                FILES["app.js"], TYPES["app.js"])


@pytest.mark.parametrize("value", ["yesterday", "Sunday, 06-Nov-94 08:49:37 GMT",
                                   "Mon, 06 Nov 1994 08:49:37 GMT"])
def test_bad_if_modified_since_is_ignored(site, value):
    assert get(site, "/app.js",
               headers=[("If-Modified-Since", value)]).status == 200


def test_if_none_match_takes_precedence(site):
    lm = get(site, "/app.js").header("last-modified")
    r = get(site, "/app.js", headers=[("If-Modified-Since", lm),
                                      ("If-None-Match", '"x"')])
    assert r.status == 200


def test_http_1_1_without_host_is_400(site):
    assert get(site, "/notes.txt", host=False).status == 400


def test_http_1_0_is_served(site):
    r = fetch(site.port, "GET", "/notes.txt", version="HTTP/1.0", host=False)
    assert_file(r, FILES["notes.txt"], TYPES["notes.txt"])


# ---- routes: prefixes, and WebSocket beside files -------------------------------

def test_prefix_route_serves_its_own_folder(site):
    assert_file(get(site, "/demo/x.js"), b"let demo = 1;\n",
                "text/javascript; charset=utf-8")
    assert_file(get(site, "/demo/"), b"<p>demo index</p>\n",
                "text/html; charset=utf-8")
    r = get(site, "/demo")
    assert r.status == 301 and r.header("location") == "/demo/", r


def test_prefix_matches_at_a_slash_only(site):
    # "/demox" is not under "/demo": the root folder answers, and has no
    # such file.
    assert_not_found(get(site, "/demox"))
    assert_not_found(get(site, "/demo.js"))


def test_route_with_handler_and_static_still_upgrades(site):
    with RawClient(site.port) as c:
        c.handshake("/demo")
        c.send_text("hello")
        assert c.recv_text() == "hello"


def test_websocket_route_keeps_426_for_plain_get(site):
    r = get(site, "/echo")
    assert r.status == 426, r
    assert r.header("sec-websocket-version") == "13"


def test_websocket_route_still_upgrades(site):
    with RawClient(site.port) as c:
        c.handshake("/echo")
        c.send_text("x")
        assert c.recv_text() == "x"


def test_upgrade_on_a_static_only_route_is_404(site):
    with RawClient(site.port) as c:
        c.handshake("/", expect=404)
    with RawClient(site.port) as c:
        c.handshake("/index.html", expect=404)


def test_requests_are_logged_at_debug(site):
    get(site, "/notes.txt?from=log")
    assert site.wait_log("static /: GET /notes.txt?from=log: 200")


def test_static_only_daemon_needs_no_handler(snowd_factory, tmp_path):
    www, _ = make_tree(tmp_path / "tree")
    d = snowd_factory(routes={"/files/": {"static": str(www)}})
    assert_file(get(d, "/files/app.js"), FILES["app.js"], TYPES["app.js"])
    assert get(d, "/files").header("location") == "/files/"
    assert_not_found(get(d, "/app.js"))


# ---- configuration -------------------------------------------------------------

def check(tmp_path, text):
    pdir = make_plugin_dir(tmp_path / "plugins")
    conf = tmp_path / "conf" / "test.ini"
    conf.parent.mkdir(exist_ok=True)
    conf.write_text(textwrap.dedent(text).lstrip("\n")
                    .replace("@PLUGINS@", str(pdir)))
    r = subprocess.run([str(snowd_binary()), "-t", "-c", str(conf)],
                       capture_output=True, text=True, timeout=15)
    return conf, r


def test_config_missing_folder_is_an_error_at_its_line(tmp_path):
    conf, r = check(tmp_path, f"""
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@

        [route /]
        static = {tmp_path}/absent
        """)
    assert r.returncode == 1, r
    assert (f"{conf}:6: static: '{tmp_path}/absent': No such file or "
            "directory") in r.stderr, r.stderr
    assert "neither" not in r.stderr, r.stderr   # reported once
    assert f"configuration file {conf} test failed" in r.stderr


def test_config_file_instead_of_folder_is_an_error(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    conf, r = check(tmp_path, f"""
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        [route /]
        handler = echo
        static = {tmp_path}/f.txt
        """)
    assert r.returncode == 1, r
    assert f"{conf}:6: static: '{tmp_path}/f.txt' is not a folder" \
        in r.stderr, r.stderr


def test_config_route_with_neither_key_is_an_error(tmp_path):
    conf, r = check(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@

        [route /nothing]
        origins = https://example.com
        """)
    assert r.returncode == 1, r
    assert (f"{conf}:5: [route /nothing] has neither 'handler' nor "
            "'static'") in r.stderr, r.stderr


def test_config_static_set_twice_is_an_error(tmp_path):
    conf, r = check(tmp_path, f"""
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        [route /]
        static = {tmp_path}
        static = {tmp_path}
        """)
    assert r.returncode == 1, r
    assert f"{conf}:6: 'static' is set twice in [route /]" in r.stderr, \
        r.stderr


def test_config_relative_folder_is_taken_from_the_config_folder(tmp_path):
    (tmp_path / "conf" / "www").mkdir(parents=True)
    conf, r = check(tmp_path, """
        [server]
        listen = 127.0.0.1:1
        plugin_dir = @PLUGINS@
        [route /]
        static = www
        """)
    assert r.returncode == 0, r.stderr
    assert f"configuration file {conf} test is successful" in r.stderr
