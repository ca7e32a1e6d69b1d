"""Cooperative learning vs the descriptor alone, at equal CPU time, on real data.

Three pairs, each the cooperative config against the descriptor config it was built from:

- ``digits``: ``configs/image/coop_mnist_quick.yaml`` vs ``configs/image/mnist_quick.yaml``
  (5,000 MNIST digits; the descriptor keeps a replay buffer of short-run chains);
- ``animals``: ``configs/image/coop_animals_quick.yaml`` vs the single-grid counterpart of
  ``configs/image/multigrid_animals_quick.yaml`` (80 animal frames; the same 64x64 descriptor,
  its chain as long as the multi-grid chains together, started at a real mean colour:
  :func:`bench.multigrid.single_grid`);
- ``fire_pot``: ``configs/video/coop_fire_pot_quick.yaml`` vs ``configs/video/st_quick.yaml``
  (the DynTex fire clip, the stationary ST descriptor).

Equal CPU time: both models train for ``--budget`` seconds of this process's CPU time
(``time.process_time()``, torch on one thread), not wall time, so other work on the machine
does not tilt the comparison. A run trains in chunks resumed from its checkpoint (bit-exact,
:meth:`stgconv.train.FitLoop.resume`) until the next chunk would pass the budget; each chunk's
length is predicted from the last one's CPU time per iteration, so a run stops within about one
chunk's setup of the budget; a descriptor whose stored chains are sampled trains at least until
its buffer holds ``--samples`` of them. The table gives each run's iterations and CPU seconds.

Then each model samples ``--samples`` examples (video: 4 clips) through ``stgconv synthesize``
with 0, 5, 10, 20, 50, 100 and 200 Langevin steps (``--steps``) from its own start: the
cooperative model from its generator's ``G(z)``, the descriptor from the start its config
trains with (digits: fresh uniform noise, and also the stored replay buffer; animals: a real
image's mean colour; fire_pot: the chains' init). A descriptor chain needs at least one step:
it has no 0-step row. Quality against the training data:

- digits: :mod:`bench.digits`'s score (classifier-feature Frechet distance to test digits, the
  class histogram's entropy, spread, filter statistics);
- animals and fire_pot: :func:`bench.multigrid.quality_row` (filter-response statistics and
  log power-spectrum distances; video: over frames, plus the frame-difference statistics) and
  the spread (per-entry std across samples, :func:`stgconv.evaluation.quality.spread`).

"Steps for the same quality": the curve metric (digits: Frechet; images and video: filter
statistics) for both models; the common target is the worse of the two models' best values,
and each model's row says the first step count that reaches it.

Run from the repository root (the full run trains 2 models x 3 data sets x ``--seeds``)::

    python -m bench.coop --json coop.json  # ~15 CPU minutes per seed at the budgets below
    python -m bench.coop --task digits --budget 300 --seeds 0 1
    python -m bench.coop --quick                # smoke run, generated data
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import math
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from bench import digits, multigrid
from stgconv import tasks
from stgconv.build import grid_samplers, task_sampler
from stgconv.config import ExperimentConfig, load_config
from stgconv.evaluation import quality
from stgconv.io.atomic import atomic_write_json
from stgconv.io.image import save_image_grid
from stgconv.modalities import modality_of

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
STEPS = (0, 5, 10, 20, 50, 100, 200)


@dataclass(frozen=True)
class Pair:
    """A data set's cooperative config, its descriptor config and how samples are scored."""

    coop: Path
    descriptor: Path
    modality: str
    # The metric of the steps curve (lower is better).
    metric: str


PAIRS = {
    "digits": Pair(ROOT / "configs/image/coop_mnist_quick.yaml",
                   ROOT / "configs/image/mnist_quick.yaml", "image", "frechet"),
    "animals": Pair(ROOT / "configs/image/coop_animals_quick.yaml",
                    ROOT / "configs/image/multigrid_animals_quick.yaml", "image",
                    "filter_stats_distance"),
    "fire_pot": Pair(ROOT / "configs/video/coop_fire_pot_quick.yaml",
                     ROOT / "configs/video/st_quick.yaml", "video", "filter_stats_distance"),
}


def train_for(config: ExperimentConfig, budget: float, *, first_chunk: int
              ) -> tuple[Path, float, int]:
    """Train ``config`` for ``budget`` seconds of process CPU time, in chunks resumed from the
    checkpoint; returns the run folder, the CPU seconds spent and the iterations done."""
    started = time.process_time()
    iterations = first_chunk
    run = tasks.train(_iterations(config, iterations), overwrite=True, progress=False)
    last_used, last_iterations = time.process_time() - started, 0
    while True:
        used = time.process_time() - started
        # The last chunk's cost per iteration, its setup (data, checkpoint) included: the
        # estimate is a little high, so the run approaches the budget from below.
        per_iteration = (used - (last_used if last_iterations else 0.0)) / (
            iterations - last_iterations)
        more = int((budget - used) / per_iteration)
        if more < 1:
            return run, used, iterations
        last_used, last_iterations = used, iterations
        iterations += more
        tasks.train(_iterations(config, iterations), resume=True, progress=False)


