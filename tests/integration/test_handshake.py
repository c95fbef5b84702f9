"""The opening handshake: every answer snowd gives to an upgrade request."""
import time

import pytest

from conftest import (OP_BINARY, OP_PING, OP_PONG, OP_TEXT, RawClient,
                      accept_for, build_frame, new_key)


def request(snowd, data, timeout=5.0):
    """Sends raw bytes, returns the response; checks that an error answer
    says Connection: close and is followed by the end of the stream."""
    c = RawClient(snowd.port, timeout=timeout)
    try:
        c.send(data)
        resp = c.read_response()
        if resp.status != 101:
            assert (resp.header("connection") or "").lower() == "close", resp
            assert c.wait_eof(), "server kept the socket open after an error"
        return resp
    finally:
        c.close()


def status_of(snowd, path="/echo", **kw):
    c = RawClient(snowd.port)
    return request(snowd, c.request_bytes(path, **kw)).status


# ---- success ----------------------------------------------------------------------------

def test_accept_header_is_correct(snowd):
    with RawClient(snowd.port) as c:
        resp = c.handshake("/echo")
        assert resp.header("sec-websocket-accept") == accept_for(c.key)
        assert resp.header("upgrade").lower() == "websocket"
        assert "upgrade" in resp.header("connection").lower()
        assert resp.header("sec-websocket-protocol") is None


def test_accept_matches_rfc_example(snowd):
    """RFC 6455 section 1.3: this key gives this accept value."""
    with RawClient(snowd.port) as c:
        resp = c.handshake("/echo", key="dGhlIHNhbXBsZSBub25jZQ==")
        assert resp.header("sec-websocket-accept") == \
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_header_names_and_tokens_are_case_insensitive(snowd):
    with RawClient(snowd.port) as c:
        key = new_key()
        c.send((f"GET /echo HTTP/1.1\r\nhOsT: x\r\nUPGRADE: WebSocket\r\n"
                f"connection: keep-alive, UPGRADE\r\n"
                f"sec-websocket-key: {key}\r\nSEC-WEBSOCKET-VERSION: 13\r\n"
                f"\r\n").encode())
        resp = c.read_response()
        assert resp.status == 101
        assert resp.header("sec-websocket-accept") == accept_for(key)
        c.send_text("works")
        assert c.recv_text() == "works"


def test_bare_lf_line_endings_are_accepted(snowd):
    with RawClient(snowd.port) as c:
        c.send(c.request_bytes("/echo").replace(b"\r\n", b"\n"))
        resp = c.read_response()
        assert resp.status == 101


def test_query_string_is_not_part_of_the_route(snowd):
    with snowd.client("/kit?a=1&b=2") as c:
        c.send_text("path")
        assert c.recv_text() == "/kit?a=1&b=2"


def test_handshake_delivered_one_byte_at_a_time(snowd):
    with RawClient(snowd.port) as c:
        c.send_slowly(c.request_bytes("/echo"), pause=0.001)
        resp = c.read_response()
        assert resp.status == 101
        assert resp.header("sec-websocket-accept") == accept_for(c.key)
        c.send_text("slow")
        assert c.recv_text() == "slow"


def test_handshake_and_first_frames_in_one_send(snowd):
    with RawClient(snowd.port) as c:
        data = (c.request_bytes("/echo") + build_frame(OP_TEXT, "first") +
                build_frame(OP_PING, b"pp") +
                build_frame(OP_BINARY, b"\x00\x01" * 5000))
        c.send(data)
        resp = c.read_response()
        assert resp.status == 101
        assert c.recv_text() == "first"
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"pp")
        assert c.recv_message().payload == b"\x00\x01" * 5000


def test_handshake_and_first_frames_in_one_send_stateful_handler(snowd):
    """The testkit handler has per-connection state (the connection is
    reallocated at open): pipelined frames must still be handled."""
    with RawClient(snowd.port) as c:
        c.send(c.request_bytes("/kit") + build_frame(OP_TEXT, "a") +
               build_frame(OP_TEXT, "state"))
        assert c.read_response().status == 101
        assert c.recv_text() == "a"
        assert c.recv_text() == "2"


def test_many_sequential_handshakes(snowd):
    for i in range(50):
        with snowd.client("/kit") as c:
            c.send_text(f"m{i}")
            assert c.recv_text() == f"m{i}"


