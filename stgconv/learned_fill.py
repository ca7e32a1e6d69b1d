"""A fill learned from the incomplete clip itself: a small ConvNet that corrects classical fills.

The network reads classical fills of the clip (e.g. temporal interpolation, neighbour averaging,
biharmonic inpainting), the observed values before and after each entry, and where entries are
observed; it adds a correction to the first fill at the missing entries. It is trained on the
clip alone, without any ground truth: observed entries are hidden in the shape of the clip's own
missing ones (:func:`stgconv.recovery.holdout_like`: the missing pattern of another frame laid
over a frame and, for a fixed occluder, alone or beside such gaps, moved elsewhere in the
frame), the classical fills are recomputed without them, and the network learns to predict their
observed values from random crops drawn from a pool of such patterns. This is the self-supervised
idea of Noise2Self (Batson & Royer, 2019) applied to inpainting: what the fills get wrong on hidden
observed entries is what they get wrong on the missing ones, so far as the two look alike. By
default (``recovery.learned.symmetric``) it also learns from the clip turned half a turn and
played backwards, which moves as the clip does, and averages its fills of the two views.

Why it exists next to the descriptor's recovery (:mod:`stgconv.recovery`): a descriptor learned
for a few CPU minutes has a gradient at a classical fill that is nearly orthogonal to the fill's
error, so refining the fill by sampling gains 0-3%; trained for the same minutes on the question
the fill answers, this network gains much more: on scattered missing pixels, and where the
scene moves coherently (a waving flag) also on missing blocks and whole frames. Where it does
not (boiling water's frames), the holdout of :func:`stgconv.recovery.recover` keeps a classical
fill. ``bench/README.md`` (``recovery.py``) states the numbers.

The network can also start from a prior (:func:`fill_prior`): the same net trained beforehand,
with the truth known, on complete clips hidden under the same kinds of masks, then adapted to
the incomplete clip by :func:`learned_fill` (``initial=``). Measured on the shared clips with
priors that never saw them, it filled no better than the net trained on the clip alone, nor did
one trained on later frames of the same scene (``bench/README.md``, "A prior from other
clips"): an option for libraries and networks larger than those measured, not the default;
``stgconv fill-prior`` trains one.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from stgconv.baselines.video import temporal_neighbours
from stgconv.checkpoint import (FILL_PRIOR_KIND, CheckpointError, load_checkpoint, rebuild,
                                save_checkpoint)
from stgconv.checks import (
    as_int,
    check_finite_observed,
    check_generator,
    check_not_meta,
    refuse_inference_mode,
)
from stgconv.config import LEARNED_FILL_PRECISIONS, LearnedFillConfig, check_learned_fill
from stgconv.data.masks import check_mask_matches
from stgconv.mcmc.execution import native_bfloat16
from stgconv.recovery import hidden_whole_cause, hiding_shifts, holdout_like, spatial_shifts
from stgconv.types import Fill


class FillNet(nn.Module):
    """``(inputs, visible) -> corrected first fill``, a ConvNet applied to each frame.

    Five 2-D convolutions, ReLU between: 5x5, two 3x3 dilated by 2, two 3x3 (receptive field
    17x17 pixels: motion of several pixels between the observed frames around a gap is inside
    it). Time enters through the inputs: the classical fills and the values observed before and
    after each entry (:func:`fill_inputs`). The last convolution starts at zero, so an untrained
    net returns the first fill.

    Args:
        channels: ``C``, channels of the clip.
        n_fills: ``F``, classical fills read.
        width: channels of the hidden layers.
    """

    def __init__(self, channels: int, n_fills: int, width: int) -> None:
        super().__init__()
        self.channels = as_int(channels, "channels", minimum=1)
        self.n_fills = as_int(n_fills, "n_fills", minimum=1)
        self.width = as_int(width, "width", minimum=1)
        self.layers = nn.Sequential(
            nn.Conv2d(channels * (n_fills + NEIGHBOUR_INPUTS + 1), width, 5, padding=2),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, channels, 3, padding=1),
        )
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, inputs: Tensor, visible: Tensor) -> Tensor:
        """``inputs`` ``(B, (F + 3) * C, T, H, W)`` (:func:`fill_inputs`: fill ``f`` in channels
        ``f*C : (f+1)*C``, then the temporal neighbours), ``visible`` ``(B, C, T, H, W)`` float,
        1 = observed; returns ``(B, C, T, H, W)``: the first fill, corrected where ``visible``
        is 0."""
        first = inputs[:, :self.channels]
        x = torch.cat([inputs, visible], dim=1)
        B, K, T, H, W = x.shape
        frames = x.transpose(1, 2).reshape(B * T, K, H, W)
        correction = self.layers(frames).reshape(B, T, self.channels, H, W).transpose(1, 2)
        return torch.where(visible > 0, first, first + correction)


NEIGHBOUR_INPUTS = 3
"""Input groups of :func:`fill_inputs` after the fills: the values before and after each entry
and the interpolation weight (:func:`stgconv.baselines.video.temporal_neighbours`)."""


def fill_inputs(observed: Tensor, known: Tensor, filled: Sequence[Tensor]) -> Tensor:
    """A :class:`FillNet`'s inputs for ``observed`` ``(C, T, H, W)`` under ``known``:
    ``((F + 3) * C, T, H, W)``, the fills ``filled`` (each made of ``observed`` under
    ``known``) then :func:`~stgconv.baselines.video.temporal_neighbours`: the interpolation
    blends the observed values around a gap, and the net reads them apart so that it can follow
    what moved between them."""
    return torch.cat([*filled, *temporal_neighbours(observed, known)])


def learned_fill(
    observed: Tensor,
    known: Tensor,
    fills: Sequence[Fill],
    *,
    settings: LearnedFillConfig = LearnedFillConfig(),
    generator: torch.Generator | None = None,
    initial: FillNet | None = None,
) -> tuple[FillNet, list[float]]:
    """Train a :class:`FillNet` on one incomplete clip; returns it and its loss per iteration.

    Args:
        observed: ``(C, T, H, W)``; values at missing entries are never read.
        known: bool, broadcastable to ``observed``, True = observed. Every entry the net learns
            from is one of these.
        fills: classical fills ``fill(video, known) -> (C, T, H, W)``
            (:data:`stgconv.baselines.video.FILLS`); the net corrects the first.
        settings: the training schedule (the ``recovery.learned`` config section).
        generator: every random draw (patterns, crops; the net's initial weights come from
            torch's global generator, as for every model here); a CPU generator whatever the
            clip's device (the draws are small index draws, made on the CPU).
        initial: a net to start from (a prior, :func:`fill_prior`) instead of an untrained one;
            copied, not changed. It must read ``len(fills)`` fills of ``C`` channels with
            ``settings.width``, and it corrects the first fill as it learned to: the one that
            errs least.

    Returns:
        ``(net, losses)``; apply with :func:`apply_fill`.

    Raises:
        ValueError: no fill given or one that is no function, a clip that is not
            ``(C, T, H, W)``, bad settings, a mask that hides or observes every entry, or one
            with no observed entry under another frame's missing pattern, nor (one the same in
            every frame) under its pattern moved within the frame: nothing to learn from; a
            tensor on the meta device.
        RuntimeError: inside ``torch.inference_mode()`` (``torch.no_grad()`` is fine).
    """
    if not fills:
        raise ValueError("learned_fill needs at least one classical fill to correct")
    # FILLS itself (names to fills) failed when a pattern was made: "'str' object is not
    # callable".
    named = [fill for fill in fills if not callable(fill)]
    if named:
        raise ValueError(f"fills must be fill functions, fill(video, known), got {named[0]!r} "
                         "(of FILLS, a dict by name: [FILLS[name] for name in names])")
    if observed.dim() != 4:
        raise ValueError(f"observed must be (C, T, H, W), got {tuple(observed.shape)}")
    check_not_meta(observed, "observed")
    # Data, not part of a graph: the net's training steps backpropagated into a clip that
    # requires grad (another network's output), filling the caller's .grad.
    observed = observed.detach()
    check_mask_matches(known, observed)
    check_learned_fill(settings)
    check_generator(generator, "learned_fill")
    refuse_inference_mode("the learned fill trains a network", "train it")
    known = known.to(observed.device).expand_as(observed)
    # Else the first fill named its own argument ("video has NaN ..."), which is not this one.
    check_finite_observed(observed, known, "observed")
    # Else refused as a mask whose missing pattern hides nothing under any shift, which sent
    # the user to another recovery.init for a clip with nothing to fill or nothing to learn.
    if bool(known.all()) or not bool(known.any()):
        raise ValueError(f"the mask {'hides no entry' if known.any() else 'observes no entry'}: "
                         "the learned fill needs both observed and missing entries")
    if initial is not None:
        check_prior_fits(initial, observed.shape[0], len(fills), settings.width)
    net = (copy.deepcopy(initial).train() if initial is not None
           else FillNet(observed.shape[0], len(fills), settings.width)).to(observed.device)
    shifts = useful_shifts(known)
    patterns = [_hidden_pattern(observed, known, fills, shifts, settings, generator)
                for _ in range(settings.patterns)]
    # Whatever the caller's block: inside torch.no_grad(), where a fill (which feels like
    # inference) may well be made, the backward pass failed ("element 0 of tensors does not
    # require grad").
    with torch.enable_grad():
        losses = _fit(net, patterns, settings, settings.iterations, generator)
    return net.eval(), losses


Pattern = tuple[Tensor, Tensor, Tensor, Tensor]
"""``(hidden, visible, inputs, target)``: the entries learned, the entries seen, the net's inputs
(:func:`fill_inputs` made from the seen ones) and the values to predict, each ``(K, T, H, W)``."""


def _fit(net: FillNet, patterns: Sequence[Pattern], settings: LearnedFillConfig,
         iterations: int, generator: torch.Generator | None) -> list[float]:
    """Train ``net`` to predict each pattern's target at its hidden entries from random crops;
    returns the loss per iteration."""
    T, H, W = (min(pattern[0].shape[i] for pattern in patterns) for i in (1, 2, 3))
    crop = (min(settings.crop_frames, T), min(settings.crop_size, H), min(settings.crop_size, W))
    dtype = next(net.parameters()).dtype
    # Its warning names the line that called learned_fill or fill_prior, which call _fit.
    arithmetic = _arithmetic(settings.precision, next(net.parameters()).device, stacklevel=4)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, iterations)
    # Found once, on the CPU: looked up on the clip's device for every crop, they cost two
    # reads back from a GPU per crop (16 an iteration at the default batch).
    centres = [_crop_centres(pattern[0]) for pattern in patterns]
    # Where each pattern hides an entry (in any channel), (T, H, W) on the CPU: which frames of
    # a crop hold one is then known without a read back from a GPU.
    places = [pattern[0].any(0).cpu() for pattern in patterns]
    losses: list[float] = []
    for _ in range(iterations):
        # Every crop from any pattern: batches drawn from one pattern at a time chase that
        # pattern's few frames and forget the others (measured: bench/README.md).
        picks = torch.randint(len(patterns), (settings.batch,), generator=generator).tolist()
        crops, learned_frames = [], []
        for i in picks:
            where = _crop(centres[i], patterns[i][0].shape[1:], crop, generator)
            crops.append([part[where] for part in patterns[i]])
            learned_frames.append(places[i][where[1:]].flatten(1).any(1).tolist())
        if settings.symmetric:
            turns = torch.randint(2, (len(crops),), generator=generator).tolist()
            crops = [_turned_backwards(parts, net.channels) if turn else parts
                     for parts, turn in zip(crops, turns)]
        # The net works frame by frame, so a crop's frame without a hidden entry adds nothing
        # to the loss or its gradient, yet costs as much as one with: only the frames with one
        # are computed (51-65% of them on the shared masks, a training step 1.6-2.2x faster;
        # measured with one thread, the trained weights the same to the bit, bench/README.md,
        # "Only the frames that teach"). Turning a crop keeps its frames in their order.
        crops = [[part[:, t:t + 1] for part in parts]
                 for parts, learned in zip(crops, learned_frames)
                 for t, hides in enumerate(learned) if hides]
        hidden, visible, inputs, target = (torch.stack(part) for part in zip(*crops))
        with arithmetic:
            predicted = net(inputs.to(dtype), visible.to(dtype))
        # One selection of the hidden entries (each reads the mask back from a GPU).
        loss = _loss((predicted - target.to(dtype))[hidden], settings.loss,
                     second_half=len(losses) >= iterations // 2)
        value = loss.item()  # one read of the loss (a device sync) serves both
        if not math.isfinite(value):
            raise FloatingPointError(
                f"the learned fill's training diverged at iteration {len(losses)}: loss "
                f"{value}; lower recovery.learned.lr (now {settings.lr:g})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(value)
    return losses


def _turned_backwards(pattern: Sequence[Tensor], channels: int) -> list[Tensor]:
    """``pattern`` (a :data:`Pattern` or its crop, each part ``(K, T, H, W)``) as the clip turned
    half a turn in the image plane and played backwards would give it: every point (x, y, t)
    moved to (-x, -y, -t), which leaves every velocity as it was (-dx / -dt = dx / dt). A view
    of the clip with the same motion, so a net that learns the clip's motion learns nothing
    false from it (a mirror or a reversal alone would send a waving flag's waves the other way:
    measured, ``bench/README.md``). The net works frame by frame, so the frames keep their
    order: reversing time swaps the values observed before and after each entry and turns the
    interpolation weight ``w`` into ``1 - w`` (it is 0, and stays 0, where it does not apply)."""
    hidden, visible, inputs, target = pattern
    sides = inputs.shape[0] - NEIGHBOUR_INPUTS * channels
    before, after, weight = inputs[sides:].split(channels)
    inputs = torch.cat([inputs[:sides], after, before, torch.where(weight > 0, 1 - weight, weight)])
    return [part.flip(-2, -1) for part in (hidden, visible, inputs, target)]


def _loss(error: Tensor, kind: str, *, second_half: bool) -> Tensor:
    """The training loss of the errors at hidden entries. Absolute error is what the recovery
    is scored by (it fits the median, which keeps edges where squared error blurs them), but
    from the zero-initialised last layer its sign-only gradients sometimes never leave the
    first fill (measured: bench/README.md), so "squared_then_absolute" uses squared error for
    the first half of the iterations to get going."""
    if kind == "squared" or not second_half:
        return error.pow(2).mean()
    return error.abs().mean()


def useful_shifts(known: Tensor) -> tuple[list[int], list[tuple[int, int]]]:
    """The shifts that move ``known``'s ``(C, T, H, W)`` missing pattern onto observed entries:
    in time (:func:`stgconv.recovery.hiding_shifts`) and, for the entries missing in every
    frame (a fixed occluder, alone or beside missing frames or blocks that move), within the
    frame (:func:`stgconv.recovery.spatial_shifts`); either list may be empty, not both
    (refused)."""
    shifts = hiding_shifts(known), spatial_shifts(known)
    if not any(shifts):
        raise ValueError(
            "the learned fill learns from observed entries hidden like the missing ones, and "
            "this mask has none: no shift in time moves it onto observed entries, and what it "
            "hides in every frame covers too much of the frame for any offset within it to: "
            "choose a classical recovery.init for it")
    return shifts


def _hidden_pattern(observed: Tensor, known: Tensor, fills: Sequence[Fill],
                    shifts: tuple[Sequence[int], Sequence[tuple[int, int]]],
                    settings: LearnedFillConfig, generator: torch.Generator | None) -> Pattern:
    """One training pattern: observed entries hidden like the missing ones of another frame
    and, where the mask hides entries in every frame, like those at another place in the frame
    (one shift of each list of :func:`useful_shifts` that has one: both kinds of gap, as the
    mask has them), the rest visible, the net's inputs made without the hidden ones, and the
    observed values as the target."""
    hidden = _pattern_hidden(known, shifts, settings, generator)
    visible = known & ~hidden
    return hidden, visible, fill_inputs(observed, visible, [fill(observed, visible)
                                                            for fill in fills]), observed


def _pattern_hidden(known: Tensor, shifts: tuple[Sequence[int], Sequence[tuple[int, int]]],
                    settings: LearnedFillConfig, generator: torch.Generator | None) -> Tensor:
    """The entries one training pattern (:func:`_hidden_pattern`) hides, drawn from
    ``generator``; ``ValueError`` where they are every observed entry."""
    hidden = torch.zeros_like(known)
    for choices in shifts:
        if choices:
            shift = choices[int(torch.randint(len(choices), (1,), generator=generator))]
            hidden |= holdout_like(known, fraction=settings.hide_fraction, shift=shift,
                                   generator=generator)
    if not (known & ~hidden).any():
        raise ValueError("the learned fill hides observed entries shaped like the missing ones "
                         "to learn from, and on this mask that hides every observed entry "
                         f"({hidden_whole_cause(known)}): choose a classical recovery.init for it")
    return hidden


def check_patterns(known: Tensor, settings: LearnedFillConfig, *,
                   generator: torch.Generator | None = None) -> None:
    """``ValueError`` where :func:`learned_fill` under ``known`` (bool ``(C, T, H, W)``) with
    ``settings`` would refuse its training patterns: none shaped like the missing entries, or
    one that hides every observed entry (drawn from ``generator``, which is advanced as
    :func:`learned_fill` advances a generator in its state: give a copy of the one it will
    get). Nothing else is made: a caller checks a mask before the classical fills' minutes."""
    # As every random function's: an int for a seed failed inside torch.randint, naming no
    # argument, once a mask had a shift to draw.
    check_generator(generator, "check_patterns")
    shifts = useful_shifts(known)
    for _ in range(settings.patterns):
        _pattern_hidden(known, shifts, settings, generator)


