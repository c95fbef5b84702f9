#!/usr/bin/python3
"""actorclient.py - client side of the actorbench plugin (bench/actorbench.c).

Plain sockets and a minimal WebSocket client (RFC 6455, client frames
masked), standard library only, so that connection timing is under our
control (the accept-balance burst opens its TCP connections in a tight
loop before any handshake).

Subcommands (all print JSON lines on stdout, diagnostics on stderr):

  whoami PORT
  run PORT MODE N [--on-worker W] [--window W] [--inflight I]
      one run on one connection (on worker W if given)
  par PORT MODE N --on-workers 0,1 [--modes same,cross]
      one connection per listed worker, all runs started together;
      prints each reply and an aggregate line (sum of messages / time of
      the longest run).  --modes gives each connection its own mode: with
      "--on-workers 0,1 --modes same,cross" both runs feed bench.sink0, one
      from its own worker and one through the master (a contended sink)
  balance PORT --label L [--conns 2000] [--burst 200] [--rounds 10]
      accept balance: sequential connections held open, then bursts
  median FILE
      summary of a JSON-lines results file written by bench/actors.sh
"""
import argparse
import base64
import json
import os
import select
import socket
import statistics
import struct
import sys
import time

PATH = "/actorbench"


class WSError(Exception):
    pass


class WS:
    """A blocking WebSocket client connection."""

    def __init__(self, port, path=PATH, host="127.0.0.1", sock=None,
                 timeout=10.0):
        self.sock = sock or socket.create_connection((host, port),
                                                     timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.host = host
        self.port = port
        self.path = path

    # -- handshake, split so that many can be pipelined --
    def send_handshake(self):
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())

    def read_handshake(self):
        while b"\r\n\r\n" not in self.buf:
            d = self.sock.recv(4096)
            if not d:
                raise WSError("closed during handshake")
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise WSError("handshake refused: " +
                          head.split(b"\r\n")[0].decode(errors="replace"))
        return self

    def handshake(self):
        self.send_handshake()
        return self.read_handshake()

    def send_text(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            hdr = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
        self.sock.sendall(hdr + mask + masked)

    def _need(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise WSError("connection closed by server")
            self.buf += d

    def recv_text(self):
        """The next data message (control frames: pings answered, close
        raises)."""
        msg = b""
        while True:
            self._need(2)
            b0, b1 = self.buf[0], self.buf[1]
            op, ln, off = b0 & 0x0F, b1 & 0x7F, 2
            if ln == 126:
                self._need(4)
                ln, off = struct.unpack("!H", self.buf[2:4])[0], 4
            elif ln == 127:
                self._need(10)
                ln, off = struct.unpack("!Q", self.buf[2:10])[0], 10
            self._need(off + ln)
            payload, self.buf = self.buf[off:off + ln], self.buf[off + ln:]
            if op == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                raise WSError(f"server closed: {code} {payload[2:].decode(errors='replace')}")
            if op == 0x9:
                self._pong(payload)
                continue
            if op == 0xA:
                continue
            msg += payload
            if b0 & 0x80:
                return msg.decode()

    def _pong(self, payload):
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | len(payload)) + mask + masked)

    def call(self, text):
        self.send_text(text)
        return json.loads(self.recv_text())

    def close(self):
        try:
            self.sock.sendall(struct.pack("!BBH", 0x88, 0x82, 0) + b"\x03\xe8")
        except OSError:
            pass
        self.sock.close()


def log(*a):
    print("[actorclient]", *a, file=sys.stderr, flush=True)


def connect_on_worker(port, worker, tries=200):
    """A connection whose actor runs on `worker` (others are closed)."""
    extra = []
    try:
        for _ in range(tries):
            ws = WS(port).handshake()
            w = ws.call("whoami")["worker"]
            if worker is None or w == worker:
                return ws
            extra.append(ws)
        raise WSError(f"no connection landed on worker {worker} in {tries} tries")
    finally:
        for ws in extra:
            ws.close()


def run_cmd(mode, n, window, inflight):
    cmd = f"run {mode} {n}"
    if window:
        cmd += f" {window}"
        if inflight:
            cmd += f" {inflight}"
    return cmd


