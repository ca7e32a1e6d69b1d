#!/usr/bin/env bash
# The GPU check: one prepared run for a CUDA machine, in under 10 minutes.
#
#   bench/gpu_check.sh OUT_DIR [ANIMALS_DIR]     from the repository root
#
# In order of importance, each part under its own time limit so that one slow or failing part
# cannot eat the others' time: the CUDA tests; every net's Langevin and training bench (images,
# small video and voxel nets) as a config runs it (precision "auto") and in plain fp32; every
# speed lever alone (bench/levers.py); the paper-size video and voxel nets; torch.compile and
# CUDA graphs on two nets; and, when ANIMALS_DIR (a folder of the 80 animal frames as images,
# see bench/README.md) is given, the multi-grid image bench on them with the fast path on
# (two seeds, for the seed-to-seed spread) and off. Every bench writes its JSON table under
# OUT_DIR; OUT_DIR/summary.json gathers every row with its share of the device's peak (for the
# GPUs in PEAK_TFLOPS below, else null) and OUT_DIR/status.txt says how each part ended.
#
# DEVICE=cpu runs the same plumbing on the CPU with tiny settings (QUICK=1 is implied): a check
# of the script itself, not a measurement.
set -uo pipefail

OUT="${1:?usage: bench/gpu_check.sh OUT_DIR [ANIMALS_DIR]}"
ANIMALS="${2:-}"
DEVICE="${DEVICE:-cuda}"
PYTHON="${PYTHON:-python}"
QUICK="${QUICK:-0}"
[ "$DEVICE" = cpu ] && QUICK=1
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
[ -n "$ANIMALS" ] && ANIMALS="$(cd "$ANIMALS" && pwd)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
: >"$OUT/status.txt"

# Each part: a name, its time limit in seconds, the command. SKIP="name ..." leaves parts out
# (a rerun that needs only some of them).
part() {
    local name=$1 limit=$2
    shift 2
    if [[ " ${SKIP:-} " == *" $name "* ]]; then
        echo "$name skipped" | tee -a "$OUT/status.txt"
        return
    fi
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
    levers=(--quick)
    training=(--set train.n_iterations=2)
else
    small=(--steps 5 --repeats 5)
    images=()
    sizes=()
    levers=()
    training=()
fi

part tests 60 "$PYTHON" -m pytest -q -p no:dash -p no:cacheprovider tests/test_gpu.py \
    tests/test_mcmc_execution.py
for precision in auto fp32; do
    common=(--device "$DEVICE" --precision "$precision" "${small[@]}")
    part "langevin_$precision" 25 "$PYTHON" bench/langevin.py "${common[@]}" "${images[@]}" \
        --json "$OUT/langevin_$precision.json"
    part "video_$precision" 25 "$PYTHON" bench/video.py "${common[@]}" "${sizes[@]}" \
        --json "$OUT/video_$precision.json"
    part "voxel_$precision" 25 "$PYTHON" bench/voxel.py "${common[@]}" "${sizes[@]}" \
        --json "$OUT/voxel_$precision.json"
done
part levers 60 "$PYTHON" bench/levers.py --device "$DEVICE" "${small[@]}" "${levers[@]}" \
    --json "$OUT/levers.json"
if [ "$QUICK" != 1 ]; then
    for precision in auto fp32; do
        common=(--device "$DEVICE" --precision "$precision" "${small[@]}")
        part "video_paper_$precision" 30 "$PYTHON" bench/video.py "${common[@]}" --paper \
            --json "$OUT/video_paper_$precision.json"
        part "voxel_paper_$precision" 30 "$PYTHON" bench/voxel.py "${common[@]}" --paper \
            --json "$OUT/voxel_paper_$precision.json"
    done
    part levers_compile 75 "$PYTHON" bench/levers.py --device "$DEVICE" "${small[@]}" --compile \
        --nets texture st_small --json "$OUT/levers_compile.json"
fi
if [ -n "$ANIMALS" ]; then
    # Quality with the fast path on (seeds 0 and 1: the spread) and off (seed 0).
    animals=(--modality image --device "$DEVICE" --samples 16 --set data.kind=objects
             --set "data.path=$ANIMALS" "${training[@]}")
    for run in auto_0 auto_1 fp32_0; do
        part "multigrid_$run" 50 "$PYTHON" bench/multigrid.py "${animals[@]}" \
            --seed "${run#*_}" --set "sampler.precision=${run%_*}" \
            --work "$OUT/multigrid_work_$run" --json "$OUT/multigrid_$run.json"
    done
fi

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
    if path.name in ("summary.json", "environment.json") or path.stem.startswith("multigrid"):
        continue
    for row in json.loads(path.read_text()):
        ran_in = row.get("ran_in", "fp32")
        share = None
        if peak is not None and row.get("gflops"):
            share = row["gflops"] / (peak["bf16" if "bf16" in ran_in else "fp32"] * 1e3)
        rows.append({"bench": path.stem, "net": row.get("net"), "variant": row.get("variant"),
                     "ran_in": ran_in, "ms_per_step": row.get("ms_per_step"),
                     "gflops": row.get("gflops"), "speedup_vs_eager": row.get("speedup_vs_eager"),
                     "share_of_peak": share, "peak_memory_mb": row.get("peak_memory_mb"),
                     "compile_s": row.get("compile_s")})
(out / "summary.json").write_text(json.dumps({"device": device, "rows": rows}, indent=1))
for row in rows:
    share = "" if row["share_of_peak"] is None else f"{100 * row['share_of_peak']:.2f}% of peak"
    print(f"{row['bench']:<20} {row['net']:<13} {row['variant'] or '':<19} {row['ran_in']:<5} "
          f"{row['ms_per_step']:8.3f} ms/step {row['speedup_vs_eager']:6.2f}x {share}")
EOF
