#!/usr/bin/env bash
# Accuracy against bytes: the same 4-peer, 30-round Fashion-MNIST run (MLP
# 784-256-10, the default spec otherwise) without compression and with
# several top-k fractions and bit widths. Prints one line per setting:
# fraction, bits, test accuracy, bytes each peer published per round,
# compression ratio against dense fp32, and wall time.
#
#   benchmarks/compression_tradeoff.sh [--peers 4] [--rounds 30] [--data DIR|synthetic]
set -euo pipefail
cd "$(dirname "$0")/.."
peers=4 rounds=30 data=""
while [ $# -gt 0 ]; do
	case "$1" in
	--peers) peers=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--data) data="--data $2"; shift 2 ;;
	*) echo "unknown flag $1" >&2; exit 2 ;;
	esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/vtrain" ./cmd/vtrain
printf '%-9s %-5s %-9s %-12s %-9s %s\n' fraction bits accuracy bytes/peer/rd ratio seconds
for setting in "1.0 32" "0.01 2" "0.01 3" "0.01 8" "0.005 3" "0.05 3"; do
	set -- $setting
	printf '[compression]\nfraction = %s\nbits = %s\n' "$1" "$2" >"$tmp/spec.toml"
	line=$("$tmp/vtrain" demo --peers "$peers" --rounds "$rounds" --spec "$tmp/spec.toml" --out "$tmp/run" --json $data 2>/dev/null | tail -1)
	rm -rf "$tmp/run"
	/usr/bin/python3 -c "import json,sys; d=json.loads(sys.argv[1]); print('%-9s %-5s %-9.4f %-12.0f %-9.0f %.0f' % (sys.argv[2], sys.argv[3], d['test_accuracy'], d['bytes_sent_per_peer_round'], d['compression_ratio'], d['seconds']))" "$line" "$1" "$2"
done
