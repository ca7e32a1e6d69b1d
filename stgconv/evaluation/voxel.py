"""Voxel super-resolution and shape recovery, ours against the classical baselines: one
protocol and one table each, every method on the same inputs.

- super-resolution: ``low = block_down(x, f)`` (block means); ours runs the model's sampler from
  its learned initializer's proposal (:mod:`stgconv.initializer`) or else the up-sampling of
  ``low`` its config names (``chains.upsample``) with
  :class:`~stgconv.mcmc.DownsampleConsistency` after every step and, by default, makes the
  result binary with each block's count of occupied voxels
  (:func:`stgconv.super_resolution.super_resolve_batch`), so ``block_down(ours) == low`` exactly;
  baselines :data:`stgconv.baselines.voxel.UPSAMPLERS` (one of them, ``trilinear_binary``, the
  same binarisation of the trilinear up-sampling).
- recovery: a seeded random ``missing`` fraction of the voxels is hidden (independently per
  voxel); ours runs the sampler from the model's learned filler where it was trained with one,
  else a baseline fill (``init``), with :class:`~stgconv.mcmc.KnownEntries`
  (:func:`stgconv.tasks.voxel.recover_batch`), so the observed voxels never change; baselines
  :data:`stgconv.baselines.voxel.FILLS`.
- scores (:mod:`stgconv.metrics`): mean absolute voxel error on ``[0, 1]`` (outputs clamped;
  recovery: over the missing voxels only) and IoU of the 0.5 iso-level, both averaged over
  shapes, and the IoU of every shape's voxels pooled (``iou_pooled``; 1, as each shape's, where
  the shapes and the predictions are all empty).
"""

from __future__ import annotations

import numbers
import time
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from stgconv.baselines.voxel import FILLS, UPSAMPLERS, downsample
from stgconv.build import task_sampler
from stgconv.checks import (as_int, check_flag, check_generator, check_path, check_seed,
                            check_up_axis)
from stgconv.config import ExperimentConfig
from stgconv.data.voxel import load_voxel_shapes, refuse_up_axis_of_grids
from stgconv.evaluation.tensorboard import check_outputs, log_evaluation
from stgconv.io.atomic import atomic_save_npy, atomic_write_json, written_together
from stgconv.io.folder import list_files
from stgconv.io.image import save_picture
from stgconv.io.mesh import MESH_SUFFIXES
from stgconv.io.render import voxel_sheet
from stgconv.io.voxel import load_voxels, pad_to, to_tensor
from stgconv.mcmc import DownsampleConsistency
from stgconv.metrics import pooled_iou, voxel_errors, voxel_iou
from stgconv.modalities import VOXELS
from stgconv.modalities.voxel import grid_side
from stgconv.ops import block_top_k, block_upsampler
from stgconv.super_resolution import super_resolve_batch
from stgconv.tasks.voxel import (
    RecoveryInit,
    check_batch_size,
    check_factor,
    default_recovery_init,
    factor_or_trained,
    load_initializer,
    load_voxel_model,
    recover_padded,
    recovery_fill,
    recovery_start,
    trained_factor,
)

SR_UNIT = ("mean absolute voxel error on [0, 1] over all voxels; IoU of the 0.5 level; "
           "means over shapes")
RECOVERY_UNIT = ("mean absolute voxel error on [0, 1] over the missing voxels; IoU of the 0.5 "
                 "level over the whole grid; means over shapes")
SCORE_CHUNK = 256
"""Shapes scored at a time."""
PICTURED = 4
"""Shapes in ``comparison.png``."""
EVAL_FILES = ("stgconv.npy", "comparison.png")
"""What an evaluation writes into its ``out_dir``: ours and the comparison render."""
START_NAMES = {"nearest": "nearest", "linear": "trilinear"}
"""The config's ``chains.upsample`` (:data:`stgconv.ops.BLOCK_UPSAMPLERS`) -> the name of its
baseline row (:data:`~stgconv.baselines.voxel.UPSAMPLERS`), by which super-resolution's start
is named: on voxels "linear" is the trilinear up-sampling, and a table whose start row said
"linear" beside a "trilinear" row named one up-sampling twice."""


