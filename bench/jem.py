"""JEM on MNIST (issue 12): the hybrid model against the same network trained as a plain
classifier, on classification, calibration, out-of-distribution detection, robustness and
per-class samples.

Two runs of ``configs/image/jem_mnist_quick.yaml``: the JEM model (``--jem``) and the plain
classifier (``--plain``, the same config with ``--set jem.px_weight=0 --set
train.n_iterations=11000``: JEM's CPU budget), either trained before (``stgconv train``) or here
with ``--train`` (which also measures their training CPU time).
Tables, each row with its seconds (process CPU time, so other work on shared cores does not
count):

- classification: MNIST test accuracy and the expected calibration error (15 bins);
- OOD: AUROC of the recommended score of ``stgconv eval ood`` (``stgconv``: -E(x) + beta log
  q(x) + gamma log r(phi(x)), q and r the Gaussians fitted to the training data and to the
  trained network's features of it), of its three parts alone (``energy``, ``q``, ``r``) and
  of max-softmax for both models, MNIST's test digits against outliers built here:
  uniform and Gaussian noise, vertically flipped test digits (all of them, and only those of
  the digits that do not read as themselves upside down: not 0, 1, 3, 8), inverted test
  digits, crops of scikit-image's texture photographs, frames of the shared DynTex clips
  (``../shared/data/video/*.avi``), letters rendered in strokes near MNIST's width,
  silhouettes of the shared ModelNet10 shapes and pen scribbles that spell nothing, these three
  laid out as MNIST lays out its digits, all 28x28 grey (``--outliers-dir`` keeps them as
  ``.npz`` for ``stgconv eval ood``), and any sets given as files (``--extra-outliers``:
  real outliers such as Fashion-MNIST's clothes, which the repository does not hold);
- robustness: test accuracy under an L-inf PGD attack (``--eps`` in [0, 1] pixel units);
- samples: ``stgconv synthesize --class K`` for every digit, a 10x10 grid (row = class) and,
  scored by bench/digits.py's independent classifier, the class histogram, its entropy, the
  share of samples read as the class they were drawn for, the classifier-feature Frechet
  distance to test digits and the filter-statistics distance to training digits; the same for
  the chains' fresh starts (what the samples would score had the chains not moved).

Run from the repository root::

    python -m bench.jem --jem runs/jem_mnist_quick --plain runs/jem_mnist_plain \\
        --grid jem_grid.png --json jem.json
    python -m bench.jem --train --json jem.json      # trains both runs first
    python -m bench.jem --quick                       # smoke run on generated digits
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from bench.digits import (chain_length, chain_starts, load_split, quick_digits, score,
                          test_halves, train_classifier)
from stgconv.checkpoint import load_checkpoint
from stgconv.data.image import load_npz_images
from stgconv.energy.classifier import ClassifierEnergy
from stgconv.evaluation.ood import load_classifier, score_images
from stgconv.io.atomic import atomic_save_npz
from stgconv.io.image import save_image_grid, to_levels
from stgconv.metrics import auroc, expected_calibration_error
from stgconv.tasks.synthesize import check_start, synthesize

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "image" / "mnist.npz"
VIDEOS = ROOT.parent / "shared" / "data" / "video"
MODELNET = ROOT.parent / "shared" / "data" / "voxel" / "modelnet10_30_train.npz"
CONFIG = ROOT / "configs" / "image" / "jem_mnist_quick.yaml"
TEXTURES = ("brick", "grass", "gravel")
MODELS = ("jem", "plain")
OOD_SCORES = ("stgconv", "energy", "reference", "features", "max_softmax")


# Upside down, these read as themselves (0, 1, 8 are nearly symmetric; 3 too, about its
# middle): as outliers their flips would be mislabelled inliers.
SELF_SYMMETRIC = (0, 1, 3, 8)


def outlier_sets(digits: np.ndarray, labels: np.ndarray, n: int, *, videos: Path, seed: int
                 ) -> dict[str, np.ndarray]:
    """Outliers, uint8 ``(n, H, W)`` each (sides other than 28 are resized on loading, as
    ``eval ood`` does), from MNIST test digits ``digits`` ``(N, 28, 28)`` uint8 of classes
    ``labels`` ``(N,)`` and data at hand. The DynTex frames are left out when ``videos`` holds
    no ``.avi`` clip."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits))
    pick = digits[order[:n]]
    asymmetric = order[~np.isin(labels[order], SELF_SYMMETRIC)][:n]
    sets = {
        "uniform noise": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        "gaussian noise": rng.normal(127.5, 64.0, (n, 28, 28)).clip(0, 255).astype(np.uint8),
        "vertically flipped digits": np.ascontiguousarray(pick[:, ::-1]),
        "flipped digits except 0 1 3 8": np.ascontiguousarray(digits[asymmetric][:, ::-1]),
        "inverted digits": 255 - pick,
    }
    from skimage import data as skimage_data

    crops = []
    photos = [getattr(skimage_data, name)() for name in TEXTURES]
    for i in range(n):
        photo = photos[i % len(photos)]
        grey = photo if photo.ndim == 2 else photo.mean(axis=2).astype(np.uint8)
        top, left = (rng.integers(0, side - 64) for side in grey.shape[:2])
        crops.append(grey[top:top + 64, left:left + 64])
    sets["scikit-image texture crops"] = np.stack(crops)
    clips = sorted(videos.glob("*.avi"))
    if clips:
        from stgconv.io.video import load_video

        # Every frame of every clip (a few hundred each), n of them picked at random.
        frames = torch.cat([load_video(clip, size=28, channels=1)[0] for clip in clips])
        keep = torch.from_numpy(rng.permutation(len(frames))[:n])
        sets["DynTex frames"] = to_levels(frames[keep]).round().to(torch.uint8).numpy()
    sets["rendered letters"] = rendered_letters(n, rng)
    if MODELNET.is_file():
        sets["ModelNet10 silhouettes"] = silhouettes(MODELNET, n, rng)
    # Last, so that the sets before it draw as they did before it was added.
    sets["pen scribbles"] = scribbles(n, rng)
    return sets


