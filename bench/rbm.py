"""RBMs on binarised MNIST: CD-1, CD-k and PCD at equal parameter updates, scored by the test
log-likelihood in nats with AIS's own spread.

Digits are binarised at 0.5 (pixel > 127). Each RBM (784 visible, ``--hidden`` hidden units) is
trained on the engine's :class:`stgconv.train.Trainer` with :class:`stgconv.mcmc.BlockGibbs`:
CD-k chains start at the batch (:class:`~stgconv.mcmc.DataStart`), PCD chains persist per
example (:class:`~stgconv.mcmc.PersistentChains`). Then ``log Z`` by AIS
(:func:`stgconv.energy.rbm.ais_log_partition`, base model with the data's base rates), repeated
``--ais-runs`` times with different seeds, and the mean test log-likelihood ``-F(v) - log Z``.

    python -m bench.rbm --json rbm.json
    python -m bench.rbm --quick                  # smoke run: generated binary images, seconds
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stgconv.config import TrainConfig
from stgconv.data.image import load_npz_images
from stgconv.energy.rbm import RBM, ais_log_partition
from stgconv.io.image import save_image_grid
from stgconv.mcmc import BlockGibbs, DataStart, NoiseInit, PersistentChains
from stgconv.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "image" / "mnist.npz"
METHODS = {"CD-1": ("cd", 1), "CD-10": ("cd", 10), "PCD-1": ("pcd", 1)}


def binarised(path: Path, key: str, n: int | None) -> torch.Tensor:
    """``(N, 784)`` of 0/1: the digits of ``key`` (a fixed random ``n``) thresholded at 0.5."""
    images = load_npz_images(path, key=key, size=28, channels=1, max_images=n)
    return (images.flatten(1) > 0).float()


def train_rbm(data: torch.Tensor, method: str, *, hidden: int, updates: int, lr: float,
              seed: int) -> tuple[RBM, float]:
    kind, k = METHODS[method]
    generator = torch.Generator().manual_seed(seed)
    rbm = RBM(data.shape[1], hidden, generator=generator)
    with torch.no_grad():  # visible biases at the data's base rates (Hinton's practical guide)
        rate = data.mean(0).clamp(1e-3, 1 - 1e-3)
        rbm.visible_bias.copy_((rate / (1 - rate)).log())
    chains = (DataStart() if kind == "cd"
              else PersistentChains(len(data), NoiseInit("uniform", 1.0)))
    trainer = Trainer(rbm, BlockGibbs(n_steps=k), chains, data,
                      train=TrainConfig(batch_size=100, lr=lr, betas=(0.5, 0.999)),
                      generator=generator)
    started = time.perf_counter()
    for _ in range(updates):
        trainer.step()
    return rbm, time.perf_counter() - started


def save_samples(rbm: RBM, path: Path, *, sweeps: int, seed: int) -> Path:
    """64 block-Gibbs chains of ``rbm`` from uniform binary noise, ``sweeps`` sweeps; the last
    ``p(v | h)`` of each as a 28x28 image in a PNG grid."""
    generator = torch.Generator().manual_seed(seed)
    start = (torch.rand(64, rbm.n_visible, generator=generator) < 0.5).float()
    v = BlockGibbs(n_steps=sweeps).run(rbm, start, generator=generator)
    with torch.no_grad():
        means = rbm.visible_mean(rbm.sample_hidden(v, generator=generator))
    path.parent.mkdir(parents=True, exist_ok=True)
    side = int(round(rbm.n_visible ** 0.5))
    return save_image_grid(means.reshape(-1, 1, side, side) * 2 - 1, path)


def quick_data(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    images = (rng.random((400, 28, 28)) < np.linspace(0.05, 0.6, 28)[None, None, :]) * 255
    path = folder / "binary.npz"
    np.savez(path, x_train=images[:300].astype(np.uint8), x_test=images[300:].astype(np.uint8))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--data", default=str(MNIST),
                        help=f"MNIST in the Keras .npz layout (default: "
                             f"{common.from_repository(MNIST)})")
    parser.add_argument("--hidden", type=common.count(1), default=100)
    parser.add_argument("--updates", type=common.count(1), default=3000,
                        help="parameter updates per method")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--train-images", type=common.count(1), default=20_000)
    parser.add_argument("--test-images", type=common.count(1), default=2000)
    parser.add_argument("--ais-runs", type=common.count(1), default=3)
    parser.add_argument("--ais-chains", type=common.count(2), default=100)
    parser.add_argument("--ais-betas", type=common.count(2), default=10_000)
    parser.add_argument("--seed", type=common.seed_number, default=0)
    parser.add_argument("--samples", metavar="DIR", type=common.output_folder,
                        help="also write rbm_<method>_samples.png here: 64 chains from uniform "
                             "noise after --sample-sweeps block-Gibbs sweeps (p(v | h) shown)")
    parser.add_argument("--sample-sweeps", type=common.count(1), default=1000)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run on generated images: 8 hidden units, 5 updates, AIS 2 x "
                             "10 chains x 50 temperatures, 300 / 100 images (options given "
                             "explicitly win)")
    parser.add_argument("--json", metavar="FILE", type=common.json_path)
    args = common.parse_arguments(parser, argv, quick={
        "hidden": 8, "updates": 5, "ais_runs": 2, "ais_chains": 10, "ais_betas": 50,
        "train_images": 300, "test_images": 100}, generated=["data"])
    if not 0 < args.lr < math.inf:
        parser.error(f"--lr must be a positive number, got {args.lr}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.data)
        if args.quick:
            path = quick_data(Path(tmp))
        elif not path.is_file():
            parser.error(f"MNIST not found at {path} (pass --data)")
        try:
            train = binarised(path, "x_train", args.train_images)
            test = binarised(path, "x_test", args.test_images)
        except ValueError as err:  # it names the file
            parser.error(str(err))
    rate = train.mean(0).clamp(1e-3, 1 - 1e-3)
    base = (rate / (1 - rate)).log()
    rows = []
    for method in METHODS:
        rbm, train_s = train_rbm(train, method, hidden=args.hidden, updates=args.updates,
                                 lr=args.lr, seed=args.seed)
        started = time.perf_counter()
        estimates = [ais_log_partition(rbm, n_chains=args.ais_chains, n_betas=args.ais_betas,
                                       base_visible_bias=base,
                                       generator=torch.Generator().manual_seed(args.seed + run))
                     for run in range(args.ais_runs)]
        ais_s = time.perf_counter() - started
        if args.samples is not None:
            save_samples(rbm, Path(args.samples) / f"rbm_{method.lower()}_samples.png",
                         sweeps=args.sample_sweeps, seed=args.seed)
        log_z = [e for e, _ in estimates]
        with torch.no_grad():
            mean_free = rbm(test).mean().item()
        log_lik = [-mean_free - z for z in log_z]
        rows.append({
            "method": method, "hidden": args.hidden, "updates": args.updates,
            "test_log_likelihood": statistics.mean(log_lik),
            "test_log_likelihood_runs": log_lik,
            "ais_spread_between_runs": statistics.pstdev(log_z),
            "ais_bootstrap_spread": statistics.mean(s for _, s in estimates),
            "log_z": statistics.mean(log_z), "train_s": train_s, "ais_s": ais_s,
        })
    columns = [common.Column("method", "method", "<7"),
               common.Column("test log-lik (nats)", "test_log_likelihood", ">20", ".2f"),
               common.Column("AIS spread", "ais_spread_between_runs", ">11", ".3f"),
               common.Column("bootstrap", "ais_bootstrap_spread", ">10", ".3f"),
               common.Column("log Z", "log_z", ">9", ".2f"),
               common.Column("train s", "train_s", ">8", ".0f"),
               common.Column("AIS s", "ais_s", ">6", ".0f")]
    lines = [f"# binarised digits, RBM 784 x {args.hidden}, {args.updates} updates of batch 100, "
             f"lr {args.lr}; AIS: {args.ais_runs} runs x {args.ais_chains} chains x "
             f"{args.ais_betas} temperatures"]
    common.report(common.text_table(lines, columns, rows), rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