def apply_fill(net: FillNet, observed: Tensor, known: Tensor, filled: Sequence[Tensor], *,
               precision: str = "fp32", symmetric: bool = True) -> Tensor:
    """The learned fill of ``observed`` ``(C, T, H, W)`` under ``known``: ``(C, T, H, W)``,
    observed entries kept bit for bit, clamped to ``[-1, 1]`` (the data's range).

    ``filled``: the classical fills the net was trained on, in its order, each made of
    ``observed`` under the same ``known`` (``fill(observed, known)``, ``(C, T, H, W)``); given
    made rather than as functions, so a caller that also scores them computes them once.
    ``precision``, ``symmetric``: as the net was trained (``recovery.learned``); symmetric
    averages the net's fill of the clip and its fill of the clip turned half a turn and played
    backwards (:func:`_turned_backwards`), turned back.

    Raises:
        ValueError: a clip not ``(C, T, H, W)``, a mask that does not match, fills of
            another number or shape than the net's and the clip's, or a fill with NaN or
            infinite values.
        FloatingPointError: the net gave a NaN or infinite value at a missing entry.
    """
    if observed.dim() != 4:  # a frame stack (T, H, W) was refused as T channels
        raise ValueError(f"observed must be (C, T, H, W), got {tuple(observed.shape)}")
    check_mask_matches(known, observed)
    if (net.channels, net.n_fills) != (observed.shape[0], len(filled)):
        raise ValueError(f"the net reads {net.channels} channels and {net.n_fills} fills, "
                         f"given {observed.shape[0]} and {len(filled)}")
    for i, fill in enumerate(filled):
        # Else a wrong shape failed in torch.cat, and a NaN came out as the net's overflow
        # ("train the prior again").
        if fill.shape != observed.shape:
            raise ValueError(f"filled[{i}] is {tuple(fill.shape)}, observed "
                             f"{tuple(observed.shape)}: each fill is (C, T, H, W) as the clip")
        if not bool(torch.isfinite(fill).all()):
            raise ValueError(f"filled[{i}] has NaN or infinite values: a fill fills every "
                             "entry with a number")
    known = known.to(observed.device).expand_as(observed)
    pattern = [known, known, fill_inputs(observed, known, filled), observed]
    views = (False, True) if symmetric else (False,)
    dtype = next(net.parameters()).dtype
    corrected = torch.zeros_like(observed)
    # The net works frame by frame: only the frames with a missing entry are computed (the
    # others are kept as observed), one at a time, as one frame's activations stay in the
    # cache where the clip's (300 MB a layer at 70x150x150) do not: 2.2-3.7x faster on one CPU
    # thread, the same values to the bit at that size (bench/README.md, "Only the frames that
    # teach"; at other sizes oneDNN may round one frame apart from many in the last place).
    frames = (~known).flatten(2).any(2).any(0).nonzero().flatten().tolist()
    with torch.no_grad(), _arithmetic(precision, observed.device, stacklevel=3):
        for turned in views:
            _, visible, inputs, _ = _turned_backwards(pattern, net.channels) if turned else pattern
            for t in frames:
                fill = net(inputs[None, :, t:t + 1].to(dtype),
                           visible[None, :, t:t + 1].to(dtype))[0, :, 0].to(observed.dtype)
                corrected[:, t] += (fill.flip(-2, -1) if turned else fill) / len(views)
    # Reported, not clamped: an infinite correction (the net overflowed, in bfloat16 or not)
    # would otherwise come out as -1 or 1 everywhere it struck, looking like a fill.
    bad = int((~torch.isfinite(corrected) & ~known).sum())
    if bad:
        raise FloatingPointError(f"the learned fill's net gave non-finite values at {bad} "
                                 f"missing entries (precision {precision!r}): its weights or "
                                 "its arithmetic overflowed; train the prior again")
    return torch.where(known, observed, corrected.clamp(-1, 1))