def load_eval_shapes(path: str | Path, *, max_shapes: int | None = None,
                     mesh_side: int = 32, max_side: int | None = None, up_axis: int = 2
                     ) -> Tensor:
    """Ground-truth shapes for an evaluation: float32 ``(N, 1, D, D, D)`` in {0, 1}.

    ``path`` is any voxel file (:data:`~stgconv.io.voxel.VOXEL_SUFFIXES`; an ``.npz`` holds them
    under ``X`` as ``(N, D, D, D)`` {0, 1}) or a folder of them, as training reads one
    (e.g. ``../shared/data/voxel/chairs_30_mat``, files in natural name order), or a folder of
    meshes, voxelized at ``mesh_side`` (the model's side: ``D = mesh_side``) with their
    ``up_axis`` (0 = x, 1 = y, 2 = z; ModelNet: 2, ShapeNet: 1) turned to array axis 2.

    Raises:
        ValueError: grids larger than ``max_side`` (the model's side; smaller ones are padded),
            refused before a file's grids are converted; no shapes; a folder's shapes that are
            not binary; a mesh file (meshes are read from a folder); an ``up_axis`` not 0, 1
            or 2, or other than 2 for voxel grids (read as stored, up = the last axis).
    """
    if max_shapes is not None:  # as_int: 2.0 failed as a slice index, in Python's words
        max_shapes = as_int(max_shapes, "max_shapes", minimum=1)
    up_axis = check_up_axis(up_axis)
    check_path(path, "path")
    if Path(path).suffix.lower() in MESH_SUFFIXES and Path(path).is_file():
        # Refused as a voxel file of the wrong suffix, which said nothing of meshes.
        raise ValueError(f"{path} is a mesh; meshes are read from a folder, each voxelized at "
                         f"the model's side: give the folder that holds it")
    if Path(path).is_dir():
        batch = load_voxel_shapes(path, max_shapes=max_shapes, mesh_side=mesh_side,
                                  up_axis=up_axis)
        if not torch.all((batch == 0) | (batch == 1)):
            raise ValueError(f"{path}: ground-truth shapes must be binary occupancy (0 or 1)")
        _check_side(batch, path, max_side)
    else:
        refuse_up_axis_of_grids(path, up_axis)
        # Kept and refused before they become float32 (4x their uint8): 20,000 32^3 grids
        # took 3.1 GB for --max-shapes 8; 500 64^3 grids 0.5 GB before a 32^3 model refused
        # them. Only the first max_shapes are read: all 2,000 64^3 grids of an .npz were
        # decompressed (524 MB) to score 4.
        grids = load_voxels(path, binary=True, max_shapes=max_shapes)
        grids = grids[None] if grids.ndim == 3 else grids
        _check_side(grids, path, max_side)
        batch = to_tensor(grids)
    if len(batch) == 0:
        raise ValueError(f"{path} holds no shapes")
    return batch


def _up_axis_for(shapes: str | Path, config: ExperimentConfig, up_axis: int | None) -> int:
    """The up axis :func:`load_eval_shapes` reads ``shapes`` with for a model of ``config``:
    ``up_axis`` where given, else for a folder of meshes the model's ``data.up_axis``, as it saw
    its training meshes (one trained on y-up meshes was scored on such meshes voxelized z-up,
    lying on their side), and for voxel grids 2, as they are read."""
    if up_axis is not None:
        return up_axis
    return config.data.up_axis if _holds_meshes(shapes) else 2


def _holds_meshes(shapes: str | Path) -> bool:
    """Whether ``shapes`` is a folder of meshes, which are voxelized with an up axis."""
    path = Path(shapes)
    return path.is_dir() and bool(list_files(path, MESH_SUFFIXES))


