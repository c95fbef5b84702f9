'use strict';
// ws_bcast.js - broadcast server on Debian's `ws` module, a peer for
// bench/bcast.sh.   Usage: node ws_bcast.js PORT [plain|prepared]
//
// Listens on 127.0.0.1:PORT, any path.  The bcast.sh protocol:
//   - a binary message is sent, unchanged, to every OTHER open client;
//   - text "count" is answered with the number of connected clients;
//   - text "stats" is answered with this server's counters (JSON text).
//
// plain (the default) is the broadcast the ws documentation shows:
//   wss.clients.forEach(c => { if (c !== ws && c.readyState === OPEN) c.send(data, { binary }) })
// prepared builds the frame once per message with WebSocket.Sender.frame()
// (a public static), joins header and payload into one Buffer and hands
// those same bytes to each client through client._sender.sendFrame(), an
// internal method of ws 8: ws has no public "prepared message" API.  It
// saves the per-client framing (and the cork/uncork of a two-part write),
// not the per-client socket write.  perMessageDeflate is off in both.

let WebSocket;
try {
  WebSocket = require('ws');
} catch (e) {
  WebSocket = require('/usr/share/nodejs/ws');
}

const port = parseInt(process.argv[2], 10);
const mode = process.argv[3] || 'plain';
if (!(port > 0 && port < 65536) || (mode !== 'plain' && mode !== 'prepared')) {
  console.error('usage: node ws_bcast.js PORT [plain|prepared]');
  process.exit(2);
}

const wss = new WebSocket.Server({
  host: '127.0.0.1',
  port,
  backlog: 4096,
  perMessageDeflate: false,
  clientTracking: true,
  maxPayload: 1024 * 1024,
});

const OPEN = WebSocket.OPEN;
let published = 0;
let deliveries = 0;
let skipped = 0;

function broadcastPlain(from, data) {
  for (const c of wss.clients) {
    if (c === from) continue;
    if (c.readyState !== OPEN) { skipped++; continue; }
    c.send(data, { binary: true });
    deliveries++;
  }
}

function broadcastPrepared(from, data) {
  // header and payload joined, so that each client costs one socket write
  const frame = [Buffer.concat(WebSocket.Sender.frame(data, {
    fin: true, rsv1: false, opcode: 2, mask: false, readOnly: false,
  }))];
  for (const c of wss.clients) {
    if (c === from) continue;
    if (c.readyState !== OPEN) { skipped++; continue; }
    c._sender.sendFrame(frame);
    deliveries++;
  }
}

const broadcast = mode === 'prepared' ? broadcastPrepared : broadcastPlain;

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      published++;
      broadcast(ws, data);
      return;
    }
    const cmd = data.toString();
    if (cmd === 'count') {
      ws.send(String(wss.clients.size));
    } else if (cmd === 'stats') {
      ws.send(JSON.stringify({ server: 'node-ws', mode, published, deliveries, skipped,
                               clients: wss.clients.size }));
    }
  });
  ws.on('error', () => {});
});

wss.on('listening', () => {
  console.error(`ws_bcast: listening on 127.0.0.1:${port} (${mode})`);
});
wss.on('error', (err) => {
  console.error(`ws_bcast: ${err.message}`);
  process.exit(1);
});

const stop = () => process.exit(0);
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
