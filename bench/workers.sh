#!/usr/bin/env bash
# bench/workers.sh - echo throughput of snowd with workers = 1 and
# workers = 2 in one run, with server CPU summed over the master and all
# workers (loadgen -P MASTER,WORKER,...).
#
# The loadgen echo scenarios of run.sh (default 32 B with 100 and 1000
# connections, window 1) run against both daemons, taking turns within
# each round, in two placements:
#   pinned  loadgen on CPU 0, every snowd process on CPU 1 (as in run.sh):
#           both daemons get one core; shows what splitting into two
#           workers costs per round trip.
#   free    loadgen on CPU 0, snowd unpinned: the workers may use both
#           cores, but CPU 0 is shared with loadgen.
# The machine has 2 cores and loadgen is single-threaded: when loadgen's
# CPU use is near 100 % of its core it, not the server, is the limit; the
# report says so for every row.
#
# Environment (all optional):
#   BENCH_DURATION     measured seconds per scenario (default 10)
#   BENCH_WARMUP       warmup seconds (default 2)
#   BENCH_ROUNDS       rounds (default 3); the report gives medians
#   BENCH_SCENARIOS    "SIZE:CONNS[:WINDOW] ..." (default "32:100 32:1000")
#   WORKERS_LIST       worker counts (default "1 2")
#   WORKERS_PLACEMENT  placements (default "pinned free")
#   WORKERS_ACCEPT     accept mode (default reuseport)
#   WORKERS_OUT        JSON-lines results (default bench/workers.jsonl, overwritten)
#   BENCH_MAX_TIME     hard limit in seconds (default 1200)
#   SNOWD, SNOWD_PLUGIN_DIR  as for run.sh
set -u -o pipefail

if [ -z "${BENCH_INNER:-}" ]; then
	BENCH_INNER=1 exec timeout -k 15 "${BENCH_MAX_TIME:-1200}" bash "${BASH_SOURCE[0]}" "$@"
fi

BENCH_NAME=workers
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DUR=${BENCH_DURATION:-10}
WARM=${BENCH_WARMUP:-2}
ROUNDS=${BENCH_ROUNDS:-3}
SCENARIOS=${BENCH_SCENARIOS:-"32:100 32:1000"}
WLIST=${WORKERS_LIST:-"1 2"}
PLACEMENTS=${WORKERS_PLACEMENT:-"pinned free"}
ACCEPT=${WORKERS_ACCEPT:-reuseport}
OUT=${WORKERS_OUT:-$BENCH_DIR/workers.jsonl}
LG_TIMEOUT=$(awk -v d="$DUR" -v w="$WARM" 'BEGIN{printf "%d", d + w + 60}')

build_all
: >"$OUT" || die "cannot write $OUT"
warn_other_load
printf '{"type":"meta","snowd":"%s","other_load":"%s","bench":"workers","date":"%s","kernel":"%s","cpu":"%s","ncpu":%s,"duration_s":%s,"warmup_s":%s,"scenarios":"%s","accept":"%s","rounds":%s}\n' "$SNOWD_ID" "$OTHER_LOAD" \
	"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(uname -r)" \
	"$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n1)" "$(nproc)" \
	"$DUR" "$WARM" "$SCENARIOS" "$ACCEPT" "$ROUNDS" >>"$OUT"

run_one() {   # PLACEMENT WORKERS ROUND
	local place=$1 w=$2 round=$3 sc size conns window scen json pids
	case $place in
	pinned) SNOWD_TASKSET="taskset -c 1" ;;
	free) SNOWD_TASKSET="" ;;
	*) die "unknown placement $place" ;;
	esac
	warn_other_load
	SNOWD_LOG_LEVEL=warn start_snowd "$w" "$ACCEPT" || return 1
	pids=$(snowd_pids)
	for sc in $SCENARIOS; do
		IFS=: read -r size conns window <<<"$sc"
		window=${window:-1}
		scen="${size}B_c${conns}_w${window}"
		log "$place workers=$w round $round: $scen (${WARM}s + ${DUR}s), pids $pids"
		json=$(timeout -k 5 "$LG_TIMEOUT" taskset -c 0 "$LOADGEN" -p "$SRV_PORT" -u /echo \
			-c "$conns" -s "$size" -w "$window" -d "$DUR" -W "$WARM" -P "$pids" -q \
			2>"$TMP/lg.err")
		grep -v '^MEASURE_\(START\|END\)$' "$TMP/lg.err" | sed 's/^/    /' >&2
		snowd_check_alive "$place workers=$w $scen"
		if [ -z "$json" ]; then
			log "$place workers=$w $scen: loadgen failed"
			continue
		fi
		printf '{"type":"echo","placement":"%s","workers":%s,"accept":"%s","scenario":"%s","round":%s,"master_pid":%s,"other_load":"%s",%s\n' \
			"$place" "$w" "$ACCEPT" "$scen" "$round" "$SPID" "$OTHER_LOAD" "${json#\{}" >>"$OUT"
	done
	snowd_log_problems 5 | sed 's/^/    log: /' >&2
	stop_snowd
}

