"""Pictures and clips a person can look at: one call for image, video and voxel batches."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import torch
from torch import Tensor

from stgconv.io.atomic import atomic_save_npy
from stgconv.io.image import save_image_grid
from stgconv.io.render import render_voxels
from stgconv.io.video import save_comparison
from stgconv.ops import factor_between, nearest_up

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


def save_pyramid(grids: Sequence[Tensor], stem: str | Path, *, kind: PreviewKind, n: int = 8,
                 fps: float = 25) -> Path:
    """One picture of coarse-to-fine samples, every grid of the same few examples.

    Args:
        grids: coarse to fine, grid ``k`` ``(N, C, *S_k)`` (voxels: occupancy in ``[0, 1]``).
        kind: images -> ``<stem>.png``, one row per grid (nearest up-sampled to the finest size)
            of the first ``n`` examples; videos -> ``<stem>.gif``, the first clip's grids side by
            side; voxels -> ``<stem>.png``, renders of the first ``min(n, 4)`` shapes at every
            grid (one row per shape).

    Returns:
        the file written.
    """
    grids = [g.detach().float().cpu() for g in grids]
    finest = grids[-1].shape[2:]
    labels = ["x".join(str(s) for s in g.shape[2:]) for g in grids]
    if kind == "voxels":
        shapes = min(n, 4, len(grids[-1]))
        batch, titles = [], []
        for i in range(shapes):
            for g, label in zip(grids, labels):
                grid = g[i, 0]
                # Rescaled so that the renderer's 0.5 level sits at half this grid's maximum.
                level = 0.5 if g is grids[-1] else max(grid.max().item(), 1e-6) / 2
                batch.append(grid * (0.5 / level))
                titles.append(label if g is grids[-1] else f"{label} @{level:.2f}")
        return render_voxels(batch, Path(stem).with_suffix(".png"), columns=len(grids),
                             titles=titles)
    up = [nearest_up(g, factor_between(finest, g.shape[2:])) for g in grids]
    if kind == "video":
        return save_comparison([g[0] for g in up], Path(stem).with_suffix(".gif"), labels=labels,
                               fps=fps)
    rows = torch.cat([g[:n] for g in up])
    return save_image_grid(rows, Path(stem).with_suffix(".png"), nrow=min(n, len(grids[-1])))
