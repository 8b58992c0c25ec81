#!/usr/bin/env bash
# Round latency on loopback for 2, 4, 8 and 16 peers: the time from one
# decided round to the next as seen by the first peer, with few inner steps
# (so the figure is mostly the protocol: gossip, collect, certify, decide),
# all peers as processes on this machine. With --tries K each peer count
# runs K times (a liveness check: every try must finish all its rounds on
# one state within --limit seconds) and the line gives how many did, and
# the median and slowest seconds per round among them.
#
#   benchmarks/round_latency.sh [--peers "2 4 8 16"] [--rounds 10] [--steps 10] [--tries 1] [--limit 600]
set -euo pipefail
cd "$(dirname "$0")/.."
peerset="2 4 8 16" rounds=10 steps=10 tries=1 limit=600
while [ $# -gt 0 ]; do
	case "$1" in
	--peers) peerset=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--steps) steps=$2; shift 2 ;;
	--tries) tries=$2; shift 2 ;;
	--limit) limit=$2; shift 2 ;;
	*) echo "unknown flag $1" >&2; exit 2 ;;
	esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/vtrain" ./cmd/vtrain
printf '[data]\nsource = "synthetic"\n[inner]\nsteps = %d\n' "$steps" >"$tmp/spec.toml"
printf '%-6s %-8s %-16s %-14s %s\n' peers finished seconds/round slowest/round bytes/peer/round
for n in $peerset; do
	: >"$tmp/lines"
	for _ in $(seq "$tries"); do
		timeout -k 10 "$limit" "$tmp/vtrain" demo --peers "$n" --rounds "$rounds" --spec "$tmp/spec.toml" --out "$tmp/run" --json --data synthetic 2>/dev/null | tail -1 >>"$tmp/lines" || true
		pkill -f "$tmp/vtrain" || true # the nodes of a try that ran out of time
		rm -rf "$tmp/run"
	done
	/usr/bin/python3 - "$n" "$tries" "$rounds" "$tmp/lines" <<'PY'
import json, statistics, sys
n, tries, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ok = []
for line in open(sys.argv[4]):
    try:
        d = json.loads(line)
    except ValueError:
        continue
    if d.get("agreed") and d.get("rounds") == rounds:
        ok.append(d)
if not ok:
    print("%-6d %-8s" % (n, "0/%d" % tries))
    sys.exit()
spr = [d["seconds_per_round"] for d in ok]
print("%-6d %-8s %-16.3f %-14.3f %.0f" % (n, "%d/%d" % (len(ok), tries), statistics.median(spr), max(spr), statistics.median(d["bytes_sent_per_peer_round"] for d in ok)))
PY
done
