#!/usr/bin/env bash
# Times one training step (forward, backward, SGD-momentum update) of the
# same model and batch in vtrain and in PyTorch (CPU), at each thread count,
# and prints the ratio vtrain/PyTorch (below 1: vtrain is faster).
# PyTorch gets OPENBLAS_NUM_THREADS too: Debian's torch multiplies with the
# system OpenBLAS, whose thread pool torch.set_num_threads does not size.
#
#   benchmarks/step_vs_pytorch.sh [--model mlp] [--hidden 256] [--batch 64] [--steps 1000] [--threads "1 2"] [--repeat 1] [--no-purego]
#
# With --repeat N, vtrain (OpenBLAS) and PyTorch run alternately N times at
# each thread count, each row with the 1-minute load average read just
# before it, and the median ratio of the pairs is printed: on a shared
# machine the two sides then see the same load. "cpu ms" is the process's
# CPU time per step (user + system), which leaves out the time it waited
# for a core; its ratio is printed too.
#
# Needs: Go, libopenblas-dev (vtrain is built with -tags openblas), and
# Debian's python3-torch for /usr/bin/python3. Pure-Go figures are printed
# too, for machines without OpenBLAS.
set -euo pipefail
cd "$(dirname "$0")/.."
model=mlp hidden=256 batch=64 steps=1000 threads="1 2" repeat=1 purego=1
while [ $# -gt 0 ]; do
	case "$1" in
	--model) model=$2; shift 2 ;;
	--hidden) hidden=$2; shift 2 ;;
	--batch) batch=$2; shift 2 ;;
	--steps) steps=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--repeat) repeat=$2; shift 2 ;;
	--no-purego) purego=0; shift ;;
	*) echo "unknown flag $1" >&2; exit 2 ;;
	esac
done
py=/usr/bin/python3
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -tags openblas -o "$bin/vtrain-openblas" ./cmd/vtrain
[ "$purego" = 0 ] || CGO_ENABLED=0 go build -o "$bin/vtrain-purego" ./cmd/vtrain
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); go $(go env GOVERSION); torch $($py -c 'import torch; print(torch.__version__)'); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); $(date -u +%FT%TZ)"
echo "model $model (hidden $hidden), batch $batch, $steps timed steps after warm-up"
printf '%-8s %-22s %10s %10s %10s %6s\n' threads engine ms/step "cpu ms" GFLOP/s load
field() { $py -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print('%.3f %.3f %.1f' % (d['ms_per_step'], d['cpu_ms_per_step'], d['gflops']))"; }
median() { $py -c "import statistics,sys; print('%.2f' % statistics.median(map(float, sys.argv[1:])))" "$@"; }
load() { cut -d' ' -f1 /proc/loadavg; }
for t in $threads; do
	ratios="" cratios=""
	for r in $(seq "$repeat"); do
		l=$(load)
		read -r vo vc go <<<"$(GOMAXPROCS=$t OPENBLAS_NUM_THREADS=$t "$bin/vtrain-openblas" bench step --model "$model" --hidden "$hidden" --batch "$batch" --steps "$steps" --json | field)"
		printf '%-8s %-22s %10s %10s %10s %6s\n' "$t" "vtrain (openblas)" "$vo" "$vc" "$go" "$l"
		l=$(load)
		read -r tp tc gt <<<"$(cd benchmarks && OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t $py torch_step.py --model "$model" --hidden "$hidden" --batch "$batch" --steps "$steps" --threads "$t" | field)"
		printf '%-8s %-22s %10s %10s %10s %6s\n' "$t" "pytorch" "$tp" "$tc" "$gt" "$l"
		ratios="$ratios $($py -c "print('%.3f' % ($vo / $tp))")"
		cratios="$cratios $($py -c "print('%.3f' % ($vc / $tc))")"
	done
	if [ "$purego" = 1 ]; then
		l=$(load)
		read -r vp vpc gp <<<"$(GOMAXPROCS=$t "$bin/vtrain-purego" bench step --model "$model" --hidden "$hidden" --batch "$batch" --steps "$steps" --json | field)"
		printf '%-8s %-22s %10s %10s %10s %6s\n' "$t" "vtrain (pure Go)" "$vp" "$vpc" "$gp" "$l"
	fi
	printf '%-8s ratio vtrain(openblas)/pytorch = %s (pairs:%s)\n' "$t" "$(median $ratios)" "$ratios"
	printf '%-8s cpu-time ratio vtrain(openblas)/pytorch = %s (pairs:%s)\n' "$t" "$(median $cratios)" "$cratios"
done
