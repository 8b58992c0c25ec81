#!/usr/bin/env bash
# Accuracy against bytes: the same 4-peer, 30-round Fashion-MNIST run (MLP
# 784-256-10, the default spec otherwise) without compression (the
# dense-update reference) and with several top-k fractions, bit widths and
# inner-step counts, and inner optimizers (AdamW by default; sgd with its
# learning rate, momentum 0.9; both restart their state every round).
# Prints one line per setting: fraction, bits, inner steps, optimizer,
# test accuracy, the compressed payload's bytes per update and its
# ratio to dense fp32, what each peer put on the wire per round once every
# peer had joined (and that ratio), and wall time.
#
#   benchmarks/compression_tradeoff.sh [--peers 4] [--rounds 30] [--data DIR|synthetic] [--checks]
#       [FRACTION:BITS:STEPS[:OPTIMIZER[:LR]] ...]
#
# Spot-checks are off unless --checks: they do not change an honest run's
# updates, only its bytes and time (the demo's own figures are with them).
set -euo pipefail
cd "$(dirname "$0")/.."
peers=4 rounds=30 data="" checks=0
while [ $# -gt 0 ]; do
	case "$1" in
	--peers) peers=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--data) data="--data $2"; shift 2 ;;
	--checks) checks=1; shift ;;
	--*) echo "unknown flag $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
settings=("$@")
[ ${#settings[@]} -gt 0 ] || settings=(1.0:32:200 0.01:2:200 0.01:1:200 0.007:1:200 0.005:1:200 0.0035:1:200 0.0035:1:400)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/vtrain" ./cmd/vtrain
printf '%-9s %-5s %-6s %-12s %-9s %-14s %-8s %-16s %-8s %s\n' fraction bits steps optimizer accuracy payload_bytes ratio steady_wire_B wire_x seconds
for s in "${settings[@]}"; do
	IFS=: read -r f b h o lr <<<"$s"
	o=${o:-adamw}
	printf '[compression]\nfraction = %s\nbits = %s\n[inner]\nsteps = %s\noptimizer = "%s"\n' "$f" "$b" "$h" "$o" >"$tmp/spec.toml"
	[ -z "$lr" ] || printf 'lr = %s\n' "$lr" >>"$tmp/spec.toml"
	[ "$checks" = 1 ] || printf '[verify]\nrate = 0.0\nnewcomer_rate = 0.0\n' >>"$tmp/spec.toml"
	line=$("$tmp/vtrain" demo --peers "$peers" --rounds "$rounds" --spec "$tmp/spec.toml" --out "$tmp/run" --json $data 2>/dev/null | tail -1) || { echo "$s: demo failed"; continue; }
	rm -rf "$tmp/run"
	/usr/bin/python3 -c "import json,sys; d=json.loads(sys.argv[1]); print('%-9s %-5s %-6s %-12s %-9.4f %-14.0f %-8.0f %-16.0f %-8.1f %.0f' % (sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], d['test_accuracy'], d['payload_bytes'], d['compression_ratio'], d['steady_wire_bytes_out_per_peer_round'], d['steady_wire_compression_ratio'], d['seconds']))" "$line" "$f" "$b" "$h" "$o${lr:+@$lr}"
done
