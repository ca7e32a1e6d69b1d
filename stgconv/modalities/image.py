"""Images ``(N, C, H, W)`` in ``[-1, 1]``: one image, a folder, or the frames of video clips."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from stgconv.config import DataConfig, ExperimentConfig, ModelConfig
from stgconv.data.image import load_training_images
from stgconv.data.video import is_frame_folder
from stgconv.energy.base import ConvNetEnergy
from stgconv.energy.classifier import CLASSIFIER_ARCHS, ClassifierEnergy, classifier_energy
from stgconv.energy.image import image_energy
from stgconv.io.image import IMAGE_SUFFIXES, save_image_grid, to_bytes
from stgconv.modalities.base import Modality, stationary_side
from stgconv.modalities.video import load_clips
from stgconv.ops import factor_between, nearest_up

MAX_IMAGES = 64
"""Images a preview grid shows at most."""


def _pictures_of_another_kind(data: DataConfig) -> tuple[str, tuple[str, str]] | None:
    """What ``data.path`` holds and (what to train on, the kind that reads it) where it is an
    ``.npz`` of images or one still picture asked for more than its one frame; else None."""
    path = Path(data.path)
    if not path.is_file():
        return None
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "an .npz file of images", ("its images", "objects")
    # A GIF may be a clip.
    if suffix in IMAGE_SUFFIXES and suffix != ".gif" and (data.frames > 1
                                                          or data.fps is not None):
        return "one picture", ("it as a texture", "texture")
    return None


class ImageModality(Modality):
    name = "image"
    most_shown = MAX_IMAGES
    data_kinds = ("texture", "objects", "video_frames")

    def load(self, data: DataConfig, *, smallest_side: int = 1) -> Tensor:
        """``(N, C, H, W)``; ``video_frames``: ``N`` = clips x frames."""
        if data.kind == "video_frames":  # (N, C, T, H, W) -> (N * T, C, H, W)
            if data.fps is not None and is_frame_folder(data.path):
                # A config made for clips (multigrid_animals_quick) pointed at a user's folder
                # of images was told only that "fps=2.0 needs a video file".
                raise ValueError(
                    f"data.kind 'video_frames' with data.fps {data.fps} takes frames from "
                    f"video files, and {data.path} is a folder of images: to train on the "
                    "images themselves, set data.kind=objects, data.frames=16 and "
                    "data.fps=null (--set KEY=VALUE)")
            pictures = _pictures_of_another_kind(data)
            if pictures is not None:
                # The same configs pointed at a user's .npz of images or one photograph were
                # told PyAV's "Invalid data found when processing input" or "has 1 frames".
                holds, reads = pictures
                raise ValueError(
                    f"data.kind 'video_frames' takes frames from video clips, and {data.path} "
                    f"is {holds}: to train on {reads[0]}, set data.kind={reads[1]}, "
                    "data.frames=16 and data.fps=null (--set KEY=VALUE)")
            return load_clips(data).transpose(1, 2).flatten(0, 1)
        return load_training_images(data.path, kind=data.kind, size=data.size,
                                    channels=data.channels, max_images=data.max_images,
                                    smallest_side=smallest_side)

    def energy(self, model: ModelConfig) -> ConvNetEnergy | ClassifierEnergy:
        if model.arch in CLASSIFIER_ARCHS:
            return classifier_energy(model.arch, n_classes=model.n_classes,
                                     in_channels=model.in_channels, image_size=model.image_size,
                                     density_scale=model.density_scale)
        return image_energy(model.arch, in_channels=model.in_channels,
                            image_size=model.image_size, layers=model.layers,
                            activation=model.activation, reference_sigma=model.reference_sigma)

    def grid_shape(self, side: int, frames: int | None, data: DataConfig) -> tuple[int, ...]:
        return (side, side)

    def sample_shape(self, energy: ConvNetEnergy, config: ExperimentConfig, n: int, *,
                     size: int | None = None, frames: int | None = None) -> tuple[int, ...]:
        if frames is not None:
            raise ValueError(f"frames only applies to video models; got frames={frames} for an "
                             "image model")
        side = stationary_side(energy, config, size)
        return (n, config.model.in_channels, side, side)

    def preview(self, batch: Tensor, stem: str | Path, *, formats: Sequence[str] = (".gif",),
                fps: float | None = None) -> list[Path]:
        """``<stem>.png``: a grid of up to 64 images ``(N, C, H, W)``."""
        if batch.dim() != 4:
            raise ValueError(f"expected images (N, C, H, W), got {tuple(batch.shape)}")
        return [save_image_grid(batch[:MAX_IMAGES], Path(stem).with_suffix(".png"))]

    def log_samples(self, writer: Any, tag: str, batch: Tensor, step: int, *,
                    fps: float | None = None) -> None:
        """Up to 64 images ``(N, C, H, W)`` as a TensorBoard image batch."""
        images = to_bytes(batch[:MAX_IMAGES].detach().float().cpu())
        writer.add_images(tag, images, step)

    def save_pyramid(self, grids: Sequence[Tensor], stem: str | Path, *,
                     fps: float | None = None) -> Path:
        """``<stem>.png``: one row per grid ``(N, C, H_k, W_k)`` (nearest up-sampled to the
        finest size) of the first 8 images."""
        grids = [g.detach().float().cpu() for g in grids]
        finest = grids[-1].shape[2:]
        return self.save_rows([nearest_up(g, factor_between(finest, g.shape[2:]))[:8]
                               for g in grids], stem)

    def save_rows(self, rows: Sequence[Tensor], stem: str | Path) -> Path:
        """``<stem>.png``: a row of up to 64 images ``(N, C, H, W)`` per batch of ``rows``."""
        rows = [row[:MAX_IMAGES].detach().float().cpu() for row in rows]
        return save_image_grid(torch.cat(rows), Path(stem).with_suffix(".png"),
                               nrow=len(rows[0]))


IMAGE = ImageModality()