@written_together()
def eval_super_resolution(
    checkpoint: str | Path, shapes: str | Path, *, factor: int | None = None,
    n_steps: int | None = None,
    binary: bool = True, batch_size: int = 8, max_shapes: int | None = None,
    up_axis: int | None = None, seed: int = 0, out_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    tensorboard: str | Path | None = None, device: str = "auto",
) -> dict[str, Any]:
    """Super-resolve ``block_down(x, factor)`` of every shape in ``shapes``: ours and the
    baselines, one table (``factor`` left out: the one the model was trained for,
    :func:`~stgconv.tasks.voxel.factor_or_trained`).

    Returns (and writes to ``json_path``) ``{"unit", "errors": {"stgconv": e, "nearest": e,
    "trilinear": e, "trilinear_binary": e}, "iou": {...}, "iou_pooled": {...}, "seconds": {...},
    "n_shapes", "size", "model_size", "factor", "low_size", "trained_factor", "steps", "seed",
    "upsample", "binary", "checkpoint", "shapes", "up_axis", "start"}`` (``up_axis``: the one
    a folder of meshes was voxelized with, ``None`` for voxel grids, read as stored);
    ``binary=False`` scores our
    chain's soft occupancy instead. ``start`` scores where our chain starts, as ours is scored
    (made binary the same way, or with ``binary=False`` soft, held to the block means as the
    chain's start is) (``{"method", "error", "iou", "iou_pooled", "seconds"}``; method
    ``"initializer"`` for a model trained with one that serves ``factor``,
    :mod:`stgconv.initializer`, else the config's ``chains.upsample`` by its baseline's name,
    :data:`START_NAMES`: ``"trilinear"`` for ``"linear"``), so the table shows what the chain
    adds to its start; ``"upsample"`` is that setting as the config names it (``"linear"``).
    With ``out_dir``, also ``comparison.png`` (low | each up-sampling | ours | truth for the
    first 4 shapes) and ``stgconv.npy`` (ours, clamped). With ``tensorboard`` (a folder),
    also logs the scores and the comparison render there
    (:mod:`stgconv.evaluation.tensorboard`).

    ``shapes`` is read by :func:`load_eval_shapes`: a folder of meshes is voxelized at the
    model's side with its ``up_axis`` (0 = x, 1 = y, 2 = z) turned to array axis 2 (left out:
    the model's ``data.up_axis``, as it saw a folder of meshes or the cache it was trained on:
    2 for a model trained on other grids).

    Shapes smaller than the model's grid (ModelNet's 30^3 under a 32^3 model) are zero-padded,
    centred, as training pads them, before they are down-sampled; every method's output is
    cropped back and scored on the shapes' own grid (``"size"``; ``"model_size"`` and
    ``"low_size"`` are the model's grid and its down-sampled side). The binary results (ours,
    its start, ``trilinear_binary``) place each block's occupied voxels outside the padding,
    which is known to be empty, so the shapes they score keep every block's count.

    Raises:
        ValueError: grids larger than the model's; a factor below 2 or one that does not
            divide its side; an ``up_axis`` not 0, 1 or 2, or other than 2 for voxel grids.
    """
    seed = check_seed(seed)
    binary = check_flag(binary, "binary")
    batch_size = check_batch_size(batch_size)
    if up_axis is not None:  # before the model is loaded
        up_axis = check_up_axis(up_axis)
    check_path(shapes, "shapes")  # before the model is loaded
    check_outputs(out_dir=out_dir, json_path=json_path, tensorboard=tensorboard)
    energy, config, state = load_voxel_model(checkpoint, device=device)
    size = grid_side(energy)
    # A Python int: a numpy or torch integer (a sweep over np.arange) was kept as given, and
    # the JSON table refused it after the whole evaluation.
    factor = check_factor(size, factor_or_trained(factor, config))
    sampler = task_sampler(config, n_steps=n_steps)  # a bad n_steps before the shapes are read
    up_axis = _up_axis_for(shapes, config, up_axis)
    truth = load_eval_shapes(shapes, max_shapes=max_shapes, mesh_side=size, max_side=size,
                             up_axis=up_axis)
    side = truth.shape[-1]
    padded = pad_to(truth, size)
    lo = (size - side) // 2
    # The padding is known to be empty: a binary result places each block's count of occupied
    # voxels among the shapes' own voxels, else the ones placed in the padding were cropped
    # away and the scored shapes lost them (a shape that reaches its grid's faces).
    padding = ~pad_to(torch.ones(1, 1, side, side, side, dtype=torch.bool), size)
    blocks = (factor,) * 3

    def binary_inside(scores: Tensor, low: Tensor) -> Tensor:
        """:func:`block_top_k` of ``scores`` with every padding voxel ranked last."""
        ranked = scores.masked_fill(padding.to(scores.device), -torch.inf)
        return block_top_k(ranked, low.to(scores.device), blocks)

    Upsampler = Callable[[Tensor, int], Tensor]

    def on_shapes_grid(method: Upsampler) -> Upsampler:
        """``method``'s output cropped to the shapes' own grid, where they are scored."""
        def cropped(low: Tensor, factor: int) -> Tensor:
            return method(low, factor)[..., lo:lo + side, lo:lo + side, lo:lo + side]

        return cropped

    param = next(energy.parameters())
    generator = torch.Generator(param.device).manual_seed(seed)
    initializer = load_initializer(state, checkpoint, device=param.device)
    learned_start = initializer is not None and initializer.serves(factor)

    def ours(low: Tensor, factor: int) -> Tensor:
        chain = super_resolve_batch(energy, sampler, low.to(param.device), factor,
                                    offset=VOXELS.offset(config),
                                    upsample=config.chains.upsample, binary=False,
                                    initializer=initializer, generator=generator)
        return (binary_inside(chain, low) if binary else chain).cpu()

    def start(low: Tensor, factor: int) -> Tensor:
        low = low.to(param.device)
        proposal = (initializer.propose(low, factor) if learned_start
                    else block_upsampler(config.chains.upsample)(low, blocks))
        if binary:
            return binary_inside(proposal, low).cpu()
        # Scored as ours is: soft, held to the block means as the chain's start is. Made
        # binary beside our soft chain, the row showed the chain losing what the binarisation
        # alone had gained.
        return DownsampleConsistency(low, blocks).project(proposal).cpu()

    def trilinear_binary(low: Tensor, factor: int) -> Tensor:
        return binary_inside(UPSAMPLERS["trilinear"](low, factor), low)

    lows = [(downsample(batch, factor), factor) for batch in padded.split(batch_size)]
    methods = {name: on_shapes_grid(method) for name, method in
               {"stgconv": ours, **UPSAMPLERS, "trilinear_binary": trilinear_binary}.items()}
    table, shown = _run_methods(methods, lows, truth, None, unit=SR_UNIT,
                                keep=_kept(methods, len(truth), out_dir, tensorboard))
    table["start"] = _start_scores("initializer" if learned_start
                                   else START_NAMES[config.chains.upsample],
                                   on_shapes_grid(start), lows, truth, None, unit=SR_UNIT)
    table.update({
        "task": "super-resolution", "n_shapes": len(truth), "size": side, "model_size": size,
        "factor": factor,
        "low_size": size // factor,
        "trained_factor": trained_factor(config),
        # The sampler keeps n_steps as given, and a numpy int is no JSON number.
        "steps": int(sampler.n_steps), "seed": seed,
        "upsample": config.chains.upsample, "binary": binary,
        "checkpoint": str(checkpoint), "shapes": str(shapes),
        "up_axis": up_axis if _holds_meshes(shapes) else None,
    })
    _report(table, out_dir, tensorboard, downsample(padded[:PICTURED], factor),
            f"low {size // factor}^3", shown, truth)
    if json_path is not None:
        atomic_write_json(json_path, table)
    return table