def _storing(config: ExperimentConfig, n_samples: int) -> int:
    """The iterations after which ``config``'s replay buffer holds the ``n_samples`` chains
    that the "chains" start continues (as many as it can hold): a shorter run scored fewer
    samples than the noise start's, with synthesize's warning (--quick's one iteration of 4
    chains for 6 samples)."""
    per_iteration = config.train.batch_size * config.chains.chains_per_example
    return math.ceil(min(n_samples, config.chains.buffer_capacity) / per_iteration)


def _iterations(config: ExperimentConfig, n: int) -> ExperimentConfig:
    return replace(config, train=replace(config.train, n_iterations=n))


def descriptor_config(pair: Pair, overrides: list[str]) -> ExperimentConfig:
    """The descriptor side of ``pair`` (a multi-grid config: its single-grid counterpart)."""
    config = load_config(pair.descriptor, overrides)
    return multigrid.single_grid(config) if config.multigrid is not None else config


class Scorer:
    """Scores samples in data units against a pair's training data: one row of metrics."""

    def __init__(self, name: str, pair: Pair, config: ExperimentConfig, *, mnist: Path | None,
                 seed: int, quick: bool) -> None:
        self.modality = pair.modality
        self.data = modality_of(config).load(config.data)
        self.classifier = None
        if name == "digits":
            assert mnist is not None
            n_train, n_test = (600, 300) if quick else (10_000, 2000)
            self.train_images, labels = digits.load_split(mnist, "train", n_train)
            self.test_images, test_labels = digits.load_split(mnist, "test", n_test)
            self.classifier = digits.train_classifier(self.train_images, labels,
                                                      epochs=1 if quick else 5, seed=seed)
            with torch.no_grad():
                self.accuracy = (self.classifier(self.test_images).argmax(1) == test_labels
                                 ).float().mean().item()
                compared, self.other_test_images = digits.test_halves(self.test_images,
                                                                      n_test // 2)
                self.test_features = self.classifier.features(compared)

    def __call__(self, samples: torch.Tensor) -> dict[str, Any]:
        if self.classifier is not None:
            row = digits.score("", samples, self.classifier, self.test_features,
                               self.train_images)
            row.pop("set")
            return row
        row = multigrid.quality_row(self.modality, samples, self.data, self.data)
        return {**row, "spread": quality.spread(samples)}

    def references(self, config: ExperimentConfig, n_samples: int) -> list[dict[str, Any]]:
        """What real data score: other test digits; the animals' halves and as many random
        animal frames as samples; the fire clip's next frames."""
        if self.classifier is not None:
            # The judge's own test accuracy beside its scores, as bench/digits.py reports it.
            return [{"method": "reference: other test digits",
                     "classifier_test_accuracy": self.accuracy,
                     **self(self.other_test_images[:n_samples])}]
        if self.modality == "image":
            return multigrid.image_references(self.data, n_samples)
        return [{"method": "reference: the clip's next frames",
                 **multigrid.quality_row("video", multigrid.next_frames(config), self.data,
                                         None)}]


def steps_curve(run: Path, scorer: Scorer, *, n_samples: int, steps: Sequence[int],
                start: str, seed: int, cooperative: bool, keep: Path) -> list[dict[str, Any]]:
    """One row per chain length: the samples' scores and the CPU seconds of the synthesis.
    A descriptor chain needs a step, so its 0 is left out."""
    rows = []
    for n_steps in steps:
        if n_steps == 0 and not cooperative:
            continue
        out = keep / f"steps_{n_steps:03d}"
        started = time.process_time()
        tasks.synthesize(run, out, n_samples=n_samples, n_steps=n_steps, start=start,
                         seed=seed, device="cpu")
        sample_s = time.process_time() - started
        samples = common.read_pixels(out / "synthesized.npy")
        rows.append({"steps": n_steps, "sample_cpu_s": sample_s, **scorer(samples)})
    return rows


def frame_strip(samples: Path, path: Path) -> Path:
    """Every other frame of the first two clips of ``samples`` (``.npy``, ``(N, C, T, H, W)``)
    as a PNG, a clip per row."""
    clips = common.read_pixels(samples)[:2, :, ::2]
    frames = clips.transpose(1, 2).flatten(0, 1)
    return save_image_grid(frames, path, nrow=clips.shape[2])


def first_reaching(curve: list[dict[str, Any]], metric: str, target: float) -> int | None:
    """The fewest steps whose ``metric`` is at most ``target`` (``None``: never)."""
    return next((row["steps"] for row in curve if row[metric] <= target), None)


def run_pair(name: str, pair: Pair, *, work: Path, budget: float, seed: int, n_samples: int,
             steps: Sequence[int], overrides: dict[str, list[str]], mnist: Path | None,
             quick: bool, first_chunk: int) -> list[dict[str, Any]]:
    """Train both models of ``pair`` for ``budget`` CPU seconds each, then score their steps
    curves; ``overrides`` per method (``cooperative``, ``descriptor``)."""
    methods = {"cooperative": load_config(pair.coop, overrides["cooperative"]),
               "descriptor": descriptor_config(pair, overrides["descriptor"])}
    scorer = Scorer(name, pair, methods["descriptor"], mnist=mnist, seed=seed, quick=quick)
    n_samples = 4 if pair.modality == "video" else n_samples
    rows = []
    for method, config in methods.items():
        config = replace(config, out_dir=str(work / name / f"seed{seed}" / method), seed=seed,
                         device="cpu")
        starts = ["noise", "chains"] if config.chains.mode == "buffer" and not (
            method == "cooperative") else ["noise"]
        first = (max(first_chunk, _storing(config, n_samples)) if "chains" in starts
                 else first_chunk)
        run, train_s, iterations = train_for(config, budget, first_chunk=first)
        # The chain length synthesize samples with when none is given (task_steps where set).
        default = (grid_samplers(config, task=True)[-1] if config.multigrid is not None
                   else task_sampler(config)).n_steps
        for start in starts:
            label = method if method == "cooperative" else f"descriptor ({start})"
            curve = steps_curve(run, scorer, n_samples=n_samples,
                                steps=sorted({*steps, default}), start=start, seed=seed,
                                cooperative=method == "cooperative",
                                keep=run / f"bench_{start}")
            if pair.modality == "video":
                frame_strip(run / f"bench_{start}" / f"steps_{default:03d}" / "synthesized.npy",
                            run / f"bench_{start}" / "frames.png")
                if method == "cooperative":
                    # Every cooperative synthesis writes its proposals, G(z) of the seed's z:
                    # the 0-step samples, which --steps without 0 does not synthesize.
                    frame_strip(run / f"bench_{start}" / f"steps_{default:03d}" / "proposals.npy",
                                run / f"bench_{start}" / "frames_proposals.png")
            for row in curve:
                rows.append({"task": name, "seed": seed, "method": label,
                             "default_steps": row["steps"] == default, "iterations": iterations,
                             "train_cpu_s": train_s, "budget_cpu_s": budget, **row,
                             "run": str(run)})
    metric = pair.metric
    labels = list(dict.fromkeys(row["method"] for row in rows))
    bests = {label: min(r[metric] for r in rows if r["method"] == label) for label in labels}
    # The worse of the two models' bests (the descriptor's from its better start): both reach it.
    target = max(bests["cooperative"],
                 min(best for label, best in bests.items() if label != "cooperative"))
    for label in labels:
        curve = [r for r in rows if r["method"] == label]
        reached = first_reaching(curve, metric, target)
        for row in curve:
            row.update({"curve_metric": metric, "common_target": target,
                        "steps_to_target": reached})
    for reference in scorer.references(methods["descriptor"], n_samples):
        rows.append({"task": name, "seed": seed, **reference})
    return rows


def quick_overrides(folder: Path) -> tuple[Path, dict[str, dict[str, list[str]]]]:
    """Generated data (digits, images, a clip) and per-method overrides that point the configs
    at it with tiny models (smoke runs)."""
    mnist = digits.quick_digits(folder)
    generated = multigrid.quick_data(folder)
    tiny = ["train.batch_size=4", "sampler.n_steps=2", "train.sample_every=0",
            "train.checkpoint_every=0"]
    coop = ["cooperative.latent_dim=4", "cooperative.width=2"]
    images = next(item for item in generated["image"] if item.startswith("data.path="))
    clip = next(item for item in generated["video"] if item.startswith("data.path="))
    # data=null first: the animal configs' clip settings (frames, fps) are refused for images.
    image_model = ["data=null", "data.kind=objects", "data.channels=3", "data.size=16", images,
                   *tiny]
    video = [clip, "data.size=16", "data.frames=4", "model.layers=[[4, 5, 2, 2], [4, 3, 1, 1]]",
             *tiny]
    return mnist, {
        "digits": {"cooperative": [f"data.path={mnist}", *tiny, *coop],
                   "descriptor": [f"data.path={mnist}", *tiny]},
        "animals": {"cooperative": [*image_model, *coop, "model.arch=descriptor16",
                                    "model.layers=[[4, 5, 2, 2]]"],
                    "descriptor": [*image_model, "multigrid.grids=[{size: 16, model: "
                                   "{arch: descriptor16, layers: [[4, 5, 2, 2]]}}]"]},
        "fire_pot": {"cooperative": [*video, *coop], "descriptor": video},
    }


def format_tables(rows: list[dict[str, Any]]) -> str:
    """The models at their default synthesis steps (and the references), then every model's
    curve metric by synthesis steps with the step count that first reaches the common target."""
    columns = ["task", "seed", "method", "iterations", "train_cpu_s", "steps", "sample_cpu_s",
               "frechet", "class_entropy", "filter_stats_distance", "spectrum_distance",
               "temporal_distance", "spread"]
    main = [r for r in rows if r.get("default_steps", True)]
    present = [c for c in columns if any(c in row for row in main)]

    def cell(value: Any) -> str:
        if value is None:
            return "never"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(present) + " |", "|" + "---|" * len(present)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in present) + " |" for row in main]
    curves = [r for r in rows if "steps" in r]
    all_steps = sorted({r["steps"] for r in curves})
    lines += ["", "| task | seed | method | metric | " + " | ".join(map(str, all_steps))
              + " | target | steps to target |", "|" + "---|" * (len(all_steps) + 6)]
    for key in dict.fromkeys((r["task"], r["seed"], r["method"]) for r in curves):
        curve = {r["steps"]: r for r in curves if (r["task"], r["seed"], r["method"]) == key}
        first = next(iter(curve.values()))
        metric = first["curve_metric"]
        values = [cell(curve[s][metric]) if s in curve else "" for s in all_steps]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {metric} | " + " | ".join(values)
                     + f" | {first['common_target']:.3f} | {cell(first['steps_to_target'])} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--task", nargs="+", choices=sorted(PAIRS), default=list(PAIRS))
    parser.add_argument("--budget", type=float, default=300.0,
                        help="CPU seconds of training per model (process time, one thread)")
    parser.add_argument("--seeds", type=common.seed_number, nargs="+", default=[0])
    parser.add_argument("--samples", type=common.count(2), default=500,
                        help="samples per model and step count (video: 4 clips)")
    parser.add_argument("--steps", type=common.count(0), nargs="+", default=list(STEPS),
                        help="synthesis chain lengths of the curves")
    parser.add_argument("--work", type=common.output_folder, default=None,
                        help="run folders go here (default runs/coop_bench; --quick: a "
                             "temporary folder)")
    parser.add_argument("--threads", type=common.thread_count, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run on generated data: 0.3 s budgets, 6 samples, chains of "
                             "0, 1 and 2 steps (options given explicitly win)")
    parser.add_argument("--json", metavar="FILE", type=common.json_path,
                        help="write the rows as JSON")
    args = common.parse_arguments(parser, argv,
                                  quick={"budget": 0.3, "samples": 6, "steps": [0, 1, 2]})
    if len(set(args.seeds)) < len(args.seeds):  # a seed's run folder would be reused
        parser.error(f"--seeds must differ, got {args.seeds}")
    if args.budget <= 0 or not math.isfinite(args.budget):
        parser.error(f"--budget must be a positive number of seconds, got {args.budget}")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            mnist, overrides = quick_overrides(Path(tmp))
            work, first_chunk = Path(args.work or Path(tmp) / "runs"), 1
        else:
            if not SHARED.is_dir():
                parser.error(f"the real data are not at {SHARED}; run with --quick for a smoke "
                             "run")
            mnist = SHARED / "image" / "mnist.npz"
            overrides = {name: {"cooperative": [], "descriptor": []} for name in PAIRS}
            work, first_chunk = Path(args.work or "runs/coop_bench"), 10
        rows = []
        for seed in args.seeds:
            for name in args.task:
                rows += run_pair(name, PAIRS[name], work=work, budget=args.budget, seed=seed,
                                 n_samples=args.samples, steps=args.steps,
                                 overrides=overrides[name],
                                 mnist=mnist if name == "digits" else None, quick=args.quick,
                                 first_chunk=first_chunk)
                print(format_tables(rows), flush=True)
    print(f"# training: {args.budget:g} s of process CPU time per model, torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s); seconds are process CPU "
          "seconds; lower distances are closer to the data")
    if args.json:
        environment = {"torch": torch.__version__, "threads": torch.get_num_threads()}
        atomic_write_json(args.json, [{**row, **environment, "options": common.options(args)}
                                      for row in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
