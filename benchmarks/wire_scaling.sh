#!/usr/bin/env bash
# Bytes on the wire against the number of peers: one `vtrain demo` per
# peer count (default spec, spot-checks on, Fashion-MNIST when installed),
# each peer's bytes out per round once every peer had joined, by category,
# beside what a ring all-reduce of the dense fp32 model sends per peer
# (2(N−1)/N × model bytes).
#
#   benchmarks/wire_scaling.sh [--rounds 20] [--spec FILE] [N ...]     (default N: 2 4 8 16)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=20 spec=()
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) rounds=$2; shift 2 ;;
	--spec) spec=(--spec "$2"); shift 2 ;;
	--*) echo "unknown flag $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(2 4 8 16)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/vtrain" ./cmd/vtrain
for n in "${counts[@]}"; do
	line=$("$tmp/vtrain" demo --peers "$n" --rounds "$rounds" "${spec[@]}" --out "$tmp/run" --json 2>/dev/null | tail -1) || { echo "$n peers: demo failed"; continue; }
	rm -rf "$tmp/run"
	/usr/bin/python3 - "$line" "$n" <<'PY'
import json, sys
d, n = json.loads(sys.argv[1]), int(sys.argv[2])
c = d["steady_wire_out_per_peer_round_by_category"]
ring = 2 * (n - 1) / n * d["dense_bytes_per_round"]
parts = ", ".join("%s %.0f" % (k, v) for k, v in sorted(c.items(), key=lambda kv: -kv[1]) if v >= 1)
print("peers %2d  accuracy %.4f  payload %.0f B (%.0fx)  steady %.0f B/peer-round (%.1fx dense, %.2fx a ring all-reduce's %.0f B)  whole run %.0f B (%.1fx)  dup/delivered %.2f  s/round %.2f" % (
    n, d["test_accuracy"], d["payload_bytes"], d["compression_ratio"], d["steady_wire_bytes_out_per_peer_round"], d["steady_wire_compression_ratio"],
    ring / d["steady_wire_bytes_out_per_peer_round"], ring, d["wire_bytes_out_per_peer_round"], d["wire_compression_ratio"], d["duplicates_per_delivered"], d["seconds_per_round"]))
print("          " + parts)
PY
done