def check_missing_fraction(missing: object, name: str = "missing") -> None:
    """``ValueError`` naming ``name`` (the CLI's ``--missing``) unless ``missing``, the fraction
    of voxels to hide, is a number in ``(0, 1)``; a string failed in the comparison, in
    Python's words."""
    if (isinstance(missing, bool) or not isinstance(missing, numbers.Real)
            or not 0.0 < missing < 1.0):
        raise ValueError(f"{name} must be a number in (0, 1), got {missing!r}")


def random_known(shape: tuple[int, ...], missing: float, *, generator: torch.Generator | None = None
                 ) -> Tensor:
    """Bool ``known`` of ``shape`` (any, e.g. ``(N, D, H, W)``): each entry hidden
    independently with probability ``missing``."""
    check_missing_fraction(missing)
    check_generator(generator, "random_known")
    return torch.rand(shape, generator=generator) >= missing


@written_together()
def eval_recovery_3d(
    checkpoint: str | Path, shapes: str | Path, *, missing: float = 0.7,
    init: RecoveryInit | None = None, n_steps: int | None = None, batch_size: int = 8,
    max_shapes: int | None = None, up_axis: int | None = None, seed: int = 0,
    out_dir: str | Path | None = None, json_path: str | Path | None = None,
    tensorboard: str | Path | None = None, device: str = "auto",
) -> dict[str, Any]:
    """Hide a seeded random ``missing`` fraction of every shape's voxels and recover them: ours
    and the baselines, one table.

    ``shapes`` is read by :func:`load_eval_shapes`: a folder of meshes is voxelized at the
    model's side with its ``up_axis`` (0 = x, 1 = y, 2 = z) turned to array axis 2 (left out:
    the model's ``data.up_axis``, as it saw a folder of meshes or the cache it was trained on:
    2 for a model trained on other grids).

    Shapes smaller than the model's grid (ModelNet's 30^3 under a 32^3 model) are zero-padded,
    centred, for the model; the padding counts as observed (it is empty by construction), and
    every score is computed on the shapes' own grid. A classical start is filled on the shapes'
    own grid, as its baseline's row is (:func:`~stgconv.tasks.voxel.recovery_start`).

    Returns (and writes to ``json_path``) ``{"unit", "errors": {"stgconv": e, "nearest_known": e,
    "neighbour_majority": e}, "iou": {...}, "iou_pooled": {...}, "seconds": {...}, "n_shapes",
    "size", "model_size", "missing", "missing_fraction", "init", "steps", "seed", "up_axis",
    "start", ...}`` (``up_axis`` as for :func:`eval_super_resolution`). ``init`` is our
    chain's start (:func:`stgconv.tasks.voxel.recovery_fill`; default: the model's learned
    filler where it has one, else ``nearest_known``), and ``start`` scores
    that start alone (``{"method", "error", "iou", "iou_pooled", "seconds"}``), so the table
    shows what the chain adds to it. With ``out_dir``, also ``comparison.png`` (observed |
    baselines | ours | truth, first 4 shapes) and ``stgconv.npy``; with ``tensorboard``, the
    scores and that render in TensorBoard.

    Raises:
        ValueError: grids larger than the model's; ``missing`` outside ``(0, 1)``, or so small
            that it hid no voxel of a shape; an ``up_axis`` not 0, 1 or 2, or other than 2 for
            voxel grids.
    """
    seed = check_seed(seed)
    check_missing_fraction(missing)  # before the model is loaded and the shapes read
    batch_size = check_batch_size(batch_size)
    if up_axis is not None:  # before the model is loaded
        up_axis = check_up_axis(up_axis)
    check_path(shapes, "shapes")  # before the model is loaded
    check_outputs(out_dir=out_dir, json_path=json_path, tensorboard=tensorboard)
    energy, config, state = load_voxel_model(checkpoint, device=device)
    size = grid_side(energy)
    param = next(energy.parameters())
    initializer = load_initializer(state, checkpoint, device=param.device)
    init = default_recovery_init(initializer) if init is None else init
    recovery_fill(init, initializer)  # an unknown init is refused before the shapes are read
    sampler = task_sampler(config, n_steps=n_steps)  # and a bad n_steps
    up_axis = _up_axis_for(shapes, config, up_axis)
    truth = load_eval_shapes(shapes, max_shapes=max_shapes, mesh_side=size, max_side=size,
                             up_axis=up_axis)
    side = truth.shape[-1]
    known = random_known(tuple(truth.shape), missing, generator=torch.Generator().manual_seed(seed))
    # A shape with no hidden voxel has none to score: the scores refused it ("where is empty")
    # only after every method had run, naming neither the shape nor the fraction.
    unhidden = [i for i, shape_known in enumerate(known) if bool(shape_known.all())]
    if unhidden:
        raise ValueError(f"missing {missing} hid no voxel of shape {unhidden[0]} of {shapes} "
                         f"({side}^3 voxels, seed {seed}): nothing to recover; hide a larger "
                         "fraction")
    observed = torch.where(known, truth, torch.zeros_like(truth))
    generator = torch.Generator(param.device).manual_seed(seed)

    def ours(obs: Tensor, kn: Tensor) -> Tensor:
        return recover_padded(energy, sampler, obs, kn, offset=VOXELS.offset(config), init=init,
                              initializer=initializer, generator=generator).cpu()

    def start(obs: Tensor, kn: Tensor) -> Tensor:
        return recovery_start(init, initializer, obs, kn, size, device=param.device).cpu()

    batches = list(zip(observed.split(batch_size), known.split(batch_size)))
    methods = {"stgconv": ours, **FILLS}
    table, shown = _run_methods(methods, batches, truth, ~known, unit=RECOVERY_UNIT,
                                keep=_kept(methods, len(truth), out_dir, tensorboard))
    table["start"] = _start_scores(init, start, batches, truth, ~known, unit=RECOVERY_UNIT)
    table.update({
        "task": "recovery-3d", "n_shapes": len(truth), "size": side, "model_size": size,
        # As Python numbers (random_known and the sampler took them as such): a numpy float32
        # or int64 was kept as given, and the JSON table refused it after the whole evaluation.
        "missing": float(missing), "missing_fraction": 1.0 - known.float().mean().item(),
        "init": init, "steps": int(sampler.n_steps), "seed": seed,
        "checkpoint": str(checkpoint), "shapes": str(shapes),
        "up_axis": up_axis if _holds_meshes(shapes) else None,
    })
    _report(table, out_dir, tensorboard, observed, "observed", shown, truth)
    if json_path is not None:
        atomic_write_json(json_path, table)
    return table


