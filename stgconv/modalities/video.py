"""Videos ``(N, C, T, H, W)`` in ``[-1, 1]``: a clip, a folder of frames or of clips, or a cache."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

from PIL import Image
from torch import Tensor

from stgconv.checks import as_int
from stgconv.config import DataConfig, ExperimentConfig, ModelConfig
from stgconv.data.video import CacheSettingsError, load_training_clips, source_rate
from stgconv.energy.base import ConvNetEnergy
from stgconv.energy.video import frame_size_for, video_energy
from stgconv.io.image import to_bytes
from stgconv.io.video import GIF_MAX_FPS, GIF_MIN_FPS, TooFewFramesError, save_comparison
from stgconv.modalities.base import Modality, stationary_side
from stgconv.ops import factor_between, nearest_up

MAX_CLIPS = 4
"""Clips a preview shows side by side at most."""
PLAYBACK_FPS = 25
"""The rate previews play at when neither the config's ``data.fps`` nor the clips' own rate is
known (:meth:`VideoModality.playback_fps`)."""


def _gif_rate(fps: float | None) -> float:
    """The rate a GIF of clips meant to play at ``fps`` (``None``: 25) plays at: at most the
    fastest a GIF can, 100, and at least the slowest, a frame every 655.35 s (a time-lapse's
    clips, data.fps 0.001, play faster)."""
    return min(max(fps or PLAYBACK_FPS, GIF_MIN_FPS), GIF_MAX_FPS)


def load_clips(data: DataConfig) -> Tensor:
    """The clips ``data`` chooses: ``(N, C, T, H, W)``, grey (luma, as images are made grey)
    when ``data.channels == 1``."""
    try:
        return load_training_clips(data.path, n_frames=data.frames, size=data.size,
                                   start_frame=data.start_frame, fps=data.fps,
                                   channels=data.channels, max_clips=data.max_images)
    except TooFewFramesError as err:  # the reader's parameters, named as the config's keys
        raise TooFewFramesError(f"{err} (n_frames, start_frame and fps are the config's "
                                "data.frames, data.start_frame and data.fps)") from err
    except CacheSettingsError as err:
        raise CacheSettingsError(f"{err} (n_frames, size, start_frame, fps and channels are "
                                 "the config's data.frames, data.size, data.start_frame, "
                                 "data.fps and data.channels)") from err


class VideoModality(Modality):
    name = "video"
    most_shown = MAX_CLIPS
    data_kinds = ("video",)

    def load(self, data: DataConfig, *, smallest_side: int = 1) -> Tensor:
        """Clips ``(N, C, T, H, W)`` (:func:`load_clips`; reading them advises no data.size)."""
        return load_clips(data)

    def playback_fps(self, data: DataConfig) -> float | None:
        """``data.fps``, else the rate the training clips were recorded at where they share
        one (:func:`~stgconv.data.video.source_rate`): at 25, a 10 fps clip's samples played
        2.5 times too fast. ``None`` (25) for frame folders, sources of different rates, and
        data no longer at ``data.path``."""
        return data.fps or source_rate(data.path, max_clips=data.max_images)

    def energy(self, model: ModelConfig) -> ConvNetEnergy:
        return video_energy(model.arch, in_channels=model.in_channels,
                            frame_size=frame_size_for(model.arch, model.image_size),
                            layers=model.layers,
                            activation=model.activation or "relu",
                            reference_sigma=model.reference_sigma)

    def grid_shape(self, side: int, frames: int | None, data: DataConfig) -> tuple[int, ...]:
        return (frames if frames is not None else data.frames, side, side)

    def sample_shape(self, energy: ConvNetEnergy, config: ExperimentConfig, n: int, *,
                     size: int | None = None, frames: int | None = None) -> tuple[int, ...]:
        """Any clip length that the net's filters fit works for the ST and FC_S models, which
        are stationary in time."""
        side = stationary_side(energy, config, size)
        length = config.data.frames if frames is None else as_int(frames, "frames", minimum=1)
        return (n, config.model.in_channels, length, side, side)

    def preview(self, batch: Tensor, stem: str | Path, *, formats: Sequence[str] = (".gif",),
                fps: float | None = None) -> list[Path]:
        """``<stem><suffix>`` for each of ``formats``: up to 4 clips ``(N, C, T, H, W)`` side by
        side, played at ``fps`` (``None``: 25; a GIF at most 100, slower than the clips)."""
        if batch.dim() != 5:
            raise ValueError(f"expected videos (N, C, T, H, W), got {tuple(batch.shape)}")
        clips = list(batch[:MAX_CLIPS].detach().float().cpu())
        return [save_comparison(clips, Path(stem).with_suffix(suffix),
                                fps=_gif_rate(fps) if suffix == ".gif" else fps or PLAYBACK_FPS)
                for suffix in formats]

    def log_samples(self, writer: Any, tag: str, batch: Tensor, step: int, *,
                    fps: float | None = None) -> None:
        """Up to 4 clips of ``(N, C, T, H, W)`` side by side as a TensorBoard video (an animated
        GIF in the image panel, what ``add_video`` writes) played at ``fps`` as :meth:`preview`'s
        GIF is, and the first clip's frames as an image batch (``<tag>/frames``).

        ``add_video`` itself encodes through moviepy's old ``editor`` API, which current moviepy
        no longer has; the GIF here is the one :func:`~stgconv.io.video.save_comparison` writes
        for the run folder."""
        from tensorboard.compat.proto.summary_pb2 import Summary  # only needed when logging

        clips = list(batch[:MAX_CLIPS].detach().float().cpu())
        with tempfile.TemporaryDirectory() as scratch:
            # At the run folder's rate: at save_comparison's default, a clip of data.fps 50
            # played at half speed in TensorBoard.
            gif = save_comparison(clips, Path(scratch) / "clips.gif",
                                  fps=_gif_rate(fps))
            with Image.open(gif) as first:
                width, height = first.size
            encoded = gif.read_bytes()
        video = Summary.Image(height=height, width=width, colorspace=3,
                              encoded_image_string=encoded)
        # The writer's own event file; SummaryWriter has no public call for a ready summary.
        writer._get_file_writer().add_summary(
            Summary(value=[Summary.Value(tag=tag, image=video)]), step)
        frames = to_bytes(clips[0].transpose(0, 1))
        writer.add_images(f"{tag}/frames", frames, step)

    def save_grid(self, grid: Tensor, stem: str | Path, *, fps: float | None = None,
                  frames: int | None = None) -> list[Path]:
        """``<stem>.gif`` and ``<stem>.npy`` of a coarse grid ``(N, C, T_k, H_k, W_k)`` of clips
        whose finest grid has ``frames`` frames played at ``fps`` (``None``: 25): each of the
        grid's frames, the mean of ``frames / T_k`` of the finest's, plays for as long as they
        do (``frames`` ``None``: at ``fps``). At ``fps`` itself a grid of 4 of 16 frames played
        in a quarter of the clip's time."""
        if frames is not None:
            fps = (fps or PLAYBACK_FPS) * grid.shape[2] / as_int(frames, "frames", minimum=1)
        return super().save_grid(grid, stem, fps=fps)

    def save_pyramid(self, grids: Sequence[Tensor], stem: str | Path, *,
                     fps: float | None = None) -> Path:
        """``<stem>.gif``: the first clip's grids (each ``(N, C, T_k, H_k, W_k)``) side by side
        (nearest up-sampled), played at ``fps`` as :meth:`preview`'s GIF is."""
        grids = [g.detach().float().cpu() for g in grids]
        finest = grids[-1].shape[2:]
        labels = ["x".join(str(s) for s in g.shape[2:]) for g in grids]
        up = [nearest_up(g, factor_between(finest, g.shape[2:])) for g in grids]
        return save_comparison([g[0] for g in up], Path(stem).with_suffix(".gif"), labels=labels,
                               fps=_gif_rate(fps))


VIDEO = VideoModality()
