"""Single-grid vs multi-grid learning at equal compute, on real data: images, a video, voxels.

For each modality the multi-grid run is the repository's quick config
(``configs/image/multigrid_animals_quick.yaml``: 80 real animal photographs, 1 -> 4 -> 16 -> 64;
``configs/video/multigrid_flag_quick.yaml``: the DynTex flag clip, grids in space and time;
``configs/voxel/multigrid_chairs_quick.yaml``: the 889 ModelNet10 training chairs, 4 -> 16
-> 32). The single-grid run is the same config with only the finest grid modelled and its chain
as long as all the multi-grid chains together: with K modelled grids of L steps each, both runs
spend K x L energy-gradient evaluations per chain per iteration, for the same iterations, batch,
optimizer and base start (the single-grid chain starts from the up-sampled base: a constant
image of a real mean colour, or a shape's block means on the base grid, drawn as the config's
``multigrid.base_rank`` says). Coarse-grid evaluations are
cheaper, so the multi-grid run also takes less time; both times are in the table.

Quality, measured against the training data (:mod:`stgconv.evaluation.quality`):

- images: filter-response statistics distance and log power-spectrum distance (decades) of
  ``--samples`` samples, and their spread (per-pixel std across samples): statistics can match
  while every sample is the same image; reference rows: the data's first half against its
  second half (other animals: what real images of this kind score), the spread of as many
  training images as samples, drawn at random, and the chains' start.
- video: the same two statistics over frames (``spatial``), the frame-difference statistics
  distance (``temporal``) of 4 sampled clips against the training clip; reference: the clip's
  next 16 frames, and the start.
- voxels: mean IoU of each sample with its nearest training chair (realism; it also rewards
  copying), the samples' mean volume fraction against the data's and the spread of the shapes
  (their 0.5 level); reference: as many training chairs as samples, drawn at random, against
  the other chairs (the spread of sparse binary shapes grows with their count, as rarely
  filled voxels show up: 32 training chairs spread 0.057-0.071, 128 of them 0.076-0.080), and
  the start.

Run from the repository root (each modality trains two models; on 2 CPU cores images take
~4 minutes, the video ~5, voxels ~14)::

    python -m bench.multigrid --work runs/multigrid_bench --json multigrid.json
    python -m bench.multigrid --modality image      # one modality
    python -m bench.multigrid --methods multi-grid  # no single-grid run
    python -m bench.multigrid --quick               # smoke run, generated data
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from stgconv import tasks
from stgconv.build import multigrid_bases, multigrid_sampler
from stgconv.checkpoint import load_multigrid
from stgconv.config import ExperimentConfig, load_config, resolve_device
from stgconv.evaluation import quality
from stgconv.io.atomic import atomic_write_json
from stgconv.io.video import save_video
from stgconv.modalities import modality_of
from stgconv.ops import factor_between, nearest_up

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "image": ROOT / "configs/image/multigrid_animals_quick.yaml",
    "video": ROOT / "configs/video/multigrid_flag_quick.yaml",
    "voxel": ROOT / "configs/voxel/multigrid_chairs_quick.yaml",
}
SHARED = ROOT.parent / "shared" / "data"
METHODS = ("multi-grid", "single-grid")


def single_grid(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with only its finest grid modelled, whose chain gets every grid's steps, in
    training and at use (``task_steps``) alike."""
    multigrid = config.multigrid
    assert multigrid is not None
    samplers = [grid.sampler or config.sampler for grid in multigrid.grids]
    steps = sum(sampler.n_steps for sampler in samplers)
    task_steps = (None if all(sampler.task_steps is None for sampler in samplers)
                  else sum(sampler.task_steps or sampler.n_steps for sampler in samplers))
    finest = multigrid.grids[-1]
    finest = replace(finest, sampler=replace(samplers[-1], n_steps=steps, task_steps=task_steps))
    # The shared section's chain lengths as the one grid's: a shared setting that every grid
    # replaces is refused as unread.
    return replace(config, name=config.name + "_single",
                   sampler=replace(config.sampler, n_steps=steps, task_steps=task_steps),
                   multigrid=replace(multigrid, grids=(finest,)))


