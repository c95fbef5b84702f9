"""TLS: `listen = ADDRESS tls`, [tls] and [tls NAME] sections.

Certificates are made for the module with the openssl command line (EC
keys, valid for a few days): a self-signed one for 127.0.0.1 and
localhost (the default), one for other.test and *.wild.test (SNI), a
root, an intermediate and a leaf signed by it (chain), and keys that
match none of them.  Clients are Python's ssl with `websockets`, raw
sockets wrapped in ssl, and `openssl s_client`.
"""
import asyncio
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from conftest import (OP_BINARY, OP_CLOSE, OP_TEXT, ConnectionClosed,
                      RawClient, build_frame, close_payload, free_port,
                      make_plugin_dir, require_root, snowd_binary,
                      wait_until)

websockets = pytest.importorskip("websockets")

OPENSSL = shutil.which("openssl")


def openssl(*args, cwd=None, input=None):
    if not OPENSSL:
        pytest.fail("the openssl command is missing (scripts/deps.sh test "
                    "installs it)", pytrace=False)
    r = subprocess.run([OPENSSL, *map(str, args)], cwd=cwd, input=input,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r


EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def self_signed(d, name, cn, san):
    openssl("req", "-x509", *EC, "-keyout", d / f"{name}.key",
            "-out", d / f"{name}.pem", "-days", "3", "-subj", f"/CN={cn}",
            "-addext", f"subjectAltName={san}")


def signed_by(d, name, cn, ca, ext):
    openssl("req", "-new", *EC, "-keyout", d / f"{name}.key",
            "-out", d / f"{name}.csr", "-subj", f"/CN={cn}")
    (d / f"{name}.ext").write_text(ext)
    openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / f"{ca}.pem",
            "-CAkey", d / f"{ca}.key", "-set_serial",
            str(int.from_bytes(os.urandom(8), "big")), "-days", "3",
            "-extfile", d / f"{name}.ext", "-out", d / f"{name}.pem")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    self_signed(d, "local", "localhost", "DNS:localhost,IP:127.0.0.1")
    self_signed(d, "other", "other.test", "DNS:other.test,DNS:*.wild.test")
    self_signed(d, "stray", "stray.test", "DNS:stray.test")   # its key: a
    # key that matches none of the others
    openssl("req", "-x509", *EC, "-keyout", d / "root.key",
            "-out", d / "root.pem", "-days", "3",
            "-subj", "/CN=snowd test root",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    signed_by(d, "inter", "snowd test intermediate", "root",
              "basicConstraints=critical,CA:TRUE,pathlen:0\n"
              "keyUsage=critical,keyCertSign,cRLSign\n")
    signed_by(d, "leaf", "chained.test", "inter",
              "basicConstraints=CA:FALSE\n"
              "subjectAltName=DNS:chained.test,IP:127.0.0.1\n")
    (d / "leaf-full.pem").write_text((d / "leaf.pem").read_text() +
                                     (d / "inter.pem").read_text())
    (d / "local-both.pem").write_text((d / "local.pem").read_text() +
                                      (d / "local.key").read_text())
    (d / "not-pem.pem").write_text("this is not a certificate\n")
    openssl("x509", "-in", d / "local.pem", "-outform", "DER",
            "-out", d / "local.der")
    openssl("pkey", "-in", d / "local.key", "-aes256", "-passout",
            "pass:secret", "-out", d / "local-encrypted.key")
    return d


def tls_section(certs, name="local", extra=""):
    return (f"[tls]\ncertificate = {certs / (name + '.pem')}\n"
            f"key = {certs / (name + '.key')}\n{extra}")


SNI_SECTION = """
[tls other.test *.wild.test]
certificate = {d}/other.pem
key = {d}/other.key
"""


@pytest.fixture
def tls_daemon(snowd_factory, certs):
    """A daemon with one TLS listener (its port is .port) and SNI."""
    def make(server=None, limits=None, extra="", plain=False, **kw):
        port = free_port()
        listens = [f"127.0.0.1:{port} tls"]
        d_plain = None
        if plain:
            d_plain = free_port()
            listens.append(f"127.0.0.1:{d_plain}")
        d = snowd_factory(
            port=port, listens=listens, server=server, limits=limits,
            extra=tls_section(certs) + SNI_SECTION.format(d=certs) + extra,
            **kw)
        d.plain_port = d_plain
        return d
    return make


def client_context(certs, ca="local.pem", alpn=None):
    ctx = ssl.create_default_context(cafile=str(certs / ca))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


class TlsClient(RawClient):
    """RawClient over TLS: the same frame helpers, through Python's ssl."""

    def __init__(self, port, ctx, server_hostname=None, timeout=5.0,
                 rcvbuf=None):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(timeout)
        if rcvbuf is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.connect(("127.0.0.1", port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname or
                                    "127.0.0.1")
        self.port = port
        self.host = "127.0.0.1"
        self.buf = b""
        self.timeout = timeout
        self.response = None
        self.key = None

    def _fill(self, timeout):
        # Bytes ssl already decrypted announce nothing to select().
        if self.sock.pending():
            self.buf += self.sock.recv(self.sock.pending())
            return
        try:
            super()._fill(timeout)
        except ssl.SSLError as e:
            raise ConnectionClosed(f"TLS: {e}")


def wss_url(d, path="/echo"):
    return f"wss://127.0.0.1:{d.port}{path}"


def s_client(port, *args, input=b"", timeout=20):
    """openssl s_client against 127.0.0.1:port; returns stdout (bytes),
    stderr (text) and the exit status."""
    if not OPENSSL:
        pytest.fail("the openssl command is missing", pytrace=False)
    r = subprocess.run([OPENSSL, "s_client", "-connect",
                        f"127.0.0.1:{port}", *args], input=input,
                       capture_output=True, timeout=timeout)
    return r.stdout, r.stderr.decode(errors="replace"), r.returncode


def client_hello():
    """The bytes of a real TLS ClientHello, from Python's ssl."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16
    return hello


def upgrade_request(port, path="/echo"):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


def echo_over_wss(d, certs, text="ping"):
    async def run():
        async with websockets.connect(wss_url(d),
                                      ssl=client_context(certs)) as ws:
            await ws.send(text)
            return await ws.recv()
    assert asyncio.run(run()) == text


# ---- wss end to end ---------------------------------------------------------------

def test_wss_echo_text_and_binary(tls_daemon, certs):
    d = tls_daemon()

    async def run():
        async with websockets.connect(wss_url(d),
                                      ssl=client_context(certs)) as ws:
            await ws.send("hello ☃")
            assert await ws.recv() == "hello ☃"
            blob = os.urandom(5000)
            await ws.send(blob)
            assert await ws.recv() == blob
            for i in range(50):   # pipelined: many frames in few records
                await ws.send(f"m{i}")
            for i in range(50):
                assert await ws.recv() == f"m{i}"
    asyncio.run(run())


def test_wss_large_messages_both_ways(tls_daemon, certs):
    d = tls_daemon()
    text = ("αβγ" * 200000)[:1 << 19] * 2       # about 1 MiB of UTF-8
    blob = os.urandom(1 << 20)

    async def run():
        async with websockets.connect(wss_url(d), ssl=client_context(certs),
                                      max_size=None) as ws:
            await ws.send(blob)
            assert await ws.recv() == blob
            await ws.send(text)
            assert await ws.recv() == text
            # Several at once: the server's output outgrows the socket.
            for _ in range(4):
                await ws.send(blob)
            for _ in range(4):
                assert await ws.recv() == blob
    asyncio.run(run())


def test_many_concurrent_wss_clients(tls_daemon, certs):
    d = tls_daemon()
    ctx = client_context(certs)

    async def one(i):
        async with websockets.connect(wss_url(d), ssl=ctx) as ws:
            for k in range(10):
                msg = f"client {i} message {k}"
                await ws.send(msg)
                assert await ws.recv() == msg
        return i

    async def run():
        done = await asyncio.wait_for(
            asyncio.gather(*(one(i) for i in range(150))), 120)
        assert sorted(done) == list(range(150))
    asyncio.run(run())
    echo_over_wss(d, certs)


def test_raw_frames_over_tls(tls_daemon, certs):
    """The upgrade and frame code runs unchanged on decrypted bytes: the
    request and frames split byte by byte, each in its own record."""
    d = tls_daemon()
    with TlsClient(d.port, client_context(certs)) as c:
        c.send_slowly(c.request_bytes("/echo"), pause=0.001)
        assert c.read_response().status == 101
        c.send_slowly(build_frame(OP_TEXT, b"split"), pause=0.001)
        assert c.recv_text() == "split"
        c.send_close(1000)
        f = c.recv_close()
        assert f.close_code == 1000
        assert c.wait_eof()


def test_request_and_frames_in_one_large_record(tls_daemon, certs):
    """A request head of 6 KB and frames after it in one TLS record: the
    head is read 4 KB at a time, so OpenSSL holds decrypted bytes that no
    readiness event announces.  Nothing may stall on them."""
    d = tls_daemon()
    with TlsClient(d.port, client_context(certs)) as c:
        head = c.request_bytes("/echo", headers=[("X-Pad", "p" * 6000)])
        frames = b"".join(build_frame(OP_TEXT, f"f{i}".encode())
                          for i in range(200))
        c.send(head + frames)          # one write: one record up to 16 KB
        assert c.read_response().status == 101
        for i in range(200):
            assert c.recv_text() == f"f{i}"


def whole_frame(buf):
    """(opcode, payload, rest) for the server frame at the start of buf,
    or None while it is incomplete."""
    if len(buf) < 2:
        return None
    n, at = buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, at = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, at = int.from_bytes(buf[2:10], "big"), 10
    if len(buf) < at + n:
        return None
    return buf[0] & 0x0F, buf[at:at + n], buf[at + n:]


@pytest.mark.parametrize("size,count", [(16 * 1024, 512), (256 * 1024, 32)])
def test_slow_reader_over_tls(tls_daemon, certs, size, count):
    """The client writes 8 MiB of echoes and reads none until half is
    written: the server's output fills the socket (TLS writes wait, and
    are retried from the queue), its input pauses over max_backpressure
    and resumes with bytes OpenSSL decrypted before the pause."""
    d = tls_daemon(limits={"max_backpressure": "256K"})
    blob = os.urandom(size)
    with TlsClient(d.port, client_context(certs), timeout=30,
                   rcvbuf=32 * 1024) as c:
        c.handshake("/echo")
        c.sock.setblocking(False)
        out = b"".join(build_frame(OP_BINARY, blob) for _ in range(count))
        got, sent, buf = 0, 0, c.buf
        deadline = time.monotonic() + 90
        while got < count and time.monotonic() < deadline:
            if sent < len(out):
                try:
                    sent += c.sock.send(out[sent:sent + 65536])
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    time.sleep(0.001)
            if sent < len(out) // 2:
                continue
            try:
                buf += c.sock.recv(1 << 20)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                time.sleep(0.001)
            while (f := whole_frame(buf)) is not None:
                op, payload, buf = f
                assert op == OP_BINARY and payload == blob
                got += 1
        assert got == count, \
            f"{got} echoes of {count} in time:\n{d.log()[-2000:]}"


def test_room_messages_reach_tls_and_plain_members(tls_daemon, certs):
    """A room's frame is built once and shared by every member's queue:
    TLS members get it through their records, plain ones as they are."""
    import json
    d = tls_daemon(server={"workers": "2"}, plain=True,
                   routes={"/chat": {"handler": "chat"}})
    ctx = client_context(certs)

    async def member(ws, nick):
        assert json.loads(await ws.recv())["ev"] == "welcome"
        await ws.send(json.dumps({"op": "nick", "nick": nick}))
        assert json.loads(await ws.recv())["ev"] == "nick"
        await ws.send(json.dumps({"op": "join", "room": "lobby"}))
        while json.loads(await ws.recv())["ev"] != "joined":
            pass

    async def next_msg(ws):
        while True:
            e = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if e["ev"] == "msg":
                return e

    async def run():
        urls = [(wss_url(d, "/chat"), ctx),
                (f"ws://127.0.0.1:{d.plain_port}/chat", None)] * 3
        socks = [await websockets.connect(u, ssl=c) for u, c in urls]
        try:
            for i, ws in enumerate(socks):
                await member(ws, f"m{i}")
            for k in range(20):
                await socks[k % len(socks)].send(json.dumps(
                    {"op": "say", "room": "lobby", "text": f"t{k}"}))
                for ws in socks:
                    e = await next_msg(ws)
                    assert e["text"] == f"t{k}", e
        finally:
            for ws in socks:
                await ws.close()
    asyncio.run(run())


def test_graceful_stop_sends_1001_over_tls(tls_daemon, certs):
    import signal
    d = tls_daemon()
    with TlsClient(d.port, client_context(certs), timeout=15) as c:
        c.handshake("/echo")
        c.send_text("before")
        assert c.recv_text() == "before"
        d.signal(signal.SIGTERM)
        f = c.recv_close(timeout=15)
        assert f.close_code == 1001
        c.send_close(1001)
        assert c.wait_eof(timeout=15)
    assert d.wait_exit() == 0


# ---- openssl s_client ---------------------------------------------------------------

@pytest.mark.parametrize("version,name", [("-tls1_2", "TLSv1.2"),
                                          ("-tls1_3", "TLSv1.3")])
def test_s_client_upgrade_and_echo(tls_daemon, certs, version, name):
    d = tls_daemon()
    data = (upgrade_request(d.port) + build_frame(OP_TEXT, b"over s_client") +
            build_frame(OP_CLOSE, close_payload(1000)))
    out, err, rc = s_client(d.port, version, "-CAfile", certs / "local.pem",
                            "-verify_return_error", "-ign_eof", input=data)
    assert rc == 0, err
    assert f"Protocol  : {name}" in out.decode(errors="replace") or \
        f"New, {name}" in out.decode(errors="replace"), out
    assert b"HTTP/1.1 101 Switching Protocols\r\n" in out, out
    assert b"\x81\x0dover s_client" in out, out
    assert b"\x88\x02\x03\xe8" in out, out
    assert "Verification: OK" in out.decode(errors="replace") or \
        "Verify return code: 0 (ok)" in out.decode(errors="replace"), out


def test_tls_1_1_is_refused_by_the_server(tls_daemon, certs):
    d = tls_daemon()
    # SECLEVEL=0 lets the client offer TLS 1.1, so that the refusal (a
    # protocol_version alert) is the server's.
    out, err, rc = s_client(d.port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert rc != 0
    assert "alert protocol version" in err, err
    assert d.wait_log("TLS handshake failed: error:0A000102:SSL "
                      "routines::unsupported protocol"), d.log()
    echo_over_wss(d, certs)


def test_tls_1_0_is_refused_and_the_daemon_serves_on(tls_daemon, certs):
    d = tls_daemon()
    out, err, rc = s_client(d.port, "-tls1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert rc != 0
    assert "alert protocol version" in err, err
    echo_over_wss(d, certs)


def test_alpn_selects_http_1_1(tls_daemon):
    d = tls_daemon()
    out, err, rc = s_client(d.port, "-alpn", "h2,http/1.1")
    assert rc == 0, err
    assert b"ALPN protocol: http/1.1" in out, out
    out, err, rc = s_client(d.port)
    assert rc == 0, err
    assert b"No ALPN negotiated" in out, out


def test_alpn_without_http_1_1_gets_the_fatal_alert(tls_daemon, certs):
    d = tls_daemon()
    out, err, rc = s_client(d.port, "-alpn", "h2")
    assert rc != 0
    assert "no application protocol" in err, err
    echo_over_wss(d, certs)


def test_python_client_offering_http_1_1_gets_it(tls_daemon, certs):
    d = tls_daemon()
    with TlsClient(d.port, client_context(certs, alpn=["h2", "http/1.1"])) \
            as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        c.handshake("/echo")
        c.send_text("alpn")
        assert c.recv_text() == "alpn"


def subject_cn(out):
    m = re.search(rb"^subject=.*CN ?= ?([^,\n/]+)", out, re.M)
    assert m, out
    return m.group(1).decode().strip()


@pytest.mark.parametrize("servername,cn", [
    ("other.test", "other.test"),
    ("OTHER.Test", "other.test"),
    ("a.wild.test", "other.test"),
    ("wild.test", "localhost"),          # a wildcard needs one more label
    ("a.b.wild.test", "localhost"),      # ... and exactly one
    ("unknown.test", "localhost"),
    (None, "localhost"),
])
def test_sni_picks_the_certificate(tls_daemon, servername, cn):
    d = tls_daemon()
    args = ["-servername", servername] if servername else ["-noservername"]
    out, err, rc = s_client(d.port, *args)
    assert rc == 0, err
    assert subject_cn(out) == cn


def test_sni_certificate_serves_websocket(tls_daemon, certs):
    d = tls_daemon()
    ctx = client_context(certs, ca="other.pem")
    with TlsClient(d.port, ctx, server_hostname="x.wild.test") as c:
        assert c.sock.getpeercert()["subject"] == ((("commonName",
                                                     "other.test"),),)
        c.handshake("/echo")
        c.send_binary(b"\x00sni\xff")
        f = c.recv_message()
        assert f.opcode == OP_BINARY and f.payload == b"\x00sni\xff"


def test_chain_is_sent_to_the_client(snowd_factory, certs):
    """certificate = the leaf, chain = the intermediate: a client that
    trusts only the root verifies the server."""
    port = free_port()
    d = snowd_factory(port=port, listens=[f"127.0.0.1:{port} tls"],
                      extra=f"[tls]\ncertificate = {certs}/leaf.pem\n"
                            f"key = {certs}/leaf.key\n"
                            f"chain = {certs}/inter.pem\n")
    out, err, rc = s_client(port, "-CAfile", certs / "root.pem",
                            "-verify_return_error", "-showcerts")
    assert rc == 0, err
    assert out.count(b"-----BEGIN CERTIFICATE-----") == 2, out
    with TlsClient(port, client_context(certs, ca="root.pem")) as c:
        c.handshake("/echo")
        c.send_text("chained")
        assert c.recv_text() == "chained"


def test_certificate_file_with_its_chain_and_key(snowd_factory, certs):
    """A full-chain file (leaf then intermediate) as `certificate`, and a
    file with both certificate and key with no `key`."""
    port = free_port()
    d = snowd_factory(port=port, listens=[f"127.0.0.1:{port} tls"],
                      extra=f"[tls]\ncertificate = {certs}/leaf-full.pem\n"
                            f"key = {certs}/leaf.key\n")
    with TlsClient(port, client_context(certs, ca="root.pem")) as c:
        c.handshake("/echo")
    d.stop()
    port = free_port()
    snowd_factory(port=port, listens=[f"127.0.0.1:{port} tls"],
                  extra=f"[tls]\ncertificate = {certs}/local-both.pem\n")
    with TlsClient(port, client_context(certs)) as c:
        c.handshake("/echo")


def test_default_ciphers_are_ecdhe_with_aead_only(tls_daemon):
    d = tls_daemon()
    out, err, rc = s_client(d.port, "-tls1_2")
    assert rc == 0, err
    assert re.search(rb"Cipher is ECDHE-ECDSA-(AES\d+-GCM-SHA\d+|"
                     rb"CHACHA20-POLY1305)", out), out
    # Not in the default list: CBC and non-forward-secret suites.
    out, err, rc = s_client(d.port, "-tls1_2", "-cipher",
                            "ECDHE-ECDSA-AES128-SHA256:AES128-GCM-SHA256")
    assert rc != 0
    assert "handshake failure" in err or "no shared cipher" in err, err


def test_configured_ciphers(snowd_factory, certs):
    port = free_port()
    snowd_factory(port=port, listens=[f"127.0.0.1:{port} tls"],
                  extra=tls_section(certs, extra="ciphers = "
                                    "ECDHE-ECDSA-CHACHA20-POLY1305\n"
                                    "ciphersuites = TLS_CHACHA20_POLY1305_"
                                    "SHA256\n"))
    out, err, rc = s_client(port, "-tls1_2")
    assert rc == 0, err
    assert b"Cipher is ECDHE-ECDSA-CHACHA20-POLY1305" in out, out
    out, err, rc = s_client(port, "-tls1_3")
    assert rc == 0, err
    assert b"Cipher is TLS_CHACHA20_POLY1305_SHA256" in out, out


def test_session_tickets_resume_on_every_worker(tls_daemon, tmp_path):
    """Ticket keys are made once, before the workers fork: a session
    from one worker resumes on any."""
    d = tls_daemon(server={"workers": "2"})
    sess = tmp_path / "session.pem"
    # A whole WebSocket session, so that the client stays for the tickets
    # TLS 1.3 sends after the handshake.
    talk = (upgrade_request(d.port) +
            build_frame(OP_CLOSE, close_payload(1000)))
    out, err, rc = s_client(d.port, "-tls1_3", "-sess_out", sess,
                            "-ign_eof", input=talk)
    assert rc == 0 and sess.exists() and sess.stat().st_size > 0, err
    for _ in range(8):
        out, err, rc = s_client(d.port, "-tls1_3", "-sess_in", sess,
                                "-ign_eof", input=talk)
        assert rc == 0, err
        assert b"Reused, TLSv1.3" in out, out
        assert b"HTTP/1.1 101 " in out, out


# ---- wrong protocol on a port ---------------------------------------------------------

def test_plain_http_to_a_tls_port_gets_400(tls_daemon, certs):
    d = tls_daemon()
    c = RawClient(d.port)
    try:
        c.send(upgrade_request(d.port))
        resp = c.read_response()
        assert resp.status == 400
        assert resp.header("connection") == "close"
        assert b"TLS" in resp.body
        assert c.wait_eof()
    finally:
        c.close()
    echo_over_wss(d, certs)


def test_tls_to_a_plain_port_gets_400_at_once(snowd_factory, certs):
    # A long handshake_timeout: the answer must not wait for it.
    d = snowd_factory(limits={"handshake_timeout": "60s"},
                      extra=tls_section(certs))
    c = RawClient(d.port, timeout=20)
    try:
        c.send(client_hello())
        resp = c.read_response()
        assert resp.status == 400
        assert c.wait_eof()
    finally:
        c.close()
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", d.port), timeout=20) as s:
            client_context(certs).wrap_socket(s, server_hostname="127.0.0.1")
    with d.client("/echo") as c:
        c.send_text("still plain")
        assert c.recv_text() == "still plain"


def test_mixed_plain_and_tls_listeners_with_two_workers(tls_daemon, certs):
    d = tls_daemon(server={"workers": "2"}, plain=True)
    ctx = client_context(certs)

    async def one(i):
        url = (wss_url(d) if i % 2 else
               f"ws://127.0.0.1:{d.plain_port}/echo")
        async with websockets.connect(url, ssl=ctx if i % 2 else None) as ws:
            await ws.send(f"{i}")
            assert await ws.recv() == f"{i}"

    async def run():
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(40))),
                               60)
    asyncio.run(run())
    assert len(d.worker_pids()) == 2


# ---- handshakes that do not finish ------------------------------------------------------

def test_silent_client_is_closed_after_handshake_timeout(tls_daemon, certs):
    d = tls_daemon(limits={"handshake_timeout": "1s"})
    silent = RawClient(d.port, timeout=15)
    partial = RawClient(d.port, timeout=15)
    try:
        partial.send(client_hello()[:20])
        assert silent.wait_eof(timeout=15)
        assert partial.wait_eof(timeout=15)
        assert silent.buf == b"" and partial.buf == b""   # no HTTP answer
    finally:
        silent.close()
        partial.close()
    assert d.wait_log("TLS handshake timed out"), d.log()
    echo_over_wss(d, certs)


def test_handshake_then_no_request_is_closed_with_408(tls_daemon, certs):
    d = tls_daemon(limits={"handshake_timeout": "1s"})
    with TlsClient(d.port, client_context(certs), timeout=15) as c:
        resp = c.read_response(timeout=15)
        assert resp.status == 408
        assert c.wait_eof(timeout=15)


def test_client_vanishing_mid_handshake(tls_daemon, certs):
    d = tls_daemon()
    hello = client_hello()
    # Half a ClientHello, then a reset.
    c = RawClient(d.port)
    c.send(hello[:len(hello) // 2])
    time.sleep(0.05)
    c.reset()
    # A whole ClientHello, part of the server's answer read, then a reset.
    c = RawClient(d.port)
    c.send(hello)
    c._fill(5)
    c.reset()
    # And a plain close after the hello.
    c = RawClient(d.port)
    c.send(hello)
    c.close()
    assert d.wait_log("TLS handshake failed"), d.log()
    echo_over_wss(d, certs)
    # Connections opened and dropped in a burst leave nothing behind.
    for _ in range(50):
        c = RawClient(d.port)
        c.send(hello)
        c.reset()
    echo_over_wss(d, certs)


def test_garbage_after_tls_byte_is_dropped(tls_daemon, certs):
    d = tls_daemon()
    c = RawClient(d.port)
    try:
        c.send(b"\x16\x03\x01\x00\x10" + b"\xff" * 16)
        assert c.wait_eof()
    finally:
        c.close()
    assert d.wait_log("TLS handshake failed"), d.log()
    echo_over_wss(d, certs)


# ---- privileges ---------------------------------------------------------------------------

def test_root_only_key_serves_after_workers_drop_privileges(snowd_factory,
                                                           certs,
                                                           public_dir):
    """The contexts are built by the master, as root, before the workers
    become nobody: a key only root may read still serves (as in nginx)."""
    require_root()
    key = public_dir / "root-only.key"
    shutil.copy(certs / "local.key", key)
    key.chmod(0o600)
    port = free_port()
    d = snowd_factory(port=port, listens=[f"127.0.0.1:{port} tls"],
                      plugin_dir=public_dir / "plugins",
                      server={"user": "nobody", "group": "nogroup"},
                      extra=f"[tls]\ncertificate = {certs}/local.pem\n"
                            f"key = {key}\n")
    workers = wait_until(d.worker_pids, 5.0)
    assert workers
    with open(f"/proc/{workers[0]}/status") as f:
        uid = re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1)
    assert uid != "0"
    echo_over_wss(d, certs)


# ---- snowd -t ------------------------------------------------------------------------------

def config_test(tmp_path, body, user=None):
    """Writes a config (@PLUGINS@ and @CERTS@ substituted) and runs
    `snowd -t` on it, as root or as `user`."""
    pdir = make_plugin_dir(tmp_path / "plugins")
    conf = tmp_path / "test.ini"
    conf.write_text(textwrap.dedent(body).lstrip("\n")
                    .replace("@PLUGINS@", str(pdir)))
    kw = {}
    if user:
        kw = {"user": user, "group": "nogroup", "extra_groups": [],
              "cwd": "/"}
        for p in [tmp_path, *tmp_path.parents]:
            if p != Path("/"):
                p.chmod(p.stat().st_mode | 0o005)
        conf.chmod(0o644)
    r = subprocess.run([str(snowd_binary()), "-t", "-c", str(conf)],
                       capture_output=True, text=True, timeout=30, **kw)
    return conf, r


def errors_of(conf, r):
    assert r.returncode == 1, r
    assert f"snowd: configuration file {conf} test failed" in r.stderr, \
        r.stderr
    return [(int(m.group(1)), m.group(2)) for m in
            re.finditer(rf"^{re.escape(str(conf))}:(\d+): (.*)$", r.stderr,
                        re.M)]


def assert_error_at(conf, r, line, words):
    errs = errors_of(conf, r)
    assert any(n == line and words in msg for n, msg in errs), \
        f"no error at line {line} with {words!r} in:\n{r.stderr}"


HEAD = """
[server]
listen = 127.0.0.1:1 tls
plugin_dir = @PLUGINS@
[route /echo]
handler = echo
"""   # lines 1-5


def test_config_test_accepts_a_good_tls_config(tmp_path, certs):
    conf, r = config_test(tmp_path, HEAD + tls_section(certs) +
                          SNI_SECTION.format(d=certs) +
                          "[tls chained.test]\n"
                          f"certificate = {certs}/leaf.pem\n"
                          f"key = {certs}/leaf.key\n"
                          f"chain = {certs}/inter.pem\n")
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr


@pytest.mark.parametrize("section,line,words", [
    ("[tls]\ncertificate = {d}/missing.pem\nkey = {d}/local.key\n", 7,
     "certificate: '{d}/missing.pem': No such file or directory"),
    ("[tls]\ncertificate = {d}/local.pem\nkey = {d}/missing.key\n", 8,
     "key: '{d}/missing.key': No such file or directory"),
    ("[tls]\ncertificate = {d}/not-pem.pem\nkey = {d}/local.key\n", 7,
     "certificate: '{d}/not-pem.pem' holds no PEM certificate"),
    ("[tls]\ncertificate = {d}/local.der\nkey = {d}/local.key\n", 7,
     "certificate: '{d}/local.der' holds no PEM certificate"),
    ("[tls]\ncertificate = {d}/local.pem\nkey = {d}/not-pem.pem\n", 8,
     "key: '{d}/not-pem.pem' holds no PEM private key"),
    ("[tls]\ncertificate = {d}/local.pem\nkey = {d}/local.pem\n", 8,
     "key: '{d}/local.pem' holds no PEM private key"),
    ("[tls]\ncertificate = {d}/local.pem\nkey = {d}/stray.key\n", 8,
     "key: '{d}/stray.key' does not match the certificate in "
     "'{d}/local.pem'"),
    ("[tls]\ncertificate = {d}/local.pem\n", 7,
     "key: '{d}/local.pem' holds no PEM private key"),
    ("[tls]\ncertificate = {d}/local.pem\nkey = {d}/local-encrypted.key\n",
     8, "is encrypted with a passphrase"),
    ("[tls]\ncertificate = {d}\nkey = {d}/local.key\n", 7,
     "certificate: '{d}' is not a file"),
    ("[tls]\ncertificate = {d}/local.pem\nkey = {d}/local.key\n"
     "chain = {d}/not-pem.pem\n", 9,
     "chain: '{d}/not-pem.pem' holds no PEM certificate"),
    ("[tls]\nkey = {d}/local.key\n", 6, "[tls] needs 'certificate'"),
    ("[tls]\ncertificate = {d}/local.pem\nkey = {d}/local.key\nsecret = x\n",
     9, "unknown key 'secret' in [tls]"),
    ("[tls]\ncertificate = {d}/local.pem\nkey = {d}/local.key\n"
     "ciphers = NOTACIPHER\n", 9, "ciphers: 'NOTACIPHER' names no cipher"),
    ("[tls]\ncertificate = {d}/local.pem\nkey = {d}/local.key\n"
     "ciphersuites = TLS_NOPE\n", 9, "ciphersuites: 'TLS_NOPE' is not"),
    ("[tls]\ncertificate = {d}/local.pem\nkey = {d}/local.key\n"
     "release_buffers = maybe\n", 9, "release_buffers: 'maybe' is not"),
    ("[tls]\ncertificate = {d}/local.pem\ncertificate = {d}/other.pem\n", 8,
     "'certificate' is set twice in [tls]"),
    ("[tls other.test]\ncertificate = {d}/other.pem\nkey = {d}/other.key\n",
     2, "listen: '127.0.0.1:1 tls' needs a [tls] section"),
    ("[tls other.test]\ncertificate = {d}/other.pem\nkey = {d}/other.key\n",
     6, "[tls other.test] needs a [tls] section too"),
    ("[tls]\ncertificate = {d}/local.pem\nkey = {d}/local.key\n"
     "[tls other.test]\ncertificate = {d}/other.pem\nkey = {d}/other.key\n"
     "ciphers = DEFAULT\n", 12, "'ciphers' belongs in [tls]"),
    ("[tls]\ncertificate = {d}/local.pem\nkey = {d}/local.key\n"
     "[tls bad_name!]\n", 9, "'bad_name!' is not a server name"),
    ("[tls]\ncertificate = {d}/local.pem\nkey = {d}/local.key\n"
     "[tls a.test]\ncertificate = {d}/other.pem\nkey = {d}/other.key\n"
     "[tls A.test]\n", 12, "'A.test' already has a certificate"),
    ("[tls]\ncertificate = {d}/local.pem\nkey = {d}/local.key\n"
     "[tls]\n", 9, "[tls] appears twice"),
])
def test_config_test_reports_bad_tls_settings(tmp_path, certs, section, line,
                                              words):
    conf, r = config_test(tmp_path, HEAD + section.format(d=certs))
    assert_error_at(conf, r, line, words.format(d=certs))


def test_shipped_example_tls_section_is_valid(tmp_path, certs):
    """conf/snowd.ini's commented [tls] example, uncommented next to a
    certificate, passes -t."""
    src = Path(__file__).resolve().parents[2] / "conf" / "snowd.ini"
    text = src.read_text()
    text = re.sub(r"(?m)^plugin_dir *=.*$",
                  f"plugin_dir = {make_plugin_dir(tmp_path / 'plugins')}",
                  text)
    text = re.sub(r"(?m)^listen = .*$", "\\g<0>\nlisten = 127.0.0.1:1 tls",
                  text, count=1)
    for key in ("[tls]", "certificate = cert.pem", "key = key.pem"):
        assert f"\n;{key}" in text, key
        text = text.replace(f"\n;{key}", f"\n{key}", 1)
    text = re.sub(r"(?m)^static *= *\.\./", f"static = {src.parents[1]}/",
                  text)
    shutil.copy(certs / "local.pem", tmp_path / "cert.pem")
    shutil.copy(certs / "local.key", tmp_path / "key.pem")
    conf = tmp_path / "snowd.ini"
    conf.write_text(text)
    r = subprocess.run([str(snowd_binary()), "-t", "-c", str(conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_tls_listener_without_tls_section(tmp_path):
    conf, r = config_test(tmp_path, HEAD)
    assert_error_at(conf, r, 2, "listen: '127.0.0.1:1 tls' needs a [tls] "
                    "section with a 'certificate'")


def test_unknown_word_after_listen_address(tmp_path, certs):
    conf, r = config_test(tmp_path, HEAD.replace(" tls", " ssl") +
                          tls_section(certs))
    assert_error_at(conf, r, 2, "the only word allowed after the address "
                    "is 'tls'")


def test_unreadable_key_fails_the_config_test(public_dir, certs):
    """Run as nobody: a key only root may read cannot be loaded."""
    require_root()
    d = public_dir
    for name in ("local.pem", "local.key"):
        shutil.copy(certs / name, d / name)
        (d / name).chmod(0o644)
    (d / "local.key").chmod(0o600)   # root's alone
    conf = d / "test.ini"
    conf.write_text(textwrap.dedent(HEAD).lstrip("\n")
                    .replace("@PLUGINS@", str(d / "plugins")) +
                    tls_section(d))
    conf.chmod(0o644)
    r = subprocess.run([str(snowd_binary()), "-t", "-c", str(conf)],
                       capture_output=True, text=True, timeout=30,
                       user="nobody", group="nogroup", extra_groups=[],
                       cwd="/")
    assert_error_at(conf, r, 8, f"key: '{d}/local.key': Permission "
                    "denied")


def test_every_tls_error_is_reported_in_one_run(tmp_path, certs):
    conf, r = config_test(tmp_path, HEAD + tls_section(certs, extra="x = 1\n")
                          .replace("local.key", "stray.key") +
                          "[tls other.test]\n"
                          f"certificate = {certs}/missing.pem\n")
    lines = {n for n, _ in errors_of(conf, r)}
    assert {8, 9, 11} <= lines, r.stderr


# ---- reload ---------------------------------------------------------------------------

def tls_socket(port, certs, ca="local.pem"):
    ctx = client_context(certs, ca=ca)
    ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw)


def test_reload_reads_the_certificates_again(snowd_factory, certs, tmp_path):
    """The files behind [tls] are replaced and SIGHUP sent: new clients
    get the new certificate, a client of the old one goes on."""
    live = tmp_path / "live"
    live.mkdir()
    for ext in ("pem", "key"):
        shutil.copy(certs / f"local.{ext}", live / f"cert.{ext}")
    port = free_port()
    d = snowd_factory(port=port, listens=[f"127.0.0.1:{port} tls"],
                      server={"workers": "2"},
                      extra=f"[tls]\ncertificate = {live}/cert.pem\n"
                            f"key = {live}/cert.key\n")
    old = tls_socket(port, certs)
    try:
        old.sendall(upgrade_request(port))
        assert b" 101 " in old.recv(4096)
        out, err, rc = s_client(port, "-noservername")
        assert rc == 0 and subject_cn(out) == "localhost", err
        for ext in ("pem", "key"):
            tmp = live / f"new.{ext}"
            shutil.copy(certs / f"other.{ext}", tmp)
            os.replace(tmp, live / f"cert.{ext}")
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        assert d.wait_log_re(r"reload: configuration #2 serving", 15,
                             start=mark), d.log()[mark:]
        out, err, rc = s_client(port, "-noservername")
        assert rc == 0 and subject_cn(out) == "other.test", err
        # The old connection still speaks through its old session.
        old.sendall(build_frame(OP_TEXT, b"still here"))
        reply = old.recv(4096)
        assert reply[2:] == b"still here", reply
    finally:
        old.close()


def test_reload_with_a_key_that_does_not_match_is_refused(snowd_factory,
                                                         certs, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    for ext in ("pem", "key"):
        shutil.copy(certs / f"local.{ext}", live / f"cert.{ext}")
    port = free_port()
    d = snowd_factory(port=port, listens=[f"127.0.0.1:{port} tls"],
                      extra=f"[tls]\ncertificate = {live}/cert.pem\n"
                            f"key = {live}/cert.key\n")
    workers = set(d.worker_pids())
    shutil.copy(certs / "stray.key", live / "cert.key")
    mark = d.log_mark()
    d.signal(signal.SIGHUP)
    assert d.wait_log_re(r"still serving the previous configuration", 15,
                         start=mark), d.log()[mark:]
    assert re.search(re.escape(str(d.config)) + r":\d+: ", d.log()[mark:])
    assert set(d.worker_pids()) == workers
    echo_over_wss(d, certs)


def test_tls_failures_are_counted(snowd_factory, certs):
    from test_metrics import get, settle
    port = free_port()
    d = snowd_factory(port=port, listens=[f"127.0.0.1:{port} tls"],
                      limits={"handshake_timeout": "1s"},
                      extra=tls_section(certs) +
                      f"\n[admin]\nlisten = 127.0.0.1:{free_port()}\n")
    d.admin_port = int(re.search(r"\[admin\]\nlisten = 127\.0\.0\.1:(\d+)",
                                 d.config.read_text()).group(1))
    assert get(d.admin_port, "/healthz").status == 200
    # The factory's probe of the port is one more TCP connection closed
    # before a byte (a "tls" failure here); a worker may take it only
    # after it said it was ready, so counts start once it has been taken.
    before = settle(d, pred=lambda m: m("snowd_tcp_connections_total") >= 1)
    assert before("snowd_tcp_connections_total") == 1
    # Plain HTTP to the TLS port; a hello then silence; a bare TCP
    # connection that says nothing until handshake_timeout.
    c = RawClient(port)
    c.send(upgrade_request(port))
    assert c.read_response().status == 400
    c.close()
    c = RawClient(port)
    c.send(client_hello())
    c.close()
    c = RawClient(port, timeout=15)
    assert c.wait_eof(15)
    c.close()
    echo_over_wss(d, certs)
    after = settle(d)
    key = "snowd_handshake_failures_total"
    assert after(key, reason="tls") - (before(key, reason="tls") or 0) == 3
    assert after(key, reason="aborted") == before(key, reason="aborted")
    assert after("snowd_connections_total", route="/echo") - \
        (before("snowd_connections_total", route="/echo") or 0) == 1
