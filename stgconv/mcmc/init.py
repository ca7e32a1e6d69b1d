"""Initial states for chains: Gaussian or uniform noise, or data plus noise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import Tensor


@dataclass(frozen=True)
class NoiseInit:
    """Fresh chain starts: ``"gaussian"`` N(0, scale^2) or ``"uniform"`` U(-scale, scale).

    ``scale = 0`` starts every chain at zero, the reference mean (Xie et al. start texture
    chains there).
    """

    kind: Literal["gaussian", "uniform"] = "gaussian"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("gaussian", "uniform"):
            raise ValueError(f"noise kind must be 'gaussian' or 'uniform', got {self.kind!r}")
        if self.scale < 0:
            raise ValueError(f"noise scale must be >= 0, got {self.scale}")

    def sample(
        self,
        shape: Sequence[int],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """A tensor of ``shape`` drawn from this distribution."""
        if self.kind == "gaussian":
            return self.scale * torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return self.scale * (2 * torch.rand(shape, generator=generator, device=device, dtype=dtype) - 1)


def data_plus_noise(x: Tensor, *, std: float, generator: torch.Generator | None = None) -> Tensor:
    """``x + std * eps``, ``eps ~ N(0, I)``; ``x`` ``(B, *S)`` -> ``(B, *S)``."""
    if std == 0:
        return x.clone()
    return x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
