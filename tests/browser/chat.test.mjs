// End-to-end test of the chat demo in a real browser.
//
// Starts snowd on a free loopback port with two workers, the chat plugin
// at /chat and the demo page (www/chat) as a static route at /, then
// drives Debian's Chromium through playwright-core: two pages take two
// nicknames, join one room, each says something, and each must show the
// other's message and a member count of 2.  A third page asks for a
// nickname already taken and must be told so.  Closing one page must
// show the other a leave notice and a count of 1.
//
//   node chat.test.mjs        (tests/browser/run.sh installs and runs it)
//
// Environment: top_srcdir, top_builddir (default: the repository), SNOWD
// (the binary), SNOWD_CHAT_PLUGIN (chat.so), CHROMIUM (/usr/bin/chromium),
// SNOWD_BROWSER_KEEP=1 keeps the scratch folder (config, log, and
// screenshots of the pages still open at the end).  Every wait is bounded; on failure the page consoles, a
// screenshot of each page and the end of the snowd log are printed, and
// the exit status is 1.

import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SRC = path.resolve(process.env.top_srcdir || path.join(HERE, "../.."));
const BUILD = path.resolve(process.env.top_builddir || SRC);
const SNOWD = process.env.SNOWD || path.join(BUILD, "snowd");
const CHAT_SO = process.env.SNOWD_CHAT_PLUGIN ||
  path.join(BUILD, "plugins/.libs/chat.so");
const WWW = path.join(SRC, "www/chat");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

const STEP_MS = 10_000;       // one wait in a page
const START_MS = 15_000;      // snowd start, browser launch
const OVERALL_MS = 120_000;   // the whole test

const logs = [];              // "page: line", from every page
const pages = new Map();      // name -> page, for screenshots on failure
let daemon = null;
let browser = null;
let scratch = null;

function note(msg) {
  process.stdout.write(`browser: ${msg}\n`);
}

function must(cond, msg) {
  if (!cond) throw new Error(msg);
}

// ---- snowd --------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.setTimeout(500);
    s.on("connect", () => { s.destroy(); resolve(true); });
    s.on("error", () => resolve(false));
    s.on("timeout", () => { s.destroy(); resolve(false); });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function snowdLog() {
  try {
    return fs.readFileSync(path.join(scratch, "snowd.log"), "utf8");
  } catch {
    return "";
  }
}

async function startSnowd() {
  for (const f of [SNOWD, CHAT_SO])
    must(fs.existsSync(f), `${f} not found: build first (make)`);
  must(fs.existsSync(path.join(WWW, "index.html")), `no page in ${WWW}`);
  const plugins = path.join(scratch, "plugins");
  fs.mkdirSync(plugins);
  fs.symlinkSync(CHAT_SO, path.join(plugins, "chat.so"));

  // A port found free may be taken before snowd binds it: try again.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const conf = path.join(scratch, "snowd.ini");
    fs.writeFileSync(conf, [
      "[server]",
      `listen = 127.0.0.1:${port}`,
      `plugin_dir = ${plugins}`,
      "workers = 2",
      "log_level = debug",
      "",
      "[limits]",
      "ping_interval = 0",
      "idle_timeout = 0",
      "close_timeout = 2s",
      "",
      "[route /chat]",
      "handler = chat",
      "",
      "[route /]",
      `static = ${WWW}`,
      "",
    ].join("\n"));
    const log = fs.openSync(path.join(scratch, "snowd.log"), "w");
    const proc = spawn(SNOWD, ["-c", conf],
                       { stdio: ["ignore", log, log] });
    fs.closeSync(log);
    let exited = null;
    proc.on("exit", (code, sig) => { exited = sig || code; });
    const deadline = Date.now() + START_MS;
    while (Date.now() < deadline && exited === null) {
      const ready = (snowdLog().match(/worker \d+ \(pid \d+\) ready/g) ||
                     []).length;
      if (ready >= 2 && await canConnect(port)) {
        daemon = proc;
        return port;
      }
      await sleep(50);
    }
    if (exited === null) {
      proc.kill("SIGKILL");
      throw new Error(`snowd not ready within ${START_MS} ms`);
    }
    if (!/bind|in use/i.test(snowdLog()) || attempt === 3)
      throw new Error(`snowd exited (${exited}) at start`);
    note(`port ${port} was taken; trying another`);
  }
  throw new Error("unreachable");
}