def gradient_evaluations(config: ExperimentConfig) -> int:
    """Energy-gradient evaluations of one chain through every grid."""
    assert config.multigrid is not None
    return sum((grid.sampler or config.sampler).n_steps for grid in config.multigrid.grids)


def train_and_sample(config: ExperimentConfig, n_samples: int, seed: int
                     ) -> tuple[list[torch.Tensor], float, float, Path]:
    """Train, then sample ``n_samples`` coarse to fine; returns every grid's samples (data
    units), the training and sampling seconds, and the run folder."""
    started = time.perf_counter()
    run = tasks.train(config, overwrite=True, progress=False)  # a re-run replaces its own runs
    train_s = time.perf_counter() - started
    energies, trained, state = load_multigrid(run, device=config.device)
    generator = torch.Generator(state["base"].device).manual_seed(seed)
    starts = multigrid_bases(trained, state["base"], n_samples, generator=generator)
    started = time.perf_counter()
    grids = multigrid_sampler(trained).run(energies, starts, generator=generator)
    sample_s = time.perf_counter() - started
    modality = modality_of(trained)
    grids = [modality.to_data(g, trained) for g in grids]
    modality.save_pyramid(grids, run / "bench_pyramid", fps=modality.playback_fps(trained.data))
    return grids, train_s, sample_s, run


def start_of(grids: list[torch.Tensor]) -> torch.Tensor:
    """Where a single-grid chain starts: the base grid up-sampled to the finest grid."""
    finest = grids[-1].shape[2:]
    return nearest_up(grids[0], factor_between(finest, grids[0].shape[2:]))


def quality_row(modality: str, samples: torch.Tensor, data: torch.Tensor,
                reference: torch.Tensor | None) -> dict[str, float]:
    if modality == "image":
        return {"filter_stats_distance": quality.filter_statistics_distance(samples, data),
                "spectrum_distance": quality.power_spectrum_distance(samples, data),
                "spread": quality.spread(samples)}
    if modality == "video":
        stats = quality.video_statistics_distance(samples, data)
        frames = samples.transpose(1, 2).flatten(0, 1)
        return {"filter_stats_distance": stats["spatial"],
                "temporal_distance": stats["temporal"],
                "spectrum_distance": quality.power_spectrum_distance(
                    frames, data.transpose(1, 2).flatten(0, 1))}
    assert reference is not None
    shapes = (samples >= 0.5).float()  # spread of the shapes, as of the binary data
    return {"nearest_train_iou": quality.nearest_iou(samples, reference).mean().item(),
            "volume_fraction": shapes.mean().item(), "spread": quality.spread(shapes)}


def run_modality(modality: str, config: ExperimentConfig, *, work: Path, n_samples: int,
                 seed: int, methods: Sequence[str] = METHODS) -> list[dict[str, Any]]:
    data = modality_of(config).load(config.data)
    configs = {"multi-grid": config, "single-grid": single_grid(config)}
    configs = {method: configs[method] for method in methods}
    rows = []
    results = {}
    # One untimed iteration first: the first run in a process also pays for imports
    # (TensorBoard's), the first data read and torch's warm-up, 3-4 s that went to whichever
    # method came first.
    warm = next(iter(configs.values()))
    tasks.train(replace(warm, out_dir=str(work / modality / "warm-up"), seed=seed,
                        train=replace(warm.train, n_iterations=1)), overwrite=True,
                progress=False)
    for method, cfg in configs.items():
        cfg = replace(cfg, out_dir=str(work / modality / method), seed=seed)
        grids, train_s, sample_s, run = train_and_sample(cfg, n_samples, seed)
        grids = [g.cpu() for g in grids]  # the data and the scores live on the CPU
        results[method] = grids
        rows.append({
            "modality": modality, "method": method,
            "grids": "->".join("x".join(map(str, g.shape[2:])) for g in grids),
            "grad_evals_per_chain": gradient_evaluations(cfg),
            "iterations": cfg.train.n_iterations,
            "train_s": train_s, "sample_s": sample_s,
            **quality_row(modality, grids[-1], data, data), "run": str(run),
        })
    if len(rows) == 2:
        multi, single = (next(row for row in rows if row["method"] == method)
                         for method in ("multi-grid", "single-grid"))
        multi["train_time_ratio_single_over_multi"] = single["train_s"] / multi["train_s"]
        multi["sample_time_ratio_single_over_multi"] = single["sample_s"] / multi["sample_s"]
    rows.extend(reference_rows(modality, config, data, start_of(next(iter(results.values()))),
                               n_samples=n_samples))
    return rows