# ---- 400 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"GARBAGE\r\n\r\n",
    b"GET /echo\r\nHost: x\r\n\r\n",
    b"GET  /echo HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /echo HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"GET /echo FTP/1.1\r\nHost: x\r\n\r\n",
    b"\r\n\r\n",
])
def test_malformed_request_line_is_400(snowd, data):
    assert request(snowd, data).status == 400


def test_space_before_colon_is_400(snowd):
    c = RawClient(snowd.port)
    data = c.request_bytes("/echo").replace(b"Host:", b"Host :")
    c.close()
    assert request(snowd, data).status == 400


def test_obsolete_line_folding_is_400(snowd):
    c = RawClient(snowd.port)
    data = c.request_bytes("/echo", headers=[("X-A", "b")]).replace(
        b"X-A: b\r\n", b"X-A: b\r\n  folded\r\n")
    c.close()
    assert request(snowd, data).status == 400


def test_control_character_in_header_value_is_400(snowd):
    assert status_of(snowd, headers=[("X-A", "a\x01b")]) == 400


@pytest.mark.parametrize("key", [
    "",
    "short",
    "dGhlIHNhbXBsZSBub25jZQ=",       # 23 characters
    "dGhlIHNhbXBsZSBub25jZQ===",     # 25 characters
    "dGhlIHNhbXBsZSBub25jZR==",      # low bits of last char not zero
    "dGhlIHNhbXBsZSBub25j*Q==",      # not base64
    "dGhlIHNhbXBsZSBub25jZQAA",      # no padding
])
def test_bad_key_is_400(snowd, key):
    assert status_of(snowd, key=key) == 400


def test_missing_key_is_400(snowd):
    assert status_of(snowd, omit=["Sec-WebSocket-Key"]) == 400


def test_missing_host_is_400(snowd):
    assert status_of(snowd, omit=["Host"]) == 400


def test_http_1_0_is_400(snowd):
    assert status_of(snowd, version="HTTP/1.0") == 400


def test_missing_connection_upgrade_is_400(snowd):
    assert status_of(snowd, omit=["Connection"]) == 400


def test_connection_without_upgrade_token_is_400(snowd):
    assert status_of(snowd, omit=["Connection"],
                     headers=[("Connection", "keep-alive")]) == 400


# ---- 405, 426, 404, 505, 431 ------------------------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PUT", "HEAD", "OPTIONS", "get"])
def test_non_get_is_405(snowd, method):
    assert status_of(snowd, method=method) == 405


def test_wrong_version_is_426_with_version_header(snowd):
    c = RawClient(snowd.port)
    data = c.request_bytes("/echo", omit=["Sec-WebSocket-Version"],
                           headers=[("Sec-WebSocket-Version", "8")])
    c.close()
    resp = request(snowd, data)
    assert resp.status == 426
    assert resp.header("sec-websocket-version") == "13"


def test_missing_version_is_426(snowd):
    resp = request(snowd, RawClient(snowd.port).request_bytes(
        "/echo", omit=["Sec-WebSocket-Version"]))
    assert resp.status == 426
    assert resp.header("sec-websocket-version") == "13"


