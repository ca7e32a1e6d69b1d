"""Voxels ``(N, 1, D, D, D)``: occupancy in ``[0, 1]``, up = the last axis.

Units. Files and results hold occupancy. The model sees occupancy minus ``config.data.mean``
(0 when it is null): the authors' 3DDescriptorNet code subtracts the training shapes' mean
occupancy, which puts the Gaussian reference term and a chain started at zero at the mean shape
density instead of at "empty". The constraints used with voxels are affine in ``x`` and the shift
is a constant, so ``block_down(x - m) == low - m`` and clamping known voxels commute with it:
every chain runs in the model's units and only the ends convert. ``sampler.clamp`` is configured
in occupancy units and shifted by :func:`stgconv.build.model_sampler`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from stgconv.config import DataConfig, ExperimentConfig, ModelConfig
from stgconv.data.voxel import cache_up_axis, load_voxel_shapes
from stgconv.energy.base import ConvNetEnergy
from stgconv.energy.voxel import voxel_energy
from stgconv.io.atomic import atomic_save_npy
from stgconv.io.render import render_voxels
from stgconv.io.voxel import check_grids
from stgconv.modalities.base import Modality

MAX_SHAPES = 16
"""Shapes a preview renders at most."""


class VoxelModality(Modality):
    name = "voxels"
    most_shown = MAX_SHAPES
    data_kinds = ("voxels",)

    def load(self, data: DataConfig, *, smallest_side: int = 1) -> Tensor:
        """Occupancy ``(N, 1, D, D, D)`` in ``[0, 1]``; grids smaller than ``data.size`` are
        padded, meshes voxelized at it with ``data.up_axis`` turned to the last axis."""
        return load_voxel_shapes(data.path, categories=data.categories,
                                 split=None if data.split == "all" else data.split,
                                 max_shapes=data.max_images, pad_to=data.size,
                                 up_axis=data.up_axis, smallest_side=smallest_side)

    def energy(self, model: ModelConfig) -> ConvNetEnergy:
        return voxel_energy(model.arch, size=model.image_size, layers=model.layers,
                            activation=model.activation or "relu",
                            reference_sigma=model.reference_sigma)

    def grid_shape(self, side: int, frames: int | None, data: DataConfig) -> tuple[int, ...]:
        return (side, side, side)

    def sample_shape(self, energy: ConvNetEnergy, config: ExperimentConfig, n: int, *,
                     size: int | None = None, frames: int | None = None) -> tuple[int, ...]:
        if size is not None or frames is not None:
            raise ValueError(f"size and frames do not apply to voxel models (fixed grid size); "
                             f"got size={size}, frames={frames}")
        side = grid_side(energy)
        return (n, 1, side, side, side)

    def preview(self, batch: Tensor, stem: str | Path, *, formats: Sequence[str] = (".gif",),
                fps: float | None = None) -> list[Path]:
        """``<stem>.png`` (renders of the 0.5 iso-surfaces) and ``<stem>.npy`` (float32
        ``(n, D, D, D)``) of the first ``n = min(N, 16)`` shapes ``(N, 1, D, D, D)``."""
        return self._render_and_save(batch, stem, keep=MAX_SHAPES)

    def save_samples(self, batch: Tensor, stem: str | Path, *, fps: float | None = None
                     ) -> list[Path]:
        """The preview of shapes ``(N, 1, D, D, D)``; ``<stem>.npy`` then holds every shape,
        not only the first 16."""
        return self._render_and_save(batch, stem, keep=len(batch))

    def _render_and_save(self, batch: Tensor, stem: str | Path, *, keep: int) -> list[Path]:
        if batch.dim() != 5 or batch.shape[1] != 1 or len(set(batch.shape[2:])) != 1:
            raise ValueError(f"expected voxels (N, 1, D, D, D), got {tuple(batch.shape)}")
        stem = Path(stem)
        # The render first (it is what fails: open3d, an interrupt): a failed one must not
        # leave a .npy of the first 16 shapes where programs read every one.
        shown = batch[:MAX_SHAPES].detach().float().cpu()[:, 0].numpy()
        png = render_voxels(shown, stem.with_suffix(".png"))
        return [png, self.save_array(batch[:keep], stem)]

    def save_array(self, batch: Tensor, stem: str | Path) -> Path:
        """``<stem>.npy``: shapes ``batch`` ``(N, 1, D, D, D)`` as float32 occupancies ``(N, D,
        D, D)`` in ``[0, 1]``, the data's value range, for programs that score them.

        Raises:
            ValueError: ``batch`` of another shape, or holding values outside ``[0, 1]`` (NaN
                and infinities included): a coarse grid's array, written without a preview
                that checks it, kept them without a word.
        """
        path = Path(stem).with_suffix(".npy")
        if batch.dim() != 5 or batch.shape[1] != 1:
            raise ValueError(f"cannot write {path}: expected voxels (N, 1, D, D, D), got "
                             f"{tuple(batch.shape)}")
        grids = check_grids(batch.detach().float().cpu()[:, 0], binary=False,
                            name=f"cannot write {path}")
        return atomic_save_npy(path, grids)

    def log_samples(self, writer: Any, tag: str, batch: Tensor, step: int, *,
                    fps: float | None = None) -> None:
        """The mean occupied fraction of the samples ``(N, 1, D, D, D)``
        (``<tag>/volume_fraction``) and the first sample's 0.5 iso-surface as a TensorBoard mesh
        (when it has one; closed where the shape touches the grid's border)."""
        from stgconv.io.mesh import mesh_from_voxels  # scikit-image: only where logged

        grids = batch.detach().float().cpu()[:, 0]
        writer.add_scalar(f"{tag}/volume_fraction", (grids >= 0.5).float().mean().item(), step)
        vertices, faces = mesh_from_voxels(grids[0].numpy())
        if len(faces):
            writer.add_mesh(tag, vertices=torch.from_numpy(vertices)[None],
                            faces=torch.from_numpy(faces)[None], global_step=step)

    def save_grid(self, grid: Tensor, stem: str | Path, *, fps: float | None = None,
                  frames: int | None = None) -> list[Path]:
        """``<stem>.npy`` (:meth:`save_array`) only of a coarse grid ``(N, 1, D_k, D_k, D_k)``:
        its block means rarely reach the 0.5 level a render draws; its picture is in the
        pyramid (drawn at half each grid's maximum)."""
        return [self.save_array(grid, stem)]

    def save_pyramid(self, grids: Sequence[Tensor], stem: str | Path, *,
                     fps: float | None = None) -> Path:
        """``<stem>.png``: renders of the first 4 shapes at every grid (each
        ``(N, 1, D_k, D_k, D_k)``), one row per shape; a coarse grid is drawn at half its own
        maximum."""
        grids = [g.detach().float().cpu() for g in grids]
        labels = ["x".join(str(s) for s in g.shape[2:]) for g in grids]
        panels, titles = [], []
        for i in range(min(4, len(grids[-1]))):
            for g, label in zip(grids, labels):
                grid = g[i, 0]
                # Rescaled so that the renderer's 0.5 level sits at half this grid's maximum.
                level = 0.5 if g is grids[-1] else max(grid.max().item(), 1e-6) / 2
                panels.append(grid * (0.5 / level))
                titles.append(label if g is grids[-1] else f"{label} @{level:.2f}")
        return render_voxels(panels, Path(stem).with_suffix(".png"), columns=len(grids),
                             titles=titles)

    def fit_units(self, config: ExperimentConfig, data: Tensor) -> ExperimentConfig:
        """``data.mean == "auto"`` replaced by the mean occupancy of ``data`` ``(N, 1, D, D, D)``
        (a scalar, as in the authors' code), and ``data.up_axis`` by the up axis of the meshes a
        shape cache was voxelized from: a mesh given to the model later (super-resolve, the
        voxel evals) is then turned as its training meshes were."""
        built_with = cache_up_axis(config.data.path)
        if built_with is not None:
            config = replace(config, data=replace(config.data, up_axis=built_with))
        if config.data.mean != "auto":
            return config
        return replace(config, data=replace(config.data, mean=float(data.mean())))

    def offset(self, config: ExperimentConfig) -> float:
        if config.data.mean is None:
            return 0.0
        if config.data.mean == "auto":
            raise ValueError("data.mean='auto' is resolved from the training shapes when "
                             "training starts; this config was never trained")
        return float(config.data.mean)

    def to_data(self, x: Tensor, config: ExperimentConfig) -> Tensor:
        """Model units -> occupancy in ``[0, 1]`` (shifted back and clamped), ``x``'s shape
        ``(B, 1, D, D, D)`` kept."""
        return (x + self.offset(config)).clamp(0.0, 1.0)


def grid_side(energy: ConvNetEnergy) -> int:
    """The side ``D`` of a voxel energy's ``(B, 1, D, D, D)`` inputs."""
    return int(energy.input_size[0])


VOXELS = VoxelModality()
