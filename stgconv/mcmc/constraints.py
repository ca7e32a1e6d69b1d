"""Conditional sampling as a projection applied after every sampler step.

A constraint never changes the update itself: the sampler proposes as usual and then calls
``project``. Both constraints here are *affine orthogonal projections* ``x -> P x + c``, which is
what makes them idempotent and what lets MALA and HMC stay exact under them: those samplers move
only along ``P`` (the ``tangent`` map) and compute proposal densities there.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from stgconv.ops import block_down, nearest_up


class Constraint:
    """Base class. Subclasses implement ``project``; ``tangent`` defaults to ``P v``."""

    def project(self, x: Tensor) -> Tensor:
        """Map ``x`` ``(B, *S)`` onto the constraint set; idempotent."""
        raise NotImplementedError

    def tangent(self, v: Tensor) -> Tensor:
        """The linear part ``P v`` of the projection: the directions a chain may move in.

        For an affine projection ``P x + c`` this equals ``project(v) - project(0)``.
        """
        return self.project(v) - self.project(torch.zeros_like(v))


class KnownEntries(Constraint):
    """Clamp the known entries to their observed values (recovery, inpainting).

    Args:
        observed: ``(B, *S)`` or broadcastable to the chains; values at unknown entries are ignored.
        known: bool tensor broadcastable to ``observed``; ``True`` marks an observed entry that
            must never change. (Loaders convert masks that mark *missing* entries.)
    """

    def __init__(self, observed: Tensor, known: Tensor) -> None:
        if known.dtype != torch.bool:
            raise ValueError(f"known must be a bool tensor (True = observed), got {known.dtype}")
        try:
            torch.broadcast_shapes(known.shape, observed.shape)
        except RuntimeError as err:
            raise ValueError(
                f"known {tuple(known.shape)} does not broadcast against observed "
                f"{tuple(observed.shape)}"
            ) from err
        self.observed = observed
        self.known = known

    def project(self, x: Tensor) -> Tensor:
        return torch.where(self.known, self.observed, x)

    def tangent(self, v: Tensor) -> Tensor:
        return v.masked_fill(self.known, 0.0)


class DownsampleConsistency(Constraint):
    """Keep ``block_down(x, factor) == low`` exactly (super-resolution).

    ``project(x) = x - up(down(x)) + up(low)`` replaces each block's mean by the low-resolution
    value while keeping the detail inside the block.

    Args:
        low: ``(B, *lead, n1, ..., nk)`` low-resolution tensor.
        factor: ``(f1, ..., fk)`` block size over the trailing dims: ``(f, f)`` for images,
            ``(f, f, f)`` for voxels, ``(1, f, f)`` or ``(ft, f, f)`` for videos.
    """

    def __init__(self, low: Tensor, factor: Sequence[int]) -> None:
        self.low = low
        self.factor = tuple(int(f) for f in factor)
        self._low_up = nearest_up(low, self.factor)

    def project(self, x: Tensor) -> Tensor:
        k = len(self.factor)
        try:
            fits = torch.broadcast_shapes(x.shape, self._low_up.shape) == x.shape
        except RuntimeError:
            fits = False
        if not fits or x.shape[-k:] != self._low_up.shape[-k:]:
            raise ValueError(
                f"x has shape {tuple(x.shape)}, expected {tuple(self._low_up.shape)}: trailing dims "
                f"{tuple(self._low_up.shape[-k:])} (low {tuple(self.low.shape)} x factor {self.factor})"
            )
        return self.tangent(x) + self._low_up

    def tangent(self, v: Tensor) -> Tensor:
        return v - nearest_up(block_down(v, self.factor), self.factor)
