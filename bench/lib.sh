# bench/lib.sh - helpers shared by bench/actors.sh, bench/workers.sh and
# bench/balance.sh (sourced, not run).  The caller sets BENCH_NAME first.
#
# Provides: log, die, build_all (copies snowd and the plugins to TMP and
# sets SNOWD to the copy, SNOWD_ID to "sha256-prefix build-time"),
# start_snowd WORKERS ACCEPT [EXTRA_LIMITS], stop_snowd, snowd_pids,
# snowd_check_alive, other_load, warn_other_load, and the variables
#   BENCH_DIR TOP BUILD TMP SNOWD PLUGDIR LOADGEN ACTORCLIENT PY
#   SPID (master pid) SRV_PORT WORKER_PIDS (space separated, slot order
#   unknown) SNOWD_LOG.
# The EXIT trap stops the daemon and removes the temporary directory.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$BENCH_DIR/.." && pwd)
BUILD=$BENCH_DIR/build
SNOWD=${SNOWD:-$TOP/snowd}
SNOWD_PLUGIN_DIR=${SNOWD_PLUGIN_DIR:-$TOP/plugins/.libs}
LOADGEN=$BUILD/loadgen
ACTORCLIENT=$BENCH_DIR/actorclient.py
PY=${PYTHON:-/usr/bin/python3}

log() { printf '[%s] %s\n' "${BENCH_NAME:-bench}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" || die "cannot raise open-files limit"

TMP=$(mktemp -d "/tmp/snowd-${BENCH_NAME:-bench}.XXXXXX")
SPID=""
SRV_PORT=""
WORKER_PIDS=""
SNOWD_LOG=""
KEEP_LOGS=${BENCH_KEEP_LOGS:-}

stop_snowd() {
	[ -n "$SPID" ] || return 0
	kill -TERM "$SPID" 2>/dev/null
	local i
	for i in $(seq 1 50); do
		kill -0 "$SPID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$SPID" 2>/dev/null; then
		log "snowd (pid $SPID) did not stop within 5 s of SIGTERM; SIGKILL"
		kill -KILL "$SPID" 2>/dev/null
	fi
	wait "$SPID" 2>/dev/null
	# workers have PR_SET_PDEATHSIG, but make sure none of ours is left
	local p
	for p in $WORKER_PIDS; do
		kill -0 "$p" 2>/dev/null && { log "worker $p outlived the master; killing it"; kill -KILL "$p" 2>/dev/null; }
	done
	SPID=""
	WORKER_PIDS=""
}

lib_cleanup() {
	stop_snowd
	if [ -n "$KEEP_LOGS" ]; then
		log "logs kept in $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap lib_cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated (time limit?)"; exit 143' TERM HUP

# ---------------------------------------------------------------- build
build_all() {
	if [ ! -x "$SNOWD" ]; then
		if [ -f "$TOP/Makefile" ]; then
			log "building snowd (make -j2)"
			(cd "$TOP" && make -j2 >"$TMP/make.log" 2>&1) || { tail -n 30 "$TMP/make.log" >&2; die "make failed"; }
		else
			die "no snowd at $SNOWD and no Makefile: run ./autogen.sh && ./configure && make"
		fi
	fi
	[ -x "$SNOWD" ] || die "snowd binary not found at $SNOWD"
	[ -f "$SNOWD_PLUGIN_DIR/echo.so" ] || die "echo.so not found in $SNOWD_PLUGIN_DIR (run make)"
	# Private copies: a rebuild of the tree during the run must not change
	# the binary under test halfway.
	cp "$SNOWD" "$TMP/snowd" || die "cannot copy $SNOWD"
	SNOWD_SRC=$SNOWD
	SNOWD=$TMP/snowd
	SNOWD_ID="$(sha256sum "$SNOWD" | cut -c1-12) $(date -u -r "$SNOWD_SRC" +%Y-%m-%dT%H:%M:%SZ)"
	mkdir -p "$BUILD/plugins"
	gcc -O2 -Wall -Wextra -o "$LOADGEN" "$BENCH_DIR/loadgen.c" -lssl -lcrypto || die "building loadgen failed"
	cc -shared -fPIC -O2 -Wall -Wextra -I"$TOP/include" "$BENCH_DIR/actorbench.c" \
		-o "$BUILD/plugins/actorbench.so" || die "building actorbench.so failed"
	# A plugin directory with exactly these two plugins, so that service
	# placement (i-th service on worker i mod N, plugins in file-name order)
	# is known: actorbench.so sorts first, sink0 -> worker 0, sink1 -> worker 1.
	PLUGDIR=$TMP/plugins
	mkdir -p "$PLUGDIR"
	cp "$BUILD/plugins/actorbench.so" "$PLUGDIR/actorbench.so"
	cp "$SNOWD_PLUGIN_DIR/echo.so" "$PLUGDIR/echo.so" || die "cannot copy echo.so"
	log "snowd under test: $SNOWD_SRC (sha256 ${SNOWD_ID% *}, built ${SNOWD_ID#* })"
}

# ---------------------------------------------------------------- daemon
port_in_use() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 12000))
		port_in_use "$p" || { echo "$p"; return 0; }
	done
	return 1
}

