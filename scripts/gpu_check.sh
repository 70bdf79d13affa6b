#!/usr/bin/env bash
# One prepared run for a lent GPU (about 5 minutes): the tests that use CUDA, then the 4K and 8K
# inference benchmark in bf16 (and GLSGN in fp32 at 4K for comparison). Results go to $OUT
# (default /tmp/gpu_check). The GPU machine's image has torch, torchvision and timm; anything
# else glsgn imports travels as wheels in .whl/ (see README, "GPUs").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
python3 - <<'PY' || exit 1
import importlib, sys
missing = [m for m in ("torch", "numpy", "yaml", "tqdm", "pytest") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: missing Python packages {missing}: carry them as wheels in .whl/")
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

echo "== CUDA tests"
timeout 120 python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_restore.py 2>&1 \
  | tee "$OUT/cuda_tests.log"
echo "== inference benchmark, bf16, 4K and 8K"
timeout 240 python3 benchmarks/uhr_inference.py --sizes 4K 8K --device cuda --precision bf16 \
  --json "$OUT/bench_bf16.json" 2>&1 | tee "$OUT/bench_bf16.log"
echo "== inference benchmark, fp32, 4K"
timeout 90 python3 benchmarks/uhr_inference.py --sizes 4K --device cuda --precision fp32 \
  --json "$OUT/bench_fp32.json" 2>&1 | tee "$OUT/bench_fp32.log"
