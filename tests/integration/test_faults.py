"""Faults that must stay contained to their connection: a close begun in
on_open, and a client that vanishes while its replies are being written
from inside a handler."""
import socket
import time

from conftest import RawClient, build_frame as frame

ROUTES = {
    "/echo": {"handler": "echo"},
    "/twice": {"handler": "twice"},
    "/closeopen": {"handler": "closeopen"},
}


def echo_works(d, timeout=5.0):
    with RawClient(d.port, timeout=timeout) as c:
        c.handshake("/echo")
        c.send_text("still here")
        return c.recv_text() == "still here"


def test_close_begun_in_on_open_times_out_without_spinning(snowd_factory):
    d = snowd_factory(limits={"ping_interval": "1s", "idle_timeout": "2s",
                              "close_timeout": "1s"}, routes=ROUTES)
    with RawClient(d.port) as c:
        c.handshake("/closeopen")
        f = c.recv_frame()
        assert f.opcode == 0x8 and f.close_code == 4001, f.payload
        assert f.payload[2:] == b"bye"
        # Say nothing: close_timeout must end it, with no ping after our
        # close frame.
        assert c.wait_eof(timeout=5), "close_timeout did not close it"
        assert b"\x89" not in c.buf[:1], c.buf
    assert echo_works(d)
    # The sweep runs in the worker: count the master and its workers.
    workers = d.worker_pids()
    cpu = d.cpu_ticks()
    time.sleep(3)   # past idle_timeout: the sweep must not loop
    assert echo_works(d, timeout=3)
    assert d.log().count("idle timeout") < 5, d.log()[-2000:]
    assert d.worker_pids() == workers, "a worker was replaced"
    # A spinning sweep would burn the whole 3 s (300 ticks).
    assert d.cpu_ticks() - cpu < 150


def test_reset_while_handler_sends_is_contained(snowd_factory):
    """Large echoes (direct writes) to a client that has reset: the failed
    write must not kill the connection inside on_message."""
    d = snowd_factory(limits={"max_backpressure": "1K"}, routes=ROUTES)
    pair = (frame(0x2, b"s" * 2000, mask=True) +
            frame(0x2, b"B" * 9000, mask=True))
    for path in ("/echo", "/twice"):
        for _ in range(8):
            c = RawClient(d.port)
            c.handshake(path)
            c.sock.setblocking(False)
            data, sent, t0 = pair * 300, 0, time.time()
            while sent < len(data) and time.time() - t0 < 1.5:
                try:
                    sent += c.sock.send(data[sent:sent + 65536])
                except BlockingIOError:
                    time.sleep(0.01)
                except OSError:
                    break
            time.sleep(0.1)
            c.sock.setblocking(True)
            c.reset()
            time.sleep(0.1)
            assert d.proc.poll() is None, "snowd died"
    assert echo_works(d)
    assert "NESTED on_close" not in d.log()
    # Every connection was accounted for: a graceful stop has none left.
    d.proc.send_signal(15)
    d.proc.wait(timeout=15)
    assert d.proc.returncode == 0
    assert "did not finish closing" not in d.log()
