"""A tiny JEM: a digit classifier that is also an energy model; its accuracy, and how well its
scores tell MNIST test digits from inverted ones (white strokes become black on white).

JEM (Grathwohl et al. 2020) trains the classifier's logits f(x) by cross-entropy and, through
E(x) = -logsumexp f(x), as a density by contrasting the data with Langevin samples drawn from a
replay buffer. The out-of-distribution scores are those of `stgconv eval ood`: -E(x) alone, the
classifier's max-softmax, a Gaussian fitted to the training pixels (log q) and their product.

    python examples/jem_ood.py            # MNIST from ../shared/data, about a CPU minute
    python examples/jem_ood.py --smoke    # synthetic two-class images, a few seconds

Measured here (2026-12-07, seed 0, 600 iterations on 10000 digits, one torch thread
(OMP_NUM_THREADS=1), torch 2.14.1, 43 CPU s; three runs alike to the last digit): 95.7% test
accuracy; AUROC against inverted digits 1.000 for the product score, 0.782 max-softmax, 0.012
for -E(x) alone (the energy ranks inverted digits above real ones, as bench/README.md found for
the full run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import stgconv
from stgconv.cli import DefaultsFormatter, json_file, seed_number
from stgconv.config import JEMConfig
from stgconv.data.image import load_npz_images, load_npz_labels
from stgconv.energy import ClassifierEnergy, digit_classifier
from stgconv.evaluation.ood import score_images
from stgconv.io.atomic import atomic_write_json
from stgconv.jem import HybridTrainer
from stgconv.mcmc import DataGaussian, ReplayBuffer
from stgconv.metrics import auroc

MNIST = Path(__file__).resolve().parents[1] / "../shared/data/image/mnist.npz"


def synthetic_digits(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, 1, 28, 28)`` dark images in [-1, 1] with a bright bar, horizontal for class 0,
    vertical for class 1 (a stand-in for digits); and their labels ``(n,)``."""
    labels = torch.randint(0, 2, (n,), generator=generator)
    x = torch.full((n, 1, 28, 28), -1.0) + 0.1 * torch.rand(n, 1, 28, 28, generator=generator)
    at = torch.randint(6, 22, (n,), generator=generator)
    for image, label, row in zip(x, labels, at):
        bar = image[0, row - 2:row + 2, 4:24] if label == 0 else image[0, 4:24, row - 2:row + 2]
        bar.fill_(1.0)
    return x, labels


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     formatter_class=DefaultsFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic run")
    parser.add_argument("--data", type=Path, default=MNIST, help="MNIST .npz (Keras layout)")
    parser.add_argument("--json", type=json_file, metavar="FILE",
                        help="write the printed numbers here")
    parser.add_argument("--seed", type=seed_number, default=0)
    args = parser.parse_args(argv)
    if not args.smoke and not args.data.exists():  # one line, not a loader's traceback
        parser.error(f"{args.data} not found: pass --data PATH, or --smoke")
    g = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)  # the classifier's initial weights

    if args.smoke:
        x, y = synthetic_digits(96, g)
        train_x, train_y, test_x, test_y = x[:64], y[:64], x[64:], y[64:]
        iterations, classes = 10, 2
    else:
        # Random subsets: both splits are ordered by writer.
        try:  # a file of another layout: the loader's one line, not its traceback
            train_x = load_npz_images(args.data, size=28, channels=1, max_images=10000)
            train_y = load_npz_labels(args.data, max_images=10000)
            test_x = load_npz_images(args.data, key="x_test", size=28, channels=1,
                                     max_images=2000)
            test_y = load_npz_labels(args.data, key="y_test", images="x_test", max_images=2000)
        except ValueError as error:
            parser.error(str(error))
        iterations, classes = 600, 10
        # Else a traceback from the per-class Gaussians the chains start from, or, for a test
        # label past 9, an accuracy of a class the classifier does not have.
        for labels, key in ((train_y, "y_train"), (test_y, "y_test")):
            if len(labels) and labels.max() >= classes:
                parser.error(f"{args.data}: {key} holds the label {int(labels.max())}; this "
                             f"example classifies digits 0 to {classes - 1}")
        counts = torch.bincount(train_y, minlength=classes)
        if counts.min() < 2:
            parser.error(f"{args.data}: y_train labels {int(counts.min())} image(s) as digit "
                         f"{int(counts.argmin())}; this example needs at least 2 of each digit")

    # A narrow net (width 16, not 64) keeps this within CPU minutes.
    energy = ClassifierEnergy(digit_classifier(classes, width=16))
    # SGLD as JEM runs it: gradient step 1 (step_size^2 / 2), noise 0.01, in [-1, 1].
    sampler = stgconv.Langevin(n_steps=5, step_size=2 ** 0.5, noise_scale=0.01 / 2 ** 0.5,
                               clamp=(-1.0, 1.0))
    # Fresh chains start from a Gaussian per class fitted to the digits (JEM++): from uniform
    # noise a few steps cannot reach anything digit-like.
    buffer = ReplayBuffer(2000, DataGaussian.fit(train_x, train_y, rank=16), fresh=0.05)
    trainer = HybridTrainer(energy, sampler, buffer, train_x, train_y,
                            jem=JEMConfig(px_weight=0.1, px_batch=16, lr_decay="cosine"),
                            train=stgconv.TrainConfig(n_iterations=iterations, batch_size=64,
                                                      lr=0.001, betas=(0.9, 0.999),
                                                      energy_l2=0.1),
                            generator=g)
    trainer.fit(iterations, progress=not args.smoke)
    energy.eval()

    # The score's second expert: a pixel Gaussian of the training digits, its weight set on
    # training digits (as training sets it), then every score on test and inverted digits.
    reference = DataGaussian.fit(train_x, rank=32)
    with torch.no_grad():
        _, _, weights = score_images(energy, reference, train_x[:1000])
        logits, inlier, _ = score_images(energy, reference, test_x, weights=weights)
        _, outlier, _ = score_images(energy, reference, -test_x, weights=weights)

    numbers = {"accuracy": (logits.argmax(1) == test_y).float().mean().item()}
    numbers.update({f"auroc_{name}": auroc(inlier[name], outlier[name]) for name in inlier})
    for name, value in numbers.items():
        print(f"{name:24s} {value:8.4f}")
    if args.json:
        atomic_write_json(args.json, numbers)  # a NaN refused, naming its key
    return numbers


if __name__ == "__main__":
    main()
