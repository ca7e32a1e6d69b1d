"""Pictures and clips a person can look at: one call for image, video and voxel batches."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from torch import Tensor

from stgconv.io.atomic import atomic_save_npy
from stgconv.io.image import save_image_grid
from stgconv.io.render import render_voxels
from stgconv.io.video import save_comparison

MAX_IMAGES = 64
MAX_CLIPS = 4
MAX_SHAPES = 16

PreviewKind = Literal["image", "video", "voxels"]


def save_preview(batch: Tensor, stem: str | Path, *, kind: PreviewKind | None = None,
                 fps: float = 25, formats: tuple[str, ...] = (".gif",)) -> list[Path]:
    """Write a batch for viewing; returns the files written.

    Args:
        batch: images ``(N, C, H, W)`` -> ``<stem>.png``, a grid of up to 64; videos
            ``(N, C, T, H, W)`` -> ``<stem><suffix>`` for each of ``formats`` (``.gif``,
            ``.mp4``, ...), up to 4 clips side by side; voxels ``(N, 1, D, D, D)`` occupancy in
            ``[0, 1]`` -> ``<stem>.png`` (renders of the 0.5 iso-surfaces) and ``<stem>.npy``
            (float32 ``(n, D, D, D)``) of the first ``n = min(N, 16)`` shapes.
        kind: ``"image"``, ``"video"`` or ``"voxels"``. Videos and voxels are both 5-D, so
            voxels are never guessed from the shape; ``None`` (older callers) means images for
            4-D and videos for 5-D batches.
        fps, formats: videos only.
    """
    stem = Path(stem)
    if kind is None:
        kind = "image" if batch.dim() == 4 else "video"
    if kind == "image" and batch.dim() == 4:
        return [save_image_grid(batch[:MAX_IMAGES], stem.with_suffix(".png"))]
    if kind == "video" and batch.dim() == 5:
        clips = list(batch[:MAX_CLIPS].detach().float().cpu())
        return [save_comparison(clips, stem.with_suffix(suffix), fps=fps) for suffix in formats]
    if kind == "voxels" and batch.dim() == 5 and batch.shape[1] == 1 and len(set(batch.shape[2:])) == 1:
        grids = batch[:MAX_SHAPES].detach().float().cpu()[:, 0].numpy()
        npy = atomic_save_npy(stem.with_suffix(".npy"), grids)
        return [render_voxels(grids, stem.with_suffix(".png")), npy]
    expected = {"image": "(N, C, H, W)", "video": "(N, C, T, H, W)", "voxels": "(N, 1, D, D, D)"}
    if kind not in expected:
        raise ValueError(f"kind must be one of {sorted(expected)}, got {kind!r}")
    raise ValueError(f"expected {kind} {expected[kind]}, got {tuple(batch.shape)}")
