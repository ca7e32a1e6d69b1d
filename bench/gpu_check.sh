#!/usr/bin/env bash
# The GPU check: one prepared run for a CUDA machine, in under 10 minutes.
#
#   bench/gpu_check.sh OUT_DIR [ANIMALS_DIR]     from the repository root
#
# In order of importance, each part under its own time limit so that one slow or failing part
# cannot eat the others' time: the CUDA tests; every command on tiny inputs (cuda_paths: JEM's
# class-conditional chains and fitted Gaussians, the learned initializers and fill, the
# short-run and voxel commands and evaluations; OUT_DIR/cuda_paths.json says how each ended);
# every net's Langevin and training bench (images,
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

part tests 90 "$PYTHON" -m pytest -q -p no:dash -p no:cacheprovider tests/test_gpu.py \
    tests/test_mcmc_execution.py
part cuda_paths 200 "$PYTHON" - "$OUT" "$DEVICE" <<'EOF'
"""Every command on tiny inputs on DEVICE, in-process, each ending in its own line (and in
OUT_DIR/cuda_paths.json): the library's CUDA paths that only a run shows (class-conditional
chains, fitted Gaussians, learned initializers and fill, checkpoints moved to the device)."""
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, "tests")
from _tiny import JEM_CONFIG, JEM_TINY, ROOT, SR_CONFIG, TINY, boxes_and_balls, labelled_bars

from stgconv.cli import main

out, device = Path(sys.argv[1]), sys.argv[2]
work = out / "cuda_paths_work"
work.mkdir(parents=True, exist_ok=True)
w = str(work)


def on_device(args):
    return [f"device={device}" if arg == "device=cpu" else arg for arg in args]


bars = labelled_bars(work / "bars.npz", 9, varied=True)
with np.load(bars) as digits:
    np.savez(work / "digits.npz", x_test=digits["x_train"], y_test=digits["y_train"])
np.savez(work / "noise.npz", x_test=np.full((3, 28, 28), 128, np.uint8))
shapes = boxes_and_balls(12, 16)[:, 0].numpy().astype(np.uint8)
np.savez(work / "shapes.npz", X=shapes, y=np.arange(12) % 2)
np.save(work / "low.npy", shapes[:2, ::4, ::4, ::4].astype(np.float32))
known = (np.random.default_rng(0).random(shapes[:2].shape) >= 0.5).astype(np.uint8)
np.save(work / "partial.npy", np.where(known > 0, shapes[:2], 0.5).astype(np.float32))
np.save(work / "known.npy", known)
Image.new("L", (32, 32)).save(work / "image.png")
(work / "clip").mkdir(exist_ok=True)  # frame images: the GPU machine has no video codec
for t, frame in enumerate(np.random.default_rng(1).integers(0, 256, (12, 16, 16, 3), np.uint8)):
    Image.fromarray(frame).save(work / "clip" / f"frame_{t:02d}.png")
short_run = ["--set", "data.path=builtin:brick", "--set", "data.size=32",
             "--set", "model.layers=[[8, 5, 2], [8, 3, 1]]", "--set", "train.n_iterations=2",
             "--set", "sampler.n_steps=3", "--set", f"device={device}",
             "--set", "model.arch=object", "--set", "model.reference_sigma=null",
             "--set", "chains.mode=noise", "--set", "chains.init=uniform", "--quiet"]
recovery = ["--frames", "12", "--size", "16", "--quiet", "--set", "train.n_iterations=2",
            "--set", "recovery.average_last=1", "--set", "recovery.warmup=1",
            "--set", f"device={device}", "--set", "recovery.init=learned",
            "--set", "recovery.learned.iterations=3", "--set", "recovery.learned.crop_size=8",
            "--set", "recovery.learned.width=8", "--set", "recovery.learned.patterns=2",
            "--set", "recovery.learned.starts=[]"]