def extra_outliers(paths: Sequence[Path], n: int, *, seed: int) -> dict[str, np.ndarray]:
    """Up to ``n`` images of each file's ``x_test`` (uint8 ``(N, H, W)``), drawn at random,
    named by the file's stem."""
    sets = {}
    rng = np.random.default_rng(seed)
    for path in paths:
        arrays = common.read_npz(path)
        if "x_test" not in arrays:
            raise ValueError(f"{path} has no array x_test (has {sorted(arrays)})")
        images = arrays["x_test"]
        if images.dtype != np.uint8 or images.ndim != 3 or len(images) == 0:
            raise ValueError(f"{path}: x_test must be uint8 (N, H, W) with N >= 1, got "
                             f"{images.dtype} {images.shape}")
        if path.stem in sets:
            raise ValueError(f"two files named {path.stem}: the table names each set by its "
                             "file's name")
        sets[path.stem] = images[np.sort(rng.permutation(len(images))[:n])]
    return sets


# Letters that do not pass for a digit when handwritten (no O, I, l, S, Z, B, G, b, g, q, o, s,
# z, i, which read as 0, 1, 5, 2, 8, 6, 9).
LETTERS = "ACDEFHJKLMNPQRTUVWXYacdefhjkmnprtuvwxy"


def digit_box(glyph: np.ndarray) -> np.ndarray:
    """A white-on-black image ``(H, W)`` uint8 laid out as MNIST lays out its digits: the ink's
    bounding box scaled into 20x20 (aspect kept), placed in 28x28 with its centre of mass at
    the centre."""
    from PIL import Image

    rows, cols = np.nonzero(glyph)
    ink = glyph[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = 20 / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    small = np.asarray(Image.fromarray(ink).resize(size, Image.LANCZOS)).astype(np.float64)
    canvas = np.zeros((28, 28))
    top, left = (28 - small.shape[0]) // 2, (28 - small.shape[1]) // 2
    canvas[top:top + small.shape[0], left:left + small.shape[1]] = small
    mass = canvas.sum()
    centre = [(canvas.sum(axis=1 - axis) * np.arange(28)).sum() / mass for axis in (0, 1)]
    shift = [int(round(13.5 - c)) for c in centre]
    return np.roll(canvas, shift, axis=(0, 1)).clip(0, 255).astype(np.uint8)


def rendered_letters(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 28, 28)`` uint8 letters (:data:`LETTERS`) in Pillow's own font, strokes of random
    width near MNIST's (somewhat bolder on average: mean ink 45 against the digits' 29 of 255),
    randomly slanted, laid out as MNIST digits (:func:`digit_box`): the nearest outliers at
    hand to handwritten letters."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=80)
    out = []
    for _ in range(n):
        letter = LETTERS[rng.integers(len(LETTERS))]
        canvas = Image.new("L", (160, 160))
        ImageDraw.Draw(canvas).text((80, 80), letter, fill=255, font=font, anchor="mm",
                                    stroke_width=int(rng.integers(0, 4)), stroke_fill=255)
        shear = rng.uniform(-0.3, 0.3)
        canvas = canvas.transform(canvas.size, Image.AFFINE, (1, shear, -80 * shear, 0, 1, 0),
                                  resample=Image.BILINEAR)
        out.append(digit_box(np.asarray(canvas)))
    return np.stack(out)


