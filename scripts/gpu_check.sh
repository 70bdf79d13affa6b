#!/usr/bin/env bash
# One prepared run for a lent GPU (about 8 minutes): the tests that use CUDA; the 4K and 8K
# inference benchmark in bf16 (and GLSGN in fp32 at 4K for comparison); 200 training steps on
# 4K pairs in bf16 with samples per second and peak memory. Results go to $OUT
# (default /tmp/gpu_check). The GPU machine's image has torch, torchvision and timm; anything
# else glsgn imports travels as wheels in .whl/ (see README, "GPUs"). dvclive may be missing:
# training then logs its metrics instead of writing them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# The tests run with torch.use_deterministic_algorithms(True); cuBLAS then needs this.
export CUBLAS_WORKSPACE_CONFIG=:4096:8
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
python3 - <<'PY' || exit 1
import importlib, sys
need = ("torch", "numpy", "yaml", "tqdm", "pytest", "cv2", "tifffile", "PIL")
missing = [m for m in need if importlib.util.find_spec(m) is None]
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
echo "== training: 4K pairs, 200 steps, crops of 512, batch 4, bf16"
WORK=/tmp/gpu_train
rm -rf "$WORK" && mkdir -p "$WORK"
python3 - "$WORK" <<'PY'
import sys, yaml
work = sys.argv[1]
p = yaml.safe_load(open("params.yaml"))
p["data"].update(size=[2160, 3840], splits={"train": 4, "val": 1, "test": 1})
p["train"].update(runs={"reflection-full": {"task": "reflection", "variant": "full"}},
                  steps=200, batch_size=4, crop=512, warmup=20, val_every=200,
                  checkpoint_every=100, log_every=20, amp="bf16", workers=4)
yaml.safe_dump(p, open(f"{work}/params.yaml", "w"), sort_keys=False)
PY
ln -s "$PWD/assets/starter" "$WORK/raw"
(cd "$WORK" && timeout 120 python3 -m glsgn prepare reflection --raw raw --quiet \
  && timeout 300 python3 -m glsgn train reflection-full --quiet) 2>&1 | tee "$OUT/train.log"
# With dvclive the summary is a file; without it the figures are in the log.
cat "$WORK/dvclive/reflection-full/metrics.json" 2>/dev/null | tee "$OUT/train_metrics.json" \
  || grep -E "samples_per_s|peak_cuda_mb" "$OUT/train.log" | tail -4
