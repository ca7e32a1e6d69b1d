"""3D shapes: synthesis, super-resolution and recovery with a trained voxel descriptor, and the
evaluations that score them against classical baselines in the same run.

Units. Files and results hold occupancy in ``[0, 1]``. The model sees occupancy minus
``config.data.mean`` (0 when it is null): the authors' 3DDescriptorNet code subtracts the training
shapes' mean occupancy, which puts the Gaussian reference term and a chain started at zero at the
mean shape density instead of at "empty". Both constraints used here are affine in ``x`` and the
shift is a constant, so ``block_down(x - m) == low - m`` and clamping known voxels commute with it:
every chain runs in the model's units and only the ends convert. ``sampler.clamp`` is configured
in occupancy units and shifted here (:func:`model_sampler`).

Protocols (one table per evaluation, every method on the same inputs):

- super-resolution: ``low = block_down(x, f)`` (block means); ours runs the model's sampler from
  ``nearest_up(low)`` with :class:`~stgconv.mcmc.DownsampleConsistency` after every step, so
  ``block_down(ours) == low`` exactly (up to the final ``[0, 1]`` clamp used for scoring);
  baselines :data:`~stgconv.voxel_baselines.SR_BASELINES`.
- recovery: a seeded random ``missing`` fraction of the voxels is hidden (independently per voxel);
  ours runs the sampler from a baseline fill with :class:`~stgconv.mcmc.KnownEntries`, so the
  observed voxels never change; baselines :data:`~stgconv.voxel_baselines.RECOVERY_BASELINES`.
- scores (:mod:`stgconv.voxel_baselines`): mean absolute voxel error on ``[0, 1]`` (outputs
  clamped; recovery: over the missing voxels only) and IoU of the 0.5 iso-level, both averaged
  over shapes.
"""

from __future__ import annotations

import time
from operator import itemgetter
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch import Tensor

from stgconv.build import build_sampler
from stgconv.checkpoint import CheckpointError, load_model
from stgconv.config import ExperimentConfig, SamplerConfig
from stgconv.energy.base import ConvNetEnergy
from stgconv.io.atomic import atomic_save_npy, atomic_write_json
from stgconv.io.mesh import MESH_SUFFIXES, load_mesh, save_mesh_from_voxels, voxelize
from stgconv.io.preview import MAX_SHAPES, save_preview
from stgconv.io.render import render_voxels
from stgconv.io.voxel import VOXEL_SUFFIXES, load_voxels, pad_to, to_tensor
from stgconv.mcmc import DownsampleConsistency, KnownEntries, NoiseInit
from stgconv.mcmc.base import Sampler
from stgconv.ops import nearest_up
from stgconv.voxel_baselines import (
    RECOVERY_BASELINES,
    SR_BASELINES,
    downsample,
    voxel_errors,
    voxel_iou,
)

SR_UNIT = "mean absolute voxel error on [0, 1] over all voxels; IoU of the 0.5 level; means over shapes"
RECOVERY_UNIT = ("mean absolute voxel error on [0, 1] over the missing voxels; IoU of the 0.5 "
                 "level over the whole grid; means over shapes")
RecoveryInit = Literal["nearest_known", "neighbour_majority", "mean"]


# --------------------------------------------------------------------------------------------
# Units: occupancy <-> the model's input
# --------------------------------------------------------------------------------------------


def resolve_mean(config: ExperimentConfig, shapes: Tensor) -> ExperimentConfig:
    """``config`` with ``data.mean == "auto"`` replaced by the mean occupancy of ``shapes``
    ``(N, 1, D, D, D)`` (a scalar, as in the authors' code); otherwise unchanged."""
    if config.data.mean != "auto":
        return config
    return replace(config, data=replace(config.data, mean=float(shapes.mean())))


def model_offset(config: ExperimentConfig) -> float:
    """What the model's input subtracts from the data (0 for images, videos and uncentred
    voxel models)."""
    if config.data.kind != "voxels" or config.data.mean is None:
        return 0.0
    if config.data.mean == "auto":
        raise ValueError("data.mean='auto' is resolved from the training shapes when training "
                         "starts; this config was never trained")
    return float(config.data.mean)