def wait_sinks(port, workers, timeout=10.0):
    """Until both sinks are registered, on min(workers, 2) distinct workers
    (services start shortly after the workers)."""
    deadline = time.monotonic() + timeout
    while True:
        ws = WS(port).handshake()
        r = ws.call("sinks")
        ws.close()
        if r["sink0"] >= 0 and r["sink1"] >= 0 and \
                len({r["sink0"], r["sink1"]}) == min(workers, 2):
            print(json.dumps(r))
            return
        if time.monotonic() > deadline:
            raise WSError(f"sinks not ready: {r}")
        time.sleep(0.05)


def cmd_whoami(a):
    ws = WS(a.port).handshake()
    print(json.dumps(ws.call("whoami")))
    ws.close()


def cmd_run(a):
    ws = connect_on_worker(a.port, a.on_worker)
    ws.sock.settimeout(a.timeout)
    r = ws.call(run_cmd(a.mode, a.n, a.window, a.inflight))
    ws.close()
    print(json.dumps(r), flush=True)
    return 0 if r.get("ok") else 1


def cmd_par(a):
    workers = [int(x) for x in a.on_workers.split(",")]
    modes = a.modes.split(",") if a.modes else [a.mode] * len(workers)
    if len(modes) != len(workers):
        raise ValueError("--modes needs one mode per worker in --on-workers")
    conns = [connect_on_worker(a.port, w) for w in workers]
    t0 = time.monotonic()
    for ws, mode in zip(conns, modes):
        ws.send_text(run_cmd(mode, a.n, a.window, a.inflight))
    replies, ends = [], []
    for ws in conns:
        ws.sock.settimeout(a.timeout)
        replies.append(json.loads(ws.recv_text()))
        ends.append(time.monotonic())
    for ws in conns:
        ws.close()
    ok = all(r.get("ok") for r in replies)
    for r in replies:
        r["concurrent"] = len(conns)
        print(json.dumps(r))
    total = sum(r.get("messages", 0) for r in replies if "error" not in r)
    # aggregate over the slowest run's own clock (first send .. last ack)
    secs = max((r.get("seconds", 0) for r in replies), default=0)
    print(json.dumps({"mode": ",".join(modes), "aggregate": True,
                      "connections": len(conns), "messages": total,
                      "seconds": secs,
                      "msgs_per_sec": round(total / secs) if secs else 0,
                      "wall_seconds": round(max(ends) - t0, 6), "ok": ok}),
          flush=True)
    return 0 if ok else 1


def split_of(counts, nworkers):
    per = [counts.get(w, 0) for w in range(nworkers)]
    mean = sum(per) / nworkers if nworkers else 0
    return per, (max(per) / mean if mean else 0.0)


def cmd_balance(a):
    nw = a.workers
    # 1. sequential: one connection at a time (connect, handshake, whoami),
    #    all held open until the end.
    held, counts = [], {}
    t0 = time.monotonic()
    for i in range(a.conns):
        ws = WS(a.port).handshake()
        w = ws.call("whoami")["worker"]
        counts[w] = counts.get(w, 0) + 1
        held.append(ws)
    dt = time.monotonic() - t0
    per, bal = split_of(counts, nw)
    print(json.dumps({"type": "balance", "accept": a.label, "test": "sequential",
                      "connections": a.conns, "per_worker": per,
                      "split": "/".join(map(str, per)),
                      "max_over_mean": round(bal, 3),
                      "open_seconds": round(dt, 3)}), flush=True)
    for ws in held:
        ws.close()
    held = []
    time.sleep(0.5)

    # 2. bursts: `burst` TCP connects back to back (the kernel completes them
    #    before any worker accepts), then the handshakes, pipelined, then
    #    whoami on each.  Closed between rounds.
    total, rounds = {}, []
    for r in range(a.rounds):
        socks = []
        t0 = time.monotonic()
        for i in range(a.burst):
            socks.append(socket.create_connection(("127.0.0.1", a.port), timeout=10))
        t_conn = time.monotonic() - t0
        wss = [WS(a.port, sock=s) for s in socks]
        for ws in wss:
            ws.send_handshake()
        for ws in wss:
            ws.read_handshake()
        for ws in wss:
            ws.send_text("whoami")
        counts = {}
        for ws in wss:
            w = json.loads(ws.recv_text())["worker"]
            counts[w] = counts.get(w, 0) + 1
            total[w] = total.get(w, 0) + 1
        per, bal = split_of(counts, nw)
        rounds.append(per)
        print(json.dumps({"type": "balance_round", "accept": a.label,
                          "test": "burst", "round": r + 1,
                          "connections": a.burst, "per_worker": per,
                          "split": "/".join(map(str, per)),
                          "max_over_mean": round(bal, 3),
                          "connect_seconds": round(t_conn, 4)}), flush=True)
        for ws in wss:
            ws.close()
        time.sleep(0.3)
    per, bal = split_of(total, nw)
    per_round = [split_of({i: v for i, v in enumerate(p)}, nw)[1] for p in rounds]
    worst = max(per_round)
    print(json.dumps({"type": "balance", "accept": a.label, "test": "burst",
                      "connections": a.burst * a.rounds, "rounds": a.rounds,
                      "per_worker": per, "split": "/".join(map(str, per)),
                      "max_over_mean": round(bal, 3),
                      "worst_round_max_over_mean": round(worst, 3),
                      "mean_round_max_over_mean": round(sum(per_round) / len(per_round), 3),
                      "rounds_split": ["/".join(map(str, p)) for p in rounds]}),
          flush=True)
    return 0


