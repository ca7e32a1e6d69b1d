"""The generator network of cooperative learning: a latent vector ``z`` to an example ``x``.

One ConvNet serves every modality, because only the example's shape differs: a linear layer maps
``z`` ``(B, latent_dim)`` to a coarse grid, then stages of nearest up-sampling and a 3x3 (3x3x3)
convolution double the grid until it reaches the example's size, and a last convolution gives the
example: images ``(B, C, H, W)``, videos ``(B, C, T, H, W)``, voxels ``(B, 1, D, H, W)``, in the
model's units. The output is not squashed by a ``tanh``: on MNIST, whose background is the range's
end (-1), a ``tanh`` output saturated there within the first hundred iterations and its gradient
vanished, leaving every ``G(z)`` the same black image; the revising sampler clamps the proposals to
the data's range where the config has a clamp. A dimension is doubled only while it stays even and
at least :data:`MIN_BASE`, so 28x28 digits start at 7x7 and 16-frame clips of 64x64 frames at 4x4x4
(time doubling in the last stages only).

No batch normalisation: the generator is used one example at a time as often as in batches
(interpolation, a chain's start), and batch statistics would make ``G(z)`` depend on the rest
of the batch; it learns by regression on the revised samples, which trains stably without.
Like the energies, ``self.config`` holds the constructor arguments (plain data) so a checkpoint
rebuilds it without pickled classes.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from stgconv.checks import as_int, check_dtype, check_generator, is_int

MIN_BASE = 4
"""The smallest side a dimension is halved down to (an odd side stops earlier)."""


def stage_plan(size: Sequence[int]) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """The coarse grid and each stage's up-sampling factors for an example of trailing ``size``.

    Returns:
        ``(base, factors)``: ``base`` the grid the linear layer fills, ``factors`` one tuple of
        per-dimension factors (1 or 2) per stage, coarse to fine; a dimension that needs fewer
        doublings than another is doubled in the last stages only.
    """
    halvings = []
    for n in size:
        count = 0
        while n % 2 == 0 and n // 2 >= MIN_BASE:
            n //= 2
            count += 1
        halvings.append(count)
    n_stages = max(halvings)
    base = tuple(n >> h for n, h in zip(size, halvings))
    factors = [tuple(2 if stage >= n_stages - h else 1 for h in halvings)
               for stage in range(n_stages)]
    return base, factors


class ConvGenerator(nn.Module):
    """``G(z)``: ``(B, latent_dim)`` -> ``(B, *out_shape)``.

    Args:
        latent_dim: the size of ``z``.
        out_shape: one example's shape ``(C, *S)`` with 2 (images) or 3 (videos, voxels)
            trailing dimensions.
        width: channels of the last up-sampling stage; each earlier stage has twice as many
            (capped at ``8 * width``).
    """

    def __init__(self, *, latent_dim: int, out_shape: Sequence[int], width: int = 32) -> None:
        super().__init__()
        # is_int, not int(): a size of 8.5 was truncated to 8 and True taken for 1, without a
        # word; a latent_dim or width of 2.5 failed inside torch, naming neither.
        if not all(is_int(n) and n >= 1 for n in (latent_dim, width)):
            raise ValueError(f"latent_dim and width must be ints >= 1, got {latent_dim} and "
                             f"{width}")
        out_shape = tuple(out_shape)
        if len(out_shape) not in (3, 4) or not all(is_int(n) and n >= 1 for n in out_shape):
            raise ValueError(f"out_shape must be (C, H, W) or (C, T, H, W) / (C, D, H, W) with "
                             f"positive int sizes, got {out_shape}")
        # Python ints: a numpy integer kept in the config made the trainer's first checkpoint
        # refuse to be written ("would hold objects other than tensors and plain data"), after
        # the training up to it.
        latent_dim, width = int(latent_dim), int(width)
        out_shape = tuple(int(n) for n in out_shape)
        self.config: dict[str, Any] = {"latent_dim": latent_dim, "out_shape": list(out_shape),
                                       "width": width}
        self.latent_dim = latent_dim
        self.out_shape = out_shape
        channels, size = out_shape[0], out_shape[1:]
        conv = nn.Conv2d if len(size) == 2 else nn.Conv3d
        base, factors = stage_plan(size)
        widths = [width * min(2 ** (len(factors) - k), 8) for k in range(len(factors) + 1)]
        self.base = base
        # math.prod, not a tensor's: a tensor made for the count is made on the meta device
        # under torch.device("meta"), where its value cannot be read.
        self.project = nn.Linear(latent_dim, widths[0] * math.prod(base))
        stages: list[nn.Module] = [nn.ReLU()]
        for factor, c_in, c_out in zip(factors, widths, widths[1:]):
            stages += [nn.Upsample(scale_factor=factor, mode="nearest"),
                       conv(c_in, c_out, 3, padding=1), nn.ReLU()]
        stages.append(conv(widths[-1], channels, 3, padding=1))
        self.body = nn.Sequential(*stages)
        self.base_channels = widths[0]

    def forward(self, z: Tensor) -> Tensor:
        """``z`` ``(B, latent_dim)`` -> examples ``(B, *out_shape)``."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be (B, {self.latent_dim}), got {tuple(z.shape)}")
        check_dtype(z, next(self.parameters()).dtype, "z")  # as ConvNetEnergy's check
        h = self.project(z).reshape(len(z), self.base_channels, *self.base)
        return self.body(h)

    def sample_latent(self, n: int, *, device: torch.device | str | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws of the prior ``z ~ N(0, I)``: ``(n, latent_dim)``, in the network's
        dtype (drawn in torch's default dtype, a float64 net's were refused by its first
        layer)."""
        check_generator(generator, "ConvGenerator.sample_latent")
        as_int(n, "n", minimum=0)  # else 2.5 failed inside torch.randn, naming no argument
        weight = next(self.parameters())  # not project.weight: as ConvNetEnergy's dtype check
        device = device if device is not None else weight.device
        return torch.randn(n, self.latent_dim, device=device, dtype=weight.dtype,
                           generator=generator)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, out_shape={self.out_shape}"


def build_generator(config: dict[str, Any]) -> ConvGenerator:
    """Rebuild a generator from its plain-data ``config`` (as stored in checkpoints)."""
    return ConvGenerator(**config)
