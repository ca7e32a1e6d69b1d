"""Learned 3D features on held-out shapes, as training goes on (issue "Learning that pays",
goal 5): a descriptor trained without labels, its pooled conv responses read out by a linear
classifier, against the same network untrained and the raw voxels.

The protocol, every step in this script so that a rerun gives the same table:

1. Split (``--held-out`` 0.2 of ``--shapes``, ``--split-seed`` 0): per class, in label order,
   the class's rows permuted by ``numpy.random.default_rng(split_seed)`` and the first
   ``round(fraction * n)`` held out; ``fit.npz`` and ``held_out.npz`` in ``--work`` (rows in
   file order, class names kept where the file has them).
2. For each of ``--seeds``: ``stgconv train CONFIG --data fit.npz --set seed=S`` (plus
   ``--set`` overrides) in segments that end at each of ``--at`` iterations, each segment
   resuming the last; the seeds' runs side by side, one process each.
3. After every segment: ``stgconv eval classification --checkpoint RUN --shapes fit.npz
   --test held_out.npz --seed S`` (the untrained control's weights from the same seed).

``--budget-s`` bounds the whole run's wall clock: a segment is started only when, at the pace
of the seed's last segment, it and its evaluation end inside the budget. The table: per seed
and iterations, accuracy of the learned features, of the untrained network's and of the raw
voxels on the held-out shapes, the margins, and the training's cumulative wall seconds.

Run from the repository root::

    python -m bench.features --work runs/features --json features.json
    python -m bench.features --set model.arch=desc32 --device cuda --at 250 500 1000 2000 \\
        --budget-s 420                                  # the paper's network, on a GPU
    python -m bench.features --quick                   # smoke run, generated shapes
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from stgconv.checks import class_numbers
from stgconv.io.atomic import atomic_save_npz
from stgconv.modalities import VOXELS

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "voxel" / "features_modelnet10_quick.yaml"
SHAPES = ROOT.parent / "shared" / "data" / "voxel" / "modelnet10_30_train.npz"
# --quick: tiny grids of two classes a linear read-out can tell apart, the small network, a few
# iterations; the numbers mean nothing, the plumbing is the same.
QUICK_SETS = ["model.arch=desc32_small", "data.size=16", "train.batch_size=4",
              "sampler.n_steps=2", "train.checkpoint_every=0", "train.sample_every=0"]
# Config keys the bench sets for every training from its own options. A --set of seed or
# train.n_iterations came after the bench's own and won: every seed trained as the one seed
# given, or every segment to the iterations given, while the table named the --seeds and --at.
# The others' --set lost to the options, without a word.
SET_BY_OPTION = {"seed": "--seeds", "train.n_iterations": "--at", "device": "--device",
                 "out_dir": "--work", "data.path": "--shapes"}


def read_shapes(shapes: Path) -> dict[str, np.ndarray]:
    """The arrays of ``shapes``, an ``.npz`` with grids ``X`` ``(N, R, R, R)`` and class
    labels ``y`` ``(N,)`` (and any others); a ``ValueError`` saying what is wrong."""
    arrays = common.read_npz(shapes)
    if "X" not in arrays or "y" not in arrays:
        raise ValueError(f"needs arrays X (N, R, R, R) and y (N,), has {sorted(arrays)}")
    grids, labels = arrays["X"], arrays["y"]
    if grids.ndim != 4 or len(set(grids.shape[1:])) != 1:
        raise ValueError(f"X must be cubic grids (N, R, R, R), got shape {grids.shape}")
    if labels.shape != (len(grids),):
        raise ValueError(f"y must be labels (N,) = ({len(grids)},) for X's grids, got "
                         f"{labels.shape}")
    arrays["y"] = class_numbers(labels, "y")
    # Else the read-out's evaluation refuses it, only once every training has run.
    if len(np.unique(arrays["y"])) < 2:
        raise ValueError(f"y must hold two classes or more for a classifier to tell apart, got "
                         f"{len(np.unique(arrays['y']))}")
    return arrays


def write_split(arrays: dict[str, np.ndarray], work: Path, *, fraction: float,
                seed: int) -> dict[str, Any]:
    """Write ``fit.npz`` and ``held_out.npz`` (step 1 of the protocol) into ``work``: every
    array with a row per shape split by rows, the others (``categories``) copied whole."""
    labels = arrays["y"]
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held.extend(members[: round(fraction * len(members))])
    is_held = np.zeros(len(labels), dtype=bool)
    is_held[held] = True
    # Else the evaluation after the first training refuses the split.
    if not is_held.any():
        raise ValueError(f"a fraction {fraction} of each class holds out no shape of "
                         f"{len(labels)}: give more shapes or a larger --held-out")
    if len(np.unique(labels[~is_held])) < 2:
        raise ValueError(f"holding out a fraction {fraction} of each class leaves one class to "
                         "fit the read-out on: give more shapes or a smaller --held-out")
    work.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, rows in (("fit", ~is_held), ("held_out", is_held)):
        part = {key: (value[rows] if value.ndim >= 1 and len(value) == len(labels)
                      and key != "categories" else value) for key, value in arrays.items()}
        path = work / f"{name}.npz"
        atomic_save_npz(path, **part)
        files[name] = {"path": str(path), "n": int(rows.sum())}
    return files


def quick_shapes(path: Path) -> None:
    """60 grids of 12^3, two classes (a slab and a rod, jittered): a stand-in for real
    shapes in the smoke run."""
    rng = np.random.default_rng(0)
    grids = np.zeros((60, 12, 12, 12), dtype=np.uint8)
    labels = np.arange(60) % 2
    for grid, label in zip(grids, labels):
        a, b = rng.integers(2, 5, size=2)
        if label:
            grid[a:a + 6, 4:8, b:b + 6] = 1  # a slab
        else:
            grid[:, a:a + 3, b:b + 3] = 1  # a rod along the first axis
    atomic_save_npz(path, X=grids, y=labels)


class StgconvFailed(RuntimeError):
    """A ``python -m stgconv`` step that failed; ``refused_options``: it refused the bench's
    options (exit 2 of the step that reads them)."""

    def __init__(self, message: str, *, refused_options: bool) -> None:
        super().__init__(message)
        self.refused_options = refused_options


def stgconv(*args: str, log: Path, reads_options: bool = False) -> None:
    """``python -m stgconv ARGS``, its output appended to ``log``; a failure stops the bench
    with the step's last line of output (its error), since a temporary ``--work`` and the log
    in it are gone when the bench reports. ``reads_options``: the step reads the bench's
    ``--config``, ``--set`` and ``--device`` (each seed's first training, before any work), so
    its refusal (exit 2) is theirs; another step's is of what the bench made, a failure."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log, "a") as out:
        out.write(f"$ stgconv {' '.join(args)}\n")
        out.flush()
        done = subprocess.run([sys.executable, "-m", "stgconv", *args], cwd=ROOT, env=env,
                              stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        last = (log.read_text().strip().splitlines() or [""])[-1]
        raise StgconvFailed(f"stgconv {args[0]} exited {done.returncode}: {last}",
                            refused_options=reads_options and done.returncode == 2)


def run_seed(seed: int, args: argparse.Namespace, split: dict[str, Any], deadline: float
             ) -> list[dict[str, Any]]:
    """Steps 2 and 3 for one seed: train in segments, evaluate after each."""
    run = args.work / f"seed{seed}"
    log = args.work / f"seed{seed}.log"
    rows: list[dict[str, Any]] = []
    trained_s, done, pace = 0.0, 0, None  # pace: wall seconds per iteration, with its eval
    for target in args.at:
        if pace is not None and time.monotonic() + pace * (target - done) > deadline:
            break
        started = time.monotonic()
        if done == 0:
            stgconv("train", str(args.config), "--data", split["fit"]["path"], "--out", str(run),
                    "--device", args.device, "--quiet", "--overwrite", "--set", f"seed={seed}",
                    "--set", f"train.n_iterations={target}",
                    *[item for value in args.sets for item in ("--set", value)], log=log,
                    reads_options=True)
        else:
            stgconv("train", "--resume", "--out", str(run), "--device", args.device, "--quiet",
                    "--set", f"train.n_iterations={target}", log=log)
        trained_s += time.monotonic() - started
        result = args.work / f"seed{seed}_{target}.json"
        stgconv("eval", "classification", "--checkpoint", str(run), "--shapes",
                split["fit"]["path"], "--test", split["held_out"]["path"], "--seed", str(seed),
                "--device", args.device, "--json", str(result), log=log)
        pace = (time.monotonic() - started) / (target - done)
        done = target
        table = json.loads(result.read_text())
        accuracy = table["accuracy"]
        rows.append({
            "seed": seed, "iterations": target, "train_wall_s": round(trained_s, 1),
            "eval_s": round(table["seconds"], 1), "learned": accuracy["stgconv"],
            "untrained": accuracy["random_init"], "raw_voxels": accuracy["raw_voxels"],
            "learned_minus_untrained": accuracy["stgconv"] - accuracy["random_init"],
            "learned_minus_raw": accuracy["stgconv"] - accuracy["raw_voxels"],
            "n_features": table["n_features"]["stgconv"], "n_fit": split["fit"]["n"],
            "n_held_out": split["held_out"]["n"], "protocol": table["protocol"],
        })
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__,
                                    formatter_class=common.RawDescriptionDefaultsFormatter)
    parser.add_argument("--shapes", type=Path, default=SHAPES,
                        help=".npz with X (N, R, R, R) and labels y (default: ModelNet10 30^3)")
    parser.add_argument("--config", type=Path, default=CONFIG,
                        help="YAML training config, a voxel one (data.kind voxels) "
                             f"(default: {common.from_repository(CONFIG)})")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a training config override (repeatable)")
    parser.add_argument("--seeds", type=common.seed_number, nargs="+", default=[0, 1])
    parser.add_argument("--at", type=common.count(1), nargs="+", default=[150, 300],
                        help="iterations after which the features are evaluated")
    parser.add_argument("--held-out", type=float, default=0.2, help="fraction held out")
    parser.add_argument("--split-seed", type=common.seed_number, default=0)
    parser.add_argument("--budget-s", type=float, default=float("inf"),
                        help="wall-clock seconds for the whole run")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the split, the runs and their logs (default: a "
                             "temporary one)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run on generated shapes, evaluated after 1 and 2 "
                             "iterations (options given explicitly win)")
    parser.add_argument("--json", metavar="FILE", type=common.json_path)
    # --quick's segments: the defaults' 150 and 300 iterations made a smoke run of minutes.
    args = common.parse_arguments(parser, argv, quick={"at": [1, 2]}, generated=["shapes"])
    common.refuse_sets_of_options(parser, args.sets, SET_BY_OPTION)
    if sorted(set(args.at)) != args.at:
        parser.error(f"--at must be increasing iterations, got {args.at}")
    if len(set(args.seeds)) != len(args.seeds):  # two runs would share one folder
        parser.error(f"--seeds must differ, got {args.seeds}")
    if not args.budget_s > 0:
        parser.error(f"--budget-s must be a positive number of seconds, got {args.budget_s}")
    if not 0 < args.held_out < 1:
        parser.error(f"--held-out must be a fraction in (0, 1), got {args.held_out}")
    # Now, not once the split is written and each seed's training refuses it (naming no option).
    common.read_config(parser, str(args.config), args.sets, modality=VOXELS)
    with tempfile.TemporaryDirectory(prefix="features_") as temporary:
        keeps_logs = args.work is not None
        args.work = Path(args.work if args.work is not None else temporary).resolve()
        if args.quick:
            args.shapes = args.work / "quick_shapes.npz"
            try:
                args.work.mkdir(parents=True, exist_ok=True)
                quick_shapes(args.shapes)
            except OSError as err:
                parser.error(f"--work {args.work}: {err}")
            args.sets = QUICK_SETS + args.sets
        elif not args.shapes.exists():  # a folder is named as one by read_shapes
            parser.error(f"shapes not found: {args.shapes} (give --shapes FILE, or --quick)")
        args.config = args.config.resolve()
        try:
            arrays = read_shapes(args.shapes)
        except ValueError as err:
            parser.error(f"--shapes {args.shapes}: {err}")
        try:
            split = write_split(arrays, args.work, fraction=args.held_out, seed=args.split_seed)
        except OSError as err:
            parser.error(f"--work {args.work}: {err}")
        except ValueError as err:
            parser.error(f"--shapes {args.shapes}: {err}")
        deadline = time.monotonic() + args.budget_s
        try:
            with ThreadPoolExecutor(len(args.seeds)) as pool:
                per_seed = list(pool.map(lambda s: run_seed(s, args, split, deadline),
                                         args.seeds))
        except StgconvFailed as err:
            logs = f" (logs in {args.work})" if keeps_logs else ""
            # Exit 2 where a training refused the options (a --set, --config, --device).
            parser.exit(2 if err.refused_options else 1, f"{parser.prog}: error: {err}{logs}\n")
    rows = [row for seed_rows in per_seed for row in seed_rows]
    columns = [common.Column("seed", "seed", "<4"), common.Column("iter", "iterations", ">5"),
               common.Column("learned", "learned", ">7", ".3f"),
               common.Column("untrained", "untrained", ">9", ".3f"),
               common.Column("raw", "raw_voxels", ">5", ".3f"),
               common.Column("-untrained", "learned_minus_untrained", ">10", "+.3f"),
               common.Column("-raw", "learned_minus_raw", ">6", "+.3f"),
               common.Column("train s", "train_wall_s", ">7", ".0f"),
               common.Column("eval s", "eval_s", ">6", ".0f")]
    lines = [f"# held-out accuracy of a linear read-out, {args.shapes.name}: "
             f"{split['fit']['n']} fitted, {split['held_out']['n']} held out "
             f"(split seed {args.split_seed}); device {args.device}; "
             f"overrides {' '.join(args.sets) or 'none'}"]
    # The rows' options name no temporary path, gone once the run is: --quick's shapes are
    # its own (generated), and a --work of the run's own was removed with it; null for both.
    given = argparse.Namespace(**{**vars(args), "shapes": None if args.quick else args.shapes,
                                  "work": args.work if keeps_logs else None})
    common.report(common.text_table(lines, columns, rows), rows, given)
    return 0


if __name__ == "__main__":
    sys.exit(main())
