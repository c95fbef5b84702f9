#!/usr/bin/env bash
# bench/run.sh - compare snowd against libwebsockets and Node `ws` echo servers.
#
# Builds bench/build/{loadgen,lws_echo}, then for each server: an idle-memory
# scenario on a freshly started server, followed by the echo scenarios on
# another fresh instance.  The server is pinned to CPU 1, loadgen to CPU 0.
# loadgen samples the server's /proc/PID/stat itself at the exact start and
# end of the measured interval (-P PID), so the CPU figure covers exactly the
# measured round trips.
#
# Environment (all optional):
#   SNOWD             snowd binary            (default: bench/../snowd)
#   SNOWD_PLUGIN_DIR  snowd plugin directory  (default: bench/../plugins/.libs)
#   BENCH_DURATION    measured seconds per scenario (default 10)
#   BENCH_WARMUP      warmup seconds per scenario   (default 2)
#   BENCH_SCENARIOS   "SIZE:CONNS[:WINDOW] ..."     (default "32:100 32:1000 65536:100")
#   BENCH_IDLE_CONNS  idle connections              (default 10000, 0 = skip)
#   BENCH_SERVERS     servers to run                (default "snowd lws node")
#   BENCH_OUT         JSON-lines results file       (default bench/results.jsonl, overwritten)
#   BENCH_ROUNDS      rounds of all echo scenarios over all servers, in turn
#                     (default 3); the report gives each figure's median
#   BENCH_MAX_TIME    hard limit for the whole run, seconds (default 1200)
set -u -o pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAX_TIME=${BENCH_MAX_TIME:-1200}

# Bound the total runtime: re-run ourselves under timeout(1).
if [ -z "${BENCH_INNER:-}" ]; then
	BENCH_INNER=1 exec timeout -k 15 "$MAX_TIME" bash "${BASH_SOURCE[0]}" "$@"
fi

if [ -z "${SNOWD:-}" ]; then
	# automake builds sbin_PROGRAMS=snowd at the top of the build tree
	SNOWD=$BENCH_DIR/../snowd
fi
SNOWD_PLUGIN_DIR=${SNOWD_PLUGIN_DIR:-$BENCH_DIR/../plugins/.libs}
DUR=${BENCH_DURATION:-10}
WARM=${BENCH_WARMUP:-2}
SCENARIOS=${BENCH_SCENARIOS:-"32:100 32:1000 65536:100"}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
SERVERS=${BENCH_SERVERS:-"snowd lws node"}
ROUNDS=${BENCH_ROUNDS:-3}
ROUND=1
OUT=${BENCH_OUT:-$BENCH_DIR/results.jsonl}
BUILD=$BENCH_DIR/build
NODE=${NODE:-node}

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" || die "cannot raise open-files limit"
[ "$(ulimit -n)" -ge 10100 ] || log "WARNING: open-files limit $(ulimit -n) is low for the idle scenario"

TMP=$(mktemp -d /tmp/snowd-bench.XXXXXX)
SPID=""          # pid we started (taskset execs into the server)
SRV_PID=""       # pid actually listening (differs if the server daemonized)
SRV_PIDS=""      # every process of the server, comma separated (for -P)
SRV_PORT=""

stop_server() {
	local p
	for p in $SRV_PID $SPID; do
		[ -n "$p" ] && kill -TERM "$p" 2>/dev/null
	done
	for _ in $(seq 1 30); do
		local alive=0
		for p in $SRV_PID $SPID; do
			[ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive=1
		done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for p in $SRV_PID $SPID; do
		[ -n "$p" ] && kill -KILL "$p" 2>/dev/null
	done
	[ -n "$SPID" ] && wait "$SPID" 2>/dev/null
	SPID=""
	SRV_PID=""
}

cleanup() {
	stop_server
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated (time limit?)"; exit 143' TERM HUP

# ---------------------------------------------------------------- build
mkdir -p "$BUILD"
CFLAGS="-O2 -Wall -Wextra"
gcc $CFLAGS -o "$BUILD/loadgen" "$BENCH_DIR/loadgen.c" -lssl -lcrypto || die "building loadgen failed"
LWS_FLAGS=$(pkg-config --cflags --libs libwebsockets 2>/dev/null || echo "-lwebsockets")
gcc $CFLAGS -o "$BUILD/lws_echo" "$BENCH_DIR/peers/lws_echo.c" $LWS_FLAGS || die "building lws_echo failed"

# ---------------------------------------------------------------- servers
port_in_use() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 12000))   # below the ephemeral range (32768+)
		port_in_use "$p" || { echo "$p"; return 0; }
	done
	return 1
}

listening_pid() {
	ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1
}

server_available() {
	case $1 in
	snowd)
		[ -x "$SNOWD" ] || { log "snowd binary not found at $SNOWD - skipping snowd"; return 1; } ;;
	lws) [ -x "$BUILD/lws_echo" ] || return 1 ;;
	node)
		"$NODE" -e "try{require('ws')}catch(e){require('/usr/share/nodejs/ws')}" 2>/dev/null ||
			{ log "node or the ws module is missing - skipping node"; return 1; } ;;
	*) log "unknown server $1"; return 1 ;;
	esac
}

# start_server NAME: sets SPID, SRV_PID, SRV_PORT
start_server() {
	local name=$1 port cfg plugdir
	port=$(free_port) || die "no free port"
	case $name in
	snowd)
		plugdir=$(cd "$SNOWD_PLUGIN_DIR" 2>/dev/null && pwd) || plugdir=$SNOWD_PLUGIN_DIR
		cfg=$TMP/snowd.ini
		cat >"$cfg" <<EOF
