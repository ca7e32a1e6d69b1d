"""Classical methods that learned models are compared against, one file per modality.

Every fill has one shape, :data:`stgconv.types.Fill`: ``fill(observed, known) -> filled``, which
keeps the observed entries and fills the others. :mod:`~stgconv.baselines.video` (``FILLS``:
temporal interpolation, biharmonic inpainting, neighbour average) works on one clip
``(C, T, H, W)``; :mod:`~stgconv.baselines.voxel` (``FILLS``: nearest known voxel, neighbour
majority; ``UPSAMPLERS``: nearest, trilinear) on batches ``(B, 1, D, H, W)``.
"""

from __future__ import annotations

import math

from torch import Tensor

from stgconv.checks import (
    check_batch,
    check_bool_mask,
    check_finite_observed,
    check_not_meta,
    expand_mask,
)


def mean_fill(observed: Tensor, known: Tensor) -> Tensor:
    """Every missing entry at the mean of its example's observed entries.

    Args:
        observed: ``(B, *S)`` (``S`` may be empty: one entry per example), finite at the known
            entries; values at missing entries are ignored (NaN included).
        known: bool, broadcastable to ``observed``, True = observed.

    Returns:
        ``(B, *S)``, equal to ``observed`` at the known entries.
    """
    check_bool_mask(known, "known")  # a float mask failed inside torch.where
    check_not_meta(observed, "observed")
    check_not_meta(known, "known")
    check_batch(observed, "observed")
    known = expand_mask(known, observed, "known", "observed")
    check_finite_observed(observed, known, "observed")  # else every missing entry turns NaN
    # Spelt out, not flatten(1): a batch (B,) has no dim 1.
    examples = (observed.shape[0], math.prod(observed.shape[1:]))
    where = [-1] + [1] * (observed.dim() - 1)
    total = observed.where(known, 0).reshape(examples).sum(1)
    mean = total / known.reshape(examples).sum(1).clamp(min=1)
    return observed.where(known, mean.view(where).expand_as(observed))