def cmd_median(a):
    recs = [json.loads(l) for l in open(a.file) if l.strip()]
    groups = {}
    for r in recs:
        if r.get("type") != "actors":
            continue
        key = r["case"]
        groups.setdefault(key, []).append(r)
    print(f"{'case':<52} {'rounds':>6} {'median msg/s':>14} {'min':>12} "
          f"{'max':>12}  {'target':>8}  verdict  lost")
    for key, rs in groups.items():
        rates = [r["msgs_per_sec"] for r in rs if r.get("msgs_per_sec")]
        bad = [r for r in rs if not r.get("ok")]
        target = rs[0].get("target")
        med = statistics.median(rates) if rates else 0
        verdict = ("-" if not target else
                   ("MET" if med >= target else "MISSED"))
        if "aggregate" in rs[0]:
            key = key + " [aggregate]"
        lost = "NONE"
        if bad:
            b = bad[0]
            why = b.get("error") or ("lost or reordered" if not b.get("aggregate")
                                     else "a run failed")
            lost = (f"{len(bad)} bad run(s), e.g. {why}" +
                    (f": sent {b['sent']}, sink got {b['sink_count']} by the last ack,"
                     f" seq_errors {b.get('seq_errors', '?')}" if "sent" in b else ""))
        if not target:
            verdict = "check"
        print(f"{key:<52} {len(rs):>6} {med:>14,.0f} "
              f"{min(rates, default=0):>12,.0f} {max(rates, default=0):>12,.0f}"
              f"  {(f'{target/1e6:g}M' if target else '-'):>8}  {verdict:<7}  {lost}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("whoami")
    s.add_argument("port", type=int)
    for name in ("run", "par"):
        s = sub.add_parser(name)
        s.add_argument("port", type=int)
        s.add_argument("mode", choices=("same", "cross"))
        s.add_argument("n", type=int)
        if name == "run":
            s.add_argument("--on-worker", type=int)
        else:
            s.add_argument("--on-workers", default="0,1")
            s.add_argument("--modes", help="one mode per connection, e.g. "
                           "same,cross (default: MODE for all)")
        s.add_argument("--window", type=int)
        s.add_argument("--inflight", type=int)
        s.add_argument("--timeout", type=float, default=120.0)
    s = sub.add_parser("wait")
    s.add_argument("port", type=int)
    s.add_argument("--workers", type=int, default=1)
    s = sub.add_parser("balance")
    s.add_argument("port", type=int)
    s.add_argument("--label", default="?")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--conns", type=int, default=2000)
    s.add_argument("--burst", type=int, default=200)
    s.add_argument("--rounds", type=int, default=10)
    s = sub.add_parser("median")
    s.add_argument("file")
    a = p.parse_args()
    try:
        if a.cmd == "wait":
            wait_sinks(a.port, a.workers)
            return 0
        return {"whoami": cmd_whoami, "run": cmd_run, "par": cmd_par,
                "balance": cmd_balance, "median": cmd_median}[a.cmd](a) or 0
    except (OSError, WSError, ValueError) as e:
        log(f"{a.cmd}: {type(e).__name__}: {e}")
        print(json.dumps({"error": f"client: {type(e).__name__}: {e}"}), flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