def reference_rows(modality: str, config: ExperimentConfig, data: torch.Tensor,
                   start: torch.Tensor, *, n_samples: int) -> list[dict[str, Any]]:
    """What the quality figures read for real data and for the chains' start. The data's
    spread is taken over ``n_samples`` items drawn at random (:func:`common.data_spread`, the
    same for every run seed), as many as the samples it is compared with."""
    rows = [{"modality": modality, "method": "reference: chain start (up-sampled base)",
             **quality_row(modality, start, data, data)}]
    if modality == "image":
        rows += [{"modality": modality, **row} for row in image_references(data, n_samples)]
    elif modality == "video":
        rows.append({"modality": modality, "method": "reference: the clip's next frames",
                     **quality_row(modality, next_frames(config), data, None)})
    else:
        held = min(n_samples, len(data) // 2)
        shuffled = common.random_subset(data, len(data), seed=0)
        row = quality_row(modality, shuffled[:held], shuffled[held:], shuffled[held:])
        rows.append({"modality": modality,
                     "method": f"reference: {held} random training shapes vs the others",
                     **row, "spread": common.data_spread((data >= 0.5).float(), held)})
    return rows


def image_references(data: torch.Tensor, n_samples: int) -> list[dict[str, Any]]:
    """Real images scored as samples are: the data's first half against its second half for
    the statistics (in file order: different clips, so different animals on each side), and the
    spread of ``n_samples`` training images drawn at random."""
    half = len(data) // 2
    halves = quality_row("image", data[:half], data[half:], None)
    del halves["spread"]  # of five of the ten animals: the next row's is of all ten
    n = min(n_samples, len(data))
    return [{"method": "reference: data first half vs second half", **halves},
            {"method": f"reference: {n} random images (10 draws)",
             "spread": common.data_spread(data, n)}]


def next_frames(config: ExperimentConfig) -> torch.Tensor:
    """The frames that follow the training clips ``(N, C, T, H, W)``, as the data reads them
    (with ``data.fps``, counted at that rate, not in the file's own frames)."""
    frames = config.data.frames
    return modality_of(config).load(replace(config.data, frames=2 * frames))[:, :, frames:]


def quick_data(folder: Path) -> dict[str, list[str]]:
    """Small generated data and the overrides that point the configs at it (smoke runs)."""
    generator = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(8, 3, 24, 24, generator=generator), 5, 1)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(smooth):
        array = (image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(array).resize((16, 16)).save(images / f"{i}.png")
    video = save_video(torch.rand(3, 8, 16, 16, generator=generator) * 2 - 1, folder / "clip.mp4")
    shapes = (torch.rand(24, 8, 8, 8, generator=generator) > 0.6).numpy().astype(np.float32)
    np.savez(folder / "shapes.npz", X=shapes, y=np.zeros(24, dtype=np.int64))
    tiny = ["train.n_iterations=2", "train.batch_size=4", "sampler.n_steps=2",
            "train.sample_every=0", "train.checkpoint_every=0"]
    return {
        # data=null first: the config's clip settings (frames, fps) are refused for images.
        "image": ["data=null", f"data.path={images}", "data.kind=objects", "data.channels=3",
                  "data.size=16", *tiny,
                  ("multigrid.grids=[{size: 4, model: {arch: descriptor4, layers: [[4, 3, 1, 1]]}},"
                   " {size: 16, model: {arch: descriptor16, layers: [[4, 5, 2, 2]]}}]")],
        "video": [f"data.path={video}", "data.size=16", "data.frames=4", *tiny,
                  ("multigrid.grids=[{size: 4, frames: 2, model: {arch: fc_s_small}},"
                   " {size: 16, model: {arch: fc_s_small}}]")],
        "voxel": [f"data.path={folder / 'shapes.npz'}", "data.categories=null", "data.size=8",
                  *tiny, "multigrid.base_size=2",
                  ("multigrid.grids=[{size: 4, model: {arch: desc32_small, layers: "
                   "[[4, 3, 1, 1]]}}, {size: 8, model: {arch: desc32_small, layers: "
                   "[[4, 4, 2, 1]]}}]")],
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    columns = ["modality", "method", "grad_evals_per_chain", "train_s", "sample_s",
               "train_time_ratio_single_over_multi", "sample_time_ratio_single_over_multi",
               "filter_stats_distance", "spectrum_distance", "spread", "temporal_distance",
               "nearest_train_iou", "volume_fraction"]
    present = [c for c in columns if any(c in row for row in rows)]

    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(present) + " |", "|" + "---|" * len(present)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in present) + " |" for row in rows]
    return "\n".join(lines)


