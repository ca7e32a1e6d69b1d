"""The one interface behind which images, videos and voxels differ.

Generic code (training, synthesis, multi-grid, previews) asks the experiment's :class:`Modality`
and never branches on ``data.kind``. A modality says how to load its training data, which energy
nets it builds, how big a grid of a multi-grid pyramid is, what shape a fresh sample has, which
units the model sees, and how a batch is shown to a person.

Units: data files and results hold the modality's own values (pixels in ``[-1, 1]``, voxel
occupancy in ``[0, 1]``); the model may see them shifted by :meth:`Modality.offset` (the voxel
models see occupancy minus the training mean). Every chain runs in the model's units; only the
ends convert.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from stgconv.checks import as_int
from stgconv.config import DataConfig, ExperimentConfig, ModelConfig
from stgconv.energy.base import ConvNetEnergy
from stgconv.io.atomic import atomic_save_npy
from stgconv.io.image import to_levels


class Modality:
    """What differs per modality. Subclasses set ``name`` and ``data_kinds`` and implement the
    methods that raise :class:`NotImplementedError`; the unit methods default to the identity."""

    name: str
    """Short name, shown in messages: ``"image"``, ``"video"``, ``"voxels"``."""
    data_kinds: tuple[str, ...]
    """The ``data.kind`` values of configs that this modality serves."""
    most_shown: int
    """How many examples :meth:`preview` shows at most (the first ones)."""

    def load(self, data: DataConfig, *, smallest_side: int = 1) -> Tensor:
        """The training examples ``(N, *lead, *S)`` in data units. ``smallest_side``: the
        smallest side (data.size) of examples the net to be trained takes; a warning that
        advises another data.size names none smaller."""
        raise NotImplementedError

    def energy(self, model: ModelConfig) -> ConvNetEnergy:
        """The energy net ``model`` describes (its ``in_channels`` and ``image_size`` filled in
        from the data)."""
        raise NotImplementedError

    def grid_shape(self, side: int, frames: int | None, data: DataConfig) -> tuple[int, ...]:
        """Trailing sizes of a multi-grid grid of side ``side`` (``frames``: its clip length,
        for modalities with time)."""
        raise NotImplementedError

    def sample_shape(self, energy: ConvNetEnergy, config: ExperimentConfig, n: int, *,
                     size: int | None = None, frames: int | None = None) -> tuple[int, ...]:
        """Shape of ``n`` fresh samples of ``energy``; ``size`` and ``frames`` ask for another
        side or clip length than the training data's, where the model allows it.

        Raises:
            ValueError: ``size`` or ``frames`` that this model cannot take.
        """
        raise NotImplementedError

    def playback_fps(self, data: DataConfig) -> float | None:
        """The rate that moving pictures of examples such as ``data`` chooses play at, the
        ``fps`` to give :meth:`preview` and the other writers: ``data.fps``; ``None``: theirs
        by default."""
        return data.fps

    def preview(self, batch: Tensor, stem: str | Path, *, formats: Sequence[str] = (".gif",),
                fps: float | None = None) -> list[Path]:
        """Write a batch ``(N, *lead, *S)`` (data units) for a person to look at; returns the
        files written. ``formats`` are the suffixes of moving pictures and ``fps`` their
        playback rate (videos: :meth:`playback_fps`; ``None`` where it knows none: 25)."""
        raise NotImplementedError

    def save_samples(self, batch: Tensor, stem: str | Path, *, fps: float | None = None
                     ) -> list[Path]:
        """Write a task's result batch ``(N, *lead, *S)`` (data units): its preview in every
        format, and every example in ``<stem>.npy`` (:meth:`save_array`)."""
        # The preview first: it checks the layout.
        files = self.preview(batch, stem, formats=(".gif", ".mp4"), fps=fps)
        return [*files, self.save_array(batch, stem)]

    def save_array(self, batch: Tensor, stem: str | Path) -> Path:
        """``<stem>.npy``: pixels ``batch`` (data units, ``(N, C, H, W)`` images or ``(N, C, T,
        H, W)`` clips) as float32 grey levels 0-255, for programs that score them: in the data's
        value range, so that they compare them with the image and video files as they are (a
        classifier trained on MNIST's uint8 digits, say).

        Raises:
            ValueError: ``batch`` holds NaN or infinite values, which would be written as
                levels no program could tell from results (the previews refuse them too).
        """
        path = Path(stem).with_suffix(".npy")
        pixels = batch.detach().float().cpu()
        if not bool(torch.isfinite(pixels).all()):
            raise ValueError(f"cannot write {path}: the batch holds NaN or infinite values")
        return atomic_save_npy(path, to_levels(pixels).numpy())

    def log_samples(self, writer: Any, tag: str, batch: Tensor, step: int, *,
                    fps: float | None = None) -> None:
        """Write a batch ``(N, *lead, *S)`` (data units) into TensorBoard (a
        ``SummaryWriter``) under ``tag``; moving pictures play at ``fps``, as :meth:`preview`'s
        do."""
        raise NotImplementedError

    def save_grid(self, grid: Tensor, stem: str | Path, *, fps: float | None = None,
                  frames: int | None = None) -> list[Path]:
        """Write a coarse grid ``(N, *lead, *S_k)`` of multi-grid samples (data units): its
        preview and, as :meth:`save_samples` does, every example in ``<stem>.npy``
        (:meth:`save_array`), so programs can score every grid, not only the finest.

        Args:
            fps: the rate the finest grid's moving pictures play at, as :meth:`preview`'s.
            frames: the finest grid's clip length, for modalities with time: a coarse grid's
                frames are block means of the finest's, each played for as long as the frames
                it averages (the others ignore it).
        """
        return [*self.preview(grid, stem, fps=fps), self.save_array(grid, stem)]

    def save_pyramid(self, grids: Sequence[Tensor], stem: str | Path, *,
                     fps: float | None = None) -> Path:
        """One picture of every grid of the first few examples, coarse to fine (data units,
        ``(N, *lead, *S_k)`` each); moving pictures play at ``fps``, as :meth:`preview`'s do."""
        raise NotImplementedError

    def save_rows(self, rows: Sequence[Tensor], stem: str | Path) -> Path:
        """One picture with a row per batch of ``rows`` (data units, the same ``(N, *lead,
        *S)`` each): the samples of each class of a class-conditional synthesis."""
        raise NotImplementedError

    # Units. The defaults: the model sees the data as they are, pixels in [-1, 1].

    def fit_units(self, config: ExperimentConfig, data: Tensor) -> ExperimentConfig:
        """``config`` with any setting learnt from the training ``data`` ``(N, *lead, *S)`` or
        its source resolved (units; a voxel cache's up axis)."""
        return config

    def offset(self, config: ExperimentConfig) -> float:
        """What the model's input subtracts from the data."""
        return 0.0

    def to_data(self, x: Tensor, config: ExperimentConfig) -> Tensor:
        """Model units -> data units, ``x``'s shape ``(B, *lead, *S)`` kept: pixels in
        ``[-1, 1]``, clamped there (MALA and HMC chains
        have no clamp, and a multi-grid chain's block-mean projection follows its clamp, so
        samples can leave the data's range)."""
        return x.clamp(-1.0, 1.0)


def stationary_side(energy: ConvNetEnergy, config: ExperimentConfig, size: int | None) -> int:
    """The frame side of fresh samples: ``size``, or the training data's side.

    Raises:
        ValueError: another side than the training data's for a model tied to its input size (a
            fully connected head).
    """
    side = config.data.size if size is None else as_int(size, "size", minimum=1)
    # A classifier's linear head or its preset's side ties it too.
    tied = (not isinstance(energy, ConvNetEnergy) or energy.head_kind != "sum"
            or energy.input_size is not None)
    if side != config.data.size and tied:
        raise ValueError(f"this model is tied to {config.data.size}x{config.data.size} inputs; "
                         f"size={side} needs a stationary model (texture, st)")
    return side
