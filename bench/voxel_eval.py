"""Real-data voxel evaluation: super-resolution 16^3 -> 64^3 on held-out beds and recovery of 70%
missing voxels on held-out chairs, stgconv against the classical baselines, in one table.

The protocol, every step in this script so that a rerun gives the same table:

1. Held-out splits, written into ``--work`` from the files in ``--data``
   (default ``../shared/data/voxel``, next to the repository):

   - ``beds_test43.npz``: the last 43 of the 443 grids of ``beds_64_train.npz`` (64^3);
     ``beds_train400.npz``: the first 400.
   - ``chairs_test40.npz``: the last 40 of the 889 chairs (label 2) of
     ``modelnet10_30_train.npz`` (30^3), in file order; ``chairs_train849.npz``: the others.

2. Models: ``configs/voxel/super_resolution_quick.yaml`` and
   ``configs/voxel/recovery_chairs_quick.yaml`` trained on the training files only (each config
   then takes its first ``data.max_images``: 400 beds, 800 chairs), or the run folders given
   with ``--sr-checkpoint`` / ``--recovery-checkpoint``, whose stored config is checked for
   training data disjoint from the held-out shapes.

3. ``stgconv.evaluation.voxel.eval_super_resolution`` (factor 4) and ``eval_recovery_3d``
   (``--missing`` 0.7, seed 0) on the held-out files; one table: per task and method, the mean
   absolute voxel error on [0, 1], the IoU of the 0.5 level averaged over shapes, and the IoU
   pooled over all shapes' voxels.

Run from the repository root::

    python -m bench.voxel_eval --work runs/voxel_eval --json voxel_eval.json
    python -m bench.voxel_eval --sr-checkpoint runs/voxel_issue4/sr_quick \\
        --recovery-checkpoint runs/voxel_issue4/rec_chairs            # skip the training
    python -m bench.voxel_eval --quick                   # smoke run, generated shapes
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from stgconv import tasks
from stgconv.checkpoint import CheckpointError
from stgconv.config import TrainConfig, load_config, resolve_device
from stgconv.energy.rbm import RBM
from stgconv.evaluation import voxel
from stgconv.io.atomic import atomic_save_npz, atomic_write_json
from stgconv.mcmc import BlockGibbs, DataStart, KnownEntries
from stgconv.metrics import pooled_iou, voxel_errors, voxel_iou
from stgconv.tasks.voxel import load_voxel_model
from stgconv.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "voxel"
BEDS_FILE, MODELNET_FILE = "beds_64_train.npz", "modelnet10_30_train.npz"
N_TEST_BEDS, N_TEST_CHAIRS = 43, 40
CHAIR = 2  # ModelNet10 label order: bathtub, bed, chair, ...
SR_CONFIG = ROOT / "configs" / "voxel" / "super_resolution_quick.yaml"
RECOVERY_CONFIG = ROOT / "configs" / "voxel" / "recovery_chairs_quick.yaml"
FACTOR = 4
FINE_SR = "super-resolution-32"  # the 32^3 -> 64^3 row
# --quick: models of the size of the tests' tiny CLI runs, on generated 16^3 shapes.
QUICK_OVERRIDES = ["data.size=16", "model.layers=[[4,4,2,1],[4,3,2,1]]",
                   "train.n_iterations=2", "sampler.n_steps=3", "sampler.task_steps=3",
                   "train.sample_every=0"]


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


def fingerprint(grids: np.ndarray) -> str:
    """First 16 hex digits of the SHA-256 of the grids' shape and bytes (checks a split file)."""
    digest = hashlib.sha256(str(grids.shape).encode() + np.ascontiguousarray(grids).tobytes())
    return digest.hexdigest()[:16]


