'use strict';
// wss_echo.js - WebSocket echo server over TLS (https + Debian's `ws`
// module), the TLS peer for bench/tls.sh.
//   Usage: node wss_echo.js PORT CERT.pem KEY.pem
// Listens on 127.0.0.1:PORT, any path; echoes text as text, binary as
// binary; TLS settings are Node's defaults (TLS 1.2 and 1.3).

const fs = require('fs');
const https = require('https');
let WebSocket;
try {
  WebSocket = require('ws');
} catch (e) {
  WebSocket = require('/usr/share/nodejs/ws');
}

const [portArg, certFile, keyFile] = process.argv.slice(2);
const port = parseInt(portArg, 10);
if (!(port > 0 && port < 65536) || !certFile || !keyFile) {
  console.error('usage: node wss_echo.js PORT CERT.pem KEY.pem');
  process.exit(2);
}

const server = https.createServer({
  cert: fs.readFileSync(certFile),
  key: fs.readFileSync(keyFile),
});
const wss = new WebSocket.Server({
  server,
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

server.on('tlsClientError', () => {});
server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  console.error(`wss_echo: listening on 127.0.0.1:${port}`);
});
server.on('error', (err) => {
  console.error(`wss_echo: ${err.message}`);
  process.exit(1);
});

const stop = () => process.exit(0);
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
