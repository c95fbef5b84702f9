"""The chat example plugin (plugins/chat.c) against the real daemon.

The protocol: one JSON object per text frame, "op" from the client and
"ev" from the server (see the plugin's header comment or README.md).
Nicknames are registered names, rooms are snowd rooms, and a "say" is one
snow_publish: these tests check what a client sees of that, on one
worker and across two.
"""
import json
import time

import pytest

from conftest import OP_BINARY, serving_pid, wait_until

ROUTES = {"/chat": {"handler": "chat"}}
TWO = {"workers": "2"}
WAIT = 5.0


class Chat:
    """One chat connection.  Events that a wait does not ask for are kept,
    in order, for later waits (presence notices come whenever others
    move)."""

    def __init__(self, daemon, nick=None):
        self.raw = daemon.client("/chat")
        self.backlog = []
        welcome = self.next()
        assert welcome["ev"] == "welcome", welcome
        self.welcome = welcome
        self.nick = None
        if nick:
            self.take(nick)

    def send(self, obj):
        self.raw.send_text(obj if isinstance(obj, str) else json.dumps(obj))

    def next(self, timeout=WAIT):
        return json.loads(self.raw.recv_text(timeout))

    def wait(self, timeout=WAIT, **want):
        """The first event (kept or new) with every field in `want`."""
        def fits(e):
            return all(e.get(k) == v for k, v in want.items())
        for i, e in enumerate(self.backlog):
            if fits(e):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no event like {want} within "
                                     f"{timeout}s; kept {self.backlog}")
            try:
                e = self.next(left)
            except TimeoutError:
                continue
            if fits(e):
                return e
            self.backlog.append(e)

    def request(self, obj, **want):
        """Sends a request and returns its answer: an event with `want`
        fields, or an error event for the same op."""
        self.send(obj)
        op = obj.get("op") if isinstance(obj, dict) else None
        deadline = time.monotonic() + WAIT
        while True:
            for i, e in enumerate(self.backlog):
                if e.get("ev") == "error" or all(e.get(k) == v
                                                 for k, v in want.items()):
                    return self.backlog.pop(i)
            left = deadline - time.monotonic()
            assert left > 0, f"no answer to {obj}; kept {self.backlog}"
            e = self.next(left)
            if e.get("ev") == "error" and op is not None:
                assert e.get("op") in (op, None), e
            self.backlog.append(e)

    def error(self, obj):
        """Sends a request that must fail; returns the error text."""
        self.send(obj)
        e = self.wait(ev="error")
        return e["error"]

    def take(self, nick):
        e = self.request({"op": "nick", "nick": nick}, ev="nick")
        assert e == {"ev": "nick", "nick": nick}, e
        self.nick = nick

    def join(self, room="lobby"):
        e = self.request({"op": "join", "room": room}, ev="joined")
        assert e["ev"] == "joined" and e["room"] == room, e
        return e["members"]

    def members(self, room="lobby"):
        e = self.request({"op": "members", "room": room}, ev="members")
        assert e["room"] == room, e
        return e["members"]

    def wait_members(self, n, room="lobby", timeout=WAIT):
        """Polls the room's size until it is n: other workers' counts
        follow a moment later."""
        got = []
        ok = wait_until(lambda: got.append(self.members(room)) or
                        got[-1] == n, timeout, interval=0.02)
        assert ok, f"{room}: {got[-1]} members, expected {n}"

    def drain(self, seconds):
        """Every event that arrives within `seconds`, after the kept
        ones."""
        out, self.backlog = self.backlog, []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                out.append(self.next(left))
            except TimeoutError:
                return out

    def alive(self):
        """The connection still answers a request."""
        assert self.members("alive-check") == 0

    def close(self):
        self.raw.close()


def chats_on_workers(daemon, count, tries=64):
    """`count` connections spread over both workers (at least one each);
    extras are closed."""
    by_worker = {}
    made = []
    for _ in range(tries):
        c = Chat(daemon)
        pid = serving_pid(daemon, c.raw)
        assert pid, "could not tell which worker serves a connection"
        group = by_worker.setdefault(pid, [])
        if len(group) < count - 1:    # leave room for the other worker
            group.append(c)
            made.append(c)
        else:
            c.close()
        if len(by_worker) >= 2 and len(made) >= count:
            return made[:count]
    pytest.fail(f"{tries} connections reached only {len(by_worker)} "
                "worker(s)")


