#!/usr/bin/env bash
# One training step on a GPU, vtrain's CUDA engine against PyTorch on the
# same GPU: the MLP 784-4096-4096-10 at batch 1024, float32 (no TF32 on
# either side: cuBLAS's default math mode, PyTorch's default), SGD with
# momentum. Prints both and the throughput ratio vtrain / PyTorch.
#
# GPU machines usually have no Go toolchain: build the binary where Go is,
#   eval "$(../shared/scripts/cuda-sdk.sh)"        # or a real CUDA toolkit
#   go build -tags vtcuda -o vtrain-cuda ./cmd/vtrain
# carry it over, and run there:
#   benchmarks/gpu_step.sh --vtrain ./vtrain-cuda [--device cuda:0] [--steps 200]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./vtrain-cuda device=cuda:0 steps=200 py=${PYTHON:-python3}
while [ $# -gt 0 ]; do
	case "$1" in
	--vtrain) bin=$2; shift 2 ;;
	--device) device=$2; shift 2 ;;
	--steps) steps=$2; shift 2 ;;
	*) echo "unknown flag $1" >&2; exit 2 ;;
	esac
done
. benchmarks/cuda_libs.sh # the CUDA 13 libraries on LD_LIBRARY_PATH
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
v=$("$bin" bench step --device "$device" --model mlp --hidden 4096,4096 --batch 1024 --steps "$steps" --warmup 20 --json | tail -1)
t=$(cd benchmarks && "$py" torch_step.py --device "$device" --model mlp --hidden 4096,4096 --batch 1024 --steps "$steps" --warmup 20 | tail -1)
echo "vtrain:  $v"
echo "pytorch: $t"
"$py" -c "import json,sys; v=json.loads(sys.argv[1]); t=json.loads(sys.argv[2]); print('vtrain %.3f ms/step, PyTorch %.3f ms/step: throughput ratio %.2f' % (v['ms_per_step'], t['ms_per_step'], t['ms_per_step']/v['ms_per_step']))" "$v" "$t"