def _arithmetic(precision: str, device: torch.device, *, stacklevel: int) -> torch.autocast:
    """The net's arithmetic: bfloat16 autocast for ``precision`` "bf16", none for "fp32"; a
    warning where bfloat16 is emulated, ``stacklevel`` frames up (the public caller's line).

    Raises:
        ValueError: another precision (``apply_fill`` takes it unchecked by a config; "bf-16"
            ran in fp32 without a word).
    """
    if precision not in LEARNED_FILL_PRECISIONS:
        raise ValueError(f"precision must be one of {list(LEARNED_FILL_PRECISIONS)}, "
                         f"got {precision!r}")
    if precision == "bf16" and not native_bfloat16(device):
        warnings.warn(f"recovery.learned.precision 'bf16' on {device}, which has no native "
                      "bfloat16: emulated, it is many times slower than fp32; use 'fp32'",
                      RuntimeWarning, stacklevel=stacklevel)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _crop_centres(hidden: Tensor) -> Tensor:
    """Where crops of a pattern may centre: the flat ``(T, H, W)`` indices ``(n,)`` (on the
    CPU) of the places with an entry of ``hidden`` ``(K, T, H, W)`` in any channel; int32, as
    a prior keeps many patterns: at most 4 bytes a place, beside the tens a pattern holds."""
    return hidden.flatten(1).any(0).nonzero().flatten().to("cpu", torch.int32)


