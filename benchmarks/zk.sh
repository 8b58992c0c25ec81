#!/usr/bin/env bash
# zk proofs of one SGD step of softmax regression on Fashion-MNIST's shape
# (784×10, data tree of depth 16): constraints, setup, prove and verify
# time, proof size, and the plain step's time, at batch sizes 1, 4 and 16,
# one `vtrain bench zk` process per size (prove_s: the median of 3 proofs
# after a warm-up proof; prove_min_s the fastest). Then the fixed-point training
# path against the float one (test accuracy, same batches, same rate).
#
#   benchmarks/zk.sh [--batches "1 4 16"] [--epochs 2] [--seeds "1 2 3"]
set -euo pipefail
cd "$(dirname "$0")/.."
batches="1 4 16" epochs=2 seeds="1 2 3"
while [ $# -gt 0 ]; do
	case "$1" in
	--batches) batches=$2; shift 2 ;;
	--epochs) epochs=$2; shift 2 ;;
	--seeds) seeds=$2; shift 2 ;;
	*) echo "unknown flag $1" >&2; exit 2 ;;
	esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/vtrain" ./cmd/vtrain
printf '%-6s %-12s %-10s %-10s %-12s %-12s %-10s %-8s %-10s %s\n' batch constraints setup_s prove_s prove_min_s prove_cpu_s verify_ms proof_B step_ms prove/step
for b in $batches; do
	line=$("$tmp/vtrain" bench zk --batch "$b" --json 2>/dev/null | tail -1)
	/usr/bin/python3 -c "import json,sys; d=json.loads(sys.argv[1]); print('%-6d %-12d %-10.1f %-10.2f %-12.2f %-12.2f %-10.2f %-8d %-10.3f %.0f' % (d['batch'], d['constraints'], d['setup_ms']/1e3, d['prove_ms']/1e3, d['prove_min_ms']/1e3, d['prove_cpu_ms']/1e3, d['verify_ms'], d['proof_bytes'], d['step_ms'], d['prove_over_step']))" "$line"
done
echo
printf '%-5s %-10s %-10s %s\n' seed float fixed difference
for s in $seeds; do
	f=$("$tmp/vtrain" train --model logreg --optimizer sgd --momentum 0 --lr 0.005 --batch 4 --epochs "$epochs" --seed "$s" --json 2>/dev/null | tail -1)
	z=$("$tmp/vtrain" train --model logreg --privacy zk --lr 0.005 --batch 4 --epochs "$epochs" --seed "$s" --json 2>/dev/null | tail -1)
	/usr/bin/python3 -c "import json,sys; f=json.loads(sys.argv[1])['test_accuracy']; z=json.loads(sys.argv[2])['test_accuracy']; print('%-5s %-10.4f %-10.4f %+.4f' % (sys.argv[3], f, z, z-f))" "$f" "$z" "$s"
done