# Config keys the bench sets for every run from its own options.
SET_BY_OPTION = {"seed": "--seed", "device": "--device", "out_dir": "--work"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--modality", nargs="+", choices=sorted(CONFIGS), default=sorted(CONFIGS))
    parser.add_argument("--work", type=common.output_folder, default=None,
                        help="run folders go here (default runs/multigrid_bench; --quick: a "
                             "temporary folder)")
    parser.add_argument("--samples", type=common.count(2), default=32,
                        help="samples per method (video: 4)")
    parser.add_argument("--seed", type=common.seed_number, default=0)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="which models to train and sample")
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda, cuda:N or auto (default auto)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override both runs' configs (but seed, device and out_dir: "
                             "--seed, --device, --work)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run on generated data (options given explicitly win)")
    parser.add_argument("--json", dest="json_path", metavar="FILE", type=common.json_path,
                        help="write the rows as JSON")
    args = parser.parse_args(argv)
    common.refuse_sets_of_options(parser, args.overrides, SET_BY_OPTION)
    with tempfile.TemporaryDirectory() as tmp:
        quick = quick_data(Path(tmp)) if args.quick else None
        work = Path(args.work or (Path(tmp) / "runs" if args.quick else "runs/multigrid_bench"))
        own_data = any(item.startswith("data.path=") for item in args.overrides)
        if not args.quick and not own_data and not SHARED.is_dir():
            parser.error(f"the real data are not at {SHARED}; run with --quick for a smoke run")
        try:
            resolve_device(args.device)
        except ValueError as err:
            parser.error(f"--device: {err}")
        configs = {}
        for modality in args.modality:  # every config read before the first training
            overrides = [*(quick[modality] if quick else []), *args.overrides,
                         f"device={args.device}"]
            try:
                configs[modality] = load_config(CONFIGS[modality], overrides)
            except (FileNotFoundError, ValueError) as err:
                parser.error(f"{modality}: {err}")
            data = configs[modality].data.path
            # Now, not after the modalities before it have trained (a builtin: image is no file).
            if not data.startswith("builtin:") and not Path(data).exists():
                parser.error(f"{modality}: data.path {data} not found")
        rows = []
        for modality, config in configs.items():
            n_samples = 4 if modality == "video" else args.samples
            rows += run_modality(modality, config, work=work, n_samples=n_samples,
                                 seed=args.seed, methods=args.methods)
            print(format_table(rows), flush=True)
    print("# quality vs the training data (lower distances / higher IoU are closer); times in "
          "seconds; grad_evals_per_chain: energy-gradient evaluations of one chain per iteration")
    environment = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                   "cpu_count": os.cpu_count(),
                   "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    if args.json_path:
        atomic_write_json(args.json_path, [{**row, **environment, "options": common.options(args)}
                                           for row in rows])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
