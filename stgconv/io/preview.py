"""Pictures and clips a person can look at: one call for image and video batches alike."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from stgconv.io.image import save_image_grid
from stgconv.io.video import save_comparison

MAX_IMAGES = 64
MAX_CLIPS = 4


def save_preview(batch: Tensor, stem: str | Path, *, fps: float = 25,
                 formats: tuple[str, ...] = (".gif",)) -> list[Path]:
    """Write a batch for viewing; returns the files written.

    Args:
        batch: images ``(N, C, H, W)`` -> ``<stem>.png``, a grid of up to 64; or videos
            ``(N, C, T, H, W)`` -> ``<stem><suffix>`` for each of ``formats`` (``.gif``,
            ``.mp4``, ...), up to 4 clips side by side.
    """
    stem = Path(stem)
    if batch.dim() == 4:
        return [save_image_grid(batch[:MAX_IMAGES], stem.with_suffix(".png"))]
    if batch.dim() == 5:
        clips = list(batch[:MAX_CLIPS].detach().float().cpu())
        return [save_comparison(clips, stem.with_suffix(suffix), fps=fps) for suffix in formats]
    raise ValueError(
        f"expected images (N, C, H, W) or videos (N, C, T, H, W), got {tuple(batch.shape)}"
    )
