"""Composition: two experts trained apart, added at sampling time (a product of experts), make
samples that meet both experts' conditions more often than either expert alone.

Expert A knows digit classes, expert B knows stroke thickness; neither saw the other's labels.
Both are the library's 28x28 ConvNet classifier read as an energy
(:class:`stgconv.energy.ClassifierEnergy`), trained by cross-entropy on MNIST digits with
Gaussian noise added to the inputs (a noise-trained classifier's input gradient points along
strokes rather than at invisible adversarial patterns, which is what a sampler follows):

- A: the ten digit classes; its expert for digit ``K`` is ``E_A(x) = -log p_A(K | x)``;
- B: thick vs thin strokes (training digits whose stroke width is in the top / bottom third);
  its expert is ``E_B(x) = -log p_B(thick | x)``.

Each expert alone (``E_A``, ``E_B``) and their sum (``ProductOfExperts([E_A, E_B])``) is sampled by
the same Langevin chain (:class:`stgconv.mcmc.Langevin`, same settings and seed) from the same
starts: ``--start digits`` (random test digits of every class: the chains edit them), ``gaussian``
(draws of one Gaussian fitted to the experts' training digits, :class:`stgconv.mcmc.DataGaussian`)
or ``noise`` (uniform in [-1, 1]). Every set is then measured by judges the experts never saw:

- condition A: ``bench/digits.py``'s classifier (another net, trained without noise on other
  training digits) calls it digit ``K``;
- condition B: stroke width = ink area / skeleton length (pixels above 0 of [-1, 1], skeleton by
  ``skimage.morphology.skeletonize``) at least the training digits' 2/3 quantile, and ink area
  at most the training digits' 99% quantile (both printed): a blot of ink is not a thick digit.

``--energy conditional`` samples each classifier's own class energy ``E(x, y) = -f(x)[y]``
(JEM's) instead of ``-log p(y | x)``: for these plain classifiers it has no floor, and the
chains run to extremes (bench/README.md shows them).

Run from the repository root (MNIST from ../shared/data)::

    python -m bench.compose --json compose.json
    python -m bench.compose --quick                      # smoke run on generated digits
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import argparse
import math
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bench.digits import MNIST, DigitClassifier, quick_digits, train_classifier
from stgconv.checks import MAX_STEP_SIZE
from stgconv.data.image import load_npz_images, load_npz_labels
from stgconv.energy import ClassifierEnergy, ProductOfExperts, digit_classifier
from stgconv.io.image import save_image_grid
from stgconv.mcmc import DataGaussian, Langevin
from stgconv.types import EnergyFn

# The stroke-width quantile above which a digit counts as thick (condition B), and below which
# expert B's "thin" training digits lie (1 - it).
THICK_QUANTILE = 2 / 3
# The ink-area quantile of the training digits above which a sample fails condition B.
INK_QUANTILE = 0.99


def strokes(images: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 1, 28, 28)`` in ``[-1, 1]`` -> ink area ``(N,)`` (pixels above 0) and stroke width
    ``(N,)``, ink area / skeleton length in pixels (0 for an image without ink)."""
    from skimage.morphology import skeletonize

    ink = images[:, 0].numpy() > 0
    area = ink.sum(axis=(1, 2))
    skeleton = np.array([skeletonize(image).sum() for image in ink])
    return area, np.where(skeleton > 0, area / np.maximum(skeleton, 1), 0.0)