async function stopSnowd() {
  if (!daemon || daemon.exitCode !== null || daemon.signalCode !== null)
    return;
  const done = new Promise((r) => daemon.once("exit", r));
  daemon.kill("SIGTERM");
  const t = setTimeout(() => daemon.kill("SIGKILL"), 10_000);
  await done;
  clearTimeout(t);
}

// ---- the page over plain HTTP ----------------------------------------------

async function checkStatic(base) {
  const want = {
    "/": "text/html",
    "/app.js": "javascript",
    "/style.css": "text/css",
  };
  for (const [p, type] of Object.entries(want)) {
    const r = await fetch(base + p, { signal: AbortSignal.timeout(STEP_MS) });
    const ct = r.headers.get("content-type") || "";
    must(r.status === 200, `GET ${p}: ${r.status}`);
    must(ct.includes(type), `GET ${p}: Content-Type ${ct}, want ${type}`);
    await r.arrayBuffer();
  }
  // fetch normalizes "..", so ask with a raw socket, as an attacker would.
  const head = await rawGet(base, "/../../../../etc/passwd");
  must(/^HTTP\/1\.1 404 /.test(head), `path traversal answered: ${head}`);
  const enc = await rawGet(base, "/%2e%2e/%2e%2e/etc/passwd");
  must(/^HTTP\/1\.1 404 /.test(enc), `encoded traversal answered: ${enc}`);
}

function rawGet(base, target) {
  const { port } = new URL(base);
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port: Number(port) });
    let data = "";
    s.setTimeout(STEP_MS, () => { s.destroy(); reject(new Error("timeout")); });
    s.on("connect", () => s.write(`GET ${target} HTTP/1.1\r\n` +
                                  `Host: 127.0.0.1:${port}\r\n\r\n`));
    s.on("data", (d) => { data += d; });
    s.on("end", () => resolve(data.split("\r\n")[0]));
    s.on("error", reject);
  });
}

// ---- the browser -------------------------------------------------------------

async function openPage(name, base) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.setDefaultNavigationTimeout(STEP_MS);
  page.on("console", (m) => logs.push(`${name}: [${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`${name}: [pageerror] ${e.message}`));
  page.on("requestfailed", (r) =>
    logs.push(`${name}: [requestfailed] ${r.url()} ${r.failure()?.errorText}`));
  pages.set(name, page);
  await page.goto(base + "/");
  await page.locator('#conn[data-state="open"]').waitFor();
  return page;
}

async function enter(page, nick, room) {
  await page.fill("#nick", nick);
  await page.fill("#room", room);
  await page.click("#join-btn");
}

async function joined(page, nick, room) {
  await page.locator("#chat").waitFor({ state: "visible" });
  must(await page.textContent("#me") === nick, `${nick}: wrong nick shown`);
  must(await page.textContent("#room-name") === room,
       `${nick}: wrong room shown`);
}

async function members(page, n, who) {
  try {
    await page.locator(`#members[data-count="${n}"]`).waitFor();
  } catch (e) {
    const shown = await page.textContent("#members").catch(() => "?");
    throw new Error(`${who} shows "${shown}", not ${n} members`);
  }
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.click("#send-btn");
}

async function sees(page, from, text, who) {
  const line = page.locator(`#log li.msg[data-from="${from}"]`,
                            { hasText: text });
  try {
    await line.first().waitFor();
  } catch (e) {
    const log = await page.textContent("#log").catch(() => "?");
    throw new Error(`${who} never showed ${from}'s "${text}"; log: ${log}`);
  }
  const n = await line.count();
  must(n === 1, `${who} shows ${from}'s "${text}" ${n} times`);
}