def make_splits(data: Path, work: Path) -> dict[str, Any]:
    """Write the held-out and training files (see the module docstring) into ``work``; returns
    their paths, sizes and fingerprints.

    Raises:
        FileNotFoundError: ``data`` lacks one of the two source files.
        ValueError: a source file with too few shapes to hold out the test split.
    """
    if data.is_file():  # else "not found: FILE/beds_64_train.npz"
        raise FileNotFoundError(f"--data {data} is a file: give the folder that holds "
                                f"{BEDS_FILE} and {MODELNET_FILE}")
    missing = [name for name in (BEDS_FILE, MODELNET_FILE) if not (data / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"voxel data not found: {', '.join(str(data / name) for name in missing)} "
            f"(expected {BEDS_FILE} with X (443, 64, 64, 64) and {MODELNET_FILE} with X "
            f"(N, 30, 30, 30) and y); pass --data DIR, or --quick for a smoke run on "
            f"generated shapes")
    work.mkdir(parents=True, exist_ok=True)
    with np.load(data / BEDS_FILE) as archive:
        beds = archive["X"]
    with np.load(data / MODELNET_FILE) as archive:
        chairs = archive["X"][archive["y"] == CHAIR]
    for name, grids, n_test in (("beds", beds, N_TEST_BEDS), ("chairs", chairs, N_TEST_CHAIRS)):
        if len(grids) <= n_test:
            raise ValueError(f"{name}: {len(grids)} shapes, need more than the {n_test} held out")
    splits = {
        "beds_test": (beds[-N_TEST_BEDS:], f"beds_test{N_TEST_BEDS}.npz"),
        "beds_train": (beds[:-N_TEST_BEDS], f"beds_train{len(beds) - N_TEST_BEDS}.npz"),
        "chairs_test": (chairs[-N_TEST_CHAIRS:], f"chairs_test{N_TEST_CHAIRS}.npz"),
        "chairs_train": (chairs[:-N_TEST_CHAIRS], f"chairs_train{len(chairs) - N_TEST_CHAIRS}.npz"),
    }
    out: dict[str, Any] = {}
    for key, (grids, name) in splits.items():
        arrays = {"X": grids}
        if key.startswith("chairs"):  # labelled, so the config's categories: [chair] applies
            arrays["y"] = np.full(len(grids), CHAIR, dtype=np.int64)
        atomic_save_npz(work / name, **arrays)
        out[key] = {"path": str(work / name), "n": len(grids), "sha256_16": fingerprint(grids)}
    out["sources"] = {"beds": str(data / BEDS_FILE), "n_beds": len(beds),
                      "modelnet": str(data / MODELNET_FILE), "n_chairs": len(chairs)}
    return out


def generated_data(root: Path, *, seed: int = 0) -> Path:
    """``--quick``: stand-ins for the two source files in ``root``: 60 beds of 16^3 and 70
    ModelNet-style 14^3 grids (50 "chairs", label 2; 20 label 1), boxes and balls of random
    centres and sizes."""
    rng = np.random.default_rng(seed)

    def shapes(n: int, size: int) -> np.ndarray:
        centres = np.indices((size,) * 3).reshape(3, -1).T + 0.5
        out = np.empty((n, size, size, size), dtype=np.uint8)
        for i in range(n):
            centre = size * (0.3 + 0.4 * rng.random(3))
            radius = size * (0.15 + 0.2 * rng.random())
            inside = (np.abs(centres - centre) <= radius).all(1) if i % 2 == 0 else (
                ((centres - centre) ** 2).sum(1) <= radius**2)
            out[i] = inside.reshape((size,) * 3)
        return out

    root.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(root / BEDS_FILE, X=shapes(60, 16))
    labels = np.r_[np.full(50, CHAIR), np.full(20, 1)]
    np.savez_compressed(root / MODELNET_FILE, X=shapes(70, 14), y=rng.permutation(labels))
    return root


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def train_model(config_path: Path, train_file: str, out: Path, *, device: str,
                overrides: Sequence[str], progress: bool) -> tuple[Path, float]:
    """Train ``config_path`` on ``train_file`` into ``out``; returns the folder and seconds."""
    config = load_config(config_path, [f"data.path={train_file}", f"out_dir={out}",
                                       f"device={device}", *overrides])
    started = time.perf_counter()
    run = tasks.train(config, overwrite=True, progress=progress)  # a re-run replaces its own runs
    return run, time.perf_counter() - started


def training_source(checkpoint: Path, *, source_file: str, train_part: str, n_source: int,
                    n_test: int, categories: list[str] | None) -> dict[str, Any]:
    """What a checkpoint was trained on, from its stored config, and whether that is verifiably
    disjoint from the held-out last ``n_test`` of the ``n_source`` shapes of ``source_file``:
    either our training-part file ``train_part``, or ``source_file`` itself (same categories) with
    ``data.max_images <= n_source - n_test`` (the loader takes the first ``max_images``)."""
    _, config, _ = load_voxel_model(checkpoint, device="cpu")
    data = config.data
    name = Path(data.path).name
    same_categories = (list(data.categories) if data.categories else None) == categories
    if name == train_part and same_categories:
        disjoint, why = True, f"trained on {name}, the training part written by this script"
    elif name == source_file and same_categories and data.max_images is not None \
            and data.max_images <= n_source - n_test:
        disjoint, why = True, (f"trained on the first {data.max_images} of {n_source} in "
                               f"{name}; the last {n_test} are held out")
    else:
        disjoint, why = False, (f"cannot verify: trained on {data.path} (categories "
                                f"{data.categories}, max_images {data.max_images})")
    return {"checkpoint": str(checkpoint), "config": config.name, "arch": config.model.arch,
            "data_path": data.path, "max_images": data.max_images,
            "iterations": config.train.n_iterations, "disjoint": disjoint, "why": why}


def rbm_recovery_row(train_file: str, test_file: str, *, hidden: int, updates: int,
                     missing: float, seed: int) -> dict[str, Any]:
    """The restricted Boltzmann machine's row of the recovery table: a binary RBM over the
    flattened training chairs (CD-1, batch 100, visible biases at the data's rates), then for
    every held-out chair with the evaluation's own hidden voxels (same seed, same draw) 200
    block-Gibbs sweeps with the seen voxels clamped, scored on the mean of ``p(v | h)`` over the
    last 100 (the posterior mean, at the 0.5 level for IoU)."""
    grids = torch.from_numpy(np.load(train_file)["X"]).float()
    data = grids.flatten(1)
    generator = torch.Generator().manual_seed(seed)
    rbm = RBM(data.shape[1], hidden, generator=generator)
    with torch.no_grad():
        rate = data.mean(0).clamp(1e-3, 1 - 1e-3)
        rbm.visible_bias.copy_((rate / (1 - rate)).log())
    trainer = Trainer(rbm, BlockGibbs(n_steps=1), DataStart(), data,
                      train=TrainConfig(batch_size=100, lr=0.01, betas=(0.5, 0.999)),
                      generator=generator)
    started = time.perf_counter()
    for _ in range(updates):
        trainer.step()
    train_seconds = time.perf_counter() - started
    truth = voxel.load_eval_shapes(test_file)
    known = voxel.random_known(tuple(truth.shape), missing,
                               generator=torch.Generator().manual_seed(seed))
    observed = torch.where(known, truth, torch.zeros_like(truth)).flatten(1)
    clamp = KnownEntries(observed, known.flatten(1))
    started = time.perf_counter()
    sweep_once = BlockGibbs(n_steps=1)
    with torch.no_grad():
        v, total = clamp.project(torch.zeros_like(observed)), torch.zeros_like(observed)
        for sweep in range(200):
            v = sweep_once.run(rbm, v, constraint=clamp, generator=generator)
            if sweep >= 100:
                total += rbm.visible_mean(rbm.sample_hidden(v, generator=generator))
    mean = torch.where(known, truth, (total / 100).reshape(truth.shape))
    a, b = mean >= 0.5, truth >= 0.5
    return {"error": voxel_errors(mean, truth, where=~known).mean().item(),
            "iou": voxel_iou(mean, truth).mean().item(),
            "iou_pooled": pooled_iou(int((a & b).sum()), int((a | b).sum())),
            "seconds": time.perf_counter() - started, "train_seconds": train_seconds,
            "hidden": hidden, "updates": updates}


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def table_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per task and method, ours first, then where our chain started (super-resolution:
    ``start:<method>``, what the chain adds is the difference), then the baselines by error."""
    rows = []
    for task, table in results.items():
        order = sorted(table["errors"], key=lambda name: (name != "stgconv", table["errors"][name]))
        for method in order:
            rows.append({"task": task, "method": method, "error": table["errors"][method],
                         "iou": table["iou"][method], "iou_pooled": table["iou_pooled"][method],
                         "seconds": table["seconds"][method]})
            if method == "stgconv" and "start" in table:
                start = table["start"]
                rows.append({"task": task, "method": f"start:{start['method']}",
                             **{key: start[key] for key in ("error", "iou", "iou_pooled",
                                                            "seconds")}})
    return rows


def verdict(table: dict[str, Any]) -> str:
    """Whether ours beats every baseline on error and on (per-shape) IoU."""
    baselines = [name for name in table["errors"] if name != "stgconv"]
    best_error = min(baselines, key=table["errors"].get)
    best_iou = max(baselines, key=table["iou"].get)
    ok = (table["errors"]["stgconv"] < table["errors"][best_error]
          and table["iou"]["stgconv"] > table["iou"][best_iou])
    # A baseline exact on every voxel (shapes made of whole blocks) leaves no ratio to print.
    ratio = (f"{table['errors']['stgconv'] / table['errors'][best_error]:.2f}x"
             if table["errors"][best_error] > 0 else "the baseline exact")
    return (f"{'beats' if ok else 'does NOT beat'} the best baselines: error "
            f"{table['errors']['stgconv']:.4f} vs {best_error} {table['errors'][best_error]:.4f} "
            f"({ratio}), IoU {table['iou']['stgconv']:.4f} vs {best_iou} "
            f"{table['iou'][best_iou]:.4f}")


def format_report(results: dict[str, dict[str, Any]], models: dict[str, dict[str, Any]],
                  env: dict[str, Any]) -> str:
    sr, rec = results["super-resolution"], results["recovery-3d"]
    lines = [
        f"# Voxel evaluation, {env['device']}, torch {env['torch']}, {env['threads']} threads, "
        f"seed {env['seed']}",
        f"# super-resolution: {sr['low_size']}^3 block means -> {sr['size']}^3 "
        f"({FINE_SR}: {results[FINE_SR]['low_size']}^3 -> {sr['size']}^3, the same model), "
        f"{sr['n_shapes']} held-out shapes ({Path(sr['shapes']).name}), {sr['steps']} steps; "
        "error = mean |x - truth| over all voxels; stgconv's shapes binary "
        f"({sr['binary']}) from the {sr['start']['method']} start",
        f"# recovery-3d: {100 * rec['missing_fraction']:.1f}% of the voxels hidden (seed "
        f"{rec['seed']}), {rec['n_shapes']} held-out shapes ({Path(rec['shapes']).name}, "
        f"{rec['size']}^3 padded to {rec['model_size']}^3), {rec['steps']} steps from "
        f"{rec['init']}; error over the missing voxels",
        "# IoU = of the 0.5 level, mean over shapes; IoU pooled = over all shapes' voxels",
    ]
    header = f"{'task':<21}{'method':<20}{'error':>8}{'IoU':>8}{'IoU pooled':>12}{'seconds':>9}"
    lines += [header, "-" * len(header)]
    for row in table_rows(results):
        lines.append(f"{row['task']:<21}{row['method']:<20}{row['error']:>8.4f}{row['iou']:>8.4f}"
                     f"{row['iou_pooled']:>12.4f}{row['seconds']:>9.1f}")
    for task, table in results.items():
        model = models[task]
        lines.append(f"# {task}: stgconv {verdict(table)}")
        lines.append(f"#   model {model['checkpoint']} ({model['config']}, {model['arch']}, "
                     f"{model['iterations']} iterations"
                     + (f", trained here in {model['train_seconds']:.0f} s" if
                        model.get("train_seconds") is not None else ", reused")
                     + f"); {'disjoint' if model['disjoint'] else 'WARNING'}: {model['why']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


# task -> its quick config, which split, the source file and the config's categories.
TASKS = {
    "super-resolution": (SR_CONFIG, "beds", BEDS_FILE, None),
    "recovery-3d": (RECOVERY_CONFIG, "chairs", MODELNET_FILE, ["chair"]),
}


def prepare(args: argparse.Namespace, data: Path, work: Path) -> dict[str, Any]:
    """Check the inputs (the device, the checkpoints to reuse) and write the splits (returned,
    as :func:`make_splits` returns them): what a refused input fails in, before any training.

    Raises:
        FileNotFoundError, ValueError, CheckpointError: an input that cannot be used.
    """
    resolve_device(args.device)
    given = [args.sr_checkpoint, args.recovery_checkpoint]
    for checkpoint in filter(None, given):  # before any split is written
        load_voxel_model(Path(checkpoint), device="cpu")
    return make_splits(data, work)


def run(args: argparse.Namespace, splits: dict[str, Any], work: Path) -> dict[str, Any]:
    """The whole protocol on the :func:`prepare`'d ``splits``; returns the report that
    ``--json`` writes."""
    started = time.perf_counter()
    given = {"super-resolution": args.sr_checkpoint, "recovery-3d": args.recovery_checkpoint}
    models: dict[str, dict[str, Any]] = {}
    for task, (config, kind, source, categories) in TASKS.items():
        train, test = splits[f"{kind}_train"], splits[f"{kind}_test"]
        checkpoint, train_seconds = given[task], None
        if checkpoint is None:
            checkpoint, train_seconds = train_model(
                config, train["path"], work / f"{kind}_{config.stem}", device=args.device,
                overrides=[f"seed={args.seed}", *(QUICK_OVERRIDES if args.quick else [])],
                progress=not args.quiet)
        models[task] = {
            **training_source(Path(checkpoint), source_file=source,
                              train_part=Path(train["path"]).name,
                              n_source=train["n"] + test["n"], n_test=test["n"],
                              categories=categories),
            "train_seconds": train_seconds,
        }
    results: dict[str, dict[str, Any]] = {}
    eval_started = time.perf_counter()
    results["super-resolution"] = voxel.eval_super_resolution(
        models["super-resolution"]["checkpoint"], splits["beds_test"]["path"], factor=FACTOR,
        seed=args.seed, out_dir=work / "sr_eval", json_path=work / "sr_eval.json",
        device=args.device)
    # 32^3 -> 64^3 with the same model: its energy is a prior on 64^3 beds whatever the factor
    # its training chains kept.
    models[FINE_SR] = models["super-resolution"]
    results[FINE_SR] = voxel.eval_super_resolution(
        models["super-resolution"]["checkpoint"], splits["beds_test"]["path"], factor=2,
        seed=args.seed, out_dir=work / "sr32_eval", json_path=work / "sr32_eval.json",
        device=args.device)
    results["recovery-3d"] = voxel.eval_recovery_3d(
        models["recovery-3d"]["checkpoint"], splits["chairs_test"]["path"], missing=args.missing,
        seed=args.seed, out_dir=work / "recovery_eval", json_path=work / "recovery_eval.json",
        device=args.device)
    if args.rbm:
        row = rbm_recovery_row(splits["chairs_train"]["path"], splits["chairs_test"]["path"],
                               hidden=args.rbm, updates=args.rbm_updates, missing=args.missing,
                               seed=args.seed)
        table = results["recovery-3d"]
        for metric in ("error", "iou", "iou_pooled", "seconds"):
            table["errors" if metric == "error" else metric]["rbm"] = row[metric]
        table["rbm"] = row
    env = {"device": str(resolve_device(args.device)), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "load_average_at_end": os.getloadavg(), "quick": args.quick, "seed": args.seed}
    return {"rows": table_rows(results), "tables": results, "models": models, "splits": splits,
            "env": env, "eval_seconds": time.perf_counter() - eval_started,
            "seconds": time.perf_counter() - started}


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    sources = parser.add_mutually_exclusive_group()
    sources.add_argument("--data", default=None, help=f"folder with {BEDS_FILE} and "
                         f"{MODELNET_FILE} (default {common.from_repository(DEFAULT_DATA)})")
    parser.add_argument("--work", type=common.output_folder, default=None,
                        help="splits, run folders and renders go here "
                        "(default runs/voxel_eval; --quick: a temporary folder)")
    parser.add_argument("--sr-checkpoint", help="a trained 64^3 super-resolution run folder to "
                        "reuse instead of training super_resolution_quick.yaml")
    parser.add_argument("--recovery-checkpoint", help="a trained 32^3 recovery run folder to "
                        "reuse instead of training recovery_chairs_quick.yaml")
    parser.add_argument("--missing", type=float, default=0.7, help="fraction hidden")
    parser.add_argument("--rbm", type=common.count(0), default=0, metavar="HIDDEN",
                        help="also train a binary RBM with this many hidden units on the training "
                             "chairs and add its recovery row (0: no RBM)")
    parser.add_argument("--rbm-updates", type=common.count(1), default=600,
                        help="CD-1 updates of 100 chairs for --rbm")
    parser.add_argument("--seed", type=common.seed_number, default=0,
                        help="training seed of both models and seed of the evaluations")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default auto)")
    parser.add_argument("--json", metavar="FILE", type=common.json_path,
                        help="also write the table and protocol as JSON")
    parser.add_argument("--quiet", action="store_true", help="no training progress bars")
    sources.add_argument("--quick", action="store_true", help="smoke run: generated 16^3 / 14^3 "
                        "shapes in a temporary --data, 2 training iterations, 3 Langevin steps")
    args = parser.parse_args(argv)
    if not 0.0 < args.missing < 1.0:
        parser.error(f"--missing must be in (0, 1), got {args.missing}")
    with tempfile.TemporaryDirectory(prefix="voxel_eval_") as tmp:
        if args.quick:
            data = generated_data(Path(tmp) / "data")
            work = Path(args.work) if args.work else Path(tmp) / "work"
        else:
            data = Path(args.data) if args.data else DEFAULT_DATA
            work = Path(args.work) if args.work else ROOT / "runs" / "voxel_eval"
        try:  # only the inputs' errors are refusals: one in a training is a failure
            splits = prepare(args, data, work)
        except (FileNotFoundError, ValueError, CheckpointError) as err:
            parser.error(str(err))
        report = run(args, splits, work)
    try:  # written first, as bench.common.report: a print that fails must not cost the rows
        if args.json:
            atomic_write_json(args.json, {**report, "options": common.options(args)})
    finally:
        print(format_report(report["tables"], report["models"], report["env"]))
        print(f"# {report['seconds']:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
