"""Video recovery as a task and as an evaluation against classical baselines.

The protocol of the original recovery experiments: take the first ``frames`` frames of a clip,
resize each to ``size x size`` (bilinear), hide the masked pixels, recover them, and report the
mean absolute error over the missing pixels on the 0-255 scale. Our recovery and every baseline
run on the same masked input in the same call.
"""

from __future__ import annotations

import time
from dataclasses import replace
from operator import itemgetter
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stgconv.baselines import BASELINES
from stgconv.build import build_energy, build_sampler, resolve_device
from stgconv.config import ExperimentConfig, config_to_dict, save_config
from stgconv.data.masks import (
    check_mask_matches,
    load_mask_mat,
    missing_frames,
    occluded_region,
    salt_and_pepper,
)
from stgconv.io.atomic import atomic_write_json
from stgconv.io.video import load_video, save_comparison, save_video
from stgconv.mcmc import NoiseInit
from stgconv.metrics import missing_mae_255
from stgconv.recovery import holdout_like, interpolation_spread, recover

UNIT = "mean absolute error over the missing pixels, 0-255 scale"
MASK_KINDS = ("missing_frames", "region", "salt_and_pepper")


def load_known(mask: str | Path, shape: tuple[int, int, int], *, seed: int = 0) -> Tensor:
    """A ``known`` mask (True = observed) for clips of ``shape = (T, H, W)``.

    ``mask`` is a ``.mat`` file of the original experiments (1 = missing, converted here) or a
    generated mask: ``missing_frames:FRACTION``, ``region:SIDE`` (a moving SIDE x SIDE block per
    frame) or ``salt_and_pepper:FRACTION``, drawn from ``seed``.
    """
    text = str(mask)
    kind, sep, value = text.partition(":")
    if sep and kind in MASK_KINDS:
        generator = torch.Generator().manual_seed(seed)
        try:
            number = float(value)
        except ValueError as err:
            raise ValueError(f"mask {text!r}: {value!r} is not a number") from err
        if kind == "missing_frames":
            return missing_frames(*shape, fraction=number, generator=generator)
        if kind == "region":
            return occluded_region(*shape, size=int(number), generator=generator)
        return salt_and_pepper(*shape, fraction=number, generator=generator)
    return load_mask_mat(mask)