def _check_side(grids: np.ndarray | Tensor, shapes: str | Path, size: int | None) -> None:
    """``ValueError`` when the ground-truth grids ``grids`` (``(..., R, R, R)``, read from
    ``shapes``) are larger than the model's ``size`` (smaller ones are padded); no shapes pass
    (refused elsewhere, as such)."""
    side = grids.shape[-1]
    if size is not None and len(grids) > 0 and side > size:
        raise ValueError(f"{shapes} holds {side}^3 grids; this model takes "
                         f"(N, {size}, {size}, {size}) (smaller grids are padded)")


def _start_scores(method: str, start: Callable[..., Tensor], batches: list[tuple[Any, ...]],
                  truth: Tensor, where: Tensor | None, *, unit: str) -> dict[str, Any]:
    """``{"method", "error", "iou", "iou_pooled", "seconds"}`` of our chain's start alone."""
    scores, _ = _run_methods({method: start}, batches, truth, where, unit=unit)
    return {"method": method, "error": scores["errors"][method], "iou": scores["iou"][method],
            "iou_pooled": scores["iou_pooled"][method], "seconds": scores["seconds"][method]}


def _kept(methods: dict[str, Any], n_shapes: int, out_dir: str | Path | None,
          tensorboard: str | Path | None) -> dict[str, int]:
    """How many of each method's first outputs :func:`_report` needs: the pictured shapes' for
    a render, and every one of ours for ``stgconv.npy``."""
    if out_dir is None and tensorboard is None:
        return {}
    keep = dict.fromkeys(methods, PICTURED)
    if out_dir is not None:
        keep["stgconv"] = n_shapes
    return keep