async function scenario(port) {
  const base = `http://127.0.0.1:${port}`;
  await checkStatic(base);
  note("static route: page, content types and traversal ok");

  const args = [
    "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-dev-shm-usage",
  ];
  if (process.getuid && process.getuid() === 0)
    args.push("--no-sandbox");      // Chromium refuses its sandbox as root
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, args, timeout: START_MS,
  });
  note(`launched ${CHROMIUM} ${browser.version()}`);

  const ann = await openPage("ann", base);
  const bob = await openPage("bob", base);
  await enter(ann, "ann", "lobby");
  await joined(ann, "ann", "lobby");
  await enter(bob, "bob", "lobby");
  await joined(bob, "bob", "lobby");
  await members(ann, 2, "ann");
  await members(bob, 2, "bob");
  await ann.locator('#log li.presence[data-nick="bob"][data-joined="true"]')
    .waitFor();
  note("two pages joined lobby; both show 2 members");

  await say(ann, "hello from ann <b>not bold</b>");
  await say(bob, "hi ann, bob here \u00e9\u20ac\u{1F600}");
  await sees(bob, "ann", "hello from ann <b>not bold</b>", "bob");
  await sees(ann, "bob", "hi ann, bob here \u00e9\u20ac\u{1F600}", "ann");
  await sees(ann, "ann", "hello from ann", "ann");    // own echo, once
  must(await bob.locator("#log b").count() === 0,
       "a message was rendered as HTML");
  note("each page shows the other's message, once");

  // A nickname in use is refused, and the page says so.
  const eve = await openPage("eve", base);
  await enter(eve, "ann", "lobby");
  await eve.locator("#login-error", { hasText: "nick taken" }).waitFor();
  must(await eve.locator("#chat").isHidden(), "eve got in as ann");
  note("a taken nickname is refused");

  await bob.context().close();
  pages.delete("bob");
  await ann.locator('#log li.presence[data-nick="bob"][data-joined="false"]')
    .waitFor();
  await members(ann, 1, "ann");
  note("closing bob's page: ann sees bob leave and 1 member");
}

async function screenshots() {
  for (const [name, page] of pages) {
    const file = path.join(scratch, `${name}.png`);
    try {
      await page.screenshot({ path: file, timeout: 5000 });
      note(`screenshot of ${name}: ${file}`);
    } catch {
      /* the page may be gone */
    }
  }
}

async function main() {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "snowd-browser-"));
  const watchdog = setTimeout(() => {
    process.stdout.write(`browser: FAIL: the test took over ${OVERALL_MS} ms\n`);
    if (daemon) daemon.kill("SIGKILL");
    process.stdout.write(snowdLog().slice(-4000));
    process.exit(1);
  }, OVERALL_MS);
  let failure = null;
  try {
    const port = await startSnowd();
    note(`snowd serving on 127.0.0.1:${port} (2 workers)`);
    await scenario(port);
  } catch (e) {
    failure = e;
  }
  const keep = process.env.SNOWD_BROWSER_KEEP === "1";
  if ((failure || keep) && browser)
    await screenshots();
  if (browser)
    await browser.close().catch(() => {});
  await stopSnowd();
  clearTimeout(watchdog);

  const log = snowdLog();
  const bad = log.match(/.*(AddressSanitizer|runtime error:|killed by signal|exited with status [1-9]).*/);
  if (!failure && bad)
    failure = new Error(`snowd logged: ${bad[0]}`);
  if (failure) {
    process.stdout.write(`browser: FAIL: ${failure.stack || failure}\n`);
    process.stdout.write("---- page consoles ----\n" + logs.join("\n") + "\n");
    process.stdout.write("---- snowd log (end) ----\n" + log.slice(-6000) + "\n");
    process.stdout.write(`browser: scratch folder kept: ${scratch}\n`);
    process.stdout.write("browser: 0 passed, 1 failed\n");
    process.exit(1);
  }
  if (keep)
    note(`scratch folder kept: ${scratch}`);
  else
    fs.rmSync(scratch, { recursive: true, force: true });
  process.stdout.write("browser: 1 passed, 0 failed\n");
}

main();