for place in $PLACEMENTS; do
	for r in $(seq 1 "$ROUNDS"); do
		for w in $WLIST; do
			run_one "$place" "$w" "$r"
		done
	done
done

"$PY" - "$OUT" <<'EOF'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
meta = next(r for r in recs if r["type"] == "meta")
echo = [r for r in recs if r["type"] == "echo"]
med = statistics.median
groups = {}
for r in echo:
    groups.setdefault((r["placement"], r["scenario"], r["workers"]), []).append(r)

def other_of(r):
    """CPU of everything else on the machine during the measured interval,
    in cores."""
    if "machine_busy_cpu_s" not in r:
        return 0.0
    return max(0.0, r["machine_busy_cpu_s"] - r.get("server_cpu_s", 0)
               - r["client_cpu_s"]) / r["duration_s"]

def row(rs):
    # Rounds during which other processes used >= 10 % of a core are left
    # out of the medians when at least one clean round exists.
    clean = [r for r in rs if other_of(r) < 0.10]
    nall = len(rs)
    rs = clean or rs
    rt = med([r["rtt_per_s"] for r in rs])
    cpu = med([r.get("server_cpu_us_per_rt", float("nan")) for r in rs])
    srv = med([r.get("server_cpu_s", 0) / r["duration_s"] for r in rs])
    cli = med([r["client_cpu_s"] / r["duration_s"] for r in rs])
    p99 = med([r["p99_us"] for r in rs])
    # master share of the server CPU
    ms = [r["server_cpu_s_per_pid"][0] / r["server_cpu_s"] for r in rs
          if r.get("server_cpu_s_per_pid") and r.get("server_cpu_s")]
    wsplit = ""
    last = rs[-1].get("server_cpu_s_per_pid")
    if last and len(last) > 2:
        wsplit = "/".join(f"{x:.1f}" for x in last[1:])
    errs = sum(r["errors"] for r in rs)
    other = max(other_of(r) for r in rs)
    busy = sum(1 for r in rs if r.get("other_load", "none") != "none")
    return dict(busy=busy, other=other, used=len(rs), nall=nall, clean=len(clean), rt=rt, cpu=cpu, srv=srv, cli=cli, p99=p99,
                master=med(ms) if ms else 0.0, wsplit=wsplit, errs=errs, n=len(rs))

print()
print(f"snowd echo, workers=1 vs workers=2, accept={meta['accept']}, "
      f"{meta['duration_s']} s per run, medians of {meta['rounds']} rounds ({meta['date']})")
print(f"snowd sha256 {meta.get('snowd', '?')}")
print("srv cpu = master + all workers; client cpu near 100% = loadgen saturated;")
print("rounds with other load >= 10% of a core are left out when a clean round exists")
hdr = (f"{'placement':<8} {'scenario':<14} {'wk':>2} {'rt/s':>10} {'srv us/rt':>9} "
       f"{'srv cpu%':>8} {'client%':>7} {'p99 us':>8} {'master%':>7}  {'worker cpu s (last)':<20} note")
print(hdr)
print("-" * len(hdr))
keys = sorted({(p, s) for (p, s, w) in groups}, key=lambda k: (k[0] != "pinned", k[1]))
ratios = []
for p, s in keys:
    rows = {}
    for w in sorted({w for (pp, ss, w) in groups if (pp, ss) == (p, s)}):
        x = row(groups[(p, s, w)])
        rows[w] = x
        note = []
        if x["cli"] >= 0.90:
            note.append("LOADGEN SATURATED")
        if x["clean"] < x["nall"]:
            note.append(f"{x['clean']}/{x['nall']} rounds clean"
                        + (", used only those" if x["clean"] else ""))
        if x["other"] >= 0.10:
            note.append(f"OTHER LOAD up to {100*x['other']:.0f}% of a core")
        elif x["busy"]:
            note.append(f"other load seen before {x['busy']} run(s)")
        if x["errs"]:
            note.append(f"{x['errs']} conn errors")
        print(f"{p:<8} {s:<14} {w:>2} {x['rt']:>10,.0f} {x['cpu']:>9.2f} "
              f"{100*x['srv']:>7.0f}% {100*x['cli']:>6.0f}% {x['p99']:>8.0f} "
              f"{100*x['master']:>6.1f}%  {x['wsplit']:<20} {', '.join(note)}")
    if 1 in rows and 2 in rows:
        ratios.append((p, s, rows[2]["rt"] / rows[1]["rt"] if rows[1]["rt"] else 0,
                       rows[2]["cpu"] / rows[1]["cpu"] if rows[1]["cpu"] else 0,
                       rows[1]["cli"] >= 0.9 or rows[2]["cli"] >= 0.9))
if ratios:
    print()
    print("ratio workers=2 / workers=1 (rt/s: >1 = faster; cpu/rt: <1 = cheaper)")
    for p, s, rr, cr, sat in ratios:
        print(f"  {p:<8} {s:<14} rt/s x{rr:.3f}   srv cpu/rt x{cr:.3f}"
              + ("   (loadgen saturated: rt/s ratio bounded by the client)" if sat else ""))
EOF
log "results written to $OUT"