[server]
listen = 127.0.0.1:$port
plugin_dir = $plugdir
log_level = warn
workers = 1

[limits]
max_message = 16M
idle_timeout = 0
ping_interval = 0
max_connections = 100000

[route /echo]
handler = echo
EOF
		taskset -c 1 "$SNOWD" -c "$cfg" >>"$TMP/$name.log" 2>&1 &
		;;
	lws) taskset -c 1 "$BUILD/lws_echo" "$port" >>"$TMP/$name.log" 2>&1 & ;;
	node) taskset -c 1 "$NODE" "$BENCH_DIR/peers/ws_echo.js" "$port" >>"$TMP/$name.log" 2>&1 & ;;
	esac
	SPID=$!
	SRV_PORT=$port
	local i
	for i in $(seq 1 100); do   # up to 10 s
		port_in_use "$port" && break
		sleep 0.1
	done
	if ! port_in_use "$port"; then
		log "$name did not start listening on 127.0.0.1:$port; log:"
		sed 's/^/    /' "$TMP/$name.log" >&2
		stop_server
		return 1
	fi
	SRV_PID=$(listening_pid "$port")
	[ -n "$SRV_PID" ] || SRV_PID=$SPID
	if [ "$SRV_PID" != "$SPID" ]; then
		log "note: $name listens as pid $SRV_PID (started pid $SPID)"
		taskset -pc 1 "$SRV_PID" >/dev/null 2>&1
	fi
	# snowd is a master and its worker: count the CPU and memory of both.
	SRV_PIDS=$SRV_PID
	if [ "$name" = snowd ]; then
		local kids=""
		for i in $(seq 1 50); do
			kids=$(cat /proc/"$SPID"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$' | tr '\n' ',' | sed 's/,$//')
			[ -n "$kids" ] && break
			sleep 0.1
		done
		[ -n "$kids" ] || log "WARNING: no snowd worker found under pid $SPID"
		SRV_PIDS="$SPID${kids:+,$kids}"
	fi
	sleep 0.3
	return 0
}

server_alive() { [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2>/dev/null; }

# emit NAME TYPE SCENARIO JSON -> results file
emit() {
	printf '{"type":"%s","server":"%s","scenario":"%s","round":%s,%s\n' "$2" "$1" "$3" "$ROUND" "${4#\{}" >>"$OUT"
}

LG_TIMEOUT=$(awk -v d="$DUR" -v w="$WARM" 'BEGIN{printf "%d", d + w + 60}')

run_idle() {
	local name=$1 json
	start_server "$name" || return 1
	log "$name: idle memory, $IDLE_CONNS connections"
	json=$(timeout -k 5 "$LG_TIMEOUT" taskset -c 0 "$BUILD/loadgen" -p "$SRV_PORT" -u /echo \
		-c "$IDLE_CONNS" -k -d 1 -P "$SRV_PIDS" -q 2>"$TMP/lg.err" | head -n1)
	if [ -z "$json" ]; then
		log "$name: idle scenario failed:"; sed 's/^/    /' "$TMP/lg.err" >&2
	else
		grep -v '^READY$' "$TMP/lg.err" | sed 's/^/    /' >&2
		emit "$name" idle "idle_c$IDLE_CONNS" "$json"
	fi
	stop_server
}

run_echo() {
	local name=$1 sc size conns window scen json
	start_server "$name" || return 1
	for sc in $SCENARIOS; do
		IFS=: read -r size conns window <<<"$sc"
		window=${window:-1}
		scen="${size}B_c${conns}_w${window}"
		if ! server_alive; then
			log "$name: server died; restarting"
			stop_server
			start_server "$name" || return 1
		fi
		log "$name: $scen (${WARM}s warmup + ${DUR}s)"
		json=$(timeout -k 5 "$LG_TIMEOUT" taskset -c 0 "$BUILD/loadgen" -p "$SRV_PORT" -u /echo \
			-c "$conns" -s "$size" -w "$window" -d "$DUR" -W "$WARM" -P "$SRV_PIDS" -q \
			2>"$TMP/lg.err")
		grep -v '^MEASURE_\(START\|END\)$' "$TMP/lg.err" | sed 's/^/    /' >&2
		if [ -z "$json" ]; then
			log "$name: $scen failed"
			continue
		fi
		emit "$name" echo "$scen" "$json"
	done
	stop_server
}

# ---------------------------------------------------------------- main
: >"$OUT" || die "cannot write $OUT"
printf '{"type":"meta","date":"%s","kernel":"%s","cpu":"%s","duration_s":%s,"warmup_s":%s,"scenarios":"%s","idle_conns":%s}\n' \
	"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(uname -r)" \
	"$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n1)" \
	"$DUR" "$WARM" "$SCENARIOS" "$IDLE_CONNS" >>"$OUT"

# Servers take turns within each round, so that drift in the machine's
# state (other load, caches, frequency) spreads over all of them.
ran=0
for s in $SERVERS; do
	server_available "$s" || continue
	ran=1
	if [ "$IDLE_CONNS" -gt 0 ]; then
		run_idle "$s"
	fi
done
for ROUND in $(seq 1 "$ROUNDS"); do
	for s in $SERVERS; do
		server_available "$s" || continue
		log "round $ROUND of $ROUNDS"
		run_echo "$s"
	done
done
[ $ran = 1 ] || die "no server could be run"

"$NODE" "$BENCH_DIR/report.js" "$OUT"
log "results written to $OUT"
