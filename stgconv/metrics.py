"""Every score we report: video recovery errors and PSNR, voxel error and IoU.

Recovery errors are measured on the missing entries only (observed ones are given, not
recovered). Videos live in ``[-1, 1]`` inside stgconv; the recovery papers report errors on the 0-255 pixel
scale, where one unit of ``[-1, 1]`` is 127.5 grey levels. Errors are computed in float64 on the
values as given (no rounding to uint8), averaged over missing entries ``(c, t, h, w)``: with masks
that hide a pixel in all channels at once, as the shared ones do, this is the per-pixel mean.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stgconv.checks import check_voxels
from stgconv.data.masks import check_mask_matches

SCALE_255 = 127.5
"""Grey levels (0-255 scale) per unit of the ``[-1, 1]`` scale."""


def _missing_errors(recovered: Tensor, truth: Tensor, known: Tensor) -> Tensor:
    """``recovered - truth`` in float64 on the missing entries, flattened ``(N,)``, ``N >= 1``."""
    for name, value in (("recovered", recovered), ("truth", truth)):
        if not isinstance(value, Tensor):
            raise ValueError(f"{name} must be a tensor, got {type(value).__name__}")
    if recovered.shape != truth.shape:
        raise ValueError(
            f"recovered {tuple(recovered.shape)} and truth {tuple(truth.shape)} differ in shape; "
            f"expected the same (C, T, H, W) (or (B, C, T, H, W))"
        )
    check_mask_matches(known, truth)
    missing = ~known.to(truth.device).expand(truth.shape)
    if not missing.any():
        raise ValueError("known marks every entry observed: there is no missing entry to score")
    diff = recovered.to(truth.device).double()[missing] - truth.double()[missing]
    if not torch.isfinite(diff).all():
        raise ValueError(
            f"{int((~torch.isfinite(diff)).sum())} missing entries of recovered or truth are NaN "
            f"or infinite; refusing to score them"
        )
    return diff


def missing_mae_255(recovered: Tensor, truth: Tensor, known: Tensor) -> float:
    """Mean absolute error over the missing entries, on the 0-255 scale.

    Args:
        recovered: float ``(C, T, H, W)`` (or ``(B, C, T, H, W)``) in ``[-1, 1]``.
        truth: the ground truth, same shape and scale.
        known: bool, broadcastable to that shape, ``True`` = observed; the error is averaged
            over the ``False`` entries.

    Returns:
        ``mean |recovered - truth| * 127.5`` over missing entries. A uniform error of ``2/255``
        grey levels, i.e. ``2 / 127.5`` on ``[-1, 1]``, gives ``2.0``.

    Raises:
        ValueError: shapes differ, ``known`` is not bool or does not broadcast, nothing is
            missing, or a missing entry is NaN/infinite.
    """
    return _missing_errors(recovered, truth, known).abs().mean().item() * SCALE_255


def psnr(recovered: Tensor, truth: Tensor, known: Tensor | None = None) -> float:
    """Peak signal-to-noise ratio in dB, over the missing entries (or all entries).

    ``10 * log10(peak^2 / MSE)`` with peak = 2, the range of ``[-1, 1]``; the same number as on
    the 0-255 scale with peak 255.

    Args:
        recovered: float ``(C, T, H, W)`` (or ``(B, C, T, H, W)``) in ``[-1, 1]``.
        truth: same shape and scale.
        known: bool, broadcastable, ``True`` = observed; the MSE is over the ``False`` entries.
            ``None`` scores every entry.

    Returns:
        PSNR in dB; ``inf`` when the scored entries are equal.

    Raises:
        ValueError: as :func:`missing_mae_255`.
    """
    if known is None:
        known = torch.zeros((), dtype=torch.bool)
    mse = _missing_errors(recovered, truth, known).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


def _check_voxel_pair(pred: Tensor, truth: Tensor) -> None:
    check_voxels(pred, "pred")
    if pred.shape != truth.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and truth {tuple(truth.shape)} differ; "
                         f"expected the same (B, 1, D, H, W)")


def voxel_errors(pred: Tensor, truth: Tensor, *, where: Tensor | None = None) -> Tensor:
    """Mean absolute error per shape on ``[0, 1]``: ``(B,)``.

    ``pred`` is clamped to ``[0, 1]`` first (a chain may overshoot the occupancy range).

    Args:
        pred, truth: ``(B, 1, D, H, W)``.
        where: optional bool, broadcastable: average only over these voxels (the missing ones
            in recovery); every shape must have at least one.
    """
    _check_voxel_pair(pred, truth)
    diff = (pred.clamp(0.0, 1.0).double() - truth.double()).abs()
    if not torch.isfinite(diff).all():
        raise ValueError("pred holds NaN or infinite values; refusing to score them")
    if where is None:
        return diff.flatten(1).mean(dim=1)
    weight = where.expand(pred.shape).double()
    count = weight.flatten(1).sum(dim=1)
    if (count == 0).any():
        raise ValueError("a shape has no voxel to score (where is empty)")
    return (diff * weight).flatten(1).sum(dim=1) / count


def voxel_iou(pred: Tensor, truth: Tensor, *, threshold: float = 0.5) -> Tensor:
    """Intersection over union per shape of ``pred >= threshold`` and ``truth >= threshold``:
    ``(B,)``; 1 for a shape where both are empty.

    Args:
        pred, truth: ``(B, 1, D, H, W)``.
    """
    _check_voxel_pair(pred, truth)
    a, b = (pred >= threshold).flatten(1), (truth >= threshold).flatten(1)
    inter = (a & b).sum(dim=1).double()
    union = (a | b).sum(dim=1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