def model_sampler(config: ExperimentConfig, *, n_steps: int | None = None,
                  sampler: SamplerConfig | None = None) -> Sampler:
    """The configured sampler (``sampler``, default ``config.sampler``) with its clamp moved
    from data units into the model's units."""
    sampler = sampler if sampler is not None else config.sampler
    offset = model_offset(config)
    clamp = sampler.clamp
    if clamp is not None and offset:
        clamp = (clamp[0] - offset, clamp[1] - offset)
    return build_sampler(replace(sampler, clamp=clamp), n_steps=n_steps)


def to_occupancy(x: Tensor, config: ExperimentConfig) -> Tensor:
    """Model units -> occupancy in ``[0, 1]`` (shifted back and clamped)."""
    return (x + model_offset(config)).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Models and inputs
# --------------------------------------------------------------------------------------------


def load_voxel_model(checkpoint: str | Path, *, device: str = "auto"
                     ) -> tuple[ConvNetEnergy, ExperimentConfig, dict[str, Any]]:
    """A trained voxel energy (eval mode, on ``device``), its config and the raw checkpoint.

    Raises:
        CheckpointError: not a checkpoint, or not one of a voxel model.
    """
    energy, config, state = load_model(checkpoint, device=device)
    if config.data.kind != "voxels" or energy.input_size is None:
        raise CheckpointError(f"checkpoint {checkpoint} holds a {config.data.kind!r} model; "
                              f"this task needs a voxel model (data.kind: voxels)")
    return energy, config, state


def model_size(energy: ConvNetEnergy) -> int:
    """The grid side ``D`` of a voxel energy's ``(B, 1, D, D, D)`` inputs."""
    return int(energy.input_size[0])


def load_eval_shapes(path: str | Path, *, max_shapes: int | None = None) -> Tensor:
    """Ground-truth shapes for an evaluation: float32 ``(N, 1, D, D, D)`` in {0, 1}.

    ``path`` is any voxel file (:data:`~stgconv.io.voxel.VOXEL_SUFFIXES`); an ``.npz`` holds them
    under ``X`` as ``(N, D, D, D)`` {0, 1}.
    """
    grids = load_voxels(path, binary=True)
    batch = to_tensor(grids[None] if grids.ndim == 3 else grids)
    if max_shapes is not None:
        if max_shapes < 1:
            raise ValueError(f"max_shapes must be >= 1, got {max_shapes}")
        batch = batch[:max_shapes]
    if len(batch) == 0:
        raise ValueError(f"{path} holds no shapes")
    return batch


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _check_factor(size: int, factor: int) -> None:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}")
    if size % factor:
        raise ValueError(f"factor {factor} does not divide the model's grid side {size}; "
                         f"choose one of {[f for f in range(2, size + 1) if size % f == 0]}")


# --------------------------------------------------------------------------------------------
# The three uses of a trained model
# --------------------------------------------------------------------------------------------


