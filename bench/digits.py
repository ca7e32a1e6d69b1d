"""Digit samples scored as the "Learning that pays" issue asks: do they look like digits, and
are all ten digits there?

A small classifier (two convolutions, two linear layers) is trained here on a random 10,000 of
MNIST's training digits and checked on the test split; then, for the samples of a trained model
(``synthesized.npy`` of ``stgconv synthesize``) and for reference sets, it reports:

- ``class_entropy``: entropy of the classifier's class histogram over the samples, divided by
  ``log 10`` (1: every digit equally often; the issue asks >= 0.9), and the histogram itself;
- ``frechet``: Frechet distance between the classifier's penultimate features of the samples and
  of 1,000 test digits (lower is closer; the FID formula on this classifier's features);
- ``spread``: per-pixel std across the samples, averaged, and its ratio to the data's;
- ``filter_stats_distance``: the appearance statistics of :mod:`stgconv.evaluation.quality`
  against the training digits.

Reference rows: as many other test digits as samples, up to 1,000 (what real digits score;
the samples are compared with another random 1,000) and, for ``--start noise``, the chains'
start (the model's configured start). Run from the
repository root after training ``configs/image/mnist_quick.yaml``::

    python -m bench.digits --run runs/mnist_quick --json digits.json
    python -m bench.digits --quick                       # smoke run on generated digits
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from stgconv.build import task_sampler
from stgconv.checkpoint import CheckpointError, load_checkpoint, model_from_state
from stgconv.data.image import load_npz_images
from stgconv.evaluation import quality
from stgconv.tasks.synthesize import check_start, check_steps, synthesize

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "image" / "mnist.npz"


class DigitClassifier(nn.Module):
    """``(B, 1, 28, 28)`` in ``[-1, 1]`` -> 10 logits; ``features`` is the 128-d layer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU())
        self.head = nn.Linear(128, 10)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def train_classifier(images: Tensor, labels: Tensor, *, epochs: int, seed: int
                     ) -> DigitClassifier:
    torch.manual_seed(seed)
    model = DigitClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(images), generator=generator).split(128):
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def score(name: str, images: Tensor, model: DigitClassifier, test_features: Tensor,
          train_images: Tensor) -> dict:
    """One table row for ``images`` ``(N, 1, 28, 28)`` in ``[-1, 1]``; their spread against
    that of ``N`` training digits (:func:`common.data_spread`: 50 digits spread 0.96x what
    1,000 do, 1,000 0.99x what 10,000 do)."""
    logits = torch.cat([model(chunk) for chunk in images.split(500)])
    features = torch.cat([model.features(chunk) for chunk in images.split(500)])
    labels = logits.argmax(1)
    spread = quality.spread(images)
    data_spread = common.data_spread(train_images, len(images))
    return {
        "set": name,
        "n": len(images),
        "class_entropy": quality.class_entropy(labels, 10) / math.log(10),
        "class_histogram": torch.bincount(labels, minlength=10).tolist(),
        "frechet": quality.frechet_distance(features, test_features),
        "spread": spread,
        "spread_vs_data": spread / data_spread,
        "filter_stats_distance": quality.filter_statistics_distance(images, train_images),
    }


def load_split(path: Path, split: str, n: int) -> tuple[Tensor, Tensor]:
    """A fixed random ``n`` of the split's digits ``(n, 1, 28, 28)`` and their labels."""
    with np.load(path) as archive:
        count = len(archive[f"y_{split}"])
        keep = np.sort(np.random.default_rng(0).permutation(count)[:n])
        labels = torch.from_numpy(archive[f"y_{split}"][keep].astype(np.int64))
    images = load_npz_images(path, key=f"x_{split}", size=28, channels=1)[torch.from_numpy(keep)]
    return images, labels


