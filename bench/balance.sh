#!/usr/bin/env bash
# bench/balance.sh - how evenly snowd spreads new connections over two
# workers, accept = reuseport (one SO_REUSEPORT socket per worker, the
# kernel hashes each connection to one) versus accept = shared (one
# socket, every worker waits on it with EPOLLEXCLUSIVE).
#
# For each mode a fresh snowd with workers = 2 runs two tests, and every
# connection asks the actorbench handler "whoami" (the worker its actor
# runs on):
#   sequential  BALANCE_CONNS connections opened one after another
#               (connect, handshake, whoami), all held open to the end;
#   burst       BALANCE_ROUNDS rounds of BALANCE_BURST TCP connects back to
#               back, then their handshakes, pipelined; closed between rounds.
# Reported: the split (e.g. 1012/988) and max/mean (1.00 = perfectly even,
# 2.00 = everything on one of the two workers).
#
# Environment (all optional):
#   BALANCE_MODES   (default "reuseport shared")
#   BALANCE_CONNS   (default 2000)
#   BALANCE_BURST   (default 200)
#   BALANCE_ROUNDS  (default 10)
#   BALANCE_REPEAT  fresh daemons per mode (default 1)
#   BALANCE_OUT     JSON-lines results (default bench/balance.jsonl, overwritten)
#   BENCH_MAX_TIME  hard limit in seconds (default 600)
set -u -o pipefail

if [ -z "${BENCH_INNER:-}" ]; then
	BENCH_INNER=1 exec timeout -k 15 "${BENCH_MAX_TIME:-600}" bash "${BASH_SOURCE[0]}" "$@"
fi

BENCH_NAME=balance
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODES=${BALANCE_MODES:-"reuseport shared"}
CONNS=${BALANCE_CONNS:-2000}
BURST=${BALANCE_BURST:-200}
BROUNDS=${BALANCE_ROUNDS:-10}
REPEAT=${BALANCE_REPEAT:-1}
OUT=${BALANCE_OUT:-$BENCH_DIR/balance.jsonl}

[ "$CONNS" -lt 15000 ] || die "BALANCE_CONNS must stay below 15000"

build_all
: >"$OUT" || die "cannot write $OUT"
warn_other_load
printf '{"type":"meta","snowd":"%s","other_load":"%s","bench":"balance","date":"%s","kernel":"%s","ncpu":%s,"conns":%s,"burst":%s,"rounds":%s}\n' "$SNOWD_ID" "$OTHER_LOAD" \
	"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(uname -r)" "$(nproc)" "$CONNS" "$BURST" "$BROUNDS" >>"$OUT"

for rep in $(seq 1 "$REPEAT"); do
	for mode in $MODES; do
		SNOWD_LOG_LEVEL=warn start_snowd 2 "$mode" || die "snowd (accept=$mode) did not start"
		"$PY" "$ACTORCLIENT" wait "$SRV_PORT" --workers 2 >/dev/null || log "WARNING: sinks not ready (ignored: only whoami is used)"
		log "accept=$mode (repeat $rep): $CONNS sequential, then $BROUNDS x $BURST burst"
		"$PY" "$ACTORCLIENT" balance "$SRV_PORT" --label "$mode" --workers 2 \
			--conns "$CONNS" --burst "$BURST" --rounds "$BROUNDS" | tee -a "$OUT" |
			sed 's/^/    /' >&2
		snowd_check_alive "accept=$mode balance"
		snowd_log_problems 5 | sed 's/^/    log: /' >&2
		stop_snowd
	done
done

"$PY" - "$OUT" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bal = [r for r in recs if r.get("type") == "balance"]
print()
print("accept balance over 2 workers (max/mean: 1.00 = even, 2.00 = all on one)")
print("burst: 'all rounds' sums the rounds; 'mean round' averages each round's own max/mean")
print(f"{'accept':<10} {'test':<11} {'conns':>6} {'split':<12} {'max/mean':>8} "
      f"{'mean round':>10} {'worst round':>11}  rounds")
by = {}
for r in bal:
    worst = r.get("worst_round_max_over_mean")
    mround = r.get("mean_round_max_over_mean")
    print(f"{r['accept']:<10} {r['test']:<11} {r['connections']:>6} {r['split']:<12} "
          f"{r['max_over_mean']:>8.3f} {('%.3f' % mround) if mround else '-':>10} "
          f"{('%.3f' % worst) if worst else '-':>11}  "
          f"{' '.join(r.get('rounds_split', []))}")
    # the figure that decides: sequential = the split of all connections;
    # burst = how uneven a burst typically is (mean over rounds)
    fig = mround if mround else r["max_over_mean"]
    by.setdefault(r["test"], {}).setdefault(r["accept"], []).append(fig)
print()
for test, per in by.items():
    avg = {m: sum(v) / len(v) for m, v in per.items()}
    if len(avg) > 1:
        m = min(avg, key=avg.get)
        what = "mean round max/mean" if test == "burst" else "max/mean"
        print(f"{test}: more even = {m} ({what}, averaged over {len(next(iter(per.values())))} daemon(s): " +
              ", ".join(f"{k} {v:.3f}" for k, v in sorted(avg.items())) + ")")
EOF
log "results written to $OUT"
