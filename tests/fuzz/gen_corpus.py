#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/ from the unit-test
vectors.  Run from anywhere: python3 tests/fuzz/gen_corpus.py

Layouts (see each fuzz_*.c):
  http/    byte 0 = split selector, then the request bytes
  ws/      byte 0 = split selector, byte 1 = settings, then the stream
  utf8/    byte 0 = split selector, then the text
  confval/ the value string
  ipc/     byte 0 = split selector, then a stream of channel frames
  admin/   byte 0 = split selector, then the request bytes
  static/  byte 0 = route prefix selector, byte 1 = head buffer size, then
           the request target (or, alone, an HTTP date)
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

MASK_A = bytes([0x37, 0xFA, 0x21, 0x3D])
MASK_B = bytes([0x01, 0x80, 0xFE, 0x5A])
FIN = 0x80
TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


def frame(b0, payload, mask=MASK_A):
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        h = bytes([b0, mbit | n])
    elif n < 65536:
        h = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask is None:
        return h + payload
    return h + mask + bytes(c ^ mask[i & 3] for i, c in enumerate(payload))


def write(kind, name, data):
    d = os.path.join(CORPUS, kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def request(line="GET /chat HTTP/1.1", headers=None, eol="\r\n"):
    if headers is None:
        headers = ["Host: server.example.com", "Upgrade: websocket",
                   "Connection: Upgrade", "Sec-WebSocket-Key: " + KEY,
                   "Sec-WebSocket-Version: 13"]
    return (line + eol + "".join(h + eol for h in headers) + eol).encode(
        "latin-1")


GOOD = ["Host: server.example.com", "Upgrade: websocket",
        "Connection: Upgrade", "Sec-WebSocket-Key: " + KEY,
        "Sec-WebSocket-Version: 13"]


def gen_http():
    cases = {
        "upgrade": request(),
        "upgrade_rfc": request(headers=GOOD + [
            "Origin: http://example.com",
            "Sec-WebSocket-Protocol: chat, superchat"]),
        "protocols_two_fields": request(headers=GOOD + [
            "Sec-WebSocket-Protocol: foo", "Sec-WebSocket-Protocol: chat"]),
        "keep_alive_upgrade": request(headers=[
            "Host: a", "Upgrade: websocket",
            "Connection: keep-alive, Upgrade",
            "Sec-WebSocket-Key: " + KEY, "Sec-WebSocket-Version: 13"]),
        "bare_lf": request(eol="\n"),
        "query": request(line="GET /chat?room=1&x=2 HTTP/1.1"),
        "trailing_frame": request() + frame(FIN | TEXT, b"Hello"),
        "http10": request(line="GET /chat HTTP/1.0"),
        "http20": request(line="GET /chat HTTP/2.0"),
        "post": request(line="POST /chat HTTP/1.1"),
        "not_found": request(line="GET /nowhere HTTP/1.1"),
        "version8": request(headers=GOOD[:4] + ["Sec-WebSocket-Version: 8"]),
        "bad_key": request(headers=GOOD[:3] + [
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==",
            "Sec-WebSocket-Version: 13"]),
        "no_host": request(headers=GOOD[1:]),
        "bad_origin": request(headers=GOOD + ["Origin: https://evil"]),
        "space_before_colon": request(headers=["Host : a"]),
        "obs_fold": request(headers=["X: a", " b"]),
        "ctl_in_value": request(headers=["X: a\x01b"]),
        "trim": request(headers=["A:   spaced out \t ", "B:\tx", "C:"]),
        "too_many": request(headers=["X-H%d: v" % i for i in range(70)]),
        "empty_line": b"\r\n\r\n",
        "no_target": b"GET HTTP/1.1\r\n\r\n",
        "incomplete": request()[:-2],
    }
    for i, (name, data) in enumerate(sorted(cases.items())):
        write("http", name, bytes([(i * 37) & 0xFF]) + data)


def gen_ws():
    big = bytes((i * 31) & 0xFF for i in range(300))
    kosme = "κόσμε".encode()
    s = {}
    s["rfc_masked_hello"] = (0, frame(FIN | TEXT, b"Hello"))
    s["rfc_unmasked_examples"] = (1, bytes([
        0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F,
        0x01, 0x03, 0x48, 0x65, 0x6C,
        0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F,
        0x80, 0x02, 0x6C, 0x6F]))
    s["rfc_masked_pong"] = (0, bytes([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D,
                                      0x7F, 0x9F, 0x4D, 0x51, 0x58]))
    s["fragmented_interleaved"] = (0,
        frame(TEXT, kosme[:4]) + frame(FIN | PING, b"are you there", MASK_B)
        + frame(CONT, kosme[4:8], MASK_B) + frame(FIN | PONG, b"")
        + frame(FIN | CONT, kosme[8:]) + frame(FIN | CLOSE, b"\x03\xe8done"))
    s["len16"] = (0, frame(FIN | BINARY, big, MASK_B))
    s["len16_boundary"] = (0, frame(FIN | BINARY, big[:126])
                           + frame(FIN | BINARY, big[:125]))
    s["len64_header_only"] = (0, bytes([0x82, 0xFF]) + struct.pack(">Q", 65536)
                              + MASK_A + b"abc")
    s["len64_msb"] = (0, bytes([0x82, 0xFF]) + struct.pack(">Q", 1 << 63)
                      + MASK_A)
    s["too_big_fragments"] = (4, frame(BINARY, big[:60]) + frame(CONT, big[:41])
                              + frame(FIN | CONT, b"x"))
    s["too_big_single"] = (4, frame(FIN | TEXT, b"a" * 101))
    s["invalid_utf8_first_fragment"] = (0, frame(TEXT, b"ok\xed\xa0\x80"))
    s["utf8_split_fragments"] = (0, frame(TEXT, b"\xf0") +
                                 frame(CONT, b"\x9f\x98") +
                                 frame(FIN | CONT, b"\x80"))
    s["partial_code_point_end"] = (0, frame(FIN | TEXT, b"ab\xe2\x82"))
    s["close_empty"] = (0, frame(FIN | CLOSE, b""))
    s["close_one_byte"] = (0, frame(FIN | CLOSE, b"\x03"))
    s["close_1005"] = (0, frame(FIN | CLOSE, b"\x03\xed"))
    s["close_4999_reason"] = (0, frame(FIN | CLOSE, b"\x13\x87bye \xc3\xa9"))
    s["close_bad_reason"] = (0, frame(FIN | CLOSE, b"\x03\xe8ok\xff"))
    s["unmasked"] = (0, frame(FIN | TEXT, b"Hello", None))
    s["rsv1"] = (0, frame(FIN | 0x40 | TEXT, b"Hello"))
    s["opcode3"] = (0, frame(FIN | 3, b""))
    s["opcode_b"] = (0, frame(FIN | 0xB, b""))
    s["ping_no_fin"] = (0, frame(PING, b"x"))
    s["ping_126"] = (0, frame(FIN | PING, b"p" * 126))
    s["continuation_first"] = (0, frame(FIN | CONT, b"lo"))
    s["text_inside_message"] = (0, frame(TEXT, b"Hel") + frame(FIN | TEXT, b"lo"))
    s["zero_length_frames"] = (0, frame(TEXT, b"") + frame(FIN | CONT, b"")
                               + frame(FIN | BINARY, b""))
    s["client_masked_rejected"] = (1, frame(FIN | TEXT, b"Hello"))
    s["no_limit"] = (2, frame(FIN | BINARY, big))
    s["limit_125"] = (6, frame(BINARY, big[:100]) + frame(FIN | CONT, big[:25]))
    for i, (name, (flags, data)) in enumerate(sorted(s.items())):
        write("ws", name, bytes([(i * 53) & 0xFF, flags]) + data)


def gen_utf8():
    samples = {
        "ascii": b"Hello, world! 0123456789abcdef",
        "kosme": "κόσμε".encode(),
        "mixed": "a\u00e9z\u20ac\U0001F600 0123456789abcdef\U0010FFFF".encode(),
        "boundaries": b"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80"
                      b"\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf",
        "overlong_c0": b"ab\xc0\xafcd",
        "overlong_e0": b"\xe0\x9f\xbf",
        "overlong_f0": b"\xf0\x8f\xbf\xbf",
        "surrogate": b"\xed\xa0\x80",
        "above_max": b"\xf4\x90\x80\x80",
        "f5": b"\xf5\x80\x80\x80",
        "ff": b"\xff",
        "stray_cont": b"abc\x80def",
        "truncated": b"abc\xe2\x82",
        "truncated4": b"abcdefghijklmnop\xf0\x9f\x98",
        "kosme_bad": "κόσμε".encode() + b"\xed\xa0\x80edited",
        "long_ascii_then_bad": b"x" * 40 + b"\xc3",
    }
    for i, (name, data) in enumerate(sorted(samples.items())):
        write("utf8", name, bytes([(i * 41) & 0xFF]) + data)


def gen_confval():
    values = [
        "512", "8K", "16M", "1G", "16MiB", "16MB", "4KiB", "0", "-1", "16X",
        "1.5M", "99999999999999999999", "16M junk", "17179869184G",
        "10s", "2m", "1h", "500ms", "1d", "30", "10 s", "s", "10x",
        "213503982335d", "on", "off", "yes", "no", "TRUE", "false",
        "127.0.0.1:8080", "[::1]:8080", "*:80", "[::]:443", "0.0.0.0:8080",
        "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "localhost:80",
        "[::1:80", "1.2.3.4:", "1.2.3.4:80x", "[2001:db8::7]:9000",
        "[::ffff:1.2.3.4]:80", "65535",
        "127.0.0.1:8443 tls", "[::]:443\ttls", "*:443 tls tls",
        "127.0.0.1:8443 ssl", "127.0.0.1:8443 tls x",
    ]
    for i, v in enumerate(values):
        write("confval", "v%02d" % i, v.encode())


# src/ipc.h: header = body length, type (uint32 each, host byte order).
IPC_FRAME_MAX = 64 * 1024 + 256
(READY, HEARTBEAT, REGISTER, UNREGISTER, REGISTER_REPLY, NAME_ADD, NAME_DEL,
 WORKER_DOWN, SERVICE_START, TELL, MONITOR, DEMONITOR, DOWN,
 IPC_TYPE_MAX) = range(1, 15)
IPC_MIN_BODY = {READY: 0, HEARTBEAT: 0, REGISTER: 9, UNREGISTER: 9,
                REGISTER_REPLY: 4, NAME_ADD: 9, NAME_DEL: 9, WORKER_DOWN: 8,
                SERVICE_START: 1, TELL: 24, MONITOR: 16, DEMONITOR: 16,
                DOWN: 16}


def ipc(ftype, body=b"", length=None):
    n = len(body) if length is None else length
    return struct.pack("=II", n, ftype) + body


def pid(slot, gen, serial):
    return struct.pack("=Q", (1 << 56) | (slot << 48) | (gen << 32) | serial)


def tell(to, frm, tag, data):
    return ipc(TELL, to + frm + struct.pack("=II", 1, tag) + data)


def gen_ipc():
    a, b = pid(0, 1, 7), pid(1, 1, 9)
    every_min = b"".join(ipc(t, bytes(range(IPC_MIN_BODY[t])))
                         for t in sorted(IPC_MIN_BODY))
    session = (ipc(READY, b"chat\0ticker\0") + ipc(HEARTBEAT)
               + ipc(REGISTER, a + b"lobby") + ipc(REGISTER_REPLY, bytes(4))
               + ipc(NAME_ADD, a + b"lobby") + ipc(SERVICE_START, b"ticker")
               + ipc(MONITOR, b + a) + ipc(DOWN, a + b + b"normal")
               + ipc(DEMONITOR, b + a) + ipc(WORKER_DOWN, bytes(8))
               + ipc(NAME_DEL, a + b"lobby") + ipc(UNREGISTER, a + b"lobby"))
    tells = b"".join(tell(b, a, i, b"x" * (60 + i)) for i in range(20))
    samples = {
        "empty": b"",
        "every_type_at_min": every_min,
        "session": session,
        "tells": tells,
        "largest_frame": ipc(TELL, bytes(IPC_FRAME_MAX)),
        "partial_header": ipc(TELL, a + b + bytes(8))[:5],
        "partial_body": tells[:200],
        "oversize": ipc(HEARTBEAT) + ipc(TELL, b"", IPC_FRAME_MAX + 1),
        "len_all_ones": ipc(TELL, b"", 0xFFFFFFFF),
        "type_zero": ipc(HEARTBEAT) + ipc(0, b""),
        "type_max": ipc(IPC_TYPE_MAX, b"abc"),
        "type_all_ones": ipc(0xFFFFFFFF, b""),
        "short_register": session[:28] + ipc(REGISTER, a),
        "short_tell": tells[:92] + ipc(TELL, bytes(23)),
        "short_down": ipc(DOWN, bytes(15)) + ipc(HEARTBEAT),
        "short_reply": ipc(REGISTER_REPLY, bytes(3)),
    }
    for i, (name, data) in enumerate(sorted(samples.items())):
        write("ipc", name, bytes([(i * 59) & 0xFF]) + data)


def gen_chat_json():
    """The chat plugin's client messages (plugins/chat_json.c)."""
    docs = [
        '{"op":"nick","nick":"ann"}',
        '{"op":"join","room":"lobby"}',
        '{"op":"leave","room":"lobby"}',
        '{"op":"say","room":"lobby","text":"hi"}',
        '{"op":"members","room":"lobby"}',
        '{}',
        ' \t\r\n{ "a" : "b" , "c" : "" } \n',
        '{"t":"\\"\\\\\\/\\b\\f\\n\\r\\t"}',
        '{"t":"\\u0041\\u00e9\\u20AC\\ud83d\\ude00"}',
        '{"t":"\\ud83d"}',
        '{"t":"\\u0000"}',
        '{"t":"\\x41"}',
        '{"n":1,"b":true,"z":null,"o":{},"a":[]}',
        '{"op":"a","op":"b"}',
        '{"k0":"v","k1":"v","k2":"v","k3":"v","k4":"v","k5":"v",'
        '"k6":"v","k7":"v","k8":"v"}',
        '{"a":"b"}x',
        '{"a":"b",}',
    ]
    for i, d in enumerate(docs):
        write("chat_json", f"c{i:02d}", d.encode())
    write("chat_json", "utf8", '{"t":"h\u00e9llo \U0001F600"}'.encode())
    write("chat_json", "bad_utf8", b'{"t":"\xc0\x80\xed\xa0\x80"}')
    write("chat_json", "control", b'{"t":"a\x01b"}')


def gen_static():
    # Byte 0 picks the prefix in fuzz_static.c: 0 "/", 1 "/demo",
    # 2 "/demo/", 3 "/a/b", 4 "//".
    targets = [
        (0, "/"), (0, "/index.html"), (0, "/js/app.js?v=3"), (1, "/demo"),
        (1, "/demo/"), (2, "/demo/app.js"), (1, "/demox"), (3, "/a/b/c/d.css"),
        (0, "/../etc/passwd"), (0, "/%2e%2e/etc/passwd"),
        (0, "/..%2fetc%2fpasswd"), (0, "/%252e%252e/etc/passwd"),
        (0, "/..\\etc\\passwd"), (0, "/a%5c..%5cb"), (0, "/index.html%00.png"),
        (0, "/a/./b/../c"), (0, "//a//b///c.txt"), (0, "/a/."),
        (0, "/hello%20world.txt"), (0, "/%E2%82%AC.txt"), (0, "/%zz"),
        (0, "/a%2"), (0, "/what%3F.txt?q=1#frag"), (4, "/x"), (0, "*"),
        (0, "http://example.com/x"), (0, "/" + "a" * 1100),
        (0, "/" + "%41" * 1030), (0, "/" + "/" * 300 + "x.js"),
    ]
    for i, (sel, t) in enumerate(targets):
        write("static", "t%02d" % i, bytes([sel, (i * 37) & 0xFF]) +
              t.encode("latin-1"))
    dates = ["Sun, 06 Nov 1994 08:49:37 GMT", "Thu, 29 Feb 2024 00:00:00 GMT",
             "Wed, 29 Feb 2023 00:00:00 GMT", "Mon, 06 Nov 1994 08:49:37 GMT",
             "Fri, 31 Dec 9999 23:59:59 GMT"]
    for i, d in enumerate(dates):
        write("static", "d%02d" % i, d.encode())


def gen_admin():
    heads = {
        "metrics": "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "metrics_query": "GET /metrics?name[]=x HTTP/1.1\r\n\r\n",
        "metrics_head": "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "healthz": "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "healthz_http10": "GET /healthz HTTP/1.0\r\n\r\n",
        "healthz_bare_lf": "GET /healthz HTTP/1.1\nHost: x\n\n",
        "post": "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "delete_unknown": "DELETE /nothing HTTP/1.1\r\n\r\n",
        "not_found": "GET /metricsx HTTP/1.1\r\n\r\n",
        "trailing_slash": "GET /metrics/ HTTP/1.1\r\n\r\n",
        "upgrade": "GET /echo HTTP/1.1\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: " + KEY + "\r\n\r\n",
        "http2": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "garbage": "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        "incomplete": "GET /metrics HTTP/1.1\r\nHost: x\r\n",
        "folded": "GET /metrics HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
        "lower_get": "get /metrics HTTP/1.1\r\n\r\n",
        "too_large": "GET /metrics HTTP/1.1\r\nX: " + "a" * 5000 +
                     "\r\n\r\n",
    }
    for i, (name, head) in enumerate(sorted(heads.items())):
        write("admin", name, bytes([(i * 53) & 0xFF]) +
              head.encode("latin-1"))


if __name__ == "__main__":
    gen_admin()
    gen_http()
    gen_ws()
    gen_utf8()
    gen_confval()
    gen_ipc()
    gen_static()
    gen_chat_json()