def test_halves(images: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Two disjoint fixed random sets of ``size`` of ``images`` ``(N, ...)``: the test digits
    samples are compared with, and the "other test digits" scored against them as a reference.
    Random, not in file order: MNIST's test file holds one group of writers in its first 5,000
    digits and another in the rest, and the two halves of a sorted subset differ by that."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return images[order[:size]], images[order[size:2 * size]]


def quick_digits(folder: Path) -> Path:
    """Generated stand-in digits (a bar at a class-dependent angle, of random thickness and
    offset, under faint pixel noise, so that a class's examples differ in every direction, as
    real digits do), Keras layout."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:28, :28] - 13.5

    def digits(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, n)
        angle = labels[:, None, None] * np.pi / 10
        offset, half_width = rng.uniform(-2, 2, (n, 1, 1)), rng.uniform(1.5, 3, (n, 1, 1))
        bar = np.abs(rows * np.cos(angle) - cols * np.sin(angle) - offset) < half_width
        noise = rng.normal(0, 8, bar.shape)
        return (bar * 255 + noise).clip(0, 255).astype(np.uint8), labels.astype(np.uint8)

    (x_train, y_train), (x_test, y_test) = digits(600), digits(300)
    path = folder / "digits.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def chain_length(run: Path, steps: int | None) -> int:
    """The chain length ``stgconv synthesize`` runs on ``run``'s model: ``steps``, else the
    model's ``sampler.task_steps``, else its training length."""
    if steps is not None:
        # As given, 0 included: a cooperative model's proposals unrevised, for which synthesize
        # builds no sampler (a sampler of 0 steps is refused).
        return steps
    return task_sampler(model_from_state(load_checkpoint(run), run)[1], n_steps=steps).n_steps


def chain_starts(run: Path, n: int, *, seed: int, classes: int | None = None
                 ) -> tuple[str, Tensor]:
    """What the fresh chains of ``run`` (a run folder or a checkpoint file) start from, named,
    and ``n`` such starts ``(n, 1, 28, 28)``
    in data units: what the samples would score had the chains not moved. With ``classes``
    (a JEM run): ``n`` of each class ``0 .. classes - 1``, class-major, as ``stgconv
    synthesize --class`` starts them."""
    from stgconv.build import chain_init
    from stgconv.checkpoint import load_checkpoint, model_from_state
    from stgconv.mcmc import DataGaussian
    from stgconv.modalities import modality_of

    # The run folder or a checkpoint file of it, as synthesize reads it: the folder's own
    # checkpoint.pt was read under a file given as the run, after the samples were drawn.
    state = load_checkpoint(run)
    _, config = model_from_state(state, run)
    init = chain_init(config.chains, state.get("init"))
    generator = torch.Generator().manual_seed(seed)
    if isinstance(init, DataGaussian):
        of_class = None if classes is None else torch.arange(classes).repeat_interleave(n)
        x0 = init.sample((n * (classes or 1), 1, 28, 28), classes=of_class, generator=generator)
        name = "data Gaussian" + (" of the class" if classes else "")
    else:
        x0 = init.sample((n * (classes or 1), 1, 28, 28), generator=generator)
        name = f"{config.chains.init} noise"
    return name, modality_of(config).to_data(x0, config)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--run", default="runs/mnist_quick", help="a trained digits model")
    parser.add_argument("--data", default=str(MNIST), help="MNIST in the Keras .npz layout "
                        f"(default: {common.from_repository(MNIST)})")
    parser.add_argument("--samples", type=common.count(2), default=1000,
                        help="samples to draw (the reference compares as many test digits, up "
                             "to 1,000)")
    parser.add_argument("--steps", type=common.count(0), default=None,
                        help="synthesis chain length (default: the model's sampler.task_steps, "
                             "else its training length)")
    parser.add_argument("--start", choices=["noise", "chains"], default="noise",
                        help="fresh chains from noise, or the trained model's replay buffer")
    parser.add_argument("--epochs", type=common.count(1), default=5,
                        help="classifier training epochs")
    parser.add_argument("--seed", type=common.seed_number, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: generated digits and a 2-iteration model, 20 samples, "
                             "1 epoch (options given explicitly win)")
    parser.add_argument("--json", metavar="FILE", type=common.json_path)
    args = common.parse_arguments(parser, argv, quick={"samples": 20, "epochs": 1},
                                  generated=["data", "run"])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data, run = Path(args.data), Path(args.run)
        if args.quick:
            from stgconv.config import load_config
            from stgconv.tasks.train import train

            data = quick_digits(work)
            run = train(load_config(ROOT / "configs/image/mnist_quick.yaml", [
                f"data.path={data}", f"out_dir={work / 'run'}", "train.n_iterations=2",
                "train.batch_size=8", "sampler.n_steps=2", "train.sample_every=0",
                "device=cpu"]), progress=False)
        elif not data.is_file():
            parser.error(f"MNIST not found at {data} (pass --data)")
        elif not run.exists():
            parser.error(f"no trained model at {run} (train configs/image/mnist_quick.yaml, "
                         "or pass --run)")
        try:  # now, not after the classifier's training
            state = load_checkpoint(run)
        except CheckpointError as err:
            parser.error(f"--run: {err}")
        for option, value, check in (("--steps", args.steps, check_steps),
                                     ("--start", args.start, check_start)):
            try:
                check(state, value)
            except ValueError as err:
                parser.error(f"{option} {value}: {err}")
        # Rows of models with other defaults held no word of it.
        steps = chain_length(run, args.steps)
        try:
            train_images, train_labels = load_split(data, "train",
                                                    10_000 if not args.quick else 600)
            test_images, test_labels = load_split(data, "test", 2000 if not args.quick else 300)
        except (KeyError, ValueError) as err:  # numpy's KeyError names the array, not the file
            parser.error(f"--data {data}: cannot read MNIST: {err}")
        images = state["config"]["data"]  # else a traceback once the classifier has trained
        if (images["kind"] not in ("texture", "objects")
                or (images["size"], images["channels"]) != (28, 1)):
            parser.error(f"--run: {run} is a model of {images['kind']} of size {images['size']} "
                         f"with {images['channels']} channel(s); the digit classifier scores "
                         "28x28 grey images")
        started = time.perf_counter()
        model = train_classifier(train_images, train_labels, epochs=args.epochs, seed=args.seed)
        with torch.no_grad():
            accuracy = (model(test_images).argmax(1) == test_labels).float().mean().item()
            compared, others = test_halves(test_images, len(test_images) // 2)
            test_features = model.features(compared)
        classifier_s = time.perf_counter() - started
        started = time.perf_counter()
        out = synthesize(run, work / "samples", n_samples=args.samples, n_steps=args.steps,
                         start=args.start, seed=args.seed, device="cpu")
        sample_s = time.perf_counter() - started
        samples = common.read_pixels(out / "synthesized.npy")
        sets = {"stgconv samples": samples,
                "reference: other test digits": others[:len(samples)]}  # as many: Frechet
        if args.start == "noise":  # the fresh starts the samples came from (not the buffer's)
            start_name, start = chain_starts(run, args.samples, seed=args.seed)
            sets[f"reference: chain start ({start_name})"] = start
        rows = [score(name, images, model, test_features, train_images)
                for name, images in sets.items()]
    for row in rows:
        row.update({"classifier_test_accuracy": accuracy, "classifier_s": classifier_s,
                    "sample_s": sample_s if row["set"] == "stgconv samples" else None,
                    "run": str(run), "start": args.start, "steps": steps})
    columns = [common.Column("set", "set", "<40"), common.Column("n", "n", ">5"),
               common.Column("entropy/log10", "class_entropy", ">14", ".3f"),
               common.Column("frechet", "frechet", ">9", ".2f"),
               common.Column("spread", "spread", ">7", ".3f"),
               common.Column("vs data", "spread_vs_data", ">8", ".2f", "x"),
               common.Column("filter stats", "filter_stats_distance", ">13", ".3f")]
    lines = [f"# digits: classifier test accuracy {accuracy:.4f} ({classifier_s:.0f} s); "
             f"{len(samples)} samples from {run} ({args.start}, {steps} steps, "
             f"{sample_s:.0f} s)"]
    table = common.text_table(lines, columns, rows)
    table += f"\n# class histogram of the samples: {rows[0]['class_histogram']}"
    common.report(table, rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
