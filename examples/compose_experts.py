"""Energies add: sample a product of two experts with Langevin, and one expert with HMC.

Expert A is a Gaussian fitted to MNIST digits (what digits look like, pixel by pixel); expert B
is a smoothness prior (neighbouring pixels alike). Their product, E = E_A + w E_B, is sampled by
Langevin dynamics; expert A alone by Hamiltonian Monte Carlo, whose accept/reject test makes it
exact, so its samples' energies should look like those of real digits.

    python examples/compose_experts.py                # MNIST from ../shared/data
    python examples/compose_experts.py --smoke        # synthetic blobs, a few seconds

Measured here (seed 0, 4 CPU s): the smoothness energy of the samples 413 from expert A alone,
256 from the product, 227 for held-out digits; HMC accepted 41% of its trajectories and its
samples' E_A (277) is near held-out digits' (298).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import stgconv
from stgconv.cli import DefaultsFormatter, json_file, seed_number
from stgconv.data.image import load_npz_images
from stgconv.energy import ProductOfExperts
from stgconv.io.atomic import atomic_write_json
from stgconv.mcmc import DataGaussian

MNIST = Path(__file__).resolve().parents[1] / "../shared/data/image/mnist.npz"


def smoothness(x: torch.Tensor) -> torch.Tensor:
    """Expert B: ``(B, 1, H, W) -> (B,)``, the squared differences of neighbouring pixels."""
    return x.diff(dim=-1).pow(2).flatten(1).sum(1) + x.diff(dim=-2).pow(2).flatten(1).sum(1)


def synthetic_digits(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, 1, size, size)`` in [-1, 1]: one bright Gaussian blob each, a stand-in for digits."""
    grid = torch.arange(size).float()
    centres = torch.rand(n, 2, generator=generator) * size / 2 + size / 4
    dy = (grid[None, :, None] - centres[:, 0, None, None]) ** 2
    dx = (grid[None, None, :] - centres[:, 1, None, None]) ** 2
    return (2 * torch.exp(-(dx + dy) / 4) - 1)[:, None]


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

    if args.smoke:
        digits, steps = synthetic_digits(64, 8, g), 20
    else:
        # A fixed random 2000 of the 60000: the file is ordered by writer.
        try:  # a file of another layout: the loader's one line, not its traceback
            digits = load_npz_images(args.data, size=28, channels=1, max_images=2000)
        except ValueError as error:
            parser.error(str(error))
        # Else a traceback from the Gaussian's fit, which needs 2 examples in the half it fits.
        if len(digits) < 4:
            parser.error(f"{args.data} holds {len(digits)} image(s); this example needs at "
                         "least 4 (half to fit expert A to, half held out)")
        steps = 300
    train, held_out = digits[: len(digits) // 2], digits[len(digits) // 2:]

    # Expert A: E_A(x) = -log q(x), q a Gaussian with 16 principal directions (a probabilistic
    # PCA of the digits). log_prob is differentiable in x, so any sampler can follow it.
    gaussian = DataGaussian.fit(train, rank=16)
    # Images all alike leave no spread: a step of 0 below, refused as a traceback.
    if float(gaussian.residual_std.min()) == 0:
        parser.error(f"{args.data}: the images expert A is fitted to (the first half) are all "
                     "alike, which leaves its Gaussian no spread to sample")

    def digit_expert(x: torch.Tensor) -> torch.Tensor:
        return -gaussian.log_prob(x)

    # The product: a sum of energies; weight 0.5 asks for smoothness without overruling A.
    product = ProductOfExperts([digit_expert, smoothness], weights=[1.0, 0.5])
    start = torch.rand(16, *digits.shape[1:], generator=g) * 2 - 1     # (16, 1, H, W) noise
    # Step size below the Gaussian's smallest spread (its residual std): a larger step
    # makes unadjusted Langevin overshoot along those directions.
    step = 0.5 * float(gaussian.residual_std.min())
    langevin = stgconv.Langevin(n_steps=steps, step_size=step)
    alone = langevin.run(digit_expert, start, generator=g)
    both = langevin.run(product, start, generator=g)

    # HMC on expert A alone; the callback records each step's accept/reject decisions.
    accepted = []
    hmc = stgconv.HMC(n_steps=steps // 2, step_size=step, n_leapfrog=10)
    exact = hmc.run(digit_expert, start, generator=g,
                    callback=lambda info: accepted.append(info.accepted.float().mean().item()))

    with torch.no_grad():
        numbers = {
            "smoothness_real": smoothness(held_out).mean().item(),
            "smoothness_langevin_A": smoothness(alone).mean().item(),
            "smoothness_langevin_A_plus_B": smoothness(both).mean().item(),
            "energy_A_real": digit_expert(held_out).mean().item(),
            "energy_A_langevin_A_plus_B": digit_expert(both).mean().item(),
            "energy_A_hmc": digit_expert(exact).mean().item(),
            "hmc_acceptance": sum(accepted) / len(accepted),
        }
    for name, value in numbers.items():
        print(f"{name:32s} {value:12.3f}")
    if args.json:
        atomic_write_json(args.json, numbers)  # a NaN refused, naming its key
    return numbers


if __name__ == "__main__":
    main()