def test_plain_http_on_a_route_is_426(snowd):
    resp = request(snowd, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.status == 426
    assert resp.header("sec-websocket-version") == "13"
    assert resp.header("upgrade").lower() == "websocket"


def test_upgrade_to_other_protocol_is_426(snowd):
    assert status_of(snowd, omit=["Upgrade"],
                     headers=[("Upgrade", "h2c")]) == 426


@pytest.mark.parametrize("path", ["/", "/nope", "/echo/", "/ECHO", "/echox"])
def test_unknown_route_is_404(snowd, path):
    assert status_of(snowd, path) == 404


def test_plain_http_on_unknown_route_is_404(snowd):
    assert request(snowd, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").status == 404


def test_http_2_request_line_is_505(snowd):
    assert status_of(snowd, version="HTTP/2.0") == 505


def test_error_response_body_and_length(snowd):
    resp = request(snowd, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.status == 404
    assert resp.body == b"Not Found\n"


def test_big_header_is_431(snowd):
    resp = request(snowd, RawClient(snowd.port).request_bytes(
        "/echo", headers=[("X-Big", "b" * 9000)]))
    assert resp.status == 431


def test_head_without_end_over_limit_is_431(snowd):
    """A head that never ends is refused once it passes max_header."""
    data = b"GET /echo HTTP/1.1\r\n" + b"X-Pad: " + b"p" * 10000
    assert request(snowd, data).status == 431


def test_small_max_header_is_enforced(snowd_factory):
    d = snowd_factory(limits={"max_header": "256"})
    with d.client("/echo") as c:          # a normal request fits
        c.send_text("fits")
        assert c.recv_text() == "fits"
    assert request(d, RawClient(d.port).request_bytes(
        "/echo", headers=[("X-Pad", "p" * 200)])).status == 431


def test_many_headers_are_refused_not_crashing(snowd):
    headers = [(f"X-H{i}", "v") for i in range(500)]
    resp = request(snowd, RawClient(snowd.port).request_bytes(
        "/echo", headers=headers))
    assert resp.status in (400, 431)


# ---- handler answers -----------------------------------------------------------------

def test_on_open_refusal_is_its_status(snowd):
    assert status_of(snowd, "/reject") == 401
    assert status_of(snowd, "/reject", headers=[("X-Token", "no")]) == 401


def test_on_open_failure_is_500(snowd):
    assert status_of(snowd, "/reject", headers=[("X-Token", "crash")]) == 500
    assert snowd.wait_log("answering 500")


def test_on_open_accept(snowd):
    with snowd.client("/reject", headers=[("X-Token", "yes")]) as c:
        c.send_text("in")
        assert c.recv_text() == "in"


# ---- subprotocols -------------------------------------------------------------------------

@pytest.mark.parametrize("offered,chosen", [
    (["chat.v1, chat.v2"], "chat.v2"),       # server preference wins
    (["chat.v2, chat.v1"], "chat.v2"),
    (["chat.v1"], "chat.v1"),
    (["other, chat.v1"], "chat.v1"),
    (["x, chat.v1"], "chat.v1"),
    (["chat.v1", "chat.v2"], "chat.v2"),     # across several header fields
    (["Chat.V2"], None),                     # names are case-sensitive
    (["other"], None),
    ([], None),
])
def test_subprotocol_negotiation(snowd, offered, chosen):
    headers = [("Sec-WebSocket-Protocol", v) for v in offered]
    with RawClient(snowd.port) as c:
        resp = c.handshake("/proto", headers=headers)
        assert resp.header("sec-websocket-protocol") == chosen
        assert len(resp.headers.get("sec-websocket-protocol", [])) <= 1
        c.send_text("subprotocol")
        assert c.recv_text() == (chosen or "-")


def test_no_subprotocol_on_route_without_any(snowd):
    with RawClient(snowd.port) as c:
        resp = c.handshake("/kit", headers=[("Sec-WebSocket-Protocol",
                                             "chat.v1")])
        assert resp.header("sec-websocket-protocol") is None
        c.send_text("subprotocol")
        assert c.recv_text() == "-"


# ---- origins ---------------------------------------------------------------------------------

@pytest.mark.parametrize("origin,status", [
    ("https://good.example", 101),
    ("HTTPS://GOOD.EXAMPLE", 101),
    ("http://localhost:8080", 101),
    (None, 101),
    ("https://evil.example", 403),
    ("https://good.example.evil", 403),
    ("http://localhost", 403),
    ("null", 403),
])
def test_origin_allow_list(snowd, origin, status):
    headers = [("Origin", origin)] if origin else []
    assert status_of(snowd, "/origin", headers=headers) == status


def test_route_without_origins_allows_any(snowd):
    assert status_of(snowd, "/kit",
                     headers=[("Origin", "https://evil.example")]) == 101


# ---- timeouts -----------------------------------------------------------------------------

@pytest.fixture
def quick(snowd_factory):
    return snowd_factory(limits={"handshake_timeout": "1s"})


def test_stalled_handshake_gets_408_and_close(quick):
    with RawClient(quick.port, timeout=10) as c:
        c.send(c.request_bytes("/echo")[:30])     # never finished
        start = time.monotonic()
        resp = c.read_response(timeout=10)
        assert resp.status == 408
        assert (resp.header("connection") or "").lower() == "close"
        assert c.wait_eof(10), "socket not closed after 408"
        assert time.monotonic() - start >= 0.5, "408 came far too early"


def test_silent_client_gets_408(quick):
    with RawClient(quick.port, timeout=10) as c:
        resp = c.read_response(timeout=10)
        assert resp.status == 408
        assert c.wait_eof(10)


def test_completed_handshake_is_not_timed_out(quick):
    with quick.client("/echo") as c:
        # well past handshake_timeout, the open connection still works
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            c.send_text("tick")
            assert c.recv_text() == "tick"
            time.sleep(0.25)