on = ["--device", device]
commands = {
    "train jem": ["train", str(JEM_CONFIG), "--data", str(bars), "--out", f"{w}/jem",
                  *on_device(JEM_TINY)],
    "synthesize --class": ["synthesize", f"{w}/jem", "-n", "2", "--class", "1", "--class", "0",
                           "--steps", "3", "--out", f"{w}/jem_samples", *on],
    "eval ood": ["eval", "ood", "--checkpoint", f"{w}/jem", "--inliers", f"{w}/digits.npz",
                 "--outliers", f"{w}/noise.npz", "--json", f"{w}/ood.json", *on],
    "train super-resolution": ["train", str(SR_CONFIG), "--data", f"{w}/shapes.npz",
                               "--out", f"{w}/sr", *on_device(TINY)],
    "super-resolve": ["super-resolve", f"{w}/sr", f"{w}/low.npy", "--out", f"{w}/sr_out", *on],
    "eval super-resolution": ["eval", "super-resolution", "--checkpoint", f"{w}/sr",
                              "--shapes", f"{w}/shapes.npz", "--json", f"{w}/sr.json", *on],
    "eval classification": ["eval", "classification", "--checkpoint", f"{w}/sr", "--shapes",
                            f"{w}/shapes.npz", "--json", f"{w}/classification.json", *on],
    "train recovery": ["train", str(ROOT / "configs" / "voxel" / "recovery_chairs_quick.yaml"),
                       "--data", f"{w}/shapes.npz", "--out", f"{w}/rec",
                       "--set", "data.categories=null", *on_device(TINY)],
    "recover-shape": ["recover-shape", f"{w}/rec", f"{w}/partial.npy", "--known",
                      f"{w}/known.npy", "--out", f"{w}/rec_out", *on],
    "eval recovery-3d": ["eval", "recovery-3d", "--checkpoint", f"{w}/rec", "--shapes",
                         f"{w}/shapes.npz", "--json", f"{w}/recovery_3d.json", *on],
    "train short-run": ["train", *short_run, "--out", f"{w}/short"],
    "reconstruct": ["reconstruct", f"{w}/short", f"{w}/image.png", "--iterations", "2",
                    "--out", f"{w}/reconstructed", *on],
    "interpolate": ["interpolate", f"{w}/short", "--points", "3", "--out",
                    f"{w}/interpolated", *on],
    "eval recovery (learned fill)": ["eval", "recovery", "--video", f"{w}/clip", "--mask",
                                     "missing_frames:0.5", "--json", f"{w}/recovery.json",
                                     *recovery],
}
results = {}
for name, args in commands.items():
    started = time.perf_counter()
    try:
        code = main(args)
    except SystemExit as err:  # argparse's refusals
        code = err.code
    except Exception:  # every failure is reported, and the next command runs
        traceback.print_exc()
        code = "exception"
    results[name] = {"exit": code, "seconds": round(time.perf_counter() - started, 1)}
    print(f"cuda_paths {name:<24} exit={code} seconds={results[name]['seconds']}", flush=True)
(out / "cuda_paths.json").write_text(json.dumps({"device": device, "commands": results},
                                                indent=1))
sys.exit(0 if all(result["exit"] == 0 for result in results.values()) else 1)
EOF
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
    # data=null first: the config's clip settings (frames, fps) are refused for images.
    animals=(--modality image --device "$DEVICE" --samples 16 --set data=null
             --set data.kind=objects --set data.channels=3 --set data.size=64
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
    if (path.name in ("summary.json", "environment.json", "cuda_paths.json")
            or path.stem.startswith("multigrid")):
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
commands = (json.loads((out / "cuda_paths.json").read_text())["commands"]
            if (out / "cuda_paths.json").is_file() else {})
failed = [name for name, result in commands.items() if result["exit"] != 0]
(out / "summary.json").write_text(json.dumps({"device": device, "rows": rows,
                                              "cuda_paths_failed": failed}, indent=1))
print(f"cuda_paths: {len(commands) - len(failed)} of {len(commands)} commands ran"
      + (f"; failed: {', '.join(failed)}" if failed else ""))
for row in rows:
    share = "" if row["share_of_peak"] is None else f"{100 * row['share_of_peak']:.2f}% of peak"
    print(f"{row['bench']:<20} {row['net']:<13} {row['variant'] or '':<19} {row['ran_in']:<5} "
          f"{row['ms_per_step']:8.3f} ms/step {row['speedup_vs_eager']:6.2f}x {share}")
EOF