def scribbles(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 28, 28)`` uint8 pen strokes that spell nothing: 2 to 4 connected quadratic Bezier
    curves through random points, drawn in strokes near MNIST's width and laid out as MNIST
    digits (:func:`digit_box`): ink like a digit's, shape of none, as strangers' scripts
    (Omniglot, KMNIST) would be."""
    from PIL import Image, ImageDraw

    out = []
    t = np.linspace(0, 1, 24)[:, None]
    for _ in range(n):
        canvas = Image.new("L", (160, 160))
        draw = ImageDraw.Draw(canvas)
        width = int(rng.integers(10, 18))
        point = rng.uniform(30, 130, 2)
        for _ in range(int(rng.integers(2, 5))):
            control, end = rng.uniform(20, 140, (2, 2))
            curve = (1 - t) ** 2 * point + 2 * (1 - t) * t * control + t ** 2 * end
            draw.line([tuple(xy) for xy in curve], fill=255, width=width, joint="curve")
            point = end
        out.append(digit_box(np.asarray(canvas)))
    return np.stack(out)


def silhouettes(path: Path, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 28, 28)`` uint8 white-on-black silhouettes of ModelNet10 shapes (``path``: ``X``
    ``(N, 30, 30, 30)`` {0, 1}), each seen along a random axis and laid out as MNIST digits
    (:func:`digit_box`): solid objects, the kind of outlier that clothing images are."""
    with np.load(path) as archive:
        shapes = archive["X"]
    shapes = shapes[shapes.reshape(len(shapes), -1).any(1)]  # the file has empty grids
    out = []
    for index in rng.permutation(len(shapes))[:n]:
        view = shapes[index].max(axis=int(rng.integers(3))).astype(np.uint8) * 255
        out.append(digit_box(np.ascontiguousarray(np.rot90(view, int(rng.integers(4))))))
    return np.stack(out)


def to_model(images: np.ndarray, folder: Path, name: str) -> Tensor:
    """``images`` uint8 ``(N, H, W)`` as the model reads them, ``(N, 1, 28, 28)`` in
    ``[-1, 1]``: written as ``<folder>/<name>.npz`` (``x_test``) and loaded as ``eval ood``
    loads it."""
    path = outlier_file(folder, name)
    atomic_save_npz(path, x_test=images)
    return load_npz_images(path, key="x_test", size=28, channels=1)


def outlier_file(folder: Path, name: str) -> Path:
    """Where :func:`to_model` keeps the outlier set ``name``."""
    return folder / (name.replace(" ", "_") + ".npz")


def pgd_accuracy(energy: ClassifierEnergy, x: Tensor, y: Tensor, *, eps: float, steps: int,
                 batch_size: int = 250) -> float:
    """Accuracy on ``x`` ``(N, 1, 28, 28)`` in ``[-1, 1]`` (labels ``y`` ``(N,)``) under an
    L-inf PGD attack of radius ``eps`` in ``[0, 1]`` pixel units (``2 eps`` in the model's),
    ``steps`` signed-gradient steps of ``2.5 eps / steps`` from the clean image (Madry et al.
    2018), pixels kept in range."""
    radius, step = 2 * eps, 2.5 * 2 * eps / steps
    right = 0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        adv = xb.clone()
        for _ in range(steps):
            adv.requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(energy.logits(adv), yb)
            (grad,) = torch.autograd.grad(loss, adv)
            adv = adv.detach() + step * grad.sign()
            adv = (xb + (adv - xb).clamp(-radius, radius)).clamp(-1.0, 1.0)
        with torch.no_grad():
            right += int((energy.logits(adv).argmax(1) == yb).sum())
    return right / len(x)


