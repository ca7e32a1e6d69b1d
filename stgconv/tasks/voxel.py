"""Voxel tasks with a trained 3D descriptor: ``stgconv super-resolve`` (a low-resolution grid or
a mesh) and recovery of batches, as the evaluations run them; the super-resolution chain of a
batch is the library's :func:`stgconv.super_resolution.super_resolve_batch`.

Every chain runs in the model's units (occupancy minus the training mean, see
:mod:`stgconv.modalities.voxel`); the arguments and results here are occupancy.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch import Tensor

from stgconv.baselines import mean_fill
from stgconv.baselines.voxel import FILLS, UPSAMPLERS, downsample
from stgconv.build import task_sampler
from stgconv.checkpoint import CheckpointError, load_model
from stgconv.checks import (as_int, check_dtype_for, check_flag, check_generator, check_output,
                            check_path, check_seed, check_up_axis)
from stgconv.config import ExperimentConfig
from stgconv.energy.base import ConvNetEnergy
from stgconv.energy.classifier import ClassifierEnergy
from stgconv.initializer import Initializer, has_initializer, initializer_from_state
from stgconv.io.atomic import atomic_save_npy, written_together
from stgconv.io.mesh import MESH_SUFFIXES, save_mesh_from_voxels, voxelize_file
from stgconv.io.render import render_voxels
from stgconv.io.voxel import VOXEL_SUFFIXES, load_voxels, pad_to, to_tensor
from stgconv.mcmc import KnownEntries
from stgconv.mcmc.base import Sampler
from stgconv.modalities import VOXELS, modality_of
from stgconv.modalities.voxel import grid_side
from stgconv.super_resolution import super_resolve_batch
from stgconv.types import Fill

RecoveryInit = Literal["nearest_known", "neighbour_majority", "mean", "initializer"]


# What recover_shape and super_resolve write into their folder (array, render, mesh): also the
# names the CLI keeps an input file from being replaced by.
RECOVER_SHAPE_FILES = ("recovered.npy", "recovered.png", "recovered.ply")
SUPER_RESOLVE_FILES = ("super_resolved.npy", "super_resolved.png", "super_resolved.ply")

BATCH_SIZE = 8
"""Shapes a chain runs on at a time (``--batch-size``): a file's every shape in one chain
held the network's activations of all of them (2,000 32^3 grids through a 4-channel net: 3 GB).
"""


def load_voxel_model(checkpoint: str | Path, *, device: str = "auto"
                     ) -> tuple[ConvNetEnergy, ExperimentConfig, dict[str, Any]]:
    """A trained voxel energy (eval mode, on ``device``), its config and the raw checkpoint.

    Raises:
        CheckpointError: not a checkpoint, or not one of a voxel model.
    """
    energy, config, state = load_model(checkpoint, device=device)
    if (modality_of(config) is not VOXELS and not state.get("config")
            and energy.config.get("spatial_dims") == 3):
        # A voxel net saved by a Trainer given no config, whose config is the defaults: it was
        # called "a 'texture' model", sending the user to look for another checkpoint. Only
        # then: a video model's net is 3-D too, and its config says what it is.
        raise CheckpointError(f"the net of {checkpoint} takes 3-D (voxel) inputs, but its "
                              f"config's data are {config.data.kind!r} (the defaults, where a "
                              "Trainer was given no config): give the Trainer the run's config "
                              "(config=stgconv.config.config_to_dict(...), data.kind voxels) to "
                              "use it with this command, or use it in Python")
    if modality_of(config) is not VOXELS:
        # A classifier's own accuracy is what its user looks for in eval classification.
        elsewhere = ("; a classifier (JEM) model's accuracy and calibration are reported by "
                     "stgconv eval ood" if isinstance(energy, ClassifierEnergy) else "")
        raise CheckpointError(f"checkpoint {checkpoint} holds a model of data.kind "
                              f"{config.data.kind!r}; this task needs a voxel model (data.kind: "
                              f"voxels){elsewhere}")
    return energy, config, state


def load_initializer(state: dict[str, Any], checkpoint: str | Path, *,
                     device: torch.device | str = "cpu") -> Initializer | None:
    """The learned initializer a loaded checkpoint holds (eval mode, on ``device``), or
    ``None`` for a model trained without one."""
    return initializer_from_state(state, checkpoint).to(device) if has_initializer(state) else None


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` checked, and at most the largest tensor index: any larger batch holds every
    shape as well, and torch's split failed on it ("Overflow when unpacking long long")."""
    return min(as_int(batch_size, "batch_size", minimum=1), sys.maxsize)


