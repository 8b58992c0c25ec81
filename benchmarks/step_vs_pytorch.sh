#!/usr/bin/env bash
# Times one training step (forward, backward, SGD-momentum update) of the
# same model and batch in vtrain and in PyTorch (CPU), at each thread count,
# and prints the ratio vtrain/PyTorch (below 1: vtrain is faster).
#
#   benchmarks/step_vs_pytorch.sh [--model mlp] [--hidden 256] [--batch 64] [--steps 1000] [--threads "1 2"]
#
# Needs: Go, libopenblas-dev (vtrain is built with -tags openblas), and
# Debian's python3-torch for /usr/bin/python3. Pure-Go figures are printed
# too, for machines without OpenBLAS.
set -euo pipefail
cd "$(dirname "$0")/.."
model=mlp hidden=256 batch=64 steps=1000 threads="1 2"
while [ $# -gt 0 ]; do
	case "$1" in
	--model) model=$2; shift 2 ;;
	--hidden) hidden=$2; shift 2 ;;
	--batch) batch=$2; shift 2 ;;
	--steps) steps=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	*) echo "unknown flag $1" >&2; exit 2 ;;
	esac
done
py=/usr/bin/python3
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -tags openblas -o "$bin/vtrain-openblas" ./cmd/vtrain
CGO_ENABLED=0 go build -o "$bin/vtrain-purego" ./cmd/vtrain
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); go $(go env GOVERSION); torch $($py -c 'import torch; print(torch.__version__)')"
echo "model $model (hidden $hidden), batch $batch, $steps timed steps after warm-up"
printf '%-8s %-22s %12s %10s\n' threads engine ms/step GFLOP/s
field() { $py -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print('%.3f %.1f' % (d['ms_per_step'], d['gflops']))"; }
for t in $threads; do
	read -r vo go <<<"$(GOMAXPROCS=$t OPENBLAS_NUM_THREADS=$t "$bin/vtrain-openblas" bench step --model "$model" --hidden "$hidden" --batch "$batch" --steps "$steps" --json | field)"
	read -r vp gp <<<"$(GOMAXPROCS=$t "$bin/vtrain-purego" bench step --model "$model" --hidden "$hidden" --batch "$batch" --steps "$steps" --json | field)"
	read -r tp gt <<<"$(cd benchmarks && $py torch_step.py --model "$model" --hidden "$hidden" --batch "$batch" --steps "$steps" --threads "$t" | field)"
	printf '%-8s %-22s %12s %10s\n' "$t" "vtrain (openblas)" "$vo" "$go"
	printf '%-8s %-22s %12s %10s\n' "$t" "vtrain (pure Go)" "$vp" "$gp"
	printf '%-8s %-22s %12s %10s\n' "$t" "pytorch" "$tp" "$gt"
	printf '%-8s ratio vtrain(openblas)/pytorch = %s\n' "$t" "$($py -c "print('%.2f' % ($vo / $tp))")"
done
