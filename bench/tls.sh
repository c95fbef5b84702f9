#!/usr/bin/env bash
# bench/tls.sh - what TLS costs snowd, and how it compares with Node.
#
# Two measurements, each server freshly started (one worker, pinned to
# CPU 1; loadgen on CPU 0):
#   idle  memory per idle connection: loadgen -k opens TLS_IDLE_CONNS
#         connections, completes TLS and WebSocket handshakes and holds
#         them; bytes/conn = (VmRSS after - VmRSS before) / connections of
#         the worker (snowd) or the process (node).  snowd over wss with
#         release_buffers = on (the default) and off, snowd over plain ws
#         for reference, and Node's `ws` over https.
#   alloc what OpenSSL itself keeps allocated per idle connection, with
#         and without release_buffers, apart from the heap fragmentation
#         that RSS includes (tlsalloc.c: mallinfo2 over 1000 connections
#         made one after another).
#   echo  server CPU per echo round trip (loadgen -P, /proc/PID/stat over
#         the measured interval): snowd over wss (release_buffers on and
#         off), Node's `ws` over https, and snowd over plain ws for
#         reference; servers take turns within each of BENCH_ROUNDS
#         rounds and the report gives medians.
# TLS is TLS 1.3 with Node's and snowd's defaults (X25519, AES-256-GCM on
# this OpenSSL), an EC P-256 certificate made for the run; loadgen -T does
# not verify it.
#
# Environment (all optional):
#   TLS_IDLE_CONNS   idle connections (default 2000; 0 skips idle)
#   BENCH_SCENARIOS  echo "SIZE:CONNS[:WINDOW] ..." (default "32:100 16384:50")
#   BENCH_DURATION   measured seconds per echo scenario (default 10)
#   BENCH_WARMUP     warmup seconds (default 2)
#   BENCH_ROUNDS     rounds (default 3)
#   TLS_SERVERS      echo servers (default "snowd-wss snowd-wss-keep node-wss snowd-ws")
#   TLS_OUT          JSON-lines results (default bench/tls.jsonl, overwritten)
#   BENCH_MAX_TIME   hard limit in seconds (default 1200)
#   SNOWD, SNOWD_PLUGIN_DIR, NODE  as for run.sh
set -u -o pipefail

if [ -z "${BENCH_INNER:-}" ]; then
	BENCH_INNER=1 exec timeout -k 15 "${BENCH_MAX_TIME:-1200}" bash "${BASH_SOURCE[0]}" "$@"
fi

BENCH_NAME=tls
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IDLE=${TLS_IDLE_CONNS:-2000}
SCENARIOS=${BENCH_SCENARIOS:-"32:100 16384:50"}
DUR=${BENCH_DURATION:-10}
WARM=${BENCH_WARMUP:-2}
ROUNDS=${BENCH_ROUNDS:-3}
SERVERS=${TLS_SERVERS:-"snowd-wss snowd-wss-keep node-wss snowd-ws"}
OUT=${TLS_OUT:-$BENCH_DIR/tls.jsonl}
NODE=${NODE:-node}
LG_TIMEOUT=$(awk -v d="$DUR" -v w="$WARM" 'BEGIN{printf "%d", d + w + 60}')

build_all
command -v openssl >/dev/null || die "the openssl command is missing"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null || die "openssl req failed"
node_ok=1
"$NODE" -e "try{require('ws')}catch(e){require('/usr/share/nodejs/ws')}" 2>/dev/null ||
	{ log "node or its ws module is missing (scripts/deps.sh bench): Node is skipped"; node_ok=0; }

: >"$OUT" || die "cannot write $OUT"
warn_other_load
printf '{"type":"meta","bench":"tls","snowd":"%s","other_load":"%s","date":"%s","kernel":"%s","cpu":"%s","openssl":"%s","node":"%s","idle_conns":%s,"scenarios":"%s","duration_s":%s,"warmup_s":%s,"rounds":%s}\n' \
	"$SNOWD_ID" "$OTHER_LOAD" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(uname -r)" \
	"$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n1)" \
	"$(openssl version | cut -d' ' -f2)" "$("$NODE" --version 2>/dev/null)" \
	"$IDLE" "$SCENARIOS" "$DUR" "$WARM" "$ROUNDS" >>"$OUT"