def trained_factor(config: ExperimentConfig) -> int | None:
    """The block factor a model was trained to super-resolve by (``chains.factor`` of a
    ``chains.mode: super_resolution`` run), else ``None``."""
    return config.chains.factor if config.chains.mode == "super_resolution" else None


def factor_or_trained(factor: int | None, config: ExperimentConfig) -> int:
    """``factor``, or left out (``None``) the one the model was trained for (4 for a model not
    trained to super-resolve): a model trained for 32^3 -> 64^3 refused the default 4's 16^3
    grids, its own low resolution aside."""
    if factor is not None:
        return factor
    trained = trained_factor(config)
    return 4 if trained is None else trained


def check_factor(size: int, factor: int) -> int:
    """``factor`` as a Python int; ``ValueError`` unless it is an int ``>= 2`` that divides the
    grid side: with 1 the low resolution is the shape itself, and every method scores a perfect
    copy."""
    factor = as_int(factor, "factor", minimum=2)
    if size % factor:
        raise ValueError(f"factor {factor} does not divide the model's grid side {size}; "
                         f"choose one of {[f for f in range(2, size + 1) if size % f == 0]}")
    return factor


def recovery_fill(init: RecoveryInit, initializer: Initializer | None = None) -> Fill:
    """The chain start ``init`` names: a baseline fill (:data:`stgconv.baselines.voxel.FILLS`),
    ``"mean"`` (missing voxels at the mean of the observed ones, as in the authors' code) or
    ``"initializer"`` (the model's learned filler, :mod:`stgconv.initializer`).

    Raises:
        ValueError: an unknown name, or ``"initializer"`` without a recovery filler.
    """
    fills: dict[str, Fill] = {**FILLS, "mean": mean_fill}
    if initializer is not None and initializer.recovers:
        fills["initializer"] = initializer.propose_fill
    elif init == "initializer":
        # A super-resolution model's initializer proposes from block means, not from known
        # voxels: "this one has none" sent its user looking for one it holds.
        held = "none" if initializer is None else "a super-resolution initializer only"
        raise ValueError(f"init 'initializer' needs a model trained with a recovery initializer "
                         f"(an initializer section with chains.mode recovery); this one has "
                         f"{held}: choose one of {sorted(fills)}")
    if init not in fills:
        raise ValueError(f"init must be one of {sorted(fills)}, got {init!r}")
    return fills[init]


def default_recovery_init(initializer: Initializer | None) -> RecoveryInit:
    """The model's learned filler where it has one, else the nearest-known fill."""
    return "initializer" if initializer is not None and initializer.recovers else "nearest_known"


