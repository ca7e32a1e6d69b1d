"""An evaluation's scores and comparison pictures in TensorBoard, beside a training run's curves.

``stgconv eval recovery | super-resolution | recovery-3d --tensorboard DIR`` call
:func:`log_evaluation`: every method's score becomes a scalar (``<task>/error/<method>``, and
``<task>/iou/<method>`` where the table has IoU), each comparison picture an image
(``<task>/<name>``), so the runs of a sweep line up in one TensorBoard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stgconv.checks import as_int, check_finite_number, check_output
from stgconv.data.masks import check_mask_matches
from stgconv.io.image import to_unit
from stgconv.io.tensorboard import check_log_dir, summary_writer


def check_outputs(*, out_dir: str | Path | None = None, json_path: str | Path | None = None,
                  tensorboard: str | Path | None = None) -> None:
    """Refuse an evaluation's outputs, each where given, that cannot be written, before its
    work (:func:`~stgconv.checks.check_output`, :func:`~stgconv.io.tensorboard.check_log_dir`):
    a ``json_path`` that was a folder failed only after the work (``IsADirectoryError``), the
    folder's files already put in place, and an ``out_dir`` that was a file with "File
    exists"."""
    if out_dir is not None:
        check_output(out_dir, "out_dir")
    if json_path is not None:
        check_output(json_path, "json_path", folder=False)
    if tensorboard is not None:
        check_log_dir(tensorboard, "tensorboard")


def log_evaluation(log_dir: str | Path, task: str, table: dict[str, Any],
                   pictures: dict[str, Tensor], *, step: int = 0) -> None:
    """Write ``table``'s scores and ``pictures`` into a TensorBoard event file in ``log_dir``.

    Args:
        task: the tag prefix, e.g. ``"recovery-3d"``.
        table: an evaluation's table: ``{"errors": {method: e}, "iou": {method: v}?}``.
        pictures: name -> ``(C, H, W)`` image, ``C`` in {1, 3}: floats in ``[0, 1]`` (clamped
            to it), or uint8 grey levels 0-255.
        step: the global step to log at, an int >= 0 (a sweep can log each setting at its own
            step: its index, not a fraction).

    Raises:
        ValueError: ``log_dir`` cannot be written (:func:`stgconv.io.tensorboard.check_log_dir`);
            a ``step`` that is no int >= 0; a score that is not a finite number >= 0; a picture
            that is not a ``(C, H, W)`` tensor with ``C`` 1 or 3, of floats or uint8, or that
            holds NaN or infinite values. All before anything is written.
        WriteError: writing failed part-way (a full disk, the folder removed meanwhile).
    """
    # A sweep's setting given as the step (a missing fraction of 0.7) was truncated to 0, every
    # setting logged over the others.
    step = as_int(step, "step", minimum=0)
    for metric in ("errors", "iou"):
        for method, value in table.get(metric, {}).items():
            # A NaN score was logged as it came, where the JSON table refuses it after.
            check_finite_number(value, f"table score {metric}.{method}")
    for name, picture in pictures.items():
        # An (H, W, 3) picture was logged as 4 channels of 5 x 3 without a word, an (H, W) one
        # failed inside TensorBoard after the scores were written.
        if not isinstance(picture, Tensor) or picture.dim() != 3 or picture.shape[0] not in (1, 3):
            shape = tuple(picture.shape) if isinstance(picture, Tensor) else type(picture).__name__
            raise ValueError(f"picture {name!r} must be a (C, H, W) tensor with C 1 or 3, got "
                             f"{shape}")
        # A uint8 picture's levels were clamped to [0, 1] as if they were floats (every level
        # above 0 logged white), and NaN pixels logged black.
        if picture.dtype != torch.uint8 and not picture.is_floating_point():
            raise ValueError(f"picture {name!r} must hold floats in [0, 1] or uint8 grey "
                             f"levels, got {picture.dtype}")
        if picture.is_floating_point() and not bool(torch.isfinite(picture).all()):
            raise ValueError(f"picture {name!r} holds NaN or infinite values")
    with summary_writer(log_dir) as writer:
        for metric in ("errors", "iou"):
            for method, value in table.get(metric, {}).items():
                writer.add_scalar(f"{task}/{metric.rstrip('s')}/{method}", value, step)
        for name, picture in pictures.items():
            # Rounded to the files' grey levels: given floats, TensorBoard truncates them.
            levels = (picture if picture.dtype == torch.uint8 else
                      (picture.clamp(0.0, 1.0) * 255).round().to(torch.uint8))
            writer.add_image(f"{task}/{name}", levels, step)


def frame_comparison(clips: list[Tensor], known: Tensor) -> Tensor:
    """Side by side, the frame of ``clips`` (each ``(C, T, H, W)`` in ``[-1, 1]``, one shape)
    with the most missing pixels under ``known`` (bool, ``(C, T, H, W)`` or a shape that
    broadcasts to it: ``(T, H, W)``): a ``(C, H, len(clips) * W)`` image in ``[0, 1]``.

    Raises:
        ValueError: no clips, clips not ``(C, T, H, W)`` of one shape, or ``known`` not a bool
            mask that broadcasts to them.
    """
    shape = clips[0].shape if clips and isinstance(clips[0], Tensor) else None
    if shape is None or len(shape) != 4 or any(
            not isinstance(clip, Tensor) or clip.shape != shape for clip in clips):
        shapes = [tuple(clip.shape) if isinstance(clip, Tensor) else type(clip).__name__
                  for clip in clips]
        raise ValueError(f"clips must be one or more (C, T, H, W) tensors of one shape, got "
                         f"{shapes}")
    # A (T, H, W) mask was counted along its H as if it were T: another frame was shown.
    check_mask_matches(known, clips[0])
    frame = int((~known.expand(shape)).flatten(2).sum(dim=(0, 2)).argmax())
    return torch.cat([to_unit(clip[:, frame].cpu()) for clip in clips], dim=-1)