def _crop(centres: Tensor, grid: Sequence[int], size: tuple[int, int, int],
          generator: torch.Generator | None) -> tuple[slice, ...]:
    """A random ``size`` crop of a pattern's ``grid`` ``(T, H, W)`` around one of its
    :func:`_crop_centres` ``centres``, drawn at random (so every crop teaches something)."""
    at = centres[int(torch.randint(centres.numel(), (1,), generator=generator))]
    centre = torch.unravel_index(at, tuple(grid))
    where = [slice(None)]
    for c, n, s in zip(centre, grid, size):
        low = int(torch.randint(max(0, int(c) - s + 1), min(int(c), n - s) + 1, (1,),
                                generator=generator))
        where.append(slice(low, low + s))
    return tuple(where)


# A fill prior: the same network trained beforehand on complete clips, where the truth at every
# hidden entry is known, then fine-tuned on the incomplete clip by learned_fill(initial=...).


def prior_example(truth: Tensor, known: Tensor, fills: dict[str, Fill]) -> Pattern:
    """One complete clip under one mask, ready for :func:`fill_prior`.

    Args:
        truth: ``(C, T, H, W)``, the complete clip.
        known: bool, broadcastable to ``truth``, True = observed: the mask to learn to fill.
        fills: the classical fills by name (those of ``recovery.learned.fills``).

    Returns:
        ``(hidden, visible, inputs, target)`` (each ``(K, T, H, W)``): the missing entries, the
        observed ones, the net's inputs made from the observed ones with the fill that errs least
        at the missing entries first (the one the net corrects, as the holdout of
        :func:`stgconv.tasks.recover_video.recover_video` picks it) and the truth. Inputs and
        truth are kept in half precision (a library of clips is gigabytes; 1/2000 of the
        value range is below the 0-255 scale's step).
    """
    if not isinstance(fills, Mapping):  # a list failed on "has no attribute 'values'"
        raise ValueError(f"fills must be a dict of fill functions by name (as FILLS), got "
                         f"{type(fills).__name__}")
    if not fills:  # else an example of no fill, which no FillNet reads, refused by fill_prior
        raise ValueError("a prior example needs at least one classical fill")
    if truth.dim() != 4:
        raise ValueError(f"truth must be (C, T, H, W), got {tuple(truth.shape)}")
    check_not_meta(truth, "truth")
    truth = truth.detach()  # data, as learned_fill's observed: fill_prior trains on it
    check_mask_matches(known, truth)
    known = known.to(truth.device).expand_as(truth)
    if bool(known.all()) or not bool(known.any()):
        raise ValueError("a prior example needs a mask with both observed and missing entries")
    observed = torch.where(known, truth, torch.zeros((), dtype=truth.dtype))
    made = [fill(observed, known) for fill in fills.values()]

    def error_where_missing(fill: Tensor) -> float:
        return (fill - truth)[~known].abs().mean().item()

    made.sort(key=error_where_missing)
    return ~known, known, fill_inputs(observed, known, made).half(), truth.half()


