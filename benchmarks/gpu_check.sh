#!/usr/bin/env bash
# Everything issue 16 asks of a GPU, in one call on the GPU machine:
#   1. the engine conformance suite on the GPU (cuda.test: every kernel
#      against a float64 reference, every model's lowered program and the
#      random graphs against the Gorgonia CPU path within 1e-4, training
#      steps of every model against the CPU),
#   2. `train --device cuda` on Fashion-MNIST, beside the same run on the
#      CPU (accuracy and time),
#   3. the MLP 784-4096-4096-10 step at batch 1024 against PyTorch on the
#      same GPU (benchmarks/gpu_step.sh),
#   4. a CPU peer and a GPU peer in one decentralized run (verify.tolerance
#      1e-3, every update challenged): spot-checks across devices.
# It prints one JSON line per part and a summary; the GPU's name is in
# the first line.
#
# GPU machines have no Go toolchain: build the bundle where Go is,
#   benchmarks/gpu_check.sh --build        # needs the CUDA headers and stubs:
#                                          # eval "$(../shared/scripts/cuda-sdk.sh)" first
# which writes gpu-bundle/ (cuda.test, vtrain-cuda, Fashion-MNIST; ~50 MB), then
# carry gpu-bundle and run there:
#   benchmarks/gpu_check.sh                # [--steps 200] [--epochs 1]
# (with the device tool: run(command="benchmarks/gpu_check.sh", carry=["gpu-bundle"])).
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=gpu-bundle steps=200 epochs=1 py=${PYTHON:-python3}
if [ "${1:-}" = --build ]; then
	# Stripped and xz-compressed, the bundle is about 50 MB (the device
	# tool carries at most 64 MiB); the run unpacks it.
	rm -rf "$bundle" && mkdir -p "$bundle/fashion-mnist"
	CGO_ENABLED=1 go test -c -tags vtcuda -ldflags="-s -w" -o "$bundle/cuda.test" ./cuda
	CGO_ENABLED=1 go build -tags vtcuda -ldflags="-s -w" -o "$bundle/vtrain-cuda" ./cmd/vtrain
	xz -T0 "$bundle/cuda.test" "$bundle/vtrain-cuda"
	cp /usr/share/datasets/fashion-mnist/*-ubyte* "$bundle/fashion-mnist/"
	du -sh "$bundle"
	exit 0
fi
for f in "$bundle/cuda.test" "$bundle/vtrain-cuda"; do
	if [ -e "$f.xz" ] && [ ! -e "$f" ]; then xz -dk "$f.xz" && chmod +x "$f"; fi
done
while [ $# -gt 0 ]; do
	case "$1" in
	--steps) steps=$2; shift 2 ;;
	--epochs) epochs=$2; shift 2 ;;
	*) echo "unknown flag $1" >&2; exit 2 ;;
	esac
done
bin=$bundle/vtrain-cuda data=$bundle/fashion-mnist
for f in "$bin" "$bundle/cuda.test" "$data"; do
	[ -e "$f" ] || { echo "$f missing: build the bundle first (benchmarks/gpu_check.sh --build, where Go is)" >&2; exit 2; }
done
. benchmarks/cuda_libs.sh # the CUDA 13 libraries on LD_LIBRARY_PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fail=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== 1. conformance on the GPU"
if "$bundle/cuda.test" -test.v -test.count=1 >"$work/conformance.txt" 2>&1; then r=pass; else r=FAIL; fail=1; fi
grep -E '^(=== RUN|--- (PASS|FAIL)|ok|FAIL|PASS)|engine ' "$work/conformance.txt" | grep -v '=== RUN' | tail -60
echo "{\"part\":\"conformance\",\"result\":\"$r\",\"tests\":$(grep -c -- '--- PASS' "$work/conformance.txt"),\"failed\":$(grep -c -- '--- FAIL' "$work/conformance.txt" || true)}"

echo "== 2. train on Fashion-MNIST, GPU and CPU"
for dev in cuda cpu; do
	"$bin" train --device "$dev" --model mlp --epochs "$epochs" --data "$data" --json 2>/dev/null | tail -1 >"$work/train-$dev.json" || fail=1
	echo "{\"part\":\"train\",\"device\":\"$dev\",\"result\":$(cat "$work/train-$dev.json")}"
done

echo "== 3. MLP 784-4096-4096-10, batch 1024, against PyTorch"
benchmarks/gpu_step.sh --vtrain "$bin" --steps "$steps" || fail=1

echo "== 4. a CPU peer and a GPU peer in one run"
a=$("$bin" id --out "$work/gpu" | tail -1) b=$("$bin" id --out "$work/cpu" | tail -1)
sed -e 's/^rounds = 30 .*/rounds = 3/' -e 's/^steps = 400 .*/steps = 100/' -e 's/^rate = 0\.5 .*/rate = 1.0/' \
	-e 's/^newcomer_rate = 0\.75.*/newcomer_rate = 1.0/' -e 's/^tolerance = 0\.0 .*/tolerance = 0.001/' \
	-e "s/^genesis = .*/genesis = [\"$a\", \"$b\"]/" examples/run.toml >"$work/spec.toml"
"$bin" node --spec "$work/spec.toml" --out "$work/gpu" --device cuda --data "$data" --listen /ip4/127.0.0.1/tcp/0 --min-peers 2 --json --linger 20s >"$work/gpu.out" 2>&1 &
gpu=$!
for _ in $(seq 100); do grep -q '"addr":"/ip4/127.0.0.1/tcp/' "$work/gpu.out" && break; sleep 0.2; done
addr=$(grep -o '"addr":"/ip4/127.0.0.1/tcp/[^"]*' "$work/gpu.out" | head -1 | cut -d'"' -f4)
run=$(grep -o '"run_id":"[^"]*' "$work/gpu.out" | head -1 | cut -d'"' -f4)
"$bin" node --join "$addr" --run "$run" --out "$work/cpu" --device cpu --data "$data" --json --linger 20s >"$work/cpu.out" 2>&1 || fail=1
wait $gpu || fail=1
"$bin" audit --json --data "$data" "$work/gpu/ledger.vtl" "$work/cpu/ledger.vtl" | tail -1 >"$work/audit.json" || fail=1
"$py" - "$work" <<'PY' || fail=1
import json, sys
w = sys.argv[1]
a = json.load(open(w + "/audit.json"))
peers = a["ledgers"][0]["peers"]
out = {"part": "cpu+gpu run", "audit_ok": a["ok"],
       "challenges_passed": sum(p["challenges_passed"] for p in peers),
       "challenges_failed": sum(p["challenges_failed"] for p in peers),
       "excluded": [p["peer"] for p in peers if p["excluded_from_round"] is not None]}
print(json.dumps(out))
sys.exit(0 if out["audit_ok"] and out["challenges_passed"] > 0 and not out["challenges_failed"] and not out["excluded"] else 1)
PY
[ $fail = 0 ] && echo "gpu_check: all parts passed" || { echo "gpu_check: a part failed (above)"; exit 1; }
