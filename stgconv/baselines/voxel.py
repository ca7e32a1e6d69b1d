"""Classical baselines for voxel super-resolution and recovery.

Every function is pure and works on float tensors ``(B, 1, D, H, W)`` of occupancy in ``[0, 1]``
(the voxel layout of :mod:`stgconv.types`); ``known`` masks are bool, ``True`` = observed.

Super-resolution (the low resolution is the block average of the high resolution, as in
:func:`stgconv.ops.block_down`):

- ``nearest``: every low-resolution voxel repeated over its block (:func:`stgconv.ops.nearest_up`);
  it already keeps ``block_down(x) == low``.
- ``trilinear``: ``torch.nn.functional.interpolate(mode="trilinear", align_corners=False)``.
- ``trilinear_binary``: the trilinear up-sampling made binary and consistent with the low
  resolution (:func:`stgconv.ops.block_top_k`): each block's known count of occupied voxels
  goes to its highest-interpolated voxels. A strong baseline for binary shapes: the block
  counts are exact, only their placement inside each block is guessed.

Recovery of missing voxels:

- ``nearest_known``: each missing voxel copies the nearest observed one (Euclidean distance,
  ``scipy.ndimage.distance_transform_edt`` with ``return_indices``).
- ``neighbour_majority``: each missing voxel takes the majority vote of the observed voxels in
  its 3x3x3 neighbourhood (a morphological fill), widened to 5^3, 7^3 where none is observed.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from stgconv.checks import (
    as_array,
    check_bool_mask,
    check_finite_observed,
    check_not_meta,
    check_voxels,
    expand_mask,
)
from stgconv.ops import block_down, block_top_k, linear_up, nearest_up
from stgconv.types import Fill

# --------------------------------------------------------------------------------------------
# Super-resolution
# --------------------------------------------------------------------------------------------


def nearest_upsample(low: Tensor, factor: int) -> Tensor:
    """``(B, 1, d, d, d) -> (B, 1, d*f, d*f, d*f)``: each voxel repeated over its block."""
    check_voxels(low, "low")
    return nearest_up(low, (factor,) * 3)


def trilinear_upsample(low: Tensor, factor: int) -> Tensor:
    """``(B, 1, d, d, d) -> (B, 1, d*f, d*f, d*f)``: trilinear interpolation between voxel
    centres (``align_corners=False``), clamped to ``[0, 1]``."""
    check_voxels(low, "low")
    return linear_up(low, (factor,) * 3).clamp(0.0, 1.0)


def trilinear_binary_upsample(low: Tensor, factor: int) -> Tensor:
    """``(B, 1, d, d, d) -> (B, 1, d*f, d*f, d*f)`` in {0, 1}: in every block the
    ``round(low * f^3)`` voxels of highest trilinear value occupied."""
    return block_top_k(trilinear_upsample(low, factor), low, (factor,) * 3)


UPSAMPLERS: dict[str, Callable[[Tensor, int], Tensor]] = {
    "nearest": nearest_upsample,
    "trilinear": trilinear_upsample,
    "trilinear_binary": trilinear_binary_upsample,
}
"""Name -> ``fill(low (B, 1, d, d, d), factor) -> (B, 1, d*f, d*f, d*f)``."""


def downsample(x: Tensor, factor: int) -> Tensor:
    """The low resolution of ``x`` ``(B, 1, D, D, D)``: block means ``(B, 1, D/f, D/f, D/f)``.

    Raises:
        ValueError: ``factor`` does not divide ``D``.
    """
    check_voxels(x, "x")
    if factor < 1 or x.shape[-1] % factor:
        raise ValueError(f"factor {factor} does not divide the grid side {x.shape[-1]} "
                         f"(shape {tuple(x.shape)})")
    return block_down(x, (factor,) * 3)


# --------------------------------------------------------------------------------------------
# Recovery
# --------------------------------------------------------------------------------------------


def _prepare(observed: Tensor, known: Tensor) -> tuple[Tensor, Tensor]:
    check_bool_mask(known, "known")
    check_not_meta(observed, "observed")
    check_not_meta(known, "known")
    if observed.dim() < 2:
        raise ValueError(f"observed must be (B, C, *S), got {tuple(observed.shape)}")
    return observed, expand_mask(known, observed, "known", "observed")


def nearest_known_fill(observed: Tensor, known: Tensor) -> Tensor:
    """Copy into every missing entry the value of the nearest known entry.

    Works on any ``(B, C, *S)`` (images, videos, voxels): distances are Euclidean over ``S``,
    separately for each ``(b, c)``; ties go to scipy's choice. A slice with no known entry is
    left at 0.

    Args:
        observed: ``(B, C, *S)``, finite at the known entries; values at missing entries are
            ignored (NaN included).
        known: bool, broadcastable to ``observed``, ``True`` = observed.

    Returns:
        ``(B, C, *S)``, equal to ``observed`` at the known entries.
    """
    observed, known = _prepare(observed, known)
    values = as_array(observed)
    mask = as_array(known)
    # As the video fills: a NaN kept would be copied out. Checked on the host copies, which the
    # transform needs anyway: on the device it waited for a GPU once more per call (the learned
    # filler calls this at every initializer step).
    check_finite_observed(values, mask, "observed")
    out = np.zeros_like(values)
    for index in np.ndindex(*values.shape[:2]):
        seen = mask[index]
        if not seen.any():
            continue
        # The transform measures the distance to the nearest zero: zeros are the known entries.
        nearest = ndimage.distance_transform_edt(~seen, return_distances=False,
                                                 return_indices=True)
        out[index] = values[index][tuple(nearest)]
    return torch.from_numpy(out).to(device=observed.device, dtype=observed.dtype)


def neighbour_majority(observed: Tensor, known: Tensor, *, radii: Sequence[int] = (1, 2, 3)
                       ) -> Tensor:
    """Fill each missing voxel with the majority vote of the known voxels around it.

    A missing voxel becomes 1 when more than half of the known voxels in its
    ``(2r+1)^3`` neighbourhood are occupied (values ``>= 0.5``), else 0, with the smallest
    ``r`` in ``radii`` that sees a known voxel; voxels that see none at any radius take
    :func:`nearest_known_fill`'s value.

    Args:
        observed: float ``(B, 1, D, H, W)``, finite at the known voxels; values at missing
            voxels are ignored (NaN included).
        known: bool, broadcastable, ``True`` = observed.

    Returns:
        ``(B, 1, D, H, W)``, {0, 1} at the missing voxels, ``observed`` at the known ones.
    """
    check_voxels(observed, "observed")
    if not observed.is_floating_point():  # bool failed inside the convolution
        raise ValueError(f"observed must be a float tensor of occupancy in [0, 1], got "
                         f"{observed.dtype} (convert it first, e.g. observed.float())")
    observed, known = _prepare(observed, known)
    check_finite_observed(observed, known, "observed")  # else copied out, as the video fills
    seen = known.to(observed.dtype)
    occupied = (observed >= 0.5).to(observed.dtype) * seen
    result = torch.where(known, observed, torch.zeros_like(observed))
    todo = ~known
    for r in radii:
        kernel = torch.ones(1, 1, 2 * r + 1, 2 * r + 1, 2 * r + 1, dtype=observed.dtype,
                            device=observed.device)
        n_seen = F.conv3d(seen, kernel, padding=r)
        n_occupied = F.conv3d(occupied, kernel, padding=r)
        decided = todo & (n_seen > 0.5)
        result = torch.where(decided, (2 * n_occupied > n_seen).to(observed.dtype), result)
        todo = todo & ~decided
        if not todo.any():
            return result
    return torch.where(todo, nearest_known_fill(observed, known), result)


FILLS: dict[str, Fill] = {
    "nearest_known": nearest_known_fill,
    "neighbour_majority": neighbour_majority,
}
"""Name -> ``fill(observed (B, 1, D, H, W), known) -> (B, 1, D, H, W)``."""


__all__ = ["FILLS", "UPSAMPLERS", "downsample", "nearest_known_fill", "nearest_upsample",
           "neighbour_majority", "trilinear_binary_upsample", "trilinear_upsample"]