# ---- nicknames ---------------------------------------------------------------

def test_chat_welcome_names_the_limits(snowd_factory):
    d = snowd_factory(routes=ROUTES)
    c = Chat(d)
    assert c.welcome == {"ev": "welcome", "nick_max": 32, "room_max": 32,
                         "text_max": 2048, "rooms_max": 16}


def test_chat_nick_is_unique_across_workers_and_freed_on_close(
        snowd_factory):
    d = snowd_factory(routes=ROUTES, server=TWO)
    a, b = chats_on_workers(d, 2)
    assert serving_pid(d, a.raw) != serving_pid(d, b.raw)
    a.take("ann")
    e = b.request({"op": "nick", "nick": "ann"}, ev="nick")
    assert e == {"ev": "error", "op": "nick", "error": "nick taken"}
    b.alive()
    a.close()
    # The name is freed once the master hears that a has ended: a moment.
    last = []

    def retake():
        last.append(b.request({"op": "nick", "nick": "ann"}, ev="nick"))
        return last[-1]["ev"] == "nick"
    assert wait_until(retake, WAIT, interval=0.05), last[-1]
    b.nick = "ann"
    # And now b holds it.
    c = Chat(d)
    assert c.error({"op": "nick", "nick": "ann"}) == "nick taken"


def test_chat_nick_is_set_once(snowd_factory):
    d = snowd_factory(routes=ROUTES)
    c = Chat(d, nick="ann")
    assert c.error({"op": "nick", "nick": "bob"}) == "nick already set"
    assert c.error({"op": "nick", "nick": "ann"}) == "nick already set"
    # bob was not taken by the refused request.
    Chat(d, nick="bob")


@pytest.mark.parametrize("nick", [
    "", "x" * 33, "has space", 'quo"te', "back\\slash", "caf\u00e9",
    "tab\t", "semi;colon", "nul\u0001",
])
def test_chat_bad_nicks_are_refused(snowd_factory, nick):
    d = snowd_factory(routes=ROUTES)
    c = Chat(d)
    e = c.request({"op": "nick", "nick": nick}, ev="nick")
    assert e == {"ev": "error", "op": "nick", "error": "bad nick"}
    c.take("x" * 32)          # the longest good one, on the same connection


def test_chat_nick_needs_its_field(snowd_factory):
    d = snowd_factory(routes=ROUTES)
    c = Chat(d)
    assert c.error({"op": "nick"}) == "missing nick"
    assert c.error({"op": "nick", "name": "ann"}) == "missing nick"
    c.take("ann")


# ---- joining and leaving ---------------------------------------------------------

def test_chat_join_before_nick_is_refused(snowd_factory):
    d = snowd_factory(routes=ROUTES)
    c = Chat(d)
    e = c.request({"op": "join", "room": "lobby"}, ev="joined")
    assert e == {"ev": "error", "op": "join", "error": "set a nick first"}
    assert c.members() == 0       # the refused join did not count
    c.take("ann")
    assert c.join() == 1


def test_chat_room_errors(snowd_factory):
    d = snowd_factory(routes=ROUTES)
    c = Chat(d, nick="ann")
    assert c.error({"op": "join"}) == "missing room"
    assert c.error({"op": "join", "room": ""}) == "bad room"
    assert c.error({"op": "join", "room": "r" * 33}) == "bad room"
    assert c.error({"op": "join", "room": "a/b"}) == "bad room"
    assert c.error({"op": "leave", "room": "lobby"}) == "not in room"
    assert c.error({"op": "say", "room": "lobby", "text": "hi"}) == \
        "not in room"
    assert c.join("r" * 32) == 1
    assert c.error({"op": "join", "room": "r" * 32}) == "already in room"
    for i in range(15):
        assert c.join(f"room{i}") == 1
    assert c.error({"op": "join", "room": "one-more"}) == "too many rooms"
    e = c.request({"op": "leave", "room": "room3"}, ev="left")
    assert e == {"ev": "left", "room": "room3", "members": 0}
    assert c.join("one-more") == 1
    c.alive()