# ---------------------------------------------------------------- servers
# start NAME: sets SRV_PORT, LG_TLS (-T or empty) and MEASURE_PIDS (the
# worker for snowd: where connections live; the process for node).
NPID=""
start() {
	local name=$1
	LG_TLS=""
	case $name in
	snowd-wss|snowd-wss-keep)
		LG_TLS=-T
		SNOWD_TASKSET="taskset -c 1" SNOWD_LISTEN_WORDS=tls SNOWD_LOG_LEVEL=warn \
			start_snowd 1 reuseport "[tls]" "certificate = $TMP/cert.pem" \
			"key = $TMP/key.pem" \
			"release_buffers = $([ "$name" = snowd-wss ] && echo on || echo off)" || return 1
		MEASURE_PIDS=$WORKER_PIDS ;;
	snowd-ws)
		SNOWD_TASKSET="taskset -c 1" SNOWD_LOG_LEVEL=warn start_snowd 1 reuseport || return 1
		MEASURE_PIDS=$WORKER_PIDS ;;
	node-wss)
		[ "$node_ok" = 1 ] || return 1
		LG_TLS=-T
		SRV_PORT=$(free_port) || die "no free port"
		taskset -c 1 "$NODE" "$BENCH_DIR/peers/wss_echo.js" "$SRV_PORT" \
			"$TMP/cert.pem" "$TMP/key.pem" >>"$TMP/node.log" 2>&1 &
		NPID=$!
		local i
		for i in $(seq 1 100); do
			port_in_use "$SRV_PORT" && break
			sleep 0.1
		done
		port_in_use "$SRV_PORT" || { log "node did not listen:"; cat "$TMP/node.log" >&2; return 1; }
		sleep 0.3
		MEASURE_PIDS=$NPID ;;
	esac
}

stop() {
	stop_snowd
	if [ -n "$NPID" ]; then
		kill -TERM "$NPID" 2>/dev/null
		wait "$NPID" 2>/dev/null
		NPID=""
	fi
}
trap 'stop; lib_cleanup' EXIT

# ---------------------------------------------------------------- idle
if [ "$IDLE" -gt 0 ]; then
	for s in snowd-wss snowd-wss-keep snowd-ws node-wss; do
		start "$s" || continue
		log "$s: $IDLE idle connections"
		json=$(timeout -k 5 "$LG_TIMEOUT" taskset -c 0 "$LOADGEN" $LG_TLS -p "$SRV_PORT" \
			-u /echo -c "$IDLE" -k -d 1 -P "$MEASURE_PIDS" -q 2>"$TMP/lg.err" | head -n1)
		if [ -z "$json" ]; then
			log "$s: idle run failed:"; sed 's/^/    /' "$TMP/lg.err" >&2
		else
			printf '{"type":"idle","server":"%s",%s\n' "$s" "${json#\{}" >>"$OUT"
		fi
		stop
	done
fi

# ---------------------------------------------------------------- alloc
gcc -O2 -Wall -Wextra -o "$BUILD/tlsalloc" "$BENCH_DIR/tlsalloc.c" -lssl -lcrypto ||
	die "building tlsalloc failed"
log "OpenSSL's own allocation per idle connection (tlsalloc)"
"$BUILD/tlsalloc" "$TMP/cert.pem" "$TMP/key.pem" 1000 >>"$OUT" || log "tlsalloc failed"