def recover_batch(energy: ConvNetEnergy, sampler: Sampler, observed: Tensor, known: Tensor, *,
                  offset: float = 0.0, init: RecoveryInit = "nearest_known",
                  initializer: Initializer | None = None, start: Tensor | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
    """Fill the missing voxels with the model's chain, the known ones clamped throughout.

    Args:
        observed: ``(B, 1, D, D, D)`` occupancy; values at missing voxels are ignored.
        known: bool, same shape, ``True`` = observed.
        init: the chain's start (:func:`recovery_fill`; ``"initializer"`` reads
            ``initializer``).
        start: ``(B, 1, D, D, D)`` occupancy, the chain's start made before (instead of
            ``init``'s fill of ``observed``).

    Returns:
        ``(B, 1, D, D, D)`` occupancy, equal to ``observed`` at the known voxels.
    """
    check_generator(generator, "recover_batch")  # before the start's work
    # As recover's observed and super_resolve_batch's low: float64 occupancies for a float32
    # model were refused by the network's own check, naming its input "x", after the fill.
    check_dtype_for(observed, energy, "observed")
    if start is None:
        start = recovery_fill(init, initializer)(observed, known)
    x = sampler.run(energy, start - offset, constraint=KnownEntries(observed - offset, known),
                    generator=generator)
    return x + offset


def check_fits(side: int, size: int, source: str | Path | None = None) -> None:
    """Raise ``ValueError`` for shapes of ``side^3`` (read from the file ``source``, which the
    message names) larger than the model's ``size^3`` grid."""
    if side > size:
        held = f"the shapes are {side}^3 grids" if source is None else (
            f"{source} holds {side}^3 grids")
        raise ValueError(f"{held}; this model takes (N, {size}, {size}, {size}) (smaller grids "
                         "are padded)")


def on_model_grid(method: Callable[[Tensor, Tensor], Tensor], observed: Tensor, known: Tensor,
                  size: int, *, device: torch.device | str = "cpu") -> Tensor:
    """``method(observed, known)`` run on the model's ``size^3`` grid for shapes up to it:
    smaller ones (ModelNet's 30^3 under a 32^3 model) are zero-padded, centred, the padding
    counts as observed (it is empty by construction), and the result is cropped back.

    Args:
        observed, known: ``(B, 1, R, R, R)``, ``R`` at most ``size``; ``known`` bool.

    Returns:
        ``(B, 1, R, R, R)`` on ``observed``'s device.

    Raises:
        ValueError: grids larger than the model's.
    """
    side = observed.shape[-1]
    check_fits(side, size)
    observed_model = pad_to(observed, size).to(device)
    known_model = ~pad_to(~known, size).to(device)  # the padding is known to be empty
    x = method(observed_model, known_model)
    lo = (size - side) // 2
    return x[..., lo:lo + side, lo:lo + side, lo:lo + side].to(observed.device)


def recovery_start(init: RecoveryInit, initializer: Initializer | None, observed: Tensor,
                   known: Tensor, size: int, *, device: torch.device | str = "cpu") -> Tensor:
    """The start of a recovery chain for shapes up to the model's ``size^3`` grid, on the
    shapes' own grid: the learned filler, trained on padded grids, fills them padded
    (:func:`on_model_grid`); a classical fill fills them as they are, as the baselines do. The
    padding is empty, but it says nothing of the voxels at the shapes' faces: a nearest-known
    fill took it for their neighbours and emptied the faces of shapes that reach them.

    Args:
        observed, known: ``(B, 1, R, R, R)``, ``R`` at most ``size``; ``known`` bool.

    Returns:
        ``(B, 1, R, R, R)`` occupancy on ``observed``'s device.
    """
    fill = recovery_fill(init, initializer)
    if init == "initializer":
        return on_model_grid(fill, observed, known, size, device=device)
    return fill(observed, known)


def recover_padded(energy: ConvNetEnergy, sampler: Sampler, observed: Tensor, known: Tensor, *,
                   offset: float = 0.0, init: RecoveryInit = "nearest_known",
                   initializer: Initializer | None = None,
                   generator: torch.Generator | None = None) -> Tensor:
    """:func:`recover_batch` for shapes up to the model's grid (:func:`on_model_grid`), from
    :func:`recovery_start`.

    Args:
        observed, known: ``(B, 1, R, R, R)``, ``R`` at most the model's side; ``known`` bool.

    Returns:
        ``(B, 1, R, R, R)`` occupancy, equal to ``observed`` at the known voxels.

    Raises:
        ValueError: grids larger than the model's.
    """
    check_generator(generator, "recover_padded")
    size, device = grid_side(energy), next(energy.parameters()).device
    check_fits(observed.shape[-1], size)  # before the start's work
    start = recovery_start(init, initializer, observed, known, size, device=device)

    def recover(observed_model: Tensor, known_model: Tensor) -> Tensor:
        return recover_batch(energy, sampler, observed_model, known_model, offset=offset,
                             start=pad_to(start, size).to(device), generator=generator)

    return on_model_grid(recover, observed, known, size, device=device)


@written_together()
def recover_shape(checkpoint: str | Path, source: str | Path, known: str | Path,
                  out_dir: str | Path, *, init: RecoveryInit | None = None,
                  n_steps: int | None = None, batch_size: int = BATCH_SIZE, seed: int = 0,
                  device: str = "auto") -> Path:
    """Fill the unobserved voxels of one or more shapes with a trained voxel model,
    ``batch_size`` shapes a chain.

    ``source`` is a voxel file (one grid ``(R, R, R)`` or a batch ``(N, R, R, R)``, occupancy in
    ``[0, 1]`` everywhere; values at unobserved voxels are ignored) and ``known`` a voxel file
    of the same shape in {0, 1}, 1 = observed, both ``.mat`` or neither. ``R`` may be smaller
    than the model's side (zero-padded for it). Writes into ``out_dir``: ``recovered.npy``
    (float32 ``(N, R, R, R)`` in ``[0, 1]``, equal to ``source`` at the observed voxels as
    :func:`~stgconv.io.voxel.load_voxels` reads it: a ``.mat``'s first two axes swapped),
    ``recovered.png`` (observed | ours, up to 4 shapes) and, for one shape, ``recovered.ply``
    (its 0.5 iso-surface). ``init`` is the chain's start (:func:`recovery_fill`; default
    :func:`default_recovery_init`).

    Raises:
        ValueError: mismatched or unreadable files, grids larger than the model's, nothing
            observed or nothing to recover; an ``out_dir`` that cannot be written (before the
            work).
    """
    seed = check_seed(seed)
    # Before the work: an out_dir that was a file failed after the chains with "File exists".
    check_output(out_dir, "out_dir")
    check_path(source, "source")
    check_path(known, "known")
    if (Path(source).suffix.lower() == ".mat") != (Path(known).suffix.lower() == ".mat"):
        raise ValueError(f"{source} and {known} must both be .mat files or neither: a .mat "
                         "grid is read with its first two axes swapped (stgconv.io.voxel), so "
                         "a mask in another format would mark other voxels")
    batch_size = check_batch_size(batch_size)
    energy, config, state = load_voxel_model(checkpoint, device=device)
    sampler = task_sampler(config, n_steps=n_steps)  # a bad n_steps before the files are read
    param = next(energy.parameters())
    initializer = load_initializer(state, checkpoint, device=param.device)
    init = default_recovery_init(initializer) if init is None else init
    grids = load_voxels(source, binary=False)
    mask = load_voxels(known, binary=True)
    if grids.shape != mask.shape:
        raise ValueError(f"{known} holds a mask of shape {mask.shape}, but {source} holds "
                         f"grids of shape {grids.shape}: they must match")
    grids, mask = (grids[None], mask[None]) if grids.ndim == 3 else (grids, mask)
    if len(grids) == 0:
        raise ValueError(f"{source} holds no grids: nothing to recover")
    check_fits(grids.shape[-1], grid_side(energy), source)  # among many files, which one
    observed_mask = to_tensor(mask) > 0.5
    if not observed_mask.flatten(1).any(1).all():
        raise ValueError(f"{known} marks no voxel as observed in some shape: nothing to "
                         "recover from (1 = observed)")
    if observed_mask.all():
        raise ValueError(f"{known} marks every voxel as observed: nothing to recover "
                         "(1 = observed, 0 = to fill)")
    observed = torch.where(observed_mask, to_tensor(grids), torch.zeros(()))
    generator = torch.Generator(param.device).manual_seed(seed)
    ours = torch.cat([
        recover_padded(energy, sampler, batch, batch_known, offset=VOXELS.offset(config),
                       init=init, initializer=initializer, generator=generator).cpu()
        for batch, batch_known in zip(observed.split(batch_size), observed_mask.split(batch_size))
    ]).clamp(0.0, 1.0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    array_path, render_path, mesh_path = (out / name for name in RECOVER_SHAPE_FILES)
    atomic_save_npy(array_path, ours[:, 0].numpy().astype(np.float32))
    panels, titles = [], []
    for i in range(min(4, len(ours))):
        panels += [observed[i], ours[i]]
        titles += ["observed", "stgconv"]
    render_voxels(panels, render_path, titles=titles, columns=2)
    _save_mesh_of_one(ours, mesh_path)
    return out


@written_together()
def super_resolve(checkpoint: str | Path, source: str | Path, out_dir: str | Path, *,
                  factor: int | None = None, n_steps: int | None = None, binary: bool = True,
                  batch_size: int = BATCH_SIZE, up_axis: int | None = None, seed: int = 0,
                  device: str = "auto") -> Path:
    """Super-resolve a low-resolution grid file or a mesh with a trained high-resolution model,
    ``batch_size`` shapes a chain.

    ``source`` is a voxel file (one grid ``(d, d, d)`` or a batch ``(N, d, d, d)`` of occupancy
    in ``[0, 1]``, ``d = size / factor``; ``factor`` left out: the one the model was trained
    for, :func:`factor_or_trained`) or a mesh (:data:`~stgconv.io.mesh.MESH_SUFFIXES`),
    voxelized here to a solid ``size^3`` grid (a margin of 1 voxel, as a mesh folder or cache
    gives a model to train on; the mesh's ``up_axis``, 0 = x, 1 = y, 2 = z, turned to array
    axis 2: ModelNet meshes are z-up, ShapeNet's and most ``.obj`` files y-up; left out, the
    model's ``data.up_axis``, as it saw a folder of meshes or the cache it was trained on: 2
    for a model trained on other grids) and block-averaged to ``d^3``.
    Writes into
    ``out_dir``: ``super_resolved.npy`` (float32 ``(N, D, D, D)``: in {0, 1} when ``binary``,
    see :func:`~stgconv.super_resolution.super_resolve_batch`; else the chain's occupancy
    clamped to ``[0, 1]``; a ``.mat`` source's in the layout
    :func:`~stgconv.io.voxel.load_voxels` reads it in),
    ``super_resolved.png`` (input | nearest | ours, up to 4 shapes) and, for one shape,
    ``super_resolved.ply`` (its 0.5 iso-surface). Grids of a voxel file that hold only block
    means 0 and 1 (a shape voxelized at the low side) are warned about: each block keeps its
    count, all or none, so they come back as their nearest up-sampling.

    Raises:
        ValueError: a factor below 2 or one that does not divide the model's side; a grid of
            the wrong size; an unreadable or broken file; an ``up_axis`` given not 0, 1 or 2,
            or other than 2 for a voxel file (read as stored, up = the last axis); an ``out_dir``
            that cannot be written (before the work).
    """
    seed = check_seed(seed)
    check_output(out_dir, "out_dir")  # before the work, as recover_shape
    check_path(source, "source")
    binary = check_flag(binary, "binary")
    batch_size = check_batch_size(batch_size)
    if up_axis is not None:
        up_axis = check_up_axis(up_axis)
    if up_axis not in (None, 2) and Path(source).suffix.lower() not in MESH_SUFFIXES:
        raise ValueError(f"up_axis={up_axis} (--up-axis) turns a mesh as it is voxelized, but "
                         f"{source} is no mesh ({', '.join(MESH_SUFFIXES)}): a voxel file is "
                         "read as stored, up = the last axis; leave the up axis out")
    energy, config, state = load_voxel_model(checkpoint, device=device)
    size = grid_side(energy)
    factor = factor_or_trained(factor, config)
    check_factor(size, factor)
    sampler = task_sampler(config, n_steps=n_steps)  # a bad n_steps before a mesh's voxelization
    low_side = size // factor
    source = Path(source)
    suffix = source.suffix.lower()
    if suffix in MESH_SUFFIXES:
        # Voxelized at the model's size and block-averaged: the low resolution of the training
        # protocol (occupancy fractions). A mesh voxelized straight at d^3 is binary, and a block
        # whose mean is 0 or 1 pins every voxel in it: nothing would be left to super-resolve.
        # With the margin a model trained on meshes saw (a mesh folder, a prepared cache).
        # Left out, as the model saw its training meshes: one trained on y-up meshes
        # (data.up_axis 1) was given such a mesh z-up, lying on its side.
        turned = config.data.up_axis if up_axis is None else up_axis
        solid = voxelize_file(source, size, up_axis=turned).astype(np.float32)
        grids = downsample(to_tensor(solid[None]), factor)[:, 0].numpy()
    elif suffix in VOXEL_SUFFIXES:
        grids = load_voxels(source, binary=False)
        grids = grids[None] if grids.ndim == 3 else grids
    else:
        raise ValueError(f"cannot read {source}: expected a voxel file "
                         f"({', '.join(VOXEL_SUFFIXES)}) or a mesh ({', '.join(MESH_SUFFIXES)})")
    if len(grids) == 0:
        raise ValueError(f"{source} holds no grids: nothing to super-resolve")
    if grids.shape[-1] != low_side:
        side = grids.shape[-1]
        # The factor is 4 unless given: a model trained for another one (chains.factor 2, 32^3
        # -> 64^3) refused its own low resolution without saying which factor takes it.
        takes = (f"; {side}^3 grids take factor {size // side} (--factor {size // side})"
                 if side < size and size % side == 0 else "")
        raise ValueError(
            f"{source} holds {side}^3 grids; this {size}^3 model with factor {factor} "
            f"needs low-resolution grids (N, {low_side}, {low_side}, {low_side}){takes}")
    if suffix in VOXEL_SUFFIXES:
        # A block mean of 0 or 1 pins every voxel of the block: a shape voxelized straight at
        # the low side has nothing but such blocks, and came back as its nearest up-sampling
        # (or, --soft, the chain's moves inside pinned blocks) without a word.
        pinned = [i for i, grid in enumerate(grids) if np.isin(grid, (0, 1)).all()]
        if pinned:
            warnings.warn(
                f"{len(pinned)} of the {len(grids)} grids of {source} (the first: grid "
                f"{pinned[0]}) hold only block means 0 and 1, so every block is all empty or "
                "all occupied and nothing inside it is left to infer: they come back as their "
                "nearest up-sampling" + ("" if binary else " and the chain's moves inside its "
                                         "blocks") + "; give occupancy fractions (a finer grid "
                f"averaged over {factor}^3 blocks) or the mesh",
                stacklevel=3)  # past written_together's wrapper
    param = next(energy.parameters())
    low = to_tensor(grids)
    generator = torch.Generator(param.device).manual_seed(seed)
    initializer = load_initializer(state, checkpoint, device=param.device)
    ours = torch.cat([
        super_resolve_batch(energy, sampler, batch.to(param.device), factor,
                            offset=VOXELS.offset(config), upsample=config.chains.upsample,
                            binary=binary, initializer=initializer, generator=generator).cpu()
        for batch in low.split(batch_size)
    ]).clamp(0.0, 1.0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    array_path, render_path, mesh_path = (out / name for name in SUPER_RESOLVE_FILES)
    atomic_save_npy(array_path, ours[:, 0].numpy().astype(np.float32))
    panels, titles = [], []
    for i in range(min(4, len(low))):
        panels += [low[i], UPSAMPLERS["nearest"](low[i : i + 1], factor)[0], ours[i]]
        titles += [f"input {low_side}^3", "nearest", "stgconv"]
    render_voxels(panels, render_path, titles=titles, columns=3)
    _save_mesh_of_one(ours, mesh_path)
    return out


def _save_mesh_of_one(grids: Tensor, path: Path) -> None:
    """The 0.5 iso-surface of ``grids`` ``(N, 1, R, R, R)`` at ``path`` when they are one shape
    with an occupied voxel. Otherwise no mesh, and an earlier run's there is removed: it would
    show another shape than the ``.npy`` written beside it."""
    if len(grids) == 1 and (grids[0] > 0.5).any():
        save_mesh_from_voxels(grids[0], path)
    else:
        path.unlink(missing_ok=True)
