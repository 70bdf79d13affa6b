#!/usr/bin/env bash
# One prepared run for a lent GPU (under 10 minutes: one deadline bounds all the parts),
# ending in one table:
#   the CUDA tests (exactness of streamed restore, fp32 without TF32, every variant; the cap);
#   restore 4K and 8K in bf16 with patch auto, 4K under a 2 GB cap, fullres whole for reference;
#   the loader's samples/s per worker on 4K pairs; the model step alone (glsgn and fullres, crop
#   512, batch 4, bf16); the UHR sprint (uhr/gpu/profile.yaml): full, fullres_flops and
#   local_only on haze at 4K, 960-px crops, 400 samples each, bf16: samples/s, peak memory,
#   test PSNR.
# Results go to $OUT (default /tmp/gpu_check). The GPU machine's image has torch, torchvision,
# timm, opencv, tifffile, pillow and pytest; `make gpu-wheels` puts pydantic's wheels in .whl/
# (carry .whl and uhr/photos, the real photographs, which the sprint prepares at 4K; without
# them it runs on dead-leaves scenes). dvclive is optional (training then logs its metrics).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# The tests run with torch.use_deterministic_algorithms(True); cuBLAS then needs this.
export CUBLAS_WORKSPACE_CONFIG=:4096:8
# One deadline for everything before the table: each part's timeout is its own limit or what
# is left, whichever is less, and a part with under 20 s left is skipped; so the table always
# prints within a 10-minute call (9 min 20 s of parts, most important first).
DEADLINE=$((SECONDS + 560))
t() {  # t LIMIT: the timeout for the next part (0: skip it)
  local left=$((DEADLINE - SECONDS))
  if [ "$left" -lt 20 ]; then echo 0; elif [ "$1" -lt "$left" ]; then echo "$1"; else echo "$left"; fi
}
run() {  # run LIMIT COMMAND...: the command under its timeout, or a note that it was skipped
  local limit; limit=$(t "$1"); shift
  if [ "$limit" -eq 0 ]; then echo "skipped (no time left): $*"; return 124; fi
  timeout "$limit" "$@"
}
if compgen -G ".whl/*.whl" >/dev/null; then
  # the wheels this Python takes (.whl holds pydantic-core for several Python versions)
  run 60 python3 -m pip install -q --no-index --find-links .whl --no-compile --no-cache-dir \
    --target /tmp/site pydantic && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
python3 - <<'PY' || exit 1
import importlib, sys
need = ("torch", "numpy", "yaml", "tqdm", "pytest", "cv2", "tifffile", "PIL", "timm", "pydantic")
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: missing Python packages {missing}: carry them as wheels in .whl/ "
             "(make gpu-wheels)")
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

echo "== CUDA tests"
run 120 python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_restore.py 2>&1 \
  | tail -15 | tee "$OUT/cuda_tests.log"
B="python3 benchmarks/uhr_inference.py --device cuda --precision bf16 --repeat 3"
echo "== restore, bf16, patch auto: 4K and 8K; fullres whole for reference"
run 100 $B --sizes 4K 8K --patch-size auto --cases glsgn:stream fullres:whole \
  --json "$OUT/restore_auto.json" 2>&1 | tail -8

echo "== UHR sprint (uhr/gpu): full, fullres_flops, local_only on haze at 4K"
# the profile's params.yaml is committed; its folder is the working directory, as under DVC
SPRINT="$PWD/uhr/gpu"
rm -rf "$SPRINT"/{data,checkpoints,models,metrics,dvclive}
(cd "$SPRINT" && run 100 python3 -m glsgn prepare haze --quiet) > "$OUT/sprint.log" 2>&1
for r in haze-full haze-fullres_flops haze-local_only; do
  (cd "$SPRINT" && run 60 python3 -m glsgn train "$r" --quiet \
    && run 25 python3 -m glsgn evaluate "$r" --quiet) >> "$OUT/sprint.log" 2>&1
  cp "$SPRINT/metrics/$r/seed0.json" "$OUT/sprint-$r.json" 2>/dev/null
  cp "$SPRINT/dvclive/$r/seed0/metrics.json" "$OUT/sprint-$r.live.json" 2>/dev/null
