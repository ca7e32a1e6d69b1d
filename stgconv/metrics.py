"""Every score we report: video recovery errors, voxel error and IoU, and for
classifiers read as energies the out-of-distribution AUROC and the expected calibration error.

Recovery errors are measured on the missing entries only (observed ones are given, not recovered).
Videos live in ``[-1, 1]`` inside stgconv; the recovery papers report errors on the 0-255 pixel
scale, where one unit of ``[-1, 1]`` is 127.5 grey levels. Errors are computed in float64 on the
values as given (no rounding to uint8), averaged over missing entries ``(c, t, h, w)``: with masks
that hide a pixel in all channels at once, as the shared ones do, this is the per-pixel mean.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stgconv.checks import (
    as_int,
    check_bool_mask,
    check_not_meta,
    check_tensor,
    check_voxels,
    check_whole_labels,
    expand_mask,
    is_real_scalar,
)
from stgconv.data.masks import check_mask_matches

SCALE_255 = 127.5
"""Grey levels (0-255 scale) per unit of the ``[-1, 1]`` scale."""


def _missing_errors(recovered: Tensor, truth: Tensor, known: Tensor) -> Tensor:
    """``recovered - truth`` in float64 on the missing entries, flattened ``(N,)``, ``N >= 1``."""
    for name, value in (("recovered", recovered), ("truth", truth)):
        if not isinstance(value, Tensor):
            raise ValueError(f"{name} must be a tensor, got {type(value).__name__}")
        check_not_meta(value, name)
        # uint8 frames (0-255) were scored as if on [-1, 1]: errors 127.5 times too large.
        if not value.is_floating_point():
            raise ValueError(f"{name} must be floating point values on [-1, 1], got "
                             f"{value.dtype} (0-255 frames: {name}.double() / 127.5 - 1)")
    check_not_meta(known, "known")
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
        ``mean |recovered - truth| * 127.5`` over missing entries. A uniform error of 2 grey
        levels of 255, i.e. ``2 / 127.5`` on ``[-1, 1]``, gives ``2.0``.

    Raises:
        ValueError: shapes differ, ``recovered`` or ``truth`` is not floating point,
            ``known`` is not bool or does not broadcast, nothing is missing, or a missing entry
            is NaN/infinite.
    """
    return _missing_errors(recovered, truth, known).abs().mean().item() * SCALE_255