def fill_prior(
    examples: Sequence[Pattern],
    *,
    settings: LearnedFillConfig = LearnedFillConfig(),
    iterations: int,
    generator: torch.Generator | None = None,
) -> tuple[FillNet, list[float]]:
    """Train a :class:`FillNet` on complete clips (:func:`prior_example`: each part of an
    example ``(K, T, H, W)``) to fill their missing entries; returns it and its loss per
    iteration. Supervised where :func:`learned_fill` is self-supervised, with the same crops,
    batches, loss and learning rate (``settings``); the result starts :func:`learned_fill`
    (``initial=``), which adapts it to the incomplete clip.

    Raises:
        ValueError: no examples, examples of different channel counts, or bad settings.
        RuntimeError: inside ``torch.inference_mode()`` (``torch.no_grad()`` is fine).
    """
    check_learned_fill(settings)
    as_int(iterations, "iterations", minimum=1)
    check_generator(generator, "fill_prior")
    refuse_inference_mode("a fill prior trains a network", "train it")
    # A generator of examples was used up by the first check below, and refused as examples
    # "of different channels and fills".
    examples = list(examples)
    if not examples:
        raise ValueError("fill_prior needs at least one example")
    groups = {inputs.shape[0] for _, _, inputs, _ in examples}
    channels = {target.shape[0] for _, _, _, target in examples}
    if len(groups) != 1 or len(channels) != 1:
        raise ValueError("every prior example must have the same channels and fills")
    C = channels.pop()
    n_fills = groups.pop() // C - NEIGHBOUR_INPUTS
    net = FillNet(C, n_fills, settings.width).to(examples[0][2].device)
    with torch.enable_grad():  # as learned_fill's
        losses = _fit(net, examples, settings, iterations, generator)
    return net.eval(), losses