def test_chat_counts_and_presence_on_one_worker(snowd_factory):
    """On one worker every count is exact at once."""
    d = snowd_factory(routes=ROUTES)
    a, b, c = Chat(d, "ann"), Chat(d, "bob"), Chat(d, "cat")
    assert a.join() == 1
    assert b.join() == 2
    assert a.wait(ev="presence") == {"ev": "presence", "room": "lobby",
                                     "nick": "bob", "joined": True,
                                     "members": 2}
    assert c.join() == 3
    for x in (a, b):
        assert x.wait(ev="presence", nick="cat")["members"] == 3
    # Leaving: the leaver gets "left", the others a notice.
    e = b.request({"op": "leave", "room": "lobby"}, ev="left")
    assert e == {"ev": "left", "room": "lobby", "members": 2}
    for x in (a, c):
        assert x.wait(ev="presence", nick="bob", joined=False) == {
            "ev": "presence", "room": "lobby", "nick": "bob",
            "joined": False, "members": 2}
    # Closing: the same notice.
    c.raw.send_close(1000)
    c.raw.expect_close(1000)
    assert a.wait(ev="presence", nick="cat", joined=False) == {
        "ev": "presence", "room": "lobby", "nick": "cat", "joined": False,
        "members": 1}
    # Vanishing (a TCP reset): the same again.
    assert b.join() == 2
    a.wait(ev="presence", nick="bob", joined=True)
    b.raw.reset()
    e = a.wait(ev="presence", nick="bob", joined=False)
    assert e["members"] == 1
    assert a.members() == 1
    # Nobody got a notice about themselves.
    assert all(e.get("nick") != "ann" for e in a.drain(0.2))


def test_chat_counts_follow_join_leave_close_across_workers(snowd_factory):
    d = snowd_factory(routes=ROUTES, server=TWO)
    a, b, c = chats_on_workers(d, 3)
    for x, n in ((a, "ann"), (b, "bob"), (c, "cat")):
        x.take(n)
    a.join()
    b.join()
    c.join()
    for x in (a, b, c):
        x.wait_members(3)
    for x in (a, b):
        x.wait(ev="presence", nick="cat", joined=True)
    b.request({"op": "leave", "room": "lobby"}, ev="left")
    for x in (a, c):
        x.wait(ev="presence", nick="bob", joined=False)
        x.wait_members(2)
    c.close()
    a.wait(ev="presence", nick="cat", joined=False)
    a.wait_members(1)
    b.wait_members(1)


# ---- messages ----------------------------------------------------------------------

def test_chat_say_reaches_every_member_once_across_workers(snowd_factory):
    d = snowd_factory(routes=ROUTES, server=TWO)
    members = chats_on_workers(d, 4)
    nicks = ["ann", "bob", "cat", "dan"]
    for x, n in zip(members, nicks):
        x.take(n)
        x.join()
    for x in members:
        x.wait_members(4)
    outsider = Chat(d, nick="eve")        # not in the room: gets nothing
    per = 10
    for i in range(per):
        for x in members:
            x.send({"op": "say", "room": "lobby",
                    "text": f"{x.nick} {i}"})
    want = sorted(f"{n} {i}" for n in nicks for i in range(per))
    for x in members:
        got = []
        deadline = time.monotonic() + 10
        while len(got) < len(want) and time.monotonic() < deadline:
            got += [e for e in x.drain(0.1) if e["ev"] == "msg"]
        got += [e for e in x.drain(0.3) if e["ev"] == "msg"]
        texts = [e["text"] for e in got]
        assert sorted(texts) == want, \
            f"{x.nick} got {len(texts)} of {len(want)}: {texts}"
        for e in got:
            assert e["room"] == "lobby"
            assert e["from"] == e["text"].split()[0]
        # Each sender's messages arrive in the order sent.
        for n in nicks:
            mine = [int(t.split()[1]) for t in texts if t.startswith(n)]
            assert mine == list(range(per)), (x.nick, n, mine)
    assert [e for e in outsider.drain(0.3) if e["ev"] == "msg"] == []


def test_chat_text_round_trips_exactly(snowd_factory):
    d = snowd_factory(routes=ROUTES)
    a, b = Chat(d, "ann"), Chat(d, "bob")
    a.join("r")
    b.join("r")
    texts = [
        'quotes " and \\ backslashes \\" and </script>',
        "lines\nand\ttabs\r and \u0001\u001f\u007f controls",
        "caf\u00e9 \u20ac \U0001F600 \u2028 \ufeff",
        "x" * 2048,
        "\u00e9" * 1024,                  # 2048 bytes of UTF-8
    ]
    for t in texts:
        a.send({"op": "say", "room": "r", "text": t})
        for x in (a, b):
            e = x.wait(ev="msg")
            assert e == {"ev": "msg", "room": "r", "from": "ann", "text": t}
    # Escapes in the request decode to the same text.
    a.send('{"op":"say","room":"r","text":"\\u00e9\\ud83d\\ude00\\n\\/"}')
    assert b.wait(ev="msg")["text"] == "\u00e9\U0001F600\n/"


