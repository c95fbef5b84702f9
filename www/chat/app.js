// The snowd chat demo: one WebSocket to /chat on the server that served
// this page, speaking the chat plugin's JSON protocol (see README.md).
// Plain browser JavaScript, no build step.  Everything a peer sent is
// shown with textContent, never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const ui = {
    conn: $("conn"), login: $("login"), nick: $("nick"), room: $("room"),
    loginError: $("login-error"), chat: $("chat"), roomName: $("room-name"),
    members: $("members"), me: $("me"), leave: $("leave-btn"), log: $("log"),
    say: $("say"), text: $("text"), status: $("status"),
  };

  const MAX_LOG = 500;          // lines kept on screen
  const state = {
    ws: null,
    nick: null,                 // the nickname the server gave us
    room: null,                 // the room we are in
    wantNick: null,             // asked for, not answered yet
    wantRoom: null,
    retry: 0,                   // reconnect attempts in a row
  };

  function url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + location.host + "/chat";
  }

  function setConn(kind, text) {
    ui.conn.dataset.state = kind;
    ui.conn.textContent = text;
  }

  function setStatus(text) {
    ui.status.textContent = text || "";
  }

  function send(obj) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
      setStatus("not connected");
      return false;
    }
    state.ws.send(JSON.stringify(obj));
    return true;
  }

  function setMembers(n) {
    ui.members.dataset.count = String(n);
    ui.members.textContent = n === 1 ? "1 member" : n + " members";
  }

  function addLine(kind, parts) {
    const li = document.createElement("li");
    li.className = kind;
    const time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString();
    li.appendChild(time);
    for (const [cls, text] of parts) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      li.appendChild(span);
    }
    const atBottom =
      ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
    ui.log.appendChild(li);
    while (ui.log.children.length > MAX_LOG)
      ui.log.removeChild(ui.log.firstChild);
    if (atBottom)
      ui.log.scrollTop = ui.log.scrollHeight;
    return li;
  }

  function showChat(on) {
    ui.login.hidden = on;
    ui.chat.hidden = !on;
    if (on)
      ui.text.focus();
  }

  // ---- server events -----------------------------------------------------

  const handlers = {
    welcome(m) {
      if (m.nick_max) ui.nick.maxLength = m.nick_max;
      if (m.room_max) ui.room.maxLength = m.room_max;
      if (m.text_max) ui.text.maxLength = m.text_max;
      // After a reconnect, take the nickname and the room back.
      if (state.wantNick) send({ op: "nick", nick: state.wantNick });
    },
    nick(m) {
      state.nick = m.nick;
      state.wantNick = null;
      ui.me.textContent = m.nick;
      ui.nick.disabled = true;   // one nickname per connection
      if (state.wantRoom) send({ op: "join", room: state.wantRoom });
    },
    joined(m) {
      state.room = m.room;
      state.wantRoom = null;
      ui.roomName.textContent = m.room;
      ui.log.textContent = "";
      setMembers(m.members);
      addLine("presence self", [["text", "You joined #" + m.room + "."]]);
      showChat(true);
      setStatus("");
    },
    left(m) {
      if (m.room !== state.room) return;
      state.room = null;
      showChat(false);
      setStatus("You left #" + m.room + ".");
    },
    msg(m) {
      if (m.room !== state.room) return;
      const li = addLine("msg", [["from", m.from], ["text", m.text]]);
      li.dataset.from = m.from;
      if (m.from === state.nick) li.classList.add("mine");
    },
    presence(m) {
      if (m.room !== state.room) return;
      setMembers(m.members);
      const li = addLine("presence", [
        ["nick", m.nick],
        ["text", m.joined ? " joined." : " left."],
      ]);
      li.dataset.nick = m.nick;
      li.dataset.joined = String(m.joined);
    },
    members(m) {
      if (m.room === state.room) setMembers(m.members);
    },
    error(m) {
      if (m.op === "nick" || (m.op === "join" && !state.room)) {
        state.wantNick = null;
        state.wantRoom = null;
        ui.loginError.textContent = m.error;
        showChat(false);
      } else {
        addLine("error", [["text", m.error]]);
      }
    },
  };

  // ---- the connection --------------------------------------------------------

  function connect() {
    setConn("connecting", "connecting…");
    const ws = new WebSocket(url());
    state.ws = ws;
    ws.onopen = () => {
      state.retry = 0;
      setConn("open", "connected");
    };
    ws.onmessage = (e) => {
      let m;
      try {
        m = JSON.parse(e.data);
      } catch (err) {
        console.warn("chat: not JSON:", e.data);
        return;
      }
      const h = m && handlers[m.ev];
      if (h) h(m);
      else console.warn("chat: unknown event", m);
    };
    ws.onclose = (e) => {
      if (state.ws !== ws) return;
      setConn("closed", "disconnected (" + e.code + ")");
      // Everything a connection had is gone with it: ask again on the
      // next one, after a growing pause (at most 10 s).
      if (state.nick) state.wantNick = state.nick;
      if (state.room) state.wantRoom = state.room;
      state.nick = null;
      state.room = null;
      ui.nick.disabled = false;
      const delay = Math.min(10000, 500 * 2 ** state.retry++);
      setStatus("Connection lost; trying again in " +
                Math.round(delay / 1000) + " s.");
      setTimeout(connect, delay);
    };
  }

  // ---- the forms --------------------------------------------------------------

  ui.login.addEventListener("submit", (e) => {
    e.preventDefault();
    ui.loginError.textContent = "";
    const room = ui.room.value.trim();
    state.wantRoom = room;
    if (state.nick) {
      send({ op: "join", room });
    } else {
      state.wantNick = ui.nick.value.trim();
      send({ op: "nick", nick: state.wantNick });
    }
  });

  ui.say.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = ui.text.value;
    if (!text || !state.room) return;
    if (send({ op: "say", room: state.room, text })) ui.text.value = "";
  });

  ui.leave.addEventListener("click", () => {
    if (state.room) send({ op: "leave", room: state.room });
  });

  connect();
})();