def _check_voxel_pair(pred: Tensor, truth: Tensor) -> None:
    check_voxels(pred, "pred")
    check_voxels(truth, "truth")  # a numpy array passed the shape test, then failed in torch
    check_not_meta(pred, "pred")
    check_not_meta(truth, "truth")
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

    Raises:
        ValueError: ``pred`` and ``truth`` not both of one shape ``(B, 1, D, H, W)``, NaN or
            infinite values in them (checked before the clamp), or a ``where`` that is not
            bool, does not broadcast or leaves a shape no voxel.
    """
    _check_voxel_pair(pred, truth)
    # Before the clamp, which would score an infinite (diverged) voxel as a plain 0 or 1.
    for name, grid in (("pred", pred), ("truth", truth)):
        if not torch.isfinite(grid).all():
            raise ValueError(f"{name} holds NaN or infinite values; refusing to score them")
    diff = (pred.clamp(0.0, 1.0).double() - truth.double()).abs()
    if where is None:
        return diff.flatten(1).mean(dim=1)
    check_bool_mask(where, "where", meaning="True = scored")
    check_not_meta(where, "where")
    weight = expand_mask(where.to(pred.device), pred, "where", "pred").double()
    count = weight.flatten(1).sum(dim=1)
    if (count == 0).any():
        raise ValueError("a shape has no voxel to score (where is empty)")
    return (diff * weight).flatten(1).sum(dim=1) / count


def voxel_iou(pred: Tensor, truth: Tensor, *, threshold: float = 0.5) -> Tensor:
    """Intersection over union per shape of ``pred >= threshold`` and ``truth >= threshold``:
    ``(B,)``; 1 for a shape where both are empty.

    Args:
        pred, truth: ``(B, 1, D, H, W)``.
        threshold: occupancy level, finite.

    Raises:
        ValueError: ``pred`` and ``truth`` not both of one shape ``(B, 1, D, H, W)``, NaN
            or infinite values (a NaN is never ``>= threshold``: a diverged shape would count
            as empty), or a ``threshold`` that is no finite number.
    """
    _check_voxel_pair(pred, truth)
    # A NaN (or +inf) threshold left every voxel empty, and every shape scored a perfect 1.
    if not is_real_scalar(threshold) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    for name, grid in (("pred", pred), ("truth", truth)):
        if not torch.isfinite(grid).all():
            raise ValueError(f"{name} holds NaN or infinite values; refusing to score them")
    a, b = (pred >= threshold).flatten(1), (truth >= threshold).flatten(1)
    inter = (a & b).sum(dim=1).double()
    union = (a | b).sum(dim=1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def pooled_iou(intersection: int, union: int) -> float:
    """IoU of many shapes' voxels pooled, from their intersections' and unions' voxel counts
    summed over the shapes: 1 where the union is empty (every shape and its prediction empty),
    as :func:`voxel_iou` scores each such shape, not the 0 of no overlap at all."""
    # Counts in the wrong order (union, intersection) gave an IoU above 1 without a word.
    if not 0 <= intersection <= union:
        raise ValueError(f"counts must be 0 <= intersection <= union, got intersection "
                         f"{intersection} and union {union}")
    return intersection / union if union else 1.0


def auroc(inlier_scores: Tensor, outlier_scores: Tensor) -> float:
    """Area under the ROC curve of telling inliers from outliers by a score that is higher for
    inliers: the probability that a random inlier scores above a random outlier, ties counting
    one half (the Mann-Whitney statistic, from average ranks; exact, no thresholds). Scores
    ``(N,)`` and ``(M,)``."""
    for name, scores in (("inlier_scores", inlier_scores), ("outlier_scores", outlier_scores)):
        check_tensor(scores, name)  # a numpy array's scores failed on .dim(), unnamed
        check_not_meta(scores, name)
        if scores.dim() != 1 or len(scores) == 0:
            raise ValueError(f"{name} must be a non-empty (N,) tensor, got {tuple(scores.shape)}")
        if scores.is_complex():  # cast to float64 below, the imaginary parts were dropped
            raise ValueError(f"{name} must be real scores, got {scores.dtype}")
        if not torch.isfinite(scores).all():
            raise ValueError(f"{name} has NaN or infinite values")
    # On the CPU, where the rank bookkeeping below makes its tensors: scores may come from
    # any device (a model's on a GPU), each from its own.
    scores = torch.cat([inlier_scores.detach().cpu(), outlier_scores.detach().cpu()]).double()
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # Tied scores share the mean of their ranks.
    values, inverse = scores.unique(return_inverse=True)
    mean_rank = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, ranks)
    mean_rank /= torch.bincount(inverse, minlength=len(values)).double()
    ranks = mean_rank[inverse]
    n_in, n_out = len(inlier_scores), len(outlier_scores)
    return float((ranks[:n_in].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))


def expected_calibration_error(probabilities: Tensor, labels: Tensor, *, bins: int = 15
                               ) -> float:
    """ECE of class ``probabilities`` ``(N, K)`` against class ``labels`` ``(N,)`` (integers, or
    floats that are whole numbers, as :func:`~stgconv.checks.check_whole_labels` takes them): the
    examples binned by confidence (the top probability) into ``bins`` equal-width bins of
    ``[0, 1]``, and the bins' ``|accuracy - mean confidence|`` averaged, weighted by their
    share of the examples.

    Raises:
        ValueError: shapes that are not ``(N, K)`` and ``(N,)``, no examples, ``bins`` not an
            int ``>= 1``, non-finite or out-of-``[0, 1]`` probabilities (logits, say), labels
            that are not whole classes ``0 .. K - 1`` (bool labels included), or either on the
            meta device.
    """
    check_tensor(probabilities, "probabilities")  # numpy's failed on .dim(), unnamed
    check_tensor(labels, "labels")
    if probabilities.dim() != 2 or labels.shape != probabilities.shape[:1]:
        raise ValueError(f"probabilities must be (N, K) and labels (N,), got "
                         f"{tuple(probabilities.shape)} and {tuple(labels.shape)}")
    bins = as_int(bins, "bins", minimum=1)  # else torch's bincount
    check_not_meta(probabilities, "probabilities")
    check_not_meta(labels, "labels")
    if labels.dtype == torch.bool:  # as check_classes: True and False are not class numbers
        raise ValueError("labels must be class numbers 0 .. K - 1, got torch.bool")
    if len(labels) == 0:
        raise ValueError("no examples: probabilities is (0, K)")
    if probabilities.is_complex():  # else torch's "min_all not implemented for 'ComplexFloat'"
        raise ValueError(f"probabilities must be real, got {probabilities.dtype}")
    if not torch.isfinite(probabilities).all():
        raise ValueError(f"probabilities has NaN or infinite values "
                         f"({int((~torch.isfinite(probabilities)).sum())} of "
                         f"{probabilities.numel()})")
    check_whole_labels(labels, "labels")
    # Logits passed for probabilities would bin past the last bin and score as nonsense.
    if probabilities.min() < 0 or probabilities.max() > 1:
        raise ValueError(f"probabilities must be in [0, 1] (softmax of the logits), got values "
                         f"in [{float(probabilities.min()):.4g}, "
                         f"{float(probabilities.max()):.4g}]")
    if labels.min() < 0 or labels.max() >= probabilities.shape[1]:
        raise ValueError(f"labels must be in 0 .. {probabilities.shape[1] - 1} (K = "
                         f"{probabilities.shape[1]} classes), got {int(labels.min())} .. "
                         f"{int(labels.max())}")
    # On the CPU, where the bins below are made: the inputs may come from a GPU.
    confidence, predicted = probabilities.detach().cpu().double().max(dim=1)
    correct = (predicted == labels.cpu()).double()
    # Bin b holds confidences in (b / bins, (b + 1) / bins]; a confidence of 0 goes to bin 0.
    which = (confidence * bins).ceil().long().clamp(1, bins) - 1
    count = torch.bincount(which, minlength=bins).double()
    gap = (torch.zeros(bins, dtype=torch.float64).index_add_(0, which, correct)
           - torch.zeros(bins, dtype=torch.float64).index_add_(0, which, confidence)).abs()
    return float(gap.sum() / count.sum())
