#!/usr/bin/env bash
# The GPU check: one prepared run for a CUDA machine, in about 8 minutes at most.
#
#   bench/gpu_check.sh OUT_DIR          from the repository root, in the project's environment
#
# It runs the CUDA tests, then every net's Langevin and training bench (images, small and paper
# video, small and paper voxel nets) in fp32 and with bfloat16 autocast (`--precision bf16`),
# then the multi-grid bench's quick mode on the GPU, each under its own time limit so that one
# slow or failing part cannot eat the others' time. Every bench writes its JSON table under
# OUT_DIR; OUT_DIR/summary.json gathers every row with its share of the device's peak (for the
# GPUs in PEAK_TFLOPS below, else null) and OUT_DIR/status.txt says how each part ended.
#
# DEVICE=cpu runs the same plumbing on the CPU with tiny settings (QUICK=1 is implied): a check
# of the script itself, not a measurement.
set -uo pipefail

OUT="${1:?usage: bench/gpu_check.sh OUT_DIR}"
DEVICE="${DEVICE:-cuda}"
PYTHON="${PYTHON:-python}"
QUICK="${QUICK:-0}"
[ "$DEVICE" = cpu ] && QUICK=1
mkdir -p "$OUT"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
: >"$OUT/status.txt"

# Each part: a name, its time limit in seconds, the command. Limits sum to under 8 minutes.
part() {
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local code=$?
    echo "$name exit=$code seconds=$((SECONDS - started))" | tee -a "$OUT/status.txt"
}

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.csv" 2>&1
fi
"$PYTHON" -c 'import torch, json, sys; json.dump({"torch": torch.__version__,
    "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0)
    if torch.cuda.is_available() else "cpu"}, sys.stdout)' >"$OUT/environment.json"

if [ "$QUICK" = 1 ]; then
    small=(--steps 2 --repeats 2 --warmup 1)
    images=(--batch 2)  # the texture net's receptive field needs the default 64x64
    sizes=(--batch 2 --size 16)
else
    small=(--steps 5 --repeats 5)
    images=()
    sizes=()
fi

part tests 90 "$PYTHON" -m pytest -q -p no:dash tests/test_gpu.py
for precision in fp32 bf16; do
    common=(--device "$DEVICE" --precision "$precision" "${small[@]}")
    part "langevin_$precision" 30 "$PYTHON" bench/langevin.py "${common[@]}" "${images[@]}" \
        --json "$OUT/langevin_$precision.json"
    part "video_$precision" 30 "$PYTHON" bench/video.py "${common[@]}" "${sizes[@]}" \
        --json "$OUT/video_$precision.json"
    part "voxel_$precision" 30 "$PYTHON" bench/voxel.py "${common[@]}" "${sizes[@]}" \
        --json "$OUT/voxel_$precision.json"
    if [ "$QUICK" != 1 ]; then
        part "video_paper_$precision" 40 "$PYTHON" bench/video.py "${common[@]}" --paper \
            --json "$OUT/video_paper_$precision.json"
        part "voxel_paper_$precision" 40 "$PYTHON" bench/voxel.py "${common[@]}" --paper \
            --json "$OUT/voxel_paper_$precision.json"
    fi
done
part multigrid 60 "$PYTHON" bench/multigrid.py --quick --device "$DEVICE" --samples 4 \
    --work "$OUT/multigrid_work" --json "$OUT/multigrid.json"

"$PYTHON" - "$OUT" <<'EOF'
"""Every bench row of OUT_DIR in one summary.json, with its share of the device's peak."""
import json
import sys
from pathlib import Path

# Dense peak TFLOP/s from the vendors' data sheets: fp32 (CUDA cores) and bf16 (tensor cores).
PEAK_TFLOPS = {"H200": {"fp32": 67.0, "bf16": 989.0}, "H100": {"fp32": 67.0, "bf16": 989.0},
               "A100": {"fp32": 19.5, "bf16": 312.0}}
out = Path(sys.argv[1])
device = json.loads((out / "environment.json").read_text())["device"]
peak = next((p for name, p in PEAK_TFLOPS.items() if name in device), None)
rows = []
for path in sorted(out.glob("*.json")):
    if path.name in ("summary.json", "environment.json", "multigrid.json"):
        continue
    precision = "bf16" if "bf16" in path.stem else "fp32"
    for row in json.loads(path.read_text()):
        share = None
        if peak is not None and row.get("gflops"):
            share = row["gflops"] / (peak[precision] * 1e3)
        rows.append({"bench": path.stem, "net": row.get("net"), "precision": precision,
                     "ms_per_step": row.get("ms_per_step"), "gflops": row.get("gflops"),
                     "speedup_vs_eager": row.get("speedup_vs_eager"),
                     "share_of_peak": share, "peak_memory_mb": row.get("peak_memory_mb")})
(out / "summary.json").write_text(json.dumps({"device": device, "rows": rows}, indent=1))
for row in rows:
    print(row)
EOF