# The plain classifier is given JEM's whole CPU budget (bench/README.md, third round on): the
# same network and schedule without the p(x) term runs this many iterations in the CPU time
# JEM's 4,400 take.
PLAIN_ITERATIONS = 11_000
# What makes the config's run the plain classifier: no p(x) term.
PLAIN_SETTING = "jem.px_weight=0"


def train_runs(config: Path, data: Path, runs: dict[str, Path], overrides: Sequence[str], *,
               plain_iterations: int | None = PLAIN_ITERATIONS) -> dict[str, float]:
    """Train the JEM run and the plain one (``jem.px_weight=0``, ``plain_iterations``
    iterations; ``None``: the config's) into ``runs["jem"]`` and ``runs["plain"]``; their
    process CPU seconds."""
    from stgconv.config import load_config
    from stgconv.tasks.train import train

    plain = [PLAIN_SETTING] + ([] if plain_iterations is None
                               else [f"train.n_iterations={plain_iterations}"])
    seconds = {}
    for name, extra in (("jem", []), ("plain", plain)):
        started = time.process_time()
        train(load_config(config, [f"data.path={data}", f"out_dir={runs[name]}",
                                   "device=cpu", *overrides, *extra]),
              overwrite=True, progress=False)
        seconds[name] = time.process_time() - started
    return seconds


def sample_rows(run: Path, work: Path, *, per_class: int, steps: int | None, start: str,
                seed: int, judge: Any, test_features: Tensor, train_images: Tensor
                ) -> tuple[dict, Tensor]:
    """``per_class`` samples of each digit from ``run``'s class energies, scored; and the
    samples ``(10, per_class, 1, 28, 28)``."""
    started = time.process_time()
    out = synthesize(run, work / "samples", n_samples=per_class, classes=list(range(10)),
                     n_steps=steps, start=start, seed=seed, device="cpu")
    sample_s = time.process_time() - started
    samples = common.read_pixels(out / "synthesized.npy")
    row = score("JEM class-conditional samples", samples, judge, test_features, train_images)
    with torch.no_grad():
        read_as = torch.cat([judge(chunk).argmax(1) for chunk in samples.split(500)])
    asked = torch.arange(10).repeat_interleave(per_class)
    row.update({"read_as_asked": float((read_as == asked).double().mean()),
                "per_class_read_as_asked": [float((read_as[asked == k] == k).double().mean())
                                            for k in range(10)],
                "seconds": sample_s, "start": start,
                "steps": chain_length(run, steps)})
    return row, samples.view(10, per_class, *samples.shape[1:])