def super_resolve_batch(energy: ConvNetEnergy, sampler: Sampler, low: Tensor, factor: int, *,
                        offset: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """Super-resolve low-resolution occupancy with a model of the high resolution.

    Args:
        low: ``(B, 1, d, d, d)`` block means in ``[0, 1]``; ``d * factor`` must be the model's side.
        factor: block size ``f``.
        offset: the model's :func:`model_offset`.

    Returns:
        ``(B, 1, d*f, d*f, d*f)`` in occupancy units, with ``block_down(out, f) == low`` (not
        clamped: the clamp would move block means; score it with a clamp).
    """
    blocks = (factor,) * 3
    low_model = low - offset
    x0 = nearest_up(low_model, blocks)
    x = sampler.run(energy, x0, constraint=DownsampleConsistency(low_model, blocks),
                    generator=generator)
    return x + offset


def recover_batch(energy: ConvNetEnergy, sampler: Sampler, observed: Tensor, known: Tensor, *,
                  offset: float = 0.0, init: RecoveryInit = "nearest_known",
                  generator: torch.Generator | None = None) -> Tensor:
    """Fill the missing voxels with the model's chain, the known ones clamped throughout.

    Args:
        observed: ``(B, 1, D, D, D)`` occupancy; values at missing voxels are ignored.
        known: bool, same shape, ``True`` = observed.
        init: the chain's start: a baseline fill (:data:`RECOVERY_BASELINES`) or ``"mean"``
            (missing voxels at the mean of the observed ones, as in the authors' code).

    Returns:
        ``(B, 1, D, D, D)`` occupancy, equal to ``observed`` at the known voxels.
    """
    if init == "mean":
        fill = (observed * known).flatten(1).sum(1) / known.flatten(1).sum(1).clamp(min=1)
        start = torch.where(known, observed, fill.view(-1, 1, 1, 1, 1).expand_as(observed))
    elif init in RECOVERY_BASELINES:
        start = RECOVERY_BASELINES[init](observed, known)
    else:
        raise ValueError(f"init must be 'mean' or one of {sorted(RECOVERY_BASELINES)}, got {init!r}")
    x = sampler.run(energy, start - offset, constraint=KnownEntries(observed - offset, known),
                    generator=generator)
    return x + offset


def synthesize_voxels(energy: ConvNetEnergy, config: ExperimentConfig, out_dir: str | Path, *,
                      start: Tensor | None = None, n_samples: int = 16, n_steps: int | None = None,
                      seed: int = 0) -> Path:
    """Sample shapes into ``out_dir``: ``synthesized.png`` (renders of up to 16) and
    ``synthesized.npy`` (all of them, float32 ``(N, D, D, D)`` occupancy).

    Args:
        start: ``(N, 1, D, D, D)`` chain starts in the model's units (e.g. the checkpoint's
            persistent chains); ``None`` draws ``n_samples`` from the training init.
        n_steps: chain length (default: the training chain length).
    """
    param = next(energy.parameters())
    generator = torch.Generator(param.device).manual_seed(seed)
    if start is None:
        side = model_size(energy)
        init = NoiseInit(config.chains.init, config.chains.init_scale)
        start = init.sample((n_samples, 1, side, side, side), device=param.device,
                            dtype=param.dtype, generator=generator)
    samples = model_sampler(config, n_steps=n_steps).run(energy, start.to(param.device),
                                                         generator=generator)
    out = Path(out_dir)
    occupancy = to_occupancy(samples, config)
    save_preview(occupancy, out / "synthesized", kind="voxels")
    if len(occupancy) > MAX_SHAPES:  # the preview keeps 16; the result is every sample
        atomic_save_npy(out / "synthesized.npy", occupancy[:, 0].cpu().numpy())
    return out


def super_resolve(checkpoint: str | Path, source: str | Path, out_dir: str | Path, *,
                  factor: int = 4, n_steps: int | None = None, seed: int = 0,
                  device: str = "auto") -> Path:
    """Super-resolve a low-resolution grid file or a mesh with a trained high-resolution model.

    ``source`` is a voxel file (one grid ``(d, d, d)`` or a batch ``(N, d, d, d)`` of occupancy
    in ``[0, 1]``, ``d = size / factor``) or a mesh (:data:`~stgconv.io.mesh.MESH_SUFFIXES`),
    voxelized here to a solid ``size^3`` grid and block-averaged to ``d^3``. Writes into ``out_dir``: ``super_resolved.npy``
    (float32 ``(N, D, D, D)``, clamped to ``[0, 1]``), ``super_resolved.png`` (input | nearest |
    ours, up to 4 shapes) and, for one shape, ``super_resolved.ply`` (its 0.5 iso-surface).

    Raises:
        ValueError: a factor that does not divide the model's side; a grid of the wrong size;
            an unreadable or broken file.
    """
    energy, config, _ = load_voxel_model(checkpoint, device=device)
    size = model_size(energy)
    _check_factor(size, factor)
    low_side = size // factor
    source = Path(source)
    suffix = source.suffix.lower()
    if suffix in MESH_SUFFIXES:
        # Voxelized at the model's size and block-averaged: the low resolution of the training
        # protocol (occupancy fractions). A mesh voxelized straight at d^3 is binary, and a block
        # whose mean is 0 or 1 pins every voxel in it: nothing would be left to super-resolve.
        vertices, faces = load_mesh(source)
        solid = voxelize(vertices, faces, size, margin=0).astype(np.float32)
        grids = downsample(to_tensor(solid[None]), factor)[:, 0].numpy()
    elif suffix in VOXEL_SUFFIXES:
        grids = load_voxels(source, binary=False)
        grids = grids[None] if grids.ndim == 3 else grids
    else:
        raise ValueError(f"cannot read {source}: expected a voxel file "
                         f"({', '.join(VOXEL_SUFFIXES)}) or a mesh ({', '.join(MESH_SUFFIXES)})")
    if grids.shape[-1] != low_side:
        raise ValueError(
            f"{source} holds {grids.shape[-1]}^3 grids; this {size}^3 model with factor {factor} "
            f"needs low-resolution grids (N, {low_side}, {low_side}, {low_side})")
    param = next(energy.parameters())
    low = to_tensor(grids).to(param.device)
    generator = torch.Generator(param.device).manual_seed(seed)
    ours = super_resolve_batch(energy, model_sampler(config, n_steps=n_steps), low, factor,
                               offset=model_offset(config), generator=generator).clamp(0.0, 1.0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(out / "super_resolved.npy", ours[:, 0].cpu().numpy().astype(np.float32))
    panels, titles = [], []
    for i in range(min(4, len(low))):
        panels += [low[i], SR_BASELINES["nearest"](low[i : i + 1], factor)[0], ours[i]]
        titles += [f"input {low_side}^3", "nearest", "stgconv"]
    render_voxels(panels, out / "super_resolved.png", titles=titles, columns=3)
    if len(ours) == 1 and (ours[0] > 0.5).any():
        save_mesh_from_voxels(ours[0], out / "super_resolved.ply")
    return out


# --------------------------------------------------------------------------------------------
# Evaluations
# --------------------------------------------------------------------------------------------


def eval_super_resolution(
    checkpoint: str | Path, shapes: str | Path, *, factor: int = 4, n_steps: int | None = None,
    batch_size: int = 8, max_shapes: int | None = None, seed: int = 0,
    out_dir: str | Path | None = None, json_path: str | Path | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Super-resolve ``block_down(x, factor)`` of every shape in ``shapes``: ours and the
    baselines, one table.

    Returns (and writes to ``json_path``) ``{"unit", "errors": {"stgconv": e, "nearest": e,
    "trilinear": e}, "iou": {...}, "iou_pooled": {...}, "seconds": {...}, "n_shapes", "size",
    "factor", "trained_factor", "steps", "checkpoint", "shapes"}``. With ``out_dir``, also
    ``comparison.png`` (low | nearest | trilinear | ours | truth for the first 4 shapes) and
    ``stgconv.npy`` (ours, clamped).

    Raises:
        ValueError: grids of another size than the model's; a factor that does not divide it.
    """
    _check_batch_size(batch_size)
    energy, config, _ = load_voxel_model(checkpoint, device=device)
    size = model_size(energy)
    _check_factor(size, factor)
    truth = load_eval_shapes(shapes, max_shapes=max_shapes)
    if truth.shape[-1] != size:
        raise ValueError(f"{shapes} holds {truth.shape[-1]}^3 grids; this model takes "
                         f"(N, {size}, {size}, {size})")
    param = next(energy.parameters())
    sampler = model_sampler(config, n_steps=n_steps)
    generator = torch.Generator(param.device).manual_seed(seed)

    def ours(low: Tensor, factor: int) -> Tensor:
        return super_resolve_batch(energy, sampler, low.to(param.device), factor,
                                   offset=model_offset(config), generator=generator).cpu()

    lows = [(downsample(batch, factor), factor) for batch in truth.split(batch_size)]
    results, seconds = _run_methods({"stgconv": ours, **SR_BASELINES}, lows)
    table = _table(results, truth, None, unit=SR_UNIT, seconds=seconds)
    table.update({
        "task": "super-resolution", "n_shapes": len(truth), "size": size, "factor": factor,
        "low_size": size // factor,
        "trained_factor": config.chains.factor if config.chains.mode == "super_resolution" else None,
        "steps": n_steps if n_steps is not None else config.sampler.n_steps,
        "checkpoint": str(checkpoint), "shapes": str(shapes),
    })
    if out_dir is not None:
        _save_comparison(out_dir, downsample(truth[:4], factor), f"low {size // factor}^3",
                         results, truth)
    if json_path is not None:
        atomic_write_json(json_path, table)
    return table


def random_known(shape: tuple[int, ...], missing: float, *, generator: torch.Generator | None = None
                 ) -> Tensor:
    """Bool ``known`` of ``shape``: each entry hidden independently with probability ``missing``."""
    if not 0.0 < missing < 1.0:
        raise ValueError(f"missing must be in (0, 1), got {missing}")
    return torch.rand(shape, generator=generator) >= missing


def eval_recovery_3d(
    checkpoint: str | Path, shapes: str | Path, *, missing: float = 0.7,
    init: RecoveryInit = "nearest_known", n_steps: int | None = None, batch_size: int = 8,
    max_shapes: int | None = None, seed: int = 0, out_dir: str | Path | None = None,
    json_path: str | Path | None = None, device: str = "auto",
) -> dict[str, Any]:
    """Hide a seeded random ``missing`` fraction of every shape's voxels and recover them: ours
    and the baselines, one table.

    Shapes smaller than the model's grid (ModelNet's 30^3 under a 32^3 model) are zero-padded,
    centred, for the model; the padding counts as observed (it is empty by construction), and
    every score is computed on the shapes' own grid.

    Returns (and writes to ``json_path``) ``{"unit", "errors": {"stgconv": e, "nearest_known": e,
    "neighbour_majority": e}, "iou": {...}, "iou_pooled": {...}, "seconds": {...}, "n_shapes",
    "size", "model_size", "missing", "missing_fraction", "init", "steps", "seed", ...}``. With
    ``out_dir``, also ``comparison.png`` (observed | baselines | ours | truth, first 4 shapes)
    and ``stgconv.npy``.

    Raises:
        ValueError: grids larger than the model's; ``missing`` outside ``(0, 1)``.
    """
    _check_batch_size(batch_size)
    energy, config, _ = load_voxel_model(checkpoint, device=device)
    size = model_size(energy)
    truth = load_eval_shapes(shapes, max_shapes=max_shapes)
    side = truth.shape[-1]
    if side > size:
        raise ValueError(f"{shapes} holds {side}^3 grids; this model takes "
                         f"(N, {size}, {size}, {size}) (smaller grids are padded)")
    known = random_known(tuple(truth.shape), missing, generator=torch.Generator().manual_seed(seed))
    observed = torch.where(known, truth, torch.zeros_like(truth))
    lo = (size - side) // 2
    crop = (Ellipsis, slice(lo, lo + side), slice(lo, lo + side), slice(lo, lo + side))
    param = next(energy.parameters())
    sampler = model_sampler(config, n_steps=n_steps)
    generator = torch.Generator(param.device).manual_seed(seed)

    def ours(obs: Tensor, kn: Tensor) -> Tensor:
        obs_model = pad_to(obs, size).to(param.device)
        # Padding is known to be empty: pad the *missing* mask with False.
        kn_model = ~pad_to(~kn, size).to(param.device)
        x = recover_batch(energy, sampler, obs_model, kn_model, offset=model_offset(config),
                          init=init, generator=generator)
        return x.cpu()[crop]

    batches = list(zip(observed.split(batch_size), known.split(batch_size)))
    results, seconds = _run_methods({"stgconv": ours, **RECOVERY_BASELINES}, batches)
    table = _table(results, truth, ~known, unit=RECOVERY_UNIT, seconds=seconds)
    table.update({
        "task": "recovery-3d", "n_shapes": len(truth), "size": side, "model_size": size,
        "missing": missing, "missing_fraction": 1.0 - known.float().mean().item(), "init": init,
        "steps": n_steps if n_steps is not None else config.sampler.n_steps, "seed": seed,
        "checkpoint": str(checkpoint), "shapes": str(shapes),
    })
    if out_dir is not None:
        _save_comparison(out_dir, observed, "observed", results, truth)
    if json_path is not None:
        atomic_write_json(json_path, table)
    return table


def _run_methods(methods: dict[str, Callable[..., Tensor]], batches: list[tuple[Any, ...]]
                 ) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Every method on every batch (``method(*batch)``), in the order given: the outputs clamped
    to ``[0, 1]`` and joined over the batches, and the seconds each method took in all."""
    outputs: dict[str, list[Tensor]] = {name: [] for name in methods}
    seconds = dict.fromkeys(methods, 0.0)
    for batch in batches:
        for name, method in methods.items():
            started = time.perf_counter()
            outputs[name].append(method(*batch).clamp(0.0, 1.0))
            seconds[name] += time.perf_counter() - started
    return {name: torch.cat(parts) for name, parts in outputs.items()}, seconds


def _save_comparison(out_dir: str | Path, inputs: Tensor, input_title: str,
                     results: dict[str, Tensor], truth: Tensor) -> None:
    """Write ``stgconv.npy`` (ours) and ``comparison.png``: input | baselines | ours | truth for
    the first 4 shapes (``results`` holds ``"stgconv"`` and the baselines)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(out / "stgconv.npy", results["stgconv"][:, 0].numpy())
    baselines = [name for name in results if name != "stgconv"]
    panels, titles = [], []
    for i in range(min(4, len(truth))):
        panels += [inputs[i], *(results[name][i] for name in baselines), results["stgconv"][i],
                   truth[i]]
        titles += [input_title, *baselines, "stgconv", "truth"]
    render_voxels(panels, out / "comparison.png", titles=titles, columns=len(results) + 2)


def _table(results: dict[str, Tensor], truth: Tensor, where: Tensor | None, *, unit: str,
           seconds: dict[str, float]) -> dict[str, Any]:
    errors, iou, pooled = {}, {}, {}
    for name, pred in results.items():
        errors[name] = voxel_errors(pred, truth, where=where).mean().item()
        iou[name] = voxel_iou(pred, truth).mean().item()
        a, b = pred >= 0.5, truth >= 0.5
        pooled[name] = ((a & b).sum() / (a | b).sum().clamp(min=1)).item()
    return {"unit": unit, "errors": errors, "iou": iou, "iou_pooled": pooled, "seconds": seconds}


def format_voxel_table(table: dict[str, Any]) -> str:
    """The table as aligned text, lowest error first."""
    if table["task"] == "super-resolution":
        head = (f"super-resolution {table['low_size']}^3 -> {table['size']}^3 on "
                f"{table['n_shapes']} shapes of {table['shapes']} ({table['steps']} steps)")
    else:
        head = (f"recovery of {100 * table['missing_fraction']:.1f}% missing voxels on "
                f"{table['n_shapes']} shapes of {table['shapes']} ({table['steps']} steps "
                f"from {table['init']})")
    lines = [head, f"{'method':<20}{'error':>9}{'IoU':>9}{'seconds':>10}"]
    for name, error in sorted(table["errors"].items(), key=itemgetter(1)):
        lines.append(f"{name:<20}{error:>9.4f}{table['iou'][name]:>9.4f}"
                     f"{table['seconds'][name]:>10.1f}")
    return "\n".join(lines)


__all__ = ["SR_UNIT", "RECOVERY_UNIT", "resolve_mean", "model_offset", "model_sampler",
           "to_occupancy", "load_voxel_model", "load_eval_shapes", "super_resolve_batch",
           "recover_batch", "synthesize_voxels", "super_resolve", "eval_super_resolution",
           "random_known", "eval_recovery_3d", "format_voxel_table"]