# ---- hostile input -----------------------------------------------------------------

@pytest.mark.parametrize("message, error", [
    ("hello", "bad json"),
    ("", "bad json"),
    ("[]", "bad json"),
    ('{"op":"say"', "bad json"),
    ('{"op":"say"} {}', "trailing bytes after the object"),
    ('{"op":1}', "values must be strings"),
    ('{"op":"say","room":{"a":"b"}}', "values must be strings"),
    ('{"op":"say","text":["a"]}', "values must be strings"),
    ('{"op":"a","op":"b"}', "duplicate key"),
    ('{"op":"say","text":"\\ud800"}', "lone surrogate"),
    ('{"op":"say","text":"\\u0000"}', "\\u0000 is not allowed"),
    ('{"op":"say","text":"\\q"}', "bad escape"),
    ('{"op":"say","text":"a\nb"}', "control character in string"),
    ('{"a":"1","b":"2","c":"3","d":"4","e":"5","f":"6","g":"7","h":"8",'
     '"i":"9"}', "too many fields"),
    ("{}", "missing op"),
    ('{"nick":"ann"}', "missing op"),
    ('{"op":"fly"}', "unknown op"),
    ('{"op":"NICK","nick":"ann"}', "unknown op"),
])
def test_chat_bad_requests_get_errors_and_the_connection_stays(
        snowd_factory, message, error):
    d = snowd_factory(routes=ROUTES)
    c = Chat(d, nick="ann")
    c.join()
    c.send(message)
    e = c.wait(ev="error")
    assert e == {"ev": "error", "error": error}, e
    c.alive()
    c.send({"op": "say", "room": "lobby", "text": "still here"})
    assert c.wait(ev="msg")["text"] == "still here"


def test_chat_say_checks_the_text(snowd_factory):
    d = snowd_factory(routes=ROUTES)
    c = Chat(d, nick="ann")
    c.join()
    assert c.error({"op": "say", "room": "lobby"}) == "missing text"
    assert c.error({"op": "say", "room": "lobby", "text": ""}) == \
        "empty text"
    assert c.error({"op": "say", "room": "lobby", "text": "x" * 2049}) == \
        "text too long"
    assert c.error({"op": "say", "room": "lobby",
                    "text": "\u00e9" * 1025}) == "text too long"
    assert c.error({"op": "say", "text": "hi"}) == "missing room"
    c.send({"op": "say", "room": "lobby", "text": "x" * 2048})
    assert len(c.wait(ev="msg")["text"]) == 2048


def test_chat_oversized_and_binary_messages_get_errors(snowd_factory):
    d = snowd_factory(routes=ROUTES)
    c = Chat(d, nick="ann")
    c.join()
    # Over the plugin's 8 KiB limit, yet a well-formed request.
    big = json.dumps({"op": "say", "room": "lobby", "text": "x" * 9000})
    c.send(big)
    assert c.wait(ev="error") == {"ev": "error",
                                  "error": "message too long"}
    # Escapes that decode small still count at their sent size.
    c.send(json.dumps({"op": "say", "room": "lobby", "text": "\n" * 4096}))
    assert c.wait(ev="error")["error"] == "message too long"
    c.raw.send_frame(OP_BINARY, b'{"op":"members","room":"lobby"}')
    assert c.wait(ev="error") == {"ev": "error", "error": "send text frames"}
    c.alive()
    assert c.members() == 1


def test_chat_unknown_fields_are_ignored(snowd_factory):
    d = snowd_factory(routes=ROUTES)
    c = Chat(d)
    c.send({"op": "nick", "nick": "ann", "colour": "blue"})
    assert c.wait(ev="nick")["nick"] == "ann"


def test_chat_joiner_gets_no_notice_of_itself(snowd_factory):
    d = snowd_factory(routes=ROUTES)
    a = Chat(d, "ann")
    assert a.join() == 1
    assert a.join("other") == 1
    a.request({"op": "leave", "room": "other"}, ev="left")
    assert [e for e in a.drain(0.3) if e["ev"] == "presence"] == []
