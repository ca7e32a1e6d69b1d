"""``stgconv fill-prior``: train the learned fill's prior on a library of complete clips.

Each clip is cut into consecutive windows of ``frames`` frames (resized to ``size x size``),
from ``start_frame`` at ``fps`` as a recovery reads its clip (``data.start_frame``, ``data.fps``);
every window is hidden under every mask (each drawn anew), the classical fills of
``recovery.learned.fills`` are made from what stays, and one :class:`~stgconv.learned_fill.FillNet`
learns to fill them all (:func:`stgconv.learned_fill.fill_prior`, the truth known). A recovery
that names the file in ``recovery.learned.prior`` starts its learned fill from it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import torch

from stgconv.baselines.video import FILLS
from stgconv.build import seeded_weights
from stgconv.checks import as_int, check_entries, check_output, check_seed
from stgconv.config import LearnedFillConfig, check_learned_fill
from stgconv.data.masks import check_mask_matches
from stgconv.io.video import load_video
from stgconv.learned_fill import fill_prior, prior_example, save_fill_prior
from stgconv.tasks.recover_video import REGION_KINDS, load_known

# The three mask kinds of the recovery experiments (whole frames, a moving block, scattered
# pixels), the block 40% of the frame's side as 60 is of 150.
DEFAULT_MASKS = ("missing_frames:0.5", "region:0.4", "salt_and_pepper:0.5")


def train_fill_prior(
    videos: Sequence[str | Path],
    out: str | Path,
    *,
    settings: LearnedFillConfig = LearnedFillConfig(),
    iterations: int = 3000,
    frames: int = 70,
    size: int = 150,
    masks: Sequence[str] = DEFAULT_MASKS,
    seed: int = 0,
    device: str | torch.device = "cpu",
    start_frame: int = 0,
    fps: float | None = None,
    channels: int = 3,
) -> Path:
    """Train a fill prior on ``videos`` and write it to ``out`` (a file); returns ``out``.

    Args:
        videos: video files or folders of frames, each at least ``frames`` frames long.
        settings: the learned fill's settings (``recovery.learned``): fills, width and the
            training schedule (all but ``iterations``, which is this function's).
        iterations: training iterations of the prior.
        masks: mask specs as :func:`~stgconv.tasks.recover_video.load_known` reads them, each
            drawn anew for every window; ``region:F`` (or ``fixed_region:F``) with ``F < 1``
            is a block of side ``round(F * size)``.
        seed: every random draw (masks, crops, the net's initial weights).
        device: where the fills are made and the net trains.
        start_frame, fps: each clip's windows start at its frame ``start_frame`` and pick
            frames at ``fps`` (the clip's own rate by default), as
            :func:`~stgconv.tasks.recover_video.load_clip` picks a recovery's frames: a prior
            learns the motion between frames at the rate its recoveries will see.
        channels: 3 (colour) or 1 (grey, luma), as the recoveries' ``data.channels`` reads
            their clips: a prior fills clips of its own channels only.

    Memory: every window under every mask is kept, about 75 MB each at 70 x 150 x 150.
    """
    for what, given, items, item in (("videos", videos, "video paths", "path"),
                                     ("masks", masks, "masks", "mask")):
        # One path or mask alone was read letter by letter ("video(s) not found: ['c', ...]").
        if isinstance(given, str | os.PathLike):
            raise ValueError(f"{what} must be a list of {items}, got {type(given).__name__} "
                             f"{str(given)!r} ([{item}] for one)")
    seed = check_seed(seed)
    out = check_output(out, "--out", folder=False)
    check_learned_fill(settings)
    as_int(iterations, "iterations", minimum=1)
    as_int(frames, "frames", minimum=2)
    as_int(start_frame, "start_frame", minimum=0)
    check_entries((channels, frames, size, size), f"a window of {frames} frames of {size}x{size}")
    if not videos:
        raise ValueError("fill-prior needs at least one video")
    # Before the first video's fills: a mistyped last path should not cost the others' minutes.
    absent = [str(video) for video in videos if not Path(video).exists()]
    if absent:
        raise FileNotFoundError(f"video(s) not found: {absent}")
    seen: dict[str, str] = {}
    for video in videos:  # else its windows counted twice among the prior's examples, unsaid
        key = os.path.realpath(video)
        if key in seen:
            also = "" if seen[key] == str(video) else f" (also as {seen[key]})"
            raise ValueError(f"{video} is given twice{also}: give each video once")
        seen[key] = str(video)
    masks = [_mask_spec(mask, size) for mask in masks]
    if not masks:
        raise ValueError("fill-prior needs at least one mask")
    window = torch.zeros(()).expand(channels, frames, size, size)  # its shape only
    for mask in masks:  # a mask file must fit the windows; generated masks are drawn to fit
        try:
            known = load_known(mask, window.shape[1:], seed=seed)
            check_mask_matches(known, window)
            # region:0.99 or missing_frames:1 was refused only once the videos were read and
            # filled, by prior_example, its error naming no mask.
            if bool(known.all()) or not bool(known.any()):
                hidden = "nothing" if bool(known.all()) else "every entry"
                raise ValueError(f"it hides {hidden} of a window, and a prior learns to fill "
                                 "missing entries from observed ones")
        except ValueError as err:
            raise ValueError(f"mask {mask}: {err} (windows of --frames {frames}, --size "
                             f"{size})") from err
    fills = {name: FILLS[name] for name in settings.fills}
    started = time.process_time()
    examples = []
    for video in videos:
        clip = load_video(video, size=size, start_frame=start_frame, fps=fps,
                          channels=channels).to(device)
        if clip.shape[1] < frames:
            picked = ((f" from frame {start_frame}" if start_frame else "")
                      + (f" at {fps} fps" if fps is not None else ""))
            config = ("; start_frame and fps are the config's data.start_frame and data.fps"
                      if picked else "")
            raise ValueError(f"{video} has {clip.shape[1]} frames{picked}, fewer than "
                             f"frames={frames} (frames is --frames{config})")
        for start in range(0, clip.shape[1] - frames + 1, frames):
            window = clip[:, start:start + frames]
            for mask in masks:
                known = load_known(mask, tuple(window.shape[1:]), seed=seed + len(examples))
                try:  # a random mask's draw for this window may still hide nothing or all
                    examples.append(prior_example(window, known, fills))
                except ValueError as err:
                    raise ValueError(f"mask {mask} on frames {start}..{start + frames - 1} of "
                                     f"{video}: {err}") from err
    with seeded_weights(seed):
        net, losses = fill_prior(examples, settings=settings, iterations=iterations,
                                 generator=torch.Generator().manual_seed(seed))
    net = net.cpu()
    path = save_fill_prior(net, list(fills), out,
                           trained_on=[Path(video).name for video in videos])
    print(f"{len(examples)} examples ({len(masks)} mask{'s' if len(masks) != 1 else ''}) from "
          f"{len(videos)} video{'s' if len(videos) != 1 else ''}; "
          f"final loss {sum(losses[-100:]) / len(losses[-100:]):.4f}; "
          f"{time.process_time() - started:.0f} CPU s")
    return path


def _mask_spec(mask: str, size: int) -> str:
    """``region:F`` or ``fixed_region:F`` with a fraction ``F < 1`` as the block side in pixels
    of ``size``, in each of the masks joined by ``+``."""
    return "+".join(_part_spec(part, size) for part in mask.split("+"))


def _part_spec(mask: str, size: int) -> str:
    kind, _, value = mask.partition(":")
    if kind in REGION_KINDS:
        try:
            side = float(value)
        except ValueError:
            return mask  # load_known names the problem
        if 0 < side < 1:
            return f"{kind}:{max(1, round(side * size))}"
    return mask