def start_row(run: Path, *, per_class: int, seed: int, judge: Any, test_features: Tensor,
              train_images: Tensor) -> dict:
    """The class chains' fresh starts scored as :func:`sample_rows` scores the samples: what
    the samples would score had the chains not moved."""
    name, starts = chain_starts(run, per_class, seed=seed, classes=10)
    row = score(f"reference: chain start ({name})", starts, judge, test_features,
                train_images)
    with torch.no_grad():
        read_as = torch.cat([judge(chunk).argmax(1) for chunk in starts.split(500)])
    asked = torch.arange(10).repeat_interleave(per_class)
    row["read_as_asked"] = float((read_as == asked).double().mean())
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--jem", default="runs/jem_mnist_quick", help="the trained JEM run")
    parser.add_argument("--plain", default="runs/jem_mnist_plain",
                        help="the same network trained as a plain classifier")
    parser.add_argument("--train", action="store_true",
                        help="train both runs first, into --jem and --plain (replacing runs there)")
    parser.add_argument("--data", default=str(MNIST), help="MNIST in the Keras .npz layout "
                        f"(default: {common.from_repository(MNIST)})")
    parser.add_argument("--outliers", type=common.count(10), default=1000,
                        help="images per outlier set")
    parser.add_argument("--robust", type=common.count(1), default=1000,
                        help="test digits attacked")
    parser.add_argument("--eps", type=float, default=0.1,
                        help="PGD radius in [0, 1] pixel units")
    parser.add_argument("--pgd-steps", type=common.count(1), default=10)
    parser.add_argument("--per-class", type=common.count(1), default=100,
                        help="samples per digit (the grid shows the first 10 of each)")
    parser.add_argument("--steps", type=common.count(1), default=None,
                        help="sampling chain length (default: the config's sampler.task_steps, "
                             "else its training length)")
    parser.add_argument("--start", choices=["noise", "chains"], default="noise",
                        help="class chains from fresh noise or from the replay buffer")
    parser.add_argument("--grid", type=common.png_path,
                        help="write the 10x10 sample grid (PNG) here")
    parser.add_argument("--extra-outliers", type=Path, nargs="+", default=[], metavar="FILE",
                        help="more outlier sets: .npz files with x_test uint8 (N, H, W), "
                             "--outliers of each drawn at random, named by the file")
    parser.add_argument("--outliers-dir", type=common.output_folder,
                        help="keep the outlier sets here as .npz (x_test)")
    parser.add_argument("--seed", type=common.seed_number, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: generated digits and 2-iteration models, 20 outliers "
                             "per set, 20 attacked digits, 2 PGD steps, 2 samples per class "
                             "(options given explicitly win)")
    parser.add_argument("--json", metavar="FILE", type=common.json_path)
    args = common.parse_arguments(
        parser, argv, quick={"outliers": 20, "robust": 20, "per_class": 2, "pgd_steps": 2},
        generated=["data", "jem", "plain", "train"])
    if not 0 < args.eps <= 1:
        parser.error(f"--eps must be in (0, 1], got {args.eps}")
    try:  # read now, not after minutes of scoring
        extra = extra_outliers(args.extra_outliers, args.outliers, seed=args.seed)
    except (OSError, ValueError) as err:
        parser.error(f"--extra-outliers: {err}")
    if args.outliers_dir is not None:
        for path in args.extra_outliers:
            if outlier_file(Path(args.outliers_dir), path.stem).resolve() == path.resolve():
                parser.error(f"--extra-outliers {path} would be overwritten by its own set: "
                             "give another --outliers-dir")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data, runs = Path(args.data), {"jem": Path(args.jem), "plain": Path(args.plain)}
        train_s: dict[str, float | None] = {"jem": None, "plain": None}
        n_train, n_test = 10_000, 10_000
        if args.quick:
            data = quick_digits(work)
            runs = {name: work / name for name in MODELS}
            train_s = train_runs(CONFIG, data, runs, [
                "train.n_iterations=2", "train.batch_size=8", "jem.px_batch=4",
                "sampler.n_steps=2", "sampler.task_steps=2", "chains.buffer_capacity=16",
                "train.sample_every=0", f"seed={args.seed}"], plain_iterations=None)
            n_train, n_test = 600, 300
        elif not data.is_file():
            parser.error(f"MNIST not found at {data} (pass --data)")
        elif args.train:
            train_s = train_runs(CONFIG, data, runs, [f"seed={args.seed}"])
        else:
            for name, run in runs.items():
                if not run.exists():
                    # The plain run's settings named: the config alone trains a second JEM,
                    # which the tables would then compare as the plain classifier.
                    settings = (["--set", PLAIN_SETTING,
                                 "--set", f"train.n_iterations={PLAIN_ITERATIONS}"]
                                if name == "plain" else [])
                    command = shlex.join(["stgconv", "train", str(CONFIG), *settings,
                                          "--data", str(data), "--out", str(run)])
                    parser.error(f"no trained run at {run} ({command}; or pass --{name}, or "
                                 "--train)")
        try:  # now, not after the runs' scores: numpy's KeyError names no file
            test_images, test_labels = load_split(data, "test", n_test)
            train_images, train_labels = load_split(data, "train", n_train)
        except (KeyError, ValueError) as err:
            parser.error(f"--data {data}: cannot read MNIST: {err}")
        loaded = {}
        for name, run in runs.items():
            try:  # a run of another model: one line now, not a traceback
                loaded[name] = load_classifier(run, device="cpu")
            except ValueError as err:
                parser.error(f"--{name}: {err}")
            images = loaded[name].config.data
            if (images.size, images.channels) != (28, 1):  # else a traceback at the scores
                parser.error(f"--{name}: {run} is a model of {images.size}x{images.size} images "
                             f"of {images.channels} channel(s); this bench scores 28x28 grey "
                             "digits")
            n_classes = loaded[name].config.model.n_classes
            if n_classes != 10:  # else a traceback at the calibration, after the scores
                parser.error(f"--{name}: {run} is a classifier of {n_classes} classes; this "
                             "bench scores the 10 digits 0 .. 9")
        if args.start == "chains":  # else synthesize refuses them after every table
            try:
                check_start(load_checkpoint(runs["jem"]), "chains", n_chains=10 * args.per_class)
            except ValueError as err:
                parser.error(f"--start chains (--per-class {args.per_class} of each of the 10 "
                             f"digits): {err}")
        models = {name: model.energy for name, model in loaded.items()}
        references = {name: model.reference for name, model in loaded.items()}
        feature_references = {name: model.feature_reference for name, model in loaded.items()}
        with np.load(data) as archive:
            test_uint8, test_labels_uint8 = archive["x_test"], archive["y_test"]

        # Classification and calibration.
        rows: list[dict] = []
        inlier_scores, weights = {}, {}
        for name, energy in models.items():
            started = time.process_time()
            logits, inlier_scores[name], weights[name] = score_images(
                energy, references[name], test_images,
                feature_reference=feature_references[name], weights=loaded[name].weights)
            probabilities = torch.softmax(logits / loaded[name].temperature, 1)
            rows.append({"table": "classification", "model": name, "run": str(runs[name]),
                         "accuracy": float((probabilities.argmax(1) == test_labels).double()
                                           .mean()),
                         # At the run's fitted temperature, as eval ood reports it, and at 1.
                         "ece": expected_calibration_error(probabilities, test_labels),
                         "temperature": loaded[name].temperature,
                         "ece_uncalibrated": expected_calibration_error(
                             torch.softmax(logits, 1), test_labels),
                         # Above the accuracy: overconfident; below: underconfident.
                         "mean_confidence": float(probabilities.max(1).values.mean()),
                         "train_cpu_s": train_s[name],
                         "reference_weight": weights[name]["reference"],
                         "feature_weight": weights[name]["features"],
                         "weights_from": ("training data" if loaded[name].weights is not None
                                          else "test digits"),
                         "seconds": time.process_time() - started})

        # OOD detection.
        outliers_dir = Path(args.outliers_dir) if args.outliers_dir else work / "outliers"
        outliers_dir.mkdir(parents=True, exist_ok=True)
        sets = outlier_sets(test_uint8, test_labels_uint8, args.outliers, videos=VIDEOS,
                            seed=args.seed)
        sets.update(extra)
        for set_name, images in sets.items():
            started = time.process_time()
            x = to_model(images, outliers_dir, set_name)
            row: dict[str, Any] = {"table": "ood", "outliers": set_name, "n": len(x)}
            for name, energy in models.items():
                _, scores, _ = score_images(energy, references[name], x,
                                            feature_reference=feature_references[name],
                                            weights=weights[name])
                for score_name in OOD_SCORES:
                    if score_name in scores:
                        row[f"{name}_{score_name}"] = auroc(inlier_scores[name][score_name],
                                                            scores[score_name])
            row["seconds"] = time.process_time() - started
            rows.append(row)

        # Subsets of the test digits in a fixed random order: the file's own order follows its
        # writers, so its head is one stretch of them.
        shuffled = torch.randperm(len(test_images), generator=torch.Generator().manual_seed(0))

        # Robustness: --robust digits, or every test digit where there are fewer.
        attacked = shuffled[:args.robust]
        for name, energy in models.items():
            started = time.process_time()
            rows.append({"table": "robustness", "model": name, "eps": args.eps,
                         "pgd_steps": args.pgd_steps, "n": len(attacked),
                         "accuracy": pgd_accuracy(energy, test_images[attacked],
                                                  test_labels[attacked], eps=args.eps,
                                                  steps=args.pgd_steps),
                         "seconds": time.process_time() - started})

        # Per-class samples, judged by bench/digits.py's classifier.
        started = time.process_time()
        judge = train_classifier(train_images, train_labels, epochs=1 if args.quick else 5,
                                 seed=args.seed)
        with torch.no_grad():
            judge_accuracy = float((judge(test_images).argmax(1) == test_labels).double().mean())
            # As bench/digits.py: 1000 test digits to compare with, 1000 others as a reference.
            half = min(1000, len(test_images) // 2)
            compared, others = test_halves(test_images, half)
            test_features = judge.features(compared)
        judge_s = time.process_time() - started
        sample_row, samples = sample_rows(
            runs["jem"], work, per_class=args.per_class, steps=args.steps, start=args.start,
            seed=args.seed, judge=judge, test_features=test_features,
            train_images=train_images)
        reference = score("reference: other test digits", others[:10 * args.per_class],
                          judge, test_features, train_images)
        sample_table = [sample_row, reference]
        if args.start == "noise":  # the fresh starts the samples came from (not the buffer's)
            sample_table.append(start_row(
                runs["jem"], per_class=args.per_class, seed=args.seed, judge=judge,
                test_features=test_features, train_images=train_images))
        for row in sample_table:
            row.update({"table": "samples", "judge_accuracy": judge_accuracy,
                        "judge_s": judge_s})
        rows += sample_table
        if args.grid is not None:
            save_image_grid(samples[:, :10].flatten(0, 1), args.grid,
                            nrow=min(10, args.per_class))

    common.report(format_tables(rows, args), rows, args)
    return 0


def format_tables(rows: list[dict], args: argparse.Namespace) -> str:
    """The four tables as text."""
    def table(kind: str) -> list[dict]:
        return [row for row in rows if row["table"] == kind]

    lines = ["# JEM vs the same network as a plain classifier; seconds are process CPU time "
             f"with 1 torch thread (torch {torch.__version__})",
             f"{'model':<7}{'test acc':>10}{'ECE(15)':>9}{'T':>7}{'ECE at T=1':>12}"
             f"{'confidence':>12}{'train CPU s':>13}{'s':>7}"]
    for row in table("classification"):
        train = "-" if row["train_cpu_s"] is None else f"{row['train_cpu_s']:.0f}"
        lines.append(f"{row['model']:<7}{row['accuracy']:>10.4f}{row['ece']:>9.4f}"
                     f"{row['temperature']:>7.3f}{row['ece_uncalibrated']:>12.4f}"
                     f"{row['mean_confidence']:>12.4f}{train:>13}{row['seconds']:>7.1f}")
    weights_from = ", ".join(f"{row['model']}'s from {row['weights_from']}"
                             for row in table("classification"))
    lines += ["", "# OOD AUROC, MNIST test digits vs each set ('stgconv' = -E(x) + beta log "
              "q(x) + gamma log r(phi(x)), the recommended score of eval ood; 'energy' = -E(x) "
              "alone; 'q' = the Gaussians fitted to the digits alone; 'r' = those fitted to the "
              f"network's features alone; '-' = not fitted); beta and gamma: {weights_from}"]
    columns = [(model, score) for model in MODELS for score in OOD_SCORES]
    short = {"stgconv": "stgconv", "energy": "energy", "reference": "q", "features": "r",
             "max_softmax": "maxsoft"}
    lines.append(f"{'outliers':<31}{'n':>6}"
                 + "".join(f"{model + ' ' + short[score]:>15}" for model, score in columns)
                 + f"{'s':>7}")
    for row in table("ood"):
        cells = "".join(f"{row[f'{m}_{s}']:>15.4f}" if f"{m}_{s}" in row else f"{'-':>15}"
                        for m, s in columns)
        lines.append(f"{row['outliers']:<31}{row['n']:>6}{cells}{row['seconds']:>7.1f}")
    lines += ["", f"# PGD L-inf eps {args.eps} ([0, 1] pixel units), {args.pgd_steps} steps",
              f"{'model':<7}{'n':>6}{'accuracy':>10}{'s':>8}"]
    lines += [f"{row['model']:<7}{row['n']:>6}{row['accuracy']:>10.4f}{row['seconds']:>8.1f}"
              for row in table("robustness")]
    samples, *references = table("samples")
    start = "fresh starts" if args.start == "noise" else "the replay buffer's chains"
    lines += ["", f"# class-conditional samples (from {start}, {samples['steps']} steps), "
              f"judged by bench/digits.py's classifier (test accuracy "
              f"{samples['judge_accuracy']:.4f})",
              f"{'set':<52}{'n':>6}{'entropy/log10':>14}{'frechet':>9}{'filter stats':>13}"
              f"{'read as asked':>14}{'s':>8}"]
    for row in (samples, *references):
        asked = f"{row['read_as_asked']:.3f}" if "read_as_asked" in row else "-"
        seconds = f"{row['seconds']:.0f}" if "seconds" in row else "-"
        lines.append(f"{row['set']:<52}{row['n']:>6}{row['class_entropy']:>14.3f}"
                     f"{row['frechet']:>9.2f}{row['filter_stats_distance']:>13.3f}{asked:>14}"
                     f"{seconds:>8}")
    lines.append(f"# class histogram of the samples: {samples['class_histogram']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