def check_prior_fits(net: FillNet, channels: int, n_fills: int, width: int) -> None:
    """``ValueError`` unless a prior ``net`` has this many channels, fills and hidden width."""
    for what, theirs, ours in (("channels", net.channels, channels),
                               ("number of classical fills", net.n_fills, n_fills),
                               ("hidden width (recovery.learned.width)", net.width, width)):
        if theirs != ours:
            raise ValueError(f"the fill prior's {what} is {theirs}, this recovery's {ours}")


def save_fill_prior(net: FillNet, fills: Sequence[str], path: str | Path, *,
                    trained_on: Sequence[str] = ()) -> Path:
    """Write a prior (:func:`fill_prior`) made with the classical fills named ``fills`` to
    ``path``, atomically, as plain data (loads without executing code); ``trained_on`` says
    what it learned from."""
    # Else written as given: names that are no strings made a file load_fill_prior refuses,
    # and a string was kept letter by letter ("ab" as the fills "a" and "b").
    for what, names in (("fills", fills), ("trained_on", trained_on)):
        if isinstance(names, str) or not all(isinstance(name, str) for name in names):
            raise ValueError(f"{what} must be a list of names (strings), got {names!r}")
    if len(fills) != net.n_fills:
        raise ValueError(f"the prior reads {net.n_fills} fills, {len(fills)} named")
    return save_checkpoint({"kind": FILL_PRIOR_KIND, "fills": list(fills), "channels": net.channels,
                            "width": net.width, "weights": net.state_dict(),
                            "trained_on": list(trained_on)}, path)


def load_fill_prior(path: str | Path) -> tuple[FillNet, tuple[str, ...]]:
    """A prior written by :func:`save_fill_prior` and the names of the fills it reads (in any
    order: it corrects whichever comes first)."""
    if Path(path).is_dir():  # "not found" sent the user looking for what is there
        raise CheckpointError(f"fill prior {path} is a folder; give the file `stgconv "
                              "fill-prior --out FILE` wrote")
    if not Path(path).is_file():
        raise CheckpointError(f"fill prior not found: {path} (`stgconv fill-prior` makes one)")
    state = load_checkpoint(path)
    if state.get("kind") != FILL_PRIOR_KIND:
        raise CheckpointError(f"{path} is not a fill prior (`stgconv fill-prior` makes them)")
    try:
        fills = tuple(state["fills"])
        if not all(isinstance(name, str) for name in fills):
            raise TypeError(f"its fills are not names: {fills}")
        net = rebuild(FillNet, state["channels"], len(fills), state["width"])
        net.load_state_dict(state["weights"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"fill prior {path} is not loadable: {err}") from err
    return net.eval(), fills
