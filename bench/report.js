'use strict';
// report.js RESULTS.jsonl - print the benchmark table and snowd/peer ratios,
// and append the ratio records to the same file.  Used by bench/run.sh.
const fs = require('fs');

const file = process.argv[2];
if (!file) {
  console.error('usage: node report.js RESULTS.jsonl');
  process.exit(2);
}
const raw = fs.readFileSync(file, 'utf8');
const recs = raw.split('\n').filter((l) => l.trim())
  .map((l) => { try { return JSON.parse(l); } catch (e) { return null; } })
  .filter((r) => r && (r.type === 'echo' || r.type === 'idle'));

const servers = [...new Set(recs.map((r) => r.server))];
const scenarios = [...new Set(recs.filter((r) => r.type === 'echo').map((r) => r.scenario))];
// With several rounds, each figure is the median over the rounds.
const median = (xs) => {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const get = (srv, scen) => {
  const rs = recs.filter((r) => r.server === srv && r.scenario === scen && r.type === 'echo');
  if (rs.length <= 1) return rs[0];
  const out = { ...rs[0], rounds: rs.length };
  for (const k of Object.keys(rs[0])) {
    if (typeof rs[0][k] === 'number' && k !== 'round') out[k] = median(rs.map((r) => r[k]));
  }
  return out;
};
const rounds = Math.max(1, ...recs.map((r) => r.round || 1));
const idle = (srv) => recs.find((r) => r.server === srv && r.type === 'idle');

const fmt = (v, d = 1) => (v === undefined || v === null || Number.isNaN(v) ? '-' : Number(v).toFixed(d));
const pad = (s, n) => String(s).padStart(n);
const padr = (s, n) => String(s).padEnd(n);

const cols = [
  ['server', 7, 'l'], ['scenario', 18, 'l'], ['rt/s', 10], ['p50 us', 9], ['p99 us', 9],
  ['p999 us', 9], ['srv cpu us/rt', 14], ['user us/rt', 11], ['client cpu%', 12], ['errors', 7], ['bytes/idle conn', 16],
];
const line = (vals) => vals.map((v, i) => (cols[i][2] === 'l' ? padr(v, cols[i][1]) : pad(v, cols[i][1]))).join(' ');

console.log('');
console.log(line(cols.map((c) => c[0])));
console.log('-'.repeat(cols.reduce((a, c) => a + c[1] + 1, 0)));
for (const srv of servers) {
  for (const scen of scenarios) {
    const r = get(srv, scen);
    if (!r) continue;
    const ccpu = r.client_cpu_s !== undefined ? (100 * r.client_cpu_s) / r.duration_s : undefined;
    console.log(line([srv, scen, fmt(r.rtt_per_s, 0), fmt(r.p50_us), fmt(r.p99_us), fmt(r.p999_us),
      fmt(r.server_cpu_us_per_rt, 2), fmt(r.server_user_us_per_rt, 2), fmt(ccpu, 0), r.errors, '']));
  }
  const i = idle(srv);
  if (i) {
    console.log(line([srv, i.scenario, '', '', '', '', '', '', '', i.errors,
      i.bytes_per_conn !== undefined ? fmt(i.bytes_per_conn, 0) : '-']));
  }
}

const ratios = [];
if (servers.includes('snowd')) {
  console.log('');
  console.log('snowd / peer ratios (< 1 means snowd is better: less CPU, lower latency, less memory)');
  for (const peer of servers.filter((s) => s !== 'snowd')) {
    for (const scen of scenarios) {
      const a = get('snowd', scen);
      const b = get(peer, scen);
      if (!a || !b) continue;
      const rr = {
        type: 'ratio', server: 'snowd', peer, scenario: scen,
        cpu_per_rt: a.server_cpu_us_per_rt / b.server_cpu_us_per_rt,
        user_per_rt: a.server_user_us_per_rt / b.server_user_us_per_rt,
        p50: a.p50_us / b.p50_us,
        p99: a.p99_us / b.p99_us,
        p999: a.p999_us / b.p999_us,
        rtt_per_s: a.rtt_per_s / b.rtt_per_s,
      };
      ratios.push(rr);
      console.log(`  vs ${padr(peer, 5)} ${padr(scen, 18)} cpu/rt ${fmt(rr.cpu_per_rt, 3)}  ` +
        `user/rt ${fmt(rr.user_per_rt, 3)}  p50 ${fmt(rr.p50, 3)}  p99 ${fmt(rr.p99, 3)}  p999 ${fmt(rr.p999, 3)}  rt/s ${fmt(rr.rtt_per_s, 3)}`);
    }
    const a = idle('snowd');
    const b = idle(peer);
    if (a && b && a.bytes_per_conn !== undefined && b.bytes_per_conn) {
      const rr = { type: 'ratio', server: 'snowd', peer, scenario: a.scenario,
        idle_bytes_per_conn: a.bytes_per_conn / b.bytes_per_conn };
      ratios.push(rr);
      console.log(`  vs ${padr(peer, 5)} ${padr(a.scenario, 18)} idle bytes/conn ${fmt(rr.idle_bytes_per_conn, 3)}`);
    }
  }
} else {
  console.log('');
  console.log('(snowd not measured: no ratios)');
}
console.log('');
console.log('rt/s: echo round trips per second; srv cpu us/rt: server CPU time (user+sys) per round trip;');
console.log('user us/rt: the user-space part of it (the rest is the kernel\'s TCP path, the same for every server)');
console.log('over the measured interval; client cpu% near 100 means the load generator was saturated.');
if (rounds > 1) console.log(`Echo figures are medians of ${rounds} rounds (servers took turns in each round).`);

if (ratios.length && !raw.includes('"type":"ratio"')) {
  fs.appendFileSync(file, ratios.map((r) => JSON.stringify(r)).join('\n') + '\n');
}