def train_expert(images: Tensor, labels: Tensor, n_classes: int, *, steps: int, noise: float,
                 width: int, seed: int) -> tuple[ClassifierEnergy, float]:
    """A :func:`~stgconv.energy.digit_classifier` energy fitted by cross-entropy to ``images``
    ``(N, 1, 28, 28)`` plus N(0, noise^2) noise, ``steps`` Adam steps of 128; returns it (eval
    mode) and the process CPU seconds it took."""
    started = time.process_time()
    torch.manual_seed(seed)
    energy = ClassifierEnergy(digit_classifier(n_classes, width=width))
    optimizer = torch.optim.Adam(energy.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(len(images), (128,), generator=generator)
        x = images[batch] + noise * torch.randn(images[batch].shape, generator=generator)
        loss = F.cross_entropy(energy.logits(x), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return energy.eval().requires_grad_(False), time.process_time() - started


def expert_energy(expert: ClassifierEnergy, label: int, kind: str) -> EnergyFn:
    """``-log p(label | x)`` (``kind`` ``"posterior"``) or ``-f(x)[label]``
    (``"conditional"``), ``(B, 1, 28, 28)`` -> ``(B,)``."""
    if kind == "conditional":
        return expert.conditional(label)
    return partial(neg_log_posterior, expert, label)


def neg_log_posterior(expert: ClassifierEnergy, label: int, x: Tensor) -> Tensor:
    """``-log p(label | x)``, ``(B, 1, 28, 28)`` -> ``(B,)``: low where the expert is sure."""
    return -expert.log_prob_y(x)[:, label]


@torch.no_grad()
def measure(name: str, images: Tensor, judge: DigitClassifier, digit: int, thick: float,
            max_ink: float) -> dict:
    """One table row: the share of ``images`` ``(N, 1, 28, 28)`` meeting A, B and both."""
    is_digit = torch.cat([judge(chunk).argmax(1) for chunk in images.split(500)]).numpy() == digit
    area, widths = strokes(images)
    is_thick = (widths >= thick) & (area <= max_ink)
    return {"set": name, "n": len(images), "a": float(is_digit.mean()),
            "b": float(is_thick.mean()), "both": float((is_digit & is_thick).mean()),
            "mean_width": float(widths.mean()), "blots": float((area > max_ink).mean())}


def split(path: Path, key: str, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """A random ``n`` of split ``key`` (``"train"``, ``"test"``): images and labels, in a
    random order drawn from ``seed``."""
    images = load_npz_images(path, key=f"x_{key}", size=28, channels=1)
    with np.load(path) as archive:
        labels = torch.from_numpy(archive[f"y_{key}"].astype(np.int64))
    keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return images[keep], labels[keep]


def check_digits(path: Path, *, n_judge: int) -> None:
    """``ValueError`` naming ``path`` unless both splits are digits with labels 0 to 9 and the
    training split holds more than the judge's ``n_judge``: else a traceback, the test split's
    only after the experts' training."""
    for key in ("train", "test"):
        load_npz_images(path, key=f"x_{key}", size=28, channels=1)
        labels = load_npz_labels(path, key=f"y_{key}", images=f"x_{key}")
        if len(labels) and labels.max() > 9:
            raise ValueError(f"{path}: y_{key} holds the label {int(labels.max())}; the digits "
                             "are 0 to 9")
        if key == "train" and len(labels) <= n_judge:
            raise ValueError(f"{path}: x_train holds {len(labels)} digits; the judge trains on "
                             f"{n_judge} and the experts on the others: give more than {n_judge}")


def run(args: argparse.Namespace, data: Path, *, sizes: tuple[int, int, int]
        ) -> tuple[str, list[dict]]:
    """Train the judge and the experts, sample the three sets, measure them; ``sizes``: the
    experts' training digits, the judge's, and the test digits drawn from. Returns the table
    and its rows."""
    n_train, n_judge, n_test = sizes
    images, labels = split(data, "train", n_train + n_judge, args.seed)
    # The judge learns from digits the experts never see.
    started = time.process_time()
    judge = train_classifier(images[:n_judge], labels[:n_judge], epochs=5 if not args.quick
                             else 1, seed=args.seed + 1)
    judge_s = time.process_time() - started
    images, labels = images[n_judge:], labels[n_judge:]
    area, widths = strokes(images)
    thick, thin = np.quantile(widths, THICK_QUANTILE), np.quantile(widths, 1 - THICK_QUANTILE)
    max_ink = float(np.quantile(area, INK_QUANTILE))
    kept = torch.from_numpy((widths >= thick) | (widths <= thin))
    expert_a, a_s = train_expert(images, labels, 10, steps=args.expert_steps,
                                 noise=args.expert_noise, width=args.width, seed=args.seed)
    expert_b, b_s = train_expert(images[kept], torch.from_numpy(widths >= thick)[kept].long(), 2,
                                 steps=args.expert_steps, noise=args.expert_noise,
                                 width=args.width, seed=args.seed + 2)
    e_a = expert_energy(expert_a, args.digit, args.energy)
    e_b = expert_energy(expert_b, 1, args.energy)
    generator = torch.Generator().manual_seed(args.seed)
    if args.start == "digits":
        test, _ = split(data, "test", n_test, args.seed)
        x0 = test[torch.randperm(len(test), generator=generator)[:args.samples]]
    elif args.start == "gaussian":
        # One Gaussian for all the experts' training digits (no labels): blurred digit-like
        # starts of every class, as `chains.init: data_gaussian` starts an unlabelled model.
        x0 = DataGaussian.fit(images).sample((args.samples, 1, 28, 28), generator=generator)
        x0 = x0.clamp(-1, 1)  # pixels, as the chains keep them (a Gaussian's tails are not)
    else:
        x0 = torch.rand(args.samples, 1, 28, 28, generator=generator) * 2 - 1
    sampler = Langevin(n_steps=args.steps, step_size=(2 * args.step) ** 0.5,
                       noise_scale=args.noise / (2 * args.step) ** 0.5, clamp=(-1.0, 1.0),
                       precision="fp32")
    sets = {"start": x0}
    seconds = {}
    for name, energy in (("expert A alone", e_a), ("expert B alone", e_b),
                         ("A + B (product)", ProductOfExperts([e_a, e_b]))):
        started = time.process_time()
        sets[name] = sampler.run(energy, x0, generator=torch.Generator().manual_seed(args.seed))
        seconds[name] = time.process_time() - started
    rows = [measure(name, x, judge, args.digit, thick, max_ink) for name, x in sets.items()]
    with torch.no_grad():
        test_images, test_labels = split(data, "test", n_test, args.seed + 3)
        judge_accuracy = float((judge(test_images).argmax(1) == test_labels).float().mean())
    settings = {"digit": args.digit, "start": args.start, "energy": args.energy,
                "thick_width": float(thick), "max_ink": max_ink,
                "steps": args.steps, "step": args.step, "noise": args.noise,
                "expert_steps": args.expert_steps, "expert_noise": args.expert_noise,
                "expert_a_cpu_s": a_s, "expert_b_cpu_s": b_s, "judge_cpu_s": judge_s,
                "judge_test_accuracy": judge_accuracy, "seed": args.seed}
    for row in rows:
        row.update(settings, sample_cpu_s=seconds.get(row["set"]))
    if args.picture:
        save_image_grid(torch.cat([x[:12] for x in sets.values()]), args.picture, nrow=12)
    columns = [common.Column("set", "set", "<18"), common.Column("n", "n", ">5"),
               common.Column(f"A: digit {args.digit}", "a", ">10", ".3f"),
               common.Column("B: thick", "b", ">9", ".3f"),
               common.Column("both", "both", ">6", ".3f"),
               common.Column("mean width", "mean_width", ">10", ".2f"),
               common.Column(f"ink>{max_ink:.0f}", "blots", ">8", ".3f")]
    lines = [f"# compose: digit {args.digit} x thick strokes, {args.energy} energies, "
             f"{args.samples} chains from {args.start}, {args.steps} Langevin steps "
             f"(step {args.step}, noise {args.noise}); experts {a_s:.0f} + {b_s:.0f} CPU s, "
             f"judge {judge_s:.0f} CPU s (test accuracy {judge_accuracy:.3f}); 1 thread, "
             "process CPU time",
             f"# A: the judge calls it {args.digit}; B: stroke width >= {thick:.2f} px and ink "
             f"<= {max_ink:.0f} px (training digits' {THICK_QUANTILE:.2f} and {INK_QUANTILE} "
             "quantiles)"]
    return common.text_table(lines, columns, rows), rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--data", default=str(MNIST), help="MNIST in the Keras .npz layout "
                        f"(default: {common.from_repository(MNIST)})")
    parser.add_argument("--digit", type=int, default=3, help="K, expert A's digit")
    parser.add_argument("--samples", type=int, default=500, help="chains per set")
    parser.add_argument("--start", choices=["digits", "gaussian", "noise"], default="digits",
                        help="the chains' common start: random test digits, draws of a Gaussian "
                             "fitted to the experts' training digits, or uniform noise")
    parser.add_argument("--energy", choices=["posterior", "conditional"], default="posterior",
                        help="each expert's energy: -log p(y | x), or the class energy -f(x)[y]")
    parser.add_argument("--steps", type=int, default=100, help="Langevin steps")
    parser.add_argument("--step", type=float, default=4.0,
                        help="gradient step delta^2 / 2 of the Langevin update")
    parser.add_argument("--noise", type=float, default=0.01, help="noise s * delta per step")
    parser.add_argument("--expert-steps", type=int, default=1500,
                        help="Adam steps of 128 per expert")
    parser.add_argument("--expert-noise", type=float, default=0.5,
                        help="std of the Gaussian noise on the experts' training inputs")
    parser.add_argument("--width", type=int, default=16, help="the experts' ConvNet width")
    parser.add_argument("--seed", type=common.seed_number, default=0)
    parser.add_argument("--picture", type=common.png_path, metavar="PNG",
                        help="write the first 12 of each set (rows: start, A, B, A + B)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: generated digits, 12 chains of 3 steps, experts of "
                             "width 4 trained 20 steps (options given explicitly win)")
    parser.add_argument("--json", metavar="FILE", type=common.json_path)
    args = common.parse_arguments(
        parser, argv, quick={"samples": 12, "steps": 3, "expert_steps": 20, "width": 4},
        generated=["data"])
    if not 0 <= args.digit <= 9:
        parser.error(f"--digit must be 0 .. 9, got {args.digit}")
    for name in ("samples", "steps", "expert_steps", "width"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    # Checked here: the sampler refuses them only after the experts' training.
    if not 0 < args.step < math.inf:
        parser.error(f"--step must be a positive number, got {args.step}")
    if not 0 <= args.noise < math.inf:
        parser.error(f"--noise must be a number >= 0, got {args.noise}")
    # The sampler's step is sqrt(2 step) and its noise std is noise: each has the step's bound.
    if args.step > MAX_STEP_SIZE**2 / 2:
        parser.error(f"--step must be at most {MAX_STEP_SIZE**2 / 2:g}, got {args.step}")
    if args.noise > MAX_STEP_SIZE:
        parser.error(f"--noise must be at most {MAX_STEP_SIZE:g}, got {args.noise}")
    if not 0 <= args.expert_noise < math.inf:  # a NaN failed the experts' first chain
        parser.error(f"--expert-noise must be a number >= 0, got {args.expert_noise}")
    torch.set_num_threads(1)  # CPU seconds comparable under contention (bench/README.md)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data)
        if args.quick:
            data = quick_digits(Path(tmp))
        elif not data.is_file():
            parser.error(f"MNIST not found at {data} (pass --data)")
        sizes = (400, 200, 300) if args.quick else (30_000, 10_000, 5_000)
        try:
            check_digits(data, n_judge=sizes[1])
        except ValueError as err:
            parser.error(str(err))
        table, rows = run(args, data, sizes=sizes)
    common.report(table, rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