def recover_video(
    config: ExperimentConfig,
    video: str | Path,
    mask: str | Path,
    *,
    frames: int = 70,
    size: int = 150,
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Hide the masked pixels of a clip, recover them, and score the result.

    Returns a dict with ``recovered`` ``(C, T, H, W)``, ``truth``, ``known``, ``init`` (the
    starting fill) and ``error``/``init_error`` (:data:`UNIT`). With ``out_dir``, writes
    ``recovered.mp4``, ``comparison.mp4`` (occluded | recovered | ground truth), ``config.yaml``
    and ``metrics.json`` there.
    """
    device = resolve_device(config.device)
    truth = load_video(video, n_frames=frames, size=size).to(device)
    known = load_known(mask, tuple(truth.shape[1:]), seed=config.seed).to(device)
    check_mask_matches(known, truth)
    known = known.expand_as(truth)
    observed = torch.where(known, truth, torch.zeros_like(truth))
    settings = config.recovery
    holdout = None
    visible = known
    if settings.holdout > 0:
        holdout = holdout_like(
            known, fraction=settings.holdout,
            generator=torch.Generator().manual_seed(config.seed + 1),
        ).expand_as(truth)
        visible = known & ~holdout
    # The held-out entries start from a fill that did not see them, so they score honestly.
    init = torch.where(
        visible | ~known,
        _initial_fill(settings.init, observed, known),
        _initial_fill(settings.init, observed, visible),
    )
    step_scale = None
    if settings.step_scale == "interpolation_spread":
        spread = interpolation_spread(observed, visible) ** settings.step_scale_power
        step_scale = spread / spread[~visible].pow(2).mean().sqrt()
    model = replace(config.model, in_channels=truth.shape[0], image_size=truth.shape[-1])
    torch.manual_seed(config.seed)
    energy = build_energy(model).to(device)
    sampler = build_sampler(config.sampler)
    completion = build_sampler(settings.completion) if settings.completion is not None else None
    generator = torch.Generator(device).manual_seed(config.seed)
    started = time.perf_counter()
    result = recover(
        energy,
        sampler,
        observed,
        known,
        init=init,
        n_iterations=config.train.n_iterations,
        lr=config.train.lr,
        betas=config.train.betas,
        n_chains=config.chains.chains_per_example,
        chain_init=NoiseInit(config.chains.init, config.chains.init_scale),
        average_last=settings.average_last,
        generator=generator,
        progress=progress,
        warmup=settings.warmup,
        completion_sampler=completion,
        step_scale=step_scale,
        holdout=holdout,
    )
    seconds = time.perf_counter() - started
    report = {
        "recovered": result.recovered,
        "truth": truth,
        "known": known,
        "init": init,
        "error": missing_mae_255(result.recovered, truth, known),
        "init_error": missing_mae_255(init, truth, known),
        "selected_iteration": result.selected_iteration,
        "seconds": seconds,
    }
    if out_dir is not None:
        out = Path(out_dir)
        occluded = torch.where(known, truth, torch.full_like(truth, -1.0))
        save_video(result.recovered, out / "recovered.mp4")
        save_comparison([occluded, result.recovered, truth], out / "comparison.mp4",
                        labels=["occluded", "recovered", "ground truth"])
        save_config(config, out / "config.yaml")
        metrics = {
            "unit": UNIT,
            "video": str(video),
            "mask": str(mask),
            "missing_fraction": 1.0 - known.float().mean().item(),
            "errors": {"stgconv": report["error"], f"init ({config.recovery.init})": report["init_error"]},
            "seconds": seconds,
            "selected_iteration": result.selected_iteration,
            "history": result.history,
        }
        atomic_write_json(out / "metrics.json", metrics)
    return report


def _initial_fill(kind: str, observed: Tensor, known: Tensor) -> Tensor:
    if kind == "mean":
        return torch.where(known, observed, observed[known].mean())
    return BASELINES[kind](observed, known)


def eval_recovery(
    config: ExperimentConfig,
    video: str | Path,
    mask: str | Path,
    *,
    frames: int = 70,
    size: int = 150,
    out_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Our recovery and every classical baseline on the same masked clip; one error table.

    Returns (and writes to ``json_path``) ``{"unit": ..., "errors": {"stgconv": e, name: e, ...},
    "seconds": {...}, "video": ..., "mask": ..., "frames": ..., "size": ...}``.
    """
    report = recover_video(config, video, mask, frames=frames, size=size, out_dir=out_dir,
                           progress=progress)
    truth, known = report["truth"], report["known"]
    observed = torch.where(known, truth, torch.zeros_like(truth))
    errors = {"stgconv": report["error"]}
    seconds = {"stgconv": report["seconds"]}
    for name, fill in BASELINES.items():
        started = time.perf_counter()
        filled = fill(observed.cpu(), known.cpu())
        seconds[name] = time.perf_counter() - started
        errors[name] = missing_mae_255(filled, truth.cpu(), known.cpu())
    table = {
        "unit": UNIT,
        "errors": errors,
        "seconds": seconds,
        "video": str(video),
        "mask": str(mask),
        "frames": frames,
        "size": size,
        "missing_fraction": 1.0 - known.float().mean().item(),
        # -1: the held-out check kept the starting fill (the model did not improve on it).
        "selected_iteration": report["selected_iteration"],
        "notes": {
            "biharmonic": "spatial, per frame; a frame with no observed pixel (a missing-frame "
            "mask) has nothing to inpaint from and falls back to temporal interpolation",
        },
        "config": config_to_dict(config),
    }
    if json_path is not None:
        atomic_write_json(json_path, table)
    return table


def format_table(table: dict[str, Any]) -> str:
    """The error table as aligned text, best method first."""
    lines = [f"{table['video']}  mask {table['mask']}  ({table['frames']} frames, "
             f"{table['size']}x{table['size']}, {100 * table['missing_fraction']:.1f}% missing)",
             f"{'method':<24}{'error (0-255)':>14}{'seconds':>10}"]
    for name, error in sorted(table["errors"].items(), key=itemgetter(1)):
        lines.append(f"{name:<24}{error:>14.2f}{table['seconds'][name]:>10.1f}")
    return "\n".join(lines)