# The master's children, i.e. its workers.
snowd_children() {
	local t
	for t in /proc/"$1"/task/*/children; do
		cat "$t" 2>/dev/null
	done | tr ' ' '\n' | grep -E '^[0-9]+$' | sort -n | tr '\n' ' ' | sed 's/ $//'
}

# snowd_pids: master and workers, comma separated (for loadgen -P)
snowd_pids() {
	echo "$SPID $WORKER_PIDS" | tr ' ' ',' | sed 's/,,*/,/g; s/,$//'
}

# start_snowd WORKERS ACCEPT [EXTRA ...]: extra "key = value" lines go into [limits]
# (a line "[tls]" starts that section instead).
# Optional env: SNOWD_TASKSET (e.g. "taskset -c 1") to pin the daemon;
# SNOWD_LISTEN_WORDS (e.g. "tls") after the listen address.
start_snowd() {
	local workers=$1 accept=$2
	shift 2
	SRV_PORT=$(free_port) || die "no free port"
	local cfg=$TMP/snowd-w$workers-$accept.ini
	SNOWD_LOG=$TMP/snowd-w$workers-$accept.log
	{
		cat <<EOF
[server]
listen = 127.0.0.1:$SRV_PORT ${SNOWD_LISTEN_WORDS:-}
plugin_dir = $PLUGDIR
workers = $workers
accept = $accept
log_level = ${SNOWD_LOG_LEVEL:-info}

[limits]
max_message = 16M
idle_timeout = 0
ping_interval = 0
max_connections = 100000
EOF
		local l
		for l in "$@"; do echo "$l"; done
		cat <<EOF

[route /echo]
handler = echo

[route /actorbench]
handler = actorbench
EOF
	} >"$cfg"
	${SNOWD_TASKSET:-} "$SNOWD" -c "$cfg" >>"$SNOWD_LOG" 2>&1 &
	SPID=$!
	local i
	for i in $(seq 1 100); do
		port_in_use "$SRV_PORT" && break
		kill -0 "$SPID" 2>/dev/null || break
		sleep 0.1
	done
	if ! port_in_use "$SRV_PORT"; then
		log "snowd did not listen on 127.0.0.1:$SRV_PORT; log:"
		sed 's/^/    /' "$SNOWD_LOG" >&2
		stop_snowd
		return 1
	fi
	# wait until all workers are forked (and listening)
	for i in $(seq 1 100); do
		WORKER_PIDS=$(snowd_children "$SPID")
		[ "$(echo "$WORKER_PIDS" | wc -w)" -ge "$workers" ] && break
		sleep 0.1
	done
	[ "$(echo "$WORKER_PIDS" | wc -w)" -eq "$workers" ] ||
		log "WARNING: expected $workers worker(s), found '$WORKER_PIDS'"
	sleep 0.3
	log "snowd: master $SPID, workers $WORKER_PIDS, port $SRV_PORT, accept=$accept"
	return 0
}

# snowd_check_alive WHAT: warns (and returns 1) if the master died or the
# set of worker pids changed (a crash and respawn).
snowd_check_alive() {
	local now
	if ! kill -0 "$SPID" 2>/dev/null; then
		log "DAEMON BUG? snowd master $SPID died after $1; log tail:"
		tail -n 20 "$SNOWD_LOG" | sed 's/^/    /' >&2
		return 1
	fi
	now=$(snowd_children "$SPID")
	if [ "$now" != "$WORKER_PIDS" ]; then
		log "DAEMON BUG? worker pids changed after $1: '$WORKER_PIDS' -> '$now'; log tail:"
		tail -n 20 "$SNOWD_LOG" | sed 's/^/    /' >&2
		WORKER_PIDS=$now
		return 1
	fi
	return 0
}

# Warnings and errors the daemon logged (for the report).
snowd_log_problems() {
	grep -iE 'warn|error|crash|signal|respawn|full|drop' "$SNOWD_LOG" 2>/dev/null | head -n "${1:-20}"
}

# other_load: the busiest processes over one second that are not ours
# (other load on a 2-core machine skews every figure).  Prints
# "none" or "NAME(PID) NN%; ..." for processes above 10 % of a core.
other_load() {
	top -b -n 2 -d 1 -w 200 2>/dev/null |
		awk -v me="$$" '/^top -/ {it++} it == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 10 && $12 != "top" { printf "%s(%s) %s%%; ", $12, $1, $9 }' |
		sed 's/; $//' | grep . || echo none
}

# warn_other_load: logs the result of other_load and returns it in OTHER_LOAD
warn_other_load() {
	OTHER_LOAD=$(other_load)
	if [ "$OTHER_LOAD" != none ]; then
		log "WARNING: other processes are busy on this machine: $OTHER_LOAD"
		log "WARNING: figures will be skewed; rerun when the machine is idle"
	fi
}
