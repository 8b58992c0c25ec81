#!/usr/bin/env bash
# Round latency on loopback for 2, 4, 8 and 16 peers: the time from one
# decided round to the next as seen by the first peer, with few inner steps
# (so the figure is mostly the protocol: gossip, collect, commit, decide),
# all peers as processes on this machine.
#
#   benchmarks/round_latency.sh [--peers "2 4 8 16"] [--rounds 10] [--steps 10]
set -euo pipefail
cd "$(dirname "$0")/.."
peerset="2 4 8 16" rounds=10 steps=10
while [ $# -gt 0 ]; do
	case "$1" in
	--peers) peerset=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--steps) steps=$2; shift 2 ;;
	*) echo "unknown flag $1" >&2; exit 2 ;;
	esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/vtrain" ./cmd/vtrain
printf '[data]\nsource = "synthetic"\n[inner]\nsteps = %d\n' "$steps" >"$tmp/spec.toml"
printf '%-6s %-16s %-10s %s\n' peers seconds/round agreed bytes/peer/round
for n in $peerset; do
	line=$("$tmp/vtrain" demo --peers "$n" --rounds "$rounds" --spec "$tmp/spec.toml" --out "$tmp/run" --json --data synthetic 2>/dev/null | tail -1)
	rm -rf "$tmp/run"
	/usr/bin/python3 -c "import json,sys; d=json.loads(sys.argv[1]); print('%-6d %-16.3f %-10s %.0f' % (d['peers'], d['seconds_per_round'], d['agreed'], d['bytes_sent_per_peer_round']))" "$line"
done