def _run_methods(methods: dict[str, Callable[..., Tensor]], batches: list[tuple[Any, ...]],
                 truth: Tensor, where: Tensor | None, *, unit: str,
                 keep: dict[str, int] | None = None
                 ) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Every method on every batch (``method(*batch)``, the batches splitting ``truth``
    ``(N, 1, D, H, W)`` in order), in the order given, each output clamped to ``[0, 1]`` and
    scored against its shapes as soon as it is made (``where``: bool like ``truth`` or
    ``None``, the voxels the errors cover).

    Returns the scores (``{"unit", "errors", "iou", "iou_pooled", "seconds"}``, see
    :class:`_Scores`; ``seconds``: each method's in all, its scoring left out) and, of each
    method ``keep`` names, its first ``keep[name]`` outputs joined: only those are kept (every
    output for the end took 1.5 GB per 1,000 32^3 shapes).

    Raises:
        ValueError: a method's output whose shape is not its shapes'.
    """
    keep = keep or {}
    scores = {name: _Scores(len(truth)) for name in methods}
    kept: dict[str, Tensor] = {}
    seconds = dict.fromkeys(methods, 0.0)
    done = 0
    for batch in batches:
        shapes = truth[done:done + len(batch[0])]
        scored = None if where is None else where[done:done + len(shapes)]
        for name, method in methods.items():
            started = time.perf_counter()
            output = method(*batch).clamp(0.0, 1.0)
            seconds[name] += time.perf_counter() - started
            if output.shape != shapes.shape:  # a short output would score fewer shapes
                raise ValueError(f"{name}'s results {tuple(output.shape)} and their shapes "
                                 f"{tuple(shapes.shape)} differ")
            scores[name].add(output, shapes, scored)
            if name in keep and done < keep[name]:
                if name not in kept:  # filled in place: joined at the end, they were held twice
                    kept[name] = output.new_empty((min(keep[name], len(truth)),
                                                   *output.shape[1:]))
                part = output[:keep[name] - done]
                kept[name][done:done + len(part)] = part
        done += len(shapes)
    table = {"unit": unit, "errors": {}, "iou": {}, "iou_pooled": {}, "seconds": seconds}
    for name, score in scores.items():
        table["errors"][name], table["iou"][name], table["iou_pooled"][name] = score.means()
    return table, kept


class _Scores:
    """One method's scores, added as its outputs are made: the mean absolute error and the
    IoU of each shape (means over shapes) and the IoU pooled over every shape's voxels."""

    def __init__(self, n_shapes: int) -> None:
        # One tensor per score, filled in place: a list of every chunk's few scores, made
        # between the batches' outputs, kept the allocator from reusing the memory they freed
        # (1,000 32^3 shapes: 1 MB more a shape).
        self.errors = torch.empty(n_shapes, dtype=torch.float64)
        self.iou = torch.empty(n_shapes, dtype=torch.float64)
        self.n_scored = self.both = self.either = 0

    def add(self, pred: Tensor, truth: Tensor, where: Tensor | None) -> None:
        """Score ``pred`` against ``truth`` (both ``(B, 1, D, H, W)``; ``where``: bool of the
        same shape, or ``None``), SCORE_CHUNK shapes at a time: the errors' float64
        differences of every shape at once took 36 bytes a voxel (a batch of every shape,
        1,000 32^3 shapes: 1.2 GB)."""
        truths = truth.split(SCORE_CHUNK)
        wheres = [None] * len(truths) if where is None else where.split(SCORE_CHUNK)
        for part, part_truth, part_where in zip(pred.split(SCORE_CHUNK), truths, wheres):
            scored = slice(self.n_scored, self.n_scored + len(part))
            self.errors[scored] = voxel_errors(part, part_truth, where=part_where)
            self.iou[scored] = voxel_iou(part, part_truth)
            self.n_scored += len(part)
            a, b = part >= 0.5, part_truth >= 0.5
            self.both += int((a & b).sum())
            self.either += int((a | b).sum())

    def means(self) -> tuple[float, float, float]:
        """The mean error and IoU over the shapes, and the pooled IoU (:func:`pooled_iou`)."""
        return (self.errors.mean().item(), self.iou.mean().item(),
                pooled_iou(self.both, self.either))


def _report(table: dict[str, Any], out_dir: str | Path | None, tensorboard: str | Path | None,
            inputs: Tensor, input_title: str, shown: dict[str, Tensor], truth: Tensor) -> None:
    """Write ``stgconv.npy`` (ours: ``shown["stgconv"]``, every shape) and ``comparison.png``
    (input | baselines | ours | truth for the first PICTURED shapes, of ``inputs`` and
    ``shown``) into ``out_dir``, and the scores and the render into ``tensorboard``; each where
    given."""
    array_name, render_name = EVAL_FILES
    if out_dir is not None:
        atomic_save_npy(Path(out_dir) / array_name, shown["stgconv"][:, 0].numpy())
    if out_dir is None and tensorboard is None:
        return
    baselines = [name for name in shown if name != "stgconv"]
    panels, titles = [], []
    for i in range(min(PICTURED, len(truth))):
        panels += [inputs[i], *(shown[name][i] for name in baselines), shown["stgconv"][i],
                   truth[i]]
        titles += [input_title, *baselines, "stgconv", "truth"]
    sheet = voxel_sheet(panels, titles=titles, columns=len(shown) + 2)
    if out_dir is not None:
        save_picture(sheet, Path(out_dir) / render_name)
    if tensorboard is not None:
        picture = torch.from_numpy(sheet).permute(2, 0, 1) / 255  # [0, 1], (C, H, W)
        log_evaluation(tensorboard, table["task"], table, {"comparison": picture})


def format_voxel_table(table: dict[str, Any]) -> str:
    """The table as aligned text, lowest error first."""
    if table["task"] == "super-resolution":
        cropped = (f" (scored on the shapes' {table['size']}^3)"
                   if table["size"] != table["model_size"] else "")
        head = (f"super-resolution {table['low_size']}^3 -> {table['model_size']}^3{cropped} "
                f"on {table['n_shapes']} shapes of {table['shapes']} ({table['steps']} steps)")
    else:
        head = (f"recovery of {100 * table['missing_fraction']:.1f}% missing voxels on "
                f"{table['n_shapes']} shapes of {table['shapes']} ({table['steps']} steps "
                f"from {table['init']})")
    # As wide as the longest name: "start: neighbour_majority" (25) pushed its row's numbers
    # out of their columns.
    starts = [f"start: {table['start']['method']}"] if "start" in table else []
    width = max(20, *(len(name) + 1 for name in [*table["errors"], *starts]))
    lines = [head, f"{'method':<{width}}{'error':>9}{'IoU':>9}{'seconds':>10}"]
    for name, error in sorted(table["errors"].items(), key=itemgetter(1)):
        lines.append(f"{name:<{width}}{error:>9.4f}{table['iou'][name]:>9.4f}"
                     f"{table['seconds'][name]:>10.1f}")
    for name in starts:
        start = table["start"]
        lines.append(f"{name:<{width}}{start['error']:>9.4f}{start['iou']:>9.4f}"
                     f"{start['seconds']:>10.1f}")
    return "\n".join(lines)
