"""Tiny inputs shared by several test files (``from _tiny import boxes_and_balls``: pytest puts
``tests/`` on ``sys.path``): images and an image energy, voxel shapes; the tiny voxel run trained
on them is conftest.py's ``trained_voxel_run`` fixture.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from stgconv.energy import ConvNetEnergy, image_energy

ROOT = Path(__file__).resolve().parents[1]
SR_CONFIG = ROOT / "configs" / "voxel" / "super_resolution_quick.yaml"

TINY = ["--set", "data.size=16", "--set", "model.layers=[[4,4,2,1],[4,3,2,1]]",
        "--set", "train.n_iterations=2", "--set", "sampler.n_steps=3", "--set", "device=cpu",
        "--set", "train.sample_every=0", "--quiet"]
"""``stgconv train`` options that make the super-resolution config a CPU second's run."""


def boxes_and_balls(n: int, size: int, *, seed: int = 0) -> Tensor:
    """``(n, 1, size, size, size)`` {0, 1}: axis-aligned boxes (even i) and balls (odd i) of
    random centres and sizes."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(size) + 0.5] * 3, indexing="ij"))
    out = []
    for i in range(n):
        centre = size * (0.3 + 0.4 * torch.rand(3, generator=g)).view(3, 1, 1, 1)
        radius = size * (0.15 + 0.2 * torch.rand(1, generator=g))
        if i % 2:
            out.append(((grid - centre).pow(2).sum(0) <= radius**2).float())
        else:
            out.append(((grid - centre).abs() <= radius).all(0).float())
    return torch.stack(out)[:, None]


def tiny_energy(seed: int = 0) -> ConvNetEnergy:
    """A two-layer grey texture energy, its weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return image_energy("texture", in_channels=1, layers=[[8, 3, 1], [8, 3, 1]],
                        reference_sigma=0.5)


def tiny_data(n: int = 3, size: int = 16) -> Tensor:
    """``(n, 1, size, size)`` uniform in ``[-1, 1]``, always the same."""
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(100)) * 2 - 1