# ---------------------------------------------------------------- echo
for r in $(seq 1 "$ROUNDS"); do
	for s in $SERVERS; do
		start "$s" || continue
		for sc in $SCENARIOS; do
			IFS=: read -r size conns window <<<"$sc"
			window=${window:-1}
			scen="${size}B_c${conns}_w${window}"
			log "round $r: $s $scen (${WARM}s + ${DUR}s)"
			# Server CPU counts the master too, as in run.sh.
			pids=$MEASURE_PIDS
			[ "$s" != node-wss ] && pids=$(snowd_pids)
			json=$(timeout -k 5 "$LG_TIMEOUT" taskset -c 0 "$LOADGEN" $LG_TLS -p "$SRV_PORT" \
				-u /echo -c "$conns" -s "$size" -w "$window" -d "$DUR" -W "$WARM" \
				-P "$pids" -q 2>"$TMP/lg.err")
			grep -v '^MEASURE_\(START\|END\)$' "$TMP/lg.err" | sed 's/^/    /' >&2
			if [ -z "$json" ]; then
				log "$s $scen: loadgen failed"
				continue
			fi
			printf '{"type":"echo","server":"%s","scenario":"%s","round":%s,%s\n' \
				"$s" "$scen" "$r" "${json#\{}" >>"$OUT"
		done
		stop
	done
done

# ---------------------------------------------------------------- report
"$PY" - "$OUT" <<'EOF'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
meta = next(r for r in recs if r["type"] == "meta")
print(f"\nTLS benchmark, {meta['date']}, OpenSSL {meta['openssl']}, "
      f"node {meta['node']}, {meta['cpu']}")
idle = [r for r in recs if r["type"] == "idle"]
if idle:
    print(f"\nIdle connections ({meta['idle_conns']}), RSS growth of the "
          "process holding them:")
    print(f"  {'server':<16} {'established':>11} {'bytes/conn':>11}")
    for r in idle:
        print(f"  {r['server']:<16} {r['established']:>11} "
              f"{r.get('bytes_per_conn', float('nan')):>11.0f}")
alloc = [r for r in recs if r["type"] == "alloc"]
if alloc:
    a = alloc[0]
    print(f"\nOpenSSL's allocation per idle server connection (mallinfo2, "
          f"{a['connections']} connections): release_buffers = on "
          f"{a['bytes_per_conn_release']} bytes, off "
          f"{a['bytes_per_conn_keep']} bytes")
echo = [r for r in recs if r["type"] == "echo"]
groups = {}
for r in echo:
    groups.setdefault((r["scenario"], r["server"]), []).append(r)
med = statistics.median
if groups:
    print("\nEcho, medians over rounds (server CPU includes snowd's master):")
    print(f"  {'scenario':<18} {'server':<15} {'rt/s':>9} {'p50 us':>8} "
          f"{'p99 us':>8} {'srv cpu us/rt':>14} {'client cpu%':>11}")
    for (scen, srv), rs in sorted(groups.items()):
        print(f"  {scen:<18} {srv:<15} {med(r['rtt_per_s'] for r in rs):>9.0f} "
              f"{med(r['p50_us'] for r in rs):>8.0f} "
              f"{med(r['p99_us'] for r in rs):>8.0f} "
              f"{med(r.get('server_cpu_us_per_rt', float('nan')) for r in rs):>14.2f} "
              f"{med(100 * r['client_cpu_s'] / r['duration_s'] for r in rs):>11.0f}")
    for scen in sorted({k[0] for k in groups}):
        a, b = groups.get((scen, "snowd-wss")), groups.get((scen, "node-wss"))
        c = groups.get((scen, "snowd-ws"))
        k = groups.get((scen, "snowd-wss-keep"))
        cpu = lambda rs: med(r.get("server_cpu_us_per_rt", float("nan")) for r in rs)
        if a and b:
            print(f"  {scen}: snowd-wss / node-wss server CPU per round trip "
                  f"= {cpu(a) / cpu(b):.2f}")
        if a and c:
            print(f"  {scen}: snowd-wss / snowd-ws = {cpu(a) / cpu(c):.2f} "
                  "(what TLS costs snowd)")
        if a and k:
            print(f"  {scen}: snowd-wss / snowd-wss-keep = "
                  f"{cpu(a) / cpu(k):.2f} (what release_buffers costs)")
if meta.get("other_load", "none") != "none":
    print(f"\nWARNING: other load on the machine: {meta['other_load']}")
EOF
log "results written to $OUT"
