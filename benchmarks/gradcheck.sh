#!/usr/bin/env bash
# Cross-checks vtrain's gradients against PyTorch's for each model, on the
# same weights and the same Fashion-MNIST batch (synthetic if not installed):
# Go writes weights, batch and gradients to safetensors; PyTorch (float64)
# recomputes them. Exits non-zero if any tensor's relative L2 error exceeds
# the tolerance (default 1e-5).
#
#   benchmarks/gradcheck.sh [--tol 1e-5] [--batch 64]
set -euo pipefail
cd "$(dirname "$0")/.."
tol=1e-5 batch=64
while [ $# -gt 0 ]; do
	case "$1" in
	--tol) tol=$2; shift 2 ;;
	--batch) batch=$2; shift 2 ;;
	*) echo "unknown flag $1" >&2; exit 2 ;;
	esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for m in logreg mlp cnn; do
	go run ./benchmarks/gradcheck --model "$m" --hidden 256,128 --batch "$batch" --out "$tmp/$m.safetensors"
	(cd benchmarks && /usr/bin/python3 gradcheck.py --tol "$tol" "$tmp/$m.safetensors") || status=1
done
exit $status