done
tail -3 "$OUT/sprint.log"

echo "== restore 4K, bf16, under a 2 GB cap"
run 45 $B --sizes 4K --patch-size auto --max-memory 2GB --cases glsgn:stream \
  --json "$OUT/restore_cap.json" 2>&1 | tail -3
echo "== loader (one process) and model step"
run 60 python3 benchmarks/train_throughput.py --sections data --pairs 2 --samples 100 \
  2>&1 | tee "$OUT/loader.log" | tail -8
run 60 python3 benchmarks/train_throughput.py --sections step --device cuda --steps 20 \
  --precision bf16 2>&1 | tee "$OUT/step.log" | tail -12
echo "== restore 4K at patch 512; and fp32 (TF32 as torch defaults it), patch auto"
run 40 $B --sizes 4K --patch-size 512 --cases glsgn:stream --json "$OUT/restore_512.json" \
  2>&1 | tail -3
run 40 python3 benchmarks/uhr_inference.py --device cuda --precision fp32 --repeat 3 \
  --sizes 4K --patch-size auto --cases glsgn:stream --json "$OUT/restore_fp32.json" 2>&1 | tail -3

python3 - "$OUT" <<'PY'
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = []
def bench(name, label):
    try:
        for r in json.loads((out / name).read_text()):
            what = f"restore {r['size']} {r['model']} {r['mode']} {r.get('precision', '')}"
            if "error" in r:
                rows.append((f"{what} {label}", r["error"], ""))
                continue
            patch = r.get("patch_used", "whole")
            rows.append((f"{what} {label}, patch {patch}", f"{r['seconds'] * 1000:.0f} ms",
                         f"{r.get('peak_cuda_mb', '?')} MB"))
    except (OSError, ValueError) as e:
        rows.append((name, f"missing ({e.__class__.__name__})", ""))
bench("restore_auto.json", "auto")
bench("restore_cap.json", "auto, cap 2GB")
bench("restore_512.json", "")
bench("restore_fp32.json", "auto")
tests = (out / "cuda_tests.log").read_text().strip().splitlines()
rows.append(("CUDA tests", tests[-1] if tests else "no output", ""))
for log in ("loader.log", "step.log"):
    text = (out / log).read_text() if (out / log).exists() else ""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and (cells[0] == "step" or cells[0] == "data" and cells[3] == "1/s"):
            rows.append((cells[1], cells[2], cells[3]))
sprint = (out / "sprint.log").read_text() if (out / "sprint.log").exists() else ""
# train.log lines of each run: "step N train/samples_per_s V", in run order
chunks = re.split(r"train (haze-\w+) seed 0 on", sprint)[1:]
logs = dict(zip(chunks[0::2], chunks[1::2]))
for run in ("haze-full", "haze-fullres_flops", "haze-local_only"):
    text = logs.get(run, "")
    rate = re.findall(r"train/samples_per_s ([0-9.e+-]+)", text)
    peak = re.findall(r"train/peak_cuda_mb ([0-9.e+-]+)", text)
    try:  # with dvclive installed the figures are in its summary, not the log
        live = json.loads((out / f"sprint-{run}.live.json").read_text())["train"]
        rate, peak = [live["samples_per_s"]], [live["peak_cuda_mb"]]
    except (OSError, ValueError, KeyError):
        pass
    try:
        m = json.loads((out / f"sprint-{run}.json").read_text())
        score = f"test PSNR {m['psnr']:.2f} dB"
    except (OSError, ValueError, KeyError):
        score = "no score (see sprint.log)"
    rows.append((f"UHR sprint {run} (4K, crop 960, batch 4, bf16, 400 samples)",
                 f"{float(rate[-1]):.1f} samples/s; {score}" if rate else score,
                 f"{float(peak[-1]):.0f} MB" if peak else ""))
print("\n| check | value | memory / unit |\n|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
PY
