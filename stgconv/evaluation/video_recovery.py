"""Video recovery, ours against the classical fills, on one masked clip: one error table.

The protocol of the original recovery experiments: take the first ``frames`` frames of a clip,
resize each to ``size x size`` (bilinear), hide the masked pixels, recover them
(:func:`stgconv.tasks.recover_video`), and report the mean absolute error over the missing pixels
on the 0-255 scale. Our recovery and every baseline run on the same masked input in the same
call.
"""

from __future__ import annotations

import time
from operator import itemgetter
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stgconv.baselines.video import FILLS
from stgconv.checks import as_int
from stgconv.config import ExperimentConfig, config_to_dict
from stgconv.evaluation.tensorboard import check_outputs, frame_comparison, log_evaluation
from stgconv.io.atomic import atomic_write_json, written_together
from stgconv.metrics import missing_mae_255
from stgconv.tasks.recover_video import UNIT, recover_video


@written_together()
def eval_recovery(
    config: ExperimentConfig,
    video: str | Path,
    mask: str | Path,
    *,
    frames: int = 70,
    size: int = 150,
    clip: Tensor | None = None,
    out_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    tensorboard: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Our recovery and every classical baseline on the same masked clip; one error table.

    Returns (and writes to ``json_path``) ``{"unit": ..., "errors": {"stgconv": e, name: e, ...},
    "seconds": {...}, "video": ..., "mask": ..., "frames": ..., "size": ...,
    "missing_fraction": ..., "start": {"fill": ..., "error": ..., "holdout_errors": ...},
    "selected_iteration": ..., "notes": {...}, "config": {...}}`` (``start``: the fill the
    recovery started from; ``selected_iteration`` -1 where the holdout kept it; ``config``: the
    recovery's as run, its ``out_dir`` the folder ``out_dir`` its files went to, ``None``
    where none was given). With
    ``tensorboard`` (a folder), also logs the errors and the frame with the most missing
    pixels (occluded | starting fill | ours | truth) there (:mod:`stgconv.evaluation.tensorboard`).
    ``clip``: ``video`` read before, as :func:`~stgconv.tasks.recover_video.recover_video` takes
    it.
    """
    check_outputs(out_dir=out_dir, json_path=json_path, tensorboard=tensorboard)
    report = recover_video(config, video, mask, frames=frames, size=size, clip=clip,
                           out_dir=out_dir, progress=progress)
    truth, known = report["truth"], report["known"]
    observed = torch.where(known, truth, torch.zeros_like(truth))
    errors = {"stgconv": report["error"]}
    seconds = {"stgconv": report["seconds"]}
    for name, fill in FILLS.items():
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
        # Python ints (the recovery took them as ints): as given, a numpy int64 of a sweep was
        # refused by the JSON table after the whole recovery.
        "frames": as_int(frames, "frames", minimum=1),
        "size": as_int(size, "size", minimum=1),
        "missing_fraction": 1.0 - known.float().mean().item(),
        # The fill the recovery started from and its error: what sampling added on top of it.
        # holdout_errors: with init "learned", each candidate's error on the held-out observed
        # entries that chose it (mean absolute, in the data's [-1, 1] units: x 127.5 for grey
        # levels).
        "start": {**report["start"], "error": report["init_error"]},
        # -1: the held-out check kept the starting fill (the model did not improve on it).
        "selected_iteration": report["selected_iteration"],
        "notes": {
            "biharmonic": "spatial, per frame; a frame with no observed pixel (a missing-frame "
            "mask) has nothing to inpaint from and falls back to temporal interpolation",
        },
        # out_dir: where the recovery's files were written; null where none were (no
        # out_dir), not the config's out_dir, which named a folder nothing was written to.
        "config": {**config_to_dict(report["config"]),
                   "out_dir": None if out_dir is None else str(out_dir)},
    }
    if tensorboard is not None:
        occluded = torch.where(known, truth, torch.full_like(truth, -1.0))
        comparison = frame_comparison([occluded, report["init"], report["recovered"], truth], known)
        log_evaluation(tensorboard, "recovery", table,
                       {"occluded | start | stgconv | truth": comparison})
    if json_path is not None:
        atomic_write_json(json_path, table)
    return table


def format_table(table: dict[str, Any]) -> str:
    """The error table as aligned text, best method first, then the fill our chain started
    from (``start``, where the table has it): the default learned fill is no row of its own, so
    without it the printed table hid what sampling added. Its seconds are part of ours."""
    starts = [f"start: {table['start']['fill']}"] if "start" in table else []
    # As wide as the longest name: "start: temporal_interpolation" (29) would push its numbers
    # out of their columns.
    width = max(24, *(len(name) + 1 for name in [*table["errors"], *starts]))
    lines = [f"{table['video']}  mask {table['mask']}  ({table['frames']} frames, "
             f"{table['size']}x{table['size']}, {100 * table['missing_fraction']:.1f}% missing)",
             f"{'method':<{width}}{'error (0-255)':>14}{'seconds':>10}"]
    for name, error in sorted(table["errors"].items(), key=itemgetter(1)):
        lines.append(f"{name:<{width}}{error:>14.2f}{table['seconds'][name]:>10.1f}")
    for name in starts:
        lines.append(f"{name:<{width}}{table['start']['error']:>14.2f}{'-':>10}")
    return "\n".join(lines)
