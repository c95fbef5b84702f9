'use strict';
// ws_echo.js - WebSocket echo server on Debian's `ws` module, a peer for
// bench/run.sh.   Usage: node ws_echo.js PORT
// Listens on 127.0.0.1:PORT, any path; echoes text as text, binary as binary.

let WebSocket;
try {
  WebSocket = require('ws');
} catch (e) {
  WebSocket = require('/usr/share/nodejs/ws');
}

const port = parseInt(process.argv[2], 10);
if (!(port > 0 && port < 65536)) {
  console.error('usage: node ws_echo.js PORT');
  process.exit(2);
}

const wss = new WebSocket.Server({
  host: '127.0.0.1',
  port,
  backlog: 4096,
  perMessageDeflate: false,
  clientTracking: false,
  maxPayload: 64 * 1024 * 1024,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
  ws.on('error', () => {});
});

wss.on('listening', () => {
  console.error(`ws_echo: listening on 127.0.0.1:${port}`);
});
wss.on('error', (err) => {
  console.error(`ws_echo: ${err.message}`);
  process.exit(1);
});

const stop = () => process.exit(0);
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
